//! End-to-end networking: user-defined networks with DNS and isolation, published ports
//! (TCP/UDP, `-p`/`-P`, `port`), reconcile after `kill -9` of the daemon, and a clean kernel
//! once everything is removed — driven by the barge CLI and the stock docker CLI.
//!
//! (Debian's busybox 1.35 `wget -T` crashes, so timeouts come from `busybox timeout`, under
//! `--init`: as PID 1 the timed-out process would ignore the SIGTERM.)
//!
//! Network rule: every connection goes to 127.0.0.1, the host's own addresses, or addresses
//! inside namespaces these tests create. Nothing is routed beyond the machine.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// `GET /` over plain TCP; the body on success.
fn http_get(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

/// Retries `http_get` until the app answers (it needs a moment to start).
fn http_get_wait(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match http_get(addr) {
            Ok(b) if !b.is_empty() => return b,
            r if Instant::now() > deadline => panic!("{addr} never answered: {r:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The host's first non-loopback IPv4 address.
fn host_ip() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .filter(|l| !l.contains(" bb") && !l.contains(" br-"))
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|x| *x == "inet")?;
            Some(f[i + 1].split('/').next()?.to_string())
        })
        .expect("a global IPv4 address on the host")
}

fn nft_table(d: &Daemon) -> String {
    let table = barge_network::NetworkConfig::new(d.dir.join("data"), d.dir.join("run")).table;
    let out = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bridge_ports(bridge: &str) -> Vec<String> {
    std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn bridge_of(d: &Daemon, net: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["network", "inspect", net])).unwrap();
    let opts = &v[0]["Options"]["com.docker.network.bridge.name"];
    match opts.as_str() {
        Some(b) => b.to_string(),
        None => format!("br-{}", &v[0]["Id"].as_str().unwrap()[..12]),
    }
}

#[test]
fn user_networks_resolve_names_and_are_isolated() {
    let d = Daemon::start();
    d.load_layout();
    d.ok(&["network", "create", "front"]);
    d.ok(&["network", "create", "--subnet", "10.198.7.0/24", "back"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "api",
        "--network",
        "front",
        "--network-alias",
        "model",
        "multilayer:1",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "back",
        "multilayer:1",
    ]);
    let api_ip = d.inspect("api", "{{.NetworkSettings.Networks.front.IPAddress}}");
    let db_ip = d.inspect("db", "{{.NetworkSettings.Networks.back.IPAddress}}");
    assert!(db_ip.starts_with("10.198.7."), "{db_ip}");
    // The app needs a moment; wait from a client on the same network.
    let fetch = |net: &str, url: &str| {
        d.barge(&[
            "run",
            "--rm",
            "--init",
            "--network",
            net,
            "busybox:1.35",
            "busybox",
            "timeout",
            "3",
            "busybox",
            "wget",
            "-qO-",
            url,
        ])
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = fetch("front", "http://api:8080/");
        if o.status.success() {
            assert!(stdout(&o).contains("\"status\": \"ok\""), "{}", stdout(&o));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "api never answered by name: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        fetch("front", "http://model:8080/").status.success(),
        "alias"
    );
    let resolv = d.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "busybox:1.35",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    // Control: on its own network db answers by name and address.
    d.wait_for("db on back", 20, || {
        fetch("back", "http://db:8080/").status.success()
    });
    assert!(fetch("back", &format!("http://{db_ip}:8080/"))
        .status
        .success());
    // Names of other networks do not resolve...
    let o = d.barge(&[
        "run",
        "--rm",
        "--network",
        "back",
        "busybox:1.35",
        "busybox",
        "nslookup",
        "api",
    ]);
    assert!(
        !o.status.success(),
        "api resolved from back: {}",
        stdout(&o)
    );
    // ...and addresses of other networks are unreachable, both ways.
    assert!(!fetch("back", &format!("http://{api_ip}:8080/"))
        .status
        .success());
    assert!(!fetch("front", &format!("http://{db_ip}:8080/"))
        .status
        .success());
    let probe = format!(
        "import socket\ntry:\n socket.create_connection(('{db_ip}', 8080), 2); print('open')\nexcept OSError: print('blocked')"
    );
    assert_eq!(
        d.ok(&["exec", "api", "python3", "-c", &probe]).trim(),
        "blocked"
    );
    // The default bridge has no embedded DNS.
    let o = d.barge(&[
        "run",
        "--rm",
        "busybox:1.35",
        "busybox",
        "nslookup",
        "api",
        "127.0.0.11",
    ]);
    assert!(!o.status.success());
    // connect/disconnect a running container.
    d.ok(&["network", "connect", "back", "api"]);
    let o = d.ok(&[
        "exec",
        "api",
        "python3",
        "-c",
        &probe.replace("'{db_ip}'", "'db'"),
    ]);
    assert_eq!(o.trim(), "open", "after connect");
    d.ok(&["network", "disconnect", "back", "api"]);
    assert_eq!(
        d.ok(&["exec", "api", "python3", "-c", &probe]).trim(),
        "blocked"
    );
    // A network in use cannot be removed.
    let o = d.barge(&["network", "rm", "front"]);
    assert!(
        !o.status.success() && stderr(&o).contains("active endpoints"),
        "{}",
        stderr(&o)
    );
    d.ok(&["rm", "-f", "api", "db"]);
    d.ok(&["network", "rm", "front", "back"]);
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        ["bridge", "host", "none"]
    );
}

