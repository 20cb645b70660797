//! Compose files on the cluster: [`parse`] reads a file (with [`interpolate`] for `${VAR}`)
//! into the [`model`], and [`convert`] turns the model into the Namespace, Deployments and
//! Services that `ctl compose up` applies, as kompose would. Nothing here does network I/O; the
//! verbs live in `commands::compose`.

pub mod convert;
pub mod interpolate;
pub mod model;
pub mod parse;

/// Why a Compose file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("no configuration file provided: not found in {dir} (looked for compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml); pass -f FILE")]
    NoFile { dir: String },

    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },

    #[error("cannot parse {path}: {message}")]
    Yaml { path: String, message: String },

    #[error("cannot parse {path}: {message}")]
    DotEnv { path: String, message: String },

    #[error("{file}: {path}: {message}")]
    Invalid {
        file: String,
        path: String,
        message: String,
    },

    /// A valid project that cannot run on the cluster as it is.
    #[error("{path}: {message}")]
    Unconvertible { path: String, message: String },
}
