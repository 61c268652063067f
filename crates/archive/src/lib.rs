//! `barge-archive`: the tar and `.dockerignore` code that both the CLI (a Docker API client)
//! and the engine need, so the CLI links this instead of the builder and container crates
//! (and, through them, netlink, nftables and the DNS server).
//!
//! - [`ignore`]: `.dockerignore` patterns with docker's `patternmatcher` rules.
//! - [`context`]: a build context directory as a tar, as `docker build` uploads it.
//! - [`TreeTar`]: a file tree as a tar stream, as `docker cp` and `GET /containers/{id}/archive`
//!   write it.
//! - [`inroot`]: every write below an untrusted root directory (layer snapshots, container
//!   roots, `docker cp` destinations, build contexts, image archives), resolved by the kernel
//!   (`openat2` with `RESOLVE_IN_ROOT`), and the tar entry applier built on it.

pub mod context;
pub mod ignore;
pub mod inroot;
mod tree;

pub use tree::TreeTar;

use std::fs;
use std::io;
use std::path::Path;

/// Sets `h`'s entry type and device numbers for a FIFO, a character or a block device (from
/// `md`); returns false, leaving `h` alone, for any other file type.
pub fn set_special(h: &mut tar::Header, md: &fs::Metadata) -> io::Result<bool> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let ft = md.file_type();
    let kind = if ft.is_fifo() {
        tar::EntryType::Fifo
    } else if ft.is_char_device() {
        tar::EntryType::Char
    } else if ft.is_block_device() {
        tar::EntryType::Block
    } else {
        return Ok(false);
    };
    h.set_entry_type(kind);
    let rdev = md.rdev();
    h.set_device_major(libc::major(rdev))?;
    h.set_device_minor(libc::minor(rdev))?;
    Ok(true)
}

/// The entries of `dir`, sorted by name (a stable tar order).
pub fn sorted_entries(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let mut v: Vec<fs::DirEntry> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

/// A tar of `(name, type, data or link target, mode)` entries written as given (mtime
/// 1000000): names and link targets go into the header raw (at most 100 bytes), bypassing the
/// tar crate's own `..` and absolute-path checks, so tests can build hostile archives. For
/// symlinks and hard links the third field is the target, else the data. Panics on names over
/// 100 bytes.
#[doc(hidden)]
pub fn raw_tar(entries: &[(&str, tar::EntryType, &str, u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_mtime(1_000_000);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        let body = if kind.is_symlink() || kind.is_hard_link() {
            h.as_old_mut().linkname[..data.len()].copy_from_slice(data.as_bytes());
            ""
        } else {
            data
        };
        h.set_size(body.len() as u64);
        h.set_cksum();
        b.append(&h, body.as_bytes())
            .expect("writing to a Vec cannot fail");
    }
    b.into_inner().expect("writing to a Vec cannot fail")
}
