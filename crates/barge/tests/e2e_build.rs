//! End-to-end: `barge build` and `docker build` (legacy builder, `POST /build`) against a real
//! daemon: the shared fixture Dockerfiles, multi-stage builds, the layer cache, errors.

mod common;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use common::*;

static D: LazyLock<Daemon> = LazyLock::new(|| {
    let d = Daemon::start();
    d.load_layout();
    d
});

/// A temp copy of the fixture sources (removed on drop).
fn src_copy() -> tempfile_like::Dir {
    let d = tempfile_like::Dir::new();
    for e in std::fs::read_dir(images_dir().join("src")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
    }
    d
}

mod tempfile_like {
    use std::path::{Path, PathBuf};
    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!(
                "barge-build-ctx-{}-{}",
                std::process::id(),
                rand()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    fn rand() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::SeqCst) * 1000
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
                % 1000
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn ctx_with(files: &[(&str, &str)]) -> tempfile_like::Dir {
    let d = tempfile_like::Dir::new();
    for (n, c) in files {
        let p: PathBuf = d.path().join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    d
}

fn p(d: &Path) -> &str {
    d.to_str().unwrap()
}

#[test]
fn tiny_multilayer_builds_runs_and_rebuilds_from_cache() {
    let ctx = src_copy();
    let df = ctx.path().join("tiny-multilayer.Dockerfile");
    let out = D.ok(&[
        "build",
        "-f",
        p(&df),
        "-t",
        "tiny-built:1",
        "-t",
        "tiny-built:2",
        p(ctx.path()),
    ]);
    assert!(out.contains("Step 1/6 : FROM busybox:1.35"), "{out}");
    assert!(out.contains("Successfully tagged tiny-built:2"), "{out}");
    let run = D.ok(&["run", "--rm", "tiny-built:1"]);
    let lines: Vec<&str> = run
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines[0], "hello", "{run}");
    assert!(run.contains("keep") && run.contains("c"), "{run}");
    assert!(
        !run.contains("gone") && !run.contains("top") && !run.contains(" a\n"),
        "{run}"
    );
    let want = D.ok(&["run", "--rm", "tiny-multilayer:1"]);
    assert_eq!(run, want, "same output as the reference image");
    assert_eq!(D.inspect("tiny-built:1", "{{.Config.WorkingDir}}"), "/data");
    let id1 = D.inspect("tiny-built:1", "{{.Id}}");

    // No change: every step is a cache hit and the image is the same.
    let t = std::time::Instant::now();
    let out = D.ok(&["build", "-f", p(&df), "-t", "tiny-built:1", p(ctx.path())]);
    assert_eq!(
        out.matches("Using cache").count(),
        5,
        "every step after FROM from the cache:\n{out}"
    );
    assert!(!out.contains("Running in"), "{out}");
    eprintln!("no-change rebuild: {:?}", t.elapsed());
    assert!(t.elapsed().as_secs() < 10);
    let id2 = D.inspect("tiny-built:1", "{{.Id}}");
    assert_eq!(
        D.inspect("tiny-built:1", "{{len .RootFS.Layers}}"),
        D.inspect("tiny-built:2", "{{len .RootFS.Layers}}")
    );
    assert_eq!(id1, id2, "a rebuild with no change gives the same image");

    // `builder prune` empties the cache.
    let out = D.ok(&["builder", "prune", "-f"]);
    assert!(out.contains("Deleted build cache entries"), "{out}");
    let out = D.ok(&["build", "-f", p(&df), "-t", "tiny-built:1", p(ctx.path())]);
    assert!(out.contains("Running in"), "{out}");
    D.ok(&["rmi", "tiny-built:1", "tiny-built:2"]);
}

#[test]
fn multilayer_matches_the_reference_config_and_tree() {
    let ctx = src_copy();
    let df = ctx.path().join("multilayer.Dockerfile");
    D.ok(&["build", "-f", p(&df), "-t", "ml-built:1", p(ctx.path())]);
    for f in [
        "{{json .Config.User}}",
        "{{json .Config.WorkingDir}}",
        "{{json .Config.Env}}",
        "{{json .Config.ExposedPorts}}",
        "{{json .Config.Healthcheck}}",
        "{{json .Config.StopSignal}}",
        "{{json .Config.Entrypoint}}",
        "{{json .Config.Cmd}}",
    ] {
        assert_eq!(
            D.inspect("ml-built:1", f),
            D.inspect("multilayer:1", f),
            "{f}"
        );
    }
    let ls = |img: &str| {
        D.ok(&["run", "--rm", "--entrypoint", "sh", img, "-c", "cd /fixture && ls -lAn --time-style=+ . dir | sed 's/  */ /g' | cut -d' ' -f1,3,4,6-; ls -A /usr/share/common-licenses /app; id -u"])
    };
    assert_eq!(ls("ml-built:1"), ls("multilayer:1"));
    let app = D.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "python3",
        "ml-built:1",
        "-c",
        "import os; print(sorted(os.listdir('/app')), os.stat('/app/app.py').st_uid)",
    ]);
    assert_eq!(app.trim(), "['app.py', 'model.json'] 1234");
    // The built app answers like the reference one (probed from inside its network namespace).
    D.ok(&["run", "-d", "--name", "ml-built-app", "ml-built:1"]);
    assert_eq!(probe_multilayer_app(&D, "ml-built-app"), "True 2.4 1");
    D.ok(&["rm", "-f", "ml-built-app"]);
    D.ok(&["rmi", "ml-built:1"]);
}

