//! Safe writes below a root directory: the one place barge creates, replaces or changes files
//! under a directory it does not trust (an image snapshot, a container's root, a `docker cp`
//! destination on the host, a build context, an unpacked image archive).
//!
//! [`InRoot`] holds the root as an `O_PATH` directory fd; every path is first cleaned lexically
//! (docker's `filepath.Clean`: `.` and empty components dropped, `..` pops, never above the
//! root), then its parent directory is opened with
//! [`openat2(2)`](https://man7.org/linux/man-pages/man2/openat2.2.html) relative to the root fd,
//! and the object is made with the `*at` call on that parent fd, never following a symlink at
//! the last component. Two resolution modes:
//! - [`Follow::InRoot`] (`RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`): symlinks on the way are
//!   followed as a process chrooted in the root would see them (an absolute target restarts at
//!   the root, `..` stops at it) — docker's semantics for `docker cp`, build contexts, load;
//! - [`Follow::Never`] (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`): a path going through any symlink
//!   is refused ([`InRootError::Escape`]) — what an image layer may do.
//!
//! The kernel does the resolution in one step, so a process racing a symlink swap (a running
//! container) cannot redirect a write outside the root. [`Unpacker`] applies tar entries through
//! it, with the owners, modes, times and xattrs of the entries.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// Most symlinks followed by [`resolve_path`] for one path (as the kernel's limit of 40).
const MAX_SYMLINKS: usize = 40;

/// Size of the buffer regular files are copied through (one `write` per 1 MiB, not per 8 KiB).
const COPY_BUF: usize = 1 << 20;

/// Errors of in-root writes. `path` fields are relative to the root.
#[derive(Debug, thiserror::Error)]
pub enum InRootError {
    /// The path leaves the root, or (with [`Follow::Never`]) goes through a symlink or a
    /// non-directory: hostile input.
    #[error("{path}: {reason}")]
    Escape { path: String, reason: &'static str },
    /// A hard link whose target is missing, a directory, or not reachable in the root.
    #[error("hard link {path} to {target}: {reason}")]
    LinkTarget {
        path: String,
        target: String,
        reason: &'static str,
    },
    /// With [`UnpackOptions::no_overwrite_dir_non_dir`]: an entry would replace a directory by a
    /// non-directory (`existing_dir`) or a non-directory by a directory. `entry` is the entry's
    /// name in the archive.
    #[error("cannot overwrite {} {path:?} with {} {entry:?}",
        if *existing_dir { "directory" } else { "non-directory" },
        if *existing_dir { "non-directory" } else { "directory" })]
    Overwrite {
        path: String,
        entry: String,
        existing_dir: bool,
    },
    /// An entry type this extraction does not handle (with [`Unsupported::Error`]).
    #[error("unsupported entry type {kind:?} for {entry}")]
    Unsupported { entry: String, kind: char },
    /// The archive itself could not be read (truncated, bad header, bad PAX record).
    #[error("reading archive: {0}")]
    Archive(#[source] io::Error),
    /// A system call failed (`op` names it).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

impl InRootError {
    /// The same error with its root-relative paths shown below `base` (the container's `/`,
    /// the host directory of a `docker cp`), as docker words them.
    pub fn shown_under(self, base: &Path) -> Self {
        let show = |p: String| base.join(p).display().to_string();
        match self {
            InRootError::Escape { path, reason } => InRootError::Escape {
                path: show(path),
                reason,
            },
            InRootError::LinkTarget {
                path,
                target,
                reason,
            } => InRootError::LinkTarget {
                path: show(path),
                target: show(target),
                reason,
            },
            InRootError::Overwrite {
                path,
                entry,
                existing_dir,
            } => InRootError::Overwrite {
                path: show(path),
                entry,
                existing_dir,
            },
            InRootError::Io { op, path, source } => InRootError::Io {
                op,
                path: show(path),
                source,
            },
            e => e,
        }
    }

    /// The OS error number behind an [`InRootError::Io`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            InRootError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

fn io_at<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(Errno) -> InRootError + 'p {
    move |e| InRootError::Io {
        op,
        path: path.display().to_string(),
        source: io::Error::from_raw_os_error(e as i32),
    }
}

/// How symlinks met while resolving a path's parent are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Followed inside the root, as a chrooted process sees them.
    InRoot,
    /// Never followed: a path through a symlink is an [`InRootError::Escape`].
    Never,
}

/// Cleans an archive entry name (or any relative name) to a relative path of normal components:
/// a leading `/`, `.` and empty components dropped, `..` popping the previous component.
/// `None` when a `..` would leave the directory the name is relative to (docker's
/// "breakout" check).
pub fn clean_entry_name(name: &[u8]) -> Option<PathBuf> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.iter().map(|p| OsStr::from_bytes(p)).collect())
}

/// Lexically cleans `path` relative to a root: like [`clean_entry_name`], except that `..` at the
/// root stays there (as `/..` is `/`).
fn clean_in_root(path: &Path) -> PathBuf {
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.iter().collect()
}

/// Resolves `path` (as a process chrooted in `root` sees it) to a host path below `root`, in user
/// space, for reading and reporting (`docker cp`'s stat and archive, `RUN --mount` sources):
/// symlinks in every component are followed inside the root (an absolute target restarts at
/// it, `..` stops at it), the last one only if `follow_last`. Missing components are kept as
/// they are, so the result may not exist. Writes never use this (see [`InRoot`]).
/// Errors: [`InRootError::Io`] with `ELOOP` past 40 symlinks, or when a link cannot be read.
pub fn resolve_path(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf, InRootError> {
    let comps = |p: &[u8]| -> Vec<OsString> {
        p.split(|b| *b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(|c| OsStr::from_bytes(c).to_os_string())
            .collect()
    };
    let mut todo: Vec<OsString> = comps(path.as_bytes()).into_iter().rev().collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&c);
        if todo.is_empty() && !follow_last {
            resolved.push(c);
            break;
        }
        match std::fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(InRootError::Io {
                        op: "resolve",
                        path: path.to_string(),
                        source: io::Error::from_raw_os_error(libc::ELOOP),
                    });
                }
                let target = std::fs::read_link(&candidate).map_err(|source| InRootError::Io {
                    op: "readlink",
                    path: candidate.display().to_string(),
                    source,
                })?;
                let t = target.as_os_str().as_bytes();
                if t.starts_with(b"/") {
                    resolved.clear();
                }
                todo.extend(comps(t).into_iter().rev());
            }
            _ => resolved.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(out)
}

