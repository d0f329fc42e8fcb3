//! Transactions and commits: what is committed, and the order in which it reaches the medium.
//!
//! A commit of generation g:
//! 1. (caller) file data is written to freshly allocated blocks;
//! 2. `Meta::prepare_commit` writes every dirty tree node to fresh blocks in memory, seals the
//!    transaction's frees and builds superblock g — all under the filesystem lock, so the
//!    snapshot is consistent;
//! 3. `write_commit` (no lock held) writes the nodes, flushes, writes superblock g into slot
//!    g % 2, and flushes again;
//! 4. `Meta::commit_done` makes the blocks freed by this transaction allocatable.
//!
//! A crash anywhere before the second flush leaves superblock g-1 (the other slot) and its
//! whole tree untouched, because nothing it references is overwritten until commit g is
//! durable (`alloc` holds the frees back).

use crate::alloc::Allocator;
use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, Result};
use crate::format::{
    BlockNo, BlockPtr, ExtentItem, Key, NodeIdentity, Superblock, KIND_EXTENT, KIND_INODE,
    KIND_ORPHAN, SB_SIZE, SB_SLOT_OFFSETS,
};
use crate::tree::{Tree, TreeIo, Visit};
use std::sync::Arc;

/// Everything metadata: the tree, the free map and the last committed superblock.
pub struct Meta {
    pub tree: Tree,
    pub alloc: Allocator,
    /// The last durable superblock (the template for the next one).
    pub sb: Superblock,
    pub next_ino: u64,
    pub inode_count: u64,
    /// Metadata blocks that failed verification at mount; non-empty forces read-only.
    pub damage: Vec<Error>,
    /// Inodes with no links left (to be deleted).
    pub orphans: Vec<u64>,
}

/// A commit ready to be written.
pub struct CommitPlan {
    pub blocks: Vec<(BlockNo, Vec<u8>)>,
    pub sb: Superblock,
}

pub fn identity(sb: &Superblock) -> NodeIdentity {
    NodeIdentity {
        uuid: sb.uuid,
        block_size: sb.block_size,
        first_block: sb.first_block,
        total_blocks: sb.total_blocks,
    }
}

