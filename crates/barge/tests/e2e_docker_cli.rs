//! End-to-end: the stock `docker` CLI (v28, client only) driving barge's socket.

mod common;

use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::Duration;

use common::*;

static D: LazyLock<Daemon> = LazyLock::new(|| {
    let d = Daemon::start();
    d.load_layout();
    d
});

/// Runs `cmd` under a real pseudo-terminal (util-linux `script`).
fn in_pty(d: &Daemon, cmd: &str) -> (Option<i32>, String) {
    let out = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("DOCKER_HOST", &d.host)
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).replace('\r', ""),
    )
}

#[test]
fn version_info_ping() {
    let v = D.docker_ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(v.trim(), "1.47");
    let info = D.docker_ok(&["info", "--format", "{{.OSType}} {{.DefaultRuntime}}"]);
    assert_eq!(info.trim(), "linux barge");
}

#[test]
fn run_foreground_rm_and_exit_codes() {
    assert_eq!(
        D.docker_ok(&["run", "--rm", "busybox:1.35", "echo", "hello from docker"]),
        "hello from docker\n"
    );
    let out = D.docker(&[
        "run",
        "--rm",
        "busybox:1.35",
        "sh",
        "-c",
        "echo err >&2; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(stderr(&out), "err\n");
    let out = D.docker(&["run", "--rm", "busybox:1.35", "no-such-cmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let ps = D.docker_ok(&["ps", "-a", "--format", "{{.Command}}"]);
    assert!(
        !ps.contains("no-such-cmd"),
        "--rm container left behind: {ps}"
    );
}

#[test]
fn run_it_with_a_real_tty() {
    let (code, out) = in_pty(
        &D,
        "docker run -it --rm busybox:1.35 sh -c 'tty; stty size; echo done'",
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("done"), "{out}");
}

#[test]
fn detached_ps_logs_exec_stop_kill_rm() {
    let id = D
        .docker_ok(&[
            "run",
            "-d",
            "--name",
            "dk1",
            "busybox:1.35",
            "sh",
            "-c",
            "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo n$i; sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let ps = D.docker_ok(&["ps", "--format", "{{.ID}} {{.Names}} {{.Status}}"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&id[..12]) && l.contains("dk1") && l.contains("Up")),
        "{ps}"
    );
    std::thread::sleep(Duration::from_millis(400));
    let logs = D.docker_ok(&["logs", "dk1"]);
    assert!(logs.starts_with("n1\nn2\n"), "{logs}");
    assert_eq!(D.docker_ok(&["exec", "dk1", "echo", "inside"]), "inside\n");
    let (code, out) = in_pty(&D, "docker exec -it dk1 sh -c 'tty && echo exec-tty'");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("/dev/pts/") && out.contains("exec-tty"),
        "{out}"
    );
    // logs -f ends when the container stops.
    let follow = Command::new(docker_cli())
        .env("DOCKER_HOST", &D.host)
        .env("DOCKER_CONFIG", D.dir.join("docker-config"))
        .args(["logs", "-f", "--tail", "2", "dk1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    D.docker_ok(&["stop", "dk1"]);
    let out = follow.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() >= 4);
    assert_eq!(
        D.docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "dk1"
        ])
        .trim(),
        "exited 0"
    );
    assert_eq!(D.docker_ok(&["wait", "dk1"]).trim(), "0");
    D.docker_ok(&["start", "dk1"]);
    D.docker_ok(&["kill", "dk1"]);
    assert_eq!(D.docker_ok(&["wait", "dk1"]).trim(), "137");
    D.docker_ok(&["run", "-d", "--name", "dk2", "busybox:1.35", "sleep", "100"]);
    D.docker_ok(&["rm", "-f", "dk1", "dk2"]);
    assert!(!D
        .docker_ok(&["ps", "-a", "--format", "{{.Names}}"])
        .contains("dk"));
}

#[test]
fn images_load_save_tag_rmi_inspect() {
    let d = Daemon::start();
    let archive = images_dir().join("docker-save-busybox-tiny.tar.gz");
    let out = d.docker_ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.contains("Loaded image: localhost/busybox:1.35"),
        "{out}"
    );
    let images = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        images.contains("localhost/busybox:1.35") && images.contains("localhost/tiny-multilayer:1"),
        "{images}"
    );
    d.docker_ok(&["tag", "localhost/busybox:1.35", "retagged:v2"]);
    let ids = d.docker_ok(&[
        "inspect",
        "-f",
        "{{.Id}}",
        "retagged:v2",
        "localhost/busybox:1.35",
    ]);
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids[0], ids[1]);
    let saved = d.dir.join("docker-saved.tar");
    d.docker_ok(&["save", "-o", saved.to_str().unwrap(), "retagged:v2"]);
    let out = d.docker_ok(&["rmi", "retagged:v2"]);
    assert!(out.contains("Untagged: retagged:v2"), "{out}");
    let out = d.docker_ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(out.contains("retagged:v2"), "{out}");
    assert_eq!(
        d.docker_ok(&["run", "--rm", "retagged:v2", "echo", "ok"]),
        "ok\n"
    );
    let cfg = d.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Cmd}} {{.Os}}",
        "localhost/tiny-multilayer:1",
    ]);
    assert_eq!(
        cfg.trim(),
        r#"["sh","-c","echo $GREETING; ls -R /data"] linux"#
    );
    d.docker_ok(&["rmi", "retagged:v2", "localhost/busybox:1.35"]);
    let out = d.docker(&["image", "inspect", "localhost/busybox:1.35"]);
    assert!(!out.status.success());
}

