//! The resource registry: one table of the built-in kinds barge serves. It drives routing
//! (group/version/plural → [`ResourceInfo`]), discovery (`/api/v1`, `/apis/G/V`, aggregated
//! discovery) and storage keys.
//!
//! Group, version, kind, plural and scope come from `k8s-openapi`'s [`Resource`] impls (so
//! they cannot drift from the v1.33 types); singular names, short names, categories, verbs and
//! subresources are kube-apiserver v1.33's discovery (`kubectl api-resources -o wide`).
//!
//! Storage layout (kube-apiserver's etcd keys, `/registry` prefix): built-in kinds are stored
//! under `/registry/<resource>/<namespace>/<name>` (namespaced) or `/registry/<resource>/<name>`
//! (cluster-scoped) *without* their group — `/registry/deployments/default/web` — with kube's
//! historic overrides: services `services/specs`, endpoints `services/endpoints`, nodes
//! `minions`, replicationcontrollers `controllers`, ingresses `ingress`; CRDs (and their
//! custom resources, see [`crate::custom`]) are under `/registry/<group>/<resource>/…`
//! (`/registry/apiextensions.k8s.io/customresourcedefinitions/<name>`).

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling,
    batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, networking::v1 as networking,
    policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};

/// Whether a `k8s-openapi` scope is namespaced.
trait Scoped {
    const NAMESPACED: bool;
}
impl Scoped for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl Scoped for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// The verbs of a plain resource, as discovery lists them (sorted, as kube does).
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces have no `deletecollection`.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// Verbs of the `status` and `scale` subresources.
pub const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// One subresource (`pods/status`, `deployments/scale`, `pods/exec`, …) as discovery shows it.
#[derive(Clone, Debug)]
pub struct Subresource {
    /// `status`, `scale`, `log`, …
    pub name: &'static str,
    /// Group, version and kind of the subresource's object (`autoscaling/v1 Scale` for scale;
    /// the parent's for status).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One served resource (a group/version/plural).
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    /// API group (`""` for core).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL segment (`deployments`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: Vec<Subresource>,
    /// The storage segment after `/registry/` (`deployments`, `services/specs`, `minions`,
    /// `apiextensions.k8s.io/customresourcedefinitions`).
    pub storage: &'static str,
    /// Whether `metadata.generation` is kept (1 on create, +1 when the spec changes), as the
    /// kind's registry strategy in kube-apiserver does.
    pub generation: bool,
    /// The object decoded into its `k8s-openapi` type and encoded back (`None` if it does not
    /// decode): what is missing from the result are the fields the type does not know.
    pub roundtrip: fn(&serde_json::Value) -> Option<serde_json::Value>,
    /// What a custom resource (served from a CRD) adds: its schema, printer columns, scale
    /// paths, storage version (`None` for built-ins; see [`crate::custom`]).
    pub custom: Option<std::sync::Arc<crate::custom::Custom>>,
}

/// Decodes `v` as a `T` and encodes it again.
fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(
    v: &serde_json::Value,
) -> Option<serde_json::Value> {
    let typed: T = serde_json::from_value(v.clone()).ok()?;
    serde_json::to_value(typed).ok()
}

impl ResourceInfo {
    /// `apps/v1`, or `v1` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// kube's qualified resource string in messages: `configmaps`, `deployments.apps`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind of this resource's lists (`ConfigMapList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether the resource has the named subresource.
    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether the resource has a `status` subresource (then a main-resource write keeps the
    /// stored status and `/status` writes touch only the status).
    pub fn has_status(&self) -> bool {
        self.subresource("status").is_some()
    }

    /// The datastore key of one object: `/registry/<storage>/<ns>/<name>` or
    /// `/registry/<storage>/<name>`.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("/registry/{}/{ns}/{name}", self.storage),
            None => format!("/registry/{}/{name}", self.storage),
        }
    }

    /// The key prefix of a list (one namespace, or every namespace / cluster-scoped), with a
    /// trailing `/`.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("/registry/{}/{ns}/", self.storage),
            None => format!("/registry/{}/", self.storage),
        }
    }
}

