//! The userland proxy of published ports on IPv6, as dockerd's `docker-proxy`: a port
//! published on every address (`-p 8080:80`) is also bound on `[::]` (dockerd ≥ 20.10 reports
//! it as a second binding, `{"HostIp": "::", "HostPort": "8080"}`, and `docker ps` shows
//! `0.0.0.0:8080->80/tcp, :::8080->80/tcp`), so `curl http://[::1]:8080/` and clients that
//! resolve `localhost` to `::1` first reach the container, whose address is IPv4. nftables
//! cannot translate between families, hence a proxy.
//!
//! The listeners are opened when the sandbox is made (a taken port fails the container's start
//! with docker-proxy's message) and served on the network thread that also runs the embedded
//! DNS server ([`crate::dns`]). TCP connections are spliced both ways; UDP keeps one
//! connected socket per client for [`UDP_IDLE`] as docker-proxy does.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn6};

use crate::error::NetworkError;

/// How long a UDP client's flow lives without traffic (docker-proxy's `UDPConnTrackTimeout`).
pub const UDP_IDLE: Duration = Duration::from_secs(90);

/// One bound listener and where its traffic goes.
#[derive(Debug)]
pub(crate) enum Forward {
    Tcp(TcpListener, SocketAddr),
    Udp(UdpSocket, SocketAddr),
}

/// Whether this host can bind IPv6 sockets at all (IPv6 disabled at boot or by sysctl: no).
/// Probed once per process (a socket opened and closed), then cached.
pub fn ipv6_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::path::Path::new("/proc/net/if_inet6").exists()
            && socket::socket(
                AddressFamily::Inet6,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .is_ok()
    })
}

/// A socket bound to `[ip]:port` for IPv6 only (the IPv4 side of the port is nftables'), as
/// a listener for TCP.
fn bind6(proto: &str, ip: Ipv6Addr, port: u16) -> nix::Result<OwnedFd> {
    let ty = if proto == "udp" {
        SockType::Datagram
    } else {
        SockType::Stream
    };
    let fd = socket::socket(AddressFamily::Inet6, ty, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    if ty == SockType::Stream {
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn6::from(SocketAddrV6::new(ip, port, 0, 0)),
    )?;
    if ty == SockType::Stream {
        socket::listen(&fd, Backlog::MAXCONN)?;
    }
    Ok(fd)
}

/// Whether `[ip]:port` is free for `proto` on IPv6.
pub(crate) fn port_free6(proto: &str, ip: Ipv6Addr, port: u16) -> bool {
    bind6(proto, ip, port).is_ok()
}

/// Binds the proxy of `[ip]:port`/`proto` towards `target`.
///
/// Errors: [`NetworkError::Conflict`] with docker-proxy's words when the port is taken.
pub(crate) fn bind(
    proto: &str,
    ip: Ipv6Addr,
    port: u16,
    target: SocketAddr,
) -> Result<Forward, NetworkError> {
    let fd = bind6(proto, ip, port).map_err(|e| {
        NetworkError::Conflict(format!(
            "driver failed programming external connectivity: Error starting userland proxy: \
             listen {proto}6 [{ip}]:{port}: bind: {}",
            std::io::Error::from(e)
                .to_string()
                .split(" (os error")
                .next()
                .unwrap_or_default()
                .to_lowercase()
        ))
    })?;
    Ok(match proto {
        "udp" => Forward::Udp(UdpSocket::from(fd), target),
        _ => Forward::Tcp(TcpListener::from(fd), target),
    })
}

/// Serves one forward until its task is aborted (the sandbox goes).
pub(crate) async fn serve(f: Forward) {
    match f {
        Forward::Tcp(l, target) => {
            let _ = l.set_nonblocking(true);
            let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                return;
            };
            serve_tcp(l, target).await;
        }
        Forward::Udp(s, target) => {
            let _ = s.set_nonblocking(true);
            let Ok(s) = tokio::net::UdpSocket::from_std(s) else {
                return;
            };
            serve_udp(Arc::new(s), target).await;
        }
    }
}

