//! POSIX semantics over the block store and the tree: inodes, directories, file data, links,
//! xattrs. Every method takes `&self` and is safe to call from many threads; blocking calls
//! (reads, writes, fsync) are meant to run on the FUSE adapter's worker threads. Where file
//! data goes, when it is written and how it is verified is the store's (`crate::store`).
//!
//! Names are raw bytes (`&[u8]`): Linux names are not UTF-8.

pub mod acl;
mod clock;
mod fileops;
pub mod flags;
pub mod namespace;
mod ops;
mod scrub;
mod state;
mod types;
mod vfs;
mod xattr;

pub use types::*;
pub use vfs::{ms, Atime, Behaviour, VfsState};

use crate::device::BlockDevice;
use crate::error::{errno, Error, Result};
use crate::format::{Key, KIND_ORPHAN, OBJECT_FS};
pub use crate::store::GoingDown;
use crate::store::{ChangeGuard, Reserve, Src, Store, StoreOptions};
use crate::txn::Meta;
use parking_lot::MutexGuard;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How to open a filesystem.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Refuse every change; nothing is written to the medium.
    pub read_only: bool,
    /// Seconds between background commits.
    pub commit_interval_secs: u64,
    /// Milliseconds without a change after which what changed is committed, well before the
    /// interval: the kernel's `sync(2)` sends a FUSE server nothing but the dirty pages it
    /// writes back, so the commit that follows a burst of changes is what makes them durable
    /// soon after a `sync` returns. 0: only the interval (and fsync, `stablefs sync`) commit.
    pub idle_commit_ms: u64,
    /// What the generic mount options ask (atime, `sync`, ...); a remount changes it.
    pub behaviour: Behaviour,
}

/// The default of `MountOptions::idle_commit_ms`: long enough that a steady stream of
/// changes (a copy, an untar) is not interrupted by commits, short against the seconds of
/// the interval.
pub const IDLE_COMMIT_MS: u64 = 50;

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            read_only: false,
            commit_interval_secs: 5,
            idle_commit_ms: IDLE_COMMIT_MS,
            behaviour: Behaviour::default(),
        }
    }
}

/// The state the filesystem keeps under the store's lock: the kernel's references to inodes.
#[derive(Default)]
pub struct Refs {
    pub live: std::collections::HashMap<Ino, state::Live>,
    /// Shut down by `Fs::go_down`: every inode lookup fails with EIO.
    pub down: bool,
}

/// The store's state with the filesystem's own (`Refs`) inside it.
type State = crate::store::State<Refs>;

/// A mounted filesystem.
pub struct Fs {
    store: Arc<Store<Refs>>,
    bs: u32,
    read_only: bool,
    /// The tree's own counts of bad and repaired node copies.
    tree_stats: Arc<crate::tree::TreeStats>,
    mounted_at: std::time::Instant,
    /// The online scrub (`crate::scrub::online`).
    scrub: Arc<crate::scrub::online::Scrubber>,
    /// Told of every inode whose attributes the filesystem changed on its own, beyond what
    /// the reply to the request in hand shows (see [`Fs::set_attr_listener`]).
    attr_listener: std::sync::OnceLock<AttrListener>,
    /// The generic mount options in force (see `vfs`).
    vfs: VfsState,
}

/// See [`Fs::set_attr_listener`].
pub type AttrListener = Box<dyn Fn(Ino) + Send + Sync>;