/// Builder for one row of the table from a `k8s-openapi` type.
struct Row<T> {
    info: ResourceInfo,
    _t: std::marker::PhantomData<T>,
}

fn row<T>(singular: &'static str) -> Row<T>
where
    T: Resource<Scope: Scoped> + serde::de::DeserializeOwned + serde::Serialize,
{
    Row {
        info: ResourceInfo {
            group: T::GROUP,
            version: T::VERSION,
            kind: T::KIND,
            plural: T::URL_PATH_SEGMENT,
            singular,
            namespaced: <T::Scope as Scoped>::NAMESPACED,
            short_names: &[],
            categories: &[],
            verbs: ALL_VERBS,
            subresources: Vec::new(),
            storage: T::URL_PATH_SEGMENT,
            generation: false,
            roundtrip: roundtrip::<T>,
            custom: None,
        },
        _t: std::marker::PhantomData,
    }
}

impl<T: Resource<Scope: Scoped>> Row<T> {
    fn short(mut self, names: &'static [&'static str]) -> Self {
        self.info.short_names = names;
        self
    }
    fn all(mut self) -> Self {
        self.info.categories = &["all"];
        self
    }
    fn categories(mut self, c: &'static [&'static str]) -> Self {
        self.info.categories = c;
        self
    }
    fn storage(mut self, s: &'static str) -> Self {
        self.info.storage = s;
        self
    }
    fn verbs(mut self, v: &'static [&'static str]) -> Self {
        self.info.verbs = v;
        self
    }
    fn generation(mut self) -> Self {
        self.info.generation = true;
        self
    }
    fn status(self) -> Self {
        let (g, v, k) = (T::GROUP, T::VERSION, T::KIND);
        self.sub("status", g, v, k, SUBRESOURCE_VERBS)
    }
    fn scale(self) -> Self {
        self.sub("scale", "autoscaling", "v1", "Scale", SUBRESOURCE_VERBS)
    }
    /// A subresource whose object is the parent's kind.
    fn own(self, name: &'static str, verbs: &'static [&'static str]) -> Self {
        let (g, v, k) = (T::GROUP, T::VERSION, T::KIND);
        self.sub(name, g, v, k, verbs)
    }
    fn sub(
        mut self,
        name: &'static str,
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        verbs: &'static [&'static str],
    ) -> Self {
        self.info.subresources.push(Subresource {
            name,
            group,
            version,
            kind,
            verbs,
        });
        self
    }
    fn done(self) -> ResourceInfo {
        self.info
    }
}

/// The group of the resource metrics API (`kubectl top`, the HorizontalPodAutoscaler).
pub const METRICS_GROUP: &str = "metrics.k8s.io";

