//! Pass 1: the superblock slots, every tree node (checksum, self-description, level, key
//! order within and across nodes), every item decoded, and every block reference (tree nodes
//! and data extents) gathered for the allocation check.
//!
//! The tree is read here directly with `format::decode_node`, not through `Tree`, because the
//! checks need what `Tree` hides: the key range each parent's separators allow a child, and
//! the ability to carry on past a damaged subtree.

use super::report::{Check, Problem, Severity, SlotReport, SlotState};
use crate::device::{AlignedBuf, BlockDevice};
use crate::error::Error;
use crate::format::{
    block_crc, decode_block_count, decode_dirent_bucket, decode_dirindex, decode_node,
    decode_xattr_bucket, max_item_value, name_hash, xattr_part_of, BlockNo, BlockPtr, DirLink,
    ExtentItem, InodeItem, Key, NodeBody, NodeIdentity, ScrubItem, Superblock, XattrValue,
    KIND_DIRENT, KIND_DIRINDEX, KIND_EXTENT, KIND_INODE, KIND_ORPHAN, KIND_SCRUB, KIND_SYMLINK,
    KIND_UNWRITTEN, KIND_XATTR, KIND_XATTR_VALUE, OBJECT_FS, SB_SIZE, SB_SLOT_OFFSETS,
    SCRUB_CURRENT, SCRUB_LAST,
};
use crate::txn::identity;
use std::collections::{BTreeMap, BTreeSet};

/// Problems of one kind listed individually before the rest are only counted.
const LIST_PER_CHECK: usize = 100;

/// The problems found so far.
#[derive(Default)]
pub(super) struct Findings {
    pub problems: Vec<Problem>,
    listed: BTreeMap<Check, usize>,
    /// Per check: how many were not listed, and whether they were fixable.
    unlisted: BTreeMap<Check, (usize, bool)>,
}

impl Findings {
    pub fn error(
        &mut self,
        check: Check,
        fixable: bool,
        ino: Option<u64>,
        block: Option<u64>,
        message: String,
    ) {
        self.push(Problem {
            check,
            severity: Severity::Error,
            fixable,
            fixed: false,
            ino,
            block,
            message,
        });
    }

    pub fn warning(&mut self, check: Check, message: String) {
        self.push(Problem {
            check,
            severity: Severity::Warning,
            fixable: false,
            fixed: false,
            ino: None,
            block: None,
            message,
        });
    }

    fn push(&mut self, p: Problem) {
        let n = self.listed.entry(p.check).or_default();
        if *n < LIST_PER_CHECK {
            *n += 1;
            self.problems.push(p);
        } else {
            let u = self.unlisted.entry(p.check).or_default();
            u.0 += 1;
            u.1 |= p.fixable;
        }
    }

    /// The problems, with one summary line per check that had too many to list. Returns them
    /// and the number of errors they stand for.
    pub fn finish(mut self) -> (Vec<Problem>, usize) {
        let mut errors = self.problems.iter().filter(|p| p.is_error()).count();
        for (check, (n, fixable)) in self.unlisted {
            errors += n;
            self.problems.push(Problem {
                check,
                severity: Severity::Error,
                fixable,
                fixed: false,
                ino: None,
                block: None,
                message: format!("... and {n} more problems of this kind ({check:?})"),
            });
        }
        (self.problems, errors)
    }

    pub fn any(&self, check: Check) -> bool {
        self.listed.contains_key(&check)
    }
}

/// Why fsck could not do its job.
#[derive(Debug)]
pub(super) struct Operational(pub String);

/// Who references a block.
#[derive(Clone, Copy, Debug)]
pub(super) enum Owner {
    Node { level: u8 },
    Extent { ino: u64, file_block: u64 },
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Node { level } => write!(f, "a tree node (level {level})"),
            Owner::Extent { ino, file_block } => {
                write!(f, "inode {ino}'s extent at file block {file_block}")
            }
        }
    }
}

/// A run of referenced blocks.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ref {
    pub start: u64,
    pub len: u64,
    pub owner: Owner,
}

/// One extent of a file, as far as the checks need it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ext {
    pub file_block: u64,
    pub len: u64,
}

