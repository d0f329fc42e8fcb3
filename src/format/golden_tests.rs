//! Golden tests of the on-disk format. Each on-disk struct is built from distinct, non-zero
//! field values, encoded and compared with bytes written out here by hand, one row per field at
//! the offset its module's byte map gives; then those bytes are decoded and compared with the
//! value, field by field. A layout change that a round trip cannot see (two fields swapped in
//! both the encoder and the decoder, a field moved or resized, a code renumbered) fails here.
//!
//! The bytes were written from the byte maps, never produced by the encoders. The checksums
//! they embed (the superblock's own crc, the node headers' crcs) were computed once with an
//! independent crc32c and pasted in as literals.
//!
//! Every test also reads each field back at its named offset (the `*_OFF` constants), which
//! checks that the sequential encoders put each field where the constants say.

use super::*;
use super::{FileKind, Timespec};

/// The `N` bytes at `off`.
fn at<const N: usize>(bytes: &[u8], off: usize) -> [u8; N] {
    bytes[off..off + N].try_into().unwrap()
}

/// `used` followed by zeros up to `size` bytes (a superblock slot or a node block).
fn zero_padded(used: &[u8], size: usize) -> Vec<u8> {
    let mut b = used.to_vec();
    b.resize(size, 0);
    b
}

// ---- BlockPtr (ptr.rs) and Key (node.rs) ----

#[rustfmt::skip]
const PTR_GOLDEN: &[u8] = &[
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //   0 addr
    0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,  //   8 copy_addr
    0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,  //  16 birth_gen
    0x44, 0x43, 0x42, 0x41,                          //  24 crc
    0x00, 0x00, 0x00, 0x00,                          //  28 reserved
];

#[rustfmt::skip]
const PTR_NO_COPY_GOLDEN: &[u8] = &[
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //   0 addr
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //   8 copy_addr: none
    0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,  //  16 birth_gen
    0x44, 0x43, 0x42, 0x41,                          //  24 crc
    0x00, 0x00, 0x00, 0x00,                          //  28 reserved
];

fn golden_ptr() -> BlockPtr {
    BlockPtr {
        addr: BlockNo(0x1112_1314_1516_1718),
        copy_addr: Some(BlockNo(0x2122_2324_2526_2728)),
        birth_gen: 0x3132_3334_3536_3738,
        crc: 0x4142_4344,
    }
}

#[test]
fn block_ptr_golden() {
    for (p, golden) in [
        (golden_ptr(), PTR_GOLDEN),
        (
            BlockPtr {
                copy_addr: None,
                ..golden_ptr()
            },
            PTR_NO_COPY_GOLDEN,
        ),
    ] {
        let mut e = Enc::default();
        p.encode(&mut e);
        assert_eq!(e.buf, golden);
        let mut d = Dec::new(golden, "golden block pointer");
        assert_eq!(BlockPtr::decode(&mut d, 0x10, u64::MAX).unwrap(), p);
        assert_eq!(d.remaining(), 0);

        assert_eq!(golden.len(), BLOCK_PTR_SIZE);
        assert_eq!(at(golden, PTR_ADDR_OFF), p.addr.0.to_le_bytes());
        let copy = p.copy_addr.map_or(0, |b| b.0);
        assert_eq!(at(golden, PTR_COPY_ADDR_OFF), copy.to_le_bytes());
        assert_eq!(at(golden, PTR_BIRTH_GEN_OFF), p.birth_gen.to_le_bytes());
        assert_eq!(at(golden, PTR_CRC_OFF), p.crc.to_le_bytes());
        assert_eq!(at(golden, PTR_RESERVED_OFF), [0; 4]);
    }
}

#[rustfmt::skip]
const KEY_GOLDEN: &[u8] = &[
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //   0 object
    0x21,                                            //   8 kind
    0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,  //   9 offset
];

/// An ORPHAN item is its key alone (its value is empty).
#[rustfmt::skip]
const ORPHAN_KEY_GOLDEN: &[u8] = &[
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //   0 object: OBJECT_FS
    0x07,                                            //   8 kind: KIND_ORPHAN
    0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41,  //   9 offset: the inode
];

#[test]
fn key_golden() {
    for (k, golden) in [
        (
            Key::new(0x1112_1314_1516_1718, 0x21, 0x3132_3334_3536_3738),
            KEY_GOLDEN,
        ),
        (
            Key::new(OBJECT_FS, KIND_ORPHAN, 0x4142_4344_4546_4748),
            ORPHAN_KEY_GOLDEN,
        ),
    ] {
        let mut e = Enc::default();
        k.encode(&mut e);
        assert_eq!(e.buf, golden);
        let mut d = Dec::new(golden, "golden key");
        assert_eq!(Key::decode(&mut d).unwrap(), k);
        assert_eq!(d.remaining(), 0);

        assert_eq!(golden.len(), KEY_SIZE);
        assert_eq!(at(golden, KEY_OBJECT_OFF), k.object.to_le_bytes());
        assert_eq!(at(golden, KEY_KIND_OFF), [k.kind]);
        assert_eq!(at(golden, KEY_OFFSET_OFF), k.offset.to_le_bytes());
    }
}

// ---- Superblock (superblock.rs) ----

