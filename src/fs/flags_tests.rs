//! Inode flags at the POSIX layer, without a mount: who may set which flag, and what an
//! immutable or append-only inode refuses (see `flags`).

use super::flags::check_set_flags;
use super::*;
use crate::device::MemDevice;
use crate::format::inode_flags as fl;
use crate::mkfs::{mkfs, MkfsOptions};

const ROOT: Caller = Caller::ROOT;
const USER: Caller = Caller {
    uid: 1000,
    gid: 1000,
    ..Caller::ROOT
};

fn mounted() -> (Arc<MemDevice>, Arc<Fs>) {
    let dev = Arc::new(MemDevice::new(64 << 20, 512));
    mkfs(dev.clone(), &MkfsOptions::default()).unwrap();
    let fs = Fs::mount(dev.clone(), MountOptions::default()).unwrap();
    (dev, fs)
}

fn file(fs: &Fs, parent: Ino, name: &str, who: Caller) -> Ino {
    fs.mknod(parent, name.as_bytes(), libc::S_IFREG | 0o644, 0, who)
        .unwrap()
        .ino
}

fn eno<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    r.unwrap_err().errno()
}

#[test]
fn who_may_set_which_flag() {
    let f = FileKind::File;
    let d = FileKind::Dir;
    // The owner sets ordinary flags; another user may not; root may.
    assert_eq!(
        check_set_flags(f, 0, fl::NODUMP, 1000, 1000).unwrap(),
        fl::NODUMP
    );
    assert_eq!(
        eno(check_set_flags(f, 0, fl::NODUMP, 1000, 1001)),
        libc::EPERM
    );
    assert_eq!(
        check_set_flags(f, 0, fl::NODUMP, 1000, 0).unwrap(),
        fl::NODUMP
    );
    // Only root changes immutable or append-only, either way.
    for locked in [fl::IMMUTABLE, fl::APPEND] {
        assert_eq!(eno(check_set_flags(f, 0, locked, 1000, 1000)), libc::EPERM);
        assert_eq!(eno(check_set_flags(f, locked, 0, 1000, 1000)), libc::EPERM);
        assert_eq!(check_set_flags(f, 0, locked, 1000, 0).unwrap(), locked);
    }
    // The owner keeps an append-only flag set while changing another.
    let a = fl::APPEND;
    assert_eq!(
        check_set_flags(f, a, a | fl::NODUMP, 1000, 1000).unwrap(),
        a | fl::NODUMP
    );
    // An immutable inode's other flags change only together with clearing immutable.
    let i = fl::IMMUTABLE;
    assert_eq!(
        eno(check_set_flags(f, i, i | fl::NODUMP, 0, 0)),
        libc::EPERM
    );
    assert_eq!(check_set_flags(f, i, fl::NODUMP, 0, 0).unwrap(), fl::NODUMP);
    assert_eq!(check_set_flags(f, i, i, 0, 0).unwrap(), i);
    // Unknown flags and flags of the wrong kind: EOPNOTSUPP.
    for bad in [
        0x80_0000, /* C */
        0x4000,    /* j */
        0x8_0000,  /* e */
    ] {
        assert_eq!(eno(check_set_flags(f, 0, bad, 0, 0)), libc::EOPNOTSUPP);
    }
    assert_eq!(
        eno(check_set_flags(f, 0, fl::DIRSYNC, 0, 0)),
        libc::EOPNOTSUPP
    );
    assert_eq!(
        check_set_flags(d, 0, fl::DIRSYNC, 0, 0).unwrap(),
        fl::DIRSYNC
    );
    assert_eq!(
        eno(check_set_flags(FileKind::Symlink, 0, fl::SYNC, 0, 0)),
        libc::EOPNOTSUPP
    );
}

