//! `stablefs remount [-o OPTIONS]... MOUNTPOINT`: changes the generic options of a mounted
//! stablefs, as `mount -o remount,OPTIONS MOUNTPOINT` does for a kernel filesystem (the
//! mount(8) helper calls this for a remount). The kernel's remount (`mount(2)` with
//! `MS_REMOUNT`) and the daemon's (the remount ioctl, `Fs::remount`) go in the order that
//! loses nothing:
//! - to read-only: the kernel first (it writes its cached dirty pages to the daemon and then
//!   refuses every change), then the daemon, which commits everything and stops changing the
//!   medium;
//! - to read-write: the daemon first, then the kernel (undone in the daemon if the kernel
//!   refuses).
//!
//! The daemon also follows remounts made without this command (`mount -i`, a program calling
//! `mount(2)`): see `mount::spawn_mount_watcher`.

use super::mountinfo;
use super::options::{parse_over, MountOpts, GENERIC_MASK};
use nix::mount::MsFlags;
use stablefs::fs::ms;
use stablefs::fuse::REMOUNT_IOCTL;
use std::path::Path;

/// What mount(8) passes on a remount besides the options: the word itself and the FUSE
/// kernel's own options it found in mountinfo; none of them can change.
fn passed_along(option: &str) -> bool {
    let key = option.split('=').next().unwrap_or("");
    matches!(
        key,
        "remount"
            | "user_id"
            | "group_id"
            | "default_permissions"
            | "allow_other"
            | "fsname"
            | "subtype"
            | "rootmode"
            | "max_read"
            | "blksize"
    )
}

/// The flags the mount has after applying `options` over `now` (its flags now).
pub fn new_flags(now: u64, options: &[String]) -> Result<u64, String> {
    let base = MountOpts {
        read_only: now & ms(libc::MS_RDONLY) != 0,
        ms_flags: now & GENERIC_MASK,
        ..MountOpts::default()
    };
    let given: Vec<String> = options
        .iter()
        .flat_map(|a| a.split(','))
        .filter(|o| !passed_along(o))
        .map(str::to_string)
        .collect();
    let o = parse_over(base.clone(), &given)?;
    let fixed = MountOpts {
        read_only: o.read_only,
        ms_flags: o.ms_flags,
        ..base
    };
    if o != fixed {
        return Err(
            "commit=, idle_commit=, threads= and workers= cannot change on a remount".into(),
        );
    }
    Ok(o.ms_flags | if o.read_only { ms(libc::MS_RDONLY) } else { 0 })
}

/// Tells the daemon of the mount at `mountpoint` its flags now.
fn tell_daemon(mountpoint: &Path, flags: u64) -> Result<(), String> {
    let mut buf = flags.to_le_bytes();
    super::mount_ioctl::ask(mountpoint, REMOUNT_IOCTL, &mut buf, "remount").map_err(|e| {
        if e.contains("Read-only file system") {
            "cannot remount read-write: the filesystem was mounted read-only (asked for, or damaged, or made by a newer stablefs); unmount it and mount it rw".into()
        } else {
            e
        }
    })
}

/// The flags for `mount(2)` (`c_ulong`, narrower than the ioctl's u64 on 32-bit targets).
#[allow(clippy::unnecessary_cast)]
fn kernel(flags: u64) -> MsFlags {
    MsFlags::from_bits_truncate(flags as libc::c_ulong)
}

pub fn run(options: &[String], mountpoint: &Path) -> Result<(), String> {
    let mountpoint = mountpoint
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", mountpoint.display()))?;
    let now = mountinfo::current(&mountpoint)?;
    if now.fstype != "fuse.stablefs" {
        return Err(format!(
            "{} is not a stablefs mount (it is {})",
            mountpoint.display(),
            now.fstype
        ));
    }
    let flags = new_flags(now.ms_flags, options)?;
    let to_read_only = flags & ms(libc::MS_RDONLY) != 0;
    if !to_read_only {
        tell_daemon(&mountpoint, flags)?;
    }
    let kernel_flags = kernel(flags) | MsFlags::MS_REMOUNT;
    if let Err(e) = nix::mount::mount(
        None::<&str>,
        &mountpoint,
        None::<&str>,
        kernel_flags,
        None::<&str>,
    ) {
        if !to_read_only {
            let _ = tell_daemon(&mountpoint, now.ms_flags);
        }
        return Err(format!("cannot remount {}: {e}", mountpoint.display()));
    }
    if to_read_only {
        tell_daemon(&mountpoint, flags)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> Vec<String> {
        vec![s.to_string()]
    }

    #[test]
    fn what_mount_8_passes_on_a_remount() {
        let now = ms(libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RELATIME);
        // `mount -o remount,ro DIR`: the current options, then ours.
        let f = new_flags(
            now,
            &opts("ro,nosuid,nodev,relatime,remount,user_id=0,group_id=0,default_permissions"),
        )
        .unwrap();
        assert_eq!(f, now | ms(libc::MS_RDONLY));
        assert_eq!(new_flags(f, &opts("remount,rw")).unwrap(), now);
        // Options not given stay as they are.
        assert_eq!(new_flags(now, &[]).unwrap(), now);
        let f = new_flags(now, &opts("strictatime,suid,sync")).unwrap();
        assert_eq!(
            f,
            ms(libc::MS_NODEV | libc::MS_RELATIME | libc::MS_STRICTATIME | libc::MS_SYNCHRONOUS)
        );
    }

    #[test]
    fn fixed_and_unknown_options_are_refused() {
        assert!(new_flags(0, &opts("commit=3"))
            .unwrap_err()
            .contains("cannot change"));
        assert!(new_flags(0, &opts("threads=2")).is_err());
        assert_eq!(
            new_flags(0, &opts("bogus")).unwrap_err(),
            "unknown mount option 'bogus'"
        );
    }
}
