//! fio with `verify=crc32c` over random writes from several jobs (issue 3, point 4): four
//! buffered jobs and two `O_DIRECT` jobs, each writing 64 MiB at random offsets in random block
//! sizes of 4–64 KiB, then reading all of it back and checking every block's crc32c
//! (`do_verify=1`, `verify_fatal=1`). Then the filesystem is unmounted and mounted again, and fio
//! runs the same jobs with `--verify_only`: the data is checked once more, now read from the
//! device. fio's own exit status, the amount it wrote and verified, the daemon log, and a
//! consistency walk decide.

mod common;
mod walk;

use common::TestFs;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Jobs and bytes per job, for the totals the runs must reach.
const BUFFERED_JOBS: u64 = 4;
const DIRECT_JOBS: u64 = 2;
const JOB_BYTES: u64 = 64 << 20;
/// A bound on each run; the write-and-verify pass takes a few seconds here.
const RUNTIME_SECS: u64 = 60;

fn job_file(dir: &Path) -> String {
    format!(
        "[global]
directory={}
ioengine=psync
rw=randwrite
bsrange=4k-64k
size={JOB_BYTES}
verify=crc32c
do_verify=1
verify_fatal=1
randrepeat=1
randseed=20261121
end_fsync=1
runtime={RUNTIME_SECS}
group_reporting=1

[buffered]
numjobs={BUFFERED_JOBS}

[direct]
stonewall
direct=1
numjobs={DIRECT_JOBS}
",
        dir.display()
    )
}

/// (error, kB read, kB written) per group, from fio's terse (v3) output lines.
fn terse_groups(out: &str) -> Vec<(u64, u64, u64)> {
    out.lines()
        .filter(|l| l.starts_with("3;"))
        .map(|l| {
            let f: Vec<&str> = l.split(';').collect();
            let num = |i: usize| f[i].parse::<u64>().unwrap_or(u64::MAX);
            (num(4), num(5), num(46))
        })
        .collect()
}

/// Runs fio on `job`; panics with its output unless it exits 0. Returns its output.
fn fio(job: &Path, extra: &[&str], t: &TestFs) -> String {
    let mut cmd = Command::new("fio");
    // fio leaves its verify state files in its working directory: keep them in the scratch one.
    let scratch = job
        .parent()
        .expect("the job file is in the scratch directory");
    cmd.current_dir(scratch)
        .arg(job)
        .args(["--output-format=terse", "--terse-version=3"])
        .args(extra);
    if Command::new("fio").arg("--version").output().is_err() {
        panic!("fio is not installed: apt-get install fio (scripts/test.sh and .ci/run do)");
    }
    let out = common::output_within(&mut cmd, Duration::from_secs(4 * RUNTIME_SECS));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "fio {extra:?}: {}\n--- fio output ---\n{text}\n--- daemon log ---\n{}",
        out.status,
        t.log()
    );
    text
}

#[test]
fn fio_random_writes_verified_before_and_after_remount() {
    let mut t = TestFs::new();
    let dir = t.path("fio");
    fs::create_dir(&dir).unwrap();
    let job = t.dir.path().join("verify.fio");
    fs::write(&job, job_file(&dir)).unwrap();
    let kib = |jobs: u64| jobs * JOB_BYTES / 1024;

    let start = Instant::now();
    let out = fio(&job, &[], &t);
    let wrote = start.elapsed();
    let groups = terse_groups(&out);
    assert_eq!(
        groups,
        vec![
            (0, kib(BUFFERED_JOBS), kib(BUFFERED_JOBS)),
            (0, kib(DIRECT_JOBS), kib(DIRECT_JOBS))
        ],
        "(error, kB verified, kB written) of the buffered and O_DIRECT groups: every job must \
         write and verify all of its {JOB_BYTES} bytes within {RUNTIME_SECS}s\n{out}"
    );
    let log = t.log();
    assert!(!log.contains("checksum error"), "daemon log:\n{log}");

    t.unmount();
    t.mount();
    let start = Instant::now();
    let out = fio(&job, &["--verify_only"], &t);
    let verified = start.elapsed();
    let groups = terse_groups(&out);
    // --verify_only replays the writes without doing them (fio still counts them as written)
    // and reads and checks everything they would have written.
    assert_eq!(
        groups,
        vec![
            (0, kib(BUFFERED_JOBS), kib(BUFFERED_JOBS)),
            (0, kib(DIRECT_JOBS), kib(DIRECT_JOBS))
        ],
        "(error, kB verified, kB written) of --verify_only after the remount\n{out}"
    );
    let w = walk::walk(&t.mnt, &mut |_, _, _| Ok(()));
    assert!(
        w.problems.is_empty(),
        "consistency walk:\n{}",
        w.problems.join("\n")
    );
    let log = t.log();
    assert!(
        !log.contains("checksum error") && !log.contains("panicked"),
        "daemon log:\n{log}"
    );
    println!(
        "fio: {} buffered + {} O_DIRECT jobs x {} MiB random writes (4k-64k), crc32c-verified: \
         write+verify {wrote:.1?}; after remount --verify_only {verified:.1?}; {}",
        BUFFERED_JOBS,
        DIRECT_JOBS,
        JOB_BYTES >> 20,
        walk::summary(&w)
    );
}
