//! Resource amounts as the scheduler counts them: quantities parsed to integers (cpu in
//! millicores, the rest in units, both rounded up as `resource.Quantity`'s `MilliValue`/`Value`),
//! a pod's effective request (kube's `resourcehelper.PodRequests`: containers summed, sidecars
//! added, the max with each init container, plus overhead) and its "non-zero" request for
//! scoring (100m cpu and 200 MiB memory for a container asking for none).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// kube's `DefaultMilliCPURequest`: the cpu a container without a request counts as when scoring.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// kube's `DefaultMemoryRequest`: 200 MiB.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Parses a Kubernetes quantity (`100m`, `1.5`, `2Gi`, `1e3`, `500Ki`) to its value × `scale`,
/// rounded up (`scale` = 1000 gives millis). `None` if it does not parse.
pub fn parse_scaled(q: &str, scale: i128) -> Option<i64> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let (sign, q) = match q.as_bytes()[0] {
        b'-' => (-1i128, &q[1..]),
        b'+' => (1, &q[1..]),
        _ => (1, q),
    };
    let num_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(num_end);
    if num.is_empty() || num == "." {
        return None;
    }
    let (int_part, frac_part) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    // value = digits / 10^frac_len × multiplier
    let digits: String = format!("{int_part}{frac_part}");
    let mut mantissa: i128 = digits.parse().ok()?;
    let mut den_pow10: u32 = frac_part.len() as u32;
    let (mul_num, mut exp10): (i128, i32) = match suffix {
        "" => (1, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        s if s.starts_with(['e', 'E']) => (1, s[1..].parse().ok()?),
        _ => return None,
    };
    mantissa = mantissa.checked_mul(mul_num)?.checked_mul(scale)?;
    exp10 -= den_pow10 as i32;
    if exp10 >= 0 {
        mantissa = mantissa.checked_mul(10i128.checked_pow(exp10 as u32)?)?;
    } else {
        den_pow10 = (-exp10) as u32;
        let den = 10i128.checked_pow(den_pow10)?;
        mantissa = (mantissa + den - 1) / den; // round up, as MilliValue/Value
    }
    i64::try_from(sign * mantissa).ok()
}

/// A quantity in millis (cpu).
pub fn milli(q: &Quantity) -> i64 {
    parse_scaled(&q.0, 1000).unwrap_or(0)
}

/// A quantity in units (memory, storage, pods, extended resources).
pub fn value(q: &Quantity) -> i64 {
    parse_scaled(&q.0, 1).unwrap_or(0)
}

/// Resource amounts: kube's `framework.Resource`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    /// cpu, millicores.
    pub milli_cpu: i64,
    /// memory, bytes.
    pub memory: i64,
    /// ephemeral-storage, bytes.
    pub ephemeral_storage: i64,
    /// Pods the node allows (allocatable only).
    pub allowed_pods: i64,
    /// Extended and hugepages resources, in units, by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// Amounts from a resource list (requests, allocatable, overhead).
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Self {
        let mut r = Resource::default();
        for (name, q) in list.into_iter().flatten() {
            match name.as_str() {
                "cpu" => r.milli_cpu = milli(q),
                "memory" => r.memory = value(q),
                "ephemeral-storage" => r.ephemeral_storage = value(q),
                "pods" => r.allowed_pods = value(q),
                n if is_scalar(n) => {
                    r.scalar.insert(n.to_string(), value(q));
                }
                _ => {}
            }
        }
        r
    }

    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Resource) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts `o` from `self`.
    pub fn sub(&mut self, o: &Resource) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each amount the max of `self`'s and `o`'s.
    pub fn max_with(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// Nothing requested at all.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// Extended resources (`example.com/gpu`), hugepages and attachable volumes: kube's
/// `IsScalarResourceName`.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

fn container_requests(c: &Container, non_zero: bool) -> Resource {
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = Resource::from_list(requests);
    r.allowed_pods = 0;
    if non_zero {
        let has = |n: &str| requests.is_some_and(|m| m.contains_key(n));
        if !has("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// A pod's effective request (kube's `resourcehelper.PodRequests`): the containers' requests
/// summed, restartable init containers (sidecars) added to them, each regular init container
/// taken with the sidecars started before it, the max of both, plus `spec.overhead`. With
/// `non_zero`, a container without a cpu or memory request counts 100m / 200 MiB (scoring).
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        let each = if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            sidecars.add(&r);
            sidecars.clone()
        } else {
            let mut t = r;
            t.add(&sidecars);
            t
        };
        init_max.max_with(&each);
    }
    reqs.max_with(&init_max);
    if let Some(o) = &spec.overhead {
        let mut o = Resource::from_list(Some(o));
        o.allowed_pods = 0;
        reqs.add(&o);
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_round_up_as_kube() {
        let m = |s: &str| parse_scaled(s, 1000);
        let v = |s: &str| parse_scaled(s, 1);
        assert_eq!(m("100m"), Some(100));
        assert_eq!(m("1"), Some(1000));
        assert_eq!(m("1.5"), Some(1500));
        assert_eq!(m("0.0001"), Some(1)); // MilliValue rounds up
        assert_eq!(m("2k"), Some(2_000_000));
        assert_eq!(v("1Gi"), Some(1 << 30));
        assert_eq!(v("1.5Gi"), Some(3 << 29));
        assert_eq!(v("128974848"), Some(128_974_848));
        assert_eq!(v("129e6"), Some(129_000_000));
        assert_eq!(v("123Mi"), Some(123 << 20));
        assert_eq!(v("1M"), Some(1_000_000));
        assert_eq!(v("500m"), Some(1)); // Value rounds up
        assert_eq!(v("x"), None);
        assert_eq!(v("1Zi"), None);
    }

    #[test]
    fn pod_requests_take_init_containers_max_sidecars_and_overhead() {
        let pod: Pod = serde_json::from_value(json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m"}}}
            ],
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "500m", "memory": "50Mi"}}},
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                {"name": "i2", "resources": {"requests": {"memory": "300Mi"}}}
            ],
            "overhead": {"cpu": "10m"}
        }}))
        .unwrap();
        let r = pod_requests(&pod, false);
        // containers 300m + sidecar 50m = 350m < init i1 500m; memory 100Mi < i2 300Mi + 0.
        assert_eq!(r.milli_cpu, 510);
        assert_eq!(r.memory, 300 << 20);
        // Non-zero: b has no memory → 200Mi; the sidecar too.
        let nz = pod_requests(&pod, true);
        // a 100Mi + b 200Mi + the sidecar 200Mi (i2's 300Mi + 200Mi ties).
        assert_eq!(nz.memory, 500 << 20);
        let empty: Pod =
            serde_json::from_value(json!({"spec": {"containers": [{"name": "a"}]}})).unwrap();
        assert!(pod_requests(&empty, false).is_zero());
        assert_eq!(pod_requests(&empty, true).milli_cpu, 100);
    }
}
