//! A container's environment as the kubelet builds it: `envFrom` sources first (with their
//! prefix, later sources overriding earlier ones), then `env` entries in order, each value
//! expanded with Kubernetes' `$(VAR)` syntax against what was defined before it; `valueFrom`
//! reads ConfigMap and Secret keys, pod fields (the downward API) and resource limits.
//!
//! The `$(VAR)` expansion is hand-written because it is Kubernetes' own dialect (unknown
//! references stay verbatim, `$$` escapes, no `${}` or bare `$VAR`), which no shell-expansion
//! crate reproduces.

use std::collections::HashMap;

use api::core::{Container, EnvVar, Pod};
use api::scheme::{parse_quantity_bytes, parse_quantity_milli};

use crate::podspec::{PodSpecError, References};

/// What the node offers, used by `resourceFieldRef` when the container sets no limit (the
/// kubelet then reports the node's allocatable resources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl Allocatable {
    /// The machine's CPUs and memory (`/proc/meminfo`); 1 CPU and 0 bytes when unreadable.
    pub fn detect() -> Allocatable {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|line| {
                    let rest = line.strip_prefix("MemTotal:")?;
                    let kib: i64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
                    Some(kib * 1024)
                })
            })
            .unwrap_or(0);
        Allocatable {
            cpu_millis: cpus as i64 * 1000,
            memory_bytes,
        }
    }
}

/// Expands `$(NAME)` references in `input` with `lookup`, as Kubernetes does: `$$` is a literal
/// `$`, a reference to an unknown name and an unclosed `$(` stay as written, and a `$` before any
/// other character is kept.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(next) = after.strip_prefix('$') {
            out.push('$');
            rest = next;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's environment in definition order (a later definition of a name replaces the
/// earlier value in place), with every `env` value expanded.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    refs: &References,
    allocatable: &Allocatable,
) -> Result<Vec<(String, String)>, PodSpecError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = EnvList::default();

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or("");
        if let Some(cm_ref) = &source.config_map_ref {
            let optional = cm_ref.optional.unwrap_or(false);
            match refs.config_maps.get(&cm_ref.name) {
                Some(cm) => {
                    for (key, value) in cm.data.iter().flatten() {
                        env.set_checked(format!("{prefix}{key}"), value.clone());
                    }
                }
                None if optional => {}
                None => return Err(missing("configmap", namespace, &cm_ref.name)),
            }
        }
        if let Some(secret_ref) = &source.secret_ref {
            let optional = secret_ref.optional.unwrap_or(false);
            match refs.secrets.get(&secret_ref.name) {
                Some(secret) => {
                    for (key, value) in secret_pairs(secret) {
                        env.set_checked(format!("{prefix}{key}"), value);
                    }
                }
                None if optional => {}
                None => return Err(missing("secret", namespace, &secret_ref.name)),
            }
        }
    }

    for var in container.env.iter().flatten() {
        if let Some(value) = env_value(pod, container, refs, allocatable, var, &env)? {
            env.set(var.name.clone(), value);
        }
    }
    Ok(env.entries)
}

/// The value of a downward-API field path, as `fieldRef` and the kubelet spell them.
pub fn field_ref(pod: &Pod, path: &str) -> Result<String, PodSpecError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let unsupported = || PodSpecError::UnsupportedFieldRef(path.to_string());
    if let Some(key) = subscript(path, "metadata.labels") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(key) = subscript(path, "metadata.annotations") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| {
            s.service_account_name
                .clone()
                .or_else(|| s.service_account.clone())
        }),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        "status.hostIPs" => status.map(|s| {
            s.host_ips
                .iter()
                .flatten()
                .map(|ip| ip.ip.clone())
                .collect::<Vec<_>>()
                .join(",")
        }),
        "status.podIPs" => status.map(|s| {
            s.pod_ips
                .iter()
                .flatten()
                .map(|ip| ip.ip.clone())
                .collect::<Vec<_>>()
                .join(",")
        }),
        _ => return Err(unsupported()),
    };
    Ok(value.unwrap_or_default())
}

