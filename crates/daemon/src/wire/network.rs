//! The network bodies of the Engine API from `bollard_stubs` models: `EndpointSettings`,
//! `PortMap`/`PortBinding`, `NetworkSettings`, `PortSummary` and `Network` (moby's
//! `api/swagger.yaml`, <https://docs.docker.com/reference/api/engine/version/v1.47/#tag/Network>).
//! The callers (`api/networks.rs`) look the sandbox and definitions up; these functions only
//! shape them. Extensions to the models (dockerd 20.10+ fields the 1.53 model dropped, explicit
//! `null`s) follow the module docs of [`super`].

use std::collections::{BTreeMap, HashMap};

use barge_container::Container;
use barge_network::{Endpoint, EndpointRequest, Network, PortBinding, Sandbox};
use bollard_stubs::models as m;
use serde_json::{json, Value};

use super::{hash, to_wire};

/// dockerd's nil slices and maps of `EndpointSettings` (no `omitempty`: sent as `null`).
const ENDPOINT_NULLS: &[&str] = &["IPAMConfig", "Links", "Aliases", "DriverOpts", "DNSNames"];

/// One network's `EndpointSettings` for a container: `ep` is its attachment while the
/// container runs (`None`: created or stopped, addresses empty as dockerd reports them), `req`
/// what the container asked for (`NetworkingConfig.EndpointsConfig`), echoed as dockerd does.
pub fn endpoint_settings(
    net_id: &str,
    ep: Option<&Endpoint>,
    req: Option<&EndpointRequest>,
) -> Value {
    // dockerd's `EndpointIPAMConfig` (both fields `omitempty`), null when neither is set.
    let ipam_config = req
        .filter(|r| {
            r.ipv4_address.is_some() || r.ipv6_address.is_some() || !r.link_local_ips.is_empty()
        })
        .map(|r| m::EndpointIpamConfig {
            ipv4_address: r.ipv4_address.map(|ip| ip.to_string()),
            ipv6_address: r.ipv6_address.map(|ip| ip.to_string()),
            link_local_ips: Some(r.link_local_ips.clone()).filter(|l| !l.is_empty()),
        });
    let aliases = req.map(|r| r.aliases.clone()).filter(|a| !a.is_empty());
    let links = req.map(|r| r.links.clone()).filter(|l| !l.is_empty());
    let driver_opts = req
        .filter(|r| !r.driver_opts.is_empty())
        .map(|r| hash(&r.driver_opts));
    let mut model = m::EndpointSettings {
        ipam_config,
        aliases,
        links,
        driver_opts,
        gw_priority: Some(0),
        network_id: Some(net_id.to_string()),
        ..Default::default()
    };
    match ep {
        Some(ep) => {
            model.mac_address = Some(ep.mac.clone());
            model.endpoint_id = Some(ep.endpoint_id.clone());
            model.gateway = Some(ep.gateway.map(|g| g.to_string()).unwrap_or_default());
            model.ip_address = Some(ep.ip.to_string());
            model.ip_prefix_len = Some(i64::from(ep.prefix_len));
            model.ipv6_gateway = Some(
                ep.gateway6
                    .filter(|_| ep.ip6.is_some())
                    .map(|g| g.to_string())
                    .unwrap_or_default(),
            );
            model.global_ipv6_address =
                Some(ep.ip6.map(|(ip, _)| ip.to_string()).unwrap_or_default());
            model.global_ipv6_prefix_len = Some(ep.ip6.map(|(_, len)| i64::from(len)).unwrap_or(0));
            model.dns_names = Some(ep.dns_names.clone()).filter(|n| !n.is_empty());
        }
        None => {
            model.mac_address = Some(req.and_then(|r| r.mac_address.clone()).unwrap_or_default());
            model.endpoint_id = Some(String::new());
            model.gateway = Some(String::new());
            model.ip_address = Some(String::new());
            model.ip_prefix_len = Some(0);
            model.ipv6_gateway = Some(String::new());
            model.global_ipv6_address = Some(String::new());
            model.global_ipv6_prefix_len = Some(0);
        }
    }
    to_wire(&model, ENDPOINT_NULLS)
}

/// Docker's `PortMap` (`{"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}]}`): every
/// exposed port, with its bindings while the container runs (`null` when unbound).
pub fn port_map(c: &Container, sb: Option<&Sandbox>) -> m::PortMap {
    let mut map: m::PortMap = c
        .config
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), None))
        .collect();
    for p in sb.map(|s| s.ports.as_slice()).unwrap_or_default() {
        map.entry(format!("{}/{}", p.container_port, p.proto))
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(m::PortBinding {
                host_ip: Some(p.host_ip.to_string()),
                host_port: Some(p.host_port.to_string()),
            });
    }
    map
}

/// Docker's `HostConfig.PortBindings` as inspect echoes it (the request's strings unchanged).
pub fn port_bindings(bindings: &[PortBinding]) -> m::PortMap {
    let mut map = m::PortMap::new();
    for b in bindings {
        map.entry(format!("{}/{}", b.container_port, b.proto))
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(m::PortBinding {
                host_ip: Some(b.host_ip.clone()),
                host_port: Some(b.host_port.clone()),
            });
    }
    map
}

