//! `stablefs mount -o`: the comma-separated options, as a user or `mount(8)` gives them.

use fuser::MountOption;
use stablefs::fs::{ms, Behaviour};

/// Most request loops we allow: fuser gives each one a 16 MiB request buffer.
const MAX_FUSE_THREADS: usize = 64;
const MAX_WORKERS: usize = 256;
/// Longest `idle_commit=`: beyond a minute the interval (`commit=`) commits first anyway.
const MAX_IDLE_COMMIT_MS: u64 = 60_000;

/// Everything `-o` can say. Later options override earlier ones, as with `mount(8)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOpts {
    pub read_only: bool,
    pub allow_other: bool,
    /// `commit=SECONDS`; `None`: the filesystem's default.
    pub commit_secs: Option<u64>,
    /// `idle_commit=MS` (0: off); `None`: the filesystem's default.
    pub idle_commit_ms: Option<u64>,
    /// `threads=N`: FUSE request loops.
    pub fuse_threads: Option<usize>,
    /// `workers=N`: read/fsync worker threads.
    pub workers: Option<usize>,
    /// The generic flags (`MS_*` of `mount(2)`, without `MS_RDONLY`), set and cleared in
    /// order as `mount(8)` does: `nosuid`, `nodev`, `noexec`, the atime ones, `lazytime`,
    /// `sync`, `dirsync`.
    pub ms_flags: u64,
}

/// The generic options: each sets (`true`) or clears its `MS_*` flag.
const GENERIC: &[(&str, libc::c_ulong, bool)] = &[
    ("suid", libc::MS_NOSUID, false),
    ("nosuid", libc::MS_NOSUID, true),
    ("dev", libc::MS_NODEV, false),
    ("nodev", libc::MS_NODEV, true),
    ("exec", libc::MS_NOEXEC, false),
    ("noexec", libc::MS_NOEXEC, true),
    ("atime", libc::MS_NOATIME, false),
    ("noatime", libc::MS_NOATIME, true),
    ("diratime", libc::MS_NODIRATIME, false),
    ("nodiratime", libc::MS_NODIRATIME, true),
    ("relatime", libc::MS_RELATIME, true),
    ("norelatime", libc::MS_RELATIME, false),
    ("strictatime", libc::MS_STRICTATIME, true),
    ("nostrictatime", libc::MS_STRICTATIME, false),
    ("lazytime", libc::MS_LAZYTIME, true),
    ("nolazytime", libc::MS_LAZYTIME, false),
    ("sync", libc::MS_SYNCHRONOUS, true),
    ("async", libc::MS_SYNCHRONOUS, false),
    ("dirsync", libc::MS_DIRSYNC, true),
];

/// The `MS_*` flags that the options of [`GENERIC`] govern.
pub const GENERIC_MASK: u64 = ms(libc::MS_NOSUID
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_NOATIME
    | libc::MS_NODIRATIME
    | libc::MS_RELATIME
    | libc::MS_STRICTATIME
    | libc::MS_LAZYTIME
    | libc::MS_SYNCHRONOUS
    | libc::MS_DIRSYNC);

impl MountOpts {
    /// The generic flags, for the kernel mount: only those that are set (a mount by root is
    /// `suid`, `dev`, `exec` unless told otherwise, as a kernel filesystem; one through
    /// `fusermount3` by another user is always `nosuid,nodev`, fusermount3 sees to it).
    pub fn vfs_flags(&self) -> Vec<MountOption> {
        use MountOption::*;
        let custom = |name: &str| CUSTOM(name.to_string());
        [
            (libc::MS_NOSUID, NoSuid),
            (libc::MS_NODEV, NoDev),
            (libc::MS_NOEXEC, NoExec),
            (libc::MS_NOATIME, NoAtime),
            (libc::MS_NODIRATIME, custom("nodiratime")),
            (libc::MS_RELATIME, custom("relatime")),
            (libc::MS_STRICTATIME, custom("strictatime")),
            (libc::MS_LAZYTIME, custom("lazytime")),
            (libc::MS_SYNCHRONOUS, Sync),
            (libc::MS_DIRSYNC, DirSync),
        ]
        .into_iter()
        .filter(|(flag, _)| self.ms_flags & ms(*flag) != 0)
        .map(|(_, option)| option)
        .collect()
    }

