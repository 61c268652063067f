//! A container's environment as kubelet makes it (`kubelet_pods.go`
//! `makeEnvironmentVariables`): `envFrom` first (ConfigMaps and Secrets, with their prefix),
//! then `env` in order, each value with `$(VAR)` references to earlier variables expanded
//! (`$$` is a literal `$`), `valueFrom` read from the node's watch cache or the API
//! (configMapKeyRef, secretKeyRef), the pod (fieldRef) or the container's resources
//! (resourceFieldRef, kubelet's `ExtractContainerResourceValue`). A missing non-optional source is kubelet's `CreateContainerConfigError`
//! with its message.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::{Api, Client};

/// Why a container's environment could not be made: kubelet's message for
/// `CreateContainerConfigError`, or an API failure (retried).
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Api(kube::Error),
}

/// The ConfigMaps and Secrets of the pod's namespace, read once each per container start: from
/// the node's watch cache ([`crate::volumes::Sources`], kubelet's watch-based managers), or
/// from the API when the cache does not have one yet (it may lag an object created just
/// before the pod).
struct Sources<'a> {
    client: &'a Client,
    cache: &'a crate::volumes::Sources,
    ns: &'a str,
    configmaps: BTreeMap<String, Option<Arc<ConfigMap>>>,
    secrets: BTreeMap<String, Option<Arc<Secret>>>,
}

impl Sources<'_> {
    async fn configmap(&mut self, name: &str) -> Result<Option<&ConfigMap>, EnvError> {
        if !self.configmaps.contains_key(name) {
            let cm = match self.cache.configmap(self.ns, name) {
                Some(cm) => Some(cm),
                None => {
                    let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.ns);
                    api.get_opt(name)
                        .await
                        .map_err(EnvError::Api)?
                        .map(Arc::new)
                }
            };
            self.configmaps.insert(name.to_string(), cm);
        }
        Ok(self.configmaps[name].as_deref())
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, EnvError> {
        if !self.secrets.contains_key(name) {
            let s = match self.cache.secret(self.ns, name) {
                Some(s) => Some(s),
                None => {
                    let api: Api<Secret> = Api::namespaced(self.client.clone(), self.ns);
                    api.get_opt(name)
                        .await
                        .map_err(EnvError::Api)?
                        .map(Arc::new)
                }
            };
            self.secrets.insert(name.to_string(), s);
        }
        Ok(self.secrets[name].as_deref())
    }
}

/// A Secret's data as text (kubelet passes the bytes; invalid UTF-8 is replaced).
fn secret_value(s: &Secret, key: &str) -> Option<String> {
    if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
        return Some(String::from_utf8_lossy(&v.0).into_owned());
    }
    s.string_data.as_ref().and_then(|d| d.get(key)).cloned()
}

