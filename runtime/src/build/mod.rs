//! The front end of `flotilla build`: the Dockerfile parser with Docker's variable expansion,
//! and the `.dockerignore` matcher. Both are pure (no I/O); a later step executes the parsed
//! stages against a build context.
//!
//! - [`dockerfile`]: parser directives, continuations, heredocs, exec and shell forms, ARG/ENV
//!   scoping stage by stage, typed instructions, and `--target` stage selection.
//! - [`dockerignore`]: Docker's `.dockerignore` patterns (`filepath.Match` plus `**`, `!`
//!   exceptions, last match wins) and the walk's "can this directory be skipped" question.
//! - [`executor`]: runs the parsed stages into an image (`ctl build`), with [`cache`] (the
//!   step cache in `ROOT/build-cache.json`) and [`diff`] (a RUN's overlay upper dir as a layer).

pub mod cache;
pub mod diff;
pub mod dockerfile;
pub mod dockerignore;
pub mod executor;
