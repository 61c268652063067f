//! Mounting an overlayfs view of a stack of snapshots, for any number of layers.
//!
//! The classic `mount(2)` call passes all options in one page (4096 bytes), so a `lowerdir=`
//! list of absolute snapshot paths (~100 bytes each) overflows at about 40 layers and the
//! kernel refuses the mount with `ENOENT`. [`mount`] uses the new mount API instead
//! (`fsopen`/`fsconfig`/`fsmount`/`move_mount`, Linux 5.2) and appends each lower layer with its
//! own `lowerdir+` parameter (Linux 6.8), so the only limits left are the kernel's:
//! at most [`MAX_LAYERS`] lower layers (overlayfs' `OVL_MAX_STACK`). A path longer than an
//! `fsconfig` string parameter takes (255 bytes) is passed as an open directory fd instead
//! (`FSCONFIG_SET_FD`, Linux 6.13). On older kernels it falls back to `mount(2)` and says so
//! when the options do not fit. See
//! <https://docs.kernel.org/filesystems/overlayfs.html> and `fsconfig(2)`.
//!
//! Blocking syscalls on the caller's thread; no fork, no namespace switch.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Most lower layers one overlay mount takes (the kernel's `OVL_MAX_STACK`).
pub const MAX_LAYERS: usize = 500;

/// Longest path (bytes, without the NUL) an `fsconfig` string parameter takes.
const MAX_PARAM: usize = 255;

/// One page: the most `mount(2)` copies of its options (including the NUL).
const PAGE: usize = 4096;

// Kernel ABI constants (include/uapi/linux/mount.h).
const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// Why an overlay could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// More lower layers than the kernel stacks.
    #[error("{layers} layers: overlayfs stacks at most {max} lower layers")]
    TooManyLayers { layers: usize, max: usize },
    /// This kernel lacks `lowerdir+` and the `lowerdir=` list does not fit in one page.
    #[error(
        "{layers} layers: the overlay mount options take {len} bytes, more than one page \
         ({PAGE}), and this kernel has no `lowerdir+` (Linux 6.8) to pass them one by one"
    )]
    OptionsTooLong { layers: usize, len: usize },
    /// A path longer than a string mount parameter may be, on a kernel that does not take
    /// layers as file descriptors (before 6.13).
    #[error(
        "overlay path {path} is longer than {MAX_PARAM} bytes and this kernel does not take \
         overlay layers as file descriptors (Linux 6.13)"
    )]
    PathTooLong { path: PathBuf },
    /// A path with a character overlayfs cannot take in its options (`,`, `:` or NUL).
    #[error("overlay path {path} contains ',', ':' or NUL")]
    BadPath { path: PathBuf },
    /// The kernel refused (with its own explanation when it gave one).
    #[error("{what}: {source}{}", detail_suffix(.detail))]
    Kernel {
        what: String,
        detail: String,
        #[source]
        source: std::io::Error,
    },
}

fn detail_suffix(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(" ({d})")
    }
}

