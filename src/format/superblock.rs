//! The superblock: the root of everything, written in one of two alternating slots per commit.
//!
//! ```text
//! Superblock, one 4 KiB slot (SB_SIZE); slot k at byte SB_SLOT_OFFSETS[k]
//!   0  magic            [8]   "STABLEFS"
//!   8  crc              u32   crc32c of the 4 KiB slot with this field zeroed
//!  12  version          u32   FORMAT_VERSION
//!  16  compat           u64   features an older reader may ignore
//!  24  ro_compat        u64   features an older reader may only read (bit 0: metadata DUP)
//!  32  incompat         u64   features an older reader must refuse (bit 0: data copies=2;
//!                             bit 1: external xattr values)
//!  40  uuid             [16]  filesystem UUID, also in every tree node header
//!  56  block_size       u32   bytes per block, power of two in [4 KiB, 64 KiB]
//!  60  slot             u32   which slot this copy was written to (0 or 1)
//!  64  total_blocks     u64   device size in blocks
//!  72  generation       u64   commit number; the valid slot with the highest one wins
//!  80  root             BlockPtr (32)  root node of the metadata tree
//! 112  root_level       u8    height of the tree above the leaves
//! 113  flags            u8    SB_FLAG_*
//! 114  reserved         [6]   zero
//! 120  next_ino         u64   next inode number to hand out
//! 128  used_blocks      u64   blocks referenced by this commit (statfs)
//! 136  inode_count      u64   live inodes in this commit
//! 144  created          i64   mkfs time, seconds since the epoch
//! 152  committed        i64   time of this commit
//! 160  label            [64]  NUL-padded UTF-8
//! 224  first_block      u64   first allocatable block (RESERVED_BYTES / block_size)
//! 232  reserved         ...   zero up to 4096
//! ```

use super::codec::{Dec, Enc};
use super::ptr::{BlockNo, BlockPtr, BLOCK_PTR_SIZE};
use super::{valid_block_size, FORMAT_VERSION, RESERVED_BYTES};
use crate::error::{Error, Result};

pub const SB_MAGIC: [u8; 8] = *b"STABLEFS";
pub const SB_SIZE: usize = 4096;
/// Where on the device each slot starts.
pub const SB_SLOT_OFFSETS: [u64; 2] = [0, 64 * 1024];

/// Field offsets inside a slot, as in the byte map above; each follows the one before.
pub const SB_MAGIC_OFF: usize = 0;
pub const SB_CRC_OFF: usize = SB_MAGIC_OFF + SB_MAGIC.len();
pub const SB_VERSION_OFF: usize = SB_CRC_OFF + 4;
pub const SB_COMPAT_OFF: usize = SB_VERSION_OFF + 4;
pub const SB_RO_COMPAT_OFF: usize = SB_COMPAT_OFF + 8;
pub const SB_INCOMPAT_OFF: usize = SB_RO_COMPAT_OFF + 8;
pub const SB_UUID_OFF: usize = SB_INCOMPAT_OFF + 8;
pub const SB_BLOCK_SIZE_OFF: usize = SB_UUID_OFF + 16;
/// The `slot` field: which slot this copy was written to (not where: `SB_SLOT_OFFSETS`).
pub const SB_SLOT_OFF: usize = SB_BLOCK_SIZE_OFF + 4;
pub const SB_TOTAL_BLOCKS_OFF: usize = SB_SLOT_OFF + 4;
pub const SB_GENERATION_OFF: usize = SB_TOTAL_BLOCKS_OFF + 8;
pub const SB_ROOT_OFF: usize = SB_GENERATION_OFF + 8;
pub const SB_ROOT_LEVEL_OFF: usize = SB_ROOT_OFF + BLOCK_PTR_SIZE;
pub const SB_FLAGS_OFF: usize = SB_ROOT_LEVEL_OFF + 1;
pub const SB_RESERVED_OFF: usize = SB_FLAGS_OFF + 1;
pub const SB_NEXT_INO_OFF: usize = SB_RESERVED_OFF + SB_RESERVED_LEN;
pub const SB_USED_BLOCKS_OFF: usize = SB_NEXT_INO_OFF + 8;
pub const SB_INODE_COUNT_OFF: usize = SB_USED_BLOCKS_OFF + 8;
pub const SB_CREATED_OFF: usize = SB_INODE_COUNT_OFF + 8;
pub const SB_COMMITTED_OFF: usize = SB_CREATED_OFF + 8;
pub const SB_LABEL_OFF: usize = SB_COMMITTED_OFF + 8;
pub const SB_FIRST_BLOCK_OFF: usize = SB_LABEL_OFF + LABEL_MAX;
/// The zero bytes between the flags and `next_ino` (which they bring to an 8-aligned offset).
const SB_RESERVED_LEN: usize = 6;
/// Bytes of a slot that hold fields; the rest, up to `SB_SIZE`, is zero.
const SB_USED: usize = 232;
pub const LABEL_MAX: usize = 64;
/// Deepest tree we accept (a tree of 4 KiB nodes that deep would address far more than 2^64
/// bytes; anything deeper is corruption).
pub const MAX_TREE_LEVEL: u8 = 12;

