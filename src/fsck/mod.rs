//! `stablefs fsck`: checks an unmounted filesystem's current commit, and with `repair`
//! fixes what can be fixed safely, in a new copy-on-write commit.
//!
//! Works on any `BlockDevice`, so tests run it in-process on `MemDevice` and crash images.
//! Three passes:
//!
//! 1. `scan`: both superblock slots; every tree node (checksum from its parent pointer,
//!    self-description, level, key order inside nodes and across siblings); every item
//!    decoded; every block reference (nodes and data extents) once, inside the device.
//! 2. `namespace`: inodes against their items, the two halves of every directory, the
//!    directory graph from the root (`..`, one name per directory, reachability), link counts,
//!    orphans, the superblock's counters; `xattrs`: external xattr values against their
//!    entries.
//! 3. `repair` (with `FsckOptions::repair`): one commit through `Meta`/`Tree`, then the whole
//!    check again on the repaired commit.
//!
//! There is no allocation map to check against the tree: the tree is the only record of what
//! is allocated (mount rebuilds the free map from it), so leaked space cannot exist; fsck
//! checks the other half, that no block has two owners (both copies of `copies=2` data
//! count). File data blocks are not read on a filesystem with one data copy: every read
//! verifies them, and scrub reads them all. With `copies=2` both copies of every data block are
//! read and verified; `--repair` rewrites a bad copy in place from its good twin (the one
//! rewrite of a block fsck does, since it restores exactly the bytes the checksum names).
//!
//! The report says what was found and done; its `exit_code` follows fsck(8): 0 clean, 1 errors
//! corrected, 4 errors left uncorrected, 8 operational error.

mod namespace;
mod repair;
mod report;
mod scan;
mod xattrs;

pub use namespace::LOST_FOUND;
pub use report::*;

use crate::device::BlockDevice;
use crate::format::FileKind;
use crate::format::SB_FLAG_MKFS_IN_PROGRESS;
use crate::store::heal;
use namespace::Analysis;
use scan::{Findings, Operational, Scan};
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub struct FsckOptions {
    /// Fix what can be fixed safely (writes a new commit).
    pub repair: bool,
}

/// Checks mean the tree itself cannot be trusted: repair writes nothing while any is found.
const BLOCKING: &[Check] = &[
    Check::MkfsInProgress,
    Check::DeviceTooSmall,
    Check::NodeDamaged,
    Check::BirthGeneration,
    Check::KeyOrder,
    Check::ItemTooLarge,
    Check::ItemUndecodable,
    Check::UnknownItem,
    Check::BlockOutOfRange,
    Check::DoublyUsedBlock,
    Check::RootMissing,
];

/// Checks (and with `opts.repair` repairs) the filesystem on `dev`. Never fails: an
/// operational error is a report with status `OperationalError` and exit code 8.
pub fn fsck(dev: Arc<dyn BlockDevice>, opts: &FsckOptions) -> Report {
    let mut report = Report::empty();
    if let Err(Operational(why)) = run(dev, opts, &mut report) {
        report.status = Status::OperationalError;
        report.exit_code = EXIT_OPERATIONAL;
        report.error = Some(why);
    }
    report
}

impl Report {
    /// The report of an fsck that could not start (the device did not open).
    pub fn operational_error(why: String) -> Report {
        let mut r = Report::empty();
        r.status = Status::OperationalError;
        r.exit_code = EXIT_OPERATIONAL;
        r.error = Some(why);
        r
    }
}

/// The outcome of one full check.
struct Checked {
    /// `None` when the tree could not be walked at all.
    scan: Option<Scan>,
    analysis: Analysis,
    blocking: bool,
}

