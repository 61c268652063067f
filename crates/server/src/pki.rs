//! The cluster's certificates, in `DATA-DIR/tls` (k3s's layout and names): two CAs and the
//! certificates they sign, made on first start and reused after.
//!
//! | file | what |
//! |---|---|
//! | `server-ca.crt/.key` | CA of the API server's serving certificate (kubeconfig's `certificate-authority-data`) |
//! | `serving-kube-apiserver.crt/.key` | the serving certificate: `kubernetes`, `kubernetes.default[.svc[.cluster.local]]`, localhost, the host's names and addresses, the first service IP, each `--tls-san` |
//! | `client-ca.crt/.key` | CA of client certificates (the API server trusts it for x509 authentication) |
//! | `client-admin.crt/.key` | the admin's client certificate: CN `system:admin`, O `system:masters` |
//! | `client-kube-apiserver.crt/.key` | the API server's client certificate for node agents: CN `system:kube-apiserver-kubelet-client`, O `system:masters` |
//! | `serving-kubelet.crt/.key` | the node agent's serving certificate (its `:10250` endpoint), signed by the server CA, same SANs as the API server's |
//!
//! Keys are ECDSA P-256 (fast to make, accepted by kubectl/client-go), written `0600`; every
//! file is written atomically. A restart reuses every file; the serving certificate is issued
//! again only when its SAN set differs from the wanted one, it was not signed by the current
//! server CA, or it expires within 90 days. CAs are valid 10 years, leaf certificates 1 year
//! (as k3s).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Errors of [`ensure`]: which file, and what failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Rcgen {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("{path}: not a usable certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("invalid --tls-san {0:?}: want a DNS name or an IP address")]
    BadSan(String),
}

type Result<T> = std::result::Result<T, PkiError>;

