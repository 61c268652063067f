//! `barge network ...` and `barge port`, as docker's.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{filters, json_body, query, seg, Client};
use crate::format::{self, Output};

/// `barge network` subcommands.
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
#[command(override_usage = "barge network create [OPTIONS] NETWORK")]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// Auxiliary IPv4 or IPv6 addresses used by Network driver (name=address)
    #[arg(long = "aux-address", value_name = "map")]
    pub aux_address: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Enable or disable IPv6 networking
    #[arg(long)]
    pub ipv6: bool,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'json', or a Go template)
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Verbose output for diagnostics
    #[arg(short, long)]
    pub verbose: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33")
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add link to another container
    #[arg(long)]
    pub link: Vec<String>,
    /// Add a link-local address for the container
    #[arg(long = "link-local-ip")]
    pub link_local_ip: Vec<String>,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
}

/// `barge port CONTAINER [PRIVATE_PORT[/PROTO]]`.
#[derive(Debug, Args)]
#[command(override_usage = "barge port CONTAINER [PRIVATE_PORT[/PROTO]]")]
pub struct PortArgs {
    pub container: String,
    pub port: Option<String>,
}

fn key_values(list: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for kv in list {
        match kv.split_once('=') {
            Some((k, v)) => m.insert(k.to_string(), v.to_string()),
            None if what == "label" => m.insert(kv.clone(), String::new()),
            None => bail!("invalid {what} {kv:?}: expected key=value"),
        };
    }
    Ok(m)
}

/// Dispatches `barge network ...`.
pub async fn network(client: &Client, cmd: NetworkCmd) -> Result<i32> {
    match cmd {
        NetworkCmd::Create(a) => create(client, a).await,
        NetworkCmd::Ls(a) => ls(client, a).await,
        NetworkCmd::Inspect(a) => {
            crate::system::inspect_objects(client, &a.names, a.format.as_deref(), Some("network"))
                .await
        }
        NetworkCmd::Rm(a) => rm(client, a).await,
        NetworkCmd::Connect(a) => {
            let mut ep = json!({});
            if !a.alias.is_empty() {
                ep["Aliases"] = json!(a.alias);
            }
            if !a.link.is_empty() {
                // docker's `opts.ParseLink`: `NAME[:ALIAS]`, the alias defaulting to the name.
                let links: Vec<String> = a
                    .link
                    .iter()
                    .map(|l| match l.split_once(':') {
                        Some(_) => l.clone(),
                        None => format!("{l}:{l}"),
                    })
                    .collect();
                ep["Links"] = json!(links);
            }
            if a.ip.is_some() || a.ip6.is_some() || !a.link_local_ip.is_empty() {
                let mut ipam = json!({});
                if !a.link_local_ip.is_empty() {
                    ipam["LinkLocalIPs"] = json!(a.link_local_ip);
                }
                if let Some(ip) = a.ip {
                    ipam["IPv4Address"] = json!(ip);
                }
                if let Some(ip) = a.ip6 {
                    ipam["IPv6Address"] = json!(ip);
                }
                ep["IPAMConfig"] = ipam;
            }
            let body = json!({"Container": a.container, "EndpointConfig": ep});
            client
                .send(
                    Method::POST,
                    &format!("/networks/{}/connect", seg(&a.network)),
                    Some(json_body(&body)?),
                )
                .await?;
            Ok(0)
        }
        NetworkCmd::Disconnect(a) => {
            let body = json!({"Container": a.container, "Force": a.force});
            client
                .send(
                    Method::POST,
                    &format!("/networks/{}/disconnect", seg(&a.network)),
                    Some(json_body(&body)?),
                )
                .await?;
            Ok(0)
        }
        NetworkCmd::Prune(a) => prune(client, a).await,
    }
}

