//! One module per verb. Each takes its parsed arguments and a writer for standard output, so
//! tests can capture what it prints.

pub mod cluster;
pub mod completion;
pub mod version;
