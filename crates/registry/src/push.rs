//! `docker push`: blobs the registry has are skipped, missing ones mounted from sibling
//! repositories or uploaded (in parallel, bounded), then the manifest; an image loaded as a
//! multi-platform index is pushed whole (every platform's manifest by digest, the index by tag).
//!
//! **Invariants:** a manifest is pushed only after all its blobs are in the repository.

use std::sync::Arc;

use barge_image::digest::{self as idigest, Descriptor, Manifest};
use barge_image::{ImageStore, Reference};
use futures_util::StreamExt;
use oci_client::RegistryOperation;

use crate::auth::{repo_auth, Credentials};
use crate::config::RegistryConfig;
use crate::endpoint::{endpoint, url_host, Endpoint};
use crate::error::{map_oci, RegistryError};
use crate::{item, short, Progress, ProgressTx};

/// What a push sent.
#[derive(Debug, Clone)]
pub struct PushResult {
    /// Manifest digest.
    pub digest: String,
    /// Manifest size.
    pub size: usize,
    /// The tag pushed.
    pub tag: String,
}

/// Pushes local image `name` as `r` (a tag reference). Blobs the registry has are skipped;
/// missing ones are first mounted from `mount_from` (other repositories of the same registry
/// known to hold this image), then uploaded. An image loaded as a multi-platform index is
/// pushed whole: every platform's blobs and manifest (by digest), then the index (by tag).
pub async fn push(
    store: Arc<ImageStore>,
    cfg: &RegistryConfig,
    name: &str,
    r: &Reference,
    mount_from: &[String],
    creds: Option<&Credentials>,
    tx: ProgressTx,
) -> Result<PushResult, RegistryError> {
    let st = store.clone();
    let n = name.to_string();
    let index = tokio::task::spawn_blocking(move || st.export_index(&n))
        .await
        .map_err(|e| RegistryError::Registry(e.to_string()))??;
    let ep = endpoint(cfg, &url_host(r.domain()), false).await;
    let tag = r.tag().unwrap_or("latest").to_string();
    let target =
        oci_client::Reference::with_tag(ep.host.clone(), r.path().to_string(), tag.clone());
    let _ = tx.send(Progress::Status(format!(
        "The push refers to repository [{}]",
        r.name()
    )));
    let auth = repo_auth(cfg, &ep, r.path(), creds, RegistryOperation::Push).await?;
    ep.client
        .auth(&target, &auth, RegistryOperation::Push)
        .await
        .map_err(|e| map_oci(e, &r.familiar()))?;
    let sources: Vec<String> = mount_from
        .iter()
        .filter(|m| m.as_str() != r.path())
        .cloned()
        .collect();
    let parse = |what: &str, data: &[u8]| -> Result<Manifest, RegistryError> {
        serde_json::from_slice(data)
            .map_err(|e| RegistryError::Registry(format!("{what} of {name}: {e}")))
    };
    let (mdata, default_type) = match index {
        Some((idata, children)) => {
            for (desc, cdata) in children {
                let manifest = parse(&format!("manifest {}", desc.digest), &cdata)?;
                push_blobs(&store, cfg, &ep, &target, &manifest, &sources, &tx).await?;
                let child = oci_client::Reference::with_digest(
                    ep.host.clone(),
                    r.path().to_string(),
                    desc.digest.clone(),
                );
                let ct = media_type(&cdata, &desc.media_type, idigest::MT_OCI_MANIFEST);
                ep.client
                    .push_manifest_raw(
                        &child,
                        cdata,
                        ct.parse()
                            .map_err(|_| RegistryError::Registry("bad media type".into()))?,
                    )
                    .await
                    .map_err(|e| map_oci(e, &format!("{}@{}", r.familiar(), desc.digest)))?;
            }
            (idata, idigest::MT_OCI_INDEX)
        }
        None => {
            let st = store.clone();
            let n = name.to_string();
            let (_img, mdata, _cdata) = tokio::task::spawn_blocking(move || st.export_manifest(&n))
                .await
                .map_err(|e| RegistryError::Registry(e.to_string()))??;
            let manifest = parse("manifest", &mdata)?;
            push_blobs(&store, cfg, &ep, &target, &manifest, &sources, &tx).await?;
            (mdata, idigest::MT_OCI_MANIFEST)
        }
    };
    let ct = media_type(&mdata, "", default_type);
    let digest = idigest::sha256_digest(&mdata);
    let size = mdata.len();
    ep.client
        .push_manifest_raw(
            &target,
            mdata,
            ct.parse()
                .map_err(|_| RegistryError::Registry("bad media type".into()))?,
        )
        .await
        .map_err(|e| map_oci(e, &r.familiar()))?;
    let _ = tx.send(Progress::Status(format!(
        "{tag}: digest: {digest} size: {size}"
    )));
    Ok(PushResult { digest, size, tag })
}

