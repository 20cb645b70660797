//! `ctl apply -f`: create what is missing, patch what exists so it matches the files, and keep
//! each file's content in the `kubectl.kubernetes.io/last-applied-configuration` annotation, as
//! kubectl does, so kubectl and ctl can take turns on the same objects.
//!
//! The update is a JSON merge patch computed three ways, as kubectl's
//! `CreateThreeWayJSONMergePatch` does: what differs between the live object and the file, plus
//! a `null` for every field that the last applied configuration had and the file no longer has.
//! Lists are atomic in a merge patch, so a list is sent whole when the file's list is not already
//! contained element by element in the live one (the live list carries server defaults), or when
//! it changed since the last apply.
//!
//! Unlike kubectl, which sends one object after the other, ctl applies a file's Namespaces first
//! and then up to [`IN_FLIGHT`] objects at once; what it prints stays in the files' order.

use std::io::Write;

use anyhow::Context as _;
use futures::StreamExt as _;
use api::client::{Client, Patch, PatchParams, PostParams};
use api::scheme::FieldValidation;
use clap::Args;
use serde_json::{Map, Value};

use super::objects::{self, DryRun, Target, WriteOutput};
use crate::cli::GlobalArgs;
use crate::connect;
use crate::manifest::{self, Manifest};
use crate::output::{write_json, write_yaml};

/// The annotation that holds what was last applied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Apply the configuration in web.yaml\n  ctl apply -f web.yaml\n\n  # Apply every manifest under a directory, recursively\n  ctl apply -f manifests/ -R\n\n  # Apply what arrives on standard input\n  cat web.json | ctl apply -f -\n\n  # See what the server would do, without changing anything\n  ctl apply -f web.yaml --dry-run=server -o yaml"
)]
pub struct ApplyArgs {
    /// The files, directories or `-` (standard input) that hold the configuration
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filenames: Vec<String>,

    /// Walk directories given with -f recursively
    #[arg(short = 'R', long)]
    pub recursive: bool,

    /// Only print what would be sent: "server" asks the server, "client" decides locally
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "client", default_value = "none", value_name = "MODE")]
    pub dry_run: DryRun,

    /// Output format: name, yaml or json
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<WriteOutput>,
}

/// What an apply did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

/// How many objects of one apply are sent at once (after its Namespaces).
const IN_FLIGHT: usize = 16;

pub async fn run(global: &GlobalArgs, args: &ApplyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut manifests = manifest::read(&args.filenames, args.recursive)?;
    if manifests.is_empty() {
        return Err(manifest::ManifestError::NoObjects { verb: "apply" }.into());
    }
    // Namespaces first, so the objects that live in them can be created in the same run.
    manifests.sort_by_key(|m| m.object["kind"] != "Namespace");
    let client = connect::client(global)?;
    let mut targets: Vec<_> = manifests.iter().map(|m| objects::target_of(m, global, &client)).collect();
    let split = manifests.iter().position(|m| m.object["kind"] != "Namespace").unwrap_or(manifests.len());
    let rest_targets = targets.split_off(split);
    let mut report = Report { args, errors: Vec::new(), results: Vec::new() };
    for (manifest, target) in manifests.iter().zip(targets) {
        report.add(out, apply_one(&client, manifest, target, args.dry_run).await)?;
    }
    // The rest go IN_FLIGHT at a time (a List of 100 Pods is then applied in the time of a few
    // round trips, not of 200), answers printed in the files' order. An object named twice is
    // applied in order, as the later one changes the earlier: then all go one by one.
    let in_flight = if names_an_object_twice(&rest_targets) { 1 } else { IN_FLIGHT };
    let mut applied = futures::stream::iter(manifests[split..].iter().zip(rest_targets))
        .map(|(manifest, target)| apply_one(&client, manifest, target, args.dry_run))
        .buffered(in_flight);
    while let Some(result) = applied.next().await {
        report.add(out, result)?;
    }
    print_objects(out, args.output, report.results)?;
    objects::finish(report.errors)
}

/// What an apply has to say, gathered object by object in the files' order.
struct Report<'a> {
    args: &'a ApplyArgs,
    errors: Vec<anyhow::Error>,
    results: Vec<Value>,
}

