//! The corruption campaign: thousands of seeded cases, each one fault on the medium behind the
//! device trait (`CorruptDevice`); everything above it is the real code (`Fs`, the tree, the
//! allocator, mkfs).
//!
//! Per workload seed: mkfs, a first workload (directories, files of many sizes, xattrs),
//! committed; then a second workload (overwrites, appends, new files, a truncate, an unlink, a
//! rename, xattr changes) with a commit in the middle and an unmount at the end, on a device
//! that lies:
//! - at write time, one unit write (a 4 KiB block) is lost, misdirected onto a live block, or
//!   torn after 1-7 sectors;
//! - at rest, after a clean run: one bit flipped, or one block put back to an earlier
//!   version (stale), in a superblock, an inner tree node, a leaf or a data block.
//!
//! Then the image is mounted and everything read back against the model: every name, size,
//! listing, byte and xattr must be right, or the read must fail with `EIO` (or the mount
//! refuse). A wrong answer is a silent corruption; there must be none. The one allowed
//! difference: when the fault hit a superblock, the filesystem may come back at an earlier
//! commit (the medium lost the newer superblock; what it shows is still exactly a commit).
//! Metadata is DUP (mkfs's default), so damage to one copy of a node must be repaired.
//!
//! A quarter of the cases run on `copies=2` filesystems (every data block written twice), with
//! the damage at rest aimed at data: one copy of a data block (the first, which reads use, or
//! the second), or both copies of one block. One bad copy must be invisible to every read (the
//! first copy: served from the second and rewritten, counted), scrub must repair it and a second
//! scrub be clean; both copies bad must read as EIO and scrub name both, unrepaired.
//!
//! `STABLEFS_CORRUPT_CASES=N` (default 2,000; three quarters with one data copy, a quarter
//! with two) sets the number of cases, `STABLEFS_CORRUPT_SEED=S` the first workload seed; a
//! failure prints the workload seed, the copies and the case that reproduce it.

use stablefs::device::{CorruptDevice, MemDevice, SplitMix, WriteFault};
use stablefs::format::{ExtentItem, KIND_EXTENT, SB_SLOT_OFFSETS};
use stablefs::fs::Counters;
use stablefs::fs::{Caller, Fs, Ino, MountOptions, SetAttr, ROOT_INO};
use stablefs::mkfs::{mkfs, MkfsOptions};
use stablefs::scrub::{scrub, Damage, ScrubOptions};
use stablefs::tree::Visit;
use stablefs::txn::Meta;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const ROOT: Caller = Caller::ROOT;
const BS: u64 = 4096;
const IMAGE_BYTES: u64 = 16 << 20;
const XATTR: &[u8] = b"user.tag";

type R<T> = stablefs::Result<T>;

/// directory -> file -> (contents, value of user.tag)
type Model = BTreeMap<String, BTreeMap<String, (Vec<u8>, Vec<u8>)>>;

fn options() -> MountOptions {
    MountOptions {
        // No timer commits: the write sequence depends on the workload alone, so a fault
        // index names the same write in every run of a seed.
        commit_interval_secs: 3600,
        ..MountOptions::default()
    }
}

fn bytes(rng: &mut SplitMix, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(n);
    v
}

fn size(rng: &mut SplitMix) -> usize {
    const SIZES: [usize; 8] = [0, 1, 100, 4096, 5000, 12_288, 40_000, 150_001];
    SIZES[rng.below(SIZES.len() as u64) as usize]
}

fn dir_ino(fs: &Fs, dir: &str) -> R<Ino> {
    Ok(fs.lookup(ROOT_INO, dir.as_bytes())?.ino)
}

fn file_ino(fs: &Fs, dir: &str, file: &str) -> R<Ino> {
    Ok(fs.lookup(dir_ino(fs, dir)?, file.as_bytes())?.ino)
}

fn write_all(fs: &Fs, ino: Ino, offset: u64, data: &[u8]) -> R<()> {
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        fs.write(ino, offset + (i << 20) as u64, chunk, None)?;
    }
    Ok(())
}

