//! File handles (`name_to_handle_at`/`open_by_handle_at`) that last: the same outcomes as
//! ext4 for files, hard links, renames, directories and deleted files, as root and as an
//! unprivileged user; handles that still open the same file after an unmount and mount; and
//! `ESTALE`, never another file, for a handle whose inode number a crash handed out again.

mod common;

use common::differential::{run_script, Pair, User};
use common::TestFs;
use std::os::unix::fs::MetadataExt;

/// Python helpers for the scripts: `handle(path)` (the raw bytes of a `struct file_handle`),
/// `open_h(handle_bytes, flags)` (an fd, or the errno's name) and `read_h(handle_bytes)`
/// (the file's first bytes, or the errno's name). The mount fd is the working directory.
const PY: &str = r#"
import ctypes, errno, os, stat, sys, time
libc = ctypes.CDLL(None, use_errno=True)
class FH(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 128)]
def err():
    return errno.errorcode[ctypes.get_errno()]
def handle(path):
    h = FH(); h.handle_bytes = 128; mid = ctypes.c_int()
    if libc.name_to_handle_at(-100, path.encode(), ctypes.byref(h), ctypes.byref(mid), 0) != 0:
        return err()
    return bytes(h)[:8 + h.handle_bytes]
def open_h(b, flags=os.O_RDONLY):
    h = FH.from_buffer_copy(b + bytes(ctypes.sizeof(FH) - len(b)))
    mfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    fd = libc.open_by_handle_at(mfd, ctypes.byref(h), flags)
    e = err() if fd < 0 else None
    os.close(mfd)
    return fd if fd >= 0 else e
def read_h(b):
    fd = open_h(b)
    if isinstance(fd, str):
        return fd
    try:
        return os.read(fd, 100).decode()
    finally:
        os.close(fd)
"#;

/// `body` after the helpers, as a python3 script. Isolated (`-I`): python does not put the
/// working directory on its module path, so it never lists the directory at startup (a
/// listing would fill the kernel's inode cache, and a handle of a cached inode is decoded
/// without asking the filesystem).
fn python(body: &str) -> String {
    format!("python3 -I - <<'EOF'\n{PY}\n{body}\nEOF\n")
}

#[test]
fn handles_behave_as_on_ext4_as_root_and_as_nobody() {
    let p = Pair::new();
    let root = User::root();
    let out = p.same(
        &root,
        &python(
            r#"
open("f", "w").write("file f")
os.link("f", "g")
os.makedirs("d/sub")
open("d/sub/x", "w").write("file x")
hf, hg = handle("f"), handle("g")
print("both names, one handle:", hf == hg)
print("f:", read_h(hf), "| g:", read_h(hg))
a, b = open_h(hf), open_h(hg)
print("same file:", os.fstat(a).st_ino == os.fstat(b).st_ino == os.stat("g").st_ino)
os.close(a); os.close(b)
os.rename("f", "d/renamed")
print("after rename:", read_h(hf), "| same handle:", handle("d/renamed") == hf)
os.unlink("g")
print("one link left:", read_h(hf))
# A directory: open it by handle, list it, and walk to "." and ".." from there.
hd = handle("d/sub")
fd = open_h(hd, os.O_RDONLY | os.O_DIRECTORY)
print("dir:", sorted(os.listdir(fd)))
print("dot is sub:", os.stat(".", dir_fd=fd).st_ino == os.stat("d/sub").st_ino)
print("dotdot is d:", os.stat("..", dir_fd=fd).st_ino == os.stat("d").st_ino)
up = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
print("dotdot lists:", sorted(os.listdir(up)))
os.close(up); os.close(fd)
print("read x by its handle:", read_h(handle("d/sub/x")))
print("root dir:", sorted(os.listdir(open_h(handle("."), os.O_RDONLY | os.O_DIRECTORY))))
# Deleted: ESTALE, never another file (new files may take the number).
open("gone", "w").write("gone")
hgone = handle("gone")
os.unlink("gone")
for i in range(20):
    open("new%d" % i, "w").write("new")
print("deleted:", read_h(hgone))
os.mkdir("rd")
hrd = handle("rd")
os.rmdir("rd")
print("removed dir:", open_h(hrd, os.O_RDONLY | os.O_DIRECTORY))
# Deleted while open: the open fd keeps working.
kfd = os.open("kept", os.O_RDWR | os.O_CREAT, 0o644)
os.write(kfd, b"kept")
hk = handle("kept")
os.unlink("kept")
print("open fd after unlink:", os.pread(kfd, 100, 0))
print("its handle while open:", read_h(hk))
os.close(kfd)
# FUSE sends the release of the last close in the background: the kernel may hold the inode
# a moment longer.
for i in range(100):
    r = read_h(hk)
    if r == "ESTALE":
        break
    time.sleep(0.05)
print("after the close:", r)
# A handle made as root can be kept for later scripts.
open("keep", "w").write("keep me")
open("/tmp/stablefs-handles-" + str(os.stat(".").st_dev), "wb").write(handle("keep"))
print("done")
"#,
        ),
    );
    assert!(out.contains("both names, one handle: True"), "{out}");
    assert!(out.contains("after rename: file f"), "{out}");
    assert!(out.contains("deleted: ESTALE"), "{out}");
    assert!(out.contains("dotdot is d: True"), "{out}");
    assert!(out.ends_with("done\n"), "{out}");
    eprintln!("{out}");
    // Unprivileged: the handle can be made, open_by_handle_at needs CAP_DAC_READ_SEARCH.
    let nobody = p.same(
        &User::nobody(),
        &python(
            r#"
h = handle("keep")
print("made:", not isinstance(h, str))
print("open:", read_h(h))
saved = open("/tmp/stablefs-handles-" + str(os.stat(".").st_dev), "rb").read()
print("the same as root's:", saved == h, "| open:", read_h(saved))
"#,
        ),
    );
    assert!(nobody.contains("open: EPERM"), "{nobody}");
    for r in p.roots() {
        let dev = std::fs::metadata(&r).unwrap().dev();
        let _ = std::fs::remove_file(format!("/tmp/stablefs-handles-{dev}"));
    }
}

