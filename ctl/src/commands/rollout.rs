//! `ctl rollout restart|pause|resume|status|history|undo` for Deployments. `history` and
//! `undo` read the ReplicaSets the Deployment controller makes: each keeps one revision of the
//! pod template, numbered by its `deployment.kubernetes.io/revision` annotation.

use std::io::Write;
use std::time::Duration;

use api::client::{ListParams, Patch, PatchParams, WatchEvent};
use clap::{ArgAction, Args, Subcommand};
use futures::StreamExt as _;
use serde_json::{json, Value};

use api::resource;

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

    /// Show a deployment's revisions, or one revision's pod template
    #[command(
        after_help = "Examples:\n  # List the revisions of deployment web\n  ctl rollout history deploy/web\n\n  # Show the pod template of revision 3\n  ctl rollout history deploy/web --revision=3"
    )]
    History(RolloutHistoryArgs),

    /// Roll a deployment back to an earlier revision
    #[command(
        after_help = "Examples:\n  # Roll deployment web back to the previous revision\n  ctl rollout undo deploy/web\n\n  # Roll back to revision 3\n  ctl rollout undo deploy/web --to-revision=3"
    )]
    Undo(RolloutUndoArgs),
}

#[derive(Debug, Args)]
pub struct RolloutHistoryArgs {
    /// TYPE NAME... or TYPE/NAME... (deployments)
    #[arg(value_name = "RESOURCE", required = true)]
    pub resources: Vec<String>,

    /// Show the pod template of this revision (0: list all revisions)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub revision: i64,
}

#[derive(Debug, Args)]
pub struct RolloutUndoArgs {
    /// TYPE NAME... or TYPE/NAME... (deployments)
    #[arg(value_name = "RESOURCE", required = true)]
    pub resources: Vec<String>,

    /// The revision to roll back to (0: the previous one)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub to_revision: i64,
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
        RolloutCommand::History(a) => (&a.resources, "history"),
        RolloutCommand::Undo(a) => (&a.resources, "undo"),
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
    if let RolloutCommand::History(args) = command {
        for target in &targets {
            match history(&client, target, args.revision).await {
                Ok(text) => write!(out, "{text}")?,
                Err(e) => errors.push(e),
            }
        }
        return objects::finish(errors);
    }
    if let RolloutCommand::Undo(args) = command {
        for target in &targets {
            match undo(&client, target, args.to_revision).await {
                Ok(done) => writeln!(out, "{} {done}", target.display())?,
                Err(e) => errors.push(e),
            }
        }
        return objects::finish(errors);
    }
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

/// The annotations of a ReplicaSet that belong to the Deployment controller or kubectl, not to
/// the revision: undo keeps the Deployment's own values of these (as kubectl's rollback).
const ANNOTATIONS_TO_SKIP: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// What `undo` decided for one deployment.
#[derive(Debug, PartialEq)]
pub enum Undo {
    /// The JSON patch to send.
    Patch(Value),
    /// The deployment already has that revision's template.
    Skipped { revision: i64 },
}

/// The ReplicaSets that `deployment` controls, read from its namespace.
async fn owned_replica_sets(
    client: &api::client::Client,
    target: &Target,
    deployment: &Value,
) -> anyhow::Result<Vec<Value>> {
    let info = resource::lookup("replicasets")
        .ok_or_else(|| anyhow::anyhow!("the resource table has no replicasets"))?;
    let api = api::client::DynamicApi::new(client.clone(), info, target.namespace.as_deref());
    // Narrow by the selector's matchLabels; ownership is then decided by the uid.
    let labels = deployment
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let mut params = ListParams::default();
    if !labels.is_empty() {
        params = params.labels(&labels);
    }
    let list = api.list(&params).await?;
    Ok(owned_by(deployment, list.items))
}

/// The ReplicaSets among `sets` whose controller is `deployment`.
pub fn owned_by(deployment: &Value, sets: Vec<Value>) -> Vec<Value> {
    let uid = deployment.pointer("/metadata/uid").and_then(Value::as_str);
    sets.into_iter()
        .filter(|rs| {
            rs.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|r| r["controller"] == true && r["uid"].as_str() == uid && uid.is_some())
        })
        .collect()
}

fn revision_of(rs: &Value) -> Option<i64> {
    rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
}

/// The owned ReplicaSets by revision, oldest first (those without a revision left out).
pub fn by_revision(sets: &[Value]) -> Vec<(i64, &Value)> {
    let mut revisions: Vec<(i64, &Value)> = sets
        .iter()
        .filter_map(|rs| revision_of(rs).map(|r| (r, rs)))
        .collect();
    revisions.sort_by_key(|(r, _)| *r);
    revisions
}

/// A template without the controller's pod-template-hash label.
fn without_hash(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
    }
    template
}

