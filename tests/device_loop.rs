//! `FileDevice` on a real block device: a loop device over an image file, attached with
//! `losetup --direct-io=on` (root and util-linux are required; without `losetup` these tests
//! fail, they do not skip). They check the logical block size and capacity the kernel reports
//! (512-byte and 4096-byte sectors), I/O through the block device, the `O_EXCL` claim that
//! keeps a second opener (or a mount) out, and that the bytes reach the backing image. Every
//! loop device is detached by a guard, also when a test panics.

use stablefs::device::{is_block_device, AlignedBuf, BlockDevice, FileDevice, Medium};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use tempfile::TempDir;

mod common;
use common::Loop;

const MIB: u64 = 1 << 20;

fn scratch() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir under the target dir")
}

fn filled(len: usize, seed: u8) -> AlignedBuf {
    let mut b = AlignedBuf::zeroed(len);
    for (i, x) in b.iter_mut().enumerate() {
        *x = seed.wrapping_add((i / 512) as u8).wrapping_mul(13) ^ (i as u8);
    }
    b
}

/// Attaches a loop device (with `sector_size`, or losetup's default) over a new image and
/// checks what the kernel reports through `FileDevice`, the exclusive claim and a round trip
/// that reaches the image.
fn exercise(sector_size: Option<u32>) {
    let dir = scratch();
    let image = dir.path().join("loop.img");
    let size = 32 * MIB;
    FileDevice::create_image(&image, size).unwrap();
    let lo = Loop::attach(&image, sector_size);
    let expect_align = lo.logical_block_size();
    if let Some(s) = sector_size {
        assert_eq!(expect_align, s, "losetup --sector-size {s} was not applied");
    }
    assert!(is_block_device(lo.path()).unwrap());
    assert!(!is_block_device(&image).unwrap());

    let offset = 3 * MIB + u64::from(expect_align);
    let small = filled(expect_align as usize, 1);
    let big = filled(MIB as usize, 2);
    {
        let dev = FileDevice::open(lo.path(), false).unwrap();
        assert_eq!(dev.medium(), Medium::BlockDevice);
        assert_eq!(dev.align(), expect_align);
        assert_eq!(dev.capacity(), size);

        let e = FileDevice::open(lo.path(), false).expect_err("second exclusive open");
        assert_eq!(e.kind(), ErrorKind::ResourceBusy, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!(
                "{} is in use (mounted, or opened by another program)",
                lo.path().display()
            )),
            "{msg}"
        );

        dev.write_at(offset, &[&small, &big]).unwrap();
        dev.flush().unwrap();
        let mut back = AlignedBuf::zeroed(small.len() + big.len());
        dev.read_at(offset, &mut back).unwrap();
        assert_eq!(&back[..small.len()], &small[..]);
        assert_eq!(&back[small.len()..], &big[..]);

        // An I/O that is aligned for 512 but not for this device is refused by our check.
        if expect_align > 512 {
            let e = dev
                .read_at(512, &mut AlignedBuf::zeroed(expect_align as usize))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        }
        let e = dev
            .write_at(size, &[&AlignedBuf::zeroed(expect_align as usize)])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        dev.discard(MIB, MIB).expect("discard on a loop device");
    }
    FileDevice::open(lo.path(), true).expect("free again once the first is closed");
    drop(lo);

    let mut raw = vec![0u8; small.len() + big.len()];
    std::fs::File::open(&image)
        .unwrap()
        .read_exact_at(&mut raw, offset)
        .unwrap();
    assert_eq!(
        &raw[..small.len()],
        &small[..],
        "first buffer not in the image"
    );
    assert_eq!(
        &raw[small.len()..],
        &big[..],
        "second buffer not in the image"
    );
}

#[test]
fn loop_device_with_default_sectors() {
    // 512 bytes, or on newer kernels with direct I/O the backing disk's logical block size.
    exercise(None);
}

#[test]
fn loop_device_with_4096_byte_sectors() {
    exercise(Some(4096));
}
