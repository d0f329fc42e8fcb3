//! `st_blocks` counts written data the moment it is written, as ext4 counts delayed
//! allocations, and never changes when a commit places that data. A differential test: the
//! same files, written the same way, on an ext4 loop mount and on stablefs, compared before
//! any commit (the mount's commits are off: `commit=3600,idle_commit=0`, and the daemon's
//! commit counter proves none ran), after `stablefs sync`, and after a remount.
//!
//! Why it matters: GNU tar (`tar -S`) takes a file whose `st_blocks` is 0 for all hole and
//! archives zeros; so a `tar -cSf` taken right after the writes must restore every file
//! byte for byte.

mod common;

use common::{open_rw, run, scratch_dir, stablefs_bin, Ext4, TestFs};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::process::Command;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

fn pattern(len: u64, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8 | 1)
        .collect()
}

fn fallocate(f: &File, mode: i32, offset: u64, len: u64) {
    // SAFETY: safe because the fd is open for the duration of the call and no memory is passed.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, offset as i64, len as i64) };
    assert_eq!(r, 0, "fallocate: {}", std::io::Error::last_os_error());
}

/// A way to write one file, applied to both filesystems.
type Shape = (&'static str, fn(&Path));

/// The first round: files of several sizes and shapes.
const WRITTEN: &[Shape] = &[
    ("small", |p| fs::write(p, pattern(100, 1)).unwrap()),
    ("dense", |p| fs::write(p, pattern(MIB, 2)).unwrap()),
    ("unaligned", |p| {
        let mut f = File::create(p).unwrap();
        for (k, n) in [
            (0u8, 5000u64),
            (1, 700_001),
            (2, 3 * MIB / 2 + 1234 - 705_001),
        ] {
            f.write_all(&pattern(n, 3 + k)).unwrap();
        }
    }),
    ("sparse", |p| {
        let f = open_rw(p);
        f.write_all_at(&pattern(4 * KIB, 4), 0).unwrap();
        f.write_all_at(&pattern(5000, 5), 10 * MIB + 100).unwrap();
        f.write_all_at(b"z", 20 * MIB - 1).unwrap();
    }),
    ("appended", |p| {
        for k in 0..300u64 {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap();
            f.write_all(&pattern(1000, k as u8)).unwrap();
        }
    }),
    ("rewritten", |p| {
        let f = open_rw(p);
        f.write_all_at(&pattern(MIB, 6), 0).unwrap();
        f.write_all_at(&pattern(512 * KIB, 7), 256 * KIB).unwrap();
        f.write_all_at(&pattern(3, 8), 4095).unwrap();
    }),
    ("fallocated", |p| {
        let f = open_rw(p);
        fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, MIB);
        f.write_all_at(&pattern(100 * KIB + 7, 9), 0).unwrap();
    }),
    ("truncated", |p| {
        let f = open_rw(p);
        f.write_all_at(&pattern(MIB, 10), 0).unwrap();
        f.set_len(300 * KIB + 5).unwrap();
        f.set_len(2 * MIB).unwrap();
    }),
    ("punched", |p| {
        let f = open_rw(p);
        f.write_all_at(&pattern(MIB, 11), 0).unwrap();
        fallocate(
            &f,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            256 * KIB,
            256 * KIB,
        );
    }),
];

/// The second round, after a commit: the same files changed again (overwrites of placed
/// blocks, appends past them, writes into their holes).
const CHANGED: &[Shape] = &[
    ("small", |p| {
        open_rw(p).write_all_at(&pattern(5000, 21), 50).unwrap()
    }),
    ("dense", |p| {
        let f = open_rw(p);
        f.write_all_at(&pattern(64 * KIB, 22), 8 * KIB).unwrap();
        f.write_all_at(&pattern(3 * KIB, 23), MIB).unwrap();
    }),
    ("sparse", |p| {
        open_rw(p)
            .write_all_at(&pattern(12 * KIB + 1, 24), 5 * MIB - 3)
            .unwrap()
    }),
    ("punched", |p| {
        open_rw(p)
            .write_all_at(&pattern(8 * KIB, 25), 300 * KIB)
            .unwrap()
    }),
    ("fallocated", |p| {
        open_rw(p)
            .write_all_at(&pattern(900 * KIB, 26), 124 * KIB)
            .unwrap()
    }),
];

