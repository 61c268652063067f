//! The columns and cells of each kind (kube-apiserver's `printers.go` handlers).

use serde_json::{json, Value};

use super::human_duration;
use crate::registry::ResourceInfo;

/// One column: name, type, priority (0 = always, 1 = `-o wide`).
pub(super) struct Col(pub &'static str, pub &'static str, pub u8);

pub(super) fn columns(info: &ResourceInfo) -> Vec<Col> {
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
        _ => more_columns(info)
            .unwrap_or_else(|| vec![Col("Name", s, 0), Col("Created At", "date", 0)]),
    }
}

/// kubectl's AGE of an RFC 3339 timestamp (`<unknown>` when absent).
fn since(ts: Option<&str>, now: i64) -> String {
    match ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => human_duration(now - t.timestamp()),
        None => "<unknown>".into(),
    }
}

pub(super) fn str_or<'a>(v: &'a Value, default: &'a str) -> &'a str {
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

pub(super) fn cells(info: &ResourceInfo, obj: &Value, now: i64) -> Vec<Value> {
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
            let c = super::pod::columns(obj, now);
            vec![
                name,
                json!(c.ready),
                json!(c.status),
                json!(c.restarts),
                age,
                json!(str_or(&status["podIP"], "<none>")),
                json!(str_or(&spec["nodeName"], "<none>")),
                json!(str_or(&status["nominatedNodeName"], "<none>")),
                json!(super::pod::readiness_gates(obj)),
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
        _ => more_cells(info, obj, now).unwrap_or_else(|| {
            vec![
                name,
                json!(meta["creationTimestamp"].as_str().unwrap_or("")),
            ]
        }),
    }
}

/// Columns of the less central kinds.
fn more_columns(info: &ResourceInfo) -> Option<Vec<Col>> {
    let s = "string";
    let i = "integer";
    Some(match (info.group, info.plural) {
        ("batch", "cronjobs") => vec![
            Col("Name", s, 0),
            Col("Schedule", s, 0),
            Col("Timezone", s, 0),
            Col("Suspend", "boolean", 0),
            Col("Active", i, 0),
            Col("Last Schedule", s, 0),
            Col("Age", s, 0),
            Col("Containers", s, 1),
            Col("Images", s, 1),
            Col("Selector", s, 1),
        ],
        ("networking.k8s.io", "ingresses") => vec![
            Col("Name", s, 0),
            Col("Class", s, 0),
            Col("Hosts", s, 0),
            Col("Address", s, 0),
            Col("Ports", s, 0),
            Col("Age", s, 0),
        ],
        ("networking.k8s.io", "ingressclasses") => vec![
            Col("Name", s, 0),
            Col("Controller", s, 0),
            Col("Parameters", s, 0),
            Col("Age", s, 0),
        ],
        ("networking.k8s.io", "networkpolicies") => {
            vec![
                Col("Name", s, 0),
                Col("Pod-Selector", s, 0),
                Col("Age", s, 0),
            ]
        }
        ("policy", "poddisruptionbudgets") => vec![
            Col("Name", s, 0),
            Col("Min Available", s, 0),
            Col("Max Unavailable", s, 0),
            Col("Allowed Disruptions", i, 0),
            Col("Age", s, 0),
        ],
        ("", "persistentvolumeclaims") => vec![
            Col("Name", s, 0),
            Col("Status", s, 0),
            Col("Volume", s, 0),
            Col("Capacity", s, 0),
            Col("Access Modes", s, 0),
            Col("StorageClass", s, 0),
            Col("VolumeAttributesClass", s, 0),
            Col("Age", s, 0),
            Col("VolumeMode", s, 1),
        ],
        ("", "persistentvolumes") => vec![
            Col("Name", s, 0),
            Col("Capacity", s, 0),
            Col("Access Modes", s, 0),
            Col("Reclaim Policy", s, 0),
            Col("Status", s, 0),
            Col("Claim", s, 0),
            Col("StorageClass", s, 0),
            Col("VolumeAttributesClass", s, 0),
            Col("Reason", s, 0),
            Col("Age", s, 0),
            Col("VolumeMode", s, 1),
        ],
        ("", "resourcequotas") => vec![
            Col("Name", s, 0),
            Col("Age", s, 0),
            Col("Request", s, 0),
            Col("Limit", s, 0),
        ],
        ("", "podtemplates") => vec![
            Col("Name", s, 0),
            Col("Containers", s, 0),
            Col("Images", s, 0),
            Col("Pod Labels", s, 0),
        ],
        ("scheduling.k8s.io", "priorityclasses") => vec![
            Col("Name", s, 0),
            Col("Value", i, 0),
            Col("Global-Default", "boolean", 0),
            Col("Age", s, 0),
            Col("PreemptionPolicy", s, 0),
        ],
        ("storage.k8s.io", "storageclasses") => vec![
            Col("Name", s, 0),
            Col("Provisioner", s, 0),
            Col("ReclaimPolicy", s, 0),
            Col("VolumeBindingMode", s, 0),
            Col("AllowVolumeExpansion", s, 0),
            Col("Age", s, 0),
        ],
        ("coordination.k8s.io", "leases") => {
            vec![Col("Name", s, 0), Col("Holder", s, 0), Col("Age", s, 0)]
        }
        ("discovery.k8s.io", "endpointslices") => vec![
            Col("Name", s, 0),
            Col("AddressType", s, 0),
            Col("Ports", s, 0),
            Col("Endpoints", s, 0),
            Col("Age", s, 0),
        ],
        ("apps", "controllerrevisions") => vec![
            Col("Name", s, 0),
            Col("Controller", s, 0),
            Col("Revision", i, 0),
            Col("Age", s, 0),
        ],
        ("autoscaling", "horizontalpodautoscalers") => vec![
            Col("Name", s, 0),
            Col("Reference", s, 0),
            Col("Targets", s, 0),
            Col("MinPods", s, 0),
            Col("MaxPods", i, 0),
            Col("Replicas", i, 0),
            Col("Age", s, 0),
        ],
        _ => return None,
    })
}

/// Access modes in kubectl's short form (`RWO,ROX`).
fn access_modes(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// An `IntOrString` cell, or `N/A`.
fn int_or_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "N/A".into(),
    }
}

