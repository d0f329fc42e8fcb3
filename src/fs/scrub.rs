//! What the online scrub (`crate::scrub::online`) needs from a mounted filesystem: its record
//! in the tree, the work collected under the state lock, device reads counted like any other,
//! and the re-check of a block that failed verification against the current tree, under the
//! read gate (see the invariant in `scrub::online`).

use super::types::{FileKind, Ino, ROOT_INO};
use super::Fs;
use super::State;
use crate::device::AlignedBuf;
use crate::error::Result;
use crate::format::{
    BlockPtr, Key, NodeIdentity, ScrubItem, KIND_SCRUB, OBJECT_FS, SCRUB_CURRENT, SCRUB_LAST,
};
use crate::scrub::control::{Reply, Request};
use crate::scrub::online::{self, BadData, Collected, Scrubber};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

impl State {
    /// The SCRUB item under `which`, if there is one that decodes (a bad one is logged and
    /// ignored: the next scrub overwrites it).
    fn scrub_item(&mut self, which: u64) -> Option<ScrubItem> {
        let key = Key::new(OBJECT_FS, KIND_SCRUB, which);
        match self.meta.tree.get(&key) {
            Ok(Some(v)) => match ScrubItem::decode(&v, which, self.meta.sb.total_blocks) {
                Ok(i) => Some(i),
                Err(e) => {
                    log::warn!("the scrub record {which} does not decode ({e}); ignoring it");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                log::warn!("the scrub record {which} cannot be read ({e}); ignoring it");
                None
            }
        }
    }

    /// The path of directory (or file) `ino` from the root, following `..` and looking the name
    /// up in the parent; for a file, its first name found.
    fn path_of(&mut self, ino: Ino) -> Result<String> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut at = ino;
        for _ in 0..4096 {
            if at == ROOT_INO {
                parts.reverse();
                let joined: Vec<String> = parts
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
                return Ok(format!("/{}", joined.join("/")));
            }
            let inode = self.inode(at)?;
            let parent = if inode.kind() == FileKind::Dir {
                inode.parent
            } else {
                // A file: scrubbing a single file names it by its inode only.
                return Ok(format!("inode {ino}"));
            };
            let mut cookie = 0;
            let name = 'find: loop {
                let entries = self.dir_entries(parent, cookie, 256)?;
                let Some(last) = entries.last().map(|e| e.cookie) else {
                    break 'find None;
                };
                if let Some(e) = entries.into_iter().find(|e| e.ino == at) {
                    break 'find Some(e.name);
                }
                cookie = last;
            };
            parts.push(name.unwrap_or_else(|| format!("(inode {at})").into_bytes()));
            at = parent;
        }
        Ok(format!("inode {ino}"))
    }
}

/// The scrubber of a filesystem being mounted, from its record in the tree.
pub(super) fn load_scrubber(st: &mut State, read_only: bool) -> Scrubber {
    let current = st.scrub_item(SCRUB_CURRENT);
    let last = st.scrub_item(SCRUB_LAST);
    let path = current
        .as_ref()
        .map(|c| {
            st.path_of(c.subtree)
                .unwrap_or_else(|_| format!("inode {} (gone)", c.subtree))
        })
        .unwrap_or_default();
    Scrubber::new(current, last, path, read_only, st.meta.sb.block_size)
}

impl Fs {
    /// One request of the scrub ioctl, issued on `ino` by user `uid` (see `scrub::control`).
    pub fn scrub_request(self: &Arc<Self>, uid: u32, ino: Ino, req: Request) -> Reply {
        let owner = nix::unistd::getuid().as_raw();
        self.scrub.request(self, uid, owner, ino, req)
    }

    /// The online scrub's status (`stablefs scrub status`).
    pub fn scrub_status(&self) -> crate::scrub::control::ScrubStatus {
        self.scrub.status()
    }
}

/// The filesystem as the online scrub sees it (see `scrub::online::Target`).
impl online::Target for Fs {
    fn scrub_subtree_path(&self, ino: Ino) -> Result<String> {
        self.lock().path_of(ino)
    }

    fn scrub_generation(&self) -> u64 {
        self.lock().meta.sb.generation
    }

    fn scrub_device_blocks(&self) -> u64 {
        self.lock().meta.sb.total_blocks
    }

    fn scrub_identity(&self) -> NodeIdentity {
        *self.lock().meta.tree.identity()
    }

    /// Puts the scrub's record in the tree (the next commit makes it durable): `current` under
    /// its key, or removes it when `None`; `last`, when given, under its key. Nothing on a
    /// read-only mount.
    fn scrub_save(&self, current: Option<&ScrubItem>, last: Option<&ScrubItem>) {
        if self.read_only {
            return;
        }
        let mut st = self.lock();
        let key = |which| Key::new(OBJECT_FS, KIND_SCRUB, which);
        let r = match current {
            Some(c) => st.meta.tree.insert(key(SCRUB_CURRENT), c.encode()),
            None => st.meta.tree.remove(&key(SCRUB_CURRENT)).map(drop),
        };
        let r = r.and_then(|()| match last {
            Some(l) => st.meta.tree.insert(key(SCRUB_LAST), l.encode()),
            None => Ok(()),
        });
        if let Err(e) = r {
            log::warn!("cannot record the scrub's progress: {e}");
        }
    }

    /// The work in device blocks `[from, to)` (see `online::collect`), for the data of the
    /// files under `subtree` (the root: all files). Commits first: a node changed since the
    /// last commit has no committed block in the tree (its old block is on its way to being
    /// freed), so without the commit the nodes on the path to the scrub's own record, the root
    /// among them, would never be verified. Then one walk of the in-memory tree under the
    /// state lock.
    fn scrub_collect(&self, from: u64, to: u64, subtree: Ino, max_run: u64) -> Result<Collected> {
        if let Err(e) = self.sync() {
            log::warn!("scrub: the commit before collecting work failed: {e}");
        }
        let mut st = self.lock();
        let files = online::subtree_files(subtree, |dir| {
            let mut out = Vec::new();
            let mut cookie = 0;
            loop {
                let entries = match st.dir_entries(dir, cookie, 1024) {
                    Ok(e) => e,
                    // Not a directory (a file as the subtree), or gone since.
                    Err(_) => return Ok(out),
                };
                let Some(last) = entries.last().map(|e| e.cookie) else {
                    return Ok(out);
                };
                out.extend(entries.iter().map(|e| (e.ino, e.kind == FileKind::Dir)));
                cookie = last;
            }
        })?;
        online::collect(&mut st.meta, from, to, files.as_ref(), max_run)
    }

    fn scrub_read(&self, block: u64, buf: &mut AlignedBuf) -> std::io::Result<()> {
        self.store.read_counted(block, buf)
    }

    fn scrub_recheck_data(
        &self,
        ino: Ino,
        fb: u64,
        block: u64,
        crc: u32,
        copy: u8,
    ) -> Option<BadData> {
        self.store.recheck_data_copy(ino, fb, block, crc, copy)
    }

    fn scrub_recheck_node(
        &self,
        key: &Key,
        level: u8,
        ptr: &BlockPtr,
        copy: u8,
    ) -> Option<(String, bool)> {
        self.store.recheck_node_copy(key, level, ptr, copy)
    }

    /// Every path to each of `inos`, from the current directory entries.
    fn scrub_paths(&self, inos: &HashSet<Ino>) -> HashMap<Ino, Vec<String>> {
        online::paths_of(&mut self.lock().meta, inos)
    }
}
