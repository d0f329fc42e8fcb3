//! The copy-on-write B+tree that holds all metadata.
//!
//! Nodes are loaded lazily from the device, verified against the checksum and identity their
//! parent pointer carries (`format::decode_node`), and then kept in memory: a node is verified
//! once and never read again while mounted.
//!
//! Copy-on-write: a node that came from the device carries its `BlockPtr` (`disk`). The first
//! change to it drops that pointer (its block goes to the allocator's pending frees) and makes
//! it dirty; `write_dirty` gives every dirty node a fresh block at commit, children first, so a
//! committed block is never overwritten.
//!
//! DUP (`TreeIo::dup`): every node is written twice, the second copy about half the device
//! away (`Allocator::alloc_far`), as the same bytes: the node names its first copy as its own
//! block, and its parent's pointer carries both addresses and one crc. A load that finds one
//! copy unreadable or failing verification uses the other, and (when `TreeIo::heal` allows)
//! rewrites the bad copy in place with the good bytes: the block is live and its content does
//! not change, so this is the one write that may go to a committed block.
//!
//! Invariants: keys are strictly increasing in every node; in an inner node `children[i].0` ≤
//! every key below child i < `children[i+1].0` (child 0 also takes every key below its
//! separator); every encoded node fits its block (leaf values are at most
//! `format::max_item_value`, so an overflowing node always splits into two that fit).

