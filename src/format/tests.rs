//! Round trips, and the promise that decoding arbitrary bytes never panics.

use super::Timespec;
use super::*;
use proptest::prelude::*;

fn id() -> NodeIdentity {
    NodeIdentity {
        uuid: [7; 16],
        block_size: 4096,
        first_block: 64,
        total_blocks: 1 << 20,
    }
}

fn sample_sb() -> Superblock {
    Superblock {
        compat: 0,
        ro_compat: 0,
        incompat: 0,
        uuid: [9; 16],
        block_size: 4096,
        slot: 1,
        total_blocks: 262144,
        generation: 5,
        root: BlockPtr {
            addr: BlockNo(100),
            copy_addr: None,
            birth_gen: 5,
            crc: 0xdead_beef,
        },
        root_level: 2,
        flags: 0,
        next_ino: 77,
        used_blocks: 1000,
        inode_count: 12,
        created: 1_700_000_000,
        committed: 1_700_000_100,
        label: [0; LABEL_MAX],
        first_block: 64,
    }
}

#[test]
fn superblock_round_trip_and_crc() {
    let sb = sample_sb();
    let bytes = sb.encode();
    assert_eq!(bytes.len(), SB_SIZE);
    assert_eq!(Superblock::decode(&bytes).unwrap(), sb);
    for i in [0usize, 9, 20, 100, 4095] {
        let mut b = bytes.clone();
        b[i] ^= 1;
        assert!(Superblock::decode(&b).is_err(), "flip at {i} accepted");
    }
}

#[test]
fn superblock_data_copies_bit_is_known() {
    let mut sb = sample_sb();
    assert_eq!(sb.data_copies(), 1);
    sb.incompat = FEATURE_INCOMPAT_DATA_COPIES;
    let back = Superblock::decode(&sb.encode()).unwrap();
    assert_eq!(back.data_copies(), 2);
}

