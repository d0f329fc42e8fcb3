//! File handles (inode generations, lookups of "." and "..") and listings that end (readdir
//! below a cookie limit), without a mount.

use super::*;
use crate::device::MemDevice;
use crate::format::FIRST_COOKIE;
use crate::mkfs::{mkfs, MkfsOptions};
use std::collections::HashSet;

const ROOT: Caller = Caller::ROOT;

fn new_dev() -> Arc<MemDevice> {
    let dev = Arc::new(MemDevice::new(64 << 20, 512));
    mkfs(dev.clone(), &MkfsOptions::default()).unwrap();
    dev
}

/// Commits only when asked (`sync`, `shutdown`): dropping it loses every change since.
fn mount_quiet(dev: &Arc<MemDevice>) -> Arc<Fs> {
    let opts = MountOptions {
        idle_commit_ms: 0,
        commit_interval_secs: 3600,
        ..MountOptions::default()
    };
    Fs::mount(dev.clone(), opts).unwrap()
}

fn create(fs: &Fs, parent: Ino, name: &str) -> Attr {
    fs.mknod(parent, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
}

fn errno_of<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    r.unwrap_err().errno()
}

#[test]
fn generations_are_nonzero_32_bit_random_and_kept() {
    let dev = new_dev();
    let fs = mount_quiet(&dev);
    assert_eq!(fs.getattr(ROOT_INO).unwrap().generation, 0);
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap();
    let s = fs.symlink(ROOT_INO, b"s", b"target", ROOT).unwrap();
    let mut made = vec![d.clone(), s];
    made.extend((0..200).map(|i| create(&fs, d.ino, &format!("f{i}"))));
    for a in &made {
        assert_ne!(a.generation, 0, "inode {}", a.ino);
        assert!(a.generation <= u64::from(u32::MAX), "inode {}", a.ino);
        assert_eq!(fs.getattr(a.ino).unwrap().generation, a.generation);
    }
    // Random: 202 draws of 32 bits all differ but with probability ~5e-6.
    let distinct: HashSet<u64> = made.iter().map(|a| a.generation).collect();
    assert!(distinct.len() >= made.len() - 1, "{distinct:?}");
    // On disk: a remount gives the same generations, by lookup and by getattr.
    fs.shutdown().unwrap();
    drop(fs);
    let fs = mount_quiet(&dev);
    assert_eq!(fs.lookup(ROOT_INO, b"d").unwrap().generation, d.generation);
    for (i, a) in made[2..].iter().enumerate() {
        let found = fs.lookup(d.ino, format!("f{i}").as_bytes()).unwrap();
        assert_eq!((found.ino, found.generation), (a.ino, a.generation));
    }
    // A hard link is the same inode: the same generation.
    let l = fs.link(made[2].ino, ROOT_INO, b"link").unwrap();
    assert_eq!(l.generation, made[2].generation);
}

#[test]
fn a_number_handed_out_again_after_a_crash_gets_another_generation() {
    let dev = new_dev();
    let fs = mount_quiet(&dev);
    fs.sync().unwrap();
    let mut before = Vec::new();
    for i in 0..8 {
        before.push(create(&fs, ROOT_INO, &format!("a{i}")));
    }
    drop(fs); // a crash: nothing since the sync is on the device
    let fs = mount_quiet(&dev);
    assert_eq!(errno_of(fs.lookup(ROOT_INO, b"a0")), libc::ENOENT);
    for (i, old) in before.iter().enumerate() {
        let new = create(&fs, ROOT_INO, &format!("b{i}"));
        assert_eq!(new.ino, old.ino, "the crash gives the number out again");
        // Eight 32-bit draws all equal to the earlier ones: probability 2^-256.
        assert_ne!(new.generation, old.generation, "inode {}", new.ino);
        // The number now answers with the new inode's generation, which the kernel compares
        // with the old handle's.
        assert_eq!(fs.lookup(new.ino, b".").unwrap().generation, new.generation);
    }
}

