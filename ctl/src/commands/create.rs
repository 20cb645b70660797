//! `ctl create -f` (POST each object; fails if it exists) and `ctl replace -f` (PUT each object;
//! fails if it does not exist, or if its resourceVersion is stale).

use std::io::Write;

use api::client::PostParams;
use api::scheme::FieldValidation;
use clap::Args;
use serde_json::Value;

use super::apply::print_objects;
use super::objects::{self, DryRun, WriteOutput};
use crate::cli::GlobalArgs;
use crate::connect;
use crate::manifest;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Create the objects in web.yaml\n  ctl create -f web.yaml\n\n  # Create from standard input\n  cat pod.json | ctl create -f -\n\n  # Check with the server first, changing nothing\n  ctl create -f web.yaml --dry-run=server"
)]
pub struct CreateArgs {
    /// The files, directories or `-` (standard input) that hold the objects
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub filenames: Vec<String>,

    /// Walk directories given with -f recursively
    #[arg(short = 'R', long)]
    pub recursive: bool,

    /// Only print what would be sent: "server" asks the server, "client" decides locally
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none", value_name = "MODE")]
    pub dry_run: DryRun,

    /// Output format: name, yaml or json
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<WriteOutput>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Replace a deployment with the content of web.yaml\n  ctl replace -f web.yaml\n\n  # Edit and put back, failing if someone changed it meanwhile\n  ctl get deploy web -o yaml > web.yaml && $EDITOR web.yaml && ctl replace -f web.yaml"
)]
pub struct ReplaceArgs {
    /// The files, directories or `-` (standard input) that hold the objects
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub filenames: Vec<String>,

    /// Walk directories given with -f recursively
    #[arg(short = 'R', long)]
    pub recursive: bool,

    /// Only print what would be sent: "server" asks the server, "client" decides locally
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none", value_name = "MODE")]
    pub dry_run: DryRun,

    /// Output format: name, yaml or json
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<WriteOutput>,
}

pub async fn create(
    global: &GlobalArgs,
    args: &CreateArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    write_all(
        global,
        Verb::Create,
        &args.filenames,
        args.recursive,
        args.dry_run,
        args.output,
        out,
    )
    .await
}

pub async fn replace(
    global: &GlobalArgs,
    args: &ReplaceArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    write_all(
        global,
        Verb::Replace,
        &args.filenames,
        args.recursive,
        args.dry_run,
        args.output,
        out,
    )
    .await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Create,
    Replace,
}

async fn write_all(
    global: &GlobalArgs,
    verb: Verb,
    filenames: &[String],
    recursive: bool,
    dry_run: DryRun,
    output: Option<WriteOutput>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (name, doing, done) = match verb {
        Verb::Create => ("create", "creating", "created"),
        Verb::Replace => ("replace", "replacing", "replaced"),
    };
    let manifests = manifest::read(filenames, recursive)?;
    if manifests.is_empty() {
        return Err(manifest::ManifestError::NoObjects { verb: name }.into());
    }
    let client = connect::client(global)?;
    let params = PostParams {
        dry_run: dry_run == DryRun::Server,
        field_validation: Some(FieldValidation::Strict),
        ..PostParams::default()
    };
    let mut errors = Vec::new();
    let mut results: Vec<Value> = Vec::new();
    for manifest in &manifests {
        let target = match objects::target_of(manifest, global, &client) {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let api = target.api(&client);
        let result = match (dry_run, verb) {
            (DryRun::Client, _) => Ok(manifest.object.clone()),
            (_, Verb::Create) => api.create(&params, &manifest.object).await,
            (_, Verb::Replace) => api.replace(&target.name, &params, &manifest.object).await,
        };
        match result {
            Ok(object) => match output {
                Some(WriteOutput::Name) => writeln!(out, "{}", target.display())?,
                Some(_) => results.push(object),
                None => writeln!(out, "{} {done}{}", target.display(), dry_run.suffix())?,
            },
            Err(e) => errors.push(objects::when(e, doing, &manifest.source)),
        }
    }
    print_objects(out, output, results)?;
    objects::finish(errors)
}
