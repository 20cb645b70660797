//! Validation on create and on update, per kind, with Kubernetes' field paths and wording, and
//! the name-syntax checks (DNS-1123 labels and subdomains, qualified names, label values, config
//! keys) that selectors and the apiserver use too.
//!
//! Hand-written rather than with `regex`: the patterns are a handful of character classes, and
//! spelling them out keeps the crate free of a regex engine on the request path.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::quantity::{parse_quantity_bytes, parse_quantity_milli, QUANTITY_FORMAT};
use super::{defaults, quote, FieldError, FieldErrorKind, Object};
use crate::resource::ResourceInfo;
use crate::selector;
use crate::{apps, coordination, core};

/// A DNS-1123 label (a namespace's name): at most 63 lower-case alphanumerics or '-', starting
/// and ending alphanumeric. The error reads as Kubernetes' (messages joined by "; ").
pub fn validate_dns1123_label(s: &str) -> Result<(), String> {
    joined(dns1123_label(s))
}

/// A DNS-1123 subdomain (most objects' names): labels joined by '.', at most 253 characters.
pub fn validate_dns1123_subdomain(s: &str) -> Result<(), String> {
    joined(dns1123_subdomain(s))
}

/// A DNS-1035 label (a service's name): a DNS-1123 label that starts with a letter.
pub fn validate_dns1035_label(s: &str) -> Result<(), String> {
    joined(dns1035_label(s))
}

/// A label key or annotation key: an optional DNS subdomain prefix and '/', then a name of at
/// most 63 alphanumerics, '-', '_' or '.'.
pub fn validate_qualified_name(s: &str) -> Result<(), String> {
    joined(qualified_name(s))
}

/// A label value: empty, or at most 63 alphanumerics, '-', '_' or '.' starting and ending
/// alphanumeric.
pub fn validate_label_value(s: &str) -> Result<(), String> {
    joined(label_value(s))
}

/// A key of a ConfigMap's or Secret's data.
pub fn validate_config_key(s: &str) -> Result<(), String> {
    joined(config_key(s))
}

/// Collected field errors, in the order the rules found them.
#[derive(Debug, Default)]
pub(super) struct Errors(pub Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: &str, kind: FieldErrorKind, detail: impl Into<String>) {
        self.0.push(FieldError {
            path: path.to_string(),
            kind,
            detail: detail.into(),
        });
    }
    fn required(&mut self, path: &str, detail: &str) {
        self.push(path, FieldErrorKind::Required, detail);
    }
    fn invalid_str(&mut self, path: &str, value: &str, detail: impl Into<String>) {
        self.push(path, FieldErrorKind::Invalid(quote(value)), detail);
    }
    fn invalid_num(&mut self, path: &str, value: i64, detail: impl Into<String>) {
        self.push(path, FieldErrorKind::Invalid(value.to_string()), detail);
    }
    fn invalid_raw(&mut self, path: &str, printed: String, detail: impl Into<String>) {
        self.push(path, FieldErrorKind::Invalid(printed), detail);
    }
    fn not_supported(&mut self, path: &str, value: &str, supported: &[&str]) {
        let supported = supported.iter().map(|s| s.to_string()).collect();
        self.push(
            path,
            FieldErrorKind::NotSupported(quote(value), supported),
            "",
        );
    }
    fn duplicate(&mut self, path: &str, value: &str) {
        self.push(path, FieldErrorKind::Duplicate(quote(value)), "");
    }
    fn forbidden(&mut self, path: &str, detail: impl Into<String>) {
        self.push(path, FieldErrorKind::Forbidden, detail);
    }
    fn not_found(&mut self, path: &str, value: &str) {
        self.push(path, FieldErrorKind::NotFound(quote(value)), "");
    }
    /// One Invalid error per message, as Kubernetes reports name-syntax failures.
    fn each_invalid(&mut self, path: &str, value: &str, messages: Vec<String>) {
        for m in messages {
            self.invalid_str(path, value, m);
        }
    }
    fn non_negative(&mut self, path: &str, value: Option<i64>) {
        if let Some(v) = value.filter(|v| *v < 0) {
            self.invalid_num(path, v, "must be greater than or equal to 0");
        }
    }
}

// ---- name syntax ----

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const CONFIG_KEY_MSG: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const ENV_VAR_MSG: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const ENV_VAR_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const PERCENT_MSG: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";
const PERCENT_FMT: &str = "[0-9]+%";
const PORT_RANGE_MSG: &str = "must be between 1 and 65535, inclusive";