#[test]
fn published_ports_tcp_udp_and_publish_all() {
    let d = Daemon::start();
    d.load_layout();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "18080:8080",
        "multilayer:1",
    ]);
    let body = http_get_wait("127.0.0.1:18080");
    assert!(body.contains("\"status\": \"ok\""), "{body}");
    // The host's other address, and from a container through that address.
    let ip = host_ip();
    assert!(http_get(&format!("{ip}:18080")).unwrap().contains("ok"));
    let o = d.ok(&[
        "run",
        "--rm",
        "busybox:1.35",
        "busybox",
        "timeout",
        "5",
        "busybox",
        "wget",
        "-qO-",
        &format!("http://{ip}:18080/"),
    ]);
    assert!(o.contains("\"status\": \"ok\""), "{o}");
    // Every address means IPv6 too, as dockerd ≥ 20.10: `::` is a second binding, served by
    // the userland proxy, so [::1] reaches the container.
    assert_eq!(
        d.ok(&["port", "web"]).trim(),
        "8080/tcp -> 0.0.0.0:18080\n8080/tcp -> [::]:18080"
    );
    assert_eq!(
        d.docker_ok(&["port", "web"]).trim(),
        "8080/tcp -> 0.0.0.0:18080\n8080/tcp -> [::]:18080"
    );
    let body = http_get_wait("[::1]:18080");
    assert!(body.contains("\"status\": \"ok\""), "{body}");
    // Traffic shows in stats (barge and docker CLIs render `networks`).
    for out in [
        d.ok(&["stats", "--no-stream", "--format", "{{.NetIO}}", "web"]),
        d.docker_ok(&["stats", "--no-stream", "--format", "{{.NetIO}}", "web"]),
    ] {
        assert!(
            !out.trim().starts_with("0B / 0B") && out.contains(" / "),
            "{out}"
        );
    }
    // A taken host port is refused with docker's message.
    let o = d.barge(&["run", "-d", "-p", "18080:8080", "multilayer:1"]);
    assert!(
        !o.status.success() && stderr(&o).contains("port is already allocated"),
        "{}",
        stderr(&o)
    );
    // -P: a random port for every EXPOSEd port, reported by `port`.
    d.ok(&["run", "-d", "--name", "webp", "-P", "multilayer:1"]);
    let p = d.ok(&["port", "webp", "8080"]);
    let port: u16 = p
        .lines()
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(port >= 49153, "{p}");
    assert_eq!(
        p.trim(),
        format!("0.0.0.0:{port}\n[::]:{port}"),
        "one port for both"
    );
    assert!(http_get_wait(&format!("127.0.0.1:{port}")).contains("ok"));
    assert!(http_get_wait(&format!("[::1]:{port}")).contains("ok"));
    let ps = d.ok(&["ps", "--filter", "name=webp", "--format", "{{.Ports}}"]);
    assert_eq!(
        ps.trim(),
        format!("0.0.0.0:{port}->8080/tcp, [::]:{port}->8080/tcp")
    );
    // UDP: a datagram to the published port reaches the container, and the answer comes back.
    let server = "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('', 5353))\nwhile True:\n d,a=s.recvfrom(100)\n print(d.decode(), flush=True)\n s.sendto(b'pong:'+d, a)";
    d.ok(&[
        "run",
        "-d",
        "--name",
        "udp",
        "-p",
        "127.0.0.1:15353:5353/udp",
        "--entrypoint",
        "python3",
        "multilayer:1",
        "-c",
        server,
    ]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = String::new();
    for _ in 0..60 {
        sock.send_to(b"ping", "127.0.0.1:15353").unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            got = String::from_utf8_lossy(&buf[..n]).into_owned();
            break;
        }
    }
    assert_eq!(got, "pong:ping");
    d.wait_for("the datagram in the logs", 10, || {
        d.ok(&["logs", "udp"]).contains("ping")
    });
    // Stopping a container removes its rules.
    assert!(nft_table(&d).contains("dport 18080"));
    d.ok(&["rm", "-f", "web"]);
    assert!(!nft_table(&d).contains("dport 18080"));
    assert!(http_get("127.0.0.1:18080").is_err());
}

