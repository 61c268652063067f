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

/// The embedded runtime applies the seccomp program and the capability drop itself, from a
/// program compiled once per profile and cached under the runtime root: every container (and
/// every `exec` into one) is still confined — the default profile's filter is on (`Seccomp: 2`),
/// the capability sets are Docker's, and a syscall the profile refuses but the capabilities
/// would allow (`unshare(CLONE_NEWUSER)`) fails — whether the program came from the cache or not.
#[test]
fn seccomp_program_cached_and_applied() {
    let cache = D.dir.join("run/runtime/barge/.seccomp");
    let _ = std::fs::remove_dir_all(&cache);
    let script =
        "busybox grep -E '^(Seccomp|NoNewPrivs|CapEff|CapPrm|CapBnd):' /proc/self/status; \
                  busybox unshare -U true && echo unshare-allowed || echo unshare-refused";
    let check = |out: &str| {
        let field = |name: &str| {
            out.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or_else(|| panic!("{name} missing in {out}"))
                .to_string()
        };
        assert_eq!(field("Seccomp:"), "2", "{out}");
        assert_eq!(field("NoNewPrivs:"), "0", "{out}");
        // Docker's default capability set, in every set of a root process.
        for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(field(set), "00000000a80425fb", "{set} {out}");
        }
        assert!(out.contains("unshare-refused"), "{out}");
    };
    // First container compiles the program (cache miss), the next ones read it.
    for _ in 0..3 {
        check(&D.ok(&["run", "--rm", BB, "sh", "-c", script]));
    }
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{}: {e}", cache.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "one program for one profile: {files:?}");
    assert!(files[0].ends_with(".bpf"), "{files:?}");

    // A process exec'd into a container gets the container's capabilities from the bundle,
    // which must hold the whole spec again after create, and the container's seccomp filter
    // (runc applies it to every process it starts in the container; libcontainer's exec path
    // drops it, so barge loads it itself): the same checks as in the container's own process,
    // as root, as another user, privileged (all capabilities, still filtered, as dockerd).
    D.ok(&["run", "-d", "--name", "rt-seccomp", BB, "sleep", "60"]);
    check(&D.ok(&["exec", "rt-seccomp", "sh", "-c", script]));
    let out = D.ok(&["exec", "-u", "1000", "rt-seccomp", "sh", "-c", script]);
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("unshare-refused"), "{out}");
    let out = D.ok(&["exec", "--privileged", "rt-seccomp", "sh", "-c", script]);
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(
        !out.contains("CapEff:\t00000000a80425fb"),
        "all capabilities: {out}"
    );
    D.ok(&["rm", "-f", "rt-seccomp"]);
    // no-new-privileges: the exec'd process loads the filter after its capability drop.
    D.ok(&[
        "run",
        "-d",
        "--name",
        "rt-seccomp-nnp",
        "--security-opt",
        "no-new-privileges",
        BB,
        "sleep",
        "60",
    ]);
    let out = D.ok(&["exec", "rt-seccomp-nnp", "sh", "-c", script]);
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    D.ok(&["rm", "-f", "rt-seccomp-nnp"]);
    // An unconfined container's exec'd processes stay unconfined.
    D.ok(&[
        "run",
        "-d",
        "--name",
        "rt-seccomp-off",
        "--security-opt",
        "seccomp=unconfined",
        BB,
        "sleep",
        "60",
    ]);
    let out = D.ok(&["exec", "rt-seccomp-off", "sh", "-c", script]);
    assert!(out.contains("Seccomp:\t0"), "{out}");
    D.ok(&["rm", "-f", "rt-seccomp-off"]);

    // A non-root user: no capabilities left after exec, filter on.
    let out = D.ok(&["run", "--rm", "-u", "1000", BB, "sh", "-c", script]);
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("CapEff:") && l.ends_with("0000000000000000")),
        "{out}"
    );
    // --cap-drop/--cap-add and no-new-privileges (the filter is then loaded after the drop).
    let out = D.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_BIND_SERVICE",
        "--security-opt",
        "no-new-privileges",
        BB,
        "sh",
        "-c",
        script,
    ]);
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000400"), "{out}");
    // seccomp=unconfined: no filter, and the same unshare works (so the refusals above are
    // the filter's).
    let out = D.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        BB,
        "sh",
        "-c",
        script,
    ]);
    assert!(out.contains("Seccomp:\t0"), "{out}");
    assert!(out.contains("unshare-allowed"), "{out}");
}
