//! sha256 helpers, [OCI descriptors](https://github.com/opencontainers/image-spec/blob/main/descriptor.md),
//! manifests and indexes, compression sniffing, and chain IDs.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ImageError;

/// OCI image manifest media type.
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer media type.
pub const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker schema2 manifest media type.
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config media type.
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker uncompressed layer media type (as used for `docker save` layers).
pub const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Whether `mt` is a layer media type this store can unpack (tar, gzip or zstd; OCI, Docker,
/// and non-distributable/foreign variants).
pub fn known_layer_media_type(mt: &str) -> bool {
    matches!(
        mt,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The hex part of a `sha256:<hex>` digest; errors for other algorithms or malformed digests.
pub fn digest_hex(d: &str) -> Result<&str, ImageError> {
    match d.strip_prefix("sha256:") {
        Some(h) if crate::reference::is_hex64(h) => Ok(h),
        _ => Err(ImageError::InvalidArchive(format!(
            "invalid or unsupported digest {d:?}"
        ))),
    }
}

/// Layer chain IDs, bottom first:
/// `chainID(L0) = diffID(L0)`, `chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln))`
/// ([config spec](https://github.com/opencontainers/image-spec/blob/main/config.md#layer-chainid)).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A writer that hashes and counts what passes through.
pub struct HashingWriter<W> {
    /// The wrapped writer.
    pub inner: W,
    hasher: Sha256,
    /// Bytes written so far.
    pub count: u64,
}

impl<W> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// `sha256:<hex>` of everything written.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex(&self.hasher.clone().finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    /// Bytes read so far.
    pub count: u64,
}

impl<R> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// `sha256:<hex>` of everything read.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex(&self.hasher.clone().finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Compression of a stream, from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard.
    Zstd,
}

/// Wraps `r` in a decompressor chosen by magic bytes (gzip `1f 8b`, zstd `28 b5 2f fd`).
pub fn decompressed<'a, R: Read + 'a>(mut r: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    // Read the magic with a loop: a stream may return fewer bytes per read.
    let mut head = Vec::with_capacity(4);
    (&mut r).take(4).read_to_end(&mut head)?;
    let kind = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let br = BufReader::with_capacity(256 * 1024, io::Cursor::new(head).chain(r));
    Ok(match kind {
        Compression::Gzip => (kind, Box::new(flate2::read::MultiGzDecoder::new(br))),
        Compression::Zstd => (
            kind,
            Box::new(zstd::stream::read::Decoder::with_buffer(br)?),
        ),
        Compression::None => (kind, Box::new(br)),
    })
}

/// An [OCI descriptor](https://github.com/opencontainers/image-spec/blob/main/descriptor.md).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    /// `mediaType` (may be empty in old documents).
    pub media_type: String,
    /// `sha256:<hex>` of the content.
    pub digest: String,
    /// Content size in bytes.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Platform of an index entry.
    pub platform: Option<PlatformJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Annotations, e.g. `org.opencontainers.image.ref.name`.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `platform` of an index entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformJson {
    /// GOARCH.
    pub architecture: String,
    /// GOOS.
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// CPU variant.
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The document's own `mediaType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    #[serde(default)]
    /// Layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The document's own `mediaType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Manifests (one per platform, or per ref in a layout's index.json).
    pub manifests: Vec<Descriptor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_values() {
        let a = sha256_digest(b"a");
        let b = sha256_digest(b"b");
        let c = sha256_digest(b"c");
        let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert_eq!(ids[2], sha256_digest(format!("{} {c}", ids[1]).as_bytes()));
        assert!(chain_ids(&[]).is_empty());
        // Known vector: sha256("") = e3b0...
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sniff() {
        let (c, _) = decompressed(&b"plain"[..]).unwrap();
        assert_eq!(c, Compression::None);
        let (c, _) = decompressed(&[0x1f, 0x8b, 8, 0][..]).unwrap();
        assert_eq!(c, Compression::Gzip);
        // A stream that yields one byte per read is still recognised, and nothing is lost.
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello world").unwrap();
        let gz = enc.finish().unwrap();
        let (c, mut r) = decompressed(OneByte(&gz)).unwrap();
        assert_eq!(c, Compression::Gzip);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello world");
        let (c, mut r) = decompressed(OneByte(b"plain text")).unwrap();
        assert_eq!(c, Compression::None);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "plain text");
    }
}
