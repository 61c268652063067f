//! File system access to a container's root: path resolution inside the root, `stat`, tar
//! archives of a path (`docker cp` out), extraction of a tar into a directory (`docker cp` in),
//! the changes of the writable layer (`docker diff`) and whole-root export.
//!
//! Every function here works on a directory that *is* the container's `/` (the mounted overlay);
//! [`crate::Containers`] mounts it when the container is stopped. Nothing here needs root except
//! the ownership changes of an extraction.
//!
//! **Invariant:** paths given by clients and names inside tar archives are resolved with
//! [`resolve_in_root`]: symlinks are followed as the container would see them (an absolute
//! target restarts at the container's root, `..` stops at it), so no operation reads or writes
//! outside the root, whatever symlinks the container (or an earlier archive entry) made.
//! Known gap: a process in a *running* container could swap a checked directory for a symlink
//! between resolution and use (docker closes that race by extracting in a chroot).

use std::collections::HashSet;

pub use barge_archive::TreeTar;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path (as Linux's `MAXSYMLINKS`-ish limits).
const MAX_SYMLINKS: usize = 255;

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

/// Resolves `path` (as the container sees it) to a host path under `root`. Symlinks in every
/// component are followed inside the root, except the last one when `follow_last` is false.
/// Components that do not exist are kept as they are (so the result may not exist).
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf, FsError> {
    let mut todo: Vec<OsString> = components(path).into_iter().rev().collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let is_last = todo.is_empty();
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&c);
        if is_last && !follow_last {
            resolved.push(c);
            break;
        }
        match fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(FsError::Loop(path.to_string()));
                }
                let target = fs::read_link(&candidate)
                    .map_err(io_err(format!("readlink {}", candidate.display())))?;
                let t = target.as_os_str().as_bytes();
                if t.starts_with(b"/") {
                    resolved.clear();
                }
                let t = String::from_utf8_lossy(t).into_owned();
                todo.extend(components(&t).into_iter().rev());
            }
            _ => resolved.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(out)
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

/// Cleans an archive entry name to a relative path; `None` for names that leave the
/// extraction directory (`../x`, and absolute names are made relative as tar does).
fn entry_rel(name: &[u8]) -> Option<PathBuf> {
    let s = String::from_utf8_lossy(name);
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.iter().collect())
}

/// `PUT /containers/{id}/archive`: extracts a tar into the existing directory `dir` of `root`.
/// Every entry's parent is resolved inside the root (so a symlink in the archive or in the
/// container cannot redirect a write outside it); names with `..` leaving `dir` are refused.
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
    // The extraction dir as a container path, so entries resolve in the container's scope.
    let base = format!(
        "/{}",
        host_dir
            .strip_prefix(root)
            .unwrap_or(Path::new(""))
            .display()
    );
    let mut ar = tar::Archive::new(r);
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let mut made_dirs: HashSet<PathBuf> = HashSet::new();
    for entry in ar.entries().map_err(io_err("read archive"))? {
        let mut e = entry.map_err(io_err("read archive"))?;
        let raw = e.path_bytes().into_owned();
        let rel = entry_rel(&raw).ok_or_else(|| {
            FsError::Invalid(format!(
                "invalid archive entry {:?}: it leaves the extraction directory",
                String::from_utf8_lossy(&raw)
            ))
        })?;
        let h = e.header().clone();
        let kind = h.entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let cpath = format!("{}/{}", base.trim_end_matches('/'), rel.display());
        let target = if rel.as_os_str().is_empty() {
            host_dir.clone()
        } else {
            resolve_in_root(root, &cpath, false)?
        };
        let uid = h.uid().unwrap_or(0) as u32;
        let gid = h.gid().unwrap_or(0) as u32;
        let (uid, gid) = opts.chown.unwrap_or((uid, gid));
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let mtime = h.mtime().unwrap_or(0) as i64;
        let is_dir = kind == tar::EntryType::Directory;
        let shown = String::from_utf8_lossy(&raw).into_owned();
        if let Ok(existing) = fs::symlink_metadata(&target) {
            let ex_dir = existing.is_dir();
            if opts.no_overwrite_dir_non_dir && ex_dir && !is_dir {
                return Err(FsError::Invalid(format!(
                    "cannot overwrite directory {:?} with non-directory {shown:?}",
                    format!("{}", Path::new(&base).join(&rel).display())
                )));
            }
            if opts.no_overwrite_dir_non_dir && !ex_dir && is_dir {
                return Err(FsError::Invalid(format!(
                    "cannot overwrite non-directory {:?} with directory {shown:?}",
                    format!("{}", Path::new(&base).join(&rel).display())
                )));
            }
            if !(ex_dir && is_dir) {
                let r = if ex_dir {
                    fs::remove_dir_all(&target)
                } else {
                    fs::remove_file(&target)
                };
                r.map_err(io_err(format!("replace {shown}")))?;
            }
        }
        if let Some(parent) = target.parent() {
            if !parent.exists() {
                // Docker creates missing parents (root-owned 0755).
                fs::create_dir_all(parent).map_err(io_err(format!("create parent of {shown}")))?;
            }
        }
        let what = format!("extract {shown}");
        match kind {
            tar::EntryType::Directory => {
                if !target.is_dir() {
                    fs::create_dir(&target).map_err(io_err(&what))?;
                }
                made_dirs.insert(target.clone());
                dir_times.push((target.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = File::create(&target).map_err(io_err(&what))?;
                io::copy(&mut e, &mut f).map_err(io_err(&what))?;
            }
            tar::EntryType::Symlink => {
                let link = e
                    .link_name()
                    .map_err(io_err(&what))?
                    .ok_or_else(|| FsError::Invalid(format!("symlink {shown} has no target")))?;
                std::os::unix::fs::symlink(link, &target).map_err(io_err(&what))?;
            }
            tar::EntryType::Link => {
                let link = e
                    .link_name_bytes()
                    .ok_or_else(|| FsError::Invalid(format!("hard link {shown} has no target")))?;
                let lrel = entry_rel(&link).ok_or_else(|| {
                    FsError::Invalid(format!("invalid hard link {shown}: it leaves the archive"))
                })?;
                let lpath = format!("{}/{}", base.trim_end_matches('/'), lrel.display());
                let src = resolve_in_root(root, &lpath, false)?;
                fs::hard_link(&src, &target).map_err(io_err(&what))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let sflag = match kind {
                    tar::EntryType::Char => nix::sys::stat::SFlag::S_IFCHR,
                    tar::EntryType::Block => nix::sys::stat::SFlag::S_IFBLK,
                    _ => nix::sys::stat::SFlag::S_IFIFO,
                };
                let dev = nix::sys::stat::makedev(
                    h.device_major().ok().flatten().unwrap_or(0) as u64,
                    h.device_minor().ok().flatten().unwrap_or(0) as u64,
                );
                nix::sys::stat::mknod(
                    &target,
                    sflag,
                    nix::sys::stat::Mode::from_bits_truncate(mode),
                    dev,
                )
                .map_err(|e| FsError::Io {
                    what: what.clone(),
                    source: e.into(),
                })?;
            }
            _ => continue,
        }
        // Ownership first (chown clears setuid bits), then mode, then times.
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                .map_err(io_err(format!("chown {shown}")))?;
        }
        if kind != tar::EntryType::Symlink {
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(io_err(format!("chmod {shown}")))?;
        }
        if !is_dir {
            set_mtime(&target, mtime);
        }
    }
    // Directory times last: extracting their children changed them.
    for (d, t) in dir_times.into_iter().rev() {
        set_mtime(&d, t);
    }
    Ok(())
}

