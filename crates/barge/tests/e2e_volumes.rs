//! End-to-end: volumes and mounts — named and anonymous volumes, copy-up of image content,
//! bind mounts (read-only, created sources), tmpfs, `--volumes-from`, `rm -v`, `volume rm` of a
//! volume in use, option-mounted (tmpfs) volumes, daemon restarts; through the barge CLI, the
//! stock docker CLI and docker-py.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::LazyLock;

use common::*;

static D: LazyLock<Daemon> = LazyLock::new(|| {
    let d = Daemon::start();
    d.load_layout();
    d
});

const BB: &str = "busybox:1.35";

fn host_mounts() -> String {
    std::fs::read_to_string("/proc/self/mounts").unwrap()
}

#[test]
fn named_volume_is_shared_by_successive_containers() {
    assert_eq!(
        D.ok(&["volume", "create", "--label", "app=db", "data1"])
            .trim(),
        "data1"
    );
    D.ok(&[
        "run",
        "--rm",
        "-v",
        "data1:/data",
        BB,
        "sh",
        "-c",
        "echo hello > /data/f",
    ]);
    let out = D.ok(&["run", "--rm", "-v", "data1:/data:ro", BB, "cat", "/data/f"]);
    assert_eq!(out, "hello\n");
    // Read-only really is.
    let o = D.barge(&[
        "run",
        "--rm",
        "-v",
        "data1:/data:ro",
        BB,
        "sh",
        "-c",
        "echo x > /data/g",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    // The data is on the host at the volume's mountpoint.
    let mp = D.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "data1"]);
    assert_eq!(
        std::fs::read_to_string(Path::new(mp.trim()).join("f")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        D.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Driver}} {{.Scope}} {{.Labels.app}}",
            "data1"
        ])
        .trim(),
        "local local db"
    );
    // Creating again is idempotent.
    assert_eq!(D.ok(&["volume", "create", "data1"]).trim(), "data1");

    // The same with the stock docker CLI, and `-v` creating the volume on the fly.
    D.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "dvol:/d",
        BB,
        "sh",
        "-c",
        "echo from-docker > /d/f",
    ]);
    assert_eq!(
        D.docker_ok(&["run", "--rm", "-v", "dvol:/d", BB, "cat", "/d/f"]),
        "from-docker\n"
    );
    let ls = D.docker_ok(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]);
    assert!(ls.lines().any(|l| l == "local dvol"), "{ls}");
    let insp = D.docker_ok(&["volume", "inspect", "dvol"]);
    assert!(insp.contains("\"Mountpoint\""), "{insp}");
    // Inspect of a container shows the mount.
    let id = D
        .ok(&["create", "-v", "dvol:/d:ro", BB, "true"])
        .trim()
        .to_string();
    assert_eq!(
        D.inspect(&id, "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.Driver}} {{.RW}} {{.Mode}}{{end}}"),
        "volume dvol /d local false ro"
    );
    assert_eq!(
        D.inspect(&id, "{{json .HostConfig.Binds}}"),
        r#"["dvol:/d:ro"]"#
    );
    let ps = D.ok(&["ps", "-aq", "--no-trunc", "--filter", "volume=dvol"]);
    assert!(ps.contains(&id), "{ps}");
    D.ok(&["rm", &id]);
    // Bad names get docker's message.
    let o = D.barge(&["volume", "create", "a/b"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("includes invalid characters for a local volume name"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn copy_up_fills_new_volumes_with_image_content() {
    let list = "import os; print(sorted(os.listdir('/app')))";
    let out = D.ok(&[
        "run",
        "--rm",
        "-v",
        "appvol:/app",
        "--entrypoint",
        "python3",
        "multilayer:1",
        "-c",
        list,
    ]);
    assert_eq!(out.trim(), "['app.py', 'model.json']");
    // Ownership and content came along.
    let mp = D.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "appvol"]);
    let app = Path::new(mp.trim()).join("app.py");
    assert_eq!(std::fs::metadata(&app).unwrap().uid(), 1234);
    assert!(std::fs::read_to_string(&app).unwrap().contains("8080"));
    // Only the first time: what the volume holds now wins.
    std::fs::remove_file(&app).unwrap();
    let out = D.ok(&[
        "run",
        "--rm",
        "-v",
        "appvol:/app",
        "--entrypoint",
        "python3",
        "multilayer:1",
        "-c",
        list,
    ]);
    assert_eq!(out.trim(), "['model.json']");
    // nocopy: stays empty.
    let out = D.ok(&[
        "run",
        "--rm",
        "-v",
        "emptyvol:/app:nocopy",
        "--entrypoint",
        "python3",
        "multilayer:1",
        "-c",
        list,
    ]);
    assert_eq!(out.trim(), "[]");
    // --mount type=volume copies too; volume-subpath mounts part of a volume.
    let out = D.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=fixvol,dst=/fixture",
        "--entrypoint",
        "ls",
        "multilayer:1",
        "/fixture/dir",
    ]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        vec!["file", "rel-link"]
    );
    let out = D.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=fixvol,dst=/sub,volume-subpath=dir,readonly",
        BB,
        "cat",
        "/sub/file",
    ]);
    assert_eq!(out, "data\n");
    let o = D.barge(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=fixvol,dst=/sub,volume-subpath=nope",
        BB,
        "true",
    ]);
    assert_ne!(o.status.code(), Some(0));
}

