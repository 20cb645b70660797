//! The endpoints controller: for every Service with a selector, an Endpoints object of the same
//! name listing the matching pods' addresses (ready ones in `addresses`, others in
//! `notReadyAddresses`) with the service's ports resolved against each pod (`targetPort` as a
//! number or a container port's name), as Kubernetes' endpoints controller does.
//!
//! The decision is the pure [`desired_endpoints`]; the loop around it keeps informers on
//! Services, Pods and Endpoints, queues the services a change touches, writes only when the
//! result differs from what is stored, and deletes the Endpoints it manages once their Service is
//! gone. Endpoints of services without a selector belong to their users and are never touched.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use api::client::{Api, Client, DeleteParams, ListParams, PostParams};
use api::core::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use api::meta::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::{broadcast, watch};

use crate::informer::{Change, Informer, ObjectKey};
use crate::ControllerError;

/// Label this controller puts on the Endpoints it writes, so that it only ever deletes its own.
pub const MANAGED_BY_LABEL: &str = "endpoints.flotilla.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "endpoint-controller";
/// Kubernetes' label on the Endpoints of headless services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// How often every service is reconciled even without events.
const RESYNC: Duration = Duration::from_secs(30);
/// Changes arriving within this window are reconciled together.
const BATCH: Duration = Duration::from_millis(20);

