//! The online scrub on an `Fs` over a `MemDevice`, no mount: clean, damaged data named by
//! every path, a bad node copy repaired, blocks that changed owner not reported (the race
//! re-check), no false positive under a concurrent writer, pause/resume/cancel, and the
//! position and the last result kept across a remount.

use super::*;
use crate::device::{BlockDevice, MemDevice};
use crate::format::{KIND_INODE, SCRUB_CURRENT};
use crate::fs::{Caller, Fs, MountOptions};
use crate::mkfs::{mkfs, MkfsOptions};
use crate::scrub::control::ScrubStatus;

const ROOT: Caller = Caller::ROOT;
const BS: u64 = 4096;

fn mount(dev: &Arc<MemDevice>) -> Arc<Fs> {
    Fs::mount(dev.clone(), MountOptions::default()).unwrap()
}

struct Files {
    /// /a/f, hard-linked as /b/g: three blocks.
    f: u64,
    /// /h: a few blocks.
    h: u64,
    /// The last of many small files (its items sit in the rightmost leaf).
    last: u64,
}

fn populated(mib: u64) -> (Arc<MemDevice>, Arc<Fs>, Files) {
    let dev = Arc::new(MemDevice::new(mib << 20, 512));
    mkfs(dev.clone(), &MkfsOptions::default()).unwrap();
    let fs = mount(&dev);
    let a = fs.mkdir(ROOT_INO, b"a", 0o755, ROOT).unwrap().ino;
    let b = fs.mkdir(ROOT_INO, b"b", 0o755, ROOT).unwrap().ino;
    let f = fs
        .mknod(a, b"f", libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
        .ino;
    fs.write(f, 0, &vec![7u8; 3 * BS as usize], None).unwrap();
    fs.link(f, b, b"g").unwrap();
    let h = fs
        .mknod(ROOT_INO, b"h", libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
        .ino;
    fs.write(h, 0, &vec![9u8; 5 * BS as usize], None).unwrap();
    let many = fs.mkdir(ROOT_INO, b"many", 0o755, ROOT).unwrap().ino;
    let mut last = 0;
    for i in 0..300 {
        let name = format!("an-empty-file-with-a-long-name-{i:04}");
        last = fs
            .mknod(many, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT)
            .unwrap()
            .ino;
    }
    fs.sync().unwrap();
    (dev, fs, Files { f, h, last })
}

fn ask(fs: &Arc<Fs>, ino: u64, req: Request) -> Reply {
    fs.scrub_request(0, ino, req)
}

fn start(fs: &Arc<Fs>, ino: u64, limit: Option<u64>) -> u64 {
    let r = ask(fs, ino, Request::Start { limit });
    assert_eq!(r.error, None);
    r.status.unwrap().id
}

/// Waits (bounded) until `cond` holds for the status.
fn wait_for(fs: &Arc<Fs>, what: &str, cond: impl Fn(&ScrubStatus) -> bool) -> ScrubStatus {
    for _ in 0..6000 {
        let s = fs.scrub_status();
        if cond(&s) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{what}: never happened: {:?}", fs.scrub_status());
}

/// Starts a scrub of `ino` and returns its whole report once it has finished.
fn scrub_now(fs: &Arc<Fs>, ino: u64) -> ScrubReport {
    let id = start(fs, ino, None);
    wait_for(fs, "the scrub finishes", |s| {
        s.state == "idle" && s.last.as_ref().is_some_and(|l| l.id == id)
    });
    let mut report: Option<ScrubReport> = None;
    loop {
        let from = report.as_ref().map_or(0, |r| r.bad.len());
        let page = ask(fs, ino, Request::Report { from });
        let total = page.bad_total;
        let p = page.report.unwrap();
        match report.as_mut() {
            None => report = Some(p),
            Some(r) => r.bad.extend(p.bad),
        }
        if report.as_ref().unwrap().bad.len() >= total {
            return report.unwrap();
        }
    }
}

/// The data blocks of `ino` and every node (pointer, level, the first item key below it) of
/// the last commit.
fn layout(dev: &Arc<MemDevice>, ino: u64) -> (Vec<u64>, Vec<(BlockPtr, u8, Key)>) {
    let mut meta = Meta::open(dev.clone() as Arc<dyn BlockDevice>, false).unwrap();
    let c = collect(&mut meta, 0, u64::MAX, None, 1 << 20).unwrap();
    let mut data = Vec::new();
    let mut nodes = Vec::new();
    for p in c.pieces {
        match p {
            Piece::Data {
                disk,
                ino: i,
                crcs,
                copy: 1,
                ..
            } if i == ino => data.extend(disk..disk + crcs.len() as u64),
            Piece::Node {
                ptr,
                level,
                key,
                copy: 1,
                ..
            } => nodes.push((ptr, level, key)),
            _ => {}
        }
    }
    data.sort_unstable();
    (data, nodes)
}

fn flip(dev: &MemDevice, block: u64) {
    let at = block * BS + 100;
    let b = dev.peek(at, 1)[0];
    dev.poke(at, &[b ^ 0x10]);
}

#[test]
fn a_clean_filesystem_scrubs_clean_and_status_remembers_it() {
    let (_dev, fs, _) = populated(64);
    let r = scrub_now(&fs, ROOT_INO);
    assert_eq!((r.result, r.exit_code), ("clean", 0), "{}", r.to_text());
    assert_eq!(r.counts.data_blocks, 8);
    assert!(
        r.counts.metadata_nodes >= 3 && r.counts.metadata_copies == r.counts.metadata_nodes,
        "{r:?}"
    );
    let last = fs.status().last_scrub.unwrap();
    assert_eq!(last.result, "clean");
    assert_eq!(last.counts.data_blocks, 8);
}

#[test]
fn bad_data_is_named_by_every_path_and_offset() {
    let (dev, fs, files) = populated(64);
    let (blocks, _) = layout(&dev, files.f);
    assert_eq!(blocks.len(), 3);
    flip(&dev, blocks[1]);
    let r = scrub_now(&fs, ROOT_INO);
    assert_eq!(
        (r.result, r.exit_code),
        ("uncorrectable", 2),
        "{}",
        r.to_text()
    );
    assert_eq!(r.bad.len(), 1, "{}", r.to_text());
    assert_eq!(r.bad[0].block, blocks[1]);
    assert_eq!(
        r.bad[0].damage,
        Damage::Data {
            ino: files.f,
            offset: BS,
            paths: vec!["/a/f".into(), "/b/g".into()]
        }
    );
    assert!(fs.counters().checksum_errors >= 1);
    // A subtree without that file does not see it; one with it does.
    let b = fs.lookup(ROOT_INO, b"b").unwrap().ino;
    let many = fs.lookup(ROOT_INO, b"many").unwrap().ino;
    let r = scrub_now(&fs, many);
    assert_eq!(r.result, "clean", "{}", r.to_text());
    assert_eq!(r.counts.data_blocks, 0);
    let r = scrub_now(&fs, b);
    assert_eq!(r.result, "uncorrectable");
    assert_eq!(r.counts.data_blocks, 3);
}

#[test]
fn a_bad_node_copy_is_repaired_and_the_next_scrub_is_clean() {
    let (dev, fs, files) = populated(64);
    let (_, nodes) = layout(&dev, 0);
    // The leaf holding the last file's inode: starting a scrub changes only the leftmost leaf
    // (the scrub's own record) and the nodes above it.
    let key = Key::new(files.last, KIND_INODE, 0);
    let (ptr, _, _) = nodes
        .iter()
        .filter(|(_, level, k)| *level == 0 && *k <= key)
        .max_by_key(|(_, _, k)| *k)
        .copied()
        .unwrap();
    let repairs = fs.counters().metadata_repairs;
    flip(&dev, ptr.addr.0);
    let r = scrub_now(&fs, ROOT_INO);
    assert_eq!((r.result, r.exit_code), ("corrected", 1), "{}", r.to_text());
    assert_eq!(r.bad.len(), 1);
    assert_eq!(
        r.bad[0].damage,
        Damage::Metadata {
            node: ptr.addr.0,
            level: 0,
            copy: 1
        }
    );
    assert!(r.bad[0].repaired);
    assert_eq!(fs.counters().metadata_repairs, repairs + 1);
    let r = scrub_now(&fs, ROOT_INO);
    assert_eq!(r.result, "clean", "{}", r.to_text());
    assert_eq!(fs.status().last_scrub.unwrap().result, "clean");
}

#[test]
fn blocks_that_changed_owner_are_not_reported() {
    let (dev, fs, files) = populated(16);
    let bs = BS;
    // Work collected now, then the file it names is deleted and its blocks reused.
    let work = fs.scrub_collect(0, u64::MAX, ROOT_INO, 1024).unwrap();
    let stale: Vec<Piece> = work
        .pieces
        .into_iter()
        .filter(|p| matches!(p, Piece::Data { ino, .. } if *ino == files.h))
        .collect();
    assert_eq!(stale.iter().map(Piece::blocks).sum::<u64>(), 5);
    // The kernel's reference from mknod goes, so the unlink frees the blocks.
    fs.forget(files.h, 1);
    fs.unlink(ROOT_INO, b"h").unwrap();
    fs.sync().unwrap();
    fs.sync().unwrap();
    // New files until the allocator (next fit) has come round to h's blocks again.
    let stale_now = |dev: &MemDevice| -> usize {
        stale
            .iter()
            .map(|p| {
                let Piece::Data { disk, crcs, .. } = p else {
                    unreachable!()
                };
                let mut b = AlignedBuf::zeroed((bs as usize) * crcs.len());
                dev.read_at(disk * bs, &mut b).unwrap();
                verify_data_extent(crcs, &b, bs as usize).len()
            })
            .sum()
    };
    for k in 0..4000u32 {
        if stale_now(&dev) == 5 {
            break;
        }
        // Files as small as h, so they fit its hole; all deleted again every 16.
        let name = format!("new-{k}");
        let n = fs
            .mknod(ROOT_INO, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT)
            .unwrap()
            .ino;
        fs.write(n, 0, &vec![(k % 7) as u8 + 100; 5 * bs as usize], None)
            .unwrap();
        fs.forget(n, 1);
        fs.sync().unwrap();
        if k % 16 == 15 {
            for j in k - 15..=k {
                fs.unlink(ROOT_INO, format!("new-{j}").as_bytes()).unwrap();
            }
            fs.sync().unwrap();
        }
    }
    // The stale crcs do not match what is there now...
    assert_eq!(stale_now(&dev), 5, "h's blocks were reused");
    let mut buf = AlignedBuf::zeroed(RUN_BYTES as usize);
    for p in &stale {
        let out = scrub_run(&*fs, std::slice::from_ref(p), &mut buf, bs);
        // ...and yet nothing is reported: the tree no longer maps h there.
        assert!(out.bad.is_empty(), "{:?}", out.bad);
    }
    // A block still referenced that is bad is confirmed.
    let (blocks, _) = layout(&dev, files.f);
    flip(&dev, blocks[0]);
    let work = fs.scrub_collect(0, u64::MAX, ROOT_INO, 1024).unwrap();
    let mine: Vec<Piece> = work
        .pieces
        .into_iter()
        .filter(|p| matches!(p, Piece::Data { ino, .. } if *ino == files.f))
        .collect();
    let out = scrub_run(&*fs, &mine, &mut buf, bs);
    assert_eq!(out.bad.len(), 1);
    assert_eq!(out.bad[0].block, blocks[0]);
}

#[test]
fn no_false_positive_under_a_concurrent_writer() {
    let (_dev, fs, _) = populated(16);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (fs, done) = (fs.clone(), done.clone());
        std::thread::spawn(move || {
            let mut round = 0u32;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                // Rewrite, delete and recreate small files, committing each round: their
                // blocks are freed and reused while the scrub has them in its work.
                for k in 0..4u32 {
                    let name = format!("churn-{k}");
                    if let Ok(a) = fs.lookup(ROOT_INO, name.as_bytes()) {
                        fs.forget(a.ino, 2);
                        fs.unlink(ROOT_INO, name.as_bytes()).unwrap();
                    }
                    let ino = fs
                        .mknod(ROOT_INO, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT)
                        .unwrap()
                        .ino;
                    let data = vec![(round * 4 + k) as u8; (1 + k as usize) * BS as usize];
                    fs.write(ino, 0, &data, None).unwrap();
                }
                fs.sync().unwrap();
                round += 1;
            }
            round
        })
    };
    // Slow scrubs (runs of 8 blocks), so work waits a while between collecting and reading.
    for _ in 0..3 {
        let id = start(&fs, ROOT_INO, Some(256 << 10));
        wait_for(&fs, "the scrub finishes", |s| {
            s.state == "idle" && s.last.as_ref().is_some_and(|l| l.id == id)
        });
        let r = ask(&fs, ROOT_INO, Request::Report { from: 0 })
            .report
            .unwrap();
        assert_eq!(r.result, "clean", "{}", r.to_text());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert!(rounds > 0);
    assert_eq!(fs.counters().checksum_errors, 0);
}

#[test]
fn pause_resume_cancel_and_the_position_survive_a_remount() {
    let (dev, fs, _) = populated(64);
    let big = fs
        .mknod(ROOT_INO, b"big", libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
        .ino;
    fs.write(big, 0, &vec![3u8; 4 << 20], None).unwrap();
    fs.sync().unwrap();
    // 1 MiB/s: runs of 128 KiB, so a few seconds for all.
    let id = start(&fs, ROOT_INO, Some(1 << 20));
    assert_eq!(
        ask(&fs, ROOT_INO, Request::Start { limit: None }).errno,
        Some(libc::EBUSY)
    );
    let s = wait_for(&fs, "progress", |s| s.position > 0 && s.done_bytes > 0);
    assert_eq!(
        (s.state.as_str(), s.id, s.limit),
        ("running", id, Some(1 << 20))
    );
    assert!(s.total_bytes > 4 << 20, "{s:?}");
    assert_eq!(ask(&fs, ROOT_INO, Request::Pause).error, None);
    let paused = fs.scrub_status();
    assert_eq!(paused.state, "paused");
    // Paused: no more reads (a pause is answered once the read in flight, if any, is done).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fs.scrub_status().position, paused.position);
    assert_eq!(
        fs.scrub_status().counts.bytes_read,
        paused.counts.bytes_read
    );
    assert_eq!(
        ask(&fs, ROOT_INO, Request::Pause).errno,
        Some(libc::EALREADY)
    );

    // Across a remount it stays paused, where it was.
    fs.shutdown().unwrap();
    drop(fs);
    let fs = mount(&dev);
    let s = fs.scrub_status();
    assert_eq!(
        (s.state.as_str(), s.id, s.position),
        ("paused", id, paused.position)
    );
    assert_eq!(s.counts.bytes_read, paused.counts.bytes_read);

    // Resumed, it goes on from there, not from zero.
    assert_eq!(ask(&fs, ROOT_INO, Request::Resume).error, None);
    let s = wait_for(&fs, "progress after the resume", |s| {
        s.counts.bytes_read > paused.counts.bytes_read
    });
    assert!(s.position > paused.position, "{s:?} after {paused:?}");
    assert!(s.done_bytes >= paused.done_bytes, "{s:?}");

    // Running at unmount: it goes on by itself at the next mount, from its position.
    fs.shutdown().unwrap();
    drop(fs);
    let mut meta = Meta::open(dev.clone() as Arc<dyn BlockDevice>, false).unwrap();
    let saved = meta
        .tree
        .get(&Key::new(0, crate::format::KIND_SCRUB, SCRUB_CURRENT))
        .unwrap()
        .unwrap();
    let saved = ScrubItem::decode(&saved, SCRUB_CURRENT, meta.sb.total_blocks).unwrap();
    assert_eq!(saved.state, ScrubState::Running);
    assert!(saved.position >= s.position);
    let fs = mount(&dev);
    let s = wait_for(&fs, "progress after the remount", |s| {
        s.counts.bytes_read > saved.counts.bytes_read
    });
    assert_eq!((s.state.as_str(), s.id), ("running", id));
    assert!(s.position > saved.position);

    assert_eq!(ask(&fs, ROOT_INO, Request::Cancel).error, None);
    let s = fs.scrub_status();
    assert_eq!(s.state, "idle");
    assert_eq!(
        s.last.as_ref().map(|l| l.result.as_str()),
        Some("cancelled")
    );
    let r = ask(&fs, ROOT_INO, Request::Report { from: 0 })
        .report
        .unwrap();
    assert_eq!((r.result, r.exit_code), ("cancelled", EXIT_OPERATIONAL));
    assert_eq!(
        ask(&fs, ROOT_INO, Request::Resume).errno,
        Some(libc::ENOENT)
    );
    fs.shutdown().unwrap();
    drop(fs);
    let fs = mount(&dev);
    assert_eq!(fs.status().last_scrub.unwrap().result, "cancelled");
    assert_eq!(fs.scrub_status().state, "idle");
}

#[test]
fn only_root_or_the_owner_controls_and_anyone_reads_status() {
    let (_dev, fs, _) = populated(16);
    let owner = nix::unistd::getuid().as_raw();
    let stranger = if owner == 4242 { 4243 } else { 4242 };
    let r = fs.scrub_request(stranger, ROOT_INO, Request::Start { limit: None });
    assert_eq!(r.errno, Some(libc::EPERM));
    let r = fs.scrub_request(stranger, ROOT_INO, Request::Status);
    assert_eq!(r.error, None);
    assert_eq!(r.status.unwrap().state, "idle");
}

#[test]
fn a_read_only_mount_scrubs_but_writes_nothing() {
    let (dev, fs, files) = populated(64);
    let (_, nodes) = layout(&dev, 0);
    let key = Key::new(files.last, KIND_INODE, 0);
    let (ptr, _, _) = nodes
        .iter()
        .filter(|(_, level, k)| *level == 0 && *k <= key)
        .max_by_key(|(_, _, k)| *k)
        .copied()
        .unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    flip(&dev, ptr.copy_addr.unwrap().0);
    let fs = Fs::mount(
        dev.clone(),
        MountOptions {
            read_only: true,
            ..MountOptions::default()
        },
    )
    .unwrap();
    let writes = dev.write_count();
    let r = scrub_now(&fs, ROOT_INO);
    assert_eq!(r.bad.len(), 1, "{}", r.to_text());
    assert!(!r.bad[0].repaired);
    assert_eq!(
        dev.write_count(),
        writes,
        "nothing written on a read-only mount"
    );
    assert!(fs.scrub_status().read_only);
}

/// copies=2: a bad copy of a data block (either one) is rewritten from the other by the
/// online scrub (corrected) and the next scrub is clean; a block bad in both copies is
/// uncorrectable and both copies are named; reads of the repaired blocks are right.
#[test]
fn copies2_bad_data_copies_are_repaired_online_and_both_bad_is_named() {
    let dev = Arc::new(MemDevice::new(64 << 20, 512));
    let opts = MkfsOptions {
        data_copies: 2,
        ..MkfsOptions::default()
    };
    mkfs(dev.clone(), &opts).unwrap();
    let fs = mount(&dev);
    let f = fs
        .mknod(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
        .ino;
    let data: Vec<u8> = (0..4 * BS as usize).map(|i| (i / 7) as u8).collect();
    fs.write(f, 0, &data, None).unwrap();
    fs.sync().unwrap();
    // Both copies of each of the file's blocks, in file order.
    let mut meta = Meta::open(dev.clone() as Arc<dyn BlockDevice>, false).unwrap();
    let c = collect(&mut meta, 0, u64::MAX, None, 1 << 20).unwrap();
    let mut copies: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    for p in &c.pieces {
        if let Piece::Data {
            disk,
            ino,
            crcs,
            copy,
            ..
        } = p
        {
            if *ino == f {
                copies[usize::from(*copy) - 1].extend(*disk..disk + crcs.len() as u64);
            }
        }
    }
    assert_eq!((copies[0].len(), copies[1].len()), (4, 4), "{c:?}");
    // Block 1: second copy bad; block 2: first copy bad.
    flip(&dev, copies[1][1]);
    flip(&dev, copies[0][2]);
    let r = scrub_now(&fs, ROOT_INO);
    assert_eq!((r.result, r.exit_code), ("corrected", 1), "{}", r.to_text());
    assert_eq!(r.counts.data_blocks, 8, "both copies are verified");
    let mut bad: Vec<(u64, u8, bool)> = r
        .bad
        .iter()
        .map(|b| match &b.damage {
            Damage::DataCopy {
                ino,
                offset,
                paths,
                copy,
            } => {
                assert_eq!((*ino, paths.clone()), (f, vec!["/f".to_string()]));
                (*offset, *copy, b.repaired)
            }
            d => panic!("not a data copy: {d:?}"),
        })
        .collect();
    bad.sort_unstable();
    assert_eq!(bad, [(BS, 2, true), (2 * BS, 1, true)]);
    assert_eq!(fs.counters().data_repairs, 2);
    let r = scrub_now(&fs, ROOT_INO);
    assert_eq!((r.result, r.exit_code), ("clean", 0), "{}", r.to_text());
    assert_eq!(fs.read(f, 0, data.len() as u32).unwrap(), data);
    // Block 3 bad in both copies: uncorrectable, both named, nothing rewritten.
    flip(&dev, copies[0][3]);
    flip(&dev, copies[1][3]);
    let repairs = fs.counters().data_repairs;
    let r = scrub_now(&fs, ROOT_INO);
    assert_eq!(
        (r.result, r.exit_code),
        ("uncorrectable", 2),
        "{}",
        r.to_text()
    );
    let mut blocks: Vec<u64> = r.bad.iter().map(|b| b.block).collect();
    blocks.sort_unstable();
    let mut want = vec![copies[0][3], copies[1][3]];
    want.sort_unstable();
    assert_eq!(blocks, want);
    assert!(r.bad.iter().all(|b| !b.repaired));
    assert_eq!(fs.counters().data_repairs, repairs);
    fs.shutdown().unwrap();
}

/// `--limit`: an online scrub reads no faster than its limit (it takes at least its bytes over
/// the rate, less one run's worth: the first run is not waited for).
#[test]
fn the_online_rate_limit_holds() {
    let (_dev, fs, _) = populated(64);
    let limit = 256u64 << 10;
    let begun = Instant::now();
    let id = start(&fs, ROOT_INO, Some(limit));
    wait_for(&fs, "the limited scrub finishes", |s| {
        s.state == "idle" && s.last.as_ref().is_some_and(|l| l.id == id)
    });
    let took = begun.elapsed().as_secs_f64();
    let r = ask(&fs, ROOT_INO, Request::Report { from: 0 })
        .report
        .unwrap();
    assert_eq!(r.result, "clean", "{}", r.to_text());
    let one_run = (limit / RUNS_PER_SECOND) as f64;
    let min = (r.counts.bytes_read as f64 - one_run) / limit as f64;
    assert!(min > 0.2, "enough to read for the limit to show: {r:?}");
    assert!(
        took >= min * 0.95,
        "{took:.3} s < {min:.3} s at {limit} B/s"
    );
}
