//! The API server's connections to node agents (kube-apiserver's `--kubelet-client-certificate`
//! and `--kubelet-certificate-authority`): TLS to the agent's endpoint, the agent verified
//! against the cluster's server CA for its IP address, the API server presenting its
//! `system:kube-apiserver-kubelet-client` certificate; HTTP/1.1 (streams upgrade).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use barge_apiserver::{DialFuture, NodeDialer, NodeStream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::pki::Pki;

/// How long a connection to a node agent may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials node agents with the cluster's certificates.
pub struct KubeletDialer {
    tls: tokio_rustls::TlsConnector,
}

impl KubeletDialer {
    /// The dialer for `pki`'s cluster.
    pub fn new(pki: &Pki) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(pki.server_ca_pem.as_bytes()) {
            roots
                .add(c.context("parsing the server CA")?)
                .context("adding the server CA")?;
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pki.kubelet_client_cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .context("parsing the kubelet client certificate")?;
        let key = PrivateKeyDer::from_pem_slice(pki.kubelet_client_key_pem.as_bytes())
            .context("parsing the kubelet client key")?;
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .context("the kubelet client certificate")?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletDialer {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        })
    }
}

impl NodeDialer for KubeletDialer {
    fn dial(&self, addr: SocketAddr) -> DialFuture {
        let tls = self.tls.clone();
        Box::pin(async move {
            let connect = async {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let _ = tcp.set_nodelay(true);
                let name = ServerName::IpAddress(addr.ip().into());
                tls.connect(name, tcp).await
            };
            let stream = tokio::time::timeout(DIAL_TIMEOUT, connect)
                .await
                .map_err(|_| std::io::Error::other(format!("dial tcp {addr}: i/o timeout")))??;
            Ok(Box::new(stream) as Box<dyn NodeStream>)
        })
    }
}
