//! Custom resources served from CustomResourceDefinitions, as kube-apiserver's
//! apiextensions-apiserver serves them:
//! - the registry is dynamic: the built-in table plus one row per served version of every
//!   established CRD, rebuilt from the stored CRDs at start and on every CRD change seen through
//!   the watch cache (so several servers sharing a datastore converge; no request reads CRDs);
//! - the CRD lifecycle of kube's controllers: `NamingConditionController` (accepted names,
//!   `NamesAccepted`, conflicts within a group), `EstablishingController` (`Established`),
//!   `storedVersions`, and the `customresourcecleanup.apiextensions.k8s.io` finalizer
//!   (`rest/custom.rs` deletes the custom objects, then the CRD goes);
//! - the CRD's own validation (structural schemas, names, versions) and defaults.
//!
//! Sources: kubernetes/apiextensions-apiserver `pkg/controller/status/naming_controller.go`,
//! `pkg/controller/establish/establishing_controller.go`,
//! `pkg/registry/customresourcedefinition/etcd.go`, `pkg/apis/apiextensions/validation`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use barge_datastore::{EventKind, ListOptions};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::registry::{Registry, ResourceInfo, Subresource, ALL_VERBS, SUBRESOURCE_VERBS};
use crate::status::{ApiResult, Cause};
use crate::ApiServer;

/// The API group of CRDs.
pub const GROUP: &str = "apiextensions.k8s.io";
/// The key prefix of the stored CRDs.
pub const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";
/// The finalizer kube puts on a CRD being deleted until its custom objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// One `additionalPrinterColumns` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    /// `integer`, `number`, `string`, `boolean`, `date`.
    pub kind: String,
    pub format: String,
    pub description: String,
    /// 0: always shown; > 0: `-o wide` only.
    pub priority: i64,
    /// A simple JSONPath (`.spec.replicas`, `.status.conditions[0].type`).
    pub json_path: String,
}

/// The `scale` subresource's paths (`.spec.replicas`, …).
#[derive(Clone, Debug, PartialEq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// What a custom resource's registry row carries beyond the built-in fields.
#[derive(Clone, Debug)]
pub struct Custom {
    /// The CRD's name (`widgets.example.com`).
    pub crd: String,
    /// This version's `openAPIV3Schema` (`None`: any object).
    pub schema: Option<Value>,
    /// The version objects are stored at (conversion `None`: only `apiVersion` differs).
    pub storage_version: &'static str,
    /// How many versions the CRD serves.
    pub served_versions: usize,
    pub columns: Vec<Column>,
    pub scale: Option<ScalePaths>,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
}

// --- Interned names ------------------------------------------------------------------------

/// The registry's rows use `&'static str`; names of custom resources are interned once per
/// distinct string (a CRD recreated with the same names reuses them), so memory is bounded by
/// the distinct names ever served.
fn intern(s: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut g = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let set = g.get_or_insert_with(HashSet::new);
    if let Some(v) = set.get(s) {
        return v;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

fn intern_list(items: &[String]) -> &'static [&'static str] {
    static LISTS: Mutex<Option<HashMap<Vec<String>, &'static [&'static str]>>> = Mutex::new(None);
    if items.is_empty() {
        return &[];
    }
    let mut g = LISTS.lock().unwrap_or_else(|e| e.into_inner());
    let map = g.get_or_insert_with(HashMap::new);
    if let Some(v) = map.get(items) {
        return v;
    }
    let list: Vec<&'static str> = items.iter().map(|s| intern(s)).collect();
    let leaked: &'static [&'static str] = Box::leak(list.into_boxed_slice());
    map.insert(items.to_vec(), leaked);
    leaked
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

// --- Versions --------------------------------------------------------------------------------

