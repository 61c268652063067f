//! `/networks/...` (list, inspect, create, remove, connect, disconnect, prune) and the
//! network parts of container create/inspect/list (`NetworkingConfig`, `PortBindings`,
//! `NetworkSettings`, `Ports`). Shapes follow moby's `api/swagger.yaml` (`Network`,
//! `NetworkCreateRequest`, `EndpointSettings`, `PortMap`, `Port`).

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use barge_container::{Container, Containers, CreateOptions};
use barge_network::{EndpointRequest, Network, NetworkError, PortBinding};
use bollard_stubs::models::PortSummary;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Query;
use crate::state::AppState;
use crate::wire::network as wire;
use crate::{asyncify, ApiError};

impl From<NetworkError> for ApiError {
    fn from(e: NetworkError) -> Self {
        use barge_network::ErrorKind as K;
        let status = match e.kind() {
            K::NotFound => StatusCode::NOT_FOUND,
            K::Conflict => StatusCode::CONFLICT,
            K::InvalidInput => StatusCode::BAD_REQUEST,
            K::Forbidden => StatusCode::FORBIDDEN,
            K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// `HostConfig.PortBindings` value entry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBindingBody {
    host_ip: Option<String>,
    host_port: Option<String>,
}

/// `EndpointSettings` as clients send it (create's `NetworkingConfig`, `connect`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointBody {
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpamBody>,
    aliases: Option<Vec<String>>,
    links: Option<Vec<String>>,
    mac_address: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndpointIpamBody {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
    #[serde(rename = "IPv6Address")]
    ipv6_address: Option<String>,
    #[serde(rename = "LinkLocalIPs")]
    link_local_ips: Option<Vec<String>>,
}

/// Create's `NetworkingConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkingConfigBody {
    endpoints_config: Option<BTreeMap<String, Option<EndpointBody>>>,
}

fn endpoint_request(
    network: &str,
    body: Option<EndpointBody>,
) -> Result<EndpointRequest, ApiError> {
    let body = body.unwrap_or_default();
    let ipam = body.ipam_config.unwrap_or_default();
    let ip6 = match ipam.ipv6_address.filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<std::net::Ipv6Addr>()
                .map_err(|_| ApiError::bad_request(format!("invalid IPv6 address: {s}")))?,
        ),
        None => None,
    };
    let ip = match ipam.ipv4_address.filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid IPv4 address: {s}")))?,
        ),
        None => None,
    };
    let mac = body.mac_address.filter(|m| !m.is_empty());
    if let Some(m) = &mac {
        if barge_network::ipam::parse_mac(m).is_none() {
            return Err(ApiError::bad_request(format!("invalid MAC address: {m}")));
        }
    }
    Ok(EndpointRequest {
        network: network.to_string(),
        aliases: body.aliases.unwrap_or_default(),
        ipv4_address: ip,
        ipv6_address: ip6,
        mac_address: mac,
        driver_opts: body.driver_opts.unwrap_or_default(),
        links: body.links.unwrap_or_default(),
        link_local_ips: ipam.link_local_ips.unwrap_or_default(),
    })
}

/// Parses a `PortMap` key (`8080/tcp`, `53/udp`, `8080`).
fn parse_port_key(key: &str) -> Result<(u16, String), ApiError> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid port specification: {key:?}")))?;
    let proto = proto.to_ascii_lowercase();
    if proto != "tcp" && proto != "udp" {
        return Err(ApiError::bad_request(format!(
            "invalid proto {proto:?} in port specification {key:?} (tcp or udp)"
        )));
    }
    Ok((port, proto))
}

