//! Defaulting as Kubernetes' `SetDefaults_*` functions do it, applied after decoding and before
//! validation so that the stored object reads exactly as `kubectl get -o yaml` shows it on a
//! Kubernetes cluster.
//!
//! Go cannot tell an absent integer from a zero one, so Kubernetes defaults a zero too; the
//! probe fields follow that rule here to give the same results for the same manifests.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use crate::{apps, core};

/// The mode files of configMap, secret, downwardAPI and projected volumes get (0644).
const DEFAULT_MODE: i32 = 0o644;

pub(super) fn pod_spec(spec: &mut core::PodSpec) {
    set_if_empty(&mut spec.restart_policy, "Always");
    spec.termination_grace_period_seconds.get_or_insert(30);
    set_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_if_empty(&mut spec.scheduler_name, "default-scheduler");
    spec.security_context.get_or_insert_with(Default::default);
    spec.enable_service_links.get_or_insert(true);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        container(c);
    }
    for v in spec.volumes.iter_mut().flatten() {
        volume(v);
    }
}

pub(super) fn pod_template(template: &mut core::PodTemplateSpec) {
    if let Some(spec) = template.spec.as_mut() {
        pod_spec(spec);
    }
}

pub(super) fn deployment(d: &mut apps::Deployment) {
    let Some(spec) = d.spec.as_mut() else { return };
    spec.replicas.get_or_insert(1);
    let strategy = spec.strategy.get_or_insert_with(Default::default);
    set_if_empty(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
        rolling
            .max_unavailable
            .get_or_insert_with(|| IntOrString::String("25%".into()));
        rolling
            .max_surge
            .get_or_insert_with(|| IntOrString::String("25%".into()));
    }
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    pod_template(&mut spec.template);
}

pub(super) fn replica_set(rs: &mut apps::ReplicaSet) {
    let Some(spec) = rs.spec.as_mut() else { return };
    spec.replicas.get_or_insert(1);
    if let Some(t) = spec.template.as_mut() {
        pod_template(t);
    }
}

pub(super) fn pod(p: &mut core::Pod) {
    if let Some(spec) = p.spec.as_mut() {
        pod_spec(spec);
    }
}

pub(super) fn service(s: &mut core::Service) {
    let Some(spec) = s.spec.as_mut() else { return };
    set_if_empty(&mut spec.type_, "ClusterIP");
    set_if_empty(&mut spec.session_affinity, "None");
    let ty = spec.type_.clone().unwrap_or_default();
    if ty != "ExternalName" {
        set_if_empty(&mut spec.internal_traffic_policy, "Cluster");
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_if_empty(&mut spec.external_traffic_policy, "Cluster");
    }
    for port in spec.ports.iter_mut().flatten() {
        set_if_empty(&mut port.protocol, "TCP");
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
}

pub(super) fn secret(s: &mut core::Secret) {
    set_if_empty(&mut s.type_, "Opaque");
    // stringData is write-only: Kubernetes merges it into data, where it wins over the same key.
    if let Some(string_data) = s.string_data.take() {
        let data = s.data.get_or_insert_with(Default::default);
        for (k, v) in string_data {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
}

pub(super) fn namespace(n: &mut core::Namespace) {
    let status = n.status.get_or_insert_with(Default::default);
    set_if_empty(&mut status.phase, "Active");
}

fn container(c: &mut core::Container) {
    set_if_empty(&mut c.termination_message_path, "/dev/termination-log");
    set_if_empty(&mut c.termination_message_policy, "File");
    if c.image_pull_policy.as_deref().unwrap_or("").is_empty() {
        let policy = pull_policy_for(c.image.as_deref().unwrap_or(""));
        c.image_pull_policy = Some(policy.to_string());
    }
    for port in c.ports.iter_mut().flatten() {
        set_if_empty(&mut port.protocol, "TCP");
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ] {
        if let Some(p) = probe.as_mut() {
            self::probe(p);
        }
    }
    for env in c.env.iter_mut().flatten() {
        if let Some(field_ref) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            set_if_empty(&mut field_ref.api_version, "v1");
        }
    }
}

/// Always for `:latest` or an untagged image without digest, else IfNotPresent.
pub(super) fn pull_policy_for(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag follows the last ':' of the last path component; a ':' before a '/' is a
    // registry port ("localhost:5000/web").
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe(p: &mut core::Probe) {
    default_zero(&mut p.timeout_seconds, 1);
    default_zero(&mut p.period_seconds, 10);
    default_zero(&mut p.success_threshold, 1);
    default_zero(&mut p.failure_threshold, 3);
    if let Some(http) = p.http_get.as_mut() {
        set_if_empty(&mut http.path, "/");
        set_if_empty(&mut http.scheme, "HTTP");
    }
}

fn volume(v: &mut core::Volume) {
    // A volume without a source is an emptyDir, as in Kubernetes.
    if super::validation::volume_sources(v).is_empty() {
        v.empty_dir = Some(Default::default());
    }
    if let Some(cm) = v.config_map.as_mut() {
        cm.default_mode.get_or_insert(DEFAULT_MODE);
    }
    if let Some(s) = v.secret.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_MODE);
    }
    if let Some(d) = v.downward_api.as_mut() {
        d.default_mode.get_or_insert(DEFAULT_MODE);
    }
    if let Some(p) = v.projected.as_mut() {
        p.default_mode.get_or_insert(DEFAULT_MODE);
    }
}

fn set_if_empty(field: &mut Option<String>, value: &str) {
    if field.as_deref().unwrap_or("").is_empty() {
        *field = Some(value.to_string());
    }
}

fn default_zero(field: &mut Option<i32>, value: i32) {
    if field.unwrap_or(0) == 0 {
        *field = Some(value);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pull_policy() {
        fn check(image: &str, expected: &str) {
            assert_eq!(super::pull_policy_for(image), expected, "{image}");
        }
        check("nginx", "Always");
        check("nginx:latest", "Always");
        check("nginx:1.27", "IfNotPresent");
        check("localhost:5000/web", "Always");
        check("localhost:5000/web:v2", "IfNotPresent");
        check("nginx@sha256:abcd", "IfNotPresent");
        check("registry.example.com/team/app:latest", "Always");
    }
}