fn new_file(fs: &Fs, rng: &mut SplitMix, m: &mut Model, dir: &str, file: &str) -> R<()> {
    let d = dir_ino(fs, dir)?;
    let ino = fs
        .mknod(d, file.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT)?
        .ino;
    let n = size(rng);
    let data = bytes(rng, n);
    write_all(fs, ino, 0, &data)?;
    let n = 20 + rng.below(180) as usize;
    let tag = bytes(rng, n);
    fs.setxattr(ino, XATTR, &tag, 0)?;
    m.entry(dir.into())
        .or_default()
        .insert(file.into(), (data, tag));
    Ok(())
}

/// A random existing (dir, file).
fn pick(rng: &mut SplitMix, m: &Model) -> (String, String) {
    let all: Vec<(&String, &String)> = m
        .iter()
        .flat_map(|(d, fs)| fs.keys().map(move |f| (d, f)))
        .collect();
    let (d, f) = all[rng.below(all.len() as u64) as usize];
    (d.clone(), f.clone())
}

fn overwrite(fs: &Fs, rng: &mut SplitMix, m: &mut Model) -> R<()> {
    let (d, f) = pick(rng, m);
    let ino = file_ino(fs, &d, &f)?;
    let entry = m.get_mut(&d).unwrap().get_mut(&f).unwrap();
    let len = entry.0.len() as u64;
    let at = rng.below(len + 5000);
    let n = 1 + rng.below(20_000) as usize;
    let data = bytes(rng, n);
    write_all(fs, ino, at, &data)?;
    let end = at as usize + n;
    if entry.0.len() < end {
        entry.0.resize(end, 0);
    }
    entry.0[at as usize..end].copy_from_slice(&data);
    Ok(())
}

/// The first workload: four directories of six files each, committed.
fn first_workload(fs: &Fs, rng: &mut SplitMix) -> R<Model> {
    let mut m = Model::new();
    for d in 0..4 {
        let dir = format!("dir-{d}");
        fs.mkdir(ROOT_INO, dir.as_bytes(), 0o755, ROOT)?;
        m.insert(dir.clone(), BTreeMap::new());
        for f in 0..6 {
            new_file(fs, rng, &mut m, &dir, &format!("file-{f}"))?;
        }
    }
    fs.sync()?;
    Ok(m)
}

/// The second workload; returns the models at its middle commit and at its end (unmount).
/// On a lying medium an operation may fail (EIO: it read back a block the fault damaged).
fn second_workload(fs: &Fs, rng: &mut SplitMix, mut m: Model) -> R<(Model, Model)> {
    for _ in 0..4 {
        overwrite(fs, rng, &mut m)?;
    }
    for i in 0..3 {
        let d = format!("dir-{}", rng.below(4));
        new_file(fs, rng, &mut m, &d, &format!("new-{i}"))?;
    }
    let (d, f) = pick(rng, &m);
    let keep = rng.below(m[&d][&f].0.len() as u64 + 1);
    let set = SetAttr {
        size: Some(keep),
        ..SetAttr::default()
    };
    fs.setattr(file_ino(fs, &d, &f)?, &set)?;
    m.get_mut(&d)
        .unwrap()
        .get_mut(&f)
        .unwrap()
        .0
        .truncate(keep as usize);
    let (d, f) = pick(rng, &m);
    fs.unlink(dir_ino(fs, &d)?, f.as_bytes())?;
    m.get_mut(&d).unwrap().remove(&f);
    let (d, f) = pick(rng, &m);
    let to = format!("dir-{}", rng.below(4));
    let new_name = format!("moved-{f}");
    if !m[&to].contains_key(&new_name) {
        fs.rename(
            dir_ino(fs, &d)?,
            f.as_bytes(),
            dir_ino(fs, &to)?,
            new_name.as_bytes(),
            0,
        )?;
        let e = m.get_mut(&d).unwrap().remove(&f).unwrap();
        m.get_mut(&to).unwrap().insert(new_name, e);
    }
    let (d, f) = pick(rng, &m);
    let tag = bytes(rng, 77);
    fs.setxattr(file_ino(fs, &d, &f)?, XATTR, &tag, 0)?;
    m.get_mut(&d).unwrap().get_mut(&f).unwrap().1 = tag;
    fs.sync()?;
    let middle = m.clone();
    for _ in 0..3 {
        overwrite(fs, rng, &mut m)?;
    }
    new_file(fs, rng, &mut m, "dir-0", "last")?;
    fs.shutdown()?;
    Ok((middle, m))
}

