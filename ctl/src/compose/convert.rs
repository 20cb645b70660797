//! The model as cluster objects, the way kompose maps Compose to Kubernetes: a Namespace named
//! after the project, then per service (dependencies first) a Service when it has ports or
//! `expose` or something depends on it, and a Deployment. Everything the mapping cannot keep
//! (per-pod named volumes, restart policies, host ports outside the NodePort range) becomes a
//! warning naming the key.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::model::*;
use super::parse::{memory_quantity, parse_duration};
use super::ComposeError;

/// The label every object of a service carries with the service's name.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The label every object of a project carries with the project's name; `down` deletes by it.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";

/// How to convert.
#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    /// `HOST:PORT` of the registry that `build:` images are pushed to; their image references
    /// become `<registry>/<project>-<service>:latest`.
    pub registry: Option<String>,
}

/// The objects of one service, so `up` can apply a service at a time in dependency order.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceObjects {
    pub service: String,
    pub objects: Vec<Value>,
}

/// The whole conversion.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    pub namespace: Value,
    /// In start order: every service after the services it depends on.
    pub services: Vec<ServiceObjects>,
    pub warnings: Vec<String>,
}

impl Converted {
    /// Every object in apply order.
    pub fn all(&self) -> Vec<Value> {
        std::iter::once(self.namespace.clone())
            .chain(self.services.iter().flat_map(|s| s.objects.iter().cloned()))
            .collect()
    }
}

/// The image a service runs: `image:`, or for `build:` services the name `build` tags
/// (`<project>-<service>`, or in `registry` as `<registry>/<project>-<service>:latest`).
pub fn image_of(
    project: &Project,
    name: &str,
    service: &Service,
    registry: Option<&str>,
) -> String {
    match (&service.build, registry, &service.image) {
        (Some(_), Some(registry), _) => format!("{registry}/{}-{name}:latest", project.name),
        (_, _, Some(image)) => image.clone(),
        (_, _, None) => format!("{}-{name}", project.name),
    }
}

/// Service names with every service after those it depends on (ties in name order).
pub fn start_order(project: &Project) -> Result<Vec<String>, ComposeError> {
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    while done.len() < project.services.len() {
        let ready: Vec<&String> = project
            .services
            .iter()
            .filter(|(name, s)| {
                !done.contains(*name) && s.depends_on.keys().all(|d| done.contains(d))
            })
            .map(|(name, _)| name)
            .collect();
        if ready.is_empty() {
            let cycle: Vec<&String> = project
                .services
                .keys()
                .filter(|n| !done.contains(*n))
                .collect();
            return Err(ComposeError::Unconvertible {
                path: "services".into(),
                message: format!(
                    "dependency cycle between {cycle:?}: remove one of their depends_on"
                ),
            });
        }
        for name in ready {
            done.insert(name.clone());
            order.push(name.clone());
        }
    }
    Ok(order)
}

/// Converts a parsed project.
pub fn convert(project: &Project, opts: &ConvertOptions) -> Result<Converted, ComposeError> {
    if !is_dns_label(&project.name) {
        return Err(ComposeError::Unconvertible {
            path: "name".into(),
            message: format!("project name {:?} cannot be a namespace name: use lower-case letters, digits and '-' (pass -p NAME)", project.name),
        });
    }
    let mut warnings = Vec::new();
    let depended_on: BTreeSet<&String> = project
        .services
        .values()
        .flat_map(|s| s.depends_on.keys())
        .collect();
    let mut services = Vec::new();
    for name in start_order(project)? {
        let Some(service) = project.services.get(&name) else {
            continue;
        };
        let path = format!("services.{name}");
        for (dependency, dep) in &service.depends_on {
            let healthless = project
                .services
                .get(dependency)
                .is_some_and(|d| d.healthcheck.is_none());
            if dep.condition == Condition::ServiceHealthy && healthless {
                return Err(ComposeError::Unconvertible {
                    path: format!("{path}.depends_on.{dependency}.condition"),
                    message: format!("service_healthy needs a healthcheck on {dependency:?}: add one or use service_started"),
                });
            }
        }
        let mut objects = Vec::new();
        if let Some(svc) = service_object(
            project,
            &name,
            service,
            depended_on.contains(&name),
            &path,
            &mut warnings,
        ) {
            objects.push(svc);
        }
        objects.push(deployment(
            project,
            &name,
            service,
            opts,
            &path,
            &mut warnings,
        ));
        services.push(ServiceObjects {
            service: name,
            objects,
        });
    }
    let namespace = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": project.name, "labels": {PART_OF_LABEL: project.name}},
    });
    Ok(Converted {
        namespace,
        services,
        warnings,
    })
}

