//! Mount options as mount(8) and fstab users expect them (issue 10, points 5 and 7), on real
//! mounts: root's defaults (`suid,dev,exec`) and the `no*` ones; a user's mount through
//! fusermount3 (always `nosuid,nodev`); `remount,ro` / `remount,rw` through `stablefs
//! remount`, through mount(8) and its helper, and through a bare `mount(2)`; `sync` and
//! `dirsync`; atime under `relatime`, `strictatime`, `noatime` and `nodiratime`, differential
//! against ext4; and one clock for the kernel's timestamps and the daemon's.

mod common;

use common::differential::{Pair, User};
use common::*;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The options field (per mount) and the superblock's of the topmost mount at `mnt`, as one
/// comma-separated list.
fn mount_options(mnt: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = mnt.to_string_lossy().replace(' ', "\\040");
    let line = text
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some(want.as_str()))
        .unwrap_or_else(|| panic!("{} is not mounted:\n{text}", mnt.display()));
    let (left, right) = line.split_once(" - ").unwrap();
    let mut out: Vec<String> = left
        .split(' ')
        .nth(5)
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    out.extend(
        right
            .split(' ')
            .nth(2)
            .unwrap()
            .split(',')
            .map(String::from),
    );
    out
}

fn has(options: &[String], o: &str) -> bool {
    options.iter().any(|x| x == o)
}

fn stablefs(args: &[&str]) -> std::process::Output {
    output_within(
        Command::new(stablefs_bin()).args(args),
        Duration::from_secs(60),
    )
}

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

// ---- point 7: the generic flags ----

#[test]
fn root_mounts_are_suid_dev_exec_unless_asked() {
    let t = TestFs::new();
    let o = mount_options(&t.mnt);
    for no in ["nosuid", "nodev", "noexec"] {
        assert!(!has(&o, no), "{no} in a default root mount: {o:?}");
    }
    assert!(has(&o, "relatime"), "{o:?}");
    // A script runs (exec), and set-user-ID bits stay meaningful (suid).
    let script = t.path("run.sh");
    fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(&mut Command::new(&script));
    assert_eq!(out.stdout, b"ran\n");
    drop(t);

    let t = TestFs::with("256M", &[], "nosuid,nodev,noexec,noatime");
    let o = mount_options(&t.mnt);
    for no in ["nosuid", "nodev", "noexec", "noatime"] {
        assert!(has(&o, no), "{no} asked for but not in {o:?}");
    }
    let script = t.path("run.sh");
    fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        errno_of(Command::new(&script).output()),
        Some(libc::EACCES),
        "noexec"
    );
}

#[test]
fn atime_sync_and_lazytime_flags_reach_the_kernel_mount() {
    let t = TestFs::with("256M", &[], "strictatime,nodiratime,lazytime,sync,dirsync");
    let o = mount_options(&t.mnt);
    for want in ["nodiratime", "lazytime", "sync", "dirsync"] {
        assert!(has(&o, want), "{want} not in {o:?}");
    }
    // strictatime shows as neither relatime nor noatime.
    assert!(!has(&o, "relatime") && !has(&o, "noatime"), "{o:?}");
}

