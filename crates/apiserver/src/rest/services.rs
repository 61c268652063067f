//! Service allocations, as kube-apiserver's service REST storage makes them
//! (`pkg/registry/core/service/storage/alloc.go`, `ipallocator`, `portallocator`): a
//! ClusterIP from the service CIDR (`--service-cidr`) for every Service but headless
//! (`clusterIP: None`) and ExternalName ones, and a node port from 30000–32767 for every port
//! of a NodePort or LoadBalancer Service; explicit values are checked and reserved with kube's
//! messages (`provided IP is already allocated`, `provided port is not in the valid range…`).
//!
//! Every allocation is one datastore key — `/registry/ranges/serviceips/<ip>` and
//! `/registry/ranges/servicenodeports/<port>` — holding its owner (namespace, name, uid) and
//! when it was taken, so allocation is a `create` of that key: two concurrent creates can
//! never get the same address, whichever API server they reach (kube 1.33's IPAddress objects
//! work the same way). The key is taken before the Service is stored and dropped again if the
//! store fails; it is released after the Service is deleted, its type changed or its ports
//! dropped. A key whose owner is gone (a crash between the two writes) is reclaimed by the
//! next allocation that wants it, once it is older than [`GRACE_SECS`] (so a create still in
//! flight is never robbed).
//!
//! Also here: the `kubernetes` Service in `default` (the first service IP, port 443, its
//! Endpoints and EndpointSlice pointing at the API server) and `kube-dns` in `kube-system`
//! (the cluster DNS address), created at start as kube-apiserver's and k3s's bootstrap do.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Value};

use super::object::{decode, encode, meta_str};
use crate::registry::ResourceInfo;
use crate::status::{ApiError, ApiResult, Cause};
use crate::ApiServer;

/// The node port range (kube's `--service-node-port-range` default).
pub const NODE_PORTS: (u16, u16) = (30000, 32767);
/// An allocation whose Service does not exist is reclaimed after this long.
const GRACE_SECS: i64 = 30;
const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// An IPv4 range: network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub net: Ipv4Addr,
    pub len: u8,
}

impl Range {
    /// Parses `10.43.0.0/16` (the address is masked to the network).
    pub fn parse(s: &str) -> Option<Range> {
        let (a, l) = s.split_once('/')?;
        let a: Ipv4Addr = a.parse().ok()?;
        let len: u8 = l.parse().ok().filter(|l| *l <= 30)?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Some(Range {
            net: Ipv4Addr::from(u32::from(a) & mask),
            len,
        })
    }
    /// The number of usable addresses (network and broadcast excluded).
    pub fn size(&self) -> u32 {
        (1u32 << (32 - self.len)) - 2
    }
    /// The `n`th usable address (0 = network + 1).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) + 1 + n)
    }
    /// Whether `ip` is a usable address of the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let (a, n) = (u32::from(ip), u32::from(self.net));
        a > n && a - n <= self.size()
    }
    /// kube's static band (`calculateRangeOffset`): the first min(max(16, size/16), 256)
    /// addresses are handed out dynamically only when the rest is full.
    fn offset(&self) -> u32 {
        let size = self.size();
        if size < 16 {
            0
        } else {
            (size / 16).clamp(16, 256)
        }
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

/// The `n`th address of the service CIDR (1 = the `kubernetes` Service's, 10 = kube-dns's).
pub fn service_ip(cidr: &str, n: u32) -> Option<Ipv4Addr> {
    let r = Range::parse(cidr)?;
    (n >= 1 && n <= r.size()).then(|| r.nth(n - 1))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b)
}

/// kube's `field.Invalid` of a list of strings (Go's `%#v`: `[]string{"10.43.0.5"}`).
fn invalid_ips(ips: &[String], detail: String) -> Cause {
    let shown = ips
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: []string{{{shown}}}: {detail}"),
        field: "spec.clusterIPs".into(),
    }
}

/// kube's cause for node port `port` asked for in `field`.
fn invalid_port(field: &str, port: i64, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {port}: {detail}"),
        field: field.to_string(),
    }
}

/// Whether a Service of this spec gets a ClusterIP.
fn wants_ip(spec: &Value) -> bool {
    spec["type"] != "ExternalName" && spec["clusterIP"] != "None"
}

