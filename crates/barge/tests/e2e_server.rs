//! `barge server`: the Kubernetes API server's start-up, certificates, kubeconfig and
//! authentication, driven with the stock `kubectl` and `curl`; and the engine beside it
//! (the Docker Engine API on `-H`, as `barge daemon`), driven with the stock `docker` CLI.
//! Each server gets its own directory (data dir, data root, exec root, socket, kubeconfig) and
//! a free loopback port; everything is stopped and removed on drop.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::*;
use common::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn server_becomes_ready_and_kubectl_uses_the_written_kubeconfig() {
    let s = Server::start(false, &[]);
    let out = s.kubectl_with(&s.kubeconfig(), &["get", "--raw", "/readyz"]);
    assert!(
        out.status.success(),
        "kubectl: {}\n{}",
        stderr(&out),
        s.log()
    );
    assert_eq!(stdout(&out), "ok");
    // kubectl talks HTTP/2 over TLS (ALPN); HTTP/1.1 works too.
    let tls = s.data_dir().join("tls");
    let (ca, cert, key) = (
        tls.join("server-ca.crt"),
        tls.join("client-admin.crt"),
        tls.join("client-admin.key"),
    );
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let url = format!("https://localhost:{}/livez", s.port);
        let out = curl(&[
            "-s",
            flag,
            "-w",
            " %{http_version}",
            "--cacert",
            ca.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            &url,
        ]);
        assert_eq!(stdout(&out), format!("ok {want}"), "{}", stderr(&out));
    }
    // Secrets are private: keys, the join token, the kubeconfig.
    for f in [
        "tls/server-ca.key",
        "tls/client-ca.key",
        "tls/serving-kube-apiserver.key",
        "tls/client-admin.key",
        "token",
    ] {
        assert_eq!(mode(&s.data_dir().join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&s.kubeconfig()), 0o600);
    assert_eq!(mode(&s.data_dir()), 0o700);
    // The generated token is k3s's secure format: K10<sha256 of the server CA>::server:<secret>.
    let token = std::fs::read_to_string(s.data_dir().join("token")).unwrap();
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "{token}"
    );
    // The serving certificate names the Service and loopback.
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(tls.join("serving-kube-apiserver.crt"))
        .output()
        .unwrap();
    let sans = stdout(&out);
    for want in [
        "DNS:kubernetes,",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:10.43.0.1",
    ] {
        assert!(sans.contains(want), "{want} missing from {sans}");
    }
    // `kubectl version`: the server's version once the API server serves `/version` (target
    // Kubernetes v1.33); until then kubectl reports only its own.
    let out = s.kubectl_with(&s.kubeconfig(), &["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("kubectl version -o json: {e}: {}", stdout(&out)));
    assert!(v["clientVersion"]["gitVersion"].is_string(), "{v}");
    let served = curl(&[
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{}/version", s.url()),
    ]);
    if stdout(&served) == "200" {
        assert!(out.status.success(), "{}", stderr(&out));
        let git = v["serverVersion"]["gitVersion"]
            .as_str()
            .unwrap_or_default();
        assert!(git.starts_with("v1.33"), "{v}");
    }
    // No engine: no Docker socket.
    assert!(!s.sock().exists(), "--disable-agent served a Docker socket");
    let out = s.docker(&["version"]);
    assert!(
        !out.status.success(),
        "docker reached a --disable-agent server"
    );
}

#[test]
fn restart_reuses_the_ca_and_the_old_kubeconfig_keeps_working() {
    let mut s = Server::start(false, &[]);
    let tls = s.data_dir().join("tls");
    let ca = std::fs::read(tls.join("server-ca.crt")).unwrap();
    let client_ca = std::fs::read(tls.join("client-ca.crt")).unwrap();
    let serving = std::fs::read(tls.join("serving-kube-apiserver.crt")).unwrap();
    let token = std::fs::read(s.data_dir().join("token")).unwrap();
    let old = s.dir.join("old-kubeconfig.yaml");
    std::fs::copy(s.kubeconfig(), &old).unwrap();

    s.stop();
    s.extra = vec!["--write-kubeconfig-mode".into(), "640".into()];
    s.spawn();
    assert_eq!(std::fs::read(tls.join("server-ca.crt")).unwrap(), ca);
    assert_eq!(std::fs::read(tls.join("client-ca.crt")).unwrap(), client_ca);
    assert_eq!(std::fs::read(s.data_dir().join("token")).unwrap(), token);
    assert_eq!(mode(&s.kubeconfig()), 0o640);
    let out = s.kubectl_with(&old, &["get", "--raw", "/readyz"]);
    assert!(out.status.success(), "old kubeconfig: {}", stderr(&out));
    assert_eq!(stdout(&out), "ok");

    // A new --tls-san: the serving certificate is issued again (same CA), and names it.
    s.stop();
    s.extra = vec!["--tls-san".into(), "api.barge.test".into()];
    s.spawn();
    let now = std::fs::read(tls.join("serving-kube-apiserver.crt")).unwrap();
    assert_ne!(now, serving);
    assert_eq!(std::fs::read(tls.join("server-ca.crt")).unwrap(), ca);
    let out = curl(&[
        "-s",
        "--cacert",
        tls.join("server-ca.crt").to_str().unwrap(),
        "--resolve",
        &format!("api.barge.test:{}:127.0.0.1", s.port),
        &format!("https://api.barge.test:{}/readyz", s.port),
    ]);
    assert_eq!(stdout(&out), "ok", "{}", stderr(&out));
    let out = s.kubectl_with(&old, &["get", "--raw", "/readyz"]);
    assert_eq!(stdout(&out), "ok", "{}", stderr(&out));
}

#[test]
fn a_wrong_bearer_token_is_401_and_the_join_token_is_accepted() {
    let s = Server::start(false, &["--token", "K10abc::server:s3cret-join"]);
    let ca = s.data_dir().join("tls/server-ca.crt");
    let get = |auth: Option<&str>| {
        let mut args = vec![
            "-s".to_string(),
            "-w".into(),
            " %{http_code}".into(),
            "--cacert".into(),
            ca.display().to_string(),
        ];
        if let Some(a) = auth {
            args.push("-H".into());
            args.push(format!("Authorization: {a}"));
        }
        args.push(format!("{}/readyz", s.url()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        stdout(&curl(&args))
    };
    let body = get(Some("Bearer not-the-token"));
    let (json, code) = body.rsplit_once(' ').unwrap();
    assert_eq!(code, "401", "{body}");
    let status: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["apiVersion"], "v1");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(status["code"], 401);
    assert_eq!(get(Some("Bearer K10abc::server:s3cret-join")), "ok 200");
    assert_eq!(get(Some("Bearer s3cret-join")), "ok 200");
    // No credentials: anonymous, and the API server decides (health is public).
    assert_eq!(get(None), "ok 200");
    // The same through kubectl: a kubeconfig with a wrong token is refused.
    let kc = s.dir.join("bad-token.yaml");
    let good = std::fs::read_to_string(s.kubeconfig()).unwrap();
    let user_at = good.find("users:").unwrap();
    std::fs::write(
        &kc,
        format!(
            "{}users:\n- name: default\n  user:\n    token: wrong\n",
            &good[..user_at]
        ),
    )
    .unwrap();
    let out = s.kubectl_with(&kc, &["get", "--raw", "/readyz"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Unauthorized"), "{}", stderr(&out));
    // The token is not written to the data dir when it was given.
    assert!(!s.data_dir().join("token").exists());
}

#[test]
fn a_client_certificate_from_another_ca_fails_the_handshake() {
    let a = Server::start(false, &[]);
    // A second cluster: its admin certificate comes from a different client CA.
    let b = Server::start(false, &[]);
    let a_tls = a.data_dir().join("tls");
    let b_tls = b.data_dir().join("tls");
    let out = curl(&[
        "-s",
        "--cacert",
        a_tls.join("server-ca.crt").to_str().unwrap(),
        "--cert",
        b_tls.join("client-admin.crt").to_str().unwrap(),
        "--key",
        b_tls.join("client-admin.key").to_str().unwrap(),
        &format!("{}/readyz", a.url()),
    ]);
    assert!(
        !out.status.success() && stdout(&out).is_empty(),
        "a foreign certificate was accepted: {} {}",
        stdout(&out),
        stderr(&out)
    );
    // curl: 35 (handshake), or with TLS 1.3 (the client's certificate is checked after the
    // client finished) 55/56 (the server's alert while sending or receiving).
    assert!(
        matches!(out.status.code(), Some(35) | Some(55) | Some(56)),
        "{:?}",
        out.status
    );
    // (UnknownIssuer, or BadSignature when both CAs were made in the same second and so
    // share their name.) The server logs it after sending its alert, so curl may have exited
    // before the line is written: it is waited for.
    let logged = |log: &str| {
        log.lines()
            .any(|l| l.contains("TLS handshake failed: invalid peer certificate"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut log = a.log();
    while !logged(&log) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        log = a.log();
    }
    assert!(
        logged(&log),
        "no handshake failure logged:\n{}",
        log.lines()
            .filter(|l| l.contains("barge_server"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Its own admin certificate is fine.
    let out = curl(&[
        "-s",
        "--cacert",
        a_tls.join("server-ca.crt").to_str().unwrap(),
        "--cert",
        a_tls.join("client-admin.crt").to_str().unwrap(),
        "--key",
        a_tls.join("client-admin.key").to_str().unwrap(),
        &format!("{}/readyz", a.url()),
    ]);
    assert_eq!(stdout(&out), "ok", "{}", stderr(&out));
    // And a kubeconfig pointing at the wrong cluster's CA does not trust the server.
    let out = a.kubectl_with(
        &b.kubeconfig(),
        &["get", "--raw", "/readyz", "-s", &a.url()],
    );
    assert!(!out.status.success(), "{}", stdout(&out));
}

#[test]
fn the_same_process_serves_the_docker_engine_api() {
    let s = Server::start(true, &[]);
    let out = s.docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        out.status.success(),
        "docker version: {}\n{}",
        stderr(&out),
        tail(&s.log(), 30)
    );
    assert!(!stdout(&out).trim().is_empty());
    let out = s.docker(&["ps", "-a"]);
    assert!(out.status.success(), "docker ps: {}", stderr(&out));
    assert!(stdout(&out).starts_with("CONTAINER ID"), "{}", stdout(&out));
    // One process: the socket's server is the API server's process.
    let pid = s.child.as_ref().unwrap().id();
    let out = s.docker(&["info", "--format", "{{.DockerRootDir}}"]);
    assert_eq!(
        stdout(&out).trim(),
        s.dir.join("data").display().to_string(),
        "{}",
        stderr(&out)
    );
    // The listening socket at -H belongs to the server's process (/proc/net/unix: the inode
    // of the socket listening on that path — flag __SO_ACCEPTCON; connections accepted on it
    // carry the path too — among the process' fds).
    let sock = s.sock().display().to_string();
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap();
    let inode = unix
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(7) == Some(&sock.as_str()) && f.get(3) == Some(&"00010000"))
        .map(|f| f[6].to_string())
        .unwrap_or_else(|| panic!("{sock} not listening in /proc/net/unix"));
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        fds.contains(&format!("socket:[{inode}]")),
        "the Docker socket {sock} (inode {inode}) is not the server's: {fds:?}"
    );
    let out = s.kubectl_with(&s.kubeconfig(), &["get", "--raw", "/readyz"]);
    assert_eq!(stdout(&out), "ok", "{}", stderr(&out));
    // SIGTERM stops both; the engine removes its socket.
    let mut s = s;
    s.stop();
    assert!(!s.sock().exists(), "the Docker socket outlived the server");
}

/// What only the whole server shows: objects survive a restart (the SQLite datastore), the
/// in-process garbage collector removes a dependent whose owner was deleted
/// (`ownerReferences`, background propagation), and `kubectl explain` reads the served
/// OpenAPI v3 schemas.
#[test]
fn objects_persist_the_garbage_collector_runs_and_explain_works() {
    let mut s = Server::start(false, &[]);
    let kc = s.kubeconfig();
    s.k(&["create", "configmap", "owner", "--from-literal=a=1"]);
    let uid = s.k(&[
        "get",
        "configmap",
        "owner",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let dependent = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"dependent","ownerReferences":[{{"apiVersion":"v1","kind":"ConfigMap","name":"owner","uid":"{uid}"}}]}},"data":{{"b":"2"}}}}"#
    );
    let manifest = s.dir.join("dependent.json");
    std::fs::write(&manifest, dependent).unwrap();
    s.k(&["create", "-f", manifest.to_str().unwrap()]);

    // A restart keeps both (SQLite in the data dir).
    s.stop();
    s.spawn();
    assert_eq!(
        s.k(&[
            "get",
            "configmaps",
            "owner",
            "dependent",
            "-o",
            "jsonpath={.items[*].metadata.name}"
        ]),
        "owner dependent"
    );

    // Deleting the owner lets the collector delete the dependent.
    s.k(&["delete", "configmap", "owner"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = s.kubectl_with(&kc, &["get", "configmap", "dependent"]);
        if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dependent is still there:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // explain walks the served schema.
    let explained = s.k(&["explain", "deployment.spec.strategy"]);
    assert!(explained.contains("KIND:       Deployment"), "{explained}");
    assert!(explained.contains("rollingUpdate"), "{explained}");
}

/// `kubectl auth can-i` and `kubectl auth whoami` (SelfSubjectAccessReview and
/// SelfSubjectReview) answer for the kubeconfig's admin, and for the join token's bootstrap
/// identity, which RBAC does not let read secrets.
#[test]
fn auth_can_i_and_whoami() {
    let s = Server::start(false, &["--token", "K10abc::server:s3cret-join"]);
    let kc = s.kubeconfig();
    let out = s.kubectl_with(
        &kc,
        &["auth", "can-i", "create", "deployments", "-n", "default"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "yes",
        "{out:?}"
    );
    let who = [
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ];
    let out = s.kubectl_with(&kc, &who);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "system:admin",
        "{out:?}"
    );
    let server = format!("--server=https://127.0.0.1:{}", s.port);
    let as_join = |args: &[&str]| {
        let mut all = vec![
            server.as_str(),
            "--insecure-skip-tls-verify",
            "--token=s3cret-join",
        ];
        all.extend_from_slice(args);
        s.kubectl_with(Path::new("/dev/null"), &all)
    };
    let out = as_join(&["auth", "can-i", "list", "secrets"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no", "{out:?}");
    let out = as_join(&who);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "system:bootstrap:barge-join",
        "{out:?}"
    );
}

/// The Kubernetes Python client (PyPI `kubernetes`, as its users run it) against the server:
/// list, create, a dict `PATCH` (sent as a strategic merge patch: the container is merged by
/// name and keeps its ports), watch, delete and the 404 after it; a new object carries its
/// kind's zero status (`V1CronJobStatus`, not `None`) and the in-process controllers write as
/// `kube-controller-manager` in `managedFields`.
#[test]
fn the_python_client_lists_creates_patches_watches_and_deletes() {
    let s = Server::start(false, &[]);
    let script = format!(
        r#"
from kubernetes import client, config, watch
config.load_kube_config({kc:?})
v1 = client.CoreV1Api()
print([n.metadata.name for n in v1.list_namespace().items])
v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py"), data={{"a": "1"}}))
v1.patch_namespaced_config_map("py", "default", {{"data": {{"b": "2"}}}})
print(v1.read_namespaced_config_map("py", "default").data)
apps = client.AppsV1Api()
dep = {{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "d"}},
  "spec": {{"replicas": 1, "selector": {{"matchLabels": {{"a": "b"}}}}, "template": {{"metadata": {{"labels": {{"a": "b"}}}},
  "spec": {{"containers": [{{"name": "c", "image": "i", "ports": [{{"containerPort": 80}}]}}]}}}}}}}}
apps.create_namespaced_deployment("default", dep)
apps.patch_namespaced_deployment("d", "default", {{"spec": {{"template": {{"spec": {{"containers": [{{"name": "c", "image": "j"}}]}}}}}}}})
c = apps.read_namespaced_deployment("d", "default").spec.template.spec.containers[0]
print(c.image, c.ports[0].container_port)
import time
for _ in range(100):
    ms = sorted({{m.manager for m in apps.read_namespaced_deployment("d", "default").metadata.managed_fields}})
    if "kube-controller-manager" in ms:
        break
    time.sleep(0.1)
print(ms)
batch = client.BatchV1Api()
batch.create_namespaced_cron_job("default", {{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {{"name": "cj"}},
  "spec": {{"schedule": "0 0 1 1 *", "jobTemplate": {{"spec": {{"template": {{"spec": {{"restartPolicy": "Never", "containers": [{{"name": "c", "image": "i"}}]}}}}}}}}}}}})
print(type(batch.read_namespaced_cron_job("cj", "default").status).__name__)
svc = v1.create_namespaced_service("default", {{"metadata": {{"name": "s"}}, "spec": {{"ports": [{{"port": 80}}]}}}})
print(type(svc.status.load_balancer).__name__, type(v1.read_namespaced_service("s", "default").status.load_balancer).__name__)
for ev in watch.Watch().stream(v1.list_namespaced_config_map, "default", field_selector="metadata.name=py", timeout_seconds=2):
    print(ev["type"], ev["object"].metadata.name)
v1.delete_namespaced_config_map("py", "default")
try:
    v1.read_namespaced_config_map("py", "default")
except client.exceptions.ApiException as e:
    print(e.status, e.reason)
"#,
        kc = s.kubeconfig().display().to_string()
    );
    let out = python(&script);
    assert_eq!(
        out,
        "['default', 'kube-node-lease', 'kube-public', 'kube-system']\n{'a': '1', 'b': '2'}\nj 80\n\
         ['OpenAPI-Generator', 'kube-controller-manager']\nV1CronJobStatus\n\
         V1LoadBalancerStatus V1LoadBalancerStatus\nADDED py\n404 Not Found\n",
        "{out}\n{}",
        s.log()
    );
}

/// `kubectl delete --cascade=orphan` leaves the dependent without its owner reference;
/// `--cascade=foreground` deletes the dependent and then the owner (the API server sets the
/// `orphan`/`foregroundDeletion` finalizers, the garbage collector finishes them).
#[test]
fn delete_cascade_orphan_and_foreground() {
    let s = Server::start(false, &[]);
    let kc = s.kubeconfig();
    let owned = |owner: &str, name: &str| {
        s.k(&["create", "configmap", owner]);
        let uid = s.k(&["get", "configmap", owner, "-o", "jsonpath={.metadata.uid}"]);
        let manifest = s.dir.join(format!("{name}.json"));
        std::fs::write(
            &manifest,
            format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","ownerReferences":[{{"apiVersion":"v1","kind":"ConfigMap","name":"{owner}","uid":"{uid}","blockOwnerDeletion":true}}]}}}}"#
            ),
        )
        .unwrap();
        s.k(&["create", "-f", manifest.to_str().unwrap()]);
    };
    owned("o1", "kept");
    s.k(&[
        "delete",
        "configmap",
        "o1",
        "--cascade=orphan",
        "--timeout=30s",
    ]);
    assert_eq!(
        s.k(&[
            "get",
            "configmap",
            "kept",
            "-o",
            "jsonpath={.metadata.ownerReferences}"
        ]),
        ""
    );
    owned("o2", "gone");
    s.k(&[
        "delete",
        "configmap",
        "o2",
        "--cascade=foreground",
        "--timeout=30s",
    ]);
    let out = s.kubectl_with(&kc, &["get", "configmap", "gone"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound"),
        "{out:?}\n{}",
        s.log()
    );
}

/// `kubectl create token` (TokenRequest) issues a ServiceAccount token the server accepts:
/// `auth whoami` names the ServiceAccount, RBAC refuses it what no binding grants
/// (`kubectl get` is Forbidden) until a RoleBinding does, and the token stops working once
/// its ServiceAccount is deleted.
#[test]
fn service_account_tokens_and_rbac() {
    let s = Server::start(false, &[]);
    s.k(&["create", "serviceaccount", "bot"]);
    let token = s.k(&["create", "token", "bot"]);
    assert_eq!(token.split('.').count(), 3, "{token}");
    let server = format!("--server=https://127.0.0.1:{}", s.port);
    let flag = format!("--token={token}");
    let as_bot = |args: &[&str]| {
        let mut all = vec![server.as_str(), "--insecure-skip-tls-verify", flag.as_str()];
        all.extend_from_slice(args);
        s.kubectl_with(Path::new("/dev/null"), &all)
    };
    let out = as_bot(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "system:serviceaccount:default:bot",
        "{out:?}"
    );
    let out = as_bot(&["get", "configmaps"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "configmaps is forbidden: User \"system:serviceaccount:default:bot\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
        ),
        "{out:?}"
    );
    s.k(&[
        "create",
        "rolebinding",
        "bot-view",
        "--clusterrole=view",
        "--serviceaccount=default:bot",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !as_bot(&["get", "configmaps"]).status.success() {
        assert!(Instant::now() < deadline, "the binding never took effect");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!as_bot(&["get", "secrets"]).status.success());
    s.k(&["delete", "serviceaccount", "bot"]);
    let out = as_bot(&["get", "configmaps"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{out:?}"
    );
}

/// Waits up to 20 s for `f` to hold.
fn eventually(what: &str, s: &Server, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "{what}\n{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ServiceAccount controller and the root CA publisher fill every namespace and put back
/// what is deleted or edited; a pod created at once in a new namespace gets the `default`
/// ServiceAccount and its token volume; a missing ServiceAccount refuses the pod.
#[test]
fn namespaces_get_the_default_service_account_and_the_root_ca() {
    let s = Server::start(false, &[]);
    let kc = s.kubeconfig();
    let ca = std::fs::read_to_string(s.data_dir().join("tls/server-ca.crt")).unwrap();
    s.k(&["create", "namespace", "fresh"]);
    s.k(&["run", "p", "--image=busybox", "-n", "fresh"]);
    assert_eq!(
        s.k(&[
            "get",
            "pod",
            "p",
            "-n",
            "fresh",
            "-o",
            "jsonpath={.spec.serviceAccountName} {.spec.volumes[0].projected.sources[1].configMap.name} {.spec.containers[0].volumeMounts[0].mountPath}",
        ]),
        "default kube-root-ca.crt /var/run/secrets/kubernetes.io/serviceaccount"
    );
    let ca_of = |ns: &str| {
        let out = s.kubectl_with(
            &kc,
            &[
                "get",
                "configmap",
                "kube-root-ca.crt",
                "-n",
                ns,
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for ns in ["default", "kube-system", "fresh"] {
        eventually(&format!("kube-root-ca.crt in {ns}"), &s, || {
            ca_of(ns).trim() == ca.trim()
        });
    }
    // Deleted, the ServiceAccount comes back (a new uid); edited, the CA is put back.
    let uid = s.k(&[
        "get",
        "sa",
        "default",
        "-n",
        "fresh",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    s.k(&["delete", "sa", "default", "-n", "fresh"]);
    eventually("default recreated", &s, || {
        let out = s.kubectl_with(
            &kc,
            &[
                "get",
                "sa",
                "default",
                "-n",
                "fresh",
                "-o",
                "jsonpath={.metadata.uid}",
            ],
        );
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() != uid
    });
    s.k(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "fresh",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"edited","extra":"x"}}"#,
    ]);
    eventually("kube-root-ca.crt reconciled", &s, || {
        ca_of("fresh").trim() == ca.trim()
    });
    let out = s.kubectl_with(
        &kc,
        &[
            "run",
            "q",
            "--image=busybox",
            "-n",
            "fresh",
            r#"--overrides={"spec":{"serviceAccountName":"nope"}}"#,
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            r#"pods "q" is forbidden: error looking up service account fresh/nope: serviceaccount "nope" not found"#
        ),
        "{out:?}"
    );
}

/// The quota controller keeps a ResourceQuota's status current; the admission refuses what
/// exceeds it.
#[test]
fn resource_quota_status_and_enforcement() {
    let s = Server::start(false, &[]);
    let kc = s.kubeconfig();
    s.k(&["create", "namespace", "q"]);
    s.k(&[
        "create",
        "quota",
        "small",
        "-n",
        "q",
        "--hard=pods=1,configmaps=3",
    ]);
    s.k(&["run", "p1", "--image=busybox", "-n", "q"]);
    let used = || {
        let out = s.kubectl_with(
            &kc,
            &[
                "get",
                "quota",
                "small",
                "-n",
                "q",
                "-o",
                "jsonpath={.status.hard.pods} {.status.used.pods} {.status.used.configmaps}",
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // `kube-root-ca.crt` is one ConfigMap.
    eventually("status.used", &s, || used() == "1 1 1");
    let out = s.kubectl_with(&kc, &["run", "p2", "--image=busybox", "-n", "q"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            r#"pods "p2" is forbidden: exceeded quota: small, requested: pods=1, used: pods=1, limited: pods=1"#
        ),
        "{out:?}"
    );
    s.k(&["delete", "pod", "p1", "-n", "q"]);
    eventually("status.used after delete", &s, || used() == "1 0 1");
}

/// The scheduler in `barge server` (no agent: the Nodes are API objects made by the test):
/// pods spread over the nodes that fit, nodeSelector and taints are honoured, a pod too big for
/// any node stays Pending with kube's exact `FailedScheduling` message (as `kubectl describe`
/// shows it) and `PodScheduled=False/Unschedulable`, a cordoned node takes no pod and the
/// waiting pod is placed once a node is uncordoned; the scheduler holds the
/// `kube-system/kube-scheduler` Lease.
#[test]
fn the_scheduler_places_pods_as_kube_scheduler() {
    // Its Nodes have no kubelet: the node lifecycle controller must not mark them unreachable.
    let s = Server::start(false, &["--node-monitor-grace-period", "1h"]);
    let file = |name: &str, body: String| {
        let p = s.dir.join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    // Three nodes: n1 (zone a, ssd), n2 (zone b), n3 (4 cpus, tainted dedicated=gpu).
    for (name, labels, taints, cpu) in [
        ("n1", r#"{"zone":"a","disk":"ssd"}"#, "[]", "2"),
        ("n2", r#"{"zone":"b"}"#, "[]", "2"),
        (
            "n3",
            r#"{"zone":"c"}"#,
            r#"[{"key":"dedicated","value":"gpu","effect":"NoSchedule"}]"#,
            "4",
        ),
    ] {
        let node = format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}","labels":{labels}}},"spec":{{"taints":{taints}}}}}"#
        );
        s.k(&["create", "-f", &file(&format!("{name}.json"), node)]);
        let status = format!(
            r#"{{"status":{{"capacity":{{"cpu":"{cpu}","memory":"4Gi","pods":"110"}},"allocatable":{{"cpu":"{cpu}","memory":"4Gi","pods":"110"}}}}}}"#
        );
        s.k(&[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ]);
    }
    let pod = |name: &str, cpu: &str, extra: &str| {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{{extra}"containers":[{{"name":"c","image":"busybox","resources":{{"requests":{{"cpu":"{cpu}"}}}}}}]}}}}"#
        );
        s.k(&["create", "-f", &file(&format!("{name}.json"), body)]);
    };
    let node_of = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = s.k(&["get", "pod", name, "-o", "jsonpath={.spec.nodeName}"]);
            if !n.is_empty() {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not scheduled:\n{}\n{}",
                s.k(&["describe", "pod", name]),
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let failed_message = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = s.k(&[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={name}"),
                "-o",
                "jsonpath={.items[?(@.reason==\"FailedScheduling\")].message}",
            ]);
            if !m.is_empty() {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no FailedScheduling for {name}:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // Spread: four pods land on n1 and n2 (least allocated), never on the tainted n3.
    for i in 0..4 {
        pod(&format!("web-{i}"), "100m", "");
    }
    let placed: Vec<String> = (0..4).map(|i| node_of(&format!("web-{i}"))).collect();
    assert_eq!(
        placed.iter().filter(|n| *n == "n1").count(),
        2,
        "{placed:?}"
    );
    assert_eq!(
        placed.iter().filter(|n| *n == "n2").count(),
        2,
        "{placed:?}"
    );
    let conditions = s.k(&[
        "get",
        "pod",
        "web-0",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].status}",
    ]);
    assert_eq!(conditions, "True");
    let events = s.k(&["describe", "pod", "web-0"]);
    assert!(
        events.contains(&format!(
            "Successfully assigned default/web-0 to {}",
            placed[0]
        )),
        "{events}"
    );
    assert!(events.contains("default-scheduler"), "{events}");

    // nodeSelector; a toleration plus required node affinity by name.
    pod("ssd", "100m", r#""nodeSelector":{"disk":"ssd"},"#);
    assert_eq!(node_of("ssd"), "n1");
    pod(
        "gpu",
        "100m",
        r#""tolerations":[{"key":"dedicated","operator":"Equal","value":"gpu","effect":"NoSchedule"}],"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchFields":[{"key":"metadata.name","operator":"In","values":["n3"]}]}]}}},"#,
    );
    assert_eq!(node_of("gpu"), "n3");

    // Too big for every node: Pending, with kube's message and condition.
    pod("big", "100", "");
    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    assert_eq!(failed_message("big"), want);
    let described = s.k(&["describe", "pod", "big"]);
    assert!(described.contains("FailedScheduling"), "{described}");
    assert!(described.contains(want), "{described}");
    assert_eq!(
        s.k(&[
            "get", "pod", "big", "-o",
            "jsonpath={.status.phase} {.status.conditions[?(@.type==\"PodScheduled\")].status} {.status.conditions[?(@.type==\"PodScheduled\")].reason}",
        ]),
        "Pending False Unschedulable"
    );

    // Cordon: n1 and n2 take nothing; uncordoning n2 lets the waiting pod in.
    s.k(&["cordon", "n1", "n2"]);
    // The scheduler sees nodes and pods through separate watches: let the cordon arrive.
    std::thread::sleep(Duration::from_secs(1));
    pod("late", "100m", "");
    assert_eq!(
        failed_message("late"),
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) were unschedulable. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    s.k(&["uncordon", "n2"]);
    assert_eq!(node_of("late"), "n2");

    // The scheduler leads through its Lease.
    let holder = s.k(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-scheduler",
        "-o",
        "jsonpath={.spec.holderIdentity} {.spec.leaseDurationSeconds}",
    ]);
    assert!(holder.ends_with(" 15") && holder.len() > 3, "{holder}");
}

/// PriorityClass and preemption: the Priority admission fills `spec.priority`; a pod of a
/// higher class that fits nowhere evicts a lower-priority pod (a `Preempted` event on it, its
/// deletion) and is nominated to the node, then bound once the victim is gone (no agent here,
/// so the test finishes the victim's graceful deletion itself).
#[test]
fn a_higher_priority_pod_preempts_a_lower_one() {
    // Its Nodes have no kubelet: the node lifecycle controller must not mark them unreachable.
    let s = Server::start(false, &["--node-monitor-grace-period", "1h"]);
    let file = |name: &str, body: String| {
        let p = s.dir.join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    s.k(&[
        "create",
        "-f",
        &file(
            "n1.json",
            r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"}}"#.into(),
        ),
    ]);
    s.k(&[
        "patch",
        "node",
        "n1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"allocatable":{"cpu":"1","memory":"4Gi","pods":"110"}}}"#,
    ]);
    s.k(&["create", "priorityclass", "low", "--value=10"]);
    s.k(&["create", "priorityclass", "high", "--value=1000"]);
    let pod = |name: &str, class: &str, cpu: &str| {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"priorityClassName":"{class}","containers":[{{"name":"c","image":"busybox","resources":{{"requests":{{"cpu":"{cpu}"}}}}}}]}}}}"#
        );
        s.k(&["create", "-f", &file(&format!("{name}.json"), body)]);
    };
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "{what}:\n{}", s.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let get = |args: &[&str]| s.k(args);
    pod("victim", "low", "800m");
    wait("victim bound", &|| {
        get(&["get", "pod", "victim", "-o", "jsonpath={.spec.nodeName}"]) == "n1"
    });
    pod("vip", "high", "500m");
    assert_eq!(
        get(&["get", "pod", "vip", "-o", "jsonpath={.spec.priority}"]),
        "1000"
    );
    wait("vip nominated", &|| {
        get(&[
            "get",
            "pod",
            "vip",
            "-o",
            "jsonpath={.status.nominatedNodeName}",
        ]) == "n1"
    });
    let vip_uid = get(&["get", "pod", "vip", "-o", "jsonpath={.metadata.uid}"]);
    let victim_events = get(&["describe", "pod", "victim"]);
    assert!(
        victim_events.contains(&format!("Preempted by pod {vip_uid} on node n1")),
        "{victim_events}"
    );
    assert!(!get(&[
        "get",
        "pod",
        "victim",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}"
    ])
    .is_empty());
    let vip_events = get(&["describe", "pod", "vip"]);
    assert!(
        vip_events.contains("0/1 nodes are available: 1 Insufficient cpu."),
        "{vip_events}"
    );
    // The victim goes (its kubelet would confirm; here the test does); the vip is bound.
    s.k(&["delete", "pod", "victim", "--grace-period=0", "--force"]);
    wait("vip bound", &|| {
        get(&["get", "pod", "vip", "-o", "jsonpath={.spec.nodeName}"]) == "n1"
    });
}

/// `kill -9` of `barge server` under write load, on SQLite (the default) and on a real etcd
/// ([`kill_9_under_write_load`]).
#[test]
fn kill_9_under_write_load_loses_no_acknowledged_write() {
    kill_9_under_write_load(&[]);
}

#[test]
fn kill_9_under_write_load_on_etcd_loses_no_acknowledged_write() {
    let etcd = common::etcd::Etcd::start(1);
    kill_9_under_write_load(&["--datastore-endpoint", &etcd.endpoints()]);
}

/// `kill -9` of `barge server` (its datastore flags in `extra`) under write load: 8
/// Python-client writers create ConfigMaps and bump a counter each, printing every write the
/// server acknowledged, while a watcher records the events it saw and its last
/// resourceVersion. After the restart, every acknowledged object is there whole (each counter
/// at least at its last acknowledged value, at most one further), and the watcher, resuming
/// from its last resourceVersion (or relisting after a 410), sees every acknowledged object.
fn kill_9_under_write_load(extra: &[&str]) {
    let mut s = Server::start(false, extra);
    let kc = s.kubeconfig().display().to_string();
    let load = format!(
        r#"
import sys, threading
from kubernetes import client, config, watch
config.load_kube_config({kc:?})
v1 = client.CoreV1Api()
lock = threading.Lock()
def out(*a):
    with lock:
        print(*a, flush=True)
def writer(t):
    name = "ctr-%d" % t
    v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={{"n": "0"}}))
    out("ctr", name, 0)
    i = 0
    try:
        while True:
            i += 1
            n = "w-%d-%d" % (t, i)
            v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=n), data={{"v": n * 20}}))
            out("cm", n)
            v1.patch_namespaced_config_map(name, "default", {{"data": {{"n": str(i)}}}})
            out("ctr", name, i)
    except Exception:
        pass
def watcher():
    l = v1.list_namespaced_config_map("default")
    rv = l.metadata.resource_version
    for c in l.items:
        out("seen", c.metadata.name, rv)
    out("rv", rv)
    try:
        for ev in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=60):
            out("seen", ev["object"].metadata.name, ev["object"].metadata.resource_version)
    except Exception:
        pass
ts = [threading.Thread(target=writer, args=(t,)) for t in range(8)] + [threading.Thread(target=watcher)]
for t in ts: t.start()
for t in ts: t.join()
"#
    );
    let mut child = Command::new(&*PYTHON)
        .args(["-c", &load])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(s.dir.join("load.err")).unwrap())
        .spawn()
        .unwrap();
    // Kill once 200 creates were acknowledged (or after 30 s), mid-load.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut creates = 0;
    while creates < 200 && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        creates += usize::from(line.starts_with("cm "));
        text.push_str(&line);
        text.push('\n');
    }
    let mut server = s.child.take().unwrap();
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    // The writers fail once the server is gone and the load ends.
    for line in lines {
        text.push_str(&line.unwrap());
        text.push('\n');
    }
    child.wait().unwrap();
    let mut acked = Vec::new();
    let mut counters = std::collections::BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut last_rv = String::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["cm", n] => acked.push(n.to_string()),
            ["ctr", n, i] => {
                counters.insert(n.to_string(), i.parse::<u64>().unwrap());
            }
            ["rv", rv] => last_rv = rv.to_string(),
            ["seen", n, rv] => {
                seen.insert(n.to_string());
                last_rv = rv.to_string();
            }
            _ => panic!("unexpected line {line:?}"),
        }
    }
    assert!(
        acked.len() >= 20,
        "only {} writes before the kill",
        acked.len()
    );
    assert!(!last_rv.is_empty());

    s.spawn();
    let check = format!(
        r#"
import json
from kubernetes import client, config, watch
config.load_kube_config({kc:?})
v1 = client.CoreV1Api()
items = {{c.metadata.name: c.data for c in v1.list_namespaced_config_map("default").items}}
seen = []
gone = False
try:
    for ev in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version={last_rv:?}, timeout_seconds=2):
        seen.append(ev["object"].metadata.name)
