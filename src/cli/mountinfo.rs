//! A mount's generic flags as the kernel shows them in `/proc/self/mountinfo`: what
//! `stablefs remount` starts from, and what the daemon's watcher compares with what it does.

use stablefs::fs::ms;
use std::path::Path;

/// One mount of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the filesystem.
    pub dev: String,
    pub mountpoint: String,
    pub fstype: String,
    /// `MS_*` flags of the mount and its superblock, `MS_RDONLY` included.
    pub ms_flags: u64,
}

impl MountEntry {
    pub fn read_only(&self) -> bool {
        self.ms_flags & ms(libc::MS_RDONLY) != 0
    }
}

/// The options of the mount (field 6) and of the superblock (the last field) that map to
/// `MS_*` flags. `relatime` is not among them: the kernel's default; `strictatime` shows as
/// neither `relatime` nor `noatime`.
fn flag_of(option: &str) -> u64 {
    ms(match option {
        "ro" => libc::MS_RDONLY,
        "nosuid" => libc::MS_NOSUID,
        "nodev" => libc::MS_NODEV,
        "noexec" => libc::MS_NOEXEC,
        "noatime" => libc::MS_NOATIME,
        "nodiratime" => libc::MS_NODIRATIME,
        "relatime" => libc::MS_RELATIME,
        "sync" => libc::MS_SYNCHRONOUS,
        "dirsync" => libc::MS_DIRSYNC,
        "lazytime" => libc::MS_LAZYTIME,
        _ => 0,
    })
}

/// Undoes the octal escapes (`\040` for a space) of mountinfo's paths.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one line; `None` if it is not a mountinfo line.
pub fn parse_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let f: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.split(' ').collect();
    if f.len() < 6 || r.len() < 3 {
        return None;
    }
    let mut ms_flags = 0;
    for option in f[5].split(',').chain(r[2].split(',')) {
        ms_flags |= flag_of(option);
    }
    if ms_flags & ms(libc::MS_NOATIME) == 0 && ms_flags & ms(libc::MS_RELATIME) == 0 {
        ms_flags |= ms(libc::MS_STRICTATIME);
    }
    Some(MountEntry {
        dev: f[2].to_string(),
        mountpoint: unescape(f[4]),
        fstype: r[0].to_string(),
        ms_flags,
    })
}

/// The topmost mount on `mountpoint` (canonical), in `text` (mountinfo's content).
pub fn find(text: &str, mountpoint: &Path) -> Option<MountEntry> {
    let want = mountpoint.to_string_lossy();
    text.lines()
        .rev()
        .filter_map(parse_line)
        .find(|m| m.mountpoint == want)
}

/// The topmost mount on `mountpoint`, now.
pub fn current(mountpoint: &Path) -> Result<MountEntry, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    find(&text, mountpoint).ok_or_else(|| format!("{} is not mounted", mountpoint.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
73 48 0:44 / /tmp/a\\040b rw,nosuid,nodev,noatime - fuse.stablefs /img rw,user_id=0,group_id=0,default_permissions
74 48 0:45 / /mnt/x ro,nodiratime shared:7 - fuse.stablefs /img2 ro,sync,dirsync,lazytime,user_id=0
75 48 0:46 / /mnt/x rw,relatime - fuse.stablefs /img3 rw,user_id=0
";

    #[test]
    fn flags_from_both_option_fields() {
        let m = find(TEXT, Path::new("/tmp/a b")).unwrap();
        assert_eq!(m.dev, "0:44");
        assert_eq!(m.fstype, "fuse.stablefs");
        assert!(!m.read_only());
        assert_eq!(
            m.ms_flags,
            ms(libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME)
        );
        let all = parse_line(TEXT.lines().nth(2).unwrap()).unwrap();
        assert!(all.read_only());
        assert_eq!(
            all.ms_flags,
            ms(libc::MS_RDONLY
                | libc::MS_NODIRATIME
                | libc::MS_STRICTATIME
                | libc::MS_SYNCHRONOUS
                | libc::MS_DIRSYNC
                | libc::MS_LAZYTIME)
        );
    }

    #[test]
    fn the_topmost_mount_counts() {
        let m = find(TEXT, Path::new("/mnt/x")).unwrap();
        assert_eq!(m.dev, "0:46");
        assert_eq!(m.ms_flags, ms(libc::MS_RELATIME));
        assert!(find(TEXT, Path::new("/nowhere")).is_none());
        assert!(parse_line("garbage").is_none());
        assert_eq!(unescape("a\\134b\\0"), "a\\b\\0");
    }
}
