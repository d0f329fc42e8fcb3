//! One clock for every timestamp: the kernel's.
//!
//! With the writeback cache the kernel stamps the mtime and ctime of files written through it
//! itself and sends them to us later (`setattr`); every other time is ours. For the two never
//! to go backwards against each other, ours must come from the very clock the kernel uses.
//!
//! That clock (Linux 6.13 and later, `fs/inode.c`): a FUSE inode is not multigrain (FUSE does
//! not set `FS_MGTIME`), so `current_time()` and `inode_set_ctime_current()` give it
//! `ktime_get_coarse_real_ts64_mg()`: the later of the coarse realtime clock (one tick old,
//! what `CLOCK_REALTIME_COARSE` reads) and the multigrain floor, the latest fine-grained time
//! any multigrain filesystem (ext4, xfs, btrfs, tmpfs) has handed out since. So:
//! - `CLOCK_REALTIME` (fine) runs ahead of it: a time of ours could be later than a time the
//!   kernel stamps after it.
//! - `CLOCK_REALTIME_COARSE` lags it whenever another filesystem raised the floor within the
//!   current tick (on a busy machine, most of the time): a time of ours could be earlier than
//!   a kernel time stamped before it.
//!
//! The floor cannot be read from user space, so we let the kernel stamp an inode of a
//! filesystem that is not multigrain either, a pipe of our own, and read the stamp back:
//! `futimens(fd, NULL)` sets its times to `current_time()`, `fstat` returns them. Two system
//! calls of well under a microsecond each; exactly the kernel's value. Should the pipe be
//! unavailable, the coarse clock is the fallback.

use crate::format::Timespec;
use nix::sys::stat::{fstat, futimens};
use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, ClockId};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

/// The read end of a pipe, whose inode the kernel stamps for us (the write end is closed:
/// nothing is ever written).
static PROBE: OnceLock<Option<OwnedFd>> = OnceLock::new();

/// The time the kernel would stamp on one of our inodes now.
pub fn now() -> Timespec {
    if let Some(fd) = PROBE.get_or_init(open_probe) {
        if let Some(t) = kernel_stamp(fd) {
            return t;
        }
    }
    coarse()
}

fn open_probe() -> Option<OwnedFd> {
    match nix::unistd::pipe() {
        Ok((read, _write)) => Some(read),
        Err(e) => {
            log::warn!("no pipe for the kernel's clock ({e}); using CLOCK_REALTIME_COARSE");
            None
        }
    }
}

/// Concurrent callers need no lock: each result is a value the kernel's clock had at some
/// instant between the call and its return.
fn kernel_stamp(fd: &OwnedFd) -> Option<Timespec> {
    futimens(fd, &TimeSpec::UTIME_NOW, &TimeSpec::UTIME_NOW).ok()?;
    let st = fstat(fd).ok()?;
    Some(Timespec {
        sec: st.st_mtime,
        nsec: st.st_mtime_nsec as u32,
    })
}

fn coarse() -> Timespec {
    match clock_gettime(ClockId::CLOCK_REALTIME_COARSE) {
        Ok(t) => Timespec {
            sec: t.tv_sec(),
            nsec: t.tv_nsec() as u32,
        },
        Err(_) => Timespec::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fine() -> Timespec {
        let t = clock_gettime(ClockId::CLOCK_REALTIME).unwrap();
        Timespec {
            sec: t.tv_sec(),
            nsec: t.tv_nsec() as u32,
        }
    }

    /// Between a coarse reading before and a fine reading after, and never going back.
    #[test]
    fn the_kernel_clock_is_between_coarse_and_fine_and_monotonic() {
        let mut last = Timespec::default();
        for _ in 0..10_000 {
            let before = coarse();
            let t = now();
            let after = fine();
            assert!(before <= t && t <= after, "{before:?} {t:?} {after:?}");
            assert!(t >= last, "went back: {last:?} then {t:?}");
            last = t;
        }
        assert!(PROBE.get().unwrap().is_some(), "the pipe probe is in use");
    }
}
