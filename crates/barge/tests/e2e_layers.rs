//! End-to-end: images with many layers run. The classic overlay mount passes `lowerdir=` in
//! one page, which absolute snapshot paths overflow at about 40 layers; barge appends each
//! layer with `lowerdir+` (new mount API). Tested with docker's limit (125 layers) through
//! `build`, and a 128-layer OCI layout (generated here) through `load` + `run`.

mod common;

use std::path::Path;

use common::*;
use sha2::Digest;

fn sha256_hex(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A tar with one regular file per `(name, content)`.
fn tar_of(files: &[(&str, String)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, content.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

fn put_blob(layout: &Path, data: &[u8]) -> String {
    let hex = sha256_hex(data);
    std::fs::write(layout.join("blobs/sha256").join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

/// An OCI layout of `busybox:1.35` plus `extra` layers on top, tagged `many:<n>`: layer `i`
/// adds `/l<i>` and rewrites `/stack` with `i` (so the top layer must win).
fn many_layer_layout(dir: &Path, extra: usize) -> String {
    let shared = images_dir().join("oci-layout");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shared.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "busybox:1.35")
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&shared, desc["digest"].as_str().unwrap())).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&blob(
        &shared,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();

    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let base = manifest["layers"][0].clone();
    let base_digest = base["digest"].as_str().unwrap();
    std::fs::write(
        dir.join("blobs/sha256")
            .join(base_digest.trim_start_matches("sha256:")),
        blob(&shared, base_digest),
    )
    .unwrap();
    let mut layers = vec![base];
    let mut diff_ids = vec![config["rootfs"]["diff_ids"][0].clone()];
    for i in 1..=extra {
        let t = tar_of(&[
            (&format!("l{i}"), format!("{i}\n")),
            ("stack", format!("{i}\n")),
        ]);
        let d = put_blob(dir, &t);
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": d,
            "size": t.len(),
        }));
        diff_ids.push(serde_json::Value::String(d));
    }
    config["rootfs"]["diff_ids"] = serde_json::Value::Array(diff_ids);
    config.as_object_mut().unwrap().remove("history");
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = put_blob(dir, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layers,
    }))
    .unwrap();
    let manifest_digest = put_blob(dir, &manifest);
    let tag = format!("many:{}", extra + 1);
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    tag
}

#[test]
fn a_128_layer_oci_layout_loads_and_runs() {
    let d = Daemon::start();
    let layout = d.dir.join("layout-128");
    let tag = many_layer_layout(&layout, 127);
    d.ok(&["load", "-i", layout.to_str().unwrap()]);
    std::fs::remove_dir_all(&layout).unwrap();
    assert_eq!(d.inspect(&tag, "{{len .RootFS.Layers}}"), "128");
    // More than a page of absolute `lowerdir` paths: this needs `lowerdir+`.
    let snap = d.dir.join("data/image/snapshots").join("0".repeat(64));
    assert!(snap.as_os_str().len() * 128 > 4096);
    let out = d.ok(&["run", "--rm", &tag, "cat", "/stack", "/l1", "/l64", "/l127"]);
    assert_eq!(out, "127\n1\n64\n127\n");
    // A long-lived container of it: `cp`, `diff`, restart (its overlay mounted again).
    d.ok(&[
        "run",
        "-d",
        "--name",
        "deep",
        &tag,
        "sh",
        "-c",
        "echo top > /stack; sleep 1000",
    ]);
    d.wait_for("the write", 10, || {
        d.barge(&["exec", "deep", "cat", "/stack"]).stdout == b"top\n"
    });
    let diff = d.ok(&["diff", "deep"]);
    assert!(diff.contains("C /stack"), "{diff}");
    // Restarted: its writable layer mounted again over the 128 layers.
    d.ok(&["restart", "-t", "0", "deep"]);
    assert_eq!(
        d.ok(&["exec", "deep", "cat", "/stack", "/l100"]),
        "top\n100\n"
    );
    d.ok(&["rm", "-f", "deep"]);
}

#[test]
fn a_125_layer_image_builds_and_runs() {
    let d = Daemon::start();
    d.load_layout();
    // docker's limit is 125 layers: busybox's one plus 124 RUN steps.
    let ctx = d.dir.join("ctx-125");
    std::fs::create_dir_all(&ctx).unwrap();
    let mut df = String::from("FROM busybox:1.35\n");
    for i in 1..=124 {
        df.push_str(&format!("RUN echo {i} > /l{i} && echo {i} > /stack\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), df).unwrap();
    let t = std::time::Instant::now();
    let out = d.ok(&["build", "-t", "built:125", ctx.to_str().unwrap()]);
    eprintln!("125-layer build: {:?}", t.elapsed());
    assert!(out.contains("Step 125/125"), "{out}");
    assert_eq!(d.inspect("built:125", "{{len .RootFS.Layers}}"), "125");
    let out = d.ok(&[
        "run",
        "--rm",
        "built:125",
        "cat",
        "/stack",
        "/l1",
        "/l41",
        "/l124",
    ]);
    assert_eq!(out, "124\n1\n41\n124\n");
}
