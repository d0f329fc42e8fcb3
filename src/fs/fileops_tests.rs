//! `fallocate`, `SEEK_DATA`/`SEEK_HOLE` and `copy_file_range` without a mount: `Fs` over a
//! `MemDevice`, checked against what ext4 does and, at random, against a model of the file.

use super::shared_tests::{mount, new_dev, remount, ROOT};
use super::*;
use crate::device::MemDevice;
use crate::mkfs::{mkfs, MkfsOptions};
use proptest::prelude::*;

const BS: u64 = 4096;
const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
const ZERO: i32 = libc::FALLOC_FL_ZERO_RANGE;

fn create(fs: &Fs, name: &str) -> Ino {
    fs.mknod(ROOT_INO, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
        .ino
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

fn errno_of<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    r.expect_err("expected an error").errno()
}

fn read_all(fs: &Fs, ino: Ino) -> Vec<u8> {
    let size = fs.getattr(ino).unwrap().size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let got = fs.read(ino, out.len() as u64, 1 << 20).unwrap();
        assert!(!got.is_empty(), "short read at {}", out.len());
        out.extend_from_slice(&got);
    }
    out
}

/// 512-byte sectors of `n` blocks, as `st_blocks` counts them.
fn sectors(n: u64) -> u64 {
    n * BS / 512
}

/// The reservation total kept in memory equals the one on the medium.
fn check_reserved(fs: &Fs) -> u64 {
    let mut st = fs.lock();
    let on_medium = st.load_reserved_blocks().unwrap();
    assert_eq!(st.reserved_blocks, on_medium, "reservation total drifted");
    on_medium
}

#[test]
fn allocate_reserves_reads_zeros_and_persists() {
    let dev = new_dev(64);
    let mut fs = mount(&dev);
    let f = create(&fs, "a");
    let free0 = fs.statfs().unwrap().bfree;
    fs.fallocate(f, 0, (1 << 20) + 1, 0).unwrap();
    let a = fs.getattr(f).unwrap();
    assert_eq!(a.size, (1 << 20) + 1);
    assert_eq!(
        a.blocks,
        sectors(257),
        "every block of the range is counted"
    );
    assert_eq!(fs.statfs().unwrap().bfree, free0 - 257);
    assert_eq!(check_reserved(&fs), 257);
    assert_eq!(read_all(&fs, f), vec![0; (1 << 20) + 1]);
    // Unwritten blocks are holes to SEEK_DATA, as ext4's unwritten extents.
    assert_eq!(errno_of(fs.seek_data(f, 0)), libc::ENXIO);
    assert_eq!(fs.seek_hole(f, 100).unwrap(), 100);
    // Writing into the range takes the reservation of the blocks written.
    fs.write(f, 5000, b"hello", None).unwrap();
    assert_eq!(check_reserved(&fs), 256);
    assert_eq!(fs.seek_data(f, 0).unwrap(), 4096);
    assert_eq!(fs.seek_hole(f, 4096).unwrap(), 8192);
    fs.sync().unwrap();
    let a = fs.getattr(f).unwrap();
    assert_eq!(a.blocks, sectors(257), "256 reserved + 1 mapped");
    // Allocating again over the same range reserves nothing more.
    fs.fallocate(f, 0, 1 << 20, 0).unwrap();
    assert_eq!(check_reserved(&fs), 256);
    fs = remount(fs, &dev);
    assert_eq!(check_reserved(&fs), 256);
    let a = fs.getattr(f).unwrap();
    assert_eq!((a.size, a.blocks), ((1 << 20) + 1, sectors(257)));
    let mut expect = vec![0; (1 << 20) + 1];
    expect[5000..5005].copy_from_slice(b"hello");
    assert_eq!(read_all(&fs, f), expect);
    assert_eq!(fs.statfs().unwrap().bfree, free0 - 257);
    // Deleting the file gives everything back.
    fs.unlink(ROOT_INO, b"a").unwrap();
    fs.forget(f, 1);
    assert_eq!(check_reserved(&fs), 0);
    fs.sync().unwrap();
    fs.sync().unwrap();
    assert_eq!(fs.statfs().unwrap().bfree, free0);
    fs = remount(fs, &dev);
    assert_eq!(check_reserved(&fs), 0);
    assert_eq!(fs.counters().checksum_errors, 0);
}

