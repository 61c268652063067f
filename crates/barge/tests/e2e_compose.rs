//! End-to-end: `barge compose` drives the daemon as docker compose v2 does — names, labels,
//! networks and volumes as compose makes them, start order and health conditions, convergence
//! (a second `up` touches nothing; a change recreates only its service), scale, one-offs,
//! exec, ps/logs output, foreground `up` with prefixed logs, and failures worded as compose's.

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::sync::LazyLock;

use common::*;

static D: LazyLock<Daemon> = LazyLock::new(|| {
    let d = Daemon::start();
    d.load_layout();
    d
});

/// A project written into a temp dir; `down -v --remove-orphans` on drop, even on failure.
struct Proj {
    dir: PathBuf,
    name: String,
}

impl Proj {
    fn new(name: &str, yaml: &str) -> Proj {
        let dir = std::env::temp_dir().join(format!("barge-compose-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = Proj {
            dir,
            name: name.to_string(),
        };
        p.write(yaml);
        p
    }

    fn file(&self) -> String {
        self.dir.join("compose.yaml").display().to_string()
    }

    fn write(&self, yaml: &str) {
        std::fs::write(self.file(), yaml).unwrap();
    }

    fn compose(&self, args: &[&str]) -> Output {
        let file = self.file();
        let mut all = vec!["compose", "-f", &file, "-p", &self.name];
        all.extend_from_slice(args);
        D.barge(&all)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "compose {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\ndaemon log tail:\n{}",
            out.status.code(),
            stdout(&out),
            stderr(&out),
            tail(&D.log(), 30)
        );
        stdout(&out)
    }

    fn id(&self, container: &str) -> String {
        D.inspect(container, "{{.Id}}")
    }
}

impl Drop for Proj {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "1"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const HEALTHY: &str = r#"
services:
  web:
    image: multilayer:1
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/')"]
      interval: 1s
      retries: 60
    stop_grace_period: 1s
  client:
    image: multilayer:1
    entrypoint: ["python3", "-c"]
    command: ["import urllib.request; print('client got', urllib.request.urlopen('http://web:8080/').status)"]
    environment:
      ROUND: "1"
    depends_on:
      web:
        condition: service_healthy
"#;

#[test]
fn up_waits_for_health_labels_as_compose_and_converges() {
    let p = Proj::new("cmphealth", HEALTHY);
    let out = p.compose(&["up", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(" Network cmphealth_default  Created"), "{err}");
    assert!(err.contains(" Container cmphealth-web-1  Healthy"), "{err}");
    // The client reached the web service by its name once it was healthy.
    D.wait_for("client to exit", 60, || {
        D.inspect("cmphealth-client-1", "{{.State.Status}}") == "exited"
    });
    let logs = p.ok(&["logs", "client"]);
    assert!(logs.contains("client-1  | client got 200"), "{logs}");
    assert_eq!(D.inspect("cmphealth-client-1", "{{.State.ExitCode}}"), "0");

    // Labels, field by field as docker compose v2 sets them (pkg/compose/create.go).
    let labels: serde_json::Value =
        serde_json::from_str(&D.inspect("cmphealth-client-1", "{{json .Config.Labels}}")).unwrap();
    let image_id = D.inspect("multilayer:1", "{{.Id}}");
    let dir = p.dir.display().to_string();
    for (k, v) in [
        ("com.docker.compose.project", "cmphealth"),
        ("com.docker.compose.service", "client"),
        ("com.docker.compose.container-number", "1"),
        ("com.docker.compose.oneoff", "False"),
        ("com.docker.compose.depends_on", "web:service_healthy:false"),
        ("com.docker.compose.project.working_dir", dir.as_str()),
        ("com.docker.compose.project.config_files", p.file().as_str()),
        ("com.docker.compose.version", "2.32.4"),
        ("com.docker.compose.image", image_id.as_str()),
    ] {
        assert_eq!(labels[k].as_str(), Some(v), "label {k} in {labels}");
    }
    let hash = labels["com.docker.compose.config-hash"].as_str().unwrap();
    assert!(
        hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash}"
    );
    let net: serde_json::Value =
        serde_json::from_str(&D.inspect("cmphealth_default", "{{json .Labels}}")).unwrap();
    assert_eq!(net["com.docker.compose.network"], "default");
    assert_eq!(net["com.docker.compose.project"], "cmphealth");
    // Aliases: the container name and the service name.
    let nets: serde_json::Value =
        serde_json::from_str(&D.inspect("cmphealth-web-1", "{{json .NetworkSettings.Networks}}"))
            .unwrap();
    let aliases = &nets["cmphealth_default"]["Aliases"];
    assert_eq!(
        aliases,
        &serde_json::json!(["cmphealth-web-1", "web"]),
        "{nets}"
    );

    // ps --format json: one object per line, compose's fields.
    let ps = p.ok(&["ps", "--format", "json"]);
    let rows: Vec<serde_json::Value> = ps
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "only web runs: {ps}");
    assert_eq!(rows[0]["Name"], "cmphealth-web-1");
    assert_eq!(rows[0]["Service"], "web");
    assert_eq!(rows[0]["Project"], "cmphealth");
    assert_eq!(rows[0]["State"], "running");
    assert_eq!(rows[0]["Health"], "healthy");
    assert_eq!(p.ok(&["ps", "-a", "--services"]), "client\nweb\n");
    let table = p.ok(&["ps"]);
    assert!(table.starts_with("NAME "), "{table}");
    assert!(
        table.contains("cmphealth-web-1") && table.contains("multilayer:1"),
        "{table}"
    );

