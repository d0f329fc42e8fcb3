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
use log::{info, warn};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::unistd::{getgid, getuid};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

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
    // A kernel filesystem's defaults: suid, dev, exec (fuser's own mount would add nosuid
    // and nodev). Only root gets here: fusermount3 mounts every other user nosuid,nodev.
    let mut m = KernelMount {
        source: "stablefs".into(),
        fstype: "fuse".into(),
        flags: MsFlags::empty(),
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
            // What fuser has no name for (fusermount3 knows these names too).
            MountOption::CUSTOM(name) => match custom_flag(name) {
                Some(flag) => (flag, true),
                None => return Err(unsupported(option)),
            },
            other => return Err(unsupported(other)),
        };
        m.flags.set(flag, on);
    }
    // fuser enforces RootAndOwner itself; the kernel only knows allow_other.
    if config.acl != SessionACL::Owner {
        m.options.push("allow_other");
    }
    Ok(m)
}

fn unsupported(option: &MountOption) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("mount option {option:?} is not supported"),
    )
}

/// The generic flags that fuser's `MountOption` has no variant for.
fn custom_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "nodiratime" => MsFlags::MS_NODIRATIME,
        "relatime" => MsFlags::MS_RELATIME,
        "strictatime" => MsFlags::MS_STRICTATIME,
        "lazytime" => MsFlags::MS_LAZYTIME,
        _ => return None,
    })
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
    let dev = match OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(dev) => dev,
        // Not root, and /dev/fuse is root's only: fusermount3 (set-user-ID) opens it.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && !getuid().is_root() => {
            return fusermount_session(fs, mountpoint, config, &m);
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot open /dev/fuse: {e}"),
            ))
        }
    };
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
            info!("not permitted to mount(2); mounting through fusermount3 instead");
            // fuser checks the header's uid unless everyone may use the mount, and that uid
            // is what the kernel leaves out once idmapped mounts are allowed.
            let mut fs = fs;
            fs.allow_idmap = config.acl == SessionACL::All;
            return fusermount_session(fs, mountpoint, config, &m);
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

/// A mount by a user other than root: fusermount3 (set-user-ID root) mounts, always
/// `nosuid,nodev` for such a user, and hands back the `/dev/fuse` fd. Done here rather than by
/// fuser's `Session::new`, which in 0.18 gives up when it cannot open `/dev/fuse` itself (root
/// only on many systems) and would also unmount by path when the session ends (see the module
/// doc).
fn fusermount_session(
    fs: StableFuse,
    mountpoint: &Path,
    config: &Config,
    m: &KernelMount,
) -> io::Result<Session<StableFuse>> {
    let dev = fusermount(m, mountpoint)?;
    Session::from_fd(fs, dev, config.acl, config.clone()).inspect_err(|_| {
        let _ = Command::new("fusermount3")
            .args(["-u", "-z", "--"])
            .arg(mountpoint)
            .status();
    })
}

/// The `-o` argument of fusermount3 for `m` (its names for the flags; `,` and `\` in the
/// source escaped as libfuse does).
fn fusermount_options(m: &KernelMount) -> String {
    let source = m.source.replace('\\', "\\\\").replace(',', "\\,");
    let mut opts = vec![format!("fsname={source}")];
    if let Some(subtype) = m.fstype.strip_prefix("fuse.") {
        opts.push(format!("subtype={subtype}"));
    }
    for (flag, name) in [
        (MsFlags::MS_RDONLY, "ro"),
        (MsFlags::MS_NOSUID, "nosuid"),
        (MsFlags::MS_NODEV, "nodev"),
        (MsFlags::MS_NOEXEC, "noexec"),
        (MsFlags::MS_NOATIME, "noatime"),
        (MsFlags::MS_NODIRATIME, "nodiratime"),
        (MsFlags::MS_RELATIME, "relatime"),
        (MsFlags::MS_STRICTATIME, "strictatime"),
        (MsFlags::MS_LAZYTIME, "lazytime"),
        (MsFlags::MS_SYNCHRONOUS, "sync"),
        (MsFlags::MS_DIRSYNC, "dirsync"),
    ] {
        if m.flags.contains(flag) {
            opts.push(name.into());
        }
    }
    opts.extend(m.options.iter().map(|o| o.to_string()));
    opts.join(",")
}

/// Runs fusermount3 as libfuse does: one end of a socket pair in `_FUSE_COMMFD`, over which
/// it sends the `/dev/fuse` fd of the new mount (one `SCM_RIGHTS` message) before it exits.
fn fusermount(m: &KernelMount, mountpoint: &Path) -> io::Result<OwnedFd> {
    use nix::sys::socket::{
        recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
    };
    // The child's end must survive exec; ours must not.
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::empty(),
    )?;
    fcntl(&ours, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    let child = Command::new("fusermount3")
        .arg("-o")
        .arg(fusermount_options(m))
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run fusermount3: {e}")))?;
    drop(theirs);
    let output = child.wait_with_output()?;
    let failed = || {
        let said = String::from_utf8_lossy(&output.stderr);
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("fusermount3 failed ({}): {}", output.status, said.trim()),
        )
    };
    if !output.status.success() {
        return Err(failed());
    }
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = recvmsg::<()>(
        ours.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )?;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first().filter(|fd| **fd >= 0) {
                // SAFETY: safe because the kernel has just installed `fd` in this process for
                // us (SCM_RIGHTS), and nothing else knows of it: it is owned from here on.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(failed())
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
            MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME
        );
        assert_eq!(m.options, ["default_permissions", "allow_other"]);

        // Root's defaults are a kernel filesystem's: suid, dev, exec.
        let m = kernel_mount(&config(&MountConfig::default())).unwrap();
        assert_eq!(m.flags, MsFlags::empty());
        assert_eq!(m.options, ["default_permissions"]);

        let custom = |n: &str| MountOption::CUSTOM(n.into());
        let m = kernel_mount(&config(&MountConfig {
            vfs_flags: vec![
                MountOption::NoSuid,
                custom("nodiratime"),
                custom("strictatime"),
                custom("lazytime"),
                custom("relatime"),
                MountOption::Sync,
                MountOption::DirSync,
            ],
            ..MountConfig::default()
        }))
        .unwrap();
        assert_eq!(
            m.flags,
            MsFlags::MS_NOSUID
                | MsFlags::MS_NODIRATIME
                | MsFlags::MS_STRICTATIME
                | MsFlags::MS_LAZYTIME
                | MsFlags::MS_RELATIME
                | MsFlags::MS_SYNCHRONOUS
                | MsFlags::MS_DIRSYNC
        );
    }

    #[test]
    fn fusermount3_gets_its_names_for_the_flags() {
        let custom = |n: &str| MountOption::CUSTOM(n.into());
        let m = kernel_mount(&config(&MountConfig {
            device: "/img,x".into(),
            read_only: true,
            vfs_flags: vec![
                MountOption::NoExec,
                custom("strictatime"),
                MountOption::Sync,
            ],
            ..MountConfig::default()
        }))
        .unwrap();
        assert_eq!(
            fusermount_options(&m),
            "fsname=/img\\,x,subtype=stablefs,ro,noexec,strictatime,sync,default_permissions"
        );
    }

    #[test]
    fn unknown_fuser_options_are_refused() {
        let mut c = config(&MountConfig::default());
        c.mount_options.push(MountOption::CUSTOM("x".into()));
        assert!(kernel_mount(&c).is_err());
    }
}
