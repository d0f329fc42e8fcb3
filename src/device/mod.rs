//! The medium: a block device or an image file, behind a small trait.
//!
//! Everything above this module talks to `dyn BlockDevice` only, so test doubles (an in-memory
//! device here; crash and corruption simulators later) slot in underneath unchanged code.
//!
//! Invariants every implementation upholds and every caller respects:
//! - offsets and lengths are multiples of `align()` (the medium's logical block size), and
//!   buffers are `AlignedBuf`s, whose memory is aligned to `BUF_ALIGN`, so `O_DIRECT` accepts them;
//! - a write hands the device bytes that nobody else can reach: `AlignedBuf` is owned, private
//!   memory (a *bounce buffer*), never a caller's page;
//! - `flush` returns only when every write that completed before it is durable.

mod buf;
mod corrupt;
mod crash;
mod file;
mod mem;

pub use buf::{AlignedBuf, BufPool, BUF_ALIGN};
pub use corrupt::{CorruptDevice, FaultHit, WriteFault};
pub use crash::{CrashDevice, SplitMix, SECTOR};
pub use file::{is_block_device, FileDevice, Medium, MIN_IMAGE_SIZE};
pub use mem::MemDevice;

use std::io;

/// A medium that stores bytes at aligned offsets.
pub trait BlockDevice: Send + Sync {
    /// The logical block size: every offset and length must be a multiple of it.
    fn align(&self) -> u32;
    /// Usable capacity in bytes (a multiple of `align()`).
    fn capacity(&self) -> u64;
    /// Fills `buf` entirely with the bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut AlignedBuf) -> io::Result<()>;
    /// Writes all of `bufs`, back to back, starting at `offset` (one vectored write where the
    /// medium allows it, so contiguous data becomes one large I/O).
    fn write_at(&self, offset: u64, bufs: &[&AlignedBuf]) -> io::Result<()>;
    /// `write_at` for windows of private buffers (each one aligned in memory and a whole
    /// number of blocks long), so consecutive blocks of one buffer go down as one segment.
    /// The default gathers them into one buffer; a medium that can write the windows in
    /// place (`FileDevice`) does so.
    fn write_slices(&self, offset: u64, slices: &[&[u8]]) -> io::Result<()> {
        let len = slices.iter().map(|s| s.len()).sum();
        let mut one = AlignedBuf::zeroed(len);
        let mut at = 0;
        for s in slices {
            one[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        }
        self.write_at(offset, &[&one])
    }
    /// Makes every completed write durable (`fdatasync`).
    fn flush(&self) -> io::Result<()>;
    /// Tells the medium a range is unused (best effort; may do nothing).
    fn discard(&self, offset: u64, len: u64) -> io::Result<()>;
}

/// Checks the alignment contract; implementations call it before every I/O so a layering bug
/// shows up as `EINVAL` with a message rather than as a kernel `EINVAL` from `O_DIRECT`.
pub(crate) fn check_aligned(align: u32, offset: u64, len: u64, capacity: u64) -> io::Result<()> {
    let a = u64::from(align);
    if offset % a != 0 || len % a != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unaligned I/O: offset {offset} length {len} (alignment {a})"),
        ));
    }
    match offset.checked_add(len) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "I/O past the end of the device: offset {offset} length {len} capacity {capacity}"
            ),
        )),
    }
}

/// Checks that every buffer of a vectored write is a whole number of blocks (`O_DIRECT` wants
/// each segment aligned, not only the total) and returns their total length, for
/// `check_aligned`.
pub(crate) fn check_bufs<B: AsRef<[u8]>>(align: u32, bufs: &[B]) -> io::Result<u64> {
    let a = u64::from(align);
    let mut total = 0u64;
    for (i, buf) in bufs.iter().enumerate() {
        let buf = buf.as_ref();
        let len = buf.len() as u64;
        if len % a != 0 || buf.as_ptr() as u64 % a != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "unaligned I/O: buffer {i} of {} at {:p} has length {len} (alignment {a})",
                    bufs.len(),
                    buf.as_ptr()
                ),
            ));
        }
        // Saturating: an absurd total is then refused by `check_aligned` as past the end.
        total = total.saturating_add(len);
    }
    Ok(total)
}
