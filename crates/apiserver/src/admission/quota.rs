//! The ResourceQuota admission plugin (`plugin/pkg/admission/resourcequota`, evaluators in
//! `pkg/quota/v1/evaluator/core`) and the usage it counts, shared with the quota controller
//! (barge-controllers' `quota.rs`), which keeps `status.hard`/`status.used` current.
//!
//! What an object uses ([`usage`]):
//! - `count/<plural>` (core) or `count/<plural>.<group>`: 1 for any kind;
//! - the legacy counts `pods` (pods not `Succeeded`/`Failed`), `services` (plus
//!   `services.loadbalancers`/`services.nodeports` by type), `configmaps`, `secrets`,
//!   `persistentvolumeclaims`, `replicationcontrollers`, `resourcequotas`;
//! - a pod's compute: `requests.<r>` and `<r>` (cpu, memory, ephemeral-storage) from its
//!   requests, `limits.<r>` from its limits (containers summed, at least each init container);
//! - a claim's `requests.storage`.
//!
//! On create, every quota of the namespace constraining something the object uses is checked
//! against the namespace's current usage (counted live from the datastore, so it is exact even
//! before the controller's first pass): over `spec.hard` is 403 `exceeded quota: NAME,
//! requested: pods=1, used: pods=2, limited: pods=2`; a pod without a request or limit a quota
//! constrains (cpu/memory) is 403 `failed quota: NAME: must specify limits.cpu,requests.cpu`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::forbidden;
use super::limitrange::pod_totals;
pub use super::quantity::Quantity;
use crate::registry::ResourceInfo;
use crate::rest::object::meta_str;
use crate::status::ApiResult;
use crate::ApiServer;

/// A `ResourceList`: resource name → quantity.
pub type ResourceList = BTreeMap<String, Quantity>;

/// The compute resources a quota on which makes every container state them.
const MUST_SPECIFY: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];
/// Requests counted under their bare name too.
const BARE: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// The `count/…` name of `plural` in `group`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The legacy object-count name of a core kind, if it has one.
fn legacy_count(group: &str, plural: &str) -> Option<&'static str> {
    if !group.is_empty() {
        return None;
    }
    Some(match plural {
        "pods" => "pods",
        "services" => "services",
        "configmaps" => "configmaps",
        "secrets" => "secrets",
        "persistentvolumeclaims" => "persistentvolumeclaims",
        "replicationcontrollers" => "replicationcontrollers",
        "resourcequotas" => "resourcequotas",
        _ => return None,
    })
}

/// Whether a quota resource name is one that objects of `plural`.`group` are counted under.
pub fn matches(group: &str, plural: &str, resource: &str) -> bool {
    resource == count_name(group, plural)
        || legacy_count(group, plural) == Some(resource)
        || match (group, plural) {
            ("", "pods") => {
                (resource.starts_with("requests.") && resource != "requests.storage")
                    || resource.starts_with("limits.")
                    || BARE.contains(&resource)
            }
            ("", "services") => {
                resource == "services.loadbalancers" || resource == "services.nodeports"
            }
            ("", "persistentvolumeclaims") => resource == "requests.storage",
            _ => false,
        }
}

