//! The network crate's one error type.

use thiserror::Error;

/// Errors of [`crate::Networks`]. The daemon maps [`NetworkError::kind`] to HTTP status codes.
#[derive(Debug, Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network with name {0} already exists")]
    NameInUse(String),
    #[error("error while removing network: network {name} id {id} has active endpoints")]
    InUse { name: String, id: String },
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// Several networks match a name (dockerd 20.10 allowed duplicate names) or an ID prefix;
    /// libnetwork's FindNetwork wording.
    #[error("network {term} is ambiguous ({count} matches found {})", if *.on_name { "on name" } else { "based on ID prefix" })]
    Ambiguous {
        term: String,
        count: usize,
        on_name: bool,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("no available addresses in {0}")]
    Exhausted(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink: {what}: {message}")]
    Netlink { what: String, message: String },
    #[error("nftables: {0}")]
    Nft(String),
    /// `br_netfilter` is missing and could not be loaded ([`crate::host::ensure_bridge_netfilter`]).
    #[error("br_netfilter: {0}")]
    BridgeNetfilter(String),
}

/// Coarse classes of [`NetworkError`] for callers mapping to status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Conflict,
    InvalidInput,
    Forbidden,
    Internal,
}

impl NetworkError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::NotFound(_) => ErrorKind::NotFound,
            NetworkError::NameInUse(_) | NetworkError::InUse { .. } | NetworkError::Conflict(_) => {
                ErrorKind::Conflict
            }
            NetworkError::Predefined(_) => ErrorKind::Forbidden,
            NetworkError::Invalid { .. }
            | NetworkError::Ambiguous { .. }
            | NetworkError::Exhausted(_) => ErrorKind::InvalidInput,
            _ => ErrorKind::Internal,
        }
    }

    /// The message of `GET /networks/{id}` for this error: its router words an ambiguous
    /// name or prefix as `2 matches found based on name: network x is ambiguous`.
    pub fn inspect_message(&self) -> String {
        match self {
            NetworkError::Ambiguous {
                term,
                count,
                on_name,
            } => format!(
                "{count} matches found based on {}: network {term} is ambiguous",
                if *on_name { "name" } else { "ID prefix" }
            ),
            e => e.to_string(),
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        NetworkError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Self {
        NetworkError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn netlink(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        NetworkError::Netlink {
            what: what.into(),
            message: e.to_string(),
        }
    }
}
