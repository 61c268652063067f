//! Server-side printing: `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` turns a get,
//! list or watch answer into a `meta.k8s.io/v1` `Table` with kube-apiserver's columns for
//! each kind (`pkg/printers/internalversion/printers.go`), `-o wide`'s extra columns at
//! priority 1, and rows carrying `PartialObjectMetadata` (`includeObject=Metadata`, the
//! default), the object (`Object`) or nothing (`None`). Kinds without a printer get kube's
//! default table convertor (Name, Created At).

use axum::http::{header, HeaderMap};
use serde_json::{json, Value};

use crate::custom::{Column, Custom};
use crate::registry::ResourceInfo;

mod pod;
mod printers;

use crate::request::Query;
use crate::status::{ApiError, ApiResult};
use printers::{cells, columns, Col};

/// The Table media type of a response.
pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// What rows carry (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

/// The Table rendering a request asked for, if any.
#[derive(Clone, Copy, Debug)]
pub struct TableRequest {
    pub include: Include,
}

/// Whether the Accept header asks for a `meta.k8s.io` Table (v1 or v1beta1) before plain JSON.
pub fn wants_table(headers: &HeaderMap, query: &Query) -> ApiResult<Option<TableRequest>> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let first_table = accept.split(',').map(str::trim).find_map(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        let is_table = params[0] == "application/json"
            && params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && (params.contains(&"v=v1") || params.contains(&"v=v1beta1"));
        let is_plain =
            params.len() == 1 && matches!(params[0], "application/json" | "*/*" | "application/*");
        (is_table || is_plain).then_some(is_table)
    });
    if first_table != Some(true) {
        return Ok(None);
    }
    let include = match query.non_empty("includeObject") {
        None | Some("Metadata") => Include::Metadata,
        Some("Object") => Include::Object,
        Some("None") => Include::None,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
            )))
        }
    };
    Ok(Some(TableRequest { include }))
}

/// The column descriptions kube takes from `ObjectMeta`'s docs.
const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// Go's `duration.HumanDuration` (what kubectl shows as AGE).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// One row for `obj`.
pub fn row(info: &ResourceInfo, obj: &Value, include: Include, now: i64) -> Value {
    let cells = match &info.custom {
        Some(c) => custom_cells(c, obj, now),
        None => cells(info, obj, now),
    };
    let mut row = json!({"cells": cells});
    match include {
        Include::None => {}
        Include::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            });
        }
        Include::Object => {
            let mut o = obj.clone();
            o["kind"] = json!(info.kind);
            o["apiVersion"] = json!(info.api_version());
            row["object"] = o;
        }
    }
    row
}

/// A Table of `objects`; `metadata` is the list metadata (resourceVersion, continue).
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    metadata: Value,
    include: Include,
    with_columns: bool,
) -> Value {
    let now = chrono::Utc::now().timestamp();
    let defs: Vec<Value> = if let (true, Some(c)) = (with_columns, &info.custom) {
        custom_columns(c)
    } else if with_columns {
        columns(info)
            .into_iter()
            .map(|Col(name, kind, priority)| {
                let description = match name {
                    "Name" => NAME_DESC,
                    "Age" | "Created At" => AGE_DESC,
                    _ => "",
                };
                let mut d = json!({"name": name, "type": kind, "format": "", "description": description, "priority": priority});
                if name == "Name" {
                    d["format"] = json!("name");
                }
                d
            })
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": defs,
        "rows": objects.iter().map(|o| row(info, o, include, now)).collect::<Vec<_>>(),
    })
}

/// A CRD's columns: `additionalPrinterColumns` (or kube's default, `Age`), after `Name`
/// (apiextensions-apiserver's `tableconvertor`).
fn printer_columns(c: &Custom) -> Vec<Column> {
    if !c.columns.is_empty() {
        return c.columns.clone();
    }
    vec![Column {
        name: "Age".into(),
        kind: "date".into(),
        format: String::new(),
        description: AGE_DESC.into(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }]
}

fn custom_columns(c: &Custom) -> Vec<Value> {
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESC, "priority": 0}),
    ];
    for col in printer_columns(c) {
        defs.push(
            json!({"name": col.name, "type": col.kind, "format": col.format,
            "description": col.description, "priority": col.priority}),
        );
    }
    defs
}

/// kube's `cellForJSONValue`: the value as the column's type, dates as an age; absent or
/// mistyped values are null (kubectl prints `<none>`).
fn custom_cells(c: &Custom, obj: &Value, now: i64) -> Vec<Value> {
    let mut cells = vec![json!(obj["metadata"]["name"].as_str().unwrap_or(""))];
    for col in printer_columns(c) {
        let v = crate::rest::custom_json_path(obj, &col.json_path);
        let cell = match (col.kind.as_str(), v) {
            (_, None | Some(Value::Null)) => Value::Null,
            ("integer", Some(Value::Number(n))) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map_or(Value::Null, |i| json!(i)),
            ("number", Some(Value::Number(n))) => json!(n.as_f64().unwrap_or(0.0)),
            ("boolean", Some(Value::Bool(b))) => json!(b),
            ("date", Some(Value::String(s))) => match chrono::DateTime::parse_from_rfc3339(s) {
                Ok(t) => json!(human_duration(now - t.timestamp())),
                Err(_) => json!("<invalid>"),
            },
            ("string", Some(Value::String(s))) => json!(s),
            // kube prints other values of a string column through the JSONPath printer.
            ("string", Some(other)) => json!(other.to_string()),
            _ => Value::Null,
        };
        cells.push(cell);
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_as_go() {
        let cases = [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (47 * 3600, "47h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (800 * 86400, "2y70d"),
            (-5, "<invalid>"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn table_negotiation() {
        let mut h = HeaderMap::new();
        let q = Query::parse(None);
        assert!(wants_table(&h, &q).unwrap().is_none());
        h.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            wants_table(&h, &q).unwrap().unwrap().include,
            Include::Metadata
        );
        h.insert(header::ACCEPT, "application/json, */*".parse().unwrap());
        assert!(wants_table(&h, &q).unwrap().is_none());
    }
}
