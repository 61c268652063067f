//! End-to-end: loading the shared real images (OCI layout, docker-save archive) and running
//! them, platform selection, save/load round trips, image commands, and bad input.

mod common;

use std::path::Path;
use std::sync::LazyLock;

use common::*;

static D: LazyLock<Daemon> = LazyLock::new(|| {
    let d = Daemon::start();
    d.load_layout();
    let save = images_dir().join("docker-save-busybox-tiny.tar.gz");
    d.ok(&["load", "-i", save.to_str().unwrap()]);
    d
});

fn run(args: &[&str]) -> String {
    let mut full = vec!["run", "--rm"];
    full.extend_from_slice(args);
    D.ok(&full)
}

#[test]
fn every_ref_of_the_layout_and_the_archive_is_loaded() {
    let tags = D.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for want in [
        "busybox:1.35",
        "busybox:1.35-zstd",
        "debian-python:bookworm",
        "multilayer:1",
        "tiny-multilayer:1",
        "tiny-multilayer:1-zstd",
        "busybox-multi:1",
        "localhost/busybox:1.35",
        "localhost/tiny-multilayer:1",
    ] {
        assert!(
            tags.lines().any(|l| l == want),
            "{want} missing from:\n{tags}"
        );
    }
}

#[test]
fn busybox_echo_gzip_and_zstd() {
    assert_eq!(run(&["busybox:1.35", "echo", "hi"]), "hi\n");
    assert_eq!(run(&["busybox:1.35-zstd", "echo", "hi"]), "hi\n");
    assert_eq!(run(&["localhost/busybox:1.35", "echo", "hi"]), "hi\n");
}

#[test]
fn tiny_multilayer_default_command_sees_whiteouts_and_opaque_dir() {
    let want = "hello\n/data:\nkeep\n\n/data/keep:\nc\n";
    assert_eq!(run(&["tiny-multilayer:1"]), want);
    assert_eq!(run(&["tiny-multilayer:1-zstd"]), want);
    assert_eq!(run(&["localhost/tiny-multilayer:1"]), want);
}

#[test]
fn debian_python_runs_python() {
    assert_eq!(
        run(&["debian-python:bookworm", "python3", "-c", "print(6*7)"]),
        "42\n"
    );
}

#[test]
fn multilayer_file_tree_matches_the_readme() {
    let script = r#"set -e
ls /fixture/dir | tr '\n' ' '; echo
ls /usr/share/common-licenses
test ! -e /usr/share/zoneinfo/Europe && echo no-europe
test ! -e /etc/motd && echo no-motd
stat -c '%a %U' /fixture/setuid-true /fixture/sticky
test -p /fixture/fifo && echo fifo
readlink /fixture/dir/rel-link /fixture/abs-link /fixture/dangling
cat /fixture/dir/rel-link
ls /fixture | grep -c '^nnnnnnnnnn'
ls /fixture | grep -c 'ünïcødé'
id -u
pwd
stat -c '%u:%g' /app/app.py"#;
    let out = run(&["--entrypoint", "sh", "multilayer:1", "-c", script]);
    let want = "file rel-link \nONLY\nno-europe\nno-motd\n4755 root\n1777 root\nfifo\nfile\n/etc/os-release\n/does/not/exist\ndata\n1\n1\n1234\n/app\n1234:1234\n";
    assert_eq!(out, want);
}

#[test]
fn multilayer_app_answers_on_8080() {
    let name = "ml-app";
    D.ok(&["run", "-d", "--name", name, "multilayer:1"]);
    assert_eq!(probe_multilayer_app(&D, name), "True 2.4 1");
    D.ok(&["rm", "-f", name]);
}