/// What one mount of a damaged image showed.
#[derive(Default)]
struct Seen {
    eio: u64,
    /// The first wrong answer, if any.
    wrong: Option<String>,
}

impl Seen {
    fn check<T>(&mut self, what: &str, r: stablefs::Result<T>, ok: impl FnOnce(T) -> bool) -> bool {
        match r {
            Ok(v) => {
                if ok(v) {
                    return true;
                }
                self.wrong
                    .get_or_insert_with(|| format!("{what}: wrong answer"));
                false
            }
            Err(e) if e.errno() == libc::EIO => {
                self.eio += 1;
                false
            }
            Err(e) => {
                self.wrong.get_or_insert_with(|| format!("{what}: {e}"));
                false
            }
        }
    }
}

fn names(fs: &Fs, dir: Ino) -> stablefs::Result<BTreeSet<String>> {
    Ok(fs
        .readdir(dir, 0, 100_000)?
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .filter(|n| n != "." && n != "..")
        .collect())
}

/// Reads everything the model says is there.
fn verify(fs: &Fs, m: &Model) -> Seen {
    let mut s = Seen::default();
    let dirs: BTreeSet<String> = m.keys().cloned().collect();
    s.check("root listing", names(fs, ROOT_INO), |n| n == dirs);
    for (dir, files) in m {
        let mut d = 0;
        if !s.check(
            &format!("lookup {dir}"),
            fs.lookup(ROOT_INO, dir.as_bytes()),
            |a| {
                d = a.ino;
                true
            },
        ) {
            continue;
        }
        let want: BTreeSet<String> = files.keys().cloned().collect();
        s.check(&format!("listing {dir}"), names(fs, d), |n| n == want);
        for (file, (data, tag)) in files {
            let what = format!("{dir}/{file}");
            let mut ino = 0;
            let size_ok = s.check(
                &format!("lookup {what}"),
                fs.lookup(d, file.as_bytes()),
                |a| {
                    ino = a.ino;
                    a.size == data.len() as u64
                },
            );
            if ino == 0 {
                continue;
            }
            let _ = size_ok;
            s.check(&format!("xattr of {what}"), fs.getxattr(ino, XATTR), |v| {
                v == *tag
            });
            let mut got = Vec::new();
            let mut read_ok = true;
            while read_ok && got.len() <= data.len() {
                let r = fs.read(ino, got.len() as u64, 1 << 20);
                read_ok = s.check(&format!("read {what}"), r, |chunk| {
                    let done = chunk.is_empty();
                    got.extend_from_slice(&chunk);
                    !done || got.len() == data.len()
                });
                if got.len() == data.len() && read_ok {
                    // One more read must find the end.
                    read_ok = s.check(
                        &format!("read {what} at its end"),
                        fs.read(ino, got.len() as u64, 4096),
                        |c| c.is_empty(),
                    );
                    break;
                }
            }
            if read_ok && got != *data {
                s.wrong
                    .get_or_insert_with(|| format!("read {what}: wrong bytes"));
            }
        }
    }
    s
}

/// Where the blocks of each kind are in a committed image: superblock units, inner nodes,
/// leaves (both copies), data blocks (first copies) and second copies of data blocks
/// (`copies=2`); and both copies of each data block.
struct Targets {
    kinds: [Vec<u64>; 5],
    data_pairs: Vec<(u64, u64)>,
}

const KIND_NAMES: [&str; 6] = [
    "superblock",
    "inner node",
    "leaf",
    "data block",
    "second data copy",
    "both data copies",
];
/// Kind 5: both copies of one data block (not a kind of block: a kind of damage).
const BOTH_COPIES: usize = 5;

