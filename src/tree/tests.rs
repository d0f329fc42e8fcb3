//! The tree against a `BTreeMap` model: random inserts, removes, range and floor queries, with
//! commits to a device and reopens in between, so lazy loading and copy-on-write are exercised.

use super::*;
use crate::format::BlockNo;
use parking_lot::Mutex;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::io;

/// A minimal in-memory medium for this test (the real test doubles live in `device`).
struct Blocks(Mutex<Vec<u8>>);

impl BlockDevice for Blocks {
    fn align(&self) -> u32 {
        512
    }
    fn capacity(&self) -> u64 {
        self.0.lock().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut AlignedBuf) -> io::Result<()> {
        let d = self.0.lock();
        let n = buf.len();
        buf.copy_from_slice(&d[offset as usize..offset as usize + n]);
        Ok(())
    }
    fn write_at(&self, offset: u64, bufs: &[&AlignedBuf]) -> io::Result<()> {
        let mut d = self.0.lock();
        let mut o = offset as usize;
        for b in bufs {
            d[o..o + b.len()].copy_from_slice(b);
            o += b.len();
        }
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&self, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }
}

const BS: u32 = 4096;
const TOTAL: u64 = 4096;

fn io(dev: &Arc<Blocks>) -> TreeIo {
    io_dup(dev, false)
}

fn io_dup(dev: &Arc<Blocks>, dup: bool) -> TreeIo {
    TreeIo::new(
        dev.clone(),
        NodeIdentity {
            uuid: [3; 16],
            block_size: BS,
            first_block: 64,
            total_blocks: TOTAL,
        },
        dup,
    )
}

fn commit(tree: &mut Tree, alloc: &mut Allocator, dev: &Blocks, gen: u64) -> BlockPtr {
    let mut out = Vec::new();
    let root = tree.write_dirty(alloc, gen, &mut out).unwrap();
    for (b, bytes) in out {
        let mut buf = AlignedBuf::zeroed(bytes.len());
        buf.copy_from_slice(&bytes);
        dev.write_at(b.offset(BS), &[&buf]).unwrap();
    }
    alloc.seal();
    alloc.release_sealed();
    root
}

/// Every block the tree references (both copies of a DUP node), each once.
fn used_blocks(tree: &mut Tree) -> Vec<u64> {
    let mut v = Vec::new();
    tree.walk(&mut |x| {
        if let Visit::Node { ptr, .. } = x {
            v.push(ptr.addr.0);
            v.extend(ptr.copy_addr.map(|c| c.0));
        }
        Ok(())
    })
    .unwrap();
    v
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u16, u16),
    Remove(u16),
    Commit,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u16>(), 0u16..600).prop_map(|(k, l)| Op::Insert(k % 2000, l)),
        4 => any::<u16>().prop_map(|k| Op::Remove(k % 2000)),
        1 => Just(Op::Commit),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u16) -> Key {
    Key::new(u64::from(k) / 7, (k % 7) as u8, u64::from(k) * 3)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn tree_matches_model(ops in proptest::collection::vec(op(), 1..1500), dup in any::<bool>()) {
        let dev = Arc::new(Blocks(Mutex::new(vec![0; (TOTAL * u64::from(BS)) as usize])));
        let mut alloc = Allocator::new(64, TOTAL);
        let mut tree = Tree::new_empty(io_dup(&dev, dup));
        let mut model: BTreeMap<Key, Vec<u8>> = BTreeMap::new();
        let mut gen = 1;
        let mut root = commit(&mut tree, &mut alloc, &dev, gen);
        for o in ops {
            match o {
                Op::Insert(k, l) => {
                    let v = vec![(k % 251) as u8; l as usize];
                    tree.insert(key(k), v.clone()).unwrap();
                    model.insert(key(k), v);
                }
                Op::Remove(k) => {
                    prop_assert_eq!(tree.remove(&key(k)).unwrap(), model.remove(&key(k)));
                }
                Op::Commit => {
                    gen += 1;
                    root = commit(&mut tree, &mut alloc, &dev, gen);
                }
                Op::Reopen => {
                    gen += 1;
                    root = commit(&mut tree, &mut alloc, &dev, gen);
                    let level = tree.root_level();
                    tree = Tree::open(io_dup(&dev, dup), root, level).unwrap();
                    // The allocator must agree with what the tree references.
                    let used = used_blocks(&mut tree);
                    let mut fresh = Allocator::new(64, TOTAL);
                    for b in &used {
                        prop_assert!(fresh.mark_used(*b, 1), "block {} referenced twice", b);
                    }
                    prop_assert_eq!(fresh.free_blocks(), alloc.free_blocks());
                }
            }
        }
        let _ = root;
        let all = tree.range(&Key::MIN, &Key::MAX, usize::MAX).unwrap();
        let expect: Vec<_> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
        prop_assert_eq!(&all, &expect);
        for probe in (0..2000u16).step_by(37) {
            let k = key(probe);
            prop_assert_eq!(tree.get(&k).unwrap(), model.get(&k).cloned());
            let f = tree.floor(&k, &Key::MIN).unwrap();
            let m = model.range(..=k).next_back().map(|(k, v)| (*k, v.clone()));
            prop_assert_eq!(f, m);
            let r = tree.range(&k, &key(probe + 100), 5).unwrap();
            let mr: Vec<_> = model.range(k..=key(probe + 100)).take(5).map(|(k, v)| (*k, v.clone())).collect();
            prop_assert_eq!(r, mr);
        }
    }
}

