//! Rule-sync time of the cluster's Service proxy (issue 12's figure; kube-proxy's nftables mode
//! is the anchor): a node with SERVICES Services of 2 endpoints each is synced once (the whole
//! table, one transaction), then one endpoint of one Service changes ROUNDS times; each partial
//! sync is timed (from the desired state in hand to `nft` done) with the commands it sent.
//!
//! ```sh
//! cargo run --release -p barge-network --example bench_kubeproxy -- [SERVICES] [ROUNDS]
//! ```
//!
//! Needs root (nftables). The table is a private one (`barge-bench-proxy-<pid>`), deleted at
//! the end, panics included; no traffic is sent.

use std::net::Ipv4Addr;
use std::time::Instant;

use barge_network::kubeproxy::{delete_table, Endpoint, ServicePort, ServiceProxy};

/// Deletes the table on drop.
struct Table(String);
impl Drop for Table {
    fn drop(&mut self) {
        let _ = delete_table(&self.0);
    }
}

fn service(i: u32, generation: u32) -> ServicePort {
    let ip = |a: u32| Ipv4Addr::from(a.to_be_bytes());
    ServicePort {
        id: format!("bench/svc-{i}/tcp/http"),
        proto: "tcp".into(),
        cluster_ip: Some(ip(0x0a2b_0000 + 10 + i)),
        port: 80,
        node_port: None,
        load_balancer: false,
        affinity_timeout: None,
        endpoints: (0..2)
            .map(|k| Endpoint {
                ip: ip(0x0a2a_0000 + (i * 2 + k + generation * 4096) % 65_000 + 2),
                port: 8080,
            })
            .collect(),
        local_endpoints: Vec::new(),
        internal_local: false,
        external_local: false,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let services: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let name = format!("barge-bench-proxy-{}", std::process::id());
    let _table = Table(name.clone());
    let proxy = ServiceProxy::new(
        &name,
        "10.42.0.0/16".parse().unwrap(),
        "10.43.0.0/16".parse().unwrap(),
    )
    .expect("making the table (root and nft needed)");
    let mut desired: Vec<ServicePort> = (0..services).map(|i| service(i, 0)).collect();
    let t = Instant::now();
    let stats = proxy.sync(&desired).expect("the first sync");
    println!(
        "{services} Services x 2 endpoints: first sync {:.1} ms ({} commands)",
        t.elapsed().as_secs_f64() * 1e3,
        stats.commands
    );
    let mut times = Vec::new();
    let mut commands = 0;
    for round in 1..=rounds {
        // One endpoint of one Service moves (a pod replaced).
        let i = (round * 7919) % services;
        desired[i as usize].endpoints[1] = service(i, round).endpoints[1].clone();
        let t = Instant::now();
        let stats = proxy.sync(&desired).expect("a partial sync");
        times.push(t.elapsed().as_secs_f64() * 1e3);
        commands = stats.commands;
        assert!(!stats.full && stats.changed == 1, "{stats:?}");
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| times[((q * times.len() as f64) as usize).min(times.len() - 1)];
    println!(
        "one endpoint changed, {rounds} rounds: median {:.1} ms, p90 {:.1} ms, max {:.1} ms ({commands} commands each)",
        pick(0.5),
        pick(0.9),
        times[times.len() - 1]
    );
}
