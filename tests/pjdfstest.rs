//! pjdfstest, the POSIX conformance suite (crates.io `pjdfstest` 0.2.x), run whole, as root, on a
//! stablefs mounted with `allow_other` and `default_permissions` (the permission tests switch to
//! the users `nobody` and `tests`), with the features of `tests/pjdfstest.toml` and a directory
//! outside the mount as the secondary filesystem for the `EXDEV` tests.
//!
//! Every test case must pass, or be listed here: [`KNOWN_FAILURES`] (with the text its failure
//! must show, so that it cannot fail for another reason unnoticed) and [`EXPECTED_SKIPS`] (cases
//! pjdfstest itself skips here), each with its reason. An unlisted failure or skip fails the
//! test, and so does a listed case that no longer fails or is no longer skipped, which keeps the
//! lists honest. The counts are printed.
//!
//! Three things around the tool itself, each explained where it is done: the suite runs in a
//! directory named by a short symlink in `/tmp` ([`suite_dir`]: socket paths, and a length
//! pjdfstest 0.2.2 cannot handle); the `*::erofs_*` cases run in a second pjdfstest run of their
//! own (an earlier case leaks a writable descriptor, after which no read-only remount can work;
//! see `tests/pjdfstest.toml`); and their `mount -o remount,ro` goes through a shim
//! ([`mount_shim`]) that keeps mount(8) from handing it to the FUSE mount helper.
//!
//! The `pjdfstest` binary comes from `cargo install --locked pjdfstest` (scripts/test.sh does it,
//! and creates the user `tests`); it is looked for in `$PJDFSTEST`, then `$CARGO_HOME/bin`
//! (`~/.cargo/bin`), then `PATH`. A missing tool or user fails the test.

mod common;

use common::{cargo_tool, output_within, scratch_dir, TestFs};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Kills a stuck suite well before nextest's own limit, so that the harness still cleans up.
const SUITE_TIMEOUT: Duration = Duration::from_secs(280);

/// Failures that are not stablefs's: (test case, text its failure message must contain, why).
const KNOWN_FAILURES: &[(&str, &str, &str)] = &[];

/// Test cases that pjdfstest skips on this mount: (test case, why).
const EXPECTED_SKIPS: &[(&str, &str)] = &[(
    "link::link_count_max",
    "pjdfstest cannot learn LINK_MAX: glibc's pathconf(_PC_LINK_MAX) knows limits only by \
     filesystem magic and answers the default 127 for FUSE, which has no way to report one, and \
     pjdfstest skips on 127 (stablefs's limit is 65000, as ext4's)",
)];

/// How pjdfstest ended one test case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    Skipped,
    /// Listed in the configuration's `expected_failures` (empty here) and failed.
    FailedAsExpected,
    /// Listed in `expected_failures` and passed: pjdfstest counts it as a failure.
    PassedUnexpectedly,
}

/// One test case's outcome and the indented lines pjdfstest printed under it (the panic message
/// of a failure, the reasons for a skip).
#[derive(Debug)]
struct CaseResult {
    outcome: Outcome,
    details: Vec<String>,
}

/// Removes ANSI colour sequences, in case pjdfstest colours its output despite `NO_COLOR`.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses pjdfstest's report: `NAME<padding>STATUS` per test case, indented detail lines after
/// it, and a summary line at the end.
fn parse_report(stdout: &str) -> BTreeMap<String, CaseResult> {
    const STATUSES: [(&str, Outcome); 5] = [
        (" PASSED UNEXPECTEDLY", Outcome::PassedUnexpectedly),
        (" failed as expected", Outcome::FailedAsExpected),
        (" FAILED", Outcome::Failed),
        (" skipped", Outcome::Skipped),
        (" ok", Outcome::Passed),
    ];
    let mut results: BTreeMap<String, CaseResult> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in stdout.lines().map(strip_ansi) {
        if line.starts_with('\t') || line.starts_with(' ') {
            if let Some(r) = last.as_ref().and_then(|n| results.get_mut(n)) {
                r.details.push(line.trim().to_owned());
            }
            continue;
        }
        let line = line.trim_end();
        let parsed = STATUSES.iter().find_map(|(status, outcome)| {
            let name = line.strip_suffix(status)?.trim_end();
            let plausible = name.contains("::") && !name.contains(char::is_whitespace);
            plausible.then(|| (name.to_owned(), *outcome))
        });
        match parsed {
            Some((name, outcome)) => {
                let old = results.insert(
                    name.clone(),
                    CaseResult {
                        outcome,
                        details: Vec::new(),
                    },
                );
                assert!(old.is_none(), "pjdfstest reported {name} twice");
                last = Some(name);
            }
            // Anything else (the summary, a backtrace) ends the details of the case before it.
            None => last = None,
        }
    }
    results
}

