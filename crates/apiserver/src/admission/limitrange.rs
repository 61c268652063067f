//! The LimitRanger admission plugin (`plugin/pkg/admission/limitranger/admission.go`) for
//! pods and PersistentVolumeClaims (`PersistentVolumeClaim` items: `min`/`max` storage against
//! the claim's request), with every LimitRange of the namespace in turn:
//! - mutate: each `Container` item's `defaultRequest`/`default` fill the requests/limits a
//!   (init) container lacks, recorded in the annotation `kubernetes.io/limit-ranger`
//!   (`LimitRanger plugin set: cpu request for container app; cpu limit for container app`);
//! - validate: `min`/`max`/`maxLimitRequestRatio` per container (`Container` items) and on the
//!   pod's totals (`Pod` items); a violation is a 403 with kube's wording
//!   (`maximum cpu usage per Container is 1, but limit is 2`; several: `[a, b]`).
//!
//! A LimitRange's own defaults (`SetDefaults_LimitRangeItem`: `default` from `max`,
//! `defaultRequest` from `default`, else from `min`) are applied when it is read here.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::forbidden;
use super::quantity::{self, Quantity};
use crate::registry::ResourceInfo;
use crate::rest::object::meta_str;
use crate::status::ApiResult;
use crate::ApiServer;

/// The annotation LimitRanger records its defaults in.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

type Resources = BTreeMap<String, Quantity>;
/// One of kube's `minConstraint`/`maxConstraint`/`limitRequestRatioConstraint`.
type Constraint = fn(&str, &str, Quantity, &Resources, &Resources) -> Option<String>;

fn resources(v: &Value) -> Resources {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, q)| Some((k.clone(), quantity::of(q)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// kube's `SetDefaults_LimitRangeItem` on one `spec.limits[]` item.
pub fn item_defaults(item: &mut Value) {
    if item["type"] != "Container" || !item.is_object() {
        return;
    }
    for key in ["default", "defaultRequest"] {
        if !item[key].is_object() {
            item[key] = json!({});
        }
    }
    let fill = |item: &mut Value, to: &str, from: &str| {
        let source = item[from].as_object().cloned().unwrap_or_default();
        if let Some(target) = item[to].as_object_mut() {
            for (k, v) in source {
                target.entry(k).or_insert(v);
            }
        }
    };
    fill(item, "default", "max");
    fill(item, "defaultRequest", "default");
    fill(item, "defaultRequest", "min");
}

/// kube's `SetDefaults_Pod` part that matters here: a container's limits are also its
/// requests where it states none.
pub(crate) fn requests_from_limits(spec: &mut Value) {
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs {
            let Some(limits) = c["resources"]["limits"].as_object().cloned() else {
                continue;
            };
            if !c["resources"]["requests"].is_object() {
                c["resources"]["requests"] = json!({});
            }
            if let Some(req) = c["resources"]["requests"].as_object_mut() {
                for (k, v) in limits {
                    req.entry(k).or_insert(v);
                }
            }
        }
    }
}

/// Sets the (init) containers' missing requests/limits from `item`'s defaults; returns
/// the annotation parts.
fn mutate(spec: &mut Value, item: &Value, notes: &mut Vec<String>) {
    let (requests, limits) = (&item["defaultRequest"], &item["default"]);
    for (list, what) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs {
            let name = c["name"].as_str().unwrap_or("").to_string();
            let mut set = |field: &str, defaults: &Value| -> Vec<String> {
                let Some(defaults) = defaults.as_object().filter(|d| !d.is_empty()) else {
                    return vec![];
                };
                if !c["resources"].is_object() {
                    c["resources"] = json!({});
                }
                if !c["resources"][field].is_object() {
                    c["resources"][field] = Value::Object(Map::new());
                }
                let mut set = Vec::new();
                if let Some(have) = c["resources"][field].as_object_mut() {
                    for (k, v) in defaults {
                        if !have.contains_key(k) {
                            have.insert(k.clone(), v.clone());
                            set.push(k.clone());
                        }
                    }
                }
                set.sort();
                set
            };
            let limits_set = set("limits", limits);
            let requests_set = set("requests", requests);
            if !requests_set.is_empty() {
                notes.push(format!(
                    "{} request for {what} {name}",
                    requests_set.join(", ")
                ));
            }
            if !limits_set.is_empty() {
                notes.push(format!("{} limit for {what} {name}", limits_set.join(", ")));
            }
        }
    }
}

