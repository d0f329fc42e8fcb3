//! The online scrub's control channel: one restricted FUSE ioctl on any file or directory of
//! the mount, carrying a JSON request in and a JSON reply out.
//!
//! `SCRUB_IOCTL` is `_IOWR('S', 2, [u8; SCRUB_BYTES])`: the kernel copies `SCRUB_BYTES` bytes in
//! (the request, NUL-padded) and the same number out (the reply, NUL-padded). Like the status
//! ioctl it needs no mount option (its size and direction are in its number).
//!
//! Requests (`Request`, tagged by `"cmd"`):
//! - `start {limit}`: start a scrub of the file or directory the ioctl was issued on: the
//!   mountpoint (the root) scrubs everything, a directory only the data of the files under it
//!   (and the whole metadata tree: see `online`). `EBUSY` while one is running or paused.
//! - `status`: where the current scrub is (`ScrubStatus`), and the last finished one.
//! - `pause`, `resume`, `cancel`.
//! - `report {from}`: the report of the current scrub, or of the last one finished during this
//!   mount: the header (`ScrubReport` with an empty `bad`) and as many bad blocks from index
//!   `from` as fit one reply; `bad_total` says how many there are, so a caller fetches page
//!   after page.
//!
//! Permission: `status` and `report` are open to anyone who can open a file of the mount;
//! `start`, `pause`, `resume` and `cancel` only to root and to the user the daemon runs as (who
//! mounted it): others get `EPERM`. Errors come back as a `Reply` with `error` and `errno` set
//! (the ioctl itself succeeds), so the message reaches the user.

use super::report::{BadBlock, ScrubReport};
use crate::format::ScrubCounts;
use serde::{Deserialize, Serialize};

/// Bytes the scrub ioctl carries each way (a JSON text, NUL-padded).
pub const SCRUB_BYTES: u32 = 8192;

/// `_IOWR('S', 2, [u8; SCRUB_BYTES])`: read and write direction (3) in bits 30-31, the size in
/// bits 16-29, the type in bits 8-15, the number in bits 0-7.
pub const SCRUB_IOCTL: u32 = (3 << 30) | (SCRUB_BYTES << 16) | ((b'S' as u32) << 8) | 2;

const _: () = assert!(SCRUB_BYTES < 1 << 14, "an ioctl size has 14 bits");

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Start { limit: Option<u64> },
    Status,
    Pause,
    Resume,
    Cancel,
    Report { from: usize },
}

impl Request {
    /// Does this request change anything (and so need permission)?
    pub fn controls(&self) -> bool {
        !matches!(self, Request::Status | Request::Report { .. })
    }
}

/// The daemon's answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    /// What went wrong (the request did nothing).
    pub error: Option<String>,
    pub errno: Option<i32>,
    pub status: Option<ScrubStatus>,
    /// `report`: the header, with `bad` holding this page only.
    pub report: Option<ScrubReport>,
    /// `report`: bad blocks in the whole report.
    pub bad_total: usize,
}

impl Reply {
    pub fn error(errno: i32, message: impl Into<String>) -> Reply {
        Reply {
            error: Some(message.into()),
            errno: Some(errno),
            ..Reply::default()
        }
    }
}

/// Where the online scrub is (`stablefs scrub status`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ScrubStatus {
    /// "idle" (none running or paused), "running" or "paused".
    pub state: String,
    /// Tells scrubs apart: the start time in nanoseconds since the epoch (0 when idle).
    pub id: u64,
    /// The directory whose files' data is scrubbed ("/" for all), relative to the mount.
    pub subtree: String,
    /// The next device block to verify: every block below it is done.
    pub position: u64,
    /// Bytes verified and to verify in all (of what the tree references now).
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Bytes per second while scrubbing (not paused), since the start or the last resume or
    /// remount.
    pub rate: f64,
    /// Seconds left at that rate (none while paused or before a rate is known).
    pub eta_secs: Option<f64>,
    /// Bytes per second at most.
    pub limit: Option<u64>,
    /// Seconds since the epoch.
    pub started: i64,
    #[serde(flatten)]
    pub counts: ScrubCounts,
    /// A read-only mount: bad copies are found but not rewritten, and the position is not
    /// saved.
    pub read_only: bool,
    pub last: Option<LastScrub>,
}