use crate::alloc::Allocator;
use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, Result};
use crate::format::{
    decode_node, encode_inner, encode_leaf, node_capacity, BlockNo, BlockPtr, Key, NodeBody,
    NodeIdentity, INNER_ENTRY_SIZE, LEAF_ENTRY_OVERHEAD, NODE_HEADER_SIZE,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

enum Child {
    Disk(BlockPtr),
    Mem(Box<Node>),
}

enum Body {
    Leaf(Vec<(Key, Vec<u8>)>),
    Inner(Vec<(Key, Child)>),
}

struct Node {
    level: u8,
    /// Where the committed version of this node lives; `None` = dirty.
    disk: Option<BlockPtr>,
    body: Body,
}

impl Node {
    fn empty_leaf() -> Node {
        Node {
            level: 0,
            disk: None,
            body: Body::Leaf(Vec::new()),
        }
    }

    fn bytes(&self) -> usize {
        NODE_HEADER_SIZE
            + match &self.body {
                Body::Leaf(items) => items
                    .iter()
                    .map(|(_, v)| LEAF_ENTRY_OVERHEAD + v.len())
                    .sum(),
                Body::Inner(c) => c.len() * INNER_ENTRY_SIZE,
            }
    }

    fn len(&self) -> usize {
        match &self.body {
            Body::Leaf(i) => i.len(),
            Body::Inner(c) => c.len(),
        }
    }

    fn first_key(&self) -> Option<Key> {
        match &self.body {
            Body::Leaf(i) => i.first().map(|e| e.0),
            Body::Inner(c) => c.first().map(|e| e.0),
        }
    }
}

/// Where node blocks are read from and what they must identify as.
pub struct TreeIo {
    pub dev: Arc<dyn BlockDevice>,
    pub id: NodeIdentity,
    /// Write every node twice (the superblock's metadata-DUP feature).
    pub dup: bool,
    /// Rewrite a bad copy from the good one when a load finds one (off for read-only mounts
    /// and tools that must not write).
    pub heal: AtomicBool,
    pub stats: Arc<TreeStats>,
}

/// What loads found, for `stablefs status`, scrub and tests.
#[derive(Default, Debug)]
pub struct TreeStats {
    /// Node copies that failed to read or verify.
    pub bad_copies: AtomicU64,
    /// Bad copies rewritten from a good one.
    pub repaired: AtomicU64,
    /// Each bad copy found, in order (bounded: only damage adds to it).
    pub events: parking_lot::Mutex<Vec<BadCopy>>,
}

/// One copy of a node that failed to read or verify.
#[derive(Clone, Debug)]
pub struct BadCopy {
    /// The block the copy is in.
    pub block: BlockNo,
    /// The node's first copy (its name in the tree).
    pub node: BlockNo,
    pub level: u8,
    pub error: String,
    /// Rewritten from the other copy.
    pub repaired: bool,
}

impl TreeIo {
    pub fn new(dev: Arc<dyn BlockDevice>, id: NodeIdentity, dup: bool) -> TreeIo {
        TreeIo {
            dev,
            id,
            dup,
            heal: AtomicBool::new(true),
            stats: Arc::new(TreeStats::default()),
        }
    }

    /// Reads the copy of `ptr`'s node at `at` into `buf` and verifies it against `ptr` (both
    /// copies carry the same bytes, so the same pointer checks either).
    fn read_copy(
        &self,
        at: BlockNo,
        ptr: &BlockPtr,
        level: u8,
        buf: &mut AlignedBuf,
    ) -> Result<NodeBody> {
        self.dev.read_at(at.offset(self.id.block_size), buf)?;
        decode_node(&self.id, buf, ptr, level)
    }

    fn load(&self, ptr: &BlockPtr, level: u8) -> Result<Box<Node>> {
        let bs = self.id.block_size;
        let mut buf = AlignedBuf::zeroed(bs as usize);
        let body = match self.read_copy(ptr.addr, ptr, level, &mut buf) {
            Ok(b) => b,
            Err(e) => {
                log::error!(
                    "metadata block {} (tree level {level}) failed verification: {e}",
                    ptr.addr
                );
                let Some(copy) = ptr.copy_addr else {
                    self.note_bad(ptr.addr, ptr.addr, level, &e, false);
                    return Err(e);
                };
                match self.read_copy(copy, ptr, level, &mut buf) {
                    Ok(b) => {
                        let healed = self.heal_copy(ptr.addr, &buf);
                        self.note_bad(ptr.addr, ptr.addr, level, &e, healed);
                        b
                    }
                    Err(e2) => {
                        self.note_bad(ptr.addr, ptr.addr, level, &e, false);
                        self.note_bad(copy, ptr.addr, level, &e2, false);
                        log::error!(
                            "its second copy at block {copy} failed too: {e2}; the node is lost"
                        );
                        return Err(e);
                    }
                }
            }
        };
        let body = match body {
            NodeBody::Leaf(items) => Body::Leaf(items),
            NodeBody::Inner(c) => {
                Body::Inner(c.into_iter().map(|(k, p)| (k, Child::Disk(p))).collect())
            }
        };
        Ok(Box::new(Node {
            level,
            disk: Some(*ptr),
            body,
        }))
    }

    fn note_bad(&self, block: BlockNo, node: BlockNo, level: u8, e: &Error, repaired: bool) {
        self.stats.bad_copies.fetch_add(1, Ordering::Relaxed);
        self.stats.events.lock().push(BadCopy {
            block,
            node,
            level,
            error: e.to_string(),
            repaired,
        });
    }

    /// Puts the verified bytes `good` back at `bad`, one copy of a live node. True if it did.
    pub fn heal_copy(&self, bad: BlockNo, good: &AlignedBuf) -> bool {
        self.healer().heal_copy(bad, good)
    }

    /// What `heal_copy` needs, detached from the tree, for a caller that heals after it has
    /// let go of the lock the tree lives under (the online scrub).
    pub fn healer(&self) -> Healer {
        Healer {
            dev: self.dev.clone(),
            block_size: self.id.block_size,
            heal: self.heal.load(Ordering::Relaxed),
            stats: self.stats.clone(),
        }
    }
}

/// Rewrites bad node copies from good ones (see `TreeIo::healer`).
pub struct Healer {
    dev: Arc<dyn BlockDevice>,
    block_size: u32,
    /// Whether writing is allowed (`TreeIo::heal` when the healer was made).
    heal: bool,
    stats: Arc<TreeStats>,
}

impl Healer {
    /// Puts the verified bytes `good` back at `bad`, one copy of a live node. True if it did.
    /// The caller makes sure `bad` is still a copy of that node (not freed and reused).
    pub fn heal_copy(&self, bad: BlockNo, good: &AlignedBuf) -> bool {
        if !self.heal {
            log::warn!("metadata block {bad}: using its other copy (not rewritten: read-only)");
            return false;
        }
        match self.dev.write_at(bad.offset(self.block_size), &[good]) {
            Ok(()) => {
                self.stats.repaired.fetch_add(1, Ordering::Relaxed);
                log::warn!("metadata block {bad}: rewritten from its other copy");
                true
            }
            Err(e) => {
                log::error!("metadata block {bad}: could not rewrite it: {e}");
                false
            }
        }
    }
}

/// What `Tree::walk` reports.
pub enum Visit<'a> {
    Node { ptr: BlockPtr, level: u8 },
    Item { key: &'a Key, value: &'a [u8] },
}

