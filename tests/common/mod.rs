//! The mount harness that every integration test uses: scratch directories on a disk-backed
//! filesystem, `stablefs mkfs`, and [`TestFs`], a mounted stablefs whose daemon is a child of
//! the test and which is always unmounted and reaped, even when the test panics.
//!
//! Rules it keeps, so that tests run in parallel (nextest: a process per test; `cargo test`: a
//! thread per test) and never leave anything behind:
//! - every `TestFs` has its own temporary directory (image, mountpoint, daemon log) under
//!   `CARGO_TARGET_TMPDIR`, which is on the disk (tmpfs is refused), so `O_DIRECT` works;
//! - whether something is mounted is read from `/proc/self/mountinfo`, never by touching the
//!   mountpoint: a `stat` on the mount of a hung daemon hangs, one on a dead daemon fails;
//! - the harness unmounts with `umount2(2)` itself (we are root, no fusermount), so it sees
//!   `EBUSY` and can retry; a mount whose daemon is dead is aborted through
//!   `/sys/fs/fuse/connections/N/abort` and detached;
//! - `Drop` unmounts (lazily if it has to), kills the daemon if it is still alive, waits for it,
//!   and never panics.
//!
//! Mounts made by the daemon-mode `stablefs mount` (or by `mount.stablefs`), whose daemon is not
//! our child, are held by a [`DaemonMount`] guard that finds the daemon in `/proc`.
//!
//! `STABLEFS_TEST_BIN=/path/to/binary` runs the tests against another binary with the same command
//! line (`scripts/standin-stablefs` is one, to exercise this harness on its own);
//! `STABLEFS_KEEP_TMP=1` keeps a failed test's directory (image and daemon log).

// Each test crate uses its own subset of the harness.
#![allow(dead_code)]

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod differential;

/// How long a mount may take to appear.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon may take to exit after an unmount or a signal.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `run` lets a command go before it kills it.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an unmount is retried while the kernel answers `EBUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// The `stablefs` binary under test.
pub fn stablefs_bin() -> PathBuf {
    match std::env::var_os("STABLEFS_TEST_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_stablefs")),
    }
}

/// A fresh, uniquely named directory under `CARGO_TARGET_TMPDIR`, removed on drop. The
/// directory is on a disk-backed filesystem that accepts `O_DIRECT` (checked once per process).
pub fn scratch_dir() -> TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).unwrap_or_else(|e| panic!("creating {}: {e}", base.display()));
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| check_scratch_fs(base));
    tempfile::Builder::new()
        .prefix("sfs-")
        .tempdir_in(base)
        .unwrap_or_else(|e| panic!("creating a temp dir in {}: {e}", base.display()))
}

fn check_scratch_fs(dir: &Path) {
    if let Some(m) = mount_containing(dir) {
        assert!(
            m.fstype != "tmpfs" && m.fstype != "ramfs",
            "{} is on {} ({}): stablefs tests need a disk-backed filesystem; \
             set CARGO_TARGET_DIR to a directory on a disk",
            dir.display(),
            m.fstype,
            m.mount_point.display()
        );
    }
    let probe = dir.join(format!(".odirect-probe-{}", std::process::id()));
    let opened = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe);
    let _ = fs::remove_file(&probe);
    if let Err(e) = opened {
        panic!("{} does not accept O_DIRECT ({e})", dir.display());
    }
}

/// Runs `cmd` (stdin from /dev/null) and returns its output; panics with its stdout and stderr
/// if it exits non-zero, and kills it if it runs longer than `RUN_TIMEOUT`.
#[track_caller]
pub fn run(cmd: &mut Command) -> Output {
    let out = output_within(cmd, RUN_TIMEOUT);
    if !out.status.success() {
        panic!("{cmd:?} failed ({}){}", out.status, show_output(&out));
    }
    out
}

