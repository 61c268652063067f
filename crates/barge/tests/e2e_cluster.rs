//! The one-node cluster: `barge server` with its in-process node agent, driven with the stock
//! `kubectl` (and `docker` against the same engine). Pods set `spec.nodeName` themselves (the
//! scheduler is another crate). Each test has its own server, pod network (`--cluster-cidr`)
//! and directories; pods, containers, sandboxes, bridges and tables are removed on drop.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::*;
use common::*;

const NODE: &str = "node1";

/// A server with its agent (node `node1`, back-off base `backoff`) and the shared images
/// loaded into its engine.
fn cluster(backoff: &str) -> Server {
    let cidr = cluster_cidr();
    let s = Server::start(
        true,
        &[
            "--node-name",
            NODE,
            "--cluster-cidr",
            &cidr,
            "--pod-restart-backoff",
            backoff,
        ],
    );
    let layout = images_dir().join("oci-layout");
    let out = s.barge(&["load", "-i", layout.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    s
}

/// The multilayer app as a pod on `node1` (its env reads the downward API and a ConfigMap).
fn app_pod(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: multilayer:1
    ports: [{{containerPort: 8080}}]
    env:
    - name: MY_NODE
      valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
    - name: MY_POD_IP
      valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
    - name: GREETING
      valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}
    - name: MESSAGE
      value: "$(GREETING) from $(MY_NODE)"
    volumeMounts:
    - {{name: cfg, mountPath: /etc/cfg, readOnly: true}}
    - {{name: scratch, mountPath: /scratch}}
  volumes:
  - name: cfg
    configMap: {{name: cfg}}
  - name: scratch
    emptyDir: {{}}
"#
    )
}

const CONFIGMAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {greeting: hello}\n";

