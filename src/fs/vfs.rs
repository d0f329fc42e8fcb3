//! The generic mount options that the filesystem itself must carry out, because the FUSE
//! kernel leaves them to the server: access times (the kernel never updates atime on a FUSE
//! inode: it marks them all `S_NOATIME`), `sync` and `dirsync` (the kernel only turns writes
//! on a `sync` mount into fsyncs), and a read-only remount (the kernel refuses writes, but it
//! is the daemon that must commit and then stop changing the medium).
//!
//! All of them change at run time, by a remount ([`Fs::remount`]).

use super::*;
use crate::format::InodeItem;
use std::sync::atomic::AtomicU8;

/// When reads update atime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Atime {
    /// `relatime`, the kernel's default: when atime is not later than mtime or ctime (the
    /// first read after a modification), or is a day old.
    #[default]
    Relatime,
    /// `strictatime`: every read.
    Strict,
    /// `noatime`: never.
    Never,
}

/// What the generic options (`mount(8)`'s `relatime`, `nodiratime`, `sync`, ...) ask of the
/// filesystem.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Behaviour {
    pub atime: Atime,
    /// `nodiratime`: directories' atime never changes.
    pub nodiratime: bool,
    /// `sync`: every change is committed before it returns.
    pub sync: bool,
    /// `dirsync`: every change to a directory (create, link, unlink, rename) is committed
    /// before it returns.
    pub dirsync: bool,
}

/// A `MS_*` flag of `mount(2)` as the `u64` the remount ioctl carries (`c_ulong` is
/// narrower on 32-bit targets, where the cast is not the no-op it is here).
#[allow(clippy::unnecessary_cast)]
pub const fn ms(flag: libc::c_ulong) -> u64 {
    flag as u64
}

impl Behaviour {
    /// From `mount(2)`'s `MS_*` flags, as the kernel reads them: relatime unless `MS_NOATIME`, and
    /// `MS_STRICTATIME` overrides both.
    pub fn from_ms_flags(flags: u64) -> Behaviour {
        let atime = if flags & ms(libc::MS_STRICTATIME) != 0 {
            Atime::Strict
        } else if flags & ms(libc::MS_NOATIME) != 0 {
            Atime::Never
        } else {
            Atime::Relatime
        };
        Behaviour {
            atime,
            nodiratime: flags & ms(libc::MS_NODIRATIME) != 0,
            sync: flags & ms(libc::MS_SYNCHRONOUS) != 0,
            dirsync: flags & ms(libc::MS_DIRSYNC) != 0,
        }
    }

    fn encode(self) -> u8 {
        let atime = match self.atime {
            Atime::Relatime => 0,
            Atime::Strict => 1,
            Atime::Never => 2,
        };
        atime
            | u8::from(self.nodiratime) << 2
            | u8::from(self.sync) << 3
            | u8::from(self.dirsync) << 4
    }

    fn decode(b: u8) -> Behaviour {
        Behaviour {
            atime: match b & 3 {
                1 => Atime::Strict,
                2 => Atime::Never,
                _ => Atime::Relatime,
            },
            nodiratime: b & 4 != 0,
            sync: b & 8 != 0,
            dirsync: b & 16 != 0,
        }
    }

    /// Does an access at `now` update the atime of `i` (as the kernel's `atime_needs_update`)?
    pub fn atime_due(&self, i: &InodeItem, now: Timespec) -> bool {
        if self.nodiratime && i.kind() == FileKind::Dir {
            return false;
        }
        let due = match self.atime {
            Atime::Never => false,
            Atime::Strict => true,
            Atime::Relatime => {
                i.mtime >= i.atime || i.ctime >= i.atime || now.sec - i.atime.sec >= 24 * 3600
            }
        };
        due && i.atime != now
    }
}

/// The behaviour of a mounted filesystem, changed by remounts while requests run, and
/// whether the kernel has the mount read-only by a remount the daemon only followed
/// (`Fs::follow_remount`).
#[derive(Default)]
pub struct VfsState(AtomicU8, std::sync::atomic::AtomicBool);

impl VfsState {
    pub fn new(b: Behaviour) -> VfsState {
        VfsState(AtomicU8::new(b.encode()), Default::default())
    }

    /// Read-only in the kernel by a remount the daemon followed.
    pub fn kernel_read_only(&self) -> bool {
        self.1.load(Ordering::SeqCst)
    }

    pub fn get(&self) -> Behaviour {
        Behaviour::decode(self.0.load(Ordering::SeqCst))
    }

    fn set(&self, b: Behaviour) {
        self.0.store(b.encode(), Ordering::SeqCst);
    }
}