/// The value of a `resourceFieldRef` (`limits.cpu`, `limits.memory`, `requests.cpu`,
/// `requests.memory`) of `container`, divided by the divisor and rounded up as the kubelet does;
/// an unset limit reports the node's allocatable amount.
pub fn resource_field_ref(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    allocatable: &Allocatable,
) -> Result<String, PodSpecError> {
    let resources = container.resources.as_ref();
    let quantity = |kind: &str, name: &str| -> Option<String> {
        let map = match kind {
            "limits" => resources.and_then(|r| r.limits.as_ref()),
            _ => resources.and_then(|r| r.requests.as_ref()),
        };
        map.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    let bad_quantity = |text: &str, message: String| PodSpecError::BadQuantity {
        container: container.name.clone(),
        quantity: text.to_string(),
        message,
    };
    let divisor = divisor.filter(|d| !d.is_empty()).unwrap_or("1");
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| PodSpecError::UnsupportedResourceField(resource.to_string()))?;
    if !matches!(kind, "limits" | "requests") {
        return Err(PodSpecError::UnsupportedResourceField(resource.to_string()));
    }
    match name {
        "cpu" => {
            let millis = match quantity(kind, "cpu") {
                Some(q) => parse_quantity_milli(&q).map_err(|e| bad_quantity(&q, e))?,
                // An unset request reads as the limit, an unset limit as the node's capacity.
                None if kind == "requests" => match quantity("limits", "cpu") {
                    Some(q) => parse_quantity_milli(&q).map_err(|e| bad_quantity(&q, e))?,
                    None => 0,
                },
                None => allocatable.cpu_millis,
            };
            let per = parse_quantity_milli(divisor).map_err(|e| bad_quantity(divisor, e))?;
            if per <= 0 {
                return Err(bad_quantity(divisor, "the divisor must be positive".into()));
            }
            Ok(div_ceil(millis, per).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match quantity(kind, name) {
                Some(q) => parse_quantity_bytes(&q).map_err(|e| bad_quantity(&q, e))?,
                None if kind == "requests" => match quantity("limits", name) {
                    Some(q) => parse_quantity_bytes(&q).map_err(|e| bad_quantity(&q, e))?,
                    None => 0,
                },
                None if name == "memory" => allocatable.memory_bytes,
                None => 0,
            };
            let per = parse_quantity_bytes(divisor).map_err(|e| bad_quantity(divisor, e))?;
            if per <= 0 {
                return Err(bad_quantity(divisor, "the divisor must be positive".into()));
            }
            Ok(div_ceil(bytes, per).to_string())
        }
        _ => Err(PodSpecError::UnsupportedResourceField(resource.to_string())),
    }
}

/// The key/value pairs of a Secret as text (`data`, then `stringData` for objects that were
/// never stored, where the apiserver would have merged it).
pub(crate) fn secret_pairs(secret: &api::core::Secret) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        if !pairs.iter().any(|(key, _)| key == k) {
            pairs.push((k.clone(), v.clone()));
        }
    }
    pairs
}

#[derive(Default)]
struct EnvList {
    entries: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl EnvList {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, value));
            }
        }
    }

    /// `envFrom` keys that cannot be environment variable names are skipped, as the kubelet
    /// skips them (it reports them in an event).
    fn set_checked(&mut self, name: String, value: String) {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            tracing::warn!(%name, "skipping an envFrom key that is not a valid variable name");
            return;
        }
        self.set(name, value);
    }

    fn get(&self, name: &str) -> Option<String> {
        self.index.get(name).map(|&i| self.entries[i].1.clone())
    }
}