/// The environment of `c` in `pod` (`pod_ip`/`host_ip` for `status.podIP`/`status.hostIP`), as
/// `NAME=value` lines in kubelet's order.
pub async fn container_env(
    client: &Client,
    cache: &crate::volumes::Sources,
    pod: &Pod,
    c: &Container,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Vec<String>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut src = Sources {
        client,
        cache,
        ns,
        configmaps: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(e) = vars.iter_mut().find(|(n, _)| *n == k) {
            e.1 = v;
        } else {
            vars.push((k, v));
        }
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            match src.configmap(&r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set(&mut vars, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if optional => {}
                None => {
                    return Err(EnvError::Config(format!(
                        "configmap {:?} not found",
                        r.name
                    )))
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            match src.secret(&r.name).await? {
                Some(s) => {
                    for k in s
                        .data
                        .iter()
                        .flatten()
                        .map(|(k, _)| k.clone())
                        .collect::<Vec<_>>()
                    {
                        if let Some(v) = secret_value(s, &k) {
                            set(&mut vars, format!("{prefix}{k}"), v);
                        }
                    }
                }
                None if optional => {}
                None => return Err(EnvError::Config(format!("secret {:?} not found", r.name))),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            None => {
                let env: BTreeMap<&str, &str> =
                    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                expand(e.value.as_deref().unwrap_or(""), &env)
            }
            Some(from) => {
                if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    match src.configmap(&r.name).await? {
                        Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                            Some(v) => v.clone(),
                            None if optional => continue,
                            None => {
                                return Err(EnvError::Config(format!(
                                    "couldn't find key {} in ConfigMap {ns}/{}",
                                    r.key, r.name
                                )))
                            }
                        },
                        None if optional => continue,
                        None => {
                            return Err(EnvError::Config(format!(
                                "configmap {:?} not found",
                                r.name
                            )))
                        }
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    match src.secret(&r.name).await? {
                        Some(s) => match secret_value(s, &r.key) {
                            Some(v) => v,
                            None if optional => continue,
                            None => {
                                return Err(EnvError::Config(format!(
                                    "couldn't find key {} in Secret {ns}/{}",
                                    r.key, r.name
                                )))
                            }
                        },
                        None if optional => continue,
                        None => {
                            return Err(EnvError::Config(format!("secret {:?} not found", r.name)))
                        }
                    }
                } else if let Some(r) = &from.field_ref {
                    field_value(pod, &r.field_path, pod_ip, host_ip).ok_or_else(|| {
                        EnvError::Config(format!("unsupported fieldPath: {}", r.field_path))
                    })?
                } else if let Some(r) = &from.resource_field_ref {
                    // Another container's resources when named (kube's validation allows only
                    // the pod's own containers), else this one's.
                    let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                        Some(n) if n != c.name => pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.containers.iter().find(|x| x.name == n)),
                        _ => Some(c),
                    };
                    crate::volumes::resource_value(
                        target,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                    )
                    .ok_or_else(|| {
                        EnvError::Config(format!("unsupported resource: {}", r.resource))
                    })?
                } else {
                    continue;
                }
            }
        };
        set(&mut vars, e.name.clone(), value);
    }
    Ok(vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// A `fieldRef` of the downward API (`pod/util.go` `ConvertDownwardAPIFieldLabel`'s paths).
pub fn field_value(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(map.and_then(|l| l.get(key)).cloned().unwrap_or_default())
    };
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        p if p.starts_with("metadata.labels[") => subscript("metadata.labels", m.labels.as_ref())?,
        p if p.starts_with("metadata.annotations[") => {
            subscript("metadata.annotations", m.annotations.as_ref())?
        }
        _ => return None,
    })
}

/// kubelet's `$(VAR)` expansion (`third_party/forked/golang/expansion`): `$(NAME)` becomes the
/// value of an earlier variable, or stays as written when there is none; `$$` is `$`.
pub fn expand(input: &str, env: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let b = input.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            match b[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match env.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_as_kubelet() {
        let env: BTreeMap<&str, &str> = [("A", "1"), ("B", "x y")].into_iter().collect();
        assert_eq!(expand("$(A)-$(B)", &env), "1-x y");
        assert_eq!(expand("$(C)", &env), "$(C)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("a$b$", &env), "a$b$");
        assert_eq!(expand("é$(A", &env), "é$(A");
    }

    #[test]
    fn field_paths() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u",
                         "labels": {"app": "web"}, "annotations": {"a/b": "c"}},
            "spec": {"nodeName": "n1", "containers": []}
        }))
        .unwrap();
        let f = |p: &str| field_value(&pod, p, "10.42.0.5", "192.0.2.1");
        assert_eq!(f("metadata.name").as_deref(), Some("p"));
        assert_eq!(f("metadata.labels['app']").as_deref(), Some("web"));
        assert_eq!(f("metadata.labels['none']").as_deref(), Some(""));
        assert_eq!(f("metadata.annotations['a/b']").as_deref(), Some("c"));
        assert_eq!(f("spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(f("status.podIP").as_deref(), Some("10.42.0.5"));
        assert_eq!(f("status.hostIP").as_deref(), Some("192.0.2.1"));
        assert_eq!(f("spec.bogus"), None);
    }
}