#[test]
fn multi_stage_skips_unused_stages_and_copies_from_a_stage() {
    let ctx = ctx_with(&[
        (
            "Dockerfile",
            "ARG BASE=busybox:1.35\n\
             FROM ${BASE} AS unused\n\
             RUN exit 1\n\
             FROM $BASE AS build\n\
             ARG GREETING=hi\n\
             RUN mkdir /out && echo \"$GREETING from build\" > /out/artifact && echo junk > /junk\n\
             FROM busybox:1.35\n\
             COPY --from=build /out/artifact /artifact\n\
             COPY --chmod=0755 [\"run.sh\", \"/usr/local/bin/\"]\n\
         COPY --chmod=755 run.sh /usr/local/bin\n\
             CMD [\"sh\", \"-c\", \"cat /artifact; test -e /junk || echo no-junk; /usr/local/bin/run.sh\"]\n",
        ),
        ("run.sh", "#!/bin/sh\necho script ran\n"),
        (".dockerignore", "secret*\n"),
        ("secret.txt", "x"),
    ]);
    let out = D.ok(&[
        "build",
        "--build-arg",
        "GREETING=hello",
        "-t",
        "ms-built",
        p(ctx.path()),
    ]);
    assert!(
        !out.contains("exit 1"),
        "the unused stage must not run:\n{out}"
    );
    let run = D.ok(&["run", "--rm", "ms-built"]);
    assert_eq!(run, "hello from build\nno-junk\nscript ran\n");
    // .dockerignore: an excluded file is not in the context.
    let bad = ctx_with(&[
        ("Dockerfile", "FROM busybox:1.35\nCOPY secret.txt /\n"),
        (".dockerignore", "secret*\n"),
        ("secret.txt", "x"),
    ]);
    let o = D.barge(&["build", p(bad.path())]);
    assert!(!o.status.success());
    // --target builds only up to that stage.
    D.ok(&[
        "build",
        "--target",
        "build",
        "-t",
        "ms-target",
        p(ctx.path()),
    ]);
    assert_eq!(
        D.ok(&["run", "--rm", "ms-target", "cat", "/junk"]),
        "junk\n"
    );
    D.ok(&["rmi", "ms-built", "ms-target"]);
}