/// Runs the controller until `shutdown` becomes true.
pub async fn run(
    client: Client,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ControllerError> {
    let services = Informer::spawn(
        Api::<Service>::all(client.clone()),
        ListParams::default(),
        shutdown.clone(),
    );
    let pods = Informer::spawn(
        Api::<Pod>::all(client.clone()),
        ListParams::default(),
        shutdown.clone(),
    );
    let endpoints = Informer::spawn(
        Api::<Endpoints>::all(client.clone()),
        ListParams::default(),
        shutdown.clone(),
    );
    let mut service_changes = services.subscribe();
    let mut pod_changes = pods.subscribe();
    let mut endpoint_changes = endpoints.subscribe();
    tokio::select! {
        _ = shutdown.wait_for(|s| *s) => return Ok(()),
        _ = async { services.wait_synced().await; pods.wait_synced().await; endpoints.wait_synced().await } => {}
    }
    tracing::info!("endpoints controller started");
    let mut queue: HashSet<ObjectKey> = HashSet::new();
    let mut full = true;
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        if full {
            queue.extend(
                services
                    .store()
                    .list()
                    .iter()
                    .map(|s| ObjectKey::of(&s.metadata)),
            );
            queue.extend(
                endpoints
                    .store()
                    .list()
                    .iter()
                    .map(|e| ObjectKey::of(&e.metadata)),
            );
            full = false;
        }
        // The pods of a namespace are copied out of the cache once per batch, not per service.
        let mut by_namespace: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for key in queue.drain() {
            let service = services.store().get(&key);
            let current = endpoints.store().get(&key);
            let namespace_pods = by_namespace
                .entry(key.namespace.clone())
                .or_insert_with(|| pods.store().list_namespace(&key.namespace));
            if let Err(error) = reconcile(
                &client,
                &key,
                service.as_deref(),
                current.as_deref(),
                namespace_pods,
            )
            .await
            {
                tracing::warn!(service = %key, %error, "cannot sync endpoints, will retry");
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            _ = resync.tick() => full = true,
            change = service_changes.recv() => match change {
                Ok(Change::Applied { new: s, .. }) | Ok(Change::Deleted(s)) => { queue.insert(ObjectKey::of(&s.metadata)); }
                Err(broadcast::error::RecvError::Lagged(_)) => full = true,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            change = endpoint_changes.recv() => match change {
                Ok(Change::Applied { new: e, .. }) | Ok(Change::Deleted(e)) => { queue.insert(ObjectKey::of(&e.metadata)); }
                Err(broadcast::error::RecvError::Lagged(_)) => full = true,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            change = pod_changes.recv() => match change {
                // A pod's labels may have changed, so every service of its namespace is looked
                // at, not only those matching its current labels.
                Ok(Change::Applied { new: p, .. }) | Ok(Change::Deleted(p)) => {
                    let namespace = p.metadata.namespace.clone().unwrap_or_default();
                    queue.extend(services.store().list_namespace(&namespace).iter().map(|s| ObjectKey::of(&s.metadata)));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => full = true,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
        tokio::time::sleep(BATCH).await;
    }
}

/// What to do about one service's Endpoints.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Nothing,
    Create(Endpoints),
    Replace(Endpoints),
    Delete,
}

/// Decides what to write, given the service (None: gone), the stored Endpoints, and the pods of
/// the service's namespace.
pub fn decide(service: Option<&Service>, current: Option<&Endpoints>, pods: &[Arc<Pod>]) -> Action {
    let Some(service) = service else {
        let managed = current.is_some_and(|e| {
            e.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .map(String::as_str)
                == Some(MANAGED_BY_VALUE)
        });
        return if managed {
            Action::Delete
        } else {
            Action::Nothing
        };
    };
    let Some(mut desired) = desired_endpoints(service, pods) else {
        return Action::Nothing;
    };
    match current {
        None => Action::Create(desired),
        Some(current) => {
            let same = normalize(&current.subsets) == normalize(&desired.subsets)
                && current.metadata.labels == desired.metadata.labels;
            if same {
                Action::Nothing
            } else {
                desired.metadata.resource_version = current.metadata.resource_version.clone();
                desired.metadata.annotations = current.metadata.annotations.clone();
                Action::Replace(desired)
            }
        }
    }
}

/// The Endpoints a service with a selector should have (`None` for a service without one).
pub fn desired_endpoints(service: &Service, pods: &[Arc<Pod>]) -> Option<Endpoints> {
    let spec = service.spec.as_ref()?;
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let service_name = service.metadata.name.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let service_ports = spec.ports.clone().unwrap_or_default();

    // Pods grouped by the exact set of ports they serve, as Kubernetes' RepackSubsets does.
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pod in pods {
        if pod.metadata.namespace.as_deref().unwrap_or_default() != namespace {
            continue;
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        if !should_be_in_endpoints(pod, publish_not_ready) {
            continue;
        }
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        let mut ports = Vec::new();
        for service_port in &service_ports {
            match resolve_target_port(service_port, pod) {
                Some(port) => ports.push(PortKey {
                    name: service_port.name.clone().unwrap_or_default(),
                    port,
                    protocol: service_port
                        .protocol
                        .clone()
                        .unwrap_or_else(|| "TCP".into()),
                }),
                None => tracing::debug!(
                    pod = ?pod.metadata.name, service = %service_name,
                    "pod has no container port for the service's targetPort"
                ),
            }
        }
        // A pod that serves none of the ports of a service that has ports is not an endpoint.
        if ports.is_empty() && !service_ports.is_empty() {
            continue;
        }
        ports.sort();
        let address = address_of(pod, ip, &service_name);
        let entry = groups.entry(ports).or_default();
        if publish_not_ready || is_pod_ready(pod) {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    let subsets: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|p| EndpointPort {
                            name: (!p.name.is_empty()).then_some(p.name),
                            port: p.port,
                            protocol: Some(p.protocol),
                            app_protocol: None,
                        })
                        .collect()
                }),
            }
        })
        .collect();

    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string());
    if spec.cluster_ip.as_deref() == Some("None") {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    Some(Endpoints {
        metadata: ObjectMeta {
            name: Some(service_name),
            namespace: Some(namespace),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    })
}

/// The port number a service port reaches on `pod`: `targetPort` as a number, or the
/// `containerPort` of the container port with that name (and the same protocol), or `port` when
/// `targetPort` is unset. `None` when the name matches no container port.
pub fn resolve_target_port(port: &api::core::ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            // A numeric string is a number, as Kubernetes' intstr parsing treats it.
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The Ready condition is True.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: String,
    port: i32,
    protocol: String,
}

/// Kubernetes' ShouldPodBeInEndpoints: not finished, and not terminating unless the service
/// publishes not-ready addresses.
fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded") | Some("Failed")) {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

fn address_of(pod: &Pod, ip: String, service_name: &str) -> EndpointAddress {
    let spec = pod.spec.as_ref();
    // The hostname is only published when the pod asks to be `hostname.subdomain` and the
    // subdomain is this service, as in Kubernetes.
    let hostname = spec.and_then(|s| {
        let hostname = s.hostname.as_ref()?;
        (s.subdomain.as_deref() == Some(service_name)).then(|| hostname.clone())
    });
    EndpointAddress {
        ip,
        hostname,
        node_name: spec.and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
    }
}

/// Subsets compared regardless of order and of the resourceVersion in target references.
fn normalize(subsets: &Option<Vec<EndpointSubset>>) -> BTreeSet<String> {
    subsets
        .iter()
        .flatten()
        .map(|subset| {
            let mut subset = subset.clone();
            for addresses in [&mut subset.addresses, &mut subset.not_ready_addresses]
                .into_iter()
                .flatten()
            {
                for address in addresses.iter_mut() {
                    if let Some(target) = &mut address.target_ref {
                        target.resource_version = None;
                    }
                }
                addresses.sort_by(|a, b| a.ip.cmp(&b.ip));
            }
            if let Some(ports) = &mut subset.ports {
                ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
            }
            serde_json::to_string(&subset).unwrap_or_default()
        })
        .collect()
}

async fn reconcile(
    client: &Client,
    key: &ObjectKey,
    service: Option<&Service>,
    current: Option<&Endpoints>,
    pods: &[Arc<Pod>],
) -> Result<(), ControllerError> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &key.namespace);
    match decide(service, current, pods) {
        Action::Nothing => {}
        Action::Create(endpoints) => match api.create(&PostParams::default(), &endpoints).await {
            Ok(_) => tracing::debug!(service = %key, "created endpoints"),
            // The informer had not seen it yet: the next event reconciles again.
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e.into()),
        },
        Action::Replace(endpoints) => match api
            .replace(&key.name, &PostParams::default(), &endpoints)
            .await
        {
            Ok(_) => tracing::debug!(service = %key, "updated endpoints"),
            // A stale cache: the informer delivers the newer version and the key comes back.
            Err(e) if e.is_conflict() || e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        },
        Action::Delete => match api.delete(&key.name, &DeleteParams::default()).await {
            Ok(_) => tracing::debug!(service = %key, "deleted endpoints of a deleted service"),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::core::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };

    fn service(selector: Option<&[(&str, &str)]>, ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: selector.map(|s| {
                    s.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn service_port(name: &str, port: i32, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: target,
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        }
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, ports: &[(&str, i32)]) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(
                        ports
                            .iter()
                            .map(|(n, p)| ContainerPort {
                                name: Some(n.to_string()),
                                container_port: *p,
                                ..ContainerPort::default()
                            })
                            .collect(),
                    ),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: ip.map(str::to_string),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        })
    }

    fn ips(addresses: &Option<Vec<EndpointAddress>>) -> Vec<String> {
        addresses.iter().flatten().map(|a| a.ip.clone()).collect()
    }

    #[test]
    fn ready_and_not_ready_pods_with_numeric_and_named_ports() {
        let svc = service(
            Some(&[("app", "web")]),
            vec![
                service_port("http", 80, Some(IntOrString::String("web".into()))),
                service_port("metrics", 9090, Some(IntOrString::Int(9100))),
            ],
        );
        let pods = vec![
            pod("b", Some("10.0.0.2"), true, &[("web", 8080)]),
            pod("a", Some("10.0.0.1"), true, &[("web", 8080)]),
            pod("c", Some("10.0.0.3"), false, &[("web", 8080)]),
            // No IP yet: skipped.
            pod("d", None, true, &[("web", 8080)]),
            // The named port is missing: only the numeric one applies, so another subset.
            pod("e", Some("10.0.0.5"), true, &[("other", 1)]),
        ];
        let endpoints = desired_endpoints(&svc, &pods).unwrap_or_default();
        let subsets = endpoints.subsets.unwrap_or_default();
        assert_eq!(subsets.len(), 2);
        let both = subsets
            .iter()
            .find(|s| s.ports.as_ref().is_some_and(|p| p.len() == 2))
            .cloned()
            .unwrap_or_default();
        assert_eq!(ips(&both.addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&both.not_ready_addresses), ["10.0.0.3"]);
        let mut ports: Vec<(Option<String>, i32)> = both
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name, p.port))
            .collect();
        ports.sort();
        assert_eq!(
            ports,
            [(Some("http".into()), 8080), (Some("metrics".into()), 9100)]
        );
        let first = both.addresses.unwrap_or_default()[0].clone();
        assert_eq!(first.node_name.as_deref(), Some("node-1"));
        let target = first.target_ref.unwrap_or_default();
        assert_eq!(
            (
                target.kind.as_deref(),
                target.name.as_deref(),
                target.uid.as_deref()
            ),
            (Some("Pod"), Some("a"), Some("uid-a"))
        );
        let only_metrics = subsets
            .iter()
            .find(|s| s.ports.as_ref().is_some_and(|p| p.len() == 1))
            .cloned()
            .unwrap_or_default();
        assert_eq!(ips(&only_metrics.addresses), ["10.0.0.5"]);
        assert_eq!(
            endpoints
                .metadata
                .labels
                .unwrap_or_default()
                .get(MANAGED_BY_LABEL)
                .map(String::as_str),
            Some(MANAGED_BY_VALUE)
        );
    }

    #[test]
    fn unset_target_port_is_the_service_port_and_unresolvable_pods_are_left_out() {
        let svc = service(Some(&[("app", "web")]), vec![service_port("", 80, None)]);
        let pods = vec![pod("a", Some("10.0.0.1"), true, &[])];
        let subsets = desired_endpoints(&svc, &pods)
            .and_then(|e| e.subsets)
            .unwrap_or_default();
        assert_eq!(subsets.len(), 1);
        let port = subsets[0].ports.clone().unwrap_or_default()[0].clone();
        assert_eq!((port.name, port.port), (None, 80));

        let named = service(
            Some(&[("app", "web")]),
            vec![service_port(
                "http",
                80,
                Some(IntOrString::String("web".into())),
            )],
        );
        assert_eq!(
            desired_endpoints(&named, &pods).map(|e| e.subsets),
            Some(None)
        );
    }

    #[test]
    fn non_matching_terminating_and_finished_pods_are_not_endpoints() {
        let svc = service(Some(&[("app", "web")]), vec![service_port("", 80, None)]);
        let mut other = (*pod("x", Some("10.0.0.9"), true, &[])).clone();
        other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        let mut terminating = (*pod("t", Some("10.0.0.8"), true, &[])).clone();
        terminating.metadata.deletion_timestamp =
            Some(api::meta::Time(jiff::Timestamp::UNIX_EPOCH));
        let mut done = (*pod("s", Some("10.0.0.7"), true, &[])).clone();
        if let Some(status) = &mut done.status {
            status.phase = Some("Succeeded".into());
        }
        let mut elsewhere = (*pod("n", Some("10.0.0.6"), true, &[])).clone();
        elsewhere.metadata.namespace = Some("other".into());
        let pods: Vec<Arc<Pod>> = [other, terminating, done, elsewhere]
            .into_iter()
            .map(Arc::new)
            .collect();
        assert_eq!(
            desired_endpoints(&svc, &pods).map(|e| e.subsets),
            Some(None)
        );
    }

    #[test]
    fn services_without_selector_are_left_alone() {
        let svc = service(None, vec![service_port("", 80, None)]);
        let pods = vec![pod("a", Some("10.0.0.1"), true, &[])];
        assert!(desired_endpoints(&svc, &pods).is_none());
        let user_made = Endpoints {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..ObjectMeta::default()
            },
            subsets: None,
        };
        assert_eq!(decide(Some(&svc), Some(&user_made), &pods), Action::Nothing);
        // Service gone: only managed Endpoints are deleted.
        assert_eq!(decide(None, Some(&user_made), &pods), Action::Nothing);
        let with_selector = service(Some(&[("app", "web")]), vec![service_port("", 80, None)]);
        let managed = desired_endpoints(&with_selector, &pods).unwrap_or_default();
        assert_eq!(decide(None, Some(&managed), &pods), Action::Delete);
        assert_eq!(decide(None, None, &pods), Action::Nothing);
    }

    #[test]
    fn writes_only_when_something_changed() {
        let svc = service(Some(&[("app", "web")]), vec![service_port("", 80, None)]);
        let pods = vec![
            pod("a", Some("10.0.0.1"), true, &[]),
            pod("b", Some("10.0.0.2"), true, &[]),
        ];
        let Action::Create(mut stored) = decide(Some(&svc), None, &pods) else {
            panic!("a missing Endpoints is created");
        };
        stored.metadata.resource_version = Some("7".into());
        // Same content in another order: nothing to do.
        if let Some(subsets) = &mut stored.subsets {
            if let Some(addresses) = &mut subsets[0].addresses {
                addresses.reverse();
            }
        }
        assert_eq!(decide(Some(&svc), Some(&stored), &pods), Action::Nothing);
        let fewer = vec![pods[0].clone()];
        match decide(Some(&svc), Some(&stored), &fewer) {
            Action::Replace(e) => {
                assert_eq!(e.metadata.resource_version.as_deref(), Some("7"));
                assert_eq!(
                    ips(&e.subsets.unwrap_or_default()[0].addresses),
                    ["10.0.0.1"]
                );
            }
            other => panic!("expected a replace, got {other:?}"),
        }
    }
}
