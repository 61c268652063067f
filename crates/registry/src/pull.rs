//! `docker pull`: the manifest for the platform, the config verified in memory, and each layer
//! streamed from the network into the store ([`ImageStore::begin_layer`] /
//! [`ImageStore::finish_layer`]) while it downloads, layers in parallel (bounded).
//!
//! **Invariants:** a layer is never buffered whole (a bounded channel feeds a blocking
//! ingesting thread); layers already stored are skipped, a partial one is resumed with HTTP
//! `Range`, and a connection cut mid-layer is resumed the same way; the reference is written
//! last (`ImageStore::commit_pull`), so a failed pull leaves no visible image.

use std::sync::Arc;

use barge_image::digest::{self as idigest, Descriptor, Index, Manifest};
use barge_image::{ImageStore, Platform, Reference};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::auth::Credentials;
use crate::config::RegistryConfig;
use crate::endpoint::{oci_ref, Endpoint};
use crate::error::{map_oci, one_line, RegistryError};
use crate::resolve::{fetch_manifest, is_index, resolve};
use crate::{item, short, Progress, ProgressTx};

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// Image ID.
    pub id: String,
    /// Digest of the manifest (or index) the reference resolved to, for `Digest:` lines.
    pub digest: String,
    /// Whether anything new was stored (`Downloaded newer image` vs `Image is up to date`).
    pub downloaded: bool,
}

/// Picks the manifest for `want` from an index.
fn select_platform(index: &Index, want: &Platform) -> Result<Descriptor, RegistryError> {
    index
        .manifests
        .iter()
        .find(|m| {
            m.platform.as_ref().is_some_and(|p| {
                want.matches(&Platform::new(&p.os, &p.architecture, p.variant.as_deref()))
            })
        })
        .cloned()
        .ok_or_else(|| RegistryError::NoPlatform {
            wanted: want.to_string(),
        })
}

/// A blocking reader over chunks sent from the async side.
struct ChanReader {
    rx: mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
    cur: bytes::Bytes,
}

impl std::io::Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}

/// Batches of at least this many bytes go from the network to the ingesting thread (fewer
/// wake-ups than hyper's small chunks).
const BATCH: usize = 256 * 1024;

/// How often a cut blob download is resumed (HTTP `Range`) within one pull.
const RANGE_RETRIES: usize = 3;

/// Opens layer `od` at byte `offset`. Returns the stream and the offset it really starts at:
/// `offset` when the registry answered `206 Partial Content`, 0 when it sent the whole blob.
async fn open_blob(
    ep: &Endpoint,
    r: &oci_client::Reference,
    od: &oci_client::manifest::OciDescriptor,
    offset: u64,
) -> Result<(oci_client::client::SizedStream, u64), RegistryError> {
    use oci_client::client::BlobResponse;
    let what = || format!("layer {}", od.digest);
    // Always a ranged request (`bytes=0-` at first): the store verifies the digest itself, and
    // oci-client verifies only whole (200) responses, which would hash every byte twice.
    match ep
        .client
        .pull_blob_stream_partial(r, od, offset, None)
        .await
    {
        Ok(BlobResponse::Partial(s)) => {
            let total = od.size as u64;
            if offset > 0 && s.content_length.is_some_and(|n| n + offset != total) {
                // Not the range asked for: start over with the whole blob.
                let s = ep
                    .client
                    .pull_blob_stream(r, od)
                    .await
                    .map_err(|e| map_oci(e, &what()))?;
                return Ok((s, 0));
            }
            Ok((s, offset))
        }
        Ok(BlobResponse::Full(s)) => Ok((s, 0)),
        Err(e) if offset > 0 => {
            tracing::info!(
                "ranged request for {} failed ({e}); fetching it whole",
                od.digest
            );
            let s = ep
                .client
                .pull_blob_stream(r, od)
                .await
                .map_err(|e| map_oci(e, &what()))?;
            Ok((s, 0))
        }
        Err(e) => Err(map_oci(e, &what())),
    }
}

/// Downloads one layer and ingests it while it streams. A download that an earlier pull left
/// unfinished continues where it stopped, and a connection cut mid-layer is resumed with a
/// `Range` request (when the registry honours ranges), so no byte is fetched twice.
async fn pull_layer(
    store: Arc<ImageStore>,
    ep: Endpoint,
    r: oci_client::Reference,
    desc: Descriptor,
    diff_id: String,
    chain_id: String,
    tx: ProgressTx,
) -> Result<u64, RegistryError> {
    let mut fresh_retry = true;
    loop {
        match pull_layer_once(&store, &ep, &r, &desc, &diff_id, &chain_id, &tx).await {
            Err((RegistryError::Image(e), true))
                if fresh_retry
                    && matches!(
                        e,
                        barge_image::ImageError::DigestMismatch { .. }
                            | barge_image::ImageError::SizeMismatch { .. }
                            | barge_image::ImageError::InvalidArchive(_)
                    ) =>
            {
                // The kept prefix was bad (the store dropped it): once more from byte 0.
                tracing::info!(
                    "resumed download of {} failed ({e}); starting over",
                    desc.digest
                );
                fresh_retry = false;
            }
            other => return other.map_err(|(e, _)| e),
        }
    }
}

