//! Authorization of every request: RBAC ([`crate::rbac`]) over the Roles, ClusterRoles and
//! their bindings in the datastore, kept current through the watch cache (the server's one
//! datastore watch), plus kube's privileged group (`system:masters` is always allowed, as
//! kube-apiserver's first authorizer does).
//! A denial is kube's 403 (`lib.rs`'s `forbidden`).

use std::sync::{Arc, RwLock};

use barge_datastore::ListOptions;
use futures_util::StreamExt;
use serde_json::Value;

use crate::rbac::{Attributes, Policy, ResourceAttributes};
use crate::request::{self, Query};
use crate::status::{ApiError, ApiResult};
use crate::{ApiServer, Identity};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// The RBAC resources and the kind their stored objects are.
const RBAC_KINDS: &[(&str, &str)] = &[
    ("clusterroles", "ClusterRole"),
    ("roles", "Role"),
    ("clusterrolebindings", "ClusterRoleBinding"),
    ("rolebindings", "RoleBinding"),
];

/// The policy in force, shared by every request.
#[derive(Default)]
pub(crate) struct Authorizer {
    policy: RwLock<Arc<Policy>>,
}

impl Authorizer {
    fn current(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// kube's attributes of a request.
pub(crate) fn attributes(
    method: &axum::http::Method,
    path: &str,
    query: Option<&str>,
) -> Attributes {
    let q = Query::parse(query);
    if let Some(info) = request::parse_path(path) {
        if let Some(verb) = request::verb(method, &info, &q) {
            return Attributes {
                verb: verb.as_str().to_string(),
                resource: Some(ResourceAttributes {
                    group: info.group.clone(),
                    resource: info.resource.clone(),
                    subresource: info.subresource.clone().unwrap_or_default(),
                    namespace: info.namespace.clone().unwrap_or_default(),
                    name: info.name.clone().unwrap_or_default(),
                }),
                path: path.to_string(),
            };
        }
    }
    Attributes {
        verb: method.as_str().to_ascii_lowercase(),
        resource: None,
        path: path.to_string(),
    }
}

impl ApiServer {
    /// Whether `user` may do `attrs`.
    pub(crate) fn allowed(&self, user: &Identity, attrs: &Attributes) -> bool {
        user.groups.iter().any(|g| g == "system:masters")
            || self.authz.current().allows(user, attrs)
    }

    /// Reads every RBAC object into a new policy.
    async fn load_policy(&self) -> ApiResult<i64> {
        let mut objects = Vec::new();
        let mut revision = 0;
        for (plural, kind) in RBAC_KINDS {
            let Some(info) = self.registry().lookup(RBAC_GROUP, "v1", plural).cloned() else {
                continue;
            };
            let mut opts = ListOptions::default();
            loop {
                let page = self.store.list(&info.prefix(None), opts.clone()).await?;
                revision = revision.max(page.revision);
                for kv in &page.kvs {
                    let mut obj: Value = serde_json::from_slice(&kv.value)
                        .map_err(|e| ApiError::Internal(format!("decoding {}: {e}", kv.key)))?;
                    obj["kind"] = Value::String(kind.to_string());
                    objects.push(obj);
                }
                match (page.remaining, page.kvs.last()) {
                    (r, Some(last)) if r > 0 => {
                        opts = ListOptions {
                            start_after: Some(last.key.clone()),
                            revision: Some(page.revision),
                            ..Default::default()
                        };
                    }
                    _ => break,
                }
            }
        }
        let policy = Arc::new(Policy::from_objects(&objects));
        *self.authz.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
        Ok(revision)
    }

    /// Creates the default RBAC policy (if missing), loads it, and keeps the policy current
    /// from the watch cache's events on the RBAC objects.
    pub(crate) async fn start_rbac(&self) -> ApiResult<()> {
        let writer = crate::rest::WriteOpts {
            manager: "kube-apiserver".into(),
            ..Default::default()
        };
        for mut obj in crate::rbac::bootstrap_policy() {
            let kind = obj["kind"].as_str().unwrap_or_default().to_string();
            let Some(info) = self.registry().by_kind(RBAC_GROUP, &kind).cloned() else {
                continue;
            };
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let (_, existing) = self.store.get(&info.key(None, &name), None).await?;
            if existing.is_none() {
                match self.create_object(&info, None, &mut obj, &writer).await {
                    Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut revision = self.load_policy().await?;
        let prefixes: Vec<String> = RBAC_KINDS
            .iter()
            .filter_map(|(plural, _)| self.registry().lookup(RBAC_GROUP, "v1", plural).cloned())
            .map(|info| info.prefix(None))
            .collect();
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                // The server's one datastore watch, through the watch cache.
                let Ok(mut events) = api.watch_cache.watch("/registry/", revision).await else {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    revision = api.load_policy().await.unwrap_or(revision);
                    continue;
                };
                while let Some(batch) = events.next().await {
                    let Ok(batch) = batch else { break };
                    let touches_rbac = batch
                        .iter()
                        .any(|e| prefixes.iter().any(|p| e.key.starts_with(p)));
                    if let Some(last) = batch.last() {
                        revision = last.revision;
                    }
                    if touches_rbac {
                        revision = api.load_policy().await.unwrap_or(revision).max(revision);
                    }
                }
                revision = api.load_policy().await.unwrap_or(revision);
            }
        });
        Ok(())
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` (`kubectl auth can-i`): may
/// the caller do what `spec.resourceAttributes` or `spec.nonResourceAttributes` say?
pub(crate) async fn self_subject_access_review(
    axum::extract::State(api): axum::extract::State<ApiServer>,
    identity: Option<axum::Extension<Identity>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let identity = identity
        .map(|axum::Extension(i)| i)
        .unwrap_or_else(anonymous);
    // kubectl's typed client posts protobuf.
    let decoded = if body.starts_with(b"k8s\0") {
        crate::proto::decode(&body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    let mut review: Value = match decoded {
        Ok(v) => v,
        Err(e) => {
            return ApiError::BadRequest(format!("error decoding SelfSubjectAccessReview: {e}"))
                .into_response()
        }
    };
    let spec = &review["spec"];
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let attrs = match (
        spec.get("resourceAttributes"),
        spec.get("nonResourceAttributes"),
    ) {
        (Some(r), _) => Attributes {
            verb: s(r, "verb"),
            resource: Some(ResourceAttributes {
                group: s(r, "group"),
                resource: s(r, "resource"),
                subresource: s(r, "subresource"),
                namespace: s(r, "namespace"),
                name: s(r, "name"),
            }),
            path: String::new(),
        },
        (None, Some(n)) => Attributes {
            verb: s(n, "verb"),
            resource: None,
            path: s(n, "path"),
        },
        (None, None) => {
            return ApiError::BadRequest(
                "spec.resourceAttributes or spec.nonResourceAttributes is required".into(),
            )
            .into_response()
        }
    };
    let allowed = api.allowed(&identity, &attrs);
    review["apiVersion"] = "authorization.k8s.io/v1".into();
    review["kind"] = "SelfSubjectAccessReview".into();
    review["metadata"]["creationTimestamp"] = Value::Null;
    review["status"] = if allowed {
        serde_json::json!({"allowed": true, "reason": "RBAC: allowed"})
    } else {
        serde_json::json!({"allowed": false})
    };
    (axum::http::StatusCode::CREATED, axum::Json(review)).into_response()
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`).
pub(crate) async fn self_subject_review(
    identity: Option<axum::Extension<Identity>>,
    extras: Option<axum::Extension<crate::impersonation::UserExtras>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let identity = identity
        .map(|axum::Extension(i)| i)
        .unwrap_or_else(anonymous);
    let mut user_info = serde_json::json!({"username": identity.user});
    if let Some(axum::Extension(x)) = &extras {
        if !x.uid.is_empty() {
            user_info["uid"] = serde_json::json!(x.uid);
        }
    }
    user_info["groups"] = serde_json::json!(identity.groups);
    if let Some(axum::Extension(x)) = &extras {
        if !x.extra.is_empty() {
            user_info["extra"] = serde_json::json!(x.extra);
        }
    }
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": user_info},
    });
    (axum::http::StatusCode::CREATED, axum::Json(body)).into_response()
}

fn anonymous() -> Identity {
    Identity {
        user: "system:anonymous".into(),
        groups: vec!["system:unauthenticated".into()],
    }
}