/// The subject alternative name set of a serving certificate (compared as a set on restart).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sans {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl Sans {
    /// The SANs `barge server` wants: loopback names, `kubernetes…` Service names, the first
    /// service IP, the host's `hostname` and `addresses`, `advertise`, and each extra name
    /// (`--tls-san`, a DNS name or an IP).
    pub fn wanted(
        first_service_ip: IpAddr,
        hostname: Option<&str>,
        addresses: &[IpAddr],
        extra: &[String],
    ) -> Result<Sans> {
        let mut s = Sans::default();
        for d in [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ] {
            s.dns.insert(d.to_string());
        }
        s.ips.insert(IpAddr::from([127, 0, 0, 1]));
        s.ips.insert(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        s.ips.insert(first_service_ip);
        s.ips.extend(addresses.iter().copied());
        if let Some(h) = hostname {
            s.dns.insert(h.to_ascii_lowercase());
        }
        for e in extra {
            let e = e.trim();
            if let Ok(ip) = e.parse::<IpAddr>() {
                s.ips.insert(ip);
            } else if valid_dns_name(e) {
                s.dns.insert(e.to_ascii_lowercase());
            } else {
                return Err(PkiError::BadSan(e.to_string()));
            }
        }
        Ok(s)
    }

    fn to_rcgen(&self) -> Result<Vec<SanType>> {
        let mut v = Vec::new();
        for d in &self.dns {
            let name = d.clone().try_into().map_err(|e| PkiError::Rcgen {
                what: format!("SAN {d:?}"),
                source: e,
            })?;
            v.push(SanType::DnsName(name));
        }
        v.extend(self.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        Ok(v)
    }
}

/// A DNS name a certificate may carry: labels of letters, digits and `-` (a leading `*.`
/// wildcard allowed), at most 253 characters.
fn valid_dns_name(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The PEM texts the server and the kubeconfig need.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The server CA's certificate (clients verify the API server against it).
    pub server_ca_pem: String,
    /// The client CA's certificate (the API server verifies client certificates against it).
    pub client_ca_pem: String,
    /// The serving certificate and its key.
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    /// The admin client certificate (`system:admin` / `system:masters`) and its key.
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// Whether this call made the serving certificate (first start or a SAN change).
    pub serving_issued: bool,
    /// The API server's client certificate for node agents
    /// (`system:kube-apiserver-kubelet-client`) and its key.
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
    /// The node agent's serving certificate and its key.
    pub kubelet_serving_cert_pem: String,
    pub kubelet_serving_key_pem: String,
}

/// The CN of the API server's client certificate towards node agents (kube's).
pub const KUBELET_CLIENT_CN: &str = "system:kube-apiserver-kubelet-client";

/// Makes (first start) or loads (later starts) every certificate under `dir` (created `0700`
/// if missing), issuing the serving certificate again if its SANs differ from `sans`.
pub fn ensure(dir: &Path, sans: &Sans) -> Result<Pki> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    set_mode(dir, 0o700)?;
    let now = OffsetDateTime::now_utc();

    let (server_ca_pem, server_ca) = ca(dir, "server-ca", "barge-server-ca", now)?;
    let (client_ca_pem, client_ca) = ca(dir, "client-ca", "barge-client-ca", now)?;

    let crt = dir.join("serving-kube-apiserver.crt");
    let key = dir.join("serving-kube-apiserver.key");
    let existing = match (read_opt(&crt)?, read_opt(&key)?) {
        (Some(c), Some(k)) if serving_is_current(&c, &server_ca_pem, sans, now) => Some((c, k)),
        _ => None,
    };
    let (serving_cert_pem, serving_key_pem, serving_issued) = match existing {
        Some((c, k)) => (c, k, false),
        None => {
            let mut p = leaf_params("kube-apiserver", None, now)?;
            p.subject_alt_names = sans.to_rcgen()?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let (c, k) = issue(&p, &server_ca, "the serving certificate")?;
            write(&key, &k, 0o600)?;
            write(&crt, &c, 0o644)?;
            tracing::info!(path = %crt.display(), "issued the API server's serving certificate");
            (c, k, true)
        }
    };

    let crt = dir.join("client-admin.crt");
    let key = dir.join("client-admin.key");
    let (admin_cert_pem, admin_key_pem) = match (read_opt(&crt)?, read_opt(&key)?) {
        (Some(c), Some(k)) => (c, k),
        _ => {
            let mut p = leaf_params("system:admin", Some("system:masters"), now)?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let (c, k) = issue(&p, &client_ca, "the admin client certificate")?;
            write(&key, &k, 0o600)?;
            write(&crt, &c, 0o644)?;
            (c, k)
        }
    };

    let crt = dir.join("client-kube-apiserver.crt");
    let key = dir.join("client-kube-apiserver.key");
    let (kubelet_client_cert_pem, kubelet_client_key_pem) = match (read_opt(&crt)?, read_opt(&key)?)
    {
        (Some(c), Some(k)) => (c, k),
        _ => {
            let mut p = leaf_params(KUBELET_CLIENT_CN, Some("system:masters"), now)?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let (c, k) = issue(
                &p,
                &client_ca,
                "the API server's kubelet client certificate",
            )?;
            write(&key, &k, 0o600)?;
            write(&crt, &c, 0o644)?;
            (c, k)
        }
    };

    let crt = dir.join("serving-kubelet.crt");
    let key = dir.join("serving-kubelet.key");
    let (kubelet_serving_cert_pem, kubelet_serving_key_pem) =
        match (read_opt(&crt)?, read_opt(&key)?) {
            (Some(c), Some(k)) if serving_is_current(&c, &server_ca_pem, sans, now) => (c, k),
            _ => {
                let mut p = leaf_params("barge-kubelet", None, now)?;
                p.subject_alt_names = sans.to_rcgen()?;
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                let (c, k) = issue(&p, &server_ca, "the node agent's serving certificate")?;
                write(&key, &k, 0o600)?;
                write(&crt, &c, 0o644)?;
                (c, k)
            }
        };

    Ok(Pki {
        kubelet_client_cert_pem,
        kubelet_client_key_pem,
        kubelet_serving_cert_pem,
        kubelet_serving_key_pem,
        server_ca_pem,
        client_ca_pem,
        serving_cert_pem,
        serving_key_pem,
        admin_cert_pem,
        admin_key_pem,
        serving_issued,
    })
}

