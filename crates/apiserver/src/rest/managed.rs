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

use serde_json::{json, Value};

use super::object::{meta_mut, now};
use crate::fields::{self, DisplayPath, FieldSet, PathElement};
use crate::registry::ResourceInfo;
use crate::schema::definitions;

/// One step of a field path ([`crate::fields`], the one home of field paths).
pub(crate) type Seg = PathElement;

/// A field path.
pub(crate) type Path = crate::fields::Path;

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

/// The field set of an object (structured-merge-diff's `ToFieldSet` over the kind's v1.33
/// schema: list items by their list-map keys, set items by value, atomic values as leaves),
/// without the fields the server owns.
pub(crate) fn field_set(info: &ResourceInfo, v: &Value) -> BTreeSet<Path> {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|k, _| !SERVER_META.contains(&k.as_str()));
            if meta.is_empty() {
                m.remove("metadata");
            }
        }
    }
    let schema = definitions().kind(info.group, info.version, info.kind);
    fields::field_set(&v, schema).paths().into_iter().collect()
}

/// The value at `path` (a list item for `k:`/`v:` segments).
pub(crate) fn get<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    fields::get(v, path)
}

/// Removes the field or list item at `path`.
pub(crate) fn remove(v: &mut Value, path: &[Seg]) {
    fields::remove(v, path)
}

/// `fieldsV1` from a set of paths (`"."` on nodes that are owned and have owned children).
pub(crate) fn to_fields(set: &BTreeSet<Path>) -> Value {
    let mut fs = FieldSet::default();
    for p in set {
        fs.insert(p);
    }
    fs.to_fields_v1()
}

/// The paths of a `fieldsV1` value.
pub(crate) fn from_fields(v: &Value) -> BTreeSet<Path> {
    FieldSet::from_fields_v1(v).paths().into_iter().collect()
}

/// SMD's path notation for messages: `.spec.containers[name="web"].image`.
pub(crate) fn render(path: &[Seg]) -> String {
    DisplayPath(path).to_string()
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
                    && !matches!(c.last(), Some(Seg::Key(_)))
                    && !matches!(p.last(), Some(Seg::Key(_)))
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
            Seg::Field("spec".into()),
            Seg::Field("template".into()),
            Seg::Field("spec".into()),
            Seg::Field("containers".into()),
            Seg::Key(r#"{"name":"web"}"#.into()),
            Seg::Field("image".into()),
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