#[test]
fn keep_size_reserves_past_eof_until_truncate() {
    let dev = new_dev(64);
    let mut fs = mount(&dev);
    let f = create(&fs, "k");
    fs.write(f, 0, b"0123456789", None).unwrap();
    fs.sync().unwrap();
    let before = fs.getattr(f).unwrap();
    fs.fallocate(f, 0, 64 * 1024, KEEP).unwrap();
    let a = fs.getattr(f).unwrap();
    assert_eq!(a.size, 10, "KEEP_SIZE keeps the size");
    assert_eq!(a.blocks, sectors(16), "1 mapped + 15 reserved");
    assert_eq!(a.mtime, before.mtime, "no data changed");
    assert_eq!(check_reserved(&fs), 15);
    // Writing past the end into reserved blocks grows the file and takes them.
    fs.write(f, 20_000, b"abc", None).unwrap();
    assert_eq!(check_reserved(&fs), 14);
    let mut expect = b"0123456789".to_vec();
    expect.resize(20_003, 0);
    expect[20_000..].copy_from_slice(b"abc");
    assert_eq!(read_all(&fs, f), expect);
    fs = remount(fs, &dev);
    assert_eq!(read_all(&fs, f), expect);
    assert_eq!(check_reserved(&fs), 14);
    // Truncating releases the reservations past the new end, as ext4 frees them.
    let shrink = SetAttr {
        size: Some(5),
        ..SetAttr::default()
    };
    fs.setattr(f, &shrink).unwrap();
    assert_eq!(check_reserved(&fs), 0);
    fs.sync().unwrap();
    assert_eq!(fs.getattr(f).unwrap().blocks, sectors(1));
    assert_eq!(read_all(&fs, f), b"01234");
}

#[test]
fn reservations_keep_their_promise_on_a_full_filesystem() {
    let dev = new_dev(16);
    let fs = mount(&dev);
    let f = create(&fs, "prealloc");
    let g = create(&fs, "other");
    fs.sync().unwrap();
    let avail = fs.statfs().unwrap().bavail;
    assert_eq!(
        errno_of(fs.fallocate(f, 0, (avail + 1) * BS, 0)),
        libc::ENOSPC
    );
    assert_eq!(
        fs.getattr(f).unwrap().size,
        0,
        "a refused fallocate changes nothing"
    );
    assert_eq!(check_reserved(&fs), 0);
    fs.fallocate(f, 0, avail * BS, 0).unwrap();
    assert_eq!(fs.statfs().unwrap().bavail, 0);
    // Nobody else gets the promised space ...
    assert_eq!(errno_of(fs.write(g, 0, b"x", None)), libc::ENOSPC);
    assert_eq!(errno_of(fs.fallocate(g, 0, BS, 0)), libc::ENOSPC);
    // ... and every block of it can be written, unaligned pieces included, and committed.
    let data = pattern((avail * BS) as usize, 3);
    fs.write(f, 0, &data[..1000], None).unwrap();
    for (k, chunk) in data[1000..].chunks(300_007).enumerate() {
        fs.write(f, 1000 + (k * 300_007) as u64, chunk, None)
            .unwrap();
    }
    assert_eq!(check_reserved(&fs), 0);
    fs.sync().unwrap();
    assert_eq!(read_all(&fs, f), data);
    assert_eq!(fs.counters().checksum_errors, 0);
}

