//! Tree nodes: one block each, self-describing (as XFS v5 and btrfs metadata), so a block read
//! from the wrong place, from another filesystem or from an older commit is recognised.
//!
//! ```text
//! Node header, 64 bytes
//!  0  magic       u32   NODE_MAGIC ("SFND")
//!  4  crc         u32   crc32c of the whole block with this field zeroed (equals the parent
//!                       pointer's crc)
//!  8  uuid        [16]  filesystem UUID
//! 24  blocknr     u64   the block this node was written to
//! 32  generation  u64   commit that wrote it (equals the parent pointer's birth_gen)
//! 40  owner       u64   tree id (TREE_FS)
//! 48  level       u8    0 = leaf
//! 49  reserved    u8    zero
//! 50  nitems      u16   entries that follow
//! 52  used        u32   bytes used, header included; the rest of the block is zero
//! 56  reserved    [8]   zero
//!
//! Leaf entry:   key (17) | value length u16 | value
//! Inner entry:  key (17) | BlockPtr (32)     -- the key is the smallest key of the child
//!
//! Key, 17 bytes: object u64 | kind u8 | offset u64; ordered by (object, kind, offset).
//! ```

use super::codec::{Dec, Enc};
use super::ptr::{BlockNo, BlockPtr, BLOCK_PTR_SIZE};
use super::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use crate::error::{Error, Result};

pub const NODE_MAGIC: u32 = u32::from_le_bytes(*b"SFND");

/// Field offsets inside a node header, as in the byte map above; each follows the one before.
pub const NODE_MAGIC_OFF: usize = 0;
pub const NODE_CRC_OFF: usize = NODE_MAGIC_OFF + 4;
pub const NODE_UUID_OFF: usize = NODE_CRC_OFF + 4;
pub const NODE_BLOCKNR_OFF: usize = NODE_UUID_OFF + 16;
pub const NODE_GENERATION_OFF: usize = NODE_BLOCKNR_OFF + 8;
pub const NODE_OWNER_OFF: usize = NODE_GENERATION_OFF + 8;
pub const NODE_LEVEL_OFF: usize = NODE_OWNER_OFF + 8;
/// The zero byte between the level and the item count.
pub const NODE_RESERVED_BYTE_OFF: usize = NODE_LEVEL_OFF + 1;
pub const NODE_NITEMS_OFF: usize = NODE_RESERVED_BYTE_OFF + 1;
pub const NODE_USED_OFF: usize = NODE_NITEMS_OFF + 2;
/// The zero bytes that end the header.
pub const NODE_RESERVED_OFF: usize = NODE_USED_OFF + 4;
const NODE_RESERVED_LEN: usize = 8;
pub const NODE_HEADER_SIZE: usize = 64;

/// Field offsets inside a key; each follows the one before.
pub const KEY_OBJECT_OFF: usize = 0;
pub const KEY_KIND_OFF: usize = KEY_OBJECT_OFF + 8;
pub const KEY_OFFSET_OFF: usize = KEY_KIND_OFF + 1;
pub const KEY_SIZE: usize = 17;

/// Offsets inside a leaf entry: the key, then the value's length, then the value.
pub const LEAF_VALUE_LEN_OFF: usize = KEY_SIZE;
pub const LEAF_VALUE_OFF: usize = LEAF_VALUE_LEN_OFF + 2;
pub const LEAF_ENTRY_OVERHEAD: usize = KEY_SIZE + 2;
/// Offsets inside an inner entry: the key (the smallest of the child), then the pointer.
pub const INNER_PTR_OFF: usize = KEY_SIZE;
pub const INNER_ENTRY_SIZE: usize = KEY_SIZE + BLOCK_PTR_SIZE;