/// A pod that no longer counts (kube's `QuotaV1Pod`: terminal phase).
fn terminal_pod(obj: &Value) -> bool {
    matches!(
        obj["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// What `obj` (a `plural`.`group`) uses.
pub fn usage(group: &str, plural: &str, obj: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    if (group, plural) == ("", "pods") && terminal_pod(obj) {
        return out;
    }
    out.insert(count_name(group, plural), Quantity::count(1));
    if let Some(name) = legacy_count(group, plural) {
        out.insert(name.into(), Quantity::count(1));
    }
    match (group, plural) {
        ("", "pods") => {
            for (r, q) in pod_totals(&obj["spec"], "requests") {
                if BARE.contains(&r.as_str()) {
                    out.insert(r.clone(), q);
                }
                out.insert(format!("requests.{r}"), q);
            }
            for (r, q) in pod_totals(&obj["spec"], "limits") {
                out.insert(format!("limits.{r}"), q);
            }
        }
        ("", "services") => match obj["spec"]["type"].as_str() {
            Some("LoadBalancer") => {
                out.insert("services.loadbalancers".into(), Quantity::count(1));
                let ports = obj["spec"]["ports"].as_array().map_or(0, Vec::len);
                out.insert("services.nodeports".into(), Quantity::count(ports as i64));
            }
            Some("NodePort") => {
                let ports = obj["spec"]["ports"].as_array().map_or(0, Vec::len);
                out.insert("services.nodeports".into(), Quantity::count(ports as i64));
            }
            _ => {}
        },
        ("", "persistentvolumeclaims") => {
            if let Some(q) = super::quantity::of(&obj["spec"]["resources"]["requests"]["storage"]) {
                out.insert("requests.storage".into(), q);
            }
        }
        _ => {}
    }
    out
}

/// The kind (group, plural) whose objects a quota resource name counts.
pub fn kind_for(resource: &str) -> Option<(String, String)> {
    if let Some(k) = kind_of_count(resource) {
        return Some(k);
    }
    let core = |p: &str| Some((String::new(), p.to_string()));
    match resource {
        "requests.storage" | "persistentvolumeclaims" => core("persistentvolumeclaims"),
        "services" | "services.loadbalancers" | "services.nodeports" => core("services"),
        "pods" | "cpu" | "memory" | "ephemeral-storage" => core("pods"),
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => core(resource),
        r if r.starts_with("requests.") || r.starts_with("limits.") => core("pods"),
        _ => None,
    }
}

/// `count/x.g` → (g, x); `count/x` → ("", x).
pub fn kind_of_count(resource: &str) -> Option<(String, String)> {
    let rest = resource.strip_prefix("count/")?;
    Some(match rest.split_once('.') {
        Some((plural, group)) => (group.to_string(), plural.to_string()),
        None => (String::new(), rest.to_string()),
    })
}

/// kube's `prettyPrint`: `a=1,b=2` in key order.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The resource names each (init) container lacks among the constrained `required`.
fn missing(spec: &Value, required: &BTreeSet<String>) -> BTreeSet<String> {
    let required: BTreeSet<&String> = required
        .iter()
        .filter(|r| MUST_SPECIFY.contains(&r.as_str()))
        .collect();
    let mut out = BTreeSet::new();
    if required.is_empty() {
        return out;
    }
    for list in ["containers", "initContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            let mut has = BTreeSet::new();
            for (field, prefix) in [("requests", "requests."), ("limits", "limits.")] {
                if let Some(m) = c["resources"][field].as_object() {
                    for r in m.keys() {
                        if field == "requests" && BARE.contains(&r.as_str()) {
                            has.insert(r.clone());
                        }
                        has.insert(format!("{prefix}{r}"));
                    }
                }
            }
            for r in &required {
                if !has.contains(*r) {
                    out.insert((*r).clone());
                }
            }
        }
    }
    out
}

impl ApiServer {
    /// What the objects of `plural`.`group` in `ns` use now, summed.
    pub(crate) async fn namespace_usage(
        &self,
        ns: &str,
        group: &str,
        plural: &str,
    ) -> ApiResult<ResourceList> {
        let registry = self.registry();
        let Some(info) = registry
            .resources()
            .iter()
            .find(|r| r.group == group && r.plural == plural && r.namespaced)
        else {
            return Ok(ResourceList::new());
        };
        let mut total = ResourceList::new();
        for obj in self.stored_objects(&info.prefix(Some(ns))).await? {
            if obj["metadata"]["deletionTimestamp"].is_string() && plural != "pods" {
                continue;
            }
            for (k, q) in usage(group, plural, &obj) {
                let sum = total.get(&k).map_or(q, |t| t.plus(q));
                total.insert(k, sum);
            }
        }
        Ok(total)
    }

    /// ResourceQuota on a new `info` object `obj` in `ns`.
    pub(crate) async fn admit_quota(
        &self,
        info: &ResourceInfo,
        ns: &str,
        obj: &mut Value,
    ) -> ApiResult<()> {
        let requested = usage(info.group, info.plural, obj);
        self.check_quotas(info, ns, obj, &requested, true).await
    }

    /// ResourceQuota on an update of `old` to `new` in `ns`, as kube's quota admission does it:
    /// only what an update can grow is charged — a PersistentVolumeClaim's storage request,
    /// a Service's node ports and load balancers — and only the growth (`new`'s usage less
    /// `old`'s, the negative and zero parts dropped) is checked against what is used now.
    pub(crate) async fn admit_quota_update(
        &self,
        info: &ResourceInfo,
        ns: &str,
        old: &Value,
        new: &Value,
    ) -> ApiResult<()> {
        if !matches!(
            (info.group, info.plural),
            ("", "persistentvolumeclaims") | ("", "services")
        ) {
            return Ok(());
        }
        let before = usage(info.group, info.plural, old);
        let delta: ResourceList = usage(info.group, info.plural, new)
            .into_iter()
            .filter_map(|(k, q)| {
                let prev = before.get(&k).copied().unwrap_or(Quantity::ZERO);
                let grown = Quantity {
                    milli: q.milli - prev.milli,
                    format: q.format,
                };
                (grown.milli > 0).then_some((k, grown))
            })
            .collect();
        if delta.is_empty() {
            return Ok(());
        }
        self.check_quotas(info, ns, new, &delta, false).await
    }

    /// Checks `requested` (what `obj` adds) against every quota of `ns`; `create` also
    /// requires pods to specify the compute resources a quota constrains.
    async fn check_quotas(
        &self,
        info: &ResourceInfo,
        ns: &str,
        obj: &Value,
        requested: &ResourceList,
        create: bool,
    ) -> ApiResult<()> {
        let quotas = self
            .stored_objects(&format!("/registry/resourcequotas/{ns}/"))
            .await?;
        if quotas.is_empty() {
            return Ok(());
        }
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        let mut used: Option<ResourceList> = None;
        for quota in &quotas {
            let qname = meta_str(quota, "name").unwrap_or("");
            let hard: ResourceList = quota["spec"]["hard"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), super::quantity::of(v)?)))
                        .collect()
                })
                .unwrap_or_default();
            let constrained: BTreeSet<String> = hard
                .keys()
                .filter(|r| matches(info.group, info.plural, r))
                .cloned()
                .collect();
            if constrained.is_empty() {
                continue;
            }
            if create && (info.group, info.plural) == ("", "pods") && !terminal_pod(obj) {
                let lacking = missing(&obj["spec"], &constrained);
                if !lacking.is_empty() {
                    let list: Vec<&str> = lacking.iter().map(String::as_str).collect();
                    return Err(forbidden(
                        info,
                        &name,
                        format!("failed quota: {qname}: must specify {}", list.join(",")),
                    ));
                }
            }
            if used.is_none() {
                used = Some(self.namespace_usage(ns, info.group, info.plural).await?);
            }
            let used = used.as_ref().expect("computed above");
            let mut exceeded = Vec::new();
            for r in &constrained {
                let Some(req) = requested.get(r) else {
                    continue;
                };
                let now = used.get(r).copied().unwrap_or(Quantity::ZERO);
                if now.plus(*req) > hard[r] {
                    exceeded.push(r.clone());
                }
            }
            if !exceeded.is_empty() {
                let mask = |l: &ResourceList| -> ResourceList {
                    exceeded
                        .iter()
                        .map(|r| (r.clone(), l.get(r).copied().unwrap_or(Quantity::ZERO)))
                        .collect()
                };
                return Err(forbidden(
                    info,
                    &name,
                    format!(
                        "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                        pretty(&mask(requested)),
                        pretty(&mask(used)),
                        pretty(&mask(&hard))
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_usage_and_names() {
        let pod = json!({"spec": {"containers": [
            {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
            {"resources": {"requests": {"cpu": "250m"}}}
        ]}});
        let u = usage("", "pods", &pod);
        assert_eq!(
            pretty(&u),
            "count/pods=1,cpu=500m,limits.cpu=1,memory=64Mi,pods=1,requests.cpu=500m,requests.memory=64Mi"
        );
        assert!(matches("apps", "deployments", "count/deployments.apps"));
        assert!(matches("", "pods", "requests.cpu"));
        assert!(!matches("", "configmaps", "requests.cpu"));
        assert_eq!(
            kind_of_count("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        let required: BTreeSet<String> =
            ["requests.cpu".to_string(), "limits.cpu".to_string()].into();
        assert_eq!(
            missing(&pod["spec"], &required)
                .into_iter()
                .collect::<Vec<_>>(),
            vec!["limits.cpu".to_string()]
        );
    }
}
