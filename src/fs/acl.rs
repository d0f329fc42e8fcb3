//! POSIX ACLs (`system.posix_acl_access`, `system.posix_acl_default`), as ext4 keeps them.
//!
//! With FUSE's POSIX ACL capability the kernel enforces ACLs and caches them; what it leaves
//! to the filesystem is what ext4 does in its own `set_acl` and at `chmod` and create:
//! - setting an access ACL updates the mode's permission bits from it (and stores no ACL when
//!   the mode says it all), clearing set-group-ID when the caller is neither in the file's
//!   group nor root (`posix_acl_update_mode`);
//! - `chmod` updates the owner, mask (or owning group) and other entries of the access ACL
//!   (`posix_acl_chmod`);
//! - a new node under a directory with a default ACL gets that ACL masked by the mode asked
//!   for, the umask ignored (`posix_acl_create`), and a new directory inherits the default
//!   ACL itself.
//!
//! The ACLs are stored as ordinary xattrs in the kernel's binary form (below), which the
//! kernel has already checked and sorted before it sends them; decoding checks it again,
//! since it also comes from disk.
//!
//! ```text
//! header   version u32 = 2
//! entry*   tag u16 | perm u16 | id u32     (little-endian; id only for ACL_USER/ACL_GROUP)
//! ```

use super::*;
use crate::format::InodeItem;

pub const ACCESS: &[u8] = b"system.posix_acl_access";
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
/// The id of the entries that name no one.
const UNDEFINED_ID: u32 = u32::MAX;
const HEADER: usize = 4;
const ENTRY: usize = 8;
/// Permission bits of one entry (read, write, execute).
const RWX: u16 = 0o7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub tag: u16,
    pub perm: u16,
    pub id: u32,
}

/// A decoded ACL: entries in the kernel's order (by tag, then id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl(pub Vec<Entry>);

