//! stablefs: a FUSE filesystem on an `O_DIRECT` block device or image file, with a crc32c for
//! every block computed over private bounce buffers (stable pages), every read verified before
//! a byte is returned, and copy-on-write commits.
//!
//! Data flows down through small layers, each testable without a mount:
//!
//! - [`device`]: the medium behind the [`device::BlockDevice`] trait (`O_DIRECT` file or block
//!   device; in-memory and fault-injecting doubles for tests).
//! - [`format`]: the on-disk format and nothing else: pure encode/decode of superblocks, block
//!   pointers, tree nodes and items, every field checked.
//! - [`alloc`]: free-space extents; freed blocks reusable only once the commit that freed them
//!   is durable.
//! - [`tree`], [`txn`]: the copy-on-write B+tree of all metadata, and the commit that writes data,
//!   then metadata, flushes, writes the next superblock and flushes again.
//! - [`fs`]: POSIX semantics over the tree.
//! - [`fuse`]: the `fuser::Filesystem` adapter with its read-verify worker threads.
//! - [`mkfs`], [`fsck`]: tools over the same layers.

pub mod alloc;
pub mod device;
pub mod error;
pub mod format;
pub mod fs;
pub mod fsck;
pub mod fuse;
pub mod mkfs;
pub mod scrub;
pub mod status;
pub mod tree;
pub mod txn;

pub use error::{Error, Result};
