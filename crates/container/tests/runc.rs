//! Integration tests with the real runc (root required) and a busybox rootfs extracted from
//! the shared OCI layout (`$BARGE_IMAGES/oci-layout`, else `../shared/images` beside the repo).
//! They fail, never skip, without root, runc or the layout: CI has all three.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use barge_container::*;

/// The shared OCI layout: `$BARGE_IMAGES/oci-layout`, else `../shared/images/oci-layout` beside
/// the repository.
static LAYOUT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let images = std::env::var("BARGE_IMAGES").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/images").to_string()
    });
    format!("{images}/oci-layout")
});
const RUNC: &str = "/usr/sbin/runc";

fn busybox_rootfs() -> Option<PathBuf> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = PathBuf::from("/tmp/barge-container-tests-busybox");
        if dir.join(".done").exists() {
            return Some(dir);
        }
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(Path::new(&*LAYOUT).join("index.json")).ok()?)
                .ok()?;
        let desc = index["manifests"]
            .as_array()?
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "busybox:1.35")?;
        let blob = |d: &str| {
            Path::new(&*LAYOUT)
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(blob(desc["digest"].as_str()?)).ok()?).ok()?;
        let layer = blob(manifest["layers"][0]["digest"].as_str()?);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let ok = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(&layer)
            .arg("-C")
            .arg(&dir)
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        std::fs::write(dir.join(".done"), b"").ok()?;
        Some(dir)
    })
    .clone()
}

struct FakeImages {
    rootfs: PathBuf,
}

impl ImageSource for FakeImages {
    fn resolve(&self, name: &str) -> Result<SourceImage, ContainerError> {
        if name != "busybox" {
            return Err(ContainerError::NotFound(name.into()));
        }
        Ok(SourceImage {
            id: "sha256:0000000000000000000000000000000000000000000000000000000000000001".into(),
            config: barge_image::ContainerConfig {
                env: Some(vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ]),
                cmd: Some(vec!["sh".into()]),
                ..Default::default()
            },
        })
    }
    fn layer_dirs(&self, _id: &str) -> Result<Vec<PathBuf>, ContainerError> {
        Ok(vec![self.rootfs.clone()])
    }
}

struct Env {
    data: tempfile::TempDir,
    exec_root: PathBuf,
    rootfs: PathBuf,
    events: Arc<Mutex<Vec<ContainerEvent>>>,
    containers: Option<Arc<Containers>>,
}

