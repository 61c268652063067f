//! `barge agent`: another machine joins a `barge server`'s cluster as a node, as k3s's agent
//! does. Start-up, in order:
//! 1. the engine is opened ([`barge_daemon::prepare`], before tokio starts), so `-H` serves
//!    the Docker Engine API exactly as `barge daemon` does;
//! 2. the node's credentials are loaded from `--data-dir`, or fetched once by the join
//!    ([`crate::join::join_node`]: the server CA checked against the token's hash, then the
//!    kubelet client and serving certificates issued by the server) and stored there (keys
//!    `0600`), trying each `--server` in turn;
//! 3. a local load balancer ([`crate::lb`]) forwards `127.0.0.1:<port>` to the first server
//!    that answers; the node agent and the Ingress controller ([`crate::node::start`], the
//!    same start as `barge server`'s own node) are its clients with the node's certificate
//!    (`system:node:<name>`, group `system:nodes`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::args::AgentArgs;
use crate::join::{ClusterSettings, NodeJoin, NodeRequest};
use crate::pki::NodeCerts;
use crate::token::JoinToken;

/// The files of the agent's `--data-dir` (k3s's agent names), certificates then keys.
const FILES: [(&str, u32); 7] = [
    ("server-ca.crt", 0o644),
    ("client-ca.crt", 0o644),
    ("client-kubelet.crt", 0o644),
    ("serving-kubelet.crt", 0o644),
    ("cluster.json", 0o644),
    ("client-kubelet.key", 0o600),
    ("serving-kubelet.key", 0o600),
];

/// Runs `barge agent` with `args` (the arguments after `agent`); returns the exit code.
pub fn main(args: &[String]) -> i32 {
    use clap::Parser;
    let parsed = match AgentArgs::try_parse_from(
        std::iter::once("barge agent".to_string()).chain(args.iter().cloned()),
    ) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 125 } else { 0 };
        }
    };
    match run(parsed) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("barge agent: {e:#}");
            1
        }
    }
}

/// The node's credentials as stored in `dir`, if all of them are there and made for the CA
/// of `token` (a `K10<hash>` token of another cluster: `None`, the node joins again).
pub fn load(dir: &Path, token: &JoinToken) -> Result<Option<NodeJoin>> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f));
    let (Ok(server_ca), Ok(client_ca), Ok(client_cert), Ok(serving_cert), Ok(cluster)) = (
        read("server-ca.crt"),
        read("client-ca.crt"),
        read("client-kubelet.crt"),
        read("serving-kubelet.crt"),
        read("cluster.json"),
    ) else {
        return Ok(None);
    };
    let (Ok(client_key), Ok(serving_key)) =
        (read("client-kubelet.key"), read("serving-kubelet.key"))
    else {
        return Ok(None);
    };
    if token
        .ca_hash()
        .is_some_and(|h| h != crate::join::ca_hash(&server_ca))
    {
        tracing::warn!(dir = %dir.display(), "stored credentials are of another cluster's CA than --token's: joining again");
        return Ok(None);
    }
    let settings: ClusterSettings = serde_json::from_str(&cluster)
        .with_context(|| format!("parsing {}", dir.join("cluster.json").display()))?;
    Ok(Some(NodeJoin {
        certs: NodeCerts {
            client_cert,
            client_key,
            serving_cert,
            serving_key,
            server_ca,
            client_ca,
        },
        settings,
    }))
}