/// Everything pass 1 learnt about the current commit.
pub(super) struct Scan {
    pub sb: Superblock,
    pub id: NodeIdentity,
    pub inodes: BTreeMap<u64, InodeItem>,
    /// Per directory: (bucket hash, entry) of every DIRENT entry.
    pub dirents: BTreeMap<u64, Vec<(u64, DirLink)>>,
    /// Per directory: every DIRINDEX entry (the cookie is in the link).
    pub dirindex: BTreeMap<u64, Vec<DirLink>>,
    /// Per inode: its xattr names.
    pub xattrs: BTreeMap<u64, BTreeSet<Vec<u8>>>,
    /// Per inode: (name, slot, length) of every xattr whose value is external.
    pub xattr_values: BTreeMap<u64, Vec<(Vec<u8>, u64, u32)>>,
    /// Per inode, per slot: (part, length) of every XATTR_VALUE item.
    pub xattr_parts: BTreeMap<u64, BTreeMap<u64, Vec<(u64, usize)>>>,
    pub extents: BTreeMap<u64, Vec<Ext>>,
    /// Per symlink: (chunk index, chunk length).
    pub symlinks: BTreeMap<u64, Vec<(u64, usize)>>,
    pub orphans: BTreeSet<u64>,
    /// Per file: runs (first file block, blocks) that fallocate reserved (UNWRITTEN items).
    pub unwritten: BTreeMap<u64, Vec<(u64, u64)>>,
    /// Per file: the recorded total of its UNWRITTEN runs.
    pub unwritten_totals: BTreeMap<u64, u64>,
    pub refs: Vec<Ref>,
    /// Blocks the tree references, each counted once.
    pub referenced: u64,
    pub nodes: u64,
    pub items: u64,
    pub metadata_blocks: u64,
    pub data_blocks: u64,
    /// `copies=2`: every extent with a second copy inside the device (inode, first file
    /// block, item), whose copies `check_data_copies` reads.
    copied: Vec<(u64, u64, ExtentItem)>,
    /// Data block copies found bad while the other copy is good: (bad block, good block,
    /// crc), for `--repair`.
    pub bad_data_copies: Vec<(u64, u64, u32)>,
    last_key: Option<Key>,
}

/// Reads one superblock slot: its report, and the superblock if it is valid.
fn read_slot(
    dev: &dyn BlockDevice,
    slot: usize,
    offset: u64,
) -> Result<(SlotReport, Option<Superblock>), Operational> {
    let mut report = SlotReport {
        slot: slot as u32,
        offset,
        state: SlotState::Invalid,
        generation: None,
        current: false,
        reason: None,
    };
    if offset + SB_SIZE as u64 > dev.capacity() {
        report.reason = Some("the device is too small to hold it".into());
        return Ok((report, None));
    }
    let mut buf = AlignedBuf::zeroed(SB_SIZE);
    dev.read_at(offset, &mut buf)
        .map_err(|e| Operational(format!("cannot read superblock slot {slot}: {e}")))?;
    if buf.iter().all(|&b| b == 0) {
        report.state = SlotState::Empty;
        return Ok((report, None));
    }
    match Superblock::decode(&buf) {
        Ok(sb) if sb.slot as usize != slot => {
            report.reason = Some(format!("holds the superblock of slot {}", sb.slot));
        }
        Ok(sb) => {
            report.state = SlotState::Valid;
            report.generation = Some(sb.generation);
            return Ok((report, Some(sb)));
        }
        Err(e @ Error::Unsupported(_)) => {
            report.state = SlotState::Unsupported;
            report.reason = Some(e.to_string());
        }
        Err(e) => report.reason = Some(e.to_string()),
    }
    Ok((report, None))
}

