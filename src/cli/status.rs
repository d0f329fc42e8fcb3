//! `stablefs status [--json] MOUNTPOINT`: asks the daemon serving MOUNTPOINT for its report
//! (see `stablefs::status`). Exit status: 0 the report was printed, 1 it could not be had.

use stablefs::status::{Status, STATUS_BYTES, STATUS_IOCTL};
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
    let mut buf = vec![0u8; STATUS_BYTES as usize];
    super::mount_ioctl::ask(path, STATUS_IOCTL, &mut buf, "status")?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    serde_json::from_slice(&buf[..end])
        .map_err(|e| format!("the daemon's answer is not a status report: {e}"))
}
