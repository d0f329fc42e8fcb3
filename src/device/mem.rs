//! `MemDevice`: an in-memory medium for logic tests of the layers above `device`.
//!
//! It keeps the `BlockDevice` contract exactly as `FileDevice` does (the same alignment and
//! bounds checks, so a layering bug fails here as it would on a disk) and adds what a test
//! needs to look behind the trait: a copy of the whole medium, raw unaligned reads and writes
//! that bypass the checks (to plant corruption), and counters of writes and flushes.
//!
//! Every write is durable the moment it completes, and one `write_at` is atomic with respect
//! to readers: this is the medium without failures. Crash and corruption behaviour belongs to
//! the simulators built on top of it.

use super::{check_aligned, check_bufs, AlignedBuf, BlockDevice};
use parking_lot::RwLock;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// A medium held in memory. Discarded ranges read back as zeros, as a punched hole does.
pub struct MemDevice {
    align: u32,
    bytes: RwLock<Vec<u8>>,
    writes: AtomicU64,
    flushes: AtomicU64,
}

impl MemDevice {
    /// A zero-filled medium of `capacity` bytes with logical block size `align`.
    ///
    /// Panics unless `align` is a power of two and `capacity` a multiple of it: a test that
    /// builds an impossible medium is a bug in the test.
    pub fn new(capacity: u64, align: u32) -> Self {
        let len = usize::try_from(capacity).expect("MemDevice capacity fits in memory");
        Self::from_bytes(vec![0; len], align)
    }

    /// A medium holding `bytes` (a `snapshot` of another one, say), with logical block size
    /// `align`. Panics on an impossible geometry, as `new` does.
    pub fn from_bytes(bytes: Vec<u8>, align: u32) -> Self {
        assert!(
            align.is_power_of_two(),
            "MemDevice alignment {align} is not a power of two"
        );
        assert!(
            bytes.len() % align as usize == 0,
            "MemDevice capacity {} is not a multiple of its alignment {align}",
            bytes.len()
        );
        MemDevice {
            align,
            bytes: RwLock::new(bytes),
            writes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        }
    }

    /// A copy of the whole medium.
    pub fn snapshot(&self) -> Vec<u8> {
        self.bytes.read().clone()
    }

    /// Overwrites bytes at any offset, bypassing alignment checks and counters: corruption.
    /// Panics if the range is not inside the medium.
    pub fn poke(&self, offset: u64, data: &[u8]) {
        let mut bytes = self.bytes.write();
        let start = raw_range(bytes.len(), offset, data.len());
        bytes[start..start + data.len()].copy_from_slice(data);
    }

    /// Reads bytes at any offset, bypassing alignment checks. Panics if the range is not
    /// inside the medium.
    pub fn peek(&self, offset: u64, len: usize) -> Vec<u8> {
        let bytes = self.bytes.read();
        let start = raw_range(bytes.len(), offset, len);
        bytes[start..start + len].to_vec()
    }

    /// How many `flush` calls succeeded.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// How many `write_at` calls succeeded (one per call, however many buffers it carried).
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

/// The start of `offset..offset + len` as an index into a medium of `size` bytes; panics
/// (naming the range) if it does not fit.
fn raw_range(size: usize, offset: u64, len: usize) -> usize {
    usize::try_from(offset)
        .ok()
        .filter(|&start| start.checked_add(len).is_some_and(|end| end <= size))
        .unwrap_or_else(|| panic!("range {offset}+{len} is outside the {size}-byte MemDevice"))
}

impl BlockDevice for MemDevice {
    fn align(&self) -> u32 {
        self.align
    }

    fn capacity(&self) -> u64 {
        // Never resized after construction.
        self.bytes.read().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut AlignedBuf) -> io::Result<()> {
        let bytes = self.bytes.read();
        check_aligned(self.align, offset, buf.len() as u64, bytes.len() as u64)?;
        let (start, len) = (offset as usize, buf.len());
        buf.copy_from_slice(&bytes[start..start + len]);
        Ok(())
    }