#[test]
fn errors_name_file_and_line_and_leave_nothing_tagged() {
    let ctx = ctx_with(&[("Dockerfile", "FROM busybox:1.35\nRUN true\nBOGUS x\n")]);
    let o = D.barge(&["build", "-t", "bad-built", p(ctx.path())]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("Dockerfile:3") && e.contains("unknown instruction: BOGUS"),
        "{e}"
    );
    let ctx = ctx_with(&[(
        "Dockerfile",
        "FROM busybox:1.35\nRUN echo before\nRUN exit 3\n",
    )]);
    let o = D.barge(&["build", "-t", "bad-built", p(ctx.path())]);
    assert!(
        stderr(&o).contains("Dockerfile:3") && stderr(&o).contains("non-zero code: 3"),
        "{}",
        stderr(&o)
    );
    let ctx = ctx_with(&[("Dockerfile", "FROM does-not-exist:1\n")]);
    let o = D.barge(&["build", "-t", "bad-built", p(ctx.path())]);
    assert!(stderr(&o).contains("Dockerfile:1"), "{}", stderr(&o));
    let ctx = ctx_with(&[("Dockerfile", "FROM busybox:1.35\nCOPY ../etc/passwd /\n")]);
    let o = D.barge(&["build", "-t", "bad-built", p(ctx.path())]);
    assert!(
        stderr(&o).contains("outside the build context"),
        "{}",
        stderr(&o)
    );
    assert!(
        !D.barge(&["inspect", "bad-built"]).status.success(),
        "nothing tagged"
    );
}

/// A context tar (`POST /build`, docker-py with a custom context) with hostile entries: a
/// `Dockerfile` symlink to a host file (a valid Dockerfile, so reading it would build) and files
/// written through links out of the context. The daemon unpacks and reads inside the context
/// only, as dockerd does: the link resolves in the context, where no such file is.
#[test]
fn hostile_context_tar_stays_in_the_context() {
    let canary = ctx_with(&[("Dockerfile", "FROM busybox:1.35\nLABEL leaked=yes\n")]);
    let df = canary.path().join("Dockerfile");
    let script = format!(
        r#"
import docker, io, tarfile
api = docker.APIClient(base_url="{host}")
def build(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, link, data in entries:
            ti = tarfile.TarInfo(name)
            if link:
                ti.type = tarfile.SYMTYPE
                ti.linkname = link
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    out = []
    try:
        for l in api.build(fileobj=buf, custom_context=True, tag="hostile-ctx:1", decode=True):
            out.append(l.get("error") or l.get("stream") or "")
    except docker.errors.APIError as e:
        out.append(str(e))
    print("".join(out).replace("\n", " "))
build([("Dockerfile", "{df}", b"")])
build([("out", "{canary}", b""), ("out/pwned", "", b"pwned"), ("Dockerfile", "", b"FROM busybox:1.35\n")])
"#,
        host = D.host,
        df = p(&df),
        canary = p(canary.path()),
    );
    let out = python(&script);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("Cannot locate specified Dockerfile"),
        "{out}"
    );
    assert!(lines[1].contains("invalid build context"), "{out}");
    assert!(!canary.path().join("pwned").exists());
    assert!(
        !D.barge(&["inspect", "hostile-ctx:1"]).status.success(),
        "built from a host file"
    );
}