/// Runs a python body in `dir` as root; returns its standard output, asserting success.
#[track_caller]
fn py(dir: &std::path::Path, body: &str) -> String {
    let o = run_script(dir, &User::root(), &python(body));
    assert_eq!(o.status, Some(0), "{o:?}");
    o.stdout
}

#[test]
fn handles_open_the_same_files_after_unmount_and_mount() {
    let mut t = TestFs::new();
    let m = t.mnt.clone();
    let saved = t.dir.path().join("handles");
    py(
        &m,
        &format!(
            r#"
open("f", "w").write("content of f")
os.link("f", "hard")
os.makedirs("d/sub/deeper")
open("d/sub/x", "w").write("content of x")
open("old", "w").write("renamed later")
names = ["f", "hard", "d", "d/sub", "d/sub/deeper", "d/sub/x", "old", "."]
with open("{saved}", "w") as out:
    for n in names:
        out.write(n + " " + handle(n).hex() + "\n")
"#,
            saved = saved.display()
        ),
    );
    let ino_of = |rel: &str| std::fs::metadata(m.join(rel)).unwrap().ino();
    let (f_ino, sub_ino) = (ino_of("f"), ino_of("d/sub"));
    std::fs::rename(t.path("old"), t.path("d/new-name")).unwrap();
    t.remount();
    // Nothing of these files is in the kernel's caches now: each handle is decoded by the
    // daemon (LOOKUP of "." and "..").
    let reopen = format!(
        r#"
for line in open("{saved}"):
    n, h = line.split()
    h = bytes.fromhex(h)
    fd = open_h(h, os.O_RDONLY)
    if isinstance(fd, str):
        print(n, fd)
        continue
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        up = os.stat("..", dir_fd=fd).st_ino
        print(n, "dir", st.st_ino, sorted(os.listdir(fd)), "up", up)
    else:
        print(n, "file", st.st_ino, os.read(fd, 100).decode())
    os.close(fd)
"#,
        saved = saved.display()
    );
    let out = py(&m, &reopen);
    let want = [
        format!("f file {f_ino} content of f"),
        format!("hard file {f_ino} content of f"),
        format!(
            "d dir {} ['new-name', 'sub'] up {}",
            ino_of("d"),
            ino_of(".")
        ),
        format!("d/sub dir {sub_ino} ['deeper', 'x'] up {}", ino_of("d")),
        format!(
            "d/sub/deeper dir {} [] up {sub_ino}",
            ino_of("d/sub/deeper")
        ),
        format!("d/sub/x file {} content of x", ino_of("d/sub/x")),
        format!("old file {} renamed later", ino_of("d/new-name")),
    ];
    for w in &want {
        assert!(out.lines().any(|l| l == w), "want {w:?} in:\n{out}");
    }
    assert!(out.contains(". dir 1 ['d', 'f', 'hard'] up "), "{out}");
    // Once more after a second remount, then deleted: ESTALE, also for a hard-linked file
    // once its last name is gone, and for a removed directory.
    t.remount();
    std::fs::remove_file(t.path("f")).unwrap();
    assert!(py(&m, &reopen).contains(&format!("hard file {f_ino} content of f")));
    std::fs::remove_file(t.path("hard")).unwrap();
    std::fs::remove_dir(t.path("d/sub/deeper")).unwrap();
    t.remount();
    let out = py(&m, &reopen);
    for gone in ["f ESTALE", "hard ESTALE", "d/sub/deeper ESTALE"] {
        assert!(out.lines().any(|l| l == gone), "want {gone:?} in:\n{out}");
    }
    assert!(out.contains("d/sub/x file"), "{out}");
}

