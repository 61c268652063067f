//! Namespace lifecycle: the namespaces that exist from the start, and the finalization of a
//! deleted namespace (kube's namespace controller, in-process): every namespaced object in
//! it is deleted, then the `kubernetes` finalizer is removed and the namespace goes.

use std::time::Duration;

use serde_json::json;

use crate::rest::object::{decode, encode, meta_str};
use crate::status::{ApiError, ApiResult};
use crate::ApiServer;

/// The namespaces kube-apiserver creates at start-up.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The writer of what the server creates itself.
fn system_writer() -> crate::rest::WriteOpts {
    crate::rest::WriteOpts {
        manager: "kube-apiserver".into(),
        ..Default::default()
    }
}

impl ApiServer {
    /// Creates the system namespaces if they are missing and resumes the finalization of
    /// namespaces left `Terminating` by a previous run. The transport calls it once before
    /// serving.
    pub async fn bootstrap(&self) -> ApiResult<()> {
        let info = self
            .registry()
            .lookup("", "v1", "namespaces")
            .cloned()
            .ok_or_else(|| ApiError::Internal("namespaces are not registered".into()))?;
        for ns in SYSTEM_NAMESPACES {
            let (_, existing) = self.store.get(&info.key(None, ns), None).await?;
            if existing.is_none() {
                let mut obj = json!({"metadata": {"name": ns}});
                match self
                    .create_object(&info, None, &mut obj, &system_writer())
                    .await
                {
                    Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.start_rbac().await?;
        self.start_crds().await?;
        let page = self
            .store
            .list(&info.prefix(None), Default::default())
            .await?;
        for kv in page.kvs {
            let obj = decode(&kv)?;
            if obj["status"]["phase"] == "Terminating" {
                if let Some(name) = meta_str(&obj, "name") {
                    self.spawn_namespace_cleanup(name.to_string());
                }
            }
        }
        Ok(())
    }

    /// Deletes the content of the terminating namespace `ns` in the background, then the
    /// namespace itself.
    pub(crate) fn spawn_namespace_cleanup(&self, ns: String) {
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                match api.finalize_namespace(&ns).await {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(namespace = %ns, error = %e, "namespace cleanup"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    /// One round of finalization; `true` once the namespace is gone (or finalized but kept by
    /// other finalizers).
    async fn finalize_namespace(&self, ns: &str) -> ApiResult<bool> {
        let mut left = 0;
        for info in self.registry().resources().iter().filter(|r| r.namespaced) {
            let page = self
                .store
                .list(&info.prefix(Some(ns)), Default::default())
                .await?;
            for kv in page.kvs {
                left += 1;
                let obj = decode(&kv)?;
                match self
                    .delete_object(info, &kv.key, obj, kv.mod_revision, &Default::default())
                    .await
                {
                    Ok(_) | Err(ApiError::NotFound(_) | ApiError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if left > 0 {
            // Deleted this round; the next round checks that nothing (finalizers) remains.
            return Ok(false);
        }
        let key = format!("/registry/namespaces/{ns}");
        let (_, kv) = self.store.get(&key, None).await?;
        let Some(kv) = kv else { return Ok(true) };
        let mut obj = decode(&kv)?;
        if let Some(f) = obj["spec"]["finalizers"].as_array_mut() {
            f.retain(|v| v != "kubernetes");
        }
        let others = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let result = if others {
            self.store
                .update(&key, encode(&obj), kv.mod_revision)
                .await
                .map(|_| ())
        } else {
            self.store
                .delete(&key, Some(kv.mod_revision))
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) => Ok(true),
            Err(barge_datastore::Error::Conflict { .. }) => Ok(false),
            Err(barge_datastore::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }
}