    // exec in the service container; run --rm leaves no one-off behind.
    assert_eq!(
        p.ok(&["exec", "-T", "web", "python3", "-c", "print('hi')"])
            .trim(),
        "hi"
    );
    let out = p.ok(&["run", "--rm", "--no-deps", "client", "print('oneoff')"]);
    assert_eq!(out.trim(), "oneoff");
    let left = D.ok(&[
        "ps",
        "-aq",
        "--filter",
        "label=com.docker.compose.oneoff=True",
    ]);
    assert_eq!(left.trim(), "", "one-off container left behind");

    // A second `up` with nothing changed touches no running container.
    let web_id = p.id("cmphealth-web-1");
    let started = D.inspect("cmphealth-web-1", "{{.State.StartedAt}}");
    let client_id = p.id("cmphealth-client-1");
    let err = stderr(&p.compose(&["up", "-d"]));
    assert!(err.contains(" Container cmphealth-web-1  Running"), "{err}");
    assert!(!err.contains("Recreate"), "{err}");
    assert_eq!(p.id("cmphealth-web-1"), web_id);
    assert_eq!(
        D.inspect("cmphealth-web-1", "{{.State.StartedAt}}"),
        started
    );
    assert_eq!(p.id("cmphealth-client-1"), client_id);

    // A change to the client recreates only the client.
    p.write(&HEALTHY.replace("ROUND: \"1\"", "ROUND: \"2\""));
    let err = p.ok(&["up", "-d"]);
    let _ = err;
    assert_eq!(p.id("cmphealth-web-1"), web_id);
    assert_eq!(
        D.inspect("cmphealth-web-1", "{{.State.StartedAt}}"),
        started
    );
    assert_ne!(p.id("cmphealth-client-1"), client_id);
    assert!(D
        .inspect("cmphealth-client-1", "{{.Config.Env}}")
        .contains("ROUND=2"));

    p.ok(&["down", "-t", "1"]);
    assert_eq!(
        D.ok(&[
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.compose.project=cmphealth"
        ])
        .trim(),
        ""
    );
    assert!(!D
        .barge(&["network", "inspect", "cmphealth_default"])
        .status
        .success());
}

const STORE: &str = r#"
services:
  store:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    volumes:
      - data:/data
      - /anon
  web:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
volumes:
  data:
"#;

