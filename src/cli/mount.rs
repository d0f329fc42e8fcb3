//! `stablefs mount`: opens the device, mounts the filesystem and serves it until it is
//! unmounted.
//!
//! # Daemon
//!
//! Without `-f` the command returns only once the mount is up and answering, with status 0;
//! if mounting fails it prints why and returns non-zero, with nothing left behind. So it forks
//! first, while still single-threaded (the filesystem starts threads, fork would not carry
//! them over), and *before* opening the device (which the daemon must hold, not the parent).
//! The child starts a new session, opens the device, mounts, checks the mount answers a
//! `stat`, and then reports on a pipe: one [`READY`] byte, or an error message. The parent
//! waits on the pipe and exits accordingly; if the child dies without a word, the parent
//! reports how it died.
//!
//! # Signals
//!
//! SIGINT, SIGTERM and SIGHUP are blocked in the main thread before any thread exists, so
//! every thread inherits the mask and only a dedicated thread receives them, in `sigwait`.
//! It unmounts the mountpoint; the kernel then ends the FUSE session exactly as an outside
//! `umount` does: the request loops stop, fuser calls `destroy`, which commits and closes the
//! filesystem, and the process exits 0 (1 if that last commit failed).

use super::mkfs;
use super::mountinfo;
use super::options::{parse_mount_options, MountOpts};
use fuser::{BackgroundSession, Session};
use log::{error, info, warn};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, pipe2, setsid, Pid};
use stablefs::device::FileDevice;
use stablefs::fs::{Fs, MountOptions};
use stablefs::fuse::{self, MountConfig, Shutdown, StableFuse};
use stablefs::mkfs::MkfsOptions;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread;

/// The image used when no PATH is given, in the current directory.
pub const DEFAULT_IMAGE: &str = "stablefs.img";
/// Its size when it has to be created.
pub const DEFAULT_IMAGE_SIZE: u64 = 1 << 30;
/// The child's "mounted and answering" byte on the pipe; anything else is an error message.
const READY: u8 = 0;

pub struct MountArgs {
    pub foreground: bool,
    /// The `-o` arguments, in order.
    pub options: Vec<String>,
    /// Where the daemon's stderr goes (the logger already writes there).
    pub log: Option<File>,
    pub device: Option<PathBuf>,
    pub mountpoint: PathBuf,
}

/// What to mount where; paths are absolute (the daemon changes to `/`).
struct Plan {
    device: PathBuf,
    mountpoint: PathBuf,
    opts: MountOpts,
}

pub fn run(args: MountArgs) -> Result<(), String> {
    let opts = parse_mount_options(&args.options)?;
    let mountpoint = existing_dir(&args.mountpoint)?;
    let device = match &args.device {
        Some(path) => existing(path)?,
        None => default_image()?,
    };
    let plan = Plan {
        device,
        mountpoint,
        opts,
    };
    if args.foreground {
        block_signals()?;
        finish(start(&plan)?)
    } else {
        daemonize(&plan, args.log)
    }
}

fn existing_dir(path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("mountpoint {shown} is not a directory")),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(format!("mountpoint {shown} does not exist"));
        }
        Err(e) => return Err(format!("cannot access mountpoint {shown}: {e}")),
    }
    path.canonicalize()
        .map_err(|e| format!("cannot resolve mountpoint {shown}: {e}"))
}

/// An explicitly named device must exist: it is never created here.
fn existing(path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    match path.canonicalize() {
        Ok(path) => Ok(path),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(format!("{shown} does not exist")),
        Err(e) => Err(format!("cannot access {shown}: {e}")),
    }
}

/// `./stablefs.img`, created (sparse) and formatted if it does not exist yet. Runs in the
/// parent, before forking: the image is closed again before the daemon opens it.
fn default_image() -> Result<PathBuf, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot find the current directory: {e}"))?;
    let path = cwd.join(DEFAULT_IMAGE);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => existing(&path),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let report =
                mkfs::create_and_format(&path, DEFAULT_IMAGE_SIZE, &MkfsOptions::default())?;
            println!("{} (no PATH given)", mkfs::describe(&path, &report));
            Ok(path)
        }
        Err(e) => Err(format!("cannot access {}: {e}", path.display())),
    }
}

/// The filesystem, mounted and served by fuser's request loops.
struct Mounted {
    session: BackgroundSession,
    shutdown: Arc<Shutdown>,
}

