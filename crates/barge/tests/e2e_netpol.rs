//! NetworkPolicy enforcement on the one-node cluster, driven with kubectl 1.32: busybox pods
//! in two namespaces reach a web pod (two ports) and each other until policies isolate them —
//! default-deny ingress, an allow rule for one named port from one namespace, egress
//! default-deny with an ipBlock and `except`, pod and namespace label changes, deletion — and
//! the API server refuses an invalid CIDR with kube's message. Traffic stays inside the
//! server's own pod network (its own `--cluster-cidr`) and loopback.

mod common;

use std::process::Command;
use std::time::Duration;

use common::server::*;
use common::*;

const NODE: &str = "node1";

/// The engine container of pod `ns/pod`.
fn container_of(s: &Server, ns: &str, pod: &str) -> String {
    s.until(60, &format!("{ns}/{pod}'s container"), || {
        let out = s.docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=io.kubernetes.pod.name={pod}"),
            "--filter",
            &format!("label=io.kubernetes.pod.namespace={ns}"),
        ]);
        let id = stdout(&out).trim().lines().next().unwrap_or("").to_string();
        (!id.is_empty()).then_some(id)
    })
}

/// Whether container `from` gets the web page at `ip:port` (within 2 s).
fn reaches(s: &Server, from: &str, ip: &str, port: u16) -> bool {
    let out = s.docker(&[
        "exec",
        from,
        "sh",
        "-c",
        &format!("busybox timeout 2 busybox wget -q -O- http://{ip}:{port}/"),
    ]);
    out.status.success() && stdout(&out).contains("hello")
}

/// Waits until `from` reaching `ip:port` is `want`.
fn expect(s: &Server, what: &str, from: &str, ip: &str, port: u16, want: bool) {
    s.until(30, &format!("{what}: {ip}:{port} reachable={want}"), || {
        (reaches(s, from, ip, port) == want).then_some(())
    });
}

/// The same, already so (no waiting: the state the rules are in now).
fn check(s: &Server, what: &str, from: &str, ip: &str, port: u16, want: bool) {
    assert_eq!(
        reaches(s, from, ip, port),
        want,
        "{what}: {ip}:{port}\n{}",
        nft_list(&netpol_table(s))
    );
}

fn netpol_table(s: &Server) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(s.dir.join("run").to_string_lossy().as_bytes());
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("barge-{}-netpol", &hex[..8])
}

fn nft_list(table: &str) -> String {
    let out = Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .unwrap();
    stdout(&out)
}

/// The per-pod chains and the peer sets in the table.
fn pod_chains(table: &str) -> Vec<String> {
    nft_list(table)
        .lines()
        .map(|l| l.trim().trim_end_matches('{').trim_end())
        .filter(|l| {
            l.starts_with("chain ingress-")
                || l.starts_with("chain egress-")
                || l.starts_with("set peer-")
        })
        .map(String::from)
        .collect()
}

fn pod_ip(s: &Server, ns: &str, pod: &str) -> String {
    s.until(60, &format!("{ns}/{pod}'s IP"), || {
        let ip = s.k(&[
            "-n",
            ns,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.podIP}",
        ]);
        (!ip.is_empty()).then_some(ip)
    })
}

#[test]
fn network_policies_isolate_pods_as_kube_specifies() {
    let s = Server::start(true, &["--node-name", NODE, "--pod-restart-backoff", "1s"]);
    let layout = images_dir().join("oci-layout");
    let out = s.barge(&["load", "-i", layout.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    let table = netpol_table(&s);
    // Bridged pod-to-pod traffic reaches nftables' ip hooks only with br_netfilter on.
    let nf =
        std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables").unwrap_or_default();
    assert_eq!(
        nf.trim(),
        "1",
        "br_netfilter is needed (bridge-nf-call-iptables)"
    );

    let web = "busybox mkdir -p /www && echo hello > /www/index.html && busybox httpd -p 9090 -h /www && exec busybox httpd -f -p 8080 -h /www";
    let pod = |ns: &str, name: &str, labels: &str, cmd: &str, extra: &str| {
        format!(
            r#"---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:1.35
    command: [sh, -c, "{cmd}"]
{extra}"#
        )
    };
    let ports = "    ports: [{name: http, containerPort: 8080}, {name: alt, containerPort: 9090}]\n    readinessProbe:\n      httpGet: {path: /, port: http}\n      periodSeconds: 1\n";
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: np-a, labels: {team: a}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: np-b, labels: {team: b}}\n",
    );
    yaml += &pod("np-a", "web", "app: web", web, ports);
    yaml += &pod("np-b", "web2", "app: web2", web, ports);
    yaml += &pod("np-a", "client", "app: client", "exec sleep 3600", "");
    yaml += &pod("np-b", "client", "app: client", "exec sleep 3600", "");
    s.apply(&yaml);
    for (ns, p) in [
        ("np-a", "web"),
        ("np-b", "web2"),
        ("np-a", "client"),
        ("np-b", "client"),
    ] {
        s.k(&[
            "-n",
            ns,
            "wait",
            "--for=condition=Ready",
            &format!("pod/{p}"),
            "--timeout=90s",
        ]);
    }
    let web_ip = pod_ip(&s, "np-a", "web");
    let web2_ip = pod_ip(&s, "np-b", "web2");
    let b_client_ip = pod_ip(&s, "np-b", "client");
    let a = container_of(&s, "np-a", "client");
    let b = container_of(&s, "np-b", "client");
    let pod_cidr = s.k(&["get", "node", NODE, "-o", "jsonpath={.spec.podCIDR}"]);

    // 1. No policy: everyone reaches everything.
    s.until(30, "the netpol table", || {
        nft_list(&table).contains("chain forward").then_some(())
    });
    check(&s, "no policy", &a, &web_ip, 8080, true);
    check(&s, "no policy", &a, &web_ip, 9090, true);
    check(&s, "no policy", &b, &web_ip, 8080, true);
    check(&s, "no policy", &b, &web2_ip, 8080, true);

    // 2. Default-deny ingress in np-a: nobody reaches web, but the node still does (its
    // readiness probe keeps passing, and the host reaches it).
    s.apply("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: np-a}\nspec: {podSelector: {}}\n",
    );
    expect(&s, "default deny", &a, &web_ip, 8080, false);
    check(&s, "default deny", &b, &web_ip, 8080, false);
    check(&s, "default deny", &b, &web_ip, 9090, false);
    check(&s, "np-b is not isolated", &a, &web2_ip, 8080, true);
    let host = curl(&["-s", "--max-time", "3", &format!("http://{web_ip}:8080/")]);
    assert!(
        stdout(&host).contains("hello"),
        "from the node: {}",
        stderr(&host)
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        s.k(&[
            "-n",
            "np-a",
            "get",
            "pod",
            "web",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#
        ]),
        "True",
        "kubelet's probes must pass"
    );

    // 3. Allow the named port `http` (8080) from namespaces labelled team=b only.
    s.apply(
        r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-b, namespace: np-a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: b}}}]
    ports: [{port: http}]