pub struct Tree {
    io: TreeIo,
    root: Box<Node>,
    /// Blocks of committed nodes replaced since the last `write_dirty`.
    freed: Vec<BlockNo>,
}

/// A split-off right sibling and its first key.
type Split = Option<(Key, Box<Node>)>;

impl Tree {
    /// A new, empty tree (mkfs).
    pub fn new_empty(io: TreeIo) -> Tree {
        Tree {
            io,
            root: Box::new(Node::empty_leaf()),
            freed: Vec::new(),
        }
    }

    /// Opens the tree whose root a superblock names; the root is read and verified now.
    pub fn open(io: TreeIo, root: BlockPtr, level: u8) -> Result<Tree> {
        let root = io.load(&root, level)?;
        Ok(Tree {
            io,
            root,
            freed: Vec::new(),
        })
    }

    /// Whether loads may rewrite a bad copy of a node from the good one (see `TreeIo::heal`).
    pub fn set_heal(&self, heal: bool) {
        self.io.heal.store(heal, Ordering::Relaxed);
    }

    /// Where nodes are read from (scrub reads and heals copies through it).
    pub fn io(&self) -> &TreeIo {
        &self.io
    }

    /// What loads have found so far (shared: it keeps counting).
    pub fn stats(&self) -> Arc<TreeStats> {
        self.io.stats.clone()
    }

    pub fn root_level(&self) -> u8 {
        self.root.level
    }

    pub fn identity(&self) -> &NodeIdentity {
        &self.io.id
    }

    pub fn is_dirty(&self) -> bool {
        self.root.disk.is_none()
    }

    fn capacity(&self) -> usize {
        node_capacity(self.io.id.block_size) + NODE_HEADER_SIZE
    }

    /// The value stored under `key`.
    pub fn get(&mut self, key: &Key) -> Result<Option<Vec<u8>>> {
        let io = &self.io;
        let mut node = &mut *self.root;
        loop {
            match &mut node.body {
                Body::Leaf(items) => {
                    return Ok(items
                        .binary_search_by(|e| e.0.cmp(key))
                        .ok()
                        .map(|i| items[i].1.clone()));
                }
                Body::Inner(children) => {
                    let i = child_index(children, key);
                    node = load_child(io, &mut children[i].1, node.level - 1)?;
                }
            }
        }
    }

    /// Items with keys in `[from, to]`, in order, at most `limit` of them.
    pub fn range(&mut self, from: &Key, to: &Key, limit: usize) -> Result<Vec<(Key, Vec<u8>)>> {
        let mut out = Vec::new();
        if from <= to && limit > 0 {
            range_rec(&self.io, &mut self.root, from, to, limit, &mut out)?;
        }
        Ok(out)
    }

