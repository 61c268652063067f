//! The HTTPS listener of the Kubernetes API: rustls (ring provider) with optional client
//! certificates, HTTP/2 and HTTP/1.1 by ALPN (kubectl speaks h2 over TLS), each request
//! authenticated ([`crate::auth`]) and handed to the API server's router with its
//! [`barge_apiserver::Identity`] as an extension.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::pki::Pki;
use crate::token::JoinToken;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS configuration: the serving certificate, client certificates verified against the
/// client CA but optional (no certificate → bearer token or anonymous; a certificate from
/// another CA → handshake failure), ALPN `h2` then `http/1.1`.
pub fn server_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.client_ca_pem.as_bytes()) {
        roots
            .add(c.context("parsing the client CA")?)
            .context("adding the client CA")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.serving_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .context("parsing the serving certificate")?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving_key_pem.as_bytes())
        .context("parsing the serving key")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the serving certificate and key")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts connections on `listener` until `shutdown` resolves; each connection is served on
/// its own task (connections still open at shutdown end with the runtime).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    token: JoinToken,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accepting an API connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let cert_identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::auth::identity_from_cert(c.as_ref()));
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    let token = token.clone();
                    let cert_identity = cert_identity.clone();
                    async move {
                        let mut req = req.map(axum::body::Body::new);
                        match crate::auth::authenticate(
                            cert_identity.as_ref(),
                            req.headers(),
                            &token,
                        ) {
                            Ok(id) => {
                                // As kube-apiserver: credentials stop at the authenticator.
                                req.headers_mut().remove(axum::http::header::AUTHORIZATION);
                                req.extensions_mut().insert(id);
                                router.oneshot(req).await
                            }
                            // Not the join token: the API server checks whether it is one
                            // of its ServiceAccount tokens (or answers 401).
                            Err(crate::auth::InvalidToken) => {
                                match crate::auth::bearer(req.headers()) {
                                    Some(t) => {
                                        req.headers_mut().remove(axum::http::header::AUTHORIZATION);
                                        req.extensions_mut()
                                            .insert(barge_apiserver::BearerToken(t));
                                        router.oneshot(req).await
                                    }
                                    None => Ok(crate::auth::unauthorized()),
                                }
                            }
                        }
                    }
                });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%peer, "API connection ended: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Extension;
    use barge_apiserver::Identity;
    use http_body_util::BodyExt as _;

    /// Serves a router that echoes the request's identity; returns its address and the PKI.
    async fn whoami_server(dir: &std::path::Path) -> (std::net::SocketAddr, Pki) {
        let sans = crate::pki::Sans::wanted("10.43.0.1".parse().unwrap(), None, &[], &[]).unwrap();
        let pki = crate::pki::ensure(&dir.join("tls"), &sans).unwrap();
        let tls = server_config(&pki).unwrap();
        let router = Router::new().route(
            "/whoami",
            get(
                |id: Option<Extension<Identity>>,
                 bearer: Option<Extension<barge_apiserver::BearerToken>>,
                 h: axum::http::HeaderMap| async move {
                    let auth = h.contains_key(axum::http::header::AUTHORIZATION);
                    match (id, bearer) {
                        (Some(Extension(id)), _) => {
                            format!("{} {} auth={auth}", id.user, id.groups.join(","))
                        }
                        (None, Some(Extension(b))) => format!("bearer {} auth={auth}", b.0),
                        (None, None) => "nobody".to_string(),
                    }
                },
            ),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = JoinToken::new("K10x::server:tok").unwrap();
        tokio::spawn(serve(listener, tls, router, token, std::future::pending()));
        (addr, pki)
    }

    /// `GET /whoami` over TLS (HTTP/1.1) with an optional client certificate (PEM cert, key)
    /// and bearer token; `Err` when the connection or the request fails.
    async fn get_whoami(
        addr: std::net::SocketAddr,
        server_ca_pem: &str,
        client: Option<(&str, &str)>,
        bearer: Option<&str>,
    ) -> Result<(u16, String), String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(server_ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let cfg = match client {
            Some((cert, key)) => b
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => b.with_no_client_auth(),
        };
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = hyper::Request::get("/whoami").header("host", "localhost");
        if let Some(t) = bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = send
            .send_request(
                req.body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    #[tokio::test]
    async fn each_request_reaches_the_router_with_its_identity() {
        let d = tempfile::tempdir().unwrap();
        let (addr, pki) = whoami_server(d.path()).await;
        let ca = &pki.server_ca_pem;
        let admin = Some((pki.admin_cert_pem.as_str(), pki.admin_key_pem.as_str()));

        let r = get_whoami(addr, ca, admin, None).await.unwrap();
        assert_eq!(
            r,
            (
                200,
                "system:admin system:masters,system:authenticated auth=false".into()
            )
        );
        let r = get_whoami(addr, ca, None, Some("tok")).await.unwrap();
        assert_eq!(
            r,
            (
                200,
                "system:bootstrap:barge-join system:bootstrappers,system:authenticated auth=false"
                    .into()
            )
        );
        let r = get_whoami(addr, ca, None, None).await.unwrap();
        assert_eq!(
            r,
            (
                200,
                "system:anonymous system:unauthenticated auth=false".into()
            )
        );
        // Another bearer token goes on to the API server (a ServiceAccount token is its to
        // verify; it answers 401 for anything else), without the Authorization header.
        let r = get_whoami(addr, ca, None, Some("nope")).await.unwrap();
        assert_eq!(r, (200, "bearer nope auth=false".into()));

        // A certificate from another cluster's client CA: the handshake (or, with TLS 1.3,
        // the first exchange after it) fails; nothing reaches the router.
        let other = tempfile::tempdir().unwrap();
        let sans = crate::pki::Sans::wanted("10.43.0.1".parse().unwrap(), None, &[], &[]).unwrap();
        let foreign = crate::pki::ensure(&other.path().join("tls"), &sans).unwrap();
        let r = get_whoami(
            addr,
            ca,
            Some((&foreign.admin_cert_pem, &foreign.admin_key_pem)),
            None,
        )
        .await;
        assert!(r.is_err(), "a foreign certificate got {r:?}");
    }
}
