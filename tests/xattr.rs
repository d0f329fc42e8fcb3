//! Extended attributes against ext4 made with `-O ea_inode` (without it ext4 keeps a value to
//! one block): values of 0 to 65536 bytes and 65537 (E2BIG), names of 255 and 256 bytes,
//! `XATTR_CREATE`/`XATTR_REPLACE`, tiny to 64 KiB and back, the size probe and ERANGE of
//! `getxattr` and `listxattr`, as root and as nobody; then every value again after a remount,
//! and `stablefs fsck` clean on the image.

mod common;

use common::differential::{Pair, User};
use common::{output_within, stablefs_bin};
use std::process::Command;
use std::time::Duration;

/// Helpers for the scripts (python3 on stdin): `setx`, `getx`, `rmx`, `probe_get`,
/// `probe_list`, each printing its outcome (an errno name on failure) and nothing that
/// differs between filesystems.
const PRELUDE: &str = r#"
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.getxattr.restype = ctypes.c_ssize_t
libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
libc.listxattr.restype = ctypes.c_ssize_t
libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]

def val(n, seed):
    return bytes(((i * 7 + seed) ^ (i >> 8)) & 0xff for i in range(n))

def short(name):
    return name if len(name) <= 40 else '%s..(%d bytes)' % (name[:12], len(name))

def name_of(e):
    return errno.errorcode.get(e, str(e))

def setx(path, name, n, seed=0, flags=0, follow=True):
    try:
        os.setxattr(path, name, val(n, seed), flags, follow_symlinks=follow)
        r = 'ok'
    except OSError as e:
        r = name_of(e.errno)
    print('set %s %s %d flags %d: %s' % (path, short(name), n, flags, r))

def getx(path, name, n, seed=0):
    try:
        v = os.getxattr(path, name)
        r = '%d bytes, %s' % (len(v), 'as set' if v == val(n, seed) else 'DIFFERENT')
    except OSError as e:
        r = name_of(e.errno)
    print('get %s %s: %s' % (path, short(name), r))

def rmx(path, name):
    try:
        os.removexattr(path, name)
        r = 'ok'
    except OSError as e:
        r = name_of(e.errno)
    print('remove %s %s: %s' % (path, short(name), r))

def probe_get(path, name):
    p, nm = os.fsencode(path), os.fsencode(name)
    n = libc.getxattr(p, nm, None, 0)
    if n < 0:
        print('probe get %s %s: %s' % (path, short(name), name_of(ctypes.get_errno())))
        return
    buf = ctypes.create_string_buffer(n + 1)
    one_short = 'n/a'
    if n > 0:
        r = libc.getxattr(p, nm, buf, n - 1)
        one_short = name_of(ctypes.get_errno()) if r < 0 else str(r)
    exact = libc.getxattr(p, nm, buf, n)
    print('probe get %s %s: size %d, one byte short %s, exact %d' % (path, short(name), n, one_short, exact))

def probe_list(path):
    p = os.fsencode(path)
    n = libc.listxattr(p, None, 0)
    buf = ctypes.create_string_buffer(n + 1)
    one_short = 'n/a'
    if n > 0:
        r = libc.listxattr(p, buf, n - 1)
        one_short = name_of(ctypes.get_errno()) if r < 0 else str(r)
    exact = libc.listxattr(p, buf, n)
    names = sorted(x.decode() for x in buf.raw[:exact].split(b'\0') if x)
    print('probe list %s: size %d, one byte short %s, exact %d, %d names' % (path, n, one_short, exact, len(names)))
    print('  ' + ' '.join(short(x) for x in names))
"#;

/// A shell line running `body` (python3) after the helpers.
fn py(body: &str) -> String {
    format!("python3 - <<'EOF'\n{PRELUDE}\n{body}\nEOF\n")
}

const SIZES: [usize; 8] = [0, 1, 2000, 4000, 4096, 60000, 65536, 65537];