/// docker's `consolidateIpam`: one `IPAM.Config` entry per `--subnet`; each `--gateway` and
/// `--ip-range` goes to the subnet that contains it (one of each per subnet).
fn ipam_configs(
    subnets: &[String],
    gateways: &[String],
    ranges: &[String],
    aux: &[String],
) -> Result<Value> {
    use std::net::IpAddr;
    fn cidr(s: &str) -> Result<(IpAddr, u8)> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("invalid CIDR address: {s}"))?;
        let a: IpAddr = a
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid CIDR address: {s}"))?;
        let max = if a.is_ipv4() { 32 } else { 128 };
        let l: u8 = l
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| anyhow::anyhow!("invalid CIDR address: {s}"))?;
        Ok((a, l))
    }
    fn contains((net, len): (IpAddr, u8), ip: IpAddr) -> bool {
        match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
    if subnets.is_empty() {
        if !gateways.is_empty() || !ranges.is_empty() || !aux.is_empty() {
            bail!("every ip-range or gateway must have a corresponding subnet");
        }
        return Ok(json!([]));
    }
    let mut configs = Vec::new();
    let mut used_g = vec![false; gateways.len()];
    let mut used_r = vec![false; ranges.len()];
    let mut used_a = vec![false; aux.len()];
    for s in subnets {
        let net = cidr(s)?;
        let mut cfg = json!({ "Subnet": s });
        for (i, r) in ranges.iter().enumerate() {
            let (ra, _) = cidr(r)?;
            if contains(net, ra) {
                if cfg.get("IPRange").is_some() {
                    bail!(
                        "cannot configure multiple ranges ({r}, {}) on the same subnet ({s})",
                        cfg["IPRange"].as_str().unwrap_or_default()
                    );
                }
                cfg["IPRange"] = json!(r);
                used_r[i] = true;
            }
        }
        for (i, g) in gateways.iter().enumerate() {
            let ga: IpAddr = g
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid gateway address: {g}"))?;
            if contains(net, ga) {
                if cfg.get("Gateway").is_some() {
                    bail!(
                        "cannot configure multiple gateways ({g}, {}) for the same subnet ({s})",
                        cfg["Gateway"].as_str().unwrap_or_default()
                    );
                }
                cfg["Gateway"] = json!(g);
                used_g[i] = true;
            }
        }
        // docker's CLI: each `name=address` goes to the subnet that holds the address.
        for (i, a) in aux.iter().enumerate() {
            let (name, addr) = a.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("invalid aux-address {a:?}: expected name=address")
            })?;
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid aux-address {a:?}: bad address"))?;
            if contains(net, ip) {
                cfg["AuxiliaryAddresses"][name] = json!(addr);
                used_a[i] = true;
            }
        }
        configs.push(cfg);
    }
    if used_g.contains(&false) || used_r.contains(&false) {
        bail!("no matching subnet for gateway or ip-range");
    }
    if used_a.contains(&false) {
        bail!("no matching subnet for aux-address");
    }
    Ok(Value::Array(configs))
}

async fn create(client: &Client, a: CreateArgs) -> Result<i32> {
    let configs = ipam_configs(&a.subnet, &a.gateway, &a.ip_range, &a.aux_address)?;
    let body = json!({
        "Name": a.name,
        "Driver": a.driver,
        "Internal": a.internal,
        "Attachable": a.attachable,
        "EnableIPv6": a.ipv6,
        "IPAM": {"Driver": "default", "Config": configs},
        "Options": key_values(&a.opt, "option")?,
        "Labels": key_values(&a.label, "label")?,
    });
    let resp: Value = client
        .json(Method::POST, "/networks/create", Some(json_body(&body)?))
        .await?;
    println!("{}", resp["Id"].as_str().unwrap_or_default());
    Ok(0)
}

async fn ls(client: &Client, a: LsArgs) -> Result<i32> {
    let path = format!("/networks{}", query(&[("filters", filters(&a.filter)?)]));
    let mut nets: Vec<Value> = client.json(Method::GET, &path, None).await?;
    nets.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    if a.quiet {
        for n in &nets {
            let id = n["Id"].as_str().unwrap_or_default();
            println!(
                "{}",
                if a.no_trunc {
                    id.to_string()
                } else {
                    format::short_id(id)
                }
            );
        }
        return Ok(0);
    }
    let rows: Vec<Value> = nets
        .iter()
        .map(|n| {
            let id = n["Id"].as_str().unwrap_or_default();
            let labels = n["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            json!({
                "ID": if a.no_trunc { id.to_string() } else { format::short_id(id) },
                "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"],
                "IPv6": n["EnableIPv6"].as_bool().unwrap_or(false).to_string(),
                "Internal": n["Internal"].as_bool().unwrap_or(false).to_string(),
                "Labels": labels, "CreatedAt": n["Created"],
            })
        })
        .collect();
    let out = Output::from_flag(
        a.format.as_deref(),
        "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
    )?;
    print!(
        "{}",
        out.render(&rows, |k| match k {
            "ID" => "NETWORK ID".into(),
            other => other.to_uppercase(),
        })?
    );
    Ok(0)
}

