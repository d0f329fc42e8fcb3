//! The mutable state behind the filesystem lock: metadata (`Meta`), dirty file data not yet
//! written, and the kernel's references to inodes. Helpers here never do device I/O (the whole
//! tree is loaded and verified at mount), so the lock is never held across a device read.

use super::blockbuf::BlockBuf;
use super::types::*;
use crate::error::{errno, Error, Result};
use crate::format::{
    decode_dirindex, encode_dirent_bucket, DirLink, InodeItem, Key, FIRST_COOKIE, KIND_DIRINDEX,
    KIND_INODE, KIND_ORPHAN, OBJECT_FS,
};
use crate::txn::Meta;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A file block written since the last commit, in a private bounce buffer.
pub struct DirtyBlock {
    pub buf: BlockBuf,
    /// crc32c of `buf`, computed as the data was copied in; `None` after a partial update
    /// (recomputed over the private buffer at writeback).
    pub crc: Option<u32>,
    /// No extent mapped this file block when it became dirty (it was a hole, or a block that
    /// `fallocate` reserved): placing it adds a block to the inode's `blocks`, where placing
    /// an overwrite replaces one. Exact while the block is dirty, because every change of a
    /// file block's mapping (placing, truncate, punch, delete) takes its dirty block away too.
    pub adds_block: bool,
}

/// References the kernel holds on an inode.
#[derive(Default, Clone, Copy)]
pub struct Live {
    pub lookups: u64,
    pub opens: u64,
}

pub struct State {
    pub meta: Meta,
    pub live: HashMap<Ino, Live>,
    /// Dirty blocks per inode, by file block index.
    pub dirty: HashMap<Ino, BTreeMap<u64, DirtyBlock>>,
    /// Blocks being written by a commit: already mapped in the tree to blocks that may not be
    /// on the device yet, so reads must take them from here until the write completes.
    pub writeback: HashMap<Ino, BTreeMap<u64, Arc<DirtyBlock>>>,
    pub dirty_blocks: u64,
    /// Per inode, how many of its dirty blocks have `adds_block`. `st_blocks` counts them from
    /// the moment they are written (as ext4 counts delayed allocations: `tar --sparse` and
    /// `du` must never see written data as a hole), so the count does not change when a
    /// commit places them. No entry for an inode with none.
    pub unplaced: HashMap<Ino, u64>,
    pub writeback_blocks: u64,
    /// Blocks reserved by `fallocate` and not written yet (see `fileops`): free on the device,
    /// but promised.
    pub reserved_blocks: u64,
    pub block_size: u32,
}

pub fn inode_key(ino: Ino) -> Key {
    Key::new(ino, KIND_INODE, 0)
}

pub fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return errno(libc::EINVAL);
    }
    if name.len() > NAME_MAX {
        return errno(libc::ENAMETOOLONG);
    }
    Ok(())
}

impl State {
    pub fn inode(&mut self, ino: Ino) -> Result<InodeItem> {
        match self.meta.tree.get(&inode_key(ino))? {
            Some(v) => InodeItem::decode(&v),
            None => errno(libc::ENOENT),
        }
    }

    pub fn put_inode(&mut self, ino: Ino, inode: &InodeItem) -> Result<()> {
        self.meta.tree.insert(inode_key(ino), inode.encode())
    }

    pub fn dir_inode(&mut self, ino: Ino) -> Result<InodeItem> {
        let i = self.inode(ino)?;
        if i.kind() != FileKind::Dir {
            return errno(libc::ENOTDIR);
        }
        Ok(i)
    }

    pub fn attr(&self, ino: Ino, i: &InodeItem) -> Attr {
        Attr {
            ino,
            kind: i.kind(),
            perm: (i.mode & 0o7777) as u16,
            nlink: i.nlink,
            uid: i.uid,
            gid: i.gid,
            rdev: i.rdev,
            size: i.size,
            blocks: (i.blocks + self.unplaced_blocks(ino)) * u64::from(self.block_size / 512),
            blksize: self.block_size,
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
            crtime: i.crtime,
        }
    }