/// How the last finished scrub ended (kept on the device; also in `stablefs status`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastScrub {
    pub id: u64,
    /// "clean", "corrected", "uncorrectable" or "cancelled".
    pub result: String,
    /// Seconds since the epoch.
    pub started: i64,
    pub finished: i64,
    /// `finished` as a UTC date and time.
    pub finished_utc: String,
    /// Time spent scrubbing, pauses not counted.
    pub elapsed_secs: u64,
    /// The directory inode whose files' data was scrubbed (1: the root, everything).
    pub subtree_ino: u64,
    #[serde(flatten)]
    pub counts: ScrubCounts,
}

impl LastScrub {
    /// One line for `stablefs status`.
    pub fn to_text(&self) -> String {
        format!(
            "{} at {} ({} s{}): {} data blocks, {} tree nodes, {} second copies, {:.1} MiB; \
             corrected {}, uncorrectable {}",
            self.result,
            self.finished_utc,
            self.elapsed_secs,
            if self.subtree_ino == 1 {
                String::new()
            } else {
                format!(", subtree of inode {}", self.subtree_ino)
            },
            self.counts.data_blocks,
            self.counts.metadata_nodes,
            self.counts.metadata_copies,
            self.counts.bytes_read as f64 / f64::from(1 << 20),
            self.counts.corrected,
            self.counts.uncorrectable
        )
    }
}

impl ScrubStatus {
    /// `stablefs scrub status` as text.
    pub fn to_text(&self) -> String {
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        let mut out = if self.state == "idle" {
            "no scrub running\n".to_string()
        } else {
            format!(
                "scrub {state} (subtree {sub}), started {started}{ro}\n\
                 position: device block {pos}\n\
                 done: {done:.1} of {total:.1} MiB ({pct:.0}%), {rate:.1} MiB/s{eta}{limit}\n\
                 verified: {data} data blocks, {nodes} tree nodes, {copies} second copies\n\
                 errors: {corr} corrected, {unc} uncorrectable\n",
                state = self.state,
                sub = self.subtree,
                started = utc(self.started),
                ro = if self.read_only {
                    ", read-only mount"
                } else {
                    ""
                },
                pos = self.position,
                done = mib(self.done_bytes),
                total = mib(self.total_bytes),
                pct = 100.0 * self.done_bytes as f64 / self.total_bytes.max(1) as f64,
                rate = self.rate / f64::from(1 << 20),
                eta = self
                    .eta_secs
                    .map_or(String::new(), |s| format!(", {s:.0} s left")),
                limit = self
                    .limit
                    .map_or(String::new(), |l| format!(", limit {:.1} MiB/s", mib(l))),
                data = self.counts.data_blocks,
                nodes = self.counts.metadata_nodes,
                copies = self.counts.metadata_copies,
                corr = self.counts.corrected,
                unc = self.counts.uncorrectable,
            )
        };
        out.push_str(&format!(
            "last scrub: {}\n",
            self.last
                .as_ref()
                .map_or("never".to_string(), LastScrub::to_text)
        ));
        out
    }
}

/// Encodes a request or reply for the ioctl buffer: JSON, NUL-padded to `SCRUB_BYTES`. `None`
/// if it does not fit (the text must leave at least one NUL).
pub fn encode<T: Serialize>(value: &T) -> Option<Vec<u8>> {
    let mut json = serde_json::to_vec(value).ok()?;
    if json.len() >= SCRUB_BYTES as usize {
        return None;
    }
    json.resize(SCRUB_BYTES as usize, 0);
    Some(json)
}

/// Decodes what `encode` made (up to the first NUL). Any bytes at all give a value or an
/// error, never a panic.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    serde_json::from_slice(&bytes[..end]).map_err(|e| e.to_string())
}

