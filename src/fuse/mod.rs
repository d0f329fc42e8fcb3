//! The adapter from `fuser::Filesystem` to [`crate::fs::Fs`].
//!
//! Each handler converts its arguments (names to bytes, fuser times to [`Timespec`]s, the
//! request's uid/gid to a [`Caller`]), calls one `Fs` method and ends in one `match` that
//! replies; an error becomes an errno exactly once, in [`convert::errno`].
//!
//! # Threads
//!
//! fuser runs `n_threads` request loops, each on its own cloned `/dev/fuse` fd. A request loop
//! must never wait on the device, or every request queued behind it waits too. So:
//!
//! - `read`, `fsync`, `fsyncdir`, `fallocate` and `copy_file_range` go to a [`pool::Pool`] of
//!   worker threads, which call the blocking `Fs` method and send the reply themselves. Reads
//!   wait for the device and then verify every block's crc32c; that verification is spread
//!   over the workers, not done on the request loop.
//! - `write` runs on the request loop. Its data is borrowed from the loop's request buffer;
//!   handing it to a worker would need a copy, and `Fs::write` already makes the one copy the
//!   design wants (into a private bounce buffer, computing the crc in the same pass). That is
//!   a memcpy of cache-hot data that only blocks under memory pressure, so a second copy would
//!   cost more than it saves.
//! - `lseek` (`SEEK_DATA`/`SEEK_HOLE`) is answered inline from extent maps, except when the
//!   kernel may still hold dirty pages of the file: see [`seek`].
//! - Everything else is metadata, done inline: it is served from trees cached in memory once
//!   verified, so only a cold lookup waits for a block.

mod convert;
mod inode_flags;
mod ioctl;
mod kernel_mount;
mod pool;
mod seek;

pub use ioctl::{GOINGDOWN_IOCTL, REMOUNT_IOCTL, SYNC_IOCTL, XFS_IOC_GOINGDOWN};
pub use kernel_mount::mount;

use crate::error::{Error, Result};
use crate::fs::{self, Attr, Fs, Ino, SetAttr};
use convert::{caller, creator, errno, file_attr, file_type, request_timespec, set_time};
use fuser::{
    AccessFlags, Config, CopyFileRangeFlags, FileHandle, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, MountOption, Notifier, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    SessionACL, TimeOrNow, WriteFlags,
};
use log::{debug, error, info};
use parking_lot::Mutex;
use pool::Pool;
use seek::Seeker;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// How long the kernel may cache attributes and entries: we are the only writer, so any
/// change goes through us and the kernel sees its effect in the reply.
const TTL: Duration = Duration::from_secs(1);
const MIB: u32 = 1 << 20;

/// The kernel asks for one page of directory entries per `readdir(plus)` call, and never tells
/// the filesystem the size in advance (fuser keeps it in the reply). A `readdir` entry takes at
/// least 32 bytes, a `readdirplus` entry at least 160, so these fill a 4 KiB page; entries that
/// do not fit are simply asked for again, so guessing low only costs a call.
const READDIR_BATCH: usize = 4096 / 32;
const READDIRPLUS_BATCH: usize = 4096 / 160;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// FUSE request loops when `threads=` is not given.
pub fn default_fuse_threads() -> usize {
    cores().max(2)
}

/// Read/fsync workers when `workers=` is not given: reads spend most of their time waiting for
/// the device, so twice the cores keeps the CPUs busy verifying while others wait.
pub fn default_workers() -> usize {
    (2 * cores()).max(4)
}

/// What the kernel mount looks like.
#[derive(Clone, Debug, Default)]
pub struct MountConfig {
    /// Shown as the source in `/proc/mounts`.
    pub device: PathBuf,
    pub read_only: bool,
    /// Let users other than the one who mounted use the filesystem (`allow_other`).
    pub allow_other: bool,
    /// Request loops; `None`: [`default_fuse_threads`].
    pub fuse_threads: Option<usize>,
    /// Generic VFS flags passed on as given (`nodev`, `noexec`, `noatime`, ...).
    pub vfs_flags: Vec<MountOption>,
}

