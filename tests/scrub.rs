//! `stablefs scrub` on real images: a data block damaged under an unmounted filesystem is found
//! and named by every path and offset; a damaged metadata copy is repaired and a second scrub
//! is clean; a mounted image and a directory that is not a stablefs mount are refused with a
//! clear message. (The online scrub, of a mountpoint: `tests/scrub_online.rs`.)

mod common;

use common::{output_within, stablefs_bin, TestFs};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn scrub(args: &[&str], path: &Path) -> Output {
    let mut cmd = Command::new(stablefs_bin());
    cmd.arg("scrub").args(args).arg(path);
    output_within(&mut cmd, Duration::from_secs(120))
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "scrub --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn flip(image: &Path, at: u64) {
    common::xor_byte(image, at, 0x20);
}

#[test]
fn offline_scrub_names_every_path_of_a_bad_block_and_repairs_metadata() {
    let mut t = TestFs::new();
    let marker = b"##SCRUB-MARKER-51c2##";
    let mut data = vec![0x5au8; 1 << 20];
    data[600_000..600_000 + marker.len()].copy_from_slice(marker);
    fs::create_dir(t.path("dir")).unwrap();
    fs::write(t.path("dir/victim"), &data).unwrap();
    fs::hard_link(t.path("dir/victim"), t.path("second-name")).unwrap();
    fs::write(t.path("bystander"), vec![0x33u8; 300_000]).unwrap();
    t.unmount();

    let o = scrub(&["--json"], &t.image);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(json(&o)["result"], "clean");

    let at = common::find_unique_in_image(&t.image, marker);
    flip(&t.image, at);
    let o = scrub(&["--json"], &t.image);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    assert_eq!(v["result"], "uncorrectable");
    assert_eq!(v["bad"].as_array().unwrap().len(), 1, "{v}");
    let bad = &v["bad"][0];
    assert_eq!(bad["kind"], "data");
    assert_eq!(bad["block"], at / 4096);
    assert_eq!(bad["offset"], 600_000 / 4096 * 4096);
    assert_eq!(
        bad["paths"],
        serde_json::json!(["/dir/victim", "/second-name"])
    );
    assert_eq!(bad["repaired"], false);
    // The text report says the same to a person.
    let o = scrub(&[], &t.image);
    assert_eq!(o.status.code(), Some(2));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("/dir/victim, /second-name at offset 598016"),
        "{text}"
    );
    flip(&t.image, at);

    // A metadata copy: the second copy of the root (the superblock says where).
    let sb = {
        let mut b = vec![0u8; 4096];
        fs::File::open(&t.image)
            .unwrap()
            .read_exact_at(&mut b, 0)
            .unwrap();
        let s1 = stablefs::format::Superblock::decode(&b);
        fs::File::open(&t.image)
            .unwrap()
            .read_exact_at(&mut b, 64 << 10)
            .unwrap();
        let s2 = stablefs::format::Superblock::decode(&b);
        [s1, s2]
            .into_iter()
            .flatten()
            .max_by_key(|s| s.generation)
            .unwrap()
    };
    let copy = sb.root.copy_addr.expect("metadata DUP by default");
    flip(&t.image, copy.0 * 4096 + 200);
    let o = scrub(&["--json"], &t.image);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    assert_eq!(v["result"], "corrected");
    assert_eq!(v["bad"][0]["kind"], "metadata");
    assert_eq!(v["bad"][0]["block"], copy.0);
    assert_eq!(v["bad"][0]["repaired"], true);
    let o = scrub(&[], &t.image);
    assert_eq!(o.status.code(), Some(0), "a second scrub is clean");

    // Everything still reads.
    t.mount();
    assert_eq!(fs::read(t.path("second-name")).unwrap(), data);
}

#[test]
fn a_mounted_filesystem_is_refused_clearly() {
    let t = TestFs::new();
    let o = scrub(&[], &t.image);
    assert_eq!(o.status.code(), Some(4));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot open"), "{err}");
    assert!(t.is_mounted());
    // A directory that is not on a stablefs mount has no daemon to ask.
    let o = scrub(&[], t.dir.path());
    assert_eq!(o.status.code(), Some(4));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not on a stablefs mount"), "{err}");
}