fn labels(project: &Project, name: &str) -> Value {
    json!({NAME_LABEL: name, PART_OF_LABEL: project.name})
}

fn metadata(project: &Project, name: &str, service: &Service) -> Value {
    let mut meta =
        json!({"name": name, "namespace": project.name, "labels": labels(project, name)});
    // Compose labels describe the container, not how it is selected, so they become
    // annotations (as kompose does) and never disturb selectors.
    if !service.labels.is_empty() {
        meta["annotations"] = json!(service.labels);
    }
    meta
}

fn service_object(
    project: &Project,
    name: &str,
    service: &Service,
    depended_on: bool,
    path: &str,
    warnings: &mut Vec<String>,
) -> Option<Value> {
    let mut ports: Vec<Value> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut node_port = false;
    for (i, port) in service.ports.iter().enumerate() {
        if !seen.insert((port.target, port.protocol.clone())) {
            continue;
        }
        let mut entry = port_entry(port.target, &port.protocol);
        if let Some(published) = port.published {
            node_port = true;
            if (30000..=32767).contains(&published) {
                entry["nodePort"] = json!(published);
            } else {
                warnings.push(format!(
                    "{path}.ports[{i}]: host port {published} is outside the node port range 30000-32767: the Service gets a node port chosen by the cluster (see ctl get service {name} -n {})",
                    project.name
                ));
            }
        }
        ports.push(entry);
    }
    for port in &service.expose {
        if seen.insert((*port, "tcp".to_string())) {
            ports.push(port_entry(*port, "tcp"));
        }
    }
    if ports.is_empty() && !depended_on {
        return None;
    }
    let mut spec = json!({"selector": labels(project, name)});
    if ports.is_empty() {
        // Depended on without any port: a headless Service still gives it a DNS name.
        spec["clusterIP"] = json!("None");
    } else {
        spec["ports"] = Value::Array(ports);
        spec["type"] = json!(if node_port { "NodePort" } else { "ClusterIP" });
    }
    Some(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata(project, name, service), "spec": spec}),
    )
}

fn port_entry(port: u16, protocol: &str) -> Value {
    json!({"name": format!("{port}-{protocol}"), "port": port, "targetPort": port, "protocol": protocol.to_uppercase()})
}

