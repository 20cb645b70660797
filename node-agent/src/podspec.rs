//! From a Pod's container to the runtime's [`RunOptions`]: the ConfigMaps and Secrets the pod
//! names are fetched once per sync ([`fetch_references`]), then [`run_options`] applies
//! Kubernetes' rules (command and args against the image's ENTRYPOINT and CMD, the environment,
//! the security context, volume mounts, limits, hostname, the pod's network namespace).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use api::client::{Api, Client, ClientError};
use api::core::{ConfigMap, Container, Pod, Secret};
use api::scheme::{parse_quantity_bytes, parse_quantity_milli};
use runtime::spec::{NetworkMode, RunOptions};

use crate::env::{self, Allocatable};
use crate::volumes;

/// The ConfigMaps and Secrets of the pod's namespace that its spec names, by name.
#[derive(Debug, Clone, Default)]
pub struct References {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
}

/// Why a container's configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PodSpecError {
    #[error("{kind} \"{name}\" not found in namespace {namespace}: create it or mark the reference optional")]
    MissingObject {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in {kind} {namespace}/{name}: add the key or mark the reference optional")]
    MissingKey {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("reading {kind} {namespace}/{name}: {source}")]
    Fetch {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: ClientError,
    },
    #[error("unsupported fieldRef path {0:?}: use metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], metadata.annotations['KEY'], spec.nodeName, spec.serviceAccountName, status.hostIP or status.podIP")]
    UnsupportedFieldRef(String),
    #[error("unsupported resourceFieldRef {0:?}: use limits.cpu, limits.memory, requests.cpu or requests.memory")]
    UnsupportedResourceField(String),
    #[error("resourceFieldRef names no container named \"{0}\" in this pod")]
    UnknownContainer(String),
    #[error("environment variable {0} has an empty valueFrom: give a configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef")]
    EmptyValueFrom(String),
    #[error("container {container}: invalid quantity {quantity:?}: {message}")]
    BadQuantity {
        container: String,
        quantity: String,
        message: String,
    },
    #[error("container {container}: volume mount {mount:?} names no volume of the pod")]
    UnknownVolume { container: String, mount: String },
    #[error("container {container}: {what} {path:?} must be a relative path without '..' or ':'")]
    BadSubPath {
        container: String,
        what: &'static str,
        path: String,
    },
    #[error("container {container}: subPath {path:?} resolves outside its volume")]
    SubPathEscapes { container: String, path: PathBuf },
    #[error("volume {volume}: {path:?} cannot be mounted: paths with ':' are not supported")]
    ColonInPath { volume: String, path: PathBuf },
    #[error("volume {volume}: unsupported volume type {kind}: use emptyDir, hostPath, configMap or secret")]
    UnsupportedVolume { volume: String, kind: String },
    #[error("volume {volume}: {message}")]
    InvalidVolume { volume: String, message: String },
    #[error("volume {volume}: hostPath type check failed: {path} {message}")]
    HostPathType {
        volume: String,
        path: PathBuf,
        message: String,
    },
    #[error("volume {volume}: {action} {path}: {source}")]
    VolumeIo {
        volume: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {container}: invalid security context: {message}")]
    SecurityContext { container: String, message: String },
    #[error("the pod has no spec")]
    NoSpec,
}

impl PodSpecError {
    /// The waiting reason a container shows for this error, in the kubelet's words: volume set-up
    /// failures are `FailedMount` (the kubelet's event reason; the pod stays ContainerCreating),
    /// everything else `CreateContainerConfigError`.
    pub fn reason(&self) -> &'static str {
        match self {
            PodSpecError::HostPathType { .. } | PodSpecError::VolumeIo { .. } => "FailedMount",
            _ => "CreateContainerConfigError",
        }
    }
}

