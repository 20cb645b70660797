//! Flotilla's apiserver (being written).
pub mod store;
