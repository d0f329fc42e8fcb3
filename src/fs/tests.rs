//! The POSIX layer without a mount: `Fs` over a `MemDevice`.

use super::shared_tests::{mount, new_dev, remount, ROOT};
use super::*;
use crate::device::MemDevice;
use crate::mkfs::{mkfs, MkfsOptions};

fn create(fs: &Fs, parent: Ino, name: &str) -> Ino {
    let a = fs
        .mknod(parent, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap();
    a.ino
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn write_read_remount_unaligned() {
    let dev = new_dev(64);
    let mut fs = mount(&dev);
    let f = create(&fs, ROOT_INO, "a");
    let data = pattern(100_000, 7);
    fs.write(f, 0, &data, None).unwrap();
    fs.write(f, 5000, b"hello", None).unwrap();
    let mut expect = data.clone();
    expect[5000..5005].copy_from_slice(b"hello");
    assert_eq!(fs.read(f, 0, 200_000).unwrap(), expect);
    fs.sync().unwrap();
    // After commit the data comes from the device, verified.
    assert_eq!(fs.read(f, 4090, 20).unwrap(), expect[4090..4110]);
    fs.write(f, 4095, b"XY", None).unwrap();
    expect[4095..4097].copy_from_slice(b"XY");
    fs = remount(fs, &dev);
    let a = fs.lookup(ROOT_INO, b"a").unwrap();
    assert_eq!(a.size, 100_000);
    assert_eq!(fs.read(a.ino, 0, 200_000).unwrap(), expect);
    assert_eq!(fs.counters().checksum_errors, 0);
}

#[test]
fn sparse_files_and_truncate() {
    let dev = new_dev(64);
    let mut fs = mount(&dev);
    let f = create(&fs, ROOT_INO, "s");
    let off = 5u64 << 32; // beyond 4 GiB
    fs.write(f, off, b"end", None).unwrap();
    fs.sync().unwrap();
    let a = fs.getattr(f).unwrap();
    assert_eq!(a.size, off + 3);
    assert_eq!(a.blocks, 8, "one 4 KiB block allocated, holes take none");
    assert_eq!(fs.read(f, 12345, 10).unwrap(), vec![0; 10]);
    assert_eq!(fs.read(f, off - 2, 10).unwrap(), b"\0\0end".to_vec());
    // Truncate down into a block, then up again: the cut-off bytes read as zeros.
    fs.write(f, 0, &pattern(10_000, 1), None).unwrap();
    fs.setattr(
        f,
        &SetAttr {
            size: Some(5000),
            ..Default::default()
        },
    )
    .unwrap();
    fs.setattr(
        f,
        &SetAttr {
            size: Some(9000),
            ..Default::default()
        },
    )
    .unwrap();
    let got = fs.read(f, 0, 9000).unwrap();
    assert_eq!(got[..5000], pattern(10_000, 1)[..5000]);
    assert!(got[5000..].iter().all(|&b| b == 0));
    fs = remount(fs, &dev);
    let got2 = fs.read(f, 0, 9000).unwrap();
    assert_eq!(got, got2);
    assert_eq!(fs.getattr(f).unwrap().blocks, 8 * 2);
}

#[test]
fn space_comes_back_after_delete() {
    let dev = new_dev(64);
    let fs = mount(&dev);
    let before = fs.statfs().unwrap().bfree;
    let f = create(&fs, ROOT_INO, "big");
    fs.write(f, 0, &vec![1u8; 8 << 20], None).unwrap();
    fs.sync().unwrap();
    assert!(fs.statfs().unwrap().bfree <= before - 2048);
    fs.unlink(ROOT_INO, b"big").unwrap();
    fs.forget(f, 1);
    fs.sync().unwrap();
    fs.sync().unwrap();
    let after = fs.statfs().unwrap().bfree;
    assert!(after + 16 >= before, "before {before} after {after}");
}

#[test]
fn unlinked_open_file_lives_until_release() {
    let dev = new_dev(64);
    let mut fs = mount(&dev);
    let f = create(&fs, ROOT_INO, "tmp");
    fs.open(f).unwrap();
    fs.write(f, 0, b"still here", None).unwrap();
    fs.unlink(ROOT_INO, b"tmp").unwrap();
    fs.forget(f, 1);
    assert_eq!(fs.read(f, 0, 100).unwrap(), b"still here");
    assert_eq!(fs.getattr(f).unwrap().nlink, 0);
    fs.sync().unwrap();
    assert_eq!(fs.read(f, 0, 100).unwrap(), b"still here");
    fs.release(f);
    assert!(matches!(fs.getattr(f), Err(Error::Errno(libc::ENOENT))));
    // An orphan left by a crash (no release) is deleted at the next mount.
    let g = create(&fs, ROOT_INO, "tmp2");
    fs.open(g).unwrap();
    fs.unlink(ROOT_INO, b"tmp2").unwrap();
    fs.sync().unwrap();
    drop(fs); // no shutdown: as if the daemon died
    fs = mount(&dev);
    assert!(matches!(fs.getattr(g), Err(Error::Errno(libc::ENOENT))));
}

#[test]
fn directories_rename_and_links() {
    let dev = new_dev(64);
    let fs = mount(&dev);
    let d1 = fs.mkdir(ROOT_INO, b"d1", 0o755, ROOT).unwrap().ino;
    let d2 = fs.mkdir(ROOT_INO, b"d2", 0o755, ROOT).unwrap().ino;
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 4);
    let f = create(&fs, d1, "f");
    assert!(matches!(
        fs.rmdir(ROOT_INO, b"d1"),
        Err(Error::Errno(libc::ENOTEMPTY))
    ));
    fs.link(f, d2, b"hard").unwrap();
    assert_eq!(fs.getattr(f).unwrap().nlink, 2);
    fs.rename(d1, b"f", d2, b"g", 0).unwrap();
    assert!(fs.lookup(d1, b"f").is_err());
    assert_eq!(fs.lookup(d2, b"g").unwrap().ino, f);
    // Over an existing file: the old target loses a link.
    let h = create(&fs, d2, "h");
    fs.rename(d2, b"g", d2, b"h", 0).unwrap();
    assert!(matches!(fs.getattr(h), Ok(a) if a.nlink == 0));
    // NOREPLACE and EXCHANGE.
    create(&fs, d2, "x");
    assert!(matches!(
        fs.rename(d2, b"h", d2, b"x", RENAME_NOREPLACE),
        Err(Error::Errno(libc::EEXIST))
    ));
    fs.rename(d2, b"h", d2, b"x", RENAME_EXCHANGE).unwrap();
    assert_eq!(fs.lookup(d2, b"x").unwrap().ino, f);
    // A directory into itself.
    let sub = fs.mkdir(d1, b"sub", 0o755, ROOT).unwrap().ino;
    assert!(matches!(
        fs.rename(ROOT_INO, b"d1", sub, b"loop", 0),
        Err(Error::Errno(libc::EINVAL))
    ));
    // Over an empty directory, across parents: link counts follow.
    fs.rename(d1, b"sub", ROOT_INO, b"d2", 0).unwrap_err();
    let e = fs.mkdir(ROOT_INO, b"empty", 0o755, ROOT).unwrap().ino;
    fs.rename(d1, b"sub", ROOT_INO, b"empty", 0).unwrap();
    assert_eq!(fs.getattr(d1).unwrap().nlink, 2);
    assert_eq!(fs.lookup(ROOT_INO, b"empty").unwrap().ino, sub);
    assert!(fs.getattr(e).map(|a| a.nlink == 0).unwrap_or(true));
    let dots = fs.readdir(sub, 0, 10).unwrap();
    assert_eq!(dots[1].ino, ROOT_INO);
    // Names.
    let long = vec![b'n'; 256];
    assert!(matches!(
        fs.mknod(ROOT_INO, &long, libc::S_IFREG, 0, ROOT),
        Err(Error::Errno(libc::ENAMETOOLONG))
    ));
    fs.mknod(ROOT_INO, &long[..255], libc::S_IFREG, 0, ROOT)
        .unwrap();
    fs.symlink(ROOT_INO, b"sl", &vec![b'a'; 4000], ROOT)
        .unwrap();
    let sl = fs.lookup(ROOT_INO, b"sl").unwrap().ino;
    assert_eq!(fs.readlink(sl).unwrap(), vec![b'a'; 4000]);
}

#[test]
fn readdir_cookies_survive_changes() {
    let dev = new_dev(64);
    let fs = mount(&dev);
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap().ino;
    for i in 0..300 {
        create(&fs, d, &format!("f{i}"));
    }
    let first = fs.readdir(d, 0, 100).unwrap();
    let cookie = first.last().unwrap().cookie;
    // Remove entries already returned and some not yet returned; add new ones.
    for i in 0..50 {
        fs.unlink(d, format!("f{i}").as_bytes()).unwrap();
    }
    fs.unlink(d, b"f200").unwrap();
    create(&fs, d, "new");
    let mut rest = Vec::new();
    let mut c = cookie;
    loop {
        let batch = fs.readdir(d, c, 64).unwrap();
        let Some(last) = batch.last() else { break };
        c = last.cookie;
        rest.extend(batch);
    }
    let names: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|e| String::from_utf8(e.name.clone()).unwrap())
        .collect();
    for i in 0..300 {
        let n = format!("f{i}");
        let seen = names.iter().filter(|x| **x == n).count();
        if i == 200 {
            assert_eq!(seen, 0);
        } else {
            assert_eq!(seen, 1, "{n} seen {seen} times");
        }
    }
    assert!(names.contains(&"new".to_string()));
}

