//! `pods/eviction` (policy/v1 Eviction): a pod delete that honours PodDisruptionBudgets, as
//! kube-apiserver's `EvictionREST` (`pkg/registry/core/pod/storage/eviction.go`) does it.
//!
//! A pod that is pending, finished or already being deleted goes at once. Otherwise the one
//! budget whose selector matches it (more than one: kube's 500) must allow a disruption: its
//! status must be processed (`observedGeneration` ≥ `generation`, else 429 "is still being
//! processed") and `disruptionsAllowed` > 0 (else 429 "Cannot evict pod as it would violate
//! the pod's disruption budget." with a `DisruptionBudget` cause); the eviction then takes one
//! (`disruptionsAllowed` − 1, the pod in `disruptedPods`, the `DisruptionAllowed` condition
//! False at 0) in a conditional write of the budget's status before the pod is deleted. An
//! unready pod is deleted without taking a disruption when the budget is healthy
//! (`currentHealthy` ≥ `desiredHealthy` > 0) or `unhealthyPodEvictionPolicy: AlwaysAllow`.
//! Success is a `Status` Success, 201.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::delete::DeleteOptions;
use super::object::{decode, encode, meta_str, now};
use super::{json_response, ListParams, Req};
use crate::request::{decode_object, media_type};
use crate::selectors::LabelSelector;
use crate::status::{ApiError, ApiResult, Cause, Target};
use crate::ApiServer;

/// kube's message for an eviction a budget refuses.
pub(crate) const VIOLATES: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

fn too_many_requests(cause: String) -> ApiError {
    ApiError::TooManyRequests {
        message: VIOLATES.into(),
        causes: vec![Cause {
            reason: "DisruptionBudget".into(),
            message: cause,
            field: String::new(),
        }],
    }
}

/// kube's `canIgnorePDB`: pending, finished or terminating pods are not guarded.
fn can_ignore_pdb(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed" | "Pending")
    ) || pod["metadata"].get("deletionTimestamp").is_some()
}

/// podutil.IsPodReady: the `Ready` condition is True.
pub(crate) fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Whether a budget's `spec.selector` selects `labels`: a missing selector selects nothing,
/// an empty one everything (policy/v1, unlike v1beta1).
pub(crate) fn selects(selector: &Value, labels: Option<&Value>) -> bool {
    if !selector.is_object() {
        return false;
    }
    let s = super::scale::selector_string(selector);
    LabelSelector::parse(&s).is_ok_and(|sel| sel.matches(labels))
}