#[test]
fn daemon_crash_reconciles_and_nothing_is_left() {
    let mut d = Daemon::start();
    d.load_layout();
    d.ok(&["network", "create", "n1"]);
    d.ok(&["network", "create", "n2"]);
    let httpd = ["busybox", "httpd", "-f", "-p", "8080", "-h", "/etc"];
    let mut a = vec![
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "n1",
        "-p",
        "18091:8080",
        "busybox:1.35",
    ];
    a.extend(httpd);
    d.ok(&a);
    let mut a = vec![
        "run",
        "-d",
        "--name",
        "c2",
        "--network",
        "n2",
        "-p",
        "18092:8080",
        "busybox:1.35",
    ];
    a.extend(httpd);
    d.ok(&a);
    d.ok(&["run", "-d", "--name", "c3", "busybox:1.35", "sleep", "1000"]);
    let (b1, b2) = (bridge_of(&d, "n1"), bridge_of(&d, "n2"));
    let default_bridge = bridge_for_daemon(&d);
    let get = |port: u16| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut s = match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => s,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.write_all(b"GET /hostname HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            return Ok(out);
        }
    };
    assert!(get(18091).unwrap().contains("200 OK"));
    assert!(get(18092).unwrap().contains("200 OK"));
    assert_eq!(bridge_ports(&b1).len(), 1);
    assert_eq!(bridge_ports(&b2).len(), 1);
    let c2_pid: i32 = d.inspect("c2", "{{.State.Pid}}").parse().unwrap();
    let c2_netns = d.inspect("c2", "{{.NetworkSettings.SandboxKey}}");
    assert!(Path::new(&c2_netns).exists());

    // The daemon dies; while it is down, c2 dies too.
    d.kill9();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c2_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    d.restart();
    d.wait_for("c2 exited", 10, || {
        d.inspect("c2", "{{.State.Status}}") == "exited"
    });
    // Exactly what the running containers need: c1's port, link and namespace; none of c2's.
    assert!(get(18091).unwrap().contains("200 OK"), "c1 lost its port");
    let rules = nft_table(&d);
    assert!(rules.contains("dport 18091"), "{rules}");
    assert!(!rules.contains("dport 18092"), "{rules}");
    assert_eq!(bridge_ports(&b1).len(), 1, "c1's veth");
    assert!(bridge_ports(&b2).is_empty(), "c2's veth left behind");
    assert_eq!(bridge_ports(&default_bridge).len(), 1, "c3's veth");
    assert!(!Path::new(&c2_netns).exists(), "c2's namespace left behind");
    // c2 starts again with its network.
    d.ok(&["start", "c2"]);
    assert!(get(18092).unwrap().contains("200 OK"));

    // Remove everything: nothing of barge's is left in the kernel.
    d.ok(&["rm", "-f", "c1", "c2", "c3"]);
    d.ok(&["network", "rm", "n1", "n2"]);
    assert!(!Path::new("/sys/class/net").join(&b1).exists());
    assert!(!Path::new("/sys/class/net").join(&b2).exists());
    let dir = d.dir.clone();
    let table = barge_network::NetworkConfig::new(dir.join("data"), dir.join("run")).table;
    // A graceful stop with no container left removes the default bridge and the table.
    let pid = daemon_pid(&d);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new("/sys/class/net").join(&default_bridge).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!Path::new("/sys/class/net").join(&default_bridge).exists());
    let out = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    assert!(!out.status.success(), "table {table} left behind");
    let links = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for b in [&b1, &b2, &default_bridge] {
        assert!(!links.contains(b.as_str()), "{b} in {links}");
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(dir.to_str().unwrap()),
        "mounts left: {mounts}"
    );
}

