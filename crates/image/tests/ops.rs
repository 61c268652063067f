//! Bad input, save/load round trips, tag/rmi/prune/gc, import, history, crash recovery.

mod common;

use std::collections::HashSet;
use std::io::Write;

use barge_image::{ImageError, ImageStore, RemovedItem, SaveFormat};
use common::*;

fn assert_unchanged(store: &ImageStore, f: impl FnOnce() -> ImageError, what: &str) -> String {
    let tags_before = tags(store);
    let blobs_before = blobs(store);
    let ids_before: Vec<String> = store.list().unwrap().into_iter().map(|i| i.id).collect();
    let err = f();
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{what}: multi-line error {msg}");
    assert_eq!(tags(store), tags_before, "{what}: tags changed ({msg})");
    assert_eq!(blobs(store), blobs_before, "{what}: blobs changed ({msg})");
    let ids: Vec<String> = store.list().unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ids_before, "{what}");
    let tmp: Vec<_> = std::fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "{what}: tmp/ not cleaned");
    msg
}

#[test]
fn bad_inputs_leave_the_store_unchanged() {
    let (d, store) = new_store();
    store.load_path(&docker_save(), None).unwrap();

    // Missing file.
    let missing = d.path().join("nope.tar");
    let msg = assert_unchanged(
        &store,
        || store.load_path(&missing, None).unwrap_err(),
        "missing",
    );
    assert!(msg.contains("nope.tar"), "{msg}");

    // Not an archive.
    let junk = d.path().join("junk.bin");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let msg = assert_unchanged(&store, || store.load_path(&junk, None).unwrap_err(), "junk");
    assert!(msg.contains("not a tar"), "{msg}");

    // Truncated gzip.
    let full = std::fs::read(docker_save()).unwrap();
    let trunc = d.path().join("trunc.tar.gz");
    std::fs::write(&trunc, &full[..full.len() / 2]).unwrap();
    let msg = assert_unchanged(
        &store,
        || store.load_path(&trunc, None).unwrap_err(),
        "truncated gzip",
    );
    assert!(
        msg.contains("invalid image archive") || msg.contains("unrecognised"),
        "{msg}"
    );
    // Truncated plain tar (fresh store: nothing shared with earlier loads).
    let mut plain = Vec::new();
    std::io::copy(&mut flate2::read::GzDecoder::new(&full[..]), &mut plain).unwrap();
    let trunc_tar = d.path().join("trunc.tar");
    std::fs::write(&trunc_tar, &plain[..plain.len() * 2 / 3]).unwrap();
    let (_d2, fresh) = new_store();
    assert_unchanged(
        &fresh,
        || fresh.load_path(&trunc_tar, None).unwrap_err(),
        "truncated tar",
    );
    assert!(blobs(&fresh).is_empty());

    // Digest mismatch: corrupt a layer blob of a copied layout.
    let layout = d.path().join("layout");
    copy_tree(&oci_layout(), &layout);
    let bb = "sha256:8797c9906b9ef8f6ff3067f96f2f6e3bd5a9ae52df1de9f59587c5fdefff2a24";
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&bb[7..])).unwrap())
            .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let lp = layout.join("blobs/sha256").join(&layer[7..]);
    let mut data = std::fs::read(&lp).unwrap();
    let n = data.len();
    data[n / 2] ^= 0xff;
    std::fs::write(&lp, &data).unwrap();
    let msg = assert_unchanged(
        &store,
        || store.load_path(&layout, None).unwrap_err(),
        "digest mismatch",
    );
    assert!(
        msg.contains("digest mismatch") && msg.contains(&layer),
        "{msg}"
    );
    // Restore the layer, corrupt the index JSON.
    std::fs::copy(oci_layout().join("blobs/sha256").join(&layer[7..]), &lp).unwrap();
    let good_index = std::fs::read(layout.join("index.json")).unwrap();
    std::fs::write(
        layout.join("index.json"),
        b"{\"schemaVersion\":2,\"manifests\":[",
    )
    .unwrap();
    let msg = assert_unchanged(
        &store,
        || store.load_path(&layout, None).unwrap_err(),
        "corrupt json",
    );
    assert!(msg.contains("index.json"), "{msg}");
    // Unknown layer media type.
    std::fs::write(layout.join("index.json"), &good_index).unwrap();
    let mut m = manifest.clone();
    m["layers"][0]["mediaType"] = "application/x-unknown".into();
    let mdata = serde_json::to_vec(&m).unwrap();
    let md = sha(&mdata);
    std::fs::write(layout.join("blobs/sha256").join(&md[7..]), &mdata).unwrap();
    let idx = String::from_utf8(good_index)
        .unwrap()
        .replace(bb, &md)
        .replace("\"size\":348,", &format!("\"size\":{},", mdata.len()));
    std::fs::write(layout.join("index.json"), idx).unwrap();
    let msg = assert_unchanged(
        &store,
        || store.load_path(&layout, None).unwrap_err(),
        "media type",
    );
    assert!(msg.contains("application/x-unknown"), "{msg}");

    // Bad references.
    let e = store
        .tag("localhost/busybox:1.35", "UPPER:case")
        .unwrap_err();
    assert!(e.to_string().starts_with("invalid reference format"), "{e}");
}

