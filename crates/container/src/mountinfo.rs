//! Reading `/proc/self/mountinfo` (see `proc_pid_mountinfo(5)`).
//!
//! The fields are split by the `procfs` crate; its 0.18 does not decode the kernel's octal
//! escapes in paths (eminence/procfs#262), so the mount point is decoded here: the kernel's
//! `mangle_path` writes space, tab, newline and backslash as `\ooo` (`/a b` is `/a\040b`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// Decodes the kernel's `\ooo` octal escapes of a mountinfo path field. A backslash not
/// followed by three octal digits is kept as is.
pub fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if v <= 0xff {
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The mount points of this process's mount namespace, decoded, in mountinfo order (parents
/// before the mounts stacked on them). Errors: reading or parsing `/proc/self/mountinfo`.
pub fn mount_points() -> std::io::Result<Vec<PathBuf>> {
    let infos = procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .map_err(|e| std::io::Error::other(format!("read /proc/self/mountinfo: {e}")))?;
    Ok(infos
        .into_iter()
        .map(|m| unescape(&m.mount_point.to_string_lossy()))
        .collect())
}

/// Whether something is mounted on `path` (exactly; `path` as given, not canonicalised).
/// False when mountinfo cannot be read.
pub fn is_mounted(path: &Path) -> bool {
    match mount_points() {
        Ok(points) => points.iter().any(|p| p == path),
        Err(e) => {
            tracing::warn!("{e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_kernels_escapes() {
        assert_eq!(unescape(r"/a\040b"), Path::new("/a b"));
        assert_eq!(unescape(r"/x\011y\012z\134w"), Path::new("/x\ty\nz\\w"));
        assert_eq!(unescape(r"/plain"), Path::new("/plain"));
        // Not an escape: kept.
        assert_eq!(unescape(r"/a\04"), Path::new(r"/a\04"));
        assert_eq!(unescape(r"/a\9999"), Path::new(r"/a\9999"));
        // An escaped backslash followed by digits is not decoded twice.
        assert_eq!(unescape(r"/a\134040"), Path::new(r"/a\040"));
        // Non-UTF-8 bytes survive.
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(unescape(r"/\377").as_os_str().as_bytes(), b"/\xff");
    }

    #[test]
    fn parses_this_processes_mounts() {
        let points = mount_points().unwrap();
        assert!(points.iter().any(|p| p == Path::new("/")), "{points:?}");
        assert!(is_mounted(Path::new("/proc")));
    }
}
