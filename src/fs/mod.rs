//! POSIX semantics over the copy-on-write trees: inodes, directories, file data, links,
//! xattrs. Every method takes `&self` and is safe to call from many threads; blocking calls
//! (reads, writes, fsync) are meant to run on the FUSE adapter's worker threads.
//!
//! Names are raw bytes (`&[u8]`): Linux names are not UTF-8.

mod types;

pub use types::*;

use crate::device::BlockDevice;
use crate::error::Result;
use std::sync::Arc;

/// How to open a filesystem.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Refuse every change; nothing is written to the medium.
    pub read_only: bool,
    /// Seconds between background commits.
    pub commit_interval_secs: u64,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            read_only: false,
            commit_interval_secs: 5,
        }
    }
}

/// A mounted filesystem.
pub struct Fs {
    _dev: Arc<dyn BlockDevice>,
}

#[allow(unused_variables)]
impl Fs {
    /// Opens the filesystem on `dev`: reads and verifies the superblocks, picks the newest valid
    /// commit, loads and verifies the metadata.
    pub fn mount(dev: Arc<dyn BlockDevice>, opts: MountOptions) -> Result<Arc<Fs>> {
        todo!()
    }
    /// Commits everything and stops the background committer. Later calls fail with `EROFS`.
    pub fn shutdown(&self) -> Result<()> {
        todo!()
    }
    /// The filesystem block size in bytes.
    pub fn block_size(&self) -> u32 {
        todo!()
    }
    pub fn counters(&self) -> Counters {
        todo!()
    }

    // ---- names ----
    /// Looks `name` up in `parent`; counts one kernel lookup reference on the result.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        todo!()
    }
    /// Drops `n` kernel lookup references; an unlinked inode with none left and no open handle
    /// is deleted and its space freed.
    pub fn forget(&self, ino: Ino, n: u64) {
        todo!()
    }
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        todo!()
    }
    pub fn setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr> {
        todo!()
    }
    /// Creates a non-directory node (`mode` carries the `S_IFMT` bits); counts a lookup.
    pub fn mknod(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        rdev: u32,
        who: Caller,
    ) -> Result<Attr> {
        todo!()
    }
    /// Creates a directory; counts a lookup.
    pub fn mkdir(&self, parent: Ino, name: &[u8], mode: u32, who: Caller) -> Result<Attr> {
        todo!()
    }
    /// Creates a symlink; counts a lookup.
    pub fn symlink(&self, parent: Ino, name: &[u8], target: &[u8], who: Caller) -> Result<Attr> {
        todo!()
    }
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        todo!()
    }
    /// Adds a hard link; counts a lookup.
    pub fn link(&self, ino: Ino, newparent: Ino, newname: &[u8]) -> Result<Attr> {
        todo!()
    }
    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<()> {
        todo!()
    }
    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()> {
        todo!()
    }
    /// `renameat2`: `flags` is 0, `RENAME_NOREPLACE` or `RENAME_EXCHANGE`.
    pub fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        flags: u32,
    ) -> Result<()> {
        todo!()
    }
    /// Up to `max` entries after `cookie` (0 = from the start, including "." and "..").
    pub fn readdir(&self, dir: Ino, cookie: u64, max: usize) -> Result<Vec<DirEntry>> {
        todo!()
    }

    // ---- open files ----
    /// Counts an open handle (an unlinked file lives until its last close).
    pub fn open(&self, ino: Ino) -> Result<()> {
        todo!()
    }
    pub fn release(&self, ino: Ino) {
        todo!()
    }
    /// Reads up to `size` bytes at `offset`; every byte returned was verified against its
    /// checksum. Blocks on device I/O.
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>> {
        todo!()
    }
    /// Writes `data` at `offset` into private bounce buffers; returns the byte count.
    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<u32> {
        todo!()
    }
    /// Returns once the inode's data and metadata are durable.
    pub fn fsync(&self, ino: Ino, datasync: bool) -> Result<()> {
        todo!()
    }
    /// Commits everything now and waits until it is durable.
    pub fn sync(&self) -> Result<()> {
        todo!()
    }
    pub fn statfs(&self) -> Result<StatFs> {
        todo!()
    }

    // ---- xattrs ----
    /// `flags`: 0, `XATTR_CREATE` or `XATTR_REPLACE`.
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        todo!()
    }
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        todo!()
    }
    /// All names, each followed by a NUL byte.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        todo!()
    }
    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<()> {
        todo!()
    }
}
