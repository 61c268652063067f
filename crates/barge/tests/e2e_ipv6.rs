//! End-to-end IPv6 on user-defined bridge networks (`--ipv6`, `EnableIPv6`): addresses from
//! the network's IPv6 subnet (or a ULA /64 when none is given, as dockerd ≥ 27), `--ip6`,
//! inspect fields as dockerd's, AAAA answers from the embedded DNS server, TCP between
//! containers over IPv6, isolation between IPv6 networks, IPAM across a daemon restart, and
//! nothing left in the kernel (bridges, `ip6` table, `net.ipv6.conf.all.forwarding`) once the
//! daemon stops — driven by the barge CLI and docker-py.
//!
//! Network rule: every connection goes between namespaces these tests create (containers on
//! their own bridges); nothing is routed beyond the machine.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A TCP server on `[::]:8080` that answers each connection with the peer's address.
const SERVER: &str = r#"
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 8080))
s.listen(16)
while True:
    c, a = s.accept()
    c.sendall((a[0] + "\n").encode())
    c.close()
"#;

/// `python3 -c CLIENT NAME`: the AAAA addresses of NAME (getaddrinfo, AF_INET6), then what
/// the server at the first one answered (the client's address as the server saw it).
const CLIENT: &str = r#"
import socket, sys
addrs = sorted({ai[4][0] for ai in socket.getaddrinfo(sys.argv[1], 8080, socket.AF_INET6, socket.SOCK_STREAM)})
print(",".join(addrs))
c = socket.create_connection((addrs[0], 8080), 3)
print(c.recv(200).decode().strip())
"#;

/// `python3 -c PROBE ADDR`: `open` when a TCP connection to ADDR:8080 succeeds in 2 s.
const PROBE: &str = r#"
import socket, sys
try:
    socket.create_connection((sys.argv[1], 8080), 2)
    print("open")
except OSError as e:
    print("blocked", e)
"#;

/// The host's first global IPv6 address outside barge's bridges (the test host's own).
fn host_ipv6() -> String {
    let out = Command::new("ip")
        .args(["-6", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    stdout(&out)
        .lines()
        .filter(|l| !l.contains(" br-") && !l.contains(" bb"))
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|x| *x == "inet6")?;
            Some(f[i + 1].split('/').next()?.to_string())
        })
        .expect("a global IPv6 address on the host")
}

