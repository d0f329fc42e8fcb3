//! `FileDevice`: the real medium, a block device or an image file opened with `O_DIRECT`.
//!
//! This file owns everything that touches the medium through the kernel: opening it exclusively
//! (`O_EXCL` on a block device, `flock` on an image file, so two mounts can never write the same
//! bytes), finding its logical block size and capacity, positional reads and vectored writes
//! straight from the caller's bounce buffers, flush, discard, and creating new image files.
//!
//! There is no fallback to buffered I/O: a medium that cannot do `O_DIRECT` is refused with a
//! message saying so, because the page cache between our checksummed buffers and the medium is
//! exactly what the design rules out.
//!
//! Errors from `open` and `create_image` name the path and keep the `io::ErrorKind` of the
//! underlying errno. Errors from the I/O calls are the raw OS errors (so `ENOSPC`, `EIO`, ...
//! reach the caller as such), except our own checks, which say what was wrong.

use super::{check_aligned, check_bufs, AlignedBuf, BlockDevice, BUF_ALIGN};
use std::fmt::Display;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Offset and length alignment of image files: the largest logical block size in common use,
/// so an image can be copied to any disk and still be read with `O_DIRECT`. Raised if the
/// filesystem under the image reports a larger direct-I/O alignment.
const IMAGE_ALIGN: u32 = 4096;

/// Smallest image `FileDevice::create_image` makes.
pub const MIN_IMAGE_SIZE: u64 = 16 << 20;

/// Most iovecs one `pwritev` accepts on Linux (`UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Block-layer ioctl numbers missing from `libc`, encoded as `<linux/fs.h>` does:
/// `BLKGETSIZE64 = _IOR(0x12, 114, size_t)`, `BLKDISCARD = _IO(0x12, 119)`.
mod blk {
    #[cfg(not(any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "mips32r6",
        target_arch = "mips64r6",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "sparc",
        target_arch = "sparc64"
    )))]
    mod ioc {
        pub const NONE: u32 = 0;
        pub const READ: u32 = 2;
        pub const DIR_SHIFT: u32 = 30;
    }
    #[cfg(any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "mips32r6",
        target_arch = "mips64r6",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "sparc",
        target_arch = "sparc64"
    ))]
    mod ioc {
        pub const NONE: u32 = 1;
        pub const READ: u32 = 2;
        pub const DIR_SHIFT: u32 = 29;
    }

    const fn request(dir: u32, nr: u32, size: usize) -> libc::Ioctl {
        (dir << ioc::DIR_SHIFT | (size as u32) << 16 | 0x12 << 8 | nr) as libc::Ioctl
    }

    pub use libc::BLKSSZGET;
    pub const BLKGETSIZE64: libc::Ioctl = request(ioc::READ, 114, size_of::<usize>());
    pub const BLKDISCARD: libc::Ioctl = request(ioc::NONE, 119, 0);
}

/// What kind of medium a `FileDevice` is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    /// A block device (`/dev/sdX`, `/dev/loopN`, ...), held with `O_EXCL`.
    BlockDevice,
    /// A regular file holding a filesystem image, held with `flock`.
    ImageFile,
}

/// A block device or image file opened with `O_DIRECT`, held exclusively (or shared, when
/// read-only) for as long as the value lives. All I/O is positional on `&self`, so one
/// `FileDevice` serves every thread.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    path: PathBuf,
    medium: Medium,
    align: u32,
    capacity: u64,
    read_only: bool,
    /// Set once a flush has failed. After that nothing can say which earlier writes are
    /// durable, so every later write and flush fails too; otherwise a second, successful flush
    /// would claim durability for writes the failed one may have lost.
    flush_failed: AtomicBool,
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<FileDevice>();
};

