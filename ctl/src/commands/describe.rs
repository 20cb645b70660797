//! `ctl describe`: one object (or every object of a kind) in kubectl's readable sections, with
//! the Events that concern it at the end.
//!
//! Text is laid out with tabs and aligned by [`tabwrite`], a re-statement of Go's
//! `text/tabwriter` column blocks (padding 2, as kubectl's describers use it), because the
//! alignment of describe output depends on which consecutive lines share a column.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::bail;
use api::client::{ClientError, DynamicApi, ListParams};
use api::printers;
use api::resource::{self, ResourceInfo};
use clap::Args;
use serde_json::Value;

use crate::cli::GlobalArgs;
use crate::commands::get::parse_requests;
use crate::connect;

/// Arguments of `ctl describe`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Describe a pod\n  ctl describe pod web-1\n\n  # The same, in TYPE/NAME form\n  ctl describe deployment/web\n\n  # Every node\n  ctl describe nodes"
)]
pub struct DescribeArgs {
    /// TYPE [NAME...], or TYPE/NAME
    #[arg(value_name = "TYPE[/NAME]")]
    pub args: Vec<String>,

    /// Describe the objects matching this label selector
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Describe objects of every namespace
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
}

pub async fn run(
    global: &GlobalArgs,
    args: &DescribeArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let requests = parse_requests(&args.args)?;
    let client = connect::client(global)?;
    let namespace = client.default_namespace().to_string();
    let scope = if args.all_namespaces {
        None
    } else {
        Some(namespace.as_str())
    };
    let now = jiff::Timestamp::now();
    let mut first = true;
    let mut described = 0usize;
    for request in &requests {
        let api = DynamicApi::new(client.clone(), request.info, scope);
        let objects = if request.names.is_empty() {
            let params = ListParams {
                label_selector: args.selector.clone(),
                ..ListParams::default()
            };
            api.list(&params).await?.items
        } else {
            let mut objects = Vec::new();
            for name in &request.names {
                objects.push(api.get(name).await?);
            }
            objects
        };
        for object in &objects {
            let mut related = Related {
                events: events_of(&client, request.info, object).await?,
                endpoints: None,
                lease: None,
                node_pods: None,
            };
            if request.info.group.is_empty() && request.info.kind == "Node" {
                if let Some(pods) = resource::lookup("pods") {
                    let fields = format!(
                        "spec.nodeName={},status.phase!=Succeeded,status.phase!=Failed",
                        text(object, "/metadata/name")
                    );
                    let api = DynamicApi::new(client.clone(), pods, None);
                    related.node_pods = Some(
                        api.list(&ListParams::default().fields(&fields))
                            .await?
                            .items,
                    );
                }
                if let Some(leases) = resource::lookup("leases") {
                    let api = DynamicApi::new(client.clone(), leases, Some("kube-node-lease"));
                    related.lease = Some(match api.get(text(object, "/metadata/name")).await {
                        Ok(lease) => Ok(lease),
                        Err(ClientError::Api(status)) => Err(status.message.unwrap_or_default()),
                        Err(error) => return Err(error.into()),
                    });
                }
            }
            if request.info.group.is_empty() && request.info.kind == "Service" {
                if let Some(endpoints) = resource::lookup("endpoints") {
                    let ns = object
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str);
                    related.endpoints = DynamicApi::new(client.clone(), endpoints, ns)
                        .get_opt(text(object, "/metadata/name"))
                        .await?;
                }
            }
            if !first {
                // kubectl separates objects with a blank line
                writeln!(out)?;
                writeln!(out)?;
            }
            first = false;
            out.write_all(describe(request.info, object, &related, now).as_bytes())?;
            described += 1;
        }
    }
    if described == 0 {
        if requests.iter().all(|r| r.info.namespaced()) && !args.all_namespaces {
            bail!("no resources found in {namespace} namespace");
        }
        bail!("no resources found");
    }
    Ok(())
}

/// The describe text of one object, given the Events about it.
pub fn describe(
    info: &ResourceInfo,
    object: &Value,
    related: &Related,
    now: jiff::Timestamp,
) -> String {
    let mut w = String::new();
    match (info.group, info.kind) {
        ("", "Pod") => pod(&mut w, object),
        ("apps", "Deployment") => deployment(&mut w, object),
        ("", "Service") => service(&mut w, object, related.endpoints.as_ref()),
        ("", "Node") => {
            node(&mut w, object, related.lease.as_ref());
            if let Some(pods) = &related.node_pods {
                node_resources(&mut w, object, pods, now);
            }
        }
        _ => generic(&mut w, info, object),
    }
    // kubectl's namespace describer shows no events
    if !(info.group.is_empty() && info.kind == "Namespace") {
        events_section(&mut w, &related.events, now);
    }
    tabwrite(&w, 2)
}

