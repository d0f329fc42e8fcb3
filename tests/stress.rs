//! fsstress-style concurrency (issue 3, points 4 and 7): several processes each run thousands of
//! seeded random operations over one shared tree on a mounted stablefs — create, mkdir, rmdir,
//! rename (plain, `RENAME_NOREPLACE`, `RENAME_EXCHANGE`), link, symlink, unlink, buffered and
//! `O_DIRECT` writes at random offsets and reads, truncate, fallocate, punch hole,
//! fsync/fdatasync, setxattr, getxattr, listxattr, removexattr, chmod, readdir, stat. Then the
//! filesystem is unmounted (the daemon must exit 0), mounted again, walked (`walk/mod.rs`: every
//! entry stat-able, link counts right, no duplicate names, symlinks readable) and every byte of
//! every file is read: no `EIO`, no content error, no "checksum error" in the daemon log, statfs
//! counts exactly the inodes the walk found and no more space than it found allocated (plus
//! metadata). A third test kills the daemon with SIGKILL in the middle of such a run, three
//! times, and requires the same of every remount.
//!
//! The workers are processes, not threads: the test binary runs itself again with
//! `STABLEFS_STRESS_WORKER` set (see [`reference_run_on_host_filesystem`]), so the kernel and
//! the daemon see several callers, as with fsstress.
//!
//! Errors that POSIX allows when other processes change the tree meanwhile (`ENOENT`, `EEXIST`,
//! `ENOTEMPTY`, `ENOTDIR`, `EISDIR`, `ELOOP`; `EINVAL` for a rename into its own subtree;
//! `EPERM` for a hard link to a directory; `ENODATA`/`EEXIST` for xattr flags; `EINVAL` for an
//! `O_DIRECT` open of a directory) are counted, not failures. `EOPNOTSUPP` from fallocate and
//! punch hole counts as "unsupported" while [`STRICT_FALLOCATE`] is false. Anything else (`EIO`
//! above all) fails the test.
//!
//! What data must read back:
//! - shared tree: every writer puts [`pat`]`(offset)` at every file offset it writes, whatever
//!   the file is called by then, so under any interleaving each byte of each file is either
//!   `pat(offset)` or 0 (a hole, a truncate, a punched hole); xattr values are a function of
//!   name and length ([`xattr_value`]). Reads during the run and the final read check that.
//! - private files: each worker also writes random bytes into a file of its own, kept in an
//!   exact in-memory model; every read of it must match the model byte for byte, and after the
//!   remount the file must equal the model (this catches stale or lost data, which the pattern
//!   rule cannot).
//!
//! Reproducing: `STABLEFS_STRESS_SEED=N cargo nextest run --test stress` reruns every worker's
//! sequence of operations (the interleaving is the scheduler's). The seed is printed at the
//! start and in every failure message.

mod common;
mod walk;

use common::TestFs;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Set in a worker process: `ID SEED OPS ROOT` (the shared tree).
const WORKER_ENV: &str = "STABLEFS_STRESS_WORKER";
/// Set in a worker process: the directory (off the mount) where it leaves its private file's
/// model.
const MODELS_ENV: &str = "STABLEFS_STRESS_MODELS";
/// Overrides the default seed of every test here.
const SEED_ENV: &str = "STABLEFS_STRESS_SEED";
/// While false, `EOPNOTSUPP` from fallocate and punch hole is counted as "unsupported"; make it
/// true once stablefs has fallocate, so that any failure of theirs fails the test.
const STRICT_FALLOCATE: bool = true;
/// The test this binary runs when it is a worker (see [`reference_run_on_host_filesystem`]).
const WORKER_TEST: &str = "reference_run_on_host_filesystem";

/// The tree's shape: directories `d0..` nest up to `DIR_DEPTH` levels, and each holds files
/// `f0..` and symlinks `l0..`. Few names, so that the workers collide; separate names for
/// directories and files, so that most operations find what they expect (a fraction of them
/// pick any kind of name on purpose).
const DIR_NAMES: u64 = 3;
const FILE_NAMES: u64 = 6;
const LINK_NAMES: u64 = 3;
const DIR_DEPTH: u64 = 3;
/// Writes, truncates and fallocates stay below this offset.
const MAX_OFFSET: u64 = 1 << 20;
const MAX_WRITE: u64 = 64 << 10;
const XATTR_NAMES: u64 = 4;
/// A run that has not ended by then is stuck (a deadlock): the test reports what every process
/// and daemon thread waits on, and fails. Far above any normal run (~30 s), below nextest's
/// 5-minute limit.
const HANG_LIMIT: Duration = Duration::from_secs(200);

// ---------------------------------------------------------------------------------------------
// The tests

/// Four processes, thousands of operations each, on one tree (issue 3, point 4).
#[test]
fn four_processes_shared_tree() {
    let mut t = TestFs::new();
    stress_mount(&mut t, 4, 20_000, 0x5354_5245_5353_0004);
}

/// Sixteen processes, fewer operations each: no deadlock with 16 callers (issue 3, point 7).
#[test]
fn sixteen_processes_no_deadlock() {
    let mut t = TestFs::new();
    stress_mount(&mut t, 16, 4_000, 0x5354_5245_5353_0016);
}

