//! fsck over `MemDevice` images: clean filesystems stay clean, and images damaged by building
//! wrong commits through the real code paths (`Meta`, `Tree`, `write_commit`) or by flipping
//! bytes are reported, repaired when that is safe, and left alone when it is not.

use super::*;
use crate::device::{CrashDevice, MemDevice};
use crate::format::{
    decode_dirent_bucket, decode_node, decode_xattr_bucket, encode_xattr_bucket, name_hash,
    xattr_part_key, BlockPtr, DirLink, ExtentItem, InodeItem, Key, NodeBody, XattrValue,
    FEATURE_INCOMPAT_XATTR_VALUES, KIND_DIRENT, KIND_DIRINDEX, KIND_EXTENT, KIND_INODE,
    KIND_ORPHAN, KIND_XATTR, KIND_XATTR_VALUE, OBJECT_FS, SB_SLOT_OFFSETS,
};
use crate::fs::{Caller, Fs, Ino, MountOptions, ROOT_INO};
use crate::mkfs::{mkfs, MkfsOptions};
use crate::txn::{read_superblock, write_commit, write_superblock, Meta};

const ROOT: Caller = Caller::ROOT;

fn new_dev() -> Arc<MemDevice> {
    let dev = Arc::new(MemDevice::new(32 << 20, 512));
    mkfs(dev.clone(), &MkfsOptions::default()).unwrap();
    dev
}

fn mount(dev: &Arc<MemDevice>) -> Arc<Fs> {
    Fs::mount(dev.clone(), MountOptions::default()).unwrap()
}

fn fsck_dev(dev: &Arc<MemDevice>, repair: bool) -> Report {
    fsck(dev.clone(), &FsckOptions { repair })
}

#[track_caller]
fn assert_clean(r: &Report) {
    assert_eq!(
        (r.status, r.exit_code, r.errors),
        (Status::Clean, EXIT_CLEAN, 0),
        "{}",
        r.to_text()
    );
}

/// The checks of the errors a report found, deduplicated.
fn checks(r: &Report) -> Vec<Check> {
    let mut v: Vec<Check> = r.error_problems().map(|p| p.check).collect();
    v.sort();
    v.dedup();
    v
}

