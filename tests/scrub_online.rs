//! `stablefs scrub MOUNTPOINT` on real mounts: the daemon scrubs while mounted. A data block
//! damaged in the image under the mount gives EIO on read and is reported by the online scrub
//! with every path and its offset (and by the offline scrub once unmounted); a damaged copy of
//! a tree node is repaired online and the next scrub is clean; a subtree scrub sees only its
//! own files' damage; pause, resume, cancel and status work, and the position survives an
//! unmount; `stablefs status` shows the last scrub.

mod common;

use common::{output_within, stablefs_bin, TestFs};
use stablefs::format::{decode_node, BlockPtr, Key, NodeBody, Superblock, KIND_INODE};
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn stablefs(args: &[&str], path: &Path) -> Output {
    let mut cmd = Command::new(stablefs_bin());
    cmd.args(args).arg(path);
    output_within(&mut cmd, Duration::from_secs(120))
}

#[track_caller]
fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[track_caller]
fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// `stablefs scrub --json PATH`, waiting for the end: (exit status, report).
#[track_caller]
fn scrub(path: &Path) -> (i32, serde_json::Value) {
    let o = stablefs(&["scrub", "--json"], path);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains('\r'),
        "no progress line when stderr is not a terminal"
    );
    (code(&o), json(&o))
}

#[track_caller]
fn scrub_status(mnt: &Path) -> serde_json::Value {
    let o = stablefs(&["scrub", "status", "--json"], mnt);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    json(&o)
}

#[track_caller]
fn status(mnt: &Path) -> serde_json::Value {
    let o = stablefs(&["status", "--json"], mnt);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    json(&o)
}

/// Polls `stablefs scrub status` until `cond` holds (bounded).
#[track_caller]
fn wait_status(
    mnt: &Path,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..600 {
        let s = scrub_status(mnt);
        if cond(&s) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: never happened: {}", scrub_status(mnt));
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn online_scrub_names_bad_data_under_a_mount_and_a_subtree_sees_only_its_own() {
    let mut t = TestFs::with("128M", &[], "");
    let marker = b"##ONLINE-SCRUB-MARKER-7d3a##";
    let mut data = vec![0x5au8; 1 << 20];
    data[600_000..600_000 + marker.len()].copy_from_slice(marker);
    fs::create_dir(t.path("dir")).unwrap();
    fs::create_dir(t.path("other")).unwrap();
    fs::write(t.path("dir/victim"), &data).unwrap();
    fs::hard_link(t.path("dir/victim"), t.path("second-name")).unwrap();
    fs::write(t.path("other/bystander"), vec![0x33u8; 300_000]).unwrap();
    fs::File::open(t.path("dir/victim"))
        .unwrap()
        .sync_all()
        .unwrap();
    assert_eq!(status(&t.mnt)["last_scrub"], serde_json::Value::Null);

    let (c, r) = scrub(&t.mnt);
    assert_eq!((c, r["result"].as_str()), (0, Some("clean")), "{r}");
    assert_eq!(u(&r["data_blocks"]), 256 + 74, "{r}");
    assert!(
        u(&r["metadata_nodes"]) >= 1 && u(&r["metadata_copies"]) >= 1,
        "{r}"
    );
    let last = &status(&t.mnt)["last_scrub"];
    assert_eq!(last["result"], "clean", "{last}");
    assert_eq!(u(&last["data_blocks"]), 256 + 74);

    // Damage behind the mounted filesystem's back.
    let at = common::find_unique_in_image(&t.image, marker);
    common::xor_byte(&t.image, at, 0x20);
    // A fresh open drops the kernel's cached pages of the file: the read goes to the device.
    let e = fs::read(t.path("second-name")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));

    let (c, r) = scrub(&t.mnt);
    assert_eq!((c, r["result"].as_str()), (2, Some("uncorrectable")), "{r}");
    assert_eq!(r["bad"].as_array().unwrap().len(), 1, "{r}");
    let bad = &r["bad"][0];
    assert_eq!(bad["kind"], "data");
    assert_eq!(u(&bad["block"]), at / 4096);
    assert_eq!(u(&bad["offset"]), 600_000 / 4096 * 4096);
    assert_eq!(
        bad["paths"],
        serde_json::json!(["/dir/victim", "/second-name"])
    );
    assert_eq!(bad["repaired"], false);
    let s = status(&t.mnt);
    assert!(u(&s["checksum_errors"]) >= 1, "{s}");
    assert_eq!(s["last_scrub"]["result"], "uncorrectable");
    // The text report says it to a person, and the exit status is the same.
    let o = stablefs(&["scrub"], &t.mnt);
    assert_eq!(code(&o), 2);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("/dir/victim, /second-name at offset 598016"),
        "{text}"
    );

    // A subtree: only the data of its files.
    let (c, r) = scrub(&t.path("other"));
    assert_eq!((c, r["result"].as_str()), (0, Some("clean")), "{r}");
    assert_eq!(u(&r["data_blocks"]), 74, "{r}");
    let (c, r) = scrub(&t.path("dir"));
    assert_eq!((c, u(&r["data_blocks"])), (2, 256), "{r}");

    // Unmounted, the offline scrub finds the same block.
    t.unmount();
    let o = stablefs(&["scrub", "--json"], &t.image);
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(u(&json(&o)["bad"][0]["block"]), at / 4096);
    t.mount();
}

