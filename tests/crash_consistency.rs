//! Power cuts at every write and flush index, in-process, over the real filesystem code: a
//! `CrashDevice` under `Fs`, a seeded workload with a model, a cut, a crash image (any subset
//! of the unflushed writes, in any order, one torn at sector boundaries), and a remount.
//!
//! After every cut `stablefs fsck` must find nothing wrong with the image (before the mount
//! and again after the recovered filesystem's unmount), the filesystem must mount, every byte
//! of every file must read without a checksum error, and the whole visible state (names, file contents, symlinks, xattrs) must be
//! exactly the state of the last commit that `fsync` returned for, or of the commit that was in
//! flight at the cut — commits are atomic, and nothing synced is lost. A failure names the
//! workload seed and cut index that reproduce it.

use stablefs::device::{BlockDevice, CrashDevice, MemDevice, SplitMix};
use stablefs::fs::{Caller, FileKind, Fs, Ino, MountOptions, ROOT_INO};
use stablefs::fsck::{fsck, FsckOptions};
use stablefs::mkfs::{mkfs, MkfsOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

const ROOT: Caller = Caller::ROOT;
const IMAGE: u64 = 8 << 20;

/// What a path holds, as seen through the filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File {
        data: Vec<u8>,
        xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    },
    Symlink(Vec<u8>),
}

type State = BTreeMap<String, Node>;

fn opts() -> MountOptions {
    // No background commits: the workload's syncs are the only commits, so the model knows
    // every state that may be on the medium.
    MountOptions {
        commit_interval_secs: 1 << 30,
        ..MountOptions::default()
    }
}

fn fresh_image() -> Vec<u8> {
    let dev = Arc::new(MemDevice::new(IMAGE, 512));
    mkfs(dev.clone(), &MkfsOptions::default()).unwrap();
    dev.snapshot()
}

/// Reads the whole visible state (every byte of every file).
fn walk(fs: &Fs) -> Result<State, String> {
    let mut out = State::new();
    walk_dir(fs, ROOT_INO, "", &mut out)?;
    Ok(out)
}

fn walk_dir(fs: &Fs, dir: Ino, prefix: &str, out: &mut State) -> Result<(), String> {
    let mut cookie = 0;
    loop {
        let entries = fs
            .readdir(dir, cookie, 128)
            .map_err(|e| format!("readdir {prefix}/: {e}"))?;
        let Some(last) = entries.last() else { break };
        cookie = last.cookie;
        for e in entries {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let path = format!("{prefix}/{}", String::from_utf8_lossy(&e.name));
            let node = match e.kind {
                FileKind::Dir => {
                    walk_dir(fs, e.ino, &path, out)?;
                    Node::Dir
                }
                FileKind::Symlink => {
                    Node::Symlink(fs.readlink(e.ino).map_err(|x| format!("{path}: {x}"))?)
                }
                _ => {
                    let size = fs.getattr(e.ino).map_err(|x| format!("{path}: {x}"))?.size;
                    let data = fs
                        .read(e.ino, 0, size as u32 + 1)
                        .map_err(|x| format!("read {path}: {x}"))?;
                    let mut xattrs = BTreeMap::new();
                    let names = fs.listxattr(e.ino).map_err(|x| format!("{path}: {x}"))?;
                    for n in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
                        xattrs.insert(
                            n.to_vec(),
                            fs.getxattr(e.ino, n).map_err(|x| format!("{path}: {x}"))?,
                        );
                    }
                    Node::File { data, xattrs }
                }
            };
            out.insert(path, node);
        }
    }
    Ok(())
}