#[test]
fn platform_selection_from_an_index() {
    assert_eq!(run(&["busybox-multi:1"]), "amd64\n");
    assert_eq!(D.inspect("busybox-multi:1", "{{.Architecture}}"), "amd64");
    // A second daemon stores the arm64 entry when asked.
    let d2 = Daemon::start();
    let layout = images_dir().join("oci-layout");
    d2.ok(&[
        "load",
        "--platform",
        "linux/arm64",
        "-i",
        layout.to_str().unwrap(),
    ]);
    assert_eq!(d2.inspect("busybox-multi:1", "{{.Architecture}}"), "arm64");
    assert_eq!(d2.ok(&["run", "--rm", "busybox-multi:1"]), "arm64\n");
}

#[test]
fn save_and_load_round_trip_in_both_formats() {
    let id = D.inspect("tiny-multilayer:1", "{{.Id}}");
    for format in ["docker", "oci"] {
        let out = D.dir.join(format!("saved-{format}.tar"));
        D.ok(&[
            "save",
            "--format",
            format,
            "-o",
            out.to_str().unwrap(),
            "tiny-multilayer:1",
        ]);
        let d2 = Daemon::start();
        let loaded = d2.ok(&["load", "-i", out.to_str().unwrap()]);
        assert!(loaded.contains("tiny-multilayer:1"), "{loaded}");
        assert_eq!(d2.inspect("tiny-multilayer:1", "{{.Id}}"), id, "{format}");
        assert_eq!(
            d2.ok(&["run", "--rm", "tiny-multilayer:1"]),
            "hello\n/data:\nkeep\n\n/data/keep:\nc\n"
        );
    }
}

#[test]
fn tag_history_rmi_and_in_use_refusal() {
    D.ok(&["tag", "busybox:1.35", "mybox:v1"]);
    assert_eq!(
        D.inspect("mybox:v1", "{{.Id}}"),
        D.inspect("busybox:1.35", "{{.Id}}")
    );
    let hist = D.ok(&["history", "-q", "multilayer:1"]);
    assert!(hist.lines().count() >= 5, "{hist}");
    D.ok(&["create", "--name", "uses-mybox", "mybox:v1", "true"]);
    // Untagging one of several tags is fine; deleting by ID while in use is refused.
    let id = D.inspect("mybox:v1", "{{.Id}}");
    let out = D.barge(&["rmi", &id]);
    assert!(!out.status.success());
    D.ok(&["rmi", "mybox:v1"]);
    assert!(D.barge(&["image", "inspect", "mybox:v1"]).status.code() != Some(0));
    D.ok(&["rm", "uses-mybox"]);
    assert_eq!(run(&["busybox:1.35", "echo", "still"]), "still\n");
}

#[test]
fn import_with_changes() {
    // A rootfs tarball made from the busybox image itself.
    let tar = D.dir.join("rootfs.tar");
    D.ok(&["create", "--name", "exp-src", "busybox:1.35"]);
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "set -e; d=$(mktemp -d); tar -xf {layout}/blobs/sha256/$(python3 -c \"import json;m=json.load(open('{layout}/blobs/sha256/'+[x for x in json.load(open('{layout}/index.json'))['manifests'] if x['annotations']['org.opencontainers.image.ref.name']=='busybox:1.35'][0]['digest'][7:]));print(m['layers'][0]['digest'][7:])\") -C $d; tar -C $d -cf {tar} .; rm -rf $d",
            layout = images_dir().join("oci-layout").display(),
            tar = tar.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    D.ok(&["rm", "exp-src"]);
    D.ok(&[
        "import",
        "-c",
        "ENV GREETING=imported",
        "-c",
        "CMD [\"sh\",\"-c\",\"echo $GREETING\"]",
        tar.to_str().unwrap(),
        "imported:1",
    ]);
    assert_eq!(run(&["imported:1"]), "imported\n");
}

