//! Resolving a reference to its top-level manifest (or index) on a registry: through the
//! `registry-mirrors` first for Docker Hub names, then the registry itself; `GET
//! /distribution` and tag lists are answered the same way.
//!
//! **Invariants:** a manifest's digest is always the sha256 of the bytes received, and a
//! reference by digest must match it.

use barge_image::digest::{self as idigest, Descriptor, Index};
use barge_image::{Platform, Reference};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;

use crate::auth::{repo_auth, Credentials};
use crate::config::{self, RegistryConfig};
use crate::endpoint::{endpoint, oci_ref, url_host, Endpoint};
use crate::error::{map_oci, RegistryError};

const ACCEPT: &[&str] = &[
    idigest::MT_OCI_MANIFEST,
    idigest::MT_DOCKER_MANIFEST,
    idigest::MT_OCI_INDEX,
    idigest::MT_DOCKER_LIST,
];

/// Manifest (or index) and its digest, resolved for `r` on `ep`.
pub(crate) async fn fetch_manifest(
    ep: &Endpoint,
    r: &Reference,
    auth: &RegistryAuth,
) -> Result<(bytes::Bytes, String), RegistryError> {
    let or = oci_ref(&ep.host, r);
    // oci-client checks the registry's Docker-Content-Digest; the digest used is always the
    // sha256 of the bytes received.
    let (data, _) = ep
        .client
        .pull_manifest_raw(&or, auth, ACCEPT)
        .await
        .map_err(|e| map_oci(e, &r.familiar()))?;
    let actual = idigest::sha256_digest(&data);
    if let Some(d) = r.digest() {
        if d != actual {
            return Err(RegistryError::Registry(format!(
                "manifest digest mismatch for {}: got {actual}",
                r.familiar()
            )));
        }
    }
    Ok((data, actual))
}

pub(crate) fn is_index(data: &[u8]) -> bool {
    let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    let mt = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    mt == idigest::MT_OCI_INDEX
        || mt == idigest::MT_DOCKER_LIST
        || (mt.is_empty() && v.get("manifests").is_some())
}

/// A mirror's credentials: its own from `registry-mirrors`, else the request's (dockerd sends
/// the Docker Hub credentials to mirrors).
fn mirror_creds(m: &config::Mirror, creds: Option<&Credentials>) -> Option<Credentials> {
    match &m.credentials {
        Some((u, p)) => Some(Credentials {
            username: u.clone(),
            password: p.clone(),
            identity_token: None,
        }),
        None => creds.cloned(),
    }
}

/// The endpoint, top-level manifest (or index) bytes and digest, and the auth used.
type Resolved = (Endpoint, bytes::Bytes, String, RegistryAuth);

/// Connects to the registry for `r` (or, for Docker Hub names, the first mirror that has it),
/// and resolves the reference to its top-level manifest.
pub(crate) async fn resolve(
    cfg: &RegistryConfig,
    r: &Reference,
    creds: Option<&Credentials>,
) -> Result<Resolved, RegistryError> {
    let mut last_err = None;
    if r.domain() == config::DOCKER_HUB {
        for m in cfg.mirrors() {
            let ep = endpoint(cfg, &m.host, m.plain).await;
            let mc = mirror_creds(&m, creds);
            let res =
                match repo_auth(cfg, &ep, r.path(), mc.as_ref(), RegistryOperation::Pull).await {
                    Ok(auth) => fetch_manifest(&ep, r, &auth)
                        .await
                        .map(|(d, dg)| (d, dg, auth)),
                    Err(e) => Err(e),
                };
            match res {
                Ok((d, dg, auth)) => return Ok((ep, d, dg, auth)),
                Err(e) => {
                    tracing::info!("mirror {} failed for {}: {e}", m.host, r.familiar());
                    last_err = Some(e);
                }
            }
        }
    }
    let ep = endpoint(cfg, &url_host(r.domain()), false).await;
    let res = match repo_auth(cfg, &ep, r.path(), creds, RegistryOperation::Pull).await {
        Ok(auth) => fetch_manifest(&ep, r, &auth)
            .await
            .map(|(d, dg)| (d, dg, auth)),
        Err(e) => Err(e),
    };
    match res {
        Ok((d, dg, auth)) => Ok((ep, d, dg, auth)),
        Err(e) => Err(match (e, last_err) {
            (RegistryError::Registry(_), Some(m)) => m,
            (e, _) => e,
        }),
    }
}

/// Tags of `r`'s repository (for `pull --all-tags`), sorted.
pub async fn list_tags(
    cfg: &RegistryConfig,
    r: &Reference,
    creds: Option<&Credentials>,
) -> Result<Vec<String>, RegistryError> {
    let mut hosts: Vec<(String, bool, Option<Credentials>)> = Vec::new();
    if r.domain() == config::DOCKER_HUB {
        for m in cfg.mirrors() {
            let mc = mirror_creds(&m, creds);
            hosts.push((m.host, m.plain, mc));
        }
    }
    hosts.push((url_host(r.domain()), false, creds.cloned()));
    let mut last = None;
    for (host, plain, c) in hosts {
        let ep = endpoint(cfg, &host, plain).await;
        let auth = match repo_auth(cfg, &ep, r.path(), c.as_ref(), RegistryOperation::Pull).await {
            Ok(a) => a,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let or =
            oci_client::Reference::with_tag(host.clone(), r.path().to_string(), "latest".into());
        match ep.client.list_tags(&or, &auth, None, None).await {
            Ok(t) => {
                let mut tags = t.tags;
                tags.sort();
                return Ok(tags);
            }
            Err(e) => last = Some(map_oci(e, &r.familiar_name())),
        }
    }
    Err(last.unwrap_or_else(|| RegistryError::NotFound(r.familiar_name())))
}

/// `GET /distribution/{name}/json`: the descriptor `r` resolves to and, for an index, the
/// platforms it offers.
pub async fn distribution(
    cfg: &RegistryConfig,
    r: &Reference,
    creds: Option<&Credentials>,
) -> Result<(Descriptor, Vec<Platform>), RegistryError> {
    let (_ep, data, digest, _auth) = resolve(cfg, r, creds).await?;
    let v: serde_json::Value = serde_json::from_slice(&data).unwrap_or_default();
    let mt = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_string();
    let mut platforms = Vec::new();
    if is_index(&data) {
        if let Ok(index) = serde_json::from_slice::<Index>(&data) {
            for m in index.manifests {
                if let Some(p) = m.platform {
                    platforms.push(Platform::new(&p.os, &p.architecture, p.variant.as_deref()));
                }
            }
        }
    }
    Ok((
        Descriptor {
            media_type: mt,
            digest,
            size: data.len() as u64,
            ..Default::default()
        },
        platforms,
    ))
}