/// Reads both superblock slots, reports each, and returns the current one (the valid slot with
/// the highest generation), as mount picks it.
pub(super) fn read_slots(
    dev: &dyn BlockDevice,
    slots: &mut Vec<SlotReport>,
    f: &mut Findings,
) -> Result<Superblock, Operational> {
    let mut valid: Vec<Superblock> = Vec::new();
    for (slot, &offset) in SB_SLOT_OFFSETS.iter().enumerate() {
        let (report, sb) = read_slot(dev, slot, offset)?;
        slots.push(report);
        valid.extend(sb);
    }
    // The first of equal generations wins, as in `txn::read_superblock`.
    let mut current: Option<Superblock> = None;
    for sb in &valid {
        if current
            .as_ref()
            .is_none_or(|c| sb.generation > c.generation)
        {
            current = Some(sb.clone());
        }
    }
    let Some(sb) = current else {
        if let Some(s) = slots.iter().find(|s| s.state == SlotState::Unsupported) {
            return Err(Operational(s.reason.clone().unwrap_or_default()));
        }
        let why: Vec<String> = slots
            .iter()
            .map(|s| {
                format!(
                    "slot {}: {}",
                    s.slot,
                    s.reason.as_deref().unwrap_or("never written")
                )
            })
            .collect();
        return Err(Operational(format!(
            "not a stablefs: no valid superblock ({})",
            why.join("; ")
        )));
    };
    annotate_slots(&sb, &valid, slots, f);
    Ok(sb)
}

/// Marks the current slot and says what the other one is.
fn annotate_slots(
    sb: &Superblock,
    valid: &[Superblock],
    slots: &mut [SlotReport],
    f: &mut Findings,
) {
    for s in slots.iter_mut() {
        s.current = s.state == SlotState::Valid && s.slot == sb.slot;
        if s.current {
            continue;
        }
        let other = valid.iter().find(|o| o.slot == s.slot);
        match (s.state, other) {
            (SlotState::Valid, Some(o)) if o.uuid != sb.uuid => f.warning(
                Check::SuperblockSlot,
                format!(
                    "superblock slot {} belongs to another filesystem (uuid {})",
                    s.slot,
                    crate::format::uuid_string(&o.uuid)
                ),
            ),
            (SlotState::Valid, Some(o)) => {
                // The commit before the current one: how commits alternate. Its tree is not
                // checked (the current commit may have reused its freed blocks).
                s.reason = Some(if o.generation < sb.generation {
                    "an older commit (commits alternate between the slots)".into()
                } else {
                    "same generation as the current slot".into()
                });
                if o.generation >= sb.generation {
                    f.warning(
                        Check::SuperblockSlot,
                        format!(
                            "superblock slots {} and {} both hold generation {}",
                            sb.slot, s.slot, o.generation
                        ),
                    );
                }
            }
            (SlotState::Empty, _) => {}
            _ => f.warning(
                Check::SuperblockSlot,
                format!(
                    "superblock slot {} is not valid ({}); harmless while slot {} is current: \
                     the next commit rewrites it",
                    s.slot,
                    s.reason.as_deref().unwrap_or("unreadable"),
                    sb.slot
                ),
            ),
        }
    }
    if Superblock::slot_for(sb.generation) != sb.slot as usize {
        f.warning(
            Check::SuperblockSlot,
            format!(
                "generation {} is in slot {}, not slot {}",
                sb.generation,
                sb.slot,
                Superblock::slot_for(sb.generation)
            ),
        );
    }
}

impl Scan {
    /// Blocks `fallocate` reserved for `ino` (the lengths of its UNWRITTEN runs).
    pub fn reserved_blocks(&self, ino: u64) -> u64 {
        self.unwritten
            .get(&ino)
            .into_iter()
            .flatten()
            .map(|r| r.1)
            .sum()
    }

    /// Walks the whole tree of `sb`, verifying every node and decoding every item.
    pub fn run(dev: &dyn BlockDevice, sb: Superblock, f: &mut Findings) -> Scan {
        let id = identity(&sb);
        let mut scan = Scan {
            id,
            inodes: BTreeMap::new(),
            dirents: BTreeMap::new(),
            dirindex: BTreeMap::new(),
            xattrs: BTreeMap::new(),
            xattr_values: BTreeMap::new(),
            xattr_parts: BTreeMap::new(),
            extents: BTreeMap::new(),
            unwritten: BTreeMap::new(),
            unwritten_totals: BTreeMap::new(),
            symlinks: BTreeMap::new(),
            orphans: BTreeSet::new(),
            refs: Vec::new(),
            referenced: 0,
            nodes: 0,
            items: 0,
            metadata_blocks: 0,
            data_blocks: 0,
            copied: Vec::new(),
            bad_data_copies: Vec::new(),
            last_key: None,
            sb,
        };
        let (root, level, gen) = (scan.sb.root, scan.sb.root_level, scan.sb.generation);
        scan.node(dev, &root, level, gen, (Key::MIN, None), f);
        scan.check_allocation(f);
        scan.check_data_copies(dev, f);
        scan
    }

