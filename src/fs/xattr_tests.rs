//! Extended attributes without a mount: sizes up to 64 KiB, flags, many per inode, the
//! parts of external values never outliving their xattr, ENOSPC, and a random model check.

use super::shared_tests::{mount, new_dev, remount, ROOT};
use super::*;
use crate::device::MemDevice;
use crate::format::{
    max_item_value, Key, FEATURE_INCOMPAT_XATTR_VALUES, KIND_XATTR_VALUE, XATTR_SIZE_MAX,
};
use crate::fsck::{fsck, FsckOptions, Status};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn create(fs: &Fs, name: &str) -> Ino {
    fs.mknod(ROOT_INO, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
        .ino
}

fn errno_of<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    r.expect_err("expected an error").errno()
}

fn value(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// The XATTR_VALUE items `ino` has.
fn parts(fs: &Fs, ino: Ino) -> usize {
    fs.lock()
        .meta
        .tree
        .range(
            &Key::new(ino, KIND_XATTR_VALUE, 0),
            &Key::new(ino, KIND_XATTR_VALUE, u64::MAX),
            usize::MAX,
        )
        .unwrap()
        .len()
}

fn names(fs: &Fs, ino: Ino) -> BTreeSet<Vec<u8>> {
    let list = fs.listxattr(ino).unwrap();
    assert_eq!(list.last(), if list.is_empty() { None } else { Some(&0) });
    let names: Vec<Vec<u8>> = list
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let set: BTreeSet<Vec<u8>> = names.iter().cloned().collect();
    assert_eq!(set.len(), names.len(), "a name listed twice");
    set
}

#[track_caller]
fn assert_fsck_clean(dev: &Arc<MemDevice>) {
    let r = fsck(dev.clone(), &FsckOptions { repair: false });
    assert_eq!(r.status, Status::Clean, "{}", r.to_text());
}

#[test]
fn values_up_to_64k_names_up_to_255_bytes() {
    let dev = new_dev(64);
    let mut fs = mount(&dev);
    let f = create(&fs, "f");
    let sizes = [0, 1, 2000, 4000, 4096, 60000, 65536];
    for (k, &n) in sizes.iter().enumerate() {
        let name = format!("user.v{n}");
        fs.setxattr(f, name.as_bytes(), &value(n, k as u8), 0)
            .unwrap();
        assert_eq!(fs.getxattr(f, name.as_bytes()).unwrap(), value(n, k as u8));
    }
    assert_eq!(
        errno_of(fs.setxattr(f, b"user.v65537", &value(65537, 0), 0)),
        libc::E2BIG
    );
    let long = [b"user.".to_vec(), vec![b'n'; 250]].concat();
    assert_eq!(long.len(), 255);
    fs.setxattr(f, &long, &value(65536, 9), 0).unwrap();
    let too_long = [long.clone(), b"x".to_vec()].concat();
    assert_eq!(errno_of(fs.setxattr(f, &too_long, b"1", 0)), libc::ERANGE);
    assert_eq!(errno_of(fs.getxattr(f, &too_long)), libc::ERANGE);
    assert_eq!(errno_of(fs.removexattr(f, &too_long)), libc::ERANGE);
    assert_eq!(errno_of(fs.getxattr(f, b"user.v65537")), libc::ENODATA);
    // The value too big for an item went out of line, and said so in the superblock.
    let part = max_item_value(fs.block_size());
    assert!(parts(&fs, f) >= 2 * 65536usize.div_ceil(part));
    assert_ne!(
        fs.lock().meta.sb.incompat & FEATURE_INCOMPAT_XATTR_VALUES,
        0
    );
    let want: BTreeSet<Vec<u8>> = sizes
        .iter()
        .map(|n| format!("user.v{n}").into_bytes())
        .chain([long.clone()])
        .collect();
    assert_eq!(names(&fs, f), want);
    // trusted.* names are listed to the privileged only.
    fs.setxattr(f, b"trusted.t", b"1", 0).unwrap();
    let all = fs.listxattr_as(f, true).unwrap();
    let unprivileged = fs.listxattr_as(f, false).unwrap();
    assert_eq!(all.len(), unprivileged.len() + b"trusted.t\0".len());
    assert!(!unprivileged.windows(8).any(|w| w == b"trusted."));
    fs.removexattr(f, b"trusted.t").unwrap();
    fs = remount(fs, &dev);
    for (k, &n) in sizes.iter().enumerate() {
        let name = format!("user.v{n}");
        assert_eq!(fs.getxattr(f, name.as_bytes()).unwrap(), value(n, k as u8));
    }
    assert_eq!(fs.getxattr(f, &long).unwrap(), value(65536, 9));
    assert_eq!(names(&fs, f), want);
    fs.shutdown().unwrap();
    assert_fsck_clean(&dev);
}

#[test]
fn create_and_replace_flags_as_ext4() {
    let dev = new_dev(64);
    let fs = mount(&dev);
    let f = create(&fs, "f");
    fs.setxattr(f, b"user.a", b"1", XATTR_CREATE).unwrap();
    for flags in [XATTR_CREATE, XATTR_CREATE | XATTR_REPLACE] {
        assert_eq!(
            errno_of(fs.setxattr(f, b"user.a", &value(65536, 1), flags)),
            libc::EEXIST
        );
    }
    for flags in [XATTR_REPLACE, XATTR_CREATE | XATTR_REPLACE] {
        assert_eq!(
            errno_of(fs.setxattr(f, b"user.b", &value(65536, 1), flags)),
            libc::ENODATA
        );
    }
    assert_eq!(fs.getxattr(f, b"user.a").unwrap(), b"1");
    assert_eq!(errno_of(fs.getxattr(f, b"user.b")), libc::ENODATA);
    assert_eq!(parts(&fs, f), 0, "a refused set writes nothing");
    // tiny -> 64 KiB -> tiny -> 64 KiB -> 5000, with the parts following.
    let ctime0 = fs.getattr(f).unwrap().ctime;
    fs.setxattr(f, b"user.a", &value(65536, 2), XATTR_REPLACE)
        .unwrap();
    let big = parts(&fs, f);
    assert_eq!(big, 65536usize.div_ceil(max_item_value(fs.block_size())));
    assert!(fs.getattr(f).unwrap().ctime >= ctime0);
    fs.setxattr(f, b"user.a", b"t", XATTR_REPLACE).unwrap();
    assert_eq!(parts(&fs, f), 0);
    assert_eq!(fs.getxattr(f, b"user.a").unwrap(), b"t");
    fs.setxattr(f, b"user.a", &value(65536, 3), XATTR_REPLACE)
        .unwrap();
    assert_eq!(parts(&fs, f), big);
    fs.setxattr(f, b"user.a", &value(5000, 4), 0).unwrap();
    assert!(parts(&fs, f) < big && parts(&fs, f) > 0);
    assert_eq!(fs.getxattr(f, b"user.a").unwrap(), value(5000, 4));
    fs.removexattr(f, b"user.a").unwrap();
    assert_eq!(parts(&fs, f), 0);
    assert_eq!(errno_of(fs.removexattr(f, b"user.a")), libc::ENODATA);
    assert!(names(&fs, f).is_empty());
    fs.shutdown().unwrap();
    assert_fsck_clean(&dev);
}

#[test]
fn get_and_put_for_callers_under_the_lock() {
    let dev = new_dev(64);
    let fs = mount(&dev);
    let f = create(&fs, "f");
    {
        let mut st = fs.lock();
        assert_eq!(xattr::get(&mut st, f, b"system.x").unwrap(), None);
        xattr::put(&mut st, f, b"system.x", None).unwrap();
        xattr::put(&mut st, f, b"system.x", Some(&value(30000, 1))).unwrap();
        assert_eq!(
            xattr::get(&mut st, f, b"system.x").unwrap(),
            Some(value(30000, 1))
        );
        assert_eq!(
            xattr::put(&mut st, f, b"system.y", Some(&value(65537, 1)))
                .unwrap_err()
                .errno(),
            libc::E2BIG
        );
        assert_eq!(
            xattr::get(&mut st, 12345, b"system.x").unwrap_err().errno(),
            libc::ENOENT
        );
    }
    assert_eq!(fs.getxattr(f, b"system.x").unwrap(), value(30000, 1));
    {
        let mut st = fs.lock();
        xattr::put(&mut st, f, b"system.x", None).unwrap();
    }
    assert_eq!(parts(&fs, f), 0);
    assert_eq!(errno_of(fs.getxattr(f, b"system.x")), libc::ENODATA);
}

#[test]
fn deleting_a_file_or_killing_privileges_removes_the_parts() {
    let dev = new_dev(64);
    let fs = mount(&dev);
    let f = create(&fs, "f");
    fs.setxattr(f, b"user.big", &value(65536, 1), 0).unwrap();
    fs.setxattr(f, b"security.capability", &value(20000, 2), 0)
        .unwrap();
    let before = parts(&fs, f);
    // An unprivileged write drops security.capability, its parts with it.
    fs.write(
        f,
        0,
        b"x",
        Some(Caller {
            uid: 1000,
            gid: 1000,
            ..ROOT
        }),
    )
    .unwrap();
    assert_eq!(
        errno_of(fs.getxattr(f, b"security.capability")),
        libc::ENODATA
    );
    assert_eq!(
        parts(&fs, f),
        65536usize.div_ceil(max_item_value(fs.block_size()))
    );
    assert!(parts(&fs, f) < before);
    // Open-unlinked: the parts stay until the last reference goes, then go with the inode.
    fs.open(f).unwrap();
    fs.unlink(ROOT_INO, b"f").unwrap();
    assert_eq!(fs.getxattr(f, b"user.big").unwrap(), value(65536, 1));
    fs.release(f);
    fs.forget(f, 1);
    assert_eq!(parts(&fs, f), 0);
    let left = fs
        .lock()
        .meta
        .tree
        .range(&Key::new(f, 0, 0), &Key::new(f, u8::MAX, u64::MAX), 10)
        .unwrap();
    assert!(left.is_empty());
    fs.shutdown().unwrap();
    assert_fsck_clean(&dev);
}

#[test]
fn many_xattrs_on_one_inode() {
    let dev = new_dev(64);
    let mut fs = mount(&dev);
    let f = create(&fs, "f");
    for k in 0..300u32 {
        let name = format!("user.attr{k:04}");
        fs.setxattr(f, name.as_bytes(), &value(1024, k as u8), 0)
            .unwrap();
    }
    for k in 0..20u32 {
        let name = format!("user.big{k:02}");
        fs.setxattr(f, name.as_bytes(), &value(65536, k as u8), 0)
            .unwrap();
    }
    fs = remount(fs, &dev);
    assert_eq!(names(&fs, f).len(), 320);
    assert_eq!(fs.listxattr(f).unwrap().len(), 300 * 14 + 20 * 11);
    for k in 0..300u32 {
        let name = format!("user.attr{k:04}");
        assert_eq!(
            fs.getxattr(f, name.as_bytes()).unwrap(),
            value(1024, k as u8)
        );
    }
    for k in 0..20u32 {
        let name = format!("user.big{k:02}");
        assert_eq!(
            fs.getxattr(f, name.as_bytes()).unwrap(),
            value(65536, k as u8)
        );
    }
    fs.shutdown().unwrap();
    assert_fsck_clean(&dev);
}

#[test]
fn big_values_stop_at_enospc_and_every_commit_still_fits() {
    let dev = new_dev(16);
    let mut fs = mount(&dev);
    let f = create(&fs, "f");
    let mut set = 0;
    loop {
        let name = format!("user.big{set:03}");
        match fs.setxattr(f, name.as_bytes(), &value(65536, set as u8), 0) {
            Ok(()) => set += 1,
            Err(e) => {
                assert_eq!(e.errno(), libc::ENOSPC);
                break;
            }
        }
        assert!(
            set < 1000,
            "a 16 MiB filesystem took {set} values of 64 KiB"
        );
    }
    // Most of the device went to values before ENOSPC (each is 33 parts of a 4 KiB block's
    // item, written twice under DUP: 16 MiB holds about 60 at most).
    eprintln!("{set} values of 64 KiB fit a 16 MiB filesystem");
    assert!(set > 30, "only {set} values fit");
    // The refused value left nothing behind, the commit fits, and small changes still work.
    fs.sync().unwrap();
    fs.setxattr(f, b"user.small", b"s", 0).unwrap();
    fs.removexattr(f, b"user.big000").unwrap();
    fs.sync().unwrap();
    fs = remount(fs, &dev);
    assert_eq!(names(&fs, f).len(), set);
    for k in 1..set {
        let name = format!("user.big{k:03}");
        assert_eq!(
            fs.getxattr(f, name.as_bytes()).unwrap(),
            value(65536, k as u8)
        );
    }
    // Deleting the file gives the space back: as many values fit again.
    fs.unlink(ROOT_INO, b"f").unwrap();
    fs.sync().unwrap();
    let g = create(&fs, "g");
    for k in 0..set - 1 {
        let name = format!("user.big{k:03}");
        fs.setxattr(g, name.as_bytes(), &value(65536, 0), 0)
            .unwrap();
    }
    fs.shutdown().unwrap();
    assert_fsck_clean(&dev);
}

#[derive(Clone, Debug)]
enum Op {
    Set {
        name: usize,
        len: usize,
        seed: u8,
        flags: i32,
    },
    Remove {
        name: usize,
    },
}

fn model_names() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (0..6).map(|k| format!("user.n{k}").into_bytes()).collect();
    v.push([b"trusted.".to_vec(), vec![b'z'; 247]].concat());
    v
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![
        0..64usize,
        0..4100usize,
        60000..=XATTR_SIZE_MAX,
        0..=XATTR_SIZE_MAX,
    ];
    let flags = prop_oneof![
        3 => Just(0),
        1 => Just(XATTR_CREATE),
        1 => Just(XATTR_REPLACE),
    ];
    prop_oneof![
        4 => (0..7usize, len, any::<u8>(), flags).prop_map(|(name, len, seed, flags)| Op::Set {
            name,
            len,
            seed,
            flags
        }),
        1 => (0..7usize).prop_map(|name| Op::Remove { name }),
    ]
}

