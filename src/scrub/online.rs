//! Online scrub: the mounted filesystem's daemon verifies every block its tree references,
//! data and metadata, every copy, on a thread of its own, while the filesystem is in use.
//!
//! # What is verified
//! Both copies of every committed tree node (against the pointer in its parent, as a load
//! verifies it: checksum and self-description) and every data block of every file (against the
//! crc its extent item holds). A directory given as the subtree limits the *data* to the files
//! under it (every file reachable from it; a file with another link outside is included); the
//! whole metadata tree is always verified, because nodes are shared by all files (one leaf
//! holds items of many), metadata is about a thousandth of the data, and a bad node copy hurts
//! every file under it.
//!
//! # How
//! The device is walked in address order, in windows of `WINDOW_BYTES`. For each window the
//! state lock is taken once to walk the in-memory tree (no device I/O: the tree was loaded and
//! verified at mount) and collect what lies in the window; then the window is read in runs of
//! consecutive blocks, at most `RUN_BYTES` (less under `--limit`, so the rate stays smooth and
//! a pause acts quickly), with no lock held, and verified. After each run the position (the
//! next device block to verify; all below it are done) and the counts are put in the tree's
//! SCRUB item (`format::scrub`), which the normal commits make durable: after a remount, or a
//! crash after a commit, a running scrub goes on from there and a paused one stays paused.
//! A read-only mount scrubs but writes nothing: no repairs, no saved position.
//!
//! # Races with commits (the invariant)
//! What was collected can change before it is read: a file rewritten or deleted frees its
//! blocks, and once the freeing commit is durable they can be reused for something else; a
//! block being written back is already in the tree before its bytes are on the device. So a
//! block that fails verification is **reported only if, re-checked under the state lock, the
//! current tree still references it with the same expected checksum (for a data block: not
//! being written back), and a second read, made while holding the read gate that keeps freed
//! blocks from being reused (`Fs::io_gate`), fails again.** Anything else is a block that
//! changed owner, and is not an error. Repairs of node copies are made under the same gate,
//! so they can only land on a block that is still that node's copy.
//!
//! # Control
//! `Scrubber` holds the scrub's state for the ioctl (`control`) and the thread. Lock order:
//! `Scrubber::inner` before the filesystem's state lock, never the other way, so a pause saved
//! by the ioctl and a position saved by the thread cannot overtake each other.

use super::control::{report_page, LastScrub, Reply, Request, ScrubStatus};
use super::report::{BadBlock, Damage, ScrubReport};
use super::{Paths, EXIT_OPERATIONAL, EXIT_UNCORRECTABLE};
use crate::device::AlignedBuf;
use crate::error::Result;
use crate::format::ROOT_INO;
use crate::format::{
    decode_dirent_bucket, BlockPtr, ExtentItem, Key, NodeIdentity, ScrubCounts, ScrubItem,
    ScrubState, KIND_DIRENT, KIND_EXTENT,
};
use crate::tree::Visit;
use crate::txn::Meta;
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the online scrub needs from the mounted filesystem it runs in, and nothing more: the
/// filesystem implements it (`fs::scrub`), so the scrub never imports the POSIX layer (it
/// sits below it). Inode numbers appear only as the owners of data blocks and in the paths
/// a report names.
pub trait Target: Send + Sync {
    /// The path of directory `ino`, for the subtree a scrub was started on.
    fn scrub_subtree_path(&self, ino: u64) -> Result<String>;
    /// The generation of the last commit.
    fn scrub_generation(&self) -> u64;
    /// Device blocks in all (where a scrub's position ends).
    fn scrub_device_blocks(&self) -> u64;
    /// Who tree nodes must say they belong to.
    fn scrub_identity(&self) -> NodeIdentity;
    /// Writes the scrub's records (running and last finished) into the tree.
    fn scrub_save(&self, current: Option<&ScrubItem>, last: Option<&ScrubItem>);
    /// The work in device blocks `[from, to)`, for the data of the files under `subtree`.
    fn scrub_collect(&self, from: u64, to: u64, subtree: u64, max_run: u64) -> Result<Collected>;
    /// Reads device blocks from `block` into `buf`, counted like any other read.
    fn scrub_read(&self, block: u64, buf: &mut AlignedBuf) -> std::io::Result<()>;
    /// Copy `copy` of data block `block` (file block `fb` of `ino`) failed against `crc`:
    /// `Some` only if the current tree still maps it so and a second read fails too.
    fn scrub_recheck_data(
        &self,
        ino: u64,
        fb: u64,
        block: u64,
        crc: u32,
        copy: u8,
    ) -> Option<BadData>;
    /// Copy `copy` of the node `ptr` names (found again by `key`, at `level`) failed: `Some`
    /// (why, whether repaired) only if it is still in the tree and a second read fails too.
    fn scrub_recheck_node(
        &self,
        key: &Key,
        level: u8,
        ptr: &BlockPtr,
        copy: u8,
    ) -> Option<(String, bool)>;
    /// Every path to each of `inos`.
    fn scrub_paths(&self, inos: &HashSet<u64>) -> HashMap<u64, Vec<String>>;
}