    /// The item with the greatest key ≤ `key`, if it lies at or above `floor`.
    pub fn floor(&mut self, key: &Key, floor: &Key) -> Result<Option<(Key, Vec<u8>)>> {
        floor_rec(&self.io, &mut self.root, key, floor)
    }

    /// Inserts or replaces. `value` must be at most `format::max_item_value` bytes.
    pub fn insert(&mut self, key: Key, value: Vec<u8>) -> Result<()> {
        let max = crate::format::max_item_value(self.io.id.block_size);
        if value.len() > max {
            return Err(Error::Invalid(format!(
                "item of {} bytes exceeds {max}",
                value.len()
            )));
        }
        let cap = self.capacity();
        if let Some((k, right)) =
            insert_rec(&self.io, &mut self.root, key, value, cap, &mut self.freed)?
        {
            let level = self.root.level + 1;
            let left = std::mem::replace(&mut self.root, Box::new(Node::empty_leaf()));
            *self.root = Node {
                level,
                disk: None,
                body: Body::Inner(vec![(Key::MIN, Child::Mem(left)), (k, Child::Mem(right))]),
            };
        }
        Ok(())
    }

    /// Removes `key`; returns its value if it was there.
    pub fn remove(&mut self, key: &Key) -> Result<Option<Vec<u8>>> {
        let cap = self.capacity();
        let old = remove_rec(&self.io, &mut self.root, key, cap, &mut self.freed)?;
        // Collapse a root with a single child; an inner root with none becomes an empty leaf.
        while let Body::Inner(children) = &mut self.root.body {
            match children.len() {
                0 => {
                    *self.root = Node::empty_leaf();
                    break;
                }
                1 => {
                    let level = self.root.level - 1;
                    let (_, child) = children.pop().expect("one child");
                    let child = match child {
                        Child::Mem(n) => n,
                        Child::Disk(p) => self.io.load(&p, level)?,
                    };
                    if let Some(p) = self.root.disk {
                        free_node(&p, &mut self.freed);
                    }
                    self.root = child;
                }
                _ => break,
            }
        }
        Ok(old)
    }

    /// Writes every dirty node to fresh blocks (children before parents) into `out` as
    /// `(block, bytes)`, frees the blocks of the nodes they replace, and returns the new root
    /// pointer. When the device cannot hold them all it returns `ENOSPC` before changing
    /// anything.
    pub fn write_dirty(
        &mut self,
        alloc: &mut Allocator,
        generation: u64,
        out: &mut Vec<(BlockNo, Vec<u8>)>,
    ) -> Result<BlockPtr> {
        // Every block is found before any is assigned: running out half-way would leave nodes
        // pointing at blocks that were never written.
        let copies = if self.io.dup { 2 } else { 1 };
        if alloc.free_blocks() < copies * self.dirty_nodes() as u64 {
            return Err(Error::Errno(libc::ENOSPC));
        }
        for b in self.freed.drain(..) {
            alloc.free_later(b.0, 1);
        }
        write_rec(&self.io, &mut self.root, alloc, generation, out)
    }

    /// Nodes changed since the last commit: the blocks the next commit needs for the tree.
    pub fn dirty_nodes(&self) -> usize {
        fn count(n: &Node) -> usize {
            if n.disk.is_some() {
                return 0;
            }
            let below = match &n.body {
                Body::Leaf(_) => 0,
                Body::Inner(c) => c
                    .iter()
                    .map(|(_, ch)| if let Child::Mem(m) = ch { count(m) } else { 0 })
                    .sum(),
            };
            1 + below
        }
        count(&self.root)
    }

    /// Visits every node and item, loading (and so verifying) the whole tree.
    pub fn walk(&mut self, f: &mut dyn FnMut(Visit) -> Result<()>) -> Result<()> {
        walk_rec(&self.io, &mut self.root, f, &mut None)
    }

