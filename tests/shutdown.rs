//! The shutdown ioctl (XFS's `XFS_IOC_GOINGDOWN`) on a real mount: root only; afterwards
//! every call fails with EIO, not one byte of the image changes (not even at unmount, which
//! still works), and the next mount is at the last commit plus everything fsynced, for each
//! of the three flags.

mod common;

use common::differential::{run_script, User};
use common::{read_file, TestFs};
use std::path::Path;

/// No background commits: only fsync (and the shutdown's own flush) commit.
const OPTS: &str = "allow_other,commit=3600,idle_commit=0";

/// `_IOW('X', 125, __u32)`: stablefs's shutdown ioctl that carries the flag.
const GOINGDOWN_IOW: u32 = 0x4004_587d;

fn sh(dir: &Path, user: &User, script: &str) -> String {
    let out = run_script(dir, user, script);
    format!("{}{}status {:?}", out.stdout, out.stderr, out.status)
}

/// A file made durable by fsync and one only written.
fn prepare(fs: &TestFs) {
    let out = sh(
        &fs.mnt,
        &User::root(),
        "echo durable > synced && sync synced && echo pending > pending && mkdir pdir && echo ok",
    );
    assert!(out.starts_with("ok\n"), "{out}");
}

/// Runs the shutdown `how` as root, then checks EIO everywhere and an unchanged image.
fn go_down_and_check(fs: &mut TestFs, how: &str) {
    let out = sh(&fs.mnt, &User::root(), how);
    assert!(out.ends_with("status Some(0)"), "{how}: {out}");
    let image = std::fs::read(&fs.image).unwrap();
    // From outside the mount: a chdir into it fails (once the kernel's cached attributes
    // expire).
    let after = sh(
        fs.mnt.parent().unwrap(),
        &User::root(),
        "cat mnt/synced; echo more >> mnt/synced; ls mnt; touch mnt/new; mkdir mnt/d2; \
         rm mnt/pending; sync mnt/synced; sync; true",
    );
    for expected in [
        "cat: mnt/synced: Input/output error",
        "mnt/synced: Input/output error",
        // `ls` fails at the stat, the open or the reading, depending on what is cached.
        "'mnt': Input/output error",
        "touch: cannot touch 'mnt/new': Input/output error",
        "mkdir: cannot create directory 'mnt/d2': Input/output error",
        "rm: cannot remove 'mnt/pending': Input/output error",
        "sync: error opening 'mnt/synced': Input/output error",
    ] {
        assert!(
            after.contains(expected),
            "{how}: no '{expected}' in:\n{after}"
        );
    }
    assert!(
        !after.contains("durable"),
        "{how}: read after shutdown:\n{after}"
    );
    // The unmount works and commits nothing.
    fs.unmount();
    assert!(
        std::fs::read(&fs.image).unwrap() == image,
        "{how}: the image changed after the shutdown"
    );
    fs.mount();
    assert_eq!(read_file(&fs.path("synced")), b"durable\n", "{how}");
}

#[test]
fn only_root_may_shut_down() {
    let fs = TestFs::with("256M", &[], OPTS);
    prepare(&fs);
    let nobody = User::nobody();
    let out = sh(&fs.mnt, &nobody, "xfs_io -r -x -c shutdown synced");
    assert!(out.contains("Operation not permitted"), "{out}");
    let out = sh(
        &fs.mnt,
        &nobody,
        &format!(
            "python3 -c \"import fcntl, struct; fcntl.ioctl(open('synced'), {GOINGDOWN_IOW}, struct.pack('I', 0))\""
        ),
    );
    assert!(out.contains("PermissionError"), "{out}");
    // Still up.
    let out = sh(
        &fs.mnt,
        &User::root(),
        "echo more >> pending && cat pending",
    );
    assert!(out.starts_with("pending\nmore\n"), "{out}");
}

/// `xfs_io -x -c "shutdown [-f]"`: LOGFLUSH and NOLOGFLUSH; both leave the last commit,
/// which holds the fsynced file and not the other.
#[test]
fn xfs_io_shutdown_keeps_what_fsync_made_durable() {
    for how in [
        "xfs_io -r -x -c shutdown .",
        "xfs_io -r -x -c 'shutdown -f' .",
    ] {
        let mut fs = TestFs::with("256M", &[], OPTS);
        prepare(&fs);
        go_down_and_check(&mut fs, how);
        assert!(
            !fs.path("pending").exists(),
            "{how}: not fsynced, not committed"
        );
        assert!(!fs.path("pdir").exists(), "{how}");
    }
}

/// The three flags through the ioctl that carries them: DEFAULT commits everything first.
#[test]
fn the_three_flags() {
    for (flag, everything) in [(0, true), (1, false), (2, false)] {
        let mut fs = TestFs::with("256M", &[], OPTS);
        prepare(&fs);
        let how = format!(
            "python3 -c \"import fcntl, os, struct; fd = os.open('.', os.O_RDONLY); fcntl.ioctl(fd, {GOINGDOWN_IOW}, struct.pack('I', {flag}))\""
        );
        go_down_and_check(&mut fs, &how);
        assert_eq!(fs.path("pending").exists(), everything, "flag {flag}");
        assert_eq!(fs.path("pdir").is_dir(), everything, "flag {flag}");
        if everything {
            assert_eq!(read_file(&fs.path("pending")), b"pending\n");
        }
    }
    // An unknown flag changes nothing.
    let fs = TestFs::with("256M", &[], OPTS);
    let out = sh(
        &fs.mnt,
        &User::root(),
        &format!(
            "python3 -c \"import fcntl, os, struct; fd = os.open('.', os.O_RDONLY); fcntl.ioctl(fd, {GOINGDOWN_IOW}, struct.pack('I', 3))\"; touch x && echo up"
        ),
    );
    assert!(
        out.contains("Invalid argument") && out.contains("up\n"),
        "{out}"
    );
}

/// A file open before the shutdown, its pages in the kernel's cache: reading it again
/// fails with EIO too (the daemon drops the kernel's caches when it goes down).
#[test]
fn cached_pages_of_open_files_are_not_served_after_a_shutdown() {
    let fs = TestFs::with("256M", &[], OPTS);
    prepare(&fs);
    let out = sh(
        fs.mnt.parent().unwrap(),
        &User::root(),
        &format!(
            "python3 -c \"
import fcntl, os, struct
fd = os.open('mnt/synced', os.O_RDONLY)
print(os.pread(fd, 100, 0))
fcntl.ioctl(os.open('mnt', os.O_RDONLY), {GOINGDOWN_IOW}, struct.pack('I', 2))
for what, call in [('read', lambda: os.pread(fd, 100, 0)), ('fstat', lambda: os.fstat(fd).st_size)]:
    try:
        print(what, call())
    except OSError as e:
        print(what, os.strerror(e.errno))
\""
        ),
    );
    assert_eq!(
        out,
        "b'durable\\n'\nread Input/output error\nfstat Input/output error\nstatus Some(0)"
    );
}