/// The seeded workload, driving `fs` and the model together. Returns the last state a sync
/// returned for and the state of a sync that failed (in flight at the cut), if any.
fn workload(fs: &Fs, seed: u64) -> (State, Option<State>) {
    let mut rng = SplitMix(seed);
    let mut model = State::new();
    let mut synced = State::new();
    let names = ["a", "b", "c", "d", "e"];
    let dirs = ["", "/x", "/y"];
    for _ in 0..120 {
        let dir = dirs[rng.below(3) as usize];
        let path = format!("{dir}/{}", names[rng.below(5) as usize]);
        let other = format!(
            "{}/{}",
            dirs[rng.below(3) as usize],
            names[rng.below(5) as usize]
        );
        let r = match rng.below(12) {
            0 => mkdir(fs, &mut model, dir),
            1..=4 => write(fs, &mut model, &path, &mut rng),
            5 => truncate(fs, &mut model, &path, rng.below(70_000)),
            6 => rename(fs, &mut model, &path, &other),
            7 => link(fs, &mut model, &path, &other),
            8 => unlink(fs, &mut model, &path),
            9 if rng.coin() => setxattr(fs, &mut model, &path, rng.below(3)),
            9 => fallocate(fs, &mut model, &path, &mut rng),
            10 => symlink(fs, &mut model, &path, &other),
            _ => {
                let inflight = model.clone();
                match fs.sync() {
                    Ok(()) => {
                        synced = inflight;
                        Ok(())
                    }
                    Err(_) => return (synced, Some(inflight)),
                }
            }
        };
        if r.is_err() {
            // The device died under a background step; what is in flight is the model now.
            return (synced, Some(model));
        }
    }
    let inflight = model.clone();
    match fs.sync() {
        Ok(()) => (inflight, None),
        Err(_) => (synced, Some(inflight)),
    }
}

type Step = Result<(), stablefs::Error>;

fn split(path: &str) -> (&str, &str) {
    let i = path.rfind('/').unwrap();
    (&path[..i], &path[i + 1..])
}

fn resolve(fs: &Fs, path: &str) -> Option<Ino> {
    let mut ino = ROOT_INO;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = fs.lookup(ino, part.as_bytes()).ok()?.ino;
    }
    Some(ino)
}

/// Errors that mean "the model says this op does not apply" are fine; EIO means the device died.
fn applied(r: Result<impl Sized, stablefs::Error>) -> Result<bool, stablefs::Error> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.errno() == libc::EIO => Err(e),
        Err(_) => Ok(false),
    }
}

fn mkdir(fs: &Fs, model: &mut State, dir: &str) -> Step {
    if dir.is_empty() || model.contains_key(dir) {
        return Ok(());
    }
    let (parent, name) = split(dir);
    let p = resolve(fs, parent).unwrap();
    if applied(fs.mkdir(p, name.as_bytes(), 0o755, ROOT))? {
        model.insert(dir.to_string(), Node::Dir);
    }
    Ok(())
}

fn parent_exists(model: &State, path: &str) -> bool {
    let (parent, _) = split(path);
    parent.is_empty() || model.get(parent) == Some(&Node::Dir)
}

/// Every path that names the same file as `path` (hard links share data in the model by
/// being updated together).
fn aliases(model: &State, fs: &Fs, path: &str) -> Vec<String> {
    let ino = resolve(fs, path);
    model
        .keys()
        .filter(|p| matches!(model[*p], Node::File { .. }) && resolve(fs, p) == ino)
        .cloned()
        .collect()
}

fn write(fs: &Fs, model: &mut State, path: &str, rng: &mut SplitMix) -> Step {
    if !parent_exists(model, path) || matches!(model.get(path), Some(Node::Dir | Node::Symlink(_)))
    {
        return Ok(());
    }
    if !model.contains_key(path) {
        let (parent, name) = split(path);
        let p = resolve(fs, parent).unwrap();
        if !applied(fs.mknod(p, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT))? {
            return Ok(());
        }
        model.insert(
            path.to_string(),
            Node::File {
                data: Vec::new(),
                xattrs: BTreeMap::new(),
            },
        );
    }
    let ino = resolve(fs, path).unwrap();
    let off = if rng.coin() {
        rng.below(16) * 4096
    } else {
        rng.below(60_000)
    };
    let max = if rng.coin() { 4096 } else { 40_000 };
    let len = 1 + rng.below(max) as usize;
    let byte = rng.below(256) as u8;
    let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
    if applied(fs.write(ino, off, &data, None))? {
        for p in aliases(model, fs, path) {
            if let Some(Node::File { data: d, .. }) = model.get_mut(&p) {
                let end = off as usize + len;
                if d.len() < end {
                    d.resize(end, 0);
                }
                d[off as usize..end].copy_from_slice(&data);
            }
        }
    }
    Ok(())
}