/// What describe shows besides the object itself.
#[derive(Debug, Default)]
pub struct Related {
    /// the Events whose involvedObject is the object, oldest first
    pub events: Vec<Value>,
    /// a Service's Endpoints
    pub endpoints: Option<Value>,
    /// a Node's Lease in `kube-node-lease`, or the server's message saying why there is none
    pub lease: Option<Result<Value, String>>,
    /// the pods bound to a Node that have not finished
    pub node_pods: Option<Vec<Value>>,
}

/// Go's `text/tabwriter` with minwidth 0 and the given padding: a column is aligned over each
/// run of consecutive lines that have a tab-terminated cell in it.
pub fn tabwrite(text: &str, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_terminator('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(&lines, 0, lines.len(), &mut widths, padding, &mut out);
    out
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = 0;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() {
                let width = widths.get(j).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
}

async fn events_of(
    client: &api::client::Client,
    info: &ResourceInfo,
    object: &Value,
) -> anyhow::Result<Vec<Value>> {
    let Some(events_info) = resource::lookup("events") else {
        return Ok(Vec::new());
    };
    let name = text(object, "/metadata/name");
    let namespace = text(object, "/metadata/namespace");
    let mut fields = format!("involvedObject.name={name}");
    if info.namespaced() {
        let _ = write!(fields, ",involvedObject.namespace={namespace}");
    }
    let _ = write!(fields, ",involvedObject.kind={}", info.kind);
    let scope = if info.namespaced() {
        Some(namespace)
    } else {
        None
    };
    let api = DynamicApi::new(client.clone(), events_info, scope);
    let mut events = api
        .list(&ListParams::default().fields(&fields))
        .await?
        .items;
    events.sort_by_key(|e| last_seen(e).map(|t| t.as_second()).unwrap_or(0));
    Ok(events)
}

fn last_seen(event: &Value) -> Option<jiff::Timestamp> {
    ["/lastTimestamp", "/eventTime", "/firstTimestamp"]
        .iter()
        .filter_map(|p| event.pointer(p).and_then(Value::as_str))
        .find_map(|s| s.parse().ok())
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

fn array<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn number(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// RFC 1123 with a numeric zone, in the local time zone, as kubectl prints times.
fn time(stamp: &str) -> String {
    match stamp.parse::<jiff::Timestamp>() {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%a, %d %b %Y %H:%M:%S %z")
            .to_string(),
        Err(_) => stamp.to_string(),
    }
}

fn line(w: &mut String, level: usize, content: &str) {
    for _ in 0..level {
        w.push_str("  ");
    }
    w.push_str(content);
    w.push('\n');
}

/// `Labels:` or `Annotations:` with one `key=value` (or `key: value`) per line.
fn map_lines(w: &mut String, level: usize, title: &str, map: Option<&Value>, separator: &str) {
    let mut entries: Vec<(String, String)> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                // kubectl leaves out the copy of the last applied manifest
                .filter(|(k, _)| k.as_str() != "kubectl.kubernetes.io/last-applied-configuration")
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    if entries.is_empty() {
        line(w, level, &format!("{title}:\t<none>"));
        return;
    }
    for (i, (k, v)) in entries.iter().enumerate() {
        let head = if i == 0 {
            format!("{title}:")
        } else {
            String::new()
        };
        line(w, level, &format!("{head}\t{k}{separator}{v}"));
    }
}

fn meta(w: &mut String, object: &Value, namespaced: bool) {
    line(w, 0, &format!("Name:\t{}", text(object, "/metadata/name")));
    if namespaced {
        line(
            w,
            0,
            &format!("Namespace:\t{}", text(object, "/metadata/namespace")),
        );
    }
}

fn labels_annotations(w: &mut String, object: &Value) {
    map_lines(w, 0, "Labels", object.pointer("/metadata/labels"), "=");
    map_lines(
        w,
        0,
        "Annotations",
        object.pointer("/metadata/annotations"),
        ": ",
    );
}

fn created(w: &mut String, object: &Value) {
    line(
        w,
        0,
        &format!(
            "CreationTimestamp:\t{}",
            time(text(object, "/metadata/creationTimestamp"))
        ),
    );
}

fn generic(w: &mut String, info: &ResourceInfo, object: &Value) {
    meta(w, object, info.namespaced());
    labels_annotations(w, object);
    match (info.group, info.kind) {
        ("", "Namespace") => {
            line(w, 0, &format!("Status:\t{}", text(object, "/status/phase")));
        }
        ("", "ConfigMap") => {
            line(w, 0, "");
            line(w, 0, "Data");
            line(w, 0, "====");
            for (k, v) in sorted_entries(object.get("data")) {
                line(w, 0, &format!("{k}:"));
                line(w, 0, "----");
                line(w, 0, v.as_str().unwrap_or_default());
                line(w, 0, "");
            }
            line(w, 0, "");
            line(w, 0, "BinaryData");
            line(w, 0, "====");
            for (k, v) in sorted_entries(object.get("binaryData")) {
                line(w, 0, &format!("{k}: {} bytes", decoded_len(v)));
            }
            line(w, 0, "");
        }
        ("", "Secret") => {
            line(w, 0, "");
            line(w, 0, &format!("Type:\t{}", text(object, "/type")));
            line(w, 0, "");
            line(w, 0, "Data");
            line(w, 0, "====");
            for (k, v) in sorted_entries(object.get("data")) {
                line(w, 0, &format!("{k}:\t{} bytes", decoded_len(v)));
            }
        }
        _ => created(w, object),
    }
}

fn sorted_entries(map: Option<&Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// The length of base64 data once decoded, counted from the text (no decoder needed).
fn decoded_len(value: &Value) -> usize {
    let text = value.as_str().unwrap_or_default().trim_end_matches('=');
    text.len() * 3 / 4
}

fn controlled_by(w: &mut String, object: &Value) {
    if let Some(owner) = array(object, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
    {
        line(
            w,
            0,
            &format!(
                "Controlled By:\t{}/{}",
                text(owner, "/kind"),
                text(owner, "/name")
            ),
        );
    }
}

fn pod(w: &mut String, pod: &Value) {
    meta(w, pod, true);
    // kubectl leaves out what the pod does not set
    if let Some(priority) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
        line(w, 0, &format!("Priority:\t{priority}"));
    }
    let class = text(pod, "/spec/priorityClassName");
    if !class.is_empty() {
        line(w, 0, &format!("Priority Class Name:\t{class}"));
    }
    let account = text(pod, "/spec/serviceAccountName");
    if !account.is_empty() {
        line(w, 0, &format!("Service Account:\t{account}"));
    }
    let node = text(pod, "/spec/nodeName");
    if node.is_empty() {
        line(w, 0, "Node:\t<none>");
    } else {
        line(
            w,
            0,
            &format!("Node:\t{node}/{}", text(pod, "/status/hostIP")),
        );
    }
    let start = text(pod, "/status/startTime");
    if !start.is_empty() {
        line(w, 0, &format!("Start Time:\t{}", time(start)));
    }
    labels_annotations(w, pod);
    let status = if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        "Terminating".to_string()
    } else {
        text(pod, "/status/phase").to_string()
    };
    line(w, 0, &format!("Status:\t{status}"));
    let ip = text(pod, "/status/podIP");
    line(w, 0, &format!("IP:\t{ip}"));
    let ips = array(pod, "/status/podIPs");
    if ips.is_empty() {
        line(w, 0, "IPs:\t<none>");
    } else {
        line(w, 0, "IPs:");
        for ip in ips {
            line(w, 1, &format!("IP:\t{}", text(ip, "/ip")));
        }
    }
    controlled_by(w, pod);
    containers(
        w,
        pod,
        "/spec/initContainers",
        "/status/initContainerStatuses",
        "Init Containers",
        false,
    );
    containers(
        w,
        pod,
        "/spec/containers",
        "/status/containerStatuses",
        "Containers",
        false,
    );
    let conditions = array(pod, "/status/conditions");
    if !conditions.is_empty() {
        line(w, 0, "Conditions:");
        line(w, 1, "Type\tStatus");
        for c in conditions {
            line(
                w,
                1,
                &format!("{} \t{} ", text(c, "/type"), text(c, "/status")),
            );
        }
    }
    volumes(w, pod, 0);
    let qos = text(pod, "/status/qosClass");
    if !qos.is_empty() {
        line(w, 0, &format!("QoS Class:\t{qos}"));
    }
    node_selectors_and_tolerations(w, pod, 0);
}

/// `Volumes:` of a pod or pod template (`spec_of` holds `spec`), at `level`.
fn volumes(w: &mut String, spec_of: &Value, level: usize) {
    let volumes = array(spec_of, "/spec/volumes");
    if volumes.is_empty() {
        line(w, level, "Volumes:\t<none>");
    } else {
        line(w, level, "Volumes:");
        for v in volumes {
            line(w, level + 1, &format!("{}:", text(v, "/name")));
            let source = v
                .as_object()
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() != "name"));
            if let Some((kind, detail)) = source {
                line(w, level + 2, &format!("Type:\t{kind}"));
                if let Some(fields) = detail.as_object() {
                    for (k, v) in fields {
                        let value = v
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string());
                        line(w, level + 2, &format!("{k}:\t{value}"));
                    }
                }
            }
        }
    }
}

/// `Node-Selectors:` and `Tolerations:` of a pod or pod template, at `level`.
fn node_selectors_and_tolerations(w: &mut String, spec_of: &Value, level: usize) {
    let selectors = printers::format_labels(spec_of.pointer("/spec/nodeSelector"));
    line(w, level, &format!("Node-Selectors:\t{selectors}"));
    let tolerations: Vec<String> = array(spec_of, "/spec/tolerations")
        .iter()
        .map(|t| {
            let mut s = text(t, "/key").to_string();
            let value = text(t, "/value");
            if !value.is_empty() {
                let _ = write!(s, "={value}");
            }
            let effect = text(t, "/effect");
            if !effect.is_empty() {
                let _ = write!(s, ":{effect}");
            }
            if let Some(seconds) = t.get("tolerationSeconds").and_then(Value::as_i64) {
                let _ = write!(s, " for {seconds}s");
            }
            s
        })
        .collect();
    if tolerations.is_empty() {
        line(w, level, "Tolerations:\t<none>");
    } else {
        for (i, t) in tolerations.iter().enumerate() {
            let head = if i == 0 { "Tolerations:" } else { "" };
            line(w, level, &format!("{head}\t{t}"));
        }
    }
}

/// The containers of a pod, or of a pod template (`in_template`), which kubectl lays out one
/// level in with the names shifted by a space.
fn containers(
    w: &mut String,
    pod: &Value,
    spec: &str,
    status: &str,
    title: &str,
    in_template: bool,
) {
    let specs = array(pod, spec);
    if specs.is_empty() {
        return;
    }
    let statuses = array(pod, status);
    line(w, usize::from(in_template), &format!("{title}:"));
    let shift = if in_template { " " } else { "" };
    for c in specs {
        let name = text(c, "/name");
        line(w, 1, &format!("{shift}{name}:"));
        let st = statuses.iter().find(|s| text(s, "/name") == name);
        if let Some(st) = st {
            line(
                w,
                2,
                &format!("Container ID:\t{}", text(st, "/containerID")),
            );
        }
        line(w, 2, &format!("Image:\t{}", text(c, "/image")));
        if let Some(st) = st {
            line(w, 2, &format!("Image ID:\t{}", text(st, "/imageID")));
        }
        let ports = array(c, "/ports");
        let port_list = |field: &str| {
            ports
                .iter()
                .map(|p| {
                    let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    format!("{}/{protocol}", number(p, field))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        if ports.is_empty() {
            line(w, 2, "Port:\t<none>");
            line(w, 2, "Host Port:\t<none>");
        } else {
            line(w, 2, &format!("Port:\t{}", port_list("/containerPort")));
            line(w, 2, &format!("Host Port:\t{}", port_list("/hostPort")));
        }
        let command = array(c, "/command");
        if !command.is_empty() {
            line(w, 2, "Command:");
            for part in command {
                line(w, 3, part.as_str().unwrap_or_default());
            }
        }
        let args = array(c, "/args");
        if !args.is_empty() {
            line(w, 2, "Args:");
            for part in args {
                line(w, 3, part.as_str().unwrap_or_default());
            }
        }
        if let Some(st) = st {
            state(w, "State", st.get("state"));
            if st
                .pointer("/lastState")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
            {
                state(w, "Last State", st.get("lastState"));
            }
            let ready = if st.get("ready").and_then(Value::as_bool) == Some(true) {
                "True"
            } else {
                "False"
            };
            line(w, 2, &format!("Ready:\t{ready}"));
            line(
                w,
                2,
                &format!("Restart Count:\t{}", number(st, "/restartCount")),
            );
        }
        let env = array(c, "/env");
        if env.is_empty() {
            line(w, 2, "Environment:\t<none>");
        } else {
            line(w, 2, "Environment:");
            for e in env {
                let value = match e.get("value").and_then(Value::as_str) {
                    Some(v) => v.to_string(),
                    None if e.get("valueFrom").is_some() => "<set from a reference>".to_string(),
                    None => String::new(),
                };
                line(w, 3, &format!("{}:\t{value}", text(e, "/name")));
            }
        }
        let mounts = array(c, "/volumeMounts");
        if mounts.is_empty() {
            line(w, 2, "Mounts:\t<none>");
        } else {
            line(w, 2, "Mounts:");
            for m in mounts {
                let mode = if m.get("readOnly").and_then(Value::as_bool) == Some(true) {
                    "ro"
                } else {
                    "rw"
                };
                line(
                    w,
                    3,
                    &format!(
                        "{} from {} ({mode})",
                        text(m, "/mountPath"),
                        text(m, "/name")
                    ),
                );
            }
        }
    }
}

fn state(w: &mut String, title: &str, state: Option<&Value>) {
    let Some(state) = state.and_then(Value::as_object) else {
        line(w, 2, &format!("{title}:\tWaiting"));
        return;
    };
    if let Some(running) = state.get("running") {
        line(w, 2, &format!("{title}:\tRunning"));
        line(
            w,
            3,
            &format!("Started:\t{}", time(text(running, "/startedAt"))),
        );
    } else if let Some(waiting) = state.get("waiting") {
        line(w, 2, &format!("{title}:\tWaiting"));
        let reason = text(waiting, "/reason");
        if !reason.is_empty() {
            line(w, 3, &format!("Reason:\t{reason}"));
        }
    } else if let Some(done) = state.get("terminated") {
        line(w, 2, &format!("{title}:\tTerminated"));
        line(w, 3, &format!("Reason:\t{}", text(done, "/reason")));
        line(w, 3, &format!("Exit Code:\t{}", number(done, "/exitCode")));
        line(
            w,
            3,
            &format!("Started:\t{}", time(text(done, "/startedAt"))),
        );
        line(
            w,
            3,
            &format!("Finished:\t{}", time(text(done, "/finishedAt"))),
        );
    } else {
        line(w, 2, &format!("{title}:\tWaiting"));
    }
}

fn deployment(w: &mut String, d: &Value) {
    meta(w, d, true);
    created(w, d);
    labels_annotations(w, d);
    line(
        w,
        0,
        &format!(
            "Selector:\t{}",
            printers::selector_cell(d.pointer("/spec/selector"))
        ),
    );
    let desired = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    line(
        w,
        0,
        &format!(
            "Replicas:\t{desired} desired | {} updated | {} total | {} available | {} unavailable",
            number(d, "/status/updatedReplicas"),
            number(d, "/status/replicas"),
            number(d, "/status/availableReplicas"),
            number(d, "/status/unavailableReplicas"),
        ),
    );
    let strategy = text(d, "/spec/strategy/type");
    line(w, 0, &format!("StrategyType:\t{strategy}"));
    line(
        w,
        0,
        &format!("MinReadySeconds:\t{}", number(d, "/spec/minReadySeconds")),
    );
    if strategy == "RollingUpdate" {
        let field = |name: &str| {
            d.pointer(&format!("/spec/strategy/rollingUpdate/{name}"))
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default()
        };
        line(
            w,
            0,
            &format!(
                "RollingUpdateStrategy:\t{} max unavailable, {} max surge",
                field("maxUnavailable"),
                field("maxSurge")
            ),
        );
    }
    line(w, 0, "Pod Template:");
    map_lines(
        w,
        1,
        "Labels",
        d.pointer("/spec/template/metadata/labels"),
        "=",
    );
    let template = d.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    containers(
        w,
        &template,
        "/spec/containers",
        "/status/none",
        "Containers",
        true,
    );
    volumes(w, &template, 1);
    node_selectors_and_tolerations(w, &template, 1);
    let conditions = array(d, "/status/conditions");
    if !conditions.is_empty() {
        line(w, 0, "Conditions:");
        line(w, 1, "Type\tStatus\tReason");
        line(w, 1, "----\t------\t------");
        for c in conditions {
            line(
                w,
                1,
                &format!(
                    "{}\t{}\t{}",
                    text(c, "/type"),
                    text(c, "/status"),
                    text(c, "/reason")
                ),
            );
        }
    }
}

fn service(w: &mut String, s: &Value, endpoints: Option<&Value>) {
    meta(w, s, true);
    labels_annotations(w, s);
    line(
        w,
        0,
        &format!(
            "Selector:\t{}",
            printers::format_labels(s.pointer("/spec/selector"))
        ),
    );
    line(w, 0, &format!("Type:\t{}", text(s, "/spec/type")));
    let policy = text(s, "/spec/ipFamilyPolicy");
    if !policy.is_empty() {
        line(w, 0, &format!("IP Family Policy:\t{policy}"));
    }
    let families: Vec<&str> = array(s, "/spec/ipFamilies")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    line(
        w,
        0,
        &format!("IP Families:\t{}", or_none(&families.join(","))),
    );
    let cluster_ip = text(s, "/spec/clusterIP");
    line(w, 0, &format!("IP:\t{cluster_ip}"));
    let mut ips: Vec<&str> = array(s, "/spec/clusterIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Kubernetes fills clusterIPs from clusterIP; an object written without it reads the same
    if ips.is_empty() && !cluster_ip.is_empty() {
        ips.push(cluster_ip);
    }
    if !ips.is_empty() {
        line(w, 0, &format!("IPs:\t{}", ips.join(",")));
    }
    let external: Vec<&str> = array(s, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !external.is_empty() {
        line(w, 0, &format!("External IPs:\t{}", external.join(",")));
    }
    let external_name = text(s, "/spec/externalName");
    if !external_name.is_empty() {
        line(w, 0, &format!("External Name:\t{external_name}"));
    }
    let no_endpoints = Value::Null;
    for p in array(s, "/spec/ports") {
        let name = text(p, "/name");
        let shown = if name.is_empty() { "<unset>" } else { name };
        let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        line(
            w,
            0,
            &format!("Port:\t{shown}\t{}/{protocol}", number(p, "/port")),
        );
        let target = p
            .get("targetPort")
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_else(|| number(p, "/port").to_string());
        line(w, 0, &format!("TargetPort:\t{target}/{protocol}"));
        let node_port = number(p, "/nodePort");
        if node_port > 0 {
            line(w, 0, &format!("NodePort:\t{shown}\t{node_port}/{protocol}"));
        }
        let cell = printers::format_endpoints(endpoints.unwrap_or(&no_endpoints), Some(name));
        line(w, 0, &format!("Endpoints:\t{cell}"));
    }
    line(
        w,
        0,
        &format!("Session Affinity:\t{}", text(s, "/spec/sessionAffinity")),
    );
    let external_policy = text(s, "/spec/externalTrafficPolicy");
    if !external_policy.is_empty() {
        line(
            w,
            0,
            &format!("External Traffic Policy:\t{external_policy}"),
        );
    }
    let internal_policy = text(s, "/spec/internalTrafficPolicy");
    if !internal_policy.is_empty() {
        line(
            w,
            0,
            &format!("Internal Traffic Policy:\t{internal_policy}"),
        );
    }
}

/// A node; `lease` is its Lease in kube-node-lease, or why it could not be read.
fn node(w: &mut String, n: &Value, lease: Option<&Result<Value, String>>) {
    meta(w, n, false);
    let row = printers::row(
        resource::lookup("nodes").unwrap_or(&resource::RESOURCES[1]),
        n,
        jiff::Timestamp::now(),
    );
    line(
        w,
        0,
        &format!(
            "Roles:\t{}",
            row.get(2).map(String::as_str).unwrap_or("<none>")
        ),
    );
    labels_annotations(w, n);
    created(w, n);
    let taints: Vec<String> = array(n, "/spec/taints")
        .iter()
        .map(|t| {
            let value = text(t, "/value");
            if value.is_empty() {
                format!("{}:{}", text(t, "/key"), text(t, "/effect"))
            } else {
                format!("{}={value}:{}", text(t, "/key"), text(t, "/effect"))
            }
        })
        .collect();
    line(
        w,
        0,
        &format!(
            "Taints:\t{}",
            if taints.is_empty() {
                "<none>".to_string()
            } else {
                taints.join(", ")
            }
        ),
    );
    let unschedulable = n.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true);
    line(w, 0, &format!("Unschedulable:\t{unschedulable}"));
    match lease {
        Some(Ok(lease)) => {
            let stamp = |p: &str| {
                let t = text(lease, p);
                if t.is_empty() {
                    "<unset>".to_string()
                } else {
                    time(t)
                }
            };
            line(w, 0, "Lease:");
            let holder = text(lease, "/spec/holderIdentity");
            line(
                w,
                1,
                &format!(
                    "HolderIdentity:\t{}",
                    if holder.is_empty() { "<unset>" } else { holder }
                ),
            );
            line(
                w,
                1,
                &format!("AcquireTime:\t{}", stamp("/spec/acquireTime")),
            );
            line(w, 1, &format!("RenewTime:\t{}", stamp("/spec/renewTime")));
        }
        Some(Err(message)) => line(w, 0, &format!("Lease:\tFailed to get lease: {message}")),
        None => {}
    }
    let conditions = array(n, "/status/conditions");
    if !conditions.is_empty() {
        line(w, 0, "Conditions:");
        line(
            w,
            1,
            "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage",
        );
        line(
            w,
            1,
            "----\t------\t-----------------\t------------------\t------\t-------",
        );
        for c in conditions {
            line(
                w,
                1,
                &format!(
                    "{} \t{} \t{} \t{} \t{} \t{}",
                    text(c, "/type"),
                    text(c, "/status"),
                    time(text(c, "/lastHeartbeatTime")),
                    time(text(c, "/lastTransitionTime")),
                    text(c, "/reason"),
                    text(c, "/message")
                ),
            );
        }
    }
    line(w, 0, "Addresses:");
    for a in array(n, "/status/addresses") {
        line(
            w,
            1,
            &format!("{}:\t{}", text(a, "/type"), text(a, "/address")),
        );
    }
    for (title, pointer) in [
        ("Capacity", "/status/capacity"),
        ("Allocatable", "/status/allocatable"),
    ] {
        let entries = sorted_entries(n.pointer(pointer));
        if !entries.is_empty() {
            line(w, 0, &format!("{title}:"));
            for (k, v) in entries {
                line(w, 1, &format!("{k}:\t{}", v.as_str().unwrap_or_default()));
            }
        }
    }
    line(w, 0, "System Info:");
    for (label, key) in [
        ("Machine ID", "machineID"),
        ("System UUID", "systemUUID"),
        ("Boot ID", "bootID"),
        ("Kernel Version", "kernelVersion"),
        ("OS Image", "osImage"),
        ("Operating System", "operatingSystem"),
        ("Architecture", "architecture"),
        ("Container Runtime Version", "containerRuntimeVersion"),
        ("Kubelet Version", "kubeletVersion"),
        ("Kube-Proxy Version", "kubeProxyVersion"),
    ] {
        line(
            w,
            1,
            &format!("{label}:\t{}", text(n, &format!("/status/nodeInfo/{key}"))),
        );
    }
    let cidr = text(n, "/spec/podCIDR");
    if !cidr.is_empty() {
        line(w, 0, &format!("PodCIDR:\t{cidr}"));
        let cidrs: Vec<&str> = array(n, "/spec/podCIDRs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        line(w, 0, &format!("PodCIDRs:\t{}", cidrs.join(",")));
    }
    let provider = text(n, "/spec/providerID");
    if !provider.is_empty() {
        line(w, 0, &format!("ProviderID:\t{provider}"));
    }
}

fn events_section(w: &mut String, events: &[Value], now: jiff::Timestamp) {
    if events.is_empty() {
        line(w, 0, "Events:\t<none>");
        return;
    }
    line(w, 0, "Events:");
    line(w, 1, "Type\tReason\tAge\tFrom\tMessage");
    line(w, 1, "----\t------\t----\t----\t-------");
    for e in events {
        let stamp = |p: &str| {
            let s = text(e, p);
            (!s.is_empty()).then_some(s)
        };
        let last = printers::age(stamp("/lastTimestamp").or(stamp("/eventTime")), now);
        let count = number(e, "/count");
        let age = if count > 1 {
            let first = printers::age(stamp("/firstTimestamp").or(stamp("/eventTime")), now);
            format!("{last} (x{count} over {first})")
        } else {
            last
        };
        let component = [text(e, "/source/component"), text(e, "/reportingComponent")]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or("");
        let host = [text(e, "/source/host"), text(e, "/reportingInstance")]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or("");
        let from = if host.is_empty() {
            component.to_string()
        } else {
            format!("{component}, {host}")
        };
        line(
            w,
            1,
            &format!(
                "{}\t{}\t{age}\t{from}\t{}",
                text(e, "/type"),
                text(e, "/reason"),
                text(e, "/message").trim()
            ),
        );
    }
}

/// A resource total: the sum in the smallest unit and the first quantity's spelling, which
/// picks binary (`Mi`) or decimal suffixes for the total, as Kubernetes' `Quantity.Add` keeps
/// the receiver's format.
#[derive(Clone, Copy, Debug, Default)]
struct Total {
    amount: i64,
    binary: bool,
}

impl Total {
    fn add(&mut self, quantity: &str, cpu: bool) {
        let parsed = if cpu {
            api::scheme::parse_quantity_milli(quantity)
        } else {
            api::scheme::parse_quantity_bytes(quantity)
        };
        if self.amount == 0 {
            self.binary = quantity.ends_with('i');
        }
        self.amount += parsed.unwrap_or(0);
    }

    /// Kubernetes' canonical spelling: `100m`, `2`, `128Mi`, `1G`, `0`.
    fn format(self, cpu: bool) -> String {
        if cpu {
            return if self.amount % 1000 == 0 {
                format!("{}", self.amount / 1000)
            } else {
                format!("{}m", self.amount)
            };
        }
        let suffixes: &[(&str, i64)] = if self.binary {
            &[
                ("Pi", 1 << 50),
                ("Ti", 1 << 40),
                ("Gi", 1 << 30),
                ("Mi", 1 << 20),
                ("Ki", 1 << 10),
            ]
        } else {
            &[
                ("P", 1_000_000_000_000_000),
                ("T", 1_000_000_000_000),
                ("G", 1_000_000_000),
                ("M", 1_000_000),
                ("k", 1000),
            ]
        };
        if self.amount != 0 {
            for (suffix, unit) in suffixes {
                if self.amount % unit == 0 {
                    return format!("{}{suffix}", self.amount / unit);
                }
            }
        }
        self.amount.to_string()
    }
}

/// What a pod asks for: the sum over its containers, or an init container's own need when that
/// is larger (init containers run one at a time, before the others).
fn pod_totals(pod: &Value, field: &str, resource: &str) -> Total {
    let cpu = resource == "cpu";
    let mut sum = Total::default();
    for c in array(pod, "/spec/containers") {
        if let Some(q) = c
            .pointer(&format!("/resources/{field}/{resource}"))
            .and_then(Value::as_str)
        {
            sum.add(q, cpu);
        }
    }
    for c in array(pod, "/spec/initContainers") {
        if let Some(q) = c
            .pointer(&format!("/resources/{field}/{resource}"))
            .and_then(Value::as_str)
        {
            let mut one = Total::default();
            one.add(q, cpu);
            if one.amount > sum.amount {
                sum = one;
            }
        }
    }
    sum
}

fn percent(part: i64, whole: i64) -> i64 {
    if whole == 0 {
        0
    } else {
        (part as f64 / whole as f64 * 100.0) as i64
    }
}

/// kubectl's `Non-terminated Pods` and `Allocated resources` sections of a node.
fn node_resources(w: &mut String, node: &Value, pods: &[Value], now: jiff::Timestamp) {
    let allocatable = match node
        .pointer("/status/allocatable")
        .and_then(Value::as_object)
    {
        Some(a) if !a.is_empty() => node.pointer("/status/allocatable"),
        _ => node.pointer("/status/capacity"),
    };
    let whole = |resource: &str| {
        let q = allocatable
            .and_then(|a| a.get(resource))
            .and_then(Value::as_str)
            .unwrap_or("0");
        let mut t = Total::default();
        t.add(q, resource == "cpu");
        t.amount
    };
    line(
        w,
        0,
        &format!("Non-terminated Pods:\t({} in total)", pods.len()),
    );
    line(
        w,
        1,
        "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge",
    );
    line(
        w,
        1,
        "---------\t----\t\t------------\t----------\t---------------\t-------------\t---",
    );
    let mut totals: Vec<(&str, Total, Total)> = ["cpu", "memory", "ephemeral-storage"]
        .iter()
        .map(|r| (*r, Total::default(), Total::default()))
        .collect();
    for pod in pods {
        let mut cells = Vec::new();
        for (resource, requests_total, limits_total) in totals.iter_mut() {
            let cpu = *resource == "cpu";
            let requests = pod_totals(pod, "requests", resource);
            let limits = pod_totals(pod, "limits", resource);
            for (total, one) in [
                (&mut *requests_total, requests),
                (&mut *limits_total, limits),
            ] {
                if total.amount == 0 {
                    total.binary = one.binary;
                }
                total.amount += one.amount;
            }
            if *resource != "ephemeral-storage" {
                let base = whole(resource);
                cells.push(format!(
                    "{} ({}%)",
                    requests.format(cpu),
                    percent(requests.amount, base)
                ));
                cells.push(format!(
                    "{} ({}%)",
                    limits.format(cpu),
                    percent(limits.amount, base)
                ));
            }
        }
        line(
            w,
            1,
            &format!(
                "{}\t{}\t\t{}\t{}",
                text(pod, "/metadata/namespace"),
                text(pod, "/metadata/name"),
                cells.join("\t"),
                printers::age(
                    pod.pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str),
                    now
                )
            ),
        );
    }
    line(w, 0, "Allocated resources:");
    line(
        w,
        1,
        "(Total limits may be over 100 percent, i.e., overcommitted.)",
    );
    line(w, 1, "Resource\tRequests\tLimits");
    line(w, 1, "--------\t--------\t------");
    for (resource, requests, limits) in totals {
        let cpu = resource == "cpu";
        let base = whole(resource);
        line(
            w,
            1,
            &format!(
                "{resource}\t{} ({}%)\t{} ({}%)",
                requests.format(cpu),
                percent(requests.amount, base),
                limits.format(cpu),
                percent(limits.amount, base)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_totals_spelled_like_kubernetes() {
        fn total(quantities: &[&str], cpu: bool) -> String {
            let mut t = Total::default();
            for q in quantities {
                t.add(q, cpu);
            }
            t.format(cpu)
        }
        assert_eq!(total(&["100m", "250m"], true), "350m");
        assert_eq!(total(&["500m", "1500m"], true), "2");
        assert_eq!(total(&[], true), "0");
        assert_eq!(total(&["64Mi", "64Mi"], false), "128Mi");
        assert_eq!(total(&["512Mi", "1Gi"], false), "1536Mi");
        assert_eq!(total(&["500M", "500M"], false), "1G");
        assert_eq!(total(&["1000"], false), "1k");
        assert_eq!(percent(350, 3500), 10);
        assert_eq!(percent(1, 0), 0);
    }

    #[test]
    fn tabwriter_aligns_blocks_like_go() {
        let text = "Name:\tweb\nNamespace:\tdefault\nLabels:\tapp=web\n\ttier=fe\nContainers:\n  web:\n    Image:\tnginx\n    Restart Count:\t0\n";
        assert_eq!(
            tabwrite(text, 2),
            "Name:       web\nNamespace:  default\nLabels:     app=web\n            tier=fe\nContainers:\n  web:\n    Image:          nginx\n    Restart Count:  0\n"
        );
    }

    #[test]
    fn describes_a_service_with_events() {
        let svc = json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.5", "selector": {"app": "web"},
                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
        let event = json!({"type": "Normal", "reason": "Synced", "message": "ok", "count": 1,
            "source": {"component": "endpoints"}, "lastTimestamp": "2025-01-10T11:59:00Z"});
        let now = "2025-01-10T12:00:00Z"
            .parse()
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let info = resource::lookup("svc").unwrap_or(&resource::RESOURCES[0]);
        let related = Related {
            events: vec![event],
            ..Related::default()
        };
        let text = describe(info, &svc, &related, now);
        assert!(
            text.starts_with("Name:              web\nNamespace:         default\n"),
            "{text}"
        );
        assert!(
            text.contains("Port:              <unset>  80/TCP\n"),
            "{text}"
        );
        assert!(text.contains("TargetPort:        8080/TCP\n"), "{text}");
        assert!(text.contains("Events:\n  Type    Reason  Age   From       Message\n  ----    ------  ----  ----       -------\n  Normal  Synced  60s   endpoints  ok\n"), "{text}");
        let none = describe(info, &svc, &Related::default(), now);
        assert!(none.ends_with("Events:            <none>\n"), "{none}");
    }
}
