//! Services on the one-node cluster, driven with kubectl 1.32: ClusterIP and NodePort
//! allocation in the API server (kube's errors, release, concurrent creates), the
//! EndpointSlice and Endpoints controllers, and the data plane — the agent's Service proxy
//! (nftables) and cluster DNS, reached from pods by name and from the host by node port.
//! Each server gets its own `--service-cidr` (and pod network), so servers side by side never
//! share a ClusterIP; traffic stays on this host (loopback, the servers' own bridges).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::*;
use common::*;

const NODE: &str = "node1";

/// A service range of its own for each server of this process (a /24).
fn service_cidr() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("10.{}.{}.0/24", 200 + std::process::id() % 20, n % 250)
}

/// The `n`th address of a /24 `cidr`.
fn nth(cidr: &str, n: u8) -> String {
    let base = cidr.split('/').next().unwrap();
    let mut parts: Vec<&str> = base.split('.').collect();
    let last = n.to_string();
    parts[3] = &last;
    parts.join(".")
}

fn svc_yaml(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{port: 80, targetPort: 8080}}]\n{extra}"
    )
}

#[test]
fn service_ips_and_node_ports_are_allocated_once_with_kubes_errors() {
    let cidr = service_cidr();
    let s = Server::start(false, &["--service-cidr", &cidr]);
    // kubernetes at .1, pointing at the API server's port; kube-dns at .10.
    let k = s.until(10, "the kubernetes service", || {
        let o = s.kubectl_with(
            &s.kubeconfig(),
            &[
                "get",
                "svc",
                "kubernetes",
                "-o",
                "jsonpath={.spec.clusterIP} {.spec.ports[0].port}",
            ],
        );
        o.status.success().then(|| stdout(&o).trim().to_string())
    });
    assert_eq!(k, format!("{} 443", nth(&cidr, 1)));
    let ep = s.k(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[0].ports[0].port}",
    ]);
    assert_eq!(ep, s.port.to_string());
    let slice = s.k(&[
        "get",
        "endpointslice",
        "kubernetes",
        "-o",
        "jsonpath={.ports[0].port}",
    ]);
    assert_eq!(slice, s.port.to_string());
    let dns = s.k(&[
        "-n",
        "kube-system",
        "get",
        "svc",
        "kube-dns",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(dns, nth(&cidr, 10));

    // Explicit addresses: taken, outside the range, malformed.
    let taken = nth(&cidr, 10);
    let (ok, out) = s.try_apply(&svc_yaml("dup", &format!("  clusterIP: {taken}\n")));
    assert!(!ok);
    assert!(
        out.contains(&format!(
            r#"The Service "dup" is invalid: spec.clusterIPs: Invalid value: []string{{"{taken}"}}: failed to allocate IP {taken}: provided IP is already allocated"#
        )),
        "{out}"
    );
    let (ok, out) = s.try_apply(&svc_yaml("far", "  clusterIP: 10.99.0.1\n"));
    assert!(!ok);
    assert!(
        out.contains(&format!("failed to allocate IP 10.99.0.1: provided IP is not in the valid range. The range of valid IPs is {cidr}")),
        "{out}"
    );
    let (ok, out) = s.try_apply(&svc_yaml("bad", "  clusterIP: 10.1.2\n"));
    assert!(
        !ok && out.contains("spec.clusterIPs[0]: Invalid value: \"10.1.2\""),
        "{out}"
    );
    // Headless.
    s.apply(&svc_yaml(
        "headless",
        "  clusterIP: None\n  selector: {app: x}\n",
    ));
    assert_eq!(
        s.k(&["get", "svc", "headless", "-o", "jsonpath={.spec.clusterIP}"]),
        "None"
    );

    // Node ports: explicit, taken, out of range; released on type change and on delete.
    let np = |name: &str, port: &str| {
        svc_yaml(name, "  type: NodePort\n")
            .replace("targetPort: 8080}", &format!("targetPort: 8080{port}}}"))
    };
    s.apply(&np("np1", ", nodePort: 31234"));
    let (ok, out) = s.try_apply(&np("np2", ", nodePort: 31234"));
    assert!(!ok);
    assert!(
        out.contains(r#"The Service "np2" is invalid: spec.ports[0].nodePort: Invalid value: 31234: provided port is already allocated"#),
        "{out}"
    );
    let (ok, out) = s.try_apply(&np("np3", ", nodePort: 8080"));
    assert!(!ok);
    assert!(
        out.contains("spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"),
        "{out}"
    );
    s.k(&[
        "patch",
        "svc",
        "np1",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    assert_eq!(
        s.k(&[
            "get",
            "svc",
            "np1",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}"
        ]),
        ""
    );
    s.apply(&np("np2", ", nodePort: 31234"));
    s.k(&["delete", "svc", "np2"]);
    s.apply(&np("np4", ", nodePort: 31234"));
    let auto = s.k(&[
        "get",
        "svc",
        "np4",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    assert_eq!(auto, "31234");

    // Concurrent creates never share an address or a port.
    let children: Vec<_> = (0..24)
        .map(|i| {
            Command::new("kubectl")
                .env("KUBECONFIG", s.kubeconfig())
                .env("HOME", &s.dir)
                .args([
                    "create",
                    "service",
                    "nodeport",
                    &format!("c{i}"),
                    "--tcp=80:8080",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let list = s.get_json(&["svc"]);
    let (mut ips, mut ports) = (Vec::new(), Vec::new());
    for item in list["items"].as_array().unwrap() {
        let ip = item["spec"]["clusterIP"].as_str().unwrap().to_string();
        if ip != "None" {
            assert!(
                ip.starts_with(&cidr[..cidr.rfind('.').unwrap()]),
                "{ip} not in {cidr}"
            );
            ips.push(ip);
        }
        for p in item["spec"]["ports"].as_array().unwrap() {
            if let Some(n) = p["nodePort"].as_i64() {
                assert!((30000..=32767).contains(&n));
                ports.push(n);
            }
        }
    }
    let (n_ips, n_ports) = (ips.len(), ports.len());
    ips.sort();
    ips.dedup();
    ports.sort();
    ports.dedup();
    assert_eq!(
        (ips.len(), ports.len()),
        (n_ips, n_ports),
        "shared: {ips:?} {ports:?}"
    );
    assert_eq!(n_ports, 25);
    // A deleted Service's address is free again.
    let c0 = s.k(&["get", "svc", "c0", "-o", "jsonpath={.spec.clusterIP}"]);
    s.k(&["delete", "svc", "c0"]);
    s.apply(&svc_yaml("again", &format!("  clusterIP: {c0}\n")));
}

#[test]
fn endpoint_slices_and_endpoints_follow_the_selected_pods() {
    let s = Server::start(false, &["--service-cidr", &service_cidr()]);
    // Pods (bound to a node without an agent: the test plays kubelet): named port `http` on different numbers, one
    // never ready, one with a hostname in the Service's subdomain, one not selected.
    let pod = |name: &str, port: u16, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: web}}}}\nspec:\n  nodeName: ghost\n{extra}  containers:\n  - name: c\n    image: busybox:1.35\n    ports: [{{name: http, containerPort: {port}}}]\n---\n"
        )
    };
    let yaml = format!(
        "{}{}{}{}apiVersion: v1\nkind: Service\nmetadata: {{name: web, labels: {{tier: front}}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: web, port: 80, targetPort: http}}]\n",
        pod("p1", 8080, ""),
        pod("p2", 9090, ""),
        pod("p3", 8080, ""),
        pod("p4", 8080, "  hostname: h4\n  subdomain: web\n"),
    );
    s.apply(&yaml);
    for (name, ip, ready) in [
        ("p1", "10.250.0.1", true),
        ("p2", "10.250.0.2", true),
        ("p3", "10.250.0.3", false),
        ("p4", "10.250.0.4", true),
    ] {
        let st = if ready { "True" } else { "False" };
        s.k(&[
            "patch", "pod", name, "--subresource=status", "--type=merge", "-p",
            &format!(r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"{st}"}}]}}}}"#),
        ]);
    }
    // Slices: one per resolved port, kube's labels, owned by the Service.
    let slices = s.until(20, "the slices of web", || {
        let v = s.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
        let items = v["items"].as_array().cloned().unwrap_or_default();
        let n: usize = items
            .iter()
            .map(|i| i["endpoints"].as_array().map(Vec::len).unwrap_or(0))
            .sum();
        (n == 4).then_some(items)
    });
    assert_eq!(slices.len(), 2, "{slices:#?}");
    for sl in &slices {
        let l = &sl["metadata"]["labels"];
        assert_eq!(
            l["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(l["tier"], "front");
        assert_eq!(sl["addressType"], "IPv4");
        assert_eq!(sl["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert_eq!(sl["ports"][0]["name"], "web");
        let port = sl["ports"][0]["port"].as_i64().unwrap();
        for e in sl["endpoints"].as_array().unwrap() {
            let pod = e["targetRef"]["name"].as_str().unwrap();
            assert_eq!(port, if pod == "p2" { 9090 } else { 8080 }, "{pod}");
            let c = &e["conditions"];
            assert_eq!(c["ready"], pod != "p3", "{pod}: {c}");
            assert_eq!(c["terminating"], false);
            if pod == "p4" {
                assert_eq!(e["hostname"], "h4");
            }
        }
    }
    // Legacy Endpoints: ready pods in addresses, p3 in notReadyAddresses.
    let eps = s.get_json(&["endpoints", "web"]);
    let subsets = eps["subsets"].as_array().unwrap();
    let mut ready: Vec<String> = Vec::new();
    let mut not_ready: Vec<String> = Vec::new();
    for ss in subsets {
        for a in ss["addresses"].as_array().into_iter().flatten() {
            ready.push(a["ip"].as_str().unwrap().into());
        }
        for a in ss["notReadyAddresses"].as_array().into_iter().flatten() {
            not_ready.push(a["ip"].as_str().unwrap().into());
        }
    }
    ready.sort();
    assert_eq!(ready, ["10.250.0.1", "10.250.0.2", "10.250.0.4"]);
    assert_eq!(not_ready, ["10.250.0.3"]);
    // A pod leaves: it leaves the slices (p2's slice goes: no pod has its port any more).
    s.k(&["delete", "pod", "p2", "--grace-period=0", "--force"]);
    s.until(20, "p2 out of the slices", || {
        let v = s.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
        let items = v["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 1 && items[0]["endpoints"].as_array().map(Vec::len) == Some(3))
            .then_some(())
    });
    // The Service goes: its slices and Endpoints go with it.
    s.k(&["delete", "svc", "web"]);
    s.until(30, "web's slices and endpoints gone", || {
        let v = s.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
        let gone = s
            .kubectl_with(&s.kubeconfig(), &["get", "endpoints", "web"])
            .status
            .code()
            != Some(0);
        (v["items"].as_array().is_some_and(Vec::is_empty) && gone).then_some(())
    });
}

/// The engine container of `pod`'s container `c`.
fn container_of(s: &Server, pod: &str) -> String {
    s.until(60, &format!("{pod}'s container"), || {
        let out = s.docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=io.kubernetes.pod.name={pod}"),
        ]);
        let id = stdout(&out).trim().lines().next().unwrap_or("").to_string();
        (!id.is_empty()).then_some(id)
    })
}

/// Runs `script` with `sh -c` in container `id`: (exit code, stdout, stderr).
fn sh(s: &Server, id: &str, script: &str) -> (i32, String, String) {
    let out = s.docker(&["exec", id, "sh", "-c", script]);
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

#[test]
fn pods_reach_ready_replicas_by_service_name_and_the_host_by_node_port() {
    let svc_cidr = service_cidr();
    let s = Server::start(
        true,
        &[
            "--node-name",
            NODE,
            "--service-cidr",
            &svc_cidr,
            "--pod-restart-backoff",
            "1s",
        ],
    );
    let layout = images_dir().join("oci-layout");
    let out = s.barge(&["load", "-i", layout.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    // The engine's table is `barge-<hash of its exec root>`; the proxy's `<that>-proxy`.
    let engine_table = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(s.dir.join("run").to_string_lossy().as_bytes());
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        format!("barge-{}", &hex[..8])
    };
    let proxy_table = format!("{engine_table}-proxy");
    let has_table = |t: &str| {
        Command::new("nft")
            .args(["list", "table", "ip", t])
            .output()
            .unwrap()
            .status
            .success()
    };
    // Three replicas of a busybox httpd answering with their pod name, a fourth pod the
    // Service selects too (not the Deployment) that is never ready, a client, and a Service without endpoints.
    let httpd = "busybox mkdir -p /www && echo $HOSTNAME > /www/index.html && exec busybox httpd -f -p 8080 -h /www";
    s.apply(&format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: web}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api, tier: api}}}}
    spec:
      nodeName: {NODE}
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox:1.35
        command: [sh, -c, "{httpd}"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: unready, namespace: web, labels: {{tier: api}}}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox:1.35
    command: [sh, -c, "{httpd}"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe:
      exec: {{command: [sh, -c, "exit 1"]}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: web}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:1.35
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: web}}
spec:
  type: NodePort
  selector: {{tier: api}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: empty, namespace: web}}
