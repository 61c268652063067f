//! The admin kubeconfig (`--write-kubeconfig`), in the shape k3s writes: cluster, user and
//! context all named `default`, credentials inlined as `*-data` (base64 PEM), so the file
//! works as it is wherever it is copied.

use std::net::IpAddr;

use base64::Engine as _;

/// The URL clients on this host use: `https://127.0.0.1:PORT` when the server listens on every
/// IPv4 address or on loopback, `https://[::1]:PORT` for `::`, else the bind address itself.
pub fn local_server_url(bind: IpAddr, port: u16) -> String {
    match bind {
        IpAddr::V4(v4) if v4.is_unspecified() || v4.is_loopback() => {
            format!("https://127.0.0.1:{port}")
        }
        IpAddr::V6(v6) if v6.is_unspecified() || v6.is_loopback() => {
            format!("https://[::1]:{port}")
        }
        IpAddr::V4(v4) => format!("https://{v4}:{port}"),
        IpAddr::V6(v6) => format!("https://[{v6}]:{port}"),
    }
}

/// Renders the kubeconfig YAML for `server` with the given PEM texts.
pub fn render(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_each_bind_address() {
        let u = |b: &str| local_server_url(b.parse().unwrap(), 6443);
        assert_eq!(u("0.0.0.0"), "https://127.0.0.1:6443");
        assert_eq!(u("127.0.0.1"), "https://127.0.0.1:6443");
        assert_eq!(u("::"), "https://[::1]:6443");
        assert_eq!(u("192.0.2.1"), "https://192.0.2.1:6443");
        assert_eq!(u("2001:db8::1"), "https://[2001:db8::1]:6443");
    }

    #[test]
    fn the_yaml_names_everything_default_and_inlines_base64() {
        let y = render("https://127.0.0.1:1", "CA", "CERT", "KEY");
        assert!(y.contains("    server: https://127.0.0.1:1\n"), "{y}");
        assert!(y.contains("certificate-authority-data: Q0E=\n"), "{y}");
        assert!(y.contains("client-certificate-data: Q0VSVA==\n"), "{y}");
        assert!(y.contains("client-key-data: S0VZ\n"), "{y}");
        assert!(y.contains("current-context: default\n"), "{y}");
    }
}
