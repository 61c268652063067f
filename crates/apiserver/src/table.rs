//! Server-side printing: `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` turns a get,
//! list or watch answer into a `meta.k8s.io/v1` `Table` with kube-apiserver's columns for
//! each kind (`pkg/printers/internalversion/printers.go`), `-o wide`'s extra columns at
//! priority 1, and rows carrying `PartialObjectMetadata` (`includeObject=Metadata`, the
//! default), the object (`Object`) or nothing (`None`). Kinds without a printer get kube's
//! default table convertor (Name, Created At).

use axum::http::{header, HeaderMap};
use serde_json::{json, Value};

use crate::registry::ResourceInfo;
use crate::request::Query;
use crate::status::{ApiError, ApiResult};

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

/// One column: name, type, priority (0 = always, 1 = `-o wide`).
struct Col(&'static str, &'static str, u8);

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn columns(info: &ResourceInfo) -> Vec<Col> {
    let s = "string";
    let i = "integer";
    match (info.group, info.plural) {
        ("", "namespaces") => vec![Col("Name", s, 0), Col("Status", s, 0), Col("Age", s, 0)],
        ("", "configmaps") => vec![Col("Name", s, 0), Col("Data", i, 0), Col("Age", s, 0)],
        ("", "secrets") => vec![
            Col("Name", s, 0),
            Col("Type", s, 0),
            Col("Data", i, 0),
            Col("Age", s, 0),
        ],
        ("", "serviceaccounts") => {
            vec![Col("Name", s, 0), Col("Secrets", i, 0), Col("Age", s, 0)]
        }
        ("", "pods") => vec![
            Col("Name", s, 0),
            Col("Ready", s, 0),
            Col("Status", s, 0),
            Col("Restarts", s, 0),
            Col("Age", s, 0),
            Col("IP", s, 1),
            Col("Node", s, 1),
            Col("Nominated Node", s, 1),
            Col("Readiness Gates", s, 1),
        ],
        ("", "services") => vec![
            Col("Name", s, 0),
            Col("Type", s, 0),
            Col("Cluster-IP", s, 0),
            Col("External-IP", s, 0),
            Col("Port(s)", s, 0),
            Col("Age", s, 0),
            Col("Selector", s, 1),
        ],
        ("", "endpoints") => vec![Col("Name", s, 0), Col("Endpoints", s, 0), Col("Age", s, 0)],
        ("", "nodes") => vec![
            Col("Name", s, 0),
            Col("Status", s, 0),
            Col("Roles", s, 0),
            Col("Age", s, 0),
            Col("Version", s, 0),
            Col("Internal-IP", s, 1),
            Col("External-IP", s, 1),
            Col("OS-Image", s, 1),
            Col("Kernel-Version", s, 1),
            Col("Container-Runtime", s, 1),
        ],
        ("", "events") => vec![
            Col("Last Seen", s, 0),
            Col("Type", s, 0),
            Col("Reason", s, 0),
            Col("Object", s, 0),
            Col("Subobject", s, 1),
            Col("Source", s, 1),
            Col("Message", s, 0),
            Col("First Seen", s, 1),
            Col("Count", s, 1),
            Col("Name", s, 1),
        ],
        ("apps", "deployments") => vec![
            Col("Name", s, 0),
            Col("Ready", s, 0),
            Col("Up-to-date", i, 0),
            Col("Available", i, 0),
            Col("Age", s, 0),
            Col("Containers", s, 1),
            Col("Images", s, 1),
            Col("Selector", s, 1),
        ],
        ("apps", "replicasets") | ("", "replicationcontrollers") => vec![
            Col("Name", s, 0),
            Col("Desired", i, 0),
            Col("Current", i, 0),
            Col("Ready", i, 0),
            Col("Age", s, 0),
            Col("Containers", s, 1),
            Col("Images", s, 1),
            Col("Selector", s, 1),
        ],
        ("apps", "statefulsets") => vec![
            Col("Name", s, 0),
            Col("Ready", s, 0),
            Col("Age", s, 0),
            Col("Containers", s, 1),
            Col("Images", s, 1),
        ],
        ("apps", "daemonsets") => vec![
            Col("Name", s, 0),
            Col("Desired", i, 0),
            Col("Current", i, 0),
            Col("Ready", i, 0),
            Col("Up-to-date", i, 0),
            Col("Available", i, 0),
            Col("Node Selector", s, 0),
            Col("Age", s, 0),
            Col("Containers", s, 1),
            Col("Images", s, 1),
            Col("Selector", s, 1),
        ],
        ("batch", "jobs") => vec![
            Col("Name", s, 0),
            Col("Status", s, 0),
            Col("Completions", s, 0),
            Col("Duration", s, 0),
            Col("Age", s, 0),
            Col("Containers", s, 1),
            Col("Images", s, 1),
            Col("Selector", s, 1),
        ],
        _ => vec![Col("Name", s, 0), Col("Created At", "date", 0)],
    }
}

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