/// A reply holding the report header and the bad blocks from `from` that fit. A single entry
/// too large for a reply (a file with very many hard links) loses paths from its end until it
/// fits, with a last path saying how many were left out.
pub fn report_page(report: &ScrubReport, from: usize) -> Reply {
    let mut header = report.clone();
    header.bad = Vec::new();
    let mut reply = Reply {
        report: Some(header),
        bad_total: report.bad.len(),
        ..Reply::default()
    };
    // Room for the header and the JSON around the entries, then entries while they fit.
    let mut used = serde_json::to_vec(&reply).map_or(usize::MAX, |v| v.len()) + 16;
    for b in report.bad.iter().skip(from) {
        let mut entry = b.clone();
        let mut size = entry_size(&entry);
        while used + size >= SCRUB_BYTES as usize && shorten(&mut entry) {
            size = entry_size(&entry);
        }
        if used + size >= SCRUB_BYTES as usize {
            break;
        }
        used += size + 1;
        if let Some(r) = reply.report.as_mut() {
            r.bad.push(entry);
        }
    }
    reply
}

fn entry_size(b: &BadBlock) -> usize {
    serde_json::to_vec(b).map_or(usize::MAX, |v| v.len())
}

/// Drops paths from the end of a data entry (keeping count); false if nothing can go.
fn shorten(b: &mut BadBlock) -> bool {
    let super::Damage::Data { paths, .. } = &mut b.damage else {
        return false;
    };
    let more = paths
        .last()
        .and_then(|p| p.strip_prefix("(and ").and_then(|r| r.split(' ').next()))
        .and_then(|n| n.parse::<usize>().ok());
    let kept = paths.len() - usize::from(more.is_some());
    if kept <= 1 {
        return false;
    }
    let left_out = more.unwrap_or(0) + 1;
    paths.truncate(kept - 1);
    paths.push(format!("(and {left_out} more paths)"));
    true
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrub::Damage;

    #[test]
    fn the_ioctl_number_is_iowr_s_2_with_its_size() {
        // _IOWR('S', 2, char[8192]) as the C macros compute it.
        assert_eq!(SCRUB_IOCTL, 0xC000_0000 | (8192 << 16) | 0x5302);
    }

    #[test]
    fn requests_and_replies_round_trip_and_garbage_is_an_error() {
        for r in [
            Request::Start { limit: Some(5) },
            Request::Status,
            Request::Pause,
            Request::Resume,
            Request::Cancel,
            Request::Report { from: 7 },
        ] {
            let bytes = encode(&r).unwrap();
            assert_eq!(bytes.len(), SCRUB_BYTES as usize);
            assert_eq!(decode::<Request>(&bytes).unwrap(), r);
        }
        assert!(decode::<Request>(b"{\"cmd\":\"format\"}").is_err());
        assert!(decode::<Request>(&[0xff; 100]).is_err());
        assert!(decode::<Request>(&[]).is_err());
        assert!(encode(&"x".repeat(SCRUB_BYTES as usize)).is_none());
    }

    #[test]
    fn a_long_report_comes_in_pages_that_fit() {
        let mut report = ScrubReport::default();
        for i in 0..200u64 {
            report.bad.push(BadBlock {
                block: i,
                damage: Damage::Data {
                    ino: 5,
                    offset: i * 4096,
                    paths: (0..if i == 3 { 2000 } else { 2 })
                        .map(|k| format!("/some/dir/hard-link-{k}"))
                        .collect(),
                },
                error: "checksum mismatch".into(),
                repaired: false,
            });
        }
        report.finish();
        let mut got = Vec::new();
        while got.len() < report.bad.len() {
            let page = report_page(&report, got.len());
            assert!(encode(&page).is_some(), "every page fits the ioctl");
            let bad = page.report.unwrap().bad;
            assert!(!bad.is_empty());
            got.extend(bad);
        }
        assert_eq!(got.len(), 200);
        assert_eq!(got[0], report.bad[0]);
        let Damage::Data { paths, .. } = &got[3].damage else {
            panic!("data")
        };
        assert!(paths.len() > 1 && paths.len() < 2000);
        let last = paths.last().unwrap();
        assert!(
            last.starts_with("(and ") && last.ends_with(" more paths)"),
            "{last}"
        );
        let n: usize = last[5..].split(' ').next().unwrap().parse().unwrap();
        assert_eq!(n + paths.len() - 1, 2000);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