/// The slot's first `SB_USED` (232) bytes; the rest of the 4 KiB is zero.
#[rustfmt::skip]
const SB_GOLDEN_USED: &[u8] = &[
    0x53, 0x54, 0x41, 0x42, 0x4c, 0x45, 0x46, 0x53,  //   0 magic "STABLEFS"
    0x75, 0x60, 0x8e, 0xf0,                          //   8 crc
    0x01, 0x00, 0x00, 0x00,                          //  12 version
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //  16 compat
    0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,  //  24 ro_compat
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //  32 incompat: DATA_COPIES
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,  //  40 uuid
    0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,  //  48 uuid (cont.)
    0x00, 0x20, 0x00, 0x00,                          //  56 block_size: 8192
    0x01, 0x00, 0x00, 0x00,                          //  60 slot
    0xe8, 0xe7, 0xe6, 0xe5, 0xe4, 0xe3, 0xe2, 0xe1,  //  64 total_blocks
    0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,  //  72 generation
    0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41,  //  80 root.addr
    0x58, 0x57, 0x56, 0x55, 0x54, 0x53, 0x52, 0x51,  //  88 root.copy_addr
    0x68, 0x67, 0x66, 0x65, 0x64, 0x63, 0x62, 0x61,  //  96 root.birth_gen
    0xc4, 0xc3, 0xc2, 0xc1,                          // 104 root.crc
    0x00, 0x00, 0x00, 0x00,                          // 108 root.reserved
    0x03,                                            // 112 root_level
    0x01,                                            // 113 flags: MKFS_IN_PROGRESS
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00,              // 114 reserved
    0x78, 0x77, 0x76, 0x75, 0x74, 0x73, 0x72, 0x71,  // 120 next_ino
    0x88, 0x87, 0x86, 0x85, 0x84, 0x83, 0x82, 0x81,  // 128 used_blocks
    0x98, 0x97, 0x96, 0x95, 0x94, 0x93, 0x92, 0x91,  // 136 inode_count
    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // 144 created
    0x12, 0x11, 0x10, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b,  // 152 committed
    0x67, 0x6f, 0x6c, 0x64, 0x65, 0x6e, 0x2d, 0x6c,  // 160 label "golden-label"
    0x61, 0x62, 0x65, 0x6c, 0x00, 0x00, 0x00, 0x00,  // 168 label "golden-label" (cont.)
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // 176 label "golden-label" (cont.)
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // 184 label "golden-label" (cont.)
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // 192 label "golden-label" (cont.)
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // 200 label "golden-label" (cont.)
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // 208 label "golden-label" (cont.)
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // 216 label "golden-label" (cont.)
    0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // 224 first_block: 256 KiB / 8 KiB
];
const SB_GOLDEN_CRC: u32 = 0xf08e_6075;

fn golden_superblock() -> Superblock {
    let mut label = [0; LABEL_MAX];
    label[..12].copy_from_slice(b"golden-label");
    Superblock {
        compat: 0x1112_1314_1516_1718,
        ro_compat: 0x2122_2324_2526_2728,
        incompat: FEATURE_INCOMPAT_DATA_COPIES,
        uuid: [
            0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad,
            0xae, 0xaf,
        ],
        block_size: 8192,
        slot: 1,
        total_blocks: 0xe1e2_e3e4_e5e6_e7e8,
        generation: 0x3132_3334_3536_3738,
        root: BlockPtr {
            addr: BlockNo(0x4142_4344_4546_4748),
            copy_addr: Some(BlockNo(0x5152_5354_5556_5758)),
            birth_gen: 0x6162_6364_6566_6768,
            crc: 0xc1c2_c3c4,
        },
        root_level: 3,
        flags: SB_FLAG_MKFS_IN_PROGRESS,
        next_ino: 0x7172_7374_7576_7778,
        used_blocks: 0x8182_8384_8586_8788,
        inode_count: 0x9192_9394_9596_9798,
        created: 0x0102_0304_0506_0708,
        committed: 0x0b0c_0d0e_0f10_1112,
        label,
        first_block: 32,
    }
}

#[test]
fn superblock_golden() {
    let sb = golden_superblock();
    let golden = zero_padded(SB_GOLDEN_USED, SB_SIZE);
    assert_eq!(sb.encode(), golden);
    assert_eq!(Superblock::decode(&golden).unwrap(), sb);

    assert_eq!(at(&golden, SB_MAGIC_OFF), SB_MAGIC);
    assert_eq!(at(&golden, SB_CRC_OFF), SB_GOLDEN_CRC.to_le_bytes());
    assert_eq!(at(&golden, SB_VERSION_OFF), FORMAT_VERSION.to_le_bytes());
    assert_eq!(at(&golden, SB_COMPAT_OFF), sb.compat.to_le_bytes());
    assert_eq!(at(&golden, SB_RO_COMPAT_OFF), sb.ro_compat.to_le_bytes());
    assert_eq!(at(&golden, SB_INCOMPAT_OFF), sb.incompat.to_le_bytes());
    assert_eq!(at(&golden, SB_UUID_OFF), sb.uuid);
    assert_eq!(at(&golden, SB_BLOCK_SIZE_OFF), sb.block_size.to_le_bytes());
    assert_eq!(at(&golden, SB_SLOT_OFF), sb.slot.to_le_bytes());
    assert_eq!(
        at(&golden, SB_TOTAL_BLOCKS_OFF),
        sb.total_blocks.to_le_bytes()
    );
    assert_eq!(at(&golden, SB_GENERATION_OFF), sb.generation.to_le_bytes());
    let mut root = Enc::default();
    sb.root.encode(&mut root);
    assert_eq!(at::<BLOCK_PTR_SIZE>(&golden, SB_ROOT_OFF), root.buf[..]);
    assert_eq!(at(&golden, SB_ROOT_LEVEL_OFF), [sb.root_level]);
    assert_eq!(at(&golden, SB_FLAGS_OFF), [sb.flags]);
    assert_eq!(at(&golden, SB_RESERVED_OFF), [0; 6]);
    assert_eq!(at(&golden, SB_NEXT_INO_OFF), sb.next_ino.to_le_bytes());
    assert_eq!(
        at(&golden, SB_USED_BLOCKS_OFF),
        sb.used_blocks.to_le_bytes()
    );
    assert_eq!(
        at(&golden, SB_INODE_COUNT_OFF),
        sb.inode_count.to_le_bytes()
    );
    assert_eq!(at(&golden, SB_CREATED_OFF), sb.created.to_le_bytes());
    assert_eq!(at(&golden, SB_COMMITTED_OFF), sb.committed.to_le_bytes());
    assert_eq!(at(&golden, SB_LABEL_OFF), sb.label);
    assert_eq!(
        at(&golden, SB_FIRST_BLOCK_OFF),
        sb.first_block.to_le_bytes()
    );
    assert_eq!(SB_FIRST_BLOCK_OFF + 8, SB_GOLDEN_USED.len());
}

// ---- Tree nodes (node.rs) ----

fn golden_identity() -> NodeIdentity {
    NodeIdentity {
        uuid: [
            0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd,
            0xbe, 0xbf,
        ],
        block_size: 4096,
        first_block: 0x10,
        total_blocks: 0xf1f2_f3f4_f5f6_f7f8,
    }
}
const GOLDEN_NODE_BLOCKNR: BlockNo = BlockNo(0x4142_4344_4546_4748);
const GOLDEN_NODE_GENERATION: u64 = 0x5152_5354_5556_5758;

