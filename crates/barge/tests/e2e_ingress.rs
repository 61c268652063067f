//! The built-in Ingress controller and the service load balancer on the one-node cluster,
//! driven with kubectl 1.32 and curl: host and path rules to two Services of busybox httpd
//! pods, HTTPS with a Secret's certificate issued by a test CA (SNI), `X-Forwarded-*`, 503
//! without a ready endpoint, 404 for an unknown host, a changed Ingress taking effect, a
//! missing Service or Secret reported as a Warning Event without harming other Ingresses,
//! and a LoadBalancer Service answering on the node's address with its status filled (a
//! second one on the same port staying pending). The proxy listens on free high ports and
//! is reached on loopback; the node address is the host end of a veth pair into a network
//! namespace the test makes, and the load balancer is reached from inside it.

mod common;

use std::process::Command;

use common::server::*;
use common::*;

const NODE: &str = "node1";

/// A service range of its own for each server of this process (a /24).
fn service_cidr() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("10.{}.{}.0/24", 180 + std::process::id() % 20, n % 250)
}

fn start(extra: &[&str]) -> Server {
    let cidr = service_cidr();
    let mut args = vec![
        "--node-name",
        NODE,
        "--service-cidr",
        &cidr,
        "--pod-restart-backoff",
        "1s",
    ];
    args.extend_from_slice(extra);
    let s = Server::start(true, &args);
    let layout = images_dir().join("oci-layout");
    let out = s.barge(&["load", "-i", layout.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    s
}

/// A Deployment `name` of one busybox httpd answering `name` at `/` and `/api/`, with a CGI
/// script `/cgi-bin/env` (from a ConfigMap) printing the forwarded headers it got, and its
/// Service (port 80, named `http`).
fn web(name: &str) -> String {
    let httpd = format!(
        "busybox mkdir -p /www/api && echo {name} > /www/index.html && echo {name} > /www/api/index.html && exec busybox httpd -f -p 8080 -h /www"
    );
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}-cgi, namespace: web}}
data:
  env: |
    #!/bin/sh
    echo Content-Type: text/plain
    echo
    echo "proto=$HTTP_X_FORWARDED_PROTO host=$HTTP_X_FORWARDED_HOST for=$HTTP_X_FORWARDED_FOR"
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeName: {NODE}
      terminationGracePeriodSeconds: 1
      volumes:
      - name: cgi
        configMap: {{name: {name}-cgi, defaultMode: 0755}}
      containers:
      - name: httpd
        image: busybox:1.35
        command: [sh, -c, "{httpd}"]
        ports: [{{name: http, containerPort: 8080}}]
        volumeMounts: [{{name: cgi, mountPath: /www/cgi-bin}}]
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: web}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
"#
    )
}

/// `curl` of `url` with `host` resolved to 127.0.0.1: (status code, body).
fn get(host: &str, port: u16, scheme: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("{scheme}://{host}:{port}{path}");
    let mut args = vec!["-s", "--resolve", &resolve, "-w", "\n%{http_code}"];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = curl(&args);
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.trim().to_string())
}

/// A test CA and a certificate it issues for `names`: (CA PEM, cert PEM, key PEM).
fn test_pki(names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "barge ingress test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

fn events(s: &Server, ns: &str, kind: &str, name: &str) -> String {
    s.k(&[
        "-n",
        ns,
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.kind={kind},involvedObject.name={name}"),
        "-o",
        "jsonpath={range .items[*]}{.type} {.reason} {.message}{\"\\n\"}{end}",
    ])
}

#[test]
fn ingress_routes_hosts_and_paths_over_http_and_https_and_follows_changes() {
    let (hp, sp) = (free_port(), free_port());
    let s = start(&[
        "--ingress-http-port",
        &hp.to_string(),
        "--ingress-https-port",
        &sp.to_string(),
    ]);
    // The default IngressClass.
    let class = s.until(20, "the IngressClass barge", || {
        let o = s.kubectl_with(
            &s.kubeconfig(),
            &["get", "ingressclass", "barge", "-o", "json"],
        );
        o.status.success().then(|| stdout(&o))
    });
    let class: serde_json::Value = serde_json::from_str(&class).unwrap();
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );

    // Two backends, a Service without ready endpoints, the test CA's certificate.
    let (ca, crt, key) = test_pki(&["one.example", "*.wild.example"]);
    let ca_file = s.dir.join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    std::fs::write(s.dir.join("tls.crt"), &crt).unwrap();
    std::fs::write(s.dir.join("tls.key"), &key).unwrap();
    s.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: web}}\n---\n{}{}apiVersion: v1\nkind: Service\nmetadata: {{name: empty, namespace: web}}\nspec:\n  selector: {{app: nothing}}\n  ports: [{{port: 80}}]\n",
            web("alpha"),
            web("beta")
        ),
    );
    let crt_path = s.dir.join("tls.crt");
    let key_path = s.dir.join("tls.key");
    s.k(&[
        "-n",
        "web",
        "create",
        "secret",
        "tls",
        "web-tls",
        &format!("--cert={}", crt_path.display()),
        &format!("--key={}", key_path.display()),
    ]);
    let ingress = |one_root: &str| {
        format!(
            r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web, namespace: web}}