fn bridge_for_daemon(d: &Daemon) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&d.ok(&["network", "inspect", "bridge"])).unwrap();
    v[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string()
}

fn daemon_pid(d: &Daemon) -> i32 {
    let dir = d.dir.display().to_string();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains(&dir) && cmd.contains("\0daemon\0") {
                return pid;
            }
        }
    }
    panic!("daemon not found");
}

#[test]
fn docker_cli_networks_and_ports() {
    let d = Daemon::start();
    d.load_layout();
    let id = d.docker_ok(&[
        "network",
        "create",
        "--subnet",
        "10.198.9.0/24",
        "--label",
        "app=demo",
        "dnet",
    ]);
    assert_eq!(id.trim().len(), 64);
    let ls = d.docker_ok(&[
        "network",
        "ls",
        "--filter",
        "label=app=demo",
        "--format",
        "{{.Name}} {{.Driver}}",
    ]);
    assert_eq!(ls.trim(), "dnet bridge");
    let subnet = d.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
        "dnet",
    ]);
    assert_eq!(subnet.trim(), "10.198.9.0/24");
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "dapi",
        "--network",
        "dnet",
        "-p",
        "18093:8080",
        "multilayer:1",
    ]);
    assert!(http_get_wait("127.0.0.1:18093").contains("ok"));
    let o = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "dnet",
        "busybox:1.35",
        "busybox",
        "wget",
        "-qO-",
        "http://dapi:8080/",
    ]);
    assert!(o.contains("\"status\": \"ok\""), "{o}");
    assert_eq!(
        d.docker_ok(&["port", "dapi"]).trim(),
        "8080/tcp -> 0.0.0.0:18093\n8080/tcp -> [::]:18093"
    );
    let ip = d.docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        "dapi",
    ]);
    assert!(ip.trim().starts_with("10.198.9."), "{ip}");
    let members = d.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}}{{end}}",
        "dnet",
    ]);
    assert_eq!(members.trim(), "dapi");
    let ps = d.docker_ok(&["ps", "--format", "{{.Names}} {{.Ports}}"]);
    assert!(
        ps.contains("dapi 0.0.0.0:18093->8080/tcp, [::]:18093->8080/tcp"),
        "{ps}"
    );
    d.docker_ok(&["rm", "-f", "dapi"]);
    d.docker_ok(&["network", "rm", "dnet"]);
    // The bridge driver's MTU option reaches the containers' interfaces (both veth ends).
    d.docker_ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "mtunet",
    ]);
    let mtu = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "mtunet",
        "busybox:1.35",
        "cat",
        "/sys/class/net/eth0/mtu",
    ]);
    assert_eq!(mtu.trim(), "1400");
    let opt = d.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{index .Options \"com.docker.network.driver.mtu\"}}",
        "mtunet",
    ]);
    assert_eq!(opt.trim(), "1400");
    d.docker_ok(&["network", "rm", "mtunet"]);
    d.docker_ok(&["network", "create", "unused1"]);
    let pruned = d.docker_ok(&["network", "prune", "-f"]);
    assert!(pruned.contains("unused1"), "{pruned}");
    let o = d.docker(&["network", "rm", "bridge"]);
    assert!(!o.status.success());
}

