//! Field management: `metadata.managedFields` on every write and server-side apply
//! (`application/apply-patch+yaml`), as kube-apiserver's field manager does it
//! (k8s.io/apiserver `pkg/endpoints/handlers/fieldmanager`, sigs.k8s.io/structured-merge-diff
//! `merge.Updater`). Source: [Server-Side Apply](https://kubernetes.io/docs/reference/using-api/server-side-apply/).
//!
//! - An update (create, PUT, non-apply PATCH) by manager M makes M own every field it added or
//!   changed, takes those fields from the other managers, and drops removed fields everywhere.
//! - An apply by M merges M's configuration into the live object (struct fields and maps by
//!   key, associative lists by their keys, sets by value, atomic values replaced); a field M
//!   sets to a value different from the live one while another manager owns it is a conflict
//!   (409) unless `force`, which takes ownership; fields M applied before and leaves out now are
//!   removed from the object unless another manager owns them.

use serde_json::{json, Map, Value};

use crate::fields::{self, DisplayPath, FieldSet, Path, PathElement};
use crate::schema::Schema;

/// Fields no manager owns: identity and bookkeeping of the object.
const IGNORED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

/// Who writes, and what of the object nobody owns on that endpoint.
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    /// The field manager (`fieldManager`, or derived from the User-Agent as kube does).
    pub manager: &'a str,
    /// The request's `group/version` (`v1` for core).
    pub api_version: &'a str,
    /// `""` for the main resource, `status`, `scale`.
    pub subresource: &'a str,
    /// Top-level fields reset on this endpoint (`status` on a main resource with a status
    /// subresource).
    pub reset: &'a [&'a str],
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Manager {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    /// RFC 3339, seconds.
    pub time: Option<String>,
    /// `""` for the main resource, `status`, `scale`.
    pub subresource: String,
    pub fields: FieldSet,
}

impl Manager {
    fn same_identity(
        &self,
        manager: &str,
        operation: &str,
        api_version: &str,
        subresource: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == "Apply" || self.api_version == api_version)
    }

    /// How kube-apiserver names a manager in conflict messages (`printManager`).
    fn display(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Option<Manager> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Manager {
            manager: s("manager").unwrap_or_default(),
            operation: s("operation")?,
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource").unwrap_or_default(),
            fields: FieldSet::from_fields_v1(v.get("fieldsV1").unwrap_or(&Value::Null)),
        })
    }
}

/// An apply that would change fields other managers own.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApplyConflict {
    /// kube's message, e.g. `Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
    pub message: String,
    /// `(cause message, field path)` per conflict: `("conflict with \"m\" using apps/v1", ".spec.replicas")`,
    /// for the Status's `details.causes` (type `FieldManagerConflict`).
    pub causes: Vec<(String, String)>,
}

/// The managers recorded on `object`.
pub fn managers(object: &Value) -> Vec<Manager> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Manager::from_json).collect())
        .unwrap_or_default()
}

fn set_managers(object: &mut Value, mut managers: Vec<Manager>) {
    managers.retain(|m| !m.fields.is_empty());
    managers.sort_by(|p, q| {
        (
            &p.operation,
            &p.time,
            &p.manager,
            &p.api_version,
            &p.subresource,
        )
            .cmp(&(
                &q.operation,
                &q.time,
                &q.manager,
                &q.api_version,
                &q.subresource,
            ))
    });
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if managers.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(managers.iter().map(Manager::to_json).collect()),
        );
    }
}

/// The object without the fields nobody owns (`ignored` adds the resource's reset fields,
/// e.g. `status` for a main resource with a status subresource).
fn strip(object: &Value, ignored: &[&str]) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        for f in ignored {
            m.remove(*f);
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in IGNORED_META {
                meta.remove(*f);
            }
            if meta.is_empty() {
                m.remove("metadata");
            }
        }
    }
    o
}

struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