fn pathconf(path: &Path, name: libc::c_int) -> usize {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: safe because `c` is a NUL-terminated string that outlives the call, which reads
    // nothing else.
    let v = unsafe { libc::pathconf(c.as_ptr(), name) };
    usize::try_from(v).unwrap_or_else(|_| panic!("pathconf({}, {name}) = {v}", path.display()))
}

/// The directory pjdfstest runs in, named by a short path: a symlink in `/tmp` (removed with
/// the returned `TempDir`) to a fresh directory in the mount. pjdfstest puts each case in
/// `DIR/.tmpXXXXXX/.tmpXXXXXX` and names files with 32 random characters, and the length of
/// DIR is constrained twice:
/// - the socket cases bind(2) to such names, some in a subdirectory of the case's, and a
///   socket's path has at most 107 bytes (`sockaddr_un`): the mount, under `target/tmp` in the
///   checkout, is far too deep for that;
/// - pjdfstest 0.2.2 builds its longest path (`create_path_max`, used by every
///   `*::enametoolong_path` case) from components of NAME_MAX / 2 bytes and computes
///   `(PATH_MAX - 1 - len) % (NAME_MAX / 2) - 1` for the length `len` of a case's directory:
///   when the remainder is 0 that underflows and the tool dies with "capacity overflow" before
///   the filesystem is asked anything. The symlink's name is padded to keep the remainder away
///   from 0, so that those cases test the filesystem wherever the repository is checked out.
fn suite_dir(mnt: &Path) -> (TempDir, PathBuf) {
    const SOCKET_PATH_MAX: usize = 107;
    const CASE_DIRS: usize = 2 * "/.tmpXXXXXX".len();
    // A subdirectory, then the socket.
    const NAMES: usize = 2 * ("/".len() + 32);
    let name_max = pathconf(mnt, libc::_PC_NAME_MAX);
    let path_max = pathconf(mnt, libc::_PC_PATH_MAX);
    let component = name_max / 2;
    let target = mnt.join("pjdfstest");
    fs::create_dir(&target).unwrap_or_else(|e| panic!("mkdir {}: {e}", target.display()));
    let links = tempfile::Builder::new()
        .prefix("p")
        .tempdir_in("/tmp")
        .expect("creating a directory in /tmp");
    let base = links.path().as_os_str().len() + "/".len();
    let longest = SOCKET_PATH_MAX - NAMES - CASE_DIRS;
    assert!(
        base < longest,
        "{} is too long for pjdfstest's socket paths",
        links.path().display()
    );
    let pad = (1..=longest - base)
        .min_by_key(|pad| {
            let len = base + pad + CASE_DIRS;
            ((path_max - 1 - len) % component).abs_diff(component / 2)
        })
        .unwrap();
    let link = links.path().join("d".repeat(pad));
    std::os::unix::fs::symlink(&target, &link)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
    (links, link)
}

/// The real `mount` on `PATH`.
fn real_mount() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("mount"))
        .find(|p| p.is_file())
        .expect("mount(8) not found on PATH (util-linux)")
}

/// A directory holding a `mount` to go first on pjdfstest's `PATH`, for the erofs cases, which
/// run `mount -o remount,ro DIR` (and `rw`) with DIR the topmost directory on the same device
/// as the case's (below our symlink, not the mountpoint). The shim remounts the mount that
/// holds DIR (findmnt -T), and with `-i`: for a `fuse.stablefs` mount, mount(8) would otherwise
/// hand the remount to the FUSE helper (mount.fuse3), which tries to start a daemon named
/// `stablefs` instead. The kernel then remounts the FUSE superblock read-only and back itself,
/// as it does for ext4. Every other call (the rmdir cases' `mount --bind`) goes to mount(8).
fn mount_shim(dir: &Path) -> PathBuf {
    let shim = dir.join("mount");
    let script = format!(
        "#!/bin/sh\n\
         # Written by tests/pjdfstest.rs (see mount_shim there).\n\
         if [ $# = 3 ] && [ \"$1\" = -o ]; then\n\
         \x20 case $2 in\n\
         \x20   remount,*)\n\
         \x20     target=$(findmnt -n -o TARGET -T \"$3\") || exit 32\n\
         \x20     exec '{mount}' -i -o \"$2\" \"$target\" ;;\n\
         \x20 esac\n\
         fi\n\
         exec '{mount}' \"$@\"\n",
        mount = real_mount().display()
    );
    fs::write(&shim, script).unwrap_or_else(|e| panic!("writing {}: {e}", shim.display()));
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_owned()
}

