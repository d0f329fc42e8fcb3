//! What the store keeps under the filesystem's one lock: the metadata (`Meta`: the tree, the
//! allocator, the running transaction), file data written since the last commit and not yet
//! on the device, the space promised to it, and whatever the layer above keeps under the same
//! lock (`ext`). Helpers here never do device I/O (the whole tree is loaded and verified at
//! mount), so the lock is never held across a device read.

use super::blockbuf::BlockBuf;
use super::ObjId;
use crate::txn::Meta;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A file block written since the last commit, in a private bounce buffer.
pub struct DirtyBlock {
    pub buf: BlockBuf,
    /// crc32c of `buf`, computed as the data was copied in; `None` after a partial update
    /// (recomputed over the private buffer at writeback).
    pub crc: Option<u32>,
    /// No extent mapped this file block when it became dirty (it was a hole, or a block that
    /// `fallocate` reserved): placing it adds a block to the object's mapped blocks, where
    /// placing an overwrite replaces one. Exact while the block is dirty, because every change of a
    /// file block's mapping (placing, truncate, punch, delete) takes its dirty block away too.
    pub adds_block: bool,
}

pub struct State<E> {
    pub meta: Meta,
    /// Dirty blocks per object, by file block index.
    pub(super) dirty: HashMap<ObjId, BTreeMap<u64, DirtyBlock>>,
    /// Blocks being written by a commit: already mapped in the tree to blocks that may not be
    /// on the device yet, so reads must take them from here until the write completes.
    pub(super) writeback: HashMap<ObjId, BTreeMap<u64, Arc<DirtyBlock>>>,
    pub(super) dirty_blocks: u64,
    /// Per object, how many of its dirty blocks have `adds_block`. `st_blocks` counts them
    /// from the moment they are written (as ext4 counts delayed allocations: `tar --sparse`
    /// and `du` must never see written data as a hole), so the count does not change when a
    /// commit places them. No entry for an object with none.
    pub(super) unplaced: HashMap<ObjId, u64>,
    pub(super) writeback_blocks: u64,
    /// Blocks reserved by `fallocate` and not written yet (see `unwritten`): free on the
    /// device, but promised.
    pub(crate) reserved_blocks: u64,
    pub(super) block_size: u32,
    /// The layer above's state, kept under the same lock (the filesystem: the kernel's
    /// references to inodes).
    pub ext: E,
}

impl<E> State<E> {
    pub(super) fn new(meta: Meta, ext: E) -> Self {
        let block_size = meta.sb.block_size;
        State {
            meta,
            dirty: HashMap::new(),
            writeback: HashMap::new(),
            dirty_blocks: 0,
            unplaced: HashMap::new(),
            writeback_blocks: 0,
            reserved_blocks: 0,
            block_size,
            ext,
        }
    }

    /// Is there anything a commit would write?
    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty() || self.meta.tree.is_dirty()
    }

    /// Dirty blocks of `obj` that will add to its mapped blocks when placed (see `unplaced`).
    pub fn unplaced_blocks(&self, obj: ObjId) -> u64 {
        self.unplaced.get(&obj).copied().unwrap_or(0)
    }

    /// Makes `d` the dirty block at file block `fb` of `obj`. A dirty block already there is
    /// replaced and returned; the new bytes take its place, and its `adds_block` (the mapping
    /// has not changed since it became dirty). Otherwise the block is counted.
    pub fn insert_dirty(&mut self, obj: ObjId, fb: u64, mut d: DirtyBlock) -> Option<DirtyBlock> {
        use std::collections::btree_map::Entry;
        match self.dirty.entry(obj).or_default().entry(fb) {
            Entry::Occupied(mut e) => {
                d.adds_block = e.get().adds_block;
                Some(e.insert(d))
            }
            Entry::Vacant(e) => {
                let adds = e.insert(d).adds_block;
                self.dirty_blocks += 1;
                if adds {
                    *self.unplaced.entry(obj).or_default() += 1;
                }
                None
            }
        }
    }

    /// Takes blocks that have left `obj`'s dirty set (placed, truncated, punched or deleted)
    /// out of the counts.
    pub fn dirty_gone<'a>(&mut self, obj: ObjId, gone: impl IntoIterator<Item = &'a DirtyBlock>) {
        let (mut n, mut adds) = (0u64, 0u64);
        for d in gone {
            n += 1;
            adds += u64::from(d.adds_block);
        }
        self.dirty_blocks -= n;
        if adds > 0 {
            let left = self.unplaced_blocks(obj) - adds;
            if left == 0 {
                self.unplaced.remove(&obj);
            } else {
                self.unplaced.insert(obj, left);
            }
        }
    }

    /// Device blocks each file block takes: 2 with `copies=2`, else 1.
    pub fn data_copies(&self) -> u64 {
        self.meta.sb.data_copies()
    }

    /// File blocks free for new data, as statfs counts them: free or freed by the running
    /// transaction, less what dirty data and fallocate reservations will take; with
    /// `copies=2` every file block takes two device blocks, so half.
    pub fn free_for_use(&self) -> u64 {
        let a = &self.meta.alloc;
        ((a.free_blocks() + a.pending_blocks()) / self.data_copies())
            .saturating_sub(self.dirty_blocks + self.reserved_blocks)
    }

    /// File blocks the device can hold (statfs's total): the device's blocks past the
    /// superblocks, halved with `copies=2`.
    pub fn data_capacity(&self) -> u64 {
        let a = &self.meta.alloc;
        (a.total_blocks() - a.first_block()) / self.data_copies()
    }

    /// Blocks kept for the tree: data writes stop short of all of them and new names of half,
    /// so that deletes, and the commits that free space, always find blocks for the nodes they
    /// rewrite (twice as many under DUP, which writes every node twice).
    pub fn metadata_reserve(&self) -> u64 {
        let a = &self.meta.alloc;
        let total = a.total_blocks() - a.first_block();
        let copies = if self.meta.sb.metadata_dup() { 2 } else { 1 };
        (total / 64).max(64) * copies
    }
}