#[test]
fn save_load_round_trip_both_formats() {
    let (_d, store) = new_store();
    store.load_path(&oci_layout(), None).unwrap();
    let names: Vec<String> = ["busybox:1.35", "tiny-multilayer:1-zstd"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let ids: Vec<String> = names.iter().map(|n| store.get(n).unwrap().id).collect();
    for format in [SaveFormat::Docker, SaveFormat::Oci] {
        let mut out = Vec::new();
        store.save(&names, format, &mut out).unwrap();
        let (_d2, fresh) = new_store();
        let loaded = fresh.load_reader(&mut &out[..], None).unwrap();
        assert_eq!(loaded.len(), 2, "{format:?}");
        for (n, id) in names.iter().zip(&ids) {
            let img = fresh
                .get(n)
                .unwrap_or_else(|e| panic!("{format:?} {n}: {e}"));
            assert_eq!(&img.id, id, "{format:?} {n}");
        }
        assert_eq!(fresh.layer_dirs("tiny-multilayer:1-zstd").unwrap().len(), 3);
        if format == SaveFormat::Docker {
            // Docker's layout: manifest.json + repositories + <dir>/layer.tar.
            let mut a = tar::Archive::new(&out[..]);
            let mut paths = Vec::new();
            let mut manifest = None;
            for e in a.entries().unwrap() {
                let mut e = e.unwrap();
                let p = e.path().unwrap().display().to_string();
                if p == "manifest.json" {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                    manifest = Some(s);
                }
                paths.push(p);
            }
            assert!(paths.contains(&"repositories".to_string()));
            let m: serde_json::Value = serde_json::from_str(&manifest.unwrap()).unwrap();
            assert_eq!(m[0]["Config"], format!("{}.json", &ids[0][7..]));
            assert_eq!(m[0]["RepoTags"][0], "busybox:1.35");
            assert!(m[1]["Layers"][2].as_str().unwrap().ends_with("/layer.tar"));
        } else {
            let mut a = tar::Archive::new(&out[..]);
            for e in a.entries().unwrap() {
                let mut e = e.unwrap();
                if e.path().unwrap().to_str() == Some("index.json") {
                    let v: serde_json::Value = serde_json::from_reader(&mut e).unwrap();
                    let ann = &v["manifests"][0]["annotations"];
                    assert_eq!(ann["org.opencontainers.image.ref.name"], "1.35");
                    assert_eq!(
                        ann["io.containerd.image.name"],
                        "docker.io/library/busybox:1.35"
                    );
                }
            }
        }
    }
    // Two names of one image: one manifest.json entry with both tags.
    store.tag("busybox:1.35", "mine/box:2").unwrap();
    let mut out = Vec::new();
    let two: Vec<String> = vec!["busybox:1.35".into(), "mine/box:2".into()];
    store.save(&two, SaveFormat::Docker, &mut out).unwrap();
    let (_d3, fresh) = new_store();
    let loaded = fresh.load_reader(&mut &out[..], None).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].references, ["busybox:1.35", "mine/box:2"]);
    assert!(matches!(
        store.save(&["nope:1".into()], SaveFormat::Oci, &mut Vec::new()),
        Err(ImageError::NotFound(_))
    ));
}

