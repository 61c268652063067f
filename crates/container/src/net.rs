//! Container-side networking: what a container's sandbox request is (from its network mode,
//! endpoint settings and published ports), and the `/etc/hosts` and `/etc/resolv.conf` it
//! gets — as Docker writes them. The kernel work is `barge-network`'s.

use barge_network::{EndpointRequest, PortBinding, Sandbox, SandboxRequest, DNS_ADDR};

use crate::{Container, HostOptions};

/// How a container is networked (Docker's `NetworkMode`).
#[derive(Debug, PartialEq)]
pub(crate) enum Mode<'a> {
    Host,
    None,
    /// Join another container's namespace.
    Container(&'a str),
    /// Join a sandbox made without a container (`sandbox:<key>`: a pod's, made by the node
    /// agent through `Networks::setup`).
    Sandbox(&'a str),
    /// Own namespace on one or more bridge networks (first = `NetworkMode`).
    Bridge(Vec<EndpointRequest>),
}

/// The network the mode names (`default` is the `bridge` network).
pub(crate) fn primary_network(host: &HostOptions) -> Option<String> {
    match host.network_mode.as_str() {
        "host" | "none" => None,
        m if m.starts_with("container:") || m.starts_with("sandbox:") => None,
        "" | "default" => Some("bridge".into()),
        m => Some(m.to_string()),
    }
}

pub(crate) fn mode(host: &HostOptions) -> Mode<'_> {
    match host.network_mode.as_str() {
        "host" => return Mode::Host,
        "none" => return Mode::None,
        m => {
            if let Some(other) = m.strip_prefix("container:") {
                return Mode::Container(other);
            }
            if let Some(key) = m.strip_prefix("sandbox:") {
                return Mode::Sandbox(key);
            }
        }
    }
    let primary = primary_network(host).unwrap_or_else(|| "bridge".into());
    let mut eps = vec![host
        .endpoints
        .iter()
        .find(|e| e.network == primary || (primary == "bridge" && e.network == "default"))
        .cloned()
        .map(|mut e| {
            e.network = primary.clone();
            e
        })
        .unwrap_or(EndpointRequest {
            network: primary.clone(),
            ..Default::default()
        })];
    for e in &host.endpoints {
        if e.network != primary && !(primary == "bridge" && e.network == "default") {
            eps.push(e.clone());
        }
    }
    Mode::Bridge(eps)
}

