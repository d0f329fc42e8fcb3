//! Damage on the medium, through a real mount: a changed byte in a file's data block gives
//! `EIO` for that block only (never the wrong bytes), is logged with inode, offset and device
//! block, and other data reads correctly; a damaged metadata block is reported, the filesystem
//! mounts read-only, and nothing panics or hangs.

mod common;

use common::TestFs;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

const BS: usize = 4096;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(211).wrapping_add(seed))
        .collect()
}

/// Finds the only occurrence of `marker` in the image.
fn flip_byte(image: &Path, at: u64) {
    common::xor_byte(image, at, 0x20);
}

#[test]
fn damaged_data_block_is_eio_and_nothing_else() {
    let mut t = TestFs::new();
    let marker = b"##UNIQUE-MARKER-7f3a9##";
    let mut data = pattern(1 << 20, 5);
    let marker_off = 300_000;
    data[marker_off..marker_off + marker.len()].copy_from_slice(marker);
    fs::write(t.path("victim"), &data).unwrap();
    fs::write(t.path("bystander"), pattern(2 << 20, 6)).unwrap();
    let ino = fs::metadata(t.path("victim"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    t.unmount();
    let at = common::find_unique_in_image(&t.image, marker);
    flip_byte(&t.image, at + 4);
    t.mount();
    let bad_block = marker_off / BS;
    let f = File::open(t.path("victim")).unwrap();
    // The damaged block: EIO, at any offset and size that touches it.
    let mut buf = vec![0u8; BS];
    let e = f
        .read_exact_at(&mut buf, (bad_block * BS) as u64)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    let mut small = [0u8; 10];
    assert_eq!(
        f.read_exact_at(&mut small, marker_off as u64)
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EIO)
    );
    // A whole-file read stops with EIO; what it returned before that is correct.
    let mut whole = File::open(t.path("victim")).unwrap();
    let mut got = Vec::new();
    let r = whole.read_to_end(&mut got);
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(
        got[..],
        data[..got.len()],
        "bytes returned before the error are the written ones"
    );
    assert!(got.len() <= bad_block * BS);
    // Every other block of the file reads correctly.
    for b in (0..data.len() / BS).filter(|&b| b != bad_block) {
        f.read_exact_at(&mut buf, (b * BS) as u64).unwrap();
        assert_eq!(buf[..], data[b * BS..(b + 1) * BS], "block {b}");
    }
    assert_eq!(fs::read(t.path("bystander")).unwrap(), pattern(2 << 20, 6));
    // Logged once per failed read with inode, offset and device block.
    let log = t.log();
    let line = log
        .lines()
        .find(|l| l.contains("checksum error"))
        .expect("the mismatch is logged");
    assert!(line.contains(&format!("inode {ino}")), "{line}");
    assert!(
        line.contains(&format!("file offset {}", bad_block * BS)),
        "{line}"
    );
    assert!(line.contains("device block"), "{line}");
    // Reading the same damaged block again fails again: bad bytes are never cached.
    whole
        .seek(SeekFrom::Start((bad_block * BS) as u64))
        .unwrap();
    assert_eq!(
        whole.read(&mut buf).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
}

#[test]
fn damaged_metadata_block_is_reported_without_panic() {
    let mut t = TestFs::new();
    fs::create_dir(t.path("d")).unwrap();
    for i in 0..300 {
        fs::write(
            t.path(&format!("d/meta-victim-name-{i:04}")),
            format!("content {i}"),
        )
        .unwrap();
    }
    fs::write(t.path("unrelated"), b"still fine").unwrap();
    t.unmount();
    // A name is stored twice, in its hash-keyed entry (used by lookup) and its readdir index
    // entry, and every leaf twice (metadata DUP): damage every copy of the leaves holding
    // both, so no good copy is left. (tests/fsck.rs and the fs unit tests damage one copy.)
    let img = fs::read(&t.image).unwrap();
    let name = b"meta-victim-name-0150";
    let hits: Vec<usize> = img
        .windows(name.len())
        .enumerate()
        .filter(|(_, w)| *w == name)
        .map(|(i, _)| i)
        .collect();
    drop(img);
    assert!(
        hits.len() >= 2,
        "the name is in two leaf items (and maybe older copies)"
    );
    for at in hits {
        flip_byte(&t.image, at as u64 + 2);
    }
    t.mount();
    let mut eio = 0;
    let mut ok = 0;
    for i in 0..300 {
        match fs::read(t.path(&format!("d/meta-victim-name-{i:04}"))) {
            Ok(b) => {
                assert_eq!(b, format!("content {i}").as_bytes());
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
                eio += 1;
            }
        }
    }
    assert!(eio > 0, "the damaged leaf's entries report EIO");
    assert!(ok > 0, "entries in other leaves still work");
    assert_eq!(fs::read(t.path("unrelated")).unwrap(), b"still fine");
    // The damage is logged and the filesystem refuses changes rather than building on it.
    assert!(t.log().contains("failed verification"), "{}", t.log());
    let e = fs::write(t.path("new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn garbage_image_is_refused_clearly() {
    let dir = common::scratch_dir();
    let image = dir.path().join("garbage.img");
    let junk: Vec<u8> = (0..(64u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    fs::write(&image, junk).unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let out = std::process::Command::new(common::stablefs_bin())
        .args(["mount", "-f"])
        .arg(&image)
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no valid stablefs superblock"), "{err}");
    assert!(common::fuse_mounts_at(&mnt).is_empty());
}