impl Report<'_> {
    fn add(&mut self, out: &mut dyn Write, result: anyhow::Result<(Target, Outcome, Value)>) -> anyhow::Result<()> {
        match result {
            Ok((target, outcome, object)) => match self.args.output {
                Some(WriteOutput::Name) => writeln!(out, "{}", target.display())?,
                Some(_) => self.results.push(object),
                None => writeln!(
                    out,
                    "{} {}{}",
                    target.display(),
                    match outcome {
                        Outcome::Created => "created",
                        Outcome::Configured => "configured",
                        Outcome::Unchanged => "unchanged",
                    },
                    self.args.dry_run.suffix()
                )?,
            },
            Err(error) => self.errors.push(error),
        }
        Ok(())
    }
}

/// Whether two of `targets` are the same object (kind, namespace, name). Objects whose target
/// could not be worked out fail on their own in `apply_one`.
fn names_an_object_twice(targets: &[anyhow::Result<Target>]) -> bool {
    let mut seen = std::collections::HashSet::new();
    targets
        .iter()
        .filter_map(|t| t.as_ref().ok())
        .any(|t| !seen.insert((t.info.kind, t.namespace.as_deref(), t.name.as_str())))
}

/// Prints objects for `-o yaml|json`: one object as it is, several as a `List`.
pub fn print_objects(
    out: &mut dyn Write,
    format: Option<WriteOutput>,
    mut objects: Vec<Value>,
) -> anyhow::Result<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let value = if objects.len() == 1 {
        objects.remove(0)
    } else {
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects, "metadata": {"resourceVersion": ""}})
    };
    match format {
        Some(WriteOutput::Json) => write_json(out, &value),
        Some(WriteOutput::Yaml) => write_yaml(out, &value),
        _ => Ok(()),
    }
}

/// Applies one manifest to `target`, the object it names (worked out by the caller, which
/// needs the targets of the whole file first).
async fn apply_one(
    client: &Client,
    manifest: &Manifest,
    target: anyhow::Result<Target>,
    dry_run: DryRun,
) -> anyhow::Result<(Target, Outcome, Value)> {
    let target = target?;
    let api = target.api(client);
    let mut object = manifest.object.clone();
    // kubectl puts the namespace it resolved into the object, and so into last-applied.
    if let (Some(namespace), Some(metadata)) = (
        &target.namespace,
        object.get_mut("metadata").and_then(Value::as_object_mut),
    ) {
        metadata
            .entry("namespace")
            .or_insert_with(|| Value::String(namespace.clone()));
    }
    let modified = with_last_applied(&object)?;
    let live = api
        .get_opt(&target.name)
        .await
        .map_err(|e| objects::when(e, "retrieving current configuration of", &manifest.source))?;
    let Some(live) = live else {
        if dry_run == DryRun::Client {
            return Ok((target, Outcome::Created, modified));
        }
        let params = PostParams {
            dry_run: dry_run == DryRun::Server,
            field_validation: Some(FieldValidation::Strict),
            ..PostParams::default()
        };
        let created = api
            .create(&params, &modified)
            .await
            .map_err(|e| objects::when(e, "creating", &manifest.source))?;
        return Ok((target, Outcome::Created, created));
    };
    let original = last_applied(&live);
    let patch = three_way_merge_patch(original.as_ref(), &modified, &live);
    if is_noop(&patch, &live, &modified) {
        return Ok((target, Outcome::Unchanged, live));
    }
    if dry_run == DryRun::Client {
        let mut merged = live;
        json_patch::merge(&mut merged, &patch);
        return Ok((target, Outcome::Configured, merged));
    }
    let params = PatchParams {
        dry_run: dry_run == DryRun::Server,
        field_validation: Some(FieldValidation::Strict),
        ..PatchParams::default()
    };
    let patched = api
        .patch(&target.name, &params, &Patch::Merge(patch))
        .await
        .map_err(|e| objects::when(e, "patching", &manifest.source))?;
    Ok((target, Outcome::Configured, patched))
}