/// The newest valid superblock of an image.
fn superblock(image: &Path) -> Superblock {
    let f = fs::File::open(image).unwrap();
    [0u64, 64 << 10]
        .into_iter()
        .filter_map(|off| {
            let mut b = vec![0u8; 4096];
            f.read_exact_at(&mut b, off).ok()?;
            Superblock::decode(&b).ok()
        })
        .max_by_key(|s| s.generation)
        .expect("a valid superblock")
}

/// The pointer to the leaf that holds `key`, found by reading the committed tree from the
/// image.
fn leaf_of(image: &Path, key: Key) -> BlockPtr {
    let sb = superblock(image);
    let id = stablefs::txn::identity(&sb);
    let f = fs::File::open(image).unwrap();
    let (mut ptr, mut level) = (sb.root, sb.root_level);
    loop {
        let mut b = vec![0u8; 4096];
        f.read_exact_at(&mut b, ptr.addr.0 * 4096).unwrap();
        match decode_node(&id, &b, &ptr, level).unwrap() {
            NodeBody::Leaf(items) => {
                assert!(
                    items.iter().any(|(k, _)| *k == key),
                    "the key is in the leaf"
                );
                return ptr;
            }
            NodeBody::Inner(children) => {
                let i = children.partition_point(|(k, _)| *k <= key).max(1) - 1;
                ptr = children[i].1;
                level -= 1;
            }
        }
    }
}

#[test]
fn a_damaged_node_copy_is_repaired_online_and_the_next_scrub_is_clean() {
    let t = TestFs::with("128M", &[], "");
    fs::create_dir(t.path("many")).unwrap();
    for i in 0..300 {
        fs::write(
            t.path(&format!("many/a-file-with-a-long-name-{i:04}")),
            b"x",
        )
        .unwrap();
    }
    let last = t.path("many/a-file-with-a-long-name-0299");
    let ino = fs::metadata(&last).unwrap().ino();
    fs::File::open(&last).unwrap().sync_all().unwrap();
    // The leaf holding the last file's inode: nothing changes it from here on (starting a
    // scrub changes only the leftmost leaf, which holds the scrub's own record).
    let leaf = leaf_of(&t.image, Key::new(ino, KIND_INODE, 0));
    assert_ne!(
        leaf,
        superblock(&t.image).root,
        "a tree of more than one node"
    );
    common::xor_byte(&t.image, leaf.addr.0 * 4096 + 300, 0x01);
    let repairs = u(&status(&t.mnt)["repairs"]);

    let (c, r) = scrub(&t.mnt);
    assert_eq!((c, r["result"].as_str()), (1, Some("corrected")), "{r}");
    let bad = &r["bad"][0];
    assert_eq!(
        (bad["kind"].as_str(), u(&bad["block"]), u(&bad["copy"])),
        (Some("metadata"), leaf.addr.0, 1),
        "{r}"
    );
    assert_eq!(bad["repaired"], true);
    let s = status(&t.mnt);
    assert_eq!(u(&s["repairs"]), repairs + 1, "{s}");
    assert_eq!(s["last_scrub"]["result"], "corrected");

    let (c, r) = scrub(&t.mnt);
    assert_eq!((c, r["result"].as_str()), (0, Some("clean")), "{r}");
    assert_eq!(status(&t.mnt)["last_scrub"]["result"], "clean");
}

