//! The write path: the bytes of a write are copied into private bounce buffers and
//! checksummed in the same pass before the lock is taken (stable pages: after that the
//! caller's buffer is never looked at again); partial blocks are patched over their current
//! bytes, read and verified first; space is reserved before anything changes.

use super::blockbuf::{self, BlockBuf};
use super::extents::Src;
use super::state::{DirtyBlock, State};
use super::{over_soft, ObjId, Owner, Store};
use crate::device::AlignedBuf;
use crate::error::{errno, Result};
use crate::format::Copies;
use parking_lot::RwLockReadGuard;

/// How much of the reserve an operation may use. Data writes stop at the full reserve; adding
/// names and xattrs may use half of it; operations that free space (truncate, and unlink,
/// rmdir, rename, which check nothing) may use all of it, so a full filesystem can always be
/// cleaned up, and the commits that free space always find blocks for the tree.
#[derive(Clone, Copy)]
pub enum Reserve {
    Data,
    Names,
    Freeing,
}

impl<E: Owner> Store<E> {
    /// Writes `data` (not empty, its end within the file size limit) at byte `offset` of
    /// `obj`; returns the byte count. Under the lock, `begin` may refuse the write before
    /// anything changes (its value goes to `finish`); then space is reserved at `level`, the
    /// reservations of the range taken (their count goes to `finish`), the blocks made dirty,
    /// and `finish` updates the layer above's items in the same critical section.
    pub fn write<T>(
        &self,
        obj: ObjId,
        offset: u64,
        data: &[u8],
        level: Reserve,
        begin: impl FnOnce(&mut State<E>) -> Result<T>,
        finish: impl FnOnce(&mut State<E>, T, u64) -> Result<()>,
    ) -> Result<u32> {
        let end = offset + data.len() as u64;
        self.throttle()?;
        let bs = u64::from(self.bs);
        let (b0, b1) = (offset / bs, (end - 1) / bs);
        self.make_room(b1 - b0 + 1, level)?;
        let full = self.copy_whole_blocks(offset, data);
        let partial = partial_blocks(b0, b1, &full);
        loop {
            // Partial blocks not in memory need their current bytes: read (and verify) them
            // without the lock, then check nothing moved meanwhile.
            let (needs, gate) = self.partial_blocks_on_disk(obj, &partial)?;
            let mut bases = self.read_current_bytes(obj, &needs)?;
            drop(gate);
            // The bytes not adopted are dropped after the lock is released.
            let mut st = self.lock();
            if !self.adopt_unmoved(&mut st, obj, &needs, &mut bases)? {
                continue;
            }
            let before = begin(&mut st)?;
            let taken =
                self.apply_write(&mut st, obj, (offset, data, end), full, &partial, level)?;
            finish(&mut st, before, taken)?;
            if over_soft(&st, self.bs) {
                self.kick_committer();
            }
            return Ok(data.len() as u32);
        }
    }

    /// Copies the write's whole blocks into private bounce buffers and checksums them in the
    /// same pass, before the lock is taken: after this the caller's buffer is never looked at
    /// again. Returns them by file block, their `adds_block` still to be decided.
    fn copy_whole_blocks(&self, offset: u64, data: &[u8]) -> Vec<(u64, DirtyBlock)> {
        let bs = u64::from(self.bs);
        let end = offset + data.len() as u64;
        let first_full = offset.div_ceil(bs);
        let end_full = end / bs;
        let n_full = end_full.saturating_sub(first_full);
        let whole = if n_full == 0 {
            &[][..]
        } else {
            let lo = (first_full * bs - offset) as usize;
            &data[lo..lo + (n_full * bs) as usize]
        };
        blockbuf::copy_in(whole, bs as usize, &self.chunk_pool)
            .into_iter()
            .enumerate()
            .map(|(k, (buf, crc))| {
                (
                    first_full + k as u64,
                    DirtyBlock {
                        buf,
                        crc: Some(crc),
                        adds_block: false, // decided under the lock, in `apply_write`
                    },
                )
            })
            .collect()
    }

    /// Under the lock: the partial blocks whose current bytes are only on the device (mapped,
    /// not dirty). The read gate is taken before the lock is released, so the addresses stay
    /// valid while the caller reads them.
    fn partial_blocks_on_disk(
        &self,
        obj: ObjId,
        partial: &[u64],
    ) -> Result<(Vec<OnDisk>, RwLockReadGuard<'_, ()>)> {
        let mut st = self.lock();
        let mut needs = Vec::new();
        for &fb in partial {
            if let Src::Disk { copies, crc } = st.plan_block(obj, fb)? {
                if !st.dirty.get(&obj).is_some_and(|m| m.contains_key(&fb)) {
                    needs.push(OnDisk { fb, copies, crc });
                }
            }
        }
        Ok((needs, self.io_gate.read()))
    }

