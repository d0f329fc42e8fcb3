//! Pass 2: what the items mean. Inodes against their items (extents, symlink chunks,
//! entries), the two halves of every directory (DIRENT buckets for lookup, DIRINDEX for
//! readdir), the directory graph from the root (reachability, `..`, no directory with two
//! names), link counts, orphans, and the superblock's counters.
//!
//! The result also says what `--repair` may change (`Analysis`), so that the repair and the
//! report never disagree about what was wrong.

use super::report::Check;
use super::scan::{Findings, Scan};
use crate::format::{DirLink, InodeItem, FIRST_COOKIE};
use crate::format::{FileKind, ROOT_INO};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The directory fsck moves unreachable inodes into, in the root.
pub const LOST_FOUND: &[u8] = b"lost+found";

/// One name in a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub ino: u64,
    pub kind: FileKind,
    pub cookie: u64,
}

/// A directory's names.
pub(super) type Names = BTreeMap<Vec<u8>, Entry>;

/// What pass 2 concluded, for the repair.
#[derive(Default)]
pub(super) struct Analysis {
    /// Per directory: its names, the DIRENT and DIRINDEX halves merged (DIRENT wins where
    /// they disagree; a name in either half counts).
    pub names: BTreeMap<u64, Names>,
    /// Directories whose halves disagree about a name: repair does not guess.
    pub conflicted: BTreeSet<u64>,
    /// Directories whose halves are to be rebuilt from `names`.
    pub rebuild: BTreeSet<u64>,
    /// Unreachable inodes with no name anywhere, not orphans: each heads a detached subtree
    /// and goes into lost+found.
    pub detached: Vec<u64>,
    /// Orphans without names: deleted, as the next mount would.
    pub purge: Vec<u64>,
    /// ORPHAN items whose inode still has names or does not exist: dropped, nothing deleted.
    pub drop_orphan: Vec<u64>,
    /// Xattrs (inode, name) whose external value is damaged: dropped, with what is left of it.
    pub drop_xattrs: Vec<(u64, Vec<u8>)>,
    /// External value parts (inode, slot) that no xattr claims: dropped.
    pub drop_xattr_parts: Vec<(u64, u64)>,
    /// External xattr values exist but the superblock lacks their feature bit: set it.
    pub set_xattr_feature: bool,
}

/// Everything directories point at: per inode, the (directory, name) of each of its names.
type Incoming = BTreeMap<u64, Vec<(u64, Vec<u8>)>>;

pub(super) fn analyse(scan: &Scan, f: &mut Findings) -> Analysis {
    let mut a = Analysis::default();
    let Some(root) = scan.inodes.get(&ROOT_INO) else {
        f.error(
            Check::RootMissing,
            false,
            Some(ROOT_INO),
            None,
            "the root directory (inode 1) does not exist".into(),
        );
        return a;
    };
    if root.kind() != FileKind::Dir {
        f.error(
            Check::RootMissing,
            false,
            Some(ROOT_INO),
            None,
            format!("the root (inode 1) is a {:?}, not a directory", root.kind()),
        );
        return a;
    }
    items_have_inodes(scan, f);
    for (&ino, inode) in &scan.inodes {
        check_inode_items(scan, ino, inode, f);
    }
    super::xattrs::check(scan, &mut a, f);
    let dirs: BTreeSet<u64> = scan
        .dirents
        .keys()
        .chain(scan.dirindex.keys())
        .copied()
        .collect();
    for d in dirs {
        merge_halves(scan, d, &mut a, f);
    }
    check_entries(scan, &a, f);
    let incoming = incoming(scan, &a);
    check_graph(scan, &incoming, &mut a, f);
    check_link_counts(scan, &a, &incoming, f);
    check_orphans(scan, &mut a, &incoming, f);
    a
}