/// Fills the network parts of the engine's create options from the wire body.
/// `mac_address` is the legacy container-level `Config.MacAddress` (API < 1.44, docker-py's
/// `mac_address=`): it applies to the primary network's endpoint unless that sets its own.
pub fn apply_create(
    opts: &mut CreateOptions,
    exposed: Option<BTreeMap<String, Value>>,
    port_bindings: Option<BTreeMap<String, Option<Vec<PortBindingBody>>>>,
    networking: Option<NetworkingConfigBody>,
    mac_address: Option<String>,
) -> Result<(), ApiError> {
    for key in exposed.unwrap_or_default().keys() {
        let (port, proto) = parse_port_key(key)?;
        opts.exposed_ports.push(format!("{port}/{proto}"));
    }
    for (key, binds) in port_bindings.unwrap_or_default() {
        let (port, proto) = parse_port_key(&key)?;
        let p = format!("{port}/{proto}");
        if !opts.exposed_ports.contains(&p) {
            opts.exposed_ports.push(p);
        }
        let binds = binds.unwrap_or_default();
        if binds.is_empty() {
            continue;
        }
        for b in binds {
            opts.host.port_bindings.push(PortBinding {
                container_port: port,
                proto: proto.clone(),
                host_ip: b.host_ip.unwrap_or_default(),
                host_port: b.host_port.unwrap_or_default(),
            });
        }
    }
    for (name, ep) in networking
        .and_then(|n| n.endpoints_config)
        .unwrap_or_default()
    {
        opts.host.endpoints.push(endpoint_request(&name, ep)?);
    }
    if let Some(mac) = mac_address.filter(|m| !m.is_empty()) {
        let mode = opts.host.network_mode.as_str();
        if matches!(mode, "host" | "none") || mode.starts_with("container:") {
            return Err(ApiError::bad_request(
                "conflicting options: mac-address and the network mode",
            ));
        }
        let primary = if mode == "default" { "bridge" } else { mode }.to_string();
        let pos =
            opts.host.endpoints.iter().position(|e| {
                e.network == primary || (primary == "bridge" && e.network == "default")
            });
        let ep = match pos {
            Some(i) => &mut opts.host.endpoints[i],
            None => {
                opts.host
                    .endpoints
                    .insert(0, endpoint_request(&primary, None)?);
                &mut opts.host.endpoints[0]
            }
        };
        if ep.mac_address.is_none() {
            if barge_network::ipam::parse_mac(&mac).is_none() {
                return Err(ApiError::bad_request(format!("invalid MAC address: {mac}")));
            }
            ep.mac_address = Some(mac);
        }
    }
    Ok(())
}

/// Docker's `HostConfig.PortBindings` as inspect echoes it.
pub fn port_bindings_json(c: &Container) -> Value {
    json!(wire::port_bindings(&c.options.host.port_bindings))
}

/// Docker's `NetworkSettings` of a container (inspect).
pub fn network_settings(state: &AppState, c: &Container) -> Value {
    let sb = state.networks.sandbox(&c.id);
    let mut networks = BTreeMap::new();
    for name in Containers::network_names(c) {
        let net = state.networks.get(&name).ok();
        let id = net.as_ref().map(|n| n.id.clone()).unwrap_or_default();
        let ep = sb
            .as_ref()
            .and_then(|s| s.endpoints.iter().find(|e| e.network_id == id));
        let req = c.options.host.endpoints.iter().find(|e| e.network == name);
        networks.insert(name.clone(), wire::endpoint_settings(&id, ep, req));
    }
    wire::network_settings(c, sb.as_ref(), networks)
}

/// `Ports` and `NetworkSettings.Networks` of a `ContainerSummary` (list).
pub fn summary_parts(
    state: &AppState,
    c: &Container,
) -> (Vec<PortSummary>, BTreeMap<String, Value>) {
    let sb = state.networks.sandbox(&c.id);
    let ports = wire::port_summaries(c, sb.as_ref());
    let mut networks = BTreeMap::new();
    for name in Containers::network_names(c) {
        let id = state.networks.get(&name).map(|n| n.id).unwrap_or_default();
        let ep = sb
            .as_ref()
            .and_then(|s| s.endpoints.iter().find(|e| e.network_id == id));
        networks.insert(name, wire::endpoint_settings(&id, ep, None));
    }
    (ports, networks)
}

/// Docker's `Network` object.
fn network_json(state: &AppState, n: &Network, containers: &[Container]) -> Value {
    let members: Vec<_> = state
        .networks
        .endpoints(&n.id)
        .into_iter()
        .map(|(cid, ep)| {
            let name = containers
                .iter()
                .find(|c| c.id == cid)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            (cid, name, ep)
        })
        .collect();
    wire::network(n, &members)
}

/// dockerd's network filters (`daemon/network/filter.go`): `driver` and `scope` exact,
/// `name` and `id` by `Match` (exact or regular expression), every `label` must match,
/// `type` is `custom` or `builtin`, `dangling` a single boolean.
fn matches(n: &Network, filters: &BTreeMap<String, Vec<String>>, used: bool) -> bool {
    use super::filters as f;
    let types = f::values(filters, "type");
    f::exact(filters, "driver", &n.driver)
        && f::matches(filters, "name", &n.name)
        && f::matches(filters, "id", &n.id)
        && f::match_kv_list(filters, "label", &n.labels)
        && f::exact(filters, "scope", "local")
        && (types.is_empty() || types.iter().any(|t| (t == "builtin") == n.predefined()))
        && f::values(filters, "dangling")
            .first()
            .is_none_or(|d| (d == "true" || d == "1") == (!used && !n.predefined()))
}

