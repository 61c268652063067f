//! Strategic merge patch (`application/strategic-merge-patch+json`), kube's
//! `k8s.io/apimachinery/pkg/util/strategicpatch` semantics: maps merge as in JSON merge
//! patch; lists follow their field's patch strategy — `merge` on a merge key (containers by
//! `name`, container ports by `containerPort`, …), `merge` of primitives (set union, e.g.
//! `metadata.finalizers`), or replace (every list without a strategy) — and the directives
//! `$patch: replace|delete|merge`, `$setElementOrder/<list>`, `$retainKeys` and
//! `$deleteFromPrimitiveList/<list>`.
//!
//! The strategies are facts of the API: the `patchStrategy`/`patchMergeKey` struct tags of
//! `k8s.io/api` (core/v1 `types.go`: PodSpec, Container, EphemeralContainer, ServiceSpec,
//! ObjectMeta, the status conditions), tabled here by field path per kind — not guessed from
//! field names. Lists not in the table are replaced, as kube replaces lists without a
//! strategy.

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;
use crate::status::{ApiError, ApiResult};

/// How a list field is patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// `patchStrategy:"merge"` with `patchMergeKey:"<key>"`.
    MergeKey(&'static str),
    /// `patchStrategy:"merge"` on a list of primitives: set union.
    MergePrimitive,
    /// No strategy: the patch's list replaces the object's.
    Replace,
}

/// PodSpec-relative list strategies (k8s.io/api core/v1 PodSpec, Container,
/// EphemeralContainer).
fn pod_spec_list(path: &str) -> Option<Strategy> {
    use Strategy::*;
    Some(match path {
        "volumes" => MergeKey("name"),
        "initContainers" | "containers" | "ephemeralContainers" => MergeKey("name"),
        "imagePullSecrets" => MergeKey("name"),
        "hostAliases" => MergeKey("ip"),
        "schedulingGates" => MergeKey("name"),
        "resourceClaims" => MergeKey("name"),
        "topologySpreadConstraints" => MergeKey("topologyKey"),
        _ => {
            let (owner, field) = path.rsplit_once('.')?;
            if !matches!(
                owner,
                "initContainers" | "containers" | "ephemeralContainers"
            ) {
                return None;
            }
            match field {
                "ports" => MergeKey("containerPort"),
                "env" => MergeKey("name"),
                "volumeMounts" => MergeKey("mountPath"),
                "volumeDevices" => MergeKey("devicePath"),
                _ => return None,
            }
        }
    })
}

/// Where a kind's pod template's spec lives.
fn pod_spec_prefix(info: &ResourceInfo) -> Option<&'static str> {
    Some(match (info.group, info.plural) {
        ("", "pods") => "spec.",
        ("", "podtemplates") => "template.spec.",
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs")
        | ("", "replicationcontrollers") => "spec.template.spec.",
        ("batch", "cronjobs") => "spec.jobTemplate.spec.template.spec.",
        _ => return None,
    })
}

