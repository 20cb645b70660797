//! One module per verb. Each takes its parsed arguments and a writer for standard output, so
//! tests can capture what it prints.

pub mod build;
pub mod cluster;
pub mod completion;
pub mod compose;
pub mod containers;
pub mod describe;
pub mod get;
pub mod images;
pub mod network;
pub mod registry;
pub mod registry_serve;
pub mod version;

// Write verbs (apply, create, delete, ...) and what they share.
pub mod apply;
pub mod config;
pub mod create;
pub mod delete;
pub mod label;
pub mod node;
pub mod objects;
pub mod rollout;
pub mod scale;
pub mod set;
