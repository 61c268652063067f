//! The cluster DNS server (what CoreDNS's `kubernetes` plugin answers): names under the
//! cluster domain come from a [`Zone`] the node agent keeps current from Services and
//! EndpointSlices; every other name is forwarded to the node's resolvers (the `nameserver`
//! lines of `/etc/resolv.conf`, as the engine's embedded DNS server forwards).
//!
//! Records (CoreDNS's schema, `kubernetes/dns/docs/specification.md`):
//! - `<svc>.<ns>.svc.<domain>` A: the ClusterIP; for a headless Service the ready endpoints'
//!   addresses;
//! - `<hostname>.<svc>.<ns>.svc.<domain>` A for endpoints with a hostname (StatefulSet pods,
//!   `hostname`/`subdomain`), `<a-b-c-d>.<svc>.<ns>.svc.<domain>` for the others of a headless
//!   Service;
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV for named ports (target the Service's
//!   name, or each endpoint's name for headless Services);
//! - `<svc>.<ns>.svc.<domain>` CNAME for ExternalName Services;
//! - `<a-b-c-d>.<ns>.pod.<domain>` A (and `<dashed IPv6>` AAAA) as CoreDNS's `pods insecure`
//!   (k3s's default Corefile) answers it: the address written in the name, for any address
//!   that parses, in any namespace that exists, without looking for the pod; a name that does
//!   not parse, or a namespace that does not exist, is NXDOMAIN ([`Zone::pod`]).
//!
//! A name under the cluster domain that the zone does not have is NXDOMAIN (authoritative,
//! with the zone's SOA), never forwarded.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::NetworkError;

/// CoreDNS's default TTL for cluster records.
const TTL: u32 = 5;

/// One record of the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneRecord {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// priority, weight, port, target (a name in the zone).
    Srv(u16, u16, u16, String),
    Cname(String),
}

/// The cluster's names: lower-case FQDN without the trailing dot → records.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    pub records: HashMap<String, Vec<ZoneRecord>>,
    /// The cluster's namespaces (the pod records of the others are NXDOMAIN).
    pub namespaces: HashSet<String>,
}

/// What [`Zone::pod`] makes of a name under `pod.<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodName {
    /// `<dashed address>.<ns>.pod.<domain>` in an existing namespace: that address.
    Address(IpAddr),
    /// `pod.<domain>` or `<ns>.pod.<domain>` of an existing namespace: the name exists, with
    /// no records (NODATA).
    Empty,
    /// Anything else under `pod.<domain>`: NXDOMAIN.
    Missing,
}

impl Zone {
    /// An empty zone for `domain`.
    pub fn new(domain: &str) -> Zone {
        Zone {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            records: HashMap::new(),
            namespaces: HashSet::new(),
        }
    }

    /// A pod name as CoreDNS's `kubernetes` plugin reads it in `pods insecure` mode
    /// (`findPods`): `name` (lower-case, no trailing dot) under `pod.<domain>`, its first label
    /// the address with `-` for `.` when it has exactly three dashes and no `--` (IPv4), else
    /// with `-` for `:` (IPv6); `None` when `name` is not under `pod.<domain>`.
    pub fn pod(&self, name: &str) -> Option<PodName> {
        let apex = format!("pod.{}", self.domain);
        if name == apex {
            return Some(PodName::Empty);
        }
        let rest = name.strip_suffix(&format!(".{apex}"))?;
        let labels: Vec<&str> = rest.split('.').collect();
        let exists = |ns: &str| self.namespaces.contains(ns);
        Some(match labels[..] {
            [ns] if exists(ns) => PodName::Empty,
            [pod, ns] if exists(ns) => {
                let text = if pod.matches('-').count() == 3 && !pod.contains("--") {
                    pod.replace('-', ".")
                } else {
                    pod.replace('-', ":")
                };
                match text.parse::<IpAddr>() {
                    Ok(ip) => PodName::Address(ip),
                    Err(_) => PodName::Missing,
                }
            }
            _ => PodName::Missing,
        })
    }