/// Fetches every ConfigMap and Secret that the pod's containers (init containers too) and
/// volumes name, and its image pull secrets. A missing object is an error unless every
/// reference to it is optional; missing image pull secrets are skipped with a warning, as the
/// kubelet skips them.
pub async fn fetch_references(client: &Client, pod: &Pod) -> Result<References, PodSpecError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let wanted = wanted_references(pod)?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut refs = References::default();
    for (name, required) in &wanted.config_maps {
        let fetched = config_maps
            .get_opt(name)
            .await
            .map_err(|source| PodSpecError::Fetch {
                kind: "configmap",
                namespace: namespace.to_string(),
                name: name.clone(),
                source,
            })?;
        match fetched {
            Some(cm) => {
                refs.config_maps.insert(name.clone(), cm);
            }
            None if *required => return Err(missing("configmap", namespace, name)),
            None => {}
        }
    }
    for (name, need) in &wanted.secrets {
        let fetched = secrets
            .get_opt(name)
            .await
            .map_err(|source| PodSpecError::Fetch {
                kind: "secret",
                namespace: namespace.to_string(),
                name: name.clone(),
                source,
            })?;
        match (fetched, need) {
            (Some(secret), _) => {
                refs.secrets.insert(name.clone(), secret);
            }
            (None, Need::Required) => return Err(missing("secret", namespace, name)),
            (None, Need::PullSecret) => {
                tracing::warn!(
                    namespace,
                    secret = %name,
                    "image pull secret not found; pulling without it"
                );
            }
            (None, Need::Optional) => {}
        }
    }
    Ok(refs)
}

/// The runtime options of `container` of `pod`, following Kubernetes' semantics. `pod_dir` is
/// where [`volumes::prepare_volumes`] put the pod's volumes; `netns` the pod's network namespace.
pub fn run_options(
    pod: &Pod,
    container: &Container,
    pod_dir: &Path,
    refs: &References,
    netns: &Path,
) -> Result<RunOptions, PodSpecError> {
    let spec = pod.spec.as_ref().ok_or(PodSpecError::NoSpec)?;
    let env = env::container_env(pod, container, refs, &Allocatable::detect())?;
    let (entrypoint, cmd) = command_and_args(container, &env);

    let pod_sc = spec.security_context.as_ref();
    let sc = container.security_context.as_ref();
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user));
    let gid = sc
        .and_then(|s| s.run_as_group)
        .or(pod_sc.and_then(|s| s.run_as_group));
    let sc_error = |message: String| PodSpecError::SecurityContext {
        container: container.name.clone(),
        message,
    };
    for (what, id) in [("runAsUser", uid), ("runAsGroup", gid)] {
        if id.is_some_and(|id| !(0..=i64::from(i32::MAX)).contains(&id)) {
            return Err(sc_error(format!("{what} must be between 0 and 2147483647")));
        }
    }
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(pod_sc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if non_root && uid == Some(0) {
        return Err(sc_error(
            "runAsUser 0 breaks the runAsNonRoot policy: set a non-zero runAsUser".into(),
        ));
    }
    let user = match (uid, gid) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        (None, Some(_)) => {
            return Err(sc_error(
                "runAsGroup without runAsUser is not supported yet: set runAsUser too".into(),
            ))
        }
        (None, None) => None,
    };
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let cap_names = |list: Option<&Vec<String>>| -> Vec<String> {
        list.into_iter().flatten().cloned().collect()
    };

    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    let bad_quantity = |q: &str, message: String| PodSpecError::BadQuantity {
        container: container.name.clone(),
        quantity: q.to_string(),
        message,
    };
    let memory = match limits.and_then(|l| l.get("memory")) {
        Some(q) => Some(parse_quantity_bytes(&q.0).map_err(|e| bad_quantity(&q.0, e))?),
        None => None,
    };
    let cpus = match limits.and_then(|l| l.get("cpu")) {
        Some(q) => {
            Some(parse_quantity_milli(&q.0).map_err(|e| bad_quantity(&q.0, e))? as f64 / 1000.0)
        }
        None => None,
    };

    Ok(RunOptions {
        name: None,
        cmd,
        entrypoint,
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        workdir: container.working_dir.clone().filter(|w| !w.is_empty()),
        user,
        hostname: Some(pod_hostname(pod)),
        network: NetworkMode::Join(netns.to_path_buf()),
        volumes: volume_mounts(pod, container, pod_dir, &env)?,
        tmpfs: Vec::new(),
        memory,
        cpus,
        pids_limit: None,
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        cap_add: cap_names(caps.and_then(|c| c.add.as_ref())),
        cap_drop: cap_names(caps.and_then(|c| c.drop.as_ref())),
        read_only: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        no_new_privileges: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        tty: container.tty.unwrap_or(false),
        interactive: container.stdin.unwrap_or(false),
        auto_remove: false,
        // the agent recreates a pod's containers from the API after a power loss
        unsynced_records: true,
        stop_signal: None,
        stop_timeout: None,
    })
}