pub use crate::store::heal::{data_block_error, node_copy_error, BadData};

/// Largest read.
const RUN_BYTES: u64 = 4 << 20;
/// Device span collected per walk of the tree.
const WINDOW_BYTES: u64 = 4 << 30;
/// Under a rate limit, a run is at most this fraction of a second's worth.
const RUNS_PER_SECOND: u64 = 8;
/// Bad blocks kept for the report (the counts go on beyond it).
const MAX_BAD_KEPT: usize = 100_000;

/// One piece of work: blocks at consecutive device addresses with one owner.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    /// `crcs.len()` blocks of copy `copy` (1, or 2 on a `copies=2` filesystem) of one extent
    /// from device block `disk`: file blocks from `fb` of `ino`, with the crcs the extent item
    /// holds for them (one crc checks both copies). Both copies count as data blocks verified.
    Data {
        disk: u64,
        ino: u64,
        fb: u64,
        crcs: Vec<u32>,
        copy: u8,
    },
    /// Copy `copy` (1 or 2) of the tree node `ptr` names, at tree level `level`; `key` lies
    /// below the node (it finds the node again for the re-check).
    Node {
        disk: u64,
        ptr: BlockPtr,
        level: u8,
        key: Key,
        copy: u8,
    },
}

impl Piece {
    fn disk(&self) -> u64 {
        match self {
            Piece::Data { disk, .. } | Piece::Node { disk, .. } => *disk,
        }
    }

    fn blocks(&self) -> u64 {
        match self {
            Piece::Data { crcs, .. } => crcs.len() as u64,
            Piece::Node { .. } => 1,
        }
    }
}

/// What one walk of the tree found for a window of device blocks.
#[derive(Debug, Default)]
pub struct Collected {
    /// The pieces in the window, in device order.
    pub pieces: Vec<Piece>,
    /// Blocks to verify on the whole device, and those below the window.
    pub total_blocks: u64,
    pub below_blocks: u64,
    /// Subtrees that could not be walked (nodes bad in every copy).
    pub lost: Vec<String>,
}

/// Walks the tree (under the caller's state lock) and collects the pieces in device blocks
/// `[from, to)`: both copies of every committed node, and the data of the files in `files`
/// (all files if `None`), pieces cut to at most `max_run` blocks.
pub(crate) fn collect(
    meta: &mut Meta,
    from: u64,
    to: u64,
    files: Option<&HashSet<u64>>,
    max_run: u64,
) -> Result<Collected> {
    let (first, total) = (meta.sb.first_block, meta.sb.total_blocks);
    let mut out = Collected::default();
    // Nodes waiting for a key below them: the next item the walk visits (it goes depth first,
    // so that item lies in the subtree of every node visited since the last item).
    let mut pending: Vec<(BlockPtr, u8)> = Vec::new();
    let mut nodes: Vec<(BlockPtr, u8, Key)> = Vec::new();
    let mut extents: Vec<(u64, u64, ExtentItem)> = Vec::new();
    let lost = meta.tree.walk_tolerant(&mut |v| {
        match v {
            Visit::Node { ptr, level } => pending.push((ptr, level)),
            Visit::Item { key, value } => {
                nodes.extend(pending.drain(..).map(|(p, l)| (p, l, *key)));
                if key.kind == KIND_EXTENT && files.is_none_or(|f| f.contains(&key.object)) {
                    // The mount decoded every extent already; one that does not decode now
                    // is skipped (fsck's business), not a reason to stop.
                    if let Ok(e) = ExtentItem::decode(value, first, total) {
                        extents.push((key.object, key.offset, e));
                    }
                }
            }
        }
        Ok(())
    })?;
    // Only an empty root leaf has no item below it.
    nodes.extend(pending.drain(..).map(|(p, l)| (p, l, Key::MIN)));
    out.lost = lost.iter().map(|e| e.to_string()).collect();

    let mut count = |start: u64, len: u64| {
        out.total_blocks += len;
        out.below_blocks += from.saturating_sub(start).min(len);
    };
    for &(ptr, level, key) in &nodes {
        let copies = [(ptr.addr.0, 1u8)]
            .into_iter()
            .chain(ptr.copy_addr.map(|c| (c.0, 2u8)));
        for (disk, copy) in copies {
            count(disk, 1);
            if (from..to).contains(&disk) {
                out.pieces.push(Piece::Node {
                    disk,
                    ptr,
                    level,
                    key,
                    copy,
                });
            }
        }
    }
    let max_run = max_run.max(1) as usize;
    for (ino, fb0, e) in extents {
        let starts = e.starts();
        let copies = starts.iter().enumerate().map(|(k, s)| (s, k as u8 + 1));
        for (start, copy) in copies {
            count(start, e.len());
            let lo = from.max(start);
            let hi = to.min(start + e.len());
            let mut at = lo;
            while at < hi {
                let i = (at - start) as usize;
                let n = ((hi - at) as usize).min(max_run);
                out.pieces.push(Piece::Data {
                    disk: at,
                    ino,
                    fb: fb0 + i as u64,
                    crcs: e.crcs[i..i + n].to_vec(),
                    copy,
                });
                at += n as u64;
            }
        }
    }
    out.pieces.sort_by_key(Piece::disk);
    Ok(out)
}