/// Runs `cmd` (stdin from /dev/null) to completion and returns its output whatever its status;
/// kills it and panics if it runs longer than `timeout`. Output goes through files, not pipes,
/// so a daemon that the command leaves behind holding its stdout cannot block us.
#[track_caller]
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Output {
    let mut out = tempfile::tempfile().expect("creating a temp file for stdout");
    let mut err = tempfile::tempfile().expect("creating a temp file for stderr");
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup stdout file"))
        .stderr(err.try_clone().expect("dup stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let status = wait_timeout(&mut child, timeout);
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        let partial = Output {
            status: ExitStatus::default(),
            stdout: rewind_read(&mut out),
            stderr: rewind_read(&mut err),
        };
        panic!(
            "{cmd:?} still running after {timeout:?}; killed it{}",
            show_output(&partial)
        );
    });
    Output {
        status,
        stdout: rewind_read(&mut out),
        stderr: rewind_read(&mut err),
    }
}

fn rewind_read(f: &mut File) -> Vec<u8> {
    let mut v = Vec::new();
    if f.rewind().is_ok() {
        let _ = f.read_to_end(&mut v);
    }
    v
}

fn show_output(out: &Output) -> String {
    format!(
        "\n--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits for `child` at most `timeout`; `None` if it is still running then.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if start.elapsed() < timeout => sleep(POLL),
            Ok(None) => return None,
            // ECHILD and the like: nothing left to wait for.
            Err(_) => return Some(ExitStatus::default()),
        }
    }
}

/// `stablefs mkfs --size SIZE EXTRA.. IMAGE`; panics with its output on failure.
#[track_caller]
pub fn mkfs(image: &Path, size: &str, extra: &[&str]) {
    run(Command::new(stablefs_bin())
        .arg("mkfs")
        .arg("--size")
        .arg(size)
        .args(extra)
        .arg(image));
}

/// Opens `p` for reading and writing, creating it if missing (never truncating); panics
/// naming the path.
#[track_caller]
pub fn open_rw(p: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .unwrap_or_else(|e| panic!("opening {}: {e}", p.display()))
}

/// Writes `bytes` to `path` (created or truncated); panics naming the path.
#[track_caller]
pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Err(e) = fs::write(path, bytes) {
        panic!("writing {}: {e}", path.display());
    }
}

/// The offset of `marker` on an (unmounted) image, which must hold it exactly once: a test
/// finds the block it damages by a unique marker written into a file.
#[track_caller]
pub fn find_unique_in_image(image: &Path, marker: &[u8]) -> u64 {
    let img = read_file(image);
    let mut hits = img
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker)
        .map(|(i, _)| i);
    let at = hits.next().expect("the marker is on the image");
    assert!(hits.next().is_none(), "the marker is on the image once");
    at as u64
}

/// XORs the byte at `at` of an (unmounted) image with `mask` and syncs: damage behind the
/// filesystem's back.
#[track_caller]
pub fn xor_byte(image: &Path, at: u64, mask: u8) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .unwrap_or_else(|e| panic!("opening {}: {e}", image.display()));
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ mask], at).unwrap();
    f.sync_all().unwrap();
}

/// Reads all of `path`; panics naming the path.
#[track_caller]
pub fn read_file(path: &Path) -> Vec<u8> {
    match fs::read(path) {
        Ok(v) => v,
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

/// A test tool installed by `cargo install` (fsx, pjdfstest), which `scripts/test.sh` installs:
/// `$ENV_VAR` if set, else `$CARGO_HOME/bin/NAME` (`~/.cargo/bin/NAME`), else `NAME` on `PATH`.
/// Checks that `NAME -V` prints a version starting with `version_prefix` (e.g. `"fsx 0.3."`).
/// Panics, saying how to install it, when it is missing or another version: a missing tool
/// fails the test, it never skips it.
#[track_caller]
pub fn cargo_tool(name: &str, env_var: &str, version_prefix: &str, install: &str) -> PathBuf {
    let bin = match std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let cargo_home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
            let mut candidates: Vec<PathBuf> = cargo_home
                .map(|c| c.join("bin").join(name))
                .into_iter()
                .collect();
            if let Some(path) = std::env::var_os("PATH") {
                candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
            }
            candidates
                .into_iter()
                .find(|p| p.is_file())
                .unwrap_or_else(|| {
                    panic!(
                        "{name} not found (looked at ${env_var}, $CARGO_HOME/bin, ~/.cargo/bin \
                         and PATH): install it with `{install}`, as scripts/test.sh does"
                    )
                })
        }
    };
    let out = output_within(Command::new(&bin).arg("-V"), Duration::from_secs(30));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && version.trim().starts_with(version_prefix),
        "{} -V printed {:?} ({}); these tests are written for {version_prefix}x: `{install}`",
        bin.display(),
        version.trim(),
        out.status
    );
    bin
}