fn run(
    dev: Arc<dyn BlockDevice>,
    opts: &FsckOptions,
    report: &mut Report,
) -> Result<(), Operational> {
    let checked = check(&*dev, report)?;
    let errors = report.errors;
    report.status = if errors == 0 {
        Status::Clean
    } else {
        Status::Uncorrected
    };
    report.exit_code = if errors == 0 {
        EXIT_CLEAN
    } else {
        EXIT_UNCORRECTED
    };
    if !opts.repair {
        return Ok(());
    }
    let mut rr = RepairReport::default();
    let a = &checked.analysis;
    // Bad data copies are rewritten in place from their good twin (no commit needed), and
    // only when the tree can be trusted to say which blocks are whose.
    let mut healed = 0;
    if let Some(scan) = checked.scan.as_ref() {
        if !checked.blocking && !scan.sb.needs_read_only() {
            healed = heal_data_copies(&*dev, scan, &mut rr.actions)?;
        }
    }
    let fixable = report
        .error_problems()
        .any(|p| p.fixable && p.check != Check::DataCopyDamaged);
    let wanted = fixable || !a.purge.is_empty();
    match checked.scan {
        _ if !wanted => {}
        Some(_) if checked.blocking => {
            rr.refused = Some(
                "the tree itself is damaged or inconsistent (see the errors above); fsck does \
                 not rewrite metadata it cannot trust: restore from a backup"
                    .into(),
            );
        }
        Some(ref scan) if scan.sb.needs_read_only() => {
            rr.refused = Some("the filesystem uses features this stablefs can only read".into());
        }
        Some(ref scan) => {
            let out = repair::repair(dev.clone(), scan, a).map_err(|e| {
                Operational(format!(
                    "repair failed: {e}; the checked commit is still the current one"
                ))
            })?;
            rr.actions = out.actions;
            rr.generation = out.generation;
            rr.committed = out.generation.is_some();
        }
        None => rr.refused = Some("the tree could not be read".into()),
    }
    if rr.committed || healed > 0 {
        let mut again = Report::empty();
        check(&*dev, &mut again)?;
        rr.remaining = again.error_problems().cloned().collect();
        for p in report.problems.iter_mut().filter(|p| p.fixable) {
            p.fixed = !rr
                .remaining
                .iter()
                .any(|r| r.check == p.check && r.ino == p.ino);
        }
        (report.status, report.exit_code) = match (errors, rr.remaining.is_empty()) {
            (_, false) => (Status::Uncorrected, EXIT_UNCORRECTED),
            (0, true) => (Status::Clean, EXIT_CLEAN),
            (_, true) => (Status::Corrected, EXIT_CORRECTED),
        };
    }
    report.repair = Some(rr);
    Ok(())
}

/// Rewrites every bad data copy the scan found from its good copy, read and verified again
/// now; returns how many it rewrote.
fn heal_data_copies(
    dev: &dyn BlockDevice,
    scan: &Scan,
    actions: &mut Vec<String>,
) -> Result<usize, Operational> {
    let bs = u64::from(scan.sb.block_size);
    let mut buf = crate::device::AlignedBuf::zeroed(bs as usize);
    let mut healed = 0;
    for &(bad, good, crc) in &scan.bad_data_copies {
        let rewritten = heal::heal_data_copy(dev, scan.sb.block_size, bad, good, crc, &mut buf)
            .map_err(|e| Operational(format!("cannot rewrite data block {bad}: {e}")))?;
        if !rewritten {
            continue;
        }
        actions.push(format!(
            "data block {bad}: rewritten from its other copy at block {good}"
        ));
        healed += 1;
    }
    if healed > 0 {
        dev.flush()
            .map_err(|e| Operational(format!("cannot flush the device: {e}")))?;
    }
    Ok(healed)
}