/// One pjdfstest run: its whole output and the parsed outcome of each case.
struct Run {
    what: String,
    stdout: String,
    stderr: String,
    results: BTreeMap<String, CaseResult>,
}

impl Run {
    fn output(&self) -> String {
        format!(
            "\n--- {} stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.stdout, self.stderr
        )
    }
}

/// Runs pjdfstest with `config` in `dir` (the cases matching `patterns`, all if none), with
/// `other` as the secondary filesystem and `path_prefix` first on `PATH`. Panics if the run did
/// not get to its summary.
fn run_pjdfstest(
    t: &TestFs,
    config: &Path,
    dir: &Path,
    other: &Path,
    path_prefix: &Path,
    patterns: &[&str],
) -> Run {
    let bin = cargo_tool(
        "pjdfstest",
        "PJDFSTEST",
        "pjdfstest 0.2.",
        "cargo install --locked pjdfstest --version '^0.2'",
    );
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(path_prefix.to_owned()).chain(std::env::split_paths(&path)),
    )
    .unwrap();
    let mut cmd = Command::new(&bin);
    cmd.arg("-c")
        .arg(config)
        .arg("-p")
        .arg(dir)
        .arg("-s")
        .arg(other)
        .args(patterns)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0");
    let what = format!("{cmd:?}");
    let start = Instant::now();
    let out = output_within(&mut cmd, SUITE_TIMEOUT);
    let run = Run {
        what,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        results: BTreeMap::new(),
    };
    assert!(
        run.stdout
            .lines()
            .any(|l| strip_ansi(l).starts_with("Summary:")),
        "pjdfstest did not finish ({}){}\n--- daemon log ---\n{}",
        out.status,
        run.output(),
        t.log()
    );
    eprintln!("{} took {:.1?}", run.what, start.elapsed());
    Run {
        results: parse_report(&run.stdout),
        ..run
    }
}

/// What pjdfstest prints for a case it skips because remounts are off in its configuration.
const NO_REMOUNT: &str = "Remounts (allow_remount) are not allowed";

