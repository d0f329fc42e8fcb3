//! The kernel mount: `mount(2)` on a `/dev/fuse` fd that is then handed to fuser
//! (`Session::from_fd`), instead of fuser's `Session::new`.
//!
//! Why: fuser 0.18 unmounts again when its session ends, deciding whether the mount still
//! exists by polling `/dev/fuse` for `POLLERR` — which is exactly what the fd reports *after*
//! the kernel has unmounted. So once a session has ended (an outside `umount`, or ours), fuser
//! calls `umount(2)` on the mountpoint path after `destroy` has committed, and by then that path
//! may hold someone else's new mount (a test that remounts at once, say). Mounting here means
//! the only unmounts are the kernel's, an outside `umount` and our signal thread's.
//!
//! It also honours `Subtype`: the mount shows as `fuse.stablefs` in `/proc/mounts` (fuser's
//! own `mount(2)` path drops it).

use super::StableFuse;
use fuser::{Config, MountOption, Session, SessionACL};
use log::warn;
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::unistd::{getgid, getuid};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What `mount(2)` gets for a configuration.
#[derive(Debug, PartialEq, Eq)]
struct KernelMount {
    source: String,
    fstype: String,
    flags: MsFlags,
    /// Without the leading `fd=...,rootmode=...,user_id=...,group_id=...` part.
    options: Vec<&'static str>,
}

fn kernel_mount(config: &Config) -> io::Result<KernelMount> {
    // fuser's defaults: no device nodes, no setuid, unless asked for.
    let mut m = KernelMount {
        source: "stablefs".into(),
        fstype: "fuse".into(),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        options: Vec::new(),
    };
    for option in &config.mount_options {
        let (flag, on) = match option {
            MountOption::FSName(name) => {
                m.source = name.clone();
                continue;
            }
            MountOption::Subtype(subtype) => {
                m.fstype = format!("fuse.{subtype}");
                continue;
            }
            MountOption::DefaultPermissions => {
                m.options.push("default_permissions");
                continue;
            }
            MountOption::RO => (MsFlags::MS_RDONLY, true),
            MountOption::RW => (MsFlags::MS_RDONLY, false),
            MountOption::Dev => (MsFlags::MS_NODEV, false),
            MountOption::NoDev => (MsFlags::MS_NODEV, true),
            MountOption::Suid => (MsFlags::MS_NOSUID, false),
            MountOption::NoSuid => (MsFlags::MS_NOSUID, true),
            MountOption::Exec => (MsFlags::MS_NOEXEC, false),
            MountOption::NoExec => (MsFlags::MS_NOEXEC, true),
            MountOption::Atime => (MsFlags::MS_NOATIME, false),
            MountOption::NoAtime => (MsFlags::MS_NOATIME, true),
            MountOption::Sync => (MsFlags::MS_SYNCHRONOUS, true),
            MountOption::Async => (MsFlags::MS_SYNCHRONOUS, false),
            MountOption::DirSync => (MsFlags::MS_DIRSYNC, true),
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("mount option {other:?} is not supported"),
                ))
            }
        };
        m.flags.set(flag, on);
    }
    // fuser enforces RootAndOwner itself; the kernel only knows allow_other.
    if config.acl != SessionACL::Owner {
        m.options.push("allow_other");
    }
    Ok(m)
}

/// Mounts on `mountpoint` and returns the session, handshake done, not yet serving. Without
/// the privilege to call `mount(2)`, falls back to fuser's own mount (through fusermount).
pub fn mount(
    fs: StableFuse,
    mountpoint: &Path,
    config: &Config,
) -> io::Result<Session<StableFuse>> {
    let slot = fs.notifier_slot();
    let session = mount_session(fs, mountpoint, config)?;
    // Only ever set here, once per StableFuse.
    let _ = slot.set(session.notifier());
    Ok(session)
}

fn mount_session(
    fs: StableFuse,
    mountpoint: &Path,
    config: &Config,
) -> io::Result<Session<StableFuse>> {
    let m = kernel_mount(config)?;
    let root_mode = std::fs::metadata(mountpoint)?.permissions().mode() & libc::S_IFMT;
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open /dev/fuse: {e}")))?;
    let mut data = format!(
        "fd={},rootmode={root_mode:o},user_id={},group_id={}",
        dev.as_raw_fd(),
        getuid(),
        getgid()
    );
    for option in &m.options {
        data.push(',');
        data.push_str(option);
    }
    let mounted = nix::mount::mount(
        Some(m.source.as_str()),
        mountpoint,
        Some(m.fstype.as_str()),
        m.flags,
        Some(data.as_str()),
    );
    match mounted {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) => {
            warn!("not permitted to mount(2); mounting through fusermount instead");
            // fuser checks the header's uid unless everyone may use the mount.
            let mut fs = fs;
            fs.allow_idmap = config.acl == SessionACL::All;
            return Session::new(fs, mountpoint, config);
        }
        Err(e) => return Err(io::Error::other(format!("mount(2): {e}"))),
    }
    // The kernel has sent INIT; the handshake answers it. Who may use the mount is the
    // kernel's check (allow_other or not), so fuser need not repeat it from the request
    // header's uid: that uid is what the kernel leaves out once we allow idmapped mounts.
    let mut fs = fs;
    fs.allow_idmap = true;
    Session::from_fd(fs, dev.into(), SessionACL::All, config.clone()).inspect_err(|_| {
        if let Err(e) = umount2(mountpoint, MntFlags::MNT_DETACH) {
            warn!("cannot undo the mount on {}: {e}", mountpoint.display());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::{config, MountConfig};

    #[test]
    fn mount_arguments_follow_the_config() {
        let m = kernel_mount(&config(&MountConfig {
            device: "/dev/vdb".into(),
            read_only: true,
            allow_other: true,
            fuse_threads: None,
            vfs_flags: vec![MountOption::Dev, MountOption::NoExec, MountOption::NoAtime],
        }))
        .unwrap();
        assert_eq!(m.source, "/dev/vdb");
        assert_eq!(m.fstype, "fuse.stablefs");
        assert_eq!(
            m.flags,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME
        );
        assert_eq!(m.options, ["default_permissions", "allow_other"]);

        let m = kernel_mount(&config(&MountConfig::default())).unwrap();
        assert_eq!(m.flags, MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
        assert_eq!(m.options, ["default_permissions"]);
    }

    #[test]
    fn unknown_fuser_options_are_refused() {
        let mut c = config(&MountConfig::default());
        c.mount_options.push(MountOption::CUSTOM("x".into()));
        assert!(kernel_mount(&c).is_err());
    }
}
