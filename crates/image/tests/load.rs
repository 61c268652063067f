//! Loading the shared test images, platform selection, overlay views of unpacked snapshots.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use barge_image::{ImageError, Platform};
use common::*;

#[test]
fn loads_every_ref_of_the_oci_layout() {
    let (_d, store) = new_store();
    let loaded = store.load_path(&oci_layout(), None).unwrap();
    assert_eq!(loaded.len(), 7);
    let expected: BTreeSet<String> = [
        "busybox:1.35",
        "busybox:1.35-zstd",
        "debian-python:bookworm",
        "multilayer:1",
        "tiny-multilayer:1",
        "tiny-multilayer:1-zstd",
        "busybox-multi:1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(tags(&store), expected);

    // Lookups by familiar, full name, id, bare hex and prefix.
    let bb = store.get("busybox:1.35").unwrap();
    assert_eq!(
        store.get("docker.io/library/busybox:1.35").unwrap().id,
        bb.id
    );
    assert_eq!(store.get(&bb.id).unwrap().id, bb.id);
    assert_eq!(store.get(&bb.id[7..]).unwrap().id, bb.id);
    assert_eq!(store.get(&bb.id[7..19]).unwrap().id, bb.id);
    assert_eq!(
        bb.config.config.cmd.as_deref(),
        Some(&["sh".to_string()][..])
    );
    assert!(bb.size > 1_000_000, "uncompressed size {}", bb.size);
    // busybox:1.35 and busybox:1.35-zstd share one config (same image ID), two manifests.
    assert_eq!(store.get("busybox:1.35-zstd").unwrap().id, bb.id);
    assert_eq!(
        bb.manifest_digest,
        "sha256:8797c9906b9ef8f6ff3067f96f2f6e3bd5a9ae52df1de9f59587c5fdefff2a24"
    );
    assert!(
        bb.repo_digests
            .contains(&format!("busybox@{}", bb.manifest_digest)),
        "{:?}",
        bb.repo_digests
    );
    assert_eq!(bb.repo_tags.len(), 2);
    let by_digest = store
        .get(&format!("busybox@{}", bb.manifest_digest))
        .unwrap();
    assert_eq!(by_digest.id, bb.id);
    assert!(matches!(
        store.get("busybox:nope"),
        Err(ImageError::NotFound(_))
    ));
    assert!(matches!(
        store.get("Bad Name"),
        Err(ImageError::InvalidReference { .. })
    ));

    let ml = store.get("multilayer:1").unwrap();
    assert_eq!(ml.config.config.user.as_deref(), Some("app"));
    assert!(ml.config.config.healthcheck.is_some());
    assert_eq!(ml.config.rootfs.diff_ids.len(), 5);

    // Loading again is idempotent.
    let before = blobs(&store);
    store.load_path(&oci_layout(), None).unwrap();
    assert_eq!(blobs(&store), before);
    assert_eq!(
        store.list().unwrap().len(),
        loaded.iter().map(|l| &l.id).collect::<BTreeSet<_>>().len()
    );
}

#[test]
fn loads_the_docker_save_archive() {
    let (_d, store) = new_store();
    let loaded = store.load_path(&docker_save(), None).unwrap();
    let refs: BTreeSet<String> = loaded.iter().flat_map(|l| l.references.clone()).collect();
    assert_eq!(
        refs,
        ["localhost/busybox:1.35", "localhost/tiny-multilayer:1"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert_eq!(tags(&store), refs);
    let bb = store.get("localhost/busybox:1.35").unwrap();
    assert_eq!(
        bb.id,
        "sha256:9647f67b2b86426606e3b7d9cd0267853a56968baf95795600696bbbcc4a95a3"
    );
    assert!(!bb.manifest_digest.is_empty());
    // `busybox:1.35` means docker.io/library/busybox: not the localhost image.
    assert!(store.get("busybox:1.35").is_err());
    // Layers stored uncompressed: blob digest = diff id.
    for d in &bb.config.rootfs.diff_ids {
        assert!(store.root().join("blobs/sha256").join(&d[7..]).is_file());
    }
    // Also through a stream.
    let (_d2, store2) = new_store();
    let mut f = std::fs::File::open(docker_save()).unwrap();
    let loaded2 = store2.load_reader(&mut f, None).unwrap();
    assert_eq!(loaded2.len(), 2);
    assert_eq!(tags(&store2), refs);
}

#[test]
fn platform_selection_from_an_index() {
    let (_d, store) = new_store();
    store.load_path(&oci_layout(), None).unwrap();
    let img = store.get("busybox-multi:1").unwrap();
    assert_eq!(img.config.architecture, "amd64");

    let (_d2, store2) = new_store();
    let arm = Platform::parse("linux/arm64").unwrap();
    store2.load_path(&oci_layout(), Some(&arm)).unwrap();
    let img2 = store2.get("busybox-multi:1").unwrap();
    assert_eq!(img2.config.architecture, "arm64");
    assert_ne!(img.id, img2.id);

    let (_d3, store3) = new_store();
    let s390 = Platform::parse("linux/s390x").unwrap();
    let err = store3.load_path(&oci_layout(), Some(&s390)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::PlatformNotFound { .. }), "{msg}");
    assert!(
        msg.contains("linux/amd64") && msg.contains("linux/arm64") && msg.contains("linux/s390x"),
        "{msg}"
    );
    assert!(tags(&store3).is_empty(), "store must be unchanged");
    assert!(
        blobs(&store3).is_empty(),
        "no blobs may remain: {:?}",
        blobs(&store3)
    );
}

#[test]
fn multilayer_overlay_view() {
    assert!(
        is_root(),
        "needs root (overlay mounts); CI runs the suite as root"
    );
    let (d, store) = new_store();
    store.load_path(&oci_layout(), None).unwrap();
    let img = store.get("multilayer:1").unwrap();
    let dirs = store.layer_dirs(&img.id).unwrap();
    assert_eq!(dirs.len(), 5);
    // Unpacked once: asking again gives the same dirs without work.
    assert_eq!(store.layer_dirs("multilayer:1").unwrap(), dirs);
    // Shared snapshot with debian-python.
    let base = store.layer_dirs("debian-python:bookworm").unwrap();
    assert_eq!(base[0], dirs[0]);

    let mnt = d.path().join("mnt");
    let ov = Overlay::mount(&dirs, &mnt);
    let r = &ov.target;
    let fixture = r.join("fixture");
    let names = ls(&fixture);
    assert!(
        names.contains(&"dir".to_string()) && names.contains(&"ünïcødé".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"n".repeat(200)), "200-char name missing");
    assert_eq!(ls(&fixture.join("dir")), ["file", "rel-link"]);
    assert_eq!(
        std::fs::read_to_string(fixture.join("dir/file")).unwrap(),
        "data\n"
    );
    assert_eq!(ls(&r.join("usr/share/common-licenses")), ["ONLY"]);
    assert!(!r.join("etc/motd").exists());
    assert!(!r.join("usr/share/zoneinfo/Europe").exists());
    assert!(r.join("usr/share/zoneinfo").is_dir());
    let md = std::fs::symlink_metadata(fixture.join("setuid-true")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o4755);
    let md = std::fs::symlink_metadata(fixture.join("sticky")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o1777);
    assert!(std::fs::symlink_metadata(fixture.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        std::fs::read_link(fixture.join("dir/rel-link"))
            .unwrap()
            .to_str(),
        Some("file")
    );
    assert_eq!(
        std::fs::read_link(fixture.join("abs-link"))
            .unwrap()
            .to_str(),
        Some("/etc/os-release")
    );
    assert_eq!(
        std::fs::read_link(fixture.join("dangling"))
            .unwrap()
            .to_str(),
        Some("/does/not/exist")
    );
    assert!(fixture.join("empty").is_dir());
    for f in ["app.py", "model.json"] {
        let md = std::fs::metadata(r.join("app").join(f)).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 1234), "{f}");
    }
    assert!(std::fs::read_to_string(r.join("etc/passwd"))
        .unwrap()
        .contains("app:x:1234:1234"));
    // Executables from the base keep their mode; mtimes come from the tar.
    let py = std::fs::metadata(r.join("usr/bin/python3")).unwrap();
    assert!(py.permissions().mode() & 0o111 != 0);
    assert!(py.mtime() > 1_600_000_000 && py.mtime() < chrono::Utc::now().timestamp());
    drop(ov);
}

fn check_tiny(name: &str) {
    let (d, store) = new_store();
    if name.starts_with("localhost/") {
        store.load_path(&docker_save(), None).unwrap();
    } else {
        store.load_path(&oci_layout(), None).unwrap();
    }
    let dirs = store.layer_dirs(name).unwrap();
    assert_eq!(dirs.len(), 3);
    // The snapshots carry overlay whiteouts and opaque markers.
    let top = &dirs[2];
    let wh = std::fs::symlink_metadata(dirs[2].join("data/gone")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout for data/gone in {}",
        top.display()
    );
    let opaque = xattr_get(&dirs[2].join("data/keep"), "trusted.overlay.opaque");
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
    assert!(
        is_root(),
        "needs root (overlay mounts); CI runs the suite as root"
    );
    let mnt = d.path().join("mnt");
    let ov = Overlay::mount(&dirs, &mnt);
    assert_eq!(ls(&ov.target.join("data")), ["keep"], "{name}");
    assert_eq!(ls(&ov.target.join("data/keep")), ["c"], "{name}");
    assert_eq!(
        std::fs::read_to_string(ov.target.join("data/keep/c")).unwrap(),
        "new\n"
    );
    assert!(ov.target.join("bin/sh").exists());
}

fn xattr_get(p: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let key = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            key.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[test]
fn tiny_multilayer_gzip_view() {
    check_tiny("tiny-multilayer:1");
}

#[test]
fn tiny_multilayer_zstd_view() {
    check_tiny("tiny-multilayer:1-zstd");
}

#[test]
fn tiny_multilayer_docker_save_view() {
    check_tiny("localhost/tiny-multilayer:1");
}