#[test]
fn many_entries_lookup() {
    let dev = new_dev(256);
    let mut fs = mount(&dev);
    let d = fs.mkdir(ROOT_INO, b"big", 0o755, ROOT).unwrap().ino;
    for i in 0..20_000 {
        create(&fs, d, &format!("entry-{i:06}"));
    }
    fs = remount(fs, &dev);
    for i in (0..20_000).step_by(997) {
        fs.lookup(d, format!("entry-{i:06}").as_bytes()).unwrap();
    }
    assert!(fs.lookup(d, b"entry-999999").is_err());
}

#[test]
fn xattrs() {
    let dev = new_dev(64);
    let mut fs = mount(&dev);
    let f = create(&fs, ROOT_INO, "x");
    fs.setxattr(f, b"user.a", b"1", 0).unwrap();
    assert!(matches!(
        fs.setxattr(f, b"user.a", b"2", XATTR_CREATE),
        Err(Error::Errno(libc::EEXIST))
    ));
    assert!(matches!(
        fs.setxattr(f, b"user.b", b"2", XATTR_REPLACE),
        Err(Error::Errno(libc::ENODATA))
    ));
    fs.setxattr(f, b"user.a", b"3", XATTR_REPLACE).unwrap();
    fs.setxattr(f, b"user.b", &[9; 1000], XATTR_CREATE).unwrap();
    fs = remount(fs, &dev);
    assert_eq!(fs.getxattr(f, b"user.a").unwrap(), b"3");
    assert_eq!(
        fs.listxattr(f)
            .unwrap()
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .count(),
        2
    );
    fs.removexattr(f, b"user.a").unwrap();
    assert!(matches!(
        fs.getxattr(f, b"user.a"),
        Err(Error::Errno(libc::ENODATA))
    ));
    assert!(matches!(
        fs.removexattr(f, b"user.a"),
        Err(Error::Errno(libc::ENODATA))
    ));
}