#[test]
fn immutable_file_refuses_every_change_even_for_root() {
    let (dev, fs) = mounted();
    let f = file(&fs, ROOT_INO, "f", USER);
    fs.write(f, 0, b"hello", None).unwrap();
    assert_eq!(eno(fs.set_flags(f, fl::IMMUTABLE, USER)), libc::EPERM);
    fs.set_flags(f, fl::IMMUTABLE, ROOT).unwrap();
    assert_eq!(fs.get_flags(f).unwrap(), fl::IMMUTABLE);
    let perm = libc::EPERM;
    assert_eq!(eno(fs.check_open(f, libc::O_WRONLY)), perm);
    assert_eq!(eno(fs.check_open(f, libc::O_RDWR | libc::O_APPEND)), perm);
    assert_eq!(eno(fs.check_open(f, libc::O_RDONLY | libc::O_TRUNC)), perm);
    assert!(!fs.check_open(f, libc::O_RDONLY).unwrap());
    assert_eq!(eno(fs.write(f, 5, b"more", None)), perm);
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    let touch = SetAttr {
        atime: Some(SetTime::Now),
        mtime: Some(SetTime::Now),
        ..SetAttr::default()
    };
    let truncate = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    for set in [&chmod, &touch, &truncate] {
        assert_eq!(eno(fs.setattr(f, set)), perm);
    }
    assert_eq!(eno(fs.link(f, ROOT_INO, b"g")), perm);
    assert_eq!(eno(fs.unlink(ROOT_INO, b"f")), perm);
    assert_eq!(eno(fs.rename(ROOT_INO, b"f", ROOT_INO, b"g", 0)), perm);
    let other = file(&fs, ROOT_INO, "other", ROOT);
    assert_eq!(eno(fs.rename(ROOT_INO, b"other", ROOT_INO, b"f", 0)), perm);
    assert_eq!(
        eno(fs.rename(ROOT_INO, b"other", ROOT_INO, b"f", RENAME_EXCHANGE)),
        perm
    );
    assert_eq!(eno(fs.setxattr(f, b"user.a", b"1", 0)), perm);
    assert_eq!(eno(fs.removexattr(f, b"user.a")), perm);
    assert_eq!(eno(fs.fallocate(f, 0, 4096, 0)), perm);
    assert_eq!(eno(fs.copy_file_range(other, 0, f, 0, 10)), perm);
    assert_eq!(fs.read(f, 0, 100).unwrap(), b"hello");
    // Survives a remount; clearing it makes the file writable again.
    fs.shutdown().unwrap();
    drop(fs);
    let fs = Fs::mount(dev, MountOptions::default()).unwrap();
    let f = fs.lookup(ROOT_INO, b"f").unwrap().ino;
    assert_eq!(fs.get_flags(f).unwrap(), fl::IMMUTABLE);
    fs.set_flags(f, 0, ROOT).unwrap();
    fs.write(f, 5, b"!", None).unwrap();
    fs.unlink(ROOT_INO, b"f").unwrap();
}

