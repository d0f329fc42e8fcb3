//! Inode flags (`chattr`/`lsattr`) on a real mount, differential against ext4, as root and as
//! unprivileged users: which flags can be set by whom, what an immutable or append-only file
//! or directory refuses (every errno text), inheritance, `noatime`; flags survive a remount;
//! `S` makes writes durable before they return.

mod common;

use common::differential::{Pair, User};
use common::{read_file, TestFs};

/// Shell helpers for the scripts. `la`: `lsattr -d` without ext4's `e` (extents: every ext4
/// inode has it; stablefs has no such flag). `t CMD..`: runs it, prints its messages and
/// status on stdout (so the order of both is compared). `py CODE`: python3 with `os`,
/// `ctypes` and `libc` (the C library) imported.
const HELPERS: &str = r#"
la() { lsattr -d "$@" 2>&1 | awk '{gsub(/e/, "-", $1); print}'; }
t() { "$@" 2>&1; echo "$* -> $?"; }
py() { python3 -c "import os, ctypes, errno; libc = ctypes.CDLL(None, use_errno=True)
def err(r):
    print('ok' if r == 0 else os.strerror(ctypes.get_errno()))
$1" 2>&1; }
"#;

fn script(body: &str) -> String {
    format!("{HELPERS}\n{body}")
}

const SET_EACH_FLAG: &str = r#"
for fl in s u c S d A t i a D T C P F; do
    touch g$fl; t chattr +$fl g$fl; la g$fl
    mkdir h$fl; t chattr +$fl h$fl; la h$fl
done
t chattr -i -a gi ga hi ha
# xfs_io sees the same flags through FS_IOC_FSGETXATTR and sets them with FS_IOC_FSSETXATTR.
xfs_io -c lsattr gS gA gd | awk '{print $1}'
touch x1; t xfs_io -c 'chattr +dAS' x1; la x1; t xfs_io -c 'chattr -d' x1; la x1
t xfs_io -c 'chattr +i' x1; la x1; t xfs_io -c 'chattr -i' x1; la x1; chattr -i x1
for l in r p t P n e E f C s; do touch y$l; t xfs_io -c "chattr +$l" y$l; xfs_io -c lsattr y$l; done
"#;

const IMMUTABLE_FILE: &str = r#"
umask 022
echo hello > f; chmod 644 f
t chattr +i f; la f
t sh -c 'echo more >> f'
t sh -c 'echo over > f'
t truncate -s 0 f
t chmod 600 f
t chown 1 f
t touch f
t touch -d @0 f
t ln f hard
t rm -f f
t mv f g
echo other > other; t mv other f
t setfattr -n user.a -v 1 f
t fallocate -l 8192 f
py "fd = os.open('f', os.O_RDONLY); print(os.read(fd, 100))"
py "err(libc.truncate(b'f', 0))"
cat f; stat -c '%s %A' f
# Other flags change only together with clearing i.
t chattr +d f; la f
t chattr -i +d f; la f
echo writable >> f; cat f
"#;

const APPEND_ONLY_FILE: &str = r#"
umask 022
echo one > ap
t chattr +a ap; la ap
t sh -c 'echo two >> ap'
t sh -c 'echo over > ap'
t truncate -s 0 ap
t chmod 600 ap
t chown 1 ap
t touch -d @0 ap
t ln ap hard
t rm -f ap
t mv ap ap2
t setfattr -n user.a -v 1 ap
py "fd = os.open('ap', os.O_WRONLY)"
py "fd = os.open('ap', os.O_WRONLY | os.O_APPEND | os.O_TRUNC)"
py "fd = os.open('ap', os.O_WRONLY | os.O_APPEND); os.pwrite(fd, b'three\n', 0); err(libc.ftruncate(fd, 0)); err(libc.fallocate(fd, 0, 0, 8192)); err(libc.fallocate(fd, 3, 0, 4096)); err(libc.fallocate(fd, 16, 0, 4096))"
head -c 14 ap; stat -c "%s %A" ap
"#;

const DIRECTORIES: &str = r#"
umask 022
mkdir ad; echo 1 > ad/old; mkdir ad/sub; echo o > outside
t chattr +a ad; la ad
t touch ad/new
t mkdir ad/newdir
t rm ad/old
t rmdir ad/sub
t mv ad/old ad/renamed
t mv ad/old moved
t mv outside ad/moved_in
t ln ad/moved_in ad/hard
t mv ad/new ad/moved_in
t ln -s x ad/sym
ls ad

mkdir id; echo 1 > id/old; echo o > outside2
t chattr +i id; la id
t touch id/new
t mkdir id/newdir
t ln -s x id/sym
t ln outside2 id/hard
t rm id/old
t mv id/old id/renamed
t mv id/old moved2
t mv outside2 id/
t sh -c 'echo still writable >> id/old'
cat id/old
ls id
"#;

const INHERIT_AND_ATIME: &str = r#"
umask 022
mkdir inh
t chattr +A +d +S +D +s +u +c +t +T +P inh
touch inh/f; mkdir inh/sub
la inh inh/f inh/sub
echo data > na; chattr +A na
touch -a -d @1000 na; cat na >/dev/null; stat -c %X na
echo data > plain
touch -a -d @1000 plain; cat plain >/dev/null; [ "$(stat -c %X plain)" -gt 1000 ] && echo updated
"#;

/// As root: every flag, the immutable and append-only rules, directories, inheritance.
#[test]
fn flags_and_their_rules_as_root_agree_with_ext4() {
    let p = Pair::new();
    let root = User::root();
    p.same(&root, &script(SET_EACH_FLAG));
    p.same(&root, &script(IMMUTABLE_FILE));
    p.same(&root, &script(APPEND_ONLY_FILE));
    p.same(&root, &script(DIRECTORIES));
    p.same(&root, &script(INHERIT_AND_ATIME));
    // Flags are kept on the device: the same listing after a remount of stablefs only.
    let listing = "la gs gu gc gS gd gA gt gi ga hD hT f ap ad id inh inh/f inh/sub";
    let before = p.same(&root, &script(listing));
    let mut p = p;
    p.stable.remount();
    assert_eq!(p.same(&root, &script(listing)), before);
    assert!(
        before.contains("----i") && before.contains("-----a"),
        "{before}"
    );
}

/// As an unprivileged owner and as someone else: the owner sets ordinary flags, nobody but
/// root changes `i`/`a`, root's `i` and `a` bind the owner, and other users may set nothing.
#[test]
fn flags_and_their_rules_as_other_users_agree_with_ext4() {
    let p = Pair::new();
    let root = User::root();
    let owner = User::id(1000, 1000);
    let other = User::nobody();
    p.same(
        &owner,
        &script(
            "umask 022; echo mine > mine; mkdir mydir; echo x > mydir/old
             t chattr +d mine; t chattr +A mine; la mine
             t chattr +i mine; t chattr +a mine; la mine
             t chattr +a mydir; t chattr +i mydir; la mydir
             echo locked > ilock; echo locked > alock; mkdir idir adir; echo x > adir/old",
        ),
    );
    p.same(
        &other,
        &script("t chattr -d mine; t chattr +S mine; la mine; t chattr +i mine"),
    );
    p.same(&root, "chattr +i ilock idir; chattr +a alock adir");
    p.same(
        &owner,
        &script(
            "la ilock alock idir adir
             t sh -c 'echo x >> ilock'; t sh -c 'echo x > ilock'; t chmod 600 ilock
             t rm -f ilock; t mv ilock moved; t setfattr -n user.a -v 1 ilock
             t sh -c 'echo x >> alock'; t sh -c 'echo x > alock'; t truncate -s 1 alock
             t rm -f alock; t chmod 600 alock
             t touch idir/new; t touch adir/new; t rm adir/old; t rm adir/new
             t chattr -i ilock; t chattr -a alock; t chattr +d alock; la ilock alock
             cat ilock alock",
        ),
    );
    // Root still cannot write an immutable file, and can clear the flag.
    p.same(
        &root,
        &script("t sh -c 'echo x >> ilock'; t chattr -i ilock idir; t chattr -a alock adir; echo x >> ilock; cat ilock; la ilock idir alock adir"),
    );
}

/// `S`: a write to the file is durable when it returns (no commit would otherwise happen:
/// the mount commits only on request), and survives a crash.
#[test]
fn sync_flag_makes_writes_durable_before_they_return() {
    let mut fs = TestFs::with("256M", &[], "commit=3600,idle_commit=0");
    std::fs::write(fs.path("s"), b"").unwrap();
    std::fs::create_dir(fs.path("sd")).unwrap();
    let chattr = |args: &[&str]| {
        let out = std::process::Command::new("chattr")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    chattr(&["+S", fs.path("s").to_str().unwrap()]);
    chattr(&["+D", fs.path("sd").to_str().unwrap()]);
    // The flags themselves reach the device with the next commit: make it now.
    fs_sync(&fs);
    std::fs::write(fs.path("s"), b"synchronous data").unwrap();
    std::fs::create_dir(fs.path("sd/child")).unwrap();
    std::fs::write(fs.path("plain"), b"lost in the crash").unwrap();
    fs.kill9();
    fs.mount();
    assert_eq!(read_file(&fs.path("s")), b"synchronous data");
    assert!(fs.path("sd/child").is_dir(), "D: the new entry is durable");
    assert!(
        !fs.path("plain").exists(),
        "without S nothing was committed"
    );
}

/// Commits through `stablefs sync`.
fn fs_sync(fs: &TestFs) {
    common::run(
        std::process::Command::new(common::stablefs_bin())
            .arg("sync")
            .arg(&fs.mnt),
    );
}