fn set_mtime(path: &Path, secs: i64) {
    let ts = nix::sys::time::TimeSpec::new(secs, 0);
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
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
    fn hostile_symlinks_stay_in_root() {
        let d = root();
        let r = d.path();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../../../etc", r.join("up")).unwrap();
        symlink("/", r.join("slash")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        symlink("usr/bin", r.join("rel")).unwrap();
        assert_eq!(
            resolve_in_root(r, "/abs/passwd", true).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(r, "/up/passwd", true).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(r, "/../../../etc/passwd", true).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(r, "/slash/..", true).unwrap(),
            r.to_path_buf()
        );
        assert_eq!(
            resolve_in_root(r, "/rel/x", true).unwrap(),
            r.join("usr/bin/x")
        );
        // The last component is kept unless asked.
        assert_eq!(resolve_in_root(r, "/abs", false).unwrap(), r.join("abs"));
        assert!(matches!(
            resolve_in_root(r, "/loop1/x", true),
            Err(FsError::Loop(_))
        ));
        for p in ["/abs", "/up", "/slash/slash/up", "/nonexistent/../../.."] {
            let got = resolve_in_root(r, p, true).unwrap();
            assert!(got.starts_with(r), "{p} escaped: {}", got.display());
        }
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

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_mtime(1_000_000);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, name, data).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    // Bypass the tar crate's own `..` check to test ours.
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_cksum();
                    b.append(&h, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extract_refuses_escapes_and_follows_links_inside() {
        let d = root();
        let r = d.path();
        let outside = tempfile::tempdir().unwrap();
        // A symlink in the archive pointing outside, then a file written through it.
        let link_target = outside.path().display().to_string();
        let t = tar_of(&[
            ("evil", tar::EntryType::Symlink, &link_target),
            ("evil/pwned", tar::EntryType::Regular, "x"),
        ]);
        extract(r, "/", &mut &t[..], &ExtractOptions::default()).unwrap();
        assert!(!outside.path().join("pwned").exists());
        assert!(r
            .join(outside.path().strip_prefix("/").unwrap())
            .join("pwned")
            .exists());
        let t = tar_of(&[("../../escape", tar::EntryType::Regular, "x")]);
        assert!(matches!(
            extract(r, "/etc", &mut &t[..], &ExtractOptions::default()),
            Err(FsError::Invalid(_))
        ));
        let t = tar_of(&[("hello.txt", tar::EntryType::Regular, "hi")]);
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
        let t = tar_of(&[("etc", tar::EntryType::Regular, "x")]);
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
        set_mtime(&l.join("etc"), 1000);
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
        assert_eq!(entry_rel(b"./a/../b"), Some(PathBuf::from("b")));
        assert_eq!(entry_rel(b"../b"), None);
        assert_eq!(entry_rel(b"/abs/x"), Some(PathBuf::from("abs/x")));
    }
}
