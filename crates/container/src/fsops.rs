//! File system access to a container's root: path resolution inside the root, `stat`, tar
//! archives of a path (`docker cp` out), extraction of a tar into a directory (`docker cp` in),
//! the changes of the writable layer (`docker diff`) and whole-root export.
//!
//! Every function here works on a directory that *is* the container's `/` (the mounted overlay);
//! [`crate::Containers`] mounts it when the container is stopped. Nothing here needs root except
//! the ownership changes of an extraction.
//!
//! **Invariant:** paths given by clients and names inside tar archives are resolved inside the
//! root as the container would see them (an absolute symlink target restarts at the container's
//! root, `..` stops at it). Every write of an extraction goes through
//! [`barge_archive::inroot`] (`openat2` with `RESOLVE_IN_ROOT` on the container's root), so it
//! stays inside the root even while a process in a running container swaps a directory for a
//! symlink; reads (`stat`, `archive`) resolve in user space ([`resolve_in_root`]).

use std::collections::HashSet;

use barge_archive::inroot::{
    self, clean_entry_name, InRoot, InRootError, Owner, UnpackOptions, Unpacker, Unsupported,
};
pub use barge_archive::TreeTar;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Errors of file system operations, with Docker's wording.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The path does not exist in the container (404).
    #[error("Could not find the file {0}")]
    NotFound(String),
    /// Bad request: not a directory, overwrite refused, bad archive entry (400).
    #[error("{0}")]
    Invalid(String),
    /// Too many levels of symbolic links.
    #[error("too many levels of symbolic links resolving {0}")]
    Loop(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> FsError {
    let what = what.into();
    move |source| FsError::Io { what, source }
}

/// Resolves `path` (as the container sees it) to a host path under `root`
/// ([`barge_archive::inroot::resolve_path`]); [`FsError::Loop`] past 40 symlinks.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf, FsError> {
    inroot::resolve_path(root, path, follow_last).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => FsError::Loop(path.to_string()),
        _ => FsError::Io {
            what: format!("resolve {path}"),
            source: io::Error::other(e),
        },
    })
}

