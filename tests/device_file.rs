//! `FileDevice` on image files: creating them, opening them with `O_DIRECT` and an exclusive
//! (or, read-only, shared) lock, their geometry, positional and vectored I/O straight from
//! bounce buffers, the alignment contract, discard, and clear errors for everything that is
//! not a usable image. Images live under the target directory, on a real filesystem that does
//! `O_DIRECT`, never in a tmpfs `/tmp`.

use stablefs::device::{AlignedBuf, BlockDevice, FileDevice, Medium, MIN_IMAGE_SIZE};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;

const MIB: u64 = 1 << 20;

fn scratch() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir under the target dir")
}

fn new_image(dir: &TempDir, size: u64) -> PathBuf {
    let path = dir.path().join("fs.img");
    FileDevice::create_image(&path, size).expect("create_image");
    path
}

fn filled(len: usize, seed: u8) -> AlignedBuf {
    let mut b = AlignedBuf::zeroed(len);
    for (i, x) in b.iter_mut().enumerate() {
        *x = seed.wrapping_add((i / 4096) as u8).wrapping_mul(31) ^ (i as u8);
    }
    b
}

fn read(dev: &FileDevice, offset: u64, len: usize) -> AlignedBuf {
    let mut b = AlignedBuf::zeroed(len);
    dev.read_at(offset, &mut b).expect("read_at");
    b
}

fn open_err(path: &Path, read_only: bool) -> std::io::Error {
    FileDevice::open(path, read_only).expect_err("open must fail")
}

/// All the tests, in a module so that `cargo test device` selects them too.
mod image_device {
    use super::*;