#[test]
fn punch_hole_unaligned_over_mapped_and_dirty_data() {
    let dev = new_dev(64);
    let mut fs = mount(&dev);
    let f = create(&fs, "p");
    let mut expect = pattern(40_000, 1);
    fs.write(f, 0, &expect, None).unwrap();
    fs.sync().unwrap();
    // Dirty data over mapped blocks 3 and 4, not yet committed.
    let fresh = pattern(6000, 9);
    fs.write(f, 13_000, &fresh, None).unwrap();
    expect[13_000..19_000].copy_from_slice(&fresh);
    assert_eq!(
        errno_of(fs.fallocate(f, 5000, 25_000, libc::FALLOC_FL_PUNCH_HOLE)),
        libc::EOPNOTSUPP,
        "a punch must keep the size"
    );
    let before = fs.getattr(f).unwrap();
    fs.fallocate(f, 5000, 25_000, PUNCH).unwrap();
    expect[5000..30_000].fill(0);
    let a = fs.getattr(f).unwrap();
    assert_eq!(a.size, 40_000);
    assert!(a.mtime >= before.mtime && a.ctime >= before.ctime);
    assert_eq!(read_all(&fs, f), expect);
    // Whole blocks 2..7 are gone; blocks 1 and 7 keep (zeroed) data.
    assert_eq!(fs.seek_hole(f, 0).unwrap(), 2 * BS);
    assert_eq!(fs.seek_data(f, 2 * BS).unwrap(), 7 * BS);
    fs.sync().unwrap();
    assert_eq!(fs.getattr(f).unwrap().blocks, sectors(10 - 5));
    assert_eq!(read_all(&fs, f), expect);
    // A punch reaching past the end zeroes to the end and leaves the size.
    fs.fallocate(f, 38_000, 1 << 30, PUNCH).unwrap();
    expect[38_000..].fill(0);
    assert_eq!(read_all(&fs, f), expect);
    // A punch entirely inside one block.
    fs.fallocate(f, 100, 50, PUNCH).unwrap();
    expect[100..150].fill(0);
    assert_eq!(read_all(&fs, f), expect);
    fs = remount(fs, &dev);
    assert_eq!(read_all(&fs, f), expect);
    assert_eq!(fs.getattr(f).unwrap().size, 40_000);
    assert_eq!(fs.counters().checksum_errors, 0);
}

#[test]
fn punch_hole_releases_reservations() {
    let dev = new_dev(64);
    let fs = mount(&dev);
    let f = create(&fs, "r");
    fs.fallocate(f, 0, 32 * BS, 0).unwrap();
    assert_eq!(check_reserved(&fs), 32);
    fs.fallocate(f, 4 * BS + 1, 8 * BS, PUNCH).unwrap();
    // Blocks 5..12 are released; the partly covered blocks 4 and 12 stay reserved.
    assert_eq!(check_reserved(&fs), 32 - 7);
    assert_eq!(fs.getattr(f).unwrap().blocks, sectors(25));
    // Allocating again fills exactly the hole, merging the runs.
    fs.fallocate(f, 0, 32 * BS, KEEP).unwrap();
    assert_eq!(check_reserved(&fs), 32);
    let runs = fs.lock().unwritten_runs(f, 0, u64::MAX).unwrap();
    assert_eq!(runs, vec![(0, 32)], "adjacent runs merge");
    assert_eq!(read_all(&fs, f), vec![0; 32 * BS as usize]);
}

#[test]
fn zero_range_grows_unless_keep_size() {
    let dev = new_dev(64);
    let mut fs = mount(&dev);
    let f = create(&fs, "z");
    let mut expect = pattern(20_000, 5);
    fs.write(f, 0, &expect, None).unwrap();
    fs.sync().unwrap();
    fs.fallocate(f, 1000, 8000, ZERO).unwrap();
    expect[1000..9000].fill(0);
    assert_eq!(read_all(&fs, f), expect);
    assert_eq!(fs.getattr(f).unwrap().size, 20_000);
    // The zeroed whole block stays allocated (reserved), as ext4 leaves it.
    assert_eq!(check_reserved(&fs), 1);
    assert_eq!(fs.getattr(f).unwrap().blocks, sectors(5));
    // Past the end without KEEP_SIZE: the file grows.
    fs.fallocate(f, 15_000, 35_000, ZERO).unwrap();
    expect[15_000..].fill(0);
    expect.resize(50_000, 0);
    assert_eq!(fs.getattr(f).unwrap().size, 50_000);
    // With KEEP_SIZE it does not.
    fs.fallocate(f, 60_000, 10_000, ZERO | KEEP).unwrap();
    assert_eq!(fs.getattr(f).unwrap().size, 50_000);
    assert_eq!(read_all(&fs, f), expect);
    // Inside one block.
    fs.fallocate(f, 8193, 1, ZERO).unwrap();
    fs.fallocate(f, 12_000, 5, ZERO | KEEP).unwrap();
    expect[12_000..12_005].fill(0);
    // Zeroing dirty data drops it.
    let fresh = pattern(9000, 7);
    fs.write(f, 30_000, &fresh, None).unwrap();
    fs.fallocate(f, 29_000, 11_000, ZERO).unwrap();
    assert_eq!(read_all(&fs, f), expect);
    fs = remount(fs, &dev);
    assert_eq!(read_all(&fs, f), expect);
    check_reserved(&fs);
    assert_eq!(fs.counters().checksum_errors, 0);
}

