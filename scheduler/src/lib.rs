//! The scheduler: binds pending pods to nodes.
//!
//! - [`cache`]: nodes and what is placed on them (bound or assumed pods), digested for decisions.
//! - [`filter`]: whether a pod may go on a node, and kube-scheduler's words for why not.
//! - [`score`]: the choice among feasible nodes (spread, then least allocated), and [`select`],
//!   the whole decision for one pod.
//! - [`queue`]: pods waiting for a decision, with back-off for those no node fits.
//! - [`scheduler`]: the async loop that watches, decides, and binds.
//! - [`binder`]: writes the bindings, in batches through the apiserver's bulk route (one by one
//!   through `pods/NAME/binding` where it has none).
//!
//! Everything but [`scheduler`] is pure and synchronous, so decisions are tested and measured
//! without an apiserver.

pub mod binder;
pub mod cache;
pub mod filter;
pub mod queue;
pub mod scheduler;
pub mod score;

pub use binder::BinderOptions;
pub use cache::{Cache, NodeInfo, PodInfo, PodKey, Resources};
pub use filter::{filter, FitError, Reason};
pub use queue::Queue;
pub use scheduler::{run, Options, SchedulerError, DEFAULT_SCHEDULER_NAME};
pub use score::{score, select, Placement, Score};

#[cfg(test)]
mod testutil;
