//! `ctl label` and `ctl annotate`: add (`k=v`), change (with `--overwrite`) and remove (`k-`)
//! labels or annotations with a merge patch.

use std::collections::BTreeMap;
use std::io::Write;

use api::client::{DynamicApi, ListParams, Patch, PatchParams};
use clap::Args;
use serde_json::{json, Map, Value};

use super::objects::{self, DryRun, Target};
use crate::cli::GlobalArgs;
use crate::connect;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Add label tier=web to pod x\n  ctl label pod x tier=web\n\n  # Change it, which needs --overwrite\n  ctl label pod x tier=frontend --overwrite\n\n  # Remove it\n  ctl label pod x tier-\n\n  # Label every pod matching a selector\n  ctl label pods -l app=web env=prod"
)]
pub struct LabelArgs {
    /// TYPE NAME... or TYPE/NAME..., then KEY=VALUE to set and KEY- to remove
    #[arg(value_name = "ARGS", required = true, num_args = 1..)]
    pub args: Vec<String>,

    /// Allow changing a value that is already set
    #[arg(long)]
    pub overwrite: bool,

    /// Change the objects whose labels match this selector
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Change every object of the type in the namespace
    #[arg(long)]
    pub all: bool,

    /// Only print what would be done: "server" asks the server, "client" decides locally
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none", value_name = "MODE")]
    pub dry_run: DryRun,
}

/// Which map of the metadata a command changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Labels,
    Annotations,
}

pub async fn run(
    global: &GlobalArgs,
    field: Field,
    args: &LabelArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (singular, key) = match field {
        Field::Labels => ("label", "labels"),
        Field::Annotations => ("annotation", "annotations"),
    };
    let (changes, resources): (Vec<&String>, Vec<&String>) = args
        .args
        .iter()
        .partition(|a| a.contains('=') || a.ends_with('-'));
    if changes.is_empty() {
        anyhow::bail!("at least one {singular} update is required");
    }
    let mut set = BTreeMap::new();
    let mut remove = Vec::new();
    for change in changes {
        if let Some((k, v)) = change.split_once('=') {
            if k.is_empty() {
                anyhow::bail!("invalid {singular} spec: {change}");
            }
            set.insert(k.to_string(), v.to_string());
        } else if let Some(k) = change.strip_suffix('-').filter(|k| !k.is_empty()) {
            remove.push(k.to_string());
        } else {
            anyhow::bail!("invalid {singular} spec: {change}");
        }
    }
    if let Some(both) = remove.iter().find(|k| set.contains_key(*k)) {
        anyhow::bail!("can not both modify and remove the following {singular}(s) in the same command: {both}");
    }
    let client = connect::client(global)?;
    let namespace = objects::namespace(global, &client);
    let resources: Vec<String> = resources.into_iter().cloned().collect();
    let targets = if args.selector.is_some() || args.all {
        let [kind] = resources.as_slice() else {
            anyhow::bail!("give one resource type, and no names, with a selector or --all");
        };
        let info = objects::kind_of(kind)?;
        let params = ListParams {
            label_selector: args.selector.clone(),
            ..ListParams::default()
        };
        let list = DynamicApi::new(client.clone(), info, Some(&namespace))
            .list(&params)
            .await?;
        list.items
            .iter()
            .map(|item| Target {
                info,
                namespace: info.namespaced().then(|| namespace.clone()),
                name: item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect()
    } else {
        if resources.is_empty() {
            anyhow::bail!(
                "one or more resources must be specified as <resource> <name> or <resource>/<name>"
            );
        }
        objects::targets_from_args(&resources, &namespace)?
    };
    let mut errors = Vec::new();
    for target in &targets {
        let api = target.api(&client);
        let result = async {
            let live = api.get(&target.name).await?;
            let current = live
                .pointer(&format!("/metadata/{key}"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let plan = plan(&current, &set, &remove, args.overwrite)?;
            for missing in &plan.not_found {
                eprintln!("{singular} {missing:?} not found.");
            }
            if !plan.patch.is_empty() && args.dry_run != DryRun::Client {
                let params = PatchParams {
                    dry_run: args.dry_run == DryRun::Server,
                    ..PatchParams::default()
                };
                let patch = json!({"metadata": {key: Value::Object(plan.patch.clone())}});
                api.patch(&target.name, &params, &Patch::Merge(patch))
                    .await?;
            }
            Ok::<_, anyhow::Error>(plan)
        }
        .await;
        match result {
            Ok(plan) => {
                let word = match field {
                    Field::Annotations => "annotated",
                    Field::Labels if plan.set => "labeled",
                    Field::Labels if plan.removed => "unlabeled",
                    Field::Labels => "not labeled",
                };
                writeln!(out, "{} {word}{}", target.display(), args.dry_run.suffix())?;
            }
            Err(e) => errors.push(e),
        }
    }
    objects::finish(errors)
}

/// What one object's change comes to.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// The merge patch of the labels (or annotations) map.
    pub patch: Map<String, Value>,
    /// Whether some key is set, and whether some key is removed.
    pub set: bool,
    pub removed: bool,
    /// Keys asked to be removed that the object does not have.
    pub not_found: Vec<String>,
}

/// Plans the change, refusing to change an existing value without `overwrite` as kubectl does.
pub fn plan(
    current: &Map<String, Value>,
    set: &BTreeMap<String, String>,
    remove: &[String],
    overwrite: bool,
) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    if !overwrite {
        for (k, v) in set {
            if let Some(existing) = current.get(k).and_then(Value::as_str) {
                if existing != v {
                    anyhow::bail!(
                        "'{k}' already has a value ({existing}), and --overwrite is false"
                    );
                }
            }
        }
    }
    for (k, v) in set {
        plan.patch.insert(k.clone(), Value::String(v.clone()));
        plan.set = true;
    }
    for k in remove {
        if current.contains_key(k) {
            plan.patch.insert(k.clone(), Value::Null);
            plan.removed = true;
        } else {
            plan.not_found.push(k.clone());
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrite_rules() {
        let current: Map<String, Value> =
            serde_json::from_value(json!({"app": "web", "tier": "a"})).unwrap_or_default();
        let set = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let refused = plan(&current, &set(&[("app", "db")]), &[], false)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(
            refused,
            Err("'app' already has a value (web), and --overwrite is false".to_string())
        );
        // the same value again is fine without --overwrite
        assert!(plan(&current, &set(&[("app", "web")]), &[], false).is_ok());
        let p = plan(
            &current,
            &set(&[("app", "db")]),
            &["tier".into(), "gone".into()],
            true,
        )
        .unwrap_or_default();
        assert_eq!(Value::Object(p.patch), json!({"app": "db", "tier": null}));
        assert_eq!(p.not_found, ["gone"]);
        assert!(p.set && p.removed);
    }
}
