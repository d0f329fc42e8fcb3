//! Tests of the mount harness itself (`tests/common`): that a mount, an unmount, a crash, a
//! panic, a signal and the daemon-mode `stablefs mount` each leave nothing mounted and no daemon
//! running, and the parts of the mount contract the harness relies on (an image in use is
//! refused; `stablefs mount MNT` makes `./stablefs.img` itself).
//!
//! The first tests need no filesystem (the mount table parser, scratch dirs, `run`); the rest
//! mount a real stablefs.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::*;

// ---- the harness alone ----------------------------------------------------------------------

#[test]
fn mountinfo_lines_parse_and_unescape() {
    let text = "\
36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root rw,errors=continue
100 29 0:52 / /work/target/tmp/sfs-x/mnt rw,nosuid,nodev,relatime shared:7 - fuse stablefs rw,user_id=0,group_id=0
101 29 0:53 / /a\\134b\\011c rw - fuse.stablefs /img\\040file rw
garbage line
";
    let m = parse_mountinfo(text);
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].mount_point, Path::new("/mnt/parent dir"));
    assert_eq!((m[0].fstype.as_str(), m[0].dev), ("ext3", (98, 0)));
    assert!(!m[0].is_fuse());
    assert_eq!(m[1].mount_point, Path::new("/work/target/tmp/sfs-x/mnt"));
    assert_eq!(
        (m[1].id, m[1].dev, m[1].source.as_str()),
        (100, (0, 52), "stablefs")
    );
    assert!(m[1].is_fuse() && m[2].is_fuse());
    assert_eq!(m[2].mount_point, Path::new("/a\\b\tc"));
    assert_eq!(m[2].source, "/img file");
}

#[test]
fn mount_table_of_this_process_is_read() {
    let m = mounts();
    assert!(m.iter().any(|e| e.mount_point == Path::new("/")), "{m:?}");
}

#[test]
fn scratch_dirs_are_unique_and_on_disk() {
    let (a, b) = (scratch_dir(), scratch_dir());
    assert_ne!(a.path(), b.path());
    let fs = mount_containing(a.path()).expect("no mount holds the scratch dir");
    assert_ne!(fs.fstype, "tmpfs");
    let p = a.path().to_owned();
    drop(a);
    assert!(!p.exists());
}

#[test]
fn run_panics_with_the_output_of_a_failed_command() {
    let r =
        catch_unwind(|| run(Command::new("sh").args(["-c", "echo OUT-1; echo ERR-2 >&2; exit 3"])));
    let msg = panic_text(r.expect_err("run accepted exit 3"));
    assert!(
        msg.contains("OUT-1") && msg.contains("ERR-2") && msg.contains('3'),
        "{msg}"
    );
    let ok = run(Command::new("sh").args(["-c", "echo hello"]));
    assert_eq!(ok.stdout, b"hello\n");
}

#[test]
fn output_within_kills_a_command_that_overruns() {
    let r = catch_unwind(|| {
        output_within(
            Command::new("sh").args(["-c", "echo started; exec sleep 30"]),
            Duration::from_millis(300),
        )
    });
    let msg = panic_text(r.expect_err("no timeout"));
    assert!(
        msg.contains("still running") && msg.contains("started"),
        "{msg}"
    );
}

#[test]
fn output_within_does_not_wait_for_a_daemon_holding_stdout() {
    // A detaching daemon that forgets to close stdout must not hang the harness.
    let t = std::time::Instant::now();
    let out = output_within(
        Command::new("sh").args(["-c", "sleep 5 & echo parent-done"]),
        Duration::from_secs(4),
    );
    assert!(out.status.success());
    assert!(t.elapsed() < Duration::from_secs(4));
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

// ---- with a mounted filesystem -------------------------------------------------------------

#[test]
fn mount_create_unmount_leaves_nothing_mounted() {
    let mut fs = TestFs::new();
    assert!(fs.is_mounted());
    let pid = fs.daemon_pid().expect("no daemon pid");
    write_file(&fs.path("hello.txt"), b"hello, stablefs\n");
    assert_eq!(read_file(&fs.path("hello.txt")), b"hello, stablefs\n");
    fs.unmount();
    assert!(!fs.is_mounted());
    assert!(fs.daemon_pid().is_none());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "daemon {pid} not reaped"
    );
    assert!(fuse_mounts_under(fs.dir.path()).is_empty());
    // And the data was committed.
    fs.mount();
    assert_eq!(read_file(&fs.path("hello.txt")), b"hello, stablefs\n");
}