#[test]
fn a_handle_of_a_number_a_crash_handed_out_again_is_stale() {
    // Nothing commits by itself: what is made after the mount is lost in a crash.
    let mut t = TestFs::with("1G", &[], "commit=3600,idle_commit=0");
    let m = t.mnt.clone();
    let out = py(
        &m,
        r#"
open("a", "w").write("file A")
print(handle("a").hex(), os.stat("a").st_ino)
"#,
    );
    let (ha, a_ino) = out.trim().split_once(' ').unwrap();
    let a_ino: u64 = a_ino.parse().unwrap();
    assert!(py(&m, &format!("print(read_h(bytes.fromhex('{ha}')))")).contains("file A"));
    t.kill9();
    t.mount();
    assert!(!t.path("a").exists(), "the crash lost a");
    std::fs::write(t.path("b"), "file B").unwrap();
    let b_ino = std::fs::metadata(t.path("b")).unwrap().ino();
    assert_eq!(b_ino, a_ino, "b took a's inode number");
    // The handle names a's number, and a's generation: ESTALE, never b.
    let stale = py(&m, &format!("print(read_h(bytes.fromhex('{ha}')))"));
    assert_eq!(stale.trim(), "ESTALE");
    // b's own handle opens b, also after a remount; a's stays stale.
    let hb = py(&m, "print(handle('b').hex())");
    assert_ne!(hb.trim(), ha);
    t.remount();
    let both = py(
        &m,
        &format!(
            "print(read_h(bytes.fromhex('{}')), read_h(bytes.fromhex('{ha}')))",
            hb.trim()
        ),
    );
    assert_eq!(both.trim(), "file B ESTALE");
    // Handles the daemon never gave out (a FUSE handle, type 0x81: the node id's high and
    // low halves and the generation, native-endian u32s): numbers never used, the root with
    // another generation, b with a wrong one. ESTALE each time, and the daemon lives on;
    // b's number with b's generation opens b.
    let crafted = py(
        &m,
        &format!(
            r#"
import struct
b_ino, b_gen = {b_ino}, struct.unpack("=I", bytes.fromhex("{hb}")[16:20])[0]
def fuse_handle(ino, gen):
    return struct.pack("=IiIII", 12, 0x81, ino >> 32, ino & 0xffffffff, gen)
for ino, gen in [(999999, 0), (2**64 - 1, 7), (1 << 40, 1), (1, 5), (b_ino, b_gen ^ 1),
                 (b_ino, 0), (b_ino, b_gen)]:
    print(read_h(fuse_handle(ino, gen)))
"#,
            hb = hb.trim()
        ),
    );
    assert_eq!(
        crafted.lines().collect::<Vec<_>>(),
        ["ESTALE", "ESTALE", "ESTALE", "ESTALE", "ESTALE", "ESTALE", "file B"]
    );
    assert!(
        t.log().lines().all(|l| !l.contains("panick")),
        "{}",
        t.log()
    );
}
