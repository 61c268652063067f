//! DefaultIngressClass (kube's `plugin/pkg/admission/network/defaultingressclass`): an Ingress
//! created without `spec.ingressClassName` (and without the legacy `kubernetes.io/ingress.class`
//! annotation) gets the IngressClass annotated `ingressclass.kubernetes.io/is-default-class:
//! "true"` — the newest one when several are marked, as kube does since 1.28.

use serde_json::{json, Value};

use crate::registry::ResourceInfo;
use crate::status::ApiResult;
use crate::ApiServer;

/// The annotation that marks the default IngressClass.
pub const IS_DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
/// The annotation Ingresses named their class with before `spec.ingressClassName`.
pub const LEGACY_CLASS: &str = "kubernetes.io/ingress.class";

/// The name of the default class among `classes` (IngressClass objects): the newest of those
/// marked default, ties broken by name.
pub fn default_class(classes: &[Value]) -> Option<String> {
    classes
        .iter()
        .filter(|c| c["metadata"]["annotations"][IS_DEFAULT_CLASS].as_str() == Some("true"))
        .max_by(|a, b| {
            let key = |c: &Value| {
                (
                    c["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    c["metadata"]["name"].as_str().unwrap_or("").to_string(),
                )
            };
            key(a).cmp(&key(b))
        })
        .and_then(|c| c["metadata"]["name"].as_str().map(String::from))
}

impl ApiServer {
    /// Sets `spec.ingressClassName` of a new Ingress `obj` to the default class, if it names
    /// none.
    pub(crate) async fn admit_ingress_class(
        &self,
        classes: &ResourceInfo,
        obj: &mut Value,
    ) -> ApiResult<()> {
        let named = obj["spec"]["ingressClassName"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
            || obj["metadata"]["annotations"][LEGACY_CLASS]
                .as_str()
                .is_some_and(|c| !c.is_empty());
        if named {
            return Ok(());
        }
        let all = self.stored_objects(&classes.prefix(None)).await?;
        if let Some(name) = default_class(&all) {
            if !obj["spec"].is_object() {
                obj["spec"] = json!({});
            }
            obj["spec"]["ingressClassName"] = json!(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_marked_class_is_the_default() {
        let class = |name: &str, at: &str, default: bool| {
            let mut c = json!({"metadata": {"name": name, "creationTimestamp": at}});
            if default {
                c["metadata"]["annotations"] = json!({IS_DEFAULT_CLASS: "true"});
            }
            c
        };
        assert_eq!(
            default_class(&[class("a", "2026-01-01T00:00:00Z", false)]),
            None
        );
        let classes = [
            class("old", "2026-01-01T00:00:00Z", true),
            class("new", "2026-02-01T00:00:00Z", true),
            class("plain", "2026-03-01T00:00:00Z", false),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("new"));
    }
}