#[test]
fn corrupted_data_block_gives_eio_not_bytes() {
    let dev = new_dev(64);
    let fs = mount(&dev);
    let f = create(&fs, ROOT_INO, "c");
    let mut data = pattern(64 << 10, 3);
    data[20_000..20_008].copy_from_slice(b"MARKER!!");
    fs.write(f, 0, &data, None).unwrap();
    let g = create(&fs, ROOT_INO, "other");
    fs.write(g, 0, &pattern(10_000, 9), None).unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    let img = dev.snapshot();
    let at = img.windows(8).position(|w| w == b"MARKER!!").unwrap();
    dev.poke(at as u64 + 3, b"m");
    let fs = mount(&dev);
    let bad_block = 20_000 / 4096;
    assert!(matches!(
        fs.read(f, 20_000, 10),
        Err(Error::Errno(libc::EIO))
    ));
    assert!(matches!(
        fs.read(f, 0, 1 << 20),
        Err(Error::Errno(libc::EIO))
    ));
    assert_eq!(fs.counters().checksum_errors, 2);
    // Every other block of the file and the other file read fine.
    for b in 0..16u64 {
        if b != bad_block {
            assert_eq!(
                fs.read(f, b * 4096, 4096).unwrap(),
                data[(b * 4096) as usize..((b + 1) * 4096) as usize]
            );
        }
    }
    assert_eq!(fs.read(g, 0, 20_000).unwrap(), pattern(10_000, 9));
}