    /// `copies=2`: reads both copies of every data block and checks each against the crc its
    /// extent holds. One bad copy is `DataCopyDamaged` (the good one is remembered for
    /// `--repair`), both bad `DataDamaged`. With one copy data is not read at all (every read
    /// verifies it, and scrub reads it all).
    fn check_data_copies(&mut self, dev: &dyn BlockDevice, f: &mut Findings) {
        let bs = u64::from(self.sb.block_size);
        for (ino, fb0, e) in std::mem::take(&mut self.copied) {
            let Some(second) = e.starts().get(1) else {
                continue;
            };
            let read = |start: u64| {
                let mut buf = AlignedBuf::zeroed((e.len() * bs) as usize);
                dev.read_at(start * bs, &mut buf).ok().map(|()| buf)
            };
            // A run that does not read is retried block by block, so one bad sector is one
            // bad block.
            let (a, b) = (read(e.disk_start), read(second));
            for (i, &crc) in e.crcs.iter().enumerate() {
                let at = i as u64;
                let good = |run: &Option<AlignedBuf>, start: u64| match run {
                    Some(buf) => block_crc(&buf[i * bs as usize..(i + 1) * bs as usize]) == crc,
                    None => {
                        let mut one = AlignedBuf::zeroed(bs as usize);
                        dev.read_at((start + at) * bs, &mut one).is_ok() && block_crc(&one) == crc
                    }
                };
                let (first_ok, second_ok) = (good(&a, e.disk_start), good(&b, second));
                let (fb, at1, at2) = (fb0 + at, e.disk_start + at, second + at);
                match (first_ok, second_ok) {
                    (true, true) => {}
                    (false, false) => f.error(
                        Check::DataDamaged,
                        false,
                        Some(ino),
                        Some(at1),
                        format!(
                            "inode {ino}: file block {fb} is bad in both copies (blocks {at1} \
                             and {at2}): reads of it return EIO"
                        ),
                    ),
                    (ok1, _) => {
                        let (bad, good, which) = if ok1 { (at2, at1, 2) } else { (at1, at2, 1) };
                        f.error(
                            Check::DataCopyDamaged,
                            true,
                            Some(ino),
                            Some(bad),
                            format!(
                                "inode {ino}: copy {which} of file block {fb} (block {bad}) is \
                                 damaged; the other copy (block {good}) is good"
                            ),
                        );
                        self.bad_data_copies.push((bad, good, crc));
                    }
                }
            }
        }
    }

    /// One node and everything below it. `bounds`: every key here must be ≥ the first and
    /// < the second (none: no upper bound).
    fn node(
        &mut self,
        dev: &dyn BlockDevice,
        ptr: &BlockPtr,
        level: u8,
        parent_gen: u64,
        bounds: (Key, Option<Key>),
        f: &mut Findings,
    ) {
        self.count_node(ptr, level);
        check_node_birth(ptr, parent_gen, f);
        let Some(body) = self.read_good_copy(dev, ptr, level, bounds, f) else {
            return;
        };
        match body {
            NodeBody::Leaf(items) => {
                for (k, v) in &items {
                    self.item(k, v, bounds, ptr, f);
                }
            }
            NodeBody::Inner(children) => self.children(dev, &children, ptr, level, bounds, f),
        }
    }

    /// Counts the node and references its block and its copy's, for the allocation check.
    fn count_node(&mut self, ptr: &BlockPtr, level: u8) {
        self.nodes += 1;
        self.refs.push(Ref {
            start: ptr.addr.0,
            len: 1,
            owner: Owner::Node { level },
        });
        if let Some(copy) = ptr.copy_addr {
            self.refs.push(Ref {
                start: copy.0,
                len: 1,
                owner: Owner::Node { level },
            });
        }
    }