/// Two roles. In a worker process (`STABLEFS_STRESS_WORKER` set) this runs that worker's
/// operations and nothing else. Otherwise it runs the whole stress, smaller, on the host's own
/// filesystem (ext4 here): a check of the test itself, that what it counts as a failure is not
/// something a mature kernel filesystem does.
#[test]
fn reference_run_on_host_filesystem() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        worker_main(&spec);
        return;
    }
    let dir = common::scratch_dir();
    let root = dir.path().join("tree");
    fs::create_dir(&root).unwrap();
    let seed = seed_or(0x5354_5245_5353_0e47);
    let start = Instant::now();
    let run = run_workers(&root, dir.path(), 4, 1000, seed, None);
    run.print();
    run.assert_clean(seed);
    let w = walk::walk(&root, &mut check_pattern);
    assert!(
        w.problems.is_empty(),
        "seed {seed}: consistency walk on the host filesystem:\n{}",
        w.problems.join("\n")
    );
    check_models(&root, dir.path(), 4, seed);
    println!(
        "host filesystem: {} ops in {:.1?}; walk: {}",
        run.total_ops(),
        start.elapsed(),
        walk::summary(&w)
    );
}

/// The content rule itself: pattern and zeros pass; the pattern shifted by one byte or by one
/// block (data at the wrong offset), and any other byte, do not.
#[test]
fn the_content_rule_rejects_misplaced_data() {
    let data = pattern_at(4096 * 3 + 5, 20_000);
    assert!(check_pattern(Path::new("f"), 4096 * 3 + 5, &data).is_ok());
    assert!(check_pattern(Path::new("f"), 0, &[0; 9000]).is_ok());
    assert!(check_pattern(Path::new("f"), 4096 * 3 + 6, &data).is_err());
    assert!(check_pattern(Path::new("f"), 4096 * 4 + 5, &data).is_err());
    let mut one_off = data.clone();
    one_off[777] ^= 0x40;
    assert!(check_pattern(Path::new("f"), 4096 * 3 + 5, &one_off).is_err());
    assert!(check_pattern(Path::new("f"), 0, &pattern_at(8, 64)).is_err());
}

// ---------------------------------------------------------------------------------------------
// The parent

fn seed_or(default: u64) -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV}={s:?} is not a number")),
        Err(_) => default,
    }
}

/// The stress on `t`'s mount, then unmount, mount, walk and read everything.
fn stress_mount(t: &mut TestFs, procs: u32, ops: u64, default_seed: u64) {
    let seed = seed_or(default_seed);
    println!("seed {seed} ({SEED_ENV}={seed} reruns these operation sequences)");
    let start = Instant::now();
    let root = t.path("tree");
    fs::create_dir(&root).unwrap();
    let run = run_workers(&root, t.dir.path(), procs, ops, seed, Some(t));
    let ran = start.elapsed();
    run.print();
    run.assert_clean(seed);

    t.unmount();
    t.mount();
    let (w, used) = check_tree(t, &root, seed);
    check_models(&root, t.dir.path(), procs, seed);
    println!(
        "{procs} processes x {ops} ops = {} ops in {ran:.1?}; remount + walk + read-all: {}; \
         statfs in use {used} bytes; total {:.1?}",
        run.total_ops(),
        walk::summary(&w),
        start.elapsed()
    );
}

/// The daemon is killed (SIGKILL: no unmount, no last commit) while four workers churn the
/// tree, three times over, after a different time each round. Each time the filesystem must
/// mount again, read-write, at its last commit, and the consistency walk, the read of every
/// byte and the statfs counts must be clean (guarantee 4 of the design, under concurrency).
#[test]
fn sigkill_during_stress_then_consistent() {
    let mut t = TestFs::new();
    let seed = seed_or(0x5354_5245_5353_0009);
    println!("seed {seed} ({SEED_ENV}={seed} reruns these operation sequences)");
    let root = t.path("tree");
    fs::create_dir(&root).unwrap();
    for (round, run_for) in [(0u64, 1500u64), (1, 2500), (2, 3500)] {
        let seed = seed.wrapping_add(round);
        // More operations than they can do: they are killed while running.
        let mut children = start_workers(&root, t.dir.path(), 4, u64::MAX, seed);
        sleep(Duration::from_millis(run_for));
        for (c, _) in children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Failures they met before the kill were printed at once.
        collect(&children, &vec![None; children.len()]).assert_clean(seed);
        t.kill9();
        t.mount();
        let (w, used) = check_tree(&t, &root, seed);
        fs::write(
            private_dir(&root).join("writable"),
            b"read-write after the crash",
        )
        .unwrap_or_else(|e| panic!("seed {seed}: writing after the crash: {e}"));
        println!(
            "round {round}: killed after {run_for} ms; remount + walk + read-all: {}; statfs in \
             use {used} bytes",
            walk::summary(&w)
        );
    }
}

/// After a remount: the consistency walk and a read of every byte (shared files: the pattern
/// or zeros; private files are checked by the caller), statfs against the walk, the daemon
/// log. Returns the walk and the bytes statfs says are in use.
#[track_caller]
fn check_tree(t: &TestFs, root: &Path, seed: u64) -> (walk::Walk, u64) {
    let private = private_dir(root);
    let w = walk::walk(&t.mnt, &mut |p, off, data| {
        if p.starts_with(&private) {
            Ok(())
        } else {
            check_pattern(p, off, data)
        }
    });
    assert!(
        w.problems.is_empty(),
        "seed {seed}: consistency walk after the remount:\n{}",
        w.problems.join("\n")
    );
    let s = walk::statvfs(&t.mnt);
    let counted = s.f_files - s.f_ffree;
    assert_eq!(
        counted, w.inodes,
        "seed {seed}: statfs counts {counted} inodes, the walk reached {} (leaked or lost inodes)",
        w.inodes
    );
    // In use: what files and directories hold, plus the metadata tree (a few hundred bytes per
    // inode, 4 bytes of crc per data block); a leak of freed blocks shows as more than that.
    let used = (s.f_blocks - s.f_bfree) * s.f_frsize;
    let metadata_bound = (8 << 20) + w.inodes * 4096;
    assert!(
        used >= w.allocated && used <= w.allocated + metadata_bound,
        "seed {seed}: statfs says {used} bytes in use, files and directories hold {} \
         (expected up to {metadata_bound} more for metadata)",
        w.allocated
    );
    let log = t.log();
    assert!(
        !log.contains("checksum error") && !log.contains("panicked"),
        "seed {seed}: daemon log:\n{log}"
    );
    (w, used)
}

