//! Owned, zero-initialised, aligned bounce buffers and a pool that recycles them.

use parking_lot::Mutex;
use std::ops::{Deref, DerefMut};

/// Memory alignment of every buffer: enough for `O_DIRECT` on any device with logical blocks
/// up to 4 KiB.
pub const BUF_ALIGN: usize = 4096;

/// A private, aligned, initialised byte buffer. Aligned without `unsafe`: the backing `Vec` is
/// over-allocated by `BUF_ALIGN` and the buffer is the aligned window inside it. The `Vec` is
/// never resized, so the window never moves.
pub struct AlignedBuf {
    backing: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        let backing = vec![0u8; len + BUF_ALIGN];
        let start = backing.as_ptr().align_offset(BUF_ALIGN);
        assert!(
            start < BUF_ALIGN,
            "align_offset on a u8 pointer is always < align"
        );
        AlignedBuf {
            backing,
            start,
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes the buffer can hold without reallocating.
    pub fn capacity(&self) -> usize {
        self.backing.len() - self.start
    }

    /// Resizes the aligned window within the capacity. Bytes that come into view hold whatever
    /// was written there before (always initialised memory, never uninitialised).
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.capacity(),
            "set_len({len}) beyond capacity {}",
            self.capacity()
        );
        self.len = len;
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.backing[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.backing[self.start..self.start + self.len]
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

/// Recycles buffers of one size so the hot paths do not allocate. Buffers come back zeroed.
pub struct BufPool {
    size: usize,
    max_kept: usize,
    free: Mutex<Vec<AlignedBuf>>,
}

impl BufPool {
    pub fn new(size: usize, max_kept: usize) -> Self {
        BufPool {
            size,
            max_kept,
            free: Mutex::new(Vec::new()),
        }
    }

    pub fn buf_size(&self) -> usize {
        self.size
    }

    /// A buffer of the pool's size whose contents are unspecified (stale bytes of an earlier
    /// use, or zeros): for callers that overwrite all of it.
    pub fn take(&self) -> AlignedBuf {
        match self.free.lock().pop() {
            Some(mut b) => {
                b.set_len(self.size);
                b
            }
            None => AlignedBuf::zeroed(self.size),
        }
    }

    /// `n` buffers as `take` gives them, under one lock acquisition.
    pub fn take_many(&self, n: usize) -> Vec<AlignedBuf> {
        let mut out = {
            let mut free = self.free.lock();
            let k = free.len().saturating_sub(n);
            free.split_off(k)
        };
        for b in &mut out {
            b.set_len(self.size);
        }
        out.resize_with(n, || AlignedBuf::zeroed(self.size));
        out
    }

    /// Returns many buffers under one lock acquisition.
    pub fn put_many(&self, bufs: impl IntoIterator<Item = AlignedBuf>) {
        let mut free = self.free.lock();
        for b in bufs {
            if free.len() >= self.max_kept {
                break;
            }
            if b.capacity() >= self.size {
                free.push(b);
            }
        }
    }

    /// A zeroed buffer of the pool's size.
    pub fn get(&self) -> AlignedBuf {
        match self.free.lock().pop() {
            Some(mut b) => {
                b.set_len(self.size);
                b.fill(0);
                b
            }
            None => AlignedBuf::zeroed(self.size),
        }
    }

    /// Returns a buffer for reuse (dropped if it cannot hold the pool's size or the pool is
    /// full).
    pub fn put(&self, buf: AlignedBuf) {
        if buf.capacity() < self.size {
            return;
        }
        let mut free = self.free.lock();
        if free.len() < self.max_kept {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_zeroed_and_sized() {
        for len in [0usize, 512, 4096, 65536, 1 << 20] {
            let b = AlignedBuf::zeroed(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % BUF_ALIGN, 0);
            assert!(b.iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn pool_recycles_and_rezeroes() {
        let pool = BufPool::new(4096, 4);
        let mut b = pool.get();
        b.fill(0xAB);
        pool.put(b);
        let b = pool.get();
        assert!(b.iter().all(|&x| x == 0));
        assert_eq!(b.as_ptr() as usize % BUF_ALIGN, 0);
        pool.put(b);
        let mut t = pool.take();
        assert_eq!(t.len(), 4096);
        t.set_len(512);
        assert_eq!(t.as_ptr() as usize % BUF_ALIGN, 0);
        pool.put(t);
        assert_eq!(
            pool.take().len(),
            4096,
            "a shrunk buffer comes back full size"
        );
    }
}
