//! `stablefs status`: what a mounted filesystem's daemon has seen, asked for over an ioctl on
//! the mountpoint (any file or directory of the mount works; the kernel passes the ioctl to
//! the daemon, which answers with this report as JSON).
//!
//! The last scrub is the last *finished* online scrub, from its record in the tree; a running
//! one is shown by `stablefs scrub status` (`crate::scrub::control`).
//!
//! The ioctl is `STATUS_IOCTL`, `_IOR('S', 1, [u8; STATUS_BYTES])`: a "restricted" FUSE ioctl
//! (its size and direction are in its number), so no special mount option is needed. The
//! reply is the JSON text, padded with NULs to `STATUS_BYTES`.

use serde::{Deserialize, Serialize};

/// Bytes the status ioctl returns (the JSON, NUL-padded).
pub const STATUS_BYTES: u32 = 8192;

/// `_IOR('S', 1, [u8; STATUS_BYTES])`: read direction (2) in bits 30-31, the size in bits
/// 16-29, the type in bits 8-15, the number in bits 0-7.
pub const STATUS_IOCTL: u32 = (2 << 30) | (STATUS_BYTES << 16) | ((b'S' as u32) << 8) | 1;

const _: () = assert!(STATUS_BYTES < 1 << 14, "an ioctl size has 14 bits");

/// What `stablefs status` reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub uuid: String,
    /// The last durable commit.
    pub generation: u64,
    pub read_only: bool,
    /// A device write or flush failed: nothing more is committed.
    pub failed: bool,
    pub block_size: u32,
    pub blocks_total: u64,
    pub blocks_free: u64,
    /// Data blocks that failed verification on read (each answered `EIO`).
    pub checksum_errors: u64,
    /// Metadata copies that failed to read or verify (DUP: the other copy served).
    pub metadata_bad_copies: u64,
    /// Bad metadata copies rewritten from the good one.
    pub repairs: u64,
    /// Copies of every data block (1, or 2 with `mkfs --copies 2`); 0 from a daemon that
    /// predates data copies.
    #[serde(default)]
    pub data_copies: u8,
    /// Data block copies that failed to read or verify (`copies=2`: the other copy served
    /// when it was good).
    #[serde(default)]
    pub data_bad_copies: u64,
    /// Bad data copies rewritten from the good one.
    #[serde(default)]
    pub data_repairs: u64,
    pub device_read_errors: u64,
    pub device_write_errors: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub commits: u64,
    /// Seconds since the mount.
    pub mounted_secs: u64,
    /// The last finished online scrub of this filesystem (kept on the device, so it survives
    /// remounts); `None` if there has been none. An offline scrub reports on its own.
    pub last_scrub: Option<crate::scrub::control::LastScrub>,
}

impl Status {
    pub fn to_text(&self) -> String {
        format!(
            "filesystem {uuid}, generation {gen}{ro}{failed}\n\
             blocks: {free} free of {total} ({bs} bytes each)\n\
             checksum errors: {cs}\n\
             metadata: {bad} bad copies, {rep} repaired from the other copy\n\
             data ({copies} {copies_word}): {dbad} bad copies, {drep} repaired from the other copy\n\
             device errors: {re} read, {we} write\n\
             read {r:.1} MiB, written {w:.1} MiB, {commits} commits, mounted {secs} s\n\
             last scrub: {scrub}\n",
            uuid = self.uuid,
            gen = self.generation,
            ro = if self.read_only { ", read-only" } else { "" },
            failed = if self.failed {
                ", FAILED (a device write failed; nothing more is committed)"
            } else {
                ""
            },
            free = self.blocks_free,
            total = self.blocks_total,
            bs = self.block_size,
            cs = self.checksum_errors,
            bad = self.metadata_bad_copies,
            rep = self.repairs,
            copies = self.data_copies,
            copies_word = if self.data_copies == 1 { "copy" } else { "copies" },
            dbad = self.data_bad_copies,
            drep = self.data_repairs,
            re = self.device_read_errors,
            we = self.device_write_errors,
            r = self.bytes_read as f64 / f64::from(1 << 20),
            w = self.bytes_written as f64 / f64::from(1 << 20),
            commits = self.commits,
            secs = self.mounted_secs,
            scrub = self
                .last_scrub
                .as_ref()
                .map_or("never".to_string(), |l| l.to_text()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_number_is_ior_s_1_with_its_size() {
        // _IOR('S', 1, char[8192]) as the C macros compute it.
        assert_eq!(STATUS_IOCTL, 0x8000_0000 | (8192 << 16) | 0x5301);
        let s = Status {
            uuid: "u".into(),
            ..Status::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.len() < STATUS_BYTES as usize);
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
        assert!(s.to_text().contains("last scrub: never"));
    }

    #[test]
    fn data_copy_counters_are_shown_and_old_reports_still_parse() {
        let s = Status {
            data_copies: 2,
            data_bad_copies: 3,
            data_repairs: 2,
            ..Status::default()
        };
        assert!(
            s.to_text()
                .contains("data (2 copies): 3 bad copies, 2 repaired from the other copy"),
            "{}",
            s.to_text()
        );
        // The JSON of a daemon from before data copies: the new fields default to zero.
        let mut v = serde_json::to_value(&s).unwrap();
        for k in ["data_copies", "data_bad_copies", "data_repairs"] {
            v.as_object_mut().unwrap().remove(k);
        }
        let old: Status = serde_json::from_value(v).unwrap();
        assert_eq!((old.data_copies, old.data_repairs), (0, 0));
    }
}
