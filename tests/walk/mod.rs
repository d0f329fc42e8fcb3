//! The consistency walk that the torture tests (`stress`, `stress_ng`, `fio_verify`) run over a
//! freshly mounted tree, until `stablefs fsck` exists: every entry is stat-able and of the type
//! readdir said, no directory lists a name twice or is reachable twice, a directory's link count
//! is 2 + its subdirectories, a file's link count is the number of names found for it, every
//! symlink is readable, and every byte of every file reads back (no `EIO`) and passes the test's
//! own content check. Problems are collected, not panicked on, so one run reports all of them.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{DirEntryExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What the walk found.
#[derive(Debug, Default)]
pub struct Walk {
    pub dirs: u64,
    pub files: u64,
    pub symlinks: u64,
    pub others: u64,
    /// Distinct inodes, the root included.
    pub inodes: u64,
    /// Bytes read from files (each inode once).
    pub bytes: u64,
    /// Sum of `st_blocks * 512` over distinct inodes.
    pub allocated: u64,
    /// Everything that was wrong, one line each.
    pub problems: Vec<String>,
}

/// Checks the bytes `data` read at `offset` of the file at `path`; `Err` describes a mismatch.
pub type DataCheck<'a> = dyn FnMut(&Path, u64, &[u8]) -> Result<(), String> + 'a;

struct FileSeen {
    path: PathBuf,
    nlink: u64,
    names: u64,
}

/// Walks everything under `root` (the root included) and reads every file in 1 MiB pieces,
/// passing each piece to `check`.
pub fn walk(root: &Path, check: &mut DataCheck<'_>) -> Walk {
    let mut w = Walk::default();
    let mut files: HashMap<u64, FileSeen> = HashMap::new();
    let mut dirs_seen: HashSet<u64> = HashSet::new();
    match fs::symlink_metadata(root) {
        Ok(m) => {
            dirs_seen.insert(m.ino());
            w.dirs += 1;
        }
        Err(e) => {
            w.problems.push(format!("{}: lstat: {e}", root.display()));
            return w;
        }
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        walk_dir(&dir, &mut w, &mut files, &mut dirs_seen, &mut stack, check);
    }
    for f in files.values() {
        if f.nlink != f.names {
            w.problems.push(format!(
                "{}: nlink {} but {} names found in the tree",
                f.path.display(),
                f.nlink,
                f.names
            ));
        }
    }
    w.inodes = dirs_seen.len() as u64 + files.len() as u64;
    w
}

fn walk_dir(
    dir: &Path,
    w: &mut Walk,
    files: &mut HashMap<u64, FileSeen>,
    dirs_seen: &mut HashSet<u64>,
    stack: &mut Vec<PathBuf>,
    check: &mut DataCheck<'_>,
) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            w.problems.push(format!("{}: opendir: {e}", dir.display()));
            return;
        }
    };
    let mut names = HashSet::new();
    let mut subdirs = 0u64;
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                w.problems.push(format!("{}: readdir: {e}", dir.display()));
                break;
            }
        };
        let path = entry.path();
        if !names.insert(entry.file_name()) {
            w.problems
                .push(format!("{}: listed twice by readdir", path.display()));
            continue;
        }
        let m = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                w.problems.push(format!("{}: lstat: {e}", path.display()));
                continue;
            }
        };
        match entry.file_type() {
            Ok(t) if t == m.file_type() => {}
            Ok(t) => w.problems.push(format!(
                "{}: readdir says {t:?}, lstat says {:?}",
                path.display(),
                m.file_type()
            )),
            Err(e) => w.problems.push(format!("{}: d_type: {e}", path.display())),
        }
        if entry.ino() != m.ino() {
            w.problems.push(format!(
                "{}: readdir says inode {}, lstat says {}",
                path.display(),
                entry.ino(),
                m.ino()
            ));
        }
        let t = m.file_type();
        if t.is_dir() {
            subdirs += 1;
            w.dirs += 1;
            if dirs_seen.insert(m.ino()) {
                w.allocated += m.blocks() * 512;
                stack.push(path);
            } else {
                w.problems.push(format!(
                    "{}: directory inode {} reached twice",
                    path.display(),
                    m.ino()
                ));
            }
        } else if t.is_symlink() {
            w.symlinks += 1;
            count_name(files, &path, &m);
            match fs::read_link(&path) {
                Ok(target) if target.as_os_str().len() as u64 == m.size() => {}
                Ok(target) => w.problems.push(format!(
                    "{}: readlink gives {} bytes, st_size says {}",
                    path.display(),
                    target.as_os_str().len(),
                    m.size()
                )),
                Err(e) => w
                    .problems
                    .push(format!("{}: readlink: {e}", path.display())),
            }
        } else {
            let first = count_name(files, &path, &m);
            if t.is_file() {
                w.files += 1;
                if first {
                    w.allocated += m.blocks() * 512;
                    read_file(&path, m.size(), w, check);
                }
            } else if t.is_fifo() || t.is_socket() || t.is_block_device() || t.is_char_device() {
                w.others += 1;
            }
        }
    }
    match fs::symlink_metadata(dir) {
        Ok(m) if m.nlink() == 2 + subdirs => {}
        Ok(m) => w.problems.push(format!(
            "{}: directory nlink {} but it has {subdirs} subdirectories (expected {})",
            dir.display(),
            m.nlink(),
            2 + subdirs
        )),
        Err(e) => w.problems.push(format!("{}: lstat: {e}", dir.display())),
    }
}

/// Counts one more name for a non-directory inode; true if it is the first.
fn count_name(files: &mut HashMap<u64, FileSeen>, path: &Path, m: &fs::Metadata) -> bool {
    let f = files.entry(m.ino()).or_insert_with(|| FileSeen {
        path: path.to_path_buf(),
        nlink: m.nlink(),
        names: 0,
    });
    f.names += 1;
    f.names == 1
}

fn read_file(path: &Path, size: u64, w: &mut Walk, check: &mut DataCheck<'_>) {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            w.problems.push(format!("{}: open: {e}", path.display()));
            return;
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                w.problems
                    .push(format!("{}: read at {off}: {e}", path.display()));
                return;
            }
        };
        if let Err(why) = check(path, off, &buf[..n]) {
            w.problems.push(format!("{}: {why}", path.display()));
        }
        off += n as u64;
    }
    w.bytes += off;
    if off != size {
        w.problems.push(format!(
            "{}: read {off} bytes, st_size says {size}",
            path.display()
        ));
    }
}

/// `statvfs(path)`.
pub fn statvfs(path: &Path) -> libc::statvfs {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: safe because `s` is a plain C struct for which all zeros is a valid value, and `c` is
    // a NUL-terminated string that outlives the call.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: safe because both pointers are valid for the duration of the call.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    assert_eq!(
        rc,
        0,
        "statvfs {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    s
}

/// One line for a test's output.
pub fn summary(w: &Walk) -> String {
    format!(
        "{} dirs, {} files, {} symlinks, {} others, {} inodes, {} bytes read, {} bytes allocated",
        w.dirs, w.files, w.symlinks, w.others, w.inodes, w.bytes, w.allocated
    )
}
