//! Leaf item kinds and their values.
//!
//! ```text
//! key (object, kind, offset)          value
//! (ino,   INODE,    0)                InodeItem, 112 bytes (below)
//! (dir,   DIRENT,   name hash)        DirEntries: [ino u64 | cookie u64 | kind u8 | len u8 | name]*
//!                                     (all names of this directory with this 64-bit hash)
//! (dir,   DIRINDEX, cookie)           ino u64 | kind u8 | len u8 | name  (readdir order)
//!                                     kind: 1 file, 2 directory, 3 symlink, 4 fifo, 5 socket,
//!                                     6 character device, 7 block device
//! (ino,   XATTR,    name hash)        XattrEntry*: every xattr of ino whose name has this hash
//! (ino,   XATTR_VALUE, slot << 16 | part)
//!                                     part `part` of an external xattr value (below)
//! (ino,   EXTENT,   file block)       ExtentItem (below)
//! (ino,   SYMLINK,  part)             the target bytes, in parts 0, 1, ... of at most
//!                                     `max_item_value` bytes each
//! (0,     ORPHAN,   ino)              empty: ino has no links left and is deleted at next mount
//! (ino,   UNWRITTEN, file block)      blocks u64: a run of file blocks reserved by fallocate and
//!                                     never written (reads see zeros; no device blocks yet)
//! (0,     UNWRITTEN, ino)             blocks u64: the total of ino's UNWRITTEN runs
//! (0,     SCRUB,    0 or 1)           ScrubItem, 128 bytes: the running or paused online scrub
//!                                     (0) and the last finished one (1); see `format::scrub`
//!
//! InodeItem
//!   0 mode u32 | 4 uid u32 | 8 gid u32 | 12 nlink u32 | 16 size u64 | 24 blocks u64 (allocated)
//!  32 rdev u32 | 36 flags u32 (inode flags, `FS_IOC_GETFLAGS` bits; 0 on images made
//!     before they existed) | 40 atime | 52 mtime | 64 ctime | 76 crtime
//!     (each: seconds i64, nanoseconds u32)
//!  88 parent u64 (directories: the ino of "..") | 96 next_cookie u64 (directories: next
//!     readdir cookie to hand out) | 104 generation u64 (told to the kernel with every entry,
//!     kept in file handles: tells this inode from an earlier one of the same number; 0 on
//!     images made before it existed)
//!   (blocks: mapped by EXTENT items plus reserved by UNWRITTEN ones)
//!
//! XattrEntry, one of two forms told apart by the u16 at byte 1:
//!   inline    0 name len u8 (1..=255) | 1 value len u16 (< 0xffff) | 3 name | value
//!   external  0 name len u8 (1..=255) | 1 0xffff u16 (XATTR_EXTERNAL) | 3 name |
//!             then value len u32 (1..=XATTR_SIZE_MAX) | slot u64 (< 2^48)
//!   An inline value lives in the bucket (every value of images made before external values
//!   existed; an item is far shorter than 0xffff bytes, so no inline entry has that length).
//!   An external value (one too big for its bucket) lives in XATTR_VALUE items
//!   (ino, XATTR_VALUE, slot << 16 | part) for part 0, 1, ..., n - 1: each part holds exactly
//!   `max_item_value(block_size)` bytes but the last, which holds the rest (1 byte or more).
//!   The slot is the entry's own: no two xattrs of one inode share one. An image with an
//!   external entry has FEATURE_INCOMPAT_XATTR_VALUES set, so an older stablefs refuses it.
//!
//! ExtentItem, 20 + 4n bytes (one copy) or 28 + 4n bytes (two copies)
//!   0 disk start u64      first device block of the extent (its first copy)
//!   8 blocks u32          bits 0-30: n, the extent's length in blocks (n >= 1);
//!                         bit 31 (EXTENT_HAS_COPY): a second copy follows (copies=2,
//!                         incompat FEATURE_INCOMPAT_DATA_COPIES)
//!  12 birth gen u64       the commit that wrote the blocks
//!  20 copy start u64      only with bit 31: first device block of the second copy, a
//!                         contiguous run of n blocks holding the same bytes, disjoint from
//!                         the first copy
//!  20 or 28               crc32c u32 per block, in order (one crc checks both copies)
//! ```

