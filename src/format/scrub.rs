//! The online scrub's record in the tree: where a running or paused scrub is, and how the last
//! finished one ended. Committed by the normal commits like any other item, so a scrub resumes
//! after a remount (or a crash: from its position at the last commit) and `stablefs status`
//! can say what the last scrub found.
//!
//! ```text
//! key (0, SCRUB, 0): the current scrub (state running or paused); absent when none runs
//! key (0, SCRUB, 1): the last finished scrub (clean, corrected, uncorrectable or cancelled)
//!
//! ScrubItem, 128 bytes (SCRUB_ITEM_SIZE)
//!   0 version          u8    SCRUB_ITEM_VERSION (1)
//!   1 state            u8    1 running, 2 paused, 3 clean, 4 corrected, 5 uncorrectable,
//!                            6 cancelled
//!   2 reserved         u16   zero
//!   4 reserved         u32   zero
//!   8 id               u64   the start time in nanoseconds since the epoch: tells scrubs apart
//!  16 position         u64   device block: every block below it has been verified (a finished
//!                            scrub: where it stopped)
//!  24 subtree          u64   the directory inode whose files' data is scrubbed (the root, 1:
//!                            every file); never 0
//!  32 limit            u64   bytes read per second at most; 0 = no limit
//!  40 started          i64   seconds since the epoch
//!  48 finished         i64   seconds since the epoch; 0 while running or paused
//!  56 elapsed_ms       u64   milliseconds spent scrubbing (not paused), across remounts
//!  64 bytes_read       u64
//!  72 data_blocks      u64   data blocks verified
//!  80 metadata_nodes   u64   tree nodes verified (their first copies)
//!  88 metadata_copies  u64   second copies of tree nodes verified (DUP)
//!  96 corrected        u64   bad blocks rewritten from a good copy
//! 104 uncorrectable    u64   bad blocks with no good copy
//! 112 reserved         [16]  zero
//! ```

use super::codec::{Dec, Enc};
use super::node::max_item_value;
use super::MIN_BLOCK_SIZE;
use crate::error::Result;

/// Key offsets of the two SCRUB items (under `OBJECT_FS`).
pub const SCRUB_CURRENT: u64 = 0;
pub const SCRUB_LAST: u64 = 1;
pub const SCRUB_ITEM_VERSION: u8 = 1;

/// Field offsets inside a `ScrubItem`, as in the byte map above; each follows the one before.
pub const SCRUB_VERSION_OFF: usize = 0;
pub const SCRUB_STATE_OFF: usize = SCRUB_VERSION_OFF + 1;
/// A zero u16, then a zero u32: they bring `id` to offset 8.
pub const SCRUB_RESERVED_U16_OFF: usize = SCRUB_STATE_OFF + 1;
pub const SCRUB_RESERVED_U32_OFF: usize = SCRUB_RESERVED_U16_OFF + 2;
pub const SCRUB_ID_OFF: usize = SCRUB_RESERVED_U32_OFF + 4;
pub const SCRUB_POSITION_OFF: usize = SCRUB_ID_OFF + 8;
pub const SCRUB_SUBTREE_OFF: usize = SCRUB_POSITION_OFF + 8;
pub const SCRUB_LIMIT_OFF: usize = SCRUB_SUBTREE_OFF + 8;
pub const SCRUB_STARTED_OFF: usize = SCRUB_LIMIT_OFF + 8;
pub const SCRUB_FINISHED_OFF: usize = SCRUB_STARTED_OFF + 8;
pub const SCRUB_ELAPSED_MS_OFF: usize = SCRUB_FINISHED_OFF + 8;
pub const SCRUB_BYTES_READ_OFF: usize = SCRUB_ELAPSED_MS_OFF + 8;
pub const SCRUB_DATA_BLOCKS_OFF: usize = SCRUB_BYTES_READ_OFF + 8;
pub const SCRUB_METADATA_NODES_OFF: usize = SCRUB_DATA_BLOCKS_OFF + 8;
pub const SCRUB_METADATA_COPIES_OFF: usize = SCRUB_METADATA_NODES_OFF + 8;
pub const SCRUB_CORRECTED_OFF: usize = SCRUB_METADATA_COPIES_OFF + 8;
pub const SCRUB_UNCORRECTABLE_OFF: usize = SCRUB_CORRECTED_OFF + 8;
/// The zero bytes that end the item.
pub const SCRUB_RESERVED_TAIL_OFF: usize = SCRUB_UNCORRECTABLE_OFF + 8;
const SCRUB_RESERVED_TAIL_LEN: usize = 16;
pub const SCRUB_ITEM_SIZE: usize = 128;

