//! The inode-flag ioctls as the FUSE kernel sends them. `chattr`/`lsattr` call
//! `FS_IOC_GETFLAGS`/`FS_IOC_SETFLAGS` (and `xfs_io` `FS_IOC_FSGETXATTR`/`FS_IOC_FSSETXATTR`);
//! the VFS turns them into the filesystem's `fileattr_get`/`fileattr_set`, which FUSE
//! implements by opening the file read-only and sending the same ioctl here, restricted, with
//! a 4-byte `int` (flags) or a 28-byte `struct fsxattr`. On a 64-bit kernel with 32-bit
//! compatibility the flag ioctls arrive as their 32-bit numbers (`FS_IOC32_*`): both are
//! understood. The rules are the `fs` layer's (`crate::fs::flags`). The kernel's `int`s are
//! in host byte order, which is little-endian on every platform stablefs builds for (as
//! everywhere in stablefs, explicit little-endian).

#[cfg(not(target_endian = "little"))]
compile_error!("the ioctls' ints are read as little-endian (the host's order)");

use crate::error::{errno, Result};
use crate::format::inode_flags as fl;
use crate::fs::{Caller, Fs, Ino};

const fn ioc(dir: u32, ty: u8, nr: u8, size: u32) -> u32 {
    (dir << 30) | (size << 16) | ((ty as u32) << 8) | nr as u32
}
const READ: u32 = 2;
const WRITE: u32 = 1;

pub const FS_IOC_GETFLAGS: u32 = ioc(READ, b'f', 1, 8);
pub const FS_IOC_SETFLAGS: u32 = ioc(WRITE, b'f', 2, 8);
pub const FS_IOC32_GETFLAGS: u32 = ioc(READ, b'f', 1, 4);
pub const FS_IOC32_SETFLAGS: u32 = ioc(WRITE, b'f', 2, 4);
/// `struct fsxattr`: xflags, extsize, nextents, projid, cowextsize (u32 each), 8 bytes pad.
const FSXATTR_BYTES: usize = 28;
pub const FS_IOC_FSGETXATTR: u32 = ioc(READ, b'X', 31, FSXATTR_BYTES as u32);
pub const FS_IOC_FSSETXATTR: u32 = ioc(WRITE, b'X', 32, FSXATTR_BYTES as u32);

/// `FS_XFLAG_*` bits and the inode flags they stand for (the kernel's `fileattr_fill_*`).
const XFLAGS: [(u32, u32); 6] = [
    (0x0000_0008, fl::IMMUTABLE),
    (0x0000_0010, fl::APPEND),
    (0x0000_0020, fl::SYNC),
    (0x0000_0040, fl::NOATIME),
    (0x0000_0080, fl::NODUMP),
    (0x0000_0200, fl::PROJINHERIT),
];

/// One of the flag ioctls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagsIoctl {
    Get,
    Set,
    FsGetXattr,
    FsSetXattr,
}