/// What kind of node [`InRoot::mknod`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Char,
    Block,
    Fifo,
}

/// Owner, mode and modification time to set on one path ([`InRoot::set_metadata`]); `None`
/// leaves that attribute alone. The owner is set first (chown clears setuid/setgid bits), the
/// mode is never applied to a symlink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metadata {
    /// (uid, gid), set without following a symlink (`lchown`).
    pub owner: Option<(u32, u32)>,
    /// Permission bits (`0o7777`).
    pub mode: Option<u32>,
    /// Seconds since the epoch; atime is set to the same.
    pub mtime: Option<i64>,
}

/// A directory into which every write stays: see the [module docs](self).
pub struct InRoot {
    root: Rc<OwnedFd>,
    path: PathBuf,
    follow: Follow,
    /// The last parent directory opened: (root-relative path, fd). Tar streams list entries
    /// directory by directory, so most entries reuse it. Dropped whenever this handle removes
    /// something or makes a symlink, which could change what a path resolves to.
    last: RefCell<Option<(PathBuf, Rc<OwnedFd>)>>,
}

impl std::fmt::Debug for InRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InRoot")
            .field("path", &self.path)
            .field("follow", &self.follow)
            .finish()
    }
}

impl InRoot {
    /// Opens the existing directory `root` (it may itself be reached through symlinks or
    /// `/proc/<pid>/root`) with symlinks below it followed inside it ([`Follow::InRoot`]).
    /// Errors: [`InRootError::Io`] when it cannot be opened as a directory.
    pub fn open(root: &Path) -> Result<InRoot, InRootError> {
        Self::open_with(root, Follow::InRoot)
    }

    /// Opens the existing directory `root` with the given symlink policy.
    pub fn open_with(root: &Path, follow: Follow) -> Result<InRoot, InRootError> {
        let fd = openat(
            nix::fcntl::AT_FDCWD,
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_at("open", root))?;
        Ok(InRoot {
            root: Rc::new(fd),
            path: root.to_path_buf(),
            follow,
            last: RefCell::new(None),
        })
    }

