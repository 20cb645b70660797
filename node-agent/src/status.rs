//! Pod status as Kubernetes computes it, from what the agent observed of the pod's containers:
//! phase, the PodScheduled/Initialized/ContainersReady/Ready conditions (keeping each one's
//! lastTransitionTime while its status does not change), hostIP, podIP, startTime and
//! containerStatuses with state and lastState. Pure functions: the caller observes, these
//! compute, and the caller writes only when the result differs from what the server has.

use api::core::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP, Pod,
    PodCondition, PodIP, PodStatus,
};
use api::meta::Time;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::node::seconds;

/// A container's ended run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terminated {
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, ...
    pub reason: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    /// The runtime id (without the `flotilla://` scheme).
    #[serde(default)]
    pub container_id: Option<String>,
}

/// Where one container is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    Waiting { reason: String, message: Option<String> },
    Running { started_at: Timestamp },
    Terminated(Terminated),
}

/// What the agent knows about one container of the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: Observed,
    pub last: Option<Terminated>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
    /// An init container with `restartPolicy: Always`: it runs beside the pod's containers.
    pub sidecar: bool,
}

/// What the agent knows about the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// In the order of `spec.initContainers`.
    pub init_containers: Vec<ContainerView>,
    /// In the order of `spec.containers`.
    pub containers: Vec<ContainerView>,
    pub host_ip: String,
    pub pod_ip: Option<String>,
    pub start_time: Option<Timestamp>,
}

/// The reason of a terminated container from its exit.
pub fn termination_reason(exit_code: i32, oom_killed: bool) -> &'static str {
    if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// The pod phase, as kubelet's getPhase decides it.
pub fn pod_phase(restart_policy: &str, containers: &[ContainerView]) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        match &c.state {
            Observed::Running { .. } => running += 1,
            Observed::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            // A container waiting to be restarted has run: it counts as stopped.
            Observed::Waiting { .. } if c.last.is_some() => stopped += 1,
            Observed::Waiting { .. } => waiting += 1,
        }
    }
    if containers.is_empty() || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match restart_policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ => "Failed",
        };
    }
    "Pending"
}

/// The phase while init containers have not all completed, as kubelet's getPhase decides it:
/// Failed once a plain one failed for good (restartPolicy Never), else Pending. Sidecars always
/// restart, so they never fail the pod.
pub fn init_phase(restart_policy: &str, init_containers: &[ContainerView]) -> &'static str {
    let failed = init_containers.iter().any(|c| !c.sidecar && matches!(&c.state, Observed::Terminated(t) if t.exit_code != 0));
    if failed && restart_policy == "Never" { "Failed" } else { "Pending" }
}

/// The names of the init containers that hold the pod's initialization up, in order: a plain
/// one until it exited 0, a sidecar until it has started (its startup probe, if any, passed).
pub fn incomplete_init_containers(init_containers: &[ContainerView]) -> Vec<&str> {
    init_containers
        .iter()
        .filter(|c| if c.sidecar { !c.started } else { !matches!(&c.state, Observed::Terminated(t) if t.exit_code == 0) })
        .map(|c| c.name.as_str())
        .collect()
}

/// Whether one of the pod's own containers has run: from then on the pod stays initialized even
/// when a sidecar restarts (kubelet's HasAnyRegularContainerStarted).
pub fn any_container_started(containers: &[ContainerView]) -> bool {
    containers.iter().any(|c| c.last.is_some() || !matches!(c.state, Observed::Waiting { .. }))
}

/// The container status the API shows.
pub fn container_status(c: &ContainerView) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: c.container_id.as_ref().map(|id| format!("flotilla://{id}")),
        ready: c.ready,
        started: Some(c.started),
        restart_count: c.restart_count,
        state: Some(api_state(&c.state)),
        last_state: Some(c.last.as_ref().map(|t| api_state(&Observed::Terminated(t.clone()))).unwrap_or_default()),
        ..Default::default()
    }
}

