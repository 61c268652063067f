//! Version conversion of built-in kinds served at more than one group version over one
//! storage: kube-apiserver decodes a request's object, converts it to the storage version, and
//! converts what it reads back to the request's version. barge serves two such pairs:
//!
//! - `events.k8s.io/v1` Event over core/v1 Events (`/registry/events/…`), with kube's field
//!   mapping (`pkg/apis/events/v1/conversion.go`): `note` ↔ `message`, `regarding` ↔
//!   `involvedObject`, `deprecatedSource` ↔ `source`, `deprecatedFirstTimestamp` /
//!   `deprecatedLastTimestamp` / `deprecatedCount` ↔ `firstTimestamp` / `lastTimestamp` /
//!   `count`; `reportingController` ↔ core's `reportingComponent`; `eventTime`, `series`,
//!   `related`, `action`, `reason`, `type`, `reportingInstance` as they are.
//! - `autoscaling/v1` HorizontalPodAutoscaler over `autoscaling/v2` (`pkg/apis/autoscaling/v1/
//!   conversion.go`): `targetCPUUtilizationPercentage` ↔ a `Resource` `cpu` metric with an
//!   `averageUtilization` target, `currentCPUUtilizationPercentage` ↔ its current value; the
//!   other metrics, current metrics, conditions and behavior travel in kube's
//!   `autoscaling.alpha.kubernetes.io/{metrics,current-metrics,conditions,behavior}`
//!   annotations on v1 objects.
//!
//! The generic verbs run on the storage version's row ([`serve`] rewrites the request and the
//! answer), so validation, defaults, admission and server-side printing are the storage kind's,
//! as kube's run on the internal type.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::Req;
use crate::registry::ResourceInfo;
use crate::request::{decode_object, media_type, Verb};
use crate::status::{ApiError, ApiResult};
use crate::ApiServer;

/// A served version whose objects are stored at another version of the same resource.
pub struct Conversion {
    /// Group, version and kind of the storage version.
    pub storage: (&'static str, &'static str, &'static str),
    /// Plural of the storage version's resource.
    pub plural: &'static str,
    /// Request version → storage version.
    pub to_storage: fn(&Value) -> Value,
    /// Storage version → request version.
    pub from_storage: fn(&Value) -> Value,
}

static EVENTS: Conversion = Conversion {
    storage: ("", "v1", "Event"),
    plural: "events",
    to_storage: event_to_core,
    from_storage: core_to_event,
};

static HPA_V1: Conversion = Conversion {
    storage: ("autoscaling", "v2", "HorizontalPodAutoscaler"),
    plural: "horizontalpodautoscalers",
    to_storage: hpa_v1_to_v2,
    from_storage: hpa_v2_to_v1,
};

/// The conversion of a resource served over another version's storage, if it is one.
pub fn of(info: &ResourceInfo) -> Option<&'static Conversion> {
    match (info.group, info.version, info.kind) {
        ("events.k8s.io", "v1", "Event") => Some(&EVENTS),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => Some(&HPA_V1),
        _ => None,
    }
}