fn compare(old: &Value, new: &Value, schema: Option<Schema<'_>>) -> Comparison {
    let (s_old, s_new) = (
        fields::field_set(old, schema),
        fields::field_set(new, schema),
    );
    let mut modified = FieldSet::default();
    for p in s_old.intersection(&s_new).paths() {
        if matches!(p.last(), Some(PathElement::Key(_))) {
            continue; // an element present in both: its fields are compared one by one
        }
        if fields::get(old, &p, schema) != fields::get(new, &p, schema) {
            modified.insert(&p);
        }
    }
    Comparison {
        added: s_new.difference(&s_old),
        modified,
        removed: s_old.difference(&s_new),
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Records an update (create, PUT, non-apply PATCH) of `old` (None for a create) into `new` by
/// `manager` and returns `new` with its `metadata.managedFields` updated.
///
/// A request whose body carries `managedFields` different from the live ones replaces them
/// (kube lets clients reset them; `[]` clears them).
pub fn record_update(
    old: Option<&Value>,
    mut new: Value,
    schema: Option<Schema<'_>>,
    who: &Writer<'_>,
) -> Value {
    let Writer {
        manager,
        api_version,
        subresource,
        reset: ignored,
    } = *who;
    let old_managers = old.map(managers).unwrap_or_default();
    let requested = new.pointer("/metadata/managedFields").cloned();
    let mut list = match requested {
        Some(v) if old.and_then(|o| o.pointer("/metadata/managedFields")) != Some(&v) => {
            managers(&new)
        }
        _ => old_managers,
    };
    let empty = json!({});
    let cmp = compare(
        &strip(old.unwrap_or(&empty), ignored),
        &strip(&new, ignored),
        schema,
    );
    let changed = cmp.added.union(&cmp.modified);
    for m in list.iter_mut() {
        let before = m.fields.clone();
        m.fields = m.fields.difference(&changed).difference(&cmp.removed);
        if m.fields != before && m.fields.is_empty() {
            m.time = Some(now());
        }
    }
    let index = match list
        .iter()
        .position(|m| m.same_identity(manager, "Update", api_version, subresource))
    {
        Some(i) => i,
        None => {
            list.push(Manager {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: None,
                subresource: subresource.to_string(),
                fields: FieldSet::default(),
            });
            list.len() - 1
        }
    };
    let mine = &mut list[index];
    let fields = mine.fields.difference(&cmp.removed).union(&changed);
    if fields != mine.fields || mine.time.is_none() {
        mine.time = Some(now());
    }
    mine.fields = fields;
    set_managers(&mut new, list);
    new
}

/// Server-side apply of `config` by `manager` onto `live` (None: the object is created).
/// Returns the new object with its managed fields, or the conflicts.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    schema: Option<Schema<'_>>,
    who: &Writer<'_>,
    force: bool,
) -> Result<Value, ApplyConflict> {
    let Writer {
        manager,
        api_version,
        subresource,
        reset: ignored,
    } = *who;
    let empty = json!({});
    let live_obj = live.unwrap_or(&empty);
    let mut list = managers(live_obj);
    let mut merged = merge(live_obj, config, schema);

    let new_set = fields::field_set(&strip(config, ignored), schema);
    let index = list
        .iter()
        .position(|m| m.same_identity(manager, "Apply", api_version, subresource));
    let last = index.map(|i| list[i].fields.clone()).unwrap_or_default();

    // Fields this manager applied before and leaves out now go, unless someone else owns them.
    let others = list
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != index)
        .fold(FieldSet::default(), |acc, (_, m)| acc.union(&m.fields));
    let to_remove = last.difference(&new_set).difference(&others);
    let mut paths: Vec<Path> = to_remove.paths();
    paths.reverse(); // children before parents
    for p in paths {
        // A list element goes only if nobody owns anything under it any more.
        if matches!(p.last(), Some(PathElement::Key(_)))
            && (others.has_prefix(&p) || new_set.has_prefix(&p))
        {
            continue;
        }
        fields::remove(&mut merged, &p, schema);
    }

    let cmp = compare(&strip(live_obj, ignored), &strip(&merged, ignored), schema);
    let changed = cmp.added.union(&cmp.modified);
    let mut conflicts: Vec<(usize, Path)> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        if Some(i) == index {
            continue;
        }
        for p in m.fields.intersection(&changed).paths() {
            conflicts.push((i, p));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&list, &conflicts));
    }
    for (i, p) in &conflicts {
        let mut one = FieldSet::default();
        one.insert(p);
        list[*i].fields = list[*i].fields.difference(&one);
    }
    for m in list.iter_mut() {
        m.fields = m.fields.difference(&cmp.removed);
    }
    let entry = Manager {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time: Some(now()),
        subresource: subresource.to_string(),
        fields: new_set,
    };
    match index {
        Some(i) => {
            let unchanged =
                list[i].fields == entry.fields && list[i].api_version == entry.api_version;
            let time = if unchanged {
                list[i].time.clone()
            } else {
                entry.time.clone()
            };
            list[i] = Manager { time, ..entry };
        }
        None => list.push(entry),
    }
    set_managers(&mut merged, list);
    Ok(merged)
}