/// The normal components of a path, with `..` kept (resolved by the caller) and `.`/empty dropped.
fn components(path: &str) -> Vec<OsString> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Lexically cleans an absolute container path (`/a/./b/../c` → `/a/c`; never above `/`).
pub fn clean(path: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in components(path) {
        if c == ".." {
            parts.pop();
        } else {
            parts.push(c.to_string_lossy().into_owned());
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether the client path names a directory's contents or the directory itself regardless of
/// symlinks: a trailing `/` or `/.` (Docker's `PreserveTrailingDotOrSeparator`).
fn trailing_dir(path: &str) -> bool {
    path.ends_with('/') || path.ends_with("/.") || path == "."
}

/// Docker's `ContainerPathStat` (`X-Docker-Container-Path-Stat`): `mode` is Go's `os.FileMode`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    /// RFC 3339 with nanoseconds.
    pub mtime: String,
    /// For a symlink: the fully resolved target, as an absolute container path.
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Go's `os.FileMode` bits for a Unix mode.
pub fn go_file_mode(md: &fs::Metadata) -> u32 {
    let mode = md.mode();
    let mut m = mode & 0o777;
    if mode & libc::S_ISUID != 0 {
        m |= 1 << 23;
    }
    if mode & libc::S_ISGID != 0 {
        m |= 1 << 22;
    }
    if mode & libc::S_ISVTX != 0 {
        m |= 1 << 20;
    }
    let ft = md.file_type();
    if ft.is_dir() {
        m |= 1 << 31;
    } else if ft.is_symlink() {
        m |= 1 << 27;
    } else if ft.is_fifo() {
        m |= 1 << 25;
    } else if ft.is_socket() {
        m |= 1 << 24;
    } else if ft.is_block_device() {
        m |= 1 << 26;
    } else if ft.is_char_device() {
        m |= (1 << 26) | (1 << 21);
    }
    m
}

fn rfc3339(secs: i64, nanos: i64) -> String {
    chrono::DateTime::from_timestamp(secs, nanos.clamp(0, 999_999_999) as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Resolves a client path as Docker's `ResolvePath`: every component but the last is followed
/// (the last too with a trailing `/` or `/.`). Returns (host path, cleaned container path).
fn resolve_client_path(root: &Path, path: &str) -> Result<(PathBuf, String), FsError> {
    let abs = clean(&format!("/{path}"));
    let host = resolve_in_root(root, &abs, trailing_dir(path))?;
    Ok((host, abs))
}

/// `HEAD /containers/{id}/archive`: the stat of `path` inside `root`.
pub fn stat(root: &Path, path: &str) -> Result<PathStat, FsError> {
    let (host, abs) = resolve_client_path(root, path)?;
    let md = fs::symlink_metadata(&host).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => FsError::NotFound(abs.clone()),
        _ => FsError::Io {
            what: format!("stat {abs}"),
            source: e,
        },
    })?;
    let mut link_target = String::new();
    if md.file_type().is_symlink() {
        let full = resolve_in_root(root, &abs, true)?;
        let rel = full.strip_prefix(root).unwrap_or(Path::new(""));
        link_target = format!("/{}", rel.display());
    }
    let name = if abs == "/" {
        "/".to_string()
    } else {
        abs.rsplit('/').next().unwrap_or_default().to_string()
    };
    Ok(PathStat {
        name,
        size: md.len() as i64,
        mode: go_file_mode(&md),
        mtime: rfc3339(md.mtime(), md.mtime_nsec()),
        link_target,
    })
}

/// `GET /containers/{id}/archive`: a tar of `path` whose top entry is named as Docker names it
/// (the base name of the requested path; `.` for `dir/.`, whose entries are then `./x`).
pub fn archive(root: &Path, path: &str, w: &mut dyn Write) -> Result<PathStat, FsError> {
    archive_named(root, path, None, w)
}

/// [`archive`] with the top entry named `name` instead of the path's base name (for a path
/// that is the root of a mount, whose base name on the host is not the container's).
pub fn archive_named(
    root: &Path,
    path: &str,
    name: Option<&str>,
    w: &mut dyn Write,
) -> Result<PathStat, FsError> {
    let mut st = stat(root, path)?;
    if let Some(n) = name {
        st.name = n.to_string();
    }
    let (host, abs) = resolve_client_path(root, path)?;
    let top = if path.ends_with("/.") || path == "." || (abs == "/" && name.is_none()) {
        PathBuf::from(".")
    } else {
        PathBuf::from(&st.name)
    };
    let mut t = TreeTar::new(w);
    t.add_tree(&host, &top, &|_| false)
        .map_err(io_err(format!("archive {abs}")))?;
    t.finish().map_err(io_err(format!("archive {abs}")))?;
    Ok(st)
}

/// `GET /containers/{id}/export`: the whole root as a tar (names relative, no `./`).
pub fn export(root: &Path, w: &mut dyn Write) -> Result<(), FsError> {
    let mut t = TreeTar::new(w);
    t.add_children(root, Path::new(""), Path::new(""), &|_| false)
        .map_err(io_err("export"))?;
    t.finish().map_err(io_err("export"))?;
    Ok(())
}

/// Options of [`extract`] (Docker's `PUT /containers/{id}/archive` parameters).
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Refuse to replace a directory with a non-directory and the reverse.
    pub no_overwrite_dir_non_dir: bool,
    /// Owner of everything extracted (`copyUIDGID`: the container user's); `None` keeps the
    /// archive's owners.
    pub chown: Option<(u32, u32)>,
}

/// `PUT /containers/{id}/archive`: extracts a tar into the existing directory `dir` of `root`.
/// Every write goes through [`InRoot`] on `root` (so a symlink in the archive or in the
/// container cannot redirect it outside the root); names with `..` leaving `dir` are refused.
pub fn extract(
    root: &Path,
    dir: &str,
    r: &mut dyn Read,
    opts: &ExtractOptions,
) -> Result<(), FsError> {
    let abs_dir = clean(&format!("/{dir}"));
    let host_dir = resolve_in_root(root, &abs_dir, true)?;
    match fs::metadata(&host_dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(FsError::Invalid(format!(
                "extraction point is not a directory: {abs_dir}"
            )))
        }
        Err(_) => return Err(FsError::NotFound(abs_dir)),
    }
    // The extraction dir relative to the root, so entries resolve in the container's scope.
    let base = host_dir
        .strip_prefix(root)
        .unwrap_or(Path::new(""))
        .to_path_buf();
    let in_root = InRoot::open(root).map_err(|e| inroot_err(e, "open root"))?;
    let owner = match opts.chown {
        _ if !nix::unistd::geteuid().is_root() => Owner::Unchanged,
        Some((u, g)) => Owner::Fixed(u, g),
        None => Owner::FromEntry,
    };
    let mut u = Unpacker::new(
        &in_root,
        UnpackOptions {
            owner,
            xattrs: false,
            no_overwrite_dir_non_dir: opts.no_overwrite_dir_non_dir,
            specials: true,
            unsupported: Unsupported::Skip,
        },
    );
    let mut ar = tar::Archive::new(r);
    for entry in ar.entries().map_err(io_err("read archive"))? {
        let mut e = entry.map_err(io_err("read archive"))?;
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = clean_entry_name(&raw).ok_or_else(|| {
            FsError::Invalid(format!(
                "invalid archive entry {shown:?}: it leaves the extraction directory"
            ))
        })?;
        let link = match e.header().entry_type() {
            tar::EntryType::Link => {
                let l = e
                    .link_name_bytes()
                    .ok_or_else(|| FsError::Invalid(format!("hard link {shown} has no target")))?;
                let l = clean_entry_name(&l).ok_or_else(|| {
                    FsError::Invalid(format!("invalid hard link {shown}: it leaves the archive"))
                })?;
                Some(base.join(l))
            }
            tar::EntryType::Symlink if e.link_name_bytes().is_none() => {
                return Err(FsError::Invalid(format!("symlink {shown} has no target")))
            }
            _ => None,
        };
        u.unpack_entry(&mut e, &base.join(&rel), link.as_deref())
            .map_err(|err| inroot_err(err, &format!("extract {shown}")))?;
    }
    // Directory modes and times last: extracting their children changed them.
    u.finish().map_err(|e| inroot_err(e, "extract"))
}

/// An in-root write error as Docker words it (paths as the container sees them).
fn inroot_err(e: InRootError, what: &str) -> FsError {
    match e.shown_under(Path::new("/")) {
        InRootError::Archive(source) => FsError::Io {
            what: "read archive".into(),
            source,
        },
        InRootError::Io { op, path, source } => FsError::Io {
            what: format!("{what}: {op} {path}"),
            source,
        },
        e => FsError::Invalid(e.to_string()),
    }
}

/// Docker's change kinds (`GET /containers/{id}/changes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

/// One entry of `docker diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Absolute container path.
    pub path: String,
    pub kind: ChangeKind,
}

