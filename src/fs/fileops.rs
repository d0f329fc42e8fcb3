//! The file operations beyond read and write: `fallocate` (allocate, keep size, punch hole,
//! zero range), `SEEK_DATA` / `SEEK_HOLE`, and `copy_file_range`; and the bookkeeping of
//! blocks that `fallocate` reserved but nobody has written yet ("unwritten" runs).
//!
//! # How fallocate allocates in a copy-on-write filesystem
//!
//! `fallocate` promises that writes into the range will not fail with `ENOSPC`. Writing zeros
//! would not keep that promise here: an allocated block is never overwritten in place, so the
//! next write to it needs a fresh block anyway, and the zeros would cost RAM (as dirty blocks),
//! a commit's worth of device writes, and for a large range more of both than there is. So
//! allocation is a reservation instead, as btrfs does for preallocated extents:
//!
//! - The holes of the range are recorded as UNWRITTEN runs (`(ino, UNWRITTEN, first block)` →
//!   length; see `format::item`) and counted in `State::reserved_blocks`. No device block is
//!   taken and nothing is written: reads of an unwritten block see zeros, `SEEK_DATA` sees a
//!   hole (as ext4 does for an unwritten extent), `st_blocks` counts it.
//! - `Fs::reserve` keeps reserved blocks out of everybody's free space, so they are there when
//!   needed. The first write into an unwritten block takes its reservation (the block becomes
//!   an ordinary dirty block, already paid for) and so never fails with `ENOSPC`.
//! - Reservations are on the medium, with a per-inode total under `OBJECT_FS` so the mount
//!   sums them without walking every file. Truncate and punch hole release them.
//!
//! What it does not promise: the *second* write to a block. Once written, a block is ordinary
//! copy-on-write data, and overwriting it needs a new block, as on btrfs and ZFS.

use super::state::{DirtyBlock, State};
use super::*;
use crate::format::{
    decode_block_count, encode_block_count, ExtentItem, InodeItem, KIND_EXTENT, KIND_UNWRITTEN,
};
use std::collections::BTreeMap;

/// Bytes `copy_file_range` moves per read-and-write step.
const COPY_CHUNK: u64 = 1 << 20;

fn unwritten_key(ino: Ino, fb: u64) -> Key {
    Key::new(ino, KIND_UNWRITTEN, fb)
}

fn unwritten_total_key(ino: Ino) -> Key {
    Key::new(OBJECT_FS, KIND_UNWRITTEN, ino)
}

/// The inode must be a regular file (`what` is the errno for other non-directories).
fn check_file(i: &InodeItem, what: i32) -> Result<()> {
    match i.kind() {
        FileKind::File => Ok(()),
        FileKind::Dir => errno(libc::EISDIR),
        _ => errno(what),
    }
}

/// What a `fallocate` mode asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Falloc {
    Allocate,
    PunchHole,
    ZeroRange,
}

/// Decodes a `fallocate` mode as Linux's `vfs_fallocate` does: a punch must keep the size;
/// anything else (collapse, insert, unshare, unknown bits) is not supported.
fn falloc_mode(mode: i32) -> Result<(Falloc, bool)> {
    let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
    let op = match mode & !libc::FALLOC_FL_KEEP_SIZE {
        0 => Falloc::Allocate,
        libc::FALLOC_FL_PUNCH_HOLE if keep_size => Falloc::PunchHole,
        libc::FALLOC_FL_ZERO_RANGE => Falloc::ZeroRange,
        _ => return errno(libc::EOPNOTSUPP),
    };
    Ok((op, keep_size))
}

