//! RBAC authorization (rbac.authorization.k8s.io/v1) and the default policy, as
//! kube-apiserver's RBAC authorizer does it (k8s.io/kubernetes `plugin/pkg/auth/authorizer/rbac`,
//! bootstrap policy in `plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`).
//! Source: [Using RBAC Authorization](https://kubernetes.io/docs/reference/access-authn-authz/rbac/).
//!
//! A request is allowed when a ClusterRoleBinding, or a RoleBinding in the request's namespace,
//! binds a subject matching the user (User by name, Group by membership, ServiceAccount by
//! `system:serviceaccount:NS:NAME`) to a role with a rule that covers the request. Aggregated
//! ClusterRoles (`aggregationRule`) are the union of the roles their selectors pick.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::Identity;

/// What a request asks to do (kube's `authorizer.Attributes`).
#[derive(Clone, Debug, Default)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, or
    /// an HTTP verb in lower case for non-resource requests.
    pub verb: String,
    /// Resource requests: the API group (`""` for core), resource, subresource, namespace and
    /// name; `None` for a non-resource request (then `path` is used).
    pub resource: Option<ResourceAttributes>,
    /// The URL path of a non-resource request (`/healthz`, `/api`, …).
    pub path: String,
}

#[derive(Clone, Debug, Default)]
pub struct ResourceAttributes {
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl ResourceAttributes {
    /// `resource` or `resource/subresource`, as rules and messages name it.
    pub fn combined(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// A policy rule (`PolicyRule`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    #[serde(rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct RoleRef {
    kind: String,
    name: String,
}

#[derive(Clone, Debug)]
struct Binding {
    subjects: Vec<Subject>,
    role_ref: RoleRef,
}

/// The RBAC objects in force, indexed for authorization.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    cluster_roles: BTreeMap<String, Value>,
    roles: BTreeMap<(String, String), Vec<Rule>>,
    cluster_bindings: Vec<Binding>,
    bindings: BTreeMap<String, Vec<Binding>>,
}

fn rules_of(v: &Value) -> Vec<Rule> {
    v.get("rules")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default()
}

fn binding_of(v: &Value) -> Binding {
    Binding {
        subjects: v
            .get("subjects")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default(),
        role_ref: v
            .get("roleRef")
            .and_then(|r| serde_json::from_value(r.clone()).ok())
            .unwrap_or_default(),
    }
}

impl Policy {
    /// Indexes RBAC objects (Role, ClusterRole, RoleBinding, ClusterRoleBinding as JSON; other
    /// kinds are ignored).
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Policy {
        let mut p = Policy::default();
        for o in objects {
            let meta = |k: &str| {
                o.pointer(&format!("/metadata/{k}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            match o.get("kind").and_then(Value::as_str) {
                Some("ClusterRole") => {
                    p.cluster_roles.insert(meta("name"), o.clone());
                }
                Some("Role") => {
                    p.roles
                        .insert((meta("namespace"), meta("name")), rules_of(o));
                }
                Some("ClusterRoleBinding") => p.cluster_bindings.push(binding_of(o)),
                Some("RoleBinding") => p
                    .bindings
                    .entry(meta("namespace"))
                    .or_default()
                    .push(binding_of(o)),
                _ => {}
            }
        }
        p
    }

    /// The rules of a ClusterRole, with aggregation applied.
    pub fn cluster_role_rules(&self, name: &str) -> Vec<Rule> {
        let Some(role) = self.cluster_roles.get(name) else {
            return Vec::new();
        };
        match role
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
        {
            Some(selectors) => aggregate(selectors, self.cluster_roles.values()),
            None => rules_of(role),
        }
    }

    /// Whether `user` may do `attrs`.
    pub fn allows(&self, user: &Identity, attrs: &Attributes) -> bool {
        let covered = |rules: &[Rule]| rules.iter().any(|r| rule_allows(r, attrs));
        for b in &self.cluster_bindings {
            if b.role_ref.kind == "ClusterRole"
                && b.subjects.iter().any(|s| subject_matches(s, user, ""))
                && covered(&self.cluster_role_rules(&b.role_ref.name))
            {
                return true;
            }
        }
        let Some(ns) = attrs
            .resource
            .as_ref()
            .map(|r| r.namespace.as_str())
            .filter(|n| !n.is_empty())
        else {
            return false;
        };
        for b in self.bindings.get(ns).into_iter().flatten() {
            if !b.subjects.iter().any(|s| subject_matches(s, user, ns)) {
                continue;
            }
            let rules = match b.role_ref.kind.as_str() {
                "ClusterRole" => self.cluster_role_rules(&b.role_ref.name),
                "Role" => self
                    .roles
                    .get(&(ns.to_string(), b.role_ref.name.clone()))
                    .cloned()
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            if covered(&rules) {
                return true;
            }
        }
        false
    }
}

/// The union of the rules of the ClusterRoles whose labels match any of `selectors`
/// (`metav1.LabelSelector`s with `matchLabels`/`matchExpressions`).
pub fn aggregate<'a>(selectors: &[Value], roles: impl Iterator<Item = &'a Value>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    for role in roles {
        if role.pointer("/aggregationRule").is_some() {
            continue;
        }
        let matches = selectors.iter().any(|sel| {
            let given = sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some();
            given
                && crate::selectors::LabelSelector::from_json(sel)
                    .matches(role.pointer("/metadata/labels"))
        });
        if matches {
            for r in rules_of(role) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
    }
    out
}

fn subject_matches(s: &Subject, user: &Identity, binding_ns: &str) -> bool {
    match s.kind.as_str() {
        "User" => s.name == user.user,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = if s.namespace.is_empty() {
                binding_ns
            } else {
                &s.namespace
            };
            user.user == format!("system:serviceaccount:{ns}:{}", s.name)
        }
        _ => false,
    }
}

fn has(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x == "*" || x == v)
}

/// kube's `RuleAllows`.
pub fn rule_allows(rule: &Rule, attrs: &Attributes) -> bool {
    if !has(&rule.verbs, &attrs.verb) {
        return false;
    }
    match &attrs.resource {
        Some(r) => {
            let combined = r.combined();
            let resource_ok = rule.resources.iter().any(|rr| {
                rr == "*"
                    || *rr == combined
                    || (!r.subresource.is_empty() && *rr == format!("*/{}", r.subresource))
            });
            has(&rule.api_groups, &r.group)
                && resource_ok
                && (rule.resource_names.is_empty() || rule.resource_names.contains(&r.name))
        }
        None => rule.non_resource_urls.iter().any(|u| {
            u == "*"
                || *u == attrs.path
                || u.strip_suffix('*')
                    .is_some_and(|p| attrs.path.starts_with(p))
        }),
    }
}

/// kube's 403 message for a denied request, e.g. `configmaps "x" is forbidden: User "alice"
/// cannot get resource "configmaps" in API group "" in the namespace "default"`.
pub fn forbidden_message(user: &Identity, attrs: &Attributes) -> String {
    match &attrs.resource {
        Some(r) => {
            let combined = r.combined();
            let what = if r.name.is_empty() {
                combined.clone()
            } else {
                format!("{combined} {:?}", r.name)
            };
            let scope = if r.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {:?}", r.namespace)
            };
            format!(
                "{what} is forbidden: User {:?} cannot {} resource {:?} in API group {:?} {scope}",
                user.user, attrs.verb, combined, r.group
            )
        }
        None => format!(
            "forbidden: User {:?} cannot {} path {:?}",
            user.user, attrs.verb, attrs.path
        ),
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels,
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": rules})
}

fn aggregated(name: &str, to: &str, extra_labels: Value) -> Value {
    let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    if let (Some(l), Some(extra)) = (labels.as_object_mut(), extra_labels.as_object()) {
        l.extend(extra.clone());
    }
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels,
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"}}]},
        "rules": []})
}

