//! Listings of a directory that others change meanwhile: every listing ends, returns no name
//! twice and every entry present throughout; `telldir`/`seekdir` return to the same entry
//! across changes, as on ext4; and a listing has the same order after a remount.

mod common;

use common::differential::{Pair, User};
use common::TestFs;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// Entries in the directory at the start; those below `STABLE` are never touched.
const ENTRIES: usize = 1000;
const STABLE: usize = 500;
/// How long the others change the directory while it is listed.
const CHURN: Duration = Duration::from_secs(4);
/// Longest one listing may take before the test calls it endless.
const LISTING_TIMEOUT: Duration = Duration::from_secs(60);

fn name(i: usize) -> String {
    format!("f{i:04}")
}

/// `read_dir` (libc `opendir`/`readdir`), the names without "." and "..".
fn list(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// What the listing thread saw.
#[derive(Default)]
struct Seen {
    listings: u64,
    longest: usize,
    shortest: usize,
}

#[test]
fn listings_of_a_churning_directory_end_and_never_repeat_a_name() {
    let t = TestFs::new();
    let d = t.path("d");
    let away = t.path("away");
    std::fs::create_dir(&d).unwrap();
    std::fs::create_dir(&away).unwrap();
    for i in 0..ENTRIES {
        std::fs::write(d.join(name(i)), b"").unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    // Out and back in: into another directory, and under another name in the same one. Each
    // comes back with a new (higher) cookie.
    for (lo, hi, to_dir, prefix) in [
        (STABLE, 750, away.clone(), ""),
        (750, ENTRIES, d.clone(), "renamed-"),
    ] {
        let (stop, changes, d) = (stop.clone(), changes.clone(), d.clone());
        workers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for i in lo..hi {
                    let there = to_dir.join(format!("{prefix}{}", name(i)));
                    std::fs::rename(d.join(name(i)), &there).unwrap();
                    std::fs::rename(&there, d.join(name(i))).unwrap();
                    changes.fetch_add(2, Ordering::Relaxed);
                }
            }
        }));
    }
    // Created and deleted.
    {
        let (stop, changes, d) = (stop.clone(), changes.clone(), d.clone());
        workers.push(thread::spawn(move || {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let p = d.join(format!("new{k}"));
                std::fs::write(&p, b"x").unwrap();
                if k % 3 != 0 {
                    std::fs::remove_file(&p).unwrap();
                }
                k += 1;
                changes.fetch_add(2, Ordering::Relaxed);
            }
        }));
    }
    // The listing thread, watched: a listing that does not end fails the test, it does not
    // hang it.
    let (tx, rx) = mpsc::channel::<Result<usize, String>>();
    let lister = {
        let (stop, d) = (stop.clone(), d.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let names = list(&d);
                let mut seen = HashSet::new();
                let dups: Vec<&String> = names.iter().filter(|n| !seen.insert(*n)).collect();
                let missing: Vec<String> = (0..STABLE)
                    .map(name)
                    .filter(|n| !seen.contains(n))
                    .collect();
                let verdict = if !dups.is_empty() {
                    Err(format!(
                        "{} names listed twice (of {}), e.g. {:?}",
                        dups.len(),
                        names.len(),
                        &dups[..dups.len().min(5)]
                    ))
                } else if !missing.is_empty() {
                    Err(format!(
                        "entries present throughout are missing: {missing:?}"
                    ))
                } else {
                    Ok(names.len())
                };
                let failed = verdict.is_err();
                if tx.send(verdict).is_err() || failed {
                    return;
                }
            }
        })
    };
    let start = Instant::now();
    let mut seen = Seen {
        shortest: usize::MAX,
        ..Seen::default()
    };
    let mut failure = None;
    while start.elapsed() < CHURN {
        match rx.recv_timeout(LISTING_TIMEOUT) {
            Ok(Ok(n)) => {
                seen.listings += 1;
                seen.longest = seen.longest.max(n);
                seen.shortest = seen.shortest.min(n);
            }
            Ok(Err(e)) => {
                failure = Some(e);
                break;
            }
            Err(_) => {
                failure = Some(format!("a listing took over {LISTING_TIMEOUT:?}"));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    // The last listing ends too, now that nothing changes.
    while let Ok(r) = rx.recv_timeout(LISTING_TIMEOUT) {
        if let Err(e) = r {
            failure.get_or_insert(e);
        }
    }
    lister.join().unwrap();
    eprintln!(
        "{} listings during {} changes; {}..{} names each",
        seen.listings,
        changes.load(Ordering::Relaxed),
        seen.shortest.min(seen.longest),
        seen.longest
    );
    if let Some(f) = failure {
        panic!("{f}");
    }
    assert!(seen.listings >= 3, "only {} listings", seen.listings);
    assert!(
        changes.load(Ordering::Relaxed) > 1000,
        "the directory hardly changed"
    );
    // Quiet again: every entry is back, listed once.
    let names = list(&d);
    let set: HashSet<&String> = names.iter().collect();
    assert_eq!(set.len(), names.len());
    for i in 0..ENTRIES {
        assert!(set.contains(&name(i)), "{} missing", name(i));
    }
}

/// `telldir`/`seekdir`/`rewinddir` through libc's `DIR*` (python ctypes), as on ext4.
const DIRSTREAM: &str = r#"
python3 -I - <<'EOF'
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
class Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]
libc.opendir.restype = ctypes.c_void_p
libc.readdir.restype = ctypes.POINTER(Dirent)
libc.readdir.argtypes = [ctypes.c_void_p]
libc.telldir.restype = ctypes.c_long
libc.telldir.argtypes = [ctypes.c_void_p]
libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
libc.rewinddir.argtypes = [ctypes.c_void_p]
libc.closedir.argtypes = [ctypes.c_void_p]
def next_name(dp):
    while True:
        e = libc.readdir(dp)
        if not e:
            return None
        n = e.contents.d_name.decode()
        if n not in (".", ".."):
            return n
def rest(dp):
    out = []
    while True:
        n = next_name(dp)
        if n is None:
            return out
        out.append(n)
os.mkdir("s")
for i in range(300):
    open("s/e%03d" % i, "w").close()
dp = libc.opendir(b"s")
before = [next_name(dp) for _ in range(100)]
pos = libc.telldir(dp)
here = next_name(dp)
after = [next_name(dp) for _ in range(50)]
# Others change the directory: add entries, remove some already listed and some not yet
# (never the one at the mark).
for i in range(200):
    open("s/added%03d" % i, "w").close()
for n in before[::2] + after[::3]:
    os.unlink("s/" + n)
libc.seekdir(dp, pos)
print("seekdir returns to the same entry:", next_name(dp) == here)
libc.seekdir(dp, pos)
again = rest(dp)
print("no name twice after seekdir:", len(again) == len(set(again)))
print("removed ones gone:", not set(again) & set(before[::2] + after[::3]))
print("kept ones there:", set(after) - set(after[::3]) <= set(again))
# A rewind starts a new listing: exactly what the directory holds now.
libc.rewinddir(dp)
now = rest(dp)
print("rewinddir lists the directory as it is:", sorted(now) == sorted(os.listdir("s")), len(now))
libc.closedir(dp)
EOF
"#;

#[test]
fn telldir_seekdir_and_rewinddir_across_changes_as_on_ext4() {
    let p = Pair::new();
    for user in [User::root(), User::nobody()] {
        let out = p.same(&user, &format!("{DIRSTREAM}\nrm -r s"));
        assert_eq!(
            out,
            "seekdir returns to the same entry: True\n\
             no name twice after seekdir: True\n\
             removed ones gone: True\n\
             kept ones there: True\n\
             rewinddir lists the directory as it is: True 433\n",
            "as uid {}",
            user.uid
        );
    }
}

#[test]
fn a_listing_has_the_same_order_after_a_remount() {
    let mut t = TestFs::new();
    let d = t.path("d");
    std::fs::create_dir(&d).unwrap();
    for i in 0..600 {
        std::fs::write(d.join(format!("n{}", (i * 7919) % 1000)), b"").unwrap();
    }
    for i in (0..600).step_by(5) {
        let n = d.join(format!("n{}", (i * 7919) % 1000));
        std::fs::rename(&n, d.join(format!("{}-moved", n.display()))).unwrap();
    }
    for i in (1..600).step_by(7) {
        let _ = std::fs::remove_file(d.join(format!("n{}", (i * 7919) % 1000)));
    }
    let before = list(&d);
    assert!(before.len() > 400);
    t.remount();
    assert_eq!(list(&t.path("d")), before);
}