/// A `metrics.k8s.io/v1beta1` resource (read-only, computed on each request).
fn metrics_row(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> ResourceInfo {
    ResourceInfo {
        group: METRICS_GROUP,
        version: "v1beta1",
        kind,
        plural,
        singular,
        namespaced,
        short_names: &[],
        categories: &[],
        verbs: &["get", "list"],
        subresources: Vec::new(),
        storage: if namespaced {
            "metrics.k8s.io/pods"
        } else {
            "metrics.k8s.io/nodes"
        },
        generation: false,
        roundtrip: |v| Some(v.clone()),
        custom: None,
    }
}

/// Every built-in resource barge serves, in discovery order (core first, then the groups in
/// kube-apiserver's priority order).
pub struct Registry {
    resources: Vec<ResourceInfo>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// The built-in kinds of Kubernetes v1.33 that barge serves.
    pub fn builtin() -> Self {
        let get_create: &'static [&'static str] = &["create", "get"];
        let resources = vec![
            // core/v1
            row::<core::ConfigMap>("configmap").short(&["cm"]).done(),
            row::<core::Endpoints>("endpoints")
                .short(&["ep"])
                .storage("services/endpoints")
                .done(),
            row::<core::Event>("event").short(&["ev"]).done(),
            row::<core::LimitRange>("limitrange")
                .short(&["limits"])
                .done(),
            row::<core::Namespace>("namespace")
                .short(&["ns"])
                .verbs(NAMESPACE_VERBS)
                .own("finalize", &["update"])
                .status()
                .done(),
            row::<core::Node>("node")
                .short(&["no"])
                .storage("minions")
                .status()
                .done(),
            row::<core::PersistentVolumeClaim>("persistentvolumeclaim")
                .short(&["pvc"])
                .status()
                .done(),
            row::<core::PersistentVolume>("persistentvolume")
                .short(&["pv"])
                .status()
                .done(),
            row::<core::Pod>("pod")
                .short(&["po"])
                .all()
                .sub("attach", "", "v1", "PodAttachOptions", get_create)
                .sub("binding", "", "v1", "Binding", &["create"])
                .own("ephemeralcontainers", SUBRESOURCE_VERBS)
                .sub("eviction", "policy", "v1", "Eviction", &["create"])
                .sub("exec", "", "v1", "PodExecOptions", get_create)
                .sub("log", "", "v1", "Pod", &["get"])
                .sub("portforward", "", "v1", "PodPortForwardOptions", get_create)
                .own("resize", SUBRESOURCE_VERBS)
                .status()
                .done(),
            row::<core::PodTemplate>("podtemplate").done(),
            row::<core::ReplicationController>("replicationcontroller")
                .short(&["rc"])
                .all()
                .storage("controllers")
                .generation()
                .scale()
                .status()
                .done(),
            row::<core::ResourceQuota>("resourcequota")
                .short(&["quota"])
                .status()
                .done(),
            row::<core::Secret>("secret").done(),
            row::<core::ServiceAccount>("serviceaccount")
                .short(&["sa"])
                .sub(
                    "token",
                    "authentication.k8s.io",
                    "v1",
                    "TokenRequest",
                    &["create"],
                )
                .done(),
            row::<core::Service>("service")
                .short(&["svc"])
                .all()
                .storage("services/specs")
                .status()
                .done(),
            // apps/v1
            row::<apps::ControllerRevision>("controllerrevision").done(),
            row::<apps::DaemonSet>("daemonset")
                .short(&["ds"])
                .all()
                .generation()
                .status()
                .done(),
            row::<apps::Deployment>("deployment")
                .short(&["deploy"])
                .all()
                .generation()
                .scale()
                .status()
                .done(),
            row::<apps::ReplicaSet>("replicaset")
                .short(&["rs"])
                .all()
                .generation()
                .scale()
                .status()
                .done(),
            row::<apps::StatefulSet>("statefulset")
                .short(&["sts"])
                .all()
                .generation()
                .scale()
                .status()
                .done(),
            // events.k8s.io/v1: core/v1 Events converted (rest/convert.rs)
            row::<events::Event>("event").short(&["ev"]).done(),
            // autoscaling/v2, then v1 (stored as v2, converted: rest/convert.rs)
            row::<autoscaling::HorizontalPodAutoscaler>("horizontalpodautoscaler")
                .short(&["hpa"])
                .all()
                .generation()
                .status()
                .done(),
            row::<autoscaling_v1::HorizontalPodAutoscaler>("horizontalpodautoscaler")
                .short(&["hpa"])
                .all()
                .generation()
                .status()
                .done(),
            // batch/v1
            row::<batch::CronJob>("cronjob")
                .short(&["cj"])
                .all()
                .generation()
                .status()
                .done(),
            row::<batch::Job>("job").all().generation().status().done(),
            // networking.k8s.io/v1
            row::<networking::IngressClass>("ingressclass").done(),
            row::<networking::Ingress>("ingress")
                .short(&["ing"])
                .storage("ingress")
                .generation()
                .status()
                .done(),
            row::<networking::NetworkPolicy>("networkpolicy")
                .short(&["netpol"])
                .generation()
                .done(),
            // policy/v1
            row::<policy::PodDisruptionBudget>("poddisruptionbudget")
                .short(&["pdb"])
                .generation()
                .status()
                .done(),
            // rbac.authorization.k8s.io/v1
            row::<rbac::ClusterRoleBinding>("clusterrolebinding").done(),
            row::<rbac::ClusterRole>("clusterrole").done(),
            row::<rbac::RoleBinding>("rolebinding").done(),
            row::<rbac::Role>("role").done(),
            // coordination.k8s.io/v1
            row::<coordination::Lease>("lease").done(),
            // discovery.k8s.io/v1
            row::<discovery::EndpointSlice>("endpointslice").done(),
            // storage.k8s.io/v1
            row::<storage::StorageClass>("storageclass")
                .short(&["sc"])
                .done(),
            // scheduling.k8s.io/v1
            row::<scheduling::PriorityClass>("priorityclass")
                .short(&["pc"])
                .done(),
            // apiextensions.k8s.io/v1 (custom resources: custom.rs)
            row::<apiextensions::CustomResourceDefinition>("customresourcedefinition")
                .short(&["crd", "crds"])
                .categories(&["api-extensions"])
                .storage("apiextensions.k8s.io/customresourcedefinitions")
                .generation()
                .status()
                .done(),
            // metrics.k8s.io/v1beta1: metrics-server's aggregated API, served from the node
            // agents' summaries (rest/metrics.rs); nothing is stored.
            metrics_row("NodeMetrics", "nodes", "", false),
            metrics_row("PodMetrics", "pods", "", true),
        ];
        Registry { resources }
    }

    /// Every resource, in discovery order.
    pub fn resources(&self) -> &[ResourceInfo] {
        &self.resources
    }

    /// The resource served at `group`/`version`/`plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The resource of `group`'s `kind` (any version).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.kind == kind)
    }

    /// The named groups (not core) in discovery order, each with its versions.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for r in self.resources.iter().filter(|r| !r.group.is_empty()) {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
                Some(_) => {}
                None => out.push((r.group, vec![r.version])),
            }
        }
        out
    }

    /// This table with the custom resources' rows appended (after every built-in, so the
    /// CRDs' groups come last in discovery as kube-apiserver orders them).
    pub fn with_custom(mut self, rows: Vec<ResourceInfo>) -> Self {
        self.resources.extend(rows);
        self
    }

    /// Resources of one group version.
    pub fn group_version(&self, group: &str, version: &str) -> Vec<&ResourceInfo> {
        self.resources
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_kube_layout() {
        let reg = Registry::builtin();
        let deploy = reg.lookup("apps", "v1", "deployments").unwrap();
        assert_eq!((deploy.kind, deploy.namespaced), ("Deployment", true));
        assert_eq!(
            deploy.key(Some("default"), "web"),
            "/registry/deployments/default/web"
        );
        assert_eq!(deploy.qualified(), "deployments.apps");
        assert!(deploy.subresource("scale").is_some() && deploy.has_status());
        let svc = reg.lookup("", "v1", "services").unwrap();
        assert_eq!(svc.prefix(Some("a")), "/registry/services/specs/a/");
        let ns = reg.lookup("", "v1", "namespaces").unwrap();
        assert!(!ns.namespaced);
        assert_eq!(ns.key(Some("ignored"), "x"), "/registry/namespaces/x");
        assert_eq!(
            reg.lookup("", "v1", "nodes").unwrap().key(None, "n1"),
            "/registry/minions/n1"
        );
        let crd = reg
            .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        assert_eq!(
            crd.key(None, "a.b.c"),
            "/registry/apiextensions.k8s.io/customresourcedefinitions/a.b.c"
        );
        assert_eq!(reg.lookup("", "v1", "pods").unwrap().short_names, &["po"]);
        assert!(reg.lookup("apps", "v1", "nope").is_none());
        // Every storage prefix is distinct and none is a prefix of another's key space.
        // (Versions stored as another's share its prefix.)
        let mut prefixes: Vec<String> = reg
            .resources()
            .iter()
            .filter(|r| crate::rest::convert::of(r).is_none())
            .map(|r| r.prefix(None))
            .collect();
        prefixes.sort();
        for w in prefixes.windows(2) {
            assert!(!w[1].starts_with(&w[0]), "{} inside {}", w[1], w[0]);
        }
        assert_eq!(reg.groups()[0], ("apps", vec!["v1"]));
        let groups = reg.groups();
        let autoscaling = groups.iter().find(|(g, _)| *g == "autoscaling").unwrap();
        assert_eq!(autoscaling.1, vec!["v2", "v1"], "v2 preferred");
        assert!(groups.iter().any(|(g, _)| *g == "events.k8s.io"));
    }
}