/// The fuser session configuration for `opts`. Permission checks are always the kernel's
/// (`default_permissions`): the `fs` layer does none of its own.
pub fn config(opts: &MountConfig) -> Config {
    let mut c = Config::default();
    c.mount_options = vec![
        MountOption::FSName(opts.device.display().to_string()),
        MountOption::Subtype("stablefs".into()),
        MountOption::DefaultPermissions,
        if opts.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    c.mount_options.extend(opts.vfs_flags.iter().cloned());
    if opts.allow_other {
        c.acl = SessionACL::All;
    }
    c.n_threads = Some(opts.fuse_threads.unwrap_or_else(default_fuse_threads));
    c.clone_fd = true;
    c
}

/// Commits and closes the filesystem exactly once, whoever asks first: `destroy` when the
/// session ends normally, or the mount command afterwards if `destroy` never ran.
pub struct Shutdown {
    fs: Arc<Fs>,
    /// The outcome of the one real shutdown, kept for later callers.
    outcome: Mutex<Option<std::result::Result<(), String>>>,
}

impl Shutdown {
    /// Commits everything and stops the filesystem (the first call), or returns what the
    /// first call returned.
    pub fn shutdown(&self) -> std::result::Result<(), String> {
        let mut outcome = self.outcome.lock();
        outcome
            .get_or_insert_with(|| self.fs.shutdown().map_err(|e| e.to_string()))
            .clone()
    }
}

/// A mounted [`Fs`] as a `fuser::Filesystem`.
pub struct StableFuse {
    fs: Arc<Fs>,
    workers: Pool,
    shutdown: Arc<Shutdown>,
    seeker: Seeker,
    dirs: OpenDirs,
    /// Offer idmapped mounts (`FUSE_ALLOW_IDMAP`): set by `kernel_mount` when fuser's session
    /// does not check the header's uid (which the kernel then leaves out).
    allow_idmap: bool,
}

/// The open directory handles and where each one's listing ends (`Fs::readdir_limit`): set
/// at `opendir` and again by a `readdir` at offset 0 (a new listing: `rewinddir`), so that a
/// listing never meets an entry again that was renamed away and back meanwhile. Cookies
/// themselves stay valid (`telldir`/`seekdir`); only the end moves, and only on a rewind.
#[derive(Default)]
struct OpenDirs {
    next: AtomicU64,
    limits: Mutex<HashMap<u64, u64>>,
}

impl OpenDirs {
    fn open(&self, limit: u64) -> FileHandle {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.limits.lock().insert(fh, limit);
        FileHandle(fh)
    }

    /// The limit of `fh` for a `readdir` at `offset`; at offset 0 it is taken anew.
    fn limit(&self, fs: &Fs, dir: Ino, fh: FileHandle, offset: u64) -> Result<u64> {
        if offset == 0 {
            let limit = fs.readdir_limit(dir)?;
            self.limits.lock().insert(fh.0, limit);
            return Ok(limit);
        }
        match self.limits.lock().get(&fh.0) {
            Some(&limit) => Ok(limit),
            // Not from our opendir (cannot happen): the directory as it is now.
            None => fs.readdir_limit(dir),
        }
    }

    fn close(&self, fh: FileHandle) {
        self.limits.lock().remove(&fh.0);
    }
}

impl StableFuse {
    /// `workers`: threads for reads and fsyncs (see the module doc); `None`:
    /// [`default_workers`].
    pub fn new(fs: Arc<Fs>, workers: Option<usize>) -> io::Result<StableFuse> {
        let workers = Pool::new(workers.unwrap_or_else(default_workers))?;
        let shutdown = Arc::new(Shutdown {
            fs: Arc::clone(&fs),
            outcome: Mutex::new(None),
        });
        let seeker = Seeker::new(Arc::clone(&fs));
        // Attributes the filesystem changes on its own (privileges a write drops): the kernel
        // forgets its cached copy (offset -1: the attributes only, never the pages, so this
        // cannot wait on a page lock held by the request in hand).
        let notifier = seeker.notifier_slot();
        fs.set_attr_listener(Box::new(move |ino| {
            if let Some(n) = notifier.get() {
                if let Err(e) = n.inval_inode(INodeNo(ino), -1, 0) {
                    debug!("invalidating the attributes of inode {ino}: {e}");
                }
            }
        }));
        Ok(StableFuse {
            seeker,
            fs,
            workers,
            shutdown,
            dirs: OpenDirs::default(),
            allow_idmap: false,
        })
    }

    /// Where the session's notifier goes once the session exists.
    fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.seeker.notifier_slot()
    }

    pub fn shutdown_handle(&self) -> Arc<Shutdown> {
        Arc::clone(&self.shutdown)
    }

    /// With `FUSE_ATOMIC_O_TRUNC` the kernel leaves `O_TRUNC` to `open` (it has already checked
    /// write permission), instead of sending a `setattr` first.
    /// An O_TRUNC by anyone but root clears set-user-ID and friends.
    /// Returns whether the file is synchronous (inode flag `S`): its writes then bypass the
    /// kernel's cache (`FOPEN_DIRECT_IO`) and are committed before they return.
    fn open_file(&self, ino: Ino, flags: i32, who: impl FnOnce() -> fs::Caller) -> Result<bool> {
        // Immutable and append-only files are refused here, before the kernel caches any
        // write: see `crate::fs::flags`.
        let sync = self.fs.check_open(ino, flags)?;
        if flags & libc::O_TRUNC != 0 {
            let who = who();
            let truncate = SetAttr {
                size: Some(0),
                who: Some(who),
                kill_suidgid: who.uid != 0,
                ..SetAttr::default()
            };
            self.fs.setattr(ino, &truncate)?;
        }
        self.fs.open(ino)?;
        Ok(sync)
    }

    /// Replies with `result` through `reply`, once it is durable when one of `dirs` is
    /// synchronous (inode flags `D` or `S`: the change is committed first, on a worker).
    fn reply_synced<T: Send + 'static>(
        &self,
        dirs: &[Ino],
        result: Result<T>,
        reply: impl FnOnce(Result<T>) + Send + 'static,
    ) {
        if result.is_err() || !dirs.iter().any(|&d| self.fs.is_sync(d)) {
            return reply(result);
        }
        let fs = Arc::clone(&self.fs);
        self.workers.run(move || reply(fs.sync().and(result)));
    }

    fn create_file(&self, parent: Ino, name: &[u8], perm: u32, who: fs::Caller) -> Result<Attr> {
        let attr = self.fs.mknod(parent, name, libc::S_IFREG | perm, 0, who)?;
        if let Err(e) = self.fs.open(attr.ino) {
            // The kernel never hears of this entry, so it will never forget it.
            self.fs.forget(attr.ino, 1);
            return Err(e);
        }
        Ok(attr)
    }

    /// Fills `reply` with the entries after `offset` and below `limit`. Every entry but "." and ".." counts a
    /// lookup, as the kernel will forget it later; an entry that does not fit is forgotten
    /// again at once. Fails only if no entry could be added.
    fn fill_dir_plus(
        &self,
        dir: Ino,
        offset: u64,
        limit: u64,
        reply: &mut ReplyDirectoryPlus,
    ) -> Result<()> {
        let entries = self
            .fs
            .readdir_below(dir, offset, limit, READDIRPLUS_BATCH)?;
        let mut added = 0;
        for entry in entries {
            // The kernel takes no reference for "." and "..": plain getattr.
            let dots = entry.name == b"." || entry.name == b"..";
            let found = if dots {
                self.fs.getattr(entry.ino)
            } else {
                self.fs.lookup(dir, &entry.name)
            };
            let attr = match found {
                Ok(attr) => attr,
                Err(Error::Errno(libc::ENOENT)) => continue, // removed since readdir
                Err(e) if added == 0 => return Err(e),
                Err(_) => break, // the next call reports it
            };
            let name = OsStr::from_bytes(&entry.name);
            let full = reply.add(
                INodeNo(attr.ino),
                entry.cookie,
                name,
                &TTL,
                &file_attr(&attr),
                Generation(attr.generation),
            );
            if full {
                if !dots {
                    self.fs.forget(attr.ino, 1);
                }
                break;
            }
            added += 1;
        }
        Ok(())
    }
}

