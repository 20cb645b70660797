//! The scheduler: binds pending pods to nodes through filter and score plugins.
//!
//! Nothing here yet: the scheduler arrives with the orchestration issue.