const _: () = assert!(SCRUB_RESERVED_TAIL_OFF + SCRUB_RESERVED_TAIL_LEN == SCRUB_ITEM_SIZE);
// The item fits a leaf of the smallest block size.
const _: () = assert!(SCRUB_ITEM_SIZE <= max_item_value(MIN_BLOCK_SIZE));

/// Where a scrub is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScrubState {
    Running,
    Paused,
    Clean,
    Corrected,
    Uncorrectable,
    Cancelled,
}

impl ScrubState {
    fn code(self) -> u8 {
        match self {
            ScrubState::Running => 1,
            ScrubState::Paused => 2,
            ScrubState::Clean => 3,
            ScrubState::Corrected => 4,
            ScrubState::Uncorrectable => 5,
            ScrubState::Cancelled => 6,
        }
    }

    fn from_code(c: u8) -> Option<ScrubState> {
        Some(match c {
            1 => ScrubState::Running,
            2 => ScrubState::Paused,
            3 => ScrubState::Clean,
            4 => ScrubState::Corrected,
            5 => ScrubState::Uncorrectable,
            6 => ScrubState::Cancelled,
            _ => return None,
        })
    }

    /// Running or paused (the current item); else a finished scrub (the last item).
    pub fn is_active(self) -> bool {
        matches!(self, ScrubState::Running | ScrubState::Paused)
    }

    pub fn name(self) -> &'static str {
        match self {
            ScrubState::Running => "running",
            ScrubState::Paused => "paused",
            ScrubState::Clean => "clean",
            ScrubState::Corrected => "corrected",
            ScrubState::Uncorrectable => "uncorrectable",
            ScrubState::Cancelled => "cancelled",
        }
    }
}

/// What a scrub counts: the one set of counters that the scrub's record in the tree, the
/// online scrub's status, the last-scrub summary in `stablefs status` and the scrub report
/// all carry (flattened into their JSON, so each shows the same six names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScrubCounts {
    pub bytes_read: u64,
    /// Data blocks verified (every copy with `copies=2`, in the online count).
    pub data_blocks: u64,
    /// Tree nodes verified, and their second copies (DUP).
    pub metadata_nodes: u64,
    pub metadata_copies: u64,
    /// Bad blocks found and repaired from another copy, and bad blocks that could not be.
    pub corrected: u64,
    pub uncorrectable: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrubItem {
    pub state: ScrubState,
    pub id: u64,
    pub position: u64,
    pub subtree: u64,
    pub limit: u64,
    pub started: i64,
    pub finished: i64,
    pub elapsed_ms: u64,
    pub counts: ScrubCounts,
}

