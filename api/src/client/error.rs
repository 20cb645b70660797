//! The one error type of the client, shaped so that printing it reads like kubectl.
//!
//! Every variant's message already contains the text of its underlying cause, so callers can log
//! `%err` or print it to a user without walking a `source()` chain (and nothing is printed twice
//! by tools that do walk the chain, such as `anyhow`'s `{:#}`).

use std::fmt;
use std::path::PathBuf;

use crate::meta::Status;

/// What went wrong talking to the apiserver or reading the client's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-2xx status. Displays as kubectl does:
    /// `Error from server (NotFound): deployments.apps "web" not found`.
    #[error("{}", ApiDisplay(.0))]
    Api(Box<Status>),

    /// A watch's resource version is too old for the server's history (HTTP 410, or an ERROR
    /// event with code 410): list again and watch from the new version.
    #[error("the watch's resource version is too old (410 Gone): list again and watch from the new version")]
    Gone,

    /// No server could be reached; names every address tried with what went wrong there.
    #[error("unable to connect to the server: {}", AttemptsDisplay(.attempts))]
    Connect { attempts: Vec<Attempt> },

    /// The connection broke, or timed out, while the server's answer was being read.
    #[error("reading the response from {server} failed: {error}")]
    Read { server: String, error: String },

    /// The server's answer was not the JSON we expected.
    #[error("cannot decode the server's response to {path}: {error}")]
    Decode {
        path: String,
        error: serde_json::Error,
    },

    /// A line of a watch stream was not a watch event.
    #[error("cannot decode a watch event ({error}): {line}")]
    WatchDecode {
        line: String,
        error: serde_json::Error,
    },

    /// The object to send could not be turned into JSON.
    #[error("cannot encode the request body: {error}")]
    Encode { error: serde_json::Error },

    /// The typed client was used with a kind the resource table does not know.
    #[error(
        "the server does not serve kind {kind} ({api_version}); it has no entry in api::resource"
    )]
    UnknownKind {
        api_version: &'static str,
        kind: &'static str,
    },

    /// A single-object request on a namespaced resource was made without a namespace.
    #[error("{resource} is namespaced: give a namespace (-n NAMESPACE) to address one object")]
    NamespaceRequired { resource: String },

    /// The configuration lists no server address.
    #[error("no server address configured: set clusters[].cluster.server in the kubeconfig or pass --server URL")]
    NoServers,

    /// A server address is not an http(s) URL.
    #[error("invalid server address {server:?}: {reason}")]
    InvalidServer { server: String, reason: String },

    /// The certificate authority is not usable PEM.
    #[error("invalid certificate authority: {reason}")]
    InvalidCa { reason: String },

    /// Building the TLS or HTTP client failed.
    #[error("cannot set up the HTTPS client: {reason}")]
    Setup { reason: String },

    /// No kubeconfig was given and none was found where kubectl looks.
    #[error("no kubeconfig found: pass --kubeconfig PATH or --server URL, set KUBECONFIG, or create ~/.kube/config")]
    NoKubeconfig,

    /// The kubeconfig file could not be read.
    #[error("cannot read kubeconfig {}: {error}", .path.display())]
    ReadKubeconfig {
        path: PathBuf,
        error: std::io::Error,
    },

    /// The kubeconfig file is not valid YAML of the kubeconfig shape.
    #[error("invalid kubeconfig {}: {error}", .path.display())]
    ParseKubeconfig {
        path: PathBuf,
        error: serde_yaml::Error,
    },

    /// The kubeconfig is readable but does not say how to reach a cluster.
    #[error("kubeconfig {}: {reason}", .path.display())]
    KubeconfigContent { path: PathBuf, reason: String },

    /// A file the kubeconfig points to (certificate authority, token file) could not be read.
    #[error("cannot read {what} {}: {error}", .path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },

    /// The kubeconfig could not be written.
    #[error("cannot write kubeconfig {}: {error}", .path.display())]
    WriteKubeconfig { path: PathBuf, error: String },
}

/// One failed try at one server address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub server: String,
    pub cause: String,
}

impl ClientError {
    /// The HTTP status code of an [`ClientError::Api`] error (410 for [`ClientError::Gone`]).
    pub fn status_code(&self) -> Option<u16> {
        match self {
            ClientError::Api(status) => status.code.and_then(|c| u16::try_from(c).ok()),
            ClientError::Gone => Some(410),
            _ => None,
        }
    }