    /// What the filesystem itself must do about the generic options.
    pub fn behaviour(&self) -> Behaviour {
        Behaviour::from_ms_flags(self.ms_flags)
    }
}

/// Parses every `-o` argument in order. An unknown option is an error naming it.
pub fn parse_mount_options(args: &[String]) -> Result<MountOpts, String> {
    parse_over(MountOpts::default(), args)
}

/// Applies the `-o` arguments, in order, over `o`.
pub fn parse_over(mut o: MountOpts, args: &[String]) -> Result<MountOpts, String> {
    for option in args.iter().flat_map(|a| a.split(',')) {
        let (key, value) = match option.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (option, None),
        };
        if let (Some((_, flag, set)), None) = (GENERIC.iter().find(|g| g.0 == key), value) {
            if *set {
                o.ms_flags |= ms(*flag);
            } else {
                o.ms_flags &= !(ms(*flag));
            }
            continue;
        }
        match (key, value) {
            ("", None) => {} // "ro,,rw" or a trailing comma
            ("ro", None) => o.read_only = true,
            ("rw", None) => o.read_only = false,
            ("allow_other", None) => o.allow_other = true,
            // Always on: the kernel does all permission checks.
            ("default_permissions", None) => {}
            ("commit", Some(v)) => o.commit_secs = Some(number(option, v, 1, None)?),
            ("idle_commit", Some(v)) => {
                o.idle_commit_ms = Some(number(option, v, 0, Some(MAX_IDLE_COMMIT_MS))?);
            }
            ("threads", Some(v)) => {
                o.fuse_threads = Some(number(option, v, 1, Some(MAX_FUSE_THREADS))?);
            }
            ("workers", Some(v)) => o.workers = Some(number(option, v, 1, Some(MAX_WORKERS))?),
            ("commit" | "idle_commit" | "threads" | "workers", None) => {
                return Err(format!("mount option '{key}' needs a value ({key}=N)"));
            }
            ("remount", None) => {
                return Err("'remount' is for a mounted filesystem: mount -o remount,... DIR, or stablefs remount -o ... DIR".into());
            }
            // What mount(8) and fstab pass along: accepted, nothing to do. x-* and comment=
            // are fstab notes for userspace.
            ("defaults" | "_netdev" | "nofail" | "auto" | "noauto", None) => {}
            ("user" | "nouser", None) => {}
            ("comment", Some(_)) => {}
            (k, _) if k.starts_with("x-") => {}
            _ => return Err(format!("unknown mount option '{option}'")),
        }
    }
    Ok(o)
}

