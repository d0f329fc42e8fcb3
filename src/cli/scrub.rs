//! `stablefs scrub`: scrubs an unmounted device or image file (offline), or asks the daemon of
//! a mounted filesystem to scrub it (online), and controls a running online scrub.
//!
//! - `stablefs scrub [--json] [--limit RATE] PATH`, PATH not a directory: offline. The device
//!   is opened as fsck --repair opens it (exclusively: a mounted filesystem is refused).
//! - `stablefs scrub [--json] [--limit RATE] [--background] DIR`, DIR a mountpoint or a
//!   directory in a stablefs mount: online, through the scrub ioctl (`stablefs::scrub::control`)
//!   on DIR, which also names the subtree whose files' data is scrubbed. Waits for the end
//!   (a progress line on a terminal's stderr) and prints the report, unless `--background`.
//! - `stablefs scrub status|pause|resume|cancel [--json] MOUNTPOINT`: the command word comes
//!   first and a path after it. A single argument is always a path, so an image file
//!   literally named `status` is scrubbed by `stablefs scrub status`; with two arguments the
//!   first must be a command word (write `./status` to make a path of it).
//!
//! The report goes to stdout (text, or JSON with `--json`) and the exit status says: 0 clean,
//! 1 errors found and all corrected, 2 uncorrectable errors found, 4 operational error
//! (nothing or not everything was scrubbed: a cancelled scrub without uncorrectable errors,
//! not a stablefs, no permission, ...). The control commands exit 0 or 4.

use stablefs::device::FileDevice;
use stablefs::scrub::control::{self, Reply, Request, ScrubStatus, SCRUB_IOCTL};
use stablefs::scrub::{scrub, ScrubOptions, ScrubReport, EXIT_OPERATIONAL};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the command line asked for.
pub struct ScrubCommand<'a> {
    pub path: &'a Path,
    pub limit: Option<u64>,
    pub json: bool,
    pub background: bool,
    /// A control command word (status, pause, resume, cancel), if one came first.
    pub control: Option<&'a str>,
}

pub fn run(cmd: &ScrubCommand) -> u8 {
    if let Some(word) = cmd.control {
        return control_command(word, cmd.path, cmd.json);
    }
    if cmd.path.is_dir() {
        return online(cmd);
    }
    offline(cmd.path, cmd.limit, cmd.json)
}

fn offline(path: &Path, limit: Option<u64>, json: bool) -> u8 {
    let shown = path.display();
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
        let eta = (rate > 0.0).then(|| all.saturating_sub(done) as f64 / rate);
        progress_line(done, all, rate, eta, "");
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
    print_report(path, &report, json)
}

/// `\rscrub: done/total MiB (p%), rate MiB/s, ETA` on stderr (the caller knows it is a tty).
fn progress_line(done: u64, all: u64, rate: f64, eta: Option<f64>, note: &str) {
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprint!(
        "\rscrub: {:.0}/{:.0} MiB ({:.0}%), {:.1} MiB/s, {} left{note}   ",
        mib(done),
        mib(all),
        100.0 * done as f64 / all.max(1) as f64,
        rate / f64::from(1 << 20),
        eta.map_or("? s".to_string(), |s| format!("{s:.0} s")),
    );
    let _ = std::io::stderr().flush();
}