/// 400 for a network filter dockerd refuses.
fn check_filters(filters: &BTreeMap<String, Vec<String>>) -> Result<(), ApiError> {
    use super::filters as f;
    f::validate(
        filters,
        &["dangling", "driver", "id", "label", "name", "scope", "type"],
    )?;
    match f::values(filters, "dangling") {
        [] => {}
        [v] if ["0", "1", "true", "false"].contains(&v.as_str()) => {}
        [_] => {
            return Err(ApiError::bad_request(
                r#"invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")"#,
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                r#"got more than one value for filter key "dangling""#,
            ))
        }
    }
    for t in f::values(filters, "type") {
        if t != "custom" && t != "builtin" {
            return Err(f::invalid("type", Some(t)));
        }
    }
    Ok(())
}

/// Containers (any state) that name network `n` in their settings.
fn users(n: &Network, containers: &[Container]) -> bool {
    containers
        .iter()
        .any(|c| Containers::network_names(c).contains(&n.name))
}

/// `GET /networks?filters=`.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw);
    let filters = q.filters()?;
    check_filters(&filters)?;
    // Rendering reads the engine's sandboxes (its lock): on the blocking pool too.
    let s = state.clone();
    let out = asyncify(move || {
        let (nets, containers) = (s.networks.list(), s.containers.list());
        let out: Vec<Value> = nets
            .iter()
            .filter(|n| matches(n, &filters, users(n, &containers)))
            .map(|n| network_json(&s, n, &containers))
            .collect();
        Ok::<_, ApiError>(out)
    })
    .await?;
    Ok(Json(Value::Array(out)))
}

/// `GET /networks/{id}`.
pub async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = state.clone();
    let v = asyncify(move || {
        let n = s.networks.get(&id).map_err(|e| {
            let message = e.inspect_message();
            ApiError {
                message,
                ..ApiError::from(e)
            }
        })?;
        let containers = s.containers.list();
        Ok::<_, ApiError>(network_json(&s, &n, &containers))
    })
    .await?;
    Ok(Json(v))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    name: String,
    driver: Option<String>,
    internal: bool,
    attachable: bool,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamBody>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    /// Deprecated in API 1.44 (always checked since); before it, a duplicate name was
    /// refused only when this was true.
    check_duplicate: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamBody {
    driver: Option<String>,
    config: Option<Vec<IpamConfigBody>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfigBody {
    subnet: Option<String>,
    gateway: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
    auxiliary_addresses: Option<BTreeMap<String, String>>,
}

/// `POST /networks/create` → `201 {"Id", "Warning"}`.
pub async fn create(
    State(state): State<AppState>,
    version: Option<axum::Extension<super::ApiVersion>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // Before API 1.44 dockerd took a subnet with host bits set (`2001:389::1/64`) as its
    // network; 1.44 made it a 400.
    let legacy = version.is_some_and(|v| v.0.older_than(1, 44));
    let subnet = |s: Option<String>| -> Option<String> {
        let s = s.filter(|s| !s.is_empty())?;
        match (legacy, s.parse::<ipnet::IpNet>()) {
            (true, Ok(n)) => Some(n.trunc().to_string()),
            _ => Some(s),
        }
    };
    // dockerd's `ReadJSON`: a body that does not decode (labels that are not strings, ...)
    // is 400 "invalid JSON: ...".
    let b: CreateBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    if b.name.is_empty() {
        return Err(ApiError::bad_request("network name is required (Name)"));
    }
    if barge_network::is_predefined(&b.name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "operation is not permitted on predefined {} network ",
                b.name
            ),
        ));
    }
    let ipam = b.ipam.unwrap_or_default();
    if let Some(d) = ipam
        .driver
        .as_deref()
        .filter(|d| !d.is_empty() && *d != "default")
    {
        return Err(ApiError::bad_request(format!(
            "IPAM driver {d:?} is not supported (IPAM.Driver)"
        )));
    }
    // One IPAM.Config entry per family; an entry's family is its subnet's (an entry without
    // a subnet is IPv4's).
    let (v6, v4): (Vec<IpamConfigBody>, Vec<IpamConfigBody>) = ipam
        .config
        .unwrap_or_default()
        .into_iter()
        .partition(|c| c.subnet.as_deref().is_some_and(|s| s.contains(':')));
    if v4.len() > 1 || v6.len() > 1 {
        return Err(ApiError::bad_request(
            "barge supports one IPv4 and one IPv6 subnet per network (IPAM.Config)",
        ));
    }
    let cfg = v4.into_iter().next().unwrap_or_default();
    let cfg6 = v6.into_iter().next().unwrap_or_default();
    let req = barge_network::CreateRequest {
        name: b.name,
        driver: b.driver.filter(|d| !d.is_empty()),
        subnet: subnet(cfg.subnet),
        gateway: cfg.gateway.filter(|s| !s.is_empty()),
        ip_range: cfg.ip_range.filter(|s| !s.is_empty()),
        // A pre-1.44 client's IPv6 subnet without `EnableIPv6` was accepted by dockerd 20.10
        // (which kept the pool and left the bridge without IPv6); barge enables IPv6 for it.
        enable_ipv6: b.enable_ipv6 == Some(true)
            || (legacy && cfg6.subnet.as_deref().is_some_and(|s| !s.is_empty())),
        subnet6: subnet(cfg6.subnet),
        gateway6: cfg6.gateway.filter(|s| !s.is_empty()),
        ip_range6: cfg6.ip_range.filter(|s| !s.is_empty()),
        aux_addresses: cfg.auxiliary_addresses.unwrap_or_default(),
        internal: b.internal,
        attachable: b.attachable,
        labels: b.labels.unwrap_or_default(),
        options: b.options.unwrap_or_default(),
        // dockerd before API 1.44 (daemon/network.go createNetwork): a name already in use
        // is refused only with `CheckDuplicate: true` (the docker CLI sets it; docker-py and
        // docker-compose 1.29 do not), else the network is created with a warning.
        allow_duplicate_name: legacy && b.check_duplicate != Some(true),
    };
    let s = state.clone();
    let (n, shares_name) =
        asyncify(move || s.networks.create_sharing_name(req).map_err(ApiError::from)).await?;
    let warning = shares_name
        .map(|e| {
            format!(
                "Network with name {} (id : {}) already exists",
                e.name, e.id
            )
        })
        .unwrap_or_default();
    network_event(&state, "create", &n, None);
    Ok((
        StatusCode::CREATED,
        Json(bollard_stubs::models::NetworkCreateResponse { id: n.id, warning }),
    )
        .into_response())
}