#[test]
fn events_stream_container_lifecycle() {
    let since = chrono_now();
    D.docker_ok(&["run", "--rm", "--name", "evt", "busybox:1.35", "true"]);
    std::thread::sleep(Duration::from_millis(300));
    let until = chrono_now();
    let out = D.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=evt",
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = out.lines().collect();
    for want in ["create", "start", "die", "destroy"] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
}

fn chrono_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// `--pid container:NAME` joins another running container's PID namespace (its PID 1 is the
/// other's process), from the docker CLI and barge's own; inspect echoes the mode; a stopped
/// target is refused at start with dockerd's 409 wording.
#[test]
fn pid_namespace_of_another_container() {
    D.docker_ok(&[
        "run",
        "-d",
        "--name",
        "pid-src",
        "busybox:1.35",
        "sleep",
        "60",
    ]);
    let script = "cat /proc/1/cmdline; echo; echo self=$$";
    let out = D.docker_ok(&[
        "run",
        "--rm",
        "--pid",
        "container:pid-src",
        "busybox:1.35",
        "sh",
        "-c",
        script,
    ]);
    assert!(out.starts_with("sleep\u{0}60"), "{out:?}");
    assert!(!out.contains("self=1\n"), "{out:?}");
    let out = D.ok(&[
        "run",
        "--rm",
        "--pid",
        "container:pid-src",
        "busybox:1.35",
        "sh",
        "-c",
        script,
    ]);
    assert!(out.starts_with("sleep\u{0}60"), "{out:?}");
    // Its own namespace otherwise: the shell is PID 1.
    let out = D.docker_ok(&["run", "--rm", "busybox:1.35", "sh", "-c", script]);
    assert!(out.contains("self=1\n"), "{out:?}");
    D.docker_ok(&[
        "create",
        "--name",
        "pid-join",
        "--pid",
        "container:pid-src",
        "busybox:1.35",
        "sleep",
        "1",
    ]);
    assert_eq!(
        D.docker_ok(&["inspect", "-f", "{{.HostConfig.PidMode}}", "pid-join"])
            .trim(),
        "container:pid-src"
    );
    D.docker_ok(&["rm", "-f", "pid-src"]);
    D.docker_ok(&["create", "--name", "pid-src", "busybox:1.35", "sleep", "60"]);
    let out = D.docker(&["start", "pid-join"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
    D.docker_ok(&["rm", "-f", "pid-src", "pid-join"]);
}

/// `--ipc`: `private` by default (inspect), `shareable` donors joined by `container:NAME`
/// (same IPC namespace, same `/dev/shm`), `host`, `none` (no `/dev/shm`); a private donor and
/// a bad mode are refused with dockerd's messages.
#[test]
fn ipc_modes() {
    let ns = "ls -l /proc/self/ns/ipc";
    let ipc_of = |out: &str| {
        out.split("ipc:[")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .unwrap_or_else(|| panic!("no ipc ns in {out:?}"))
            .to_string()
    };
    D.docker_ok(&[
        "run",
        "-d",
        "--name",
        "ipc-donor",
        "--ipc",
        "shareable",
        "busybox:1.35",
        "sh",
        "-c",
        "echo shared > /dev/shm/x; exec sleep 60",
    ]);
    D.docker_ok(&[
        "run",
        "-d",
        "--name",
        "ipc-private",
        "busybox:1.35",
        "sleep",
        "60",
    ]);
    assert_eq!(
        D.docker_ok(&["inspect", "-f", "{{.HostConfig.IpcMode}}", "ipc-private"])
            .trim(),
        "private"
    );
    assert_eq!(
        D.docker_ok(&["inspect", "-f", "{{.HostConfig.IpcMode}}", "ipc-donor"])
            .trim(),
        "shareable"
    );
    let donor = ipc_of(&D.docker_ok(&["exec", "ipc-donor", "sh", "-c", ns]));
    let out = D.docker_ok(&[
        "run",
        "--rm",
        "--ipc",
        "container:ipc-donor",
        "busybox:1.35",
        "sh",
        "-c",
        &format!("{ns}; cat /dev/shm/x"),
    ]);
    assert_eq!(ipc_of(&out), donor, "{out}");
    assert!(out.ends_with("shared\n"), "{out}");
    let own = ipc_of(&D.docker_ok(&["run", "--rm", "busybox:1.35", "sh", "-c", ns]));
    assert_ne!(own, donor);
    let host = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    let out = D.docker_ok(&[
        "run",
        "--rm",
        "--ipc",
        "host",
        "busybox:1.35",
        "sh",
        "-c",
        ns,
    ]);
    assert_eq!(
        format!("ipc:[{}]", ipc_of(&out)),
        host.to_string_lossy(),
        "{out}"
    );
    let out = D.docker_ok(&[
        "run",
        "--rm",
        "--ipc",
        "none",
        "busybox:1.35",
        "cat",
        "/proc/mounts",
    ]);
    assert!(!out.contains(" /dev/shm "), "{out}");
    let out = D.docker(&[
        "run",
        "--rm",
        "--ipc",
        "container:ipc-private",
        "busybox:1.35",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("non-shareable IPC (hint: use IpcMode:shareable for the donor container)"),
        "{}",
        stderr(&out)
    );
    let out = D.docker(&["create", "--ipc", "bogus", "busybox:1.35", "true"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid IPC mode: bogus"),
        "{}",
        stderr(&out)
    );
    D.docker_ok(&["rm", "-f", "ipc-donor", "ipc-private"]);
}

/// `--ulimit`, `--sysctl`, `--device`, `--oom-score-adj` and `--memory-reservation` (the
/// docker CLI's `HostConfig.Ulimits`, `Sysctls`, `Devices`, `OomScoreAdj`,
/// `MemoryReservation`) reach the container and inspect, through the docker CLI and barge's
/// own; bad values are refused with dockerd's and runc's messages.
#[test]
fn ulimits_sysctls_devices_and_oom_score() {
    let script = "ulimit -n; ulimit -Hn; cat /proc/sys/net/ipv4/tcp_keepalive_time \
                  /proc/self/oom_score_adj; ls -l /dev/myfuse | cut -c1-10";
    for (cli, run) in [("docker", true), ("barge", false)] {
        let args = [
            "run",
            "--rm",
            "--ulimit",
            "nofile=123:456",
            "--sysctl",
            "net.ipv4.tcp_keepalive_time=123",
            "--device",
            "/dev/fuse:/dev/myfuse",
            "--oom-score-adj",
            "500",
            "busybox:1.35",
            "sh",
            "-c",
            script,
        ];
        let out = if run { D.docker_ok(&args) } else { D.ok(&args) };
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["123", "456", "123", "500", "crw-------"],
            "{cli}: {out}"
        );
    }
    D.docker_ok(&[
        "create",
        "--name",
        "limits",
        "--ulimit",
        "nproc=77",
        "--sysctl",
        "kernel.shmmax=1000000",
        "--device",
        "/dev/fuse",
        "--oom-score-adj",
        "300",
        "--memory-reservation",
        "64m",
        "busybox:1.35",
        "true",
    ]);
    let f = "{{json .HostConfig.Ulimits}} {{json .HostConfig.Sysctls}} {{json .HostConfig.Devices}} {{.HostConfig.OomScoreAdj}} {{.HostConfig.MemoryReservation}}";
    assert_eq!(
        D.docker_ok(&["inspect", "-f", f, "limits"]).trim(),
        r#"[{"Name":"nproc","Hard":77,"Soft":77}] {"kernel.shmmax":"1000000"} [{"PathOnHost":"/dev/fuse","PathInContainer":"/dev/fuse","CgroupPermissions":"rwm"}] 300 67108864"#
    );
    D.docker_ok(&["start", "limits"]);
    D.docker_ok(&["rm", "-f", "limits"]);
    for (args, want) in [
        (
            &["--oom-score-adj", "2000"][..],
            "range for oom score adj is [-1000, 1000]",
        ),
        (
            &["--sysctl", "kernel.panic=1"][..],
            "is not in a separate kernel namespace",
        ),
        (
            &["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"][..],
            "not allowed in host network namespace",
        ),
        (
            &["--device", "/dev/no-such-device"][..],
            "error gathering device information while adding custom device \"/dev/no-such-device\": no such file or directory",
        ),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox:1.35", "true"]);
        // The docker CLI refuses non-namespaced sysctls itself: the daemon's check is
        // reached through barge's CLI.
        let out = if args.contains(&"kernel.panic=1") {
            D.barge(&a)
        } else {
            D.docker(&a)
        };
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

/// A whole block device of this machine (`/sys/block`, not a loop, RAM or zram disk; else
/// `/dev/loop0`) and its `MAJ:MIN`, for the block I/O throttles.
fn block_device() -> (String, String) {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let pick = names
        .iter()
        .find(|n| !["loop", "ram", "zram"].iter().any(|p| n.starts_with(p)))
        .cloned()
        .filter(|n| std::path::Path::new("/dev").join(n).exists())
        .unwrap_or_else(|| "loop0".into());
    let dev = std::fs::read_to_string(format!("/sys/block/{pick}/dev")).unwrap();
    (format!("/dev/{pick}"), dev.trim().to_string())
}

/// Removes a `--cgroup-parent` directory from every cgroup v1 hierarchy (and v2) when
/// dropped, once its containers' cgroups are gone (bounded wait).
struct CgroupParentGuard(String);

impl Drop for CgroupParentGuard {
    fn drop(&mut self) {
        let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .map(|rd| rd.flatten().map(|e| e.path().join(&self.0)).collect())
            .unwrap_or_default();
        dirs.push(std::path::Path::new("/sys/fs/cgroup").join(&self.0));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for d in dirs {
            while d.is_dir() && std::fs::remove_dir(&d).is_err() {
                if std::time::Instant::now() > deadline {
                    eprintln!("could not remove {}", d.display());
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// `--device-read-bps`/`--device-write-iops`, `--cpuset-cpus`/`--cpuset-mems`,
/// `--cpu-rt-period`, `--cgroup-parent`, `--annotation` and `--security-opt
/// systempaths=unconfined` (HostConfig's block I/O, cpuset, real-time, cgroup parent,
/// annotations and masked/readonly paths) reach the container's cgroup files and /proc through
/// the docker CLI and barge's own, are echoed by inspect, and stats/pause/update/exit
/// cleanup follow the cgroup parent; bad values get dockerd's messages.
#[test]
fn blkio_cpuset_realtime_cgroup_parent_and_system_paths() {
    let (dev, majmin) = block_device();
    let script = "cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device \
                  /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device \
                  /sys/fs/cgroup/cpuset/cpuset.mems /sys/fs/cgroup/cpuset/cpuset.cpus \
                  /sys/fs/cgroup/cpu/cpu.rt_period_us; \
                  grep :blkio: /proc/self/cgroup | cut -d/ -f2; \
                  head -c 5 /proc/timer_list | wc -c; grep -c ' /proc/sys ' /proc/mounts; true";
    for (cli, docker) in [("docker", true), ("barge", false)] {
        let parent = format!("barge-e2e-parent-{}-{cli}", std::process::id());
        let _guard = CgroupParentGuard(parent.clone());
        let read = format!("{dev}:1mb");
        let write = format!("{dev}:100");
        let mut args = vec![
            "run",
            "--rm",
            "--device-read-bps",
            &read,
            "--device-write-iops",
            &write,
            "--cpuset-cpus",
            "0",
            "--cpuset-mems",
            "0",
            "--cpu-rt-period",
            "500000",
            "--cgroup-parent",
            &parent,
            "busybox:1.35",
            "sh",
            "-c",
            script,
        ];
        let out = if docker {
            D.docker_ok(&args)
        } else {
            D.ok(&args)
        };
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            [
                majmin.as_str(),
                "1048576",
                majmin.as_str(),
                "100",
                "0",
                "0",
                "500000",
                parent.as_str(),
                "0",
                "1"
            ],
            "{cli}: {out}"
        );
        // The defaults' masks and read-only /proc/sys go with systempaths=unconfined.
        args.splice(1..1, ["--security-opt", "systempaths=unconfined"]);
        let out = if docker {
            D.docker_ok(&args)
        } else {
            D.ok(&args)
        };
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(&words[words.len() - 2..], ["5", "0"], "{cli}: {out}");
    }

    // Inspect echoes the fields.
    let parent = format!("barge-e2e-parent-{}-inspect", std::process::id());
    let _guard = CgroupParentGuard(parent.clone());
    D.docker_ok(&[
        "create",
        "--name",
        "hostcfg",
        "--device-read-bps",
        &format!("{dev}:1mb"),
        "--device-write-iops",
        &format!("{dev}:100"),
        "--cpuset-mems",
        "0",
        "--cgroup-parent",
        &parent,
        "--cpu-rt-period",
        "500000",
        "--annotation",
        "org.example.a=b",
        "--security-opt",
        "systempaths=unconfined",
        "busybox:1.35",
        "sleep",
        "60",
    ]);
    let f = "{{json .HostConfig.BlkioDeviceReadBps}} {{json .HostConfig.BlkioDeviceWriteIOps}} {{.HostConfig.CpusetMems}} {{.HostConfig.CgroupParent}} {{.HostConfig.CpuRealtimePeriod}} {{json .HostConfig.Annotations}} {{json .HostConfig.MaskedPaths}} {{json .HostConfig.ReadonlyPaths}}";
    assert_eq!(
        D.docker_ok(&["inspect", "-f", f, "hostcfg"]).trim(),
        format!(
            r#"[{{"Path":"{dev}","Rate":1048576}}] [{{"Path":"{dev}","Rate":100}}] 0 {parent} 500000 {{"org.example.a":"b"}} [] []"#
        )
    );
    // stats, pause, update and the exit's cleanup find the cgroup under its parent.
    D.docker_ok(&["start", "hostcfg"]);
    let id = D.docker_ok(&["inspect", "-f", "{{.Id}}", "hostcfg"]);
    let cg = |ctrl: &str, file: &str| {
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/{ctrl}/{parent}/{}/{file}",
            id.trim()
        ))
        .unwrap_or_default()
        .trim()
        .to_string()
    };
    D.docker_ok(&["pause", "hostcfg"]);
    assert_eq!(cg("freezer", "freezer.state"), "FROZEN");
    D.docker_ok(&["unpause", "hostcfg"]);
    assert_eq!(cg("freezer", "freezer.state"), "THAWED");
    D.docker_ok(&["update", "--pids-limit", "55", "hostcfg"]);
    assert_eq!(cg("pids", "pids.max"), "55");
    let pids = D.docker_ok(&["stats", "--no-stream", "--format", "{{.PIDs}}", "hostcfg"]);
    assert_eq!(pids.trim(), "1");
    D.docker_ok(&["kill", "hostcfg"]);
    let dir = format!("/sys/fs/cgroup/pids/{parent}/{}", id.trim());
    D.wait_for("the container's cgroup to go", 30, || {
        !std::path::Path::new(&dir).exists()
    });
    D.docker_ok(&["rm", "-f", "hostcfg"]);
    let mut plain = D.docker_ok(&["create", "busybox:1.35", "true"]);
    plain = plain.trim().to_string();
    let masked = D.docker_ok(&["inspect", "-f", "{{json .HostConfig.MaskedPaths}}", &plain]);
    assert!(masked.contains("\"/proc/kcore\""), "{masked}");
    D.docker_ok(&["rm", &plain]);

    // A kernel without a block I/O weight file drops the weight with dockerd's warning.
    if !std::path::Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists() {
        let out = D.docker(&[
            "create",
            "--name",
            "hostcfg-w",
            "--blkio-weight",
            "300",
            "busybox:1.35",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."),
            "{}",
            stderr(&out)
        );
        assert_eq!(
            D.docker_ok(&["inspect", "-f", "{{.HostConfig.BlkioWeight}}", "hostcfg-w"])
                .trim(),
            "0"
        );
        D.docker_ok(&["rm", "hostcfg-w"]);
    }

    let missing = "/dev/no-such-disk:1mb";
    for (i, (args, want, docker)) in [
        (
            &["--cpuset-mems", "5"][..],
            "Requested memory nodes are not available - requested 5, available: ",
            true,
        ),
        (
            &["--cpuset-cpus", "99"][..],
            "Requested CPUs are not available - requested 99, available: ",
            true,
        ),
        (
            &["--cpu-rt-period", "1000", "--cpu-rt-runtime", "2000"][..],
            "cpu real-time runtime cannot be higher than cpu real-time period",
            true,
        ),
        (
            &["--device-read-bps", missing][..],
            "stat /dev/no-such-disk: no such file or directory",
            true,
        ),
        (
            &["--storage-opt", "size=1G"][..],
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
            true,
        ),
        (
            &["--gpus", "all"][..],
            "could not select device driver \"\" with capabilities: [[gpu]]",
            true,
        ),
        (&["--userns", "private"][..], "invalid USER mode: private", false),
        (
            &["--device-read-bps", "/dev/x:fast"][..],
            "invalid rate for device: /dev/x:fast. The correct format is <device-path>:<number>[<unit>]",
            false,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("hostcfg-err-{i}");
        let mut a = vec!["run", "--name", &name];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox:1.35", "true"]);
        let out = if docker { D.docker(&a) } else { D.barge(&a) };
        let _ = D.docker(&["rm", "-f", &name]);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}