    /// Dirty blocks of `ino` that will add to its `blocks` when placed (see `unplaced`).
    pub fn unplaced_blocks(&self, ino: Ino) -> u64 {
        self.unplaced.get(&ino).copied().unwrap_or(0)
    }

    /// Makes `d` the dirty block at file block `fb` of `ino`. A dirty block already there is
    /// replaced and returned; the new bytes take its place, and its `adds_block` (the mapping
    /// has not changed since it became dirty). Otherwise the block is counted.
    pub fn insert_dirty(&mut self, ino: Ino, fb: u64, mut d: DirtyBlock) -> Option<DirtyBlock> {
        use std::collections::btree_map::Entry;
        match self.dirty.entry(ino).or_default().entry(fb) {
            Entry::Occupied(mut e) => {
                d.adds_block = e.get().adds_block;
                Some(e.insert(d))
            }
            Entry::Vacant(e) => {
                let adds = e.insert(d).adds_block;
                self.dirty_blocks += 1;
                if adds {
                    *self.unplaced.entry(ino).or_default() += 1;
                }
                None
            }
        }
    }

    /// Takes blocks that have left `ino`'s dirty set (placed, truncated, punched or deleted)
    /// out of the counts.
    pub fn dirty_gone<'a>(&mut self, ino: Ino, gone: impl IntoIterator<Item = &'a DirtyBlock>) {
        let (mut n, mut adds) = (0u64, 0u64);
        for d in gone {
            n += 1;
            adds += u64::from(d.adds_block);
        }
        self.dirty_blocks -= n;
        if adds > 0 {
            let left = self.unplaced_blocks(ino) - adds;
            if left == 0 {
                self.unplaced.remove(&ino);
            } else {
                self.unplaced.insert(ino, left);
            }
        }
    }

    /// Device blocks each file block takes: 2 with `copies=2`, else 1.
    pub fn data_copies(&self) -> u64 {
        self.meta.sb.data_copies()
    }

    /// File blocks free for new data, as statfs counts them: free or freed by the running
    /// transaction, less what dirty data and fallocate reservations will take; with
    /// `copies=2` every file block takes two device blocks, so half.
    pub fn free_for_use(&self) -> u64 {
        let a = &self.meta.alloc;
        ((a.free_blocks() + a.pending_blocks()) / self.data_copies())
            .saturating_sub(self.dirty_blocks + self.reserved_blocks)
    }

    /// File blocks the device can hold (statfs's total): the device's blocks past the
    /// superblocks, halved with `copies=2`.
    pub fn data_capacity(&self) -> u64 {
        let a = &self.meta.alloc;
        (a.total_blocks() - a.first_block()) / self.data_copies()
    }

    /// Blocks kept for the tree: data writes stop short of all of them and new names of half,
    /// so that deletes, and the commits that free space, always find blocks for the nodes they
    /// rewrite (twice as many under DUP, which writes every node twice).
    pub fn metadata_reserve(&self) -> u64 {
        let a = &self.meta.alloc;
        let total = a.total_blocks() - a.first_block();
        let copies = if self.meta.sb.metadata_dup() { 2 } else { 1 };
        (total / 64).max(64) * copies
    }

    pub fn new_ino(&mut self) -> Ino {
        let ino = self.meta.next_ino;
        self.meta.next_ino += 1;
        ino
    }

    // ---- directories ----

    fn bucket(&mut self, dir: Ino, name: &[u8]) -> Result<(Key, Vec<DirLink>)> {
        super::namespace::bucket(&mut self.meta.tree, dir, name)
    }

    pub fn dir_lookup(&mut self, dir: Ino, name: &[u8]) -> Result<Option<DirLink>> {
        let (_, links) = self.bucket(dir, name)?;
        Ok(links.into_iter().find(|l| l.name == name))
    }

    /// Adds `name -> ino` to `dir` (whose inode the caller passes and saves afterwards).
    pub fn dir_add(
        &mut self,
        dir: Ino,
        dinode: &mut InodeItem,
        name: &[u8],
        ino: Ino,
        kind: FileKind,
    ) -> Result<()> {
        let cookie = dinode.next_cookie.max(FIRST_COOKIE);
        super::namespace::add_name(&mut self.meta.tree, dir, name, ino, kind, cookie)?;
        dinode.next_cookie = cookie + 1;
        Ok(())
    }

    /// Removes `name` from `dir`; returns what it pointed to.
    pub fn dir_remove(&mut self, dir: Ino, name: &[u8]) -> Result<DirLink> {
        let (key, mut links) = self.bucket(dir, name)?;
        let Some(pos) = links.iter().position(|l| l.name == name) else {
            return errno(libc::ENOENT);
        };
        let link = links.remove(pos);
        if links.is_empty() {
            self.meta.tree.remove(&key)?;
        } else {
            self.meta.tree.insert(key, encode_dirent_bucket(&links))?;
        }
        self.meta
            .tree
            .remove(&Key::new(dir, KIND_DIRINDEX, link.cookie))?;
        Ok(link)
    }

    pub fn dir_is_empty(&mut self, dir: Ino) -> Result<bool> {
        let r = self.meta.tree.range(
            &Key::new(dir, KIND_DIRINDEX, 0),
            &Key::new(dir, KIND_DIRINDEX, u64::MAX),
            1,
        )?;
        Ok(r.is_empty())
    }

    /// Entries of `dir` with cookies greater than `after`.
    pub fn dir_entries(&mut self, dir: Ino, after: u64, max: usize) -> Result<Vec<DirLink>> {
        let from = Key::new(dir, KIND_DIRINDEX, after.saturating_add(1));
        let to = Key::new(dir, KIND_DIRINDEX, u64::MAX);
        self.meta
            .tree
            .range(&from, &to, max)?
            .into_iter()
            .map(|(k, v)| decode_dirindex(&v, k.offset))
            .collect()
    }

    /// Is `ancestor` on the path from `ino` up to the root?
    pub fn is_ancestor(&mut self, ancestor: Ino, mut ino: Ino) -> Result<bool> {
        for _ in 0..100_000 {
            if ino == ancestor {
                return Ok(true);
            }
            if ino == ROOT_INO {
                return Ok(false);
            }
            ino = self.dir_inode(ino)?.parent;
        }
        Err(Error::Corrupt(format!(
            "directory parent chain from {ino} does not reach the root"
        )))
    }

    // ---- orphans ----

    pub fn add_orphan(&mut self, ino: Ino) -> Result<()> {
        self.meta
            .tree
            .insert(Key::new(OBJECT_FS, KIND_ORPHAN, ino), Vec::new())
    }

    pub fn is_live(&self, ino: Ino) -> bool {
        self.live
            .get(&ino)
            .is_some_and(|l| l.lookups > 0 || l.opens > 0)
    }

    /// An inode lost a link: delete it now, or once the kernel lets go of it.
    pub fn unlinked(&mut self, ino: Ino, inode: &InodeItem) -> Result<()> {
        if inode.nlink > 0 {
            return self.put_inode(ino, inode);
        }
        if self.is_live(ino) {
            self.put_inode(ino, inode)?;
            self.add_orphan(ino)
        } else {
            self.purge(ino)
        }
    }

    /// Deletes an inode and everything it owns; its blocks (every copy) are freed at the next
    /// commit.
    pub fn purge(&mut self, ino: Ino) -> Result<()> {
        self.forget_unwritten(ino)?;
        let from = Key::new(ino, 0, 0);
        let to = Key::new(ino, u8::MAX, u64::MAX);
        let (first, total) = (self.meta.sb.first_block, self.meta.sb.total_blocks);
        loop {
            let items = self.meta.tree.range(&from, &to, 256)?;
            if items.is_empty() {
                break;
            }
            for (k, v) in items {
                if k.kind == crate::format::KIND_EXTENT {
                    let e = crate::format::ExtentItem::decode(&v, first, total)?;
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
        if let Some(d) = self.dirty.remove(&ino) {
            self.dirty_gone(ino, d.values());
        }
        self.writeback.remove(&ino);
        self.live.remove(&ino);
        self.meta.inode_count = self.meta.inode_count.saturating_sub(1);
        Ok(())
    }
}
