//! Strategic merge patch (`application/strategic-merge-patch+json`), the apply half, as
//! kube-apiserver does it (k8s.io/apimachinery `pkg/util/strategicpatch/patch.go`,
//! `StrategicMergeMapPatch` with `MergeParallelList` and `IgnoreUnmatchedNulls`), driven by the
//! patch metadata of [`crate::schema`] — never by a guess from field names.
//!
//! What a patch can say ([the design doc](https://git.k8s.io/community/contributors/devel/sig-api-machinery/strategic-merge-patch.md)):
//! - maps merge key by key; `null` deletes a key;
//! - lists with strategy `merge` and a merge key merge element by element on that key; lists of
//!   scalars with strategy `merge` are sets (union); other lists are replaced;
//! - directives: `$patch: replace|delete|merge` (on a map or a list element),
//!   `$retainKeys: [..]` (drop the original's keys not listed), `$setElementOrder/<list>: [..]`
//!   (the order of the merged list), `$deleteFromPrimitiveList/<list>: [..]` (remove scalars).
//!
//! Fields the schema does not know (custom resources have no patch metadata; kube refuses a
//! strategic merge patch for them) get the defaults: maps merge, lists are replaced.

use serde_json::{Map, Value};

use crate::schema::{PatchMeta, Schema};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER_PREFIX: &str = "$setElementOrder";
const DELETE_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList";

/// A patch that cannot be applied. Messages are apimachinery's `mergepatch` errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StrategicPatchError {
    #[error("invalid JSON document")]
    BadJsonDoc,
    #[error("Unknown patch type: {kind} in map: {map}")]
    BadPatchType { kind: String, map: String },
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys,
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrder,
    #[error("invalid patch format of deleteFromPrimitiveList")]
    BadPrimitiveList,
    #[error("lists of lists are not supported")]
    NoListOfLists,
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    OrderMismatch { patch: String, order: String },
    #[error("list element types are not identical: {0}")]
    MixedList(String),
    #[error("cannot merge lists without merge key for {0}")]
    NoMergeKeyDeclared(String),
    #[error("expected {expected}, but got {got}")]
    BadArgType { expected: &'static str, got: String },
}

impl StrategicPatchError {
    /// The HTTP status kube-apiserver answers with (`interpretStrategicMergePatchError`):
    /// 400 for malformed patches, 422 for unsupported shapes, 500 for the rest.
    pub fn status_code(&self) -> u16 {
        use StrategicPatchError::*;
        match self {
            BadJsonDoc | BadRetainKeys | BadSetElementOrder | BadPrimitiveList => 400,
            NoListOfLists => 422,
            _ => 500,
        }
    }
}

type Result<T> = std::result::Result<T, StrategicPatchError>;

/// Applies `patch` to `original` (both JSON objects) with the metadata of `schema` (the kind's
/// schema; `None` for kinds without one). Returns the patched object.
pub fn apply(original: &Value, patch: &Value, schema: Option<Schema<'_>>) -> Result<Value> {
    let (Value::Object(original), Value::Object(patch)) = (original, patch) else {
        return Err(StrategicPatchError::BadJsonDoc);
    };
    merge_map(Some(original.clone()), patch.clone(), schema).map(Value::Object)
}

