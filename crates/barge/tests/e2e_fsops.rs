//! End-to-end: container file systems and housekeeping — `cp` both ways (files, directories,
//! `-` tars, stopped containers, hostile symlinks), `diff`, `export`, `commit`, `attach`,
//! `container prune`, `system df` and `system prune`, with the barge CLI and the stock docker CLI.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::LazyLock;

use common::*;

static D: LazyLock<Daemon> = LazyLock::new(|| {
    let d = Daemon::start();
    d.load_layout();
    d
});

const BB: &str = "busybox:1.35";

/// A scratch directory on the host, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = D.dir.join(format!("scratch-{tag}"));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
    fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tar_list(data: &[u8]) -> Vec<String> {
    let mut child = Command::new("tar")
        .arg("t")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(data).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    stdout(&out).lines().map(str::to_string).collect()
}

fn make_src(s: &Scratch) {
    std::fs::write(s.path("a.txt"), "hello\n").unwrap();
    std::fs::create_dir_all(s.path("dir/sub")).unwrap();
    std::fs::write(s.path("dir/x"), "x\n").unwrap();
    std::fs::write(s.path("dir/sub/y"), "y\n").unwrap();
}

fn mounted(path_part: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(path_part))
}

#[test]
fn cp_both_ways_with_barge() {
    let s = Scratch::new("cp-barge");
    make_src(&s);
    D.ok(&["run", "-d", "--name", "cpbox", BB, "sleep", "1000"]);
    // Into a running container: a file into a directory, a directory to a new name and
    // into an existing directory.
    D.ok(&["cp", &s.s("a.txt"), "cpbox:/"]);
    assert_eq!(D.ok(&["exec", "cpbox", "cat", "/a.txt"]), "hello\n");
    D.ok(&["cp", &s.s("a.txt"), "cpbox:/renamed.txt"]);
    assert_eq!(D.ok(&["exec", "cpbox", "cat", "/renamed.txt"]), "hello\n");
    D.ok(&["cp", &s.s("dir"), "cpbox:/newdir"]);
    assert_eq!(D.ok(&["exec", "cpbox", "cat", "/newdir/sub/y"]), "y\n");
    D.ok(&["cp", &s.s("dir"), "cpbox:/newdir"]);
    assert_eq!(D.ok(&["exec", "cpbox", "cat", "/newdir/dir/x"]), "x\n");
    // Errors as docker: missing source path, missing parent.
    let out = D.barge(&["cp", "cpbox:/nonexistent", &s.s("out")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("No such container:path: cpbox:/nonexistent"),
        "{}",
        stderr(&out)
    );
    let out = D.barge(&["cp", &s.s("a.txt"), "cpbox:/no/such/dir/f"]);
    assert_ne!(out.status.code(), Some(0));

    // Out of the container: a file, a directory to a new name, a directory's contents.
    D.ok(&["cp", "cpbox:/a.txt", &s.s("out.txt")]);
    assert_eq!(
        std::fs::read_to_string(s.path("out.txt")).unwrap(),
        "hello\n"
    );
    D.ok(&["cp", "cpbox:/newdir", &s.s("nd")]);
    assert_eq!(std::fs::read_to_string(s.path("nd/sub/y")).unwrap(), "y\n");
    assert_eq!(std::fs::read_to_string(s.path("nd/dir/x")).unwrap(), "x\n");
    std::fs::create_dir_all(s.path("existing")).unwrap();
    D.ok(&["cp", "cpbox:/newdir", &s.s("existing")]);
    assert!(s.path("existing/newdir/x").is_file());
    std::fs::create_dir_all(s.path("contents")).unwrap();
    D.ok(&["cp", "cpbox:/newdir/.", &s.s("contents")]);
    assert!(s.path("contents/x").is_file() && s.path("contents/sub/y").is_file());

    // `-`: a tar on stdout, and a tar from stdin.
    let out = D.barge(&["cp", "cpbox:/newdir", "-"]);
    assert!(out.status.success());
    let names = tar_list(&out.stdout);
    assert!(names.contains(&"newdir/sub/y".to_string()), "{names:?}");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "fromtar.txt", &b"tar\n"[..]).unwrap();
    let data = b.into_inner().unwrap();
    let out = D.barge_stdin(&["cp", "-", "cpbox:/newdir"], &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        D.ok(&["exec", "cpbox", "cat", "/newdir/fromtar.txt"]),
        "tar\n"
    );

    // A hostile symlink in the container cannot send a copy to the host.
    let target = s.path("victim");
    std::fs::create_dir_all(&target).unwrap();
    D.ok(&[
        "exec",
        "cpbox",
        "busybox",
        "ln",
        "-s",
        &format!("/../../../..{}", target.display()),
        "/escape",
    ]);
    let out = D.barge(&["cp", &s.s("a.txt"), "cpbox:/escape/a.txt"]);
    assert!(!target.join("a.txt").exists(), "{}", stderr(&out));
    D.ok(&["rm", "-f", "cpbox"]);
}

