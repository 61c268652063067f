//! End-to-end: `barge compose` in development loops — `watch` (initial sync, ignores from the
//! rule and the build context's `.dockerignore`, `sync+restart`, `rebuild`), `--dry-run` of
//! `up --build` and `cp` (compose's output, nothing made), and a failed `up` that puts a
//! recreated project back as it was.

mod common;

use std::sync::LazyLock;

use common::compose::Proj;
use common::*;

static D: LazyLock<Daemon> = LazyLock::new(|| {
    let d = Daemon::start();
    d.load_layout();
    d
});

/// The project's containers, `ps -aq --no-trunc`, sorted.
fn project_ids(project: &str) -> Vec<String> {
    let label = format!("label=com.docker.compose.project={project}");
    let mut ids: Vec<String> = D
        .ok(&["ps", "-aq", "--no-trunc", "--filter", &label])
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}

#[test]
fn failed_recreate_puts_the_replaced_containers_back() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let yaml = |ports: &str| {
        format!(
            r#"
services:
  web:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
  late:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
    depends_on: [web]
{ports}"#
        )
    };
    let p = Proj::new(&D, "cmpundo", &yaml(""));
    p.ok(&["up", "-d"]);
    let (web, late) = (p.id("cmpundo-web-1"), p.id("cmpundo-late-1"));
    // --force-recreate: web is recreated and its successor starts; late's successor cannot
    // (its port is taken), so both replaced containers come back, running, under their names
    let conflict = format!("    ports: [\"127.0.0.1:{port}:80\"]\n");
    p.write(&yaml(&conflict));
    let out = p.compose(&["up", "-d", "--force-recreate"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("address already in use"), "{err}");
    assert!(err.contains(" Container cmpundo-web-1  Recreated"), "{err}");
    let mut before = vec![web.clone(), late.clone()];
    before.sort();
    assert_eq!(project_ids("cmpundo"), before, "{err}");
    for (name, id) in [("cmpundo-web-1", &web), ("cmpundo-late-1", &late)] {
        assert_eq!(&p.id(name), id, "{err}");
        assert_eq!(D.inspect(name, "{{.State.Status}}"), "running", "{err}");
    }
    // a config change (not forced) fails the same way and changes nothing either
    let out = p.compose(&["up", "-d"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(project_ids("cmpundo"), before, "{}", stderr(&out));
    assert_eq!(D.inspect("cmpundo-late-1", "{{.State.Status}}"), "running");
    // once the port is free the same `up` replaces late, and the old one is gone
    drop(listener);
    p.ok(&["up", "-d"]);
    let ids = project_ids("cmpundo");
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&web) && !ids.contains(&late), "{ids:?}");
}

