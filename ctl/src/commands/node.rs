//! `ctl cordon|uncordon|drain NODE`: mark a node (un)schedulable through `spec.unschedulable`,
//! and empty it by deleting the pods bound to it. Pods are deleted rather than evicted: the
//! cluster has no eviction subresource (and no PodDisruptionBudgets) yet.

use std::io::Write;
use std::time::Duration;

use api::client::{
    Client, DeleteParams, DeleteResponse, DynamicApi, ListParams, Patch, PatchParams,
};
use api::resource::{self, ResourceInfo};
use clap::Args;
use serde_json::{json, Value};

use super::objects::{self, DryRun, Target};
use crate::cli::GlobalArgs;
use crate::connect;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  # Stop scheduling new pods on node n1\n  ctl cordon n1")]
pub struct CordonArgs {
    /// The nodes to mark
    #[arg(value_name = "NODE", required = true)]
    pub nodes: Vec<String>,

    /// Only print what would be done: "server" asks the server, "client" decides locally
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none", value_name = "MODE")]
    pub dry_run: DryRun,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Empty node n1 before maintenance (pods of deployments are recreated elsewhere)\n  ctl drain n1 --ignore-daemonsets\n\n  # Also delete pods no controller will recreate\n  ctl drain n1 --force\n\n  # Give pods 10 seconds to stop, and give up after 2 minutes\n  ctl drain n1 --grace-period=10 --timeout=2m"
)]
pub struct DrainArgs {
    /// The node to drain
    #[arg(value_name = "NODE")]
    pub node: String,

    /// Also delete pods that no controller (ReplicaSet, ...) manages; they are not recreated
    #[arg(long)]
    pub force: bool,

    /// Leave pods managed by a DaemonSet in place instead of failing
    #[arg(long)]
    pub ignore_daemonsets: bool,

    /// Delete pods even if they use emptyDir volumes, whose data is lost
    #[arg(long)]
    pub delete_emptydir_data: bool,

    /// Seconds each pod has to stop; -1 uses the pod's own terminationGracePeriodSeconds
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "SECONDS")]
    pub grace_period: i64,

    /// How long to wait for the pods to go (0: no limit), e.g. 30s, 5m
    #[arg(long, default_value = "0s", value_parser = objects::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

pub async fn cordon(
    global: &GlobalArgs,
    args: &CordonArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    mark_all(global, args, true, out).await
}

pub async fn uncordon(
    global: &GlobalArgs,
    args: &CordonArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    mark_all(global, args, false, out).await
}

