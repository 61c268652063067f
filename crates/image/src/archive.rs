//! Extraction of image archives (`docker save` output, OCI layout tars) into a work directory
//! under `tmp/`. Only regular files, directories, symlinks and hardlinks are kept; names leaving
//! the directory, or going through a symlink, are rejected ([`barge_archive::inroot`] writes
//! everything).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use barge_archive::inroot::{
    clean_entry_name, Follow, InRoot, InRootError, UnpackOptions, Unpacker,
};

use crate::digest::{decompressed, Compression};
use crate::ImageError;

fn bad(path: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::UnknownFormat {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
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
    let root = InRoot::open_with(dest, Follow::Never)
        .map_err(|e| ImageError::io(format!("open {}", dest.display()), io::Error::other(e)))?;
    let mut u = Unpacker::new(&root, UnpackOptions::default());
    let mut archive = tar::Archive::new(br);
    for entry in archive.entries().map_err(trunc)? {
        let mut entry = entry.map_err(trunc)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let unsafe_entry =
            |what: &str| ImageError::InvalidArchive(format!("{}: {what} {name}", path.display()));
        let Some(rel) = clean_entry_name(&raw) else {
            return Err(unsafe_entry("unsafe entry {}"));
        };
        let link = match entry.header().entry_type() {
            tar::EntryType::Link => Some(
                entry
                    .link_name_bytes()
                    .and_then(|l| clean_entry_name(&l))
                    .ok_or_else(|| unsafe_entry("unsafe hardlink {}"))?,
            ),
            _ => None,
        };
        u.unpack_entry(&mut entry, &rel, link.as_deref())
            .map_err(|e| match e {
                InRootError::Escape { .. } => unsafe_entry("entry {} goes through a symlink"),
                InRootError::LinkTarget { .. } => unsafe_entry("unsafe hardlink {}"),
                InRootError::Archive(e) => trunc(e),
                InRootError::Io {
                    op,
                    path: p,
                    source,
                } => ImageError::io(format!("{op} {}", dest.join(p).display()), source),
                e => ImageError::InvalidArchive(format!("{}: {e}", path.display())),
            })?;
    }
    u.finish()
        .map_err(|e| ImageError::io(format!("extract {}", path.display()), io::Error::other(e)))?;
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