use super::codec::{Dec, Enc};
use super::copies::Copies;
use super::node::{max_item_value, Key};
use super::posix::{FileKind, Timespec};
use super::MIN_BLOCK_SIZE;
use crate::error::Result;

pub const KIND_INODE: u8 = 1;
pub const KIND_DIRENT: u8 = 2;
pub const KIND_DIRINDEX: u8 = 3;
pub const KIND_XATTR: u8 = 4;
pub const KIND_EXTENT: u8 = 5;
pub const KIND_SYMLINK: u8 = 6;
pub const KIND_ORPHAN: u8 = 7;
pub const KIND_UNWRITTEN: u8 = 8;
pub const KIND_SCRUB: u8 = 9;
pub const KIND_XATTR_VALUE: u8 = 10;
/// Object id of filesystem-wide items (orphans, unwritten totals, the scrub's record).
pub const OBJECT_FS: u64 = 0;
/// First cookie handed to real entries; 1 and 2 are "." and "..".
pub const FIRST_COOKIE: u64 = 3;

/// A time inside an item: seconds, then nanoseconds.
pub const TIME_SEC_OFF: usize = 0;
pub const TIME_NSEC_OFF: usize = TIME_SEC_OFF + 8;
pub const TIME_SIZE: usize = TIME_NSEC_OFF + 4;

/// Field offsets inside an `InodeItem`, as in the byte map above; each follows the one before.
pub const INODE_MODE_OFF: usize = 0;
pub const INODE_UID_OFF: usize = INODE_MODE_OFF + 4;
pub const INODE_GID_OFF: usize = INODE_UID_OFF + 4;
pub const INODE_NLINK_OFF: usize = INODE_GID_OFF + 4;
pub const INODE_SIZE_OFF: usize = INODE_NLINK_OFF + 4;
pub const INODE_BLOCKS_OFF: usize = INODE_SIZE_OFF + 8;
pub const INODE_RDEV_OFF: usize = INODE_BLOCKS_OFF + 8;
pub const INODE_FLAGS_OFF: usize = INODE_RDEV_OFF + 4;
pub const INODE_ATIME_OFF: usize = INODE_FLAGS_OFF + 4;
pub const INODE_MTIME_OFF: usize = INODE_ATIME_OFF + TIME_SIZE;
pub const INODE_CTIME_OFF: usize = INODE_MTIME_OFF + TIME_SIZE;
pub const INODE_CRTIME_OFF: usize = INODE_CTIME_OFF + TIME_SIZE;
pub const INODE_PARENT_OFF: usize = INODE_CRTIME_OFF + TIME_SIZE;
pub const INODE_NEXT_COOKIE_OFF: usize = INODE_PARENT_OFF + 8;
pub const INODE_GENERATION_OFF: usize = INODE_NEXT_COOKIE_OFF + 8;
pub const INODE_ITEM_SIZE: usize = 112;

/// Offsets inside one entry of a DIRENT bucket; the name fills the rest of the entry.
pub const DIRENT_INO_OFF: usize = 0;
pub const DIRENT_COOKIE_OFF: usize = DIRENT_INO_OFF + 8;
pub const DIRENT_KIND_OFF: usize = DIRENT_COOKIE_OFF + 8;
pub const DIRENT_NAME_LEN_OFF: usize = DIRENT_KIND_OFF + 1;
pub const DIRENT_NAME_OFF: usize = DIRENT_NAME_LEN_OFF + 1;

/// Offsets inside a DIRINDEX item (its cookie is the key's offset); the name fills the rest.
pub const DIRINDEX_INO_OFF: usize = 0;
pub const DIRINDEX_KIND_OFF: usize = DIRINDEX_INO_OFF + 8;
pub const DIRINDEX_NAME_LEN_OFF: usize = DIRINDEX_KIND_OFF + 1;
pub const DIRINDEX_NAME_OFF: usize = DIRINDEX_NAME_LEN_OFF + 1;