/// mkfs had not finished when this superblock was written: refuse to mount.
pub const SB_FLAG_MKFS_IN_PROGRESS: u8 = 1;
pub const SB_FLAGS_KNOWN: u8 = SB_FLAG_MKFS_IN_PROGRESS;

/// Feature masks, so that later versions can add features and older binaries react correctly
/// (unknown incompat: refuse; unknown ro_compat: read-only; unknown compat: ignore).
pub const FEATURE_COMPAT_KNOWN: u64 = 0;
/// Metadata DUP: every tree node is written twice (`BlockPtr::copy_addr`, the second copy
/// about half the device away). A reader that does not know it can still read through the
/// first copies, but a writer that does not know it would leave second copies behind, stale.
pub const FEATURE_RO_COMPAT_METADATA_DUP: u64 = 1;
pub const FEATURE_RO_COMPAT_KNOWN: u64 = FEATURE_RO_COMPAT_METADATA_DUP;
/// Data `copies=2`: every data extent has a second copy (`ExtentItem::copy_start`, an extra
/// field a reader that does not know it would misparse, so incompat), the second copy about
/// half the device away.
pub const FEATURE_INCOMPAT_DATA_COPIES: u64 = 1;
/// External xattr values: an XATTR entry may say its value is in XATTR_VALUE items (see
/// `item`), which a reader that does not know it would misparse. Set by the first such value
/// written, so images that never held one stay readable by older stablefs.
pub const FEATURE_INCOMPAT_XATTR_VALUES: u64 = 1 << 1;
pub const FEATURE_INCOMPAT_KNOWN: u64 =
    FEATURE_INCOMPAT_DATA_COPIES | FEATURE_INCOMPAT_XATTR_VALUES;

const _: () = assert!(SB_FIRST_BLOCK_OFF + 8 == SB_USED);
const _: () = assert!(SB_USED <= SB_SIZE);
// The u64s after the reserved bytes are 8-aligned, as the map shows them.
const _: () = assert!(SB_NEXT_INO_OFF % 8 == 0);
// The two slots do not overlap, and both lie in the never-allocated start of the device.
const _: () = assert!(SB_SLOT_OFFSETS[0] + SB_SIZE as u64 <= SB_SLOT_OFFSETS[1]);
const _: () = assert!(SB_SLOT_OFFSETS[1] + SB_SIZE as u64 <= RESERVED_BYTES);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub compat: u64,
    pub ro_compat: u64,
    pub incompat: u64,
    pub uuid: [u8; 16],
    pub block_size: u32,
    pub slot: u32,
    pub total_blocks: u64,
    pub generation: u64,
    pub root: BlockPtr,
    pub root_level: u8,
    pub flags: u8,
    pub next_ino: u64,
    pub used_blocks: u64,
    pub inode_count: u64,
    pub created: i64,
    pub committed: i64,
    pub label: [u8; LABEL_MAX],
    pub first_block: u64,
}

impl Superblock {
    /// The first block that may be allocated for a given block size.
    pub fn first_block_for(block_size: u32) -> u64 {
        RESERVED_BYTES.div_ceil(u64::from(block_size))
    }

    /// The slot a commit of this generation goes to.
    pub fn slot_for(generation: u64) -> usize {
        (generation % 2) as usize
    }

    pub fn label_str(&self) -> String {
        let end = self.label.iter().position(|&b| b == 0).unwrap_or(LABEL_MAX);
        String::from_utf8_lossy(&self.label[..end]).into_owned()
    }