/// A tar of `(name, symlink target or "", data)` entries: a symlink where a target is given,
/// else a regular file.
fn link_tar(entries: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        if link.is_empty() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, link).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// `docker cp` into a container through symlinks that point at `/` (the container's, which a
/// naive host-side join would take for the host's): the file lands in the container's root, in
/// a running container (writes resolved by the kernel under `/proc/<pid>/root`) and a stopped
/// one (its overlay mounted for the copy), whether the link was in the container or came in the
/// archive. The host paths named are unique and checked (and removed, should one appear).
#[test]
fn cp_through_symlinks_to_root_stays_in_the_container() {
    let s = Scratch::new("cp-escape");
    let name = format!("barge-e2e-escape-{}", std::process::id());
    std::fs::write(s.path("f.txt"), "inside\n").unwrap();
    let on_host = |n: &str| {
        let p = PathBuf::from(format!("/tmp/{n}"));
        let there = p.exists();
        let _ = std::fs::remove_file(&p);
        there
    };
    for running in [true, false] {
        let c = if running { "cpesc" } else { "cpescstopped" };
        if running {
            D.ok(&["run", "-d", "--name", c, BB, "sleep", "1000"]);
            D.ok(&["exec", c, "busybox", "ln", "-s", "/", "/escape"]);
            D.ok(&["exec", c, "busybox", "mkdir", "-p", "/tmp"]);
        } else {
            D.ok(&["create", "--name", c, BB, "true"]);
            let t = link_tar(&[("escape", "/", b""), ("tmp/.keep", "", b"")]);
            let out = D.barge_stdin(&["cp", "-", &format!("{c}:/")], &t);
            assert!(out.status.success(), "{}", stderr(&out));
        }
        // Through the container's link, to a path below it.
        let n1 = format!("{name}-1");
        D.ok(&["cp", &s.s("f.txt"), &format!("{c}:/escape/tmp/{n1}")]);
        // Through links that come in the archive: one to `/`, one to `/tmp`.
        let n2 = format!("{name}-2");
        let n3 = format!("{name}-3");
        let t = link_tar(&[
            ("root", "/", b""),
            (&format!("root/tmp/{n2}"), "", b"inside\n"),
            ("tmp2", "/tmp", b""),
            (&format!("tmp2/{n3}"), "", b"inside\n"),
        ]);
        let out = D.barge_stdin(&["cp", "-", &format!("{c}:/escape/tmp")], &t);
        assert!(out.status.success(), "{}", stderr(&out));
        for n in [&n1, &n2, &n3] {
            assert!(!on_host(n), "{c}: /tmp/{n} was written on the host");
            D.ok(&["cp", &format!("{c}:/tmp/{n}"), &s.s(n)]);
            assert_eq!(std::fs::read_to_string(s.path(n)).unwrap(), "inside\n");
        }
        D.ok(&["rm", "-f", c]);
    }
}