/// Kubernetes' `RegexError`: the message, examples, and the pattern.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut s = format!("{msg} (");
    if !examples.is_empty() {
        s.push_str("e.g. ");
        for (i, e) in examples.iter().enumerate() {
            if i > 0 {
                s.push_str(" or ");
            }
            s.push_str(&format!("'{e}', "));
        }
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

fn max_len(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn joined(msgs: Vec<String>) -> Result<(), String> {
    if msgs.is_empty() {
        Ok(())
    } else {
        Err(msgs.join("; "))
    }
}

fn is_label_syntax(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn dns1123_label(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 63 {
        msgs.push(max_len(63));
    }
    if !is_label_syntax(s) {
        msgs.push(regex_error(
            DNS1123_LABEL_MSG,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    msgs
}

fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 253 {
        msgs.push(max_len(253));
    }
    if !s.split('.').all(is_label_syntax) {
        msgs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    msgs
}

fn dns1035_label(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 63 {
        msgs.push(max_len(63));
    }
    if !is_label_syntax(s) || !s.as_bytes()[0].is_ascii_lowercase() {
        msgs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    msgs
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn qualified_name(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                msgs.push("prefix part must be non-empty".to_string());
            } else {
                msgs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            msgs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return msgs;
        }
    };
    if name.is_empty() {
        msgs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        msgs.push(format!("name part {}", max_len(63)));
    }
    if !is_qualified_name_part(name) {
        msgs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    msgs
}

fn label_value(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 63 {
        msgs.push(max_len(63));
    }
    if !s.is_empty() && !is_qualified_name_part(s) {
        msgs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    msgs
}

/// Kubernetes refuses keys and names that would walk out of a directory when used as a file name.
fn chdir_prefix(s: &str) -> Option<String> {
    match s {
        "." => Some("must not be '.'".to_string()),
        ".." => Some("must not be '..'".to_string()),
        _ if s.starts_with("..") => Some("must not start with '..'".to_string()),
        _ => None,
    }
}

fn config_key(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 253 {
        msgs.push(max_len(253));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        msgs.push(regex_error(
            CONFIG_KEY_MSG,
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    msgs.extend(chdir_prefix(s));
    msgs
}

fn env_var_name(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        msgs.push(regex_error(
            ENV_VAR_MSG,
            ENV_VAR_FMT,
            &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
        ));
    }
    msgs.extend(chdir_prefix(s));
    msgs
}

/// IANA_SVC_NAME, what a named port must be.
fn port_name(s: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if s.len() > 15 {
        msgs.push(max_len(15));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        msgs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        msgs.push("must contain at least one letter (a-z)".to_string());
    }
    if s.contains("--") {
        msgs.push("must not contain consecutive hyphens".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        msgs.push("must not begin or end with a hyphen".to_string());
    }
    msgs
}

fn valid_port(p: i32) -> bool {
    (1..=65535).contains(&p)
}

// ---- metadata ----

#[derive(Clone, Copy)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
}

fn name_messages(rule: NameRule, s: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => dns1123_subdomain(s),
        NameRule::Label => dns1123_label(s),
        NameRule::Dns1035 => dns1035_label(s),
    }
}

fn validate_meta(meta: &ObjectMeta, rule: NameRule, namespaced: bool, errs: &mut Errors) {
    match meta.name.as_deref().unwrap_or("") {
        "" => errs.required("metadata.name", "name or generateName is required"),
        name => errs.each_invalid("metadata.name", name, name_messages(rule, name)),
    }
    let namespace = meta.namespace.as_deref().unwrap_or("");
    if namespaced {
        if namespace.is_empty() {
            errs.required("metadata.namespace", "");
        } else {
            errs.each_invalid("metadata.namespace", namespace, dns1123_label(namespace));
        }
    } else if !namespace.is_empty() {
        errs.forbidden("metadata.namespace", "not allowed on this type");
    }
    errs.non_negative("metadata.generation", meta.generation);
    validate_labels(meta.labels.as_ref(), "metadata.labels", errs);
    validate_annotations(meta.annotations.as_ref(), "metadata.annotations", errs);
    for (i, r) in meta.owner_references.iter().flatten().enumerate() {
        let p = format!("metadata.ownerReferences[{i}]");
        let version = r.api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.invalid_str(
                &format!("{p}.apiVersion"),
                &r.api_version,
                "version must not be empty",
            );
        }
        if r.kind.is_empty() {
            errs.invalid_str(&format!("{p}.kind"), &r.kind, "kind must not be empty");
        }
        if r.name.is_empty() {
            errs.invalid_str(&format!("{p}.name"), &r.name, "name must not be empty");
        }
        if r.uid.is_empty() {
            errs.invalid_str(&format!("{p}.uid"), &r.uid, "uid must not be empty");
        }
    }
}

fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &str, errs: &mut Errors) {
    for (k, v) in labels.into_iter().flatten() {
        errs.each_invalid(path, k, qualified_name(k));
        errs.each_invalid(path, v, label_value(v));
    }
}

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    path: &str,
    errs: &mut Errors,
) {
    let mut total = 0;
    for (k, v) in annotations.into_iter().flatten() {
        errs.each_invalid(path, k, qualified_name(&k.to_ascii_lowercase()));
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(path, FieldErrorKind::TooLong(TOTAL_ANNOTATION_SIZE), "");
    }
}

pub(super) fn validate_meta_update(old: &ObjectMeta, new: &ObjectMeta, errs: &mut Errors) {
    let immutable = |errs: &mut Errors, path: &str, old: Option<&str>, new: Option<&str>| {
        if old.unwrap_or("") != new.unwrap_or("") {
            errs.invalid_str(path, new.unwrap_or(""), "field is immutable");
        }
    };
    immutable(
        errs,
        "metadata.name",
        old.name.as_deref(),
        new.name.as_deref(),
    );
    immutable(
        errs,
        "metadata.namespace",
        old.namespace.as_deref(),
        new.namespace.as_deref(),
    );
    immutable(errs, "metadata.uid", old.uid.as_deref(), new.uid.as_deref());
    let old_ts = old.creation_timestamp.as_ref().map(|t| t.0.to_string());
    let new_ts = new.creation_timestamp.as_ref().map(|t| t.0.to_string());
    immutable(
        errs,
        "metadata.creationTimestamp",
        old_ts.as_deref(),
        new_ts.as_deref(),
    );
}

// ---- pods ----

#[derive(Clone, Copy)]
struct PodRules {
    /// pod templates of Deployments and ReplicaSets allow only restartPolicy Always
    template: bool,
}

fn validate_pod_spec(spec: &core::PodSpec, path: &str, rules: PodRules, errs: &mut Errors) {
    let volumes = validate_volumes(
        spec.volumes.as_deref().unwrap_or(&[]),
        &format!("{path}.volumes"),
        errs,
    );
    let cpath = format!("{path}.containers");
    if spec.containers.is_empty() {
        errs.required(&cpath, "");
    }
    let mut names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    let init = spec.init_containers.as_deref().unwrap_or(&[]);
    for (i, c) in init.iter().enumerate() {
        let p = format!("{path}.initContainers[{i}]");
        validate_container(c, &p, &volumes, &mut names, &mut port_names, errs);
        validate_init_container_lifecycle(c, &p, errs);
    }
    for (i, c) in spec.containers.iter().enumerate() {
        let p = format!("{cpath}[{i}]");
        validate_container(c, &p, &volumes, &mut names, &mut port_names, errs);
        if c.restart_policy.is_some() {
            errs.forbidden(
                &format!("{p}.restartPolicy"),
                "may not be set for non-init containers",
            );
        }
    }

    let rp = format!("{path}.restartPolicy");
    match spec.restart_policy.as_deref().unwrap_or("") {
        "" => errs.required(&rp, ""),
        "Always" | "OnFailure" | "Never" => {}
        other => errs.not_supported(&rp, other, &["Always", "OnFailure", "Never"]),
    }
    if rules.template {
        let policy = spec.restart_policy.as_deref().unwrap_or("");
        if policy != "Always" {
            errs.not_supported(&rp, policy, &["Always"]);
        }
        if spec.active_deadline_seconds.is_some() {
            errs.forbidden(
                &format!("{path}.activeDeadlineSeconds"),
                "activeDeadlineSeconds in ReplicaSet is not Supported",
            );
        }
    }
    let dp = format!("{path}.dnsPolicy");
    match spec.dns_policy.as_deref().unwrap_or("") {
        "" => errs.required(&dp, ""),
        "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None" => {}
        other => errs.not_supported(
            &dp,
            other,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        ),
    }
    errs.non_negative(
        &format!("{path}.terminationGracePeriodSeconds"),
        spec.termination_grace_period_seconds,
    );
    if let Some(ads) = spec.active_deadline_seconds {
        if !(1..=i64::from(i32::MAX)).contains(&ads) {
            errs.invalid_num(
                &format!("{path}.activeDeadlineSeconds"),
                ads,
                "must be between 1 and 2147483647, inclusive",
            );
        }
    }
    if let Some(sc) = &spec.security_context {
        let sp = format!("{path}.securityContext");
        validate_id(&format!("{sp}.runAsUser"), sc.run_as_user, errs);
        validate_id(&format!("{sp}.runAsGroup"), sc.run_as_group, errs);
    }
    for (k, v) in spec.node_selector.iter().flatten() {
        let p = format!("{path}.nodeSelector");
        errs.each_invalid(&p, k, qualified_name(k));
        errs.each_invalid(&p, v, label_value(v));
    }
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        errs.each_invalid(&format!("{path}.nodeName"), node, dns1123_subdomain(node));
    }
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        validate_toleration(t, &format!("{path}.tolerations[{i}]"), errs);
    }
}

/// An init container's `restartPolicy` may only be `Always` (a sidecar, which runs beside the
/// pod's containers); probes are for sidecars only, since a plain init container runs to its end.
fn validate_init_container_lifecycle(c: &core::Container, p: &str, errs: &mut Errors) {
    match c.restart_policy.as_deref() {
        None | Some("Always") => {}
        Some(other) => errs.not_supported(&format!("{p}.restartPolicy"), other, &["Always"]),
    }
    if c.restart_policy.is_none() {
        let probes = [
            ("livenessProbe", c.liveness_probe.is_some()),
            ("readinessProbe", c.readiness_probe.is_some()),
            ("startupProbe", c.startup_probe.is_some()),
        ];
        for (field, set) in probes {
            if set {
                errs.forbidden(
                    &format!("{p}.{field}"),
                    "may not be set for init containers without restartPolicy=Always",
                );
            }
        }
    }
}

fn validate_id(path: &str, id: Option<i64>, errs: &mut Errors) {
    if let Some(id) = id {
        if !(0..=i64::from(i32::MAX)).contains(&id) {
            errs.invalid_num(path, id, "must be between 0 and 2147483647, inclusive");
        }
    }
}

fn validate_toleration(t: &core::Toleration, p: &str, errs: &mut Errors) {
    let key = t.key.as_deref().unwrap_or("");
    let operator = t.operator.as_deref().unwrap_or("");
    let effect = t.effect.as_deref().unwrap_or("");
    let value = t.value.as_deref().unwrap_or("");
    if !key.is_empty() {
        errs.each_invalid(&format!("{p}.key"), key, qualified_name(key));
    }
    if key.is_empty() && operator != "Exists" {
        errs.invalid_str(
            &format!("{p}.operator"),
            operator,
            "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
        );
    }
    if t.toleration_seconds.is_some() && effect != "NoExecute" {
        errs.invalid_str(
            &format!("{p}.effect"),
            effect,
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        );
    }
    match operator {
        "" | "Equal" => errs.each_invalid(&format!("{p}.operator"), value, label_value(value)),
        "Exists" => {
            if !value.is_empty() {
                errs.invalid_str(
                    &format!("{p}.operator"),
                    value,
                    "value must be empty when `operator` is 'Exists'",
                );
            }
        }
        other => errs.not_supported(&format!("{p}.operator"), other, &["Equal", "Exists"]),
    }
    if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        errs.not_supported(
            &format!("{p}.effect"),
            effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        );
    }
}

/// The JSON keys of the sources a volume sets (everything but its name).
pub(super) fn volume_sources(v: &core::Volume) -> Vec<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .filter(|(k, v)| k != "name" && !v.is_null())
            .map(|(k, _)| k)
            .collect(),
        _ => Vec::new(),
    }
}

fn validate_volumes(volumes: &[core::Volume], path: &str, errs: &mut Errors) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let sources = volume_sources(v);
        match sources.as_slice() {
            [] => errs.required(&p, "must specify a volume type"),
            [_] => {}
            [_, extra, ..] => errs.forbidden(
                &format!("{p}.{extra}"),
                "may not specify more than 1 volume type",
            ),
        }
        let np = format!("{p}.name");
        if v.name.is_empty() {
            errs.required(&np, "");
        } else {
            errs.each_invalid(&np, &v.name, dns1123_label(&v.name));
        }
        if !names.insert(v.name.clone()) {
            errs.duplicate(&np, &v.name);
        }
        if let Some(cm) = &v.config_map {
            if cm.name.is_empty() {
                errs.required(&format!("{p}.configMap.name"), "");
            }
        }
        if let Some(s) = &v.secret {
            if s.secret_name.as_deref().unwrap_or("").is_empty() {
                errs.required(&format!("{p}.secret.secretName"), "");
            }
        }
        if let Some(h) = &v.host_path {
            if h.path.is_empty() {
                errs.required(&format!("{p}.hostPath.path"), "");
            }
        }
    }
    names
}

