//! Names in directories, as the tree holds them: a bucket of links per name hash
//! (`(dir, DIRENT, hash)`) and an index item per directory cookie (`(dir, DIRINDEX,
//! cookie)`, what `readdir` walks). The one place that writes them, for the filesystem and
//! for `fsck --repair` alike.

use super::types::{FileKind, Ino};
use crate::error::{errno, Result};
use crate::format::{
    decode_dirent_bucket, encode_dirent_bucket, encode_dirindex, name_hash, DirLink, Key,
    KIND_DIRENT, KIND_DIRINDEX,
};
use crate::tree::Tree;

/// The key of the bucket that holds `name` in `dir`, and the links in it.
pub fn bucket(tree: &mut Tree, dir: Ino, name: &[u8]) -> Result<(Key, Vec<DirLink>)> {
    let key = Key::new(dir, KIND_DIRENT, name_hash(name));
    let links = match tree.get(&key)? {
        Some(v) => decode_dirent_bucket(&v)?,
        None => Vec::new(),
    };
    Ok((key, links))
}

/// Adds `name -> ino` (a `kind`) to `dir` under directory cookie `cookie`, which the caller
/// has taken from the directory (cookies are never reused). `EEXIST` if `dir` has the name.
pub fn add_name(
    tree: &mut Tree,
    dir: Ino,
    name: &[u8],
    ino: Ino,
    kind: FileKind,
    cookie: u64,
) -> Result<()> {
    let (key, mut links) = bucket(tree, dir, name)?;
    if links.iter().any(|l| l.name == name) {
        return errno(libc::EEXIST);
    }
    links.push(DirLink {
        name: name.to_vec(),
        ino,
        kind,
        cookie,
    });
    tree.insert(key, encode_dirent_bucket(&links))?;
    tree.insert(
        Key::new(dir, KIND_DIRINDEX, cookie),
        encode_dirindex(ino, kind, name),
    )
}
