//! `ctl get`: list or fetch objects of one or more kinds and print them as kubectl does: tables
//! with the columns of `api::printers` (`-o wide` for more), `-o json|yaml|name`,
//! `-o jsonpath=...`, `-o custom-columns=...`, and `-w` to keep printing a row per change.

use std::io::Write;

use anyhow::{bail, Context as _};
use api::client::{ClientError, DynamicApi, ListParams, WatchEvent};
use api::printers;
use api::resource::{self, ResourceInfo};
use clap::Args;
use futures::StreamExt as _;
use serde_json::{json, Value};

use crate::cli::GlobalArgs;
use crate::connect;
use crate::jsonpath::{self, Template};
use crate::output::{write_json, write_yaml};
use crate::table::Table;

/// Arguments of `ctl get`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # List pods in the current namespace\n  ctl get pods\n\n  # List pods with their IP and node\n  ctl get pods -o wide\n\n  # One deployment as YAML\n  ctl get deployment web -o yaml\n\n  # Pods and services of every namespace with label app=web\n  ctl get po,svc -A -l app=web\n\n  # Names of all pods, one per line\n  ctl get pods -o jsonpath='{range .items[*]}{.metadata.name}{\"\\n\"}{end}'\n\n  # Follow changes to pods\n  ctl get pods -w\n\n  # The server's answer to a raw path\n  ctl get --raw /api/v1/namespaces"
)]
pub struct GetArgs {
    /// TYPE[,TYPE...] [NAME...], or TYPE/NAME ...
    #[arg(value_name = "TYPE[/NAME]")]
    pub args: Vec<String>,

    /// Output format: json, yaml, name, wide, jsonpath=TEMPLATE or custom-columns=SPEC
    #[arg(short = 'o', long = "output", value_name = "FORMAT")]
    pub output: Option<String>,

    /// Label selector to filter on, e.g. -l app=web,tier!=cache
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Field selector to filter on, e.g. --field-selector status.phase=Running
    #[arg(long = "field-selector", value_name = "SELECTOR")]
    pub field_selector: Option<String>,

    /// List objects of every namespace
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,

    /// Show every label as the last column
    #[arg(long)]
    pub show_labels: bool,

    /// Print tables without their header line
    #[arg(long)]
    pub no_headers: bool,

    /// After listing, keep watching and print a line per change
    #[arg(short = 'w', long)]
    pub watch: bool,

    /// Watch for changes without listing first
    #[arg(long)]
    pub watch_only: bool,

    /// Print the server's raw answer to GET PATH
    #[arg(long, value_name = "PATH", conflicts_with_all = ["args", "watch", "watch_only"])]
    pub raw: Option<String>,
}

/// What the command line asks for: kinds, each with the names given (none: all of them).
#[derive(Debug)]
pub struct Request {
    pub info: &'static ResourceInfo,
    pub names: Vec<String>,
}

/// Reads `TYPE[,TYPE] [NAME...]` or `TYPE/NAME ...`, as kubectl does.
pub fn parse_requests(args: &[String]) -> anyhow::Result<Vec<Request>> {
    let Some(first) = args.first() else {
        bail!(
            "you must specify the type of resource to get, e.g. `ctl get pods`; known types: {}",
            known_types()
        );
    };
    let lookup = |name: &str| {
        resource::lookup(name)
            .with_context(|| format!("the server doesn't have a resource type \"{name}\""))
    };
    if args.iter().any(|a| a.contains('/')) {
        let mut requests: Vec<Request> = Vec::new();
        for arg in args {
            let Some((kind, name)) = arg.split_once('/') else {
                bail!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'ctl get resource/<resource_name>' instead of 'ctl get resource resource/<resource_name>')");
            };
            if name.is_empty() {
                bail!("arguments in resource/name form must have a single resource and name");
            }
            let info = lookup(kind)?;
            match requests.iter_mut().find(|r| std::ptr::eq(r.info, info)) {
                Some(request) => request.names.push(name.to_string()),
                None => requests.push(Request {
                    info,
                    names: vec![name.to_string()],
                }),
            }
        }
        return Ok(requests);
    }
    let names: Vec<String> = args[1..].to_vec();
    let mut requests: Vec<Request> = Vec::new();
    for kind in first.split(',').filter(|k| !k.is_empty()) {
        let info = lookup(kind)?;
        if !requests.iter().any(|r| std::ptr::eq(r.info, info)) {
            requests.push(Request {
                info,
                names: names.clone(),
            });
        }
    }
    if requests.is_empty() {
        bail!("the server doesn't have a resource type \"{first}\"");
    }
    Ok(requests)
}