    /// Reads both copies of `ptr`'s node and reports a damaged one; returns the body of a
    /// good one (the first if both are), or reports the node damaged and returns none: the
    /// items below it are not checked.
    fn read_good_copy(
        &self,
        dev: &dyn BlockDevice,
        ptr: &BlockPtr,
        level: u8,
        bounds: (Key, Option<Key>),
        f: &mut Findings,
    ) -> Option<NodeBody> {
        let range = describe_range(bounds);
        let first = self.read_node(dev, ptr, level);
        let second = ptr
            .copy_addr
            .map(|copy| (copy, self.read_node_at(dev, copy, ptr, level)));
        report_damaged_copy(&first, &second, ptr, level, &range, f);
        match (first, second) {
            (Ok(b), _) | (Err(_), Some((_, Ok(b)))) => Some(b),
            (Err(e), _) => {
                f.error(
                    Check::NodeDamaged,
                    false,
                    None,
                    Some(ptr.addr.0),
                    format!(
                        "tree node at block {} (level {level}, keys {range}) is damaged{}: {e}; \
                         the items below it are not checked",
                        ptr.addr,
                        if ptr.copy_addr.is_some() {
                            " in both copies"
                        } else {
                            ""
                        }
                    ),
                );
                None
            }
        }
    }

    /// An inner node's children, each checked below it in turn with the key range its
    /// separator and the next one allow (the first child keeps the node's own lower bound).
    fn children(
        &mut self,
        dev: &dyn BlockDevice,
        children: &[(Key, BlockPtr)],
        ptr: &BlockPtr,
        level: u8,
        bounds: (Key, Option<Key>),
        f: &mut Findings,
    ) {
        let range = describe_range(bounds);
        for (i, (sep, child)) in children.iter().enumerate() {
            let next = children.get(i + 1).map(|c| c.0).or(bounds.1);
            if i > 0 && !in_bounds(sep, bounds) {
                f.error(
                    Check::KeyOrder,
                    false,
                    None,
                    Some(ptr.addr.0),
                    format!(
                        "tree node at block {}: separator {} is outside its range {range}",
                        ptr.addr,
                        show_key(sep)
                    ),
                );
            }
            let lo = if i == 0 { bounds.0.max(*sep) } else { *sep };
            self.node(dev, child, level - 1, ptr.birth_gen, (lo, next), f);
        }
    }

    fn read_node(
        &self,
        dev: &dyn BlockDevice,
        ptr: &BlockPtr,
        level: u8,
    ) -> crate::Result<NodeBody> {
        self.read_node_at(dev, ptr.addr, ptr, level)
    }

    /// Reads the copy of `ptr`'s node stored at `at` (either copy holds the same bytes, so
    /// `ptr` verifies both).
    fn read_node_at(
        &self,
        dev: &dyn BlockDevice,
        at: crate::format::BlockNo,
        ptr: &BlockPtr,
        level: u8,
    ) -> crate::Result<NodeBody> {
        let bs = self.id.block_size;
        let mut buf = AlignedBuf::zeroed(bs as usize);
        dev.read_at(at.offset(bs), &mut buf)?;
        decode_node(&self.id, &buf, ptr, level)
    }

    fn item(
        &mut self,
        k: &Key,
        v: &[u8],
        bounds: (Key, Option<Key>),
        node: &BlockPtr,
        f: &mut Findings,
    ) {
        self.items += 1;
        let at = node.addr.0;
        if !in_bounds(k, bounds) || self.last_key.is_some_and(|last| last >= *k) {
            f.error(
                Check::KeyOrder,
                false,
                None,
                Some(at),
                format!(
                    "item {} in the leaf at block {at} is out of order (its parent allows {})",
                    show_key(k),
                    describe_range(bounds)
                ),
            );
        }
        self.last_key = Some(*k);
        let max = max_item_value(self.sb.block_size);
        if v.len() > max {
            f.error(
                Check::ItemTooLarge,
                false,
                Some(k.object),
                Some(at),
                format!(
                    "item {} holds {} bytes; items are at most {max}",
                    show_key(k),
                    v.len()
                ),
            );
        }
        if let Err(why) = self.decode_item(k, v, f) {
            let (check, what) = match why {
                ItemError::Unknown(w) => (Check::UnknownItem, w),
                ItemError::Undecodable(w) => (Check::ItemUndecodable, w),
            };
            f.error(
                check,
                false,
                (k.object != OBJECT_FS).then_some(k.object),
                Some(at),
                format!("item {} in block {at}: {what}", show_key(k)),
            );
        }
    }