fn more_cells(info: &ResourceInfo, obj: &Value, now: i64) -> Option<Vec<Value>> {
    let meta = &obj["metadata"];
    let name = json!(meta["name"].as_str().unwrap_or(""));
    let age = json!(since(meta["creationTimestamp"].as_str(), now));
    let spec = &obj["spec"];
    let status = &obj["status"];
    Some(match (info.group, info.plural) {
        ("batch", "cronjobs") => {
            let job_spec = &spec["jobTemplate"]["spec"];
            let (c, i) = containers(&job_spec["template"]["spec"]);
            vec![
                name,
                json!(str_or(&spec["schedule"], "")),
                json!(str_or(&spec["timeZone"], "<none>")),
                json!(if spec["suspend"] == true {
                    "True"
                } else {
                    "False"
                }),
                json!(count(&status["active"])),
                json!(match status["lastScheduleTime"].as_str() {
                    Some(t) => since(Some(t), now),
                    None => "<none>".into(),
                }),
                age,
                json!(c),
                json!(i),
                json!(selector(&job_spec["selector"])),
            ]
        }
        ("networking.k8s.io", "ingresses") => {
            let hosts: Vec<&str> = spec["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["host"].as_str())
                .collect();
            let addrs: Vec<&str> = status["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
                .collect();
            let tls = spec["tls"].as_array().is_some_and(|t| !t.is_empty());
            vec![
                name,
                json!(str_or(&spec["ingressClassName"], "<none>")),
                json!(if hosts.is_empty() {
                    "*".into()
                } else {
                    hosts.join(",")
                }),
                json!(addrs.join(",")),
                json!(if tls { "80, 443" } else { "80" }),
                age,
            ]
        }
        ("networking.k8s.io", "ingressclasses") => {
            let p = &spec["parameters"];
            let params = match p["kind"].as_str() {
                Some(kind) => {
                    let group = p["apiGroup"]
                        .as_str()
                        .map(|g| format!(".{g}"))
                        .unwrap_or_default();
                    format!("{kind}{group}/{}", str_or(&p["name"], ""))
                }
                None => "<none>".into(),
            };
            vec![
                name,
                json!(str_or(&spec["controller"], "")),
                json!(params),
                age,
            ]
        }
        ("networking.k8s.io", "networkpolicies") => {
            let sel = selector(&spec["podSelector"]);
            vec![
                name,
                json!(if sel == "<none>" {
                    "<none>".to_string()
                } else {
                    sel
                }),
                age,
            ]
        }
        ("policy", "poddisruptionbudgets") => vec![
            name,
            json!(int_or_str(&spec["minAvailable"])),
            json!(int_or_str(&spec["maxUnavailable"])),
            json!(int(&status["disruptionsAllowed"])),
            age,
        ],
        ("", "persistentvolumeclaims") => vec![
            name,
            json!(str_or(&status["phase"], "")),
            json!(str_or(&spec["volumeName"], "")),
            json!(status["capacity"]["storage"].as_str().unwrap_or("")),
            json!(access_modes(&status["accessModes"])),
            json!(str_or(&spec["storageClassName"], "<unset>")),
            json!(str_or(&spec["volumeAttributesClassName"], "<unset>")),
            age,
            json!(str_or(&spec["volumeMode"], "<unset>")),
        ],
        ("", "persistentvolumes") => {
            let claim = match spec["claimRef"]["name"].as_str() {
                Some(n) => format!("{}/{n}", str_or(&spec["claimRef"]["namespace"], "")),
                None => String::new(),
            };
            vec![
                name,
                json!(spec["capacity"]["storage"].as_str().unwrap_or("")),
                json!(access_modes(&spec["accessModes"])),
                json!(str_or(&spec["persistentVolumeReclaimPolicy"], "")),
                json!(str_or(&status["phase"], "")),
                json!(claim),
                json!(str_or(&spec["storageClassName"], "")),
                json!(str_or(&spec["volumeAttributesClassName"], "<unset>")),
                json!(str_or(&status["reason"], "")),
                age,
                json!(str_or(&spec["volumeMode"], "<unset>")),
            ]
        }
        ("", "resourcequotas") => {
            let (mut req, mut lim) = (Vec::new(), Vec::new());
            for (k, v) in spec["hard"].as_object().into_iter().flatten() {
                let used = status["used"][k].as_str().unwrap_or("0");
                let item = format!("{k}: {used}/{}", v.as_str().unwrap_or(""));
                if k.starts_with("limits.") {
                    lim.push(item);
                } else {
                    req.push(item);
                }
            }
            vec![name, age, json!(req.join(", ")), json!(lim.join(", "))]
        }
        ("", "podtemplates") => {
            let (c, i) = containers(&obj["template"]["spec"]);
            let labels = obj["template"]["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| "<none>".into());
            vec![name, json!(c), json!(i), json!(labels)]
        }
        ("scheduling.k8s.io", "priorityclasses") => vec![
            name,
            json!(int(&obj["value"])),
            json!(obj["globalDefault"] == true),
            age,
            json!(str_or(&obj["preemptionPolicy"], "PreemptLowerPriority")),
        ],
        ("storage.k8s.io", "storageclasses") => {
            let default =
                meta["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true";
            let n = meta["name"].as_str().unwrap_or("");
            vec![
                json!(if default {
                    format!("{n} (default)")
                } else {
                    n.to_string()
                }),
                json!(str_or(&obj["provisioner"], "")),
                json!(str_or(&obj["reclaimPolicy"], "Delete")),
                json!(str_or(&obj["volumeBindingMode"], "Immediate")),
                json!(if obj["allowVolumeExpansion"] == true {
                    "true"
                } else {
                    "false"
                }),
                age,
            ]
        }
        ("coordination.k8s.io", "leases") => {
            vec![name, json!(str_or(&spec["holderIdentity"], "")), age]
        }
        ("discovery.k8s.io", "endpointslices") => {
            let ports: Vec<String> = obj["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_i64().map(|n| n.to_string()))
                .collect();
            let addrs: Vec<&str> = obj["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            let shown = match addrs.len() {
                0 => "<unset>".to_string(),
                1..=3 => addrs.join(","),
                n => format!("{} + {} more...", addrs[..3].join(","), n - 3),
            };
            vec![
                name,
                json!(str_or(&obj["addressType"], "")),
                json!(if ports.is_empty() {
                    "<unset>".into()
                } else {
                    ports.join(",")
                }),
                json!(shown),
                age,
            ]
        }
        ("apps", "controllerrevisions") => {
            let owner = meta["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["controller"] == true)
                .map(|o| {
                    let gv = str_or(&o["apiVersion"], "");
                    let group = gv
                        .split_once('/')
                        .map(|(g, _)| format!(".{g}"))
                        .unwrap_or_default();
                    format!(
                        "{}{group}/{}",
                        str_or(&o["kind"], "").to_ascii_lowercase(),
                        str_or(&o["name"], "")
                    )
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, json!(owner), json!(int(&obj["revision"])), age]
        }
        ("autoscaling", "horizontalpodautoscalers") => {
            let r = &spec["scaleTargetRef"];
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    str_or(&r["kind"], ""),
                    str_or(&r["name"], "")
                )),
                json!(hpa_metrics(spec, status)),
                json!(spec["minReplicas"]
                    .as_i64()
                    .map_or("<unset>".to_string(), |m| m.to_string())),
                json!(int(&spec["maxReplicas"])),
                json!(int(&status["currentReplicas"])),
                age,
            ]
        }
        _ => return None,
    })
}

/// kube's `formatHPAMetrics` (pkg/printers/internalversion/printers.go): each metric as
/// `current/target` (`cpu: 12%/50%`, `<unknown>` before a measurement), two at most then
/// `+ N more...`; `<none>` without metrics.
fn hpa_metrics(spec: &Value, status: &Value) -> String {
    let specs = spec["metrics"].as_array().cloned().unwrap_or_default();
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = status["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let q = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let unknown = || "<unknown>".to_string();
    let mut list = Vec::new();
    for (i, m) in specs.iter().enumerate() {
        let st = statuses.get(i);
        let part = |key: &str| st.map(|s| &s[key]).filter(|v| v.is_object());
        let item = match m["type"].as_str().unwrap_or_default() {
            "External" | "Object" => {
                let key = if m["type"] == "External" {
                    "external"
                } else {
                    "object"
                };
                let target = &m[key]["target"];
                let current = part(key).map(|s| &s["current"]);
                if target["averageValue"].is_null() {
                    let c = current
                        .map(|c| q(&c["value"]))
                        .filter(|c| !c.is_empty())
                        .unwrap_or_else(unknown);
                    format!("{c}/{}", q(&target["value"]))
                } else {
                    let c = current
                        .map(|c| q(&c["averageValue"]))
                        .filter(|c| !c.is_empty())
                        .unwrap_or_else(unknown);
                    format!("{c}/{} (avg)", q(&target["averageValue"]))
                }
            }
            "Pods" => {
                let c = part("pods")
                    .map(|s| q(&s["current"]["averageValue"]))
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(unknown);
                format!("{c}/{}", q(&m["pods"]["target"]["averageValue"]))
            }
            t @ ("Resource" | "ContainerResource") => {
                let key = if t == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let src = &m[key];
                let name = src["name"].as_str().unwrap_or_default();
                let target = &src["target"];
                let current = part(key).map(|s| &s["current"]);
                if !target["averageValue"].is_null() {
                    let c = current
                        .map(|c| q(&c["averageValue"]))
                        .filter(|c| !c.is_empty())
                        .unwrap_or_else(unknown);
                    format!("{name}: {c}/{}", q(&target["averageValue"]))
                } else {
                    let c = current
                        .and_then(|c| c["averageUtilization"].as_i64())
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(unknown);
                    let t = target["averageUtilization"]
                        .as_i64()
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<auto>".into());
                    format!("{name}: {c}/{t}")
                }
            }
            _ => "<unknown type>".into(),
        };
        list.push(item);
    }
    let count = list.len();
    if count > 2 {
        list.truncate(2);
        return format!("{} + {} more...", list.join(", "), count - 2);
    }
    list.join(", ")
}

#[cfg(test)]
mod hpa_tests {
    use super::hpa_metrics;
    use serde_json::json;

    #[test]
    fn hpa_targets_as_kubectl_shows_them() {
        let spec = json!({"metrics": [{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 50}}}]});
        assert_eq!(hpa_metrics(&spec, &json!({})), "cpu: <unknown>/50%");
        let status = json!({"currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": 12, "averageValue": "12m"}}}]});
        assert_eq!(hpa_metrics(&spec, &status), "cpu: 12%/50%");
        let value = json!({"metrics": [{"type": "Resource", "resource": {"name": "memory",
            "target": {"type": "AverageValue", "averageValue": "100Mi"}}}]});
        assert_eq!(hpa_metrics(&value, &json!({})), "memory: <unknown>/100Mi");
        assert_eq!(hpa_metrics(&json!({}), &json!({})), "<none>");
        let three =
            json!({"metrics": [spec["metrics"][0], spec["metrics"][0], value["metrics"][0]]});
        assert_eq!(
            hpa_metrics(&three, &json!({})),
            "cpu: <unknown>/50%, cpu: <unknown>/50% + 1 more..."
        );
    }
}