/// `deployment.apps/web`, `pod/web-1`: how kubectl names an object in `-o name` and in tables
/// of several kinds.
pub fn kind_name(info: &ResourceInfo, name: &str) -> String {
    let kind = info.kind.to_ascii_lowercase();
    if info.group.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}.{}/{name}", info.group)
    }
}

pub async fn run(global: &GlobalArgs, args: &GetArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if let Some(path) = &args.raw {
        let client = connect::client(global)?;
        let path = if path.starts_with('/') {
            path.clone()
        } else {
            format!("/{path}")
        };
        // `Method` is named through inference so `ctl` needs no direct `http` dependency.
        let method = "GET"
            .parse()
            .map_err(|e| anyhow::anyhow!("cannot build a GET request: {e}"))?;
        let response = client.request(method, &path, None).await?;
        out.write_all(&response.body)?;
        return Ok(());
    }
    let format = Format::parse(args.output.as_deref())?;
    let requests = parse_requests(&args.args)?;
    let client = connect::client(global)?;
    let namespace = client.default_namespace().to_string();
    let scope = if args.all_namespaces {
        None
    } else {
        Some(namespace.as_str())
    };
    let params = ListParams {
        label_selector: args.selector.clone(),
        field_selector: args.field_selector.clone(),
        ..ListParams::default()
    };
    let options = PrintOptions {
        all_namespaces: args.all_namespaces,
        show_labels: args.show_labels,
        no_headers: args.no_headers,
        with_kind: requests.len() > 1,
        now: jiff::Timestamp::now(),
    };

    if args.watch || args.watch_only {
        let [request] = requests.as_slice() else {
            bail!("watch is only supported on individual resources and resource collections, but {} resources were found", requests.len());
        };
        let api = DynamicApi::new(client, request.info, scope);
        return watch(
            &api,
            request,
            &params,
            &format,
            &options,
            args.watch_only,
            out,
        )
        .await;
    }

    let mut found: Vec<(&'static ResourceInfo, Vec<Value>)> = Vec::new();
    let mut errors: Vec<anyhow::Error> = Vec::new();
    for request in &requests {
        let api = DynamicApi::new(client.clone(), request.info, scope);
        let mut objects = Vec::new();
        if request.names.is_empty() {
            let list = api.list(&params).await?;
            objects = list.items;
        } else {
            for name in &request.names {
                match api.get(name).await {
                    Ok(object) => objects.push(object),
                    Err(error) => errors.push(error.into()),
                }
            }
        }
        found.push((request.info, objects));
    }
    let single_item = requests.len() == 1 && requests[0].names.len() == 1;
    let total: usize = found.iter().map(|(_, o)| o.len()).sum();

    match &format {
        Format::Table { wide } => {
            let mut first = true;
            for (info, objects) in found.iter().filter(|(_, o)| !o.is_empty()) {
                if !first {
                    writeln!(out)?;
                }
                first = false;
                let table = build_table(info, objects, *wide, &options);
                table.write(out)?;
            }
            if total == 0 && errors.is_empty() {
                let all_namespaced =
                    !args.all_namespaces && requests.iter().all(|r| r.info.namespaced());
                out.flush()?;
                if all_namespaced {
                    eprintln!("No resources found in {namespace} namespace.");
                } else {
                    eprintln!("No resources found");
                }
            }
        }
        Format::CustomColumns(columns) => {
            let objects: Vec<&Value> = found.iter().flat_map(|(_, o)| o.iter()).collect();
            if !objects.is_empty() {
                custom_columns(columns, &objects, options.no_headers)?.write(out)?;
            }
        }
        Format::Name => {
            for (info, objects) in &found {
                for object in objects {
                    writeln!(out, "{}", kind_name(info, name_of(object)))?;
                }
            }
        }
        Format::Json | Format::Yaml | Format::JsonPath(_) => {
            // Several objects, or a listing, print as one `kind: List`, as kubectl does.
            let document = if single_item && total == 1 {
                let (info, objects) = &found[0];
                with_type(info, objects[0].clone())
            } else if single_item && total == 0 {
                Value::Null
            } else {
                let items: Vec<Value> = found
                    .iter()
                    .flat_map(|(info, objects)| objects.iter().map(|o| with_type(info, o.clone())))
                    .collect();
                json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})
            };
            if !document.is_null() {
                print_document(&format, &document, out)?;
            }
        }
    }
    finish(errors, out)
}