pub async fn drain(
    global: &GlobalArgs,
    args: &DrainArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let client = connect::client(global)?;
    let nodes = node_api(&client)?;
    let message = mark(&nodes, &args.node, true, DryRun::None).await?;
    writeln!(out, "{message}")?;
    out.flush()?;

    let pods_info = kind("pods")?;
    let all_pods = DynamicApi::new(client.clone(), pods_info, None);
    let list = all_pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", args.node)))
        .await?;
    let mut unmanaged = Vec::new();
    let mut daemons = Vec::new();
    let mut local_data = Vec::new();
    let mut doomed = Vec::new();
    for pod in &list.items {
        // The field selector narrows the list where the server supports it; check anyway.
        if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(args.node.as_str()) {
            continue;
        }
        let namespace = pod
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let full = format!("{namespace}/{name}");
        let finished = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        let controller = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == true)
            .and_then(|r| r["kind"].as_str());
        if !finished {
            match controller {
                Some("DaemonSet") => {
                    daemons.push(full);
                    continue;
                }
                None => unmanaged.push(full.clone()),
                Some(_) => {}
            }
            let empty_dir = pod
                .pointer("/spec/volumes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|v| v.get("emptyDir").is_some());
            if empty_dir {
                local_data.push(full.clone());
            }
        }
        doomed.push(Target {
            info: pods_info,
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
        });
    }
    let mut problems = Vec::new();
    if !unmanaged.is_empty() && !args.force {
        problems.push(format!(
            "cannot delete Pods that declare no controller (use --force to override): {}",
            unmanaged.join(", ")
        ));
    }
    if !daemons.is_empty() && !args.ignore_daemonsets {
        problems.push(format!(
            "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {}",
            daemons.join(", ")
        ));
    }
    if !local_data.is_empty() && !args.delete_emptydir_data {
        problems.push(format!(
            "cannot delete Pods with local storage (use --delete-emptydir-data to override): {}",
            local_data.join(", ")
        ));
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "unable to drain node {:?} due to error: {}",
            args.node,
            problems.join(", ")
        );
    }
    if !unmanaged.is_empty() {
        eprintln!(
            "Warning: deleting Pods that declare no controller: {}",
            unmanaged.join(", ")
        );
    }
    if !daemons.is_empty() {
        eprintln!(
            "Warning: ignoring DaemonSet-managed Pods: {}",
            daemons.join(", ")
        );
    }

    let params = DeleteParams {
        grace_period_seconds: (args.grace_period >= 0).then_some(args.grace_period),
        ..DeleteParams::default()
    };
    let mut waiting = Vec::new();
    for pod in doomed {
        writeln!(
            out,
            "deleting pod {}/{}",
            pod.namespace.as_deref().unwrap_or(""),
            pod.name
        )?;
        match pod.api(&client).delete(&pod.name, &params).await {
            Ok(DeleteResponse::Deleting(object)) => {
                let uid = object
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                waiting.push((pod, uid));
            }
            Ok(DeleteResponse::Deleted(_)) => waiting.push((pod, None)),
            Err(e) if e.is_not_found() => {}
            Err(e) => anyhow::bail!(
                "unable to drain node {:?}: deleting pod {}: {e}",
                args.node,
                pod.name
            ),
        }
    }
    out.flush()?;
    let wait_all = async {
        for (pod, uid) in &waiting {
            objects::wait_deleted(&client, pod, uid.as_deref()).await?;
            writeln!(out, "{} deleted", pod.display())?;
        }
        Ok(())
    };
    objects::with_timeout(args.timeout, wait_all)
        .await
        .map_err(|e| anyhow::anyhow!("unable to drain node {:?}: {e}", args.node))?;
    writeln!(out, "node/{} drained", args.node)?;
    Ok(())
}

async fn mark_all(
    global: &GlobalArgs,
    args: &CordonArgs,
    unschedulable: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let client = connect::client(global)?;
    let nodes = node_api(&client)?;
    let mut errors = Vec::new();
    for node in &args.nodes {
        match mark(&nodes, node, unschedulable, args.dry_run).await {
            Ok(message) => writeln!(out, "{message}")?,
            Err(e) => errors.push(e),
        }
    }
    objects::finish(errors)
}

/// Sets `spec.unschedulable`; returns what kubectl prints (`node/n1 cordoned`,
/// `node/n1 already cordoned`, ...).
async fn mark(
    nodes: &DynamicApi,
    node: &str,
    unschedulable: bool,
    dry_run: DryRun,
) -> anyhow::Result<String> {
    let live = nodes.get(node).await?;
    let now = live
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let word = if unschedulable {
        "cordoned"
    } else {
        "uncordoned"
    };
    if now == unschedulable {
        return Ok(format!("node/{node} already {word}"));
    }
    if dry_run != DryRun::Client {
        // Kubernetes leaves the field out when false; null removes it.
        let value = if unschedulable {
            json!(true)
        } else {
            Value::Null
        };
        let params = PatchParams {
            dry_run: dry_run == DryRun::Server,
            ..PatchParams::default()
        };
        nodes
            .patch(
                node,
                &params,
                &Patch::Merge(json!({"spec": {"unschedulable": value}})),
            )
            .await?;
    }
    Ok(format!("node/{node} {word}{}", dry_run.suffix()))
}

fn node_api(client: &Client) -> anyhow::Result<DynamicApi> {
    Ok(DynamicApi::new(client.clone(), kind("nodes")?, None))
}

fn kind(name: &str) -> anyhow::Result<&'static ResourceInfo> {
    resource::lookup(name).ok_or_else(|| anyhow::anyhow!("the resource table has no {name}"))
}
