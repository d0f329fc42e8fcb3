//! What `fsync` promises, through a real mount: after fsync returns, the data survives the
//! daemon being killed with SIGKILL (no unmount, no final commit), and an unclean stop never
//! leaves a checksum error behind.

mod common;

use common::TestFs;
use std::fs::{self, File, OpenOptions};
use std::io::Write;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(89).wrapping_add(seed))
        .collect()
}

#[test]
fn fsynced_data_survives_sigkill() {
    let mut t = TestFs::new();
    fs::create_dir(t.path("dir")).unwrap();
    let mut f = File::create(t.path("dir/synced")).unwrap();
    f.write_all(&pattern(5 << 20, 1)).unwrap();
    f.sync_all().unwrap();
    // fsync of the directory makes the name durable too.
    File::open(t.path("dir")).unwrap().sync_all().unwrap();
    let mut g = OpenOptions::new()
        .append(true)
        .open(t.path("dir/synced"))
        .unwrap();
    g.write_all(b"appended").unwrap();
    g.sync_data().unwrap();
    // Data written after the last fsync may or may not survive, but must never corrupt.
    fs::write(t.path("dir/unsynced"), pattern(3 << 20, 2)).unwrap();
    t.kill9();
    t.mount();
    let mut expect = pattern(5 << 20, 1);
    expect.extend_from_slice(b"appended");
    assert_eq!(fs::read(t.path("dir/synced")).unwrap(), expect);
    if let Ok(d) = fs::read(t.path("dir/unsynced")) {
        let want = pattern(3 << 20, 2);
        assert!(d.len() <= want.len());
        assert!(
            d.iter().zip(&want).all(|(a, b)| a == b || *a == 0),
            "unsynced data is old, zero or new, never garbage"
        );
    }
    assert!(!t.log().contains("checksum error"), "{}", t.log());
}

#[test]
fn repeated_kills_during_writes_stay_clean() {
    let mut t = TestFs::new();
    for round in 0..5u8 {
        let name = format!("round{round}");
        let mut f = File::create(t.path(&name)).unwrap();
        f.write_all(&pattern(2 << 20, round)).unwrap();
        f.sync_all().unwrap();
        File::open(t.path("")).unwrap().sync_all().unwrap();
        // Keep writing while the daemon dies.
        let p = t.path("busy");
        let writer = std::thread::spawn(move || {
            for i in 0..200u32 {
                if fs::write(&p, pattern(256 << 10, i as u8)).is_err() {
                    break;
                }
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(30 + 40 * u64::from(round)));
        t.kill9();
        let _ = writer.join();
        t.mount();
        for r in 0..=round {
            assert_eq!(
                fs::read(t.path(&format!("round{r}"))).unwrap(),
                pattern(2 << 20, r),
                "round {r}"
            );
        }
        if let Ok(b) = fs::read(t.path("busy")) {
            assert!(b.len() <= 256 << 10);
        }
        assert!(!t.log().contains("checksum error"), "{}", t.log());
    }
}

#[test]
fn sigterm_and_sigint_unmount_cleanly() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut t = TestFs::new();
        fs::write(t.path("f"), b"kept").unwrap();
        // Unmounts, commits, exits 0 (asserted by the harness).
        t.stop_with_signal(sig);
        t.mount();
        assert_eq!(fs::read(t.path("f")).unwrap(), b"kept");
    }
}
