//! The HTTP side of the registry client: the scheme and host for a registry (plain HTTP only for
//! loopback or `--insecure-registry` hosts), TLS roots (the system bundle plus extra CA files,
//! since reqwest's `rustls-tls-manual-roots` starts with none), and requests that answer a 401
//! with the challenge's scheme and retry once, caching bearer tokens per registry and scope.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::auth::{parse_challenge, AuthFile, Challenge, Credentials};
use crate::image::ImageError;
use crate::reference::ReferenceError;

/// Blobs larger than this are uploaded in chunks (PATCH with Content-Range), smaller ones in one PUT.
pub const DEFAULT_CHUNK_THRESHOLD: u64 = 8 * 1024 * 1024;

/// The system CA bundle on Debian-like systems.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `HOST:PORT` (or `HOST`) entries spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Extra PEM CA files to trust (besides the system bundle).
    pub ca_files: Vec<PathBuf>,
    /// The credentials file (see [`super::default_auth_file`]).
    pub auth_file: PathBuf,
    /// Blobs above this size are uploaded in chunks of this size.
    pub chunk_threshold: u64,
    /// Progress bars on stderr (when it is a terminal) instead of plain lines.
    pub progress_bars: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            ca_files: Vec::new(),
            auth_file: super::default_auth_file(),
            chunk_threshold: DEFAULT_CHUNK_THRESHOLD,
            progress_bars: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url}: the registry answered {status}: {body}")]
    Status {
        method: String,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("manifest for {name} not found: manifest unknown")]
    ManifestNotFound { name: String },
    #[error("unauthorized: authentication required; run ctl login {registry}")]
    Unauthorized { registry: String },
    #[error("unauthorized: incorrect username or password for {registry}")]
    BadCredentials { registry: String },
    #[error(
        "{what} from {url} failed verification: expected digest {expected}, got {actual}; nothing was stored"
    )]
    DigestMismatch {
        what: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: the registry sent more than the expected {limit} bytes; nothing was stored")]
    TooLarge { url: String, limit: u64 },
    #[error("{name}: no manifest for linux/amd64 in the image index (it has: {available})")]
    NoPlatform { name: String, available: String },
    #[error("invalid manifest for {name}: {message}")]
    InvalidManifest { name: String, message: String },
    #[error("{registry}: unsupported WWW-Authenticate challenge {challenge:?}")]
    BadChallenge { registry: String, challenge: String },
    #[error("{registry}: the token endpoint {realm} answered without a token")]
    NoToken { registry: String, realm: String },
    #[error("{path}: {message}")]
    AuthFile { path: PathBuf, message: String },
    #[error("cannot load CA certificates from {path}: {message}")]
    Tls { path: PathBuf, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
}

/// A registry client, shared by the pulls and pushes of one command.
pub struct Registry {
    pub(crate) http: reqwest::Client,
    pub(crate) options: RegistryOptions,
    credentials: AuthFile,
    /// `Authorization` values per (registry, scope).
    tokens: Mutex<HashMap<(String, String), HeaderValue>>,
}

impl Registry {
    /// Builds the client: loads the system CA bundle when present, the extra CA files, and the
    /// credentials file.
    pub fn new(options: RegistryOptions) -> Result<Registry, RegistryError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30));
        let system = Path::new(SYSTEM_CA_BUNDLE);
        let mut ca_files: Vec<PathBuf> = Vec::new();
        if system.is_file() {
            ca_files.push(system.to_path_buf());
        }
        ca_files.extend(options.ca_files.iter().cloned());
        for path in &ca_files {
            let pem = std::fs::read(path).map_err(|source| RegistryError::Io {
                path: path.clone(),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RegistryError::Tls {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(RegistryError::Client)?;
        let credentials = AuthFile::load(&options.auth_file)?;
        Ok(Registry {
            http,
            options,
            credentials,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Checks `credentials` against the registry's `/v2/` (answering its challenge with them).
    pub async fn login(
        &self,
        registry: &str,
        credentials: &Credentials,
    ) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.base_url(registry));
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| RegistryError::Http {
                url: url.clone(),
                source: source.without_url(),
            })?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return check(response, "GET", &url).await.map(drop);
        }
        let header = challenge_of(&response);
        let auth = self
            .answer(registry, &header, &[], Some(credentials))
            .await
            .map_err(|e| match e {
                RegistryError::Unauthorized { .. } => RegistryError::BadCredentials {
                    registry: registry.to_owned(),
                },
                e => e,
            })?;
        let response = self
            .http
            .get(&url)
            .header(AUTHORIZATION, auth)
            .send()
            .await
            .map_err(|source| RegistryError::Http {
                url: url.clone(),
                source: source.without_url(),
            })?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::BadCredentials {
                registry: registry.to_owned(),
            });
        }
        check(response, "GET", &url).await.map(drop)
    }

    /// `https://HOST` or, for loopback and insecure registries, `http://HOST`; docker.io is
    /// served by registry-1.docker.io.
    pub fn base_url(&self, registry: &str) -> String {
        let host = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let scheme = if self.is_plain_http(registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }

    fn is_plain_http(&self, registry: &str) -> bool {
        if self
            .options
            .insecure_registries
            .iter()
            .any(|r| r == registry)
        {
            return true;
        }
        let host = host_of(registry);
        if self.options.insecure_registries.iter().any(|r| r == host) {
            return true;
        }
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Sends a request built by `make` (called again for the retry), answering a 401 with the
    /// registry's challenge for `scopes`.
    pub(crate) async fn send(
        &self,
        registry: &str,
        scopes: &[String],
        method: Method,
        url: &str,
        make: &(dyn Fn(RequestBuilder) -> RequestBuilder + Sync),
    ) -> Result<Response, RegistryError> {
        let key = (registry.to_owned(), scopes.join(" "));
        let cached = self.tokens.lock().ok().and_then(|t| t.get(&key).cloned());
        let request = |auth: Option<HeaderValue>| {
            let mut builder = make(self.http.request(method.clone(), url));
            if let Some(auth) = auth {
                builder = builder.header(AUTHORIZATION, auth);
            }
            builder
        };
        let http_error = |source: reqwest::Error| RegistryError::Http {
            url: url.to_owned(),
            source: source.without_url(),
        };
        let had_auth = cached.is_some();
        let response = request(cached).send().await.map_err(http_error)?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        if had_auth {
            tracing::debug!(registry, "cached authorization refused; asking again");
        }
        let header = challenge_of(&response);
        let credentials = self.credentials.get(registry);
        let auth = self
            .answer(registry, &header, scopes, credentials.as_ref())
            .await?;
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(key, auth.clone());
        }
        let response = request(Some(auth)).send().await.map_err(http_error)?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Unauthorized {
                registry: registry.to_owned(),
            });
        }
        Ok(response)
    }

    /// The `Authorization` value answering a challenge: Basic from the credentials, or a bearer
    /// token fetched from the realm (with Basic auth when there are credentials).
    async fn answer(
        &self,
        registry: &str,
        header: &str,
        scopes: &[String],
        credentials: Option<&Credentials>,
    ) -> Result<HeaderValue, RegistryError> {
        let unauthorized = || RegistryError::Unauthorized {
            registry: registry.to_owned(),
        };
        match parse_challenge(header) {
            Some(Challenge::Basic) => {
                let credentials = credentials.ok_or_else(unauthorized)?;
                header_value(&basic(credentials)).ok_or_else(unauthorized)
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let mut query: Vec<(&str, String)> = Vec::new();
                if let Some(service) = service {
                    query.push(("service", service));
                }
                if scopes.is_empty() {
                    query.extend(scope.map(|s| ("scope", s)));
                } else {
                    query.extend(scopes.iter().map(|s| ("scope", s.clone())));
                }
                let mut request = self.http.get(&realm).query(&query);
                if let Some(credentials) = credentials {
                    request = request.header(AUTHORIZATION, basic(credentials));
                }
                let response = request.send().await.map_err(|source| RegistryError::Http {
                    url: realm.clone(),
                    source: source.without_url(),
                })?;
                if matches!(
                    response.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ) {
                    return Err(unauthorized());
                }
                let response = check(response, "GET", &realm).await?;
                let body: serde_json::Value =
                    response
                        .json()
                        .await
                        .map_err(|source| RegistryError::Http {
                            url: realm.clone(),
                            source: source.without_url(),
                        })?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| RegistryError::NoToken {
                        registry: registry.to_owned(),
                        realm: realm.clone(),
                    })?;
                header_value(&format!("Bearer {token}")).ok_or_else(unauthorized)
            }
            None if header.is_empty() => Err(unauthorized()),
            None => Err(RegistryError::BadChallenge {
                registry: registry.to_owned(),
                challenge: header.to_owned(),
            }),
        }
    }
}