    /// Adds `rec` to `name` (lower-cased; duplicates ignored).
    pub fn add(&mut self, name: &str, rec: ZoneRecord) {
        let v = self
            .records
            .entry(name.trim_end_matches('.').to_ascii_lowercase())
            .or_default();
        if !v.contains(&rec) {
            v.push(rec);
        }
    }

    fn in_zone(&self, name: &str) -> bool {
        name == self.domain || name.ends_with(&format!(".{}", self.domain))
    }
}

/// What to do with a query.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Reply(Vec<u8>),
    Forward,
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).ok()
}

/// Answers `query` from `zone`, or says it must be forwarded.
pub fn answer(zone: &Zone, query: &[u8]) -> Answer {
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
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if !zone.in_zone(&name) {
        return Answer::Forward;
    }
    resp.metadata.authoritative = true;
    let qtype = q.query_type();
    let pod_records: Vec<ZoneRecord>;
    let recs = match zone.pod(&name) {
        None => zone.records.get(&name),
        Some(PodName::Missing) => None,
        Some(PodName::Empty) => {
            pod_records = Vec::new();
            Some(&pod_records)
        }
        Some(PodName::Address(ip)) => {
            pod_records = vec![match ip {
                IpAddr::V4(ip) => ZoneRecord::A(ip),
                IpAddr::V6(ip) => ZoneRecord::Aaaa(ip),
            }];
            Some(&pod_records)
        }
    };
    let mut answered = false;
    for r in recs.into_iter().flatten() {
        let data = match (qtype, r) {
            (RecordType::A | RecordType::ANY, ZoneRecord::A(ip)) => RData::A(A(*ip)),
            (RecordType::AAAA | RecordType::ANY, ZoneRecord::Aaaa(ip)) => RData::AAAA(AAAA(*ip)),
            (RecordType::SRV | RecordType::ANY, ZoneRecord::Srv(p, w, port, target)) => {
                let Some(t) = fqdn(target) else { continue };
                RData::SRV(SRV::new(*p, *w, *port, t))
            }
            (_, ZoneRecord::Cname(target)) => {
                let Some(t) = fqdn(target) else { continue };
                RData::CNAME(CNAME(t))
            }
            _ => continue,
        };
        answered = true;
        resp.add_answer(Record::from_rdata(q.name().clone(), TTL, data));
    }
    // SRV answers carry the targets' addresses (CoreDNS's additional section).
    if answered && qtype == RecordType::SRV {
        for r in recs.into_iter().flatten() {
            if let ZoneRecord::Srv(_, _, _, target) = r {
                for t in zone.records.get(target).into_iter().flatten() {
                    if let (ZoneRecord::A(ip), Some(n)) = (t, fqdn(target)) {
                        resp.add_additional(Record::from_rdata(n, TTL, RData::A(A(*ip))));
                    }
                }
            }
        }
    }
    if !answered {
        // NXDOMAIN unless the name exists (with other types) or has names below it.
        let exists = recs.is_some()
            || zone
                .records
                .keys()
                .any(|k| k.ends_with(&format!(".{name}")));
        if !exists {
            resp.metadata.response_code = ResponseCode::NXDomain;
        }
        if let (Some(z), Some(m), Some(r)) = (
            fqdn(&zone.domain),
            fqdn(&format!("ns.dns.{}", zone.domain)),
            fqdn(&format!("hostmaster.{}", zone.domain)),
        ) {
            let soa = SOA::new(m, r, 1, 7200, 1800, 86400, TTL);
            resp.add_authority(Record::from_rdata(z, TTL, RData::SOA(soa)));
        }
    }
    Answer::Reply(resp.to_vec().unwrap_or_default())
}

