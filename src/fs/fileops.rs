//! The file operations beyond read and write: `fallocate` (allocate, keep size, punch hole,
//! zero range), `SEEK_DATA` / `SEEK_HOLE`, and `copy_file_range`. What allocating means in a
//! copy-on-write filesystem (a reservation, not zeros on the device) is the store's: see
//! `crate::store::unwritten`. An inode's `blocks` counts its mapped and its reserved blocks.

use super::*;
use crate::format::InodeItem;

/// Bytes `copy_file_range` moves per read-and-write step.
const COPY_CHUNK: u64 = 1 << 20;

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
            let i = st.inode(ino)?;
            check_file(&i, libc::ENODEV)?;
            super::flags::refuse_fallocate(&i, mode)?;
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
        self.store.reserve(&st, n, Reserve::Data)?;
        st.add_unwritten(ino, &holes)?;
        i.blocks += n;
        let t = super::clock::now();
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
            let gone = st.punch(ino, from, to)? + st.take_unwritten(ino, from, to)?;
            i.blocks = i.blocks.saturating_sub(gone);
            self.store.recycle_blocks(bufs);
        }
        let t = super::clock::now();
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
            let dropped = st.dirty_count(ino, from, to);
            let need = (fb1 - fb0).saturating_sub(already + dropped);
            self.store.reserve(&st, need, Reserve::Data)?;
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
                self.write(ino, lo, &zeros[..(hi - lo) as usize], None)?;
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
            let dst = st.inode(ino_out)?;
            check_file(&dst, libc::EINVAL)?;
            super::flags::refuse_write(&dst)?;
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
        let t = super::clock::now();
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
                    self.write(ino, offset + start as u64, &data[start..pos], None)?;
                }
            } else if run.is_none() {
                run = Some(pos);
            }
            pos = piece_end;
        }
        if let Some(start) = run {
            self.write(ino, offset + start as u64, &data[start..], None)?;
        }
        Ok(())
    }
}
