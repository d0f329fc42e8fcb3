//! `lseek(SEEK_DATA / SEEK_HOLE)` under the kernel's writeback cache.
//!
//! The kernel (checked on 6.18) forwards `FUSE_LSEEK` without writing back the file's dirty
//! pages first. With `FUSE_WRITEBACK_CACHE` those pages can hold data, and a size, that
//! stablefs has not been sent yet: answered from stablefs alone, `SEEK_DATA` would call fresh
//! data a hole (and `cp`, which copies only the data `SEEK_DATA` finds, would drop it).
//!
//! Only a file that is open for writing can have dirty pages in the kernel: closing a file
//! writes its pages back (`flush`) before the kernel sends `release`, and a shared writable
//! mapping keeps its file open until it is unmapped. So:
//!
//! - with no writable handle open on the inode, the answer comes straight from `Fs`, inline
//!   (it only looks at extent maps and blocks in memory);
//! - otherwise the kernel is first made to write the file's dirty pages back, by invalidating
//!   its page cache (`FUSE_NOTIFY_INVAL_INODE`: the kernel writes each dirty page back, as
//!   `WRITE` requests, before dropping it), then `Fs` answers. That notification blocks until
//!   the writes are done, and they are served by the request loops, so it is sent from a
//!   thread of its own: on a request loop it could take the last loop the writes need, and on
//!   the worker pool it could wait for a page locked by a read queued behind it. The kernel
//!   holds the inode lock during the `lseek`, so no `write(2)` can dirty the file again
//!   before the answer.
//!
//! If the kernel cannot be made to write back (no notifier, the notification fails, no thread),
//! the answer is `ENOSYS`: the kernel then answers every later `SEEK_DATA`/`SEEK_HOLE` itself,
//! treating the whole file as data, which is always safe.

use super::convert::errno;
use crate::error::{Error, Result};
use crate::fs::{Fs, Ino};
use fuser::{Errno, INodeNo, Notifier, ReplyLseek};
use log::warn;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub(super) struct Seeker {
    fs: Arc<Fs>,
    /// Handles open for writing, per inode.
    writers: Mutex<HashMap<Ino, u64>>,
    /// Set once the session exists (see `kernel_mount::mount`).
    notifier: Arc<OnceLock<Notifier>>,
}

fn writable(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY
}

impl Seeker {
    pub(super) fn new(fs: Arc<Fs>) -> Seeker {
        Seeker {
            fs,
            writers: Mutex::new(HashMap::new()),
            notifier: Arc::new(OnceLock::new()),
        }
    }

    pub(super) fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        Arc::clone(&self.notifier)
    }

    /// A handle with open flags `flags` was opened on `ino`.
    pub(super) fn opened(&self, ino: Ino, flags: i32) {
        if writable(flags) {
            *self.writers.lock().entry(ino).or_default() += 1;
        }
    }

    /// A handle opened with `flags` was released.
    pub(super) fn released(&self, ino: Ino, flags: i32) {
        if !writable(flags) {
            return;
        }
        let mut writers = self.writers.lock();
        if let Some(n) = writers.get_mut(&ino) {
            *n -= 1;
            if *n == 0 {
                writers.remove(&ino);
            }
        }
    }

    pub(super) fn lseek(&self, ino: Ino, offset: i64, whence: i32, reply: ReplyLseek) {
        if !self.writers.lock().contains_key(&ino) {
            return reply_seek(seek(&self.fs, ino, offset, whence), reply);
        }
        let Some(notifier) = self.notifier.get().cloned() else {
            warn!("lseek: no notifier to flush the kernel's cache; leaving SEEK_DATA to it");
            return reply.error(Errno::ENOSYS);
        };
        let fs = Arc::clone(&self.fs);
        let spawned = std::thread::Builder::new()
            .name("stablefs-seek".into())
            .spawn(move || {
                // Offset 0, length 0: the whole file.
                match notifier.inval_inode(INodeNo(ino), 0, 0) {
                    // ENOENT: the kernel does not have the inode cached, so no pages either.
                    Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                        warn!(
                            "lseek: cannot flush the kernel's cache of inode {ino} ({e}); \
                             leaving SEEK_DATA to the kernel"
                        );
                        reply.error(Errno::ENOSYS);
                    }
                    _ => reply_seek(seek(&fs, ino, offset, whence), reply),
                }
            });
        if let Err(e) = spawned {
            // The reply went with the closure, and fuser answers a dropped reply with EIO.
            warn!("lseek: cannot start a thread: {e}");
        }
    }
}

fn reply_seek(at: Result<i64>, reply: ReplyLseek) {
    match at {
        Ok(at) => reply.offset(at),
        Err(e) => reply.error(errno(&e)),
    }
}

/// `lseek` as the kernel forwards it: only `SEEK_DATA` and `SEEK_HOLE` reach the filesystem
/// (it answers `SEEK_SET`, `SEEK_CUR` and `SEEK_END` itself).
fn seek(fs: &Fs, ino: Ino, offset: i64, whence: i32) -> Result<i64> {
    let Ok(offset) = u64::try_from(offset) else {
        return Err(Error::Errno(libc::ENXIO));
    };
    let at = match whence {
        libc::SEEK_DATA => fs.seek_data(ino, offset)?,
        libc::SEEK_HOLE => fs.seek_hole(ino, offset)?,
        _ => return Err(Error::Errno(libc::EINVAL)),
    };
    // Offsets stay below the largest file size, i64::MAX.
    i64::try_from(at).map_err(|_| Error::Errno(libc::EOVERFLOW))
}