/// The two keys of the golden nodes, in order.
fn golden_node_keys() -> [Key; 2] {
    [
        Key::new(0x1112_1314_1516_1718, 0x21, 0x3132_3334_3536_3738),
        Key::new(0x1112_1314_1516_1718, 0x22, 0x6162_6364_6566_6768),
    ]
}

/// Checks the header fields of a golden node at their offsets.
fn check_node_header(golden: &[u8], crc: u32, level: u8, nitems: u16, used: u32) {
    let id = golden_identity();
    assert_eq!(at(golden, NODE_MAGIC_OFF), *b"SFND");
    assert_eq!(at(golden, NODE_CRC_OFF), crc.to_le_bytes());
    assert_eq!(at(golden, NODE_UUID_OFF), id.uuid);
    assert_eq!(
        at(golden, NODE_BLOCKNR_OFF),
        GOLDEN_NODE_BLOCKNR.0.to_le_bytes()
    );
    assert_eq!(
        at(golden, NODE_GENERATION_OFF),
        GOLDEN_NODE_GENERATION.to_le_bytes()
    );
    assert_eq!(at(golden, NODE_OWNER_OFF), TREE_FS.to_le_bytes());
    assert_eq!(at(golden, NODE_LEVEL_OFF), [level]);
    assert_eq!(at(golden, NODE_RESERVED_BYTE_OFF), [0]);
    assert_eq!(at(golden, NODE_NITEMS_OFF), nitems.to_le_bytes());
    assert_eq!(at(golden, NODE_USED_OFF), used.to_le_bytes());
    assert_eq!(at(golden, NODE_RESERVED_OFF), [0; 8]);
    assert!(golden[used as usize..].iter().all(|&b| b == 0));
}

/// A leaf's used bytes: its header, then two entries; the rest of the block is zero.
#[rustfmt::skip]
const LEAF_GOLDEN_USED: &[u8] = &[
    0x53, 0x46, 0x4e, 0x44,                          //   0 magic "SFND"
    0x20, 0xf1, 0x90, 0x80,                          //   4 crc
    0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,  //   8 uuid
    0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,  //  16 uuid (cont.)
    0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41,  //  24 blocknr
    0x58, 0x57, 0x56, 0x55, 0x54, 0x53, 0x52, 0x51,  //  32 generation
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //  40 owner: TREE_FS
    0x00,                                            //  48 level
    0x00,                                            //  49 reserved
    0x02, 0x00,                                      //  50 nitems
    0x6a, 0x00, 0x00, 0x00,                          //  52 used
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //  56 reserved
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //  64 entry 0 key.object
    0x21,                                            //  72 entry 0 key.kind
    0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,  //  73 entry 0 key.offset
    0x03, 0x00,                                      //  81 entry 0 value length
    0xd1, 0xd2, 0xd3,                                //  83 entry 0 value
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //  86 entry 1 key.object
    0x22,                                            //  94 entry 1 key.kind
    0x68, 0x67, 0x66, 0x65, 0x64, 0x63, 0x62, 0x61,  //  95 entry 1 key.offset
    0x01, 0x00,                                      // 103 entry 1 value length
    0xe1,                                            // 105 entry 1 value
];
const LEAF_GOLDEN_CRC: u32 = 0x8090_f120;

#[test]
fn leaf_node_golden() {
    let id = golden_identity();
    let [k0, k1] = golden_node_keys();
    let items = vec![(k0, vec![0xd1, 0xd2, 0xd3]), (k1, vec![0xe1])];
    let golden = zero_padded(LEAF_GOLDEN_USED, 4096);
    let (bytes, crc) = encode_leaf(&id, GOLDEN_NODE_BLOCKNR, GOLDEN_NODE_GENERATION, &items);
    assert_eq!(bytes, golden);
    assert_eq!(crc, LEAF_GOLDEN_CRC);
    let ptr = BlockPtr {
        addr: GOLDEN_NODE_BLOCKNR,
        copy_addr: None,
        birth_gen: GOLDEN_NODE_GENERATION,
        crc: LEAF_GOLDEN_CRC,
    };
    assert_eq!(
        decode_node(&id, &golden, &ptr, 0).unwrap(),
        NodeBody::Leaf(items.clone())
    );

    check_node_header(&golden, LEAF_GOLDEN_CRC, 0, 2, 106);
    let mut entry = NODE_HEADER_SIZE;
    for (k, v) in &items {
        let mut key = Enc::default();
        k.encode(&mut key);
        assert_eq!(at::<KEY_SIZE>(&golden, entry), key.buf[..]);
        let len = v.len() as u16;
        assert_eq!(at(&golden, entry + LEAF_VALUE_LEN_OFF), len.to_le_bytes());
        let value = entry + LEAF_VALUE_OFF;
        assert_eq!(golden[value..value + v.len()], v[..]);
        entry = value + v.len();
    }
    assert_eq!(entry, LEAF_GOLDEN_USED.len());
}

