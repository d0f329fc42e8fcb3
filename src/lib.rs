//! stablefs: a FUSE filesystem on an `O_DIRECT` block device or image file, with a crc32c for
//! every block computed over private bounce buffers (stable pages), every read verified before
//! a byte is returned, and copy-on-write commits.
//!
//! Data flows down through small layers, each testable without a mount. The layers, bottom
//! first ([`LAYERS`]; a module uses its own layer and those below, never one above, and no
//! modules use each other in a circle: `tests/layering.rs` checks every `crate::` path):
//!
//! 1. [`error`]: the error type everything returns.
//! 2. [`device`]: the medium behind the [`device::BlockDevice`] trait (`O_DIRECT` file or
//!    block device; in-memory and fault-injecting doubles for tests). [`format`]: the on-disk
//!    format and nothing else: pure encode/decode of superblocks, block pointers, tree nodes
//!    and items, every field checked. [`alloc`]: free-space extents; freed blocks reusable
//!    only once the commit that freed them is durable.
//! 3. [`tree`]: the copy-on-write B+tree of all metadata.
//! 4. [`txn`]: the commit that writes data, then metadata, flushes, writes the next
//!    superblock and flushes again.
//! 5. [`store`]: the block engine for file data: placement of every copy, the bounce-buffer
//!    write path, dirty accounting, writeback and the committer, verified reads, the one
//!    verify-and-heal path, fallocate reservations. Objects, blocks, extents and copies;
//!    never names or permissions.
//! 6. [`scrub`]: verifying every block, offline over the tree and online in the daemon
//!    through an interface it owns (`scrub::online::Target`), which the filesystem implements.
//! 7. [`status`]: what the daemon reports (`stablefs status`).
//! 8. [`fs`]: POSIX semantics over the store and the tree: inodes, directories, links,
//!    xattrs, permissions, as ext4 behaves.
//! 9. [`fuse`]: the `fuser::Filesystem` adapter with its read-verify worker threads.
//! 10. [`mkfs`], [`fsck`]: tools over the same layers.
//!
//! The `stablefs` binary (`src/main.rs`, `src/cli/`) is on top of all of them.

/// The library's layers, bottom first (see the crate doc).
pub const LAYERS: &[&[&str]] = &[
    &["error"],
    &["device", "format", "alloc"],
    &["tree"],
    &["txn"],
    &["store"],
    &["scrub"],
    &["status"],
    &["fs"],
    &["fuse"],
    &["mkfs", "fsck"],
];

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
pub mod store;
pub mod tree;
pub mod txn;

pub use error::{Error, Result};
