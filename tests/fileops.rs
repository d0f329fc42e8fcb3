//! The file operations beyond read and write, through a real mount, compared with what ext4
//! does: `fallocate` in every mode the kernel forwards, `lseek` with `SEEK_DATA`/`SEEK_HOLE`,
//! `copy_file_range`, `O_DIRECT` and `O_EXCL` opens, special files, and `flock`/POSIX locks
//! between processes (kept by the kernel: stablefs does not take part in locking).

mod common;

use common::{open_rw, TestFs};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;

const BS: u64 = 4096;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(167).wrapping_add(seed) ^ (i >> 12) as u8 | 1)
        .collect()
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// `fallocate(2)`: 0 or the errno.
fn fallocate(f: &File, mode: i32, offset: u64, len: u64) -> i32 {
    // SAFETY: safe because the fd is open for the duration of the call and no memory is passed.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, offset as i64, len as i64) };
    if r == 0 {
        0
    } else {
        last_errno()
    }
}

/// `lseek(2)`: the new offset or the errno.
fn lseek(f: &File, offset: u64, whence: i32) -> Result<u64, i32> {
    // SAFETY: safe because the fd is open for the duration of the call and no memory is passed.
    let r = unsafe { libc::lseek(f.as_raw_fd(), offset as i64, whence) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as u64)
    }
}

/// `copy_file_range(2)` with explicit offsets: the byte count or the errno.
fn copy_range(src: &File, off_in: u64, dst: &File, off_out: u64, len: u64) -> Result<u64, i32> {
    let (mut a, mut b) = (off_in as i64, off_out as i64);
    // SAFETY: safe because both fds are open, the offset pointers point to live locals, and the
    // kernel writes only through them.
    let r = unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            &mut a,
            dst.as_raw_fd(),
            &mut b,
            len as usize,
            0,
        )
    };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as u64)
    }
}

fn read_at(f: &File, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

#[test]
fn fallocate_modes_and_remount() {
    let mut t = TestFs::new();
    let p = t.path("f");
    let f = open_rw(&p);
    let mut expect = pattern(64 * 1024, 1);
    f.write_all_at(&expect, 0).unwrap();
    f.sync_all().unwrap();

    // Mode 0 past the end: the size grows, the new part reads as zeros.
    assert_eq!(fallocate(&f, 0, 60_000, 40_000), 0);
    expect.resize(100_000, 0);
    assert_eq!(f.metadata().unwrap().len(), 100_000);
    // KEEP_SIZE: allocated past the end, size unchanged.
    let blocks = f.metadata().unwrap().blocks();
    assert_eq!(fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, 1 << 20), 0);
    assert_eq!(f.metadata().unwrap().len(), 100_000);
    assert!(f.metadata().unwrap().blocks() > blocks);

    // Punch an unaligned hole, with data just written still in the page cache around it.
    let fresh = pattern(10_000, 7);
    f.write_all_at(&fresh, 3000).unwrap();
    expect[3000..13_000].copy_from_slice(&fresh);
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    assert_eq!(
        fallocate(&f, libc::FALLOC_FL_PUNCH_HOLE, 5000, 100),
        libc::EOPNOTSUPP
    );
    assert_eq!(fallocate(&f, punch, 5000, 30_001), 0);
    expect[5000..35_001].fill(0);
    assert_eq!(read_at(&f, 0, expect.len()), expect);

    // Zero range, inside the file (over data still in the page cache) and then growing it.
    let fresh = pattern(20_000, 8);
    f.write_all_at(&fresh, 38_000).unwrap();
    expect[38_000..58_000].copy_from_slice(&fresh);
    assert_eq!(fallocate(&f, libc::FALLOC_FL_ZERO_RANGE, 40_000, 10_000), 0);
    expect[40_000..50_000].fill(0);
    assert_eq!(fallocate(&f, libc::FALLOC_FL_ZERO_RANGE, 99_000, 11_000), 0);
    expect[99_000..].fill(0);
    expect.resize(110_000, 0);
    assert_eq!(f.metadata().unwrap().len(), 110_000);
    let zk = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
    assert_eq!(fallocate(&f, zk, 109_000, 50_000), 0);
    expect[109_000..].fill(0);
    assert_eq!(f.metadata().unwrap().len(), 110_000);
    assert_eq!(read_at(&f, 0, expect.len()), expect);

    // What FUSE and stablefs do not offer.
    for mode in [libc::FALLOC_FL_COLLAPSE_RANGE, libc::FALLOC_FL_INSERT_RANGE] {
        assert_eq!(fallocate(&f, mode, 0, BS), libc::EOPNOTSUPP, "{mode:#x}");
    }
    drop(f);
    t.remount();
    assert_eq!(fs::read(&p).unwrap(), expect);
    assert!(!t.log().contains("checksum error"));
}

