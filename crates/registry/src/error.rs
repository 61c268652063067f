//! Errors of registry operations ([`RegistryError`], one line each, fit for the user) and the
//! mapping of oci-client's errors onto them ([`map_oci`]: unknown manifests and names become
//! `NotFound`, refusals `Unauthorized`, by the registry's error codes and HTTP status, never by
//! message text).

/// Errors of registry operations. `Display` is one line, fit for the user.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Manifest or tag unknown.
    #[error("manifest for {0} not found: manifest unknown")]
    NotFound(String),
    /// Credentials refused or missing.
    #[error("{0}")]
    Unauthorized(String),
    /// Network, TLS, protocol errors.
    #[error("{0}")]
    Registry(String),
    /// Content that fails verification or cannot be stored.
    #[error("{0}")]
    Image(#[from] barge_image::ImageError),
    /// A single-platform image for another platform than the one asked for.
    #[error("image with reference {reference} was found but does not match the specified platform: wanted {wanted}, actual: {actual}")]
    PlatformMismatch {
        /// The reference pulled.
        reference: String,
        /// Requested platform.
        wanted: String,
        /// The image's platform.
        actual: String,
    },
    /// A platform that the index does not have.
    #[error("no matching manifest for {wanted} in the manifest list entries")]
    NoPlatform {
        /// Requested platform.
        wanted: String,
    },
}

impl RegistryError {
    /// HTTP-ish kind for the daemon: "notfound", "unauthorized", "invalid", "internal".
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryError::NotFound(_)
            | RegistryError::NoPlatform { .. }
            | RegistryError::PlatformMismatch { .. } => "notfound",
            RegistryError::Unauthorized(_) => "unauthorized",
            RegistryError::Image(e) if e.kind() == barge_image::ErrorKind::NotFound => "notfound",
            RegistryError::Image(_) | RegistryError::Registry(_) => "internal",
        }
    }
}

pub(crate) fn one_line(s: impl std::fmt::Display) -> String {
    let s = s.to_string();
    let mut out = s.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    if out.len() > 400 {
        out.truncate(400);
    }
    out
}

pub(crate) fn map_oci(e: oci_client::errors::OciDistributionError, what: &str) -> RegistryError {
    use oci_client::errors::OciDistributionError as E;
    let msg = one_line(&e);
    match &e {
        E::ImageManifestNotFoundError(_) => RegistryError::NotFound(what.to_string()),
        E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => RegistryError::Unauthorized(
            format!("unauthorized: authentication required ({what}): {msg}"),
        ),
        E::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope
                .errors
                .iter()
                .map(|x| format!("{:?}", x.code))
                .collect();
            if codes
                .iter()
                .any(|c| c.contains("ManifestUnknown") || c.contains("NameUnknown"))
            {
                RegistryError::NotFound(what.to_string())
            } else if codes
                .iter()
                .any(|c| c.contains("Unauthorized") || c.contains("Denied"))
            {
                RegistryError::Unauthorized(format!(
                    "unauthorized: authentication required ({what})"
                ))
            } else {
                RegistryError::Registry(format!("{what}: {msg}"))
            }
        }
        E::ServerError { code, .. } if *code == 404 => RegistryError::NotFound(what.to_string()),
        E::ServerError { code, .. } if *code == 401 || *code == 403 => {
            RegistryError::Unauthorized(format!("unauthorized: authentication required ({what})"))
        }
        _ => {
            let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
            let mut full = msg.clone();
            while let Some(s) = src {
                full.push_str(": ");
                full.push_str(&one_line(s));
                src = s.source();
            }
            RegistryError::Registry(format!("{what}: {full}"))
        }
    }
}
