//! End-to-end: pull, push and login against a real registry (Debian's `docker-registry`,
//! distribution 2.8) started on 127.0.0.1 by each test: plain HTTP, TLS with a CA made here by
//! `openssl`, and Basic auth with an `htpasswd` file. Images are seeded from the shared OCI
//! layout with `skopeo copy` (or with barge's own push).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A fresh directory under /tmp (the caller removes it).
fn temp_dir(prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = PathBuf::from(format!(
        "/tmp/{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes a directory when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        TempDir(temp_dir("barge-regtest"))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

#[derive(Default)]
struct RegOpts {
    tls: bool,
    /// Basic auth with an htpasswd file, or (with `token`) the user a token server accepts.
    auth: Option<(&'static str, &'static str)>,
    /// Bearer token auth: a small token server (below) signs JWTs for `auth`'s user.
    token: bool,
    /// Keep the access log (one combined-log line per request, with status and bytes sent).
    access_log: bool,
}

/// A token server for the registry's `auth: token` (distribution's token spec): GET /token with
/// Basic credentials returns a JWT (RS256, signed by `openssl dgst`, certificate in `x5c`)
/// granting the requested scope; wrong credentials get 401, anonymous requests no access. POST
/// /token is the OAuth2 refresh-token grant for the identity token `refresh-<user>`.
const TOKEN_SERVER: &str = r#"
import base64, http.server, json, subprocess, sys, time
from urllib.parse import urlparse, parse_qs
port, user, pw, key, crt = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
der = subprocess.run(["openssl", "x509", "-in", crt, "-outform", "DER"], capture_output=True, check=True).stdout
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def scopes(q):
    granted = []
    for sc in q.get("scope", []):
        t, _, rest = sc.partition(":")
        name, _, actions = rest.rpartition(":")
        granted.append({"type": t, "name": name, "actions": actions.split(",")})
    return granted
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def deny(self):
        self.send_response(401); self.end_headers(); self.wfile.write(b'{"details":"incorrect username or password"}')
    def grant(self, q, granted):
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        claims = {"iss": "barge-test-issuer", "sub": user, "aud": q.get("service", [""])[0], "exp": now + 300, "nbf": now - 10, "iat": now, "jti": str(now) + str(id(self)), "access": granted}
        signing = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing.encode(), capture_output=True, check=True).stdout
        tok = signing + "." + b64(sig)
        body = json.dumps({"token": tok, "access_token": tok, "expires_in": 300}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        q = parse_qs(urlparse(self.path).query)
        granted = []
        a = self.headers.get("Authorization", "")
        if a.startswith("Basic "):
            u, _, p = base64.b64decode(a[6:]).decode().partition(":")
            if (u, p) != (user, pw):
                return self.deny()
            granted = scopes(q)
        self.grant(q, granted)
    def do_POST(self):
        # OAuth2 (distribution's oauth spec): grant_type=refresh_token with the identity token
        # "refresh-<user>" that docker keeps in config.json; client_id is required.
        n = int(self.headers.get("Content-Length", "0"))
        q = parse_qs(self.rfile.read(n).decode())
        ok = q.get("grant_type") == ["refresh_token"] and q.get("refresh_token") == ["refresh-" + user] and q.get("client_id")
        if not ok:
            return self.deny()
        self.grant(q, scopes(q))
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// A `docker-registry serve` on 127.0.0.1 with its own storage; killed and removed on drop.
struct Registry {
    dir: PathBuf,
    child: Child,
    token_server: Option<Child>,
    host: String,
    auth: Option<(&'static str, &'static str)>,
}

impl Registry {
    fn start(opts: RegOpts) -> Registry {
        assert!(
            have("docker-registry"),
            "docker-registry is not installed (scripts/install-deps.sh)"
        );
        let dir = temp_dir("barge-reg");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: {}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            !opts.access_log,
            dir.join("storage").display()
        );
        if opts.tls {
            make_certs(&dir);
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("server.crt").display(),
                dir.join("server.key").display()
            ));
        }
        let mut token_server = None;
        if let (true, Some((u, p))) = (opts.token, opts.auth) {
            let d = |f: &str| dir.join(f).display().to_string();
            run_ok(Command::new("openssl").args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=barge token signer",
                "-keyout",
                &d("token.key"),
                "-out",
                &d("token.crt"),
            ]));
            let tport = free_port();
            token_server = Some(
                Command::new(&*common::PYTHON)
                    .args([
                        "-c",
                        TOKEN_SERVER,
                        &tport.to_string(),
                        u,
                        p,
                        &d("token.key"),
                        &d("token.crt"),
                    ])
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("starting the token server"),
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", tport)).is_err() {
                assert!(Instant::now() < deadline, "token server did not come up");
                std::thread::sleep(Duration::from_millis(50));
            }
            cfg.push_str(&format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: barge-test\n    issuer: barge-test-issuer\n    rootcertbundle: {}\n",
                d("token.crt")
            ));
        } else if let Some((u, p)) = opts.auth {
            let out = run_ok(Command::new("htpasswd").args(["-Bbn", u, p]));
            std::fs::write(dir.join("htpasswd"), out).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: barge-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("config.yml"), cfg).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let reg = Registry {
            dir,
            child,
            token_server,
            host,
            auth: opts.auth,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&reg.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not come up: {}",
                std::fs::read_to_string(reg.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `--creds=u:p` (or `--dest-creds=u:p` with `prefix` = `dest-`).
    fn skopeo_creds(&self, prefix: &str) -> Vec<String> {
        match self.auth {
            Some((u, p)) => vec![format!("--{prefix}creds={u}:{p}")],
            None => vec![],
        }
    }

    /// Copies `layout_ref` of the shared OCI layout to `repo:tag` here (`--all` keeps indexes).
    fn seed(&self, layout_ref: &str, repo_tag: &str) {
        let src = format!(
            "oci:{}:{layout_ref}",
            images_dir().join("oci-layout").display()
        );
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--all", "--dest-tls-verify=false"])
            .args(self.skopeo_creds("dest-"))
            .arg(src)
            .arg(format!("docker://{}/{repo_tag}", self.host));
        run_ok(&mut cmd);
    }

    /// `skopeo inspect` of `repo:tag` (raw=false): the JSON.
    fn inspect(&self, repo_tag: &str) -> serde_json::Value {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--tls-verify=false"])
            .args(self.skopeo_creds(""))
            .arg(format!("docker://{}/{repo_tag}", self.host));
        serde_json::from_str(&run_ok(&mut cmd)).unwrap()
    }

    /// The manifest digest of `repo:tag` as the registry serves it (index digest for indexes).
    fn digest(&self, repo_tag: &str) -> String {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--raw", "--tls-verify=false"])
            .args(self.skopeo_creds(""))
            .arg(format!("docker://{}/{repo_tag}", self.host));
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let mut sum = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        sum.stdin.take().unwrap().write_all(&out.stdout).unwrap();
        let hex = stdout(&sum.wait_with_output().unwrap())
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        format!("sha256:{hex}")
    }

    /// Blob files in the registry's storage.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = &mut self.token_server {
            let _ = t.kill();
            let _ = t.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA and a server certificate for 127.0.0.1 / localhost, made with openssl.
fn make_certs(dir: &Path) {
    let d = |f: &str| dir.join(f).display().to_string();
    run_ok(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=barge test CA",
        "-keyout",
        &d("ca.key"),
        "-out",
        &d("ca.crt"),
    ]));
    run_ok(Command::new("openssl").args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &d("server.key"),
        "-out",
        &d("server.csr"),
    ]));
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
    run_ok(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &d("server.csr"),
        "-CA",
        &d("ca.crt"),
        "-CAkey",
        &d("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        &d("server.crt"),
        "-extfile",
        &d("ext.cnf"),
    ]));
}