#[test]
fn fallocate_reserves_space_before_the_writes() {
    // A small filesystem: a file allocated to fill it can still be written in full, while
    // nobody else gets the space.
    let t = TestFs::with("64M", &[], "");
    let p = t.path("big");
    let f = open_rw(&p);
    let st = nix::sys::statvfs::statvfs(&t.mnt).unwrap();
    let avail = st.blocks_available() * st.fragment_size();
    assert_eq!(fallocate(&f, 0, 0, avail + (1 << 20)), libc::ENOSPC);
    // statfs counts blocks a commit is about to free; leave a little for them.
    let avail = avail - (64 << 10);
    assert_eq!(fallocate(&f, 0, 0, avail), 0);
    // (The page cache takes the other file's write; stablefs refuses it at writeback, and
    // fsync reports that.)
    let other = open_rw(&t.path("other"));
    let err = other
        .write_all_at(&[1u8; 1 << 20], 0)
        .and_then(|_| other.sync_all());
    assert_eq!(err.map_err(|e| e.raw_os_error()), Err(Some(libc::ENOSPC)));
    let data = pattern(avail as usize, 9);
    f.write_all_at(&data, 0).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert!(
        fs::read(&p).unwrap() == data,
        "the allocated file reads back"
    );
}

#[test]
fn seek_data_and_hole() {
    let t = TestFs::new();
    let p = t.path("sparse");
    let f = open_rw(&p);
    f.write_all_at(b"first", 0).unwrap();
    f.write_all_at(&[7u8; 8192], 1 << 20).unwrap();
    f.set_len(3 << 20).unwrap();
    f.sync_all().unwrap();
    assert_eq!(lseek(&f, 0, libc::SEEK_DATA), Ok(0));
    assert_eq!(lseek(&f, 0, libc::SEEK_HOLE), Ok(BS));
    assert_eq!(lseek(&f, 100, libc::SEEK_HOLE), Ok(BS));
    assert_eq!(lseek(&f, BS, libc::SEEK_DATA), Ok(1 << 20));
    assert_eq!(
        lseek(&f, (1 << 20) + 10, libc::SEEK_DATA),
        Ok((1 << 20) + 10)
    );
    assert_eq!(lseek(&f, 1 << 20, libc::SEEK_HOLE), Ok((1 << 20) + 8192));
    assert_eq!(
        lseek(&f, (1 << 20) + 8192, libc::SEEK_DATA),
        Err(libc::ENXIO)
    );
    assert_eq!(lseek(&f, 2 << 20, libc::SEEK_HOLE), Ok(2 << 20));
    assert_eq!(lseek(&f, 3 << 20, libc::SEEK_DATA), Err(libc::ENXIO));
    assert_eq!(lseek(&f, 3 << 20, libc::SEEK_HOLE), Err(libc::ENXIO));

    // Data that is still in the kernel's page cache (not yet sent to stablefs) is data too.
    f.write_all_at(b"late", (2 << 20) + 5).unwrap();
    assert_eq!(lseek(&f, (1 << 20) + 8192, libc::SEEK_DATA), Ok(2 << 20));
    // And past the end: the file grew in the page cache only.
    f.write_all_at(b"beyond", (4 << 20) + 1).unwrap();
    assert_eq!(lseek(&f, 3 << 20, libc::SEEK_DATA), Ok(4 << 20));
    assert_eq!(lseek(&f, 4 << 20, libc::SEEK_HOLE), Ok((4 << 20) + 7));
    // With no writer left the kernel holds no dirty pages, and stablefs answers directly.
    drop(f);
    let r = File::open(&p).unwrap();
    assert_eq!(lseek(&r, BS, libc::SEEK_DATA), Ok(1 << 20));
    assert_eq!(lseek(&r, (2 << 20) + 4096, libc::SEEK_DATA), Ok(4 << 20));
    assert_eq!(lseek(&r, (4 << 20) + 7, libc::SEEK_HOLE), Err(libc::ENXIO));
}