#[test]
fn fallocate_refuses_what_linux_refuses() {
    let dev = new_dev(64);
    let fs = mount(&dev);
    let f = create(&fs, "f");
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap().ino;
    for mode in [
        libc::FALLOC_FL_COLLAPSE_RANGE,
        libc::FALLOC_FL_INSERT_RANGE,
        libc::FALLOC_FL_PUNCH_HOLE,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE | KEEP,
        0x4000_0000,
    ] {
        assert_eq!(
            errno_of(fs.fallocate(f, 0, BS, mode)),
            libc::EOPNOTSUPP,
            "{mode:#x}"
        );
    }
    assert_eq!(errno_of(fs.fallocate(f, 0, 0, 0)), libc::EINVAL);
    assert_eq!(
        errno_of(fs.fallocate(f, i64::MAX as u64, 2, 0)),
        libc::EFBIG
    );
    assert_eq!(errno_of(fs.fallocate(d, 0, BS, 0)), libc::EISDIR);
    assert_eq!(errno_of(fs.seek_data(d, 0)), libc::EISDIR);
    assert_eq!(errno_of(fs.copy_file_range(d, 0, f, 0, 1)), libc::EISDIR);
    let fifo = fs
        .mknod(ROOT_INO, b"fifo", libc::S_IFIFO | 0o644, 0, ROOT)
        .unwrap()
        .ino;
    assert_eq!(errno_of(fs.fallocate(fifo, 0, BS, 0)), libc::ENODEV);
    // A huge allocation fails cleanly, without walking the range block by block.
    assert_eq!(errno_of(fs.fallocate(f, 0, 1 << 60, 0)), libc::ENOSPC);
    assert_eq!(fs.getattr(f).unwrap().size, 0);
}

