//! Plain value types of the POSIX layer, shared with the FUSE adapter. Inode numbers,
//! timestamps and file kinds are the format's (`crate::format::posix`), re-exported here.

pub use crate::format::{FileKind, Ino, Timespec, ROOT_INO};

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
    /// Tells this inode from an earlier one of the same number (file handles; the kernel
    /// keeps the low 32 bits). 0 for the root.
    pub generation: u64,
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
    /// Who asks. A chown clears set-user-ID and friends whoever asks (see `kill_suidgid`).
    pub who: Option<Caller>,
    /// The kernel hands over the modification times of data written through its cache
    /// (an mtime without an atime, for an open file): accepted even on an immutable inode,
    /// whose data was written before the flag (see `fs::flags`).
    pub cached_times: bool,
    /// The caller lacks CAP_FSETID: a size change also clears set-user-ID, set-group-ID and
    /// `security.capability` as an unprivileged write does on ext4 (`who` says the groups).
    pub kill_suidgid: bool,
}

/// Who asks: the owner of anything created, and whose groups decide what a change does to
/// set-group-ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The calling process (0: unknown), whose supplementary groups `in_group` reads.
    pub pid: u32,
    /// The caller's umask, for a node it creates under a directory without a default ACL.
    pub umask: u32,
}

impl Caller {
    /// Root, from no process in particular (tools and tests).
    pub const ROOT: Caller = Caller {
        uid: 0,
        gid: 0,
        pid: 0,
        umask: 0,
    };

    /// Is the caller a member of `gid`: its own group, or one of the supplementary groups of
    /// its process (from `/proc/PID/status`, as FUSE requests carry only the primary group)?
    /// An unknown or vanished process counts as a member of its primary group only.
    pub fn in_group(&self, gid: u32) -> bool {
        if gid == self.gid {
            return true;
        }
        if self.pid == 0 {
            return false;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else {
            return false;
        };
        status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .is_some_and(|groups| {
                groups
                    .split_whitespace()
                    .any(|g| g.parse::<u32>() == Ok(gid))
            })
    }
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
pub const RENAME_WHITEOUT: u32 = 4;

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