impl ScrubItem {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::with_capacity(SCRUB_ITEM_SIZE);
        e.u8(SCRUB_ITEM_VERSION).u8(self.state.code()).u16(0).u32(0);
        e.u64(self.id).u64(self.position).u64(self.subtree);
        e.u64(self.limit).i64(self.started).i64(self.finished);
        let c = &self.counts;
        e.u64(self.elapsed_ms).u64(c.bytes_read);
        e.u64(c.data_blocks).u64(c.metadata_nodes);
        e.u64(c.metadata_copies).u64(c.corrected);
        e.u64(c.uncorrectable).zeros(SCRUB_RESERVED_TAIL_LEN);
        debug_assert_eq!(e.len(), SCRUB_ITEM_SIZE);
        e.buf
    }

    /// Decodes the item stored under key offset `which` (`SCRUB_CURRENT` or `SCRUB_LAST`) of a
    /// filesystem of `total_blocks` blocks, and checks every field: the current scrub must be
    /// running or paused, the last one finished, the position inside the device.
    pub fn decode(bytes: &[u8], which: u64, total_blocks: u64) -> Result<ScrubItem> {
        let mut d = Dec::new(bytes, "scrub item");
        if bytes.len() != SCRUB_ITEM_SIZE {
            return d.corrupt(format_args!(
                "{} bytes, expected {SCRUB_ITEM_SIZE}",
                bytes.len()
            ));
        }
        let version = d.u8()?;
        if version != SCRUB_ITEM_VERSION {
            return d.corrupt(format_args!("version {version}"));
        }
        let code = d.u8()?;
        let Some(state) = ScrubState::from_code(code) else {
            return d.corrupt(format_args!("state {code}"));
        };
        match which {
            SCRUB_CURRENT if !state.is_active() => {
                return d.corrupt(format_args!("the current scrub is {}", state.name()))
            }
            SCRUB_LAST if state.is_active() => {
                return d.corrupt(format_args!("the last finished scrub is {}", state.name()))
            }
            SCRUB_CURRENT | SCRUB_LAST => {}
            _ => return d.corrupt(format_args!("key offset {which}")),
        }
        if d.u16()? != 0 || d.u32()? != 0 {
            return d.corrupt("reserved bytes are not zero");
        }
        let (id, position, subtree) = (d.u64()?, d.u64()?, d.u64()?);
        if position > total_blocks {
            return d.corrupt(format_args!(
                "position {position} beyond the device's {total_blocks} blocks"
            ));
        }
        if subtree == 0 {
            return d.corrupt("subtree inode 0");
        }
        let (limit, started, finished) = (d.u64()?, d.i64()?, d.i64()?);
        if state.is_active() != (finished == 0) {
            return d.corrupt(format_args!(
                "a {} scrub with finish time {finished}",
                state.name()
            ));
        }
        let (elapsed_ms, bytes_read) = (d.u64()?, d.u64()?);
        let (data_blocks, metadata_nodes) = (d.u64()?, d.u64()?);
        let (metadata_copies, corrected) = (d.u64()?, d.u64()?);
        let uncorrectable = d.u64()?;
        if d.bytes(SCRUB_RESERVED_TAIL_LEN)?.iter().any(|&b| b != 0) {
            return d.corrupt("reserved bytes are not zero");
        }
        Ok(ScrubItem {
            state,
            id,
            position,
            subtree,
            limit,
            started,
            finished,
            elapsed_ms,
            counts: ScrubCounts {
                bytes_read,
                data_blocks,
                metadata_nodes,
                metadata_copies,
                corrected,
                uncorrectable,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(state: ScrubState) -> ScrubItem {
        ScrubItem {
            state,
            id: 1_700_000_000_123_456_789,
            position: 1234,
            subtree: 1,
            limit: 50 << 20,
            started: 1_700_000_000,
            finished: if state.is_active() { 0 } else { 1_700_000_100 },
            elapsed_ms: 99_000,
            counts: ScrubCounts {
                bytes_read: 5 << 30,
                data_blocks: 1_000_000,
                metadata_nodes: 1_000,
                metadata_copies: 999,
                corrected: 3,
                uncorrectable: 4,
            },
        }
    }

    #[test]
    fn round_trip_and_byte_map() {
        for s in [ScrubState::Running, ScrubState::Paused] {
            let i = item(s);
            assert_eq!(
                ScrubItem::decode(&i.encode(), SCRUB_CURRENT, 5000).unwrap(),
                i
            );
        }
        for s in [
            ScrubState::Clean,
            ScrubState::Corrected,
            ScrubState::Uncorrectable,
            ScrubState::Cancelled,
        ] {
            let i = item(s);
            assert_eq!(ScrubItem::decode(&i.encode(), SCRUB_LAST, 5000).unwrap(), i);
        }
        let b = item(ScrubState::Paused).encode();
        assert_eq!(b.len(), SCRUB_ITEM_SIZE);
        assert_eq!((b[0], b[1]), (1, 2));
        assert_eq!(b[16..24], 1234u64.to_le_bytes());
        assert_eq!(b[24..32], 1u64.to_le_bytes());
        assert_eq!(b[80..88], 1_000u64.to_le_bytes());
        assert_eq!(b[104..112], 4u64.to_le_bytes());
    }

    #[test]
    fn every_field_is_checked() {
        let good = item(ScrubState::Running).encode();
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            ScrubItem::decode(&b, SCRUB_CURRENT, 5000).unwrap_err()
        };
        bad(&|b| b[0] = 2);
        bad(&|b| b[1] = 0);
        bad(&|b| b[1] = 7);
        bad(&|b| b[1] = 3); // a finished state as the current scrub
        bad(&|b| b[2] = 1);
        bad(&|b| b[5] = 1);
        bad(&|b| b[16..24].copy_from_slice(&5001u64.to_le_bytes()));
        bad(&|b| b[24..32].fill(0));
        bad(&|b| b[48] = 1); // running with a finish time
        bad(&|b| b[127] = 1);
        bad(&|b| b.truncate(127));
        bad(&|b| b.push(0));
        // The last scrub must be finished, with a finish time.
        assert!(ScrubItem::decode(&good, SCRUB_LAST, 5000).is_err());
        let mut last = item(ScrubState::Clean);
        last.finished = 0;
        assert!(ScrubItem::decode(&last.encode(), SCRUB_LAST, 5000).is_err());
        assert!(ScrubItem::decode(&good, 2, 5000).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                which in 0u64..3, total in any::<u64>()) {
            let _ = ScrubItem::decode(&bytes, which, total);
        }
    }
}
