//! `ctl compose`: a Compose project on the cluster. `config` and `convert` only read the file;
//! `up` builds and pushes `build:` images, creates the project's namespace and applies each
//! service's objects with `ctl apply`'s own logic (dependencies first, waiting for
//! `service_healthy` ones to be ready); `down`, `ps` and `logs` find the project's objects by
//! the `app.kubernetes.io/part-of` label.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use api::client::{Client, DeleteParams, ListParams};
use clap::{Args, Subcommand};
use futures::StreamExt as _;
use serde_json::Value;

use super::apply::{self, ApplyArgs};
use super::objects::{self, DryRun};
use crate::cli::GlobalArgs;
use crate::compose::convert::{self, ConvertOptions, Converted, NAME_LABEL, PART_OF_LABEL};
use crate::compose::model::Condition;
use crate::compose::parse::{self, LoadOptions, Loaded};
use crate::connect;

#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// Compose configuration file (default: compose.yaml, compose.yml, docker-compose.yml or
    /// docker-compose.yaml in the current directory)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Project name (default: the file's name:, else its directory's name)
    #[arg(short = 'p', long = "project-name", value_name = "PROJECT")]
    pub project_name: Option<String>,

    /// Registry (HOST:PORT) that build: images are pushed to and pulled from
    #[arg(long, env = "FLOTILLA_REGISTRY", value_name = "HOST:PORT")]
    pub registry: Option<String>,

    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Print the normalised, interpolated project as YAML
    #[command(
        after_help = "Examples:\n  # See what compose.yaml means once .env and the environment are applied\n  ctl compose config"
    )]
    Config,
    /// Print the objects `up` would apply (Namespace, Services, Deployments)
    #[command(
        after_help = "Examples:\n  # Turn a Compose file into manifests for ctl apply or kubectl\n  ctl compose -f docker-compose.yml convert > shop.yaml"
    )]
    Convert,
    /// Build, push and apply the project on the cluster
    #[command(
        after_help = "Examples:\n  # Build, push and start the project, then return\n  ctl compose --registry 10.0.0.1:5000 up -d\n\n  # Start it and follow its logs\n  ctl compose up"
    )]
    Up(UpArgs),
    /// Delete everything of the project from the cluster
    #[command(
        after_help = "Examples:\n  # Remove the project of compose.yaml, with its namespace\n  ctl compose down"
    )]
    Down(DownArgs),
    /// List the project's pods
    #[command(after_help = "Examples:\n  ctl compose -p shop ps")]
    Ps,
    /// Print the logs of the project's pods
    #[command(
        after_help = "Examples:\n  # Every pod's log once\n  ctl compose logs\n\n  # Follow service api (one replica)\n  ctl compose logs -f api"
    )]
    Logs(LogsArgs),
    /// Build the images of build: services
    #[command(
        after_help = "Examples:\n  # Build into the local store, also tagged for the registry\n  ctl compose --registry 10.0.0.1:5000 build"
    )]
    Build,
    /// Push the images of build: services to --registry
    #[command(after_help = "Examples:\n  ctl compose --registry 10.0.0.1:5000 push")]
    Push,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Detached mode: return once applied instead of following the logs
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// How long to wait for a service_healthy dependency to become ready
    #[arg(long, default_value = "300s", value_parser = objects::parse_duration, value_name = "DURATION")]
    pub wait_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also remove named volumes (they are per-pod emptyDirs, so they go with the pods anyway)
    #[arg(short = 'v', long)]
    pub volumes: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only this service's pods
    #[arg(value_name = "SERVICE")]
    pub service: Option<String>,
}

pub async fn run(
    global: &GlobalArgs,
    args: &ComposeArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let loaded = load(args)?;
    match &args.command {
        ComposeCommand::Config => write_yaml11(out, &loaded.project),
        ComposeCommand::Convert => {
            let converted = convert_project(&loaded, args)?;
            for (i, object) in converted.all().iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                write_yaml11(out, object)?;
            }
            Ok(())
        }
        ComposeCommand::Up(up_args) => up(global, args, &loaded, up_args, out).await,
        ComposeCommand::Down(down_args) => down(global, &loaded, down_args, out).await,
        ComposeCommand::Ps => ps(global, &loaded, out).await,
        ComposeCommand::Logs(logs_args) => logs(global, &loaded, logs_args, out).await,
        ComposeCommand::Build => build(global, args, &loaded).map(drop),
        ComposeCommand::Push => push(global, args, &loaded, out).await,
    }
}