/// `COPY`/`ADD` sources are resolved inside the context: a link in the context pointing at a
/// host directory (`link/secret`) or at a host tar (`ADD arch /`) does not bring the host's
/// files into the image (dockerd resolves sources with `FollowSymlinkInScope`).
#[test]
fn copy_sources_through_links_stay_in_the_context() {
    let canary = ctx_with(&[("secret", "host secret\n")]);
    // A host tar that ADD would extract, were the link followed on the host.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(12);
    h.set_mode(0o644);
    b.append_data(&mut h, "from-host-tar", &b"host secret\n"[..])
        .unwrap();
    std::fs::write(canary.path().join("x.tar"), b.into_inner().unwrap()).unwrap();
    let ctx = ctx_with(&[("Dockerfile", "FROM busybox:1.35\nCOPY link/secret /\n")]);
    std::os::unix::fs::symlink(canary.path(), ctx.path().join("link")).unwrap();
    let o = D.barge(&["build", "-t", "copy-link:1", p(ctx.path())]);
    assert!(!o.status.success(), "COPY read a host file through a link");
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:1.35\nADD arch /\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(canary.path().join("x.tar"), ctx.path().join("arch")).unwrap();
    let o = D.barge(&["build", "-t", "copy-link:1", p(ctx.path())]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = D.barge(&["run", "--rm", "copy-link:1", "cat", "/from-host-tar"]);
    assert!(
        !out.status.success(),
        "ADD extracted a host tar through a link"
    );
    D.ok(&["rmi", "copy-link:1"]);
}

#[test]
fn stock_docker_build_legacy_builder() {
    let ctx = ctx_with(&[
        (
            "Dockerfile",
            "FROM busybox:1.35\nCOPY hello.txt /\nCMD [\"cat\", \"/hello.txt\"]\n",
        ),
        ("hello.txt", "hi from docker build\n"),
    ]);
    let out = std::process::Command::new(docker_cli())
        .env("DOCKER_HOST", &D.host)
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", D.dir.join("docker-config"))
        .args(["build", "-t", "docker-built:1", p(ctx.path())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}\n{}",
        stdout(&out),
        stderr(&out),
        tail(&D.log(), 30)
    );
    assert!(
        stdout(&out).contains("Successfully tagged docker-built:1"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        D.docker_ok(&["run", "--rm", "docker-built:1"]),
        "hi from docker build\n"
    );
    D.ok(&["rmi", "docker-built:1"]);
}

#[test]
fn source_date_epoch_gives_reproducible_digests() {
    let ctx = ctx_with(&[
        (
            "Dockerfile",
            "FROM busybox:1.35\nCOPY f /f\nRUN echo x > /g\nENV A=1\n",
        ),
        ("f", "data\n"),
    ]);
    let build = || {
        D.ok(&[
            "build",
            "--no-cache",
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
            "-q",
            p(ctx.path()),
        ])
        .trim()
        .to_string()
    };
    let a = build();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = build();
    assert!(a.starts_with("sha256:"), "{a}");
    assert_eq!(a, b);
}

#[test]
fn a_run_that_changes_nothing_adds_an_empty_layer() {
    let ctx = ctx_with(&[("Dockerfile", "FROM busybox:1.35\nRUN true\n")]);
    D.ok(&["build", "--no-cache", "-t", "noop-built", p(ctx.path())]);
    let dir = D.dir.join("noop-save");
    std::fs::create_dir_all(&dir).unwrap();
    let tarp = dir.join("img.tar");
    D.ok(&["save", "-o", tarp.to_str().unwrap(), "noop-built"]);
    let mut a = tar::Archive::new(std::fs::File::open(&tarp).unwrap());
    let mut layers = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        layers.push((e.path().unwrap().to_string_lossy().into_owned(), data));
    }
    // The last layer listed in manifest.json is the RUN layer: it holds no entries.
    let manifest: serde_json::Value =
        serde_json::from_slice(&layers.iter().find(|(n, _)| n == "manifest.json").unwrap().1)
            .unwrap();
    let last = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let data = &layers.iter().find(|(n, _)| *n == last).unwrap().1;
    let names: Vec<String> = tar::Archive::new(&data[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.is_empty(),
        "runtime mount points leaked into the layer: {names:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    D.ok(&["rmi", "noop-built"]);
}

#[test]
fn touching_a_copied_file_reruns_from_that_step_and_the_cache_survives_a_restart() {
    let mut d = Daemon::start();
    d.load_layout();
    let ctx = ctx_with(&[
        (
            "Dockerfile",
            "FROM busybox:1.35\nRUN echo one > /one\nCOPY a /a\nRUN cat /a > /b\nCOPY c /c\n",
        ),
        ("a", "1"),
        ("c", "c"),
    ]);
    d.ok(&["build", "-t", "cache-built", p(ctx.path())]);
    d.restart();
    let out = d.ok(&["build", "-t", "cache-built", p(ctx.path())]);
    assert_eq!(out.matches("Using cache").count(), 4, "{out}");
    std::fs::write(ctx.path().join("a"), "2").unwrap();
    let out = d.ok(&["build", "-t", "cache-built", p(ctx.path())]);
    assert_eq!(
        out.matches("Using cache").count(),
        1,
        "only the first RUN is reused:\n{out}"
    );
    assert_eq!(out.matches("Running in").count(), 1, "{out}");
    assert_eq!(d.ok(&["run", "--rm", "cache-built", "cat", "/b"]), "2");
}

#[test]
fn add_extracts_archives_heredocs_and_live_run_output() {
    let ctx = ctx_with(&[(
        "Dockerfile",
        "FROM busybox:1.35\n\
         ADD files.tar /opt/x\n\
         RUN <<EOF\necho from heredoc\necho step-output-marker\nEOF\n\
         COPY <<EOT /etc/motd\nhello $HOSTNAME_UNSET-motd\nEOT\n\
         CMD [\"sh\", \"-c\", \"cat /opt/x/dir/f /etc/motd\"]\n",
    )]);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "dir/f", &b"tar\n"[..]).unwrap();
    std::fs::write(ctx.path().join("files.tar"), b.into_inner().unwrap()).unwrap();
    let out = D.ok(&["build", "--no-cache", "-t", "add-built", p(ctx.path())]);
    assert!(
        out.contains("step-output-marker"),
        "RUN output is shown:\n{out}"
    );
    assert_eq!(D.ok(&["run", "--rm", "add-built"]), "tar\nhello -motd\n");
    D.ok(&["rmi", "add-built"]);
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let parent = ctx_with(&[(
        "Dockerfile",
        "FROM busybox:1.35\nONBUILD RUN echo triggered > /onbuild\n",
    )]);
    D.ok(&["build", "-t", "onbuild-parent", p(parent.path())]);
    let child = ctx_with(&[(
        "Dockerfile",
        "FROM onbuild-parent\nCMD [\"cat\", \"/onbuild\"]\n",
    )]);
    D.ok(&[
        "build",
        "-t",
        "onbuild-child",
        "--progress",
        "plain",
        p(child.path()),
    ]);
    assert_eq!(D.ok(&["run", "--rm", "onbuild-child"]), "triggered\n");
    assert_eq!(
        D.inspect("onbuild-child", "{{json .Config.OnBuild}}"),
        "null"
    );
    D.ok(&["rmi", "onbuild-child", "onbuild-parent"]);
}

#[test]
fn docker_py_images_build() {
    let ctx = ctx_with(&[("Dockerfile", "FROM busybox:1.35\nARG WHO=nobody\nRUN echo \"built for $WHO\" > /who\nCMD [\"cat\", \"/who\"]\n")]);
    let script = format!(
        r#"
import docker
c = docker.DockerClient(base_url="{host}")
img, logs = c.images.build(path="{ctx}", tag="py-built:1", buildargs={{"WHO": "python"}}, rm=True)
print(img.id)
print("".join(l.get("stream", "") for l in logs).count("Step "))
"#,
        host = D.host,
        ctx = p(ctx.path())
    );
    let s = python(&script);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], D.inspect("py-built:1", "{{.Id}}"));
    assert_eq!(lines[1], "4");
    assert_eq!(D.ok(&["run", "--rm", "py-built:1"]), "built for python\n");
    D.ok(&["rmi", "py-built:1"]);
}

