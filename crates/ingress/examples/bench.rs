//! The Ingress proxy vs nginx (Debian's package) as reverse proxies to the same backend on
//! loopback, driven by the same bounded client; prints requests/s, p50 and p99 of each and
//! the ratio (issue 12's "Ingress vs nginx" figure, recorded in docs/benchmarks.md).
//!
//! ```sh
//! cargo run --release -p barge-ingress --example bench -- [REQUESTS] [CONNECTIONS] [ROUNDS]
//! # or, without a release build of the dependencies (docs/benchmarks.md's figures):
//! CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo run -p barge-ingress --example bench -- 20000 32 3
//! ```
//!
//! - backend: a hyper HTTP/1.1 server answering `GET /` with 13 bytes, on its own runtime;
//! - barge: [`barge_ingress::proxy`] with a routing table built by `Table::build` from an
//!   Ingress, a Service and an EndpointSlice pointing at the backend (2 worker threads,
//!   the machine's cores here, each with its own single-threaded runtime, and one thread
//!   accepting connections);
//! - nginx: `/usr/sbin/nginx`, 2 workers, an upstream with keepalive and the headers
//!   ingress-nginx sets (`X-Forwarded-For`/`-Proto`/`-Host`, `X-Real-IP`), access log off;
//! - client: CONNECTIONS keep-alive connections (hyper), REQUESTS requests in all per round,
//!   each timed; rounds alternate barge and nginx after one warm-up round of each;
//! - proxy CPU per request: the CPU time (`/proc/*/schedstat`) of the proxy's threads (named
//!   `proxy`) or of nginx's master and workers during a round, over its requests. It depends
//!   far less on the machine's load than requests/s (the client and the backend share the
//!   same cores, and so do other jobs).
//!
//! Everything listens on 127.0.0.1; nginx runs from a temporary directory and is stopped
//! (and the directory removed) at the end, even on a panic.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;

const HOST: &str = "bench.local";

/// A runtime of `threads` workers named `name` (so `perf report --comm NAME` shows one side).
fn runtime(name: &str, threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The backend: `hello, world\n` to every request.
fn backend(rt: &tokio::runtime::Runtime) -> SocketAddr {
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind the backend");
    let addr = l.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((c, _)) = l.accept().await else {
                continue;
            };
            let _ = c.set_nodelay(true);
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"hello, world\n",
                        ))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(c), svc)
                    .await;
            });
        }
    });
    addr
}

/// barge's proxy routing `bench.local` to `backend`.
fn barge(rt: &tokio::runtime::Runtime, backend: SocketAddr) -> SocketAddr {
    let ingress: Ingress = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {"rules": [{"host": HOST, "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "bench", "port": {"number": 80}}}}]}}]}
    }))
    .unwrap();
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap();
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench-1", "namespace": "bench",
            "labels": {"kubernetes.io/service-name": "bench"}},
        "addressType": "IPv4",
        "ports": [{"port": backend.port()}],
        "endpoints": [{"addresses": [backend.ip().to_string()], "conditions": {"ready": true}}]
    }))
    .unwrap();
    let (table, problems) = barge_ingress::routes::Table::build(&barge_ingress::routes::Inputs {
        ingresses: vec![&ingress],
        services: &[Arc::new(service)],
        slices: &[Arc::new(slice)],
        secrets: &[],
    });
    assert!(problems.is_empty(), "{problems:?}");
    let proxy = barge_ingress::proxy::Proxy::new().expect("the proxy");
    proxy.swap(table);
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind the proxy");
    let addr = l.local_addr().unwrap();
    // The proxy's 2 workers (threads named `proxy`, as the accepting runtime's).
    let workers = barge_ingress::workers::Workers::start(2, "proxy").expect("the workers");
    rt.spawn(barge_ingress::proxy::serve_http(
        l,
        proxy,
        Arc::new(workers),
    ));
    addr
}

/// nginx from a temporary directory, stopped and removed on drop.
struct Nginx {
    dir: PathBuf,
    child: Child,
    addr: SocketAddr,
}