fn truncate(fs: &Fs, model: &mut State, path: &str, size: u64) -> Step {
    if !matches!(model.get(path), Some(Node::File { .. })) {
        return Ok(());
    }
    let ino = resolve(fs, path).unwrap();
    let set = stablefs::fs::SetAttr {
        size: Some(size),
        ..Default::default()
    };
    if applied(fs.setattr(ino, &set))? {
        for p in aliases(model, fs, path) {
            if let Some(Node::File { data, .. }) = model.get_mut(&p) {
                data.resize(size as usize, 0);
            }
        }
    }
    Ok(())
}

fn rename(fs: &Fs, model: &mut State, from: &str, to: &str) -> Step {
    let movable = matches!(model.get(from), Some(Node::File { .. } | Node::Symlink(_)));
    let target_ok = !matches!(model.get(to), Some(Node::Dir));
    if !movable || !target_ok || from == to || !parent_exists(model, to) {
        return Ok(());
    }
    let (fp, fname) = split(from);
    let (tp, tname) = split(to);
    let (a, b) = (resolve(fs, fp).unwrap(), resolve(fs, tp).unwrap());
    let same_file = model.contains_key(to) && resolve(fs, from) == resolve(fs, to);
    if applied(fs.rename(a, fname.as_bytes(), b, tname.as_bytes(), 0))? && !same_file {
        let node = model.remove(from).unwrap();
        model.insert(to.to_string(), node);
    }
    Ok(())
}

fn link(fs: &Fs, model: &mut State, from: &str, to: &str) -> Step {
    if !matches!(model.get(from), Some(Node::File { .. }))
        || model.contains_key(to)
        || !parent_exists(model, to)
    {
        return Ok(());
    }
    let (tp, tname) = split(to);
    let ino = resolve(fs, from).unwrap();
    if applied(fs.link(ino, resolve(fs, tp).unwrap(), tname.as_bytes()))? {
        model.insert(to.to_string(), model[from].clone());
    }
    Ok(())
}

fn unlink(fs: &Fs, model: &mut State, path: &str) -> Step {
    if !matches!(model.get(path), Some(Node::File { .. } | Node::Symlink(_))) {
        return Ok(());
    }
    let (p, name) = split(path);
    if applied(fs.unlink(resolve(fs, p).unwrap(), name.as_bytes()))? {
        model.remove(path);
    }
    Ok(())
}

fn setxattr(fs: &Fs, model: &mut State, path: &str, which: u64) -> Step {
    if !matches!(model.get(path), Some(Node::File { .. })) {
        return Ok(());
    }
    let ino = resolve(fs, path).unwrap();
    let name = format!("user.k{which}").into_bytes();
    let mut value = format!("v{}", path.len() as u64 * 7 + which).into_bytes();
    if which == 2 {
        // Too big for its bucket: out of line, in parts (the first sets a feature bit).
        value = value.repeat(3000);
    }
    if applied(fs.setxattr(ino, &name, &value, 0))? {
        for p in aliases(model, fs, path) {
            if let Some(Node::File { xattrs, .. }) = model.get_mut(&p) {
                xattrs.insert(name.clone(), value.clone());
            }
        }
    }
    Ok(())
}