spec:
  tls:
  - hosts: [one.example, "*.wild.example"]
    secretName: web-tls
  rules:
  - host: one.example
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: {one_root}, port: {{number: 80}}}}}}}}
      - {{path: /api, pathType: Prefix, backend: {{service: {{name: beta, port: {{name: http}}}}}}}}
      - {{path: /cgi-bin/env, pathType: Exact, backend: {{service: {{name: beta, port: {{number: 80}}}}}}}}
  - host: two.example
    http:
      paths:
      - {{path: /, pathType: Exact, backend: {{service: {{name: beta, port: {{number: 80}}}}}}}}
  - host: "*.wild.example"
    http:
      paths:
      - {{path: /, pathType: ImplementationSpecific, backend: {{service: {{name: beta, port: {{number: 80}}}}}}}}
  - host: empty.example
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: empty, port: {{number: 80}}}}}}}}
"#
        )
    };
    s.apply(&ingress("alpha"));
    for d in ["alpha", "beta"] {
        s.k(&[
            "-n",
            "web",
            "wait",
            "--for=condition=Available",
            &format!("deployment/{d}"),
            "--timeout=120s",
        ]);
    }
    s.until(30, "one.example routed to alpha", || {
        (get("one.example", hp, "http", "/", &[]) == (200, "alpha".into())).then_some(())
    });
    // Hosts and paths: Prefix element-wise, the longest match, Exact, wildcard hosts.
    assert_eq!(
        get("one.example", hp, "http", "/api/", &[]),
        (200, "beta".into())
    );
    assert_eq!(
        get("ONE.example", hp, "http", "/api/", &[]),
        (200, "beta".into())
    );
    let (code, body) = get("one.example", hp, "http", "/apix/", &[]);
    assert_eq!(code, 404, "alpha's httpd has no /apix/");
    assert!(!body.contains("barge ingress"), "{body}");
    assert_eq!(
        get("two.example", hp, "http", "/", &[]),
        (200, "beta".into())
    );
    let (code, body) = get("two.example", hp, "http", "/api/", &[]);
    assert_eq!(code, 404);
    assert!(
        body.contains("barge ingress"),
        "the proxy's own 404: {body}"
    );
    assert_eq!(
        get("x.wild.example", hp, "http", "/api/", &[]),
        (200, "beta".into())
    );
    // Unknown host: 404; no ready endpoint: 503.
    let (code, body) = get("unknown.example", hp, "http", "/", &[]);
    assert_eq!(code, 404);
    assert!(body.contains("barge ingress"), "{body}");
    assert_eq!(get("empty.example", hp, "http", "/", &[]).0, 503);
    // Forwarded headers.
    let (code, body) = get(
        "one.example",
        hp,
        "http",
        "/cgi-bin/env",
        &["-H", "X-Forwarded-For: 192.0.2.9"],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        format!("proto=http host=one.example:{hp} for=192.0.2.9, 127.0.0.1")
    );

    // HTTPS: the Secret's certificate by SNI, verified against the test CA.
    let ca_arg = ca_file.to_str().unwrap();
    s.until(20, "HTTPS on one.example", || {
        (get("one.example", sp, "https", "/", &["--cacert", ca_arg]) == (200, "alpha".into()))
            .then_some(())
    });
    assert_eq!(
        get(
            "a.wild.example",
            sp,
            "https",
            "/api/",
            &["--cacert", ca_arg]
        ),
        (200, "beta".into())
    );
    let (code, body) = get(
        "one.example",
        sp,
        "https",
        "/cgi-bin/env",
        &["--cacert", ca_arg],
    );
    assert_eq!(
        (code, body.starts_with("proto=https ")),
        (200, true),
        "{body}"
    );
    // A name no Secret covers gets the fallback certificate, which the CA did not sign.
    let (code, _) = get("two.example", sp, "https", "/", &["--cacert", ca_arg]);
    assert_eq!(code, 0, "two.example must not verify");

    // Status: the node's address.
    let node_ip = s.node_ip(NODE);
    s.until(20, "the Ingress's status", || {
        let ip = s.k(&[
            "-n",
            "web",
            "get",
            "ingress",
            "web",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        (ip == node_ip).then_some(())
    });

    // A bad Ingress: Warning Events, and no effect on the others.
    s.apply(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: broken, namespace: web}
spec:
  ingressClassName: barge
  tls:
  - hosts: [broken.example]
    secretName: no-such-secret
  rules:
  - host: broken.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: no-such-service, port: {number: 80}}}}
