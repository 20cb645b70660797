//! The container runtime: OCI image store, Dockerfile builder, registry client, containers.
//!
//! Nothing here yet: the runtime arrives with the runtime issues.