fn store_snapshot(d: &Daemon) -> (String, Vec<String>) {
    let ids = d.ok(&["images", "-a", "-q", "--no-trunc"]);
    let mut blobs: Vec<String> = std::fs::read_dir(d.dir.join("data/image/blobs/sha256"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    blobs.sort();
    (ids, blobs)
}

fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    assert!(!out.status.success(), "expected failure");
    let err = stderr(out);
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "stderr {err:?} should mention {needle:?}"
    );
    assert!(
        err.trim().lines().count() <= 2,
        "error should be short: {err:?}"
    );
}

#[test]
fn bad_input_is_refused_and_the_store_is_unchanged() {
    let d = Daemon::start();
    d.ok(&[
        "load",
        "-i",
        images_dir()
            .join("docker-save-busybox-tiny.tar.gz")
            .to_str()
            .unwrap(),
    ]);
    let before = store_snapshot(&d);

    // Missing image, bad reference, unknown flag, nonsense config values.
    let out = d.barge(&["run", "--rm", "nosuch:1"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("nosuch"), "{}", stderr(&out));
    let out = d.barge(&["run", "--rm", "Bad:Ref!", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("invalid reference format"),
        "{}",
        stderr(&out)
    );
    let out = d.barge(&["run", "--bogus", "busybox:1.35"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("--bogus"), "{}", stderr(&out));
    let out = d.barge(&[
        "run",
        "--rm",
        "--memory",
        "1k",
        "localhost/busybox:1.35",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).to_lowercase().contains("memory"),
        "{}",
        stderr(&out)
    );
    let out = d.barge(&[
        "run",
        "--rm",
        "--cpus",
        "lots",
        "localhost/busybox:1.35",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));

    // Not an archive; a truncated archive; a missing file.
    let junk = d.dir.join("junk.tar");
    std::fs::write(
        &junk,
        b"this is not a tar archive at all, not even close........",
    )
    .unwrap();
    assert_one_line_error(&d.barge(&["load", "-i", junk.to_str().unwrap()]), "");
    let full = std::fs::read(images_dir().join("docker-save-busybox-tiny.tar.gz")).unwrap();
    let truncated = d.dir.join("truncated.tar.gz");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    assert_one_line_error(&d.barge(&["load", "-i", truncated.to_str().unwrap()]), "");
    assert_one_line_error(
        &d.barge(&["load", "-i", "/nonexistent/archive.tar"]),
        "nonexistent",
    );

    // A layout whose layer blob does not match its digest.
    let bad = d.dir.join("bad-layout");
    copy_dir(&images_dir().join("oci-layout"), &bad);
    let layer = busybox_layer_digest(&bad);
    let blob = bad.join("blobs/sha256").join(&layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    // Keep only the busybox ref so the failure is about that blob.
    let out = d.barge(&["load", "-i", bad.to_str().unwrap()]);
    assert_one_line_error(&out, "digest");

    assert_eq!(store_snapshot(&d), before, "store changed after bad input");
    assert_eq!(
        d.ok(&["run", "--rm", "localhost/busybox:1.35", "echo", "ok"]),
        "ok\n"
    );
}

#[test]
fn hostile_layer_writes_nothing_outside() {
    let d = Daemon::start();
    let victim = d.dir.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    // A rootfs tar with an entry that climbs out and one that writes through a symlink.
    let tar_path = d.dir.join("hostile.tar");
    {
        let f = std::fs::File::create(&tar_path).unwrap();
        let mut b = tar::Builder::new(f);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "escape", &victim).unwrap();
        let data = b"pwned";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "escape/pwned", &data[..]).unwrap();
        b.finish().unwrap();
    }
    let imp = d.barge(&["import", tar_path.to_str().unwrap(), "hostile:1"]);
    if imp.status.success() {
        let out = d.barge(&["run", "--rm", "hostile:1", "/bin/true"]);
        assert!(!out.status.success(), "a hostile layer must not run");
    }
    assert!(
        !victim.join("pwned").exists(),
        "layer wrote outside its directory"
    );
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

fn busybox_layer_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "busybox:1.35")
        .unwrap();
    let digest = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(digest)).unwrap())
            .unwrap();
    manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string()
}
