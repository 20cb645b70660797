//! Reconcile loops of the control plane, run by the `flotilla-controllers` binary:
//! Deployment → ReplicaSet → Pods (rolling updates), Service endpoints, node lifecycle (heartbeat
//! expiry, taints, eviction, pod CIDRs) and owner-based garbage collection.
//!
//! Every controller is level-triggered: it keeps a cache of what it watches ([`informer`]),
//! reacts to changes, and resyncs everything periodically so that a missed event is repaired.

pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod hash;
pub mod informer;
pub mod nodelifecycle;
pub mod replicaset;
#[cfg(test)]
mod testing;
pub mod util;

use api::client::ClientError;

/// What stops a controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A request to the apiserver failed.
    #[error(transparent)]
    Client(#[from] ClientError),

    /// An object from the apiserver could not be converted to or from its typed form.
    #[error("cannot convert {what}: {error}")]
    Convert {
        what: String,
        error: serde_json::Error,
    },

    /// A command-line setting is unusable (bad CIDR, bad duration).
    #[error("invalid {flag} {value:?}: {reason}")]
    InvalidFlag {
        flag: &'static str,
        value: String,
        reason: String,
    },

    /// The pod CIDR range has no free block left for another node.
    #[error("cluster CIDR {cidr} has no free /{mask} block left for node {node}; use a larger --cluster-cidr or a larger --node-cidr-mask-size")]
    CidrExhausted {
        cidr: String,
        mask: u8,
        node: String,
    },

    /// A watch stream ended, which only happens when the controller is shutting down.
    #[error("the watch of {resource} ended")]
    WatchEnded { resource: String },
}