const _: () = assert!(NODE_RESERVED_OFF + NODE_RESERVED_LEN == NODE_HEADER_SIZE);
const _: () = assert!(KEY_OFFSET_OFF + 8 == KEY_SIZE);
const _: () = assert!(LEAF_VALUE_OFF == LEAF_ENTRY_OVERHEAD);
const _: () = assert!(INNER_PTR_OFF + BLOCK_PTR_SIZE == INNER_ENTRY_SIZE);
// The smallest node can still split in two: it holds two of the largest leaf entries, or two
// inner entries.
const _: () = assert!(
    2 * (LEAF_ENTRY_OVERHEAD + max_item_value(MIN_BLOCK_SIZE)) <= node_capacity(MIN_BLOCK_SIZE)
);
const _: () = assert!(2 * INNER_ENTRY_SIZE <= node_capacity(MIN_BLOCK_SIZE));
// The header's u16 item count and a leaf entry's u16 value length hold whatever the largest
// node can carry (encode_leaf and node_header narrow them with `as u16`).
const _: () = assert!(node_capacity(MAX_BLOCK_SIZE) / LEAF_ENTRY_OVERHEAD <= u16::MAX as usize);
const _: () = assert!(max_item_value(MAX_BLOCK_SIZE) <= u16::MAX as usize);

/// The only tree in format v1: all filesystem metadata.
pub const TREE_FS: u64 = 1;

/// A tree key. Items of one object sort together, by kind, then offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Key {
    pub object: u64,
    pub kind: u8,
    pub offset: u64,
}

impl Key {
    pub const MIN: Key = Key {
        object: 0,
        kind: 0,
        offset: 0,
    };
    pub const MAX: Key = Key {
        object: u64::MAX,
        kind: u8::MAX,
        offset: u64::MAX,
    };

    pub fn new(object: u64, kind: u8, offset: u64) -> Self {
        Key {
            object,
            kind,
            offset,
        }
    }
    pub fn encode(&self, e: &mut Enc) {
        e.u64(self.object).u8(self.kind).u64(self.offset);
    }
    pub fn decode(d: &mut Dec) -> Result<Key> {
        Ok(Key {
            object: d.u64()?,
            kind: d.u8()?,
            offset: d.u64()?,
        })
    }
}

/// What a decoded node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeBody {
    Leaf(Vec<(Key, Vec<u8>)>),
    Inner(Vec<(Key, BlockPtr)>),
}

/// Identity every node header must match when read back.
#[derive(Clone, Copy, Debug)]
pub struct NodeIdentity {
    pub uuid: [u8; 16],
    pub block_size: u32,
    pub first_block: u64,
    pub total_blocks: u64,
}

/// Largest value a leaf item may carry: half a node, so that any node that overflows by one
/// item can always be split into two that fit.
pub const fn max_item_value(block_size: u32) -> usize {
    (block_size as usize - NODE_HEADER_SIZE) / 2 - LEAF_ENTRY_OVERHEAD
}

/// Bytes available for entries in one node.
pub const fn node_capacity(block_size: u32) -> usize {
    block_size as usize - NODE_HEADER_SIZE
}

/// Encodes a leaf into a full block; returns the bytes and their crc32c.
pub fn encode_leaf(
    id: &NodeIdentity,
    blocknr: BlockNo,
    generation: u64,
    items: &[(Key, Vec<u8>)],
) -> (Vec<u8>, u32) {
    let mut e = node_header(id, blocknr, generation, 0, items.len());
    for (k, v) in items {
        k.encode(&mut e);
        e.u16(v.len() as u16).bytes(v);
    }
    finish_node(id, e)
}

/// Encodes an inner node into a full block; returns the bytes and their crc32c.
pub fn encode_inner(
    id: &NodeIdentity,
    blocknr: BlockNo,
    generation: u64,
    level: u8,
    children: impl ExactSizeIterator<Item = (Key, BlockPtr)>,
) -> (Vec<u8>, u32) {
    let mut e = node_header(id, blocknr, generation, level, children.len());
    for (k, p) in children {
        k.encode(&mut e);
        p.encode(&mut e);
    }
    finish_node(id, e)
}

/// Encodes a decoded body again (tests and tools).
pub fn encode_node(
    id: &NodeIdentity,
    blocknr: BlockNo,
    generation: u64,
    level: u8,
    body: &NodeBody,
) -> (Vec<u8>, u32) {
    match body {
        NodeBody::Leaf(items) => encode_leaf(id, blocknr, generation, items),
        NodeBody::Inner(c) => encode_inner(id, blocknr, generation, level, c.iter().copied()),
    }
}