#[test]
fn pjdfstest_whole_suite() {
    for user in ["nobody", "tests"] {
        let out = output_within(
            Command::new("getent").args(["passwd", user]),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "pjdfstest needs the user {user}: scripts/test.sh creates `tests` (useradd -M tests)"
        );
    }
    let start = Instant::now();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pjdfstest.toml");
    let mut t = TestFs::with("1G", &[], "allow_other,default_permissions");
    let (_links, dir) = suite_dir(&t.mnt);
    // The secondary filesystem of the EXDEV cases: the scratch disk, outside the mount. The
    // `mount` shim and the erofs configuration live there too.
    let other = scratch_dir();
    let shim = scratch_dir();
    let shim = mount_shim(shim.path());

    // 1. The whole suite, remounts off.
    let mut main = run_pjdfstest(&t, &config, &dir, other.path(), &shim, &[]);
    let mut results = std::mem::take(&mut main.results);

    // 2. The erofs cases, on their own, remounts on.
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("\nallow_remount = false\n"),
        "{}",
        config.display()
    );
    let erofs_config = other.path().join("pjdfstest-erofs.toml");
    fs::write(
        &erofs_config,
        text.replace("\nallow_remount = false\n", "\nallow_remount = true\n"),
    )
    .unwrap();
    let erofs = run_pjdfstest(&t, &erofs_config, &dir, other.path(), &shim, &["erofs"]);
    assert!(
        !erofs.results.is_empty(),
        "no erofs cases{}",
        erofs.output()
    );
    let full = format!("{}{}", main.output(), erofs.output());
    for (name, r) in erofs.results {
        let skipped_for_remount = results.get(&name).is_some_and(|m| {
            m.outcome == Outcome::Skipped && m.details.iter().any(|d| d.contains(NO_REMOUNT))
        });
        assert!(
            skipped_for_remount,
            "{name} ran in the erofs run but was not skipped for remounts in the whole run: \
             {:?}{full}",
            results.get(&name).map(|m| (m.outcome, &m.details))
        );
        results.insert(name, r);
    }

    let mut problems = Vec::new();
    let count = |o: Outcome| results.values().filter(|r| r.outcome == o).count();
    let known_failures: BTreeMap<&str, (&str, &str)> = KNOWN_FAILURES
        .iter()
        .map(|&(name, text, why)| (name, (text, why)))
        .collect();
    let expected_skips: BTreeMap<&str, &str> = EXPECTED_SKIPS.iter().copied().collect();
    for (name, r) in &results {
        let known = known_failures.get(name.as_str());
        match (r.outcome, known) {
            (Outcome::Failed, Some((text, _))) if r.details.iter().any(|d| d.contains(text)) => {}
            (Outcome::Failed, Some((text, why))) => problems.push(format!(
                "{name} failed, but not with {text:?} (the known failure: {why}): {:?}",
                r.details
            )),
            (Outcome::Failed, None) => problems.push(format!("{name} FAILED: {:?}", r.details)),
            (Outcome::Passed, Some((_, why))) => problems.push(format!(
                "{name} now passes: remove it from KNOWN_FAILURES ({why})"
            )),
            (Outcome::Skipped, _) if !expected_skips.contains_key(name.as_str()) => problems.push(
                format!("{name} skipped, not in EXPECTED_SKIPS: {:?}", r.details),
            ),
            (Outcome::FailedAsExpected | Outcome::PassedUnexpectedly, _) => problems.push(format!(
                "{name}: {:?}: tests/pjdfstest.toml must not list expected_failures \
                 (KNOWN_FAILURES here does)",
                r.outcome
            )),
            _ => {}
        }
    }
    for name in known_failures.keys() {
        if !results.contains_key(*name) {
            problems.push(format!("{name} (KNOWN_FAILURES) was not run"));
        }
    }
    for (name, why) in &expected_skips {
        match results.get(*name) {
            Some(r) if r.outcome == Outcome::Skipped => {}
            Some(r) => problems.push(format!(
                "{name} is in EXPECTED_SKIPS ({why}) but was not skipped: {:?}",
                r.outcome
            )),
            None => problems.push(format!("{name} (EXPECTED_SKIPS) was not reported")),
        }
    }

    let (passed, failed, skipped) = (
        count(Outcome::Passed),
        count(Outcome::Failed),
        count(Outcome::Skipped),
    );
    eprintln!(
        "pjdfstest: {passed} passed, {failed} failed ({} known), {skipped} skipped, {} total, \
         in {:.1?}",
        KNOWN_FAILURES.len(),
        results.len(),
        start.elapsed()
    );
    assert!(
        problems.is_empty(),
        "pjdfstest: {passed} passed, {failed} failed, {skipped} skipped of {}; {} unexpected:\n  \
         {}{}",
        results.len(),
        problems.len(),
        problems.join("\n  "),
        full
    );
    // At least as many cases as on ext4 here (398), so that a broken parse cannot pass.
    assert!(
        results.len() >= 398 && passed >= 300,
        "only {} cases parsed ({passed} passed){}",
        results.len(),
        full
    );

    t.unmount();
    assert!(!t.log().contains("checksum error"), "{}", t.log());
}

#[test]
fn report_parsing() {
    let report = "\
chmod::ctime                                                                  ok
open::enametoolong_path                                                   FAILED
\tcapacity overflow
chflags::eperm                                                           skipped
\trequires features: chflags
utimensat::y2038                                              failed as expected

Summary: 1 failed, 1 skipped, 1 passed, 1 expected failures, 4 total
";
    let r = parse_report(report);
    assert_eq!(r.len(), 4);
    assert_eq!(r["chmod::ctime"].outcome, Outcome::Passed);
    assert_eq!(r["open::enametoolong_path"].outcome, Outcome::Failed);
    assert_eq!(r["open::enametoolong_path"].details, ["capacity overflow"]);
    assert_eq!(r["chflags::eperm"].outcome, Outcome::Skipped);
    assert_eq!(r["utimensat::y2038"].outcome, Outcome::FailedAsExpected);
    let coloured = "\u{1b}[34mchmod::ctime\u{1b}[0m    \u{1b}[32mok\u{1b}[0m";
    assert_eq!(
        parse_report(coloured)["chmod::ctime"].outcome,
        Outcome::Passed
    );
    let names: BTreeSet<_> = r.keys().map(String::as_str).collect();
    assert!(names.contains("chflags::eperm"));
}
