//! The stable-pages rule (issue 3, point 5; the reason stablefs exists): a checksum computed
//! over bytes that someone can still change is worthless, so stablefs checksums only its own
//! private copy. These tests change the bytes on purpose while they are being written, and
//! then require that nothing ever fails its checksum.
//!
//! - `pwrite` and `O_DIRECT` `pwrite`: a writer calls `pwrite(2)` from a buffer that two other
//!   threads keep rewriting during the call, thousands of times, while a third thread runs
//!   `fsync` so that commits write data back meanwhile.
//! - `mmap`: another process keeps storing into a `MAP_SHARED` mapping of a file while this one
//!   runs `fsync`, `fdatasync` and `sync_file_range`, so writeback reads pages that are changing.
//!
//! What is checked, precisely. The buffer (or mapping) mirrors the file: 8-byte word `i` of it
//! always holds `tag(v, i)` = magic `"ST"` (16 bits), word index `i` (16 bits), version `v`
//! (32 bits), and the scribblers only ever store whole tags with a fresh version. Since
//! `write(2)` promises no atomicity against a buffer changed during the call, a block may come
//! back as a mix of versions (counted, allowed). What must hold, both through the page cache
//! and after a remount (read from the device):
//! - no read fails (`EIO` would be a false checksum error) and the daemon log has no
//!   "checksum error";
//! - every word of the file is a tag that was actually stored at that word: right magic, right
//!   word index (data landed where it was written), version between 1 and the last one issued;
//! - the file after the remount equals the file before it (the last version reached the
//!   device).

mod common;

use common::TestFs;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const BLOCK: usize = 4096;
const WORDS_PER_BLOCK: usize = BLOCK / 8;
/// The file (and the buffer that mirrors it): 64 blocks, 32768 words (the index fits 16 bits).
const FILE_BYTES: usize = 256 << 10;
const BLOCKS: usize = FILE_BYTES / BLOCK;
const MAGIC: u64 = 0x5354;
/// `pwrite` calls per test: together well over the 10,000 the issue asks for.
const PLAIN_WRITES: u64 = 30_000;
const DIRECT_WRITES: u64 = 10_000;
/// Largest single write.
const MAX_WRITE: usize = 64 << 10;
/// fsync-family calls while another process scribbles on the mapping.
const MMAP_SYNCS: u64 = 3000;