/// The first line a TCP server at `addr` sends, retried for 10 s while the app starts.
fn read_line(addr: &str) -> String {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r =
            std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(3)))?;
                    let mut out = String::new();
                    s.read_to_string(&mut out)?;
                    Ok(out)
                });
        match r {
            Ok(out) if !out.trim().is_empty() => return out.trim().to_string(),
            r => assert!(Instant::now() < deadline, "{addr}: {r:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const FORWARDING: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// Every test here runs a daemon with IPv6 networks, which keeps the host's IPv6 forwarding on
/// while it runs; one test checks that the last daemon to stop restores the sysctl, which only
/// holds if no other test's daemon is running then. So they take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn sysctl(path: &str) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

fn table_of(d: &Daemon) -> String {
    barge_network::NetworkConfig::new(d.dir.join("data"), d.dir.join("run")).table
}

fn nft6(table: &str) -> Option<String> {
    let out = Command::new("nft")
        .args(["list", "table", "ip6", table])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn inspect_json(d: &Daemon, args: &[&str]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&d.ok(args)).unwrap();
    v[0].clone()
}

fn bridge_of(net: &serde_json::Value) -> String {
    format!("br-{}", &net["Id"].as_str().unwrap()[..12])
}

/// Runs `python3 -c script arg` in container `c` until it prints `want` in its first line's
/// place (the server needs a moment to listen); returns the output.
fn exec_until(d: &Daemon, c: &str, script: &str, arg: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = d.barge(&["exec", c, "python3", "-c", script, arg]);
        let out = stdout(&o);
        if o.status.success() && ok(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{c}: {arg}: {out}\n{}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ipv6_network_with_the_barge_cli() {
    let _turn = one_at_a_time();
    let forwarding_before = sysctl(FORWARDING);
    let d = Daemon::start();
    d.load_layout();
    let table = table_of(&d);

    // A network with an IPv6 subnet (IPv4 chosen by the daemon) and one with both families,
    // the IPv6 gateway given: each --gateway goes to the --subnet that contains it.
    d.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:b1:1::/64",
        "v6a",
    ]);
    d.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.197.31.0/24",
        "--subnet",
        "fd00:b1:2::/64",
        "--gateway",
        "fd00:b1:2::fe",
        "v6b",
    ]);
    let a = inspect_json(&d, &["network", "inspect", "v6a"]);
    assert_eq!(a["EnableIPv6"], true, "{a}");
    let cfg = a["IPAM"]["Config"].as_array().unwrap();
    assert_eq!(cfg.len(), 2, "{a}");
    assert!(cfg[0]["Subnet"].as_str().unwrap().starts_with("10."), "{a}");
    assert_eq!(cfg[1]["Subnet"], "fd00:b1:1::/64", "{a}");
    assert_eq!(cfg[1]["Gateway"], "fd00:b1:1::1", "{a}");
    let b = inspect_json(&d, &["network", "inspect", "v6b"]);
    assert_eq!(b["IPAM"]["Config"][0]["Subnet"], "10.197.31.0/24", "{b}");
    assert_eq!(b["IPAM"]["Config"][1]["Gateway"], "fd00:b1:2::fe", "{b}");
    let (br_a, br_b) = (bridge_of(&a), bridge_of(&b));
    let addrs = Command::new("ip")
        .args(["-6", "addr", "show", "dev", &br_a])
        .output()
        .unwrap();
    assert!(
        stdout(&addrs).contains("fd00:b1:1::1/64"),
        "{}",
        stdout(&addrs)
    );
    // An IPv6 subnet without --ipv6 is refused.
    let o = d.barge(&["network", "create", "--subnet", "fd00:b1:9::/64", "v6no"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("IPv6"), "{}", stderr(&o));

    // A server, a client with a fixed address (--ip6), a server on the other network.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "v6a",
        "-p",
        "18196:8080",
        "debian-python:bookworm",
        "python3",
        "-c",
        SERVER,
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "cli",
        "--network",
        "v6a",
        "--ip6",
        "fd00:b1:1::99",
        "debian-python:bookworm",
        "sleep",
        "600",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "v6b",
        "debian-python:bookworm",
        "python3",
        "-c",
        SERVER,
    ]);
    let s = inspect_json(&d, &["inspect", "srv"]);
    let ep = &s["NetworkSettings"]["Networks"]["v6a"];
    assert_eq!(ep["GlobalIPv6Address"], "fd00:b1:1::2", "{ep}");
    assert_eq!(ep["GlobalIPv6PrefixLen"], 64, "{ep}");
    assert_eq!(ep["IPv6Gateway"], "fd00:b1:1::1", "{ep}");
    assert!(ep["IPAddress"].as_str().unwrap().starts_with("10."), "{ep}");
    let c = inspect_json(&d, &["inspect", "cli"]);
    let cep = &c["NetworkSettings"]["Networks"]["v6a"];
    assert_eq!(cep["GlobalIPv6Address"], "fd00:b1:1::99", "{cep}");
    assert_eq!(cep["IPAMConfig"]["IPv6Address"], "fd00:b1:1::99", "{cep}");
    let oep = &inspect_json(&d, &["inspect", "other"])["NetworkSettings"]["Networks"]["v6b"];
    assert_eq!(oep["IPv6Gateway"], "fd00:b1:2::fe", "{oep}");
    let other_ip6 = oep["GlobalIPv6Address"].as_str().unwrap().to_string();
    assert_eq!(other_ip6, "fd00:b1:2::1", "{oep}");
    // The network lists its members with their IPv6 addresses.
    let a = inspect_json(&d, &["network", "inspect", "v6a"]);
    let members: Vec<String> = a["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["IPv6Address"].as_str().unwrap().to_string())
        .collect();
    assert!(
        members.contains(&"fd00:b1:1::99/64".to_string()),
        "{members:?}"
    );
    // Inside: the address, the default route via the gateway, /etc/hosts.
    let routes = d.ok(&["exec", "srv", "cat", "/proc/net/ipv6_route"]);
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("00000000000000000000000000000000 00 ")
                && l.contains("fd0000b1000100000000000000000001")),
        "{routes}"
    );
    let hosts = d.ok(&["exec", "srv", "cat", "/etc/hosts"]);
    assert!(hosts.contains("fd00:b1:1::2\t"), "{hosts}");

    // By name (AAAA from the embedded DNS server) and over IPv6, from the fixed address.
    let out = exec_until(&d, "cli", CLIENT, "srv", |o| o.lines().count() == 2);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "fd00:b1:1::2", "{out}");
    assert_eq!(lines[1], "fd00:b1:1::99", "the server saw: {out}");
    // The server on the other network is up (seen from its own network)...
    d.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "v6b",
        "debian-python:bookworm",
        "sleep",
        "600",
    ]);
    let out = exec_until(&d, "peer", CLIENT, "other", |o| o.lines().count() == 2);
    assert!(out.starts_with(&other_ip6), "{out}");
    // ...but neither its name nor its address reaches it from v6a, though the host routes
    // IPv6 (forwarding is on, for the non-internal networks): barge's ip6 table drops it.
    assert_eq!(sysctl(FORWARDING), "1");
    let o = d.barge(&["exec", "cli", "python3", "-c", CLIENT, "other"]);
    assert!(
        !o.status.success(),
        "other resolved from v6a: {}",
        stdout(&o)
    );
    let out = d.ok(&["exec", "cli", "python3", "-c", PROBE, &other_ip6]);
    assert!(out.starts_with("blocked"), "{out}");
    let rules = nft6(&table).expect("an ip6 table");
    assert!(
        rules.contains(&br_a) && rules.contains(&br_b) && rules.contains("drop"),
        "{rules}"
    );
    assert!(rules.contains("fd00:b1:1::/64"), "{rules}");
    // Connected to v6b as well, cli reaches it.
    d.ok(&["network", "connect", "v6b", "cli"]);
    let out = exec_until(&d, "cli", PROBE, &other_ip6, |o| o.starts_with("open"));
    assert!(out.starts_with("open"), "{out}");

    // A port published on every address answers on the host's IPv6 address too (DNAT in
    // the ip6 table), and still on IPv4.
    let host6 = host_ipv6();
    let seen = read_line(&format!("[{host6}]:18196"));
    assert_eq!(seen, host6, "the server saw the host's address");
    assert!(!read_line("127.0.0.1:18196").is_empty());

    // IPAM survives a daemon crash: srv keeps ::2, the next container gets ::3.
    let mut d = d;
    d.restart();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "third",
        "--network",
        "v6a",
        "debian-python:bookworm",
        "sleep",
        "600",
    ]);
    assert_eq!(
        d.inspect(
            "third",
            "{{.NetworkSettings.Networks.v6a.GlobalIPv6Address}}"
        ),
        "fd00:b1:1::3"
    );
    let out = exec_until(&d, "third", CLIENT, "srv", |o| o.lines().count() == 2);
    assert_eq!(out.lines().nth(1), Some("fd00:b1:1::3"), "{out}");
    let o = d.barge(&[
        "run",
        "--rm",
        "--network",
        "v6a",
        "--ip6",
        "fd00:b1:1::2",
        "busybox:1.35",
        "true",
    ]);
    assert!(!o.status.success(), "an address in use was handed out");

    // Cleanup: the networks' bridges and the ip6 table go with them; once the daemon stops
    // the forwarding sysctl is back as it was.
    d.ok(&["rm", "-f", "srv", "cli", "other", "peer", "third"]);
    d.ok(&["network", "rm", "v6a", "v6b"]);
    for br in [&br_a, &br_b] {
        assert!(
            !std::path::Path::new("/sys/class/net").join(br).exists(),
            "{br}"
        );
    }
    assert!(nft6(&table).is_none(), "ip6 table left: {:?}", nft6(&table));
    // Another daemon relying on IPv6 forwarding keeps it on when this one stops; the last
    // one to stop restores it.
    let d2 = Daemon::start();
    d2.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:b1:6::/64",
        "v6c",
    ]);
    drop(d);
    assert_eq!(sysctl(FORWARDING), "1", "turned off under another daemon");
    drop(d2);
    assert_eq!(sysctl(FORWARDING), forwarding_before);
}

