//! State in the one-node cluster, end to end with the stock `kubectl`: the node agent's
//! volumes (hostPath types, downwardAPI, projected with a ServiceAccount token the API server
//! accepts, subPath), the built-in local-path provisioner and PV binder (default StorageClass,
//! WaitForFirstConsumer through the scheduler's selected node, static volumes, Released and
//! Delete), and the StatefulSet controller (ordered pods, stable names and claims, data kept
//! across a pod's deletion, rolling update, scale down, `kubectl rollout status`). Each test
//! has its own `barge server` (with its agent, scheduler and controllers).

mod common;

use std::time::{Duration, Instant};

use common::server::*;
use common::*;

const NODE: &str = "node1";

/// A server with its agent (node `node1`) and the shared images loaded into its engine.
fn cluster(extra: &[&str]) -> Server {
    let mut args = vec!["--node-name", NODE, "--pod-restart-backoff", "1s"];
    args.extend_from_slice(extra);
    let s = Server::start(true, &args);
    let layout = images_dir().join("oci-layout");
    let out = s.barge(&["load", "-i", layout.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    s
}

/// The agent's and controllers' warnings, for failure messages.
fn warnings(s: &Server) -> String {
    s.log()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("storage") || l.contains("statefulset"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The engine container id of the running pod `pod`'s first container.
fn container_of(s: &Server, pod: &str) -> String {
    let cid = s.wait_get(
        &["pod", pod],
        "{.status.containerStatuses[0].containerID}",
        60,
        |v| v.starts_with("barge://"),
    );
    cid.trim_start_matches("barge://").to_string()
}

/// `docker exec CONTAINER sh -c SCRIPT` on the server's engine, which must succeed.
fn sh(s: &Server, cid: &str, script: &str) -> String {
    let out = s.docker(&["exec", cid, "sh", "-c", script]);
    assert!(
        out.status.success(),
        "exec {script:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// base64url without padding (a JWT's parts).
fn b64url(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'-' | b'+' => 62,
            _ => 63,
        }
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | val(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

const BUSYBOX_SLEEP: &str = r#"["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]"#;

#[test]
fn volumes_host_path_downward_projected_token_and_sub_path() {
    let s = cluster(&[]);
    let host = s.dir.join("hostdata");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("from-host"), "host file").unwrap();
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {greeting: hello, other: x}\n",
    );
    let made = s.dir.join("made-by-kubelet");
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: vols
  labels: {{app: vols, tier: "a.b"}}
  annotations: {{note: n1}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:1.35
    command: {BUSYBOX_SLEEP}
    resources: {{limits: {{memory: 64Mi}}}}
    volumeMounts:
    - {{name: host, mountPath: /host}}
    - {{name: made, mountPath: /made}}
    - {{name: file, mountPath: /touched}}
    - {{name: info, mountPath: /info}}
    - {{name: all, mountPath: /all}}
    - {{name: cfg, mountPath: /etc/greeting, subPath: greeting}}
    - {{name: scratch, mountPath: /sub, subPath: deep/dir}}
  volumes:
  - name: host
    hostPath: {{path: {host}, type: Directory}}
  - name: made
    hostPath: {{path: {made}, type: DirectoryOrCreate}}
  - name: file
    hostPath: {{path: {host}/touched, type: FileOrCreate}}
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
      - {{path: mem, resourceFieldRef: {{containerName: c, resource: limits.memory, divisor: 1Mi}}}}
  - name: all
    projected:
      sources:
      - configMap: {{name: cfg, items: [{{key: other, path: cm/other}}]}}
      - downwardAPI: {{items: [{{path: ns, fieldRef: {{fieldPath: metadata.namespace}}}}]}}
      - serviceAccountToken: {{path: vault-token, audience: vault, expirationSeconds: 3600}}
  - name: cfg
    configMap: {{name: cfg}}
  - name: scratch
    emptyDir: {{}}
"#,
        host = host.display(),
        made = made.display(),
    );
    s.apply(&pod);
    // A hostPath whose type check fails: the pod waits in ContainerCreating (FailedMount).
    let missing = s.dir.join("missing");
    s.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: bad}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: busybox:1.35, command: {BUSYBOX_SLEEP}, volumeMounts: [{{name: h, mountPath: /h}}]}}\n  volumes:\n  - {{name: h, hostPath: {{path: {}, type: Directory}}}}\n",
            missing.display()
        ),
    );
    s.k(&["wait", "--for=condition=Ready", "pod/vols", "--timeout=90s"]);
    let cid = container_of(&s, "vols");

    // hostPath: the host's directory, one made for the pod, a file created empty.
    assert_eq!(sh(&s, &cid, "cat /host/from-host"), "host file");
    sh(&s, &cid, "echo from-pod > /made/f");
    assert_eq!(
        std::fs::read_to_string(made.join("f")).unwrap(),
        "from-pod\n"
    );
    assert!(host.join("touched").is_file());
    // downwardAPI: kubelet's formats.
    assert_eq!(
        sh(
            &s,
            &cid,
            "cat /info/labels; echo; cat /info/name; echo; cat /info/mem"
        ),
        "app=\"vols\"\ntier=\"a.b\"\nvols\n64"
    );
    // subPath: one key of a ConfigMap as a file; a directory made inside an emptyDir.
    assert_eq!(sh(&s, &cid, "cat /etc/greeting"), "hello");
    sh(&s, &cid, "echo x > /sub/f && test -f /sub/f");
    // projected: ConfigMap item, namespace, a token for the audience `vault`.
    assert_eq!(sh(&s, &cid, "cat /all/cm/other; cat /all/ns"), "xdefault");
    let vault = sh(&s, &cid, "cat /all/vault-token");
    let claims = String::from_utf8(b64url(vault.split('.').nth(1).unwrap())).unwrap();
    assert!(claims.contains("\"aud\":[\"vault\"]"), "{claims}");

    // The admission's kube-api-access volume: a token the API server accepts, the CA, the
    // namespace.
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(sh(&s, &cid, &format!("cat {sa}/namespace")), "default");
    let ca = sh(&s, &cid, &format!("cat {sa}/ca.crt"));
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let token = sh(&s, &cid, &format!("cat {sa}/token"));
    let ca_file = s.dir.join("pod-ca.crt");
    std::fs::write(&ca_file, &ca).unwrap();
    let review = curl(&[
        "-s",
        "--cacert",
        ca_file.to_str().unwrap(),
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {}", token.trim()),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
        &format!(
            "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            s.url()
        ),
    ]);
    assert!(
        stdout(&review).contains("system:serviceaccount:default:default"),
        "{}{}",
        stdout(&review),
        stderr(&review)
    );

    // The failed type check.
    s.wait_get(
        &["pod", "bad"],
        "{.status.containerStatuses[0].state.waiting.reason}",
        30,
        |r| r == "ContainerCreating",
    );
    let msgs = s.wait_get(
        &[
            "events",
            "--field-selector",
            "involvedObject.name=bad,reason=FailedMount",
        ],
        "{.items[*].message}",
        30,
        |m| !m.is_empty(),
    );
    assert!(
        msgs.contains(&format!(
            "hostPath type check failed: {} is not a directory",
            missing.display()
        )),
        "{msgs}"
    );
    assert!(!missing.exists());
    // Once the directory exists, the pod starts.
    std::fs::create_dir_all(&missing).unwrap();
    s.k(&["wait", "--for=condition=Ready", "pod/bad", "--timeout=60s"]);
}

