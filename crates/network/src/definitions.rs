//! Network definitions: the predefined `bridge`, `host` and `none` networks, lookup by name,
//! ID or ID prefix, `docker network create` (name check, subnet/gateway/IP range choice for
//! both families, `--internal`, options), bringing a network's bridge up, `rm` and `prune`.
//!
//! **Invariants:** every change to the definitions is saved to
//! `<data-root>/network/networks.json` under the lock before it is visible; a network with an
//! endpoint in any sandbox is never removed; the predefined networks cannot be removed.

use std::collections::BTreeMap;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::{
    ipam, is_predefined, link, now_rfc3339, random_hex, valid_name, CreateRequest, Endpoint, Inner,
    Ipam, Network, NetworkError, Networks, BRIDGE_NAME_OPTION, PREDEFINED,
};

impl Networks {
    pub(super) fn ensure_predefined(&self) -> Result<(), NetworkError> {
        let mut inner = self.lock();
        let mut changed = false;
        for (name, driver) in PREDEFINED.into_iter().zip(["bridge", "host", "null"]) {
            if let Some(n) = inner.networks.values_mut().find(|n| n.name == name) {
                if name == "bridge" {
                    // `--bridge`/`--bip` may change between daemon runs.
                    if n.bridge != self.cfg.bridge {
                        n.bridge = self.cfg.bridge.clone();
                        changed = true;
                    }
                    if let Some(bip) = self.cfg.bip {
                        let ipam = Ipam {
                            subnet: bip.trunc(),
                            gateway: bip.addr(),
                            ip_range: None,
                            user_subnet: true,
                            aux_addresses: Default::default(),
                        };
                        if n.ipam.as_ref() != Some(&ipam) {
                            n.ipam = Some(ipam);
                            changed = true;
                        }
                    }
                }
                continue;
            }
            let ipam = (name == "bridge").then(|| self.default_bridge_ipam());
            let mut options = BTreeMap::new();
            if name == "bridge" {
                options.insert(BRIDGE_NAME_OPTION.to_string(), self.cfg.bridge.clone());
                options.insert(
                    "com.docker.network.bridge.default_bridge".into(),
                    "true".into(),
                );
            }
            let n = Network {
                id: random_hex(32),
                name: name.into(),
                driver: driver.into(),
                created: now_rfc3339(),
                internal: false,
                attachable: false,
                ipam,
                ipam6: None,
                options,
                labels: BTreeMap::new(),
                bridge: if name == "bridge" {
                    self.cfg.bridge.clone()
                } else {
                    String::new()
                },
                dns: false,
            };
            inner.networks.insert(n.id.clone(), n);
            changed = true;
        }
        // `--ipv6`/`--fixed-cidr-v6` may change between daemon runs too.
        let others6: Vec<Ipv6Net> = inner
            .networks
            .values()
            .filter(|n| n.name != "bridge")
            .filter_map(|n| n.ipam6.as_ref().map(|i| i.subnet))
            .collect();
        if let Some(n) = inner.networks.values_mut().find(|n| n.name == "bridge") {
            let want = self.default_bridge_ipam6(n.ipam6.as_ref(), &others6)?;
            if n.ipam6 != want {
                n.ipam6 = want;
                changed = true;
            }
        }
        if changed {
            self.save_networks(&inner)?;
        }
        Ok(())
    }

    /// The default bridge's IPv6 IPAM: none without `--ipv6`; `--fixed-cidr-v6` when given
    /// (gateway its first address, as dockerd); else the /64 of `pool6` it already has, or a
    /// free one.
    fn default_bridge_ipam6(
        &self,
        current: Option<&crate::Ipam6>,
        others: &[Ipv6Net],
    ) -> Result<Option<crate::Ipam6>, NetworkError> {
        if !self.cfg.ipv6 {
            return Ok(None);
        }
        if let Some(cidr) = self.cfg.fixed_cidr_v6 {
            return ipam::build6(cidr.trunc(), None, None, true).map(Some);
        }
        if let Some(c) = current.filter(|c| !c.user_subnet) {
            return Ok(Some(c.clone()));
        }
        let mut taken = others.to_vec();
        taken.extend(ipam::host_routes6().into_iter().map(|(_, n)| n));
        let subnet = ipam::pick_subnet6(self.pool6, 64, &taken).ok_or_else(|| {
            NetworkError::Exhausted(format!("address pool {} (all subnets in use)", self.pool6))
        })?;
        ipam::build6(subnet, None, None, false).map(Some)
    }