    fn decode_item(&mut self, k: &Key, v: &[u8], f: &mut Findings) -> Result<(), ItemError> {
        check_fs_object_kind(k)?;
        match k.kind {
            KIND_INODE => self.inode_item(k, v)?,
            KIND_DIRENT => self.dirent_item(k, v)?,
            KIND_DIRINDEX => self.dirindex_item(k, v)?,
            KIND_XATTR => self.xattr_item(k, v, f)?,
            KIND_XATTR_VALUE => self.xattr_part(k, v),
            KIND_EXTENT => self.extent(k, v, f).map_err(undecodable)?,
            KIND_UNWRITTEN => self.unwritten_item(k, v)?,
            KIND_SYMLINK => self.symlink_item(k, v),
            KIND_ORPHAN => self.orphan_item(k, v)?,
            KIND_SCRUB => self.scrub_item(k, v)?,
            other => return Err(ItemError::Unknown(format!("unknown item kind {other}"))),
        }
        Ok(())
    }

    /// An INODE item, at offset 0.
    fn inode_item(&mut self, k: &Key, v: &[u8]) -> Result<(), ItemError> {
        if k.offset != 0 {
            return Err(ItemError::Unknown("an inode item with an offset".into()));
        }
        let inode = InodeItem::decode(v).map_err(undecodable)?;
        self.inodes.insert(k.object, inode);
        Ok(())
    }

    /// A DIRENT bucket: its entries, with the bucket's hash (checked against the names later).
    fn dirent_item(&mut self, k: &Key, v: &[u8]) -> Result<(), ItemError> {
        for link in decode_dirent_bucket(v).map_err(undecodable)? {
            self.dirents
                .entry(k.object)
                .or_default()
                .push((k.offset, link));
        }
        Ok(())
    }

    /// A DIRINDEX entry (its cookie is the key's offset).
    fn dirindex_item(&mut self, k: &Key, v: &[u8]) -> Result<(), ItemError> {
        let link = decode_dirindex(v, k.offset).map_err(undecodable)?;
        self.dirindex.entry(k.object).or_default().push(link);
        Ok(())
    }

    /// An XATTR bucket: every name in the bucket of its hash, and stored once per inode.
    fn xattr_item(&mut self, k: &Key, v: &[u8], f: &mut Findings) -> Result<(), ItemError> {
        for x in decode_xattr_bucket(v).map_err(undecodable)? {
            let name = x.name;
            if let XattrValue::External { len, slot } = x.value {
                self.xattr_values
                    .entry(k.object)
                    .or_default()
                    .push((name.clone(), slot, len));
            }
            let shown = String::from_utf8_lossy(&name).into_owned();
            if name_hash(&name) != k.offset {
                f.error(
                    Check::NameHash,
                    false,
                    Some(k.object),
                    None,
                    format!(
                        "inode {}: xattr {shown} is in the bucket of another hash",
                        k.object
                    ),
                );
            }
            if !self.xattrs.entry(k.object).or_default().insert(name) {
                f.error(
                    Check::DuplicateName,
                    false,
                    Some(k.object),
                    None,
                    format!("inode {}: xattr {shown} is stored twice", k.object),
                );
            }
        }
        Ok(())
    }

    /// An XATTR_VALUE item: a part of an external xattr value (checked against the entries
    /// later).
    fn xattr_part(&mut self, k: &Key, v: &[u8]) {
        let (slot, part) = xattr_part_of(k.offset);
        self.xattr_parts
            .entry(k.object)
            .or_default()
            .entry(slot)
            .or_default()
            .push((part, v.len()));
    }

    /// An UNWRITTEN item: a file's reserved run, or under object 0 a file's recorded total.
    fn unwritten_item(&mut self, k: &Key, v: &[u8]) -> Result<(), ItemError> {
        let n = decode_block_count(v).map_err(undecodable)?;
        if k.object == OBJECT_FS {
            self.unwritten_totals.insert(k.offset, n);
        } else {
            self.unwritten
                .entry(k.object)
                .or_default()
                .push((k.offset, n));
        }
        Ok(())
    }

    /// A SYMLINK chunk: its index and length (the chunks are checked together later).
    fn symlink_item(&mut self, k: &Key, v: &[u8]) {
        self.symlinks
            .entry(k.object)
            .or_default()
            .push((k.offset, v.len()));
    }