impl OverlayError {
    /// The underlying OS error when there is one, for callers that keep `io::Error`s.
    pub fn into_io(self) -> std::io::Error {
        match self {
            OverlayError::Kernel { ref source, .. } => {
                std::io::Error::new(source.kind(), self.to_string())
            }
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// What to mount: lower layers TOP FIRST, an optional writable pair, extra flag options.
#[derive(Debug, Clone, Copy)]
pub struct Overlay<'a> {
    /// Lower directories, the top-most first (as `lowerdir=` lists them); at least one.
    pub lowers: &'a [PathBuf],
    /// `(upperdir, workdir)`; without it the mount is read-only.
    pub upper: Option<(&'a Path, &'a Path)>,
    /// Flag options (e.g. `volatile`). A flag the kernel refuses fails the mount.
    pub flags: &'a [&'a str],
}

/// Mounts `ov` on `target` (an existing directory).
/// Errors: [`OverlayError`]; the kernel's own message (e.g. `overlay: failed to resolve
/// '...': -2`) is in [`OverlayError::Kernel::detail`].
pub fn mount(target: &Path, ov: &Overlay<'_>) -> Result<(), OverlayError> {
    if ov.lowers.len() > MAX_LAYERS {
        return Err(OverlayError::TooManyLayers {
            layers: ov.lowers.len(),
            max: MAX_LAYERS,
        });
    }
    let mut paths: Vec<&Path> = ov.lowers.iter().map(|p| p.as_path()).collect();
    if let Some((u, w)) = ov.upper {
        paths.push(u);
        paths.push(w);
    }
    for p in &paths {
        let b = p.as_os_str().as_bytes();
        if b.iter().any(|c| matches!(c, b',' | b':' | 0)) {
            return Err(OverlayError::BadPath {
                path: p.to_path_buf(),
            });
        }
    }
    match mount_new_api(target, ov) {
        Err(Fallback) => mount_legacy(target, ov),
        Ok(r) => r,
    }
}

/// The new mount API is missing (or has no `lowerdir+`): use `mount(2)`.
struct Fallback;

fn cstr(s: &OsStr) -> CString {
    CString::new(s.as_bytes()).expect("checked for NUL")
}

fn kernel(what: impl Into<String>, fs: Option<&OwnedFd>) -> OverlayError {
    let source = std::io::Error::last_os_error();
    OverlayError::Kernel {
        what: what.into(),
        detail: fs.map(fs_log).unwrap_or_default(),
        source,
    }
}

/// The messages the kernel queued on a filesystem context (`e overlay: ...` lines).
fn fs_log(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: reading into a buffer we own, with its length; `fd` is a valid fs context.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push(
            String::from_utf8_lossy(&buf[..n as usize])
                .trim()
                .to_string(),
        );
    }
    out.join("; ")
}

fn fsconfig(
    fs: &OwnedFd,
    cmd: libc::c_uint,
    key: Option<&str>,
    value: Option<&OsStr>,
    aux: libc::c_int,
) -> libc::c_long {
    let key = key.map(|k| CString::new(k).expect("static key"));
    let value = value.map(cstr);
    // SAFETY: fsconfig(fd, cmd, key, value, aux) with NUL-terminated strings (or NULL) that
    // outlive the call; `fs` is a valid fs context fd; `aux` an open fd or 0.
    unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            key.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()),
            value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
            aux,
        )
    }
}

fn mount_new_api(target: &Path, ov: &Overlay<'_>) -> Result<Result<(), OverlayError>, Fallback> {
    // SAFETY: fsopen with a static NUL-terminated name; the result is a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
    if fd < 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => Err(Fallback),
            _ => Ok(Err(kernel("fsopen overlay", None))),
        };
    }
    // SAFETY: `fd` was just returned by fsopen and is owned by nobody else.
    let fs = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    let set = |key: &str, value: &Path| -> Result<(), OverlayError> {
        if value.as_os_str().len() > MAX_PARAM {
            // Too long for a string parameter: the directory itself, as an fd.
            let dir = std::fs::File::open(value).map_err(|source| OverlayError::Kernel {
                what: format!("open overlay {key} {}", value.display()),
                detail: String::new(),
                source,
            })?;
            if fsconfig(&fs, FSCONFIG_SET_FD, Some(key), None, dir.as_raw_fd()) < 0 {
                let e = kernel(
                    format!("overlay {key}=<fd of {}>", value.display()),
                    Some(&fs),
                );
                if let OverlayError::Kernel { source, .. } = &e {
                    if source.raw_os_error() == Some(libc::EINVAL) {
                        return Err(OverlayError::PathTooLong {
                            path: value.to_path_buf(),
                        });
                    }
                }
                return Err(e);
            }
            return Ok(());
        }
        if fsconfig(
            &fs,
            FSCONFIG_SET_STRING,
            Some(key),
            Some(value.as_os_str()),
            0,
        ) < 0
        {
            return Err(kernel(
                format!("overlay {key}={}", value.display()),
                Some(&fs),
            ));
        }
        Ok(())
    };
    for (i, l) in ov.lowers.iter().enumerate() {
        if let Err(e) = set("lowerdir+", l) {
            // A kernel before 6.8 does not know `lowerdir+`: the first one tells.
            if i == 0 {
                if let OverlayError::Kernel { source, .. } = &e {
                    if source.raw_os_error() == Some(libc::EINVAL) {
                        return Err(Fallback);
                    }
                }
            }
            return Ok(Err(e));
        }
    }
    if let Some((u, w)) = ov.upper {
        if let Err(e) = set("upperdir", u).and_then(|_| set("workdir", w)) {
            return Ok(Err(e));
        }
    }
    for f in ov.flags {
        if fsconfig(&fs, FSCONFIG_SET_FLAG, Some(f), None, 0) < 0 {
            return Ok(Err(kernel(format!("overlay option {f}"), Some(&fs))));
        }
    }
    if fsconfig(&fs, FSCONFIG_CMD_CREATE, None, None, 0) < 0 {
        return Ok(Err(kernel(
            format!("create overlay of {} layers", ov.lowers.len()),
            Some(&fs),
        )));
    }
    let attrs = if ov.upper.is_none() {
        MOUNT_ATTR_RDONLY
    } else {
        0
    };
    // SAFETY: fsmount on a created fs context; returns a new detached mount fd or -1.
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    if m < 0 {
        return Ok(Err(kernel("fsmount overlay", Some(&fs))));
    }
    // SAFETY: `m` was just returned by fsmount and is owned by nobody else.
    let mnt = unsafe { OwnedFd::from_raw_fd(m as libc::c_int) };
    let t = cstr(target.as_os_str());
    // SAFETY: move_mount(from_fd, "", to_dirfd, to_path, flags) with NUL-terminated strings
    // that outlive the call; attaches the detached mount at `target`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Ok(Err(kernel(
            format!("move overlay mount to {}", target.display()),
            None,
        )));
    }
    Ok(Ok(()))
}

