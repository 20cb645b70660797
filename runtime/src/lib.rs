//! Flotilla's container runtime: it turns an OCI image into a running, isolated,
//! resource-limited process, as runc/crun and Docker do, daemonless as podman is.
//!
//! Layout:
//! - [`reference`]: image references, normalised as docker does.
//! - [`image`]: the content-addressed image store in the OCI image-layout format; import,
//!   docker-archive and OCI-archive save/load, tags, removal and garbage collection.
//! - [`layer`]: layer tar extraction (whiteouts, links, ownership, xattrs, path-escape checks),
//!   the store of extracted layers shared between images, and overlayfs root filesystems.
//! - [`spec`]: the plain-data container spec built from an image config and run options, and
//!   its validation; nothing forks before a spec is complete and checked.
//! - [`cgroups`]: resource limits through cgroups v1 and v2.
//! - [`container`]: the container lifecycle and the process setup that executes a spec.
//!
//! **This crate never talks to the apiserver.**

pub mod cgroups;
pub mod container;
pub mod image;
pub mod layer;
pub mod reference;
pub mod spec;
