//! File data in the tree: extent lookup and punching, and the writeback step of a commit that
//! turns dirty blocks into contiguous extents.

use super::state::{DirtyBlock, State};
use super::{ObjId, Owner};
use crate::error::{Error, Result};
use crate::format::{block_crc, Copies, ExtentItem, Key, KIND_EXTENT};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where the current bytes of one file block are.
pub enum Src {
    /// Never written, or beyond the end: zeros.
    Hole,
    /// In memory (dirty or being written back): a copy of the bytes.
    Mem(Vec<u8>),
    /// On the device, in every one of `copies` (the same bytes), and must hash to `crc`.
    Disk { copies: Copies, crc: u32 },
}

impl Src {
    /// Where block `i` of extent `e` is.
    fn in_extent(e: &ExtentItem, i: u64) -> Src {
        Src::Disk {
            copies: e.copies(i),
            crc: e.crcs[i as usize],
        }
    }
}

/// A contiguous data write a commit issues: the same blocks, in order, to the run of every
/// copy (`starts`).
pub struct WriteJob {
    pub obj: ObjId,
    pub starts: Copies,
    pub blocks: Vec<(u64, Arc<DirtyBlock>)>,
}

impl<E> State<E> {
    fn extent_bounds(&self) -> (u64, u64) {
        (self.meta.sb.first_block, self.meta.sb.total_blocks)
    }

    /// The extent covering file block `fb`, with its first file block.
    pub fn extent_at(&mut self, obj: ObjId, fb: u64) -> Result<Option<(u64, ExtentItem)>> {
        let (first, total) = self.extent_bounds();
        let found = self.meta.tree.floor(
            &Key::new(obj, KIND_EXTENT, fb),
            &Key::new(obj, KIND_EXTENT, 0),
        )?;
        let Some((k, v)) = found else { return Ok(None) };
        let e = ExtentItem::decode(&v, first, total)?;
        Ok((fb < k.offset + e.len()).then_some((k.offset, e)))
    }

    /// Where file block `fb` of `obj` is now.
    pub fn plan_block(&mut self, obj: ObjId, fb: u64) -> Result<Src> {
        if let Some(d) = self.dirty.get(&obj).and_then(|m| m.get(&fb)) {
            return Ok(Src::Mem(d.buf.to_vec()));
        }
        if let Some(d) = self.writeback.get(&obj).and_then(|m| m.get(&fb)) {
            return Ok(Src::Mem(d.buf.to_vec()));
        }
        Ok(match self.extent_at(obj, fb)? {
            Some((start, e)) => Src::in_extent(&e, fb - start),
            None => Src::Hole,
        })
    }

    /// Where each of the `n` file blocks from `fb0` is now; each extent is decoded once.
    pub fn plan_range(&mut self, obj: ObjId, fb0: u64, n: u64) -> Result<Vec<Src>> {
        let end = fb0 + n;
        let mut out = Vec::with_capacity(n as usize);
        let mut cur: Option<(u64, ExtentItem)> = None;
        // File blocks below `hole_until` are known to be unmapped.
        let mut hole_until = fb0;
        for fb in fb0..end {
            let mem = self
                .dirty
                .get(&obj)
                .and_then(|m| m.get(&fb))
                .map(|d| &d.buf);
            let mem = mem.or_else(|| {
                self.writeback
                    .get(&obj)
                    .and_then(|m| m.get(&fb))
                    .map(|d| &d.buf)
            });
            if let Some(b) = mem {
                out.push(Src::Mem(b.to_vec()));
                continue;
            }
            if cur
                .as_ref()
                .is_none_or(|(s, e)| fb < *s || fb >= s + e.len())
                && fb >= hole_until
            {
                cur = self.extent_at(obj, fb)?;
                if cur.is_none() {
                    hole_until = self.next_extent_start(obj, fb, end)?;
                }
            }
            out.push(match &cur {
                Some((s, e)) if fb >= *s && fb < s + e.len() => Src::in_extent(e, fb - s),
                _ => Src::Hole,
            });
        }
        Ok(out)
    }

