//! `stablefs mkfs` from the command line: what it prints, the block sizes it accepts, and the
//! filesystems it refuses to overwrite without `--force` (signatures written by the real
//! ext4, btrfs and xfs mkfs tools).

mod common;

use common::{output_within, scratch_dir, stablefs_bin, TestFs};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn stablefs_mkfs(args: &[&str], image: &Path) -> std::process::Output {
    output_within(
        Command::new(stablefs_bin())
            .arg("mkfs")
            .args(args)
            .arg(image),
        Duration::from_secs(60),
    )
}

fn foreign(tool: &str, args: &[&str], image: &Path) {
    let out = output_within(
        Command::new(tool).args(args).arg(image),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{tool} failed (is it installed? CI installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn reports_what_it_made() {
    let dir = scratch_dir();
    let img = dir.path().join("a.img");
    let out = stablefs_mkfs(&["--size", "256M", "--label", "data"], &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("uuid "), "{text}");
    assert!(text.contains("268435456 bytes"), "{text}");
    assert!(text.contains("block size 4096"), "{text}");
    // A second mkfs of the same image is refused: it holds a stablefs now.
    let again = stablefs_mkfs(&[], &img);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("stablefs"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn refuses_foreign_filesystems_without_force() {
    let dir = scratch_dir();
    for (tool, args, name) in [
        ("mkfs.ext4", &["-q", "-F"][..], "ext2/ext3/ext4"),
        ("mkfs.btrfs", &["-q", "-f"][..], "btrfs"),
        ("mkfs.xfs", &["-q", "-f"][..], "xfs"),
    ] {
        let img = dir.path().join(format!("{tool}.img"));
        fs::File::create(&img).unwrap().set_len(512 << 20).unwrap();
        foreign(tool, args, &img);
        let before = fs::read(&img).unwrap();
        let out = stablefs_mkfs(&[], &img);
        assert!(!out.status.success(), "{tool}: mkfs must refuse");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(name) && err.contains("--force"),
            "{tool}: {err}"
        );
        assert!(
            fs::read(&img).unwrap() == before,
            "{tool}: a refused mkfs changes nothing"
        );
        let forced = stablefs_mkfs(&["--force"], &img);
        assert!(
            forced.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&forced.stderr)
        );
    }
}

#[test]
fn block_sizes_from_4k_to_64k() {
    let dir = scratch_dir();
    for bad in ["2048", "3000", "131072"] {
        let out = stablefs_mkfs(
            &["--size", "64M", "--block-size", bad],
            &dir.path().join(format!("bad{bad}.img")),
        );
        assert!(!out.status.success(), "block size {bad} must be refused");
    }
    let img = dir.path().join("big-blocks.img");
    let out = stablefs_mkfs(&["--size", "256M", "--block-size", "65536"], &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut t = TestFs::on_image(img, "");
    let data: Vec<u8> = (0..(3u32 << 20) + 12345).map(|i| (i % 253) as u8).collect();
    fs::write(t.path("f"), &data).unwrap();
    fs::write(t.path("small"), b"tiny").unwrap();
    t.remount();
    assert_eq!(fs::read(t.path("f")).unwrap(), data);
    assert_eq!(fs::read(t.path("small")).unwrap(), b"tiny");
    let c = std::ffi::CString::new(t.mnt.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: safe because statvfs is plain data and `c` is a valid path.
    let bsize = unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut s), 0);
        s.f_bsize
    };
    assert_eq!(bsize, 65536);
}