/// Each worker's private file holds exactly what its model says.
#[track_caller]
fn check_models(root: &Path, scratch: &Path, procs: u32, seed: u64) {
    for id in 0..procs {
        let p = private_dir(root).join(format!("w{id}"));
        let got = fs::read(&p).unwrap_or_else(|e| panic!("seed {seed}: {}: {e}", p.display()));
        let want = fs::read(scratch.join(format!("model-{id}"))).unwrap();
        if got != want {
            let at = got.iter().zip(&want).position(|(a, b)| a != b);
            panic!(
                "seed {seed}: {} is {} bytes, its model {}; first difference at {at:?}",
                p.display(),
                got.len(),
                want.len()
            );
        }
    }
}

/// What the workers reported.
struct Run {
    /// (operation, outcome) -> count, over all workers.
    counts: BTreeMap<(String, String), u64>,
    failures: Vec<String>,
    /// Workers that did not exit 0, with their output.
    bad_exits: Vec<String>,
}

impl Run {
    fn total_ops(&self) -> u64 {
        self.counts.values().sum()
    }

    fn print(&self) {
        let mut ops: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
        for ((op, outcome), n) in &self.counts {
            *ops.entry(op).or_default().entry(outcome).or_default() += n;
        }
        for (op, outcomes) in ops {
            let total: u64 = outcomes.values().sum();
            let parts: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
            println!("  {op:<16} {total:>6}: {}", parts.join(", "));
        }
    }

    #[track_caller]
    fn assert_clean(&self, seed: u64) {
        assert!(
            self.failures.is_empty() && self.bad_exits.is_empty(),
            "seed {seed}: {} failed operations:\n{}\n{}",
            self.failures.len(),
            self.failures.join("\n"),
            self.bad_exits.join("\n")
        );
    }
}

/// Starts `procs` worker processes on `root` and waits for them. `t`, when given, is the mount
/// under test: if the workers hang, its connection is aborted so that they can be killed.
fn run_workers(
    root: &Path,
    scratch: &Path,
    procs: u32,
    ops: u64,
    seed: u64,
    t: Option<&TestFs>,
) -> Run {
    let mut children = start_workers(root, scratch, procs, ops, seed);
    let statuses = wait_workers(&mut children, t, seed);
    collect(&children, &statuses)
}

