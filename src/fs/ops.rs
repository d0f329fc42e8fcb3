//! The POSIX operations. Each takes the state lock for its metadata work only; device reads
//! happen with the lock released.

use super::state::{check_name, inode_key};
use super::*;
use crate::format::{max_item_value, InodeItem, FIRST_COOKIE, KIND_SYMLINK};

/// Most hard links to one inode (ext4's limit).
const LINK_MAX: u32 = 65000;

fn now() -> Timespec {
    super::clock::now()
}

/// The generation of a new inode: a random nonzero 32-bit number.
///
/// Inode numbers are never reused within the committed history, but after a crash the numbers
/// handed out since the last commit are handed out again, to new inodes, while file handles
/// of the lost ones may still be around (an NFS client's, a saved `name_to_handle_at`). The
/// generation is what tells them apart, and the kernel keeps only 32 bits of it
/// (`inode->i_generation`). A counter would have to be kept on disk and would lose its
/// uncommitted steps in the same crash, so it would need a random start at every mount
/// anyway; a random number per inode needs no state and, as with ext4 (which also draws
/// `get_random_u32()` per inode), two inodes of one number share a generation with
/// probability 2^-32. Never 0: that is the root's (the kernel makes the root inode with
/// generation 0), older images' and inodes made by `fsck --repair`.
fn new_generation() -> u64 {
    loop {
        let mut buf = [0u8; 4];
        // SAFETY: safe because the kernel writes at most `buf.len()` bytes into `buf`, a live
        // local array, and keeps no reference to it after the call.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        let g = if n == buf.len() as isize {
            u32::from_le_bytes(buf)
        } else {
            // No getrandom (or interrupted): the clock's nanoseconds, mixed.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            (t.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
        };
        if g != 0 {
            return u64::from(g);
        }
    }
}

impl Fs {
    // ---- names ----

