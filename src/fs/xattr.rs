//! Extended attributes: the `*xattr` operations, and `get`/`put` for code that keeps its own
//! attributes (POSIX ACLs, `security.capability`) under the state lock.
//!
//! Every xattr of an inode lives in the XATTR bucket of its name's hash (see `format::item`).
//! A value small enough stays inline in the bucket; a bigger one (up to `XATTR_SIZE_MAX`,
//! 64 KiB) goes out of line into XATTR_VALUE items under a slot of its own, the bucket entry
//! recording its length and slot. Replacing or removing an xattr removes its old parts first;
//! deleting the inode removes every item it has (`State::purge`).

use super::*;
use crate::format::{
    decode_xattr_bucket, encode_xattr_bucket, max_item_value, name_hash, xattr_part_key,
    xattr_part_lens, XattrEntry, XattrValue, FEATURE_INCOMPAT_XATTR_VALUES, KIND_XATTR,
    XATTR_NAME_MAX, XATTR_PART_BITS, XATTR_SIZE_MAX, XATTR_SLOT_LIMIT,
};

/// Nodes above a leaf that one change may rewrite (the tree's height, generously).
const PATH_NODES: u64 = 8;

/// The key of `name`'s bucket and its entries.
fn bucket(st: &mut State, ino: Ino, name: &[u8]) -> Result<(Key, Vec<XattrEntry>)> {
    let key = Key::new(ino, KIND_XATTR, name_hash(name));
    let list = match st.meta.tree.get(&key)? {
        Some(v) => decode_xattr_bucket(&v)?,
        None => Vec::new(),
    };
    Ok((key, list))
}

/// A name the kernel could have sent: 1 to 255 bytes, no NUL.
fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.contains(&0) {
        return errno(libc::EINVAL);
    }
    if name.len() > XATTR_NAME_MAX {
        return errno(libc::ERANGE);
    }
    Ok(())
}

/// The external value in `slot` of `ino`, `len` bytes: its parts must be exactly those
/// `xattr_part_lens` gives.
fn read_external(st: &mut State, ino: Ino, slot: u64, len: usize) -> Result<Vec<u8>> {
    let lens = xattr_part_lens(len, st.meta.sb.block_size);
    let from = xattr_part_key(ino, slot, 0);
    let to = xattr_part_key(ino, slot, (1 << XATTR_PART_BITS) - 1);
    let parts = st.meta.tree.range(&from, &to, lens.len() + 1)?;
    let corrupt = |why: String| {
        Err(Error::Corrupt(format!(
            "inode {ino}: xattr value in slot {slot:#x}: {why}"
        )))
    };
    if parts.len() != lens.len() {
        return corrupt(format!("{} parts, {} expected", parts.len(), lens.len()));
    }
    let mut out = Vec::with_capacity(len);
    for (i, ((k, v), want)) in parts.into_iter().zip(lens).enumerate() {
        if k != xattr_part_key(ino, slot, i as u64) || v.len() != want {
            return corrupt(format!("part {i} missing or {} bytes", v.len()));
        }
        out.extend_from_slice(&v);
    }
    Ok(out)
}

/// Removes every part of the external value in `slot` of `ino`.
fn remove_parts(st: &mut State, ino: Ino, slot: u64) -> Result<()> {
    let from = xattr_part_key(ino, slot, 0);
    let to = xattr_part_key(ino, slot, (1 << XATTR_PART_BITS) - 1);
    loop {
        let parts = st.meta.tree.range(&from, &to, 64)?;
        if parts.is_empty() {
            return Ok(());
        }
        for (k, _) in parts {
            st.meta.tree.remove(&k)?;
        }
    }
}

/// A slot no other xattr of `ino` uses: the name's hash, or the first free one after it.
/// Every external value has a part 0, so a slot without one is free.
fn free_slot(st: &mut State, ino: Ino, name: &[u8]) -> Result<u64> {
    let mut slot = name_hash(name) >> XATTR_PART_BITS;
    while st.meta.tree.get(&xattr_part_key(ino, slot, 0))?.is_some() {
        slot = (slot + 1) % XATTR_SLOT_LIMIT;
    }
    Ok(slot)
}