/// The pieces of the next run from `pieces[at..]`: consecutive device blocks, `max_run` blocks
/// at most (a longer piece goes alone; `collect` cuts pieces to `max_run`).
fn next_run(pieces: &[Piece], at: usize, max_run: u64) -> std::ops::Range<usize> {
    let mut end = at + 1;
    let mut blocks = pieces[at].blocks();
    while end < pieces.len()
        && pieces[end].disk() == pieces[end - 1].disk() + pieces[end - 1].blocks()
        && blocks + pieces[end].blocks() <= max_run
    {
        blocks += pieces[end].blocks();
        end += 1;
    }
    at..end
}

/// Verifies the blocks of one piece of a data extent against the crcs its extent item holds;
/// returns the bad ones as (index in the piece, why). (A second data copy, when there is one,
/// is verified here too.)
pub(crate) fn verify_data_extent(crcs: &[u32], bytes: &[u8], bs: usize) -> Vec<(usize, String)> {
    let mut bad = Vec::new();
    for (k, &crc) in crcs.iter().enumerate() {
        if let Some(err) = data_block_error(&bytes[k * bs..(k + 1) * bs], crc) {
            bad.push((k, err));
        }
    }
    bad
}

/// Every path to each of `inos` (all hard links), from the directory entries of the tree.
pub(crate) fn paths_of(meta: &mut Meta, inos: &HashSet<u64>) -> HashMap<u64, Vec<String>> {
    let mut links: HashMap<u64, Vec<(u64, Vec<u8>)>> = HashMap::new();
    let _ = meta.tree.walk_tolerant(&mut |v| {
        if let Visit::Item { key, value } = v {
            if key.kind == KIND_DIRENT {
                if let Ok(bucket) = decode_dirent_bucket(value) {
                    for l in bucket {
                        links.entry(l.ino).or_default().push((key.object, l.name));
                    }
                }
            }
        }
        Ok(())
    });
    let paths = Paths { links: &links };
    inos.iter().map(|&i| (i, paths.of(i))).collect()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// A running or paused scrub.
struct Active {
    /// As saved in the tree (position, counts, state).
    item: ScrubItem,
    subtree_path: String,
    /// While running: when this stretch (start, resume or mount) began, and the bytes read in
    /// it (for the rate and the limit).
    stretch: Option<(Instant, u64)>,
    /// Time up to which `item.elapsed_ms` is counted.
    accounted: Instant,
    done_bytes: u64,
    total_bytes: u64,
}

impl Active {
    /// Adds the time since the last call to `elapsed_ms` (while running).
    fn account(&mut self) {
        let now = Instant::now();
        if self.stretch.is_some() {
            self.item.elapsed_ms += now.duration_since(self.accounted).as_millis() as u64;
        }
        self.accounted = now;
    }
}

struct Inner {
    current: Option<Active>,
    last: Option<ScrubItem>,
    /// The report of the current scrub, or of the last one finished during this mount.
    report: Option<(u64, ScrubReport)>,
    /// The filesystem is shutting down: the thread stops (the position is already saved).
    stop: bool,
    /// A scrub thread exists (it ends when the scrub ends or the filesystem goes away).
    thread_running: bool,
    /// The thread is working (collecting, reading, verifying) on a step of the scrub: a pause
    /// or cancel waits for the step to end, so that once it is answered no scrub I/O is in
    /// flight.
    busy: bool,
}

/// The online scrub of one mounted filesystem (owned by `Fs`).
pub struct Scrubber {
    inner: Mutex<Inner>,
    /// Wakes the thread on resume, cancel, shutdown; and a throttled thread early.
    cv: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    read_only: bool,
    block_size: u32,
}

impl Scrubber {
    /// Scrubber state from the items the tree holds (`None`: absent or undecodable, which is
    /// logged: a bad record never stops a mount, the next scrub overwrites it).
    pub fn new(
        current: Option<ScrubItem>,
        last: Option<ScrubItem>,
        subtree_path: String,
        read_only: bool,
        block_size: u32,
    ) -> Scrubber {
        let current = current.map(|mut item| {
            // A read-only mount does not go on with it by itself (it could not save its
            // position): it is shown as paused, and runs if resumed, in memory only.
            if read_only {
                item.state = ScrubState::Paused;
            }
            Active {
                stretch: (item.state == ScrubState::Running).then(|| (Instant::now(), 0)),
                item,
                subtree_path,
                accounted: Instant::now(),
                done_bytes: 0,
                total_bytes: 0,
            }
        });
        let report = current
            .as_ref()
            .map(|a| (a.item.id, ScrubReport::default()));
        Scrubber {
            inner: Mutex::new(Inner {
                current,
                last,
                report,
                stop: false,
                thread_running: false,
                busy: false,
            }),
            cv: Condvar::new(),
            thread: Mutex::new(None),
            read_only,
            block_size,
        }
    }

    /// Starts the thread if a scrub is running and none is (at mount, start, resume).
    pub fn spawn<T: Target + 'static>(self: &Arc<Self>, fs: &Arc<T>) {
        let mut inner = self.inner.lock();
        let running = inner
            .current
            .as_ref()
            .is_some_and(|a| a.item.state == ScrubState::Running);
        if !running || inner.thread_running || inner.stop {
            return;
        }
        inner.thread_running = true;
        let strong: Arc<dyn Target> = fs.clone();
        let weak = Arc::downgrade(&strong);
        drop(strong);
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("stablefs-scrub".into())
            .spawn(move || {
                run(&weak, &me);
                me.inner.lock().thread_running = false;
            });
        match spawned {
            Ok(h) => {
                // Stored before `inner` is let go, so a shutdown (which sets `stop` under
                // `inner` first) always finds the handle to join.
                let old = self.thread.lock().replace(h);
                drop(inner);
                // A previous thread has ended (thread_running was false): reap it.
                if let Some(old) = old {
                    let _ = old.join();
                }
            }
            Err(e) => {
                inner.thread_running = false;
                log::error!("cannot start the scrub thread: {e}");
            }
        }
    }

    /// Stops the thread for good (unmount): a running scrub stays "running" in the tree, at
    /// the position of its last run, and goes on at the next mount.
    pub fn shutdown(&self) {
        self.inner.lock().stop = true;
        self.cv.notify_all();
        if let Some(h) = self.thread.lock().take() {
            let _ = h.join();
        }
    }

    /// Tells the thread to stop, without waiting (the filesystem is being dropped).
    pub fn stop_soon(&self) {
        self.inner.lock().stop = true;
        self.cv.notify_all();
    }

    /// The last finished scrub, for `stablefs status`.
    pub fn last(&self) -> Option<LastScrub> {
        self.inner.lock().last.as_ref().map(last_scrub)
    }

    /// Answers one request of the control ioctl, issued on inode `ino` by user `uid`
    /// (`owner`: the user the daemon runs as).
    pub fn request<T: Target + 'static>(
        self: &Arc<Self>,
        fs: &Arc<T>,
        uid: u32,
        owner: u32,
        ino: u64,
        req: Request,
    ) -> Reply {
        if req.controls() && uid != 0 && uid != owner {
            return Reply::error(
                libc::EPERM,
                "only root or the user who mounted the filesystem may start, pause, resume or \
                 cancel a scrub",
            );
        }
        let reply = match req {
            Request::Start { limit } => self.start(fs, ino, limit),
            Request::Status => Reply::default(),
            Request::Pause => self.pause(&**fs),
            Request::Resume => self.resume(fs),
            Request::Cancel => self.cancel(&**fs),
            Request::Report { from } => {
                let inner = self.inner.lock();
                return match &inner.report {
                    Some((_, r)) => {
                        let mut r = r.clone();
                        if let Some(a) = &inner.current {
                            // Still running: the result as it stands.
                            fill_report(&mut r, &a.item);
                        }
                        report_page(&r, from)
                    }
                    None => Reply::error(libc::ENOENT, "no scrub has run during this mount"),
                };
            }
        };
        if reply.error.is_some() {
            return reply;
        }
        Reply {
            status: Some(self.status()),
            ..reply
        }
    }

    /// Where the scrub is.
    pub fn status(&self) -> ScrubStatus {
        let inner = self.inner.lock();
        let last = inner.last.as_ref().map(last_scrub);
        let Some(a) = &inner.current else {
            return ScrubStatus {
                state: "idle".into(),
                read_only: self.read_only,
                last,
                ..ScrubStatus::default()
            };
        };
        let i = &a.item;
        let rate = a.stretch.map_or(0.0, |(since, bytes)| {
            bytes as f64 / since.elapsed().as_secs_f64().max(1e-3)
        });
        let left = a.total_bytes.saturating_sub(a.done_bytes);
        ScrubStatus {
            state: i.state.name().into(),
            id: i.id,
            subtree: a.subtree_path.clone(),
            position: i.position,
            done_bytes: a.done_bytes,
            total_bytes: a.total_bytes,
            rate,
            eta_secs: (rate > 0.0).then(|| left as f64 / rate),
            limit: (i.limit > 0).then_some(i.limit),
            started: i.started,
            counts: i.counts,
            read_only: self.read_only,
            last,
        }
    }

    fn start<T: Target + 'static>(
        self: &Arc<Self>,
        fs: &Arc<T>,
        ino: u64,
        limit: Option<u64>,
    ) -> Reply {
        let subtree_path = match fs.scrub_subtree_path(ino) {
            Ok(p) => p,
            Err(e) => return Reply::error(e.errno(), format!("the subtree: {e}")),
        };
        {
            let mut inner = self.inner.lock();
            if let Some(a) = &inner.current {
                return Reply::error(
                    libc::EBUSY,
                    format!(
                        "a scrub is already {} (resume or cancel it first)",
                        a.item.state.name()
                    ),
                );
            }
            if inner.stop {
                return Reply::error(libc::ESHUTDOWN, "the filesystem is being unmounted");
            }
            let item = ScrubItem {
                state: ScrubState::Running,
                id: now_nanos(),
                position: 0,
                subtree: ino,
                limit: limit.unwrap_or(0),
                started: now_secs(),
                finished: 0,
                elapsed_ms: 0,
                counts: ScrubCounts::default(),
            };
            log::info!(
                "scrub started (subtree {subtree_path}{})",
                limit.map_or(String::new(), |l| format!(", limit {l} bytes/s"))
            );
            let mut report = ScrubReport {
                generation: fs.scrub_generation(),
                ..ScrubReport::default()
            };
            report.finish();
            inner.report = Some((item.id, report));
            fs.scrub_save(Some(&item), None);
            inner.current = Some(Active {
                item,
                subtree_path,
                stretch: Some((Instant::now(), 0)),
                accounted: Instant::now(),
                done_bytes: 0,
                total_bytes: 0,
            });
        }
        self.spawn(fs);
        Reply::default()
    }

    /// Pauses the running scrub; returns once the thread's current step (one read of at most
    /// `RUN_BYTES`, or collecting a window) has ended, so no scrub I/O goes on after it.
    fn pause(&self, fs: &dyn Target) -> Reply {
        let reply = self.pause_now(fs);
        if reply.error.is_none() {
            self.wait_step();
        }
        reply
    }

    /// Waits until the thread is between steps.
    fn wait_step(&self) {
        let mut inner = self.inner.lock();
        while inner.busy && !inner.stop {
            self.cv.wait(&mut inner);
        }
    }

    /// Pauses without waiting (the thread itself, on an error).
    fn pause_now(&self, fs: &dyn Target) -> Reply {
        let mut inner = self.inner.lock();
        match inner.current.as_mut() {
            Some(a) if a.item.state == ScrubState::Running => {
                a.account();
                a.item.state = ScrubState::Paused;
                a.stretch = None;
                fs.scrub_save(Some(&a.item), None);
                log::info!("scrub paused at device block {}", a.item.position);
                drop(inner);
                self.cv.notify_all();
                Reply::default()
            }
            Some(_) => Reply::error(libc::EALREADY, "the scrub is already paused"),
            None => Reply::error(libc::ENOENT, "no scrub is running"),
        }
    }

    fn resume<T: Target + 'static>(self: &Arc<Self>, fs: &Arc<T>) -> Reply {
        {
            let mut inner = self.inner.lock();
            match inner.current.as_mut() {
                Some(a) if a.item.state == ScrubState::Paused => {
                    a.item.state = ScrubState::Running;
                    a.stretch = Some((Instant::now(), 0));
                    a.accounted = Instant::now();
                    fs.scrub_save(Some(&a.item), None);
                    log::info!("scrub resumed at device block {}", a.item.position);
                }
                Some(_) => return Reply::error(libc::EALREADY, "the scrub is already running"),
                None => return Reply::error(libc::ENOENT, "no scrub is paused"),
            }
        }
        self.cv.notify_all();
        self.spawn(fs);
        Reply::default()
    }

    fn cancel(&self, fs: &dyn Target) -> Reply {
        let mut inner = self.inner.lock();
        if inner.current.is_none() {
            return Reply::error(libc::ENOENT, "no scrub is running or paused");
        }
        finish(&mut inner, fs, true);
        drop(inner);
        self.cv.notify_all();
        self.wait_step();
        Reply::default()
    }

    fn max_run(&self, limit: u64) -> u64 {
        let bs = u64::from(self.block_size);
        let bytes = if limit > 0 {
            RUN_BYTES.min(limit / RUNS_PER_SECOND)
        } else {
            RUN_BYTES
        };
        (bytes / bs).max(1)
    }
}