#[test]
fn append_only_file_takes_appends_only() {
    let (_dev, fs) = mounted();
    let f = file(&fs, ROOT_INO, "f", USER);
    fs.set_flags(f, fl::APPEND, ROOT).unwrap();
    let perm = libc::EPERM;
    assert_eq!(eno(fs.check_open(f, libc::O_WRONLY)), perm);
    assert_eq!(
        eno(fs.check_open(f, libc::O_WRONLY | libc::O_APPEND | libc::O_TRUNC)),
        perm
    );
    fs.check_open(f, libc::O_WRONLY | libc::O_APPEND).unwrap();
    fs.check_open(f, libc::O_RDONLY).unwrap();
    fs.write(f, 0, b"one", None).unwrap();
    let refused = [
        SetAttr {
            size: Some(0),
            ..SetAttr::default()
        },
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
        SetAttr {
            uid: Some(1),
            ..SetAttr::default()
        },
        SetAttr {
            atime: Some(SetTime::At(Timespec { sec: 1, nsec: 0 })),
            mtime: Some(SetTime::At(Timespec { sec: 1, nsec: 0 })),
            ..SetAttr::default()
        },
    ];
    for set in &refused {
        assert_eq!(eno(fs.setattr(f, set)), perm, "{set:?}");
    }
    // `touch` (now), and the mtime the kernel's writeback cache hands over, are allowed.
    fs.setattr(
        f,
        &SetAttr {
            atime: Some(SetTime::Now),
            mtime: Some(SetTime::Now),
            ..SetAttr::default()
        },
    )
    .unwrap();
    fs.setattr(
        f,
        &SetAttr {
            mtime: Some(SetTime::At(Timespec::now())),
            ctime: Some(Timespec::now()),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(eno(fs.unlink(ROOT_INO, b"f")), perm);
    assert_eq!(eno(fs.link(f, ROOT_INO, b"g")), perm);
    assert_eq!(eno(fs.setxattr(f, b"user.a", b"1", 0)), perm);
    // Plain allocation only.
    fs.fallocate(f, 0, 8192, 0).unwrap();
    fs.fallocate(f, 0, 16384, libc::FALLOC_FL_KEEP_SIZE)
        .unwrap();
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    assert_eq!(eno(fs.fallocate(f, 0, 4096, punch)), perm);
    assert_eq!(
        eno(fs.fallocate(f, 0, 4096, libc::FALLOC_FL_ZERO_RANGE)),
        perm
    );
}

#[test]
fn immutable_and_append_only_directories() {
    let (_dev, fs) = mounted();
    let perm = libc::EPERM;
    let a = fs.mkdir(ROOT_INO, b"a", 0o755, ROOT).unwrap().ino;
    file(&fs, a, "old", ROOT);
    fs.mkdir(a, b"sub", 0o755, ROOT).unwrap();
    fs.set_flags(a, fl::APPEND, ROOT).unwrap();
    // Append only: new entries yes, removals no.
    file(&fs, a, "new", ROOT);
    assert_eq!(eno(fs.unlink(a, b"old")), perm);
    assert_eq!(eno(fs.rmdir(a, b"sub")), perm);
    assert_eq!(eno(fs.rename(a, b"old", a, b"x", 0)), perm);
    assert_eq!(eno(fs.rename(a, b"old", ROOT_INO, b"x", 0)), perm);
    let outside = file(&fs, ROOT_INO, "outside", ROOT);
    fs.rename(ROOT_INO, b"outside", a, b"moved_in", 0).unwrap();
    assert_eq!(
        eno(fs.rename(ROOT_INO, b"a", ROOT_INO, b"b", 0)),
        perm,
        "the directory itself is append only"
    );
    fs.link(outside, a, b"linked").unwrap();

    let i = fs.mkdir(ROOT_INO, b"i", 0o755, ROOT).unwrap().ino;
    let inside = file(&fs, i, "old", ROOT);
    fs.set_flags(i, fl::IMMUTABLE, ROOT).unwrap();
    let who = ROOT;
    let mode = libc::S_IFREG | 0o644;
    assert_eq!(eno(fs.mknod(i, b"new", mode, 0, who)), perm);
    assert_eq!(eno(fs.mkdir(i, b"new", 0o755, who)), perm);
    assert_eq!(eno(fs.symlink(i, b"new", b"x", who)), perm);
    assert_eq!(eno(fs.link(outside, i, b"new")), perm);
    assert_eq!(eno(fs.unlink(i, b"old")), perm);
    assert_eq!(eno(fs.rename(i, b"old", i, b"x", 0)), perm);
    assert_eq!(eno(fs.rename(a, b"new", i, b"x", 0)), perm);
    // An existing name still answers EEXIST first, as on ext4.
    assert_eq!(eno(fs.mknod(i, b"old", mode, 0, who)), libc::EEXIST);
    // The files inside are not immutable themselves.
    fs.write(inside, 0, b"still writable", None).unwrap();
}

#[test]
fn new_inodes_inherit_flags_and_noatime_keeps_atime() {
    let (_dev, fs) = mounted();
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap().ino;
    let all = fl::NOATIME | fl::NODUMP | fl::SYNC | fl::DIRSYNC | fl::APPEND | fl::TOPDIR;
    fs.set_flags(d, all, ROOT).unwrap();
    let f = file(&fs, d, "f", ROOT);
    assert_eq!(
        fs.get_flags(f).unwrap(),
        fl::NOATIME | fl::NODUMP | fl::SYNC
    );
    let sub = fs.mkdir(d, b"sub", 0o755, ROOT).unwrap().ino;
    assert_eq!(
        fs.get_flags(sub).unwrap(),
        fl::NOATIME | fl::NODUMP | fl::SYNC | fl::DIRSYNC
    );
    assert!(fs.is_sync(d) && fs.is_sync(f));
    assert!(
        fs.check_open(f, libc::O_RDWR).unwrap(),
        "S: synchronous writes"
    );

    fs.write(f, 0, b"data", None).unwrap();
    let old = Timespec { sec: 1000, nsec: 0 };
    let set_atime = SetAttr {
        atime: Some(SetTime::At(old)),
        ..SetAttr::default()
    };
    fs.setattr(f, &set_atime).unwrap();
    fs.read(f, 0, 4).unwrap();
    assert_eq!(fs.getattr(f).unwrap().atime, old, "noatime");
    fs.set_flags(f, 0, ROOT).unwrap();
    fs.read(f, 0, 4).unwrap();
    assert!(fs.getattr(f).unwrap().atime > old, "relatime without A");
}

/// The shutdown ioctl at the POSIX layer: root only; afterwards every call is EIO, the
/// device sees no write (not even at unmount), and a mount finds the last commit.
#[test]
fn going_down_stops_all_writes_and_keeps_the_last_commit() {
    for how in [GoingDown::Flush, GoingDown::LogFlush, GoingDown::NoLogFlush] {
        let (dev, fs) = mounted();
        let synced = file(&fs, ROOT_INO, "synced", ROOT);
        fs.write(synced, 0, b"durable", None).unwrap();
        fs.fsync(synced, false).unwrap();
        let pending = file(&fs, ROOT_INO, "pending", ROOT);
        fs.write(pending, 0, b"not committed", None).unwrap();
        assert_eq!(eno(fs.go_down(how, 1000)), libc::EPERM);
        fs.getattr(pending).unwrap();
        fs.go_down(how, 0).unwrap();
        let writes = dev.write_count();
        let image = dev.snapshot();
        let eio = libc::EIO;
        assert_eq!(eno(fs.getattr(synced)), eio);
        assert_eq!(eno(fs.lookup(ROOT_INO, b"synced")), eio);
        assert_eq!(eno(fs.read(synced, 0, 10)), eio);
        assert_eq!(eno(fs.write(synced, 0, b"x", None)), eio);
        assert_eq!(eno(fs.readdir(ROOT_INO, 0, 10)), eio);
        assert_eq!(eno(fs.mkdir(ROOT_INO, b"d", 0o755, ROOT)), eio);
        assert_eq!(eno(fs.fsync(synced, false)), eio);
        assert_eq!(eno(fs.sync()), eio);
        assert_eq!(eno(fs.getxattr(synced, b"user.a")), eio);
        fs.forget(pending, 1);
        fs.shutdown().unwrap();
        drop(fs);
        assert_eq!(
            dev.write_count(),
            writes,
            "{how:?}: a write after going down"
        );
        assert!(dev.snapshot() == image, "{how:?}: the image changed");
        let fs = Fs::mount(dev.clone(), MountOptions::default()).unwrap();
        let a = fs.lookup(ROOT_INO, b"synced").unwrap();
        assert_eq!(fs.read(a.ino, 0, 100).unwrap(), b"durable");
        let pending = fs.lookup(ROOT_INO, b"pending");
        match how {
            GoingDown::Flush => {
                let p = pending.unwrap();
                assert_eq!(fs.read(p.ino, 0, 100).unwrap(), b"not committed");
            }
            _ => assert_eq!(eno(pending), libc::ENOENT, "{how:?}"),
        }
    }
}

/// `RENAME_WHITEOUT`: the rename and a whiteout (a character device 0/0, no permission
/// bits, owned by the caller) at the source, in one change that survives a remount.
#[test]
fn rename_whiteout_leaves_a_whiteout() {
    let (dev, fs) = mounted();
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap().ino;
    let f = file(&fs, ROOT_INO, "f", ROOT);
    fs.write(f, 0, b"data", None).unwrap();
    fs.rename_whiteout(ROOT_INO, b"f", d, b"g", 0, USER)
        .unwrap();
    let w = fs.lookup(ROOT_INO, b"f").unwrap();
    assert_eq!(
        (w.kind, w.perm, w.rdev, w.uid, w.gid, w.nlink),
        (FileKind::CharDev, 0, 0, 1000, 1000, 1)
    );
    assert_ne!(w.ino, f);
    assert_eq!(fs.lookup(d, b"g").unwrap().ino, f);
    // Over an existing name; with NOREPLACE that is EEXIST and nothing changes.
    let h = file(&fs, ROOT_INO, "h", ROOT);
    assert_eq!(
        eno(fs.rename_whiteout(ROOT_INO, b"h", d, b"g", RENAME_NOREPLACE, ROOT)),
        libc::EEXIST
    );
    assert_eq!(fs.lookup(ROOT_INO, b"h").unwrap().ino, h);
    fs.rename_whiteout(ROOT_INO, b"h", d, b"g", 0, ROOT)
        .unwrap();
    assert_eq!(fs.lookup(d, b"g").unwrap().ino, h);
    assert_eq!(fs.lookup(ROOT_INO, b"h").unwrap().kind, FileKind::CharDev);
    // A directory leaves a whiteout too; an exchange cannot.
    fs.mkdir(ROOT_INO, b"sub", 0o755, ROOT).unwrap();
    fs.rename_whiteout(ROOT_INO, b"sub", d, b"sub", 0, ROOT)
        .unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"sub").unwrap().kind, FileKind::CharDev);
    assert_eq!(fs.lookup(d, b"sub").unwrap().kind, FileKind::Dir);
    assert_eq!(
        eno(fs.rename_whiteout(ROOT_INO, b"f", d, b"g", RENAME_EXCHANGE, ROOT)),
        libc::EINVAL
    );
    // An immutable source directory refuses, as any rename out of it.
    fs.set_flags(d, fl::IMMUTABLE, ROOT).unwrap();
    assert_eq!(
        eno(fs.rename_whiteout(d, b"g", ROOT_INO, b"g", 0, ROOT)),
        libc::EPERM
    );
    fs.set_flags(d, 0, ROOT).unwrap();
    let names = |fs: &Fs, dir| -> Vec<(Vec<u8>, FileKind)> {
        let mut v: Vec<_> = fs
            .readdir(dir, 0, 100)
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let before = (names(&fs, ROOT_INO), names(&fs, d));
    fs.shutdown().unwrap();
    drop(fs);
    let fs = Fs::mount(dev, MountOptions::default()).unwrap();
    assert_eq!((names(&fs, ROOT_INO), names(&fs, d)), before);
    let w = fs.lookup(ROOT_INO, b"f").unwrap();
    assert_eq!((w.kind, w.perm, w.rdev), (FileKind::CharDev, 0, 0));
}