/// `docker inspect -f FORMAT ID` on the server's engine.
fn inspect(s: &Server, id: &str, format: &str) -> String {
    let out = s.docker(&["inspect", "-f", format, id]);
    assert!(out.status.success(), "inspect {id}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

#[test]
fn node_registers_and_a_pod_runs_then_is_deleted() {
    let s = cluster("10s");
    // The Node: Ready as kubelet reports it, its facts, its lease.
    let ready = wait_node_ready(&s);
    assert_eq!(ready, "True");
    let get = |path: &str| s.k(&["get", "node", NODE, "-o", &format!("jsonpath={path}")]);
    assert_eq!(get("{.status.capacity.pods}"), "110");
    assert!(get("{.status.nodeInfo.containerRuntimeVersion}").starts_with("barge://"));
    assert!(!get("{.status.allocatable.memory}").is_empty());
    assert_eq!(
        get("{.status.conditions[?(@.type==\"MemoryPressure\")].reason}"),
        "KubeletHasSufficientMemory"
    );
    assert_eq!(get("{.spec.podCIDR}"), s.extra[3]);
    assert_eq!(
        get("{.status.addresses[?(@.type==\"Hostname\")].address}"),
        NODE
    );
    let holder = s.k(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        NODE,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, NODE);

    // A pod: Running and Ready, with an address on the pod network, its env resolved.
    s.apply(CONFIGMAP);
    s.apply(&app_pod("web"));
    s.k(&["wait", "--for=condition=Ready", "pod/web", "--timeout=90s"]);
    let ip = s.k(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]);
    let wide = s.k(&["get", "pod", "web", "-o", "wide"]);
    assert!(wide.contains(&ip) && wide.contains(NODE), "{wide}");
    assert!(wide.contains("Running") && wide.contains("1/1"), "{wide}");
    let status = |p: &str| s.k(&["get", "pod", "web", "-o", &format!("jsonpath={p}")]);
    assert_eq!(status("{.status.phase}"), "Running");
    assert_eq!(status("{.status.qosClass}"), "BestEffort");
    assert_eq!(status("{.status.containerStatuses[0].restartCount}"), "0");
    assert!(!status("{.status.hostIP}").is_empty());
    assert!(!status("{.status.startTime}").is_empty());
    // A one-node cluster makes no tunnel on the host (no other node to reach).
    let vxlan = std::process::Command::new("ip")
        .args(["link", "show", "barge.vxlan"])
        .output()
        .unwrap();
    assert!(
        !vxlan.status.success(),
        "barge.vxlan made on a one-node cluster"
    );
    let cid = status("{.status.containerStatuses[0].containerID}");
    let cid = cid
        .strip_prefix("barge://")
        .expect("a barge:// container ID")
        .to_string();
    // The container is an engine container, labelled with its pod.
    assert_eq!(
        inspect(
            &s,
            &cid,
            "{{index .Config.Labels \"io.kubernetes.pod.name\"}}"
        ),
        "web"
    );
    let env = s.docker(&[
        "exec",
        &cid,
        "sh",
        "-c",
        "echo $MY_NODE $MY_POD_IP $MESSAGE; hostname",
    ]);
    assert_eq!(
        stdout(&env).trim(),
        format!("{NODE} {ip} hello from {NODE}\nweb"),
        "{}",
        stderr(&env)
    );
    // kubelet's events, for `kubectl describe`.
    let reasons = s.k(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    for r in ["Pulled", "Created", "Started"] {
        assert!(reasons.split(' ').any(|x| x == r), "{r} not in {reasons:?}");
    }
    // Volumes: the ConfigMap's keys as files, a writable emptyDir.
    let vols = s.docker(&[
        "exec",
        &cid,
        "sh",
        "-c",
        "cat /etc/cfg/greeting; echo; echo x > /scratch/f && cat /scratch/f",
    ]);
    assert_eq!(stdout(&vols).trim(), "hello\nx", "{}", stderr(&vols));
    // The app answers on the pod's address, from the host.
    let out = curl(&["-s", &format!("http://{ip}:8080/")]);
    assert!(
        out.status.success() && !stdout(&out).is_empty(),
        "curl {ip}: {}",
        stderr(&out)
    );

    // Deletion: the grace period, then the object and the container go.
    let started = Instant::now();
    s.k(&["delete", "pod", "web", "--timeout=60s"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    let out = s.kubectl_with(&s.kubeconfig(), &["get", "pod", "web"]);
    assert!(!out.status.success(), "the pod is still there");
    let ps = s.docker(&["ps", "-aq"]);
    assert_eq!(stdout(&ps).trim(), "", "its container is still there");
    let netns: Vec<_> = std::fs::read_dir(s.dir.join("run/netns"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(netns.is_empty(), "the pod's namespace is left: {netns:?}");
    let pods: Vec<_> = std::fs::read_dir(s.dir.join("data/pods"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(pods.is_empty(), "the pod's volumes are left: {pods:?}");
}

fn wait_node_ready(s: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = s.kubectl_with(
            &s.kubeconfig(),
            &[
                "get",
                "node",
                NODE,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        );
        if stdout(&out).trim() == "True" || Instant::now() > deadline {
            return stdout(&out).trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn failing_containers_get_kube_reasons_and_back_off() {
    let s = cluster("2s");
    let pod = |name: &str, policy: &str, image: &str, pull: &str, command: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {NODE}\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {image}\n    imagePullPolicy: {pull}\n    command: {command}\n"
        )
    };
    // A pod kube's model cannot read (a boolean in `command`; kube-apiserver would refuse
    // it, barge's API server stores it today): left alone, without disturbing the others.
    let bad = pod("bad", "Always", "busybox:1.35", "Never", "[true]");
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", s.kubeconfig())
        .env("HOME", &s.dir)
        .args(["apply", "--validate=false", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(bad.as_bytes())
        .unwrap();
    let _ = child.wait();
    s.apply(&pod(
        "nocmd",
        "Always",
        "busybox:1.35",
        "IfNotPresent",
        "[/nonexistent]",
    ));
    s.apply(&pod(
        "fails",
        "Never",
        "busybox:1.35",
        "Never",
        "[sh, -c, 'exit 3']",
    ));
    s.apply(&pod(
        "done",
        "OnFailure",
        "busybox:1.35",
        "Never",
        "['true']",
    ));
    s.apply(&pod("noimage", "Always", "nosuch:1", "Never", "['true']"));
    s.apply(&pod("nocfg", "Always", "busybox:1.35", "Never", "[sleep, '60']").replace(
            "    command:",
            "    env: [{name: X, valueFrom: {configMapKeyRef: {name: missing, key: k}}}]\n    command:",
        ),
    );

    // A command that does not exist: StartError, restarted, then CrashLoopBackOff.
    let cs = ".status.containerStatuses[0]";
    s.wait_pod(
        "nocmd",
        &format!("{{{cs}.state.waiting.reason}}"),
        60,
        |r| r == "CrashLoopBackOff",
    );
    let last = s.k(&[
        "get",
        "pod",
        "nocmd",
        "-o",
        &format!(
            "jsonpath={{{cs}.lastState.terminated.reason}} {{{cs}.lastState.terminated.exitCode}}"
        ),
    ]);
    assert_eq!(last, "StartError 128");
    let msg = s.k(&[
        "get",
        "pod",
        "nocmd",
        "-o",
        &format!("jsonpath={{{cs}.lastState.terminated.message}}"),
    ]);
    assert!(msg.contains("/nonexistent"), "{msg}");
    let waiting = s.k(&[
        "get",
        "pod",
        "nocmd",
        "-o",
        &format!("jsonpath={{{cs}.state.waiting.message}}"),
    ]);
    assert!(
        waiting.starts_with("back-off ")
            && waiting.contains("restarting failed container=c pod=nocmd_default("),
        "{waiting}"
    );
    assert_eq!(
        s.k(&["get", "pod", "nocmd", "-o", "jsonpath={.status.phase}"]),
        "Running"
    );
    // The back-off grows: 2 s, 4 s, 8 s … so after ~10 s only a few restarts happened.
    std::thread::sleep(Duration::from_secs(8));
    let restarts: i64 = s
        .k(&[
            "get",
            "pod",
            "nocmd",
            "-o",
            &format!("jsonpath={{{cs}.restartCount}}"),
        ])
        .parse()
        .unwrap();
    assert!((2..=5).contains(&restarts), "restartCount {restarts}");
    let wide = s.k(&["get", "pod", "nocmd"]);
    assert!(wide.contains("CrashLoopBackOff"), "{wide}");

    // restartPolicy Never, exit 3: Failed, Error, exit code kept, no restart.
    s.wait_pod("fails", "{.status.phase}", 60, |p| p == "Failed");
    let t = s.k(&["get", "pod", "fails", "-o", &format!("jsonpath={{{cs}.state.terminated.reason}} {{{cs}.state.terminated.exitCode}} {{{cs}.restartCount}}")]);
    assert_eq!(t, "Error 3 0");
    // OnFailure, exit 0: Succeeded, Completed.
    s.wait_pod("done", "{.status.phase}", 60, |p| p == "Succeeded");
    let t = s.k(&[
        "get",
        "pod",
        "done",
        "-o",
        &format!("jsonpath={{{cs}.state.terminated.reason}}"),
    ]);
    assert_eq!(t, "Completed");
    let ready = s.k(&[
        "get",
        "pod",
        "done",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
    ]);
    assert_eq!(ready, "PodCompleted");
    // An image not in the engine with pull policy Never.
    s.wait_pod(
        "noimage",
        &format!("{{{cs}.state.waiting.reason}}"),
        30,
        |r| r == "ErrImageNeverPull",
    );
    assert_eq!(
        s.k(&["get", "pod", "noimage", "-o", "jsonpath={.status.phase}"]),
        "Pending"
    );
    // A missing ConfigMap: CreateContainerConfigError, and the pod starts once it appears.
    let reason = s.wait_pod(
        "nocfg",
        &format!("{{{cs}.state.waiting.reason}}"),
        30,
        |r| !r.is_empty() && r != "ContainerCreating",
    );
    assert_eq!(reason, "CreateContainerConfigError");
    let msg = s.k(&[
        "get",
        "pod",
        "nocfg",
        "-o",
        &format!("jsonpath={{{cs}.state.waiting.message}}"),
    ]);
    assert_eq!(msg, "configmap \"missing\" not found");
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: missing}\ndata: {k: v}\n");
    s.wait_pod("nocfg", "{.status.phase}", 30, |p| p == "Running");
    // The same for a ConfigMap volume.
    s.apply(
        &(pod("novol", "Always", "busybox:1.35", "Never", "[sleep, '60']").replace(
            "    command:",
            "    volumeMounts: [{name: v, mountPath: /v}]\n    command:",
        ) + "  volumes: [{name: v, configMap: {name: later}}]\n"),
    );
    let msg = s.wait_pod(
        "novol",
        &format!("{{{cs}.state.waiting.message}}"),
        30,
        |m| !m.is_empty(),
    );
    assert_eq!(msg, "configmap \"later\" not found");
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later}\ndata: {k: v}\n");
    s.wait_pod("novol", "{.status.phase}", 30, |p| p == "Running");
}

#[test]
fn a_restarted_server_adopts_running_pods() {
    let mut s = cluster("10s");
    s.apply(CONFIGMAP);
    s.apply(&app_pod("web"));
    s.k(&["wait", "--for=condition=Ready", "pod/web", "--timeout=90s"]);
    let cs = ".status.containerStatuses[0]";
    let facts = |s: &Server| {
        s.k(&["get", "pod", "web", "-o", &format!("jsonpath={{{cs}.containerID}} {{{cs}.restartCount}} {{{cs}.state.running.startedAt}} {{.status.podIP}}")])
    };
    let before = facts(&s);
    let cid = before
        .split(' ')
        .next()
        .unwrap()
        .trim_start_matches("barge://")
        .to_string();
    let engine_started = inspect(&s, &cid, "{{.State.StartedAt}}");

    s.kill9();
    s.restart();
    // The agent comes back, syncs, and changes nothing.
    std::thread::sleep(Duration::from_secs(4));
    s.k(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"]);
    assert_eq!(facts(&s), before);
    assert_eq!(
        inspect(&s, &cid, "{{.State.Status}} {{.State.StartedAt}}"),
        format!("running {engine_started}")
    );
    let ps = s.docker(&["ps", "-q"]);
    assert_eq!(stdout(&ps).lines().count(), 1, "{}", stdout(&ps));
    // Still served on its address.
    let ip = before.rsplit(' ').next().unwrap();
    let out = curl(&["-s", &format!("http://{ip}:8080/")]);
    assert!(
        out.status.success() && !stdout(&out).is_empty(),
        "curl {ip}: {}",
        stderr(&out)
    );
    s.k(&["delete", "pod", "web", "--timeout=60s"]);
    assert_eq!(stdout(&s.docker(&["ps", "-aq"])).trim(), "");
}

#[test]
fn probes_feed_ready_and_restart_failing_containers() {
    let s = cluster("1s");
    // The app, ready once GET / answers; a sidecar whose liveness probe always fails; a pod
    // whose readiness probe knocks on a closed port.
    s.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: probed}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: multilayer:1
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe:
      httpGet: {{path: /, port: http}}
      periodSeconds: 1
  - name: side
    image: busybox:1.35
    command: [sleep, "3600"]
    livenessProbe:
      exec: {{command: [sh, -c, "exit 1"]}}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata: {{name: closed}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:1.35
    command: [sleep, "3600"]
    readinessProbe:
      tcpSocket: {{port: 9999}}
      periodSeconds: 1
"#
    ));
    let ready = |c: &str| format!("{{.status.containerStatuses[?(@.name==\"{c}\")].ready}}");
    s.wait_pod("probed", &ready("app"), 60, |r| r == "true");
    // The sidecar fails its liveness probe: killed and restarted, again and again.
    let restarts = "{.status.containerStatuses[?(@.name==\"side\")].restartCount}";
    s.wait_pod("probed", restarts, 60, |r| {
        r.parse::<i64>().unwrap_or(0) >= 1
    });
    let last = s.k(&[
        "get",
        "pod",
        "probed",
        "-o",
        "jsonpath={.status.containerStatuses[?(@.name==\"side\")].lastState.terminated.exitCode}",
    ]);
    assert_eq!(last, "137");
    // Running but never Ready behind a closed port.
    s.wait_pod("closed", "{.status.phase}", 60, |p| p == "Running");
    std::thread::sleep(Duration::from_secs(3));
    let ready = s.k(&[
        "get",
        "pod",
        "closed",
        "-o",
        "jsonpath={.status.containerStatuses[0].ready} {.status.conditions[?(@.type==\"Ready\")].reason}",
    ]);
    assert_eq!(ready, "false ContainersNotReady");
}