#[test]
fn pause_resume_cancel_status_and_the_position_survives_a_remount() {
    let mut t = TestFs::with("128M", &[], "");
    fs::write(t.path("big"), vec![0x77u8; 16 << 20]).unwrap();
    fs::File::open(t.path("big")).unwrap().sync_all().unwrap();
    let o = stablefs(&["scrub", "pause"], &t.mnt);
    assert_eq!(code(&o), 4, "nothing to pause");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no scrub"));

    // Slow: 1 MiB/s, about 16 s for all, so it is caught mid-way.
    let o = stablefs(&["scrub", "--background", "--limit", "1M"], &t.mnt);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let s = wait_status(&t.mnt, "progress", |s| u(&s["position"]) > 0);
    let id = u(&s["id"]);
    assert_eq!(
        (s["state"].as_str(), u(&s["limit"])),
        (Some("running"), 1 << 20)
    );
    assert!(u(&s["total_bytes"]) >= 16 << 20, "{s}");
    let o = stablefs(&["scrub", "--background"], &t.mnt);
    assert_eq!(code(&o), 4, "one scrub at a time");
    assert!(String::from_utf8_lossy(&o.stderr).contains("already running"));

    assert_eq!(code(&stablefs(&["scrub", "pause"], &t.mnt)), 0);
    let paused = scrub_status(&t.mnt);
    assert_eq!(paused["state"], "paused");
    std::thread::sleep(Duration::from_millis(300));
    let s = scrub_status(&t.mnt);
    assert_eq!(s["position"], paused["position"], "no reads while paused");
    assert_eq!(s["bytes_read"], paused["bytes_read"]);
    // The text form says the same.
    let o = stablefs(&["scrub", "status"], &t.mnt);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("scrub paused") && text.contains("position: device block"),
        "{text}"
    );

    // Unmounted and mounted again: still paused, where it was.
    t.remount();
    let s = scrub_status(&t.mnt);
    assert_eq!(
        (s["state"].as_str(), u(&s["id"])),
        (Some("paused"), id),
        "{s}"
    );
    assert_eq!(s["position"], paused["position"]);
    assert_eq!(s["bytes_read"], paused["bytes_read"]);

    // Resumed: on from there, not from zero.
    assert_eq!(code(&stablefs(&["scrub", "resume"], &t.mnt)), 0);
    let s = wait_status(&t.mnt, "progress after the resume", |s| {
        u(&s["bytes_read"]) > u(&paused["bytes_read"])
    });
    assert!(
        u(&s["position"]) > u(&paused["position"]),
        "{s} after {paused}"
    );

    // Unmounted while running: it goes on by itself after the mount, from its position.
    t.remount();
    let s = scrub_status(&t.mnt);
    assert_eq!(
        (s["state"].as_str(), u(&s["id"])),
        (Some("running"), id),
        "{s}"
    );
    assert!(u(&s["position"]) >= u(&paused["position"]), "{s}");

    assert_eq!(code(&stablefs(&["scrub", "cancel"], &t.mnt)), 0);
    let s = scrub_status(&t.mnt);
    assert_eq!(s["state"], "idle");
    assert_eq!(s["last"]["result"], "cancelled");
    let st = status(&t.mnt);
    assert_eq!(st["last_scrub"]["result"], "cancelled", "{st}");
    let o = stablefs(&["status"], &t.mnt);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("last scrub: cancelled at "),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// Every offset of `marker` on the image, in address order.
fn hits(image: &Path, marker: &[u8]) -> Vec<u64> {
    common::read_file(image)
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker)
        .map(|(i, _)| i as u64)
        .collect()
}

/// copies=2, damaged under the mount: a bad first copy is healed by a read (right bytes,
/// counted, rewritten on the image); bad copies nobody reads are found by the online scrub,
/// which rewrites each from its other copy (exit 1, kind `data_copy`, the copy and the path);
/// the next scrub is clean and the image holds the right bytes again.
#[test]
fn copies2_damage_under_a_mount_is_healed_by_reads_and_by_the_online_scrub() {
    let t = TestFs::with("256M", &["--copies", "2"], "");
    let markers: [&[u8]; 3] = [
        b"##COPIES-ONLINE-A-51e0##",
        b"##COPIES-ONLINE-B-51e0##",
        b"##COPIES-ONLINE-C-51e0##",
    ];
    let mut data: Vec<u8> = (0..1usize << 20).map(|i| (i * 13 / 7) as u8).collect();
    for (k, m) in markers.iter().enumerate() {
        let at = 100_000 + k * 300_000;
        data[at..at + m.len()].copy_from_slice(m);
    }
    fs::write(t.path("victim"), &data).unwrap();
    fs::File::open(t.path("victim"))
        .unwrap()
        .sync_all()
        .unwrap();
    // Each marker twice: its first copy, and its second about half the device further on.
    let [a, b, c] = markers.map(|m| hits(&t.image, m));
    for h in [&a, &b, &c] {
        assert_eq!(h.len(), 2, "copies=2 puts each block on the image twice");
    }

    // A: the first copy, then a read: served from the second and rewritten.
    common::xor_byte(&t.image, a[0], 0x08);
    assert_eq!(fs::read(t.path("victim")).unwrap(), data);
    let s = status(&t.mnt);
    assert_eq!(
        (u(&s["data_bad_copies"]), u(&s["data_repairs"])),
        (1, 1),
        "{s}"
    );
    assert_eq!(u(&s["checksum_errors"]), 0, "{s}");
    assert_eq!(
        hits(&t.image, markers[0]),
        a,
        "the read rewrote the first copy"
    );

    // B's second copy and C's first copy, and no read: the online scrub finds and heals both.
    common::xor_byte(&t.image, b[1], 0x08);
    common::xor_byte(&t.image, c[0], 0x08);
    let (code, r) = scrub(&t.mnt);
    assert_eq!((code, r["result"].as_str()), (1, Some("corrected")), "{r}");
    let mut bad: Vec<(u64, u64, String)> = r["bad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            assert_eq!(x["kind"], "data_copy", "{x}");
            assert_eq!(x["repaired"], true, "{x}");
            assert_eq!(x["paths"], serde_json::json!(["/victim"]), "{x}");
            (u(&x["block"]), u(&x["copy"]), x["offset"].to_string())
        })
        .collect();
    bad.sort_unstable();
    let offset = |k: u64| ((100_000 + k * 300_000) / 4096 * 4096).to_string();
    let mut want = vec![(b[1] / 4096, 2, offset(1)), (c[0] / 4096, 1, offset(2))];
    want.sort_unstable();
    assert_eq!(bad, want, "{r}");
    assert_eq!(u(&r["data_blocks"]), 2 * 256, "both copies verified: {r}");
    let (code, r) = scrub(&t.mnt);
    assert_eq!((code, r["result"].as_str()), (0, Some("clean")), "{r}");
    assert_eq!(hits(&t.image, markers[1]), b);
    assert_eq!(hits(&t.image, markers[2]), c);
    let s = status(&t.mnt);
    assert_eq!(u(&s["data_repairs"]), 3, "{s}");
    assert_eq!(s["last_scrub"]["result"], "clean", "{s}");
    assert_eq!(fs::read(t.path("victim")).unwrap(), data);
}