#[test]
fn docker_py_network_and_published_port() {
    let d = Daemon::start();
    d.load_layout();
    let script = format!(
        r#"
import docker, time, urllib.request
c = docker.DockerClient(base_url="{host}")
net = c.networks.create("pynet", driver="bridge", labels={{"by": "py"}})
api = c.containers.run("multilayer:1", detach=True, name="pyapi", network="pynet", ports={{"8080/tcp": 18094}})
body = None
for _ in range(100):
    try:
        body = urllib.request.urlopen("http://127.0.0.1:18094/", timeout=2).read().decode()
        break
    except Exception:
        time.sleep(0.1)
print(body)
api.reload()
print(api.ports["8080/tcp"][0]["HostPort"])
print(api.attrs["NetworkSettings"]["Networks"]["pynet"]["IPAddress"])
net.reload()
print(",".join(x.name for x in net.containers))
out = c.containers.run("busybox:1.35", ["busybox", "wget", "-qO-", "http://pyapi:8080/"], network="pynet", remove=True)
print(out.decode())
side = c.containers.run("busybox:1.35", ["busybox", "wget", "-qO-", "http://127.0.0.1:8080/"], network_mode="container:pyapi", remove=True)
print(side.decode())
api.remove(force=True)
net.remove()
print(len(c.networks.list(names=["pynet"])))
"#,
        host = d.host
    );
    let s = python(&script);
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines[0].contains("\"status\": \"ok\""), "{s}");
    assert_eq!(lines[1], "18094");
    assert!(lines[2].starts_with("10."), "{s}");
    assert_eq!(lines[3], "pyapi");
    assert!(lines[4].contains("\"status\": \"ok\""), "by name: {s}");
    assert!(
        lines[5].contains("\"status\": \"ok\""),
        "container: mode: {s}"
    );
    assert_eq!(lines[6], "0");
}

/// A minimal DNS server on `addr`:53 answering every A query with 192.0.2.99 (an address
/// nothing contacts); returns the names it was asked.
fn fake_upstream(
    addr: &str,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let sock = UdpSocket::bind((addr, 53)).expect("bind the fake resolver");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, s) = (asked.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !s.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let q = &buf[..n];
            // Question name (labels from offset 12), then QTYPE/QCLASS.
            let mut i = 12;
            let mut labels = Vec::new();
            while i < n && q[i] != 0 {
                let l = q[i] as usize;
                labels.push(String::from_utf8_lossy(&q[i + 1..i + 1 + l]).into_owned());
                i += l + 1;
            }
            let qend = i + 5;
            a.lock().unwrap().push(labels.join("."));
            let is_a = q[i + 1] == 0 && q[i + 2] == 1;
            let mut r = q[..qend].to_vec();
            r[2] = 0x81;
            r[3] = 0x80;
            r[6] = 0;
            r[7] = u8::from(is_a);
            r[8..12].copy_from_slice(&[0, 0, 0, 0]);
            if is_a {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 99]);
            }
            let _ = sock.send_to(&r, peer);
        }
    });
    (asked, stop)
}

/// Names that are not containers are forwarded to the daemon's resolvers (`--dns`, here a
/// fake one on loopback); single-label unknown names are not.
#[test]
fn other_names_are_forwarded_to_the_upstream_resolver() {
    let (asked, stop) = fake_upstream("127.0.0.153");
    let (own_asked, own_stop) = fake_upstream("127.0.0.154");
    let d = Daemon::start_with(&["--dns", "127.0.0.153"]);
    d.load_layout();
    d.ok(&["network", "create", "fwd"]);
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "fwd",
        "busybox:1.35",
        "busybox",
        "nslookup",
        "-type=a",
        "db.example.test",
    ]);
    assert!(o.contains("192.0.2.99"), "{o}");
    let o = d.barge(&[
        "run",
        "--rm",
        "--network",
        "fwd",
        "busybox:1.35",
        "busybox",
        "nslookup",
        "nosuchcontainer",
    ]);
    assert!(!o.status.success());
    // A container's own --dns wins over the daemon's for its queries (resolv.conf still
    // points at the embedded server).
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "fwd",
        "--dns",
        "127.0.0.154",
        "busybox:1.35",
        "sh",
        "-c",
        "cat /etc/resolv.conf; busybox nslookup -type=a own.example.test",
    ]);
    assert!(
        o.contains("nameserver 127.0.0.11") && o.contains("192.0.2.99"),
        "{o}"
    );
    let bad = d.barge(&["create", "--dns", "not-an-ip", "busybox:1.35"]);
    assert!(!bad.status.success() && stderr(&bad).contains("not-an-ip is not an ip address"));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    own_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let asked = asked.lock().unwrap().clone();
    let own_asked = own_asked.lock().unwrap().clone();
    assert!(asked.iter().any(|n| n == "db.example.test"), "{asked:?}");
    assert!(!asked.iter().any(|n| n == "nosuchcontainer"), "{asked:?}");
    assert!(
        own_asked.iter().any(|n| n == "own.example.test"),
        "{own_asked:?}"
    );
    assert!(!asked.iter().any(|n| n == "own.example.test"), "{asked:?}");
}
