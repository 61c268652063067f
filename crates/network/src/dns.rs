//! The embedded DNS server of user-defined networks, as Docker's: it answers at 127.0.0.11
//! inside each container, resolving the names and aliases of containers that share a
//! network with the asking container, and forwards other names (those with a dot) to the
//! host's resolvers. Single-label names that match no container get NXDOMAIN without being
//! forwarded (they cannot be meaningful to an upstream resolver).
//!
//! One daemon thread (`barge-dns`, its own single-threaded tokio runtime) serves every
//! container (and their IPv6 port proxies, [`crate::proxy`]): the sockets are opened inside each container's namespace (see
//! [`crate::link::dns_sockets`]) and handed to this thread, which itself lives in the host
//! namespace, so forwarding reaches the host's resolvers (even 127.0.0.53).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{rdata::A, rdata::AAAA, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Where containers find the embedded server (Docker's address).
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// TTL of answers about containers (Docker's).
const TTL: u32 = 600;

/// Who can see which names: per container the networks it is on, per network name → addresses.
#[derive(Debug, Default, Clone)]
pub(crate) struct Table {
    pub sandboxes: HashMap<String, Vec<String>>,
    /// Per network: name → addresses (IPv4, and IPv6 on networks with IPv6).
    pub names: HashMap<String, HashMap<String, Vec<IpAddr>>>,
    /// Where other names go (the daemon's `--dns`); empty: the host's resolv.conf.
    pub upstreams: Vec<SocketAddr>,
    /// A container's own resolvers (`--dns`), which win over `upstreams` for its queries.
    pub sandbox_upstreams: HashMap<String, Vec<SocketAddr>>,
    /// Per container: link alias → (network, the linked container's name), visible to that
    /// container only (`EndpointSettings.Links` on a user-defined network).
    pub links: HashMap<String, HashMap<String, (String, String)>>,
}

impl Table {
    /// Addresses of `name` (case-insensitive, trailing dot ignored) visible from container `cid`.
    pub fn lookup(&self, cid: &str, name: &str) -> Vec<IpAddr> {
        let mut key = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some((net, target)) = self.links.get(cid).and_then(|l| l.get(&key)) {
            if let Some(ips) = self.names.get(net).and_then(|m| m.get(target)) {
                return ips.clone();
            }
            key = target.clone();
        }
        let mut out = Vec::new();
        for net in self.sandboxes.get(cid).into_iter().flatten() {
            if let Some(ips) = self.names.get(net).and_then(|m| m.get(&key)) {
                for ip in ips {
                    if !out.contains(ip) {
                        out.push(*ip);
                    }
                }
            }
        }
        out
    }
}

enum Cmd {
    Add(String, UdpSocket, TcpListener),
    /// A container's IPv6 port proxies ([`crate::proxy`]), which share this thread.
    Proxy(String, Vec<crate::proxy::Forward>),
    Remove(String),
}

/// Handle on the DNS thread.
pub(crate) struct Dns {
    tx: mpsc::UnboundedSender<Cmd>,
    pub table: Arc<RwLock<Table>>,
}

/// What to do with a query.
#[derive(Debug, PartialEq)]
pub(crate) enum Answer {
    Reply(Vec<u8>),
    Forward,
}

/// Answers `query` from container `cid` out of `table`, or says it must be forwarded.
pub(crate) fn answer(table: &Table, cid: &str, query: &[u8]) -> Answer {
    let Ok(req) = Message::from_vec(query) else {
        return Answer::Forward;
    };
    let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata = Metadata::response_from_request(&req.metadata);
    resp.metadata.recursion_available = true;
    let Some(q) = req.queries.first() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return Answer::Reply(resp.to_vec().unwrap_or_default());
    };
    resp.add_query(q.clone());
    let name = q.name().to_ascii();
    let ips = table.lookup(cid, &name);
    if ips.is_empty() {
        if name.trim_end_matches('.').contains('.') {
            return Answer::Forward;
        }
        resp.metadata.response_code = ResponseCode::NXDomain;
        return Answer::Reply(resp.to_vec().unwrap_or_default());
    }
    resp.metadata.authoritative = true;
    // A for IPv4, AAAA for IPv6 addresses; a name without an address of the asked family
    // gets NOERROR with no answers, as dockerd's resolver.
    for ip in ips {
        let data = match (q.query_type(), ip) {
            (RecordType::A | RecordType::ANY, IpAddr::V4(a)) => RData::A(A(a)),
            (RecordType::AAAA | RecordType::ANY, IpAddr::V6(a)) => RData::AAAA(AAAA(a)),
            _ => continue,
        };
        resp.add_answer(Record::from_rdata(q.name().clone(), TTL, data));
    }
    Answer::Reply(resp.to_vec().unwrap_or_default())
}

