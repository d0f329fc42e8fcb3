//! The block engine for file data, below the POSIX layer: where every block and its copies
//! go (`extents`), the bounce-buffer write path that copies and checksums in one pass
//! (`blockbuf`, `write`), dirty-data accounting, writeback and the committer with its
//! data-before-metadata order (here), verified reads and the repair of a bad copy (`read`),
//! and the space `fallocate` promised (`unwritten`). It speaks of objects (a file's data
//! stream, named by the layer above: the filesystem uses inode numbers), blocks, extents and
//! copies; never of names or permissions.
//!
//! One lock (`Store::lock`) guards the metadata, the dirty data and the layer above's own
//! state (`State::ext`), so a POSIX operation and the data it writes change together.

mod blockbuf;
mod extents;
pub mod heal;
mod read;
mod state;
mod unwritten;
mod write;

pub use extents::Src;
pub use read::DiskRuns;
pub use state::{DirtyBlock, State};
pub use write::Reserve;

use crate::device::{BlockDevice, BufPool};
use crate::error::{errno, Error, Result};
use crate::format::Timespec;
use crate::txn::{write_commit, Meta};
use blockbuf::BlockBuf;
use extents::job_segments;
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The data of one file, as the layer above names it (the filesystem: its inode number).
pub type ObjId = u64;

/// What the layer above keeps in step with the store, in the same transaction.
pub trait Owner: Send + 'static {
    /// A commit mapped (`delta` > 0) or replaced blocks of `obj`: the owner's count of the
    /// object's blocks (the inode's `blocks`) changes by `delta`.
    fn blocks_mapped(meta: &mut Meta, obj: ObjId, delta: i64) -> Result<()>;
}

/// How the store runs (see `fs::MountOptions`, which says what each means to a user).
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub read_only: bool,
    pub commit_interval: Duration,
    /// Zero: off.
    pub idle_commit: Duration,
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

/// What the store counts since the mount.
#[derive(Default)]
pub struct AtomicCounters {
    pub checksum_errors: AtomicU64,
    pub device_read_errors: AtomicU64,
    pub device_write_errors: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub commits: AtomicU64,
    pub data_bad_copies: AtomicU64,
    pub data_repairs: AtomicU64,
}

/// The block store of one mounted filesystem.
pub struct Store<E> {
    dev: Arc<dyn BlockDevice>,
    bs: u32,
    read_only: bool,
    state: Mutex<State<E>>,
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
    /// Remounted read-only: changes fail with EROFS (see `set_frozen`).
    frozen: AtomicBool,
    /// Wakes the background writer; shared with its thread, which holds no `Arc<Store>` while
    /// it sleeps (so dropping the last `Arc<Store>` frees it and ends the thread).
    kick: Arc<Kick>,
    committer: Mutex<Option<JoinHandle<()>>>,
    pub counters: AtomicCounters,
    opened_at: Instant,
    interval: Duration,
    /// See `fs::MountOptions::idle_commit_ms`; zero: off.
    idle_commit: Duration,
    /// When the last change ended, in milliseconds since `opened_at` (see `begin_change`).
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
}

/// How `Store::go_down` stops (the flags of XFS's `XFS_IOC_GOINGDOWN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoingDown {
    /// `XFS_FSOP_GOING_FLAGS_DEFAULT`: commit everything, then stop.
    Flush,
    /// `XFS_FSOP_GOING_FLAGS_LOGFLUSH`: stop after the log. stablefs has no intent log: what
    /// `fsync` made durable is in a commit already, so this commits nothing new; an fsync's
    /// commit that is under way finishes first.
    LogFlush,
    /// `XFS_FSOP_GOING_FLAGS_NOLOGFLUSH`: stop now; a commit under way is abandoned before
    /// its superblock.
    NoLogFlush,
}

/// A placed batch: its writes, and whether placing stopped early (ENOSPC).
type Placed = (Vec<extents::WriteJob>, Result<()>);