/// An online scrub while another thread rewrites, deletes and recreates files through the
/// mount: blocks change owner under the scrub all the time, and it must never report one
/// (clean, exit 0, every time); the files read back right afterwards.
#[test]
fn no_false_report_while_files_are_rewritten_under_the_scrub() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let t = TestFs::with("256M", &[], "");
    for i in 0..8 {
        fs::write(t.path(&format!("f{i}")), vec![i as u8; 2 << 20]).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, dir) = (stop.clone(), t.path(""));
        std::thread::spawn(move || {
            let mut round = 0u32;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let i = round % 8;
                let p = dir.join(format!("f{i}"));
                if round % 3 == 0 {
                    fs::remove_file(&p).unwrap();
                }
                let fill = (round % 251) as u8;
                fs::write(&p, vec![fill; (1 + (round % 3) as usize) << 20]).unwrap();
                fs::File::open(&p).unwrap().sync_all().unwrap();
            }
            round
        })
    };
    for _ in 0..3 {
        // Slow enough (a few seconds) that the writer frees and reuses blocks meanwhile.
        let o = stablefs(&["scrub", "--json", "--limit", "8M"], &t.mnt);
        let r = json(&o);
        assert_eq!((code(&o), r["result"].as_str()), (0, Some("clean")), "{r}");
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert!(
        rounds >= 3,
        "the writer ran during the scrubs ({rounds} rounds)"
    );
    for i in 0..8 {
        let b = fs::read(t.path(&format!("f{i}"))).unwrap();
        assert!(b.iter().all(|&x| x == b[0]), "f{i} reads back whole");
    }
    let s = status(&t.mnt);
    assert_eq!(u(&s["checksum_errors"]), 0, "{s}");
}

/// `stablefs PATH...` on a pseudo-terminal (util-linux `script`): what the terminal shows.
fn on_a_terminal(args: &[&str]) -> String {
    let line = std::iter::once(stablefs_bin().display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"]);
    let o = output_within(&mut cmd, Duration::from_secs(120));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// On a terminal, scrub shows a progress line (done/total, rate, time left), redrawn in place,
/// online (a limited scrub: several redraws) and offline.
#[test]
fn a_terminal_gets_a_progress_line_online_and_offline() {
    let mut t = TestFs::with("128M", &[], "");
    fs::write(t.path("f"), vec![0x42u8; 12 << 20]).unwrap();
    let mnt = t.mnt.display().to_string();
    let shown = on_a_terminal(&["scrub", "--limit", "8M", &mnt]);
    let lines: Vec<&str> = shown
        .split('\r')
        .filter(|l| l.starts_with("scrub: "))
        .collect();
    assert!(lines.len() >= 2, "redrawn as it goes: {shown:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains(" MiB (") && l.contains(" MiB/s, ") && l.contains(" left")),
        "done/total, rate and time left: {shown:?}"
    );
    assert!(shown.contains("clean"), "then the report: {shown:?}");
    t.unmount();
    let shown = on_a_terminal(&["scrub", &t.image.display().to_string()]);
    assert!(
        shown.contains("\rscrub: ") && shown.contains(" MiB/s, "),
        "offline too: {shown:?}"
    );
}
