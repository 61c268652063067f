//! `ADD <http(s) URL>`: what the builder needs from a download and the rules docker applies to
//! it. The download itself goes through a [`Fetcher`] the daemon provides (the builder speaks
//! no HTTP itself).
//!
//! Rules (<https://docs.docker.com/reference/dockerfile/#add>): the file is named after the
//! `Content-Disposition` header or the last component of the URL path when the destination is
//! a directory; its mode is 0600 unless `--chmod`; its mtime is the `Last-Modified` header
//! (else the build time); `--checksum=<algo>:<hex>` (sha256, sha384, sha512) is verified and
//! then is the step's cache key, so a cached step does not download again. Without it the file
//! is downloaded on every build and its content digest is the key. Git URLs are rejected.

use std::fs::File;
use std::io::{self, Read, Seek};

use sha2::{Digest, Sha256, Sha384, Sha512};

/// A download failure or an invalid `ADD` source.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The transfer failed (the fetcher's message).
    #[error("failed to download {url}: {message}")]
    Download { url: String, message: String },
    /// `--checksum` did not match the content.
    #[error("digest mismatch {expected}: {actual}")]
    Mismatch { expected: String, actual: String },
    /// `--checksum` is malformed.
    #[error("invalid checksum {0:?}: want sha256:<hex>, sha384:<hex> or sha512:<hex>")]
    BadChecksum(String),
    /// No fetcher was configured (a builder used outside the daemon).
    #[error("ADD from a URL is not available: no downloader configured")]
    NoFetcher,
    /// Reading the downloaded file.
    #[error("read download: {0}")]
    Io(#[from] io::Error),
}

/// What a download reported besides the body.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The `Last-Modified` header, as sent.
    pub last_modified: Option<String>,
    /// The `Content-Disposition` header, as sent.
    pub content_disposition: Option<String>,
}

/// Downloads URLs for `ADD` (implemented by the daemon on its HTTP client).
pub trait Fetcher: Send + Sync {
    /// Downloads `url` (following redirects) into `dest`. A non-success status is an error,
    /// whose message names the status.
    fn fetch(&self, url: &str, dest: &mut File) -> Result<Fetched, String>;
}

/// Whether `src` is an `http://` or `https://` URL.
pub fn is_url(src: &str) -> bool {
    let l = src.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// Whether `src` names a git repository as BuildKit recognises one (`git://`, `git@host:`,
/// `ssh://`, or an http(s) URL whose path ends in `.git`, optionally with a `#ref` fragment).
pub fn is_git(src: &str) -> bool {
    let l = src.to_ascii_lowercase();
    if l.starts_with("git://") || l.starts_with("git@") || l.starts_with("ssh://") {
        return true;
    }
    if !is_url(&l) {
        return false;
    }
    let no_frag = l.split('#').next().unwrap_or("");
    let path = no_frag.split('?').next().unwrap_or("");
    path.trim_end_matches('/').ends_with(".git")
}

/// The file name for a download into a directory: `Content-Disposition`'s `filename`, else the
/// last component of the URL's path, else `index` (as BuildKit).
pub fn file_name(url: &str, content_disposition: Option<&str>) -> String {
    if let Some(cd) = content_disposition {
        for part in cd.split(';') {
            let part = part.trim();
            if let Some(v) = part
                .strip_prefix("filename=")
                .or_else(|| part.strip_prefix("FILENAME="))
            {
                let v = v.trim().trim_matches('"');
                let base = v.rsplit(['/', '\\']).next().unwrap_or("");
                if !base.is_empty() && base != "." && base != ".." {
                    return base.to_string();
                }
            }
        }
    }
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
    match path.rsplit('/').next() {
        Some(b) if !b.is_empty() && b != "." && b != ".." => percent_decode(b),
        _ => "index".to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    let d = String::from_utf8_lossy(&out).into_owned();
    if d.contains('/') || d == ".." || d == "." {
        s.to_string()
    } else {
        d
    }
}

/// The Unix time of an HTTP date (`Last-Modified`), if it parses.
pub fn http_time(v: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(v.trim())
        .ok()
        .map(|t| t.timestamp())
}

/// A `--checksum` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: String,
    pub hex: String,
}

impl Checksum {
    /// Parses `sha256:<64 hex>` (or sha384/sha512).
    pub fn parse(s: &str) -> Result<Checksum, FetchError> {
        let bad = || FetchError::BadChecksum(s.to_string());
        let (a, h) = s.split_once(':').ok_or_else(bad)?;
        let len = match a {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(bad()),
        };
        if h.len() != len || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Checksum {
            algorithm: a.to_string(),
            hex: h.to_ascii_lowercase(),
        })
    }

    /// Checks `f`'s content (read from the start).
    pub fn verify(&self, f: &mut File) -> Result<(), FetchError> {
        let actual = digest_file(f, &self.algorithm)?;
        let expected = format!("{}:{}", self.algorithm, self.hex);
        if actual != expected {
            return Err(FetchError::Mismatch { expected, actual });
        }
        Ok(())
    }
}

/// `<algorithm>:<hex>` of `f`'s content, read from the start.
pub fn digest_file(f: &mut File, algorithm: &str) -> Result<String, FetchError> {
    fn run<D: Digest>(f: &mut File) -> io::Result<String> {
        f.rewind()?;
        let mut d = D::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            d.update(&buf[..n]);
        }
        f.rewind()?;
        Ok(d.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>())
    }
    let hex = match algorithm {
        "sha384" => run::<Sha384>(f)?,
        "sha512" => run::<Sha512>(f)?,
        _ => run::<Sha256>(f)?,
    };
    Ok(format!("{algorithm}:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_names() {
        assert!(is_url("https://example.com/a"));
        assert!(is_url("HTTP://x"));
        assert!(!is_url("file.txt"));
        assert!(is_git("https://github.com/moby/buildkit.git#v0.10.1"));
        assert!(is_git("git@github.com:moby/buildkit.git"));
        assert!(is_git("git://host/repo"));
        assert!(!is_git("https://example.com/file.tar.gz"));
        assert_eq!(file_name("http://h:1/dir/file.txt?x=1#f", None), "file.txt");
        assert_eq!(file_name("http://h/dir/", None), "index");
        assert_eq!(file_name("http://h", None), "index");
        assert_eq!(file_name("http://h/a%20b", None), "a b");
        assert_eq!(
            file_name("http://h/x", Some("attachment; filename=\"real.tgz\"")),
            "real.tgz"
        );
        assert_eq!(
            file_name(
                "http://h/x",
                Some("attachment; filename=\"../../etc/passwd\"")
            ),
            "passwd"
        );
        assert_eq!(
            http_time("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(http_time("yesterday"), None);
    }

    #[test]
    fn checksums() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "hello\n").unwrap();
        let mut f = File::open(&p).unwrap();
        let good = Checksum::parse(
            "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
        )
        .unwrap();
        good.verify(&mut f).unwrap();
        let bad = Checksum::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        assert!(matches!(
            bad.verify(&mut f),
            Err(FetchError::Mismatch { .. })
        ));
        assert!(Checksum::parse("md5:abc").is_err());
        assert!(Checksum::parse("sha256:xyz").is_err());
        assert!(digest_file(&mut f, "sha512")
            .unwrap()
            .starts_with("sha512:"));
    }
}
