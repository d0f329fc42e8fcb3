//! stablefs as the upper layer of an overlayfs, differential against ext4 as the upper layer:
//! the same lower directory under both, the same things overlay users do (modify a lower
//! file: copy-up; delete one: whiteout; rename a lower directory; create and delete), and
//! the same merged view and the same upper layer (whiteouts: character devices 0/0 made by
//! `RENAME_WHITEOUT`), as root and as an unprivileged user.

mod common;

use common::differential::{run_script, Outcome, Pair, User};
use common::{run, scratch_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// An overlay mount, unmounted on drop (before the layers under it).
struct Overlay {
    merged: PathBuf,
}

impl Overlay {
    #[track_caller]
    fn mount(lower: &Path, upper_fs: &Path, merged: PathBuf) -> Overlay {
        let (upper, work) = (upper_fs.join("upper"), upper_fs.join("work"));
        for d in [&upper, &work] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::create_dir(&merged).unwrap();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=on,index=off",
            lower.display(),
            upper.display(),
            work.display()
        );
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&merged)
            .output()
            .unwrap();
        let dmesg = Command::new("dmesg").output().unwrap();
        let log = String::from_utf8_lossy(&dmesg.stdout);
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        assert!(
            out.status.success(),
            "overlay over {}: {out:?}\nkernel log: {tail:?}",
            upper_fs.display()
        );
        Overlay { merged }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.merged).status();
    }
}

/// What overlay users do, in the merged directory.
const USE: &str = r#"
umask 022
echo more >> a; cat a
rm b
mv dir dir2; ls dir2; cat dir2/f
echo new > n; mkdir nd; touch nd/x; rm -r nd
rm -r deep/sub
mkdir deep/sub; echo again > deep/sub/g
ls -A . deep deep/sub
stat -c '%n %F %a %s' a n deep/sub/g
"#;

/// The upper layer as it is on the device: names, kinds, device numbers of whiteouts,
/// modes, the overlay xattrs' names; never sizes of directories.
const UPPER: &str = r#"
find . -mindepth 1 | sort | while read -r p; do
    case "$(stat -c %F "$p")" in
        directory) stat -c '%n %F %a' "$p" ;;
        *) stat -c '%n %F %a %s %t:%T' "$p" ;;
    esac
    getfattr --absolute-names -m 'trusted.overlay' "$p" 2>/dev/null | grep -v '^#' | grep -v origin
done
true
"#;

fn check_same(what: &str, e: &Outcome, s: &Outcome) {
    assert_eq!(e, s, "{what}: stablefs as upper differs from ext4");
    assert_eq!(s.status, Some(0), "{what}: {s:?}");
}

#[test]
fn stablefs_as_overlay_upper_layer_agrees_with_ext4() {
    let pair = Pair::new();
    let lower_dir = scratch_dir();
    let lower = lower_dir.path().join("lower");
    run(Command::new("sh").arg("-c").arg(format!(
        "mkdir -p {0}/dir {0}/deep/sub {0}/open && cd {0} && echo lower > a && echo b > b \
         && echo f > dir/f && echo s > deep/sub/s && chmod 777 open && echo o > open/o \
         && chmod 666 open/o",
        lower.display()
    )));
    let merged_dir = scratch_dir();
    let roots = pair.roots();
    // Drop order: the overlays go before the pair's mounts under them.
    let overlays: Vec<Overlay> = roots
        .iter()
        .enumerate()
        .map(|(n, root)| Overlay::mount(&lower, root, merged_dir.path().join(n.to_string())))
        .collect();
    let run_both = |sub: &str, user: &User, script: &str| -> (Outcome, Outcome) {
        let at = |base: &Path| base.join(sub);
        let e = run_script(&at(&overlays[0].merged), user, script);
        let s = run_script(&at(&overlays[1].merged), user, script);
        (e, s)
    };
    let (e, s) = run_both("", &User::root(), USE);
    check_same("using the merged view as root", &e, &s);
    assert!(s.stdout.contains("lower\nmore\n"), "{}", s.stdout);
    // As an unprivileged user, in a world-writable lower directory.
    let (e, s) = run_both(
        "open",
        &User::nobody(),
        "echo mine >> o; cat o; rm o; echo n > n; ls -A; stat -c '%n %U %a' n",
    );
    check_same("using the merged view as nobody", &e, &s);
    let upper = |root: &Path| run_script(&root.join("upper"), &User::root(), UPPER);
    let (e, s) = (upper(&roots[0]), upper(&roots[1]));
    check_same("the upper layer", &e, &s);
    // The whiteouts are on stablefs: character devices 0/0 where lower names were deleted.
    for w in [
        "./b character special file 0 0 0:0",
        "./dir character special file 0 0 0:0",
        "./open/o character special file 0 0 0:0",
    ] {
        assert!(s.stdout.contains(w), "no whiteout '{w}' in:\n{}", s.stdout);
    }
    assert!(
        s.stdout.contains("trusted.overlay.redirect"),
        "{}",
        s.stdout
    );
    drop(overlays);
    // After the overlay is gone, the upper layer is still there after a remount.
    let mut pair = pair;
    pair.stable.remount();
    let again = upper(&pair.roots()[1]);
    assert_eq!(again, s);
}

/// `renameat2(RENAME_WHITEOUT)` itself, as root and as a user, with `RENAME_NOREPLACE` and with `RENAME_EXCHANGE` (EINVAL).
#[test]
fn rename_whiteout_agrees_with_ext4() {
    let p = Pair::new();
    let renameat2 = r#"
r() { python3 -c "import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), int(sys.argv[3]))
print(sys.argv[1:], 'ok' if r == 0 else os.strerror(ctypes.get_errno()))" "$@"; }
"#;
    let script = |body: &str| format!("{renameat2}\n{body}");
    let out = p.same(
        &User::root(),
        &script(
            "umask 022; echo data > f; mkdir d; echo x > taken
             r f d/g 4; r d/g taken 5; r d/g taken 6; r d/g d/h 4; r d d2 4
             stat -c '%n %F %a %t:%T %u:%g %h' f d d2 d2/h taken; cat d2/h
             chmod 777 d2",
        ),
    );
    for line in [
        "['f', 'd/g', '4'] ok",
        "['d/g', 'taken', '6'] Invalid argument",
        "f character special file 0 0:0 0:0 1",
    ] {
        assert!(out.contains(line), "no '{line}' in:\n{out}");
    }
    let out = p.same(
        &User::nobody(),
        &script("cd d2; echo n > n; r n m 4; ls; stat -c '%n %F %u:%g %t:%T' n; r n m 0; ls"),
    );
    // Whiteouts need no privilege (since Linux 5.8); this one is the user's.
    assert!(
        out.contains("['n', 'm', '4'] ok")
            && out.contains("n character special file 65534:65534 0:0"),
        "{out}"
    );
}
