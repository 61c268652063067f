//! Several nodes (issue 11): a `barge server --disable-agent` in the root network namespace
//! and two `barge agent`s, each in a network namespace of its own with its own data dir,
//! data root, exec root and engine socket, joined over a test-only veth "LAN" (a bridge in
//! the root namespace on 10.198.<n>.0/24; nothing leaves it). Checked: the join (token,
//! certificates), both Nodes Ready with distinct podCIDRs from the node IPAM controller, a
//! Deployment spread over both nodes and Running, `kubectl cordon` + `drain` moving its pods,
//! and an agent's `kill -9` turning its Node NotReady and its pods recreated on the other;
//! pod-to-pod traffic across nodes (VXLAN, host-gw); and an agent given two servers on one
//! etcd failing over to the second when the first dies (`kill -9`).
//!
//! Each agent runs under `nsenter --net` in a mount namespace of its own where `/sys` is the
//! agent's network namespace's (the engine reads `/sys/class/net`) with the host's cgroups
//! bound back in. Everything is removed on drop, panics included: agents and their
//! containers' processes, directories, namespaces, links.
//!
//! [`MultiNode`] is the harness a later test (pod-to-pod traffic across nodes) builds on: the
//! nodes' names, LAN addresses and namespaces are in [`Agent`].

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::*;
use common::*;

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
}

/// The test LAN: a bridge in the root namespace with the server's address `.1`, and one
/// network namespace per node with a veth on the bridge (`eth0`, `.2`, `.3`, …, default route
/// via `.1`). Removed on drop.
pub struct Lan {
    pub bridge: String,
    pub prefix: String,
    pub namespaces: Vec<String>,
    links: Vec<String>,
}

impl Lan {
    fn new() -> Lan {
        // Unique per test of this process (tests run in parallel), and across processes.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = (std::process::id() + 67 * k) % 200 + 20;
        let lan = Lan {
            bridge: format!("bmn{n}"),
            prefix: format!("10.198.{n}"),
            namespaces: Vec::new(),
            links: Vec::new(),
        };
        let _ = Command::new("ip")
            .args(["link", "del", &lan.bridge])
            .stderr(Stdio::null())
            .status();
        ip(&["link", "add", &lan.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.1/24", lan.prefix),
            "dev",
            &lan.bridge,
        ]);
        ip(&["link", "set", &lan.bridge, "up"]);
        lan
    }