fn last_scrub(i: &ScrubItem) -> LastScrub {
    LastScrub {
        id: i.id,
        result: i.state.name().into(),
        started: i.started,
        finished: i.finished,
        finished_utc: super::control::utc(i.finished),
        elapsed_secs: i.elapsed_ms / 1000,
        subtree_ino: i.subtree,
        counts: i.counts,
    }
}

/// The report's counts and result from the item (which counts what was found before a
/// remount too); for a scrub still running, the result as it stands.
fn fill_report(r: &mut ScrubReport, i: &ScrubItem) {
    r.counts = i.counts;
    r.elapsed = Duration::from_millis(i.elapsed_ms);
    let uncorrectable = i.counts.uncorrectable + r.lost_metadata.len() as u64;
    r.finish_with(i.counts.corrected, uncorrectable);
    if i.state == ScrubState::Cancelled {
        r.result = "cancelled";
        r.exit_code = if uncorrectable > 0 {
            EXIT_UNCORRECTABLE
        } else {
            EXIT_OPERATIONAL
        };
    }
}

/// Ends the current scrub (at the end of the device, or `cancelled`): it becomes the last
/// scrub, in the tree and in `stablefs status`.
fn finish(inner: &mut Inner, fs: &dyn Target, cancelled: bool) {
    let Some(mut a) = inner.current.take() else {
        return;
    };
    a.account();
    let lost = inner
        .report
        .as_ref()
        .map_or(0, |(_, r)| r.lost_metadata.len() as u64);
    let i = &mut a.item;
    i.finished = now_secs().max(1);
    i.state = if cancelled {
        ScrubState::Cancelled
    } else if i.counts.uncorrectable + lost > 0 {
        ScrubState::Uncorrectable
    } else if i.counts.corrected > 0 {
        ScrubState::Corrected
    } else {
        ScrubState::Clean
    };
    if let Some((id, r)) = inner.report.as_mut() {
        if *id == i.id {
            fill_report(r, i);
        }
    }
    fs.scrub_save(None, Some(i));
    log::info!(
        "scrub {}: {} data blocks, {} tree nodes, {} second copies, {} bytes; corrected {}, \
         uncorrectable {}",
        i.state.name(),
        i.counts.data_blocks,
        i.counts.metadata_nodes,
        i.counts.metadata_copies,
        i.counts.bytes_read,
        i.counts.corrected,
        i.counts.uncorrectable
    );
    inner.last = Some(a.item);
}

