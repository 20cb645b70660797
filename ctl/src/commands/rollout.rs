//! `ctl rollout restart|pause|resume|status` for Deployments. `history` and `undo` need the
//! ReplicaSets the Deployment controller makes, and are not in the tree yet.

use std::io::Write;
use std::time::Duration;

use api::client::{ListParams, Patch, PatchParams, WatchEvent};
use clap::{ArgAction, Args, Subcommand};
use futures::StreamExt as _;
use serde_json::{json, Value};

use super::objects::{self, Target};
use crate::cli::GlobalArgs;
use crate::connect;

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Restart a deployment's pods by changing its pod template
    #[command(
        after_help = "Examples:\n  # Restart deployment web\n  ctl rollout restart deploy/web"
    )]
    Restart(RolloutArgs),

    /// Stop a deployment from rolling out changes to its pod template
    #[command(
        after_help = "Examples:\n  # Pause deployment web, change it, then resume\n  ctl rollout pause deploy/web\n  ctl set image deploy/web web=nginx:1.27\n  ctl rollout resume deploy/web"
    )]
    Pause(RolloutArgs),

    /// Let a paused deployment roll out again
    #[command(
        after_help = "Examples:\n  # Resume deployment web\n  ctl rollout resume deploy/web"
    )]
    Resume(RolloutArgs),

    /// Watch a deployment's rollout until it completes
    #[command(
        after_help = "Examples:\n  # Wait for deployment web to finish rolling out\n  ctl rollout status deploy/web\n\n  # Give up after two minutes\n  ctl rollout status deploy/web --timeout=2m\n\n  # Print the status once, without waiting\n  ctl rollout status deploy/web --watch=false"
    )]
    Status(RolloutStatusArgs),
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// TYPE NAME... or TYPE/NAME... (deployments)
    #[arg(value_name = "RESOURCE", required = true)]
    pub resources: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RolloutStatusArgs {
    /// TYPE NAME or TYPE/NAME (a deployment)
    #[arg(value_name = "RESOURCE", required = true)]
    pub resources: Vec<String>,

    /// Keep watching until the rollout finishes
    #[arg(short = 'w', long, action = ArgAction::Set, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub watch: bool,

    /// How long to wait (0: no limit), e.g. 30s, 5m
    #[arg(long, default_value = "0s", value_parser = objects::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

pub async fn run(
    global: &GlobalArgs,
    command: &RolloutCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (resources, verb) = match command {
        RolloutCommand::Restart(a) => (&a.resources, "restart"),
        RolloutCommand::Pause(a) => (&a.resources, "pause"),
        RolloutCommand::Resume(a) => (&a.resources, "resume"),
        RolloutCommand::Status(a) => (&a.resources, "status"),
    };
    let client = connect::client(global)?;
    let namespace = objects::namespace(global, &client);
    let targets = objects::targets_from_args(resources, &namespace)?;
    for target in &targets {
        if target.info.kind != "Deployment" {
            anyhow::bail!(
                "no {verb} has been implemented for {}: rollout works on deployments",
                target.info.qualified_kind()
            );
        }
    }
    if let RolloutCommand::Status(args) = command {
        let [target] = targets.as_slice() else {
            anyhow::bail!("rollout status takes exactly one deployment");
        };
        return objects::with_timeout(args.timeout, status(&client, target, args.watch, out)).await;
    }
    let mut errors = Vec::new();
    for target in &targets {
        match change(&client, target, verb).await {
            Ok(done) => writeln!(out, "{} {done}", target.display())?,
            Err(e) => errors.push(e),
        }
    }
    objects::finish(errors)
}

/// Restart, pause or resume one deployment; returns the past tense to print.
async fn change(
    client: &api::client::Client,
    target: &Target,
    verb: &str,
) -> anyhow::Result<&'static str> {
    let api = target.api(client);
    let live = api.get(&target.name).await?;
    let paused = live
        .pointer("/spec/paused")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (patch, done) = match verb {
        "restart" => {
            if paused {
                anyhow::bail!(
                    "{} can't restart paused deployment (run rollout resume first)",
                    target.quoted()
                );
            }
            let now = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            (
                json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}}),
                "restarted",
            )
        }
        "pause" => {
            if paused {
                anyhow::bail!("{} is already paused", target.quoted());
            }
            (json!({"spec": {"paused": true}}), "paused")
        }
        _ => {
            if !paused {
                anyhow::bail!("{} is not paused", target.quoted());
            }
            (json!({"spec": {"paused": null}}), "resumed")
        }
    };
    api.patch(&target.name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(done)
}