/// A joining node's credentials ([`issue_node`]): PEMs of its kubelet client certificate
/// and key, its kubelet serving certificate and key, and both CAs.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCerts {
    pub client_cert: String,
    pub client_key: String,
    pub serving_cert: String,
    pub serving_key: String,
    pub server_ca: String,
    pub client_ca: String,
}

/// Issues the certificates of node `name` from the CAs in `dir` (k3s's
/// `/v1-k3s/client-kubelet.crt` and `/serving-kubelet.crt`): the kubelet client certificate
/// (CN `system:node:<name>`, O `system:nodes`, client CA — kube's node identity) and the
/// serving certificate of its `:10250` endpoint (SANs: `name` and `ips`, server CA — the API
/// server's [`crate::kubelet::KubeletDialer`] verifies agents against it by IP).
pub fn issue_node(dir: &Path, name: &str, ips: &[IpAddr]) -> Result<NodeCerts> {
    let now = OffsetDateTime::now_utc();
    let (server_ca, server_issuer) = ca(dir, "server-ca", "barge-server-ca", now)?;
    let (client_ca, client_issuer) = ca(dir, "client-ca", "barge-client-ca", now)?;
    let mut p = leaf_params(&format!("system:node:{name}"), Some("system:nodes"), now)?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (client_cert, client_key) =
        issue(&p, &client_issuer, "the node's kubelet client certificate")?;
    let mut sans = Sans::default();
    if valid_dns_name(name) {
        sans.dns.insert(name.to_ascii_lowercase());
    }
    sans.ips.extend(ips.iter().copied());
    let mut p = leaf_params(name, None, now)?;
    p.subject_alt_names = sans.to_rcgen()?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (serving_cert, serving_key) =
        issue(&p, &server_issuer, "the node's kubelet serving certificate")?;
    Ok(NodeCerts {
        client_cert,
        client_key,
        serving_cert,
        serving_key,
        server_ca,
        client_ca,
    })
}

/// Loads the CA `NAME.crt/.key` from `dir`, or makes it (CN `CN@<unix time>`, as k3s's
/// `k3s-server-ca@…`). Returns its certificate PEM and an issuer to sign with.
fn ca(
    dir: &Path,
    name: &str,
    cn: &str,
    now: OffsetDateTime,
) -> Result<(String, Issuer<'static, KeyPair>)> {
    let crt = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    if let (Some(c), Some(k)) = (read_opt(&crt)?, read_opt(&key)?) {
        let kp = KeyPair::from_pem(&k).map_err(|e| rcgen_err(format!("{}", key.display()), e))?;
        let issuer = Issuer::from_ca_cert_pem(&c, kp)
            .map_err(|e| rcgen_err(format!("{}", crt.display()), e))?;
        return Ok((c, issuer));
    }
    let kp = KeyPair::generate().map_err(|e| rcgen_err(format!("a key for {name}"), e))?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{cn}@{}", now.unix_timestamp()));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(3650);
    let cert = p
        .self_signed(&kp)
        .map_err(|e| rcgen_err(format!("the {name} certificate"), e))?;
    let pem = cert.pem();
    write(&key, &kp.serialize_pem(), 0o600)?;
    write(&crt, &pem, 0o644)?;
    tracing::info!(path = %crt.display(), "created the cluster CA {name}");
    Ok((pem, Issuer::new(p, kp)))
}

fn leaf_params(cn: &str, org: Option<&str>, now: OffsetDateTime) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(365);
    Ok(p)
}

