//! stablefs on a real block device: mkfs and mount on a loop device (attached with
//! `--direct-io=on`), data through the mount and back after a remount, and the device's
//! `O_EXCL` claim keeping a second mount out while the first is up.

mod common;

use common::{run, scratch_dir, Loop, TestFs};
use std::fs;
use std::process::Command;

#[test]
fn mount_on_a_loop_device() {
    let dir = scratch_dir();
    let image = dir.path().join("backing.img");
    fs::File::create(&image)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    let lo = Loop::attach(&image, None);
    run(Command::new(common::stablefs_bin())
        .args(["mkfs", "--label", "loopy"])
        .arg(lo.path()));
    let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    {
        let mut t = TestFs::on_image(lo.path().to_path_buf(), "");
        fs::write(t.path("f"), &data).unwrap();
        // The block device is claimed: a second mount of it fails and says why.
        let mnt2 = dir.path().join("mnt2");
        fs::create_dir(&mnt2).unwrap();
        let out = common::output_within(
            Command::new(common::stablefs_bin())
                .args(["mount", "-f"])
                .arg(lo.path())
                .arg(&mnt2),
            std::time::Duration::from_secs(20),
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("in use"), "{err}");
        t.remount();
        assert_eq!(fs::read(t.path("f")).unwrap(), data);
    }
    // The data is on the medium behind the block device: the image file holds it.
    let img = fs::read(&image).unwrap();
    assert!(
        img.windows(4096).any(|w| w == &data[4096..8192]),
        "data reached the backing image"
    );
}
