//! The OCI distribution client: pull and push images between a registry and the local
//! [`ImageStore`](crate::image::ImageStore), speaking the OCI distribution spec and Docker's
//! registry auth (anonymous, `Basic` with stored credentials, and the `Bearer` token dance).
//!
//! Submodules: [`auth`] (the credentials file and `WWW-Authenticate` parsing), [`client`] (the
//! HTTP client, TLS roots, the scheme choice and authenticated requests), [`pull`] and [`push`];
//! [`server`] is the other side, a registry serving the store itself.
//! The protocol is hand-written over `reqwest` because the Rust registry clients either pull in a
//! second TLS stack or do not stream blobs into a caller's store while verifying them.

mod auth;
mod client;
mod pull;
mod push;
pub mod server;

pub use auth::{default_auth_file, AuthEntry, AuthFile, Credentials};
pub use client::{Registry, RegistryError, RegistryOptions, DEFAULT_CHUNK_THRESHOLD};
pub use push::PushResult;
