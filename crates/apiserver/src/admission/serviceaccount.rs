//! The ServiceAccount admission plugin (`plugin/pkg/admission/serviceaccount/admission.go`),
//! on pod create:
//! - an empty `spec.serviceAccountName` becomes `default` (and the deprecated
//!   `spec.serviceAccount` mirrors it, as kube's v1 conversion does);
//! - the ServiceAccount must exist, else 403 `error looking up service account NS/NAME:
//!   serviceaccount "NAME" not found` (`default` is looked up 10 times 100–200 ms apart: the
//!   ServiceAccount controller may be creating it for a new namespace);
//! - unless `automountServiceAccountToken` is false (the pod's, else the ServiceAccount's),
//!   a projected volume `kube-api-access-<5>` (bound token, `kube-root-ca.crt`'s `ca.crt`,
//!   the namespace) is added and mounted read-only at
//!   `/var/run/secrets/kubernetes.io/serviceaccount` in every init container and container
//!   that has nothing mounted there;
//! - a pod without `imagePullSecrets` gets its ServiceAccount's.
//!
//! Mirror pods (`kubernetes.io/config.mirror`) are left alone.

use std::time::Duration;

use serde_json::{json, Value};

use super::forbidden;
use crate::registry::ResourceInfo;
use crate::rest::object::{decode, meta_str, name_suffix};
use crate::status::ApiResult;
use crate::ApiServer;

/// The ServiceAccount a pod without one runs as.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Where the token volume is mounted (`DefaultAPITokenMountPath`).
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The token volume's name prefix (`ServiceAccountVolumeName`).
pub const VOLUME_PREFIX: &str = "kube-api-access-";
/// The ConfigMap the cluster CA is published in (the root-ca-cert-publisher's).
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// `serviceaccount.WarnOnlyBoundTokenExpirationSeconds`: an hour and 7 s, so that tokens
/// older than an hour are recognisable in audit logs.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// kube's `TokenVolumeSource()`, defaults included (`defaultMode: 420`).
pub fn token_volume_source() -> Value {
    json!({
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
            {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]
    })
}

impl ApiServer {
    /// The ServiceAccount admission of a new pod `obj` in `ns`.
    pub(crate) async fn admit_service_account(
        &self,
        info: &ResourceInfo,
        ns: &str,
        obj: &mut Value,
    ) -> ApiResult<()> {
        if obj["metadata"]["annotations"]
            .get(MIRROR_ANNOTATION)
            .is_some()
        {
            return Ok(());
        }
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        if !obj["spec"].is_object() {
            return Ok(());
        }
        let spec = &mut obj["spec"];
        let sa_name = spec["serviceAccountName"]
            .as_str()
            .filter(|s| !s.is_empty())
            .or_else(|| spec["serviceAccount"].as_str().filter(|s| !s.is_empty()))
            .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
            .to_string();
        spec["serviceAccountName"] = json!(sa_name);
        spec["serviceAccount"] = json!(sa_name);
        let sa = match self.lookup_service_account(ns, &sa_name).await? {
            Some(sa) => sa,
            None if self.service_account_lookup => {
                return Err(forbidden(
                    info,
                    &name,
                    format!(
                        "error looking up service account {ns}/{sa_name}: serviceaccount {sa_name:?} not found"
                    ),
                ))
            }
            // Without the lookup (tests without controllers), an absent ServiceAccount is
            // taken as one with no settings.
            None => json!({}),
        };
        let automount = spec["automountServiceAccountToken"]
            .as_bool()
            .or_else(|| sa["automountServiceAccountToken"].as_bool())
            .unwrap_or(true);
        if automount {
            mount_token(spec);
        }
        let pull = &spec["imagePullSecrets"];
        if pull.as_array().is_none_or(|a| a.is_empty()) {
            if let Some(secrets) = sa["imagePullSecrets"].as_array().filter(|a| !a.is_empty()) {
                spec["imagePullSecrets"] = Value::Array(secrets.clone());
            }
        }
        Ok(())
    }

    /// The ServiceAccount `ns/name`, looked up again for a while if it is `default`.
    async fn lookup_service_account(&self, ns: &str, name: &str) -> ApiResult<Option<Value>> {
        let key = format!("/registry/serviceaccounts/{ns}/{name}");
        let attempts = if name == DEFAULT_SERVICE_ACCOUNT && self.service_account_lookup {
            10
        } else {
            1
        };
        let mut b = [0u8; 1];
        let _ = getrandom::fill(&mut b);
        let interval = Duration::from_millis(100 + u64::from(b[0]) % 100);
        for i in 0..attempts {
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            if let (_, Some(kv)) = self.store.get(&key, None).await? {
                return Ok(Some(decode(&kv)?));
            }
        }
        Ok(None)
    }
}

/// kube's `mountServiceAccountToken`: reuse a `kube-api-access-*` volume if the pod has one,
/// else name a new one; mount it in every (init) container without a mount at the token
/// path; add the volume if a container needed it.
fn mount_token(spec: &mut Value) {
    let existing = spec["volumes"].as_array().and_then(|vols| {
        vols.iter()
            .filter_map(|v| v["name"].as_str())
            .find(|n| n.starts_with(VOLUME_PREFIX))
            .map(str::to_string)
    });
    let has_volume = existing.is_some();
    let volume = existing.unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", name_suffix()));
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers {
            let mounted = c["volumeMounts"].as_array().is_some_and(|ms| {
                ms.iter()
                    .any(|m| m["mountPath"].as_str() == Some(TOKEN_MOUNT_PATH))
            });
            if mounted {
                continue;
            }
            if !c["volumeMounts"].is_array() {
                c["volumeMounts"] = json!([]);
            }
            if let Some(ms) = c["volumeMounts"].as_array_mut() {
                ms.push(json!({"name": volume, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}));
            }
            needed = true;
        }
    }
    if needed && !has_volume {
        if !spec["volumes"].is_array() {
            spec["volumes"] = json!([]);
        }
        if let Some(vols) = spec["volumes"].as_array_mut() {
            vols.push(json!({"name": volume, "projected": token_volume_source()}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_mounted_once_per_container() {
        let mut spec = json!({
            "initContainers": [{"name": "i"}],
            "containers": [
                {"name": "a"},
                {"name": "b", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}
            ]
        });
        mount_token(&mut spec);
        let vol = spec["volumes"][0]["name"].as_str().unwrap().to_string();
        assert!(vol.starts_with(VOLUME_PREFIX) && vol.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(spec["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            spec["initContainers"][0]["volumeMounts"][0]["name"],
            json!(vol)
        );
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["readOnly"], true);
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // Again (an existing volume is reused).
        mount_token(&mut spec);
        assert_eq!(spec["volumes"].as_array().unwrap().len(), 1);
    }
}