    #[test]
    fn create_image_makes_a_sparse_file_of_the_exact_size() {
        let dir = scratch();
        let path = new_image(&dir, 64 * MIB);
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.len(), 64 * MIB);
        assert!(
            meta.blocks() * 512 < MIB,
            "image is not sparse: {} blocks",
            meta.blocks()
        );
    }

    #[test]
    fn create_image_refuses_bad_sizes_and_leaves_nothing() {
        let dir = scratch();
        let path = dir.path().join("bad.img");
        for (size, says) in [
            (MIN_IMAGE_SIZE + 512, "multiple of 4096"),
            (MIN_IMAGE_SIZE - 4096, "minimum"),
            (0, "minimum"),
        ] {
            let e = FileDevice::create_image(&path, size).expect_err("bad size");
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            let msg = e.to_string();
            assert!(msg.contains(says) && msg.contains("bad.img"), "{msg}");
            assert!(!path.exists(), "a refused image was left behind");
        }
        FileDevice::create_image(&path, MIN_IMAGE_SIZE).expect("the minimum size is fine");
    }

    #[test]
    fn create_image_refuses_an_existing_file() {
        let dir = scratch();
        let path = new_image(&dir, MIN_IMAGE_SIZE);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(b"precious", 0)
            .unwrap();
        let e = FileDevice::create_image(&path, 32 * MIB).expect_err("existing file");
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), MIN_IMAGE_SIZE);
        assert_eq!(&std::fs::read(&path).unwrap()[..8], b"precious");
    }

    #[test]
    fn open_reports_alignment_and_capacity() {
        let dir = scratch();
        let path = new_image(&dir, 32 * MIB);
        let dev = FileDevice::open(&path, false).unwrap();
        assert_eq!(dev.align(), 4096);
        assert_eq!(dev.capacity(), 32 * MIB);
        assert_eq!(dev.medium(), Medium::ImageFile);
        assert!(!dev.is_read_only());
        assert_eq!(dev.path(), path);
    }

    #[test]
    fn capacity_is_rounded_down_to_whole_blocks() {
        let dir = scratch();
        let path = dir.path().join("odd.img");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(MIN_IMAGE_SIZE + 4095)
            .unwrap();
        let dev = FileDevice::open(&path, false).unwrap();
        assert_eq!(dev.capacity(), MIN_IMAGE_SIZE);
        // The last whole block is usable; the partial one is not.
        dev.write_at(MIN_IMAGE_SIZE - 4096, &[&filled(4096, 1)])
            .unwrap();
        let e = dev
            .read_at(MIN_IMAGE_SIZE, &mut AlignedBuf::zeroed(4096))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn single_write_reads_back_and_lands_in_the_file() {
        let dir = scratch();
        let path = new_image(&dir, 32 * MIB);
        let dev = FileDevice::open(&path, false).unwrap();
        let data = filled(8192, 42);
        dev.write_at(5 * MIB, &[&data]).unwrap();
        dev.flush().unwrap();
        assert_eq!(&read(&dev, 5 * MIB, 8192)[..], &data[..]);
        assert!(read(&dev, 5 * MIB + 8192, 4096).iter().all(|&b| b == 0));

        let mut raw = vec![0u8; 8192];
        std::fs::File::open(&path)
            .unwrap()
            .read_exact_at(&mut raw, 5 * MIB)
            .unwrap();
        assert_eq!(&raw[..], &data[..]);
    }

    #[test]
    fn vectored_write_lays_buffers_back_to_back() {
        let dir = scratch();
        let path = new_image(&dir, 32 * MIB);
        let dev = FileDevice::open(&path, false).unwrap();
        let bufs = [filled(4096, 1), filled(3 * 4096, 2), filled(4096, 3)];
        let refs: Vec<&AlignedBuf> = bufs.iter().collect();
        dev.write_at(MIB, &refs).unwrap();
        let back = read(&dev, MIB, 5 * 4096);
        assert_eq!(&back[..4096], &bufs[0][..]);
        assert_eq!(&back[4096..4 * 4096], &bufs[1][..]);
        assert_eq!(&back[4 * 4096..], &bufs[2][..]);
    }

    #[test]
    fn large_vectored_writes_span_iov_max_batches() {
        let dir = scratch();
        let path = new_image(&dir, 32 * MIB);
        let dev = FileDevice::open(&path, false).unwrap();
        // 4 MiB as 1024 buffers (exactly one pwritev) and 8 MiB as 2048 (two), plus a few empty
        // buffers, which must be skipped.
        for (offset, count) in [(0, 1024usize), (8 * MIB, 2048)] {
            let bufs: Vec<AlignedBuf> = (0..count).map(|i| filled(4096, i as u8)).collect();
            let empty = AlignedBuf::zeroed(0);
            let mut refs: Vec<&AlignedBuf> = vec![&empty];
            refs.extend(bufs.iter());
            refs.insert(count / 2, &empty);
            dev.write_at(offset, &refs).unwrap();
            dev.flush().unwrap();
            let back = read(&dev, offset, count * 4096);
            for (i, b) in bufs.iter().enumerate() {
                assert_eq!(&back[i * 4096..(i + 1) * 4096], &b[..], "block {i}");
            }
        }
        // And one 4 MiB buffer.
        let big = filled(4 * MIB as usize, 77);
        dev.write_at(20 * MIB, &[&big]).unwrap();
        assert_eq!(&read(&dev, 20 * MIB, big.len())[..], &big[..]);
    }

    #[test]
    fn unaligned_or_out_of_range_io_is_invalid_input() {
        let dir = scratch();
        let path = new_image(&dir, MIN_IMAGE_SIZE);
        let dev = FileDevice::open(&path, false).unwrap();
        let cap = dev.capacity();
        let block = filled(4096, 9);
        let cases = [
            (
                "read at an unaligned offset",
                dev.read_at(512, &mut AlignedBuf::zeroed(4096)),
            ),
            (
                "read of an unaligned length",
                dev.read_at(0, &mut AlignedBuf::zeroed(512)),
            ),
            (
                "read past the end",
                dev.read_at(cap, &mut AlignedBuf::zeroed(4096)),
            ),
            (
                "read straddling the end",
                dev.read_at(cap - 4096, &mut AlignedBuf::zeroed(8192)),
            ),
            ("write at an unaligned offset", dev.write_at(100, &[&block])),
            (
                "write of an unaligned length",
                dev.write_at(0, &[&filled(1000, 1)]),
            ),
            (
                "write of an unaligned buffer in a vector",
                dev.write_at(0, &[&filled(2048, 1), &filled(2048, 2)]),
            ),
            ("write past the end", dev.write_at(cap, &[&block])),
            (
                "write overflowing u64",
                dev.write_at(u64::MAX - 4095, &[&block, &block]),
            ),
            ("discard of an unaligned length", dev.discard(0, 100)),
            ("discard past the end", dev.discard(cap - 4096, 8192)),
        ];
        for (what, r) in cases {
            let e = r.expect_err(what);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
        }
        // Nothing was written by the refused writes.
        assert!(read(&dev, 0, 8192).iter().all(|&b| b == 0));
    }

    #[test]
    fn a_second_open_while_the_first_lives_is_refused() {
        let dir = scratch();
        let path = new_image(&dir, MIN_IMAGE_SIZE);
        let first = FileDevice::open(&path, false).unwrap();
        for read_only in [false, true] {
            let e = open_err(&path, read_only);
            assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains("is in use by another stablefs (already mounted?)")
                    && msg.contains(&*path.to_string_lossy()),
                "{msg}"
            );
        }
        drop(first);
        FileDevice::open(&path, false).expect("free again once the first is dropped");
    }

    #[test]
    fn read_only_opens_share_the_image_and_refuse_writes() {
        let dir = scratch();
        let path = new_image(&dir, MIN_IMAGE_SIZE);
        {
            let dev = FileDevice::open(&path, false).unwrap();
            dev.write_at(0, &[&filled(4096, 5)]).unwrap();
            dev.flush().unwrap();
        }
        let a = FileDevice::open(&path, true).unwrap();
        let b = FileDevice::open(&path, true).expect("two readers share the lock");
        assert!(a.is_read_only());
        assert_eq!(&read(&a, 0, 4096)[..], &filled(4096, 5)[..]);
        assert_eq!(&read(&b, 0, 4096)[..], &filled(4096, 5)[..]);

        let e = open_err(&path, false);
        assert!(
            e.to_string().contains("in use"),
            "writer beside readers: {e}"
        );

        let e = a.write_at(0, &[&filled(4096, 6)]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
        let e = a.discard(0, 4096).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
        a.flush().expect("flushing a reader is a no-op");
        assert_eq!(&read(&b, 0, 4096)[..], &filled(4096, 5)[..]);
    }

    #[test]
    fn reading_past_the_end_of_a_truncated_image_is_unexpected_eof() {
        let dir = scratch();
        let path = new_image(&dir, MIN_IMAGE_SIZE);
        let dev = FileDevice::open(&path, false).unwrap();
        let image = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        // Shrunk by someone else to a block boundary, then off one.
        for new_len in [MIN_IMAGE_SIZE - 4096, MIN_IMAGE_SIZE - 8192 - 100] {
            image.set_len(new_len).unwrap();
            let e = dev
                .read_at(MIN_IMAGE_SIZE - 8192, &mut AlignedBuf::zeroed(8192))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
            assert!(e.to_string().contains("short read"), "{e}");
        }
    }

    #[test]
    fn discard_punches_a_hole_that_reads_as_zeros() {
        let dir = scratch();
        let path = new_image(&dir, MIN_IMAGE_SIZE);
        let dev = FileDevice::open(&path, false).unwrap();
        dev.write_at(MIB, &[&filled(4 * 4096, 3)]).unwrap();
        dev.flush().unwrap();
        dev.discard(MIB + 4096, 2 * 4096).unwrap();
        dev.discard(0, 0).unwrap();
        let back = read(&dev, MIB, 4 * 4096);
        let orig = filled(4 * 4096, 3);
        assert_eq!(&back[..4096], &orig[..4096]);
        assert!(back[4096..3 * 4096].iter().all(|&b| b == 0));
        assert_eq!(&back[3 * 4096..], &orig[3 * 4096..]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), MIN_IMAGE_SIZE);
    }

    #[test]
    fn the_descriptor_really_is_o_direct() {
        let dir = scratch();
        let path = new_image(&dir, MIN_IMAGE_SIZE);
        for read_only in [false, true] {
            let dev = FileDevice::open(&path, read_only).unwrap();
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", dev.raw_fd())).unwrap();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .map(|f| i32::from_str_radix(f.trim(), 8).unwrap())
                .expect("flags line in fdinfo");
            assert_ne!(flags & libc::O_DIRECT, 0, "no O_DIRECT in {info}");
            assert_ne!(flags & libc::O_CLOEXEC, 0, "no O_CLOEXEC in {info}");
            let mode = if read_only {
                libc::O_RDONLY
            } else {
                libc::O_RDWR
            };
            assert_eq!(flags & libc::O_ACCMODE, mode, "{info}");
        }
    }

    #[test]
    fn a_directory_is_refused_clearly() {
        let dir = scratch();
        let e = open_err(dir.path(), false);
        assert_eq!(e.kind(), ErrorKind::IsADirectory, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("is a directory, not a block device or an image file")
                && msg.contains(&*dir.path().to_string_lossy()),
            "{msg}"
        );
    }

    #[test]
    fn a_character_device_is_refused_clearly() {
        let e = open_err(Path::new("/dev/null"), true);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(
            e.to_string()
                .contains("/dev/null is a character device, not a block device or an image file"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_path_is_not_found_and_named() {
        let dir = scratch();
        let path = dir.path().join("nope.img");
        let e = open_err(&path, false);
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("nope.img"), "{e}");
    }

    #[test]
    fn a_filesystem_without_o_direct_is_refused_not_worked_around() {
        // procfs refuses O_DIRECT on its regular files, as tmpfs did before Linux 6.6.
        let e = open_err(Path::new("/proc/self/status"), true);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(
            e.to_string()
                .contains("does not support direct I/O (O_DIRECT)"),
            "{e}"
        );
    }

    #[test]
    fn threads_share_one_device() {
        let dir = scratch();
        let path = new_image(&dir, MIN_IMAGE_SIZE);
        let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::open(&path, false).unwrap());
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let dev = Arc::clone(&dev);
                std::thread::spawn(move || {
                    for round in 0..16u64 {
                        let off = (u64::from(t) * 16 + round) * 65536;
                        let data = filled(65536, t ^ round as u8);
                        dev.write_at(off, &[&data]).unwrap();
                        let mut back = AlignedBuf::zeroed(65536);
                        dev.read_at(off, &mut back).unwrap();
                        assert_eq!(&back[..], &data[..]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        dev.flush().unwrap();
    }
}
