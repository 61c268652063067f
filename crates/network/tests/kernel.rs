//! Integration tests on the real kernel (root): bridges, namespaces, veths, published ports,
//! isolation and the DNS server. Each test uses its own bridge names, table and roots, and
//! removes everything it made.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use barge_network::*;

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

struct Env {
    dir: tempfile::TempDir,
    nets: std::sync::Arc<Networks>,
    bridge: String,
}

fn env(tag: &str, subnet: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = NetworkConfig::new(dir.path().join("data"), dir.path().join("exec"));
    cfg.bridge = format!("bnt{tag}{}", std::process::id() % 10000);
    cfg.bip = Some(subnet.parse().unwrap());
    let bridge = cfg.bridge.clone();
    let nets = Networks::open(cfg).unwrap();
    nets.reconcile(&HashSet::new());
    Env { dir, nets, bridge }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids: Vec<String> = std::fs::read_dir(self.dir.path().join("exec/network"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        e.path()
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            self.nets.teardown(&id);
        }
        for n in self.nets.list() {
            if !n.predefined() {
                let _ = self.nets.remove(&n.id);
            }
        }
        self.nets.shutdown();
    }
}

/// Runs `f` on a thread inside the namespace at `netns`.
fn in_ns<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = File::open(netns).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

fn cid(n: u8) -> String {
    format!("{n:02x}{:062x}", std::process::id())
}

fn serve_once(netns: &Path, port: u16, reply: &'static [u8]) -> std::thread::JoinHandle<()> {
    // The previous server on this port may still be closing its connection: retry a moment.
    let l = in_ns(netns, || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match TcpListener::bind(("0.0.0.0", port)) {
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                r => break r.unwrap(),
            }
        }
    });
    std::thread::spawn(move || {
        l.set_nonblocking(false).unwrap();
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.write_all(reply);
        }
    })
}