#[test]
fn copy_file_range_and_remount() {
    let mut t = TestFs::new();
    let (ps, pd) = (t.path("src"), t.path("dst"));
    let data = pattern((5 << 20) + 333, 3);
    fs::write(&ps, &data).unwrap();
    let src = File::open(&ps).unwrap();
    let dst = open_rw(&pd);
    // Unaligned offsets, more asked for than there is: short at the source's end.
    let mut done = 0;
    loop {
        let n = copy_range(&src, 1000 + done, &dst, 77 + done, 10 << 20).unwrap();
        if n == 0 {
            break;
        }
        done += n;
    }
    assert_eq!(done, data.len() as u64 - 1000);
    let mut expect = vec![0u8; 77];
    expect.extend_from_slice(&data[1000..]);
    assert_eq!(dst.metadata().unwrap().len(), expect.len() as u64);
    assert_eq!(read_at(&dst, 0, expect.len()), expect);
    // Dirty data in the source's page cache is copied too, and the copy replaces cached
    // destination pages.
    let rw = open_rw(&ps);
    rw.write_all_at(b"fresh", 2000).unwrap();
    assert_eq!(copy_range(&rw, 2000, &dst, 10, 5), Ok(5));
    expect[10..15].copy_from_slice(b"fresh");
    assert_eq!(read_at(&dst, 0, 64), expect[..64]);
    // Overlapping ranges in one file: the kernel refuses them, as on every filesystem.
    assert_eq!(copy_range(&rw, 0, &rw, 100, 1000), Err(libc::EINVAL));
    assert_eq!(copy_range(&rw, (5 << 20) + 333, &dst, 0, 10), Ok(0));
    drop((src, dst, rw));
    t.remount();
    assert_eq!(fs::read(&pd).unwrap(), expect);
    assert!(!t.log().contains("checksum error"));
}

#[test]
fn o_direct_and_o_excl_opens() {
    let t = TestFs::new();
    let p = t.path("direct");
    // O_EXCL: a new name only.
    let made = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(&p);
    let f = made.unwrap_or_else(|e| panic!("O_CREAT|O_EXCL|O_DIRECT: {e}"));
    let again = OpenOptions::new().write(true).create_new(true).open(&p);
    assert_eq!(again.unwrap_err().raw_os_error(), Some(libc::EEXIST));
    // Aligned and unaligned direct writes (FUSE needs no alignment) from an aligned buffer.
    let mut buf = vec![0u8; 3 * BS as usize];
    let off = buf.as_ptr().align_offset(BS as usize);
    let data = pattern(2 * BS as usize, 5);
    buf[off..off + data.len()].copy_from_slice(&data);
    f.write_all_at(&buf[off..off + data.len()], 0).unwrap();
    f.write_all_at(b"odd", 5).unwrap();
    drop(f);
    let mut expect = data.clone();
    expect[5..8].copy_from_slice(b"odd");
    // Read back both ways: through the page cache and direct.
    assert_eq!(fs::read(&p).unwrap(), expect);
    let mut d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&p)
        .unwrap();
    let mut back = Vec::new();
    d.read_to_end(&mut back).unwrap();
    assert_eq!(back, expect);
    // A cached writer and a direct reader see the same bytes once the writer has flushed.
    let cached = open_rw(&p);
    cached.write_all_at(b"cached", 100).unwrap();
    cached.sync_all().unwrap();
    expect[100..106].copy_from_slice(b"cached");
    let mut back = vec![0u8; expect.len()];
    d.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, expect);
}

#[test]
fn special_files() {
    let mut t = TestFs::new();
    // A fifo carries data between two openers (the kernel's pipe, not stablefs).
    let fifo = t.path("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(&fifo).unwrap())
    };
    fs::write(&fifo, b"through the pipe").unwrap();
    assert_eq!(reader.join().unwrap(), b"through the pipe");
    // A unix socket bound on the mount.
    let sock = t.path("sock");
    let listener = UnixListener::bind(&sock).unwrap();
    assert!(fs::metadata(&sock).unwrap().file_type().is_socket());
    let mut client = UnixStream::connect(&sock).unwrap();
    client.write_all(b"ping").unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let mut got = [0u8; 4];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    drop((client, server, listener));
    // Device nodes (root may make them): /dev/null's numbers, and a block device's.
    let null = t.path("null");
    let blk = t.path("blk");
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o666);
    let kind = nix::sys::stat::SFlag::S_IFCHR;
    nix::sys::stat::mknod(&null, kind, mode, nix::sys::stat::makedev(1, 3)).unwrap();
    let kind = nix::sys::stat::SFlag::S_IFBLK;
    nix::sys::stat::mknod(&blk, kind, mode, nix::sys::stat::makedev(7, 200)).unwrap();
    let m = fs::metadata(&null).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(fs::metadata(&blk).unwrap().file_type().is_block_device());
    // Root's mount is dev by default, as a kernel filesystem's (issue 10): the node is
    // /dev/null; with -o nodev it cannot be opened.
    OpenOptions::new().write(true).open(&null).unwrap();
    t.unmount();
    t.mount_opts = "nodev".into();
    t.mount();
    let refused = OpenOptions::new().write(true).open(&null);
    assert_eq!(refused.unwrap_err().raw_os_error(), Some(libc::EACCES));
    t.unmount();
    t.mount_opts = "dev".into();
    t.mount();
    let m = fs::metadata(&null).unwrap();
    assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
    let mut n = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&null)
        .unwrap();
    n.write_all(b"gone").unwrap();
    let mut back = Vec::new();
    n.read_to_end(&mut back).unwrap();
    assert!(back.is_empty());
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(fs::metadata(&sock).unwrap().file_type().is_socket());
}