/// The object to send: the file's object with its own JSON in the last-applied annotation (and
/// without any last-applied annotation the file itself carried). The JSON is spelled as kubectl
/// spells it (keys sorted, HTML characters escaped, an empty `annotations` map kept, a newline at
/// the end), so that an apply by one tool after the other sees no change.
pub fn with_last_applied(object: &Value) -> anyhow::Result<Value> {
    let mut modified = object.clone();
    let metadata = modified
        .as_object_mut()
        .context("the object is not a JSON object")?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let metadata = metadata
        .as_object_mut()
        .context("the object's metadata is not an object")?;
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    if let Some(map) = annotations.as_object_mut() {
        map.remove(LAST_APPLIED);
    }
    let text = go_json(&crate::output::sorted_keys(&modified))? + "\n";
    if let Some(map) = modified
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        map.insert(LAST_APPLIED.to_string(), Value::String(text));
    }
    Ok(modified)
}


/// Compact JSON with the escapes of Go's encoder. `<`, `>`, `&` and U+2028/9 only occur inside
/// strings in JSON text, so replacing them everywhere is safe.
fn go_json(value: &Value) -> anyhow::Result<String> {
    let text = serde_json::to_string(value).context("cannot encode the object as JSON")?;
    Ok(text
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029"))
}

/// The configuration last applied to `live`, if it has one that parses.
pub fn last_applied(live: &Value) -> Option<Value> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// The merge patch that takes `live` to `modified`, also removing what `original` (the last
/// applied configuration) had and `modified` dropped. Fields only the server or other writers
/// set are left alone.
pub fn three_way_merge_patch(original: Option<&Value>, modified: &Value, live: &Value) -> Value {
    let empty = Map::new();
    let modified_map = modified.as_object().unwrap_or(&empty);
    let mut patch = delta(live.as_object().unwrap_or(&empty), modified_map);
    if let Some(original) = original.and_then(Value::as_object) {
        let deletions = deletions(original, modified_map);
        merge_missing(&mut patch, deletions);
    }
    Value::Object(patch)
}

/// A patch that changes nothing: empty, or only rewriting the last-applied annotation with the
/// same content in another spelling (kubectl's JSON escapes `<`, `>` and `&`, for one).
fn is_noop(patch: &Value, live: &Value, modified: &Value) -> bool {
    let Some(map) = patch.as_object() else {
        return true;
    };
    if map.is_empty() {
        return true;
    }
    let only_annotation = map.len() == 1
        && patch
            .pointer("/metadata")
            .and_then(Value::as_object)
            .is_some_and(|m| m.len() == 1)
        && patch
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .is_some_and(|a| a.len() == 1 && a.contains_key(LAST_APPLIED));
    only_annotation && last_applied(live).is_some() && last_applied(live) == last_applied(modified)
}

/// Fields of `modified` that `live` does not already have.
fn delta(live: &Map<String, Value>, modified: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, wanted) in modified {
        match (live.get(key), wanted) {
            (None, Value::Null) => {}
            (None, Value::Object(m)) if m.is_empty() => {}
            (None, _) => {
                patch.insert(key.clone(), wanted.clone());
            }
            (Some(Value::Null), Value::Null) => {}
            (Some(_), Value::Null) => {
                patch.insert(key.clone(), Value::Null);
            }
            (Some(Value::Object(have)), Value::Object(want)) => {
                let inner = delta(have, want);
                if !inner.is_empty() {
                    patch.insert(key.clone(), Value::Object(inner));
                }
            }
            (Some(have), _) => {
                if !contains(have, wanted) {
                    patch.insert(key.clone(), wanted.clone());
                }
            }
        }
    }
    patch
}

/// `null` for each field of `original` that `modified` no longer has; a list that changed since
/// the last apply is sent whole, since a merge patch cannot remove part of a list element.
fn deletions(original: &Map<String, Value>, modified: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, was) in original {
        match (was, modified.get(key)) {
            (_, None) => {
                patch.insert(key.clone(), Value::Null);
            }
            (Value::Object(was), Some(Value::Object(now))) => {
                let inner = deletions(was, now);
                if !inner.is_empty() {
                    patch.insert(key.clone(), Value::Object(inner));
                }
            }
            (Value::Array(was), Some(Value::Array(now)))
                if !same(&Value::Array(was.clone()), &Value::Array(now.clone())) =>
            {
                patch.insert(key.clone(), Value::Array(now.clone()));
            }
            _ => {}
        }
    }
    patch
}