/// The answer to a `getxattr`/`listxattr` that asked for at most `size` bytes.
enum XattrAnswer {
    Size(u32),
    Data(Vec<u8>),
}

fn xattr_answer(value: Vec<u8>, size: u32) -> Result<XattrAnswer> {
    let len = u32::try_from(value.len()).map_err(|_| Error::Errno(libc::E2BIG))?;
    match size {
        0 => Ok(XattrAnswer::Size(len)),
        _ if len > size => Err(Error::Errno(libc::ERANGE)),
        _ => Ok(XattrAnswer::Data(value)),
    }
}

fn reply_xattr(answer: Result<XattrAnswer>, reply: ReplyXattr) {
    match answer {
        Ok(XattrAnswer::Size(n)) => reply.size(n),
        Ok(XattrAnswer::Data(v)) => reply.data(&v),
        Err(e) => reply.error(errno(&e)),
    }
}

/// `renameat2` flags the fs layer understands: none, `RENAME_NOREPLACE` or
/// `RENAME_EXCHANGE`, each but the last also with `RENAME_WHITEOUT`; anything else (exchange
/// and no-replace at once, a whiteout with an exchange, unknown bits) is `EINVAL`.
fn rename_flags(flags: RenameFlags) -> Result<u32> {
    match flags.bits() {
        f @ (0 | fs::RENAME_NOREPLACE | fs::RENAME_EXCHANGE | fs::RENAME_WHITEOUT) => Ok(f),
        f if f == fs::RENAME_WHITEOUT | fs::RENAME_NOREPLACE => Ok(f),
        _ => Err(Error::Errno(libc::EINVAL)),
    }
}

