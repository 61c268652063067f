//! `metadata.managedFields`: one entry per (manager, operation, subresource) naming the
//! fields that manager last set, as kube-apiserver records them for every write.
//!
//! Simplification of structured-merge-diff (documented): lists are atomic (a manager owns a
//! whole list, `f:containers: {}`), and map nodes carry no `"."` entry. Ownership moves to the
//! writer of a changed field and is dropped for removed fields. Server-side apply (operation
//! `Apply`, conflicts) builds on this later.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::object::{meta_mut, now};

/// A field path (`["spec", "replicas"]`).
type Path = Vec<String>;

/// What a write needs besides the object: who writes, and whether to store at all.
#[derive(Clone, Debug, Default)]
pub(crate) struct WriteOpts {
    pub dry_run: bool,
    /// The field manager (`fieldManager`, or the User-Agent's product name).
    pub manager: String,
}

/// Metadata fields the server owns; never tracked.
const SERVER_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

fn leaves(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if path.len() == 1 && path[0] == "metadata" && SERVER_META.contains(&k.as_str()) {
                    continue;
                }
                path.push(k.clone());
                leaves(child, path, out);
                path.pop();
            }
        }
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

fn leaf_set(v: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    leaves(v, &mut Vec::new(), &mut out);
    out
}

fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k.as_str()))
}

/// `fieldsV1` from a set of paths.
fn to_fields(set: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            let entry = cur
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
            cur = entry.as_object_mut().expect("fields nodes are objects");
        }
    }
    Value::Object(root)
}

/// The paths of a `fieldsV1` value.
fn from_fields(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
    let Some(m) = v.as_object() else { return };
    if m.is_empty() && !path.is_empty() {
        out.insert(path.clone());
    }
    for (k, child) in m {
        if let Some(name) = k.strip_prefix("f:") {
            path.push(name.to_string());
            from_fields(child, path, out);
            path.pop();
        }
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Records in `new.metadata.managedFields` that `opts.manager` wrote `new` over `old`
/// (`None` for a create) through `subresource` (`""` or `status`).
pub(crate) fn track(
    old: Option<&Value>,
    new: &mut Value,
    opts: &WriteOpts,
    subresource: &str,
    api_version: &str,
) {
    let new_leaves = leaf_set(new);
    let (changed, removed): (BTreeSet<Path>, BTreeSet<Path>) = match old {
        None => (new_leaves.clone(), BTreeSet::new()),
        Some(old) => {
            let changed = new_leaves
                .iter()
                .filter(|p| get(old, p) != get(new, p))
                .cloned()
                .collect();
            let removed = leaf_set(old)
                .into_iter()
                .filter(|p| get(new, p).is_none())
                .collect();
            (changed, removed)
        }
    };
    let mut entries: Vec<Value> = old
        .and_then(|o| o["metadata"]["managedFields"].as_array().cloned())
        .unwrap_or_default();
    if changed.is_empty() && removed.is_empty() {
        meta_mut(new).insert("managedFields".into(), Value::Array(entries));
        if old.is_none() {
            meta_mut(new).remove("managedFields");
        }
        return;
    }
    let is_mine = |e: &Value| {
        e["manager"] == opts.manager.as_str()
            && e["operation"] == "Update"
            && e["subresource"].as_str().unwrap_or("") == subresource
    };
    let mut mine = BTreeSet::new();
    let mut kept = Vec::new();
    for e in entries.drain(..) {
        let mut set = BTreeSet::new();
        from_fields(&e["fieldsV1"], &mut Vec::new(), &mut set);
        set.retain(|p| !removed.contains(p));
        if is_mine(&e) {
            mine = set;
            continue;
        }
        set.retain(|p| !changed.iter().any(|c| overlaps(c, p)));
        if !set.is_empty() {
            let mut e = e.clone();
            e["fieldsV1"] = to_fields(&set);
            kept.push(e);
        }
    }
    mine.retain(|p| !changed.iter().any(|c| overlaps(c, p)));
    mine.extend(changed);
    if !mine.is_empty() {
        let mut entry = json!({
            "manager": opts.manager,
            "operation": "Update",
            "apiVersion": api_version,
            "time": now(),
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields(&mine),
        });
        if !subresource.is_empty() {
            entry["subresource"] = json!(subresource);
        }
        kept.push(entry);
    }
    if kept.is_empty() {
        meta_mut(new).remove("managedFields");
    } else {
        meta_mut(new).insert("managedFields".into(), Value::Array(kept));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(m: &str) -> WriteOpts {
        WriteOpts {
            dry_run: false,
            manager: m.into(),
        }
    }

    #[test]
    fn ownership_moves_to_the_writer() {
        let mut a = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"app": "web"}}, "data": {"k": "v", "j": "w"}});
        track(None, &mut a, &opts("kubectl-create"), "", "v1");
        let mf = a["metadata"]["managedFields"].clone();
        assert_eq!(mf.as_array().unwrap().len(), 1);
        assert_eq!(mf[0]["manager"], "kubectl-create");
        assert_eq!(mf[0]["operation"], "Update");
        assert_eq!(
            mf[0]["fieldsV1"],
            json!({"f:data": {"f:j": {}, "f:k": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
        );
        let mut b = a.clone();
        b["data"]["k"] = json!("changed");
        b["metadata"]["labels"]["tier"] = json!("fe");
        track(Some(&a), &mut b, &opts("kubectl-label"), "", "v1");
        let mf = b["metadata"]["managedFields"].as_array().unwrap().clone();
        assert_eq!(mf.len(), 2);
        assert_eq!(
            mf[0]["fieldsV1"],
            json!({"f:data": {"f:j": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
        );
        assert_eq!(mf[1]["manager"], "kubectl-label");
        assert_eq!(
            mf[1]["fieldsV1"],
            json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:tier": {}}}})
        );
        // A no-op keeps everything as it was.
        let mut c = b.clone();
        track(Some(&b), &mut c, &opts("other"), "", "v1");
        assert_eq!(c, b);
    }
}
