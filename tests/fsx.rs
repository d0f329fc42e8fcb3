//! fsx, the File System eXerciser (crates.io `fsx` 0.3.x), on a mounted stablefs: 100,000
//! pseudo-random operations per fixed seed, with every operation kind the tool offers switched
//! on (`tests/fsx.toml`: pread, pwrite, mmap reads, mmap writes with msync, truncate, fsync,
//! fdatasync, posix_fallocate, punch hole, sendfile, posix_fadvise, copy_file_range, close and
//! reopen, msync(MS_INVALIDATE)). fsx checks every byte it reads against its own model of the
//! file and the size after every operation; afterwards the file must read back the same after a
//! remount, and the daemon must never have logged a checksum error.
//!
//! The `fsx` binary comes from `cargo install --locked fsx` (scripts/test.sh does it) and is
//! looked for in `$FSX`, then `$CARGO_HOME/bin` (`~/.cargo/bin`), then `PATH`; a missing fsx
//! fails the test. `STABLEFS_FSX_CONFIG=PATH` runs another operation mix (e.g. to leave out
//! operations while bisecting). `benches/fsx-long.sh` is the long run of the same mix.

mod common;

use common::{cargo_tool, output_within, TestFs};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Operations per seed.
const OPS: u64 = 100_000;
/// Kills a stuck fsx well before nextest's own limit, so that the harness still cleans up.
const FSX_TIMEOUT: Duration = Duration::from_secs(280);

fn config() -> PathBuf {
    match std::env::var_os("STABLEFS_FSX_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fsx.toml"),
    }
}

/// The last `n` lines of `bytes`: fsx ends a failure with the seed and its operation log.
fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What fsx said before its operation log: the miscompare, the expected and actual bytes, the
/// step that last wrote them and the seed. The log itself (every operation) follows "LOG DUMP".
fn diagnosis(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let before_log: Vec<&str> = text
        .lines()
        .take_while(|l| !l.contains("LOG DUMP"))
        .collect();
    before_log[before_log.len().saturating_sub(80)..].join("\n")
}

fn report(out: &Output) -> String {
    format!(
        "\n--- fsx stdout (last lines) ---\n{}\n--- fsx diagnosis ---\n{}\n--- fsx operation log (last lines) ---\n{}",
        tail(&out.stdout, 40),
        diagnosis(&out.stderr),
        tail(&out.stderr, 60)
    )
}

/// Runs fsx for `OPS` operations at `seed` on a fresh mount, then checks that the file survives
/// a remount unchanged and that no read ever failed its checksum.
fn fsx_at_seed(seed: u64) {
    let fsx = cargo_tool(
        "fsx",
        "FSX",
        "fsx 0.3.",
        "cargo install --locked fsx --version '^0.3'",
    );
    let config = config();
    let mut t = TestFs::new();
    let file = t.path("fsx.data");
    let mut cmd = Command::new(&fsx);
    cmd.arg("-f")
        .arg(&config)
        .arg("-N")
        .arg(OPS.to_string())
        .arg("-S")
        .arg(seed.to_string())
        // The operation log and the expected contents of a failed run go next to the image.
        .arg("-P")
        .arg(t.dir.path())
        .arg(&file);
    let start = Instant::now();
    let out = output_within(&mut cmd, FSX_TIMEOUT);
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("All operations completed A-OK!"),
        "fsx -S {seed} -N {OPS} -f {} failed ({}) after {took:.1?}{}\n--- daemon log ---\n{}",
        config.display(),
        out.status,
        report(&out),
        tail(t.log().as_bytes(), 50)
    );
    eprintln!("fsx seed {seed}: {OPS} operations A-OK in {took:.1?}");

    let before = fs::read(&file).expect("reading the fsx file after the run");
    t.remount();
    let after = fs::read(&file).expect("reading the fsx file after a remount");
    assert!(
        before == after,
        "the fsx file changed across a remount ({} bytes before, {} after)",
        before.len(),
        after.len()
    );
    t.unmount();
    assert!(!t.log().contains("checksum error"), "{}", t.log());
}

#[test]
fn fsx_seed_191110531() {
    fsx_at_seed(191_110_531);
}

#[test]
fn fsx_seed_20261120() {
    fsx_at_seed(20_261_120);
}

#[test]
fn fsx_seed_3141592653() {
    fsx_at_seed(3_141_592_653);
}
