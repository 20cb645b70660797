//! A tiny plain-HTTP server for the client's tests: it answers each connection with the next
//! canned response and records the request head, so fail-over and decoding are tested against
//! real sockets without an apiserver.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

#[derive(Clone)]
pub(crate) struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    /// Written in these pieces, with a flush and a short pause between them, so that clients see
    /// chunks split in awkward places.
    pub pieces: Vec<String>,
}

impl Canned {
    pub fn json(status: u16, body: &str) -> Canned {
        Canned {
            status,
            content_type: "application/json",
            pieces: vec![body.to_string()],
        }
    }

    pub fn text(status: u16, body: &str) -> Canned {
        Canned {
            status,
            content_type: "text/plain",
            pieces: vec![body.to_string()],
        }
    }

    pub fn pieces(status: u16, pieces: &[&str]) -> Canned {
        Canned {
            status,
            content_type: "application/json",
            pieces: pieces.iter().map(|p| p.to_string()).collect(),
        }
    }
}

pub(crate) struct TestServer {
    pub url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// The heads (request line and headers) of the requests served so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Serves `responses` in order, one per connection (the body is close-delimited), then stops.
pub(crate) async fn serve(responses: Vec<Canned>) -> TestServer {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("cannot bind a test listener: {e}"),
    };
    let url = match listener.local_addr() {
        Ok(addr) => format!("http://{addr}"),
        Err(e) => panic!("{e}"),
    };
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        for canned in responses {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            if let Ok(mut r) = seen.lock() {
                r.push(String::from_utf8_lossy(&head).to_string());
            }
            let header = format!(
                "HTTP/1.1 {} X\r\nContent-Type: {}\r\nConnection: close\r\n\r\n",
                canned.status, canned.content_type
            );
            if socket.write_all(header.as_bytes()).await.is_err() {
                continue;
            }
            for piece in &canned.pieces {
                if socket.write_all(piece.as_bytes()).await.is_err() {
                    break;
                }
                let _ = socket.flush().await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            let _ = socket.shutdown().await;
        }
    });
    TestServer { url, requests }
}

/// The URL of a local port that nothing listens on.
pub(crate) async fn closed_port_url() -> String {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("cannot bind a test listener: {e}"),
    };
    match listener.local_addr() {
        Ok(addr) => format!("http://{addr}"),
        Err(e) => panic!("{e}"),
    }
}

/// An HTTPS server with a fresh self-signed certificate for 127.0.0.1 that answers one request
/// with `body`; returns its URL and the certificate's PEM (to use as the CA).
pub(crate) async fn serve_tls_once(body: &'static str) -> (String, String) {
    use std::sync::Arc;

    let certified = match rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]) {
        Ok(c) => c,
        Err(e) => panic!("cannot make a test certificate: {e}"),
    };
    let cert_pem = certified.cert.pem();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(vec![certified.cert.der().clone()], key)
        });
    let config = match config {
        Ok(c) => c,
        Err(e) => panic!("cannot configure the test TLS server: {e}"),
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("cannot bind a test listener: {e}"),
    };
    let url = match listener.local_addr() {
        Ok(addr) => format!("https://{addr}"),
        Err(e) => panic!("{e}"),
    };
    tokio::spawn(async move {
        // Clients that reject the certificate hang up; keep accepting until one completes.
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(socket).await else {
                continue;
            };
            let mut buf = [0u8; 4096];
            let _ = tls.read(&mut buf).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(response.as_bytes()).await;
            let _ = tls.shutdown().await;
            return;
        }
    });
    (url, cert_pem)
}