fn conflict_error(list: &[Manager], conflicts: &[(usize, Path)]) -> ApplyConflict {
    let causes: Vec<(String, String)> = conflicts
        .iter()
        .map(|(i, p)| {
            (
                format!("conflict with {}", list[*i].display()),
                DisplayPath(p).to_string(),
            )
        })
        .collect();
    let message = if conflicts.len() == 1 {
        format!(
            "Apply failed with 1 conflict: {}: {}",
            causes[0].0, causes[0].1
        )
    } else {
        let mut by_manager: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
        for (i, (_, path)) in conflicts.iter().zip(&causes) {
            by_manager
                .entry(list[i.0].display())
                .or_default()
                .push(path);
        }
        let mut lines = Vec::new();
        for (m, paths) in by_manager {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(paths.iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    ApplyConflict { message, causes }
}

/// Merges an applied configuration into a live object (structured-merge-diff's merge).
pub fn merge(live: &Value, config: &Value, schema: Option<Schema<'_>>) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !schema.is_some_and(|s| s.is_atomic()) => {
            let mut out = l.clone();
            for (k, cv) in c {
                let field = schema.and_then(|s| s.field(k));
                let v = match l.get(k) {
                    Some(lv) => merge_field(lv, cv, field),
                    None => cv.clone(),
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        _ => config.clone(),
    }
}

fn merge_field(live: &Value, config: &Value, field: Option<Schema<'_>>) -> Value {
    match (live, config) {
        (Value::Array(l), Value::Array(c)) => match field.and_then(|f| f.list_type()) {
            Some("map") => {
                let f = field.expect("list type came from the field");
                let keys = f.list_map_keys();
                let mut out = l.clone();
                for item in c {
                    let key = PathElement::key_of(item, &keys);
                    match out
                        .iter()
                        .position(|o| PathElement::key_of(o, &keys) == key && key.is_some())
                    {
                        Some(i) => out[i] = merge(&out[i], item, f.items()),
                        None => out.push(item.clone()),
                    }
                }
                Value::Array(out)
            }
            Some("set") => {
                let mut out = l.clone();
                for item in c {
                    if !out.contains(item) {
                        out.push(item.clone());
                    }
                }
                Value::Array(out)
            }
            _ => config.clone(),
        },
        (Value::Object(_), Value::Object(_)) => merge(live, config, field),
        _ => config.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::definitions;

    const KUBECTL: Writer<'static> = Writer {
        manager: "kubectl",
        api_version: "apps/v1",
        subresource: "",
        reset: &["status"],
    };

    fn dep() -> Option<Schema<'static>> {
        definitions().kind("apps", "v1", "Deployment")
    }

    fn config(replicas: i64, image: &str, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}}})
    }

    #[test]
    fn apply_owns_conflicts_forces_and_prunes() {
        let full = || config(2, "a:1", json!({"x": "1", "y": "2"}));
        let created = apply(None, &full(), dep(), &KUBECTL, false).unwrap();
        let ms = managers(&created);
        assert_eq!((ms.len(), ms[0].operation.as_str()), (1, "Apply"));
        let containers =
            &ms[0].fields.to_fields_v1()["f:spec"]["f:template"]["f:spec"]["f:containers"];
        assert!(containers["k:{\"name\":\"app\"}"]["f:image"].is_object());

        // Another manager scales with an update: it takes spec.replicas.
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        let scaler = Writer {
            manager: "kubectl-scale",
            ..KUBECTL
        };
        let scaled = record_update(Some(&created), scaled, dep(), &scaler);
        assert_eq!(managers(&scaled).len(), 2);

        // Re-applying replicas 2 conflicts with that manager.
        let err = apply(Some(&scaled), &full(), dep(), &KUBECTL, false).unwrap_err();
        let cause = "conflict with \"kubectl-scale\" using apps/v1";
        assert_eq!(
            err.message,
            format!("Apply failed with 1 conflict: {cause}: .spec.replicas")
        );
        assert_eq!(
            err.causes,
            vec![(cause.to_string(), ".spec.replicas".to_string())]
        );

        // Leaving replicas out is no conflict; dropping label y prunes it.
        let mut without = config(0, "a:2", json!({"x": "1"}));
        without["spec"].as_object_mut().unwrap().remove("replicas");
        let applied = apply(Some(&scaled), &without, dep(), &KUBECTL, false).unwrap();
        assert_eq!(applied["spec"]["replicas"], 5);
        assert_eq!(applied["metadata"]["labels"], json!({"x": "1"}));
        assert_eq!(
            applied["spec"]["template"]["spec"]["containers"][0]["image"],
            "a:2"
        );

        // Forced: ownership moves.
        let forced = apply(
            Some(&scaled),
            &config(3, "a:1", json!({})),
            dep(),
            &KUBECTL,
            true,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let owners: Vec<String> = managers(&forced).into_iter().map(|m| m.manager).collect();
        assert_eq!(owners, vec!["kubectl"]);
    }

    #[test]
    fn updates_record_changed_fields() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let schema = definitions().kind("", "v1", "ConfigMap");
        let writer = |manager| Writer {
            manager,
            api_version: "v1",
            subresource: "",
            reset: &[],
        };
        let created = record_update(None, cm, schema, &writer("kubectl-create"));
        let fields = &created["metadata"]["managedFields"][0]["fieldsV1"];
        assert_eq!(fields, &json!({"f:data": {"f:a": {}}}));
        let mut edited = created.clone();
        edited["data"]["b"] = json!("2");
        let edited = record_update(Some(&created), edited, schema, &writer("kubectl-edit"));
        let ms = managers(&edited);
        let names: Vec<&str> = ms.iter().map(|m| m.manager.as_str()).collect();
        assert_eq!(names, vec!["kubectl-create", "kubectl-edit"]);
        assert_eq!(ms[1].fields.to_fields_v1(), json!({"f:data": {"f:b": {}}}));
    }
}