// ---------------------------------------------------------------------------------------------
// The mount table

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u32,
    /// `st_dev` of the mounted filesystem (major, minor).
    pub dev: (u32, u32),
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

impl MountEntry {
    /// FUSE shows as `fuse`, `fuseblk`, or with a subtype as `fuse.NAME`.
    pub fn is_fuse(&self) -> bool {
        self.fstype == "fuse"
            || self.fstype == "fuseblk"
            || self.fstype.starts_with("fuse.")
            || self.fstype.starts_with("fuseblk.")
    }
}

/// Parses mountinfo text (proc(5)); lines that do not parse are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    // Fields never contain a space (it is escaped as \040), so the first " - " is the separator
    // between the optional fields and the filesystem type.
    let (head, tail) = line.split_once(" - ")?;
    let head: Vec<&str> = head.split(' ').collect();
    if head.len() < 6 {
        return None;
    }
    let (major, minor) = head[2].split_once(':')?;
    let mut tail = tail.split(' ');
    Some(MountEntry {
        id: head[0].parse().ok()?,
        dev: (major.parse().ok()?, minor.parse().ok()?),
        mount_point: PathBuf::from(OsStr::from_bytes(&unescape_octal(head[4]))),
        fstype: String::from_utf8_lossy(&unescape_octal(tail.next()?)).into_owned(),
        source: String::from_utf8_lossy(&unescape_octal(tail.next()?)).into_owned(),
        super_options: tail.next().unwrap_or("").to_owned(),
    })
}