/// Kubernetes' `command` and `args` as the runtime's `--entrypoint` and CMD, with `$(VAR)`
/// references expanded from the container's environment:
/// `command` replaces ENTRYPOINT (and drops the image's CMD when `args` is unset, which is what
/// the runtime does with an entrypoint override); `args` alone replaces CMD only.
pub fn command_and_args(
    container: &Container,
    env: &[(String, String)],
) -> (Option<Vec<String>>, Vec<String>) {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let expand_all = |list: &Vec<String>| -> Vec<String> {
        list.iter().map(|s| env::expand(s, lookup)).collect()
    };
    // An empty list is the same as an unset one to the kubelet.
    let command = container.command.as_ref().filter(|c| !c.is_empty());
    let args = container.args.as_ref().filter(|a| !a.is_empty());
    (
        command.map(expand_all),
        args.map(expand_all).unwrap_or_default(),
    )
}

/// `spec.hostname`, else the pod's name cut to 63 characters as the kubelet cuts it.
pub fn pod_hostname(pod: &Pod) -> String {
    if let Some(h) = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
    {
        return h.to_string();
    }
    let name = pod.metadata.name.as_deref().unwrap_or("pod");
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    Optional,
    PullSecret,
    Required,
}

struct Wanted {
    /// Name → required by at least one reference.
    config_maps: BTreeMap<String, bool>,
    secrets: BTreeMap<String, Need>,
}

