//! `metadata.managedFields`: one entry per (manager, operation, subresource) naming the
//! fields that manager last set, as kube-apiserver records them for every write
//! (structured-merge-diff's `FieldsV1`).
//!
//! Paths follow each list's patch strategy (`strategic.rs`): items of a merge-key list are
//! addressed by key (`k:{"name":"web"}`, the item itself owned as `"."`), items of a set by
//! value (`v:"x"`), other lists are atomic (`f:tolerations: {}`). Simplifications
//! (documented): one merge key per list (SMD's list-map keys may be several, e.g. a port's
//! `containerPort`+`protocol`), no `"."` on plain maps. An Update moves ownership of the
//! fields it changed to its manager and drops removed fields; an Apply (`apply.rs`) owns
//! exactly the fields of its configuration.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::object::{meta_mut, now};
use super::strategic::{strategy, Strategy};
use crate::registry::ResourceInfo;

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Seg {
    /// A map field (`f:name`).
    F(String),
    /// A merge-key list item, by its key as canonical JSON (`k:{"name":"web"}`).
    K(String),
    /// A set item, by its value as JSON (`v:"x"`).
    V(String),
}

/// A field path.
pub(crate) type Path = Vec<Seg>;

/// What a write needs besides the object: who writes, whether to store at all, and (for a
/// server-side apply) the managedFields the apply computed.
#[derive(Clone, Debug, Default)]
pub(crate) struct WriteOpts {
    pub dry_run: bool,
    /// The field manager (`fieldManager`, or the User-Agent's product name).
    pub manager: String,
    /// Set by server-side apply: the object's managedFields, instead of tracking an Update.
    pub apply: Option<Vec<Value>>,
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

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

fn walk(info: &ResourceInfo, v: &Value, fields: &str, path: &mut Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if path.len() == 1
                    && path[0] == Seg::F("metadata".into())
                    && SERVER_META.contains(&k.as_str())
                {
                    continue;
                }
                path.push(Seg::F(k.clone()));
                walk(info, child, &join(fields, k), path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match strategy(info, fields) {
            Strategy::MergeKey(key) if items.iter().all(|i| i.get(key).is_some()) => {
                for item in items {
                    path.push(Seg::K(json!({key: item[key]}).to_string()));
                    out.insert(path.clone());
                    walk(info, item, fields, path, out);
                    path.pop();
                }
            }
            Strategy::MergePrimitive => {
                for item in items {
                    path.push(Seg::V(item.to_string()));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        },
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

/// The field set of an object: every leaf, every keyed list item.
pub(crate) fn field_set(info: &ResourceInfo, v: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    walk(info, v, "", &mut Vec::new(), &mut out);
    out
}

/// The value at `path` (a list item for `K`/`V` segments).
pub(crate) fn get<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| match seg {
        Seg::F(k) => cur.get(k.as_str()),
        Seg::K(key) => {
            let key: Value = serde_json::from_str(key).ok()?;
            let (k, want) = key.as_object()?.iter().next()?;
            cur.as_array()?
                .iter()
                .find(|i| i.get(k.as_str()) == Some(want))
        }
        Seg::V(val) => {
            let want: Value = serde_json::from_str(val).ok()?;
            cur.as_array()?.iter().find(|i| **i == want)
        }
    })
}

/// Removes the field or list item at `path`.
pub(crate) fn remove(v: &mut Value, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let parent = parents.iter().try_fold(v, |cur, seg| match seg {
        Seg::F(k) => cur.get_mut(k.as_str()),
        Seg::K(key) => {
            let key: Value = serde_json::from_str(key).ok()?;
            let (k, want) = key.as_object()?.iter().next()?;
            let (k, want) = (k.clone(), want.clone());
            cur.as_array_mut()?
                .iter_mut()
                .find(|i| i.get(k.as_str()) == Some(&want))
        }
        Seg::V(_) => None,
    });
    let Some(parent) = parent else { return };
    match last {
        Seg::F(k) => {
            if let Some(m) = parent.as_object_mut() {
                m.remove(k);
            }
        }
        Seg::K(key) => {
            let Ok(key) = serde_json::from_str::<Value>(key) else {
                return;
            };
            if let (Some((k, want)), Some(a)) = (
                key.as_object().and_then(|o| o.iter().next()),
                parent.as_array_mut(),
            ) {
                a.retain(|i| i.get(k.as_str()) != Some(want));
            }
        }
        Seg::V(val) => {
            if let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(val), parent.as_array_mut())
            {
                a.retain(|i| *i != want);
            }
        }
    }
}

fn seg_key(seg: &Seg) -> String {
    match seg {
        Seg::F(k) => format!("f:{k}"),
        Seg::K(k) => format!("k:{k}"),
        Seg::V(v) => format!("v:{v}"),
    }
}

/// `fieldsV1` from a set of paths (`"."` on list items that have owned children).
pub(crate) fn to_fields(set: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            let entry = cur
                .entry(seg_key(seg))
                .or_insert_with(|| Value::Object(Map::new()));
            cur = entry.as_object_mut().expect("fields nodes are objects");
        }
    }
    for path in set {
        if matches!(path.last(), Some(Seg::K(_) | Seg::V(_))) {
            let mut cur = &mut root;
            for seg in path {
                cur = cur
                    .get_mut(&seg_key(seg))
                    .and_then(Value::as_object_mut)
                    .expect("built above");
            }
            if !cur.is_empty() {
                cur.insert(".".into(), json!({}));
            }
        }
    }
    Value::Object(root)
}