/// kube's version priority (`version.CompareKubeAwareVersionStrings`): GA before beta before
/// alpha, higher numbers first, then anything else alphabetically.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u64, u8, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((major, 2, 0));
        }
        let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (0, n)
        } else {
            return None;
        };
        Some((major, level, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some((ma, la, na)), Some((mb, lb, nb))) => lb.cmp(&la).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// The storage version of a CRD (the one marked `storage: true`).
pub fn storage_version(crd: &Value) -> Option<&str> {
    crd["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["storage"] == json!(true))?["name"]
        .as_str()
}

fn condition<'a>(crd: &'a Value, kind: &str) -> Option<&'a Value> {
    crd["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Whether the CRD's condition `kind` is `True`.
pub fn is_true(crd: &Value, kind: &str) -> bool {
    condition(crd, kind).is_some_and(|c| c["status"] == "True")
}

// --- Registry rows ----------------------------------------------------------------------------

fn no_roundtrip(_: &Value) -> Option<Value> {
    None
}

fn columns_of(version: &Value) -> Vec<Column> {
    version["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| Column {
            name: c["name"].as_str().unwrap_or("").to_string(),
            kind: c["type"].as_str().unwrap_or("string").to_string(),
            format: c["format"].as_str().unwrap_or("").to_string(),
            description: c["description"].as_str().unwrap_or("").to_string(),
            priority: c["priority"].as_i64().unwrap_or(0),
            json_path: c["jsonPath"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

/// The registry rows of one CRD: one per served version (in kube's version priority), named
/// by its accepted names; none until it is established.
pub fn rows_of(crd: &Value) -> Vec<ResourceInfo> {
    if !is_true(crd, "Established") {
        return Vec::new();
    }
    let names = &crd["status"]["acceptedNames"];
    let (Some(group), Some(plural), Some(kind), Some(storage)) = (
        crd["spec"]["group"].as_str(),
        names["plural"].as_str(),
        names["kind"].as_str(),
        storage_version(crd),
    ) else {
        return Vec::new();
    };
    let singular = names["singular"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let mut versions: Vec<&Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] == json!(true))
        .collect();
    versions.sort_by(|a, b| {
        compare_versions(
            a["name"].as_str().unwrap_or(""),
            b["name"].as_str().unwrap_or(""),
        )
    });
    let served = versions.len();
    let terminating = crd["metadata"].get("deletionTimestamp").is_some();
    let (group, plural, kind) = (intern(group), intern(plural), intern(kind));
    versions
        .into_iter()
        .filter_map(|v| {
            let version = intern(v["name"].as_str()?);
            let mut subresources = Vec::new();
            let subs = &v["subresources"];
            if subs.get("status").is_some_and(Value::is_object) {
                subresources.push(Subresource {
                    name: "status",
                    group,
                    version,
                    kind,
                    verbs: SUBRESOURCE_VERBS,
                });
            }
            let scale = subs
                .get("scale")
                .filter(|s| s.is_object())
                .map(|s| ScalePaths {
                    spec_replicas: s["specReplicasPath"].as_str().unwrap_or("").to_string(),
                    status_replicas: s["statusReplicasPath"].as_str().unwrap_or("").to_string(),
                    label_selector: s["labelSelectorPath"].as_str().map(String::from),
                });
            if scale.is_some() {
                subresources.push(Subresource {
                    name: "scale",
                    group: "autoscaling",
                    version: "v1",
                    kind: "Scale",
                    verbs: SUBRESOURCE_VERBS,
                });
            }
            Some(ResourceInfo {
                group,
                version,
                kind,
                plural,
                singular: intern(&singular),
                namespaced: crd["spec"]["scope"] == "Namespaced",
                short_names: intern_list(&strings(&names["shortNames"])),
                categories: intern_list(&strings(&names["categories"])),
                verbs: ALL_VERBS,
                subresources,
                storage: intern(&format!("{group}/{plural}")),
                generation: true,
                roundtrip: no_roundtrip,
                custom: Some(Arc::new(Custom {
                    crd: crd["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    schema: v["schema"].get("openAPIV3Schema").cloned(),
                    storage_version: intern(storage),
                    served_versions: served,
                    columns: columns_of(v),
                    scale,
                    terminating,
                })),
            })
        })
        .collect()
}

/// The served registry, replaced as a whole when the CRDs change.
pub(crate) struct Dynamic {
    current: RwLock<(u64, Arc<Registry>)>,
    /// CRDs whose custom objects are being deleted by this server.
    finalizing: Mutex<HashSet<String>>,
    /// Each CRD's rows by its resourceVersion, so a change rebuilds only that CRD's.
    rows: Mutex<HashMap<String, (String, Vec<ResourceInfo>)>>,
}

impl Default for Dynamic {
    fn default() -> Self {
        Dynamic {
            current: RwLock::new((0, Arc::new(Registry::builtin()))),
            finalizing: Mutex::new(HashSet::new()),
            rows: Mutex::new(HashMap::new()),
        }
    }
}

/// Registry revisions are unique in the process (OpenAPI documents are cached by it).
static REVISIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Dynamic {
    /// The registry in force.
    pub(crate) fn current(&self) -> Arc<Registry> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// A number that changes whenever the served kinds change (0: built-ins only).
    pub(crate) fn revision(&self) -> u64 {
        self.current.read().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Serves the custom resources of `crds` (by name) from now on.
    fn set(&self, crds: &BTreeMap<String, Value>) {
        let mut cache = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::new();
        let mut rows: Vec<ResourceInfo> = Vec::new();
        for (name, crd) in crds {
            let rv = crd["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let mine = match cache.remove(name) {
                Some((v, r)) if v == rv && !rv.is_empty() => r,
                _ => rows_of(crd),
            };
            rows.extend(mine.iter().cloned());
            next.insert(name.clone(), (rv, mine));
        }
        *cache = next;
        let revision = if rows.is_empty() {
            0
        } else {
            REVISIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
        let registry = Arc::new(Registry::builtin().with_custom(rows));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (revision, registry);
    }
}

// --- Names and conditions -------------------------------------------------------------------

fn now() -> String {
    crate::rest::object::now()
}

/// `equalToAcceptedOrFresh`: a requested name is fine if it is already ours or unused.
fn fresh(requested: &str, accepted: &str, used: &HashSet<String>) -> Result<(), String> {
    if requested == accepted || !used.contains(requested) {
        Ok(())
    } else {
        Err(format!("{requested:?} is already in use"))
    }
}

/// A condition, keeping `lastTransitionTime` when the status did not change.
fn cond(old: Option<&Value>, kind: &str, status: &str, reason: &str, message: &str) -> Value {
    let time = match old {
        Some(o) if o["status"] == status => o["lastTransitionTime"].clone(),
        _ => json!(now()),
    };
    json!({"type": kind, "status": status, "lastTransitionTime": time, "reason": reason, "message": message})
}

/// The status kube's naming and establishing controllers give `crd` among `all` (by name):
/// accepted names (conflicts with the group's other CRDs and built-in kinds refused),
/// `NamesAccepted`, `Established`, and `storedVersions` including the storage version.
pub fn desired_status(crd: &Value, all: &BTreeMap<String, Value>) -> Value {
    let me = crd["metadata"]["name"].as_str().unwrap_or("");
    let group = crd["spec"]["group"].as_str().unwrap_or("");
    let mut resources: HashSet<String> = HashSet::new();
    let mut kinds: HashSet<String> = HashSet::new();
    for (name, other) in all {
        if name == me || other["spec"]["group"] != group {
            continue;
        }
        let n = &other["status"]["acceptedNames"];
        for f in ["plural", "singular"] {
            if let Some(s) = n[f].as_str() {
                resources.insert(s.to_string());
            }
        }
        resources.extend(strings(&n["shortNames"]));
        for f in ["kind", "listKind"] {
            if let Some(s) = n[f].as_str() {
                kinds.insert(s.to_string());
            }
        }
    }
    static BUILTIN: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    for r in BUILTIN
        .get_or_init(Registry::builtin)
        .resources()
        .iter()
        .filter(|r| r.group == group)
    {
        resources.insert(r.plural.to_string());
        resources.insert(r.singular.to_string());
        resources.extend(r.short_names.iter().map(|s| s.to_string()));
        kinds.insert(r.kind.to_string());
        kinds.insert(r.list_kind());
    }
    let requested = &crd["spec"]["names"];
    let accepted = &crd["status"]["acceptedNames"];
    let mut names = if accepted.is_object() {
        accepted.clone()
    } else {
        json!({})
    };
    let mut failure: Option<(&str, String)> = None;
    let s = |v: &Value, f: &str| v[f].as_str().unwrap_or("").to_string();
    let singular = {
        let s = s(requested, "singular");
        if s.is_empty() {
            s_lower(requested)
        } else {
            s
        }
    };
    let list_kind = {
        let l = s(requested, "listKind");
        if l.is_empty() {
            format!("{}List", s(requested, "kind"))
        } else {
            l
        }
    };
    let checks: [(&str, &str, String, &HashSet<String>); 4] = [
        (
            "plural",
            "PluralConflict",
            s(requested, "plural"),
            &resources,
        ),
        ("singular", "SingularConflict", singular, &resources),
        ("kind", "KindConflict", s(requested, "kind"), &kinds),
        ("listKind", "ListKindConflict", list_kind, &kinds),
    ];
    for (field, reason, want, used) in checks {
        match fresh(&want, &s(accepted, field), used) {
            Ok(()) => names[field] = json!(want),
            Err(e) => failure = Some((reason, e)),
        }
        if field == "singular" {
            // Short names come between singular and kind in kube's order.
            let want_short = strings(&requested["shortNames"]);
            let have_short = strings(&accepted["shortNames"]);
            let clash = want_short
                .iter()
                .find(|n| !have_short.contains(n) && used.contains(n.as_str()));
            match clash {
                Some(n) => {
                    failure = Some(("ShortNamesConflict", format!("{n:?} is already in use")))
                }
                None if want_short.is_empty() => {
                    if let Some(m) = names.as_object_mut() {
                        m.remove("shortNames");
                    }
                }
                None => names["shortNames"] = json!(want_short),
            }
        }
    }
    match strings(&requested["categories"]) {
        c if c.is_empty() => {
            if let Some(m) = names.as_object_mut() {
                m.remove("categories");
            }
        }
        c => names["categories"] = json!(c),
    }
    let old_named = condition(crd, "NamesAccepted");
    let old_established = condition(crd, "Established");
    let named = match &failure {
        Some((reason, message)) => cond(old_named, "NamesAccepted", "False", reason, message),
        None => cond(
            old_named,
            "NamesAccepted",
            "True",
            "NoConflicts",
            "no conflicts found",
        ),
    };
    let established = match (old_established, &failure) {
        (Some(o), _) if o["status"] == "True" => o.clone(),
        (_, None) => cond(
            old_established,
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        ),
        (Some(o), Some(_)) => o.clone(),
        (None, Some(_)) => cond(
            None,
            "Established",
            "False",
            "NotAccepted",
            "not all names are accepted",
        ),
    };
    let mut conditions: Vec<Value> = crd["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "NamesAccepted" && c["type"] != "Established")
        .collect();
    conditions.insert(0, named);
    conditions.insert(1, established);
    let mut stored = strings(&crd["status"]["storedVersions"]);
    if let Some(v) = storage_version(crd) {
        if !stored.iter().any(|s| s == v) {
            stored.push(v.to_string());
        }
    }
    json!({"conditions": conditions, "acceptedNames": names, "storedVersions": stored})
}

fn s_lower(requested: &Value) -> String {
    requested["kind"].as_str().unwrap_or("").to_lowercase()
}

// --- The CRD's own validation and defaults ----------------------------------------------------

/// kube's `SetDefaults_CustomResourceDefinition(Spec)`: singular and listKind from the kind,
/// conversion `None`.
pub fn crd_defaults(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    let kind = spec["names"]["kind"].as_str().unwrap_or("").to_string();
    if spec["names"].is_object() {
        if spec["names"]["singular"].as_str().is_none_or(str::is_empty) {
            spec["names"]["singular"] = json!(kind.to_lowercase());
        }
        if spec["names"]["listKind"].as_str().is_none_or(str::is_empty) && !kind.is_empty() {
            spec["names"]["listKind"] = json!(format!("{kind}List"));
        }
    }
    if !spec["conversion"].is_object() {
        spec["conversion"] = json!({"strategy": "None"});
    }
}

/// kube's CRD validation, the part clients meet: names, scope, versions (exactly one storage
/// version), a structural schema for every version.
pub fn validate_crd(crd: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    let name = crd["metadata"]["name"].as_str().unwrap_or("");
    if name != format!("{plural}.{group}") {
        out.push(Cause::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        out.push(Cause::required("spec.group", ""));
    } else if group.split('.').count() < 2 {
        out.push(Cause::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    for (field, value) in [
        ("spec.names.plural", plural),
        (
            "spec.names.kind",
            spec["names"]["kind"].as_str().unwrap_or(""),
        ),
    ] {
        if value.is_empty() {
            out.push(Cause::required(field, ""));
        }
    }
    match spec["scope"].as_str() {
        Some("Namespaced" | "Cluster") => {}
        Some(other) => out.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ),
            field: "spec.scope".into(),
        }),
        None => out.push(Cause::required("spec.scope", "")),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        out.push(Cause::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    } else if versions
        .iter()
        .filter(|v| v["storage"] == json!(true))
        .count()
        != 1
    {
        out.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: "Invalid value: \"versions\": must have exactly one version marked as storage version".into(),
            field: "spec.versions".into(),
        });
    }
    // kube validates its internal form, where a schema every version shares is hoisted to
    // `spec.validation`: the paths of its errors start there.
    let first = versions
        .first()
        .and_then(|v| v["schema"].get("openAPIV3Schema"));
    let shared = first.is_some()
        && versions
            .iter()
            .all(|v| v["schema"].get("openAPIV3Schema") == first);
    for (i, v) in versions.iter().enumerate() {
        if shared && i > 0 {
            break;
        }
        let base = if shared {
            "spec.validation.openAPIV3Schema".to_string()
        } else {
            format!("spec.versions[{i}].schema.openAPIV3Schema")
        };
        match v["schema"].get("openAPIV3Schema") {
            None => out.push(Cause::required(&base, "schemas are required")),
            Some(schema) => {
                let structural = crate::crd::check_structural(schema, &base);
                // Rules compile against a structural schema only.
                let rules = if structural.is_empty() {
                    crate::cel::check_rules(schema, &base)
                } else {
                    Vec::new()
                };
                for c in structural.into_iter().chain(rules) {
                    out.push(Cause {
                        reason: c.reason.into(),
                        message: c.message,
                        field: c.field,
                    });
                }
            }
        }
    }
    out
}

// --- The controller ----------------------------------------------------------------------------

impl ApiServer {
    /// Every stored CRD by name, and the revision of the read.
    async fn list_crds(&self) -> ApiResult<(BTreeMap<String, Value>, i64)> {
        let mut out = BTreeMap::new();
        let mut opts = ListOptions::default();
        loop {
            let page = self.store.list(CRD_PREFIX, opts.clone()).await?;
            for kv in &page.kvs {
                let obj = crate::rest::object::decode(kv)?;
                if let Some(name) = obj["metadata"]["name"].as_str() {
                    out.insert(name.to_string(), obj);
                }
            }
            match (page.remaining, page.kvs.last()) {
                (r, Some(last)) if r > 0 => {
                    opts = ListOptions {
                        start_after: Some(last.key.clone()),
                        revision: Some(page.revision),
                        ..Default::default()
                    };
                }
                _ => return Ok((out, page.revision)),
            }
        }
    }

    /// Serves the stored CRDs' custom resources and keeps doing so as CRDs change (one watch
    /// through the watch cache); runs the naming/establishing/finalizing steps on each change.
    pub(crate) async fn start_crds(&self) -> ApiResult<()> {
        let (mut crds, mut revision) = self.list_crds().await?;
        self.registry.set(&crds);
        self.reconcile_crds(&crds).await;
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                match api.watch_cache.watch(CRD_PREFIX, revision).await {
                    Ok(mut events) => {
                        while let Some(batch) = events.next().await {
                            let Ok(batch) = batch else { break };
                            for e in &batch {
                                revision = revision.max(e.revision);
                                let Some(name) = e.object["metadata"]["name"].as_str() else {
                                    continue;
                                };
                                match e.kind {
                                    EventKind::Put => {
                                        crds.insert(name.to_string(), e.object.clone());
                                    }
                                    EventKind::Delete => {
                                        crds.remove(name);
                                    }
                                }
                            }
                            api.registry.set(&crds);
                            api.reconcile_crds(&crds).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "CRD watch failed; relisting");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
                // The watch ended (compacted, too slow, restarted): relist (not in a hot loop).
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                if let Ok((c, r)) = api.list_crds().await {
                    (crds, revision) = (c, r);
                    api.registry.set(&crds);
                    api.reconcile_crds(&crds).await;
                }
            }
        });
        Ok(())
    }

    /// Brings every CRD's status to what the controllers want (a conditional write; a lost
    /// race is retried on the next change) and starts the cleanup of CRDs being deleted.
    async fn reconcile_crds(&self, crds: &BTreeMap<String, Value>) {
        for (name, crd) in crds {
            if crd["metadata"].get("deletionTimestamp").is_some() {
                let ours = crd["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER));
                let mut busy = self
                    .registry
                    .finalizing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if ours && busy.insert(name.clone()) {
                    let api = self.clone();
                    let name = name.clone();
                    tokio::spawn(async move {
                        api.finalize_crd(&name).await;
                        api.registry
                            .finalizing
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&name);
                    });
                }
                continue;
            }
            let want = desired_status(crd, crds);
            let have = &crd["status"];
            let same = ["conditions", "acceptedNames", "storedVersions"]
                .iter()
                .all(|f| have.get(*f).unwrap_or(&Value::Null) == &want[*f]);
            if same {
                continue;
            }
            let Ok(rev) = crd["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .parse::<i64>()
            else {
                continue;
            };
            let mut next = crd.clone();
            if !next["status"].is_object() {
                next["status"] = json!({});
            }
            for f in ["conditions", "acceptedNames", "storedVersions"] {
                next["status"][f] = want[f].clone();
            }
            let key = format!("{CRD_PREFIX}{name}");
            if let Err(e) = self
                .store
                .update(&key, crate::rest::object::encode(&next), rev)
                .await
            {
                tracing::debug!(crd = %name, error = %e, "CRD status not written (retried on the next change)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_priority() {
        let mut v = vec!["v1alpha1", "v1", "foo", "v2beta1", "v2", "v1beta2", "v10"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            vec!["v10", "v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn names_conflict_within_a_group() {
        let crd = |name: &str, plural: &str, kind: &str| {
            json!({"metadata": {"name": name}, "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": plural, "kind": kind, "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true, "storage": true}]}})
        };
        let mut all = BTreeMap::new();
        let a = crd("widgets.example.com", "widgets", "Widget");
        let st = desired_status(&a, &all);
        assert_eq!(st["acceptedNames"]["singular"], "widget");
        assert_eq!(st["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(st["conditions"][0]["reason"], "NoConflicts");
        assert_eq!(st["conditions"][1]["status"], "True");
        assert_eq!(st["storedVersions"], json!(["v1"]));
        let mut a2 = a.clone();
        a2["status"] = st;
        all.insert("widgets.example.com".to_string(), a2);
        let mut b = crd("gadgets.example.com", "gadgets", "Widget");
        b["spec"]["names"] = json!({"plural": "gadgets", "singular": "gadget", "kind": "Widget", "listKind": "GadgetList"});
        let st = desired_status(&b, &all);
        assert_eq!(st["conditions"][0]["status"], "False");
        assert_eq!(st["conditions"][0]["reason"], "KindConflict");
        assert_eq!(
            st["conditions"][0]["message"],
            "\"Widget\" is already in use"
        );
        assert_eq!(st["conditions"][1]["reason"], "NotAccepted");
        let mut b2 = b.clone();
        b2["status"] = st;
        assert!(rows_of(&b2).is_empty());
    }
}