    /// Without the lock (the caller holds the read gate): reads and verifies the current bytes
    /// of each block of `needs` into a buffer of its own, in the same order.
    fn read_current_bytes(&self, obj: ObjId, needs: &[OnDisk]) -> Result<Vec<Option<AlignedBuf>>> {
        let bs = u64::from(self.bs);
        let plan: Vec<Src> = needs
            .iter()
            .map(|n| Src::Disk {
                copies: n.copies,
                crc: n.crc,
            })
            .collect();
        let mut bases = Vec::new();
        for (k, p) in plan.iter().enumerate() {
            let got = self.read_verified(obj, needs[k].fb, std::slice::from_ref(p))?;
            let mut b = self.block_pool.take();
            b.copy_from_slice(got.block(0, bs as usize).expect("one disk block read"));
            self.release_runs(got);
            bases.push(Some(b));
        }
        Ok(bases)
    }

    /// Under the lock again: makes each block read into `bases` dirty with those bytes if it
    /// is still mapped where it was read from and nobody dirtied it meanwhile. Returns false
    /// at the first block that moved (neither mapped there nor dirty): the caller reads again
    /// (the blocks adopted before it stay dirty, with their right bytes).
    fn adopt_unmoved(
        &self,
        st: &mut State<E>,
        obj: ObjId,
        needs: &[OnDisk],
        bases: &mut [Option<AlignedBuf>],
    ) -> Result<bool> {
        for (k, n) in needs.iter().enumerate() {
            let still = matches!(st.plan_block(obj, n.fb)?, Src::Disk { copies: a, crc: c } if a == n.copies && c == n.crc);
            let in_dirty = st.dirty.get(&obj).is_some_and(|m| m.contains_key(&n.fb));
            if !still && !in_dirty {
                return Ok(false);
            }
            if still && !in_dirty {
                let buf = bases[k].take().expect("read_verified returned the block");
                // Mapped (it was just read from its extent): placing it replaces a block.
                st.insert_dirty(
                    obj,
                    n.fb,
                    DirtyBlock {
                        buf: BlockBuf::Own(buf),
                        crc: Some(n.crc),
                        adds_block: false,
                    },
                );
            }
        }
        Ok(true)
    }

    /// Applies a write under the lock: whole blocks replace, partial blocks are patched (their
    /// current bytes are in memory by now, or they are holes). Returns how many reserved
    /// blocks the write took.
    fn apply_write(
        &self,
        st: &mut State<E>,
        obj: ObjId,
        (offset, data, end): (u64, &[u8], u64),
        full: Vec<(u64, DirtyBlock)>,
        partial: &[u64],
        level: Reserve,
    ) -> Result<u64> {
        let taken = self.reserve_range(st, obj, (offset, end), level)?;
        for &fb in partial {
            self.patch_partial_block(st, obj, fb, (offset, data, end))?;
        }
        place_whole_blocks(st, obj, full)?;
        Ok(taken)
    }

    /// Reserves space for the blocks of `offset..end` that become dirty now: not those dirty
    /// already (counted in `dirty_blocks`), nor those fallocate reserved (writing them takes
    /// the reservation). Then takes those reservations; returns how many.
    fn reserve_range(
        &self,
        st: &mut State<E>,
        obj: ObjId,
        (offset, end): (u64, u64),
        level: Reserve,
    ) -> Result<u64> {
        let bs = u64::from(self.bs);
        let (fb0, fb1) = (offset / bs, end.div_ceil(bs));
        let dirty = st.dirty.get(&obj).map_or(0, |m| m.range(fb0..fb1).count()) as u64;
        let prepaid = st.unwritten_count(obj, fb0, fb1)?;
        self.reserve(st, fb1 - fb0 - dirty - prepaid, level)?;
        st.take_unwritten(obj, fb0, fb1)
    }