/// kubectl's rollback: the revision's pod template (without the hash label) and annotations
/// go back into the Deployment; the controller then rolls to it as to any new template.
pub fn plan_undo(deployment: &Value, sets: &[Value], to_revision: i64) -> anyhow::Result<Undo> {
    let name = deployment
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if deployment.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        anyhow::bail!("you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again");
    }
    if to_revision < 0 {
        anyhow::bail!("--to-revision must be 0 (the previous revision) or a revision number, not {to_revision}");
    }
    let revisions = by_revision(sets);
    let (revision, rs) = if to_revision == 0 {
        match revisions.len() {
            0 | 1 => anyhow::bail!("no rollout history found for deployment {name:?}"),
            n => revisions[n - 2],
        }
    } else {
        match revisions.iter().find(|(r, _)| *r == to_revision) {
            Some(found) => *found,
            None => anyhow::bail!("unable to find specified revision {to_revision} in history"),
        }
    };
    let template = without_hash(rs.pointer("/spec/template").unwrap_or(&Value::Null));
    let current = deployment.pointer("/spec/template").unwrap_or(&Value::Null);
    if &template == current {
        return Ok(Undo::Skipped { revision });
    }
    let mut annotations = serde_json::Map::new();
    let own = deployment
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    for key in ANNOTATIONS_TO_SKIP {
        if let Some(value) = own.and_then(|a| a.get(*key)) {
            annotations.insert((*key).to_string(), value.clone());
        }
    }
    if let Some(theirs) = rs
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (key, value) in theirs {
            if !ANNOTATIONS_TO_SKIP.contains(&key.as_str()) {
                annotations.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(Undo::Patch(json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ])))
}

/// Rolls one deployment back; returns what to print after its name.
async fn undo(
    client: &api::client::Client,
    target: &Target,
    to_revision: i64,
) -> anyhow::Result<String> {
    let api = target.api(client);
    let deployment = api.get(&target.name).await?;
    let sets = owned_replica_sets(client, target, &deployment).await?;
    match plan_undo(&deployment, &sets, to_revision)? {
        Undo::Skipped { revision } => Ok(format!(
            "skipped rollback (current template already matches revision {revision})"
        )),
        Undo::Patch(patch) => {
            api.patch(&target.name, &PatchParams::default(), &Patch::Json(patch))
                .await?;
            Ok("rolled back".to_string())
        }
    }
}

/// `rollout history`: the table of revisions, or one revision's pod template.
async fn history(
    client: &api::client::Client,
    target: &Target,
    revision: i64,
) -> anyhow::Result<String> {
    let deployment = target.api(client).get(&target.name).await?;
    let sets = owned_replica_sets(client, target, &deployment).await?;
    history_text(&target.display(), &sets, revision)
}

/// kubectl's history output: a REVISION/CHANGE-CAUSE table, or with `revision` that
/// revision's pod template.
pub fn history_text(display: &str, sets: &[Value], revision: i64) -> anyhow::Result<String> {
    let revisions = by_revision(sets);
    if revision > 0 {
        let Some((_, rs)) = revisions.iter().find(|(r, _)| *r == revision) else {
            anyhow::bail!("unable to find the specified revision");
        };
        let template = rs.pointer("/spec/template").unwrap_or(&Value::Null);
        return Ok(format!(
            "{display} with revision #{revision}\n{}",
            describe_template(template)
        ));
    }
    if revision < 0 {
        anyhow::bail!("--revision must be a revision number, not {revision}");
    }
    let mut text = format!("{display} \nREVISION  CHANGE-CAUSE\n");
    for (r, rs) in &revisions {
        let cause = rs
            .pointer("/metadata/annotations/kubernetes.io~1change-cause")
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        text.push_str(&format!("{r:<10}{cause}\n"));
    }
    text.push('\n');
    Ok(text)
}