    /// The root's path as given to [`InRoot::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn how(&self, flags: OFlag) -> OpenHow {
        let resolve = match self.follow {
            Follow::InRoot => ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            Follow::Never => ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
        };
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(resolve)
    }

    /// Opens `rel` (cleaned, relative) below the root with openat2 and `flags`.
    fn open2(&self, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
        let p: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        openat2(&*self.root, p, self.how(flags))
    }

    fn forget(&self) {
        self.last.borrow_mut().take();
    }

    fn escape_or_io(&self, op: &'static str, rel: &Path, e: Errno) -> InRootError {
        match (self.follow, e) {
            (Follow::Never, Errno::ELOOP | Errno::ENOTDIR) => InRootError::Escape {
                path: rel.display().to_string(),
                reason: "path goes through a symlink or non-directory",
            },
            (_, Errno::EXDEV) => InRootError::Escape {
                path: rel.display().to_string(),
                reason: "path leaves the root",
            },
            _ => io_at(op, rel)(e),
        }
    }

    /// The directory `rel` (cleaned), created with missing parents (mode `mode`, before umask)
    /// when `create`.
    fn dir(&self, rel: &Path, create: bool, mode: u32) -> Result<Rc<OwnedFd>, InRootError> {
        if rel.as_os_str().is_empty() {
            return Ok(self.root.clone());
        }
        if let Some((p, fd)) = &*self.last.borrow() {
            if p == rel {
                return Ok(fd.clone());
            }
        }
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let fd = match self.open2(rel, flags) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => {
                // Walk down from the deepest existing ancestor, making each missing level.
                let mut cur = PathBuf::new();
                let mut fd = None;
                for c in rel.components() {
                    let parent = fd.take();
                    cur.push(c);
                    let opened = match self.open2(&cur, flags) {
                        Err(Errno::ENOENT) => {
                            let pfd = match &parent {
                                Some(p) => p,
                                None => &*self.root,
                            };
                            match mkdirat(pfd, c.as_os_str(), Mode::from_bits_truncate(mode)) {
                                Ok(()) | Err(Errno::EEXIST) => {}
                                Err(e) => return Err(self.escape_or_io("mkdir", &cur, e)),
                            }
                            self.open2(&cur, flags)
                        }
                        r => r,
                    };
                    fd = Some(opened.map_err(|e| self.escape_or_io("open", &cur, e))?);
                }
                fd.expect("a non-empty path has components")
            }
            Err(e) => return Err(self.escape_or_io("open", rel, e)),
        };
        let fd = Rc::new(fd);
        *self.last.borrow_mut() = Some((rel.to_path_buf(), fd.clone()));
        Ok(fd)
    }

    /// Cleans `path` and splits it into (parent, name); `None` as name for the root itself.
    fn split(&self, path: &Path) -> (PathBuf, Option<OsString>) {
        let rel = clean_in_root(path);
        match rel.file_name() {
            Some(n) => {
                let n = n.to_os_string();
                (rel.parent().unwrap_or(Path::new("")).to_path_buf(), Some(n))
            }
            None => (rel, None),
        }
    }

    /// The parent of `path` (created when `create`, as root-owned 0755 directories before the
    /// umask) and the last component. Errors for the root itself.
    fn parent(&self, path: &Path, create: bool) -> Result<(Rc<OwnedFd>, OsString), InRootError> {
        let (parent, name) = self.split(path);
        let Some(name) = name else {
            return Err(io_at("write", path)(Errno::EISDIR));
        };
        Ok((self.dir(&parent, create, 0o755)?, name))
    }

    /// What is at `path` (not following a symlink there): its `st_mode` file type bits, or
    /// `None` if nothing is. A missing or unreachable parent is `None` too.
    pub fn file_type(&self, path: &Path) -> Result<Option<SFlag>, InRootError> {
        let (parent, name) = self.split(path);
        let dir = match self.dir(&parent, false, 0) {
            Ok(d) => d,
            Err(InRootError::Io { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::ENOTDIR)
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let name = name.unwrap_or_else(|| ".".into());
        Ok(existing(&dir, &name))
    }

    /// Makes the directory `path` and its missing parents (`mode` before the umask); an existing
    /// directory is fine.
    pub fn mkdir_all(&self, path: &Path, mode: u32) -> Result<(), InRootError> {
        let rel = clean_in_root(path);
        self.dir(&rel, true, mode).map(|_| ())
    }

    /// Creates the regular file `path` for writing (`mode` before the umask, missing parents
    /// made), replacing a non-directory already there (never writing through a symlink at it);
    /// a directory there is `EISDIR`.
    pub fn create_file(&self, path: &Path, mode: u32) -> Result<File, InRootError> {
        let (dir, name) = self.parent(path, true)?;
        let rel = clean_in_root(path);
        let flags =
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let m = Mode::from_bits_truncate(mode);
        let fd = self.replacing(&dir, &name, &rel, "create", || {
            openat(&*dir, name.as_os_str(), flags, m)
        })?;
        Ok(File::from(fd))
    }

    /// Opens the existing file `path` for reading, following a symlink at it inside the root
    /// too (with [`Follow::Never`], refusing one).
    pub fn open_file(&self, path: &Path) -> Result<File, InRootError> {
        let rel = clean_in_root(path);
        let mut flags = OFlag::O_RDONLY;
        if self.follow == Follow::Never {
            flags |= OFlag::O_NOFOLLOW;
        }
        self.open2(&rel, flags)
            .map(File::from)
            .map_err(|e| self.escape_or_io("open", &rel, e))
    }

    /// Makes the symlink `path` → `target` (kept as given; it is resolved in the root when
    /// followed later), replacing what is at `path` unless that is a directory.
    pub fn symlink(&self, target: &Path, path: &Path) -> Result<(), InRootError> {
        let (dir, name) = self.parent(path, true)?;
        let rel = clean_in_root(path);
        self.forget();
        self.replacing(&dir, &name, &rel, "symlink", || {
            symlinkat(target, &*dir, name.as_os_str())
        })
    }

    /// Makes `path` a hard link to the existing non-directory `existing` (both in the root; a
    /// symlink at `existing` is linked itself, never followed), replacing a non-directory at
    /// `path`. Linking a path to itself does nothing.
    /// Errors: [`InRootError::LinkTarget`] when `existing` is missing, a directory, or its
    /// parent cannot be reached.
    pub fn hardlink(&self, existing_path: &Path, path: &Path) -> Result<(), InRootError> {
        let rel = clean_in_root(path);
        let trel = clean_in_root(existing_path);
        let bad = |reason| InRootError::LinkTarget {
            path: rel.display().to_string(),
            target: trel.display().to_string(),
            reason,
        };
        let (tparent, tname) = self.split(&trel);
        let Some(tname) = tname else {
            return Err(bad("the target is the root"));
        };
        let tdir = match self.dir(&tparent, false, 0) {
            Ok(d) => d,
            Err(e @ InRootError::Escape { .. }) => return Err(e),
            Err(_) => return Err(bad("the target does not exist")),
        };
        match existing(&tdir, &tname) {
            None => return Err(bad("the target does not exist")),
            Some(SFlag::S_IFDIR) => return Err(bad("the target is a directory")),
            Some(_) => {}
        }
        if trel == rel {
            return Ok(());
        }
        let (dir, name) = self.parent(path, true)?;
        let link = || {
            linkat(
                &*tdir,
                tname.as_os_str(),
                &*dir,
                name.as_os_str(),
                AtFlags::empty(),
            )
        };
        self.replacing(&dir, &name, &rel, "link", link)
    }

    /// Makes a device node or FIFO at `path` (`mode` before the umask; `rdev` from
    /// `makedev`), replacing a non-directory there.
    pub fn mknod(
        &self,
        path: &Path,
        kind: NodeKind,
        mode: u32,
        rdev: u64,
    ) -> Result<(), InRootError> {
        let (dir, name) = self.parent(path, true)?;
        let rel = clean_in_root(path);
        let k = match kind {
            NodeKind::Char => SFlag::S_IFCHR,
            NodeKind::Block => SFlag::S_IFBLK,
            NodeKind::Fifo => SFlag::S_IFIFO,
        };
        let m = Mode::from_bits_truncate(mode);
        self.replacing(&dir, &name, &rel, "mknod", || {
            mknodat(&*dir, name.as_os_str(), k, m, rdev as _)
        })
    }

    /// Removes whatever is at `path` (a directory with everything below it), never following a
    /// symlink; nothing there is fine. The root itself cannot be removed.
    pub fn remove(&self, path: &Path) -> Result<(), InRootError> {
        let (parent, name) = self.split(path);
        let Some(name) = name else {
            return Err(io_at("remove", path)(Errno::EBUSY));
        };
        let dir = match self.dir(&parent, false, 0) {
            Ok(d) => d,
            Err(InRootError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        self.remove_at(&dir, &name, &clean_in_root(path))
    }

    /// Runs `make` (which creates `name` in `dir`); when something is already there, removes
    /// it and runs `make` again, unless it is a directory (`EISDIR`: never replaced here).
    fn replacing<T>(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &Path,
        op: &'static str,
        make: impl Fn() -> nix::Result<T>,
    ) -> Result<T, InRootError> {
        match make() {
            Err(Errno::EEXIST) => {
                if existing(dir, name) == Some(SFlag::S_IFDIR) {
                    return Err(io_at(op, rel)(Errno::EISDIR));
                }
                self.remove_at(dir, name, rel)?;
                make()
            }
            r => r,
        }
        .map_err(io_at(op, rel))
    }

    fn remove_at(&self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<(), InRootError> {
        self.forget();
        match existing(dir, name) {
            None => Ok(()),
            Some(SFlag::S_IFDIR) => {
                // /proc/self/fd/N is `dir` itself; remove_dir_all never follows symlinks inside
                // the tree it removes, nor one at `name`.
                let p = proc_fd_path(dir, name);
                std::fs::remove_dir_all(Path::new(OsStr::from_bytes(p.as_bytes()))).map_err(
                    |source| InRootError::Io {
                        op: "remove",
                        path: rel.display().to_string(),
                        source,
                    },
                )
            }
            Some(_) => {
                unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(io_at("unlink", rel))
            }
        }
    }

    /// Sets owner, mode and mtime of `path` (see [`Metadata`]), never following a symlink at it.
    pub fn set_metadata(&self, path: &Path, md: &Metadata) -> Result<(), InRootError> {
        let (parent, name) = self.split(path);
        let rel = clean_in_root(path);
        let dir = self.dir(&parent, false, 0)?;
        let name = name.unwrap_or_else(|| ".".into());
        set_metadata_at(&dir, &name, &rel, md)
    }

    /// Sets the extended attribute `key` of `path` (not following a symlink at it).
    pub fn set_xattr(&self, path: &Path, key: &str, value: &[u8]) -> Result<(), InRootError> {
        let (parent, name) = self.split(path);
        let rel = clean_in_root(path);
        let dir = self.dir(&parent, false, 0)?;
        let name = name.unwrap_or_else(|| ".".into());
        set_xattr_at(&dir, &name, key, value).map_err(|source| InRootError::Io {
            op: "setxattr",
            path: rel.display().to_string(),
            source,
        })
    }

    /// Makes the directory `path` durable with everything on its file system (`syncfs`).
    pub fn syncfs(&self) -> Result<(), InRootError> {
        let d = self
            .open2(Path::new(""), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(io_at("open", &self.path))?;
        nix::unistd::syncfs(d.as_fd()).map_err(io_at("syncfs", &self.path))
    }
}

/// What is at `name` in `dir`, not following a symlink: its file type bits.
fn existing(dir: &OwnedFd, name: &OsStr) -> Option<SFlag> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .map(|st| SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()))
}

/// `/proc/self/fd/<dir>/<name>`: `name` in `dir` by a path that resolves `dir` through its fd
/// and does not follow a symlink at `name` when used with an `l*` call.
fn proc_fd_path(dir: &OwnedFd, name: &OsStr) -> CString {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    // A path component never holds a NUL (it came from an OsStr split on '/', and the kernel
    // refuses NULs anyway): replace rather than panic.
    CString::new(p).unwrap_or_else(|e| {
        let mut v = e.into_vec();
        v.retain(|b| *b != 0);
        CString::new(v).unwrap_or_default()
    })
}

fn set_xattr_at(dir: &OwnedFd, name: &OsStr, key: &str, value: &[u8]) -> io::Result<()> {
    let path = proc_fd_path(dir, name);
    let key = CString::new(key).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: both pointers are valid NUL-terminated strings and `value` is a valid slice for
    // the given length; lsetxattr does not follow a symlink at the final component.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Changes the mode of `name` in `dir` unless it is a symlink, without following one: through
/// an `O_PATH | O_NOFOLLOW` fd of the object itself (as glibc's `fchmodat(AT_SYMLINK_NOFOLLOW)`
/// does), so a symlink swapped in meanwhile is never followed.
fn chmod_at(dir: &OwnedFd, name: &OsStr, rel: &Path, mode: u32) -> Result<(), InRootError> {
    let fd = openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_at("open", rel))?;
    let st = fstat(&fd).map_err(io_at("stat", rel))?;
    if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits() {
        return Ok(());
    }
    chmod_opath(&fd, rel, mode)
}

/// Changes the mode of the object `fd` (an `O_PATH` fd of a non-symlink) through its
/// `/proc/self/fd` link, which leads to that inode and nowhere else.
fn chmod_opath(fd: &OwnedFd, rel: &Path, mode: u32) -> Result<(), InRootError> {
    let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        p.as_str(),
        Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(io_at("chmod", rel))
}

fn set_metadata_at(
    dir: &OwnedFd,
    name: &OsStr,
    rel: &Path,
    md: &Metadata,
) -> Result<(), InRootError> {
    if let Some((uid, gid)) = md.owner {
        fchownat(
            dir,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(io_at("chown", rel))?;
    }
    if let Some(mode) = md.mode {
        chmod_at(dir, name, rel, mode)?;
    }
    if let Some(mtime) = md.mtime {
        let t = TimeSpec::new(mtime, 0);
        utimensat(dir, name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(io_at("set mtime of", rel))?;
    }
    Ok(())
}

/// Whose owner an unpacked entry gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Owner {
    /// Left as created (the extracting process').
    #[default]
    Unchanged,
    /// The entry's uid/gid (PAX `uid`/`gid` records win over the header fields).
    FromEntry,
    /// This uid/gid for every entry (`docker cp`'s `copyUIDGID`, `--chown`).
    Fixed(u32, u32),
}

/// What [`Unpacker::unpack_entry`] does with an entry type it does not handle (GNU sparse
/// files, and the specials when [`UnpackOptions::specials`] is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unsupported {
    /// Skip the entry.
    #[default]
    Skip,
    /// Fail with [`InRootError::Unsupported`].
    Error,
}

/// How [`Unpacker`] applies entries.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// Owner of what is made.
    pub owner: Owner,
    /// Apply `SCHILY.xattr.*` PAX records (where the file system refuses one with `ENOTSUP` or
    /// `EPERM`, it is skipped and listed in [`Unpacker::skipped_xattrs`]).
    pub xattrs: bool,
    /// Refuse to replace a directory by a non-directory and the reverse (docker's
    /// `NoOverwriteDirNonDir`); otherwise the old one is removed (a directory with its
    /// contents) unless both are directories.
    pub no_overwrite_dir_non_dir: bool,
    /// Make FIFOs and device nodes (else they are [`UnpackOptions::unsupported`]).
    pub specials: bool,
    /// What to do with an unhandled entry type.
    pub unsupported: Unsupported,
}

/// The PAX-aware metadata of an entry.
struct EntryMeta {
    uid: u64,
    gid: u64,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn entry_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<EntryMeta, InRootError> {
    let h = entry.header();
    let mut m = EntryMeta {
        uid: h.uid().unwrap_or(0),
        gid: h.gid().unwrap_or(0),
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        mtime: h.mtime().unwrap_or(0) as i64,
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions().map_err(InRootError::Archive)? {
        for ext in exts.flatten() {
            let Ok(k) = ext.key() else { continue };
            let num = || {
                ext.value()
                    .ok()
                    .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
            };
            match k {
                // PAX records override the (possibly too small) ustar fields.
                "uid" => m.uid = num().map(|n| n as u64).unwrap_or(m.uid),
                "gid" => m.gid = num().map(|n| n as u64).unwrap_or(m.gid),
                "mtime" => m.mtime = num().unwrap_or(m.mtime),
                _ => {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        m.xattrs
                            .push((name.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    Ok(m)
}

/// Applies tar entries below an [`InRoot`], each at a root-relative path its caller chose (so
/// renames, extraction subdirectories and whiteouts stay the caller's). Directories get their
/// mode and mtime in [`Unpacker::finish`], after their children were written (so a read-only
/// directory can still be filled, and its mtime is the archive's).
pub struct Unpacker<'a> {
    root: &'a InRoot,
    opts: UnpackOptions,
    /// Directory mode and mtime by root-relative path; a later entry for the same one wins.
    dirs: HashMap<PathBuf, (u32, i64)>,
    buf: Vec<u8>,
    /// Extended attributes the file system refused (`ENOTSUP`/`EPERM`): (path, name, error).
    pub skipped_xattrs: Vec<(PathBuf, String, io::Error)>,
}

impl<'a> Unpacker<'a> {
    /// An unpacker writing below `root`.
    pub fn new(root: &'a InRoot, opts: UnpackOptions) -> Self {
        Unpacker {
            root,
            opts,
            dirs: HashMap::new(),
            buf: Vec::new(),
            skipped_xattrs: Vec::new(),
        }
    }

    /// The root written to.
    pub fn root(&self) -> &InRoot {
        self.root
    }

    /// Applies `entry` at `dest` (relative to the root, cleaned here; empty for the root itself,
    /// where only a directory entry's metadata applies). A hard link entry links to
    /// `link_target` (root-relative, the caller's mapping of the entry's link name); `None` for
    /// a hard link fails with [`InRootError::LinkTarget`]. Returns false for a skipped entry.
    pub fn unpack_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dest: &Path,
        link_target: Option<&Path>,
    ) -> Result<bool, InRootError> {
        use tar::EntryType as T;
        let mut kind = entry.header().entry_type();
        // A pre-POSIX "regular" entry (type NUL) named with a trailing slash is a directory
        // (Go's archive/tar and the tar crate read it so).
        if entry.header().as_old().linkflag[0] == 0 && entry.path_bytes().ends_with(b"/") {
            kind = T::Directory;
        }
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(false);
        }
        let rel = clean_in_root(dest);
        let meta = entry_meta(entry)?;
        let owner = match self.opts.owner {
            Owner::Unchanged => None,
            Owner::FromEntry => Some((meta.uid as u32, meta.gid as u32)),
            Owner::Fixed(u, g) => Some((u, g)),
        };
        let special = matches!(kind, T::Fifo | T::Char | T::Block);
        let handled = matches!(
            kind,
            T::Directory | T::Regular | T::Continuous | T::Symlink | T::Link
        ) || (special && self.opts.specials);
        if !handled {
            return match self.opts.unsupported {
                Unsupported::Skip => Ok(false),
                Unsupported::Error => Err(InRootError::Unsupported {
                    entry: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                    kind: kind.as_byte() as char,
                }),
            };
        }
        let is_dir = kind == T::Directory;
        if rel.as_os_str().is_empty() {
            // The root (or extraction directory) itself: only a directory's metadata applies.
            if is_dir {
                self.root.set_metadata(
                    &rel,
                    &Metadata {
                        owner,
                        ..Default::default()
                    },
                )?;
                self.dirs.insert(rel, (meta.mode, meta.mtime));
            }
            return Ok(is_dir);
        }
        let (dir, name) = self.root.parent(&rel, true)?;
        let ex = existing(&dir, &name);
        if let Some(ex) = ex {
            let ex_dir = ex == SFlag::S_IFDIR;
            if self.opts.no_overwrite_dir_non_dir && ex_dir != is_dir {
                return Err(InRootError::Overwrite {
                    path: rel.display().to_string(),
                    entry: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                    existing_dir: ex_dir,
                });
            }
            // A hard link to itself keeps what is there.
            let self_link =
                kind == T::Link && link_target.map(clean_in_root).as_ref() == Some(&rel);
            let keep = (ex_dir && is_dir) || self_link;
            if !keep {
                self.root.remove_at(&dir, &name, &rel)?;
                if ex_dir {
                    self.dirs.retain(|p, _| !p.starts_with(&rel));
                }
            }
        }
        let md_rest = |mtime| Metadata {
            owner,
            mode: None,
            mtime,
        };
        match kind {
            T::Directory => {
                if ex != Some(SFlag::S_IFDIR) {
                    mkdirat(&*dir, name.as_os_str(), Mode::from_bits_truncate(0o700))
                        .map_err(io_at("mkdir", &rel))?;
                }
                set_metadata_at(&dir, &name, &rel, &md_rest(None))?;
                self.xattrs(&dir, &name, &rel, &meta.xattrs)?;
                self.dirs.insert(rel, (meta.mode, meta.mtime));
            }
            T::Regular | T::Continuous => {
                let fd = openat(
                    &*dir,
                    name.as_os_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(io_at("create", &rel))?;
                let mut file = File::from(fd);
                self.copy_data(entry, &mut file, &rel)?;
                // Metadata through the open file: no path lookups. chown before chmod, which
                // chown would clear setuid/setgid from.
                if let Some((u, g)) = owner {
                    nix::unistd::fchown(&file, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))
                        .map_err(io_at("chown", &rel))?;
                }
                nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(meta.mode))
                    .map_err(io_at("chmod", &rel))?;
                self.xattrs(&dir, &name, &rel, &meta.xattrs)?;
                let t = TimeSpec::new(meta.mtime, 0);
                nix::sys::stat::futimens(&file, &t, &t).map_err(io_at("set mtime of", &rel))?;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| io_at("symlink", &rel)(Errno::EINVAL))?
                    .into_owned();
                self.root.forget();
                symlinkat(OsStr::from_bytes(&target), &*dir, name.as_os_str())
                    .map_err(io_at("symlink", &rel))?;
                set_metadata_at(&dir, &name, &rel, &md_rest(Some(meta.mtime)))?;
            }
            T::Link => {
                let Some(t) = link_target else {
                    return Err(InRootError::LinkTarget {
                        path: rel.display().to_string(),
                        target: String::from_utf8_lossy(
                            &entry.link_name_bytes().unwrap_or_default(),
                        )
                        .into_owned(),
                        reason: "the target leaves the archive",
                    });
                };
                self.root.hardlink(t, &rel)?;
            }
            _ => {
                let h = entry.header();
                let rdev = nix::sys::stat::makedev(
                    h.device_major().ok().flatten().unwrap_or(0).into(),
                    h.device_minor().ok().flatten().unwrap_or(0).into(),
                );
                let k = match kind {
                    T::Char => SFlag::S_IFCHR,
                    T::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                mknodat(
                    &*dir,
                    name.as_os_str(),
                    k,
                    Mode::from_bits_truncate(0o600),
                    rdev as _,
                )
                .map_err(io_at("mknod", &rel))?;
                set_metadata_at(&dir, &name, &rel, &md_rest(None))?;
                chmod_at(&dir, &name, &rel, meta.mode)?;
                self.xattrs(&dir, &name, &rel, &meta.xattrs)?;
                set_metadata_at(
                    &dir,
                    &name,
                    &rel,
                    &Metadata {
                        mtime: Some(meta.mtime),
                        ..Default::default()
                    },
                )?;
            }
        }
        Ok(true)
    }

    /// Copies a regular file's data from the tar stream through a large buffer.
    fn copy_data(
        &mut self,
        r: &mut dyn Read,
        file: &mut File,
        rel: &Path,
    ) -> Result<(), InRootError> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; COPY_BUF];
        }
        loop {
            let n = match r.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(InRootError::Archive(e)),
            };
            file.write_all(&self.buf[..n])
                .map_err(|source| InRootError::Io {
                    op: "write",
                    path: rel.display().to_string(),
                    source,
                })?;
        }
    }

    fn xattrs(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &Path,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<(), InRootError> {
        if !self.opts.xattrs {
            return Ok(());
        }
        for (k, v) in xattrs {
            match set_xattr_at(dir, name, k, v) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {
                    self.skipped_xattrs.push((rel.to_path_buf(), k.clone(), e));
                }
                Err(source) => {
                    return Err(InRootError::Io {
                        op: "setxattr",
                        path: rel.display().to_string(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Sets the directories' modes and mtimes, deepest first. A directory a later entry
    /// replaced or removed is skipped.
    pub fn finish(self) -> Result<(), InRootError> {
        let mut dirs: Vec<_> = self.dirs.into_iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, (mode, mtime)) in dirs {
            // An O_PATH fd of the directory itself (no read permission needed), changed through
            // its /proc/self/fd link, which leads to that inode and nowhere else.
            let fd = match self
                .root
                .open2(&rel, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW)
            {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                Err(e) => return Err(self.root.escape_or_io("open", &rel, e)),
            };
            chmod_opath(&fd, &rel, mode)?;
            let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
            let t = TimeSpec::new(mtime, 0);
            utimensat(
                nix::fcntl::AT_FDCWD,
                p.as_str(),
                &t,
                &t,
                UtimensatFlags::FollowSymlink,
            )
            .map_err(io_at("set mtime of", &rel))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw_tar;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    /// A root and, beside it, a canary directory `outside` holding `passwd`: every hostile
    /// path here aims at the canary (never at a host path such as /etc), so even a broken
    /// implementation cannot damage the machine running the tests.
    struct Fixture {
        _d: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("passwd"), "original").unwrap();
        Fixture {
            _d: d,
            root,
            outside,
        }
    }

    impl Fixture {
        /// The canary's absolute path as it appears inside the root.
        fn outside_in_root(&self) -> PathBuf {
            self.root.join(self.outside.strip_prefix("/").unwrap())
        }
        fn canary_intact(&self) {
            assert_eq!(
                fs::read_to_string(self.outside.join("passwd")).unwrap(),
                "original"
            );
            assert_eq!(fs::read_dir(&self.outside).unwrap().count(), 1);
        }
    }

    #[test]
    fn absolute_symlink_then_write_through_it_stays_in_root() {
        // `etc -> /etc` then `etc/passwd`, with the canary standing in for /etc.
        let f = fixture();
        let r = InRoot::open(&f.root).unwrap();
        r.symlink(&f.outside, Path::new("link")).unwrap();
        r.mkdir_all(&f.outside, 0o755).unwrap();
        let mut w = r.create_file(Path::new("link/passwd"), 0o644).unwrap();
        w.write_all(b"pwned").unwrap();
        drop(w);
        f.canary_intact();
        assert_eq!(
            fs::read_to_string(f.outside_in_root().join("passwd")).unwrap(),
            "pwned"
        );
        // A dangling absolute link is not created through (docker's MkdirAll fails too).
        r.symlink(Path::new("/nowhere"), Path::new("dangling"))
            .unwrap();
        assert!(r.create_file(Path::new("dangling/x"), 0o644).is_err());
        assert!(!f.root.join("nowhere").exists());
    }

    #[test]
    fn dotdot_stays_in_root() {
        let f = fixture();
        let r = InRoot::open(&f.root).unwrap();
        r.create_file(Path::new("../../x"), 0o644).unwrap();
        assert!(f.root.join("x").is_file());
        r.mkdir_all(Path::new("/../a/../../b/c"), 0o755).unwrap();
        assert!(f.root.join("b/c").is_dir());
        // `..` through a relative symlink that climbs out also stops at the root.
        r.symlink(Path::new("../../../.."), Path::new("b/up"))
            .unwrap();
        r.create_file(Path::new("b/up/outside/passwd"), 0o644)
            .unwrap();
        assert!(f.root.join("outside/passwd").is_file());
        f.canary_intact();
    }

    #[test]
    fn absolute_symlink_targets_resolve_in_root() {
        let f = fixture();
        let r = InRoot::open(&f.root).unwrap();
        r.mkdir_all(Path::new("etc2"), 0o755).unwrap();
        r.symlink(Path::new("/etc2"), Path::new("abs")).unwrap();
        r.create_file(Path::new("abs/f"), 0o600).unwrap();
        assert!(f.root.join("etc2/f").is_file());
        // The link itself is kept as given.
        assert_eq!(
            fs::read_link(f.root.join("abs")).unwrap(),
            Path::new("/etc2")
        );
        assert_eq!(r.file_type(Path::new("abs")).unwrap(), Some(SFlag::S_IFLNK));
        assert_eq!(
            r.file_type(Path::new("abs/f")).unwrap(),
            Some(SFlag::S_IFREG)
        );
        assert_eq!(r.file_type(Path::new("nope/f")).unwrap(), None);
    }

    #[test]
    fn hardlink_to_outside_is_refused() {
        let f = fixture();
        let r = InRoot::open(&f.root).unwrap();
        let rel_out = format!("../{}/passwd", "outside");
        for target in [
            PathBuf::from(&rel_out),
            f.outside.join("passwd"),
            PathBuf::from("../../../../../../..")
                .join(f.outside.strip_prefix("/").unwrap())
                .join("passwd"),
        ] {
            assert!(
                matches!(
                    r.hardlink(&target, Path::new("h")),
                    Err(InRootError::LinkTarget { .. })
                ),
                "{}",
                target.display()
            );
        }
        // Through a symlink pointing out of the root.
        r.symlink(&f.outside, Path::new("out")).unwrap();
        assert!(r.hardlink(Path::new("out/passwd"), Path::new("h")).is_err());
        assert_eq!(fs::metadata(f.outside.join("passwd")).unwrap().nlink(), 1);
        assert!(!f.root.join("h").exists());
        // Inside: fine, and a symlink target is linked itself.
        fs::write(f.root.join("a"), "a").unwrap();
        r.hardlink(Path::new("/a"), Path::new("d/b")).unwrap();
        assert_eq!(fs::metadata(f.root.join("a")).unwrap().nlink(), 2);
        r.hardlink(Path::new("out"), Path::new("out2")).unwrap();
        assert!(fs::symlink_metadata(f.root.join("out2"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(matches!(
            r.hardlink(Path::new("d"), Path::new("e")),
            Err(InRootError::LinkTarget { .. })
        ));
        f.canary_intact();
    }

    #[test]
    fn never_mode_refuses_symlinks_on_the_way() {
        let f = fixture();
        let r = InRoot::open_with(&f.root, Follow::Never).unwrap();
        r.symlink(&f.outside, Path::new("a")).unwrap();
        r.symlink(Path::new("sub"), Path::new("rel")).unwrap();
        r.mkdir_all(Path::new("sub"), 0o755).unwrap();
        for p in ["a/passwd", "rel/x"] {
            assert!(
                matches!(
                    r.create_file(Path::new(p), 0o644),
                    Err(InRootError::Escape { .. })
                ),
                "{p}"
            );
        }
        assert!(matches!(
            r.mkdir_all(Path::new("a/sub"), 0o755),
            Err(InRootError::Escape { .. })
        ));
        assert!(matches!(
            r.hardlink(Path::new("a/passwd"), Path::new("x")),
            Err(InRootError::Escape { .. })
        ));
        // A file in the way of a directory is refused as well.
        r.create_file(Path::new("file"), 0o644).unwrap();
        assert!(matches!(
            r.create_file(Path::new("file/x"), 0o644),
            Err(InRootError::Escape { .. })
        ));
        f.canary_intact();
    }

    #[test]
    fn replace_and_remove_never_follow() {
        let f = fixture();
        let r = InRoot::open(&f.root).unwrap();
        r.symlink(&f.outside.join("passwd"), Path::new("p"))
            .unwrap();
        // Creating a file over a symlink replaces the link.
        r.create_file(Path::new("p"), 0o644).unwrap();
        assert!(fs::symlink_metadata(f.root.join("p")).unwrap().is_file());
        r.symlink(&f.outside, Path::new("o")).unwrap();
        r.remove(Path::new("o")).unwrap();
        r.mkdir_all(Path::new("d/e"), 0o755).unwrap();
        r.symlink(&f.outside, Path::new("d/e/o")).unwrap();
        r.remove(Path::new("d")).unwrap();
        assert!(!f.root.join("d").exists());
        r.remove(Path::new("missing/x")).unwrap();
        // The plain API never replaces a directory.
        r.mkdir_all(Path::new("keep/sub"), 0o755).unwrap();
        for res in [
            r.create_file(Path::new("keep"), 0o644).map(|_| ()),
            r.symlink(Path::new("/x"), Path::new("keep")),
            r.mknod(Path::new("keep"), NodeKind::Fifo, 0o600, 0),
        ] {
            assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EISDIR));
        }
        assert!(f.root.join("keep/sub").is_dir());
        r.mknod(Path::new("fifo"), NodeKind::Fifo, 0o600, 0)
            .unwrap();
        r.set_metadata(
            Path::new("fifo"),
            &Metadata {
                mode: Some(0o640),
                mtime: Some(1000),
                owner: None,
            },
        )
        .unwrap();
        let md = fs::symlink_metadata(f.root.join("fifo")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.mtime()), (0o640, 1000));
        // Metadata of a symlink leaves its target alone.
        r.symlink(&f.outside.join("passwd"), Path::new("l"))
            .unwrap();
        r.set_metadata(
            Path::new("l"),
            &Metadata {
                mode: Some(0o777),
                mtime: Some(5),
                owner: None,
            },
        )
        .unwrap();
        assert_ne!(
            fs::metadata(f.outside.join("passwd")).unwrap().mode() & 0o777,
            0o777
        );
        f.canary_intact();
    }

    fn unpack_all(r: &InRoot, opts: UnpackOptions, data: &[u8]) -> Result<(), InRootError> {
        let mut u = Unpacker::new(r, opts);
        let mut ar = tar::Archive::new(data);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let Some(dest) = clean_entry_name(&e.path_bytes()) else {
                continue;
            };
            let link = e.link_name_bytes().and_then(|l| clean_entry_name(&l));
            u.unpack_entry(&mut e, &dest, link.as_deref())?;
        }
        u.finish()
    }

    #[test]
    fn unpacker_writes_through_archive_symlinks_inside_the_root() {
        let f = fixture();
        let r = InRoot::open(&f.root).unwrap();
        let out = f.outside.display().to_string();
        let t = raw_tar(&[
            ("evil", tar::EntryType::Symlink, &out, 0o777),
            ("evil/", tar::EntryType::Directory, "", 0o755),
            ("evil/pwned", tar::EntryType::Regular, "x", 0o644),
            ("ro/", tar::EntryType::Directory, "", 0o555),
            ("ro/f", tar::EntryType::Regular, "data", 0o4755),
            ("ro/h", tar::EntryType::Link, "ro/f", 0o644),
        ]);
        // A directory entry over the dangling link replaces it, then the file lands inside.
        unpack_all(&r, UnpackOptions::default(), &t).unwrap();
        f.canary_intact();
        assert!(f.root.join("evil/pwned").is_file());
        let md = fs::metadata(f.root.join("ro")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.mtime()), (0o555, 1_000_000));
        let md = fs::metadata(f.root.join("ro/f")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.nlink()), (0o4755, 2));
        fs::set_permissions(f.root.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();

        // Through a link that exists in the root: written at its target inside the root.
        let f = fixture();
        let r = InRoot::open(&f.root).unwrap();
        fs::create_dir_all(f.outside_in_root()).unwrap();
        let out = f.outside.display().to_string();
        let t = raw_tar(&[
            ("evil", tar::EntryType::Symlink, &out, 0o777),
            ("evil/passwd", tar::EntryType::Regular, "pwned", 0o644),
        ]);
        unpack_all(&r, UnpackOptions::default(), &t).unwrap();
        f.canary_intact();
        assert_eq!(
            fs::read_to_string(f.outside_in_root().join("passwd")).unwrap(),
            "pwned"
        );
    }

    #[test]
    fn unpacker_overwrite_rules() {
        let f = fixture();
        let r = InRoot::open(&f.root).unwrap();
        fs::create_dir_all(f.root.join("etc")).unwrap();
        fs::write(f.root.join("etc/passwd"), "root").unwrap();
        let t = raw_tar(&[("etc", tar::EntryType::Regular, "x", 0o644)]);
        let strict = UnpackOptions {
            no_overwrite_dir_non_dir: true,
            ..Default::default()
        };
        match unpack_all(&r, strict, &t) {
            Err(e @ InRootError::Overwrite { .. }) => assert_eq!(
                e.to_string(),
                "cannot overwrite directory \"etc\" with non-directory \"etc\""
            ),
            other => panic!("{other:?}"),
        }
        assert!(f.root.join("etc/passwd").exists());
        unpack_all(&r, UnpackOptions::default(), &t).unwrap();
        assert_eq!(fs::read_to_string(f.root.join("etc")).unwrap(), "x");
        let t = raw_tar(&[("x", tar::EntryType::Fifo, "", 0o644)]);
        let opts = UnpackOptions {
            unsupported: Unsupported::Error,
            ..Default::default()
        };
        assert!(matches!(
            unpack_all(&r, opts, &t),
            Err(InRootError::Unsupported { .. })
        ));
    }

    #[test]
    fn entry_names() {
        assert_eq!(clean_entry_name(b"./a/../b"), Some(PathBuf::from("b")));
        assert_eq!(clean_entry_name(b"/abs//x/"), Some(PathBuf::from("abs/x")));
        assert_eq!(clean_entry_name(b"./"), Some(PathBuf::new()));
        assert_eq!(clean_entry_name(b"../b"), None);
        assert_eq!(clean_entry_name(b"a/../../b"), None);
    }

    #[test]
    fn user_space_resolution_stays_in_root() {
        let f = fixture();
        let r = &f.root;
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../../../etc", r.join("up")).unwrap();
        symlink("/", r.join("slash")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        symlink("usr/bin", r.join("rel")).unwrap();
        let res = |p, follow| resolve_path(r, p, follow).unwrap();
        assert_eq!(res("/abs/passwd", true), r.join("etc/passwd"));
        assert_eq!(res("/up/passwd", true), r.join("etc/passwd"));
        assert_eq!(res("/../../../etc/passwd", true), r.join("etc/passwd"));
        assert_eq!(res("/slash/..", true), r.to_path_buf());
        assert_eq!(res("/rel/x", true), r.join("usr/bin/x"));
        // The last component is kept unless asked.
        assert_eq!(res("/abs", false), r.join("abs"));
        assert_eq!(
            resolve_path(r, "/loop1/x", true)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ELOOP)
        );
        for p in ["/abs", "/up", "/slash/slash/up", "/nonexistent/../../.."] {
            assert!(res(p, true).starts_with(r), "{p} escaped");
        }
    }
}