#[test]
fn ipv6_network_with_docker_py() {
    let _turn = one_at_a_time();
    let d = Daemon::start();
    d.load_layout();
    let table = table_of(&d);
    let script = format!(
        r#"
import docker, json
from docker.types import IPAMConfig, IPAMPool, EndpointConfig
c = docker.DockerClient(base_url="{host}")
ipam = IPAMConfig(pool_configs=[IPAMPool(subnet="fd00:b1:3::/64", gateway="fd00:b1:3::1")])
net = c.networks.create("pyv6", driver="bridge", enable_ipv6=True, internal=True, ipam=ipam)
print(json.dumps(net.attrs["EnableIPv6"]))
print(json.dumps([x["Subnet"] for x in net.attrs["IPAM"]["Config"]]))
ep = c.api.create_endpoint_config(ipv6_address="fd00:b1:3::42")
cid = c.api.create_container("busybox:1.35", ["sleep", "600"], name="py6",
    networking_config=c.api.create_networking_config({{"pyv6": ep}}))["Id"]
c.api.start(cid)
s = c.containers.get("py6").attrs["NetworkSettings"]["Networks"]["pyv6"]
print(s["GlobalIPv6Address"], s["GlobalIPv6PrefixLen"], s["IPv6Gateway"], s["IPAMConfig"]["IPv6Address"])
# Without an IPv6 subnet: a /64 of the daemon's ULA /48.
auto = c.networks.create("pyv6auto", enable_ipv6=True, internal=True)
print(json.dumps([x["Subnet"] for x in auto.attrs["IPAM"]["Config"]]))
try:
    c.networks.create("pyv6bad", ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="fd00:b1:4::/64")]))
    print("created")