/// The `mount(2)` options of `ov` (`lowerdir=a:b,upperdir=..,workdir=..[,flag]`).
fn legacy_options(ov: &Overlay<'_>) -> String {
    let lower: Vec<String> = ov
        .lowers
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut data = format!("lowerdir={}", lower.join(":"));
    if let Some((u, w)) = ov.upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            u.display(),
            w.display()
        ));
    }
    for f in ov.flags {
        data.push(',');
        data.push_str(f);
    }
    data
}

fn mount_legacy(target: &Path, ov: &Overlay<'_>) -> Result<(), OverlayError> {
    let data = legacy_options(ov);
    if data.len() + 1 > PAGE {
        return Err(OverlayError::OptionsTooLong {
            layers: ov.lowers.len(),
            len: data.len(),
        });
    }
    let flags = if ov.upper.is_none() {
        nix::mount::MsFlags::MS_RDONLY
    } else {
        nix::mount::MsFlags::empty()
    };
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|e| OverlayError::Kernel {
        what: format!("mount overlay on {}", target.display()),
        detail: String::new(),
        source: std::io::Error::from(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_options_list_top_first_then_upper_and_flags() {
        let lowers = vec![PathBuf::from("/s/top"), PathBuf::from("/s/base")];
        let ov = Overlay {
            lowers: &lowers,
            upper: Some((Path::new("/c/upper"), Path::new("/c/work"))),
            flags: &["volatile"],
        };
        assert_eq!(
            legacy_options(&ov),
            "lowerdir=/s/top:/s/base,upperdir=/c/upper,workdir=/c/work,volatile"
        );
    }

    #[test]
    fn refuses_bad_paths_and_too_many_layers_before_any_syscall() {
        let t = Path::new("/nonexistent-target");
        let lowers = vec![PathBuf::from("/a,b")];
        let ov = Overlay {
            lowers: &lowers,
            upper: None,
            flags: &[],
        };
        assert!(matches!(mount(t, &ov), Err(OverlayError::BadPath { .. })));
        let lowers = vec![PathBuf::from("/a"); MAX_LAYERS + 1];
        let ov = Overlay {
            lowers: &lowers,
            upper: None,
            flags: &[],
        };
        let e = mount(t, &ov).unwrap_err();
        assert!(matches!(e, OverlayError::TooManyLayers { layers: 501, .. }));
        assert!(e.to_string().contains("at most 500"), "{e}");
    }

    #[test]
    fn legacy_refuses_options_over_one_page_with_a_clear_message() {
        let lowers: Vec<PathBuf> = (0..50)
            .map(|i| PathBuf::from(format!("/var/lib/barge/image/snapshots/{i:064}")))
            .collect();
        let ov = Overlay {
            lowers: &lowers,
            upper: None,
            flags: &[],
        };
        let e = mount_legacy(Path::new("/nonexistent-target"), &ov).unwrap_err();
        assert!(e.to_string().contains("more than one page"), "{e}");
    }
}