fn init_path() -> PathBuf {
    // scripts/test.sh exports BARGE_INIT_PATH; scripts/build.sh makes the static init in
    // <target>/init/release/barge-init.
    if let Ok(p) = std::env::var("BARGE_INIT_PATH").or_else(|_| std::env::var("BARGE_INIT")) {
        return p.into();
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_barge-container-monitor"));
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("init/release/barge-init")
}

/// With `BARGE_TEST_RUNTIME` = a `barge` binary (run as `barge runtime ...`) or a
/// `barge-runtime` binary, the tests run on the embedded runtime instead of runc.
fn embedded_runtime() -> Option<(PathBuf, Vec<String>)> {
    let path = PathBuf::from(std::env::var_os("BARGE_TEST_RUNTIME")?);
    let args = if path.file_name().is_some_and(|n| n == "barge") {
        vec!["runtime".to_string()]
    } else {
        Vec::new()
    };
    Some((path, args))
}

impl Env {
    fn new() -> Option<Env> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert!(
            euid == 0 && Path::new(RUNC).exists(),
            "these tests need root and {RUNC} (CI runs them as root; scripts/install-deps.sh installs runc)"
        );
        let rootfs = busybox_rootfs()
            .unwrap_or_else(|| panic!("busybox:1.35 not found in {} (set BARGE_IMAGES)", *LAYOUT));
        let data = tempfile::tempdir().unwrap();
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).unwrap();
        let exec_root = PathBuf::from(format!(
            "/tmp/bct-{:02x}{:02x}{:02x}{:02x}",
            b[0], b[1], b[2], b[3]
        ));
        let mut env = Env {
            data,
            exec_root,
            rootfs,
            events: Arc::default(),
            containers: None,
        };
        env.containers = Some(env.open());
        Some(env)
    }

    fn cfg(&self) -> RuntimeConfig {
        let mut runtimes = BTreeMap::from([("runc".to_string(), PathBuf::from(RUNC))]);
        let mut runtime_args = BTreeMap::new();
        let mut default_runtime = "runc".to_string();
        if let Some((path, args)) = embedded_runtime() {
            runtimes.insert("barge".into(), path);
            runtime_args.insert("barge".into(), args);
            default_runtime = "barge".into();
        }
        RuntimeConfig {
            networks: None,
            data_root: self.data.path().to_path_buf(),
            exec_root: self.exec_root.clone(),
            self_exe: PathBuf::from(env!("CARGO_BIN_EXE_barge-container-monitor")),
            runtimes,
            runtime_args,
            default_runtime,
            init_path: init_path(),
        }
    }

    fn open(&self) -> Arc<Containers> {
        let events = self.events.clone();
        Containers::open_with_source(
            self.cfg(),
            Box::new(FakeImages {
                rootfs: self.rootfs.clone(),
            }),
            Box::new(move |e| events.lock().unwrap().push(e)),
        )
        .unwrap()
    }

    fn c(&self) -> &Containers {
        self.containers.as_ref().unwrap()
    }

    fn create(&self, cmd: &[&str], f: impl FnOnce(&mut CreateOptions)) -> Container {
        let mut opts = CreateOptions {
            image: "busybox".into(),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        f(&mut opts);
        self.c().create(opts).unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(c) = self.containers.take() {
            for ct in c.list() {
                let _ = c.remove(&ct.id, true);
            }
        }
        let _ = std::fs::remove_dir_all(&self.exec_root);
    }
}

fn log_text(c: &Container) -> String {
    barge_container::logs::read_entries(&c.log_path)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.log).into_owned())
        .collect()
}

/// Reads stdcopy frames until EOF: (stdout, stderr).
fn read_frames(mut s: UnixStream) -> (String, String) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = (Vec::new(), Vec::new());
    loop {
        let mut hdr = [0u8; 8];
        if s.read_exact(&mut hdr).is_err() {
            break;
        }
        let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        let mut data = vec![0u8; len];
        s.read_exact(&mut data).unwrap();
        if hdr[0] == 2 {
            out.1.extend(data);
        } else {
            out.0.extend(data);
        }
    }
    (
        String::from_utf8_lossy(&out.0).into_owned(),
        String::from_utf8_lossy(&out.1).into_owned(),
    )
}

#[test]
fn echo_log_and_exit_code() {
    let Some(env) = Env::new() else { return };
    let c = env.create(&["sh", "-c", "echo hi; echo err >&2; exit 3"], |_| {});
    env.c().start(&c.id, 0, &mut |_| {}).unwrap();
    assert_eq!(env.c().wait(&c.id, WaitCondition::NotRunning).unwrap(), 3);
    let got = env.c().get(&c.id).unwrap();
    assert_eq!(got.state.status, Status::Exited);
    assert_eq!(got.state.exit_code, 3);
    let entries = barge_container::logs::read_entries(&got.log_path).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.stream == "stdout" && e.log == b"hi\n"),
        "{entries:?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.stream == "stderr" && e.log == b"err\n"),
        "{entries:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !env
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, ContainerEvent::Died { exit_code: 3, .. }))
    {
        assert!(Instant::now() < deadline, "no Died event");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Restart works and appends to the log.
    env.c().start(&c.id, 0, &mut |_| {}).unwrap();
    assert_eq!(env.c().wait(&c.id, WaitCondition::NotRunning).unwrap(), 3);
    assert_eq!(log_text(&got).matches("hi\n").count(), 2);
    env.c().remove(&c.id, false).unwrap();
    assert!(env.c().get(&c.id).is_err());
    assert!(!env.data.path().join("containers").join(&c.id).exists());
}