async fn resolve(zone: &RwLock<Zone>, query: &[u8]) -> Vec<u8> {
    let a = {
        let z = zone.read().unwrap_or_else(|e| e.into_inner());
        answer(&z, query)
    };
    match a {
        Answer::Reply(r) => r,
        Answer::Forward => match crate::dns::forward(query, Vec::new()).await {
            Some(r) => r,
            None => crate::dns::servfail(query),
        },
    }
}

/// A socket of `ty` bound to `addr` with `IP_FREEBIND` (the address may not exist yet: the
/// pod bridge gets it with the first pod).
fn bind_freebind(
    addr: SocketAddr,
    ty: nix::sys::socket::SockType,
) -> Result<std::os::fd::OwnedFd, NetworkError> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag};
    use std::os::fd::AsRawFd;
    let io = |what: &str, source: std::io::Error| NetworkError::Io {
        what: format!("cluster DNS {what} {addr}"),
        source,
    };
    let SocketAddr::V4(v4) = addr else {
        return Err(NetworkError::Invalid {
            field: "cluster DNS address".into(),
            reason: format!("{addr} is not IPv4"),
        });
    };
    let fd = socket(
        AddressFamily::Inet,
        ty,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| io("socket", e.into()))?;
    let one: libc::c_int = 1;
    for (level, name, what) in [
        (libc::SOL_IP, libc::IP_FREEBIND, "IP_FREEBIND"),
        (libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR"),
    ] {
        // SAFETY: `fd` is an open socket we own; the option value is a live c_int of the
        // length given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io(what, std::io::Error::last_os_error()));
        }
    }
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `sa` is a valid sockaddr_in that outlives the call, with its exact length.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io("bind", std::io::Error::last_os_error()));
    }
    Ok(fd)
}

/// Serves `zone` on `addr` (UDP and TCP) until the returned task is aborted. Must be called
/// inside a tokio runtime.
pub fn serve(
    addr: SocketAddr,
    zone: Arc<RwLock<Zone>>,
) -> Result<tokio::task::JoinHandle<()>, NetworkError> {
    use nix::sys::socket::{listen, Backlog, SockType};
    let udp = bind_freebind(addr, SockType::Datagram)?;
    let tcp = bind_freebind(addr, SockType::Stream)?;
    listen(&tcp, Backlog::new(128).unwrap_or(Backlog::MAXCONN)).map_err(|e| NetworkError::Io {
        what: format!("cluster DNS listen {addr}"),
        source: e.into(),
    })?;
    let udp = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(udp)).map_err(|e| {
        NetworkError::Io {
            what: "cluster DNS UDP socket".into(),
            source: e,
        }
    })?;
    let tcp = tokio::net::TcpListener::from_std(std::net::TcpListener::from(tcp)).map_err(|e| {
        NetworkError::Io {
            what: "cluster DNS TCP socket".into(),
            source: e,
        }
    })?;
    Ok(tokio::spawn(async move {
        let z = zone.clone();
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    return;
                };
                let zone = z.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok(len) = s.read_u16().await else { return };
                        let mut q = vec![0u8; len as usize];
                        if s.read_exact(&mut q).await.is_err() {
                            return;
                        }
                        let r = resolve(&zone, &q).await;
                        let mut out = (r.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&r);
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let udp = Arc::new(udp);
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                break;
            };
            let q = buf[..n].to_vec();
            let (udp, zone) = (udp.clone(), zone.clone());
            tokio::spawn(async move {
                let r = resolve(&zone, &q).await;
                if !r.is_empty() {
                    let _ = udp.send_to(&r, peer).await;
                }
            });
        }
        tcp_task.abort();
    }))
}

