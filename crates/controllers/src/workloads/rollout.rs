//! The pure arithmetic of Deployments (kube's `pkg/controller/deployment/util`): the
//! `pod-template-hash`, maxSurge/maxUnavailable resolution with kube's rounding, how far a new
//! ReplicaSet may grow, and the proportion of a scaling event each ReplicaSet gets.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label and selector key a Deployment adds to each of its ReplicaSets.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// `rand.SafeEncodeString`'s alphabet (no vowels, no confusable characters).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// kube's `rand.SafeEncodeString`: each byte mapped into [`ALPHANUMS`].
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// FNV-1a, 32 bits (Go's `hash/fnv.New32a`).
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The `pod-template-hash` of a template (kube's `controller.ComputeHash`): FNV-32a over the
/// template then, if set, the collision count as 8 little-endian bytes (the upper 4 zero, as
/// kube writes a `uint32` into an 8-byte buffer), the decimal sum encoded with
/// [`safe_encode`].
///
/// Kube feeds the hash with go-spew's `%#v` dump of its Go struct; barge feeds it with the
/// template's canonical JSON (keys sorted), so values differ from kube's for the same template
/// — stable across restarts and equal for equal templates, which is what the controller needs.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let v = serde_json::to_value(template).unwrap_or_default();
    let mut data = canonical(&v).into_bytes();
    if let Some(c) = collision_count {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(c as u32).to_le_bytes());
        data.extend_from_slice(&b);
    }
    safe_encode(&fnv32a(&data).to_string())
}

fn canonical(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        serde_json::Value::String(k.clone()),
                        canonical(&m[k])
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        serde_json::Value::Array(a) => {
            format!(
                "[{}]",
                a.iter().map(canonical).collect::<Vec<_>>().join(",")
            )
        }
        other => other.to_string(),
    }
}

/// kube's `intstr.GetScaledValueFromIntOrPercent`: an int as is, `"N%"` of `total` rounded up
/// or down. `None` for a malformed value.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Option<i32> {
    match v {
        IntOrString::Int(i) => Some(*i),
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            let x = pct as f64 * f64::from(total) / 100.0;
            Some(if round_up { x.ceil() } else { x.floor() } as i32)
        }
    }
}

/// kube's `ResolveFenceposts`: (maxSurge, maxUnavailable) for `desired` replicas; both zero
/// turns into maxUnavailable 1.
pub fn resolve_fenceposts(
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let pct = IntOrString::String("25%".into());
    let s = scaled_value(surge.unwrap_or(&pct), desired, true).unwrap_or(0);
    let u = scaled_value(unavailable.unwrap_or(&pct), desired, false).unwrap_or(0);
    if s == 0 && u == 0 {
        (0, 1)
    } else {
        (s, u)
    }
}

/// `spec.replicas` (1 when unset).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// True for the RollingUpdate strategy (the default).
pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
}

/// kube's `MaxSurge` (0 unless RollingUpdate).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

/// kube's `MaxUnavailable` (0 unless RollingUpdate or with no replicas; at most `replicas`).
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// kube's `NewRSNewReplicas`: the size the new ReplicaSet may grow to now, given the sum of
/// every ReplicaSet's `spec.replicas` and the new one's.
pub fn new_rs_new_replicas(d: &Deployment, all_spec_replicas: i32, new_rs_replicas: i32) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let max_total = replicas(d) + max_surge(d);
    if all_spec_replicas >= max_total {
        return new_rs_replicas;
    }
    let up = (max_total - all_spec_replicas).min(replicas(d) - new_rs_replicas);
    new_rs_replicas + up
}

/// kube's `getReplicaSetFraction`: how much of a scaling event a ReplicaSet of `rs_replicas`
/// gets, from its `max-replicas` annotation (else the Deployment's status.replicas).
pub fn replica_set_fraction(d: &Deployment, rs_replicas: i32, annotated_max: Option<i32>) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas;
    }
    let deployment_replicas = replicas(d) + max_surge(d);
    let annotated = annotated_max.unwrap_or_else(|| {
        d.status
            .as_ref()
            .map(|s| s.replicas.unwrap_or(0))
            .unwrap_or(0)
    });
    if annotated == 0 {
        return 0;
    }
    let new_size = f64::from(rs_replicas) * f64::from(deployment_replicas) / f64::from(annotated);
    new_size.round() as i32 - rs_replicas
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

    fn dep(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fnv_and_safe_encoding_match_go() {
        // Go: fnv.New32a() over "" = 0x811c9dc5, over "a" = 0xe40c292c.
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        // rand.SafeEncodeString("0123456789"): '0' is 48, 48 % 27 = 21 -> '4', …
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        let t = PodTemplateSpec::default();
        assert_eq!(compute_hash(&t, None), compute_hash(&t, None));
        assert_ne!(compute_hash(&t, None), compute_hash(&t, Some(1)));
        assert!(compute_hash(&t, None).len() >= 8);
    }

    #[test]
    fn percentages_round_as_kube() {
        let p = |s: &str| IntOrString::String(s.into());
        // 25% of 3: surge rounds up to 1, unavailable down to 0.
        assert_eq!(
            resolve_fenceposts(Some(&p("25%")), Some(&p("25%")), 3),
            (1, 0)
        );
        // 25% of 10: 3 and 2.
        assert_eq!(
            resolve_fenceposts(Some(&p("25%")), Some(&p("25%")), 10),
            (3, 2)
        );
        // Both zero: maxUnavailable becomes 1.
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&p("0%")), 5),
            (0, 1)
        );
        assert_eq!(scaled_value(&p("x"), 10, true), None);
        let d = dep(3, IntOrString::Int(0), IntOrString::Int(5));
        assert_eq!(max_unavailable(&d), 3);
        assert_eq!(max_surge(&d), 0);
    }

    #[test]
    fn new_replica_set_growth() {
        let d = dep(3, IntOrString::Int(1), IntOrString::Int(0));
        // 3 old + 0 new: may add 1 (surge).
        assert_eq!(new_rs_new_replicas(&d, 3, 0), 1);
        // Already at 4 total: no growth.
        assert_eq!(new_rs_new_replicas(&d, 4, 1), 1);
        // Never beyond replicas.
        assert_eq!(new_rs_new_replicas(&d, 3, 3), 3);
        let d = dep(10, IntOrString::Int(5), IntOrString::Int(0));
        assert_eq!(new_rs_new_replicas(&d, 10, 0), 5);
    }

    #[test]
    fn proportions() {
        let d = dep(20, IntOrString::Int(0), IntOrString::Int(1));
        // An RS of 5 annotated with max 10: doubling to 20 gives it +5.
        assert_eq!(replica_set_fraction(&d, 5, Some(10)), 5);
        let d0 = dep(0, IntOrString::Int(0), IntOrString::Int(1));
        assert_eq!(replica_set_fraction(&d0, 4, Some(10)), -4);
    }
}
