//! Differential tests: the same system calls on ext4 (a loop mount) and on stablefs, as root
//! and as unprivileged users, with the results compared. ext4 is the truth, so such a test
//! cannot drift from it the way a hand-written expectation can.
//!
//! A [`Pair`] holds both mounts. Each [`Pair::same`] runs one `sh` script in a fresh working
//! directory on each filesystem (`t/` under the mount, so ext4's `lost+found` never shows) as
//! the given [`User`], and requires the same exit status, standard output and standard error.
//! Scripts use relative paths (so error messages match) and print only what must agree:
//! modes, sizes, errno texts, ACL text, orderings of times, never inode numbers or times
//! themselves. The shell, coreutils, `getfacl`/`setfacl`, `xfs_io` and `python3` are all there
//! (scripts/test.sh installs them).

use super::{Ext4, TestFs};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Who runs a script: exactly `uid`, `gid` and the supplementary `groups` (none unless
/// given); root runs as the test does.
#[derive(Clone, Debug)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (an unprivileged user's only; root keeps its own).
    pub groups: Vec<u32>,
}

impl User {
    pub fn root() -> User {
        User {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
        }
    }
    /// `nobody:nogroup`.
    pub fn nobody() -> User {
        User::id(65534, 65534)
    }
    /// Any numeric user; it need not exist in `/etc/passwd`.
    pub fn id(uid: u32, gid: u32) -> User {
        User {
            uid,
            gid,
            groups: Vec::new(),
        }
    }
    pub fn with_groups(mut self, groups: &[u32]) -> User {
        self.groups = groups.to_vec();
        self
    }
    fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// What one script did on one filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn show(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "exit status: {:?}", self.status);
        let _ = writeln!(s, "--- stdout\n{}", self.stdout);
        let _ = writeln!(s, "--- stderr\n{}", self.stderr);
        s
    }
}

/// How long one script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// ext4 and stablefs, mounted side by side, each with a world-writable working directory `t`.
pub struct Pair {
    pub ext4: Ext4,
    pub stable: TestFs,
}

impl Pair {
    /// Default ext4 (1 GiB) and stablefs (1 GiB, mounted `allow_other` so that other users
    /// can reach it).
    #[track_caller]
    pub fn new() -> Pair {
        Pair::with(&[], "", &[], "")
    }

    /// `ext4_mkfs`/`ext4_opts`: more `mkfs.ext4` arguments and mount options;
    /// `stable_mkfs`/`stable_opts`: the same for stablefs (`allow_other` is always added).
    #[track_caller]
    pub fn with(
        ext4_mkfs: &[&str],
        ext4_opts: &str,
        stable_mkfs: &[&str],
        stable_opts: &str,
    ) -> Pair {
        let ext4 = Ext4::with("1G", ext4_mkfs, ext4_opts);
        let opts = match stable_opts {
            "" => "allow_other".to_string(),
            o => format!("allow_other,{o}"),
        };
        let stable = TestFs::with("1G", stable_mkfs, &opts);
        let pair = Pair { ext4, stable };
        for root in pair.roots() {
            std::fs::create_dir(&root).unwrap();
            std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .unwrap();
        }
        pair
    }

    /// The working directories: ext4's, then stablefs's.
    pub fn roots(&self) -> [PathBuf; 2] {
        [self.ext4.path("t"), self.stable.path("t")]
    }

    /// Runs `script` on both filesystems as `user`; returns both outcomes (ext4's first).
    #[track_caller]
    pub fn run(&self, user: &User, script: &str) -> (Outcome, Outcome) {
        let [e, s] = self.roots();
        (run_script(&e, user, script), run_script(&s, user, script))
    }

    /// Runs `script` on both as `user` and requires the same outcome; returns stablefs's
    /// standard output.
    #[track_caller]
    pub fn same(&self, user: &User, script: &str) -> String {
        let (e, s) = self.run(user, script);
        assert!(
            e == s,
            "stablefs differs from ext4 as uid {} gid {} groups {:?}, running:\n{script}\n\
             ===== ext4\n{}===== stablefs\n{}===== stablefs daemon log (tail)\n{}",
            user.uid,
            user.gid,
            user.groups,
            e.show(),
            s.show(),
            tail(&self.stable.log(), 40),
        );
        s.stdout
    }
}

impl Default for Pair {
    fn default() -> Self {
        Pair::new()
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `sh -c script` in `dir` as `user`, killed after `SCRIPT_TIMEOUT`.
#[track_caller]
pub fn run_script(dir: &Path, user: &User, script: &str) -> Outcome {
    // setpriv (util-linux) sets the groups before it drops the user; std's `Command::uid`
    // cannot set supplementary groups.
    let mut cmd = Command::new("setpriv");
    if !user.is_root() {
        cmd.arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid));
        match user.groups.as_slice() {
            [] => cmd.arg("--clear-groups"),
            g => cmd.arg(format!(
                "--groups={}",
                g.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            )),
        };
    }
    cmd.args(["sh", "-c"])
        .arg(format!("set -u\n{script}"))
        .current_dir(dir)
        .env("LC_ALL", "C")
        .env("HOME", "/");
    let out = super::output_within(&mut cmd, SCRIPT_TIMEOUT);
    Outcome {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
