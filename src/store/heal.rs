//! Verify and heal: how a block is judged against what points to it, and how a bad copy is
//! rewritten from a good one (in place: the one exception to copy-on-write, as btrfs repairs).
//! Reads (`read`), the online scrub (through the filesystem), the offline scrub and
//! `fsck --repair` all judge and rewrite copies with these functions.

use super::{ObjId, Owner, Store};
use crate::device::{AlignedBuf, BlockDevice};
use crate::format::{block_crc, decode_node, BlockNo, BlockPtr, Key, NodeIdentity};
use std::sync::atomic::Ordering;

/// Why a data block's bytes do not match `crc`, or `None`.
pub fn data_block_error(bytes: &[u8], crc: u32) -> Option<String> {
    let got = block_crc(bytes);
    (got != crc).then(|| format!("checksum mismatch: crc {got:#010x}, expected {crc:#010x}"))
}

/// Why one copy of a node does not verify against its parent's pointer, or `None`.
pub fn node_copy_error(
    id: &NodeIdentity,
    bytes: &[u8],
    ptr: &BlockPtr,
    level: u8,
) -> Option<String> {
    decode_node(id, bytes, ptr, level)
        .err()
        .map(|e| e.to_string())
}

/// Rewrites the copy at device block `bad` with `good`, bytes of another copy that were just
/// read and verified. The caller makes sure `bad` is still that copy of that block.
pub fn rewrite_copy(
    dev: &dyn BlockDevice,
    block_size: u32,
    bad: u64,
    good: &AlignedBuf,
) -> std::io::Result<()> {
    dev.write_at(bad * u64::from(block_size), &[good])
}

/// Reads the copy at `good` into `buf`; if it verifies against `crc`, rewrites the copy at
/// `bad` from it. `Ok(false)` when the good copy does not read or verify (nothing written).
/// For tools on an unmounted device, where nothing else writes meanwhile.
pub fn heal_data_copy(
    dev: &dyn BlockDevice,
    block_size: u32,
    bad: u64,
    good: u64,
    crc: u32,
    buf: &mut AlignedBuf,
) -> std::io::Result<bool> {
    if dev.read_at(good * u64::from(block_size), buf).is_err()
        || data_block_error(buf, crc).is_some()
    {
        return Ok(false);
    }
    rewrite_copy(dev, block_size, bad, buf).map(|()| true)
}

/// A data block copy the online scrub found bad: why, which copy (on a `copies=2`
/// filesystem), and whether it was rewritten from the other copy.
pub struct BadData {
    pub why: String,
    pub copy: Option<u8>,
    pub repaired: bool,
}

impl<E: Owner> Store<E> {
    /// Reads device blocks from `block` into `buf`, counted like any other read. No lock held.
    pub fn read_counted(&self, block: u64, buf: &mut AlignedBuf) -> std::io::Result<()> {
        let r = self.dev.read_at(block * u64::from(self.bs), buf);
        match &r {
            Ok(()) => {
                self.counters
                    .bytes_read
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters
                    .device_read_errors
                    .fetch_add(1, Ordering::Relaxed);
                log::error!("scrub: device read error at block {block}: {e}");
            }
        }
        r
    }

    /// Reads one block under the read gate (the caller holds it) and says what is wrong with
    /// it according to `check`, or `None`.
    fn reread(
        &self,
        block: u64,
        check: impl FnOnce(&AlignedBuf) -> Option<String>,
    ) -> (Option<String>, AlignedBuf) {
        let mut buf = AlignedBuf::zeroed(self.bs as usize);
        match self.read_counted(block, &mut buf) {
            Ok(()) => (check(&buf), buf),
            Err(e) => (Some(format!("device read error: {e}")), buf),
        }
    }