/// A running container's `/race` swapped between a directory and a symlink to `/tmp` (by a
/// host thread, through `/proc/<pid>/root`, with `renameat2(RENAME_EXCHANGE)` as fast as it
/// goes, as a process in the container could) while archives with `race/<name>` entries are put
/// into it: a write resolved in user space and then opened by path follows `/tmp` on the *host*
/// when the swap lands in between; resolved by the kernel in the container's root, it lands in
/// the container (or fails). Bounded: 300 puts.
#[test]
fn cp_racing_a_symlink_swap_stays_in_the_container() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let name = format!("barge-e2e-race-{}", std::process::id());
    D.ok(&["run", "-d", "--name", "cprace", BB, "sleep", "1000"]);
    let pid = D.inspect("cprace", "{{.State.Pid}}");
    let root = PathBuf::from(format!("/proc/{}/root", pid.trim()));
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::create_dir(root.join("race")).unwrap();
    std::os::unix::fs::symlink("/tmp", root.join("race.lnk")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let (a, b) = (root.join("race"), root.join("race.lnk"));
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &a,
                    nix::fcntl::AT_FDCWD,
                    &b,
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let script = format!(
        r#"
import docker, io, tarfile
c = docker.DockerClient(base_url="{host}").containers.get("cprace")
ok = 0
for i in range(300):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"inside\n"
        ti = tarfile.TarInfo("race/{name}-%d" % i)
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    try:
        ok += bool(c.put_archive("/", buf.getvalue()))
    except docker.errors.APIError:
        pass
print(ok)
"#,
        host = D.host,
    );
    let out = python(&script);
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    let leaked: Vec<String> = std::fs::read_dir("/tmp")
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.starts_with(&name).then_some(n)
        })
        .collect();
    for n in &leaked {
        let _ = std::fs::remove_file(format!("/tmp/{n}"));
    }
    D.ok(&["rm", "-f", "cprace"]);
    assert!(leaked.is_empty(), "written on the host: {leaked:?}");
    let ok: usize = out.trim().parse().unwrap();
    assert!(ok > 0 && swaps > 1000, "{ok} puts succeeded, {swaps} swaps");
}

#[test]
fn cp_into_and_out_of_a_stopped_container() {
    let s = Scratch::new("cp-stopped");
    make_src(&s);
    let id = D
        .ok(&["create", "--name", "cpstopped", BB, "cat", "/in.txt"])
        .trim()
        .to_string();
    D.ok(&["cp", &s.s("a.txt"), "cpstopped:/in.txt"]);
    // The root was mounted for the copy only.
    assert!(!mounted(&format!("{id}/rootfs")));
    assert_eq!(D.ok(&["start", "-a", "cpstopped"]), "hello\n");
    D.ok(&["wait", "cpstopped"]);
    D.ok(&["cp", "cpstopped:/in.txt", &s.s("back.txt")]);
    assert_eq!(
        std::fs::read_to_string(s.path("back.txt")).unwrap(),
        "hello\n"
    );
    assert!(!mounted(&format!("{id}/rootfs")));
    D.ok(&["rm", "cpstopped"]);
}