/// Opens the device, mounts, and returns once the mount answers. Signals must be blocked
/// already: this starts threads.
fn start(plan: &Plan) -> Result<Mounted, String> {
    let Plan {
        device,
        mountpoint,
        opts,
    } = plan;
    let dev = open_device(device, opts.read_only)?;
    let mut fs_opts = MountOptions {
        read_only: opts.read_only,
        behaviour: opts.behaviour(),
        ..MountOptions::default()
    };
    if let Some(secs) = opts.commit_secs {
        fs_opts.commit_interval_secs = secs;
    }
    if let Some(ms) = opts.idle_commit_ms {
        fs_opts.idle_commit_ms = ms;
    }
    let fs = Fs::mount(Arc::new(dev), fs_opts)
        .map_err(|e| format!("cannot mount {}: {e}", device.display()))?;
    let fuse = StableFuse::new(Arc::clone(&fs), opts.workers).map_err(|e| {
        let _ = fs.shutdown();
        format!("cannot start worker threads: {e}")
    })?;
    let shutdown = fuse.shutdown_handle();
    let config = fuse::config(&MountConfig {
        device: device.clone(),
        read_only: opts.read_only,
        allow_other: opts.allow_other,
        fuse_threads: opts.fuse_threads,
        vfs_flags: opts.vfs_flags(),
    });
    let session = match fuse::mount(fuse, mountpoint, &config).and_then(Session::spawn) {
        Ok(session) => session,
        Err(e) => {
            // Without a session, destroy may never have run.
            if let Err(e) = shutdown.shutdown() {
                warn!("closing {} after the failed mount: {e}", device.display());
            }
            return Err(format!("cannot mount on {}: {e}", mountpoint.display()));
        }
    };
    // Answered by our own getattr: proves the request loops are serving.
    let answered = std::fs::metadata(mountpoint)
        .inspect(|m| raise_readahead(m.dev()))
        .map_err(|e| {
            format!(
                "the new mount on {} does not answer: {e}",
                mountpoint.display()
            )
        })
        .and_then(|m| {
            spawn_mount_watcher(mountpoint.clone(), m.dev(), Arc::clone(&fs))
                .map_err(|e| format!("cannot start the mount watcher: {e}"))
        })
        .and_then(|_| {
            spawn_signal_thread(mountpoint.clone())
                .map_err(|e| format!("cannot start the signal thread: {e}"))
        });
    if let Err(e) = answered {
        unmount(mountpoint);
        let _ = session.join();
        let _ = shutdown.shutdown();
        return Err(e);
    }
    info!(
        "mounted {} on {} ({}, {} FUSE threads, {} workers)",
        device.display(),
        mountpoint.display(),
        if opts.read_only { "ro" } else { "rw" },
        config.n_threads.unwrap_or(1),
        opts.workers.unwrap_or_else(fuse::default_workers)
    );
    Ok(Mounted { session, shutdown })
}

/// Opens the medium. The kernel finishes `umount` before the old daemon has made its last
/// commit and let go of the device, so `umount; mount` would race; a device that is in use is
/// therefore waited for a little before "in use" is final.
fn open_device(device: &Path, read_only: bool) -> Result<FileDevice, String> {
    let deadline = std::time::Instant::now() + IN_USE_WAIT;
    loop {
        match FileDevice::open(device, read_only) {
            Ok(dev) => return Ok(dev),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::ResourceBusy
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(format!("cannot open {}: {e}", device.display())),
        }
    }
}

/// How long a mount waits for a device another daemon is still closing.
const IN_USE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Tunes the mount's backing-device entry in sysfs, as root may; best effort (a failure only
/// costs speed):
/// - readahead: FUSE mounts get the kernel's default (128 KiB), and the `max_readahead` the
///   filesystem asks for can only lower it. Sequential reads are far cheaper in 1 MiB requests
///   (one device I/O and one verification pass each).
/// - dirty page cache: FUSE mounts may hold only 1% of the dirty limit (a strict limit, about
///   50 MB here), which throttles buffered writers in small steps; allow as much as the
///   daemon itself buffers.
fn raise_readahead(st_dev: u64) {
    let bdi = format!(
        "/sys/class/bdi/{}:{}",
        libc::major(st_dev),
        libc::minor(st_dev)
    );
    for (file, value) in [
        ("read_ahead_kb", READAHEAD_KB),
        ("max_bytes", DIRTY_PAGE_CACHE_BYTES),
    ] {
        let path = format!("{bdi}/{file}");
        if let Err(e) = std::fs::write(&path, value.to_string()) {
            info!("could not tune {path}: {e}");
        }
    }
}