/// Reads both superblock slots and returns the valid one with the highest generation. Damaged
/// slots are skipped (a torn superblock write is an ordinary crash outcome); if none is valid
/// the error says why, preferring "needs a newer stablefs" over "not a stablefs".
pub fn read_superblock(dev: &dyn BlockDevice) -> Result<Superblock> {
    let mut best: Option<Superblock> = None;
    let mut errors = Vec::new();
    for (slot, &off) in SB_SLOT_OFFSETS.iter().enumerate() {
        if off + SB_SIZE as u64 > dev.capacity() {
            errors.push(Error::Corrupt(format!("slot {slot}: device too small")));
            continue;
        }
        let mut buf = AlignedBuf::zeroed(SB_SIZE);
        dev.read_at(off, &mut buf)?;
        match Superblock::decode(&buf) {
            Ok(sb) if sb.slot as usize != slot => errors.push(Error::Corrupt(format!(
                "slot {slot} holds the superblock of slot {}",
                sb.slot
            ))),
            Ok(sb) => {
                if best.as_ref().is_none_or(|b| sb.generation > b.generation) {
                    best = Some(sb);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if let Some(sb) = best {
        return Ok(sb);
    }
    if let Some(i) = errors
        .iter()
        .position(|e| matches!(e, Error::Unsupported(_)))
    {
        return Err(errors.swap_remove(i));
    }
    let why: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    Err(Error::Corrupt(format!(
        "no valid stablefs superblock ({})",
        why.join("; ")
    )))
}

impl Meta {
    /// A new, empty filesystem's metadata (mkfs), not yet written.
    pub fn create(dev: Arc<dyn BlockDevice>, sb: Superblock) -> Meta {
        let io = TreeIo::new(dev, identity(&sb), sb.metadata_dup());
        Meta {
            tree: Tree::new_empty(io),
            alloc: Allocator::new(sb.first_block, sb.total_blocks),
            next_ino: sb.next_ino,
            inode_count: sb.inode_count,
            sb,
            damage: Vec::new(),
            orphans: Vec::new(),
        }
    }

    /// Opens the newest commit on `dev`: verifies the superblock, walks and verifies the whole
    /// tree, and rebuilds the free map from what it references. `heal`: a node copy found bad
    /// is rewritten from the good one (DUP); false when nothing may be written.
    pub fn open(dev: Arc<dyn BlockDevice>, heal: bool) -> Result<Meta> {
        let sb = read_superblock(&*dev)?;
        let bs = u64::from(sb.block_size);
        let dev_blocks = dev.capacity() / bs;
        if sb.total_blocks > dev_blocks {
            return Err(Error::Corrupt(format!(
                "superblock says {} blocks but the device holds only {dev_blocks} (truncated image?)",
                sb.total_blocks
            )));
        }
        if sb.block_size % dev.align() != 0 {
            return Err(Error::Invalid(format!(
                "block size {} is not a multiple of the device's logical block size {}",
                sb.block_size,
                dev.align()
            )));
        }
        let io = TreeIo::new(dev, identity(&sb), sb.metadata_dup());
        // Features this code only may read: it must not write either.
        let heal = heal && !sb.needs_read_only();
        io.heal.store(heal, std::sync::atomic::Ordering::Relaxed);
        let tree = Tree::open(io, sb.root, sb.root_level)?;
        let mut meta = Meta {
            tree,
            alloc: Allocator::new(sb.first_block, sb.total_blocks),
            next_ino: sb.next_ino,
            inode_count: 0,
            sb,
            damage: Vec::new(),
            orphans: Vec::new(),
        };
        meta.rebuild_free_map()?;
        Ok(meta)
    }

    fn rebuild_free_map(&mut self) -> Result<()> {
        let (first, total) = (self.sb.first_block, self.sb.total_blocks);
        let alloc = &mut self.alloc;
        let mut inodes = 0u64;
        let mut orphans = Vec::new();
        let mut max_ino = 0u64;
        let damage = self.tree.walk_tolerant(&mut |v| {
            match v {
                Visit::Node { ptr, .. } => {
                    claim(alloc, ptr.addr.0, 1, "tree node")?;
                    if let Some(copy) = ptr.copy_addr {
                        claim(alloc, copy.0, 1, "second copy of a tree node")?;
                    }
                }
                Visit::Item { key, value } if key.kind == KIND_EXTENT => {
                    let e = ExtentItem::decode(value, first, total)?;
                    for (k, (start, len)) in e.runs().enumerate() {
                        let what = if k == 0 {
                            "file extent"
                        } else {
                            "second copy of a file extent"
                        };
                        claim(alloc, start, len, what)?;
                    }
                }
                Visit::Item { key, .. } if key.kind == KIND_INODE => {
                    inodes += 1;
                    max_ino = max_ino.max(key.object);
                }
                Visit::Item { key, .. } if key.kind == KIND_ORPHAN => orphans.push(key.offset),
                Visit::Item { .. } => {}
            }
            Ok(())
        })?;
        if max_ino >= self.next_ino {
            return Err(Error::Corrupt(format!(
                "inode {max_ino} at or beyond next inode {}",
                self.next_ino
            )));
        }
        for e in &damage {
            log::error!("damaged metadata: {e}; mounting read-only");
        }
        self.damage = damage;
        self.inode_count = inodes;
        self.orphans = orphans;
        Ok(())
    }

    /// Builds commit `sb.generation + 1` from the current tree (see the module doc).
    pub fn prepare_commit(&mut self, now: i64) -> Result<CommitPlan> {
        let generation = self.sb.generation + 1;
        let mut blocks = Vec::new();
        let root = self
            .tree
            .write_dirty(&mut self.alloc, generation, &mut blocks)?;
        self.alloc.seal();
        // What this commit references: neither free nor freed by it (blocks freed by this
        // transaction are only reusable once it is durable, but it no longer references them).
        let a = &self.alloc;
        let used = a.total_blocks() - a.first_block() - a.free_blocks() - a.pending_blocks();
        let sb = Superblock {
            slot: Superblock::slot_for(generation) as u32,
            generation,
            root,
            root_level: self.tree.root_level(),
            next_ino: self.next_ino,
            used_blocks: used,
            inode_count: self.inode_count,
            committed: now,
            ..self.sb.clone()
        };
        Ok(CommitPlan { blocks, sb })
    }

    /// Commit `plan` is durable: its frees become reusable.
    pub fn commit_done(&mut self, plan_sb: Superblock) {
        self.alloc.release_sealed();
        self.sb = plan_sb;
    }

    pub fn root_ptr(&self) -> BlockPtr {
        self.sb.root
    }
}

fn claim(alloc: &mut Allocator, start: u64, len: u64, what: &str) -> Result<()> {
    if alloc.mark_used(start, len) {
        Ok(())
    } else {
        Err(Error::Corrupt(format!(
            "{what} at blocks {start}+{len} is referenced twice or out of range"
        )))
    }
}

/// Writes a prepared commit: nodes, flush, superblock, flush.
pub fn write_commit(dev: &dyn BlockDevice, plan: &mut CommitPlan) -> Result<()> {
    let bs = plan.sb.block_size;
    plan.blocks.sort_by_key(|b| b.0);
    write_runs(dev, bs, &plan.blocks)?;
    dev.flush()?;
    write_superblock(dev, &plan.sb)?;
    dev.flush()?;
    Ok(())
}

/// Writes blocks, coalescing runs of consecutive block numbers into one vectored write each.
pub fn write_runs(dev: &dyn BlockDevice, bs: u32, blocks: &[(BlockNo, Vec<u8>)]) -> Result<()> {
    let mut i = 0;
    while i < blocks.len() {
        let mut j = i + 1;
        while j < blocks.len() && blocks[j].0 .0 == blocks[j - 1].0 .0 + 1 && j - i < 1024 {
            j += 1;
        }
        let bufs: Vec<AlignedBuf> = blocks[i..j]
            .iter()
            .map(|(_, bytes)| {
                let mut b = AlignedBuf::zeroed(bytes.len());
                b.copy_from_slice(bytes);
                b
            })
            .collect();
        let refs: Vec<&AlignedBuf> = bufs.iter().collect();
        dev.write_at(blocks[i].0.offset(bs), &refs)?;
        i = j;
    }
    Ok(())
}

/// Writes a superblock into its slot.
pub fn write_superblock(dev: &dyn BlockDevice, sb: &Superblock) -> Result<()> {
    let mut buf = AlignedBuf::zeroed(SB_SIZE);
    buf.copy_from_slice(&sb.encode());
    dev.write_at(SB_SLOT_OFFSETS[sb.slot as usize], &[&buf])?;
    Ok(())
}

/// The key range of one object's items of one kind.
pub fn kind_range(object: u64, kind: u8) -> (Key, Key) {
    (Key::new(object, kind, 0), Key::new(object, kind, u64::MAX))
}