fn env_value(
    pod: &Pod,
    container: &Container,
    refs: &References,
    allocatable: &Allocatable,
    var: &EnvVar,
    env: &EnvList,
) -> Result<Option<String>, PodSpecError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let Some(source) = &var.value_from else {
        let value = var.value.as_deref().unwrap_or("");
        return Ok(Some(expand(value, |name| env.get(name))));
    };
    if let Some(sel) = &source.config_map_key_ref {
        let optional = sel.optional.unwrap_or(false);
        let Some(cm) = refs.config_maps.get(&sel.name) else {
            return if optional {
                Ok(None)
            } else {
                Err(missing("configmap", namespace, &sel.name))
            };
        };
        return match cm.data.as_ref().and_then(|d| d.get(&sel.key)) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(PodSpecError::MissingKey {
                kind: "ConfigMap",
                namespace: namespace.to_string(),
                name: sel.name.clone(),
                key: sel.key.clone(),
            }),
        };
    }
    if let Some(sel) = &source.secret_key_ref {
        let optional = sel.optional.unwrap_or(false);
        let Some(secret) = refs.secrets.get(&sel.name) else {
            return if optional {
                Ok(None)
            } else {
                Err(missing("secret", namespace, &sel.name))
            };
        };
        return match secret_pairs(secret)
            .into_iter()
            .find(|(k, _)| *k == sel.key)
        {
            Some((_, v)) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(PodSpecError::MissingKey {
                kind: "Secret",
                namespace: namespace.to_string(),
                name: sel.name.clone(),
                key: sel.key.clone(),
            }),
        };
    }
    if let Some(sel) = &source.field_ref {
        return field_ref(pod, &sel.field_path).map(Some);
    }
    if let Some(sel) = &source.resource_field_ref {
        let target = match sel.container_name.as_deref().filter(|n| !n.is_empty()) {
            None => container,
            Some(name) => pod
                .spec
                .iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| c.name == name)
                .ok_or_else(|| PodSpecError::UnknownContainer(name.to_string()))?,
        };
        let divisor = sel.divisor.as_ref().map(|q| q.0.as_str());
        return resource_field_ref(target, &sel.resource, divisor, allocatable).map(Some);
    }
    Err(PodSpecError::EmptyValueFrom(var.name.clone()))
}

fn missing(kind: &'static str, namespace: &str, name: &str) -> PodSpecError {
    PodSpecError::MissingObject {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// `metadata.labels['key']` (or with double quotes) → `key`.
fn subscript<'a>(path: &'a str, field: &str) -> Option<&'a str> {
    let rest = path
        .strip_prefix(field)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    rest.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
}

