//! `ctl config view|use-context|get-contexts|current-context`: read and switch the kubeconfig,
//! the same file kubectl uses. `view` hides credentials unless `--raw`, as kubectl does.

use std::io::Write;
use std::path::PathBuf;

use api::client::config::kubeconfig_path;
use api::client::Kubeconfig;
use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;
use crate::output::{write_json, write_yaml};
use crate::table::Table;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show the kubeconfig, with secrets hidden
    #[command(
        after_help = "Examples:\n  # Show the whole kubeconfig, secrets hidden\n  ctl config view\n\n  # Only what the current context uses, with secrets\n  ctl config view --minify --raw"
    )]
    View(ConfigViewArgs),

    /// Make a context the current one
    #[command(
        after_help = "Examples:\n  # Use context prod from now on\n  ctl config use-context prod"
    )]
    UseContext(UseContextArgs),

    /// List the contexts, marking the current one
    #[command(
        after_help = "Examples:\n  # List every context\n  ctl config get-contexts\n\n  # Only the names\n  ctl config get-contexts -o name"
    )]
    GetContexts(GetContextsArgs),

    /// Print the current context's name
    #[command(
        after_help = "Examples:\n  # Print the current context\n  ctl config current-context"
    )]
    CurrentContext,
}

#[derive(Debug, Args)]
pub struct ConfigViewArgs {
    /// Show only the current context (or --context) and its cluster and user
    #[arg(long)]
    pub minify: bool,

    /// Show certificates and tokens instead of hiding them
    #[arg(long)]
    pub raw: bool,

    /// Output format: yaml or json
    #[arg(short = 'o', long = "output", value_parser = ["yaml", "json"], default_value = "yaml", value_name = "FORMAT")]
    pub output: String,
}

#[derive(Debug, Args)]
pub struct UseContextArgs {
    /// The context to make current
    #[arg(value_name = "CONTEXT")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct GetContextsArgs {
    /// Only these contexts
    #[arg(value_name = "CONTEXT")]
    pub names: Vec<String>,

    /// Output format: only "name" is supported
    #[arg(short = 'o', long = "output", value_parser = ["name"], value_name = "FORMAT")]
    pub output: Option<String>,

    /// Leave out the header line
    #[arg(long)]
    pub no_headers: bool,
}

/// What `view` shows instead of certificate and key data, and instead of tokens and passwords.
const DATA_OMITTED: &str = "DATA+OMITTED";
const REDACTED: &str = "REDACTED";

pub async fn run(
    global: &GlobalArgs,
    command: &ConfigCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let path = kubeconfig_path(global.kubeconfig.as_deref());
    let config = match &path {
        Some(p) if p.exists() => Kubeconfig::read(p)?,
        _ => Kubeconfig::default(),
    };
    match command {
        ConfigCommand::View(args) => view(global, config, args, out),
        ConfigCommand::UseContext(args) => use_context(path, config, &args.name, out),
        ConfigCommand::GetContexts(args) => get_contexts(config, args, out),
        ConfigCommand::CurrentContext => match config.current_context.filter(|c| !c.is_empty()) {
            Some(name) => Ok(writeln!(out, "{name}")?),
            None => anyhow::bail!("current-context is not set"),
        },
    }
}

fn view(
    global: &GlobalArgs,
    mut config: Kubeconfig,
    args: &ConfigViewArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if args.minify {
        config = minify(config, global.context.as_deref())?;
    }
    if !args.raw {
        redact(&mut config);
    }
    config.api_version.get_or_insert_with(|| "v1".to_string());
    config.kind.get_or_insert_with(|| "Config".to_string());
    match args.output.as_str() {
        "json" => write_json(out, &config),
        _ => write_yaml(out, &config),
    }
}

