//! What a scrub found, as text and as JSON (`serde`), and the exit status it implies.

use super::{EXIT_CLEAN, EXIT_CORRECTED, EXIT_UNCORRECTABLE};
use crate::format::ScrubCounts;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One bad block.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BadBlock {
    /// Device block number.
    pub block: u64,
    #[serde(flatten)]
    pub damage: Damage,
    /// Why it is bad.
    pub error: String,
    /// Rewritten from a good copy.
    pub repaired: bool,
}

/// What a bad block belongs to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Damage {
    /// File data: the inode, the byte offset in the file, and every path that reaches it
    /// (all hard links).
    Data {
        ino: u64,
        offset: u64,
        paths: Vec<String>,
    },
    /// A copy (1 or 2) of the tree node whose first copy is at block `node`, at tree level
    /// `level` (0: a leaf).
    Metadata { node: u64, level: u8, copy: u8 },
    /// One copy (1 or 2) of a data block of a `copies=2` filesystem: as `Data`, and which copy.
    DataCopy {
        ino: u64,
        offset: u64,
        paths: Vec<String>,
        copy: u8,
    },
}

/// Deserializable too: the online scrub's report comes from the daemon as JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScrubReport {
    /// The commit scrubbed.
    pub generation: u64,
    /// Nodes, their second copies (DUP), data blocks, bytes, corrected and uncorrectable.
    #[serde(flatten)]
    pub counts: ScrubCounts,
    /// Second copies of data blocks checked (`copies=2`).
    pub data_copies: u64,
    #[serde(serialize_with = "seconds", deserialize_with = "from_seconds")]
    pub elapsed: Duration,
    pub bad: Vec<BadBlock>,
    /// Tree nodes bad in every copy, and items that did not decode: what is below them was
    /// not scrubbed.
    pub lost_metadata: Vec<String>,
    pub superblock_notes: Vec<String>,
    /// "clean", "corrected" or "uncorrectable" ("cancelled": an online scrub stopped early).
    #[serde(deserialize_with = "result_name")]
    pub result: ResultName,
    pub exit_code: u8,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn from_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
}

/// A result's name. (An alias: serde would otherwise borrow a `&str` field from its input,
/// which a `'static` one cannot be.)
pub type ResultName = &'static str;

/// The results a report can have.
pub const RESULTS: [&str; 4] = ["clean", "corrected", "uncorrectable", "cancelled"];

fn result_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let name = String::deserialize(d)?;
    RESULTS
        .iter()
        .find(|r| **r == name)
        .copied()
        .ok_or_else(|| serde::de::Error::custom(format!("unknown scrub result {name:?}")))
}

impl ScrubReport {
    /// Counts, result and exit status from `bad` and `lost_metadata`.
    pub(super) fn finish(&mut self) {
        let corrected = self.bad.iter().filter(|b| b.repaired).count() as u64;
        let uncorrectable = self.bad.iter().filter(|b| !b.repaired).count() as u64
            + self.lost_metadata.len() as u64;
        self.finish_with(corrected, uncorrectable);
    }

    /// Result and exit status from counts given (an online scrub resumed after a remount
    /// counts findings from before it that `bad` no longer lists).
    pub(super) fn finish_with(&mut self, corrected: u64, uncorrectable: u64) {
        self.bad.sort_by_key(|b| b.block);
        (self.counts.corrected, self.counts.uncorrectable) = (corrected, uncorrectable);
        (self.result, self.exit_code) = if self.counts.uncorrectable > 0 {
            ("uncorrectable", EXIT_UNCORRECTABLE)
        } else if self.counts.corrected > 0 {
            ("corrected", EXIT_CORRECTED)
        } else {
            ("clean", EXIT_CLEAN)
        };
    }

    /// One line per finding, then a summary line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for b in &self.bad {
            let names = |ino: &u64, paths: &[String]| {
                if paths.is_empty() {
                    format!("inode {ino} (no name reaches it)")
                } else {
                    paths.join(", ")
                }
            };
            let what = match &b.damage {
                Damage::Data { ino, offset, paths } => {
                    let names = names(ino, paths);
                    format!("data of {names} at offset {offset} (inode {ino})")
                }
                Damage::DataCopy {
                    ino,
                    offset,
                    paths,
                    copy,
                } => {
                    let names = names(ino, paths);
                    format!("copy {copy} of the data of {names} at offset {offset} (inode {ino})")
                }
                Damage::Metadata { node, level, copy } => format!(
                    "copy {copy} of tree node {node} ({})",
                    if *level == 0 {
                        "a leaf".to_string()
                    } else {
                        format!("level {level}")
                    }
                ),
            };
            let fate = if b.repaired {
                "repaired from the good copy"
            } else {
                match b.damage {
                    Damage::Data { .. } => "NOT repaired: data has one copy",
                    Damage::DataCopy { .. } => "NOT repaired: the other copy is bad too",
                    Damage::Metadata { .. } => "NOT repaired",
                }
            };
            out.push_str(&format!(
                "bad block {}: {what}: {}; {fate}\n",
                b.block, b.error
            ));
        }
        for l in &self.lost_metadata {
            out.push_str(&format!("lost metadata (every copy bad): {l}\n"));
        }
        for n in &self.superblock_notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    pub fn summary(&self) -> String {
        format!(
            "scrubbed generation {}: {} tree nodes, {} second copies, {} data blocks{}, {:.1} MiB \
             in {:.2} s: {} (corrected {}, uncorrectable {})",
            self.generation,
            self.counts.metadata_nodes,
            self.counts.metadata_copies,
            self.counts.data_blocks,
            if self.data_copies > 0 {
                format!(" (and {} second copies)", self.data_copies)
            } else {
                String::new()
            },
            self.counts.bytes_read as f64 / f64::from(1 << 20),
            self.elapsed.as_secs_f64(),
            self.result,
            self.counts.corrected,
            self.counts.uncorrectable
        )
    }
}
