//! The preinstalled kubectl (1.32) against barge's API machinery: the router served over
//! plain HTTP on loopback, every request carrying an admin identity (`system:admin`,
//! `system:masters`) as the TLS transport of `barge server` would attach it. Every scenario
//! runs on both datastores `barge server` offers: SQLite (`name::sqlite`) and a real etcd
//! started on loopback (`name::etcd`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

mod common;

use barge_datastore::testing::{Backend, Fixture};
use serde_json::Value;

struct Cluster {
    dir: tempfile::TempDir,
    /// `METHOD path content-type` of every request, for asserting what kubectl sends.
    log: Arc<Mutex<Vec<String>>>,
    // Dropped before the runtime: the store's tasks run on it.
    _fixture: Fixture,
    _rt: tokio::runtime::Runtime,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Cluster {
    fn start(backend: Backend) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let common::Served { port, fixture } =
            rt.block_on(common::serve(backend, |api| api, log.clone()));
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: barge\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: barge\n  context:\n    cluster: barge\n    user: admin\nusers:\n- name: admin\n  user: {{}}\ncurrent-context: barge\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
        Cluster {
            dir,
            log,
            _fixture: fixture,
            _rt: rt,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG");
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        let out = self.command(args).output().expect("run kubectl");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl and returns its stdout, failing the test if it fails.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.ok,
            "kubectl {args:?} failed:\n{}\n{}\nrequests:\n{}",
            out.stdout,
            out.stderr,
            self.log.lock().unwrap().join("\n")
        );
        out.stdout
    }

    fn apply(&self, manifest: &str) -> String {
        let path = self.dir.path().join("manifest.yaml");
        std::fs::write(&path, manifest).unwrap();
        self.ok(&["apply", "-f", path.to_str().unwrap()])
    }
}

backends!(
    kubectl_drives_the_api,
    kubectl_create_subcommands,
    kubectl_server_side_apply,
    kubectl_edit_kustomize_describe,
    kubectl_custom_resources,
    kubectl_impersonation,
    kubectl_types_and_versions,
    kubectl_drain_honours_disruption_budgets,
    kubectl_refuses_invalid_specs,
);

const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  namespace: demo
  labels:
    app: web
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
  namespace: demo
type: Opaque
stringData:
  password: s3cret
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: busybox
"#;