#[test]
fn claims_bind_statically_and_through_the_local_path_provisioner() {
    let s = cluster(&[]);
    // The default class, as k3s's.
    let class = s.wait_get(&["storageclass", "local-path"],
        "{.provisioner} {.volumeBindingMode} {.reclaimPolicy} {.metadata.annotations.storageclass\\.kubernetes\\.io/is-default-class}",
        30,
        |v| !v.is_empty(),
    );
    assert_eq!(
        class,
        "rancher.io/local-path WaitForFirstConsumer Delete true"
    );

    // A static volume binds to a claim that fits it; a too-large claim stays Pending.
    let static_dir = s.dir.join("static-pv");
    s.apply(&format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata: {{name: manual-pv}}
spec:
  capacity: {{storage: 2Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  persistentVolumeReclaimPolicy: Retain
  hostPath: {{path: {}, type: DirectoryOrCreate}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: big}}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 5Gi}}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: small}}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
"#,
        static_dir.display()
    ));
    s.wait_get(&["pvc", "small"], "{.status.phase}", 30, |p| p == "Bound");
    assert_eq!(
        s.k(&["get", "pvc", "small", "-o", "jsonpath={.spec.volumeName}"]),
        "manual-pv"
    );
    assert_eq!(
        s.k(&["get", "pv", "manual-pv", "-o", "jsonpath={.status.phase}"]),
        "Bound"
    );
    assert_eq!(
        s.k(&["get", "pvc", "big", "-o", "jsonpath={.status.phase}"]),
        "Pending"
    );

    // A default-class claim waits for its first consumer, then is provisioned on its node.
    s.apply(&format!(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: dyn}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: user}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:1.35
    command: {BUSYBOX_SLEEP}
    volumeMounts: [{{name: d, mountPath: /d}}, {{name: m, mountPath: /m}}]
  volumes:
  - {{name: d, persistentVolumeClaim: {{claimName: dyn}}}}
  - {{name: m, persistentVolumeClaim: {{claimName: small}}}}
