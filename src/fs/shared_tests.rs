//! What the filesystem's unit tests share (named `*_tests`, so the layering check treats it
//! as test code): a formatted memory device, mounting it, and a clean remount.

use super::*;
use crate::device::MemDevice;
use crate::mkfs::{mkfs, MkfsOptions};

pub const ROOT: Caller = Caller::ROOT;

/// A memory device of `mib` MiB with 512-byte sectors, formatted with mkfs's defaults.
pub fn new_dev(mib: u64) -> Arc<MemDevice> {
    let dev = Arc::new(MemDevice::new(mib << 20, 512));
    mkfs(dev.clone(), &MkfsOptions::default()).unwrap();
    dev
}

pub fn mount(dev: &Arc<MemDevice>) -> Arc<Fs> {
    Fs::mount(dev.clone(), MountOptions::default()).unwrap()
}

/// Commits and closes `fs`, then mounts `dev` again.
pub fn remount(fs: Arc<Fs>, dev: &Arc<MemDevice>) -> Arc<Fs> {
    fs.shutdown().unwrap();
    drop(fs);
    mount(dev)
}
