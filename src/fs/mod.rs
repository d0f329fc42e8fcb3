//! POSIX semantics over the copy-on-write trees: inodes, directories, file data, links,
//! xattrs. Every method takes `&self` and is safe to call from many threads; blocking calls
//! (reads, writes, fsync) are meant to run on the FUSE adapter's worker threads.
//!
//! Names are raw bytes (`&[u8]`): Linux names are not UTF-8.

mod blockbuf;
mod data;
mod fileops;
pub mod namespace;
mod ops;
mod scrub;
mod state;
mod types;

pub use types::*;

use crate::device::{AlignedBuf, BlockDevice, BufPool};
use crate::error::{errno, Error, Result};
use crate::format::{block_crc, Key, KIND_ORPHAN, OBJECT_FS};
use crate::txn::{write_commit, Meta};
use blockbuf::BlockBuf;
use data::{job_segments, Src};
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use state::State;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
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
        }
    }
}

/// Dirty data that starts background writeback, and the amount (dirty plus being written) at
/// which writers wait. The hard limit bounds what a commit, and so an fsync of any file, may
/// have to write first: a writer that outpaces the device waits here instead of piling up
/// data that the next fsync must push out. 32 MiB still keeps the device busy (8 writeback
/// batches); benches/fsync-latency.sh measured, against 256 MiB, fsync under a streaming
/// writer at p50 132 ms instead of 530 ms, and benches/seq.sh no loss of write throughput.
const DIRTY_SOFT_BYTES: u64 = 16 << 20;
const DIRTY_HARD_BYTES: u64 = 32 << 20;
/// Dirty data left for the commit snapshot to place (the rest is written back before it).
const ORDERED_TAIL_BYTES: u64 = 8 << 20;
/// Data placed and written per step of a commit (the lock is released in between).
const WRITEBACK_BATCH_BYTES: u64 = 4 << 20;
/// Whole blocks of one write share a chunk of at most this size: one FUSE request's worth.
const CHUNK_BYTES: usize = 1 << 20;
/// Largest device read buffer kept for reuse: one 1 MiB FUSE request, unaligned, plus a block.
const MAX_RUN_BYTES: usize = (1 << 20) + 65536;

#[derive(Default)]
struct AtomicCounters {
    checksum_errors: AtomicU64,
    device_read_errors: AtomicU64,
    device_write_errors: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    commits: AtomicU64,
    data_bad_copies: AtomicU64,
    data_repairs: AtomicU64,
}

/// A mounted filesystem.
pub struct Fs {
    dev: Arc<dyn BlockDevice>,
    bs: u32,
    read_only: bool,
    state: Mutex<State>,
    /// Writers waiting for dirty data to drain, and the committer waiting for work.
    dirty_cv: Condvar,
    /// One commit at a time.
    commit_lock: Mutex<()>,
    /// Batches of data placed in the tree whose device write has not finished yet (see
    /// `write_back_in_batches`), and its wake-up for `wait_data_written`.
    data_in_flight: Mutex<u64>,
    in_flight_cv: Condvar,
    /// Held (shared) by every read from the moment it looks up block addresses until its device
    /// reads finish; a commit takes it exclusively before it makes freed blocks reusable, so a
    /// read never sees a block that was reallocated under it.
    io_gate: RwLock<()>,
    /// Set after a failed device write or flush: nothing more is committed (the last commit on
    /// the medium stays intact) and every change fails with EIO.
    failed: AtomicBool,
    shut_down: AtomicBool,
    /// Wakes the background writer; shared with its thread, which holds no `Arc<Fs>` while it
    /// sleeps (so dropping the last `Arc<Fs>` frees the filesystem and ends the thread).
    kick: Arc<Kick>,
    committer: Mutex<Option<JoinHandle<()>>>,
    counters: AtomicCounters,
    /// The tree's own counts of bad and repaired node copies.
    tree_stats: Arc<crate::tree::TreeStats>,
    mounted_at: std::time::Instant,
    interval: Duration,
    /// See `MountOptions::idle_commit_ms`; zero: off.
    idle_commit: Duration,
    /// When the last change ended, in milliseconds since `mounted_at` (see `begin_change`).
    last_change_ms: AtomicU64,
    /// Set by a change, cleared when a commit starts: the committer has changes to commit
    /// once they have been quiet for `idle_commit`.
    changes_pending: AtomicBool,
    /// Block-sized bounce buffers, recycled once their data is on the device.
    block_pool: BufPool,
    /// Chunks holding the whole blocks of one write (see `blockbuf`), recycled the same way.
    chunk_pool: BufPool,
    /// Buffers for the device reads of one request (up to `MAX_RUN_BYTES`).
    run_pool: BufPool,
    /// The online scrub (`crate::scrub::online`).
    scrub: Arc<crate::scrub::online::Scrubber>,
}

