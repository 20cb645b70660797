//! Harness for Flotilla's end-to-end tests: starts real apiserver processes through
//! `deploy/local-cluster` and gives tests clients for them.