/// kubectl's AGE of an RFC 3339 timestamp (`<unknown>` when absent).
fn since(ts: Option<&str>, now: i64) -> String {
    match ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => human_duration(now - t.timestamp()),
        None => "<unknown>".into(),
    }
}

fn str_or<'a>(v: &'a Value, default: &'a str) -> &'a str {
    v.as_str().filter(|s| !s.is_empty()).unwrap_or(default)
}

fn count(v: &Value) -> i64 {
    v.as_object()
        .map(|m| m.len())
        .or_else(|| v.as_array().map(Vec::len))
        .unwrap_or(0) as i64
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// The label selector of a workload as kubectl prints it (`<none>` when empty).
fn selector(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    let labels = sel.get("matchLabels").unwrap_or(sel);
    if let Some(m) = labels.as_object() {
        for (k, v) in m {
            if let Some(v) = v.as_str() {
                parts.push(format!("{k}={v}"));
            }
        }
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let vals: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let key = e["key"].as_str().unwrap_or("");
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", vals.join(",")),
            "NotIn" => format!("{key} notin ({})", vals.join(",")),
            "DoesNotExist" => format!("!{key}"),
            _ => key.to_string(),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// Container names and images of a pod template spec, comma-joined.
fn containers(spec: &Value) -> (String, String) {
    let list = spec["containers"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = list.iter().filter_map(|c| c["name"].as_str()).collect();
    let images: Vec<&str> = list.iter().filter_map(|c| c["image"].as_str()).collect();
    (names.join(","), images.join(","))
}

/// A pod's STATUS column (the reason kubectl shows: phase, a waiting/terminated reason,
/// `Terminating`).
fn pod_status(pod: &Value) -> String {
    let mut reason = str_or(
        &pod["status"]["reason"],
        str_or(&pod["status"]["phase"], "Unknown"),
    )
    .to_string();
    for cs in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(r) = cs["state"]["waiting"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            reason = r.to_string();
        } else if let Some(r) = cs["state"]["terminated"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            reason = r.to_string();
        }
    }
    if pod["metadata"].get("deletionTimestamp").is_some() {
        reason = "Terminating".into();
    }
    reason
}

fn cells(info: &ResourceInfo, obj: &Value, now: i64) -> Vec<Value> {
    let meta = &obj["metadata"];
    let name = json!(meta["name"].as_str().unwrap_or(""));
    let age = json!(since(meta["creationTimestamp"].as_str(), now));
    let spec = &obj["spec"];
    let status = &obj["status"];
    match (info.group, info.plural) {
        ("", "namespaces") => vec![name, json!(str_or(&status["phase"], "")), age],
        ("", "configmaps") => {
            vec![
                name,
                json!(count(&obj["data"]) + count(&obj["binaryData"])),
                age,
            ]
        }
        ("", "secrets") => vec![
            name,
            json!(str_or(&obj["type"], "")),
            json!(count(&obj["data"])),
            age,
        ],
        ("", "serviceaccounts") => vec![name, json!(count(&obj["secrets"])), age],
        ("", "pods") => {
            let statuses = status["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let total = spec["containers"].as_array().map(Vec::len).unwrap_or(0);
            let restarts: i64 = statuses.iter().map(|c| int(&c["restartCount"])).sum();
            let gates = spec["readinessGates"].as_array().map(Vec::len).unwrap_or(0);
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(obj)),
                json!(restarts.to_string()),
                age,
                json!(str_or(&status["podIP"], "<none>")),
                json!(str_or(&spec["nodeName"], "<none>")),
                json!(str_or(&status["nominatedNodeName"], "<none>")),
                json!(if gates == 0 {
                    "<none>".to_string()
                } else {
                    format!("0/{gates}")
                }),
            ]
        }
        ("", "services") => {
            let kind = str_or(&spec["type"], "ClusterIP");
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let proto = str_or(&p["protocol"], "TCP");
                    match p["nodePort"].as_i64() {
                        Some(np) => format!("{}:{np}/{proto}", int(&p["port"])),
                        None => format!("{}/{proto}", int(&p["port"])),
                    }
                })
                .collect();
            let mut external: Vec<String> = spec["externalIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            if kind == "LoadBalancer" {
                for i in status["loadBalancer"]["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let Some(ip) = i["ip"].as_str().or(i["hostname"].as_str()) {
                        external.push(ip.to_string());
                    }
                }
            }
            let external = match (kind, external.is_empty()) {
                ("ExternalName", _) => str_or(&spec["externalName"], "<none>").to_string(),
                ("LoadBalancer", true) => "<pending>".into(),
                (_, true) => "<none>".into(),
                _ => external.join(","),
            };
            vec![
                name,
                json!(kind),
                json!(str_or(&spec["clusterIP"], "<none>")),
                json!(external),
                json!(if ports.is_empty() {
                    "<none>".into()
                } else {
                    ports.join(",")
                }),
                age,
                json!(selector(&spec["selector"])),
            ]
        }
        ("", "endpoints") => {
            let mut eps = Vec::new();
            for subset in obj["subsets"].as_array().into_iter().flatten() {
                for a in subset["addresses"].as_array().into_iter().flatten() {
                    for p in subset["ports"].as_array().into_iter().flatten() {
                        eps.push(format!("{}:{}", str_or(&a["ip"], ""), int(&p["port"])));
                    }
                }
            }
            let shown = if eps.is_empty() {
                "<none>".to_string()
            } else if eps.len() > 3 {
                format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
            } else {
                eps.join(",")
            };
            vec![name, json!(shown), age]
        }
        ("", "nodes") => {
            let conds = status["conditions"].as_array().cloned().unwrap_or_default();
            let ready = conds.iter().find(|c| c["type"] == "Ready");
            let mut st = match ready.map(|c| c["status"].as_str().unwrap_or("")) {
                Some("True") => "Ready".to_string(),
                Some("False") => "NotReady".to_string(),
                _ => "Unknown".to_string(),
            };
            if spec["unschedulable"] == true {
                st.push_str(",SchedulingDisabled");
            }
            let mut roles: Vec<&str> = meta["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .filter(|r| !r.is_empty())
                .collect();
            roles.sort();
            let addr = |t: &str| {
                status["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["type"] == t)
                    .and_then(|a| a["address"].as_str())
                    .unwrap_or("<none>")
                    .to_string()
            };
            let ni = &status["nodeInfo"];
            vec![
                name,
                json!(st),
                json!(if roles.is_empty() {
                    "<none>".into()
                } else {
                    roles.join(",")
                }),
                age,
                json!(str_or(&ni["kubeletVersion"], "")),
                json!(addr("InternalIP")),
                json!(addr("ExternalIP")),
                json!(str_or(&ni["osImage"], "<unknown>")),
                json!(str_or(&ni["kernelVersion"], "<unknown>")),
                json!(str_or(&ni["containerRuntimeVersion"], "<unknown>")),
            ]
        }
        ("", "events") => {
            let io = &obj["involvedObject"];
            let last = obj["lastTimestamp"]
                .as_str()
                .or(obj["eventTime"].as_str())
                .or(meta["creationTimestamp"].as_str());
            let first = obj["firstTimestamp"].as_str().or(obj["eventTime"].as_str());
            let source = match (
                str_or(&obj["source"]["component"], ""),
                str_or(&obj["source"]["host"], ""),
            ) {
                ("", _) => str_or(&obj["reportingComponent"], "").to_string(),
                (c, "") => c.to_string(),
                (c, h) => format!("{c}, {h}"),
            };
            vec![
                json!(since(last, now)),
                json!(str_or(&obj["type"], "")),
                json!(str_or(&obj["reason"], "")),
                json!(format!(
                    "{}/{}",
                    str_or(&io["kind"], "").to_ascii_lowercase(),
                    str_or(&io["name"], "")
                )),
                json!(str_or(&io["fieldPath"], "")),
                json!(source),
                json!(str_or(&obj["message"], "")),
                json!(since(first, now)),
                json!(obj["count"].as_i64().unwrap_or(1)),
                name,
            ]
        }
        ("apps", "deployments") => {
            let (c, i) = containers(&spec["template"]["spec"]);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(&status["readyReplicas"]),
                    int(&spec["replicas"])
                )),
                json!(int(&status["updatedReplicas"])),
                json!(int(&status["availableReplicas"])),
                age,
                json!(c),
                json!(i),
                json!(selector(&spec["selector"])),
            ]
        }
        ("apps", "replicasets") | ("", "replicationcontrollers") => {
            let (c, i) = containers(&spec["template"]["spec"]);
            vec![
                name,
                json!(int(&spec["replicas"])),
                json!(int(&status["replicas"])),
                json!(int(&status["readyReplicas"])),
                age,
                json!(c),
                json!(i),
                json!(selector(&spec["selector"])),
            ]
        }
        ("apps", "statefulsets") => {
            let (c, i) = containers(&spec["template"]["spec"]);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(&status["readyReplicas"]),
                    int(&spec["replicas"])
                )),
                age,
                json!(c),
                json!(i),
            ]
        }
        ("apps", "daemonsets") => {
            let (c, i) = containers(&spec["template"]["spec"]);
            let node_sel = match spec["template"]["spec"]["nodeSelector"].as_object() {
                Some(m) if !m.is_empty() => m
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => "<none>".into(),
            };
            vec![
                name,
                json!(int(&status["desiredNumberScheduled"])),
                json!(int(&status["currentNumberScheduled"])),
                json!(int(&status["numberReady"])),
                json!(int(&status["updatedNumberScheduled"])),
                json!(int(&status["numberAvailable"])),
                json!(node_sel),
                age,
                json!(c),
                json!(i),
                json!(selector(&spec["selector"])),
            ]
        }
        ("batch", "jobs") => {
            let (c, i) = containers(&spec["template"]["spec"]);
            let completions = match spec["completions"].as_i64() {
                Some(n) => format!("{}/{n}", int(&status["succeeded"])),
                None => format!("{}/1", int(&status["succeeded"])),
            };
            let conds = status["conditions"].as_array().cloned().unwrap_or_default();
            let has = |t: &str| {
                conds
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            let st = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if has("Suspended") {
                "Suspended"
            } else {
                "Running"
            };
            let start = status["startTime"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            let end = status["completionTime"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp())
                .unwrap_or(now);
            let duration = start
                .map(|s| human_duration(end - s.timestamp()))
                .unwrap_or_default();
            vec![
                name,
                json!(st),
                json!(completions),
                json!(duration),
                age,
                json!(c),
                json!(i),
                json!(selector(&spec["selector"])),
            ]
        }
        _ => vec![
            name,
            json!(meta["creationTimestamp"].as_str().unwrap_or("")),
        ],
    }
}

/// One row for `obj`.
pub fn row(info: &ResourceInfo, obj: &Value, include: Include, now: i64) -> Value {
    let mut row = json!({"cells": cells(info, obj, now)});
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
    let defs: Vec<Value> = if with_columns {
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