    /// Encodes into a full slot, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::with_capacity(SB_SIZE);
        e.bytes(&SB_MAGIC).u32(0).u32(FORMAT_VERSION);
        e.u64(self.compat).u64(self.ro_compat).u64(self.incompat);
        e.bytes(&self.uuid).u32(self.block_size).u32(self.slot);
        e.u64(self.total_blocks).u64(self.generation);
        self.root.encode(&mut e);
        e.u8(self.root_level).u8(self.flags).zeros(SB_RESERVED_LEN);
        e.u64(self.next_ino)
            .u64(self.used_blocks)
            .u64(self.inode_count);
        e.i64(self.created).i64(self.committed);
        e.bytes(&self.label).u64(self.first_block);
        debug_assert_eq!(e.len(), SB_USED);
        e.zeros(SB_SIZE - SB_USED);
        let crc = crc32c::crc32c(&e.buf);
        e.buf[SB_CRC_OFF..SB_CRC_OFF + 4].copy_from_slice(&crc.to_le_bytes());
        e.buf
    }

    /// Decodes and validates one slot's bytes. `Error::Corrupt` for anything damaged or not a
    /// stablefs superblock; `Error::Unsupported` for a valid superblock of a newer format.
    pub fn decode(bytes: &[u8]) -> Result<Superblock> {
        let mut d = Dec::new(bytes, "superblock");
        if d.array::<8>()? != SB_MAGIC {
            return d.corrupt("bad magic (not a stablefs superblock)");
        }
        let stored_crc = d.u32()?;
        let version = d.u32()?;
        if bytes.len() < SB_SIZE {
            return d.corrupt(format_args!("{} bytes, need {SB_SIZE}", bytes.len()));
        }
        let mut copy = bytes[..SB_SIZE].to_vec();
        copy[SB_CRC_OFF..SB_CRC_OFF + 4].fill(0);
        let crc = crc32c::crc32c(&copy);
        if crc != stored_crc {
            return d.corrupt(format_args!(
                "checksum {crc:#010x} != stored {stored_crc:#010x}"
            ));
        }
        if version != FORMAT_VERSION {
            return Err(Error::Unsupported(format!(
                "format version {version}; this stablefs reads version {FORMAT_VERSION}"
            )));
        }
        let compat = d.u64()?;
        let ro_compat = d.u64()?;
        let incompat = d.u64()?;
        let unknown = incompat & !FEATURE_INCOMPAT_KNOWN;
        if unknown != 0 {
            return Err(Error::Unsupported(format!(
                "unknown incompatible features {unknown:#x}: this filesystem needs a newer stablefs"
            )));
        }
        let uuid = d.array::<16>()?;
        let block_size = d.u32()?;
        if !valid_block_size(block_size) {
            return d.corrupt(format_args!("block size {block_size}"));
        }
        let slot = d.u32()?;
        if slot > 1 {
            return d.corrupt(format_args!("slot {slot}"));
        }
        let total_blocks = d.u64()?;
        let generation = d.u64()?;
        let first = Self::first_block_for(block_size);
        if total_blocks <= first {
            return d.corrupt(format_args!("{total_blocks} blocks is too small"));
        }
        let root = BlockPtr::decode(&mut d, first, total_blocks)?;
        let root_level = d.u8()?;
        if root_level > MAX_TREE_LEVEL {
            return d.corrupt(format_args!("tree level {root_level}"));
        }
        let flags = d.u8()?;
        if flags & !SB_FLAGS_KNOWN != 0 {
            return d.corrupt(format_args!("unknown flags {flags:#x}"));
        }
        d.bytes(SB_RESERVED_LEN)?;
        let next_ino = d.u64()?;
        let used_blocks = d.u64()?;
        let inode_count = d.u64()?;
        let created = d.i64()?;
        let committed = d.i64()?;
        let label = d.array::<LABEL_MAX>()?;
        let first_block = d.u64()?;
        if first_block != first {
            return d.corrupt(format_args!("first block {first_block}, expected {first}"));
        }
        if used_blocks > total_blocks {
            return d.corrupt(format_args!("{used_blocks} used of {total_blocks} blocks"));
        }
        Ok(Superblock {
            compat,
            ro_compat,
            incompat,
            uuid,
            block_size,
            slot,
            total_blocks,
            generation,
            root,
            root_level,
            flags,
            next_ino,
            used_blocks,
            inode_count,
            created,
            committed,
            label,
            first_block,
        })
    }

    /// Does this superblock carry read-only-compatible features this code does not know?
    pub fn needs_read_only(&self) -> bool {
        self.ro_compat & !FEATURE_RO_COMPAT_KNOWN != 0
    }

    /// Is every tree node written twice?
    pub fn metadata_dup(&self) -> bool {
        self.ro_compat & FEATURE_RO_COMPAT_METADATA_DUP != 0
    }

    /// Copies of every data block: 2 with `FEATURE_INCOMPAT_DATA_COPIES`, else 1.
    pub fn data_copies(&self) -> u64 {
        if self.incompat & FEATURE_INCOMPAT_DATA_COPIES != 0 {
            2
        } else {
            1
        }
    }

    pub fn root_block(&self) -> BlockNo {
        self.root.addr
    }
}