impl Fs {
    /// `fallocate(2)` on `[offset, offset + len)`; `mode` as Linux (`FALLOC_FL_*`).
    /// See the module doc for what allocating means here.
    pub fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32) -> Result<()> {
        let (op, keep_size) = falloc_mode(mode)?;
        if len == 0 || offset > i64::MAX as u64 || len > i64::MAX as u64 {
            return errno(libc::EINVAL);
        }
        let end = offset + len;
        if end > i64::MAX as u64 {
            return errno(libc::EFBIG);
        }
        let _change = self.begin_change()?;
        {
            let mut st = self.lock();
            check_file(&st.inode(ino)?, libc::ENODEV)?;
        }
        match op {
            Falloc::Allocate => self.allocate(ino, offset, end, keep_size),
            Falloc::PunchHole => self.punch_hole(ino, offset, end),
            Falloc::ZeroRange => self.zero_range(ino, offset, end, keep_size),
        }
    }

    /// Reserves the holes of `[offset, end)` (whole blocks) and grows the size unless
    /// `keep_size`.
    fn allocate(&self, ino: Ino, offset: u64, end: u64, keep_size: bool) -> Result<()> {
        let bs = u64::from(self.bs);
        let mut st = self.lock();
        let mut i = st.inode(ino)?;
        check_file(&i, libc::ENODEV)?;
        let holes = st.hole_runs(ino, offset / bs, end.div_ceil(bs))?;
        let n: u64 = holes.iter().map(|(s, e)| e - s).sum();
        self.reserve(&st, n, super::ops::Reserve::Data)?;
        st.add_unwritten(ino, &holes)?;
        i.blocks += n;
        let t = Timespec::now();
        if !keep_size && end > i.size {
            i.size = end;
            i.mtime = t;
        }
        i.ctime = t;
        st.put_inode(ino, &i)
    }

    /// Deallocates the whole blocks of `[offset, end)` and zeroes the parts of the blocks at
    /// either end that hold data. The size never changes.
    fn punch_hole(&self, ino: Ino, offset: u64, end: u64) -> Result<()> {
        self.zero_partial_blocks(ino, offset, end)?;
        let bs = u64::from(self.bs);
        let mut st = self.lock();
        let mut i = st.inode(ino)?;
        check_file(&i, libc::ENODEV)?;
        let (from, to) = (offset.div_ceil(bs), end / bs);
        if from < to {
            let bufs = st.drop_cached_range(ino, from, to);
            st.punch(ino, &mut i, from, to)?;
            st.take_unwritten(ino, &mut i, from, to)?;
            self.recycle_blocks(bufs);
        }
        let t = Timespec::now();
        i.mtime = t;
        i.ctime = t;
        st.put_inode(ino, &i)
    }

    /// Zeroes `[offset, end)`: a punch, then the range allocated again (unwritten), as ext4
    /// leaves a zeroed range allocated. The size grows unless `keep_size`.
    fn zero_range(&self, ino: Ino, offset: u64, end: u64, keep_size: bool) -> Result<()> {
        let bs = u64::from(self.bs);
        {
            // Refuse up front, before anything changed, when the reservation cannot succeed:
            // every block of the range ends up reserved, except those that are reserved
            // already or keep their data (the partial blocks at either end). Dirty whole
            // blocks are dropped, which gives back what they were counted for.
            let mut st = self.lock();
            let (fb0, fb1) = (offset / bs, end.div_ceil(bs));
            let (from, to) = (offset.div_ceil(bs), end / bs);
            let already: u64 = st
                .unwritten_runs(ino, fb0, fb1)?
                .iter()
                .map(|(s, e)| e - s)
                .sum();
            let dropped = match st.dirty.get(&ino) {
                Some(m) if from < to => m.range(from..to).count() as u64,
                _ => 0,
            };
            let need = (fb1 - fb0).saturating_sub(already + dropped);
            self.reserve(&st, need, super::ops::Reserve::Data)?;
        }
        self.punch_hole(ino, offset, end)?;
        self.allocate(ino, offset, end, keep_size)
    }

    /// Writes zeros over the parts of `[offset, end)` that cover blocks only partly, where
    /// those blocks hold data below the end of the file (through the ordinary write path, so
    /// the blocks get new checksums).
    fn zero_partial_blocks(&self, ino: Ino, offset: u64, end: u64) -> Result<()> {
        let bs = u64::from(self.bs);
        let head_end = offset.div_ceil(bs) * bs;
        let tail_start = end / bs * bs;
        let parts = if head_end > tail_start {
            [(offset, end), (0, 0)] // inside one block
        } else {
            [(offset, head_end), (tail_start, end)]
        };
        let zeros = vec![0u8; bs as usize];
        for (lo, hi) in parts {
            let has_data = {
                let mut st = self.lock();
                let size = st.inode(ino)?.size;
                let hi = hi.min(size);
                (lo < hi && st.holds_data(ino, lo / bs)?).then_some(hi)
            };
            if let Some(hi) = has_data {
                self.write(ino, lo, &zeros[..(hi - lo) as usize], false)?;
            }
        }
        Ok(())
    }

    /// `lseek(SEEK_DATA)`: the first offset at or after `offset` inside data (a mapped block or
    /// one written since the last commit); `ENXIO` at or past the end of the file or when only
    /// holes follow.
    pub fn seek_data(&self, ino: Ino, offset: u64) -> Result<u64> {
        let bs = u64::from(self.bs);
        let mut st = self.lock();
        let i = st.inode(ino)?;
        check_file(&i, libc::EINVAL)?;
        if offset >= i.size {
            return errno(libc::ENXIO);
        }
        match st.next_data_block(ino, offset / bs, i.size.div_ceil(bs))? {
            Some(fb) => Ok(offset.max(fb * bs)),
            None => errno(libc::ENXIO),
        }
    }

    /// `lseek(SEEK_HOLE)`: the first offset at or after `offset` inside a hole (unwritten
    /// blocks are holes); the end of the file is always one. `ENXIO` at or past the end.
    pub fn seek_hole(&self, ino: Ino, offset: u64) -> Result<u64> {
        let bs = u64::from(self.bs);
        let mut st = self.lock();
        let i = st.inode(ino)?;
        check_file(&i, libc::EINVAL)?;
        if offset >= i.size {
            return errno(libc::ENXIO);
        }
        let fb = st.next_hole_block(ino, offset / bs, i.size.div_ceil(bs))?;
        Ok(offset.max(fb * bs).min(i.size))
    }

    /// `copy_file_range(2)`: copies up to `len` bytes (fewer if the source ends first) and
    /// returns how many. Every byte goes through the verified read path and the bounce-buffered
    /// write path, so the copy is checked on the way in and checksummed afresh on the way out.
    /// Overlapping ranges in one file copy as `memmove` would (the kernel refuses them, but
    /// this layer does not rely on it). Zeros are not written where the destination holds no
    /// data (they read as zeros anyway), so copying a sparse file allocates no holes.
    pub fn copy_file_range(
        &self,
        ino_in: Ino,
        off_in: u64,
        ino_out: Ino,
        off_out: u64,
        len: u64,
    ) -> Result<u64> {
        let _change = self.begin_change()?;
        let size_in = {
            let mut st = self.lock();
            let src = st.inode(ino_in)?;
            check_file(&src, libc::EINVAL)?;
            check_file(&st.inode(ino_out)?, libc::EINVAL)?;
            src.size
        };
        if off_in >= size_in || len == 0 {
            return Ok(0);
        }
        let len = len.min(size_in - off_in);
        match off_out.checked_add(len) {
            Some(end) if end <= i64::MAX as u64 => {}
            _ => return errno(libc::EFBIG),
        }
        let chunks = len.div_ceil(COPY_CHUNK);
        let backwards = ino_in == ino_out && off_out > off_in && off_out < off_in + len;
        let mut copied = 0;
        for k in 0..chunks {
            let k = if backwards { chunks - 1 - k } else { k };
            let at = k * COPY_CHUNK;
            let want = COPY_CHUNK.min(len - at);
            let data = self.read(ino_in, off_in + at, want as u32)?;
            if data.len() as u64 != want && !backwards {
                // The source shrank meanwhile: copy what is still there.
                self.copy_chunk(ino_out, off_out + at, &data)?;
                copied = at + data.len() as u64;
                break;
            }
            self.copy_chunk(ino_out, off_out + at, &data)?;
            copied = copied.max(at + data.len() as u64);
        }
        // Trailing zeros that were skipped still make the file longer.
        let mut st = self.lock();
        let mut i = st.inode(ino_out)?;
        let t = Timespec::now();
        i.size = i.size.max(off_out + copied);
        i.mtime = t;
        i.ctime = t;
        st.put_inode(ino_out, &i)?;
        Ok(copied)
    }

    /// Writes `data` at `offset`, except the all-zero pieces of blocks that hold no data
    /// (holes, reserved blocks, past the end): those read as zeros already.
    fn copy_chunk(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<()> {
        let bs = u64::from(self.bs);
        let mut run: Option<usize> = None;
        let mut pos = 0;
        while pos < data.len() {
            let at = offset + pos as u64;
            let piece_end = data.len().min(((at / bs + 1) * bs - offset) as usize);
            let zeros = data[pos..piece_end].iter().all(|&b| b == 0);
            if zeros && !self.lock().holds_data(ino, at / bs)? {
                if let Some(start) = run.take() {
                    self.write(ino, offset + start as u64, &data[start..pos], false)?;
                }
            } else if run.is_none() {
                run = Some(pos);
            }
            pos = piece_end;
        }
        if let Some(start) = run {
            self.write(ino, offset + start as u64, &data[start..], false)?;
        }
        Ok(())
    }
}