/// A change in progress (see [`Fs::begin_change`]): on a `sync` mount (or `dirsync`, for a
/// change to a directory) it is committed when the change ends, before the caller replies.
pub(super) struct Change<'a> {
    fs: &'a Fs,
    dir: bool,
    _store: ChangeGuard<'a, Refs>,
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        let b = self.fs.behaviour();
        if b.sync || (self.dir && b.dirsync) {
            // A failed commit latches the store as failed: the next change hears EIO.
            if let Err(e) = self.fs.store.commit() {
                log::error!("commit of a change on a sync mount failed: {e}");
            }
        }
    }
}

impl Fs {
    /// Starts a change (see `Store::begin_change`: fails unless changes are allowed now).
    pub(super) fn begin_change(&self) -> Result<Change<'_>> {
        Ok(Change {
            fs: self,
            dir: false,
            _store: self.store.begin_change()?,
        })
    }

    /// Starts a change to a directory's entries (committed at once under `dirsync`).
    pub(super) fn begin_dir_change(&self) -> Result<Change<'_>> {
        Ok(Change {
            fs: self,
            dir: true,
            _store: self.store.begin_change()?,
        })
    }

    pub fn behaviour(&self) -> Behaviour {
        self.vfs.get()
    }

    /// A remount: to read-only (`read_only`), everything is committed first and every later
    /// change fails with `EROFS`, nothing more is written; back to read-write, changes are
    /// accepted again. A filesystem mounted read-only (asked for, or because it is damaged or
    /// too new) cannot become read-write: `EROFS`. `b` takes effect in either case.
    pub fn remount(&self, read_only: bool, b: Behaviour) -> Result<()> {
        if read_only {
            self.store.set_frozen(true);
            self.vfs.set(b);
            if !self.read_only {
                self.store.commit()?;
            }
            return Ok(());
        }
        if self.read_only {
            return errno(libc::EROFS);
        }
        self.vfs.set(b);
        self.store.set_frozen(false);
        Ok(())
    }

    /// A remount the daemon learns of only after the kernel made it (`mount -i`, `mount(2)`
    /// without the helper): the kernel already refuses changes while the mount is read-only
    /// and sends them again once it is read-write, so nothing is refused here (refusing would
    /// race with the kernel: a change right after a bare `remount,rw` could still meet
    /// `EROFS`). To read-only, everything is committed and reads stop updating atime, so the
    /// daemon writes nothing of its own while the kernel has the mount read-only.
    pub fn follow_remount(&self, read_only: bool, b: Behaviour) -> Result<()> {
        self.vfs.1.store(read_only, Ordering::SeqCst);
        if !read_only {
            self.vfs.set(b);
            return Ok(());
        }
        self.vfs.set(Behaviour {
            atime: Atime::Never,
            ..b
        });
        if self.read_only || self.store.is_frozen() {
            return Ok(());
        }
        self.store.commit()
    }

    /// Updates the atime of `ino` (whose item is `i`) for an access now, if the mount's
    /// options say so. Nothing on a read-only mount.
    pub(super) fn touch_atime(&self, st: &mut State, ino: Ino, mut i: InodeItem) -> Result<()> {
        // The inode flag `A` (noatime) as ext4 honours it.
        if self.store.writable().is_err() || i.flags & crate::format::inode_flags::NOATIME != 0 {
            return Ok(());
        }
        let t = super::clock::now();
        if self.behaviour().atime_due(&i, t) {
            i.atime = t;
            st.put_inode(ino, &i)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inode(kind: u32, atime: i64, mtime: i64, ctime: i64) -> InodeItem {
        let t = |sec| Timespec { sec, nsec: 0 };
        InodeItem {
            mode: kind | 0o644,
            uid: 0,
            gid: 0,
            nlink: 1,
            size: 0,
            blocks: 0,
            rdev: 0,
            flags: 0,
            atime: t(atime),
            mtime: t(mtime),
            ctime: t(ctime),
            crtime: t(ctime),
            parent: 0,
            next_cookie: 0,
            generation: 0,
        }
    }

    #[test]
    fn flags_are_read_as_the_kernel_reads_them() {
        let b = Behaviour::from_ms_flags(0);
        assert_eq!(b, Behaviour::default());
        assert_eq!(b.atime, Atime::Relatime);
        assert_eq!(
            Behaviour::from_ms_flags(ms(libc::MS_NOATIME)).atime,
            Atime::Never
        );
        assert_eq!(
            Behaviour::from_ms_flags(ms(libc::MS_NOATIME) | ms(libc::MS_STRICTATIME)).atime,
            Atime::Strict
        );
        assert_eq!(
            Behaviour::from_ms_flags(ms(libc::MS_RELATIME) | ms(libc::MS_LAZYTIME)).atime,
            Atime::Relatime
        );
        let b = Behaviour::from_ms_flags(
            ms(libc::MS_NODIRATIME) | ms(libc::MS_SYNCHRONOUS) | ms(libc::MS_DIRSYNC),
        );
        assert!(b.nodiratime && b.sync && b.dirsync);
        for bits in 0..32u8 {
            let b = Behaviour::decode(bits & !3 | (bits % 3));
            assert_eq!(Behaviour::decode(b.encode()), b);
        }
    }

    #[test]
    fn atime_rules() {
        let now = Timespec {
            sec: 100_000,
            nsec: 0,
        };
        let relatime = Behaviour::default();
        let strict = Behaviour {
            atime: Atime::Strict,
            ..Behaviour::default()
        };
        let never = Behaviour {
            atime: Atime::Never,
            ..Behaviour::default()
        };
        let file = libc::S_IFREG;
        // Modified since the last access: every mode but noatime updates.
        let modified = inode(file, 10, 20, 20);
        assert!(relatime.atime_due(&modified, now));
        assert!(strict.atime_due(&modified, now));
        assert!(!never.atime_due(&modified, now));
        // Read since the last modification: only strictatime updates.
        let read = inode(file, now.sec - 10, now.sec - 20, now.sec - 20);
        assert!(!relatime.atime_due(&read, now));
        assert!(strict.atime_due(&read, now));
        // Equal times count as modified (the kernel's >=).
        assert!(relatime.atime_due(&inode(file, now.sec - 20, now.sec - 20, 10), now));
        // A day old: relatime updates.
        assert!(relatime.atime_due(&inode(file, now.sec - 86_400, 0, 0), now));
        assert!(!relatime.atime_due(&inode(file, now.sec - 86_399, 0, 0), now));
        // Already now: nothing to do.
        assert!(!strict.atime_due(&inode(file, now.sec, 0, 0), now));
        // nodiratime: directories never, files as before.
        let nodir = Behaviour {
            nodiratime: true,
            ..strict
        };
        assert!(!nodir.atime_due(&inode(libc::S_IFDIR, 10, 20, 20), now));
        assert!(nodir.atime_due(&inode(file, 10, 20, 20), now));
        assert!(strict.atime_due(&inode(libc::S_IFDIR, 10, 20, 20), now));
    }

    // ---- on a mounted filesystem (memory device, no FUSE) ----

    use crate::device::MemDevice;
    use crate::mkfs::{mkfs, MkfsOptions};

    const ROOT: Caller = Caller::ROOT;

    fn mounted(read_only: bool, behaviour: Behaviour) -> (Arc<MemDevice>, Arc<Fs>) {
        let dev = Arc::new(MemDevice::new(64 << 20, 512));
        mkfs(dev.clone(), &MkfsOptions::default()).unwrap();
        let opts = MountOptions {
            read_only,
            behaviour,
            idle_commit_ms: 0,
            commit_interval_secs: 3600,
        };
        let fs = Fs::mount(dev.clone(), opts).unwrap();
        (dev, fs)
    }

    fn file(fs: &Fs, name: &str) -> Result<Ino> {
        fs.mknod(ROOT_INO, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT)
            .map(|a| a.ino)
    }

    #[test]
    fn remount_read_only_commits_refuses_changes_and_back() {
        let (_dev, fs) = mounted(false, Behaviour::default());
        let f = file(&fs, "f").unwrap();
        fs.write(f, 0, b"data", None).unwrap();
        let before = fs.generation();
        fs.remount(true, Behaviour::default()).unwrap();
        assert!(fs.generation() > before, "remount,ro commits");
        assert!(fs.is_read_only() && fs.status().read_only);
        assert_eq!(file(&fs, "g").unwrap_err().errno(), libc::EROFS);
        assert_eq!(fs.write(f, 0, b"x", None).unwrap_err().errno(), libc::EROFS);
        assert_eq!(fs.unlink(ROOT_INO, b"f").unwrap_err().errno(), libc::EROFS);
        // Reads work and change nothing, atime included.
        let atime = fs.getattr(f).unwrap().atime;
        assert_eq!(fs.read(f, 0, 10).unwrap(), b"data");
        assert_eq!(fs.getattr(f).unwrap().atime, atime);
        let generation = fs.generation();
        fs.sync().unwrap();
        assert_eq!(fs.generation(), generation, "nothing to commit");
        fs.remount(false, Behaviour::default()).unwrap();
        assert!(!fs.is_read_only());
        file(&fs, "g").unwrap();
    }

    #[test]
    fn a_followed_remount_commits_and_stops_atime_but_refuses_nothing() {
        let (_dev, fs) = mounted(false, Behaviour::default());
        let f = file(&fs, "f").unwrap();
        fs.write(f, 0, b"data", None).unwrap();
        let before = fs.generation();
        fs.follow_remount(true, Behaviour::default()).unwrap();
        assert!(
            fs.generation() > before,
            "the kernel's remount,ro is followed by a commit"
        );
        assert!(fs.is_read_only() && fs.status().read_only);
        let atime = fs.getattr(f).unwrap().atime;
        fs.read(f, 0, 10).unwrap();
        assert_eq!(
            fs.getattr(f).unwrap().atime,
            atime,
            "no atime while read-only"
        );
        // The kernel refuses changes itself; one that reaches us comes after a remount,rw
        // the daemon has not seen yet, and must not fail.
        fs.write(f, 0, b"DATA", None).unwrap();
        fs.follow_remount(false, Behaviour::default()).unwrap();
        assert!(!fs.is_read_only());
        file(&fs, "g").unwrap();
    }

    #[test]
    fn a_read_only_mount_stays_read_only() {
        let (dev, fs) = mounted(false, Behaviour::default());
        fs.shutdown().unwrap();
        drop(fs);
        let ro = Fs::mount(
            dev,
            MountOptions {
                read_only: true,
                ..MountOptions::default()
            },
        )
        .unwrap();
        assert_eq!(
            ro.remount(false, Behaviour::default()).unwrap_err().errno(),
            libc::EROFS
        );
        ro.remount(true, Behaviour::default()).unwrap();
        assert!(ro.is_read_only());
    }

    #[test]
    fn sync_commits_every_change_dirsync_directory_changes() {
        let sync = Behaviour {
            sync: true,
            ..Behaviour::default()
        };
        let (_dev, fs) = mounted(false, sync);
        let g = fs.generation();
        let f = file(&fs, "f").unwrap();
        assert!(fs.generation() > g, "create committed");
        let g = fs.generation();
        fs.write(f, 0, b"x", None).unwrap();
        assert!(fs.generation() > g, "write committed");
        let g = fs.generation();
        let chmod = SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        };
        fs.setattr(f, &chmod).unwrap();
        assert!(fs.generation() > g, "chmod committed");

        let dirsync = Behaviour {
            dirsync: true,
            ..Behaviour::default()
        };
        let (_dev, fs) = mounted(false, dirsync);
        let g = fs.generation();
        let f = file(&fs, "f").unwrap();
        assert!(fs.generation() > g, "create committed");
        let g = fs.generation();
        fs.setattr(f, &chmod).unwrap();
        assert_eq!(fs.generation(), g, "a chmod is no directory change");
        fs.rename(ROOT_INO, b"f", ROOT_INO, b"h", 0).unwrap();
        assert!(fs.generation() > g, "rename committed");
        // A remount switches it off.
        fs.remount(false, Behaviour::default()).unwrap();
        let g = fs.generation();
        file(&fs, "i").unwrap();
        assert_eq!(fs.generation(), g);
    }

    #[test]
    fn readdir_is_an_access() {
        let (_dev, fs) = mounted(false, Behaviour::default());
        let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap().ino;
        fs.mknod(d, b"x", libc::S_IFREG | 0o644, 0, ROOT).unwrap();
        let before = fs.getattr(d).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs.readdir(d, 0, 100).unwrap();
        let first = fs.getattr(d).unwrap().atime;
        assert!(
            first > before.atime && first > before.mtime,
            "relatime: first readdir"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs.readdir(d, 0, 100).unwrap();
        assert_eq!(fs.getattr(d).unwrap().atime, first, "relatime: not again");
        let strict_nodir = Behaviour {
            atime: Atime::Strict,
            nodiratime: true,
            ..Behaviour::default()
        };
        fs.remount(false, strict_nodir).unwrap();
        fs.readdir(d, 0, 100).unwrap();
        assert_eq!(fs.getattr(d).unwrap().atime, first, "nodiratime");
        fs.remount(
            false,
            Behaviour {
                atime: Atime::Strict,
                ..Behaviour::default()
            },
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs.readdir(d, 0, 100).unwrap();
        assert!(
            fs.getattr(d).unwrap().atime > first,
            "strictatime: every readdir"
        );
    }
}