fn tag(version: u32, word: usize) -> u64 {
    (MAGIC << 48) | ((word as u64) << 32) | u64::from(version)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What a file's words say.
#[derive(Debug, Default)]
struct Verdict {
    /// Blocks whose words all carry one version.
    uniform_blocks: u64,
    /// Blocks that mix versions (allowed: the buffer changed during the write).
    mixed_blocks: u64,
    /// Every word that is not a tag stored at its place, with why (at most 20 kept).
    bad: Vec<String>,
    bad_words: u64,
}

/// Checks every word of `data` (the whole file) against the rule in the module doc.
fn verify(data: &[u8], max_version: u32) -> Verdict {
    let mut v = Verdict::default();
    if data.len() != FILE_BYTES {
        v.bad
            .push(format!("file is {} bytes, not {FILE_BYTES}", data.len()));
        v.bad_words += 1;
        return v;
    }
    for (b, block) in data.chunks(BLOCK).enumerate() {
        let mut versions = std::collections::BTreeSet::new();
        for (k, w) in block.chunks(8).enumerate() {
            let i = b * WORDS_PER_BLOCK + k;
            let w = u64::from_le_bytes(w.try_into().unwrap());
            let version = w as u32;
            versions.insert(version);
            let why = if w >> 48 != MAGIC {
                Some("wrong magic: not a tag at all")
            } else if (w >> 32) & 0xffff != i as u64 {
                Some("the tag of another word: data at the wrong place")
            } else if version == 0 || version > max_version {
                Some("a version that was never stored")
            } else {
                None
            };
            if let Some(why) = why {
                v.bad_words += 1;
                if v.bad.len() < 20 {
                    v.bad.push(format!(
                        "word {i} (block {b}, byte {}): {w:#018x}: {why}",
                        i * 8
                    ));
                }
            }
        }
        if versions.len() == 1 {
            v.uniform_blocks += 1;
        } else {
            v.mixed_blocks += 1;
        }
    }
    v
}

#[track_caller]
fn assert_verified(what: &str, data: &[u8], max_version: u32) -> Verdict {
    let v = verify(data, max_version);
    assert!(
        v.bad.is_empty(),
        "{what}: {} words are not tags that were stored there (last version {max_version}):\n{}",
        v.bad_words,
        v.bad.join("\n")
    );
    v
}

/// Reads the whole file; any error (EIO above all) fails the test.
#[track_caller]
fn read_all(p: &Path) -> Vec<u8> {
    match fs::read(p) {
        Ok(d) => d,
        Err(e) => panic!("reading {}: {e} (a false checksum error?)", p.display()),
    }
}

#[track_caller]
fn assert_no_checksum_error(t: &TestFs) {
    let log = t.log();
    assert!(
        !log.contains("checksum error") && !log.contains("panicked"),
        "daemon log:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// write(2) from a buffer that changes during the call

/// A page-aligned block of the buffer; words are atomics because other threads store into
/// them while the kernel copies them.
#[repr(C, align(4096))]
struct Block([AtomicU64; WORDS_PER_BLOCK]);

/// The buffer that mirrors the file, and the last version stored into it.
struct Scribbled {
    blocks: Vec<Block>,
    version: AtomicU32,
}

impl Scribbled {
    fn new() -> Scribbled {
        let blocks = (0..BLOCKS)
            .map(|b| {
                Block(std::array::from_fn(|k| {
                    AtomicU64::new(tag(1, b * WORDS_PER_BLOCK + k))
                }))
            })
            .collect();
        Scribbled {
            blocks,
            version: AtomicU32::new(1),
        }
    }

    /// Stores a fresh version into every word of block `b`.
    fn scribble(&self, b: usize) {
        let v = self.version.fetch_add(1, Ordering::Relaxed) + 1;
        for (k, w) in self.blocks[b].0.iter().enumerate() {
            w.store(tag(v, b * WORDS_PER_BLOCK + k), Ordering::Relaxed);
        }
    }

    /// `pwrite` of buffer bytes `off..off+len` to the same offset of `f`.
    fn pwrite(&self, f: &File, off: usize, len: usize) -> io::Result<()> {
        assert!(off + len <= FILE_BYTES);
        let base = self.blocks.as_ptr().cast::<u8>();
        let mut done = 0;
        while done < len {
            // SAFETY: safe because `base + off + len` stays inside `blocks` (asserted above), which
            // outlives the call; the kernel only reads the bytes, and the other threads change
            // them only through atomics.
            let n = unsafe {
                libc::pwrite(
                    f.as_raw_fd(),
                    base.add(off + done).cast(),
                    len - done,
                    (off + done) as libc::off_t,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            done += n as usize;
        }
        Ok(())
    }
}

/// Runs `writes` pwrites of `file` from a buffer that two threads keep scribbling on, with a
/// fourth thread fsyncing meanwhile; `aligned` keeps offsets and lengths to whole blocks (for
/// O_DIRECT). Returns the last version stored and the number of fsyncs.
fn write_while_scribbling(f: &File, writes: u64, aligned: bool, seed: u64) -> (u32, u64) {
    let buf = Scribbled::new();
    // The first pass writes every block once, so every word of the file is a tag.
    buf.pwrite(f, 0, FILE_BYTES).expect("the first full write");
    let done = AtomicBool::new(false);
    let fsyncs = AtomicU64::new(0);
    thread::scope(|s| {
        for id in 0..2u64 {
            let (buf, done) = (&buf, &done);
            s.spawn(move || {
                let mut x = splitmix(seed ^ id);
                while !done.load(Ordering::Relaxed) {
                    x = splitmix(x);
                    buf.scribble((x % BLOCKS as u64) as usize);
                }
            });
        }
        let (done_ref, fsyncs_ref) = (&done, &fsyncs);
        s.spawn(move || {
            while !done_ref.load(Ordering::Relaxed) {
                f.sync_all().expect("fsync during the writes");
                fsyncs_ref.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
            }
        });
        let mut x = seed;
        let result = (0..writes).try_for_each(|_| {
            x = splitmix(x);
            let (off, len) = if aligned {
                let off = (x % BLOCKS as u64) as usize * BLOCK;
                let len = (1 + (x >> 20) as usize % (MAX_WRITE / BLOCK)) * BLOCK;
                (off, len.min(FILE_BYTES - off))
            } else {
                // Word-aligned, so that every word is written whole or not at all; blocks
                // are mostly written in part, which makes the daemon merge old and new bytes.
                let off = (x % (FILE_BYTES / 8) as u64) as usize * 8;
                let len = (1 + (x >> 20) as usize % (MAX_WRITE / 8)) * 8;
                (off, len.min(FILE_BYTES - off))
            };
            buf.pwrite(f, off, len)
        });
        done.store(true, Ordering::Relaxed);
        if let Err(e) = result {
            panic!("pwrite from the changing buffer: {e}");
        }
    });
    f.sync_all().expect("the final fsync");
    (buf.version.load(Ordering::Relaxed), fsyncs.into_inner())
}

/// Writes, verifies through the page cache, remounts, verifies from the device, compares.
fn changing_buffer_test(direct: bool, seed: u64) {
    let mut t = TestFs::new();
    let p = t.path(if direct { "direct" } else { "plain" });
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    let f = o
        .open(&p)
        .unwrap_or_else(|e| panic!("open {} (O_DIRECT: {direct}): {e}", p.display()));
    let writes = if direct { DIRECT_WRITES } else { PLAIN_WRITES };
    let start = Instant::now();
    let (max_version, fsyncs) = write_while_scribbling(&f, writes, direct, seed);
    drop(f);
    let before = read_all(&p);
    let cached = assert_verified("through the page cache", &before, max_version);
    t.remount();
    let after = read_all(&p);
    let device = assert_verified("after the remount", &after, max_version);
    assert!(
        before == after,
        "the file read back after the remount differs from what was there before it"
    );
    assert_no_checksum_error(&t);
    println!(
        "{writes} pwrites (O_DIRECT: {direct}) from a changing buffer, {max_version} buffer \
         versions, {fsyncs} fsyncs meanwhile, {:.1?}; page cache: {} uniform / {} mixed blocks; \
         after remount: {} uniform / {} mixed; no bad word, no checksum error",
        start.elapsed(),
        cached.uniform_blocks,
        cached.mixed_blocks,
        device.uniform_blocks,
        device.mixed_blocks
    );
}

#[test]
fn pwrite_from_a_changing_buffer() {
    changing_buffer_test(false, 0x7057_7269_7465);
}

/// `O_DIRECT` opens work on the mount (the kernel passes the caller's pages to the daemon,
/// which copies them while the scribblers run).
#[test]
fn odirect_pwrite_from_a_changing_buffer() {
    changing_buffer_test(true, 0x6f64_6972_6563);
}

// ---------------------------------------------------------------------------------------------
// A shared mapping dirtied during writeback, by another process

/// Shared between this process and the scribbler (an anonymous shared page).
#[repr(C)]
struct Control {
    /// The last version the scribbler stored.
    version: AtomicU32,
    /// 1: the mapping is in place and scribbling has begun; 2: the scribbler failed to start.
    ready: AtomicU32,
    /// Set by us: the scribbler stops, unmaps and exits.
    stop: AtomicU32,
}

/// The forked scribbler. It is the child of a multithreaded process, so it only makes
/// async-signal-safe calls (open, mmap, munmap, close, _exit) and atomic stores; it allocates
/// nothing and never unwinds.
fn scribbler(path: &CString, ctl: &Control, seed: u64) -> ! {
    // SAFETY: safe because `path` is a valid NUL-terminated string (made before the fork).
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
    // SAFETY: safe because a failed mmap returns MAP_FAILED and touches nothing; a successful one
    // maps FILE_BYTES of the file, which is that long (written before the fork).
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            FILE_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if fd < 0 || map == libc::MAP_FAILED {
        ctl.ready.store(2, Ordering::SeqCst);
        // SAFETY: safe because _exit ends this process at once, without running anything of the
        // parent's.
        unsafe { libc::_exit(1) };
    }
    let words = map.cast::<AtomicU64>();
    let mut x = seed;
    let mut started = false;
    while ctl.stop.load(Ordering::Relaxed) == 0 {
        x = splitmix(x);
        let page = (x % BLOCKS as u64) as usize;
        let v = ctl.version.fetch_add(1, Ordering::Relaxed) + 1;
        for k in 0..WORDS_PER_BLOCK {
            let i = page * WORDS_PER_BLOCK + k;
            // SAFETY: safe because `i` < FILE_BYTES / 8, the mapping is page-aligned (so every word
            // is 8-aligned) and stays mapped until the munmap below.
            unsafe { (*words.add(i)).store(tag(v, i), Ordering::Relaxed) };
        }
        if !started {
            ctl.ready.store(1, Ordering::SeqCst);
            started = true;
        }
    }
    // SAFETY: safe because nothing uses the mapping or the descriptor after this, and _exit ends
    // the process without running anything of the parent's.
    unsafe {
        libc::munmap(map, FILE_BYTES);
        libc::close(fd);
        libc::_exit(0)
    }
}

/// The scribbler's pid: dropping this stops it (SIGKILL if need be) and reaps it, so a failing
/// test never leaves it behind.
struct Scribbler {
    pid: libc::pid_t,
    ctl: *mut Control,
}

impl Scribbler {
    /// Asks the scribbler to stop and waits for it; its exit status.
    fn stop(&mut self) -> libc::c_int {
        self.control().stop.store(1, Ordering::SeqCst);
        let mut status = 0;
        // SAFETY: safe because `pid` is our unreaped child and `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        assert_eq!(rc, self.pid, "waitpid: {}", io::Error::last_os_error());
        self.pid = 0;
        status
    }

    fn control(&self) -> &Control {
        // SAFETY: safe because `ctl` points to the shared page mapped in
        // `mmap_dirtied_during_fsync`, which is unmapped only after this guard is gone.
        unsafe { &*self.ctl }
    }
}

impl Drop for Scribbler {
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: safe because `pid` is our child, not yet reaped, so it cannot have been
            // reused.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

#[test]
fn mmap_dirtied_during_fsync() {
    let mut t = TestFs::new();
    let p = t.path("mapped");
    let initial: Vec<u8> = (0..FILE_BYTES / 8)
        .flat_map(|i| tag(1, i).to_le_bytes())
        .collect();
    fs::write(&p, &initial).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    f.sync_all().unwrap();

    // SAFETY: safe because an anonymous shared mapping of one page has no preconditions; the result
    // is checked before use.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(
        page,
        libc::MAP_FAILED,
        "mmap: {}",
        io::Error::last_os_error()
    );
    let ctl = page.cast::<Control>();
    // SAFETY: safe because the page is zero-filled, page-aligned and large enough for `Control`,
    // whose fields are atomics for which all zeros is a valid value.
    let ctl_ref = unsafe { &*ctl };
    ctl_ref.version.store(1, Ordering::SeqCst);
    let cpath = CString::new(p.as_os_str().as_bytes()).unwrap();

    // SAFETY: safe because the child only runs `scribbler`, which makes async-signal-safe calls and
    // ends in _exit (see there); the parent goes on as usual.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        scribbler(&cpath, ctl_ref, 0x6d6d_6170);
    }
    let mut child = Scribbler { pid, ctl };
    let start = Instant::now();
    while child.control().ready.load(Ordering::SeqCst) == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        child.control().ready.load(Ordering::SeqCst),
        1,
        "the scribbler could not map {}",
        p.display()
    );
    let fd = f.as_raw_fd();
    for i in 0..MMAP_SYNCS {
        let (what, rc) = match i % 3 {
            // SAFETY: safe because `fd` stays open for the call, which touches none of our memory.
            0 => ("fsync", unsafe { libc::fsync(fd) }),
            // SAFETY: safe because `fd` stays open for the call, which touches none of our memory.
            1 => ("fdatasync", unsafe { libc::fdatasync(fd) }),
            // SAFETY: safe because `fd` stays open for the call, which touches none of our memory.
            _ => ("sync_file_range", unsafe {
                libc::sync_file_range(
                    fd,
                    0,
                    0,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                )
            }),
        };
        assert_eq!(
            rc,
            0,
            "{what} while the mapping changes: {}",
            io::Error::last_os_error()
        );
    }
    let status = child.stop();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the scribbler ended with status {status:#x}"
    );
    let max_version = child.control().version.load(Ordering::SeqCst);
    drop(child);
    // SAFETY: safe because the scribbler has exited and nothing refers to the page any more.
    unsafe { libc::munmap(page, 4096) };
    f.sync_all().unwrap();
    drop(f);

    let before = read_all(&p);
    let cached = assert_verified("through the page cache", &before, max_version);
    t.remount();
    let after = read_all(&p);
    let device = assert_verified("after the remount", &after, max_version);
    assert!(
        before == after,
        "the file read back after the remount differs from what was there before it"
    );
    assert_no_checksum_error(&t);
    println!(
        "another process stored {max_version} page versions into a shared mapping during \
         {MMAP_SYNCS} fsync/fdatasync/sync_file_range calls, {:.1?}; page cache: {} uniform / \
         {} mixed blocks; after remount: {} uniform / {} mixed; no bad word, no checksum error",
        start.elapsed(),
        cached.uniform_blocks,
        cached.mixed_blocks,
        device.uniform_blocks,
        device.mixed_blocks
    );
}

/// The check itself: it accepts a file of mixed versions, and rejects a word that is not a tag,
/// the tag of another word (misplaced data), a version never stored, and a short file.
#[test]
fn the_check_rejects_what_it_must() {
    let good: Vec<u8> = (0..FILE_BYTES / 8)
        .flat_map(|i| tag(1 + (i % 7) as u32, i).to_le_bytes())
        .collect();
    let v = verify(&good, 7);
    assert!(v.bad.is_empty(), "{:?}", v.bad);
    assert_eq!(v.mixed_blocks, BLOCKS as u64);
    let word = |data: &mut Vec<u8>, i: usize, w: u64| {
        data[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    };
    for (i, w) in [
        (10, 0),
        (20, tag(3, 21)),
        (30, tag(8, 30)),
        (40, tag(0, 40)),
        (50, tag(2, 50) ^ (1 << 60)),
    ] {
        let mut bad = good.clone();
        word(&mut bad, i, w);
        assert_eq!(verify(&bad, 7).bad_words, 1, "word {i} = {w:#x}");
    }
    assert_eq!(verify(&good[..FILE_BYTES - BLOCK], 7).bad_words, 1);
}