fn api_state(state: &Observed) -> ContainerState {
    match state {
        Observed::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some(reason.clone()), message: message.clone() }),
            ..Default::default()
        },
        Observed::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning { started_at: Some(Time(seconds(*started_at))) }),
            ..Default::default()
        },
        Observed::Terminated(t) => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: t.exit_code,
                reason: Some(t.reason.clone()),
                message: t.message.clone(),
                started_at: t.started_at.map(|s| Time(seconds(s))),
                finished_at: t.finished_at.map(|s| Time(seconds(s))),
                container_id: t.container_id.as_ref().map(|id| format!("flotilla://{id}")),
                signal: None,
            }),
            ..Default::default()
        },
    }
}

/// The whole status of `pod` from `view`. A phase the server already has as Succeeded or Failed
/// stays (terminal phases never change back).
pub fn compute_status(pod: &Pod, view: &PodView, now: Timestamp) -> PodStatus {
    let current = pod.status.as_ref();
    let restart_policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    let incomplete = incomplete_init_containers(&view.init_containers);
    let initialized = incomplete.is_empty() || any_container_started(&view.containers);
    let mut phase =
        if initialized { pod_phase(restart_policy, &view.containers) } else { init_phase(restart_policy, &view.init_containers) };
    if let Some(old @ ("Succeeded" | "Failed")) = current.and_then(|s| s.phase.as_deref()) {
        phase = if old == "Succeeded" { "Succeeded" } else { "Failed" };
    }
    // Sidecars count for readiness too, listed first as kubelet lists them.
    let sidecars = view.init_containers.iter().filter(|c| c.sidecar);
    let unready: Vec<&str> = sidecars.chain(&view.containers).filter(|c| !c.ready).map(|c| c.name.as_str()).collect();
    let all_ready = unready.is_empty() && !view.containers.is_empty();
    let (not_ready_reason, not_ready_message) = if phase == "Succeeded" || phase == "Failed" {
        (Some("PodCompleted".to_string()), None)
    } else {
        (Some("ContainersNotReady".to_string()), Some(format!("containers with unready status: [{}]", unready.join(" "))))
    };
    let condition = |type_: &str, ok: bool| -> PodCondition {
        let status = if ok { "True" } else { "False" };
        let previous = current.and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == type_));
        let transition = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(Time(seconds(now))),
        };
        let (reason, message) = match (type_, ok) {
            ("ContainersReady" | "Ready", false) => (not_ready_reason.clone(), not_ready_message.clone()),
            ("Initialized", false) => (
                Some("ContainersNotInitialized".to_string()),
                Some(format!("containers with incomplete status: [{}]", incomplete.join(" "))),
            ),
            ("Initialized" | "PodScheduled", true) if phase == "Succeeded" || phase == "Failed" => (Some("PodCompleted".to_string()), None),
            _ => (None, None),
        };
        PodCondition { type_: type_.to_string(), status: status.to_string(), last_transition_time: transition, reason, message, ..Default::default() }
    };
    let conditions = vec![
        condition("PodReadyToStartContainers", true),
        condition("Initialized", initialized),
        condition("Ready", all_ready),
        condition("ContainersReady", all_ready),
        condition("PodScheduled", true),
    ];
    // The scheduler's and other writers' fields the agent does not own are kept as they are.
    let mut status = current.cloned().unwrap_or_default();
    status.phase = Some(phase.to_string());
    status.conditions = Some(conditions);
    status.host_ip = Some(view.host_ip.clone());
    status.host_ips = Some(vec![HostIP { ip: view.host_ip.clone() }]);
    status.pod_ip = view.pod_ip.clone();
    status.pod_ips = view.pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]);
    status.start_time = view.start_time.map(|t| Time(seconds(t))).or(status.start_time);
    status.container_statuses = Some(view.containers.iter().map(container_status).collect());
    status.init_container_statuses =
        (!view.init_containers.is_empty()).then(|| view.init_containers.iter().map(container_status).collect());
    status.qos_class = status.qos_class.or_else(|| Some(qos_class(pod).to_string()));
    status
}

