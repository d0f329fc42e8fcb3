//! The mount(8), mkfs(8) and fsck(8) helpers in `mount-helpers/`, run from the repository with
//! `STABLEFS_BIN` pointing at the binary under test: `mount.stablefs` really mounts an image
//! (and `umount` ends its daemon); the argument handling of all three and `install.sh` are
//! checked with `echo` or `false` standing in for the binary.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

fn helper(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("mount-helpers")
        .join(name)
}

/// Runs a helper with `STABLEFS_BIN=bin` and returns its output whatever its status.
fn run_helper(name: &str, bin: &Path, args: &[&str]) -> Output {
    output_within(
        Command::new(helper(name))
            .args(args)
            .env("STABLEFS_BIN", bin),
        Duration::from_secs(60),
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn mount_helper_mounts_an_image_and_umount_ends_the_daemon() {
    let dir = scratch_dir();
    let image = dir.path().join("h.img");
    mkfs(&image, "256M", &[]);
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mnt = fs::canonicalize(&mnt).unwrap();
    // As mount(8) calls it for `mount -t stablefs IMAGE DIR -o noatime` from an fstab line.
    let mut m = mount_detached(
        Command::new(helper("mount.stablefs"))
            .arg(&image)
            .arg(&mnt)
            .args(["-n", "-o", "rw,noatime,nofail,x-systemd.device-timeout=5"])
            .env("STABLEFS_BIN", stablefs_bin()),
        &mnt,
    );
    write_file(&mnt.join("via-helper"), b"mounted by mount.stablefs");
    assert_eq!(
        read_file(&mnt.join("via-helper")),
        b"mounted by mount.stablefs"
    );
    m.umount();
    assert!(fuse_mounts_under(dir.path()).is_empty());
}

#[test]
fn fsck_helper_passes_a_fresh_image() {
    let dir = scratch_dir();
    let image = dir.path().join("f.img");
    mkfs(&image, "256M", &[]);
    for mode in ["-n", "-p"] {
        let o = run_helper(
            "fsck.stablefs",
            &stablefs_bin(),
            &[mode, image.to_str().unwrap()],
        );
        assert!(
            o.status.success(),
            "fsck.stablefs {mode}: {}\n{}",
            o.status,
            stderr(&o)
        );
    }
}

#[test]
fn mount_helper_fake_mode_prints_the_command_and_drops_userspace_options() {
    let o = run_helper(
        "mount.stablefs",
        Path::new("/bin/false"),
        &[
            "/dev/sdx9",
            "/data",
            "-sfnv",
            "-o",
            "defaults,noauto,nofail,user,comment=x,x-systemd.automount,noatime",
            "-r",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/bin/false mount -o defaults,noatime,ro /dev/sdx9 /data"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn mount_helper_runs_stablefs_mount_and_maps_failure_to_32() {
    let o = run_helper(
        "mount.stablefs",
        Path::new("echo"),
        &["/img", "/mnt", "-o", "ro"],
    );
    assert!(o.status.success());
    assert_eq!(stdout(&o), "mount -o ro /img /mnt\n");
    let o = run_helper("mount.stablefs", Path::new("echo"), &["/img", "/mnt"]);
    assert_eq!(stdout(&o), "mount /img /mnt\n");
    let o = run_helper("mount.stablefs", Path::new("false"), &["/img", "/mnt"]);
    assert_eq!(o.status.code(), Some(32));
}

#[test]
fn mount_helper_rejects_bad_usage() {
    for args in [
        &[][..],
        &["/img"],
        &["/img", "/mnt", "extra"],
        &["/img", "/mnt", "-q"],
    ] {
        let o = run_helper("mount.stablefs", Path::new("echo"), args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains("usage"), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?} ran stablefs");
    }
}

#[test]
fn mkfs_helper_passes_arguments_through() {
    let o = run_helper(
        "mkfs.stablefs",
        Path::new("echo"),
        &["-V", "--label", "data", "--size", "1G", "/x.img"],
    );
    assert!(o.status.success());
    assert_eq!(stdout(&o), "mkfs --label data --size 1G /x.img\n");
}

#[test]
fn fsck_helper_maps_the_fsck_modes() {
    for (args, want) in [
        (&["-n", "/dev/x"][..], "fsck /dev/x"),
        (&["/dev/x"], "fsck /dev/x"),
        (&["-p", "-C", "3", "/dev/x"], "fsck --repair /dev/x"),
        (&["-a", "-f", "/dev/x"], "fsck --repair /dev/x"),
        (&["-fy", "/dev/x"], "fsck --repair /dev/x"),
    ] {
        let o = run_helper("fsck.stablefs", Path::new("echo"), args);
        assert!(o.status.success(), "{args:?}");
        assert_eq!(stdout(&o), format!("{want}\n"), "{args:?}");
    }
    let o = run_helper("fsck.stablefs", Path::new("echo"), &["-n"]);
    assert_eq!(o.status.code(), Some(16), "usage error");
}

#[test]
fn fsck_helper_passes_the_fsck_exit_status_through() {
    let dir = scratch_dir();
    let image = dir.path().join("zeros.img");
    fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let o = run_helper(
        "fsck.stablefs",
        &stablefs_bin(),
        &["-n", image.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a stablefs"), "{}", stderr(&o));
    let o = run_helper("fsck.stablefs", Path::new("false"), &["-p", "/dev/x"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn install_sh_stages_the_binary_and_the_helpers() {
    let dest = scratch_dir();
    let d = dest.path().to_str().unwrap();
    let bin = stablefs_bin();
    run(Command::new(helper("install.sh"))
        .args(["--destdir", d, "--bin"])
        .arg(&bin));
    let installed = dest.path().join("usr/local/sbin/stablefs");
    assert_eq!(read_file(&installed), read_file(&bin));
    for h in [
        "mount.stablefs",
        "mount.fuse.stablefs",
        "mkfs.stablefs",
        "fsck.stablefs",
    ] {
        let text = String::from_utf8(read_file(&dest.path().join("sbin").join(h))).unwrap();
        assert!(
            text.contains("STABLEFS_INSTALLED_BIN=\"/usr/local/sbin/stablefs\""),
            "{h} does not name the installed binary"
        );
    }
    run(Command::new(helper("install.sh")).args(["--destdir", d, "--uninstall"]));
    assert!(!installed.exists());
    assert!(!dest.path().join("sbin/mount.stablefs").exists());
}