#[test]
fn named_volume_survives_down_and_scale() {
    let p = Proj::new("cmpstore", STORE);
    p.ok(&["up", "-d", "--scale", "web=3"]);
    let ids = p.ok(&["ps", "-q"]);
    assert_eq!(ids.lines().count(), 4, "{ids}");
    for n in 1..=3 {
        assert_eq!(
            D.inspect(&format!("cmpstore-web-{n}"), "{{.State.Status}}"),
            "running"
        );
    }
    let vol: serde_json::Value =
        serde_json::from_str(&D.inspect("cmpstore_data", "{{json .Labels}}")).unwrap();
    assert_eq!(vol["com.docker.compose.volume"], "data");
    assert_eq!(vol["com.docker.compose.project"], "cmpstore");
    // Scaling down keeps replica 1 as it was and removes the others.
    let web1 = p.id("cmpstore-web-1");
    let store0 = p.id("cmpstore-store-1");
    p.ok(&["up", "-d", "--scale", "web=1"]);
    assert_eq!(p.id("cmpstore-web-1"), web1);
    // the store still mounts its named volume: not recreated
    assert_eq!(p.id("cmpstore-store-1"), store0);
    assert!(!D.barge(&["inspect", "cmpstore-web-3"]).status.success());

    // A recreated container keeps its anonymous volume, as compose's do.
    p.ok(&["exec", "-T", "store", "sh", "-c", "echo kept > /anon/f"]);
    let store = p.id("cmpstore-store-1");
    p.write(&STORE.replace(
        "    init: true\n    volumes:",
        "    init: true\n    environment: [X=1]\n    volumes:",
    ));
    p.ok(&["up", "-d", "--scale", "web=1"]);
    assert_ne!(p.id("cmpstore-store-1"), store);
    assert_eq!(
        p.ok(&["exec", "-T", "store", "cat", "/anon/f"]).trim(),
        "kept"
    );
    assert_eq!(p.id("cmpstore-web-1"), web1);
    p.write(STORE);

    p.ok(&[
        "exec",
        "-T",
        "store",
        "sh",
        "-c",
        "echo persisted > /data/f",
    ]);
    p.ok(&["down", "-t", "1"]);
    D.ok(&["volume", "inspect", "cmpstore_data"]);
    p.ok(&["up", "-d", "store"]);
    assert_eq!(
        p.ok(&["exec", "-T", "store", "cat", "/data/f"]).trim(),
        "persisted"
    );
    // `up store` started only the store.
    assert!(!D.barge(&["inspect", "cmpstore-web-1"]).status.success());
    p.ok(&["down", "-v", "-t", "1"]);
    assert!(!D
        .barge(&["volume", "inspect", "cmpstore_data"])
        .status
        .success());
}