/// Prints kubectl's rollout messages as they change until the rollout is done (or once, without
/// `watch`). Watches the deployment; a watch that ends is re-opened after a fresh read.
async fn status(
    client: &api::client::Client,
    target: &Target,
    watch: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let api = target.api(client);
    let mut last_message = String::new();
    loop {
        let live = api.get(&target.name).await?;
        if report(&live, &target.name, &mut last_message, out)? || !watch {
            return Ok(());
        }
        let version = live
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let params = ListParams {
            field_selector: Some(format!("metadata.name={}", target.name)),
            timeout_seconds: Some(60),
            ..ListParams::default()
        };
        let mut events = match api.watch(&params, &version).await {
            Ok(events) => events,
            Err(error) => {
                tracing::debug!(%error, "cannot watch the deployment; reading it again shortly");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(event) = events.next().await {
            match event {
                Ok(WatchEvent::Added(object)) | Ok(WatchEvent::Modified(object)) => {
                    if object.pointer("/metadata/name").and_then(Value::as_str)
                        == Some(&target.name)
                        && report(&object, &target.name, &mut last_message, out)?
                    {
                        return Ok(());
                    }
                }
                Ok(WatchEvent::Deleted(_)) => anyhow::bail!("object has been deleted"),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "watch failed; reading the deployment again");
                    break;
                }
            }
        }
    }
}

/// Prints the message for this state if it is new; true when the rollout is complete.
fn report(
    deployment: &Value,
    name: &str,
    last: &mut String,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let (message, done) = rollout_status(deployment, name)?;
    if message != *last {
        writeln!(out, "{message}")?;
        out.flush()?;
        *last = message;
    }
    Ok(done)
}

/// kubectl's reading of a Deployment's rollout: the message, and whether it is complete.
pub fn rollout_status(deployment: &Value, name: &str) -> anyhow::Result<(String, bool)> {
    let int = |pointer: &str| {
        deployment
            .pointer(pointer)
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let generation = int("/metadata/generation");
    let observed = int("/status/observedGeneration");
    if generation > observed {
        return Ok((
            "Waiting for deployment spec update to be observed...".to_string(),
            false,
        ));
    }
    let deadline_exceeded = deployment
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded");
    if deadline_exceeded {
        anyhow::bail!("deployment {name:?} exceeded its progress deadline");
    }
    let wanted = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let updated = int("/status/updatedReplicas");
    let replicas = int("/status/replicas");
    let available = int("/status/availableReplicas");
    let message = if updated < wanted {
        format!("Waiting for deployment {name:?} rollout to finish: {updated} out of {wanted} new replicas have been updated...")
    } else if replicas > updated {
        format!("Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...", replicas - updated)
    } else if available < updated {
        format!("Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available...")
    } else {
        return Ok((format!("deployment {name:?} successfully rolled out"), true));
    };
    Ok((message, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_like_kubectl() {
        let check = |d: Value, expected: &str, done: bool| match rollout_status(&d, "web") {
            Ok((message, complete)) => {
                assert_eq!(message, expected);
                assert_eq!(complete, done);
            }
            Err(e) => panic!("{e}"),
        };
        check(
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": {"observedGeneration": 1}}),
            "Waiting for deployment spec update to be observed...",
            false,
        );
        check(
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3}}),
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...",
            false,
        );
        check(
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4}}),
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...",
            false,
        );
        check(
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2}}),
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...",
            false,
        );
        check(
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}}),
            "deployment \"web\" successfully rolled out",
            true,
        );
        let stuck = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}});
        assert!(rollout_status(&stuck, "web").is_err());
    }
}