/// Undoes the kernel's `\ooo` escaping of space, tab, newline and backslash.
pub fn unescape_octal(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The current mount table of this process's mount namespace.
pub fn mounts() -> Vec<MountEntry> {
    parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// The mount table, one `SOURCE on MOUNTPOINT type FSTYPE` per line, for failure messages.
pub fn mounts_listing() -> String {
    mounts()
        .iter()
        .map(|m| {
            format!(
                "  {} on {} type {}\n",
                m.source,
                m.mount_point.display(),
                m.fstype
            )
        })
        .collect()
}

/// FUSE mounts whose mountpoint is exactly `mnt`.
pub fn fuse_mounts_at(mnt: &Path) -> Vec<MountEntry> {
    mounts()
        .into_iter()
        .filter(|m| m.is_fuse() && m.mount_point == mnt)
        .collect()
}

/// FUSE mounts at or below `dir`.
pub fn fuse_mounts_under(dir: &Path) -> Vec<MountEntry> {
    mounts()
        .into_iter()
        .filter(|m| m.is_fuse() && m.mount_point.starts_with(dir))
        .collect()
}

/// The mount that holds `path` (the longest mountpoint that is a prefix of it).
pub fn mount_containing(path: &Path) -> Option<MountEntry> {
    let path = fs::canonicalize(path).ok()?;
    mounts()
        .into_iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
}

// ---------------------------------------------------------------------------------------------
// Unmounting

fn umount2(path: &Path, flags: libc::c_int) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string that lives until the call returns; umount2 reads
    // nothing else.
    let rc = unsafe { libc::umount2(c.as_ptr(), flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unmounts every FUSE mount at `mnt`, retrying for `busy_for` while the kernel says `EBUSY`.
/// An error if nothing was mounted there.
pub fn umount_retry(mnt: &Path, busy_for: Duration) -> Result<(), String> {
    if fuse_mounts_at(mnt).is_empty() {
        return Err(format!("{} is not mounted", mnt.display()));
    }
    let start = Instant::now();
    while !fuse_mounts_at(mnt).is_empty() {
        match umount2(mnt, 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < busy_for => {
                sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(format!("umount {}: {e}", mnt.display())),
        }
    }
    Ok(())
}

/// Removes every FUSE mount at `mnt` whatever state its daemon is in: a plain unmount (enough
/// for a dead daemon's mount, as root), else abort the connection and detach it lazily.
pub fn force_unmount(mnt: &Path) -> Result<(), String> {
    for m in fuse_mounts_at(mnt) {
        if umount2(mnt, 0).is_ok() {
            continue;
        }
        abort_connection(&m);
        if let Err(e) = umount2(mnt, libc::MNT_DETACH) {
            if !fuse_mounts_at(mnt).is_empty() {
                return Err(format!("umount -l {}: {e}", mnt.display()));
            }
        }
    }
    let left = fuse_mounts_at(mnt);
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("{} still mounted: {left:?}", mnt.display()))
    }
}

/// Aborts a FUSE connection (every pending and later request fails with `ENOTCONN`), so that
/// nothing can block on a daemon that is dead or stuck. Best effort: fusectl may be absent.
pub fn abort_connection(m: &MountEntry) {
    // The fusectl directory is named after the kernel dev_t: major << 20 | minor.
    let conn = (u64::from(m.dev.0) << 20) | u64::from(m.dev.1);
    let _ = fs::write(format!("/sys/fs/fuse/connections/{conn}/abort"), "1");
}

// ---------------------------------------------------------------------------------------------
// Processes

fn pid_t(pid: u32) -> libc::pid_t {
    libc::pid_t::try_from(pid).expect("pid out of range")
}

fn send_signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory effects; callers only signal processes they identified
    // (an unreaped child, or a pid checked against its start time).
    unsafe { libc::kill(pid_t(pid), sig) };
}

/// (state, start time) of a process, from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain anything, so split after its closing parenthesis.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state); field 22 is the start time.
    Some((f.first()?.chars().next()?, f.get(19)?.parse().ok()?))
}

/// Is the process that started at `start` still running (not exited, not a zombie)?
pub fn process_alive(pid: u32, start: u64) -> bool {
    matches!(proc_stat(pid), Some((st, t)) if t == start && st != 'Z' && st != 'X')
}

/// The daemon serving the mount at `mnt`: the process (other than us) that has `/dev/fuse` open
/// and one of whose arguments is `mnt`. Returns (pid, start time).
pub fn find_fuse_daemon(mnt: &Path) -> Option<(u32, u64)> {
    let me = std::process::id();
    let want = mnt.as_os_str().as_bytes();
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if !cmdline.split(|&b| b == 0).any(|a| a == want) || !holds_dev_fuse(pid) {
            continue;
        }
        if let Some((st, start)) = proc_stat(pid) {
            if st != 'Z' && st != 'X' {
                found.push((pid, start));
            }
        }
    }
    // A daemonizing parent may still be on its way out: the newest process is the daemon.
    found.into_iter().max_by_key(|&(_, start)| start)
}

fn holds_dev_fuse(pid: u32) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == Path::new("/dev/fuse")))
}

// ---------------------------------------------------------------------------------------------
// TestFs

/// A stablefs mounted by a foreground daemon (`stablefs mount -f`) that is our child.
pub struct TestFs {
    /// Holds the mountpoint, the daemon log and (for `new`/`with`) the image.
    pub dir: TempDir,
    pub image: PathBuf,
    pub mnt: PathBuf,
    pub log_path: PathBuf,
    pub mount_opts: String,
    child: Option<Child>,
}

impl TestFs {
    /// A fresh 1 GiB image made by a default mkfs, mounted with default options.
    #[track_caller]
    pub fn new() -> TestFs {
        TestFs::with("1G", &[], "")
    }

    /// A fresh image of `size` made by `stablefs mkfs --size SIZE MKFS_ARGS..`, mounted with
    /// `-o MOUNT_OPTS` (none if empty).
    #[track_caller]
    pub fn with(size: &str, mkfs_args: &[&str], mount_opts: &str) -> TestFs {
        let dir = scratch_dir();
        let image = dir.path().join("stablefs.img");
        mkfs(&image, size, mkfs_args);
        TestFs::mounted(dir, image, mount_opts)
    }

    /// Mounts an existing image; the mountpoint and log live in a fresh scratch directory.
    #[track_caller]
    pub fn on_image(image: PathBuf, mount_opts: &str) -> TestFs {
        TestFs::mounted(scratch_dir(), image, mount_opts)
    }