/// The daemon's commit count (`stablefs status --json`).
fn commits(t: &TestFs) -> u64 {
    let out = run(Command::new(stablefs_bin())
        .args(["status", "--json"])
        .arg(&t.mnt));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["commits"].as_u64().expect("commits in the status report")
}

fn stablefs_sync(t: &TestFs) {
    run(Command::new(stablefs_bin()).arg("sync").arg(&t.mnt));
}

fn blocks(p: &Path) -> u64 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .blocks()
}

/// `st_blocks` of every file on stablefs, each checked against ext4's for the same file.
#[track_caller]
fn compare_with_ext4(t: &TestFs, ext4: &Ext4, names: &[&str], when: &str) -> Vec<u64> {
    names
        .iter()
        .map(|name| {
            let (ours, theirs) = (blocks(&t.path(name)), blocks(&ext4.path(name)));
            let size = fs::metadata(t.path(name)).unwrap().len();
            eprintln!("{when}: {name}: size {size}, st_blocks stablefs {ours}, ext4 {theirs}");
            assert!(
                ours >= theirs,
                "{when}: {name}: st_blocks {ours} on stablefs, {theirs} on ext4"
            );
            ours
        })
        .collect()
}

/// `tar -cSf` of `names` in `dir`, extracted elsewhere: every file comes back byte for byte.
#[track_caller]
fn tar_round_trip(dir: &Path, names: &[&str]) {
    let scratch = scratch_dir();
    let archive = scratch.path().join("a.tar");
    let out = scratch.path().join("out");
    fs::create_dir(&out).unwrap();
    run(Command::new("tar")
        .arg("-cSf")
        .arg(&archive)
        .arg("-C")
        .arg(dir)
        .args(names));
    run(Command::new("tar")
        .arg("-xSf")
        .arg(&archive)
        .arg("-C")
        .arg(&out));
    for name in names {
        let (want, got) = (
            fs::read(dir.join(name)).unwrap(),
            fs::read(out.join(name)).unwrap(),
        );
        assert!(
            want == got,
            "{name}: tar -S restored {} bytes that differ from the {} written",
            got.len(),
            want.len()
        );
    }
}

fn differential(mkfs_args: &[&str]) {
    let ext4 = Ext4::new("256M");
    let mut t = TestFs::with("1G", mkfs_args, "commit=3600,idle_commit=0");
    let names: Vec<&str> = WRITTEN.iter().map(|(n, _)| *n).collect();

    // Round 1: before any commit.
    let before = commits(&t);
    for (name, write) in WRITTEN {
        write(&ext4.path(name));
        write(&t.path(name));
    }
    let dirty = compare_with_ext4(&t, &ext4, &names, "written");
    tar_round_trip(&t.mnt, &names);
    assert_eq!(commits(&t), before, "a commit ran before the checks");
    // Placing the data changes nothing.
    stablefs_sync(&t);
    assert!(commits(&t) > before, "stablefs sync committed");
    assert_eq!(
        compare_with_ext4(&t, &ext4, &names, "committed"),
        dirty,
        "st_blocks changed when the commit placed the data"
    );
    t.remount();
    assert_eq!(compare_with_ext4(&t, &ext4, &names, "remounted"), dirty);

    // Round 2: committed files changed again, checked before their commit.
    let changed: Vec<&str> = CHANGED.iter().map(|(n, _)| *n).collect();
    let before = commits(&t);
    for (name, write) in CHANGED {
        write(&ext4.path(name));
        write(&t.path(name));
    }
    let dirty = compare_with_ext4(&t, &ext4, &changed, "changed");
    tar_round_trip(&t.mnt, &changed);
    assert_eq!(commits(&t), before, "a commit ran before the checks");
    stablefs_sync(&t);
    assert_eq!(
        compare_with_ext4(&t, &ext4, &changed, "committed again"),
        dirty
    );
    t.remount();
    assert_eq!(
        compare_with_ext4(&t, &ext4, &changed, "remounted again"),
        dirty
    );
    // And the files are what ext4 holds.
    for name in &names {
        assert!(
            fs::read(t.path(name)).unwrap() == fs::read(ext4.path(name)).unwrap(),
            "{name}: the contents differ from ext4's"
        );
    }
}

#[test]
fn st_blocks_counts_unwritten_back_data_like_ext4() {
    differential(&[]);
}

#[test]
fn st_blocks_counts_unwritten_back_data_like_ext4_with_copies_2() {
    differential(&["--copies", "2"]);
}