fn fetch(addr: (Ipv4Addr, u16)) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn bridge_endpoint_ports_and_cleanup() {
    assert!(
        root(),
        "the kernel tests need root; CI runs the suite as root"
    );
    let e = env("a", "10.251.7.1/24");
    let id = cid(1);
    let sb = e
        .nets
        .setup(&SandboxRequest {
            container_id: id.clone(),
            name: "web".into(),
            networks: vec![EndpointRequest {
                network: "bridge".into(),
                ..Default::default()
            }],
            ports: vec![PortBinding {
                container_port: 8080,
                proto: "tcp".into(),
                host_ip: String::new(),
                host_port: String::new(),
            }],
            dns: vec![],
            pod: None,
        })
        .unwrap();
    let ep = &sb.endpoints[0];
    assert_eq!(ep.ip, "10.251.7.2".parse::<Ipv4Addr>().unwrap());
    assert_eq!(ep.gateway, Some("10.251.7.1".parse().unwrap()));
    assert!(Path::new(&format!(
        "/sys/class/net/{}/brif/{}",
        e.bridge, ep.host_ifname
    ))
    .exists());
    let host_port = sb.ports[0].host_port;
    assert!((49153..=65535).contains(&host_port));
    // Direct to the container's address, then through the published port on 127.0.0.1.
    let t = serve_once(&sb.netns, 8080, b"direct");
    assert_eq!(fetch((ep.ip, 8080)).unwrap(), "direct");
    t.join().unwrap();
    let t = serve_once(&sb.netns, 8080, b"published");
    assert_eq!(
        fetch((Ipv4Addr::LOCALHOST, host_port)).unwrap(),
        "published"
    );
    t.join().unwrap();
    let rules = String::from_utf8(
        Command::new("nft")
            .args(["list", "table", "ip", e.nets.table()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    // `tcp dport P [meta mark set ...] dnat to ...`: the DNAT of the published port (marked
    // for the engine's hairpin masquerade).
    assert!(
        rules
            .lines()
            .any(|l| l.contains(&format!("dport {host_port} "))
                && l.contains("dnat to 10.251.7.2:8080")),
        "{rules}"
    );
    e.nets.teardown(&id);
    assert!(!Path::new(&format!("/sys/class/net/{}", ep.host_ifname)).exists());
    assert!(!sb.netns.exists());
    let rules = String::from_utf8(
        Command::new("nft")
            .args(["list", "table", "ip", e.nets.table()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!rules.contains("dnat to"), "{rules}");
    let table = e.nets.table().to_string();
    let bridge = e.bridge.clone();
    drop(e);
    assert!(!Path::new(&format!("/sys/class/net/{bridge}")).exists());
    let out = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    assert!(!out.status.success(), "table {table} left behind");
}

#[test]
fn user_networks_dns_and_isolation() {
    assert!(
        root(),
        "the kernel tests need root; CI runs the suite as root"
    );
    let e = env("b", "10.251.8.1/24");
    let n1 = e
        .nets
        .create(CreateRequest {
            name: format!("front{}", std::process::id()),
            subnet: Some("10.251.9.0/24".into()),
            ..Default::default()
        })
        .unwrap();
    let n2 = e
        .nets
        .create(CreateRequest {
            name: format!("back{}", std::process::id()),
            subnet: Some("10.251.10.0/24".into()),
            ..Default::default()
        })
        .unwrap();
    let join = |n: u8, name: &str, net: &Network, aliases: Vec<String>| {
        e.nets
            .setup(&SandboxRequest {
                container_id: cid(n),
                name: name.into(),
                networks: vec![EndpointRequest {
                    network: net.name.clone(),
                    aliases,
                    ..Default::default()
                }],
                ports: vec![],
                dns: vec![],
                pod: None,
            })
            .unwrap()
    };
    let api = join(2, "api", &n1, vec!["backend".into()]);
    let client = join(3, "client", &n1, vec![]);
    let other = join(4, "other", &n2, vec![]);
    let query = |sb: &Sandbox, name: &str| -> Vec<Ipv4Addr> {
        use hickory_proto::op::{Message, MessageType, OpCode, Query};
        use hickory_proto::rr::{Name, RData, RecordType};
        let mut m = Message::new(1, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        let q = m.to_vec().unwrap();
        in_ns(&sb.netns, || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.send_to(&q, (DNS_ADDR, 53)).unwrap();
            let mut buf = [0u8; 1500];
            let n = s.recv(&mut buf).unwrap();
            Message::from_vec(&buf[..n])
                .unwrap()
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect()
        })
    };
    let api_ip = api.endpoints[0].ip;
    assert_eq!(query(&client, "api"), vec![api_ip]);
    assert_eq!(query(&client, "backend"), vec![api_ip]);
    assert_eq!(query(&client, &api.container_id[..12]), vec![api_ip]);
    assert!(
        query(&other, "api").is_empty(),
        "name leaked across networks"
    );
    // Same network: reachable. Other network: not, in either direction.
    let t = serve_once(&api.netns, 8080, b"hello");
    let got = in_ns(&client.netns, || fetch((api_ip, 8080)));
    assert_eq!(got.unwrap(), "hello");
    t.join().unwrap();
    let _t = serve_once(&api.netns, 8081, b"leak");
    assert!(in_ns(&other.netns, || fetch((api_ip, 8081))).is_err());
    let other_ip = other.endpoints[0].ip;
    let _t2 = serve_once(&other.netns, 8082, b"leak");
    assert!(in_ns(&client.netns, || fetch((other_ip, 8082))).is_err());
    // A network with endpoints cannot be removed.
    assert!(matches!(
        e.nets.remove(&n1.id),
        Err(NetworkError::InUse { .. })
    ));
    // After a "daemon restart" (new instance on the same roots), reconcile keeps what runs
    // and the DNS server answers again.
    let cfg_dir = e.dir.path().to_path_buf();
    let mut cfg = NetworkConfig::new(cfg_dir.join("data"), cfg_dir.join("exec"));
    cfg.bridge = e.bridge.clone();
    cfg.bip = Some("10.251.8.1/24".parse().unwrap());
    let again = Networks::open(cfg).unwrap();
    let running: HashSet<String> = [cid(2), cid(3)].into_iter().collect();
    again.reconcile(&running);
    assert!(again.sandbox(&cid(4)).is_none());
    assert!(!other.netns.exists());
    assert_eq!(query(&client, "api"), vec![api_ip]);
    for id in [cid(2), cid(3)] {
        again.teardown(&id);
    }
    // The first instance forgets them too (the Env drop removes networks and bridges).
    for id in [cid(2), cid(3), cid(4)] {
        e.nets.teardown(&id);
    }
}

/// Docker's FORWARD drop policy (it sets one when it enabled forwarding itself) would drop
/// barge's forwarded traffic; barge adds accepts for its bridges to DOCKER-USER and removes
/// them again. Runs in a private network namespace, so the host's firewall is never touched.
#[test]
fn coexists_with_docker_forward_drop() {
    assert!(
        root(),
        "the kernel tests need root; CI runs the suite as root"
    );
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let nft = |script: &str| {
            let mut c = Command::new("nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
            assert!(c.wait().unwrap().success(), "{script}");
        };
        nft("table ip filter {\n chain DOCKER-USER {\n  return\n }\n chain FORWARD {\n  type filter hook forward priority filter; policy drop;\n  jump DOCKER-USER\n }\n}\n");
        let filter = || {
            String::from_utf8(
                Command::new("nft")
                    .args(["list", "table", "ip", "filter"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap()
        };
        let e = env("c", "10.251.11.1/24");
        let n2 = e
            .nets
            .create(CreateRequest {
                name: "other".into(),
                subnet: Some("10.251.12.0/24".into()),
                ..Default::default()
            })
            .unwrap();
        let server = e
            .nets
            .setup(&SandboxRequest {
                container_id: cid(7),
                name: "srv".into(),
                networks: vec![EndpointRequest {
                    network: n2.name.clone(),
                    ..Default::default()
                }],
                ports: vec![PortBinding {
                    container_port: 8080,
                    proto: "tcp".into(),
                    host_ip: String::new(),
                    host_port: "18190".into(),
                }],
                dns: vec![],
                pod: None,
            })
            .unwrap();
        let client = e
            .nets
            .setup(&SandboxRequest {
                container_id: cid(8),
                name: "cli".into(),
                networks: vec![EndpointRequest {
                    network: "bridge".into(),
                    ..Default::default()
                }],
                ports: vec![],
                dns: vec![],
                pod: None,
            })
            .unwrap();
        let rules = filter();
        assert!(rules.contains(&format!("barge:{}", e.nets.table())), "{rules}");
        // From the default bridge to a published port of another network, through the
        // gateway's address: DNAT, then forwarded across Docker's FORWARD chain.
        let t = serve_once(&server.netns, 8080, b"through");
        let gw = client.endpoints[0].gateway.unwrap();
        assert_eq!(in_ns(&client.netns, || fetch((gw, 18190))).unwrap(), "through");
        t.join().unwrap();
        for id in [cid(7), cid(8)] {
            e.nets.teardown(&id);
        }
        drop(e);
        let rules = filter();
        assert!(!rules.contains("barge:"), "accepts left behind: {rules}");
    })
    .join()
    .unwrap();
}

#[test]
fn ipv6_network_endpoints_talk_over_ipv6() {
    assert!(
        root(),
        "the kernel tests need root; CI runs the suite as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = NetworkConfig::new(dir.path().join("data"), dir.path().join("exec"));
    cfg.bridge = format!("bnt6{}", std::process::id() % 10000);
    cfg.bip = Some("10.251.14.1/24".parse().unwrap());
    cfg.pool6 = Some("fd00:b1:70::/48".parse().unwrap());
    let nets = Networks::open(cfg).unwrap();
    nets.reconcile(&HashSet::new());
    let e = Env {
        dir,
        nets,
        bridge: String::new(),
    };
    // No IPv6 subnet given: the first free /64 of the pool.
    let n = e
        .nets
        .create(CreateRequest {
            name: format!("six{}", std::process::id()),
            subnet: Some("10.251.15.0/24".into()),
            enable_ipv6: true,
            internal: true,
            ..Default::default()
        })
        .unwrap();
    let i6 = n.ipam6.clone().expect("an IPv6 IPAM");
    assert_eq!(i6.subnet.to_string(), "fd00:b1:70::/64");
    assert_eq!(i6.gateway.to_string(), "fd00:b1:70::1");
    let join = |k: u8, want: Option<&str>| {
        e.nets
            .setup(&SandboxRequest {
                container_id: cid(k),
                name: format!("c{k}"),
                networks: vec![EndpointRequest {
                    network: n.name.clone(),
                    ipv6_address: want.map(|w| w.parse().unwrap()),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .unwrap()
    };
    let s1 = join(61, None);
    let s2 = join(62, Some("fd00:b1:70::abc"));
    let ip1 = s1.endpoints[0].ip6.unwrap();
    assert_eq!(ip1, ("fd00:b1:70::2".parse().unwrap(), 64));
    let ip2 = s2.endpoints[0].ip6.unwrap().0;
    // Internal: no IPv6 default route is configured.
    assert!(!s1.endpoints[0].default6);
    let l = in_ns(&s2.netns, || TcpListener::bind(("::", 7070)).unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, peer) = l.accept().unwrap();
        s.write_all(peer.ip().to_string().as_bytes()).unwrap();
    });
    let seen = in_ns(&s1.netns, || {
        let mut s = TcpStream::connect_timeout(
            &std::net::SocketAddr::new(ip2.into(), 7070),
            Duration::from_secs(3),
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    server.join().unwrap();
    assert_eq!(seen, ip1.0.to_string());
    // A fixed address in use is refused; the addresses come back after teardown.
    let o = e.nets.setup(&SandboxRequest {
        container_id: cid(63),
        name: "c63".into(),
        networks: vec![EndpointRequest {
            network: n.name.clone(),
            ipv6_address: Some(ip2),
            ..Default::default()
        }],
        ..Default::default()
    });
    assert!(matches!(o, Err(NetworkError::Conflict(_))), "{o:?}");
    e.nets.teardown(&cid(61));
    e.nets.teardown(&cid(62));
    let s3 = join(64, None);
    assert_eq!(s3.endpoints[0].ip6.unwrap().0, ip1.0);
    e.nets.teardown(&cid(64));
    let _ = &e.bridge;
}

/// The IPv6 side of the above: Docker's ip6tables (`ip6 filter`, FORWARD drop policy) would
/// drop a published port's IPv6 traffic forwarded between two of barge's IPv6 networks;
/// barge adds accepts to its DOCKER-USER too and removes them again. In a private network
/// namespace, so the host's firewall and sysctls are never touched.
#[test]
fn coexists_with_docker_ip6_forward_drop() {
    assert!(
        root(),
        "the kernel tests need root; CI runs the suite as root"
    );
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut c = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(b"table ip6 filter {\n chain DOCKER-USER {\n  return\n }\n chain FORWARD {\n  type filter hook forward priority filter; policy drop;\n  jump DOCKER-USER\n }\n}\n")
            .unwrap();
        assert!(c.wait().unwrap().success());
        let filter = || {
            String::from_utf8(
                Command::new("nft")
                    .args(["list", "table", "ip6", "filter"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap()
        };
        let e = env("d", "10.251.16.1/24");
        let net = |name: &str, v4: &str, v6: &str| {
            e.nets
                .create(CreateRequest {
                    name: name.into(),
                    subnet: Some(v4.into()),
                    enable_ipv6: true,
                    subnet6: Some(v6.into()),
                    ..Default::default()
                })
                .unwrap()
        };
        let a = net("a6", "10.251.17.0/24", "fd00:b1:71::/64");
        let b = net("b6", "10.251.18.0/24", "fd00:b1:72::/64");
        let join = |k: u8, n: &Network, ports: Vec<PortBinding>| {
            e.nets
                .setup(&SandboxRequest {
                    container_id: cid(k),
                    name: format!("c{k}"),
                    networks: vec![EndpointRequest {
                        network: n.name.clone(),
                        ..Default::default()
                    }],
                    ports,
                    dns: vec![],
                    pod: None,
                })
                .unwrap()
        };
        let server = join(
            71,
            &b,
            vec![PortBinding {
                container_port: 8080,
                proto: "tcp".into(),
                host_ip: String::new(),
                host_port: "18191".into(),
            }],
        );
        let client = join(72, &a, vec![]);
        let rules = filter();
        assert!(rules.contains(&format!("barge:{}", e.nets.table())), "{rules}");
        // From network a to the port published by b's container, through a's IPv6 gateway
        // (an address of the host): DNAT in the ip6 table, then across Docker's FORWARD.
        let l = in_ns(&server.netns, || TcpListener::bind(("::", 8080)).unwrap());
        let t = std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let _ = s.write_all(b"through6");
            }
        });
        let gw6 = client.endpoints[0].gateway6.unwrap();
        let got = in_ns(&client.netns, || {
            let mut s = TcpStream::connect_timeout(
                &std::net::SocketAddr::new(gw6.into(), 18191),
                Duration::from_secs(3),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok::<_, std::io::Error>(out)
        });
        assert_eq!(got.unwrap(), "through6");
        t.join().unwrap();
        for id in [cid(71), cid(72)] {
            e.nets.teardown(&id);
        }
        drop(e);
        let rules = filter();
        assert!(!rules.contains("barge:"), "accepts left behind: {rules}");
    })
    .join()
    .unwrap();
}

/// A pod sandbox also holds an IPC and a UTS namespace (with the pod's host name) and a
/// `/dev/shm` tmpfs, bind-mounted under `<exec-root>/podns/<key>`: kept by a reconcile (which
/// removes what no sandbox owns there) and removed by the teardown.
#[test]
fn pod_sandbox_holds_ipc_uts_and_shm() {
    use std::os::unix::fs::MetadataExt;
    assert!(
        root(),
        "the kernel tests need root; CI runs the suite as root"
    );
    let e = env("p", "10.251.12.1/24");
    let key = format!("{POD_SANDBOX_PREFIX}{:032x}", std::process::id());
    let sb = e
        .nets
        .setup(&SandboxRequest {
            container_id: key.clone(),
            name: "web-0".into(),
            networks: vec![EndpointRequest {
                network: "bridge".into(),
                ..Default::default()
            }],
            ports: vec![],
            dns: vec![],
            pod: Some(PodNamespacesRequest {
                hostname: "web-0".into(),
                shm_size: 1 << 20,
            }),
        })
        .unwrap();
    let p = sb.pod.clone().expect("pod namespaces");
    assert_eq!(e.nets.sandbox(&key).unwrap().pod.as_ref(), Some(&p));
    let ino = |path: &Path| std::fs::metadata(path).unwrap().ino();
    for (file, kind) in [(&p.ipc, "ipc"), (&p.uts, "uts")] {
        let host = Path::new("/proc/self/ns").join(kind);
        assert_ne!(ino(file), ino(&host), "{kind}: its own namespace");
    }
    let hostname = std::thread::scope(|s| {
        s.spawn(|| {
            let f = File::open(&p.uts).unwrap();
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWUTS).unwrap();
            nix::unistd::gethostname().unwrap()
        })
        .join()
        .unwrap()
    });
    assert_eq!(hostname.to_str(), Some("web-0"));
    let mounts = || std::fs::read_to_string("/proc/self/mounts").unwrap();
    let shm = format!("{} tmpfs ", p.shm.display());
    let line = mounts()
        .lines()
        .find(|l| l.contains(&shm))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no tmpfs on {}", p.shm.display()));
    assert!(
        line.contains("size=1024k") && line.contains("nosuid,nodev,noexec"),
        "{line}"
    );
    // A daemon restart keeps the sandbox's; a leftover nobody owns goes.
    let stray = e.dir.path().join("exec/podns/pod-stray");
    std::fs::create_dir_all(stray.join("shm")).unwrap();
    e.nets.reconcile(&HashSet::new());
    assert!(p.ipc.exists() && p.uts.exists() && mounts().contains(&shm));
    assert!(!stray.exists());
    e.nets.teardown(&key);
    let dir = p.ipc.parent().unwrap();
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!mounts().contains(&dir.display().to_string()));
    assert!(!sb.netns.exists());
}