fn validate_container(
    c: &core::Container,
    p: &str,
    volumes: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
    port_names: &mut BTreeSet<String>,
    errs: &mut Errors,
) {
    let np = format!("{p}.name");
    if c.name.is_empty() {
        errs.required(&np, "");
    } else {
        errs.each_invalid(&np, &c.name, dns1123_label(&c.name));
        if !names.insert(c.name.clone()) {
            errs.duplicate(&np, &c.name);
        }
    }
    match c.image.as_deref().unwrap_or("") {
        "" => errs.required(&format!("{p}.image"), ""),
        image if image.trim() != image => errs.invalid_str(
            &format!("{p}.image"),
            image,
            "must not have leading or trailing whitespace",
        ),
        _ => {}
    }
    if let Some(policy) = c.image_pull_policy.as_deref() {
        if !matches!(policy, "Always" | "IfNotPresent" | "Never") {
            errs.not_supported(
                &format!("{p}.imagePullPolicy"),
                policy,
                &["Always", "IfNotPresent", "Never"],
            );
        }
    }
    if let Some(policy) = c.termination_message_policy.as_deref() {
        if !matches!(policy, "File" | "FallbackToLogsOnError") {
            errs.not_supported(
                &format!("{p}.terminationMessagePolicy"),
                policy,
                &["FallbackToLogsOnError", "File"],
            );
        }
    }
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let pp = format!("{p}.ports[{i}]");
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = port_name(name);
            if !msgs.is_empty() {
                errs.each_invalid(&format!("{pp}.name"), name, msgs);
            } else if !port_names.insert(name.to_string()) {
                errs.duplicate(&format!("{pp}.name"), name);
            }
        }
        if port.container_port == 0 {
            errs.required(&format!("{pp}.containerPort"), "");
        } else if !valid_port(port.container_port) {
            errs.invalid_num(
                &format!("{pp}.containerPort"),
                port.container_port.into(),
                PORT_RANGE_MSG,
            );
        }
        if let Some(hp) = port.host_port.filter(|hp| *hp != 0 && !valid_port(*hp)) {
            errs.invalid_num(&format!("{pp}.hostPort"), hp.into(), PORT_RANGE_MSG);
        }
        validate_protocol(port.protocol.as_deref(), &format!("{pp}.protocol"), errs);
    }
    for (i, env) in c.env.iter().flatten().enumerate() {
        validate_env(env, &format!("{p}.env[{i}]"), errs);
    }
    if let Some(resources) = &c.resources {
        validate_resources(resources, &format!("{p}.resources"), errs);
    }
    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = format!("{p}.volumeMounts[{i}]");
        if m.name.is_empty() {
            errs.required(&format!("{mp}.name"), "");
        } else if !volumes.contains(&m.name) {
            errs.not_found(&format!("{mp}.name"), &m.name);
        }
        if m.mount_path.is_empty() {
            errs.required(&format!("{mp}.mountPath"), "");
        } else if !m.mount_path.starts_with('/') {
            errs.invalid_str(
                &format!("{mp}.mountPath"),
                &m.mount_path,
                "must be an absolute path",
            );
        } else if !mount_paths.insert(m.mount_path.clone()) {
            errs.invalid_str(&format!("{mp}.mountPath"), &m.mount_path, "must be unique");
        }
        if let Some(sub) = m.sub_path.as_deref() {
            if sub.starts_with('/') || sub.split('/').any(|s| s == "..") {
                errs.invalid_str(
                    &format!("{mp}.subPath"),
                    sub,
                    "must be a relative path without '..'",
                );
            }
        }
    }
    for (name, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        if let Some(probe) = probe {
            validate_probe(
                probe,
                &format!("{p}.{name}"),
                name != "readinessProbe",
                errs,
            );
        }
    }
    if let Some(sc) = &c.security_context {
        validate_id(
            &format!("{p}.securityContext.runAsUser"),
            sc.run_as_user,
            errs,
        );
        validate_id(
            &format!("{p}.securityContext.runAsGroup"),
            sc.run_as_group,
            errs,
        );
    }
}