#[test]
fn cp_with_the_docker_cli() {
    let s = Scratch::new("cp-docker");
    make_src(&s);
    D.ok(&["run", "-d", "--name", "dcp", BB, "sleep", "1000"]);
    D.docker_ok(&["cp", &s.s("a.txt"), "dcp:/"]);
    D.docker_ok(&["cp", &s.s("dir"), "dcp:/ddir"]);
    assert_eq!(D.ok(&["exec", "dcp", "cat", "/a.txt"]), "hello\n");
    assert_eq!(D.ok(&["exec", "dcp", "cat", "/ddir/sub/y"]), "y\n");
    D.docker_ok(&["cp", "dcp:/ddir", &s.s("back")]);
    assert_eq!(std::fs::read_to_string(s.path("back/x")).unwrap(), "x\n");
    D.docker_ok(&["cp", "dcp:/a.txt", &s.s("back/a2.txt")]);
    assert_eq!(
        std::fs::read_to_string(s.path("back/a2.txt")).unwrap(),
        "hello\n"
    );
    let out = D.docker(&["cp", "dcp:/ddir", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(tar_list(&out.stdout).contains(&"ddir/x".to_string()));
    let out = D.docker(&["cp", "dcp:/nope", &s.s("x")]);
    assert_eq!(out.status.code(), Some(1));
    D.ok(&["rm", "-f", "dcp"]);
    // Into a stopped container.
    D.ok(&["create", "--name", "dcpstopped", BB, "cat", "/in.txt"]);
    D.docker_ok(&["cp", &s.s("a.txt"), "dcpstopped:/in.txt"]);
    assert_eq!(D.ok(&["start", "-a", "dcpstopped"]), "hello\n");
    D.ok(&["rm", "-f", "dcpstopped"]);
}

/// The init layer (`<data-root>/containers/.init-layer`, the lowest layer of every root): the
/// mount points busybox's image lacks (`/proc`, `/sys`, `/dev`, `/etc/hosts`, ...) come from it,
/// so the runtime creates none of them in the container's writable layer (they cost new inodes
/// and overlay copy-ups at every start), while the image's own `/etc` shows through.
#[test]
fn init_layer_keeps_mount_points_out_of_the_writable_layer() {
    // busybox:1.35 here is `/bin` alone.
    let id = D
        .ok(&[
            "create",
            "--name",
            "initl",
            BB,
            "busybox",
            "ls",
            "-d",
            "/proc/self/ns",
            "/etc/hosts",
        ])
        .trim()
        .to_string();
    assert_eq!(
        D.ok(&["start", "-a", "initl"]),
        "/etc/hosts\n/proc/self/ns\n"
    );
    let upper = D.dir.join("data/containers").join(&id).join("upper");
    let written: Vec<String> = std::fs::read_dir(&upper)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        written.is_empty(),
        "written to the upper layer: {written:?}"
    );
    // As docker's export: the mount points are in the container's filesystem.
    let s = Scratch::new("initl");
    D.ok(&["export", "-o", &s.s("root.tar"), "initl"]);
    let names = tar_list(&std::fs::read(s.path("root.tar")).unwrap());
    for want in ["proc/", "sys/", "dev/", "etc/hosts", "bin/busybox"] {
        assert!(
            names
                .iter()
                .any(|n| n == want || n == want.trim_end_matches('/')),
            "{want} missing: {names:?}"
        );
    }
    D.ok(&["rm", "initl"]);
    // An image's own entries win over the init layer's.
    let out = D.ok(&[
        "run",
        "--rm",
        "debian-python:bookworm",
        "cat",
        "/etc/debian_version",
    ]);
    assert!(out.trim().starts_with("12"), "{out}");
}

#[test]
fn diff_export_and_commit() {
    D.ok(&[
        "run",
        "--name",
        "differ",
        BB,
        "sh",
        "-c",
        "echo x > /newfile; busybox mkdir /newdir; busybox rm /bin/cat",
    ]);
    let diff = D.ok(&["diff", "differ"]);
    let lines: Vec<&str> = diff.lines().collect();
    for want in ["A /newfile", "A /newdir", "C /bin", "D /bin/cat"] {
        assert!(lines.contains(&want), "{want} missing from:\n{diff}");
    }
    assert!(
        !diff.contains("/etc/hostname") && !diff.contains("/proc"),
        "{diff}"
    );
    assert_eq!(D.docker_ok(&["diff", "differ"]), diff);

    // export: the merged root.
    let s = Scratch::new("export");
    D.ok(&["export", "-o", &s.s("root.tar"), "differ"]);
    let names = tar_list(&std::fs::read(s.path("root.tar")).unwrap());
    assert!(names.contains(&"newfile".to_string()), "{names:?}");
    assert!(names.contains(&"bin/busybox".to_string()), "{names:?}");
    assert!(!names.contains(&"bin/cat".to_string()));
    let out = D.docker(&["export", "differ"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(tar_list(&out.stdout).contains(&"newfile".to_string()));

    // commit: the change is in the new image, with the config changes.
    let id = D
        .ok(&[
            "commit",
            "-m",
            "added newfile",
            "-a",
            "tester",
            "-c",
            "CMD [\"sh\", \"-c\", \"busybox cat /newfile\"]",
            "-c",
            "ENV COMMITTED=yes",
            "differ",
            "committed:1",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(D.ok(&["run", "--rm", "committed:1"]), "x\n");
    assert_eq!(
        D.ok(&["run", "--rm", "committed:1", "sh", "-c", "echo $COMMITTED"]),
        "yes\n"
    );
    let out = D.barge(&["run", "--rm", "committed:1", "ls", "/bin/cat"]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(D.inspect("committed:1", "{{.Author}}"), "tester");
    assert!(D.ok(&["history", "committed:1"]).contains("added newfile"));
    // The stock docker CLI commits too.
    D.docker_ok(&["commit", "differ", "dcommitted:1"]);
    assert_eq!(
        D.ok(&["run", "--rm", "dcommitted:1", "busybox", "cat", "/newfile"]),
        "x\n"
    );
    D.ok(&["rm", "differ"]);
    D.ok(&["rmi", "committed:1", "dcommitted:1"]);
}

#[test]
fn container_prune_by_label() {
    let a = D
        .ok(&["create", "--label", "prune=yes", BB, "true"])
        .trim()
        .to_string();
    D.ok(&[
        "run",
        "--label",
        "prune=yes",
        "--name",
        "pr2",
        BB,
        "sh",
        "-c",
        "echo data > /f",
    ]);
    let keep = D
        .ok(&["create", "--label", "prune=no", BB, "true"])
        .trim()
        .to_string();
    let out = D.ok(&["container", "prune", "-f", "--filter", "label=prune=yes"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(out.contains(&a), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    let all = D.ok(&["ps", "-aq", "--no-trunc"]);
    assert!(!all.contains(&a) && all.contains(&keep));
    assert!(D.barge(&["inspect", "pr2"]).status.code() != Some(0));
    // The docker CLI: nothing matches an until in the past.
    let out = D.docker_ok(&[
        "container",
        "prune",
        "-f",
        "--filter",
        "label=prune=no",
        "--filter",
        "until=2000-01-01T00:00:00Z",
    ]);
    assert!(!out.contains(&keep), "{out}");
    D.docker_ok(&["container", "prune", "-f", "--filter", "label=prune=no"]);
    assert!(!D.ok(&["ps", "-aq", "--no-trunc"]).contains(&keep));
}

#[test]
fn system_df_renders() {
    D.ok(&["run", "--name", "dfc", BB, "sh", "-c", "echo data > /f"]);
    let out = D.ok(&["system", "df"]);
    let first: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(first, ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    for t in ["Images", "Containers", "Local Volumes", "Build Cache"] {
        assert!(out.contains(t), "{out}");
    }
    let rows = D.ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}}={{.TotalCount}}/{{.Active}}",
    ]);
    let images: Vec<&str> = rows.lines().filter(|l| l.starts_with("Images=")).collect();
    let (total, active) = images[0]["Images=".len()..].split_once('/').unwrap();
    assert!(total.parse::<u32>().unwrap() >= 5, "{rows}");
    assert!(active.parse::<u32>().unwrap() >= 1, "{rows}");
    let v = D.ok(&["system", "df", "-v"]);
    assert!(
        v.contains("Images space usage:") && v.contains("dfc"),
        "{v}"
    );
    let d = D.docker_ok(&["system", "df"]);
    assert!(d.contains("Images") && d.contains("Containers"), "{d}");
    let dv = D.docker_ok(&["system", "df", "-v"]);
    assert!(dv.contains("dfc"), "{dv}");
    D.ok(&["rm", "dfc"]);
}

#[test]
fn system_prune_removes_unused_things() {
    // Its own daemon: prune -a removes everything unused.
    let d = Daemon::start();
    let p = images_dir().join("oci-layout");
    d.ok(&["load", "-i", p.to_str().unwrap()]);
    d.ok(&["run", BB, "true"]);
    d.ok(&["run", "-d", "--name", "keeper", BB, "sleep", "1000"]);
    let out = d.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(out.contains("Deleted Images:"), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(d.ok(&["ps", "-aq"]).lines().count(), 1);
    // Only the image the running container uses is left (under each of its tags).
    let used = d.inspect(BB, "{{.Id}}");
    let ids = d.ok(&["images", "-q", "--no-trunc"]);
    assert_eq!(ids.lines().collect::<Vec<_>>(), [used.as_str()], "{ids}");
    d.ok(&["rm", "-f", "keeper"]);
    // docker's system prune also prunes networks.
    d.ok(&["network", "create", "unused-net"]);
    let out = d.docker_ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("unused-net"), "{out}");
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(d.ok(&["images", "-q"]).trim(), "");
}

fn attach_output(cli: &str, name: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut args: Vec<&str> = vec!["attach"];
    args.extend(extra);
    args.push(name);
    let (prog, env_key) = if cli == "docker" {
        (docker_cli(), "DOCKER_HOST")
    } else {
        (BARGE.to_string(), "BARGE_HOST")
    };
    let out = Command::new(prog)
        .env(env_key, &D.host)
        .env("DOCKER_CONFIG", D.dir.join("docker-config"))
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code(), stdout(&out))
}

#[test]
fn attach_sees_a_running_containers_output() {
    let script = "sleep 1; for i in 1 2 3; do echo line$i; sleep 1; done; exit 3";
    D.ok(&["run", "-d", "--name", "att", BB, "sh", "-c", script]);
    let (code, out) = attach_output("barge", "att", &[]);
    assert!(out.contains("line3"), "{out}");
    assert_eq!(code, Some(3));
    let out = D.barge(&["attach", "att"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("You cannot attach to a stopped container"));
    D.ok(&["rm", "att"]);
    D.ok(&["run", "-d", "--name", "datt", BB, "sh", "-c", script]);
    let (code, out) = attach_output("docker", "datt", &["--no-stdin"]);
    assert!(out.contains("line3"), "{out}");
    assert_eq!(code, Some(3));
    D.ok(&["rm", "datt"]);
}
