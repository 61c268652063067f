//! Making layers: a container's overlay `upper/` directory as an OCI layer tar (overlay
//! whiteouts → `.wh.` entries, opaque directories → `.wh..wh..opq`), files copied from a build
//! context, and storing a layer tar in the image store.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use barge_image::digest::{Descriptor, HashingWriter};
use barge_image::{ImageError, ImageStore};

pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// Reads an extended attribute without following symlinks.
fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| lgetxattr(path, n).as_deref() == Some(b"y"))
}

/// Writes tar entries with clamped mtimes (`SOURCE_DATE_EPOCH`), sorted by the callers.
pub struct LayerTar<W: Write> {
    pub tar: tar::Builder<W>,
    pub epoch: Option<i64>,
    links: HashMap<(u64, u64), String>,
}

impl<W: Write> LayerTar<W> {
    pub fn new(w: W, epoch: Option<i64>) -> Self {
        let mut tar = tar::Builder::new(w);
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        LayerTar {
            tar,
            epoch,
            links: HashMap::new(),
        }
    }

    fn mtime(&self, m: i64) -> u64 {
        match self.epoch {
            Some(e) if m > e => e.max(0) as u64,
            _ => m.max(0) as u64,
        }
    }

    /// Adds the file system object at `src` as `name`, with optional owner/mode overrides.
    pub fn add_path(
        &mut self,
        src: &Path,
        name: &str,
        owner: Option<(u32, u32)>,
        mode: Option<u32>,
    ) -> io::Result<()> {
        let md = fs::symlink_metadata(src)?;
        let ft = md.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_mtime(self.mtime(md.mtime()));
        let (uid, gid) = owner.unwrap_or((md.uid(), md.gid()));
        h.set_uid(uid as u64);
        h.set_gid(gid as u64);
        let perm = md.mode() & 0o7777;
        h.set_mode(match mode {
            Some(m) => m,
            None => perm,
        });
        h.set_size(0);
        let name = name.trim_start_matches('/');
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            let n = format!("{}/", name.trim_end_matches('/'));
            self.tar.append_data(&mut h, n, io::empty())?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(src)?;
            self.tar.append_link(&mut h, name, target)?;
        } else if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    let first = first.clone();
                    return self.tar.append_link(&mut h, name, first);
                }
                self.links.insert((md.dev(), md.ino()), name.to_string());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.len());
            self.tar.append_data(&mut h, name, File::open(src)?)?;
        } else if barge_archive::set_special(&mut h, &md)? {
            self.tar.append_data(&mut h, name, io::empty())?;
        }
        // Sockets are skipped, as docker does.
        Ok(())
    }

    /// Adds a directory entry (root-owned, 0755 unless given) for a parent of copied files.
    pub fn add_dir(&mut self, name: &str, owner: Option<(u32, u32)>, mtime: i64) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        let (u, g) = owner.unwrap_or((0, 0));
        h.set_uid(u as u64);
        h.set_gid(g as u64);
        h.set_mtime(self.mtime(mtime));
        h.set_size(0);
        self.tar
            .append_data(&mut h, format!("{}/", name.trim_matches('/')), io::empty())
    }

    /// Adds a directory entry with the given mode and owner (a `--link` layer's parent that
    /// exists below it).
    pub fn add_dir_mode(
        &mut self,
        name: &str,
        mode: u32,
        owner: (u32, u32),
        mtime: i64,
    ) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_uid(owner.0 as u64);
        h.set_gid(owner.1 as u64);
        h.set_mtime(self.mtime(mtime));
        h.set_size(0);
        self.tar
            .append_data(&mut h, format!("{}/", name.trim_matches('/')), io::empty())
    }

    /// Adds a regular file from bytes.
    pub fn add_bytes(
        &mut self,
        name: &str,
        data: &[u8],
        owner: Option<(u32, u32)>,
        mode: u32,
        mtime: i64,
    ) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        let (u, g) = owner.unwrap_or((0, 0));
        h.set_uid(u as u64);
        h.set_gid(g as u64);
        h.set_mtime(self.mtime(mtime));
        h.set_size(data.len() as u64);
        self.tar
            .append_data(&mut h, name.trim_start_matches('/'), data)
    }

    fn whiteout(&mut self, name: &str, mtime: i64) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(self.mtime(mtime));
        self.tar.append_data(&mut h, name, io::empty())
    }

    pub fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }
}

pub use barge_archive::sorted_entries;

