//! [`TreeTar`]: a file tree as a tar stream, as docker's archive code writes it (GNU long names,
//! hard links kept as links, devices and FIFOs as headers, sockets skipped).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Writes file system objects into a tar stream (hard links kept, sockets skipped).
pub struct TreeTar<W: Write> {
    tar: tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TreeTar<W> {
    pub fn new(w: W) -> Self {
        let mut tar = tar::Builder::new(w);
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        TreeTar {
            tar,
            links: HashMap::new(),
        }
    }

    /// Appends an entry named by raw bytes (kept as given: `./x` stays `./x`, which the tar
    /// crate's own path setters would normalise away), with GNU long-name entries as needed.
    fn append_raw(
        &mut self,
        h: &mut tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        data: impl Read,
    ) -> io::Result<()> {
        let long = |tar: &mut tar::Builder<W>, kind: tar::EntryType, v: &[u8]| {
            let mut lh = tar::Header::new_gnu();
            lh.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            lh.set_mode(0o644);
            lh.set_uid(0);
            lh.set_gid(0);
            lh.set_mtime(0);
            lh.set_entry_type(kind);
            let mut d = v.to_vec();
            d.push(0);
            lh.set_size(d.len() as u64);
            lh.set_cksum();
            tar.append(&lh, &d[..])
        };
        if name.len() > 100 {
            long(&mut self.tar, tar::EntryType::GNULongName, name)?;
        }
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        if let Some(l) = link {
            if l.len() > 100 {
                long(&mut self.tar, tar::EntryType::GNULongLink, l)?;
            }
            let old = h.as_old_mut();
            old.linkname = [0; 100];
            old.linkname[..l.len().min(100)].copy_from_slice(&l[..l.len().min(100)]);
        }
        h.set_cksum();
        self.tar.append(h, data)
    }

    /// Adds `src` as `name` (no recursion).
    pub fn add(&mut self, src: &Path, name: &Path) -> io::Result<()> {
        let md = fs::symlink_metadata(src)?;
        let ft = md.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_mtime(md.mtime().max(0) as u64);
        h.set_uid(md.uid() as u64);
        h.set_gid(md.gid() as u64);
        h.set_mode(md.mode() & 0o7777);
        h.set_size(0);
        let n = name.as_os_str().as_bytes();
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            let mut n = n.to_vec();
            if !n.ends_with(b"/") {
                n.push(b'/');
            }
            self.append_raw(&mut h, &n, None, io::empty())
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(src)?;
            self.append_raw(&mut h, n, Some(target.as_os_str().as_bytes()), io::empty())
        } else if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    let first = first.clone();
                    return self.append_raw(
                        &mut h,
                        n,
                        Some(first.as_os_str().as_bytes()),
                        io::empty(),
                    );
                }
                self.links.insert((md.dev(), md.ino()), name.to_path_buf());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.len());
            let f = File::open(src)?;
            // Never more than the header promised, even if the file grows meanwhile.
            self.append_raw(&mut h, n, None, f.take(md.len()))
        } else if crate::set_special(&mut h, &md)? {
            self.append_raw(&mut h, n, None, io::empty())
        } else {
            Ok(())
        }
    }

    /// Adds `src` as `name` and, for a directory, everything below it (sorted, not following
    /// symlinks). `skip(rel)` leaves out paths (relative to `src`).
    pub fn add_tree(
        &mut self,
        src: &Path,
        name: &Path,
        skip: &dyn Fn(&Path) -> bool,
    ) -> io::Result<()> {
        self.add(src, name)?;
        if !fs::symlink_metadata(src)?.is_dir() {
            return Ok(());
        }
        self.add_children(src, name, Path::new(""), skip)
    }

    /// Adds everything below directory `dir` (sorted, not following symlinks) as entries
    /// under `name`; `rel` is `dir`'s path relative to the tree's top (for `skip`).
    pub fn add_children(
        &mut self,
        dir: &Path,
        name: &Path,
        rel: &Path,
        skip: &dyn Fn(&Path) -> bool,
    ) -> io::Result<()> {
        let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let rel = rel.join(e.file_name());
            if skip(&rel) {
                continue;
            }
            let n = name.join(e.file_name());
            let path = e.path();
            self.add(&path, &n)?;
            if e.file_type()?.is_dir() {
                self.add_children(&path, &n, &rel, skip)?;
            }
        }
        Ok(())
    }

    pub fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }
}
