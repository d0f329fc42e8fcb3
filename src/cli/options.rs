//! `stablefs mount -o`: the comma-separated options, as a user or `mount(8)` gives them.

use fuser::MountOption;

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
    dev: Option<bool>,
    suid: Option<bool>,
    exec: Option<bool>,
    atime: Option<bool>,
}

impl MountOpts {
    /// The generic VFS flags that were given, for the kernel mount.
    pub fn vfs_flags(&self) -> Vec<MountOption> {
        use MountOption::*;
        let pick = |set: Option<bool>, on: MountOption, off: MountOption| {
            set.map(|yes| if yes { on } else { off })
        };
        [
            pick(self.dev, Dev, NoDev),
            pick(self.suid, Suid, NoSuid),
            pick(self.exec, Exec, NoExec),
            pick(self.atime, Atime, NoAtime),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Parses every `-o` argument in order. An unknown option is an error naming it.
pub fn parse_mount_options(args: &[String]) -> Result<MountOpts, String> {
    let mut o = MountOpts::default();
    for option in args.iter().flat_map(|a| a.split(',')) {
        let (key, value) = match option.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (option, None),
        };
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
            ("dev" | "nodev", None) => o.dev = Some(key == "dev"),
            ("suid" | "nosuid", None) => o.suid = Some(key == "suid"),
            ("exec" | "noexec", None) => o.exec = Some(key == "exec"),
            ("atime" | "noatime", None) => o.atime = Some(key == "atime"),
            // What mount(8) and fstab pass along: accepted, nothing to do. relatime is the
            // kernel's default; x-* and comment= are fstab notes for userspace.
            ("relatime" | "defaults" | "_netdev" | "nofail" | "auto" | "noauto", None) => {}
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
                MountOption::NoDev,
                MountOption::NoSuid,
                MountOption::NoExec,
                MountOption::NoAtime
            ]
        );
        let o = parse(&["noexec", "exec,nodev,,"]).unwrap();
        assert_eq!(o.vfs_flags(), vec![MountOption::NoDev, MountOption::Exec]);
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
