//! `stablefs mkfs`: writes an empty filesystem onto a device.

use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, Result};
use crate::format::{
    valid_block_size, BlockPtr, InodeItem, Key, Superblock, FEATURE_INCOMPAT_DATA_COPIES,
    FEATURE_RO_COMPAT_METADATA_DUP, KIND_INODE, LABEL_MAX, RESERVED_BYTES,
};
use crate::format::{Timespec, ROOT_INO};
use crate::txn::{write_commit, Meta};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct MkfsOptions {
    /// Filesystem block size in bytes: a power of two, 4 KiB to 64 KiB, at least the device's
    /// logical block size.
    pub block_size: u32,
    /// Up to 64 bytes of UTF-8.
    pub label: String,
    /// Overwrite an existing stablefs, ext2/3/4, btrfs or xfs signature.
    pub force: bool,
    /// Copies of every metadata block: 2 (DUP, the default) or 1.
    pub metadata_copies: u8,
    /// Copies of every data block: 1 (the default) or 2 (`copies=2`: twice the writes and
    /// the space, and a bad block is repaired from the other copy).
    pub data_copies: u8,
}

impl Default for MkfsOptions {
    fn default() -> Self {
        MkfsOptions {
            block_size: 4096,
            label: String::new(),
            force: false,
            metadata_copies: 2,
            data_copies: 1,
        }
    }
}

/// What mkfs made.
#[derive(Clone, Debug)]
pub struct MkfsReport {
    pub uuid: [u8; 16],
    pub size_bytes: u64,
    pub block_size: u32,
    pub total_blocks: u64,
    pub metadata_copies: u8,
    pub data_copies: u8,
}

/// Formats `dev`. Refuses (with `Error::Invalid` naming what was found) to overwrite a
/// recognised filesystem unless `opts.force`.
pub fn mkfs(dev: Arc<dyn BlockDevice>, opts: &MkfsOptions) -> Result<MkfsReport> {
    let bs = opts.block_size;
    if !valid_block_size(bs) {
        return Err(Error::Invalid(format!(
            "block size {bs}: must be a power of two from 4096 to 65536"
        )));
    }
    if bs % dev.align() != 0 {
        return Err(Error::Invalid(format!(
            "block size {bs} is smaller than (or not a multiple of) the device's logical block size {}",
            dev.align()
        )));
    }
    if !matches!(opts.metadata_copies, 1 | 2) {
        return Err(Error::Invalid(format!(
            "{} metadata copies: 1 or 2 are possible",
            opts.metadata_copies
        )));
    }
    if !matches!(opts.data_copies, 1 | 2) {
        return Err(Error::Invalid(format!(
            "{} data copies: 1 or 2 are possible",
            opts.data_copies
        )));
    }
    if opts.label.len() > LABEL_MAX {
        return Err(Error::Invalid(format!(
            "label is {} bytes; at most {LABEL_MAX}",
            opts.label.len()
        )));
    }
    let total_blocks = dev.capacity() / u64::from(bs);
    let first_block = Superblock::first_block_for(bs);
    let min_blocks = first_block + 1024;
    if total_blocks < min_blocks {
        return Err(Error::Invalid(format!(
            "device too small: {} bytes; need at least {} bytes at block size {bs}",
            dev.capacity(),
            min_blocks * u64::from(bs)
        )));
    }
    if !opts.force {
        if let Some(found) = probe_signature(&*dev)? {
            return Err(Error::Invalid(format!(
                "the device holds {found}; use --force to overwrite it (its data will be lost)"
            )));
        }
    }
    // Wipe the reserved area first, so no stale superblock (ours or a foreign one) survives.
    let zero = AlignedBuf::zeroed(RESERVED_BYTES as usize);
    dev.write_at(0, &[&zero])?;
    dev.flush()?;

    let now = Timespec::now();
    let mut label = [0u8; LABEL_MAX];
    label[..opts.label.len()].copy_from_slice(opts.label.as_bytes());
    let uuid = random_uuid()?;
    let sb = Superblock {
        compat: 0,
        ro_compat: if opts.metadata_copies == 2 {
            FEATURE_RO_COMPAT_METADATA_DUP
        } else {
            0
        },
        incompat: if opts.data_copies == 2 {
            FEATURE_INCOMPAT_DATA_COPIES
        } else {
            0
        },
        uuid,
        block_size: bs,
        slot: 0,
        total_blocks,
        generation: 0,
        root: BlockPtr::default(),
        root_level: 0,
        flags: 0,
        next_ino: ROOT_INO + 1,
        used_blocks: 0,
        inode_count: 1,
        created: now.sec,
        committed: now.sec,
        label,
        first_block,
    };
    let mut meta = Meta::create(dev.clone(), sb);
    let root = InodeItem::empty_root_dir(0o755, ROOT_INO, now);
    meta.tree
        .insert(Key::new(ROOT_INO, KIND_INODE, 0), root.encode())?;
    let mut plan = meta.prepare_commit(now.sec)?;
    write_commit(&*dev, &mut plan)?;
    Ok(MkfsReport {
        uuid,
        size_bytes: total_blocks * u64::from(bs),
        block_size: bs,
        total_blocks,
        metadata_copies: opts.metadata_copies,
        data_copies: opts.data_copies,
    })
}

/// Names a filesystem whose signature is on `dev`, if any: stablefs, ext2/3/4, btrfs, xfs.
pub fn probe_signature(dev: &dyn BlockDevice) -> Result<Option<&'static str>> {
    const PROBE: usize = 128 * 1024;
    if dev.capacity() < PROBE as u64 {
        return Ok(None);
    }
    let mut buf = AlignedBuf::zeroed(PROBE);
    dev.read_at(0, &mut buf)?;
    let at = |off: usize, magic: &[u8]| buf.get(off..off + magic.len()) == Some(magic);
    Ok(if at(0, b"STABLEFS") || at(64 * 1024, b"STABLEFS") {
        Some("a stablefs filesystem")
    } else if at(1024 + 56, &0xEF53u16.to_le_bytes()) {
        Some("an ext2/ext3/ext4 filesystem")
    } else if at(64 * 1024 + 64, b"_BHRfS_M") {
        Some("a btrfs filesystem")
    } else if at(0, b"XFSB") {
        Some("an xfs filesystem")
    } else {
        None
    })
}

/// A random (version 4) UUID from the kernel's CSPRNG.
fn random_uuid() -> Result<[u8; 16]> {
    let mut u = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut u))?;
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    Ok(u)
}