/// An inner node's used bytes (level 2): its header, then two children.
#[rustfmt::skip]
const INNER_GOLDEN_USED: &[u8] = &[
    0x53, 0x46, 0x4e, 0x44,                          //   0 magic "SFND"
    0x37, 0x61, 0x12, 0xa3,                          //   4 crc
    0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,  //   8 uuid
    0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,  //  16 uuid (cont.)
    0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41,  //  24 blocknr
    0x58, 0x57, 0x56, 0x55, 0x54, 0x53, 0x52, 0x51,  //  32 generation
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //  40 owner: TREE_FS
    0x02,                                            //  48 level
    0x00,                                            //  49 reserved
    0x02, 0x00,                                      //  50 nitems
    0xa2, 0x00, 0x00, 0x00,                          //  52 used
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //  56 reserved
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //  64 child 0 key.object
    0x21,                                            //  72 child 0 key.kind
    0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,  //  73 child 0 key.offset
    0x78, 0x77, 0x76, 0x75, 0x74, 0x73, 0x72, 0x71,  //  81 child 0 ptr.addr
    0x88, 0x87, 0x86, 0x85, 0x84, 0x83, 0x82, 0x81,  //  89 child 0 ptr.copy_addr
    0x98, 0x97, 0x96, 0x95, 0x94, 0x93, 0x92, 0x91,  //  97 child 0 ptr.birth_gen
    0xa4, 0xa3, 0xa2, 0xa1,                          // 105 child 0 ptr.crc
    0x00, 0x00, 0x00, 0x00,                          // 109 child 0 ptr.reserved
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  // 113 child 1 key.object
    0x22,                                            // 121 child 1 key.kind
    0x68, 0x67, 0x66, 0x65, 0x64, 0x63, 0x62, 0x61,  // 122 child 1 key.offset
    0xc8, 0xc7, 0xc6, 0xc5, 0xc4, 0xc3, 0xc2, 0xc1,  // 130 child 1 ptr.addr
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // 138 child 1 ptr.copy_addr: none
    0xd8, 0xd7, 0xd6, 0xd5, 0xd4, 0xd3, 0xd2, 0xd1,  // 146 child 1 ptr.birth_gen
    0xe4, 0xe3, 0xe2, 0xe1,                          // 154 child 1 ptr.crc
    0x00, 0x00, 0x00, 0x00,                          // 158 child 1 ptr.reserved
];
const INNER_GOLDEN_CRC: u32 = 0xa312_6137;

#[test]
fn inner_node_golden() {
    let id = golden_identity();
    let [k0, k1] = golden_node_keys();
    let children = vec![
        (
            k0,
            BlockPtr {
                addr: BlockNo(0x7172_7374_7576_7778),
                copy_addr: Some(BlockNo(0x8182_8384_8586_8788)),
                birth_gen: 0x9192_9394_9596_9798,
                crc: 0xa1a2_a3a4,
            },
        ),
        (
            k1,
            BlockPtr {
                addr: BlockNo(0xc1c2_c3c4_c5c6_c7c8),
                copy_addr: None,
                birth_gen: 0xd1d2_d3d4_d5d6_d7d8,
                crc: 0xe1e2_e3e4,
            },
        ),
    ];
    let golden = zero_padded(INNER_GOLDEN_USED, 4096);
    let (bytes, crc) = encode_inner(
        &id,
        GOLDEN_NODE_BLOCKNR,
        GOLDEN_NODE_GENERATION,
        2,
        children.iter().copied(),
    );
    assert_eq!(bytes, golden);
    assert_eq!(crc, INNER_GOLDEN_CRC);
    let ptr = BlockPtr {
        addr: GOLDEN_NODE_BLOCKNR,
        copy_addr: None,
        birth_gen: GOLDEN_NODE_GENERATION,
        crc: INNER_GOLDEN_CRC,
    };
    assert_eq!(
        decode_node(&id, &golden, &ptr, 2).unwrap(),
        NodeBody::Inner(children.clone())
    );

    check_node_header(&golden, INNER_GOLDEN_CRC, 2, 2, 162);
    for (i, (k, p)) in children.iter().enumerate() {
        let entry = NODE_HEADER_SIZE + i * INNER_ENTRY_SIZE;
        let mut d = Dec::new(&golden[entry..entry + INNER_ENTRY_SIZE], "golden child");
        assert_eq!(Key::decode(&mut d).unwrap(), *k);
        assert_eq!(d.pos(), INNER_PTR_OFF);
        assert_eq!(BlockPtr::decode(&mut d, 0x10, u64::MAX).unwrap(), *p);
    }
    assert_eq!(
        NODE_HEADER_SIZE + 2 * INNER_ENTRY_SIZE,
        INNER_GOLDEN_USED.len()
    );
}

// ---- Items (item.rs) ----

#[rustfmt::skip]
const INODE_GOLDEN: &[u8] = &[
    0xa4, 0x81, 0x00, 0x00,                          //   0 mode: S_IFREG | 0o644
    0x14, 0x13, 0x12, 0x11,                          //   4 uid
    0x24, 0x23, 0x22, 0x21,                          //   8 gid
    0x34, 0x33, 0x32, 0x31,                          //  12 nlink
    0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41,  //  16 size
    0x58, 0x57, 0x56, 0x55, 0x54, 0x53, 0x52, 0x51,  //  24 blocks
    0x64, 0x63, 0x62, 0x61,                          //  32 rdev
    0x68, 0x67, 0x66, 0x65,                          //  36 flags
    0x78, 0x77, 0x76, 0x75, 0x74, 0x73, 0x72, 0x71,  //  40 atime.sec
    0x04, 0x03, 0x02, 0x01,                          //  48 atime.nsec
    0x7a, 0x6a, 0x5a, 0x4a, 0x3a, 0x2a, 0x1a, 0x0a,  //  52 mtime.sec
    0x08, 0x07, 0x06, 0x05,                          //  60 mtime.nsec
    0x7b, 0x6b, 0x5b, 0x4b, 0x3b, 0x2b, 0x1b, 0x0b,  //  64 ctime.sec
    0x0c, 0x0b, 0x0a, 0x09,                          //  72 ctime.nsec
    0x84, 0x93, 0xa3, 0xb3, 0xc3, 0xd3, 0xe3, 0xf3,  //  76 crtime.sec
    0x10, 0x0f, 0x0e, 0x0d,                          //  84 crtime.nsec
    0x88, 0x87, 0x86, 0x85, 0x84, 0x83, 0x82, 0x81,  //  88 parent
    0x98, 0x97, 0x96, 0x95, 0x94, 0x93, 0x92, 0x91,  //  96 next_cookie
    0xa8, 0xa7, 0xa6, 0xa5, 0xa4, 0xa3, 0xa2, 0xa1,  // 104 generation
];

