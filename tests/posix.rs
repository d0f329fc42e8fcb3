//! POSIX behaviour through a real mount: files, directories, renames, links, attributes,
//! xattrs, statfs, unlinked-but-open files and permissions, compared with what ext4 does.

mod common;

use common::TestFs;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn errno_of<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(167).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> i32 {
    let (a, b) = (cstr(from), cstr(to));
    // SAFETY: safe because both pointers are valid NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        0
    } else {
        last_errno()
    }
}

#[test]
fn regular_files_offsets_append_truncate() {
    let t = TestFs::new();
    let p = t.path("f");
    let data = pattern(3 << 20, 1);
    fs::write(&p, &data).unwrap();
    assert_eq!(fs::read(&p).unwrap(), data);
    // Overwrite at unaligned offsets.
    let mut f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    f.seek(SeekFrom::Start(12345)).unwrap();
    f.write_all(b"in the middle").unwrap();
    let mut expect = data.clone();
    expect[12345..12358].copy_from_slice(b"in the middle");
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut back = Vec::new();
    f.read_to_end(&mut back).unwrap();
    assert_eq!(back, expect);
    drop(f);
    // O_APPEND.
    let mut a = OpenOptions::new().append(true).open(&p).unwrap();
    a.write_all(b"tail-1").unwrap();
    a.write_all(b"tail-2").unwrap();
    drop(a);
    expect.extend_from_slice(b"tail-1tail-2");
    assert_eq!(fs::read(&p).unwrap(), expect);
    // Truncate down into a block and up again: the cut bytes come back as zeros.
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(5000).unwrap();
    f.set_len(9000).unwrap();
    drop(f);
    let got = fs::read(&p).unwrap();
    assert_eq!(got.len(), 9000);
    assert_eq!(got[..5000], expect[..5000]);
    assert!(got[5000..].iter().all(|&b| b == 0));
    // O_TRUNC.
    fs::write(&p, b"short").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"short");
}

#[test]
fn sparse_and_beyond_4gib() {
    let t = TestFs::new();
    let p = t.path("sparse");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&p)
        .unwrap();
    let far = 6u64 << 30; // beyond the 1 GiB image: only one block is stored
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"far away", far).unwrap();
    f.write_all_at(b"near", 100).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let m = fs::metadata(&p).unwrap();
    assert_eq!(m.len(), far + 8);
    assert!(
        m.blocks() <= 16,
        "holes take no blocks: {} sectors",
        m.blocks()
    );
    let f = File::open(&p).unwrap();
    let mut buf = vec![1u8; 64];
    f.read_exact_at(&mut buf, 1 << 30).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "a hole reads as zeros");
    f.read_exact_at(&mut buf[..8], far).unwrap();
    assert_eq!(&buf[..8], b"far away");
    f.read_exact_at(&mut buf[..8], 98).unwrap();
    assert_eq!(&buf[..8], b"\0\0near\0\0");
}