#[test]
fn independent_stages_build_in_parallel() {
    let ctx = ctx_with(&[(
        "Dockerfile",
        "FROM busybox:1.35 AS a\nRUN sleep 2 && echo a > /a\n\
         FROM busybox:1.35 AS b\nRUN sleep 2 && echo b > /b\n\
         FROM busybox:1.35\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nCMD [\"cat\", \"/a\", \"/b\"]\n",
    )]);
    let t = std::time::Instant::now();
    let out = D.ok(&["build", "--no-cache", "-t", "par-built", p(ctx.path())]);
    let took = t.elapsed();
    eprintln!("parallel stages build: {took:?}");
    assert!(
        out.find("Step 1/8").unwrap() < out.find("Step 3/8").unwrap(),
        "output in stage order:\n{out}"
    );
    assert!(took.as_secs_f64() < 3.9, "two 2 s stages took {took:?}");
    assert_eq!(D.ok(&["run", "--rm", "par-built"]), "a\nb\n");
    D.ok(&["rmi", "par-built"]);
}

#[test]
fn arg_and_env_scoping_and_iidfile() {
    let ctx = ctx_with(&[(
        "Dockerfile",
        "ARG V=global\n\
         FROM busybox:1.35\n\
         RUN echo \"unset:[$V]\" > /scope\n\
         ARG V\n\
         ARG TARGETARCH\n\
         ARG D=${V:-none}-d\n\
         ENV E=${D:+set} F=\"a b\" G=\\$V\n\
         RUN echo \"redeclared:[$V] arch:[$TARGETARCH] d:[$D] e:[$E] f:[$F] g:[$G]\" >> /scope\n\
         CMD [\"cat\", \"/scope\"]\n",
    )]);
    let iid = ctx.path().join("iid");
    D.ok(&[
        "build",
        "--iidfile",
        p(&iid),
        "-t",
        "scope-built",
        p(ctx.path()),
    ]);
    let arch = D.inspect("busybox:1.35", "{{.Architecture}}");
    assert_eq!(
        D.ok(&["run", "--rm", "scope-built"]),
        format!(
            "unset:[]\nredeclared:[global] arch:[{arch}] d:[global-d] e:[set] f:[a b] g:[$V]\n"
        )
    );
    assert_eq!(
        std::fs::read_to_string(&iid).unwrap(),
        D.inspect("scope-built", "{{.Id}}")
    );
    // ARGs are not persisted in the image's environment.
    let env = D.inspect("scope-built", "{{json .Config.Env}}");
    assert!(!env.contains("V=") && env.contains("\"E=set\""), "{env}");
    D.ok(&["rmi", "scope-built"]);
}

