//! The filesystem's helpers over the state behind the store's lock: inodes, directories,
//! orphans, and the kernel's references to inodes (`Refs`). Helpers here never do device I/O
//! (the whole tree is loaded and verified at mount), so the lock is never held across a
//! device read.

use super::types::*;
use super::State;
use crate::error::{errno, Error, Result};
use crate::format::{
    decode_dirindex, encode_dirent_bucket, DirLink, InodeItem, Key, FIRST_COOKIE, KIND_DIRINDEX,
    KIND_INODE, KIND_ORPHAN, OBJECT_FS,
};

/// References the kernel holds on an inode.
#[derive(Default, Clone, Copy)]
pub struct Live {
    pub lookups: u64,
    pub opens: u64,
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
        if self.ext.down {
            return errno(libc::EIO);
        }
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
            blocks: (i.blocks + self.unplaced_blocks(ino))
                * u64::from(self.meta.sb.block_size / 512),
            blksize: self.meta.sb.block_size,
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
            crtime: i.crtime,
            generation: i.generation,
        }
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
        self.dir_entries_below(dir, after, u64::MAX, max)
    }

    /// Entries of `dir` with cookies greater than `after` and below `limit` (no cookie is
    /// ever `u64::MAX`: the one after it could not be handed out).
    pub fn dir_entries_below(
        &mut self,
        dir: Ino,
        after: u64,
        limit: u64,
        max: usize,
    ) -> Result<Vec<DirLink>> {
        if limit <= after.saturating_add(1) {
            return Ok(Vec::new());
        }
        let from = Key::new(dir, KIND_DIRINDEX, after.saturating_add(1));
        let to = Key::new(dir, KIND_DIRINDEX, limit - 1);
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
        self.ext
            .live
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
        self.forget_data(ino)?;
        let from = Key::new(ino, 0, 0);
        let to = Key::new(ino, u8::MAX, u64::MAX);
        loop {
            let items = self.meta.tree.range(&from, &to, 256)?;
            if items.is_empty() {
                break;
            }
            for (k, v) in items {
                self.forget_data_item(&k, &v)?;
                self.meta.tree.remove(&k)?;
            }
        }
        self.meta
            .tree
            .remove(&Key::new(OBJECT_FS, KIND_ORPHAN, ino))?;
        self.ext.live.remove(&ino);
        self.meta.inode_count = self.meta.inode_count.saturating_sub(1);
        Ok(())
    }
}