    fn default_bridge_ipam(&self) -> Ipam {
        if let Some(bip) = self.cfg.bip {
            return Ipam {
                subnet: bip.trunc(),
                gateway: bip.addr(),
                ip_range: None,
                user_subnet: true,
                aux_addresses: Default::default(),
            };
        }
        let taken: Vec<Ipv4Net> = ipam::host_routes()
            .into_iter()
            .filter(|(i, _)| *i != self.cfg.bridge)
            .map(|(_, n)| n)
            .collect();
        let preferred: Ipv4Net = "10.87.0.0/16".parse().expect("valid");
        let subnet = if taken.iter().any(|t| ipam::overlaps(t, &preferred)) {
            ipam::pick_subnet(self.cfg.pool, 24, &taken).unwrap_or(preferred)
        } else {
            preferred
        };
        Ipam {
            subnet,
            gateway: ipam::first_host(&subnet),
            ip_range: None,
            user_subnet: false,
            aux_addresses: Default::default(),
        }
    }

    pub(super) fn find<'a>(
        inner: &'a Inner,
        name_or_id: &str,
    ) -> Result<&'a Network, NetworkError> {
        if let Some(n) = inner.networks.get(name_or_id) {
            return Ok(n);
        }
        // libnetwork's FindNetwork: a full ID, else an exact name (dockerd 20.10 allowed two
        // networks one name), else a unique ID prefix.
        let named: Vec<&Network> = inner
            .networks
            .values()
            .filter(|n| n.name == name_or_id)
            .collect();
        match named.len() {
            0 => {}
            1 => return Ok(named[0]),
            count => {
                return Err(NetworkError::Ambiguous {
                    term: name_or_id.to_string(),
                    count,
                    on_name: true,
                })
            }
        }
        let m: Vec<&Network> = inner
            .networks
            .values()
            .filter(|n| !name_or_id.is_empty() && n.id.starts_with(name_or_id))
            .collect();
        match m.len() {
            1 => Ok(m[0]),
            0 => Err(NetworkError::NotFound(name_or_id.to_string())),
            count => Err(NetworkError::Ambiguous {
                term: name_or_id.to_string(),
                count,
                on_name: false,
            }),
        }
    }

    /// All networks, sorted by name.
    pub fn list(&self) -> Vec<Network> {
        let mut v: Vec<Network> = self.lock().networks.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// A network by name, full ID or unique ID prefix.
    pub fn get(&self, name_or_id: &str) -> Result<Network, NetworkError> {
        Self::find(&self.lock(), name_or_id).cloned()
    }

    /// IDs of the containers with an endpoint on network `id`, with the endpoint.
    pub fn endpoints(&self, id: &str) -> Vec<(String, Endpoint)> {
        let inner = self.lock();
        inner
            .sandboxes
            .values()
            .flat_map(|s| {
                s.endpoints
                    .iter()
                    .filter(|e| e.network_id == id)
                    .map(|e| (s.container_id.clone(), e.clone()))
            })
            .collect()
    }

    /// Creates a user-defined bridge network and its bridge device. Errors: bad name,
    /// subnet, gateway or range (400); name in use or subnet overlapping another network (409).
    pub fn create(&self, req: CreateRequest) -> Result<Network, NetworkError> {
        self.create_sharing_name(req).map(|(n, _)| n)
    }

    /// [`Networks::create`], also returning the network whose name the new one shares when
    /// `req.allow_duplicate_name` let it through (looked up under the same lock as the
    /// creation, so a concurrent create of the name cannot slip between): dockerd before API
    /// 1.44 warns "Network with name X (id : Y) already exists" naming it.
    pub fn create_sharing_name(
        &self,
        req: CreateRequest,
    ) -> Result<(Network, Option<Network>), NetworkError> {
        if !valid_name(&req.name) {
            return Err(NetworkError::invalid("name", req.name.clone()));
        }
        let driver = req.driver.clone().unwrap_or_else(|| "bridge".into());
        if driver != "bridge" {
            return Err(NetworkError::invalid(
                "driver",
                format!("plugin \"{driver}\" not found (barge supports the bridge driver)"),
            ));
        }
        let subnet = req
            .subnet
            .as_deref()
            .map(|s| ipam::parse_subnet("subnet", s))
            .transpose()?;
        let mut user_ipam = ipam::build(subnet, req.gateway.as_deref(), req.ip_range.as_deref())?;
        let aux = ipam::aux_addresses(user_ipam.as_ref().map(|i| &i.subnet), &req.aux_addresses)?;
        if let Some(i) = &mut user_ipam {
            i.aux_addresses = aux;
        }
        let subnet6 = req
            .subnet6
            .as_deref()
            .map(|s| ipam::parse_subnet6("subnet", s))
            .transpose()?;
        if !req.enable_ipv6 && subnet6.is_some() {
            return Err(NetworkError::invalid(
                "subnet",
                "an IPv6 subnet was given but IPv6 is not enabled (EnableIPv6, --ipv6)",
            ));
        }
        if subnet6.is_none() && (req.gateway6.is_some() || req.ip_range6.is_some()) {
            return Err(NetworkError::invalid(
                "gateway",
                "an IPv6 --gateway or --ip-range needs an IPv6 --subnet",
            ));
        }
        let user_ipam6 = subnet6
            .map(|s| ipam::build6(s, req.gateway6.as_deref(), req.ip_range6.as_deref(), true))
            .transpose()?;
        let id = random_hex(32);
        let bridge = match req.options.get(BRIDGE_NAME_OPTION) {
            Some(b) => {
                if b.is_empty()
                    || b.len() > 15
                    || b.contains('/')
                    || b.contains(char::is_whitespace)
                {
                    return Err(NetworkError::invalid(
                        BRIDGE_NAME_OPTION,
                        format!("invalid interface name {b:?}"),
                    ));
                }
                b.clone()
            }
            None => format!("br-{}", &id[..12]),
        };
        let (net, same_name) = {
            let mut inner = self.lock();
            let same_name = inner
                .networks
                .values()
                .find(|n| n.name == req.name)
                .cloned();
            if same_name.is_some() && (!req.allow_duplicate_name || is_predefined(&req.name)) {
                return Err(NetworkError::NameInUse(req.name.clone()));
            }
            if inner.networks.values().any(|n| n.bridge == bridge) {
                return Err(NetworkError::Conflict(format!(
                    "bridge device {bridge} is used by another network"
                )));
            }
            let ours: Vec<Ipv4Net> = inner
                .networks
                .values()
                .filter_map(|n| n.ipam.as_ref().map(|i| i.subnet))
                .collect();
            let ipam = match user_ipam {
                Some(i) => {
                    if let Some(o) = ours.iter().find(|o| ipam::overlaps(o, &i.subnet)) {
                        return Err(NetworkError::Conflict(format!(
                            "invalid pool request: Pool overlaps with other one on this address space ({o})"
                        )));
                    }
                    i
                }
                None => {
                    let mut taken = ours;
                    taken.extend(ipam::host_routes().into_iter().map(|(_, n)| n));
                    let subnet = ipam::pick_subnet(self.cfg.pool, 24, &taken).ok_or_else(|| {
                        NetworkError::Exhausted(format!(
                            "address pool {} (all subnets in use)",
                            self.cfg.pool
                        ))
                    })?;
                    Ipam {
                        subnet,
                        gateway: ipam::first_host(&subnet),
                        ip_range: None,
                        user_subnet: false,
                        aux_addresses: Default::default(),
                    }
                }
            };
            let ipam6 = if req.enable_ipv6 {
                let ours6: Vec<Ipv6Net> = inner
                    .networks
                    .values()
                    .filter_map(|n| n.ipam6.as_ref().map(|i| i.subnet))
                    .collect();
                Some(match user_ipam6 {
                    Some(i) => {
                        if let Some(o) = ours6.iter().find(|o| ipam::overlaps6(o, &i.subnet)) {
                            return Err(NetworkError::Conflict(format!(
                                "invalid pool request: Pool overlaps with other one on this address space ({o})"
                            )));
                        }
                        i
                    }
                    None => {
                        let mut taken = ours6;
                        taken.extend(ipam::host_routes6().into_iter().map(|(_, n)| n));
                        let subnet =
                            ipam::pick_subnet6(self.pool6, 64, &taken).ok_or_else(|| {
                                NetworkError::Exhausted(format!(
                                    "address pool {} (all subnets in use)",
                                    self.pool6
                                ))
                            })?;
                        ipam::build6(subnet, None, None, false)?
                    }
                })
            } else {
                None
            };
            let net = Network {
                id: id.clone(),
                name: req.name.clone(),
                driver,
                created: now_rfc3339(),
                internal: req.internal,
                attachable: req.attachable,
                ipam: Some(ipam),
                ipam6,
                options: req.options.clone(),
                labels: req.labels.clone(),
                bridge,
                dns: true,
            };
            inner.networks.insert(id.clone(), net.clone());
            if let Err(e) = self.save_networks(&inner) {
                // Not recorded: not created.
                inner.networks.remove(&id);
                return Err(e);
            }
            (net, same_name)
        };
        if let Err(e) = self.bring_up(&net) {
            let mut inner = self.lock();
            inner.networks.remove(&id);
            if let Err(e2) = self.save_networks(&inner) {
                tracing::error!("network {id}: record not rolled back: {e2}");
            }
            drop(inner);
            let _ = link::delete_link(&net.bridge);
            return Err(e);
        }
        Ok((net, same_name))
    }

    /// Creates the bridge of `net` if needed and refreshes the rules.
    pub(super) fn bring_up(&self, net: &Network) -> Result<(), NetworkError> {
        let Some(ipam) = &net.ipam else { return Ok(()) };
        if self.lock().ensured.contains(&net.bridge) && link::link_exists(&net.bridge) {
            return Ok(());
        }
        let v6 = net
            .ipam6
            .as_ref()
            .map(|i| (i.gateway, i.subnet.prefix_len()));
        link::ensure_bridge(&net.bridge, ipam.gateway, ipam.subnet.prefix_len(), v6)?;
        if v6.is_some() && !net.internal {
            self.enable_forwarding6();
        }
        self.lock().ensured.insert(net.bridge.clone());
        self.sync_rules(false)
    }

    /// Sets option `key` of a user-defined network to `value` (`None`: removes it), saved with
    /// the network, and re-applies the rules (the only option read after creation is
    /// [`crate::NO_MASQUERADE_OPTION`]). Errors: not found, predefined.
    pub fn set_option(
        &self,
        name_or_id: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), NetworkError> {
        {
            let mut inner = self.lock();
            let mut net = Self::find(&inner, name_or_id)?.clone();
            if net.predefined() {
                return Err(NetworkError::Predefined(net.name));
            }
            let old = net.options.clone();
            match value {
                Some(v) => net.options.insert(key.to_string(), v.to_string()),
                None => net.options.remove(key),
            };
            if net.options == old {
                return Ok(());
            }
            let id = net.id.clone();
            inner.networks.insert(id.clone(), net);
            if let Err(e) = self.save_networks(&inner) {
                if let Some(n) = inner.networks.get_mut(&id) {
                    n.options = old;
                }
                return Err(e);
            }
        }
        self.sync_rules(false)
    }

    /// Removes a user-defined network and its bridge. Errors: not found (404), predefined
    /// (403), containers attached (409).
    pub fn remove(&self, name_or_id: &str) -> Result<(), NetworkError> {
        // Links of released sandboxes go before their bridge does.
        self.settle();
        let net = {
            let mut inner = self.lock();
            let net = Self::find(&inner, name_or_id)?.clone();
            if net.predefined() {
                return Err(NetworkError::Predefined(net.name));
            }
            if inner
                .sandboxes
                .values()
                .any(|s| s.endpoints.iter().any(|e| e.network_id == net.id))
            {
                return Err(NetworkError::InUse {
                    name: net.name,
                    id: net.id,
                });
            }
            inner.networks.remove(&net.id);
            if let Err(e) = self.save_networks(&inner) {
                // Still recorded: still there.
                inner.networks.insert(net.id.clone(), net);
                return Err(e);
            }
            inner.ensured.remove(&net.bridge);
            net
        };
        link::delete_link(&net.bridge)?;
        self.sync_rules(false)
    }

    /// Removes every user-defined network without endpoints whose ID is not in `keep`;
    /// returns the removed names.
    pub fn prune(&self, keep: &dyn Fn(&Network) -> bool) -> Vec<String> {
        let candidates: Vec<Network> = {
            let inner = self.lock();
            inner
                .networks
                .values()
                .filter(|n| !n.predefined())
                .filter(|n| {
                    !inner
                        .sandboxes
                        .values()
                        .any(|s| s.endpoints.iter().any(|e| e.network_id == n.id))
                })
                .filter(|n| !keep(n))
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        for n in candidates {
            if self.remove(&n.id).is_ok() {
                out.push(n.name);
            }
        }
        out
    }
}