/// Offsets inside one entry of an XATTR bucket; the name, then the value, fill the rest.
pub const XATTR_NAME_LEN_OFF: usize = 0;
pub const XATTR_VALUE_LEN_OFF: usize = XATTR_NAME_LEN_OFF + 1;
pub const XATTR_NAME_OFF: usize = XATTR_VALUE_LEN_OFF + 2;
/// The value length of an external entry: its value is in XATTR_VALUE items.
pub const XATTR_EXTERNAL: u16 = 0xffff;
/// Offsets, after the name, inside an external entry.
pub const XATTR_EXT_LEN_OFF: usize = 0;
pub const XATTR_EXT_SLOT_OFF: usize = XATTR_EXT_LEN_OFF + 4;
pub const XATTR_EXT_SIZE: usize = XATTR_EXT_SLOT_OFF + 8;
/// Longest xattr value (Linux's `XATTR_SIZE_MAX`) and name (`XATTR_NAME_MAX`).
pub const XATTR_SIZE_MAX: usize = 65536;
pub const XATTR_NAME_MAX: usize = 255;
/// An XATTR_VALUE key's offset: the slot above `XATTR_PART_BITS` bits of part number.
pub const XATTR_PART_BITS: u32 = 16;
/// Slots are below 2^48 (they fill the key offset's upper 48 bits).
pub const XATTR_SLOT_LIMIT: u64 = 1 << (64 - XATTR_PART_BITS);

/// Field offsets inside an `ExtentItem`; the crc array starts at `EXTENT_CRCS_OFF` or, when
/// the item has a second copy, at `EXTENT_CRCS_WITH_COPY_OFF`.
pub const EXTENT_DISK_START_OFF: usize = 0;
pub const EXTENT_BLOCKS_OFF: usize = EXTENT_DISK_START_OFF + 8;
pub const EXTENT_BIRTH_GEN_OFF: usize = EXTENT_BLOCKS_OFF + 4;
pub const EXTENT_CRCS_OFF: usize = EXTENT_BIRTH_GEN_OFF + 8;
pub const EXTENT_COPY_START_OFF: usize = EXTENT_BIRTH_GEN_OFF + 8;
pub const EXTENT_CRCS_WITH_COPY_OFF: usize = EXTENT_COPY_START_OFF + 8;

/// An UNWRITTEN item: one u64 block count.
pub const BLOCK_COUNT_SIZE: usize = 8;

const _: () = assert!(INODE_GENERATION_OFF + 8 == INODE_ITEM_SIZE);
const _: () = assert!(TIME_SIZE == 12);
const _: () = assert!(EXTENT_CRCS_OFF == 20 && EXTENT_CRCS_WITH_COPY_OFF == 28);
// Every item kind fits a leaf of the smallest block size: an inode, a block count, a one-block
// extent with its second copy, and a bucket entry with the longest name a u8 length allows.
const _: () = assert!(INODE_ITEM_SIZE <= max_item_value(MIN_BLOCK_SIZE));
const _: () = assert!(BLOCK_COUNT_SIZE <= max_item_value(MIN_BLOCK_SIZE));
const _: () = assert!(EXTENT_CRCS_WITH_COPY_OFF + 4 <= max_item_value(MIN_BLOCK_SIZE));
const _: () = assert!(DIRENT_NAME_OFF + u8::MAX as usize <= max_item_value(MIN_BLOCK_SIZE));
const _: () =
    assert!(XATTR_NAME_OFF + u8::MAX as usize + XATTR_EXT_SIZE <= max_item_value(MIN_BLOCK_SIZE));
// No inline value can be as long as the external marker, even in the largest blocks.
const _: () = assert!(max_item_value(super::MAX_BLOCK_SIZE) < XATTR_EXTERNAL as usize);
// The parts of the longest value, in the smallest blocks, number well below 2^16.
const _: () =
    assert!(XATTR_SIZE_MAX.div_ceil(max_item_value(MIN_BLOCK_SIZE)) < 1 << XATTR_PART_BITS);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InodeItem {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub blocks: u64,
    pub rdev: u32,
    /// Inode flags (`FS_IOC_GETFLAGS` bits).
    pub flags: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub crtime: Timespec,
    pub parent: u64,
    pub next_cookie: u64,
    /// Tells this inode from an earlier one that had the same number (file handles).
    pub generation: u64,
}