    /// The runs `[start, end)` of file blocks in `[from, to)` that an extent maps.
    pub fn mapped_runs(&mut self, obj: ObjId, from: u64, to: u64) -> Result<Vec<(u64, u64)>> {
        let mut runs = Vec::new();
        if from >= to {
            return Ok(runs);
        }
        let (first, total) = self.extent_bounds();
        if let Some((s, e)) = self.extent_at(obj, from)? {
            runs.push((from, (s + e.len()).min(to)));
        }
        let mut cursor = from + 1;
        while cursor < to {
            let items = self.meta.tree.range(
                &Key::new(obj, KIND_EXTENT, cursor),
                &Key::new(obj, KIND_EXTENT, to - 1),
                256,
            )?;
            let Some(last) = items.last().map(|(k, _)| k.offset) else {
                break;
            };
            for (k, v) in items {
                let len = ExtentItem::decode(&v, first, total)?.len();
                runs.push((k.offset, (k.offset + len).min(to)));
            }
            cursor = last + 1;
        }
        Ok(runs)
    }

    /// The first mapped file block in `(fb, end)`, or `end`.
    fn next_extent_start(&mut self, obj: ObjId, fb: u64, end: u64) -> Result<u64> {
        if fb + 1 >= end {
            return Ok(end);
        }
        let from = Key::new(obj, KIND_EXTENT, fb + 1);
        let to = Key::new(obj, KIND_EXTENT, end - 1);
        Ok(self
            .meta
            .tree
            .range(&from, &to, 1)?
            .first()
            .map_or(end, |(k, _)| k.offset))
    }

    /// Unmaps file blocks `[from, to)`: their device blocks (both copies with `copies=2`) are
    /// freed at the next commit. Returns how many were mapped, for the caller's count of the
    /// object's blocks.
    pub fn punch(&mut self, obj: ObjId, from: u64, to: u64) -> Result<u64> {
        if from >= to {
            return Ok(0);
        }
        let (first, total) = self.extent_bounds();
        let mut found: Vec<(u64, ExtentItem)> = Vec::new();
        if let Some(e) = self.extent_at(obj, from)? {
            found.push(e);
        }
        let mut cursor = Key::new(obj, KIND_EXTENT, from);
        let end = Key::new(obj, KIND_EXTENT, to - 1);
        loop {
            let items = self.meta.tree.range(&cursor, &end, 256)?;
            let Some(last) = items.last().map(|e| e.0) else {
                break;
            };
            for (k, v) in items {
                if found.first().is_none_or(|f| f.0 != k.offset) {
                    found.push((k.offset, ExtentItem::decode(&v, first, total)?));
                }
            }
            if last.offset == u64::MAX {
                break;
            }
            cursor = Key::new(obj, KIND_EXTENT, last.offset + 1);
        }
        let mut unmapped = 0;
        for (start, e) in found {
            let len = e.len();
            let (cut_from, cut_to) = (from.max(start), to.min(start + len));
            if cut_from >= cut_to {
                continue;
            }
            self.meta.tree.remove(&Key::new(obj, KIND_EXTENT, start))?;
            let (a, b) = ((cut_from - start) as usize, (cut_to - start) as usize);
            for (s, l) in e.slice(a, b).runs() {
                self.meta.alloc.free_later(s, l);
            }
            unmapped += (b - a) as u64;
            if a > 0 {
                let left = e.slice(0, a);
                self.meta
                    .tree
                    .insert(Key::new(obj, KIND_EXTENT, start), left.encode())?;
            }
            if b < e.crcs.len() {
                let right = e.slice(b, e.crcs.len());
                self.meta
                    .tree
                    .insert(Key::new(obj, KIND_EXTENT, cut_to), right.encode())?;
            }
        }
        Ok(unmapped)
    }

