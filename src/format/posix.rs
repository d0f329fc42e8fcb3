//! The POSIX values the format stores: inode numbers (and the root's, fixed by mkfs),
//! timestamps, and the kinds of file that an inode's mode encodes. Lower layers (mkfs, fsck,
//! scrub) use them without the POSIX layer; `fs` re-exports them.

/// An inode number. `ROOT_INO` is the root directory (FUSE's `FUSE_ROOT_ID`).
pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

/// Seconds and nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

impl Timespec {
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timespec {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl FileKind {
    /// The kind encoded in the `S_IFMT` bits of a mode, if any.
    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFCHR => FileKind::CharDev,
            libc::S_IFBLK => FileKind::BlockDev,
            _ => return None,
        })
    }

    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::CharDev => libc::S_IFCHR,
            FileKind::BlockDev => libc::S_IFBLK,
        }
    }
}

/// Inode flags (`InodeItem::flags`), with the bit values of Linux's `FS_IOC_GETFLAGS`
/// (`FS_*_FL`), so that `chattr` and `lsattr` see them as on ext4. 0 on images made before
/// flags existed. Flags with an effect: `i` (immutable), `a` (append only), `A` (no atime
/// updates), `S` (synchronous writes), `D` (synchronous directory changes; directories only),
/// `d` (no dump: for backup programs). Kept without an effect, exactly as ext4 keeps them
/// (ext4 implements none of these either): `s` (secure deletion), `u` (undeletable), `c`
/// (compress), `t` (no tail merging), `T` (top of a directory hierarchy: an allocator hint),
/// `P` (project inheritance: there are no project quotas); `T` and `P` on directories only.
pub mod inode_flags {
    pub const SECRM: u32 = 0x0000_0001;
    pub const UNRM: u32 = 0x0000_0002;
    pub const COMPR: u32 = 0x0000_0004;
    pub const SYNC: u32 = 0x0000_0008;
    pub const IMMUTABLE: u32 = 0x0000_0010;
    pub const APPEND: u32 = 0x0000_0020;
    pub const NODUMP: u32 = 0x0000_0040;
    pub const NOATIME: u32 = 0x0000_0080;
    pub const NOTAIL: u32 = 0x0000_8000;
    pub const DIRSYNC: u32 = 0x0001_0000;
    pub const TOPDIR: u32 = 0x0002_0000;
    pub const PROJINHERIT: u32 = 0x2000_0000;
    /// Every flag an inode may carry.
    pub const KNOWN: u32 = SECRM
        | UNRM
        | COMPR
        | SYNC
        | IMMUTABLE
        | APPEND
        | NODUMP
        | NOATIME
        | NOTAIL
        | DIRSYNC
        | TOPDIR
        | PROJINHERIT;
    /// Flags only a directory may carry (as on ext4).
    pub const DIR_ONLY: u32 = DIRSYNC | TOPDIR | PROJINHERIT;
    /// Flags a symlink, device, FIFO or socket may carry (ext4's `EXT4_OTHER_FLMASK`).
    pub const OTHER: u32 = NODUMP | NOATIME;

    /// The flags an inode of `kind` may carry.
    pub fn allowed(kind: super::FileKind) -> u32 {
        match kind {
            super::FileKind::Dir => KNOWN,
            super::FileKind::File => KNOWN & !DIR_ONLY,
            _ => OTHER,
        }
    }
}
