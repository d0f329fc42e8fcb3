//! Verified reads: device blocks read in runs of consecutive addresses, every block checked
//! against its crc before a byte of it is used, a bad first copy served from the second
//! (`copies=2`) and rewritten in place (the one exception to copy-on-write).

use super::extents::Src;
use super::{ObjId, Owner, Store, MAX_RUN_BYTES};
use crate::device::AlignedBuf;
use crate::error::{errno, Error, Result};
use crate::format::{block_crc, Copies};
use std::sync::atomic::Ordering;

/// The device blocks of a read plan, read in runs of consecutive addresses and verified.
pub struct DiskRuns {
    runs: Vec<AlignedBuf>,
    /// For each plan entry on the device: its run and byte offset in it.
    at: Vec<Option<(usize, usize)>>,
}

impl DiskRuns {
    pub fn block(&self, k: usize, bs: usize) -> Option<&[u8]> {
        self.at[k].map(|(r, off)| &self.runs[r][off..off + bs])
    }
}

impl<E: Owner> Store<E> {
    /// Reads the `Src::Disk` blocks of `plan` (consecutive addresses in one I/O) and verifies
    /// each against its crc. A block whose first copy fails (crc or device error) is served
    /// from another copy (`copies=2`) and its first copy rewritten (`other_copies`).
    /// Called without the state lock, with `io_gate` held (shared) since `plan` was made under
    /// the state lock: the repair write relies on that (see `repair_data_copy`).
    pub fn read_verified(&self, obj: ObjId, first_fb: u64, plan: &[Src]) -> Result<DiskRuns> {
        let bs = self.bs as usize;
        let mut out = DiskRuns {
            runs: Vec::new(),
            at: vec![None; plan.len()],
        };
        let mut i = 0;
        while i < plan.len() {
            let Src::Disk { copies, .. } = plan[i] else {
                i += 1;
                continue;
            };
            let addr = copies.first();
            let mut j = i + 1;
            while j < plan.len()
                && matches!(plan[j], Src::Disk { copies: c, .. } if c.first() == addr + (j - i) as u64)
            {
                j += 1;
            }
            let len = (j - i) * bs;
            let mut buf = if len <= MAX_RUN_BYTES {
                self.run_pool.take()
            } else {
                AlignedBuf::zeroed(len)
            };
            buf.set_len(len);
            let run_read = self.dev.read_at(addr * bs as u64, &mut buf);
            if let Err(e) = &run_read {
                self.counters
                    .device_read_errors
                    .fetch_add(1, Ordering::Relaxed);
                let has_copies = plan[i..j]
                    .iter()
                    .all(|p| matches!(p, Src::Disk { copies, .. } if copies.len() > 1));
                if !has_copies {
                    log::error!("device read error at block {addr} (inode {obj}): {e}");
                    self.run_pool.put(buf);
                    return errno(libc::EIO);
                }
                log::warn!(
                    "device read error at blocks {addr}..{} (inode {obj}): {e}; trying each block and its second copy",
                    addr + (j - i) as u64
                );
            } else {
                self.counters
                    .bytes_read
                    .fetch_add(len as u64, Ordering::Relaxed);
            }
            for k in i..j {
                let Src::Disk { copies, crc } = plan[k] else {
                    unreachable!("run of disk blocks")
                };
                let a = copies.first();
                let offset = (first_fb + k as u64) * bs as u64;
                let bytes = &mut buf[(k - i) * bs..(k - i + 1) * bs];
                let bad = match &run_read {
                    Ok(()) => Some(block_crc(bytes))
                        .filter(|&got| got != crc)
                        .map(|got| format!("crc {got:#010x}, expected {crc:#010x}")),
                    // The run failed as a whole: this block alone may still read.
                    Err(_) => self.read_one(a, crc, bytes).err(),
                };
                if let Some(why) = bad {
                    let served = match copies.len() {
                        2.. => self.other_copies(obj, offset, copies, crc, &why, bytes),
                        _ => {
                            self.counters
                                .checksum_errors
                                .fetch_add(1, Ordering::Relaxed);
                            log::error!(
                                "checksum error: inode {obj} file offset {offset} device block {a}: {why}; returning EIO"
                            );
                            Err(Error::Errno(libc::EIO))
                        }
                    };
                    if let Err(e) = served {
                        self.run_pool.put(buf);
                        return Err(e);
                    }
                }
                out.at[k] = Some((out.runs.len(), (k - i) * bs));
            }
            out.runs.push(buf);
            i = j;
        }
        Ok(out)
    }

