//! What the write verbs share: finding an object's kind and namespace, naming objects the way
//! kubectl prints them (`deployment.apps/web`, `deployments.apps "web"`), reading `TYPE NAME` and
//! `TYPE/NAME` arguments, `--dry-run`, and reporting several errors at once.

use std::fmt;
use std::time::Duration;

use api::client::{Client, ClientError, DynamicApi};
use api::meta::Status;
use api::resource::{self, ResourceInfo};
use clap::ValueEnum;
use serde_json::Value;

use crate::cli::GlobalArgs;
use crate::manifest::Manifest;

/// `--dry-run=none|client|server` (a bare `--dry-run` means client, as kubectl once did).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    #[default]
    None,
    Client,
    Server,
}

/// `-o name|yaml|json` of the write verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WriteOutput {
    Name,
    Yaml,
    Json,
}

/// One object a command acts on.
#[derive(Clone, Debug)]
pub struct Target {
    pub info: &'static ResourceInfo,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub name: String,
}

/// Several errors, each already in its final printed form (one line each); `ctl` prints them as
/// they are, without a further `error: ` prefix.
#[derive(Debug)]
pub struct Reported(pub Vec<String>);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for Reported {}

impl DryRun {
    /// The suffix kubectl adds to what it prints: ` (dry run)`, ` (server dry run)`.
    pub fn suffix(self) -> &'static str {
        match self {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }
}

impl Target {
    /// Requests for this object's kind in its namespace.
    pub fn api(&self, client: &Client) -> DynamicApi {
        DynamicApi::new(client.clone(), self.info, self.namespace.as_deref())
    }

    /// `deployment.apps/web`
    pub fn display(&self) -> String {
        display_name(self.info, &self.name)
    }

    /// `deployment.apps "web"`: how kubectl names an object it deleted.
    pub fn deleted(&self) -> String {
        match self.display().split_once('/') {
            Some((kind, _)) => format!("{kind} \"{}\"", self.name),
            None => self.quoted(),
        }
    }

    /// `deployments.apps "web"`
    pub fn quoted(&self) -> String {
        format!("{} \"{}\"", self.info.qualified_name(), self.name)
    }
}

/// `deployment.apps/web`, `pod/x`: how kubectl names an object in success messages.
pub fn display_name(info: &ResourceInfo, name: &str) -> String {
    if info.group.is_empty() {
        format!("{}/{name}", info.singular)
    } else {
        format!("{}.{}/{name}", info.singular, info.group)
    }
}

/// The namespace commands use: `-n`, else the kubeconfig context's.
pub fn namespace(global: &GlobalArgs, client: &Client) -> String {
    global
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string())
}

/// The kind, namespace and name of a manifest's object, with kubectl's errors for a kind the
/// server does not serve and for a namespace that contradicts `-n`.
pub fn target_of(
    manifest: &Manifest,
    global: &GlobalArgs,
    client: &Client,
) -> anyhow::Result<Target> {
    let object = &manifest.object;
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let own_namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty());
    let Some(info) = resource::by_kind(api_version, kind) else {
        anyhow::bail!(
            "resource mapping not found for name: {name:?} namespace: {:?} from {:?}: no matches for kind {kind:?} in version {api_version:?}\nensure CRDs are installed first",
            own_namespace.unwrap_or(""),
            manifest.source
        );
    };
    if name.is_empty() {
        anyhow::bail!(
            "error when retrieving current configuration of {kind} from {:?}: resource name may not be empty",
            manifest.source
        );
    }
    let namespace = if info.namespaced() {
        match (own_namespace, &global.namespace) {
            (Some(own), Some(flag)) if own != flag => anyhow::bail!(
                "the namespace from the provided object {own:?} does not match the namespace {flag:?}. You must pass '--namespace={own}' to perform this operation."
            ),
            (Some(own), _) => Some(own.to_string()),
            (None, _) => Some(namespace(global, client)),
        }
    } else {
        None
    };
    Ok(Target {
        info,
        namespace,
        name: name.to_string(),
    })
}

/// The kind named by a `TYPE` argument, with kubectl's error for an unknown one.
pub fn kind_of(name: &str) -> anyhow::Result<&'static ResourceInfo> {
    resource::lookup(name)
        .ok_or_else(|| anyhow::anyhow!("the server doesn't have a resource type {name:?}"))
}

