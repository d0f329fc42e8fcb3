//! `stablefs fsck [--repair] [--json] PATH`: checks an unmounted device or image file.
//!
//! The device is opened as mount opens it, so a mounted filesystem is refused (a block device
//! with `O_EXCL`, an image with `flock`: shared for a check, exclusive for `--repair`). The
//! report goes to stdout (text, or JSON with `--json`), a one-line summary to stderr, and the
//! exit status follows fsck(8): 0 clean, 1 errors corrected, 4 errors left uncorrected,
//! 8 operational error.

use stablefs::device::FileDevice;
use stablefs::fsck::{fsck, FsckOptions, Report};
use std::path::Path;
use std::sync::Arc;

/// Runs fsck on `path` and prints the report; returns the exit status.
pub fn run(path: &Path, repair: bool, json: bool) -> u8 {
    let shown = path.display();
    let report = match FileDevice::open(path, !repair) {
        Ok(dev) => fsck(Arc::new(dev), &FsckOptions { repair }),
        Err(e) => Report::operational_error(format!("cannot open: {e}")),
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("stablefs fsck: {shown}: cannot encode the report: {e}");
                return stablefs::fsck::EXIT_OPERATIONAL;
            }
        }
    } else {
        print!("{}", report.to_text());
    }
    eprintln!("stablefs fsck: {shown}: {}", report.summary());
    report.exit_code
}
