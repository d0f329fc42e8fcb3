//! The subcommands of the `stablefs` binary, each a `run` that returns a message on failure.

pub mod fsck;
pub mod mkfs;
pub mod mount;
pub mod mount_ioctl;
pub mod mountinfo;
pub mod options;
pub mod remount;
pub mod scrub;
pub mod size;
pub mod status;
pub mod sync;
