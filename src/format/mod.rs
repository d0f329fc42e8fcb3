//! The on-disk format, version 1, and nothing else: pure encode/decode functions over byte
//! slices. Every decoder checks every field before it is used and returns `Error::Corrupt`
//! (damaged or foreign bytes) or `Error::Unsupported` (a newer format) — never panics, whatever
//! the input (a proptest in this module's tests feeds it arbitrary bytes).
//!
//! ## Layout of a device
//!
//! ```text
//! byte 0          superblock slot 0 (4 KiB)
//! byte 64 KiB     superblock slot 1 (4 KiB)
//! byte 256 KiB    first allocatable block (RESERVED_BYTES); everything after it is
//!                 tree nodes and file data, allocated in blocks of `block_size`
//! ```
//!
//! Commits alternate between the two superblock slots (generation g goes to slot g % 2); the
//! valid slot with the highest generation is the filesystem. A superblock holds a `BlockPtr` to
//! the root of the one copy-on-write B+tree that holds all metadata (`node`), keyed by `Key`
//! (`item`). Every `BlockPtr` carries the crc32c of the block it points to, so the checksum of
//! every block lives in its parent, up to the checksummed superblock. File data blocks are
//! checksummed by the crc array of the extent item that maps them.
//!
//! All integers are little-endian (clippy denies the other encodings crate-wide).

mod codec;
pub mod copies;
pub mod item;
pub mod node;
pub mod posix;
pub mod ptr;
pub mod scrub;
pub mod superblock;

pub use codec::{Dec, Enc};
pub use copies::{Copies, MAX_DATA_COPIES};
pub use item::*;
pub use node::*;
pub use posix::*;
pub use ptr::*;
pub use scrub::*;
pub use superblock::*;

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes at the start of the device that hold the superblock slots and are never allocated.
pub const RESERVED_BYTES: u64 = 256 * 1024;
/// Smallest and largest filesystem block sizes.
pub const MIN_BLOCK_SIZE: u32 = 4096;
pub const MAX_BLOCK_SIZE: u32 = 65536;

/// Formats a filesystem UUID the usual way (8-4-4-4-12 hex).
pub fn uuid_string(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// crc32c of a block, as stored in pointers and extent items.
pub fn block_crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Is `bs` a block size this format allows?
pub fn valid_block_size(bs: u32) -> bool {
    bs.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs)
}

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod tests;