/// Whether the computed status differs from what the server has (the only case worth a write).
pub fn needs_write(current: Option<&PodStatus>, computed: &PodStatus) -> bool {
    current != Some(computed)
}

/// Kubernetes' QoS class: Guaranteed when every container's requests equal its limits for cpu
/// and memory, BestEffort when none sets any, Burstable otherwise.
pub fn qos_class(pod: &Pod) -> &'static str {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let r = c.resources.as_ref();
        let limits = r.and_then(|r| r.limits.as_ref());
        let requests = r.and_then(|r| r.requests.as_ref());
        if limits.is_some_and(|l| !l.is_empty()) || requests.is_some_and(|q| !q.is_empty()) {
            any = true;
        }
        for key in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(key));
            // A request left out defaults to the limit.
            let request = requests.and_then(|q| q.get(key)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::core::{Container, PodSpec};
    use api::meta::ObjectMeta;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("timestamp")
    }

    fn running(name: &str, ready: bool) -> ContainerView {
        ContainerView {
            name: name.into(),
            image: "busybox".into(),
            image_id: "sha256:abc".into(),
            container_id: Some("c1".into()),
            state: Observed::Running { started_at: ts(100) },
            last: None,
            restart_count: 0,
            ready,
            started: true,
            sidecar: false,
        }
    }

    fn terminated(code: i32) -> Terminated {
        Terminated { exit_code: code, reason: termination_reason(code, false).into(), message: None, started_at: Some(ts(1)), finished_at: Some(ts(2)), container_id: Some("c0".into()) }
    }

    fn pod(policy: &str) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some("p".into()), ..Default::default() },
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                containers: vec![Container { name: "app".into(), ..Default::default() }],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn phases_follow_kubelet() {
        let waiting = ContainerView { state: Observed::Waiting { reason: "ContainerCreating".into(), message: None }, ..running("a", false) };
        assert_eq!(pod_phase("Always", std::slice::from_ref(&waiting)), "Pending");
        assert_eq!(pod_phase("Always", &[running("a", true)]), "Running");
        let crashloop = ContainerView { last: Some(terminated(1)), state: Observed::Waiting { reason: "CrashLoopBackOff".into(), message: None }, ..running("a", false) };
        assert_eq!(pod_phase("Always", &[crashloop]), "Running");
        let done = ContainerView { state: Observed::Terminated(terminated(0)), ..running("a", false) };
        let failed = ContainerView { state: Observed::Terminated(terminated(2)), ..running("b", false) };
        assert_eq!(pod_phase("Never", std::slice::from_ref(&done)), "Succeeded");
        assert_eq!(pod_phase("OnFailure", std::slice::from_ref(&done)), "Succeeded");
        assert_eq!(pod_phase("Never", &[done.clone(), failed.clone()]), "Failed");
        assert_eq!(pod_phase("OnFailure", &[done.clone(), failed]), "Running");
        assert_eq!(pod_phase("Always", &[done]), "Running");
        assert_eq!(pod_phase("Always", &[]), "Pending");
    }

    #[test]
    fn reasons_of_terminations() {
        assert_eq!(termination_reason(0, false), "Completed");
        assert_eq!(termination_reason(1, false), "Error");
        assert_eq!(termination_reason(137, true), "OOMKilled");
    }

    #[test]
    fn ready_conditions_and_container_status() {
        let view = PodView { init_containers: vec![], containers: vec![running("app", true)], host_ip: "10.0.0.1".into(), pod_ip: None, start_time: Some(ts(50)) };
        let s = compute_status(&pod("Always"), &view, ts(200));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let ready = s.conditions.as_ref().and_then(|cs| cs.iter().find(|c| c.type_ == "Ready")).expect("ready");
        assert_eq!(ready.status, "True");
        assert_eq!(ready.last_transition_time, Some(Time(ts(200))));
        assert_eq!(s.host_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(s.start_time, Some(Time(ts(50))));
        let cs = &s.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(cs.container_id.as_deref(), Some("flotilla://c1"));
        assert!(cs.ready);
        assert!(cs.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    }

    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let view = PodView { init_containers: vec![], containers: vec![running("app", true)], host_ip: "h".into(), pod_ip: None, start_time: None };
        let mut p = pod("Always");
        p.status = Some(compute_status(&p, &view, ts(200)));
        let again = compute_status(&p, &view, ts(300));
        assert!(!needs_write(p.status.as_ref(), &again), "nothing changed, nothing to write");
        let unready = PodView { init_containers: vec![], containers: vec![running("app", false)], ..view };
        let changed = compute_status(&p, &unready, ts(400));
        assert!(needs_write(p.status.as_ref(), &changed));
        let cond = |s: &PodStatus, t: &str| s.conditions.as_ref().and_then(|cs| cs.iter().find(|c| c.type_ == t).cloned()).expect("condition");
        assert_eq!(cond(&changed, "Ready").last_transition_time, Some(Time(ts(400))));
        assert_eq!(cond(&changed, "Ready").message.as_deref(), Some("containers with unready status: [app]"));
        assert_eq!(cond(&changed, "PodScheduled").last_transition_time, Some(Time(ts(200))));
    }

    #[test]
    fn last_state_and_terminal_phase() {
        let c = ContainerView { last: Some(Terminated { reason: "OOMKilled".into(), exit_code: 137, ..terminated(137) }), restart_count: 2, ..running("app", true) };
        let s = container_status(&c);
        let last = s.last_state.and_then(|l| l.terminated).expect("last terminated");
        assert_eq!((last.exit_code, last.reason.as_deref()), (137, Some("OOMKilled")));
        assert_eq!(s.restart_count, 2);

        let mut p = pod("Never");
        p.status = Some(PodStatus { phase: Some("Succeeded".into()), ..Default::default() });
        let view = PodView { init_containers: vec![], containers: vec![running("app", true)], host_ip: "h".into(), pod_ip: None, start_time: None };
        assert_eq!(compute_status(&p, &view, ts(1)).phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn init_containers_hold_the_pod_pending_until_all_completed() {
        let waiting = |name: &str, reason: &str| ContainerView {
            state: Observed::Waiting { reason: reason.into(), message: None },
            ready: false,
            started: false,
            ..running(name, false)
        };
        let done = |name: &str, code: i32| ContainerView {
            state: Observed::Terminated(terminated(code)),
            ready: code == 0,
            started: false,
            ..running(name, false)
        };
        let condition = |s: &PodStatus, type_: &str| {
            s.conditions.as_ref().and_then(|cs| cs.iter().find(|c| c.type_ == type_)).cloned().expect("condition")
        };
        // the first init container runs, the second waits, the app waits for them
        let view = PodView {
            init_containers: vec![running("init-a", false), waiting("init-b", "PodInitializing")],
            containers: vec![waiting("app", "PodInitializing")],
            host_ip: "h".into(),
            pod_ip: None,
            start_time: None,
        };
        let s = compute_status(&pod("Always"), &view, ts(10));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = condition(&s, "Initialized");
        assert_eq!(init.status, "False");
        assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
        assert_eq!(init.message.as_deref(), Some("containers with incomplete status: [init-a init-b]"));
        assert_eq!(s.init_container_statuses.as_ref().map(Vec::len), Some(2));

        // both completed: initialized, and the phase is the containers' again
        let view = PodView { init_containers: vec![done("init-a", 0), done("init-b", 0)], containers: vec![running("app", true)], ..view };
        let s = compute_status(&pod("Always"), &view, ts(20));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&s, "Initialized").status, "True");
        let statuses = s.init_container_statuses.expect("init statuses");
        assert!(statuses.iter().all(|c| c.ready && c.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some()));

        // a failed init container: Failed under Never, Pending (it is retried) otherwise
        let failed = PodView {
            init_containers: vec![done("init-a", 1), waiting("init-b", "PodInitializing")],
            containers: vec![waiting("app", "PodInitializing")],
            ..view
        };
        assert_eq!(compute_status(&pod("Never"), &failed, ts(30)).phase.as_deref(), Some("Failed"));
        assert_eq!(compute_status(&pod("OnFailure"), &failed, ts(30)).phase.as_deref(), Some("Pending"));
        // no init containers: no initContainerStatuses
        let plain = PodView { init_containers: vec![], ..failed };
        assert!(compute_status(&pod("Always"), &plain, ts(40)).init_container_statuses.is_none());
    }

    #[test]
    fn sidecars_initialize_once_started_count_for_readiness_and_never_fail_the_pod() {
        let sidecar = |ready: bool, started: bool| ContainerView { sidecar: true, started, ..running("proxy", ready) };
        let waiting_app = ContainerView {
            state: Observed::Waiting { reason: "PodInitializing".into(), message: None },
            ready: false,
            started: false,
            ..running("app", false)
        };
        let condition = |s: &PodStatus, type_: &str| {
            s.conditions.as_ref().and_then(|cs| cs.iter().find(|c| c.type_ == type_)).cloned().expect("condition")
        };
        // running but its startup probe has not passed: not initialized yet
        let view = PodView {
            init_containers: vec![sidecar(false, false)],
            containers: vec![waiting_app.clone()],
            host_ip: "h".into(),
            pod_ip: None,
            start_time: None,
        };
        let s = compute_status(&pod("Never"), &view, ts(10));
        assert_eq!((s.phase.as_deref(), condition(&s, "Initialized").status.as_str()), (Some("Pending"), "False"));
        // started: initialized, though not ready; the pod is Ready only once the sidecar is
        let view = PodView { init_containers: vec![sidecar(false, true)], containers: vec![running("app", true)], ..view };
        let s = compute_status(&pod("Never"), &view, ts(20));
        assert_eq!((s.phase.as_deref(), condition(&s, "Initialized").status.as_str()), (Some("Running"), "True"));
        assert_eq!(condition(&s, "Ready").status, "False");
        assert_eq!(condition(&s, "Ready").message.as_deref(), Some("containers with unready status: [proxy]"));
        let ready = PodView { init_containers: vec![sidecar(true, true)], ..view.clone() };
        assert_eq!(condition(&compute_status(&pod("Never"), &ready, ts(30)), "Ready").status, "True");
        // a sidecar that crashed after the app started: still initialized, waiting to restart
        let crashed = ContainerView {
            state: Observed::Waiting { reason: "CrashLoopBackOff".into(), message: None },
            last: Some(terminated(1)),
            started: false,
            ..sidecar(false, false)
        };
        let view = PodView { init_containers: vec![crashed.clone()], ..view };
        let s = compute_status(&pod("Never"), &view, ts(40));
        assert_eq!((s.phase.as_deref(), condition(&s, "Initialized").status.as_str()), (Some("Running"), "True"));
        // a sidecar that failed before the app ran does not fail a restartPolicy Never pod
        let early = PodView { init_containers: vec![ContainerView { state: Observed::Terminated(terminated(1)), ..crashed }], containers: vec![waiting_app], ..view.clone() };
        assert_eq!(compute_status(&pod("Never"), &early, ts(50)).phase.as_deref(), Some("Pending"));
        // the app completed: the pod's phase is the app's, whatever the sidecar does
        let done = ContainerView { state: Observed::Terminated(terminated(0)), ready: false, ..running("app", false) };
        let view = PodView { init_containers: vec![sidecar(true, true)], containers: vec![done], ..view };
        assert_eq!(compute_status(&pod("Never"), &view, ts(60)).phase.as_deref(), Some("Succeeded"));
    }
}