fn file(fs: &Fs, parent: Ino, name: &str) -> Ino {
    fs.mknod(parent, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
        .ino
}

fn dir(fs: &Fs, parent: Ino, name: &str) -> Ino {
    fs.mkdir(parent, name.as_bytes(), 0o755, ROOT).unwrap().ino
}

/// Opens the current commit, lets `change` edit the metadata, and writes the result as the
/// next commit, exactly as the filesystem commits.
fn commit_with(dev: &Arc<MemDevice>, change: impl FnOnce(&mut Meta)) {
    let mut meta = Meta::open(dev.clone(), false).unwrap();
    change(&mut meta);
    let mut plan = meta.prepare_commit(0).unwrap();
    write_commit(&**dev, &mut plan).unwrap();
}

/// Rewrites the current superblock (into its own slot) after `change`.
fn rewrite_superblock(dev: &Arc<MemDevice>, change: impl FnOnce(&mut crate::format::Superblock)) {
    let mut sb = read_superblock(&**dev).unwrap();
    change(&mut sb);
    write_superblock(&**dev, &sb).unwrap();
}

fn get_inode(meta: &mut Meta, ino: Ino) -> InodeItem {
    InodeItem::decode(
        &meta
            .tree
            .get(&Key::new(ino, KIND_INODE, 0))
            .unwrap()
            .unwrap(),
    )
    .unwrap()
}

fn put_inode(meta: &mut Meta, ino: Ino, i: &InodeItem) {
    meta.tree
        .insert(Key::new(ino, KIND_INODE, 0), i.encode())
        .unwrap();
}

/// The entry `name` in `dir`'s DIRENT bucket.
fn dirent(meta: &mut Meta, dir: Ino, name: &str) -> DirLink {
    let key = Key::new(dir, KIND_DIRENT, name_hash(name.as_bytes()));
    let bucket = decode_dirent_bucket(&meta.tree.get(&key).unwrap().unwrap()).unwrap();
    bucket
        .into_iter()
        .find(|l| l.name == name.as_bytes())
        .unwrap()
}

/// Repairs, then checks that a second fsck finds nothing.
#[track_caller]
fn repair_fixes_all(dev: &Arc<MemDevice>) -> Report {
    let r = fsck_dev(dev, true);
    assert_eq!(
        (r.status, r.exit_code),
        (Status::Corrected, EXIT_CORRECTED),
        "{}",
        r.to_text()
    );
    let rr = r.repair.as_ref().unwrap();
    assert!(rr.committed && rr.remaining.is_empty(), "{}", r.to_text());
    assert!(r.error_problems().all(|p| p.fixed), "{}", r.to_text());
    assert_clean(&fsck_dev(dev, false));
    r
}

/// A filesystem with many files, hard links, nested directories, renames, xattrs, symlinks
/// (one longer than a tree item), multi-extent files, truncates and an open-unlinked file.
/// Left with its last commit on `dev` and the filesystem dropped without unmounting, so the
/// unlinked-but-open file is still on the orphan list.
fn busy(dev: &Arc<MemDevice>) -> Vec<Ino> {
    let fs = mount(dev);
    let mut inos = Vec::new();
    let d1 = dir(&fs, ROOT_INO, "d1");
    let d2 = dir(&fs, d1, "d2");
    let d3 = dir(&fs, ROOT_INO, "d3");
    for i in 0..150 {
        let parent = [ROOT_INO, d1, d2, d3][i % 4];
        let f = file(&fs, parent, &format!("file-{i}"));
        fs.setxattr(f, format!("user.n{}", i % 3).as_bytes(), b"value", 0)
            .unwrap();
        if i % 10 == 0 {
            let data: Vec<u8> = (0..(i * 997 + 10)).map(|x| x as u8).collect();
            fs.write(f, (i as u64) * 4096, &data, None).unwrap();
        }
        if i % 7 == 0 {
            fs.link(f, d3, format!("link-{i}").as_bytes()).unwrap();
        }
        inos.push(f);
    }
    let big = file(&fs, d2, "big");
    for k in 0..8u64 {
        // Separate commits and holes: several extents.
        fs.write(big, k * 3 * 65536, &vec![k as u8; 65536], None)
            .unwrap();
        fs.sync().unwrap();
    }
    fs.setattr(
        big,
        &crate::fs::SetAttr {
            size: Some(5 * 65536 + 100),
            ..Default::default()
        },
    )
    .unwrap();
    fs.symlink(ROOT_INO, b"short", b"d1/d2/big", ROOT).unwrap();
    let long: Vec<u8> = (0..3000).map(|i| b'a' + (i % 26) as u8).collect();
    fs.symlink(d1, b"long", &long, ROOT).unwrap();
    fs.rename(d1, b"d2", d3, b"d2-moved", 0).unwrap();
    fs.rename(ROOT_INO, b"file-0", d3, b"file-0-moved", 0)
        .unwrap();
    let gone = dir(&fs, ROOT_INO, "gone");
    fs.rmdir(ROOT_INO, b"gone").unwrap();
    fs.forget(gone, 1);
    fs.unlink(d3, b"link-7").unwrap();
    fs.unlink(ROOT_INO, b"file-4").unwrap();
    fs.forget(inos[4], 1);
    fs.mknod(ROOT_INO, b"fifo", libc::S_IFIFO | 0o600, 0, ROOT)
        .unwrap();
    // Unlinked while open: stays as an orphan in the commit.
    let open = file(&fs, ROOT_INO, "open-unlinked");
    fs.write(open, 0, b"still open", None).unwrap();
    fs.open(open).unwrap();
    fs.unlink(ROOT_INO, b"open-unlinked").unwrap();
    fs.sync().unwrap();
    inos
}

#[test]
fn a_fresh_filesystem_is_clean() {
    let dev = new_dev();
    let r = fsck_dev(&dev, false);
    assert_clean(&r);
    assert_eq!(r.warnings, 0, "{}", r.to_text());
    assert_eq!(r.superblocks[0].state, SlotState::Empty);
    assert_eq!(r.superblocks[1].state, SlotState::Valid);
    assert!(r.superblocks[1].current);
    assert_eq!((r.stats.inodes, r.stats.directories), (1, 1));
    assert_eq!(r.stats.referenced_blocks, r.stats.superblock_used_blocks);
    // Nothing to repair: no commit.
    let r = fsck_dev(&dev, true);
    assert_clean(&r);
    assert!(!r.repair.unwrap().committed);
}

#[test]
fn a_busy_filesystem_is_clean_and_its_orphan_is_noted() {
    let dev = new_dev();
    busy(&dev);
    let r = fsck_dev(&dev, false);
    assert_clean(&r);
    assert!(r.stats.tree_height >= 2, "{}", r.to_text());
    assert!(r.stats.files > 140 && r.stats.symlinks == 2 && r.stats.special_files == 1);
    assert_eq!(r.stats.orphans, 1, "{}", r.to_text());
    assert!(r.notes.iter().any(|n| n.contains("orphaned inode")));
    assert_eq!(r.stats.referenced_blocks, r.stats.superblock_used_blocks);
    // Both slots hold valid commits by now: the older one is reported, not an error.
    assert!(r.superblocks.iter().all(|s| s.state == SlotState::Valid));
    assert_eq!(r.superblocks.iter().filter(|s| s.current).count(), 1);
    // --repair deletes the orphan, as the next mount would; nothing was an error.
    let r = fsck_dev(&dev, true);
    assert_clean(&r);
    let rr = r.repair.unwrap();
    assert!(rr.committed, "orphan deletion is a commit");
    assert!(
        rr.actions.iter().any(|a| a.contains("deleted")),
        "{:?}",
        rr.actions
    );
    let again = fsck_dev(&dev, false);
    assert_clean(&again);
    assert_eq!(again.stats.orphans, 0);
    assert_eq!(again.stats.inodes + 1, r.stats.inodes);
    // And the filesystem's own unmount leaves a clean image too.
    let fs = mount(&dev);
    fs.write(file(&fs, ROOT_INO, "after"), 0, b"x", None)
        .unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    assert_clean(&fsck_dev(&dev, false));
}

#[test]
fn a_wrong_link_count_is_repaired() {
    let dev = new_dev();
    let fs = mount(&dev);
    let f = file(&fs, ROOT_INO, "f");
    fs.link(f, ROOT_INO, b"g").unwrap();
    let d = dir(&fs, ROOT_INO, "d");
    fs.shutdown().unwrap();
    drop(fs);
    commit_with(&dev, |m| {
        let mut i = get_inode(m, f);
        i.nlink = 5;
        put_inode(m, f, &i);
        let mut i = get_inode(m, d);
        i.nlink = 7;
        put_inode(m, d, &i);
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(r.exit_code, EXIT_UNCORRECTED, "{}", r.to_text());
    assert_eq!(checks(&r), vec![Check::LinkCount]);
    let bad: Vec<_> = r.error_problems().map(|p| p.ino.unwrap()).collect();
    assert_eq!(bad, vec![f, d]);
    assert!(r.error_problems().all(|p| p.fixable));
    let r = repair_fixes_all(&dev);
    let actions = &r.repair.as_ref().unwrap().actions;
    assert!(
        actions.iter().any(|a| a.contains("link count 5 -> 2")),
        "{actions:?}"
    );
    let fs = mount(&dev);
    assert_eq!(fs.getattr(f).unwrap().nlink, 2);
    assert_eq!(fs.getattr(d).unwrap().nlink, 2);
}

#[test]
fn wrong_blocks_and_superblock_counters_are_repaired() {
    let dev = new_dev();
    let fs = mount(&dev);
    let f = file(&fs, ROOT_INO, "f");
    fs.write(f, 0, &[7u8; 20_000], None).unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    commit_with(&dev, |m| {
        let mut i = get_inode(m, f);
        i.blocks += 7;
        put_inode(m, f, &i);
        m.inode_count += 3;
    });
    rewrite_superblock(&dev, |sb| {
        sb.next_ino = 2;
        sb.used_blocks += 11;
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(
        checks(&r),
        vec![
            Check::UsedBlocks,
            Check::InodeCount,
            Check::NextIno,
            Check::InodeBlocks
        ],
        "{}",
        r.to_text()
    );
    repair_fixes_all(&dev);
    let sb = read_superblock(&*dev).unwrap();
    assert_eq!((sb.inode_count, sb.next_ino), (2, f + 1));
    let fs = mount(&dev);
    assert_eq!(fs.getattr(f).unwrap().blocks, 5 * 8);
    assert_eq!(fs.read(f, 0, 30_000).unwrap(), vec![7u8; 20_000]);
}

#[test]
fn a_dirent_without_its_dirindex_is_rebuilt() {
    let dev = new_dev();
    let fs = mount(&dev);
    let f = file(&fs, ROOT_INO, "hidden-from-readdir");
    file(&fs, ROOT_INO, "other");
    fs.shutdown().unwrap();
    drop(fs);
    commit_with(&dev, |m| {
        let l = dirent(m, ROOT_INO, "hidden-from-readdir");
        m.tree
            .remove(&Key::new(ROOT_INO, KIND_DIRINDEX, l.cookie))
            .unwrap()
            .unwrap();
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(
        checks(&r),
        vec![Check::DirentWithoutIndex],
        "{}",
        r.to_text()
    );
    repair_fixes_all(&dev);
    let fs = mount(&dev);
    let names: Vec<Vec<u8>> = fs
        .readdir(ROOT_INO, 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(
        names.contains(&b"hidden-from-readdir".to_vec()),
        "{names:?}"
    );
    assert_eq!(fs.lookup(ROOT_INO, b"hidden-from-readdir").unwrap().ino, f);
}

#[test]
fn a_dirindex_without_its_dirent_is_rebuilt() {
    let dev = new_dev();
    let fs = mount(&dev);
    let d = dir(&fs, ROOT_INO, "d");
    let f = file(&fs, d, "lost-for-lookup");
    fs.shutdown().unwrap();
    drop(fs);
    commit_with(&dev, |m| {
        let key = Key::new(d, KIND_DIRENT, name_hash(b"lost-for-lookup"));
        m.tree.remove(&key).unwrap().unwrap();
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(
        checks(&r),
        vec![Check::IndexWithoutDirent],
        "{}",
        r.to_text()
    );
    repair_fixes_all(&dev);
    let fs = mount(&dev);
    assert_eq!(fs.lookup(d, b"lost-for-lookup").unwrap().ino, f);
}

#[test]
fn a_detached_subtree_goes_into_lost_and_found() {
    let dev = new_dev();
    let fs = mount(&dev);
    let a = dir(&fs, ROOT_INO, "a");
    let b = dir(&fs, a, "b");
    let c = dir(&fs, b, "c");
    let f = file(&fs, b, "f");
    fs.write(f, 0, b"in the detached subtree", None).unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    // Remove both halves of a's name for b: b, c and f are unreachable, a's link count is off.
    commit_with(&dev, |m| {
        let l = dirent(m, a, "b");
        m.tree
            .remove(&Key::new(a, KIND_DIRENT, name_hash(b"b")))
            .unwrap();
        m.tree
            .remove(&Key::new(a, KIND_DIRINDEX, l.cookie))
            .unwrap();
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(
        checks(&r),
        vec![Check::Unreachable, Check::LinkCount],
        "{}",
        r.to_text()
    );
    let unreachable: Vec<_> = r
        .error_problems()
        .filter(|p| p.check == Check::Unreachable)
        .collect();
    assert_eq!(
        unreachable.len(),
        1,
        "one report for the head of the subtree"
    );
    assert_eq!(unreachable[0].ino, Some(b));
    assert!(unreachable[0].message.contains("2 inode(s) below"));
    let r = repair_fixes_all(&dev);
    let actions = &r.repair.as_ref().unwrap().actions;
    assert!(
        actions.iter().any(|a| a.contains("created /lost+found")),
        "{actions:?}"
    );
    let fs = mount(&dev);
    let lf = fs.lookup(ROOT_INO, LOST_FOUND).unwrap();
    assert_eq!(lf.nlink, 3);
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 4);
    assert_eq!(fs.getattr(a).unwrap().nlink, 2);
    let moved = fs.lookup(lf.ino, format!("#{b}").as_bytes()).unwrap();
    assert_eq!(moved.ino, b);
    assert_eq!(fs.lookup(b, b"c").unwrap().ino, c);
    let fi = fs.lookup(b, b"f").unwrap().ino;
    assert_eq!(fs.read(fi, 0, 100).unwrap(), b"in the detached subtree");
    // ".." of the moved directory is lost+found.
    let dotdot = fs
        .readdir(b, 0, 10)
        .unwrap()
        .into_iter()
        .find(|e| e.name == b"..")
        .unwrap();
    assert_eq!(dotdot.ino, lf.ino);
    // A second detached inode reuses the existing lost+found.
    fs.shutdown().unwrap();
    drop(fs);
    commit_with(&dev, |m| {
        let l = dirent(m, b, "f");
        m.tree
            .remove(&Key::new(b, KIND_DIRENT, name_hash(b"f")))
            .unwrap();
        m.tree
            .remove(&Key::new(b, KIND_DIRINDEX, l.cookie))
            .unwrap();
    });
    let r = repair_fixes_all(&dev);
    let actions = &r.repair.as_ref().unwrap().actions;
    assert!(
        !actions.iter().any(|a| a.contains("created")),
        "{actions:?}"
    );
    let fs = mount(&dev);
    assert_eq!(
        fs.lookup(lf.ino, format!("#{f}").as_bytes()).unwrap().ino,
        f
    );
}

#[test]
fn a_wrong_dotdot_and_next_cookie_are_repaired() {
    let dev = new_dev();
    let fs = mount(&dev);
    let a = dir(&fs, ROOT_INO, "a");
    let b = dir(&fs, a, "b");
    file(&fs, a, "x");
    fs.shutdown().unwrap();
    drop(fs);
    commit_with(&dev, |m| {
        let mut i = get_inode(m, b);
        i.parent = ROOT_INO;
        put_inode(m, b, &i);
        let mut i = get_inode(m, a);
        i.next_cookie = 2;
        put_inode(m, a, &i);
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(
        checks(&r),
        vec![Check::NextCookie, Check::DotDot],
        "{}",
        r.to_text()
    );
    repair_fixes_all(&dev);
    let fs = mount(&dev);
    // A new name in `a` gets a cookie of its own: readdir shows all three.
    file(&fs, a, "y");
    let n = fs.readdir(a, 0, 100).unwrap().len();
    assert_eq!(n, 5, "., .., b, x, y");
}

#[test]
fn an_orphan_item_on_a_linked_file_is_dropped_not_obeyed() {
    let dev = new_dev();
    let fs = mount(&dev);
    let f = file(&fs, ROOT_INO, "keep-me");
    fs.write(f, 0, b"data", None).unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    commit_with(&dev, |m| {
        m.tree
            .insert(Key::new(OBJECT_FS, KIND_ORPHAN, f), Vec::new())
            .unwrap();
        m.tree
            .insert(Key::new(OBJECT_FS, KIND_ORPHAN, 999), Vec::new())
            .unwrap();
        m.next_ino = 1000;
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(checks(&r), vec![Check::Orphan], "{}", r.to_text());
    assert_eq!(r.errors, 2);
    repair_fixes_all(&dev);
    // Mount would have deleted it.
    let fs = mount(&dev);
    assert_eq!(fs.lookup(ROOT_INO, b"keep-me").unwrap().ino, f);
    assert_eq!(fs.read(f, 0, 10).unwrap(), b"data");
}

#[test]
fn a_block_with_two_owners_is_reported_and_not_repaired() {
    let dev = new_dev();
    let fs = mount(&dev);
    let a = file(&fs, ROOT_INO, "a");
    let b = file(&fs, ROOT_INO, "b");
    fs.write(a, 0, &[1u8; 8192], None).unwrap();
    fs.write(b, 0, &[2u8; 8192], None).unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    commit_with(&dev, |m| {
        let (first, total) = (m.sb.first_block, m.sb.total_blocks);
        let ea = m.tree.get(&Key::new(a, KIND_EXTENT, 0)).unwrap().unwrap();
        let ea = ExtentItem::decode(&ea, first, total).unwrap();
        let kb = Key::new(b, KIND_EXTENT, 0);
        let mut eb = ExtentItem::decode(&m.tree.get(&kb).unwrap().unwrap(), first, total).unwrap();
        eb.disk_start = ea.disk_start + 1;
        m.tree.insert(kb, eb.encode()).unwrap();
    });
    let r = fsck_dev(&dev, false);
    assert!(
        checks(&r).contains(&Check::DoublyUsedBlock),
        "{}",
        r.to_text()
    );
    let p = r
        .error_problems()
        .find(|p| p.check == Check::DoublyUsedBlock)
        .unwrap();
    assert!(p.message.contains(&format!("inode {a}")) && p.message.contains(&format!("inode {b}")));
    let before = dev.snapshot();
    let r = fsck_dev(&dev, true);
    assert_eq!(r.exit_code, EXIT_UNCORRECTED, "{}", r.to_text());
    let rr = r.repair.unwrap();
    assert!(!rr.committed && rr.refused.is_some());
    assert!(dev.snapshot() == before, "a refused repair writes nothing");
}

/// The block of a non-root node of the current tree.
/// A leaf of the current tree: the pointer to it, and the block size.
fn some_leaf(dev: &Arc<MemDevice>) -> (BlockPtr, u32) {
    let sb = read_superblock(&**dev).unwrap();
    let id = crate::txn::identity(&sb);
    let bs = sb.block_size;
    let mut ptr: BlockPtr = sb.root;
    let mut level = sb.root_level;
    assert!(level > 0, "the test needs a tree of more than one node");
    while level > 0 {
        let bytes = dev.peek(ptr.addr.offset(bs), bs as usize);
        let NodeBody::Inner(children) = decode_node(&id, &bytes, &ptr, level).unwrap() else {
            panic!("inner node expected")
        };
        ptr = children[children.len() / 2].1;
        level -= 1;
    }
    (ptr, bs)
}

#[test]
fn a_flipped_byte_in_a_node_is_reported_and_never_rewritten() {
    let dev = new_dev();
    busy(&dev);
    let (ptr, bs) = some_leaf(&dev);
    let leaf = ptr.addr.0;
    // One copy bad: reported as such, the tree is whole.
    let flip = |block: u64| {
        let off = block * u64::from(bs) + 200;
        let byte = dev.peek(off, 1)[0];
        dev.poke(off, &[byte ^ 0x10]);
    };
    flip(leaf);
    let r = fsck_dev(&dev, false);
    assert_eq!(r.exit_code, EXIT_UNCORRECTED, "{}", r.to_text());
    assert_eq!(checks(&r), vec![Check::NodeCopyDamaged], "{}", r.to_text());
    // Both copies bad: the node is lost.
    flip(ptr.copy_addr.expect("DUP by default").0);
    let r = fsck_dev(&dev, false);
    assert_eq!(r.exit_code, EXIT_UNCORRECTED, "{}", r.to_text());
    let damaged: Vec<_> = r
        .error_problems()
        .filter(|p| p.check == Check::NodeDamaged)
        .collect();
    assert_eq!(damaged.len(), 1, "{}", r.to_text());
    assert_eq!(damaged[0].block, Some(leaf));
    assert!(
        damaged[0].message.contains("checksum"),
        "{}",
        damaged[0].message
    );
    assert!(!damaged[0].fixable);
    // The rest of the tree is still walked.
    assert!(r.stats.tree_nodes > 2);
    assert!(r.notes.iter().any(|n| n.contains("consequences")));
    let before = dev.snapshot();
    let r = fsck_dev(&dev, true);
    assert_eq!(r.exit_code, EXIT_UNCORRECTED);
    assert!(r.repair.unwrap().refused.is_some());
    assert!(
        dev.snapshot() == before,
        "damaged metadata is never rewritten"
    );
}

#[test]
fn superblock_slots_are_reported() {
    let dev = new_dev();
    let fs = mount(&dev);
    file(&fs, ROOT_INO, "x");
    fs.shutdown().unwrap();
    drop(fs);
    let r = fsck_dev(&dev, false);
    assert_clean(&r);
    let older = r.superblocks.iter().find(|s| !s.current).unwrap();
    let current = r.superblocks.iter().find(|s| s.current).unwrap();
    assert_eq!(older.state, SlotState::Valid);
    assert_eq!(older.generation.unwrap() + 1, current.generation.unwrap());
    assert!(older.reason.as_deref().unwrap().contains("older commit"));
    // A torn write of the older slot (what a crash during the next commit leaves): a warning.
    dev.poke(SB_SLOT_OFFSETS[older.slot as usize] + 100, &[0xff; 8]);
    let r = fsck_dev(&dev, false);
    assert_clean(&r);
    assert_eq!(r.warnings, 1);
    assert_eq!(r.problems[0].check, Check::SuperblockSlot);
    assert!(
        r.problems[0].message.contains("checksum"),
        "{}",
        r.to_text()
    );
}

#[test]
fn no_stablefs_and_newer_formats_are_operational_errors() {
    let dev = Arc::new(MemDevice::new(32 << 20, 512));
    let r = fsck_dev(&dev, false);
    assert_eq!(
        (r.status, r.exit_code),
        (Status::OperationalError, EXIT_OPERATIONAL)
    );
    assert!(r.error.unwrap().contains("not a stablefs"));
    // A valid superblock of format version 2.
    let dev = new_dev();
    let sb = read_superblock(&*dev).unwrap();
    let mut bytes = sb.encode();
    bytes[12..16].copy_from_slice(&2u32.to_le_bytes());
    bytes[8..12].fill(0);
    let crc = crc32c::crc32c(&bytes);
    bytes[8..12].copy_from_slice(&crc.to_le_bytes());
    dev.poke(SB_SLOT_OFFSETS[sb.slot as usize], &bytes);
    let r = fsck_dev(&dev, true);
    assert_eq!(r.exit_code, EXIT_OPERATIONAL, "{}", r.to_text());
    assert!(r.error.unwrap().contains("version 2"));
}

#[test]
fn items_without_inodes_and_dangling_entries_are_reported() {
    let dev = new_dev();
    let fs = mount(&dev);
    let f = file(&fs, ROOT_INO, "f");
    fs.setxattr(f, b"user.x", b"1", 0).unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    commit_with(&dev, |m| {
        m.tree.remove(&Key::new(f, KIND_INODE, 0)).unwrap();
        m.inode_count -= 1;
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(
        checks(&r),
        vec![Check::ItemsWithoutInode, Check::DanglingEntry],
        "{}",
        r.to_text()
    );
    assert!(r.error_problems().all(|p| !p.fixable));
    let r = fsck_dev(&dev, true);
    assert_eq!(r.exit_code, EXIT_UNCORRECTED);
    assert!(
        !r.repair.unwrap().committed,
        "nothing fixable, nothing written"
    );
}

#[test]
fn a_json_report_round_trips() {
    let dev = new_dev();
    commit_with(&dev, |m| {
        let mut i = get_inode(m, ROOT_INO);
        i.nlink = 9;
        put_inode(m, ROOT_INO, &i);
    });
    let r = fsck_dev(&dev, false);
    let v: serde_json::Value = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(v["status"], "uncorrected");
    assert_eq!(v["exit_code"], 4);
    assert_eq!(v["problems"][0]["check"], "link_count");
    assert_eq!(v["problems"][0]["fixable"], true);
    assert_eq!(v["superblocks"].as_array().unwrap().len(), 2);
}

#[test]
fn a_crash_during_repair_leaves_the_old_commit_or_the_repaired_one() {
    let dev = new_dev();
    busy(&dev);
    commit_with(&dev, |m| {
        let mut i = get_inode(m, ROOT_INO);
        i.nlink = 40;
        put_inode(m, ROOT_INO, &i);
    });
    let damaged = dev.snapshot();
    let want = checks(&fsck_dev(&dev, false));
    let probe = Arc::new(CrashDevice::new(damaged.clone(), 512));
    assert_eq!(
        fsck(probe.clone(), &FsckOptions { repair: true }).exit_code,
        1
    );
    let total = probe.ops();
    assert!(total >= 4, "nodes, flush, superblock, flush");
    let (mut old, mut repaired) = (0, 0);
    for cut in 0..total {
        for seed in 0..3 {
            let crash = Arc::new(CrashDevice::new(damaged.clone(), 512));
            crash.cut_at(cut);
            let r = fsck(crash.clone(), &FsckOptions { repair: true });
            assert_eq!(r.exit_code, EXIT_OPERATIONAL, "cut {cut}: the write fails");
            let after = Arc::new(MemDevice::from_bytes(crash.crash_image(seed, true), 512));
            let r = fsck_dev(&after, false);
            match r.exit_code {
                EXIT_CLEAN => repaired += 1,
                EXIT_UNCORRECTED if checks(&r) == want => old += 1,
                _ => panic!("cut {cut} seed {seed}: {}", r.to_text()),
            }
        }
    }
    // A cut before the superblock write keeps the old commit; one at the last flush may or
    // may not (the superblock write was issued).
    assert!(old > 0 && repaired > 0, "old {old}, repaired {repaired}");
}

/// Adds `name -> ino` to `dir` as the filesystem does (both halves, the next cookie).
fn add_entry(m: &mut Meta, dir: Ino, name: &str, ino: Ino, kind: crate::fs::FileKind) {
    let mut d = get_inode(m, dir);
    let cookie = d.next_cookie;
    d.next_cookie += 1;
    put_inode(m, dir, &d);
    let link = DirLink {
        name: name.as_bytes().to_vec(),
        ino,
        kind,
        cookie,
    };
    m.tree
        .insert(
            Key::new(dir, KIND_DIRENT, name_hash(name.as_bytes())),
            crate::format::encode_dirent_bucket(&[link]),
        )
        .unwrap();
    m.tree
        .insert(
            Key::new(dir, KIND_DIRINDEX, cookie),
            crate::format::encode_dirindex(ino, kind, name.as_bytes()),
        )
        .unwrap();
}

#[test]
fn a_hard_linked_directory_is_reported_and_the_rest_repaired() {
    let dev = new_dev();
    let fs = mount(&dev);
    let a = dir(&fs, ROOT_INO, "a");
    let b = dir(&fs, a, "b");
    fs.shutdown().unwrap();
    drop(fs);
    commit_with(&dev, |m| {
        add_entry(m, ROOT_INO, "b2", b, crate::fs::FileKind::Dir)
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(
        checks(&r),
        vec![Check::DirectoryLinks, Check::LinkCount],
        "{}",
        r.to_text()
    );
    // The link count is fixed, the second name of the directory is not guessed away.
    let r = fsck_dev(&dev, true);
    assert_eq!(r.exit_code, EXIT_UNCORRECTED, "{}", r.to_text());
    let rr = r.repair.as_ref().unwrap();
    assert!(rr.committed);
    assert_eq!(rr.remaining.len(), 1, "{}", r.to_text());
    assert_eq!(rr.remaining[0].check, Check::DirectoryLinks);
    assert!(r
        .error_problems()
        .all(|p| p.fixed == (p.check == Check::LinkCount)));
    assert_eq!(checks(&fsck_dev(&dev, false)), vec![Check::DirectoryLinks]);
}

#[test]
fn a_detached_directory_cycle_is_reported_and_not_repaired() {
    let dev = new_dev();
    let fs = mount(&dev);
    let a = dir(&fs, ROOT_INO, "a");
    let b = dir(&fs, a, "b");
    fs.shutdown().unwrap();
    drop(fs);
    // root no longer names a; b names a: a -> b -> a, unreachable from the root.
    commit_with(&dev, |m| {
        let l = dirent(m, ROOT_INO, "a");
        m.tree
            .remove(&Key::new(ROOT_INO, KIND_DIRENT, name_hash(b"a")))
            .unwrap();
        m.tree
            .remove(&Key::new(ROOT_INO, KIND_DIRINDEX, l.cookie))
            .unwrap();
        add_entry(m, b, "up", a, crate::fs::FileKind::Dir);
    });
    let r = fsck_dev(&dev, false);
    let cycle: Vec<_> = r
        .error_problems()
        .filter(|p| p.check == Check::Unreachable)
        .collect();
    assert_eq!(cycle.len(), 2, "{}", r.to_text());
    assert!(cycle
        .iter()
        .all(|p| !p.fixable && p.message.contains("cycle")));
    let r = fsck_dev(&dev, true);
    assert_eq!(r.exit_code, EXIT_UNCORRECTED, "{}", r.to_text());
    let remaining = &r.repair.as_ref().unwrap().remaining;
    assert!(
        remaining.iter().all(|p| p.check == Check::Unreachable),
        "{}",
        r.to_text()
    );
}

#[test]
fn keys_outside_their_parents_separators_are_found() {
    let dev = new_dev();
    busy(&dev);
    // Raise the root's second separator past the first key of its child: every node still
    // decodes (and checksums) on its own, only the order across siblings is wrong.
    let mut sb = read_superblock(&*dev).unwrap();
    let id = crate::txn::identity(&sb);
    let bs = sb.block_size;
    let bytes = dev.peek(sb.root.addr.offset(bs), bs as usize);
    let NodeBody::Inner(mut children) = decode_node(&id, &bytes, &sb.root, sb.root_level).unwrap()
    else {
        panic!("the busy tree has an inner root")
    };
    assert!(children.len() >= 3);
    let next = children[2].0;
    let mut raised = children[1].0;
    raised.offset += 1;
    assert!(raised < next);
    children[1].0 = raised;
    let (block, crc) = crate::format::encode_inner(
        &id,
        sb.root.addr,
        sb.root.birth_gen,
        sb.root_level,
        children.into_iter(),
    );
    dev.poke(sb.root.addr.offset(bs), &block);
    if let Some(copy) = sb.root.copy_addr {
        dev.poke(copy.offset(bs), &block);
    }
    sb.root.crc = crc;
    write_superblock(&*dev, &sb).unwrap();
    let r = fsck_dev(&dev, false);
    assert_eq!(checks(&r), vec![Check::KeyOrder], "{}", r.to_text());
    let before = dev.snapshot();
    let r = fsck_dev(&dev, true);
    assert_eq!(r.exit_code, EXIT_UNCORRECTED);
    assert!(r.repair.unwrap().refused.is_some());
    assert!(dev.snapshot() == before);
}

#[test]
fn a_truncated_image_is_reported_without_reading_past_its_end() {
    let dev = new_dev();
    busy(&dev);
    let mut bytes = dev.snapshot();
    bytes.truncate(bytes.len() / 2);
    let dev = Arc::new(MemDevice::from_bytes(bytes, 512));
    let r = fsck_dev(&dev, true);
    assert_eq!(r.exit_code, EXIT_UNCORRECTED, "{}", r.to_text());
    assert_eq!(checks(&r), vec![Check::DeviceTooSmall]);
    assert!(!r.repair.unwrap().committed);
}

#[test]
fn the_scrub_record_is_accepted_and_checked() {
    use crate::format::{ScrubItem, ScrubState, KIND_SCRUB, SCRUB_CURRENT, SCRUB_LAST};
    let dev = new_dev();
    let item = |state, finished| ScrubItem {
        state,
        id: 7,
        position: 100,
        subtree: ROOT_INO,
        limit: 0,
        started: 1,
        finished,
        elapsed_ms: 5,
        counts: crate::format::ScrubCounts {
            bytes_read: 4096,
            data_blocks: 1,
            metadata_nodes: 1,
            metadata_copies: 1,
            corrected: 0,
            uncorrectable: 0,
        },
    };
    commit_with(&dev, |m| {
        let current = item(ScrubState::Paused, 0).encode();
        let last = item(ScrubState::Clean, 2).encode();
        m.tree
            .insert(Key::new(OBJECT_FS, KIND_SCRUB, SCRUB_CURRENT), current)
            .unwrap();
        m.tree
            .insert(Key::new(OBJECT_FS, KIND_SCRUB, SCRUB_LAST), last)
            .unwrap();
    });
    assert_clean(&fsck_dev(&dev, false));
    // A record that does not decode (a finished state as the current scrub), and one under a
    // key no scrub record has.
    commit_with(&dev, |m| {
        let bad = item(ScrubState::Clean, 2).encode();
        m.tree
            .insert(Key::new(OBJECT_FS, KIND_SCRUB, SCRUB_CURRENT), bad)
            .unwrap();
        let stray = item(ScrubState::Clean, 2).encode();
        m.tree
            .insert(Key::new(OBJECT_FS, KIND_SCRUB, 2), stray)
            .unwrap();
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(
        checks(&r),
        [Check::ItemUndecodable, Check::UnknownItem],
        "{}",
        r.to_text()
    );
    // The filesystem still mounts: the bad record is ignored (and replaced by the next scrub).
    let fs = mount(&dev);
    assert_eq!(fs.scrub_status().state, "idle");
    assert_eq!(fs.status().last_scrub.unwrap().result, "clean");
}

/// copies=2: a filesystem with one 3-block file; returns both copies of each of its blocks.
fn copies2_file() -> (Arc<MemDevice>, Vec<(u64, u64)>) {
    let dev = Arc::new(MemDevice::new(32 << 20, 512));
    let opts = MkfsOptions {
        data_copies: 2,
        ..MkfsOptions::default()
    };
    mkfs(dev.clone(), &opts).unwrap();
    let fs = mount(&dev);
    let f = file(&fs, ROOT_INO, "f");
    fs.write(f, 0, &vec![9u8; 3 * 4096], None).unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    let mut meta = Meta::open(dev.clone(), false).unwrap();
    let (first, total) = (meta.sb.first_block, meta.sb.total_blocks);
    let mut blocks = Vec::new();
    meta.tree
        .walk(&mut |v| {
            if let crate::tree::Visit::Item { key, value } = v {
                if key.kind == KIND_EXTENT && key.object == f {
                    let e = ExtentItem::decode(value, first, total).unwrap();
                    for i in 0..e.len() {
                        blocks.push((e.block_of(0, i).unwrap(), e.block_of(1, i).unwrap()));
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    (dev, blocks)
}

#[test]
fn copies2_bad_data_copies_are_found_and_repaired_from_the_good_one() {
    let (dev, blocks) = copies2_file();
    assert_eq!(blocks.len(), 3);
    let r = fsck_dev(&dev, false);
    assert_clean(&r);
    // Both copies are referenced blocks: 6 data blocks for 3 file blocks.
    assert_eq!(r.stats.data_blocks, 6, "{}", r.to_text());
    let flip = |block: u64| {
        let off = block * 4096 + 300;
        let byte = dev.peek(off, 1)[0];
        dev.poke(off, &[byte ^ 0x01]);
    };
    flip(blocks[0].0);
    flip(blocks[1].1);
    let r = fsck_dev(&dev, false);
    assert_eq!(r.exit_code, EXIT_UNCORRECTED, "{}", r.to_text());
    assert_eq!(checks(&r), vec![Check::DataCopyDamaged], "{}", r.to_text());
    let bad: Vec<Option<u64>> = r.error_problems().map(|p| p.block).collect();
    assert_eq!(bad, vec![Some(blocks[0].0), Some(blocks[1].1)]);
    // --repair rewrites each from its good copy, and the check after it is clean.
    let r = fsck_dev(&dev, true);
    assert_eq!(
        (r.status, r.exit_code),
        (Status::Corrected, EXIT_CORRECTED),
        "{}",
        r.to_text()
    );
    assert!(r.problems.iter().all(|p| p.fixed), "{}", r.to_text());
    assert_clean(&fsck_dev(&dev, false));
    // Both copies bad: reported, not fixable, nothing rewritten; the tree is fine.
    flip(blocks[2].0);
    flip(blocks[2].1);
    let r = fsck_dev(&dev, true);
    assert_eq!(r.exit_code, EXIT_UNCORRECTED, "{}", r.to_text());
    assert_eq!(checks(&r), vec![Check::DataDamaged], "{}", r.to_text());
    assert!(r.repair.as_ref().is_some_and(|rr| !rr.committed));
}

/// A file with a small xattr and two external ones ("user.big", "user.mid"), committed.
fn big_xattrs(dev: &Arc<MemDevice>) -> Ino {
    let fs = mount(dev);
    let f = file(&fs, ROOT_INO, "x");
    fs.setxattr(f, b"user.small", b"s", 0).unwrap();
    fs.setxattr(f, b"user.big", &[7; 65536], 0).unwrap();
    fs.setxattr(f, b"user.mid", &[8; 5000], 0).unwrap();
    fs.shutdown().unwrap();
    f
}

/// The XATTR_VALUE items of `ino`.
fn xattr_parts(m: &mut Meta, ino: Ino) -> Vec<(Key, Vec<u8>)> {
    m.tree
        .range(
            &Key::new(ino, KIND_XATTR_VALUE, 0),
            &Key::new(ino, KIND_XATTR_VALUE, u64::MAX),
            usize::MAX,
        )
        .unwrap()
}

/// The slot of external xattr `name` of `ino`.
fn xattr_slot(m: &mut Meta, ino: Ino, name: &[u8]) -> u64 {
    let key = Key::new(ino, KIND_XATTR, name_hash(name));
    let list = decode_xattr_bucket(&m.tree.get(&key).unwrap().unwrap()).unwrap();
    match list.into_iter().find(|x| x.name == name).unwrap().value {
        XattrValue::External { slot, .. } => slot,
        XattrValue::Inline(_) => panic!("inline"),
    }
}

#[test]
fn external_xattr_values_are_clean_and_deleting_the_file_leaves_none() {
    let dev = new_dev();
    let f = big_xattrs(&dev);
    let r = fsck_dev(&dev, false);
    assert_clean(&r);
    assert_eq!(r.stats.xattrs, 3);
    let mut m = Meta::open(dev.clone(), false).unwrap();
    assert_ne!(m.sb.incompat & FEATURE_INCOMPAT_XATTR_VALUES, 0);
    let parts = xattr_parts(&mut m, f);
    let part = crate::format::max_item_value(m.sb.block_size);
    assert_eq!(
        parts.len(),
        65536usize.div_ceil(part) + 5000usize.div_ceil(part)
    );
    drop(m);
    let fs = mount(&dev);
    fs.unlink(ROOT_INO, b"x").unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    assert_clean(&fsck_dev(&dev, false));
    let mut m = Meta::open(dev.clone(), false).unwrap();
    let left = m
        .tree
        .range(&Key::new(f, 0, 0), &Key::new(f, u8::MAX, u64::MAX), 10)
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_missing_or_short_xattr_part_is_reported_and_the_xattr_dropped() {
    for damage in ["missing", "short", "extra"] {
        let dev = new_dev();
        let f = big_xattrs(&dev);
        commit_with(&dev, |m| {
            let slot = xattr_slot(m, f, b"user.big");
            let key = xattr_part_key(f, slot, 3);
            match damage {
                "missing" => {
                    m.tree.remove(&key).unwrap();
                }
                "short" => {
                    let mut v = m.tree.get(&key).unwrap().unwrap();
                    v.pop();
                    m.tree.insert(key, v).unwrap();
                }
                _ => {
                    let n = xattr_parts(m, f).len() as u64;
                    m.tree.insert(xattr_part_key(f, slot, n), vec![1]).unwrap();
                }
            }
        });
        let r = fsck_dev(&dev, false);
        assert_eq!(
            checks(&r),
            vec![Check::XattrValue],
            "{damage}: {}",
            r.to_text()
        );
        assert!(r.error_problems().all(|p| p.fixable && p.ino == Some(f)));
        let r = repair_fixes_all(&dev);
        let actions = r.repair.unwrap().actions.join("\n");
        assert!(actions.contains("xattr user.big dropped"), "{actions}");
        // The other xattrs are intact; the damaged one is gone, parts and all.
        let fs = mount(&dev);
        assert_eq!(fs.getxattr(f, b"user.mid").unwrap(), vec![8; 5000]);
        assert_eq!(fs.getxattr(f, b"user.small").unwrap(), b"s");
        assert_eq!(
            fs.getxattr(f, b"user.big").map_err(|e| e.errno()),
            Err(libc::ENODATA)
        );
        fs.shutdown().unwrap();
        drop(fs);
        let mut m = Meta::open(dev.clone(), false).unwrap();
        let part = crate::format::max_item_value(m.sb.block_size);
        assert_eq!(xattr_parts(&mut m, f).len(), 5000usize.div_ceil(part));
    }
}

#[test]
fn stray_xattr_parts_are_reported_and_dropped() {
    let dev = new_dev();
    let f = big_xattrs(&dev);
    commit_with(&dev, |m| {
        for part in 0..3 {
            m.tree
                .insert(xattr_part_key(f, 0x77, part), vec![part as u8; 10])
                .unwrap();
        }
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(checks(&r), vec![Check::XattrStrayParts], "{}", r.to_text());
    assert!(r.to_text().contains("3 xattr value part(s), 30 bytes"));
    repair_fixes_all(&dev);
    let fs = mount(&dev);
    assert_eq!(fs.getxattr(f, b"user.big").unwrap(), vec![7; 65536]);
    fs.shutdown().unwrap();
}

#[test]
fn a_shared_slot_and_parts_without_an_inode_are_reported_not_repaired() {
    let dev = new_dev();
    let f = big_xattrs(&dev);
    commit_with(&dev, |m| {
        // user.mid now claims user.big's slot (and 65536 bytes), its own parts left unclaimed.
        let big = xattr_slot(m, f, b"user.big");
        let key = Key::new(f, KIND_XATTR, name_hash(b"user.mid"));
        let mut list = decode_xattr_bucket(&m.tree.get(&key).unwrap().unwrap()).unwrap();
        list[0].value = XattrValue::External {
            len: 65536,
            slot: big,
        };
        m.tree.insert(key, encode_xattr_bucket(&list)).unwrap();
        // Parts of an inode that does not exist.
        m.tree
            .insert(xattr_part_key(999, 1, 0), vec![1, 2, 3])
            .unwrap();
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(
        checks(&r),
        vec![
            Check::ItemsWithoutInode,
            Check::XattrValue,
            Check::XattrStrayParts
        ],
        "{}",
        r.to_text()
    );
    let shared = r
        .error_problems()
        .find(|p| p.check == Check::XattrValue)
        .unwrap();
    assert!(
        !shared.fixable && shared.message.contains("share"),
        "{}",
        r.to_text()
    );
    assert!(r
        .to_text()
        .contains("object 999 has xattr values but no inode"));
}

#[test]
fn external_values_without_their_feature_bit_are_reported_and_the_bit_set() {
    let dev = new_dev();
    big_xattrs(&dev);
    commit_with(&dev, |m| m.sb.incompat &= !FEATURE_INCOMPAT_XATTR_VALUES);
    let r = fsck_dev(&dev, false);
    assert_eq!(checks(&r), vec![Check::XattrValue], "{}", r.to_text());
    repair_fixes_all(&dev);
    let sb = read_superblock(&*dev).unwrap();
    assert_ne!(sb.incompat & FEATURE_INCOMPAT_XATTR_VALUES, 0);
    // Only small values: the bit is never set, and an older stablefs can still read the image.
    let dev = new_dev();
    let fs = mount(&dev);
    let f = file(&fs, ROOT_INO, "f");
    fs.setxattr(f, b"user.a", &[1; 1000], 0).unwrap();
    fs.shutdown().unwrap();
    let sb = read_superblock(&*dev).unwrap();
    assert_eq!(sb.incompat & FEATURE_INCOMPAT_XATTR_VALUES, 0);
    assert_clean(&fsck_dev(&dev, false));
}

#[test]
fn inode_flags_a_kind_cannot_carry_are_reported() {
    let dev = new_dev();
    let fs = mount(&dev);
    let f = file(&fs, ROOT_INO, "f");
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT).unwrap().ino;
    let known = crate::format::inode_flags::IMMUTABLE | crate::format::inode_flags::DIRSYNC;
    fs.set_flags(d, known, ROOT).unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    assert!(
        fsck_dev(&dev, false).problems.is_empty(),
        "flags a directory may carry"
    );
    commit_with(&dev, |m| {
        let mut i = get_inode(m, f);
        i.flags = crate::format::inode_flags::DIRSYNC | 0x8000_0000;
        put_inode(m, f, &i);
    });
    let r = fsck_dev(&dev, false);
    assert_eq!(checks(&r), vec![Check::InodeFlags], "{}", r.to_text());
    assert!(r.to_text().contains("0x80010000"), "{}", r.to_text());
}
