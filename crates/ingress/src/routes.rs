//! The routing table: what the proxy does with a request, built whole from the cluster's
//! Ingresses, Services, EndpointSlices and TLS Secrets ([`Table::build`]), as ingress-nginx
//! users expect it (networking.k8s.io/v1 `Ingress`, its `pathType` semantics at
//! <https://kubernetes.io/docs/concepts/services-networking/ingress/#path-types>):
//!
//! - a host is matched exactly first, then by a `*.` wildcard covering exactly one more
//!   label, then the rules without a host;
//! - within the matched host, the longest matching path wins (an `Exact` path before a
//!   `Prefix` one of the same length); `Prefix` matches element by element (`/foo` matches
//!   `/foo`, `/foo/` and `/foo/bar`, not `/foobar`; a trailing `/` in the rule is ignored);
//!   `ImplementationSpecific` is treated as `Prefix`;
//! - when no path matches, an Ingress's `defaultBackend` answers (the oldest Ingress's), else
//!   the proxy's 404;
//! - a backend is a Service port (by number or by name), spread over that port's ready
//!   endpoints from the Service's EndpointSlices (serving terminating ones when none is
//!   ready, as kube-proxy does); a backend without any is a 503.
//!
//! Rules of several Ingresses on one host are merged (the oldest Ingress wins a path both
//! define). What cannot be built (a missing Service or Secret, a port the Service does not
//! have, a Secret that is not a usable `kubernetes.io/tls`) is reported as a [`Problem`] of
//! its Ingress and affects nothing else: the path still exists and answers 503.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// The label naming an EndpointSlice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One backend: a Service port and the endpoints it currently spreads over.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port` (for logs).
    pub name: String,
    /// Where requests go (empty: 503).
    pub endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Backend {
    fn new(name: String, endpoints: Vec<SocketAddr>) -> Self {
        Backend {
            name,
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    /// The next endpoint, round robin; `None`: no endpoint (the proxy answers 503).
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.endpoints[i % self.endpoints.len()])
    }
}

/// ingress-nginx's annotation for the time a backend may stay silent: before its response
/// headers, and between two reads of its body (nginx's `proxy_read_timeout`). Its value is a
/// whole number of seconds, unitless (`"120"`), as ingress-nginx parses it; anything else
/// keeps the default.
pub const PROXY_READ_TIMEOUT_ANNOTATION: &str = "nginx.ingress.kubernetes.io/proxy-read-timeout";

/// The default of [`PROXY_READ_TIMEOUT_ANNOTATION`] (ingress-nginx's: 60 s).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The timeouts of one Ingress's paths, from its annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long the backend may send nothing (headers, or the next piece of the body) before
    /// the proxy gives up: a 504 before the headers, a cut response after them.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            read: DEFAULT_READ_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// The timeouts `ing`'s annotations ask for (ingress-nginx's names and syntax: whole
    /// seconds, `"0"` and unparsable values keep the default).
    pub fn of(ing: &Ingress) -> Timeouts {
        let secs = |name: &str| {
            ing.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&n| n > 0)
                .map(Duration::from_secs)
        };
        Timeouts {
            read: secs(PROXY_READ_TIMEOUT_ANNOTATION).unwrap_or(DEFAULT_READ_TIMEOUT),
        }
    }
}

/// How a rule's path matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Exact,
    Prefix,
}

#[derive(Debug)]
struct PathRule {
    kind: PathKind,
    /// The rule's path (for `Prefix`, without its trailing `/`, `""` for `/`).
    path: String,
    backend: Arc<Backend>,
    timeouts: Timeouts,
}

impl PathRule {
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            PathKind::Exact => path == self.path,
            PathKind::Prefix => {
                self.path.is_empty()
                    || (path.starts_with(&self.path)
                        && matches!(path.as_bytes().get(self.path.len()), None | Some(b'/')))
            }
        }
    }
}

/// Something of one Ingress that could not be built (its Warning Event's reason and message).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    pub reason: &'static str,
    pub message: String,
}

/// The routing table (immutable; the proxy swaps a whole new one in on every change).
#[derive(Default)]
pub struct Table {
    exact: HashMap<String, Vec<PathRule>>,
    /// `*.example.com` rules by their suffix `example.com`.
    wildcard: HashMap<String, Vec<PathRule>>,
    any: Vec<PathRule>,
    default_backend: Option<(Arc<Backend>, Timeouts)>,
    certs: HashMap<String, Arc<CertifiedKey>>,
    wildcard_certs: HashMap<String, Arc<CertifiedKey>>,
}

