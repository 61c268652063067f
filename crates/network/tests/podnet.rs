//! The pod network between nodes on the real kernel (root): two network namespaces are two
//! "nodes" joined by a veth (their shared link), each with a bridge over its podCIDR and a
//! pod-like namespace behind it; pods exchange UDP datagrams across the nodes through
//! [`barge_network::podnet`] (host-gw and VXLAN) and the receiver sees the sender's pod IP
//! (no NAT). Every namespace (and with it every link) is deleted by a Drop guard.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use barge_network::podnet::{Backend, PodNet, Remote, ROUTE_PROTOCOL, VXLAN_DEVICE};

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip_out(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two nodes (`<tag>na`, `<tag>nb`) and their pods (`<tag>pa`, `<tag>pb`).
struct Cluster {
    names: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

impl Cluster {
    fn ns(&self, i: usize) -> &str {
        &self.names[i]
    }
    fn path(&self, i: usize) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.names[i])
    }
}

const NODE_IPS: [&str; 2] = ["192.168.77.1", "192.168.77.2"];
const CIDRS: [&str; 2] = ["10.244.1.0/24", "10.244.2.0/24"];
const POD_IPS: [&str; 2] = ["10.244.1.2", "10.244.2.2"];

/// Runs `f` on a thread inside namespace `path`.
fn in_ns<T: Send>(path: &std::path::Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = File::open(path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

fn cluster(tag: &str) -> Cluster {
    let id = std::process::id() % 100000;
    let names: Vec<String> = ["na", "nb", "pa", "pb"]
        .iter()
        .map(|s| format!("bpn{tag}{id}{s}"))
        .collect();
    let c = Cluster { names };
    for n in &c.names {
        ip(&["netns", "add", n]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }
    // The nodes' shared link.
    ip(&[
        "-n",
        c.ns(0),
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        c.ns(1),
    ]);
    for i in 0..2 {
        let (node, pod) = (c.ns(i).to_string(), c.ns(i + 2).to_string());
        ip(&[
            "-n",
            &node,
            "addr",
            "add",
            &format!("{}/24", NODE_IPS[i]),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &node, "link", "set", "eth0", "up"]);
        // The node's pod bridge over its podCIDR, its gateway the .1.
        let cidr: ipnet::Ipv4Net = CIDRS[i].parse().unwrap();
        let gw = Ipv4Addr::from(u32::from(cidr.network()) + 1);
        ip(&["-n", &node, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &node,
            "addr",
            "add",
            &format!("{gw}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &node, "link", "set", "br0", "up"]);
        // The pod: a veth into the bridge, its address and default route.
        ip(&[
            "-n", &node, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns",
            &pod,
        ]);
        ip(&["-n", &node, "link", "set", "veth0", "master", "br0", "up"]);
        ip(&[
            "-n",
            &pod,
            "addr",
            "add",
            &format!("{}/24", POD_IPS[i]),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &pod, "link", "set", "eth0", "up"]);
        ip(&[
            "-n",
            &pod,
            "route",
            "add",
            "default",
            "via",
            &gw.to_string(),
        ]);
        in_ns(&c.path(i), || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
        });
    }
    c
}

fn podnet(backend: Backend, i: usize) -> PodNet {
    PodNet {
        backend,
        node_ip: NODE_IPS[i].parse().unwrap(),
        pod_cidr: CIDRS[i].parse().unwrap(),
    }
}

fn remote_of(backend: Backend, i: usize) -> Remote {
    let p = podnet(backend, i);
    Remote {
        node_ip: p.node_ip,
        pod_cidr: p.pod_cidr,
        vtep_mac: (backend == Backend::Vxlan).then(|| p.vtep_mac()),
    }
}

/// Sets up both nodes for `backend`, each routing to the other.
fn connect(c: &Cluster, backend: Backend) {
    for i in 0..2 {
        in_ns(&c.path(i), || {
            let net = podnet(backend, i);
            let mac = net.ensure().unwrap();
            assert_eq!(mac.is_some(), backend == Backend::Vxlan);
            net.sync(&[remote_of(backend, 1 - i)]).unwrap();
            // Twice: idempotent.
            net.ensure().unwrap();
            net.sync(&[remote_of(backend, 1 - i)]).unwrap();
        });
    }
}

/// Sends a datagram from pod `from` to pod `to`; returns the source address the receiver
/// saw, or `None` when nothing arrived.
fn exchange(c: &Cluster, from: usize, to: usize) -> Option<SocketAddr> {
    let dst: Ipv4Addr = POD_IPS[to].parse().unwrap();
    let server = in_ns(&c.path(to + 2), || {
        let s = UdpSocket::bind((dst, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s
    });
    let port = server.local_addr().unwrap().port();
    let client = in_ns(&c.path(from + 2), || {
        UdpSocket::bind(("0.0.0.0", 0)).unwrap()
    });
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    // The first datagrams may race neighbour resolution on the bridges: a few tries.
    for _ in 0..10 {
        client.send_to(b"ping", (dst, port)).unwrap();
        if let Ok((n, peer)) = server.recv_from(&mut buf) {
            assert_eq!(&buf[..n], b"ping");
            server.send_to(b"pong", peer).unwrap();
            let (n, back) = client.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..n], back),
                (&b"pong"[..], SocketAddr::from((dst, port)))
            );
            return Some(peer);
        }
    }
    None
}

fn check_no_nat(c: &Cluster) {
    for (from, to) in [(0, 1), (1, 0)] {
        let peer = exchange(c, from, to).expect("a datagram across the nodes");
        assert_eq!(
            peer.ip().to_string(),
            POD_IPS[from],
            "the receiver sees the sender's pod IP"
        );
    }
}

#[test]
fn host_gw_routes_pods_across_nodes_without_nat() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let c = cluster("h");
    // Before: no route to the other node's pods.
    assert!(exchange(&c, 0, 1).is_none());
    // A route that is not barge's (another tool's) must survive every reconcile.
    ip(&[
        "-n",
        c.ns(0),
        "route",
        "add",
        "10.99.0.0/24",
        "via",
        NODE_IPS[1],
    ]);
    connect(&c, Backend::HostGw);
    let routes = ip_out(&[
        "-n",
        c.ns(0),
        "route",
        "show",
        "proto",
        &ROUTE_PROTOCOL.to_string(),
    ]);
    assert!(
        routes.contains(&format!("{} via {}", CIDRS[1], NODE_IPS[1])),
        "{routes}"
    );
    check_no_nat(&c);

    // Incremental removal of the node, then a full reconcile with nobody: no route left of
    // barge's, the foreign one kept.
    in_ns(&c.path(0), || {
        podnet(Backend::HostGw, 0)
            .remove(&remote_of(Backend::HostGw, 1))
            .unwrap()
    });
    assert!(exchange(&c, 0, 1).is_none());
    in_ns(&c.path(0), || {
        let net = podnet(Backend::HostGw, 0);
        net.add(&remote_of(Backend::HostGw, 1)).unwrap();
        net.sync(&[]).unwrap();
    });
    let routes = ip_out(&["-n", c.ns(0), "route", "show"]);
    assert!(!routes.contains(CIDRS[1]), "{routes}");
    assert!(routes.contains("10.99.0.0/24"), "{routes}");
}

#[test]
fn vxlan_carries_pods_across_nodes_without_nat() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let c = cluster("v");
    connect(&c, Backend::Vxlan);
    let dev = ip_out(&["-n", c.ns(0), "-d", "link", "show", VXLAN_DEVICE]);
    assert!(dev.contains("vxlan id 1"), "{dev}");
    assert!(dev.contains("dstport 8472"), "{dev}");
    assert!(dev.contains("nolearning"), "{dev}");
    assert!(dev.contains("mtu 1450"), "{dev}");
    let fdb = ip_out(&["-n", c.ns(0), "neigh", "show", "dev", VXLAN_DEVICE]);
    assert!(
        fdb.contains("10.244.2.0 lladdr 0e:ba:c0:a8:4d:02 PERMANENT"),
        "{fdb}"
    );
    let fdb = ip_out(&["-n", c.ns(0), "link", "show", VXLAN_DEVICE]);
    assert!(fdb.contains("0e:ba:c0:a8:4d:01"), "{fdb}");
    let fdb = Command::new("ip")
        .args([
            "netns",
            "exec",
            c.ns(0),
            "bridge",
            "fdb",
            "show",
            "dev",
            VXLAN_DEVICE,
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !fdb.is_empty() {
        assert!(fdb.contains("0e:ba:c0:a8:4d:02 dst 192.168.77.2"), "{fdb}");
    }
    check_no_nat(&c);

    // The node leaves: its route, neighbour and FDB entry go; the pods no longer meet.
    in_ns(&c.path(0), || podnet(Backend::Vxlan, 0).sync(&[]).unwrap());
    let neigh = ip_out(&["-n", c.ns(0), "neigh", "show", "dev", VXLAN_DEVICE]);
    assert!(!neigh.contains("10.244.2.0"), "{neigh}");
    assert!(exchange(&c, 0, 1).is_none());

    // Switching to host-gw removes the device; `none` then removes the routes too.
    in_ns(&c.path(0), || {
        let net = podnet(Backend::HostGw, 0);
        net.ensure().unwrap();
        net.sync(&[remote_of(Backend::HostGw, 1)]).unwrap();
    });
    assert!(ip_out(&["-n", c.ns(0), "link", "show", VXLAN_DEVICE]).is_empty());
    in_ns(&c.path(0), || PodNet::teardown().unwrap());
    let routes = ip_out(&["-n", c.ns(0), "route", "show"]);
    assert!(!routes.contains(CIDRS[1]), "{routes}");
}