/// The host's resolvers (`nameserver` lines of /etc/resolv.conf).
fn upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver"))
                .then(|| f.next()?.parse::<IpAddr>().ok())
                .flatten()
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

pub(crate) async fn forward(query: &[u8], configured: Vec<SocketAddr>) -> Option<Vec<u8>> {
    let ups = if configured.is_empty() {
        upstreams()
    } else {
        configured
    };
    for up in ups {
        let bind: SocketAddr = if up.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.send_to(query, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65535];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf)).await
        {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

pub(crate) fn servfail(query: &[u8]) -> Vec<u8> {
    match Message::from_vec(query) {
        Ok(req) => {
            let mut resp =
                Message::error_msg(req.metadata.id, OpCode::Query, ResponseCode::ServFail);
            resp.add_queries(req.queries.clone());
            resp.to_vec().unwrap_or_default()
        }
        Err(_) => Vec::new(),
    }
}

async fn resolve(table: &RwLock<Table>, cid: &str, query: &[u8]) -> Vec<u8> {
    let (a, ups) = {
        let t = table.read().unwrap_or_else(|e| e.into_inner());
        let ups = t.sandbox_upstreams.get(cid).unwrap_or(&t.upstreams).clone();
        (answer(&t, cid, query), ups)
    };
    match a {
        Answer::Reply(r) => r,
        Answer::Forward => match forward(query, ups).await {
            Some(r) => r,
            None => servfail(query),
        },
    }
}

async fn serve_udp(sock: tokio::net::UdpSocket, table: Arc<RwLock<Table>>, cid: String) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let q = buf[..n].to_vec();
        let (sock, table, cid) = (sock.clone(), table.clone(), cid.clone());
        tokio::spawn(async move {
            let r = resolve(&table, &cid, &q).await;
            if !r.is_empty() {
                let _ = sock.send_to(&r, peer).await;
            }
        });
    }
}