/// The sandbox a container needs, or `None` when it does not get its own bridge networking.
pub(crate) fn sandbox_request(c: &Container) -> Option<SandboxRequest> {
    let Mode::Bridge(networks) = mode(&c.options.host) else {
        return None;
    };
    let host = &c.options.host;
    let mut ports = host.port_bindings.clone();
    if host.publish_all_ports {
        for p in &c.config.exposed_ports {
            let (port, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            if !ports
                .iter()
                .any(|b| b.container_port == port && b.proto == proto)
            {
                ports.push(PortBinding {
                    container_port: port,
                    proto: proto.to_string(),
                    host_ip: String::new(),
                    host_port: String::new(),
                });
            }
        }
    }
    Some(SandboxRequest {
        container_id: c.id.clone(),
        name: c.name.clone(),
        networks,
        ports,
        // Validated at create.
        dns: host.dns.iter().filter_map(|d| d.parse().ok()).collect(),
        pod: None,
    })
}

/// Docker's `/etc/hosts`: loopback and IPv6 names, `--add-host` entries, then the container's
/// own address(es) with its hostname (127.0.0.1 without a network of its own).
pub(crate) fn hosts_file(hostname: &str, sb: Option<&Sandbox>, extra_hosts: &[String]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for h in extra_hosts {
        if let Some((name, ip)) = h.split_once(':') {
            s.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    match sb.and_then(|sb| sb.endpoints.first()) {
        Some(ep) => {
            s.push_str(&format!("{}\t{hostname}\n", ep.ip));
            if let Some((ip6, _)) = ep.ip6 {
                s.push_str(&format!("{ip6}\t{hostname}\n"));
            }
        }
        None => s.push_str(&format!("127.0.0.1\t{hostname}\n")),
    }
    s
}

/// Docker's `/etc/resolv.conf`: the host's file for host networking; `nameserver 127.0.0.11`
/// (plus the host's search domains) with the embedded DNS server; otherwise the host's file
/// without loopback nameservers (Google's public servers if none is left). `--dns*` options
/// replace the respective lines.
pub(crate) fn resolv_conf(host_network: bool, embedded_dns: bool, host: &HostOptions) -> String {
    let hostconf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if host_network
        && host.dns.is_empty()
        && host.dns_search.is_empty()
        && host.dns_options.is_empty()
    {
        return hostconf;
    }
    let mut nameservers = Vec::new();
    let mut search = Vec::new();
    let mut options = Vec::new();
    for line in hostconf.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => {
                if let Some(ns) = f.next() {
                    if host_network || !(ns.starts_with("127.") || ns == "::1") {
                        nameservers.push(ns.to_string());
                    }
                }
            }
            Some("search") | Some("domain") => search = f.map(String::from).collect(),
            Some("options") => options.extend(f.map(String::from)),
            _ => {}
        }
    }
    if embedded_dns {
        nameservers = vec![DNS_ADDR.to_string()];
        options = vec!["ndots:0".into()];
    } else if nameservers.is_empty() {
        nameservers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    if !host.dns.is_empty() && !embedded_dns {
        nameservers = host.dns.clone();
    }
    if !host.dns_search.is_empty() {
        search = host.dns_search.clone();
    }
    if !host.dns_options.is_empty() {
        options = host.dns_options.clone();
    }
    let mut out = String::new();
    if !search.is_empty() && search != ["."] {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for ns in nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(mode: &str) -> HostOptions {
        HostOptions {
            network_mode: mode.into(),
            ..Default::default()
        }
    }

    #[test]
    fn modes() {
        assert_eq!(mode(&host("host")), Mode::Host);
        assert_eq!(mode(&host("none")), Mode::None);
        assert_eq!(mode(&host("container:abc")), Mode::Container("abc"));
        assert_eq!(mode(&host("sandbox:pod-1")), Mode::Sandbox("pod-1"));
        assert_eq!(primary_network(&host("sandbox:pod-1")), None);
        let Mode::Bridge(eps) = mode(&host("default")) else {
            panic!()
        };
        assert_eq!(eps[0].network, "bridge");
        let mut h = host("front");
        h.endpoints = vec![
            EndpointRequest {
                network: "back".into(),
                ..Default::default()
            },
            EndpointRequest {
                network: "front".into(),
                aliases: vec!["api".into()],
                ..Default::default()
            },
        ];
        let Mode::Bridge(eps) = mode(&h) else {
            panic!()
        };
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].network, "front");
        assert_eq!(eps[0].aliases, ["api"]);
        assert_eq!(eps[1].network, "back");
    }

    #[test]
    fn resolv_with_embedded_dns() {
        let r = resolv_conf(false, true, &host("front"));
        assert!(r.contains("nameserver 127.0.0.11\n"), "{r}");
        assert!(r.contains("options ndots:0"), "{r}");
        assert_eq!(r.matches("nameserver").count(), 1, "{r}");
        let mut h = host("bridge");
        h.dns = vec!["192.0.2.53".into()];
        let r = resolv_conf(false, false, &h);
        assert_eq!(r.matches("nameserver").count(), 1, "{r}");
        assert!(r.contains("nameserver 192.0.2.53"), "{r}");
    }

    #[test]
    fn hosts_has_own_entry_and_extra_hosts() {
        let h = hosts_file("abc", None, &["db:10.1.2.3".into()]);
        assert!(h.contains("10.1.2.3\tdb\n"));
        assert!(h.ends_with("127.0.0.1\tabc\n"));
    }
}

/// A legacy link (`--link`) as the child sees it: the target's name, short ID, hostname,
/// default-bridge address, exposed ports and environment.
pub(crate) struct LinkTarget<'a> {
    /// `/THIS/ALIAS`, dockerd's link name.
    pub link_name: String,
    pub alias: &'a str,
    pub name: &'a str,
    pub hostname: &'a str,
    pub ip: std::net::Ipv4Addr,
    pub exposed_ports: &'a [String],
    pub env: &'a [String],
}

