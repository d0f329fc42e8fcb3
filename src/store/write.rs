//! The write path: the bytes of a write are copied into private bounce buffers and
//! checksummed in the same pass before the lock is taken (stable pages: after that the
//! caller's buffer is never looked at again); partial blocks are patched over their current
//! bytes, read and verified first; space is reserved before anything changes.

use super::blockbuf::{self, BlockBuf};
use super::extents::Src;
use super::state::{DirtyBlock, State};
use super::{over_soft, ObjId, Owner, Store};
use crate::error::{errno, Result};

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
        // Whole blocks: copy into private bounce buffers and checksum them in the same pass,
        // before taking the lock. After this the caller's buffer is never looked at again.
        let first_full = offset.div_ceil(bs);
        let end_full = end / bs;
        let n_full = end_full.saturating_sub(first_full);
        let whole = if n_full == 0 {
            &[][..]
        } else {
            let lo = (first_full * bs - offset) as usize;
            &data[lo..lo + (n_full * bs) as usize]
        };
        let full: Vec<(u64, DirtyBlock)> = blockbuf::copy_in(whole, bs as usize, &self.chunk_pool)
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
            .collect();
        let partial: Vec<u64> = [b0, b1]
            .into_iter()
            .filter(|fb| !full.iter().any(|f| f.0 == *fb))
            .collect();
        let mut partial = partial;
        partial.dedup();
        loop {
            // Partial blocks not in memory need their current bytes: read (and verify) them
            // without the lock, then check nothing moved meanwhile.
            let (needs, _gate) = {
                let mut st = self.lock();
                let mut needs = Vec::new();
                for &fb in &partial {
                    if let Src::Disk { copies, crc } = st.plan_block(obj, fb)? {
                        if !st.dirty.get(&obj).is_some_and(|m| m.contains_key(&fb)) {
                            needs.push((fb, copies, crc));
                        }
                    }
                }
                (needs, self.io_gate.read())
            };
            let plan: Vec<Src> = needs
                .iter()
                .map(|&(_, copies, crc)| Src::Disk { copies, crc })
                .collect();
            let mut bases = Vec::new();
            for (k, p) in plan.iter().enumerate() {
                let got = self.read_verified(obj, needs[k].0, std::slice::from_ref(p))?;
                let mut b = self.block_pool.take();
                b.copy_from_slice(got.block(0, bs as usize).expect("one disk block read"));
                self.release_runs(got);
                bases.push(Some(b));
            }
            drop(_gate);
            let mut st = self.lock();
            let mut moved = false;
            for (k, &(fb, copies, crc)) in needs.iter().enumerate() {
                let still = matches!(st.plan_block(obj, fb)?, Src::Disk { copies: a, crc: c } if a == copies && c == crc);
                let in_dirty = st.dirty.get(&obj).is_some_and(|m| m.contains_key(&fb));
                if !still && !in_dirty {
                    moved = true;
                    break;
                }
                if still && !in_dirty {
                    let buf = bases[k].take().expect("read_verified returned the block");
                    // Mapped (it was just read from its extent): placing it replaces a block.
                    st.insert_dirty(
                        obj,
                        fb,
                        DirtyBlock {
                            buf: BlockBuf::Own(buf),
                            crc: Some(crc),
                            adds_block: false,
                        },
                    );
                }
            }
            if moved {
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
        let bs = u64::from(self.bs);
        // Space for the blocks that become dirty now: not those dirty already (counted in
        // `dirty_blocks`), nor those fallocate reserved (writing them takes the reservation).
        let (fb0, fb1) = (offset / bs, end.div_ceil(bs));
        let dirty = st.dirty.get(&obj).map_or(0, |m| m.range(fb0..fb1).count()) as u64;
        let prepaid = st.unwritten_count(obj, fb0, fb1)?;
        self.reserve(st, fb1 - fb0 - dirty - prepaid, level)?;
        let taken = st.take_unwritten(obj, fb0, fb1)?;
        for &fb in partial {
            let in_dirty = st.dirty.get(&obj).is_some_and(|m| m.contains_key(&fb));
            if !in_dirty {
                // Not dirty: being written back (mapped already), or a hole.
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
        }
        // A whole block adds to the inode's blocks unless an extent maps it (a dirty block
        // there already keeps its own answer: see `insert_dirty`).
        let mapped = match (full.first(), full.last()) {
            (Some(&(a, _)), Some(&(b, _))) => st.mapped_runs(obj, a, b + 1)?,
            _ => Vec::new(),
        };
        for (fb, mut d) in full {
            d.adds_block = !mapped.iter().any(|&(s, e)| (s..e).contains(&fb));
            st.insert_dirty(obj, fb, d);
        }
        Ok(taken)
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
