//! Space that `fallocate` promised: blocks reserved but never written ("unwritten" runs),
//! and the queries of where an object holds data (mapped, dirty or being written back) that
//! `SEEK_DATA`, `SEEK_HOLE` and allocation need.
//!
//! # How fallocate allocates in a copy-on-write filesystem
//!
//! `fallocate` promises that writes into the range will not fail with `ENOSPC`. Writing zeros
//! would not keep that promise here: an allocated block is never overwritten in place, so the
//! next write to it needs a fresh block anyway, and the zeros would cost RAM (as dirty blocks),
//! a commit's worth of device writes, and for a large range more of both than there is. So
//! allocation is a reservation instead, as btrfs does for preallocated extents:
//!
//! - The holes of the range are recorded as UNWRITTEN runs (`(obj, UNWRITTEN, first block)` →
//!   length; see `format::item`) and counted in `State::reserved_blocks`. No device block is
//!   taken and nothing is written: reads of an unwritten block see zeros, `SEEK_DATA` sees a
//!   hole (as ext4 does for an unwritten extent), `st_blocks` counts it.
//! - `Store::reserve` keeps reserved blocks out of everybody's free space, so they are there
//!   when needed. The first write into an unwritten block takes its reservation (the block
//!   becomes an ordinary dirty block, already paid for) and so never fails with `ENOSPC`.
//! - Reservations are on the medium, with a per-object total under `OBJECT_FS` so the mount
//!   sums them without walking every file. Truncate and punch hole release them.
//!
//! What it does not promise: the *second* write to a block. Once written, a block is ordinary
//! copy-on-write data, and overwriting it needs a new block, as on btrfs and ZFS.

use super::blockbuf::BlockBuf;
use super::state::{DirtyBlock, State};
use super::ObjId;
use crate::error::{Error, Result};
use crate::format::{
    decode_block_count, encode_block_count, ExtentItem, Key, KIND_EXTENT, KIND_UNWRITTEN, OBJECT_FS,
};
use std::collections::BTreeMap;

fn unwritten_key(obj: ObjId, fb: u64) -> Key {
    Key::new(obj, KIND_UNWRITTEN, fb)
}

fn unwritten_total_key(obj: ObjId) -> Key {
    Key::new(OBJECT_FS, KIND_UNWRITTEN, obj)
}

/// The first key of `m` in `[from, to)`.
fn first_key<V>(m: Option<&BTreeMap<u64, V>>, from: u64, to: u64) -> Option<u64> {
    m.and_then(|m| m.range(from..to).next().map(|(k, _)| *k))
}

impl<E> State<E> {
    /// The total of all reservations on the medium, for the mount.
    pub fn load_reserved_blocks(&mut self) -> Result<u64> {
        let items = self.meta.tree.range(
            &unwritten_total_key(0),
            &unwritten_total_key(u64::MAX),
            usize::MAX,
        )?;
        let mut total = 0u64;
        for (_, v) in items {
            total = total
                .checked_add(decode_block_count(&v)?)
                .ok_or_else(|| Error::Corrupt("unwritten block totals overflow".into()))?;
        }
        Ok(total)
    }

    /// Does file block `fb` hold data (mapped, dirty or being written back)?
    pub fn holds_data(&mut self, obj: ObjId, fb: u64) -> Result<bool> {
        if self.in_memory(obj, fb) {
            return Ok(true);
        }
        Ok(self.extent_at(obj, fb)?.is_some())
    }

    fn in_memory(&self, obj: ObjId, fb: u64) -> bool {
        self.dirty.get(&obj).is_some_and(|m| m.contains_key(&fb))
            || self
                .writeback
                .get(&obj)
                .is_some_and(|m| m.contains_key(&fb))
    }

    /// The first mapped extent that starts in `[from, to)`, with its first block.
    fn extent_starting_in(&mut self, obj: ObjId, from: u64, to: u64) -> Result<Option<(u64, u64)>> {
        if from >= to {
            return Ok(None);
        }
        let (first, total) = (self.meta.sb.first_block, self.meta.sb.total_blocks);
        let found = self.meta.tree.range(
            &Key::new(obj, KIND_EXTENT, from),
            &Key::new(obj, KIND_EXTENT, to - 1),
            1,
        )?;
        match found.into_iter().next() {
            Some((k, v)) => Ok(Some((
                k.offset,
                ExtentItem::decode(&v, first, total)?.len(),
            ))),
            None => Ok(None),
        }
    }

