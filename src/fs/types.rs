//! Plain value types of the POSIX layer, shared with the FUSE adapter.

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

/// What `stat` shows of an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    /// Permission bits only (`mode & 0o7777`).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub size: u64,
    /// Allocated space in 512-byte units.
    pub blocks: u64,
    /// Preferred I/O size (the filesystem block size).
    pub blksize: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub crtime: Timespec,
}

/// A time to set: an explicit value or "now" (`UTIME_NOW`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    Now,
    At(Timespec),
}

/// The changes of one `setattr` call; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    pub ctime: Option<Timespec>,
    /// The caller lacks CAP_FSETID: a size change also clears set-user-ID, set-group-ID (with
    /// group-execute) and `security.capability`, as on ext4.
    pub kill_suidgid: bool,
}

/// Who asks: the owner of anything created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// One directory entry as `readdir` returns it. `cookie` is the offset to pass to the next
/// `readdir` call to continue *after* this entry; cookies stay valid while the directory
/// changes (entries added later get larger cookies, removed ones are simply skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub cookie: u64,
    pub kind: FileKind,
    pub name: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// Longest name in a directory, in bytes.
pub const NAME_MAX: usize = 255;

/// `renameat2` flags, as the kernel passes them.
pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;

/// `setxattr` flags.
pub const XATTR_CREATE: i32 = 1;
pub const XATTR_REPLACE: i32 = 2;

/// Counters the daemon keeps (exposed by `stablefs status` later).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub checksum_errors: u64,
    pub device_read_errors: u64,
    pub device_write_errors: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub commits: u64,
    /// Copies of metadata blocks that failed to read or verify (DUP: the other copy served).
    pub metadata_bad_copies: u64,
    /// Bad metadata copies rewritten from the good one.
    pub metadata_repairs: u64,
    /// Copies of data blocks that failed to read or verify (`copies=2`: the other copy served
    /// if it was good).
    pub data_bad_copies: u64,
    /// Bad data copies rewritten from the good one.
    pub data_repairs: u64,
}