/// Prints every error but the last on stderr and returns the last, so each missing object is
/// reported and the exit status is 1.
fn finish(mut errors: Vec<anyhow::Error>, out: &mut dyn Write) -> anyhow::Result<()> {
    let Some(last) = errors.pop() else {
        return Ok(());
    };
    out.flush()?;
    for error in &errors {
        eprintln!("{}", crate::error_message(error));
    }
    Err(last)
}

/// An output format of `-o`.
#[derive(Debug)]
pub enum Format {
    Table { wide: bool },
    Json,
    Yaml,
    Name,
    JsonPath(Template),
    CustomColumns(Vec<(String, Template)>),
}

impl Format {
    pub fn parse(output: Option<&str>) -> anyhow::Result<Format> {
        let Some(output) = output else {
            return Ok(Format::Table { wide: false });
        };
        Ok(match output {
            "" => Format::Table { wide: false },
            "wide" => Format::Table { wide: true },
            "json" => Format::Json,
            "yaml" => Format::Yaml,
            "name" => Format::Name,
            _ => {
                if let Some(template) = output.strip_prefix("jsonpath=") {
                    if template.is_empty() {
                        bail!("template format specified but no template given");
                    }
                    Format::JsonPath(Template::parse(strip_quotes(template))?)
                } else if let Some(spec) = output.strip_prefix("custom-columns=") {
                    let mut columns = Vec::new();
                    for part in spec.split(',').filter(|p| !p.is_empty()) {
                        let Some((header, path)) = part.split_once(':') else {
                            bail!("unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>");
                        };
                        columns.push((
                            header.to_string(),
                            Template::parse(&jsonpath::relaxed(path))?,
                        ));
                    }
                    if columns.is_empty() {
                        bail!("custom-columns format specified but no custom columns given");
                    }
                    Format::CustomColumns(columns)
                } else {
                    bail!("unable to match a printer suitable for the output format \"{output}\", allowed formats are: custom-columns,json,jsonpath,name,wide,yaml");
                }
            }
        })
    }
}

/// How tables are decorated.
#[derive(Clone, Debug)]
pub struct PrintOptions {
    pub all_namespaces: bool,
    pub show_labels: bool,
    pub no_headers: bool,
    /// Prefix names with their kind (`pod/web`), as kubectl does when several kinds are shown.
    pub with_kind: bool,
    pub now: jiff::Timestamp,
}

/// The table of `objects` of one kind.
pub fn build_table(
    info: &ResourceInfo,
    objects: &[Value],
    wide: bool,
    options: &PrintOptions,
) -> Table {
    let columns = printers::columns(info);
    let namespace_column = options.all_namespaces && info.namespaced();
    let mut headers: Vec<String> = Vec::new();
    if !options.no_headers {
        if namespace_column {
            headers.push("NAMESPACE".to_string());
        }
        headers.extend(
            columns
                .iter()
                .filter(|c| wide || c.priority == 0)
                .map(|c| c.name.to_uppercase()),
        );
        if options.show_labels {
            headers.push("LABELS".to_string());
        }
    }
    let mut table = Table::new(&headers);
    for object in objects {
        table.row(table_row(info, object, wide, options));
    }
    table
}