/// One attempt of [`pull_layer`]; the error says whether the attempt resumed kept bytes.
async fn pull_layer_once(
    store: &Arc<ImageStore>,
    ep: &Endpoint,
    r: &oci_client::Reference,
    desc: &Descriptor,
    diff_id: &str,
    chain_id: &str,
    tx: &ProgressTx,
) -> Result<u64, (RegistryError, bool)> {
    let id = short(&desc.digest);
    let od = oci_client::manifest::OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.clone(),
        size: desc.size as i64,
        ..Default::default()
    };
    let join = |e: tokio::task::JoinError| RegistryError::Registry(format!("layer task: {e}"));
    let (st, d2, di, ci) = (
        store.clone(),
        desc.clone(),
        diff_id.to_string(),
        chain_id.to_string(),
    );
    let mut pending = tokio::task::spawn_blocking(move || st.begin_layer(&d2, &di, &ci))
        .await
        .map_err(|e| (join(e), false))?
        .map_err(|e| (e.into(), false))?;
    let kept = pending.offset();
    let mut stream = None;
    if kept == 0 || desc.size == 0 || kept < desc.size {
        let (s, at) = open_blob(ep, r, &od, kept).await.map_err(|e| (e, false))?;
        if at != kept {
            pending.restart();
        }
        stream = Some(s.stream);
    }
    let start = pending.offset();
    let resumed = start > 0;
    if resumed {
        tracing::info!(layer = %desc.digest, offset = start, "resuming layer download");
    }
    let total = desc.size;
    let (ctx, crx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let st = store.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut rd = ChanReader {
            rx: crx,
            cur: bytes::Bytes::new(),
        };
        let res = st.finish_layer(pending, &mut rd);
        drop(rd);
        res
    });
    let mut at = start;
    let mut last_report = std::time::Instant::now() - std::time::Duration::from_secs(1);
    let mut retries = 0;
    let mut batch = bytes::BytesMut::new();
    'download: while let Some(mut s) = stream.take() {
        while let Some(chunk) = s.next().await {
            match chunk {
                Ok(b) => {
                    at += b.len() as u64;
                    batch.extend_from_slice(&b);
                    if batch.len() >= BATCH {
                        // The blocking side may have failed already (bad tar): stop then.
                        if ctx.send(Ok(batch.split().freeze())).await.is_err() {
                            break 'download;
                        }
                    }
                    if last_report.elapsed() >= std::time::Duration::from_millis(100) {
                        last_report = std::time::Instant::now();
                        item(tx, &id, "Downloading", Some((at, total)));
                    }
                }
                Err(e) => {
                    // Resume the cut connection where it stopped, if the registry does ranges.
                    if retries < RANGE_RETRIES && (total == 0 || at < total) {
                        retries += 1;
                        tracing::info!(layer = %desc.digest, offset = at, "download cut ({e}); resuming");
                        if let Ok((s2, got)) = open_blob(ep, r, &od, at).await {
                            if got == at {
                                stream = Some(s2.stream);
                                continue 'download;
                            }
                        }
                    }
                    if !batch.is_empty() {
                        let _ = ctx.send(Ok(batch.split().freeze())).await;
                    }
                    let _ = ctx
                        .send(Err(std::io::Error::other(format!(
                            "downloading layer {}: {}",
                            desc.digest,
                            one_line(&e)
                        ))))
                        .await;
                    break 'download;
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = ctx.send(Ok(batch.freeze())).await;
    }
    drop(ctx);
    item(tx, &id, "Downloading", Some((at, total)));
    let info = writer
        .await
        .map_err(|e| (join(e), resumed))?
        .map_err(|e| (RegistryError::from(e), resumed))?;
    item(tx, &id, "Verifying Checksum", None);
    item(tx, &id, "Download complete", None);
    item(tx, &id, "Pull complete", None);
    Ok(info.size)
}

/// Pulls `r` (tag or digest) into `store`. `platform` selects from an index (default: host).
/// Emits `Pulling from ...`, per-layer lines and `Digest: ...`; the caller writes the final
/// `Status:` line from the result. A tag reference is pointed at the image at the end.
pub async fn pull(
    store: Arc<ImageStore>,
    cfg: &RegistryConfig,
    r: &Reference,
    platform: Option<&Platform>,
    creds: Option<&Credentials>,
    tx: ProgressTx,
) -> Result<PullResult, RegistryError> {
    let (ep, top, top_digest, auth) = resolve(cfg, r, creds).await?;
    let tag_or_digest = r
        .tag()
        .map(str::to_string)
        .or(r.digest().map(str::to_string))
        .unwrap_or_else(|| "latest".into());
    let _ = tx.send(Progress::Item {
        id: tag_or_digest,
        status: format!("Pulling from {}", r.path()),
        progress: None,
    });
    let base = oci_ref(&ep.host, r);
    let (mdata, mdigest) = if is_index(&top) {
        let index: Index = serde_json::from_slice(&top)
            .map_err(|e| RegistryError::Registry(format!("index of {}: {e}", r.familiar())))?;
        let want = platform.cloned().unwrap_or_else(Platform::host);
        let pick = select_platform(&index, &want)?;
        let child = r.with_digest(&pick.digest);
        let (d, dg) = fetch_manifest(&ep, &child, &auth).await?;
        (d, dg)
    } else {
        (top.clone(), top_digest.clone())
    };
    let manifest: Manifest = serde_json::from_slice(&mdata)
        .map_err(|e| RegistryError::Registry(format!("manifest of {}: {e}", r.familiar())))?;
    for l in &manifest.layers {
        if !idigest::known_layer_media_type(&l.media_type) {
            return Err(RegistryError::Registry(format!(
                "unsupported layer media type {} ({})",
                l.media_type, l.digest
            )));
        }
    }
    // Config (small): fetched into memory and verified.
    let mut config = Vec::new();
    {
        let cr = base.clone_with_digest(manifest.config.digest.clone());
        ep.client
            .pull_blob(&cr, manifest.config.digest.as_str(), &mut config)
            .await
            .map_err(|e| map_oci(e, &format!("config {}", manifest.config.digest)))?;
        let actual = idigest::sha256_digest(&config);
        if actual != manifest.config.digest {
            return Err(RegistryError::Image(
                barge_image::ImageError::DigestMismatch {
                    what: "config".into(),
                    expected: manifest.config.digest.clone(),
                    actual,
                },
            ));
        }
    }
    if let (Some(want), false) = (platform, is_index(&top)) {
        // A single manifest: its config must be for the platform asked for (as dockerd checks).
        let v: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let have = Platform::new(
            &s("os"),
            &s("architecture"),
            v.get("variant").and_then(|x| x.as_str()),
        );
        if !want.matches(&have) {
            return Err(RegistryError::PlatformMismatch {
                reference: r.familiar(),
                wanted: want.to_string(),
                actual: have.to_string(),
            });
        }
    }
    let (diff_ids, chains) = barge_image::config_chain_ids(&config)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(RegistryError::Registry(format!(
            "manifest of {} has {} layers but its config lists {}",
            r.familiar(),
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    // Layers: present ones skipped (resume), the others downloaded in parallel.
    let limit = Arc::new(tokio::sync::Semaphore::new(
        cfg.max_concurrent_downloads.unwrap_or(3).max(1),
    ));
    let mut tasks = Vec::new();
    let mut downloaded = false;
    for (i, l) in manifest.layers.iter().enumerate() {
        let id = short(&l.digest);
        let st = store.clone();
        let dg = l.digest.clone();
        let present = tokio::task::spawn_blocking(move || st.has_blob(&dg))
            .await
            .unwrap_or(false);
        if present {
            item(&tx, &id, "Already exists", None);
            let st = store.clone();
            let dg = l.digest.clone();
            let diff = diff_ids[i].clone();
            tasks.push(tokio::spawn(async move {
                // The size an image record has for it, else read off the blob (a layer of an
                // interrupted pull has no record yet).
                tokio::task::spawn_blocking(move || match st.recorded_layer_size(&diff) {
                    Some(size) => Ok(size),
                    None => st.layer_info(&dg).map(|i| i.size),
                })
                .await
                .map_err(|e| RegistryError::Registry(e.to_string()))?
                .map_err(RegistryError::from)
            }));
            continue;
        }
        downloaded = true;
        item(&tx, &id, "Pulling fs layer", None);
        let (st, ep2, r2, d, diff, chain, tx2, lim) = (
            store.clone(),
            ep.clone(),
            base.clone_with_digest(l.digest.clone()),
            l.clone(),
            diff_ids[i].clone(),
            chains[i].clone(),
            tx.clone(),
            limit.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = lim
                .acquire_owned()
                .await
                .map_err(|e| RegistryError::Registry(e.to_string()))?;
            pull_layer(st, ep2, r2, d, diff, chain, tx2).await
        }));
    }
    let mut sizes = Vec::new();
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => sizes.push(s),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(RegistryError::Registry(format!("layer task: {e}")));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let refs: Vec<Reference> = if r.digest().is_some() {
        vec![r.clone()]
    } else {
        vec![r.with_tag(r.tag().unwrap_or("latest"))]
    };
    let st = store.clone();
    let md = mdigest.clone();
    let existed = {
        let st = store.clone();
        let full = refs[0].full();
        tokio::task::spawn_blocking(move || st.get(&full).ok().map(|i| i.manifest_digest))
            .await
            .unwrap_or(None)
    };
    let img =
        tokio::task::spawn_blocking(move || st.commit_pull(&mdata, &md, &config, sizes, &refs))
            .await
            .map_err(|e| RegistryError::Registry(format!("commit: {e}")))??;
    let _ = tx.send(Progress::Status(format!("Digest: {top_digest}")));
    Ok(PullResult {
        id: img.id,
        digest: top_digest,
        downloaded: downloaded || existed.as_deref() != Some(mdigest.as_str()),
    })
}