    /// The committed pointer of the node at tree level `level` on the path to `key` (`None`:
    /// that node has changed since the last commit, or the tree is not that tall). Scrub asks
    /// this, with a key that lies below a node it found earlier, to learn whether that node
    /// (so both its blocks) is still in the tree: an unchanged node's subtree is unchanged, so
    /// the key still leads to it.
    pub fn node_ptr_at(&mut self, key: &Key, level: u8) -> Result<Option<BlockPtr>> {
        let io = &self.io;
        let mut node = &mut *self.root;
        if node.level < level {
            return Ok(None);
        }
        while node.level > level {
            let Body::Inner(children) = &mut node.body else {
                return Ok(None);
            };
            if children.is_empty() {
                return Ok(None);
            }
            let i = child_index(children, key);
            let below = node.level - 1;
            node = load_child(io, &mut children[i].1, below)?;
        }
        Ok(node.disk)
    }

    /// Like `walk`, but a subtree whose node fails to load or verify is skipped and its error
    /// collected, so one damaged block does not hide the rest of the tree.
    pub fn walk_tolerant(&mut self, f: &mut dyn FnMut(Visit) -> Result<()>) -> Result<Vec<Error>> {
        let mut errors = Some(Vec::new());
        walk_rec(&self.io, &mut self.root, f, &mut errors)?;
        Ok(errors.unwrap_or_default())
    }
}

fn child_index(children: &[(Key, Child)], key: &Key) -> usize {
    children.partition_point(|e| e.0 <= *key).saturating_sub(1)
}

fn load_child<'a>(io: &TreeIo, child: &'a mut Child, level: u8) -> Result<&'a mut Node> {
    if let Child::Disk(p) = child {
        *child = Child::Mem(io.load(p, level)?);
    }
    match child {
        Child::Mem(n) => Ok(n),
        Child::Disk(_) => unreachable!("loaded above"),
    }
}

/// Makes `node` dirty; its committed block is freed at the next commit.
fn cow(node: &mut Node, freed: &mut Vec<BlockNo>) {
    if let Some(p) = node.disk.take() {
        free_node(&p, freed);
    }
}

/// Every block of a committed node (both copies under DUP) is freed at the next commit.
fn free_node(p: &BlockPtr, freed: &mut Vec<BlockNo>) {
    freed.push(p.addr);
    freed.extend(p.copy_addr);
}

fn range_rec(
    io: &TreeIo,
    node: &mut Node,
    from: &Key,
    to: &Key,
    limit: usize,
    out: &mut Vec<(Key, Vec<u8>)>,
) -> Result<()> {
    match &mut node.body {
        Body::Leaf(items) => {
            let start = items.partition_point(|e| e.0 < *from);
            for (k, v) in &items[start..] {
                if k > to || out.len() >= limit {
                    break;
                }
                out.push((*k, v.clone()));
            }
        }
        Body::Inner(children) => {
            let first = child_index(children, from);
            let level = node.level - 1;
            for (sep, child) in children[first..].iter_mut() {
                if *sep > *to || out.len() >= limit {
                    break;
                }
                let child = load_child(io, child, level)?;
                range_rec(io, child, from, to, limit, out)?;
            }
        }
    }
    Ok(())
}

fn floor_rec(
    io: &TreeIo,
    node: &mut Node,
    key: &Key,
    floor: &Key,
) -> Result<Option<(Key, Vec<u8>)>> {
    match &mut node.body {
        Body::Leaf(items) => {
            let i = items.partition_point(|e| e.0 <= *key);
            Ok(i.checked_sub(1)
                .map(|i| &items[i])
                .filter(|e| e.0 >= *floor)
                .map(|e| (e.0, e.1.clone())))
        }
        Body::Inner(children) => {
            let level = node.level - 1;
            let mut i = child_index(children, key);
            loop {
                let child = load_child(io, &mut children[i].1, level)?;
                if let Some(found) = floor_rec(io, child, key, floor)? {
                    return Ok(Some(found));
                }
                // Child 0 may hold keys below its separator; an empty answer from child i > 0
                // can only happen for an empty child, so look left while keys could be ≥ floor.
                if i == 0 || children[i].0 < *floor {
                    return Ok(None);
                }
                i -= 1;
            }
        }
    }
}

