//! The POSIX operations. Each takes the state lock for its metadata work only; device reads
//! happen with the lock released.

use super::state::{check_name, inode_key};
use super::*;
use crate::format::{
    decode_xattr_bucket, encode_xattr_bucket, max_item_value, name_hash, InodeItem, FIRST_COOKIE,
    KIND_SYMLINK, KIND_XATTR,
};

/// The (name, value) pairs of one xattr bucket.
type XattrList = Vec<(Vec<u8>, Vec<u8>)>;

/// Most hard links to one inode (ext4's limit).
const LINK_MAX: u32 = 65000;

fn now() -> Timespec {
    super::clock::now()
}

impl Fs {
    // ---- names ----

    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        check_name(name)?;
        let mut st = self.lock();
        st.dir_inode(parent)?;
        let Some(link) = st.dir_lookup(parent, name)? else {
            return errno(libc::ENOENT);
        };
        let inode = st.inode(link.ino)?;
        st.ext.live.entry(link.ino).or_default().lookups += 1;
        Ok(st.attr(link.ino, &inode))
    }

    pub fn forget(&self, ino: Ino, n: u64) {
        let mut st = self.lock();
        let Some(l) = st.ext.live.get_mut(&ino) else {
            return;
        };
        l.lookups = l.lookups.saturating_sub(n);
        self.maybe_delete(&mut st, ino);
    }

    /// Deletes an unlinked inode once the kernel holds no reference to it.
    fn maybe_delete(&self, st: &mut State, ino: Ino) {
        if st.is_live(ino) {
            return;
        }
        st.ext.live.remove(&ino);
        // Not while read-only (also by a remount): the orphan is deleted at the next mount.
        if self.store.writable().is_err() {
            return;
        }
        if let Ok(i) = st.inode(ino) {
            if i.nlink == 0 {
                if let Err(e) = st.purge(ino) {
                    log::error!("deleting unlinked inode {ino}: {e}");
                }
            }
        }
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let mut st = self.lock();
        let i = st.inode(ino)?;
        Ok(st.attr(ino, &i))
    }

    pub fn setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr> {
        let _change = self.begin_change()?;
        if let Some(size) = set.size {
            self.truncate(ino, size)?;
        }
        let mut st = self.lock();
        let mut i = st.inode(ino)?;
        let t = now();
        if set.size.is_some() && set.kill_suidgid {
            Self::kill_suidgid(&mut st, ino, &mut i)?;
        }
        if let Some(mode) = set.mode {
            i.mode = (i.mode & libc::S_IFMT) | (mode & 0o7777);
        }
        if let Some(uid) = set.uid {
            i.uid = uid;
        }
        if let Some(gid) = set.gid {
            i.gid = gid;
        }
        if (set.uid.is_some() || set.gid.is_some())
            && set.mode.is_none()
            && i.kind() != FileKind::Dir
        {
            // chown clears set-user-ID, and set-group-ID when group-execute is set (as ext4).
            i.mode &= !libc::S_ISUID;
            if i.mode & libc::S_IXGRP != 0 {
                i.mode &= !libc::S_ISGID;
            }
        }
        let resolve = |s: SetTime| match s {
            SetTime::Now => t,
            SetTime::At(x) => x,
        };
        if let Some(a) = set.atime {
            i.atime = resolve(a);
        }
        if let Some(m) = set.mtime {
            i.mtime = resolve(m);
        }
        if set.size.is_some() && set.mtime.is_none() {
            i.mtime = t;
        }
        i.ctime = set.ctime.unwrap_or(t);
        st.put_inode(ino, &i)?;
        Ok(st.attr(ino, &i))
    }

    fn new_inode(
        &self,
        st: &mut State,
        parent: &InodeItem,
        mode: u32,
        rdev: u32,
        who: Caller,
    ) -> InodeItem {
        let t = now();
        let mut mode = mode;
        let mut gid = who.gid;
        if parent.mode & libc::S_ISGID != 0 {
            // BSD group semantics of a set-group-ID directory, as ext4.
            gid = parent.gid;
            if mode & libc::S_IFMT == libc::S_IFDIR {
                mode |= libc::S_ISGID;
            }
        }
        st.meta.inode_count += 1;
        InodeItem {
            mode,
            uid: who.uid,
            gid,
            nlink: 1,
            size: 0,
            blocks: 0,
            rdev,
            flags: 0,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            parent: 0,
            next_cookie: FIRST_COOKIE,
            generation: 0,
        }
    }

    /// Creates a node of any kind under `parent`; the caller fills kind-specific parts.
    fn create_node(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        rdev: u32,
        who: Caller,
        fill: &dyn Fn(&mut State, Ino, &mut InodeItem) -> Result<()>,
    ) -> Result<Attr> {
        check_name(name)?;
        let _change = self.begin_dir_change()?;
        let kind = FileKind::from_mode(mode).ok_or(Error::Errno(libc::EINVAL))?;
        let mut st = self.lock();
        self.store.reserve(&st, 0, Reserve::Names)?;
        let mut dir = st.dir_inode(parent)?;
        if dir.nlink == 0 {
            return errno(libc::ENOENT);
        }
        if st.dir_lookup(parent, name)?.is_some() {
            return errno(libc::EEXIST);
        }
        if kind == FileKind::Dir && dir.nlink >= LINK_MAX {
            return errno(libc::EMLINK);
        }
        let ino = st.new_ino();
        let mut inode = self.new_inode(&mut st, &dir, mode, rdev, who);
        fill(&mut st, ino, &mut inode)?;
        st.dir_add(parent, &mut dir, name, ino, kind)?;
        if kind == FileKind::Dir {
            dir.nlink += 1;
        }
        let t = now();
        dir.mtime = t;
        dir.ctime = t;
        st.put_inode(parent, &dir)?;
        st.put_inode(ino, &inode)?;
        st.ext.live.entry(ino).or_default().lookups += 1;
        Ok(st.attr(ino, &inode))
    }

    pub fn mknod(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        rdev: u32,
        who: Caller,
    ) -> Result<Attr> {
        if mode & libc::S_IFMT == libc::S_IFDIR || mode & libc::S_IFMT == libc::S_IFLNK {
            return errno(libc::EINVAL);
        }
        let mode = if mode & libc::S_IFMT == 0 {
            mode | libc::S_IFREG
        } else {
            mode
        };
        self.create_node(parent, name, mode, rdev, who, &|_, _, _| Ok(()))
    }

    pub fn mkdir(&self, parent: Ino, name: &[u8], mode: u32, who: Caller) -> Result<Attr> {
        let mode = libc::S_IFDIR | (mode & 0o7777);
        self.create_node(parent, name, mode, 0, who, &|_, _, i| {
            i.nlink = 2;
            i.parent = parent;
            Ok(())
        })
    }

    pub fn symlink(&self, parent: Ino, name: &[u8], target: &[u8], who: Caller) -> Result<Attr> {
        if target.is_empty() || target.contains(&0) {
            return errno(libc::EINVAL);
        }
        if target.len() >= libc::PATH_MAX as usize {
            return errno(libc::ENAMETOOLONG);
        }
        let chunk = max_item_value(self.bs);
        self.create_node(
            parent,
            name,
            libc::S_IFLNK | 0o777,
            0,
            who,
            &|st, ino, i| {
                i.size = target.len() as u64;
                for (n, part) in target.chunks(chunk).enumerate() {
                    st.meta
                        .tree
                        .insert(Key::new(ino, KIND_SYMLINK, n as u64), part.to_vec())?;
                }
                Ok(())
            },
        )
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let mut st = self.lock();
        let i = st.inode(ino)?;
        if i.kind() != FileKind::Symlink {
            return errno(libc::EINVAL);
        }
        let parts = st.meta.tree.range(
            &Key::new(ino, KIND_SYMLINK, 0),
            &Key::new(ino, KIND_SYMLINK, u64::MAX),
            64,
        )?;
        let target: Vec<u8> = parts.into_iter().flat_map(|(_, v)| v).collect();
        if target.len() as u64 != i.size {
            return Err(Error::Corrupt(format!(
                "symlink {ino}: {} bytes, size says {}",
                target.len(),
                i.size
            )));
        }
        Ok(target)
    }

    pub fn link(&self, ino: Ino, newparent: Ino, newname: &[u8]) -> Result<Attr> {
        check_name(newname)?;
        let _change = self.begin_dir_change()?;
        let mut st = self.lock();
        self.store.reserve(&st, 0, Reserve::Names)?;
        let mut i = st.inode(ino)?;
        if i.kind() == FileKind::Dir {
            return errno(libc::EPERM);
        }
        if i.nlink >= LINK_MAX {
            return errno(libc::EMLINK);
        }
        if i.nlink == 0 {
            return errno(libc::ENOENT);
        }
        let mut dir = st.dir_inode(newparent)?;
        st.dir_add(newparent, &mut dir, newname, ino, i.kind())?;
        let t = now();
        dir.mtime = t;
        dir.ctime = t;
        st.put_inode(newparent, &dir)?;
        i.nlink += 1;
        i.ctime = t;
        st.put_inode(ino, &i)?;
        st.ext.live.entry(ino).or_default().lookups += 1;
        Ok(st.attr(ino, &i))
    }

    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<()> {
        check_name(name)?;
        let _change = self.begin_dir_change()?;
        let mut st = self.lock();
        let mut dir = st.dir_inode(parent)?;
        let Some(link) = st.dir_lookup(parent, name)? else {
            return errno(libc::ENOENT);
        };
        if link.kind == FileKind::Dir {
            return errno(libc::EISDIR);
        }
        st.dir_remove(parent, name)?;
        let t = now();
        dir.mtime = t;
        dir.ctime = t;
        st.put_inode(parent, &dir)?;
        let mut i = st.inode(link.ino)?;
        i.nlink = i.nlink.saturating_sub(1);
        i.ctime = t;
        st.unlinked(link.ino, &i)
    }

    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()> {
        if name == b"." {
            return errno(libc::EINVAL);
        }
        if name == b".." {
            return errno(libc::ENOTEMPTY);
        }
        check_name(name)?;
        let _change = self.begin_dir_change()?;
        let mut st = self.lock();
        let mut dir = st.dir_inode(parent)?;
        let Some(link) = st.dir_lookup(parent, name)? else {
            return errno(libc::ENOENT);
        };
        if link.kind != FileKind::Dir {
            return errno(libc::ENOTDIR);
        }
        if !st.dir_is_empty(link.ino)? {
            return errno(libc::ENOTEMPTY);
        }
        st.dir_remove(parent, name)?;
        let t = now();
        dir.nlink -= 1;
        dir.mtime = t;
        dir.ctime = t;
        st.put_inode(parent, &dir)?;
        let mut i = st.inode(link.ino)?;
        i.nlink = 0;
        i.ctime = t;
        st.unlinked(link.ino, &i)
    }

    pub fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        flags: u32,
    ) -> Result<()> {
        check_name(name)?;
        check_name(newname)?;
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            return errno(libc::EINVAL);
        }
        let _change = self.begin_dir_change()?;
        let mut st = self.lock();
        st.dir_inode(parent)?;
        st.dir_inode(newparent)?;
        let Some(src) = st.dir_lookup(parent, name)? else {
            return errno(libc::ENOENT);
        };
        let dst = st.dir_lookup(newparent, newname)?;
        let t = now();
        if flags & RENAME_EXCHANGE != 0 {
            let Some(dst) = dst else {
                return errno(libc::ENOENT);
            };
            if src.ino == dst.ino {
                return Ok(());
            }
            if (src.kind == FileKind::Dir && st.is_ancestor(src.ino, newparent)?)
                || (dst.kind == FileKind::Dir && st.is_ancestor(dst.ino, parent)?)
            {
                return errno(libc::EINVAL);
            }
            st.dir_remove(parent, name)?;
            st.dir_remove(newparent, newname)?;
            let mut pd = st.dir_inode(parent)?;
            st.dir_add(parent, &mut pd, name, dst.ino, dst.kind)?;
            st.put_inode(parent, &pd)?;
            let mut nd = st.dir_inode(newparent)?;
            st.dir_add(newparent, &mut nd, newname, src.ino, src.kind)?;
            st.put_inode(newparent, &nd)?;
            if parent != newparent {
                self.reparent(&mut st, src.ino, src.kind, parent, newparent)?;
                self.reparent(&mut st, dst.ino, dst.kind, newparent, parent)?;
            }
            for ino in [src.ino, dst.ino] {
                let mut i = st.inode(ino)?;
                i.ctime = t;
                st.put_inode(ino, &i)?;
            }
            return self.touch_dirs(&mut st, parent, newparent, t);
        }
        if let Some(dst) = &dst {
            if flags & RENAME_NOREPLACE != 0 {
                return errno(libc::EEXIST);
            }
            if dst.ino == src.ino {
                return Ok(());
            }
            match (src.kind == FileKind::Dir, dst.kind == FileKind::Dir) {
                (true, false) => return errno(libc::ENOTDIR),
                (false, true) => return errno(libc::EISDIR),
                (true, true) if !st.dir_is_empty(dst.ino)? => return errno(libc::ENOTEMPTY),
                _ => {}
            }
        }
        if src.kind == FileKind::Dir && st.is_ancestor(src.ino, newparent)? {
            return errno(libc::EINVAL);
        }
        if let Some(dst) = dst {
            st.dir_remove(newparent, newname)?;
            let mut i = st.inode(dst.ino)?;
            i.ctime = t;
            if dst.kind == FileKind::Dir {
                i.nlink = 0;
                let mut nd = st.dir_inode(newparent)?;
                nd.nlink -= 1;
                st.put_inode(newparent, &nd)?;
            } else {
                i.nlink = i.nlink.saturating_sub(1);
            }
            st.unlinked(dst.ino, &i)?;
        }
        st.dir_remove(parent, name)?;
        let mut nd = st.dir_inode(newparent)?;
        st.dir_add(newparent, &mut nd, newname, src.ino, src.kind)?;
        st.put_inode(newparent, &nd)?;
        if parent != newparent {
            self.reparent(&mut st, src.ino, src.kind, parent, newparent)?;
        }
        let mut i = st.inode(src.ino)?;
        i.ctime = t;
        st.put_inode(src.ino, &i)?;
        self.touch_dirs(&mut st, parent, newparent, t)
    }

    /// A directory moved from `from` to `to`: fix its ".." and both link counts.
    fn reparent(&self, st: &mut State, ino: Ino, kind: FileKind, from: Ino, to: Ino) -> Result<()> {
        if kind != FileKind::Dir {
            return Ok(());
        }
        let mut i = st.inode(ino)?;
        i.parent = to;
        st.put_inode(ino, &i)?;
        let mut f = st.dir_inode(from)?;
        f.nlink -= 1;
        st.put_inode(from, &f)?;
        let mut t = st.dir_inode(to)?;
        t.nlink += 1;
        st.put_inode(to, &t)
    }

    fn touch_dirs(&self, st: &mut State, a: Ino, b: Ino, t: Timespec) -> Result<()> {
        for d in [a, b] {
            let mut i = st.dir_inode(d)?;
            i.mtime = t;
            i.ctime = t;
            st.put_inode(d, &i)?;
        }
        Ok(())
    }

    pub fn readdir(&self, dir: Ino, cookie: u64, max: usize) -> Result<Vec<DirEntry>> {
        let mut st = self.lock();
        let d = st.dir_inode(dir)?;
        let mut out = Vec::new();
        if cookie < 1 {
            out.push(DirEntry {
                ino: dir,
                cookie: 1,
                kind: FileKind::Dir,
                name: b".".to_vec(),
            });
        }
        if cookie < 2 {
            out.push(DirEntry {
                ino: d.parent,
                cookie: 2,
                kind: FileKind::Dir,
                name: b"..".to_vec(),
            });
        }
        let want = max.saturating_sub(out.len());
        for l in st.dir_entries(dir, cookie.max(2), want)? {
            out.push(DirEntry {
                ino: l.ino,
                cookie: l.cookie,
                kind: l.kind,
                name: l.name,
            });
        }
        // Every getdents(2) reaches us (no directory caching): an access, as on ext4.
        self.touch_atime(&mut st, dir, d)?;
        Ok(out)
    }

    // ---- open files ----

    pub fn open(&self, ino: Ino) -> Result<()> {
        let mut st = self.lock();
        st.inode(ino)?;
        st.ext.live.entry(ino).or_default().opens += 1;
        Ok(())
    }

    pub fn release(&self, ino: Ino) {
        let mut st = self.lock();
        let Some(l) = st.ext.live.get_mut(&ino) else {
            return;
        };
        l.opens = l.opens.saturating_sub(1);
        self.maybe_delete(&mut st, ino);
    }

    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>> {
        let bs = u64::from(self.bs);
        let (plan, end, _gate) = {
            let mut st = self.lock();
            let i = st.inode(ino)?;
            match i.kind() {
                FileKind::File => {}
                FileKind::Dir => return errno(libc::EISDIR),
                _ => return errno(libc::EINVAL),
            }
            let end = i.size.min(offset.saturating_add(u64::from(size)));
            if offset >= end {
                return Ok(Vec::new());
            }
            let fb0 = offset / bs;
            let plan = st.plan_range(ino, fb0, end.div_ceil(bs) - fb0)?;
            self.touch_atime(&mut st, ino, i)?;
            (plan, end, self.store.read_gate())
        };
        let first_fb = offset / bs;
        let disk = self.store.read_verified(ino, first_fb, &plan)?;
        let mut out = Vec::with_capacity((end - offset) as usize);
        for (k, src) in plan.iter().enumerate() {
            let fb = first_fb + k as u64;
            let lo = (offset.max(fb * bs) - fb * bs) as usize;
            let hi = (end.min((fb + 1) * bs) - fb * bs) as usize;
            match (src, disk.block(k, bs as usize)) {
                (Src::Hole, _) => out.resize(out.len() + hi - lo, 0),
                (Src::Mem(m), _) => out.extend_from_slice(&m[lo..hi]),
                (Src::Disk { .. }, Some(b)) => out.extend_from_slice(&b[lo..hi]),
                (Src::Disk { .. }, None) => unreachable!("read_verified fills every disk block"),
            }
        }
        self.store.release_runs(disk);
        Ok(out)
    }

    /// Writes `data` at `offset` into private bounce buffers; returns the byte count.
    /// `kill_suidgid`: the writer lacks CAP_FSETID (the kernel says so with
    /// `FUSE_WRITE_KILL_SUIDGID`), so set-user-ID and friends are cleared, as on ext4.
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8], kill_suidgid: bool) -> Result<u32> {
        self.write_at_level(ino, offset, data, kill_suidgid, Reserve::Data)
    }

    fn write_at_level(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        kill_suidgid: bool,
        level: Reserve,
    ) -> Result<u32> {
        let _change = self.begin_change()?;
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(Error::Errno(libc::EFBIG))?;
        if end > i64::MAX as u64 {
            return errno(libc::EFBIG);
        }
        self.store.write(
            ino,
            offset,
            data,
            level,
            // Before any block changes: only a regular file takes data.
            |st| {
                let i = st.inode(ino)?;
                if i.kind() != FileKind::File {
                    return errno(libc::EINVAL);
                }
                Ok(i)
            },
            // After: the reservations the write took are no longer the inode's blocks (its
            // dirty blocks are, see `store::State::unplaced_blocks`); size, times, privileges.
            |st, mut i, unwritten_taken| {
                i.blocks = i.blocks.saturating_sub(unwritten_taken);
                let t = now();
                i.size = i.size.max(end);
                i.mtime = t;
                i.ctime = t;
                if kill_suidgid {
                    Self::kill_suidgid(st, ino, &mut i)?;
                }
                st.put_inode(ino, &i)
            },
        )
    }

    /// What an unprivileged write or truncate does to privileges (ext4's `file_remove_privs`):
    /// clears set-user-ID, set-group-ID when group-execute is set, and `security.capability`.
    fn kill_suidgid(st: &mut State, ino: Ino, i: &mut InodeItem) -> Result<()> {
        i.mode &= !libc::S_ISUID;
        if i.mode & libc::S_IXGRP != 0 {
            i.mode &= !libc::S_ISGID;
        }
        let cap = b"security.capability";
        let (key, mut list) = Self::xattr_bucket(st, ino, cap)?;
        if let Some(p) = list.iter().position(|(n, _)| n == cap) {
            list.remove(p);
            if list.is_empty() {
                st.meta.tree.remove(&key)?;
            } else {
                st.meta.tree.insert(key, encode_xattr_bucket(&list))?;
            }
        }
        Ok(())
    }

    fn truncate(&self, ino: Ino, size: u64) -> Result<()> {
        if size > i64::MAX as u64 {
            return errno(libc::EFBIG);
        }
        let bs = u64::from(self.bs);
        let old = {
            let mut st = self.lock();
            let i = st.inode(ino)?;
            match i.kind() {
                FileKind::File => {}
                FileKind::Dir => return errno(libc::EISDIR),
                _ => return errno(libc::EINVAL),
            }
            i.size
        };
        if size < old && size % bs != 0 {
            // Zero the tail of the new last block, so growing the file again reads zeros.
            let tail_end = old.min((size / bs + 1) * bs);
            let zeros = vec![0u8; (tail_end - size) as usize];
            self.write_at_level(ino, size, &zeros, false, Reserve::Freeing)?;
        }
        let mut st = self.lock();
        let mut i = st.inode(ino)?;
        if size < i.size {
            let keep = size.div_ceil(bs);
            st.drop_cached_from(ino, keep);
            let gone = st.punch(ino, keep, u64::MAX)? + st.take_unwritten(ino, keep, u64::MAX)?;
            i.blocks = i.blocks.saturating_sub(gone);
        }
        i.size = size;
        let t = now();
        i.mtime = t;
        i.ctime = t;
        st.put_inode(ino, &i)
    }

    pub fn fsync(&self, ino: Ino, _datasync: bool) -> Result<()> {
        self.getattr(ino)?;
        if self.read_only {
            return Ok(());
        }
        self.store.commit()
    }

    pub fn statfs(&self) -> Result<StatFs> {
        let st = self.lock();
        // In file blocks: with copies=2 both the size and the free space are halved, so that
        // `df` shows what files can still hold.
        let total = st.data_capacity();
        let free = st.free_for_use();
        let reserve = st.metadata_reserve() / st.data_copies();
        Ok(StatFs {
            blocks: total,
            bfree: free,
            bavail: free.saturating_sub(reserve),
            files: st.meta.inode_count + free,
            ffree: free,
            bsize: self.bs,
            namelen: NAME_MAX as u32,
        })
    }

    // ---- xattrs ----

    fn xattr_bucket(st: &mut State, ino: Ino, name: &[u8]) -> Result<(Key, XattrList)> {
        st.inode(ino)?;
        let key = Key::new(ino, KIND_XATTR, name_hash(name));
        let list = match st.meta.tree.get(&key)? {
            Some(v) => decode_xattr_bucket(&v)?,
            None => Vec::new(),
        };
        Ok((key, list))
    }

    fn check_xattr_name(name: &[u8]) -> Result<()> {
        if name.is_empty() || name.contains(&0) {
            return errno(libc::EINVAL);
        }
        if name.len() > 255 {
            return errno(libc::ERANGE);
        }
        Ok(())
    }

    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        Self::check_xattr_name(name)?;
        let _change = self.begin_change()?;
        let mut st = self.lock();
        self.store.reserve(&st, 0, Reserve::Names)?;
        let (key, mut list) = Self::xattr_bucket(&mut st, ino, name)?;
        let pos = list.iter().position(|(n, _)| n == name);
        match (pos, flags) {
            (Some(_), XATTR_CREATE) => return errno(libc::EEXIST),
            (None, XATTR_REPLACE) => return errno(libc::ENODATA),
            _ => {}
        }
        match pos {
            Some(p) => list[p].1 = value.to_vec(),
            None => list.push((name.to_vec(), value.to_vec())),
        }
        let enc = encode_xattr_bucket(&list);
        if enc.len() > max_item_value(self.bs) {
            return errno(libc::E2BIG);
        }
        st.meta.tree.insert(key, enc)?;
        let mut i = st.inode(ino)?;
        i.ctime = now();
        st.put_inode(ino, &i)
    }

    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        Self::check_xattr_name(name)?;
        let mut st = self.lock();
        let (_, list) = Self::xattr_bucket(&mut st, ino, name)?;
        list.into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or(Error::Errno(libc::ENODATA))
    }

    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        let mut st = self.lock();
        st.inode(ino)?;
        let items = st.meta.tree.range(
            &Key::new(ino, KIND_XATTR, 0),
            &Key::new(ino, KIND_XATTR, u64::MAX),
            usize::MAX,
        )?;
        let mut out = Vec::new();
        for (_, v) in items {
            for (n, _) in decode_xattr_bucket(&v)? {
                out.extend_from_slice(&n);
                out.push(0);
            }
        }
        Ok(out)
    }

    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<()> {
        Self::check_xattr_name(name)?;
        let _change = self.begin_change()?;
        let mut st = self.lock();
        let (key, mut list) = Self::xattr_bucket(&mut st, ino, name)?;
        let Some(p) = list.iter().position(|(n, _)| n == name) else {
            return errno(libc::ENODATA);
        };
        list.remove(p);
        if list.is_empty() {
            st.meta.tree.remove(&key)?;
        } else {
            st.meta.tree.insert(key, encode_xattr_bucket(&list))?;
        }
        let mut i = st.inode(ino)?;
        i.ctime = now();
        st.put_inode(ino, &i)
    }

    /// The inode's key, for tools.
    pub fn inode_key(ino: Ino) -> Key {
        inode_key(ino)
    }
}
