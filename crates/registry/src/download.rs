//! Plain URL downloads (the builder's `ADD <url>`), streamed into the caller's sink.

use crate::error::{one_line, RegistryError};

/// What [`download`] reports besides the body.
#[derive(Debug, Clone, Default)]
pub struct DownloadInfo {
    /// The `Last-Modified` header.
    pub last_modified: Option<String>,
    /// The `Content-Disposition` header.
    pub content_disposition: Option<String>,
}

/// Downloads `url` (http or https, redirects followed, the host's CAs) into `sink`, streaming
/// (the builder's `ADD <url>`). A non-success status is an error naming it.
pub async fn download(
    url: &str,
    sink: &mut (dyn std::io::Write + Send),
) -> Result<DownloadInfo, RegistryError> {
    let err = |e: reqwest::Error| RegistryError::Registry(one_line(&e));
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(err)?;
    let mut res = http.get(url).send().await.map_err(err)?;
    let status = res.status();
    if !status.is_success() {
        return Err(RegistryError::Registry(format!(
            "invalid response status {status}"
        )));
    }
    let header = |n: &str| {
        res.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let info = DownloadInfo {
        last_modified: header("last-modified"),
        content_disposition: header("content-disposition"),
    };
    while let Some(chunk) = res.chunk().await.map_err(err)? {
        sink.write_all(&chunk)
            .map_err(|e| RegistryError::Registry(format!("writing download: {e}")))?;
    }
    sink.flush()
        .map_err(|e| RegistryError::Registry(format!("writing download: {e}")))?;
    Ok(info)
}