fn deployment(
    project: &Project,
    name: &str,
    service: &Service,
    opts: &ConvertOptions,
    path: &str,
    warnings: &mut Vec<String>,
) -> Value {
    let mut container = Map::new();
    container.insert("name".into(), json!(name));
    container.insert(
        "image".into(),
        json!(image_of(project, name, service, opts.registry.as_deref())),
    );
    // Compose's entrypoint replaces the image's ENTRYPOINT and command its CMD, which is exactly
    // Kubernetes' command and args.
    if let Some(entrypoint) = &service.entrypoint {
        container.insert("command".into(), json!(entrypoint));
    }
    if let Some(command) = &service.command {
        container.insert("args".into(), json!(command));
    }
    if !service.environment.is_empty() {
        let env: Vec<Value> = service
            .environment
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        container.insert("env".into(), Value::Array(env));
    }
    if let Some(dir) = &service.working_dir {
        container.insert("workingDir".into(), json!(dir));
    }
    let mut ports: Vec<Value> = Vec::new();
    let mut seen = BTreeSet::new();
    for (port, protocol) in service
        .ports
        .iter()
        .map(|p| (p.target, p.protocol.as_str()))
        .chain(service.expose.iter().map(|p| (*p, "tcp")))
    {
        if seen.insert((port, protocol)) {
            ports.push(json!({"containerPort": port, "protocol": protocol.to_uppercase()}));
        }
    }
    if !ports.is_empty() {
        container.insert("ports".into(), Value::Array(ports));
    }
    if let Some(resources) = service.deploy.as_ref().and_then(|d| d.resources.as_ref()) {
        let mut value = Map::new();
        if let Some(limits) = resources
            .limits
            .as_ref()
            .map(quantities)
            .filter(|m| !m.is_empty())
        {
            value.insert("limits".into(), Value::Object(limits));
        }
        if let Some(requests) = resources
            .reservations
            .as_ref()
            .map(quantities)
            .filter(|m| !m.is_empty())
        {
            value.insert("requests".into(), Value::Object(requests));
        }
        container.insert("resources".into(), Value::Object(value));
    }
    if let Some(check) = &service.healthcheck {
        container.insert("readinessProbe".into(), probe(check));
    }
    if let Some(user) = &service.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        match (uid.parse::<u64>(), gid.map(str::parse::<u64>)) {
            (Ok(uid), None) => {
                container.insert("securityContext".into(), json!({"runAsUser": uid}));
            }
            (Ok(uid), Some(Ok(gid))) => {
                container.insert("securityContext".into(), json!({"runAsUser": uid, "runAsGroup": gid}));
            }
            _ => warnings.push(format!("{path}.user: {user:?} is not numeric: only numeric user ids can be set, the image's user is kept")),
        }
    }
    match service.restart.as_deref() {
        None | Some("always") | Some("unless-stopped") => {}
        Some(policy) => warnings.push(format!("{path}.restart: {policy:?} is not supported: a Deployment always restarts its containers")),
    }
    let mut volumes: BTreeMap<String, Value> = BTreeMap::new();
    let mut mounts = Vec::new();
    for (i, mount) in service.volumes.iter().enumerate() {
        let volume_name = match (mount.kind, &mount.source) {
            (MountKind::Volume, Some(source)) => {
                warnings.push(format!(
                    "{path}.volumes[{i}]: named volume {source:?} becomes an emptyDir: its data is per pod and lost when the pod is replaced (no persistent volumes yet)"
                ));
                let volume_name = format!("vol-{}", source.to_lowercase().replace(['_', '.'], "-"));
                volumes.insert(
                    volume_name.clone(),
                    json!({"name": volume_name, "emptyDir": {}}),
                );
                volume_name
            }
            (MountKind::Volume, None) => {
                let volume_name = format!("anon-{i}");
                volumes.insert(
                    volume_name.clone(),
                    json!({"name": volume_name, "emptyDir": {}}),
                );
                volume_name
            }
            (MountKind::Bind, source) => {
                let volume_name = format!("bind-{i}");
                volumes.insert(
                    volume_name.clone(),
                    json!({"name": volume_name, "hostPath": {"path": source}}),
                );
                volume_name
            }
        };
        let mut entry = json!({"name": volume_name, "mountPath": mount.target});
        if mount.read_only {
            entry["readOnly"] = json!(true);
        }
        mounts.push(entry);
    }
    if !mounts.is_empty() {
        container.insert("volumeMounts".into(), Value::Array(mounts));
    }
    let mut pod_spec = json!({"containers": [Value::Object(container)]});
    if !volumes.is_empty() {
        pod_spec["volumes"] = Value::Array(volumes.into_values().collect());
    }
    let replicas = service
        .deploy
        .as_ref()
        .and_then(|d| d.replicas)
        .unwrap_or(1);
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(project, name, service),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels(project, name)},
            "template": {"metadata": {"labels": labels(project, name)}, "spec": pod_spec},
        },
    })
}