fn node_header(
    id: &NodeIdentity,
    blocknr: BlockNo,
    generation: u64,
    level: u8,
    nitems: usize,
) -> Enc {
    let mut e = Enc::with_capacity(id.block_size as usize);
    e.u32(NODE_MAGIC)
        .u32(0)
        .bytes(&id.uuid)
        .u64(blocknr.0)
        .u64(generation)
        .u64(TREE_FS);
    e.u8(level)
        .u8(0)
        .u16(nitems as u16)
        .u32(0)
        .zeros(NODE_RESERVED_LEN);
    debug_assert_eq!(e.len(), NODE_HEADER_SIZE);
    e
}

fn finish_node(id: &NodeIdentity, mut e: Enc) -> (Vec<u8>, u32) {
    let bs = id.block_size as usize;
    let used = e.len();
    assert!(
        used <= bs,
        "node overflow: {used} bytes in a {bs}-byte block"
    );
    e.buf[NODE_USED_OFF..NODE_USED_OFF + 4].copy_from_slice(&(used as u32).to_le_bytes());
    e.zeros(bs - used);
    let crc = crc32c::crc32c(&e.buf);
    e.buf[NODE_CRC_OFF..NODE_CRC_OFF + 4].copy_from_slice(&crc.to_le_bytes());
    (e.buf, crc)
}

/// Decodes and verifies a node read from `ptr.addr` (or its copy at `from`), expecting it at
/// tree level `level`. Checks, in order: the checksum the parent holds, magic, uuid, own block
/// number, generation, level, counts, key order, pointer ranges.
pub fn decode_node(id: &NodeIdentity, bytes: &[u8], ptr: &BlockPtr, level: u8) -> Result<NodeBody> {
    let bs = id.block_size as usize;
    check_block_size(bytes, bs)?;
    let crc = check_parent_crc(bytes, ptr)?;
    let mut d = Dec::new(bytes, "tree node");
    check_magic_and_crc(&mut d, ptr, crc)?;
    check_identity(&mut d, id, ptr)?;
    check_level(&mut d, ptr, level)?;
    let counts = decode_counts(&mut d, ptr, bs)?;
    // The entries are read from the used bytes only: reading past them is a truncation.
    let mut d = Dec::new(&bytes[..counts.used], "tree node");
    d.bytes(NODE_HEADER_SIZE)?;
    let body = if level == 0 {
        NodeBody::Leaf(decode_leaf_entries(&mut d, counts.nitems, bs)?)
    } else {
        NodeBody::Inner(decode_inner_entries(&mut d, id, ptr, counts.nitems)?)
    };
    check_no_stray_bytes(&d, ptr)?;
    Ok(body)
}

/// A node is exactly one block.
fn check_block_size(bytes: &[u8], bs: usize) -> Result<()> {
    if bytes.len() != bs {
        return Err(Error::Corrupt(format!(
            "node: {} bytes, block size {bs}",
            bytes.len()
        )));
    }
    Ok(())
}

/// The crc32c of the block with its crc field zeroed must be the one the parent holds (checked
/// first, so any damage is reported as a checksum error); returns it.
fn check_parent_crc(bytes: &[u8], ptr: &BlockPtr) -> Result<u32> {
    let mut copy = bytes.to_vec();
    copy[NODE_CRC_OFF..NODE_CRC_OFF + 4].fill(0);
    let crc = crc32c::crc32c(&copy);
    if crc != ptr.crc {
        return Err(Error::Checksum {
            block: ptr.addr.0,
            what: format!(
                "tree node: crc {crc:#010x}, parent expects {:#010x}",
                ptr.crc
            ),
        });
    }
    Ok(crc)
}

/// Reads the magic and the stored crc: a node, and its header agrees with the computed `crc`.
fn check_magic_and_crc(d: &mut Dec, ptr: &BlockPtr, crc: u32) -> Result<()> {
    let magic = d.u32()?;
    let stored_crc = d.u32()?;
    if magic != NODE_MAGIC {
        return d.corrupt(format_args!("block {} bad magic {magic:#x}", ptr.addr));
    }
    if stored_crc != crc {
        return d.corrupt(format_args!(
            "block {} header crc {stored_crc:#x} != {crc:#x}",
            ptr.addr
        ));
    }
    Ok(())
}