impl Fs {
    /// Opens the filesystem on `dev`: reads and verifies the superblocks, picks the newest valid
    /// commit, loads and verifies the metadata, deletes inodes left unlinked-but-open by the
    /// previous mount, and starts the background committer.
    pub fn mount(dev: Arc<dyn BlockDevice>, opts: MountOptions) -> Result<Arc<Fs>> {
        let meta = Meta::open(dev.clone(), !opts.read_only)?;
        let mut read_only = opts.read_only;
        if meta.sb.needs_read_only() && !read_only {
            log::warn!(
                "the filesystem uses features this stablefs can only read: mounting read-only"
            );
            read_only = true;
        }
        if !meta.damage.is_empty() && !read_only {
            log::error!(
                "{} damaged metadata block(s): mounting read-only",
                meta.damage.len()
            );
            read_only = true;
        }
        // From here on a bad metadata copy found by a lazy load is rewritten only if this mount
        // may write.
        meta.tree.set_heal(!read_only);
        let tree_stats = meta.tree.stats();
        let bs = meta.sb.block_size;
        let orphans = meta.orphans.clone();
        let store = Store::open(
            dev,
            meta,
            Refs::default(),
            &StoreOptions {
                read_only,
                commit_interval: Duration::from_secs(opts.commit_interval_secs.max(1)),
                idle_commit: Duration::from_millis(opts.idle_commit_ms),
            },
        )?;
        let scrubber = Arc::new(scrub::load_scrubber(&mut store.lock(), read_only));
        let fs = Arc::new(Fs {
            store,
            bs,
            read_only,
            tree_stats,
            mounted_at: std::time::Instant::now(),
            scrub: scrubber,
            attr_listener: std::sync::OnceLock::new(),
            vfs: VfsState::new(opts.behaviour),
        });
        if !read_only {
            if !orphans.is_empty() {
                let mut st = fs.lock();
                for ino in orphans {
                    log::info!("deleting inode {ino}, unlinked while open before the last unmount");
                    st.purge(ino)?;
                }
                drop(st);
                fs.store.sync()?;
            }
            fs.store.start_committer()?;
            // A scrub that was running at the last commit goes on.
            fs.scrub.spawn(&fs);
        }
        Ok(fs)
    }

    /// Commits everything and stops the background committer. Later changes fail with `EROFS`.
    /// Inodes still unlinked-but-open are deleted (nothing can reach them after unmount).
    pub fn shutdown(&self) -> Result<()> {
        if self.store.is_shut_down() {
            return Ok(());
        }
        // The scrub's position is in the tree already: the commit below makes it durable.
        self.scrub.shutdown();
        if !self.store.stop() {
            return Ok(());
        }
        // Remounted read-only: committed then, and nothing is written after (orphans are
        // deleted by the next read-write mount).
        if self.read_only || self.store.is_frozen() {
            return Ok(());
        }
        {
            let mut st = self.lock();
            let orphans = st.meta.tree.range(
                &Key::new(OBJECT_FS, KIND_ORPHAN, 0),
                &Key::new(OBJECT_FS, KIND_ORPHAN, u64::MAX),
                usize::MAX,
            )?;
            for (k, _) in orphans {
                st.purge(k.offset)?;
            }
        }
        self.store.commit()
    }

    /// Sets (once) who hears of attribute changes the filesystem makes on its own: the mode
    /// a write by an unprivileged caller clears, for example, which the reply to that write
    /// (a byte count) cannot carry. The FUSE adapter tells the kernel to drop its cached
    /// attributes. The listener may be called with the state lock held, so it must not wait
    /// on the filesystem.
    pub fn set_attr_listener(&self, listener: AttrListener) {
        let _ = self.attr_listener.set(listener);
    }

    /// Tells the listener that `ino`'s attributes changed behind the kernel's back.
    fn attrs_changed(&self, ino: Ino) {
        if let Some(listener) = self.attr_listener.get() {
            listener(ino);
        }
    }

    /// The shutdown ioctl (XFS's `XFS_IOC_GOINGDOWN`), for `uid`: root only (EPERM). Stops
    /// the online scrub, then the store (see `Store::go_down` for what each `how` commits);
    /// from then on every call that reaches an inode fails with EIO, nothing more is written
    /// to the device, and the unmount commits nothing. The next mount is at the last commit,
    /// which holds everything `fsync` returned for.
    pub fn go_down(&self, how: GoingDown, uid: u32) -> Result<()> {
        if uid != 0 {
            return errno(libc::EPERM);
        }
        if how != GoingDown::Flush {
            self.lock().ext.down = true;
        }
        self.scrub.shutdown();
        let flushed = self.store.go_down(how);
        self.lock().ext.down = true;
        flushed
    }