#[test]
fn inode_item_golden() {
    let time = |sec, nsec| Timespec { sec, nsec };
    let ino = InodeItem {
        mode: libc::S_IFREG | 0o644,
        uid: 0x1112_1314,
        gid: 0x2122_2324,
        nlink: 0x3132_3334,
        size: 0x4142_4344_4546_4748,
        blocks: 0x5152_5354_5556_5758,
        rdev: 0x6162_6364,
        flags: 0x6566_6768,
        atime: time(0x7172_7374_7576_7778, 0x0102_0304),
        mtime: time(0x0a1a_2a3a_4a5a_6a7a, 0x0506_0708),
        ctime: time(0x0b1b_2b3b_4b5b_6b7b, 0x090a_0b0c),
        // Before 1970: the seconds are signed.
        crtime: time(-0x0c1c_2c3c_4c5c_6c7c, 0x0d0e_0f10),
        parent: 0x8182_8384_8586_8788,
        next_cookie: 0x9192_9394_9596_9798,
        generation: 0xa1a2_a3a4_a5a6_a7a8,
    };
    assert_eq!(ino.encode(), INODE_GOLDEN);
    assert_eq!(InodeItem::decode(INODE_GOLDEN).unwrap(), ino);

    let g = INODE_GOLDEN;
    assert_eq!(g.len(), INODE_ITEM_SIZE);
    assert_eq!(at(g, INODE_MODE_OFF), ino.mode.to_le_bytes());
    assert_eq!(at(g, INODE_UID_OFF), ino.uid.to_le_bytes());
    assert_eq!(at(g, INODE_GID_OFF), ino.gid.to_le_bytes());
    assert_eq!(at(g, INODE_NLINK_OFF), ino.nlink.to_le_bytes());
    assert_eq!(at(g, INODE_SIZE_OFF), ino.size.to_le_bytes());
    assert_eq!(at(g, INODE_BLOCKS_OFF), ino.blocks.to_le_bytes());
    assert_eq!(at(g, INODE_RDEV_OFF), ino.rdev.to_le_bytes());
    assert_eq!(at(g, INODE_FLAGS_OFF), ino.flags.to_le_bytes());
    for (off, t) in [
        (INODE_ATIME_OFF, ino.atime),
        (INODE_MTIME_OFF, ino.mtime),
        (INODE_CTIME_OFF, ino.ctime),
        (INODE_CRTIME_OFF, ino.crtime),
    ] {
        assert_eq!(at(g, off + TIME_SEC_OFF), t.sec.to_le_bytes());
        assert_eq!(at(g, off + TIME_NSEC_OFF), t.nsec.to_le_bytes());
    }
    assert_eq!(at(g, INODE_PARENT_OFF), ino.parent.to_le_bytes());
    assert_eq!(at(g, INODE_NEXT_COOKIE_OFF), ino.next_cookie.to_le_bytes());
    assert_eq!(at(g, INODE_GENERATION_OFF), ino.generation.to_le_bytes());
}

#[rustfmt::skip]
const DIRENT_BUCKET_GOLDEN: &[u8] = &[
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //   0 entry 0 ino
    0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,  //   8 entry 0 cookie
    0x03,                                            //  16 entry 0 kind: symlink
    0x02,                                            //  17 entry 0 name length
    0x61, 0x62,                                      //  18 entry 0 name "ab"
    0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,  //  20 entry 1 ino
    0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41,  //  28 entry 1 cookie
    0x06,                                            //  36 entry 1 kind: character device
    0x03,                                            //  37 entry 1 name length
    0x78, 0x79, 0x7a,                                //  38 entry 1 name "xyz"
];

#[test]
fn dirent_bucket_golden() {
    let links = vec![
        DirLink {
            name: b"ab".to_vec(),
            ino: 0x1112_1314_1516_1718,
            kind: FileKind::Symlink,
            cookie: 0x2122_2324_2526_2728,
        },
        DirLink {
            name: b"xyz".to_vec(),
            ino: 0x3132_3334_3536_3738,
            kind: FileKind::CharDev,
            cookie: 0x4142_4344_4546_4748,
        },
    ];
    assert_eq!(encode_dirent_bucket(&links), DIRENT_BUCKET_GOLDEN);
    assert_eq!(decode_dirent_bucket(DIRENT_BUCKET_GOLDEN).unwrap(), links);

    let mut entry = 0;
    for (l, kind_code) in links.iter().zip([3, 6]) {
        let g = &DIRENT_BUCKET_GOLDEN[entry..];
        assert_eq!(at(g, DIRENT_INO_OFF), l.ino.to_le_bytes());
        assert_eq!(at(g, DIRENT_COOKIE_OFF), l.cookie.to_le_bytes());
        assert_eq!(at(g, DIRENT_KIND_OFF), [kind_code]);
        assert_eq!(at(g, DIRENT_NAME_LEN_OFF), [l.name.len() as u8]);
        assert_eq!(
            g[DIRENT_NAME_OFF..DIRENT_NAME_OFF + l.name.len()],
            l.name[..]
        );
        entry += DIRENT_NAME_OFF + l.name.len();
    }
    assert_eq!(entry, DIRENT_BUCKET_GOLDEN.len());
}

#[rustfmt::skip]
const DIRINDEX_GOLDEN: &[u8] = &[
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //   0 ino
    0x04,                                            //   8 kind: fifo
    0x06,                                            //   9 name length
    0x67, 0x6f, 0x6c, 0x64, 0x65, 0x6e,              //  10 name "golden"
];

#[test]
fn dirindex_golden() {
    let (ino, cookie) = (0x1112_1314_1516_1718, 0x2122_2324_2526_2728);
    let encoded = encode_dirindex(ino, FileKind::Fifo, b"golden");
    assert_eq!(encoded, DIRINDEX_GOLDEN);
    let link = decode_dirindex(DIRINDEX_GOLDEN, cookie).unwrap();
    let want = DirLink {
        name: b"golden".to_vec(),
        ino,
        kind: FileKind::Fifo,
        cookie,
    };
    assert_eq!(link, want);

    let g = DIRINDEX_GOLDEN;
    assert_eq!(at(g, DIRINDEX_INO_OFF), ino.to_le_bytes());
    assert_eq!(at(g, DIRINDEX_KIND_OFF), [4]);
    assert_eq!(at(g, DIRINDEX_NAME_LEN_OFF), [6]);
    assert_eq!(g[DIRINDEX_NAME_OFF..], *b"golden");
}

