//! Reconcile loops (Deployment → ReplicaSet → Pods, rolling updates, Service endpoints, node
//! lifecycle, owner-based garbage collection).
//!
//! Nothing here yet: the controllers arrive with the orchestration issue. The crate exists so the
//! workspace has its final shape and `ARCHITECTURE.md` can map it.