    /// The `reason` of an [`ClientError::Api`] error, such as `NotFound` or `Conflict`.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ClientError::Api(status) => status.reason.as_deref(),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status_code() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.status_code() == Some(409) && self.reason() != Some("AlreadyExists")
    }

    pub fn is_already_exists(&self) -> bool {
        self.reason() == Some("AlreadyExists")
    }

    /// Builds an [`ClientError::Api`] for a non-2xx answer whose body is not a `Status`, the
    /// way kubectl makes one up from the status code, so callers can match on reason either way.
    pub(crate) fn from_status_code(code: u16, body: &[u8]) -> ClientError {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() {
            format!("the server returned HTTP status {code}")
        } else {
            truncate(text, 512)
        };
        ClientError::Api(Box::new(Status {
            code: Some(i32::from(code)),
            reason: Some(reason_for_code(code).to_string()),
            message: Some(message),
            status: Some("Failure".to_string()),
            ..Status::default()
        }))
    }
}

/// Kubernetes' `StatusReason` for an HTTP status code, as client-go guesses it.
pub(crate) fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ if code >= 500 => "InternalError",
        _ => "Unknown",
    }
}

pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

struct ApiDisplay<'a>(&'a Status);

impl fmt::Display for ApiDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.0;
        let message = status.message.as_deref().filter(|m| !m.is_empty());
        let reason = status.reason.as_deref().filter(|r| !r.is_empty());
        f.write_str("Error from server")?;
        if let Some(reason) = reason {
            write!(f, " ({reason})")?;
        }
        match (message, status.code) {
            (Some(message), _) => write!(f, ": {message}"),
            (None, Some(code)) => write!(f, ": the server returned HTTP status {code}"),
            (None, None) => f.write_str(": the server reported a failure without a message"),
        }
    }
}

struct AttemptsDisplay<'a>(&'a [Attempt]);

impl fmt::Display for AttemptsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no server address to try");
        }
        for (i, attempt) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", attempt.server, attempt.cause)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: i32, reason: &str, message: &str) -> ClientError {
        ClientError::Api(Box::new(Status {
            code: Some(code),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            ..Status::default()
        }))
    }

    #[test]
    fn api_errors_display_like_kubectl() {
        let cases = [
            (
                api(404, "NotFound", r#"deployments.apps "web" not found"#),
                r#"Error from server (NotFound): deployments.apps "web" not found"#,
            ),
            (
                api(409, "Conflict", "the object has been modified"),
                "Error from server (Conflict): the object has been modified",
            ),
            (
                ClientError::Api(Box::new(Status {
                    code: Some(500),
                    ..Status::default()
                })),
                "Error from server: the server returned HTTP status 500",
            ),
            (
                ClientError::from_status_code(404, b"404 page not found\n"),
                "Error from server (NotFound): 404 page not found",
            ),
            (
                ClientError::from_status_code(502, b""),
                "Error from server (InternalError): the server returned HTTP status 502",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected);
        }
    }

    #[test]
    fn connect_error_names_every_address() {
        let error = ClientError::Connect {
            attempts: vec![
                Attempt {
                    server: "https://127.0.0.1:1".into(),
                    cause: "connection refused".into(),
                },
                Attempt {
                    server: "https://10.0.0.2:6443".into(),
                    cause: "timed out".into(),
                },
            ],
        };
        assert_eq!(
            error.to_string(),
            "unable to connect to the server: https://127.0.0.1:1: connection refused; https://10.0.0.2:6443: timed out"
        );
    }

    #[test]
    fn helpers_classify_errors() {
        assert!(api(404, "NotFound", "x").is_not_found());
        assert!(api(409, "Conflict", "x").is_conflict());
        assert!(!api(409, "AlreadyExists", "x").is_conflict());
        assert!(api(409, "AlreadyExists", "x").is_already_exists());
        assert_eq!(ClientError::Gone.status_code(), Some(410));
        assert_eq!(ClientError::NoServers.status_code(), None);
    }

    #[test]
    fn truncate_keeps_short_text_and_cuts_long_text_on_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééééé", 2), "éé...");
    }
}