/// The file kind codes of DIRENT and DIRINDEX entries, each written out.
#[test]
fn file_kind_codes_golden() {
    for (kind, code) in [
        (FileKind::File, 1),
        (FileKind::Dir, 2),
        (FileKind::Symlink, 3),
        (FileKind::Fifo, 4),
        (FileKind::Socket, 5),
        (FileKind::CharDev, 6),
        (FileKind::BlockDev, 7),
    ] {
        let golden = [
            0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, code, 1, b'n',
        ];
        assert_eq!(
            encode_dirindex(0x1112_1314_1516_1718, kind, b"n"),
            golden,
            "{kind:?}"
        );
        let link = decode_dirindex(&golden, 9).unwrap();
        assert_eq!(link.kind, kind, "code {code}");
    }
    for bad in [0, 8, 0xff] {
        let golden = [0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, bad, 1, b'n'];
        assert!(decode_dirindex(&golden, 9).is_err(), "code {bad}");
    }
}

/// Entry 0, and entry 1 up to its value (258 bytes of 0xe1, appended in the test).
#[rustfmt::skip]
const XATTR_BUCKET_GOLDEN_HEAD: &[u8] = &[
    0x06,                                            //   0 entry 0 name length
    0x03, 0x00,                                      //   1 entry 0 value length
    0x75, 0x73, 0x65, 0x72, 0x2e, 0x61,              //   3 entry 0 name "user.a"
    0xd1, 0xd2, 0xd3,                                //   9 entry 0 value
    0x0a,                                            //  12 entry 1 name length
    0x02, 0x01,                                      //  13 entry 1 value length: 258
    0x74, 0x72, 0x75, 0x73, 0x74, 0x65, 0x64, 0x2e,  //  15 entry 1 name "trusted.bb"
    0x62, 0x62,                                      //  23 entry 1 name "trusted.bb" (cont.)
];

#[test]
fn xattr_bucket_golden() {
    let attrs = vec![
        XattrEntry::inline(b"user.a", &[0xd1, 0xd2, 0xd3]),
        XattrEntry::inline(b"trusted.bb", &[0xe1; 258]),
    ];
    let golden = [XATTR_BUCKET_GOLDEN_HEAD, &[0xe1; 258]].concat();
    assert_eq!(encode_xattr_bucket(&attrs), golden);
    assert_eq!(decode_xattr_bucket(&golden).unwrap(), attrs);

    let mut entry = 0;
    for x in &attrs {
        let (name, XattrValue::Inline(value)) = (&x.name, &x.value) else {
            unreachable!("inline entries")
        };
        let g = &golden[entry..];
        assert_eq!(at(g, XATTR_NAME_LEN_OFF), [name.len() as u8]);
        let value_len = value.len() as u16;
        assert_eq!(at(g, XATTR_VALUE_LEN_OFF), value_len.to_le_bytes());
        let value_off = XATTR_NAME_OFF + name.len();
        assert_eq!(g[XATTR_NAME_OFF..value_off], name[..]);
        assert_eq!(g[value_off..value_off + value.len()], value[..]);
        entry += value_off + value.len();
    }
    assert_eq!(entry, golden.len());
}

/// An inline entry, then an external one: a 65536-byte value in slot 0x0000_1234_5678_9abc.
#[rustfmt::skip]
const XATTR_EXTERNAL_BUCKET_GOLDEN: &[u8] = &[
    0x06,                                            //   0 entry 0 name length
    0x00, 0x00,                                      //   1 entry 0 value length: 0
    0x75, 0x73, 0x65, 0x72, 0x2e, 0x61,              //   3 entry 0 name "user.a"
    0x06,                                            //   9 entry 1 name length
    0xff, 0xff,                                      //  10 entry 1: external
    0x75, 0x73, 0x65, 0x72, 0x2e, 0x62,              //  12 entry 1 name "user.b"
    0x00, 0x00, 0x01, 0x00,                          //  18 entry 1 value length: 65536
    0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12, 0x00, 0x00,  //  22 entry 1 slot
];

#[test]
fn xattr_external_bucket_golden() {
    let slot = 0x0000_1234_5678_9abc;
    let attrs = vec![
        XattrEntry::inline(b"user.a", &[]),
        XattrEntry {
            name: b"user.b".to_vec(),
            value: XattrValue::External { len: 65536, slot },
        },
    ];
    let golden = XATTR_EXTERNAL_BUCKET_GOLDEN;
    assert_eq!(encode_xattr_bucket(&attrs), golden);
    assert_eq!(decode_xattr_bucket(golden).unwrap(), attrs);
    let ext = &golden[9..];
    assert_eq!(at(ext, XATTR_VALUE_LEN_OFF), XATTR_EXTERNAL.to_le_bytes());
    let after = &ext[XATTR_NAME_OFF + 6..];
    assert_eq!(at(after, XATTR_EXT_LEN_OFF), 65536u32.to_le_bytes());
    assert_eq!(at(after, XATTR_EXT_SLOT_OFF), slot.to_le_bytes());
    assert_eq!(after.len(), XATTR_EXT_SIZE);
    assert_eq!(attrs[1].encoded_len(), golden.len() - 9);

    // The parts' keys: the slot above 16 bits of part number.
    let k = xattr_part_key(7, slot, 3);
    assert_eq!(
        (k.object, k.kind, k.offset),
        (7, KIND_XATTR_VALUE, 0x1234_5678_9abc_0003)
    );
    assert_eq!(xattr_part_of(k.offset), (slot, 3));
    // 4 KiB blocks: parts of max_item_value bytes, the last the rest.
    let part = max_item_value(4096);
    let lens = xattr_part_lens(65536, 4096);
    assert_eq!(lens.len(), 65536usize.div_ceil(part));
    assert!(lens[..lens.len() - 1].iter().all(|&l| l == part));
    assert_eq!(lens.iter().sum::<usize>(), 65536);
    assert_eq!(xattr_part_lens(part, 4096), vec![part]);
    assert_eq!(xattr_part_lens(part + 1, 4096), vec![part, 1]);

    // Lengths out of range, and slots above 48 bits, are corrupt.
    for (len, slot) in [(0u32, 1u64), (65537, 1), (1, XATTR_SLOT_LIMIT)] {
        let mut bad = golden.to_vec();
        bad[18..22].copy_from_slice(&len.to_le_bytes());
        bad[22..30].copy_from_slice(&slot.to_le_bytes());
        assert!(decode_xattr_bucket(&bad).is_err(), "{len} {slot:#x}");
    }
    // A truncated external entry is corrupt.
    assert!(decode_xattr_bucket(&golden[..golden.len() - 1]).is_err());
}