fn quantities(limits: &Limits) -> Map<String, Value> {
    let mut map = Map::new();
    if let Some(cpus) = &limits.cpus {
        map.insert("cpu".into(), json!(cpus));
    }
    if let Some(memory) = limits.memory.as_deref().and_then(memory_quantity) {
        map.insert("memory".into(), json!(memory));
    }
    map
}

fn probe(check: &Healthcheck) -> Value {
    let command: Vec<String> = match check.test.first().map(String::as_str) {
        Some("CMD-SHELL") => ["/bin/sh", "-c"]
            .iter()
            .map(|s| s.to_string())
            .chain(check.test.iter().skip(1).cloned())
            .collect(),
        _ => check.test.iter().skip(1).cloned().collect(),
    };
    let mut probe = json!({"exec": {"command": command}});
    let seconds = |text: &Option<String>| text.as_deref().and_then(parse_duration);
    if let Some(s) = seconds(&check.interval) {
        probe["periodSeconds"] = json!(s.max(1));
    }
    if let Some(s) = seconds(&check.timeout) {
        probe["timeoutSeconds"] = json!(s.max(1));
    }
    if let Some(retries) = check.retries {
        probe["failureThreshold"] = json!(retries.max(1));
    }
    if let Some(s) = seconds(&check.start_period) {
        probe["initialDelaySeconds"] = json!(s);
    }
    probe
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(services: &[(&str, Service)]) -> Project {
        Project {
            name: "shop".into(),
            services: services
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
            volumes: BTreeMap::new(),
        }
    }

    #[test]
    fn dependencies_come_first_and_get_a_service() {
        let mut web = Service {
            image: Some("web".into()),
            ..Service::default()
        };
        web.depends_on.insert(
            "api".into(),
            Dependency {
                condition: Condition::ServiceStarted,
            },
        );
        let api = Service {
            image: Some("api".into()),
            ..Service::default()
        };
        let converted = convert(
            &project(&[("web", web), ("api", api)]),
            &ConvertOptions::default(),
        )
        .expect("valid");
        let order: Vec<&str> = converted
            .services
            .iter()
            .map(|s| s.service.as_str())
            .collect();
        assert_eq!(order, ["api", "web"]);
        assert_eq!(converted.services[0].objects[0]["kind"], "Service");
        assert_eq!(
            converted.services[0].objects[0]["spec"]["clusterIP"],
            "None"
        );
        assert_eq!(
            converted.services[1].objects.len(),
            1,
            "web has no ports and nobody depends on it"
        );
    }

    #[test]
    fn cycles_and_bad_names_are_errors() {
        let mut a = Service {
            image: Some("a".into()),
            ..Service::default()
        };
        a.depends_on.insert(
            "b".into(),
            Dependency {
                condition: Condition::ServiceStarted,
            },
        );
        let mut b = Service {
            image: Some("b".into()),
            ..Service::default()
        };
        b.depends_on.insert(
            "a".into(),
            Dependency {
                condition: Condition::ServiceStarted,
            },
        );
        let error = convert(&project(&[("a", a), ("b", b)]), &ConvertOptions::default())
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("dependency cycle")));
        let mut p = project(&[(
            "a",
            Service {
                image: Some("a".into()),
                ..Service::default()
            },
        )]);
        p.name = "my_app".into();
        assert!(convert(&p, &ConvertOptions::default()).is_err());
    }

    #[test]
    fn built_images_go_to_the_registry() {
        let build = Service {
            build: Some(Build {
                context: "/x".into(),
                ..Build::default()
            }),
            ..Service::default()
        };
        let p = project(&[("web", build.clone())]);
        assert_eq!(image_of(&p, "web", &build, None), "shop-web");
        assert_eq!(
            image_of(&p, "web", &build, Some("10.0.0.1:5000")),
            "10.0.0.1:5000/shop-web:latest"
        );
    }
}