impl FileDevice {
    /// Opens the block device or image file at `path` with `O_DIRECT`, exclusively (a block
    /// device with `O_EXCL`; an image file with an exclusive `flock`, or a shared one when
    /// `read_only`), and finds its logical block size and capacity.
    pub fn open(path: &Path, read_only: bool) -> io::Result<FileDevice> {
        let meta = std::fs::metadata(path)
            .map_err(|e| path_err(e.kind(), path, format_args!("cannot open: {e}")))?;
        let medium = medium_of(path, &meta)?;
        let file = open_direct(path, medium, read_only)?;
        // The path may have been replaced between the stat and the open.
        let opened = file
            .metadata()
            .map_err(|e| path_err(e.kind(), path, format_args!("cannot stat: {e}")))?;
        if medium_of(path, &opened)? != medium {
            return Err(path_is(
                ErrorKind::Other,
                path,
                "changed type while being opened",
            ));
        }
        check_o_direct(&file, path)?;
        let (align, capacity) = match medium {
            Medium::BlockDevice => block_geometry(&file, path)?,
            Medium::ImageFile => {
                lock_image(&file, path, read_only)?;
                let align = image_align(&file, path)?;
                (align, round_down(opened.len(), align))
            }
        };
        Ok(FileDevice {
            file,
            path: path.to_path_buf(),
            medium,
            align,
            capacity,
            read_only,
            flush_failed: AtomicBool::new(false),
        })
    }