#[rustfmt::skip]
const EXTENT_GOLDEN: &[u8] = &[
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //   0 disk_start
    0x03, 0x00, 0x00, 0x00,                          //   8 blocks: 3
    0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,  //  12 birth_gen
    0xa4, 0xa3, 0xa2, 0xa1,                          //  20 crcs[0]
    0xb4, 0xb3, 0xb2, 0xb1,                          //  24 crcs[1]
    0xc4, 0xc3, 0xc2, 0xc1,                          //  28 crcs[2]
];

#[rustfmt::skip]
const EXTENT_WITH_COPY_GOLDEN: &[u8] = &[
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //   0 disk_start
    0x03, 0x00, 0x00, 0x80,                          //   8 blocks: 3 | EXTENT_HAS_COPY
    0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,  //  12 birth_gen
    0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,  //  20 copy_start
    0xa4, 0xa3, 0xa2, 0xa1,                          //  28 crcs[0]
    0xb4, 0xb3, 0xb2, 0xb1,                          //  32 crcs[1]
    0xc4, 0xc3, 0xc2, 0xc1,                          //  36 crcs[2]
];

#[test]
fn extent_item_golden() {
    let one = ExtentItem {
        disk_start: 0x1112_1314_1516_1718,
        copy_start: None,
        birth_gen: 0x2122_2324_2526_2728,
        crcs: vec![0xa1a2_a3a4, 0xb1b2_b3b4, 0xc1c2_c3c4],
    };
    let two = ExtentItem {
        copy_start: Some(0x3132_3334_3536_3738),
        ..one.clone()
    };
    for (ext, golden, crcs_off, flag) in [
        (&one, EXTENT_GOLDEN, EXTENT_CRCS_OFF, 0),
        (
            &two,
            EXTENT_WITH_COPY_GOLDEN,
            EXTENT_CRCS_WITH_COPY_OFF,
            EXTENT_HAS_COPY,
        ),
    ] {
        assert_eq!(ext.encode(), golden);
        assert_eq!(ExtentItem::decode(golden, 0x10, u64::MAX).unwrap(), *ext);

        assert_eq!(
            at(golden, EXTENT_DISK_START_OFF),
            ext.disk_start.to_le_bytes()
        );
        assert_eq!(at(golden, EXTENT_BLOCKS_OFF), (3 | flag).to_le_bytes());
        assert_eq!(
            at(golden, EXTENT_BIRTH_GEN_OFF),
            ext.birth_gen.to_le_bytes()
        );
        if let Some(c) = ext.copy_start {
            assert_eq!(at(golden, EXTENT_COPY_START_OFF), c.to_le_bytes());
        }
        for (i, c) in ext.crcs.iter().enumerate() {
            assert_eq!(at(golden, crcs_off + 4 * i), c.to_le_bytes());
        }
        assert_eq!(golden.len(), crcs_off + 4 * ext.crcs.len());
    }
}

/// An UNWRITTEN item, of a run or of an inode's total: a block count.
#[rustfmt::skip]
const BLOCK_COUNT_GOLDEN: &[u8] = &[
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //   0 blocks
];

#[test]
fn block_count_golden() {
    let n = 0x1112_1314_1516_1718;
    assert_eq!(encode_block_count(n), BLOCK_COUNT_GOLDEN);
    assert_eq!(decode_block_count(BLOCK_COUNT_GOLDEN).unwrap(), n);
    assert_eq!(BLOCK_COUNT_GOLDEN.len(), BLOCK_COUNT_SIZE);
}

// ---- The scrub record (scrub.rs) ----

#[rustfmt::skip]
const SCRUB_GOLDEN: &[u8] = &[
    0x01,                                            //   0 version
    0x04,                                            //   1 state: corrected
    0x00, 0x00,                                      //   2 reserved
    0x00, 0x00, 0x00, 0x00,                          //   4 reserved
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,  //   8 id
    0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,  //  16 position
    0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,  //  24 subtree
    0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41,  //  32 limit
    0x58, 0x57, 0x56, 0x55, 0x54, 0x53, 0x52, 0x51,  //  40 started
    0x68, 0x67, 0x66, 0x65, 0x64, 0x63, 0x62, 0x61,  //  48 finished
    0x78, 0x77, 0x76, 0x75, 0x74, 0x73, 0x72, 0x71,  //  56 elapsed_ms
    0x88, 0x87, 0x86, 0x85, 0x84, 0x83, 0x82, 0x81,  //  64 bytes_read
    0x98, 0x97, 0x96, 0x95, 0x94, 0x93, 0x92, 0x91,  //  72 data_blocks
    0xa8, 0xa7, 0xa6, 0xa5, 0xa4, 0xa3, 0xa2, 0xa1,  //  80 metadata_nodes
    0xb8, 0xb7, 0xb6, 0xb5, 0xb4, 0xb3, 0xb2, 0xb1,  //  88 metadata_copies
    0xc8, 0xc7, 0xc6, 0xc5, 0xc4, 0xc3, 0xc2, 0xc1,  //  96 corrected
    0xd8, 0xd7, 0xd6, 0xd5, 0xd4, 0xd3, 0xd2, 0xd1,  // 104 uncorrectable
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // 112 reserved
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // 120 reserved (cont.)
];

fn golden_scrub_item() -> ScrubItem {
    ScrubItem {
        state: ScrubState::Corrected,
        id: 0x1112_1314_1516_1718,
        position: 0x2122_2324_2526_2728,
        subtree: 0x3132_3334_3536_3738,
        limit: 0x4142_4344_4546_4748,
        started: 0x5152_5354_5556_5758,
        finished: 0x6162_6364_6566_6768,
        elapsed_ms: 0x7172_7374_7576_7778,
        counts: crate::format::ScrubCounts {
            bytes_read: 0x8182_8384_8586_8788,
            data_blocks: 0x9192_9394_9596_9798,
            metadata_nodes: 0xa1a2_a3a4_a5a6_a7a8,
            metadata_copies: 0xb1b2_b3b4_b5b6_b7b8,
            corrected: 0xc1c2_c3c4_c5c6_c7c8,
            uncorrectable: 0xd1d2_d3d4_d5d6_d7d8,
        },
    }
}