    #[track_caller]
    fn mounted(dir: TempDir, image: PathBuf, mount_opts: &str) -> TestFs {
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap_or_else(|e| panic!("creating {}: {e}", mnt.display()));
        // mountinfo shows canonical paths.
        let mnt = fs::canonicalize(&mnt).expect("canonicalizing the mountpoint");
        let mut t = TestFs {
            log_path: dir.path().join("daemon.log"),
            dir,
            image,
            mnt,
            mount_opts: mount_opts.to_owned(),
            child: None,
        };
        // `t` exists before the mount is attempted, so a failed mount is cleaned up by Drop.
        t.mount();
        t
    }

    /// `mnt/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Is a FUSE filesystem mounted at `mnt` (according to the mount table)?
    pub fn is_mounted(&self) -> bool {
        !fuse_mounts_at(&self.mnt).is_empty()
    }

    /// Starts `stablefs mount -f [-o OPTS] --log LOG IMAGE MNT` (its stdout and stderr go to the
    /// log too) and waits for the mount to appear. Panics, with the daemon log and the mount
    /// table, if the daemon exits first or the mount does not appear within `MOUNT_TIMEOUT`.
    #[track_caller]
    pub fn mount(&mut self) {
        assert!(self.child.is_none(), "mount: a daemon is already running");
        assert!(
            !self.is_mounted(),
            "mount: {} is already mounted",
            self.mnt.display()
        );
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.log_path.display()));
        let mut cmd = Command::new(stablefs_bin());
        cmd.arg("mount").arg("-f");
        if !self.mount_opts.is_empty() {
            cmd.arg("-o").arg(&self.mount_opts);
        }
        cmd.arg("--log")
            .arg(&self.log_path)
            .arg(&self.image)
            .arg(&self.mnt)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log file"))
            .stderr(log.try_clone().expect("dup log file"));
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            cmd.env("RUST_BACKTRACE", "1");
        }
        // Separates the runs of one test's daemons in the log.
        let _ = writeln!(log, "=== harness: {cmd:?}");
        drop(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        self.child = Some(child);
        self.wait_for_mount();
    }

    #[track_caller]
    fn wait_for_mount(&mut self) {
        let start = Instant::now();
        loop {
            let mounted = self.is_mounted();
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            match (mounted, exited) {
                (true, None) => return,
                (true, Some(st)) => panic!(
                    "stablefs mount -f exited ({st}) although {} is mounted: \
                     -f must keep the daemon in the foreground{}",
                    self.mnt.display(),
                    self.diagnostics()
                ),
                (false, Some(st)) => {
                    self.child = None;
                    panic!(
                        "stablefs mount exited ({st}) before {} was mounted{}",
                        self.mnt.display(),
                        self.diagnostics()
                    );
                }
                (false, None) if start.elapsed() > MOUNT_TIMEOUT => panic!(
                    "{} not mounted {MOUNT_TIMEOUT:?} after starting the daemon{}",
                    self.mnt.display(),
                    self.diagnostics()
                ),
                (false, None) => sleep(POLL),
            }
        }
    }

    /// Unmounts (retrying on `EBUSY`), waits for the daemon to exit, and asserts that it exited
    /// with status 0 and that the mount is gone.
    #[track_caller]
    pub fn unmount(&mut self) {
        if let Err(e) = umount_retry(&self.mnt, BUSY_TIMEOUT) {
            panic!("{e}{}", self.diagnostics());
        }
        self.wait_daemon_exit("the unmount");
        assert!(
            !self.is_mounted(),
            "{} still mounted after unmount{}",
            self.mnt.display(),
            self.diagnostics()
        );
    }

    /// `unmount` then `mount`, with the same image and options.
    #[track_caller]
    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    /// Kills the daemon with SIGKILL (a crash: nothing is committed), waits for it, and removes
    /// the dead mount.
    #[track_caller]
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("kill9: no daemon running");
        let _ = child.kill();
        let _ = child.wait();
        if let Err(e) = force_unmount(&self.mnt) {
            panic!("cleaning the dead mount: {e}{}", self.diagnostics());
        }
        assert!(
            !self.is_mounted(),
            "{} still mounted after kill9",
            self.mnt.display()
        );
    }

    /// Sends SIGTERM to the daemon and asserts that it unmounts, commits and exits with 0.
    #[track_caller]
    pub fn sigterm(&mut self) {
        self.stop_with_signal(libc::SIGTERM);
    }

    /// Sends `sig` to the daemon and asserts that it unmounts and exits with status 0 within
    /// `EXIT_TIMEOUT` (the contract for SIGINT and SIGTERM).
    #[track_caller]
    pub fn stop_with_signal(&mut self, sig: libc::c_int) {
        let pid = self.daemon_pid().expect("no daemon running");
        send_signal(pid, sig);
        self.wait_daemon_exit(&format!("signal {sig}"));
        assert!(
            !self.is_mounted(),
            "the daemon exited on signal {sig} but left {} mounted{}",
            self.mnt.display(),
            self.diagnostics()
        );
    }

    #[track_caller]
    fn wait_daemon_exit(&mut self, after: &str) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        match wait_timeout(&mut child, EXIT_TIMEOUT) {
            Some(st) if st.success() => {}
            Some(st) => panic!(
                "the daemon exited with {st} after {after}{}",
                self.diagnostics()
            ),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the daemon was still running {EXIT_TIMEOUT:?} after {after}; killed it{}",
                    self.diagnostics()
                );
            }
        }
    }

    /// The daemon log so far (its `--log` output, stdout and stderr).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The pid of the running daemon, if one was started and has not been waited for.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn diagnostics(&self) -> String {
        format!(
            "\n--- processes using the mount ---\n{}\n--- daemon log ({}) ---\n{}\n--- mounts ---\n{}",
            users_of(&self.mnt),
            self.log_path.display(),
            self.log(),
            mounts_listing()
        )
    }
}