/// What [`Table::route`] found.
#[derive(Debug)]
pub enum Route {
    /// The backend, and the timeouts of the Ingress whose rule matched.
    Backend(Arc<Backend>, Timeouts),
    NotFound,
}

/// The inputs of [`Table::build`]: everything of the cluster the table depends on.
pub struct Inputs<'a> {
    /// The Ingresses this controller handles.
    pub ingresses: Vec<&'a Ingress>,
    pub services: &'a [Arc<Service>],
    pub slices: &'a [Arc<EndpointSlice>],
    pub secrets: &'a [Arc<Secret>],
}

/// Lower-cases `host` and strips a port (`Host: a.example:8080`) and a final dot; a host with
/// nothing to change (the common case) is borrowed, not copied.
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    // The common case, a lowercase name without port or final dot, is borrowed as is.
    if !host.is_empty()
        && !host.ends_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return std::borrow::Cow::Borrowed(host);
    }
    let h = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|s| format!("{s}]"))
            .unwrap_or_default()
    } else {
        host.rsplit_once(':')
            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| host.to_string())
    };
    std::borrow::Cow::Owned(h.trim_end_matches('.').to_ascii_lowercase())
}

fn wildcard_suffix(host: &str) -> Option<&str> {
    host.strip_prefix("*.")
}

/// The suffix a request host would match a `*.` rule with: everything after its first label.
fn parent_of(host: &str) -> Option<&str> {
    host.split_once('.').map(|(_, rest)| rest)
}

fn best<'t>(rules: &'t [PathRule], path: &str) -> Option<&'t PathRule> {
    // Rules are sorted longest first, Exact before Prefix: the first match is the best.
    rules.iter().find(|r| r.matches(path))
}

impl Table {
    /// What a request for `host` (normalized, see [`normalize_host`]) and `path` goes to.
    pub fn route(&self, host: &str, path: &str) -> Route {
        let rules = self
            .exact
            .get(host)
            .or_else(|| parent_of(host).and_then(|p| self.wildcard.get(p)))
            .map(Vec::as_slice)
            .unwrap_or(&self.any);
        match best(rules, path) {
            Some(r) => Route::Backend(r.backend.clone(), r.timeouts),
            None => match &self.default_backend {
                Some((b, t)) => Route::Backend(b.clone(), *t),
                None => Route::NotFound,
            },
        }
    }

    /// The certificate for SNI name `name` (exact, then a `*.` wildcard).
    pub fn cert(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        self.certs
            .get(&name)
            .cloned()
            .or_else(|| parent_of(&name).and_then(|p| self.wildcard_certs.get(p).cloned()))
    }