#[test]
fn scrub_item_golden() {
    let s = golden_scrub_item();
    assert_eq!(s.encode(), SCRUB_GOLDEN);
    assert_eq!(
        ScrubItem::decode(SCRUB_GOLDEN, SCRUB_LAST, u64::MAX).unwrap(),
        s
    );

    let g = SCRUB_GOLDEN;
    assert_eq!(g.len(), SCRUB_ITEM_SIZE);
    assert_eq!(at(g, SCRUB_VERSION_OFF), [SCRUB_ITEM_VERSION]);
    assert_eq!(at(g, SCRUB_STATE_OFF), [4]);
    assert_eq!(at(g, SCRUB_RESERVED_U16_OFF), [0; 2]);
    assert_eq!(at(g, SCRUB_RESERVED_U32_OFF), [0; 4]);
    assert_eq!(at(g, SCRUB_ID_OFF), s.id.to_le_bytes());
    assert_eq!(at(g, SCRUB_POSITION_OFF), s.position.to_le_bytes());
    assert_eq!(at(g, SCRUB_SUBTREE_OFF), s.subtree.to_le_bytes());
    assert_eq!(at(g, SCRUB_LIMIT_OFF), s.limit.to_le_bytes());
    assert_eq!(at(g, SCRUB_STARTED_OFF), s.started.to_le_bytes());
    assert_eq!(at(g, SCRUB_FINISHED_OFF), s.finished.to_le_bytes());
    assert_eq!(at(g, SCRUB_ELAPSED_MS_OFF), s.elapsed_ms.to_le_bytes());
    assert_eq!(
        at(g, SCRUB_BYTES_READ_OFF),
        s.counts.bytes_read.to_le_bytes()
    );
    assert_eq!(
        at(g, SCRUB_DATA_BLOCKS_OFF),
        s.counts.data_blocks.to_le_bytes()
    );
    assert_eq!(
        at(g, SCRUB_METADATA_NODES_OFF),
        s.counts.metadata_nodes.to_le_bytes()
    );
    assert_eq!(
        at(g, SCRUB_METADATA_COPIES_OFF),
        s.counts.metadata_copies.to_le_bytes()
    );
    assert_eq!(at(g, SCRUB_CORRECTED_OFF), s.counts.corrected.to_le_bytes());
    assert_eq!(
        at(g, SCRUB_UNCORRECTABLE_OFF),
        s.counts.uncorrectable.to_le_bytes()
    );
    assert_eq!(at(g, SCRUB_RESERVED_TAIL_OFF), [0; 16]);
}

/// The state codes, each written out: the golden item with only its state byte changed (and
/// the finish time cleared for the states of a scrub still going on).
#[test]
fn scrub_state_codes_golden() {
    for (state, code) in [
        (ScrubState::Running, 1),
        (ScrubState::Paused, 2),
        (ScrubState::Clean, 3),
        (ScrubState::Corrected, 4),
        (ScrubState::Uncorrectable, 5),
        (ScrubState::Cancelled, 6),
    ] {
        let mut golden = SCRUB_GOLDEN.to_vec();
        golden[SCRUB_STATE_OFF] = code;
        let mut item = ScrubItem {
            state,
            ..golden_scrub_item()
        };
        let which = if state.is_active() {
            golden[SCRUB_FINISHED_OFF..SCRUB_FINISHED_OFF + 8].fill(0);
            item.finished = 0;
            SCRUB_CURRENT
        } else {
            SCRUB_LAST
        };
        assert_eq!(item.encode(), golden, "{state:?}");
        assert_eq!(
            ScrubItem::decode(&golden, which, u64::MAX).unwrap(),
            item,
            "code {code}"
        );
    }
}

// ---- Numbers the format fixes ----

/// Magic numbers, item kinds, feature bits and the like, each written out: renumbering any of
/// them changes the format.
#[test]
fn format_numbers_golden() {
    assert_eq!(FORMAT_VERSION, 1);
    assert_eq!(SB_MAGIC, *b"STABLEFS");
    assert_eq!(NODE_MAGIC.to_le_bytes(), *b"SFND");
    assert_eq!(SB_SIZE, 4096);
    assert_eq!(SB_SLOT_OFFSETS, [0, 0x1_0000]);
    assert_eq!(RESERVED_BYTES, 0x4_0000);
    assert_eq!((MIN_BLOCK_SIZE, MAX_BLOCK_SIZE), (4096, 65536));
    assert_eq!(SB_FLAG_MKFS_IN_PROGRESS, 1);
    assert_eq!(FEATURE_COMPAT_KNOWN, 0);
    assert_eq!(FEATURE_RO_COMPAT_METADATA_DUP, 1);
    assert_eq!(FEATURE_INCOMPAT_DATA_COPIES, 1);
    assert_eq!(FEATURE_INCOMPAT_XATTR_VALUES, 2);
    assert_eq!(TREE_FS, 1);
    assert_eq!(
        [
            KIND_INODE,
            KIND_DIRENT,
            KIND_DIRINDEX,
            KIND_XATTR,
            KIND_EXTENT,
            KIND_SYMLINK,
            KIND_ORPHAN,
            KIND_UNWRITTEN,
            KIND_SCRUB,
            KIND_XATTR_VALUE,
        ],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    );
    assert_eq!((OBJECT_FS, FIRST_COOKIE), (0, 3));
    assert_eq!(EXTENT_HAS_COPY, 0x8000_0000);
    assert_eq!(
        (
            XATTR_EXTERNAL,
            XATTR_SIZE_MAX,
            XATTR_NAME_MAX,
            XATTR_PART_BITS
        ),
        (0xffff, 65536, 255, 16)
    );
    assert_eq!((SCRUB_CURRENT, SCRUB_LAST, SCRUB_ITEM_VERSION), (0, 1, 1));
    assert_eq!((NODE_HEADER_SIZE, KEY_SIZE, BLOCK_PTR_SIZE), (64, 17, 32));
    assert_eq!((INODE_ITEM_SIZE, SCRUB_ITEM_SIZE), (112, 128));
}

/// The hash in DIRENT and XATTR keys, and the block checksum, on fixed inputs.
#[test]
fn hashes_golden() {
    assert_eq!(name_hash(b"golden"), 0x426b_212b_ff24_c638);
    // The standard crc32c check value.
    assert_eq!(block_crc(b"123456789"), 0xe306_9283);
}