/// Writes a daemon config file in a fresh dir and returns its path.
fn daemon_config(json: serde_json::Value) -> (TempDir, PathBuf) {
    let t = TempDir::new();
    let p = t.path().join("daemon.json");
    std::fs::write(&p, json.to_string()).unwrap();
    (t, p)
}

/// A daemon running containers with runc (these tests are about images, not runtimes).
fn daemon(extra: &[&str]) -> Daemon {
    let mut args = vec!["--default-runtime", "runc"];
    args.extend_from_slice(extra);
    Daemon::start_with(&args)
}

fn fail_text(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn assert_runs(d: &Daemon, image: &str, args: &[&str], want: &str) {
    let mut full = vec!["run", "--rm", image];
    full.extend_from_slice(args);
    let out = d.ok(&full);
    assert_eq!(out.trim(), want, "output of {image} {args:?}");
}

#[test]
fn pull_plain_http_by_tag_digest_zstd_and_platform() {
    let reg = Registry::start(RegOpts::default());
    reg.seed("busybox:1.35", "library/busybox:1.35");
    reg.seed("busybox:1.35-zstd", "library/busybox:1.35-zstd");
    reg.seed("tiny-multilayer:1", "test/tiny-multilayer:1");
    reg.seed("busybox-multi:1", "test/busybox-multi:1");
    let d = daemon(&[]);
    let h = &reg.host;

    // By tag: progress lines, then the full name on stdout.
    let out = d.ok(&["pull", &format!("{h}/library/busybox:1.35")]);
    assert!(
        out.contains("Pulling from library/busybox") || out.contains("Pull complete"),
        "{out}"
    );
    assert!(out.contains("Digest: sha256:"), "{out}");
    assert!(
        out.contains(&format!(
            "Status: Downloaded newer image for {h}/library/busybox:1.35"
        )),
        "{out}"
    );
    assert_runs(
        &d,
        &format!("{h}/library/busybox:1.35"),
        &["echo", "hi"],
        "hi",
    );
    let digests = d.inspect(
        &format!("{h}/library/busybox:1.35"),
        "{{json .RepoDigests}}",
    );
    assert!(
        digests.contains(&reg.digest("library/busybox:1.35")),
        "{digests}"
    );

    // Again: up to date, no layer fetched.
    let again = d.ok(&["pull", &format!("{h}/library/busybox:1.35")]);
    assert!(
        again.contains("Already exists") && again.contains("Image is up to date"),
        "{again}"
    );

    // By digest, on a fresh daemon.
    let d2 = daemon(&[]);
    let dg = reg.digest("library/busybox:1.35");
    d2.ok(&["pull", &format!("{h}/library/busybox@{dg}")]);
    assert_runs(
        &d2,
        &format!("{h}/library/busybox@{dg}"),
        &["echo", "by-digest"],
        "by-digest",
    );

    // zstd layers.
    d.ok(&["pull", &format!("{h}/library/busybox:1.35-zstd")]);
    assert_runs(
        &d,
        &format!("{h}/library/busybox:1.35-zstd"),
        &["echo", "zstd"],
        "zstd",
    );
    let dgz = reg.digest("library/busybox:1.35-zstd");
    d2.ok(&["pull", "-q", &format!("{h}/library/busybox@{dgz}")]);

    // Several layers with whiteouts.
    d.ok(&["pull", &format!("{h}/test/tiny-multilayer:1")]);
    let ls = d.ok(&[
        "run",
        "--rm",
        &format!("{h}/test/tiny-multilayer:1"),
        "ls",
        "-R",
        "/data",
    ]);
    assert!(ls.contains("c") && !ls.contains("a\n"), "{ls}");

    // An index, each platform.
    for arch in ["amd64", "arm64"] {
        let dd = daemon(&[]);
        dd.ok(&[
            "pull",
            "--platform",
            &format!("linux/{arch}"),
            &format!("{h}/test/busybox-multi:1"),
        ]);
        let got = dd.inspect(&format!("{h}/test/busybox-multi:1"), "{{.Architecture}}");
        assert_eq!(got, arch);
        if arch == "amd64" {
            assert_runs(
                &dd,
                &format!("{h}/test/busybox-multi:1"),
                &["cat", "/ARCH"],
                "amd64",
            );
        }
    }
    // By the index digest.
    let dd = daemon(&[]);
    let idx = reg.digest("test/busybox-multi:1");
    dd.ok(&["pull", &format!("{h}/test/busybox-multi@{idx}")]);

    // A single-platform image asked for another platform; an index without that platform.
    let out = d2.barge(&[
        "pull",
        "--platform",
        "linux/arm64",
        &format!("{h}/library/busybox:1.35"),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not match the specified platform"),
        "{}",
        stderr(&out)
    );
    let out = d2.barge(&[
        "pull",
        "--platform",
        "linux/s390x",
        &format!("{h}/test/busybox-multi:1"),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no matching manifest for linux/s390x"),
        "{}",
        stderr(&out)
    );

    // --all-tags.
    reg.seed("busybox:1.35", "test/at:a");
    reg.seed("busybox:1.35-zstd", "test/at:b");
    d2.ok(&["pull", "-a", &format!("{h}/test/at")]);
    let tags = d2.ok(&["images", "--format", "{{.Tag}}", &format!("{h}/test/at")]);
    assert_eq!(
        tags.lines().collect::<std::collections::BTreeSet<_>>(),
        ["a", "b"].into_iter().collect(),
        "{tags}"
    );

    // Missing tag: a clear one-line error.
    let out = d.barge(&["pull", &format!("{h}/library/busybox:nope")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("not found") && err.trim().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn run_pulls_a_missing_image() {
    let reg = Registry::start(RegOpts::default());
    reg.seed("busybox:1.35", "library/busybox:1.35");
    let d = daemon(&[]);
    let image = format!("{}/library/busybox:1.35", reg.host);
    let out = d.barge(&["run", "--rm", &image, "echo", "pulled"]);
    assert!(out.status.success(), "{}", fail_text(&out));
    assert_eq!(stdout(&out).trim(), "pulled");
    assert!(
        stderr(&out).contains("Unable to find image"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn basic_auth_login_wrong_password_and_push() {
    let reg = Registry::start(RegOpts {
        auth: Some(("tester", "s3cret")),
        ..Default::default()
    });
    reg.seed("busybox:1.35", "library/busybox:1.35");
    let d = daemon(&[]);
    let image = format!("{}/library/busybox:1.35", reg.host);

    // Anonymous: refused, one line.
    let out = d.barge(&["pull", &image]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.to_lowercase().contains("unauthorized") && err.trim().lines().count() == 1,
        "{err}"
    );

    // Wrong password: login fails with one line, nothing stored.
    let out = d.barge_stdin(
        &["login", "-u", "tester", "--password-stdin", &reg.host],
        b"wrong\n",
    );
    assert!(!out.status.success(), "{}", fail_text(&out));
    let err = stderr(&out);
    assert!(
        err.to_lowercase().contains("unauthorized") && err.trim().lines().count() == 1,
        "{err}"
    );

    // Right password: stored in config.json, then pull and push work.
    let out = d.barge_stdin(
        &["login", "-u", "tester", "--password-stdin", &reg.host],
        b"s3cret\n",
    );
    assert!(out.status.success(), "{}", fail_text(&out));
    assert!(stdout(&out).contains("Login Succeeded"));
    let cfg = std::fs::read_to_string(d.dir.join("docker-config/config.json")).unwrap();
    assert!(cfg.contains(&reg.host), "{cfg}");
    d.ok(&["pull", &image]);
    assert_runs(&d, &image, &["echo", "auth"], "auth");
    d.ok(&["tag", &image, &format!("{}/mine/bb:v1", reg.host)]);
    let out = d.ok(&["push", &format!("{}/mine/bb:v1", reg.host)]);
    assert!(
        out.contains("Mounted from library/busybox"),
        "cross-repository mount expected:\n{out}"
    );
    assert_eq!(reg.digest("mine/bb:v1"), reg.digest("library/busybox:1.35"));

    d.ok(&["logout", &reg.host]);
    let out = d.barge(&["pull", &format!("{}/mine/bb:v1", reg.host)]);
    assert!(!out.status.success());
}

#[test]
fn tls_registry_with_ca_from_certs_dir() {
    let reg = Registry::start(RegOpts {
        tls: true,
        ..Default::default()
    });
    reg.seed("busybox:1.35", "library/busybox:1.35");
    let certs = TempDir::new();
    // Without the CA (and with loopback not insecure): refused.
    let (_t1, cfg1) =
        daemon_config(serde_json::json!({ "insecure-registries": [], "certs-dir": certs.path() }));
    let d = daemon(&["--config-file", cfg1.to_str().unwrap()]);
    let image = format!("{}/library/busybox:1.35", reg.host);
    let out = d.barge(&["pull", &image]);
    assert!(!out.status.success(), "pull without the CA must fail");
    // With certs.d/HOST:PORT/ca.crt: verified TLS.
    std::fs::create_dir_all(certs.path().join(&reg.host)).unwrap();
    std::fs::copy(reg.ca(), certs.path().join(&reg.host).join("ca.crt")).unwrap();
    d.ok(&["pull", &image]);
    assert_runs(&d, &image, &["echo", "tls"], "tls");
    // Push over TLS too.
    d.ok(&["tag", &image, &format!("{}/pushed/bb:1", reg.host)]);
    d.ok(&["push", &format!("{}/pushed/bb:1", reg.host)]);
    assert_eq!(
        reg.digest("pushed/bb:1"),
        reg.digest("library/busybox:1.35")
    );
}

#[test]
fn push_loaded_image_then_pull_on_second_daemon() {
    let reg = Registry::start(RegOpts::default());
    let d1 = daemon(&[]);
    d1.load_layout();
    let h = &reg.host;
    for (src, dst) in [
        ("tiny-multilayer:1", "proj/tiny:1"),
        ("busybox:1.35-zstd", "proj/bbz:1"),
    ] {
        let target = format!("{h}/{dst}");
        d1.ok(&["tag", src, &target]);
        let out = d1.ok(&["push", &target]);
        assert!(out.contains("digest: sha256:"), "{out}");
        let local = d1.inspect(src, "{{index .RepoDigests 0}}");
        let local_digest = local.split('@').nth(1).unwrap().to_string();
        assert_eq!(reg.digest(dst), local_digest);
        let insp = reg.inspect(dst);
        assert_eq!(insp["Digest"].as_str().unwrap(), local_digest);
        assert_eq!(insp["Architecture"].as_str().unwrap(), "amd64");
        // Second push: every layer already there.
        let again = d1.ok(&["push", &target]);
        assert!(again.contains("Layer already exists"), "{again}");

        let d2 = daemon(&[]);
        d2.ok(&["pull", &target]);
        assert_eq!(d2.inspect(&target, "{{.Id}}"), d1.inspect(src, "{{.Id}}"));
        let rd = d2.inspect(&target, "{{index .RepoDigests 0}}");
        assert!(rd.ends_with(&local_digest), "{rd} vs {local_digest}");
    }
}

#[test]
fn registry_mirrors_serve_docker_hub_names() {
    let reg = Registry::start(RegOpts::default());
    reg.seed("busybox:1.35", "library/busybox:1.35");
    let (_t, cfg) =
        daemon_config(serde_json::json!({ "registry-mirrors": [format!("http://{}", reg.host)] }));
    let d = daemon(&["--config-file", cfg.to_str().unwrap()]);
    let out = d.ok(&["pull", "busybox:1.35"]);
    assert!(out.contains("docker.io/library/busybox:1.35"), "{out}");
    assert_runs(&d, "busybox:1.35", &["echo", "mirrored"], "mirrored");
}

#[test]
fn corrupted_blob_fails_and_stores_nothing() {
    let reg = Registry::start(RegOpts::default());
    reg.seed("tiny-multilayer:1", "test/tiny:1");
    let insp = reg.inspect("test/tiny:1");
    let layer = insp["Layers"][1].as_str().unwrap().to_string();
    let f = reg.blob_file(&layer);
    let mut data = std::fs::read(&f).unwrap();
    let n = data.len();
    data[n / 2] ^= 0xff;
    std::fs::write(&f, &data).unwrap();
    let d = daemon(&[]);
    let out = d.barge(&["pull", &format!("{}/test/tiny:1", reg.host)]);
    assert!(!out.status.success(), "{}", fail_text(&out));
    assert!(
        fail_text(&out).to_lowercase().contains("digest")
            || fail_text(&out).to_lowercase().contains("invalid"),
        "{}",
        fail_text(&out)
    );
    let imgs = d.ok(&["images", "-q"]);
    assert!(imgs.trim().is_empty(), "{imgs}");
    let blobs = d.dir.join("data/image/blobs/sha256");
    let bad = blobs.join(layer.strip_prefix("sha256:").unwrap());
    assert!(!bad.exists(), "the corrupt layer must not be stored");
    let tmp: Vec<_> = std::fs::read_dir(d.dir.join("data/image/tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");
}

#[test]
fn killed_daemon_mid_pull_resumes() {
    let reg = Registry::start(RegOpts::default());
    reg.seed("multilayer:1", "test/multilayer:1");
    let mut d = daemon(&[]);
    let image = format!("{}/test/multilayer:1", reg.host);
    let mut child = Command::new(BARGE)
        .env("BARGE_HOST", &d.host)
        .args(["pull", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until at least one layer blob has landed, then kill the daemon.
    let blobs = d.dir.join("data/image/blobs/sha256");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = std::fs::read_dir(&blobs).map(|r| r.count()).unwrap_or(0);
        if n >= 1 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    d.kill9();
    let _ = child.wait();
    let before = std::fs::read_dir(&blobs).map(|r| r.count()).unwrap_or(0);
    d.restart();
    let out = d.ok(&["pull", &image]);
    // 5 layers + config + manifest when complete; the kill came after the first layer.
    assert!((1..7).contains(&before), "{before} blobs at the kill");
    assert!(
        out.contains("Already exists"),
        "finished layers must not be fetched again:\n{out}"
    );
    let out = d.ok(&["run", "--rm", &image, "-c", "import os; print(os.getuid())"]);
    assert_eq!(out.trim(), "1234");
}

/// `(status, bytes sent)` of each `GET` of blob `digest` in the registry's access log.
fn blob_gets(reg: &Registry, digest: &str) -> Vec<(u16, u64)> {
    let log = std::fs::read_to_string(reg.dir.join("registry.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("\"GET ") && l.contains(&format!("/blobs/{digest} ")))
        .filter_map(|l| {
            // ... "GET /v2/... HTTP/1.1" 206 12345 "referer" "agent"
            let after = l.split("HTTP/1.1\" ").nth(1)?;
            let mut it = after.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn killed_daemon_mid_layer_resumes_with_a_range_request() {
    let reg = Registry::start(RegOpts {
        access_log: true,
        ..Default::default()
    });
    // A big incompressible one-layer image (import stores the tar uncompressed).
    let t = TempDir::new();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("data")).unwrap();
    run_ok(
        Command::new("head")
            .args(["-c", "256M", "/dev/urandom"])
            .stdout(std::fs::File::create(root.join("data/random")).unwrap()),
    );
    let tar = t.path().join("big.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    let mut d = daemon(&[]);
    let image = format!("{}/test/big:1", reg.host);
    d.ok(&["import", tar.to_str().unwrap(), &image]);
    d.ok(&["push", &image]);
    let layer = reg.inspect("test/big:1")["Layers"][0]
        .as_str()
        .unwrap()
        .to_string();
    let size = std::fs::metadata(reg.blob_file(&layer)).unwrap().len();
    let id = d.inspect(&image, "{{.Id}}");
    d.ok(&["rmi", &image]);
    d.ok(&["image", "prune", "-af"]);
    std::fs::write(reg.dir.join("registry.log"), "").unwrap();

    // Pull, and kill the daemon once at least a quarter of the layer is on disk.
    let partial = d
        .dir
        .join("data/image/partial")
        .join(layer.strip_prefix("sha256:").unwrap());
    let mut child = Command::new(BARGE)
        .env("BARGE_HOST", &d.host)
        .args(["pull", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if n >= size / 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the pull did not progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    d.kill9();
    let _ = child.wait();
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    assert!(
        kept >= size / 4 && kept < size,
        "{kept} of {size} bytes kept at the kill"
    );
    d.restart();
    d.ok(&["pull", &image]);
    assert!(
        !partial.exists(),
        "the partial blob must be gone once complete"
    );
    // The store verified digest and diff ID; the image is the one pushed.
    assert_eq!(d.inspect(&image, "{{.Id}}"), id);

    // The registry served the layer once in full plus at most a little overlap, and the second
    // request was a range (206) for the rest.
    let gets = blob_gets(&reg, &layer);
    eprintln!("layer of {size} bytes, {kept} kept at the kill; GETs (status, bytes): {gets:?}");
    assert!(
        gets.len() >= 2,
        "expected two requests for the layer: {gets:?}"
    );
    let (status, last) = *gets.last().unwrap();
    assert_eq!(status, 206, "the resumed request must be a range: {gets:?}");
    assert!(
        last <= size - kept,
        "{last} bytes resent, {kept} of {size} were kept"
    );
    let served: u64 = gets.iter().map(|g| g.1).sum();
    assert!(
        served < size + size / 8,
        "{served} bytes served for a {size}-byte layer: {gets:?}"
    );
}

#[test]
fn push_multi_platform_index_loaded_with_all_platforms() {
    let reg = Registry::start(RegOpts::default());
    let d = daemon(&[]);
    let layout = images_dir().join("oci-layout");
    d.ok(&["load", "--platform", "all", "-i", layout.to_str().unwrap()]);
    // The host's entry runs.
    assert_runs(&d, "busybox-multi:1", &["cat", "/ARCH"], "amd64");
    // Removing another image collects unreferenced blobs: the other platform's must stay.
    d.ok(&["rmi", "tiny-multilayer:1"]);
    let target = format!("{}/proj/multi:1", reg.host);
    d.ok(&["tag", "busybox-multi:1", &target]);
    let out = d.ok(&["push", &target]);
    assert!(out.contains("digest: sha256:"), "{out}");

    // The tag is the layout's index, byte for byte, and each entry is there by digest.
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    let want = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "busybox-multi:1")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(reg.digest("proj/multi:1"), want);
    assert!(out.contains(&format!("digest: {want}")), "{out}");
    let raw: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{target}")),
    ))
    .unwrap();
    let entries = raw["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{raw}");
    for e in entries {
        let digest = e["digest"].as_str().unwrap();
        let child = run_ok(
            Command::new("skopeo")
                .args(["inspect", "--tls-verify=false"])
                .arg(format!("docker://{}/proj/multi@{digest}", reg.host)),
        );
        let child: serde_json::Value = serde_json::from_str(&child).unwrap();
        assert_eq!(
            child["Architecture"], e["platform"]["architecture"],
            "{child}"
        );
    }
    // Another daemon pulls each platform from it.
    for arch in ["amd64", "arm64"] {
        let d2 = daemon(&[]);
        d2.ok(&["pull", "--platform", &format!("linux/{arch}"), &target]);
        assert_eq!(d2.inspect(&target, "{{.Architecture}}"), arch);
    }
    // A plain load keeps one platform: its push is a single manifest.
    let d3 = daemon(&[]);
    d3.load_layout();
    let single = format!("{}/proj/single:1", reg.host);
    d3.ok(&["tag", "busybox-multi:1", &single]);
    d3.ok(&["push", &single]);
    let raw: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{single}")),
    ))
    .unwrap();
    assert!(raw.get("layers").is_some(), "{raw}");
}

#[test]
fn stock_docker_cli_pull_push_login() {
    let reg = Registry::start(RegOpts {
        auth: Some(("dock", "pw")),
        ..Default::default()
    });
    reg.seed("busybox:1.35", "library/busybox:1.35");
    let d = daemon(&[]);
    let image = format!("{}/library/busybox:1.35", reg.host);
    let out = d.docker(&["login", "-u", "dock", "-p", "nope", &reg.host]);
    assert!(!out.status.success(), "{}", fail_text(&out));
    d.docker_ok(&["login", "-u", "dock", "-p", "pw", &reg.host]);
    let out = d.docker_ok(&["pull", &image]);
    assert!(
        out.contains("Status: Downloaded newer image") || out.contains(&image),
        "{out}"
    );
    let out = d.docker_ok(&["run", "--rm", &image, "echo", "docker"]);
    assert_eq!(out.trim(), "docker");
    d.docker_ok(&["tag", &image, &format!("{}/viadocker/bb:2", reg.host)]);
    let out = d.docker_ok(&["push", &format!("{}/viadocker/bb:2", reg.host)]);
    assert!(out.contains("digest: sha256:"), "{out}");
    assert_eq!(
        reg.digest("viadocker/bb:2"),
        reg.digest("library/busybox:1.35")
    );
    // docker run of an image that is not there pulls it (with the stored login).
    reg.seed("busybox:1.35-zstd", "library/busybox:1.35-zstd");
    let out = d.docker(&[
        "run",
        "--rm",
        &format!("{}/library/busybox:1.35-zstd", reg.host),
        "echo",
        "pulled-by-run",
    ]);
    assert!(out.status.success(), "{}", fail_text(&out));
    assert_eq!(stdout(&out).trim(), "pulled-by-run");
    assert!(
        stderr(&out).contains("Unable to find image"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn docker_py_pull_and_distribution_inspect() {
    let ok = Command::new(&*common::PYTHON)
        .args(["-c", "import docker"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "docker-py (python3-docker) is required");
    let reg = Registry::start(RegOpts::default());
    reg.seed("busybox-multi:1", "test/multi:1");
    let d = daemon(&[]);
    let script = format!(
        r#"
import docker
c = docker.DockerClient(base_url="{host}")
img = c.images.pull("{reg}/test/multi", tag="1", platform="linux/amd64")
print(img.id)
rd = c.images.get_registry_data("{reg}/test/multi:1")
print(rd.id)
print(rd.has_platform("linux/arm64"), rd.has_platform("linux/s390x"))
"#,
        host = d.host,
        reg = reg.host
    );
    let out = run_ok(Command::new(&*common::PYTHON).args(["-c", &script]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        d.inspect(&format!("{}/test/multi:1", reg.host), "{{.Id}}")
    );
    assert_eq!(lines[1], reg.digest("test/multi:1"));
    assert_eq!(lines[2], "True False");
}

#[test]
fn credential_helper_stores_and_serves_the_login() {
    let reg = Registry::start(RegOpts {
        auth: Some(("helped", "pw2")),
        ..Default::default()
    });
    reg.seed("busybox:1.35", "library/busybox:1.35");
    let d = daemon(&[]);
    // A docker-credential-* helper that keeps one credential in a file, as docker runs them.
    let bin = TempDir::new();
    let store = bin.path().join("store.json");
    let helper = bin.path().join("docker-credential-bargetest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n store) cat > {s} ;;\n get) read server; [ -f {s} ] && cat {s} || {{ echo 'credentials not found in native keychain'; exit 1; }} ;;\n erase) rm -f {s} ;;\nesac\n",
            s = store.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg_dir = d.dir.join("docker-config");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"bargetest"}}}}"#, reg.host),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let barge = |args: &[&str], input: Option<&[u8]>| -> Output {
        use std::io::Write;
        let mut c = Command::new(BARGE)
            .env("BARGE_HOST", &d.host)
            .env("DOCKER_CONFIG", &cfg_dir)
            .env("PATH", &path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(input.unwrap_or_default())
            .unwrap();
        c.wait_with_output().unwrap()
    };
    let out = barge(
        &["login", "-u", "helped", "--password-stdin", &reg.host],
        Some(b"pw2\n"),
    );
    assert!(out.status.success(), "{}", fail_text(&out));
    let stored = std::fs::read_to_string(&store).unwrap();
    assert!(
        stored.contains("\"Secret\":\"pw2\"") && stored.contains("helped"),
        "{stored}"
    );
    let cfg = std::fs::read_to_string(cfg_dir.join("config.json")).unwrap();
    assert!(
        !cfg.contains("pw2"),
        "the password must stay in the helper: {cfg}"
    );
    let out = barge(
        &["pull", &format!("{}/library/busybox:1.35", reg.host)],
        None,
    );
    assert!(out.status.success(), "{}", fail_text(&out));
    let out = barge(&["logout", &reg.host], None);
    assert!(out.status.success(), "{}", fail_text(&out));
    assert!(!store.exists());
}

#[test]
fn bearer_token_auth() {
    let reg = Registry::start(RegOpts {
        auth: Some(("tok", "tokpw")),
        token: true,
        ..Default::default()
    });
    reg.seed("tiny-multilayer:1", "private/tiny:1");
    let d = daemon(&[]);
    let image = format!("{}/private/tiny:1", reg.host);
    let out = d.barge(&["pull", &image]);
    assert!(!out.status.success(), "anonymous pull must be refused");
    assert!(
        stderr(&out).to_lowercase().contains("unauthorized"),
        "{}",
        stderr(&out)
    );
    let out = d.barge_stdin(
        &["login", "-u", "tok", "--password-stdin", &reg.host],
        b"bad\n",
    );
    assert!(!out.status.success(), "{}", fail_text(&out));
    let out = d.barge_stdin(
        &["login", "-u", "tok", "--password-stdin", &reg.host],
        b"tokpw\n",
    );
    assert!(out.status.success(), "{}", fail_text(&out));
    d.ok(&["pull", &image]);
    let out = d.ok(&["run", "--rm", &image]);
    assert!(out.starts_with("hello\n"), "{out}");
    d.ok(&["tag", &image, &format!("{}/private/copy:2", reg.host)]);
    d.ok(&["push", &format!("{}/private/copy:2", reg.host)]);
    assert_eq!(reg.digest("private/copy:2"), reg.digest("private/tiny:1"));
}

#[test]
fn identity_token_from_docker_config_is_exchanged_at_the_token_realm() {
    let reg = Registry::start(RegOpts {
        auth: Some(("oauth", "oauthpw")),
        token: true,
        ..Default::default()
    });
    reg.seed("tiny-multilayer:1", "private/tiny:1");
    let d = daemon(&[]);
    let image = format!("{}/private/tiny:1", reg.host);
    let cfg_dir = d.dir.join("docker-config");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let with_token = |token: &str, args: &[&str]| -> Output {
        std::fs::write(
            cfg_dir.join("config.json"),
            serde_json::json!({ "auths": { reg.host.clone(): { "identitytoken": token } } })
                .to_string(),
        )
        .unwrap();
        Command::new(BARGE)
            .env("BARGE_HOST", &d.host)
            .env("DOCKER_CONFIG", &cfg_dir)
            .args(args)
            .output()
            .unwrap()
    };
    let out = with_token("not-the-token", &["pull", &image]);
    assert!(
        !out.status.success(),
        "a wrong identity token must be refused"
    );
    assert!(stderr(&out).contains("unauthorized"), "{}", fail_text(&out));
    let out = with_token("refresh-oauth", &["pull", &image]);
    assert!(out.status.success(), "{}", fail_text(&out));
    // Push needs a pull,push scope from the same exchange.
    let copy = format!("{}/private/copy:1", reg.host);
    d.ok(&["tag", &image, &copy]);
    let out = with_token("refresh-oauth", &["push", &copy]);
    assert!(out.status.success(), "{}", fail_text(&out));
    assert_eq!(reg.digest("private/copy:1"), reg.digest("private/tiny:1"));
}

#[test]
fn registry_mirror_with_its_own_credentials() {
    let reg = Registry::start(RegOpts {
        auth: Some(("mirroruser", "mirror pw")),
        ..Default::default()
    });
    reg.seed("busybox:1.35", "library/busybox:1.35");
    let (_t, cfg) = daemon_config(serde_json::json!({
        "registry-mirrors": [format!("http://mirroruser:mirror%20pw@{}", reg.host)]
    }));
    let d = daemon(&["--config-file", cfg.to_str().unwrap()]);
    let out = d.ok(&["pull", "busybox:1.35"]);
    assert!(out.contains("docker.io/library/busybox:1.35"), "{out}");
    assert_runs(&d, "busybox:1.35", &["echo", "mirrored"], "mirrored");
}
