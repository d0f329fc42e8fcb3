//! Data `copies=2` without a mount: `Fs` over a `MemDevice` (and a medium that fails reads of
//! one range, behind the device trait).

use super::*;
use crate::device::{AlignedBuf, MemDevice};
use crate::format::{ExtentItem, KIND_EXTENT};
use crate::mkfs::{mkfs, MkfsOptions};
use crate::tree::Visit;

const ROOT: Caller = Caller::ROOT;
const BS: u64 = 4096;

fn new_dev(mib: u64, copies: u8) -> Arc<MemDevice> {
    let dev = Arc::new(MemDevice::new(mib << 20, 512));
    let opts = MkfsOptions {
        data_copies: copies,
        ..MkfsOptions::default()
    };
    mkfs(dev.clone(), &opts).unwrap();
    dev
}

fn mount_dev(dev: Arc<dyn BlockDevice>) -> Arc<Fs> {
    Fs::mount(dev, MountOptions::default()).unwrap()
}

fn create(fs: &Fs, name: &str) -> Ino {
    fs.mknod(ROOT_INO, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
        .ino
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Every extent of the last commit: (inode, first file block, item).
fn extents(dev: &Arc<MemDevice>) -> Vec<(u64, u64, ExtentItem)> {
    let mut meta = crate::txn::Meta::open(dev.clone(), false).unwrap();
    let (first, total) = (meta.sb.first_block, meta.sb.total_blocks);
    let mut out = Vec::new();
    meta.tree
        .walk(&mut |v| {
            if let Visit::Item { key, value } = v {
                if key.kind == KIND_EXTENT {
                    let e = ExtentItem::decode(value, first, total)?;
                    out.push((key.object, key.offset, e));
                }
            }
            Ok(())
        })
        .unwrap();
    out
}

/// The device blocks of both copies of file block `fb` of `ino`.
fn copies_of(dev: &Arc<MemDevice>, ino: Ino, fb: u64) -> (u64, u64) {
    let (_, start, e) = extents(dev)
        .into_iter()
        .find(|(i, s, e)| *i == ino && fb >= *s && fb < s + e.len())
        .expect("the block is mapped");
    let i = fb - start;
    (e.block_of(0, i).unwrap(), e.block_of(1, i).expect("a copy"))
}

/// A filesystem with one 64 KiB file holding a marker in its block 4, unmounted.
fn one_file(copies: u8) -> (Arc<MemDevice>, Ino, Vec<u8>) {
    let dev = new_dev(64, copies);
    let fs = mount_dev(dev.clone());
    let f = create(&fs, "f");
    let mut data = pattern(64 << 10, 3);
    data[4 * 4096 + 100..4 * 4096 + 108].copy_from_slice(b"MARKER!!");
    fs.write(f, 0, &data, None).unwrap();
    fs.shutdown().unwrap();
    (dev, f, data)
}

#[test]
fn every_extent_has_a_second_copy_far_away_with_the_same_bytes() {
    let (dev, f, data) = one_file(2);
    let ext = extents(&dev);
    assert!(!ext.is_empty());
    for (_, _, e) in &ext {
        let copy = e
            .copy_start
            .expect("copies=2: every extent has a second copy");
        assert!(
            copy.abs_diff(e.disk_start) * BS >= 16 << 20,
            "copies far apart: {} {copy}",
            e.disk_start
        );
        let n = e.len() as usize * BS as usize;
        assert_eq!(
            dev.peek(e.disk_start * BS, n),
            dev.peek(copy * BS, n),
            "both copies hold the same bytes"
        );
    }
    let fs = mount_dev(dev.clone());
    assert_eq!(fs.read(f, 0, 1 << 20).unwrap(), data);
    // One copy: no second run, and the format of its extents is unchanged.
    let (dev1, _, _) = one_file(1);
    assert!(extents(&dev1)
        .iter()
        .all(|(_, _, e)| e.copy_start.is_none()));
}

#[test]
fn a_bad_first_copy_is_served_from_the_second_and_rewritten() {
    let (dev, f, data) = one_file(2);
    let (first, second) = copies_of(&dev, f, 4);
    dev.poke(first * BS + 103, b"m");
    // A read-only mount serves the good copy but writes nothing.
    let ro = MountOptions {
        read_only: true,
        ..MountOptions::default()
    };
    let fs = Fs::mount(dev.clone(), ro).unwrap();
    assert_eq!(fs.read(f, 0, 1 << 20).unwrap(), data);
    let c = fs.counters();
    assert_eq!(
        (c.data_bad_copies, c.data_repairs, c.checksum_errors),
        (1, 0, 0)
    );
    drop(fs);
    assert_eq!(dev.peek(first * BS + 103, 1), b"m".to_vec());
    // A writable mount rewrites it.
    let fs = mount_dev(dev.clone());
    assert_eq!(fs.read(f, 4 * 4096 + 100, 8).unwrap(), b"MARKER!!".to_vec());
    assert_eq!(fs.read(f, 0, 1 << 20).unwrap(), data);
    let c = fs.counters();
    assert_eq!(
        (c.data_bad_copies, c.data_repairs, c.checksum_errors),
        (1, 1, 0)
    );
    let s = fs.status();
    assert_eq!(
        (s.data_copies, s.data_bad_copies, s.data_repairs),
        (2, 1, 1)
    );
    drop(fs);
    assert_eq!(dev.peek(first * BS, 4096), dev.peek(second * BS, 4096));
    assert_eq!(
        dev.peek(first * BS + 100, 8),
        b"MARKER!!".to_vec(),
        "healed"
    );
    let fs = mount_dev(dev.clone());
    assert_eq!(fs.read(f, 0, 1 << 20).unwrap(), data);
    assert_eq!(fs.counters().data_bad_copies, 0, "nothing bad any more");
}

#[test]
fn both_copies_bad_is_eio_and_the_rest_reads() {
    let (dev, f, data) = one_file(2);
    let (first, second) = copies_of(&dev, f, 4);
    // A bad second copy alone is not even read while the first is good.
    dev.poke(second * BS + 7, b"x");
    let fs = mount_dev(dev.clone());
    assert_eq!(fs.read(f, 0, 1 << 20).unwrap(), data);
    assert_eq!(fs.counters().data_bad_copies, 0);
    drop(fs);
    dev.poke(first * BS + 9, b"y");
    let fs = mount_dev(dev.clone());
    assert!(matches!(
        fs.read(f, 4 * 4096, 10),
        Err(Error::Errno(libc::EIO))
    ));
    assert!(matches!(
        fs.read(f, 0, 1 << 20),
        Err(Error::Errno(libc::EIO))
    ));
    let c = fs.counters();
    assert_eq!(
        (c.data_bad_copies, c.data_repairs, c.checksum_errors),
        (4, 0, 2)
    );
    for b in (0..16u64).filter(|&b| b != 4) {
        assert_eq!(
            fs.read(f, b * BS, 4096).unwrap(),
            data[(b * BS) as usize..((b + 1) * BS) as usize]
        );
    }
    // Nothing was rewritten from a bad copy.
    drop(fs);
    assert_eq!(dev.peek(first * BS + 9, 1), b"y".to_vec());
}

/// A medium whose reads of `[lo, hi)` (bytes) fail with EIO, as a bad sector does.
struct Unreadable {
    mem: Arc<MemDevice>,
    lo: u64,
    hi: u64,
}

impl BlockDevice for Unreadable {
    fn align(&self) -> u32 {
        self.mem.align()
    }
    fn capacity(&self) -> u64 {
        self.mem.capacity()
    }
    fn read_at(&self, offset: u64, buf: &mut AlignedBuf) -> std::io::Result<()> {
        if offset < self.hi && offset + buf.len() as u64 > self.lo {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        self.mem.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, bufs: &[&AlignedBuf]) -> std::io::Result<()> {
        self.mem.write_at(offset, bufs)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.mem.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.mem.discard(offset, len)
    }
}

#[test]
fn a_read_error_on_the_first_copy_is_served_from_the_second() {
    let (dev, f, data) = one_file(2);
    let (first, _) = copies_of(&dev, f, 4);
    let bad = Arc::new(Unreadable {
        mem: dev.clone(),
        lo: first * BS,
        hi: (first + 1) * BS,
    });
    let fs = mount_dev(bad);
    // The whole-file read fails as one run; each block is then read alone, and block 4 from
    // its second copy (its rewrite goes to the medium, which still cannot read it back).
    assert_eq!(fs.read(f, 0, 1 << 20).unwrap(), data);
    let c = fs.counters();
    assert_eq!(
        (c.data_bad_copies, c.data_repairs, c.checksum_errors),
        (1, 1, 0)
    );
    assert_eq!(c.device_read_errors, 2, "the run, then the block alone");
    // One copy: the same error is EIO.
    let (dev1, f1, _) = one_file(1);
    let (_, start, e) = extents(&dev1)
        .into_iter()
        .find(|(i, _, _)| *i == f1)
        .unwrap();
    let first = e.disk_start + 4 - start;
    let bad = Arc::new(Unreadable {
        mem: dev1,
        lo: first * BS,
        hi: (first + 1) * BS,
    });
    let fs = mount_dev(bad);
    assert!(matches!(
        fs.read(f1, 0, 1 << 20),
        Err(Error::Errno(libc::EIO))
    ));
}

#[test]
fn punch_truncate_and_unlink_free_both_copies() {
    let dev = new_dev(64, 2);
    let fs = mount_dev(dev.clone());
    fs.sync().unwrap();
    let free0 = fs.statfs().unwrap().bfree;
    let f = create(&fs, "f");
    fs.write(f, 0, &pattern(1 << 20, 1), None).unwrap();
    fs.sync().unwrap();
    let used = free0 - fs.statfs().unwrap().bfree;
    // 256 file blocks (two device blocks each, counted once in file blocks) and a few
    // nodes.
    assert!((256..256 + 16).contains(&used), "used {used}");
    let mapped = |dev: &Arc<MemDevice>| -> u64 {
        extents(dev)
            .iter()
            .map(|(_, _, e)| e.runs().map(|r| r.1).sum::<u64>())
            .sum()
    };
    assert_eq!(mapped(&dev), 512, "both copies of 256 blocks");
    fs.fallocate(
        f,
        100 * BS,
        10 * BS,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
    )
    .unwrap();
    fs.setattr(
        f,
        &SetAttr {
            size: Some(200 * BS),
            ..Default::default()
        },
    )
    .unwrap();
    fs.sync().unwrap();
    assert_eq!(mapped(&dev), 2 * 190);
    fs.unlink(ROOT_INO, b"f").unwrap();
    // The kernel lets go of it (mknod counted a lookup): now it is deleted.
    fs.forget(f, 1);
    fs.sync().unwrap();
    fs.sync().unwrap();
    assert_eq!(mapped(&dev), 0);
    drop(fs);
    // Remount rebuilds the free map from the tree: everything came back, in both counts.
    let fs = mount_dev(dev.clone());
    let free_now = fs.statfs().unwrap().bfree;
    assert!(free_now + 4 >= free0, "{free_now} of {free0}");
}

/// Writes 256 KiB files until the filesystem is full; returns how many fitted.
fn fill(fs: &Fs) -> u64 {
    let chunk = pattern(256 << 10, 5);
    let mut n = 0;
    loop {
        let f = create(fs, &format!("fill-{n}"));
        let r = fs.write(f, 0, &chunk, None).and_then(|_| fs.sync());
        match r {
            Ok(()) => n += 1,
            Err(Error::Errno(libc::ENOSPC)) => {
                // What did not fit goes (its dirty blocks with it), so the unmount commits.
                fs.unlink(ROOT_INO, format!("fill-{n}").as_bytes()).unwrap();
                return n;
            }
            Err(e) => panic!("filling: {e}"),
        }
    }
}

#[test]
fn space_counts_both_copies() {
    let d1 = new_dev(32, 1);
    let d2 = new_dev(32, 2);
    let (fs1, fs2) = (mount_dev(d1.clone()), mount_dev(d2.clone()));
    let (s1, s2) = (fs1.statfs().unwrap(), fs2.statfs().unwrap());
    assert_eq!(s2.blocks, s1.blocks / 2);
    assert!(
        s2.bfree.abs_diff(s1.bfree / 2) <= 2,
        "{} {}",
        s2.bfree,
        s1.bfree
    );
    // fallocate promises only what both copies fit in.
    let f = create(&fs2, "big");
    assert_eq!(
        fs2.fallocate(f, 0, (s1.bavail * 3 / 4) * BS, 0)
            .map_err(|e| e.errno()),
        Err(libc::ENOSPC)
    );
    fs2.fallocate(f, 0, (s2.bavail / 2) * BS, 0).unwrap();
    fs2.setattr(
        f,
        &SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    fs2.unlink(ROOT_INO, b"big").unwrap();
    fs2.sync().unwrap();
    // Filled up, copies=2 holds about half of what copies=1 does, and says ENOSPC cleanly.
    let (n1, n2) = (fill(&fs1), fill(&fs2));
    assert!(
        n2 * 2 <= n1 + 2 && n2 * 2 + 4 >= n1,
        "copies=1: {n1} files, copies=2: {n2}"
    );
    fs2.shutdown().unwrap();
    drop(fs2);
    let fs2 = mount_dev(d2.clone());
    for i in 0..n2 {
        let a = fs2
            .lookup(ROOT_INO, format!("fill-{i}").as_bytes())
            .unwrap();
        assert_eq!(fs2.read(a.ino, 0, 1 << 20).unwrap(), pattern(256 << 10, 5));
    }
    assert_eq!(fs2.counters().checksum_errors, 0);
}