/// Readahead for the mount, in KiB: one maximal FUSE request.
const READAHEAD_KB: u64 = 1024;
/// Dirty page cache the kernel may keep for the mount.
const DIRTY_PAGE_CACHE_BYTES: u64 = 256 << 20;

/// Serves until the filesystem is unmounted, then makes sure it was committed and closed.
fn finish(mounted: Mounted) -> Result<(), String> {
    let ended = mounted.session.join();
    if let Err(e) = &ended {
        error!("the FUSE session ended with an error: {e}");
    }
    // Normally destroy has done this already and we only learn its outcome.
    mounted
        .shutdown
        .shutdown()
        .map_err(|e| format!("could not commit at unmount: {e}"))?;
    info!("unmounted");
    ended.map_err(|e| format!("the FUSE session failed: {e}"))
}

// ---- signals ----

fn unmount_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(sig);
    }
    set
}

/// Must run before any thread is started, so that all of them inherit the mask.
fn block_signals() -> Result<(), String> {
    unmount_signals()
        .thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))
}

fn spawn_signal_thread(mountpoint: PathBuf) -> io::Result<()> {
    let set = unmount_signals();
    thread::Builder::new()
        .name("stablefs-signals".into())
        .spawn(move || loop {
            match set.wait() {
                Ok(sig) => {
                    info!("{sig}: unmounting {}", mountpoint.display());
                    unmount(&mountpoint);
                }
                Err(e) => {
                    error!("waiting for signals failed ({e}); signals will not unmount");
                    return;
                }
            }
        })?;
    Ok(())
}

/// Follows remounts of the mount that the daemon did not hear of through the remount ioctl
/// (`mount -i -o remount,ro`, or a program calling `mount(2)`): the kernel then refuses
/// changes by itself, but the daemon must still commit what it has and stop writing (atime),
/// or write atimes again (`Fs::follow_remount`). It waits for the kernel's word that the mount table changed (poll
/// on /proc/self/mountinfo, no busy loop) and applies every change of the mount's flags to
/// the filesystem; after a `stablefs remount` it finds them applied already.
fn spawn_mount_watcher(mountpoint: PathBuf, st_dev: u64, fs: Arc<Fs>) -> io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::{Seek, SeekFrom};
    use std::os::fd::AsFd;
    let dev = format!("{}:{}", libc::major(st_dev), libc::minor(st_dev));
    let ours = move |text: &str| mountinfo::find(text, &mountpoint).filter(|m| m.dev == dev);
    let mut file = File::open("/proc/self/mountinfo")?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let mut last = ours(&text).map(|m| m.ms_flags);
    thread::Builder::new()
        .name("stablefs-remounts".into())
        .spawn(move || loop {
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    error!("watching the mount table failed ({e}); remounts without the remount ioctl go unnoticed");
                    return;
                }
            }
            text.clear();
            if file.seek(SeekFrom::Start(0)).is_err() || file.read_to_string(&mut text).is_err() {
                continue;
            }
            let Some(now) = ours(&text) else { continue };
            if last == Some(now.ms_flags) {
                continue;
            }
            last = Some(now.ms_flags);
            let behaviour = stablefs::fs::Behaviour::from_ms_flags(now.ms_flags);
            match fs.follow_remount(now.read_only(), behaviour) {
                Ok(()) => info!(
                    "remounted {}",
                    if now.read_only() { "read-only" } else { "read-write" }
                ),
                Err(e) => warn!("cannot follow the remount: {e}"),
            }
        })?;
    Ok(())
}

/// Unmounts like `umount` would; if the mount is busy, detaches it instead (the session then
/// ends when the last file on it is closed); without the privilege, asks fusermount.
fn unmount(mountpoint: &Path) {
    let shown = mountpoint.display();
    match umount2(mountpoint, MntFlags::empty()) {
        Ok(()) => {}
        Err(Errno::EBUSY) => {
            warn!("{shown} is busy: detaching it (MNT_DETACH); it is committed and closed once the last file on it is closed");
            if let Err(e) = umount2(mountpoint, MntFlags::MNT_DETACH) {
                error!("cannot detach {shown}: {e}");
            }
        }
        Err(Errno::EPERM) => fusermount_unmount(mountpoint),
        Err(Errno::EINVAL) => info!("{shown} is not mounted any more"),
        Err(e) => error!("cannot unmount {shown}: {e}"),
    }
}