/// Items of an object with no inode.
fn items_have_inodes(scan: &Scan, f: &mut Findings) {
    let kinds: [(&str, Vec<u64>); 6] = [
        ("directory entries", scan.dirents.keys().copied().collect()),
        ("readdir entries", scan.dirindex.keys().copied().collect()),
        ("xattrs", scan.xattrs.keys().copied().collect()),
        ("xattr values", scan.xattr_parts.keys().copied().collect()),
        ("extents", scan.extents.keys().copied().collect()),
        ("symlink chunks", scan.symlinks.keys().copied().collect()),
    ];
    let mut without: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (what, objects) in &kinds {
        for o in objects {
            if !scan.inodes.contains_key(o) {
                without.entry(*o).or_default().push(what);
            }
        }
    }
    for (o, what) in without {
        f.error(
            Check::ItemsWithoutInode,
            false,
            Some(o),
            None,
            format!("object {o} has {} but no inode", what.join(", ")),
        );
    }
}

/// Extents, symlink chunks and entries against the inode's kind and fields.
fn check_inode_items(scan: &Scan, ino: u64, inode: &InodeItem, f: &mut Findings) {
    let kind = inode.kind();
    let wrong_kind = |what: &str| format!("inode {ino} is a {kind:?} but has {what}");
    let bad_flags = inode.flags & !crate::format::inode_flags::allowed(kind);
    if bad_flags != 0 {
        f.error(
            Check::InodeFlags,
            false,
            Some(ino),
            None,
            wrong_kind(&format!("inode flags {bad_flags:#x} it cannot carry")),
        );
    }
    let extents = scan.extents.get(&ino).map_or(&[][..], |v| v);
    if !extents.is_empty() && kind != FileKind::File {
        f.error(
            Check::ItemKind,
            false,
            Some(ino),
            None,
            wrong_kind("extents"),
        );
    }
    if kind != FileKind::Symlink && scan.symlinks.contains_key(&ino) {
        f.error(
            Check::ItemKind,
            false,
            Some(ino),
            None,
            wrong_kind("symlink chunks"),
        );
    }
    if kind != FileKind::Dir
        && (scan.dirents.contains_key(&ino) || scan.dirindex.contains_key(&ino))
    {
        f.error(
            Check::ItemKind,
            false,
            Some(ino),
            None,
            wrong_kind("directory entries"),
        );
    }
    let reserved = scan.reserved_blocks(ino);
    if reserved > 0 && kind != FileKind::File {
        f.error(
            Check::ItemKind,
            false,
            Some(ino),
            None,
            wrong_kind("fallocate reservations"),
        );
    }
    let total = scan.unwritten_totals.get(&ino).copied().unwrap_or(0);
    if total != reserved {
        f.error(
            Check::InodeBlocks,
            false,
            Some(ino),
            None,
            format!(
                "inode {ino}: reservations recorded as {total} blocks, its runs hold {reserved}"
            ),
        );
    }
    // blocks counts what the extents map plus what fallocate reserved.
    let blocks: u64 = extents.iter().map(|e| e.len).sum::<u64>() + reserved;
    if blocks != inode.blocks {
        f.error(
            Check::InodeBlocks,
            true,
            Some(ino),
            None,
            format!(
                "inode {ino}: blocks is {}, its extents and reservations hold {blocks}",
                inode.blocks
            ),
        );
    }
    // Extents come in key order, so by file block.
    for w in extents.windows(2) {
        if w[0].file_block + w[0].len > w[1].file_block {
            f.error(
                Check::ExtentOverlap,
                false,
                Some(ino),
                None,
                format!(
                    "inode {ino}: the extents at file blocks {} ({} blocks) and {} overlap",
                    w[0].file_block, w[0].len, w[1].file_block
                ),
            );
        }
    }
    if kind == FileKind::Symlink {
        let chunks = scan.symlinks.get(&ino).map_or(&[][..], |v| v);
        let total: u64 = chunks.iter().map(|c| c.1 as u64).sum();
        let numbered = chunks.iter().enumerate().all(|(i, c)| c.0 == i as u64);
        if chunks.is_empty() || total != inode.size || !numbered {
            f.error(
                Check::SymlinkSize,
                false,
                Some(ino),
                None,
                format!(
                    "symlink {ino}: size {}, but its {} chunk(s) hold {total} bytes{}",
                    inode.size,
                    chunks.len(),
                    if numbered {
                        ""
                    } else {
                        " and are not numbered 0, 1, ..."
                    }
                ),
            );
        }
    }
}

fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Merges a directory's DIRENT and DIRINDEX halves into `a.names[d]`, reporting every
/// disagreement. A mismatch one half can settle is fixable (the halves are rebuilt from the
/// merged names) unless the directory also holds a conflict, or is no directory at all.
fn merge_halves(scan: &Scan, d: u64, a: &mut Analysis, f: &mut Findings) {
    let is_dir = scan
        .inodes
        .get(&d)
        .is_some_and(|i| i.kind() == FileKind::Dir);
    // Problems the rebuild fixes, reported once it is known whether it can run.
    let mut mismatches: Vec<(Check, String)> = Vec::new();
    let mut conflicted = false;
    let mut de: BTreeMap<&[u8], &DirLink> = BTreeMap::new();
    for (hash, link) in scan.dirents.get(&d).into_iter().flatten() {
        if crate::format::name_hash(&link.name) != *hash {
            mismatches.push((
                Check::NameHash,
                format!(
                    "directory {d}: entry {} is in the bucket of another hash (lookup cannot find it)",
                    show(&link.name)
                ),
            ));
        }
        if de.insert(&link.name, link).is_some() {
            f.error(
                Check::DuplicateName,
                false,
                Some(d),
                None,
                format!("directory {d}: name {} is there twice", show(&link.name)),
            );
            conflicted = true;
        }
    }
    let mut ix: BTreeMap<&[u8], &DirLink> = BTreeMap::new();
    for link in scan.dirindex.get(&d).into_iter().flatten() {
        if let Some(other) = ix.insert(&link.name, link) {
            f.error(
                Check::DuplicateName,
                false,
                Some(d),
                None,
                format!(
                    "directory {d}: readdir shows {} twice (cookies {} and {})",
                    show(&link.name),
                    other.cookie,
                    link.cookie
                ),
            );
            conflicted = true;
        }
    }
    let mut names = Names::new();
    for (name, l) in &de {
        match ix.get(name) {
            Some(x) if x.ino == l.ino && x.kind == l.kind && x.cookie == l.cookie => {}
            Some(x) => {
                f.error(
                    Check::DirentIndexConflict,
                    false,
                    Some(d),
                    None,
                    format!(
                        "directory {d}: {} is inode {} ({:?}, cookie {}) for lookup but inode {} ({:?}, cookie {}) for readdir",
                        show(name), l.ino, l.kind, l.cookie, x.ino, x.kind, x.cookie
                    ),
                );
                conflicted = true;
            }
            None => mismatches.push((
                Check::DirentWithoutIndex,
                format!(
                    "directory {d}: {} (inode {}) has no readdir entry",
                    show(name),
                    l.ino
                ),
            )),
        }
        names.insert(name.to_vec(), entry(l));
    }
    for (name, x) in &ix {
        if !de.contains_key(name) {
            mismatches.push((
                Check::IndexWithoutDirent,
                format!(
                    "directory {d}: readdir shows {} (inode {}) but lookup cannot find it",
                    show(name),
                    x.ino
                ),
            ));
            names.insert(name.to_vec(), entry(x));
        }
    }
    let mut cookies = BTreeSet::new();
    for (name, e) in &names {
        if e.cookie < FIRST_COOKIE || !cookies.insert(e.cookie) {
            mismatches.push((
                Check::DirentIndexConflict,
                format!(
                    "directory {d}: {}'s cookie {} is reserved or taken by another name",
                    show(name),
                    e.cookie
                ),
            ));
        }
    }
    let fixable = is_dir && !conflicted;
    if conflicted {
        a.conflicted.insert(d);
    } else if fixable && !mismatches.is_empty() {
        a.rebuild.insert(d);
    }
    for (check, message) in mismatches {
        f.error(check, fixable, Some(d), None, message);
    }
    a.names.insert(d, names);
}