    /// The first block in `[fb, end)` that holds data, if any.
    pub fn next_data_block(&mut self, obj: ObjId, fb: u64, end: u64) -> Result<Option<u64>> {
        if fb >= end {
            return Ok(None);
        }
        if self.extent_at(obj, fb)?.is_some() {
            return Ok(Some(fb));
        }
        let in_memory = [
            first_key(self.dirty.get(&obj), fb, end),
            first_key(self.writeback.get(&obj), fb, end),
        ]
        .into_iter()
        .flatten()
        .min();
        let upto = in_memory.unwrap_or(end);
        let mapped = self.extent_starting_in(obj, fb + 1, upto)?.map(|(s, _)| s);
        Ok(mapped.or(in_memory))
    }

    /// The first block in `[fb, end)` that holds no data, or `end`.
    pub fn next_hole_block(&mut self, obj: ObjId, fb: u64, end: u64) -> Result<u64> {
        let mut cur = fb;
        while cur < end {
            if self.in_memory(obj, cur) {
                cur += 1;
            } else if let Some((start, e)) = self.extent_at(obj, cur)? {
                cur = start + e.len();
            } else {
                return Ok(cur);
            }
        }
        Ok(end)
    }

    /// The runs `[start, end)` of blocks in `[from, to)` that hold nothing: no data, no
    /// reservation.
    pub fn hole_runs(&mut self, obj: ObjId, from: u64, to: u64) -> Result<Vec<(u64, u64)>> {
        let mut taken: Vec<(u64, u64)> = self.unwritten_runs(obj, from, to)?;
        for m in [
            self.dirty
                .get(&obj)
                .map(|m| m.range(from..to).map(|(k, _)| *k).collect()),
            self.writeback
                .get(&obj)
                .map(|m| m.range(from..to).map(|(k, _)| *k).collect()),
        ] {
            let keys: Vec<u64> = m.unwrap_or_default();
            taken.extend(keys.into_iter().map(|k| (k, k + 1)));
        }
        let mut cur = from;
        while cur < to {
            if let Some((start, e)) = self.extent_at(obj, cur)? {
                let stop = (start + e.len()).min(to);
                taken.push((cur, stop));
                cur = stop;
            } else {
                match self.extent_starting_in(obj, cur + 1, to)? {
                    Some((start, _)) => cur = start,
                    None => break,
                }
            }
        }
        taken.sort_unstable();
        let mut holes = Vec::new();
        let mut cur = from;
        for (s, e) in taken {
            if s > cur {
                holes.push((cur, s));
            }
            cur = cur.max(e);
        }
        if cur < to {
            holes.push((cur, to));
        }
        Ok(holes)
    }

    /// Drops the in-memory blocks of `[from, to)` (dirty and being written back); returns the
    /// dirty blocks' buffers for reuse.
    pub fn drop_cached_range(&mut self, obj: ObjId, from: u64, to: u64) -> Vec<BlockBuf> {
        let mut bufs = Vec::new();
        if let Some(m) = self.dirty.get_mut(&obj) {
            let keys: Vec<u64> = m.range(from..to).map(|(k, _)| *k).collect();
            let gone: Vec<DirtyBlock> = keys.iter().filter_map(|k| m.remove(k)).collect();
            if m.is_empty() {
                self.dirty.remove(&obj);
            }
            self.dirty_gone(obj, &gone);
            bufs.extend(gone.into_iter().map(|d| d.buf));
        }
        if let Some(m) = self.writeback.get_mut(&obj) {
            // The commit writing them finds them gone (see `finish_writeback`); their device
            // blocks were unmapped by the caller and are freed only once that commit is done.
            let keys: Vec<u64> = m.range(from..to).map(|(k, _)| *k).collect();
            for k in keys {
                m.remove(&k);
            }
            if m.is_empty() {
                self.writeback.remove(&obj);
            }
        }
        bufs
    }

    // ---- unwritten runs ----

