//! The HTTPS client every component uses to talk to the apiserver.
//!
//! - [`Client`]: raw requests with the cluster CA as the only trusted root (rustls, ring), a
//!   bearer token, and fail-over across several server addresses.
//! - [`config`]: the kubeconfig file and the [`Config`] a client is built from.
//! - [`DynamicApi`] (objects as `serde_json::Value`, for any kind in the resource table) and the
//!   typed [`Api<K>`] built on it: get, list, create, replace, patch, delete, watch.
//! - [`watch`]: the wire watch event and the decoding of the newline-delimited watch stream.
//! - [`watcher`]: list-then-watch with re-list on 410, as a pure state machine plus a stream.
//! - [`cluster`]: Flotilla's admin routes (replica status, add and remove replicas).
//! - [`events`]: the Event recorder every component uses (queued, repeats counted).

mod api;
pub mod bindings;
pub mod cluster;
pub mod config;
pub mod events;
pub mod leader;
mod error;
mod failover;
pub mod watch;
pub mod watcher;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use http::{HeaderMap, Method, StatusCode};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

pub use self::api::{
    Api, DeleteParams, DeleteResponse, DynamicApi, ListParams, ObjectList, Patch, PatchParams,
    PostParams, PropagationPolicy,
};
pub use self::config::{Config, Kubeconfig};
pub use self::error::{Attempt, ClientError};
pub use self::watch::{WatchEvent, WatchStream};

use crate::meta::Status;

/// How long to wait for a TCP and TLS connection before trying the next server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole non-streaming request may take before trying the next server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A handle to the cluster. Cheap to clone; clones share connections and the memory of which
/// server answered last.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// A server's complete answer to a raw request.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The server address that answered.
    pub server: String,
}

/// A server's answer whose body is read as it arrives (watch, logs).
pub struct StreamingResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BoxStream<'static, Result<Bytes, ClientError>>,
    pub server: String,
}

impl Client {
    /// Builds a client. Fails on a config with no server, an address that is not an http(s) URL,
    /// or a certificate authority that is not PEM.
    pub fn new(config: Config) -> Result<Client, ClientError> {
        if config.servers.is_empty() {
            return Err(ClientError::NoServers);
        }
        let mut servers = Vec::with_capacity(config.servers.len());
        for server in &config.servers {
            servers.push(check_server(server)?);
        }
        let tls = tls_config(config.ca_pem.as_deref())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Setup {
                reason: failover::describe(&e),
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                servers,
                token: config.token,
                namespace: config.namespace,
                preferred: AtomicUsize::new(0),
            }),
        })
    }

    /// The namespace of the configuration (the kubeconfig context's, or `default`).
    pub fn default_namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The server addresses, in configuration order.
    pub fn servers(&self) -> &[String] {
        &self.inner.servers
    }

    /// The address that will be tried first: the one that answered last.
    pub fn current_server(&self) -> &str {
        let index = self.inner.preferred.load(Ordering::Relaxed);
        &self.inner.servers[index % self.inner.servers.len()]
    }

    /// Sends one request and reads the whole answer. `path_and_query` starts with `/`; `body`
    /// is `(content type, bytes)`. A non-2xx answer is an error: [`ClientError::Api`] with the
    /// server's `Status` (or one made up from the status code when the body is not a `Status`).
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Response, ClientError> {
        let body = body.map(|(content_type, bytes)| (content_type, Bytes::from(bytes)));
        let (response, server) = self
            .send(method, path_and_query, body, Some(REQUEST_TIMEOUT))
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| ClientError::Read {
            server: server.clone(),
            error: failover::describe(&e),
        })?;
        check_status(status, &body)?;
        Ok(Response {
            status,
            headers,
            body,
            server,
        })
    }

    /// Sends one request and returns the answer's body as a stream of chunks, with no overall
    /// time limit (for watches and logs). Non-2xx answers are read whole and returned as errors.
    pub async fn request_stream(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<StreamingResponse, ClientError> {
        let body = body.map(|(content_type, bytes)| (content_type, Bytes::from(bytes)));
        let (response, server) = self.send(method, path_and_query, body, None).await?;
        let status = response.status();
        let headers = response.headers().clone();
        if !status.is_success() {
            let body = response.bytes().await.map_err(|e| ClientError::Read {
                server: server.clone(),
                error: failover::describe(&e),
            })?;
            check_status(status, &body)?;
            // A non-2xx answer is always an error above; this keeps the compiler sure of it.
            return Err(ClientError::from_status_code(status.as_u16(), &body));
        }
        let stream_server = server.clone();
        let body = response
            .bytes_stream()
            .map_err(move |e| ClientError::Read {
                server: stream_server.clone(),
                error: failover::describe(&e),
            })
            .boxed();
        Ok(StreamingResponse {
            status,
            headers,
            body,
            server,
        })
    }

    /// GETs `path` and decodes the JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        let response = self.request(Method::GET, path, None).await?;
        decode(path, &response.body)
    }

    /// Tries each server in turn, starting with the one that answered last, until one answers
    /// with something other than 503. Connection errors, timeouts and 503s move on.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&str, Bytes)>,
        timeout: Option<Duration>,
    ) -> Result<(reqwest::Response, String), ClientError> {
        let inner = &self.inner;
        let start = inner.preferred.load(Ordering::Relaxed);
        let mut attempts = Vec::new();
        for index in failover::attempt_order(start, inner.servers.len()) {
            let server = &inner.servers[index];
            let url = format!("{server}{path_and_query}");
            let mut request = inner
                .http
                .request(method.clone(), &url)
                .header(http::header::ACCEPT, "application/json");
            if let Some(token) = &inner.token {
                request = request.bearer_auth(token);
            }
            if let Some((content_type, bytes)) = &body {
                request = request
                    .header(http::header::CONTENT_TYPE, *content_type)
                    .body(bytes.clone());
            }
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            tracing::debug!(%method, %url, "sending request");
            match request.send().await {
                Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    let body = response.bytes().await.unwrap_or_default();
                    let cause = failover::describe_unavailable(&body);
                    tracing::debug!(%server, %cause, "server unavailable, trying the next one");
                    attempts.push(Attempt {
                        server: server.clone(),
                        cause,
                    });
                }
                Ok(response) => {
                    inner.preferred.store(index, Ordering::Relaxed);
                    return Ok((response, server.clone()));
                }
                Err(error) => {
                    let cause = failover::describe(&error);
                    tracing::debug!(%server, %cause, "request failed, trying the next server");
                    attempts.push(Attempt {
                        server: server.clone(),
                        cause,
                    });
                }
            }
        }
        Err(ClientError::Connect { attempts })
    }
}