fn validate_protocol(protocol: Option<&str>, path: &str, errs: &mut Errors) {
    match protocol.unwrap_or("") {
        "" => errs.required(path, ""),
        "TCP" | "UDP" | "SCTP" => {}
        other => errs.not_supported(path, other, &["SCTP", "TCP", "UDP"]),
    }
}

fn validate_env(env: &core::EnvVar, p: &str, errs: &mut Errors) {
    if env.name.is_empty() {
        errs.required(&format!("{p}.name"), "");
    } else {
        errs.each_invalid(&format!("{p}.name"), &env.name, env_var_name(&env.name));
    }
    let Some(from) = &env.value_from else { return };
    let vp = format!("{p}.valueFrom");
    let mut sources = 0;
    if let Some(f) = &from.field_ref {
        sources += 1;
        let fp = format!("{vp}.fieldRef");
        if f.api_version.as_deref().unwrap_or("").is_empty() {
            errs.required(&format!("{fp}.apiVersion"), "");
        }
        if f.field_path.is_empty() {
            errs.required(&format!("{fp}.fieldPath"), "");
        } else if !supported_field_path(&f.field_path) {
            errs.not_supported(
                &format!("{fp}.fieldPath"),
                &f.field_path,
                SUPPORTED_FIELD_PATHS,
            );
        }
    }
    if let Some(r) = &from.resource_field_ref {
        sources += 1;
        if r.resource.is_empty() {
            errs.required(&format!("{vp}.resourceFieldRef.resource"), "");
        }
    }
    if let Some(r) = &from.config_map_key_ref {
        sources += 1;
        validate_key_ref(&r.name, &r.key, &format!("{vp}.configMapKeyRef"), errs);
    }
    if let Some(r) = &from.secret_key_ref {
        sources += 1;
        validate_key_ref(&r.name, &r.key, &format!("{vp}.secretKeyRef"), errs);
    }
    if sources == 0 {
        errs.invalid_str(&vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`");
    } else if !env.value.as_deref().unwrap_or("").is_empty() {
        errs.invalid_str(&vp, "", "may not be specified when `value` is not empty");
    } else if sources > 1 {
        errs.invalid_str(
            &vp,
            "",
            "may not have more than one field specified at a time",
        );
    }
}

const SUPPORTED_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn supported_field_path(path: &str) -> bool {
    SUPPORTED_FIELD_PATHS.contains(&path)
        || path.starts_with("metadata.labels['") && path.ends_with("']")
        || path.starts_with("metadata.annotations['") && path.ends_with("']")
}

fn validate_key_ref(name: &str, key: &str, p: &str, errs: &mut Errors) {
    if name.is_empty() {
        errs.required(&format!("{p}.name"), "");
    } else {
        errs.each_invalid(&format!("{p}.name"), name, dns1123_subdomain(name));
    }
    if key.is_empty() {
        errs.required(&format!("{p}.key"), "");
    } else {
        errs.each_invalid(&format!("{p}.key"), key, config_key(key));
    }
}

fn validate_resources(r: &core::ResourceRequirements, p: &str, errs: &mut Errors) {
    let limits = r.limits.as_ref();
    for (which, map) in [("limits", limits), ("requests", r.requests.as_ref())] {
        for (name, q) in map.into_iter().flatten() {
            let qp = format!("{p}.{which}[{name}]");
            let standard = matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
                || name.starts_with("hugepages-")
                || name.contains('/') && qualified_name(name).is_empty();
            if !standard {
                errs.invalid_str(&qp, name, "must be a standard resource for containers");
            }
            let Some(value) = quantity_value(&q.0) else {
                errs.invalid_str(&qp, &q.0, QUANTITY_FORMAT);
                continue;
            };
            if value < 0 {
                errs.invalid_str(&qp, &q.0, "must be greater than or equal to 0");
            }
            if which == "requests" {
                if let Some(limit) = limits.and_then(|l| l.get(name)) {
                    if quantity_value(&limit.0).is_some_and(|l| value > l) {
                        errs.invalid_str(
                            &qp,
                            &q.0,
                            format!("must be less than or equal to {name} limit of {}", limit.0),
                        );
                    }
                }
            }
        }
    }
}

/// A quantity as thousandths where that fits in 64 bits, else as units; comparing two values
/// of the same resource this way stays exact for anything a machine can have.
fn quantity_value(s: &str) -> Option<i128> {
    match parse_quantity_milli(s) {
        Ok(m) => Some(i128::from(m)),
        Err(_) => parse_quantity_bytes(s).ok().map(|b| i128::from(b) * 1000),
    }
}

fn validate_probe(probe: &core::Probe, p: &str, success_must_be_one: bool, errs: &mut Errors) {
    let handlers: Vec<&str> = [
        ("exec", probe.exec.is_some()),
        ("httpGet", probe.http_get.is_some()),
        ("tcpSocket", probe.tcp_socket.is_some()),
        ("grpc", probe.grpc.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| name)
    .collect();
    match handlers.as_slice() {
        [] => errs.required(p, "must specify a handler type"),
        [_] => {}
        [_, extra, ..] => errs.forbidden(
            &format!("{p}.{extra}"),
            "may not specify more than 1 handler type",
        ),
    }
    if let Some(h) = &probe.http_get {
        validate_port_num_or_name(&h.port, &format!("{p}.httpGet.port"), errs);
        if let Some(scheme) = h.scheme.as_deref() {
            if !matches!(scheme, "HTTP" | "HTTPS") {
                errs.not_supported(&format!("{p}.httpGet.scheme"), scheme, &["HTTP", "HTTPS"]);
            }
        }
    }
    if let Some(t) = &probe.tcp_socket {
        validate_port_num_or_name(&t.port, &format!("{p}.tcpSocket.port"), errs);
    }
    if let Some(g) = &probe.grpc {
        if !valid_port(g.port) {
            errs.invalid_num(&format!("{p}.grpc.port"), g.port.into(), PORT_RANGE_MSG);
        }
    }
    for (name, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        errs.non_negative(&format!("{p}.{name}"), value.map(i64::from));
    }
    if success_must_be_one {
        if let Some(s) = probe.success_threshold.filter(|s| *s != 1) {
            errs.invalid_num(&format!("{p}.successThreshold"), s.into(), "must be 1");
        }
    }
}

fn validate_port_num_or_name(port: &IntOrString, path: &str, errs: &mut Errors) {
    match port {
        IntOrString::Int(n) => {
            if !valid_port(*n) {
                errs.invalid_num(path, (*n).into(), PORT_RANGE_MSG);
            }
        }
        IntOrString::String(s) => errs.each_invalid(path, s, port_name(s)),
    }
}

// ---- workloads ----

/// Kubernetes prints a label map in messages the way Go's `%#v` does.
fn go_map(m: Option<&BTreeMap<String, String>>) -> String {
    let entries: Vec<String> = m
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
        .collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

fn print_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn validate_label_selector(sel: &LabelSelector, p: &str, errs: &mut Errors) {
    validate_labels(sel.match_labels.as_ref(), &format!("{p}.matchLabels"), errs);
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let ep = format!("{p}.matchExpressions[{i}]");
        let values = e.values.as_deref().unwrap_or(&[]);
        match e.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.required(
                        &format!("{ep}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.forbidden(
                        &format!("{ep}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
            other => errs.invalid_str(
                &format!("{ep}.operator"),
                other,
                "not a valid selector operator",
            ),
        }
        errs.each_invalid(&format!("{ep}.key"), &e.key, qualified_name(&e.key));
        for (j, v) in values.iter().enumerate() {
            errs.each_invalid(&format!("{ep}.values[{j}]"), v, label_value(v));
        }
    }
}

/// The selector and template rules Deployments and ReplicaSets share.
fn validate_workload(
    selector: &LabelSelector,
    template: Option<&core::PodTemplateSpec>,
    replicas: Option<i32>,
    min_ready: Option<i32>,
    errs: &mut Errors,
) {
    errs.non_negative("spec.replicas", replicas.map(i64::from));
    errs.non_negative("spec.minReadySeconds", min_ready.map(i64::from));
    validate_label_selector(selector, "spec.selector", errs);
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    if empty {
        errs.invalid_raw(
            "spec.selector",
            print_json(selector),
            "empty selector is invalid for deployment",
        );
    }
    let Some(template) = template else {
        errs.required("spec.template", "");
        return;
    };
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    if !empty {
        // a selector that does not parse has been reported above
        if let Ok(sel) = selector::LabelSelector::from_meta(selector) {
            if !sel.matches(labels.unwrap_or(&BTreeMap::new())) {
                errs.invalid_raw(
                    "spec.template.metadata.labels",
                    go_map(labels),
                    "`selector` does not match template `labels`",
                );
            }
        }
    }
    if let Some(meta) = &template.metadata {
        validate_labels(meta.labels.as_ref(), "spec.template.metadata.labels", errs);
        validate_annotations(
            meta.annotations.as_ref(),
            "spec.template.metadata.annotations",
            errs,
        );
    }
    match &template.spec {
        Some(spec) => validate_pod_spec(
            spec,
            "spec.template.spec",
            PodRules { template: true },
            errs,
        ),
        None => errs.required("spec.template.spec.containers", ""),
    }
}

fn int_or_percent(v: &IntOrString, p: &str, errs: &mut Errors) -> Option<i64> {
    match v {
        IntOrString::Int(n) => {
            errs.non_negative(p, Some((*n).into()));
            Some((*n).into())
        }
        IntOrString::String(s) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            match digits.and_then(|d| d.parse::<i64>().ok()) {
                Some(n) => Some(n),
                None => {
                    errs.invalid_str(p, s, regex_error(PERCENT_MSG, PERCENT_FMT, &["1%", "93%"]));
                    None
                }
            }
        }
    }
}

fn print_int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => quote(s),
    }
}

fn validate_deployment(d: &apps::Deployment, errs: &mut Errors) {
    let Some(spec) = &d.spec else {
        errs.required("spec.selector", "");
        errs.required("spec.template", "");
        return;
    };
    validate_workload(
        &spec.selector,
        Some(&spec.template),
        spec.replicas,
        spec.min_ready_seconds,
        errs,
    );
    if let Some(strategy) = &spec.strategy {
        match strategy.type_.as_deref().unwrap_or("") {
            "Recreate" => {
                if strategy.rolling_update.is_some() {
                    errs.forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    );
                }
            }
            "RollingUpdate" => {
                if let Some(ru) = &strategy.rolling_update {
                    let p = "spec.strategy.rollingUpdate";
                    let unavailable = ru
                        .max_unavailable
                        .as_ref()
                        .and_then(|v| int_or_percent(v, &format!("{p}.maxUnavailable"), errs));
                    let surge = ru
                        .max_surge
                        .as_ref()
                        .and_then(|v| int_or_percent(v, &format!("{p}.maxSurge"), errs));
                    if unavailable == Some(0) && surge == Some(0) {
                        let printed = ru
                            .max_unavailable
                            .as_ref()
                            .map(print_int_or_string)
                            .unwrap_or_default();
                        errs.invalid_raw(
                            &format!("{p}.maxUnavailable"),
                            printed,
                            "may not be 0 when `maxSurge` is 0",
                        );
                    }
                    if let Some(IntOrString::String(s)) = &ru.max_unavailable {
                        if unavailable.is_some_and(|u| u > 100) {
                            errs.invalid_str(
                                &format!("{p}.maxUnavailable"),
                                s,
                                "must not be greater than 100%",
                            );
                        }
                    }
                }
            }
            other => {
                errs.not_supported("spec.strategy.type", other, &["Recreate", "RollingUpdate"])
            }
        }
    }
    errs.non_negative(
        "spec.revisionHistoryLimit",
        spec.revision_history_limit.map(i64::from),
    );
    if let Some(pds) = spec.progress_deadline_seconds {
        if pds <= 0 {
            errs.invalid_num(
                "spec.progressDeadlineSeconds",
                pds.into(),
                "must be greater than 0",
            );
        } else if pds <= spec.min_ready_seconds.unwrap_or(0) {
            errs.invalid_num(
                "spec.progressDeadlineSeconds",
                pds.into(),
                "must be greater than minReadySeconds",
            );
        }
    }
}

fn validate_replica_set(rs: &apps::ReplicaSet, errs: &mut Errors) {
    let Some(spec) = &rs.spec else {
        errs.required("spec.selector", "");
        errs.required("spec.template", "");
        return;
    };
    validate_workload(
        &spec.selector,
        spec.template.as_ref(),
        spec.replicas,
        spec.min_ready_seconds,
        errs,
    );
}

// ---- services and the rest ----

fn validate_service(s: &core::Service, errs: &mut Errors) {
    let Some(spec) = &s.spec else {
        errs.required("spec.ports", "");
        return;
    };
    let ty = spec.type_.as_deref().unwrap_or("");
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.required("spec.ports", "");
    }
    match ty {
        "" => errs.required("spec.type", ""),
        "ClusterIP" | "NodePort" | "LoadBalancer" => {}
        "ExternalName" => match spec.external_name.as_deref().unwrap_or("") {
            "" => errs.required("spec.externalName", ""),
            name => errs.each_invalid(
                "spec.externalName",
                name,
                dns1123_subdomain(name.trim_end_matches('.')),
            ),
        },
        other => errs.not_supported(
            "spec.type",
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ),
    }
    let mut names = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        match port.name.as_deref().unwrap_or("") {
            "" if ports.len() > 1 => errs.required(&format!("{p}.name"), ""),
            "" => {}
            name => {
                errs.each_invalid(&format!("{p}.name"), name, dns1123_label(name));
                if !names.insert(name.to_string()) {
                    errs.duplicate(&format!("{p}.name"), name);
                }
            }
        }
        if !valid_port(port.port) {
            errs.invalid_num(&format!("{p}.port"), port.port.into(), PORT_RANGE_MSG);
        }
        validate_protocol(port.protocol.as_deref(), &format!("{p}.protocol"), errs);
        if let Some(tp) = &port.target_port {
            validate_port_num_or_name(tp, &format!("{p}.targetPort"), errs);
        }
        if let Some(np) = port.node_port.filter(|np| *np != 0) {
            let npp = format!("{p}.nodePort");
            if ty != "NodePort" && ty != "LoadBalancer" {
                errs.forbidden(&npp, format!("may not be used when `type` is '{ty}'"));
            } else if !(30000..=32767).contains(&np) {
                errs.invalid_num(
                    &npp,
                    np.into(),
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                );
            } else if !node_ports.insert((np, port.protocol.clone())) {
                errs.push(&npp, FieldErrorKind::Duplicate(np.to_string()), "");
            }
        }
    }
    if let Some(selector) = &spec.selector {
        validate_labels(Some(selector), "spec.selector", errs);
    }
    match spec.session_affinity.as_deref().unwrap_or("") {
        "" => errs.required("spec.sessionAffinity", ""),
        "None" | "ClientIP" => {}
        other => errs.not_supported("spec.sessionAffinity", other, &["ClientIP", "None"]),
    }
    if let Some(ip) = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
    {
        if ip.parse::<std::net::IpAddr>().is_err() {
            errs.invalid_str(
                "spec.clusterIP",
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            );
        }
    }
}

