//! Admission: what kube-apiserver's admission plugins do to a create after defaulting and
//! before it is stored (`k8s.io/kubernetes/plugin/pkg/admission/…`), in kube's order —
//! mutating first (ServiceAccount, LimitRanger defaults), validating after (LimitRanger
//! constraints, ResourceQuota). Namespace lifecycle is `rest/create.rs`'s
//! `check_namespace_open`.
//!
//! - [`serviceaccount`]: a pod's `serviceAccountName` (default `default`) must exist; its
//!   token is projected into every container (`kube-api-access-…`).
//! - [`limitrange`]: `default`/`defaultRequest` into containers, then `min`/`max`/
//!   `maxLimitRequestRatio` per Container and per Pod.
//! - [`tolerations`]: DefaultTolerationSeconds (300 s for the not-ready/unreachable
//!   `NoExecute` taints).
//! - [`ingressclass`]: DefaultIngressClass (an Ingress without a class gets the default one).
//! - [`storageprotection`]: StorageObjectInUseProtection (the `kubernetes.io/pvc-protection`
//!   and `kubernetes.io/pv-protection` finalizers on new claims and volumes).
//! - [`quota`]: object counts and compute usage against every ResourceQuota of the
//!   namespace.
//!
//! Every refusal is kube's 403 `<resource> "name" is forbidden: <why>`
//! (`admission.NewForbidden`).

pub mod ingressclass;
pub mod limitrange;
pub mod quantity;
pub mod quota;
pub(crate) mod serviceaccount;
pub mod storageprotection;
pub mod tolerations;

use barge_datastore::ListOptions;
use serde_json::Value;

use crate::registry::ResourceInfo;
use crate::status::{ApiError, ApiResult, Target};
use crate::ApiServer;

/// kube's `admission.NewForbidden(a, err)` for the object being admitted.
pub(crate) fn forbidden(info: &ResourceInfo, name: &str, why: impl Into<String>) -> ApiError {
    ApiError::Forbidden {
        target: Target::resource(info, name),
        why: why.into(),
        causes: vec![],
    }
}

impl ApiServer {
    /// Runs the admission chain on `obj`, a new `info` in `namespace` (already defaulted,
    /// its namespace open). Mutates `obj`; an error refuses the create.
    pub(crate) async fn admit_create(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<()> {
        storageprotection::add_finalizer(info.group, info.plural, obj);
        let Some(ns) = namespace.filter(|_| info.namespaced) else {
            return Ok(());
        };
        if (info.group, info.plural) == ("", "pods") {
            limitrange::requests_from_limits(&mut obj["spec"]);
            self.admit_service_account(info, ns, obj).await?;
            self.admit_limit_ranges(info, ns, obj).await?;
            tolerations::add_default_toleration_seconds(
                &mut obj["spec"],
                self.config.default_toleration_seconds,
            );
        }
        if (info.group, info.plural) == ("", "persistentvolumeclaims") {
            self.admit_claim_limit_ranges(info, ns, obj).await?;
        }
        if (info.group, info.plural) == ("networking.k8s.io", "ingresses") {
            if let Some(classes) =
                self.registry()
                    .lookup("networking.k8s.io", "v1", "ingressclasses")
            {
                let classes = classes.clone();
                self.admit_ingress_class(&classes, obj).await?;
            }
        }
        self.admit_quota(info, ns, obj).await
    }

    /// Every stored object under `prefix`, decoded.
    pub(crate) async fn stored_objects(&self, prefix: &str) -> ApiResult<Vec<Value>> {
        let mut out = Vec::new();
        let mut opts = ListOptions::default();
        loop {
            let page = self.store.list(prefix, opts.clone()).await?;
            for kv in &page.kvs {
                out.push(crate::rest::object::decode(kv)?);
            }
            match (page.remaining, page.kvs.last()) {
                (r, Some(last)) if r > 0 => {
                    opts = ListOptions {
                        start_after: Some(last.key.clone()),
                        revision: Some(page.revision),
                        ..Default::default()
                    };
                }
                _ => return Ok(out),
            }
        }
    }
}
