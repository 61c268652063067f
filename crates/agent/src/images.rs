//! Images for a pod's containers as kubelet's image manager gets them
//! (`pkg/kubelet/images/image_manager.go` `EnsureImageExists`): the pull policy (kube's
//! defaults: `Always` for `:latest` or no tag, else `IfNotPresent`), pulls through barge's
//! registry client into the engine's image store (the same code path as `docker pull`),
//! credentials from the pod's `imagePullSecrets` (`kubernetes.io/dockerconfigjson` and
//! `kubernetes.io/dockercfg`), and kubelet's failure reasons and messages: `InvalidImageName`,
//! `ErrImageNeverPull`, `ErrImagePull`, then `ImagePullBackOff` while the per-image back-off
//! (keyed by pod and image, as kubelet's) lasts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::{Api, Client};

/// An event to record (warning?, reason, message) once the caller knows it is news.
pub type Event = (bool, &'static str, String);

/// Why a container's image is not there: the container waits with `reason` and `message`
/// (kube's), and `events` are recorded when this is news.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageWait {
    pub reason: &'static str,
    pub message: String,
    pub events: Vec<Event>,
}

/// The pull policy of `c`: its own, else kube's default for its image reference
/// (`Always` for `:latest` or no tag, `IfNotPresent` for another tag or a digest).
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let image = c.image.as_deref().unwrap_or_default();
    let tagged = image.rsplit('/').next().is_some_and(|l| l.contains(':'));
    if image.contains('@') || (tagged && !image.ends_with(":latest")) {
        "IfNotPresent".into()
    } else {
        "Always".into()
    }
}

/// Kubelet's image back-off for one (pod, image): `flowcontrol.Backoff` with the restart
/// back-off's base, doubling up to five minutes; the last failure's message is kept for the
/// `ImagePullBackOff` message.
#[derive(Debug, Clone)]
pub struct PullBackoff {
    current: Duration,
    updated: Instant,
    last_error: String,
}

/// The registry host of a `.dockerconfigjson` key (`https://host/v1/` → `host`), with Docker
/// Hub's spellings as `docker.io`.
fn config_host(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or_default().to_string();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

/// The credentials for registry `domain` in a `.dockerconfigjson` (`{"auths": {...}}`) or
/// `.dockercfg` (the map alone) document.
pub fn credentials_for(doc: &[u8], domain: &str) -> Vec<barge_registry::Credentials> {
    use base64::Engine;
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(doc) else {
        return Vec::new();
    };
    let auths = v.get("auths").unwrap_or(&v);
    let Some(map) = auths.as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, e) in map {
        if config_host(k) != domain {
            continue;
        }
        let s = |f: &str| e.get(f).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let (mut user, mut pass) = (s("username"), s("password"));
        if user.is_empty() {
            if let Ok(d) = base64::engine::general_purpose::STANDARD.decode(s("auth").trim()) {
                if let Some((u, p)) = String::from_utf8_lossy(&d).split_once(':') {
                    (user, pass) = (u.to_string(), p.to_string());
                }
            }
        }
        let token = s("identitytoken");
        out.push(barge_registry::Credentials {
            username: user,
            password: pass,
            identity_token: (!token.is_empty()).then_some(token),
        });
    }
    out
}

/// The credentials the pod's `imagePullSecrets` hold for `domain`, in their order, and the
/// names of the secrets that could not be read.
async fn pull_credentials(
    client: &Client,
    pod: &Pod,
    domain: &str,
) -> (Vec<barge_registry::Credentials>, Vec<String>) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut creds = Vec::new();
    let mut missing = Vec::new();
    let refs = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    for r in refs {
        let name = r.name;
        match api.get_opt(&name).await {
            Ok(Some(s)) => {
                let data = s.data.unwrap_or_default();
                for key in [".dockerconfigjson", ".dockercfg"] {
                    if let Some(d) = data.get(key) {
                        creds.extend(credentials_for(&d.0, domain));
                    }
                }
            }
            _ => missing.push(format!("{ns}/{name}")),
        }
    }
    (creds, missing)
}

/// Go's `time.Duration` spelling of a measured duration (`1.234567s`, `345.1ms`).
pub fn go_elapsed(d: Duration) -> String {
    let ns = d.as_nanos();
    let trim = |s: String| s.trim_end_matches('0').trim_end_matches('.').to_string();
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}µs", trim(format!("{:.3}", ns as f64 / 1e3)))
    } else if ns < 1_000_000_000 {
        format!("{}ms", trim(format!("{:.6}", ns as f64 / 1e6)))
    } else {
        let s = d.as_secs();
        let frac = trim(format!("{:.9}", d.subsec_nanos() as f64 / 1e9));
        let frac = frac.trim_start_matches('0');
        let (m, s) = (s / 60, s % 60);
        if m > 0 {
            format!("{m}m{s}{frac}s")
        } else {
            format!("{s}{frac}s")
        }
    }
}