#[test]
fn run_mounts_cache_bind_and_tmpfs() {
    // A daemon of its own: the test restarts it and prunes the builder cache.
    let mut d = Daemon::start();
    d.load_layout();
    let ctx = ctx_with(&[
        (
            "Dockerfile",
            "FROM busybox:1.35 AS src\n\
             RUN mkdir -p /out && echo from-stage > /out/s.txt\n\
             FROM busybox:1.35 AS unused\n\
             RUN echo never\n\
             FROM busybox:1.35\n\
             ARG N\n\
             RUN --mount=type=cache,target=/var/cache/c,id=counter,sharing=locked \\\n\
                 echo \"$N\" >> /var/cache/c/log && busybox wc -l < /var/cache/c/log > /count\n\
             RUN --mount=type=cache,target=/c2,uid=1234,gid=99,mode=0700 ls -ldn /c2 > /c2perm\n\
             RUN --mount=type=bind,source=data,target=/data cat /data/f > /copied\n\
             RUN --mount=type=bind,source=data,target=/d,rw sh -c 'echo changed > /d/f && cat /d/f > /rw'\n\
             RUN --mount=type=bind,from=src,source=/out,target=/s cat /s/s.txt > /froms\n\
             RUN --mount=type=tmpfs,target=/tmp/t,size=1m sh -c 'echo t > /tmp/t/x && cat /tmp/t/x > /tmpfs-ok'\n\
             CMD [\"sh\", \"-c\", \"cat /count /copied /rw /froms /tmpfs-ok; cat /c2perm; for p in /var/cache/c /c2 /data /d /s /tmp/t; do [ -e $p ] && echo leaked $p; done; true\"]\n",
        ),
        ("data/f", "context-data\n"),
    ]);
    let build = |d: &Daemon, n: &str| {
        d.ok(&[
            "build",
            "--build-arg",
            &format!("N={n}"),
            "-t",
            "mounts-built",
            p(ctx.path()),
        ])
    };
    let out = build(&d, "1");
    assert!(!out.contains("never"), "unused stage built:\n{out}");
    let run = d.ok(&["run", "--rm", "mounts-built"]);
    let lines: Vec<&str> = run.lines().collect();
    assert_eq!(
        &lines[..5],
        &["1", "context-data", "changed", "from-stage", "t"],
        "{run}"
    );
    assert!(
        lines[5].starts_with("drwx------")
            && lines[5].contains(" 1234 ")
            && lines[5].contains(" 99 "),
        "cache mount root with uid/gid/mode: {run}"
    );
    assert!(
        !run.contains("leaked"),
        "mount targets are not in the image: {run}"
    );
    assert_eq!(
        std::fs::read_to_string(ctx.path().join("data/f")).unwrap(),
        "context-data\n",
        "rw bind mount writes are discarded"
    );
    // No change: all cached (cache mount content is not part of the key).
    let out = build(&d, "1");
    assert!(!out.contains("Running in"), "{out}");
    // Another N reruns the cache step: the cache mount kept the first run's line.
    build(&d, "2");
    assert_eq!(
        d.ok(&["run", "--rm", "mounts-built", "cat", "/count"])
            .trim(),
        "2"
    );
    // Cache mounts survive a daemon restart.
    d.restart();
    build(&d, "3");
    assert_eq!(
        d.ok(&["run", "--rm", "mounts-built", "cat", "/count"])
            .trim(),
        "3"
    );
    // Changing the bind-mounted context content reruns that step (and only from there on).
    std::fs::write(ctx.path().join("data/f"), "new-data\n").unwrap();
    let out = build(&d, "3");
    assert_eq!(out.matches("Running in").count(), 4, "{out}");
    assert_eq!(
        d.ok(&["run", "--rm", "mounts-built", "cat", "/copied"]),
        "new-data\n"
    );
    // `builder prune` removes the cache mounts.
    let out = d.ok(&["builder", "prune", "-f"]);
    assert!(out.contains("Deleted cache mounts: 2"), "{out}");
    build(&d, "4");
    assert_eq!(
        d.ok(&["run", "--rm", "mounts-built", "cat", "/count"])
            .trim(),
        "1"
    );
    // Clear errors for bad or unsupported mounts.
    for (df, want) in [
        (
            "FROM busybox:1.35\nRUN --mount=type=secret,id=x true\n",
            "mount type secret is not supported",
        ),
        (
            "FROM busybox:1.35\nRUN --mount=type=cache,sharing=sometimes,target=/x true\n",
            "unsupported sharing value",
        ),
        (
            "FROM busybox:1.35\nRUN --mount=type=bind,source=missing,target=/x true\n",
            "not found",
        ),
    ] {
        let c = ctx_with(&[("Dockerfile", df)]);
        let o = d.barge(&["build", p(c.path())]);
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(
            err.contains("Dockerfile:2") && err.contains(want),
            "{want}: {err}"
        );
    }
}

