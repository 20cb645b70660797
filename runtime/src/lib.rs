//! Flotilla's container runtime: it turns an OCI image into a running, isolated,
//! resource-limited process, as runc/crun and Docker do, daemonless as podman is.
//!
//! Layout:
//! - [`reference`]: image references, normalised as docker does.
//! - [`registry`]: the OCI distribution client: pull, push and registry auth.
//! - [`image`]: the content-addressed image store in the OCI image-layout format; import,
//!   docker-archive and OCI-archive save/load, tags, removal and garbage collection.
//! - [`layer`]: layer tar extraction (whiteouts, links, ownership, xattrs, path-escape checks),
//!   the store of extracted layers shared between images, and overlayfs root filesystems.
//! - [`spec`]: the plain-data container spec built from an image config and run options, and
//!   its validation; nothing forks before a spec is complete and checked.
//! - [`build`]: the Dockerfile parser (directives, heredocs, ARG/ENV expansion, stages) and
//!   the `.dockerignore` matcher; pure, no execution.
//! - [`cgroups`]: resource limits through cgroups v1 and v2.
//! - [`container`]: the container lifecycle and the process setup that executes a spec.
//! - [`network`]: rtnetlink links and routes, address allocation, nftables tables, and the
//!   docker-like bridge networks of `ctl run`.
//!
//! **This crate never talks to the apiserver.**

pub mod build;
pub mod cgroups;
pub mod container;
pub mod image;
pub mod layer;
pub mod network;
pub mod reference;
pub mod registry;
pub mod spec;