/// An object of `info` read from storage, at the request's version (unchanged for kinds
/// without a conversion).
pub fn to_request(info: &ResourceInfo, obj: &mut Value) {
    if let Some(c) = of(info) {
        let storage = api_version(c.storage.0, c.storage.1);
        if obj.get("apiVersion").and_then(Value::as_str) == Some(storage.as_str()) {
            *obj = (c.from_storage)(obj);
        }
    }
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

fn take(m: &mut Map<String, Value>, from: &str, out: &mut Map<String, Value>, to: &str) {
    if let Some(v) = m.remove(from) {
        if !v.is_null() {
            out.insert(to.to_string(), v);
        }
    }
}

/// `events.k8s.io/v1` Event → core/v1 Event.
fn event_to_core(obj: &Value) -> Value {
    let mut m = obj.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    m.remove("apiVersion");
    m.remove("kind");
    for (from, to) in [
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("reportingController", "reportingComponent"),
    ] {
        take(&mut m, from, &mut out, to);
    }
    // core/v1 requires involvedObject; an events.k8s.io Event without `regarding` has an
    // empty one after conversion.
    out.entry("involvedObject").or_insert_with(|| json!({}));
    if m.get("eventTime").is_some_and(Value::is_null) {
        m.remove("eventTime");
    }
    out.entry("reportingComponent").or_insert_with(|| json!(""));
    out.entry("reportingInstance").or_insert_with(|| json!(""));
    for (k, v) in m {
        out.insert(k, v);
    }
    Value::Object(out)
}

/// core/v1 Event → `events.k8s.io/v1` Event.
fn core_to_event(obj: &Value) -> Value {
    let mut m = obj.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    m.remove("apiVersion");
    m.remove("kind");
    for (from, to) in [
        ("involvedObject", "regarding"),
        ("message", "note"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
        ("reportingComponent", "reportingController"),
    ] {
        take(&mut m, from, &mut out, to);
    }
    // eventTime is a required (non-pointer) MicroTime in events.k8s.io/v1: null when unset.
    if !m.contains_key("eventTime") {
        out.insert("eventTime".into(), Value::Null);
    }
    for (k, v) in m {
        out.insert(k, v);
    }
    // Empty strings and structs are omitted by the v1 type's omitempty tags.
    for k in ["reportingController", "reportingInstance"] {
        if out.get(k).and_then(Value::as_str) == Some("") {
            out.remove(k);
        }
    }
    if out.get("deprecatedSource") == Some(&json!({})) {
        out.remove("deprecatedSource");
    }
    Value::Object(out)
}

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["averageUtilization"].is_number()
}

/// A v2 MetricSpec as autoscaling/v1's (alpha) MetricSpec, as the annotation holds them.
fn metric_spec_v2_to_v1(m: &Value) -> Value {
    let ty = m["type"].as_str().unwrap_or("");
    let mut out = json!({"type": ty});
    let target = |t: &Value, value: &str, avg: &str, util: Option<&str>| {
        let mut o = Map::new();
        if let Some(v) = t.get("value").filter(|v| !v.is_null()) {
            o.insert(value.into(), v.clone());
        }
        if let Some(v) = t.get("averageValue").filter(|v| !v.is_null()) {
            o.insert(avg.into(), v.clone());
        }
        if let (Some(u), Some(v)) = (util, t.get("averageUtilization").filter(|v| !v.is_null())) {
            o.insert(u.into(), v.clone());
        }
        o
    };
    match ty {
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let r = &m[key];
            let mut o = target(
                &r["target"],
                "targetValue",
                "targetAverageValue",
                Some("targetAverageUtilization"),
            );
            o.remove("targetValue");
            o.insert("name".into(), r["name"].clone());
            if let Some(c) = r.get("container") {
                o.insert("container".into(), c.clone());
            }
            out[key] = Value::Object(o);
        }
        "Pods" => {
            let p = &m["pods"];
            let mut o = target(&p["target"], "targetValue", "targetAverageValue", None);
            o.remove("targetValue");
            o.insert("metricName".into(), p["metric"]["name"].clone());
            if let Some(s) = p["metric"].get("selector") {
                o.insert("selector".into(), s.clone());
            }
            out["pods"] = Value::Object(o);
        }
        "Object" => {
            let p = &m["object"];
            let mut o = target(&p["target"], "targetValue", "averageValue", None);
            o.insert("target".into(), p["describedObject"].clone());
            o.insert("metricName".into(), p["metric"]["name"].clone());
            if let Some(s) = p["metric"].get("selector") {
                o.insert("selector".into(), s.clone());
            }
            out["object"] = Value::Object(o);
        }
        "External" => {
            let p = &m["external"];
            let mut o = target(&p["target"], "targetValue", "targetAverageValue", None);
            o.insert("metricName".into(), p["metric"]["name"].clone());
            if let Some(s) = p["metric"].get("selector") {
                o.insert("metricSelector".into(), s.clone());
            }
            out["external"] = Value::Object(o);
        }
        _ => {}
    }
    out
}

