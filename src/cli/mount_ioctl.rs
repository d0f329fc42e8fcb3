//! The one way the tools talk to a mounted filesystem's daemon: a restricted FUSE ioctl on any
//! file or directory of the mount (`stablefs status`, `stablefs scrub MOUNTPOINT`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Issues ioctl `cmd` on `path` with `buf` as its argument. `cmd` is a restricted ioctl: its
/// size field (bits 16-29) says how many bytes the kernel reads and writes, and `buf` must be
/// exactly that long. `what` names the ioctl in errors. ENOTTY means that the filesystem at
/// `path` is not stablefs.
pub fn ask(path: &Path, cmd: u32, buf: &mut [u8], what: &str) -> Result<(), String> {
    let size = ((cmd >> 16) & 0x3fff) as usize;
    if buf.len() != size {
        return Err(format!(
            "the {what} ioctl carries {size} bytes, not {}",
            buf.len()
        ));
    }
    let f = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    // SAFETY: safe because the ioctl's number encodes its size, so the kernel reads and writes at
    // most `size` bytes at the pointer, `buf` is exactly that long (checked above) and outlives the
    // call, and the fd is open for the whole call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), cmd as libc::c_ulong, buf.as_mut_ptr()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::ENOTTY) {
            format!(
                "not on a stablefs mount (the filesystem there does not answer the {what} ioctl)"
            )
        } else {
            format!("the {what} ioctl failed: {e}")
        });
    }
    Ok(())
}