/// The work of one window.
struct Window {
    /// The scrub it belongs to.
    id: u64,
    pieces: Vec<Piece>,
    /// Next piece to read.
    at: usize,
    /// The device blocks it covers end here.
    end: u64,
}

/// What the thread should do next.
enum Next {
    Go {
        id: u64,
        position: u64,
        limit: u64,
        subtree: u64,
    },
    Stop,
}

impl Scrubber {
    /// Waits while paused; `Stop` when the scrub ended (cancelled) or the filesystem goes away.
    /// `Go` marks the thread busy until the `Step` it comes with is dropped.
    fn next(&self) -> (Next, Step<'_>) {
        let mut inner = self.inner.lock();
        loop {
            if inner.stop {
                return (Next::Stop, Step(None));
            }
            match &inner.current {
                None => return (Next::Stop, Step(None)),
                Some(a) if a.item.state == ScrubState::Running => {
                    let next = Next::Go {
                        id: a.item.id,
                        position: a.item.position,
                        limit: a.item.limit,
                        subtree: a.item.subtree,
                    };
                    inner.busy = true;
                    return (next, Step(Some(self)));
                }
                Some(_) => {
                    self.cv.wait(&mut inner);
                }
            }
        }
    }

    /// Under `--limit`: waits until the stretch's average rate is back under the limit, or
    /// something changes (pause, cancel, shutdown: the next `next` sees it).
    fn throttle(&self, id: u64) {
        let mut inner = self.inner.lock();
        loop {
            if inner.stop {
                return;
            }
            let Some(a) = inner.current.as_ref().filter(|a| a.item.id == id) else {
                return;
            };
            let (Some((since, bytes)), limit) = (a.stretch, a.item.limit) else {
                return;
            };
            if limit == 0 {
                return;
            }
            let due = since + Duration::from_secs_f64(bytes as f64 / limit as f64);
            if Instant::now() >= due {
                return;
            }
            self.cv.wait_until(&mut inner, due);
        }
    }
}