/// A one-file HTTP server on loopback; counts the requests it answered.
fn http_server(
    body: &'static str,
    last_modified: &'static str,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let path = String::from_utf8_lossy(&req)
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let resp = if path.starts_with("/missing") {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            } else {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: {last_modified}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = s.write_all(resp.as_bytes());
        }
    });
    (port, hits)
}

#[test]
fn add_downloads_urls_with_checksum_mtime_and_cache() {
    use std::sync::atomic::Ordering;
    let (port, hits) = http_server("downloaded\n", "Wed, 21 Oct 2015 07:28:00 GMT");
    // sha256 of "downloaded\n"
    let sum = {
        use std::process::Command;
        let o = Command::new("sh")
            .args(["-c", "printf 'downloaded\\n' | sha256sum"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let url = format!("http://127.0.0.1:{port}/files/hello.txt?x=1");
    let ctx = ctx_with(&[(
        "Dockerfile",
        &format!(
            "FROM busybox:1.35\n\
             ADD {url} /dl/\n\
             ADD --checksum=sha256:{sum} --chmod=644 --chown=7:8 {url} /named.txt\n\
             CMD [\"sh\", \"-c\", \"cat /dl/hello.txt /named.txt; ls -ln /dl/hello.txt /named.txt; busybox stat -c %Y /dl/hello.txt\"]\n"
        ),
    )]);
    d_build_ok(&ctx, "url-built");
    let out = D.ok(&["run", "--rm", "url-built"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], &["downloaded", "downloaded"], "{out}");
    assert!(
        lines[2].starts_with("-rw------- ")
            && lines[2].contains(" 0 ")
            && lines[2].contains("/dl/hello.txt"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("-rw-r--r-- ") && lines[3].contains(" 7 ") && lines[3].contains(" 8 "),
        "{out}"
    );
    assert_eq!(lines[4], "1445412480", "mtime from Last-Modified: {out}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // A rebuild downloads the unchecked URL again (its content is the key) but not the one
    // with a checksum; both steps are cache hits.
    let out = d_build_ok(&ctx, "url-built");
    assert_eq!(out.matches("Using cache").count(), 3, "{out}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // Errors: checksum mismatch, HTTP error, git URL, URL in COPY.
    for (df, want) in [
        (
            format!(
                "FROM busybox:1.35\nADD --checksum=sha256:{} {url} /x\n",
                "0".repeat(64)
            ),
            "digest mismatch".to_string(),
        ),
        (
            format!("FROM busybox:1.35\nADD http://127.0.0.1:{port}/missing /x\n"),
            "404".to_string(),
        ),
        (
            "FROM busybox:1.35\nADD https://github.com/moby/buildkit.git#v0.10.1 /src\n"
                .to_string(),
            "git repository is not supported".to_string(),
        ),
        (
            format!("FROM busybox:1.35\nCOPY {url} /x\n"),
            "source can't be a URL for COPY".to_string(),
        ),
    ] {
        let c = ctx_with(&[("Dockerfile", &df)]);
        let o = D.barge(&["build", "--no-cache", p(c.path())]);
        assert!(!o.status.success(), "{df}");
        let err = stderr(&o);
        assert!(
            err.contains("Dockerfile:2") && err.contains(&want),
            "{want}: {err}"
        );
    }
    D.ok(&["rmi", "url-built"]);
}

fn d_build_ok(ctx: &tempfile_like::Dir, tag: &str) -> String {
    D.ok(&["build", "-t", tag, p(ctx.path())])
}

#[test]
fn copy_link_layers_are_reused_when_only_the_base_changes() {
    let ctx = ctx_with(&[
        (
            "Dockerfile",
            "FROM busybox:1.35\n\
             ARG MARK\n\
             RUN echo \"$MARK\" > /mark\n\
             COPY --link app.txt /opt/app/\n\
             RUN cat /opt/app/app.txt /mark > /both\n\
             CMD [\"cat\", \"/both\"]\n",
        ),
        ("app.txt", "app"),
    ]);
    let build = |m: &str| {
        D.ok(&[
            "build",
            "--build-arg",
            &format!("MARK={m}"),
            "-t",
            "link-built",
            p(ctx.path()),
        ])
    };
    build("one");
    let layer1 = D.inspect("link-built", "{{index .RootFS.Layers 2}}");
    assert_eq!(D.ok(&["run", "--rm", "link-built"]), "appone\n");
    // The step before changes: the --link layer is reused on the new parent.
    let out = build("two");
    assert!(out.contains("Using cache (linked layer)"), "{out}");
    assert_eq!(
        D.inspect("link-built", "{{index .RootFS.Layers 2}}"),
        layer1
    );
    assert_eq!(D.ok(&["run", "--rm", "link-built"]), "apptwo\n");
    assert_eq!(
        D.ok(&["run", "--rm", "link-built", "ls", "-ld", "/opt/app"])
            .split_whitespace()
            .next(),
        Some("drwxr-xr-x")
    );
    // Changing the copied file makes a new layer.
    std::fs::write(ctx.path().join("app.txt"), "app2").unwrap();
    let out = build("two");
    assert!(!out.contains("linked layer"), "{out}");
    assert_ne!(
        D.inspect("link-built", "{{index .RootFS.Layers 2}}"),
        layer1
    );
    assert_eq!(D.ok(&["run", "--rm", "link-built"]), "app2two\n");
    D.ok(&["rmi", "link-built"]);
}

#[test]
fn progress_tty_shows_steps_with_status() {
    let ctx = ctx_with(&[(
        "Dockerfile",
        "FROM busybox:1.35\nRUN echo tty-marker-line\nCOPY Dockerfile /x\n",
    )]);
    let out = D.ok(&[
        "build",
        "--progress",
        "tty",
        "-t",
        "tty-built",
        p(ctx.path()),
    ]);
    assert!(out.contains("\x1b["), "ANSI redraws: {out:?}");
    assert!(out.contains(" => [2/3] RUN echo tty-marker-line"), "{out}");
    assert!(out.contains("tty-marker-line"), "live RUN output: {out}");
    assert!(out.contains("[+] Built in"), "{out}");
    let out = D.ok(&[
        "build",
        "--progress",
        "tty",
        "-t",
        "tty-built",
        p(ctx.path()),
    ]);
    assert!(
        out.lines()
            .any(|l| l.contains("[3/3] COPY Dockerfile /x") && l.ends_with("CACHED")),
        "{out}"
    );
    // Not a terminal: auto is plain.
    let out = D.ok(&["build", "-t", "tty-built", p(ctx.path())]);
    assert!(!out.contains("\x1b[") && out.contains("Step 2/3"), "{out}");
    let o = D.barge(&["build", "--progress", "fancy", p(ctx.path())]);
    assert!(!o.status.success() && stderr(&o).contains("invalid progress mode"));
    D.ok(&["rmi", "tty-built"]);
}