/// autoscaling/v1's (alpha) MetricSpec as v2's.
fn metric_spec_v1_to_v2(m: &Value) -> Value {
    let ty = m["type"].as_str().unwrap_or("");
    let mut out = json!({"type": ty});
    let target = |value: Option<&Value>, avg: Option<&Value>, util: Option<&Value>| {
        let mut t = Map::new();
        let (kind, v) = if let Some(u) = util.filter(|v| !v.is_null()) {
            ("Utilization", ("averageUtilization", u))
        } else if let Some(a) = avg.filter(|v| !v.is_null()) {
            ("AverageValue", ("averageValue", a))
        } else {
            ("Value", ("value", value.unwrap_or(&Value::Null)))
        };
        t.insert("type".into(), json!(kind));
        if !v.1.is_null() {
            t.insert(v.0.into(), v.1.clone());
        }
        Value::Object(t)
    };
    let metric = |name: &Value, selector: Option<&Value>| {
        let mut o = json!({"name": name});
        if let Some(s) = selector {
            o["selector"] = s.clone();
        }
        o
    };
    match ty {
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let r = &m[key];
            let mut o = json!({"name": r["name"], "target": target(None, r.get("targetAverageValue"), r.get("targetAverageUtilization"))});
            if let Some(c) = r.get("container") {
                o["container"] = c.clone();
            }
            out[key] = o;
        }
        "Pods" => {
            let p = &m["pods"];
            out["pods"] = json!({"metric": metric(&p["metricName"], p.get("selector")),
                "target": target(None, p.get("targetAverageValue"), None)});
        }
        "Object" => {
            let p = &m["object"];
            out["object"] = json!({"describedObject": p["target"],
                "metric": metric(&p["metricName"], p.get("selector")),
                "target": target(p.get("targetValue"), p.get("averageValue"), None)});
        }
        "External" => {
            let p = &m["external"];
            out["external"] = json!({"metric": metric(&p["metricName"], p.get("metricSelector")),
                "target": target(p.get("targetValue"), p.get("targetAverageValue"), None)});
        }
        _ => {}
    }
    out
}

/// A v2 MetricStatus as autoscaling/v1's.
fn metric_status_v2_to_v1(m: &Value) -> Value {
    let ty = m["type"].as_str().unwrap_or("");
    let mut out = json!({"type": ty});
    let cur = |c: &Value, value: &str, avg: &str, util: Option<&str>| {
        let mut o = Map::new();
        if let Some(v) = c.get("value").filter(|v| !v.is_null()) {
            o.insert(value.into(), v.clone());
        }
        if let Some(v) = c.get("averageValue").filter(|v| !v.is_null()) {
            o.insert(avg.into(), v.clone());
        }
        if let (Some(u), Some(v)) = (util, c.get("averageUtilization").filter(|v| !v.is_null())) {
            o.insert(u.into(), v.clone());
        }
        o
    };
    match ty {
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let r = &m[key];
            let mut o = cur(
                &r["current"],
                "currentValue",
                "currentAverageValue",
                Some("currentAverageUtilization"),
            );
            o.remove("currentValue");
            o.insert("name".into(), r["name"].clone());
            if let Some(c) = r.get("container") {
                o.insert("container".into(), c.clone());
            }
            out[key] = Value::Object(o);
        }
        "Pods" => {
            let p = &m["pods"];
            let mut o = cur(&p["current"], "currentValue", "currentAverageValue", None);
            o.remove("currentValue");
            o.insert("metricName".into(), p["metric"]["name"].clone());
            out["pods"] = Value::Object(o);
        }
        "Object" => {
            let p = &m["object"];
            let mut o = cur(&p["current"], "currentValue", "averageValue", None);
            o.insert("target".into(), p["describedObject"].clone());
            o.insert("metricName".into(), p["metric"]["name"].clone());
            out["object"] = Value::Object(o);
        }
        "External" => {
            let p = &m["external"];
            let mut o = cur(&p["current"], "currentValue", "currentAverageValue", None);
            o.insert("metricName".into(), p["metric"]["name"].clone());
            out["external"] = Value::Object(o);
        }
        _ => {}
    }
    out
}