spec:
  selector: {{app: nothing}}
  ports: [{{port: 80}}]
"#
    ));
    let kw = |args: &[&str]| {
        let mut a = vec!["-n", "web"];
        a.extend_from_slice(args);
        s.k(&a)
    };
    s.k(&[
        "-n",
        "web",
        "wait",
        "--for=condition=Available",
        "deployment/api",
        "--timeout=120s",
    ]);
    s.k(&[
        "-n",
        "web",
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=60s",
    ]);
    let replicas: Vec<String> = kw(&[
        "get",
        "pods",
        "-l",
        "app=api",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
    .split(' ')
    .filter(|n| *n != "unready")
    .map(String::from)
    .collect();
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    // The unready pod is running (its httpd answers) but never Ready.
    s.until(60, "the unready pod running", || {
        (kw(&["get", "pod", "unready", "-o", "jsonpath={.status.phase}"]) == "Running")
            .then_some(())
    });
    let client = container_of(&s, "client");
    // kubelet's resolv.conf.
    let (_, resolv, _) = sh(&s, &client, "cat /etc/resolv.conf");
    assert!(
        resolv.starts_with("search web.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(
        resolv.contains(&format!("nameserver {}\n", nth(&svc_cidr, 10))),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    // By full name and by short name, from every ready replica, never from the unready one.
    for url in ["http://api.web.svc.cluster.local", "http://api"] {
        let seen = s.until(60,
            &format!("answers from every replica at {url}"),
            || {
                let (code, out, err) = sh(
                    &s,
                    &client,
                    &format!("for i in $(busybox seq 40); do busybox timeout 3 busybox wget -qO- {url}; done"),
                );
                let mut names: Vec<String> = out.lines().map(String::from).collect();
                names.sort();
                names.dedup();
                assert!(
                    !names.iter().any(|n| n == "unready"),
                    "the unready pod answered: {out}"
                );
                if code != 0 {
                    eprintln!("wget {url}: {code} {err}");
                }
                (code == 0
                    && names == {
                        let mut r = replicas.clone();
                        r.sort();
                        r
                    })
                .then_some(names)
            },
        );
        assert_eq!(seen.len(), 3);
    }
    // A Service without endpoints is refused at once (not a timeout).
    let started = Instant::now();
    let (code, _, err) = sh(
        &s,
        &client,
        "busybox timeout 5 busybox wget -qO- http://empty.web.svc.cluster.local",
    );
    assert_ne!(code, 0);
    assert!(err.contains("refused"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The node port on the node's address, from the host.
    let node_ip = s.node_ip(NODE);
    let port = kw(&[
        "get",
        "svc",
        "api",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let out = curl(&["-s", &format!("http://{node_ip}:{port}/")]);
    let who = stdout(&out).trim().to_string();
    assert!(
        replicas.contains(&who),
        "node port answered {who:?}: {}",
        stderr(&out)
    );
    // DNS: SRV for the named port, NXDOMAIN inside the zone.
    let (_, srv, _) = sh(
        &s,
        &client,
        "busybox nslookup -type=SRV _http._tcp.api.web.svc.cluster.local",
    );
    assert!(srv.contains("api.web.svc.cluster.local"), "{srv}");
    // Pod records as CoreDNS's `pods insecure` (k3s's Corefile): the client's own address,
    // dashed, in its namespace; a namespace that does not exist is NXDOMAIN.
    let client_ip = s.k(&[
        "-n",
        "web",
        "get",
        "pod",
        "client",
        "-o",
        "jsonpath={.status.podIP}",
    ]);
    let dashed = client_ip.replace('.', "-");
    let (_, pod_a, _) = sh(
        &s,
        &client,
        &format!("busybox nslookup -type=A {dashed}.web.pod.cluster.local"),
    );
    assert!(
        pod_a.contains(&format!("Address: {client_ip}")),
        "{dashed}.web.pod.cluster.local: {pod_a}"
    );
    let (_, pod_nx, pod_nx_err) = sh(
        &s,
        &client,
        &format!("busybox nslookup -type=A {dashed}.no-such-ns.pod.cluster.local"),
    );
    assert!(
        format!("{pod_nx}{pod_nx_err}").contains("NXDOMAIN"),
        "{pod_nx} {pod_nx_err}"
    );

    // Cleanup: everything deleted, the server stopped — no table or bridge of barge's left.
    let net = s.docker(&["network", "inspect", "barge-pods", "-f", "{{.Id}}"]);
    let bridge = format!("br-{}", &stdout(&net).trim()[..12]);
    assert!(has_table(&proxy_table), "no table {proxy_table}");
    s.k(&["delete", "namespace", "web", "--timeout=90s"]);
    let mut s = s;
    s.stop();
    assert!(!has_table(&proxy_table), "{proxy_table} is left");
    assert!(!has_table(&engine_table), "{engine_table} is left");
    let link = Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .unwrap();
    assert!(!link.status.success(), "{bridge} is left");
}

/// One TCP exchange from container `id` (python3 in multilayer:1) with the echo server at
/// `ip:port`, which answers with the source address it saw; `None` when refused, dropped (2 s)
/// or closed without an answer.
fn echo_from(s: &Server, id: &str, ip: &str, port: u16) -> Option<String> {
    let probe = format!(
        "import socket\ntry:\n  s=socket.create_connection(('{ip}',{port}),2)\n  s.settimeout(2)\n  print(s.recv(64).decode())\nexcept Exception as e:\n  print('ERR', e)"
    );
    let out = s.docker(&["exec", id, "python3", "-c", &probe]);
    let seen = stdout(&out).trim().to_string();
    (out.status.success() && !seen.is_empty() && !seen.starts_with("ERR")).then_some(seen)
}

/// Kubernetes e2e "should preserve source pod IP for traffic thru service cluster IP": a pod
/// reaching a ClusterIP whose endpoint is on its own node is seen by the endpoint with its own
/// address (kube-proxy masquerades neither pod sources nor same-node traffic), as straight to
/// the pod; the endpoint reaching itself through its Service (hairpin: its bridge port in
/// hairpin mode) still works, masqueraded to the pod bridge's gateway as kube-proxy's
/// `mark-for-masquerade` in the endpoint chain does; and a hostPort of that pod (the engine's
/// published-port DNAT on the pod bridge) still answers a pod of the node through the node's
/// address.
#[test]
fn pods_keep_their_source_address_through_a_cluster_ip_on_their_node() {
    let svc_cidr = service_cidr();
    let s = Server::start(true, &["--node-name", NODE, "--service-cidr", &svc_cidr]);
    let layout = images_dir().join("oci-layout");
    let out = s.barge(&["load", "-i", layout.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    let host_port = free_port();
    let echo = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('',9000))\ns.listen()\nwhile True:\n  c,a=s.accept()\n  c.sendall(a[0].encode())\n  c.close()";
    let pod = |name: &str, role: &str, args: &str, ports: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{role: {role}}}\n\
             spec:\n  nodeName: {NODE}\n  terminationGracePeriodSeconds: 0\n  containers:\n  \
             - name: main\n    image: multilayer:1\n    imagePullPolicy: Never\n    args: ['-c', {args:?}]\n{ports}"
        )
    };
    s.apply(&pod(
        "echo",
        "echo",
        echo,
        &format!("    ports: [{{containerPort: 9000, hostPort: {host_port}}}]\n"),
    ));
    s.apply(&pod(
        "client",
        "client",
        "import time\ntime.sleep(3600)",
        "",
    ));
    s.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: echo}\nspec:\n  selector: {role: echo}\n  \
         ports: [{port: 80, targetPort: 9000}]\n",
    );
    for p in ["echo", "client"] {
        s.wait_pod(p, "{.status.phase}", 120, |v| v == "Running");
    }
    let get = |what: &str, path: &str| s.k(&["get", what, "-o", &format!("jsonpath={path}")]);
    let cip = get("service/echo", "{.spec.clusterIP}");
    let client_ip = get("pod/client", "{.status.podIP}");
    let echo_ip = get("pod/echo", "{.status.podIP}");
    let (client, echo) = (container_of(&s, "client"), container_of(&s, "echo"));
    let gateway = {
        let out = s.docker(&[
            "network",
            "inspect",
            "barge-pods",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}}",
        ]);
        stdout(&out).trim().to_string()
    };
    assert!(!gateway.is_empty());

    // Through the ClusterIP: the client's own address, not the gateway's.
    let seen = s.until(60, "client → the echo Service", || {
        echo_from(&s, &client, &cip, 80)
    });
    assert_eq!(
        seen, client_ip,
        "the endpoint saw {seen}, not the client pod {client_ip} (gateway {gateway})"
    );
    // Straight to the pod: the same.
    let seen = s.until(30, "client → the echo pod", || {
        echo_from(&s, &client, &echo_ip, 9000)
    });
    assert_eq!(seen, client_ip);
    // Hairpin: the endpoint reaches itself through its Service, masqueraded.
    let seen = s.until(30, "echo → its own Service", || {
        echo_from(&s, &echo, &cip, 80)
    });
    assert_eq!(seen, gateway, "hairpin traffic is masqueraded");
    // The engine's published port (the hostPort) on the node's address, from a pod of the node.
    let node_ip = s.node_ip(NODE);
    s.until(30, "client → the echo pod's hostPort on the node", || {
        echo_from(&s, &client, &node_ip, host_port)
    });
}