    /// Creates a new, sparse image file of `size` bytes at `path` (never an existing one), on a
    /// filesystem that can do `O_DIRECT` on it, and makes it durable. `size` must be a multiple
    /// of 4096 and at least `MIN_IMAGE_SIZE`. On failure nothing is left behind.
    pub fn create_image(path: &Path, size: u64) -> io::Result<()> {
        let bad_size = |why: String| {
            path_err(
                ErrorKind::InvalidInput,
                path,
                format_args!("cannot create image of {size} bytes: {why}"),
            )
        };
        if size % u64::from(IMAGE_ALIGN) != 0 {
            return Err(bad_size(format!("not a multiple of {IMAGE_ALIGN}")));
        }
        if size < MIN_IMAGE_SIZE {
            return Err(bad_size(format!(
                "smaller than the minimum of {MIN_IMAGE_SIZE} bytes (16 MiB)"
            )));
        }
        // Created with O_DIRECT, so that a filesystem that cannot do it is refused now, before
        // anyone writes into a useless image.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match (e.kind(), e.raw_os_error()) {
                (ErrorKind::AlreadyExists, _) => path_err(
                    e.kind(),
                    path,
                    "cannot create image: the file already exists",
                ),
                (_, Some(libc::EINVAL)) => {
                    // The kernel creates the file before it refuses O_DIRECT; O_EXCL made
                    // it ours.
                    let _ = std::fs::remove_file(path);
                    no_o_direct(path)
                }
                (kind, _) => path_err(kind, path, format_args!("cannot create image: {e}")),
            })?;
        let made = check_o_direct(&file, path)
            .and_then(|()| image_align(&file, path))
            .and_then(|_| size_and_sync(&file, path, size));
        if made.is_err() {
            // Ours: created with O_EXCL above.
            let _ = std::fs::remove_file(path);
        }
        made
    }

    /// The path the device was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn medium(&self) -> Medium {
        self.medium
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The raw descriptor, for tests that inspect how it was opened. Doing I/O through it
    /// bypasses every check here.
    #[doc(hidden)]
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Refuses writes to a read-only device and to one whose flush has failed.
    fn check_writable(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        if self.flush_failed.load(Ordering::Acquire) {
            return Err(io::Error::other(format!(
                "{}: an earlier flush failed, so durability is unknown; no more writes",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// One `pwritev` of `iovs` at `offset`, retried on `EINTR`.
    fn pwritev(&self, iovs: &[libc::iovec], offset: u64) -> io::Result<usize> {
        let off = to_off_t(offset)?;
        loop {
            // SAFETY: safe because every iovec is a slice the caller of `write_slices` borrows for
            // the whole call (its pointer and length come from that slice); pwritev only reads that
            // memory; and `iovs.len()` is at most IOV_MAX, so it fits a c_int.
            let n = unsafe {
                libc::pwritev(self.raw_fd(), iovs.as_ptr(), iovs.len() as libc::c_int, off)
            };
            match usize::try_from(n) {
                Ok(n) => return Ok(n),
                Err(_) => match io::Error::last_os_error() {
                    e if e.kind() == ErrorKind::Interrupted => continue,
                    e => return Err(e),
                },
            }
        }
    }

    /// Gives the range back to the medium: `BLKDISCARD` on a block device, a punched hole in
    /// an image file.
    fn discard_range(&self, offset: u64, len: u64) -> io::Result<()> {
        match self.medium {
            Medium::BlockDevice => {
                let range = [offset, len];
                // SAFETY: safe because BLKDISCARD reads two u64s (start, length) from `range`,
                // which lives on this stack frame for the whole call, and writes no memory.
                cvt(unsafe { libc::ioctl(self.raw_fd(), blk::BLKDISCARD, range.as_ptr()) })
            }
            Medium::ImageFile => {
                let (off, len) = (to_off_t(offset)?, to_off_t(len)?);
                let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                loop {
                    // SAFETY: safe because fallocate only takes integers and an fd we own.
                    match cvt(unsafe { libc::fallocate(self.raw_fd(), mode, off, len) }) {
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        r => return r,
                    }
                }
            }
        }
    }
}

impl BlockDevice for FileDevice {
    fn align(&self) -> u32 {
        self.align
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_at(&self, offset: u64, buf: &mut AlignedBuf) -> io::Result<()> {
        let len = buf.len();
        check_aligned(self.align, offset, len as u64, self.capacity)?;
        let mut done = 0;
        while done < len {
            // A short read that ends off a block boundary cannot be continued with O_DIRECT:
            // it can only be the end of a file that shrank under us.
            let n = if done % self.align as usize != 0 {
                0
            } else {
                match self.file.read_at(&mut buf[done..], offset + done as u64) {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "{}: short read at offset {offset}: end of medium after {done} of \
                         {len} bytes (was it truncated?)",
                        self.path.display()
                    ),
                ));
            }
            done += n;
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, bufs: &[&AlignedBuf]) -> io::Result<()> {
        let slices: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
        self.write_slices(offset, &slices)
    }

    fn write_slices(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        let len = check_bufs(self.align, bufs)?;
        check_aligned(self.align, offset, len, self.capacity)?;
        self.check_writable()?;
        // What is still to write: whole buffers, but the first may have been written in part.
        let mut todo: Vec<&[u8]> = bufs.iter().copied().filter(|b| !b.is_empty()).collect();
        let mut first = 0;
        let mut iovs = Vec::with_capacity(todo.len().min(IOV_MAX));
        let mut pos = offset;
        while first < todo.len() {
            iovs.clear();
            iovs.extend(todo[first..].iter().take(IOV_MAX).map(|b| libc::iovec {
                iov_base: b.as_ptr().cast_mut().cast(),
                iov_len: b.len(),
            }));
            let n = self.pwritev(&iovs, pos)?;
            if n == 0 {
                return Err(io::Error::new(
                    ErrorKind::WriteZero,
                    format!(
                        "{}: the medium accepted no bytes at offset {pos}",
                        self.path.display()
                    ),
                ));
            }
            pos += n as u64;
            first = advance(&mut todo, first, n);
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.check_writable()?;
        self.file.sync_data().inspect_err(|_| {
            self.flush_failed.store(true, Ordering::Release);
        })
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_aligned(self.align, offset, len, self.capacity)?;
        self.check_writable()?;
        if len == 0 {
            return Ok(());
        }
        match self.discard_range(offset, len) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
            r => r,
        }
    }
}

/// Whether `path` (following symlinks, as `/dev/disk/by-*` names are) is a block device.
pub fn is_block_device(path: &Path) -> io::Result<bool> {
    let meta = std::fs::metadata(path)
        .map_err(|e| path_err(e.kind(), path, format_args!("cannot stat: {e}")))?;
    Ok(meta.file_type().is_block_device())
}

/// Drops `n` written bytes from the front of `todo[first..]`; returns the new `first`.
fn advance(todo: &mut [&[u8]], mut first: usize, mut n: usize) -> usize {
    while n > 0 && first < todo.len() {
        let buf = todo[first];
        let k = n.min(buf.len());
        todo[first] = &buf[k..];
        n -= k;
        if k == buf.len() {
            first += 1;
        }
    }
    first
}

fn medium_of(path: &Path, meta: &Metadata) -> io::Result<Medium> {
    let ft = meta.file_type();
    let what = if ft.is_block_device() {
        return Ok(Medium::BlockDevice);
    } else if ft.is_file() {
        return Ok(Medium::ImageFile);
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "of an unknown file type"
    };
    let kind = if ft.is_dir() {
        ErrorKind::IsADirectory
    } else {
        ErrorKind::InvalidInput
    };
    Err(path_is(
        kind,
        path,
        format_args!("is {what}, not a block device or an image file"),
    ))
}

fn open_direct(path: &Path, medium: Medium, read_only: bool) -> io::Result<File> {
    let mut flags = libc::O_DIRECT | libc::O_CLOEXEC;
    if medium == Medium::BlockDevice {
        // Without O_CREAT, O_EXCL on a block device claims it: the kernel refuses it while
        // the device is mounted or claimed by another exclusive opener, and refuses them
        // while we hold it.
        flags |= libc::O_EXCL;
    }
    let mode = if read_only { "read-only" } else { "read-write" };
    OpenOptions::new()
        .read(true)
        .write(!read_only)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match (e.raw_os_error(), medium) {
            (Some(libc::EBUSY), Medium::BlockDevice) => path_is(
                e.kind(),
                path,
                "is in use (mounted, or opened by another program)",
            ),
            (Some(libc::EINVAL), Medium::ImageFile) => no_o_direct(path),
            _ => path_err(
                e.kind(),
                path,
                format_args!("cannot open {mode} with O_DIRECT: {e}"),
            ),
        })
}

fn no_o_direct(path: &Path) -> io::Error {
    path_err(
        ErrorKind::InvalidInput,
        path,
        "the filesystem holding this image does not support direct I/O (O_DIRECT); \
         put the image on one that does (ext4, xfs, btrfs, ...)",
    )
}

/// Makes sure the kernel kept `O_DIRECT` on the open file description.
fn check_o_direct(file: &File, path: &Path) -> io::Result<()> {
    // SAFETY: safe because F_GETFL only reads the status flags of a descriptor we own.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        let e = io::Error::last_os_error();
        return Err(path_err(
            e.kind(),
            path,
            format_args!("fcntl(F_GETFL): {e}"),
        ));
    }
    if flags & libc::O_DIRECT == 0 {
        return Err(no_o_direct(path));
    }
    Ok(())
}

/// Logical block size and capacity of a block device, from the kernel.
fn block_geometry(file: &File, path: &Path) -> io::Result<(u32, u64)> {
    let fd = file.as_raw_fd();
    let ioctl_err =
        |name: &str, e: io::Error| path_err(e.kind(), path, format_args!("{name}: {e}"));
    let mut lbs: libc::c_int = 0;
    // SAFETY: safe because BLKSSZGET writes one c_int into `lbs`, which outlives the call.
    cvt(unsafe { libc::ioctl(fd, blk::BLKSSZGET, &mut lbs as *mut libc::c_int) })
        .map_err(|e| ioctl_err("BLKSSZGET", e))?;
    let mut bytes: u64 = 0;
    // SAFETY: safe because BLKGETSIZE64 writes one u64 into `bytes`, which outlives the call.
    cvt(unsafe { libc::ioctl(fd, blk::BLKGETSIZE64, &mut bytes as *mut u64) })
        .map_err(|e| ioctl_err("BLKGETSIZE64", e))?;
    let align = u32::try_from(lbs)
        .ok()
        .filter(|a| a.is_power_of_two() && *a >= 512)
        .ok_or_else(|| {
            path_err(
                ErrorKind::InvalidData,
                path,
                format_args!("the kernel reports an impossible logical block size {lbs}"),
            )
        })?;
    Ok((align, round_down(bytes, align)))
}

/// Alignment of an image file: `IMAGE_ALIGN`, or more if the filesystem under it reports a
/// larger direct-I/O alignment (statx `STATX_DIOALIGN`).
fn image_align(file: &File, path: &Path) -> io::Result<u32> {
    Ok(match dio_align(file) {
        // The kernel or the filesystem does not report it: O_DIRECT was accepted, and any
        // filesystem's direct-I/O alignment is at most the usual 4 KiB.
        None => IMAGE_ALIGN,
        // Reported but zero: the filesystem accepted O_DIRECT but would do buffered I/O on
        // this file (ext4 data=journal, for example).
        Some((0, _)) => return Err(no_o_direct(path)),
        Some((offset_align, mem_align)) => {
            if !offset_align.is_power_of_two() || mem_align as usize > BUF_ALIGN {
                return Err(path_err(
                    ErrorKind::Unsupported,
                    path,
                    format_args!(
                        "the filesystem holding this image wants direct I/O aligned to \
                         {offset_align} bytes on disk and {mem_align} in memory; stablefs \
                         supports powers of two and at most {BUF_ALIGN} in memory"
                    ),
                ));
            }
            offset_align.max(IMAGE_ALIGN)
        }
    })
}

/// `(stx_dio_offset_align, stx_dio_mem_align)`, if the kernel reports them for `file`.
fn dio_align(file: &File) -> Option<(u32, u32)> {
    // SAFETY: safe because `statx` is plain old data, for which all-zero bytes are a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: safe because the path is a NUL-terminated empty string (AT_EMPTY_PATH: the fd itself
    // is examined) and the kernel writes at most one `statx` into `stx`, which outlives the call.
    let r = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    (r == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0)
        .then_some((stx.stx_dio_offset_align, stx.stx_dio_mem_align))
}

/// Takes the image's `flock`: exclusive for a writer, shared for a reader, never waiting.
fn lock_image(file: &File, path: &Path, read_only: bool) -> io::Result<()> {
    let op = if read_only {
        libc::LOCK_SH
    } else {
        libc::LOCK_EX
    };
    loop {
        // SAFETY: safe because flock only takes a descriptor we own and an integer.
        match cvt(unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) }) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                return Err(path_is(
                    e.kind(),
                    path,
                    "is in use by another stablefs (already mounted?)",
                ))
            }
            Err(e) => return Err(path_err(e.kind(), path, format_args!("cannot lock: {e}"))),
        }
    }
}