    /// Copies the written bytes into partial block `fb`, first making it dirty over its
    /// current bytes if it is not; its crc is computed again at writeback.
    fn patch_partial_block(
        &self,
        st: &mut State<E>,
        obj: ObjId,
        fb: u64,
        (offset, data, end): (u64, &[u8], u64),
    ) -> Result<()> {
        let bs = u64::from(self.bs);
        let in_dirty = st.dirty.get(&obj).is_some_and(|m| m.contains_key(&fb));
        if !in_dirty {
            self.dirty_over_current(st, obj, fb)?;
        }
        let d = st
            .dirty
            .get_mut(&obj)
            .and_then(|m| m.get_mut(&fb))
            .expect("inserted above");
        let (lo, hi) = (offset.max(fb * bs), end.min((fb + 1) * bs));
        d.buf.make_mut(&self.block_pool)[(lo - fb * bs) as usize..(hi - fb * bs) as usize]
            .copy_from_slice(&data[(lo - offset) as usize..(hi - offset) as usize]);
        d.crc = None;
        Ok(())
    }

    /// Makes block `fb`, not dirty, dirty over its current bytes. Not dirty: being written
    /// back (mapped already), or a hole (only a hole adds a block).
    fn dirty_over_current(&self, st: &mut State<E>, obj: ObjId, fb: u64) -> Result<()> {
        let (base, adds_block) = match st.plan_block(obj, fb)? {
            Src::Mem(m) => {
                let mut b = self.block_pool.take();
                b.copy_from_slice(&m);
                (b, false)
            }
            Src::Disk { .. } => (self.block_pool.get(), false),
            Src::Hole => (self.block_pool.get(), true),
        };
        st.insert_dirty(
            obj,
            fb,
            DirtyBlock {
                buf: BlockBuf::Own(base),
                crc: None,
                adds_block,
            },
        );
        Ok(())
    }
    /// Before a change that needs up to `n` more dirty blocks at `level`: if the free blocks
    /// fall short only because blocks freed since the last commit wait for the next one to be
    /// durable (copy-on-write: a file rewritten again and again between commits holds all its
    /// old copies until then), commits now, so that the change finds them free instead of
    /// failing with ENOSPC on a filesystem that has the room. Call without the lock.
    pub fn make_room(&self, n: u64, level: Reserve) -> Result<()> {
        let short_until_commit = {
            let st = self.lock();
            self.reserve(&st, n, level).is_err() && st.meta.alloc.pending_blocks() > 0
        };
        if short_until_commit {
            log::debug!(
                "{n} blocks wanted: committing to reuse the blocks freed since the last commit"
            );
            self.commit()?;
        }
        Ok(())
    }

    /// Fails with ENOSPC unless `n` more dirty blocks can be placed at the next commit while
    /// keeping the blocks `fallocate` promised and what `level` must leave free (see
    /// `Reserve`). Dirty, promised and new file blocks each take `data_copies` device blocks.
    pub fn reserve(&self, st: &State<E>, n: u64, level: Reserve) -> Result<()> {
        let a = &st.meta.alloc;
        let meta_reserve = st.metadata_reserve();
        let keep = match level {
            Reserve::Data => meta_reserve,
            Reserve::Names => meta_reserve / 2,
            Reserve::Freeing => 0,
        };
        let data = (st.dirty_blocks + st.reserved_blocks + n).saturating_mul(st.data_copies());
        if a.free_blocks() < data.saturating_add(keep) {
            return errno(libc::ENOSPC);
        }
        Ok(())
    }
}

/// A partial block whose current bytes are only on the device: every copy of it is at
/// `copies`, and its bytes must hash to `crc`.
struct OnDisk {
    fb: u64,
    copies: Copies,
    crc: u32,
}

/// The first and last blocks of a write (`b0`, `b1`) unless written whole: they are patched
/// over their current bytes. Once each, in order.
fn partial_blocks(b0: u64, b1: u64, full: &[(u64, DirtyBlock)]) -> Vec<u64> {
    let mut partial: Vec<u64> = [b0, b1]
        .into_iter()
        .filter(|fb| !full.iter().any(|f| f.0 == *fb))
        .collect();
    partial.dedup();
    partial
}

/// Makes the whole blocks dirty. One adds to the object's blocks unless an extent maps it (a
/// dirty block there already keeps its own answer: see `insert_dirty`).
fn place_whole_blocks<E>(
    st: &mut State<E>,
    obj: ObjId,
    full: Vec<(u64, DirtyBlock)>,
) -> Result<()> {
    let mapped = match (full.first(), full.last()) {
        (Some(&(a, _)), Some(&(b, _))) => st.mapped_runs(obj, a, b + 1)?,
        _ => Vec::new(),
    };
    for (fb, mut d) in full {
        d.adds_block = !mapped.iter().any(|&(s, e)| (s..e).contains(&fb));
        st.insert_dirty(obj, fb, d);
    }
    Ok(())
}