async fn serve_tcp(l: tokio::net::TcpListener, table: Arc<RwLock<Table>>, cid: String) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let (table, cid) = (table.clone(), cid.clone());
        tokio::spawn(async move {
            loop {
                let Ok(len) = s.read_u16().await else { return };
                let mut q = vec![0u8; len as usize];
                if s.read_exact(&mut q).await.is_err() {
                    return;
                }
                let r = resolve(&table, &cid, &q).await;
                let mut out = (r.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&r);
                if s.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

impl Dns {
    /// Starts the DNS thread.
    pub fn start() -> Dns {
        let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
        let table = Arc::new(RwLock::new(Table::default()));
        let t = table.clone();
        let spawned = std::thread::Builder::new()
            .name("barge-dns".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("dns runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    // Per container: its DNS server's tasks and its proxies' tasks.
                    type Tasks = Vec<tokio::task::JoinHandle<()>>;
                    let mut tasks: HashMap<String, Tasks> = HashMap::new();
                    let mut proxies: HashMap<String, Tasks> = HashMap::new();
                    while let Some(cmd) = rx.recv().await {
                        match cmd {
                            Cmd::Add(cid, udp, tcp) => {
                                let (Ok(udp), Ok(tcp)) = (
                                    tokio::net::UdpSocket::from_std(udp),
                                    tokio::net::TcpListener::from_std(tcp),
                                ) else {
                                    tracing::warn!("dns: cannot register sockets of {cid}");
                                    continue;
                                };
                                let h1 = tokio::spawn(serve_udp(udp, t.clone(), cid.clone()));
                                let h2 = tokio::spawn(serve_tcp(tcp, t.clone(), cid.clone()));
                                if let Some(old) = tasks.insert(cid, vec![h1, h2]) {
                                    old.iter().for_each(|h| h.abort());
                                }
                            }
                            Cmd::Proxy(cid, forwards) => {
                                let hs = forwards
                                    .into_iter()
                                    .map(|f| tokio::spawn(crate::proxy::serve(f)))
                                    .collect();
                                if let Some(old) = proxies.insert(cid, hs) {
                                    old.iter().for_each(|h| h.abort());
                                }
                            }
                            Cmd::Remove(cid) => {
                                let old = [tasks.remove(&cid), proxies.remove(&cid)];
                                old.iter().flatten().flatten().for_each(|h| h.abort());
                            }
                        }
                    }
                });
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the dns thread: {e}");
        }
        Dns { tx, table }
    }

    /// Serves container `cid` on its sockets (replacing earlier ones).
    pub fn add(&self, cid: &str, udp: UdpSocket, tcp: TcpListener) {
        let _ = self.tx.send(Cmd::Add(cid.to_string(), udp, tcp));
    }

    /// Serves container `cid`'s IPv6 port proxies (replacing earlier ones).
    pub(crate) fn proxy(&self, cid: &str, forwards: Vec<crate::proxy::Forward>) {
        let _ = self.tx.send(Cmd::Proxy(cid.to_string(), forwards));
    }

    /// Stops serving container `cid` (its DNS and proxy sockets close).
    pub fn remove(&self, cid: &str) {
        let _ = self.tx.send(Cmd::Remove(cid.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn query(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
        m.to_vec().unwrap()
    }

    fn table() -> Table {
        let mut t = Table::default();
        t.sandboxes.insert("c1".into(), vec!["n1".into()]);
        t.sandboxes.insert("c2".into(), vec!["n2".into()]);
        t.names.insert(
            "n1".into(),
            HashMap::from([(
                "api".to_string(),
                vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))],
            )]),
        );
        t
    }

    #[test]
    fn answers_names_of_own_networks_only() {
        let t = table();
        let Answer::Reply(r) = answer(&t, "c1", &query("API.", RecordType::A)) else {
            panic!("expected a reply");
        };
        let r = Message::from_vec(&r).unwrap();
        assert_eq!(r.metadata.id, 7);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(10, 0, 0, 2))));
        // From another network: NXDOMAIN, not forwarded.
        let Answer::Reply(r) = answer(&t, "c2", &query("api", RecordType::A)) else {
            panic!("expected a reply");
        };
        let r = Message::from_vec(&r).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.answers.is_empty());
        // AAAA of a container: NOERROR, no answers.
        let Answer::Reply(r) = answer(&t, "c1", &query("api", RecordType::AAAA)) else {
            panic!("expected a reply");
        };
        let r = Message::from_vec(&r).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        // A name with an IPv6 address too: AAAA answers it, A gives only the IPv4 one.
        let mut t6 = table();
        t6.names.get_mut("n1").unwrap().insert(
            "v6".into(),
            vec![
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)),
                "fd00:1234::3".parse().unwrap(),
            ],
        );
        let Answer::Reply(r) = answer(&t6, "c1", &query("v6", RecordType::AAAA)) else {
            panic!("expected a reply");
        };
        let r = Message::from_vec(&r).unwrap();
        assert_eq!(r.answers.len(), 1);
        assert_eq!(
            r.answers[0].data,
            RData::AAAA(AAAA("fd00:1234::3".parse().unwrap()))
        );
        let Answer::Reply(r) = answer(&t6, "c1", &query("v6", RecordType::A)) else {
            panic!("expected a reply");
        };
        let r = Message::from_vec(&r).unwrap();
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(10, 0, 0, 3))));
        // Dotted unknown names go upstream.
        assert_eq!(
            answer(&t, "c1", &query("example.com.", RecordType::A)),
            Answer::Forward
        );
    }
}