/// fallocate: a reservation (growing the size unless KEEP_SIZE) or a punched hole.
fn fallocate(fs: &Fs, model: &mut State, path: &str, rng: &mut SplitMix) -> Step {
    if !matches!(model.get(path), Some(Node::File { .. })) {
        return Ok(());
    }
    let ino = resolve(fs, path).unwrap();
    let off = rng.below(80_000);
    let len = 1 + rng.below(30_000);
    let mode = match rng.below(3) {
        0 => 0,
        1 => libc::FALLOC_FL_KEEP_SIZE,
        _ => libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
    };
    if applied(fs.fallocate(ino, off, len, mode))? {
        for p in aliases(model, fs, path) {
            if let Some(Node::File { data, .. }) = model.get_mut(&p) {
                let end = (off + len) as usize;
                if mode & libc::FALLOC_FL_PUNCH_HOLE != 0 {
                    let hi = end.min(data.len());
                    if (off as usize) < hi {
                        data[off as usize..hi].fill(0);
                    }
                } else if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && data.len() < end {
                    data.resize(end, 0);
                }
            }
        }
    }
    Ok(())
}

fn symlink(fs: &Fs, model: &mut State, path: &str, target: &str) -> Step {
    if model.contains_key(path) || !parent_exists(model, path) {
        return Ok(());
    }
    let (p, name) = split(path);
    if applied(fs.symlink(
        resolve(fs, p).unwrap(),
        name.as_bytes(),
        target.as_bytes(),
        ROOT,
    ))? {
        model.insert(path.to_string(), Node::Symlink(target.as_bytes().to_vec()));
    }
    Ok(())
}

/// Time spent in fsck by this process, in microseconds (printed, never asserted on).
static FSCK_MICROS: AtomicU64 = AtomicU64::new(0);

/// fsck (check only) must find no error on `dev`.
fn fsck_clean(dev: Arc<MemDevice>, when: &str) -> Result<(), String> {
    let start = Instant::now();
    let report = fsck(dev, &FsckOptions::default());
    FSCK_MICROS.fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
    if report.exit_code != 0 {
        return Err(format!("fsck {when}:\n{}", report.to_text()));
    }
    Ok(())
}

/// One case: workload `seed` with the power cut at device operation `cut`, crash image from
/// `crash_seed`. Returns an error message naming the reproduction on a violation.
fn run_case(image: &[u8], seed: u64, cut: Option<u64>, crash_seed: u64) -> Result<u64, String> {
    let dev = Arc::new(CrashDevice::new(image.to_vec(), 512));
    let fs = Fs::mount(dev.clone(), opts()).map_err(|e| format!("first mount: {e}"))?;
    if let Some(c) = cut {
        dev.cut_at(dev.ops() + c);
    }
    let start_ops = dev.ops();
    let (synced, inflight) = workload(&fs, seed);
    let ops = dev.ops() - start_ops;
    drop(fs);
    let crashed = dev.crash_image(crash_seed, true);
    let after = Arc::new(MemDevice::from_bytes(crashed, 512));
    let repro = format!("workload seed {seed}, cut {cut:?}, crash seed {crash_seed}");
    fsck_clean(after.clone(), "after the crash").map_err(|e| format!("{repro}: {e}"))?;
    let fs = Fs::mount(after.clone() as Arc<dyn BlockDevice>, opts())
        .map_err(|e| format!("{repro}: mount failed: {e}"))?;
    let state = walk(&fs).map_err(|e| format!("{repro}: reading back: {e}"))?;
    if fs.counters().checksum_errors != 0 {
        return Err(format!("{repro}: checksum errors after the crash"));
    }
    if state != synced && Some(&state) != inflight.as_ref() {
        let diff = diff(&state, &synced);
        return Err(format!("{repro}: state after the crash is neither the synced nor the in-flight commit: {diff:?}"));
    }
    fs.shutdown()
        .map_err(|e| format!("{repro}: cannot commit after recovery: {e}"))?;
    drop(fs);
    fsck_clean(after, "after the recovered filesystem's unmount")
        .map_err(|e| format!("{repro}: {e}"))?;
    Ok(ops)
}

/// The first few paths where two states differ, for a failure message.
fn diff(found: &State, expected: &State) -> Vec<String> {
    found
        .keys()
        .chain(expected.keys())
        .filter(|k| found.get(*k) != expected.get(*k))
        .take(5)
        .map(|k| {
            format!(
                "{k}: found {:?} expected {:?}",
                found.get(k).map(short),
                expected.get(k).map(short)
            )
        })
        .collect()
}