/// Files the runtime creates in a container's writable layer (mount points) that Docker hides
/// in its `-init` layer: not reported as changes (nor committed) when absent from the image and
/// empty.
pub const RUNTIME_MOUNTPOINTS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/sbin/docker-init",
    "/.dockerenv",
];

fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| {
            let Ok(p) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
                return false;
            };
            let Ok(name) = std::ffi::CString::new(*n) else {
                return false;
            };
            let mut buf = [0u8; 4];
            // SAFETY: valid NUL-terminated strings and a buffer of the given length.
            let r = unsafe {
                libc::lgetxattr(
                    p.as_ptr(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            r == 1 && buf[0] == b'y'
        })
}

/// The changes of an overlay writable layer `upper` over `lowers` (any order), as Docker's
/// overlay driver reports them: whiteouts are deleted, paths present in a lower layer modified
/// (directories only if their size, mode or mtime differ), others added; the parent of an
/// added or deleted path is reported modified once. Sorted as a directory walk.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> io::Result<Vec<Change>> {
    fn in_lower(lowers: &[PathBuf], rel: &str) -> Option<fs::Metadata> {
        for l in lowers {
            let p = l.join(rel.trim_start_matches('/'));
            if let Ok(md) = fs::symlink_metadata(&p) {
                if is_whiteout(&md) {
                    return None;
                }
                return fs::metadata(&p).ok().or(Some(md));
            }
        }
        None
    }
    fn walk(
        dir: &Path,
        rel: &str,
        lowers: &[PathBuf],
        out: &mut Vec<Change>,
        changed_dirs: &mut HashSet<String>,
    ) -> io::Result<()> {
        let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = format!("{rel}/{}", e.file_name().to_string_lossy());
            let md = fs::symlink_metadata(e.path())?;
            let lower = in_lower(lowers, &path);
            if runtime_only(&e.path(), &path, &md, lower.as_ref(), lowers)? {
                continue;
            }
            // dockerd's init layer holds the parents of its mount points (`/etc` for
            // `/etc/hosts`): a change under one the image lacks shows it modified, not added.
            let runtime_parent = lower.is_none()
                && md.is_dir()
                && RUNTIME_MOUNTPOINTS
                    .iter()
                    .any(|m| m.starts_with(&format!("{path}/")));

            let kind =
                if is_whiteout(&md) || (md.is_dir() && is_opaque(&e.path()) && lower.is_some()) {
                    Some(ChangeKind::Deleted)
                } else {
                    match &lower {
                        None if runtime_parent => Some(ChangeKind::Modified),
                        None => Some(ChangeKind::Added),
                        Some(l) => {
                            if l.is_dir()
                                && md.is_dir()
                                && l.len() == md.len()
                                && l.mode() == md.mode()
                                && l.mtime() == md.mtime()
                                && l.mtime_nsec() == md.mtime_nsec()
                            {
                                None
                            } else {
                                Some(ChangeKind::Modified)
                            }
                        }
                    }
                };
            if md.is_dir() && kind.is_some() {
                changed_dirs.insert(path.clone());
            }
            if let Some(kind) = kind {
                if matches!(kind, ChangeKind::Added | ChangeKind::Deleted) {
                    let parent = if rel.is_empty() { "/" } else { rel };
                    if parent != "/" && changed_dirs.insert(parent.to_string()) {
                        out.push(Change {
                            path: parent.to_string(),
                            kind: ChangeKind::Modified,
                        });
                    }
                }
                out.push(Change {
                    path: path.clone(),
                    kind,
                });
            }
            if md.is_dir() {
                walk(&e.path(), &path, lowers, out, changed_dirs)?;
            }
        }
        Ok(())
    }
    /// True for what only the runtime put in the writable layer, which dockerd keeps in its
    /// init layer and so never reports: an empty mount point of [`RUNTIME_MOUNTPOINTS`] the
    /// image lacks, or a directory (new, or the image's with only its mtime changed) holding
    /// nothing else (`/etc` copied up for `/etc/hosts`, `/sbin` made for `/sbin/docker-init`).
    fn runtime_only(
        host: &Path,
        rel: &str,
        md: &fs::Metadata,
        lower: Option<&fs::Metadata>,
        lowers: &[PathBuf],
    ) -> io::Result<bool> {
        if RUNTIME_MOUNTPOINTS.contains(&rel)
            && lower.is_none()
            && ((md.is_file() && md.len() == 0)
                || (md.is_dir() && fs::read_dir(host)?.next().is_none()))
        {
            return Ok(true);
        }
        if !md.is_dir()
            || is_opaque(host)
            || lower.is_some_and(|l| !l.is_dir() || l.mode() != md.mode())
        {
            return Ok(false);
        }
        let mut any = false;
        for e in fs::read_dir(host)? {
            let e = e?;
            let child = format!("{rel}/{}", e.file_name().to_string_lossy());
            let cmd = fs::symlink_metadata(e.path())?;
            if is_whiteout(&cmd) {
                return Ok(false);
            }
            let cl = in_lower(lowers, &child);
            if !runtime_only(&e.path(), &child, &cmd, cl.as_ref(), lowers)? {
                return Ok(false);
            }
            any = true;
        }
        Ok(any)
    }
    let mut out = Vec::new();
    let mut changed_dirs = HashSet::new();
    walk(upper, "", lowers, &mut out, &mut changed_dirs)?;
    Ok(out)
}