impl FlagsIoctl {
    pub fn from_cmd(cmd: u32) -> Option<FlagsIoctl> {
        match cmd {
            FS_IOC_GETFLAGS | FS_IOC32_GETFLAGS => Some(FlagsIoctl::Get),
            FS_IOC_SETFLAGS | FS_IOC32_SETFLAGS => Some(FlagsIoctl::Set),
            FS_IOC_FSGETXATTR => Some(FlagsIoctl::FsGetXattr),
            FS_IOC_FSSETXATTR => Some(FlagsIoctl::FsSetXattr),
            _ => None,
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    match b.get(at..at + 4) {
        Some(w) => Ok(u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
        None => errno(libc::EINVAL),
    }
}

fn to_xflags(flags: u32) -> u32 {
    XFLAGS
        .iter()
        .filter(|(_, f)| flags & f != 0)
        .fold(0, |x, (bit, _)| x | bit)
}

/// `FS_XFLAG_DAX`: the one xflag outside the common ones that ext4 keeps.
const XFLAG_DAX: u32 = 0x0000_8000;

/// The inode flags `xflags` stands for. As on ext4, the xflags only XFS has (realtime,
/// extent size hints, filestreams, ...) are ignored; DAX, which stablefs cannot do, is
/// EOPNOTSUPP (as `chattr +x`).
fn from_xflags(xflags: u32) -> Result<u32> {
    if xflags & XFLAG_DAX != 0 {
        return errno(libc::EOPNOTSUPP);
    }
    Ok(XFLAGS
        .iter()
        .filter(|(bit, _)| xflags & bit != 0)
        .fold(0, |flags, (_, f)| flags | f))
}

/// Answers `which` on `ino` for the caller `who` with the request's `input`: the bytes to
/// reply with.
pub fn answer(fs: &Fs, who: Caller, ino: Ino, which: FlagsIoctl, input: &[u8]) -> Result<Vec<u8>> {
    match which {
        FlagsIoctl::Get => Ok(fs.get_flags(ino)?.to_le_bytes().to_vec()),
        FlagsIoctl::Set => {
            let flags = u32_at(input, 0)?;
            fs.set_flags(ino, flags, who)?;
            Ok(flags.to_le_bytes().to_vec())
        }
        FlagsIoctl::FsGetXattr => {
            let mut out = vec![0u8; FSXATTR_BYTES];
            out[..4].copy_from_slice(&to_xflags(fs.get_flags(ino)?).to_le_bytes());
            Ok(out)
        }
        FlagsIoctl::FsSetXattr => {
            let xflags = u32_at(input, 0)?;
            // No project quotas: only project 0 exists, as on ext4 without the feature.
            if u32_at(input, 12)? != 0 {
                return errno(libc::EOPNOTSUPP);
            }
            let common = XFLAGS.iter().fold(0, |m, (_, f)| m | f);
            let flags = (fs.get_flags(ino)? & !common) | from_xflags(xflags)?;
            fs.set_flags(ino, flags, who)?;
            Ok(input.to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_the_kernels() {
        assert_eq!(FS_IOC_GETFLAGS, 0x8008_6601);
        assert_eq!(FS_IOC_SETFLAGS, 0x4008_6602);
        assert_eq!(FS_IOC32_GETFLAGS, 0x8004_6601);
        assert_eq!(FS_IOC32_SETFLAGS, 0x4004_6602);
        assert_eq!(FS_IOC_FSGETXATTR, 0x801c_581f);
        assert_eq!(FS_IOC_FSSETXATTR, 0x401c_5820);
        assert_eq!(FlagsIoctl::from_cmd(0x8004_6601), Some(FlagsIoctl::Get));
        assert_eq!(FlagsIoctl::from_cmd(0x4008_6602), Some(FlagsIoctl::Set));
        assert_eq!(FlagsIoctl::from_cmd(0x5303), None);
    }

    #[test]
    fn xflags_round_trip() {
        let all = fl::IMMUTABLE | fl::APPEND | fl::SYNC | fl::NOATIME | fl::NODUMP;
        assert_eq!(to_xflags(all), 0xf8);
        assert_eq!(from_xflags(0xf8).unwrap(), all);
        assert_eq!(to_xflags(fl::SECRM | fl::TOPDIR), 0);
        assert_eq!(from_xflags(0x200).unwrap(), fl::PROJINHERIT);
        assert_eq!(from_xflags(0x8000).unwrap_err().errno(), libc::EOPNOTSUPP);
        // FS_XFLAG_REALTIME, FS_XFLAG_FILESTREAM: XFS's own, ignored as by ext4.
        assert_eq!(from_xflags(0x1 | 0x4000 | 0x80).unwrap(), fl::NODUMP);
        assert_eq!(u32_at(&[1, 0], 0).unwrap_err().errno(), libc::EINVAL);
    }
}