async fn rm(client: &Client, a: RmArgs) -> Result<i32> {
    let mut status = 0;
    for n in &a.names {
        match client
            .send(Method::DELETE, &format!("/networks/{}", seg(n)), None)
            .await
        {
            Ok(()) => println!("{n}"),
            Err(e) => {
                let missing = crate::client::api_error(&e).is_some_and(|x| x.status == 404);
                if a.force && missing {
                    continue;
                }
                eprintln!(
                    "Error response from daemon: {}",
                    crate::client::api_error(&e)
                        .map(|x| x.message.clone())
                        .unwrap_or_else(|| format!("{e:#}"))
                );
                status = 1;
            }
        }
    }
    Ok(status)
}

async fn prune(client: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force
        && !crate::confirm(
            "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue?",
        )
    {
        return Ok(0);
    }
    let path = format!(
        "/networks/prune{}",
        query(&[("filters", filters(&a.filter)?)])
    );
    let report: Value = client.json(Method::POST, &path, None).await?;
    format::print_deleted("Deleted Networks:", &report["NetworksDeleted"]);
    Ok(0)
}

/// `barge port`: the container's published ports (`8080/tcp -> 0.0.0.0:18080`).
pub async fn port(client: &Client, a: PortArgs) -> Result<i32> {
    let c: Value = client
        .json(
            Method::GET,
            &format!("/containers/{}/json", seg(&a.container)),
            None,
        )
        .await?;
    let ports = c["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let want = a.port.as_ref().map(|p| {
        if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort_by_key(|k| {
        let (p, proto) = k.split_once('/').unwrap_or((k.as_str(), ""));
        (p.parse::<u32>().unwrap_or(0), proto.to_string())
    });
    let mut found = false;
    for k in keys {
        if want.as_ref().is_some_and(|w| w != k) {
            continue;
        }
        for b in ports[k].as_array().into_iter().flatten() {
            let ip = b["HostIp"].as_str().unwrap_or_default();
            let port = b["HostPort"].as_str().unwrap_or_default();
            found = true;
            let addr = crate::format::host_port(ip, port);
            if want.is_some() {
                println!("{addr}");
            } else {
                println!("{k} -> {addr}");
            }
        }
    }
    if let (Some(w), false) = (&want, found) {
        bail!("Error: No public port '{w}' published for {}", a.container);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ipam_configs_pair_gateways_and_ranges_with_their_subnets() {
        let c = ipam_configs(
            &s(&["10.1.0.0/24", "fd00:1::/64"]),
            &s(&["fd00:1::fe", "10.1.0.254"]),
            &s(&["fd00:1::100/120"]),
            &s(&["r=10.1.0.9"]),
        )
        .unwrap();
        assert_eq!(
            c,
            json!([
                {"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.254", "AuxiliaryAddresses": {"r": "10.1.0.9"}},
                {"Subnet": "fd00:1::/64", "Gateway": "fd00:1::fe", "IPRange": "fd00:1::100/120"},
            ])
        );
        assert_eq!(ipam_configs(&[], &[], &[], &[]).unwrap(), json!([]));
        assert!(ipam_configs(&[], &s(&["10.1.0.1"]), &[], &[]).is_err());
        assert!(ipam_configs(&s(&["10.1.0.0/24"]), &s(&["fd00:1::1"]), &[], &[]).is_err());
        assert!(ipam_configs(
            &s(&["fd00:1::/64"]),
            &s(&["fd00:1::1", "fd00:1::2"]),
            &[],
            &[]
        )
        .is_err());
        assert!(ipam_configs(&s(&["10.1.0.0/24"]), &[], &[], &s(&["x=10.2.0.1"])).is_err());
    }
}
