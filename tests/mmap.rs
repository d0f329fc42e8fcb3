//! Memory mappings through the mount, as ext4 behaves: shared writable mappings reach the file
//! through writeback (and `msync`), private ones never do, holes map as zeros, the tail of the
//! last page past EOF reads zeros, and touching a page wholly past EOF raises SIGBUS.

mod common;

use common::TestFs;
use std::fs::{self, OpenOptions};
use std::os::unix::io::AsRawFd;

const PAGE: usize = 4096;

/// Maps `len` bytes of `file` (shared or private, read-write).
fn map(file: &fs::File, len: usize, shared: bool) -> &'static mut [u8] {
    let flags = if shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    // SAFETY: safe because the fd is valid, the length is non-zero and the result is checked; the
    // mapping is leaked on purpose (released by `unmap`) and used only by this test thread.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        std::slice::from_raw_parts_mut(p.cast::<u8>(), len)
    }
}

fn unmap(m: &mut [u8]) {
    // SAFETY: safe because `m` is exactly a mapping returned by `map`, not used afterwards.
    unsafe { libc::munmap(m.as_mut_ptr().cast(), m.len()) };
}

fn msync(m: &mut [u8]) {
    assert_eq!(
        // SAFETY: safe because `m` is a live mapping.
        unsafe { libc::msync(m.as_mut_ptr().cast(), m.len(), libc::MS_SYNC) },
        0
    );
}

#[test]
fn shared_private_holes_and_eof() {
    let mut t = TestFs::new();
    let p = t.path("m");
    // A file with data, then a hole, then data: 4 pages plus 100 bytes.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[b'a'; PAGE], 0).unwrap();
    f.write_all_at(&[b'd'; PAGE + 100], 3 * PAGE as u64)
        .unwrap();
    let len = 4 * PAGE + 100;

    // A hole maps as zeros; the part of the last page past EOF reads zeros.
    let m = map(&f, 5 * PAGE, true);
    assert!(
        m[PAGE..3 * PAGE].iter().all(|&b| b == 0),
        "a hole reads as zeros through a mapping"
    );
    assert!(
        m[len..5 * PAGE].iter().all(|&b| b == 0),
        "past EOF in the last page reads zeros"
    );
    // A shared store into the hole and into data reaches the file via msync.
    m[PAGE + 10..PAGE + 20].copy_from_slice(b"0123456789");
    m[5] = b'X';
    msync(m);
    unmap(m);
    let mut want = vec![b'a'; PAGE];
    want[5] = b'X';
    want.resize(3 * PAGE, 0);
    want[PAGE + 10..PAGE + 20].copy_from_slice(b"0123456789");
    want.extend_from_slice(&[b'd'; PAGE + 100]);
    assert_eq!(fs::read(&p).unwrap(), want, "shared stores are in the file");
    assert_eq!(
        fs::metadata(&p).unwrap().len() as usize,
        len,
        "stores past EOF do not grow the file"
    );

    // A private mapping's stores are never seen by the file.
    let m = map(&f, PAGE, false);
    m[..4].copy_from_slice(b"PRIV");
    assert_eq!(&m[..4], b"PRIV");
    unmap(m);
    assert_eq!(fs::read(&p).unwrap(), want, "private stores stay private");

    // A page wholly past EOF: SIGBUS, in a child so the test survives it.
    let m = map(&f, 6 * PAGE, true);
    let addr = m.as_ptr() as usize + 5 * PAGE;
    // SAFETY: safe because the child only reads one byte and exits; the parent waits for it.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: safe because `addr` is inside the child's copy of the mapping.
        let v = unsafe { std::ptr::read_volatile(addr as *const u8) };
        // SAFETY: safe because _exit ends the child without running the parent's destructors.
        unsafe { libc::_exit(i32::from(v) + 1) };
    }
    let mut status = 0;
    // SAFETY: safe because `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS,
        "status {status:#x}: expected SIGBUS"
    );
    unmap(m);
    drop(f);

    // What went through the mapping is on the medium.
    t.remount();
    assert_eq!(fs::read(&p).unwrap(), want);
}
