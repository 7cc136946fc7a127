//! Which device a local path lives on, and how full it is: for a "no space left" error
//! that names the filesystem to free (or the one to move to), not only the file.
//!
//! Owns reading `/proc/self/mountinfo` (the mount point and filesystem type holding a path)
//! and `statvfs` (its size and free space). Must not decide what to do about a full
//! device: errors ([`crate::error`]) and jobs phrase that. Best effort: `None` where the
//! system does not say.

use std::path::{Path, PathBuf};

/// The filesystem holding a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Where the filesystem is mounted.
    pub mount_point: PathBuf,
    /// Its type (`ext4`, `tmpfs`, …), or empty when unknown.
    pub fs_type: String,
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    /// Its size in bytes.
    pub size: u64,
}

impl std::fmt::Display for Device {
    /// `/srv/backups (ext4, 12.0 KiB of 2.0 GiB free)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (free, size) = (crate::human_bytes(self.free), crate::human_bytes(self.size));
        write!(f, "{} (", self.mount_point.display())?;
        if !self.fs_type.is_empty() {
            write!(f, "{}, ", self.fs_type)?;
        }
        write!(f, "{free} of {size} free)")
    }
}

/// The device holding `path` (or, when it does not exist yet, its nearest existing parent).
pub fn of(path: &Path) -> Option<Device> {
    let existing = path.ancestors().find(|a| a.exists())?;
    let real = std::fs::canonicalize(existing).ok()?;
    let (free, size) = space(&real)?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let (mount_point, fs_type) = mount_of(&real, &mounts).unwrap_or_else(|| ("/".into(), ""));
    Some(Device {
        mount_point,
        fs_type: fs_type.to_string(),
        free,
        size,
    })
}

/// Free and total bytes of the filesystem holding `path`.
fn space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct it is given; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = st.f_frsize as u64;
    Some((st.f_bavail as u64 * unit, st.f_blocks as u64 * unit))
}

/// The mount point and filesystem type in `mountinfo` that hold the absolute `path`: the
/// longest mount point that is a prefix of it (the last one mounted, when several are).
fn mount_of<'a>(path: &Path, mountinfo: &'a str) -> Option<(PathBuf, &'a str)> {
    let mut best: Option<(PathBuf, &str)> = None;
    for line in mountinfo.lines() {
        // `id parent major:minor root MOUNT_POINT options [optional…] - FSTYPE source …`
        let mut fields = line.split(' ');
        let Some(point) = fields.nth(4).map(unescape) else {
            continue;
        };
        let fs_type = line
            .split(" - ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or("");
        let longer = best
            .as_ref()
            .is_none_or(|(b, _)| point.components().count() >= b.components().count());
        if path.starts_with(&point) && longer {
            best = Some((point, fs_type));
        }
    }
    best
}

/// A mount point as the kernel writes it: space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    let (mut out, bytes) = (Vec::new(), field.as_bytes());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /srv rw shared:2 - xfs /dev/sdb1 rw
31 30 0:27 / /srv/back\\040ups rw - tmpfs tmpfs rw,size=2048k
32 22 0:28 / /srvx rw - ext4 /dev/sdc1 rw
33 30 0:29 / /srv rw - btrfs /dev/sdd1 rw
";

    #[test]
    fn the_longest_mount_point_holding_the_path_wins() {
        let at = |p: &str| mount_of(Path::new(p), MOUNTINFO).unwrap();
        assert_eq!(at("/srv/back ups/repo"), ("/srv/back ups".into(), "tmpfs"));
        // Mounted over: the later mount at the same point is the one in use.
        assert_eq!(at("/srv/other"), ("/srv".into(), "btrfs"));
        // A prefix by characters only is not a parent.
        assert_eq!(at("/srvx/a"), ("/srvx".into(), "ext4"));
        assert_eq!(at("/home"), ("/".into(), "ext4"));
    }

    #[test]
    fn a_real_path_has_a_device() {
        let d = of(&std::env::temp_dir().join("not/yet/made")).unwrap();
        assert!(d.size > 0 && d.free <= d.size, "{d:?}");
        assert!(d.to_string().contains(" free)"), "{d}");
    }
}
