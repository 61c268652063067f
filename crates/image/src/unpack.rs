//! Applies one layer tar to a snapshot directory, per the
//! [OCI layer spec](https://github.com/opencontainers/image-spec/blob/main/layer.md).
//!
//! Whiteouts (`.wh.<name>`) become overlay whiteouts (0:0 character devices) and opaque markers
//! (`.wh..wh..opq`) become the `trusted.overlay.opaque=y` xattr on their directory, so a stack of
//! snapshots mounted with overlayfs shows the image's filesystem.
//!
//! Safety: every path is resolved component by component from a directory fd of the snapshot root
//! with `O_NOFOLLOW`, so no entry can create or change anything outside the root (no `..`, no
//! absolute paths, no symlink traversal, no hardlink to the outside). Hostile entries yield
//! [`ImageError::HostileLayer`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{
    fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags,
};

use crate::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Size of the buffer regular files are copied through (one `write` per 1 MiB, not per 8 KiB).
const COPY_BUF: usize = 1 << 20;

/// Byte count of what was applied: the uncompressed tar size is measured by the caller.
pub(crate) struct Applier<'a> {
    root: Rc<OwnedFd>,
    layer: &'a str,
    /// Directory mtimes, set after all children were written (relative components, mtime).
    dir_times: Vec<(Vec<Vec<u8>>, u64)>,
    /// The directories along the last parent path opened, root first: `(component, fd)`.
    /// Tar streams list entries directory by directory, so most entries reuse the whole stack
    /// and cost no `openat` per path component. Every fd was opened `O_NOFOLLOW` from the one
    /// above it; the stack is cleared whenever a directory is removed, so it never refers to a
    /// directory that is no longer in the tree.
    dirs: RefCell<Vec<(Vec<u8>, Rc<OwnedFd>)>>,
    /// Copy buffer for regular files (allocated on first use).
    buf: Vec<u8>,
}

fn hostile(layer: &str, entry: &str, reason: &str) -> ImageError {
    ImageError::HostileLayer {
        layer: layer.to_string(),
        entry: entry.to_string(),
        reason: reason.to_string(),
    }
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Splits a tar path into safe, normal components: strips a leading `/` and `.` components,
/// rejects `..`.
fn components(layer: &str, path: &Path) -> Result<Vec<Vec<u8>>, ImageError> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n.as_bytes().to_vec()),
            Component::ParentDir => {
                return Err(hostile(
                    layer,
                    &path.to_string_lossy(),
                    "path contains '..'",
                ))
            }
            Component::Prefix(_) => {
                return Err(hostile(
                    layer,
                    &path.to_string_lossy(),
                    "unexpected path prefix",
                ))
            }
        }
    }
    Ok(out)
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

impl<'a> Applier<'a> {
    /// An applier writing below `root` (an existing, empty directory).
    pub(crate) fn new(root: &Path, layer: &'a str) -> Result<Self, ImageError> {
        let fd = openat(
            nix::fcntl::AT_FDCWD,
            root,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ImageError::io(format!("open {}", root.display()), errno_io(e)))?;
        Ok(Applier {
            root: Rc::new(fd),
            layer,
            dir_times: Vec::new(),
            dirs: RefCell::new(Vec::new()),
            buf: Vec::new(),
        })
    }

    fn io_err(&self, entry: &str, what: &str, e: Errno) -> ImageError {
        ImageError::io(format!("layer {}: {what} {entry}", self.layer), errno_io(e))
    }