/// One full check of the current commit into `report` (problems, counts, notes).
fn check(dev: &dyn BlockDevice, report: &mut Report) -> Result<Checked, Operational> {
    let mut f = Findings::default();
    let sb = scan::read_slots(dev, &mut report.superblocks, &mut f)?;
    report.uuid = Some(crate::format::uuid_string(&sb.uuid));
    report.label = Some(sb.label_str());
    report.block_size = sb.block_size;
    report.total_blocks = sb.total_blocks;
    report.first_block = sb.first_block;
    report.generation = Some(sb.generation);
    report.stats.superblock_used_blocks = sb.used_blocks;
    report.stats.superblock_inode_count = sb.inode_count;
    report.stats.superblock_next_ino = sb.next_ino;
    report.stats.tree_height = u32::from(sb.root_level) + 1;
    if sb.block_size % dev.align() != 0 {
        return Err(Operational(format!(
            "block size {} is not a multiple of the device's logical block size {}",
            sb.block_size,
            dev.align()
        )));
    }
    if sb.flags & SB_FLAG_MKFS_IN_PROGRESS != 0 {
        f.error(
            Check::MkfsInProgress,
            false,
            None,
            None,
            "mkfs did not finish on this device: format it again".into(),
        );
    }
    let dev_blocks = dev.capacity() / u64::from(sb.block_size);
    let mut checked = Checked {
        scan: None,
        analysis: Analysis::default(),
        blocking: false,
    };
    if sb.total_blocks > dev_blocks {
        f.error(
            Check::DeviceTooSmall,
            false,
            None,
            None,
            format!(
                "the superblock says {} blocks but the device holds only {dev_blocks} (a truncated image?); the tree is not checked",
                sb.total_blocks
            ),
        );
    } else {
        let scan = Scan::run(dev, sb, &mut f);
        checked.analysis = namespace::analyse(&scan, &mut f);
        namespace::check_counters(&scan, &mut f);
        describe(&scan, &checked.analysis, report, &f);
        checked.scan = Some(scan);
    }
    checked.blocking = BLOCKING.iter().any(|&c| f.any(c));
    let (problems, errors) = f.finish();
    report.errors = errors;
    report.warnings = problems.iter().filter(|p| !p.is_error()).count();
    report.problems = problems;
    Ok(checked)
}

/// Counts and notes.
fn describe(scan: &Scan, a: &Analysis, report: &mut Report, f: &Findings) {
    let s = &mut report.stats;
    s.tree_nodes = scan.nodes;
    s.items = scan.items;
    s.inodes = scan.inodes.len() as u64;
    for inode in scan.inodes.values() {
        match inode.kind() {
            FileKind::Dir => s.directories += 1,
            FileKind::File => s.files += 1,
            FileKind::Symlink => s.symlinks += 1,
            _ => s.special_files += 1,
        }
    }
    s.orphans = scan.orphans.len() as u64;
    s.xattrs = scan.xattrs.values().map(|x| x.len() as u64).sum();
    s.extents = scan.extents.values().map(|e| e.len() as u64).sum();
    s.metadata_blocks = scan.metadata_blocks;
    s.data_blocks = scan.data_blocks;
    s.referenced_blocks = scan.referenced;
    s.free_blocks = (scan.sb.total_blocks - scan.sb.first_block).saturating_sub(scan.referenced);
    report.notes.push(
        "leaked space cannot exist: the tree is the only record of allocation (free space is \
         every block it does not reference), so fsck checks that no block has two owners"
            .into(),
    );
    report.notes.push(if scan.sb.data_copies() == 2 {
        "copies=2: both copies of every file data block were read and verified against their \
         extent's checksums"
            .into()
    } else {
        "file data blocks are not read: every read verifies them against their extent's \
         checksums"
            .into()
    });
    if !a.purge.is_empty() {
        report.notes.push(format!(
            "{} orphaned inode(s) (unlinked while open) wait to be deleted by the next mount \
             (--repair deletes them now): {:?}",
            a.purge.len(),
            a.purge
        ));
    }
    if f.any(Check::NodeDamaged) {
        report.notes.push(
            "damaged tree nodes hide the items below them from every other check: some \
             findings may be consequences of the damage"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests;