#[test]
fn superblock_unknown_incompat_is_unsupported() {
    let mut sb = sample_sb();
    sb.incompat = 1 << 40;
    match Superblock::decode(&sb.encode()) {
        Err(crate::Error::Unsupported(m)) => assert!(m.contains("newer stablefs"), "{m}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn node_round_trip_and_self_description() {
    let items = vec![
        (Key::new(1, KIND_INODE, 0), vec![1u8; 112]),
        (Key::new(1, KIND_DIRENT, 55), vec![2u8; 30]),
    ];
    let body = NodeBody::Leaf(items);
    let (bytes, crc) = encode_node(&id(), BlockNo(500), 9, 0, &body);
    let ptr = BlockPtr {
        addr: BlockNo(500),
        copy_addr: None,
        birth_gen: 9,
        crc,
    };
    assert_eq!(decode_node(&id(), &bytes, &ptr, 0).unwrap(), body);
    // Read from the wrong place: the crc matches (same bytes) but the node says where it lives.
    let misdirected = BlockPtr {
        addr: BlockNo(501),
        ..ptr
    };
    assert!(decode_node(&id(), &bytes, &misdirected, 0).is_err());
    // An older generation (a lost write that left the previous version in place).
    let stale = BlockPtr {
        birth_gen: 10,
        ..ptr
    };
    assert!(decode_node(&id(), &bytes, &stale, 0).is_err());
    // Another filesystem's node.
    let other = NodeIdentity {
        uuid: [8; 16],
        ..id()
    };
    assert!(decode_node(&other, &bytes, &ptr, 0).is_err());
    // Wrong level.
    assert!(decode_node(&id(), &bytes, &ptr, 1).is_err());
    // A flipped bit.
    let mut b = bytes.clone();
    b[300] ^= 0x10;
    assert!(matches!(
        decode_node(&id(), &b, &ptr, 0),
        Err(crate::Error::Checksum { .. })
    ));
}

#[test]
fn inner_node_round_trip() {
    let p = |a| BlockPtr {
        addr: BlockNo(a),
        copy_addr: Some(BlockNo(a + 1)),
        birth_gen: 3,
        crc: 1,
    };
    let body = NodeBody::Inner(vec![(Key::MIN, p(100)), (Key::new(5, 1, 0), p(200))]);
    let (bytes, crc) = encode_node(&id(), BlockNo(64), 3, 1, &body);
    let ptr = BlockPtr {
        addr: BlockNo(64),
        copy_addr: None,
        birth_gen: 3,
        crc,
    };
    assert_eq!(decode_node(&id(), &bytes, &ptr, 1).unwrap(), body);
}

#[test]
fn items_round_trip() {
    let t = Timespec {
        sec: -5,
        nsec: 999_999_999,
    };
    let ino = InodeItem {
        mode: libc::S_IFREG | 0o644,
        uid: 1,
        gid: 2,
        nlink: 3,
        size: 1 << 40,
        blocks: 9,
        rdev: 0,
        flags: 0o1234,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        parent: 0,
        next_cookie: 0,
        generation: u64::MAX,
    };
    assert_eq!(InodeItem::decode(&ino.encode()).unwrap(), ino);
    let links = vec![DirLink {
        name: b"a".to_vec(),
        ino: 5,
        kind: super::FileKind::Dir,
        cookie: 9,
    }];
    assert_eq!(
        decode_dirent_bucket(&encode_dirent_bucket(&links)).unwrap(),
        links
    );
    let x = vec![
        XattrEntry::inline(b"user.a", &[]),
        XattrEntry::inline(b"user.b", &[1, 2, 3]),
        XattrEntry {
            name: b"user.c".to_vec(),
            value: XattrValue::External { len: 4000, slot: 9 },
        },
    ];
    assert_eq!(decode_xattr_bucket(&encode_xattr_bucket(&x)).unwrap(), x);
    let ext = ExtentItem {
        disk_start: 100,
        copy_start: None,
        birth_gen: 4,
        crcs: vec![1, 2, 3],
    };
    assert_eq!(ExtentItem::decode(&ext.encode(), 64, 1000).unwrap(), ext);
    assert!(ExtentItem::decode(&ext.encode(), 64, 102).is_err());
    assert!(ExtentItem::max_blocks(4096) >= 64);
}

#[test]
fn extent_with_a_second_copy_round_trips_and_is_checked() {
    let ext = ExtentItem {
        disk_start: 100,
        copy_start: Some(500),
        birth_gen: 4,
        crcs: vec![1, 2, 3],
    };
    let bytes = ext.encode();
    assert_eq!(bytes.len(), 28 + 12);
    assert_eq!(ExtentItem::decode(&bytes, 64, 1000).unwrap(), ext);
    assert_eq!(ext.runs().collect::<Vec<_>>(), vec![(100, 3), (500, 3)]);
    assert_eq!(
        (ext.block_of(0, 2), ext.block_of(1, 2)),
        (Some(102), Some(502))
    );
    let s = ext.slice(1, 3);
    assert_eq!(
        (s.disk_start, s.copy_start, s.crcs),
        (101, Some(501), vec![2, 3])
    );
    // The copy must lie inside the device.
    assert!(ExtentItem::decode(&bytes, 64, 502).is_err());
    let below = ExtentItem {
        copy_start: Some(10),
        ..ext.clone()
    };
    assert!(ExtentItem::decode(&below.encode(), 64, 1000).is_err());
    let wraps = ExtentItem {
        copy_start: Some(u64::MAX - 1),
        ..ext.clone()
    };
    assert!(ExtentItem::decode(&wraps.encode(), 64, u64::MAX).is_err());
    // ... and never overlap the first copy (from either side, or exactly).
    for c in [98, 100, 102] {
        let overlap = ExtentItem {
            copy_start: Some(c),
            ..ext.clone()
        };
        assert!(
            ExtentItem::decode(&overlap.encode(), 64, 1000).is_err(),
            "copy at {c}"
        );
    }
    for c in [97, 103] {
        let touching = ExtentItem {
            copy_start: Some(c),
            ..ext.clone()
        };
        assert!(
            ExtentItem::decode(&touching.encode(), 64, 1000).is_ok(),
            "copy at {c}"
        );
    }
    // The flag and the length must agree: a flagged item without its copy field, or an
    // unflagged one with it, does not decode.
    let mut no_field = bytes.clone();
    no_field.drain(20..28);
    assert!(ExtentItem::decode(&no_field, 64, 1000).is_err());
    let mut no_flag = bytes.clone();
    no_flag[11] &= 0x7f;
    assert!(ExtentItem::decode(&no_flag, 64, 1000).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4200), level in 0u8..3) {
        let _ = Superblock::decode(&bytes);
        let _ = InodeItem::decode(&bytes);
        let _ = decode_dirent_bucket(&bytes);
        let _ = decode_dirindex(&bytes, 5);
        let _ = decode_xattr_bucket(&bytes);
        let _ = ExtentItem::decode(&bytes, 64, 1 << 20);
        let _ = ExtentItem::decode(&bytes, 0, u64::MAX);
        // Nodes: give the decoder a pointer whose crc matches, so it gets past the checksum and
        // exercises every later check on arbitrary content.
        let mut block = bytes.clone();
        block.resize(4096, 0);
        let mut z = block.clone();
        z[4..8].fill(0);
        let ptr = BlockPtr { addr: BlockNo(100), copy_addr: None, birth_gen: 1, crc: crc32c::crc32c(&z) };
        let _ = decode_node(&id(), &block, &ptr, level);
    }

    #[test]
    fn extents_round_trip_and_decode_checks_both_copies(
        start in 0u64..2000, copy in proptest::option::of(0u64..2000), n in 1usize..20, gen in any::<u64>()
    ) {
        let e = ExtentItem { disk_start: start, copy_start: copy, birth_gen: gen, crcs: (0..n as u32).collect() };
        let (first, total, n) = (64u64, 1000u64, n as u64);
        let inside = |s: u64| s >= first && s + n <= total;
        let valid = inside(start)
            && copy.is_none_or(|c| inside(c) && (c + n <= start || start + n <= c));
        match ExtentItem::decode(&e.encode(), first, total) {
            Ok(back) => {
                prop_assert!(valid);
                prop_assert_eq!(back, e);
            }
            Err(_) => prop_assert!(!valid),
        }
    }

    #[test]
    fn node_with_valid_header_and_random_body_never_panics(body in proptest::collection::vec(any::<u8>(), 0..4032), n in any::<u16>(), used in any::<u32>(), level in 0u8..2) {
        let mut b = vec![0u8; 4096];
        b[0..4].copy_from_slice(&NODE_MAGIC.to_le_bytes());
        b[8..24].copy_from_slice(&[7; 16]);
        b[24..32].copy_from_slice(&100u64.to_le_bytes());
        b[32..40].copy_from_slice(&1u64.to_le_bytes());
        b[40..48].copy_from_slice(&TREE_FS.to_le_bytes());
        b[48] = level;
        b[50..52].copy_from_slice(&n.to_le_bytes());
        b[52..56].copy_from_slice(&used.to_le_bytes());
        b[64..64 + body.len()].copy_from_slice(&body);
        let crc = crc32c::crc32c(&b);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        let ptr = BlockPtr { addr: BlockNo(100), copy_addr: None, birth_gen: 1, crc };
        let _ = decode_node(&id(), &b, &ptr, level);
    }
}