#[test]
fn corrupted_node_is_an_error_not_a_panic() {
    let dev = Arc::new(Blocks(Mutex::new(vec![
        0;
        (TOTAL * u64::from(BS)) as usize
    ])));
    let mut alloc = Allocator::new(64, TOTAL);
    let mut tree = Tree::new_empty(io(&dev));
    for k in 0..500u16 {
        tree.insert(key(k), vec![1; 100]).unwrap();
    }
    let root = commit(&mut tree, &mut alloc, &dev, 1);
    let level = tree.root_level();
    assert!(level >= 1);
    // Flip one byte in every non-root node in turn; a full walk must fail cleanly each time.
    let blocks: Vec<u64> = used_blocks(&mut tree)
        .into_iter()
        .filter(|&b| b != root.addr.0)
        .collect();
    for b in blocks.iter().take(10) {
        let off = (BlockNo(*b).offset(BS) + 200) as usize;
        dev.0.lock()[off] ^= 0x40;
        let mut t = Tree::open(io(&dev), root, level).unwrap();
        let r = t.walk(&mut |_| Ok(()));
        assert!(
            matches!(r, Err(crate::Error::Checksum { block, .. }) if block == *b),
            "{r:?}"
        );
        dev.0.lock()[off] ^= 0x40;
    }
}

/// A tree of 500 items committed with DUP; returns it, its root and the device.
fn dup_tree() -> (Arc<Blocks>, BlockPtr, u8, Vec<BlockPtr>) {
    let dev = Arc::new(Blocks(Mutex::new(vec![
        0;
        (TOTAL * u64::from(BS)) as usize
    ])));
    let mut alloc = Allocator::new(64, TOTAL);
    let mut tree = Tree::new_empty(io_dup(&dev, true));
    for k in 0..500u16 {
        tree.insert(key(k), vec![(k % 251) as u8; 100]).unwrap();
    }
    let root = commit(&mut tree, &mut alloc, &dev, 1);
    let mut ptrs = Vec::new();
    tree.walk(&mut |x| {
        if let Visit::Node { ptr, .. } = x {
            ptrs.push(ptr);
        }
        Ok(())
    })
    .unwrap();
    (dev, root, tree.root_level(), ptrs)
}

fn block(dev: &Blocks, b: BlockNo) -> Vec<u8> {
    let off = b.offset(BS) as usize;
    dev.0.lock()[off..off + BS as usize].to_vec()
}

fn flip(dev: &Blocks, b: BlockNo) {
    dev.0.lock()[(b.offset(BS) + 200) as usize] ^= 0x40;
}

