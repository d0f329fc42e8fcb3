//! Block pointers: where a block lives and what its bytes must hash to.
//!
//! ```text
//! BlockPtr, 32 bytes
//!  0  addr       u64   block number of the block
//!  8  copy_addr  u64   block number of a second copy (DUP); 0 = none
//! 16  birth_gen  u64   generation of the commit that wrote the block
//! 24  crc        u32   crc32c of the whole block (nodes: with their header crc field zeroed)
//! 28  reserved   u32   zero
//! ```

use super::codec::{Dec, Enc};
use crate::error::Result;

/// Field offsets inside a `BlockPtr`, as in the byte map above; each follows the one before.
pub const PTR_ADDR_OFF: usize = 0;
pub const PTR_COPY_ADDR_OFF: usize = PTR_ADDR_OFF + 8;
pub const PTR_BIRTH_GEN_OFF: usize = PTR_COPY_ADDR_OFF + 8;
pub const PTR_CRC_OFF: usize = PTR_BIRTH_GEN_OFF + 8;
pub const PTR_RESERVED_OFF: usize = PTR_CRC_OFF + 4;
pub const BLOCK_PTR_SIZE: usize = 32;
const _: () = assert!(PTR_RESERVED_OFF + 4 == BLOCK_PTR_SIZE);

/// A block number on the device, in units of the filesystem block size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockNo(pub u64);

impl BlockNo {
    /// Byte offset of this block on the device.
    pub fn offset(self, block_size: u32) -> u64 {
        self.0 * u64::from(block_size)
    }
}

impl std::fmt::Display for BlockNo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BlockPtr {
    pub addr: BlockNo,
    pub copy_addr: Option<BlockNo>,
    pub birth_gen: u64,
    pub crc: u32,
}

impl BlockPtr {
    pub fn encode(&self, e: &mut Enc) {
        let start = e.len();
        e.u64(self.addr.0)
            .u64(self.copy_addr.map_or(0, |b| b.0))
            .u64(self.birth_gen)
            .u32(self.crc)
            .u32(0);
        debug_assert_eq!(e.len() - start, BLOCK_PTR_SIZE);
    }

    /// Decodes a pointer and checks that it points inside `[first, total)`.
    pub fn decode(d: &mut Dec, first: u64, total: u64) -> Result<BlockPtr> {
        let addr = d.u64()?;
        let copy = d.u64()?;
        let birth_gen = d.u64()?;
        let crc = d.u32()?;
        let reserved = d.u32()?;
        if reserved != 0 {
            return d.corrupt(format_args!(
                "block pointer reserved field is {reserved:#x}"
            ));
        }
        let in_range = |b: u64| b >= first && b < total;
        if !in_range(addr) {
            return d.corrupt(format_args!(
                "block pointer to {addr} outside [{first}, {total})"
            ));
        }
        if copy != 0 && !in_range(copy) {
            return d.corrupt(format_args!(
                "copy pointer to {copy} outside [{first}, {total})"
            ));
        }
        Ok(BlockPtr {
            addr: BlockNo(addr),
            copy_addr: (copy != 0).then_some(BlockNo(copy)),
            birth_gen,
            crc,
        })
    }
}