fn validate_data_keys<'a>(keys: impl Iterator<Item = &'a String>, field: &str, errs: &mut Errors) {
    for k in keys {
        errs.each_invalid(&format!("{field}[{k}]"), k, config_key(k));
    }
}

/// Kubernetes' limit on the data of one ConfigMap or Secret.
const MAX_DATA_SIZE: usize = 1024 * 1024;

fn validate_config_map(cm: &core::ConfigMap, errs: &mut Errors) {
    let data = cm.data.as_ref();
    let binary = cm.binary_data.as_ref();
    validate_data_keys(data.into_iter().flat_map(|d| d.keys()), "data", errs);
    validate_data_keys(
        binary.into_iter().flat_map(|d| d.keys()),
        "binaryData",
        errs,
    );
    for k in data.into_iter().flat_map(|d| d.keys()) {
        if binary.is_some_and(|b| b.contains_key(k)) {
            errs.invalid_str(
                &format!("data[{k}]"),
                k,
                "duplicate of key present in binaryData",
            );
        }
    }
    let total: usize = data
        .into_iter()
        .flat_map(|d| d.values())
        .map(String::len)
        .sum::<usize>()
        + binary
            .into_iter()
            .flat_map(|d| d.values())
            .map(|v| v.0.len())
            .sum::<usize>();
    if total > MAX_DATA_SIZE {
        errs.push("data", FieldErrorKind::TooLong(MAX_DATA_SIZE), "");
    }
}