fn short(n: &Node) -> String {
    match n {
        Node::Dir => "dir".into(),
        Node::Symlink(t) => format!("symlink {}", String::from_utf8_lossy(t)),
        Node::File { data, xattrs } => format!(
            "file {} bytes crc {:08x} {} xattrs",
            data.len(),
            crc32c::crc32c(data),
            xattrs.len()
        ),
    }
}

/// Every write and flush index of as many seeded workloads as it takes to reach the case
/// count (`STABLEFS_CRASH_CASES`, default 1,100; `benches/crash-long.sh` runs 100,000), each
/// crash image drawn anew.
#[test]
fn every_cut_point_recovers_to_a_synced_state() {
    let target: u64 = std::env::var("STABLEFS_CRASH_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1100);
    let first_seed: u64 = std::env::var("STABLEFS_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let image = fresh_image();
    let mut cases = 0;
    let mut seed = first_seed;
    while cases < target {
        // The uncut run tells how many device operations the workload issues.
        let total = run_case(&image, seed, None, 0).unwrap_or_else(|e| panic!("{e}"));
        for cut in 0..=total {
            for crash_seed in 0..3 {
                run_case(&image, seed, Some(cut), seed * 1000 + cut * 7 + crash_seed)
                    .unwrap_or_else(|e| panic!("{e}"));
                cases += 1;
            }
        }
        seed += 1;
    }
    println!(
        "{cases} crash cases (workload seeds {first_seed}..{seed}), every one recovered to a synced state; fsck (twice per case) took {} ms in all",
        FSCK_MICROS.load(Ordering::Relaxed) / 1000
    );
}

/// A medium that starts failing writes and flushes (reads still work) at every point of a
/// workload: the filesystem reports EIO, commits nothing more, keeps serving what it has, and
/// the medium holds the last commit that succeeded, intact.
#[test]
fn failing_writes_leave_the_last_commit_intact() {
    let image = fresh_image();
    let mut cases = 0;
    for seed in 100..102u64 {
        let total = run_case(&image, seed, None, 0).unwrap_or_else(|e| panic!("{e}"));
        for fail_at in 0..=total {
            let dev = Arc::new(CrashDevice::new(image.clone(), 512));
            let fs = Fs::mount(dev.clone(), opts()).unwrap();
            dev.fail_writes_at(dev.ops() + fail_at);
            let (synced, inflight) = workload(&fs, seed);
            let repro = format!("workload seed {seed}, writes failing from op {fail_at}");
            if dev.is_dead() {
                // Changes are refused from now on, with EIO, and nothing panics or hangs.
                let e = fs
                    .mknod(ROOT_INO, b"after-failure", libc::S_IFREG | 0o644, 0, ROOT)
                    .unwrap_err();
                assert_eq!(e.errno(), libc::EIO, "{repro}");
                assert_eq!(fs.sync().unwrap_err().errno(), libc::EIO, "{repro}");
                // The live mount still shows everything it had (from memory or the medium).
                for path in inflight.as_ref().unwrap_or(&synced).keys() {
                    assert!(
                        resolve(&fs, path).is_some(),
                        "{repro}: {path} vanished from the live mount"
                    );
                }
            }
            drop(fs);
            // Whatever the failing medium accepted, a whole commit is what mounts: the last good
            // one, or the one whose final flush failed after its superblock was written.
            let after = Arc::new(MemDevice::from_bytes(dev.all_writes_image(), 512));
            let fs =
                Fs::mount(after, opts()).unwrap_or_else(|e| panic!("{repro}: mount failed: {e}"));
            let state = walk(&fs).unwrap_or_else(|e| panic!("{repro}: {e}"));
            if state != synced && Some(&state) != inflight.as_ref() {
                let diff = diff(&state, &synced);
                panic!("{repro}: the medium holds neither the synced nor the in-flight commit: {diff:?}");
            }
            cases += 1;
        }
    }
    println!("{cases} failing-device cases");
}