/// The value of xattr `name` of `ino`, if it has one. For callers holding the state lock.
pub(crate) fn get(st: &mut State, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>> {
    check_name(name)?;
    st.inode(ino)?;
    let (_, list) = bucket(st, ino, name)?;
    let Some(x) = list.into_iter().find(|x| x.name == name) else {
        return Ok(None);
    };
    match x.value {
        XattrValue::Inline(v) => Ok(Some(v)),
        XattrValue::External { len, slot } => read_external(st, ino, slot, len as usize).map(Some),
    }
}

/// Sets xattr `name` of `ino` to `value`, or removes it (`None`; nothing if it has none). For
/// callers holding the state lock, who check `XATTR_CREATE`/`XATTR_REPLACE`, reserve space
/// (`reservation`) and set the inode's ctime themselves. Nothing changes unless it succeeds.
pub(crate) fn put(st: &mut State, ino: Ino, name: &[u8], value: Option<&[u8]>) -> Result<()> {
    check_name(name)?;
    if value.is_some_and(|v| v.len() > XATTR_SIZE_MAX) {
        return errno(libc::E2BIG);
    }
    st.inode(ino)?;
    let (key, mut list) = bucket(st, ino, name)?;
    let pos = list.iter().position(|x| x.name == name);
    let old_slot = pos.and_then(|p| match list[p].value {
        XattrValue::External { slot, .. } => Some(slot),
        XattrValue::Inline(_) => None,
    });
    let max = max_item_value(st.meta.sb.block_size);
    // The new bucket, decided (and known to fit) before anything changes.
    let mut external = None;
    match value {
        None => {
            let Some(p) = pos else {
                return Ok(());
            };
            list.remove(p);
        }
        Some(v) => {
            let p = match pos {
                Some(p) => p,
                None => {
                    list.push(XattrEntry::inline(name, &[]));
                    list.len() - 1
                }
            };
            list[p].value = XattrValue::Inline(v.to_vec());
            let others: usize =
                list.iter().map(XattrEntry::encoded_len).sum::<usize>() - list[p].encoded_len();
            if others + list[p].encoded_len() > max {
                let slot = match old_slot {
                    Some(s) => s,
                    None => free_slot(st, ino, name)?,
                };
                list[p].value = XattrValue::External {
                    len: v.len() as u32,
                    slot,
                };
                if others + list[p].encoded_len() > max {
                    return errno(libc::E2BIG);
                }
                external = Some((slot, v));
            }
        }
    }
    if let Some(slot) = old_slot {
        remove_parts(st, ino, slot)?;
    }
    if let Some((slot, v)) = external {
        let mut at = 0;
        for (i, n) in xattr_part_lens(v.len(), st.meta.sb.block_size)
            .into_iter()
            .enumerate()
        {
            st.meta
                .tree
                .insert(xattr_part_key(ino, slot, i as u64), v[at..at + n].to_vec())?;
            at += n;
        }
        // From this commit on, an older stablefs must refuse the image.
        st.meta.sb.incompat |= FEATURE_INCOMPAT_XATTR_VALUES;
    }
    if list.is_empty() {
        st.meta.tree.remove(&key)?;
    } else {
        st.meta.tree.insert(key, encode_xattr_bucket(&list))?;
    }
    Ok(())
}

/// Blocks (in file blocks, as `Store::reserve` counts them) to reserve before setting a value
/// of `len` bytes: the tree nodes the running transaction changed so far and those the value
/// may take (a leaf per part at worst, and a path above), each written once per metadata copy.
pub(crate) fn reservation(st: &State, len: usize) -> u64 {
    let leaves = xattr_part_lens(len, st.meta.sb.block_size).len() as u64 + 1;
    let nodes = st.meta.tree.dirty_nodes() as u64 + leaves + PATH_NODES;
    let copies = if st.meta.sb.metadata_dup() { 2 } else { 1 };
    (nodes * copies).div_ceil(st.data_copies())
}

impl Fs {
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        if super::acl::is_acl(name) {
            // Tools and tests: root's rules (the adapter calls `set_acl` with the caller).
            return self.set_acl(ino, name, value, flags, &Caller::ROOT);
        }
        check_name(name)?;
        if value.len() > XATTR_SIZE_MAX {
            return errno(libc::E2BIG);
        }
        let _change = self.begin_change()?;
        let mut st = self.lock();
        let mut i = st.inode(ino)?;
        super::flags::refuse_change(&i)?;
        let exists = bucket(&mut st, ino, name)?.1.iter().any(|x| x.name == name);
        // As ext4: REPLACE wants it there, CREATE wants it absent (both: whichever fails).
        if flags & XATTR_REPLACE != 0 && !exists {
            return errno(libc::ENODATA);
        }
        if flags & XATTR_CREATE != 0 && exists {
            return errno(libc::EEXIST);
        }
        self.store
            .reserve(&st, reservation(&st, value.len()), Reserve::Names)?;
        put(&mut st, ino, name, Some(value))?;
        i.ctime = super::clock::now();
        st.put_inode(ino, &i)
    }

    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        let mut st = self.lock();
        get(&mut st, ino, name)?.ok_or(Error::Errno(libc::ENODATA))
    }

    /// Every name, each followed by a NUL, in the order of their hashes.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        self.listxattr_as(ino, true)
    }

    /// The names a caller sees: as ext4, `trusted.*` names only if it is privileged
    /// (CAP_SYS_ADMIN; the FUSE adapter takes root for that).
    pub fn listxattr_as(&self, ino: Ino, privileged: bool) -> Result<Vec<u8>> {
        let mut st = self.lock();
        st.inode(ino)?;
        let items = st.meta.tree.range(
            &Key::new(ino, KIND_XATTR, 0),
            &Key::new(ino, KIND_XATTR, u64::MAX),
            usize::MAX,
        )?;
        let mut out = Vec::new();
        for (_, v) in items {
            for x in decode_xattr_bucket(&v)? {
                if !privileged && x.name.starts_with(b"trusted.") {
                    continue;
                }
                out.extend_from_slice(&x.name);
                out.push(0);
            }
        }
        Ok(out)
    }

    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<()> {
        check_name(name)?;
        let _change = self.begin_change()?;
        let mut st = self.lock();
        let mut i = st.inode(ino)?;
        super::flags::refuse_change(&i)?;
        let (_, list) = bucket(&mut st, ino, name)?;
        if !list.iter().any(|x| x.name == name) {
            return errno(libc::ENODATA);
        }
        put(&mut st, ino, name, None)?;
        i.ctime = super::clock::now();
        st.put_inode(ino, &i)
    }
}