fn reply_entry(result: Result<Attr>, reply: ReplyEntry) {
    match result {
        Ok(attr) => reply.entry(&TTL, &file_attr(&attr), Generation(attr.generation)),
        Err(e) => reply.error(errno(&e)),
    }
}

fn reply_empty(result: Result<()>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Sets a kernel limit, or the nearest value the kernel accepts.
fn set_or_nearest(
    what: &str,
    want: u32,
    mut set: impl FnMut(u32) -> std::result::Result<u32, u32>,
) {
    if let Err(nearest) = set(want) {
        debug!("{what}: {want} not accepted, using {nearest}");
        let _ = set(nearest);
    }
}

impl Filesystem for StableFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // fuser 0.18 already requests ASYNC_READ and BIG_WRITES, MAX_PAGES when offered,
        // 1 ns time granularity and a 16 MiB max_write; we ask for what we rely on explicitly
        // so that a change of defaults cannot silently take it away.
        set_or_nearest("max_write", MIB, |v| config.set_max_write(v));
        set_or_nearest("max_readahead", MIB, |v| config.set_max_readahead(v));
        if let Err(nearest) = config.set_time_granularity(Duration::from_nanos(1)) {
            debug!("time granularity: 1 ns not accepted, using {nearest:?}");
        }
        for flag in [
            InitFlags::FUSE_ASYNC_READ,
            InitFlags::FUSE_BIG_WRITES,
            InitFlags::FUSE_MAX_PAGES,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            // O_TRUNC is handled in open (see open_file).
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_WRITEBACK_CACHE,
            // The kernel enforces POSIX ACLs, which we store and keep in step with the mode
            // (`fs::acl`). The umask comes to us unapplied (DONT_MASK), because a default ACL
            // replaces it.
            InitFlags::FUSE_POSIX_ACL,
            InitFlags::FUSE_DONT_MASK,
            // We clear set-user-ID and friends where the kernel asks (writes flagged
            // FUSE_WRITE_KILL_SUIDGID, unprivileged truncates). In return the kernel marks the
            // superblock SB_NOSEC and stops sending a getxattr("security.capability") round
            // trip before every write(2), which otherwise halves sequential write speed.
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
            // File handles that outlive the kernel's inode cache (open_by_handle_at after a
            // remount, NFS export): the kernel decodes a handle by LOOKUP(ino, ".") and a
            // directory's parent by LOOKUP(ino, ".."), and compares the generation we reply
            // with the handle's (see `Fs::lookup`).
            InitFlags::FUSE_EXPORT_SUPPORT,
        ] {
            if let Err(missing) = config.add_capabilities(flag) {
                info!("the kernel does not offer {missing:?}; going without");
            }
        }
        // Idmapped mounts (Linux 6.12, with default_permissions, which we always use). The
        // kernel then maps the ids of a chown and of every reply's attributes itself, puts
        // the creator's ids, mapped back into ours, in the header of a create, mknod, mkdir,
        // symlink or tmpfile, and in every other header no ids at all (`INVALID_ID`): for
        // those `caller` asks /proc. Only if nothing here checks header ids either: see
        // `kernel_mount`.
        if self.allow_idmap {
            if let Err(missing) = config.add_capabilities(InitFlags::FUSE_ALLOW_IDMAP) {
                info!("the kernel does not offer {missing:?}; no idmapped mounts");
            }
        }
        Ok(())
    }

    fn destroy(&mut self) {
        // Let queued reads and fsyncs finish before the last commit.
        self.workers.finish();
        match self.shutdown.shutdown() {
            Ok(()) if self.fs.status().failed => info!("closed; nothing committed (shut down)"),
            Ok(()) => info!("committed and closed"),
            Err(e) => error!("could not commit at unmount: {e}"),
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(self.fs.lookup(parent.0, name.as_bytes()), reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    // batch_forget: fuser's default calls `forget` for each node, which is all we would do
    // (and its argument type is not exported by fuser 0.18, so it cannot be overridden).

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Only a truncate or a chown asks who the caller is (privileges they drop); anything
        // else need not look it up (see `caller`).
        let who = (size.is_some() || uid.is_some() || gid.is_some()).then(|| caller(req));
        let set = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
            ctime: ctime.map(request_timespec),
            who,
            cached_times: fh.is_some()
                && mtime.is_some()
                && atime.is_none()
                && (mode, uid, gid, size) == (None, None, None, None),
            // fuser does not pass FATTR_KILL_SUIDGID; the kernel sets it exactly when the
            // caller lacks CAP_FSETID, which for us means: not root.
            kill_suidgid: size.is_some() && who.is_some_and(|w| w.uid != 0),
        };
        match self.fs.setattr(ino.0, &set) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let mode = (mode & libc::S_IFMT) | (mode & 0o7777);
        let made = self
            .fs
            .mknod(parent.0, name.as_bytes(), mode, rdev, creator(req, umask));
        self.reply_synced(&[parent.0], made, |r| reply_entry(r, reply));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let who = creator(req, umask);
        let made = self.fs.mkdir(parent.0, name.as_bytes(), mode & 0o7777, who);
        self.reply_synced(&[parent.0], made, |r| reply_entry(r, reply));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let gone = self.fs.unlink(parent.0, name.as_bytes());
        self.reply_synced(&[parent.0], gone, |r| reply_empty(r, reply));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let gone = self.fs.rmdir(parent.0, name.as_bytes());
        self.reply_synced(&[parent.0], gone, |r| reply_empty(r, reply));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let target = target.as_os_str().as_bytes();
        let made = self
            .fs
            .symlink(parent.0, link_name.as_bytes(), target, caller(req));
        self.reply_synced(&[parent.0], made, |r| reply_entry(r, reply));
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = (name.as_bytes(), newname.as_bytes());
        let renamed = rename_flags(flags).and_then(|flags| match flags & fs::RENAME_WHITEOUT {
            0 => self.fs.rename(parent.0, name, newparent.0, newname, flags),
            w => {
                let flags = flags & !w;
                let who = caller(req);
                self.fs
                    .rename_whiteout(parent.0, name, newparent.0, newname, flags, who)
            }
        });
        self.reply_synced(&[parent.0, newparent.0], renamed, |r| reply_empty(r, reply));
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let linked = self.fs.link(ino.0, newparent.0, newname.as_bytes());
        self.reply_synced(&[newparent.0], linked, |r| reply_entry(r, reply));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // No keep-cache (yet): the kernel drops its cached pages of a file on every open.
        // No direct_io: the page cache only ever holds verified data. O_DIRECT opens need none
        // either: the kernel sends their reads and writes straight here, past its cache.
        match self.open_file(ino.0, flags.0, || caller(req)) {
            Ok(sync) => {
                self.seeker.opened(ino.0, flags.0);
                let open = match sync {
                    true => FopenFlags::FOPEN_DIRECT_IO,
                    false => FopenFlags::empty(),
                };
                reply.opened(FileHandle(0), open)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = Arc::clone(&self.fs);
        self.workers
            .run(move || match fs.read(ino.0, offset, size) {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(&e)),
            });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // Inline on purpose: see the module doc.
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        let written = self
            .fs
            .write(ino.0, offset, data, kill.then(|| caller(req)));
        let answer = move |r: Result<u32>| match r {
            Ok(written) => reply.written(written),
            Err(e) => reply.error(errno(&e)),
        };
        // The kernel's writeback of its cache never needs a synchronous commit: an `S` file is
        // opened for direct I/O (see `open`), so only its own writes are synchronous, and the
        // check (a lock and a lookup) stays off the path of every cached write.
        if write_flags.contains(WriteFlags::FUSE_WRITE_CACHE) {
            answer(written);
        } else {
            self.reply_synced(&[ino.0], written, answer);
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.seeker.released(ino.0, flags.0);
        self.fs.release(ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = Arc::clone(&self.fs);
        self.workers
            .run(move || reply_empty(fs.fsync(ino.0, datasync), reply));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Readdir cookies stay valid while the directory changes; the handle only keeps where
        // its listing ends (see `OpenDirs`).
        match self.fs.readdir_limit(ino.0) {
            Ok(limit) => reply.opened(self.dirs.open(limit), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = self
            .dirs
            .limit(&self.fs, ino.0, fh, offset)
            .and_then(|limit| self.fs.readdir_below(ino.0, offset, limit, READDIR_BATCH));
        match entries {
            Ok(entries) => {
                for e in &entries {
                    let name = OsStr::from_bytes(&e.name);
                    if reply.add(INodeNo(e.ino), e.cookie, file_type(e.kind), name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let filled = self
            .dirs
            .limit(&self.fs, ino.0, fh, offset)
            .and_then(|limit| self.fill_dir_plus(ino.0, offset, limit, &mut reply));
        match filled {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs.close(fh);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = Arc::clone(&self.fs);
        self.workers
            .run(move || reply_empty(fs.fsync(ino.0, datasync), reply));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        // `position` is for macOS resource forks; Linux always sends 0.
        let name = name.as_bytes();
        let set = match position {
            0 if fs::acl::is_acl(name) => self.fs.set_acl(ino.0, name, value, flags, &caller(req)),
            0 => self.fs.setxattr(ino.0, name, value, flags),
            _ => Err(Error::Errno(libc::EINVAL)),
        };
        reply_empty(set, reply);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = self.fs.getxattr(ino.0, name.as_bytes());
        reply_xattr(value.and_then(|v| xattr_answer(v, size)), reply);
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        // As ext4: trusted.* names are listed to privileged callers only.
        let names = self.fs.listxattr_as(ino.0, caller(req).uid == 0);
        reply_xattr(names.and_then(|v| xattr_answer(v, size)), reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.fs.removexattr(ino.0, name.as_bytes()), reply);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Not called with default_permissions, which we always mount with: the kernel checks.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        // A new file is empty: O_TRUNC has nothing to do.
        let who = creator(req, umask);
        let made = self.create_file(parent.0, name.as_bytes(), mode & 0o7777, who);
        let mut open = FopenFlags::empty();
        if let Ok(attr) = &made {
            self.seeker.opened(attr.ino, flags);
            // Inherited `S`: see `open`.
            if self.fs.is_sync(attr.ino) {
                open = FopenFlags::FOPEN_DIRECT_IO;
            }
        }
        self.reply_synced(&[parent.0], made, move |made| match made {
            Ok(attr) => reply.created(
                &TTL,
                &file_attr(&attr),
                Generation(attr.generation),
                FileHandle(0),
                open,
            ),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode & (libc::FALLOC_FL_COLLAPSE_RANGE | libc::FALLOC_FL_INSERT_RANGE) != 0 {
            // Linux (6.18) refuses both for FUSE before asking us (`fuse_file_fallocate`), so
            // this is news: `Fs::fallocate` refuses them, and the README's limits need a look.
            info!("the kernel passed on fallocate mode {mode:#x} (collapse or insert range)");
        }
        // A punch or zeroing may read the partial blocks at its ends from the device.
        let fs = Arc::clone(&self.fs);
        let who = caller(req);
        self.workers.run(move || {
            let done = privileges_dropped(&fs, ino.0, &who)
                .and_then(|()| fs.fallocate(ino.0, offset, length, mode));
            reply_empty(done, reply)
        });
    }

    /// The ioctls: see `ioctl` (the module) for which, and who may use them.
    fn ioctl(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        self.answer_ioctl(req, ino.0, cmd, in_data, out_size, reply);
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        // See `seek` for the writeback cache.
        self.seeker.lseek(ino.0, offset, whence, reply);
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let fs = Arc::clone(&self.fs);
        let who = caller(req);
        self.workers.run(move || {
            let copied = match flags.bits() {
                0 => privileges_dropped(&fs, ino_out.0, &who).and_then(|()| {
                    fs.copy_file_range(
                        ino_in.0,
                        offset_in,
                        ino_out.0,
                        offset_out,
                        len.min(COPY_MAX),
                    )
                }),
                _ => Err(Error::Errno(libc::EINVAL)),
            };
            match copied {
                // At most COPY_MAX, so it fits.
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }
}

/// Before a change whose request does not say whether the caller has CAP_FSETID
/// (`fallocate`, `copy_file_range`; writes and truncates carry the kernel's word): a caller
/// other than root loses set-user-ID and friends first, as ext4's `file_modified` does.
fn privileges_dropped(fs: &Fs, ino: Ino, who: &fs::Caller) -> Result<()> {
    if who.uid != 0 {
        fs.drop_privileges(ino, who)?;
    }
    Ok(())
}

/// Most bytes one `copy_file_range` request copies: the reply's count is 32 bits, and a short
/// copy is normal (callers go on from where it stopped).
const COPY_MAX: u64 = 1 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_flags_are_checked() {
        assert_eq!(fs::RENAME_NOREPLACE, libc::RENAME_NOREPLACE);
        assert_eq!(fs::RENAME_EXCHANGE, libc::RENAME_EXCHANGE);
        assert_eq!(rename_flags(RenameFlags::empty()).unwrap(), 0);
        assert_eq!(
            rename_flags(RenameFlags::RENAME_NOREPLACE).unwrap(),
            libc::RENAME_NOREPLACE
        );
        assert_eq!(
            rename_flags(RenameFlags::RENAME_EXCHANGE).unwrap(),
            libc::RENAME_EXCHANGE
        );
        assert_eq!(fs::RENAME_WHITEOUT, libc::RENAME_WHITEOUT);
        assert_eq!(
            rename_flags(RenameFlags::RENAME_WHITEOUT).unwrap(),
            libc::RENAME_WHITEOUT
        );
        assert_eq!(
            rename_flags(RenameFlags::RENAME_WHITEOUT | RenameFlags::RENAME_NOREPLACE).unwrap(),
            libc::RENAME_WHITEOUT | libc::RENAME_NOREPLACE
        );
        for bad in [
            RenameFlags::RENAME_WHITEOUT | RenameFlags::RENAME_EXCHANGE,
            RenameFlags::RENAME_NOREPLACE | RenameFlags::RENAME_EXCHANGE,
            RenameFlags::from_bits_retain(1 << 10),
        ] {
            assert_eq!(rename_flags(bad).unwrap_err().errno(), libc::EINVAL);
        }
    }

    #[test]
    fn xattr_size_probe_and_erange() {
        let v = b"value".to_vec();
        assert!(matches!(
            xattr_answer(v.clone(), 0),
            Ok(XattrAnswer::Size(5))
        ));
        assert!(matches!(xattr_answer(v.clone(), 5), Ok(XattrAnswer::Data(d)) if d == v));
        assert!(matches!(
            xattr_answer(v.clone(), 64),
            Ok(XattrAnswer::Data(_))
        ));
        let small = xattr_answer(v, 4).err().map(|e| e.errno());
        assert_eq!(small, Some(libc::ERANGE));
    }

    #[test]
    fn mount_config() {
        let c = config(&MountConfig {
            device: "/dev/sdz".into(),
            read_only: true,
            allow_other: true,
            fuse_threads: Some(3),
            vfs_flags: vec![MountOption::NoExec],
        });
        assert!(c
            .mount_options
            .contains(&MountOption::FSName("/dev/sdz".into())));
        assert!(c
            .mount_options
            .contains(&MountOption::Subtype("stablefs".into())));
        assert!(c.mount_options.contains(&MountOption::DefaultPermissions));
        assert!(c.mount_options.contains(&MountOption::RO));
        assert!(c.mount_options.contains(&MountOption::NoExec));
        assert!(!c.mount_options.contains(&MountOption::RW));
        assert_eq!(c.acl, SessionACL::All);
        assert_eq!(c.n_threads, Some(3));
        assert!(c.clone_fd);

        let c = config(&MountConfig::default());
        assert!(c.mount_options.contains(&MountOption::RW));
        assert_eq!(c.acl, SessionACL::Owner);
        assert_eq!(c.n_threads, Some(default_fuse_threads()));
        assert!(default_fuse_threads() >= 2 && default_workers() >= 4);
    }
}