    /// An ORPHAN item: (0, ORPHAN, ino), empty.
    fn orphan_item(&mut self, k: &Key, v: &[u8]) -> Result<(), ItemError> {
        if k.object != OBJECT_FS || !v.is_empty() {
            return Err(ItemError::Unknown(
                "an ORPHAN item must be (0, ORPHAN, ino) and empty".into(),
            ));
        }
        self.orphans.insert(k.offset);
        Ok(())
    }

    /// A SCRUB item: (0, SCRUB, 0 or 1), decodable with its blocks inside the device.
    fn scrub_item(&mut self, k: &Key, v: &[u8]) -> Result<(), ItemError> {
        if k.object != OBJECT_FS || ![SCRUB_CURRENT, SCRUB_LAST].contains(&k.offset) {
            return Err(ItemError::Unknown(
                "a SCRUB item must be (0, SCRUB, 0 or 1)".into(),
            ));
        }
        ScrubItem::decode(v, k.offset, self.sb.total_blocks).map_err(undecodable)?;
        Ok(())
    }

    fn extent(&mut self, k: &Key, v: &[u8], f: &mut Findings) -> crate::Result<()> {
        // Decoded without a range first, so that a range problem is reported as one.
        let e = ExtentItem::decode(v, 0, u64::MAX)?;
        self.check_copy_count(k, &e)?;
        self.other_copies(k, &e, f);
        self.first_copy(k, &e, f);
        self.check_extent_birth(k, &e, f);
        self.extents.entry(k.object).or_default().push(Ext {
            file_block: k.offset,
            len: e.len(),
        });
        Ok(())
    }

    /// An extent has no more copies than the filesystem keeps.
    fn check_copy_count(&self, k: &Key, e: &ExtentItem) -> crate::Result<()> {
        if e.starts().len() as u64 > self.sb.data_copies() {
            return Err(Error::Corrupt(format!(
                "extent at file block {} has a second copy but the filesystem has one data copy",
                k.offset
            )));
        }
        Ok(())
    }

    /// The extent's copies after the first: each inside the device is referenced, and, if the
    /// first copy is inside too, remembered for `check_data_copies`.
    fn other_copies(&mut self, k: &Key, e: &ExtentItem, f: &mut Findings) {
        let (first, total) = (self.sb.first_block, self.sb.total_blocks);
        let end = e.disk_start + e.len();
        for copy in e.starts().others() {
            let copy_end = copy + e.len();
            if copy < first || copy_end > total {
                f.error(
                    Check::BlockOutOfRange,
                    false,
                    Some(k.object),
                    Some(copy),
                    format!(
                        "inode {}: the second copy of the extent at file block {} maps blocks \
                         {copy}..{copy_end}, outside [{first}, {total})",
                        k.object, k.offset
                    ),
                );
            } else {
                self.refs.push(Ref {
                    start: copy,
                    len: e.len(),
                    owner: Owner::Extent {
                        ino: k.object,
                        file_block: k.offset,
                    },
                });
                if e.disk_start >= first && end <= total {
                    self.copied.push((k.object, k.offset, e.clone()));
                }
            }
        }
    }

    /// The extent's first copy: referenced if inside the device.
    fn first_copy(&mut self, k: &Key, e: &ExtentItem, f: &mut Findings) {
        let (first, total) = (self.sb.first_block, self.sb.total_blocks);
        let end = e.disk_start + e.len();
        if e.disk_start < first || end > total {
            f.error(
                Check::BlockOutOfRange,
                false,
                Some(k.object),
                Some(e.disk_start),
                format!(
                    "inode {}: extent at file block {} maps blocks {}..{end}, outside [{first}, {total})",
                    k.object, k.offset, e.disk_start
                ),
            );
        } else {
            self.refs.push(Ref {
                start: e.disk_start,
                len: e.len(),
                owner: Owner::Extent {
                    ino: k.object,
                    file_block: k.offset,
                },
            });
        }
    }

    /// An extent is not born after the commit that holds it.
    fn check_extent_birth(&self, k: &Key, e: &ExtentItem, f: &mut Findings) {
        if e.birth_gen > self.sb.generation {
            f.error(
                Check::BirthGeneration,
                false,
                Some(k.object),
                Some(e.disk_start),
                format!(
                    "inode {}: extent at file block {} was born in generation {}, after the commit's {}",
                    k.object, k.offset, e.birth_gen, self.sb.generation
                ),
            );
        }
    }