#[test]
fn an_unknown_option_is_one_clear_line() {
    let dir = scratch_dir();
    let image = dir.path().join("i.img");
    mkfs(&image, "256M", &[]);
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let o = stablefs(&[
        "mount",
        "-o",
        "noatime,bogus=1",
        image.to_str().unwrap(),
        mnt.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "stablefs: unknown mount option 'bogus=1'\n"
    );
    assert!(fuse_mounts_at(&mnt).is_empty());
}

/// A user other than root mounts through fusermount3 (set-user-ID root): the kernel mount is
/// always `nosuid,nodev`, even when the user asks for `suid,dev`. fusermount3 opens
/// `/dev/fuse` with the user's own rights, and this machine's is root's only (0600), so the
/// test runs in a private mount namespace with a world-usable `/dev/fuse` node (on a tmpfs of
/// its own) laid over it, as most distributions ship it: nothing changes on the machine.
#[test]
fn a_users_mount_through_fusermount3_is_always_nosuid_nodev() {
    const UID: u32 = 1001;
    let dir = scratch_dir();
    let image = dir.path().join("u.img");
    mkfs(&image, "256M", &[]);
    let mnt = dir.path().join("mnt");
    let dev = dir.path().join("dev");
    fs::create_dir(&mnt).unwrap();
    fs::create_dir(&dev).unwrap();
    for p in [dir.path(), &image, &mnt] {
        std::os::unix::fs::chown(p, Some(UID), Some(UID)).unwrap();
    }
    let script = format!(
        r#"set -e
mount -t tmpfs tmpfs {dev}
mknod -m 666 {dev}/fuse c 10 229
mount --bind {dev}/fuse /dev/fuse
user() {{ setpriv --reuid={UID} --regid={UID} --clear-groups "$@"; }}
user {bin} mount -o suid,dev --log {log} {image} {mnt}
trap 'umount -l {mnt} 2>/dev/null || true' EXIT
awk '$5 == "{mnt}" {{ print $6; print $NF }}' /proc/self/mountinfo
user ls -d {mnt}/.
user fusermount3 -u {mnt}
grep -c " {mnt} " /proc/self/mountinfo || true
"#,
        dev = dev.display(),
        bin = stablefs_bin().display(),
        log = dir.path().join("log").display(),
        image = image.display(),
        mnt = fs::canonicalize(&mnt).unwrap().display(),
    );
    let o = output_within(
        Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]),
        Duration::from_secs(60),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        o.status.success() && lines.len() == 4,
        "{}\nstdout:\n{out}\nstderr:\n{}\nlog:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        fs::read_to_string(dir.path().join("log")).unwrap_or_default()
    );
    let per_mount: Vec<&str> = lines[0].split(',').collect();
    assert!(
        per_mount.contains(&"nosuid") && per_mount.contains(&"nodev"),
        "a user's mount must be nosuid,nodev: {out}"
    );
    assert!(lines[1].contains(&format!("user_id={UID}")), "{out}");
    assert!(
        lines[2].ends_with("/mnt/."),
        "the user reaches the mount: {out}"
    );
    assert_eq!(lines[3], "0", "fusermount3 -u unmounted it: {out}");
}

// ---- point 7: remounts ----

