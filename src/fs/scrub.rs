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
    BlockNo, BlockPtr, Key, NodeIdentity, ScrubItem, KIND_SCRUB, OBJECT_FS, SCRUB_CURRENT,
    SCRUB_LAST,
};
use crate::scrub::control::{Reply, Request};
use crate::scrub::online::{self, BadData, Collected, Scrubber, Target};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
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

    /// Reads one block under the read gate (the caller holds it) and says what is wrong with
    /// it according to `check`, or `None`.
    fn scrub_reread(
        &self,
        block: u64,
        check: impl FnOnce(&AlignedBuf) -> Option<String>,
    ) -> (Option<String>, AlignedBuf) {
        let mut buf = AlignedBuf::zeroed(self.bs as usize);
        match self.scrub_read(block, &mut buf) {
            Ok(()) => (check(&buf), buf),
            Err(e) => (Some(format!("device read error: {e}")), buf),
        }
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

    /// Reads device blocks from `block` into `buf`, counted like any other read. No lock held.
    fn scrub_read(&self, block: u64, buf: &mut AlignedBuf) -> std::io::Result<()> {
        let r = self.store.device().read_at(block * u64::from(self.bs), buf);
        match &r {
            Ok(()) => {
                self.store
                    .counters
                    .bytes_read
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.store
                    .counters
                    .device_read_errors
                    .fetch_add(1, Ordering::Relaxed);
                log::error!("scrub: device read error at block {block}: {e}");
            }
        }
        r
    }

    /// Copy `copy` (1 or 2) of data block `block`, file block `fb` of `ino`, failed against
    /// `crc`. Confirmed only if the current tree still maps `fb` there (as that copy) with that
    /// crc, it is not being written back, and a second read under the read gate fails again;
    /// otherwise the block changed owner and `None` is returned. On a `copies=2` filesystem the
    /// other copy is then read, and if it verifies the bad one is rewritten from it (not on a
    /// read-only mount), under the same gate, so the write can only land on a block that is
    /// still this copy of this block (see `repair_data_copy`). Counted as the read path counts:
    /// a bad copy with a good twin in `data_bad_copies`, a block with no good copy in
    /// `checksum_errors` (or as a device read error).
    fn scrub_recheck_data(
        &self,
        ino: Ino,
        fb: u64,
        block: u64,
        crc: u32,
        copy: u8,
    ) -> Option<BadData> {
        let (st, other) = {
            let mut st = self.lock();
            let other = match st.extent_at(ino, fb) {
                Ok(Some((start, e))) if e.crcs[(fb - start) as usize] == crc => {
                    let i = fb - start;
                    let first = e.disk_start + i;
                    let second = e.copy_start.map(|c| c + i);
                    match copy {
                        1 if first == block => Some(second),
                        2 if second == Some(block) => Some(Some(first)),
                        _ => None,
                    }
                }
                _ => None,
            };
            let writing = st.is_writing_back(ino, fb);
            match other {
                Some(other) if !writing => (st, other),
                _ => return None,
            }
        };
        let _gate = self.store.read_gate();
        drop(st);
        let (why, _) = self.scrub_reread(block, |b| online::data_block_error(b, crc));
        let why = why?;
        let offset = fb * u64::from(self.bs);
        let Some(other) = other else {
            if why.starts_with("checksum") {
                self.store
                    .counters
                    .checksum_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            log::error!("scrub: inode {ino} file offset {offset} device block {block}: {why}");
            return Some(BadData {
                why,
                copy: None,
                repaired: false,
            });
        };
        let (other_bad, good) = self.scrub_reread(other, |b| online::data_block_error(b, crc));
        let repaired = if other_bad.is_none() {
            self.store
                .counters
                .data_bad_copies
                .fetch_add(1, Ordering::Relaxed);
            log::error!(
                "scrub: inode {ino} file offset {offset} copy {copy} (device block {block}): \
                 {why}; the other copy is good"
            );
            self.store.repair_data_copy(ino, block, &good)
        } else {
            // Both bad: one checksum error for the block (counted once, by its first copy).
            if copy == 1 {
                self.store
                    .counters
                    .checksum_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            log::error!(
                "scrub: inode {ino} file offset {offset} copy {copy} (device block {block}): \
                 {why}; the other copy is bad too"
            );
            false
        };
        Some(BadData {
            why,
            copy: Some(copy),
            repaired,
        })
    }

    /// Copy `copy` of the node `ptr` names failed. Confirmed only if the node (found again by
    /// `key`, a key below it) is still in the current tree with that pointer and a second
    /// read under the read gate fails again; then the copy is rewritten from the other one if
    /// that one verifies (not on a read-only mount). Returns why, and whether it was repaired.
    fn scrub_recheck_node(
        &self,
        key: &Key,
        level: u8,
        ptr: &BlockPtr,
        copy: u8,
    ) -> Option<(String, bool)> {
        let (bad, good) = match (copy, ptr.copy_addr) {
            (1, other) => (ptr.addr, other),
            (_, Some(c)) => (c, Some(ptr.addr)),
            (_, None) => return None,
        };
        let (st, id, healer) = {
            let mut st = self.lock();
            if st.meta.tree.node_ptr_at(key, level).ok().flatten() != Some(*ptr) {
                return None;
            }
            let id = *st.meta.tree.identity();
            let healer = st.meta.tree.io().healer();
            (st, id, healer)
        };
        let _gate = self.store.read_gate();
        drop(st);
        let (why, _) = self.scrub_reread(bad.0, |b| online::node_copy_error(&id, b, ptr, level));
        let why = why?;
        self.tree_stats.bad_copies.fetch_add(1, Ordering::Relaxed);
        log::error!(
            "scrub: copy {copy} of tree node {} (block {bad}): {why}",
            ptr.addr
        );
        let repaired = match good {
            Some(good) => {
                let (other, buf) =
                    self.scrub_reread(good.0, |b| online::node_copy_error(&id, b, ptr, level));
                other.is_none() && healer.heal_copy(BlockNo(bad.0), &buf)
            }
            None => false,
        };
        Some((why, repaired))
    }

    /// Every path to each of `inos`, from the current directory entries.
    fn scrub_paths(&self, inos: &HashSet<Ino>) -> HashMap<Ino, Vec<String>> {
        online::paths_of(&mut self.lock().meta, inos)
    }
}