/// Gives a new image its length, then makes it and its directory entry durable.
fn size_and_sync(file: &File, path: &Path, size: u64) -> io::Result<()> {
    let fail = |e: io::Error| path_err(e.kind(), path, format_args!("cannot create image: {e}"));
    file.set_len(size).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(fail)
}

fn round_down(bytes: u64, align: u32) -> u64 {
    bytes - bytes % u64::from(align)
}

fn to_off_t(v: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))
}

/// A libc `-1 and errno` result as an `io::Result`.
fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An error about the medium at `path`: "PATH: message", with the kind of the errno behind it.
fn path_err(kind: ErrorKind, path: &Path, msg: impl Display) -> io::Error {
    io::Error::new(kind, format!("{}: {msg}", path.display()))
}

/// An error that is a statement about `path`: "PATH is ...".
fn path_is(kind: ErrorKind, path: &Path, what: impl Display) -> io::Error {
    io::Error::new(kind, format!("{} {what}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_drops_written_bytes_across_buffers() {
        let (a, b, c) = ([1u8; 8], [2u8; 4], [3u8; 8]);
        let mut todo: Vec<&[u8]> = vec![&a, &b, &c];
        assert_eq!(advance(&mut todo, 0, 0), 0);
        assert_eq!(advance(&mut todo, 0, 3), 0);
        assert_eq!(todo[0], &[1u8; 5]);
        assert_eq!(advance(&mut todo, 0, 5), 1);
        assert_eq!(advance(&mut todo, 1, 6), 2);
        assert_eq!(todo[2], &[3u8; 6]);
        assert_eq!(advance(&mut todo, 2, 6), 3);
        // More than is left (the kernel never does this) stops at the end.
        assert_eq!(advance(&mut todo, 3, 1), 3);
    }

    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    ))]
    #[test]
    fn block_ioctl_numbers_match_linux_fs_h() {
        assert_eq!(blk::BLKGETSIZE64, 0x8008_1272);
        assert_eq!(blk::BLKDISCARD, 0x1277);
        assert_eq!(blk::BLKSSZGET, 0x1268);
    }

    #[test]
    fn capacity_rounds_down_to_the_alignment() {
        assert_eq!(round_down(16 << 20, 4096), 16 << 20);
        assert_eq!(round_down((16 << 20) + 4095, 4096), 16 << 20);
        assert_eq!(round_down(1023, 512), 512);
        assert_eq!(round_down(0, 4096), 0);
    }
}