impl ApiServer {
    pub(crate) async fn evict(&self, req: &Req) -> ApiResult<Response> {
        let eviction = decode_object(&media_type(&req.headers), &req.body)?;
        let api_version = eviction["apiVersion"].as_str().unwrap_or("");
        let kind = eviction["kind"].as_str().unwrap_or("");
        if !(api_version.is_empty() || api_version.starts_with("policy/"))
            || !(kind.is_empty() || kind == "Eviction")
        {
            return Err(ApiError::BadRequest(format!(
                "{kind} in version {:?} cannot be handled as a Eviction: no kind \"{kind}\" is registered for version \"{api_version}\" in scheme",
                api_version.rsplit('/').next().unwrap_or("")
            )));
        }
        if meta_str(&eviction, "name").unwrap_or("") != req.name() {
            return Err(ApiError::BadRequest(
                "name in URL does not match name in Eviction object".into(),
            ));
        }
        let mut opts = DeleteOptions::from_body(&eviction["deleteOptions"])?;
        opts.dry_run |= req.query.dry_run()?;
        let success = || {
            json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Success", "code": 201}),
            )
        };
        for _ in 0..5 {
            let (pod, rev) = self.get_current(req, None).await?;
            if can_ignore_pdb(&pod) {
                match self
                    .delete_object(&req.info, &req.key(), pod, rev, &opts)
                    .await
                {
                    Err(ApiError::Conflict { .. }) => continue,
                    Err(e) => return Err(e),
                    Ok(_) => return Ok(success()),
                }
            }
            let ns = req.namespace().unwrap_or("");
            let pdb_info = self
                .registry()
                .lookup("policy", "v1", "poddisruptionbudgets")
                .cloned()
                .ok_or_else(|| ApiError::Internal("no poddisruptionbudgets resource".into()))?;
            let labels = pod["metadata"].get("labels");
            let pdbs: Vec<Value> = self
                .list_objects(&pdb_info, Some(ns), &ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|p| selects(&p["spec"]["selector"], labels))
                .collect();
            if pdbs.len() > 1 {
                return Err(ApiError::Unknown(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                ));
            }
            if let Some(pdb) = pdbs.into_iter().next() {
                let status = &pdb["status"];
                let int = |k: &str| status[k].as_i64().unwrap_or(0);
                let unhealthy_ok = !is_ready(&pod)
                    && (pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
                        || (int("currentHealthy") >= int("desiredHealthy")
                            && int("desiredHealthy") > 0));
                if unhealthy_ok {
                    // Deleted only if it has not become ready since (the revision read).
                    opts.precondition_rv = Some(rev.to_string());
                } else {
                    self.take_disruption(&pdb_info, ns, pdb, req.name(), opts.dry_run)
                        .await?;
                }
            }
            return match self
                .delete_object(&req.info, &req.key(), pod, rev, &opts)
                .await
            {
                Ok(_) => Ok(success()),
                Err(e) => Err(e),
            };
        }
        Err(ApiError::Conflict {
            target: req.target(),
            why: super::update::MODIFIED.into(),
        })
    }

    /// kube's `checkAndDecrement`, retried on conflicts with the budget re-read.
    async fn take_disruption(
        &self,
        pdb_info: &crate::registry::ResourceInfo,
        ns: &str,
        mut pdb: Value,
        pod: &str,
        dry_run: bool,
    ) -> ApiResult<()> {
        for _ in 0..5 {
            let name = meta_str(&pdb, "name").unwrap_or("").to_string();
            let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
            let status = pdb["status"].clone();
            let int = |k: &str| status[k].as_i64().unwrap_or(0);
            if int("observedGeneration") < generation {
                return Err(ApiError::TooManyRequests {
                    message: VIOLATES.into(),
                    causes: vec![Cause {
                        reason: "DisruptionBudget".into(),
                        message: format!(
                            "The disruption budget {name} is still being processed by the server."
                        ),
                        field: String::new(),
                    }],
                });
            }
            let allowed = int("disruptionsAllowed");
            if allowed < 0 {
                return Err(ApiError::Forbidden {
                    target: Target {
                        name: name.clone(),
                        group: "policy".into(),
                        kind: "poddisruptionbudget".into(),
                        qualified: "poddisruptionbudget.policy".into(),
                    },
                    why: "pdb disruptions allowed is negative".into(),
                    causes: Vec::new(),
                });
            }
            if status["disruptedPods"]
                .as_object()
                .is_some_and(|m| m.len() > 2000)
            {
                return Err(ApiError::Forbidden {
                    target: Target {
                        name: name.clone(),
                        group: "policy".into(),
                        kind: "poddisruptionbudget".into(),
                        qualified: "poddisruptionbudget.policy".into(),
                    },
                    why: "DisruptedPods map too big - too many evictions not confirmed by PDB controller".into(),
                    causes: Vec::new(),
                });
            }
            if allowed == 0 {
                return Err(too_many_requests(format!(
                    "The disruption budget {name} needs {} healthy pods and has {} currently",
                    int("desiredHealthy"),
                    int("currentHealthy")
                )));
            }
            if dry_run {
                return Ok(());
            }
            pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
            if allowed - 1 == 0 {
                set_disruption_condition(&mut pdb, false, "InsufficientPods", "");
            }
            if !pdb["status"]["disruptedPods"].is_object() {
                pdb["status"]["disruptedPods"] = json!({});
            }
            pdb["status"]["disruptedPods"][pod] = json!(now());
            let rev: i64 = meta_str(&pdb, "resourceVersion")
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let key = pdb_info.key(Some(ns), &name);
            match self.store.update(&key, encode(&pdb), rev).await {
                Ok(_) => return Ok(()),
                Err(barge_datastore::Error::Conflict { .. }) => {
                    let (_, kv) = self.store.get(&key, None).await?;
                    let kv =
                        kv.ok_or_else(|| ApiError::NotFound(Target::resource(pdb_info, &name)))?;
                    pdb = decode(&kv)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::Conflict {
            target: Target::resource(pdb_info, meta_str(&pdb, "name").unwrap_or("")),
            why: super::update::MODIFIED.into(),
        })
    }
}

/// pdbhelper.UpdateDisruptionAllowedCondition: the `DisruptionAllowed` condition, its
/// transition time kept while the status does not change.
fn set_disruption_condition(pdb: &mut Value, allowed: bool, reason: &str, message: &str) {
    let observed = pdb["status"]["observedGeneration"].clone();
    let status = if allowed { "True" } else { "False" };
    let conds = pdb["status"]
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    let Some(Value::Array(conds)) = conds else {
        return;
    };
    let cond = json!({"type": "DisruptionAllowed", "status": status, "reason": reason,
        "message": message, "observedGeneration": observed, "lastTransitionTime": now()});
    match conds.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
        Some(c) if c["status"] == status => {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
            c["observedGeneration"] = observed;
        }
        Some(c) => *c = cond,
        None => conds.push(cond),
    }
}