/// Writes YAML that YAML 1.1 readers (kubectl, docker compose) read back as it was meant:
/// serde_yaml writes YAML 1.2, where `yes`, `no`, `on`, `off`, `y` and `n` are strings and need
/// no quotes, but a YAML 1.1 reader would take `value: yes` for a boolean and reject the
/// manifest.
fn write_yaml11<T: serde::Serialize>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    let text = serde_yaml::to_string(value)?;
    out.write_all(quote_yaml11_booleans(&text).as_bytes())?;
    Ok(())
}

fn quote_yaml11_booleans(text: &str) -> String {
    const WORDS: [&str; 22] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF", "true", "True", "TRUE", "false", "False", "FALSE",
    ];
    let mut result = String::with_capacity(text.len());
    // Lines of a block scalar (after `key: |`) are text, never values to quote.
    let mut block_indent: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let indent = body.len() - body.trim_start().len();
        if let Some(parent) = block_indent {
            if indent > parent || body.trim().is_empty() {
                result.push_str(line);
                continue;
            }
            block_indent = None;
        }
        let trimmed = body.trim_end();
        if trimmed.ends_with(['|', '>'])
            || trimmed.ends_with("|-")
            || trimmed.ends_with(">-")
            || trimmed.ends_with("|+")
        {
            block_indent = Some(indent);
        }
        let (head, scalar) = match body.rfind(": ") {
            Some(at) => body.split_at(at + 2),
            None => match body.trim_start().strip_prefix("- ") {
                Some(rest) => body.split_at(body.len() - rest.len()),
                None => (body, ""),
            },
        };
        // `true`/`false` unquoted are real booleans in both versions; only the words that YAML
        // 1.2 leaves as strings are quoted (serde_yaml already quotes string "true").
        if WORDS[..16].contains(&scalar) {
            result.push_str(head);
            result.push('\'');
            result.push_str(scalar);
            result.push('\'');
            result.push_str(&line[body.len()..]);
        } else {
            result.push_str(line);
        }
    }
    result
}

/// Reads the project and prints its warnings on stderr.
fn load(args: &ComposeArgs) -> anyhow::Result<Loaded> {
    let dir = std::env::current_dir().context("cannot read the current directory")?;
    let opts = LoadOptions {
        file: args.file.clone(),
        dir,
        project_name: args.project_name.clone(),
        env: std::env::vars().collect(),
    };
    let loaded = parse::load(&opts)?;
    warn(&loaded.warnings);
    Ok(loaded)
}

fn warn(warnings: &[String]) {
    let stderr = io::stderr();
    let mut err = stderr.lock();
    for warning in warnings {
        let _ = writeln!(err, "warning: {warning}");
    }
}

fn convert_project(loaded: &Loaded, args: &ComposeArgs) -> anyhow::Result<Converted> {
    let converted = convert::convert(
        &loaded.project,
        &ConvertOptions {
            registry: args.registry.clone(),
        },
    )?;
    warn(&converted.warnings);
    Ok(converted)
}

fn selector(loaded: &Loaded) -> String {
    format!("{PART_OF_LABEL}={}", loaded.project.name)
}

/// The pod-template annotation that carries a built image's id, so that a rebuilt image (same
/// `:latest` reference) still changes the Deployment and rolls it on the next `up`.
pub const IMAGE_ID_ANNOTATION: &str = "flotilla.dev/compose-image-id";

/// Builds every `build:` service; returns each one's image id.
fn build(
    global: &GlobalArgs,
    args: &ComposeArgs,
    loaded: &Loaded,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut ids = BTreeMap::new();
    for (name, service) in &loaded.project.services {
        let Some(spec) = &service.build else { continue };
        let mut tags = vec![convert::image_of(&loaded.project, name, service, None)];
        if let Some(registry) = &args.registry {
            tags.push(convert::image_of(
                &loaded.project,
                name,
                service,
                Some(registry),
            ));
        }
        let build_args = super::build::BuildArgs {
            build_context: PathBuf::from(&spec.context),
            tags,
            file: spec
                .dockerfile
                .as_ref()
                .map(|f| PathBuf::from(&spec.context).join(f)),
            build_args: spec.args.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            target: spec.target.clone(),
            no_cache: false,
            labels: Vec::new(),
            // Quiet, so the image id is all that is written to `id`.
            quiet: true,
            registry: registry_flags(args),
        };
        let _ = writeln!(
            io::stderr(),
            "building service {name} from {}",
            spec.context
        );
        let mut id = Vec::new();
        super::build::build(global, &build_args, &mut id)
            .with_context(|| format!("cannot build service {name:?}"))?;
        let id = String::from_utf8_lossy(&id).trim().to_string();
        let _ = writeln!(io::stderr(), "built service {name}: {id}");
        ids.insert(name.clone(), id);
    }
    Ok(ids)
}