fn enc_time(e: &mut Enc, t: Timespec) {
    e.i64(t.sec).u32(t.nsec);
}

fn dec_time(d: &mut Dec) -> Result<Timespec> {
    let sec = d.i64()?;
    let nsec = d.u32()?;
    if nsec >= 1_000_000_000 {
        return d.corrupt(format_args!("nanoseconds {nsec}"));
    }
    Ok(Timespec { sec, nsec })
}

impl InodeItem {
    /// An empty directory owned by root, created `now`, whose ".." is `parent`.
    pub fn empty_root_dir(perm: u32, parent: u64, now: Timespec) -> InodeItem {
        InodeItem {
            mode: libc::S_IFDIR | perm,
            uid: 0,
            gid: 0,
            nlink: 2,
            size: 0,
            blocks: 0,
            rdev: 0,
            flags: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            parent,
            next_cookie: FIRST_COOKIE,
            generation: 0,
        }
    }

    pub fn kind(&self) -> FileKind {
        // decode() guarantees a valid S_IFMT.
        FileKind::from_mode(self.mode).unwrap_or(FileKind::File)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::with_capacity(INODE_ITEM_SIZE);
        e.u32(self.mode).u32(self.uid).u32(self.gid).u32(self.nlink);
        e.u64(self.size)
            .u64(self.blocks)
            .u32(self.rdev)
            .u32(self.flags);
        for t in [self.atime, self.mtime, self.ctime, self.crtime] {
            enc_time(&mut e, t);
        }
        e.u64(self.parent)
            .u64(self.next_cookie)
            .u64(self.generation);
        debug_assert_eq!(e.len(), INODE_ITEM_SIZE);
        e.buf
    }

    pub fn decode(bytes: &[u8]) -> Result<InodeItem> {
        let mut d = Dec::new(bytes, "inode item");
        if bytes.len() != INODE_ITEM_SIZE {
            return d.corrupt(format_args!("{} bytes", bytes.len()));
        }
        let mode = d.u32()?;
        if FileKind::from_mode(mode).is_none() {
            return d.corrupt(format_args!("mode {mode:o}"));
        }
        let (uid, gid, nlink) = (d.u32()?, d.u32()?, d.u32()?);
        let (size, blocks, rdev, flags) = (d.u64()?, d.u64()?, d.u32()?, d.u32()?);
        let (atime, mtime, ctime, crtime) = (
            dec_time(&mut d)?,
            dec_time(&mut d)?,
            dec_time(&mut d)?,
            dec_time(&mut d)?,
        );
        let (parent, next_cookie, generation) = (d.u64()?, d.u64()?, d.u64()?);
        Ok(InodeItem {
            mode,
            uid,
            gid,
            nlink,
            size,
            blocks,
            rdev,
            flags,
            atime,
            mtime,
            ctime,
            crtime,
            parent,
            next_cookie,
            generation,
        })
    }
}

fn kind_code(k: FileKind) -> u8 {
    match k {
        FileKind::File => 1,
        FileKind::Dir => 2,
        FileKind::Symlink => 3,
        FileKind::Fifo => 4,
        FileKind::Socket => 5,
        FileKind::CharDev => 6,
        FileKind::BlockDev => 7,
    }
}

fn kind_from_code(d: &Dec, c: u8) -> Result<FileKind> {
    Ok(match c {
        1 => FileKind::File,
        2 => FileKind::Dir,
        3 => FileKind::Symlink,
        4 => FileKind::Fifo,
        5 => FileKind::Socket,
        6 => FileKind::CharDev,
        7 => FileKind::BlockDev,
        _ => return d.corrupt(format_args!("file kind {c}")),
    })
}