/// Keeps only the context in use, its cluster and its user.
pub fn minify(config: Kubeconfig, context: Option<&str>) -> anyhow::Result<Kubeconfig> {
    let Some(name) = context
        .map(str::to_string)
        .or(config.current_context.clone())
        .filter(|n| !n.is_empty())
    else {
        anyhow::bail!("current-context must exist in order to minify");
    };
    let Some(context) = config.contexts.iter().find(|c| c.name == name).cloned() else {
        anyhow::bail!("cannot locate context {name}");
    };
    Ok(Kubeconfig {
        clusters: config
            .clusters
            .into_iter()
            .filter(|c| c.name == context.context.cluster)
            .collect(),
        users: config
            .users
            .into_iter()
            .filter(|u| u.name == context.context.user)
            .collect(),
        contexts: vec![context],
        current_context: Some(name),
        ..config
    })
}

/// Hides certificate data, keys, tokens and passwords, as `kubectl config view` does.
pub fn redact(config: &mut Kubeconfig) {
    for cluster in &mut config.clusters {
        if cluster.cluster.certificate_authority_data.is_some() {
            cluster.cluster.certificate_authority_data = Some(DATA_OMITTED.to_string());
        }
    }
    for user in &mut config.users {
        if user.user.token.is_some() {
            user.user.token = Some(REDACTED.to_string());
        }
        for (key, value) in user.user.extra.iter_mut() {
            match key.as_str() {
                "client-certificate-data" | "client-key-data" => *value = DATA_OMITTED.into(),
                "password" => *value = REDACTED.into(),
                _ => {}
            }
        }
    }
}

fn use_context(
    path: Option<PathBuf>,
    mut config: Kubeconfig,
    name: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if !config.contexts.iter().any(|c| c.name == name) {
        anyhow::bail!("no context exists with the name: {name:?}");
    }
    let Some(path) = path else {
        anyhow::bail!("no kubeconfig found: pass --kubeconfig PATH or set KUBECONFIG");
    };
    config.current_context = Some(name.to_string());
    config.write(&path)?;
    writeln!(out, "Switched to context {name:?}.")?;
    Ok(())
}

fn get_contexts(
    config: Kubeconfig,
    args: &GetContextsArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    for name in &args.names {
        if !config.contexts.iter().any(|c| &c.name == name) {
            anyhow::bail!("context {name} not found");
        }
    }
    let chosen = config
        .contexts
        .iter()
        .filter(|c| args.names.is_empty() || args.names.contains(&c.name));
    if args.output.is_some() {
        for context in chosen {
            writeln!(out, "{}", context.name)?;
        }
        return Ok(());
    }
    let mut table = Table::new(&["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]);
    for context in chosen {
        let current = config.current_context.as_deref() == Some(context.name.as_str());
        table.row([
            if current { "*" } else { "" }.to_string(),
            context.name.clone(),
            context.context.cluster.clone(),
            context.context.user.clone(),
            context.context.namespace.clone().unwrap_or_default(),
        ]);
    }
    let text = table.render();
    let text = if args.no_headers {
        text.split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    } else {
        text
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_hides_secrets_and_minify_keeps_the_current_context() {
        let mut config = Kubeconfig::new_admin(
            "one",
            &["https://127.0.0.1:6443".to_string()],
            b"PEM",
            "s3cret",
        );
        let mut other = Kubeconfig::new_admin(
            "two",
            &["https://10.0.0.1:6443".to_string()],
            b"PEM",
            "t0ken",
        );
        config.clusters.append(&mut other.clusters);
        config.users.append(&mut other.users);
        config.contexts.append(&mut other.contexts);
        let small = minify(config.clone(), Some("two")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(small.contexts.len(), 1);
        assert_eq!(small.clusters[0].name, "two");
        assert_eq!(small.current_context.as_deref(), Some("two"));
        redact(&mut config);
        let text = serde_yaml::to_string(&config).unwrap_or_default();
        assert!(
            !text.contains("s3cret") && !text.contains("t0ken"),
            "{text}"
        );
        assert!(
            text.contains("token: REDACTED") && text.contains("DATA+OMITTED"),
            "{text}"
        );
        let none = minify(Kubeconfig::default(), None)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(
            none,
            Err("current-context must exist in order to minify".to_string())
        );
    }
}