#[test]
fn drop_during_a_panic_unmounts_and_reaps_the_daemon() {
    let seen: Mutex<Option<(PathBuf, PathBuf, u32)>> = Mutex::new(None);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let fs = TestFs::new();
        let pid = fs.daemon_pid().unwrap();
        *seen.lock().unwrap() = Some((fs.dir.path().to_owned(), fs.mnt.clone(), pid));
        write_file(&fs.path("f"), b"x");
        panic!("deliberate panic with a mounted filesystem");
    }));
    assert!(r.is_err());
    let (dir, mnt, pid) = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the closure never mounted");
    assert!(
        fuse_mounts_at(&mnt).is_empty(),
        "left mounted:\n{}",
        mounts_listing()
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "daemon {pid} still there"
    );
    assert!(!dir.exists(), "scratch dir {} not removed", dir.display());
}

#[test]
fn kill9_cleans_the_dead_mount_and_fsynced_data_survives() {
    let mut fs = TestFs::new();
    let f = fs::File::create(fs.path("durable")).unwrap();
    std::io::Write::write_all(&mut &f, b"synced before the crash").unwrap();
    f.sync_all().unwrap();
    drop(f);
    let pid = fs.daemon_pid().unwrap();
    fs.kill9();
    assert!(!fs.is_mounted());
    assert!(fs.daemon_pid().is_none());
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    fs.mount();
    assert_eq!(read_file(&fs.path("durable")), b"synced before the crash");
    fs.unmount();
}

#[test]
fn sigterm_unmounts_cleanly_and_the_data_is_there_after_a_remount() {
    let mut fs = TestFs::new();
    write_file(&fs.path("kept"), b"written before SIGTERM");
    fs.sigterm();
    assert!(!fs.is_mounted());
    fs.mount();
    assert_eq!(read_file(&fs.path("kept")), b"written before SIGTERM");
    fs.unmount();
}

#[test]
fn daemon_mode_returns_once_mounted_and_umount_ends_the_daemon() {
    let dir = scratch_dir();
    let image = dir.path().join("d.img");
    mkfs(&image, "256M", &[]);
    let mnt = make_mnt(dir.path(), "mnt");
    let mut m = mount_detached(
        Command::new(stablefs_bin())
            .arg("mount")
            .arg(&image)
            .arg(&mnt),
        &mnt,
    );
    let pid = m.pid().unwrap();
    write_file(&mnt.join("a"), b"daemon mode");
    m.umount();
    assert!(!m.daemon_alive(), "daemon {pid} survived umount");
    assert!(fuse_mounts_at(&mnt).is_empty());
    let fs = TestFs::on_image(image, "");
    assert_eq!(read_file(&fs.path("a")), b"daemon mode");
}

#[test]
fn a_second_mount_of_the_same_image_fails_with_in_use() {
    let fs = TestFs::new();
    write_file(&fs.path("first"), b"1");
    let mnt2 = make_mnt(fs.dir.path(), "mnt2");
    // Daemon mode, so that a wrong success returns instead of hanging; the guard cleans it up.
    let _guard = DaemonMount::new(&mnt2);
    let out = output_within(
        Command::new(stablefs_bin())
            .arg("mount")
            .arg(&fs.image)
            .arg(&mnt2),
        Duration::from_secs(60),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "second mount succeeded:\n{text}");
    assert!(
        text.to_lowercase().contains("in use"),
        "no 'in use' in:\n{text}"
    );
    assert!(
        fuse_mounts_at(&mnt2).is_empty(),
        "second mount is up:\n{}",
        mounts_listing()
    );
    // The first mount is untouched.
    assert_eq!(read_file(&fs.path("first")), b"1");
}

#[test]
fn mount_without_a_path_creates_a_sparse_default_image_in_the_cwd() {
    let dir = scratch_dir();
    let cwd = make_mnt(dir.path(), "cwd");
    let mnt = make_mnt(dir.path(), "mnt");
    let mut m = mount_detached(
        Command::new(stablefs_bin())
            .arg("mount")
            .arg(&mnt)
            .current_dir(&cwd),
        &mnt,
    );
    let image = cwd.join("stablefs.img");
    let md = fs::metadata(&image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    assert_eq!(md.len(), 1 << 30, "default image size");
    let allocated = md.blocks() * 512;
    assert!(
        allocated < 64 << 20,
        "default image not sparse: {allocated} bytes allocated"
    );
    write_file(&mnt.join("survivor"), b"still here");
    m.umount();
    let fs = TestFs::on_image(image, "");
    assert_eq!(read_file(&fs.path("survivor")), b"still here");
}

fn make_mnt(parent: &Path, name: &str) -> PathBuf {
    let p = parent.join(name);
    fs::create_dir(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
    fs::canonicalize(&p).unwrap()
}