"#,
    );
    let ev = s.until(20, "the broken Ingress's events", || {
        let e = events(&s, "web", "Ingress", "broken");
        (e.contains("ServiceNotFound") && e.contains("SecretNotFound")).then_some(e)
    });
    assert!(
        ev.contains(r#"Warning ServiceNotFound Service "web/no-such-service" not found"#),
        "{ev}"
    );
    assert!(
        ev.contains(r#"Warning SecretNotFound Secret "web/no-such-secret" not found"#),
        "{ev}"
    );
    assert_eq!(get("broken.example", hp, "http", "/", &[]).0, 503);
    assert_eq!(
        get("one.example", hp, "http", "/", &[]),
        (200, "alpha".into())
    );
    // An Ingress of another class is not ours.
    s.apply(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: other, namespace: web}
spec:
  ingressClassName: nginx
  rules:
  - host: other.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: beta, port: {number: 80}}}}
"#,
    );

    // A change takes effect, with requests flowing all along (none fails during reloads).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (code, body) = get("one.example", hp, "http", "/api/", &[]);
                if (code, body.as_str()) != (200, "beta") {
                    failures.push((code, body));
                }
                n += 1;
            }
            (n, failures)
        })
    };
    s.apply(&ingress("beta"));
    s.until(20, "one.example/ routed to beta", || {
        (get("one.example", hp, "http", "/", &[]) == (200, "beta".into())).then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (n, failures) = load.join().unwrap();
    assert!(
        n > 0 && failures.is_empty(),
        "{n} requests, failed: {failures:?}"
    );
    assert_eq!(get("other.example", hp, "http", "/", &[]).0, 404);

    // Cleanup.
    s.k(&["delete", "namespace", "web", "--timeout=90s"]);
    let mut s = s;
    s.stop();
}

/// A network namespace with a veth pair into it (host end `host_ip/30`), removed on drop.
struct Netns {
    name: String,
    link: String,
}

impl Netns {
    fn new(host_ip: &str, ns_ip: &str) -> Netns {
        let id = std::process::id() % 100_000;
        let n = Netns {
            name: format!("bgi{id}"),
            link: format!("bgi{id}h"),
        };
        let peer = format!("bgi{id}n");
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
        };
        ip(&["netns", "add", &n.name]);
        ip(&[
            "link", "add", &n.link, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &n.name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &n.link]);
        ip(&["link", "set", &n.link, "up"]);
        ip(&[
            "-n",
            &n.name,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &peer,
        ]);
        ip(&["-n", &n.name, "link", "set", &peer, "up"]);
        ip(&["-n", &n.name, "link", "set", "lo", "up"]);
        n
    }

    /// curl inside the namespace.
    fn curl(&self, url: &str) -> (bool, String) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "curl",
                "-s",
                "--max-time",
                "5",
                url,
            ])
            .output()
            .unwrap();
        (out.status.success(), stdout(&out).trim().to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn load_balancer_services_answer_on_the_node_address_with_status() {
    let x = 100 + std::process::id() % 100;
    let (host_ip, ns_ip) = (format!("10.254.{x}.1"), format!("10.254.{x}.2"));
    let ns = Netns::new(&host_ip, &ns_ip);
    let (hp, sp) = (free_port(), free_port());
    let s = start(&[
        "--node-ip",
        &host_ip,
        "--ingress-http-port",
        &hp.to_string(),
        "--ingress-https-port",
        &sp.to_string(),
    ]);
    let lb_port = 18080 + (std::process::id() % 1000) as u16;
    let lb = |name: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: web}}\nspec:\n  type: LoadBalancer\n  selector: {{app: alpha}}\n  ports: [{{name: http, port: {port}, targetPort: http}}]\n---\n"
        )
    };
    s.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: web}}\n---\n{}{}",
        web("alpha"),
        lb("lb", lb_port)
    ));
    s.k(&[
        "-n",
        "web",
        "wait",
        "--for=condition=Available",
        "deployment/alpha",
        "--timeout=120s",
    ]);
    let status = |name: &str| {
        s.k(&[
            "-n",
            "web",
            "get",
            "svc",
            name,
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip} {.status.loadBalancer.ingress[*].ipMode}",
        ])
    };
    s.until(30, "the LoadBalancer's status", || {
        (status("lb") == format!("{host_ip} VIP")).then_some(())
    });
    // From the namespace, on the node's address at the Service's port.
    let url = format!("http://{host_ip}:{lb_port}/");
    s.until(30, "the load balancer answering", || {
        (ns.curl(&url) == (true, "alpha".into())).then_some(())
    });
    // Same port again, and the Ingress proxy's port: pending, with a Warning Event.
    s.apply(&format!("{}{}", lb("lb2", lb_port), lb("lb3", hp)));
    for (name, why) in [
        (
            "lb2",
            format!("port {lb_port}/TCP is in use on the nodes by LoadBalancer Service web/lb"),
        ),
        (
            "lb3",
            format!("port {hp}/TCP is in use on the nodes by the ingress controller"),
        ),
    ] {
        let ev = s.until(20, &format!("{name}'s event"), || {
            let e = events(&s, "web", "Service", name);
            e.contains("SyncLoadBalancerFailed").then_some(e)
        });
        assert!(ev.contains(&why), "{ev}");
        assert_eq!(status(name), "", "{name} must stay pending");
    }
    // The first one gone, the second takes its port.
    s.k(&["-n", "web", "delete", "svc", "lb"]);
    s.until(30, "lb2 admitted", || {
        (status("lb2") == format!("{host_ip} VIP")).then_some(())
    });
    s.until(30, "lb2 answering", || {
        (ns.curl(&url) == (true, "alpha".into())).then_some(())
    });

    // Cleanup.
    s.k(&["delete", "namespace", "web", "--timeout=90s"]);
    let mut s = s;
    s.stop();
    drop(ns);
}