/// One step of the scrub thread: while it lives the thread is busy (see `Inner::busy`).
struct Step<'a>(Option<&'a Scrubber>);

impl Drop for Step<'_> {
    fn drop(&mut self) {
        if let Some(sc) = self.0 {
            sc.inner.lock().busy = false;
            sc.cv.notify_all();
        }
    }
}

/// The scrub thread.
fn run(weak: &Weak<dyn Target>, sc: &Scrubber) {
    let bs = u64::from(sc.block_size);
    let mut window: Option<Window> = None;
    let mut buf = AlignedBuf::zeroed(RUN_BYTES as usize);
    loop {
        // Declared first, so dropped last: after every lock this step takes is let go.
        let (next, step) = sc.next();
        let Next::Go {
            id,
            position,
            limit,
            subtree,
        } = next
        else {
            return;
        };
        let Some(fs) = weak.upgrade() else { return };
        let max_run = sc.max_run(limit);
        // Work for the window the position is in.
        let exhausted = window
            .as_ref()
            .is_none_or(|w| w.id != id || w.at >= w.pieces.len());
        if exhausted {
            let go = (id, position, subtree);
            match collect_window(sc, &*fs, window.as_ref(), go, max_run, bs) {
                NextWindow::Finished => return,
                NextWindow::Again => {}
                NextWindow::Ready(w) => window = Some(w),
            }
            continue;
        }
        let Some(w) = window.as_mut() else { continue };
        // Pieces below the position were done before a pause or remount... of this window.
        while w.at < w.pieces.len() && w.pieces[w.at].disk() < position {
            w.at += 1;
        }
        if w.at >= w.pieces.len() {
            continue;
        }
        let range = next_run(&w.pieces, w.at, max_run);
        w.at = range.end;
        let run = &w.pieces[range];
        let outcome = scrub_run(&*fs, run, &mut buf, bs);
        let run_end = run.last().map_or(position, |p| p.disk() + p.blocks());
        if !account_run(sc, &*fs, id, run_end, outcome) {
            continue;
        }
        drop(fs);
        drop(step);
        sc.throttle(id);
    }
}

