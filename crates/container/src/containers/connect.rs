//! Networks and legacy links of a container: `network connect`/`disconnect` (endpoints in
//! its settings, and live for a running container) and `--link` checks at create, link
//! targets at start, `rm --link`.
//!
//! **Invariants:** a container's networks are its `HostOptions` endpoints (the record is
//! persisted after every change); links are stored as `TARGET:ALIAS` with the target by name,
//! and host networking never has links.

use super::Containers;
use crate::*;

impl Containers {
    /// Connects a container to a network (Docker's `network connect`): a running container
    /// gets the endpoint now, and every container keeps it in its settings for later starts.
    /// Errors: network or container not found (404), already connected or a container without
    /// bridge networking (409/400).
    pub fn connect_network(
        &self,
        id: &str,
        req: barge_network::EndpointRequest,
    ) -> Result<(), ContainerError> {
        let nets = self
            .networks
            .get()
            .ok_or_else(|| ContainerError::InvalidOption {
                field: "network".into(),
                reason: "networking is not available".into(),
            })?;
        let c = self.get(id)?;
        let net = nets.get(&req.network)?;
        let host = &c.options.host;
        if matches!(
            crate::net::mode(host),
            crate::net::Mode::Host | crate::net::Mode::Container(_) | crate::net::Mode::Sandbox(_)
        ) {
            return Err(ContainerError::InvalidOption {
                field: "network".into(),
                reason: format!(
                    "container sharing network namespace with another container or host cannot be connected to any other network ({})",
                    host.network_mode
                ),
            });
        }
        let mut req = req;
        req.network = net.name.clone();
        let already = crate::net::primary_network(host).as_deref() == Some(net.name.as_str())
            && host.network_mode != "none"
            || host.endpoints.iter().any(|e| e.network == net.name);
        let running = matches!(c.state.status, Status::Running | Status::Paused);
        // A running container with a network sandbox joins now, also one whose last
        // network was disconnected (its mode became `none` but its namespace is barge's).
        if running && (host.network_mode != "none" || nets.sandbox(&c.id).is_some()) {
            nets.connect(&c.id, &c.name, &req)?;
        } else if already {
            return Err(ContainerError::InvalidOption {
                field: "network".into(),
                reason: format!(
                    "endpoint with name {} already exists in network {}",
                    c.name, net.name
                ),
            });
        }
        let mut inner = self.lock();
        if let Some(rec) = inner.containers.get_mut(&c.id) {
            let h = &mut rec.options.host;
            if h.network_mode == "none" {
                h.network_mode = net.name.clone();
            }
            h.endpoints.retain(|e| e.network != net.name);
            h.endpoints.push(req);
        }
        drop(inner);
        self.persist(&c.id)
    }

    /// Disconnects a container from a network (Docker's `network disconnect`).
    pub fn disconnect_network(&self, id: &str, network: &str) -> Result<(), ContainerError> {
        let nets = self
            .networks
            .get()
            .ok_or_else(|| ContainerError::InvalidOption {
                field: "network".into(),
                reason: "networking is not available".into(),
            })?;
        let c = self.get(id)?;
        let net = nets.get(network)?;
        let host = &c.options.host;
        let connected = crate::net::primary_network(host).as_deref() == Some(net.name.as_str())
            || host.endpoints.iter().any(|e| e.network == net.name)
            || (net.name == "bridge" && matches!(host.network_mode.as_str(), "" | "default"));
        if !connected {
            return Err(ContainerError::InvalidOption {
                field: "network".into(),
                reason: format!(
                    "container {} is not connected to network {}",
                    c.name, net.name
                ),
            });
        }
        if c.state.status == Status::Running && nets.sandbox(&c.id).is_some() {
            nets.disconnect(&c.id, &net.id)?;
        }
        let mut inner = self.lock();
        if let Some(rec) = inner.containers.get_mut(&c.id) {
            let h = &mut rec.options.host;
            h.endpoints.retain(|e| e.network != net.name);
            if crate::net::primary_network(h).as_deref() == Some(net.name.as_str()) {
                h.network_mode = h
                    .endpoints
                    .first()
                    .map(|e| e.network.clone())
                    .unwrap_or_else(|| "none".into());
            }
        }
        drop(inner);
        self.persist(&c.id)
    }

