//! The node agent against the pod spec's finer parts, driven with kubectl 1.32 on a one-node
//! `barge server`: image pulls (pull policies, `imagePullSecrets`, kube's failure reasons and
//! back-off) from a real registry (Debian's `docker-registry` on 127.0.0.1, seeded with
//! `skopeo copy` from the shared OCI layout), init containers and sidecars, securityContext,
//! lifecycle. Each test runs its pods side by side and checks several things per pod.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::*;
use common::*;

const NODE: &str = "node1";

/// A server with its agent (node `node1`, restart and image back-off base `backoff`) and the
/// shared images loaded into its engine.
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

/// The events of pod `pod` as `REASON|TYPE|MESSAGE` lines.
fn events(s: &Server, pod: &str) -> String {
    s.k(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        r#"jsonpath={range .items[*]}{.reason}|{.type}|{.message}{"\n"}{end}"#,
    ])
}

/// Waits until pod `pod` has an event line containing `want`.
fn wait_event(s: &Server, pod: &str, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let ev = events(s, pod);
        if let Some(l) = ev.lines().find(|l| l.contains(want)) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "pod {pod}: no event with {want:?}; events:\n{ev}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The logs of `pod`'s container `c` (read from the engine: `kubectl logs` needs the
/// agent's streaming endpoint), once they contain `marker`.
fn wait_logs(s: &Server, pod: &str, c: &str, marker: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let path = format!("jsonpath={{.status.containerStatuses[?(@.name==\"{c}\")].containerID}}");
    loop {
        let out = s.kubectl_with(&s.kubeconfig(), &["get", "pod", pod, "-o", &path]);
        let id = stdout(&out)
            .trim()
            .trim_start_matches("barge://")
            .to_string();
        let mut l = String::new();
        if !id.is_empty() {
            let out = s.docker(&["logs", &id]);
            l = format!("{}{}", stdout(&out), stderr(&out));
            if l.contains(marker) {
                return l;
            }
        }
        assert!(
            Instant::now() < deadline,
            "pod {pod}/{c}: logs without {marker:?}: {l}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A `docker-registry serve` on 127.0.0.1 (with an htpasswd user when `auth`); killed and
/// removed on drop.
struct Registry {
    dir: PathBuf,
    child: Child,
    host: String,
    auth: Option<(&'static str, &'static str)>,
}

impl Registry {
    fn start(auth: Option<(&'static str, &'static str)>) -> Registry {
        let dir = unique_dir();
        let host = format!("127.0.0.1:{}", free_port());
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.join("storage").display()
        );
        if let Some((u, p)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd: {}", stderr(&out));
            std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
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
            .expect("starting docker-registry (scripts/install-deps.sh)");
        let reg = Registry {
            dir,
            child,
            host,
            auth,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&reg.host).is_err() {
            assert!(Instant::now() < deadline, "registry did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// Copies `layout_ref` of the shared OCI layout to `repo_tag` here.
    fn seed(&self, layout_ref: &str, repo_tag: &str) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--dest-tls-verify=false"]);
        if let Some((u, p)) = self.auth {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        let out = cmd
            .arg(format!(
                "oci:{}:{layout_ref}",
                images_dir().join("oci-layout").display()
            ))
            .arg(format!("docker://{}/{repo_tag}", self.host))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy: {}", stderr(&out));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pod on `node1` with one container `c` (extra spec lines `spec`, container lines `cont`,
/// both indented already).
fn pod(name: &str, image: &str, spec: &str, cont: &str) -> String {
    let grace = if spec.contains("terminationGracePeriodSeconds") {
        ""
    } else {
        "  terminationGracePeriodSeconds: 1\n"
    };
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {NODE}\n{grace}{spec}  containers:\n  - name: c\n    image: {image:?}\n{cont}"
    )
}

const SLEEP: &str = "    command: [sleep, \"3600\"]\n";

#[test]
fn images_are_pulled_by_policy_with_pull_secrets_and_kube_failures() {
    let open = Registry::start(None);
    let private = Registry::start(Some(("puller", "s3cret")));
    open.seed("busybox:1.35", "busybox:latest");
    private.seed("busybox:1.35", "private/bb:1");
    let s = cluster("1s");
    s.k(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", private.host),
        "--docker-username=puller",
        "--docker-password=s3cret",
    ]);
    let (o, p) = (&open.host, &private.host);
    let secret = "  imagePullSecrets: [{name: regcred}]\n";
    let always = "    imagePullPolicy: Always\n";
    let never = "    imagePullPolicy: Never\n";
    let manifest = [
        // No tag: `Always`, pulled from the open registry.
        pod("pull-open", &format!("{o}/busybox"), "", SLEEP),
        // A private image with its pull secret.
        pod("pull-secret", &format!("{p}/private/bb:1"), secret, SLEEP),
        // The same image without it (`Always`: pulled again, refused).
        pod(
            "pull-denied",
            &format!("{p}/private/bb:1"),
            "",
            &format!("{SLEEP}{always}"),
        ),
        pod("pull-missing", &format!("{o}/nope:1"), "", SLEEP),
        pod("never-missing", &format!("{o}/absent:2"), "", never),
        pod("bad-name", "bad//name:1", "", SLEEP),
        // Present in the engine (loaded): never pulled.
        pod(
            "never-present",
            "busybox:1.35",
            "",
            &format!("{SLEEP}{never}"),
        ),
    ]
    .concat();
    s.apply(&manifest);
    let phase = "{.status.phase}";
    let waiting = "{.status.containerStatuses[0].state.waiting.reason}";
    let message = "{.status.containerStatuses[0].state.waiting.message}";
    for running in ["pull-open", "pull-secret", "never-present"] {
        s.wait_pod(running, phase, 90, |p| p == "Running");
    }
    let img = format!("{o}/busybox");
    wait_event(
        &s,
        "pull-open",
        &format!("Pulling|Normal|Pulling image {img:?}"),
        5,
    );
    let pulled = wait_event(
        &s,
        "pull-open",
        "Pulled|Normal|Successfully pulled image",
        5,
    );
    assert!(
        pulled.contains(&format!("image {img:?} in "))
            && pulled.contains(" including waiting). Image size: "),
        "{pulled}"
    );
    wait_event(
        &s,
        "never-present",
        "Pulled|Normal|Container image \"busybox:1.35\" already present on machine",
        5,
    );
    // The image ID of a pulled image is the engine's.
    let id = s.wait_pod(
        "pull-secret",
        "{.status.containerStatuses[0].imageID}",
        5,
        |v| !v.is_empty(),
    );
    assert!(id.contains("sha256:"), "{id}");

    // Failures: ErrImagePull, then ImagePullBackOff with the pull error in its message.
    let both = format!("{waiting}|{message}|{phase}");
    for bad in ["pull-denied", "pull-missing"] {
        let m = s.wait_pod(bad, &both, 60, |m| {
            m.starts_with("ImagePullBackOff|Back-off pulling image")
        });
        assert!(
            m.contains(": ErrImagePull: failed to pull and unpack image"),
            "{m}"
        );
        assert!(m.ends_with("|Pending"), "{m}");
        wait_event(&s, bad, "Failed|Warning|Failed to pull image", 5);
        wait_event(&s, bad, "Failed|Warning|Error: ErrImagePull", 5);
        wait_event(&s, bad, "BackOff|Normal|Back-off pulling image", 5);
    }
    let m = s.wait_pod("never-missing", message, 30, |m| !m.is_empty());
    assert_eq!(
        m,
        format!("Container image \"{o}/absent:2\" is not present with pull policy of Never")
    );
    assert_eq!(
        s.wait_pod("never-missing", waiting, 5, |_| true),
        "ErrImageNeverPull"
    );
    wait_event(&s, "never-missing", "ErrImageNeverPull|Warning|", 5);
    assert_eq!(
        s.wait_pod("bad-name", waiting, 30, |w| !w.is_empty()),
        "InvalidImageName"
    );
    let m = s.wait_pod("bad-name", message, 5, |_| true);
    assert!(m == "Failed to apply default image tag \"bad//name:1\": couldn't parse image name \"bad//name:1\": invalid reference format", "{m}");
    wait_event(&s, "bad-name", "InspectFailed|Warning|", 5);

    // The missing image appears: the pod starts after its back-off.
    open.seed("busybox:1.35", "nope:1");
    s.wait_pod("pull-missing", phase, 60, |p| p == "Running");
}

#[test]
fn security_context_maps_onto_the_engine() {
    let s = cluster("1s");
    let show = r#"    command: [sh, -c, "cat /proc/self/status; ls -lnd /data; echo x > /data/f && ls -ln /data/f; echo x > /rootfile || echo ROOTFS-RO; echo DONE; sleep 3600"]
"#;
    let status = r#"    command: [sh, -c, "cat /proc/self/status; echo x > /rootfile || echo ROOTFS-RO; echo DONE; sleep 3600"]
"#;
    let manifest = [
        pod(
            "sec",
            "busybox:1.35",
            "  securityContext: {runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], fsGroup: 2000, seccompProfile: {type: RuntimeDefault}}\n  volumes: [{name: data, emptyDir: {}}]\n",
            &format!("{show}    volumeMounts: [{{name: data, mountPath: /data}}]\n    securityContext: {{runAsUser: 1001, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}}}\n"),
        ),
        pod(
            "priv",
            "busybox:1.35",
            "",
            &format!("{status}    securityContext: {{privileged: true, readOnlyRootFilesystem: true}}\n"),
        ),
        pod("plain", "busybox:1.35", "", status),
        pod(
            "nonroot",
            "busybox:1.35",
            "  securityContext: {runAsNonRoot: true}\n",
            SLEEP,
        ),
        pod(
            "nonroot-ok",
            "busybox:1.35",
            "  securityContext: {runAsNonRoot: true, runAsUser: 1234}\n",
            SLEEP,
        ),
    ]
    .concat();
    s.apply(&manifest);
    let field = |logs: &str, k: &str| -> String {
        logs.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .unwrap_or_else(|| panic!("no {k} in {logs}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let l = wait_logs(&s, "sec", "c", "DONE", 60);
    assert_eq!(field(&l, "Uid"), "1001 1001 1001 1001", "{l}");
    assert_eq!(field(&l, "Gid"), "3000 3000 3000 3000", "{l}");
    let groups = field(&l, "Groups");
    assert!(groups.contains("4000") && groups.contains("2000"), "{l}");
    assert_eq!(field(&l, "NoNewPrivs"), "1", "{l}");
    assert_eq!(field(&l, "Seccomp"), "2", "{l}");
    // Only NET_BIND_SERVICE (bit 10), bounding set included.
    assert_eq!(field(&l, "CapBnd"), "0000000000000400", "{l}");
    // fsGroup: the emptyDir belongs to group 2000, set-group-ID, and new files get the group.
    let dir = l
        .lines()
        .find(|l| l.ends_with(" /data"))
        .unwrap_or_default();
    assert!(
        dir.starts_with("drwxrwsrwx") && dir.contains(" 2000 "),
        "{l}"
    );
    let f = l
        .lines()
        .find(|l| l.ends_with(" /data/f"))
        .unwrap_or_default();
    assert!(f.contains(" 1001 ") && f.contains(" 2000 "), "{l}");

    let l = wait_logs(&s, "priv", "c", "DONE", 60);
    let eff = u64::from_str_radix(&field(&l, "CapEff"), 16).unwrap();
    assert!(eff > 0xffff_ffff, "{l}");
    assert_eq!(field(&l, "Seccomp"), "0", "{l}");
    assert_eq!(field(&l, "Uid"), "0 0 0 0", "{l}");
    assert!(l.contains("ROOTFS-RO"), "{l}");
    // Without a profile kubelet runs containers unconfined; without privileges, docker's caps.
    let l = wait_logs(&s, "plain", "c", "DONE", 60);
    assert_eq!(field(&l, "Seccomp"), "0", "{l}");
    assert_eq!(field(&l, "CapEff"), "00000000a80425fb", "{l}");
    assert_eq!(field(&l, "NoNewPrivs"), "0", "{l}");
    assert!(!l.contains("ROOTFS-RO"), "{l}");

    let m = s.wait_pod(
        "nonroot",
        "{.status.containerStatuses[0].state.waiting.message}",
        30,
        |m| !m.is_empty(),
    );
    let uid = s.k(&["get", "pod", "nonroot", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(
        m,
        format!("container has runAsNonRoot and image will run as root (pod: \"nonroot_default({uid})\", container: c)")
    );
    let r = "{.status.containerStatuses[0].state.waiting.reason}";
    assert_eq!(
        s.wait_pod("nonroot", r, 5, |_| true),
        "CreateContainerConfigError"
    );
    wait_event(
        &s,
        "nonroot",
        "Failed|Warning|Error: container has runAsNonRoot",
        5,
    );
    s.wait_pod("nonroot-ok", "{.status.phase}", 30, |p| p == "Running");
}

/// `hostNetwork`, `hostPID` and `hostIPC` put the pod's containers in the node's namespaces
/// (the pod's IP is the node's); a pod without them has its own.
#[test]
fn host_namespaces_are_the_nodes() {
    let s = cluster("1s");
    let show = "    command: [sh, -c, \"ls -l /proc/self/ns/; echo DONE; sleep 3600\"]\n";
    let manifest = [
        pod(
            "hostns",
            "busybox:1.35",
            "  hostNetwork: true\n  hostPID: true\n  hostIPC: true\n",
            show,
        ),
        pod(
            "ownns",
            "busybox:1.35",
            "",
            "    command: [sh, -c, \"ls -l /proc/self/ns/; echo MTU=$(cat /sys/class/net/eth0/mtu); echo DONE; sleep 3600\"]\n",
        ),
    ]
    .concat();
    s.apply(&manifest);
    let ns_of = |text: &str, kind: &str| -> String {
        text.lines()
            .find_map(|l| {
                l.split(&format!(" {kind} -> "))
                    .nth(1)
                    .map(|t| t.trim().to_string())
            })
            .unwrap_or_default()
    };
    let host = |kind: &str| {
        std::fs::read_link(format!("/proc/self/ns/{kind}"))
            .unwrap()
            .display()
            .to_string()
    };
    let hostns = wait_logs(&s, "hostns", "c", "DONE", 60);
    let ownns = wait_logs(&s, "ownns", "c", "DONE", 60);
    for kind in ["net", "pid", "ipc", "uts"] {
        assert_eq!(ns_of(&hostns, kind), host(kind), "{kind}: {hostns}");
        assert_ne!(ns_of(&ownns, kind), host(kind), "{kind}: {ownns}");
        assert!(!ns_of(&ownns, kind).is_empty(), "{kind}: {ownns}");
    }
    let ips = get(&s, "hostns", "{.status.podIP} {.status.hostIP}");
    let (pod_ip, host_ip) = ips.split_once(' ').unwrap();
    assert_eq!(pod_ip, host_ip, "{ips}");
    // Under the VXLAN backend (the default) pods' interfaces fit inside the encapsulation:
    // the MTU of the node IP's link minus 50, as flannel's FLANNEL_MTU.
    let addrs = Command::new("ip")
        .args(["-o", "-4", "addr"])
        .output()
        .unwrap();
    let link = stdout(&addrs)
        .lines()
        .find(|l| l.contains(&format!(" {host_ip}/")))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| panic!("no link holds {host_ip}"));
    let link_mtu: u32 = std::fs::read_to_string(format!("/sys/class/net/{link}/mtu"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        ownns.contains(&format!("MTU={}\n", link_mtu - 50)),
        "{link} {link_mtu}: {ownns}"
    );
}

/// A pod on `node1` with containers `a` and `b` (busybox; `a` sleeps, `b` runs `b_cmd`) and
/// extra spec lines `spec` (indented already).
fn duo(name: &str, spec: &str, b_cmd: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {NODE}\n  terminationGracePeriodSeconds: 1\n{spec}  containers:\n  - name: a\n    image: busybox:1.35\n{SLEEP}  - name: b\n    image: busybox:1.35\n    command: [sh, -c, {b_cmd:?}]\n"
    )
}

/// As behind kube's pause container, the containers of one pod share its IPC and UTS
/// namespaces (host name = the pod's name) and its `/dev/shm`, two pods do not; with
/// `shareProcessNamespace` they also share one PID namespace whose PID 1 is the holder
/// (`/pause`), where one container sees the other's processes and reaches its file system
/// through `/proc/<pid>/root`; without it each container's PID 1 is its own process. The
/// holder is in no status, and deleting the pods leaves no namespace, mount or container.
#[test]
fn pod_containers_share_ipc_uts_shm_and_optionally_pids() {
    let mut s = cluster("1s");
    let manifest = [
        duo("duo", "", "exec sleep 3600"),
        pod("solo", "busybox:1.35", "", SLEEP),
        duo(
            "shared",
            "  shareProcessNamespace: true\n",
            "echo from-b > /marker-b; exec sleep 3601",
        ),
    ]
    .concat();
    s.apply(&manifest);
    for p in ["duo", "solo", "shared"] {
        s.wait_pod(p, "{.status.phase}", 90, |v| v == "Running");
    }
    fn sh(s: &Server, pod: &str, c: &str, script: &str) -> String {
        let out = s.kubectl_with(
            &s.kubeconfig(),
            &["exec", pod, "-c", c, "--", "sh", "-c", script],
        );
        assert!(
            out.status.success(),
            "{pod}/{c}: {script}: {}",
            stderr(&out)
        );
        stdout(&out).trim().to_string()
    }
    let exec = |pod: &str, c: &str, script: &str| sh(&s, pod, c, script);
    let host_ns = |kind: &str| {
        std::fs::read_link(format!("/proc/self/ns/{kind}"))
            .unwrap()
            .display()
            .to_string()
    };
    let ns =
        |pod: &str, c: &str, kind: &str| exec(pod, c, &format!("readlink /proc/self/ns/{kind}"));
    for kind in ["ipc", "uts", "net"] {
        let (a, b, solo) = (
            ns("duo", "a", kind),
            ns("duo", "b", kind),
            ns("solo", "c", kind),
        );
        assert_eq!(a, b, "{kind}: one pod, one namespace");
        assert_ne!(a, solo, "{kind}: two pods, two namespaces");
        assert_ne!(a, host_ns(kind), "{kind}: not the node's");
    }
    assert_eq!(exec("duo", "a", "hostname"), "duo");
    assert_eq!(exec("duo", "b", "hostname"), "duo");
    assert_eq!(exec("solo", "c", "hostname"), "solo");
    // POSIX shared memory: one tmpfs for the pod.
    exec("duo", "a", "echo shared > /dev/shm/x");
    assert_eq!(exec("duo", "b", "cat /dev/shm/x"), "shared");
    assert_eq!(
        exec("solo", "c", "cat /dev/shm/x 2>/dev/null || echo none"),
        "none"
    );
    // Without shareProcessNamespace: own PID namespaces, each container its own PID 1.
    assert_ne!(ns("duo", "a", "pid"), ns("duo", "b", "pid"));
    let pid1 = "tr '\\0' ' ' < /proc/1/cmdline";
    assert_eq!(exec("duo", "a", pid1), "sleep 3600");
    assert_eq!(exec("duo", "b", pid1), "sleep 3600");
    // With it: one PID namespace, the holder as PID 1, the other container's processes.
    assert_eq!(ns("shared", "a", "pid"), ns("shared", "b", "pid"));
    assert_eq!(ns("shared", "a", "ipc"), ns("shared", "b", "ipc"));
    assert_eq!(exec("shared", "a", pid1), "/pause");
    assert_eq!(exec("shared", "b", pid1), "/pause");
    let ps = exec("shared", "a", "ps -o pid,user,args");
    assert!(
        ps.contains("sleep 3601") && ps.contains("sleep 3600"),
        "{ps}"
    );
    let pause = ps
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_default();
    assert!(pause.contains("/pause") && pause.contains("65535"), "{ps}");
    let root = exec(
        "shared",
        "a",
        "for p in /proc/[0-9]*; do grep -q 3601 $p/cmdline 2>/dev/null && cat $p/root/marker-b; done",
    );
    assert_eq!(root, "from-b", "/proc/<pid>/root reaches b's file system");
    assert_eq!(
        get(&s, "shared", "{.status.containerStatuses[*].name}"),
        "a b"
    );
    assert_eq!(
        get(&s, "shared", "{.status.containerStatuses[*].restartCount}"),
        "0 0"
    );

    // A restarted server (its agent killed with -9) adopts the holder and the containers as
    // they run.
    let running = |s: &Server| {
        let out = s.docker(&["ps", "--format", "{{.ID}} {{.Names}}"]);
        let mut v: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let before = running(&s);
    assert!(
        before.iter().any(|l| l.contains(" k8s_POD_shared_")),
        "{before:?}"
    );
    s.kill9();
    s.restart();
    // Time for the agent to sync every pod; nothing may change meanwhile.
    std::thread::sleep(Duration::from_secs(4));
    s.wait_pod("shared", "{.status.phase}", 30, |p| p == "Running");
    assert_eq!(running(&s), before);
    assert_eq!(sh(&s, "shared", "b", pid1), "/pause");
    assert_eq!(
        get(&s, "shared", "{.status.containerStatuses[*].restartCount}"),
        "0 0"
    );

    // Deleted: the holder goes with the pod's containers, the namespaces and /dev/shm with
    // the sandbox.
    s.k(&[
        "delete",
        "pod",
        "duo",
        "solo",
        "shared",
        "--wait=true",
        "--timeout=90s",
    ]);
    let exec_root = s.dir.join("run");
    s.until(60, "no container, namespace or mount left", || {
        let out = s.docker(&["ps", "-aq"]);
        let containers = stdout(&out).trim().to_string();
        let left = |d: &str| {
            std::fs::read_dir(exec_root.join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        };
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let podns = exec_root.join("podns").display().to_string();
        let mounted = mounts.lines().filter(|l| l.contains(&podns)).count();
        (out.status.success()
            && containers.is_empty()
            && left("podns") == 0
            && left("netns") == 0
            && mounted == 0)
            .then_some(())
    });
}

/// ConfigMap and Secret volumes follow their sources (kubelet's `..data` swap), a `subPath`
/// mount keeps the file it started with, and the keys are links into `..data` as on kube.
#[test]
fn configmap_and_secret_volumes_follow_updates() {
    let s = cluster("1s");
    s.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {greeting: hello}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: sec}\nstringData: {pw: one}\n",
    );
    let manifest = pod(
        "watcher",
        "busybox:1.35",
        "  volumes:\n  - {name: cfg, configMap: {name: cfg}}\n  - {name: sec, secret: {secretName: sec}}\n",
        "    command: [sleep, \"3600\"]\n    volumeMounts:\n    - {name: cfg, mountPath: /cfg}\n    - {name: sec, mountPath: /sec}\n    - {name: cfg, mountPath: /pinned, subPath: greeting}\n",
    );
    s.apply(&manifest);
    s.wait_pod("watcher", "{.status.phase}", 60, |p| p == "Running");
    let cat = |path: &str| {
        let out = s.kubectl_with(&s.kubeconfig(), &["exec", "watcher", "--", "cat", path]);
        stdout(&out).trim().to_string()
    };
    assert_eq!(cat("/cfg/greeting"), "hello");
    assert_eq!(cat("/sec/pw"), "one");
    let ls = s.k(&["exec", "watcher", "--", "ls", "-la", "/cfg/"]);
    assert!(
        ls.contains("..data ->") && ls.contains("greeting -> ..data/greeting"),
        "{ls}"
    );

    s.k(&[
        "patch",
        "configmap",
        "cfg",
        "-p",
        r#"{"data":{"greeting":"bye","extra":"new"}}"#,
    ]);
    s.k(&[
        "patch",
        "secret",
        "sec",
        "-p",
        r#"{"stringData":{"pw":"two"}}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (g, e, p) = (cat("/cfg/greeting"), cat("/cfg/extra"), cat("/sec/pw"));
        if (g.as_str(), e.as_str(), p.as_str()) == ("bye", "new", "two") {
            break;
        }
        assert!(Instant::now() < deadline, "not updated: {g:?} {e:?} {p:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(cat("/pinned"), "hello", "a subPath mount keeps its file");
}

/// `kubectl get pod NAME -o jsonpath=PATH` once.
fn get(s: &Server, pod: &str, path: &str) -> String {
    s.k(&["get", "pod", pod, "-o", &format!("jsonpath={path}")])
}

#[test]
fn init_containers_run_in_order_and_sidecars_around_the_app() {
    let s = cluster("1s");
    let work = "  volumes: [{name: work, emptyDir: {}}]\n";
    let mount = "    volumeMounts: [{name: work, mountPath: /work}]\n";
    let init =
        |name: &str, cmd: &str, sidecar: bool| {
            format!(
            "  - name: {name}\n    image: busybox:1.35\n    command: [sh, -c, {cmd:?}]\n{}{mount}",
            if sidecar { "    restartPolicy: Always\n" } else { "" }
        )
        };
    let manifest = [
        pod(
            "init-ok",
            "busybox:1.35",
            &format!(
                "{work}  initContainers:\n{}{}{}",
                init("side", "echo side >> /work/order; exec sleep 3600", true),
                init("slow", "sleep 4; echo slow >> /work/order", false),
                init("fast", "echo fast >> /work/order", false)
            ),
            &format!(
                "    command: [sh, -c, \"cat /work/order; echo DONE; exec sleep 3600\"]\n{mount}"
            ),
        ),
        pod(
            "init-fail",
            "busybox:1.35",
            &format!(
                "  restartPolicy: Never\n{work}  initContainers:\n{}",
                init("i", "exit 3", false)
            ),
            SLEEP,
        ),
        pod(
            "init-crash",
            "busybox:1.35",
            &format!("{work}  initContainers:\n{}", init("i", "exit 1", false)),
            SLEEP,
        ),
        pod(
            "side-restart",
            "busybox:1.35",
            &format!("{work}  initContainers:\n{}", init("side", "sleep 1", true)),
            SLEEP,
        ),
        pod(
            "side-job",
            "busybox:1.35",
            &format!(
                "  restartPolicy: Never\n{work}  initContainers:\n{}",
                init("side", "exec sleep 3600", true)
            ),
            "    command: [sh, -c, \"sleep 2; echo hi\"]\n",
        ),
    ]
    .concat();
    s.apply(&manifest);

    // While `slow` runs: Pending, not initialized, the app waits with PodInitializing.
    let st = "{.status.initContainerStatuses[1].state.running.startedAt}";
    s.wait_pod("init-ok", st, 60, |v| !v.is_empty());
    assert_eq!(get(&s, "init-ok", "{.status.phase}"), "Pending");
    assert_eq!(
        get(
            &s,
            "init-ok",
            r#"{.status.conditions[?(@.type=="Initialized")].message}"#
        ),
        "containers with incomplete status: [slow fast]"
    );
    assert_eq!(
        get(
            &s,
            "init-ok",
            "{.status.containerStatuses[0].state.waiting.reason}"
        ),
        "PodInitializing"
    );
    assert_eq!(
        get(&s, "init-ok", "{.status.initContainerStatuses[0].started}"),
        "true"
    );
    // kubectl's STATUS column as kube's printer makes it: the sidecar started, `slow` (the
    // second of three init containers) running; READY counts the sidecar (1 of 2).
    let row = s.k(&["get", "pod", "init-ok", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..3], ["1/2", "Init:1/3"], "{row}");
    // Then in order, the sidecar still running beside the app; Ready counts it.
    let l = wait_logs(&s, "init-ok", "c", "DONE", 60);
    assert_eq!(l, "side\nslow\nfast\nDONE\n");
    s.wait_pod(
        "init-ok",
        r#"{.status.conditions[?(@.type=="Ready")].status}"#,
        20,
        |v| v == "True",
    );
    assert_eq!(get(&s, "init-ok", "{.status.phase}"), "Running");
    assert_eq!(
        get(
            &s,
            "init-ok",
            "{.status.initContainerStatuses[*].state.terminated.reason}"
        ),
        "Completed Completed"
    );
    assert!(!get(
        &s,
        "init-ok",
        "{.status.initContainerStatuses[0].state.running.startedAt}"
    )
    .is_empty());

    // A failed init container: the pod fails under Never, crash-loops otherwise.
    s.wait_pod("init-fail", "{.status.phase}", 60, |p| p == "Failed");
    assert_eq!(
        get(
            &s,
            "init-fail",
            "{.status.initContainerStatuses[0].state.terminated.exitCode}"
        ),
        "3"
    );
    assert_eq!(
        get(
            &s,
            "init-fail",
            "{.status.containerStatuses[0].state.waiting.reason}"
        ),
        "PodInitializing"
    );
    s.wait_pod(
        "init-crash",
        "{.status.initContainerStatuses[0].state.waiting.reason}",
        60,
        |r| r == "CrashLoopBackOff",
    );
    assert_eq!(get(&s, "init-crash", "{.status.phase}"), "Pending");
    let row = s.k(&["get", "pod", "init-crash", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..3], ["0/1", "Init:CrashLoopBackOff"], "{row}");
    let row = s.k(&["get", "pod", "init-fail", "--no-headers"]);
    assert!(row.contains("Init:Error"), "{row}");
    assert_eq!(
        get(
            &s,
            "init-crash",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );

    // A sidecar that ends is restarted; the app is not.
    s.wait_pod(
        "side-restart",
        "{.status.initContainerStatuses[0].restartCount}",
        60,
        |n| n.parse::<i64>().unwrap_or(0) >= 2,
    );
    assert_eq!(
        get(
            &s,
            "side-restart",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    assert_eq!(get(&s, "side-restart", "{.status.phase}"), "Running");

    // The app of a Never pod completes: its sidecar is stopped and the pod succeeds.
    s.wait_pod("side-job", "{.status.phase}", 60, |p| p == "Succeeded");
    wait_event(&s, "side-job", "Killing|Normal|Stopping container side", 5);

    // Deletion: the app stops before the sidecar.
    s.k(&["delete", "pod", "init-ok", "--wait=true", "--timeout=60s"]);
    let ev = events(&s, "init-ok");
    let at = |m: &str| ev.find(m).unwrap_or_else(|| panic!("no {m:?} in\n{ev}"));
    assert!(
        at("Stopping container c") < at("Stopping container side"),
        "{ev}"
    );
}

#[test]
fn lifecycle_hooks_termination_messages_oom_and_probes() {
    let s = cluster("1s");
    let hook_port = free_port();
    let sh = |cmd: &str| format!("    command: [sh, -c, {cmd:?}]\n");
    let never = "  restartPolicy: Never\n";
    let w = "  volumes: [{name: w, emptyDir: {}}]\n";
    let wm = "    volumeMounts: [{name: w, mountPath: /w}]\n";
    let manifest = [
        // postStart (exec) writes a file the app waits for; preStop fails after 2 s.
        pod(
            "hooks",
            "busybox:1.35",
            &format!("  terminationGracePeriodSeconds: 5\n{w}"),
            &format!(
                "{}{wm}    lifecycle:\n      postStart: {{exec: {{command: [sh, -c, \"echo from-hook > /w/hook\"]}}}}\n      preStop: {{exec: {{command: [sh, -c, \"sleep 2; exit 7\"]}}}}\n",
                sh("until cat /w/hook 2>/dev/null; do sleep 1; done; exec sleep 3600")
            ),
        ),
        pod(
            "poststart-fails",
            "busybox:1.35",
            "",
            &format!("{SLEEP}    lifecycle: {{postStart: {{exec: {{command: [sh, -c, \"exit 5\"]}}}}}}\n"),
        ),
        pod(
            "http-hook-fails",
            "busybox:1.35",
            "",
            &format!("{SLEEP}    lifecycle: {{postStart: {{httpGet: {{path: /hook, port: 9}}}}}}\n"),
        ),
        // The app published on the node (hostPort), its startup probe on the port.
        pod(
            "hostport",
            "multilayer:1",
            "",
            &format!("    ports: [{{containerPort: 8080, hostPort: {hook_port}}}]\n    startupProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1, failureThreshold: 30}}\n"),
        ),
        pod("msg", "busybox:1.35", never, &sh("echo custom-message > /dev/termination-log; exit 2")),
        pod(
            "msg-logs",
            "busybox:1.35",
            never,
            &format!("{}    terminationMessagePolicy: FallbackToLogsOnError\n", sh("echo from-logs; exit 3")),
        ),
        pod(
            "msg-path",
            "busybox:1.35",
            never,
            &format!("{}    terminationMessagePath: /tmp/done\n", sh("echo elsewhere > /tmp/done")),
        ),
        pod(
            "oom",
            "busybox:1.35",
            never,
            &format!("{}    resources: {{limits: {{memory: 16Mi}}}}\n", sh("a=x; while true; do a=\"$a$a\"; done")),
        ),
        pod(
            "startup",
            "busybox:1.35",
            w,
            &format!(
                "{}{wm}    startupProbe: {{exec: {{command: [cat, /w/up]}}, periodSeconds: 1, failureThreshold: 30}}\n",
                sh("exec sleep 3600")
            ),
        ),
        pod(
            "cfgwait",
            "busybox:1.35",
            "",
            &format!("{SLEEP}    env: [{{name: K, valueFrom: {{configMapKeyRef: {{name: late, key: k}}}}}}]\n"),
        ),
        // The downward API's resourceFieldRef in env: set values by a divisor, an unset
        // limit as the node's allocatable (kubelet's defaultPodLimitsForDownwardAPI).
        pod(
            "resenv",
            "busybox:1.35",
            "",
            &format!(
                "{}    resources: {{requests: {{cpu: 250m, memory: 32Mi}}, limits: {{memory: 64Mi}}}}\n    env:\n{}{}{}",
                sh("echo res $CPU_REQ $MEM_LIM $MEM_REQ_BYTES $CPU_LIM; exec sleep 3600"),
                "    - {name: CPU_REQ, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}\n",
                "    - {name: MEM_LIM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}\n",
                "    - {name: MEM_REQ_BYTES, valueFrom: {resourceFieldRef: {containerName: c, resource: requests.memory}}}\n    - {name: CPU_LIM, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}\n",
            ),
        ),
    ]
    .concat();
    s.k(&["create", "configmap", "late", "--from-literal=other=x"]);
    s.apply(&manifest);
    let term = |p: &str, f: &str| {
        get(
            &s,
            p,
            &format!("{{.status.containerStatuses[0].state.terminated.{f}}}"),
        )
    };

    assert_eq!(wait_logs(&s, "hooks", "c", "from-hook", 60), "from-hook\n");
    wait_event(
        &s,
        "poststart-fails",
        "FailedPostStartHook|Warning|Exec lifecycle hook ([sh -c exit 5])",
        60,
    );
    s.wait_pod(
        "poststart-fails",
        "{.status.containerStatuses[0].restartCount}",
        60,
        |n| n != "0",
    );
    wait_event(
        &s,
        "http-hook-fails",
        "FailedPostStartHook|Warning|HTTP lifecycle hook (/hook)",
        60,
    );

    // The startup probe holds Ready back until it passes.
    wait_event(&s, "startup", "Unhealthy|Warning|Startup probe failed", 30);
    assert_eq!(
        get(&s, "startup", "{.status.containerStatuses[0].ready}"),
        "false"
    );
    // The probe passes once the file exists (made now, not after a fixed sleep that a
    // loaded machine could outlast before the check above).
    s.k(&["exec", "startup", "--", "sh", "-c", "echo > /w/up"]);
    s.wait_pod("startup", "{.status.containerStatuses[0].ready}", 30, |r| {
        r == "true"
    });
    s.wait_pod(
        "hostport",
        "{.status.containerStatuses[0].ready}",
        60,
        |r| r == "true",
    );
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{hook_port}/"),
    ]);
    assert_eq!(stdout(&out), "200", "hostPort: {}", stderr(&out));

    s.wait_pod("msg", "{.status.phase}", 60, |p| p == "Failed");
    assert_eq!(term("msg", "message"), "custom-message");
    assert_eq!(term("msg", "exitCode"), "2");
    s.wait_pod("msg-logs", "{.status.phase}", 60, |p| p == "Failed");
    assert_eq!(term("msg-logs", "message"), "from-logs");
    s.wait_pod("msg-path", "{.status.phase}", 60, |p| p == "Succeeded");
    assert_eq!(term("msg-path", "message"), "elsewhere");
    assert_eq!(term("msg-path", "reason"), "Completed");
    s.wait_pod("oom", "{.status.phase}", 60, |p| p == "Failed");
    assert_eq!(term("oom", "reason"), "OOMKilled");
    assert_eq!(term("oom", "exitCode"), "137");

    let r = "{.status.containerStatuses[0].state.waiting.reason}";
    s.wait_pod("cfgwait", r, 30, |r| r == "CreateContainerConfigError");
    assert_eq!(
        get(
            &s,
            "cfgwait",
            "{.status.containerStatuses[0].state.waiting.message}"
        ),
        "couldn't find key k in ConfigMap default/late"
    );
    s.k(&[
        "patch",
        "configmap",
        "late",
        "--type=merge",
        "-p",
        r#"{"data":{"k":"v"}}"#,
    ]);
    s.wait_pod("cfgwait", "{.status.phase}", 30, |p| p == "Running");
    let cpus = s.k(&[
        "get",
        "node",
        NODE,
        "-o",
        "jsonpath={.status.allocatable.cpu}",
    ]);
    assert_eq!(
        wait_logs(&s, "resenv", "c", "res ", 60),
        format!("res 250 64 33554432 {cpus}\n")
    );

    // preStop runs (and fails) within the grace period; PID 1 ignores SIGTERM, so the
    // deletion takes the hook's 2 s and then the rest of the grace period (at least 2 s).
    let t0 = Instant::now();
    s.k(&["delete", "pod", "hooks", "--wait=true", "--timeout=60s"]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(12),
        "{took:?}"
    );
    wait_event(
        &s,
        "hooks",
        "FailedPreStopHook|Warning|Exec lifecycle hook ([sh -c sleep 2; exit 7])",
        5,
    );
}

/// A gRPC readiness probe on a port nothing listens on fails as kubelet's does (the dial is
/// retried until the probe's timeout) and keeps the pod unready (before gRPC probes, one
/// always passed). The SERVING/NOT_SERVING answers are `barge-agent`'s unit test against a
/// tonic health server.
#[test]
fn grpc_probe_on_a_closed_port_keeps_the_pod_unready() {
    let s = cluster("1s");
    s.apply(&pod(
        "grpc",
        "busybox:1.35",
        "",
        &format!("{SLEEP}    readinessProbe: {{grpc: {{port: 9555, service: db}}, periodSeconds: 1, timeoutSeconds: 1}}\n"),
    ));
    let ip = s.wait_pod("grpc", "{.status.podIP}", 60, |ip| !ip.is_empty());
    let line = wait_event(&s, "grpc", "Unhealthy|Warning|Readiness probe failed", 60);
    assert!(
        line.ends_with(&format!(
            "Readiness probe failed: timeout: failed to connect service \"{ip}:9555\" within 1s: context deadline exceeded"
        )),
        "{line}"
    );
    assert_eq!(
        get(&s, "grpc", "{.status.containerStatuses[0].ready}"),
        "false"
    );
    assert_eq!(
        get(
            &s,
            "grpc",
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        ),
        "False"
    );
}