/// Where `needle` is in a live tree node of the last commit: its byte offset in the node's
/// first copy and in its second (DUP). Blocks the commit no longer references may hold old
/// versions too; those do not count.
fn in_live_node(dev: &Arc<MemDevice>, needle: &[u8]) -> (u64, u64) {
    let mut meta = crate::txn::Meta::open(dev.clone(), false).unwrap();
    let bs = u64::from(meta.sb.block_size);
    let mut found = None;
    meta.tree
        .walk(&mut |v| {
            if let crate::tree::Visit::Node { ptr, .. } = v {
                let block = dev.peek(ptr.addr.0 * bs, bs as usize);
                if let Some(i) = block.windows(needle.len()).position(|w| w == needle) {
                    let copy = ptr.copy_addr.expect("DUP by default").0;
                    found.get_or_insert((ptr.addr.0 * bs + i as u64, copy * bs + i as u64));
                }
            }
            Ok(())
        })
        .unwrap();
    found.expect("the name is in some node")
}

/// A filesystem of one directory with 400 small files, unmounted.
fn four_hundred_files(dev: &Arc<MemDevice>) -> Ino {
    let fs = mount(dev);
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap().ino;
    for i in 0..400 {
        let f = create(&fs, d, &format!("file-with-a-longish-name-{i}"));
        fs.write(f, 0, format!("content {i}").as_bytes(), None)
            .unwrap();
    }
    fs.shutdown().unwrap();
    d
}

#[test]
fn one_bad_metadata_copy_is_served_from_the_other_and_rewritten() {
    let dev = new_dev(64);
    let d = four_hundred_files(&dev);
    let name = b"file-with-a-longish-name-123";
    let (first, second) = in_live_node(&dev, name);
    assert!(
        first.abs_diff(second) >= 16 << 20,
        "copies far apart: {first} {second}"
    );
    let all_there = |fs: &Fs| {
        for i in 0..400 {
            let a = fs
                .lookup(d, format!("file-with-a-longish-name-{i}").as_bytes())
                .unwrap();
            assert_eq!(
                fs.read(a.ino, 0, 100).unwrap(),
                format!("content {i}").as_bytes()
            );
        }
    };
    // Mounts read the first copy: a bad one is served from the second and rewritten.
    dev.poke(first, b"X");
    let fs = Fs::mount(dev.clone(), MountOptions::default()).unwrap();
    assert!(!fs.is_read_only());
    all_there(&fs);
    let c = fs.counters();
    assert_eq!((c.metadata_bad_copies, c.metadata_repairs), (1, 1));
    assert_eq!(c.checksum_errors, 0);
    drop(fs);
    assert_eq!(dev.peek(first, name.len()), name.to_vec(), "healed");
    // A bad second copy is not read while the first is good (finding it is the work of
    // scrub and fsck): the mount works as if nothing were wrong.
    dev.poke(second, b"X");
    let fs = Fs::mount(dev.clone(), MountOptions::default()).unwrap();
    all_there(&fs);
    let c = fs.counters();
    assert_eq!((c.metadata_bad_copies, c.metadata_repairs), (0, 0));
    drop(fs);
    dev.poke(second, &name[..1]);
    // A read-only mount uses the good copy but writes nothing.
    dev.poke(first, b"X");
    let ro = MountOptions {
        read_only: true,
        ..MountOptions::default()
    };
    let fs = Fs::mount(dev.clone(), ro).unwrap();
    assert!(fs.lookup(d, name).is_ok());
    assert_eq!(fs.counters().metadata_repairs, 0);
    drop(fs);
    assert_eq!(dev.peek(first, 1), b"X".to_vec());
}