    /// The object is being deleted: its reservation total and its blocks in memory go now.
    /// The caller removes its items from the tree, handing each to `forget_data_item` first.
    pub fn forget_data(&mut self, obj: ObjId) -> Result<()> {
        self.forget_unwritten(obj)?;
        if let Some(d) = self.dirty.remove(&obj) {
            self.dirty_gone(obj, d.values());
        }
        self.writeback.remove(&obj);
        Ok(())
    }

    /// An item of an object being deleted, before the caller removes it: an extent's device
    /// blocks (every copy) are freed at the next commit.
    pub fn forget_data_item(&mut self, key: &Key, value: &[u8]) -> Result<()> {
        if key.kind == KIND_EXTENT {
            let (first, total) = self.extent_bounds();
            for (s, l) in ExtentItem::decode(value, first, total)?.runs() {
                self.meta.alloc.free_later(s, l);
            }
        }
        Ok(())
    }

    /// Dirty blocks of `obj` in `[from, to)`.
    pub fn dirty_count(&self, obj: ObjId, from: u64, to: u64) -> u64 {
        match self.dirty.get(&obj) {
            Some(m) if from < to => m.range(from..to).count() as u64,
            _ => 0,
        }
    }

    /// Is file block `fb` of `obj` being written back by a commit now?
    pub fn is_writing_back(&self, obj: ObjId, fb: u64) -> bool {
        self.writeback
            .get(&obj)
            .is_some_and(|m| m.contains_key(&fb))
    }

    /// Drops in-memory blocks at or beyond file block `from` (truncate).
    pub fn drop_cached_from(&mut self, obj: ObjId, from: u64) {
        if let Some(m) = self.dirty.get_mut(&obj) {
            let gone = m.split_off(&from);
            self.dirty_gone(obj, gone.values());
        }
        if let Some(m) = self.writeback.get_mut(&obj) {
            m.split_off(&from);
        }
    }

    /// Places a run of up to `run` blocks in every copy the filesystem keeps: the first near
    /// the file's other blocks, each further one far away (`alloc_far_run`). If no free
    /// extent holds that many blocks for a copy, the run is shortened to what it got (the
    /// blocks given back were never referenced, so they are free at once). `ENOSPC` when a
    /// copy finds no room at all.
    fn alloc_copies(&mut self, run: u64) -> Result<(Copies, u64)> {
        let Some((first, mut got)) = self.meta.alloc.alloc(run) else {
            return Err(Error::Errno(libc::ENOSPC));
        };
        let mut starts = vec![first];
        while (starts.len() as u64) < self.meta.sb.data_copies() {
            match self.meta.alloc.alloc_far_run(first, got) {
                Some((start, n)) => {
                    for &s in &starts {
                        self.meta.alloc.unalloc(s + n, got - n);
                    }
                    got = n;
                    starts.push(start);
                }
                None => {
                    for &s in &starts {
                        self.meta.alloc.unalloc(s, got);
                    }
                    return Err(Error::Errno(libc::ENOSPC));
                }
            }
        }
        let starts = Copies::new(&starts)
            .ok_or_else(|| Error::Corrupt("more data copies than the format holds".into()))?;
        Ok((starts, got))
    }

    /// Commit step 1 finished writing `jobs`: reads may now go to the device.
    pub fn finish_writeback(&mut self, jobs: &[WriteJob]) {
        for job in jobs {
            self.writeback_blocks -= job.blocks.len() as u64;
            let Some(wb) = self.writeback.get_mut(&job.obj) else {
                continue;
            };
            for (fb, d) in &job.blocks {
                if wb.get(fb).is_some_and(|cur| Arc::ptr_eq(cur, d)) {
                    wb.remove(fb);
                }
            }
            if wb.is_empty() {
                self.writeback.remove(&job.obj);
            }
        }
    }
}