fn cluster_binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": g}))
        .collect();
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects})
}

/// The default ClusterRoles and ClusterRoleBindings kube-apiserver creates at start-up
/// (`bootstrappolicy.ClusterRoles()`/`ClusterRoleBindings()`; the user-facing ones and what
/// clients need for discovery and self-review).
pub fn bootstrap_policy() -> Vec<Value> {
    let boot = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    let rw: Vec<&str> = READ.iter().chain(WRITE).copied().collect();
    let view_rules = vec![
        rule(
            READ,
            &[""],
            &[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ],
        ),
        rule(
            READ,
            &[""],
            &[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ],
        ),
        rule(READ, &[""], &["namespaces"]),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
            ],
        ),
        rule(
            READ,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &["batch"],
            &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
        ),
        rule(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            READ,
            &["networking.k8s.io"],
            &["networkpolicies", "ingresses", "ingresses/status"],
        ),
    ];
    let edit_rules = vec![
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(
            &rw,
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
            ],
        ),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(
            &rw,
            &[""],
            &[
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ],
        ),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(
            &rw,
            &["apps"],
            &[
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
            ],
        ),
        rule(&rw, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(&rw, &["batch"], &["jobs", "cronjobs"]),
        rule(
            &rw,
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
        ),
        rule(&rw, &["policy"], &["poddisruptionbudgets"]),
        rule(
            &["create", "delete", "deletecollection", "patch", "update"],
            &["discovery.k8s.io"],
            &["endpointslices"],
        ),
        rule(
            &["create", "delete", "deletecollection", "patch", "update"],
            &[""],
            &["endpoints"],
        ),
    ];
    // kube's `system:node` role (bootstrappolicy `NodeRules()`): what kubelet may do.
    let node_rules = vec![
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        rule(READ, &[""], &["services", "endpoints"]),
        rule(
            &[
                "create", "get", "list", "watch", "patch", "update", "delete",
            ],
            &[""],
            &["nodes"],
        ),
        rule(&["patch", "update"], &[""], &["nodes/status"]),
        rule(&["create", "patch", "update"], &[""], &["events"]),
        rule(
            &["create", "patch", "update"],
            &["events.k8s.io"],
            &["events"],
        ),
        rule(
            &["get", "list", "watch", "create", "delete"],
            &[""],
            &["pods"],
        ),
        rule(&["update", "patch"], &[""], &["pods/status"]),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(
            READ,
            &[""],
            &[
                "configmaps",
                "secrets",
                "persistentvolumeclaims",
                "persistentvolumes",
            ],
        ),
        rule(
            &["update", "patch"],
            &[""],
            &["persistentvolumeclaims/status"],
        ),
        rule(&["get"], &[""], &["serviceaccounts"]),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        ),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &["coordination.k8s.io"],
            &["leases"],
        ),
        rule(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
        rule(READ, &["storage.k8s.io"], &["csidrivers", "csinodes"]),
        rule(READ, &["node.k8s.io"], &["runtimeclasses"]),
    ];
    // What barge's agent does beyond kubelet's role: kube-proxy's `system:node-proxier`
    // (Services and EndpointSlices), NetworkPolicy enforcement (policies, namespaces, every
    // pod), cluster DNS (its node's `kube-dns-<node>` EndpointSlice) and the Ingress proxy
    // (Ingresses, IngressClasses, their TLS Secrets, `ingresses/status`).
    let node_agent_rules = vec![
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(
            &["create", "update", "patch", "delete"],
            &["discovery.k8s.io"],
            &["endpointslices"],
        ),
        rule(READ, &[""], &["namespaces", "nodes"]),
        rule(
            READ,
            &["networking.k8s.io"],
            &["networkpolicies", "ingresses", "ingressclasses"],
        ),
        rule(
            &["update", "patch"],
            &["networking.k8s.io"],
            &["ingresses/status"],
        ),
    ];
    let admin_rules = vec![
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
        rule(
            &rw,
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
        ),
    ];
    vec![
        cluster_role(
            "cluster-admin",
            boot.clone(),
            vec![
                json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
                json!({"verbs": ["*"], "nonResourceURLs": ["*"]}),
            ],
        ),
        aggregated("admin", "admin", json!({})),
        aggregated(
            "edit",
            "edit",
            json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
        ),
        aggregated(
            "view",
            "view",
            json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
        ),
        cluster_role(
            "system:aggregate-to-admin",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults", "rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
            admin_rules,
        ),
        cluster_role(
            "system:aggregate-to-edit",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults", "rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
            edit_rules,
        ),
        cluster_role(
            "system:aggregate-to-view",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults", "rbac.authorization.k8s.io/aggregate-to-view": "true"}),
            view_rules,
        ),
        cluster_role(
            "system:discovery",
            boot.clone(),
            vec![
                json!({"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"]}),
            ],
        ),
        cluster_role(
            "system:basic-user",
            boot.clone(),
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        // metrics-server's role (its components.yaml), aggregated into view, edit and admin:
        // `kubectl top` for anyone who may view a namespace.
        cluster_role(
            "system:aggregated-metrics-reader",
            json!({"rbac.authorization.k8s.io/aggregate-to-view": "true",
                   "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                   "rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
            vec![rule(
                &["get", "list", "watch"],
                &["metrics.k8s.io"],
                &["pods", "nodes"],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            boot.clone(),
            vec![
                json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]}),
            ],
        ),
        cluster_role("system:node", boot.clone(), node_rules),
        cluster_role("system:barge-node-agent", boot, node_agent_rules),
        cluster_binding("cluster-admin", "cluster-admin", &["system:masters"]),
        // kube binds `system:node` to no one (the Node authorizer admits kubelets); barge has
        // no Node authorizer yet, so the nodes' group gets the role itself (the pre-1.8
        // binding): every node may read and write every node's objects.
        cluster_binding("system:node", "system:node", &["system:nodes"]),
        cluster_binding(
            "system:barge-node-agent",
            "system:barge-node-agent",
            &["system:nodes"],
        ),
        cluster_binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        cluster_binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
        cluster_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> Identity {
        Identity {
            user: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn res(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource: Some(ResourceAttributes {
                group: group.into(),
                resource: resource.into(),
                namespace: ns.into(),
                name: name.into(),
                ..Default::default()
            }),
            path: String::new(),
        }
    }

    #[test]
    fn defaults_admin_view_edit_and_anonymous() {
        let mut objects = bootstrap_policy();
        objects.push(json!({"kind": "RoleBinding", "metadata": {"namespace": "dev", "name": "alice-view"},
            "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "alice"}]}));
        objects.push(json!({"kind": "Role", "metadata": {"namespace": "dev", "name": "cm-one"},
            "rules": [{"verbs": ["update"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"]}]}));
        objects.push(json!({"kind": "RoleBinding", "metadata": {"namespace": "dev", "name": "sa"},
            "roleRef": {"kind": "Role", "name": "cm-one"}, "subjects": [{"kind": "ServiceAccount", "name": "bot"}]}));
        let p = Policy::from_objects(&objects);
        let admin = user("system:admin", &["system:masters", "system:authenticated"]);
        assert!(p.allows(&admin, &res("delete", "apps", "deployments", "x", "y")));
        let alice = user("alice", &["system:authenticated"]);
        assert!(p.allows(&alice, &res("list", "apps", "deployments", "dev", "")));
        assert!(
            !p.allows(&alice, &res("list", "", "secrets", "dev", "")),
            "view does not read secrets"
        );
        assert!(!p.allows(&alice, &res("create", "", "configmaps", "dev", "")));
        assert!(!p.allows(&alice, &res("list", "apps", "deployments", "prod", "")));
        // `kubectl top pod` for a viewer (system:aggregated-metrics-reader → view).
        assert!(p.allows(&alice, &res("list", "metrics.k8s.io", "pods", "dev", "")));
        assert!(!p.allows(&alice, &res("list", "metrics.k8s.io", "pods", "prod", "")));
        assert!(p.allows(
            &alice,
            &res(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "",
                ""
            )
        ));
        let bot = user(
            "system:serviceaccount:dev:bot",
            &["system:serviceaccounts", "system:authenticated"],
        );
        assert!(p.allows(&bot, &res("update", "", "configmaps", "dev", "one")));
        assert!(!p.allows(&bot, &res("update", "", "configmaps", "dev", "two")));
        // A joined node (kubelet client certificate).
        let node = user("system:node:w1", &["system:nodes", "system:authenticated"]);
        assert!(p.allows(&node, &res("patch", "", "nodes", "", "w1")));
        assert!(!p.allows(&node, &res("patch", "", "pods", "dev", "x")));
        assert!(p.allows(&node, &res("patch", "", "pods/status", "dev", "x")));
        assert!(p.allows(
            &node,
            &res(
                "update",
                "coordination.k8s.io",
                "leases",
                "kube-node-lease",
                "w1"
            )
        ));
        assert!(p.allows(
            &node,
            &res("watch", "discovery.k8s.io", "endpointslices", "", "")
        ));
        assert!(!p.allows(&node, &res("create", "apps", "deployments", "dev", "")));
        let anon = user("system:anonymous", &["system:unauthenticated"]);
        let path = |p: &str| Attributes {
            verb: "get".into(),
            resource: None,
            path: p.into(),
        };
        assert!(p.allows(&anon, &path("/readyz")));
        assert!(!p.allows(&anon, &path("/api")));
        assert!(p.allows(&alice, &path("/apis/apps/v1")));
        assert_eq!(
            forbidden_message(&alice, &res("create", "", "configmaps", "dev", "")),
            "configmaps is forbidden: User \"alice\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"dev\""
        );
        assert_eq!(
            forbidden_message(&anon, &path("/api")),
            "forbidden: User \"system:anonymous\" cannot get path \"/api\""
        );
    }
}