/// One object's cells, decorated as [`build_table`] decorates them.
pub fn table_row(
    info: &ResourceInfo,
    object: &Value,
    wide: bool,
    options: &PrintOptions,
) -> Vec<String> {
    let columns = printers::columns(info);
    let cells = printers::row(info, object, options.now);
    let mut row = Vec::new();
    if options.all_namespaces && info.namespaced() {
        row.push(
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        );
    }
    for (column, cell) in columns.iter().zip(cells) {
        if !wide && column.priority != 0 {
            continue;
        }
        if column.name == "Name" && options.with_kind {
            row.push(kind_name(info, &cell));
        } else {
            row.push(cell);
        }
    }
    if options.show_labels {
        row.push(printers::format_labels(object.pointer("/metadata/labels")));
    }
    row
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// List items come without apiVersion and kind; kubectl fills them in.
fn with_type(info: &ResourceInfo, mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        if !map.contains_key("apiVersion") {
            map.insert("apiVersion".into(), Value::String(info.api_version()));
        }
        if !map.contains_key("kind") {
            map.insert("kind".into(), Value::String(info.kind.to_string()));
        }
    }
    object
}


/// Shells keep the quotes of `-o jsonpath='{...}'` only when users double them; kubectl
/// accepts a template wrapped in one more pair of quotes.
fn strip_quotes(template: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = template.strip_prefix(q).and_then(|t| t.strip_suffix(q)) {
            if inner.starts_with('{') {
                return inner;
            }
        }
    }
    template
}

fn print_document(format: &Format, document: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        Format::Json => write_json(out, &crate::output::sorted_keys(document)),
        Format::Yaml => write_yaml(out, &crate::output::sorted_keys(document)),
        Format::JsonPath(template) => {
            out.write_all(template.render(&crate::output::sorted_keys(document))?.as_bytes())?;
            Ok(())
        }
        _ => Ok(()),
    }
}

fn custom_columns(
    columns: &[(String, Template)],
    objects: &[&Value],
    no_headers: bool,
) -> anyhow::Result<Table> {
    let headers: Vec<&str> = if no_headers {
        Vec::new()
    } else {
        columns.iter().map(|(h, _)| h.as_str()).collect()
    };
    let mut table = Table::new(&headers);
    for object in objects {
        let mut row = Vec::new();
        for (_, template) in columns {
            let values = template.values(object)?;
            if values.is_empty() {
                row.push("<none>".to_string());
            } else {
                row.push(
                    values
                        .iter()
                        .map(jsonpath::to_text)
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
        }
        table.row(row);
    }
    Ok(table)
}

/// Prints one object of a watch in the chosen format.
fn print_event(
    info: &ResourceInfo,
    object: &Value,
    format: &Format,
    options: &PrintOptions,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let options = PrintOptions {
        now: jiff::Timestamp::now(),
        ..options.clone()
    };
    match format {
        Format::Table { wide } => {
            // Each change is its own line, aligned on its own, as kubectl's watch prints it.
            let mut table = Table::new::<&str>(&[]);
            table.row(table_row(info, object, *wide, &options));
            table.write(out)?;
        }
        Format::Name => writeln!(out, "{}", kind_name(info, name_of(object)))?,
        Format::CustomColumns(columns) => custom_columns(columns, &[object], true)?.write(out)?,
        _ => print_document(format, &with_type(info, object.clone()), out)?,
    }
    out.flush()?;
    Ok(())
}

async fn watch(
    api: &DynamicApi,
    request: &Request,
    params: &ListParams,
    format: &Format,
    options: &PrintOptions,
    watch_only: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let info = request.info;
    let mut params = params.clone();
    if let [name] = request.names.as_slice() {
        params.field_selector = Some(match &params.field_selector {
            Some(fields) => format!("{fields},metadata.name={name}"),
            None => format!("metadata.name={name}"),
        });
    } else if request.names.len() > 1 {
        bail!("watch is only supported on individual resources and resource collections, but {} resources were found", request.names.len());
    }
    let list = api.list(&params).await?;
    let mut version = list.metadata.resource_version.clone().unwrap_or_default();
    if !watch_only {
        match format {
            Format::Table { wide } => {
                build_table(info, &list.items, *wide, options).write(out)?;
                out.flush()?;
            }
            _ => {
                for object in &list.items {
                    print_event(info, object, format, options, out)?;
                }
            }
        }
    }
    loop {
        let mut stream = api.watch(&params, &version).await?;
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Added(object))
                | Ok(WatchEvent::Modified(object))
                | Ok(WatchEvent::Deleted(object)) => {
                    if let Some(v) = object
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                    {
                        version = v.to_string();
                    }
                    print_event(info, &object, format, options, out)?;
                }
                Ok(WatchEvent::Bookmark(bookmark)) => {
                    version = bookmark.metadata.resource_version;
                }
                Ok(WatchEvent::Error(status)) => return Err(ClientError::Api(status).into()),
                // History moved past our version: start again from the present.
                Err(ClientError::Gone) => {
                    version = api
                        .list(&params)
                        .await?
                        .metadata
                        .resource_version
                        .unwrap_or_default();
                    break;
                }
                Err(error) => return Err(error.into()),
            }
        }
        // The server closes a watch after its timeout; resume where it stopped.
    }
}