#[test]
fn unwritten_block_counts_are_checked() {
    use crate::format::{decode_block_count, encode_block_count};
    assert_eq!(decode_block_count(&encode_block_count(77)).unwrap(), 77);
    assert!(decode_block_count(&encode_block_count(0)).is_err());
    assert!(decode_block_count(&[1, 0, 0, 0]).is_err());
    assert!(decode_block_count(&[1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
}

#[test]
fn seek_data_and_hole_over_sparse_layouts() {
    let dev = new_dev(64);
    let fs = mount(&dev);
    let f = create(&fs, "s");
    // Block 0 mapped, 10 dirty, 20 reserved (a hole), 25 mapped, and a partial last block 26
    // that is dirty: size 26 blocks + 100 bytes.
    fs.write(f, 0, b"a", None).unwrap();
    fs.write(f, 25 * BS, &[7u8; 4096], None).unwrap();
    fs.sync().unwrap();
    fs.write(f, 10 * BS + 7, b"b", None).unwrap();
    fs.fallocate(f, 20 * BS, BS, KEEP).unwrap();
    fs.write(f, 26 * BS, &[9u8; 100], None).unwrap();
    let size = 26 * BS + 100;
    assert_eq!(fs.getattr(f).unwrap().size, size);
    assert_eq!(fs.seek_data(f, 0).unwrap(), 0);
    assert_eq!(fs.seek_data(f, 17).unwrap(), 17);
    assert_eq!(fs.seek_hole(f, 0).unwrap(), BS);
    assert_eq!(fs.seek_data(f, BS).unwrap(), 10 * BS);
    assert_eq!(fs.seek_data(f, 5 * BS + 3).unwrap(), 10 * BS);
    assert_eq!(fs.seek_hole(f, 10 * BS + 5).unwrap(), 11 * BS);
    assert_eq!(
        fs.seek_data(f, 11 * BS).unwrap(),
        25 * BS,
        "reserved is a hole"
    );
    assert_eq!(
        fs.seek_hole(f, 25 * BS).unwrap(),
        size,
        "implicit hole at EOF"
    );
    assert_eq!(fs.seek_hole(f, size - 1).unwrap(), size);
    assert_eq!(fs.seek_data(f, size - 1).unwrap(), size - 1);
    assert_eq!(errno_of(fs.seek_data(f, size)), libc::ENXIO);
    assert_eq!(errno_of(fs.seek_hole(f, size)), libc::ENXIO);
    assert_eq!(errno_of(fs.seek_hole(f, u64::MAX)), libc::ENXIO);
    // Only holes after the offset: ENXIO for data.
    let g = create(&fs, "t");
    fs.write(g, 0, b"x", None).unwrap();
    fs.setattr(
        g,
        &SetAttr {
            size: Some(1 << 20),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(fs.seek_data(g, 1).unwrap(), 1);
    assert_eq!(errno_of(fs.seek_data(g, BS)), libc::ENXIO);
    assert_eq!(fs.seek_hole(g, 1).unwrap(), BS);
    // Far apart extents are found without walking the hole between them.
    let far = 5u64 << 40;
    fs.write(g, far, b"end", None).unwrap();
    fs.sync().unwrap();
    assert_eq!(fs.seek_data(g, BS).unwrap(), far);
    assert_eq!(fs.seek_hole(g, far).unwrap(), far + 3);
    assert_eq!(fs.seek_hole(g, 0).unwrap(), BS);
}

#[test]
fn copy_file_range_offsets_eof_and_sparse_sources() {
    let dev = new_dev(64);
    let mut fs = mount(&dev);
    let src = create(&fs, "src");
    let dst = create(&fs, "dst");
    let data = pattern((3 << 20) + 123, 2);
    fs.write(src, 0, &data, None).unwrap();
    fs.sync().unwrap();
    let before = fs.getattr(dst).unwrap();
    // More than there is: clamped at the source's end.
    let n = fs.copy_file_range(src, 1000, dst, 777, 10 << 20).unwrap();
    assert_eq!(n, data.len() as u64 - 1000);
    let a = fs.getattr(dst).unwrap();
    assert_eq!(a.size, 777 + n);
    assert!(a.mtime >= before.mtime);
    let mut expect = vec![0; 777];
    expect.extend_from_slice(&data[1000..]);
    assert_eq!(read_all(&fs, dst), expect);
    assert_eq!(
        fs.copy_file_range(src, data.len() as u64, dst, 0, 10)
            .unwrap(),
        0
    );
    assert_eq!(fs.copy_file_range(src, u64::MAX, dst, 0, 10).unwrap(), 0);
    assert_eq!(
        errno_of(fs.copy_file_range(src, 0, dst, i64::MAX as u64, 10)),
        libc::EFBIG
    );
    // Dirty (uncommitted) source data is copied too.
    fs.write(src, 10, b"DIRTY", None).unwrap();
    assert_eq!(fs.copy_file_range(src, 0, dst, 0, 20).unwrap(), 20);
    expect[..20].copy_from_slice(&fs.read(src, 0, 20).unwrap());
    assert_eq!(read_all(&fs, dst), expect);
    // A sparse source: the hole is not allocated in the copy.
    let sparse = create(&fs, "sparse");
    fs.write(sparse, 0, b"head", None).unwrap();
    fs.write(sparse, 8 << 20, b"tail", None).unwrap();
    let copy = create(&fs, "copy");
    let len = (8 << 20) + 4;
    assert_eq!(fs.copy_file_range(sparse, 0, copy, 0, len).unwrap(), len);
    fs.sync().unwrap();
    let c = fs.getattr(copy).unwrap();
    assert_eq!(c.size, len);
    assert_eq!(c.blocks, sectors(2));
    // A copy ending in zeros still sets the size.
    let zeros_end = create(&fs, "zeros");
    assert_eq!(
        fs.copy_file_range(sparse, 0, zeros_end, 0, 1 << 20)
            .unwrap(),
        1 << 20
    );
    assert_eq!(fs.getattr(zeros_end).unwrap().size, 1 << 20);
    fs = remount(fs, &dev);
    assert_eq!(read_all(&fs, dst), expect);
    let mut sparse_expect = vec![0u8; len as usize];
    sparse_expect[..4].copy_from_slice(b"head");
    sparse_expect[8 << 20..].copy_from_slice(b"tail");
    assert_eq!(read_all(&fs, copy), sparse_expect);
    assert_eq!(fs.counters().checksum_errors, 0);
}

#[test]
fn copy_file_range_overlapping_in_one_file_is_memmove() {
    let dev = new_dev(64);
    let fs = mount(&dev);
    let f = create(&fs, "o");
    let mut model = pattern((3 << 20) + 5, 4);
    fs.write(f, 0, &model, None).unwrap();
    let len = (5 << 19) + 17;
    // Forwards (destination after the source) and backwards, several chunks each.
    for (from, to) in [
        (0usize, 100_003usize),
        (100_003, 7),
        (4096, 4096 + (1 << 20)),
    ] {
        let n = fs
            .copy_file_range(f, from as u64, f, to as u64, len as u64)
            .unwrap();
        assert_eq!(n, len as u64);
        memmove(&mut model, from, to, len);
        assert_eq!(read_all(&fs, f), model, "copy {from} -> {to}");
    }
    // Overlapping and past the end: the file grows by what the copy wrote.
    let size = model.len();
    let n = fs
        .copy_file_range(f, (size - 1000) as u64, f, (size - 10) as u64, 5000)
        .unwrap();
    assert_eq!(n, 1000);
    memmove(&mut model, size - 1000, size - 10, 1000);
    assert_eq!(read_all(&fs, f), model);
    fs.sync().unwrap();
    assert_eq!(read_all(&fs, f), model);
}

/// What copying `n` bytes from `from` to `to` within one file does to its contents.
fn memmove(model: &mut Vec<u8>, from: usize, to: usize, n: usize) {
    if n > 0 {
        if model.len() < to + n {
            model.resize(to + n, 0);
        }
        model.copy_within(from..from + n, to);
    }
}

/// One step of the random test below.
#[derive(Clone, Debug)]
enum Op {
    Write(u64, u64, u8),
    Falloc(i32, u64, u64),
    Truncate(u64),
    Copy(u64, u64, u64),
    Sync,
}

fn op() -> impl Strategy<Value = Op> {
    let off = 0u64..70_000;
    let len = 1u64..20_000;
    let modes = prop::sample::select(vec![0, KEEP, PUNCH, ZERO, ZERO | KEEP]);
    prop_oneof![
        3 => (off.clone(), len.clone(), any::<u8>()).prop_map(|(o, l, s)| Op::Write(o, l, s)),
        4 => (modes, off.clone(), len.clone()).prop_map(|(m, o, l)| Op::Falloc(m, o, l)),
        1 => (0u64..80_000).prop_map(Op::Truncate),
        1 => (off.clone(), off, len).prop_map(|(a, b, l)| Op::Copy(a, b, l)),
        1 => Just(Op::Sync),
    ]
}

/// What the model and the filesystem must agree on after every step: the bytes, the size, the
/// reservation total, and that no block holding non-zero bytes is reported as a hole.
fn agree(fs: &Fs, f: Ino, model: &[u8]) {
    assert_eq!(read_all(fs, f), model);
    check_reserved(fs);
    for (k, block) in model.chunks(BS as usize).enumerate() {
        if block.iter().any(|&b| b != 0) {
            let at = k as u64 * BS;
            assert_eq!(fs.seek_data(f, at).unwrap(), at, "block {k} has data");
            assert!(fs.seek_hole(f, at).unwrap() > at, "block {k} is no hole");
        }
    }
}

fn apply(fs: &Fs, f: Ino, model: &mut Vec<u8>, op: &Op) {
    match *op {
        Op::Write(o, l, seed) => {
            let data = pattern(l as usize, seed);
            fs.write(f, o, &data, None).unwrap();
            let end = (o + l) as usize;
            if model.len() < end {
                model.resize(end, 0);
            }
            model[o as usize..end].copy_from_slice(&data);
        }
        Op::Falloc(mode, o, l) => {
            fs.fallocate(f, o, l, mode).unwrap();
            let end = (o + l) as usize;
            if mode & KEEP == 0 && model.len() < end {
                model.resize(end, 0);
            }
            if mode & (libc::FALLOC_FL_PUNCH_HOLE | ZERO) != 0 {
                let stop = end.min(model.len());
                if (o as usize) < stop {
                    model[o as usize..stop].fill(0);
                }
            }
        }
        Op::Truncate(s) => {
            let set = SetAttr {
                size: Some(s),
                ..SetAttr::default()
            };
            fs.setattr(f, &set).unwrap();
            model.resize(s as usize, 0);
        }
        Op::Copy(a, b, l) => {
            let n = fs.copy_file_range(f, a, f, b, l).unwrap() as usize;
            let (a, b) = (a as usize, b as usize);
            assert_eq!(
                n,
                l.min((model.len() as u64).saturating_sub(a as u64)) as usize
            );
            memmove(model, a, b, n);
        }
        Op::Sync => fs.sync().unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_file_operations_match_a_model(ops in prop::collection::vec(op(), 1..40)) {
        let dev = new_dev(32);
        let mut fs = mount(&dev);
        let f = create(&fs, "m");
        let mut model = Vec::new();
        for op in &ops {
            apply(&fs, f, &mut model, op);
            agree(&fs, f, &model);
        }
        fs = remount(fs, &dev);
        agree(&fs, f, &model);
        prop_assert_eq!(fs.counters().checksum_errors, 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// `st_blocks` counts written data before a commit places it, exactly: a commit (every
    /// other step, so dirty blocks pile up over holes, placed blocks, reservations and
    /// punched ranges in between) never changes it, nor does a remount.
    #[test]
    fn st_blocks_does_not_change_when_data_is_placed(
        ops in prop::collection::vec(op(), 1..40),
        copies in 1u8..=2,
    ) {
        let dev = Arc::new(MemDevice::new(32 << 20, 512));
        let opts = MkfsOptions { data_copies: copies, ..MkfsOptions::default() };
        mkfs(dev.clone(), &opts).unwrap();
        let mut fs = Fs::mount(dev.clone(), MountOptions { idle_commit_ms: 0, ..MountOptions::default() }).unwrap();
        let f = create(&fs, "m");
        let mut model = Vec::new();
        for (k, op) in ops.iter().enumerate() {
            apply(&fs, f, &mut model, op);
            let blocks = fs.getattr(f).unwrap().blocks;
            if k % 2 == 1 {
                fs.sync().unwrap();
                prop_assert_eq!(fs.getattr(f).unwrap().blocks, blocks, "after op {} ({:?})", k, op);
            }
        }
        let blocks = fs.getattr(f).unwrap().blocks;
        fs = remount(fs, &dev);
        prop_assert_eq!(fs.getattr(f).unwrap().blocks, blocks);
        agree(&fs, f, &model);
    }
}

#[test]
fn st_blocks_counts_dirty_data_at_once() {
    let dev = new_dev(32);
    let fs = Fs::mount(
        dev.clone(),
        MountOptions {
            idle_commit_ms: 0,
            ..MountOptions::default()
        },
    )
    .unwrap();
    let f = create(&fs, "f");
    let sectors = BS / 512;
    fs.write(f, 0, &pattern(100, 1), None).unwrap();
    assert_eq!(fs.getattr(f).unwrap().blocks, sectors, "a partial block");
    fs.write(f, 10 * BS, &pattern(3 * BS as usize, 2), None)
        .unwrap();
    assert_eq!(fs.getattr(f).unwrap().blocks, 4 * sectors, "whole blocks");
    fs.sync().unwrap();
    let commits = fs.counters().commits;
    // Overwriting placed blocks replaces them: no change.
    fs.write(f, 10 * BS + 5, &pattern(2 * BS as usize, 3), None)
        .unwrap();
    assert_eq!(fs.getattr(f).unwrap().blocks, 4 * sectors);
    // Writing into a hole of a placed file adds.
    fs.write(f, 5 * BS, &pattern(BS as usize, 4), None).unwrap();
    assert_eq!(fs.getattr(f).unwrap().blocks, 5 * sectors);
    assert_eq!(fs.counters().commits, commits, "no commit in between");
    // Truncating dirty data away takes it off again.
    let set = SetAttr {
        size: Some(BS),
        ..SetAttr::default()
    };
    fs.setattr(f, &set).unwrap();
    assert_eq!(fs.getattr(f).unwrap().blocks, sectors);
    fs.sync().unwrap();
    assert_eq!(fs.getattr(f).unwrap().blocks, sectors);
}
