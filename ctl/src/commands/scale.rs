//! `ctl scale`: set the replicas of Deployments and ReplicaSets through their `scale`
//! subresource, optionally only if the current count is the expected one.

use std::io::Write;

use api::client::{Client, ClientError};
use clap::Args;
use http::Method;
use serde_json::{json, Value};

use super::objects::{self, Target};
use crate::cli::GlobalArgs;
use crate::connect;
use crate::manifest;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Scale deployment web to 3 replicas\n  ctl scale deploy/web --replicas=3\n\n  # Scale only if it has 2 replicas now\n  ctl scale --current-replicas=2 --replicas=3 deployment/web\n\n  # Scale several at once\n  ctl scale --replicas=5 rs/web-1 rs/web-2\n\n  # Scale the deployment described in web.yaml\n  ctl scale --replicas=3 -f web.yaml"
)]
pub struct ScaleArgs {
    /// TYPE NAME... or TYPE/NAME... (deployments and replicasets)
    #[arg(value_name = "RESOURCE")]
    pub resources: Vec<String>,

    /// Files naming the objects to scale
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filenames: Vec<String>,

    /// The new number of replicas
    #[arg(long, value_name = "COUNT")]
    pub replicas: i64,

    /// Scale only if the current number of replicas is this one (-1: no condition)
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "COUNT")]
    pub current_replicas: i64,

    /// Scale only if the object's resourceVersion is this one
    #[arg(long, value_name = "VERSION")]
    pub resource_version: Option<String>,
}

pub async fn run(global: &GlobalArgs, args: &ScaleArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if args.replicas < 0 {
        anyhow::bail!(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        );
    }
    let client = connect::client(global)?;
    let namespace = objects::namespace(global, &client);
    let targets = if args.filenames.is_empty() {
        if args.resources.is_empty() {
            anyhow::bail!("You must provide one or more resources by argument or filename.");
        }
        objects::targets_from_args(&args.resources, &namespace)?
    } else {
        let mut targets = Vec::new();
        for manifest in manifest::read(&args.filenames, false)? {
            targets.push(objects::target_of(&manifest, global, &client)?);
        }
        targets
    };
    let mut errors = Vec::new();
    for target in &targets {
        match scale_one(&client, target, args).await {
            Ok(()) => writeln!(out, "{} scaled", target.display())?,
            Err(e) => errors.push(e),
        }
    }
    objects::finish(errors)
}

async fn scale_one(client: &Client, target: &Target, args: &ScaleArgs) -> anyhow::Result<()> {
    if !target.info.subresources.contains(&"scale") {
        anyhow::bail!(
            "{} cannot be scaled: the kind has no scale subresource",
            target.info.qualified_name()
        );
    }
    let namespace = target.namespace.as_deref();
    let path = format!("{}/scale", target.info.object_path(namespace, &target.name));
    if args.current_replicas < 0 && args.resource_version.is_none() {
        let patch = json!({"spec": {"replicas": args.replicas}});
        send(
            client,
            Method::PATCH,
            &path,
            "application/merge-patch+json",
            &patch,
        )
        .await?;
        return Ok(());
    }
    // A precondition: read the Scale, check it, and write it back with its resourceVersion so
    // that a change in between makes the write fail instead of being overwritten.
    let response = client.request(Method::GET, &path, None).await?;
    let mut scale: Value = serde_json::from_slice(&response.body).map_err(|e| {
        anyhow::anyhow!("the server's Scale of {} is not JSON: {e}", target.quoted())
    })?;
    let current = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if args.current_replicas >= 0 && current != args.current_replicas {
        anyhow::bail!(
            "Expected replicas to be {}, was {current}",
            args.current_replicas
        );
    }
    if let Some(version) = &args.resource_version {
        let actual = scale
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if actual != version {
            anyhow::bail!("Expected resource version to be {version}, was {actual}");
        }
    }
    scale["spec"]["replicas"] = json!(args.replicas);
    send(client, Method::PUT, &path, "application/json", &scale).await?;
    Ok(())
}

async fn send(
    client: &Client,
    method: Method,
    path: &str,
    content_type: &str,
    body: &Value,
) -> Result<(), ClientError> {
    let bytes = serde_json::to_vec(body).map_err(|error| ClientError::Encode { error })?;
    client
        .request(method, path, Some((content_type, bytes)))
        .await?;
    Ok(())
}