/// Adds `extra` to `patch` where `patch` says nothing yet.
fn merge_missing(patch: &mut Map<String, Value>, extra: Map<String, Value>) {
    for (key, value) in extra {
        match (patch.get_mut(&key), value) {
            (None, value) => {
                patch.insert(key, value);
            }
            (Some(Value::Object(have)), Value::Object(more)) => merge_missing(have, more),
            _ => {}
        }
    }
}

/// Whether `have` already says everything `wanted` says: objects may have more fields (server
/// defaults), lists must have the same length with each element containing the wanted one.
fn contains(have: &Value, wanted: &Value) -> bool {
    match (have, wanted) {
        (Value::Object(have), Value::Object(wanted)) => {
            wanted.iter().all(|(k, w)| match have.get(k) {
                Some(h) => contains(h, w),
                None => w.is_null() || w.as_object().is_some_and(Map::is_empty),
            })
        }
        (Value::Array(have), Value::Array(wanted)) => {
            have.len() == wanted.len() && have.iter().zip(wanted).all(|(h, w)| contains(h, w))
        }
        _ => same(have, wanted),
    }
}

/// Equality that treats 2 and 2.0 as the same number.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(original: Option<Value>, modified: Value, live: Value, expected: Value) {
        assert_eq!(
            three_way_merge_patch(original.as_ref(), &modified, &live),
            expected
        );
    }

    #[test]
    fn three_way_patches() {
        // nothing to do: the live object has the file's fields plus server defaults
        check(
            Some(json!({"spec": {"replicas": 2}})),
            json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}),
            json!({"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate"}, "template": {"spec": {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}]}}}}),
            json!({}),
        );
        // a changed scalar, and a field removed from the file since the last apply
        check(
            Some(
                json!({"spec": {"replicas": 2, "minReadySeconds": 5}, "metadata": {"labels": {"a": "1", "b": "2"}}}),
            ),
            json!({"spec": {"replicas": 3}, "metadata": {"labels": {"a": "1"}}}),
            json!({"spec": {"replicas": 2, "minReadySeconds": 5, "paused": false}, "metadata": {"labels": {"a": "1", "b": "2", "c": "other writer"}}}),
            json!({"spec": {"replicas": 3, "minReadySeconds": null}, "metadata": {"labels": {"b": null}}}),
        );
        // a list whose element changed is sent whole
        check(
            None,
            json!({"containers": [{"name": "a", "image": "y"}]}),
            json!({"containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}]}),
            json!({"containers": [{"name": "a", "image": "y"}]}),
        );
        // a field dropped from a list element since the last apply: the list is sent whole
        check(
            Some(json!({"containers": [{"name": "a", "args": ["1"]}]})),
            json!({"containers": [{"name": "a"}]}),
            json!({"containers": [{"name": "a", "args": ["1"]}]}),
            json!({"containers": [{"name": "a"}]}),
        );
        // numbers compare by value
        check(None, json!({"x": 2.0}), json!({"x": 2}), json!({}));
    }

    #[test]
    fn last_applied_round_trip() {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {LAST_APPLIED: "old"}}, "data": {"k": "v"}});
        let modified = with_last_applied(&object).unwrap_or_else(|e| panic!("{e}"));
        let saved = last_applied(&modified).unwrap_or_else(|| panic!("no annotation"));
        assert_eq!(
            saved,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {}}, "data": {"k": "v"}})
        );
        let text = modified["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap_or("");
        assert_eq!(text, "{\"apiVersion\":\"v1\",\"data\":{\"k\":\"v\"},\"kind\":\"ConfigMap\",\"metadata\":{\"annotations\":{},\"name\":\"c\"}}\n");
        let html =
            with_last_applied(&json!({"data": {"k": "<a&b>"}})).unwrap_or_else(|e| panic!("{e}"));
        let text = html["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap_or("");
        assert!(text.contains(r"\u003ca\u0026b\u003e"), "{text}");
        // the same content spelled differently by kubectl is not a change
        let mut live = modified.clone();
        live["metadata"]["annotations"][LAST_APPLIED] = json!(format!(
            "{}\n",
            serde_json::to_string_pretty(&saved).unwrap_or_default()
        ));
        let patch = three_way_merge_patch(Some(&saved), &modified, &live);
        assert!(is_noop(&patch, &live, &modified));
    }
}