async fn serve_tcp(l: tokio::net::TcpListener, target: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

async fn serve_udp(s: Arc<tokio::net::UdpSocket>, target: SocketAddr) {
    let mut flows: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
    let (gone_tx, mut gone_rx) = tokio::sync::mpsc::unbounded_channel::<SocketAddr>();
    let mut buf = vec![0u8; 65535];
    loop {
        tokio::select! {
            Some(client) = gone_rx.recv() => {
                flows.remove(&client);
            }
            r = s.recv_from(&mut buf) => {
                let Ok((n, client)) = r else { continue };
                let flow = match flows.get(&client) {
                    Some(f) => f.clone(),
                    None => {
                        let Ok(up) = tokio::net::UdpSocket::bind(("0.0.0.0", 0)).await else {
                            continue;
                        };
                        if up.connect(target).await.is_err() {
                            continue;
                        }
                        let up = Arc::new(up);
                        flows.insert(client, up.clone());
                        tokio::spawn(reply(up.clone(), s.clone(), client, gone_tx.clone()));
                        up
                    }
                };
                let _ = flow.send(&buf[..n]).await;
            }
        }
    }
}

/// Copies a UDP flow's replies back to its client until [`UDP_IDLE`] passes without one.
async fn reply(
    up: Arc<tokio::net::UdpSocket>,
    down: Arc<tokio::net::UdpSocket>,
    client: SocketAddr,
    gone: tokio::sync::mpsc::UnboundedSender<SocketAddr>,
) {
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, up.recv(&mut buf)).await {
        let _ = down.send_to(&buf[..n], client).await;
    }
    let _ = gone.send(client);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn tcp_on_ipv6_loopback_reaches_an_ipv4_target() {
        if !ipv6_available() {
            panic!("this test needs IPv6 on the host (it is on CI's machines)");
        }
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = backend.local_addr().unwrap();
        let f = bind("tcp", Ipv6Addr::LOCALHOST, 0, target).unwrap();
        let Forward::Tcp(l, _) = &f else { panic!() };
        let port = l.local_addr().unwrap().port();
        assert!(
            !port_free6("tcp", Ipv6Addr::LOCALHOST, port),
            "the proxy holds it"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = backend.accept().unwrap();
            let mut b = [0u8; 5];
            c.read_exact(&mut b).unwrap();
            c.write_all(&b.map(|x| x.to_ascii_uppercase())).unwrap();
        });
        let client = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(("::1", port)).unwrap();
            c.write_all(b"hello").unwrap();
            let mut b = [0u8; 5];
            c.read_exact(&mut b).unwrap();
            b
        });
        rt.block_on(async {
            let t = tokio::spawn(serve(f));
            let got = tokio::task::spawn_blocking(move || client.join().unwrap())
                .await
                .unwrap();
            assert_eq!(&got, b"HELLO");
            t.abort();
        });
        server.join().unwrap();
    }

    #[test]
    fn udp_replies_return_to_their_client() {
        if !ipv6_available() {
            panic!("this test needs IPv6 on the host (it is on CI's machines)");
        }
        let backend = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = backend.local_addr().unwrap();
        let f = bind("udp", Ipv6Addr::LOCALHOST, 0, target).unwrap();
        let Forward::Udp(s, _) = &f else { panic!() };
        let port = s.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            let mut b = [0u8; 16];
            let (n, from) = backend.recv_from(&mut b).unwrap();
            backend.send_to(&b[..n], from).unwrap();
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = tokio::spawn(serve(f));
            let c = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
            c.connect(("::1", port)).await.unwrap();
            c.send(b"ping").await.unwrap();
            let mut b = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(10), c.recv(&mut b))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&b[..n], b"ping");
            t.abort();
        });
        echo.join().unwrap();
    }
}