/// `10.42.0.5` → `10-42-0-5` (CoreDNS's endpoint names).
pub fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(hickory_proto::op::Query::query(
            Name::from_ascii(name).unwrap(),
            ty,
        ));
        m.to_vec().unwrap()
    }

    fn reply(a: Answer) -> Message {
        match a {
            Answer::Reply(r) => Message::from_vec(&r).unwrap(),
            Answer::Forward => panic!("forwarded"),
        }
    }

    #[test]
    fn cluster_names_answered_others_forwarded() {
        let mut z = Zone::new("cluster.local");
        z.add(
            "api.ns.svc.cluster.local",
            ZoneRecord::A("10.43.1.2".parse().unwrap()),
        );
        z.add(
            "_http._tcp.api.ns.svc.cluster.local",
            ZoneRecord::Srv(0, 100, 80, "api.ns.svc.cluster.local".into()),
        );
        z.add(
            "ext.ns.svc.cluster.local",
            ZoneRecord::Cname("example.org".into()),
        );
        let r = reply(answer(
            &z,
            &query("API.ns.svc.cluster.local.", RecordType::A),
        ));
        assert_eq!(r.answers.len(), 1);
        assert!(r.metadata.authoritative);
        let r = reply(answer(
            &z,
            &query("_http._tcp.api.ns.svc.cluster.local.", RecordType::SRV),
        ));
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.additionals.len(), 1);
        let r = reply(answer(
            &z,
            &query("ext.ns.svc.cluster.local.", RecordType::A),
        ));
        assert_eq!(r.answers[0].record_type(), RecordType::CNAME);
        let r = reply(answer(
            &z,
            &query("nope.ns.svc.cluster.local.", RecordType::A),
        ));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        // An existing name without records of the type: NOERROR, no answers.
        let r = reply(answer(
            &z,
            &query("api.ns.svc.cluster.local.", RecordType::AAAA),
        ));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        let r = reply(answer(&z, &query("ns.svc.cluster.local.", RecordType::A)));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            answer(&z, &query("example.org.", RecordType::A)),
            Answer::Forward
        );
        assert_eq!(dashed("10.42.0.5".parse().unwrap()), "10-42-0-5");
    }

    #[test]
    fn pod_names_answer_the_address_they_spell_in_existing_namespaces() {
        let mut z = Zone::new("cluster.local");
        z.namespaces.insert("ns".into());
        let a = |name: &str, ty: RecordType| reply(answer(&z, &query(name, ty)));
        // Any well-formed address, whether a pod has it or not (pods insecure).
        let r = a("10-42-0-5.ns.pod.cluster.local.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].ttl, TTL);
        assert_eq!(r.answers[0].data, RData::A(A("10.42.0.5".parse().unwrap())));
        let r = a("192-0-2-1.NS.pod.cluster.local.", RecordType::A);
        assert_eq!(r.answers[0].data, RData::A(A("192.0.2.1".parse().unwrap())));
        // IPv6: dashes for colons, `--` for `::`.
        let r = a("fd00--a-1.ns.pod.cluster.local.", RecordType::AAAA);
        assert_eq!(
            r.answers[0].data,
            RData::AAAA(AAAA("fd00::a:1".parse().unwrap()))
        );
        // The other type: NODATA.
        let r = a("10-42-0-5.ns.pod.cluster.local.", RecordType::AAAA);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        // The namespace and the apex exist (NODATA); no such namespace, an address that does
        // not parse, or extra labels: NXDOMAIN.
        for name in ["ns.pod.cluster.local.", "pod.cluster.local."] {
            let r = a(name, RecordType::A);
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
            assert!(r.answers.is_empty(), "{name}");
        }
        for name in [
            "10-42-0-5.other.pod.cluster.local.",
            "10-42-0-256.ns.pod.cluster.local.",
            "10-42-0.ns.pod.cluster.local.",
            "web-0.ns.pod.cluster.local.",
            "a.10-42-0-5.ns.pod.cluster.local.",
        ] {
            let r = a(name, RecordType::A);
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{name}");
        }
        assert_eq!(
            z.pod("1-2-3-4.ns.pod.cluster.local"),
            Some(PodName::Address("1.2.3.4".parse().unwrap()))
        );
        assert_eq!(z.pod("1-2-3-4.ns.svc.cluster.local"), None);
    }
}
