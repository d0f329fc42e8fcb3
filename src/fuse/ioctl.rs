//! The ioctls, on any file or directory of the mount: `stablefs status`
//! (`crate::status::STATUS_IOCTL`), `stablefs sync` (`SYNC_IOCTL`), the online scrub's
//! control channel (`crate::scrub::control::SCRUB_IOCTL`; its subtree is the inode it is
//! issued on), `stablefs remount` (`REMOUNT_IOCTL`), the inode flags (`chattr`/`lsattr`, see `inode_flags`) and the shutdown
//! (`XFS_IOC_GOINGDOWN`, `GOINGDOWN_IOCTL`). Anything else is ENOTTY, as a filesystem
//! without ioctls answers, and quietly (fuser's default logs a warning per call, which
//! programs probing ioctls turn into a flood).
use super::convert::{caller, errno};
use super::{inode_flags, StableFuse};
use crate::error::{Error, Result};
use crate::fs::{self, Ino};
use fuser::{INodeNo, Notifier, ReplyIoctl, Request};
use log::{debug, error};
use std::sync::Arc;

/// `stablefs sync`: `_IOR('S', 3, u64)`, a restricted ioctl (read direction, 8 bytes). The
/// daemon commits everything and answers once the commit is durable, with the generation of
/// the superblock that is now on the device (little-endian). Any user may ask, as for
/// `sync(2)`; on a read-only mount it commits nothing and answers at once.
pub const SYNC_IOCTL: u32 = (2 << 30) | (8 << 16) | ((b'S' as u32) << 8) | 3;

/// `stablefs remount` (and `mount -o remount`, through the helper): `_IOWR('S', 4, u64)`, a
/// restricted ioctl. In: the mount's `MS_*` flags after the kernel's remount (little-endian);
/// the daemon takes them on (`Fs::remount`: to read-only it commits everything first). Out: the
/// generation of the last commit. Root only (`EPERM`); `EROFS` if the filesystem cannot become
/// read-write (it was mounted read-only).
pub const REMOUNT_IOCTL: u32 = (3 << 30) | (8 << 16) | ((b'S' as u32) << 8) | 4;

/// XFS's shutdown ioctl, `XFS_IOC_GOINGDOWN` (`_IOR('X', 125, __u32)`; ext4 and f2fs answer
/// it too; `xfs_io -x -c "shutdown [-f]"` issues it). Root only. Its argument is the flag
/// (see `GoingDown`), but as a `_IOR` ioctl the FUSE kernel hands the daemon no input bytes,
/// only room for an answer, so the flag never arrives here: it is taken as
/// `XFS_FSOP_GOING_FLAGS_LOGFLUSH`, which for stablefs is also what `NOLOGFLUSH` leaves on
/// the device (no intent log: nothing new is committed either way), and is all `xfs_io`
/// asks for (`-f`: LOGFLUSH, else NOLOGFLUSH). [`GOINGDOWN_IOCTL`] carries the flag.
pub const XFS_IOC_GOINGDOWN: u32 = (2 << 30) | (4 << 16) | ((b'X' as u32) << 8) | 125;
/// The same with the flag as input (`_IOW('X', 125, __u32)`): 0 commit everything and stop
/// (`DEFAULT`), 1 stop after the log (`LOGFLUSH`), 2 stop now (`NOLOGFLUSH`); else EINVAL.
pub const GOINGDOWN_IOCTL: u32 = (1 << 30) | (4 << 16) | ((b'X' as u32) << 8) | 125;

/// The `GoingDown` an XFS shutdown flag asks for.
fn going_down_flag(in_data: &[u8]) -> Result<fs::GoingDown> {
    let flag = match in_data {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
        _ => return Err(Error::Errno(libc::EINVAL)),
    };
    match flag {
        0 => Ok(fs::GoingDown::Flush),
        1 => Ok(fs::GoingDown::LogFlush),
        2 => Ok(fs::GoingDown::NoLogFlush),
        _ => Err(Error::Errno(libc::EINVAL)),
    }
}

/// Drops the kernel's cached pages and attributes of `inodes` (after a shutdown: so that
/// reads and stats of open files reach the daemon, and fail, as on a shut-down ext4), then
/// runs `then`. As in `seek`, the notifications are sent from a thread of their own; if none
/// can be started, `then` is dropped and fuser answers EIO.
fn forget_caches_then(
    notifier: Option<Notifier>,
    inodes: Vec<Ino>,
    then: impl FnOnce() + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("stablefs-inval".into())
        .spawn(move || {
            if let Some(notifier) = notifier {
                for ino in inodes {
                    // ENOENT: the kernel has forgotten the inode meanwhile.
                    match notifier.inval_inode(INodeNo(ino), 0, 0) {
                        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                            debug!("dropping the kernel's cache of inode {ino}: {e}");
                        }
                        _ => {}
                    }
                }
            }
            then();
        });
    if let Err(e) = spawned {
        error!("cannot start a thread: {e}");
    }
}