/// A placed batch: its writes, and whether placing stopped early (ENOSPC).
type Placed = (Vec<data::WriteJob>, Result<()>);

/// The device blocks of a read plan, read in runs of consecutive addresses and verified.
struct DiskRuns {
    runs: Vec<AlignedBuf>,
    /// For each plan entry on the device: its run and byte offset in it.
    at: Vec<Option<(usize, usize)>>,
}

impl DiskRuns {
    fn block(&self, k: usize, bs: usize) -> Option<&[u8]> {
        self.at[k].map(|(r, off)| &self.runs[r][off..off + bs])
    }
}

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
        let mut state = State {
            meta,
            live: HashMap::new(),
            dirty: HashMap::new(),
            writeback: HashMap::new(),
            dirty_blocks: 0,
            unplaced: HashMap::new(),
            writeback_blocks: 0,
            reserved_blocks: 0,
            block_size: bs,
        };
        state.reserved_blocks = state.load_reserved_blocks()?;
        let scrubber = Arc::new(scrub::load_scrubber(&mut state, read_only));
        let fs = Arc::new(Fs {
            dev,
            bs,
            read_only,
            state: Mutex::new(state),
            dirty_cv: Condvar::new(),
            commit_lock: Mutex::new(()),
            data_in_flight: Mutex::new(0),
            in_flight_cv: Condvar::new(),
            io_gate: RwLock::new(()),
            failed: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
            kick: Arc::new(Kick::default()),
            committer: Mutex::new(None),
            counters: AtomicCounters::default(),
            tree_stats,
            mounted_at: std::time::Instant::now(),
            interval: Duration::from_secs(opts.commit_interval_secs.max(1)),
            idle_commit: Duration::from_millis(opts.idle_commit_ms),
            last_change_ms: AtomicU64::new(0),
            changes_pending: AtomicBool::new(false),
            // Every dirty block's buffer comes back for reuse: in steady state writes allocate
            // nothing.
            block_pool: BufPool::new(
                bs as usize,
                (DIRTY_HARD_BYTES / u64::from(bs)) as usize + 1024,
            ),
            chunk_pool: BufPool::new(
                CHUNK_BYTES,
                (DIRTY_HARD_BYTES / CHUNK_BYTES as u64) as usize + 16,
            ),
            run_pool: BufPool::new(MAX_RUN_BYTES, 16),
            scrub: scrubber,
        });
        if !read_only {
            if !orphans.is_empty() {
                let mut st = fs.state.lock();
                for ino in orphans {
                    log::info!("deleting inode {ino}, unlinked while open before the last unmount");
                    st.purge(ino)?;
                }
                drop(st);
                fs.commit()?;
            }
            let weak = Arc::downgrade(&fs);
            let kick = fs.kick.clone();
            let handle = std::thread::Builder::new()
                .name("stablefs-commit".into())
                .spawn(move || committer_loop(weak, kick))
                .map_err(Error::Io)?;
            *fs.committer.lock() = Some(handle);
            // A scrub that was running at the last commit goes on.
            fs.scrub.spawn(&fs);
        }
        Ok(fs)
    }

    /// Commits everything and stops the background committer. Later changes fail with `EROFS`.
    /// Inodes still unlinked-but-open are deleted (nothing can reach them after unmount).
    pub fn shutdown(&self) -> Result<()> {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // The scrub's position is in the tree already: the commit below makes it durable.
        self.scrub.shutdown();
        self.kick_committer();
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
        if self.read_only {
            return Ok(());
        }
        {
            let mut st = self.state.lock();
            let orphans = st.meta.tree.range(
                &Key::new(OBJECT_FS, KIND_ORPHAN, 0),
                &Key::new(OBJECT_FS, KIND_ORPHAN, u64::MAX),
                usize::MAX,
            )?;
            for (k, _) in orphans {
                st.purge(k.offset)?;
            }
        }
        self.commit()
    }

    /// The generation of the last commit.
    pub fn generation(&self) -> u64 {
        self.lock().meta.sb.generation
    }

    pub fn block_size(&self) -> u32 {
        self.bs
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn counters(&self) -> Counters {
        let c = &self.counters;
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
            read_only: self.read_only,
            failed: self.failed.load(Ordering::SeqCst),
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
        self.state.lock()
    }

    /// Fails unless changes are allowed now.
    fn writable(&self) -> Result<()> {
        if self.read_only || self.shut_down.load(Ordering::SeqCst) {
            return errno(libc::EROFS);
        }
        if self.failed.load(Ordering::SeqCst) {
            return errno(libc::EIO);
        }
        Ok(())
    }

    /// Starts a change on behalf of a caller: fails unless changes are allowed now. When the
    /// returned guard drops (the change applied or refused) the committer hears of it, and
    /// commits once changes have been quiet for `idle_commit`.
    fn begin_change(&self) -> Result<ChangeGuard<'_>> {
        self.writable()?;
        Ok(ChangeGuard(self))
    }

    fn millis_since_mount(&self) -> u64 {
        self.mounted_at.elapsed().as_millis() as u64
    }

    /// How long the committer may sleep: until the interval is up, or until changes that are
    /// pending have been quiet for `idle_commit`.
    fn committer_sleep(&self, last_commit: std::time::Instant) -> Duration {
        let interval_left = self.interval.saturating_sub(last_commit.elapsed());
        if self.idle_commit.is_zero() || !self.changes_pending.load(Ordering::SeqCst) {
            return interval_left;
        }
        let quiet = self
            .millis_since_mount()
            .saturating_sub(self.last_change_ms.load(Ordering::SeqCst));
        interval_left.min(
            self.idle_commit
                .saturating_sub(Duration::from_millis(quiet)),
        )
    }

    /// Are there pending changes, quiet for `idle_commit`?
    fn idle_commit_due(&self) -> bool {
        !self.idle_commit.is_zero()
            && self.changes_pending.load(Ordering::SeqCst)
            && self
                .millis_since_mount()
                .saturating_sub(self.last_change_ms.load(Ordering::SeqCst))
                >= self.idle_commit.as_millis() as u64
    }

    fn kick_committer(&self) {
        self.kick.wake();
    }

    /// Latches a device write failure (see `failed`).
    fn write_failed(&self, e: Error) -> Error {
        self.counters
            .device_write_errors
            .fetch_add(1, Ordering::Relaxed);
        if !self.failed.swap(true, Ordering::SeqCst) {
            log::error!(
                "device write failed: {e}; no further commits, the last commit stays intact"
            );
        }
        self.dirty_cv.notify_all();
        Error::Errno(libc::EIO)
    }

    /// Commits everything now and waits until it is durable (see `txn` for the order).
    pub fn sync(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.commit()
    }

    fn commit(&self) -> Result<()> {
        let _one = self.commit_lock.lock();
        // Before the snapshot: a change that lands after it pends again (and is committed
        // when quiet), one that landed before it is in this commit.
        self.changes_pending.store(false, Ordering::SeqCst);
        if self.failed.load(Ordering::SeqCst) {
            return errno(libc::EIO);
        }
        {
            let st = self.lock();
            if st.dirty.is_empty() && !st.meta.tree.is_dirty() {
                return Ok(());
            }
        }
        // 1. Place dirty data, map it in the tree, and write it without holding the lock, in
        //    batches so writers go on.
        let mut placed = self.write_back(ORDERED_TAIL_BYTES);
        if matches!(placed, Err(Error::Errno(libc::EIO))) {
            return placed;
        }
        // 2. Snapshot the metadata. What was written meanwhile (a little) is placed first, so
        //    every file size in the snapshot has its data on the device before the superblock
        //    (ordered data, as ext4's default): a crash never shows zeros where data was written
        //    before the commit. The lock is held for the placing and the snapshot only; the data
        //    is written after it (readers find it in `writeback` meanwhile).
        let (tail, plan) = {
            let mut st = self.lock();
            let generation = st.meta.sb.generation + 1;
            let (jobs, r) = st.prepare_writeback(generation, u64::MAX);
            if let Err(e) = r {
                placed = Err(e);
            }
            (jobs, st.meta.prepare_commit(Timespec::now().sec))
        };
        self.write_jobs(&tail)?;
        self.lock().finish_writeback(&tail);
        self.recycle(tail);
        self.wait_data_written();
        if self.failed.load(Ordering::SeqCst) {
            return errno(libc::EIO);
        }
        let mut plan = match plan {
            Ok(p) => p,
            // No room for the tree's new blocks: nothing was changed; the caller hears ENOSPC
            // and the filesystem stays usable (deletes make room).
            Err(Error::Errno(libc::ENOSPC)) => return errno(libc::ENOSPC),
            Err(e) => return Err(self.write_failed(e)),
        };
        self.dirty_cv.notify_all();
        // 3. Nodes, flush, superblock, flush.
        if let Err(e) = write_commit(&*self.dev, &mut plan) {
            return Err(self.write_failed(e));
        }
        // 4. Durable: the transaction's frees become reusable once no read can still use them.
        {
            let mut st = self.lock();
            let _no_reads = self.io_gate.write();
            st.meta.commit_done(plan.sb);
        }
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        // Data that found no space is still dirty: not durable, so the caller hears about it.
        placed
    }

    /// Writes dirty data back (without committing) until at most `keep` bytes stay dirty, so
    /// a commit only has a little left to write. At most about what was dirty when it started,
    /// so it always ends. Call with `commit_lock` held (placing data concurrently with a
    /// commit's snapshot would split a generation).
    fn write_back(&self, keep: u64) -> Result<()> {
        self.write_back_in_batches(|max| self.place_batch(keep, max))
    }

    /// Runs `place(max)` (see `place_batch`) until it reports nothing left to do, or about as
    /// many blocks as were dirty at the start have been placed, and writes what it placed.
    ///
    /// The writes run on a second thread while this one places the next batch: placing (tree
    /// and map bookkeeping, per block) and writing then overlap instead of taking turns, and
    /// the device never waits for the bookkeeping. At most one batch is being written and one
    /// waits for the writer, so the memory in flight stays bounded. Every batch is written (or
    /// the filesystem has failed) when this returns.
    fn write_back_in_batches(
        &self,
        mut place: impl FnMut(u64) -> Result<Option<Placed>>,
    ) -> Result<()> {
        let step = WRITEBACK_BATCH_BYTES / u64::from(self.bs);
        let mut budget = self.lock().dirty_blocks + step;
        std::thread::scope(|scope| {
            let (to_writer, batches) = std::sync::mpsc::sync_channel::<Vec<data::WriteJob>>(1);
            let writer = std::thread::Builder::new()
                .name("stablefs-write".into())
                .spawn_scoped(scope, move || {
                    for jobs in batches {
                        self.write_placed(jobs);
                    }
                })
                .map_err(Error::Io)?;
            let mut result = Ok(());
            while budget > 0 {
                if self.failed.load(Ordering::SeqCst) {
                    result = errno(libc::EIO);
                    break;
                }
                let (jobs, placed) = match place(step.min(budget)) {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                };
                let blocks: u64 = jobs.iter().map(|j| j.blocks.len() as u64).sum();
                budget = budget.saturating_sub(blocks.max(1));
                if let Err(unsent) = to_writer.send(jobs) {
                    // The writer is gone only if it panicked (`join` below reports it); the
                    // batch is still written, so it leaves the count in flight.
                    self.write_placed(unsent.0);
                    break;
                }
                if let Err(e) = placed {
                    result = Err(e);
                    break;
                }
            }
            drop(to_writer);
            if writer.join().is_err() {
                return Err(self.write_failed(Error::Corrupt("the data writer panicked".into())));
            }
            if self.failed.load(Ordering::SeqCst) {
                return errno(libc::EIO);
            }
            result
        })
    }

    /// One step of writeback: places up to `max` dirty blocks (mapping them in the tree and
    /// moving them to `writeback`) and counts them in flight. `None` when at most `keep` bytes
    /// are dirty (nothing to do). The jobs must then go to `write_placed`, even when placing
    /// stopped early with an error (the tree already points at their blocks). Call with
    /// `commit_lock` held.
    fn place_batch(&self, keep: u64, max: u64) -> Result<Option<Placed>> {
        let mut st = self.lock();
        if st.dirty_blocks * u64::from(self.bs) <= keep {
            return Ok(None);
        }
        let generation = st.meta.sb.generation + 1;
        let placed = st.prepare_writeback(generation, max);
        *self.data_in_flight.lock() += 1;
        Ok(Some(placed))
    }

    /// Writes a placed batch, lets readers find it on the device, returns its buffers to the
    /// pool, and ends its count in flight. After a failed write the batch stays in
    /// `writeback` (readers are served from memory; nothing more is committed).
    fn write_placed(&self, jobs: Vec<data::WriteJob>) {
        /// Ends the batch's count in flight however the write ends (a panic included), so a
        /// commit waiting in `wait_data_written` never waits forever.
        struct Done<'a>(&'a Fs);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                let mut n = self.0.data_in_flight.lock();
                *n -= 1;
                if *n == 0 {
                    self.0.in_flight_cv.notify_all();
                }
            }
        }
        let _done = Done(self);
        if !self.failed.load(Ordering::SeqCst) && self.write_jobs(&jobs).is_ok() {
            self.lock().finish_writeback(&jobs);
            self.dirty_cv.notify_all();
            self.recycle(jobs);
        }
    }

    /// Waits until no placed batch is still being written. A commit calls it before it writes
    /// the superblock: a batch placed by background writeback before the commit took the
    /// commit lock is in the commit's tree, so its data must be on the device first.
    fn wait_data_written(&self) {
        let mut n = self.data_in_flight.lock();
        while *n > 0 {
            self.in_flight_cv.wait(&mut n);
        }
    }

    /// Background data writeback whenever writers pass the soft limit, so buffers return to
    /// the pool while still warm in the cache and commits only write what is left. The commit
    /// lock is taken per batch and handed over fairly after each, so an fsync waits for at
    /// most one batch of someone else's data before its own commit starts.
    fn write_back_data(&self) -> Result<()> {
        self.write_back_in_batches(|max| {
            let one = self.commit_lock.lock();
            if self.failed.load(Ordering::SeqCst) {
                return errno(libc::EIO);
            }
            let step = self.place_batch(DIRTY_SOFT_BYTES / 2, max);
            MutexGuard::unlock_fair(one);
            step
        })
    }

    /// Returns the bounce buffers of written jobs to the pools (those no reader holds).
    fn recycle(&self, jobs: Vec<data::WriteJob>) {
        self.recycle_blocks(
            jobs.into_iter()
                .flat_map(|j| j.blocks)
                .filter_map(|(_, d)| Arc::try_unwrap(d).ok())
                .map(|d| d.buf),
        );
    }

    /// Returns dirty blocks' memory to the pools.
    fn recycle_blocks(&self, blocks: impl IntoIterator<Item = BlockBuf>) {
        let (mut own, mut chunks) = (Vec::new(), Vec::new());
        for b in blocks {
            b.recycle(&mut own, &mut chunks);
        }
        self.block_pool.put_many(own);
        self.chunk_pool.put_many(chunks);
    }

    /// Writes placed data blocks (one vectored write per contiguous job, and with
    /// `copies=2` a second one of the same stable buffers to the copy: one crc per block
    /// checks both).
    fn write_jobs(&self, jobs: &[data::WriteJob]) -> Result<()> {
        for job in jobs {
            let segments = job_segments(job);
            let bytes = job.blocks.len() as u64 * u64::from(self.bs);
            for start in std::iter::once(job.disk_start).chain(job.copy_start) {
                if let Err(e) = self.dev.write_slices(start * u64::from(self.bs), &segments) {
                    return Err(self.write_failed(e.into()));
                }
                self.counters
                    .bytes_written
                    .fetch_add(bytes, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Makes a writer wait while too much data is waiting to be written.
    fn throttle(&self) -> Result<()> {
        let hard = DIRTY_HARD_BYTES / u64::from(self.bs);
        let mut st = self.lock();
        while st.dirty_blocks + st.writeback_blocks > hard {
            self.writable()?;
            drop(st);
            self.kick_committer();
            st = self.lock();
            self.dirty_cv.wait_for(&mut st, Duration::from_millis(50));
        }
        Ok(())
    }

    /// Reads the `Src::Disk` blocks of `plan` (consecutive addresses in one I/O) and verifies
    /// each against its crc. A block whose first copy fails (crc or device error) is served
    /// from its second copy (`copies=2`) and its first copy rewritten (`second_copy`).
    /// Called without the state lock, with `io_gate` held (shared) since `plan` was made under
    /// the state lock: the repair write relies on that (see `repair_data_copy`).
    fn read_verified(&self, ino: Ino, first_fb: u64, plan: &[Src]) -> Result<DiskRuns> {
        let bs = self.bs as usize;
        let mut out = DiskRuns {
            runs: Vec::new(),
            at: vec![None; plan.len()],
        };
        let mut i = 0;
        while i < plan.len() {
            let Src::Disk { addr, .. } = plan[i] else {
                i += 1;
                continue;
            };
            let mut j = i + 1;
            while j < plan.len()
                && matches!(plan[j], Src::Disk { addr: a, .. } if a == addr + (j - i) as u64)
            {
                j += 1;
            }
            let len = (j - i) * bs;
            let mut buf = if len <= MAX_RUN_BYTES {
                self.run_pool.take()
            } else {
                AlignedBuf::zeroed(len)
            };
            buf.set_len(len);
            let run_read = self.dev.read_at(addr * bs as u64, &mut buf);
            if let Err(e) = &run_read {
                self.counters
                    .device_read_errors
                    .fetch_add(1, Ordering::Relaxed);
                let has_copies = plan[i..j]
                    .iter()
                    .all(|p| matches!(p, Src::Disk { copy: Some(_), .. }));
                if !has_copies {
                    log::error!("device read error at block {addr} (inode {ino}): {e}");
                    self.run_pool.put(buf);
                    return errno(libc::EIO);
                }
                log::warn!(
                    "device read error at blocks {addr}..{} (inode {ino}): {e}; trying each block and its second copy",
                    addr + (j - i) as u64
                );
            } else {
                self.counters
                    .bytes_read
                    .fetch_add(len as u64, Ordering::Relaxed);
            }
            for k in i..j {
                let Src::Disk { addr: a, copy, crc } = plan[k] else {
                    unreachable!("run of disk blocks")
                };
                let offset = (first_fb + k as u64) * bs as u64;
                let bytes = &mut buf[(k - i) * bs..(k - i + 1) * bs];
                let bad = match &run_read {
                    Ok(()) => Some(block_crc(bytes))
                        .filter(|&got| got != crc)
                        .map(|got| format!("crc {got:#010x}, expected {crc:#010x}")),
                    // The run failed as a whole: this block alone may still read.
                    Err(_) => self.read_one(a, crc, bytes).err(),
                };
                if let Some(why) = bad {
                    let served = match copy {
                        Some(c) => self.second_copy(ino, offset, a, c, crc, &why, bytes),
                        None => {
                            self.counters
                                .checksum_errors
                                .fetch_add(1, Ordering::Relaxed);
                            log::error!(
                                "checksum error: inode {ino} file offset {offset} device block {a}: {why}; returning EIO"
                            );
                            Err(Error::Errno(libc::EIO))
                        }
                    };
                    if let Err(e) = served {
                        self.run_pool.put(buf);
                        return Err(e);
                    }
                }
                out.at[k] = Some((out.runs.len(), (k - i) * bs));
            }
            out.runs.push(buf);
            i = j;
        }
        Ok(out)
    }

    /// Reads device block `addr` alone into `out` and verifies it against `crc`; the error
    /// says why it is bad.
    fn read_one(&self, addr: u64, crc: u32, out: &mut [u8]) -> std::result::Result<(), String> {
        let mut b = self.block_pool.take();
        let r = match self.dev.read_at(addr * u64::from(self.bs), &mut b) {
            Err(e) => {
                self.counters
                    .device_read_errors
                    .fetch_add(1, Ordering::Relaxed);
                Err(format!("device read error: {e}"))
            }
            Ok(()) => {
                self.counters
                    .bytes_read
                    .fetch_add(u64::from(self.bs), Ordering::Relaxed);
                let got = block_crc(&b);
                out.copy_from_slice(&b);
                if got == crc {
                    Ok(())
                } else {
                    Err(format!("crc {got:#010x}, expected {crc:#010x}"))
                }
            }
        };
        self.block_pool.put(b);
        r
    }

    /// The first copy of data block `addr` (inode `ino`, file offset `offset`) is bad (`why`):
    /// reads its second copy at `copy` into `out`. If that verifies, the read is served and
    /// the first copy rewritten from it; if not, both copies are bad: `EIO`, logged once.
    #[allow(clippy::too_many_arguments)]
    fn second_copy(
        &self,
        ino: Ino,
        offset: u64,
        addr: u64,
        copy: u64,
        crc: u32,
        why: &str,
        out: &mut [u8],
    ) -> Result<()> {
        self.counters
            .data_bad_copies
            .fetch_add(1, Ordering::Relaxed);
        if let Err(why2) = self.read_one(copy, crc, out) {
            self.counters
                .data_bad_copies
                .fetch_add(1, Ordering::Relaxed);
            self.counters
                .checksum_errors
                .fetch_add(1, Ordering::Relaxed);
            log::error!(
                "checksum error: inode {ino} file offset {offset}: both copies are bad (device block {addr}: {why}; copy at {copy}: {why2}); returning EIO"
            );
            return errno(libc::EIO);
        }
        log::warn!(
            "inode {ino} file offset {offset}: device block {addr} is bad ({why}); served from its second copy at {copy}"
        );
        self.repair_data_copy(ino, addr, out);
        Ok(())
    }

    /// Rewrites the bad copy at `addr` (the first, from a read; either, from the online scrub)
    /// with `good`, bytes just read from the other copy and verified against the crc the
    /// extent holds: an in-place rewrite of the same content, the one exception to
    /// copy-on-write (as btrfs repairs), never on a read-only mount. Says whether it was
    /// rewritten.
    ///
    /// Why this cannot land on a block that holds anything else by now: the caller holds
    /// `io_gate` shared, taken under the state lock together with the plan that mapped this
    /// file block to `addr`. Since then the extent may have been punched or rewritten and
    /// `addr` freed, but freed blocks become allocatable only in `commit_done`, which takes
    /// `io_gate` exclusively; so until this write returns, `addr` is either still mapped by
    /// that extent with that crc, or freed and not yet reusable (no one else writes it, and a
    /// commit that still references it expects exactly these bytes). The write is synchronous
    /// and finishes before the caller drops the gate.
    fn repair_data_copy(&self, ino: Ino, addr: u64, good: &[u8]) -> bool {
        if self.read_only || self.failed.load(Ordering::SeqCst) {
            log::warn!("data block {addr} (inode {ino}): not rewritten (read-only)");
            return false;
        }
        let mut b = self.block_pool.take();
        b.copy_from_slice(good);
        let done = match self.dev.write_at(addr * u64::from(self.bs), &[&b]) {
            Ok(()) => {
                self.counters.data_repairs.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_written
                    .fetch_add(u64::from(self.bs), Ordering::Relaxed);
                log::warn!("data block {addr} (inode {ino}): rewritten from its other copy");
                true
            }
            // Nothing is lost (the second copy is good): not a reason to stop committing.
            Err(e) => {
                self.counters
                    .device_write_errors
                    .fetch_add(1, Ordering::Relaxed);
                log::error!("data block {addr} (inode {ino}): could not rewrite it: {e}");
                false
            }
        };
        self.block_pool.put(b);
        done
    }

    fn release_runs(&self, runs: DiskRuns) {
        for b in runs.runs {
            self.run_pool.put(b);
        }
    }
}

/// A change in progress (see `Fs::begin_change`); dropping it tells the committer.
struct ChangeGuard<'a>(&'a Fs);

impl Drop for ChangeGuard<'_> {
    fn drop(&mut self) {
        let fs = self.0;
        fs.last_change_ms
            .store(fs.millis_since_mount(), Ordering::SeqCst);
        // The first change since the last commit wakes the committer to plan an idle commit.
        if !fs.idle_commit.is_zero() && !fs.changes_pending.swap(true, Ordering::SeqCst) {
            fs.kick_committer();
        }
    }
}

/// The background writer: commits every `interval`, and when changes have been quiet for
/// `idle_commit`; in between writes dirty data back whenever writers pass the soft limit.
fn committer_loop(weak: Weak<Fs>, kick: Arc<Kick>) {
    let mut last_commit = std::time::Instant::now();
    loop {
        // No `Arc<Fs>` is held while sleeping (see `Fs::kick`).
        let Some(sleep) = weak.upgrade().map(|fs| fs.committer_sleep(last_commit)) else {
            return;
        };
        kick.wait(sleep);
        let Some(fs) = weak.upgrade() else { return };
        if fs.shut_down.load(Ordering::SeqCst) {
            return;
        }
        let r = if last_commit.elapsed() >= fs.interval || fs.idle_commit_due() {
            last_commit = std::time::Instant::now();
            fs.commit()
        } else {
            fs.write_back_data()
        };
        if let Err(e) = r {
            if !matches!(e, Error::Errno(libc::EIO)) {
                log::warn!("background commit: {e}");
            }
            if fs.failed.load(Ordering::SeqCst) {
                return;
            }
        }
    }
}

/// A wake-up flag for the background writer.
#[derive(Default)]
struct Kick {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Kick {
    fn wake(&self) {
        *self.flag.lock() = true;
        self.cv.notify_all();
    }

    /// Sleeps until woken or `timeout` passes.
    fn wait(&self, timeout: Duration) {
        let mut flag = self.flag.lock();
        if !*flag {
            self.cv.wait_for(&mut flag, timeout);
        }
        *flag = false;
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        // Without `shutdown` (a crash in tests, or an error path): nothing more is committed;
        // the background writer finds the filesystem gone and ends.
        self.shut_down.store(true, Ordering::SeqCst);
        self.kick.wake();
        self.scrub.stop_soon();
    }
}

/// Soft limit check for writers (start a commit early).
fn over_soft(st: &State, bs: u32) -> bool {
    st.dirty_blocks * u64::from(bs) > DIRTY_SOFT_BYTES
}

#[cfg(test)]
mod copies_tests;
#[cfg(test)]
mod fileops_tests;
#[cfg(test)]
mod tests;