except client.exceptions.ApiException as e:
    if e.status != 410:
        raise
    gone = True
    seen = list(items)
print(json.dumps({{"items": items, "seen": seen, "gone": gone}}))
"#
    );
    let after: serde_json::Value = serde_json::from_str(&python(&check)).unwrap();
    let items = after["items"].as_object().unwrap();
    for n in &acked {
        let data = items
            .get(n)
            .unwrap_or_else(|| panic!("acknowledged {n} lost; log:\n{}", s.log()));
        assert_eq!(data["v"].as_str().unwrap(), n.repeat(20), "{n} whole");
    }
    for (name, n) in &counters {
        let stored: u64 = items[name]["n"].as_str().unwrap().parse().unwrap();
        assert!(
            stored == *n || stored == n + 1,
            "{name}: acknowledged {n}, stored {stored}"
        );
    }
    // The watcher, resuming from its last resourceVersion, misses nothing acknowledged.
    let resumed: std::collections::BTreeSet<String> = after["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for n in &acked {
        assert!(
            seen.contains(n) || resumed.contains(n),
            "the watcher missed {n} (resumed from {last_rv}, 410: {})",
            after["gone"]
        );
    }
}

/// kube-rs, as a Rust user's program uses it: over HTTPS with the kubeconfig `barge server`
/// wrote (its CA, the admin client certificate). `/version`; a ConfigMap created, merge-patched,
/// server-side applied (the field manager in managedFields), listed by label and deleted; a
/// kube-runtime watcher sees each of those changes.
#[test]
fn kube_rs_over_https_with_the_written_kubeconfig() {
    use futures_util::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
    use kube::runtime::watcher;

    let s = Server::start(false, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kc = kube::config::Kubeconfig::read_from(s.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        assert_eq!(config.cluster_url.scheme_str(), Some("https"));
        let client = kube::Client::try_from(config).unwrap();
        let version = client.apiserver_version().await.unwrap();
        assert_eq!(
            (version.major.as_str(), version.minor.as_str()),
            ("1", "33")
        );

        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stream = watcher(cms.clone(), watcher::Config::default().labels("t=kube-rs"));
        let watching = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let _ = tx.send(ev.unwrap());
            }
        });
        // The watcher's initial list is done before the changes start.
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
            if matches!(ev.unwrap().unwrap(), watcher::Event::InitDone) {
                break;
            }
        }

        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "labels": {"t": "kube-rs"}},
            "data": {"k": "v1"}
        }))
        .unwrap();
        let created = cms.create(&PostParams::default(), &cm).await.unwrap();
        assert!(created.metadata.uid.is_some());
        cms.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"k": "v2"}})),
        )
        .await
        .unwrap();
        let applied = cms
            .patch(
                "a",
                &PatchParams::apply("kube-rs-test"),
                &Patch::Apply(serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "a"},
                    "data": {"other": "x"}
                })),
            )
            .await
            .unwrap();
        let data = applied.data.clone().unwrap();
        assert_eq!(
            (data["k"].as_str(), data["other"].as_str()),
            ("v2", "x"),
            "{data:?}"
        );
        let managers: Vec<String> = applied
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.manager)
            .collect();
        assert!(managers.iter().any(|m| m == "kube-rs-test"), "{managers:?}");
        let listed = cms
            .list(&ListParams::default().labels("t=kube-rs"))
            .await
            .unwrap();
        assert_eq!(listed.items.len(), 1);
        cms.delete("a", &DeleteParams::default()).await.unwrap();

        // What the watcher saw: the create, both changes, the delete.
        let mut seen = Vec::new();
        while !seen.iter().any(|s: &String| s.starts_with("delete")) {
            let ev = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("the watcher saw only {seen:?}"))
                .unwrap();
            match ev {
                watcher::Event::Apply(c) => {
                    let d = c.data.unwrap_or_default();
                    seen.push(format!(
                        "apply k={} other={}",
                        d.get("k").map_or("-", String::as_str),
                        d.get("other").map_or("-", String::as_str)
                    ));
                }
                watcher::Event::Delete(_) => seen.push("delete".into()),
                _ => {}
            }
        }
        assert_eq!(
            seen,
            [
                "apply k=v1 other=-",
                "apply k=v2 other=-",
                "apply k=v2 other=x",
                "delete"
            ]
        );
        watching.abort();
    });
}