    /// Builds the table from `inputs`; also returns each Ingress's problems.
    pub fn build(inputs: &Inputs<'_>) -> (Table, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut ings = inputs.ingresses.clone();
        // The oldest Ingress first (ingress-nginx's order), then by name.
        ings.sort_by(|a, b| {
            let key = |i: &Ingress| {
                (
                    i.metadata.creation_timestamp.clone().map(|t| t.0),
                    i.metadata.namespace.clone(),
                    i.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        let mut cache: HashMap<String, Arc<Backend>> = HashMap::new();
        let mut hosts: BTreeMap<String, Vec<PathRule>> = BTreeMap::new();
        let mut t = Table::default();
        for ing in ings {
            let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
            let id = format!("{ns}/{}", ing.metadata.name.as_deref().unwrap_or_default());
            let Some(spec) = &ing.spec else { continue };
            let timeouts = Timeouts::of(ing);
            let mut backend = |b: &IngressBackend, problems: &mut Vec<Problem>| {
                resolve(inputs, ns, b, &id, &mut cache, problems)
            };
            if let Some(b) = &spec.default_backend {
                let b = backend(b, &mut problems);
                if t.default_backend.is_none() {
                    t.default_backend = b.map(|b| (b, timeouts));
                }
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule
                    .host
                    .as_deref()
                    .map(|h| h.to_ascii_lowercase())
                    .unwrap_or_default();
                let Some(http) = &rule.http else { continue };
                for p in &http.paths {
                    let Some(b) = backend(&p.backend, &mut problems) else {
                        continue;
                    };
                    let raw = p.path.as_deref().unwrap_or("/");
                    let kind = match p.path_type.as_str() {
                        "Exact" => PathKind::Exact,
                        _ => PathKind::Prefix,
                    };
                    let path = match kind {
                        PathKind::Exact => raw.to_string(),
                        PathKind::Prefix => raw.trim_end_matches('/').to_string(),
                    };
                    let rules = hosts.entry(host.clone()).or_default();
                    // The oldest Ingress keeps a path both define.
                    if rules.iter().any(|r| r.kind == kind && r.path == path) {
                        continue;
                    }
                    rules.push(PathRule {
                        kind,
                        path,
                        backend: b,
                        timeouts,
                    });
                }
            }
            for tls in spec.tls.iter().flatten() {
                let Some(secret) = tls.secret_name.as_deref() else {
                    continue;
                };
                let key = match certified_key(inputs, ns, secret) {
                    Ok(k) => Arc::new(k),
                    Err((reason, message)) => {
                        problems.push(Problem {
                            ingress: id.clone(),
                            reason,
                            message,
                        });
                        continue;
                    }
                };
                for h in tls.hosts.iter().flatten() {
                    let h = h.to_ascii_lowercase();
                    match wildcard_suffix(&h) {
                        Some(s) => {
                            t.wildcard_certs.entry(s.to_string()).or_insert(key.clone());
                        }
                        None => {
                            t.certs.entry(h).or_insert(key.clone());
                        }
                    }
                }
            }
        }
        for (host, mut rules) in hosts {
            rules.sort_by(|a, b| {
                b.path
                    .len()
                    .cmp(&a.path.len())
                    .then((a.kind == PathKind::Prefix).cmp(&(b.kind == PathKind::Prefix)))
            });
            if host.is_empty() {
                t.any = rules;
            } else if let Some(s) = wildcard_suffix(&host) {
                t.wildcard.insert(s.to_string(), rules);
            } else {
                t.exact.insert(host, rules);
            }
        }
        problems.sort();
        problems.dedup();
        (t, problems)
    }
}

/// The backend of `b` in namespace `ns` (`None`: a resource backend, not served).
fn resolve(
    inputs: &Inputs<'_>,
    ns: &str,
    b: &IngressBackend,
    ingress: &str,
    cache: &mut HashMap<String, Arc<Backend>>,
    problems: &mut Vec<Problem>,
) -> Option<Arc<Backend>> {
    let Some(sb) = &b.service else {
        problems.push(Problem {
            ingress: ingress.to_string(),
            reason: "UnsupportedBackend",
            message: "resource backends are not supported; use a Service backend".into(),
        });
        return None;
    };
    let port = sb.port.as_ref();
    let port_key = port
        .and_then(|p| p.name.clone().or(p.number.map(|n| n.to_string())))
        .unwrap_or_default();
    let name = format!("{ns}/{}:{port_key}", sb.name);
    if let Some(b) = cache.get(&name) {
        if b.endpoints.is_empty() {
            // Say why again for this Ingress.
            if let Err(p) = endpoints(inputs, ns, &sb.name, port, ingress) {
                problems.push(p);
            }
        }
        return Some(b.clone());
    }
    let eps = match endpoints(inputs, ns, &sb.name, port, ingress) {
        Ok(e) => e,
        Err(p) => {
            problems.push(p);
            Vec::new()
        }
    };
    let b = Arc::new(Backend::new(name.clone(), eps));
    cache.insert(name, b.clone());
    Some(b)
}

/// The endpoints of Service `ns/svc`'s port `port` (by number or name).
fn endpoints(
    inputs: &Inputs<'_>,
    ns: &str,
    svc: &str,
    port: Option<&k8s_openapi::api::networking::v1::ServiceBackendPort>,
    ingress: &str,
) -> Result<Vec<SocketAddr>, Problem> {
    let problem = |reason, message| Problem {
        ingress: ingress.to_string(),
        reason,
        message,
    };
    let Some(service) = inputs.services.iter().find(|s| {
        s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(svc)
    }) else {
        return Err(problem(
            "ServiceNotFound",
            format!("Service \"{ns}/{svc}\" not found"),
        ));
    };
    let sports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let sp = match port {
        Some(p) if p.name.is_some() => sports.iter().find(|sp| sp.name == p.name),
        Some(p) if p.number.is_some() => sports.iter().find(|sp| Some(sp.port) == p.number),
        _ => None,
    };
    let Some(sp) = sp else {
        let want = port
            .and_then(|p| p.name.clone().or(p.number.map(|n| n.to_string())))
            .unwrap_or_default();
        return Err(problem(
            "PortNotFound",
            format!("Service \"{ns}/{svc}\" has no port {want:?}"),
        ));
    };
    let pname = sp.name.clone().unwrap_or_default();
    let proto = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
    let (mut ready, mut fallback) = (Vec::new(), Vec::new());
    for s in inputs.slices.iter().filter(|s| {
        s.metadata.namespace.as_deref() == Some(ns)
            && s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                == Some(svc)
            && s.address_type == "IPv4"
    }) {
        let Some(port) = s
            .ports
            .iter()
            .flatten()
            .find(|p| {
                p.name.clone().unwrap_or_default() == pname
                    && p.protocol.clone().unwrap_or_else(|| "TCP".into()) == proto
            })
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for e in &s.endpoints {
            let Some(ip) = e.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            let c = e.conditions.as_ref();
            let r = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(r);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            if r {
                ready.push(SocketAddr::new(ip, port));
            } else if serving && terminating {
                fallback.push(SocketAddr::new(ip, port));
            }
        }
    }
    let mut eps = if ready.is_empty() { fallback } else { ready };
    eps.sort();
    eps.dedup();
    Ok(eps)
}

/// The certificate and key of `kubernetes.io/tls` Secret `ns/name`.
fn certified_key(
    inputs: &Inputs<'_>,
    ns: &str,
    name: &str,
) -> Result<CertifiedKey, (&'static str, String)> {
    let Some(secret) = inputs.secrets.iter().find(|s| {
        s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name)
    }) else {
        return Err((
            "SecretNotFound",
            format!("Secret \"{ns}/{name}\" not found"),
        ));
    };
    let data = secret.data.clone().unwrap_or_default();
    let (Some(crt), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) else {
        return Err((
            "InvalidSecret",
            format!("Secret \"{ns}/{name}\" has no tls.crt and tls.key"),
        ));
    };
    certified_key_from_pem(&crt.0, &key.0)
        .map_err(|e| ("InvalidSecret", format!("Secret \"{ns}/{name}\": {e}")))
}

/// A rustls certified key (ring) from a PEM certificate chain and private key.
pub fn certified_key_from_pem(crt: &[u8], key: &[u8]) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("tls.key: {e}"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("tls.key: {e}"))?;
    Ok(CertifiedKey::new(chain, signing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, ports: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": ns, "name": name},
                "spec": {"ports": ports}
            }))
            .unwrap(),
        )
    }

    fn slice(
        ns: &str,
        svc: &str,
        pname: &str,
        port: u16,
        eps: &[(&str, bool)],
    ) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": ns, "name": format!("{svc}-x"),
                    "labels": {SERVICE_NAME_LABEL: svc}},
                "addressType": "IPv4",
                "ports": [{"name": pname, "port": port, "protocol": "TCP"}],
                "endpoints": eps.iter().map(|(ip, ready)| json!({
                    "addresses": [ip], "conditions": {"ready": ready}})).collect::<Vec<_>>(),
            }))
            .unwrap(),
        )
    }

    fn ing(name: &str, spec: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"namespace": "web", "name": name,
                "creationTimestamp": format!("2026-01-01T00:00:0{}Z", name.len() % 10)},
            "spec": spec
        }))
        .unwrap()
    }

    fn backend(svc: &str, port: serde_json::Value) -> serde_json::Value {
        json!({"service": {"name": svc, "port": port}})
    }

    fn target(t: &Table, host: &str, path: &str) -> String {
        match t.route(host, path) {
            Route::Backend(b, _) => b.name.clone(),
            Route::NotFound => "404".into(),
        }
    }

    #[test]
    fn hosts_paths_and_longest_match() {
        let services = vec![
            svc("web", "a", json!([{"name": "http", "port": 80}])),
            svc("web", "b", json!([{"port": 8080}])),
        ];
        let slices = vec![
            slice(
                "web",
                "a",
                "http",
                8080,
                &[("10.1.0.1", true), ("10.1.0.2", false)],
            ),
            slice("web", "b", "", 9090, &[]),
        ];
        let i = ing(
            "one",
            json!({"rules": [
                {"host": "a.example", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend("a", json!({"name": "http"}))},
                    {"path": "/api/", "pathType": "Prefix", "backend": backend("b", json!({"number": 8080}))},
                    {"path": "/exact", "pathType": "Exact", "backend": backend("b", json!({"number": 8080}))},
                    {"path": "/impl", "pathType": "ImplementationSpecific", "backend": backend("b", json!({"number": 8080}))},
                ]}},
                {"host": "*.wild.example", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend("b", json!({"number": 8080}))},
                ]}},
            ]}),
        );
        let (t, problems) = Table::build(&Inputs {
            ingresses: vec![&i],
            services: &services,
            slices: &slices,
            secrets: &[],
        });
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(target(&t, "a.example", "/"), "web/a:http");
        assert_eq!(target(&t, "a.example", "/apix"), "web/a:http");
        assert_eq!(target(&t, "a.example", "/api"), "web/b:8080");
        assert_eq!(target(&t, "a.example", "/api/v1"), "web/b:8080");
        assert_eq!(target(&t, "a.example", "/exact"), "web/b:8080");
        assert_eq!(target(&t, "a.example", "/exact/x"), "web/a:http");
        assert_eq!(target(&t, "a.example", "/impl/x"), "web/b:8080");
        assert_eq!(target(&t, "x.wild.example", "/"), "web/b:8080");
        assert_eq!(target(&t, "y.x.wild.example", "/"), "404");
        assert_eq!(target(&t, "wild.example", "/"), "404");
        assert_eq!(target(&t, "other", "/"), "404");
        // Only the ready endpoint; b has none.
        let Route::Backend(a, _) = t.route("a.example", "/") else {
            panic!()
        };
        assert_eq!(a.endpoints, vec!["10.1.0.1:8080".parse().unwrap()]);
        assert_eq!(a.pick(), a.pick());
        let Route::Backend(b, _) = t.route("a.example", "/api") else {
            panic!()
        };
        assert!(b.pick().is_none());
    }

    #[test]
    fn default_backend_and_problems_stay_with_their_ingress() {
        let services = vec![svc("web", "a", json!([{"port": 80}]))];
        let good = ing(
            "good",
            json!({"defaultBackend": backend("a", json!({"number": 80})),
                "rules": [{"host": "g.example", "http": {"paths": [
                    {"path": "/g", "pathType": "Prefix", "backend": backend("a", json!({"number": 80}))}]}}]}),
        );
        let bad = ing(
            "bad-one",
            json!({"tls": [{"hosts": ["b.example"], "secretName": "nope"}],
                "rules": [{"host": "b.example", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend("missing", json!({"number": 80}))},
                    {"path": "/p", "pathType": "Prefix", "backend": backend("a", json!({"name": "nope"}))}]}}]}),
        );
        let (t, problems) = Table::build(&Inputs {
            ingresses: vec![&good, &bad],
            services: &services,
            slices: &[],
            secrets: &[],
        });
        let reasons: Vec<_> = problems
            .iter()
            .map(|p| (p.ingress.as_str(), p.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("web/bad-one", "PortNotFound"),
                ("web/bad-one", "SecretNotFound"),
                ("web/bad-one", "ServiceNotFound"),
            ]
        );
        assert_eq!(target(&t, "g.example", "/g"), "web/a:80");
        // No path matches: the default backend.
        assert_eq!(target(&t, "g.example", "/other"), "web/a:80");
        assert_eq!(target(&t, "b.example", "/"), "web/missing:80");
        assert!(t.cert("b.example").is_none());
    }

    #[test]
    fn read_timeout_annotation_applies_to_its_own_ingress_only() {
        let services = vec![svc("web", "a", json!([{"port": 80}]))];
        let mut slow = ing(
            "slow",
            json!({"rules": [{"host": "slow.example", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": backend("a", json!({"number": 80}))}]}}]}),
        );
        slow.metadata.annotations = Some(
            [(PROXY_READ_TIMEOUT_ANNOTATION.to_string(), "7".to_string())]
                .into_iter()
                .collect(),
        );
        let mut junk = ing(
            "junk",
            json!({"rules": [{"host": "junk.example", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": backend("a", json!({"number": 80}))}]}}]}),
        );
        junk.metadata.annotations = Some(
            [(PROXY_READ_TIMEOUT_ANNOTATION.to_string(), "7s".to_string())]
                .into_iter()
                .collect(),
        );
        let plain = ing(
            "plain",
            json!({"rules": [{"host": "plain.example", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": backend("a", json!({"number": 80}))}]}}]}),
        );
        let (t, _) = Table::build(&Inputs {
            ingresses: vec![&slow, &junk, &plain],
            services: &services,
            slices: &[],
            secrets: &[],
        });
        let read = |host: &str| match t.route(host, "/") {
            Route::Backend(_, to) => to.read,
            Route::NotFound => panic!("{host}: no route"),
        };
        assert_eq!(read("slow.example"), Duration::from_secs(7));
        assert_eq!(
            read("junk.example"),
            DEFAULT_READ_TIMEOUT,
            "ingress-nginx: whole seconds only"
        );
        assert_eq!(read("plain.example"), DEFAULT_READ_TIMEOUT);
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("A.Example:8080"), "a.example");
        assert_eq!(normalize_host("a.example."), "a.example");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert!(matches!(
            normalize_host("a-1.example"),
            std::borrow::Cow::Borrowed("a-1.example")
        ));
    }
}