/// autoscaling/v1's MetricStatus as v2's.
fn metric_status_v1_to_v2(m: &Value) -> Value {
    let ty = m["type"].as_str().unwrap_or("");
    let mut out = json!({"type": ty});
    let cur = |pairs: &[(&str, Option<&Value>)]| {
        let mut o = Map::new();
        for (k, v) in pairs {
            if let Some(v) = v.filter(|v| !v.is_null()) {
                o.insert((*k).into(), v.clone());
            }
        }
        Value::Object(o)
    };
    match ty {
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let r = &m[key];
            let mut o = json!({"name": r["name"], "current": cur(&[
                ("averageValue", r.get("currentAverageValue")),
                ("averageUtilization", r.get("currentAverageUtilization"))])});
            if let Some(c) = r.get("container") {
                o["container"] = c.clone();
            }
            out[key] = o;
        }
        "Pods" => {
            let p = &m["pods"];
            out["pods"] = json!({"metric": {"name": p["metricName"]},
                "current": cur(&[("averageValue", p.get("currentAverageValue"))])});
        }
        "Object" => {
            let p = &m["object"];
            out["object"] = json!({"describedObject": p["target"], "metric": {"name": p["metricName"]},
                "current": cur(&[("value", p.get("currentValue")), ("averageValue", p.get("averageValue"))])});
        }
        "External" => {
            let p = &m["external"];
            out["external"] = json!({"metric": {"name": p["metricName"]},
                "current": cur(&[("value", p.get("currentValue")), ("averageValue", p.get("currentAverageValue"))])});
        }
        _ => {}
    }
    out
}

fn annotations(obj: &mut Value) -> &mut Map<String, Value> {
    let meta = super::object::meta_mut(obj);
    let a = meta.entry("annotations").or_insert_with(|| json!({}));
    if !a.is_object() {
        *a = json!({});
    }
    a.as_object_mut().expect("annotations is an object")
}

fn drop_empty_annotations(obj: &mut Value) {
    if obj["metadata"]["annotations"]
        .as_object()
        .is_some_and(Map::is_empty)
    {
        super::object::meta_mut(obj).remove("annotations");
    }
}

/// A v2 `behavior` as kube's v1 conversion writes it into the behavior annotation:
/// `json.Marshal` of the internal `autoscaling.HorizontalPodAutoscalerBehavior`, a type
/// without JSON tags — Go field names in struct order, nil pointers as `null`, non-pointer
/// fields always present (`{"ScaleUp":{"StabilizationWindowSeconds":0,"SelectPolicy":"Max",
/// "Policies":[{"Type":"Pods","Value":4,"PeriodSeconds":15}],"Tolerance":null},…}`).
fn behavior_annotation(b: &Value) -> String {
    let or = |v: Option<&Value>, d: &str| match v.filter(|v| !v.is_null()) {
        Some(v) => v.to_string(),
        None => d.to_string(),
    };
    let rules = |r: &Value| -> String {
        if !r.is_object() {
            return "null".into();
        }
        let policies = match r.get("policies").and_then(Value::as_array) {
            None => "null".to_string(),
            Some(ps) => {
                let ps: Vec<String> = ps
                    .iter()
                    .map(|p| {
                        format!(
                            r#"{{"Type":{},"Value":{},"PeriodSeconds":{}}}"#,
                            or(p.get("type"), "\"\""),
                            or(p.get("value"), "0"),
                            or(p.get("periodSeconds"), "0")
                        )
                    })
                    .collect();
                format!("[{}]", ps.join(","))
            }
        };
        format!(
            r#"{{"StabilizationWindowSeconds":{},"SelectPolicy":{},"Policies":{policies},"Tolerance":{}}}"#,
            or(r.get("stabilizationWindowSeconds"), "null"),
            or(r.get("selectPolicy"), "null"),
            or(r.get("tolerance"), "null")
        )
    };
    format!(
        r#"{{"ScaleUp":{},"ScaleDown":{}}}"#,
        rules(&b["scaleUp"]),
        rules(&b["scaleDown"])
    )
}

/// The behavior annotation read back as v2's `behavior`: keys matched case-insensitively
/// (Go's `encoding/json` does, so both kube's Go field names and v2's names are read), nulls
/// dropped.
fn behavior_from_annotation(v: &Value) -> Value {
    const NAMES: [&str; 9] = [
        "scaleUp",
        "scaleDown",
        "stabilizationWindowSeconds",
        "selectPolicy",
        "policies",
        "tolerance",
        "type",
        "value",
        "periodSeconds",
    ];
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let name = NAMES
                        .iter()
                        .find(|n| n.eq_ignore_ascii_case(k))
                        .map_or_else(|| k.clone(), |n| (*n).to_string());
                    (name, behavior_from_annotation(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(behavior_from_annotation).collect()),
        other => other.clone(),
    }
}

