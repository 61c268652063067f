//! Errors of the container engine. Only the daemon maps [`ErrorKind`] to HTTP status codes.

/// Class of a [`ContainerError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404
    NotFound,
    /// 400
    InvalidInput,
    /// 409 (name in use, container running, ...)
    Conflict,
    /// 500
    Internal,
}

/// Errors from the container engine.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("No such exec instance: {0}")]
    ExecNotFound(String),
    /// A `--link` target that does not exist (dockerd's `registerLinks` wording).
    #[error("could not get container for {0}: No such container: {0}")]
    LinkNotFound(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("invalid {field}: {reason}")]
    InvalidOption { field: String, reason: String },
    /// A `HostConfig` dockerd refuses, in dockerd's words.
    #[error("{0}")]
    BadHostConfig(String),
    /// A log driver barge does not have (dockerd's `logger` factory wording).
    #[error("logger: no log driver named '{0}' is registered")]
    NoLogDriver(String),
    /// dockerd's `ContainerRm` refusal (20.10's wording, which clients' tests match on).
    #[error("You cannot remove a {state} container {id}. {}", if state == "paused" { "Unpause and then stop the container before attempting removal or force remove" } else { "Stop the container before attempting removal or force remove" })]
    RunningRemove { state: String, id: String },
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error("container {0} is paused, unpause the container first")]
    Paused(String),
    #[error("container {0} is not paused")]
    NotPaused(String),
    /// The OCI runtime failed to create/start the process. `message` is the runtime's own text
    /// (e.g. `exec: "foo": executable file not found in $PATH`), which clients use to pick 126/127.
    #[error("failed to create task for container: {message}: unknown")]
    StartFailed { message: String },
    /// A bad `-v`/`--mount`/`--tmpfs`/`--volumes-from` request (dockerd's message).
    #[error("{0}")]
    InvalidMount(String),
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
    #[error(transparent)]
    Image(#[from] barge_image::ImageError),
    /// File system access to a container (`cp`, `diff`, `export`).
    #[error(transparent)]
    Fs(#[from] crate::fsops::FsError),
    #[error("container rootfs is marked read-only")]
    ReadOnlyRootfs,
    #[error(transparent)]
    Network(#[from] barge_network::NetworkError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl ContainerError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ContainerError::NotFound(_)
            | ContainerError::ExecNotFound(_)
            | ContainerError::LinkNotFound(_) => ErrorKind::NotFound,
            ContainerError::NameInUse { .. }
            | ContainerError::RunningRemove { .. }
            | ContainerError::NotRunning(_)
            | ContainerError::AlreadyRunning(_)
            | ContainerError::Paused(_)
            | ContainerError::NotPaused(_) => ErrorKind::Conflict,
            ContainerError::InvalidName(_)
            | ContainerError::InvalidOption { .. }
            | ContainerError::NoLogDriver(_)
            | ContainerError::BadHostConfig(_)
            | ContainerError::InvalidMount(_) => ErrorKind::InvalidInput,
            ContainerError::Volume(e) => match e.kind() {
                crate::volumes::VolumeErrorKind::NotFound => ErrorKind::NotFound,
                crate::volumes::VolumeErrorKind::InvalidInput => ErrorKind::InvalidInput,
                crate::volumes::VolumeErrorKind::Conflict => ErrorKind::Conflict,
                crate::volumes::VolumeErrorKind::Internal => ErrorKind::Internal,
            },
            ContainerError::StartFailed { .. } | ContainerError::Io { .. } => ErrorKind::Internal,
            ContainerError::ReadOnlyRootfs => ErrorKind::InvalidInput,
            ContainerError::Fs(e) => match e {
                crate::fsops::FsError::NotFound(_) => ErrorKind::NotFound,
                crate::fsops::FsError::Invalid(_) | crate::fsops::FsError::Loop(_) => {
                    ErrorKind::InvalidInput
                }
                crate::fsops::FsError::Io { .. } => ErrorKind::Internal,
            },
            ContainerError::Network(e) => match e.kind() {
                barge_network::ErrorKind::NotFound => ErrorKind::NotFound,
                barge_network::ErrorKind::InvalidInput | barge_network::ErrorKind::Forbidden => {
                    ErrorKind::InvalidInput
                }
                barge_network::ErrorKind::Conflict => ErrorKind::Conflict,
                barge_network::ErrorKind::Internal => ErrorKind::Internal,
            },
            ContainerError::Image(e) => match e.kind() {
                barge_image::ErrorKind::NotFound => ErrorKind::NotFound,
                barge_image::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
                barge_image::ErrorKind::Conflict => ErrorKind::Conflict,
                barge_image::ErrorKind::Internal => ErrorKind::Internal,
            },
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ContainerError::Io {
            what: what.into(),
            source,
        }
    }
}

impl From<crate::mounts::MountError> for ContainerError {
    fn from(e: crate::mounts::MountError) -> Self {
        ContainerError::InvalidMount(e.0)
    }
}
