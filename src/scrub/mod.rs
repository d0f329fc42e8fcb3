//! Scrub: verifies every block the filesystem references, data and metadata, every copy;
//! names the files (every hard link) and offsets of bad data blocks and the tree nodes of bad
//! metadata blocks; rewrites a bad copy of a node from the good one. Both kinds report in the
//! same shape (`ScrubReport`).
//!
//! - this module: the offline scrub, of an unmounted device (below);
//! - `online`: the online scrub, run by a mounted filesystem's daemon on a thread of its own,
//!   with pause, resume, cancel and a position kept in the tree across remounts;
//! - `control`: the ioctl through which `stablefs scrub` drives the online scrub.
//!
//! Offline, in this order:
//! 1. the superblocks are read (both slots) and the tree opened and walked as a mount does:
//!    every node's first copy is read and verified, a bad one is served from the second copy
//!    and rewritten (`TreeIo` heal); nodes bad in both copies are lost, with what is below them;
//! 2. every data block (both copies with `copies=2`) and every node's second copy is read in
//!    device order, in runs of consecutive blocks (up to `RUN_BYTES`), and verified: data
//!    against its extent's crc, a node against its parent's pointer. A bad second copy of a
//!    node is rewritten from the first; a bad copy of a data block from its other copy (either
//!    direction), when that one verifies.
//!
//! With one data copy a bad data block is reported, not repaired.

pub mod control;
pub mod online;
mod report;

pub use report::{BadBlock, Damage, ScrubReport};

use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, Result};
use crate::format::ROOT_INO;
use crate::format::{
    decode_dirent_bucket, decode_node, BlockPtr, ExtentItem, KIND_DIRENT, KIND_EXTENT, SB_SIZE,
    SB_SLOT_OFFSETS,
};
use crate::store::heal;
use crate::tree::Visit;
use crate::txn::Meta;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest read.
const RUN_BYTES: u64 = 4 << 20;

/// Exit statuses (documented in `stablefs scrub --help` and the README).
pub const EXIT_CLEAN: u8 = 0;
pub const EXIT_CORRECTED: u8 = 1;
pub const EXIT_UNCORRECTABLE: u8 = 2;
pub const EXIT_OPERATIONAL: u8 = 4;

#[derive(Clone, Debug, Default)]
pub struct ScrubOptions {
    /// Most bytes per second read (None: as fast as the device goes).
    pub limit: Option<u64>,
}

/// What one block to check is.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// File data: inode, file block, the crc its extent holds.
    Data { ino: u64, fb: u64, crc: u32 },
    /// The second copy of the node `ptr` names, at tree level `level`.
    SecondCopy { ptr: BlockPtr, level: u8 },
    /// One copy (`copy`: 1 or 2) of a data block of a `copies=2` extent; `other` is the
    /// device block of its other copy, which holds the same bytes.
    DataCopy {
        ino: u64,
        fb: u64,
        crc: u32,
        copy: u8,
        other: u64,
    },
}