impl Nginx {
    fn start(backend: SocketAddr) -> Nginx {
        let bin = "/usr/sbin/nginx";
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: install Debian's nginx (scripts/install-deps.sh)"
        );
        let dir = std::env::temp_dir().join(format!("barge-bench-nginx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process on;
worker_processes 2;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  upstream backend {{ server {backend}; keepalive 320; }}
  server {{
    listen 127.0.0.1:{port};
    server_name {HOST};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_connect_timeout 5s;
      proxy_read_timeout 60s;
    }}
  }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx { dir, child, addr }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: nginx's graceful stop of the master and its workers.
        // SAFETY: a signal to the child this process started and still owns.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One round: `requests` GETs over `conns` keep-alive connections; (requests/s, latencies).
fn round(
    rt: &tokio::runtime::Runtime,
    target: SocketAddr,
    requests: usize,
    conns: usize,
) -> (f64, Vec<Duration>) {
    rt.block_on(async move {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(conns)
            .build_http();
        let client = Arc::new(client);
        let start = Instant::now();
        let tasks: Vec<_> = (0..conns)
            .map(|i| {
                let client = client.clone();
                let n = requests / conns + usize::from(i < requests % conns);
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(n);
                    for _ in 0..n {
                        let req = Request::get(format!("http://{target}/"))
                            .header("host", HOST)
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        let t = Instant::now();
                        let resp = client.request(req).await.expect("a response");
                        assert_eq!(resp.status(), 200);
                        let body = resp.into_body().collect().await.expect("a body").to_bytes();
                        assert_eq!(&body[..], b"hello, world\n");
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::with_capacity(requests);
        for t in tasks {
            all.extend(t.await.expect("a client task"));
        }
        let secs = start.elapsed().as_secs_f64();
        (requests as f64 / secs, all)
    })
}

/// CPU time (ns, from `schedstat`) used so far by this process's threads named `name`.
fn threads_cpu(name: &str) -> u64 {
    let mut ns = 0;
    for t in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            ns += schedstat(&t.path());
        }
    }
    ns
}

/// CPU time (ns) used so far by process `master` and its children (nginx's workers).
fn procs_cpu(master: u32) -> u64 {
    let mut ns = schedstat(&PathBuf::from(format!("/proc/{master}")));
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(master) {
            ns += schedstat(&p.path());
        }
    }
    ns
}

/// The first field of `dir/schedstat`: time spent on a CPU, in ns (0 if unreadable).
fn schedstat(dir: &std::path::Path) -> u64 {
    std::fs::read_to_string(dir.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("REQUESTS CONNECTIONS ROUNDS: numbers"))
        .collect();
    let requests = args.first().copied().unwrap_or(50_000);
    let conns = args.get(1).copied().unwrap_or(32);
    let rounds = args.get(2).copied().unwrap_or(3);
    let backend_rt = runtime("backend", 1);
    // Accepts only: the proxy's connections are served by its 2 workers.
    let proxy_rt = runtime("proxy", 1);
    let client_rt = runtime("client", 1);
    let b = backend(&backend_rt);
    let barge = barge(&proxy_rt, b);
    let nginx = Nginx::start(b);
    println!(
        "ingress vs nginx: {requests} requests over {conns} keep-alive connections, {rounds} rounds each (after a warm-up)"
    );
    round(&client_rt, barge, requests / 10, conns);
    round(&client_rt, nginx.addr, requests / 10, conns);
    let nginx_pid = nginx.child.id();
    let cpu = |i: usize| {
        if i == 0 {
            threads_cpu("proxy")
        } else {
            procs_cpu(nginx_pid)
        }
    };
    // (name, requests/s of each round, latencies, proxy CPU µs per request of each round)
    type Results = (&'static str, Vec<f64>, Vec<Duration>, Vec<f64>);
    let mut results: Vec<Results> = vec![
        ("barge", vec![], vec![], vec![]),
        ("nginx", vec![], vec![], vec![]),
    ];
    for _ in 0..rounds {
        for (i, target) in [barge, nginx.addr].into_iter().enumerate() {
            let before = cpu(i);
            let (rps, lat) = round(&client_rt, target, requests, conns);
            let used = cpu(i).saturating_sub(before);
            results[i].1.push(rps);
            results[i].2.extend(lat);
            results[i].3.push(used as f64 / 1e3 / requests as f64);
        }
    }
    let mut summary = Vec::new();
    for (name, rps, lat, cpu) in &mut results {
        lat.sort();
        rps.sort_by(|a, b| a.total_cmp(b));
        cpu.sort_by(|a, b| a.total_cmp(b));
        let median = rps[rps.len() / 2];
        let cpu_median = cpu[cpu.len() / 2];
        let (p50, p99) = (pct(lat, 0.50), pct(lat, 0.99));
        println!(
            "{name:>6}: {median:>9.0} req/s (median of {rounds}; rounds {}), p50 {:>7.3} ms, p99 {:>7.3} ms, proxy CPU {cpu_median:.1} µs/request",
            rps.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" / "),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        summary.push((median, p99, cpu_median));
    }
    println!(
        "barge/nginx: requests/s x{:.2}, p99 x{:.2}, proxy CPU per request x{:.2}",
        summary[0].0 / summary[1].0,
        summary[0].1.as_secs_f64() / summary[1].1.as_secs_f64(),
        summary[0].2 / summary[1].2
    );
}