/// autoscaling/v2 HorizontalPodAutoscaler → autoscaling/v1.
fn hpa_v2_to_v1(obj: &Value) -> Value {
    let mut out = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))});
    let spec = &obj["spec"];
    let mut s = Map::new();
    for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(v) = spec.get(k).filter(|v| !v.is_null()) {
            s.insert(k.into(), v.clone());
        }
    }
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    if let Some(cpu) = metrics
        .iter()
        .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
    {
        if let Some(u) = cpu["resource"]["target"].get("averageUtilization") {
            s.insert("targetCPUUtilizationPercentage".into(), u.clone());
        }
    }
    out["spec"] = Value::Object(s);
    let other: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu_utilization(m))
        .map(metric_spec_v2_to_v1)
        .collect();
    let status = obj.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut st = Map::new();
    for k in [
        "observedGeneration",
        "lastScaleTime",
        "currentReplicas",
        "desiredReplicas",
    ] {
        if let Some(v) = status.get(k).filter(|v| !v.is_null()) {
            st.insert(k.into(), v.clone());
        }
    }
    st.entry("currentReplicas").or_insert(json!(0));
    st.entry("desiredReplicas").or_insert(json!(0));
    let current = status["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(u) = current
        .iter()
        .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
        .and_then(|m| m["resource"]["current"].get("averageUtilization"))
    {
        st.insert("currentCPUUtilizationPercentage".into(), u.clone());
    }
    out["status"] = Value::Object(st);
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let behavior = spec.get("behavior").filter(|b| !b.is_null()).cloned();
    let a = annotations(&mut out);
    if !other.is_empty() {
        a.insert(METRICS.into(), json!(Value::Array(other).to_string()));
    }
    if !current.is_empty() {
        let v1: Vec<Value> = current.iter().map(metric_status_v2_to_v1).collect();
        a.insert(CURRENT_METRICS.into(), json!(Value::Array(v1).to_string()));
    }
    if let Some(b) = behavior {
        a.insert(BEHAVIOR.into(), json!(behavior_annotation(&b)));
    }
    if !conditions.is_empty() {
        a.insert(
            CONDITIONS.into(),
            json!(Value::Array(conditions).to_string()),
        );
    }
    drop_empty_annotations(&mut out);
    out
}

/// autoscaling/v1 HorizontalPodAutoscaler → autoscaling/v2 (v1's defaults first:
/// `minReplicas` 1).
fn hpa_v1_to_v2(obj: &Value) -> Value {
    let mut out = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))});
    let spec = &obj["spec"];
    let mut s = Map::new();
    for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(v) = spec.get(k).filter(|v| !v.is_null()) {
            s.insert(k.into(), v.clone());
        }
    }
    s.entry("minReplicas").or_insert(json!(1));
    let mut ann = obj["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let parse = |ann: &mut Map<String, Value>, key: &str| -> Vec<Value> {
        ann.remove(key)
            .and_then(|v| v.as_str().and_then(|s| serde_json::from_str(s).ok()))
            .and_then(|v: Value| v.as_array().cloned())
            .unwrap_or_default()
    };
    let mut metrics: Vec<Value> = parse(&mut ann, METRICS)
        .iter()
        .map(metric_spec_v1_to_v2)
        .collect();
    if let Some(p) = spec
        .get("targetCPUUtilizationPercentage")
        .filter(|v| !v.is_null())
    {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": p}}}));
    }
    if !metrics.is_empty() {
        s.insert("metrics".into(), Value::Array(metrics));
    }
    if let Some(b) = ann.remove(BEHAVIOR).and_then(|v| {
        v.as_str()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
    }) {
        s.insert("behavior".into(), behavior_from_annotation(&b));
    }
    out["spec"] = Value::Object(s);
    let status = &obj["status"];
    let mut st = Map::new();
    for k in [
        "observedGeneration",
        "lastScaleTime",
        "currentReplicas",
        "desiredReplicas",
    ] {
        if let Some(v) = status.get(k).filter(|v| !v.is_null()) {
            st.insert(k.into(), v.clone());
        }
    }
    let current: Vec<Value> = parse(&mut ann, CURRENT_METRICS)
        .iter()
        .map(metric_status_v1_to_v2)
        .collect();
    if !current.is_empty() {
        st.insert("currentMetrics".into(), Value::Array(current));
    } else if let Some(u) = status
        .get("currentCPUUtilizationPercentage")
        .filter(|v| !v.is_null())
    {
        st.insert(
            "currentMetrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}}]),
        );
    }
    let conditions = parse(&mut ann, CONDITIONS);
    if !conditions.is_empty() {
        st.insert("conditions".into(), Value::Array(conditions));
    }
    if !st.is_empty() {
        out["status"] = Value::Object(st);
    }
    if ann.is_empty() {
        super::object::meta_mut(&mut out).remove("annotations");
    } else {
        super::object::meta_mut(&mut out).insert("annotations".into(), Value::Object(ann));
    }
    out
}