fn validate_secret(s: &core::Secret, errs: &mut Errors) {
    let data = s.data.as_ref();
    validate_data_keys(data.into_iter().flat_map(|d| d.keys()), "data", errs);
    let total: usize = data
        .into_iter()
        .flat_map(|d| d.values())
        .map(|v| v.0.len())
        .sum();
    if total > MAX_DATA_SIZE {
        errs.push("data", FieldErrorKind::TooLong(MAX_DATA_SIZE), "");
    }
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let required: &[&str] = match s.type_.as_deref().unwrap_or("") {
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        _ => &[],
    };
    for k in required {
        if !has(k) {
            errs.required(&format!("data[{k}]"), "");
        }
    }
}

fn validate_endpoints(e: &core::Endpoints, errs: &mut Errors) {
    for (i, subset) in e.subsets.iter().flatten().enumerate() {
        let p = format!("subsets[{i}]");
        for (field, addresses) in [
            ("addresses", &subset.addresses),
            ("notReadyAddresses", &subset.not_ready_addresses),
        ] {
            for (j, a) in addresses.iter().flatten().enumerate() {
                let ap = format!("{p}.{field}[{j}].ip");
                if a.ip.is_empty() {
                    errs.required(&ap, "");
                } else if a.ip.parse::<std::net::IpAddr>().is_err() {
                    errs.invalid_str(
                        &ap,
                        &a.ip,
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    );
                }
            }
        }
        let ports = subset.ports.as_deref().unwrap_or(&[]);
        for (j, port) in ports.iter().enumerate() {
            let pp = format!("{p}.ports[{j}]");
            match port.name.as_deref().unwrap_or("") {
                "" if ports.len() > 1 => errs.required(&format!("{pp}.name"), ""),
                "" => {}
                name => errs.each_invalid(&format!("{pp}.name"), name, dns1123_label(name)),
            }
            if !valid_port(port.port) {
                errs.invalid_num(&format!("{pp}.port"), port.port.into(), PORT_RANGE_MSG);
            }
            validate_protocol(
                Some(port.protocol.as_deref().unwrap_or("TCP")),
                &format!("{pp}.protocol"),
                errs,
            );
        }
    }
}

fn validate_event(e: &core::Event, errs: &mut Errors) {
    let event_ns = e.metadata.namespace.as_deref().unwrap_or("");
    let involved_ns = e.involved_object.namespace.as_deref().unwrap_or("");
    // events about cluster-scoped objects live in "default", as Kubernetes allows for old clients
    let mismatch = if involved_ns.is_empty() {
        !event_ns.is_empty() && event_ns != "default"
    } else {
        event_ns != involved_ns
    };
    if mismatch {
        errs.invalid_str(
            "involvedObject.namespace",
            involved_ns,
            "does not match event.namespace",
        );
    }
    if let Some(t) = e.type_.as_deref().filter(|t| !t.is_empty()) {
        if !matches!(t, "Normal" | "Warning") {
            errs.not_supported("type", t, &["Normal", "Warning"]);
        }
    }
}

