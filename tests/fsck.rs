//! `stablefs fsck` from the command line, on image files: the fsck(8) exit statuses (0 clean,
//! 1 corrected, 4 uncorrected, 8 operational, 16 usage), the `--json` report, a repair that
//! the next mount sees, damaged metadata left alone, and a mounted image refused.
//!
//! Damage is made through the library on the unmounted image (a wrong commit built with
//! `Meta`, or a flipped byte in a tree node), as the in-process tests in `src/fsck/tests.rs`
//! do on memory images.

mod common;

use common::{mkfs, output_within, read_file, scratch_dir, stablefs_bin, write_file, TestFs};
use stablefs::device::FileDevice;
use stablefs::format::{InodeItem, Key, Superblock, KIND_INODE, SB_SIZE, SB_SLOT_OFFSETS};
use stablefs::fs::ROOT_INO;
use stablefs::txn::{write_commit, Meta};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

fn stablefs_fsck(args: &[&str], image: &Path) -> Output {
    output_within(
        Command::new(stablefs_bin())
            .arg("fsck")
            .args(args)
            .arg(image),
        Duration::from_secs(120),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn expect_status(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("--json output does not parse ({e}):\n{}", text(&o.stdout)))
}

/// The current superblock of an image, read as plain bytes.
fn superblock(image: &Path) -> Superblock {
    let bytes = fs::read(image).unwrap();
    SB_SLOT_OFFSETS
        .iter()
        .filter_map(|&o| Superblock::decode(&bytes[o as usize..o as usize + SB_SIZE]).ok())
        .max_by_key(|sb| sb.generation)
        .expect("a valid superblock")
}

#[test]
fn a_fresh_image_is_clean_in_text_and_json() {
    let dir = scratch_dir();
    let image = dir.path().join("a.img");
    mkfs(&image, "64M", &[]);
    let o = stablefs_fsck(&[], &image);
    expect_status(&o, 0);
    assert!(
        text(&o.stdout).contains("superblock slot 1: valid"),
        "{}",
        text(&o.stdout)
    );
    assert!(text(&o.stderr).contains(": clean"), "{}", text(&o.stderr));
    let o = stablefs_fsck(&["--json"], &image);
    expect_status(&o, 0);
    let v = json(&o);
    assert_eq!(v["status"], "clean");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["stats"]["inodes"], 1);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn a_wrong_link_count_is_reported_then_repaired_and_the_mount_sees_it() {
    let mut t = TestFs::with("64M", &[], "");
    write_file(&t.path("f"), b"payload");
    fs::hard_link(t.path("f"), t.path("g")).unwrap();
    t.unmount();
    let ino = {
        let dev = Arc::new(FileDevice::open(&t.image, false).unwrap());
        let mut meta = Meta::open(dev.clone(), false).unwrap();
        // The file is the only inode besides the root.
        let ino = meta.next_ino - 1;
        assert_eq!(ino, ROOT_INO + 1);
        let key = Key::new(ino, KIND_INODE, 0);
        let mut inode = InodeItem::decode(&meta.tree.get(&key).unwrap().unwrap()).unwrap();
        assert_eq!(inode.nlink, 2);
        inode.nlink = 9;
        meta.tree.insert(key, inode.encode()).unwrap();
        let mut plan = meta.prepare_commit(0).unwrap();
        write_commit(&*dev, &mut plan).unwrap();
        ino
    };
    let o = stablefs_fsck(&["--json"], &t.image);
    expect_status(&o, 4);
    let v = json(&o);
    assert_eq!(v["status"], "uncorrected");
    assert_eq!(v["problems"][0]["check"], "link_count");
    assert_eq!(v["problems"][0]["ino"], ino);
    let o = stablefs_fsck(&["--repair"], &t.image);
    expect_status(&o, 1);
    assert!(
        text(&o.stdout).contains("link count 9 -> 2"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        text(&o.stderr).contains("all corrected"),
        "{}",
        text(&o.stderr)
    );
    expect_status(&stablefs_fsck(&[], &t.image), 0);
    t.mount();
    let meta = fs::metadata(t.path("g")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 2);
    assert_eq!(read_file(&t.path("f")), b"payload");
}

/// Flips one bit 300 bytes into block `block` of `image`.
fn flip_bit(image: &Path, block: u64, block_size: u32) {
    common::xor_byte(image, block * u64::from(block_size) + 300, 1);
}

#[test]
fn a_bad_copy_of_a_dup_node_is_reported_and_a_mount_rewrites_it() {
    let dir = scratch_dir();
    let image = dir.path().join("d.img");
    mkfs(&image, "64M", &[]);
    let sb = superblock(&image);
    let copy = sb.root.copy_addr.expect("metadata DUP by default");
    // The second copy: reported; mounts never read it while the first is good.
    flip_bit(&image, copy.0, sb.block_size);
    let o = stablefs_fsck(&["--json"], &image);
    expect_status(&o, 4);
    let v = json(&o);
    assert_eq!(v["problems"][0]["check"], "node_copy_damaged");
    assert_eq!(v["problems"][0]["block"], copy.0);
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v}");
    flip_bit(&image, copy.0, sb.block_size);
    expect_status(&stablefs_fsck(&[], &image), 0);
    // The first copy: reported, and the mount serves the root from the second and rewrites
    // the first, so fsck finds nothing afterwards.
    flip_bit(&image, sb.root.addr.0, sb.block_size);
    let o = stablefs_fsck(&["--json"], &image);
    expect_status(&o, 4);
    let v = json(&o);
    assert_eq!(v["problems"][0]["check"], "node_copy_damaged");
    assert_eq!(v["problems"][0]["block"], sb.root.addr.0);
    let mut t = TestFs::on_image(image.clone(), "");
    fs::write(t.path("after"), b"still writable").unwrap();
    t.unmount();
    assert!(
        t.log().contains("rewritten from its other copy"),
        "{}",
        t.log()
    );
    expect_status(&stablefs_fsck(&[], &image), 0);
}

#[test]
fn damaged_metadata_is_reported_and_left_alone() {
    let dir = scratch_dir();
    let image = dir.path().join("d.img");
    mkfs(&image, "64M", &[]);
    let sb = superblock(&image);
    // Both copies of the root: the tree cannot be read.
    flip_bit(&image, sb.root.addr.0, sb.block_size);
    flip_bit(&image, sb.root.copy_addr.unwrap().0, sb.block_size);
    let before = fs::read(&image).unwrap();
    let o = stablefs_fsck(&["--json"], &image);
    expect_status(&o, 4);
    let v = json(&o);
    assert_eq!(v["problems"][0]["check"], "node_damaged");
    assert_eq!(v["problems"][0]["block"], sb.root.addr.0);
    let o = stablefs_fsck(&["--repair"], &image);
    expect_status(&o, 4);
    assert!(
        text(&o.stdout).contains("repair refused"),
        "{}",
        text(&o.stdout)
    );
    assert!(fs::read(&image).unwrap() == before, "the image was written");
}

#[test]
fn a_mounted_image_is_refused() {
    let t = TestFs::with("64M", &[], "");
    for args in [&[][..], &["--repair"]] {
        let o = stablefs_fsck(args, &t.image);
        expect_status(&o, 8);
        assert!(text(&o.stderr).contains("mounted"), "{}", text(&o.stderr));
    }
    assert!(t.is_mounted());
}

#[test]
fn operational_and_usage_errors() {
    let dir = scratch_dir();
    let o = stablefs_fsck(&[], &dir.path().join("missing.img"));
    expect_status(&o, 8);
    assert!(
        text(&o.stderr).contains("cannot open"),
        "{}",
        text(&o.stderr)
    );
    let zeros = dir.path().join("zeros.img");
    fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
    let o = stablefs_fsck(&["--json"], &zeros);
    expect_status(&o, 8);
    let v = json(&o);
    assert_eq!(v["status"], "operational_error");
    assert!(v["error"].as_str().unwrap().contains("not a stablefs"));
    let o = stablefs_fsck(&["--frobnicate"], &zeros);
    expect_status(&o, 16);
}