fn kubectl_drives_the_api(backend: Backend) {
    let k = Cluster::start(backend);

    // Discovery.
    let v: Value = serde_json::from_str(&k.ok(&["version", "-o", "json"])).unwrap();
    assert!(v["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap()
        .starts_with("v1.33."));
    let versions = k.ok(&["api-versions"]);
    for gv in ["v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1"] {
        assert!(versions.lines().any(|l| l == gv), "{gv} in:\n{versions}");
    }
    let resources = k.ok(&["api-resources"]);
    let deploy: Vec<&str> = resources
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        deploy,
        vec!["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    {
        // Aggregated discovery served it all: no per-group-version documents were fetched.
        let log = k.log.lock().unwrap();
        assert!(log.iter().any(|l| l.starts_with("GET /apis?")), "{log:?}");
        assert!(
            !log.iter().any(|l| l.starts_with("GET /apis/apps/v1?")),
            "{log:?}"
        );
    }

    // Namespaces and a multi-document apply (first apply = create).
    assert_eq!(
        k.ok(&["create", "namespace", "demo"]),
        "namespace/demo created\n"
    );
    let applied = k.apply(MANIFEST);
    assert_eq!(
        applied,
        "configmap/app-config created\nsecret/app-secret created\nservice/web created\ndeployment.apps/web created\n"
    );
    // kubectl asked for server-side field validation (it found `fieldValidation` in
    // /openapi/v3) and an unknown field is refused as kube-apiserver refuses it.
    let path = k.dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: demo\ndatta:\n  a: b\n",
    )
    .unwrap();
    let bad = k.run(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!bad.ok);
    assert!(
        bad.stderr
            .contains("strict decoding error: unknown field \"datta\""),
        "{}",
        bad.stderr
    );
    // Again, unchanged.
    let again = k.apply(MANIFEST);
    assert!(again.contains("configmap/app-config unchanged"), "{again}");

    // get in every output format.
    let d: Value =
        serde_json::from_str(&k.ok(&["get", "deploy", "web", "-n", "demo", "-o", "json"])).unwrap();
    assert_eq!(d["kind"], "Deployment");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["generation"], 1);
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    let yaml = k.ok(&["get", "cm", "app-config", "-n", "demo", "-o", "yaml"]);
    assert!(
        yaml.contains("greeting: hello") && yaml.contains("name: app-config"),
        "{yaml}"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "2"
    );
    let secret: Value =
        serde_json::from_str(&k.ok(&["get", "secret", "app-secret", "-n", "demo", "-o", "json"]))
            .unwrap();
    assert_eq!(secret["type"], "Opaque");
    let list = k.ok(&["get", "cm,svc,deploy", "-n", "demo", "-o", "name"]);
    assert_eq!(
        list,
        "configmap/app-config\nservice/web\ndeployment.apps/web\n"
    );
    // Server-side printing: kube's columns per kind.
    let wide = k.ok(&["get", "svc", "-n", "demo", "-o", "wide"]);
    let cols = |s: &str, n: usize| -> Vec<String> {
        s.lines()
            .nth(n)
            .unwrap_or("")
            .split("   ")
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    };
    assert_eq!(
        cols(&wide, 0),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR"
        ],
        "{wide}"
    );
    let row = cols(&wide, 1);
    assert_eq!(
        (
            row[0].as_str(),
            row[1].as_str(),
            row[4].as_str(),
            row[6].as_str()
        ),
        ("web", "ClusterIP", "80/TCP", "app=web"),
        "{wide}"
    );
    let cms = k.ok(&["get", "cm", "-n", "demo"]);
    assert_eq!(cols(&cms, 0), ["NAME", "DATA", "AGE"], "{cms}");
    assert_eq!(cols(&cms, 1)[..2], ["app-config", "1"], "{cms}");
    let deploys = k.ok(&["get", "deploy", "-n", "demo"]);
    assert_eq!(
        cols(&deploys, 0),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{deploys}"
    );
    assert_eq!(
        cols(&deploys, 1)[..4],
        ["web", "0/2", "0", "0"],
        "{deploys}"
    );
    let ns = k.ok(&["get", "ns", "demo", "--show-labels"]);
    assert_eq!(cols(&ns, 0), ["NAME", "STATUS", "AGE", "LABELS"], "{ns}");
    assert_eq!(cols(&ns, 1)[1], "Active");
    assert!(ns.contains("kubernetes.io/metadata.name=demo"), "{ns}");
    let secrets = k.ok(&["get", "secrets", "-n", "demo"]);
    assert_eq!(
        cols(&secrets, 0),
        ["NAME", "TYPE", "DATA", "AGE"],
        "{secrets}"
    );
    assert_eq!(
        cols(&secrets, 1)[..3],
        ["app-secret", "Opaque", "1"],
        "{secrets}"
    );
    // The `all` category.
    let all = k.ok(&["get", "all", "-n", "demo", "-o", "name"]);
    assert_eq!(all, "service/web\ndeployment.apps/web\n", "{all}");

    // Selectors and all namespaces.
    let sel = k.ok(&[
        "get",
        "cm,secret",
        "-n",
        "demo",
        "-l",
        "app=web",
        "-o",
        "name",
    ]);
    assert_eq!(sel, "configmap/app-config\n");
    let sel = k.ok(&[
        "get",
        "cm",
        "-n",
        "demo",
        "-l",
        "app notin (web)",
        "-o",
        "name",
    ]);
    assert_eq!(sel, "");
    let fs = k.ok(&[
        "get",
        "deploy,svc",
        "-n",
        "demo",
        "--field-selector",
        "metadata.name=web",
        "-o",
        "name",
    ]);
    assert_eq!(fs, "deployment.apps/web\nservice/web\n");
    let bad = k.run(&["get", "cm", "-n", "demo", "--field-selector", "spec.x=1"]);
    assert!(!bad.ok);
    assert!(
        bad.stderr
            .contains("Error from server (BadRequest): Unable to find \"/v1, Resource=configmaps\" that match label selector \"\", field selector \"spec.x=1\": field label not supported: spec.x")
            || bad.stderr.contains("field label not supported: spec.x"),
        "{}",
        bad.stderr
    );
    let all = k.ok(&["get", "cm", "-A"]);
    let header = all.lines().next().unwrap();
    assert!(header.starts_with("NAMESPACE"), "{all}");
    assert!(all
        .lines()
        .any(|l| l.starts_with("demo ") && l.contains("app-config")));

    // label / annotate / scale.
    assert_eq!(
        k.ok(&["label", "cm", "app-config", "-n", "demo", "tier=fe"]),
        "configmap/app-config labeled\n"
    );
    assert_eq!(
        k.ok(&["annotate", "cm", "app-config", "-n", "demo", "note=hi"]),
        "configmap/app-config annotated\n"
    );
    let labels = k.ok(&[
        "get",
        "cm",
        "app-config",
        "-n",
        "demo",
        "-o",
        "jsonpath={.metadata.labels.tier} {.metadata.annotations.note}",
    ]);
    assert_eq!(labels, "fe hi");
    // managedFields: one entry per manager, the label now owned by kubectl-label.
    let cm: Value = serde_json::from_str(&k.ok(&[
        "get",
        "cm",
        "app-config",
        "-n",
        "demo",
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    let managers: Vec<&str> = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(
        managers,
        [
            "kubectl-client-side-apply",
            "kubectl-label",
            "kubectl-annotate"
        ]
    );
    assert_eq!(
        cm["metadata"]["managedFields"][1]["fieldsV1"],
        serde_json::json!({"f:metadata": {"f:labels": {"f:tier": {}}}})
    );
    let plain = k.ok(&["get", "cm", "app-config", "-n", "demo", "-o", "yaml"]);
    assert!(
        !plain.contains("managedFields"),
        "kubectl hides them by default"
    );
    // An edited manifest: `configured` (a strategic merge patch on maps).
    let edited = MANIFEST.replace("greeting: hello", "greeting: hi");
    let out = k.apply(&edited);
    assert!(out.contains("configmap/app-config configured"), "{out}");
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");
    assert_eq!(
        k.ok(&[
            "get",
            "cm",
            "app-config",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.greeting} {.metadata.labels.tier}"
        ]),
        "hi fe"
    );
    // Editing a container's image: a strategic merge patch of the containers list.
    let edited = edited.replace("image: busybox", "image: busybox:1.36");
    let out = k.apply(&edited);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}"
        ]),
        "busybox:1.36 2"
    );
    // kubectl patch in all three types.
    k.ok(&["patch", "deploy", "web", "-n", "demo", "--type", "strategic", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"A","value":"1"}]}]}}}}"#]);
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "demo",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"m":"1"}}}"#,
    ]);
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "demo",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/j","value":"2"}]"#,
    ]);
    assert_eq!(
        k.ok(&["get", "deploy", "web", "-n", "demo", "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].name} {.metadata.labels.m}{.metadata.labels.j}"]),
        "busybox:1.36 A 12"
    );
    assert_eq!(
        k.ok(&["scale", "deploy", "web", "-n", "demo", "--replicas=3"]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}"
        ]),
        "3 4"
    );
    let existing = k.run(&["label", "cm", "app-config", "-n", "demo", "tier=be"]);
    assert!(!existing.ok);
    assert!(
        existing.stderr.contains("'tier' already has a value (fe)"),
        "{}",
        existing.stderr
    );

    // get -w: the current object first, then a change.
    let mut watch = k
        .command(&["get", "cm", "-n", "demo", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "configmap/app-config");
    k.ok(&[
        "create",
        "configmap",
        "later",
        "-n",
        "demo",
        "--from-literal=a=b",
    ]);
    assert_eq!(lines.next().unwrap().unwrap(), "configmap/later");
    watch.kill().unwrap();
    watch.wait().unwrap();

    // get -w with server-side printing: a table header, then rows.
    let mut watch = k
        .command(&["get", "cm", "-n", "demo", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let header = lines.next().unwrap().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("DATA"),
        "{header}"
    );
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("app-config "), "{first}");
    watch.kill().unwrap();
    watch.wait().unwrap();
    // describe reads the object and its events (by field selector).
    let described = k.ok(&["describe", "cm", "app-config", "-n", "demo"]);
    assert!(
        described.starts_with("Name:         app-config\nNamespace:    demo\n"),
        "{described}"
    );
    assert!(described.contains("greeting"), "{described}");

    // Errors as kube words them.
    let dup = k.run(&["create", "namespace", "demo"]);
    assert_eq!(
        dup.stderr.trim(),
        "Error from server (AlreadyExists): namespaces \"demo\" already exists"
    );
    let bad_name = k.run(&["create", "configmap", "Bad_Name", "-n", "demo"]);
    assert!(
        bad_name
            .stderr
            .starts_with("error: failed to create configmap: ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{}",
        bad_name.stderr
    );

    // delete, then NotFound.
    assert_eq!(
        k.ok(&["delete", "cm", "app-config", "-n", "demo"]),
        "configmap \"app-config\" deleted\n"
    );
    let gone = k.run(&["get", "cm", "app-config", "-n", "demo"]);
    assert_eq!(
        gone.stderr.trim(),
        "Error from server (NotFound): configmaps \"app-config\" not found"
    );
    // Deleting the namespace waits until its content and the namespace are gone.
    let out = k.run(&["delete", "namespace", "demo", "--timeout=20s"]);
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "namespace \"demo\" deleted\n");
    let ns = k.run(&["get", "ns", "demo"]);
    assert!(
        ns.stderr.contains("namespaces \"demo\" not found"),
        "{}",
        ns.stderr
    );
    // What kubectl 1.32 sent: label/annotate and scale are merge patches; typed `create`
    // subcommands post protobuf.
    let log = k.log.lock().unwrap();
    let sent = |prefix: &str| log.iter().any(|l| l.starts_with(prefix));
    assert!(sent("PATCH /api/v1/namespaces/demo/configmaps/app-config?fieldManager=kubectl-label application/merge-patch+json"));
    assert!(sent(
        "PATCH /apis/apps/v1/namespaces/demo/deployments/web/scale application/merge-patch+json"
    ));
    assert!(sent("POST /api/v1/namespaces?fieldManager=kubectl-create&fieldValidation=Strict application/vnd.kubernetes.protobuf"));
}

