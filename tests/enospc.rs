//! A full filesystem (issue 3, point 6), on a small image: filling it ends in a clean `ENOSPC`
//! (from `write` or, with the kernel's writeback cache, from `fsync`), never in `EIO` or
//! corruption; on the full filesystem `rename`, `rmdir`, `truncate` and `unlink` still work;
//! deleting gives the space back (statfs `f_bfree` rises by what was freed, within a small
//! margin, after an fsync); nothing that was fsynced before the device filled is lost after a
//! remount; and the same holds when the filesystem fills with metadata (many empty files and
//! directories) rather than data.
//!
//! Every byte any of these tests writes at file offset `o` is [`pat`]`(o)`, so every file, even
//! one whose writeback failed, must read back as the pattern or zeros; files whose `fsync`
//! succeeded must read back exactly.

mod common;
mod walk;

use common::TestFs;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Small, so that filling it is quick; large enough for its metadata reserve to matter.
const IMAGE: &str = "64M";
const IMAGE_BYTES: u64 = 64 << 20;
const MIB: u64 = 1 << 20;

fn pat(o: u64) -> u8 {
    let x = (o >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let b = (x >> ((o & 7) * 8 + 3)) as u8;
    if b == 0 {
        0xa5
    } else {
        b
    }
}

fn pattern_at(off: u64, len: u64) -> Vec<u8> {
    (off..off + len).map(pat).collect()
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Writes `size` bytes of pattern to a new file in `chunk`-byte writes, then fsyncs it.
fn write_synced(p: &Path, size: u64, chunk: u64) -> io::Result<()> {
    let f = File::create(p)?;
    let mut off = 0;
    while off < size {
        let n = chunk.min(size - off);
        f.write_all_at(&pattern_at(off, n), off)?;
        off += n;
    }
    f.sync_all()
}

/// What filling left.
#[derive(Default)]
struct Filled {
    /// Files whose fsync succeeded, with their sizes: they must survive exactly.
    synced: Vec<(PathBuf, u64)>,
    /// Files whose write or fsync failed with ENOSPC: they must read as pattern or zeros.
    failed: Vec<PathBuf>,
    bytes: u64,
}

/// Fills the filesystem with files of 4 MiB, then 64 KiB, then 4 KiB, each size until it
/// fails with ENOSPC. Any other error fails the test; so does never running out.
#[track_caller]
fn fill(dir: &Path) -> Filled {
    let mut filled = Filled::default();
    for (size, chunk) in [(4 * MIB, MIB), (64 << 10, 64 << 10), (4096, 4096)] {
        loop {
            let p = dir.join(format!("fill-{size}-{}", filled.synced.len()));
            match write_synced(&p, size, chunk) {
                Ok(()) => {
                    filled.synced.push((p, size));
                    filled.bytes += size;
                }
                Err(e) if errno(&e) == libc::ENOSPC => {
                    filled.failed.push(p);
                    break;
                }
                Err(e) => panic!(
                    "filling, after {} bytes in {} files: {}: {e} (expected success or ENOSPC)",
                    filled.bytes,
                    filled.synced.len(),
                    p.display()
                ),
            }
            assert!(
                filled.bytes <= 2 * IMAGE_BYTES,
                "wrote {} bytes onto a {IMAGE} filesystem without ENOSPC",
                filled.bytes
            );
        }
    }
    filled
}

/// Every byte is the pattern or zero.
fn pattern_or_zero(_: &Path, off: u64, data: &[u8]) -> Result<(), String> {
    match data
        .iter()
        .enumerate()
        .find(|&(i, &b)| b != 0 && b != pat(off + i as u64))
    {
        None => Ok(()),
        Some((i, &b)) => Err(format!(
            "byte at {} is {b:#04x}, neither 0 nor the pattern",
            off + i as u64
        )),
    }
}

#[track_caller]
fn assert_exact(p: &Path, size: u64) {
    match fs::read(p) {
        Ok(d) => assert!(
            d.len() as u64 == size && d == pattern_at(0, size),
            "{}: fsynced before the device filled, but reads back {} bytes{}",
            p.display(),
            d.len(),
            if d.len() as u64 == size {
                " that differ from what was written"
            } else {
                ""
            }
        ),
        Err(e) => panic!(
            "{}: fsynced before the device filled, reading it: {e}",
            p.display()
        ),
    }
}

/// The consistency walk, every byte read, and statfs against what the walk found allocated.
#[track_caller]
fn walk_and_check(t: &TestFs) -> walk::Walk {
    let w = walk::walk(&t.mnt, &mut pattern_or_zero);
    assert!(
        w.problems.is_empty(),
        "consistency walk:\n{}",
        w.problems.join("\n")
    );
    let s = walk::statvfs(&t.mnt);
    let used = (s.f_blocks - s.f_bfree) * s.f_frsize;
    let bound = MIB + w.inodes * 1024;
    assert!(
        used >= w.allocated && used <= w.allocated + bound,
        "statfs says {used} bytes in use; files and directories hold {} (metadata should be \
         at most {bound} more)",
        w.allocated
    );
    w
}

#[track_caller]
fn assert_clean_log(t: &TestFs) {
    let log = t.log();
    assert!(
        !log.contains("checksum error")
            && !log.contains("device write failed")
            && !log.contains("panicked"),
        "daemon log:\n{log}"
    );
}

fn bfree(t: &TestFs) -> u64 {
    walk::statvfs(&t.mnt).f_bfree
}

/// Commits (fsync on any file commits everything) so that freed blocks are free.
fn commit(t: &TestFs) {
    File::open(&t.mnt).unwrap().sync_all().unwrap();
}

/// Notes a failed operation on the full filesystem; the test goes on, to report them all.
fn attempt(failures: &mut Vec<String>, what: &str, r: io::Result<()>) {
    if let Err(e) = r {
        failures.push(format!("{what} on the full filesystem: {e}"));
    }
}

#[test]
fn full_of_data_clean_enospc_and_space_comes_back() {
    let mut t = TestFs::with(IMAGE, &[], "");
    // Written and fsynced before the device fills: must all be there after the remount.
    fs::create_dir(t.path("keep")).unwrap();
    let mut keep = Vec::new();
    for (i, size) in [MIB, 3 * MIB + 123, 5000].into_iter().enumerate() {
        let p = t.path(&format!("keep/k{i}"));
        write_synced(&p, size, MIB).unwrap();
        keep.push((p, size));
    }
    fs::create_dir(t.path("victim-dir")).unwrap();
    write_synced(&t.path("victim-rename"), MIB, MIB).unwrap();
    write_synced(&t.path("victim-truncate"), 2 * MIB, MIB).unwrap();
    write_synced(&t.path("victim-truncate-aligned"), 2 * MIB, MIB).unwrap();
    fs::create_dir(t.path("fill")).unwrap();
    commit(&t);

    let filled = fill(&t.path("fill"));
    let s = walk::statvfs(&t.mnt);
    println!(
        "filled: {} bytes in {} files before ENOSPC; statfs: bfree {} bavail {} of {} blocks",
        filled.bytes,
        filled.synced.len(),
        s.f_bfree,
        s.f_bavail,
        s.f_blocks
    );
    assert_eq!(
        s.f_bavail, 0,
        "a 4 KiB write failed with ENOSPC, so nothing is available"
    );

    // On the full filesystem, the operations that free space or move names must work.
    let mut failures = Vec::new();
    attempt(
        &mut failures,
        "rename",
        fs::rename(t.path("victim-rename"), t.path("renamed")),
    );
    attempt(&mut failures, "rmdir", fs::remove_dir(t.path("victim-dir")));
    let open_rw = |p: PathBuf| OpenOptions::new().write(true).open(p);
    attempt(
        &mut failures,
        "truncate to a whole block (2 MiB -> 1 MiB)",
        open_rw(t.path("victim-truncate-aligned")).and_then(|f| f.set_len(MIB)),
    );
    attempt(
        &mut failures,
        "truncate inside a block (2 MiB -> 1000001 bytes)",
        open_rw(t.path("victim-truncate")).and_then(|f| f.set_len(1_000_001)),
    );
    let before = bfree(&t);
    let mut deleted = 0u64;
    for (p, size) in filled.synced.iter().step_by(2) {
        attempt(&mut failures, "unlink", fs::remove_file(p));
        deleted += size.div_ceil(4096);
    }
    commit(&t);
    let after = bfree(&t);
    // The truncates freed 256 + 11 blocks (probably counted already); metadata moves a little.
    let margin = 64 + deleted / 100 + 300;
    println!(
        "deleted {deleted} blocks of files: statfs bfree {before} -> {after} (+{})",
        after.saturating_sub(before)
    );
    if after < before + deleted.saturating_sub(margin) || after > before + deleted + margin {
        failures.push(format!(
            "after deleting {deleted} blocks and an fsync, bfree went {before} -> {after}, \
             not up by about {deleted} (margin {margin})"
        ));
    }
    // The space is really usable again.
    let again = deleted * 4096 / 2;
    attempt(
        &mut failures,
        "writing half of the freed space again",
        write_synced(&t.path("again"), again, MIB),
    );

    // Whatever failed above, what was fsynced must still be there after a remount.
    let bfree_before_unmount = bfree(&t);
    t.remount();
    for (p, size) in &keep {
        assert_exact(p, *size);
    }
    for (p, size) in filled.synced.iter().skip(1).step_by(2) {
        assert_exact(p, *size);
    }
    assert_exact(&t.path("again"), again);
    let truncated = fs::metadata(t.path("victim-truncate")).unwrap().len();
    if truncated != 1_000_001 && failures.is_empty() {
        failures.push(format!(
            "the truncated file is {truncated} bytes after the remount"
        ));
    }
    let w = walk_and_check(&t);
    let bfree_after = bfree(&t);
    assert!(
        bfree_after.abs_diff(bfree_before_unmount) <= 64,
        "statfs bfree {bfree_before_unmount} before the unmount, {bfree_after} after it"
    );
    assert_clean_log(&t);
    println!("after the remount: {}", walk::summary(&w));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn full_of_metadata_clean_enospc() {
    let mut t = TestFs::with(IMAGE, &[], "");
    write_synced(&t.path("keep"), 2 * MIB + 7, MIB).unwrap();
    fs::create_dir(t.path("fill")).unwrap();
    let filled = fill(&t.path("fill"));
    // Now only the metadata reserve is left: grow the tree with empty files and directories
    // (and commit every so often, which is when new tree blocks are needed) until ENOSPC.
    fs::create_dir(t.path("meta")).unwrap();
    let mut made = 0u64;
    let stop = loop {
        let d = t.path(&format!("meta/dir-with-a-long-name-{made:08}"));
        let f = t.path(&format!("meta/file-with-a-long-name-{made:08}"));
        let r = fs::create_dir(&d)
            .and_then(|()| File::create(&f).map(drop))
            .and_then(|()| {
                if made % 256 == 255 {
                    File::open(t.path("meta"))?.sync_all()
                } else {
                    Ok(())
                }
            });
        match r {
            Ok(()) => made += 1,
            Err(e) => break e,
        }
        assert!(
            made < 500_000,
            "made {made} directories and files on a full {IMAGE} filesystem without ENOSPC"
        );
    };
    println!(
        "after {} bytes of data, {made} directories + files of metadata until: {stop}",
        filled.bytes
    );
    let mut failures = Vec::new();
    if errno(&stop) == libc::ENOSPC {
        // Deleting gives room back: unlink some files and directories, then create again.
        for i in 0..made.min(64) {
            fs::remove_dir(t.path(&format!("meta/dir-with-a-long-name-{i:08}"))).unwrap();
            fs::remove_file(t.path(&format!("meta/file-with-a-long-name-{i:08}"))).unwrap();
        }
        for (p, _) in filled.synced.iter().take(4) {
            fs::remove_file(p).unwrap();
        }
        commit(&t);
        fs::create_dir(t.path("meta/after")).unwrap();
        write_synced(&t.path("meta/after/file"), 8192, 8192).unwrap();
        t.remount();
        assert_exact(&t.path("meta/after/file"), 8192);
    } else {
        failures.push(format!(
            "creating names on a full filesystem ended in {stop} after {made} of them, not in \
             ENOSPC\n--- daemon log ---\n{}",
            t.log()
        ));
        // The daemon cannot commit any more; what was committed must still be intact.
        t.kill9();
        t.mount();
    }
    assert_exact(&t.path("keep"), 2 * MIB + 7);
    let w = walk_and_check(&t);
    if failures.is_empty() {
        assert_clean_log(&t);
    }
    println!("after the remount: {}", walk::summary(&w));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
