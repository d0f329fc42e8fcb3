//! Scrub on a `MemDevice`: damage planted behind the device, found, named and (for metadata)
//! repaired.

use super::*;
use crate::device::MemDevice;
use crate::fs::{Caller, Fs, MountOptions};
use crate::mkfs::{mkfs, MkfsOptions};

const ROOT: Caller = Caller::ROOT;
const BS: u64 = 4096;

/// /a/f (three blocks, hard-linked as /b/g) and /h (one block); returns f's inode.
fn populated() -> (Arc<MemDevice>, u64) {
    let dev = Arc::new(MemDevice::new(64 << 20, 512));
    mkfs(dev.clone(), &MkfsOptions::default()).unwrap();
    let fs = Fs::mount(dev.clone(), MountOptions::default()).unwrap();
    let a = fs.mkdir(ROOT_INO, b"a", 0o755, ROOT).unwrap().ino;
    let b = fs.mkdir(ROOT_INO, b"b", 0o755, ROOT).unwrap().ino;
    let f = fs
        .mknod(a, b"f", libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
        .ino;
    fs.write(f, 0, &vec![7u8; 3 * BS as usize], None).unwrap();
    fs.link(f, b, b"g").unwrap();
    let h = fs
        .mknod(ROOT_INO, b"h", libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
        .ino;
    fs.write(h, 0, b"other file", None).unwrap();
    // Enough names for a tree of several levels.
    let many = fs.mkdir(ROOT_INO, b"many", 0o755, ROOT).unwrap().ino;
    for i in 0..400 {
        let name = format!("an-empty-file-with-a-long-name-{i:04}");
        fs.mknod(many, name.as_bytes(), libc::S_IFREG | 0o644, 0, ROOT)
            .unwrap();
    }
    fs.shutdown().unwrap();
    (dev, f)
}

/// The device blocks of `ino`'s data, and every node pointer, of the last commit.
fn layout(dev: &Arc<MemDevice>, ino: u64) -> (Vec<u64>, Vec<(BlockPtr, u8)>) {
    let mut meta = Meta::open(dev.clone(), false).unwrap();
    let (first, total) = (meta.sb.first_block, meta.sb.total_blocks);
    let (mut data, mut nodes) = (Vec::new(), Vec::new());
    meta.tree
        .walk(&mut |v| {
            match v {
                Visit::Node { ptr, level } => nodes.push((ptr, level)),
                Visit::Item { key, value } if key.kind == KIND_EXTENT && key.object == ino => {
                    let e = ExtentItem::decode(value, first, total).unwrap();
                    data.extend(e.disk_start..e.disk_start + e.len());
                }
                Visit::Item { .. } => {}
            }
            Ok(())
        })
        .unwrap();
    (data, nodes)
}

fn flip(dev: &MemDevice, block: u64) {
    let at = block * BS + 100;
    let b = dev.peek(at, 1)[0];
    dev.poke(at, &[b ^ 0x10]);
}

fn run(dev: &Arc<MemDevice>) -> ScrubReport {
    let mut calls = 0;
    let r = scrub(dev.clone(), &ScrubOptions::default(), &mut |done, all| {
        assert!(done <= all);
        calls += 1;
    })
    .unwrap();
    assert!(calls > 0, "progress is reported");
    r
}

#[test]
fn a_clean_filesystem_scrubs_clean() {
    let (dev, _) = populated();
    let r = run(&dev);
    assert_eq!(
        (r.result, r.exit_code),
        ("clean", EXIT_CLEAN),
        "{}",
        r.to_text()
    );
    assert_eq!(r.counts.data_blocks, 4);
    assert_eq!(
        r.counts.metadata_copies, r.counts.metadata_nodes,
        "DUP: every node's second copy"
    );
    assert!(r.bad.is_empty());
}

#[test]
fn bad_data_is_named_by_every_path_and_bad_node_copies_are_rewritten() {
    let (dev, f) = populated();
    let (data, nodes) = layout(&dev, f);
    assert_eq!(data.len(), 3);
    let (root, _) = nodes[0];
    flip(&dev, data[1]);
    flip(&dev, root.addr.0);
    let (leaf, _) = *nodes.last().unwrap();
    let second = leaf.copy_addr.unwrap();
    flip(&dev, second.0);

    let r = run(&dev);
    assert_eq!(
        (r.result, r.exit_code),
        ("uncorrectable", EXIT_UNCORRECTABLE)
    );
    let text = r.to_text();
    let data_bad: Vec<_> = r
        .bad
        .iter()
        .filter(|b| matches!(b.damage, Damage::Data { .. }))
        .collect();
    assert_eq!(data_bad.len(), 1, "{text}");
    assert_eq!(data_bad[0].block, data[1]);
    assert_eq!(
        data_bad[0].damage,
        Damage::Data {
            ino: f,
            offset: BS,
            paths: vec!["/a/f".into(), "/b/g".into()]
        }
    );
    assert!(!data_bad[0].repaired);
    let meta_bad: Vec<_> = r
        .bad
        .iter()
        .filter(|b| matches!(b.damage, Damage::Metadata { .. }))
        .collect();
    assert_eq!(meta_bad.len(), 2, "{text}");
    assert!(meta_bad.iter().all(|b| b.repaired), "{text}");
    assert!(meta_bad.iter().any(|b| b.block == root.addr.0
        && b.damage
            == Damage::Metadata {
                node: root.addr.0,
                level: nodes[0].1,
                copy: 1
            }));
    assert!(meta_bad.iter().any(|b| b.block == second.0
        && matches!(b.damage, Damage::Metadata { node, copy: 2, .. } if node == leaf.addr.0)));
    assert_eq!((r.counts.corrected, r.counts.uncorrectable), (2, 1));
    assert!(text.contains("/a/f, /b/g at offset 4096"), "{text}");

    // The node copies are whole again; the data block is still bad (one copy).
    let again = run(&dev);
    assert_eq!(again.bad.len(), 1, "{}", again.to_text());
    assert_eq!(again.bad[0].block, data[1]);
    assert_eq!(again.exit_code, EXIT_UNCORRECTABLE);
    flip(&dev, data[1]);
    assert_eq!(run(&dev).exit_code, EXIT_CLEAN);
}

#[test]
fn metadata_damage_alone_is_corrected_then_clean_and_the_json_says_so() {
    let (dev, f) = populated();
    let (_, nodes) = layout(&dev, f);
    for (ptr, _) in &nodes {
        flip(&dev, ptr.copy_addr.unwrap().0);
    }
    let r = run(&dev);
    assert_eq!(
        (r.result, r.exit_code),
        ("corrected", EXIT_CORRECTED),
        "{}",
        r.to_text()
    );
    assert_eq!(r.counts.corrected, nodes.len() as u64);
    let v: serde_json::Value = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(v["result"], "corrected");
    assert_eq!(v["bad"][0]["kind"], "metadata");
    assert_eq!(v["bad"][0]["copy"], 2);
    assert_eq!(v["bad"][0]["repaired"], true);
    assert_eq!(run(&dev).exit_code, EXIT_CLEAN);
}

#[test]
fn a_node_bad_in_both_copies_is_lost_metadata() {
    let (dev, f) = populated();
    let (_, nodes) = layout(&dev, f);
    let (leaf, _) = *nodes.last().unwrap();
    flip(&dev, leaf.addr.0);
    flip(&dev, leaf.copy_addr.unwrap().0);
    let r = run(&dev);
    assert_eq!(r.exit_code, EXIT_UNCORRECTABLE, "{}", r.to_text());
    assert!(!r.lost_metadata.is_empty(), "{}", r.to_text());
    // The root too: nothing can be scrubbed, and the report says so.
    let (root, _) = nodes[0];
    flip(&dev, root.addr.0);
    flip(&dev, root.copy_addr.unwrap().0);
    let r = scrub(dev.clone(), &ScrubOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(r.exit_code, EXIT_UNCORRECTABLE);
    assert!(r.lost_metadata[0].contains("root"), "{}", r.to_text());
}

#[test]
fn the_rate_limit_holds() {
    let (dev, _) = populated();
    let start = Instant::now();
    let r = scrub(
        dev.clone(),
        &ScrubOptions {
            limit: Some(256 << 10),
        },
        &mut |_, _| {},
    )
    .unwrap();
    // What it reads after the walk, at 256 KiB/s, takes at least its size over the rate.
    let min =
        (r.counts.data_blocks + r.counts.metadata_copies) as f64 * BS as f64 / f64::from(256 << 10);
    assert!(
        start.elapsed().as_secs_f64() >= min * 0.9,
        "{:?} < {min}",
        start.elapsed()
    );
}

/// As `populated`, with `copies=2`: /a/f (three blocks, also /b/g) and /h (one block).
fn populated_copies() -> (Arc<MemDevice>, u64, u64) {
    let dev = Arc::new(MemDevice::new(64 << 20, 512));
    let opts = MkfsOptions {
        data_copies: 2,
        ..MkfsOptions::default()
    };
    mkfs(dev.clone(), &opts).unwrap();
    let fs = Fs::mount(dev.clone(), MountOptions::default()).unwrap();
    let a = fs.mkdir(ROOT_INO, b"a", 0o755, ROOT).unwrap().ino;
    let b = fs.mkdir(ROOT_INO, b"b", 0o755, ROOT).unwrap().ino;
    let f = fs
        .mknod(a, b"f", libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
        .ino;
    fs.write(f, 0, &vec![7u8; 3 * BS as usize], None).unwrap();
    fs.link(f, b, b"g").unwrap();
    let h = fs
        .mknod(ROOT_INO, b"h", libc::S_IFREG | 0o644, 0, ROOT)
        .unwrap()
        .ino;
    fs.write(h, 0, b"other file", None).unwrap();
    fs.shutdown().unwrap();
    (dev, f, h)
}

/// Both copies of every data block of `ino`: (first, second).
fn data_copies(dev: &Arc<MemDevice>, ino: u64) -> Vec<(u64, u64)> {
    let mut meta = Meta::open(dev.clone(), false).unwrap();
    let (first, total) = (meta.sb.first_block, meta.sb.total_blocks);
    let mut out = Vec::new();
    meta.tree
        .walk(&mut |v| {
            if let Visit::Item { key, value } = v {
                if key.kind == KIND_EXTENT && key.object == ino {
                    let e = ExtentItem::decode(value, first, total).unwrap();
                    for i in 0..e.len() {
                        out.push((e.block_of(0, i).unwrap(), e.block_of(1, i).unwrap()));
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    out
}

#[test]
fn copies2_a_bad_data_copy_is_repaired_from_the_other_in_either_direction() {
    let (dev, f, _) = populated_copies();
    let blocks = data_copies(&dev, f);
    assert_eq!(blocks.len(), 3);
    let clean = run(&dev);
    assert_eq!(clean.exit_code, EXIT_CLEAN, "{}", clean.to_text());
    assert_eq!((clean.counts.data_blocks, clean.data_copies), (4, 4));
    flip(&dev, blocks[0].0);
    flip(&dev, blocks[2].1);

    let r = run(&dev);
    let text = r.to_text();
    assert_eq!(
        (r.result, r.exit_code),
        ("corrected", EXIT_CORRECTED),
        "{text}"
    );
    assert_eq!(r.bad.len(), 2, "{text}");
    assert!(r.bad.iter().all(|b| b.repaired), "{text}");
    let paths = vec!["/a/f".to_string(), "/b/g".to_string()];
    assert_eq!(
        r.bad[0].block.min(r.bad[1].block),
        blocks[0].0.min(blocks[2].1)
    );
    let at = |block: u64| r.bad.iter().find(|b| b.block == block).unwrap();
    assert_eq!(
        at(blocks[0].0).damage,
        Damage::DataCopy {
            ino: f,
            offset: 0,
            paths: paths.clone(),
            copy: 1
        }
    );
    assert_eq!(
        at(blocks[2].1).damage,
        Damage::DataCopy {
            ino: f,
            offset: 2 * BS,
            paths,
            copy: 2
        }
    );
    assert!(
        text.contains("copy 2 of the data of /a/f, /b/g at offset 8192"),
        "{text}"
    );
    for (a, b) in &blocks {
        assert_eq!(dev.peek(a * BS, BS as usize), dev.peek(b * BS, BS as usize));
    }
    let again = run(&dev);
    assert_eq!(again.exit_code, EXIT_CLEAN, "{}", again.to_text());
}

#[test]
fn copies2_a_block_bad_in_both_copies_is_uncorrectable_and_named() {
    let (dev, _, h) = populated_copies();
    let (a, b) = data_copies(&dev, h)[0];
    flip(&dev, a);
    dev.poke(b * BS + 200, b"Z");
    let r = run(&dev);
    let text = r.to_text();
    assert_eq!(
        (r.result, r.exit_code),
        ("uncorrectable", EXIT_UNCORRECTABLE),
        "{text}"
    );
    assert_eq!(r.bad.len(), 2, "{text}");
    assert!(r.bad.iter().all(|b| !b.repaired), "{text}");
    assert!(r.bad.iter().all(
        |b| matches!(&b.damage, Damage::DataCopy { paths, .. } if paths == &["/h".to_string()])
    ));
    assert!(
        text.contains("NOT repaired: the other copy is bad too"),
        "{text}"
    );
    // Nothing was rewritten from a bad copy.
    assert!(dev.peek(a * BS, BS as usize) != dev.peek(b * BS, BS as usize));
}