#[test]
fn tag_rmi_prune_gc() {
    let (_d, store) = new_store();
    store.load_path(&docker_save(), None).unwrap();
    let bb = store.get("localhost/busybox:1.35").unwrap().id;
    let tiny = store.get("localhost/tiny-multilayer:1").unwrap().id;
    let none = |_: &str| None::<String>;

    store.tag("localhost/busybox:1.35", "mybox:1").unwrap();
    store.tag(&bb, "other/box").unwrap();
    assert_eq!(store.get("mybox:1").unwrap().id, bb);
    assert_eq!(store.get("docker.io/other/box:latest").unwrap().id, bb);
    let tags_bb = store.get(&bb).unwrap().repo_tags;
    assert_eq!(tags_bb.len(), 3, "{tags_bb:?}");

    // By id with several repositories: refused.
    assert!(matches!(
        store.remove(&bb, false, &none),
        Err(ImageError::MultipleRepositories { .. })
    ));
    // By tag: only untags while other tags remain.
    assert_eq!(
        store.remove("mybox:1", false, &none).unwrap(),
        vec![RemovedItem::Untagged("mybox:1".into())]
    );
    assert_eq!(
        store.remove("other/box", false, &none).unwrap(),
        vec![RemovedItem::Untagged("other/box:latest".into())]
    );
    // Last tag, in use: refused; forced: untagged but kept (dangling).
    let used = |id: &str| (id == bb).then(|| "c0ffee".to_string());
    let e = store
        .remove("localhost/busybox:1.35", false, &used)
        .unwrap_err();
    assert!(
        matches!(e, ImageError::InUse { .. }) && e.to_string().contains("c0ffee"),
        "{e}"
    );
    assert_eq!(
        store.remove("localhost/busybox:1.35", true, &used).unwrap(),
        vec![RemovedItem::Untagged("localhost/busybox:1.35".into())]
    );
    let dangling = store.get(&bb).unwrap();
    assert!(dangling.repo_tags.is_empty());

    // Prune keeps in-use dangling images, then removes them.
    let in_use: HashSet<String> = [bb.clone()].into_iter().collect();
    let r = store.prune(false, &in_use).unwrap();
    assert!(r.removed.is_empty());
    let blobs_before = blobs(&store).len();
    let r = store.prune(false, &HashSet::new()).unwrap();
    assert_eq!(r.removed, vec![RemovedItem::Deleted(bb.clone())]);
    // busybox's layer is shared with tiny-multilayer: only config + manifest go.
    assert_eq!(blobs(&store).len(), blobs_before - 2);
    assert!(r.space_reclaimed > 0);
    assert!(store.get(&bb).is_err());

    // Re-tagging moves a tag; the old image becomes dangling.
    store.load_path(&docker_save(), None).unwrap();
    store.tag(&bb, "x:1").unwrap();
    store.tag(&tiny, "x:1").unwrap();
    assert_eq!(store.get("x:1").unwrap().id, tiny);
    assert!(!store
        .get(&bb)
        .unwrap()
        .repo_tags
        .contains(&"x:1".to_string()));

    // Unpacked snapshots go away with the image; gc frees unreferenced blobs.
    store.layer_dirs(&tiny).unwrap();
    let junk = store.root().join("blobs/sha256").join("ab".repeat(32));
    std::fs::write(&junk, b"orphan").unwrap();
    assert_eq!(store.gc().unwrap(), 6);
    assert!(!junk.exists());
    let out = store
        .remove("localhost/tiny-multilayer:1", false, &none)
        .unwrap();
    assert_eq!(
        out,
        vec![RemovedItem::Untagged("localhost/tiny-multilayer:1".into())]
    );
    let out = store.remove(&tiny[7..19], false, &none).unwrap();
    assert_eq!(
        out,
        vec![
            RemovedItem::Untagged("x:1".into()),
            RemovedItem::Deleted(tiny.clone())
        ]
    );
    // Only the base layer's snapshot stays: the dangling busybox image shares it.
    let snaps: Vec<String> = std::fs::read_dir(store.root().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let bb_diff = store.get(&bb).unwrap().config.rootfs.diff_ids[0].clone();
    assert_eq!(snaps, vec![bb_diff[7..].to_string()]);

    // prune --all removes the remaining (unused) images and every blob.
    let r = store.prune(true, &HashSet::new()).unwrap();
    assert!(
        r.removed.contains(&RemovedItem::Deleted(bb.clone())),
        "{:?}",
        r.removed
    );
    assert!(store.list().unwrap().is_empty());
    assert!(blobs(&store).is_empty());
    assert_eq!(
        std::fs::read_dir(store.root().join("snapshots"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn import_with_changes_and_history() {
    let (_d, store) = new_store();
    let tar = raw_tar(&[dir("etc"), file("etc/hello", b"hi\n")]);
    let gz = gzip(&tar);
    let changes: Vec<String> = [
        "CMD [\"cat\", \"/etc/hello\"]",
        "ENV A=1",
        "EXPOSE 8080",
        "WORKDIR /etc",
        "USER 1000",
        "LABEL k=v",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let id = store
        .import(&mut &gz[..], Some("imported:1"), &changes, None)
        .unwrap();
    let img = store.get("imported:1").unwrap();
    assert_eq!(img.id, id);
    let c = &img.config.config;
    assert_eq!(c.cmd.clone().unwrap(), ["cat", "/etc/hello"]);
    assert_eq!(c.env.clone().unwrap(), ["A=1"]);
    assert!(c.exposed_ports.as_ref().unwrap().contains_key("8080/tcp"));
    assert_eq!(c.working_dir.as_deref(), Some("/etc"));
    assert_eq!(img.config.os, "linux");
    assert_eq!(img.size, tar.len() as u64);
    let h = store.history("imported:1").unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].id, id);
    assert_eq!(h[0].comment, "Imported from -");
    assert_eq!(h[0].tags, ["imported:1"]);
    assert_eq!(h[0].size, tar.len() as i64);
    if is_root() {
        let dirs = store.layer_dirs(&id).unwrap();
        assert_eq!(std::fs::read(dirs[0].join("etc/hello")).unwrap(), b"hi\n");
    }
    // A message, no reference: dangling.
    let id2 = store
        .import(&mut &tar[..], None, &[], Some("my msg"))
        .unwrap();
    assert_eq!(store.history(&id2).unwrap()[0].comment, "my msg");
    // Bad change / bad input leave nothing behind.
    let before = blobs(&store);
    assert!(matches!(
        store.import(&mut &tar[..], None, &["RUN x".into()], None),
        Err(ImageError::InvalidChange { .. })
    ));
    assert!(store
        .import(
            &mut &b"definitely not a tar archive, just text"[..],
            None,
            &[],
            None
        )
        .is_err());
    assert_eq!(blobs(&store), before);
}

#[test]
fn history_of_a_built_image() {
    let (_d, store) = new_store();
    store.load_path(&docker_save(), None).unwrap();
    let img = store.get("localhost/tiny-multilayer:1").unwrap();
    let h = store.history("localhost/tiny-multilayer:1").unwrap();
    assert_eq!(h.len(), img.config.history.len());
    assert_eq!(h[0].id, img.id);
    assert!(h[1..].iter().all(|i| i.id == "<missing>"));
    assert_eq!(h.iter().map(|i| i.size as u64).sum::<u64>(), img.size);
    assert!(h[0].created_by.contains("CMD"), "{:?}", h[0]);
    assert_eq!(h.iter().filter(|i| i.size > 0).count(), 3);
}

#[test]
fn open_cleans_tmp_after_a_crash() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("image");
    {
        let store = ImageStore::open(&root).unwrap();
        store.load_path(&docker_save(), None).unwrap();
    }
    // Simulate a crash mid-load and mid-unpack.
    std::fs::create_dir_all(root.join("tmp/unpack-123/usr/bin")).unwrap();
    std::fs::write(root.join("tmp/unpack-123/usr/bin/x"), b"partial").unwrap();
    let mut f = std::fs::File::create(root.join("tmp/.tmpABC")).unwrap();
    f.write_all(b"half a blob").unwrap();
    let store = ImageStore::open(&root).unwrap();
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    assert_eq!(tags(&store).len(), 2);
    // A corrupt refs.json is reported, naming the file.
    std::fs::write(root.join("refs.json"), b"{").unwrap();
    let e = ImageStore::open(&root).err().unwrap();
    assert!(e.to_string().contains("refs.json"), "{e}");
}

#[test]
fn concurrent_layer_dirs_share_snapshots() {
    assert!(
        is_root(),
        "needs root (overlay mounts); CI runs the suite as root"
    );
    let (_d, store) = new_store();
    store.load_path(&docker_save(), None).unwrap();
    let store = std::sync::Arc::new(store);
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let s = store.clone();
            std::thread::spawn(move || {
                let name = if i % 2 == 0 {
                    "localhost/tiny-multilayer:1"
                } else {
                    "localhost/busybox:1.35"
                };
                let dirs = s.layer_dirs(name).unwrap();
                assert!(!s.list().unwrap().is_empty());
                dirs
            })
        })
        .collect();
    let res: Vec<Vec<std::path::PathBuf>> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(res[0][0], res[1][0], "base layer snapshot is shared");
    assert_eq!(res[0], res[2]);
    assert_eq!(
        std::fs::read_dir(store.root().join("snapshots"))
            .unwrap()
            .count(),
        3
    );
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0
    );
}