#[test]
fn corrupted_metadata_mounts_read_only_and_reports() {
    let dev = new_dev(64);
    let d = four_hundred_files(&dev);
    // Damage one leaf (not the root) in both of its copies (DUP): find the node blocks
    // holding a known name.
    let (first, second) = in_live_node(&dev, b"file-with-a-longish-name-123");
    dev.poke(first, b"X");
    dev.poke(second, b"X");
    let fs = Fs::mount(dev.clone(), MountOptions::default()).unwrap();
    assert!(fs.is_read_only());
    let mut ok = 0;
    let mut eio = 0;
    for i in 0..400 {
        match fs.lookup(d, format!("file-with-a-longish-name-{i}").as_bytes()) {
            Ok(a) => {
                assert_eq!(
                    fs.read(a.ino, 0, 100).unwrap(),
                    format!("content {i}").as_bytes()
                );
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.errno(), libc::EIO, "{e}");
                eio += 1;
            }
        }
    }
    assert!(eio > 0 && ok > 0, "ok {ok} eio {eio}");
    assert!(matches!(
        fs.mknod(ROOT_INO, b"new", libc::S_IFREG, 0, ROOT),
        Err(Error::Errno(libc::EROFS))
    ));
}

#[test]
fn garbage_and_foreign_images_are_refused() {
    let dev = Arc::new(MemDevice::new(64 << 20, 512));
    assert!(Fs::mount(dev.clone(), MountOptions::default()).is_err());
    dev.poke(1080, &0xEF53u16.to_le_bytes());
    let e = mkfs(dev.clone(), &MkfsOptions::default()).unwrap_err();
    assert!(e.to_string().contains("ext2/ext3/ext4"), "{e}");
    mkfs(
        dev.clone(),
        &MkfsOptions {
            force: true,
            ..Default::default()
        },
    )
    .unwrap();
    let e = mkfs(dev.clone(), &MkfsOptions::default()).unwrap_err();
    assert!(e.to_string().contains("stablefs"), "{e}");
    mount(&dev).shutdown().unwrap();
}