fn entry(l: &DirLink) -> Entry {
    Entry {
        ino: l.ino,
        kind: l.kind,
        cookie: l.cookie,
    }
}

/// Entries point at existing inodes of their kind; `next_cookie` is above every cookie.
fn check_entries(scan: &Scan, a: &Analysis, f: &mut Findings) {
    for (&d, names) in &a.names {
        for (name, e) in names {
            match scan.inodes.get(&e.ino) {
                None => f.error(
                    Check::DanglingEntry,
                    false,
                    Some(d),
                    None,
                    format!(
                        "directory {d}: {} names inode {}, which does not exist",
                        show(name),
                        e.ino
                    ),
                ),
                Some(i) if i.kind() != e.kind => f.error(
                    Check::EntryKind,
                    false,
                    Some(d),
                    None,
                    format!(
                        "directory {d}: {} says inode {} is a {:?}; it is a {:?}",
                        show(name),
                        e.ino,
                        e.kind,
                        i.kind()
                    ),
                ),
                Some(_) => {}
            }
        }
    }
    for (&d, inode) in &scan.inodes {
        if inode.kind() != FileKind::Dir {
            continue;
        }
        let max = max_cookie(scan, a, d);
        if max.is_some_and(|m| inode.next_cookie <= m) {
            f.error(
                Check::NextCookie,
                true,
                Some(d),
                None,
                format!(
                    "directory {d}: next_cookie {} is not above cookie {}",
                    inode.next_cookie,
                    max.unwrap_or(0)
                ),
            );
        }
    }
}

/// The largest cookie in either half of directory `d`.
pub(super) fn max_cookie(scan: &Scan, a: &Analysis, d: u64) -> Option<u64> {
    let de = scan
        .dirents
        .get(&d)
        .into_iter()
        .flatten()
        .map(|e| e.1.cookie);
    let ix = scan
        .dirindex
        .get(&d)
        .into_iter()
        .flatten()
        .map(|l| l.cookie);
    let merged = a.names.get(&d).into_iter().flatten().map(|e| e.1.cookie);
    de.chain(ix).chain(merged).max()
}

/// The names of every inode (entries naming missing inodes are left out).
fn incoming(scan: &Scan, a: &Analysis) -> Incoming {
    let mut inc = Incoming::new();
    for (&d, names) in &a.names {
        if !scan.inodes.contains_key(&d) {
            continue;
        }
        for (name, e) in names {
            if scan.inodes.contains_key(&e.ino) {
                inc.entry(e.ino).or_default().push((d, name.clone()));
            }
        }
    }
    inc
}

/// Directories with one name each, `..`, and reachability from the root.
fn check_graph(scan: &Scan, inc: &Incoming, a: &mut Analysis, f: &mut Findings) {
    let none = Vec::new();
    for (&ino, inode) in &scan.inodes {
        if inode.kind() == FileKind::Dir {
            check_dir_names(scan, ino, inode, inc.get(&ino).unwrap_or(&none), f);
        }
    }
    check_reachability(scan, inc, a, f);
}