/// Stores the node's credentials in `dir` (created `0700`; keys `0600`), atomically each.
pub fn store(dir: &Path, join: &NodeJoin) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let c = &join.certs;
    let cluster = serde_json::to_string_pretty(&join.settings)?;
    let texts = [
        &c.server_ca,
        &c.client_ca,
        &c.client_cert,
        &c.serving_cert,
        &cluster,
        &c.client_key,
        &c.serving_key,
    ];
    for ((name, mode), text) in FILES.iter().zip(texts) {
        let path = dir.join(name);
        barge_stdx::fs::write_atomic_mode(&path, text.as_bytes(), *mode)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Joins through the first of `servers` that answers, retrying the list every 2 s for up to
/// 2 minutes while none can be reached; a refusal (wrong token, another CA) is final.
fn join_any(servers: &[String], token: &JoinToken, req: &NodeRequest) -> Result<NodeJoin> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut last = None;
        for server in servers {
            match crate::join::join_node(server, token, req) {
                Ok(j) => return Ok(j),
                Err(e) => {
                    let unreachable = e
                        .chain()
                        .any(|c| c.downcast_ref::<std::io::Error>().is_some())
                        && !e.to_string().contains("refused the join token");
                    if !unreachable {
                        return Err(e.context(format!("joining the cluster of --server {server}")));
                    }
                    eprintln!("barge agent: --server {server} unreachable: {e:#}");
                    last = Some(e);
                }
            }
        }
        if Instant::now() > deadline {
            return Err(last
                .unwrap_or_else(|| anyhow::anyhow!("no --server"))
                .context("no --server could be reached"));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// `HOST:PORT` of each `https://HOST[:PORT]` server (the load balancer's targets).
fn targets(servers: &[String]) -> Result<Vec<String>> {
    servers
        .iter()
        .map(|s| {
            let (host, port) = crate::join::parse_server(s)?;
            Ok(if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            })
        })
        .collect()
}

/// Runs the agent until SIGINT/SIGTERM.
pub fn run(args: AgentArgs) -> Result<()> {
    barge_daemon::init_tracing(&args.engine.log_level);
    let servers: Vec<String> = args
        .server
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() {
        bail!("--server: at least one https://HOST:PORT");
    }
    let lb_targets = targets(&servers)?;
    let token = args
        .join
        .given()?
        .context("barge agent needs the cluster's join token (--token or --token-file)")?;

    // 1. The engine, before any tokio runtime.
    let engine = barge_daemon::prepare(args.engine.clone()).context("starting the engine")?;

    // 2. The node's credentials: stored, else joined for.
    let node_name = crate::node::node_name(&args.node);
    let join = match load(&args.data_dir, &token)? {
        Some(j) => j,
        None => {
            let mut ips: Vec<std::net::IpAddr> = args.node.node_ip.into_iter().collect();
            for a in crate::host::addresses() {
                if !ips.contains(&a) {
                    ips.push(a);
                }
            }
            let req = NodeRequest {
                node_name: node_name.clone(),
                node_ips: ips,
            };
            let j = join_any(&servers, &token, &req)?;
            store(&args.data_dir, &j)?;
            tracing::info!(node = %node_name, dir = %args.data_dir.display(), "joined the cluster; credentials stored");
            j
        }
    };
    let tables = crate::node::tables(&engine);

    // 3. The load balancer, the agent and the engine's API in one runtime.
    let rt = barge_daemon::runtime()?;
    let r = rt.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            barge_daemon::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let lb = crate::lb::LoadBalancer::start(lb_targets)
            .await
            .context("starting the load balancer")?;
        let url = format!("https://{}", lb.local_addr());
        let kc = crate::kubeconfig::render(
            &url,
            &join.certs.server_ca,
            &join.certs.client_cert,
            &join.certs.client_key,
        );
        let client = crate::controller_client(&kc, "kubelet").await?;
        crate::node::start(
            client,
            &engine,
            &args.node,
            &join.settings,
            crate::node::KubeletTls {
                serving_cert_pem: join.certs.serving_cert.clone(),
                serving_key_pem: join.certs.serving_key.clone(),
                client_ca_pem: join.certs.client_ca.clone(),
            },
            || stopped(stop_rx.clone()),
        );
        tracing::info!(node = %node_name, servers = ?servers, "barge agent running");
        let r = engine.serve(stopped(stop_rx.clone())).await;
        drop(lb);
        r
    });
    barge_daemon::end_runtime(rt);
    crate::node::remove_tables(&tables);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn credentials_are_stored_0600_and_reused_for_the_same_ca_only() {
        let d = tempfile::tempdir().unwrap();
        let tls = d.path().join("tls");
        crate::pki::ensure(
            &tls,
            &crate::pki::Sans::wanted("10.43.0.1".parse().unwrap(), None, &[], &[]).unwrap(),
        )
        .unwrap();
        let certs = crate::pki::issue_node(&tls, "w1", &["192.0.2.1".parse().unwrap()]).unwrap();
        let join = NodeJoin {
            settings: ClusterSettings {
                cluster_cidr: "10.42.0.0/16".parse().unwrap(),
                service_cidr: "10.43.0.0/16".parse().unwrap(),
                cluster_dns: "10.43.0.10".parse().unwrap(),
                cluster_domain: "cluster.local".into(),
                flannel_backend: barge_network::podnet::Backend::HostGw,
            },
            certs,
        };
        let dir = d.path().join("agent");
        let token = JoinToken::new(&format!(
            "K10{}::server:s",
            crate::join::ca_hash(&join.certs.server_ca)
        ))
        .unwrap();
        assert!(load(&dir, &token).unwrap().is_none());
        store(&dir, &join).unwrap();
        for (f, mode) in FILES {
            let m = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "{f}");
        }
        let back = load(&dir, &token).unwrap().unwrap();
        assert_eq!(back.certs.client_key, join.certs.client_key);
        assert_eq!(back.settings, join.settings);
        let other = JoinToken::new(&format!("K10{}::server:s", "0".repeat(64))).unwrap();
        assert!(load(&dir, &other).unwrap().is_none());
    }

    #[test]
    fn load_balancer_targets() {
        let t = targets(&["https://10.0.0.1:6443".into(), "https://[fd00::1]".into()]).unwrap();
        assert_eq!(t, ["10.0.0.1:6443", "[fd00::1]:6443"]);
    }
}
