//! `ctl set image`: change container images of Pods, Deployments and ReplicaSets with a
//! strategic merge patch, which merges containers by name so other fields are left alone.

use std::io::Write;

use api::client::{Patch, PatchParams};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::objects::{self, DryRun, Target};
use crate::cli::GlobalArgs;
use crate::connect;

#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Update the images of a pod template's containers
    #[command(
        after_help = "Examples:\n  # Set the image of container web of deployment web\n  ctl set image deploy/web web=nginx:1.27\n\n  # Set every container's image\n  ctl set image deployment web '*=busybox:1.37'\n\n  # Two containers at once\n  ctl set image deploy/web web=nginx:1.27 sidecar=envoy:1.31"
    )]
    Image(SetImageArgs),
}

#[derive(Debug, Args)]
pub struct SetImageArgs {
    /// TYPE NAME or TYPE/NAME, then CONTAINER=IMAGE pairs (`*` for every container)
    #[arg(value_name = "ARGS", required = true, num_args = 1..)]
    pub args: Vec<String>,

    /// Only print what would be sent: "server" asks the server, "client" decides locally
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none", value_name = "MODE")]
    pub dry_run: DryRun,
}

pub async fn run(
    global: &GlobalArgs,
    command: &SetCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        SetCommand::Image(args) => image(global, args, out).await,
    }
}

async fn image(
    global: &GlobalArgs,
    args: &SetImageArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (pairs, resources): (Vec<&String>, Vec<&String>) =
        args.args.iter().partition(|a| a.contains('='));
    if pairs.is_empty() {
        anyhow::bail!("at least one image update is required");
    }
    let mut images = Vec::new();
    for pair in pairs {
        match pair.split_once('=') {
            Some((container, image)) if !container.is_empty() && !image.is_empty() => {
                images.push((container, image))
            }
            _ => anyhow::bail!("invalid image update {pair:?}: use CONTAINER=IMAGE"),
        }
    }
    let client = connect::client(global)?;
    let namespace = objects::namespace(global, &client);
    let resources: Vec<String> = resources.into_iter().cloned().collect();
    if resources.is_empty() {
        anyhow::bail!(
            "one or more resources must be specified as <resource> <name> or <resource>/<name>"
        );
    }
    let targets = objects::targets_from_args(&resources, &namespace)?;
    let mut errors = Vec::new();
    for target in &targets {
        match set_one(&client, target, &images, args.dry_run).await {
            Ok(()) => writeln!(
                out,
                "{} image updated{}",
                target.display(),
                args.dry_run.suffix()
            )?,
            Err(e) => errors.push(e),
        }
    }
    objects::finish(errors)
}

async fn set_one(
    client: &api::client::Client,
    target: &Target,
    images: &[(&str, &str)],
    dry_run: DryRun,
) -> anyhow::Result<()> {
    let pod_spec: &[&str] = match target.info.kind {
        "Pod" => &["spec"],
        "Deployment" | "ReplicaSet" => &["spec", "template", "spec"],
        _ => anyhow::bail!(
            "{} has no pod template: set image works on pods, deployments and replicasets",
            target.info.qualified_name()
        ),
    };
    let api = target.api(client);
    let object = api.get(&target.name).await?;
    let mut spec = &object;
    for key in pod_spec {
        spec = &spec[*key];
    }
    let mut patch_spec = Map::new();
    let mut found = vec![false; images.len()];
    for list in ["initContainers", "containers"] {
        let mut changes = Vec::new();
        for container in spec[list].as_array().into_iter().flatten() {
            let name = container["name"].as_str().unwrap_or_default();
            for (index, (wanted, image)) in images.iter().enumerate() {
                if *wanted == "*" || *wanted == name {
                    found[index] = true;
                    changes.push(json!({"name": name, "image": image}));
                }
            }
        }
        if !changes.is_empty() {
            patch_spec.insert(list.to_string(), Value::Array(changes));
        }
    }
    if let Some(index) = found.iter().position(|f| !f) {
        anyhow::bail!("unable to find container named {:?}", images[index].0);
    }
    let mut patch = Value::Object(patch_spec);
    for key in pod_spec.iter().rev() {
        patch = json!({ *key: patch });
    }
    if dry_run == DryRun::Client {
        return Ok(());
    }
    let params = PatchParams {
        dry_run: dry_run == DryRun::Server,
        ..PatchParams::default()
    };
    api.patch(&target.name, &params, &Patch::Strategic(patch))
        .await?;
    Ok(())
}