    /// Names of the networks a container is (or will be, once started) connected to, in order.
    pub fn network_names(c: &Container) -> Vec<String> {
        match crate::net::mode(&c.options.host) {
            crate::net::Mode::Bridge(eps) => eps.into_iter().map(|e| e.network).collect(),
            crate::net::Mode::Host => vec!["host".into()],
            crate::net::Mode::None => vec!["none".into()],
            crate::net::Mode::Container(_) | crate::net::Mode::Sandbox(_) => Vec::new(),
        }
    }

    /// Normalizes `--link NAME[:ALIAS]` entries to `TARGET:ALIAS` (target by name) and checks
    /// them as dockerd's `registerLinks`: the target must exist, host networking has no links.
    pub(super) fn check_links(&self, host: &mut HostOptions) -> Result<(), ContainerError> {
        if host.links.is_empty() {
            return Ok(());
        }
        if host.network_mode == "host" {
            return Err(ContainerError::BadHostConfig(
                "conflicting options: host type networking can't be used with links. This would result in undefined behavior".into(),
            ));
        }
        let mut out = Vec::new();
        for l in &host.links {
            let (name, alias) = match l.split_once(':') {
                Some((n, a)) => (n, a.rsplit('/').next().unwrap_or(a)),
                None => (l.as_str(), l.trim_start_matches('/')),
            };
            let name = name.trim_start_matches('/');
            let target = self
                .get(name)
                .map_err(|_| ContainerError::LinkNotFound(name.to_string()))?;
            let alias = if alias.is_empty() {
                target.name.as_str()
            } else {
                alias
            };
            out.push(format!("{}:{alias}", target.name));
        }
        host.links = out;
        Ok(())
    }

    /// The running targets of `c`'s legacy links, with their default-bridge addresses (else
    /// their first network's).
    /// Errors as dockerd: `Cannot link to a non running container: /T AS /C/ALIAS`.
    pub(super) fn link_targets(
        &self,
        c: &Container,
    ) -> Result<Vec<(Container, String, std::net::Ipv4Addr)>, ContainerError> {
        let mut out = Vec::new();
        for l in &c.options.host.links {
            let (name, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
            let t = self
                .get(name)
                .map_err(|_| ContainerError::LinkNotFound(name.to_string()))?;
            let ip = (t.state.status == Status::Running)
                .then(|| self.networks.get().and_then(|n| n.sandbox(&t.id)))
                .flatten()
                .and_then(|sb| {
                    // The default bridge's address; on user-defined networks (where dockerd
                    // turns links into aliases of the shared network) the target's address
                    // there.
                    sb.endpoints
                        .iter()
                        .find(|e| e.network_name == "bridge")
                        .or_else(|| sb.endpoints.first())
                        .map(|e| e.ip)
                });
            let Some(ip) = ip else {
                return Err(ContainerError::BadHostConfig(format!(
                    "Cannot link to a non running container: /{} AS /{}/{alias}",
                    t.name, c.name
                )));
            };
            out.push((t, alias.to_string(), ip));
        }
        Ok(out)
    }

    /// Removes the legacy link `/PARENT/ALIAS` (`DELETE /containers/PARENT/ALIAS?link=1`).
    pub fn remove_link(&self, parent: &str, alias: &str) -> Result<(), ContainerError> {
        let mut inner = self.lock();
        let id = Self::find_id(&inner, parent)?;
        let c = inner.containers.get_mut(&id).expect("found above");
        let before = c.options.host.links.len();
        c.options
            .host
            .links
            .retain(|l| l.split_once(':').map(|x| x.1) != Some(alias));
        if c.options.host.links.len() == before {
            return Err(ContainerError::NotFound(format!("/{}/{alias}", c.name)));
        }
        let c = c.clone();
        self.save(&c)
    }
}