#[test]
fn image_volumes_are_anonymous_and_rm_v_removes_them() {
    let ctx = D.dir.join("volctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:1.35\nRUN busybox mkdir /vol && echo seed > /vol/seed\nVOLUME /vol\n",
    )
    .unwrap();
    D.ok(&["build", "-q", "-t", "withvol:1", ctx.to_str().unwrap()]);
    let id = D
        .ok(&[
            "create",
            "--name",
            "anonc",
            "-v",
            "/extra",
            "withvol:1",
            "cat",
            "/vol/seed",
        ])
        .trim()
        .to_string();
    let names = D.inspect(&id, "{{range .Mounts}}{{.Destination}}={{.Name}} {{end}}");
    let vols: Vec<(String, String)> = names
        .split_whitespace()
        .map(|p| {
            let (d, n) = p.split_once('=').unwrap();
            (d.to_string(), n.to_string())
        })
        .collect();
    assert_eq!(vols.len(), 2, "{names}");
    assert!(vols.iter().all(|(_, n)| n.len() == 64), "{names}");
    assert_eq!(
        D.inspect(&id, "{{json .Config.Volumes}}"),
        r#"{"/extra":{},"/vol":{}}"#
    );
    D.ok(&["start", "-a", "anonc"]);
    assert_eq!(D.ok(&["logs", "anonc"]), "seed\n");
    let label = D.ok(&["volume", "inspect", "-f", "{{json .Labels}}", &vols[0].1]);
    assert!(label.contains("com.docker.volume.anonymous"), "{label}");
    // In use: refused, even with -f.
    let o = D.barge(&["volume", "rm", "-f", &vols[0].1]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    D.ok(&["rm", "-v", "anonc"]);
    let ls = D.ok(&["volume", "ls", "-q"]);
    for (_, n) in &vols {
        assert!(!ls.contains(n.as_str()), "{n} still listed:\n{ls}");
    }
    // Without -v they stay until a prune (which only takes anonymous ones by default).
    D.ok(&["volume", "create", "keepme"]);
    let id = D.ok(&["create", "withvol:1", "true"]).trim().to_string();
    let n = D.inspect(&id, "{{range .Mounts}}{{.Name}}{{end}}");
    D.ok(&["rm", &id]);
    assert!(D
        .ok(&["volume", "ls", "-q", "--filter", "dangling=true"])
        .contains(&n));
    let out = D.ok(&["volume", "prune", "-f"]);
    assert!(out.contains(&n), "{out}");
    assert!(!out.contains("keepme"), "{out}");
    assert!(D.ok(&["volume", "ls", "-q"]).contains("keepme"));
    // `--rm` removes anonymous volumes too.
    let id = D
        .ok(&["run", "-d", "--rm", "-v", "/scratch", BB, "sleep", "2"])
        .trim()
        .to_string();
    let n = D.inspect(&id, "{{range .Mounts}}{{.Name}}{{end}}");
    assert!(D.ok(&["volume", "ls", "-q"]).contains(&n));
    D.wait_for("--rm container removal", 20, || {
        !D.ok(&["ps", "-aq", "--no-trunc"]).contains(&id)
    });
    D.wait_for("--rm volume removal", 5, || {
        !D.ok(&["volume", "ls", "-q"]).contains(&n)
    });
}

#[test]
fn bind_mounts_tmpfs_and_volumes_from() {
    let host = D.dir.join("bindsrc");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "hostdata\n").unwrap();
    let h = host.to_str().unwrap();
    // :ro is read-only; rw writes reach the host.
    let o = D.barge(&[
        "run",
        "--rm",
        "-v",
        &format!("{h}:/m:ro"),
        BB,
        "sh",
        "-c",
        "cat /m/f; echo x > /m/g",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "hostdata\n");
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(!host.join("g").exists());
    D.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{h}:/m"),
        BB,
        "sh",
        "-c",
        "echo w > /m/g",
    ]);
    assert_eq!(std::fs::read_to_string(host.join("g")).unwrap(), "w\n");
    D.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,src={h},dst=/m,readonly"),
        BB,
        "cat",
        "/m/f",
    ]);
    let o = D.barge(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,src={h},dst=/m,readonly"),
        BB,
        "sh",
        "-c",
        "echo > /m/h",
    ]);
    assert_ne!(o.status.code(), Some(0));
    // -v creates a missing host directory; --mount refuses it.
    let made = D.dir.join("made/by/v");
    D.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/x", made.display()),
        BB,
        "true",
    ]);
    assert!(made.is_dir());
    let o = D.barge(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/nonexistent-barge-src,dst=/x",
        BB,
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("bind source path does not exist: /nonexistent-barge-src"),
        "{}",
        stderr(&o)
    );
    let o = D.barge(&["run", "--rm", "-v", "/a:/x", "-v", "/b:/x", BB, "true"]);
    assert!(
        stderr(&o).contains("Duplicate mount point: /x"),
        "{}",
        stderr(&o)
    );
    // Inspect echoes what was asked.
    let id = D
        .ok(&["create", "-v", &format!("{h}:/m:ro,rslave"), BB, "true"])
        .trim()
        .to_string();
    assert_eq!(
        D.inspect(&id, "{{range .Mounts}}{{.Type}} {{.Source}} {{.Destination}} {{.RW}} {{.Propagation}}{{end}}"),
        format!("bind {h} /m false rslave")
    );
    D.ok(&["rm", &id]);

    // tmpfs: --tmpfs and --mount type=tmpfs.
    let out = D.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/scratch:size=1m,mode=1770",
        "--mount",
        "type=tmpfs,dst=/t2,tmpfs-size=2m",
        BB,
        "cat",
        "/proc/mounts",
    ]);
    let line = out
        .lines()
        .find(|l| l.contains(" /scratch "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.starts_with("tmpfs /scratch tmpfs")
            && line.contains("size=1024k")
            && line.contains("mode=1770"),
        "{line}"
    );
    let line = out
        .lines()
        .find(|l| l.contains(" /t2 "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.starts_with("tmpfs /t2 tmpfs") && line.contains("size=2048k"),
        "{line}"
    );

    // --volumes-from: the same volumes (and binds), optionally read-only.
    D.ok(&[
        "create",
        "--name",
        "vsrc",
        "-v",
        "sharedvol:/shared",
        "-v",
        &format!("{h}:/hostdir"),
        BB,
        "true",
    ]);
    D.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "vsrc",
        BB,
        "sh",
        "-c",
        "echo via-from > /shared/x; cat /hostdir/f",
    ]);
    assert_eq!(
        D.ok(&["run", "--rm", "-v", "sharedvol:/s", BB, "cat", "/s/x"]),
        "via-from\n"
    );
    let o = D.barge(&[
        "run",
        "--rm",
        "--volumes-from",
        "vsrc:ro",
        BB,
        "sh",
        "-c",
        "echo y > /shared/x",
    ]);
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    let o = D.barge(&[
        "run",
        "--rm",
        "--volumes-from",
        "nope-container",
        BB,
        "true",
    ]);
    assert!(
        stderr(&o).contains("No such container: nope-container"),
        "{}",
        stderr(&o)
    );
    D.ok(&["rm", "vsrc"]);
    D.ok(&["volume", "rm", "sharedvol"]);
}

