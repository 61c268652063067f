//! `barge daemon` flags, named as dockerd's.

use std::path::PathBuf;

/// Flags of `barge daemon` (dockerd's names).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "barge daemon",
    about = "Start the barge daemon (serves the Docker Engine API)"
)]
pub struct DaemonArgs {
    /// Root directory of persistent state (images, containers)
    #[arg(long = "data-root", default_value = "/var/lib/barge")]
    pub data_root: PathBuf,
    /// Root directory for execution state files (runtime state, monitor sockets)
    #[arg(long = "exec-root", default_value = "/run/barge")]
    pub exec_root: PathBuf,
    /// Daemon socket to listen on (unix://PATH)
    #[arg(
        short = 'H',
        long = "host",
        default_value = "unix:///run/barge/barge.sock"
    )]
    pub host: Vec<String>,
    /// Register an OCI runtime: NAME=PATH (repeatable)
    #[arg(long = "add-runtime")]
    pub add_runtime: Vec<String>,
    /// Default OCI runtime for containers (`barge` = the embedded one, youki's libcontainer)
    #[arg(long = "default-runtime", default_value = "barge")]
    pub default_runtime: String,
    /// Group that may use the socket (mode 0660); root only when unset
    #[arg(short = 'G', long = "group")]
    pub group: Option<String>,
    /// Logging level (debug, info, warn, error)
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    pub log_level: String,
    /// Path of the static init binary used by --init (default: barge-init next to barge)
    #[arg(long = "init-path")]
    pub init_path: Option<PathBuf>,
    /// Write the daemon's PID to this file
    #[arg(short = 'p', long = "pidfile")]
    pub pidfile: Option<PathBuf>,
    /// Daemon configuration file (JSON, dockerd's daemon.json keys: `insecure-registries`,
    /// `registry-mirrors`, `max-concurrent-downloads`, ...); read when it exists
    #[arg(long = "config-file", default_value = "/etc/barge/daemon.json")]
    pub config_file: PathBuf,
    /// Device of the default bridge network (default: barge0 with the default exec root,
    /// else barge-HASH (HASH of the exec root), so daemons with their own exec roots never share one)
    #[arg(short = 'b', long = "bridge")]
    pub bridge: Option<String>,
    /// Address and prefix of the default bridge (e.g. 10.87.0.1/16; chosen automatically
    /// from free address space when unset)
    #[arg(long = "bip")]
    pub bip: Option<String>,
    /// Enable IPv6 networking on the default bridge network (containers there get an address
    /// from --fixed-cidr-v6, or from a ULA /64 of this daemon's when it is not given)
    #[arg(long = "ipv6")]
    pub ipv6: bool,
    /// IPv6 subnet of the default bridge network (e.g. fd00:1::/64; needs --ipv6)
    #[arg(long = "fixed-cidr-v6")]
    pub fixed_cidr_v6: Option<String>,
    /// DNS server the embedded DNS server forwards other names to (repeatable; default: the
    /// host's /etc/resolv.conf)
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// Address pool user-defined networks get their /24 subnets from
    #[arg(long = "default-address-pool", default_value = "10.120.0.0/14")]
    pub default_address_pool: String,
}