fn insert_rec(
    io: &TreeIo,
    node: &mut Node,
    key: Key,
    value: Vec<u8>,
    cap: usize,
    freed: &mut Vec<BlockNo>,
) -> Result<Split> {
    cow(node, freed);
    match &mut node.body {
        Body::Leaf(items) => match items.binary_search_by(|e| e.0.cmp(&key)) {
            Ok(i) => items[i].1 = value,
            Err(i) => items.insert(i, (key, value)),
        },
        Body::Inner(children) => {
            let i = child_index(children, &key);
            if key < children[i].0 {
                children[i].0 = key;
            }
            let level = node.level - 1;
            let child = load_child(io, &mut children[i].1, level)?;
            if let Some((k, right)) = insert_rec(io, child, key, value, cap, freed)? {
                children.insert(i + 1, (k, Child::Mem(right)));
            }
        }
    }
    Ok(if node.bytes() > cap {
        Some(split(node))
    } else {
        None
    })
}

/// Splits an overflowing node in two halves of about equal encoded size.
fn split(node: &mut Node) -> (Key, Box<Node>) {
    let body = match &mut node.body {
        Body::Leaf(items) => {
            let total: usize = items
                .iter()
                .map(|(_, v)| LEAF_ENTRY_OVERHEAD + v.len())
                .sum();
            let mut acc = 0;
            let mut mid = items.len() - 1;
            for (i, (_, v)) in items.iter().enumerate() {
                let sz = LEAF_ENTRY_OVERHEAD + v.len();
                if acc + sz / 2 >= total / 2 {
                    mid = i;
                    break;
                }
                acc += sz;
            }
            let mid = mid.clamp(1, items.len() - 1);
            Body::Leaf(items.split_off(mid))
        }
        Body::Inner(children) => {
            let mid = children.len() / 2;
            Body::Inner(children.split_off(mid))
        }
    };
    let right = Box::new(Node {
        level: node.level,
        disk: None,
        body,
    });
    (
        right.first_key().expect("split halves are non-empty"),
        right,
    )
}

fn remove_rec(
    io: &TreeIo,
    node: &mut Node,
    key: &Key,
    cap: usize,
    freed: &mut Vec<BlockNo>,
) -> Result<Option<Vec<u8>>> {
    let level = node.level;
    let old = match &mut node.body {
        Body::Leaf(items) => match items.binary_search_by(|e| e.0.cmp(key)) {
            Ok(i) => Some(items.remove(i).1),
            Err(_) => return Ok(None),
        },
        Body::Inner(children) => {
            let i = child_index(children, key);
            let child = load_child(io, &mut children[i].1, level - 1)?;
            let Some(old) = remove_rec(io, child, key, cap, freed)? else {
                return Ok(None);
            };
            rebalance(io, children, i, level - 1, cap, freed)?;
            Some(old)
        }
    };
    cow(node, freed);
    Ok(old)
}