/// A pod template as `kubectl describe` prints one.
fn describe_template(template: &Value) -> String {
    let mut out = String::from("Pod Template:\n");
    let pairs = |pointer: &str| -> Vec<String> {
        template
            .pointer(pointer)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (title, pointer) in [
        ("Labels", "/metadata/labels"),
        ("Annotations", "/metadata/annotations"),
    ] {
        let items = pairs(pointer);
        if items.is_empty() {
            out.push_str(&format!("  {title}:\t<none>\n"));
        } else {
            out.push_str(&format!("  {title}:\t{}\n", items.join("\n\t")));
        }
    }
    out.push_str("  Containers:\n");
    let containers = template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in &containers {
        out.push_str(&format!("   {}:\n", c["name"].as_str().unwrap_or_default()));
        out.push_str(&format!(
            "    Image:\t{}\n",
            c["image"].as_str().unwrap_or("<none>")
        ));
        let ports: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}/{}",
                    p["containerPort"].as_i64().unwrap_or_default(),
                    p["protocol"].as_str().unwrap_or("TCP")
                )
            })
            .collect();
        let ports = if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(", ")
        };
        out.push_str(&format!("    Port:\t{ports}\n"));
        for (title, key) in [("Command", "command"), ("Args", "args")] {
            if let Some(items) = c[key].as_array() {
                out.push_str(&format!("    {title}:\n"));
                for item in items {
                    out.push_str(&format!("      {}\n", item.as_str().unwrap_or_default()));
                }
            }
        }
        let env: Vec<String> = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let value = e["value"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| "<set to the key of a ConfigMap or Secret>".to_string());
                format!("{}:\t{value}", e["name"].as_str().unwrap_or_default())
            })
            .collect();
        if env.is_empty() {
            out.push_str("    Environment:\t<none>\n");
        } else {
            out.push_str(&format!(
                "    Environment:\n      {}\n",
                env.join("\n      ")
            ));
        }
    }
    let volumes: Vec<&str> = template
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    if volumes.is_empty() {
        out.push_str("  Volumes:\t<none>\n");
    } else {
        out.push_str(&format!("  Volumes:\t{}\n", volumes.join(", ")));
    }
    out
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

    fn rs(revision: i64, image: &str, owner: &str, extra_annotations: Value) -> Value {
        let mut annotations = json!({"deployment.kubernetes.io/revision": revision.to_string()});
        if let (Some(a), Some(extra)) = (annotations.as_object_mut(), extra_annotations.as_object())
        {
            a.extend(extra.clone());
        }
        json!({
            "metadata": {"name": format!("web-{revision}"), "annotations": annotations,
                "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": owner, "controller": true}]},
            "spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": format!("h{revision}")}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}}
        })
    }

    fn deployment(image: &str, paused: bool) -> Value {
        json!({
            "metadata": {"name": "web", "uid": "d1", "annotations": {
                "deployment.kubernetes.io/revision": "3", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"paused": paused, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}}
        })
    }

    fn sets() -> Vec<Value> {
        owned_by(
            &deployment("v3", false),
            vec![
                rs(
                    1,
                    "v1",
                    "d1",
                    json!({"kubernetes.io/change-cause": "first"}),
                ),
                rs(3, "v3", "d1", json!({})),
                rs(2, "v2", "d1", json!({})),
                rs(9, "other", "someone-else", json!({})),
            ],
        )
    }

    #[test]
    fn undo_goes_to_the_previous_revision_without_the_hash_label() {
        let Ok(Undo::Patch(patch)) = plan_undo(&deployment("v3", false), &sets(), 0) else {
            panic!("expected a patch");
        };
        assert_eq!(patch[0]["path"], "/spec/template");
        assert_eq!(patch[0]["value"]["spec"]["containers"][0]["image"], "v2");
        assert_eq!(
            patch[0]["value"]["metadata"]["labels"],
            json!({"app": "web"})
        );
        // The deployment keeps its own revision and last-applied annotations.
        assert_eq!(patch[1]["value"]["deployment.kubernetes.io/revision"], "3");
        assert_eq!(
            patch[1]["value"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{}"
        );

        let Ok(Undo::Patch(patch)) = plan_undo(&deployment("v3", false), &sets(), 1) else {
            panic!("expected a patch");
        };
        assert_eq!(patch[0]["value"]["spec"]["containers"][0]["image"], "v1");
        assert_eq!(patch[1]["value"]["kubernetes.io/change-cause"], "first");
    }

    #[test]
    fn undo_refuses_what_kubectl_refuses() {
        let message = |r: anyhow::Result<Undo>| match r {
            Ok(u) => panic!("expected an error, got {u:?}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            message(plan_undo(&deployment("v3", true), &sets(), 0)),
            "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again"
        );
        assert_eq!(
            message(plan_undo(&deployment("v3", false), &sets(), 7)),
            "unable to find specified revision 7 in history"
        );
        assert_eq!(
            message(plan_undo(&deployment("v1", false), &sets()[..1], 0)),
            "no rollout history found for deployment \"web\""
        );
        assert!(plan_undo(&deployment("v3", false), &sets(), -1).is_err());
        assert_eq!(
            plan_undo(&deployment("v3", false), &sets(), 3).ok(),
            Some(Undo::Skipped { revision: 3 })
        );
    }

    #[test]
    fn history_lists_owned_revisions_in_order() {
        let text = match history_text("deployment.apps/web", &sets(), 0) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            text,
            "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         first\n2         <none>\n3         <none>\n\n"
        );
        let one = match history_text("deployment.apps/web", &sets(), 2) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert!(
            one.starts_with("deployment.apps/web with revision #2\nPod Template:\n"),
            "{one}"
        );
        assert!(one.contains("    Image:\tv2\n"), "{one}");
        assert!(one.contains("    Port:\t80/TCP\n"), "{one}");
        match history_text("deployment.apps/web", &sets(), 5) {
            Ok(t) => panic!("expected an error, got {t}"),
            Err(e) => assert_eq!(e.to_string(), "unable to find the specified revision"),
        }
    }
}