/// The paths of a `fieldsV1` value.
pub(crate) fn from_fields(v: &Value) -> BTreeSet<Path> {
    fn go(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        let Some(m) = v.as_object() else { return };
        if !path.is_empty() && (m.is_empty() || m.contains_key(".")) {
            out.insert(path.clone());
        }
        for (k, child) in m {
            let seg = if let Some(f) = k.strip_prefix("f:") {
                Seg::F(f.into())
            } else if let Some(key) = k.strip_prefix("k:") {
                Seg::K(key.into())
            } else if let Some(val) = k.strip_prefix("v:") {
                Seg::V(val.into())
            } else {
                continue;
            };
            path.push(seg);
            go(child, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// SMD's path notation for messages: `.spec.containers[name="web"].image`.
pub(crate) fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::F(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::K(key) => {
                let key: Value = serde_json::from_str(key).unwrap_or_default();
                let parts: Vec<String> = key
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            Seg::V(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

fn overlaps(a: &[Seg], b: &[Seg]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The object's managedFields entries.
pub(crate) fn entries(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A managedFields entry.
pub(crate) fn entry(
    manager: &str,
    operation: &str,
    api_version: &str,
    subresource: &str,
    set: &BTreeSet<Path>,
) -> Value {
    let mut e = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields(set),
    });
    if !subresource.is_empty() {
        e["subresource"] = json!(subresource);
    }
    e
}

/// Records in `new.metadata.managedFields` that `opts.manager` wrote `new` over `old`
/// (`None` for a create) through `subresource` (`""` or `status`), or installs the fields an
/// apply computed.
pub(crate) fn track(
    info: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    opts: &WriteOpts,
    subresource: &str,
) {
    if let Some(applied) = &opts.apply {
        meta_mut(new).insert("managedFields".into(), Value::Array(applied.clone()));
        return;
    }
    let new_set = field_set(info, new);
    let (changed, removed): (BTreeSet<Path>, BTreeSet<Path>) = match old {
        None => (new_set.clone(), BTreeSet::new()),
        Some(old) => {
            let changed = new_set
                .iter()
                .filter(|p| get(old, p) != get(new, p))
                .cloned()
                .collect();
            let removed = field_set(info, old)
                .into_iter()
                .filter(|p| get(new, p).is_none())
                .collect();
            (changed, removed)
        }
    };
    let mut entries: Vec<Value> = old.map(entries).unwrap_or_default();
    if changed.is_empty() && removed.is_empty() {
        if entries.is_empty() {
            meta_mut(new).remove("managedFields");
        } else {
            meta_mut(new).insert("managedFields".into(), Value::Array(entries));
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
        let mut set = from_fields(&e["fieldsV1"]);
        set.retain(|p| !removed.iter().any(|r| p.starts_with(r)));
        if is_mine(&e) {
            mine = set;
            continue;
        }
        // Ownership of a changed leaf moves; owning a list item is shared.
        set.retain(|p| {
            !changed.iter().any(|c| {
                overlaps(c, p)
                    && !matches!(c.last(), Some(Seg::K(_)))
                    && !matches!(p.last(), Some(Seg::K(_)))
            })
        });
        if !set.is_empty() {
            let mut e = e.clone();
            e["fieldsV1"] = to_fields(&set);
            kept.push(e);
        }
    }
    mine.retain(|p| !changed.iter().any(|c| overlaps(c, p) && c != p));
    mine.extend(changed);
    if !mine.is_empty() {
        kept.push(entry(
            &opts.manager,
            "Update",
            &info.api_version(),
            subresource,
            &mine,
        ));
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
            manager: m.into(),
            ..Default::default()
        }
    }

    fn info(group: &str, plural: &str) -> ResourceInfo {
        let version = "v1";
        crate::registry::Registry::builtin()
            .lookup(group, version, plural)
            .unwrap()
            .clone()
    }

    #[test]
    fn ownership_moves_to_the_writer() {
        let cm = info("", "configmaps");
        let mut a = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"app": "web"}}, "data": {"k": "v", "j": "w"}});
        track(&cm, None, &mut a, &opts("kubectl-create"), "");
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
        track(&cm, Some(&a), &mut b, &opts("kubectl-label"), "");
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
        track(&cm, Some(&b), &mut c, &opts("other"), "");
        assert_eq!(c, b);
    }

    #[test]
    fn keyed_lists() {
        let d = info("apps", "deployments");
        let obj = json!({"metadata": {"finalizers": ["a"]},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "i"}],
                                            "tolerations": [{"key": "k"}]}}}});
        let set = field_set(&d, &obj);
        let fields = to_fields(&set);
        assert_eq!(
            fields,
            json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}}},
                   "f:spec": {"f:template": {"f:spec": {
                       "f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}},
                       "f:tolerations": {}}}}})
        );
        assert_eq!(from_fields(&fields), set);
        let image: Path = vec![
            Seg::F("spec".into()),
            Seg::F("template".into()),
            Seg::F("spec".into()),
            Seg::F("containers".into()),
            Seg::K(r#"{"name":"web"}"#.into()),
            Seg::F("image".into()),
        ];
        assert_eq!(get(&obj, &image), Some(&json!("i")));
        assert_eq!(
            render(&image),
            r#".spec.template.spec.containers[name="web"].image"#
        );
        let mut o = obj.clone();
        remove(&mut o, &image[..5]);
        assert_eq!(o["spec"]["template"]["spec"]["containers"], json!([]));
    }
}