impl ApiServer {
    /// Serves a request for a converted resource: the body is checked at the request's version
    /// and converted to storage; the generic verb runs on the storage version's row; objects
    /// in the answer are converted back (Tables and Statuses are left as they are).
    pub(crate) async fn serve_converted(
        &self,
        req: Req,
        conv: &'static Conversion,
    ) -> ApiResult<Response> {
        let (g, v, _) = conv.storage;
        let storage = self
            .registry()
            .lookup(g, v, conv.plural)
            .cloned()
            .ok_or(ApiError::NoRoute)?;
        let request_info = req.info.clone();
        let mut sreq = Req {
            info: storage,
            ..req
        };
        let resp = match sreq.verb {
            Verb::Create | Verb::Update => {
                let mut obj = decode_object(&media_type(&sreq.headers), &sreq.body)?;
                super::object::check_type(&request_info, &mut obj)?;
                super::fields::check_types(&request_info, &obj, super::fields::Body::Object)?;
                let mode = super::fields::Validation::of(&sreq.query)?;
                let warnings = super::fields::check(&request_info, &mut obj, mode, true)?;
                let stored = (conv.to_storage)(&obj);
                sreq.body = Bytes::from(serde_json::to_vec(&stored).unwrap_or_default());
                sreq.headers.insert(
                    header::CONTENT_TYPE,
                    "application/json".parse().expect("static"),
                );
                let resp = if sreq.verb == Verb::Create {
                    self.create(&sreq).await?
                } else {
                    self.update(&sreq).await?
                };
                super::fields::with_warnings(resp, &warnings)
            }
            Verb::Patch => self.patch_converted(&sreq, &request_info, conv).await?,
            Verb::Watch => {
                sreq.info = request_info.clone();
                return self.watch(&sreq).await;
            }
            Verb::List | Verb::DeleteCollection => {
                // Field labels are the request version's, converted to storage's.
                if let Some(fs) = sreq.query.get("fieldSelector") {
                    let stored = crate::selectors::to_storage_labels(
                        fs,
                        request_info.group,
                        request_info.plural,
                    )
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                    if let Some(stored) = stored {
                        sreq.query.set("fieldSelector", stored);
                    }
                }
                super::route(self, &sreq).await?
            }
            _ => super::route(self, &sreq).await?,
        };
        Ok(response_at(resp, &request_info, conv).await)
    }

