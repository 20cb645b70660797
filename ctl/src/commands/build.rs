//! `ctl build`: builds an image from a Dockerfile into the local store, as `docker build`
//! with BuildKit's plain progress does. Progress goes to stderr (as docker prints it) so that
//! stdout carries only what scripts read: the image id with `-q`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use runtime::build::executor::{build as run_build, BuildOptions};

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context: a directory whose files COPY and ADD can read
    #[arg(value_name = "CONTEXT")]
    pub build_context: PathBuf,
    /// Name and optionally a tag in the "name:tag" format (repeatable)
    #[arg(short = 't', long = "tag", value_name = "NAME:TAG")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Set build-time variables (repeatable)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Set metadata for an image (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// How to reach registries for base images missing from the local store
    #[command(flatten)]
    pub registry: crate::commands::registry::RegistryFlags,
}

/// Runs the build; `out` gets the image id with `-q`.
pub fn build(global: &GlobalArgs, args: &BuildArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if !args.build_context.is_dir() {
        bail!("unable to prepare context: path {:?} not found or not a directory", args.build_context.display().to_string());
    }
    let opts = BuildOptions {
        context_dir: args.build_context.clone(),
        dockerfile: args.file.clone(),
        tags: args.tags.clone(),
        build_args: key_values(&args.build_args, "--build-arg", true)?,
        target: args.target.clone(),
        no_cache: args.no_cache,
        labels: key_values(&args.labels, "--label", false)?,
        quiet: args.quiet,
        root: global.root_dir(),
        registry: runtime::registry::RegistryOptions {
            insecure_registries: args.registry.insecure_registries.clone(),
            ca_files: args.registry.registry_ca.clone(),
            ..runtime::registry::RegistryOptions::default()
        },
    };
    if args.quiet {
        run_build(&opts, out).context("build failed")?;
    } else {
        let stderr = io::stderr();
        let mut progress = stderr.lock();
        run_build(&opts, &mut progress).context("build failed")?;
    }
    Ok(())
}

/// `K=V` pairs; with `from_env`, a bare `K` takes its value from this process's environment
/// (as `docker build --build-arg K` does) and is skipped when unset.
fn key_values(items: &[String], flag: &str, from_env: bool) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                map.insert(k.to_string(), v.to_string());
            }
            None if from_env && !item.is_empty() => {
                if let Ok(v) = std::env::var(item) {
                    map.insert(item.clone(), v);
                }
            }
            None if !from_env && !item.is_empty() => {
                map.insert(item.clone(), String::new());
            }
            _ => bail!("{flag} {item:?}: expected KEY=VALUE"),
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_parse_and_reject() {
        let map = key_values(&["A=1".into(), "B=x=y".into()], "--label", false).expect("valid");
        assert_eq!(map.get("A").map(String::as_str), Some("1"));
        assert_eq!(map.get("B").map(String::as_str), Some("x=y"));
        assert!(key_values(&["=v".into()], "--label", false).is_err());
    }
}