/// A Deployment `streamer` of one multilayer:1 pod (Python's stdlib only) on port 8080: `/ws`
/// a WebSocket echo (each text message back as `echo:` + it), `/stream` a chunked response
/// whose second chunk waits for `/release`, `/upload` a POST body read in 64 KiB pieces with
/// `/progress` telling how much has arrived so far, `/slow?s=N` an answer after N seconds;
/// and its Service (port 80).
const STREAMER: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: streamer, namespace: web}
data:
  backend.py: |
    import base64, hashlib, http.server, struct, threading, time, urllib.parse
    release = threading.Event()
    state = {'received': 0}
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'
        def log_message(self, *a):
            pass
        def reply(self, body):
            b = body.encode()
            self.send_response(200)
            self.send_header('Content-Length', str(len(b)))
            self.end_headers()
            self.wfile.write(b)
        def chunk(self, b):
            self.wfile.write(b'%x\r\n%s\r\n' % (len(b), b))
        def websocket(self):
            key = self.headers['Sec-WebSocket-Key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
            self.send_response(101)
            self.send_header('Upgrade', 'websocket')
            self.send_header('Connection', 'Upgrade')
            self.send_header('Sec-WebSocket-Accept', base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
            self.end_headers()
            self.close_connection = True
            while True:
                h = self.rfile.read(2)
                if len(h) < 2:
                    return
                op, n = h[0] & 15, h[1] & 127
                if n == 126:
                    n = struct.unpack('>H', self.rfile.read(2))[0]
                mask = self.rfile.read(4) if h[1] & 128 else b'\0\0\0\0'
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(self.rfile.read(n)))
                if op == 8:
                    self.wfile.write(b'\x88\x00')
                    return
                out = b'echo:' + data
                self.wfile.write(bytes([0x80 | op, len(out)]) + out)
        def do_GET(self):
            u = urllib.parse.urlparse(self.path)
            q = urllib.parse.parse_qs(u.query)
            if u.path == '/ws' and self.headers.get('Upgrade', '').lower() == 'websocket':
                self.websocket()
            elif u.path == '/stream':
                release.clear()
                self.send_response(200)
                self.send_header('Transfer-Encoding', 'chunked')
                self.end_headers()
                self.chunk(b'first\n')
                release.wait(120)
                self.chunk(b'second\n')
                self.wfile.write(b'0\r\n\r\n')
            elif u.path == '/release':
                release.set()
                self.reply('released')
            elif u.path == '/progress':
                self.reply(str(state['received']))
            elif u.path == '/slow':
                time.sleep(float(q['s'][0]))
                self.reply('slow')
            else:
                self.reply('ok')
        def do_POST(self):
            n = int(self.headers['Content-Length'])
            state['received'] = 0
            while n > 0:
                b = self.rfile.read(min(n, 65536))
                if not b:
                    break
                n -= len(b)
                state['received'] += len(b)
            self.reply('received %d' % state['received'])
    http.server.ThreadingHTTPServer.daemon_threads = True
    http.server.ThreadingHTTPServer(('', 8080), H).serve_forever()
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: streamer, namespace: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: streamer}}
  template:
    metadata: {labels: {app: streamer}}
    spec:
      nodeName: node1
      terminationGracePeriodSeconds: 1
      volumes:
      - name: code
        configMap: {name: streamer}
      containers:
      - name: py
        image: multilayer:1
        args: [/srv/backend.py]
        ports: [{name: http, containerPort: 8080}]
        volumeMounts: [{name: code, mountPath: /srv}]
        readinessProbe:
          httpGet: {path: /, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: streamer, namespace: web}