#[test]
fn dry_run_up_build_and_cp_make_nothing() {
    let p = Proj::new(
        &D,
        "cmpdrybuild",
        r#"
services:
  app:
    build: ./app
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
"#,
    );
    std::fs::create_dir_all(p.dir.join("app")).unwrap();
    std::fs::write(p.dir.join("app/Dockerfile"), "FROM busybox:1.35\n").unwrap();
    // compose's dryRunBuildResponse lines, then the container it would create and start
    let out = p.compose(&["--dry-run", "up", "-d", "--build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for line in [
        " DRY-RUN MODE -    build service app \n",
        " DRY-RUN MODE -  ==> ==> writing image dryRun-",
        " DRY-RUN MODE -  ==> ==> naming to cmpdrybuild-app \n",
        " DRY-RUN MODE -  Container cmpdrybuild-app-1  Created",
        " DRY-RUN MODE -  Container cmpdrybuild-app-1  Started",
    ] {
        assert!(err.contains(line), "{line:?} missing:\n{err}");
    }
    // the ID is `dryRun-` and the SHA-1 of the service name
    let id_line = err.lines().find(|l| l.contains("writing image")).unwrap();
    let hex = id_line.trim_end().rsplit('-').next().unwrap();
    assert!(
        hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{id_line}"
    );
    let inspect = D.barge(&["image", "inspect", "cmpdrybuild-app"]);
    assert!(!inspect.status.success(), "the dry run built the image");
    assert!(project_ids("cmpdrybuild").is_empty());
    // a missing image with a build section is "built" by a dry `up` without --build too
    let err = stderr(&p.compose(&["--dry-run", "up", "-d"]));
    assert!(err.contains("build service app"), "{err}");

    let q = Proj::new(
        &D,
        "cmpdrycp",
        r#"
services:
  web:
    image: busybox:1.35
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
"#,
    );
    q.ok(&["up", "-d"]);
    let local = q.dir.join("note.txt");
    std::fs::write(&local, "note\n").unwrap();
    let local = local.display().to_string();
    let out = q.compose(&["--dry-run", "cp", &local, "web:/note.txt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let line =
        format!(" DRY-RUN MODE -  cmpdrycp-web-1 copy {local} to cmpdrycp-web-1:/note.txt Copied");
    assert!(err.contains(&line), "{line:?} missing:\n{err}");
    let exists = D.barge(&["exec", "cmpdrycp-web-1", "test", "-e", "/note.txt"]);
    assert!(
        !exists.status.success(),
        "the dry run copied into the container"
    );
    let back = q.dir.join("back.txt").display().to_string();
    let out = q.compose(&["--dry-run", "cp", "web:/etc/hostname", &back]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            " DRY-RUN MODE -  cmpdrycp-web-1 copy cmpdrycp-web-1:/etc/hostname to {back} Copied"
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        !std::path::Path::new(&back).exists(),
        "the dry run wrote {back}"
    );
    // what a real copy would fail on still fails
    let out = q.compose(&["--dry-run", "cp", "web:/no/such", &back]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("could not find the file /no/such in container"),
        "{}",
        stderr(&out)
    );
    let missing = q.dir.join("missing.txt").display().to_string();
    let out = q.compose(&["--dry-run", "cp", &missing, "web:/tmp/"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("lstat {missing}: no such file or directory")),
        "{}",
        stderr(&out)
    );
    // and a real copy still copies
    q.ok(&["cp", &local, "web:/note.txt"]);
    assert_eq!(
        D.ok(&["exec", "cmpdrycp-web-1", "cat", "/note.txt"]),
        "note\n"
    );
}

#[test]
fn watch_initial_sync_ignores_restart_and_rebuild() {
    let p = Proj::new(
        &D,
        "cmpdev",
        r#"
services:
  app:
    build: ./app
    command: ["sleep", "1000"]
    init: true
    stop_grace_period: 1s
    develop:
      watch:
        - path: ./app/src
          action: sync
          target: /srv
          ignore: ["*.tmp"]
          initial_sync: true
        - path: ./app/conf
          action: sync+restart
          target: /etc/app
        - path: ./app/version.txt
          action: rebuild
"#,
    );
    let app = p.dir.join("app");
    std::fs::create_dir_all(app.join("src")).unwrap();
    std::fs::create_dir_all(app.join("conf")).unwrap();
    std::fs::write(
        app.join("Dockerfile"),
        "FROM busybox:1.35\nCOPY version.txt /version.txt\n",
    )
    .unwrap();
    std::fs::write(app.join(".dockerignore"), "src/private.txt\n").unwrap();
    std::fs::write(app.join("version.txt"), "1\n").unwrap();
    for (f, text) in [
        ("a.txt", "a\n"),
        ("skip.tmp", "t\n"),
        ("private.txt", "p\n"),
    ] {
        std::fs::write(app.join("src").join(f), text).unwrap();
    }
    let log = p.dir.join("watch.log");
    let file = p.file();
    let mut child = std::process::Command::new(BARGE)
        .env("BARGE_HOST", &D.host)
        .args([
            "compose",
            "-f",
            &file,
            "-p",
            "cmpdev",
            "watch",
            "--prune=false",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(p.dir.join("watch.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    D.wait_for("watch to start", 120, || {
        read_log().contains("Watch enabled")
    });
    let ls = |dir: &str| {
        let out = D.barge(&["exec", "cmpdev-app-1", "ls", dir]);
        stdout(&out)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // initial_sync copied what neither the rule's ignore nor .dockerignore excludes
    assert_eq!(ls("/srv"), vec!["a.txt"], "{}", read_log());

    std::fs::write(app.join("src/b.txt"), "b\n").unwrap();
    std::fs::write(app.join("src/c.tmp"), "c\n").unwrap();
    std::fs::write(app.join("src/private.txt"), "changed\n").unwrap();
    D.wait_for("b.txt synced", 30, || {
        ls("/srv").contains(&"b.txt".to_string())
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(ls("/srv"), vec!["a.txt", "b.txt"], "{}", read_log());

    // sync+restart: the file lands, then the container restarts
    let started = D.inspect("cmpdev-app-1", "{{.State.StartedAt}}");
    std::fs::write(app.join("conf/app.conf"), "x=1\n").unwrap();
    D.wait_for("the restart", 30, || {
        D.inspect("cmpdev-app-1", "{{.State.StartedAt}}") != started
    });
    assert_eq!(
        D.ok(&["exec", "cmpdev-app-1", "cat", "/etc/app/app.conf"]),
        "x=1\n"
    );
    assert!(
        read_log().contains("service(s) [\"app\"] restarted"),
        "{}",
        read_log()
    );

    // rebuild: a new image, the container recreated from it
    let before = p.id("cmpdev-app-1");
    std::fs::write(app.join("version.txt"), "2\n").unwrap();
    D.wait_for("the rebuild", 120, || {
        D.barge(&["exec", "cmpdev-app-1", "cat", "/version.txt"])
            .stdout
            == b"2\n"
    });
    assert_ne!(p.id("cmpdev-app-1"), before);
    let log_text = read_log();
    assert!(
        log_text.contains("Rebuilding service(s) [\"app\"] after changes were detected..."),
        "{log_text}"
    );
    assert!(
        log_text.contains("service(s) [\"app\"] successfully built"),
        "{log_text}"
    );
    // SAFETY: kill(2) on the watch process this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success(), "{}", read_log());
}