    /// A patch of a converted object: the stored object at the request's version is
    /// patched, checked, converted back and written as an update of the revision read.
    async fn patch_converted(
        &self,
        sreq: &Req,
        request_info: &ResourceInfo,
        conv: &'static Conversion,
    ) -> ApiResult<Response> {
        let media = media_type(&sreq.headers);
        if media == "application/apply-patch+yaml" {
            return self.apply_converted(sreq, request_info, conv).await;
        }
        let doc = super::patch::PatchDoc::parse(&media, &sreq.body)?;
        let mode = super::fields::Validation::of(&sreq.query)?;
        for _ in 0..5 {
            let (current, rev) = self.get_current(sreq, None).await?;
            let mut view = (conv.from_storage)(&current);
            doc.apply(request_info, &mut view)?;
            super::object::check_type(request_info, &mut view)?;
            super::fields::check_types(request_info, &view, super::fields::Body::Patch)?;
            let warnings = super::fields::check(request_info, &mut view, mode, false)?;
            let mut stored = (conv.to_storage)(&view);
            super::object::meta_mut(&mut stored)
                .insert("resourceVersion".into(), json!(rev.to_string()));
            let mut put = Req {
                info: sreq.info.clone(),
                path: sreq.path.clone(),
                verb: Verb::Update,
                query: sreq.query.clone(),
                headers: sreq.headers.clone(),
                body: Bytes::from(serde_json::to_vec(&stored).unwrap_or_default()),
            };
            put.headers.insert(
                header::CONTENT_TYPE,
                "application/json".parse().expect("static"),
            );
            match self.update(&put).await {
                Err(ApiError::Conflict { .. }) => continue,
                Ok(r) => return Ok(super::fields::with_warnings(r, &warnings)),
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::Conflict {
            target: sreq.target(),
            why: super::update::MODIFIED.into(),
        })
    }
}

/// The answer at the request's version: objects of the storage kind converted, lists'
/// items too, anything else (Tables, Statuses) as it is.
async fn response_at(resp: Response, info: &ResourceInfo, conv: &'static Conversion) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let storage_api = api_version(conv.storage.0, conv.storage.1);
    let list_kind = format!("{}List", conv.storage.2);
    let converted = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if v["apiVersion"] == storage_api && v["kind"] == conv.storage.2 => {
            Some((conv.from_storage)(&v))
        }
        Ok(mut v) if v["apiVersion"] == storage_api && v["kind"] == list_kind.as_str() => {
            if let Some(items) = v["items"].as_array_mut() {
                for item in items.iter_mut() {
                    // List items carry no kind/apiVersion; convert with them, then drop them.
                    let mut full = item.clone();
                    full["apiVersion"] = json!(storage_api);
                    full["kind"] = json!(conv.storage.2);
                    let mut c = (conv.from_storage)(&full);
                    if item.get("kind").is_none() {
                        if let Some(m) = c.as_object_mut() {
                            m.remove("kind");
                            m.remove("apiVersion");
                        }
                    }
                    *item = c;
                }
            }
            v["apiVersion"] = json!(info.api_version());
            v["kind"] = json!(info.list_kind());
            Some(v)
        }
        _ => None,
    };
    match converted {
        Some(v) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(
                parts,
                Body::from(serde_json::to_vec(&v).unwrap_or_default()),
            )
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_map_fields_as_kube() {
        let core = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Started", "message": "Started container", "type": "Normal",
            "source": {"component": "kubelet", "host": "n1"}, "count": 3,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:01:00Z",
            "reportingComponent": "kubelet", "reportingInstance": "n1"});
        let ev = core_to_event(&core);
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ev["note"], "Started container");
        assert_eq!(ev["regarding"]["name"], "p");
        assert_eq!(ev["deprecatedSource"]["component"], "kubelet");
        assert_eq!(ev["deprecatedCount"], 3);
        assert_eq!(ev["deprecatedFirstTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(ev["reportingController"], "kubelet");
        assert!(ev["eventTime"].is_null() && ev.get("message").is_none());
        assert_eq!(event_to_core(&ev), core);
    }

    #[test]
    fn hpa_v1_cpu_target_is_a_v2_metric_and_back() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}});
        let v2 = hpa_v1_to_v2(&v1);
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}])
        );
        let back = hpa_v2_to_v1(&v2);
        assert_eq!(back["spec"], v1["spec"]);
        assert!(back["metadata"].get("annotations").is_none());
        // Other metrics and the behavior travel in annotations.
        let mut v2b = v2.clone();
        v2b["spec"]["metrics"].as_array_mut().unwrap().push(json!({"type": "Pods",
            "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}));
        v2b["spec"]["behavior"] = json!({"scaleDown": {"stabilizationWindowSeconds": 60}});
        let v1b = hpa_v2_to_v1(&v2b);
        let ann = &v1b["metadata"]["annotations"];
        assert_eq!(
            serde_json::from_str::<Value>(ann[METRICS].as_str().unwrap()).unwrap(),
            json!([{"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}}])
        );
        let round = hpa_v1_to_v2(&v1b);
        assert_eq!(round["spec"]["behavior"], v2b["spec"]["behavior"]);
        assert_eq!(round["spec"]["metrics"].as_array().unwrap().len(), 2);
        assert!(round["metadata"].get("annotations").is_none());
    }
}