/// Reads `TYPE NAME...` or `TYPE/NAME...` arguments into targets in `namespace`.
pub fn targets_from_args(args: &[String], namespace: &str) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    let make = |info: &'static ResourceInfo, name: &str| Target {
        info,
        namespace: info.namespaced().then(|| namespace.to_string()),
        name: name.to_string(),
    };
    if args.iter().any(|a| a.contains('/')) {
        for arg in args {
            let Some((kind, name)) = arg.split_once('/') else {
                anyhow::bail!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'ctl get resource/<resource_name>' instead of 'ctl get resource resource/<resource_name>'"
                );
            };
            if name.is_empty() {
                anyhow::bail!(
                    "arguments in resource/name form must have a single resource and name"
                );
            }
            targets.push(make(kind_of(kind)?, name));
        }
        return Ok(targets);
    }
    let Some((kind, names)) = args.split_first() else {
        return Ok(targets);
    };
    let info = kind_of(kind)?;
    if names.is_empty() {
        anyhow::bail!("resource(s) were provided, but no name was specified");
    }
    for name in names {
        targets.push(make(info, name));
    }
    Ok(targets)
}

/// The server's error with kubectl's `error when VERB "FILE": ` put in front of its message,
/// still printed as `Error from server (Reason): ...`.
pub fn when(error: ClientError, verb: &str, source: &str) -> anyhow::Error {
    match error {
        ClientError::Api(status) => {
            let message = status.message.clone().unwrap_or_default();
            ClientError::Api(Box::new(Status {
                message: Some(format!("error when {verb} {source:?}: {message}")),
                ..*status
            }))
            .into()
        }
        // Not reaching the server says nothing about the file: keep the message short.
        connect @ ClientError::Connect { .. } => connect.into(),
        other => anyhow::Error::from(other).context(format!("error when {verb} {source:?}")),
    }
}

/// Ends a command that went on past errors: `Ok` when there were none, the single error as it
/// is, or all of them at once.
pub fn finish(errors: Vec<anyhow::Error>) -> anyhow::Result<()> {
    let mut errors = errors;
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(Reported(errors.iter().map(crate::error_message).collect()).into()),
    }
}

/// Parses kubectl's durations: `30s`, `5m`, `1h`, `1m30s`, `500ms`, or a bare number of
/// seconds; `0` means no limit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("invalid duration {text:?}: use a number with a unit, such as 30s, 5m or 1h");
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(invalid)?;
        let number: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            _ => return Err(invalid()),
        };
        total += Duration::from_secs_f64(seconds);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Runs `future` for at most `limit` (no limit when zero), failing with kubectl's message.
pub async fn with_timeout<T>(
    limit: Duration,
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    if limit.is_zero() {
        return future.await;
    }
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result,
        Err(_) => anyhow::bail!("timed out waiting for the condition"),
    }
}

/// Waits until the object is gone, or has been replaced by another one of the same name.
pub async fn wait_deleted(
    client: &Client,
    target: &Target,
    uid: Option<&str>,
) -> anyhow::Result<()> {
    let api = target.api(client);
    loop {
        match api.get_opt(&target.name).await? {
            None => return Ok(()),
            Some(object) => {
                let current = object.pointer("/metadata/uid").and_then(Value::as_str);
                if uid.is_some() && current != uid {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_kubectl() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn names_and_arguments() {
        let deploy = kind_of("deploy").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(display_name(deploy, "web"), "deployment.apps/web");
        let node = kind_of("no").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(display_name(node, "n1"), "node/n1");

        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t =
            targets_from_args(&args(&["deploy", "a", "b"]), "ns").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].quoted(), "deployments.apps \"b\"");
        assert_eq!(t[1].namespace.as_deref(), Some("ns"));
        let t =
            targets_from_args(&args(&["node/n1", "pod/p"]), "ns").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t[0].namespace, None);
        assert_eq!(t[1].display(), "pod/p");
        let err = |a: &[&str]| match targets_from_args(&args(a), "ns") {
            Ok(t) => panic!("{t:?}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            err(&["widgets", "x"]),
            "the server doesn't have a resource type \"widgets\""
        );
        assert_eq!(
            err(&["deploy"]),
            "resource(s) were provided, but no name was specified"
        );
    }
}