fn short(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn merge_map(
    original: Option<Map<String, Value>>,
    mut patch: Map<String, Value>,
    schema: Option<Schema<'_>>,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                Ok(patch)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(StrategicPatchError::BadPatchType {
                kind: short(directive),
                map: short(&patch),
            }),
        };
    }
    let mut original = original.unwrap_or_default();
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, schema)?;

    let keys: Vec<String> = patch.keys().cloned().collect();
    for key in keys {
        let patch_v = patch.remove(&key).unwrap_or(Value::Null);
        let (k, is_delete_list) = match key.strip_prefix(DELETE_PRIMITIVE_PREFIX) {
            Some(rest) => match rest.strip_prefix('/') {
                Some(k) => (k.to_string(), true),
                None => return Err(StrategicPatchError::BadPrimitiveList),
            },
            None => (key, false),
        };
        if patch_v.is_null() {
            // IgnoreUnmatchedNulls: a null deletes the key, and is never kept.
            original.remove(&k);
            continue;
        }
        let field = schema.and_then(|s| s.field(&k));
        let Some(orig_v) = original.remove(&k) else {
            if !is_delete_list {
                let mut v = patch_v;
                discard_nulls(&mut v);
                if let Some(v) = remove_directives(v) {
                    original.insert(k, v);
                }
            }
            continue;
        };
        let same_kind = matches!(
            (&orig_v, &patch_v),
            (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_))
        );
        if !same_kind {
            if is_delete_list {
                original.insert(k, orig_v);
            } else {
                let mut v = patch_v;
                discard_nulls(&mut v);
                if let Some(v) = remove_directives(v) {
                    original.insert(k, v);
                }
            }
            continue;
        }
        let meta = field.map(|f| f.patch_meta()).unwrap_or_default();
        let merged = match (orig_v, patch_v) {
            (Value::Object(_), Value::Object(p))
                if p.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") =>
            {
                // apimachinery leaves an empty map, which the typed object's `omitempty`
                // then drops: what clients see is the field gone.
                continue;
            }
            (Value::Object(o), Value::Object(p)) => {
                if meta.strategy == "replace" {
                    Value::Object(p)
                } else {
                    Value::Object(merge_map(Some(o), p, field)?)
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                Value::Array(merge_slice_handler(o, p, field, &meta, is_delete_list)?)
            }
            _ => unreachable!("kinds checked above"),
        };
        original.insert(k, merged);
    }
    Ok(original)
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<()> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(StrategicPatchError::BadRetainKeys);
    };
    let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_PRIMITIVE_PREFIX) || k.starts_with(SET_ORDER_PREFIX)
        {
            continue;
        }
        if !keep.contains(&k.as_str()) {
            return Err(StrategicPatchError::BadRetainKeys);
        }
    }
    original.retain(|k, _| keep.contains(&k.as_str()));
    Ok(())
}

/// `$setElementOrder/<list>`: merges that list now and orders it as the directive says.
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Option<Schema<'_>>,
) -> Result<()> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER_PREFIX))
        .cloned()
        .collect();
    for key in directives {
        let order = patch.remove(&key).unwrap_or(Value::Null);
        let Value::Array(order) = order else {
            return Err(StrategicPatchError::BadSetElementOrder);
        };
        let Some(list_key) = key[SET_ORDER_PREFIX.len()..].strip_prefix('/') else {
            return Err(StrategicPatchError::BadSetElementOrder);
        };
        let field = schema.and_then(|s| s.field(list_key));
        let meta = field.map(|f| f.patch_meta()).unwrap_or_default();
        let merge_key = meta.merge_key.clone().unwrap_or_default();
        let orig_list = list_at(original, list_key)?;
        let patch_list = list_at(patch, list_key)?;
        validate_with_order(patch_list.as_deref().unwrap_or(&[]), &order, &merge_key)?;
        let merged = match (&orig_list, &patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => p.clone(),
            (Some(o), Some(p)) => merge_slice_handler(o.clone(), p.clone(), field, &meta, false)?,
            (None, None) => continue,
        };
        let (patch_items, server_only) = partition(&merged, &order, &merge_key)?;
        let is_map = element_is_map(
            orig_list.as_deref().unwrap_or(&[]),
            patch_list.as_deref().unwrap_or(&[]),
        )?;
        let both = normalize_element_order(
            patch_items,
            server_only,
            &order,
            orig_list.as_deref().unwrap_or(&[]),
            &merge_key,
            is_map,
        )?;
        original.insert(list_key.to_string(), Value::Array(both));
        patch.remove(list_key);
    }
    Ok(())
}

/// The list under `key`, if any; anything else there is an error.
fn list_at(map: &Map<String, Value>, key: &str) -> Result<Option<Vec<Value>>> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a.clone())),
        Some(other) => Err(StrategicPatchError::BadArgType {
            expected: "list",
            got: short(other),
        }),
    }
}

