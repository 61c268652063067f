//! End-to-end: `barge compose` drives the daemon as docker compose v2 does — names, labels,
//! networks and volumes as compose makes them, start order and health conditions, convergence
//! (a second `up` touches nothing; a change recreates only its service), scale, one-offs,
//! exec, ps/logs output, foreground `up` with prefixed logs, and failures worded as compose's.

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::sync::LazyLock;

use common::compose::Proj;
use common::*;

static D: LazyLock<Daemon> = LazyLock::new(|| {
    let d = Daemon::start();
    d.load_layout();
    d
});

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
    let p = Proj::new(&D, "cmphealth", HEALTHY);
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
    let p = Proj::new(&D, "cmpstore", STORE);
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
        &D,
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
        &D,
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
        &D,
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
    // A failed `up` leaves the project as it was: nothing it made is left.
    let left = D.ok(&[
        "ps",
        "-aq",
        "--filter",
        "label=com.docker.compose.project=cmpsick",
    ]);
    assert_eq!(left.trim(), "", "containers left behind");
    let nets = D.ok(&["network", "ls", "-q", "--filter", "name=cmpsick_default"]);
    assert_eq!(nets.trim(), "", "network left behind");
}

#[test]
fn port_conflict_fails_with_one_message() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = Proj::new(
        &D,
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
    // Nothing that was not there before is left (the issue's "Bad input"); what was there
    // before stays: a second service created by an earlier `up` survives the failed one.
    let left = D.ok(&[
        "ps",
        "-aq",
        "--filter",
        "label=com.docker.compose.project=cmpport",
    ]);
    assert_eq!(left.trim(), "", "{err}");
    let nets = D.ok(&["network", "ls", "-q", "--filter", "name=cmpport_default"]);
    assert_eq!(nets.trim(), "", "{err}");
    p.write(
        r#"
services:
  other:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
"#,
    );
    p.ok(&["up", "-d"]);
    let other = p.id("cmpport-other-1");
    p.write(&format!(
        r#"
services:
  other:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
  web:
    image: busybox:1.35
    command: ["sleep", "1000"]
    ports:
      - "127.0.0.1:{port}:80"
    volumes: [data:/data]
volumes:
  data:
"#
    ));
    let out = p.compose(&["up", "-d"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let left = D.ok(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        "label=com.docker.compose.project=cmpport",
    ]);
    assert_eq!(left.trim(), other, "{}", stderr(&out));
    assert_eq!(D.inspect(&other, "{{.State.Status}}"), "running");
    let vols = D.ok(&["volume", "ls", "-q", "--filter", "name=cmpport_data"]);
    assert_eq!(vols.trim(), "", "volume left behind: {}", stderr(&out));
    drop(listener);
}

#[test]
fn secrets_and_configs_mounted_and_injected_as_compose() {
    let p = Proj::new(
        &D,
        "cmpsecret",
        r#"
services:
  app:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
    secrets:
      - token
      - source: token
        target: /run/secrets/token_owned
        uid: "1234"
        mode: 0400
      - source: from_env
        target: env_token
        uid: "1234"
        gid: "1235"
        mode: 0400
    configs:
      - source: conf
        target: /etc/app.conf
      - inline
secrets:
  token:
    file: ./token.txt
  from_env:
    environment: CMP_SECRET
configs:
  conf:
    file: ./app.conf
  inline:
    content: "inline ${CMP_SECRET}"
"#,
    );
    std::fs::write(p.dir.join("token.txt"), "file-secret\n").unwrap();
    std::fs::write(p.dir.join("app.conf"), "a=1\n").unwrap();
    // the project's environment: .env beside the file
    std::fs::write(p.dir.join(".env"), "CMP_SECRET=from-the-env\n").unwrap();
    let up = p.compose(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    // compose bind-mounts a file secret and ignores its uid/gid/mode, with this warning
    // (docker/compose#9648: the Engine API has no way to apply them to a bind mount)
    assert!(
        stderr(&up).contains(
            "WARN[0000] secrets `uid`, `gid` and `mode` are not supported, they will be ignored"
        ),
        "{}",
        stderr(&up)
    );
    let cat = |path: &str| D.ok(&["exec", "cmpsecret-app-1", "cat", path]);
    assert_eq!(cat("/run/secrets/token_owned"), "file-secret\n");
    assert_eq!(cat("/run/secrets/token"), "file-secret\n");
    assert_eq!(cat("/etc/app.conf"), "a=1\n");
    assert_eq!(cat("/run/secrets/env_token"), "from-the-env");
    assert_eq!(cat("/inline"), "inline from-the-env");
    // file-based ones are read-only binds, as compose mounts them without swarm
    let mounts = D.inspect("cmpsecret-app-1", "{{json .HostConfig.Mounts}}");
    let mounts: serde_json::Value = serde_json::from_str(&mounts).unwrap();
    assert!(
        mounts.as_array().unwrap().contains(&serde_json::json!({
            "Type": "bind",
            "Source": p.dir.join("token.txt").display().to_string(),
            "Target": "/run/secrets/token",
            "ReadOnly": true
        })),
        "{mounts}"
    );
    // an injected one carries its mode, uid and gid (compose's tar header with copyUIDGID;
    // a container without a user keeps the archive's owners, as dockerd's tarCopyOptions)
    let ls = D.ok(&[
        "exec",
        "cmpsecret-app-1",
        "ls",
        "-ln",
        "/run/secrets/env_token",
        "/inline",
    ]);
    assert!(ls.contains("-r-------- "), "{ls}");
    assert!(ls.contains("-r--r--r-- "), "{ls}");
    let owned = ls.lines().find(|l| l.ends_with("/run/secrets/env_token"));
    let fields: Vec<&str> = owned.unwrap_or_default().split_whitespace().collect();
    assert_eq!(fields.get(2..4), Some(&["1234", "1235"][..]), "{ls}");
}

#[test]
fn service_references_resolve_to_the_dependency_container() {
    let p = Proj::new(
        &D,
        "cmpref",
        r#"
services:
  db:
    image: busybox:1.35
    command: ["sh", "-c", "echo shared > /shared/x; exec sleep 1000"]
    init: true
    stop_grace_period: 1s
    volumes: ["/shared"]
  app:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
    network_mode: service:db
    volumes_from: [db]
  web:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
    links: ["db:database"]
"#,
    );
    p.ok(&["up", "-d"]);
    let db = p.id("cmpref-db-1");
    assert_eq!(
        D.inspect("cmpref-app-1", "{{.HostConfig.NetworkMode}}"),
        format!("container:{db}")
    );
    assert_eq!(
        D.inspect("cmpref-app-1", "{{json .HostConfig.VolumesFrom}}"),
        format!("[\"{db}\"]")
    );
    // implied dependencies, as compose-go's loader adds them
    assert_eq!(
        D.inspect(
            "cmpref-app-1",
            "{{index .Config.Labels \"com.docker.compose.depends_on\"}}"
        ),
        "db:service_started:true"
    );
    D.wait_for("db's file through volumes_from", 20, || {
        D.barge(&["exec", "cmpref-app-1", "cat", "/shared/x"])
            .stdout
            == b"shared\n"
    });
    // one network namespace: the same interface
    let mac = |c: &str| D.ok(&["exec", c, "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(mac("cmpref-app-1"), mac("cmpref-db-1"));
    let links = D.inspect("cmpref-web-1", "{{json .HostConfig.Links}}");
    assert!(links.contains("database"), "{links}");
    // a second up changes nothing; without the donor, --no-deps fails as compose does
    let err = stderr(&p.compose(&["up", "-d"]));
    assert!(!err.contains("Recreate"), "{err}");
    D.ok(&["rm", "-f", "cmpref-db-1"]);
    let out = p.compose(&["up", "-d", "--no-deps", "app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot share volume with service db: container missing"),
        "{}",
        stderr(&out)
    );
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
    let p = Proj::new(&D, "cmplife", PAIR);
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
        &D,
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
    let p = Proj::new(&D, "cmprst", yaml);
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

#[test]
fn dry_run_prints_what_up_and_down_would_do_and_touches_nothing() {
    let p = Proj::new(
        &D,
        "cmpdry",
        r#"
services:
  web:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
"#,
    );
    let out = p.compose(&["--dry-run", "up", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for line in [
        " DRY-RUN MODE -  Network cmpdry_default  Created",
        " DRY-RUN MODE -  Container cmpdry-web-1  Created",
        " DRY-RUN MODE -  Container cmpdry-web-1  Started",
    ] {
        assert!(err.contains(line), "{line:?} missing:\n{err}");
    }
    let label = "label=com.docker.compose.project=cmpdry";
    assert_eq!(D.ok(&["ps", "-aq", "--filter", label]).trim(), "");
    assert_eq!(
        D.ok(&["network", "ls", "-q", "--filter", "name=cmpdry_default"])
            .trim(),
        ""
    );
    // down --dry-run leaves a real project running
    p.ok(&["up", "-d"]);
    let err = stderr(&p.compose(&["down", "--dry-run"]));
    assert!(
        err.contains(" DRY-RUN MODE -  Container cmpdry-web-1  Removed"),
        "{err}"
    );
    assert_eq!(D.inspect("cmpdry-web-1", "{{.State.Status}}"), "running");
}

/// Debian's dockerd (docker.io) in a private network namespace with its own data-root and
/// containerd namespace, as scripts/bench.sh starts it; everything it made goes on drop.
struct Dockerd {
    child: std::process::Child,
    dir: PathBuf,
    netns: String,
    host: String,
}

impl Dockerd {
    fn start() -> Dockerd {
        let tag = format!("barge-cmpd-{}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ip = |args: &[&str]| {
            let st = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &tag]);
        ip(&["-n", &tag, "link", "set", "lo", "up"]);
        let sock = dir.join("docker.sock");
        let d = |p: &str| dir.join(p).display().to_string();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{tag}"))
            .arg("dockerd")
            .args(["--host", &format!("unix://{}", sock.display())])
            .args(["--data-root", &d("data"), "--exec-root", &d("run")])
            .args(["--pidfile", &d("docker.pid")])
            .args(["--containerd-namespace", &tag])
            .args(["--containerd-plugins-namespace", &format!("{tag}-plugins")])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd (Debian's docker.io)");
        let me = Dockerd {
            child,
            host: format!("unix://{}", sock.display()),
            dir,
            netns: tag,
        };
        D.wait_for("dockerd's socket", 60, || me.cli(&["ps"]).status.success());
        // the same image, moved over as docker users would
        let tar = me.dir.join("busybox.tar").display().to_string();
        D.ok(&["save", "-o", &tar, "busybox:1.35"]);
        let out = me.cli(&["load", "-i", &tar]);
        assert!(out.status.success(), "{}", stderr(&out));
        me
    }

    /// barge's CLI against this dockerd.
    fn cli(&self, args: &[&str]) -> Output {
        std::process::Command::new(BARGE)
            .env("BARGE_HOST", &self.host)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Ok(out) = std::process::Command::new(BARGE)
            .env("BARGE_HOST", &self.host)
            .args(["ps", "-aq"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.cli(&["rm", "-f", id]);
            }
        }
        // SAFETY: kill(2) on the dockerd child this test started, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&*self.dir.to_string_lossy()))
            .collect();
        ours.sort_by(|a, b| b.cmp(a));
        for m in ours {
            let _ = std::process::Command::new("umount")
                .args(["-l", m])
                .status();
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The issue's side-by-side: one project through `barge compose` on barge and on Debian's
/// dockerd gives the same `ps` and the same `com.docker.compose.*` labels.
#[test]
fn same_project_on_dockerd_gives_the_same_ps_and_labels() {
    let dockerd = Dockerd::start();
    let yaml = r#"
services:
  db:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
    volumes: [data:/data]
  web:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
    depends_on: [db]
    environment: {ROLE: web}
    ports: ["127.0.0.1::80"]
volumes:
  data:
"#;
    let p = Proj::new(&D, "cmpside", yaml);
    let file = p.file();
    let compose = |on_dockerd: bool, args: &[&str]| -> String {
        let mut all = vec!["compose", "-f", &file, "-p", "cmpside"];
        all.extend_from_slice(args);
        let out = if on_dockerd {
            dockerd.cli(&all)
        } else {
            D.barge(&all)
        };
        assert!(
            out.status.success(),
            "{all:?} on dockerd={on_dockerd}: {}",
            stderr(&out)
        );
        stdout(&out)
    };
    // what must match: name, service, state, command, the published target; the labels whole
    let ps = |on_dockerd: bool| -> Vec<serde_json::Value> {
        let out = compose(on_dockerd, &["ps", "-a", "--format", "json"]);
        out.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let ports: Vec<serde_json::Value> = v["Publishers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| serde_json::json!([p["TargetPort"], p["Protocol"], p["URL"]]))
                    .collect();
                serde_json::json!({
                    "Name": v["Name"], "Service": v["Service"], "State": v["State"],
                    "Command": v["Command"], "Image": v["Image"], "Project": v["Project"],
                    "Publishers": ports,
                })
            })
            .collect()
    };
    let labels = |on_dockerd: bool, name: &str| -> serde_json::Value {
        let out = if on_dockerd {
            dockerd.cli(&["inspect", "-f", "{{json .Config.Labels}}", name])
        } else {
            D.barge(&["inspect", "-f", "{{json .Config.Labels}}", name])
        };
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    for on_dockerd in [false, true] {
        compose(on_dockerd, &["up", "-d"]);
    }
    assert_eq!(ps(false), ps(true));
    assert_eq!(ps(false).len(), 2, "{:?}", ps(false));
    for name in ["cmpside-db-1", "cmpside-web-1"] {
        assert_eq!(labels(false, name), labels(true, name), "{name}");
    }
    // a second up touches nothing on either engine
    for on_dockerd in [false, true] {
        let args = ["compose", "-f", &file, "-p", "cmpside", "up", "-d"];
        let out = if on_dockerd {
            dockerd.cli(&args)
        } else {
            D.barge(&args)
        };
        let err = stderr(&out);
        assert!(
            !err.contains("Recreate") && !err.contains("Created"),
            "{err}"
        );
    }
    compose(true, &["down", "-v"]);
}

#[test]
fn watch_syncs_written_files_into_the_running_container() {
    let p = Proj::new(
        &D,
        "cmpwatch",
        r#"
services:
  app:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
    develop:
      watch:
        - path: ./src
          action: sync
          target: /app
          ignore: ["*.tmp"]
"#,
    );
    std::fs::create_dir_all(p.dir.join("src")).unwrap();
    let log = p.dir.join("watch.log");
    let file = p.file();
    let mut child = std::process::Command::new(BARGE)
        .env("BARGE_HOST", &D.host)
        .args(["compose", "-f", &file, "-p", "cmpwatch", "watch"])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(p.dir.join("watch.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    D.wait_for("watch to start", 60, || {
        read_log().contains("Watch enabled")
    });
    std::fs::write(p.dir.join("src/skip.tmp"), "no").unwrap();
    std::fs::write(p.dir.join("src/hello.txt"), "hi\n").unwrap();
    D.wait_for("the file synced", 20, || {
        D.barge(&["exec", "cmpwatch-app-1", "cat", "/app/hello.txt"])
            .stdout
            == b"hi\n"
    });
    let ls = D.ok(&["exec", "cmpwatch-app-1", "ls", "/app"]);
    assert_eq!(
        ls.trim(),
        "hello.txt",
        "ignored file synced: {}",
        read_log()
    );
    assert!(
        read_log().contains("Syncing service \"app\" after 1 changes were detected"),
        "{}",
        read_log()
    );
    // (a deleted file is removed with `rm -rf` by exec, as compose does: busybox:1.35 has no
    // rm applet, so that is not exercised here)
    // SAFETY: kill(2) on the watch process this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success(), "{}", read_log());
}