/// Starts `procs` worker processes on `root`; their output goes to files in `scratch`.
fn start_workers(
    root: &Path,
    scratch: &Path,
    procs: u32,
    ops: u64,
    seed: u64,
) -> Vec<(Child, PathBuf)> {
    let exe = std::env::current_exe().expect("the test binary's path");
    fs::create_dir_all(private_dir(root)).unwrap();
    let mut children: Vec<(Child, PathBuf)> = Vec::new();
    for id in 0..procs {
        let out_path = scratch.join(format!("worker-{id}.out"));
        let out = File::create(&out_path).unwrap();
        let child = Command::new(&exe)
            .args([WORKER_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(WORKER_ENV, format!("{id} {seed} {ops} {}", root.display()))
            .env(MODELS_ENV, scratch)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting worker {id}: {e}"));
        children.push((child, out_path));
    }
    children
}

/// Waits for every worker; on a hang, reports and fails (see `HANG_LIMIT`).
fn wait_workers(
    children: &mut [(Child, PathBuf)],
    t: Option<&TestFs>,
    seed: u64,
) -> Vec<Option<std::process::ExitStatus>> {
    let start = Instant::now();
    let mut statuses = vec![None; children.len()];
    while statuses.iter().any(Option::is_none) {
        for (k, (c, _)) in children.iter_mut().enumerate() {
            if statuses[k].is_none() {
                statuses[k] = c.try_wait().expect("waiting for a worker");
            }
        }
        if start.elapsed() > HANG_LIMIT {
            let report = hang_report(children, t);
            if let Some(t) = t {
                for m in common::fuse_mounts_at(&t.mnt) {
                    common::abort_connection(&m);
                }
            }
            for (c, _) in children.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            panic!(
                "seed {seed}: the workers were still running after {HANG_LIMIT:?} \
                 (a deadlock?); what each was waiting on:\n{report}"
            );
        }
        sleep(Duration::from_millis(50));
    }
    statuses
}

/// Parses what the workers printed. A worker that did not exit 0 is a failure unless its status
/// is `None` (killed on purpose).
fn collect(children: &[(Child, PathBuf)], statuses: &[Option<std::process::ExitStatus>]) -> Run {
    let mut run = Run {
        counts: BTreeMap::new(),
        failures: Vec::new(),
        bad_exits: Vec::new(),
    };
    for ((_, out_path), status) in children.iter().zip(statuses) {
        let out = fs::read_to_string(out_path).unwrap_or_default();
        if let Some(status) = status.filter(|s| !s.success()) {
            run.bad_exits
                .push(format!("{}: {status}\n{out}", out_path.display()));
        }
        for line in out.lines() {
            // libtest may print "test NAME ... " on the same line before the first one.
            let Some((_, rest)) = line.split_once("STRESS ") else {
                continue;
            };
            let f: Vec<&str> = rest.splitn(4, ' ').collect();
            match f.as_slice() {
                ["count", op, outcome, n] => {
                    *run.counts
                        .entry((op.to_string(), outcome.to_string()))
                        .or_default() += n.parse::<u64>().unwrap();
                }
                ["fail", ..] => run.failures.push(rest.to_owned()),
                _ => {}
            }
        }
    }
    run
}

/// What each worker and each daemon thread is blocked in.
fn hang_report(children: &[(Child, PathBuf)], t: Option<&TestFs>) -> String {
    let mut out = String::new();
    let read = |p: String| fs::read_to_string(p).unwrap_or_else(|e| format!("({e})"));
    for (c, _) in children {
        let pid = c.id();
        out += &format!(
            "worker {pid}: wchan {}\n{}\n",
            read(format!("/proc/{pid}/wchan")),
            read(format!("/proc/{pid}/stack"))
        );
    }
    if let Some(pid) = t.and_then(TestFs::daemon_pid) {
        if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let p = task.path().display().to_string();
                out += &format!(
                    "daemon thread {} ({}): wchan {}\n{}\n",
                    task.file_name().to_string_lossy(),
                    read(format!("{p}/comm")).trim(),
                    read(format!("{p}/wchan")),
                    read(format!("{p}/stack"))
                );
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The content rule

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The byte every writer puts at file offset `o`: never 0, and different at nearby offsets, so
/// data that lands at the wrong offset is seen.
fn pat(o: u64) -> u8 {
    let b = (splitmix(o >> 3) >> ((o & 7) * 8)) as u8;
    if b == 0 {
        0x5a
    } else {
        b
    }
}

fn pattern_at(off: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| pat(off + i)).collect()
}

/// Every byte of `data`, read at `off`, is `pat(offset)` or 0.
fn check_pattern(_: &Path, off: u64, data: &[u8]) -> Result<(), String> {
    match data
        .iter()
        .enumerate()
        .find(|&(i, &b)| b != 0 && b != pat(off + i as u64))
    {
        None => Ok(()),
        Some((i, &b)) => Err(format!(
            "byte at offset {} is {b:#04x}: neither 0 nor the pattern's {:#04x}",
            off + i as u64,
            pat(off + i as u64)
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// The worker

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Mkdir,
    Rmdir,
    Rename,
    RenameNoreplace,
    RenameExchange,
    Link,
    Symlink,
    Unlink,
    Write,
    Read,
    Truncate,
    Fallocate,
    PunchHole,
    Fsync,
    Setxattr,
    Removexattr,
    Chmod,
    Readdir,
    Stat,
    DirectWrite,
    DirectRead,
    Getxattr,
    Listxattr,
    PrivateWrite,
    PrivateRead,
    PrivateTruncate,
    PrivatePunch,
    PrivateFsync,
}

/// The operation mix: (operation, weight).
const MIX: &[(Op, u64)] = &[
    (Op::Create, 8),
    (Op::Mkdir, 6),
    (Op::Rmdir, 4),
    (Op::Rename, 6),
    (Op::RenameNoreplace, 3),
    (Op::RenameExchange, 3),
    (Op::Link, 4),
    (Op::Symlink, 3),
    (Op::Unlink, 6),
    (Op::Write, 16),
    (Op::Read, 6),
    (Op::Truncate, 4),
    (Op::Fallocate, 3),
    (Op::PunchHole, 3),
    (Op::Fsync, 2),
    (Op::Setxattr, 4),
    (Op::Removexattr, 3),
    (Op::Chmod, 3),
    (Op::Readdir, 5),
    (Op::Stat, 4),
    (Op::DirectWrite, 4),
    (Op::DirectRead, 3),
    (Op::Getxattr, 3),
    (Op::Listxattr, 2),
    (Op::PrivateWrite, 8),
    (Op::PrivateRead, 6),
    (Op::PrivateTruncate, 3),
    (Op::PrivatePunch, 2),
    (Op::PrivateFsync, 1),
];

/// How an operation ended.
enum Outcome {
    Ok,
    /// An errno POSIX allows here while other processes change the tree.
    Race(i32),
    /// `EOPNOTSUPP` from fallocate or punch hole (see [`STRICT_FALLOCATE`]).
    Unsupported,
    Failed(String),
}

/// Errors any path operation may meet while other processes change the tree.
const RACE_ERRNOS: &[i32] = &[
    libc::ENOENT,
    libc::EEXIST,
    libc::ENOTEMPTY,
    libc::ENOTDIR,
    libc::EISDIR,
    libc::ELOOP,
];

fn classify(op: Op, e: i32) -> Outcome {
    if is_private(op) {
        // Nobody else touches the private file: only an unsupported punch is not a failure.
        return if op == Op::PrivatePunch && e == libc::EOPNOTSUPP && !STRICT_FALLOCATE {
            Outcome::Unsupported
        } else {
            Outcome::Failed(format!("errno {e} ({})", io::Error::from_raw_os_error(e)))
        };
    }
    let extra: &[i32] = match op {
        // A directory renamed into its own subtree.
        Op::Rename | Op::RenameNoreplace | Op::RenameExchange => &[libc::EINVAL],
        // A hard link to a directory.
        Op::Link => &[libc::EPERM],
        // XATTR_REPLACE of a missing name, removing a missing name.
        Op::Setxattr | Op::Removexattr | Op::Getxattr => &[libc::ENODATA],
        // O_DIRECT open of a directory (ext4; FUSE lets it through).
        Op::DirectRead | Op::DirectWrite => &[libc::EINVAL],
        _ => &[],
    };
    let unsupported = matches!(op, Op::Fallocate | Op::PunchHole) && e == libc::EOPNOTSUPP;
    if RACE_ERRNOS.contains(&e) || extra.contains(&e) {
        Outcome::Race(e)
    } else if unsupported && !STRICT_FALLOCATE {
        Outcome::Unsupported
    } else {
        Outcome::Failed(format!("errno {e} ({})", io::Error::from_raw_os_error(e)))
    }
}

/// Operations on the worker's own file, checked against an exact model of its contents.
fn is_private(op: Op) -> bool {
    matches!(
        op,
        Op::PrivateWrite
            | Op::PrivateRead
            | Op::PrivateTruncate
            | Op::PrivatePunch
            | Op::PrivateFsync
    )
}

fn errno_name(e: i32) -> String {
    let name = match e {
        libc::ENOENT => "ENOENT",
        libc::EEXIST => "EEXIST",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::ELOOP => "ELOOP",
        libc::EINVAL => "EINVAL",
        libc::EPERM => "EPERM",
        libc::ENODATA => "ENODATA",
        _ => return format!("errno{e}"),
    };
    name.to_owned()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix(self.0.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Worker {
    root: PathBuf,
    rng: Rng,
    /// This worker's own file (no other worker touches it) and what it must contain.
    private: PathBuf,
    model: Vec<u8>,
}

/// A worker process: `spec` is `ID SEED OPS ROOT`. Prints `STRESS count OP OUTCOME N` and
/// `STRESS fail ...` lines for the parent, and fails if any operation failed.
fn worker_main(spec: &str) {
    let f: Vec<&str> = spec.splitn(4, ' ').collect();
    let [id, seed, ops, root] = f.as_slice() else {
        panic!("bad {WORKER_ENV}={spec:?}");
    };
    let (id, seed, ops): (u64, u64, u64) = (
        id.parse().unwrap(),
        seed.parse().unwrap(),
        ops.parse().unwrap(),
    );
    let root = PathBuf::from(root);
    let private = private_dir(&root).join(format!("w{id}"));
    File::create(&private).unwrap_or_else(|e| panic!("creating {}: {e}", private.display()));
    let mut w = Worker {
        root,
        rng: Rng(splitmix(seed ^ splitmix(id))),
        private,
        model: Vec::new(),
    };
    let total: u64 = MIX.iter().map(|m| m.1).sum();
    let mut counts: BTreeMap<(Op, String), u64> = BTreeMap::new();
    let mut failures = 0;
    for n in 0..ops {
        let mut pick = w.rng.below(total);
        let op = MIX
            .iter()
            .find(|&&(_, weight)| {
                let hit = pick < weight;
                pick = pick.saturating_sub(weight);
                hit
            })
            .expect("a pick below the total weight")
            .0;
        let (what, outcome) = w.run(op);
        let key = match outcome {
            Outcome::Ok => "ok".to_owned(),
            Outcome::Race(e) => errno_name(e),
            Outcome::Unsupported => "unsupported".to_owned(),
            Outcome::Failed(why) => {
                failures += 1;
                println!("STRESS fail worker {id} op {n} {op:?} {what}: {why}");
                "FAILED".to_owned()
            }
        };
        *counts.entry((op, key)).or_default() += 1;
    }
    for ((op, outcome), n) in &counts {
        println!("STRESS count {op:?} {outcome} {n}");
    }
    File::open(&w.private)
        .and_then(|f| f.sync_all())
        .expect("fsync of the private file");
    let models = std::env::var(MODELS_ENV).expect("the models directory");
    fs::write(Path::new(&models).join(format!("model-{id}")), &w.model).unwrap();
    assert_eq!(failures, 0, "worker {id}: {failures} failed operations");
}

impl Ord for Op {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

impl PartialOrd for Op {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `rc` of a libc call: 0 or -1 with errno.
fn sys(rc: libc::c_int) -> Result<(), i32> {
    if rc == -1 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

fn os(e: io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// An operation's result: an errno, or a failure of a check of ours.
enum Fail {
    Errno(i32),
    Check(String),
}

impl From<i32> for Fail {
    fn from(e: i32) -> Fail {
        Fail::Errno(e)
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::Errno(os(e))
    }
}

impl Worker {
    /// A random directory below the root (the root included): 0 to `DIR_DEPTH - 1` levels.
    fn dir(&mut self) -> PathBuf {
        let depth = [0, 1, 1, 2, 2][self.rng.below(5) as usize].min(DIR_DEPTH - 1);
        (0..depth)
            .map(|_| format!("d{}", self.rng.below(DIR_NAMES)))
            .collect()
    }

    /// A name of the kind `kind` (`'d'`, `'f'` or `'l'`), or of any kind one time in ten.
    fn name(&mut self, kind: char) -> String {
        let kind = if self.rng.chance(10) {
            ['d', 'f', 'f', 'l'][self.rng.below(4) as usize]
        } else {
            kind
        };
        let n = match kind {
            'd' => DIR_NAMES,
            'f' => FILE_NAMES,
            _ => LINK_NAMES,
        };
        format!("{kind}{}", self.rng.below(n))
    }

    /// A path relative to the root, to a name of the kind `kind`.
    fn rel(&mut self, kind: char) -> PathBuf {
        let d = self.dir();
        let n = self.name(kind);
        d.join(n)
    }

    fn path(&mut self, kind: char) -> PathBuf {
        let r = self.rel(kind);
        self.root.join(r)
    }

    /// A file's path, through a symlink one time in ten.
    fn file(&mut self) -> PathBuf {
        let kind = if self.rng.chance(10) { 'l' } else { 'f' };
        self.path(kind)
    }

    /// A path to anything.
    fn any(&mut self) -> PathBuf {
        let kind = ['d', 'f', 'f', 'l'][self.rng.below(4) as usize];
        self.path(kind)
    }

    fn offset(&mut self, max: u64) -> u64 {
        if self.rng.chance(50) {
            self.rng.below(max / 4096) * 4096
        } else {
            self.rng.below(max)
        }
    }

    fn len(&mut self) -> u64 {
        if self.rng.chance(50) {
            (1 + self.rng.below(MAX_WRITE / 4096)) * 4096
        } else {
            1 + self.rng.below(MAX_WRITE)
        }
    }

    /// Runs one operation: what it was (paths and arguments) and how it ended.
    fn run(&mut self, op: Op) -> (String, Outcome) {
        let (what, r) = self.dispatch(op);
        let outcome = match r {
            Ok(()) => Outcome::Ok,
            Err(Fail::Errno(e)) => classify(op, e),
            Err(Fail::Check(why)) => Outcome::Failed(why),
        };
        (what, outcome)
    }

    /// The path an operation works on.
    fn target(&mut self, op: Op) -> PathBuf {
        match op {
            Op::Mkdir | Op::Rmdir => self.path('d'),
            Op::Symlink => self.path('l'),
            Op::Rename | Op::RenameNoreplace | Op::RenameExchange => {
                let kind = ['d', 'f', 'f', 'l'][self.rng.below(4) as usize];
                self.path(kind)
            }
            Op::Chmod | Op::Stat | Op::Readdir | Op::Fsync => self.any(),
            _ => self.file(),
        }
    }

    /// The second path of a rename or link: mostly of the same kind as the first.
    fn second(&mut self, first: &Path) -> PathBuf {
        let kind = first
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.chars().next())
            .unwrap_or('f');
        self.path(kind)
    }

    fn dispatch(&mut self, op: Op) -> (String, Result<(), Fail>) {
        if is_private(op) {
            return self.private_op(op);
        }
        let p = self.target(op);
        let what = p
            .strip_prefix(&self.root)
            .unwrap_or(&p)
            .display()
            .to_string();
        match op {
            Op::Create => (what, self.create(&p)),
            Op::Mkdir => (what, fs::create_dir(&p).map_err(Fail::from)),
            Op::Rmdir => (what, fs::remove_dir(&p).map_err(Fail::from)),
            Op::Unlink => (what, fs::remove_file(&p).map_err(Fail::from)),
            Op::Rename | Op::RenameNoreplace | Op::RenameExchange => {
                let q = self.second(&p);
                let flags = match op {
                    Op::Rename => 0,
                    Op::RenameNoreplace => libc::RENAME_NOREPLACE,
                    _ => libc::RENAME_EXCHANGE,
                };
                let what = format!(
                    "{what} -> {}",
                    q.strip_prefix(&self.root).unwrap().display()
                );
                (what, renameat2(&p, &q, flags).map_err(Fail::from))
            }
            Op::Link => {
                let q = self.second(&p);
                let what = format!(
                    "{what} -> {}",
                    q.strip_prefix(&self.root).unwrap().display()
                );
                (what, fs::hard_link(&p, &q).map_err(Fail::from))
            }
            Op::Symlink => {
                let target = self.symlink_target();
                let what = format!("{what} -> {}", target.display());
                (
                    what,
                    std::os::unix::fs::symlink(&target, &p).map_err(Fail::from),
                )
            }
            Op::Write => {
                let (off, len) = (self.offset(MAX_OFFSET), self.len());
                let create = self.rng.chance(50);
                (format!("{what} @{off}+{len}"), write(&p, off, len, create))
            }
            Op::Read => {
                let (off, len) = (self.offset(MAX_OFFSET + MAX_WRITE), self.len());
                (format!("{what} @{off}+{len}"), read(&p, off, len))
            }
            Op::Truncate => {
                let size = self.offset(MAX_OFFSET + MAX_WRITE);
                // SAFETY: safe because the path is a valid NUL-terminated string for the call.
                let r = sys(unsafe { libc::truncate(cpath(&p).as_ptr(), size as libc::off_t) });
                (format!("{what} to {size}"), r.map_err(Fail::from))
            }
            Op::Fallocate | Op::PunchHole => {
                let (off, len) = (self.offset(MAX_OFFSET), self.len());
                let mode = match op {
                    Op::Fallocate => 0,
                    _ => libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                };
                (
                    format!("{what} @{off}+{len}"),
                    fallocate(&p, mode, off, len),
                )
            }
            Op::Fsync => {
                let kind = self.rng.below(3);
                (format!("{what} kind {kind}"), fsync(&p, kind))
            }
            Op::Setxattr => {
                let k = self.rng.below(XATTR_NAMES);
                let name = format!("user.s{k}");
                let len = self.rng.below(129) as usize;
                let value = xattr_value(k, len);
                let flags =
                    [0, libc::XATTR_CREATE, libc::XATTR_REPLACE][self.rng.below(3) as usize];
                let what = format!("{what} {name} len {len} flags {flags}");
                (what, setxattr(&p, &name, &value, flags))
            }
            Op::Removexattr => {
                let name = format!("user.s{}", self.rng.below(XATTR_NAMES));
                let (c, n) = (cpath(&p), CString::new(name.clone()).unwrap());
                // SAFETY: safe because both are valid NUL-terminated strings for the call.
                let r = sys(unsafe { libc::removexattr(c.as_ptr(), n.as_ptr()) });
                (format!("{what} {name}"), r.map_err(Fail::from))
            }
            Op::Chmod => {
                let mode = [0o644, 0o600, 0o755, 0o700, 0o444, 0o4755][self.rng.below(6) as usize];
                // SAFETY: safe because the path is a valid NUL-terminated string for the call.
                let r = sys(unsafe { libc::chmod(cpath(&p).as_ptr(), mode) });
                (format!("{what} {mode:o}"), r.map_err(Fail::from))
            }
            Op::Readdir => (what, readdir(&p)),
            Op::DirectWrite | Op::DirectRead => {
                let off = self.rng.below(MAX_OFFSET / 4096) * 4096;
                let len = (1 + self.rng.below(MAX_WRITE / 4096)) * 4096;
                let what = format!("{what} @{off}+{len}");
                if op == Op::DirectWrite {
                    let create = self.rng.chance(50);
                    (what, direct_write(&p, off, len as usize, create))
                } else {
                    (what, direct_read(&p, off, len as usize))
                }
            }
            Op::Getxattr => {
                let k = self.rng.below(XATTR_NAMES);
                (format!("{what} user.s{k}"), getxattr(&p, k))
            }
            Op::Listxattr => (what, listxattr(&p)),
            Op::PrivateWrite
            | Op::PrivateRead
            | Op::PrivateTruncate
            | Op::PrivatePunch
            | Op::PrivateFsync => unreachable!("handled by private_op"),
            Op::Stat => {
                let r = if self.rng.chance(50) {
                    fs::metadata(&p)
                } else {
                    fs::symlink_metadata(&p)
                };
                (what, r.map(|_| ()).map_err(Fail::from))
            }
        }
    }

    /// An operation on the private file, checked against (and applied to) the model.
    fn private_op(&mut self, op: Op) -> (String, Result<(), Fail>) {
        let p = self.private.clone();
        match op {
            Op::PrivateWrite => {
                let (off, len) = (self.offset(2 * MAX_OFFSET), self.len());
                let data: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
                let r = OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .and_then(|f| f.write_all_at(&data, off));
                if r.is_ok() {
                    let (off, end) = (off as usize, (off + len) as usize);
                    if self.model.len() < end {
                        self.model.resize(end, 0);
                    }
                    self.model[off..end].copy_from_slice(&data);
                }
                (format!("@{off}+{len}"), r.map_err(Fail::from))
            }
            Op::PrivateRead => {
                let (off, len) = (self.offset(2 * MAX_OFFSET + MAX_WRITE), self.len());
                (format!("@{off}+{len}"), self.private_read(off, len))
            }
            Op::PrivateTruncate => {
                let size = self.offset(2 * MAX_OFFSET + MAX_WRITE);
                let r = OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .and_then(|f| f.set_len(size));
                if r.is_ok() {
                    self.model.resize(size as usize, 0);
                }
                (format!("to {size}"), r.map_err(Fail::from))
            }
            Op::PrivatePunch => {
                let (off, len) = (self.offset(2 * MAX_OFFSET), self.len());
                let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                let r = fallocate(&p, mode, off, len);
                if r.is_ok() {
                    let end = ((off + len) as usize).min(self.model.len());
                    if (off as usize) < end {
                        self.model[off as usize..end].fill(0);
                    }
                }
                (format!("@{off}+{len}"), r)
            }
            _ => {
                let r = File::open(&p).and_then(|f| f.sync_data());
                (String::new(), r.map_err(Fail::from))
            }
        }
    }

    fn private_read(&self, off: u64, len: u64) -> Result<(), Fail> {
        let f = File::open(&self.private)?;
        let mut buf = vec![0u8; len as usize];
        let mut got = 0;
        while got < buf.len() {
            match f.read_at(&mut buf[got..], off + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        let from = (off as usize).min(self.model.len());
        let want = &self.model[from..(from + len as usize).min(self.model.len())];
        if &buf[..got] == want {
            return Ok(());
        }
        let at = buf[..got]
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.min(want.len()));
        Err(Fail::Check(format!(
            "private file (model size {}): read {got} bytes, expected {}; first difference at \
             offset {}: got {:?}, expected {:?}",
            self.model.len(),
            want.len(),
            off + at as u64,
            buf.get(at),
            want.get(at)
        )))
    }

    fn create(&mut self, p: &Path) -> Result<(), Fail> {
        let mut o = OpenOptions::new();
        o.write(true).create(true);
        if self.rng.chance(40) {
            o.create_new(true);
        } else if self.rng.chance(20) {
            o.truncate(true);
        }
        let f = o.mode(0o644).open(p)?;
        if self.rng.chance(50) {
            let len = 1 + self.rng.below(8192) as usize;
            f.write_all_at(&pattern_at(0, len), 0)?;
        }
        Ok(())
    }

    /// A relative target: a sibling, one level up, one level down, or a link (maybe a loop).
    fn symlink_target(&mut self) -> PathBuf {
        match self.rng.below(4) {
            0 => PathBuf::from(self.name('f')),
            1 => Path::new("..").join(self.name('f')),
            2 => {
                let d = self.name('d');
                Path::new(&d).join(self.name('f'))
            }
            _ => PathBuf::from(self.name('l')),
        }
    }
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> Result<(), i32> {
    let (a, b) = (cpath(from), cpath(to));
    // SAFETY: safe because both pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if rc == -1 {
        Err(last_errno())
    } else {
        Ok(())
    }
}

fn write(p: &Path, off: u64, len: u64, create: bool) -> Result<(), Fail> {
    let f = OpenOptions::new()
        .write(true)
        .create(create)
        .mode(0o644)
        .open(p)?;
    f.write_all_at(&pattern_at(off, len as usize), off)?;
    Ok(())
}

fn read(p: &Path, off: u64, len: u64) -> Result<(), Fail> {
    let f = File::open(p)?;
    let mut buf = vec![0u8; len as usize];
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], off + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    check_pattern(p, off, &buf[..got]).map_err(Fail::Check)
}

fn fallocate(p: &Path, mode: libc::c_int, off: u64, len: u64) -> Result<(), Fail> {
    let f = OpenOptions::new().write(true).open(p)?;
    // SAFETY: safe because the descriptor is open for the call; fallocate touches no memory of
    // ours.
    let rc =
        unsafe { libc::fallocate(f.as_raw_fd(), mode, off as libc::off_t, len as libc::off_t) };
    sys(rc).map_err(Fail::from)
}

/// kind 0: fsync a file or directory; 1: fdatasync; 2: fsync its parent directory.
fn fsync(p: &Path, kind: u64) -> Result<(), Fail> {
    let target = if kind == 2 {
        p.parent().expect("paths in the tree have a parent")
    } else {
        p
    };
    let f = File::open(target)?;
    if kind == 1 {
        f.sync_data()?;
    } else {
        f.sync_all()?;
    }
    Ok(())
}

fn setxattr(p: &Path, name: &str, value: &[u8], flags: libc::c_int) -> Result<(), Fail> {
    let (c, n) = (cpath(p), CString::new(name).unwrap());
    // SAFETY: safe because the strings are NUL-terminated and `value` is valid for `value.len()`
    // bytes for the duration of the call.
    let rc = unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    sys(rc).map_err(Fail::from)
}

/// Lists a directory and lstats what it found (names may vanish meanwhile).
fn readdir(p: &Path) -> Result<(), Fail> {
    for entry in fs::read_dir(p)?.take(16) {
        let entry = entry?;
        match fs::symlink_metadata(entry.path()) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The directory of the workers' private files: next to the shared tree.
fn private_dir(root: &Path) -> PathBuf {
    root.with_file_name("private")
}

/// The value every writer gives xattr `user.s{k}` when it is `len` bytes long, so that any value
/// read back can be checked whoever set it.
fn xattr_value(k: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + k * 7 + len as u64) as u8)
        .collect()
}

fn getxattr(p: &Path, k: u64) -> Result<(), Fail> {
    let (c, n) = (cpath(p), CString::new(format!("user.s{k}")).unwrap());
    let mut buf = [0u8; 256];
    // SAFETY: safe because the strings are NUL-terminated and `buf` is valid for `buf.len()` bytes.
    let n = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(Fail::Errno(last_errno()));
    }
    let v = &buf[..n as usize];
    if v == xattr_value(k, v.len()).as_slice() {
        Ok(())
    } else {
        Err(Fail::Check(format!("user.s{k} reads back as {v:?}")))
    }
}

fn listxattr(p: &Path) -> Result<(), Fail> {
    let c = cpath(p);
    let mut buf = [0u8; 4096];
    // SAFETY: safe because the path is NUL-terminated and `buf` is valid for `buf.len()` bytes.
    let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(Fail::Errno(last_errno()));
    }
    let names = &buf[..n as usize];
    let ok = names.split(|&b| b == 0).filter(|n| !n.is_empty()).all(|n| {
        n.strip_prefix(b"user.s")
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.parse::<u64>().ok())
            .is_some_and(|k| k < XATTR_NAMES)
            // Security labels may exist on some host filesystems.
            || n.starts_with(b"security.")
    });
    if ok && names.last().is_none_or(|&b| b == 0) {
        Ok(())
    } else {
        Err(Fail::Check(format!(
            "listxattr gives {:?}",
            String::from_utf8_lossy(names)
        )))
    }
}

/// A `len`-byte buffer aligned for O_DIRECT (4096), inside `v`.
fn aligned(v: &mut Vec<u8>, len: usize) -> &mut [u8] {
    v.resize(len + 4096, 0);
    let at = v.as_ptr().align_offset(4096);
    &mut v[at..at + len]
}

fn direct_write(p: &Path, off: u64, len: usize, create: bool) -> Result<(), Fail> {
    let f = OpenOptions::new()
        .write(true)
        .create(create)
        .mode(0o644)
        .custom_flags(libc::O_DIRECT)
        .open(p)?;
    let mut v = Vec::new();
    let buf = aligned(&mut v, len);
    buf.copy_from_slice(&pattern_at(off, len));
    f.write_all_at(buf, off)?;
    Ok(())
}

fn direct_read(p: &Path, off: u64, len: usize) -> Result<(), Fail> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(p)?;
    let mut v = Vec::new();
    let buf = aligned(&mut v, len);
    let mut got = 0;
    while got < len {
        match f.read_at(&mut buf[got..], off + got as u64)? {
            0 => break,
            n => got += n,
        }
        if got % 4096 != 0 {
            // A short read at EOF; the next aligned read would start mid-block.
            break;
        }
    }
    check_pattern(p, off, &buf[..got]).map_err(Fail::Check)
}