/// After a removal below child `i`: drop it if empty, or merge it with a neighbour when both
/// fit in one node.
fn rebalance(
    io: &TreeIo,
    children: &mut Vec<(Key, Child)>,
    i: usize,
    level: u8,
    cap: usize,
    freed: &mut Vec<BlockNo>,
) -> Result<()> {
    let Child::Mem(child) = &children[i].1 else {
        return Ok(());
    };
    if child.len() == 0 {
        let (_, c) = children.remove(i);
        if let Child::Mem(n) = c {
            if let Some(p) = n.disk {
                free_node(&p, freed);
            }
        }
        if i == 0 {
            if let Some(first) = children.first_mut() {
                first.0 = Key::MIN;
            }
        }
        return Ok(());
    }
    if child.bytes() > cap / 4 || children.len() < 2 {
        return Ok(());
    }
    let (l, r) = if i + 1 < children.len() {
        (i, i + 1)
    } else {
        (i - 1, i)
    };
    load_child(io, &mut children[l].1, level)?;
    load_child(io, &mut children[r].1, level)?;
    let sep = children[r].0;
    let (lb, rb) = match (&children[l].1, &children[r].1) {
        (Child::Mem(a), Child::Mem(b)) => (a.bytes(), b.bytes()),
        _ => unreachable!("both loaded"),
    };
    if lb + rb - NODE_HEADER_SIZE > cap {
        return Ok(());
    }
    let (_, rc) = children.remove(r);
    let Child::Mem(mut right) = rc else {
        unreachable!("loaded")
    };
    cow(&mut right, freed);
    let Child::Mem(left) = &mut children[l].1 else {
        unreachable!("loaded")
    };
    cow(left, freed);
    match (&mut left.body, right.body) {
        (Body::Leaf(a), Body::Leaf(b)) => a.extend(b),
        (Body::Inner(a), Body::Inner(mut b)) => {
            if let Some(first) = b.first_mut() {
                first.0 = sep;
            }
            a.extend(b);
        }
        _ => {
            return Err(Error::Corrupt(
                "siblings at one level differ in kind".into(),
            ))
        }
    }
    Ok(())
}

fn write_rec(
    io: &TreeIo,
    node: &mut Node,
    alloc: &mut Allocator,
    gen: u64,
    out: &mut Vec<(BlockNo, Vec<u8>)>,
) -> Result<BlockPtr> {
    if let Some(p) = node.disk {
        return Ok(p);
    }
    let mut ptrs = Vec::new();
    if let Body::Inner(children) = &mut node.body {
        for (_, c) in children.iter_mut() {
            ptrs.push(match c {
                Child::Disk(p) => *p,
                Child::Mem(n) => write_rec(io, n, alloc, gen, out)?,
            });
        }
    }
    let id = &io.id;
    let (addr, _) = alloc.alloc(1).ok_or(Error::Errno(libc::ENOSPC))?;
    let addr = BlockNo(addr);
    let copy_addr = if io.dup {
        Some(BlockNo(
            alloc.alloc_far(addr.0).ok_or(Error::Errno(libc::ENOSPC))?,
        ))
    } else {
        None
    };
    let (bytes, crc) = match &node.body {
        Body::Leaf(items) => encode_leaf(id, addr, gen, items),
        Body::Inner(children) => encode_inner(
            id,
            addr,
            gen,
            node.level,
            children.iter().map(|e| e.0).zip(ptrs),
        ),
    };
    let ptr = BlockPtr {
        addr,
        copy_addr,
        birth_gen: gen,
        crc,
    };
    node.disk = Some(ptr);
    if let Some(copy) = copy_addr {
        out.push((copy, bytes.clone()));
    }
    out.push((addr, bytes));
    Ok(ptr)
}

fn walk_rec(
    io: &TreeIo,
    node: &mut Node,
    f: &mut dyn FnMut(Visit) -> Result<()>,
    errors: &mut Option<Vec<Error>>,
) -> Result<()> {
    if let Some(ptr) = node.disk {
        f(Visit::Node {
            ptr,
            level: node.level,
        })?;
    }
    let level = node.level;
    match &mut node.body {
        Body::Leaf(items) => {
            for (k, v) in items.iter() {
                f(Visit::Item { key: k, value: v })?;
            }
        }
        Body::Inner(children) => {
            for (_, c) in children.iter_mut() {
                match (load_child(io, c, level - 1), errors.as_mut()) {
                    (Ok(child), _) => walk_rec(io, child, f, errors)?,
                    (Err(e @ (Error::Checksum { .. } | Error::Corrupt(_))), Some(errs)) => {
                        errs.push(e)
                    }
                    (Err(e), _) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