#[test]
fn directories_and_readdir() {
    let t = TestFs::new();
    fs::create_dir(t.path("d")).unwrap();
    fs::write(t.path("d/x"), b"1").unwrap();
    assert_eq!(errno_of(fs::remove_dir(t.path("d"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(fs::create_dir(t.path("d"))), libc::EEXIST);
    assert_eq!(errno_of(fs::remove_dir(t.path("d/x"))), libc::ENOTDIR);
    assert_eq!(errno_of(fs::remove_file(t.path("d"))), libc::EISDIR);
    assert_eq!(fs::metadata(t.path("d")).unwrap().nlink(), 2);
    fs::create_dir(t.path("d/sub")).unwrap();
    assert_eq!(fs::metadata(t.path("d")).unwrap().nlink(), 3);
    fs::remove_file(t.path("d/x")).unwrap();
    fs::remove_dir(t.path("d/sub")).unwrap();
    fs::remove_dir(t.path("d")).unwrap();
    assert!(!t.path("d").exists());
    // readdir while the directory changes: every entry present throughout is seen exactly once.
    fs::create_dir(t.path("r")).unwrap();
    for i in 0..2000 {
        fs::write(t.path(&format!("r/f{i:04}")), b"").unwrap();
    }
    let dir = cstr(&t.path("r"));
    // SAFETY: safe because `dir` is a valid path string; the stream is closed below.
    let dp = unsafe { libc::opendir(dir.as_ptr()) };
    assert!(!dp.is_null());
    let mut seen = std::collections::HashMap::new();
    let mut n = 0;
    loop {
        // SAFETY: safe because `dp` is an open directory stream.
        let ent = unsafe { libc::readdir(dp) };
        if ent.is_null() {
            break;
        }
        // SAFETY: safe because readdir returned a valid dirent whose d_name is NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        *seen.entry(name).or_insert(0) += 1;
        n += 1;
        if n == 500 {
            for i in 1000..1100 {
                fs::remove_file(t.path(&format!("r/f{i:04}"))).unwrap();
            }
            for i in 0..50 {
                fs::write(t.path(&format!("r/new{i}")), b"").unwrap();
            }
        }
    }
    // SAFETY: safe because `dp` is open and not used afterwards.
    unsafe { libc::closedir(dp) };
    for i in (0..2000).filter(|i| !(1000..1100).contains(i)) {
        assert_eq!(seen.get(&format!("f{i:04}")), Some(&1), "f{i:04}");
    }
    assert!(seen.values().all(|&c| c == 1), "no entry returned twice");
    assert_eq!(seen.get("."), Some(&1));
}

#[test]
fn huge_directory_lookups() {
    let t = TestFs::new();
    fs::create_dir(t.path("big")).unwrap();
    let n = 100_000;
    for i in 0..n {
        File::create(t.path(&format!("big/entry-{i:06}"))).unwrap();
    }
    // Every name is found, and misses are misses.
    for i in (0..n).step_by(991) {
        assert!(t.path(&format!("big/entry-{i:06}")).exists());
    }
    assert!(!t.path("big/entry-999999").exists());
    assert_eq!(fs::read_dir(t.path("big")).unwrap().count(), n);
}

#[test]
fn renames_all_flavours() {
    let t = TestFs::new();
    fs::create_dir(t.path("a")).unwrap();
    fs::create_dir(t.path("b")).unwrap();
    fs::write(t.path("a/f"), b"f").unwrap();
    fs::write(t.path("b/g"), b"g").unwrap();
    // Across directories.
    fs::rename(t.path("a/f"), t.path("b/f")).unwrap();
    assert_eq!(fs::read(t.path("b/f")).unwrap(), b"f");
    // Over an existing file.
    fs::rename(t.path("b/f"), t.path("b/g")).unwrap();
    assert_eq!(fs::read(t.path("b/g")).unwrap(), b"f");
    assert!(!t.path("b/f").exists());
    // Over an empty directory; not over a non-empty one.
    fs::create_dir(t.path("a/d1")).unwrap();
    fs::create_dir(t.path("b/d2")).unwrap();
    fs::rename(t.path("a/d1"), t.path("b/d2")).unwrap();
    assert_eq!(fs::metadata(t.path("a")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(t.path("b")).unwrap().nlink(), 3);
    fs::create_dir(t.path("a/d3")).unwrap();
    fs::write(t.path("b/d2/full"), b"").unwrap();
    assert_eq!(
        errno_of(fs::rename(t.path("a/d3"), t.path("b/d2"))),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno_of(fs::rename(t.path("a/d3"), t.path("b/g"))),
        libc::ENOTDIR
    );
    assert_eq!(
        errno_of(fs::rename(t.path("b/g"), t.path("a/d3"))),
        libc::EISDIR
    );
    assert_eq!(
        errno_of(fs::rename(t.path("b"), t.path("b/d2/inside"))),
        libc::EINVAL
    );
    // RENAME_NOREPLACE and RENAME_EXCHANGE.
    fs::write(t.path("x"), b"x").unwrap();
    fs::write(t.path("y"), b"y").unwrap();
    assert_eq!(
        renameat2(&t.path("x"), &t.path("y"), libc::RENAME_NOREPLACE),
        libc::EEXIST
    );
    assert_eq!(
        renameat2(&t.path("x"), &t.path("z"), libc::RENAME_NOREPLACE),
        0
    );
    assert_eq!(
        renameat2(&t.path("z"), &t.path("y"), libc::RENAME_EXCHANGE),
        0
    );
    assert_eq!(fs::read(t.path("z")).unwrap(), b"y");
    assert_eq!(fs::read(t.path("y")).unwrap(), b"x");
    assert_eq!(
        renameat2(&t.path("z"), &t.path("nothing"), libc::RENAME_EXCHANGE),
        libc::ENOENT
    );
    // Exchange a file and a directory across parents.
    assert_eq!(
        renameat2(&t.path("y"), &t.path("a/d3"), libc::RENAME_EXCHANGE),
        0
    );
    assert!(t.path("y").is_dir());
    assert_eq!(fs::read(t.path("a/d3")).unwrap(), b"x");
}

#[test]
fn links_symlinks_attributes() {
    let t = TestFs::new();
    fs::write(t.path("f"), b"data").unwrap();
    fs::hard_link(t.path("f"), t.path("h")).unwrap();
    assert_eq!(fs::metadata(t.path("f")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(t.path("f")).unwrap().ino(),
        fs::metadata(t.path("h")).unwrap().ino()
    );
    fs::remove_file(t.path("f")).unwrap();
    assert_eq!(fs::metadata(t.path("h")).unwrap().nlink(), 1);
    assert_eq!(fs::read(t.path("h")).unwrap(), b"data");
    std::os::unix::fs::symlink("h", t.path("s")).unwrap();
    assert_eq!(fs::read_link(t.path("s")).unwrap(), Path::new("h"));
    assert_eq!(fs::read(t.path("s")).unwrap(), b"data");
    let long_target = "t/".repeat(1500);
    std::os::unix::fs::symlink(&long_target, t.path("long")).unwrap();
    assert_eq!(
        fs::read_link(t.path("long")).unwrap(),
        Path::new(&long_target)
    );
    // chmod, chown, utimens and the times ext4 keeps.
    fs::set_permissions(t.path("h"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(t.path("h")).unwrap().mode() & 0o7777, 0o600);
    std::os::unix::fs::chown(t.path("h"), Some(1234), Some(5678)).unwrap();
    let m = fs::metadata(t.path("h")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    let c = cstr(&t.path("h"));
    let times = [
        libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 123_456_789,
        },
        libc::timespec {
            tv_sec: 1_100_000_000,
            tv_nsec: 987_654_321,
        },
    ];
    assert_eq!(
        // SAFETY: safe because `c` and `times` are valid for the call.
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) },
        0
    );
    let m = fs::metadata(t.path("h")).unwrap();
    assert_eq!((m.atime(), m.atime_nsec()), (1_000_000_000, 123_456_789));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_100_000_000, 987_654_321));
    let ctime_before = (m.ctime(), m.ctime_nsec());
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Writing moves mtime and ctime; chmod moves only ctime.
    OpenOptions::new()
        .append(true)
        .open(t.path("h"))
        .unwrap()
        .write_all(b"+")
        .unwrap();
    let m2 = fs::metadata(t.path("h")).unwrap();
    assert!(m2.mtime() > 1_100_000_000);
    assert!((m2.ctime(), m2.ctime_nsec()) > ctime_before);
    let mtime = (m2.mtime(), m2.mtime_nsec());
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::set_permissions(t.path("h"), fs::Permissions::from_mode(0o644)).unwrap();
    let m3 = fs::metadata(t.path("h")).unwrap();
    assert_eq!((m3.mtime(), m3.mtime_nsec()), mtime);
    assert!((m3.ctime(), m3.ctime_nsec()) > (m2.ctime(), m2.ctime_nsec()));
    // relatime: a read after a write moves atime; a second read right after does not.
    let before = fs::metadata(t.path("h")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::read(t.path("h")).unwrap();
    let after = fs::metadata(t.path("h")).unwrap();
    assert!((after.atime(), after.atime_nsec()) > (before.atime(), before.atime_nsec()));
    fs::read(t.path("h")).unwrap();
    let again = fs::metadata(t.path("h")).unwrap();
    assert_eq!(
        (again.atime(), again.atime_nsec()),
        (after.atime(), after.atime_nsec())
    );
    // Creating an entry moves the parent's mtime.
    let d0 = fs::metadata(t.path("")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(t.path("new"), b"").unwrap();
    let d1 = fs::metadata(t.path("")).unwrap();
    assert!((d1.mtime(), d1.mtime_nsec()) > (d0.mtime(), d0.mtime_nsec()));
}

#[test]
fn name_length_limits() {
    let t = TestFs::new();
    let ok = "n".repeat(255);
    let bad = "n".repeat(256);
    fs::write(t.path(&ok), b"x").unwrap();
    assert_eq!(fs::read(t.path(&ok)).unwrap(), b"x");
    assert_eq!(errno_of(fs::write(t.path(&bad), b"x")), libc::ENAMETOOLONG);
    assert_eq!(errno_of(fs::create_dir(t.path(&bad))), libc::ENAMETOOLONG);
}

#[test]
fn xattrs_through_the_mount() {
    let t = TestFs::new();
    fs::write(t.path("x"), b"").unwrap();
    let p = cstr(&t.path("x"));
    let set = |name: &str, val: &[u8], flags: i32| -> i32 {
        let n = CString::new(name).unwrap();
        // SAFETY: safe because all pointers are valid for the given lengths.
        let r = unsafe {
            libc::setxattr(
                p.as_ptr(),
                n.as_ptr(),
                val.as_ptr().cast(),
                val.len(),
                flags,
            )
        };
        if r == 0 {
            0
        } else {
            last_errno()
        }
    };
    let get = |name: &str| -> Result<Vec<u8>, i32> {
        let n = CString::new(name).unwrap();
        let mut buf = vec![0u8; 4096];
        // SAFETY: safe because `buf` is valid for its length.
        let r =
            unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 {
            Err(last_errno())
        } else {
            buf.truncate(r as usize);
            Ok(buf)
        }
    };
    assert_eq!(set("user.one", b"1", 0), 0);
    assert_eq!(set("user.one", b"2", libc::XATTR_CREATE), libc::EEXIST);
    assert_eq!(set("user.two", b"2", libc::XATTR_REPLACE), libc::ENODATA);
    assert_eq!(set("user.two", b"two", libc::XATTR_CREATE), 0);
    assert_eq!(set("user.one", b"uno", libc::XATTR_REPLACE), 0);
    assert_eq!(get("user.one"), Ok(b"uno".to_vec()));
    assert_eq!(get("user.none"), Err(libc::ENODATA));
    let mut list = vec![0u8; 1024];
    // SAFETY: safe because `list` is valid for its length.
    let n = unsafe { libc::listxattr(p.as_ptr(), list.as_mut_ptr().cast(), list.len()) };
    assert!(n > 0);
    let mut names: Vec<&[u8]> = list[..n as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .collect();
    names.sort();
    assert_eq!(names, vec![&b"user.one"[..], b"user.two"]);
    let n1 = CString::new("user.one").unwrap();
    // SAFETY: safe because the pointers are valid strings.
    assert_eq!(unsafe { libc::removexattr(p.as_ptr(), n1.as_ptr()) }, 0);
    assert_eq!(get("user.one"), Err(libc::ENODATA));
}

#[test]
fn statfs_reports_real_numbers() {
    let t = TestFs::new();
    let c = cstr(&t.mnt);
    // SAFETY: safe because statvfs is plain data and `c` is a valid path.
    let stat = || unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut s), 0);
        s
    };
    let s0 = stat();
    assert_eq!(s0.f_bsize, 4096);
    let total = s0.f_blocks * s0.f_frsize;
    assert!(
        total > (1 << 30) - (1 << 20) && total <= 1 << 30,
        "total {total}"
    );
    assert_eq!(s0.f_namemax, 255);
    let f = File::create(t.path("fill")).unwrap();
    (&f).write_all(&vec![7u8; 64 << 20]).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let s1 = stat();
    let used = (s0.f_bfree - s1.f_bfree) * s1.f_frsize;
    assert!(
        (64 << 20..66 << 20).contains(&used),
        "64 MiB written, {used} bytes used"
    );
    fs::remove_file(t.path("fill")).unwrap();
    // Freed space comes back once the deleting commit is durable.
    File::create(t.path("sync")).unwrap().sync_all().unwrap();
    File::create(t.path("sync2")).unwrap().sync_all().unwrap();
    let s2 = stat();
    assert!(
        s2.f_bfree + 64 >= s0.f_bfree,
        "bfree {} vs {}",
        s2.f_bfree,
        s0.f_bfree
    );
}

#[test]
fn unlinked_file_stays_readable_until_close() {
    let mut t = TestFs::new();
    let p = t.path("tmp");
    fs::write(&p, pattern(10 << 20, 3)).unwrap();
    File::open(t.path("")).unwrap().sync_all().unwrap();
    let f = File::open(&p).unwrap();
    let c = cstr(&t.mnt);
    // SAFETY: safe because statvfs is plain data and `c` is a valid path.
    let bfree = || unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        libc::statvfs(c.as_ptr(), &mut s);
        s.f_bfree
    };
    fs::remove_file(&p).unwrap();
    assert!(!p.exists());
    let before_close = bfree();
    let mut back = Vec::new();
    (&f).read_to_end(&mut back).unwrap();
    assert_eq!(back, pattern(10 << 20, 3));
    drop(f);
    // The kernel sends FUSE's RELEASE after close(2) returns, in the background, so the daemon
    // may hear of the last close a little later (under load, after a sync or two): commit
    // until the space is back, for at most 20 s.
    let mut tries = 0;
    while bfree() < before_close + 2500 {
        tries += 1;
        assert!(
            tries <= 200,
            "space of the deleted file comes back after close: {} free, {before_close} before",
            bfree()
        );
        File::create(t.path("s1")).unwrap().sync_all().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    t.remount();
    assert!(!p.exists());
}

#[test]
fn permissions_are_enforced() {
    let t = TestFs::with("1G", &[], "allow_other");
    fs::write(t.path("secret"), b"s").unwrap();
    fs::set_permissions(t.path("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(t.path("public"), b"p").unwrap();
    fs::set_permissions(t.path("public"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(t.path(""), fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |script: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .uid(65534)
            .gid(65534)
            .status()
            .unwrap()
            .code()
            .unwrap()
    };
    let s = t.path("secret").display().to_string();
    let p = t.path("public").display().to_string();
    let d = t.path("newfile").display().to_string();
    assert_ne!(
        as_nobody(&format!("cat {s} >/dev/null 2>&1")),
        0,
        "nobody must not read a 0600 root file"
    );
    assert_eq!(
        as_nobody(&format!("cat {p} >/dev/null")),
        0,
        "nobody may read a 0644 file"
    );
    assert_ne!(
        as_nobody(&format!("echo x 2>/dev/null >> {p}")),
        0,
        "nobody must not write a 0644 root file"
    );
    assert_ne!(
        as_nobody(&format!("touch {d} 2>/dev/null")),
        0,
        "nobody must not create in a 0755 root dir"
    );
    // Writing clears set-user-ID when the writer lacks CAP_FSETID, as on ext4; root's
    // writes keep it.
    fs::write(t.path("suid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(t.path("suid"), fs::Permissions::from_mode(0o4777)).unwrap();
    OpenOptions::new()
        .append(true)
        .open(t.path("suid"))
        .unwrap()
        .write_all(b"# root\n")
        .unwrap();
    assert_eq!(
        fs::metadata(t.path("suid")).unwrap().mode() & 0o7777,
        0o4777,
        "root keeps set-user-ID"
    );
    let su = t.path("suid").display().to_string();
    assert_eq!(as_nobody(&format!("echo '# nobody' >> {su}")), 0);
    assert_eq!(
        fs::metadata(t.path("suid")).unwrap().mode() & 0o7777,
        0o0777,
        "an unprivileged write clears it"
    );
    fs::set_permissions(t.path(""), fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(as_nobody(&format!("touch {d}")), 0);
    let m = fs::metadata(&d).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (65534, 65534),
        "new files belong to their creator"
    );
}

#[test]
fn data_survives_unmount_and_remount() {
    let mut t = TestFs::new();
    fs::create_dir_all(t.path("a/b/c")).unwrap();
    for i in 0..50 {
        fs::write(
            t.path(&format!("a/b/c/f{i}")),
            pattern(i * 9973 + 1, i as u8),
        )
        .unwrap();
    }
    fs::write(t.path("big"), pattern(40 << 20, 9)).unwrap();
    std::os::unix::fs::symlink("a/b", t.path("link")).unwrap();
    t.remount();
    for i in 0..50 {
        assert_eq!(
            fs::read(t.path(&format!("a/b/c/f{i}"))).unwrap(),
            pattern(i * 9973 + 1, i as u8)
        );
    }
    assert_eq!(fs::read(t.path("big")).unwrap(), pattern(40 << 20, 9));
    assert_eq!(fs::read_link(t.path("link")).unwrap(), Path::new("a/b"));
    t.remount();
    assert_eq!(
        fs::read(t.path("link/c/f7")).unwrap(),
        pattern(7 * 9973 + 1, 7)
    );
}