/// `/etc/hosts` lines of legacy links (dockerd's `OptionExtraHost`): `IP\tALIAS HOSTNAME
/// [NAME]`, the name only when the alias differs from it.
pub(crate) fn link_hosts(links: &[LinkTarget<'_>]) -> Vec<String> {
    links
        .iter()
        .map(|l| {
            let mut names = format!("{} {}", l.alias, l.hostname);
            if l.alias != l.name {
                names.push(' ');
                names.push_str(l.name);
            }
            format!("{}:{}", names, l.ip)
        })
        .collect()
}

/// The environment of legacy links (dockerd's `links.Link.ToEnv`): `ALIAS_PORT`, the
/// `ALIAS_PORT_<port>_<PROTO>[_ADDR|_PORT|_PROTO]` of every exposed port, `ALIAS_NAME` and
/// `ALIAS_ENV_<var>` for the target's environment (less `HOME` and `PATH`).
pub(crate) fn link_env(links: &[LinkTarget<'_>]) -> Vec<String> {
    let mut env = Vec::new();
    for l in links {
        let alias = l.alias.to_ascii_uppercase().replace('-', "_");
        let mut ports: Vec<(u16, String)> = l
            .exposed_ports
            .iter()
            .filter_map(|p| {
                let (n, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
                Some((n.parse().ok()?, proto.to_string()))
            })
            .collect();
        ports.sort_by(|a, b| a.0.cmp(&b.0).then((a.1 != "tcp").cmp(&(b.1 != "tcp"))));
        if let Some((p, proto)) = ports.first() {
            env.push(format!("{alias}_PORT={proto}://{}:{p}", l.ip));
        }
        for (p, proto) in &ports {
            let up = proto.to_ascii_uppercase();
            env.push(format!("{alias}_PORT_{p}_{up}={proto}://{}:{p}", l.ip));
            env.push(format!("{alias}_PORT_{p}_{up}_ADDR={}", l.ip));
            env.push(format!("{alias}_PORT_{p}_{up}_PORT={p}"));
            env.push(format!("{alias}_PORT_{p}_{up}_PROTO={proto}"));
        }
        env.push(format!("{alias}_NAME={}", l.link_name));
        for v in l.env {
            if let Some((k, val)) = v.split_once('=') {
                if k != "HOME" && k != "PATH" {
                    env.push(format!("{alias}_ENV_{k}={val}"));
                }
            }
        }
    }
    env
}

#[cfg(test)]
mod link_tests {
    use super::*;

    #[test]
    fn link_env_and_hosts_like_dockerd() {
        let ports = vec![
            "6379/tcp".to_string(),
            "53/udp".to_string(),
            "53/tcp".to_string(),
        ];
        let env = vec!["PATH=/bin".to_string(), "REDIS_VERSION=7".to_string()];
        let l = LinkTarget {
            link_name: "/web/db-main".into(),
            alias: "db-main",
            name: "redis",
            hostname: "abcdef123456",
            ip: "10.87.0.5".parse().unwrap(),
            exposed_ports: &ports,
            env: &env,
        };
        let e = link_env(std::slice::from_ref(&l));
        assert_eq!(e[0], "DB_MAIN_PORT=tcp://10.87.0.5:53");
        assert!(e.contains(&"DB_MAIN_PORT_53_UDP_PROTO=udp".to_string()));
        assert!(e.contains(&"DB_MAIN_PORT_6379_TCP=tcp://10.87.0.5:6379".to_string()));
        assert!(e.contains(&"DB_MAIN_PORT_6379_TCP_ADDR=10.87.0.5".to_string()));
        assert!(e.contains(&"DB_MAIN_NAME=/web/db-main".to_string()));
        assert!(e.contains(&"DB_MAIN_ENV_REDIS_VERSION=7".to_string()));
        assert!(!e.iter().any(|v| v.starts_with("DB_MAIN_ENV_PATH")));
        assert_eq!(
            link_hosts(std::slice::from_ref(&l)),
            vec!["db-main abcdef123456 redis:10.87.0.5".to_string()]
        );
    }
}
