//! StorageObjectInUseProtection (`plugin/pkg/admission/storage/storageobjectinuseprotection`):
//! every new PersistentVolumeClaim gets the `kubernetes.io/pvc-protection` finalizer and every
//! new PersistentVolume `kubernetes.io/pv-protection`, so deleting one still in use (a claim
//! mounted by a pod, a volume bound to a claim) leaves it `Terminating` until
//! `barge-controllers`' protection controller removes the finalizer.

use serde_json::Value;

/// The finalizer on claims (kube's `volumeutil.PVCProtectionFinalizer`).
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The finalizer on volumes (kube's `volumeutil.PVProtectionFinalizer`).
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// Adds the protection finalizer to `obj` when it is a new core/v1 claim or volume
/// (`group`/`plural` of its resource) lacking it; anything else is left alone.
pub fn add_finalizer(group: &str, plural: &str, obj: &mut Value) {
    let finalizer = match (group, plural) {
        ("", "persistentvolumeclaims") => PVC_PROTECTION,
        ("", "persistentvolumes") => PV_PROTECTION,
        _ => return,
    };
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let list = meta
        .entry("finalizers")
        .or_insert_with(|| Value::Array(vec![]));
    if !list.is_array() {
        *list = Value::Array(vec![]);
    }
    let list = list.as_array_mut().expect("an array");
    if !list.iter().any(|f| f.as_str() == Some(finalizer)) {
        list.push(Value::String(finalizer.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_and_volumes_get_their_finalizer_once() {
        let mut pvc = json!({"metadata": {"name": "c"}});
        add_finalizer("", "persistentvolumeclaims", &mut pvc);
        add_finalizer("", "persistentvolumeclaims", &mut pvc);
        assert_eq!(pvc["metadata"]["finalizers"], json!([PVC_PROTECTION]));
        let mut pv = json!({"metadata": {"name": "v", "finalizers": ["x/y"]}});
        add_finalizer("", "persistentvolumes", &mut pv);
        assert_eq!(pv["metadata"]["finalizers"], json!(["x/y", PV_PROTECTION]));
        let mut pod = json!({"metadata": {"name": "p"}});
        add_finalizer("", "pods", &mut pod);
        assert_eq!(pod, json!({"metadata": {"name": "p"}}));
    }
}
