//! `stablefs sync MOUNTPOINT...`: asks the daemon of each mount to commit everything and
//! waits until the commit is on the device. The kernel's `sync(2)` cannot do that for a FUSE
//! filesystem (it sends the daemon no request for it); see the README's "When data is
//! durable". Exit status: 0 every mount is committed, 1 one or more could not be.

use stablefs::fuse::SYNC_IOCTL;
use std::path::Path;

pub fn run(paths: &[impl AsRef<Path>]) -> u8 {
    let mut status = 0;
    for path in paths {
        let path = path.as_ref();
        let mut generation = [0u8; 8];
        if let Err(e) = super::mount_ioctl::ask(path, SYNC_IOCTL, &mut generation, "sync") {
            eprintln!("stablefs sync: {}: {e}", path.display());
            status = 1;
        }
    }
    status
}