#[test]
fn tmpfs_volume_is_mounted_only_while_used() {
    D.ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=2m",
        "tv",
    ]);
    let mp = D
        .ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "tv"])
        .trim()
        .to_string();
    assert_eq!(
        D.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Options.type}} {{.Options.o}}",
            "tv"
        ])
        .trim(),
        "tmpfs size=2m"
    );
    D.ok(&[
        "run", "-d", "--name", "tvuser", "-v", "tv:/t", BB, "sleep", "60",
    ]);
    let out = D.ok(&["exec", "tvuser", "cat", "/proc/mounts"]);
    let line = out
        .lines()
        .find(|l| l.contains(" /t "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.starts_with("tmpfs /t tmpfs") && line.contains("size=2048k"),
        "{line}"
    );
    assert!(host_mounts().contains(&format!(" {mp} ")));
    D.ok(&["rm", "-f", "tvuser"]);
    assert!(
        !host_mounts().contains(&format!(" {mp} ")),
        "still mounted after the last user"
    );
    D.ok(&["volume", "rm", "tv"]);
    let o = D.barge(&["volume", "create", "-o", "type=tmpfs", "bad"]);
    assert!(
        stderr(&o).contains("missing required option: \"device\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn volume_ls_filters_and_prune_all() {
    D.ok(&["volume", "create", "--label", "tier=x", "flt-a"]);
    D.ok(&["volume", "create", "flt-b"]);
    let q = |f: &str| D.ok(&["volume", "ls", "-q", "--filter", f]);
    assert_eq!(q("label=tier=x").trim(), "flt-a");
    let names = q("name=flt-");
    assert!(
        names.contains("flt-a") && names.contains("flt-b"),
        "{names}"
    );
    let o = D.barge(&["volume", "ls", "--filter", "color=red"]);
    assert!(
        stderr(&o).contains("invalid filter 'color'"),
        "{}",
        stderr(&o)
    );
    let table = D.ok(&["volume", "ls", "--filter", "name=flt-a"]);
    assert_eq!(table, "DRIVER    VOLUME NAME\nlocal     flt-a\n");
    let out = D.ok(&["volume", "prune", "-f", "--all", "--filter", "label=tier=x"]);
    assert!(out.contains("flt-a") && !out.contains("flt-b"), "{out}");
    D.ok(&["volume", "rm", "flt-b"]);
    let o = D.barge(&["volume", "inspect", "flt-b"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn volumes_survive_daemon_restart() {
    let mut d = Daemon::start();
    d.load_layout();
    d.ok(&["volume", "create", "--label", "keep=1", "durable"]);
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "durable:/d",
        BB,
        "sh",
        "-c",
        "echo persisted > /d/f",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "-v",
        "durable:/d",
        BB,
        "sleep",
        "60",
    ]);
    d.restart();
    assert_eq!(
        d.ok(&["volume", "inspect", "-f", "{{.Labels.keep}}", "durable"])
            .trim(),
        "1"
    );
    assert_eq!(d.ok(&["exec", "holder", "cat", "/d/f"]), "persisted\n");
    // References came back with the container records.
    let o = d.barge(&["volume", "rm", "durable"]);
    assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    d.ok(&["rm", "-f", "holder"]);
    assert_eq!(
        d.ok(&["run", "--rm", "-v", "durable:/d", BB, "cat", "/d/f"]),
        "persisted\n"
    );
    d.ok(&["volume", "rm", "durable"]);
    assert!(d.ok(&["volume", "ls", "-q"]).trim().is_empty());
}

#[test]
fn docker_py_drives_volumes() {
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url=sys.argv[1])
v = c.volumes.create('pyvol', labels={'by': 'py'})
out = c.containers.run('busybox:1.35', ['sh', '-c', 'echo py > /v/f; cat /v/f'],
                       volumes={'pyvol': {'bind': '/v', 'mode': 'rw'}}, remove=True)
print(out.decode().strip(), c.volumes.get('pyvol').attrs['Labels']['by'],
      'pyvol' in [x.name for x in c.volumes.list()])
u = [x for x in c.df()['Volumes'] if x['Name'] == 'pyvol'][0]['UsageData']
print(u['Size'], u['RefCount'])
v.remove()
print('pyvol' in [x.name for x in c.volumes.list()])
"#;
    let out = std::process::Command::new(&*common::PYTHON)
        .args(["-c", script, &D.host])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "py py True\n3 0\nFalse\n");
}
