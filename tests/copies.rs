//! Data `copies=2` on real mounts: `mkfs --copies 2` writes every data block twice; a block
//! damaged in its first copy reads right (served from the second) and is rewritten, a damaged
//! second copy is repaired by an offline scrub, and a block damaged in both copies is `EIO`
//! while everything else reads. `stablefs status --json` shows the repairs, and a second scrub
//! is clean.

mod common;

use common::{output_within, stablefs_bin, TestFs};
use stablefs::device::FileDevice;
use stablefs::format::{ExtentItem, KIND_EXTENT};
use stablefs::tree::Visit;
use stablefs::txn::Meta;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

const BS: u64 = 4096;
const MARKER: &[u8] = b"##COPIES-MARKER-2b7d##";
const MARKER_AT: usize = 700_000;

fn tool(args: &[&str], path: &Path) -> Output {
    let mut cmd = Command::new(stablefs_bin());
    cmd.args(args).arg(path);
    output_within(&mut cmd, Duration::from_secs(120))
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn status(mnt: &Path) -> serde_json::Value {
    let o = tool(&["status", "--json"], mnt);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    json(&o)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(97).wrapping_add(seed))
        .collect()
}

/// A copies=2 filesystem holding `victim` (1 MiB with the marker) and `bystander`, unmounted;
/// returns it, the victim's bytes, and the byte offsets of the marker in the first and the
/// second copy of its block (found through the extent that maps it, not guessed).
fn damaged_setup() -> (TestFs, Vec<u8>, u64, u64) {
    let mut t = TestFs::with("256M", &["--copies", "2"], "");
    let mut data = pattern(1 << 20, 3);
    data[MARKER_AT..MARKER_AT + MARKER.len()].copy_from_slice(MARKER);
    fs::write(t.path("victim"), &data).unwrap();
    fs::write(t.path("bystander"), pattern(3 << 20, 8)).unwrap();
    t.unmount();
    let img = common::read_file(&t.image);
    let hits: Vec<u64> = img
        .windows(MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == MARKER)
        .map(|(i, _)| i as u64)
        .collect();
    assert_eq!(hits.len(), 2, "the marker is on the image twice (copies=2)");
    let dev = Arc::new(FileDevice::open(&t.image, true).unwrap());
    let mut meta = Meta::open(dev, false).unwrap();
    let (first, total) = (meta.sb.first_block, meta.sb.total_blocks);
    let mut pair = None;
    meta.tree
        .walk(&mut |v| {
            if let Visit::Item { key, value } = v {
                if key.kind == KIND_EXTENT {
                    let e = ExtentItem::decode(value, first, total)?;
                    let copy = e.copy_start.expect("every extent has a second copy");
                    for &h in &hits {
                        let b = h / BS;
                        if (e.disk_start..e.disk_start + e.len()).contains(&b) {
                            let second = (copy + b - e.disk_start) * BS + h % BS;
                            pair = Some((h, second));
                        }
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let (a, b) = pair.expect("an extent maps the marker's block");
    assert!(hits.contains(&b), "the second copy holds the marker too");
    assert!(
        a.abs_diff(b) >= 64 << 20,
        "the copies are far apart: {a} {b}"
    );
    (t, data, a, b)
}

fn scrub_json(image: &Path) -> (Option<i32>, serde_json::Value) {
    let o = tool(&["scrub", "--json"], image);
    (o.status.code(), json(&o))
}

#[test]
fn mkfs_says_how_many_copies_it_made() {
    let dir = common::scratch_dir();
    let img = dir.path().join("c.img");
    let o = tool(&["mkfs", "--size", "64M", "--copies", "2"], &img);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("data copies 2"), "{out}");
    let o = tool(&["mkfs", "--size", "64M", "--copies", "3", "--force"], &img);
    assert_ne!(o.status.code(), Some(0));
    let o = tool(&["mkfs", "--size", "64M", "--force"], &img);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("data copies 1"), "{out}");
}

#[test]
fn a_bad_first_copy_reads_right_and_is_rewritten() {
    let (mut t, data, first, second) = damaged_setup();
    common::xor_byte(&t.image, first + 5, 0x20);
    t.mount();
    let v = status(&t.mnt);
    assert_eq!(v["data_copies"], 2, "{v}");
    assert_eq!(fs::read(t.path("victim")).unwrap(), data);
    assert_eq!(fs::read(t.path("bystander")).unwrap(), pattern(3 << 20, 8));
    let v = status(&t.mnt);
    assert_eq!(v["data_bad_copies"], 1, "{v}");
    assert_eq!(v["data_repairs"], 1, "{v}");
    assert_eq!(v["checksum_errors"], 0, "{v}");
    let log = t.log();
    assert!(log.contains("served from its second copy"), "{log}");
    t.unmount();
    // The bad block on the image was rewritten from the good copy.
    let f = File::open(&t.image).unwrap();
    let mut got = vec![0u8; MARKER.len()];
    f.read_exact_at(&mut got, first).unwrap();
    assert_eq!(got, MARKER);
    f.read_exact_at(&mut got, second).unwrap();
    assert_eq!(got, MARKER);
    let (code, v) = scrub_json(&t.image);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["result"], "clean");
}

#[test]
fn a_bad_second_copy_is_repaired_by_scrub() {
    let (mut t, data, _, second) = damaged_setup();
    common::xor_byte(&t.image, second + 5, 0x20);
    t.mount();
    // Reads use the first copy: nothing to see.
    assert_eq!(fs::read(t.path("victim")).unwrap(), data);
    let v = status(&t.mnt);
    assert_eq!(
        (v["data_bad_copies"].as_u64(), v["checksum_errors"].as_u64()),
        (Some(0), Some(0))
    );
    t.unmount();
    let (code, v) = scrub_json(&t.image);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["result"], "corrected");
    let bad = v["bad"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{v}");
    assert_eq!(bad[0]["kind"], "data_copy");
    assert_eq!(bad[0]["copy"], 2);
    assert_eq!(bad[0]["block"], second / BS);
    assert_eq!(bad[0]["offset"], (MARKER_AT as u64 / BS) * BS);
    assert_eq!(bad[0]["paths"], serde_json::json!(["/victim"]));
    assert_eq!(bad[0]["repaired"], true);
    let (code, v) = scrub_json(&t.image);
    assert_eq!(code, Some(0), "a second scrub is clean: {v}");
    t.mount();
    assert_eq!(fs::read(t.path("victim")).unwrap(), data);
}

#[test]
fn a_block_bad_in_both_copies_is_eio_and_the_rest_reads() {
    let (mut t, data, first, second) = damaged_setup();
    common::xor_byte(&t.image, first + 5, 0x20);
    common::xor_byte(&t.image, second + 9, 0x20);
    t.mount();
    let bad_block = MARKER_AT as u64 / BS;
    let f = File::open(t.path("victim")).unwrap();
    let mut buf = vec![0u8; BS as usize];
    let e = f.read_exact_at(&mut buf, bad_block * BS).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    for b in (0..data.len() as u64 / BS).filter(|&b| b != bad_block) {
        f.read_exact_at(&mut buf, b * BS).unwrap();
        assert!(
            buf[..] == data[(b * BS) as usize..((b + 1) * BS) as usize],
            "block {b}"
        );
    }
    assert_eq!(fs::read(t.path("bystander")).unwrap(), pattern(3 << 20, 8));
    let v = status(&t.mnt);
    assert!(v["checksum_errors"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["data_bad_copies"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["data_repairs"], 0, "{v}");
    let log = t.log();
    assert!(log.contains("both copies are bad"), "{log}");
    drop(f);
    t.unmount();
    let (code, v) = scrub_json(&t.image);
    assert_eq!(code, Some(2), "{v}");
    let bad = v["bad"].as_array().unwrap();
    let blocks: Vec<u64> = bad.iter().map(|b| b["block"].as_u64().unwrap()).collect();
    assert_eq!(blocks, vec![first / BS, second / BS], "{v}");
    assert!(bad.iter().all(|b| b["repaired"] == false), "{v}");
}