fn dec_name(d: &mut Dec) -> Result<Vec<u8>> {
    let n = d.u8()? as usize;
    if n == 0 {
        return d.corrupt("empty name");
    }
    let name = d.bytes(n)?;
    if name.contains(&0) || name.contains(&b'/') {
        return d.corrupt("name with NUL or '/'");
    }
    Ok(name.to_vec())
}

/// One name in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirLink {
    pub name: Vec<u8>,
    pub ino: u64,
    pub kind: FileKind,
    pub cookie: u64,
}

/// The DIRENT bucket: every name of a directory that hashes to one value.
pub fn encode_dirent_bucket(links: &[DirLink]) -> Vec<u8> {
    let mut e = Enc::default();
    for l in links {
        e.u64(l.ino)
            .u64(l.cookie)
            .u8(kind_code(l.kind))
            .u8(l.name.len() as u8)
            .bytes(&l.name);
    }
    e.buf
}

pub fn decode_dirent_bucket(bytes: &[u8]) -> Result<Vec<DirLink>> {
    let mut d = Dec::new(bytes, "directory entry");
    let mut out = Vec::new();
    while d.remaining() > 0 {
        let ino = d.u64()?;
        let cookie = d.u64()?;
        let c = d.u8()?;
        let kind = kind_from_code(&d, c)?;
        let name = dec_name(&mut d)?;
        out.push(DirLink {
            name,
            ino,
            kind,
            cookie,
        });
    }
    if out.is_empty() {
        return d.corrupt("empty bucket");
    }
    Ok(out)
}

/// The DIRINDEX item (the cookie is in the key).
pub fn encode_dirindex(ino: u64, kind: FileKind, name: &[u8]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u64(ino)
        .u8(kind_code(kind))
        .u8(name.len() as u8)
        .bytes(name);
    e.buf
}

pub fn decode_dirindex(bytes: &[u8], cookie: u64) -> Result<DirLink> {
    let mut d = Dec::new(bytes, "directory index");
    let ino = d.u64()?;
    let c = d.u8()?;
    let kind = kind_from_code(&d, c)?;
    let name = dec_name(&mut d)?;
    if d.remaining() != 0 {
        return d.corrupt("trailing bytes");
    }
    Ok(DirLink {
        name,
        ino,
        kind,
        cookie,
    })
}

/// Where an xattr's value is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XattrValue {
    /// In the bucket.
    Inline(Vec<u8>),
    /// In `len` bytes of XATTR_VALUE items under `slot` (see the byte map above).
    External { len: u32, slot: u64 },
}