#[test]
fn foreground_up_prefixes_logs_and_returns_the_exit_code() {
    let p = Proj::new(
        "cmpfg",
        r#"
services:
  one:
    image: busybox:1.35
    command: ["sh", "-c", "sleep 1; echo hello from one; exit 3"]
  two:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
"#,
    );
    let out = p.compose(&["up", "--exit-code-from", "one"]);
    let so = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{so}\n{}", stderr(&out));
    assert!(so.contains("Attaching to one-1, two-1"), "{so}");
    assert!(so.contains("one-1  | hello from one"), "{so}");
    assert!(so.contains("one-1 exited with code 3"), "{so}");
    assert_eq!(D.inspect("cmpfg-two-1", "{{.State.Running}}"), "false");
    // --exit-code-from: the first exit stops all; the code is the named service's (two was
    // stopped: SIGTERM through its init).
    let out = p.compose(&["up", "--exit-code-from", "two", "-t", "5"]);
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("Aborting on container exit..."));

    // A dependency that fails ends `up` with compose's message.
    let p = Proj::new(
        "cmpdep",
        r#"
services:
  init:
    image: busybox:1.35
    command: ["sh", "-c", "exit 3"]
  app:
    image: busybox:1.35
    command: ["true"]
    depends_on:
      init:
        condition: service_completed_successfully
"#,
    );
    let out = p.compose(&["up", "-d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("service \"init\" didn't complete successfully: exit 3"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unhealthy_dependency_fails_up_with_compose_message() {
    let p = Proj::new(
        "cmpsick",
        r#"
services:
  db:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    healthcheck:
      test: ["CMD", "sh", "-c", "exit 1"]
      interval: 500ms
      retries: 1
  app:
    image: busybox:1.35
    command: ["sleep", "1000"]
    depends_on:
      db:
        condition: service_healthy
"#,
    );
    let out = p.compose(&["up", "-d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("dependency failed to start: container cmpsick-db-1 is unhealthy"),
        "{}",
        stderr(&out)
    );
    // The dependent was created but never started.
    assert_eq!(D.inspect("cmpsick-app-1", "{{.State.Status}}"), "created");
}

#[test]
fn port_conflict_fails_with_one_message() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = Proj::new(
        "cmpport",
        &format!(
            r#"
services:
  web:
    image: busybox:1.35
    command: ["sleep", "1000"]
    ports:
      - "127.0.0.1:{port}:80"
"#
        ),
    );
    let out = p.compose(&["up", "-d"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    let messages: Vec<&str> = err.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(messages.len(), 1, "{err}");
    assert!(messages[0].contains("address already in use"), "{err}");
    drop(listener);
}

const PAIR: &str = r#"
services:
  a:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    ports:
      - "127.0.0.1::80"
  b:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    depends_on: [a]
"#;

#[test]
fn lifecycle_commands_and_recreate_flags() {
    let p = Proj::new("cmplife", PAIR);
    let state = |c: &str| D.inspect(c, "{{.State.Status}}");
    p.ok(&["up", "-d", "--wait"]);
    let port = p.ok(&["port", "a", "80"]);
    assert!(port.trim().starts_with("127.0.0.1:"), "{port}");
    assert!(p.ok(&["top", "a"]).contains("sleep"));
    let images = p.ok(&["images"]);
    assert!(
        images.contains("cmplife-a-1") && images.contains("busybox"),
        "{images}"
    );
    let ls = p.ok(&["ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("cmplife ") && l.contains("running(2)")),
        "{ls}"
    );
    assert!(p.ok(&["version"]).starts_with("Docker Compose version v2."));

    p.ok(&["pause", "a"]);
    assert_eq!(state("cmplife-a-1"), "paused");
    p.ok(&["unpause", "a"]);
    assert_eq!(state("cmplife-a-1"), "running");
    p.ok(&["stop", "-t", "1"]);
    assert_eq!(
        (state("cmplife-a-1"), state("cmplife-b-1")),
        ("exited".into(), "exited".into())
    );
    assert_eq!(p.ok(&["ps", "-q"]).trim(), "");
    assert_eq!(p.ok(&["ps", "-aq"]).lines().count(), 2);
    p.ok(&["start"]);
    assert_eq!(
        (state("cmplife-a-1"), state("cmplife-b-1")),
        ("running".into(), "running".into())
    );
    let started = D.inspect("cmplife-b-1", "{{.State.StartedAt}}");
    p.ok(&["restart", "-t", "1", "b"]);
    assert_ne!(D.inspect("cmplife-b-1", "{{.State.StartedAt}}"), started);
    // events: the engine's container events of the project, as compose prints them.
    let file = p.file();
    let events = std::process::Command::new(BARGE)
        .env("BARGE_HOST", &D.host)
        .args([
            "compose", "-f", &file, "-p", "cmplife", "events", "--json", "b",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    p.ok(&["kill", "b"]);
    D.wait_for("b killed", 10, || state("cmplife-b-1") == "exited");
    // wait: the exit code of the first container to stop (SIGKILL: 137).
    assert_eq!(p.compose(&["wait", "b"]).status.code(), Some(137));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(events.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let ev = stdout(&events.wait_with_output().unwrap());
    let kill: serde_json::Value = ev
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["action"] == "kill")
        .unwrap_or_else(|| panic!("no kill event in {ev}"));
    assert_eq!(kill["service"], "b");
    assert_eq!(kill["type"], "container");
    assert_eq!(kill["id"], p.id("cmplife-b-1"));
    // cp in and out of a service container.
    let local = p.dir.join("note.txt");
    std::fs::write(&local, "copied\n").unwrap();
    let local = local.display().to_string();
    p.ok(&["cp", &local, "a:/note.txt"]);
    assert_eq!(p.ok(&["exec", "-T", "a", "cat", "/note.txt"]), "copied\n");
    let back = p.dir.join("back.txt").display().to_string();
    p.ok(&["cp", "a:/note.txt", &back]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied\n");
    p.ok(&["rm", "-f", "b"]);
    assert!(!D.barge(&["inspect", "cmplife-b-1"]).status.success());

    // --no-recreate creates what is missing and keeps the rest; --force-recreate --no-deps
    // replaces only the named service.
    let a = p.id("cmplife-a-1");
    p.ok(&["up", "-d", "--no-recreate"]);
    assert_eq!(p.id("cmplife-a-1"), a);
    let b = p.id("cmplife-b-1");
    p.ok(&["up", "-d", "--force-recreate", "--no-deps", "a"]);
    assert_ne!(p.id("cmplife-a-1"), a);
    assert_eq!(p.id("cmplife-b-1"), b);
    let labels: serde_json::Value =
        serde_json::from_str(&D.inspect("cmplife-a-1", "{{json .Config.Labels}}")).unwrap();
    assert_eq!(
        labels["com.docker.compose.replace"].as_str(),
        Some(a.as_str())
    );

    // A service dropped from the file is an orphan: warned about, removed on request.
    p.write(&PAIR[..PAIR.find("  b:").unwrap()]);
    let out = p.compose(&["up", "-d"]);
    assert!(
        stderr(&out).contains("Found orphan containers ([cmplife-b-1])"),
        "{}",
        stderr(&out)
    );
    assert_eq!(state("cmplife-b-1"), "running");
    p.ok(&["up", "-d", "--remove-orphans"]);
    assert!(!D.barge(&["inspect", "cmplife-b-1"]).status.success());
}

#[test]
fn up_builds_missing_images_and_ctrl_c_stops_the_project() {
    let p = Proj::new(
        "cmpbuild",
        r#"
services:
  app:
    build:
      context: .
      args:
        WORD: built
  sleeper:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
"#,
    );
    std::fs::write(
        p.dir.join("Dockerfile"),
        "FROM busybox:1.35\nARG WORD\nRUN echo $WORD > /built\nCMD [\"cat\", \"/built\"]\n",
    )
    .unwrap();
    // The image is built (tagged {project}-{service}) because it is missing.
    p.ok(&["up", "-d"]);
    D.ok(&["image", "inspect", "cmpbuild-app"]);
    D.wait_for("app to exit", 30, || {
        D.inspect("cmpbuild-app-1", "{{.State.Status}}") == "exited"
    });
    assert!(p.ok(&["logs", "app"]).contains("app-1  | built"));
    p.ok(&["build", "app"]);
    p.ok(&["stop", "-t", "1"]);

    // Foreground `up`: Ctrl-C stops the containers and exits 130.
    let file = p.file();
    let child = std::process::Command::new(BARGE)
        .env("BARGE_HOST", &D.host)
        .args(["compose", "-f", &file, "-p", "cmpbuild", "up", "sleeper"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    D.wait_for("sleeper to run", 30, || {
        D.inspect("cmpbuild-sleeper-1", "{{.State.Status}}") == "running"
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Gracefully stopping..."),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        D.inspect("cmpbuild-sleeper-1", "{{.State.Status}}"),
        "exited"
    );

    // down --rmi local removes the built image (it has no custom tag).
    p.ok(&["down", "--rmi", "local", "-t", "1"]);
    assert!(!D
        .barge(&["image", "inspect", "cmpbuild-app"])
        .status
        .success());
}

#[test]
fn dependents_with_restart_true_restart_when_their_dependency_is_recreated() {
    let yaml = r#"
services:
  a:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    environment: [V=1]
  b:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    depends_on:
      a:
        condition: service_started
        restart: true
  c:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    depends_on: [a]
"#;
    let p = Proj::new("cmprst", yaml);
    p.ok(&["up", "-d"]);
    let started = |c: &str| D.inspect(c, "{{.State.StartedAt}}");
    let (a, b, b_started, c_started) = (
        p.id("cmprst-a-1"),
        p.id("cmprst-b-1"),
        started("cmprst-b-1"),
        started("cmprst-c-1"),
    );
    p.write(&yaml.replace("V=1", "V=2"));
    let out = p.compose(&["up", "-d", "-t", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(p.id("cmprst-a-1"), a);
    // b (restart: true) was stopped and started again, not recreated; c was left alone.
    assert_eq!(p.id("cmprst-b-1"), b);
    assert_ne!(started("cmprst-b-1"), b_started);
    assert_eq!(D.inspect("cmprst-b-1", "{{.State.Status}}"), "running");
    assert_eq!(started("cmprst-c-1"), c_started);
}