fn validate_lease(l: &coordination::Lease, errs: &mut Errors) {
    let Some(spec) = &l.spec else { return };
    if let Some(d) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
        errs.invalid_num(
            "spec.leaseDurationSeconds",
            d.into(),
            "must be greater than 0",
        );
    }
    errs.non_negative(
        "spec.leaseTransitions",
        spec.lease_transitions.map(i64::from),
    );
}

fn validate_node(n: &core::Node, errs: &mut Errors) {
    for (i, t) in n
        .spec
        .iter()
        .flat_map(|s| s.taints.iter().flatten())
        .enumerate()
    {
        let p = format!("spec.taints[{i}]");
        if t.key.is_empty() {
            errs.required(&format!("{p}.key"), "");
        } else {
            errs.each_invalid(&format!("{p}.key"), &t.key, qualified_name(&t.key));
        }
        let value = t.value.as_deref().unwrap_or("");
        errs.each_invalid(&format!("{p}.value"), value, label_value(value));
        match t.effect.as_str() {
            "" => errs.required(&format!("{p}.effect"), ""),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            other => errs.not_supported(
                &format!("{p}.effect"),
                other,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ),
        }
    }
}

// ---- updates ----

const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

fn validate_pod_update(old: &core::Pod, new: &core::Pod, errs: &mut Errors) {
    let (Some(old_spec), Some(new_spec)) = (&old.spec, &new.spec) else {
        if old.spec.is_some() != new.spec.is_some() {
            errs.forbidden("spec", "pod updates may not add or remove the spec");
        }
        return;
    };
    // Start from the old spec, carry over what may change, and anything left different is a
    // change Kubernetes forbids.
    let mut allowed = old_spec.clone();
    for (a, n) in allowed.containers.iter_mut().zip(&new_spec.containers) {
        a.image = n.image.clone();
    }
    if let (Some(a), Some(n)) = (
        allowed.init_containers.as_mut(),
        new_spec.init_containers.as_ref(),
    ) {
        for (a, n) in a.iter_mut().zip(n) {
            a.image = n.image.clone();
        }
    }
    allowed.active_deadline_seconds = new_spec.active_deadline_seconds;
    let old_tolerations = old_spec.tolerations.as_deref().unwrap_or(&[]);
    let new_tolerations = new_spec.tolerations.as_deref().unwrap_or(&[]);
    if old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        allowed.tolerations = new_spec.tolerations.clone();
    }
    // Binding a pod sets its node once.
    if old_spec.node_name.as_deref().unwrap_or("").is_empty() {
        allowed.node_name = new_spec.node_name.clone();
    }
    if old_spec
        .termination_grace_period_seconds
        .is_some_and(|g| g < 0)
        && new_spec.termination_grace_period_seconds == Some(1)
    {
        allowed.termination_grace_period_seconds = Some(1);
    }
    if allowed != *new_spec {
        let changed = changed_fields(&allowed, new_spec);
        errs.forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative) (changed: {})",
                changed.join(", ")
            ),
        );
    }
}

/// The top-level fields of two specs that differ, named as in JSON.
fn changed_fields<T: serde::Serialize>(a: &T, b: &T) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Vec::new();
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("spec.{k}"))
        .collect()
}

fn validate_selector_update(old: &LabelSelector, new: &LabelSelector, errs: &mut Errors) {
    if old != new {
        errs.invalid_raw("spec.selector", print_json(new), "field is immutable");
    }
}

fn validate_immutable_data<T: PartialEq>(
    old_immutable: Option<bool>,
    new_immutable: Option<bool>,
    data: [(&str, T, T); 2],
    errs: &mut Errors,
) {
    if old_immutable != Some(true) {
        return;
    }
    if new_immutable != Some(true) {
        errs.forbidden("immutable", IMMUTABLE_WHEN_SET);
    }
    for (field, old, new) in data {
        if old != new {
            errs.forbidden(field, IMMUTABLE_WHEN_SET);
        }
    }
}

// ---- the served kinds ----

fn selector_absent(body: &serde_json::Value) -> Vec<&'static str> {
    match body.get("spec") {
        Some(spec) if spec.is_object() && spec.get("selector").is_none_or(|s| s.is_null()) => {
            vec!["spec.selector"]
        }
        _ => Vec::new(),
    }
}

impl Object for core::Namespace {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn apply_defaults(&mut self) {
        defaults::namespace(self);
    }
    fn validate(&self, info: &ResourceInfo, errs: &mut Errors) {
        validate_meta(&self.metadata, NameRule::Label, info.namespaced(), errs);
    }
    fn validate_update(&self, _old: &Self, _errs: &mut Errors) {}
}

impl Object for core::Node {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn apply_defaults(&mut self) {}
    fn validate(&self, info: &ResourceInfo, errs: &mut Errors) {
        validate_meta(&self.metadata, NameRule::Subdomain, info.namespaced(), errs);
        validate_node(self, errs);
    }
    fn validate_update(&self, _old: &Self, _errs: &mut Errors) {}
}

impl Object for core::Pod {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn apply_defaults(&mut self) {
        defaults::pod(self);
    }
    fn validate(&self, info: &ResourceInfo, errs: &mut Errors) {
        validate_meta(&self.metadata, NameRule::Subdomain, info.namespaced(), errs);
        match &self.spec {
            Some(spec) => validate_pod_spec(spec, "spec", PodRules { template: false }, errs),
            None => errs.required("spec.containers", ""),
        }
    }
    fn validate_update(&self, old: &Self, errs: &mut Errors) {
        validate_pod_update(old, self, errs);
    }
}

impl Object for core::Service {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn apply_defaults(&mut self) {
        defaults::service(self);
    }
    fn validate(&self, info: &ResourceInfo, errs: &mut Errors) {
        validate_meta(&self.metadata, NameRule::Dns1035, info.namespaced(), errs);
        validate_service(self, errs);
    }
    fn validate_update(&self, old: &Self, errs: &mut Errors) {
        let old_ip = old
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .unwrap_or("");
        let new_spec = self.spec.as_ref();
        let new_ip = new_spec.and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
        let to_external = new_spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName");
        if !old_ip.is_empty() && old_ip != new_ip && !to_external {
            errs.invalid_str("spec.clusterIP", new_ip, "field is immutable");
        }
    }
}

impl Object for core::Endpoints {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn apply_defaults(&mut self) {
        for port in self
            .subsets
            .iter_mut()
            .flatten()
            .flat_map(|s| s.ports.iter_mut().flatten())
        {
            if port.protocol.as_deref().unwrap_or("").is_empty() {
                port.protocol = Some("TCP".to_string());
            }
        }
    }
    fn validate(&self, info: &ResourceInfo, errs: &mut Errors) {
        validate_meta(&self.metadata, NameRule::Subdomain, info.namespaced(), errs);
        validate_endpoints(self, errs);
    }
    fn validate_update(&self, _old: &Self, _errs: &mut Errors) {}
}

