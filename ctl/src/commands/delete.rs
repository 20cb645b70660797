//! `ctl delete`: objects named in files, by `TYPE NAME...` or `TYPE/NAME...`, or chosen by
//! label (`-l`) or all of a kind (`--all`); then, as kubectl does by default, waits until they
//! are gone.

use std::io::Write;
use std::time::Duration;

use api::client::{DeleteParams, DeleteResponse, DynamicApi, ListParams};
use clap::{ArgAction, Args};
use serde_json::Value;

use super::objects::{self, Target};
use crate::cli::GlobalArgs;
use crate::connect;
use crate::manifest;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Delete the objects described in web.yaml\n  ctl delete -f web.yaml\n\n  # Delete a deployment and a pod by name\n  ctl delete deploy/web pod/debug\n\n  # Delete the pods labelled app=web, without waiting for them to go\n  ctl delete pods -l app=web --wait=false\n\n  # Delete every service in namespace test\n  ctl delete svc --all -n test\n\n  # Delete a pod at once, skipping its grace period\n  ctl delete pod web-1 --grace-period=0"
)]
pub struct DeleteArgs {
    /// TYPE NAME..., TYPE/NAME..., or TYPE with -l or --all
    #[arg(value_name = "RESOURCE")]
    pub resources: Vec<String>,

    /// Files, directories or `-` naming the objects to delete
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filenames: Vec<String>,

    /// Walk directories given with -f recursively
    #[arg(short = 'R', long)]
    pub recursive: bool,

    /// Delete the objects whose labels match this selector (e.g. app=web,tier!=db)
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Delete every object of the type in the namespace
    #[arg(long)]
    pub all: bool,

    /// Seconds the object has to stop gracefully; -1 uses the object's own default, 0 deletes at once
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "SECONDS")]
    pub grace_period: i64,

    /// Delete at once, without a grace period (same as --grace-period=0)
    #[arg(long)]
    pub force: bool,

    /// Give the object one second to stop (same as --grace-period=1)
    #[arg(long)]
    pub now: bool,

    /// Wait until the objects are gone before returning
    #[arg(long, action = ArgAction::Set, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub wait: bool,

    /// How long to wait for the objects to go (0: no limit), e.g. 30s, 5m
    #[arg(long, default_value = "0s", value_parser = objects::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Treat objects that do not exist as deleted
    #[arg(long)]
    pub ignore_not_found: bool,

    /// Output format: only "name" is supported
    #[arg(short = 'o', long = "output", value_parser = ["name"], value_name = "FORMAT")]
    pub output: Option<String>,
}

pub async fn run(
    global: &GlobalArgs,
    args: &DeleteArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let grace = if args.force {
        Some(0)
    } else if args.now {
        Some(1)
    } else if args.grace_period >= 0 {
        Some(args.grace_period)
    } else {
        None
    };
    if !args.filenames.is_empty() && !args.resources.is_empty() {
        anyhow::bail!("you cannot give resource names together with -f: pass one or the other");
    }
    if args.filenames.is_empty() && args.resources.is_empty() {
        anyhow::bail!("You must provide one or more resources by argument or filename.\nExample resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   '<resource> <name>'\n   '<resource>'");
    }
    let client = connect::client(global)?;
    let namespace = objects::namespace(global, &client);
    let mut errors = Vec::new();
    // Each object with the file it came from, for kubectl's "error when deleting FILE" message.
    let mut targets: Vec<(Target, Option<String>)> = Vec::new();
    if !args.filenames.is_empty() {
        for manifest in manifest::read(&args.filenames, args.recursive)? {
            match objects::target_of(&manifest, global, &client) {
                Ok(target) => targets.push((target, Some(manifest.source))),
                Err(e) => errors.push(e),
            }
        }
    } else if args.selector.is_some() || args.all {
        if args.resources.len() != 1 || args.resources[0].contains('/') {
            anyhow::bail!("name cannot be provided when a selector or --all is specified");
        }
        let info = objects::kind_of(&args.resources[0])?;
        let api = DynamicApi::new(client.clone(), info, Some(&namespace));
        let params = ListParams {
            label_selector: args.selector.clone(),
            ..ListParams::default()
        };
        let list = api.list(&params).await?;
        if list.items.is_empty() {
            eprintln!("No resources found");
        }
        for item in &list.items {
            let name = item
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            targets.push((
                Target {
                    info,
                    namespace: info.namespaced().then(|| namespace.clone()),
                    name: name.to_string(),
                },
                None,
            ));
        }
    } else {
        for target in objects::targets_from_args(&args.resources, &namespace)? {
            targets.push((target, None));
        }
    }

    let params = DeleteParams {
        grace_period_seconds: grace,
        ..DeleteParams::default()
    };
    let mut waiting = Vec::new();
    for (target, source) in targets {
        match target.api(&client).delete(&target.name, &params).await {
            Ok(response) => {
                let uid = match &response {
                    DeleteResponse::Deleting(object) => object
                        .pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    DeleteResponse::Deleted(_) => None,
                };
                match args.output.as_deref() {
                    Some(_) => writeln!(out, "{}", target.display())?,
                    None => writeln!(out, "{} deleted", target.deleted())?,
                }
                if let DeleteResponse::Deleting(_) = response {
                    waiting.push((target, uid));
                }
            }
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e) => errors.push(match source {
                Some(source) => objects::when(e, "deleting", &source),
                None => e.into(),
            }),
        }
    }
    // Print what was deleted before waiting, as kubectl does, so a slow wait shows progress.
    out.flush()?;
    if args.wait {
        for (target, uid) in &waiting {
            let waited = objects::with_timeout(
                args.timeout,
                objects::wait_deleted(&client, target, uid.as_deref()),
            )
            .await;
            if let Err(e) = waited {
                errors.push(anyhow::anyhow!(
                    "{e} on {}/{}",
                    target.info.plural,
                    target.name
                ));
            }
        }
    }
    objects::finish(errors)
}