/// Scrubs the filesystem on `dev` (not mounted). `progress` is told (bytes done, bytes in all)
/// after each run read.
pub fn scrub(
    dev: Arc<dyn BlockDevice>,
    opts: &ScrubOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ScrubReport> {
    let start = Instant::now();
    let mut report = ScrubReport::default();
    check_superblocks(&*dev, &mut report)?;
    let mut meta = match Meta::open(dev.clone(), true) {
        Ok(m) => m,
        // The root itself is bad in every copy: nothing below it can be found.
        Err(e @ (Error::Checksum { .. } | Error::Corrupt(_))) => {
            report
                .lost_metadata
                .push(format!("the root of the tree: {e}"));
            report.elapsed = start.elapsed();
            report.finish();
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    let bs = u64::from(meta.sb.block_size);
    report.generation = meta.sb.generation;

    let walk = walk_tree(&mut meta)?;
    let Walk {
        mut checks,
        links,
        nodes,
        errors: walk_errors,
    } = walk;
    report_open_damage(&meta, walk_errors, &mut report);
    report.counts.metadata_nodes = nodes;

    // Device order, in runs of consecutive blocks.
    checks.sort_by_key(|c| c.0);
    let all_bytes = (nodes + checks.len() as u64) * bs;
    let mut done = nodes * bs;
    let max_run = (RUN_BYTES / bs).max(1) as usize;
    let paths = Paths { links: &links };
    let runs = runs_of(&checks, max_run);
    // One thread reads ahead (two runs at most in flight) while this one verifies, so the
    // device is not idle while checksums are computed.
    // Buffers go back to the reader once verified: no fresh (zeroed, faulted-in) memory per run.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let (give_back, take_back) = std::sync::mpsc::channel::<AlignedBuf>();
        let reader_dev = dev.clone();
        let reader_runs = runs.clone();
        let starts: Vec<u64> = runs.iter().map(|r| checks[r.start].0).collect();
        scope.spawn(move || {
            for (r, start) in reader_runs.into_iter().zip(starts) {
                let len = r.len() * bs as usize;
                let mut buf = match take_back.try_recv() {
                    Ok(b) if b.capacity() >= len => b,
                    _ => AlignedBuf::zeroed(max_run * bs as usize),
                };
                buf.set_len(len);
                let read = reader_dev.read_at(start * bs, &mut buf);
                if tx.send((buf, read)).is_err() {
                    return;
                }
            }
        });
        for (r, (buf, read)) in runs.iter().zip(rx) {
            let run = &checks[r.clone()];
            let len = run.len() as u64 * bs;
            verify_run(&meta, &paths, run, &buf, &read, bs, &mut report);
            done += len;
            report.counts.bytes_read += len;
            let _ = give_back.send(buf);
            progress(done, all_bytes);
            throttle(opts.limit, done - nodes * bs, start);
        }
    });
    report.counts.bytes_read += nodes * bs;
    // Data copies rewritten in place: make them durable before saying so.
    let data_repaired = report
        .bad
        .iter()
        .any(|b| b.repaired && matches!(b.damage, Damage::DataCopy { .. }));
    if data_repaired {
        dev.flush()?;
    }
    report.elapsed = start.elapsed();
    report.finish();
    Ok(report)
}

/// What one walk of the tree found: the blocks to check, the names that lead to each
/// inode (for the paths of bad data), the number of nodes, and items that did not decode.
struct Walk {
    checks: Vec<(u64, Check)>,
    links: HashMap<u64, Vec<(u64, Vec<u8>)>>,
    nodes: u64,
    errors: Vec<String>,
}

/// Walks the whole tree once. Nodes bad in every copy were recorded by the open
/// (`meta.damage`); the walk skips them.
fn walk_tree(meta: &mut Meta) -> Result<Walk> {
    let (first, total) = (meta.sb.first_block, meta.sb.total_blocks);
    let mut w = Walk {
        checks: Vec::new(),
        links: HashMap::new(),
        nodes: 0,
        errors: Vec::new(),
    };
    meta.tree.walk_tolerant(&mut |v| {
        match v {
            Visit::Node { ptr, level } => {
                w.nodes += 1;
                if let Some(copy) = ptr.copy_addr {
                    w.checks.push((copy.0, Check::SecondCopy { ptr, level }));
                }
            }
            Visit::Item { key, value } if key.kind == KIND_EXTENT => {
                match ExtentItem::decode(value, first, total) {
                    Ok(e) => data_checks(key.object, key.offset, &e, &mut w.checks),
                    Err(e) => w.errors.push(e.to_string()),
                }
            }
            Visit::Item { key, value } if key.kind == KIND_DIRENT => {
                match decode_dirent_bucket(value) {
                    Ok(bucket) => {
                        for l in bucket {
                            w.links.entry(l.ino).or_default().push((key.object, l.name));
                        }
                    }
                    Err(e) => w.errors.push(e.to_string()),
                }
            }
            Visit::Item { .. } => {}
        }
        Ok(())
    })?;
    Ok(w)
}

/// The checks of extent `e`, file blocks from `fb0` of `ino`: every copy of every block.
fn data_checks(ino: u64, fb0: u64, e: &ExtentItem, checks: &mut Vec<(u64, Check)>) {
    for (i, &crc) in e.crcs.iter().enumerate() {
        let fb = fb0 + i as u64;
        let copies = e.copies(i as u64);
        if copies.len() == 1 {
            checks.push((copies.first(), Check::Data { ino, fb, crc }));
            continue;
        }
        // Each copy is checked on its own; a bad one heals from the next.
        for (k, at) in copies.iter().enumerate() {
            let other = copies.get((k + 1) % copies.len()).expect("k < len");
            let copy = Check::DataCopy {
                ino,
                fb,
                crc,
                copy: k as u8 + 1,
                other,
            };
            checks.push((at, copy));
        }
    }
}

/// What the open found bad (first copies, and both copies of lost nodes) and what the walk
/// could not decode, into the report.
fn report_open_damage(meta: &Meta, walk_errors: Vec<String>, report: &mut ScrubReport) {
    for ev in meta.tree.stats().events.lock().iter() {
        report.bad.push(BadBlock {
            block: ev.block.0,
            damage: Damage::Metadata {
                node: ev.node.0,
                level: ev.level,
                copy: if ev.block == ev.node { 1 } else { 2 },
            },
            error: ev.error.clone(),
            repaired: ev.repaired,
        });
    }
    for e in meta.damage.iter().map(|e| e.to_string()).chain(walk_errors) {
        report.lost_metadata.push(e);
    }
}

/// The checks (sorted by block) as runs of consecutive blocks, at most `max_run` long.
fn runs_of(checks: &[(u64, Check)], max_run: usize) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < checks.len() {
        let mut j = i + 1;
        while j < checks.len() && j - i < max_run && checks[j].0 == checks[j - 1].0 + 1 {
            j += 1;
        }
        runs.push(i..j);
        i = j;
    }
    runs
}