    /// The entry `name` of directory `parent`; counts a lookup reference. `"."` and `".."`
    /// are what the kernel asks to decode a file handle (`FUSE_EXPORT_SUPPORT`; path walks
    /// never send them): `"."` is `parent` itself, of any kind, while it exists and has a
    /// link or is still open; `".."` is the parent of directory `parent`. A deleted inode,
    /// or a number never handed out, is `ENOENT` (the kernel answers `ESTALE`); the kernel
    /// compares the generation in the reply with the handle's, so a reused number is
    /// `ESTALE` too.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        check_name(name)?;
        let mut st = self.lock();
        let ino = match name {
            b"." => {
                Self::existing(&mut st, parent)?;
                parent
            }
            b".." => {
                let dir = Self::existing(&mut st, parent)?;
                if dir.kind() != FileKind::Dir {
                    return errno(libc::ENOTDIR);
                }
                dir.parent
            }
            _ => {
                st.dir_inode(parent)?;
                let Some(link) = st.dir_lookup(parent, name)? else {
                    return errno(libc::ENOENT);
                };
                link.ino
            }
        };
        let inode = st.inode(ino)?;
        st.ext.live.entry(ino).or_default().lookups += 1;
        Ok(st.attr(ino, &inode))
    }

    /// Inode `ino` if it is in the namespace or still open: `ENOENT` for a deleted one and
    /// for a number never handed out. Lookup references of a deleted inode do not count: the
    /// kernel only asks for an inode it no longer holds, and the `forget` that says so may
    /// still be on its way on another request loop.
    fn existing(st: &mut State, ino: Ino) -> Result<InodeItem> {
        if ino == 0 {
            return errno(libc::ENOENT);
        }
        let inode = st.inode(ino)?;
        let open = st.ext.live.get(&ino).is_some_and(|l| l.opens > 0);
        if inode.nlink == 0 && !open {
            return errno(libc::ENOENT);
        }
        Ok(inode)
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
        flags::refuse_setattr(&self.lock().inode(ino)?, set)?;
        if let Some(size) = set.size {
            self.truncate(ino, size)?;
        }
        let mut st = self.lock();
        let mut i = st.inode(ino)?;
        let t = now();
        if let (Some(_), true, Some(who)) = (set.size, set.kill_suidgid, &set.who) {
            self.kill_suidgid(&mut st, ino, &mut i, who, false)?;
        }
        if let Some(mode) = set.mode {
            i.mode = (i.mode & libc::S_IFMT) | (mode & 0o7777);
            Self::acl_chmod(&mut st, ino, &i)?;
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
            // chown clears set-user-ID, set-group-ID when group-execute is set or the caller
            // is neither in the (old) group nor root, and `security.capability`: as ext4.
            let who = set.who.unwrap_or(Caller::ROOT);
            self.kill_suidgid(&mut st, ino, &mut i, &who, who.uid == 0)?;
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
            flags: flags::inherited(parent.flags, mode),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            parent: 0,
            next_cookie: FIRST_COOKIE,
            generation: new_generation(),
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
        flags::refuse_add(&dir)?;
        if kind == FileKind::Dir && dir.nlink >= LINK_MAX {
            return errno(libc::EMLINK);
        }
        let new = Self::acl_create(&mut st, parent, mode, &who)?;
        let mode = new.mode;
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
        for (name, acl) in [
            (super::acl::ACCESS, new.access),
            (super::acl::DEFAULT, new.default),
        ] {
            if let Some(acl) = acl {
                super::xattr::put(&mut st, ino, name, Some(&acl))?;
            }
        }
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
        flags::refuse_change(&i)?;
        let mut dir = st.dir_inode(newparent)?;
        flags::refuse_add(&dir)?;
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
        flags::refuse_remove(&dir, &st.inode(link.ino)?)?;
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
        flags::refuse_remove(&dir, &st.inode(link.ino)?)?;
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
        self.rename_leaving(parent, name, newparent, newname, flags, None)
    }

    /// `renameat2` with `RENAME_WHITEOUT` (`flags` are the others: `RENAME_NOREPLACE` or
    /// none; with `RENAME_EXCHANGE` it is EINVAL, as on ext4): the rename, and in the same
    /// change a whiteout where the source was, a character device 0/0 with no permission
    /// bits owned by `who`, as the kernel makes them (overlayfs's upper layer uses them to
    /// hide lower files). Like the kernel's whiteouts, it needs no privilege.
    pub fn rename_whiteout(
        &self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        flags: u32,
        who: Caller,
    ) -> Result<()> {
        if flags & RENAME_EXCHANGE != 0 {
            return errno(libc::EINVAL);
        }
        self.rename_leaving(parent, name, newparent, newname, flags, Some(who))
    }

    /// `rename`, leaving a whiteout owned by `whiteout` at the source if that is given.
    fn rename_leaving(
        &self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        flags: u32,
        whiteout: Option<Caller>,
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
        let from_dir = st.dir_inode(parent)?;
        let to_dir = st.dir_inode(newparent)?;
        let Some(src) = st.dir_lookup(parent, name)? else {
            return errno(libc::ENOENT);
        };
        let dst = st.dir_lookup(newparent, newname)?;
        flags::refuse_remove(&from_dir, &st.inode(src.ino)?)?;
        match &dst {
            Some(dst) => flags::refuse_remove(&to_dir, &st.inode(dst.ino)?)?,
            None => flags::refuse_add(&to_dir)?,
        }
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
        if let Some(who) = whiteout {
            let mut pd = st.dir_inode(parent)?;
            let ino = st.new_ino();
            let w = self.new_inode(&mut st, &pd, libc::S_IFCHR, 0, who);
            st.dir_add(parent, &mut pd, name, ino, FileKind::CharDev)?;
            st.put_inode(parent, &pd)?;
            st.put_inode(ino, &w)?;
        }
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
        self.readdir_below(dir, cookie, u64::MAX, max)
    }

    /// Where a listing of `dir` that starts now ends: the cookie every entry added from now
    /// on gets or exceeds. A listing that stops there terminates however the directory
    /// changes meanwhile, and returns no name twice: an entry renamed away and back (or
    /// removed and made again) gets a new cookie, at or above the limit. POSIX leaves it
    /// open whether entries added after `opendir`/`rewinddir` are seen.
    pub fn readdir_limit(&self, dir: Ino) -> Result<u64> {
        let mut st = self.lock();
        Ok(st.dir_inode(dir)?.next_cookie.max(FIRST_COOKIE))
    }

    /// `readdir` of the entries with cookies below `limit` (see `readdir_limit`).
    pub fn readdir_below(
        &self,
        dir: Ino,
        cookie: u64,
        limit: u64,
        max: usize,
    ) -> Result<Vec<DirEntry>> {
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
        for l in st.dir_entries_below(dir, cookie.max(2), limit, want)? {
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
    /// `unprivileged`: the writer, when it lacks CAP_FSETID (the kernel says so with
    /// `FUSE_WRITE_KILL_SUIDGID`): set-user-ID and friends are cleared, as on ext4.
    pub fn write(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        unprivileged: Option<Caller>,
    ) -> Result<u32> {
        self.write_at_level(ino, offset, data, unprivileged, Reserve::Data)
    }

    fn write_at_level(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        unprivileged: Option<Caller>,
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
        // Read from the kernel's clock (two system calls, see `clock`) before the lock, not
        // under it: the request is already here, so the time is after anything it follows.
        let t = now();
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
                flags::refuse_write(&i)?;
                Ok(i)
            },
            // After: the reservations the write took are no longer the inode's blocks (its
            // dirty blocks are, see `store::State::unplaced_blocks`); size, times, privileges.
            |st, mut i, unwritten_taken| {
                i.blocks = i.blocks.saturating_sub(unwritten_taken);
                i.size = i.size.max(end);
                i.mtime = t;
                i.ctime = t;
                if let Some(who) = &unprivileged {
                    self.kill_suidgid(st, ino, &mut i, who, false)?;
                }
                st.put_inode(ino, &i)
            },
        )
    }

    /// What an unprivileged write or truncate, or any chown, does to privileges (ext4's
    /// `file_remove_privs` and `chown_common`): clears set-user-ID; set-group-ID when
    /// group-execute is set, or when `who` is not in the file's group and not `privileged`
    /// (CAP_FSETID); and `security.capability`. Only regular files lose anything. `i` is the
    /// inode as the caller will store it; the listener hears of a change at once (the reply
    /// to the request in hand may not carry attributes).
    fn kill_suidgid(
        &self,
        st: &mut State,
        ino: Ino,
        i: &mut InodeItem,
        who: &Caller,
        privileged: bool,
    ) -> Result<()> {
        if i.kind() != FileKind::File {
            return Ok(());
        }
        let mode = i.mode;
        i.mode &= !libc::S_ISUID;
        if i.mode & libc::S_ISGID != 0
            && (i.mode & libc::S_IXGRP != 0 || (!privileged && !who.in_group(i.gid)))
        {
            i.mode &= !libc::S_ISGID;
        }
        let cap = b"security.capability";
        let had_cap = super::xattr::get(st, ino, cap)?.is_some();
        if had_cap {
            super::xattr::put(st, ino, cap, None)?;
        }
        if i.mode != mode || had_cap {
            self.attrs_changed(ino);
        }
        Ok(())
    }

    /// Drops privileges as an unprivileged modification by `who` does (see `kill_suidgid`),
    /// for the changes whose requests do not say whether the caller has CAP_FSETID
    /// (`fallocate`, `copy_file_range`): the adapter calls it first, as ext4's
    /// `file_modified` does.
    pub fn drop_privileges(&self, ino: Ino, who: &Caller) -> Result<()> {
        let _change = self.begin_change()?;
        let mut st = self.lock();
        let mut i = st.inode(ino)?;
        let before = i.clone();
        self.kill_suidgid(&mut st, ino, &mut i, who, false)?;
        if i != before {
            i.ctime = now();
            st.put_inode(ino, &i)?;
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
            self.write_at_level(ino, size, &zeros, None, Reserve::Freeing)?;
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

    /// The inode's key, for tools.
    pub fn inode_key(ino: Ino) -> Key {
        inode_key(ino)
    }
}