/// A directory has one name (the root none), and its `..` is the directory holding it.
fn check_dir_names(
    scan: &Scan,
    ino: u64,
    inode: &InodeItem,
    names: &[(u64, Vec<u8>)],
    f: &mut Findings,
) {
    if ino == ROOT_INO {
        if !names.is_empty() {
            f.error(
                Check::DirectoryLinks,
                false,
                Some(ino),
                None,
                format!("the root has a name in directory {} (a cycle)", names[0].0),
            );
        }
        if inode.parent != ROOT_INO {
            f.error(
                Check::DotDot,
                true,
                Some(ino),
                None,
                format!("the root's .. is {}, not itself", inode.parent),
            );
        }
        return;
    }
    match names {
        [] => {}
        [(p, name)] => {
            if inode.parent != *p && !scan.orphans.contains(&ino) {
                f.error(
                    Check::DotDot,
                    true,
                    Some(ino),
                    None,
                    format!(
                        "directory {ino} ({} in directory {p}): .. is {}",
                        show(name),
                        inode.parent
                    ),
                );
            }
        }
        many => f.error(
            Check::DirectoryLinks,
            false,
            Some(ino),
            None,
            format!(
                "directory {ino} has {} names ({}): a hard-linked directory or a cycle",
                many.len(),
                many.iter()
                    .map(|(p, n)| format!("{} in {p}", show(n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

/// Every inode not on the orphan list is reachable from the root. Unreachable inodes without
/// any name head detached subtrees (for lost+found); the rest sit in unreachable cycles.
fn check_reachability(scan: &Scan, inc: &Incoming, a: &mut Analysis, f: &mut Findings) {
    let reached = reach(scan, a, [ROOT_INO].into_iter().collect());
    let unreached: BTreeSet<u64> = scan
        .inodes
        .keys()
        .filter(|i| !reached.contains(i) && !scan.orphans.contains(i))
        .copied()
        .collect();
    let lost_found_ok = match a.names.get(&ROOT_INO).and_then(|n| n.get(LOST_FOUND)) {
        None => true,
        Some(e) => scan
            .inodes
            .get(&e.ino)
            .is_some_and(|i| i.kind() == FileKind::Dir),
    };
    let heads: Vec<u64> = unreached
        .iter()
        .filter(|i| !inc.contains_key(i))
        .copied()
        .collect();
    let mut covered = BTreeSet::new();
    for &h in &heads {
        let below = reach(scan, a, [h].into_iter().collect());
        let n = below.len() - 1;
        covered.extend(below);
        let kind = scan.inodes[&h].kind();
        f.error(
            Check::Unreachable,
            lost_found_ok,
            Some(h),
            None,
            format!(
                "inode {h} ({kind:?}{}) has no name: unreachable{}",
                if n > 0 {
                    format!(", with {n} inode(s) below it")
                } else {
                    String::new()
                },
                if lost_found_ok {
                    String::new()
                } else {
                    " (/lost+found is not a directory, so it cannot go there)".into()
                }
            ),
        );
    }
    if lost_found_ok {
        a.detached = heads;
    }
    for &i in unreached.iter().filter(|i| !covered.contains(i)) {
        f.error(
            Check::Unreachable,
            false,
            Some(i),
            None,
            format!(
                "inode {i} is unreachable: its names are only in directories no path from the \
                 root reaches (a directory cycle, or an orphaned directory)"
            ),
        );
    }
}

/// Every inode reachable from `start` through directory entries (directories entered once).
fn reach(scan: &Scan, a: &Analysis, start: BTreeSet<u64>) -> BTreeSet<u64> {
    let mut seen = start.clone();
    let mut queue: VecDeque<u64> = start.into_iter().collect();
    while let Some(d) = queue.pop_front() {
        let is_dir = scan
            .inodes
            .get(&d)
            .is_some_and(|i| i.kind() == FileKind::Dir);
        if !is_dir {
            continue;
        }
        for e in a.names.get(&d).into_iter().flat_map(|n| n.values()) {
            if scan.inodes.contains_key(&e.ino) && seen.insert(e.ino) {
                queue.push_back(e.ino);
            }
        }
    }
    seen
}

/// Subdirectories of directory `d` (by the inodes' kind, not the entries' claim).
pub(super) fn subdirs(names: Option<&Names>, inodes: &BTreeMap<u64, InodeItem>) -> u32 {
    names
        .into_iter()
        .flat_map(|n| n.values())
        .filter(|e| {
            inodes
                .get(&e.ino)
                .is_some_and(|i| i.kind() == FileKind::Dir)
        })
        .count() as u32
}

/// The link count an inode should have: its names (files), or 2 + its subdirectories
/// (directories). `None` for an inode without names that is not the root (unreachable or
/// orphaned: handled on their own).
pub(super) fn expected_nlink(
    ino: u64,
    inode: &InodeItem,
    names: usize,
    dir_names: Option<&Names>,
    inodes: &BTreeMap<u64, InodeItem>,
) -> Option<u32> {
    if names == 0 && ino != ROOT_INO {
        return None;
    }
    Some(if inode.kind() == FileKind::Dir {
        2 + subdirs(dir_names, inodes)
    } else {
        names as u32
    })
}

fn check_link_counts(scan: &Scan, a: &Analysis, inc: &Incoming, f: &mut Findings) {
    for (&ino, inode) in &scan.inodes {
        let names = inc.get(&ino).map_or(0, |v| v.len());
        let want = match expected_nlink(ino, inode, names, a.names.get(&ino), &scan.inodes) {
            Some(n) => n,
            // An orphan without names: nothing links to it any more.
            None if scan.orphans.contains(&ino) => 0,
            None => continue,
        };
        if inode.nlink != want {
            let why = if inode.kind() == FileKind::Dir && want >= 2 {
                format!(
                    "2 + {} subdirector{}",
                    want - 2,
                    if want == 3 { "y" } else { "ies" }
                )
            } else {
                format!("{names} name(s)")
            };
            f.error(
                Check::LinkCount,
                true,
                Some(ino),
                None,
                format!(
                    "inode {ino}: link count {}, should be {want} ({why})",
                    inode.nlink
                ),
            );
        }
    }
}

fn check_orphans(scan: &Scan, a: &mut Analysis, inc: &Incoming, f: &mut Findings) {
    for &o in &scan.orphans {
        let Some(inode) = scan.inodes.get(&o) else {
            f.error(
                Check::Orphan,
                true,
                Some(o),
                None,
                format!("the orphan list names inode {o}, which does not exist"),
            );
            a.drop_orphan.push(o);
            continue;
        };
        if let Some(names) = inc.get(&o) {
            f.error(
                Check::Orphan,
                true,
                Some(o),
                None,
                format!(
                    "inode {o} is on the orphan list (the next mount deletes it) but has {} name(s)",
                    names.len()
                ),
            );
            a.drop_orphan.push(o);
        } else if inode.kind() == FileKind::Dir && a.names.get(&o).is_some_and(|n| !n.is_empty()) {
            f.error(
                Check::Orphan,
                false,
                Some(o),
                None,
                format!("orphaned directory {o} is not empty"),
            );
        } else {
            a.purge.push(o);
        }
    }
}

/// The superblock's counters against the tree.
pub(super) fn check_counters(scan: &Scan, f: &mut Findings) {
    let sb = &scan.sb;
    let inodes = scan.inodes.len() as u64;
    if sb.inode_count != inodes {
        f.error(
            Check::InodeCount,
            true,
            None,
            None,
            format!(
                "the superblock counts {} inodes; the tree holds {inodes}",
                sb.inode_count
            ),
        );
    }
    let max = scan.inodes.keys().next_back().copied().unwrap_or(ROOT_INO);
    if sb.next_ino <= max {
        f.error(
            Check::NextIno,
            true,
            None,
            None,
            format!(
                "the superblock's next inode number {} is not above inode {max}",
                sb.next_ino
            ),
        );
    }
    if sb.used_blocks != scan.referenced {
        f.error(
            Check::UsedBlocks,
            true,
            None,
            None,
            format!(
                "the superblock says {} blocks are used; the tree references {}",
                sb.used_blocks, scan.referenced
            ),
        );
    }
}
