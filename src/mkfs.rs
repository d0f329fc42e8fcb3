//! `stablefs mkfs`: writes an empty filesystem onto a device.

use crate::device::BlockDevice;
use crate::error::Result;

#[derive(Clone, Debug)]
pub struct MkfsOptions {
    /// Filesystem block size in bytes: a power of two, 4 KiB to 64 KiB, at least the device's
    /// logical block size.
    pub block_size: u32,
    /// Up to 64 bytes of UTF-8.
    pub label: String,
    /// Overwrite an existing stablefs, ext2/3/4, btrfs or xfs signature.
    pub force: bool,
}

impl Default for MkfsOptions {
    fn default() -> Self {
        MkfsOptions {
            block_size: 4096,
            label: String::new(),
            force: false,
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
}

/// Formats `dev`. Refuses (with `Error::Invalid` naming what was found) to overwrite a
/// recognised filesystem unless `opts.force`.
#[allow(unused_variables)]
pub fn mkfs(dev: &dyn BlockDevice, opts: &MkfsOptions) -> Result<MkfsReport> {
    todo!()
}

/// Formats a UUID the usual way (8-4-4-4-12 hex).
pub fn uuid_string(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