/// Docker's `NetworkSettings` of a container (inspect): `networks` maps each network's name to
/// its [`endpoint_settings`]; `sb` is the running container's sandbox. The top-level address
/// fields (deprecated, still sent by dockerd 20.10-27 and read by old clients) describe the
/// default `bridge` endpoint only, empty otherwise.
pub fn network_settings(
    c: &Container,
    sb: Option<&Sandbox>,
    networks: BTreeMap<String, Value>,
) -> Value {
    let model = m::NetworkSettings {
        sandbox_id: Some(sb.map(|_| c.id.clone()).unwrap_or_default()),
        sandbox_key: Some(
            sb.map(|s| s.netns.display().to_string())
                .unwrap_or_default(),
        ),
        ports: Some(port_map(c, sb)),
        networks: None,
    };
    let mut v = to_wire(&model, &[]);
    v["Networks"] = json!(networks);
    let first = sb.and_then(|s| s.endpoints.first());
    let bridge = first.filter(|e| e.network_name == "bridge");
    // The deprecated fields dockerd still sends (the 1.53 model dropped them).
    let legacy = json!({
        "Bridge": "",
        "HairpinMode": false, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
        "EndpointID": bridge.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
        "Gateway": bridge.and_then(|e| e.gateway).map(|g| g.to_string()).unwrap_or_default(),
        "GlobalIPv6Address": bridge.and_then(|e| e.ip6).map(|(a, _)| a.to_string()).unwrap_or_default(),
        "GlobalIPv6PrefixLen": bridge.and_then(|e| e.ip6).map(|(_, p)| p).unwrap_or(0),
        "IPAddress": bridge.map(|e| e.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": bridge.map(|e| e.prefix_len).unwrap_or(0),
        "IPv6Gateway": bridge.and_then(|e| e.gateway6).map(|g| g.to_string()).unwrap_or_default(),
        "MacAddress": bridge.map(|e| e.mac.clone()).unwrap_or_default(),
    });
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), legacy) {
        obj.extend(extra);
    }
    v
}

/// A `ContainerSummary`'s `Ports`: each exposed port of a container with a network of its own,
/// once unpublished (`PrivatePort`, `Type`) or once per published binding (`IP`, `PublicPort`).
/// `--network host`/`container:` containers have none, as `docker ps` shows them.
pub fn port_summaries(c: &Container, sb: Option<&Sandbox>) -> Vec<m::PortSummary> {
    let own_network = c.options.host.network_mode != "host"
        && !c.options.host.network_mode.starts_with("container:");
    let mut ports = Vec::new();
    for p in c.config.exposed_ports.iter().filter(|_| own_network) {
        let (port, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
        let private_port: u16 = port.parse().unwrap_or(0);
        let typ = serde_json::from_value(json!(proto)).ok();
        let published: Vec<_> = sb
            .map(|s| s.ports.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|m| m.container_port == private_port && m.proto == proto)
            .collect();
        if published.is_empty() {
            ports.push(m::PortSummary {
                private_port,
                typ,
                ..Default::default()
            });
        }
        for m in published {
            ports.push(m::PortSummary {
                ip: Some(m.host_ip.to_string()),
                private_port,
                public_port: Some(m.host_port),
                typ,
            });
        }
    }
    ports
}

/// Docker's `Network` (inspect and list): `members` are the running containers attached, as
/// (container id, name, endpoint).
pub fn network(n: &Network, members: &[(String, String, Endpoint)]) -> Value {
    let containers: HashMap<String, m::EndpointResource> = members
        .iter()
        .map(|(cid, name, ep)| {
            let r = m::EndpointResource {
                name: Some(name.clone()),
                endpoint_id: Some(ep.endpoint_id.clone()),
                mac_address: Some(ep.mac.clone()),
                ipv4_address: Some(format!("{}/{}", ep.ip, ep.prefix_len)),
                ipv6_address: Some(
                    ep.ip6
                        .map(|(ip, len)| format!("{ip}/{len}"))
                        .unwrap_or_default(),
                ),
            };
            (cid.clone(), r)
        })
        .collect();
    let pool = |subnet: String, gateway: String, range: Option<String>| m::IpamConfig {
        subnet: Some(subnet),
        gateway: Some(gateway),
        ip_range: range,
        auxiliary_addresses: None,
    };
    let mut config: Vec<m::IpamConfig> = n
        .ipam
        .iter()
        .map(|i| m::IpamConfig {
            auxiliary_addresses: (!i.aux_addresses.is_empty()).then(|| {
                i.aux_addresses
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect()
            }),
            ..pool(
                i.subnet.to_string(),
                i.gateway.to_string(),
                i.ip_range.map(|r| r.to_string()),
            )
        })
        .collect();
    config.extend(n.ipam6.iter().map(|i| {
        pool(
            i.subnet.to_string(),
            i.gateway.to_string(),
            i.ip_range.map(|r| r.to_string()),
        )
    }));
    let model = m::NetworkInspect {
        name: Some(n.name.clone()),
        id: Some(n.id.clone()),
        created: Some(n.created.clone()),
        scope: Some("local".into()),
        driver: Some(n.driver.clone()),
        enable_ipv4: Some(true),
        enable_ipv6: Some(n.ipam6.is_some()),
        ipam: Some(m::Ipam {
            driver: Some("default".into()),
            config: Some(config),
            options: None,
        }),
        internal: Some(n.internal),
        attachable: Some(n.attachable),
        ingress: Some(false),
        config_from: Some(m::ConfigReference {
            network: Some(String::new()),
        }),
        config_only: Some(false),
        options: Some(hash(&n.options)),
        labels: Some(hash(&n.labels)),
        containers: Some(containers),
        ..Default::default()
    };
    to_wire(&model, &["IPAM.Options"])
}
