//! Hostile layers must never write outside the snapshot and must leave the store as it was.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use barge_image::{ImageError, ImageStore};
use common::*;

fn snapshots(store: &ImageStore) -> BTreeSet<String> {
    std::fs::read_dir(store.root().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Everything below `dir` except the store itself.
fn tree(dir: &Path, skip: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p == skip {
            continue;
        }
        out.insert(p.display().to_string());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(tree(&p, skip));
        }
    }
    out
}

/// Loads a one-layer image made of `entries` and unpacks it; returns the unpack result.
fn unpack(
    entries: &[RawEntry<'_>],
) -> (
    tempfile::TempDir,
    Result<Vec<std::path::PathBuf>, ImageError>,
    BTreeSet<String>,
) {
    // Deep store so `../` from a snapshot lands in a place we watch.
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("a/b/c/image");
    let store = ImageStore::open(&root).unwrap();
    let layout = d.path().join("layout");
    write_layout(&layout, "hostile:1", &[raw_tar(entries)]);
    store.load_path(&layout, None).unwrap();
    std::fs::remove_dir_all(&layout).unwrap();
    let before = tree(d.path(), &root);
    let snaps_before = snapshots(&store);
    let res = store.layer_dirs("hostile:1");
    let after = tree(d.path(), &root);
    assert_eq!(before, after, "something was written outside the store");
    if res.is_err() {
        assert_eq!(
            snapshots(&store),
            snaps_before,
            "failed unpack left a snapshot"
        );
        let tmp: Vec<_> = std::fs::read_dir(root.join("tmp")).unwrap().collect();
        assert!(tmp.is_empty(), "failed unpack left files in tmp/");
    }
    (d, res, before)
}

fn assert_hostile(entries: &[RawEntry<'_>], entry: &str) {
    if !is_root() {
        eprintln!("skipping: needs root (lchown/mknod)");
        return;
    }
    let (_d, res, _) = unpack(entries);
    match res {
        Err(ImageError::HostileLayer { entry: e, .. }) => assert_eq!(e, entry),
        other => panic!("expected HostileLayer for {entry}, got {other:?}"),
    }
}

#[test]
fn dotdot_escape() {
    assert_hostile(&[file("../escape", b"x")], "../escape");
    assert_hostile(
        &[dir("ok"), file("ok/../../../escape", b"x")],
        "ok/../../../escape",
    );
}

#[test]
fn hardlink_to_outside() {
    assert_hostile(&[hardlink("link", "../outside")], "link");
    assert_hostile(&[hardlink("link", "/etc/passwd")], "link");
}

#[test]
fn symlink_then_file_through_it() {
    assert_hostile(
        &[symlink("a", "/etc"), file("a/passwd", b"pwned")],
        "a/passwd",
    );
    assert_hostile(
        &[
            dir("d"),
            symlink("d/up", "../../../.."),
            file("d/up/x", b"x"),
        ],
        "d/up/x",
    );
    assert_hostile(&[symlink("a", "/tmp"), dir("a/sub")], "a/sub");
    assert_hostile(
        &[
            symlink("a", "/tmp"),
            RawEntry {
                name: "a/.wh.x",
                kind: tar::EntryType::Regular,
                link: "",
                data: b"",
                mode: 0o644,
            },
        ],
        "a/.wh.x",
    );
}

#[test]
fn whiteout_of_parent() {
    assert_hostile(&[file("../.wh.x", b"")], "../.wh.x");
    assert_hostile(&[dir("d"), file("d/.wh...", b"")], "d/.wh...");
}

#[test]
fn absolute_names_are_neutralised() {
    if !is_root() {
        return;
    }
    let marker = format!("/tmp/barge-abs-{}", std::process::id());
    let name = marker.clone();
    let (_d, res, _) = unpack(&[file(&name, b"inside")]);
    let dirs = res.unwrap();
    assert!(
        !Path::new(&marker).exists(),
        "absolute entry escaped to {marker}"
    );
    assert_eq!(
        std::fs::read(dirs[0].join(&marker[1..])).unwrap(),
        b"inside"
    );
}

#[test]
fn benign_links_work() {
    if !is_root() {
        return;
    }
    let (_d, res, _) = unpack(&[
        dir("d"),
        file("d/f", b"data"),
        hardlink("d/h", "d/f"),
        hardlink("h2", "/d/f"),
        symlink("d/abs", "/etc/passwd"),
        hardlink("d/linked-symlink", "d/abs"),
        file("d/.wh.gone", b""),
        file("d/.wh..wh..opq", b""),
    ]);
    let dirs = res.unwrap();
    let d = &dirs[0];
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::metadata(d.join("d/f")).unwrap();
    assert_eq!(f.nlink(), 3);
    assert_eq!(
        std::fs::read_link(d.join("d/abs")).unwrap().to_str(),
        Some("/etc/passwd")
    );
    assert!(std::fs::symlink_metadata(d.join("d/linked-symlink"))
        .unwrap()
        .file_type()
        .is_symlink());
    let wh = std::fs::symlink_metadata(d.join("d/gone")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()) && wh.rdev() == 0);
    assert!(!d.join("d/.wh..wh..opq").exists());
}