/// Signs `params` with a fresh key; returns (certificate PEM, key PEM).
fn issue(
    params: &CertificateParams,
    issuer: &Issuer<'static, KeyPair>,
    what: &str,
) -> Result<(String, String)> {
    let kp = KeyPair::generate().map_err(|e| rcgen_err(format!("a key for {what}"), e))?;
    let cert = params
        .signed_by(&kp, issuer)
        .map_err(|e| rcgen_err(what.to_string(), e))?;
    Ok((cert.pem(), kp.serialize_pem()))
}

/// Whether the serving certificate `pem` can be kept: signed by the CA `ca_pem`, SANs equal to
/// `sans`, and valid for at least 90 more days.
fn serving_is_current(pem: &str, ca_pem: &str, sans: &Sans, now: OffsetDateTime) -> bool {
    let (Ok(der), Ok(ca_der)) = (pem_der(pem), pem_der(ca_pem)) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(&der),
        x509_parser::parse_x509_certificate(&ca_der),
    ) else {
        return false;
    };
    if cert.issuer().as_raw() != ca.subject().as_raw()
        || cert.verify_signature(Some(ca.public_key())).is_err()
    {
        return false;
    }
    let expires = cert.validity().not_after.timestamp();
    if expires < (now + Duration::days(90)).unix_timestamp() {
        return false;
    }
    cert_sans(&cert).as_ref() == Some(sans)
}

/// The DNS and IP SANs of a parsed certificate.
fn cert_sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<Sans> {
    use x509_parser::extensions::GeneralName;
    let ext = cert.subject_alternative_name().ok()??;
    let mut s = Sans::default();
    for n in &ext.value.general_names {
        match n {
            GeneralName::DNSName(d) => {
                s.dns.insert(d.to_ascii_lowercase());
            }
            GeneralName::IPAddress(b) => match b.len() {
                4 => {
                    s.ips.insert(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?));
                }
                16 => {
                    s.ips.insert(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?));
                }
                _ => return None,
            },
            _ => {}
        }
    }
    Some(s)
}

/// The DER of the first PEM block in `pem`.
pub fn pem_der(pem: &str) -> std::result::Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| e.to_string())
}

fn read_opt(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path, e)),
    }
}