/// A whole number from `min` to `max` (no upper limit if `None`).
fn number<T>(option: &str, value: &str, min: T, max: Option<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match value.parse::<T>() {
        Ok(n) if n >= min && max.is_none_or(|max| n <= max) => Ok(n),
        _ => Err(match max {
            Some(max) => {
                format!("mount option '{option}': give a whole number from {min} to {max}")
            }
            None => format!("mount option '{option}': give a whole number, at least {min}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<MountOpts, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse_mount_options(&args)
    }

    #[test]
    fn defaults() {
        let o = parse(&[]).unwrap();
        assert_eq!(o, MountOpts::default());
        assert!(!o.read_only && !o.allow_other && o.vfs_flags().is_empty());
    }

    #[test]
    fn our_options() {
        let o = parse(&["ro,allow_other", "commit=30,threads=4", "workers=8"]).unwrap();
        assert!(o.read_only && o.allow_other);
        assert_eq!(o.commit_secs, Some(30));
        assert_eq!(o.idle_commit_ms, None);
        assert_eq!(parse(&["idle_commit=0"]).unwrap().idle_commit_ms, Some(0));
        assert_eq!(
            parse(&["idle_commit=250"]).unwrap().idle_commit_ms,
            Some(250)
        );
        assert!(parse(&["idle_commit=60001"]).is_err());
        assert!(parse(&["idle_commit"]).is_err());
        assert_eq!(o.fuse_threads, Some(4));
        assert_eq!(o.workers, Some(8));
        assert!(
            !parse(&["ro", "rw"]).unwrap().read_only,
            "the last one wins"
        );
        assert!(parse(&["rw,ro"]).unwrap().read_only);
        assert!(parse(&["default_permissions"]).is_ok());
    }

    #[test]
    fn what_mount_8_passes_is_accepted() {
        let generic = "dev,nodev,suid,nosuid,exec,noexec,atime,noatime,relatime,defaults,\
                       _netdev,nofail,auto,noauto,user,nouser,rw,x-systemd.automount,comment=x";
        let o = parse(&[generic]).unwrap();
        assert!(!o.read_only);
        assert_eq!(
            o.vfs_flags(),
            vec![
                MountOption::NoSuid,
                MountOption::NoDev,
                MountOption::NoExec,
                MountOption::NoAtime,
                MountOption::CUSTOM("relatime".into()),
            ]
        );
        // Later options override earlier ones; what is cleared is not passed at all (root's
        // mounts are then suid, dev, exec as a kernel filesystem's).
        let o = parse(&["noexec", "exec,nodev,,"]).unwrap();
        assert_eq!(o.vfs_flags(), vec![MountOption::NoDev]);
        assert!(parse(&["suid,dev,exec"]).unwrap().vfs_flags().is_empty());
    }

    #[test]
    fn atime_sync_and_lazytime_options() {
        let custom = |n: &str| MountOption::CUSTOM(n.into());
        let o = parse(&["strictatime,nodiratime,lazytime,sync,dirsync"]).unwrap();
        assert_eq!(
            o.vfs_flags(),
            vec![
                custom("nodiratime"),
                custom("strictatime"),
                custom("lazytime"),
                MountOption::Sync,
                MountOption::DirSync,
            ]
        );
        let b = o.behaviour();
        assert_eq!(b.atime, stablefs::fs::Atime::Strict);
        assert!(b.nodiratime && b.sync && b.dirsync);
        // The default is relatime; noatime, and strictatime over it, as the kernel reads them.
        assert_eq!(parse(&[]).unwrap().behaviour(), Behaviour::default());
        assert_eq!(
            parse(&["noatime"]).unwrap().behaviour().atime,
            stablefs::fs::Atime::Never
        );
        assert_eq!(
            parse(&["noatime,strictatime"]).unwrap().behaviour().atime,
            stablefs::fs::Atime::Strict
        );
        assert_eq!(
            parse(&["strictatime,nostrictatime"]).unwrap().behaviour(),
            Behaviour::default()
        );
        let o = parse(&["sync,async,diratime,nolazytime"]).unwrap();
        assert!(o.vfs_flags().is_empty());
        assert_eq!(o.behaviour(), Behaviour::default());
        assert!(parse(&["remount,ro"]).unwrap_err().contains("remount"));
    }

    #[test]
    fn unknown_or_malformed_options_are_named() {
        assert_eq!(
            parse(&["ro,bogus"]).unwrap_err(),
            "unknown mount option 'bogus'"
        );
        assert!(parse(&["ro=1"]).unwrap_err().contains("'ro=1'"));
        assert!(parse(&["allow_other=yes"]).is_err());
        assert!(parse(&["commit"]).unwrap_err().contains("needs a value"));
        for bad in [
            "commit=0",
            "commit=-1",
            "commit=x",
            "commit=",
            "threads=0",
            "threads=65",
            "workers=0",
            "workers=1000",
            "workers=2.5",
        ] {
            let e = parse(&[bad]).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        assert_eq!(parse(&["threads=64"]).unwrap().fuse_threads, Some(64));
    }
}