    /// Copy `copy` (1 or 2) of data block `block`, file block `fb` of `obj`, failed against
    /// `crc`. Confirmed only if the current tree still maps `fb` there (as that copy) with that
    /// crc, it is not being written back, and a second read under the read gate fails again;
    /// otherwise the block changed owner and `None` is returned. On a `copies=2` filesystem the
    /// other copy is then read, and if it verifies the bad one is rewritten from it (not on a
    /// read-only mount), under the same gate, so the write can only land on a block that is
    /// still this copy of this block (see `repair_data_copy`). Counted as the read path counts:
    /// a bad copy with a good twin in `data_bad_copies`, a block with no good copy in
    /// `checksum_errors` (or as a device read error).
    pub fn recheck_data_copy(
        &self,
        obj: ObjId,
        fb: u64,
        block: u64,
        crc: u32,
        copy: u8,
    ) -> Option<BadData> {
        let (st, other) = {
            let mut st = self.lock();
            let other = match st.extent_at(obj, fb) {
                Ok(Some((start, e))) if e.crcs[(fb - start) as usize] == crc => {
                    // Still this copy of this block: the copy to heal from is the other one
                    // (`None`: the block has no other copy).
                    let copies = e.copies(fb - start);
                    match copies.position(block) {
                        Some(k) if k + 1 == usize::from(copy) => {
                            copies.iter().find(|&a| a != block).map(Some).or(Some(None))
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            let writing = st.is_writing_back(obj, fb);
            match other {
                Some(other) if !writing => (st, other),
                _ => return None,
            }
        };
        let _gate = self.io_gate.read();
        drop(st);
        let (why, _) = self.reread(block, |b| data_block_error(b, crc));
        let why = why?;
        let offset = fb * u64::from(self.bs);
        let Some(other) = other else {
            if why.starts_with("checksum") {
                self.counters
                    .checksum_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            log::error!("scrub: inode {obj} file offset {offset} device block {block}: {why}");
            return Some(BadData {
                why,
                copy: None,
                repaired: false,
            });
        };
        let (other_bad, good) = self.reread(other, |b| data_block_error(b, crc));
        let repaired = if other_bad.is_none() {
            self.counters
                .data_bad_copies
                .fetch_add(1, Ordering::Relaxed);
            log::error!(
                "scrub: inode {obj} file offset {offset} copy {copy} (device block {block}): \
                 {why}; the other copy is good"
            );
            self.repair_data_copy(obj, block, &good)
        } else {
            // Both bad: one checksum error for the block (counted once, by its first copy).
            if copy == 1 {
                self.counters
                    .checksum_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            log::error!(
                "scrub: inode {obj} file offset {offset} copy {copy} (device block {block}): \
                 {why}; the other copy is bad too"
            );
            false
        };
        Some(BadData {
            why,
            copy: Some(copy),
            repaired,
        })
    }

    /// Copy `copy` of the node `ptr` names failed. Confirmed only if the node (found again by
    /// `key`, a key below it) is still in the current tree with that pointer and a second
    /// read under the read gate fails again; then the copy is rewritten from the other one if
    /// that one verifies (not on a read-only mount). Returns why, and whether it was repaired.
    pub fn recheck_node_copy(
        &self,
        key: &Key,
        level: u8,
        ptr: &BlockPtr,
        copy: u8,
    ) -> Option<(String, bool)> {
        let (bad, good) = match (copy, ptr.copy_addr) {
            (1, other) => (ptr.addr, other),
            (_, Some(c)) => (c, Some(ptr.addr)),
            (_, None) => return None,
        };
        let (st, id, healer, stats) = {
            let mut st = self.lock();
            if st.meta.tree.node_ptr_at(key, level).ok().flatten() != Some(*ptr) {
                return None;
            }
            let id = *st.meta.tree.identity();
            let healer = st.meta.tree.io().healer();
            let stats = st.meta.tree.stats();
            (st, id, healer, stats)
        };
        let _gate = self.io_gate.read();
        drop(st);
        let (why, _) = self.reread(bad.0, |b| node_copy_error(&id, b, ptr, level));
        let why = why?;
        stats.bad_copies.fetch_add(1, Ordering::Relaxed);
        log::error!(
            "scrub: copy {copy} of tree node {} (block {bad}): {why}",
            ptr.addr
        );
        let repaired = match good {
            Some(good) => {
                let (other, buf) = self.reread(good.0, |b| node_copy_error(&id, b, ptr, level));
                other.is_none() && healer.heal_copy(BlockNo(bad.0), &buf)
            }
            None => false,
        };
        Some((why, repaired))
    }
}
