//! TLS for the apiserver: the server configurations of the API port and of the peer (Raft) port,
//! the mutual-TLS client replicas use to call each other, and the accept loop that serves an
//! axum router over HTTP/1.1 and HTTP/2 with graceful shutdown.
//!
//! The accept loop is written here rather than taken from `axum::serve`, because `axum::serve`
//! speaks plain TCP only; we need a TLS handshake per connection, a handshake that fails must
//! cost nothing but a debug line, and shutdown must cut long-lived watch streams after a grace
//! period.
//!
//! The `ring` crypto provider is passed explicitly everywhere so that nothing depends on which
//! provider some other crate installed as the process default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

use crate::pki::PkiPaths;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read certificates from {path}: {source}: run `apiserver init` or check the file"
    )]
    Certificates {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate found in {path}: run `apiserver init` or check the file")]
    NoCertificates { path: PathBuf },
    #[error(
        "cannot read the private key from {path}: {source}: run `apiserver init` or check the file"
    )]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the cluster CA certificate {path} is not usable: {source}")]
    Ca {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot set up TLS with {cert} and {key}: {source}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot set up client certificate checking with the CA {path}: {source}")]
    Verifier {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("cannot build the peer HTTP client: {source}")]
    Client { source: reqwest::Error },
}

/// API port: the server certificate, no client certificate (clients use bearer tokens);
/// ALPN h2 and http/1.1.
pub fn api_server_config(pki: &PkiPaths) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (certs, key) = replica_identity(pki)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| config_error(pki, source))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| config_error(pki, source))?;
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// Peer port: a client certificate is required and verified against the cluster CA. Besides
/// HTTP it offers the Raft frame protocol ([`crate::store::RAFT_ALPN`]).
pub fn peer_server_config(pki: &PkiPaths) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (certs, key) = replica_identity(pki)?;
    let roots = ca_roots(pki)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|source| TlsError::Verifier {
            path: pki.ca_cert(),
            source,
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| config_error(pki, source))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|source| config_error(pki, source))?;
    config.alpn_protocols = alpn();
    config.alpn_protocols.insert(0, crate::store::RAFT_ALPN.to_vec());
    Ok(Arc::new(config))
}

/// The rustls client configuration of `peer_client`: presents the replica certificate and
/// trusts only the cluster CA. Exposed for callers that need a client other than reqwest.
pub fn peer_client_config(pki: &PkiPaths) -> Result<rustls::ClientConfig, TlsError> {
    let (certs, key) = replica_identity(pki)?;
    let roots = ca_roots(pki)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| config_error(pki, source))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|source| config_error(pki, source))?;
    config.alpn_protocols = alpn();
    Ok(config)
}