impl XattrValue {
    /// The value's length in bytes.
    pub fn len(&self) -> usize {
        match self {
            XattrValue::Inline(v) => v.len(),
            XattrValue::External { len, .. } => *len as usize,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One xattr in an XATTR bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XattrEntry {
    pub name: Vec<u8>,
    pub value: XattrValue,
}

impl XattrEntry {
    pub fn inline(name: &[u8], value: &[u8]) -> XattrEntry {
        XattrEntry {
            name: name.to_vec(),
            value: XattrValue::Inline(value.to_vec()),
        }
    }
    /// Bytes the entry takes in its bucket.
    pub fn encoded_len(&self) -> usize {
        XATTR_NAME_OFF
            + self.name.len()
            + match &self.value {
                XattrValue::Inline(v) => v.len(),
                XattrValue::External { .. } => XATTR_EXT_SIZE,
            }
    }
}

/// The XATTR bucket: every xattr of an inode whose name hashes to one value. Names are 1 to
/// 255 bytes, inline values shorter than `XATTR_EXTERNAL` (the caller's to ensure: every
/// bucket fits an item).
pub fn encode_xattr_bucket(entries: &[XattrEntry]) -> Vec<u8> {
    let mut e = Enc::default();
    for x in entries {
        debug_assert!((1..=XATTR_NAME_MAX).contains(&x.name.len()));
        e.u8(x.name.len() as u8);
        match &x.value {
            XattrValue::Inline(v) => {
                debug_assert!(v.len() < XATTR_EXTERNAL as usize);
                e.u16(v.len() as u16).bytes(&x.name).bytes(v);
            }
            XattrValue::External { len, slot } => {
                e.u16(XATTR_EXTERNAL).bytes(&x.name).u32(*len).u64(*slot);
            }
        }
    }
    e.buf
}

pub fn decode_xattr_bucket(bytes: &[u8]) -> Result<Vec<XattrEntry>> {
    let mut d = Dec::new(bytes, "xattr");
    let mut out = Vec::new();
    while d.remaining() > 0 {
        let nl = d.u8()? as usize;
        let vl = d.u16()?;
        if nl == 0 {
            return d.corrupt("empty xattr name");
        }
        let name = d.bytes(nl)?.to_vec();
        let value = if vl == XATTR_EXTERNAL {
            let len = d.u32()?;
            let slot = d.u64()?;
            if len == 0 || len as usize > XATTR_SIZE_MAX {
                return d.corrupt(format_args!("external xattr value of {len} bytes"));
            }
            if slot >= XATTR_SLOT_LIMIT {
                return d.corrupt(format_args!("xattr value slot {slot:#x}"));
            }
            XattrValue::External { len, slot }
        } else {
            XattrValue::Inline(d.bytes(vl as usize)?.to_vec())
        };
        out.push(XattrEntry { name, value });
    }
    if out.is_empty() {
        return d.corrupt("empty bucket");
    }
    Ok(out)
}

/// The key of part `part` of the external xattr value in `slot` of inode `ino`.
pub fn xattr_part_key(ino: u64, slot: u64, part: u64) -> Key {
    Key::new(ino, KIND_XATTR_VALUE, slot << XATTR_PART_BITS | part)
}

/// The (slot, part) of an XATTR_VALUE key's offset.
pub fn xattr_part_of(offset: u64) -> (u64, u64) {
    (
        offset >> XATTR_PART_BITS,
        offset & ((1 << XATTR_PART_BITS) - 1),
    )
}

/// The lengths of the parts of an external value of `len` bytes, in order.
pub fn xattr_part_lens(len: usize, block_size: u32) -> Vec<usize> {
    let part = max_item_value(block_size);
    (0..len.div_ceil(part))
        .map(|i| part.min(len - i * part))
        .collect()
}

/// Bit 31 of an extent item's block count: a second copy's start follows the birth generation.
pub const EXTENT_HAS_COPY: u32 = 1 << 31;

/// A run of file blocks stored contiguously on the device (and, with `copies=2`, a second
/// contiguous run of the same length holding the same bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtentItem {
    pub disk_start: u64,
    /// First block of the second copy (`copies=2`), `crcs.len()` blocks long.
    pub copy_start: Option<u64>,
    pub birth_gen: u64,
    /// crc32c of each block, in order; the extent is `crcs.len()` blocks long.
    pub crcs: Vec<u32>,
}

impl ExtentItem {
    pub fn len(&self) -> u64 {
        self.crcs.len() as u64
    }
    pub fn is_empty(&self) -> bool {
        self.crcs.is_empty()
    }
    /// Most blocks one extent item may map for a block size (its crc array, and a copy's
    /// start, must fit an item).
    pub fn max_blocks(block_size: u32) -> usize {
        ((max_item_value(block_size) - EXTENT_CRCS_WITH_COPY_OFF) / 4).min(256)
    }
    /// An extent of `crcs.len()` blocks whose copies start at `starts`, written by commit
    /// `birth_gen`. The format holds one or two copies (see `Copies`).
    pub fn new(starts: Copies, birth_gen: u64, crcs: Vec<u32>) -> ExtentItem {
        debug_assert!(
            starts.len() <= 2,
            "the extent encoding holds at most two copies"
        );
        ExtentItem {
            disk_start: starts.first(),
            copy_start: starts.get(1),
            birth_gen,
            crcs,
        }
    }
    /// Where the copies of the extent's runs start, first copy first.
    pub fn starts(&self) -> Copies {
        match self.copy_start {
            Some(c) => Copies::new(&[self.disk_start, c]).expect("two copies"),
            None => Copies::one(self.disk_start),
        }
    }
    /// Where the copies of the extent's block `i` are.
    pub fn copies(&self, i: u64) -> Copies {
        self.starts().offset(i)
    }
    /// The device block holding copy `copy` (0: first) of the extent's block `i`.
    pub fn block_of(&self, copy: usize, i: u64) -> Option<u64> {
        self.copies(i).get(copy)
    }
    /// The extent's blocks `[a, b)` (indices into it) as an extent of their own.
    pub fn slice(&self, a: usize, b: usize) -> ExtentItem {
        ExtentItem {
            disk_start: self.disk_start + a as u64,
            copy_start: self.copy_start.map(|c| c + a as u64),
            birth_gen: self.birth_gen,
            crcs: self.crcs[a..b].to_vec(),
        }
    }
    /// Every device run the extent occupies: `(start, len)` of each copy, first copy first.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> {
        let (n, starts) = (self.len(), self.starts());
        (0..starts.len()).map(move |k| (starts.get(k).expect("k < len"), n))
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::with_capacity(EXTENT_CRCS_WITH_COPY_OFF + 4 * self.crcs.len());
        debug_assert!(self.crcs.len() < EXTENT_HAS_COPY as usize);
        let flag = if self.copy_start.is_some() {
            EXTENT_HAS_COPY
        } else {
            0
        };
        e.u64(self.disk_start)
            .u32(self.crcs.len() as u32 | flag)
            .u64(self.birth_gen);
        if let Some(c) = self.copy_start {
            e.u64(c);
        }
        for c in &self.crcs {
            e.u32(*c);
        }
        e.buf
    }
    /// Decodes and checks that the extent, and its second copy if it has one, lie inside
    /// `[first, total)` and that the two copies do not overlap.
    pub fn decode(bytes: &[u8], first: u64, total: u64) -> Result<ExtentItem> {
        let mut d = Dec::new(bytes, "extent");
        let disk_start = d.u64()?;
        let raw = d.u32()?;
        let n = (raw & !EXTENT_HAS_COPY) as usize;
        let birth_gen = d.u64()?;
        let copy_start = if raw & EXTENT_HAS_COPY != 0 {
            Some(d.u64()?)
        } else {
            None
        };
        if n == 0 || d.remaining() != 4 * n {
            return d.corrupt(format_args!("{n} blocks but {} crc bytes", d.remaining()));
        }
        let inside =
            |s: u64| matches!(s.checked_add(n as u64), Some(end) if s >= first && end <= total);
        if !inside(disk_start) {
            return d.corrupt(format_args!(
                "extent {disk_start}+{n} outside [{first}, {total})"
            ));
        }
        if let Some(c) = copy_start {
            if !inside(c) {
                return d.corrupt(format_args!(
                    "second copy {c}+{n} of extent {disk_start} outside [{first}, {total})"
                ));
            }
            // Both ends are known not to overflow (checked just above).
            if c < disk_start + n as u64 && disk_start < c + n as u64 {
                return d.corrupt(format_args!(
                    "second copy {c}+{n} overlaps its extent {disk_start}+{n}"
                ));
            }
        }
        let crcs = (0..n).map(|_| d.u32()).collect::<Result<Vec<_>>>()?;
        Ok(ExtentItem {
            disk_start,
            copy_start,
            birth_gen,
            crcs,
        })
    }
}

/// The UNWRITTEN items: a block count, never zero.
pub fn encode_block_count(n: u64) -> Vec<u8> {
    let mut e = Enc::with_capacity(BLOCK_COUNT_SIZE);
    e.u64(n);
    e.buf
}

pub fn decode_block_count(bytes: &[u8]) -> Result<u64> {
    let mut d = Dec::new(bytes, "unwritten blocks");
    let n = d.u64()?;
    if n == 0 || d.remaining() != 0 {
        return d.corrupt(format_args!("{n} blocks in {} bytes", bytes.len()));
    }
    Ok(n)
}

/// The 64-bit name hash used in DIRENT and XATTR keys (two crc32c with different seeds).
pub fn name_hash(name: &[u8]) -> u64 {
    let hi = crc32c::crc32c(name);
    let lo = crc32c::crc32c_append(0x9E37_79B9, name);
    (u64::from(hi) << 32) | u64::from(lo)
}