fn print_report(path: &Path, report: &ScrubReport, json: bool) -> u8 {
    let shown = path.display();
    if json {
        match serde_json::to_string_pretty(report) {
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

/// Sends one request over the scrub ioctl on `path` and returns the reply (errors the daemon
/// reports included); `Err` when there is no answer at all.
fn ask(path: &Path, req: &Request) -> Result<Reply, String> {
    let mut buf = control::encode(req).ok_or("the request is too large")?;
    super::mount_ioctl::ask(path, SCRUB_IOCTL, &mut buf, "scrub")?;
    control::decode(&buf).map_err(|e| format!("the daemon's answer is not a scrub reply: {e}"))
}

/// `ask`, with the daemon's error turned into `Err` too.
fn ask_ok(path: &Path, req: &Request) -> Result<Reply, String> {
    let reply = ask(path, req)?;
    match reply.error {
        Some(e) => Err(e),
        None => Ok(reply),
    }
}

fn online(cmd: &ScrubCommand) -> u8 {
    let path = cmd.path;
    let shown = path.display();
    let started = match ask_ok(path, &Request::Start { limit: cmd.limit }) {
        Ok(r) => r.status.unwrap_or_default(),
        Err(e) => {
            eprintln!("stablefs scrub: {shown}: {e}");
            return EXIT_OPERATIONAL;
        }
    };
    let id = started.id;
    if cmd.background {
        eprintln!(
            "stablefs scrub: {shown}: scrub started (subtree {}); see `stablefs scrub status`",
            started.subtree
        );
        return 0;
    }
    let tty = std::io::stderr().is_terminal();
    // Wait for it to end, showing progress.
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let s = match ask_ok(path, &Request::Status) {
            Ok(r) => r.status.unwrap_or_default(),
            Err(e) => {
                if tty {
                    eprintln!();
                }
                eprintln!(
                    "stablefs scrub: {shown}: {e} (a scrub still running at an unmount goes on \
                     at the next mount)"
                );
                return EXIT_OPERATIONAL;
            }
        };
        if s.id == id && s.state != "idle" {
            if tty {
                let note = if s.state == "paused" { " (paused)" } else { "" };
                progress_line(s.done_bytes, s.total_bytes, s.rate, s.eta_secs, note);
            }
            continue;
        }
        if tty {
            eprintln!();
        }
        if s.last.as_ref().is_none_or(|l| l.id != id) {
            eprintln!("stablefs scrub: {shown}: the scrub was replaced by another one");
            return EXIT_OPERATIONAL;
        }
        break;
    }
    match fetch_report(path) {
        Ok(report) => print_report(path, &report, cmd.json),
        Err(e) => {
            eprintln!("stablefs scrub: {shown}: cannot fetch the report: {e}");
            EXIT_OPERATIONAL
        }
    }
}

/// The whole report, page by page.
fn fetch_report(path: &Path) -> Result<ScrubReport, String> {
    let mut report: Option<ScrubReport> = None;
    loop {
        let from = report.as_ref().map_or(0, |r| r.bad.len());
        let page = ask_ok(path, &Request::Report { from })?;
        let total = page.bad_total;
        let part = page.report.ok_or("no report in the answer")?;
        if report.is_some() && part.bad.is_empty() && from < total {
            return Err("the report stopped short".into());
        }
        let r = match report.as_mut() {
            None => report.insert(part),
            Some(r) => {
                r.bad.extend(part.bad);
                r
            }
        };
        if r.bad.len() >= total {
            return Ok(report.unwrap_or_default());
        }
    }
}

fn control_command(word: &str, path: &Path, json: bool) -> u8 {
    let shown = path.display();
    let req = match word {
        "status" => Request::Status,
        "pause" => Request::Pause,
        "resume" => Request::Resume,
        "cancel" => Request::Cancel,
        _ => {
            eprintln!(
                "stablefs scrub: unknown command {word:?} (status, pause, resume or cancel; \
                 a path alone is scrubbed)"
            );
            return EXIT_OPERATIONAL;
        }
    };
    let status: ScrubStatus = match ask_ok(path, &req) {
        Ok(r) => r.status.unwrap_or_default(),
        Err(e) => {
            eprintln!("stablefs scrub {word}: {shown}: {e}");
            return EXIT_OPERATIONAL;
        }
    };
    if json {
        match serde_json::to_string_pretty(&status) {
            Ok(t) => println!("{t}"),
            Err(e) => {
                eprintln!("stablefs scrub {word}: cannot encode the status: {e}");
                return EXIT_OPERATIONAL;
            }
        }
    } else if word == "status" {
        print!("{}", status.to_text());
    } else {
        let done = match word {
            "pause" => "paused",
            "resume" => "resumed",
            _ => "cancelled",
        };
        println!("scrub {done} at device block {}", status.position);
    }
    0
}