impl StableFuse {
    pub(super) fn answer_ioctl(
        &self,
        req: &Request,
        ino: Ino,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        use crate::scrub::control::{self, SCRUB_BYTES, SCRUB_IOCTL};
        use crate::status::{STATUS_BYTES, STATUS_IOCTL};
        if let Some(which) = inode_flags::FlagsIoctl::from_cmd(cmd) {
            let (fs, who, input) = (Arc::clone(&self.fs), caller(req), in_data.to_vec());
            let answer = move || match inode_flags::answer(&fs, who, ino, which, &input) {
                Ok(out) => reply.ioctl(0, &out[..out.len().min(out_size as usize)]),
                Err(e) => reply.error(errno(&e)),
            };
            if matches!(
                which,
                inode_flags::FlagsIoctl::Set | inode_flags::FlagsIoctl::FsSetXattr
            ) {
                // Pages the kernel holds dirty were written before the flags change (as on
                // ext4, where they are in the file already): they are written back first, so
                // that making the file immutable or append-only never refuses them later.
                let notifier = self.notifier_slot().get().cloned();
                forget_caches_then(notifier, vec![ino], answer);
            } else {
                answer();
            }
            return;
        }
        if cmd == XFS_IOC_GOINGDOWN || cmd == GOINGDOWN_IOCTL {
            let how = match cmd {
                XFS_IOC_GOINGDOWN => Ok(fs::GoingDown::LogFlush),
                _ => going_down_flag(in_data),
            };
            // It waits for a commit under way: not on the request loop.
            let (fs, uid) = (Arc::clone(&self.fs), caller(req).uid);
            let notifier = self.notifier_slot().get().cloned();
            self.workers.run(move || {
                let done = how.and_then(|how| fs.go_down(how, uid));
                let cached = match done {
                    Ok(()) => fs.kernel_inodes(),
                    Err(_) => Vec::new(),
                };
                forget_caches_then(notifier, cached, move || match done {
                    Ok(()) => reply.ioctl(0, &[]),
                    Err(e) => reply.error(errno(&e)),
                });
            });
            return;
        }
        if cmd == SCRUB_IOCTL && out_size >= SCRUB_BYTES {
            let answer = match control::decode(in_data) {
                Ok(request) => self.fs.scrub_request(caller(req).uid, ino, request),
                Err(e) => control::Reply::error(libc::EINVAL, format!("bad request: {e}")),
            };
            match control::encode(&answer) {
                Some(bytes) => reply.ioctl(0, &bytes),
                None => reply.error(fuser::Errno::from_i32(libc::EOVERFLOW)),
            }
            return;
        }
        if cmd == SYNC_IOCTL && out_size >= 8 {
            // A commit waits for the device: not on the request loop.
            let fs = Arc::clone(&self.fs);
            self.workers.run(move || match fs.sync() {
                Ok(()) => reply.ioctl(0, &fs.generation().to_le_bytes()),
                Err(e) => reply.error(errno(&e)),
            });
            return;
        }
        if cmd == REMOUNT_IOCTL && out_size >= 8 {
            let Ok(flags) = <[u8; 8]>::try_from(in_data).map(u64::from_le_bytes) else {
                reply.error(fuser::Errno::from_i32(libc::EINVAL));
                return;
            };
            if caller(req).uid != 0 {
                reply.error(fuser::Errno::from_i32(libc::EPERM));
                return;
            }
            // To read-only it commits: not on the request loop.
            let fs = Arc::clone(&self.fs);
            self.workers.run(move || {
                let read_only = flags & fs::ms(libc::MS_RDONLY) != 0;
                match fs.remount(read_only, fs::Behaviour::from_ms_flags(flags)) {
                    Ok(()) => reply.ioctl(0, &fs.generation().to_le_bytes()),
                    Err(e) => reply.error(errno(&e)),
                }
            });
            return;
        }
        if cmd != STATUS_IOCTL || out_size < STATUS_BYTES {
            reply.error(fuser::Errno::from_i32(libc::ENOTTY));
            return;
        }
        match serde_json::to_vec(&self.fs.status()) {
            Ok(mut json) if json.len() < STATUS_BYTES as usize => {
                json.resize(STATUS_BYTES as usize, 0);
                reply.ioctl(0, &json);
            }
            _ => reply.error(fuser::Errno::from_i32(libc::EOVERFLOW)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_ioctl_number() {
        // _IOR('S', 3, __u64) as the C macros compute it.
        assert_eq!(SYNC_IOCTL, 0x8000_0000 | (8 << 16) | 0x5303);
    }

    #[test]
    fn remount_ioctl_number() {
        // _IOWR('S', 4, __u64) as the C macros compute it.
        assert_eq!(REMOUNT_IOCTL, 0xc000_0000 | (8 << 16) | 0x5304);
    }

    #[test]
    fn going_down_ioctls() {
        assert_eq!(XFS_IOC_GOINGDOWN, 0x8004_587d);
        assert_eq!(GOINGDOWN_IOCTL, 0x4004_587d);
        let flag = |f: u32| going_down_flag(&f.to_le_bytes());
        assert_eq!(flag(0).unwrap(), fs::GoingDown::Flush);
        assert_eq!(flag(1).unwrap(), fs::GoingDown::LogFlush);
        assert_eq!(flag(2).unwrap(), fs::GoingDown::NoLogFlush);
        assert_eq!(flag(3).unwrap_err().errno(), libc::EINVAL);
        assert_eq!(going_down_flag(&[]).unwrap_err().errno(), libc::EINVAL);
    }
}
