//! End-to-end: the OCI runtimes. The embedded one (`barge runtime`, youki's libcontainer) is the
//! default; runc stays selectable with `--runtime runc`.

mod common;

use std::sync::LazyLock;

use common::*;

static D: LazyLock<Daemon> = LazyLock::new(|| {
    let d = Daemon::start();
    d.load_layout();
    d
});

const BB: &str = "busybox:1.35";

fn has_runc() -> bool {
    D.ok(&["info", "--format", "{{json .Runtimes}}"])
        .contains("\"runc\"")
}

#[test]
fn default_runtime_is_embedded() {
    let info = D.ok(&["info", "--format", "{{.DefaultRuntime}}"]);
    assert_eq!(info.trim(), "barge");
    let runtimes = D.ok(&["info", "--format", "{{json .Runtimes}}"]);
    assert!(
        runtimes.contains("\"barge\"") && runtimes.contains("\"runtimeArgs\":[\"runtime\"]"),
        "{runtimes}"
    );

    D.ok(&["create", "--name", "rt-default", BB, "true"]);
    assert_eq!(D.inspect("rt-default", "{{.HostConfig.Runtime}}"), "barge");
    D.ok(&["rm", "rt-default"]);

    let out = D.barge(&["run", "--rm", BB, "sh", "-c", "echo embedded; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "embedded\n");
    let out = D.barge(&["run", "--rm", BB, "nonexistent-binary"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(r#"exec: "nonexistent-binary": executable file not found in $PATH"#),
        "{}",
        stderr(&out)
    );

    // exec (plain and with a tty) through the embedded runtime.
    D.ok(&["run", "-d", "--name", "rt-exec", BB, "sleep", "60"]);
    assert_eq!(D.ok(&["exec", "rt-exec", "echo", "hi"]), "hi\n");
    let out = D.barge(&["exec", "rt-exec", "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    // The message comes from the runtime in runc's words. (The exit code of a failed exec is
    // racy today, 0 or 127, with runc as well: the CLI can read the exec's exit before the
    // monitor recorded it.)
    let out = D.barge(&["exec", "rt-exec", "nope"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains(r#"exec: "nope": executable file not found in $PATH"#),
        "{text}"
    );
    assert_eq!(
        D.ok(&["exec", "-t", "rt-exec", "sh", "-c", "test -t 1 && echo tty"])
            .trim(),
        "tty"
    );
    D.ok(&["rm", "-f", "rt-exec"]);

    // Memory limit honoured (cgroup files of the container).
    let out = D.ok(&["run", "--rm", "-m", "64m", BB, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"]);
    assert_eq!(out.trim(), (64 * 1024 * 1024).to_string());
}

#[test]
fn runc_still_selectable() {
    assert!(
        has_runc(),
        "runc is required (scripts/install-deps.sh installs it)"
    );
    D.ok(&[
        "create",
        "--runtime",
        "runc",
        "--name",
        "rt-runc",
        BB,
        "sh",
        "-c",
        "echo via runc; exit 5",
    ]);
    assert_eq!(D.inspect("rt-runc", "{{.HostConfig.Runtime}}"), "runc");
    let out = D.barge(&["start", "-a", "rt-runc"]);
    assert_eq!(stdout(&out), "via runc\n", "{}", stderr(&out));
    assert_eq!(D.ok(&["wait", "rt-runc"]).trim(), "5");
    D.ok(&["rm", "rt-runc"]);
    let out = D.barge(&["run", "--rm", "--runtime", "runc", BB, "nonexistent-binary"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    D.ok(&[
        "run",
        "-d",
        "--runtime",
        "runc",
        "--name",
        "rt-runc-exec",
        BB,
        "sleep",
        "60",
    ]);
    assert_eq!(D.ok(&["exec", "rt-runc-exec", "echo", "hi"]), "hi\n");
    D.ok(&["rm", "-f", "rt-runc-exec"]);
    let out = D.barge(&["run", "--rm", "--runtime", "nosuch", BB, "true"]);
    assert_eq!(out.status.code(), Some(125));
}