fn items_match(t: &mut Tree) {
    let all = t.range(&Key::MIN, &Key::MAX, usize::MAX).unwrap();
    assert_eq!(all.len(), 500);
    for (k, v) in all {
        let i = (0..500u16)
            .find(|&i| key(i) == k)
            .expect("a key that was inserted");
        assert_eq!(v, vec![(i % 251) as u8; 100]);
    }
}

#[test]
fn dup_writes_two_identical_copies_far_apart() {
    let (dev, root, _, ptrs) = dup_tree();
    assert!(ptrs.len() > 2, "a tree of several nodes");
    assert_eq!(ptrs[0], root);
    for p in &ptrs {
        let copy = p.copy_addr.expect("every node has a second copy");
        assert_eq!(block(&dev, p.addr), block(&dev, copy), "node {}", p.addr);
        let gap = copy.0.abs_diff(p.addr.0);
        assert!(
            gap >= (TOTAL - 64) / 4,
            "copies of {} only {gap} blocks apart",
            p.addr
        );
    }
}

#[test]
fn a_bad_first_copy_is_read_from_the_second_and_rewritten() {
    let (dev, root, level, ptrs) = dup_tree();
    // Damage the first copy of every node, the root too: all of it must still read right.
    for p in &ptrs {
        flip(&dev, p.addr);
    }
    let mut t = Tree::open(io_dup(&dev, true), root, level).unwrap();
    items_match(&mut t);
    assert_eq!(
        t.stats().bad_copies.load(Ordering::Relaxed),
        ptrs.len() as u64
    );
    assert_eq!(
        t.stats().repaired.load(Ordering::Relaxed),
        ptrs.len() as u64
    );
    for p in &ptrs {
        assert_eq!(
            block(&dev, p.addr),
            block(&dev, p.copy_addr.unwrap()),
            "healed {}",
            p.addr
        );
    }
    // Healed for good: a fresh open finds nothing wrong.
    let mut again = Tree::open(io_dup(&dev, true), root, level).unwrap();
    items_match(&mut again);
    assert_eq!(again.stats().bad_copies.load(Ordering::Relaxed), 0);
}

#[test]
fn a_bad_second_copy_is_not_needed_and_a_read_only_load_writes_nothing() {
    let (dev, root, level, ptrs) = dup_tree();
    for p in &ptrs {
        flip(&dev, p.copy_addr.unwrap());
    }
    let mut t = Tree::open(io_dup(&dev, true), root, level).unwrap();
    items_match(&mut t);
    assert_eq!(t.stats().bad_copies.load(Ordering::Relaxed), 0);

    let (dev, root, level, ptrs) = dup_tree();
    let victim = ptrs[1];
    flip(&dev, victim.addr);
    let damaged = block(&dev, victim.addr);
    let io = io_dup(&dev, true);
    io.heal.store(false, Ordering::Relaxed);
    let mut t = Tree::open(io, root, level).unwrap();
    items_match(&mut t);
    assert_eq!(t.stats().bad_copies.load(Ordering::Relaxed), 1);
    assert_eq!(t.stats().repaired.load(Ordering::Relaxed), 0);
    assert_eq!(
        block(&dev, victim.addr),
        damaged,
        "read-only: left as it was"
    );
}

#[test]
fn both_copies_bad_is_an_error_naming_the_first() {
    let (dev, root, level, ptrs) = dup_tree();
    let victim = ptrs[1];
    flip(&dev, victim.addr);
    flip(&dev, victim.copy_addr.unwrap());
    let mut t = Tree::open(io_dup(&dev, true), root, level).unwrap();
    let r = t.walk(&mut |_| Ok(()));
    assert!(
        matches!(r, Err(crate::Error::Checksum { block, .. }) if block == victim.addr.0),
        "{r:?}"
    );
    assert_eq!(t.stats().bad_copies.load(Ordering::Relaxed), 2);
    assert_eq!(t.stats().repaired.load(Ordering::Relaxed), 0);
}
