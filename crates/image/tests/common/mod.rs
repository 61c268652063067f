#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use barge_image::{ImageStore, Reference};
use sha2::{Digest, Sha256};

/// The shared test images: `$BARGE_IMAGES`, else `../shared/images` beside the repository.
pub fn images_dir() -> PathBuf {
    match std::env::var_os("BARGE_IMAGES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images"),
    }
}

pub fn oci_layout() -> PathBuf {
    images_dir().join("oci-layout")
}

pub fn docker_save() -> PathBuf {
    images_dir().join("docker-save-busybox-tiny.tar.gz")
}

pub fn new_store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("image")).unwrap();
    (dir, store)
}

pub fn tags(store: &ImageStore) -> BTreeSet<String> {
    store
        .list()
        .unwrap()
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .collect()
}

pub fn blobs(store: &ImageStore) -> BTreeSet<String> {
    std::fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

pub fn sha(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tar entry with a raw (unchecked) name, so tests can write hostile paths.
pub struct RawEntry<'a> {
    pub name: &'a str,
    pub kind: tar::EntryType,
    pub link: &'a str,
    pub data: &'a [u8],
    pub mode: u32,
}

pub fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            old.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn file<'a>(name: &'a str, data: &'a [u8]) -> RawEntry<'a> {
    RawEntry {
        name,
        kind: tar::EntryType::Regular,
        link: "",
        data,
        mode: 0o644,
    }
}

pub fn dir(name: &str) -> RawEntry<'_> {
    RawEntry {
        name,
        kind: tar::EntryType::Directory,
        link: "",
        data: b"",
        mode: 0o755,
    }
}

pub fn symlink<'a>(name: &'a str, target: &'a str) -> RawEntry<'a> {
    RawEntry {
        name,
        kind: tar::EntryType::Symlink,
        link: target,
        data: b"",
        mode: 0o777,
    }
}

pub fn hardlink<'a>(name: &'a str, target: &'a str) -> RawEntry<'a> {
    RawEntry {
        name,
        kind: tar::EntryType::Link,
        link: target,
        data: b"",
        mode: 0o644,
    }
}

/// Writes an OCI layout with one image made of the given uncompressed layers, tagged `reference`.
pub fn write_layout(dir: &Path, reference: &str, layers: &[Vec<u8>]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let d = sha(data);
        std::fs::write(blobs.join(&d[7..]), data).unwrap();
        d
    };
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let d = put(l);
        diff_ids.push(d.clone());
        layer_descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()}));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let cd = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": layer_descs,
    })
    .to_string();
    let md = put(manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": reference}}],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn familiar(r: &str) -> String {
    Reference::parse(r).unwrap().familiar()
}

/// Copies a directory tree (files and dirs only), making files writable.
pub fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
            let mut perm = std::fs::metadata(&to).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
            std::fs::set_permissions(&to, perm).unwrap();
        }
    }
}

/// An overlay mount of `layer_dirs` (bottom first) that is unmounted on drop.
pub struct Overlay {
    pub target: PathBuf,
}

impl Overlay {
    pub fn mount(layer_dirs: &[PathBuf], target: &Path) -> Overlay {
        std::fs::create_dir_all(target).unwrap();
        let lower: Vec<String> = layer_dirs
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let (opts, _work);
        if lower.len() >= 2 {
            opts = format!("lowerdir={}", lower.join(":"));
            _work = None;
        } else {
            // A single lower dir needs an upper dir.
            let base = target.parent().unwrap().join(format!(
                "{}-rw",
                target.file_name().unwrap().to_string_lossy()
            ));
            std::fs::create_dir_all(base.join("upper")).unwrap();
            std::fs::create_dir_all(base.join("work")).unwrap();
            opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower[0],
                base.join("upper").display(),
                base.join("work").display()
            );
            _work = Some(base);
        }
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount overlay {opts}: {e}"));
        Overlay {
            target: target.to_path_buf(),
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
    }
}

pub fn ls(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