/// kubectl's typed `create` subcommands post protobuf bodies: each must land with the fields
/// the command sets.
fn kubectl_create_subcommands(backend: Backend) {
    let k = Cluster::start(backend);
    let ok = |args: &[&str], want: &str| assert_eq!(k.ok(args).trim(), want, "{args:?}");
    ok(
        &[
            "create",
            "deployment",
            "d1",
            "--image=busybox:1.36",
            "--replicas=2",
            "--port=8080",
        ],
        "deployment.apps/d1 created",
    );
    ok(
        &["get", "deploy", "d1", "-o",
          "jsonpath={.spec.replicas} {.spec.selector.matchLabels.app} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.spec.template.metadata.labels.app}"],
        "2 d1 busybox:1.36 8080 d1",
    );
    ok(
        &["create", "service", "clusterip", "s1", "--tcp=80:8080"],
        "service/s1 created",
    );
    ok(
        &["get", "svc", "s1", "-o", "jsonpath={.spec.type} {.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.ports[0].name} {.spec.selector.app}"],
        "ClusterIP 80 8080 80-8080 s1",
    );
    ok(
        &["create", "job", "j1", "--image=busybox", "--", "echo", "hi"],
        "job.batch/j1 created",
    );
    ok(
        &["get", "job", "j1", "-o", "jsonpath={.spec.template.spec.containers[0].command} {.spec.template.spec.restartPolicy}"],
        r#"["echo","hi"] Never"#,
    );
    ok(
        &[
            "create",
            "cronjob",
            "cj1",
            "--image=busybox",
            "--schedule=*/5 * * * *",
        ],
        "cronjob.batch/cj1 created",
    );
    ok(
        &[
            "get",
            "cronjob",
            "cj1",
            "-o",
            "jsonpath={.spec.schedule} {.spec.jobTemplate.spec.template.spec.containers[0].image}",
        ],
        "*/5 * * * * busybox",
    );
    ok(
        &[
            "create",
            "priorityclass",
            "pc1",
            "--value=1000",
            "--description=high",
        ],
        "priorityclass.scheduling.k8s.io/pc1 created",
    );
    ok(
        &["get", "pc", "pc1", "-o", "jsonpath={.value} {.description}"],
        "1000 high",
    );
    ok(
        &[
            "create",
            "quota",
            "q1",
            "--hard=pods=2,requests.storage=1Gi",
        ],
        "resourcequota/q1 created",
    );
    ok(
        &[
            "get",
            "quota",
            "q1",
            "-o",
            "jsonpath={.spec.hard.pods} {.spec.hard.requests\\.storage}",
        ],
        "2 1Gi",
    );
    ok(
        &[
            "create",
            "pdb",
            "pdb1",
            "--selector=a=b",
            "--min-available=50%",
        ],
        "poddisruptionbudget.policy/pdb1 created",
    );
    ok(
        &[
            "get",
            "pdb",
            "pdb1",
            "-o",
            "jsonpath={.spec.minAvailable} {.spec.selector.matchLabels.a}",
        ],
        "50% b",
    );
    ok(
        &[
            "create",
            "ingress",
            "i1",
            "--rule=a.example.com/app=svc1:80",
        ],
        "ingress.networking.k8s.io/i1 created",
    );
    ok(
        &["get", "ing", "i1", "-o", "jsonpath={.spec.rules[0].host} {.spec.rules[0].http.paths[0].path} {.spec.rules[0].http.paths[0].backend.service.name} {.spec.rules[0].http.paths[0].backend.service.port.number} {.spec.rules[0].http.paths[0].pathType}"],
        "a.example.com /app svc1 80 Exact",
    );
    ok(
        &[
            "create",
            "clusterrole",
            "cr1",
            "--verb=get,list",
            "--resource=pods",
        ],
        "clusterrole.rbac.authorization.k8s.io/cr1 created",
    );
    ok(
        &[
            "get",
            "clusterrole",
            "cr1",
            "-o",
            "jsonpath={.rules[0].verbs}",
        ],
        r#"["get","list"]"#,
    );
    ok(
        &["create", "secret", "generic", "s1", "--from-literal=a=b"],
        "secret/s1 created",
    );
    ok(&["get", "secret", "s1", "-o", "jsonpath={.data.a}"], "Yg==");
    ok(&["run", "p1", "--image=busybox"], "pod/p1 created");
    ok(
        &[
            "get",
            "pod",
            "p1",
            "-o",
            "jsonpath={.spec.containers[0].image} {.status.phase}",
        ],
        "busybox Pending",
    );
    // kube's columns for these kinds.
    let header = |kind: &str| -> Vec<String> {
        let out = k.ok(&["get", kind]);
        out.lines()
            .next()
            .unwrap_or("")
            .split("   ")
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    };
    assert_eq!(
        header("cronjobs"),
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE"
        ]
    );
    assert_eq!(
        header("ingress"),
        ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    );
    assert_eq!(
        header("pdb"),
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ]
    );
    assert_eq!(header("quota"), ["NAME", "AGE", "REQUEST", "LIMIT"]);
    assert_eq!(
        header("jobs"),
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    );
    assert_eq!(header("clusterroles"), ["NAME", "CREATED AT"]);
    let quota = k.ok(&["get", "quota", "q1"]);
    assert!(
        quota.contains("pods: 0/2, requests.storage: 0/1Gi"),
        "{quota}"
    );
    let pods = k.ok(&["get", "pods"]);
    let header: Vec<&str> = pods.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{pods}"
    );
    let row: Vec<&str> = pods.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["p1", "0/1", "Pending", "0"], "{pods}");
    ok(&["delete", "pod", "p1"], "pod \"p1\" deleted");
    // kubectl wait: a jsonpath condition, then deletion (list + watch with a name selector).
    ok(
        &[
            "wait",
            "--for=jsonpath={.type}=Opaque",
            "secret/s1",
            "--timeout=10s",
        ],
        "secret/s1 condition met",
    );
    let waiter = k
        .command(&["wait", "--for=delete", "secret/s1", "--timeout=20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    ok(
        &["delete", "secret", "s1", "--wait=false"],
        "secret \"s1\" deleted",
    );
    let out = waiter.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kubectl apply --server-side`: create, a conflict with another manager, `--force-conflicts`.
fn kubectl_server_side_apply(backend: Backend) {
    let k = Cluster::start(backend);
    let path = k.dir.path().join("ssa.yaml");
    let write = |greeting: &str| {
        std::fs::write(
            &path,
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: default\ndata:\n  greeting: {greeting}\n"),
        )
        .unwrap();
    };
    let p = path.to_str().unwrap().to_string();
    write("hello");
    assert_eq!(
        k.ok(&["apply", "--server-side", "-f", &p]),
        "configmap/ssa serverside-applied\n"
    );
    // Another manager takes the field over with a plain edit…
    k.ok(&[
        "patch",
        "cm",
        "ssa",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"greeting":"edited"}}"#,
    ]);
    // …so applying a different value conflicts, naming the manager and the field.
    write("again");
    let out = k.run(&["apply", "--server-side", "-f", &p]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains(r#"Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.greeting"#),
        "{}",
        out.stderr
    );
    assert_eq!(
        k.ok(&["apply", "--server-side", "--force-conflicts", "-f", &p]),
        "configmap/ssa serverside-applied\n"
    );
    let cm: Value =
        serde_json::from_str(&k.ok(&["get", "cm", "ssa", "-o", "json", "--show-managed-fields"]))
            .unwrap();
    assert_eq!(cm["data"]["greeting"], "again");
    let apply = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["operation"] == "Apply")
        .unwrap()
        .clone();
    assert_eq!(apply["manager"], "kubectl");
    assert_eq!(
        apply["fieldsV1"],
        serde_json::json!({"f:data": {"f:greeting": {}}})
    );
}

/// `kubectl edit` (an editor script), `apply -k` (built-in kustomize), `describe` of a
/// Deployment, `delete -f`.
fn kubectl_edit_kustomize_describe(backend: Backend) {
    let k = Cluster::start(backend);
    let dir = k.dir.path().join("kustomize");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        "namespace: default\ncommonLabels:\n  team: a\nresources:\n- app.yaml\nconfigMapGenerator:\n- name: gen\n  literals:\n  - k=v\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("app.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: kd\nspec:\n  selector:\n    matchLabels: {app: kd}\n  template:\n    metadata:\n      labels: {app: kd}\n    spec:\n      containers:\n      - name: c\n        image: busybox:1.36\n",
    )
    .unwrap();
    let out = k.ok(&["apply", "-k", dir.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/kd created"), "{out}");
    assert!(out.contains("configmap/gen-"), "{out}");
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "kd",
            "-o",
            "jsonpath={.metadata.labels.team} {.spec.selector.matchLabels.team}"
        ]),
        "a a"
    );
    // edit: the editor script rewrites the image; kubectl sends the change as a patch.
    let editor = k.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/busybox:1.36/busybox:1.37/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = k
        .command(&["edit", "deploy", "kd"])
        .env("EDITOR", &editor)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "deployment.apps/kd edited\n"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "kd",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "busybox:1.37"
    );
    let described = k.ok(&["describe", "deploy", "kd"]);
    assert!(
        described.starts_with("Name:                   kd\n"),
        "{described}"
    );
    assert!(described.contains("busybox:1.37"), "{described}");
    assert!(
        described.contains("StrategyType:           RollingUpdate"),
        "{described}"
    );
    let out = k.ok(&["delete", "-k", dir.to_str().unwrap()]);
    assert!(out.contains("deployment.apps \"kd\" deleted"), "{out}");
    assert!(k
        .ok(&["get", "deploy,cm", "-o", "name"])
        .lines()
        .all(|l| !l.contains("kd") && !l.contains("gen-")));
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    kind: Widget
    shortNames: [wd]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Color
      type: string
      description: The widget's colour
      jsonPath: .spec.color
      priority: 1
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        description: A Widget is a test custom resource.
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [size]
            properties:
              size:
                type: integer
                minimum: 1
                description: How big the widget is.
              color:
                type: string
                default: blue
              replicas:
                type: integer
          status:
            type: object
            properties:
              replicas:
                type: integer
"#;

/// A CRD and its custom resources: Established, printer columns (`-o wide`), explain, schema
/// validation and pruning, the status and scale subresources, `get all`, deletion.
fn kubectl_custom_resources(backend: Backend) {
    let k = Cluster::start(backend);
    assert!(k
        .apply(CRD)
        .contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"));
    k.ok(&[
        "wait",
        "--for=condition=established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
    // Discovery (the CR group with short names and categories).
    let mut found = false;
    for _ in 0..50 {
        let out = k.ok(&["api-resources", "--api-group=example.com"]);
        if out.contains("widgets") {
            assert!(
                out.contains("wd") && out.contains("example.com/v1") && out.contains("Widget"),
                "{out}"
            );
            found = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(found, "widgets not in api-resources");

    let out = k.apply(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\nspec:\n  size: 3\n  replicas: 1\n",
    );
    assert!(out.contains("widget.example.com/w1 created"), "{out}");
    // Printer columns: Name, Size, Age; Color only with -o wide.
    let out = k.ok(&["get", "widgets"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "SIZE", "AGE"], "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("w1"), "{out}");
    let out = k.ok(&["get", "wd", "-o", "wide"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "SIZE", "COLOR", "AGE"], "{out}");
    assert!(out.contains("blue"), "defaulted color: {out}");
    // `all` includes the category.
    let out = k.ok(&["get", "all", "-n", "default"]);
    assert!(out.contains("widget.example.com/w1"), "{out}");
    // apply again (a merge patch for custom resources): unchanged, then configured.
    let again = k.apply(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\nspec:\n  size: 3\n  replicas: 1\n",
    );
    assert!(again.contains("unchanged"), "{again}");
    let out = k.apply(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\nspec:\n  size: 4\n  replicas: 1\n",
    );
    assert!(out.contains("configured"), "{out}");
    assert!(k.log.lock().unwrap().iter().any(|l| l
        .starts_with("PATCH /apis/example.com/v1/namespaces/default/widgets/w1")
        && l.contains("application/merge-patch+json")));

    // explain reads the schema from /openapi/v3.
    let out = k.ok(&["explain", "widgets.spec"]);
    assert!(out.contains("What the widget should be."), "{out}");
    assert!(
        out.contains("size") && out.contains("How big the widget is."),
        "{out}"
    );

    // A custom resource violating its schema: 422 naming the field; nothing stored.
    let path = k.dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: bad\n  namespace: default\nspec:\n  size: 0\n",
    )
    .unwrap();
    let out = k.run(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("The Widget \"bad\" is invalid: spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"),
        "{}",
        out.stderr
    );
    assert!(!k.run(&["get", "widget", "bad"]).ok);
    // An unknown field: pruned with a warning by default, refused under strict validation.
    std::fs::write(
        &path,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w2\n  namespace: default\nspec:\n  size: 1\n  shape: round\n",
    )
    .unwrap();
    let out = k.run(&["create", "-f", path.to_str().unwrap(), "--validate=strict"]);
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains("unknown field \"spec.shape\""),
        "{}",
        out.stderr
    );
    let out = k.run(&["create", "-f", path.to_str().unwrap(), "--validate=false"]);
    assert!(out.ok, "{}", out.stderr);
    let spec = k.ok(&["get", "widget", "w2", "-o", "jsonpath={.spec}"]);
    assert!(
        !spec.contains("shape") && spec.contains("\"size\":1"),
        "{spec}"
    );

    // The status subresource: the main resource ignores status.
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "--subresource=status",
        "-p",
        r#"{"status":{"replicas":1}}"#,
    ]);
    k.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":7}}"#,
    ]);
    assert_eq!(
        k.ok(&["get", "widget", "w1", "-o", "jsonpath={.status.replicas}"]),
        "1"
    );
    // kubectl scale through the scale subresource.
    let out = k.ok(&["scale", "widget", "w1", "--replicas=4"]);
    assert!(out.contains("widget.example.com/w1 scaled"), "{out}");
    assert_eq!(
        k.ok(&["get", "widget", "w1", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );
    // Strategic merge patch is refused for custom resources.
    let out = k.run(&[
        "patch",
        "widget",
        "w1",
        "--type=strategic",
        "-p",
        r#"{"spec":{"size":2}}"#,
    ]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("accepted media types include"),
        "{}",
        out.stderr
    );

    // Deleting the CRD removes its objects, then the CRD.
    let out = k.ok(&["delete", "crd", "widgets.example.com", "--timeout=30s"]);
    assert!(out.contains("deleted"), "{out}");
    assert!(!k.run(&["get", "crd", "widgets.example.com"]).ok);
    let mut gone = false;
    for _ in 0..50 {
        if !k.run(&["get", "widgets.example.com", "-A"]).ok {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(gone, "widgets still served");

    // A CRD whose schema is not structural is refused.
    let path = k.dir.path().join("bad-crd.yaml");
    std::fs::write(
        &path,
        CRD.replace(
            "          spec:\n            type: object\n",
            "          spec:\n",
        ),
    )
    .unwrap();
    let out = k.run(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("spec.validation.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"),
        "{}",
        out.stderr
    );

    // The CRD again, through server-side apply: served again, without the old objects.
    let crd_path = k.dir.path().join("crd.yaml");
    std::fs::write(&crd_path, CRD).unwrap();
    let out = k.ok(&["apply", "--server-side", "-f", crd_path.to_str().unwrap()]);
    assert!(out.contains("serverside-applied"), "{out}");
    k.ok(&[
        "wait",
        "--for=condition=established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
    let mut listed = None;
    for _ in 0..50 {
        let out = k.run(&["get", "widgets", "-A", "-o", "name"]);
        if out.ok {
            listed = Some(out.stdout);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(listed.as_deref(), Some(""), "old widgets came back");
}

/// `--as`/`--as-group` (impersonation): the admin may impersonate; the request then runs as
/// the impersonated user, refused or allowed by RBAC as that user.
fn kubectl_impersonation(backend: Backend) {
    let k = Cluster::start(backend);
    let can_i = k.run(&["auth", "can-i", "list", "pods", "--as=jane"]);
    assert_eq!(can_i.stdout.trim(), "no", "{}", can_i.stderr);
    let out = k.run(&["get", "pods", "--as=jane"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains(
            r#"Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
        ),
        "{}",
        out.stderr
    );
    k.ok(&[
        "create",
        "rolebinding",
        "jane-view",
        "--clusterrole=view",
        "--user=jane",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = k.run(&["get", "pods", "--as=jane"]);
        if out.ok {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", out.stderr);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        k.ok(&["auth", "can-i", "list", "pods", "--as=jane"]).trim(),
        "yes"
    );
    assert_eq!(
        k.run(&["auth", "can-i", "delete", "pods", "--as=jane"])
            .stdout
            .trim(),
        "no"
    );
    // A group impersonated with the user: the group's grants count.
    assert_eq!(
        k.ok(&[
            "auth",
            "can-i",
            "delete",
            "pods",
            "--as=bob",
            "--as-group=system:masters"
        ])
        .trim(),
        "yes"
    );
    assert_eq!(
        k.ok(&[
            "auth",
            "whoami",
            "--as=bob",
            "--as-group=devs",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"
        ])
        .trim(),
        r#"bob ["devs","system:authenticated"]"#
    );
    // The impersonated uid is kept.
    assert_eq!(
        k.ok(&[
            "auth",
            "whoami",
            "--as=bob",
            "--as-uid=1234",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.uid}"
        ])
        .trim(),
        "bob 1234"
    );
}

/// A body of the wrong type is kube's 400 (`kubectl create -f`); events are served at
/// events.k8s.io/v1 and HorizontalPodAutoscalers at autoscaling/v1 over the same objects.
fn kubectl_types_and_versions(backend: Backend) {
    let k = Cluster::start(backend);
    let path = k.dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [true]\n",
    )
    .unwrap();
    let out = k.run(&["create", "-f", path.to_str().unwrap()]);
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "Error from server (BadRequest): error when creating {:?}: Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal bool into Go struct field Container.spec.containers.command of type string",
            path.to_str().unwrap()
        )),
        "{}",
        out.stderr
    );
    assert!(!k.run(&["get", "pod", "bad"]).ok, "nothing stored");

    // autoscaling/v1 over v2.
    k.ok(&["create", "deployment", "x", "--image=busybox"]);
    k.ok(&[
        "autoscale",
        "deployment",
        "x",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "x",
            "-o",
            "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage} {.spec.maxReplicas}"
        ]),
        "autoscaling/v1 50 3"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "horizontalpodautoscalers.v2.autoscaling",
            "x",
            "-o",
            "jsonpath={.spec.metrics[0].resource.name} {.spec.metrics[0].resource.target.averageUtilization}"
        ]),
        "cpu 50"
    );
    let table = k.ok(&["get", "hpa"]);
    assert!(
        table.starts_with("NAME") && table.contains("REFERENCE") && table.contains("Deployment/x"),
        "{table}"
    );
    k.ok(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "x",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":70}}"#,
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "horizontalpodautoscalers.v2.autoscaling",
            "x",
            "-o",
            "jsonpath={.spec.metrics[0].resource.target.averageUtilization}"
        ]),
        "70"
    );

    // events.k8s.io/v1 over core/v1 Events.
    k.apply(
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: e1\ninvolvedObject:\n  kind: Deployment\n  name: x\n  namespace: default\nreason: Tested\nmessage: hello from core\ntype: Normal\nsource:\n  component: tester\ncount: 2\n",
    );
    assert_eq!(
        k.ok(&[
            "get",
            "events.v1.events.k8s.io",
            "e1",
            "-o",
            "jsonpath={.note}|{.regarding.name}|{.deprecatedSource.component}|{.deprecatedCount}"
        ]),
        "hello from core|x|tester|2"
    );
    let listed = k.ok(&[
        "get",
        "events.v1.events.k8s.io",
        "-o",
        "jsonpath={.kind} {.items[*].note}",
    ]);
    assert_eq!(listed, "List hello from core");
    // Field selectors at events.k8s.io/v1 take that version's labels.
    let selected = |selector: &str| {
        k.ok(&[
            "get",
            "events.v1.events.k8s.io",
            "--field-selector",
            selector,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
    };
    assert_eq!(selected("regarding.name=x,regarding.kind=Deployment"), "e1");
    assert_eq!(selected("regarding.name=y"), "");
    assert_eq!(selected("reason=Tested,type=Normal"), "e1");
    let refused = k.run(&[
        "get",
        "events.v1.events.k8s.io",
        "--field-selector",
        "involvedObject.name=x",
    ]);
    assert!(!refused.ok);
    assert!(
        refused
            .stderr
            .contains("field label not supported: involvedObject.name"),
        "{}",
        refused.stderr
    );
    let events = k.ok(&["events"]);
    assert!(events.contains("hello from core"), "{events}");
}

/// `kubectl drain` evicts through `pods/eviction`: refused while a PodDisruptionBudget allows
/// no disruption (its status written here in the disruption controller's place), then done.
fn kubectl_drain_honours_disruption_budgets(backend: Backend) {
    let k = Cluster::start(backend);
    k.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n");
    k.ok(&["create", "deployment", "web", "--image=busybox"]);
    k.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\n  labels:\n    app: web\n  ownerReferences:\n  - apiVersion: apps/v1\n    kind: ReplicaSet\n    name: web-5d4f\n    uid: 6a1c5a0e-0000-4000-8000-000000000001\n    controller: true\nspec:\n  nodeName: n1\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: busybox\n",
    );
    k.ok(&[
        "patch",
        "pod",
        "web-1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
    k.ok(&[
        "create",
        "pdb",
        "b",
        "--selector=app=web",
        "--min-available=1",
    ]);
    let budget = |allowed: i64| {
        k.ok(&[
            "patch",
            "pdb",
            "b",
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(
                r#"{{"status":{{"observedGeneration":1,"disruptionsAllowed":{allowed},"currentHealthy":1,"desiredHealthy":1,"expectedPods":1}}}}"#
            ),
        ]);
    };
    budget(0);
    let refused = k.run(&["drain", "n1", "--ignore-daemonsets", "--timeout=3s"]);
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{}",
        refused.stderr
    );
    assert!(k.run(&["get", "pod", "web-1"]).ok, "still there");
    assert_eq!(
        k.ok(&["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"]),
        "true",
        "cordoned"
    );
    budget(1);
    let out = k.ok(&["drain", "n1", "--ignore-daemonsets", "--timeout=30s"]);
    assert!(out.contains("pod/web-1 evicted"), "{out}");
    assert!(out.contains("node/n1 drained"), "{out}");
    assert!(!k.run(&["get", "pod", "web-1"]).ok, "evicted");
    assert_eq!(
        k.ok(&[
            "get",
            "pdb",
            "b",
            "-o",
            "jsonpath={.status.disruptionsAllowed}"
        ]),
        "0"
    );
}

/// Invalid specs are refused as kube-apiserver refuses them (422, kube's causes, as kubectl
/// prints them), and nothing is stored.
fn kubectl_refuses_invalid_specs(backend: Backend) {
    let k = Cluster::start(backend);
    let refused = |manifest: &str, want: &[&str]| {
        let path = k.dir.path().join("bad.yaml");
        std::fs::write(&path, manifest).unwrap();
        let out = k.run(&["create", "-f", path.to_str().unwrap()]);
        assert!(!out.ok, "created: {manifest}");
        for w in want {
            assert!(out.stderr.contains(w), "want {w:?} in:\n{}", out.stderr);
        }
    };
    refused(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  restartPolicy: Sometimes\n  containers:\n  - name: c\n    image: busybox\n    volumeMounts: [{name: nope, mountPath: /x}]\n  - name: c\n    image: \"\"\n    ports: [{containerPort: 70000}]\n",
        &[
            "The Pod \"p\" is invalid:",
            "spec.containers[0].volumeMounts[0].name: Not found: \"nope\"",
            "spec.containers[1].name: Duplicate value: \"c\"",
            "spec.containers[1].image: Required value",
            "spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ],
    );
    refused(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  replicas: -1\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: c}}\n    spec: {containers: [{name: c, image: busybox}]}\n",
        &[
            "The Deployment \"d\" is invalid:",
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"a\":\"c\"}: `selector` does not match template `labels`",
        ],
    );
    refused(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  type: Weird\n  ports: [{port: 0}]\n",
        &[
            "spec.type: Unsupported value: \"Weird\"",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        ],
    );
    refused(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\nspec:\n  template:\n    spec: {containers: [{name: c, image: busybox}]}\n",
        &["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""],
    );
    // LimitRange on claims: a storage request over `max` is refused (403, kube's wording).
    k.apply("apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: storage\nspec:\n  limits:\n  - type: PersistentVolumeClaim\n    max: {storage: 2Gi}\n");
    refused(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: big\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 5Gi}}\n",
        &["persistentvolumeclaims \"big\" is forbidden: maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"],
    );
    // An update is validated too, and nothing of the refused writes was stored.
    k.ok(&["create", "deployment", "web", "--image=busybox"]);
    let out = k.run(&["scale", "deployment", "web", "--replicas=-2"]);
    assert!(!out.ok);
    let out = k.run(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"restartPolicy":"Never"}}}}"#,
    ]);
    assert!(
        !out.ok && out.stderr.contains("supported values: \"Always\""),
        "{}",
        out.stderr
    );
    let names = k.ok(&["get", "pods,deploy,svc,jobs", "-o", "name"]);
    assert!(
        !names.contains("pod/p") && !names.contains("deployment.apps/d\n"),
        "{names}"
    );
}