fn known_types() -> String {
    resource::RESOURCES
        .iter()
        .map(|r| r.plural)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(args: &[&str]) -> Vec<(String, Vec<String>)> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse_requests(&args) {
            Ok(r) => r
                .into_iter()
                .map(|r| (r.info.plural.to_string(), r.names))
                .collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn arguments_like_kubectl() {
        assert_eq!(requests(&["po"]), [("pods".to_string(), vec![])]);
        assert_eq!(
            requests(&["deploy,svc", "web"]),
            [
                ("deployments".to_string(), vec!["web".to_string()]),
                ("services".to_string(), vec!["web".to_string()])
            ]
        );
        assert_eq!(
            requests(&["pod/a", "svc/b", "po/c"]),
            [
                ("pods".to_string(), vec!["a".to_string(), "c".to_string()]),
                ("services".to_string(), vec!["b".to_string()])
            ]
        );
        let err = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            match parse_requests(&args) {
                Ok(r) => panic!("accepted {r:?}"),
                Err(e) => e.to_string(),
            }
        };
        assert_eq!(
            err(&["widgets"]),
            "the server doesn't have a resource type \"widgets\""
        );
        assert!(err(&["pods", "pod/x"]).contains("resource/name form"));
        assert!(err(&[]).contains("specify the type of resource"));
        assert_eq!(
            kind_name(
                resource::lookup("deploy").unwrap_or_else(|| panic!()),
                "web"
            ),
            "deployment.apps/web"
        );
    }

    #[test]
    fn output_formats() {
        assert!(matches!(
            Format::parse(None),
            Ok(Format::Table { wide: false })
        ));
        assert!(matches!(
            Format::parse(Some("wide")),
            Ok(Format::Table { wide: true })
        ));
        assert!(matches!(
            Format::parse(Some("jsonpath='{.a}'")),
            Ok(Format::JsonPath(_))
        ));
        assert!(matches!(
            Format::parse(Some("custom-columns=NAME:.metadata.name,IMG:spec.containers[*].image")),
            Ok(Format::CustomColumns(c)) if c.len() == 2
        ));
        assert!(
            Format::parse(Some("xml")).is_err_and(|e| e.to_string().contains("allowed formats"))
        );
        assert!(Format::parse(Some("jsonpath=")).is_err());
    }
}