fn network_event(state: &AppState, action: &str, n: &Network, container: Option<&str>) {
    let mut attrs = BTreeMap::new();
    attrs.insert("name".to_string(), n.name.clone());
    attrs.insert("type".to_string(), n.driver.clone());
    if let Some(c) = container {
        attrs.insert("container".to_string(), c.to_string());
    }
    state.events.emit("network", action, &n.id, attrs);
}

/// `DELETE /networks/{id}` → 204.
pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let s = state.clone();
    let n = asyncify(move || {
        let n = s.networks.get(&id)?;
        s.networks.remove(&n.id)?;
        Ok::<_, ApiError>(n)
    })
    .await?;
    network_event(&state, "destroy", &n, None);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointBody>,
    force: bool,
}

/// `POST /networks/{id}/connect` → 200.
pub async fn connect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    connect_or_disconnect(state, id, body, true).await
}

/// `POST /networks/{id}/disconnect` → 200 (`Force` is accepted; a disconnect never waits).
pub async fn disconnect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    connect_or_disconnect(state, id, body, false).await
}

async fn connect_or_disconnect(
    state: AppState,
    id: String,
    body: axum::body::Bytes,
    connect: bool,
) -> Result<StatusCode, ApiError> {
    let b: ConnectBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let _ = b.force;
    let s = state.clone();
    let (n, c) = asyncify(move || {
        let n = s.networks.get(&id)?;
        let c = s.containers.get(&b.container)?;
        if connect {
            let req = endpoint_request(&n.name, b.endpoint_config)?;
            s.containers.connect_network(&c.id, req)?;
        } else {
            s.containers.disconnect_network(&c.id, &n.name)?;
        }
        Ok::<_, ApiError>((n, c))
    })
    .await?;
    let action = if connect { "connect" } else { "disconnect" };
    network_event(&state, action, &n, Some(&c.id));
    Ok(StatusCode::OK)
}

/// `POST /networks/prune?filters=` → `{"NetworksDeleted": [...]}`: user-defined networks no
/// container uses.
pub async fn prune(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw);
    let filters = q.filters()?;
    let keep_filter = super::fsops::prune_filter(&filters, super::containers::unix_of)?;
    let s = state.clone();
    let deleted = asyncify(move || {
        let containers = s.containers.list();
        let keep = |n: &Network| users(n, &containers) || keep_filter(&n.labels, &n.created);
        Ok::<_, ApiError>(s.networks.prune(&keep))
    })
    .await?;
    Ok(Json(
        serde_json::to_value(bollard_stubs::models::NetworkPruneResponse {
            networks_deleted: Some(deleted),
        })
        .unwrap_or_default(),
    ))
}
