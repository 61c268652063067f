//! End-to-end: two daemons with their own `--data-root`/`--exec-root` on one host (as dockerd
//! allows) keep out of each other's way: each has its own default bridge and nftables table,
//! so one's start-up reconcile never takes the other's veths for stale links; and a daemon
//! told to use a bridge another daemon holds refuses to start, naming `--bridge`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The host ends of the veths enslaved to `bridge`.
fn ports(bridge: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(format!("/sys/class/net/{bridge}/brif")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The default bridge a daemon in `d.dir` gets without `--bridge`.
fn default_bridge(d: &Daemon) -> String {
    barge_network::NetworkConfig::new(d.dir.join("data"), d.dir.join("run")).bridge
}

/// The host reaches the container's HTTP server on `ip:8000` through the bridge (retrying
/// while the server starts).
fn pings(ip: &str) -> bool {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("{ip}:8000").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            if out.starts_with(b"HTTP/1.0 200") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Starts a container serving HTTP on port 8000 and returns its address.
fn sleeper(d: &Daemon, name: &str) -> String {
    d.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "debian-python:bookworm",
        "python3",
        "-m",
        "http.server",
        "-d",
        "/etc",
        "8000",
    ]);
    d.inspect(name, "{{.NetworkSettings.IPAddress}}")
}

#[test]
fn two_daemons_keep_their_own_bridges_across_restarts() {
    let x = std::process::id() % 250;
    let mut a = Daemon::start_with(&["--bip", &format!("10.196.{x}.1/24")]);
    let mut b = Daemon::start_with(&["--bip", &format!("10.197.{x}.1/24")]);
    let (ba, bb) = (default_bridge(&a), default_bridge(&b));
    assert_ne!(ba, bb, "each exec root has its own default bridge");
    assert!(ba.starts_with("barge-") && ba.len() <= 15, "{ba}");
    a.load_layout();
    b.load_layout();
    let ip_a = sleeper(&a, "on-a");
    let ip_b = sleeper(&b, "on-b");
    assert!(ip_a.starts_with(&format!("10.196.{x}.")), "{ip_a}");
    assert!(ip_b.starts_with(&format!("10.197.{x}.")), "{ip_b}");
    let (pa, pb) = (ports(&ba), ports(&bb));
    assert_eq!(pa.len(), 1, "{pa:?}");
    assert_eq!(pb.len(), 1, "{pb:?}");
    assert!(pings(&ip_a) && pings(&ip_b));
    let tables = String::from_utf8_lossy(
        &Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for d in [&a, &b] {
        let t = barge_network::NetworkConfig::new(d.dir.join("data"), d.dir.join("run")).table;
        assert!(tables.contains(&format!("ip {t}\n")), "{t} in {tables}");
    }

    // B restarts (crash + start-up reconcile): A's container keeps its link and network.
    b.restart();
    b.wait_for("b's reconcile", 10, || {
        b.barge(&["ps", "-q"]).status.success()
    });
    assert_eq!(ports(&ba), pa, "a's veth is still on a's bridge");
    assert!(pings(&ip_a), "a's container still answers");
    assert_eq!(ports(&bb), pb, "b kept its own container's link");
    assert!(pings(&ip_b));
    // And the other way round.
    a.restart();
    a.wait_for("a's reconcile", 10, || {
        a.barge(&["ps", "-q"]).status.success()
    });
    assert_eq!(ports(&bb), pb);
    assert!(
        pings(&ip_b),
        "b's container still answers after a's restart"
    );
    assert!(pings(&ip_a));
    // Each container still reaches its own gateway from inside.
    for (d, name) in [(&a, "on-a"), (&b, "on-b")] {
        let out = d.ok(&["exec", name, "cat", "/sys/class/net/eth0/operstate"]);
        assert_eq!(out.trim(), "up");
    }
}

#[test]
fn a_daemon_refuses_a_bridge_another_daemon_holds() {
    let x = std::process::id() % 250;
    let a = Daemon::start_with(&["--bip", &format!("10.195.{x}.1/24")]);
    let bridge = default_bridge(&a);
    // A second daemon explicitly on the same bridge: refused before touching anything.
    let dir = std::env::temp_dir().join(format!("be-share-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = format!("unix://{}", dir.join("barge.sock").display());
    let mut child = Command::new(BARGE)
        .arg("daemon")
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("run"))
        .args(["-H", &sock, "--bridge", &bridge])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let status = status.expect("the second daemon must refuse to start");
    assert!(!status.success());
    assert!(
        err.contains(&bridge) && err.contains("--bridge"),
        "message names the bridge and the flag: {err}"
    );
    // The first daemon is unharmed.
    a.ok(&["ps"]);
}