/// Turns a non-success response into [`RegistryError::Status`] with the body's text.
pub(crate) async fn check(
    response: Response,
    method: &str,
    url: &str,
) -> Result<Response, RegistryError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body: String = body.trim().chars().take(500).collect();
    Err(RegistryError::Status {
        method: method.to_owned(),
        url: url.to_owned(),
        status,
        body,
    })
}

/// The host of `HOST[:PORT]` or `[V6]:PORT`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    }
}

fn challenge_of(response: &Response) -> String {
    response
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn basic(credentials: &Credentials) -> String {
    let raw = format!("{}:{}", credentials.username, credentials.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn header_value(value: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_choice() {
        let registry = Registry::new(RegistryOptions {
            insecure_registries: vec!["myreg:5000".into()],
            auth_file: PathBuf::from("/nonexistent/auth.json"),
            ..RegistryOptions::default()
        })
        .expect("client");
        assert_eq!(
            registry.base_url("docker.io"),
            "https://registry-1.docker.io"
        );
        assert_eq!(registry.base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(registry.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(registry.base_url("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(registry.base_url("myreg:5000"), "http://myreg:5000");
        assert_eq!(registry.base_url("myreg:5001"), "https://myreg:5001");
        assert_eq!(registry.base_url("ghcr.io"), "https://ghcr.io");
    }
}
