//! The node agent: joins the cluster, registers its Node and heartbeats, runs the pods bound to
//! it through `runtime` (in-process), reports their status, and serves their logs and exec.
//!
//! Layout:
//! - [`agent`]: the main loop, the pod dispatcher and image garbage collection.
//! - [`join`]: credentials: the bootstrap-token join, or a given kubeconfig; serving certificate.
//! - [`node`]: the Node object, its status and the Lease heartbeat.
//! - [`pods`]: the per-pod worker: sandbox, images, containers, restarts, probes, deletion.
//! - [`status`]: pod status as Kubernetes computes it (pure).
//! - [`sandbox`]: the pod's network namespace; [`rundir`]: the tmpfs for per-boot state (pod
//!   records, pod network files, IPAM).
//! - [`network`]: the pod network: bridge, veths, addresses, routes to other nodes, the node's
//!   nftables table (masquerade, hostPorts), the pods' hostname, resolv.conf and hosts files.
//! - [`proxy`]: Services as an nftables table of the node (ClusterIP and NodePort DNAT to ready
//!   endpoints); [`dns`]: the cluster DNS server on the bridge gateway.
//! - Events go through `api::client::events` (queued, repeats counted), shared with the controllers and the scheduler.
//! - [`server`]: the HTTPS server for logs and exec.
//! - [`podspec`], [`env`], [`volumes`], [`probe`], [`pull`]: from a pod spec to run options,
//!   volumes, probes and images.

pub mod agent;
pub mod dns;
pub mod env;
pub mod join;
pub mod network;
pub mod node;
pub mod pods;
pub mod podspec;
pub mod probe;
pub mod proxy;
pub mod pull;
pub mod rundir;
pub mod sandbox;
pub mod server;
pub mod status;
pub mod volumes;