    /// The unwritten items `(start, len)` that overlap `[from, to)`, whole.
    fn unwritten_items(&mut self, obj: ObjId, from: u64, to: u64) -> Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        if from >= to || self.reserved_blocks == 0 {
            return Ok(out);
        }
        let decode = |k: &Key, v: &[u8]| -> Result<(u64, u64)> {
            let n = decode_block_count(v)?;
            match k.offset.checked_add(n) {
                Some(_) => Ok((k.offset, n)),
                None => Err(Error::Corrupt(format!(
                    "inode {obj}: unwritten run {}+{n} overflows",
                    k.offset
                ))),
            }
        };
        let below = self
            .meta
            .tree
            .floor(&unwritten_key(obj, from), &unwritten_key(obj, 0))?;
        if let Some((k, v)) = below {
            let (s, n) = decode(&k, &v)?;
            if s + n > from {
                out.push((s, n));
            }
        }
        let mut cursor = from + 1;
        while cursor < to {
            let items = self.meta.tree.range(
                &unwritten_key(obj, cursor),
                &unwritten_key(obj, to - 1),
                256,
            )?;
            let Some(last) = items.last().map(|(k, _)| k.offset) else {
                break;
            };
            for (k, v) in &items {
                out.push(decode(k, v)?);
            }
            cursor = last + 1;
        }
        Ok(out)
    }

    /// The unwritten blocks of `[from, to)`, as runs `[start, end)`.
    pub fn unwritten_runs(&mut self, obj: ObjId, from: u64, to: u64) -> Result<Vec<(u64, u64)>> {
        Ok(self
            .unwritten_items(obj, from, to)?
            .into_iter()
            .map(|(s, n)| (s.max(from), (s + n).min(to)))
            .collect())
    }

    /// How many blocks of `[from, to)` are reserved and unwritten.
    pub fn unwritten_count(&mut self, obj: ObjId, from: u64, to: u64) -> Result<u64> {
        Ok(self
            .unwritten_runs(obj, from, to)?
            .iter()
            .map(|(s, e)| e - s)
            .sum())
    }

    /// Releases the reservations of `[from, to)` (they were written, truncated or punched);
    /// returns how many blocks they held, for the caller's count of the object's blocks.
    pub fn take_unwritten(&mut self, obj: ObjId, from: u64, to: u64) -> Result<u64> {
        let mut removed = 0;
        for (s, n) in self.unwritten_items(obj, from, to)? {
            let e = s + n;
            self.meta.tree.remove(&unwritten_key(obj, s))?;
            if s < from {
                self.meta
                    .tree
                    .insert(unwritten_key(obj, s), encode_block_count(from - s))?;
            }
            if e > to {
                self.meta
                    .tree
                    .insert(unwritten_key(obj, to), encode_block_count(e - to))?;
            }
            removed += e.min(to) - s.max(from);
        }
        if removed > 0 {
            self.adjust_unwritten_total(obj, 0, removed)?;
        }
        Ok(removed)
    }

    /// Records `runs` (disjoint from every reservation of `obj`) as unwritten, merging with
    /// the runs they touch.
    pub fn add_unwritten(&mut self, obj: ObjId, runs: &[(u64, u64)]) -> Result<()> {
        let mut added = 0;
        for &(s, e) in runs {
            if s >= e {
                continue;
            }
            added += e - s;
            let (mut s, mut e) = (s, e);
            if s > 0 {
                let left = self
                    .meta
                    .tree
                    .floor(&unwritten_key(obj, s - 1), &unwritten_key(obj, 0))?;
                if let Some((k, v)) = left {
                    if k.offset + decode_block_count(&v)? == s {
                        self.meta.tree.remove(&k)?;
                        s = k.offset;
                    }
                }
            }
            if let Some(v) = self.meta.tree.remove(&unwritten_key(obj, e))? {
                e += decode_block_count(&v)?;
            }
            self.meta
                .tree
                .insert(unwritten_key(obj, s), encode_block_count(e - s))?;
        }
        self.adjust_unwritten_total(obj, added, 0)
    }

    /// Updates the object's reservation total on the medium and the store's in memory.
    fn adjust_unwritten_total(&mut self, obj: ObjId, added: u64, removed: u64) -> Result<()> {
        if added == removed {
            return Ok(());
        }
        let key = unwritten_total_key(obj);
        let cur = match self.meta.tree.get(&key)? {
            Some(v) => decode_block_count(&v)?,
            None => 0,
        };
        let Some(new) = (cur + added).checked_sub(removed) else {
            return Err(Error::Corrupt(format!(
                "inode {obj}: {removed} unwritten blocks released but only {cur} reserved"
            )));
        };
        if new == 0 {
            self.meta.tree.remove(&key)?;
        } else {
            self.meta.tree.insert(key, encode_block_count(new))?;
        }
        self.reserved_blocks = (self.reserved_blocks + added).saturating_sub(removed);
        Ok(())
    }

    /// The object is being deleted: its reservation total goes with it (the caller removes its
    /// runs).
    pub fn forget_unwritten(&mut self, obj: ObjId) -> Result<()> {
        if let Some(v) = self.meta.tree.remove(&unwritten_total_key(obj))? {
            let n = decode_block_count(&v)?;
            self.reserved_blocks = self.reserved_blocks.saturating_sub(n);
        }
        Ok(())
    }
}