/// Runs `f` in a forked child and returns its pid. The child only makes system calls (no
/// allocation, no locks), which is what is safe after fork in a threaded process.
fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: safe because the child runs only `f`, which makes plain system calls, then `_exit`s.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            let code = f();
            // SAFETY: safe because _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        pid => pid,
    }
}

/// Waits for a child and returns its exit code.
fn wait_child(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: safe because `status` is a live local the kernel writes the status into.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    libc::WEXITSTATUS(status)
}

/// Waits until `/proc/locks` shows `pid` blocked waiting for a lock (a "->" line).
fn wait_until_blocked(pid: libc::pid_t) {
    let start = std::time::Instant::now();
    loop {
        let locks = fs::read_to_string("/proc/locks").unwrap();
        let blocked = locks.lines().any(|l| {
            let mut w = l.split_whitespace().skip(1);
            w.next() == Some("->") && w.nth(3) == Some(pid.to_string().as_str())
        });
        if blocked {
            return;
        }
        // A guard against hanging the suite, not a timing assertion.
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "child {pid} never blocked on the lock:\n{locks}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn write_lock(start: i64, len: i64, kind: i32) -> libc::flock {
    // SAFETY: safe because flock is plain old data for which all zeros is a valid value.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = kind as i16;
    l.l_whence = libc::SEEK_SET as i16;
    l.l_start = start;
    l.l_len = len;
    l
}

#[test]
fn flock_and_posix_locks_between_processes() {
    let t = TestFs::new();
    let p = t.path("locked");
    fs::write(&p, b"x").unwrap();
    let path = cstr(&p);

    // flock(2): util-linux's flock(1) in another process.
    let holder = File::open(&p).unwrap();
    // SAFETY: safe because the fd is open; flock passes no memory.
    assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX) }, 0);
    let try_lock = || {
        Command::new("flock")
            .args(["-n", "-E", "75"])
            .arg(&p)
            .arg("true")
            .status()
            .expect("running flock(1) from util-linux")
            .code()
    };
    assert_eq!(
        try_lock(),
        Some(75),
        "a second exclusive flock must conflict"
    );
    // SAFETY: safe because the fd is open; flock passes no memory.
    assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_UN) }, 0);
    assert_eq!(try_lock(), Some(0), "free again after LOCK_UN");

    // POSIX record locks: the parent write-locks bytes 0..100.
    let f = open_rw(&p);
    let mine = write_lock(0, 100, libc::F_WRLCK);
    assert_eq!(
        // SAFETY: safe because `mine` is a live flock the call only reads.
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &mine) },
        0
    );
    let parent = std::process::id() as i32;
    let (want_50, want_200) = (
        write_lock(50, 10, libc::F_WRLCK),
        write_lock(200, 10, libc::F_WRLCK),
    );
    let mut probe = write_lock(50, 10, libc::F_WRLCK);
    let child = fork_child(|| {
        // SAFETY: safe because `path` is a NUL-terminated string and the flock structs are live
        // locals; only system calls are made.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDWR);
            if fd < 0 {
                return 10;
            }
            if libc::fcntl(fd, libc::F_SETLK, &want_50) == 0 {
                return 11; // granted although the parent holds it
            }
            let e = *libc::__errno_location();
            if e != libc::EAGAIN && e != libc::EACCES {
                return 12;
            }
            if libc::fcntl(fd, libc::F_GETLK, &mut probe) != 0 {
                return 13;
            }
            if i32::from(probe.l_type) != libc::F_WRLCK || probe.l_pid != parent {
                return 14;
            }
            if libc::fcntl(fd, libc::F_SETLK, &want_200) != 0 {
                return 15; // a range nobody holds
            }
            0
        }
    });
    assert_eq!(
        wait_child(child),
        0,
        "child lock checks (see the codes in the child)"
    );
    // A blocking request waits while the parent holds the range and is granted once it lets go.
    let child = fork_child(|| {
        // SAFETY: safe because `path` is a NUL-terminated string and `want_50` is a live local
        // the call only reads; only system calls are made.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDWR);
            if fd < 0 || libc::fcntl(fd, libc::F_SETLKW, &want_50) != 0 {
                return 20;
            }
            0
        }
    });
    wait_until_blocked(child);
    let un = write_lock(0, 100, libc::F_UNLCK);
    // SAFETY: safe because `un` is a live flock the call only reads; `f` is open.
    assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &un) }, 0);
    assert_eq!(wait_child(child), 0, "F_SETLKW granted after the release");
}