fn validate_with_order(patch_list: &[Value], order: &[Value], merge_key: &str) -> Result<()> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = if merge_key.is_empty() {
        patch_list.iter().collect()
    } else {
        patch_list
            .iter()
            .filter(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
            .collect()
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < non_delete.len() && oi < order.len() {
        if non_delete[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if merge_key_equal(non_delete[pi], &order[oi], merge_key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < non_delete.len() && oi >= order.len() {
        return Err(StrategicPatchError::OrderMismatch {
            patch: short(&patch_list),
            order: short(&order),
        });
    }
    Ok(())
}

fn merge_key_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let l = left
        .get(merge_key)
        .ok_or_else(|| no_merge_key(left, merge_key))?;
    let r = right
        .get(merge_key)
        .ok_or_else(|| no_merge_key(right, merge_key))?;
    Ok(l == r)
}

fn no_merge_key(map: &Value, key: &str) -> StrategicPatchError {
    StrategicPatchError::NoMergeKey {
        map: short(map),
        key: key.to_string(),
    }
}

fn merge_slice_handler(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: Option<Schema<'_>>,
    meta: &PatchMeta,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    if meta.strategy == "merge" {
        merge_slice(
            original,
            patch,
            field.and_then(|f| f.items()),
            meta.merge_key.as_deref().unwrap_or(""),
            is_delete_list,
        )
    } else {
        Ok(patch)
    }
}

/// Whether the lists' elements are maps (an error for lists of lists or mixed kinds).
fn element_is_map(a: &[Value], b: &[Value]) -> Result<bool> {
    let mut kind: Option<u8> = None;
    for v in a.iter().chain(b) {
        let k = match v {
            Value::Array(_) => return Err(StrategicPatchError::NoListOfLists),
            Value::Object(_) => 1,
            Value::String(_) => 2,
            Value::Number(_) => 3,
            Value::Bool(_) => 4,
            Value::Null => 5,
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(StrategicPatchError::MixedList(format!(
                    "{} {}",
                    short(&a),
                    short(&b)
                )))
            }
            _ => {}
        }
    }
    Ok(kind == Some(1))
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    items: Option<Schema<'_>>,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let is_map = element_is_map(&original, &patch)?;
    let (merged, original_for_order) = if !is_map {
        if is_delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        (merged, original)
    } else {
        if merge_key.is_empty() {
            return Err(StrategicPatchError::NoMergeKeyDeclared("map".into()));
        }
        let order_source = original.clone();
        let (original, patch_rest) = merge_special_elements(original, &patch, merge_key)?;
        let merged = merge_without_special_elements(original, patch_rest, merge_key, items)?;
        (merged, order_source)
    };
    let key = if is_map { merge_key } else { "" };
    let (patch_items, server_only) = partition(&merged, &patch, key)?;
    normalize_element_order(
        patch_items,
        server_only,
        &patch,
        &original_for_order,
        key,
        is_map,
    )
}

/// `$patch: delete` (by merge key) and `$patch: replace` elements of a merging list.
fn merge_special_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut rest = Vec::new();
    let mut replace = false;
    for v in patch {
        match v.get(DIRECTIVE) {
            None => rest.push(v.clone()),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let key = v.get(merge_key).ok_or_else(|| no_merge_key(v, merge_key))?;
                    original.retain(|o| o.get(merge_key) != Some(key));
                }
                Some("replace") => replace = true,
                Some("merge") => return Err(StrategicPatchError::MergeDirectiveInList),
                _ => {
                    return Err(StrategicPatchError::BadPatchType {
                        kind: short(d),
                        map: short(v),
                    })
                }
            },
        }
    }
    if replace {
        return Ok((rest, Vec::new()));
    }
    Ok((original, rest))
}

fn merge_without_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
    items: Option<Schema<'_>>,
) -> Result<Vec<Value>> {
    for v in patch {
        let key = v
            .get(merge_key)
            .cloned()
            .ok_or_else(|| no_merge_key(&v, merge_key))?;
        let found = original.iter().position(|o| o.get(merge_key) == Some(&key));
        match (found, v) {
            (Some(i), Value::Object(p)) => {
                let o = match original[i].take() {
                    Value::Object(o) => o,
                    other => {
                        return Err(StrategicPatchError::BadArgType {
                            expected: "map",
                            got: short(&other),
                        })
                    }
                };
                original[i] = Value::Object(merge_map(Some(o), p, items)?);
            }
            (_, v) => original.push(v),
        }
    }
    Ok(original)
}

