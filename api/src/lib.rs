//! Flotilla's API: the resource types users write in manifests, the rules that check and default
//! them, label and field selectors, and the typed async client that every other component uses
//! to talk to the apiserver.
//!
//! Layout:
//! - [`resource`]: the table of kinds the cluster serves (group, version, plural, short names,
//!   scope, subresources), so that paths are computed, never spelled by hand.
//! - [`scheme`]: decoding a body into its typed form (unknown fields per `fieldValidation`),
//!   defaulting as Kubernetes defaults, and validation with the field path in every message.
//! - [`selector`]: label selectors (equality and set-based) and field selectors.
//! - [`pods`]: what several components must read the same way in a pod spec (sidecars).
//! - [`printers`]: kubectl's columns for each kind, shared by `ctl get` and the server's Table answers.
//! - [`client`]: the HTTPS client (CA, bearer token, several servers with fail-over), typed
//!   get/list/create/update/patch/delete/watch, and the watcher state machine.
//!
//! The types themselves are those of the `k8s-openapi` crate, re-exported here: they are
//! generated from Kubernetes' own OpenAPI document, so field names and shapes match kubectl's
//! exactly, which is the promise Flotilla makes to its users.
//!
//! **This crate does no I/O besides its client, and knows nothing of axum or openraft.**

pub mod client;
pub mod pods;
pub mod printers;
pub mod resource;
pub mod scheme;
pub mod selector;
pub mod taints;

pub use k8s_openapi;
pub use k8s_openapi::api::apps::v1 as apps;
pub use k8s_openapi::api::coordination::v1 as coordination;
pub use k8s_openapi::api::core::v1 as core;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