"#
    ));
    s.wait_get(&["pvc", "dyn"], "{.status.phase}", 60, |p| p == "Bound");
    assert_eq!(
        s.k(&[
            "get",
            "pvc",
            "dyn",
            "-o",
            "jsonpath={.spec.storageClassName}"
        ]),
        "local-path"
    );
    assert_eq!(
        s.k(&[
            "get",
            "pvc",
            "dyn",
            "-o",
            "jsonpath={.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ]),
        NODE
    );
    let pv = s.k(&["get", "pvc", "dyn", "-o", "jsonpath={.spec.volumeName}"]);
    assert!(pv.starts_with("pvc-"), "{pv}");
    assert_eq!(
        s.k(&["get", "pv", &pv, "-o", "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]} {.spec.persistentVolumeReclaimPolicy} {.status.phase}"]),
        format!("{NODE} Delete Bound")
    );
    s.k(&["wait", "--for=condition=Ready", "pod/user", "--timeout=90s"]);
    let cid = container_of(&s, "user");
    sh(&s, &cid, "echo dynamic > /d/f; echo static > /m/f");
    let dir = s.k(&["get", "pv", &pv, "-o", "jsonpath={.spec.hostPath.path}"]);
    assert!(
        dir.starts_with(s.dir.join("data/storage").to_str().unwrap()),
        "{dir}"
    );
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/f")).unwrap(),
        "dynamic\n"
    );
    assert_eq!(
        std::fs::read_to_string(static_dir.join("f")).unwrap(),
        "static\n"
    );

    // The pod and claims go: the provisioned volume and its directory are deleted, the
    // static one (Retain) is Released and kept.
    s.k(&["delete", "pod", "user", "--timeout=60s"]);
    s.k(&["delete", "pvc", "dyn", "small", "--timeout=60s"]);
    s.wait_get(&["pv", "manual-pv"], "{.status.phase}", 30, |p| {
        p == "Released"
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = s.kubectl_with(&s.kubeconfig(), &["get", "pv", &pv]);
        if !out.status.success() && !std::path::Path::new(&dir).exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pv} or {dir} still there\n{}",
            warnings(&s)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(static_dir.join("f").exists());
}

/// kubelet's volume manager refuses a pod whose claim is being deleted (`getPVCExtractPV`):
/// a pod bound to the node (past the scheduler, which refuses such a claim itself) that uses
/// a Terminating claim (a finalizer holds it) stays `ContainerCreating` with a `FailedMount`
/// event.
#[test]
fn a_pod_whose_claim_is_being_deleted_does_not_start() {
    let s = cluster(&[]);
    let dir = s.dir.join("held-pv");
    s.apply(&format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata: {{name: held-pv}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  persistentVolumeReclaimPolicy: Retain
  hostPath: {{path: {}, type: DirectoryOrCreate}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: held, finalizers: [example.com/hold]}}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
"#,
        dir.display()
    ));
    s.wait_get(&["pvc", "held"], "{.status.phase}", 30, |p| p == "Bound");
    s.k(&["delete", "pvc", "held", "--wait=false"]);
    s.wait_get(&["pvc", "held"], "{.metadata.deletionTimestamp}", 30, |t| {
        !t.is_empty()
    });
    s.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: late}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:1.35
    command: {BUSYBOX_SLEEP}
    volumeMounts: [{{name: d, mountPath: /d}}]
  volumes:
  - {{name: d, persistentVolumeClaim: {{claimName: held}}}}