#[test]
fn lookups_of_dot_and_dotdot_decode_handles() {
    let dev = new_dev();
    let fs = mount_quiet(&dev);
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap();
    let sub = fs.mkdir(d.ino, b"sub", 0o755, ROOT).unwrap();
    let f = create(&fs, sub.ino, "f");
    // "." is the inode itself, of any kind; ".." a directory's parent (the root's is itself).
    assert_eq!(fs.lookup(f.ino, b".").unwrap(), f);
    assert_eq!(fs.lookup(sub.ino, b".").unwrap().ino, sub.ino);
    assert_eq!(fs.lookup(sub.ino, b"..").unwrap().ino, d.ino);
    assert_eq!(fs.lookup(d.ino, b"..").unwrap().ino, ROOT_INO);
    assert_eq!(fs.lookup(ROOT_INO, b"..").unwrap().ino, ROOT_INO);
    assert_eq!(fs.lookup(ROOT_INO, b".").unwrap().generation, 0);
    // A file has no "..".
    assert_eq!(errno_of(fs.lookup(f.ino, b"..")), libc::ENOTDIR);
    // Numbers never handed out, 0 among them: ENOENT, never a panic.
    for bogus in [0, 999_999, u64::MAX, u64::MAX - 1] {
        assert_eq!(errno_of(fs.lookup(bogus, b".")), libc::ENOENT, "{bogus}");
        assert_eq!(errno_of(fs.lookup(bogus, b"..")), libc::ENOENT, "{bogus}");
    }
    // After a move, ".." follows.
    fs.rename(d.ino, b"sub", ROOT_INO, b"moved", 0).unwrap();
    assert_eq!(fs.lookup(sub.ino, b"..").unwrap().ino, ROOT_INO);
    // A renamed file keeps its number and generation.
    fs.rename(sub.ino, b"f", ROOT_INO, b"g", 0).unwrap();
    assert_eq!(fs.lookup(f.ino, b".").unwrap().generation, f.generation);
}

#[test]
fn dot_of_a_deleted_inode_is_enoent_unless_it_is_open() {
    let dev = new_dev();
    let fs = mount_quiet(&dev);
    // Deleted while open: "." still finds it, and counts a reference like any lookup.
    let f = create(&fs, ROOT_INO, "f");
    fs.open(f.ino).unwrap();
    fs.unlink(ROOT_INO, b"f").unwrap();
    let found = fs.lookup(f.ino, b".").unwrap();
    assert_eq!((found.ino, found.nlink), (f.ino, 0));
    fs.release(f.ino);
    // Closed: the kernel's remaining references (the create's and the lookup's) do not make
    // it findable, but keep it until they are forgotten.
    assert_eq!(errno_of(fs.lookup(f.ino, b".")), libc::ENOENT);
    assert_eq!(fs.getattr(f.ino).unwrap().nlink, 0);
    fs.forget(f.ino, 1);
    assert!(fs.getattr(f.ino).is_ok(), "one reference is left");
    fs.forget(f.ino, 1);
    assert_eq!(errno_of(fs.getattr(f.ino)), libc::ENOENT);
    assert_eq!(errno_of(fs.lookup(f.ino, b".")), libc::ENOENT);
    // A removed directory: neither "." nor "..".
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap();
    fs.rmdir(ROOT_INO, b"d").unwrap();
    assert_eq!(errno_of(fs.lookup(d.ino, b".")), libc::ENOENT);
    assert_eq!(errno_of(fs.lookup(d.ino, b"..")), libc::ENOENT);
    // One of two hard links gone: still there.
    let h = create(&fs, ROOT_INO, "h");
    fs.link(h.ino, ROOT_INO, b"h2").unwrap();
    fs.unlink(ROOT_INO, b"h").unwrap();
    assert_eq!(fs.lookup(h.ino, b".").unwrap().nlink, 1);
}

fn names(entries: &[DirEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8(e.name.clone()).unwrap())
        .collect()
}

/// Every entry from `cookie` on below `limit`, `batch` at a time.
fn list_below(fs: &Fs, dir: Ino, limit: u64, batch: usize) -> Vec<DirEntry> {
    let mut out: Vec<DirEntry> = Vec::new();
    let mut cookie = 0;
    loop {
        let got = fs.readdir_below(dir, cookie, limit, batch).unwrap();
        let Some(last) = got.last() else {
            return out;
        };
        cookie = last.cookie;
        out.extend(got);
    }
}