fn targets(image: &[u8]) -> Targets {
    let dev = Arc::new(MemDevice::from_bytes(image.to_vec(), 512));
    let mut meta = Meta::open(dev, false).unwrap();
    let (first, total) = (meta.sb.first_block, meta.sb.total_blocks);
    let mut t = Targets {
        kinds: Default::default(),
        data_pairs: Vec::new(),
    };
    t.kinds[0] = SB_SLOT_OFFSETS.iter().map(|o| o / BS).collect();
    meta.tree
        .walk(&mut |v| {
            match v {
                Visit::Node { ptr, level } => {
                    let k = if level > 0 { 1 } else { 2 };
                    t.kinds[k].push(ptr.addr.0);
                    t.kinds[k].extend(ptr.copy_addr.map(|c| c.0));
                }
                Visit::Item { key, value } if key.kind == KIND_EXTENT => {
                    let e = ExtentItem::decode(value, first, total).unwrap();
                    t.kinds[3].extend(e.disk_start..e.disk_start + e.len());
                    if let Some(c) = e.copy_start {
                        t.kinds[4].extend(c..c + e.len());
                        t.data_pairs
                            .extend((0..e.len()).map(|i| (e.disk_start + i, c + i)));
                    }
                }
                Visit::Item { .. } => {}
            }
            Ok(())
        })
        .unwrap();
    t
}

#[derive(Default, Debug)]
struct Tally {
    cases: u64,
    /// Faults that changed something the last commit references.
    hit: u64,
    detected: u64,
    repaired: u64,
    /// Came back at an earlier commit (a superblock fault), exactly.
    rolled_back: u64,
    harmless: u64,
    silent: u64,
    /// Damage scrub reported where it was (data: with its paths).
    scrub_named: u64,
    /// Node copies scrub repaired, a second scrub then clean.
    scrub_repaired: u64,
    /// Mounts whose reads repaired a data copy (`copies=2`).
    data_repaired: u64,
    /// Data copies scrub repaired, a second scrub then clean (`copies=2`).
    scrub_data_repaired: u64,
    per_kind: BTreeMap<String, u64>,
}

/// Mounts `image` and checks it against `models` (the current one first; earlier commits only
/// when the fault hit a superblock). Returns a description of a silent corruption, if any.
fn judge(image: Vec<u8>, models: &[&Model], tally: &mut Tally) -> Option<String> {
    let dev = Arc::new(MemDevice::from_bytes(image, 512));
    let fs = match Fs::mount(dev, options()) {
        Ok(fs) => fs,
        Err(_) => {
            tally.detected += 1;
            return None;
        }
    };
    let repairs = |c: Counters| c.metadata_repairs + c.data_repairs;
    let repaired = repairs(fs.counters()) > 0;
    // The current commit, or else a whole earlier one: every answer that is not EIO must agree
    // with one model.
    let mut first_wrong = None;
    let mut outcome = None;
    for (i, m) in models.iter().enumerate() {
        let seen = verify(&fs, m);
        match seen.wrong {
            None => {
                if i > 0 {
                    tally.rolled_back += 1;
                }
                outcome = Some(seen.eio);
                break;
            }
            Some(w) => {
                first_wrong.get_or_insert(w);
            }
        }
    }
    let repaired = repaired || repairs(fs.counters()) > 0;
    if fs.counters().data_repairs > 0 {
        tally.data_repaired += 1;
    }
    let outcome = outcome.ok_or_else(|| first_wrong.unwrap());
    match outcome {
        Ok(eio) => {
            if eio > 0 {
                tally.detected += 1;
            } else if repaired {
                tally.repaired += 1;
            } else {
                tally.harmless += 1;
            }
            None
        }
        Err(wrong) => {
            tally.silent += 1;
            Some(wrong)
        }
    }
}