"#
    ));
    let msg = s.wait_get(
        &[
            "events",
            "--field-selector",
            "involvedObject.name=late,reason=FailedMount",
        ],
        "{.items[0].type} {.items[0].message}",
        60,
        |m| !m.is_empty(),
    );
    assert_eq!(
        msg,
        "Warning error processing PVC default/held: PVC is being deleted"
    );
    assert_eq!(
        s.k(&[
            "get",
            "pod",
            "late",
            "-o",
            "jsonpath={.status.phase} {.status.containerStatuses[0].state.waiting.reason}"
        ]),
        "Pending ContainerCreating"
    );
    s.k(&["delete", "pod", "late", "--timeout=60s"]);
    s.k(&[
        "patch",
        "pvc",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
}

const STATEFULSET: &str = r#"apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox:1.35
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
        env: [{name: VERSION, value: "1"}]
        readinessProbe:
          exec: {command: ["true"]}
          periodSeconds: 1
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

#[test]
fn statefulset_orders_pods_keeps_their_claims_and_rolls() {
    let s = cluster(&[]);
    s.apply(STATEFULSET);
    let status = s.k(&["rollout", "status", "sts/web", "--timeout=120s"]);
    assert!(
        status.contains("complete") || status.contains("rolling update complete"),
        "{status}"
    );
    // OrderedReady: web-1 was made only once web-0 was Ready.
    let ready0 = s.k(&[
        "get",
        "pod",
        "web-0",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}",
    ]);
    let created1 = s.k(&[
        "get",
        "pod",
        "web-1",
        "-o",
        "jsonpath={.metadata.creationTimestamp}",
    ]);
    assert!(
        created1 >= ready0,
        "web-1 created at {created1}, web-0 ready at {ready0}"
    );
    // Identity: hostname, subdomain, labels, claims.
    let get = |what: &str, path: &str| s.k(&["get", what, "-o", &format!("jsonpath={path}")]);
    assert_eq!(
        get("pod/web-1", "{.spec.hostname} {.spec.subdomain}"),
        "web-1 nginx"
    );
    assert_eq!(
        get("pod/web-1", "{.metadata.labels.statefulset\\.kubernetes\\.io/pod-name} {.metadata.labels.apps\\.kubernetes\\.io/pod-index}"),
        "web-1 1"
    );
    assert_eq!(get("pvc/data-web-0", "{.status.phase}"), "Bound");
    assert_eq!(
        get("pvc/data-web-1", "{.status.phase} {.metadata.labels.app}"),
        "Bound web"
    );
    let rev1 = get("sts/web", "{.status.updateRevision}");
    assert_eq!(
        get("pod/web-0", "{.metadata.labels.controller-revision-hash}"),
        rev1
    );
    assert_eq!(
        get(
            "sts/web",
            "{.status.currentRevision} {.status.readyReplicas}"
        ),
        format!("{rev1} 2")
    );
    assert_eq!(
        get("controllerrevisions", "{.items[*].metadata.name}"),
        rev1
    );
    let cid = container_of(&s, "web-1");
    assert_eq!(sh(&s, &cid, "hostname"), "web-1\n");
    sh(&s, &cid, "echo kept > /data/f");

    // Deleting web-1: it comes back with the same name and claim, and the data.
    let uid = get("pod/web-1", "{.metadata.uid}");
    s.k(&["delete", "pod", "web-1", "--timeout=60s"]);
    s.wait_get(&["pod", "web-1"], "{.metadata.uid}", 60, |u| {
        !u.is_empty() && u != uid
    });
    s.k(&[
        "wait",
        "--for=condition=Ready",
        "pod/web-1",
        "--timeout=60s",
    ]);
    let cid = container_of(&s, "web-1");
    assert_eq!(sh(&s, &cid, "cat /data/f"), "kept\n");

    // A rolling update: a new revision, pods replaced highest ordinal first.
    s.k(&["set", "env", "sts/web", "VERSION=2"]);
    let status = s.k(&["rollout", "status", "sts/web", "--timeout=120s"]);
    assert!(status.contains("complete"), "{status}");
    let rev2 = get("sts/web", "{.status.updateRevision}");
    assert_ne!(rev1, rev2);
    assert_eq!(
        get(
            "sts/web",
            "{.status.currentRevision} {.status.updatedReplicas}"
        ),
        format!("{rev2} 2")
    );
    assert_eq!(
        get("pod/web-0", "{.metadata.labels.controller-revision-hash}"),
        rev2
    );
    let t0 = get("pod/web-0", "{.metadata.creationTimestamp}");
    let t1 = get("pod/web-1", "{.metadata.creationTimestamp}");
    assert!(t1 <= t0, "web-1 ({t1}) is replaced before web-0 ({t0})");
    let cid = container_of(&s, "web-1");
    assert_eq!(sh(&s, &cid, "cat /data/f; echo $VERSION"), "kept\n2\n");
    assert_eq!(
        s.k(&["get", "controllerrevisions", "-o", "name"])
            .lines()
            .count(),
        2
    );

    // Scale down: web-1 goes, its claim stays.
    s.k(&["scale", "sts/web", "--replicas=1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s
        .kubectl_with(&s.kubeconfig(), &["get", "pod", "web-1"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "web-1 is still there\n{}",
            warnings(&s)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    s.wait_get(&["sts", "web"], "{.status.replicas}", 30, |r| r == "1");
    assert_eq!(get("pvc/data-web-1", "{.status.phase}"), "Bound");
    s.k(&[
        "delete",
        "sts",
        "web",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
}

const DAEMONSET: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {role: edge}
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox:1.35
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
        env: [{name: VERSION, value: "1"}]
"#;

#[test]
fn daemonset_follows_nodes_and_silent_nodes_are_tainted_and_evicted() {
    // The agent renews its Lease every 10 s: a 15 s grace period keeps node1 Ready.
    let s = cluster(&["--node-monitor-grace-period", "15s"]);
    let get = |what: &str, path: &str| s.k(&["get", what, "-o", &format!("jsonpath={path}")]);
    s.apply(DAEMONSET);
    // No node is eligible yet.
    s.wait_get(&["ds", "agent"], "{.status.observedGeneration}", 30, |g| {
        g == "1"
    });
    assert_eq!(get("ds/agent", "{.status.desiredNumberScheduled}"), "0");
    s.k(&["label", "node", NODE, "role=edge"]);
    let out = s.k(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let pod = s.k(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let p = format!("pod/{pod}");
    assert_eq!(get(&p, "{.spec.nodeName}"), NODE);
    assert_eq!(
        get(&p, "{.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values[0]}"),
        NODE
    );
    // kube's daemon tolerations: unreachable without tolerationSeconds (never evicted).
    assert_eq!(
        get(
            &p,
            "{.spec.tolerations[?(@.key==\"node.kubernetes.io/unreachable\")].effect}"
        ),
        "NoExecute"
    );
    assert_eq!(
        get(
            &p,
            "{.spec.tolerations[?(@.key==\"node.kubernetes.io/unreachable\")].tolerationSeconds}"
        ),
        ""
    );
    let hash = get(&p, "{.metadata.labels.controller-revision-hash}");
    // A rolling update replaces the pod.
    s.k(&["set", "env", "ds/agent", "VERSION=2"]);
    let out = s.k(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let hashes = s.wait_get(
        &["pods", "-l", "app=agent"],
        "{.items[*].metadata.labels.controller-revision-hash}",
        60,
        |h| !h.is_empty() && !h.contains(&hash) && !h.contains(' '),
    );
    assert_ne!(hashes, hash);
    assert_eq!(
        get(
            "ds/agent",
            "{.status.updatedNumberScheduled} {.status.numberReady}"
        ),
        "1 1"
    );
    // The node no longer matches: its pod goes.
    s.k(&["label", "node", NODE, "role-"]);
    s.wait_get(
        &["ds", "agent"],
        "{.status.desiredNumberScheduled}",
        30,
        |d| d == "0",
    );
    s.wait_get(
        &["pods", "-l", "app=agent"],
        "{.items[*].metadata.name}",
        60,
        |n| n.is_empty(),
    );

    // A node that never reports: Unknown, tainted unreachable, its pods evicted after their
    // tolerationSeconds (2 s here; DefaultTolerationSeconds gives others 300 s).
    s.apply(r#"apiVersion: v1
kind: Node
metadata: {name: ghost, labels: {kubernetes.io/hostname: ghost}}
---
apiVersion: v1
kind: Pod
metadata: {name: tolerant}
spec:
  nodeName: ghost
  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}]
  containers: [{name: c, image: busybox:1.35}]
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  nodeName: ghost
  containers: [{name: c, image: busybox:1.35}]
"#,
    );
    assert_eq!(
        get(
            "pod/plain",
            "{.spec.tolerations[?(@.key==\"node.kubernetes.io/unreachable\")].tolerationSeconds}"
        ),
        "300"
    );
    s.wait_get(
        &["node", "ghost"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        40,
        |r| r == "Unknown",
    );
    assert_eq!(
        get(
            "node/ghost",
            "{.status.conditions[?(@.type==\"Ready\")].reason}"
        ),
        "NodeStatusNeverUpdated"
    );
    let taints = s.wait_get(&["node", "ghost"], "{.spec.taints[*].key}", 20, |t| {
        t.contains("node.kubernetes.io/unreachable")
    });
    assert!(taints.contains("unreachable"), "{taints}");
    s.wait_get(
        &["pod", "tolerant"],
        "{.metadata.deletionTimestamp}",
        30,
        |d| !d.is_empty(),
    );
    assert_eq!(
        get(
            "pod/tolerant",
            "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}"
        ),
        "DeletionByTaintManager"
    );
    assert_eq!(get("pod/plain", "{.metadata.deletionTimestamp}"), "");
    // The real node keeps reporting.
    assert_eq!(
        get(
            "node/node1",
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        ),
        "True"
    );
    assert_eq!(get("node/node1", "{.spec.taints}"), "");
    s.k(&["delete", "ds", "agent", "--timeout=60s"]);
}