/// The root part: sizes, names, flags, replace tiny -> 64 KiB -> tiny, probes.
fn root_script() -> String {
    let sizes: Vec<String> = SIZES.iter().map(usize::to_string).collect();
    py(&format!(
        r#"
open('f', 'w').close()
os.mkdir('d')
os.symlink('f', 'l')
open('g', 'w').close()
os.chmod('g', 0o600)
sizes = [{sizes}]
for k, n in enumerate(sizes):
    setx('f', 'user.s%d' % n, n, k)
for k, n in enumerate(sizes):
    getx('f', 'user.s%d' % n, n, k)
long = 'user.' + 'n' * 250
setx('f', long, 65536, 9)
getx('f', long, 65536, 9)
setx('f', long + 'x', 1)
getx('f', long + 'x', 1)
rmx('f', long + 'x')
setx('f', 'trusted.big', 60000, 3)
getx('f', 'trusted.big', 60000, 3)
setx('f', 'user.s1', 5, 0, os.XATTR_CREATE)
setx('f', 'user.s65536', 5, 0, os.XATTR_CREATE)
setx('f', 'user.none', 65536, 0, os.XATTR_REPLACE)
setx('f', 'user.none', 5, 0, os.XATTR_REPLACE)
getx('f', 'user.none', 5)
setx('f', 'user.r', 3, 1, os.XATTR_CREATE)
for (n, seed) in [(65536, 2), (1, 3), (65536, 4), (0, 5), (30000, 6), (4000, 7), (2, 8)]:
    setx('f', 'user.r', n, seed, os.XATTR_REPLACE)
    getx('f', 'user.r', n, seed)
    probe_get('f', 'user.r')
rmx('f', 'user.s4096')
rmx('f', 'user.s4096')
getx('f', 'user.s4096', 4096)
setx('f', 'user.s4096', 4096, 11)
for n in sizes:
    probe_get('f', 'user.s%d' % n)
probe_get('f', long)
probe_list('f')
setx('d', 'user.dir', 65536, 12)
getx('d', 'user.dir', 65536, 12)
probe_list('d')
setx('g', 'user.private', 50000, 13)
setx('l', 'user.link', 10, 0, 0, False)
setx('l', 'trusted.link', 10, 0, 0, False)
probe_list('l')
"#,
        sizes = sizes.join(", ")
    ))
}