impl Acl {
    /// Decodes and checks an ACL as `posix_acl_valid` does: exactly one owner, owning group
    /// and other entry, a mask when there are named entries, no id twice, sorted.
    pub fn decode(bytes: &[u8]) -> Result<Acl> {
        // Why does not matter to the caller: the kernel's answer is EINVAL for all of it.
        let bad = |_why: &str| Error::Errno(libc::EINVAL);
        if bytes.len() < HEADER || (bytes.len() - HEADER) % ENTRY != 0 {
            return Err(bad("size"));
        }
        if u32::from_le_bytes(bytes[..HEADER].try_into().expect("4 bytes")) != VERSION {
            return Err(bad("version"));
        }
        let entries: Vec<Entry> = bytes[HEADER..]
            .chunks_exact(ENTRY)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        let count = |tag| entries.iter().filter(|e| e.tag == tag).count();
        let named = count(USER) + count(GROUP);
        if count(USER_OBJ) != 1
            || count(GROUP_OBJ) != 1
            || count(OTHER) != 1
            || count(MASK) > 1
            || (named > 0 && count(MASK) == 0)
            || entries.len() != 3 + count(MASK) + named
        {
            return Err(bad("entries"));
        }
        // By tag; named entries of one tag by id, each id once.
        let in_order = |a: &Entry, b: &Entry| {
            a.tag < b.tag || (a.tag == b.tag && (a.tag == USER || a.tag == GROUP) && a.id < b.id)
        };
        if !entries.windows(2).all(|w| in_order(&w[0], &w[1])) {
            return Err(bad("order"));
        }
        if entries.iter().any(|e| e.perm & !RWX != 0) {
            return Err(bad("permissions"));
        }
        Ok(Acl(entries))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + ENTRY * self.0.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.0 {
            let id = if e.tag == USER || e.tag == GROUP {
                e.id
            } else {
                UNDEFINED_ID
            };
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// The permission bits the ACL stands for, and whether the mode says all of it
    /// (`posix_acl_equiv_mode`): the owning group's bits are the mask's when there is one.
    pub fn equiv_mode(&self) -> (u32, bool) {
        let mut mode = 0;
        let mut equivalent = true;
        for e in &self.0 {
            let p = u32::from(e.perm & RWX);
            match e.tag {
                USER_OBJ => mode |= p << 6,
                GROUP_OBJ => mode |= p << 3,
                OTHER => mode |= p,
                MASK => {
                    mode = (mode & !0o070) | (p << 3);
                    equivalent = false;
                }
                _ => equivalent = false,
            }
        }
        (mode, equivalent)
    }

    /// `chmod` of a file with this access ACL (`posix_acl_chmod`).
    pub fn chmod(&mut self, mode: u32) {
        let has_mask = self.0.iter().any(|e| e.tag == MASK);
        for e in &mut self.0 {
            match e.tag {
                USER_OBJ => e.perm = ((mode >> 6) & 0o7) as u16,
                OTHER => e.perm = (mode & 0o7) as u16,
                MASK => e.perm = ((mode >> 3) & 0o7) as u16,
                GROUP_OBJ if !has_mask => e.perm = ((mode >> 3) & 0o7) as u16,
                _ => {}
            }
        }
    }

    /// A new node's access ACL from its directory's default ACL (`posix_acl_create_masq`):
    /// the entries are masked by the mode asked for, and the mode by the entries. Returns the
    /// ACL (`None` when the mode says it all) and the new mode.
    pub fn create_masq(&self, mode: u32) -> (Option<Acl>, u32) {
        let mut acl = self.clone();
        let mut m = mode & 0o777;
        let mut equivalent = true;
        let has_mask = acl.0.iter().any(|e| e.tag == MASK);
        for e in &mut acl.0 {
            match e.tag {
                USER_OBJ => {
                    e.perm &= ((m >> 6) & 0o7) as u16;
                    m &= (u32::from(e.perm) << 6) | !0o700;
                }
                OTHER => {
                    e.perm &= (m & 0o7) as u16;
                    m &= u32::from(e.perm) | !0o007;
                }
                MASK | USER | GROUP => equivalent = false,
                _ => {}
            }
        }
        let group_class = if has_mask { MASK } else { GROUP_OBJ };
        if let Some(e) = acl.0.iter_mut().find(|e| e.tag == group_class) {
            e.perm &= ((m >> 3) & 0o7) as u16;
            m &= (u32::from(e.perm) << 3) | !0o070;
        }
        let mode = (mode & !0o777) | m;
        (if equivalent { None } else { Some(acl) }, mode)
    }
}

/// What a new node starts with: its mode, and the ACLs to store (encoded).
pub(super) struct NewNode {
    pub mode: u32,
    pub access: Option<Vec<u8>>,
    /// A directory's inherited default ACL.
    pub default: Option<Vec<u8>>,
}

/// Which ACL an xattr name is, if any.
pub fn is_acl(name: &[u8]) -> bool {
    name == ACCESS || name == DEFAULT
}

impl Fs {
    /// `setxattr` of `system.posix_acl_access` or `_default` by `who` (see the module doc).
    pub fn set_acl(
        &self,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: i32,
        who: &Caller,
    ) -> Result<()> {
        let acl = Acl::decode(value)?;
        let _change = self.begin_change()?;
        let mut st = self.lock();
        let need = super::xattr::reservation(&st, value.len());
        self.store.reserve(&st, need, Reserve::Names)?;
        let mut i = st.inode(ino)?;
        super::flags::refuse_change(&i)?;
        let exists = super::xattr::get(&mut st, ino, name)?.is_some();
        match (exists, flags) {
            (true, XATTR_CREATE) => return errno(libc::EEXIST),
            (false, XATTR_REPLACE) => return errno(libc::ENODATA),
            _ => {}
        }
        if name == DEFAULT {
            if i.kind() != FileKind::Dir {
                return errno(libc::EACCES);
            }
            super::xattr::put(&mut st, ino, name, Some(&acl.encode()))?;
        } else {
            let (bits, equivalent) = acl.equiv_mode();
            let mut mode = (i.mode & !0o777) | bits;
            if who.uid != 0 && !who.in_group(i.gid) {
                mode &= !libc::S_ISGID;
            }
            i.mode = mode;
            let stored = (!equivalent).then(|| acl.encode());
            super::xattr::put(&mut st, ino, name, stored.as_deref())?;
        }
        i.ctime = super::clock::now();
        st.put_inode(ino, &i)?;
        // The mode changed behind the kernel's back (its setxattr reply has no attributes).
        self.attrs_changed(ino);
        Ok(())
    }

    /// `chmod` of `ino` (its new mode in `i`): the access ACL follows.
    pub(super) fn acl_chmod(st: &mut State, ino: Ino, i: &InodeItem) -> Result<()> {
        let Some(bytes) = super::xattr::get(st, ino, ACCESS)? else {
            return Ok(());
        };
        let mut acl = Acl::decode(&bytes).map_err(|_| corrupt_acl(ino))?;
        acl.chmod(i.mode);
        super::xattr::put(st, ino, ACCESS, Some(&acl.encode()))
    }

    /// The mode and ACLs of a node about to be created under `dir` with `mode` asked for by
    /// `who`: from the directory's default ACL if it has one, else from the caller's umask.
    pub(super) fn acl_create(st: &mut State, dir: Ino, mode: u32, who: &Caller) -> Result<NewNode> {
        let plain = |mode| NewNode {
            mode,
            access: None,
            default: None,
        };
        if mode & libc::S_IFMT == libc::S_IFLNK {
            return Ok(plain(mode));
        }
        let Some(bytes) = super::xattr::get(st, dir, DEFAULT)? else {
            return Ok(plain(mode & !(who.umask & 0o777)));
        };
        let default = Acl::decode(&bytes).map_err(|_| corrupt_acl(dir))?;
        let (access, mode) = default.create_masq(mode);
        Ok(NewNode {
            mode,
            access: access.map(|a| a.encode()),
            default: (mode & libc::S_IFMT == libc::S_IFDIR).then_some(bytes),
        })
    }
}

fn corrupt_acl(ino: Ino) -> Error {
    Error::Corrupt(format!("inode {ino}: a POSIX ACL that does not decode"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(tag: u16, perm: u16, id: u32) -> Entry {
        Entry { tag, perm, id }
    }

    fn minimal(mode: u32) -> Acl {
        Acl(vec![
            e(USER_OBJ, ((mode >> 6) & 7) as u16, UNDEFINED_ID),
            e(GROUP_OBJ, ((mode >> 3) & 7) as u16, UNDEFINED_ID),
            e(OTHER, (mode & 7) as u16, UNDEFINED_ID),
        ])
    }

    fn named() -> Acl {
        Acl(vec![
            e(USER_OBJ, 7, UNDEFINED_ID),
            e(USER, 6, 1000),
            e(GROUP_OBJ, 5, UNDEFINED_ID),
            e(GROUP, 4, 2000),
            e(MASK, 6, UNDEFINED_ID),
            e(OTHER, 1, UNDEFINED_ID),
        ])
    }

    #[test]
    fn round_trip_and_validation() {
        for acl in [minimal(0o754), named()] {
            assert_eq!(Acl::decode(&acl.encode()).unwrap(), acl);
        }
        let bad = [
            Acl(vec![e(USER_OBJ, 7, 0), e(OTHER, 0, 0)]),
            Acl(vec![
                e(USER_OBJ, 7, 0),
                e(USER, 7, 5),
                e(GROUP_OBJ, 7, 0),
                e(OTHER, 0, 0),
            ]),
            Acl(vec![e(GROUP_OBJ, 7, 0), e(USER_OBJ, 7, 0), e(OTHER, 0, 0)]),
            Acl(vec![e(USER_OBJ, 8, 0), e(GROUP_OBJ, 7, 0), e(OTHER, 0, 0)]),
            Acl(vec![
                e(USER_OBJ, 7, 0),
                e(USER, 7, 5),
                e(USER, 7, 5),
                e(GROUP_OBJ, 7, 0),
                e(MASK, 7, 0),
                e(OTHER, 0, 0),
            ]),
        ];
        for acl in bad {
            assert_eq!(
                Acl::decode(&acl.encode()).unwrap_err().errno(),
                libc::EINVAL,
                "{acl:?}"
            );
        }
        assert!(Acl::decode(&[2, 0, 0]).is_err());
        assert!(Acl::decode(&[1, 0, 0, 0]).is_err());
    }

    #[test]
    fn mode_from_acl_and_back() {
        assert_eq!(minimal(0o754).equiv_mode(), (0o754, true));
        assert_eq!(named().equiv_mode(), (0o761, false));
        let mut acl = named();
        acl.chmod(0o640);
        assert_eq!(acl.equiv_mode(), (0o640, false));
        // The owning group's entry keeps its bits: the mask took the change.
        assert!(acl.0.contains(&e(GROUP_OBJ, 5, UNDEFINED_ID)));
        let mut plain = minimal(0o777);
        plain.chmod(0o705);
        assert_eq!(plain, minimal(0o705));
    }

    #[test]
    fn create_masks_entries_and_mode() {
        let (acl, mode) = minimal(0o750).create_masq(libc::S_IFREG | 0o666);
        assert_eq!((acl, mode), (None, libc::S_IFREG | 0o640));
        let (acl, mode) = named().create_masq(libc::S_IFDIR | 0o777);
        assert_eq!(mode, libc::S_IFDIR | 0o761);
        assert_eq!(acl.unwrap(), named());
        let (acl, mode) = named().create_masq(libc::S_IFREG | 0o600);
        assert_eq!(mode, libc::S_IFREG | 0o600);
        let acl = acl.unwrap();
        assert!(acl.0.contains(&e(MASK, 0, UNDEFINED_ID)));
        assert!(
            acl.0.contains(&e(USER, 6, 1000)),
            "named entries keep their bits"
        );
    }
}