    /// Every referenced block exactly once; counts what is referenced.
    fn check_allocation(&mut self, f: &mut Findings) {
        self.refs.sort_by_key(|r| (r.start, r.len));
        let mut covered = 0u64;
        // The reference reaching furthest so far.
        let mut reach: Option<Ref> = None;
        for r in &self.refs {
            match r.owner {
                Owner::Node { .. } => self.metadata_blocks += r.len,
                Owner::Extent { .. } => self.data_blocks += r.len,
            }
            let end = r.start + r.len;
            match reach {
                Some(p) if r.start < p.start + p.len => {
                    let shared_end = end.min(p.start + p.len);
                    f.error(
                        Check::DoublyUsedBlock,
                        false,
                        ext_ino(&r.owner).or(ext_ino(&p.owner)),
                        Some(r.start),
                        format!(
                            "blocks {}..{shared_end} are referenced by {} and by {}",
                            r.start, p.owner, r.owner
                        ),
                    );
                    if end > p.start + p.len {
                        covered += end - (p.start + p.len);
                        reach = Some(*r);
                    }
                }
                _ => {
                    covered += r.len;
                    reach = Some(*r);
                }
            }
        }
        self.referenced = covered;
    }
}

enum ItemError {
    Unknown(String),
    Undecodable(String),
}

fn undecodable(e: Error) -> ItemError {
    ItemError::Undecodable(e.to_string())
}

/// Under object 0 live only ORPHAN, UNWRITTEN-total and SCRUB items.
fn check_fs_object_kind(k: &Key) -> Result<(), ItemError> {
    if k.object == OBJECT_FS && ![KIND_ORPHAN, KIND_UNWRITTEN, KIND_SCRUB].contains(&k.kind) {
        return Err(ItemError::Unknown(
            "only ORPHAN, UNWRITTEN-total and SCRUB items live under object 0".into(),
        ));
    }
    Ok(())
}

/// A node is not born after its parent.
fn check_node_birth(ptr: &BlockPtr, parent_gen: u64, f: &mut Findings) {
    if ptr.birth_gen > parent_gen {
        f.error(
            Check::BirthGeneration,
            false,
            None,
            Some(ptr.addr.0),
            format!(
                "tree node at block {} was born in generation {}, after its parent's {parent_gen}",
                ptr.addr, ptr.birth_gen
            ),
        );
    }
}

/// Reports a node copy that is damaged while the other is good.
fn report_damaged_copy(
    first: &crate::Result<NodeBody>,
    second: &Option<(BlockNo, crate::Result<NodeBody>)>,
    ptr: &BlockPtr,
    level: u8,
    range: &str,
    f: &mut Findings,
) {
    if let (Err(e), Some((_, Ok(_)))) = (first, second) {
        f.error(
            Check::NodeCopyDamaged,
            false,
            None,
            Some(ptr.addr.0),
            format!(
                "the first copy of tree node {} (level {level}, keys {range}) is damaged: \
                 {e}; its second copy is good (a mount that reads it rewrites the first)",
                ptr.addr
            ),
        );
    }
    if let (Ok(_), Some((copy, Err(e)))) = (first, second) {
        f.error(
            Check::NodeCopyDamaged,
            false,
            None,
            Some(copy.0),
            format!(
                "the second copy of tree node {} at block {copy} is damaged: {e}; \
                 its first copy is good",
                ptr.addr
            ),
        );
    }
}

fn ext_ino(o: &Owner) -> Option<u64> {
    match o {
        Owner::Extent { ino, .. } => Some(*ino),
        Owner::Node { .. } => None,
    }
}

fn in_bounds(k: &Key, (lo, hi): (Key, Option<Key>)) -> bool {
    *k >= lo && hi.is_none_or(|h| *k < h)
}

pub(super) fn show_key(k: &Key) -> String {
    format!("({}, {}, {})", k.object, k.kind, k.offset)
}

fn describe_range((lo, hi): (Key, Option<Key>)) -> String {
    match hi {
        Some(h) => format!("[{}, {})", show_key(&lo), show_key(&h)),
        None => format!("[{}, end)", show_key(&lo)),
    }
}