impl<E: Owner> Store<E> {
    /// A store over `meta` (opened and verified by the caller), with `ext` as the layer
    /// above's state. The committer is not running yet: see `start_committer`.
    pub fn open(
        dev: Arc<dyn BlockDevice>,
        meta: Meta,
        ext: E,
        opts: &StoreOptions,
    ) -> Result<Arc<Store<E>>> {
        let bs = meta.sb.block_size;
        let mut state = State::new(meta, ext);
        state.reserved_blocks = state.load_reserved_blocks()?;
        Ok(Arc::new(Store {
            dev,
            bs,
            read_only: opts.read_only,
            state: Mutex::new(state),
            dirty_cv: Condvar::new(),
            commit_lock: Mutex::new(()),
            data_in_flight: Mutex::new(0),
            in_flight_cv: Condvar::new(),
            io_gate: RwLock::new(()),
            failed: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            kick: Arc::new(Kick::default()),
            committer: Mutex::new(None),
            counters: AtomicCounters::default(),
            opened_at: Instant::now(),
            interval: opts.commit_interval.max(Duration::from_secs(1)),
            idle_commit: opts.idle_commit,
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
        }))
    }

    /// Starts the background committer (a read-only store has none).
    pub fn start_committer(self: &Arc<Self>) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let weak = Arc::downgrade(self);
        let kick = self.kick.clone();
        let handle = std::thread::Builder::new()
            .name("stablefs-commit".into())
            .spawn(move || committer_loop(weak, kick))
            .map_err(Error::Io)?;
        *self.committer.lock() = Some(handle);
        Ok(())
    }

    /// Stops accepting changes and the background committer (the caller then makes the last
    /// commit). False if it was stopped already.
    pub fn stop(&self) -> bool {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.kick_committer();
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
        true
    }

    /// The generation of the last commit.
    pub fn generation(&self) -> u64 {
        self.lock().meta.sb.generation
    }

    /// Has a device write or flush failed (nothing more is committed)?
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Stops all writing to the device for good, as XFS's `XFS_IOC_GOINGDOWN` does, `how`
    /// the caller asks (see [`GoingDown`]). Afterwards every change and every commit fails
    /// with EIO (`has_failed`), the committer has ended, and no write of this store is in
    /// flight: nothing more reaches the device. The medium keeps the last commit. Returns the
    /// outcome of the commit `GoingDown::Flush` asks for (the store goes down either way).
    pub fn go_down(&self, how: GoingDown) -> Result<()> {
        let flushed = match how {
            GoingDown::Flush if !self.read_only => self.commit(),
            _ => Ok(()),
        };
        if how == GoingDown::NoLogFlush {
            // A commit in progress stops before its superblock (it checks `failed` after its
            // data is written) and its caller hears EIO.
            self.failed.store(true, Ordering::SeqCst);
        }
        {
            // Waits for a commit in progress (an fsync's, which LogFlush lets finish), then
            // for background data writes already on their way to the device.
            let _one = self.commit_lock.lock();
            self.failed.store(true, Ordering::SeqCst);
        }
        self.wait_data_written();
        self.dirty_cv.notify_all();
        self.lock().meta.tree.set_heal(false);
        self.stop();
        log::warn!(
            "shut down ({how:?}): nothing more is written; the device keeps commit {}",
            self.generation()
        );
        flushed
    }

    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::SeqCst)
    }

    /// Taken shared while block addresses looked up under the lock are read (see `io_gate`).
    pub fn read_gate(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.io_gate.read()
    }

    pub fn lock(&self) -> MutexGuard<'_, State<E>> {
        self.state.lock()
    }

    /// A read-only remount (`true`) refuses every later change with EROFS, until a remount
    /// back (`false`). What changed before stays to be committed (the caller commits).
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Fails unless changes are allowed now.
    pub fn writable(&self) -> Result<()> {
        // Failed (or gone down, see `go_down`) before stopped: EIO, as a shut-down ext4.
        if self.failed.load(Ordering::SeqCst) {
            return errno(libc::EIO);
        }
        // Read-only: from the mount, or for now (`set_frozen`, a remount read-only).
        if self.read_only
            || self.shut_down.load(Ordering::SeqCst)
            || self.frozen.load(Ordering::SeqCst)
        {
            return errno(libc::EROFS);
        }
        Ok(())
    }

    /// Starts a change on behalf of a caller: fails unless changes are allowed now. When the
    /// returned guard drops (the change applied or refused) the committer hears of it, and
    /// commits once changes have been quiet for `idle_commit`.
    pub fn begin_change(&self) -> Result<ChangeGuard<'_, E>> {
        self.writable()?;
        Ok(ChangeGuard(self))
    }

    fn millis_since_open(&self) -> u64 {
        self.opened_at.elapsed().as_millis() as u64
    }

    /// How long the committer may sleep: until the interval is up, or until changes that are
    /// pending have been quiet for `idle_commit`.
    fn committer_sleep(&self, last_commit: std::time::Instant) -> Duration {
        let interval_left = self.interval.saturating_sub(last_commit.elapsed());
        if self.idle_commit.is_zero() || !self.changes_pending.load(Ordering::SeqCst) {
            return interval_left;
        }
        let quiet = self
            .millis_since_open()
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
                .millis_since_open()
                .saturating_sub(self.last_change_ms.load(Ordering::SeqCst))
                >= self.idle_commit.as_millis() as u64
    }

    pub fn kick_committer(&self) {
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

    /// Commits now, even once stopped (the last commit of an unmount).
    pub fn commit(&self) -> Result<()> {
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
            let (to_writer, batches) = std::sync::mpsc::sync_channel::<Vec<extents::WriteJob>>(1);
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
    fn write_placed(&self, jobs: Vec<extents::WriteJob>) {
        /// Ends the batch's count in flight however the write ends (a panic included), so a
        /// commit waiting in `wait_data_written` never waits forever.
        struct Done<'a, E: Owner>(&'a Store<E>);
        impl<E: Owner> Drop for Done<'_, E> {
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
    fn recycle(&self, jobs: Vec<extents::WriteJob>) {
        self.recycle_blocks(
            jobs.into_iter()
                .flat_map(|j| j.blocks)
                .filter_map(|(_, d)| Arc::try_unwrap(d).ok())
                .map(|d| d.buf),
        );
    }

    /// Returns dirty blocks' memory to the pools.
    pub fn recycle_blocks(&self, blocks: impl IntoIterator<Item = BlockBuf>) {
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
    fn write_jobs(&self, jobs: &[extents::WriteJob]) -> Result<()> {
        for job in jobs {
            let segments = job_segments(job);
            let bytes = job.blocks.len() as u64 * u64::from(self.bs);
            for start in job.starts.iter() {
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
}

/// A change in progress (see `Store::begin_change`); dropping it tells the committer.
pub struct ChangeGuard<'a, E: Owner>(&'a Store<E>);

impl<E: Owner> Drop for ChangeGuard<'_, E> {
    fn drop(&mut self) {
        let fs = self.0;
        fs.last_change_ms
            .store(fs.millis_since_open(), Ordering::SeqCst);
        // The first change since the last commit wakes the committer to plan an idle commit.
        if !fs.idle_commit.is_zero() && !fs.changes_pending.swap(true, Ordering::SeqCst) {
            fs.kick_committer();
        }
    }
}

/// The background writer: commits every `interval`, and when changes have been quiet for
/// `idle_commit`; in between writes dirty data back whenever writers pass the soft limit.
fn committer_loop<E: Owner>(weak: Weak<Store<E>>, kick: Arc<Kick>) {
    let mut last_commit = std::time::Instant::now();
    loop {
        // No `Arc<Store>` is held while sleeping (see `Store::kick`).
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

impl<E> Drop for Store<E> {
    fn drop(&mut self) {
        // Without `shutdown` (a crash in tests, or an error path): nothing more is committed;
        // the background writer finds the filesystem gone and ends.
        self.shut_down.store(true, Ordering::SeqCst);
        self.kick.wake();
    }
}

/// Soft limit check for writers (start a commit early).
fn over_soft<E>(st: &State<E>, bs: u32) -> bool {
    st.dirty_blocks * u64::from(bs) > DIRTY_SOFT_BYTES
}