#[test]
fn a_listing_below_its_limit_ends_and_never_repeats_a_name() {
    let dev = new_dev();
    let fs = mount_quiet(&dev);
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap().ino;
    let other = fs.mkdir(ROOT_INO, b"other", 0o755, ROOT).unwrap().ino;
    for i in 0..20 {
        create(&fs, d, &format!("f{i:02}"));
    }
    let limit = fs.readdir_limit(d).unwrap();
    assert_eq!(
        errno_of(fs.readdir_limit(create(&fs, d, "file").ino)),
        libc::ENOTDIR
    );
    assert!(limit > FIRST_COOKIE);
    // The listing starts, then its first entries move away and back, again and again: with
    // the limit each is seen once; without it the reader meets them again and again.
    let mut seen = fs.readdir_below(d, 0, limit, 5).unwrap();
    let mut unlimited = seen.clone();
    let mut cookie = seen.last().unwrap().cookie;
    let mut unlimited_cookie = cookie;
    for round in 0..20 {
        for e in &seen[2..5] {
            fs.rename(d, &e.name, other, &e.name, 0).unwrap();
            fs.rename(other, &e.name, d, &e.name, 0).unwrap();
        }
        fs.unlink(d, format!("f{:02}", 19 - round / 4).as_bytes())
            .ok();
        create(&fs, d, &format!("new{round}"));
        let more = fs.readdir_below(d, cookie, limit, 2).unwrap();
        if let Some(last) = more.last() {
            cookie = last.cookie;
        }
        seen.extend(more);
        let more = fs.readdir(d, unlimited_cookie, 2).unwrap();
        if let Some(last) = more.last() {
            unlimited_cookie = last.cookie;
        }
        unlimited.extend(more);
    }
    // The rest.
    loop {
        let more = fs.readdir_below(d, cookie, limit, 3).unwrap();
        let Some(last) = more.last() else { break };
        cookie = last.cookie;
        seen.extend(more);
    }
    let names_seen = names(&seen);
    let distinct: HashSet<&String> = names_seen.iter().collect();
    assert_eq!(distinct.len(), names_seen.len(), "{names_seen:?}");
    // Every entry present throughout is there; none added since.
    for i in 0..15 {
        assert!(names_seen.contains(&format!("f{i:02}")), "{names_seen:?}");
    }
    assert!(
        !names_seen.iter().any(|n| n.starts_with("new")),
        "{names_seen:?}"
    );
    assert!(!names_seen.contains(&"file".to_string()));
    // Without the limit the same reader saw moved entries twice: the test can tell.
    let names_unlimited = names(&unlimited);
    let distinct: HashSet<&String> = names_unlimited.iter().collect();
    assert!(
        distinct.len() < names_unlimited.len(),
        "{names_unlimited:?}"
    );
    // A limit at or below a cookie lists nothing after it; "." and ".." are always there.
    assert!(fs.readdir_below(d, cookie, cookie, 10).unwrap().is_empty());
    let dots = fs.readdir_below(d, 0, FIRST_COOKIE, 10).unwrap();
    assert_eq!(names(&dots), [".", ".."]);
    // A new listing (a new limit) sees what the directory holds now.
    let now = list_below(&fs, d, fs.readdir_limit(d).unwrap(), 7);
    assert_eq!(names(&now), names(&list_below(&fs, d, u64::MAX, 100)));
    assert!(names(&now).contains(&"new19".to_string()));
}

#[test]
fn cookies_and_the_order_of_a_listing_survive_a_remount() {
    let dev = new_dev();
    let fs = mount_quiet(&dev);
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap().ino;
    for i in 0..300 {
        create(&fs, d, &format!("n{}", (i * 7919) % 1000));
    }
    for i in (0..300).step_by(3) {
        let n = format!("n{}", (i * 7919) % 1000);
        fs.rename(d, n.as_bytes(), d, format!("{n}x").as_bytes(), 0)
            .unwrap();
    }
    let limit = fs.readdir_limit(d).unwrap();
    let before = list_below(&fs, d, u64::MAX, 50);
    fs.shutdown().unwrap();
    drop(fs);
    let fs = mount_quiet(&dev);
    assert_eq!(fs.readdir_limit(d).unwrap(), limit);
    let after = list_below(&fs, d, u64::MAX, 33);
    assert_eq!(before, after, "names, cookies and order");
    // A cookie from before the remount continues where it was (telldir/seekdir).
    let mid = &before[150];
    let cont = fs.readdir_below(d, mid.cookie, limit, 1).unwrap();
    assert_eq!(cont[0], before[151]);
}
