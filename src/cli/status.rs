//! `stablefs status [--json] MOUNTPOINT`: asks the daemon serving MOUNTPOINT for its report
//! (see `stablefs::status`). Exit status: 0 the report was printed, 1 it could not be had.

use stablefs::status::{Status, STATUS_BYTES, STATUS_IOCTL};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

pub fn run(path: &Path, json: bool) -> u8 {
    match ask(path) {
        Ok(status) => {
            if json {
                match serde_json::to_string_pretty(&status) {
                    Ok(t) => println!("{t}"),
                    Err(e) => {
                        eprintln!("stablefs status: cannot encode the report: {e}");
                        return 1;
                    }
                }
            } else {
                print!("{}", status.to_text());
            }
            0
        }
        Err(e) => {
            eprintln!("stablefs status: {}: {e}", path.display());
            1
        }
    }
}

fn ask(path: &Path) -> Result<Status, String> {
    let f = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut buf = vec![0u8; STATUS_BYTES as usize];
    // Safe because: the ioctl's number encodes its size (STATUS_BYTES, read direction), so
    // the kernel writes at most that many bytes, and `buf` is that long and lives past the
    // call; the fd is open for the whole call.
    let r = unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            STATUS_IOCTL as libc::c_ulong,
            buf.as_mut_ptr(),
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::ENOTTY) {
            "not on a stablefs mount (the filesystem there does not answer the status ioctl)"
                .to_string()
        } else {
            format!("the status ioctl failed: {e}")
        });
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    serde_json::from_slice(&buf[..end])
        .map_err(|e| format!("the daemon's answer is not a status report: {e}"))
}