/// The first key of `m` in `[from, to)`.
fn first_key<V>(m: Option<&BTreeMap<u64, V>>, from: u64, to: u64) -> Option<u64> {
    m.and_then(|m| m.range(from..to).next().map(|(k, _)| *k))
}

impl State {
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
    fn holds_data(&mut self, ino: Ino, fb: u64) -> Result<bool> {
        if self.in_memory(ino, fb) {
            return Ok(true);
        }
        Ok(self.extent_at(ino, fb)?.is_some())
    }

    fn in_memory(&self, ino: Ino, fb: u64) -> bool {
        self.dirty.get(&ino).is_some_and(|m| m.contains_key(&fb))
            || self
                .writeback
                .get(&ino)
                .is_some_and(|m| m.contains_key(&fb))
    }

    /// The first mapped extent that starts in `[from, to)`, with its first block.
    fn extent_starting_in(&mut self, ino: Ino, from: u64, to: u64) -> Result<Option<(u64, u64)>> {
        if from >= to {
            return Ok(None);
        }
        let (first, total) = (self.meta.sb.first_block, self.meta.sb.total_blocks);
        let found = self.meta.tree.range(
            &Key::new(ino, KIND_EXTENT, from),
            &Key::new(ino, KIND_EXTENT, to - 1),
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
    fn next_data_block(&mut self, ino: Ino, fb: u64, end: u64) -> Result<Option<u64>> {
        if fb >= end {
            return Ok(None);
        }
        if self.extent_at(ino, fb)?.is_some() {
            return Ok(Some(fb));
        }
        let in_memory = [
            first_key(self.dirty.get(&ino), fb, end),
            first_key(self.writeback.get(&ino), fb, end),
        ]
        .into_iter()
        .flatten()
        .min();
        let upto = in_memory.unwrap_or(end);
        let mapped = self.extent_starting_in(ino, fb + 1, upto)?.map(|(s, _)| s);
        Ok(mapped.or(in_memory))
    }

    /// The first block in `[fb, end)` that holds no data, or `end`.
    fn next_hole_block(&mut self, ino: Ino, fb: u64, end: u64) -> Result<u64> {
        let mut cur = fb;
        while cur < end {
            if self.in_memory(ino, cur) {
                cur += 1;
            } else if let Some((start, e)) = self.extent_at(ino, cur)? {
                cur = start + e.len();
            } else {
                return Ok(cur);
            }
        }
        Ok(end)
    }

    /// The runs `[start, end)` of blocks in `[from, to)` that hold nothing: no data, no
    /// reservation.
    fn hole_runs(&mut self, ino: Ino, from: u64, to: u64) -> Result<Vec<(u64, u64)>> {
        let mut taken: Vec<(u64, u64)> = self.unwritten_runs(ino, from, to)?;
        for m in [
            self.dirty
                .get(&ino)
                .map(|m| m.range(from..to).map(|(k, _)| *k).collect()),
            self.writeback
                .get(&ino)
                .map(|m| m.range(from..to).map(|(k, _)| *k).collect()),
        ] {
            let keys: Vec<u64> = m.unwrap_or_default();
            taken.extend(keys.into_iter().map(|k| (k, k + 1)));
        }
        let mut cur = from;
        while cur < to {
            if let Some((start, e)) = self.extent_at(ino, cur)? {
                let stop = (start + e.len()).min(to);
                taken.push((cur, stop));
                cur = stop;
            } else {
                match self.extent_starting_in(ino, cur + 1, to)? {
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
    fn drop_cached_range(&mut self, ino: Ino, from: u64, to: u64) -> Vec<BlockBuf> {
        let mut bufs = Vec::new();
        if let Some(m) = self.dirty.get_mut(&ino) {
            let keys: Vec<u64> = m.range(from..to).map(|(k, _)| *k).collect();
            let gone: Vec<DirtyBlock> = keys.iter().filter_map(|k| m.remove(k)).collect();
            if m.is_empty() {
                self.dirty.remove(&ino);
            }
            self.dirty_gone(ino, &gone);
            bufs.extend(gone.into_iter().map(|d| d.buf));
        }
        if let Some(m) = self.writeback.get_mut(&ino) {
            // The commit writing them finds them gone (see `finish_writeback`); their device
            // blocks were unmapped by the caller and are freed only once that commit is done.
            let keys: Vec<u64> = m.range(from..to).map(|(k, _)| *k).collect();
            for k in keys {
                m.remove(&k);
            }
            if m.is_empty() {
                self.writeback.remove(&ino);
            }
        }
        bufs
    }

    // ---- unwritten runs ----

    /// The unwritten items `(start, len)` that overlap `[from, to)`, whole.
    fn unwritten_items(&mut self, ino: Ino, from: u64, to: u64) -> Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        if from >= to || self.reserved_blocks == 0 {
            return Ok(out);
        }
        let decode = |k: &Key, v: &[u8]| -> Result<(u64, u64)> {
            let n = decode_block_count(v)?;
            match k.offset.checked_add(n) {
                Some(_) => Ok((k.offset, n)),
                None => Err(Error::Corrupt(format!(
                    "inode {ino}: unwritten run {}+{n} overflows",
                    k.offset
                ))),
            }
        };
        let below = self
            .meta
            .tree
            .floor(&unwritten_key(ino, from), &unwritten_key(ino, 0))?;
        if let Some((k, v)) = below {
            let (s, n) = decode(&k, &v)?;
            if s + n > from {
                out.push((s, n));
            }
        }
        let mut cursor = from + 1;
        while cursor < to {
            let items = self.meta.tree.range(
                &unwritten_key(ino, cursor),
                &unwritten_key(ino, to - 1),
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
    pub(super) fn unwritten_runs(
        &mut self,
        ino: Ino,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, u64)>> {
        Ok(self
            .unwritten_items(ino, from, to)?
            .into_iter()
            .map(|(s, n)| (s.max(from), (s + n).min(to)))
            .collect())
    }

    /// How many blocks of `[from, to)` are reserved and unwritten.
    pub fn unwritten_count(&mut self, ino: Ino, from: u64, to: u64) -> Result<u64> {
        Ok(self
            .unwritten_runs(ino, from, to)?
            .iter()
            .map(|(s, e)| e - s)
            .sum())
    }

    /// Releases the reservations of `[from, to)` (they were written, truncated or punched)
    /// and takes them off the inode's allocated blocks.
    pub fn take_unwritten(
        &mut self,
        ino: Ino,
        inode: &mut InodeItem,
        from: u64,
        to: u64,
    ) -> Result<()> {
        let mut removed = 0;
        for (s, n) in self.unwritten_items(ino, from, to)? {
            let e = s + n;
            self.meta.tree.remove(&unwritten_key(ino, s))?;
            if s < from {
                self.meta
                    .tree
                    .insert(unwritten_key(ino, s), encode_block_count(from - s))?;
            }
            if e > to {
                self.meta
                    .tree
                    .insert(unwritten_key(ino, to), encode_block_count(e - to))?;
            }
            removed += e.min(to) - s.max(from);
        }
        if removed > 0 {
            self.adjust_unwritten_total(ino, 0, removed)?;
            inode.blocks = inode.blocks.saturating_sub(removed);
        }
        Ok(())
    }

    /// Records `runs` (disjoint from every reservation of `ino`) as unwritten, merging with
    /// the runs they touch.
    fn add_unwritten(&mut self, ino: Ino, runs: &[(u64, u64)]) -> Result<()> {
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
                    .floor(&unwritten_key(ino, s - 1), &unwritten_key(ino, 0))?;
                if let Some((k, v)) = left {
                    if k.offset + decode_block_count(&v)? == s {
                        self.meta.tree.remove(&k)?;
                        s = k.offset;
                    }
                }
            }
            if let Some(v) = self.meta.tree.remove(&unwritten_key(ino, e))? {
                e += decode_block_count(&v)?;
            }
            self.meta
                .tree
                .insert(unwritten_key(ino, s), encode_block_count(e - s))?;
        }
        self.adjust_unwritten_total(ino, added, 0)
    }

    /// Updates the inode's reservation total on the medium and the filesystem's in memory.
    fn adjust_unwritten_total(&mut self, ino: Ino, added: u64, removed: u64) -> Result<()> {
        if added == removed {
            return Ok(());
        }
        let key = unwritten_total_key(ino);
        let cur = match self.meta.tree.get(&key)? {
            Some(v) => decode_block_count(&v)?,
            None => 0,
        };
        let Some(new) = (cur + added).checked_sub(removed) else {
            return Err(Error::Corrupt(format!(
                "inode {ino}: {removed} unwritten blocks released but only {cur} reserved"
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

    /// The inode is being deleted: its reservations go with it (the caller removes its runs).
    pub fn forget_unwritten(&mut self, ino: Ino) -> Result<()> {
        if let Some(v) = self.meta.tree.remove(&unwritten_total_key(ino))? {
            let n = decode_block_count(&v)?;
            self.reserved_blocks = self.reserved_blocks.saturating_sub(n);
        }
        Ok(())
    }
}