/// `stablefs status --json` says read-only.
fn daemon_read_only(mnt: &Path) -> bool {
    let o = stablefs(&["status", "--json", mnt.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["read_only"].as_bool().unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Only explicit commits: what a crash (SIGKILL) keeps is what a remount committed.
const NO_BACKGROUND_COMMITS: &str = "idle_commit=0,commit=3600";

#[test]
fn remount_ro_commits_then_refuses_changes_and_rw_accepts_them_again() {
    let mut t = TestFs::with("256M", &[], NO_BACKGROUND_COMMITS);
    write_file(&t.path("before"), b"written before remount,ro");
    fs::create_dir(t.path("dir")).unwrap();
    let o = stablefs(&["remount", "-o", "ro", t.mnt.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert!(has(&mount_options(&t.mnt), "ro"));
    assert!(daemon_read_only(&t.mnt));
    assert_eq!(errno_of(fs::write(t.path("new"), b"x")), Some(libc::EROFS));
    assert_eq!(errno_of(fs::create_dir(t.path("d2"))), Some(libc::EROFS));
    // A read changes no atime on a read-only mount.
    let before = fs::metadata(t.path("before")).unwrap().atime_nsec();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(read_file(&t.path("before")), b"written before remount,ro");
    assert_eq!(fs::metadata(t.path("before")).unwrap().atime_nsec(), before);

    let o = stablefs(&["remount", "-o", "rw", t.mnt.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert!(has(&mount_options(&t.mnt), "rw"));
    assert!(!daemon_read_only(&t.mnt));
    write_file(&t.path("after"), b"written after remount,rw");

    // A crash now: what remount,ro committed survives; what came after was never committed.
    t.kill9();
    t.mount();
    assert_eq!(read_file(&t.path("before")), b"written before remount,ro");
    assert!(t.path("dir").is_dir());
    assert!(
        !t.path("after").exists(),
        "nothing committed it: the test cannot tell"
    );
}

#[test]
fn a_read_only_mount_cannot_be_remounted_rw() {
    let t = TestFs::with("256M", &[], "ro");
    let o = stablefs(&["remount", "-o", "rw", t.mnt.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("mounted read-only"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(has(&mount_options(&t.mnt), "ro"));
    assert!(daemon_read_only(&t.mnt));
    assert!(
        !stablefs(&["remount", "-o", "commit=3", t.mnt.to_str().unwrap()])
            .status
            .success()
    );
}

/// `mount -i` calls no helper: the kernel remounts alone, and the daemon follows it by
/// watching the mount table.
#[test]
fn a_remount_without_the_helper_is_followed_by_the_daemon() {
    let mut t = TestFs::with("256M", &[], NO_BACKGROUND_COMMITS);
    write_file(&t.path("before"), b"committed by the daemon's own remount");
    run(Command::new("mount")
        .args(["-i", "-o", "remount,ro"])
        .arg(&t.mnt));
    assert!(has(&mount_options(&t.mnt), "ro"));
    wait_until("the daemon to follow remount,ro", || {
        daemon_read_only(&t.mnt)
    });
    run(Command::new("mount")
        .args(["-i", "-o", "remount,rw"])
        .arg(&t.mnt));
    wait_until("the daemon to follow remount,rw", || {
        !daemon_read_only(&t.mnt)
    });
    write_file(&t.path("after"), b"accepted again");
    t.kill9();
    t.mount();
    assert_eq!(
        read_file(&t.path("before")),
        b"committed by the daemon's own remount"
    );
}

/// `mount -t stablefs` and `mount -o remount,ro|rw` through mount(8) and the helpers in
/// `mount-helpers/`, which it finds in /sbin: in a private mount namespace whose /usr/sbin has
/// them laid over it (nothing is installed on the machine).
#[test]
fn mount_8_remounts_through_the_helper() {
    let dir = scratch_dir();
    let image = dir.path().join("h.img");
    mkfs(&image, "256M", &[]);
    let mnt = dir.path().join("mnt");
    let helpers = dir.path().join("sbin");
    fs::create_dir(&mnt).unwrap();
    fs::create_dir(&helpers).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("mount-helpers");
    for name in ["mount.stablefs", "mount.fuse.stablefs"] {
        fs::copy(repo.join("mount.stablefs"), helpers.join(name)).unwrap();
    }
    let script = format!(
        r#"set -e
mount -t overlay overlay -o lowerdir={helpers}:/usr/sbin /usr/sbin
trap 'umount {mnt} 2>/dev/null || umount -l {mnt}' EXIT
mount -t stablefs -o {quiet} {image} {mnt}
echo data > {mnt}/before
mount -o remount,ro {mnt}
findmnt -n -o OPTIONS {mnt} | tr , '\n' | grep -x ro
if touch {mnt}/refused 2>/dev/null; then echo "touch succeeded"; exit 1; fi
{bin} status --json {mnt} | grep -q '"read_only": *true'
echo "read-only: committed and refusing"
mount -o remount,rw {mnt}
findmnt -n -o OPTIONS {mnt} | tr , '\n' | grep -x rw
touch {mnt}/accepted
{bin} status --json {mnt} | grep -q '"read_only": *false'
mount -o remount,noatime {mnt}
findmnt -n -o OPTIONS {mnt} | tr , '\n' | grep -x noatime
echo done
"#,
        helpers = helpers.display(),
        mnt = mnt.display(),
        image = image.display(),
        bin = stablefs_bin().display(),
        quiet = NO_BACKGROUND_COMMITS,
    );
    let o = output_within(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .env("STABLEFS_BIN", stablefs_bin()),
        Duration::from_secs(120),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.ends_with("done\n"),
        "{}\nstdout:\n{out}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out,
        "ro\nread-only: committed and refusing\nrw\nnoatime\ndone\n"
    );
}

// ---- point 7: sync and dirsync ----

/// Creates, writes, renames and chmods, then crashes; returns what the next mount shows.
fn changes_then_crash(opts: &str) -> (bool, bool, bool, Option<u32>) {
    let mut t = TestFs::with("256M", &[], &format!("{NO_BACKGROUND_COMMITS},{opts}"));
    fs::create_dir(t.path("d")).unwrap();
    write_file(&t.path("d/f"), b"synchronous");
    fs::rename(t.path("d/f"), t.path("d/g")).unwrap();
    fs::set_permissions(t.path("d/g"), fs::Permissions::from_mode(0o600)).unwrap();
    t.kill9();
    t.mount();
    let dir = t.path("d").is_dir();
    let renamed = t.path("d/g").exists() && !t.path("d/f").exists();
    let data = renamed && read_file(&t.path("d/g")) == b"synchronous";
    let mode = fs::metadata(t.path("d/g")).ok().map(|m| m.mode() & 0o777);
    (dir, renamed, data, mode)
}

#[test]
fn sync_commits_every_change_before_it_returns() {
    assert_eq!(changes_then_crash("sync"), (true, true, true, Some(0o600)));
    // dirsync: the directory changes are committed (a chmod is not one of them).
    let (dir, renamed, _, _) = changes_then_crash("dirsync");
    assert!(dir && renamed);
    // Without either, the crash takes everything: the test can tell.
    assert_eq!(changes_then_crash("async"), (false, false, false, None));
}

// ---- point 5: atime, differential against ext4 ----

/// Ordering facts about atime after reads and readdirs, the same on both filesystems.
const ATIME_FACTS: &str = r#"python3 - <<'EOF'
import os, time
def st(p):
    s = os.stat(p)
    return s.st_atime_ns, s.st_mtime_ns
def read(p):
    with open(p, 'rb') as f:
        f.read()
with open('f', 'w') as f:
    f.write('data')
os.mkdir('d')
open('d/x', 'w').close()
time.sleep(0.05)
a0, m0 = st('f'); da0, dm0 = st('d')
read('f'); os.listdir('d')
a1, m1 = st('f'); da1, dm1 = st('d')
print('first read: atime changed', a1 != a0, 'after mtime', a1 > m1)
print('first readdir: atime changed', da1 != da0, 'after mtime', da1 > dm1)
time.sleep(0.05)
read('f'); os.listdir('d')
a2, _ = st('f'); da2, _ = st('d')
print('second read: atime changed', a2 != a1)
print('second readdir: atime changed', da2 != da1)
time.sleep(0.05)
with open('f', 'a') as f:
    f.write('more')
open('d/y', 'w').close()
time.sleep(0.05)
read('f'); os.listdir('d')
a3, m3 = st('f'); da3, dm3 = st('d')
print('read after a change: atime changed', a3 != a2, 'not before mtime', a3 >= m3)
print('readdir after a change: atime changed', da3 != da2, 'not before mtime', da3 >= dm3)
EOF"#;

fn atime_differential(opts: &str) -> String {
    let p = Pair::with(&[], opts, &[], opts);
    let root = p.same(&User::root(), &format!("mkdir r && cd r && {ATIME_FACTS}"));
    let nobody = p.same(
        &User::nobody(),
        &format!("mkdir n && cd n && {ATIME_FACTS}"),
    );
    assert_eq!(root, nobody);
    root
}

#[test]
fn atime_relatime_is_ext4s() {
    let out = atime_differential("relatime");
    assert!(
        out.contains("first read: atime changed True after mtime True"),
        "{out}"
    );
    assert!(out.contains("second read: atime changed False"), "{out}");
    assert!(out.contains("second readdir: atime changed False"), "{out}");
    assert!(
        out.contains("read after a change: atime changed True"),
        "{out}"
    );
    assert!(
        out.contains("readdir after a change: atime changed True"),
        "{out}"
    );
}

#[test]
fn atime_strictatime_is_ext4s() {
    let out = atime_differential("strictatime");
    assert!(out.contains("second read: atime changed True"), "{out}");
    assert!(out.contains("second readdir: atime changed True"), "{out}");
}

#[test]
fn atime_noatime_is_ext4s() {
    let out = atime_differential("noatime");
    assert!(out.contains("first read: atime changed False"), "{out}");
    assert!(
        out.contains("readdir after a change: atime changed False"),
        "{out}"
    );
}

#[test]
fn atime_nodiratime_is_ext4s() {
    let out = atime_differential("nodiratime");
    assert!(out.contains("first read: atime changed True"), "{out}");
    assert!(out.contains("first readdir: atime changed False"), "{out}");
    assert!(
        out.contains("readdir after a change: atime changed False"),
        "{out}"
    );
}

// ---- point 5: one clock ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ts(i64, u32);

/// statx times of `p` (not following a symlink): atime, btime (if the filesystem gives it),
/// ctime, mtime.
struct Times {
    atime: Ts,
    btime: Option<Ts>,
    ctime: Ts,
    mtime: Ts,
}

fn statx(p: &Path) -> Times {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: safe because `c` is a NUL-terminated path that outlives the call and `buf` is a
    // properly sized and aligned statx buffer the kernel writes into.
    let buf = unsafe {
        let mut buf: libc::statx = std::mem::zeroed();
        let r = libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            &mut buf,
        );
        assert_eq!(
            r,
            0,
            "statx {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
        buf
    };
    let ts = |t: libc::statx_timestamp| Ts(t.tv_sec, t.tv_nsec);
    Times {
        atime: ts(buf.stx_atime),
        btime: (buf.stx_mask & libc::STATX_BTIME != 0).then(|| ts(buf.stx_btime)),
        ctime: ts(buf.stx_ctime),
        mtime: ts(buf.stx_mtime),
    }
}

/// Keeps a multigrain filesystem (tmpfs) handing out fine-grained timestamps, which raises
/// the kernel's timestamp floor: the kernel's clock for FUSE inodes then runs ahead of
/// CLOCK_REALTIME_COARSE within a tick (see src/fs/clock.rs).
struct FloorRaiser {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FloorRaiser {
    fn start() -> FloorRaiser {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let path = format!("/dev/shm/stablefs-floor-{}", std::process::id());
            let mut f = fs::File::create(&path).unwrap();
            while !s.load(Ordering::Relaxed) {
                let _ = f.metadata(); // marks the ctime queried
                let _ = std::io::Write::write_all(&mut f, b"x"); // a fine-grained stamp
                let _ = f.set_len(0);
            }
            let _ = fs::remove_file(&path);
        });
        FloorRaiser {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FloorRaiser {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Interleaves, `rounds` times, a write into `a` through the page cache (on stablefs the
/// kernel stamps its mtime and ctime) with a change the filesystem stamps (create, mkdir,
/// rename, chmod of a directory, symlink), in both orders, and counts the times a later
/// change carries an earlier time than an earlier one.
fn clock_inversions(root: &Path, rounds: usize) -> (usize, bool) {
    let dir = root.join("clock");
    fs::create_dir(&dir).unwrap();
    let a = dir.join("a");
    let mut fa = fs::File::create(&a).unwrap();
    let mut inversions = 0;
    let mut btime_seen = false;
    let mut check = |earlier: &[Ts], later: &[Ts], what: &str| {
        let e = earlier.iter().max().unwrap();
        let l = later.iter().min().unwrap();
        if l < e {
            if inversions < 5 {
                eprintln!("{}: {what}: later {l:?} < earlier {e:?}", root.display());
            }
            inversions += 1;
        }
    };
    for i in 0..rounds {
        // The kernel's stamp, then the filesystem's.
        std::io::Write::write_all(&mut fa, b"k").unwrap();
        let ta = statx(&a);
        let kernel = [ta.mtime, ta.ctime];
        let (target, what) = match i % 5 {
            0 => {
                let p = dir.join(format!("f{i}"));
                fs::File::create(&p).unwrap();
                (p, "create")
            }
            1 => {
                let p = dir.join(format!("d{i}"));
                fs::create_dir(&p).unwrap();
                (p, "mkdir")
            }
            2 => {
                let from = dir.join(format!("d{}", i - 1));
                let p = dir.join(format!("r{i}"));
                fs::rename(&from, &p).unwrap();
                (p, "rename")
            }
            3 => {
                let p = dir.join(format!("r{}", i - 1));
                fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
                (p, "chmod")
            }
            _ => {
                let p = dir.join(format!("s{i}"));
                std::os::unix::fs::symlink("target", &p).unwrap();
                (p, "symlink")
            }
        };
        let t = statx(&target);
        let td = statx(&dir);
        let mut stamped = vec![t.ctime];
        if matches!(what, "create" | "mkdir" | "symlink") {
            stamped.extend([t.mtime, t.atime]);
            if let Some(b) = t.btime {
                btime_seen = true;
                stamped.push(b);
            }
        }
        if what != "chmod" {
            stamped.extend([td.mtime, td.ctime]);
        }
        check(&kernel, &stamped, what);
        // The filesystem's stamp, then the kernel's.
        let p = dir.join(format!("g{i}"));
        fs::File::create(&p).unwrap();
        let t = statx(&p);
        let mut stamped = vec![t.mtime, t.ctime, t.atime];
        stamped.extend(t.btime);
        std::io::Write::write_all(&mut fa, b"k").unwrap();
        let ta = statx(&a);
        check(&stamped, &[ta.mtime, ta.ctime], "write after create");
    }
    (inversions, btime_seen)
}

#[test]
fn the_kernel_and_the_daemon_stamp_with_one_clock() {
    const ROUNDS: usize = 3000;
    let _floor = FloorRaiser::start();
    let t = TestFs::new();
    let ext4 = Ext4::new("256M");
    let (stable, stable_btime) = clock_inversions(&t.mnt, ROUNDS);
    let (ext4_inv, ext4_btime) = clock_inversions(&ext4.mnt, ROUNDS);
    assert_eq!(ext4_inv, 0, "ext4 itself inverted");
    assert!(ext4_btime, "ext4 gives btime");
    assert_eq!(
        stable, 0,
        "stablefs: {stable} of {ROUNDS} rounds went back in time (btime given: {stable_btime})"
    );
}