/// Verifies the blocks of one run (read into `buf`, or failed with `read`) and counts them;
/// a bad one goes into the report (a bad second copy is rewritten from the first now).
fn verify_run(
    meta: &Meta,
    paths: &Paths,
    run: &[(u64, Check)],
    buf: &AlignedBuf,
    read: &std::io::Result<()>,
    bs: u64,
    report: &mut ScrubReport,
) {
    for (k, &(block, check)) in run.iter().enumerate() {
        let bytes = &buf[k * bs as usize..(k + 1) * bs as usize];
        let verdict = match read {
            Err(e) => Err(format!("device read error: {e}")),
            Ok(()) => verify(meta, bytes, check),
        };
        if let Err(error) = verdict {
            report
                .bad
                .push(bad_block(meta, paths, block, check, error, bs));
        }
        match check {
            Check::Data { .. } | Check::DataCopy { copy: 1, .. } => report.counts.data_blocks += 1,
            Check::DataCopy { .. } => report.data_copies += 1,
            Check::SecondCopy { .. } => report.counts.metadata_copies += 1,
        }
    }
}

/// The report entry for a block that failed `verify`; a bad second copy of a node is
/// rewritten from the first now.
fn bad_block(
    meta: &Meta,
    paths: &Paths,
    block: u64,
    check: Check,
    error: String,
    bs: u64,
) -> BadBlock {
    match check {
        Check::Data { ino, fb, .. } => BadBlock {
            block,
            damage: Damage::Data {
                ino,
                offset: fb * bs,
                paths: paths.of(ino),
            },
            error,
            repaired: false,
        },
        Check::SecondCopy { ptr, level } => BadBlock {
            block,
            damage: Damage::Metadata {
                node: ptr.addr.0,
                level,
                copy: 2,
            },
            error,
            repaired: heal_second_copy(meta, &ptr, level),
        },
        Check::DataCopy {
            ino,
            fb,
            crc,
            copy,
            other,
        } => BadBlock {
            block,
            damage: Damage::DataCopy {
                ino,
                offset: fb * bs,
                paths: paths.of(ino),
                copy,
            },
            error,
            repaired: heal_data_copy(meta, block, other, crc),
        },
    }
}

