//! The bytes of one dirty file block, private to the filesystem from the moment they were
//! copied in (stable: nothing outside can change them before, while or after their crc is
//! computed and they are written).
//!
//! The whole blocks of one write are copied into one shared *chunk*, each block a window of
//! it: one copy and one allocation per write instead of one per block, and a run of them goes
//! to the device as one memory segment (the kernel pins a 1 MiB segment in one step, not 256
//! 4 KiB ones). A chunk is never changed once filled; a block that is patched later (a partial
//! write) first gets a buffer of its own (copy on write).

use crate::device::{AlignedBuf, BufPool};
use crate::format::block_crc;
use std::ops::Deref;
use std::sync::Arc;

pub enum BlockBuf {
    /// Bytes `off..off + len` of a chunk other blocks may share.
    Shared {
        chunk: Arc<AlignedBuf>,
        off: usize,
        len: usize,
    },
    /// A block-sized buffer of its own.
    Own(AlignedBuf),
}

impl Deref for BlockBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            BlockBuf::Shared { chunk, off, len } => &chunk[*off..*off + *len],
            BlockBuf::Own(b) => b,
        }
    }
}

impl BlockBuf {
    /// The block's bytes, to change: a shared window is first copied into a buffer from
    /// `pool` (the chunk is shared, and may be being written).
    pub fn make_mut(&mut self, pool: &BufPool) -> &mut [u8] {
        if let BlockBuf::Shared { .. } = self {
            let mut own = pool.take();
            own.set_len(self.len());
            own.copy_from_slice(self);
            *self = BlockBuf::Own(own);
        }
        match self {
            BlockBuf::Own(b) => b,
            BlockBuf::Shared { .. } => unreachable!("made own above"),
        }
    }

    /// Gives the memory back: an own buffer to `blocks`; a chunk to `chunks` once its last
    /// block is gone (while other blocks hold it, this one's window is simply dropped).
    pub fn recycle(self, blocks: &mut Vec<AlignedBuf>, chunks: &mut Vec<AlignedBuf>) {
        match self {
            BlockBuf::Own(b) => blocks.push(b),
            BlockBuf::Shared { chunk, .. } => {
                if let Ok(c) = Arc::try_unwrap(chunk) {
                    chunks.push(c);
                }
            }
        }
    }
}

/// Copies `data` (a whole number of `bs`-byte blocks) into chunks from `pool` (at most one
/// chunk's worth each) and returns one window per block, in order, with the crc32c of its
/// private copy. Each block is copied and then summed while it is still in the L1 cache.
pub fn copy_in(data: &[u8], bs: usize, pool: &BufPool) -> Vec<(BlockBuf, u32)> {
    debug_assert_eq!(data.len() % bs, 0);
    let per_chunk = (pool.buf_size() / bs).max(1) * bs;
    let mut out = Vec::with_capacity(data.len() / bs);
    for piece in data.chunks(per_chunk) {
        let mut chunk = if piece.len() <= pool.buf_size() {
            pool.take()
        } else {
            AlignedBuf::zeroed(piece.len())
        };
        chunk.set_len(piece.len());
        let mut crcs = Vec::with_capacity(piece.len() / bs);
        for (dst, src) in chunk.chunks_mut(bs).zip(piece.chunks(bs)) {
            dst.copy_from_slice(src);
            crcs.push(block_crc(dst));
        }
        let chunk = Arc::new(chunk);
        out.extend(crcs.into_iter().enumerate().map(|(k, crc)| {
            let window = BlockBuf::Shared {
                chunk: chunk.clone(),
                off: k * bs,
                len: bs,
            };
            (window, crc)
        }));
    }
    out
}

/// The memory segments of consecutive blocks for one vectored device write: adjacent windows
/// of the same chunk merge into one segment.
pub fn segments<'a>(blocks: impl IntoIterator<Item = &'a BlockBuf>) -> Vec<&'a [u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    // The open run of windows: its chunk, start and end.
    let mut run: Option<(&'a Arc<AlignedBuf>, usize, usize)> = None;
    for b in blocks {
        match b {
            BlockBuf::Shared { chunk, off, len } => {
                if let Some((c, _, end)) = run.as_mut() {
                    if Arc::ptr_eq(c, chunk) && *end == *off {
                        *end += len;
                        continue;
                    }
                }
                if let Some((c, s, e)) = run.take() {
                    out.push(&c[s..e]);
                }
                run = Some((chunk, *off, off + len));
            }
            BlockBuf::Own(own) => {
                if let Some((c, s, e)) = run.take() {
                    out.push(&c[s..e]);
                }
                out.push(own);
            }
        }
    }
    if let Some((c, s, e)) = run {
        out.push(&c[s..e]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_of_one_chunk_merge_and_a_patched_block_splits_the_run() {
        let bs = 4096;
        let blocks_pool = BufPool::new(bs, 8);
        let chunks = BufPool::new(4 * bs, 2);
        let data: Vec<u8> = (0..6 * bs).map(|i| (i / bs) as u8 + 1).collect();
        let (mut blocks, crcs): (Vec<BlockBuf>, Vec<u32>) =
            copy_in(&data, bs, &chunks).into_iter().unzip();
        assert_eq!(blocks.len(), 6);
        for (b, crc) in blocks.iter().zip(&crcs) {
            assert_eq!(block_crc(b), *crc);
        }
        for (k, b) in blocks.iter().enumerate() {
            assert!(b.iter().all(|&x| x == k as u8 + 1), "block {k}");
        }
        // Two chunks (4 + 2 blocks): two segments, in order, holding all the bytes.
        let segs = segments(&blocks);
        assert_eq!(
            segs.iter().map(|s| s.len()).collect::<Vec<_>>(),
            [4 * bs, 2 * bs]
        );
        assert_eq!(segs.concat(), data);
        // Patching block 1 gives it its own buffer; the chunk (and block 2) is unchanged.
        blocks[1].make_mut(&blocks_pool)[0] = 0xEE;
        assert!(matches!(blocks[1], BlockBuf::Own(_)));
        assert_eq!(blocks[2][0], 3);
        let segs = segments(&blocks);
        assert_eq!(
            segs.iter().map(|s| s.len()).collect::<Vec<_>>(),
            [bs, bs, 2 * bs, 2 * bs]
        );
        assert_eq!(segs[1][0], 0xEE);
        // The chunk comes back once its last window is recycled.
        let (mut own, mut whole) = (Vec::new(), Vec::new());
        for b in blocks {
            b.recycle(&mut own, &mut whole);
        }
        assert_eq!(own.len(), 1);
        assert_eq!(whole.len(), 2);
    }
}
