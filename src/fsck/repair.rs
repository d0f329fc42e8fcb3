//! `--repair`: one new commit, built with the filesystem's own machinery (`Meta`, `Tree`
//! copy-on-write inserts and removes, `Meta::prepare_commit`, `txn::write_commit`), so a crash
//! during the repair leaves the checked commit as it was.
//!
//! What it changes, and nothing else: ORPHAN items (orphans without names are deleted, as the
//! next mount would; ORPHAN items of inodes that have names or do not exist are dropped),
//! directory halves (DIRENT buckets and DIRINDEX entries rebuilt from the merged names),
//! detached inodes (named `#INO` in `/lost+found`, created if missing), the fields of an inode
//! that follow from the rest of the tree (`nlink`, `blocks`, `parent`, `next_cookie`), and the
//! superblock's counters; and xattrs whose external value is damaged (dropped, with what is
//! left of the value), value parts no xattr claims (dropped), and the external values'
//! feature bit if it is missing. It never rewrites a block to make a checksum match: a commit with
//! damaged metadata is not repaired at all (`mod.rs` refuses first).

use super::namespace::{expected_nlink, max_cookie, Analysis, Entry, Names, LOST_FOUND};
use super::scan::Scan;
use crate::alloc::Allocator;
use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::format::{
    decode_xattr_bucket, encode_dirent_bucket, encode_dirindex, encode_xattr_bucket, name_hash,
    xattr_part_key, DirLink, ExtentItem, InodeItem, Key, XattrValue, FEATURE_INCOMPAT_XATTR_VALUES,
    FIRST_COOKIE, KIND_DIRENT, KIND_DIRINDEX, KIND_EXTENT, KIND_INODE, KIND_ORPHAN, KIND_XATTR,
    OBJECT_FS, XATTR_PART_BITS,
};
use crate::format::{FileKind, Timespec, ROOT_INO};
use crate::tree::{Tree, TreeIo};
use crate::txn::{write_commit, Meta};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What the repair did.
pub(super) struct Outcome {
    /// The generation of the repair commit, if one was written.
    pub generation: Option<u64>,
    pub actions: Vec<String>,
}

struct Repair<'a> {
    dev: Arc<dyn BlockDevice>,
    scan: &'a Scan,
    meta: Meta,
    /// The inodes as they will be.
    inodes: BTreeMap<u64, InodeItem>,
    /// The directories' names as they will be.
    names: BTreeMap<u64, Names>,
    /// Inodes deleted (orphans).
    purged: BTreeSet<u64>,
    /// A superblock feature bit changed.
    feature_set: bool,
    actions: Vec<String>,
}

pub(super) fn repair(dev: Arc<dyn BlockDevice>, scan: &Scan, a: &Analysis) -> Result<Outcome> {
    let sb = scan.sb.clone();
    let io = TreeIo::new(dev.clone(), scan.id, sb.metadata_dup());
    // Loads (and verifies again) only the nodes the repair touches.
    let tree = Tree::open(io, sb.root, sb.root_level)?;
    // The free map, as mount rebuilds it: everything the commit does not reference.
    let mut alloc = Allocator::new(sb.first_block, sb.total_blocks);
    for r in &scan.refs {
        if !alloc.mark_used(r.start, r.len) {
            return Err(Error::Corrupt(format!(
                "blocks {}+{} are referenced twice",
                r.start, r.len
            )));
        }
    }
    let max_ino = scan.inodes.keys().next_back().copied().unwrap_or(ROOT_INO);
    let meta = Meta {
        tree,
        alloc,
        next_ino: sb.next_ino.max(max_ino + 1),
        inode_count: scan.inodes.len() as u64,
        sb,
        damage: Vec::new(),
        orphans: Vec::new(),
    };
    let mut r = Repair {
        dev,
        scan,
        meta,
        inodes: scan.inodes.clone(),
        names: a.names.clone(),
        purged: BTreeSet::new(),
        feature_set: false,
        actions: Vec::new(),
    };
    r.orphans(a)?;
    r.xattrs(a)?;
    for &d in &a.rebuild {
        r.rebuild_dir(d)?;
    }
    r.lost_and_found(a)?;
    r.derived_fields()?;
    r.commit()
}

