//! What fsck found and did: the report (serialisable with serde for `--json`), its problem
//! codes, and the human-readable rendering.

use serde::Serialize;
use std::fmt::Write as _;

/// The fsck(8) exit statuses this tool uses.
pub const EXIT_CLEAN: u8 = 0;
pub const EXIT_CORRECTED: u8 = 1;
pub const EXIT_UNCORRECTED: u8 = 4;
pub const EXIT_OPERATIONAL: u8 = 8;

/// What kind of inconsistency a problem is. Serialised in snake_case, so scripts can match on
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// A superblock slot that is not valid (torn, never written, foreign): harmless while the
    /// other slot holds the current commit, since the next commit rewrites this one.
    SuperblockSlot,
    /// The current superblock says mkfs never finished.
    MkfsInProgress,
    /// The superblock describes more blocks than the device holds.
    DeviceTooSmall,
    /// A tree node that fails its checksum or self-description (magic, uuid, block number,
    /// generation, owner, level, layout).
    NodeDamaged,
    /// One copy of a DUP tree node fails its checksum or self-description while the other is
    /// good: nothing is lost, and a mount that reads the bad copy rewrites it from the good.
    NodeCopyDamaged,
    /// One copy of a data block of a `copies=2` extent fails its checksum (or does not read)
    /// while the other is good: nothing is lost; `--repair` (or a read, or scrub) rewrites it
    /// from the good one.
    DataCopyDamaged,
    /// Both copies of a data block of a `copies=2` extent fail their checksum: that block of
    /// the file is lost (reads return EIO). Not a problem of the tree.
    DataDamaged,
    /// A node or extent born in a later commit than the node (or superblock) pointing to it.
    BirthGeneration,
    /// Keys out of order across nodes, or outside the range their parent's separators give.
    KeyOrder,
    /// An item larger than any the tree writes.
    ItemTooLarge,
    /// An item whose value does not decode.
    ItemUndecodable,
    /// An item of an unknown kind, or a known kind under an impossible key.
    UnknownItem,
    /// A block referenced outside `[first_block, total_blocks)`.
    BlockOutOfRange,
    /// A block referenced more than once (two owners).
    DoublyUsedBlock,
    /// The superblock's `used_blocks` differs from what the tree references.
    UsedBlocks,
    /// The superblock's `inode_count` differs from the number of inodes.
    InodeCount,
    /// The superblock's `next_ino` is not above every inode number.
    NextIno,
    /// There is no root directory.
    RootMissing,
    /// Items (extents, xattrs, entries, symlink chunks) of an object that has no inode.
    ItemsWithoutInode,
    /// Items that do not belong to the inode's kind (extents on a directory, ...).
    ItemKind,
    /// An inode's `blocks` differs from the sum of its extents.
    InodeBlocks,
    /// Two extents of one file map the same file block.
    ExtentOverlap,
    /// A symlink's chunks do not add up to its size (or are not numbered 0, 1, ...).
    SymlinkSize,
    /// An xattr whose external value is damaged: parts missing, of the wrong length, or
    /// beyond its end, or a slot two xattrs share; or external values on an image without
    /// their feature bit.
    XattrValue,
    /// External xattr value parts that no xattr claims.
    XattrStrayParts,
    /// A DIRENT or XATTR entry in the bucket of another name hash.
    NameHash,
    /// One name twice in a directory (or an xattr name twice).
    DuplicateName,
    /// A DIRENT entry without its DIRINDEX (readdir does not show it).
    DirentWithoutIndex,
    /// A DIRINDEX entry without its DIRENT (lookup does not find it).
    IndexWithoutDirent,
    /// The DIRENT and DIRINDEX halves of a name disagree.
    DirentIndexConflict,
    /// A directory entry naming an inode that does not exist.
    DanglingEntry,
    /// A directory entry whose kind differs from its inode's.
    EntryKind,
    /// A directory's `next_cookie` is not above every cookie it handed out.
    NextCookie,
    /// A directory's `..` (its `parent` field) is not the directory that contains it.
    DotDot,
    /// A directory with more than one name, or the root with a name: a hard-linked directory
    /// or a cycle.
    DirectoryLinks,
    /// An inode that no path from the root reaches and no ORPHAN item lists.
    Unreachable,
    /// A link count that differs from the names (files) or 2 + subdirectories (directories).
    LinkCount,
    /// An ORPHAN item for an inode that still has names, or that does not exist.
    Orphan,
    /// Inode flags this stablefs does not know, or that the inode's kind cannot carry
    /// (`format::inode_flags`).
    InodeFlags,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// An inconsistency: counts towards the exit status.
    Error,
    /// Worth knowing, harmless (a torn older superblock slot).
    Warning,
}

/// One finding.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub check: Check,
    pub severity: Severity,
    /// `--repair` can fix it safely.
    pub fixable: bool,
    /// `--repair` fixed it (the commit is on the device and a second check agrees).
    pub fixed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    pub message: String,
}

impl Problem {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    Valid,
    /// All zeros: never written (slot 0 of a fresh filesystem).
    Empty,
    Invalid,
    /// A valid superblock of a newer format.
    Unsupported,
}