#[test]
fn missing_binary_is_127() {
    let Some(env) = Env::new() else { return };
    let c = env.create(&["nonexist"], |_| {});
    let err = env.c().start(&c.id, 0, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("executable file not found"), "{msg}");
    let got = env.c().get(&c.id).unwrap();
    assert_eq!(got.state.status, Status::Exited);
    assert_eq!(got.state.exit_code, 127);
    assert!(!got.rootfs.join("bin").exists(), "rootfs left mounted");
}

#[test]
fn kill_9_is_137_and_top() {
    let Some(env) = Env::new() else { return };
    let c = env.create(&["sleep", "100"], |_| {});
    env.c().start(&c.id, 0, &mut |_| {}).unwrap();
    let (titles, rows) = env.c().top(&c.id, "").unwrap();
    assert!(titles.contains(&"PID".to_string()));
    assert!(
        rows.iter().any(|r| r.last().unwrap().contains("sleep 100")),
        "{rows:?}"
    );
    env.c().kill(&c.id, "KILL").unwrap();
    assert_eq!(env.c().wait(&c.id, WaitCondition::NotRunning).unwrap(), 137);
    assert!(!env.c().get(&c.id).unwrap().state.oom_killed);
    assert!(matches!(
        env.c().kill(&c.id, "KILL"),
        Err(ContainerError::NotRunning(_))
    ));
}

#[test]
fn oom_kill_reports_137() {
    let Some(env) = Env::new() else { return };
    let c = env.create(&["sh", "-c", "x=a; while true; do x=$x$x; done"], |o| {
        o.host.memory = 16 << 20
    });
    env.c().start(&c.id, 0, &mut |_| {}).unwrap();
    assert_eq!(env.c().wait(&c.id, WaitCondition::NotRunning).unwrap(), 137);
    assert!(env.c().get(&c.id).unwrap().state.oom_killed);
}

#[test]
fn init_stops_fast() {
    let Some(env) = Env::new() else { return };
    assert!(
        init_path().exists(),
        "no barge-init at {} (scripts/build.sh makes it)",
        init_path().display()
    );
    let c = env.create(&["sleep", "1000"], |o| o.host.init = true);
    env.c().start(&c.id, 0, &mut |_| {}).unwrap();
    let t = Instant::now();
    env.c().stop(&c.id, Some(10), None).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(env.c().get(&c.id).unwrap().state.exit_code, 143);
}

