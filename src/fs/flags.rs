//! Inode flags (`chattr`/`lsattr`, `FS_IOC_GETFLAGS`/`FS_IOC_SETFLAGS`) and the rules they
//! impose, as ext4 and the VFS apply them. Which flags exist and what each means is the
//! format's (`crate::format::inode_flags`).
//!
//! The FUSE kernel puts no `S_IMMUTABLE`/`S_APPEND` on its inodes, so every rule the VFS
//! applies to a kernel filesystem's immutable or append-only inode is applied here:
//!
//! - immutable (`i`): no open for writing (nor `O_TRUNC`), write, truncate, `setattr` of any
//!   kind, link, unlink, rename (of it or over it), xattr change, `fallocate`; an immutable
//!   directory takes no new entries and loses none;
//! - append only (`a`): open for writing only with `O_APPEND` and never with `O_TRUNC`; no
//!   truncate, chmod, chown, explicit times, link, unlink, rename, xattr change, and no
//!   `fallocate` other than plain allocation; an append-only directory takes new entries and
//!   loses none.
//!
//! Setting flags: the owner or root (EPERM otherwise); only root changes `i` or `a` (the
//! kernel checks `CAP_LINUX_IMMUTABLE` too, against the flags we report); an immutable inode's
//! other flags change only while `i` is cleared in the same call (EPERM); a flag stablefs
//! does not know, or one the inode's kind cannot carry, is EOPNOTSUPP.

use super::*;
use crate::format::inode_flags as fl;
use crate::format::InodeItem;

/// The flags a new inode inherits from its directory (ext4's `EXT4_FL_INHERITED`, of those
/// stablefs knows), limited to what the new inode's kind may carry.
const INHERITED: u32 = fl::SECRM
    | fl::UNRM
    | fl::COMPR
    | fl::SYNC
    | fl::NODUMP
    | fl::NOATIME
    | fl::NOTAIL
    | fl::DIRSYNC
    | fl::PROJINHERIT;

/// `i` or `a`.
const LOCKED: u32 = fl::IMMUTABLE | fl::APPEND;

/// The flags a new inode of `mode` gets in a directory with `dir_flags`.
pub(super) fn inherited(dir_flags: u32, mode: u32) -> u32 {
    match FileKind::from_mode(mode) {
        Some(kind) => dir_flags & INHERITED & fl::allowed(kind),
        None => 0,
    }
}

/// EPERM if the inode's contents may not change (immutable).
pub(super) fn refuse_write(i: &InodeItem) -> Result<()> {
    if i.flags & fl::IMMUTABLE != 0 {
        return errno(libc::EPERM);
    }
    Ok(())
}

/// EPERM if the inode is immutable or append only: no truncate, chmod, chown, explicit
/// times, link, rename, xattr change.
pub(super) fn refuse_change(i: &InodeItem) -> Result<()> {
    if i.flags & LOCKED != 0 {
        return errno(libc::EPERM);
    }
    Ok(())
}

/// EPERM if no entry may be added to directory `dir` (immutable).
pub(super) fn refuse_add(dir: &InodeItem) -> Result<()> {
    refuse_write(dir)
}

/// EPERM if the entry for `victim` may not be removed from `dir` (either immutable or
/// append only): the VFS's `may_delete`.
pub(super) fn refuse_remove(dir: &InodeItem, victim: &InodeItem) -> Result<()> {
    refuse_change(dir)?;
    refuse_change(victim)
}

/// EPERM if `set` may not be applied to `i` (ext4's `ext4_setattr` and the VFS's
/// `notify_change`): nothing at all on an immutable inode; on an append-only one no size,
/// mode, owner or explicit time. "Now" times (`touch`) are allowed there, and so is an
/// explicit mtime without an atime: that is how the kernel's writeback cache hands over the
/// mtime of appended data.
pub(super) fn refuse_setattr(i: &InodeItem, set: &SetAttr) -> Result<()> {
    if set.cached_times && i.flags & fl::IMMUTABLE != 0 {
        // The kernel hands over the times of data it wrote back (from before the flag).
        return Ok(());
    }
    refuse_write(i)?;
    if i.flags & fl::APPEND == 0 {
        return Ok(());
    }
    let explicit = |t: Option<SetTime>| matches!(t, Some(SetTime::At(_)));
    if set.size.is_some()
        || set.mode.is_some()
        || set.uid.is_some()
        || set.gid.is_some()
        || explicit(set.atime)
        || (explicit(set.mtime) && set.atime.is_some())
    {
        return errno(libc::EPERM);
    }
    Ok(())
}

/// EPERM if `fallocate` with `mode` may not change `i` (the VFS's `vfs_fallocate`): nothing
/// on an immutable file, only plain allocation on an append-only one.
pub(super) fn refuse_fallocate(i: &InodeItem, mode: i32) -> Result<()> {
    refuse_write(i)?;
    if i.flags & fl::APPEND != 0 && mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
        return errno(libc::EPERM);
    }
    Ok(())
}

/// The new flags for an inode of `kind` with `old` flags, owned by `owner`, asked for by
/// `uid`; or the errno ext4 gives (see the module doc).
pub fn check_set_flags(kind: FileKind, old: u32, new: u32, owner: u32, uid: u32) -> Result<u32> {
    if uid != 0 && uid != owner {
        return errno(libc::EPERM);
    }
    if (old ^ new) & LOCKED != 0 && uid != 0 {
        return errno(libc::EPERM);
    }
    if new & !fl::allowed(kind) != 0 {
        return errno(libc::EOPNOTSUPP);
    }
    if old & new & fl::IMMUTABLE != 0 && old != new {
        return errno(libc::EPERM);
    }
    Ok(new)
}

impl Fs {
    /// The inode's flags (`FS_IOC_GETFLAGS`).
    pub fn get_flags(&self, ino: Ino) -> Result<u32> {
        Ok(self.lock().inode(ino)?.flags & fl::KNOWN)
    }

    /// Sets the inode's flags (`FS_IOC_SETFLAGS`) for `who` (see the module doc). Changes
    /// ctime, as on ext4.
    pub fn set_flags(&self, ino: Ino, flags: u32, who: Caller) -> Result<()> {
        let _change = self.begin_change()?;
        let mut st = self.lock();
        let mut i = st.inode(ino)?;
        i.flags = check_set_flags(i.kind(), i.flags, flags, i.uid, who.uid)?;
        i.ctime = super::clock::now();
        st.put_inode(ino, &i)
    }

    /// Checks an `open` with `flags` (`O_*`) against the inode's flags: EPERM for writing to
    /// an immutable file, and for writing to an append-only one without `O_APPEND` or with
    /// `O_TRUNC` (the VFS's `may_open`). Returns whether writes to the file must be
    /// synchronous (`S`).
    pub fn check_open(&self, ino: Ino, flags: i32) -> Result<bool> {
        let i = self.lock().inode(ino)?;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if writes {
            refuse_write(&i)?;
        }
        if i.flags & fl::APPEND != 0
            && ((writes && flags & libc::O_APPEND == 0) || flags & libc::O_TRUNC != 0)
        {
            return errno(libc::EPERM);
        }
        Ok(i.flags & fl::SYNC != 0)
    }

    /// Are changes to `ino` to be durable before they return (`S`; for a directory also
    /// `D`: changes to its entries)?
    pub fn is_sync(&self, ino: Ino) -> bool {
        self.lock()
            .inode(ino)
            .is_ok_and(|i| i.flags & (fl::SYNC | fl::DIRSYNC) != 0)
    }
}
