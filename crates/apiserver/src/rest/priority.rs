//! kube's `Priority` admission plugin for pods
//! (kubernetes/kubernetes `plugin/pkg/admission/priority/admission.go`): on create, the pod's
//! `spec.priority` (and `preemptionPolicy`) come from its PriorityClass — the named one, or the
//! `globalDefault` one (then `priorityClassName` is set to it), or 0 when there is none. A
//! missing class, or a `priority`/`preemptionPolicy` in the body that differs from the class's,
//! is kube's 403.

use serde_json::{json, Value};

use super::object::{decode, meta_str};
use crate::status::{ApiError, ApiResult, Target};
use crate::ApiServer;

/// The PriorityClasses' key prefix (kube's `/registry/priorityclasses/`).
const PREFIX: &str = "/registry/priorityclasses/";

/// kube's `DefaultPriorityWhenNoDefaultClassExists`.
const NO_DEFAULT_PRIORITY: i64 = 0;

impl ApiServer {
    /// Resolves a pod's priority before it is stored.
    pub(crate) async fn admit_priority(&self, pod: &mut Value) -> ApiResult<()> {
        let name = meta_str(pod, "name").unwrap_or("").to_string();
        let forbidden = |why: String| ApiError::Forbidden {
            target: Target {
                name: name.clone(),
                group: String::new(),
                kind: "pods".into(),
                qualified: "pods".into(),
            },
            why,
            causes: Vec::new(),
        };
        let class_name = pod["spec"]["priorityClassName"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let (priority, policy, class_name) = if class_name.is_empty() {
            let page = self
                .store
                .list(PREFIX, barge_datastore::ListOptions::default())
                .await?;
            // The default class with the lowest value, as kube's getDefaultPriorityClass.
            let default = page
                .kvs
                .iter()
                .filter_map(|kv| decode(kv).ok())
                .filter(|pc| pc["globalDefault"] == json!(true))
                .min_by_key(|pc| pc["value"].as_i64().unwrap_or(0));
            match default {
                Some(pc) => (
                    pc["value"].as_i64().unwrap_or(0),
                    pc.get("preemptionPolicy").cloned(),
                    meta_str(&pc, "name").unwrap_or("").to_string(),
                ),
                None => (NO_DEFAULT_PRIORITY, None, String::new()),
            }
        } else {
            let (_, kv) = self
                .store
                .get(&format!("{PREFIX}{class_name}"), None)
                .await?;
            let Some(kv) = kv else {
                return Err(forbidden(format!(
                    "no PriorityClass with name {class_name} was found"
                )));
            };
            let pc = decode(&kv)?;
            (
                pc["value"].as_i64().unwrap_or(0),
                pc.get("preemptionPolicy").cloned(),
                class_name,
            )
        };
        if !pod["spec"].is_object() {
            return Ok(());
        }
        if let Some(given) = pod["spec"]["priority"].as_i64() {
            if given != priority {
                return Err(forbidden(format!(
                    "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
                )));
            }
        }
        let spec = &mut pod["spec"];
        if !class_name.is_empty() {
            spec["priorityClassName"] = json!(class_name);
        }
        spec["priority"] = json!(priority);
        if let Some(policy) = policy.filter(|p| p.is_string()) {
            if let Some(given) = spec["preemptionPolicy"].as_str() {
                if Some(given) != policy.as_str() {
                    return Err(forbidden(format!(
                        "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
                        policy.as_str().unwrap_or("")
                    )));
                }
            }
            spec["preemptionPolicy"] = policy;
        }
        Ok(())
    }
}