    /// The server's address on the LAN.
    pub fn server_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// Adds node `i` (1, 2, …): its namespace and its address `.<i+1>`; answers (namespace,
    /// address).
    pub fn add_node(&mut self, i: usize) -> (String, String) {
        let ns = format!("{}n{i}", self.bridge);
        let host_if = format!("{}v{i}", self.bridge);
        let addr = format!("{}.{}", self.prefix, i + 1);
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        self.links.push(host_if.clone());
        ip(&["link", "set", &host_if, "master", &self.bridge, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &self.server_ip(),
        ]);
        (ns, addr)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for l in &self.links {
            let _ = Command::new("ip")
                .args(["link", "del", l])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// A `barge agent` in network namespace `ns`, its directories under `dir`.
pub struct Agent {
    pub name: String,
    pub ns: String,
    pub addr: String,
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Agent {
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.join("barge.sock").display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        let cg = self.dir.join("cgroup");
        std::fs::create_dir_all(&cg).unwrap();
        // The agent's own /sys (its namespace's links) with the host's cgroups bound back in.
        let script = format!(
            "mount --rbind /sys/fs/cgroup {cg} && mount -t sysfs sysfs /sys && \
             mount --rbind {cg} /sys/fs/cgroup && umount -l {cg} && exec \"$0\" \"$@\"",
            cg = cg.display()
        );
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args(["unshare", "--mount", "--propagation", "slave", "sh", "-c"])
            .arg(script)
            .arg(BARGE)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting barge agent");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(self.dir.join("barge.sock")).is_ok() {
                return;
            }
            if let Some(Some(st)) = self.child.as_mut().map(|c| c.try_wait().unwrap()) {
                panic!("barge agent {} exited ({st}):\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "barge agent {} did not serve -H:\n{}",
            self.name,
            self.log()
        );
    }

    /// `kill -9` of the agent (its containers keep running, as on a machine that lost it).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `barge -H <this engine> ARGS`, which must succeed.
    pub fn barge(&self, args: &[&str]) -> String {
        let out = Command::new(BARGE)
            .args(["-H", &self.host()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "barge {args:?}: {}", stderr(&out));
        stdout(&out)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        kill_container_processes(&self.dir);
        cleanup_dir(&self.dir);
    }
}

/// A server and its agents on a [`Lan`] (dropped agents first, then the server, then the
/// LAN).
pub struct MultiNode {
    pub agents: Vec<Agent>,
    pub server: Server,
    /// Servers that joined `server` (`--server` + its token; one shared etcd).
    pub joined: Vec<Server>,
    pub lan: Lan,
}

impl MultiNode {
    /// A server (`--disable-agent`, API on 0.0.0.0 so the LAN reaches it) with `extra` flags
    /// and `n` agents named `node-1`…, each with the shared images loaded.
    pub fn start(n: usize, extra: &[&str]) -> MultiNode {
        MultiNode::start_ha(n, 0, extra)
    }

    /// As [`MultiNode::start`], with `joined` more servers joining the first (`extra` must
    /// then name a shared `--datastore-endpoint`); every agent gets all the servers' URLs,
    /// in order, in its `--server`.
    pub fn start_ha(n: usize, joined: usize, extra: &[&str]) -> MultiNode {
        require_root();
        let lan = Lan::new();
        let san = lan.server_ip();
        let mut flags = vec!["--bind-address", "0.0.0.0", "--tls-san", &san];
        flags.extend_from_slice(extra);
        let server = Server::start(false, &flags);
        let token = std::fs::read_to_string(server.data_dir().join("token")).unwrap();
        let first = server.url();
        flags.extend_from_slice(&["--server", &first, "--token", token.trim()]);
        let joined: Vec<Server> = (0..joined).map(|_| Server::start(false, &flags)).collect();
        let url = std::iter::once(&server)
            .chain(&joined)
            .map(|s| format!("https://{}:{}", lan.server_ip(), s.port))
            .collect::<Vec<_>>()
            .join(",");
        let mut mn = MultiNode {
            agents: Vec::new(),
            server,
            joined,
            lan,
        };
        for i in 1..=n {
            let (ns, addr) = mn.lan.add_node(i);
            let dir = unique_dir();
            let name = format!("node-{i}");
            let d = |p: &str| dir.join(p).display().to_string();
            // Names of its own even inside its namespace: the harness's leftover cleanup
            // deletes a dead engine's bridges by name in the root namespace.
            let (bridge, bip) = bridge_for(&dir);
            let args: Vec<String> = [
                "agent",
                "--server",
                &url,
                "--token",
                token.trim(),
                "--node-name",
                &name,
                "--node-ip",
                &addr,
                "--data-dir",
                &d("agent"),
                "--data-root",
                &d("data"),
                "--exec-root",
                &d("run"),
                "-H",
                &format!("unix://{}", d("barge.sock")),
                "--init-path",
                init_path().to_str().unwrap(),
                "--log-level",
                "debug",
                // Each node's Ingress proxy, inside its own namespace.
                "--ingress-http-port",
                "10080",
                "--ingress-https-port",
                "10443",
                "--bridge",
                &bridge,
                "--bip",
                &bip,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut a = Agent {
                name,
                ns,
                addr,
                dir,
                args,
                child: None,
            };
            a.spawn();
            let layout = images_dir().join("oci-layout");
            a.barge(&["load", "-i", layout.to_str().unwrap()]);
            mn.agents.push(a);
        }
        mn
    }

    /// The agents' logs (for failures).
    pub fn logs(&self) -> String {
        self.agents
            .iter()
            .map(|a| format!("--- {} ---\n{}", a.name, tail(&a.log(), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The Node's Ready condition status.
    pub fn ready(&self, node: &str) -> String {
        let out = self.server.kubectl_with(
            &self.server.kubeconfig(),
            &[
                "get",
                "node",
                node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        );
        stdout(&out).trim().to_string()
    }

    /// The live (not terminating) pods labelled `app=<app>`: (name, node, phase).
    pub fn pods(&self, app: &str) -> Vec<(String, String, String)> {
        let v = self.server.get_json(&["pods", "-l", &format!("app={app}")]);
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| {
                let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
                (
                    s(&p["metadata"]["name"]),
                    s(&p["spec"]["nodeName"]),
                    s(&p["status"]["phase"]),
                )
            })
            .collect()
    }

    /// Waits until `want` holds for the app's live pods, for `secs`.
    pub fn wait_pods(
        &self,
        app: &str,
        secs: u64,
        what: &str,
        want: impl Fn(&[(String, String, String)]) -> bool,
    ) -> Vec<(String, String, String)> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let p = self.pods(app);
            if want(&p) {
                return p;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: pods {p:?}\n{}\n{}",
                    tail(&self.server.log(), 40),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn deployment(replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: spread
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: spread}}
  template:
    metadata:
      labels: {{app: spread}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: ScheduleAnyway
        labelSelector:
          matchLabels: {{app: spread}}
      containers:
      - name: main
        image: busybox:1.35
        imagePullPolicy: Never
        command: [sleep, '3600']
"
    )
}

fn all_running_on(p: &[(String, String, String)], n: usize, nodes: &[&str]) -> bool {
    p.len() == n
        && p.iter()
            .all(|(_, node, phase)| phase == "Running" && nodes.contains(&node.as_str()))
}

/// The addresses in Ingress `web`'s status, space-separated.
fn ingress_ips(s: &Server) -> String {
    s.k(&[
        "get",
        "ingress",
        "web",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[*].ip}",
    ])
}

#[test]
fn two_agents_join_spread_a_deployment_drain_and_survive_a_kill_9() {
    // A dead node's pods go after 2 s (the admission's default tolerations), not 5 min.
    let mut mn = MultiNode::start(
        2,
        &[
            "--node-monitor-grace-period",
            "8s",
            "--default-unreachable-toleration-seconds",
            "2",
            "--default-not-ready-toleration-seconds",
            "2",
        ],
    );
    let s = &mn.server;
    // Both Nodes Ready, each with its own podCIDR from the node IPAM controller.
    for a in &mn.agents {
        let deadline = Instant::now() + Duration::from_secs(60);
        while mn.ready(&a.name) != "True" {
            assert!(
                Instant::now() < deadline,
                "node {} not Ready\n{}\n{}",
                a.name,
                tail(&s.log(), 40),
                mn.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let mut cidrs: Vec<String> = mn
        .agents
        .iter()
        .map(|a| s.k(&["get", "node", &a.name, "-o", "jsonpath={.spec.podCIDR}"]))
        .collect();
    cidrs.sort();
    assert_eq!(cidrs, ["10.42.0.0/24", "10.42.1.0/24"]);
    // The nodes' credentials: the kubelet client certificate's key 0600, kept for restarts.
    {
        use std::os::unix::fs::PermissionsExt;
        let key = mn.agents[0].dir.join("agent/client-kubelet.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // An Ingress is reached at every Ready node: its status lists both, sorted, and stays so
    // (each node's controller computes the same list).
    s.apply(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  \
         defaultBackend: {service: {name: spread, port: {number: 80}}}\n",
    );
    let mut both: Vec<String> = mn.agents.iter().map(|a| a.addr.clone()).collect();
    both.sort();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ingress_ips(s) != both.join(" ") {
        assert!(
            Instant::now() < deadline,
            "ingress status {:?}, want {both:?}\n{}",
            ingress_ips(s),
            mn.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A Deployment over both nodes.
    s.apply(&deployment(4));
    let p = mn.wait_pods("spread", 120, "4 pods Running over both nodes", |p| {
        all_running_on(p, 4, &["node-1", "node-2"])
    });
    for node in ["node-1", "node-2"] {
        assert!(
            p.iter().any(|(_, n, _)| n == node),
            "no pod on {node}: {p:?}"
        );
    }
    // Each pod's address is from its node's podCIDR.
    for (name, node, _) in &p {
        let ip = s.k(&["get", "pod", name, "-o", "jsonpath={.status.podIP}"]);
        let cidr = s.k(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"]);
        let prefix = cidr.rsplit_once('.').unwrap().0;
        assert!(
            ip.starts_with(&format!("{prefix}.")),
            "{name} on {node}: {ip} not in {cidr}"
        );
    }

    // cordon + drain node-1: its pods move to node-2.
    s.k(&["cordon", "node-1"]);
    let out = s.kubectl_with(
        &s.kubeconfig(),
        &[
            "drain",
            "node-1",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=90s",
        ],
    );
    assert!(
        out.status.success(),
        "drain: {}{}",
        stdout(&out),
        stderr(&out)
    );
    mn.wait_pods(
        "spread",
        120,
        "4 pods Running on node-2 after the drain",
        |p| all_running_on(p, 4, &["node-2"]),
    );
    s.k(&["uncordon", "node-1"]);

    // kill -9 of node-2's agent: its Node goes NotReady (Unknown), its pods are evicted
    // (the default toleration: 2 s) and recreated on node-1.
    mn.agents[1].kill9();
    let s = &mn.server;
    let deadline = Instant::now() + Duration::from_secs(60);
    while mn.ready("node-2") == "True" {
        assert!(
            Instant::now() < deadline,
            "node-2 still Ready after its agent's kill -9\n{}",
            tail(&s.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    mn.wait_pods(
        "spread",
        120,
        "4 pods Running on node-1 after node-2 died",
        |p| all_running_on(p, 4, &["node-1"]),
    );
    // The dead node leaves the Ingress's status (node-1 rewrites it within its 30 s pass).
    let node1 = mn.agents[0].addr.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ingress_ips(s) != node1 {
        assert!(
            Instant::now() < deadline,
            "ingress status {:?} after node-2 died, want {node1}",
            ingress_ips(s)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A pod on each node: `echo` (node-2) answers every TCP connection with the address it came
/// from; `client` (node-1) connects to it by pod IP through `kubectl exec` (the API server
/// proxying to node-1's agent). The answer is the client pod's own IP: pods reach pods on other
/// nodes without NAT. Returns (client pod IP, what the echo pod saw).
fn cross_node_exchange(mn: &MultiNode) -> (String, String) {
    let s = &mn.server;
    let pod = |name: &str, node: &str, args: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: cross}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: multilayer:1
    imagePullPolicy: Never
    args: ['-c', {args:?}]
"
        )
    };
    let server = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('',9000))\ns.listen()\nwhile True:\n  c,a=s.accept()\n  c.sendall(a[0].encode())\n  c.close()";
    s.apply(&pod("echo", "node-2", server));
    s.apply(&pod("client", "node-1", "import time\ntime.sleep(3600)"));
    mn.wait_pods("cross", 120, "both pods Running", |p| {
        p.len() == 2 && p.iter().all(|(_, _, phase)| phase == "Running")
    });
    let echo_ip = s.k(&["get", "pod", "echo", "-o", "jsonpath={.status.podIP}"]);
    let client_ip = s.k(&["get", "pod", "client", "-o", "jsonpath={.status.podIP}"]);
    let probe = format!(
        "import socket\ns=socket.create_connection(('{echo_ip}',9000),5)\nprint(s.recv(64).decode())"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = s.kubectl_with(
            &s.kubeconfig(),
            &["exec", "client", "--", "python3", "-c", &probe],
        );
        let seen = stdout(&out).trim().to_string();
        if out.status.success() && !seen.is_empty() {
            return (client_ip, seen);
        }
        assert!(
            Instant::now() < deadline,
            "client → echo ({echo_ip}) failed: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&s.log(), 30),
            mn.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn pods_reach_pods_on_other_nodes_without_nat_over_vxlan() {
    let mn = MultiNode::start(2, &[]);
    let (client, seen) = cross_node_exchange(&mn);
    assert_eq!(seen, client, "the echo pod saw another source: NAT");
    // Each node announced its VXLAN endpoint as flannel does.
    for a in &mn.agents {
        let t = mn.server.k(&[
            "get",
            "node",
            &a.name,
            "-o",
            "jsonpath={.metadata.annotations.flannel\\.alpha\\.coreos\\.com/backend-type}",
        ]);
        assert_eq!(t, "vxlan", "{}", a.name);
    }
}

#[test]
fn pods_reach_pods_on_other_nodes_without_nat_over_host_gw() {
    let mn = MultiNode::start(2, &["--flannel-backend", "host-gw"]);
    let (client, seen) = cross_node_exchange(&mn);
    assert_eq!(seen, client, "the echo pod saw another source: NAT");
}

/// The jsonpath of a Node's Ready condition status.
const READY: &str = r#"{.status.conditions[?(@.type=="Ready")].status}"#;

/// Issue 13, agents fail over to a live server: two servers on one etcd and an agent given
/// both (`--server A,B`; it uses A, the first). A pod runs; A dies with `kill -9`. Through B
/// the node's Lease goes on being renewed and the Node stays Ready, a new pod is scheduled
/// onto the node and runs (the agent's watches moved to B, and B's scheduler took over if
/// A led), and `kubectl logs` through B reaches it.
#[test]
fn an_agent_fails_over_to_the_other_server_when_its_server_dies() {
    let etcd = common::etcd::Etcd::start(1);
    let endpoints = etcd.endpoints();
    let mut mn = MultiNode::start_ha(1, 1, &["--datastore-endpoint", &endpoints]);
    let node = mn.agents[0].name.clone();
    let b = &mn.joined[0];
    b.wait_get(&["node", &node], READY, 60, |s| s == "True");

    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  \
             terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    \
             image: busybox:1.35\n    imagePullPolicy: Never\n    \
             command: [sh, -c, 'echo hello-{name}; exec sleep 3600']\n"
        )
    };
    b.apply(&pod("before"));
    b.wait_pod("before", "{.status.phase}", 60, |p| p == "Running");
    let renew = |s: &Server| {
        s.k(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            &node,
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
    };

    let killed = Instant::now();
    mn.server.kill9();
    let b = &mn.joined[0];
    let at_kill = renew(b);
    b.wait_get(
        &["lease", "-n", "kube-node-lease", &node],
        "{.spec.renewTime}",
        40,
        |r| r != at_kill,
    );
    eprintln!(
        "first Lease renewal through B {:?} after the kill",
        killed.elapsed()
    );

    b.apply(&pod("after"));
    b.wait_pod("after", "{.spec.nodeName}", 60, |n| n == node);
    b.wait_pod("after", "{.status.phase}", 60, |p| p == "Running");
    let logs = b.k(&["logs", "after"]);
    assert!(logs.contains("hello-after"), "{logs}");
    let ready = b.k(&["get", "node", &node, "-o", &format!("jsonpath={READY}")]);
    assert_eq!(ready.trim(), "True", "{}", mn.logs());
    // And the Lease goes on being renewed (not one lucky write before the switch).
    let later = renew(b);
    b.wait_get(
        &["lease", "-n", "kube-node-lease", &node],
        "{.spec.renewTime}",
        40,
        |r| r != later,
    );
    drop(mn);
    drop(etcd);
}

/// One TCP exchange with the echo server at `addr` (it answers with the source address it
/// saw); `None` when the connection is refused, dropped (2 s) or closes without an answer.
fn echo_from_host(addr: &str) -> Option<String> {
    use std::io::Read;
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out).filter(|o| !o.is_empty())
}

/// The same from pod `client` (`kubectl exec`, python3 in multilayer:1).
fn echo_from_pod(s: &Server, client: &str, ip: &str, port: u16) -> Option<String> {
    let probe = format!(
        "import socket\ntry:\n  s=socket.create_connection(('{ip}',{port}),2)\n  s.settimeout(2)\n  print(s.recv(64).decode())\nexcept Exception as e:\n  print('ERR', e)"
    );
    let out = s.kubectl_with(
        &s.kubeconfig(),
        &["exec", client, "--", "python3", "-c", &probe],
    );
    let seen = stdout(&out).trim().to_string();
    (out.status.success() && !seen.is_empty() && !seen.starts_with("ERR")).then_some(seen)
}

/// Issue 12, Services' traffic policies across nodes, as kube-proxy applies them: with the
/// only endpoint on node-2, `internalTrafficPolicy: Local` answers a client on node-2 and
/// drops one on node-1; `externalTrafficPolicy: Local` answers at node-2's node port with the
/// client's source address kept, drops at node-1's, but still serves node-1's own pods there
/// (kube-proxy's short-circuit); `Cluster` forwards from node-1 to node-2, masqueraded; a
/// LoadBalancer's `healthCheckNodePort` answers 200 on node-2 and 503 on node-1.
#[test]
fn traffic_policies_local_and_cluster_across_nodes() {
    let mn = MultiNode::start(2, &[]);
    let s = &mn.server;
    let pod = |name: &str, node: &str, role: &str, args: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: tp, role: {role}}}\n\
             spec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 0\n  containers:\n  \
             - name: main\n    image: multilayer:1\n    imagePullPolicy: Never\n    args: ['-c', {args:?}]\n"
        )
    };
    let echo = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('',9000))\ns.listen()\nwhile True:\n  c,a=s.accept()\n  c.sendall(a[0].encode())\n  c.close()";
    let idle = "import time\ntime.sleep(3600)";
    s.apply(&pod("echo", "node-2", "echo", echo));
    s.apply(&pod("client1", "node-1", "client", idle));
    s.apply(&pod("client2", "node-2", "client", idle));
    let svc = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{role: echo}}\n  \
             ports: [{{port: 80, targetPort: 9000}}]\n{extra}"
        )
    };
    s.apply(&svc("int-local", "  internalTrafficPolicy: Local\n"));
    s.apply(&svc(
        "ext-local",
        "  type: NodePort\n  externalTrafficPolicy: Local\n",
    ));
    s.apply(&svc("ext-cluster", "  type: NodePort\n"));
    s.apply(&svc(
        "lb-local",
        "  type: LoadBalancer\n  externalTrafficPolicy: Local\n",
    ));
    mn.wait_pods("tp", 120, "the three pods Running", |p| {
        p.len() == 3 && p.iter().all(|(_, _, phase)| phase == "Running")
    });
    let get = |what: &str, path: &str| s.k(&["get", what, "-o", &format!("jsonpath={path}")]);
    let int_ip = get("service/int-local", "{.spec.clusterIP}");
    let np = |svc: &str| -> u16 {
        get(&format!("service/{svc}"), "{.spec.ports[0].nodePort}")
            .parse()
            .unwrap()
    };
    let (local_np, cluster_np) = (np("ext-local"), np("ext-cluster"));
    let (node1, node2) = (&mn.agents[0].addr, &mn.agents[1].addr);
    let until = |what: &str, f: &dyn Fn() -> Option<String>| -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}\n{}\n{}",
                tail(&s.log(), 30),
                mn.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };

    // internalTrafficPolicy: Local — the endpoint's node answers, the other drops.
    until("client2 → int-local (endpoint on its node)", &|| {
        echo_from_pod(s, "client2", &int_ip, 80)
    });
    assert_eq!(
        echo_from_pod(s, "client1", &int_ip, 80),
        None,
        "internalTrafficPolicy Local reached another node's endpoint"
    );

    // externalTrafficPolicy: Local — node-2 answers with the client's address kept.
    let seen = until("host → node-2's ext-local node port", &|| {
        echo_from_host(&format!("{node2}:{local_np}"))
    });
    assert_eq!(seen, mn.lan.server_ip(), "the source was not kept");
    assert_eq!(
        echo_from_host(&format!("{node1}:{local_np}")),
        None,
        "externalTrafficPolicy Local answered on a node without the endpoint"
    );
    // … but node-1's own pods still reach it through node-1 (the short-circuit).
    until("client1 → node-1's ext-local node port", &|| {
        echo_from_pod(s, "client1", node1, local_np)
    });

    // externalTrafficPolicy: Cluster — node-1 forwards to node-2, masqueraded.
    let seen = until("host → node-1's ext-cluster node port", &|| {
        echo_from_host(&format!("{node1}:{cluster_np}"))
    });
    assert_ne!(seen, mn.lan.server_ip(), "Cluster policy kept the source");

    // A LoadBalancer with the Local policy: each node's healthCheckNodePort tells whether it
    // has an endpoint (kube-proxy's answer: 200 with the count, else 503).
    let hc: u16 = get("service/lb-local", "{.spec.healthCheckNodePort}")
        .parse()
        .unwrap();
    let health = |node: &str| {
        let out = curl(&[
            "-s",
            "-i",
            "--max-time",
            "3",
            &format!("http://{node}:{hc}/"),
        ]);
        stdout(&out)
    };
    let two = until("node-2's health check answers 200", &|| {
        Some(health(node2)).filter(|r| r.starts_with("HTTP/1.1 200"))
    });
    assert!(two.contains("\"localEndpoints\": 1"), "{two}");
    let one = health(node1);
    assert!(one.starts_with("HTTP/1.1 503"), "{one}");
    assert!(one.contains("\"localEndpoints\": 0"), "{one}");
}