fn registry_flags(args: &ComposeArgs) -> super::registry::RegistryFlags {
    super::registry::RegistryFlags {
        // The cluster's own registry (`deploy/local-cluster up --registry`) speaks plain HTTP.
        insecure_registries: args.registry.iter().cloned().collect(),
        registry_ca: Vec::new(),
    }
}

async fn push(
    global: &GlobalArgs,
    args: &ComposeArgs,
    loaded: &Loaded,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let Some(registry) = &args.registry else {
        bail!("no registry to push to: pass --registry HOST:PORT or set FLOTILLA_REGISTRY");
    };
    for (name, service) in &loaded.project.services {
        if service.build.is_none() {
            continue;
        }
        let push_args = super::registry::PushArgs {
            image: convert::image_of(&loaded.project, name, service, Some(registry)),
            quiet: false,
            registry: registry_flags(args),
        };
        super::registry::push(global, &push_args, out)
            .await
            .with_context(|| format!("cannot push service {name:?}"))?;
    }
    Ok(())
}

async fn up(
    global: &GlobalArgs,
    args: &ComposeArgs,
    loaded: &Loaded,
    up_args: &UpArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut converted = convert_project(loaded, args)?;
    let has_builds = loaded.project.services.values().any(|s| s.build.is_some());
    if has_builds {
        if args.registry.is_none() {
            bail!("the project has build: services, whose images must go to a registry the nodes can pull from: pass --registry HOST:PORT or set FLOTILLA_REGISTRY");
        }
        let ids = build(global, args, loaded)?;
        push(global, args, loaded, out).await?;
        for service in &mut converted.services {
            let Some(id) = ids.get(&service.service) else {
                continue;
            };
            for object in service
                .objects
                .iter_mut()
                .filter(|o| o["kind"] == "Deployment")
            {
                object["spec"]["template"]["metadata"]["annotations"] =
                    serde_json::json!({IMAGE_ID_ANNOTATION: id});
            }
        }
    }
    let client = connect::client(global)?;
    let scratch = Scratch::new(&loaded.project.name)?;
    apply_objects(
        global,
        &scratch,
        "namespace",
        std::slice::from_ref(&converted.namespace),
        out,
    )
    .await?;
    for service in &converted.services {
        // A service waits for its service_healthy dependencies to have ready pods first.
        if let Some(spec) = loaded.project.services.get(&service.service) {
            for (dependency, dep) in &spec.depends_on {
                if dep.condition == Condition::ServiceHealthy {
                    wait_ready(
                        &client,
                        &loaded.project.name,
                        dependency,
                        up_args.wait_timeout,
                    )
                    .await?;
                }
            }
        }
        apply_objects(global, &scratch, &service.service, &service.objects, out).await?;
    }
    if !up_args.detach {
        let logs_args = LogsArgs {
            follow: true,
            service: None,
        };
        return logs(global, loaded, &logs_args, out).await;
    }
    Ok(())
}

