//! `barge server` flags, named as k3s's (`k3s server --help`), plus the engine's (`barge
//! daemon`'s, flattened in).

use std::net::IpAddr;
use std::path::PathBuf;

use barge_daemon::DaemonArgs;

/// The join token flags of `barge server` and `barge agent` (k3s's `--token`,
/// `--token-file`), flattened into both; `barge agent` words `--token`'s help its own way
/// ([`AGENT_TOKEN_HELP`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TokenArgs {
    /// Shared secret used to join agents to the cluster (default: generated on first start
    /// and kept in DATA-DIR/token)
    #[arg(
        long = "token",
        short = 't',
        env = "BARGE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// File holding the join token (its first line)
    #[arg(
        long = "token-file",
        env = "BARGE_TOKEN_FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token given on the command line: `--token`, else the first line of
    /// `--token-file` (`None`: neither); errors as [`crate::token::given`].
    pub fn given(&self) -> anyhow::Result<Option<crate::token::JoinToken>> {
        crate::token::given(self.token.as_deref(), self.token_file.as_deref())
    }
}

/// `barge agent`'s help for `--token`: the token it needs is the server's.
const AGENT_TOKEN_HELP: &str =
    "The cluster's join token (`K10<CA hash>::server:<secret>`; the server's DATA-DIR/token)";

/// Flags of `barge server`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "barge server",
    about = "Run the cluster server: a Kubernetes API server (HTTPS) and, unless --disable-agent, \
             this node's engine (the Docker Engine API on -H, as `barge daemon`)"
)]
pub struct ServerArgs {
    /// Folder to hold the server's state (datastore, certificates, join token)
    #[arg(
        long = "data-dir",
        short = 'd',
        default_value = "/var/lib/barge/server"
    )]
    pub data_dir: PathBuf,
    /// Address the Kubernetes API server listens on
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// HTTPS listen port of the Kubernetes API server
    #[arg(long = "https-listen-port", default_value_t = 6443)]
    pub https_listen_port: u16,
    /// IP address the API server advertises to members of the cluster; added to the serving
    /// certificate
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<IpAddr>,
    /// Datastore: empty = embedded SQLite in the data dir; `http://HOST:PORT[,…]` = etcd v3
    #[arg(
        long = "datastore-endpoint",
        env = "BARGE_DATASTORE_ENDPOINT",
        default_value = ""
    )]
    pub datastore_endpoint: String,
    /// Write the admin kubeconfig to this path
    #[arg(
        long = "write-kubeconfig",
        short = 'o',
        env = "BARGE_KUBECONFIG_OUTPUT",
        default_value = "/etc/barge/kubeconfig.yaml"
    )]
    pub write_kubeconfig: PathBuf,
    /// Write the kubeconfig with this mode (octal, e.g. 600 or 644)
    #[arg(
        long = "write-kubeconfig-mode",
        env = "BARGE_KUBECONFIG_MODE",
        default_value = "600",
        value_parser = parse_mode
    )]
    pub write_kubeconfig_mode: u32,
    #[command(flatten)]
    pub join: TokenArgs,
    /// Network CIDR pod IPs come from
    #[arg(long = "cluster-cidr", default_value = "10.42.0.0/16")]
    pub cluster_cidr: ipnet::IpNet,
    /// How pods reach pods on other nodes (k3s's flag): `vxlan` (an overlay, the default),
    /// `host-gw` (routes via the other nodes' addresses; the nodes must share a link) or `none`
    #[arg(long = "flannel-backend", default_value = "vxlan")]
    pub flannel_backend: barge_network::podnet::Backend,
    /// Network CIDR ClusterIPs come from (its first address is the `kubernetes` Service's)
    #[arg(long = "service-cidr", default_value = "10.43.0.0/16")]
    pub service_cidr: ipnet::IpNet,
    /// IPv4 Cluster IP for the cluster DNS service (`kube-dns`; default: the 10th address of
    /// --service-cidr, 10.43.0.10)
    #[arg(long = "cluster-dns")]
    pub cluster_dns: Option<std::net::Ipv4Addr>,
    /// Cluster domain
    #[arg(long = "cluster-domain", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Add an additional hostname or IP as a Subject Alternative Name in the serving
    /// certificate (repeatable)
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
    /// Do not run this node's engine (no Docker Engine API, no workloads on this node)
    #[arg(long = "disable-agent")]
    pub disable_agent: bool,
    /// How long a node may stop renewing its Lease before it is marked `Unknown` and tainted
    /// `node.kubernetes.io/unreachable` (kube-controller-manager's flag)
    #[arg(long = "node-monitor-grace-period", default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
    /// The `tolerationSeconds` of the `node.kubernetes.io/not-ready:NoExecute` toleration
    /// added to every pod that has none (kube-apiserver's flag; DefaultTolerationSeconds)
    #[arg(long = "default-not-ready-toleration-seconds", default_value_t = 300)]
    pub default_not_ready_toleration_seconds: i64,
    /// The `tolerationSeconds` of the `node.kubernetes.io/unreachable:NoExecute` toleration
    /// added to every pod that has none: how long a dead node's pods wait before they are
    /// evicted and recreated elsewhere (kube-apiserver's flag)
    #[arg(long = "default-unreachable-toleration-seconds", default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
    /// How often the HorizontalPodAutoscaler controller syncs each autoscaler
    /// (kube-controller-manager's flag)
    #[arg(long = "horizontal-pod-autoscaler-sync-period", default_value = "15s", value_parser = parse_duration)]
    pub hpa_sync_period: std::time::Duration,
    /// How far back the autoscaler looks for a higher recommendation before it scales down
    /// (kube-controller-manager's flag; a `behavior.scaleDown.stabilizationWindowSeconds`
    /// overrides it per autoscaler)
    #[arg(long = "horizontal-pod-autoscaler-downscale-stabilization", default_value = "5m", value_parser = parse_duration)]
    pub hpa_downscale_stabilization: std::time::Duration,
    /// The minimum change (from 1.0) in the desired-to-actual metrics ratio for the autoscaler
    /// to act (kube-controller-manager's flag)
    #[arg(long = "horizontal-pod-autoscaler-tolerance", default_value_t = 0.1)]
    pub hpa_tolerance: f64,
    /// Join the cluster of the server at this URL (`https://HOST:6443`): fetch its CAs and
    /// ServiceAccount key with --token (the full `K10<CA hash>::server:<secret>` token is
    /// checked against the CA the server presents), then serve the same cluster from
    /// --datastore-endpoint (etcd shared by every server)
    #[arg(long = "server", short = 's', env = "BARGE_URL")]
    pub server: Option<String>,
    /// With --cluster-reset-restore-path: replace the SQLite datastore of --data-dir with that
    /// backup (written by `barge server backup`), then exit; start again without these flags.
    /// With --datastore-endpoint (an etcd restored by `etcdctl snapshot restore`, every server
    /// stopped): reset the datastore after the restore, then exit. Objects keep their
    /// resourceVersions; the store's revision moves 1,000,000,000 ahead and older ones are
    /// compacted, so clients' watches get 410 Gone and relist
    #[arg(long = "cluster-reset")]
    pub cluster_reset: bool,
    /// The backup file --cluster-reset restores
    #[arg(long = "cluster-reset-restore-path", requires = "cluster_reset")]
    pub cluster_reset_restore_path: Option<PathBuf>,
    /// With --datastore-endpoint: before starting, copy the objects of this data dir's SQLite
    /// datastore (DATA-DIR/db/state.db) into the etcd, which must be empty (refused otherwise);
    /// the SQLite file is then renamed state.db.migrated. Run it on the first server only
    #[arg(long = "migrate-from-sqlite")]
    pub migrate_from_sqlite: bool,
    /// This node's flags (the agent's; unused with --disable-agent)
    #[command(flatten, next_help_heading = "Node (as barge agent)")]
    pub node: NodeArgs,
    /// The engine's flags (as `barge daemon`'s)
    #[command(flatten, next_help_heading = "Engine (as barge daemon)")]
    pub engine: DaemonArgs,
}