/// As nobody: reads of a readable root file work, changes are refused; on a file nobody owns,
/// everything works.
fn nobody_script() -> String {
    py(r#"
getx('f', 'user.s60000', 60000, 5)
probe_get('f', 'user.s65536')
probe_list('f')
getx('g', 'user.private', 50000, 13)
setx('f', 'user.s1', 10)
setx('f', 'user.new', 65536)
rmx('f', 'user.s1')
setx('f', 'trusted.mine', 10)
getx('f', 'trusted.big', 60000, 3)
open('mine', 'w').close()
for (n, seed) in [(0, 1), (65536, 2), (1, 3), (65536, 4), (2000, 5)]:
    setx('mine', 'user.m', n, seed)
    getx('mine', 'user.m', n, seed)
setx('mine', 'user.m', 1, 0, os.XATTR_CREATE)
setx('mine', 'user.other', 1, 0, os.XATTR_REPLACE)
setx('mine', 'user.big', 65537)
setx('mine', 'user.' + 'q' * 251, 10)
setx('mine', 'user.' + 'q' * 250, 65536, 6)
probe_list('mine')
"#)
}

/// After the remount: every value, byte for byte, and the lists.
fn verify_script() -> String {
    let sizes: Vec<String> = SIZES.iter().map(usize::to_string).collect();
    py(&format!(
        r#"
sizes = [{sizes}]
for k, n in enumerate(sizes):
    if n <= 65536:
        getx('f', 'user.s%d' % n, n, 11 if n == 4096 else k)
long = 'user.' + 'n' * 250
getx('f', long, 65536, 9)
getx('f', 'trusted.big', 60000, 3)
getx('f', 'user.r', 2, 8)
probe_list('f')
getx('d', 'user.dir', 65536, 12)
getx('g', 'user.private', 50000, 13)
getx('mine', 'user.m', 2000, 5)
getx('mine', 'user.' + 'q' * 250, 65536, 6)
probe_list('mine')
"#,
        sizes = sizes.join(", ")
    ))
}

/// Unmounts stablefs and requires `stablefs fsck` to find its image clean.
#[track_caller]
fn fsck_clean(p: &mut Pair) {
    p.stable.unmount();
    let o = output_within(
        Command::new(stablefs_bin())
            .arg("fsck")
            .arg(&p.stable.image),
        Duration::from_secs(120),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "fsck:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn xattrs_up_to_64k_as_ext4_as_root_and_nobody_and_after_remount() {
    let mut p = Pair::with(&["-O", "ea_inode"], "", &[], "");
    let out = p.same(&User::root(), &root_script());
    // The comparison above is only worth something if the big values really worked.
    for line in [
        "set f user.s65536 65536 flags 0: ok",
        "get f user.s65536: 65536 bytes, as set",
        "set f user.s65537 65537 flags 0: E2BIG",
        "set f user.nnnnnnn..(256 bytes) 1 flags 0: ERANGE",
        "get f user.nnnnnnn..(255 bytes): 65536 bytes, as set",
        "set f user.s1 5 flags 1: EEXIST",
        "set f user.none 65536 flags 2: ENODATA",
        "probe get f user.r: size 65536, one byte short ERANGE, exact 65536",
        "set l user.link 10 flags 0: EPERM",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    assert!(out.contains("probe list f: size"), "{out}");
    assert!(
        out.lines()
            .filter(|l| l.starts_with("probe list"))
            .all(|l| l.contains("one byte short ERANGE")),
        "{out}"
    );
    let out = p.same(&User::nobody(), &nobody_script());
    for line in [
        "get f user.s60000: 60000 bytes, as set",
        "get g user.private: EACCES",
        "set f user.new 65536 flags 0: EACCES",
        "remove f user.s1: EACCES",
        "set f trusted.mine 10 flags 0: EPERM",
        "get mine user.m: 65536 bytes, as set",
        "set mine user.big 65537 flags 0: E2BIG",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    p.stable.remount();
    let out = p.same(&User::root(), &verify_script());
    assert!(
        !out.contains("DIFFERENT") && !out.contains("ENODATA"),
        "{out}"
    );
    assert_eq!(out.matches("as set").count(), 14, "{out}");
    fsck_clean(&mut p);
}

#[test]
fn many_xattrs_at_least_as_many_as_ext4() {
    let mut p = Pair::with(&["-O", "ea_inode"], "", &[], "");
    let script = py(r#"
open('many', 'w').close()
ok, failed = 0, 'none'
for k in range(300):
    try:
        os.setxattr('many', 'user.a%03d' % k, val(1024, k), 0)
        ok += 1
    except OSError as e:
        failed = name_of(e.errno)
        break
print('accepted %d, then %s' % (ok, failed))
bad = [k for k in range(ok) if os.getxattr('many', 'user.a%03d' % k) != val(1024, k)]
print('wrong values: %d' % len(bad))
probe_list('many')
"#);
    let (e, s) = p.run(&User::root(), &script);
    let accepted = |o: &str| -> usize {
        o.lines()
            .find_map(|l| l.strip_prefix("accepted "))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in:\n{o}"))
    };
    let (ne, ns) = (accepted(&e.stdout), accepted(&s.stdout));
    eprintln!("1 KiB xattrs on one inode: ext4 -O ea_inode took {ne}, stablefs {ns}");
    assert!(ns >= ne, "ext4 took {ne}, stablefs {ns}");
    assert_eq!(ns, 300, "{}{}", s.stdout, s.stderr);
    assert!(s.stdout.contains("wrong values: 0"), "{}", s.stdout);
    assert!(
        s.stdout
            .contains("size 3000, one byte short ERANGE, exact 3000, 300 names"),
        "{}",
        s.stdout
    );
    p.stable.remount();
    let check = py(r#"
bad = [k for k in range(300) if os.getxattr('many', 'user.a%03d' % k) != val(1024, k)]
print('wrong values: %d' % len(bad))
probe_list('many')
"#);
    let out = common::differential::run_script(&p.roots()[1], &User::root(), &check);
    assert!(
        out.stdout.contains("wrong values: 0") && out.stdout.contains("300 names"),
        "{out:?}"
    );
    fsck_clean(&mut p);
}