"#,
    );
    expect(&s, "allow from np-b", &b, &web_ip, 8080, true);
    check(&s, "other port", &b, &web_ip, 9090, false);
    check(&s, "other namespace", &a, &web_ip, 8080, false);

    // 4. A pod label change flips access: ingress from pods labelled role=friend.
    s.apply(
        r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: friends, namespace: np-a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {role: friend}}}]
    ports: [{port: 9090, protocol: TCP}]
"#,
    );
    check(&s, "not a friend yet", &a, &web_ip, 9090, false);
    s.k(&["-n", "np-a", "label", "pod", "client", "role=friend"]);
    expect(&s, "a friend", &a, &web_ip, 9090, true);
    check(&s, "a friend, other port", &a, &web_ip, 8080, false);
    s.k(&["-n", "np-a", "label", "pod", "client", "role-"]);
    expect(&s, "no longer a friend", &a, &web_ip, 9090, false);
    // A namespace label change too: np-a labelled team=b is allowed by allow-b.
    s.k(&["label", "namespace", "np-a", "team=b", "--overwrite"]);
    expect(&s, "np-a now team=b", &a, &web_ip, 8080, true);
    s.k(&["label", "namespace", "np-a", "team=a", "--overwrite"]);
    expect(&s, "np-a team=a again", &a, &web_ip, 8080, false);

    // 5. Egress default-deny for np-b's client with an ipBlock allow: the pod network minus
    // web's address. web2 (inside) is reachable, web (the exception) no longer is.
    s.apply(&format!(
        r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: egress, namespace: np-b}}
spec:
  podSelector: {{matchLabels: {{app: client}}}}
  policyTypes: [Egress]
  egress:
  - to: [{{ipBlock: {{cidr: "{pod_cidr}", except: ["{web_ip}/32"]}}}}]
"#
    ));
    expect(&s, "egress except", &b, &web_ip, 8080, false);
    check(&s, "egress inside the block", &b, &web2_ip, 8080, true);
    // np-b's ingress is not isolated: np-a's client still reaches web2.
    check(&s, "egress only", &a, &web2_ip, 8080, true);

    // 6. An invalid CIDR is refused with kube's message, and breaks nothing.
    let (ok, msg) = s.try_apply(
        r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: np-b}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/33}}]
"#,
    );
    assert!(!ok, "{msg}");
    assert!(
        msg.contains(r#"The NetworkPolicy "bad" is invalid: spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#),
        "{msg}"
    );
    check(&s, "after the refused policy", &b, &web2_ip, 8080, true);
    check(&s, "after the refused policy", &b, &web_ip, 8080, false);

    // 7. A deleted pod's chain goes with it; deleting the policies restores access and
    // leaves no per-pod chain or set.
    let chain = format!("chain egress-{b_client_ip}");
    assert!(pod_chains(&table).contains(&chain), "{}", nft_list(&table));
    s.k(&["delete", "pod", "client", "-n", "np-b", "--timeout=60s"]);
    s.until(30, "the deleted pod's chain gone", || {
        (!pod_chains(&table).contains(&chain)).then_some(())
    });
    s.k(&["delete", "networkpolicy", "--all", "-n", "np-b"]);
    s.k(&["delete", "networkpolicy", "--all", "-n", "np-a"]);
    expect(&s, "policies gone", &a, &web_ip, 9090, true);
    check(&s, "policies gone", &a, &web_ip, 8080, true);
    s.until(30, "no per-pod chain left", || {
        pod_chains(&table).is_empty().then_some(())
    });

    // The table goes with the server.
    s.k(&["delete", "namespace", "np-a", "np-b", "--timeout=90s"]);
    let mut s = s;
    s.stop();
    let out = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{table} is left");
}
