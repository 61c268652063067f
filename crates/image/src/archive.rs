//! Extraction of image archives (`docker save` output, OCI layout tars) into a work directory
//! under `tmp/`. Only regular files, directories, relative symlinks and hardlinks are kept; paths
//! with `..`, or that go through a symlink, are rejected.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use crate::digest::{decompressed, Compression};
use crate::ImageError;

fn bad(path: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::UnknownFormat {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn safe_rel(name: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Refuses if any existing ancestor of `rel` below `dest` is a symlink.
fn no_symlink_parents(dest: &Path, rel: &Path) -> bool {
    let mut cur = dest.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            if let Ok(md) = fs::symlink_metadata(&cur) {
                if md.file_type().is_symlink() {
                    return false;
                }
            }
        }
    }
    true
}

/// Extracts the (possibly gzip/zstd-compressed) tar `file` into `dest`. `path` names the source
/// in errors. Errors: [`ImageError::UnknownFormat`] if it is not a tar,
/// [`ImageError::InvalidArchive`] if it is truncated or has unsafe entries.
pub(crate) fn extract(file: File, dest: &Path, path: &Path) -> Result<(), ImageError> {
    let (comp, mut r) = decompressed(file).map_err(|e| bad(path, e.to_string()))?;
    let mut head = Vec::with_capacity(512);
    (&mut r)
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| ImageError::InvalidArchive(format!("{}: {e}", path.display())))?;
    if head.is_empty() {
        return Err(bad(path, "empty file"));
    }
    let is_tar = (head.len() >= 262 && &head[257..262] == b"ustar")
        || (head.len() == 512 && looks_like_v7_tar(&head));
    if !is_tar {
        let what = match comp {
            Compression::None => "not a tar archive",
            Compression::Gzip => "gzip data is not a tar archive",
            Compression::Zstd => "zstd data is not a tar archive",
        };
        return Err(bad(path, what));
    }
    let br = BufReader::with_capacity(64 * 1024, io::Cursor::new(head).chain(r));
    let trunc = |e: io::Error| ImageError::InvalidArchive(format!("{}: {e}", path.display()));
    let mut archive = tar::Archive::new(br);
    for entry in archive.entries().map_err(trunc)? {
        let mut entry = entry.map_err(trunc)?;
        let name = entry.path().map_err(trunc)?.into_owned();
        let Some(rel) = safe_rel(&name) else {
            return Err(ImageError::InvalidArchive(format!(
                "{}: unsafe entry {}",
                path.display(),
                name.display()
            )));
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        if !no_symlink_parents(dest, &rel) {
            return Err(ImageError::InvalidArchive(format!(
                "{}: entry {} goes through a symlink",
                path.display(),
                name.display()
            )));
        }
        let target = dest.join(&rel);
        if let Some(p) = target.parent() {
            fs::create_dir_all(p)
                .map_err(|e| ImageError::io(format!("create {}", p.display()), e))?;
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(&target)
                    .map_err(|e| ImageError::io(format!("create {}", target.display()), e))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = File::create(&target)
                    .map_err(|e| ImageError::io(format!("create {}", target.display()), e))?;
                io::copy(&mut entry, &mut f).map_err(trunc)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(trunc)?
                    .unwrap_or_default()
                    .into_owned();
                if link.is_absolute() {
                    return Err(ImageError::InvalidArchive(format!(
                        "{}: absolute symlink {}",
                        path.display(),
                        name.display()
                    )));
                }
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|e| ImageError::io(format!("symlink {}", target.display()), e))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(trunc)?
                    .unwrap_or_default()
                    .into_owned();
                let Some(lrel) = safe_rel(&link) else {
                    return Err(ImageError::InvalidArchive(format!(
                        "{}: unsafe hardlink {}",
                        path.display(),
                        name.display()
                    )));
                };
                if !no_symlink_parents(dest, &lrel) {
                    return Err(ImageError::InvalidArchive(format!(
                        "{}: unsafe hardlink {}",
                        path.display(),
                        name.display()
                    )));
                }
                fs::hard_link(dest.join(lrel), &target)
                    .map_err(|e| ImageError::io(format!("link {}", target.display()), e))?;
            }
            _ => {}
        }
    }
    // Drain the rest (end-of-archive blocks, compression trailer) so truncation is noticed.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(trunc)?;
    Ok(())
}

/// A pre-POSIX tar header: the checksum field matches the header bytes.
fn looks_like_v7_tar(h: &[u8]) -> bool {
    let field = &h[148..156];
    let s: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let Ok(expected) = u32::from_str_radix(s.trim(), 8) else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                b as u32
            }
        })
        .sum();
    sum == expected
}