/// Whether a Service of this spec gets node ports.
fn wants_node_ports(spec: &Value) -> bool {
    matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"))
}

/// Whether a Service of this spec gets a `healthCheckNodePort` (kube's `needsHCNodePort`:
/// a LoadBalancer with `externalTrafficPolicy: Local`).
fn wants_health_check_port(spec: &Value) -> bool {
    spec["type"] == "LoadBalancer" && spec["externalTrafficPolicy"] == "Local"
}

/// Keys taken for one write, released again if the write fails.
#[derive(Debug, Default)]
pub(crate) struct Taken(pub Vec<String>);

impl ApiServer {
    fn service_range(&self) -> ApiResult<Range> {
        Range::parse(&self.config.service_cidr).ok_or_else(|| {
            ApiError::Internal(format!(
                "invalid service CIDR {:?} (IPv4 only)",
                self.config.service_cidr
            ))
        })
    }

    /// Takes `key` for `owner` (its metadata): `Ok(true)` when taken now, `Ok(false)` when
    /// it is someone else's.
    async fn claim(&self, key: &str, owner: &Value) -> ApiResult<bool> {
        let record = json!({
            "apiVersion": "v1",
            "kind": "RangeAllocation",
            "metadata": {"name": key.rsplit('/').next().unwrap_or("")},
            "service": {
                "namespace": owner["namespace"],
                "name": owner["name"],
                "uid": owner["uid"],
            },
            "allocated": unix_now(),
        });
        match self.store.create(key, encode(&record)).await {
            Ok(_) => return Ok(true),
            Err(barge_datastore::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // Taken: reclaim it only when its Service is gone (or no longer holds it).
        let (_, kv) = self.store.get(key, None).await?;
        let Some(kv) = kv else { return Ok(false) };
        let held = decode(&kv)?;
        if held["service"]["uid"] == owner["uid"] {
            return Ok(true);
        }
        if unix_now() - held["allocated"].as_i64().unwrap_or(0) < GRACE_SECS {
            return Ok(false);
        }
        let svc_key = format!(
            "/registry/services/specs/{}/{}",
            held["service"]["namespace"].as_str().unwrap_or(""),
            held["service"]["name"].as_str().unwrap_or("")
        );
        let (_, svc) = self.store.get(&svc_key, None).await?;
        if let Some(svc) = svc {
            let svc = decode(&svc)?;
            if svc["metadata"]["uid"] == held["service"]["uid"] && holds(&svc, key) {
                return Ok(false);
            }
        }
        match self
            .store
            .update(key, encode(&record), kv.mod_revision)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                barge_datastore::Error::Conflict { .. } | barge_datastore::Error::NotFound { .. },
            ) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Drops the allocation keys `keys` if `uid` still owns them.
    pub(crate) async fn release_keys(&self, keys: &[String], uid: &Value) {
        for key in keys {
            let Ok((_, Some(kv))) = self.store.get(key, None).await else {
                continue;
            };
            let Ok(held) = decode(&kv) else { continue };
            if &held["service"]["uid"] == uid {
                let _ = self.store.delete(key, Some(kv.mod_revision)).await;
            }
        }
    }

    /// Records the new name of a Service whose generated name was taken.
    pub(crate) async fn rename_taken(&self, taken: &Taken, name: &str) {
        for key in &taken.0 {
            if let Ok((_, Some(kv))) = self.store.get(key, None).await {
                if let Ok(mut held) = decode(&kv) {
                    held["service"]["name"] = json!(name);
                    let _ = self.store.update(key, encode(&held), kv.mod_revision).await;
                }
            }
        }
    }

    /// Releases what the deleted Service `obj` held.
    pub(crate) async fn release_service(&self, info: &ResourceInfo, obj: &Value) {
        if (info.group, info.plural) != ("", "services") {
            return;
        }
        self.release_keys(&held_keys(obj), &obj["metadata"]["uid"])
            .await;
    }

    /// Allocates a new Service's ClusterIP and node ports into `obj` (create). Returns the
    /// keys taken (to release if the store fails). A dry run checks without taking.
    pub(crate) async fn allocate_service(
        &self,
        info: &ResourceInfo,
        obj: &mut Value,
        dry_run: bool,
    ) -> ApiResult<Taken> {
        if (info.group, info.plural) != ("", "services") {
            return Ok(Taken::default());
        }
        let mut taken = Taken::default();
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        let r = self
            .allocate_into(obj, &Value::Null, dry_run, &mut taken)
            .await;
        if let Err(causes) = r {
            self.release_keys(&taken.0, &obj["metadata"]["uid"]).await;
            return Err(match causes {
                Alloc::Invalid(c) => super::object::invalid(info, &name, c),
                Alloc::Api(e) => e,
            });
        }
        Ok(taken)
    }

    /// Adjusts the allocations of an updated Service `new` (stored as `old`): a type change
    /// to ExternalName drops the ClusterIP, away from NodePort/LoadBalancer the node ports;
    /// new ports get node ports. Returns the keys taken now and the keys to release once the
    /// update is stored.
    pub(crate) async fn reallocate_service(
        &self,
        info: &ResourceInfo,
        old: &Value,
        new: &mut Value,
        dry_run: bool,
    ) -> ApiResult<(Taken, Vec<String>)> {
        if (info.group, info.plural) != ("", "services") || !new["spec"].is_object() {
            return Ok((Taken::default(), Vec::new()));
        }
        // kube's dropTypeDependentFields.
        if new["spec"]["type"] == "ExternalName" {
            let spec = new["spec"].as_object_mut().expect("checked");
            for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                spec.remove(f);
            }
        }
        if !wants_health_check_port(&new["spec"])
            && new["spec"]["healthCheckNodePort"] == old["spec"]["healthCheckNodePort"]
        {
            if let Some(spec) = new["spec"].as_object_mut() {
                spec.remove("healthCheckNodePort");
            }
        }
        if !wants_node_ports(&new["spec"]) {
            if let Some(ports) = new["spec"]["ports"].as_array_mut() {
                for p in ports {
                    if let Some(p) = p.as_object_mut() {
                        p.remove("nodePort");
                    }
                }
            }
        }
        let name = meta_str(new, "name").unwrap_or("").to_string();
        let mut taken = Taken::default();
        if let Err(e) = self.allocate_into(new, old, dry_run, &mut taken).await {
            self.release_keys(&taken.0, &new["metadata"]["uid"]).await;
            return Err(match e {
                Alloc::Invalid(c) => super::object::invalid(info, &name, c),
                Alloc::Api(e) => e,
            });
        }
        let now: std::collections::HashSet<String> = held_keys(new).into_iter().collect();
        let release = held_keys(old)
            .into_iter()
            .filter(|k| !now.contains(k))
            .collect();
        Ok((taken, release))
    }

    /// Fills `obj`'s ClusterIP and node ports, taking keys not already held by `old`.
    async fn allocate_into(
        &self,
        obj: &mut Value,
        old: &Value,
        dry_run: bool,
        taken: &mut Taken,
    ) -> Result<(), Alloc> {
        let owner = obj["metadata"].clone();
        let old_keys: std::collections::HashSet<String> = held_keys(old).into_iter().collect();
        let range = self.service_range().map_err(Alloc::Api)?;
        let spec = obj["spec"].clone();
        if !spec.is_object() {
            return Ok(());
        }
        // The ClusterIP.
        if spec["type"] != "ExternalName" {
            let given = spec["clusterIP"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(String::from)
                .or_else(|| {
                    spec["clusterIPs"][0]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                });
            match given.as_deref() {
                Some("None") => {
                    obj["spec"]["clusterIP"] = json!("None");
                    obj["spec"]["clusterIPs"] = json!(["None"]);
                }
                Some(ip_s) => {
                    let shown = vec![ip_s.to_string()];
                    let ip: Ipv4Addr = match ip_s.parse::<IpAddr>() {
                        Ok(IpAddr::V4(ip)) => ip,
                        Ok(IpAddr::V6(_)) | Err(_) => {
                            return Err(Alloc::Invalid(vec![Cause {
                                reason: "FieldValueInvalid".into(),
                                message: format!("Invalid value: {ip_s:?}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
                                field: "spec.clusterIPs[0]".into(),
                            }]));
                        }
                    };
                    let key = format!("{IP_PREFIX}{ip}");
                    if !old_keys.contains(&key) {
                        if !range.contains(ip) {
                            return Err(Alloc::Invalid(vec![invalid_ips(
                                &shown,
                                format!("failed to allocate IP {ip}: provided IP is not in the valid range. The range of valid IPs is {range}"),
                            )]));
                        }
                        let free = if dry_run {
                            self.store
                                .get(&key, None)
                                .await
                                .map_err(|e| Alloc::Api(e.into()))?
                                .1
                                .is_none()
                        } else {
                            self.claim(&key, &owner).await.map_err(Alloc::Api)?
                        };
                        if !free {
                            return Err(Alloc::Invalid(vec![invalid_ips(
                                &shown,
                                format!(
                                    "failed to allocate IP {ip}: provided IP is already allocated"
                                ),
                            )]));
                        }
                        if !dry_run {
                            taken.0.push(key);
                        }
                    }
                    obj["spec"]["clusterIP"] = json!(ip.to_string());
                    obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
                }
                None => {
                    let ip = self
                        .next_ip(range, &owner, dry_run)
                        .await
                        .map_err(Alloc::Api)?;
                    if !dry_run {
                        taken.0.push(format!("{IP_PREFIX}{ip}"));
                    }
                    obj["spec"]["clusterIP"] = json!(ip.to_string());
                    obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
                }
            }
            let spec = obj["spec"].as_object_mut().expect("an object");
            spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
            spec.entry("ipFamilyPolicy")
                .or_insert_with(|| json!("SingleStack"));
        }
        // Node ports: one per port number (a TCP and a UDP port of one Service may share it).
        if wants_node_ports(&spec) {
            let n = spec["ports"].as_array().map(Vec::len).unwrap_or(0);
            let mut mine: Vec<u16> = Vec::new();
            for i in 0..n {
                let given = obj["spec"]["ports"][i]["nodePort"]
                    .as_i64()
                    .filter(|p| *p != 0);
                match given {
                    Some(p) => {
                        let field = format!("spec.ports[{i}].nodePort");
                        if !mine.contains(&(p as u16)) {
                            self.take_given_port(p, &field, &owner, &old_keys, dry_run, taken)
                                .await?;
                        }
                        mine.push(p as u16);
                    }
                    None => {
                        let p = self.next_port(&owner, dry_run).await.map_err(Alloc::Api)?;
                        if !dry_run {
                            taken.0.push(format!("{PORT_PREFIX}{p}"));
                        }
                        mine.push(p);
                        obj["spec"]["ports"][i]["nodePort"] = json!(p);
                    }
                }
            }
        }
        // The health check node port (kube's `allocHealthCheckNodePort`): given, or the next
        // free one.
        if wants_health_check_port(&spec) {
            match spec["healthCheckNodePort"].as_i64().filter(|p| *p != 0) {
                Some(p) => {
                    let field = "spec.healthCheckNodePort";
                    self.take_given_port(p, field, &owner, &old_keys, dry_run, taken)
                        .await?;
                }
                None => {
                    let p = self.next_port(&owner, dry_run).await.map_err(Alloc::Api)?;
                    if !dry_run {
                        taken.0.push(format!("{PORT_PREFIX}{p}"));
                    }
                    obj["spec"]["healthCheckNodePort"] = json!(p);
                }
            }
        }
        Ok(())
    }

    /// Takes node port `p`, which the client asked for in `field`, for `owner` (a dry run only
    /// checks; a port `old` already held stays): kube's errors when it is outside the range
    /// or another Service has it.
    async fn take_given_port(
        &self,
        p: i64,
        field: &str,
        owner: &Value,
        old_keys: &std::collections::HashSet<String>,
        dry_run: bool,
        taken: &mut Taken,
    ) -> Result<(), Alloc> {
        if p < NODE_PORTS.0 as i64 || p > NODE_PORTS.1 as i64 {
            return Err(Alloc::Invalid(vec![invalid_port(
                field,
                p,
                &format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORTS.0, NODE_PORTS.1
                ),
            )]));
        }
        let key = format!("{PORT_PREFIX}{p}");
        if old_keys.contains(&key) {
            return Ok(());
        }
        let free = if dry_run {
            self.store
                .get(&key, None)
                .await
                .map_err(|e| Alloc::Api(e.into()))?
                .1
                .is_none()
        } else {
            self.claim(&key, owner).await.map_err(Alloc::Api)?
        };
        if !free {
            return Err(Alloc::Invalid(vec![invalid_port(
                field,
                p,
                "provided port is already allocated",
            )]));
        }
        if !dry_run {
            taken.0.push(key);
        }
        Ok(())
    }

    /// A free ClusterIP: random in the dynamic band, else anywhere (kube's allocator).
    async fn next_ip(&self, range: Range, owner: &Value, dry_run: bool) -> ApiResult<Ipv4Addr> {
        for _ in 0..8 {
            let used = self.used(IP_PREFIX).await?;
            let size = range.size();
            let off = range.offset();
            let pick = |lo: u32, hi: u32| -> Option<u32> {
                if hi <= lo {
                    return None;
                }
                let start = lo + random_u32() % (hi - lo);
                (start..hi)
                    .chain(lo..start)
                    .find(|n| !used.contains(&range.nth(*n).to_string()))
            };
            let Some(n) = pick(off, size).or_else(|| pick(0, off)) else {
                break;
            };
            let ip = range.nth(n);
            if dry_run || self.claim(&format!("{IP_PREFIX}{ip}"), owner).await? {
                return Ok(ip);
            }
        }
        Err(ApiError::Internal(format!(
            "failed to allocate a serviceIP: range is full ({range})"
        )))
    }

    /// A free node port, random in the range.
    async fn next_port(&self, owner: &Value, dry_run: bool) -> ApiResult<u16> {
        let (lo, hi) = (NODE_PORTS.0 as u32, NODE_PORTS.1 as u32 + 1);
        for _ in 0..8 {
            let used = self.used(PORT_PREFIX).await?;
            let start = lo + random_u32() % (hi - lo);
            let Some(p) = (start..hi)
                .chain(lo..start)
                .find(|p| !used.contains(&p.to_string()))
            else {
                break;
            };
            if dry_run || self.claim(&format!("{PORT_PREFIX}{p}"), owner).await? {
                return Ok(p as u16);
            }
        }
        Err(ApiError::Internal(
            "failed to allocate a nodePort: range is full".into(),
        ))
    }

    /// The last path segments of the keys under `prefix`.
    async fn used(&self, prefix: &str) -> ApiResult<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::new();
        let mut opts = barge_datastore::ListOptions::default();
        loop {
            let page = self.store.list(prefix, opts.clone()).await?;
            for kv in &page.kvs {
                out.insert(kv.key.rsplit('/').next().unwrap_or("").to_string());
            }
            match (page.remaining > 0, page.kvs.last()) {
                (true, Some(last)) => {
                    opts.start_after = Some(last.key.clone());
                    opts.revision = Some(page.revision);
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Creates the `kubernetes` Service in `default` (ClusterIP the first service address,
    /// port `https` 443 → `api`'s port) with its Endpoints and EndpointSlice pointing at
    /// `api`, and — with `dns` — the `kube-dns` Service in `kube-system` at that address
    /// (ports `dns` 53/UDP, `dns-tcp` 53/TCP; no selector: each node agent publishes its own
    /// endpoint). Existing objects are updated to `api`'s address (it may have changed).
    pub async fn ensure_default_services(
        &self,
        api: std::net::SocketAddr,
        dns: Option<Ipv4Addr>,
    ) -> ApiResult<()> {
        let reg = self.registry();
        let find = |g: &str, v: &str, p: &str| {
            reg.lookup(g, v, p)
                .cloned()
                .ok_or_else(|| ApiError::Internal(format!("{p} are not registered")))
        };
        let (svc, eps, slices) = (
            find("", "v1", "services")?,
            find("", "v1", "endpoints")?,
            find("discovery.k8s.io", "v1", "endpointslices")?,
        );
        let first = service_ip(&self.config.service_cidr, 1)
            .ok_or_else(|| ApiError::Internal("the service CIDR has no address".into()))?;
        let opts = super::WriteOpts {
            dry_run: false,
            manager: "kube-apiserver".into(),
            apply: None,
        };
        let mut objs = vec![(
            &svc,
            "default",
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default",
                    "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": first.to_string(), "type": "ClusterIP",
                    "sessionAffinity": "None",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                        "targetPort": api.port()}]}}),
        )];
        if let Some(dns) = dns {
            objs.push((
                &svc,
                "kube-system",
                json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "kube-dns", "namespace": "kube-system",
                        "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                            "kubernetes.io/name": "CoreDNS"}},
                    "spec": {"clusterIP": dns.to_string(), "type": "ClusterIP",
                        "ports": [
                            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}}),
            ));
        }
        let (addr, port) = (api.ip().to_string(), api.port());
        objs.push((
            &eps,
            "default",
            json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "namespace": "default",
                    "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": addr}],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}),
        ));
        objs.push((
            &slices,
            "default",
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [addr], "conditions": {"ready": true}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
        ));
        for (info, ns, mut obj) in objs {
            let name = meta_str(&obj, "name").unwrap_or("").to_string();
            let key = info.key(Some(ns), &name);
            let (_, existing) = self.store.get(&key, None).await?;
            match existing {
                None => match self.create_object(info, Some(ns), &mut obj, &opts).await {
                    Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e),
                },
                Some(kv) if info.plural != "services" => {
                    // The API server's address may have changed since the last start.
                    let mut cur = decode(&kv)?;
                    for f in ["subsets", "endpoints", "ports"] {
                        if obj.get(f).is_some() {
                            cur[f] = obj[f].clone();
                        }
                    }
                    if cur != decode(&kv)? {
                        self.store
                            .update(&key, encode(&cur), kv.mod_revision)
                            .await?;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// kube's `dropTypeDependentFields` before an update is validated: node ports a Service
/// leaving NodePort/LoadBalancer kept from its old version are dropped (a node port the client
/// set anew stays, and validation refuses it).
pub(crate) fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    if wants_node_ports(&new["spec"]) || !wants_node_ports(&old["spec"]) {
        return;
    }
    let held: Vec<i64> = old["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_i64())
        .collect();
    for p in new["spec"]["ports"].as_array_mut().into_iter().flatten() {
        if p["nodePort"].as_i64().is_some_and(|n| held.contains(&n)) {
            if let Some(p) = p.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
}

/// Why an allocation failed.
enum Alloc {
    Invalid(Vec<Cause>),
    Api(ApiError),
}

/// The allocation keys a stored Service holds.
fn held_keys(obj: &Value) -> Vec<String> {
    let spec = &obj["spec"];
    let mut keys = Vec::new();
    if !spec.is_object() {
        return keys;
    }
    if wants_ip(spec) {
        if let Some(ip) = spec["clusterIP"].as_str().filter(|s| !s.is_empty()) {
            keys.push(format!("{IP_PREFIX}{ip}"));
        }
    }
    if wants_node_ports(spec) {
        for p in spec["ports"].as_array().into_iter().flatten() {
            if let Some(n) = p["nodePort"].as_i64() {
                let k = format!("{PORT_PREFIX}{n}");
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
    }
    if wants_health_check_port(spec) {
        if let Some(n) = spec["healthCheckNodePort"].as_i64().filter(|n| *n != 0) {
            keys.push(format!("{PORT_PREFIX}{n}"));
        }
    }
    keys
}

/// Whether the stored Service `svc` holds allocation `key`.
fn holds(svc: &Value, key: &str) -> bool {
    held_keys(svc).iter().any(|k| k == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = Range::parse("10.43.0.0/16").unwrap();
        assert_eq!(r.size(), 65534);
        assert_eq!(r.nth(0).to_string(), "10.43.0.1");
        assert!(r.contains("10.43.255.254".parse().unwrap()));
        assert!(!r.contains("10.43.255.255".parse().unwrap()));
        assert!(!r.contains("10.43.0.0".parse().unwrap()));
        assert!(!r.contains("10.44.0.1".parse().unwrap()));
        assert_eq!(r.offset(), 256);
        assert_eq!(
            service_ip("10.43.0.0/16", 10).unwrap().to_string(),
            "10.43.0.10"
        );
        assert_eq!(
            Range::parse("10.43.7.9/16").unwrap().to_string(),
            "10.43.0.0/16"
        );
    }

    #[test]
    fn held_keys_follow_the_type() {
        let s = json!({"spec": {"type": "NodePort", "clusterIP": "10.43.1.2",
            "ports": [{"port": 80, "nodePort": 30001}, {"port": 80, "protocol": "UDP", "nodePort": 30001}]}});
        assert_eq!(
            held_keys(&s),
            vec![
                "/registry/ranges/serviceips/10.43.1.2",
                "/registry/ranges/servicenodeports/30001"
            ]
        );
        let h = json!({"spec": {"type": "ClusterIP", "clusterIP": "None"}});
        assert!(held_keys(&h).is_empty());
    }
}
