//! `barge server` flags, named as k3s's (`k3s server --help`), plus the engine's (`barge
//! daemon`'s, flattened in).

use std::net::IpAddr;
use std::path::PathBuf;

use barge_daemon::DaemonArgs;

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
    /// Network CIDR pod IPs come from
    #[arg(long = "cluster-cidr", default_value = "10.42.0.0/16")]
    pub cluster_cidr: ipnet::IpNet,
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
    /// How long a node may stop renewing its Lease before it is marked `Unknown` and tainted
    /// `node.kubernetes.io/unreachable` (kube-controller-manager's flag)
    #[arg(long = "node-monitor-grace-period", default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
    /// The engine's flags (as `barge daemon`'s)
    #[command(flatten, next_help_heading = "Engine (as barge daemon)")]
    pub engine: DaemonArgs,
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
        assert_eq!(a.engine.host, vec!["unix:///run/barge/barge.sock"]);
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
    fn bad_values_are_refused() {
        for bad in [
            &["--write-kubeconfig-mode", "999"][..],
            &["--service-cidr", "nope"],
            &["--token", "a", "--token-file", "/f"],
        ] {
            let argv = std::iter::once("barge server").chain(bad.iter().copied());
            assert!(ServerArgs::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }
}
