//! End-to-end: record writes (temp file, fsync, rename, directory fsync) that fail are
//! surfaced, never dropped: an API call answers with the error, and an exit recorded in the
//! background shows it in `State.Error`. Failures are made with `chattr +i` on the record's
//! directory (root, ext4/xfs/btrfs), which refuses the temp file.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn chattr(flag: &str, dir: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `chattr +i` for the life of the guard.
struct Immutable<'a>(&'a Path);
impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        chattr("-i", self.0);
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

#[test]
fn failed_record_writes_are_reported() {
    let d = Daemon::start();
    d.load_layout();
    let id = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "rec",
            "busybox:1.35",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let cdir = d.dir.join("data/containers").join(&id);
    let ndir = d.dir.join("data/network");
    if !chattr("+i", &cdir) {
        eprintln!("skipped: chattr +i unsupported on {}", cdir.display());
        return;
    }
    {
        let _g = Immutable(&cdir);
        // A request that writes the record answers with the failure.
        let out = d.barge(&["update", "--restart", "always", "rec"]);
        assert!(!out.status.success(), "update must fail");
        assert!(stderr(&out).contains("container.json"), "{}", stderr(&out));
        // An exit handled in the background: shown in State.Error.
        d.ok(&["kill", "rec"]);
        d.wait_for("the exit", 10, || {
            d.inspect("rec", "{{.State.Status}}") == "exited"
        });
        let err = d.inspect("rec", "{{.State.Error}}");
        assert!(err.contains("record not saved"), "{err}");
        assert!(d.log().contains("container record not saved"));
        // Networks too.
        assert!(chattr("+i", &ndir));
        let _n = Immutable(&ndir);
        let out = d.barge(&["network", "create", "recnet"]);
        assert!(!out.status.success(), "network create must fail");
        assert!(stderr(&out).contains("networks.json"), "{}", stderr(&out));
    }
    // A network that could not be recorded was not created.
    assert!(!d.ok(&["network", "ls"]).contains("recnet"));
    assert!(leftovers(&cdir).is_empty(), "{:?}", leftovers(&cdir));
    assert!(leftovers(&ndir).is_empty(), "{:?}", leftovers(&ndir));
    // Writable again: the next save succeeds and the record on disk is current.
    d.ok(&["start", "rec"]);
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cdir.join("container.json")).unwrap()).unwrap();
    assert_eq!(rec["state"]["status"], "running");
    d.ok(&["rm", "-f", "rec"]);
}