fn write(path: &Path, data: &str, mode: u32) -> Result<()> {
    barge_stdx::fs::write_atomic_mode(path, data.as_bytes(), mode).map_err(|e| io(path, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io(path, e))
}

fn io(path: &Path, source: std::io::Error) -> PkiError {
    PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn rcgen_err(what: String, source: rcgen::Error) -> PkiError {
    PkiError::Rcgen { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sans(extra: &[&str]) -> Sans {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Sans::wanted(
            "10.43.0.1".parse().unwrap(),
            Some("Node1"),
            &["192.0.2.7".parse().unwrap()],
            &extra,
        )
        .unwrap()
    }

    #[test]
    fn node_certificates_carry_the_node_identity_and_its_addresses() {
        let d = tempfile::tempdir().unwrap();
        let a = ensure(d.path(), &sans(&[])).unwrap();
        let n = issue_node(d.path(), "worker-1", &["192.0.2.9".parse().unwrap()]).unwrap();
        assert_eq!(n.server_ca, a.server_ca_pem);
        assert_eq!(n.client_ca, a.client_ca_pem);
        let der = pem_der(&n.client_cert).unwrap();
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn: Vec<_> = c.subject().iter_common_name().collect();
        assert_eq!(cn[0].as_str().unwrap(), "system:node:worker-1");
        let o: Vec<_> = c.subject().iter_organization().collect();
        assert_eq!(o[0].as_str().unwrap(), "system:nodes");
        let der = pem_der(&n.serving_cert).unwrap();
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        let s = cert_sans(&c).unwrap();
        assert!(s.dns.contains("worker-1"));
        assert!(s.ips.contains(&"192.0.2.9".parse().unwrap()));
        assert!(
            c.verify_signature(None).is_err(),
            "signed by the server CA, not itself"
        );
    }

    #[test]
    fn wanted_sans_name_the_service_the_host_and_loopback() {
        let s = sans(&["api.example.com", "203.0.113.9"]);
        for d in [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "node1",
            "api.example.com",
        ] {
            assert!(s.dns.contains(d), "{d} missing from {s:?}");
        }
        for ip in ["127.0.0.1", "::1", "10.43.0.1", "192.0.2.7", "203.0.113.9"] {
            assert!(s.ips.contains(&ip.parse().unwrap()), "{ip} missing");
        }
        let bad = Sans::wanted(
            "10.43.0.1".parse().unwrap(),
            None,
            &[],
            &["not a name".to_string()],
        );
        assert!(matches!(bad, Err(PkiError::BadSan(_))), "{bad:?}");
    }

    #[test]
    fn first_start_makes_everything_and_a_restart_reuses_it() {
        let d = tempfile::tempdir().unwrap();
        let tls = d.path().join("tls");
        let a = ensure(&tls, &sans(&[])).unwrap();
        assert!(a.serving_issued);
        for (f, mode) in [
            ("server-ca.key", 0o600),
            ("client-ca.key", 0o600),
            ("serving-kube-apiserver.key", 0o600),
            ("client-admin.key", 0o600),
            ("server-ca.crt", 0o644),
            ("client-admin.crt", 0o644),
        ] {
            let m = std::fs::metadata(tls.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "{f}");
        }
        // The serving certificate carries the wanted SANs and is signed by the server CA.
        let der = pem_der(&a.serving_cert_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert_sans(&cert).unwrap(), sans(&[]));
        assert!(serving_is_current(
            &a.serving_cert_pem,
            &a.server_ca_pem,
            &sans(&[]),
            OffsetDateTime::now_utc()
        ));
        assert!(!serving_is_current(
            &a.serving_cert_pem,
            &a.client_ca_pem,
            &sans(&[]),
            OffsetDateTime::now_utc()
        ));
        // The admin certificate: CN system:admin, O system:masters, from the client CA.
        let der = pem_der(&a.admin_cert_pem).unwrap();
        let (_, admin) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn: Vec<_> = admin.subject().iter_common_name().collect();
        assert_eq!(cn[0].as_str().unwrap(), "system:admin");
        let o: Vec<_> = admin.subject().iter_organization().collect();
        assert_eq!(o[0].as_str().unwrap(), "system:masters");

        // Same SANs: everything is reused as it is.
        let b = ensure(&tls, &sans(&[])).unwrap();
        assert!(!b.serving_issued);
        assert_eq!(a.server_ca_pem, b.server_ca_pem);
        assert_eq!(a.client_ca_pem, b.client_ca_pem);
        assert_eq!(a.serving_cert_pem, b.serving_cert_pem);
        assert_eq!(a.admin_cert_pem, b.admin_cert_pem);
        assert_eq!(a.admin_key_pem, b.admin_key_pem);

        // A new --tls-san: only the serving certificate is issued again, by the same CA.
        let c = ensure(&tls, &sans(&["extra.example"])).unwrap();
        assert!(c.serving_issued);
        assert_ne!(a.serving_cert_pem, c.serving_cert_pem);
        assert_eq!(a.server_ca_pem, c.server_ca_pem);
        assert_eq!(a.admin_cert_pem, c.admin_cert_pem);
        assert!(serving_is_current(
            &c.serving_cert_pem,
            &c.server_ca_pem,
            &sans(&["extra.example"]),
            OffsetDateTime::now_utc()
        ));
        // Close to expiry: not current any more.
        assert!(!serving_is_current(
            &c.serving_cert_pem,
            &c.server_ca_pem,
            &sans(&["extra.example"]),
            OffsetDateTime::now_utc() + Duration::days(300)
        ));
    }
}