fn wanted_references(pod: &Pod) -> Result<Wanted, PodSpecError> {
    let spec = pod.spec.as_ref().ok_or(PodSpecError::NoSpec)?;
    let mut wanted = Wanted {
        config_maps: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    let cm = |name: &str, optional: Option<bool>, w: &mut Wanted| {
        let required = !optional.unwrap_or(false);
        let slot = w.config_maps.entry(name.to_string()).or_insert(false);
        *slot |= required;
    };
    let secret = |name: &str, need: Need, w: &mut Wanted| {
        let slot = w.secrets.entry(name.to_string()).or_insert(need);
        *slot = (*slot).max(need);
    };
    let optional_need = |optional: Option<bool>| {
        if optional.unwrap_or(false) {
            Need::Optional
        } else {
            Need::Required
        }
    };
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for source in c.env_from.iter().flatten() {
            if let Some(r) = &source.config_map_ref {
                cm(&r.name, r.optional, &mut wanted);
            }
            if let Some(r) = &source.secret_ref {
                secret(&r.name, optional_need(r.optional), &mut wanted);
            }
        }
        for var in c.env.iter().flatten() {
            let Some(from) = &var.value_from else {
                continue;
            };
            if let Some(r) = &from.config_map_key_ref {
                cm(&r.name, r.optional, &mut wanted);
            }
            if let Some(r) = &from.secret_key_ref {
                secret(&r.name, optional_need(r.optional), &mut wanted);
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(src) = &v.config_map {
            cm(&src.name, src.optional, &mut wanted);
        }
        if let Some(src) = &v.secret {
            if let Some(name) = src.secret_name.as_deref().filter(|n| !n.is_empty()) {
                secret(name, optional_need(src.optional), &mut wanted);
            }
        }
    }
    for r in spec.image_pull_secrets.iter().flatten() {
        if !r.name.is_empty() {
            secret(&r.name, Need::PullSecret, &mut wanted);
        }
    }
    Ok(wanted)
}

fn missing(kind: &'static str, namespace: &str, name: &str) -> PodSpecError {
    PodSpecError::MissingObject {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// `HOSTPATH:/dst[:ro]` entries for the runtime, one per volume mount; ConfigMap and Secret
/// volumes are always read-only, as the kubelet mounts them.
fn volume_mounts(
    pod: &Pod,
    container: &Container,
    pod_dir: &Path,
    env: &[(String, String)],
) -> Result<Vec<String>, PodSpecError> {
    let spec = pod.spec.as_ref().ok_or(PodSpecError::NoSpec)?;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| PodSpecError::UnknownVolume {
                container: container.name.clone(),
                mount: mount.name.clone(),
            })?;
        let base = volumes::volume_path(pod_dir, volume)?;
        let sub = match (mount.sub_path.as_deref(), mount.sub_path_expr.as_deref()) {
            (Some(p), _) if !p.is_empty() => Some(("subPath", p.to_string())),
            (_, Some(e)) if !e.is_empty() => {
                let lookup = |name: &str| {
                    env.iter()
                        .rev()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                Some(("subPathExpr", env::expand(e, lookup)))
            }
            _ => None,
        };
        let source = match sub {
            None => base,
            Some((what, sub)) => sub_path(&container.name, &base, what, &sub)?,
        };
        let text = source.to_string_lossy().into_owned();
        if text.contains(':') {
            return Err(PodSpecError::ColonInPath {
                volume: volume.name.clone(),
                path: source,
            });
        }
        let readonly = mount.read_only.unwrap_or(false)
            || volume.config_map.is_some()
            || volume.secret.is_some();
        let entry = if readonly {
            format!("{text}:{}:ro", mount.mount_path)
        } else {
            format!("{text}:{}", mount.mount_path)
        };
        if seen.insert(mount.mount_path.trim_end_matches('/').to_string()) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// `base/sub`, created as a directory when missing (as the kubelet does), and refused when it
/// resolves (through symlinks) outside `base`.
fn sub_path(
    container: &str,
    base: &Path,
    what: &'static str,
    sub: &str,
) -> Result<PathBuf, PodSpecError> {
    let bad = || PodSpecError::BadSubPath {
        container: container.to_string(),
        what,
        path: sub.to_string(),
    };
    let rel = Path::new(sub);
    if sub.contains(':')
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad());
    }
    let path = base.join(rel);
    if std::fs::symlink_metadata(&path).is_err() {
        std::fs::create_dir_all(&path).map_err(|source| PodSpecError::VolumeIo {
            volume: container.to_string(),
            action: "creating the subPath",
            path: path.clone(),
            source,
        })?;
    }
    let resolved = std::fs::canonicalize(&path).map_err(|source| PodSpecError::VolumeIo {
        volume: container.to_string(),
        action: "resolving the subPath",
        path: path.clone(),
        source,
    })?;
    let base_resolved = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    if !resolved.starts_with(&base_resolved) {
        return Err(PodSpecError::SubPathEscapes {
            container: container.to_string(),
            path: resolved,
        });
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("test pod")
    }

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).expect("test container")
    }

    #[test]
    fn command_and_args_map_onto_entrypoint_and_cmd() {
        let env = vec![("WHO".to_string(), "world".to_string())];
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: Vec<(serde_json::Value, Option<Vec<String>>, Vec<String>)> = vec![
            (serde_json::json!({}), None, vec![]),
            (
                serde_json::json!({"command": ["/bin/app", "--x"]}),
                Some(s(&["/bin/app", "--x"])),
                vec![],
            ),
            (
                serde_json::json!({"args": ["serve", "$(WHO)"]}),
                None,
                s(&["serve", "world"]),
            ),
            (
                serde_json::json!({"command": ["sh", "-c"], "args": ["echo $(WHO) $$(WHO) $(NOPE)"]}),
                Some(s(&["sh", "-c"])),
                s(&["echo world $(WHO) $(NOPE)"]),
            ),
            (serde_json::json!({"command": [], "args": []}), None, vec![]),
        ];
        for (extra, want_entry, want_cmd) in cases {
            let mut json = serde_json::json!({"name": "c"});
            if let (Some(obj), Some(more)) = (json.as_object_mut(), extra.as_object()) {
                obj.extend(more.clone());
            }
            let c = container(json);
            assert_eq!(
                command_and_args(&c, &env),
                (want_entry, want_cmd),
                "{extra}"
            );
        }
    }

    #[test]
    fn hostnames() {
        let long = "a".repeat(62) + "-bcd";
        let cases = [
            (
                serde_json::json!({"metadata": {"name": "web-1"}, "spec": {"containers": []}}),
                "web-1".to_string(),
            ),
            (
                serde_json::json!({"metadata": {"name": "web-1"}, "spec": {"hostname": "h", "containers": []}}),
                "h".to_string(),
            ),
            (
                serde_json::json!({"metadata": {"name": long}, "spec": {"containers": []}}),
                "a".repeat(62),
            ),
        ];
        for (json, want) in cases {
            assert_eq!(pod_hostname(&pod(json)), want);
        }
    }

    fn full_pod(dir: &Path) -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "prod", "uid": "u1"},
            "spec": {
                "securityContext": {"runAsUser": 1000, "runAsGroup": 3000},
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "host", "hostPath": {"path": dir.join("host").to_string_lossy()}},
                    {"name": "cfg", "configMap": {"name": "cfg"}}
                ],
                "containers": [{
                    "name": "app",
                    "image": "busybox",
                    "command": ["sleep"],
                    "args": ["3600"],
                    "workingDir": "/work",
                    "tty": true,
                    "stdin": true,
                    "env": [{"name": "SUB", "value": "logs"}],
                    "securityContext": {"runAsUser": 2000, "privileged": false,
                        "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                        "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]}},
                    "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
                    "volumeMounts": [
                        {"name": "scratch", "mountPath": "/scratch"},
                        {"name": "scratch", "mountPath": "/logs", "subPathExpr": "$(SUB)"},
                        {"name": "host", "mountPath": "/host", "readOnly": true},
                        {"name": "cfg", "mountPath": "/etc/cfg"}
                    ]
                }]
            }
        }))
    }

    #[test]
    fn run_options_follow_the_container() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod_dir = dir.path().join("pod");
        std::fs::create_dir_all(pod_dir.join("volumes/scratch")).expect("mkdir");
        let p = full_pod(dir.path());
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let netns = Path::new("/run/netns/pod-u1");
        let opts = run_options(&p, c, &pod_dir, &References::default(), netns).expect("options");
        assert_eq!(opts.entrypoint, Some(vec!["sleep".to_string()]));
        assert_eq!(opts.cmd, vec!["3600".to_string()]);
        assert_eq!(opts.env, vec!["SUB=logs".to_string()]);
        assert_eq!(opts.workdir.as_deref(), Some("/work"));
        assert_eq!(opts.user.as_deref(), Some("2000:3000"));
        assert_eq!(opts.hostname.as_deref(), Some("web-1"));
        assert_eq!(opts.network, NetworkMode::Join(netns.to_path_buf()));
        assert_eq!(opts.memory, Some(64 << 20));
        assert_eq!(opts.cpus, Some(0.5));
        assert!(opts.read_only && opts.no_new_privileges && opts.tty && opts.interactive);
        assert!(!opts.privileged);
        assert_eq!(opts.cap_add, vec!["NET_ADMIN".to_string()]);
        assert_eq!(opts.cap_drop, vec!["MKNOD".to_string()]);
        let scratch = std::fs::canonicalize(pod_dir.join("volumes/scratch")).expect("canon");
        assert_eq!(
            opts.volumes,
            vec![
                format!("{}:/scratch", pod_dir.join("volumes/scratch").display()),
                format!("{}:/logs", scratch.join("logs").display()),
                format!("{}:/host:ro", dir.path().join("host").display()),
                format!("{}:/etc/cfg:ro", pod_dir.join("volumes/cfg").display()),
            ]
        );
        assert!(scratch.join("logs").is_dir(), "the subPath is created");
    }

    #[test]
    fn run_options_refuse_bad_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod_dir = dir.path().join("pod");
        std::fs::create_dir_all(pod_dir.join("volumes/scratch")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", pod_dir.join("volumes/scratch/out")).expect("symlink");
        let netns = Path::new("/run/netns/x");
        let mutations: Vec<(&str, serde_json::Value)> = vec![
            (
                "names no volume",
                serde_json::json!({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}),
            ),
            (
                "relative path without",
                serde_json::json!({"volumeMounts": [{"name": "scratch", "mountPath": "/x", "subPath": "../up"}]}),
            ),
            (
                "relative path without",
                serde_json::json!({"volumeMounts": [{"name": "scratch", "mountPath": "/x", "subPath": "/abs"}]}),
            ),
            (
                "resolves outside",
                serde_json::json!({"volumeMounts": [{"name": "scratch", "mountPath": "/x", "subPath": "out"}]}),
            ),
            (
                "invalid quantity",
                serde_json::json!({"resources": {"limits": {"memory": "lots"}}}),
            ),
            (
                "runAsGroup without runAsUser",
                serde_json::json!({"securityContext": {"runAsGroup": 5}}),
            ),
            (
                "between 0 and",
                serde_json::json!({"securityContext": {"runAsUser": -1}}),
            ),
            (
                "breaks the runAsNonRoot policy",
                serde_json::json!({"securityContext": {"runAsUser": 0, "runAsNonRoot": true}}),
            ),
            (
                "not found",
                serde_json::json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]}),
            ),
        ];
        for (text, extra) in mutations {
            let mut c = serde_json::json!({"name": "c", "image": "busybox"});
            if let (Some(obj), Some(more)) = (c.as_object_mut(), extra.as_object()) {
                obj.extend(more.clone());
            }
            let p = pod(serde_json::json!({
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": {"volumes": [{"name": "scratch", "emptyDir": {}}], "containers": [c]}
            }));
            let c = &p.spec.as_ref().expect("spec").containers[0];
            let err = run_options(&p, c, &pod_dir, &References::default(), netns).expect_err(text);
            assert!(err.to_string().contains(text), "{text}: {err}");
        }
    }

    /// A fake apiserver that knows ConfigMap `cfg` and Secret `creds` in namespace `ns`.
    async fn fake_apiserver() -> String {
        use axum::extract::Path as UrlPath;
        use axum::http::StatusCode;
        async fn object(
            UrlPath((ns, plural, name)): UrlPath<(String, String, String)>,
        ) -> (StatusCode, axum::Json<serde_json::Value>) {
            let found = match (ns.as_str(), plural.as_str(), name.as_str()) {
                ("ns", "configmaps", "cfg") => Some(serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "cfg", "namespace": "ns"}, "data": {"k": "v"}})),
                ("ns", "secrets", "creds") => Some(serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "creds", "namespace": "ns"}, "data": {"k": "dg=="}})),
                _ => None,
            };
            match found {
                Some(body) => (StatusCode::OK, axum::Json(body)),
                None => (
                    StatusCode::NOT_FOUND,
                    axum::Json(serde_json::json!({
                        "apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "reason": "NotFound", "code": 404,
                        "message": format!("{plural} \"{name}\" not found"),
                        "details": {"name": name, "kind": plural}
                    })),
                ),
            }
        }
        let app = axum::Router::new().route(
            "/api/v1/namespaces/{ns}/{plural}/{name}",
            axum::routing::get(object),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        url
    }

    #[tokio::test]
    async fn fetch_references_from_the_api() {
        let url = fake_apiserver().await;
        let client = Client::new(api::client::Config::new(vec![url])).expect("client");
        let pod_with = |extra: serde_json::Value| {
            let mut spec = serde_json::json!({"containers": [{"name": "c", "envFrom": [
                {"configMapRef": {"name": "cfg"}},
                {"secretRef": {"name": "creds"}},
                {"configMapRef": {"name": "maybe", "optional": true}}]}],
                "imagePullSecrets": [{"name": "no-such-pull-secret"}]});
            if let (Some(obj), Some(more)) = (spec.as_object_mut(), extra.as_object()) {
                obj.extend(more.clone());
            }
            pod(serde_json::json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}))
        };
        let refs = fetch_references(&client, &pod_with(serde_json::json!({})))
            .await
            .expect("references");
        assert_eq!(refs.config_maps.keys().collect::<Vec<_>>(), vec!["cfg"]);
        assert_eq!(refs.secrets.keys().collect::<Vec<_>>(), vec!["creds"]);
        assert_eq!(
            refs.secrets["creds"]
                .data
                .as_ref()
                .map(|d| d["k"].0.clone()),
            Some(b"v".to_vec())
        );

        let missing = pod_with(
            serde_json::json!({"volumes": [{"name": "v", "secret": {"secretName": "absent"}}]}),
        );
        let err = fetch_references(&client, &missing)
            .await
            .expect_err("missing secret");
        assert!(
            matches!(&err, PodSpecError::MissingObject { kind: "secret", name, .. } if name == "absent"),
            "{err}"
        );
        assert_eq!(err.reason(), "CreateContainerConfigError");
    }

    #[test]
    fn references_collect_every_name_with_its_need() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "imagePullSecrets": [{"name": "regcred"}, {"name": "shared"}],
                "volumes": [
                    {"name": "a", "configMap": {"name": "vol-cm", "optional": true}},
                    {"name": "b", "secret": {"secretName": "vol-secret"}}
                ],
                "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "init-cm"}}]}],
                "containers": [{"name": "c",
                    "envFrom": [{"secretRef": {"name": "shared", "optional": true}}],
                    "env": [
                        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "vol-cm", "key": "k"}}},
                        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "opt", "key": "k", "optional": true}}}
                    ]}]
            }
        }));
        let w = wanted_references(&p).expect("wanted");
        assert_eq!(
            w.config_maps,
            BTreeMap::from([("init-cm".to_string(), true), ("vol-cm".to_string(), true)])
        );
        assert_eq!(
            w.secrets,
            BTreeMap::from([
                ("opt".to_string(), Need::Optional),
                ("regcred".to_string(), Need::PullSecret),
                ("shared".to_string(), Need::PullSecret),
                ("vol-secret".to_string(), Need::Required),
            ])
        );
        let no_spec = pod(serde_json::json!({"metadata": {"name": "p"}}));
        assert!(wanted_references(&no_spec).is_err());
    }
}