/// Scrubs the damaged image (offline). A fault planted at rest in a node or data block must be
/// reported at its block: a data block with the paths of its file, a node copy repaired (and
/// a second scrub clean). Any damage the reads ran into must be reported too.
fn scrub_finds(
    image: Vec<u8>,
    at_rest: Option<(usize, &[u64])>,
    reads_saw_it: bool,
    tally: &mut Tally,
) -> Result<(), String> {
    let dev = Arc::new(MemDevice::from_bytes(image, 512));
    let r = scrub(dev.clone(), &ScrubOptions::default(), &mut |_, _| {});
    let clean_again = |dev: Arc<MemDevice>| {
        let again = scrub(dev, &ScrubOptions::default(), &mut |_, _| {})
            .map_err(|e| format!("second scrub failed: {e}"))?;
        if again.exit_code != 0 {
            return Err(format!("second scrub not clean:\n{}", again.to_text()));
        }
        Ok(())
    };
    match at_rest {
        Some((kind @ 1..=5, units)) => {
            let r = r.map_err(|e| format!("scrub failed: {e}"))?;
            for &unit in units {
                let Some(bad) = r.bad.iter().find(|b| b.block == unit) else {
                    return Err(format!("block {unit} not reported:\n{}", r.to_text()));
                };
                let named = |paths: &Vec<String>| !paths.is_empty();
                match (&bad.damage, kind) {
                    (Damage::Data { paths, .. }, 3) if named(paths) && !bad.repaired => {
                        tally.scrub_named += 1;
                    }
                    (Damage::Metadata { .. }, 1 | 2) if bad.repaired => {
                        clean_again(dev.clone())?;
                        tally.scrub_repaired += 1;
                    }
                    (Damage::DataCopy { paths, copy, .. }, 3 | 4)
                        if named(paths) && bad.repaired && usize::from(*copy) == kind - 2 =>
                    {
                        if r.exit_code != 1 {
                            return Err(format!("not 'corrected':\n{}", r.to_text()));
                        }
                        clean_again(dev.clone())?;
                        tally.scrub_data_repaired += 1;
                    }
                    (Damage::DataCopy { paths, .. }, BOTH_COPIES)
                        if named(paths) && !bad.repaired =>
                    {
                        tally.scrub_named += 1;
                    }
                    _ => return Err(format!("block {unit} reported wrongly: {bad:?}")),
                }
            }
        }
        _ if reads_saw_it => match r {
            Ok(r) if r.exit_code == 0 => {
                return Err(format!(
                    "reads hit damage, scrub found none:\n{}",
                    r.to_text()
                ))
            }
            _ => tally.scrub_named += 1,
        },
        _ => {}
    }
    Ok(())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `cases` cases on filesystems with `copies` data copies, from workload seed
/// `first_seed`; returns the tally, the failures and the seed after the last one used.
fn campaign(copies: u8, cases: u64, first_seed: u64) -> (Tally, Vec<String>, u64) {
    // Per workload seed: this many cases at write time, and as many at rest.
    const PER_SEED: u64 = 40;
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    let mut seed = first_seed;
    while tally.cases < cases {
        let mut rng = SplitMix(seed);
        let base = Arc::new(MemDevice::new(IMAGE_BYTES, 512));
        let opts = MkfsOptions {
            data_copies: copies,
            ..MkfsOptions::default()
        };
        mkfs(base.clone(), &opts).unwrap();
        let fs = Fs::mount(base.clone(), options()).unwrap();
        let m1 = first_workload(&fs, &mut rng).unwrap();
        fs.shutdown().unwrap();
        drop(fs);
        let img1 = base.snapshot();
        let rng2 = SplitMix(rng.0);
        // A clean run of the second workload: its writes, models and final image.
        let clean = Arc::new(CorruptDevice::new(img1.clone(), 512, BS as u32));
        let fs = Fs::mount(clean.clone(), options()).unwrap();
        let (ma, mb) = second_workload(&fs, &mut SplitMix(rng2.0), m1.clone()).unwrap();
        drop(fs);
        let writes = clean.writes();
        let clean_img = clean.snapshot();
        let t = targets(&clean_img);
        let live: Vec<u64> = t.kinds.iter().flatten().copied().collect();
        let mut crng = SplitMix(seed ^ 0x5eed_c0de);

        for case in 0..2 * PER_SEED {
            if tally.cases >= cases {
                break;
            }
            tally.cases += 1;
            let (image, superblock_hit, what, at_rest) = if case < PER_SEED {
                let index = crng.below(writes);
                let fault = match crng.below(3) {
                    0 => WriteFault::Lost,
                    1 => WriteFault::Misdirected {
                        to: live[crng.below(live.len() as u64) as usize],
                    },
                    _ => WriteFault::Torn {
                        sectors: 1 + crng.below(7) as u32,
                    },
                };
                let dev = Arc::new(CorruptDevice::new(img1.clone(), 512, BS as u32));
                dev.fault_at(index, fault);
                let fs = Fs::mount(dev.clone(), options()).unwrap();
                let r = second_workload(&fs, &mut SplitMix(rng2.0), m1.clone());
                drop(fs);
                let Some(hit) = dev.hit() else {
                    assert!(
                        r.is_ok_and(|r| r.1 == mb),
                        "seed {seed}: the workload is not deterministic"
                    );
                    continue;
                };
                if let Err(e) = r {
                    // The workload read back what the fault damaged and was told so.
                    assert_eq!(e.errno(), libc::EIO, "seed {seed} case {case}: {e}");
                    tally.hit += 1;
                    tally.detected += 1;
                    continue;
                }
                let sb = t.kinds[0].contains(&hit.unit)
                    || matches!(fault, WriteFault::Misdirected { to } if t.kinds[0].contains(&to));
                *tally
                    .per_kind
                    .entry(format!("{fault:?}").split(' ').next().unwrap().into())
                    .or_default() += 1;
                (
                    dev.snapshot(),
                    sb,
                    format!("write {index} ({:?} of unit {})", fault, hit.unit),
                    None,
                )
            } else if copies == 2 {
                // Damage aimed at data: one copy, or both copies of one block; some leaves.
                const KINDS: [usize; 8] = [2, 3, 3, 3, 4, 4, BOTH_COPIES, BOTH_COPIES];
                let kind = KINDS[crng.below(KINDS.len() as u64) as usize];
                let units = if kind == BOTH_COPIES {
                    let (a, b) = t.data_pairs[crng.below(t.data_pairs.len() as u64) as usize];
                    vec![a, b]
                } else {
                    vec![t.kinds[kind][crng.below(t.kinds[kind].len() as u64) as usize]]
                };
                let mut img = clean_img.clone();
                let mut what = Vec::new();
                for &unit in &units {
                    if crng.coin() && clean.stale_versions(unit) > 0 {
                        let k = crng.below(clean.stale_versions(unit) as u64) as usize;
                        let old = clean.earlier_version(unit, k).unwrap();
                        img[(unit * BS) as usize..((unit + 1) * BS) as usize].copy_from_slice(&old);
                        what.push(format!("stale unit {unit} (version {k})"));
                    } else {
                        let off = unit * BS + crng.below(BS);
                        img[off as usize] ^= 1 << crng.below(8);
                        what.push(format!("bit flip at byte {off}"));
                    }
                }
                *tally
                    .per_kind
                    .entry(KIND_NAMES[kind].to_string())
                    .or_default() += 1;
                (
                    img,
                    false,
                    format!("{}: {}", KIND_NAMES[kind], what.join(", ")),
                    Some((kind, units)),
                )
            } else {
                let kind = crng.below(4) as usize;
                let unit = t.kinds[kind][crng.below(t.kinds[kind].len() as u64) as usize];
                let stale = crng.coin() && clean.stale_versions(unit) > 0;
                let dev = CorruptDevice::new(clean_img.clone(), 512, BS as u32);
                let what = if stale {
                    // The same unit history as the clean run: put back an earlier version.
                    let n = clean.stale_versions(unit);
                    let k = crng.below(n as u64) as usize;
                    let old = clean.earlier_version(unit, k).unwrap();
                    let mut img = clean_img.clone();
                    img[(unit * BS) as usize..((unit + 1) * BS) as usize].copy_from_slice(&old);
                    *tally
                        .per_kind
                        .entry(format!("stale {}", KIND_NAMES[kind]))
                        .or_default() += 1;
                    (
                        img,
                        format!("stale {} at unit {unit} (version {k})", KIND_NAMES[kind]),
                    )
                } else {
                    let off = unit * BS + crng.below(BS);
                    dev.flip_bit(off, crng.below(8) as u8);
                    *tally
                        .per_kind
                        .entry(format!("bit flip {}", KIND_NAMES[kind]))
                        .or_default() += 1;
                    (
                        dev.snapshot(),
                        format!("bit flip in {} at byte {off}", KIND_NAMES[kind]),
                    )
                };
                (what.0, kind == 0, what.1, Some((kind, vec![unit])))
            };
            tally.hit += 1;
            let models: Vec<&Model> = if superblock_hit {
                vec![&mb, &ma, &m1]
            } else {
                vec![&mb]
            };
            let (detected_before, data_repaired_before) = (tally.detected, tally.data_repaired);
            let fail = |why: String| {
                format!("STABLEFS_CORRUPT_SEED={seed} copies={copies} case {case}: {what}: {why}")
            };
            if let Some(wrong) = judge(image.clone(), &models, &mut tally) {
                failures.push(fail(format!("SILENT CORRUPTION: {wrong}")));
            }
            let reads_saw_it = tally.detected > detected_before;
            let reads_repaired = tally.data_repaired > data_repaired_before;
            // copies=2, damage at rest: a bad first copy is served from the second and
            // rewritten (no EIO); a bad second copy is not read at all; both bad is EIO.
            match at_rest.as_ref().map(|a| a.0) {
                Some(3) if copies == 2 && (reads_saw_it || !reads_repaired) => failures.push(fail(
                    format!("first copy not repaired by the reads (EIO: {reads_saw_it})"),
                )),
                Some(4) if reads_saw_it || reads_repaired => {
                    failures.push(fail("a bad second copy changed what reads did".into()))
                }
                Some(BOTH_COPIES) if !reads_saw_it => {
                    failures.push(fail("both copies bad, and no read failed".into()))
                }
                _ => {}
            }
            let at_rest = at_rest.as_ref().map(|(k, u)| (*k, u.as_slice()));
            if let Err(e) = scrub_finds(image, at_rest, reads_saw_it, &mut tally) {
                failures.push(fail(format!("SCRUB: {e}")));
            }
        }
        seed += 1;
    }
    (tally, failures, seed)
}

#[test]
fn no_fault_on_the_medium_goes_unnoticed() {
    let cases = env_u64("STABLEFS_CORRUPT_CASES", 2000);
    let first_seed = env_u64("STABLEFS_CORRUPT_SEED", 1);
    let (tally, failures, seed) = campaign(1, cases - cases / 4, first_seed);
    eprintln!(
        "corruption campaign: {} cases (workload seeds {first_seed}..{seed}), {} faults applied: \
         {} detected (EIO or a refused mount), {} repaired from the second copy, {} rolled back \
         to an earlier commit, {} harmless, {} silent; scrub then reported {} damaged blocks \
         where they were and repaired {} node copies (a second scrub clean); by fault: {:?}",
        tally.cases,
        tally.hit,
        tally.detected,
        tally.repaired,
        tally.rolled_back,
        tally.harmless,
        tally.silent,
        tally.scrub_named,
        tally.scrub_repaired,
        tally.per_kind
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(tally.silent, 0);
    assert!(tally.detected > 0 && tally.repaired > 0, "{tally:?}");
}

#[test]
fn copies2_every_bad_data_copy_is_repaired_or_eio() {
    let cases = env_u64("STABLEFS_CORRUPT_CASES", 2000);
    let first_seed = env_u64("STABLEFS_CORRUPT_SEED", 1);
    let (tally, failures, seed) = campaign(2, cases / 4, first_seed);
    eprintln!(
        "corruption campaign, copies=2: {} cases (workload seeds {first_seed}..{seed}), {} \
         faults applied: {} detected (EIO or a refused mount), {} repaired from the other copy \
         ({} mounts repaired data copies), {} rolled back to an earlier commit, {} harmless, {} \
         silent; scrub then reported {} damaged blocks where they were, repaired {} node copies \
         and {} data copies (a second scrub clean); by fault: {:?}",
        tally.cases,
        tally.hit,
        tally.detected,
        tally.repaired,
        tally.data_repaired,
        tally.rolled_back,
        tally.harmless,
        tally.silent,
        tally.scrub_named,
        tally.scrub_repaired,
        tally.scrub_data_repaired,
        tally.per_kind
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(tally.silent, 0);
    assert!(
        tally.detected > 0 && tally.data_repaired > 0 && tally.scrub_data_repaired > 0,
        "{tally:?}"
    );
}