impl Default for TestFs {
    fn default() -> Self {
        TestFs::new()
    }
}

impl Drop for TestFs {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let clean = self.is_mounted() && umount_retry(&self.mnt, Duration::from_secs(5)).is_ok();
        if let Some(mut child) = self.child.take() {
            // After a clean unmount the daemon commits and exits by itself; otherwise it is stuck
            // or never mounted, and is killed at once.
            let grace = if clean { EXIT_TIMEOUT } else { Duration::ZERO };
            if wait_timeout(&mut child, grace).is_none() {
                eprintln!("TestFs: killing the daemon of {}", self.mnt.display());
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if self.is_mounted() {
            if let Err(e) = force_unmount(&self.mnt) {
                // Removing the directory would walk into the mount: keep it.
                eprintln!("TestFs: {e}; keeping {}", self.dir.path().display());
                self.dir.disable_cleanup(true);
            }
        }
        if panicking && std::env::var_os("STABLEFS_KEEP_TMP").is_some() {
            eprintln!("TestFs: keeping {}", self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mounts made by a detaching daemon

/// Guard for a mount made by a command that returns once the mount is up, leaving a daemon that
/// is not our child (daemon-mode `stablefs mount`, `mount.stablefs`). The daemon is found in
/// `/proc` and identified by pid and start time, so a recycled pid is never signalled. Drop
/// unmounts and kills whatever is left.
pub struct DaemonMount {
    pub mnt: PathBuf,
    daemon: Option<(u32, u64)>,
}

/// Runs `cmd`, which must mount something at `mnt` and return 0 only once the mount is visible,
/// then finds its daemon. Panics (after cleaning up) if any of that does not hold.
#[track_caller]
pub fn mount_detached(cmd: &mut Command, mnt: &Path) -> DaemonMount {
    let mut guard = DaemonMount::new(mnt);
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}){}\n--- mounts ---\n{}",
        out.status,
        show_output(&out),
        mounts_listing()
    );
    assert!(
        guard.is_mounted(),
        "{cmd:?} returned 0 but {} is not mounted: it must return only once the mount is up\
         {}\n--- mounts ---\n{}",
        mnt.display(),
        show_output(&out),
        mounts_listing()
    );
    guard.attach();
    guard
}

impl DaemonMount {
    /// A guard for `mnt`, taken before the mount command runs.
    pub fn new(mnt: &Path) -> DaemonMount {
        DaemonMount {
            mnt: fs::canonicalize(mnt).unwrap_or_else(|_| mnt.to_owned()),
            daemon: None,
        }
    }

    /// Finds the daemon serving the mount; panics if there is none.
    #[track_caller]
    pub fn attach(&mut self) -> u32 {
        let start = Instant::now();
        loop {
            if let Some(d) = find_fuse_daemon(&self.mnt) {
                self.daemon = Some(d);
                return d.0;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no process holding /dev/fuse has {} among its arguments",
                self.mnt.display()
            );
            sleep(POLL);
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.map(|d| d.0)
    }

    pub fn is_mounted(&self) -> bool {
        !fuse_mounts_at(&self.mnt).is_empty()
    }

    pub fn daemon_alive(&self) -> bool {
        self.daemon.is_some_and(|(p, s)| process_alive(p, s))
    }

    /// `umount MNT` (the command, retried on failure for `BUSY_TIMEOUT`), then waits for the
    /// daemon to exit and asserts the mount is gone.
    #[track_caller]
    pub fn umount(&mut self) {
        let start = Instant::now();
        loop {
            let out = output_within(Command::new("umount").arg(&self.mnt), RUN_TIMEOUT);
            if out.status.success() {
                break;
            }
            assert!(
                start.elapsed() < BUSY_TIMEOUT,
                "umount {} failed ({}){}",
                self.mnt.display(),
                out.status,
                show_output(&out)
            );
            sleep(Duration::from_millis(200));
        }
        self.wait_daemon_gone(EXIT_TIMEOUT);
        assert!(
            !self.is_mounted(),
            "{} still mounted after umount",
            self.mnt.display()
        );
    }

    /// Waits for the daemon to exit; panics if it is still alive after `timeout`.
    #[track_caller]
    pub fn wait_daemon_gone(&self, timeout: Duration) {
        let start = Instant::now();
        while self.daemon_alive() {
            assert!(
                start.elapsed() < timeout,
                "daemon {:?} of {} still alive {timeout:?} after the unmount",
                self.pid(),
                self.mnt.display()
            );
            sleep(POLL);
        }
    }
}

impl Drop for DaemonMount {
    fn drop(&mut self) {
        if self.daemon.is_none() {
            self.daemon = find_fuse_daemon(&self.mnt);
        }
        let clean = self.is_mounted() && umount_retry(&self.mnt, Duration::from_secs(5)).is_ok();
        if let Some((pid, start)) = self.daemon {
            let grace = if clean { EXIT_TIMEOUT } else { Duration::ZERO };
            let t = Instant::now();
            while process_alive(pid, start) && t.elapsed() < grace {
                sleep(POLL);
            }
            if process_alive(pid, start) {
                eprintln!(
                    "DaemonMount: killing daemon {pid} of {}",
                    self.mnt.display()
                );
                send_signal(pid, libc::SIGKILL);
                let t = Instant::now();
                while process_alive(pid, start) && t.elapsed() < Duration::from_secs(5) {
                    sleep(POLL);
                }
            }
        }
        if self.is_mounted() {
            if let Err(e) = force_unmount(&self.mnt) {
                eprintln!("DaemonMount: {e}");
            }
        }
    }
}

// ---------- loop devices ----------

/// An attached loop device, detached on drop.
pub struct Loop {
    dev: PathBuf,
}

impl Loop {
    pub fn attach(image: &Path, sector_size: Option<u32>) -> Loop {
        let mut cmd = Command::new("losetup");
        cmd.args(["--find", "--show", "--direct-io=on"]);
        if let Some(s) = sector_size {
            cmd.args(["--sector-size", &s.to_string()]);
        }
        cmd.arg(image);
        // `--find` can race with another process taking the same free device: retry.
        let mut last = String::new();
        for _ in 0..5 {
            let out = match cmd.output() {
                Ok(out) => out,
                Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                    "losetup not found: these tests need util-linux's losetup (apt-get install \
                     util-linux) and root"
                ),
                Err(e) => panic!("cannot run losetup: {e}"),
            };
            if out.status.success() {
                let dev = String::from_utf8(out.stdout).unwrap().trim().to_owned();
                assert!(dev.starts_with("/dev/loop"), "losetup printed {dev:?}");
                return Loop { dev: dev.into() };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            sleep(Duration::from_millis(200));
        }
        panic!(
            "losetup --find --show {} failed (root is required): {last}",
            image.display()
        );
    }

    pub fn path(&self) -> &Path {
        &self.dev
    }

    /// The logical block size the kernel gives the device, from sysfs (not the ioctl that
    /// `FileDevice` uses).
    pub fn logical_block_size(&self) -> u32 {
        let name = self.dev.file_name().unwrap().to_str().unwrap();
        let attr = format!("/sys/block/{name}/queue/logical_block_size");
        let text = std::fs::read_to_string(&attr).unwrap_or_else(|e| panic!("{attr}: {e}"));
        text.trim().parse().unwrap()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // The device may still be busy for a moment after the last close: retry.
        for _ in 0..20 {
            match Command::new("losetup").arg("-d").arg(&self.dev).status() {
                Ok(s) if s.success() => return,
                _ => sleep(Duration::from_millis(100)),
            }
        }
        eprintln!("could not detach {}", self.dev.display());
    }
}

/// Processes with a cwd, root, executable, open file or mapping under `dir` (what makes an
/// unmount fail with EBUSY), one line each.
pub fn users_of(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let pid = p.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let base = p.path();
        let mut held = Vec::new();
        for link in ["cwd", "root", "exe"] {
            if fs::read_link(base.join(link)).is_ok_and(|t| t.starts_with(dir)) {
                held.push(link.to_string());
            }
        }
        if let Ok(fds) = fs::read_dir(base.join("fd")) {
            for fd in fds.flatten() {
                if let Ok(t) = fs::read_link(fd.path()) {
                    if t.starts_with(dir) {
                        held.push(format!("fd {}", t.display()));
                    }
                }
            }
        }
        if fs::read_to_string(base.join("maps")).is_ok_and(|m| m.contains(&*dir.to_string_lossy()))
        {
            held.push("mmap".into());
        }
        if !held.is_empty() {
            let comm = fs::read_to_string(base.join("comm")).unwrap_or_default();
            out += &format!(
                "  pid {} ({}): {}\n",
                pid.to_string_lossy(),
                comm.trim(),
                held.join(", ")
            );
        }
    }
    if out.is_empty() {
        out = "  (none found)\n".into();
    }
    out
}

// ---------- the ext4 reference ----------

/// A kernel ext4 on a loop device over a sparse image in its own scratch directory: what a
/// differential test compares stablefs with. 4 KiB blocks, as stablefs by default (mke2fs
/// would pick 1 KiB for a small image). Unmounted, and its loop device detached, on drop,
/// even when the test panics.
pub struct Ext4 {
    pub mnt: PathBuf,
    // Dropped in this order after `drop`: the loop device, then the directory.
    _lo: Loop,
    _dir: TempDir,
}

impl Ext4 {
    #[track_caller]
    pub fn new(size: &str) -> Ext4 {
        Ext4::with(size, &[], "")
    }

    /// With more `mkfs.ext4` arguments (e.g. `-O ea_inode`) and `mount -o MOUNT_OPTS` (none
    /// if empty).
    #[track_caller]
    pub fn with(size: &str, mkfs_args: &[&str], mount_opts: &str) -> Ext4 {
        let dir = scratch_dir();
        let image = dir.path().join("ext4.img");
        run(Command::new("truncate").args(["-s", size]).arg(&image));
        let lo = Loop::attach(&image, None);
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096"])
            .args(mkfs_args)
            .arg(lo.path()));
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let mnt = fs::canonicalize(&mnt).unwrap();
        let mut mount = Command::new("mount");
        if !mount_opts.is_empty() {
            mount.args(["-o", mount_opts]);
        }
        run(mount.arg(lo.path()).arg(&mnt));
        Ext4 {
            mnt,
            _lo: lo,
            _dir: dir,
        }
    }

    /// `mnt/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let start = Instant::now();
        while umount2(&self.mnt, 0).is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY)) {
            if start.elapsed() > BUSY_TIMEOUT {
                eprintln!("Ext4: {} busy; detaching it", self.mnt.display());
                let _ = umount2(&self.mnt, libc::MNT_DETACH);
                break;
            }
            sleep(Duration::from_millis(200));
        }
    }
}