/// Splits `list` into the items present in `by` (by merge key, or by value for scalars) and
/// the others.
fn partition(list: &[Value], by: &[Value], merge_key: &str) -> Result<(Vec<Value>, Vec<Value>)> {
    let (mut present, mut others) = (Vec::new(), Vec::new());
    for v in list {
        let found = if merge_key.is_empty() {
            by.contains(v)
        } else {
            let key = v.get(merge_key).ok_or_else(|| no_merge_key(v, merge_key))?;
            by.iter().any(|b| b.get(merge_key) == Some(key))
        };
        if found {
            present.push(v.clone());
        } else {
            others.push(v.clone());
        }
    }
    Ok((present, others))
}

fn index_of(list: &[Value], item: &Value, merge_key: &str, is_map: bool) -> Option<usize> {
    if is_map {
        let key = item.get(merge_key);
        list.iter().position(|v| v.get(merge_key) == key)
    } else {
        list.iter().position(|v| v == item)
    }
}

/// Sorts the patch's items by `patch_order` and the server-only items by `server_order`, then
/// interleaves them by the live order (apimachinery `normalizeElementOrder`).
fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    is_map: bool,
) -> Result<Vec<Value>> {
    let patch = normalize_slice_order(patch, patch_order, merge_key, is_map)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, is_map)?;
    Ok(merge_sorted(
        server_only,
        patch,
        server_order,
        merge_key,
        is_map,
    ))
}

fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    is_map: bool,
) -> Result<Vec<Value>> {
    let (mut keep, deletes): (Vec<Value>, Vec<Value>) = if is_map {
        for v in to_sort.iter().chain(order) {
            if v.get(merge_key).is_none() {
                return Err(no_merge_key(v, merge_key));
            }
        }
        to_sort
            .into_iter()
            .partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
    } else {
        (to_sort, Vec::new())
    };
    // A stable sort on the position in `order`; items not in it keep their place relative to
    // each other (Go's comparator treats them as "less", which a stable insertion keeps).
    let mut with_pos: Vec<(Option<usize>, Value)> = keep
        .drain(..)
        .map(|v| (index_of(order, &v, merge_key, is_map), v))
        .collect();
    stable_sort_known(&mut with_pos);
    keep = with_pos.into_iter().map(|(_, v)| v).collect();
    keep.extend(deletes);
    Ok(keep)
}

/// Orders the items found in the order list by their position, leaving the others where they
/// are relative to each other.
fn stable_sort_known(items: &mut [(Option<usize>, Value)]) {
    let mut known: Vec<(usize, Value)> = Vec::new();
    let mut slots = Vec::new();
    for (i, (pos, v)) in items.iter().enumerate() {
        if let Some(p) = pos {
            known.push((*p, v.clone()));
            slots.push(i);
        }
    }
    known.sort_by_key(|(p, _)| *p);
    for (slot, (p, v)) in slots.into_iter().zip(known) {
        items[slot] = (Some(p), v);
    }
}

fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    is_map: bool,
) -> Vec<Value> {
    let less = |l: &Value, r: &Value| match (
        index_of(server_order, l, merge_key, is_map),
        index_of(server_order, r, merge_key, is_map),
    ) {
        (Some(li), Some(ri)) => li < ri,
        _ => false,
    };
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() || j < right.len() {
        let take_left = j >= right.len() || (i < left.len() && less(&left[i], &right[j]));
        if take_left {
            out.push(left[i].clone());
            i += 1;
        } else {
            out.push(right[j].clone());
            j += 1;
        }
    }
    out
}

fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// Strips directives from a value taken whole from the patch; `None` if the value itself is a
/// directive (a map with `$patch`), which is then not kept.
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(
                m.into_iter()
                    .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                    .collect(),
            ))
        }
        Value::Array(a) => Some(Value::Array(
            a.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::definitions;
    use serde_json::json;

    fn pod() -> Option<Schema<'static>> {
        definitions().kind("", "v1", "Pod")
    }

    fn deployment() -> Option<Schema<'static>> {
        definitions().kind("apps", "v1", "Deployment")
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let orig = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let patch = json!({"metadata": {"labels": {"b": null, "c": "3"}}});
        let out = apply(&orig, &patch, pod()).unwrap();
        assert_eq!(out, json!({"metadata": {"labels": {"a": "1", "c": "3"}}}));
    }

    #[test]
    fn containers_merge_by_name_and_ports_by_container_port() {
        let orig = json!({"spec": {"containers": [
            {"name": "app", "image": "a:1", "ports": [{"containerPort": 80}, {"containerPort": 81, "name": "m"}],
             "args": ["x", "y"]},
            {"name": "side", "image": "s:1"}
        ]}});
        let patch = json!({"spec": {"containers": [
            {"name": "app", "image": "a:2", "ports": [{"containerPort": 81, "name": "metrics"}], "args": ["z"]}
        ]}});
        let out = apply(&orig, &patch, pod()).unwrap();
        assert_eq!(
            out,
            json!({"spec": {"containers": [
                {"name": "app", "image": "a:2", "ports": [{"containerPort": 80}, {"containerPort": 81, "name": "metrics"}],
                 "args": ["z"]},
                {"name": "side", "image": "s:1"}
            ]}})
        );
    }

    #[test]
    fn volume_mounts_merge_on_mount_path_not_name() {
        let orig = json!({"spec": {"containers": [{"name": "c", "volumeMounts": [
            {"name": "data", "mountPath": "/a"}, {"name": "data", "mountPath": "/b"}]}]}});
        let patch = json!({"spec": {"containers": [{"name": "c", "volumeMounts": [
            {"name": "data", "mountPath": "/b", "readOnly": true}]}]}});
        let out = apply(&orig, &patch, pod()).unwrap();
        assert_eq!(
            out["spec"]["containers"][0]["volumeMounts"],
            json!([
            {"name": "data", "mountPath": "/a"}, {"name": "data", "mountPath": "/b", "readOnly": true}])
        );
    }

    #[test]
    fn delete_directive_and_set_element_order() {
        let orig = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
            "containers": [{"name": "b", "$patch": "delete"}]
        }});
        let out = apply(&orig, &patch, pod()).unwrap();
        assert_eq!(
            out,
            json!({"spec": {"containers": [{"name": "c"}, {"name": "a"}]}})
        );
    }

    #[test]
    fn finalizers_are_a_set_and_delete_from_primitive_list() {
        let orig = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = apply(
            &orig,
            &json!({"metadata": {"finalizers": ["b", "c"]}}),
            pod(),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = apply(
            &out,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            pod(),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    }

    #[test]
    fn retain_keys_and_replace() {
        let orig = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = apply(&orig, &patch, deployment()).unwrap();
        assert_eq!(out, json!({"spec": {"strategy": {"type": "Recreate"}}}));
        let patch = json!({"spec": {"template": {"$patch": "replace", "metadata": {"labels": {"x": "y"}}}}});
        let orig = json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {}}}});
        let out = apply(&orig, &patch, deployment()).unwrap();
        assert_eq!(
            out,
            json!({"spec": {"template": {"metadata": {"labels": {"x": "y"}}}}})
        );
    }

    #[test]
    fn bad_patches_are_errors() {
        let orig = json!({"spec": {"containers": [{"name": "a"}]}});
        let no_key = json!({"spec": {"containers": [{"image": "x"}]}});
        assert!(matches!(
            apply(&orig, &no_key, pod()),
            Err(StrategicPatchError::NoMergeKey { .. })
        ));
        let gone = apply(&orig, &json!({"spec": {"$patch": "delete"}}), pod()).unwrap();
        assert_eq!(gone, json!({}));
        let bad = json!({"spec": {"$patch": "explode"}});
        assert!(matches!(
            apply(&orig, &bad, pod()),
            Err(StrategicPatchError::BadPatchType { .. })
        ));
        // A directive on a map the original lacks is dropped, as apimachinery does.
        let dropped = apply(&orig, &json!({"metadata": {"$patch": "explode"}}), pod()).unwrap();
        assert_eq!(dropped, orig);
        assert_eq!(
            apply(&json!([]), &json!({}), pod()),
            Err(StrategicPatchError::BadJsonDoc)
        );
    }

    #[test]
    fn unknown_kinds_merge_maps_and_replace_lists() {
        let orig = json!({"spec": {"items": [1, 2], "m": {"a": 1}}});
        let out = apply(&orig, &json!({"spec": {"items": [3], "m": {"b": 2}}}), None).unwrap();
        assert_eq!(out, json!({"spec": {"items": [3], "m": {"a": 1, "b": 2}}}));
    }
}