struct Inner {
    http: reqwest::Client,
    servers: Vec<String>,
    token: Option<String>,
    namespace: String,
    /// Index into `servers` of the one that answered last.
    preferred: AtomicUsize,
}

/// Turns a non-2xx answer into [`ClientError::Api`].
fn check_status(status: StatusCode, body: &[u8]) -> Result<(), ClientError> {
    if status.is_success() {
        return Ok(());
    }
    if let Ok(parsed) = serde_json::from_slice::<Status>(body) {
        if parsed.message.is_some() || parsed.reason.is_some() {
            let mut parsed = parsed;
            if parsed.code.is_none() {
                parsed.code = Some(i32::from(status.as_u16()));
            }
            return Err(ClientError::Api(Box::new(parsed)));
        }
    }
    Err(ClientError::from_status_code(status.as_u16(), body))
}

fn decode<T: serde::de::DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|error| ClientError::Decode {
        path: path.to_string(),
        error,
    })
}

/// Normalises a server address to `scheme://authority[/prefix]` without a trailing slash.
fn check_server(server: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidServer {
        server: server.to_string(),
        reason: reason.to_string(),
    };
    let url = reqwest::Url::parse(server).map_err(|e| invalid(&e.to_string()))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(invalid("the scheme must be https or http"));
    }
    if url.host_str().is_none() {
        return Err(invalid("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a server address has no query or fragment"));
    }
    Ok(server.trim_end_matches('/').to_string())
}