    /// The inodes the kernel may hold in its caches: the root and those it has looked up or
    /// opened.
    pub fn kernel_inodes(&self) -> Vec<Ino> {
        let st = self.lock();
        let mut inodes: Vec<Ino> = st.ext.live.keys().copied().collect();
        inodes.push(crate::format::ROOT_INO);
        inodes
    }

    /// The generation of the last commit.
    pub fn generation(&self) -> u64 {
        self.store.generation()
    }

    pub fn block_size(&self) -> u32 {
        self.bs
    }

    /// Mounted read-only, or remounted so.
    pub fn is_read_only(&self) -> bool {
        self.read_only || self.store.is_frozen() || self.vfs.kernel_read_only()
    }

    pub fn counters(&self) -> Counters {
        let c = &self.store.counters;
        Counters {
            checksum_errors: c.checksum_errors.load(Ordering::Relaxed),
            device_read_errors: c.device_read_errors.load(Ordering::Relaxed),
            device_write_errors: c.device_write_errors.load(Ordering::Relaxed),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            metadata_bad_copies: self.tree_stats.bad_copies.load(Ordering::Relaxed),
            metadata_repairs: self.tree_stats.repaired.load(Ordering::Relaxed),
            data_bad_copies: c.data_bad_copies.load(Ordering::Relaxed),
            data_repairs: c.data_repairs.load(Ordering::Relaxed),
        }
    }

    /// What `stablefs status` reports (see `crate::status`).
    pub fn status(&self) -> crate::status::Status {
        let c = self.counters();
        let (uuid, generation, total, free, copies) = {
            let st = self.lock();
            (
                crate::format::uuid_string(&st.meta.sb.uuid),
                st.meta.sb.generation,
                st.data_capacity(),
                st.free_for_use(),
                st.data_copies(),
            )
        };
        crate::status::Status {
            uuid,
            generation,
            read_only: self.is_read_only(),
            failed: self.store.has_failed(),
            block_size: self.bs,
            blocks_total: total,
            blocks_free: free,
            checksum_errors: c.checksum_errors,
            metadata_bad_copies: c.metadata_bad_copies,
            repairs: c.metadata_repairs,
            data_copies: copies as u8,
            data_bad_copies: c.data_bad_copies,
            data_repairs: c.data_repairs,
            device_read_errors: c.device_read_errors,
            device_write_errors: c.device_write_errors,
            bytes_read: c.bytes_read,
            bytes_written: c.bytes_written,
            commits: c.commits,
            mounted_secs: self.mounted_at.elapsed().as_secs(),
            last_scrub: self.scrub.last(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.store.lock()
    }

    /// Commits everything now and waits until it is durable (see `txn` for the order).
    pub fn sync(&self) -> Result<()> {
        self.store.sync()
    }
}

/// The filesystem keeps each inode's `blocks` (mapped plus reserved) in step with what a
/// commit maps.
impl crate::store::Owner for Refs {
    fn blocks_mapped(meta: &mut Meta, ino: Ino, delta: i64) -> Result<()> {
        let key = state::inode_key(ino);
        let mut inode = match meta.tree.get(&key)? {
            Some(v) => crate::format::InodeItem::decode(&v)?,
            None => return Err(Error::Errno(libc::ENOENT)),
        };
        inode.blocks = inode.blocks.saturating_add_signed(delta);
        meta.tree.insert(key, inode.encode())
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        // Without `shutdown` (a crash in tests, or an error path): nothing more is committed;
        // the store's committer finds it gone and ends; the scrub thread stops.
        self.scrub.stop_soon();
    }
}

#[cfg(test)]
mod copies_tests;
#[cfg(test)]
mod fileops_tests;
#[cfg(test)]
mod flags_tests;
#[cfg(test)]
mod handles_tests;
#[cfg(test)]
mod shared_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod xattr_tests;
