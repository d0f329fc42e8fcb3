//! `stablefs status` on a real mount: the daemon's counters come back over the status ioctl,
//! text and JSON; a checksum error shows up in them; a directory that is not a stablefs mount
//! gets a clear answer.

mod common;

use common::{output_within, scratch_dir, stablefs_bin, TestFs};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn status(args: &[&str], path: &Path) -> Output {
    let mut cmd = Command::new(stablefs_bin());
    cmd.arg("status").args(args).arg(path);
    output_within(&mut cmd, Duration::from_secs(30))
}

fn json(path: &Path) -> serde_json::Value {
    let o = status(&["--json"], path);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn status_reports_the_daemons_counters_and_a_checksum_error() {
    let mut t = TestFs::new();
    let marker = b"##STATUS-MARKER-9e1##";
    let mut data = vec![0x42u8; 1 << 20];
    data[500_000..500_000 + marker.len()].copy_from_slice(marker);
    fs::write(t.path("f"), &data).unwrap();
    fs::File::open(t.path("f")).unwrap().sync_all().unwrap();
    let v = json(&t.mnt);
    assert_eq!(v["checksum_errors"], 0);
    assert!(v["bytes_written"].as_u64().unwrap() >= 1 << 20, "{v}");
    assert!(v["commits"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["read_only"], false);
    assert_eq!(v["last_scrub"], serde_json::Value::Null);
    // Any path in the mount works, and the text form says the same.
    let o = status(&[], &t.path("f"));
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("checksum errors: 0") && text.contains("last scrub: never"),
        "{text}"
    );

    t.unmount();
    let at = common::find_unique_in_image(&t.image, marker);
    common::xor_byte(&t.image, at, 0x01);
    t.mount();
    let e = fs::read(t.path("f")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    let v = json(&t.mnt);
    assert!(v["checksum_errors"].as_u64().unwrap() >= 1, "{v}");
}

#[test]
fn a_directory_that_is_not_stablefs_is_told_so() {
    let dir = scratch_dir();
    let o = status(&[], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not on a stablefs mount"), "{err}");
    let o = status(&[], &dir.path().join("missing"));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot open"));
}
