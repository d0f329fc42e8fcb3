//! Conversions between fuser's argument and reply types and the `fs` layer's plain types:
//! attributes, file kinds, times, callers and errors. Pure functions, tested here.

use crate::error::Error;
use crate::fs::{Attr, Caller, FileKind, SetTime, Timespec};
use fuser::{Errno, FileAttr, FileType, INodeNo, Request, TimeOrNow};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The one place an error becomes an errno.
pub(super) fn errno(e: &Error) -> Errno {
    Errno::from_i32(e.errno())
}

/// What a request header carries instead of ids once idmapped mounts are allowed
/// (`FUSE_ALLOW_IDMAP`), on every request that does not create an inode.
pub(super) const INVALID_ID: u32 = u32::MAX;

/// Who sent `req`. The header's ids are the caller's filesystem ids (through an idmapped
/// mount: mapped back into the filesystem's ids) on requests that create an inode. On any
/// other request, once idmapped mounts are allowed, the kernel sends [`INVALID_ID`]; then the
/// ids are the calling thread's fsuid and fsgid from `/proc/PID/status` (the thread is
/// blocked in this request), or [`INVALID_ID`] (nobody in particular, never privileged) if
/// the process is unknown or gone.
pub(super) fn caller(req: &Request) -> Caller {
    let (uid, gid) = match (req.uid(), req.gid()) {
        (INVALID_ID, _) | (_, INVALID_ID) => process_ids(req.pid()),
        ids => ids,
    };
    Caller {
        uid,
        gid,
        pid: req.pid(),
        umask: 0,
    }
}

/// The filesystem uid and gid of thread `pid`, as `/proc` shows them to us.
fn process_ids(pid: u32) -> (u32, u32) {
    if pid == 0 {
        return (INVALID_ID, INVALID_ID);
    }
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| fs_ids(&status))
        .unwrap_or((INVALID_ID, INVALID_ID))
}

/// The fsuid and fsgid in a `/proc/PID/status` text: the fourth numbers of its `Uid:` and
/// `Gid:` lines (real, effective, saved, filesystem).
pub(super) fn fs_ids(status: &str) -> Option<(u32, u32)> {
    let fourth = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|ids| ids.split_whitespace().nth(3))
            .and_then(|id| id.parse::<u32>().ok())
    };
    Some((fourth("Uid:")?, fourth("Gid:")?))
}

/// The caller of a create, mknod or mkdir, with its umask: the kernel leaves applying it to
/// us (`FUSE_DONT_MASK`), as a default ACL takes its place.
pub(super) fn creator(req: &Request, umask: u32) -> Caller {
    Caller {
        umask,
        ..caller(req)
    }
}

pub(super) fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
    }
}

pub(super) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.crtime),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

/// `sec + nsec / 10^9` seconds after the epoch (before it when `sec` is negative; `nsec` always
/// counts forward, as in a `struct timespec`).
pub(super) fn system_time(t: Timespec) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(t.nsec.min(999_999_999)));
    let whole = if t.sec >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(t.sec.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(t.sec.unsigned_abs()))
    };
    // Every i64 second count is representable on Linux; the fallback is for other targets.
    whole
        .and_then(|w| w.checked_add(nanos))
        .unwrap_or(UNIX_EPOCH)
}

/// The exact inverse of [`system_time`], saturating at the ends of the `i64` range.
pub(super) fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec {
            sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nsec: d.subsec_nanos(),
        },
        Err(before) => {
            let d = before.duration();
            let sec = 0i64.saturating_sub_unsigned(d.as_secs());
            match d.subsec_nanos() {
                0 => Timespec { sec, nsec: 0 },
                n => Timespec {
                    sec: sec.saturating_sub(1),
                    nsec: 1_000_000_000 - n,
                },
            }
        }
    }
}

/// A time the kernel sent in a `setattr` request, as fuser 0.18.0 hands it over.
///
/// fuser decodes the kernel's `(sec, nsec)` as `EPOCH + (sec, nsec)` when `sec >= 0` but as
/// `EPOCH - (-sec, nsec)` when `sec < 0`, so -1.2 s (`sec = -2, nsec = 8e8`) arrives as -2.8 s.
/// This undoes exactly that to recover the kernel's pair; Cargo.toml pins fuser to 0.18.0 so
/// that a fixed fuser cannot slip in underneath.
pub(super) fn request_timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(_) => timespec(t),
        Err(before) => {
            let d = before.duration();
            Timespec {
                sec: 0i64.saturating_sub_unsigned(d.as_secs()),
                nsec: d.subsec_nanos(),
            }
        }
    }
}