except docker.errors.APIError as e:
    print(e.status_code)
try:
    c.containers.run("busybox:1.35", ["true"], network="pyv6auto", remove=True)
    c.api.connect_container_to_network("py6", "pyv6auto", ipv6_address="fd00:b1:3::43")
    print("connected")
except docker.errors.APIError as e:
    print(e.status_code)
c.containers.get("py6").remove(force=True)
auto.remove()
net.remove()
print(len(c.networks.list(names=["pyv6", "pyv6auto"])))
"#,
        host = d.host
    );
    let out = python(&script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "true", "{out}");
    let subnets: Vec<String> = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(subnets.len(), 2, "{out}");
    assert!(subnets[0].starts_with("10."), "{out}");
    assert_eq!(subnets[1], "fd00:b1:3::/64");
    assert_eq!(
        lines[2], "fd00:b1:3::42 64 fd00:b1:3::1 fd00:b1:3::42",
        "{out}"
    );
    let auto: Vec<String> = serde_json::from_str(lines[3]).unwrap();
    assert_eq!(auto.len(), 2, "{out}");
    assert!(
        auto[1].starts_with("fd") && auto[1].ends_with("::/64"),
        "{out}"
    );
    let ula: std::net::Ipv6Addr = auto[1].trim_end_matches("/64").parse().unwrap();
    assert_eq!(ula.segments()[3], 0, "the first /64 of a /48: {ula}");
    assert_eq!(lines[4], "400", "v6 subnet without EnableIPv6: {out}");
    // An address outside the network's IPv6 subnet is refused.
    assert_eq!(lines[5], "400", "{out}");
    assert_eq!(lines[6], "0", "{out}");
    // Internal networks only: no forwarding change, and no ip6 table once they are gone.
    assert!(nft6(&table).is_none(), "{:?}", nft6(&table));
}