    /// Opens the directory at `comps` below the root without following symlinks, creating
    /// missing directories (mode 0755) when `create` is set. Reuses the directories of the
    /// previous call that share a prefix with `comps` (see [`Applier::dirs`]).
    fn open_dir(
        &self,
        comps: &[Vec<u8>],
        entry: &str,
        create: bool,
    ) -> Result<Rc<OwnedFd>, ImageError> {
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let mut stack = self.dirs.borrow_mut();
        let common = stack
            .iter()
            .zip(comps)
            .take_while(|((have, _), want)| have == *want)
            .count();
        stack.truncate(common);
        for c in &comps[common..] {
            let cur = stack
                .last()
                .map(|(_, fd)| fd.clone())
                .unwrap_or_else(|| self.root.clone());
            let name = os(c);
            let next = match openat(&*cur, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    mkdirat(&*cur, name, Mode::from_bits_truncate(0o755))
                        .map_err(|e| self.io_err(entry, "mkdir parent of", e))?;
                    openat(&*cur, name, flags, Mode::empty())
                        .map_err(|e| self.io_err(entry, "open parent of", e))?
                }
                Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                    return Err(hostile(
                        self.layer,
                        entry,
                        "path goes through a symlink or non-directory",
                    ))
                }
                Err(e) => return Err(self.io_err(entry, "open parent of", e)),
            };
            stack.push((c.clone(), Rc::new(next)));
        }
        Ok(stack
            .last()
            .map(|(_, fd)| fd.clone())
            .unwrap_or_else(|| self.root.clone()))
    }

    /// What exists at `name` in `dir` (not following symlinks).
    fn existing(dir: &OwnedFd, name: &OsStr) -> Option<SFlag> {
        fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()))
    }

    /// Removes whatever is at `name` in `dir` (recursively for directories, never following
    /// symlinks).
    fn remove(&self, dir: &OwnedFd, name: &OsStr, entry: &str) -> Result<(), ImageError> {
        self.remove_known(dir, name, Self::existing(dir, name), entry)
    }

    /// [`Applier::remove`] when the caller has just looked at what exists (`existing`).
    fn remove_known(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        existing: Option<SFlag>,
        entry: &str,
    ) -> Result<(), ImageError> {
        match existing {
            None => Ok(()),
            Some(SFlag::S_IFDIR) => {
                // The directory stack may hold it (or something below it).
                self.dirs.borrow_mut().clear();
                // /proc/self/fd/N resolves to `dir` itself; remove_dir_all never follows symlinks
                // inside the tree it removes.
                let p = Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
                std::fs::remove_dir_all(&p)
                    .map_err(|e| ImageError::io(format!("layer {}: remove {entry}", self.layer), e))
            }
            Some(_) => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| self.io_err(entry, "unlink", e)),
        }
    }

    fn set_xattr(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        key: &str,
        value: &[u8],
        entry: &str,
    ) -> Result<(), ImageError> {
        let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        p.extend_from_slice(name.as_bytes());
        let path = CString::new(p).map_err(|_| hostile(self.layer, entry, "NUL in name"))?;
        let key_c =
            CString::new(key).map_err(|_| hostile(self.layer, entry, "NUL in xattr name"))?;
        // SAFETY: both pointers are valid NUL-terminated strings and `value` is a valid slice
        // for the given length; lsetxattr does not follow a symlink at the final component.
        let r = unsafe {
            libc::lsetxattr(
                path.as_ptr(),
                key_c.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if r != 0 {
            return Err(ImageError::io(
                format!("layer {}: set xattr {key} on {entry}", self.layer),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Applies every entry of a layer tar stream.
    pub(crate) fn apply<R: Read>(&mut self, reader: R) -> Result<(), ImageError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| self.tar_err(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.tar_err(e))?;
            self.apply_entry(&mut entry)?;
        }
        self.finish()
    }

    fn tar_err(&self, e: io::Error) -> ImageError {
        ImageError::InvalidArchive(format!("layer {}: {e}", self.layer))
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let path = entry.path().map_err(|e| self.tar_err(e))?.into_owned();
        let entry_name = path.to_string_lossy().into_owned();
        let comps = components(self.layer, &path)?;
        let kind = entry.header().entry_type();
        let header = entry.header().clone();
        let mode = header.mode().map_err(|e| self.tar_err(e))? & 0o7777;
        let mut uid = header.uid().map_err(|e| self.tar_err(e))?;
        let mut gid = header.gid().map_err(|e| self.tar_err(e))?;
        let mut mtime = header.mtime().unwrap_or(0);

        let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let Ok(k) = ext.key() else { continue };
                let num = || {
                    ext.value()
                        .ok()
                        .and_then(|v| v.split('.').next()?.parse::<u64>().ok())
                };
                match k {
                    // PAX records override the (possibly too small) ustar fields.
                    "uid" => uid = num().unwrap_or(uid),
                    "gid" => gid = num().unwrap_or(gid),
                    "mtime" => mtime = num().unwrap_or(mtime),
                    _ => {
                        if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                            xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
        }

        let Some((name, parent)) = comps.split_last() else {
            // The root itself ("./").
            if kind.is_dir() {
                let dir = self.open_dir(&[], &entry_name, false)?;
                self.metadata(&dir, OsStr::new("."), &entry_name, uid, gid, mode, false)?;
                self.dir_times.push((Vec::new(), mtime));
            }
            return Ok(());
        };
        let name_os = os(name);
        let name_str = name_os.to_string_lossy();

        // Whiteouts.
        if let Some(target) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            let dir = self.open_dir(parent, &entry_name, true)?;
            if name_str == OPAQUE_MARKER {
                self.set_xattr(
                    &dir,
                    OsStr::new("."),
                    "trusted.overlay.opaque",
                    b"y",
                    &entry_name,
                )?;
                return Ok(());
            }
            if target.is_empty() || target == "." || target == ".." || target.contains('/') {
                return Err(hostile(self.layer, &entry_name, "invalid whiteout target"));
            }
            let target = OsStr::new(target);
            self.remove(&dir, target, &entry_name)?;
            mknodat(&dir, target, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| self.io_err(&entry_name, "create whiteout", e))?;
            return Ok(());
        }

        let dir = self.open_dir(parent, &entry_name, true)?;
        let existing = Self::existing(&dir, name_os);
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                if existing != Some(SFlag::S_IFDIR) {
                    self.remove_known(&dir, name_os, existing, &entry_name)?;
                    mkdirat(&dir, name_os, Mode::from_bits_truncate(0o700))
                        .map_err(|e| self.io_err(&entry_name, "mkdir", e))?;
                }
                self.metadata(&dir, name_os, &entry_name, uid, gid, mode, false)?;
                self.xattrs(&dir, name_os, &xattrs, &entry_name)?;
                self.dir_times.push((comps.clone(), mtime));
                return Ok(());
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                if kind == T::GNUSparse {
                    return Err(ImageError::InvalidArchive(format!(
                        "layer {}: sparse entry {entry_name} is not supported",
                        self.layer
                    )));
                }
                self.remove_known(&dir, name_os, existing, &entry_name)?;
                let fd = openat(
                    &*dir,
                    name_os,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.io_err(&entry_name, "create", e))?;
                let mut file = File::from(fd);
                self.copy_data(entry, &mut file)?;
                // Metadata through the open file: no path lookups. chown before chmod, which
                // chown would clear setuid/setgid from.
                fchown(
                    &file,
                    Some(Uid::from_raw(uid as u32)),
                    Some(Gid::from_raw(gid as u32)),
                )
                .map_err(|e| self.io_err(&entry_name, "chown", e))?;
                fchmod(&file, Mode::from_bits_truncate(mode))
                    .map_err(|e| self.io_err(&entry_name, "chmod", e))?;
                self.xattrs(&dir, name_os, &xattrs, &entry_name)?;
                let t = TimeSpec::new(mtime as i64, 0);
                return futimens(&file, &t, &t)
                    .map_err(|e| self.io_err(&entry_name, "set mtime of", e));
            }
            T::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.tar_err(e))?
                    .ok_or_else(|| hostile(self.layer, &entry_name, "symlink without target"))?
                    .into_owned();
                self.remove(&dir, name_os, &entry_name)?;
                symlinkat(target.as_os_str(), &dir, name_os)
                    .map_err(|e| self.io_err(&entry_name, "symlink", e))?;
                fchownat(
                    &dir,
                    name_os,
                    Some(Uid::from_raw(uid as u32)),
                    Some(Gid::from_raw(gid as u32)),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| self.io_err(&entry_name, "lchown", e))?;
                self.times(&dir, name_os, mtime, &entry_name)?;
                return Ok(());
            }
            T::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.tar_err(e))?
                    .ok_or_else(|| hostile(self.layer, &entry_name, "hardlink without target"))?
                    .into_owned();
                let tcomps = components(self.layer, &target).map_err(|_| {
                    hostile(self.layer, &entry_name, "hardlink target outside the layer")
                })?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(hostile(self.layer, &entry_name, "hardlink to the root"));
                };
                let tdir = self.open_dir(tparent, &entry_name, false).map_err(|_| {
                    hostile(self.layer, &entry_name, "hardlink target not in this layer")
                })?;
                match Self::existing(&tdir, os(tname)) {
                    None => {
                        return Err(hostile(
                            self.layer,
                            &entry_name,
                            "hardlink target not in this layer",
                        ))
                    }
                    Some(SFlag::S_IFDIR) => {
                        return Err(hostile(self.layer, &entry_name, "hardlink to a directory"))
                    }
                    Some(_) => {}
                }
                if tcomps != comps {
                    self.remove(&dir, name_os, &entry_name)?;
                    // Flags 0: a symlink target is linked itself, never followed.
                    linkat(
                        &tdir,
                        os(tname),
                        &dir,
                        name_os,
                        nix::fcntl::AtFlags::empty(),
                    )
                    .map_err(|e| self.io_err(&entry_name, "link", e))?;
                }
                return Ok(());
            }
            T::Fifo => {
                self.remove(&dir, name_os, &entry_name)?;
                mkfifoat(&dir, name_os, Mode::from_bits_truncate(0o600))
                    .map_err(|e| self.io_err(&entry_name, "mkfifo", e))?;
            }
            T::Char | T::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.remove(&dir, name_os, &entry_name)?;
                let k = if kind == T::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                mknodat(
                    &dir,
                    name_os,
                    k,
                    Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(major.into(), minor.into()),
                )
                .map_err(|e| self.io_err(&entry_name, "mknod", e))?;
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => return Ok(()),
            other => {
                return Err(ImageError::InvalidArchive(format!(
                    "layer {}: unsupported entry type {:?} for {entry_name}",
                    self.layer,
                    other.as_byte() as char
                )))
            }
        }
        self.metadata(&dir, name_os, &entry_name, uid, gid, mode, false)?;
        self.xattrs(&dir, name_os, &xattrs, &entry_name)?;
        self.times(&dir, name_os, mtime, &entry_name)
    }

    /// Copies a regular file's data from the tar stream through a large buffer.
    fn copy_data<R: Read>(&mut self, entry: &mut R, file: &mut File) -> Result<(), ImageError> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; COPY_BUF];
        }
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.tar_err(e)),
            };
            io::Write::write_all(file, &self.buf[..n])
                .map_err(|e| ImageError::io(format!("layer {}: write file data", self.layer), e))?;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn metadata(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        entry: &str,
        uid: u64,
        gid: u64,
        mode: u32,
        _symlink: bool,
    ) -> Result<(), ImageError> {
        fchownat(
            dir,
            name,
            Some(Uid::from_raw(uid as u32)),
            Some(Gid::from_raw(gid as u32)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.io_err(entry, "chown", e))?;
        // After chown, which clears setuid/setgid. `name` is never a symlink here.
        fchmodat(
            dir,
            name,
            Mode::from_bits_truncate(mode),
            FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| self.io_err(entry, "chmod", e))
    }

    fn xattrs(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        xattrs: &[(String, Vec<u8>)],
        entry: &str,
    ) -> Result<(), ImageError> {
        for (k, v) in xattrs {
            match self.set_xattr(dir, name, k, v, entry) {
                Err(ImageError::Io { source, .. })
                    if matches!(
                        source.raw_os_error(),
                        Some(libc::ENOTSUP) | Some(libc::EPERM)
                    ) =>
                {
                    tracing::warn!(layer = self.layer, entry, xattr = %k, "xattr not supported here; skipped");
                }
                r => r?,
            }
        }
        Ok(())
    }

    fn times(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        mtime: u64,
        entry: &str,
    ) -> Result<(), ImageError> {
        let t = TimeSpec::new(mtime as i64, 0);
        utimensat(dir, name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| self.io_err(entry, "set mtime of", e))
    }

    /// Sets directory mtimes, deepest first, after all entries were written.
    fn finish(&mut self) -> Result<(), ImageError> {
        let mut times = std::mem::take(&mut self.dir_times);
        // Later entries for the same directory win.
        let mut last: HashMap<Vec<Vec<u8>>, u64> = HashMap::new();
        for (c, t) in times.drain(..) {
            last.insert(c, t);
        }
        let mut sorted: Vec<_> = last.into_iter().collect();
        sorted.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
        for (comps, mtime) in sorted {
            let entry = String::from_utf8_lossy(&comps.join(&b'/')).into_owned();
            match comps.split_last() {
                Some((name, parent)) => {
                    let dir = self.open_dir(parent, &entry, false)?;
                    self.times(&dir, os(name), mtime, &entry)?;
                }
                None => {
                    let dir = self.open_dir(&[], &entry, false)?;
                    self.times(&dir, OsStr::new("."), mtime, &entry)?;
                }
            }
        }
        // Make the snapshot durable before it is renamed into place.
        nix::unistd::syncfs(self.root.as_fd()).map_err(|e| self.io_err("", "syncfs", e))?;
        Ok(())
    }
}