#[test]
fn attach_stdin_and_output() {
    let Some(env) = Env::new() else { return };
    let c = env.create(
        &["sh", "-c", "read line; echo got:$line; echo bye >&2"],
        |o| {
            o.open_stdin = true;
            o.stdin_once = true;
        },
    );
    let mut conn = None;
    env.c()
        .start(&c.id, 1, &mut |ap| {
            conn = Some(UnixStream::connect(&ap.socket).unwrap());
        })
        .unwrap();
    let mut s = conn.unwrap();
    s.write_all(b"hello\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (out, err) = read_frames(s);
    assert_eq!(out, "got:hello\n");
    assert_eq!(err, "bye\n");
    assert_eq!(env.c().wait(&c.id, WaitCondition::NotRunning).unwrap(), 0);
}

#[test]
fn tty_attach() {
    let Some(env) = Env::new() else { return };
    let c = env.create(
        &[
            "sh",
            "-c",
            "stty size; echo tty-ok; sleep 0.5; stty size; cat",
        ],
        |o| {
            o.tty = true;
            o.open_stdin = true;
            o.stdin_once = true;
        },
    );
    let mut conn = None;
    env.c()
        .start(&c.id, 1, &mut |ap| {
            assert!(ap.tty);
            conn = Some(UnixStream::connect(&ap.socket).unwrap());
        })
        .unwrap();
    env.c().resize(&c.id, 30, 100).unwrap();
    let mut s = conn.unwrap();
    s.write_all(b"typed\n").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (out, _) = read_frames(s);
    assert!(out.contains("tty-ok"), "{out:?}");
    // The initial size is 24x80 unless the resize below won the race with the first `stty`.
    assert!(
        out.contains("24 80") || out.matches("30 100").count() == 2,
        "{out:?}"
    );
    assert!(out.contains("30 100"), "{out:?}");
    assert!(out.matches("typed").count() >= 1, "{out:?}");
    assert_eq!(env.c().wait(&c.id, WaitCondition::NotRunning).unwrap(), 0);
}

#[test]
fn exec_output_and_exit_code() {
    let Some(env) = Env::new() else { return };
    let c = env.create(&["sleep", "100"], |o| o.env = vec!["FOO=bar".into()]);
    env.c().start(&c.id, 0, &mut |_| {}).unwrap();
    let ex = env
        .c()
        .exec_create(
            &c.id,
            ExecOptions {
                cmd: vec!["sh".into(), "-c".into(), "echo out:$FOO:$X; exit 5".into()],
                env: vec!["X=y".into()],
                attach_stdout: true,
                attach_stderr: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut conn = None;
    env.c()
        .exec_start(&ex.id, false, 1, &mut |ap| {
            conn = Some(UnixStream::connect(&ap.socket).unwrap())
        })
        .unwrap();
    let (out, _) = read_frames(conn.unwrap());
    assert_eq!(out, "out:bar:y\n");
    // Runtime errors in create: name conflicts and bad options.
    assert!(matches!(
        env.c().create(CreateOptions {
            image: "busybox".into(),
            name: Some(c.name.clone()),
            ..Default::default()
        }),
        Err(ContainerError::NameInUse { .. })
    ));
    assert!(matches!(
        env.c().create(CreateOptions {
            image: "nope".into(),
            ..Default::default()
        }),
        Err(ContainerError::NotFound(_))
    ));
    assert_eq!(env.c().exec_wait(&ex.id).unwrap(), 5);
    let info = env.c().exec_inspect(&ex.id).unwrap();
    assert_eq!((info.running, info.exit_code), (false, Some(5)));
    // Fresh network namespace with lo up.
    let ex = env
        .c()
        .exec_create(
            &c.id,
            ExecOptions {
                cmd: vec![
                    "cat".into(),
                    "/sys/class/net/lo/operstate".into(),
                    "/proc/net/dev".into(),
                ],
                attach_stdout: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut conn = None;
    env.c()
        .exec_start(&ex.id, false, 1, &mut |ap| {
            conn = Some(UnixStream::connect(&ap.socket).unwrap())
        })
        .unwrap();
    let (out, _) = read_frames(conn.unwrap());
    assert!(out.starts_with("unknown\n"), "lo not up: {out}");
    assert!(!out.contains("eth0"), "{out}");
    // A missing binary in exec.
    let ex = env
        .c()
        .exec_create(
            &c.id,
            ExecOptions {
                cmd: vec!["nope".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let err = env
        .c()
        .exec_start(&ex.id, true, 0, &mut |_| {})
        .unwrap_err();
    assert!(
        err.to_string().contains("executable file not found"),
        "{err}"
    );
    env.c().kill(&c.id, "KILL").unwrap();
    env.c().wait(&c.id, WaitCondition::NotRunning).unwrap();
}

#[test]
fn survives_engine_restart() {
    let Some(mut env) = Env::new() else { return };
    let c = env.create(
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; while true; do sleep 0.1; done",
        ],
        |_| {},
    );
    env.c().start(&c.id, 0, &mut |_| {}).unwrap();
    let pid = env.c().get(&c.id).unwrap().state.pid;
    // Drop the engine; the container keeps running.
    drop(env.containers.take());
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signal 0 only checks that the process exists; no memory is involved.
    let alive = unsafe { libc::kill(pid as i32, 0) };
    assert_eq!(alive, 0, "container died with its engine");
    env.containers = Some(env.open());
    let got = env.c().get(&c.id).unwrap();
    assert_eq!(got.state.status, Status::Running);
    assert!(env.c().attach_point(&c.id).is_ok());
    // exec still works on the reconciled container.
    let ex = env
        .c()
        .exec_create(
            &c.id,
            ExecOptions {
                cmd: vec!["true".into()],
                ..Default::default()
            },
        )
        .unwrap();
    env.c().exec_start(&ex.id, true, 0, &mut |_| {}).unwrap();
    assert_eq!(env.c().exec_wait(&ex.id).unwrap(), 0);
    env.c().stop(&c.id, Some(10), None).unwrap();
    let got = env.c().get(&c.id).unwrap();
    assert_eq!((got.state.status, got.state.exit_code), (Status::Exited, 7));
}

#[test]
fn user_readonly_hostname_security() {
    let Some(env) = Env::new() else { return };
    let script = "id -u; id -g; hostname; pwd; touch /x 2>/dev/null || echo ro; grep Seccomp: /proc/self/status; grep CapEff /proc/self/status; cat /etc/hostname; grep -c nameserver /etc/resolv.conf";
    let c = env.create(&["sh", "-c", script], |o| {
        o.user = Some("65534:65534".into());
        o.host.readonly_rootfs = true;
        o.hostname = Some("myhost".into());
        o.working_dir = Some("/tmp".into());
    });
    env.c().start(&c.id, 0, &mut |_| {}).unwrap();
    assert_eq!(env.c().wait(&c.id, WaitCondition::NotRunning).unwrap(), 0);
    let out = log_text(&c);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..5],
        ["65534", "65534", "myhost", "/tmp", "ro"],
        "{out}"
    );
    assert_eq!(lines[5].split_whitespace().nth(1), Some("2"), "{out}");
    assert!(lines[6].starts_with("CapEff"), "{out}");
    assert_eq!(lines[7], "myhost");
    assert_ne!(lines[8], "0");

    let c = env.create(
        &[
            "sh",
            "-c",
            "grep Seccomp: /proc/self/status; grep CapEff /proc/self/status; ls /dev | wc -l",
        ],
        |o| o.host.privileged = true,
    );
    env.c().start(&c.id, 0, &mut |_| {}).unwrap();
    assert_eq!(env.c().wait(&c.id, WaitCondition::NotRunning).unwrap(), 0);
    let out = log_text(&c);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].split_whitespace().nth(1), Some("0"), "{out}");
    assert_ne!(
        lines[1].split_whitespace().nth(1),
        Some("00000000a80425fb"),
        "{out}"
    );
    assert!(lines[2].trim().parse::<usize>().unwrap() > 15, "{out}");

    let c = env.create(&["sh", "-c", "grep CapEff /proc/self/status"], |o| {
        o.host.cap_drop = vec!["ALL".into()];
        o.host.cap_add = vec!["NET_ADMIN".into()];
    });
    env.c().start(&c.id, 0, &mut |_| {}).unwrap();
    assert_eq!(env.c().wait(&c.id, WaitCondition::NotRunning).unwrap(), 0);
    assert!(
        log_text(&c).contains("0000000000001000"),
        "{}",
        log_text(&c)
    );
}

#[test]
fn log_rotation_and_none() {
    let Some(env) = Env::new() else { return };
    let c = env.create(
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done",
        ],
        |o| {
            o.host.log_opts = BTreeMap::from([
                ("max-size".into(), "1k".into()),
                ("max-file".into(), "2".into()),
            ]);
        },
    );
    env.c().start(&c.id, 0, &mut |_| {}).unwrap();
    assert_eq!(env.c().wait(&c.id, WaitCondition::NotRunning).unwrap(), 0);
    let entries = barge_container::logs::read_entries(&c.log_path).unwrap();
    assert!(entries.len() < 200 && !entries.is_empty());
    assert_eq!(entries.last().unwrap().log, b"line-199\n");
    assert!(std::fs::metadata(&c.log_path).unwrap().len() <= 1024);
    let c = env.create(&["echo", "x"], |o| o.host.log_type = "none".into());
    env.c().start(&c.id, 0, &mut |_| {}).unwrap();
    assert_eq!(env.c().wait(&c.id, WaitCondition::NotRunning).unwrap(), 0);
    assert!(!c.log_path.exists());
}