#[test]
fn ipv6_network_with_the_docker_cli() {
    let _turn = one_at_a_time();
    let d = Daemon::start();
    d.load_layout();
    d.docker_ok(&[
        "network",
        "create",
        "--ipv6",
        "--internal",
        "--subnet",
        "fd00:b1:5::/64",
        "--ip-range",
        "fd00:b1:5::100/120",
        "dk6",
    ]);
    assert_eq!(
        d.docker_ok(&["network", "inspect", "-f", "{{.EnableIPv6}}", "dk6"])
            .trim(),
        "true"
    );
    let ranges = d.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}} {{.IPRange}};{{end}}",
        "dk6",
    ]);
    assert!(
        ranges.contains("fd00:b1:5::/64 fd00:b1:5::100/120;"),
        "{ranges}"
    );
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "a6",
        "--network",
        "dk6",
        "busybox:1.35",
        "sleep",
        "600",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "b6",
        "--network",
        "dk6",
        "--ip6",
        "fd00:b1:5::7",
        "busybox:1.35",
        "sleep",
        "600",
    ]);
    let f =
        "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}/{{.GlobalIPv6PrefixLen}}{{end}}";
    // Dynamic addresses come from the --ip-range; --ip6 may be anywhere in the subnet.
    assert_eq!(
        d.docker_ok(&["inspect", "-f", f, "a6"]).trim(),
        "fd00:b1:5::100/64"
    );
    assert_eq!(
        d.docker_ok(&["inspect", "-f", f, "b6"]).trim(),
        "fd00:b1:5::7/64"
    );
    // Inside: the address is on eth0 (busybox's ip), and no default route (internal).
    let addrs = d.docker_ok(&["exec", "a6", "cat", "/proc/net/if_inet6"]);
    assert!(
        addrs.contains("fd0000b1000500000000000000000100"),
        "{addrs}"
    );
    let routes = d.docker_ok(&["exec", "a6", "cat", "/proc/net/ipv6_route"]);
    assert!(
        !routes
            .lines()
            .any(|l| l.starts_with("00000000000000000000000000000000 00 ") && !l.contains(" lo")),
        "{routes}"
    );
    d.docker_ok(&["rm", "-f", "a6", "b6"]);
    d.docker_ok(&["network", "rm", "dk6"]);
}

/// dockerd's `--ipv6 --fixed-cidr-v6` for the default bridge network: `network inspect bridge`
/// shows IPv6 with the subnet, containers on it get addresses from it (the gateway its first)
/// and talk over IPv6; the docker CLI sees the same. Restarted without the flags, the default
/// bridge has no IPv6 any more; with `--ipv6` alone it gets a ULA /64.
#[test]
fn ipv6_on_the_default_bridge() {
    let _turn = one_at_a_time();
    let mut d = Daemon::start_with(&["--ipv6", "--fixed-cidr-v6", "fd00:b1:77::/64"]);
    d.load_layout();
    let net = inspect_json(&d, &["network", "inspect", "bridge"]);
    assert_eq!(net["EnableIPv6"], true, "{net}");
    let configs = net["IPAM"]["Config"].as_array().unwrap();
    assert!(
        configs
            .iter()
            .any(|c| c["Subnet"] == "fd00:b1:77::/64" && c["Gateway"] == "fd00:b1:77::1"),
        "{net}"
    );
    d.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "debian-python:bookworm",
        "python3",
        "-c",
        SERVER,
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "cli",
        "debian-python:bookworm",
        "sleep",
        "600",
    ]);
    let s = inspect_json(&d, &["inspect", "srv"]);
    let ep = &s["NetworkSettings"]["Networks"]["bridge"];
    let srv6 = ep["GlobalIPv6Address"].as_str().unwrap().to_string();
    assert!(srv6.starts_with("fd00:b1:77::"), "{ep}");
    assert_eq!(ep["IPv6Gateway"], "fd00:b1:77::1", "{ep}");
    assert_eq!(
        d.docker_ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.GlobalIPv6Address}}",
            "srv"
        ])
        .trim(),
        srv6
    );
    let out = exec_until(&d, "cli", PROBE, &srv6, |o| o.starts_with("open"));
    assert!(out.starts_with("open"), "{out}");
    d.ok(&["rm", "-f", "srv", "cli"]);

    // Without the flags: no IPv6 on the default bridge.
    d.extra_args.clear();
    d.restart();
    let net = inspect_json(&d, &["network", "inspect", "bridge"]);
    assert_eq!(net["EnableIPv6"], false, "{net}");
    // `--ipv6` alone: a ULA /64 of the daemon's.
    d.extra_args = vec!["--ipv6".into()];
    d.restart();
    let net = inspect_json(&d, &["network", "inspect", "bridge"]);
    assert_eq!(net["EnableIPv6"], true, "{net}");
    assert!(
        net["IPAM"]["Config"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["Subnet"]
                .as_str()
                .is_some_and(|s| s.starts_with("fd") && s.ends_with("::/64"))),
        "{net}"
    );
}