/// The flags of a node — its agent, Ingress proxy and kubelet endpoint — shared by `barge
/// server` (its own node) and `barge agent` (k3s's agent flags of the same names).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The name of this node's Node object (default: the host name, lower-cased)
    #[arg(long = "node-name", env = "BARGE_NODE_NAME")]
    pub node_name: Option<String>,
    /// This node's InternalIP (default: the address of the default route's interface)
    #[arg(long = "node-ip")]
    pub node_ip: Option<IpAddr>,
    /// The port of the node agent's HTTPS endpoint (kubelet's `--port`: logs, exec, attach,
    /// port-forward, proxied by the API server)
    #[arg(long = "kubelet-port", default_value_t = 10250)]
    pub kubelet_port: u16,
    /// The first back-off before a crashed container of a pod is restarted again (kubelet's
    /// 10s, doubling up to 5m; shorter for tests)
    #[arg(long = "pod-restart-backoff", default_value = "10s", value_parser = parse_duration)]
    pub pod_restart_backoff: std::time::Duration,
    /// How often the node agent samples its pods' CPU and memory (the window of the CPU rate
    /// `kubectl top` and the autoscaler see; cAdvisor's housekeeping interval)
    #[arg(long = "metrics-resolution", default_value = "10s", value_parser = parse_duration)]
    pub metrics_resolution: std::time::Duration,
    /// Port of the built-in Ingress controller's HTTP listener on this node (0: none; with
    /// both ports 0 the Ingress controller is off)
    #[arg(long = "ingress-http-port", default_value_t = 80)]
    pub ingress_http_port: u16,
    /// Port of the built-in Ingress controller's HTTPS listener on this node (0: none)
    #[arg(long = "ingress-https-port", default_value_t = 443)]
    pub ingress_https_port: u16,
}