#[test]
fn quiet_changes_are_committed_after_idle_commit() {
    let dev = new_dev(32);
    let idle = |ms| {
        Fs::mount(
            dev.clone(),
            MountOptions {
                idle_commit_ms: ms,
                commit_interval_secs: 3600,
                ..MountOptions::default()
            },
        )
        .unwrap()
    };
    // Off: nothing commits a change but an explicit sync.
    let fs = idle(0);
    let f = create(&fs, ROOT_INO, "a");
    fs.write(f, 0, &pattern(10_000, 1), None).unwrap();
    let commits = fs.counters().commits;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fs.counters().commits, commits);
    fs.shutdown().unwrap();
    drop(fs);
    // 20 ms: a burst of changes is committed once it has paused, not during it.
    let fs = idle(20);
    let start = fs.counters().commits;
    for k in 0..10u8 {
        fs.write(f, u64::from(k) * 1000, &pattern(1000, k), None)
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fs.counters().commits == start {
        assert!(std::time::Instant::now() < deadline, "no idle commit");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Quiet since: no further commits.
    let after = fs.counters().commits;
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(fs.counters().commits, after, "commits without changes");
    // Durable: a crash (no shutdown) keeps the data.
    drop(fs);
    let fs = mount(&dev);
    let a = fs.lookup(ROOT_INO, b"a").unwrap();
    assert_eq!(fs.read(a.ino, 0, 100).unwrap().len(), 100);
    assert_eq!(fs.read(a.ino, 9000, 1000).unwrap(), pattern(1000, 9));
}

#[test]
fn unprivileged_changes_drop_privileges() {
    let dev = new_dev(64);
    let fs = mount(&dev);
    let user = |uid, gid| Caller { uid, gid, ..ROOT };
    let mode_of = |ino| fs.getattr(ino).unwrap().perm as u32;
    let cap = b"security.capability";
    let file = |name: &str, perm: u32, gid: u32| {
        let ino = create(&fs, ROOT_INO, name);
        let set = SetAttr {
            mode: Some(perm),
            gid: Some(gid),
            ..SetAttr::default()
        };
        fs.setattr(ino, &set).unwrap();
        // chown clears the bits: set them again.
        fs.setattr(
            ino,
            &SetAttr {
                mode: Some(perm),
                ..SetAttr::default()
            },
        )
        .unwrap();
        fs.setxattr(ino, cap, &[1, 0, 0, 2, 0, 0, 0, 0], 0).unwrap();
        ino
    };
    // Root keeps everything.
    let a = file("a", 0o6777, 0);
    fs.write(a, 0, b"x", None).unwrap();
    assert_eq!(mode_of(a), 0o6777);
    assert!(fs.getxattr(a, cap).is_ok());
    // Group-execute set: both bits and the capability go.
    fs.write(a, 0, b"x", Some(user(1000, 0))).unwrap();
    assert_eq!(mode_of(a), 0o0777);
    assert_eq!(fs.getxattr(a, cap).unwrap_err().errno(), libc::ENODATA);
    // No group-execute: set-group-ID goes only for a caller outside the group.
    let b = file("b", 0o6766, 5);
    fs.write(b, 0, b"x", Some(user(1000, 5))).unwrap();
    assert_eq!(mode_of(b), 0o2766);
    let c = file("c", 0o6766, 5);
    fs.fallocate(c, 0, 4096, 0).unwrap();
    assert_eq!(
        mode_of(c),
        0o6766,
        "fallocate itself drops nothing: the adapter asks"
    );
    fs.drop_privileges(c, &user(1000, 6)).unwrap();
    assert_eq!(mode_of(c), 0o0766);
    // An unprivileged truncate; a chown by root clears set-user-ID and the capability but
    // keeps set-group-ID without group-execute.
    let d = file("d", 0o6766, 5);
    let truncate = SetAttr {
        size: Some(0),
        who: Some(user(7, 7)),
        kill_suidgid: true,
        ..SetAttr::default()
    };
    fs.setattr(d, &truncate).unwrap();
    assert_eq!(mode_of(d), 0o0766);
    let e = file("e", 0o6766, 5);
    let chown = SetAttr {
        uid: Some(1000),
        who: Some(ROOT),
        ..SetAttr::default()
    };
    fs.setattr(e, &chown).unwrap();
    assert_eq!(mode_of(e), 0o2766);
    assert_eq!(fs.getxattr(e, cap).unwrap_err().errno(), libc::ENODATA);
    // Directories keep their bits.
    let dir = fs.mkdir(ROOT_INO, b"dir", 0o2777, ROOT).unwrap().ino;
    fs.setattr(dir, &chown).unwrap();
    assert_eq!(mode_of(dir), 0o2777);
}

#[test]
fn umask_or_default_acl_decides_a_new_node_mode() {
    use super::acl::{Acl, ACCESS, DEFAULT};
    let dev = new_dev(64);
    let fs = mount(&dev);
    let who = Caller {
        umask: 0o077,
        ..ROOT
    };
    let perm = |ino| fs.getattr(ino).unwrap().perm as u32;
    // No default ACL: the umask clears permission bits only.
    let a = fs
        .mknod(ROOT_INO, b"a", libc::S_IFREG | 0o4777, 0, who)
        .unwrap();
    assert_eq!(perm(a.ino), 0o4700);
    let link = fs.symlink(ROOT_INO, b"l", b"a", who).unwrap();
    assert_eq!(perm(link.ino), 0o777, "symlinks are always 0777");
    // A default ACL replaces the umask; a directory inherits it.
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap().ino;
    let mut default = vec![2, 0, 0, 0];
    for (tag, perm, id) in [
        (1u16, 7u16, u32::MAX),
        (2, 6, 1000),
        (4, 5, u32::MAX),
        (16, 7, u32::MAX),
        (32, 5, u32::MAX),
    ] {
        default.extend_from_slice(&tag.to_le_bytes());
        default.extend_from_slice(&perm.to_le_bytes());
        default.extend_from_slice(&id.to_le_bytes());
    }
    fs.setxattr(d, DEFAULT, &default, 0).unwrap();
    let f = fs
        .mknod(d, b"f", libc::S_IFREG | 0o666, 0, who)
        .unwrap()
        .ino;
    assert_eq!(
        perm(f),
        0o664,
        "owner rw, mask rw (the group class), other r"
    );
    let access = Acl::decode(&fs.getxattr(f, ACCESS).unwrap()).unwrap();
    assert_eq!(access.equiv_mode(), (0o664, false));
    assert_eq!(fs.getxattr(f, DEFAULT).unwrap_err().errno(), libc::ENODATA);
    let sub = fs.mkdir(d, b"sub", 0o777, who).unwrap().ino;
    assert_eq!(fs.getxattr(sub, DEFAULT).unwrap(), default);
    // chmod moves the mask, not the owning group's entry; setting a plain ACL drops it.
    let chmod = SetAttr {
        mode: Some(0o640),
        ..SetAttr::default()
    };
    fs.setattr(f, &chmod).unwrap();
    let access = Acl::decode(&fs.getxattr(f, ACCESS).unwrap()).unwrap();
    assert_eq!(access.equiv_mode(), (0o640, false));
    let plain = [
        2, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255, 4, 0, 4, 0, 255, 255, 255, 255, 32, 0, 0, 0,
        255, 255, 255, 255,
    ];
    fs.setxattr(f, ACCESS, &plain, 0).unwrap();
    assert_eq!(perm(f), 0o640);
    assert_eq!(fs.getxattr(f, ACCESS).unwrap_err().errno(), libc::ENODATA);
    // Remount: all of it was on disk.
    let fs = remount(fs, &dev);
    assert_eq!(fs.getxattr(sub, DEFAULT).unwrap(), default);
}

#[test]
fn space_freed_since_the_last_commit_is_found_without_enospc() {
    // Copy-on-write: blocks freed since the last commit (here: a truncate) stay taken until
    // the next commit is durable. A write that needs them must commit first, not fail.
    let dev = new_dev(64);
    let quiet = MountOptions {
        idle_commit_ms: 0,
        commit_interval_secs: 3600,
        ..MountOptions::default()
    };
    let fs = Fs::mount(dev.clone(), quiet).unwrap();
    let chunk = pattern(1 << 20, 7);
    let a = create(&fs, ROOT_INO, "a");
    for k in 0..40u64 {
        fs.write(a, k << 20, &chunk, None).unwrap();
    }
    fs.sync().unwrap();
    let commits = fs.counters().commits;
    let truncate = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    fs.setattr(a, &truncate).unwrap();
    let b = create(&fs, ROOT_INO, "b");
    for k in 0..40u64 {
        fs.write(b, k << 20, &chunk, None)
            .unwrap_or_else(|e| panic!("write of MiB {k}: {e}"));
    }
    assert!(
        fs.counters().commits > commits,
        "the write committed to find room"
    );
    assert_eq!(fs.read(b, 39 << 20, 1 << 20).unwrap(), chunk);
    fs.shutdown().unwrap();
}