pub(super) fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(request_timespec(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_ids_from_proc_status() {
        let status = "Name:\tsh\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\n\
                      Uid:\t1000\t1001\t1002\t1003\nGid:\t2000\t2001\t2002\t2003\n\
                      Groups:\t4 24\n";
        assert_eq!(fs_ids(status), Some((1003, 2003)));
        assert_eq!(fs_ids("Uid:\t0\t0\t0\t0\n"), None);
        assert_eq!(fs_ids("Uid:\t0\t0\t0\nGid:\t0\t0\t0\t0\n"), None);
        assert_eq!(fs_ids("Uid:\tx\tx\tx\tx\nGid:\t0\t0\t0\t0\n"), None);
        assert_eq!(fs_ids(""), None);
    }

    #[test]
    fn this_process_is_found_and_an_unknown_one_is_nobody() {
        // SAFETY: safe because these calls only read the calling thread's credentials.
        let (uid, gid, tid) = unsafe { (libc::getuid(), libc::getgid(), libc::gettid()) };
        assert_eq!(process_ids(tid as u32), (uid, gid));
        assert_eq!(process_ids(0), (INVALID_ID, INVALID_ID));
        assert_eq!(process_ids(u32::MAX - 1), (INVALID_ID, INVALID_ID));
    }

    fn ts(sec: i64, nsec: u32) -> Timespec {
        Timespec { sec, nsec }
    }

    #[test]
    fn times_round_trip_including_before_1970() {
        for t in [
            ts(0, 0),
            ts(0, 1),
            ts(1_700_000_000, 123_456_789),
            ts(-1, 0),
            ts(-1, 999_999_999),
            ts(-2, 800_000_000),
            ts(-86_400 * 365 * 70, 5),
            ts(i64::MAX, 999_999_999),
            ts(i64::MIN, 0),
        ] {
            assert_eq!(timespec(system_time(t)), t, "{t:?}");
        }
    }

    #[test]
    fn before_1970_means_what_a_timespec_means() {
        // -1.2 s is sec = -2, nsec = 0.8 s.
        let t = UNIX_EPOCH - Duration::from_millis(1200);
        assert_eq!(timespec(t), ts(-2, 800_000_000));
        assert_eq!(system_time(ts(-2, 800_000_000)), t);
    }

    #[test]
    fn request_times_undo_fusers_decoding() {
        // What fuser 0.18.0 builds from the kernel's (sec, nsec): see request_timespec.
        fn fuser_decodes(sec: i64, nsec: u32) -> SystemTime {
            if sec >= 0 {
                UNIX_EPOCH + Duration::new(sec as u64, nsec)
            } else {
                UNIX_EPOCH - Duration::new(sec.unsigned_abs(), nsec)
            }
        }
        for (sec, nsec) in [(0, 0), (5, 7), (-1, 0), (-2, 800_000_000), (-100, 1)] {
            assert_eq!(request_timespec(fuser_decodes(sec, nsec)), ts(sec, nsec));
        }
        assert_eq!(set_time(TimeOrNow::Now), SetTime::Now);
    }

    #[test]
    fn attr_conversion_keeps_every_field() {
        let a = Attr {
            ino: 42,
            kind: FileKind::Symlink,
            perm: 0o777,
            nlink: 1,
            uid: 1000,
            gid: 100,
            rdev: 0,
            size: 7,
            blocks: 8,
            blksize: 4096,
            atime: ts(-5, 1),
            mtime: ts(6, 2),
            ctime: ts(7, 3),
            crtime: ts(8, 4),
            generation: 9,
        };
        let f = file_attr(&a);
        assert_eq!(f.ino, INodeNo(42));
        assert_eq!(f.kind, FileType::Symlink);
        assert_eq!((f.perm, f.nlink, f.uid, f.gid), (0o777, 1, 1000, 100));
        assert_eq!((f.size, f.blocks, f.blksize), (7, 8, 4096));
        assert_eq!(timespec(f.atime), a.atime);
        assert_eq!(timespec(f.crtime), a.crtime);
    }

    #[test]
    fn errors_become_their_errno() {
        assert_eq!(errno(&Error::Errno(libc::ENOENT)).code(), libc::ENOENT);
        let bad = Error::Checksum {
            block: 1,
            what: "data".into(),
        };
        assert_eq!(errno(&bad).code(), libc::EIO);
    }
}