/// rustls with the ring provider, trusting only the cluster's CA. Without a CA no HTTPS server
/// is trusted (plain http still works, for tests and local setups).
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ClientError::InvalidCa {
                reason: e.to_string(),
            })?;
            roots.add(cert).map_err(|e| ClientError::InvalidCa {
                reason: e.to_string(),
            })?;
        }
        if roots.is_empty() {
            return Err(ClientError::InvalidCa {
                reason: "no PEM certificate found".to_string(),
            });
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Setup {
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
pub(crate) mod testserver;

#[cfg(test)]
mod tests {
    use super::testserver::{serve, Canned};
    use super::*;

    fn client(servers: Vec<String>) -> Client {
        match Client::new(Config::new(servers)) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(matches!(
            Client::new(Config::new(vec![])),
            Err(ClientError::NoServers)
        ));
        for bad in [
            "127.0.0.1:6443",
            "ftp://host",
            "https://host/?x=1",
            "not a url",
        ] {
            let result = Client::new(Config::new(vec![bad.to_string()]));
            assert!(
                matches!(result, Err(ClientError::InvalidServer { .. })),
                "{bad}"
            );
        }
        let config = Config {
            ca_pem: Some(b"garbage".to_vec()),
            ..Config::new(vec!["https://a".into()])
        };
        assert!(matches!(
            Client::new(config),
            Err(ClientError::InvalidCa { .. })
        ));
    }

    #[tokio::test]
    async fn fails_over_past_closed_ports_and_503_then_remembers_the_good_server() {
        let closed = testserver::closed_port_url().await;
        let unavailable = serve(vec![
            Canned::json(
                503,
                r#"{"kind":"Status","message":"no leader"}"#
            );
            2
        ])
        .await;
        let good = serve(vec![Canned::json(200, r#"{"gitVersion":"v1.33.0"}"#); 2]).await;
        let client = client(vec![
            closed.clone(),
            unavailable.url.clone(),
            good.url.clone(),
        ]);

        let response = match client.request(Method::GET, "/version", None).await {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.server, good.url);
        assert_eq!(client.current_server(), good.url);
        // The next request goes straight to the server that answered.
        let value: serde_json::Value = match client.get_json("/version").await {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(value["gitVersion"], "v1.33.0");
        assert_eq!(unavailable.requests().len(), 1);
        assert_eq!(good.requests().len(), 2);
        assert!(good.requests()[0].starts_with("GET /version HTTP/1.1"));
    }

    #[tokio::test]
    async fn error_names_every_address_tried() {
        let first = testserver::closed_port_url().await;
        let unavailable = serve(vec![Canned::json(
            503,
            r#"{"kind":"Status","message":"no leader"}"#,
        )])
        .await;
        let client = client(vec![first.clone(), unavailable.url.clone()]);
        let message = match client.request(Method::GET, "/version", None).await {
            Ok(r) => panic!("expected an error, got {r:?}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            message,
            format!(
                "unable to connect to the server: {first}: connection refused; {}: 503 service unavailable: no leader",
                unavailable.url
            )
        );
    }

    #[tokio::test]
    async fn https_trusts_only_the_configured_ca() {
        let (url, _) = testserver::serve_tls_once(r#"{"gitVersion":"v1"}"#).await;
        let (_, other_ca) = testserver::serve_tls_once("{}").await;
        // A different CA, and no CA at all, are both refused.
        for ca in [Some(other_ca.into_bytes()), None] {
            let config = Config {
                ca_pem: ca,
                ..Config::new(vec![url.clone()])
            };
            let client = match Client::new(config) {
                Ok(c) => c,
                Err(e) => panic!("{e}"),
            };
            let message = match client.request(Method::GET, "/version", None).await {
                Ok(r) => panic!("expected a TLS error, got {r:?}"),
                Err(e) => e.to_string(),
            };
            assert!(
                message.starts_with(&format!("unable to connect to the server: {url}: ")),
                "{message}"
            );
            assert!(message.contains("invalid peer certificate"), "{message}");
        }
    }

    #[tokio::test]
    async fn https_with_the_cluster_ca() {
        let (url, ca) = testserver::serve_tls_once(r#"{"gitVersion":"v1"}"#).await;
        let config = Config {
            ca_pem: Some(ca.into_bytes()),
            ..Config::new(vec![url])
        };
        let client = match Client::new(config) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let value: serde_json::Value = match client.get_json("/version").await {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(value["gitVersion"], "v1");
    }

    #[tokio::test]
    async fn non_2xx_answers_become_api_errors_and_the_token_is_sent() {
        let server = serve(vec![
            Canned::json(404, r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","message":"pods \"x\" not found","code":404}"#),
            Canned::text(500, "boom"),
        ])
        .await;
        let config = Config {
            token: Some("t0ken".into()),
            ..Config::new(vec![server.url.clone()])
        };
        let client = match Client::new(config) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let err = client
            .request(Method::GET, "/api/v1/namespaces/default/pods/x", None)
            .await
            .unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(
            err.to_string(),
            r#"Error from server (NotFound): pods "x" not found"#
        );
        let err = client.request(Method::GET, "/x", None).await.unwrap_err();
        assert_eq!(err.to_string(), "Error from server (InternalError): boom");
        assert!(server.requests()[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer t0ken"));
    }
}
