//! The node agent: registers its Node, heartbeats, and runs the pods bound to it through
//! `runtime`.
//!
//! Nothing here yet: the node agent arrives with the orchestration issue.