/// Makes sure `c`'s image is in the engine's store as its pull policy wants (pulling it when
/// needed), or says why the container must wait. `events` gets the events that happen either
/// way (`Pulling`, `Pulled`).
pub async fn ensure(
    engine: &crate::Engine,
    client: &Client,
    pod: &Pod,
    c: &Container,
    backoffs: &mut BTreeMap<String, PullBackoff>,
    base: Duration,
    events: &mut Vec<Event>,
) -> Result<(), ImageWait> {
    let image = c.image.clone().unwrap_or_default();
    let r = match barge_image::Reference::parse(&image) {
        Ok(r) if r.tag().is_none() && r.digest().is_none() => r.with_tag("latest"),
        Ok(r) => r,
        Err(_) => {
            let m = format!(
                "Failed to apply default image tag {image:?}: couldn't parse image name {image:?}: invalid reference format"
            );
            return Err(ImageWait {
                reason: "InvalidImageName",
                message: m.clone(),
                events: vec![(true, "InspectFailed", m)],
            });
        }
    };
    let policy = pull_policy(c);
    let present = {
        let (images, name) = (engine.images.clone(), image.clone());
        tokio::task::spawn_blocking(move || images.get(&name).is_ok())
            .await
            .unwrap_or(false)
    };
    if present && policy != "Always" {
        events.push((
            false,
            "Pulled",
            format!("Container image {image:?} already present on machine"),
        ));
        return Ok(());
    }
    if !present && policy == "Never" {
        let m = format!("Container image {image:?} is not present with pull policy of Never");
        return Err(ImageWait {
            reason: "ErrImageNeverPull",
            message: m.clone(),
            events: vec![(true, "ErrImageNeverPull", m)],
        });
    }
    if let Some(b) = backoffs.get(&image) {
        if b.updated.elapsed() < b.current {
            let m = format!("Back-off pulling image {image:?}");
            return Err(ImageWait {
                reason: "ImagePullBackOff",
                message: format!("{m}: {}", b.last_error),
                events: vec![(false, "BackOff", m)],
            });
        }
    }
    let (creds, missing) = pull_credentials(client, pod, r.domain()).await;
    if !missing.is_empty() {
        events.push((
            true,
            "FailedToRetrieveImagePullSecret",
            format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                missing.join(", ")
            ),
        ));
    }
    events.push((false, "Pulling", format!("Pulling image {image:?}")));
    let started = Instant::now();
    let mut attempts: Vec<Option<&barge_registry::Credentials>> = creds.iter().map(Some).collect();
    if attempts.is_empty() {
        attempts.push(None);
    }
    let mut last_err = String::new();
    for cred in attempts {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // The progress lines are Docker's; kubelet reports none.
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let hold = engine.images.hold();
        let res = barge_registry::pull(
            engine.images.clone(),
            &barge_registry::RegistryConfig::default(),
            &r,
            None,
            cred,
            tx,
        )
        .await;
        drop(hold);
        let _ = drain.await;
        match res {
            Ok(_) => {
                backoffs.remove(&image);
                let took = go_elapsed(started.elapsed());
                let size = {
                    let (images, name) = (engine.images.clone(), image.clone());
                    tokio::task::spawn_blocking(move || images.get(&name).map(|i| i.size).ok())
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(0)
                };
                events.push((
                    false,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {took} ({took} including waiting). Image size: {size} bytes."
                    ),
                ));
                return Ok(());
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    let message = format!("failed to pull and unpack image {:?}: {last_err}", r.full());
    let now = Instant::now();
    let current = match backoffs.get(&image) {
        Some(b) if now.duration_since(b.updated) <= crate::BACKOFF_RESET => {
            (b.current * 2).min(crate::MAX_BACKOFF)
        }
        _ => base,
    };
    backoffs.insert(
        image.clone(),
        PullBackoff {
            current,
            updated: now,
            last_error: format!("ErrImagePull: {message}"),
        },
    );
    Err(ImageWait {
        reason: "ErrImagePull",
        message: message.clone(),
        events: vec![(
            true,
            "Failed",
            format!("Failed to pull image {image:?}: {message}"),
        )],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "a".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn default_pull_policies_as_kube() {
        assert_eq!(pull_policy(&c("busybox", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:latest", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:1.35", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("127.0.0.1:5000/x", None)), "Always");
        assert_eq!(pull_policy(&c("127.0.0.1:5000/x:2", None)), "IfNotPresent");
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(pull_policy(&c(&d, None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("busybox", Some("Never"))), "Never");
    }

    #[test]
    fn docker_config_credentials() {
        let doc = br#"{"auths":{"https://127.0.0.1:5000/v1/":{"auth":"dTpw"},
            "index.docker.io":{"username":"hub","password":"x"}}}"#;
        let cs = credentials_for(doc, "127.0.0.1:5000");
        assert_eq!(cs.len(), 1);
        assert_eq!(
            (cs[0].username.as_str(), cs[0].password.as_str()),
            ("u", "p")
        );
        let hub = credentials_for(doc, "docker.io");
        assert_eq!(hub[0].username, "hub");
        assert!(credentials_for(doc, "other:1").is_empty());
        // `.dockercfg`: the map alone.
        let cfg = br#"{"127.0.0.1:5000":{"username":"a","password":"b"}}"#;
        assert_eq!(credentials_for(cfg, "127.0.0.1:5000")[0].username, "a");
    }

    #[test]
    fn elapsed_as_go_prints_it() {
        assert_eq!(go_elapsed(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_elapsed(Duration::from_micros(345_100)), "345.1ms");
        assert_eq!(go_elapsed(Duration::from_secs(2)), "2s");
        assert_eq!(go_elapsed(Duration::from_secs(61)), "1m1s");
    }
}