/// Flags of `barge agent` (k3s's `k3s agent`): join a server's cluster as a node.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "barge agent",
    about = "Join the cluster of a `barge server` as a node: this machine's engine (the Docker \
             Engine API on -H, as `barge daemon`), its node agent and its Ingress proxy",
    mut_arg("token", |a| a.help(AGENT_TOKEN_HELP))
)]
pub struct AgentArgs {
    /// The cluster's servers: `https://HOST:6443`, several comma-separated (or the flag
    /// repeated); the agent talks to the first that answers and fails over to the next
    #[arg(
        long = "server",
        short = 's',
        env = "BARGE_URL",
        value_delimiter = ',',
        required = true
    )]
    pub server: Vec<String>,
    #[command(flatten)]
    pub join: TokenArgs,
    /// Folder to hold the agent's state (its certificates, the cluster's settings)
    #[arg(long = "data-dir", short = 'd', default_value = "/var/lib/barge/agent")]
    pub data_dir: PathBuf,
    #[command(flatten, next_help_heading = "Node")]
    pub node: NodeArgs,
    /// The engine's flags (as `barge daemon`'s)
    #[command(flatten, next_help_heading = "Engine (as barge daemon)")]
    pub engine: DaemonArgs,
}

/// Flags of `barge server backup` (k3s's `etcd-snapshot save` for the embedded SQLite store).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "barge server backup",
    about = "Write a consistent copy of the server's SQLite datastore to FILE, online (the server \
             may run). Restore it with `barge server --cluster-reset \
             --cluster-reset-restore-path FILE`. A server on etcd is backed up with \
             `etcdctl snapshot save` instead"
)]
pub struct BackupArgs {
    /// The server's data dir (its datastore is DATA-DIR/db/state.db)
    #[arg(
        long = "data-dir",
        short = 'd',
        default_value = "/var/lib/barge/server"
    )]
    pub data_dir: PathBuf,
    /// The backup file to write (must not exist)
    pub file: PathBuf,
}

/// Parses a Go duration (`10s`, `500ms`, `1m30s`).
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let ns = barge_stdx::units::parse_go_duration(s).map_err(|e| e.to_string())?;
    u64::try_from(ns)
        .map(std::time::Duration::from_nanos)
        .map_err(|_| format!("invalid duration {s:?}: must not be negative"))
}

/// Parses an octal file mode (`600`, `0644`, `0o640`).
fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim_start_matches("0o");
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("invalid mode {s:?}: want an octal number such as 600 or 644"))?;
    if mode > 0o777 {
        return Err(format!("invalid mode {s:?}: at most 777"));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_are_k3s_like_and_engine_flags_are_accepted() {
        let a = ServerArgs::try_parse_from(["barge server"]).unwrap();
        assert_eq!(a.data_dir, PathBuf::from("/var/lib/barge/server"));
        assert_eq!(a.https_listen_port, 6443);
        assert_eq!(a.bind_address.to_string(), "0.0.0.0");
        assert_eq!(a.write_kubeconfig_mode, 0o600);
        assert_eq!(a.service_cidr.to_string(), "10.43.0.0/16");
        assert_eq!(a.cluster_cidr.to_string(), "10.42.0.0/16");
        assert_eq!(a.flannel_backend, barge_network::podnet::Backend::Vxlan);
        assert_eq!(a.engine.host, vec!["unix:///run/barge/barge.sock"]);
        assert_eq!(
            (a.node.ingress_http_port, a.node.ingress_https_port),
            (80, 443)
        );
        let a = ServerArgs::try_parse_from([
            "barge server",
            "--data-root",
            "/x",
            "-H",
            "unix:///tmp/s.sock",
            "--tls-san",
            "a.example",
            "--tls-san",
            "10.1.2.3",
            "--write-kubeconfig-mode",
            "0644",
            "--disable-agent",
        ])
        .unwrap();
        assert_eq!(a.engine.data_root, PathBuf::from("/x"));
        assert_eq!(a.engine.host, vec!["unix:///tmp/s.sock"]);
        assert_eq!(a.tls_san, vec!["a.example", "10.1.2.3"]);
        assert_eq!(a.write_kubeconfig_mode, 0o644);
        assert!(a.disable_agent);
    }

    #[test]
    fn agent_flags_take_a_server_list_and_the_engine_flags() {
        let a = AgentArgs::try_parse_from([
            "barge agent",
            "--server",
            "https://10.0.0.1:6443,https://10.0.0.2:6443",
            "--token",
            "K10x::server:y",
            "--node-name",
            "w1",
            "-H",
            "unix:///tmp/a.sock",
        ])
        .unwrap();
        assert_eq!(a.server, ["https://10.0.0.1:6443", "https://10.0.0.2:6443"]);
        assert_eq!(a.data_dir, PathBuf::from("/var/lib/barge/agent"));
        assert_eq!(a.node.node_name.as_deref(), Some("w1"));
        assert_eq!(a.engine.host, vec!["unix:///tmp/a.sock"]);
        assert!(AgentArgs::try_parse_from(["barge agent"]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["--write-kubeconfig-mode", "999"][..],
            &["--service-cidr", "nope"],
            &["--token", "a", "--token-file", "/f"],
            &["--cluster-reset-restore-path", "/b"],
        ] {
            let argv = std::iter::once("barge server").chain(bad.iter().copied());
            assert!(ServerArgs::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }
}