impl Repair<'_> {
    fn orphans(&mut self, a: &Analysis) -> Result<()> {
        for &o in &a.drop_orphan {
            self.meta
                .tree
                .remove(&Key::new(OBJECT_FS, KIND_ORPHAN, o))?;
            self.actions
                .push(format!("inode {o}: removed from the orphan list"));
        }
        for &o in &a.purge {
            self.purge(o)?;
            self.actions.push(format!(
                "inode {o}: deleted (orphaned: no names left, as the next mount would)"
            ));
        }
        Ok(())
    }

    /// Drops damaged xattrs and unclaimed value parts; sets a missing feature bit.
    fn xattrs(&mut self, a: &Analysis) -> Result<()> {
        for (ino, name) in &a.drop_xattrs {
            if self.purged.contains(ino) {
                continue;
            }
            let key = Key::new(*ino, KIND_XATTR, name_hash(name));
            let Some(v) = self.meta.tree.get(&key)? else {
                continue;
            };
            let mut list = decode_xattr_bucket(&v)?;
            let Some(p) = list.iter().position(|x| &x.name == name) else {
                continue;
            };
            if let XattrValue::External { slot, .. } = list.remove(p).value {
                self.drop_parts(*ino, slot)?;
            }
            if list.is_empty() {
                self.meta.tree.remove(&key)?;
            } else {
                self.meta.tree.insert(key, encode_xattr_bucket(&list))?;
            }
            self.actions.push(format!(
                "inode {ino}: xattr {} dropped (its value was damaged)",
                String::from_utf8_lossy(name)
            ));
        }
        for &(ino, slot) in &a.drop_xattr_parts {
            if self.purged.contains(&ino) {
                continue;
            }
            let n = self.drop_parts(ino, slot)?;
            self.actions.push(format!(
                "inode {ino}: {n} xattr value part(s) no xattr claims dropped (slot {slot:#x})"
            ));
        }
        if a.set_xattr_feature {
            self.meta.sb.incompat |= FEATURE_INCOMPAT_XATTR_VALUES;
            self.feature_set = true;
            self.actions
                .push("superblock: external xattr values feature set".into());
        }
        Ok(())
    }

    /// Removes every part of the external value in `slot` of `ino`; returns how many.
    fn drop_parts(&mut self, ino: u64, slot: u64) -> Result<usize> {
        let from = xattr_part_key(ino, slot, 0);
        let to = xattr_part_key(ino, slot, (1 << XATTR_PART_BITS) - 1);
        let parts = self.meta.tree.range(&from, &to, usize::MAX)?;
        for (k, _) in &parts {
            self.meta.tree.remove(k)?;
        }
        Ok(parts.len())
    }

    /// Deletes an inode and every item it owns; its data blocks are freed by the commit.
    fn purge(&mut self, ino: u64) -> Result<()> {
        let (from, to) = (Key::new(ino, 0, 0), Key::new(ino, u8::MAX, u64::MAX));
        let (first, total) = (self.scan.sb.first_block, self.scan.sb.total_blocks);
        loop {
            let items = self.meta.tree.range(&from, &to, 256)?;
            if items.is_empty() {
                break;
            }
            for (k, v) in items {
                if k.kind == KIND_EXTENT {
                    let e = ExtentItem::decode(&v, first, total)?;
                    for (s, l) in e.runs() {
                        self.meta.alloc.free_later(s, l);
                    }
                }
                self.meta.tree.remove(&k)?;
            }
        }
        self.meta
            .tree
            .remove(&Key::new(OBJECT_FS, KIND_ORPHAN, ino))?;
        self.inodes.remove(&ino);
        self.names.remove(&ino);
        self.purged.insert(ino);
        self.meta.inode_count -= 1;
        Ok(())
    }

    /// A cookie above every cookie directory `d` has handed out; advances its `next_cookie`.
    fn new_cookie(&mut self, d: u64) -> u64 {
        let scan = self.scan;
        let seen = max_cookie(scan, &Analysis::default(), d)
            .into_iter()
            .chain(self.names.get(&d).into_iter().flatten().map(|e| e.1.cookie))
            .max()
            .map_or(FIRST_COOKIE, |m| m + 1);
        // Only directories that exist are rebuilt or added to (`namespace` sees to it).
        let Some(inode) = self.inodes.get_mut(&d) else {
            return seen;
        };
        let c = inode.next_cookie.max(seen).max(FIRST_COOKIE);
        inode.next_cookie = c + 1;
        c
    }

    /// Rewrites directory `d`'s DIRENT buckets and DIRINDEX entries so both hold exactly its
    /// merged names, giving a fresh cookie to a name whose cookie is reserved or taken.
    fn rebuild_dir(&mut self, d: u64) -> Result<()> {
        let names = self.renumber_cookies(d);
        let buckets = self.rewrite_dirent_buckets(d, &names)?;
        let entries = self.rewrite_dirindex(d, &names)?;
        self.actions.push(format!(
            "directory {d}: rebuilt {buckets} lookup bucket(s) and {entries} readdir entr{} from the surviving halves",
            if entries == 1 { "y" } else { "ies" }
        ));
        Ok(())
    }

    /// Directory `d`'s merged names with a cookie each of their own, also left in
    /// `self.names`. They are put back there before the fresh cookies are drawn, so
    /// `new_cookie` sees every cookie the directory already uses.
    fn renumber_cookies(&mut self, d: u64) -> Names {
        let mut names = self.names.remove(&d).unwrap_or_default();
        let renumber = names_to_renumber(self.scan, d, &names);
        self.names.insert(d, names.clone());
        for n in renumber {
            let c = self.new_cookie(d);
            if let Some(e) = names.get_mut(&n) {
                e.cookie = c;
            }
        }
        self.names.insert(d, names.clone());
        names
    }

    /// DIRENT buckets of directory `d`: desired against present, bucket by bucket; each that
    /// differs is rewritten, or removed if it should be empty. Returns how many.
    fn rewrite_dirent_buckets(&mut self, d: u64, names: &Names) -> Result<usize> {
        let scan = self.scan;
        let mut want: BTreeMap<u64, Vec<DirLink>> = BTreeMap::new();
        for (n, e) in names {
            want.entry(name_hash(n)).or_default().push(link(n, e));
        }
        let mut have: BTreeMap<u64, Vec<DirLink>> = BTreeMap::new();
        for (h, l) in scan.dirents.get(&d).into_iter().flatten() {
            have.entry(*h).or_default().push(l.clone());
        }
        let mut buckets = 0;
        for h in want
            .keys()
            .chain(have.keys())
            .copied()
            .collect::<BTreeSet<_>>()
        {
            let mut w = want.remove(&h).unwrap_or_default();
            let mut x = have.remove(&h).unwrap_or_default();
            w.sort_by(|a, b| a.name.cmp(&b.name));
            x.sort_by(|a, b| a.name.cmp(&b.name));
            if w == x {
                continue;
            }
            buckets += 1;
            let key = Key::new(d, KIND_DIRENT, h);
            if w.is_empty() {
                self.meta.tree.remove(&key)?;
            } else {
                self.meta.tree.insert(key, encode_dirent_bucket(&w))?;
            }
        }
        Ok(buckets)
    }

    /// DIRINDEX entries of directory `d`: desired against present, cookie by cookie; each that
    /// differs is rewritten, or removed if no name has its cookie. Returns how many.
    fn rewrite_dirindex(&mut self, d: u64, names: &Names) -> Result<usize> {
        let scan = self.scan;
        let want: BTreeMap<u64, DirLink> =
            names.iter().map(|(n, e)| (e.cookie, link(n, e))).collect();
        let have: BTreeMap<u64, &DirLink> = scan
            .dirindex
            .get(&d)
            .into_iter()
            .flatten()
            .map(|l| (l.cookie, l))
            .collect();
        let mut entries = 0;
        for c in want
            .keys()
            .chain(have.keys())
            .copied()
            .collect::<BTreeSet<_>>()
        {
            let (w, x) = (want.get(&c), have.get(&c));
            if w == x.copied() {
                continue;
            }
            entries += 1;
            let key = Key::new(d, KIND_DIRINDEX, c);
            match w {
                Some(l) => self
                    .meta
                    .tree
                    .insert(key, encode_dirindex(l.ino, l.kind, &l.name))?,
                None => {
                    self.meta.tree.remove(&key)?;
                }
            }
        }
        Ok(entries)
    }

    /// Adds `name -> e.ino` to directory `d` (both halves), with a fresh cookie.
    fn add_name(&mut self, d: u64, name: &[u8], ino: u64, kind: FileKind) -> Result<()> {
        let cookie = self.new_cookie(d);
        crate::fs::namespace::add_name(&mut self.meta.tree, d, name, ino, kind, cookie)?;
        self.names
            .entry(d)
            .or_default()
            .insert(name.to_vec(), Entry { ino, kind, cookie });
        Ok(())
    }

    /// Detached inodes go into /lost+found as `#INO`.
    fn lost_and_found(&mut self, a: &Analysis) -> Result<()> {
        if a.detached.is_empty() {
            return Ok(());
        }
        let existing = self
            .names
            .get(&ROOT_INO)
            .and_then(|n| n.get(LOST_FOUND))
            .map(|e| e.ino);
        let lf = match existing {
            Some(ino) => ino,
            None => {
                let ino = self.meta.next_ino;
                self.meta.next_ino += 1;
                self.meta.inode_count += 1;
                let now = Timespec::now();
                let inode = InodeItem::empty_root_dir(0o700, ROOT_INO, now);
                self.inodes.insert(ino, inode);
                self.add_name(ROOT_INO, LOST_FOUND, ino, FileKind::Dir)?;
                self.actions
                    .push(format!("created /lost+found (inode {ino})"));
                ino
            }
        };
        for &h in &a.detached {
            let name = format!("#{h}").into_bytes();
            if self.names.get(&lf).is_some_and(|n| n.contains_key(&name)) {
                continue;
            }
            let kind = self.inodes[&h].kind();
            self.add_name(lf, &name, h, kind)?;
            self.actions
                .push(format!("inode {h}: moved into /lost+found as #{h}"));
        }
        Ok(())
    }

    /// `nlink`, `blocks`, `parent` and `next_cookie` of every inode, from the tree as repaired.
    fn derived_fields(&mut self) -> Result<()> {
        let incoming = self.incoming_names();
        let inos: Vec<u64> = self.inodes.keys().copied().collect();
        for ino in inos {
            if self.scan.orphans.contains(&ino) && !incoming.contains_key(&ino) {
                // An orphan that could not be deleted (a non-empty directory): left alone.
                continue;
            }
            let old = self.inodes[&ino].clone();
            let parents = incoming.get(&ino).map_or(&[][..], |v| v);
            let new = self.with_derived_fields(ino, &old, parents);
            self.write_if_changed(ino, &old, &new)?;
            self.inodes.insert(ino, new);
        }
        Ok(())
    }

    /// Per inode: the directories that name it (once per name), counting only names between
    /// inodes that exist.
    fn incoming_names(&self) -> BTreeMap<u64, Vec<u64>> {
        let mut incoming: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (&d, names) in &self.names {
            if !self.inodes.contains_key(&d) {
                continue;
            }
            for e in names.values() {
                if self.inodes.contains_key(&e.ino) {
                    incoming.entry(e.ino).or_default().push(d);
                }
            }
        }
        incoming
    }

    /// Inode `ino` (now `old`) with its derived fields as the tree gives them, `parents`
    /// being the directories that name it.
    fn with_derived_fields(&self, ino: u64, old: &InodeItem, parents: &[u64]) -> InodeItem {
        let mut new = old.clone();
        if let Some(n) =
            expected_nlink(ino, &new, parents.len(), self.names.get(&ino), &self.inodes)
        {
            new.nlink = n;
        }
        new.blocks = self.block_count(ino);
        if new.kind() == FileKind::Dir {
            self.derive_dir_fields(ino, parents, &mut new);
        }
        new
    }

    /// The blocks a file holds: those its extents map and those fallocate reserved for it.
    fn block_count(&self, ino: u64) -> u64 {
        let mapped: u64 = self
            .scan
            .extents
            .get(&ino)
            .into_iter()
            .flatten()
            .map(|e| e.len)
            .sum();
        mapped + self.scan.reserved_blocks(ino)
    }

    /// A directory's `parent` (the root is its own; otherwise its one parent, if it has
    /// exactly one) and `next_cookie` (above every cookie it has handed out; never lowered).
    fn derive_dir_fields(&self, ino: u64, parents: &[u64], new: &mut InodeItem) {
        if ino == ROOT_INO {
            new.parent = ROOT_INO;
        } else if let [p] = parents {
            new.parent = *p;
        }
        let seen = max_cookie(self.scan, &Analysis::default(), ino)
            .into_iter()
            .chain(
                self.names
                    .get(&ino)
                    .into_iter()
                    .flatten()
                    .map(|e| e.1.cookie),
            )
            .max();
        if let Some(m) = seen {
            new.next_cookie = new.next_cookie.max(m + 1);
        }
    }

    /// Writes inode `ino` as `new` if it is new or differs from what the checked commit holds
    /// (`old` stands in for an inode the repair created), describing the change.
    fn write_if_changed(&mut self, ino: u64, old: &InodeItem, new: &InodeItem) -> Result<()> {
        let is_new = !self.scan.inodes.contains_key(&ino);
        let was = self.scan.inodes.get(&ino).unwrap_or(old);
        if is_new || new != was {
            self.meta
                .tree
                .insert(Key::new(ino, KIND_INODE, 0), new.encode())?;
            if !is_new {
                self.describe_change(ino, was, new);
            }
        }
        Ok(())
    }

    fn describe_change(&mut self, ino: u64, old: &InodeItem, new: &InodeItem) {
        let mut what = Vec::new();
        if old.nlink != new.nlink {
            what.push(format!("link count {} -> {}", old.nlink, new.nlink));
        }
        if old.blocks != new.blocks {
            what.push(format!("blocks {} -> {}", old.blocks, new.blocks));
        }
        if old.parent != new.parent {
            what.push(format!(".. {} -> {}", old.parent, new.parent));
        }
        if old.next_cookie != new.next_cookie {
            what.push(format!(
                "next_cookie {} -> {}",
                old.next_cookie, new.next_cookie
            ));
        }
        if !what.is_empty() {
            self.actions
                .push(format!("inode {ino}: {}", what.join(", ")));
        }
    }

    /// Writes the repair commit if anything changed (the tree or a superblock counter).
    fn commit(mut self) -> Result<Outcome> {
        let sb = &self.scan.sb;
        let counters_wrong = sb.inode_count != self.meta.inode_count
            || sb.next_ino != self.meta.next_ino
            || sb.used_blocks != self.scan.referenced;
        if !self.meta.tree.is_dirty() && !counters_wrong && !self.feature_set {
            return Ok(Outcome {
                generation: None,
                actions: self.actions,
            });
        }
        if sb.inode_count != self.meta.inode_count {
            self.actions.push(format!(
                "superblock: inode count {} -> {}",
                sb.inode_count, self.meta.inode_count
            ));
        }
        if sb.next_ino != self.meta.next_ino {
            self.actions.push(format!(
                "superblock: next inode number {} -> {}",
                sb.next_ino, self.meta.next_ino
            ));
        }
        let now = Timespec::now().sec;
        let mut plan = self.meta.prepare_commit(now)?;
        if sb.used_blocks != plan.sb.used_blocks {
            self.actions.push(format!(
                "superblock: used blocks {} -> {}",
                sb.used_blocks, plan.sb.used_blocks
            ));
        }
        let generation = plan.sb.generation;
        write_commit(&*self.dev, &mut plan)?;
        self.meta.commit_done(plan.sb);
        Ok(Outcome {
            generation: Some(generation),
            actions: self.actions,
        })
    }
}

/// The on-disk link for name `name` of a directory.
fn link(name: &[u8], e: &Entry) -> DirLink {
    DirLink {
        name: name.to_vec(),
        ino: e.ino,
        kind: e.kind,
        cookie: e.cookie,
    }
}

/// The names of directory `d` that need a fresh cookie: one reserved (below `FIRST_COOKIE`)
/// or taken by another name. Names whose readdir entry is theirs keep their cookie first.
fn names_to_renumber(scan: &Scan, d: u64, names: &Names) -> Vec<Vec<u8>> {
    let index: BTreeMap<u64, &[u8]> = scan
        .dirindex
        .get(&d)
        .into_iter()
        .flatten()
        .map(|l| (l.cookie, &l.name[..]))
        .collect();
    let mut order: Vec<Vec<u8>> = names.keys().cloned().collect();
    order.sort_by_key(|n| index.get(&names[n].cookie) != Some(&&n[..]));
    let mut taken = BTreeSet::new();
    let mut renumber = Vec::new();
    for n in order {
        let c = names[&n].cookie;
        if c < FIRST_COOKIE || !taken.insert(c) {
            renumber.push(n);
        }
    }
    renumber
}