/// Reads the uuid, block number, generation and owner: the node belongs to this filesystem,
/// was written where it was read from (or to its copy), by the commit the parent names, for
/// the one tree.
fn check_identity(d: &mut Dec, id: &NodeIdentity, ptr: &BlockPtr) -> Result<()> {
    if d.array::<16>()? != id.uuid {
        return d.corrupt(format_args!(
            "block {} belongs to another filesystem",
            ptr.addr
        ));
    }
    let blocknr = d.u64()?;
    if blocknr != ptr.addr.0 && Some(BlockNo(blocknr)) != ptr.copy_addr {
        return d.corrupt(format_args!(
            "block {} claims to be block {blocknr} (misdirected write)",
            ptr.addr
        ));
    }
    let generation = d.u64()?;
    if generation != ptr.birth_gen {
        return d.corrupt(format_args!(
            "block {} generation {generation}, parent expects {} (stale or lost write)",
            ptr.addr, ptr.birth_gen
        ));
    }
    let owner = d.u64()?;
    if owner != TREE_FS {
        return d.corrupt(format_args!("block {} owner {owner}", ptr.addr));
    }
    Ok(())
}

/// Reads the level: the node is at the level its place in the tree gives it.
fn check_level(d: &mut Dec, ptr: &BlockPtr, level: u8) -> Result<()> {
    let got_level = d.u8()?;
    if got_level != level {
        return d.corrupt(format_args!(
            "block {} level {got_level}, expected {level}",
            ptr.addr
        ));
    }
    Ok(())
}

/// How many entries a node holds and how many of its bytes are used.
struct NodeCounts {
    nitems: usize,
    used: usize,
}

/// Reads the rest of the header (the reserved bytes are not checked); the used bytes must
/// cover the header and fit the block.
fn decode_counts(d: &mut Dec, ptr: &BlockPtr, bs: usize) -> Result<NodeCounts> {
    d.u8()?;
    let nitems = d.u16()? as usize;
    let used = d.u32()? as usize;
    d.bytes(NODE_RESERVED_LEN)?;
    if !(NODE_HEADER_SIZE..=bs).contains(&used) {
        return d.corrupt(format_args!("block {} used {used}", ptr.addr));
    }
    Ok(NodeCounts { nitems, used })
}

/// Decodes a leaf's `nitems` entries, in strictly increasing key order. The preallocation is
/// bounded by what a block can hold, whatever `nitems` claims.
fn decode_leaf_entries(d: &mut Dec, nitems: usize, bs: usize) -> Result<Vec<(Key, Vec<u8>)>> {
    let mut items = Vec::with_capacity(nitems.min(bs / LEAF_ENTRY_OVERHEAD));
    for _ in 0..nitems {
        let k = Key::decode(d)?;
        let n = d.u16()? as usize;
        items.push((k, d.bytes(n)?.to_vec()));
    }
    check_sorted(d, items.iter().map(|(k, _)| k))?;
    Ok(items)
}

/// Decodes an inner node's `nitems` entries (at least one), in strictly increasing key order,
/// each pointer inside the device. The preallocation is bounded as for a leaf.
fn decode_inner_entries(
    d: &mut Dec,
    id: &NodeIdentity,
    ptr: &BlockPtr,
    nitems: usize,
) -> Result<Vec<(Key, BlockPtr)>> {
    if nitems == 0 {
        return d.corrupt(format_args!(
            "block {}: inner node without children",
            ptr.addr
        ));
    }
    let bs = id.block_size as usize;
    let mut children = Vec::with_capacity(nitems.min(bs / INNER_ENTRY_SIZE));
    for _ in 0..nitems {
        let k = Key::decode(d)?;
        children.push((k, BlockPtr::decode(d, id.first_block, id.total_blocks)?));
    }
    check_sorted(d, children.iter().map(|(k, _)| k))?;
    Ok(children)
}

/// The entries end exactly where `used` says.
fn check_no_stray_bytes(d: &Dec, ptr: &BlockPtr) -> Result<()> {
    if d.remaining() != 0 {
        return d.corrupt(format_args!(
            "block {}: {} stray bytes",
            ptr.addr,
            d.remaining()
        ));
    }
    Ok(())
}

fn check_sorted<'a>(d: &Dec, keys: impl Iterator<Item = &'a Key>) -> Result<()> {
    let mut prev: Option<&Key> = None;
    for k in keys {
        if prev.is_some_and(|p| p >= k) {
            return d.corrupt("keys out of order");
        }
        prev = Some(k);
    }
    Ok(())
}