/// A directory for the manifests handed to `ctl apply`, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(project: &str) -> anyhow::Result<Scratch> {
        let dir =
            std::env::temp_dir().join(format!("ctl-compose-{project}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Applies objects through `ctl apply` itself, so a second `up` patches only what changed and
/// prints `unchanged` for the rest, exactly as `ctl apply -f` would.
async fn apply_objects(
    global: &GlobalArgs,
    scratch: &Scratch,
    name: &str,
    objects: &[Value],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let path = scratch.0.join(format!("{name}.json"));
    let mut text = String::new();
    for object in objects {
        text.push_str(&serde_json::to_string(object)?);
        text.push('\n');
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    let apply_args = ApplyArgs {
        filenames: vec![path.display().to_string()],
        recursive: false,
        dry_run: DryRun::None,
        output: None,
    };
    apply::run(global, &apply_args, out).await
}

async fn wait_ready(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let api = api::client::DynamicApi::new(
        client.clone(),
        objects::kind_of("deployments")?,
        Some(namespace),
    );
    let deadline = Instant::now() + timeout;
    loop {
        let deployment = api
            .get(name)
            .await
            .with_context(|| format!("cannot read deployment {name:?}"))?;
        let ready = deployment
            .pointer("/status/readyReplicas")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if ready > 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("service {name:?} has no ready pod after {}s: see ctl get pods -n {namespace} -l {NAME_LABEL}={name}", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn down(
    global: &GlobalArgs,
    loaded: &Loaded,
    _args: &DownArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let client = connect::client(global)?;
    let namespace = loaded.project.name.as_str();
    let selector = selector(loaded);
    for kind in ["deployments", "services"] {
        let info = objects::kind_of(kind)?;
        let api = api::client::DynamicApi::new(client.clone(), info, Some(namespace));
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .with_context(|| format!("cannot list {kind}"))?;
        for item in list.items {
            let Some(name) = item.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let params = DeleteParams {
                propagation_policy: Some(api::client::PropagationPolicy::Foreground),
                ..DeleteParams::default()
            };
            api.delete(name, &params)
                .await
                .with_context(|| format!("cannot delete {kind} {name:?}"))?;
            writeln!(out, "{} deleted", objects::display_name(info, name))?;
        }
    }
    let info = objects::kind_of("namespaces")?;
    let api = api::client::DynamicApi::new(client.clone(), info, None);
    if api.get_opt(namespace).await?.is_some() {
        api.delete(namespace, &DeleteParams::default())
            .await
            .with_context(|| format!("cannot delete namespace {namespace:?}"))?;
        writeln!(out, "{} deleted", objects::display_name(info, namespace))?;
    }
    Ok(())
}

async fn project_pods(
    client: &Client,
    loaded: &Loaded,
    service: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let mut selector = selector(loaded);
    if let Some(service) = service {
        if !loaded.project.services.contains_key(service) {
            bail!("no such service: {service}");
        }
        selector.push_str(&format!(",{NAME_LABEL}={service}"));
    }
    let api = api::client::DynamicApi::new(
        client.clone(),
        objects::kind_of("pods")?,
        Some(&loaded.project.name),
    );
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .context("cannot list the project's pods")?;
    Ok(list.items)
}

/// `docker compose ps` columns, with the pod in place of the container.
async fn ps(global: &GlobalArgs, loaded: &Loaded, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = connect::client(global)?;
    let pods = project_pods(&client, loaded, None).await?;
    let mut rows = vec![[
        "NAME".to_string(),
        "IMAGE".into(),
        "SERVICE".into(),
        "STATUS".into(),
        "NODE".into(),
    ]];
    for pod in &pods {
        let text = |pointer: &str| {
            pod.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let ready = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        let phase = text("/status/phase");
        let status = if phase == "Running" && ready {
            "Up (healthy)".to_string()
        } else if phase == "Running" {
            "Up".to_string()
        } else {
            phase
        };
        rows.push([
            text("/metadata/name"),
            text("/spec/containers/0/image"),
            pod.pointer("/metadata/labels")
                .and_then(|l| l.get(NAME_LABEL))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            status,
            text("/spec/nodeName"),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(out, "{}", line.join("   ").trim_end())?;
    }
    Ok(())
}

/// Each pod's log, prefixed `service-xxxxx  | ` as docker compose does; with `follow`, every pod
/// is followed at once and their lines interleave as they arrive.
async fn logs(
    global: &GlobalArgs,
    loaded: &Loaded,
    args: &LogsArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let client = connect::client(global)?;
    let pods = project_pods(&client, loaded, args.service.as_deref()).await?;
    // One stream per pod, merged as lines arrive (as docker compose interleaves its services);
    // each item carries the index of the pod it came from, so partial lines are kept apart.
    let mut prefixes = Vec::new();
    let mut streams = Vec::new();
    for pod in &pods {
        let Some(name) = pod.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let service = pod
            .pointer("/metadata/labels")
            .and_then(|l| l.get(NAME_LABEL))
            .and_then(Value::as_str)
            .unwrap_or(name);
        let path = format!(
            "/api/v1/namespaces/{}/pods/{name}/log{}",
            loaded.project.name,
            if args.follow { "?follow=true" } else { "" }
        );
        let response = client
            .request_stream(http::Method::GET, &path, None)
            .await
            .with_context(|| format!("cannot read the log of pod {name:?}"))?;
        let index = prefixes.len();
        prefixes.push(format!("{service}-{}  | ", &name[name.len().saturating_sub(5)..]));
        streams.push(response.body.map(move |chunk| (index, chunk)).boxed());
    }
    let mut partial: Vec<Vec<u8>> = vec![Vec::new(); prefixes.len()];
    let mut merged = futures::stream::select_all(streams);
    while let Some((index, chunk)) = merged.next().await {
        let buffer = &mut partial[index];
        buffer.extend_from_slice(&chunk?);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            out.write_all(prefixes[index].as_bytes())?;
            out.write_all(&line)?;
        }
        out.flush()?;
    }
    for (prefix, rest) in prefixes.iter().zip(&partial) {
        if !rest.is_empty() {
            out.write_all(prefix.as_bytes())?;
            out.write_all(rest)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml11_booleans_are_quoted_outside_block_scalars() {
        let text = "restart: no\nenv:\n- name: A\n  value: yes\nlist:\n- on\nok: true\nscript: |-\n  no\n  yes\nafter: off\n";
        assert_eq!(
            quote_yaml11_booleans(text),
            "restart: 'no'\nenv:\n- name: A\n  value: 'yes'\nlist:\n- 'on'\nok: true\nscript: |-\n  no\n  yes\nafter: 'off'\n"
        );
    }
}