/// Rewrites the bad data copy at `bad` from its other copy at `good`, if that one reads and
/// verifies against `crc` now (offline: nothing else writes the device meanwhile).
fn heal_data_copy(meta: &Meta, bad: u64, good: u64, crc: u32) -> bool {
    let io = meta.tree.io();
    let bs = meta.sb.block_size;
    let mut buf = AlignedBuf::zeroed(bs as usize);
    match heal::heal_data_copy(&*io.dev, bs, bad, good, crc, &mut buf) {
        Ok(true) => {
            log::warn!("data block {bad}: rewritten from its other copy at {good}");
            true
        }
        Ok(false) => false,
        Err(e) => {
            log::error!("data block {bad}: could not rewrite it: {e}");
            false
        }
    }
}

/// Verifies one block against what points to it.
fn verify(meta: &Meta, bytes: &[u8], check: Check) -> std::result::Result<(), String> {
    let why = match check {
        Check::Data { crc, .. } | Check::DataCopy { crc, .. } => heal::data_block_error(bytes, crc),
        Check::SecondCopy { ptr, level } => {
            heal::node_copy_error(meta.tree.identity(), bytes, &ptr, level)
        }
    };
    why.map_or(Ok(()), Err)
}

/// Rewrites the second copy of `ptr`'s node from its first (verified again now).
fn heal_second_copy(meta: &Meta, ptr: &BlockPtr, level: u8) -> bool {
    let Some(copy) = ptr.copy_addr else {
        return false;
    };
    let id = meta.tree.identity();
    let mut buf = AlignedBuf::zeroed(id.block_size as usize);
    let io = meta.tree.io();
    if io
        .dev
        .read_at(ptr.addr.offset(id.block_size), &mut buf)
        .is_err()
        || decode_node(id, &buf, ptr, level).is_err()
    {
        return false;
    }
    io.heal_copy(copy, &buf)
}

/// Both superblock slots: a slot that is not valid is reported (the next commit rewrites it).
fn check_superblocks(dev: &dyn BlockDevice, report: &mut ScrubReport) -> Result<()> {
    for (slot, &off) in SB_SLOT_OFFSETS.iter().enumerate() {
        let mut buf = AlignedBuf::zeroed(SB_SIZE);
        if off + SB_SIZE as u64 > dev.capacity() {
            continue;
        }
        dev.read_at(off, &mut buf)?;
        if let Err(e) = crate::format::Superblock::decode(&buf) {
            if matches!(e, Error::Unsupported(_)) {
                return Err(e);
            }
            report.superblock_notes.push(format!(
                "superblock slot {slot}: {e} (harmless while the other slot holds the current \
                 commit; the next commit rewrites it)"
            ));
        }
        report.counts.bytes_read += SB_SIZE as u64;
    }
    Ok(())
}

/// Sleeps as needed to keep the average rate at most `limit` bytes per second.
fn throttle(limit: Option<u64>, done: u64, start: Instant) {
    let Some(limit) = limit.filter(|&l| l > 0) else {
        return;
    };
    let due = Duration::from_secs_f64(done as f64 / limit as f64);
    let elapsed = start.elapsed();
    if due > elapsed {
        std::thread::sleep(due - elapsed);
    }
}

/// Every path that reaches an inode, from the directory entries.
struct Paths<'a> {
    /// inode -> (parent directory, name) for each entry naming it.
    links: &'a HashMap<u64, Vec<(u64, Vec<u8>)>>,
}

impl Paths<'_> {
    /// Every path to `ino` (each hard link; a directory has one), sorted.
    fn of(&self, ino: u64) -> Vec<String> {
        let mut out = Vec::new();
        for (parent, name) in self.links.get(&ino).map_or(&[][..], |v| v.as_slice()) {
            let mut parts = vec![String::from_utf8_lossy(name).into_owned()];
            let mut at = *parent;
            let mut ok = true;
            for _ in 0..4096 {
                if at == ROOT_INO {
                    break;
                }
                match self.links.get(&at).and_then(|v| v.first()) {
                    Some((p, n)) => {
                        parts.push(String::from_utf8_lossy(n).into_owned());
                        at = *p;
                    }
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            parts.reverse();
            let path = format!("/{}", parts.join("/"));
            out.push(if ok {
                path
            } else {
                format!("(unreachable)/{}", parts.join("/"))
            });
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests;