/// Appends the overlay upper directory `upper` as layer entries.
pub fn diff_upper<W: Write>(upper: &Path, t: &mut LayerTar<W>) -> io::Result<()> {
    diff_upper_filtered(upper, t, &|_, _| false, &|_| false)
}

enum Item {
    Whiteout(String, i64),
    Path(std::path::PathBuf, String),
    Opaque(String, i64),
}

/// Like [`diff_upper`], leaving out entries for which `skip(rel, metadata)` holds, and
/// directories that exist in the lower layers (`in_lower(rel)`) and were only copied up
/// (not opaque, no entry kept below them).
pub fn diff_upper_filtered<W: Write>(
    upper: &Path,
    t: &mut LayerTar<W>,
    skip: &dyn Fn(&str, &fs::Metadata) -> bool,
    in_lower: &dyn Fn(&str) -> bool,
) -> io::Result<()> {
    fn walk(
        dir: &Path,
        rel: &str,
        out: &mut Vec<Item>,
        skip: &dyn Fn(&str, &fs::Metadata) -> bool,
        in_lower: &dyn Fn(&str) -> bool,
    ) -> io::Result<()> {
        for e in sorted_entries(dir)? {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let relname = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let md = fs::symlink_metadata(&path)?;
            if md.file_type().is_char_device() && md.rdev() == 0 {
                let wh = if rel.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{rel}/.wh.{name}")
                };
                out.push(Item::Whiteout(wh, md.mtime()));
                continue;
            }
            if skip(&relname, &md) {
                continue;
            }
            if md.is_dir() {
                let mut sub = Vec::new();
                let opaque = is_opaque(&path);
                if opaque {
                    sub.push(Item::Opaque(format!("{relname}/.wh..wh..opq"), md.mtime()));
                }
                walk(&path, &relname, &mut sub, skip, in_lower)?;
                // Copied up only for entries left out below, or made only to hold them.
                if sub.is_empty() && (in_lower(&relname) || fs::read_dir(&path)?.next().is_some()) {
                    continue;
                }
                out.push(Item::Path(path, relname));
                out.extend(sub);
            } else {
                out.push(Item::Path(path, relname));
            }
        }
        Ok(())
    }
    let mut items = Vec::new();
    walk(upper, "", &mut items, skip, in_lower)?;
    for i in items {
        match i {
            Item::Whiteout(n, m) | Item::Opaque(n, m) => t.whiteout(&n, m)?,
            Item::Path(p, n) => t.add_path(&p, &n, None, None)?,
        }
    }
    Ok(())
}

/// A finished layer tar in a temp file.
pub struct LayerFile {
    pub file: tempfile::NamedTempFile,
    pub diff_id: String,
    pub size: u64,
}

/// Creates a layer in a temp file under `tmpdir` from a closure writing entries.
pub fn make_layer(
    tmpdir: &Path,
    epoch: Option<i64>,
    fill: impl FnOnce(&mut LayerTar<HashingWriter<BufWriter<File>>>) -> io::Result<()>,
) -> io::Result<LayerFile> {
    let tmp = tempfile::NamedTempFile::new_in(tmpdir)?;
    let f = tmp.reopen()?;
    let mut t = LayerTar::new(HashingWriter::new(BufWriter::new(f)), epoch);
    fill(&mut t)?;
    let mut w = t.finish()?;
    w.flush()?;
    let diff_id = w.digest();
    let size = w.count;
    Ok(LayerFile {
        file: tmp,
        diff_id,
        size,
    })
}

/// Stores a layer tar as an (uncompressed) blob + snapshot on top of `parent_diff_ids`.
pub fn store_layer(
    store: &ImageStore,
    layer: &mut LayerFile,
    parent_diff_ids: &[String],
) -> Result<Descriptor, ImageError> {
    let mut ids = parent_diff_ids.to_vec();
    ids.push(layer.diff_id.clone());
    let chain = barge_image::chain_ids(&ids).pop().expect("one id");
    let desc = Descriptor {
        media_type: LAYER_MEDIA_TYPE.into(),
        digest: layer.diff_id.clone(),
        size: layer.size,
        ..Default::default()
    };
    let f = layer.file.as_file_mut();
    f.seek(io::SeekFrom::Start(0))
        .map_err(|e| ImageError::io("rewind layer", e))?;
    let mut r: &mut dyn Read = f;
    store.ingest_layer(&mut r, &desc, &layer.diff_id, &chain)?;
    Ok(desc)
}
