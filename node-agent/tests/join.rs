//! The bootstrap join against a stand-in for the apiserver's `/flotilla/v1/join` (same contract,
//! served over HTTPS on loopback by this test): the agent writes D/kubeconfig (0600) and D/pki,
//! reuses them on the next start without joining again, and reports a refused token clearly.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use node_agent::join::{ensure_credentials, CredentialSource, JoinError};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const TOKEN: &str = "bootstrap.secret";

#[derive(Clone)]
struct Fake {
    calls: Arc<AtomicUsize>,
    ca_pem: String,
    serving: (String, String),
}

async fn join(State(fake): State<Fake>, headers: HeaderMap, Json(body): Json<serde_json::Value>) -> Result<Json<serde_json::Value>, StatusCode> {
    fake.calls.fetch_add(1, Ordering::SeqCst);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    if body["nodeName"] != "n1" || body["addresses"] != serde_json::json!(["10.0.0.9"]) {
        return Err(StatusCode::BAD_REQUEST);
    }
    Ok(Json(serde_json::json!({
        "token": "node-token",
        "user": "system:node:n1",
        "caCert": fake.ca_pem,
        "servingCert": fake.serving.0,
        "servingKey": fake.serving.1,
    })))
}

fn signed(issuer: &Issuer<'_, &KeyPair>, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
    let cert = params.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn bootstrap_join_writes_and_reuses_the_node_credentials() {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let (server_cert, server_key) = signed(&issuer, &["localhost"]);
    let fake = Fake { calls: Arc::new(AtomicUsize::new(0)), ca_pem: ca_cert.pem(), serving: signed(&issuer, &["n1", "10.0.0.9"]) };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(server_cert.as_bytes()).collect::<Result<_, _>>().expect("certs");
    let key = PrivateKeyDer::from_pem_slice(server_key.as_bytes()).expect("key");
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("tls");
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let router = Router::new().route("/flotilla/v1/join", post(join)).with_state(fake.clone());
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(stream).await {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router))
                        .await;
                }
            });
        }
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca_cert.pem()).expect("write ca");
    let data = dir.path().join("node");
    let source = CredentialSource::Bootstrap { server: format!("https://localhost:{port}"), ca_file: ca_file.clone(), token: TOKEN.into() };

    let creds = ensure_credentials(&data, "n1", "10.0.0.9", Some(&source)).await.expect("join");
    assert_eq!(creds.config.token.as_deref(), Some("node-token"));
    assert_eq!(creds.config.servers, vec![format!("https://localhost:{port}")]);
    assert_eq!(creds.client_ca_pem, ca_cert.pem().into_bytes());
    assert_eq!(creds.serving_cert_pem, fake.serving.0.clone().into_bytes());
    for (file, mode) in [("kubeconfig", 0o600), ("pki/serving.key", 0o600), ("pki/serving.crt", 0o644), ("pki/ca.crt", 0o644)] {
        let meta = std::fs::metadata(data.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }

    // A restart: the stored kubeconfig is used, with or without the bootstrap flags.
    let again = ensure_credentials(&data, "n1", "10.0.0.9", None).await.expect("reuse");
    assert_eq!(again.config.token.as_deref(), Some("node-token"));
    ensure_credentials(&data, "n1", "10.0.0.9", Some(&source)).await.expect("reuse with flags");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "joined more than once");

    // A wrong token is refused, and nothing is written.
    let other = dir.path().join("other");
    let wrong = CredentialSource::Bootstrap { server: format!("https://localhost:{port}"), ca_file, token: "wrong".into() };
    match ensure_credentials(&other, "n1", "10.0.0.9", Some(&wrong)).await {
        Err(JoinError::Refused { status: 401, .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a wrong token was accepted"),
    }
    assert!(!other.join("kubeconfig").exists());
    server.abort();
}