/// A manifest's or index's media type: its own `mediaType`, else the descriptor's, else
/// `default`.
fn media_type(data: &[u8], from_descriptor: &str, default: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    v.get("mediaType")
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty())
        .or(Some(from_descriptor).filter(|m| !m.is_empty()))
        .unwrap_or(default)
        .to_string()
}

/// Pushes the config and layers of `manifest` to `target`'s repository (in parallel,
/// bounded): skipped when present, mounted from `sources` when possible, else uploaded.
async fn push_blobs(
    store: &Arc<ImageStore>,
    cfg: &RegistryConfig,
    ep: &Endpoint,
    target: &oci_client::Reference,
    manifest: &Manifest,
    sources: &[String],
    tx: &ProgressTx,
) -> Result<(), RegistryError> {
    let limit = Arc::new(tokio::sync::Semaphore::new(
        cfg.max_concurrent_uploads.unwrap_or(5).max(1),
    ));
    let mut tasks = Vec::new();
    for l in manifest.layers.iter().rev() {
        item(tx, &short(&l.digest), "Preparing", None);
    }
    let blobs: Vec<(Descriptor, bool)> = manifest
        .layers
        .iter()
        .map(|l| (l.clone(), true))
        .chain(std::iter::once((manifest.config.clone(), false)))
        .collect();
    for (d, is_layer) in blobs {
        let (ep, target, st, tx, lim) = (
            ep.clone(),
            target.clone(),
            store.clone(),
            tx.clone(),
            limit.clone(),
        );
        let sources = sources.to_vec();
        tasks.push(tokio::spawn(async move {
            let _p = lim
                .acquire_owned()
                .await
                .map_err(|e| RegistryError::Registry(e.to_string()))?;
            let id = short(&d.digest);
            let exists = ep
                .client
                .blob_exists(&target, &d.digest)
                .await
                .map_err(|e| map_oci(e, &format!("blob {}", d.digest)))?;
            if exists {
                if is_layer {
                    item(&tx, &id, "Layer already exists", None);
                }
                return Ok::<(), RegistryError>(());
            }
            for src in &sources {
                let from =
                    oci_client::Reference::with_tag(ep.host.clone(), src.clone(), "latest".into());
                if ep
                    .client
                    .mount_blob(&target, &from, &d.digest)
                    .await
                    .is_ok()
                {
                    if is_layer {
                        item(&tx, &id, &format!("Mounted from {src}"), None);
                    }
                    return Ok(());
                }
            }
            let dg = d.digest.clone();
            let f = tokio::task::spawn_blocking(move || st.open_blob(&dg))
                .await
                .map_err(|e| RegistryError::Registry(e.to_string()))??;
            let total = f.metadata().map(|m| m.len()).unwrap_or(d.size);
            let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (s2, tx2, id2) = (sent.clone(), tx.clone(), id.clone());
            let stream =
                tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(f), 1 << 20)
                    .map(move |c| {
                        if let Ok(b) = &c {
                            let now = s2
                                .fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed)
                                + b.len() as u64;
                            if is_layer {
                                item(&tx2, &id2, "Pushing", Some((now, total)));
                            }
                        }
                        c.map_err(|e| {
                            oci_client::errors::OciDistributionError::GenericError(Some(
                                e.to_string(),
                            ))
                        })
                    });
            ep.client
                .push_blob_stream(&target, stream, &d.digest, Some(total))
                .await
                .map_err(|e| map_oci(e, &format!("blob {}", d.digest)))?;
            if is_layer {
                item(&tx, &id, "Pushed", None);
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| RegistryError::Registry(e.to_string()))??;
    }
    Ok(())
}
