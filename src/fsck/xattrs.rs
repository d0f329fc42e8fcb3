//! Pass 2, xattrs: every external xattr value against its entry. An entry's value must be
//! exactly the parts `format::xattr_part_lens` gives, in a slot no other xattr of the inode
//! uses; every part must belong to an entry; and an image holding external values must say
//! so in its superblock (`FEATURE_INCOMPAT_XATTR_VALUES`), or an older stablefs would misread
//! it. `--repair` drops a damaged xattr with what is left of its value, drops unclaimed parts
//! and sets a missing feature bit; two xattrs sharing a slot are only reported.

use super::namespace::Analysis;
use super::report::Check;
use super::scan::{Findings, Scan};
use crate::format::{xattr_part_lens, FEATURE_INCOMPAT_XATTR_VALUES};
use std::collections::{BTreeMap, BTreeSet};

fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

pub(super) fn check(scan: &Scan, a: &mut Analysis, f: &mut Findings) {
    let any_external = scan.xattr_values.values().any(|v| !v.is_empty());
    if any_external && scan.sb.incompat & FEATURE_INCOMPAT_XATTR_VALUES == 0 {
        f.error(
            Check::XattrValue,
            true,
            None,
            None,
            "external xattr values exist but the superblock lacks their incompat feature bit \
             (an older stablefs would misread them)"
                .into(),
        );
        a.set_xattr_feature = true;
    }
    let inodes: BTreeSet<u64> = scan
        .xattr_values
        .keys()
        .chain(scan.xattr_parts.keys())
        .copied()
        .collect();
    let none = BTreeMap::new();
    for ino in inodes {
        // Items of an object without an inode are `ItemsWithoutInode`'s.
        if !scan.inodes.contains_key(&ino) {
            continue;
        }
        let entries = scan.xattr_values.get(&ino).map_or(&[][..], |v| v);
        let parts = scan.xattr_parts.get(&ino).unwrap_or(&none);
        check_inode(scan, ino, entries, parts, a, f);
    }
}

fn check_inode(
    scan: &Scan,
    ino: u64,
    entries: &[(Vec<u8>, u64, u32)],
    parts: &BTreeMap<u64, Vec<(u64, usize)>>,
    a: &mut Analysis,
    f: &mut Findings,
) {
    let mut owners: BTreeMap<u64, Vec<&[u8]>> = BTreeMap::new();
    for (name, slot, _) in entries {
        owners.entry(*slot).or_default().push(name);
    }
    for (slot, names) in &owners {
        if names.len() > 1 {
            let shown: Vec<String> = names.iter().map(|n| show(n)).collect();
            f.error(
                Check::XattrValue,
                false,
                Some(ino),
                None,
                format!(
                    "inode {ino}: xattrs {} share the value slot {slot:#x}",
                    shown.join(", ")
                ),
            );
        }
    }
    for (name, slot, len) in entries {
        if owners[slot].len() > 1 {
            continue;
        }
        let want: Vec<(u64, usize)> = xattr_part_lens(*len as usize, scan.sb.block_size)
            .into_iter()
            .enumerate()
            .map(|(i, l)| (i as u64, l))
            .collect();
        let have = parts.get(slot).map_or(&[][..], |v| v);
        if have != want {
            let held: usize = have.iter().map(|p| p.1).sum();
            f.error(
                Check::XattrValue,
                true,
                Some(ino),
                None,
                format!(
                    "inode {ino}: xattr {} says its value is {len} bytes in {} part(s) of slot \
                     {slot:#x}; the slot holds {} part(s), {held} bytes",
                    show(name),
                    want.len(),
                    have.len()
                ),
            );
            a.drop_xattrs.push((ino, name.clone()));
        }
    }
    for (slot, have) in parts {
        if owners.contains_key(slot) {
            continue;
        }
        let held: usize = have.iter().map(|p| p.1).sum();
        f.error(
            Check::XattrStrayParts,
            true,
            Some(ino),
            None,
            format!(
                "inode {ino}: {} xattr value part(s), {held} bytes, in slot {slot:#x} that no \
                 xattr claims",
                have.len()
            ),
        );
        a.drop_xattr_parts.push((ino, *slot));
    }
}