    /// Reads device block `addr` alone into `out` and verifies it against `crc`; the error
    /// says why it is bad.
    pub(super) fn read_one(
        &self,
        addr: u64,
        crc: u32,
        out: &mut [u8],
    ) -> std::result::Result<(), String> {
        let mut b = self.block_pool.take();
        let r = match self.dev.read_at(addr * u64::from(self.bs), &mut b) {
            Err(e) => {
                self.counters
                    .device_read_errors
                    .fetch_add(1, Ordering::Relaxed);
                Err(format!("device read error: {e}"))
            }
            Ok(()) => {
                self.counters
                    .bytes_read
                    .fetch_add(u64::from(self.bs), Ordering::Relaxed);
                let got = block_crc(&b);
                out.copy_from_slice(&b);
                if got == crc {
                    Ok(())
                } else {
                    Err(format!("crc {got:#010x}, expected {crc:#010x}"))
                }
            }
        };
        self.block_pool.put(b);
        r
    }

    /// The first copy of a data block (object `obj`, file offset `offset`) is bad (`why`):
    /// reads the other copies in turn into `out`. The first that verifies serves the read and
    /// the first copy is rewritten from it; if none does, every copy is bad: `EIO`, logged once.
    fn other_copies(
        &self,
        obj: ObjId,
        offset: u64,
        copies: Copies,
        crc: u32,
        why: &str,
        out: &mut [u8],
    ) -> Result<()> {
        let addr = copies.first();
        self.counters
            .data_bad_copies
            .fetch_add(1, Ordering::Relaxed);
        let mut others_bad = Vec::new();
        for copy in copies.others() {
            match self.read_one(copy, crc, out) {
                Ok(()) => {
                    log::warn!(
                        "inode {obj} file offset {offset}: device block {addr} is bad ({why}); served from its second copy at {copy}"
                    );
                    self.repair_data_copy(obj, addr, out);
                    return Ok(());
                }
                Err(why2) => {
                    self.counters
                        .data_bad_copies
                        .fetch_add(1, Ordering::Relaxed);
                    others_bad.push(format!("copy at {copy}: {why2}"));
                }
            }
        }
        self.counters
            .checksum_errors
            .fetch_add(1, Ordering::Relaxed);
        log::error!(
            "checksum error: inode {obj} file offset {offset}: both copies are bad (device block {addr}: {why}; {}); returning EIO",
            others_bad.join("; ")
        );
        errno(libc::EIO)
    }

    /// Rewrites the bad copy at `addr` (the first, from a read; either, from the online scrub)
    /// with `good`, bytes just read from the other copy and verified against the crc the
    /// extent holds: an in-place rewrite of the same content, the one exception to
    /// copy-on-write (as btrfs repairs), never on a read-only mount. Says whether it was
    /// rewritten.
    ///
    /// Why this cannot land on a block that holds anything else by now: the caller holds
    /// `io_gate` shared, taken under the state lock together with the plan that mapped this
    /// file block to `addr`. Since then the extent may have been punched or rewritten and
    /// `addr` freed, but freed blocks become allocatable only in `commit_done`, which takes
    /// `io_gate` exclusively; so until this write returns, `addr` is either still mapped by
    /// that extent with that crc, or freed and not yet reusable (no one else writes it, and a
    /// commit that still references it expects exactly these bytes). The write is synchronous
    /// and finishes before the caller drops the gate.
    pub fn repair_data_copy(&self, obj: ObjId, addr: u64, good: &[u8]) -> bool {
        if self.read_only || self.is_frozen() || self.failed.load(Ordering::SeqCst) {
            log::warn!("data block {addr} (inode {obj}): not rewritten (read-only)");
            return false;
        }
        let mut b = self.block_pool.take();
        b.copy_from_slice(good);
        let done = match self.dev.write_at(addr * u64::from(self.bs), &[&b]) {
            Ok(()) => {
                self.counters.data_repairs.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_written
                    .fetch_add(u64::from(self.bs), Ordering::Relaxed);
                log::warn!("data block {addr} (inode {obj}): rewritten from its other copy");
                true
            }
            // Nothing is lost (the second copy is good): not a reason to stop committing.
            Err(e) => {
                self.counters
                    .device_write_errors
                    .fetch_add(1, Ordering::Relaxed);
                log::error!("data block {addr} (inode {obj}): could not rewrite it: {e}");
                false
            }
        };
        self.block_pool.put(b);
        done
    }

    pub fn release_runs(&self, runs: DiskRuns) {
        for b in runs.runs {
            self.run_pool.put(b);
        }
    }
}
