//! `stablefs scrub [--json] [--limit RATE] PATH`: scrubs an unmounted device or image file.
//!
//! The device is opened as fsck --repair opens it (exclusively: a mounted filesystem is
//! refused). The report goes to stdout (text, or JSON with `--json`), a progress line to a
//! terminal's stderr, and the exit status says: 0 clean, 1 errors found and all corrected,
//! 2 uncorrectable errors found, 4 operational error (nothing was scrubbed).

use stablefs::device::FileDevice;
use stablefs::scrub::{scrub, ScrubOptions, EXIT_OPERATIONAL};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub fn run(path: &Path, limit: Option<u64>, json: bool) -> u8 {
    let shown = path.display();
    if path.is_dir() {
        eprintln!(
            "stablefs scrub: {shown} is a directory: scrubbing a mounted filesystem (online) is \
             not built yet; unmount it and scrub its device or image file"
        );
        return EXIT_OPERATIONAL;
    }
    let dev = match FileDevice::open(path, false) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("stablefs scrub: {shown}: cannot open: {e}");
            return EXIT_OPERATIONAL;
        }
    };
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last = Instant::now();
    let mut progress = |done: u64, all: u64| {
        if !tty || (last.elapsed().as_millis() < 200 && done < all) {
            return;
        }
        last = Instant::now();
        let secs = start.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 {
            (all - done) as f64 / rate
        } else {
            0.0
        };
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        eprint!(
            "\rscrub: {:.0}/{:.0} MiB ({:.0}%), {:.0} MiB/s, {:.0} s left   ",
            mib(done),
            mib(all),
            100.0 * done as f64 / all.max(1) as f64,
            rate / f64::from(1 << 20),
            eta
        );
        let _ = std::io::stderr().flush();
    };
    let report = match scrub(Arc::new(dev), &ScrubOptions { limit }, &mut progress) {
        Ok(r) => r,
        Err(e) => {
            if tty {
                eprintln!();
            }
            eprintln!("stablefs scrub: {shown}: {e}");
            return EXIT_OPERATIONAL;
        }
    };
    if tty {
        eprintln!();
    }
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("stablefs scrub: {shown}: cannot encode the report: {e}");
                return EXIT_OPERATIONAL;
            }
        }
    } else {
        print!("{}", report.to_text());
    }
    eprintln!("stablefs scrub: {shown}: {}", report.summary());
    report.exit_code
}