fn min_constraint(
    kind: &str,
    res: &str,
    enforced: Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let Some(r) = req.get(res) else {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if *r < enforced {
        return Some(format!(
            "minimum {res} usage per {kind} is {enforced}, but request is {r}"
        ));
    }
    match lim.get(res) {
        Some(l) if *l < enforced => Some(format!(
            "minimum {res} usage per {kind} is {enforced}, but limit is {l}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    res: &str,
    enforced: Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let Some(l) = lim.get(res) else {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if *l > enforced {
        return Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but limit is {l}"
        ));
    }
    match req.get(res) {
        Some(r) if *r > enforced => Some(format!(
            "maximum {res} usage per {kind} is {enforced}, but request is {r}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    res: &str,
    enforced: Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let r = req.get(res).map_or(0, |q| q.milli);
    if r == 0 {
        return Some(format!("{res} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"));
    }
    let l = lim.get(res).map_or(0, |q| q.milli);
    if l == 0 {
        return Some(format!("{res} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"));
    }
    let ratio = l as f64 / r as f64;
    (ratio * 1000.0 > enforced.milli as f64).then(|| {
        format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but provided ratio is {ratio:.6}"
        )
    })
}

/// The errors of `item` for requests `req` and limits `lim` (of a container or the pod).
fn check(kind: &str, item: &Value, req: &Resources, lim: &Resources, errs: &mut Vec<String>) {
    for (field, f) in [
        ("min", min_constraint as Constraint),
        ("max", max_constraint as Constraint),
        ("maxLimitRequestRatio", ratio_constraint as Constraint),
    ] {
        for (res, enforced) in resources(&item[field]) {
            errs.extend(f(kind, &res, enforced, req, lim));
        }
    }
}

/// kube's `podRequests`/`podLimits`: the containers' sum, at least each init container's.
pub(crate) fn pod_totals(spec: &Value, field: &str) -> Resources {
    let mut total = Resources::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        for (k, q) in resources(&c["resources"][field]) {
            let sum = total.get(&k).map_or(q, |t| t.plus(q));
            total.insert(k, sum);
        }
    }
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        for (k, q) in resources(&c["resources"][field]) {
            if total.get(&k).is_none_or(|t| q > *t) {
                total.insert(k, q);
            }
        }
    }
    total
}

fn validate(spec: &Value, item: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    match item["type"].as_str() {
        Some("Container") => {
            for list in ["containers", "initContainers"] {
                for c in spec[list].as_array().into_iter().flatten() {
                    let req = resources(&c["resources"]["requests"]);
                    let lim = resources(&c["resources"]["limits"]);
                    check("Container", item, &req, &lim, &mut errs);
                }
            }
        }
        Some("Pod") => {
            let req = pod_totals(spec, "requests");
            let lim = pod_totals(spec, "limits");
            check("Pod", item, &req, &lim, &mut errs);
        }
        _ => {}
    }
    errs
}

/// kube's `PersistentVolumeClaimValidateLimitFunc` for one item: `min` against the claim's
/// requests (its limits are not user input), `max` against its requests
/// (`maxRequestConstraint`).
fn validate_claim(spec: &Value, item: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    if item["type"] != "PersistentVolumeClaim" {
        return errs;
    }
    let kind = "PersistentVolumeClaim";
    let req = resources(&spec["resources"]["requests"]);
    for (res, enforced) in resources(&item["min"]) {
        errs.extend(min_constraint(
            kind,
            &res,
            enforced,
            &req,
            &Resources::new(),
        ));
    }
    for (res, enforced) in resources(&item["max"]) {
        match req.get(&res) {
            None => errs.push(format!(
                "maximum {res} usage per {kind} is {enforced}.  No request is specified"
            )),
            Some(r) if *r > enforced => errs.push(format!(
                "maximum {res} usage per {kind} is {enforced}, but request is {r}"
            )),
            Some(_) => {}
        }
    }
    errs
}

/// The violations of every LimitRange as one message, as kube's `utilerrors.NewAggregate`
/// prints them (flattened, duplicates dropped, several in `[a, b]`); `None` if there are none.
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in errs {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

impl ApiServer {
    /// LimitRanger on a PersistentVolumeClaim `obj` in `ns`, created or updated (kube's
    /// `SupportsAttributes` takes both for claims; a claim already marked for deletion is
    /// not checked): its storage request within every `PersistentVolumeClaim` item's
    /// `min`/`max` of every LimitRange (a 403 with kube's wording, all violations).
    pub(crate) async fn admit_claim_limit_ranges(
        &self,
        info: &ResourceInfo,
        ns: &str,
        obj: &Value,
    ) -> ApiResult<()> {
        let ranges = self
            .stored_objects(&format!("/registry/limitranges/{ns}/"))
            .await?;
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        let errs: Vec<String> = ranges
            .iter()
            .flat_map(|r| r["spec"]["limits"].as_array().cloned().unwrap_or_default())
            .flat_map(|item| validate_claim(&obj["spec"], &item))
            .collect();
        match aggregate(errs) {
            None => Ok(()),
            Some(msg) => Err(forbidden(info, &name, msg)),
        }
    }

    /// LimitRanger on a new pod `obj` in `ns`.
    pub(crate) async fn admit_limit_ranges(
        &self,
        info: &ResourceInfo,
        ns: &str,
        obj: &mut Value,
    ) -> ApiResult<()> {
        let ranges = self
            .stored_objects(&format!("/registry/limitranges/{ns}/"))
            .await?;
        if ranges.is_empty() || !obj["spec"].is_object() {
            return Ok(());
        }
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        let mut items: Vec<Vec<Value>> = Vec::new();
        for r in &ranges {
            let mut list = r["spec"]["limits"].as_array().cloned().unwrap_or_default();
            list.iter_mut().for_each(item_defaults);
            items.push(list);
        }
        // Mutation: each LimitRange's Container defaults.
        let mut notes = Vec::new();
        for list in &items {
            let mut defaults = json!({"default": {}, "defaultRequest": {}});
            for item in list.iter().filter(|i| i["type"] == "Container") {
                for key in ["default", "defaultRequest"] {
                    if let Some(m) = item[key].as_object() {
                        for (k, v) in m {
                            defaults[key][k] = v.clone();
                        }
                    }
                }
            }
            mutate(&mut obj["spec"], &defaults, &mut notes);
        }
        if !notes.is_empty() {
            let meta = crate::rest::object::meta_mut(obj);
            if !meta.get("annotations").is_some_and(Value::is_object) {
                meta.insert("annotations".into(), json!({}));
            }
            meta["annotations"][ANNOTATION] =
                json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
        }
        // Validation: every LimitRange's violations, in one message.
        let errs: Vec<String> = items
            .iter()
            .flatten()
            .flat_map(|item| validate(&obj["spec"], item))
            .collect();
        match aggregate(errs) {
            None => Ok(()),
            Some(msg) => Err(forbidden(info, &name, msg)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_within_min_and_max_storage() {
        let item = json!({"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}});
        let claim = |s: &str| json!({"resources": {"requests": {"storage": s}}});
        assert!(validate_claim(&claim("1Gi"), &item).is_empty());
        assert_eq!(
            validate_claim(&claim("500Mi"), &item),
            ["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
        );
        assert_eq!(
            validate_claim(&claim("5Gi"), &item),
            ["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"]
        );
        assert_eq!(
            validate_claim(&json!({}), &item),
            [
                "minimum storage usage per PersistentVolumeClaim is 1Gi.  No request is specified",
                "maximum storage usage per PersistentVolumeClaim is 2Gi.  No request is specified"
            ]
        );
        let container = json!({"type": "Container", "max": {"cpu": "1"}});
        assert!(validate_claim(&claim("5Gi"), &container).is_empty());
    }

    #[test]
    fn messages_are_kubes() {
        let q = |s: &str| Quantity::parse(s).unwrap();
        let rs = |pairs: &[(&str, &str)]| -> Resources {
            pairs.iter().map(|(k, v)| (k.to_string(), q(v))).collect()
        };
        assert_eq!(
            max_constraint("Container", "cpu", q("1"), &rs(&[]), &rs(&[("cpu", "2")])),
            Some("maximum cpu usage per Container is 1, but limit is 2".into())
        );
        assert_eq!(
            min_constraint("Pod", "memory", q("64Mi"), &rs(&[]), &rs(&[])),
            Some("minimum memory usage per Pod is 64Mi.  No request is specified".into())
        );
        assert_eq!(
            ratio_constraint(
                "Container",
                "cpu",
                q("2"),
                &rs(&[("cpu", "250m")]),
                &rs(&[("cpu", "1")])
            ),
            Some(
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"
                    .into()
            )
        );
        let mut item = json!({"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "1Mi"}});
        item_defaults(&mut item);
        assert_eq!(item["default"], json!({"cpu": "1"}));
        assert_eq!(item["defaultRequest"], json!({"cpu": "1", "memory": "1Mi"}));
    }
}