/// One superblock slot.
#[derive(Clone, Debug, Serialize)]
pub struct SlotReport {
    pub slot: u32,
    pub offset: u64,
    pub state: SlotState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// This slot holds the commit fsck checked (the valid one with the highest generation).
    pub current: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the checked commit holds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub tree_nodes: u64,
    pub tree_height: u32,
    pub items: u64,
    pub inodes: u64,
    pub directories: u64,
    pub files: u64,
    pub symlinks: u64,
    pub special_files: u64,
    pub orphans: u64,
    pub xattrs: u64,
    pub extents: u64,
    pub metadata_blocks: u64,
    pub data_blocks: u64,
    /// Blocks the tree references (nodes and data), each counted once.
    pub referenced_blocks: u64,
    /// Allocatable blocks the tree does not reference.
    pub free_blocks: u64,
    pub superblock_used_blocks: u64,
    pub superblock_inode_count: u64,
    pub superblock_next_ino: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No errors (warnings possible).
    Clean,
    /// Errors were found and `--repair` corrected all of them.
    Corrected,
    /// Errors remain.
    Uncorrected,
    /// fsck could not do its job (cannot open or read, not a stablefs, unsupported version).
    OperationalError,
}

/// What `--repair` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    /// A repair commit was written.
    pub committed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Why nothing was repaired, when something needed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Every change, one line each.
    pub actions: Vec<String>,
    /// Errors a second check found on the repaired filesystem.
    pub remaining: Vec<Problem>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub status: Status,
    pub exit_code: u8,
    /// The operational error, when `status` is `operational_error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub block_size: u32,
    pub total_blocks: u64,
    pub first_block: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    pub superblocks: Vec<SlotReport>,
    pub stats: Stats,
    pub errors: usize,
    pub warnings: usize,
    pub problems: Vec<Problem>,
    /// Facts worth stating (orphans waiting for deletion, what was not checked, ...).
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairReport>,
}

impl Report {
    pub(crate) fn empty() -> Report {
        Report {
            status: Status::Clean,
            exit_code: EXIT_CLEAN,
            error: None,
            uuid: None,
            label: None,
            block_size: 0,
            total_blocks: 0,
            first_block: 0,
            generation: None,
            superblocks: Vec::new(),
            stats: Stats::default(),
            errors: 0,
            warnings: 0,
            problems: Vec::new(),
            notes: Vec::new(),
            repair: None,
        }
    }

    /// Errors found (before any repair).
    pub fn error_problems(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_error())
    }

    /// Has a problem of this kind been found?
    pub fn has(&self, check: Check) -> bool {
        self.problems.iter().any(|p| p.check == check)
    }

    /// The report as fsck prints it without `--json`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for slot in &self.superblocks {
            let _ = write!(s, "superblock slot {}: ", slot.slot);
            match slot.state {
                SlotState::Valid => {
                    let _ = write!(s, "valid, generation {}", slot.generation.unwrap_or(0));
                    if slot.current {
                        s.push_str(" (current)");
                    }
                }
                SlotState::Empty => s.push_str("empty (never written)"),
                SlotState::Invalid => s.push_str("invalid"),
                SlotState::Unsupported => s.push_str("unsupported"),
            }
            if let Some(r) = &slot.reason {
                let _ = write!(s, ": {r}");
            }
            s.push('\n');
        }
        if let Some(uuid) = &self.uuid {
            let _ = writeln!(
                s,
                "filesystem {uuid}{}: block size {}, {} blocks, generation {}",
                self.label
                    .as_deref()
                    .filter(|l| !l.is_empty())
                    .map(|l| format!(" \"{l}\""))
                    .unwrap_or_default(),
                self.block_size,
                self.total_blocks,
                self.generation.unwrap_or(0)
            );
            let t = &self.stats;
            let _ = writeln!(
                s,
                "tree: {} nodes, height {}, {} items",
                t.tree_nodes, t.tree_height, t.items
            );
            let _ = writeln!(
                s,
                "inodes: {} ({} directories, {} files, {} symlinks, {} special), {} orphaned, {} xattrs, {} extents",
                t.inodes, t.directories, t.files, t.symlinks, t.special_files, t.orphans, t.xattrs, t.extents
            );
            let _ = writeln!(
                s,
                "blocks: {} referenced ({} metadata, {} data), {} free; the superblock says {} used",
                t.referenced_blocks,
                t.metadata_blocks,
                t.data_blocks,
                t.free_blocks,
                t.superblock_used_blocks
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        for p in &self.problems {
            let sev = match p.severity {
                Severity::Error => "ERROR",
                Severity::Warning => "warning",
            };
            let tag = match (p.fixed, p.fixable) {
                (true, _) => " [fixed]",
                (false, true) => " [fixable with --repair]",
                (false, false) if p.is_error() => " [not fixable]",
                _ => "",
            };
            let _ = writeln!(s, "{sev}: {}{tag}", p.message);
        }
        if let Some(r) = &self.repair {
            if let Some(why) = &r.refused {
                let _ = writeln!(s, "repair refused: {why}");
            }
            if r.committed {
                let _ = writeln!(
                    s,
                    "repair: wrote commit {} with {} change(s):",
                    r.generation.unwrap_or(0),
                    r.actions.len()
                );
                for a in &r.actions {
                    let _ = writeln!(s, "  {a}");
                }
            }
            for p in &r.remaining {
                let _ = writeln!(s, "still wrong after repair: {}", p.message);
            }
        }
        if let Some(e) = &self.error {
            let _ = writeln!(s, "error: {e}");
        }
        s
    }

    /// One line: the outcome and the counts.
    pub fn summary(&self) -> String {
        match self.status {
            Status::Clean if self.warnings > 0 => {
                format!("clean ({} warning(s))", self.warnings)
            }
            Status::Clean => "clean".into(),
            Status::Corrected => format!("{} error(s), all corrected", self.errors),
            Status::Uncorrected => {
                let left = self
                    .repair
                    .as_ref()
                    .filter(|r| r.committed)
                    .map_or(self.errors, |r| r.remaining.len());
                format!("{} error(s), {left} left uncorrected", self.errors)
            }
            Status::OperationalError => format!(
                "operational error: {}",
                self.error.as_deref().unwrap_or("unknown")
            ),
        }
    }
}