impl Object for core::ConfigMap {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn apply_defaults(&mut self) {}
    fn validate(&self, info: &ResourceInfo, errs: &mut Errors) {
        validate_meta(&self.metadata, NameRule::Subdomain, info.namespaced(), errs);
        validate_config_map(self, errs);
    }
    fn validate_update(&self, old: &Self, errs: &mut Errors) {
        let data = (print_json(&old.data), print_json(&self.data));
        let binary = (print_json(&old.binary_data), print_json(&self.binary_data));
        validate_immutable_data(
            old.immutable,
            self.immutable,
            [("data", data.0, data.1), ("binaryData", binary.0, binary.1)],
            errs,
        );
    }
}

impl Object for core::Secret {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn apply_defaults(&mut self) {
        defaults::secret(self);
    }
    fn validate(&self, info: &ResourceInfo, errs: &mut Errors) {
        validate_meta(&self.metadata, NameRule::Subdomain, info.namespaced(), errs);
        validate_secret(self, errs);
    }
    fn validate_update(&self, old: &Self, errs: &mut Errors) {
        let old_type = old.type_.as_deref().unwrap_or("");
        let new_type = self.type_.as_deref().unwrap_or("");
        if old_type != new_type {
            errs.invalid_str("type", new_type, "field is immutable");
        }
        let data = (print_json(&old.data), print_json(&self.data));
        let string_data = (print_json(&old.string_data), print_json(&self.string_data));
        validate_immutable_data(
            old.immutable,
            self.immutable,
            [
                ("data", data.0, data.1),
                ("stringData", string_data.0, string_data.1),
            ],
            errs,
        );
    }
}

impl Object for core::Event {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn apply_defaults(&mut self) {}
    fn validate(&self, info: &ResourceInfo, errs: &mut Errors) {
        validate_meta(&self.metadata, NameRule::Subdomain, info.namespaced(), errs);
        validate_event(self, errs);
    }
    fn validate_update(&self, _old: &Self, _errs: &mut Errors) {}
}

impl Object for apps::Deployment {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn absent_required(body: &serde_json::Value) -> Vec<&'static str> {
        selector_absent(body)
    }
    fn apply_defaults(&mut self) {
        defaults::deployment(self);
    }
    fn validate(&self, info: &ResourceInfo, errs: &mut Errors) {
        validate_meta(&self.metadata, NameRule::Subdomain, info.namespaced(), errs);
        validate_deployment(self, errs);
    }
    fn validate_update(&self, old: &Self, errs: &mut Errors) {
        if let (Some(o), Some(n)) = (&old.spec, &self.spec) {
            validate_selector_update(&o.selector, &n.selector, errs);
        }
    }
}

impl Object for apps::ReplicaSet {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn absent_required(body: &serde_json::Value) -> Vec<&'static str> {
        selector_absent(body)
    }
    fn apply_defaults(&mut self) {
        defaults::replica_set(self);
    }
    fn validate(&self, info: &ResourceInfo, errs: &mut Errors) {
        validate_meta(&self.metadata, NameRule::Subdomain, info.namespaced(), errs);
        validate_replica_set(self, errs);
    }
    fn validate_update(&self, old: &Self, errs: &mut Errors) {
        if let (Some(o), Some(n)) = (&old.spec, &self.spec) {
            validate_selector_update(&o.selector, &n.selector, errs);
        }
    }
}

impl Object for coordination::Lease {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn apply_defaults(&mut self) {}
    fn validate(&self, info: &ResourceInfo, errs: &mut Errors) {
        validate_meta(&self.metadata, NameRule::Subdomain, info.namespaced(), errs);
        validate_lease(self, errs);
    }
    fn validate_update(&self, _old: &Self, _errs: &mut Errors) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        // validator, input, expected error (None: valid)
        fn check(f: fn(&str) -> Result<(), String>, input: &str, expected: Option<&str>) {
            assert_eq!(f(input).err().as_deref(), expected, "{input:?}");
        }
        let subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
        let label = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
        let dns1035 = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
        check(validate_dns1123_subdomain, "web", None);
        check(validate_dns1123_subdomain, "web.example.com", None);
        check(validate_dns1123_subdomain, "1-a", None);
        check(validate_dns1123_subdomain, "Web_1", Some(subdomain));
        check(validate_dns1123_subdomain, "", Some(subdomain));
        check(validate_dns1123_subdomain, "a..b", Some(subdomain));
        check(validate_dns1123_subdomain, "a-", Some(subdomain));
        check(validate_dns1123_subdomain, &"a".repeat(253), None);
        check(
            validate_dns1123_subdomain,
            &"a".repeat(254),
            Some("must be no more than 253 characters"),
        );
        check(validate_dns1123_label, "kube-system", None);
        check(validate_dns1123_label, "a.b", Some(label));
        check(
            validate_dns1123_label,
            &"a".repeat(64),
            Some("must be no more than 63 characters"),
        );
        check(validate_dns1035_label, "web", None);
        check(validate_dns1035_label, "1web", Some(dns1035));
        check(validate_qualified_name, "app", None);
        check(validate_qualified_name, "app.kubernetes.io/name", None);
        check(validate_qualified_name, "Example_Key.1", None);
        check(
            validate_qualified_name,
            "/name",
            Some("prefix part must be non-empty"),
        );
        check(validate_qualified_name, "a/b/c", Some("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
        check(validate_qualified_name, "-a", Some("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"));
        check(validate_label_value, "", None);
        check(validate_label_value, "v1.2_3", None);
        check(validate_label_value, "a b", Some("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"));
        check(validate_config_key, "app.properties", None);
        check(validate_config_key, "KEY_1", None);
        check(
            validate_config_key,
            "..data",
            Some("must not start with '..'"),
        );
        check(validate_config_key, "a/b", Some("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
    }

    #[test]
    fn env_and_port_names() {
        fn check(f: fn(&str) -> Vec<String>, input: &str, expected: &[&str]) {
            assert_eq!(f(input), expected, "{input:?}");
        }
        check(env_var_name, "MY_VAR", &[]);
        check(env_var_name, "my.env-name", &[]);
        check(env_var_name, "1VAR", &["a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"]);
        check(port_name, "http", &[]);
        check(port_name, "web-8080", &[]);
        check(
            port_name,
            "8080",
            &["must contain at least one letter (a-z)"],
        );
        check(port_name, "a--b", &["must not contain consecutive hyphens"]);
        check(port_name, "-ab", &["must not begin or end with a hyphen"]);
        check(
            port_name,
            "HTTP",
            &[
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must contain at least one letter (a-z)",
            ],
        );
        check(
            port_name,
            "averyveryverylongname",
            &["must be no more than 15 characters"],
        );
    }
}