fn fusermount_unmount(mountpoint: &Path) {
    let shown = mountpoint.display();
    for tool in ["fusermount3", "fusermount"] {
        for args in [&["-u", "--"][..], &["-u", "-z", "--"][..]] {
            match Command::new(tool).args(args).arg(mountpoint).status() {
                Ok(status) if status.success() => {
                    info!("unmounted {shown} with {tool} {}", args.join(" "));
                    return;
                }
                Ok(status) => warn!("{tool} {} {shown}: {status}", args.join(" ")),
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) => warn!("cannot run {tool}: {e}"),
            }
        }
    }
    error!("cannot unmount {shown}: not permitted, and fusermount did not do it");
}

// ---- daemon ----

fn daemonize(plan: &Plan, log: Option<File>) -> Result<(), String> {
    let (reader, writer) = pipe2(OFlag::O_CLOEXEC)
        .map(|(r, w)| (File::from(r), File::from(w)))
        .map_err(|e| format!("cannot create a pipe: {e}"))?;
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    single_threaded()?;
    // SAFETY: safe because the process has exactly one thread (checked just above), so the child is
    // a complete copy with no lock held by a thread that would not exist in it, and it goes on
    // running ordinary Rust code; nothing is shared with the parent but inherited fds.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(format!("cannot fork: {}", io::Error::last_os_error())),
        0 => {
            drop(reader);
            std::process::exit(daemon(plan, writer, log))
        }
        child => {
            drop(writer);
            await_daemon(reader, Pid::from_raw(child), log.is_some())
        }
    }
}

/// Refuses to fork if some thread has been started after all: the child would lack it.
fn single_threaded() -> Result<(), String> {
    match std::fs::read_dir("/proc/self/task") {
        Ok(tasks) => match tasks.count() {
            1 => Ok(()),
            n => Err(format!(
                "internal error: {n} threads are running before fork"
            )),
        },
        _ => Ok(()),
    }
}

/// The child: mounts, reports on `ready`, serves. Returns the exit status.
fn daemon(plan: &Plan, mut ready: File, log: Option<File>) -> i32 {
    let mounted = detach(log.as_ref())
        .and_then(|()| block_signals())
        .and_then(|()| start(plan));
    match mounted {
        Ok(mounted) => {
            // If the parent is gone, the mount stays up all the same.
            let _ = ready.write_all(&[READY]);
            drop(ready);
            match finish(mounted) {
                Ok(()) => 0,
                Err(e) => {
                    error!("{e}");
                    1
                }
            }
        }
        Err(e) => {
            let _ = ready.write_all(e.as_bytes());
            1
        }
    }
}

/// Leaves the caller's session and terminal: stdin and stdout on /dev/null, stderr kept for
/// logs unless `--log` names a file; cwd `/` so that no directory is held busy.
fn detach(log: Option<&File>) -> Result<(), String> {
    setsid().map_err(|e| format!("setsid: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("cannot change to /: {e}"))?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("cannot open /dev/null: {e}"))?;
    dup2_stdin(&null).map_err(|e| format!("cannot redirect stdin: {e}"))?;
    dup2_stdout(&null).map_err(|e| format!("cannot redirect stdout: {e}"))?;
    if let Some(log) = log {
        dup2_stderr(log).map_err(|e| format!("cannot redirect stderr to the log: {e}"))?;
    }
    Ok(())
}

/// The parent: waits for the child's word.
fn await_daemon(mut pipe: File, child: Pid, logged: bool) -> Result<(), String> {
    let mut said = Vec::new();
    match pipe.read_to_end(&mut said) {
        _ if said.first() == Some(&READY) => Ok(()),
        Ok(_) if !said.is_empty() => Err(String::from_utf8_lossy(&said).into_owned()),
        Ok(_) => Err(format!(
            "the mount daemon {} before mounting{}",
            how_it_ended(child),
            if logged { " (see its log)" } else { "" }
        )),
        Err(e) => Err(format!("cannot hear from the mount daemon: {e}")),
    }
}

fn how_it_ended(child: Pid) -> String {
    match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("was killed by {sig}"),
        Ok(other) => format!("ended ({other:?})"),
        Err(e) => format!("ended (waitpid: {e})"),
    }
}
