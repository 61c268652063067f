//! Hostile layers must never write outside the snapshot and must leave the store as it was.
//!
//! Every hostile entry here points at a canary tree (`<tempdir>/outside/passwd`) next to the
//! store, never at host paths such as /etc, so even a broken implementation cannot damage the
//! machine running the tests.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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

/// A test directory with the canary `outside/passwd`; returns it and the canary dir path.
fn test_dir() -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("outside")).unwrap();
    std::fs::write(d.path().join("outside/passwd"), b"original").unwrap();
    let outside = d.path().join("outside").display().to_string();
    (d, outside)
}

/// Loads a one-layer image made of `entries` into a store below `d` and unpacks it.
fn unpack(d: &tempfile::TempDir, entries: &[RawEntry<'_>]) -> Result<Vec<PathBuf>, ImageError> {
    // A deep store, so `../` from a snapshot lands in a place we watch.
    let root = d.path().join("a/b/c/image");
    let store = ImageStore::open(&root).unwrap();
    let layout = d.path().join("layout");
    write_layout(&layout, "hostile:1", &[raw_tar(entries)]);
    store.load_path(&layout, None).unwrap();
    std::fs::remove_dir_all(&layout).unwrap();
    let before = tree(d.path(), &root);
    let snaps_before = snapshots(&store);
    let res = store.layer_dirs("hostile:1");
    assert_eq!(
        before,
        tree(d.path(), &root),
        "something was written outside the store"
    );
    assert_eq!(
        std::fs::read(d.path().join("outside/passwd")).unwrap(),
        b"original"
    );
    if res.is_err() {
        assert_eq!(
            snapshots(&store),
            snaps_before,
            "failed unpack left a snapshot"
        );
        let tmp: Vec<_> = std::fs::read_dir(root.join("tmp")).unwrap().collect();
        assert!(tmp.is_empty(), "failed unpack left files in tmp/");
    }
    res
}

fn assert_hostile(d: &tempfile::TempDir, entries: &[RawEntry<'_>], entry: &str) {
    match unpack(d, entries) {
        Err(ImageError::HostileLayer { entry: e, .. }) => assert_eq!(e, entry),
        other => panic!("expected HostileLayer for {entry}, got {other:?}"),
    }
}

fn root_only() -> bool {
    assert!(
        is_root(),
        "the hostile-layer tests need root (lchown/mknod); CI runs them as root"
    );
    true
}

#[test]
fn dotdot_escape() {
    if !root_only() {
        return;
    }
    let (d, _) = test_dir();
    assert_hostile(&d, &[file("../escape", b"x")], "../escape");
    let (d, _) = test_dir();
    assert_hostile(
        &d,
        &[dir("ok"), file("ok/../../../escape", b"x")],
        "ok/../../../escape",
    );
}

#[test]
fn hardlink_to_outside() {
    if !root_only() {
        return;
    }
    let (d, _) = test_dir();
    assert_hostile(
        &d,
        &[hardlink("link", "../../../../../outside/passwd")],
        "link",
    );
    let (d, outside) = test_dir();
    let target = format!("{outside}/passwd");
    assert_hostile(&d, &[hardlink("link", &target)], "link");
}

#[test]
fn symlink_then_file_through_it() {
    if !root_only() {
        return;
    }
    let (d, outside) = test_dir();
    assert_hostile(
        &d,
        &[symlink("a", &outside), file("a/passwd", b"pwned")],
        "a/passwd",
    );
    let (d, _) = test_dir();
    assert_hostile(
        &d,
        &[
            dir("d"),
            symlink("d/up", "../../../.."),
            file("d/up/x", b"x"),
        ],
        "d/up/x",
    );
    let (d, outside) = test_dir();
    assert_hostile(&d, &[symlink("a", &outside), dir("a/sub")], "a/sub");
    let (d, outside) = test_dir();
    assert_hostile(
        &d,
        &[symlink("a", &outside), file("a/.wh.passwd", b"")],
        "a/.wh.passwd",
    );
    let (d, outside) = test_dir();
    assert_hostile(
        &d,
        &[symlink("a", &outside), hardlink("x", "a/passwd")],
        "x",
    );
}

#[test]
fn whiteout_of_parent() {
    if !root_only() {
        return;
    }
    let (d, _) = test_dir();
    assert_hostile(&d, &[file("../.wh.x", b"")], "../.wh.x");
    let (d, _) = test_dir();
    assert_hostile(&d, &[dir("d"), file("d/.wh...", b"")], "d/.wh...");
}

/// `..` that stays inside the layer is cleaned as docker's `filepath.Clean` does (`a/../b` is
/// `b`, even through a symlink `a`), and replacing a symlink by a directory or a file never
/// writes through it.
#[test]
fn dotdot_inside_and_replaced_links() {
    if !root_only() {
        return;
    }
    let (d, outside) = test_dir();
    let dirs = unpack(
        &d,
        &[
            symlink("a", &outside),
            file("a/../b", b"b"),
            dir("a"),
            file("a/f", b"f"),
            symlink("p", &format!("{outside}/passwd")),
            file("p", b"replaced"),
        ],
    )
    .unwrap();
    let s = &dirs[0];
    assert_eq!(std::fs::read(s.join("b")).unwrap(), b"b");
    assert_eq!(std::fs::read(s.join("a/f")).unwrap(), b"f");
    assert!(std::fs::symlink_metadata(s.join("a")).unwrap().is_dir());
    assert_eq!(std::fs::read(s.join("p")).unwrap(), b"replaced");
}

/// An opaque marker or a whiteout under a symlink is refused like any entry through one.
#[test]
fn whiteouts_through_a_symlink() {
    if !root_only() {
        return;
    }
    let (d, outside) = test_dir();
    assert_hostile(
        &d,
        &[symlink("a", &outside), file("a/.wh..wh..opq", b"")],
        "a/.wh..wh..opq",
    );
    let (d, _) = test_dir();
    assert_hostile(
        &d,
        &[dir("d"), symlink("d/up", ".."), file("d/up/d/.wh.x", b"")],
        "d/up/d/.wh.x",
    );
}

#[test]
fn absolute_names_are_neutralised() {
    if !root_only() {
        return;
    }
    let (d, outside) = test_dir();
    let name = format!("{outside}/abs");
    let dirs = unpack(&d, &[file(&name, b"inside")]).unwrap();
    assert!(
        !Path::new(&name).exists(),
        "absolute entry escaped to {name}"
    );
    assert_eq!(std::fs::read(dirs[0].join(&name[1..])).unwrap(), b"inside");
}

#[test]
fn benign_links_work() {
    if !root_only() {
        return;
    }
    let (d, _) = test_dir();
    let dirs = unpack(
        &d,
        &[
            dir("d"),
            file("d/f", b"data"),
            hardlink("d/h", "d/f"),
            hardlink("h2", "/d/f"),
            symlink("d/abs", "/does/not/matter"),
            hardlink("d/linked-symlink", "d/abs"),
            file("d/.wh.gone", b""),
            file("d/.wh..wh..opq", b""),
        ],
    )
    .unwrap();
    let d = &dirs[0];
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::metadata(d.join("d/f")).unwrap();
    assert_eq!(f.nlink(), 3);
    assert_eq!(
        std::fs::read_link(d.join("d/abs")).unwrap().to_str(),
        Some("/does/not/matter")
    );
    assert!(std::fs::symlink_metadata(d.join("d/linked-symlink"))
        .unwrap()
        .file_type()
        .is_symlink());
    let wh = std::fs::symlink_metadata(d.join("d/gone")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()) && wh.rdev() == 0);
    assert!(!d.join("d/.wh..wh..opq").exists());
}

/// Random layers built from path pieces that have broken unpackers before (`..`, `.`, empty
/// components, whiteouts, names reused as links, links to the canary and to `..`): unpacking
/// either succeeds or refuses the layer, and nothing outside the store changes (checked by
/// `unpack`), and a refused layer leaves no snapshot and nothing in tmp/. Bounded: each case
/// loads and unpacks one layer.
mod random_layers {
    use super::*;
    use proptest::prelude::*;

    const PIECES: &[&str] = &[
        "a",
        "b",
        "..",
        ".",
        "",
        "outside",
        "passwd",
        ".wh.a",
        ".wh..wh..opq",
        "a b",
        ".wh..",
        "..wh.a",
    ];

    fn path() -> impl Strategy<Value = String> {
        (
            prop::bool::weighted(0.1),
            prop::collection::vec(prop::sample::select(PIECES), 1..5),
        )
            // `@` stands for the canary directory's absolute path (filled in per case), the only
            // absolute place these names and links may aim at.
            .prop_map(|(abs, parts)| format!("{}{}", if abs { "@/" } else { "" }, parts.join("/")))
    }

    /// (kind, name, link target): kind 0 file, 1 dir, 2 symlink, 3 hardlink.
    fn entries() -> impl Strategy<Value = Vec<(u8, String, String)>> {
        prop::collection::vec(
            (0u8..4, path(), prop_oneof![path(), Just(String::new())]),
            1..8,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn never_escape_and_fail_cleanly(raw in entries()) {
            root_only();
            let (d, outside) = test_dir();
            // Links aimed at the canary use its absolute path; never at a host path.
            let raw: Vec<(u8, String, String)> = raw
                .into_iter()
                .map(|(k, n, l)| (k, n.replace('@', &outside), l.replace('@', &outside).replace("outside", &outside)))
                .filter(|(_, n, l)| n.len() < 100 && l.len() < 100)
                .collect();
            let entries: Vec<RawEntry<'_>> = raw
                .iter()
                .map(|(k, n, l)| match k {
                    0 => file(n, b"x"),
                    1 => dir(n),
                    2 => symlink(n, l),
                    _ => hardlink(n, l),
                })
                .collect();
            // Ok, or any error: `unpack` asserts that nothing outside the store changed and
            // that a refused layer left no snapshot and nothing in tmp/.
            let _ = unpack(&d, &entries);
        }
    }
}