/// What collecting the next window came to (see `collect_window`).
enum NextWindow {
    /// The end of the device: the scrub is finished.
    Finished,
    /// Nothing to scrub now (collecting failed and the scrub paused, or it is no longer
    /// scrub `id`): ask `next` again.
    Again,
    Ready(Window),
}

/// Collects the work of the window after `window` (or of the one the position is in) for
/// scrub `id` at `position`, on the files under `subtree`. Everything below the window is
/// done, an empty window too: the position moves past them and is saved; metadata found lost
/// goes into the report. At the end of the device the scrub is finished; if collecting fails
/// it pauses.
fn collect_window(
    sc: &Scrubber,
    fs: &dyn Target,
    window: Option<&Window>,
    (id, position, subtree): (u64, u64, u64),
    max_run: u64,
    bs: u64,
) -> NextWindow {
    let from = window
        .filter(|w| w.id == id)
        .map_or(position, |w| w.end.max(position));
    let end = fs.scrub_device_blocks();
    if from >= end {
        let mut inner = sc.inner.lock();
        if inner.current.as_ref().is_some_and(|a| a.item.id == id) {
            finish(&mut inner, fs, false);
        }
        return NextWindow::Finished;
    }
    let to = from.saturating_add((WINDOW_BYTES / bs).max(1)).min(end);
    let collected = match fs.scrub_collect(from, to, subtree, max_run) {
        Ok(c) => c,
        Err(e) => {
            log::error!("scrub: cannot collect work: {e}; pausing the scrub");
            let _ = sc.pause_now(fs);
            return NextWindow::Again;
        }
    };
    let mut inner = sc.inner.lock();
    let Some(a) = inner.current.as_mut().filter(|a| a.item.id == id) else {
        return NextWindow::Again;
    };
    a.total_bytes = collected.total_blocks * bs;
    a.done_bytes = collected.below_blocks * bs;
    a.item.position = a.item.position.max(from);
    if collected.pieces.is_empty() {
        a.item.position = a.item.position.max(to);
    }
    let item = a.item.clone();
    if let Some((rid, r)) = inner.report.as_mut() {
        if *rid == id {
            for l in collected.lost {
                if !r.lost_metadata.contains(&l) {
                    r.lost_metadata.push(l);
                }
            }
        }
    }
    fs.scrub_save(Some(&item), None);
    NextWindow::Ready(Window {
        id,
        pieces: collected.pieces,
        at: 0,
        end: to,
    })
}

/// Adds what a run found to scrub `id`, if it is still the current scrub (false if not): the
/// position (`run_end`), the counts, the progress, the bad blocks into the report (up to
/// `MAX_BAD_KEPT`); then saves the position.
fn account_run(sc: &Scrubber, fs: &dyn Target, id: u64, run_end: u64, outcome: RunOutcome) -> bool {
    let mut inner = sc.inner.lock();
    let Some(a) = inner.current.as_mut().filter(|a| a.item.id == id) else {
        return false;
    };
    a.item.position = run_end;
    let c = &mut a.item.counts;
    c.bytes_read += outcome.bytes;
    c.data_blocks += outcome.data_blocks;
    c.metadata_nodes += outcome.first_copies;
    c.metadata_copies += outcome.second_copies;
    for b in &outcome.bad {
        if b.repaired {
            c.corrected += 1;
        } else {
            c.uncorrectable += 1;
        }
    }
    a.done_bytes += outcome.bytes;
    if let Some((_, bytes)) = a.stretch.as_mut() {
        *bytes += outcome.bytes;
    }
    a.account();
    let item = a.item.clone();
    if let Some((rid, r)) = inner.report.as_mut() {
        if *rid == id {
            let room = MAX_BAD_KEPT.saturating_sub(r.bad.len());
            r.bad.extend(outcome.bad.into_iter().take(room));
        }
    }
    fs.scrub_save(Some(&item), None);
    true
}

/// What one run found.
#[derive(Default)]
struct RunOutcome {
    bytes: u64,
    data_blocks: u64,
    first_copies: u64,
    second_copies: u64,
    bad: Vec<BadBlock>,
}