/// Bytes used by the files under `path` (not following symlinks; hard links counted once).
pub fn disk_usage(path: &Path) -> u64 {
    fn walk(p: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
        let Ok(md) = fs::symlink_metadata(p) else {
            return 0;
        };
        let mut n = 0;
        if md.nlink() <= 1 || md.is_dir() || seen.insert((md.dev(), md.ino())) {
            n += if md.is_dir() { 0 } else { md.len() };
        }
        if md.is_dir() {
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    n += walk(&e.path(), seen);
                }
            }
        }
        n
    }
    walk(path, &mut HashSet::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/passwd"), "root:x:0:0\n").unwrap();
        fs::create_dir_all(d.path().join("usr/bin")).unwrap();
        d
    }

    #[test]
    fn resolution_stays_in_root_and_reports_loops() {
        // The resolver itself is barge_archive::inroot's (tested there); this checks the wrapper.
        let d = root();
        let r = d.path();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        assert_eq!(
            resolve_in_root(r, "/abs/passwd", true).unwrap(),
            r.join("etc/passwd")
        );
        assert!(matches!(
            resolve_in_root(r, "/loop1/x", true),
            Err(FsError::Loop(_))
        ));
    }

    #[test]
    fn stat_names_modes_and_link_targets() {
        let d = root();
        let r = d.path();
        symlink("../etc/passwd", r.join("usr/pw")).unwrap();
        let s = stat(r, "/etc/passwd").unwrap();
        assert_eq!((s.name.as_str(), s.size), ("passwd", 11));
        assert_eq!(s.mode & (1 << 31), 0);
        let s = stat(r, "etc/").unwrap();
        assert_eq!(s.name, "etc");
        assert_ne!(s.mode & (1 << 31), 0);
        let s = stat(r, "/usr/pw").unwrap();
        assert_ne!(s.mode & (1 << 27), 0);
        assert_eq!(s.link_target, "/etc/passwd");
        assert!(matches!(stat(r, "/nope"), Err(FsError::NotFound(_))));
        let js = serde_json::to_value(&s).unwrap();
        assert!(js.get("linkTarget").is_some());
    }

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        let mut ar = tar::Archive::new(tar_bytes);
        ar.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn archive_top_entry_names() {
        let d = root();
        let r = d.path();
        let mut buf = Vec::new();
        archive(r, "/etc/passwd", &mut buf).unwrap();
        assert_eq!(names(&buf), vec!["passwd"]);
        let mut buf = Vec::new();
        archive(r, "/etc", &mut buf).unwrap();
        assert_eq!(names(&buf), vec!["etc/", "etc/passwd"]);
        let mut buf = Vec::new();
        archive(r, "/etc/.", &mut buf).unwrap();
        assert_eq!(names(&buf), vec!["./", "./passwd"]);
        let mut buf = Vec::new();
        export(r, &mut buf).unwrap();
        assert!(names(&buf).contains(&"etc/passwd".to_string()));
        assert!(names(&buf).contains(&"usr/bin/".to_string()));
    }

    #[test]
    fn extract_refuses_escapes_and_follows_links_inside() {
        let d = root();
        let r = d.path();
        let outside = tempfile::tempdir().unwrap();
        // A symlink in the archive pointing outside, then a file written through it.
        let link_target = outside.path().display().to_string();
        let t = barge_archive::raw_tar(&[
            ("evil", tar::EntryType::Symlink, &link_target, 0o644),
            ("evil/pwned", tar::EntryType::Regular, "x", 0o644),
        ]);
        // The link's target does not exist in the root: refused as docker does (no directory is
        // made through a dangling link), and nothing is written outside.
        assert!(extract(r, "/", &mut &t[..], &ExtractOptions::default()).is_err());
        assert!(!outside.path().join("pwned").exists());
        // Where it exists in the root, the file lands there.
        fs::create_dir_all(r.join(outside.path().strip_prefix("/").unwrap())).unwrap();
        extract(r, "/", &mut &t[..], &ExtractOptions::default()).unwrap();
        assert!(!outside.path().join("pwned").exists());
        assert!(r
            .join(outside.path().strip_prefix("/").unwrap())
            .join("pwned")
            .exists());
        let t = barge_archive::raw_tar(&[("../../escape", tar::EntryType::Regular, "x", 0o644)]);
        assert!(matches!(
            extract(r, "/etc", &mut &t[..], &ExtractOptions::default()),
            Err(FsError::Invalid(_))
        ));
        let t = barge_archive::raw_tar(&[("hello.txt", tar::EntryType::Regular, "hi", 0o644)]);
        extract(r, "/usr/bin", &mut &t[..], &ExtractOptions::default()).unwrap();
        assert_eq!(
            fs::read_to_string(r.join("usr/bin/hello.txt")).unwrap(),
            "hi"
        );
        assert!(matches!(
            extract(r, "/etc/passwd", &mut &t[..], &ExtractOptions::default()),
            Err(FsError::Invalid(_))
        ));
        assert!(matches!(
            extract(r, "/missing", &mut &t[..], &ExtractOptions::default()),
            Err(FsError::NotFound(_))
        ));
        let t = barge_archive::raw_tar(&[("etc", tar::EntryType::Regular, "x", 0o644)]);
        let opts = ExtractOptions {
            no_overwrite_dir_non_dir: true,
            chown: None,
        };
        assert!(extract(r, "/", &mut &t[..], &opts).is_err());
        assert!(r.join("etc/passwd").exists());
    }

    #[test]
    fn changes_classified_like_docker() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        let l = lower.path();
        let u = upper.path();
        fs::create_dir_all(l.join("etc")).unwrap();
        fs::write(l.join("etc/passwd"), "a").unwrap();
        fs::write(l.join("etc/gone"), "a").unwrap();
        fs::create_dir_all(l.join("same")).unwrap();
        fs::File::open(l.join("etc"))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000))
            .unwrap();
        // upper: etc copied up, passwd modified, gone deleted, new file added, new dir added.
        fs::create_dir_all(u.join("etc")).unwrap();
        fs::write(u.join("etc/passwd"), "b").unwrap();
        nix::sys::stat::mknod(
            &u.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .ok();
        fs::create_dir_all(u.join("newdir")).unwrap();
        fs::write(u.join("newdir/f"), "c").unwrap();
        fs::create_dir_all(u.join("dev")).unwrap();
        let got: Vec<(String, ChangeKind)> = changes(u, &[l.to_path_buf()])
            .unwrap()
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect();
        use ChangeKind::*;
        let mut want = vec![("/etc".to_string(), Modified)];
        if u.join("etc/gone").exists() {
            want.push(("/etc/gone".into(), Deleted));
        }
        want.extend([
            ("/etc/passwd".into(), Modified),
            ("/newdir".into(), Added),
            ("/newdir/f".into(), Added),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn go_modes() {
        let d = root();
        let md = fs::symlink_metadata(d.path().join("etc")).unwrap();
        assert_eq!(go_file_mode(&md) >> 31, 1);
        assert_eq!(clean("/a/./b/../c/"), "/a/c");
        assert_eq!(clean("../.."), "/");
    }
}