/// A CRD with a CEL validation rule (`x-kubernetes-validations`), applied with kubectl; a
/// custom resource that breaks the rule is refused with kube's error as kubectl prints it,
/// and one that keeps it is created.
#[test]
fn kubectl_meets_a_crd_cel_rule() {
    let s = Server::start(false, &[]);
    s.apply(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.replicas
              message: replicas must be at least minReplicas
            properties:
              replicas: {type: integer}
              minReplicas: {type: integer}
"#,
    );
    s.k(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.com",
        "--timeout=60s",
    ]);
    let gadget = |name: &str, replicas: u32| {
        format!(
            "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  minReplicas: 3\n"
        )
    };
    // Until kubectl's discovery sees the new kind, apply fails with "no matches".
    let out = s.until(60, "the Gadget kind in discovery", || {
        let (ok, out) = s.try_apply(&gadget("bad", 1));
        (ok || !out.contains("no matches for kind")).then_some((ok, out))
    });
    assert!(!out.0, "a gadget breaking the rule was created: {}", out.1);
    assert!(
        out.1.contains(r#"The Gadget "bad" is invalid: spec: Invalid value: "object": replicas must be at least minReplicas"#),
        "{}",
        out.1
    );
    s.apply(&gadget("good", 3));
    assert_eq!(
        s.k(&["get", "gadget", "good", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
}