/// Reads one run (no lock held), verifies every piece, re-checks each failure (see the
/// module doc's invariant) and repairs bad node copies.
fn scrub_run(fs: &dyn Target, run: &[Piece], buf: &mut AlignedBuf, bs: u64) -> RunOutcome {
    let mut out = RunOutcome::default();
    let Some(first) = run.first() else {
        return out;
    };
    let start = first.disk();
    let blocks: u64 = run.iter().map(Piece::blocks).sum();
    let len = (blocks * bs) as usize;
    if buf.capacity() < len {
        *buf = AlignedBuf::zeroed(len);
    }
    buf.set_len(len);
    let read = fs.scrub_read(start, buf);
    out.bytes = len as u64;
    let id = fs.scrub_identity();
    let mut data_bad = Vec::new();
    for p in run {
        let off = ((p.disk() - start) * bs) as usize;
        let bytes = &buf[off..off + (p.blocks() * bs) as usize];
        match p {
            Piece::Data { .. } => {
                check_data_piece(fs, p, bytes, &read, bs, &mut out, &mut data_bad)
            }
            Piece::Node { .. } => check_node_piece(fs, &id, p, bytes, &read, &mut out),
        }
    }
    name_bad_data(fs, data_bad, bs, &mut out);
    out
}

/// A bad data block copy, confirmed, before its paths are known.
struct BadDataCopy {
    block: u64,
    ino: u64,
    fb: u64,
    /// Which copy, on a `copies=2` filesystem.
    copy: Option<u8>,
    why: String,
    repaired: bool,
}

/// Verifies the blocks of data piece `p` (its bytes, or the error of the run's read) against
/// their crcs; each that fails is re-checked against the current tree (and healed) by the
/// filesystem before it counts as bad.
fn check_data_piece(
    fs: &dyn Target,
    p: &Piece,
    bytes: &[u8],
    read: &std::io::Result<()>,
    bs: u64,
    out: &mut RunOutcome,
    data_bad: &mut Vec<BadDataCopy>,
) {
    let Piece::Data {
        disk,
        ino,
        fb,
        crcs,
        copy,
    } = p
    else {
        return;
    };
    out.data_blocks += crcs.len() as u64;
    let failed: Vec<(usize, String)> = match read {
        Ok(()) => verify_data_extent(crcs, bytes, bs as usize),
        Err(e) => (0..crcs.len())
            .map(|k| (k, format!("device read error: {e}")))
            .collect(),
    };
    for (k, _) in failed {
        let (block, fbk) = (disk + k as u64, fb + k as u64);
        if let Some(bad) = fs.scrub_recheck_data(*ino, fbk, block, crcs[k], *copy) {
            data_bad.push(BadDataCopy {
                block,
                ino: *ino,
                fb: fbk,
                copy: bad.copy,
                why: bad.why,
                repaired: bad.repaired,
            });
        }
    }
}

/// Verifies node copy piece `p` against its parent's pointer; a failure is re-checked (and
/// healed) by the filesystem before it counts as bad.
fn check_node_piece(
    fs: &dyn Target,
    id: &NodeIdentity,
    p: &Piece,
    bytes: &[u8],
    read: &std::io::Result<()>,
    out: &mut RunOutcome,
) {
    let Piece::Node {
        disk,
        ptr,
        level,
        key,
        copy,
    } = p
    else {
        return;
    };
    if *copy == 1 {
        out.first_copies += 1;
    } else {
        out.second_copies += 1;
    }
    let failed = match read {
        Ok(()) => node_copy_error(id, bytes, ptr, *level).is_some(),
        Err(_) => true,
    };
    if !failed {
        return;
    }
    if let Some((why, repaired)) = fs.scrub_recheck_node(key, *level, ptr, *copy) {
        out.bad.push(BadBlock {
            block: *disk,
            damage: Damage::Metadata {
                node: ptr.addr.0,
                level: *level,
                copy: *copy,
            },
            error: why,
            repaired,
        });
    }
}

/// Names every bad data block by the paths of its file (one walk for all of them) and adds
/// it to the run's bad blocks.
fn name_bad_data(fs: &dyn Target, data_bad: Vec<BadDataCopy>, bs: u64, out: &mut RunOutcome) {
    if data_bad.is_empty() {
        return;
    }
    let inos: HashSet<u64> = data_bad.iter().map(|b| b.ino).collect();
    let paths = fs.scrub_paths(&inos);
    for b in data_bad {
        let (ino, offset) = (b.ino, b.fb * bs);
        let paths = paths.get(&ino).cloned().unwrap_or_default();
        out.bad.push(BadBlock {
            block: b.block,
            damage: match b.copy {
                None => Damage::Data { ino, offset, paths },
                Some(copy) => Damage::DataCopy {
                    ino,
                    offset,
                    paths,
                    copy,
                },
            },
            error: b.why,
            repaired: b.repaired,
        });
    }
}

/// The subtree's files: `dir` itself and everything reachable from it (`entries` lists a
/// directory's entries as (inode, is a directory)).
pub(crate) fn subtree_files(
    dir: u64,
    mut entries: impl FnMut(u64) -> Result<Vec<(u64, bool)>>,
) -> Result<Option<HashSet<u64>>> {
    if dir == ROOT_INO {
        return Ok(None);
    }
    let mut set = HashSet::from([dir]);
    let mut todo = vec![dir];
    while let Some(d) = todo.pop() {
        for (ino, is_dir) in entries(d)? {
            if set.insert(ino) && is_dir {
                todo.push(ino);
            }
        }
    }
    Ok(Some(set))
}

#[cfg(test)]
mod tests;