/// The TLS client configuration of Raft connections to peers: the replica certificate, the
/// cluster CA, and ALPN [`crate::store::RAFT_ALPN`].
pub fn raft_client_config(pki: &PkiPaths) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut config = peer_client_config(pki)?;
    config.alpn_protocols = vec![crate::store::RAFT_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// reqwest client for peer RPCs: presents the replica certificate, trusts only the cluster
/// CA, connects within 1 s and keeps connections alive.
pub fn peer_client(pki: &PkiPaths) -> Result<reqwest::Client, TlsError> {
    let tls = peer_client_config(pki)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(1))
        .tcp_keepalive(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .http2_keep_alive_while_idle(true)
        .build()
        .map_err(|source| TlsError::Client { source })
}

/// A client that trusts only the cluster CA and presents no certificate (what `ctl` and the
/// tests use to reach the API port).
pub fn api_client_config(ca_cert: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let roots = roots_from(ca_cert)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Ca {
            path: ca_cert.to_path_buf(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn();
    Ok(config)
}

/// How long shutdown waits for open connections (watch streams never end by themselves).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a client may take to complete the TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on an already-bound listener, over TLS unless `tls` is None (plain HTTP,
/// for tests), with HTTP/1 and HTTP/2, until `shutdown` resolves. Then stops accepting, asks
/// open connections to finish, and after `SHUTDOWN_GRACE` cuts the ones still open. A failed
/// handshake or connection is logged at debug and never stops the loop. Handlers see the
/// peer address through `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, tls, router, None, shutdown).await
}

/// A protocol other than HTTP on a TLS port, chosen by the client through ALPN: connections
/// that negotiated `alpn` are handed to `handler` instead of the HTTP router.
#[derive(Clone)]
pub struct AlpnProtocol {
    pub alpn: &'static [u8],
    pub handler: Arc<
        dyn Fn(
                tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
                SocketAddr,
                tokio::sync::watch::Receiver<bool>,
            ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            + Send
            + Sync,
    >,
}

/// [`serve`], with connections that negotiate `other`'s ALPN protocol given to its handler
/// (which must end when the stop signal it is given turns true).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    other: Option<AlpnProtocol>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let local = listener.local_addr()?;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Running out of file descriptors and the like: the listener itself
                        // is fine, so wait a moment instead of spinning or giving up.
                        tracing::debug!(%local, error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let acceptor = acceptor.clone();
                let other = other.clone();
                let stop = stop_rx.clone();
                connections.spawn(async move {
                    match acceptor {
                        None => serve_connection(stream, peer, router, stop).await,
                        Some(acceptor) => {
                            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                            let stream = tokio::select! {
                                result = handshake => match result {
                                    Ok(Ok(stream)) => stream,
                                    Ok(Err(err)) => {
                                        tracing::debug!(%peer, error = %err, "tls handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!(%peer, "tls handshake timed out");
                                        return;
                                    }
                                },
                                () = stopped(stop.clone()) => return,
                            };
                            if let Some(other) = other {
                                if stream.get_ref().1.alpn_protocol() == Some(other.alpn) {
                                    return (other.handler)(stream, peer, stop).await;
                                }
                            }
                            serve_connection(stream, peer, router, stop).await
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = connections.len();
    if open > 0 {
        tracing::debug!(%local, open, "waiting for open connections to finish");
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(%local, open = connections.len(), "cutting connections still open after the grace period");
        connections.shutdown().await;
    }
    Ok(())
}

async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    router: axum::Router,
    stop: tokio::sync::watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = tower::ServiceExt::map_request(
        router,
        move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        },
    );
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // With a timer, hyper enforces its HTTP/1 header read timeout, so a client that opens a
    // connection and trickles a request cannot hold it forever.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(stop) => {
            // Finish requests in flight, then close; the caller's grace period bounds this.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

/// Resolves once shutdown has begun (or `serve` itself went away).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send, so it must not live across an await.
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

fn config_error(pki: &PkiPaths, source: rustls::Error) -> TlsError {
    TlsError::Config {
        cert: pki.server_cert(),
        key: pki.server_key(),
        source,
    }
}

fn replica_identity(
    pki: &PkiPaths,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = read_certs(&pki.server_cert())?;
    let key_path = pki.server_key();
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|source| TlsError::Key {
        path: key_path.clone(),
        source,
    })?;
    Ok((certs, key))
}

fn ca_roots(pki: &PkiPaths) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    roots_from(&pki.ca_cert()).map(Arc::new)
}

fn roots_from(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|source| TlsError::Ca {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |source| TlsError::Certificates {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named_in_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = PkiPaths::under(tmp.path());
        let err = api_server_config(&pki).unwrap_err();
        assert!(err.to_string().contains("server.crt"), "{err}");
        let err = peer_client(&pki).unwrap_err();
        assert!(err.to_string().contains("server.crt"), "{err}");
    }

    #[test]
    fn configs_build_from_init_output() {
        let tmp = tempfile::tempdir().unwrap();
        let out = crate::pki::init(&crate::pki::InitOptions {
            dir: tmp.path().to_path_buf(),
            hosts: vec![],
            servers: vec!["https://127.0.0.1:6443".into()],
        })
        .unwrap();
        let api = api_server_config(&out.pki).unwrap();
        assert_eq!(api.alpn_protocols, alpn());
        peer_server_config(&out.pki).unwrap();
        peer_client(&out.pki).unwrap();
        api_client_config(&out.pki.ca_cert()).unwrap();
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("empty.crt");
        std::fs::write(&path, "nothing here\n").unwrap();
        assert!(matches!(
            roots_from(&path),
            Err(TlsError::NoCertificates { .. })
        ));
    }
}