/// The strategy of the list at `path` (field names joined by `.`, list indices dropped).
pub(crate) fn strategy(info: &ResourceInfo, path: &str) -> Strategy {
    use Strategy::*;
    match path {
        "metadata.finalizers" => return MergePrimitive,
        "metadata.ownerReferences" => return MergeKey("uid"),
        "status.conditions" => return MergeKey("type"),
        _ => {}
    }
    match (info.group, info.plural, path) {
        ("", "services", "spec.ports") => return MergeKey("port"),
        ("", "nodes", "status.addresses") => return MergeKey("type"),
        ("", "pods", "status.podIPs" | "status.hostIPs") => return MergeKey("ip"),
        _ => {}
    }
    if let Some(rel) = pod_spec_prefix(info).and_then(|p| path.strip_prefix(p)) {
        if let Some(s) = pod_spec_list(rel) {
            return s;
        }
    }
    Replace
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// Removes every directive key from a value that is added as a whole.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|v| v.get("$patch").is_none())
                .map(strip)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Applies the strategic merge patch `patch` to `doc` (an object of `info`'s kind).
pub(crate) fn apply(info: &ResourceInfo, doc: &mut Value, patch: &Value) -> ApiResult<()> {
    let Some(p) = patch.as_object() else {
        return Err(bad("a strategic merge patch must be a JSON object"));
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let target = doc.as_object_mut().expect("checked above");
    merge_map(info, target, p, "")
}

fn merge_map(
    info: &ResourceInfo,
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> ApiResult<()> {
    match patch.get("$patch").and_then(Value::as_str) {
        None | Some("merge") => {}
        Some("replace") => {
            *target = strip(&Value::Object(patch.clone()))
                .as_object()
                .cloned()
                .unwrap_or_default();
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some(other) => return Err(bad(format!("Unknown patch type: {other} in map: {path}"))),
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        let field = join(path, k);
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(pm) => {
                match pm.get("$patch").and_then(Value::as_str) {
                    Some("delete") => {
                        target.remove(k);
                        continue;
                    }
                    Some("replace") => {
                        target.insert(k.clone(), strip(v));
                        continue;
                    }
                    _ => {}
                }
                let entry = target
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                merge_map(info, entry.as_object_mut().expect("object"), pm, &field)?;
            }
            Value::Array(items) => {
                let current = target.remove(k).unwrap_or(Value::Array(Vec::new()));
                let merged = merge_list(info, current, items, &field)?;
                target.insert(k.clone(), merged);
            }
            scalar => {
                target.insert(k.clone(), scalar.clone());
            }
        }
    }
    // List directives that name a field of this map.
    for (k, v) in patch {
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let drop: Vec<&Value> = v.as_array().map(|a| a.iter().collect()).unwrap_or_default();
            if let Some(Value::Array(cur)) = target.get_mut(list) {
                cur.retain(|x| !drop.contains(&x));
            }
        }
    }
    for (k, v) in patch {
        if let Some(list) = k.strip_prefix("$setElementOrder/") {
            let order = v.as_array().cloned().unwrap_or_default();
            let s = strategy(info, &join(path, list));
            if let Some(Value::Array(cur)) = target.get_mut(list) {
                reorder(cur, &order, s);
            }
        }
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| bad("$retainKeys must be a list"))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

/// The merge-key value of a list element.
fn key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.get(key)
}

fn merge_list(
    info: &ResourceInfo,
    current: Value,
    items: &[Value],
    path: &str,
) -> ApiResult<Value> {
    let mut cur = match current {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    // `{"$patch": "replace"}` among the items: the rest replaces the list.
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(strip(&Value::Array(items.to_vec())));
    }
    match strategy(info, path) {
        Strategy::Replace => Ok(strip(&Value::Array(items.to_vec()))),
        Strategy::MergePrimitive => {
            for i in items {
                if !cur.contains(i) {
                    cur.push(i.clone());
                }
            }
            Ok(Value::Array(cur))
        }
        Strategy::MergeKey(key) => {
            for item in items {
                let Some(pm) = item.as_object() else {
                    return Err(bad(format!(
                        "unable to find merge key {key:?} in {item}: {path} is a list of objects"
                    )));
                };
                let Some(kv) = key_of(item, key) else {
                    return Err(bad(format!(
                        "map: {item} does not contain declared merge key: {key}"
                    )));
                };
                let pos = cur.iter().position(|c| key_of(c, key) == Some(kv));
                match (pm.get("$patch").and_then(Value::as_str), pos) {
                    (Some("delete"), Some(p)) => {
                        cur.remove(p);
                    }
                    (Some("delete"), None) => {}
                    (Some("replace"), Some(p)) => cur[p] = strip(item),
                    (_, Some(p)) => {
                        if !cur[p].is_object() {
                            cur[p] = Value::Object(Map::new());
                        }
                        merge_map(info, cur[p].as_object_mut().expect("object"), pm, path)?;
                    }
                    (_, None) => cur.push(strip(item)),
                }
            }
            Ok(Value::Array(cur))
        }
    }
}

/// `$setElementOrder`: the listed elements first, in the listed order, then the others.
fn reorder(cur: &mut Vec<Value>, order: &[Value], s: Strategy) {
    let matches = |item: &Value, o: &Value| match s {
        Strategy::MergeKey(key) => o.get(key).is_some() && o.get(key) == item.get(key),
        _ => o == item,
    };
    let mut out = Vec::with_capacity(cur.len());
    for o in order {
        if let Some(p) = cur.iter().position(|i| matches(i, o)) {
            out.push(cur.remove(p));
        }
    }
    out.append(cur);
    *cur = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy() -> ResourceInfo {
        crate::registry::Registry::builtin()
            .lookup("apps", "v1", "deployments")
            .unwrap()
            .clone()
    }

    #[test]
    fn containers_merge_by_name_and_ports_by_container_port() {
        let info = deploy();
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}],
             "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
        "containers": [
            {"name": "a", "image": "a:2",
             "ports": [{"containerPort": 443, "name": "https"}],
             "$setElementOrder/env": [{"name": "X"}, {"name": "Y"}],
             "env": [{"name": "Y", "value": "2"}]}
        ]}}}});
        apply(&info, &mut d, &patch).unwrap();
        let cs = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["name"], "b");
        assert_eq!(cs[1]["image"], "a:2");
        assert_eq!(
            cs[1]["ports"].as_array().unwrap().len(),
            2,
            "merged on containerPort"
        );
        assert_eq!(
            cs[1]["env"],
            json!([{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}])
        );
        // $patch: delete of one element, replace of a list without strategy.
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "b", "$patch": "delete"}],
            "tolerations": [{"key": "k"}]}}}});
        apply(&info, &mut d, &patch).unwrap();
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "k"}])
        );
    }

    #[test]
    fn directives() {
        let info = deploy();
        let mut d = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}},
            "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({
            "metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"],
                         "labels": {"$patch": "replace", "y": "2"}},
            "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        apply(&info, &mut d, &patch).unwrap();
        assert_eq!(d["metadata"]["finalizers"], json!(["b", "c"]));
        assert_eq!(d["metadata"]["labels"], json!({"y": "2"}));
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        let svc = crate::registry::Registry::builtin()
            .lookup("", "v1", "services")
            .unwrap()
            .clone();
        let mut s = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        apply(
            &svc,
            &mut s,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
        )
        .unwrap();
        assert_eq!(
            s["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
        let err = apply(
            &info,
            &mut d,
            &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
        );
        assert!(err.is_err());
    }
}