/// The filesystem's xattrs of `ino` against the model's.
fn compare(fs: &Fs, ino: Ino, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let want: BTreeSet<Vec<u8>> = model.keys().cloned().collect();
    assert_eq!(names(fs, ino), want);
    for (n, v) in model {
        assert_eq!(&fs.getxattr(ino, n).unwrap(), v);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random sets, replaces and removes of names and sizes 0..=65536 on two files, against a
    /// map; then remount and compare, and fsck.
    #[test]
    fn random_xattrs_match_a_model(ops in proptest::collection::vec((0..2usize, op()), 1..40)) {
        let dev = new_dev(64);
        let mut fs = mount(&dev);
        let files = [create(&fs, "a"), create(&fs, "b")];
        let names = model_names();
        let mut models = [BTreeMap::new(), BTreeMap::new()];
        for (file, op) in ops {
            let (ino, model) = (files[file], &mut models[file]);
            match op {
                Op::Set { name, len, seed, flags } => {
                    let n = &names[name];
                    let exists = model.contains_key(n);
                    let want = if flags == XATTR_CREATE && exists {
                        Err(libc::EEXIST)
                    } else if flags == XATTR_REPLACE && !exists {
                        Err(libc::ENODATA)
                    } else {
                        Ok(())
                    };
                    let v = value(len, seed);
                    let got = fs.setxattr(ino, n, &v, flags).map_err(|e| e.errno());
                    prop_assert_eq!(got, want);
                    if want.is_ok() {
                        model.insert(n.clone(), v);
                    }
                }
                Op::Remove { name } => {
                    let n = &names[name];
                    let want = if model.remove(n).is_some() { Ok(()) } else { Err(libc::ENODATA) };
                    prop_assert_eq!(fs.removexattr(ino, n).map_err(|e| e.errno()), want);
                }
            }
        }
        for (ino, model) in files.iter().zip(&models) {
            compare(&fs, *ino, model);
        }
        fs = remount(fs, &dev);
        for (ino, model) in files.iter().zip(&models) {
            compare(&fs, *ino, model);
        }
        fs.shutdown().unwrap();
        drop(fs);
        assert_fsck_clean(&dev);
    }
}