impl<E: Owner> State<E> {
    /// Commit step 1: gives every dirty block a place on the device, contiguous per run of
    /// file blocks, maps it in the tree, and moves it to `writeback`. Returns the writes to
    /// issue — always all of them, since the tree already points at their blocks — and, when a
    /// block found no space (it stays dirty), `ENOSPC`.
    /// At most about `budget` blocks are taken (whole runs), so a commit can pipeline.
    pub fn prepare_writeback(
        &mut self,
        generation: u64,
        budget: u64,
    ) -> (Vec<WriteJob>, Result<()>) {
        let mut p = Placement {
            generation,
            max_ext: ExtentItem::max_blocks(self.block_size) as u64,
            left: budget,
            jobs: Vec::new(),
        };
        // In object order: the same writes land on the same blocks in every run (a seeded
        // test's fault index names the same block), and files written together stay close.
        let mut inos: Vec<ObjId> = self.dirty.keys().copied().collect();
        inos.sort_unstable();
        for obj in inos {
            if p.left == 0 {
                break;
            }
            let Some(mut blocks) = self.dirty.remove(&obj) else {
                continue;
            };
            // The owner's count of the object's blocks changes in the same transaction, by
            // what was placed (even when placing stopped early).
            let mut mapped = 0i64;
            let placed = self.place_blocks(obj, &mut mapped, &mut blocks, &mut p);
            let r = E::blocks_mapped(&mut self.meta, obj, mapped).and(placed);
            if !blocks.is_empty() {
                self.dirty.insert(obj, blocks);
            }
            if r.is_err() {
                return (p.jobs, r);
            }
        }
        (p.jobs, Ok(()))
    }

    fn place_blocks(
        &mut self,
        obj: ObjId,
        mapped: &mut i64,
        blocks: &mut BTreeMap<u64, DirtyBlock>,
        p: &mut Placement,
    ) -> Result<()> {
        while let Some((&fb0, _)) = blocks.first_key_value() {
            if p.left == 0 {
                return Ok(());
            }
            // The run of consecutive file blocks starting at fb0, at most one extent item long.
            let mut run = 1;
            while run < p.max_ext && blocks.contains_key(&(fb0 + run)) {
                run += 1;
            }
            let (starts, got) = self.alloc_copies(run)?;
            *mapped -= self.punch(obj, fb0, fb0 + got)? as i64;
            let mut job = WriteJob {
                obj,
                starts,
                blocks: Vec::with_capacity(got as usize),
            };
            let mut crcs = Vec::with_capacity(got as usize);
            for fb in fb0..fb0 + got {
                let mut d = blocks.remove(&fb).expect("run blocks are present");
                self.dirty_gone(obj, [&d]);
                let crc = *d.crc.get_or_insert_with(|| block_crc(&d.buf));
                crcs.push(crc);
                job.blocks.push((fb, Arc::new(d)));
            }
            let item = ExtentItem::new(starts, p.generation, crcs);
            self.meta
                .tree
                .insert(Key::new(obj, KIND_EXTENT, fb0), item.encode())?;
            *mapped += got as i64;
            p.left = p.left.saturating_sub(got);
            self.writeback_blocks += got;
            let wb = self.writeback.entry(obj).or_default();
            for (fb, d) in &job.blocks {
                wb.insert(*fb, d.clone());
            }
            p.jobs.push(job);
        }
        Ok(())
    }
}

/// The state of one `prepare_writeback` call.
struct Placement {
    generation: u64,
    /// Most blocks one extent item maps.
    max_ext: u64,
    /// Blocks still to place in this call.
    left: u64,
    jobs: Vec<WriteJob>,
}

/// The memory segments of a job, for one vectored write.
pub fn job_segments(job: &WriteJob) -> Vec<&[u8]> {
    super::blockbuf::segments(job.blocks.iter().map(|(_, d)| &d.buf))
}