spec:
  selector: {app: streamer}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: streamer, namespace: web}
spec:
  rules:
  - host: stream.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: streamer, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: impatient
  namespace: web
  annotations: {nginx.ingress.kubernetes.io/proxy-read-timeout: "2"}
spec:
  rules:
  - host: impatient.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: streamer, port: {number: 80}}}}
"#;

/// A raw HTTP/1.1 connection to the proxy on loopback (reads bounded by 60 s).
fn raw(port: u16) -> std::net::TcpStream {
    let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    c
}

/// Reads from `c` into `buf` until `done(buf)`, or the connection ends (then `false`).
fn read_until(
    c: &mut std::net::TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) -> bool {
    use std::io::Read;
    let mut b = [0u8; 16384];
    while !done(buf) {
        match c.read(&mut b) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    true
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// One masked WebSocket text frame from the client (RFC 6455 §5.2), payload < 126 bytes.
fn ws_text(msg: &str) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![0x81, 0x80 | msg.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(msg.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn ingress_passes_websockets_streams_bodies_and_honours_read_timeouts() {
    use std::io::Write;
    let hp = free_port();
    let s = start(&[
        "--ingress-http-port",
        &hp.to_string(),
        "--ingress-https-port",
        "0",
    ]);
    s.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: web}}\n---\n{STREAMER}"
    ));
    s.k(&[
        "-n",
        "web",
        "wait",
        "--for=condition=Available",
        "deployment/streamer",
        "--timeout=120s",
    ]);
    for host in ["stream.example", "impatient.example"] {
        s.until(30, &format!("{host} routed"), || {
            (get(host, hp, "http", "/", &[]) == (200, "ok".into())).then_some(())
        });
    }

    // WebSocket: the upgrade passes through (the backend's accept key for RFC 6455's sample
    // nonce), then frames flow both ways on the one connection.
    let mut c = raw(hp);
    c.write_all(b"GET /ws HTTP/1.1\r\nHost: stream.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    assert!(read_until(&mut c, &mut buf, |b| contains(b, "\r\n\r\n")));
    let head = String::from_utf8_lossy(&buf).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let mut rest = buf[buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..].to_vec();
    for msg in ["hello", "second message"] {
        c.write_all(&ws_text(msg)).unwrap();
        let want = format!("echo:{msg}");
        let mut frame = vec![0x81, want.len() as u8];
        frame.extend_from_slice(want.as_bytes());
        assert!(read_until(&mut c, &mut rest, |b| b.len() >= frame.len()));
        assert_eq!(
            rest[..frame.len()],
            frame[..],
            "{:?}",
            String::from_utf8_lossy(&rest)
        );
        rest.drain(..frame.len());
    }
    c.write_all(&[0x88, 0x80, 0, 0, 0, 0]).unwrap();
    assert!(read_until(&mut c, &mut rest, |b| b.len() >= 2));
    assert_eq!(rest[..2], [0x88, 0x00]);
    drop(c);

    // A chunked response arrives piece by piece: the first chunk is here while the backend
    // still waits to send the second.
    let mut c = raw(hp);
    c.write_all(b"GET /stream HTTP/1.1\r\nHost: stream.example\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    assert!(
        read_until(&mut c, &mut buf, |b| contains(b, "first")),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(!contains(&buf, "second"));
    assert_eq!(get("stream.example", hp, "http", "/release", &[]).0, 200);
    assert!(
        read_until(&mut c, &mut buf, |b| contains(b, "0\r\n\r\n")),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(contains(&buf, "second"));
    drop(c);

    // A large request body streams: the backend has a good part of it while most of it is
    // not even sent yet.
    const TOTAL: usize = 64 << 20;
    let mut c = raw(hp);
    c.write_all(
        format!("POST /upload HTTP/1.1\r\nHost: stream.example\r\nContent-Length: {TOTAL}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let piece = vec![b'x'; 1 << 20];
    for _ in 0..4 {
        c.write_all(&piece).unwrap();
    }
    s.until(30, "the backend receiving the body's start", || {
        let (code, body) = get("stream.example", hp, "http", "/progress", &[]);
        let n: usize = body.parse().unwrap_or(0);
        (code == 200 && n >= 1 << 20).then_some(())
    });
    for _ in 4..(TOTAL >> 20) {
        c.write_all(&piece).unwrap();
    }
    let mut buf = Vec::new();
    let want = format!("received {TOTAL}");
    assert!(
        read_until(&mut c, &mut buf, |b| contains(b, &want)),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    drop(c);

    // Read timeouts: the annotation's 2 s gives a 504 for a backend slower than that (well
    // before it answers); the Ingress without it waits (ingress-nginx's default, 60 s).
    let t = std::time::Instant::now();
    let (code, body) = get("impatient.example", hp, "http", "/slow?s=8", &[]);
    let took = t.elapsed();
    assert_eq!(code, 504, "{body}");
    assert!(body.contains("barge ingress"), "{body}");
    assert!(
        took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(
        get("stream.example", hp, "http", "/slow?s=3", &[]),
        (200, "slow".into())
    );
    // Between two pieces of a body too: the stream is cut after the first chunk.
    let mut c = raw(hp);
    c.write_all(b"GET /stream HTTP/1.1\r\nHost: impatient.example\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let t = std::time::Instant::now();
    assert!(read_until(&mut c, &mut buf, |b| contains(b, "first")));
    assert!(
        !read_until(&mut c, &mut buf, |b| contains(b, "0\r\n\r\n")),
        "the response must be cut: {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        t.elapsed()
    );
    assert!(!contains(&buf, "second"));
    drop(c);
    // Let the waiting handler go.
    get("stream.example", hp, "http", "/release", &[]);

    // Cleanup.
    s.k(&["delete", "namespace", "web", "--timeout=90s"]);
    let mut s = s;
    s.stop();
}