fn div_ceil(value: i64, divisor: i64) -> i64 {
    let q = value / divisor;
    if value % divisor > 0 {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::core::{ConfigMap, Secret};
    use std::collections::BTreeMap;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("test pod")
    }

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let vars = [("A", "alpha"), ("B", "$(A)"), ("EMPTY", "")];
        let cases = [
            ("$(A)", "alpha"),
            ("x$(A)y$(A)", "xalphayalpha"),
            ("$(B)", "$(A)"), // values are not expanded twice
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$alpha"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$(EMPTY)x", "x"),
            ("$(A", "$(A"),
            ("$(", "$("),
            ("$", "$"),
            ("a$", "a$"),
            ("$A", "$A"),
            ("${A}", "${A}"),
            ("$()", "$()"),
            ("plain", "plain"),
            ("", ""),
            ("héllo $(A) ünï", "héllo alpha ünï"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, lookup(&vars)), want, "{input:?}");
        }
    }

    fn refs() -> References {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cfg"},
            "data": {"MODE": "fast", "LEVEL": "3", "bad=key": "x"}
        }))
        .expect("cm");
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "creds"},
            "data": {"PASSWORD": "czNjcjN0"}
        }))
        .expect("secret");
        References {
            config_maps: BTreeMap::from([("cfg".to_string(), cm)]),
            secrets: BTreeMap::from([("creds".to_string(), secret)]),
        }
    }

    const ALLOC: Allocatable = Allocatable {
        cpu_millis: 4000,
        memory_bytes: 8 << 30,
    };

    fn env_of(p: &Pod) -> Result<Vec<(String, String)>, PodSpecError> {
        let spec = p.spec.as_ref().expect("spec");
        container_env(p, &spec.containers[0], &refs(), &ALLOC)
    }

    #[test]
    fn env_order_sources_and_expansion() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "prod", "uid": "u-1",
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": [{
                "name": "c",
                "resources": {"limits": {"cpu": "1500m", "memory": "128Mi"}},
                "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                            {"secretRef": {"name": "creds"}},
                            {"configMapRef": {"name": "absent", "optional": true}}],
                "env": [
                    {"name": "GREETING", "value": "hi $(CFG_MODE) $(LATER) $$(CFG_MODE)"},
                    {"name": "LATER", "value": "later"},
                    {"name": "CFG_LEVEL", "value": "9"},
                    {"name": "LVL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LEVEL"}}},
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}},
                    {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "NOPE", "optional": true}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "EMPTY"}
                ]
            }]}
        }));
        let env = env_of(&p).expect("env");
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("CFG_LEVEL", "9"),
                ("CFG_MODE", "fast"),
                ("PASSWORD", "s3cr3t"),
                ("GREETING", "hi fast $(LATER) $(CFG_MODE)"),
                ("LATER", "later"),
                ("LVL", "3"),
                ("PW", "s3cr3t"),
                ("POD", "web-1"),
                ("NS", "prod"),
                ("APP", "web"),
                ("CPU", "2"),
                ("MEM_MI", "128"),
                ("EMPTY", ""),
            ]
        );
    }

    #[test]
    fn env_errors_name_what_is_missing() {
        let cases = [
            (
                serde_json::json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE"}}}]),
                "couldn't find key NOPE in ConfigMap prod/cfg",
            ),
            (
                serde_json::json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "K"}}}]),
                "secret \"gone\" not found",
            ),
            (
                serde_json::json!([{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.containers"}}}]),
                "unsupported fieldRef",
            ),
            (
                serde_json::json!([{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}]),
                "unsupported resourceFieldRef",
            ),
            (
                serde_json::json!([{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "containerName": "other"}}}]),
                "no container named \"other\"",
            ),
        ];
        for (env, text) in cases {
            let p = pod(serde_json::json!({
                "metadata": {"name": "p", "namespace": "prod"},
                "spec": {"containers": [{"name": "c", "env": env}]}
            }));
            let err = env_of(&p).expect_err(text);
            assert!(err.to_string().contains(text), "{err}");
            assert_eq!(err.reason(), "CreateContainerConfigError");
        }
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "prod"},
            "spec": {"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "absent"}}]}]}
        }));
        assert!(env_of(&p).is_err());
    }

    #[test]
    fn field_refs() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "123",
                         "labels": {"a.b/c": "v"}, "annotations": {"note": "n"}},
            "spec": {"nodeName": "node-1", "serviceAccount": "legacy", "containers": []},
            "status": {"hostIP": "10.0.0.1", "podIP": "10.244.0.5",
                       "podIPs": [{"ip": "10.244.0.5"}, {"ip": "fd00::5"}]}
        }));
        let cases = [
            ("metadata.name", Some("p")),
            ("metadata.namespace", Some("ns")),
            ("metadata.uid", Some("123")),
            ("metadata.labels['a.b/c']", Some("v")),
            ("metadata.labels[\"a.b/c\"]", Some("v")),
            ("metadata.labels['missing']", Some("")),
            ("metadata.annotations['note']", Some("n")),
            ("spec.nodeName", Some("node-1")),
            ("spec.serviceAccountName", Some("legacy")),
            ("status.hostIP", Some("10.0.0.1")),
            ("status.podIP", Some("10.244.0.5")),
            ("status.podIPs", Some("10.244.0.5,fd00::5")),
            ("metadata.labels[app]", None),
            ("metadata.generation", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(field_ref(&p, path).ok().as_deref(), want, "{path}");
        }
    }

    #[test]
    fn resource_fields_round_up_and_default_to_the_node() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"limits": {"cpu": "250m", "memory": "100M"}, "requests": {"cpu": "100m"}}
        }))
        .expect("container");
        let bare: Container = serde_json::from_value(serde_json::json!({"name": "b"})).expect("c");
        type Case<'a> = (&'a Container, &'a str, Option<&'a str>, Result<&'a str, ()>);
        let cases: [Case; 10] = [
            (&c, "limits.cpu", None, Ok("1")),
            (&c, "limits.cpu", Some("1m"), Ok("250")),
            (&c, "requests.cpu", Some("1m"), Ok("100")),
            (&c, "limits.memory", None, Ok("100000000")),
            (&c, "limits.memory", Some("1Mi"), Ok("96")),
            (&c, "requests.memory", Some("1M"), Ok("100")),
            (&bare, "limits.cpu", None, Ok("4")),
            (&bare, "limits.memory", Some("1Gi"), Ok("8")),
            (&c, "limits.cpu", Some("0"), Err(())),
            (&c, "limits", None, Err(())),
        ];
        for (container, resource, divisor, want) in cases {
            let got = resource_field_ref(container, resource, divisor, &ALLOC);
            assert_eq!(
                got.as_deref().map_err(|_| ()),
                want,
                "{resource} / {divisor:?}"
            );
        }
    }
}