    fn write_at(&self, offset: u64, bufs: &[&AlignedBuf]) -> io::Result<()> {
        let len = check_bufs(self.align, bufs)?;
        let mut bytes = self.bytes.write();
        check_aligned(self.align, offset, len, bytes.len() as u64)?;
        let mut pos = offset as usize;
        for buf in bufs {
            bytes[pos..pos + buf.len()].copy_from_slice(buf);
            pos += buf.len();
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut bytes = self.bytes.write();
        check_aligned(self.align, offset, len, bytes.len() as u64)?;
        let start = offset as usize;
        bytes[start..start + len as usize].fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;
    use std::sync::Arc;

    fn filled(len: usize, byte: u8) -> AlignedBuf {
        let mut b = AlignedBuf::zeroed(len);
        b.fill(byte);
        b
    }

    fn read(dev: &MemDevice, offset: u64, len: usize) -> AlignedBuf {
        let mut b = AlignedBuf::zeroed(len);
        dev.read_at(offset, &mut b).unwrap();
        b
    }

    #[test]
    fn geometry_is_as_built_and_starts_zeroed() {
        let dev = MemDevice::new(1 << 20, 4096);
        assert_eq!(dev.align(), 4096);
        assert_eq!(dev.capacity(), 1 << 20);
        assert!(read(&dev, 0, 1 << 20).iter().all(|&b| b == 0));
    }

    #[test]
    fn write_then_read_back_single_and_vectored() {
        let dev = MemDevice::new(64 * 1024, 512);
        dev.write_at(512, &[&filled(1024, 0xA1)]).unwrap();
        let (a, b, c) = (filled(512, 1), filled(4096, 2), filled(1536, 3));
        dev.write_at(8192, &[&a, &b, &c]).unwrap();

        assert!(read(&dev, 512, 1024).iter().all(|&x| x == 0xA1));
        let back = read(&dev, 8192, 6144);
        assert!(back[..512].iter().all(|&x| x == 1));
        assert!(back[512..4608].iter().all(|&x| x == 2));
        assert!(back[4608..].iter().all(|&x| x == 3));
        assert!(read(&dev, 0, 512).iter().all(|&x| x == 0));
        assert_eq!(dev.write_count(), 2);
    }

    #[test]
    fn unaligned_or_out_of_bounds_io_is_invalid_input() {
        let dev = MemDevice::new(16 * 4096, 4096);
        let mut b = AlignedBuf::zeroed(4096);
        let cases: [io::Result<()>; 8] = [
            dev.read_at(512, &mut b),
            dev.read_at(0, &mut AlignedBuf::zeroed(512)),
            dev.read_at(16 * 4096, &mut b),
            dev.write_at(100, &[&b]),
            dev.write_at(15 * 4096, &[&b, &b]),
            dev.write_at(0, &[&filled(512, 1), &filled(3584, 1)]),
            dev.discard(0, 100),
            dev.discard(u64::MAX - 4095, 4096),
        ];
        for (i, r) in cases.into_iter().enumerate() {
            let e = r.expect_err(&format!("case {i} must fail"));
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "case {i}: {e}");
        }
        assert_eq!(dev.write_count(), 0);
        assert!(dev.snapshot().iter().all(|&x| x == 0));
    }

    #[test]
    fn poke_and_peek_bypass_alignment() {
        let dev = MemDevice::new(8192, 4096);
        dev.write_at(4096, &[&filled(4096, 7)]).unwrap();
        dev.poke(4099, &[0xFF, 0xFE]);
        assert_eq!(dev.peek(4097, 4), vec![7, 7, 0xFF, 0xFE]);
        assert_eq!(read(&dev, 4096, 4096)[3], 0xFF);
        assert_eq!(dev.write_count(), 1);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn poke_outside_the_medium_panics() {
        MemDevice::new(4096, 4096).poke(4095, &[1, 2]);
    }

    #[test]
    fn snapshot_round_trips_through_from_bytes() {
        let dev = MemDevice::new(8192, 4096);
        dev.write_at(0, &[&filled(4096, 9)]).unwrap();
        let copy = MemDevice::from_bytes(dev.snapshot(), 4096);
        assert_eq!(copy.capacity(), 8192);
        assert_eq!(copy.snapshot(), dev.snapshot());
        assert!(read(&copy, 0, 4096).iter().all(|&x| x == 9));
    }

    #[test]
    #[should_panic(expected = "not a multiple")]
    fn from_bytes_refuses_a_partial_block() {
        MemDevice::from_bytes(vec![0; 4000], 4096);
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn new_refuses_a_bad_alignment() {
        MemDevice::new(3000, 1000);
    }

    #[test]
    fn flush_is_counted_and_discard_zeroes() {
        let dev = MemDevice::new(3 * 4096, 4096);
        dev.write_at(0, &[&filled(3 * 4096, 5)]).unwrap();
        dev.flush().unwrap();
        dev.flush().unwrap();
        dev.discard(4096, 4096).unwrap();
        dev.discard(0, 0).unwrap();
        assert_eq!(dev.flush_count(), 2);
        let back = read(&dev, 0, 3 * 4096);
        assert!(back[..4096].iter().all(|&x| x == 5));
        assert!(back[4096..8192].iter().all(|&x| x == 0));
        assert!(back[8192..].iter().all(|&x| x == 5));
    }

    #[test]
    fn shared_between_threads_as_a_trait_object() {
        let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(8 * 4096, 4096));
        let threads: Vec<_> = (0..8u8)
            .map(|i| {
                let dev = Arc::clone(&dev);
                std::thread::spawn(move || {
                    let off = u64::from(i) * 4096;
                    dev.write_at(off, &[&filled(4096, i)]).unwrap();
                    let mut b = AlignedBuf::zeroed(4096);
                    dev.read_at(off, &mut b).unwrap();
                    assert!(b.iter().all(|&x| x == i));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
