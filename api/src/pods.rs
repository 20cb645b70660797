//! What Kubernetes defines about a pod's containers that more than one component must read the
//! same way: the node agent (how it runs them) and the scheduler (what they ask of a node).

use crate::core::Container;

/// Whether an init container is a sidecar: `restartPolicy: Always` (Kubernetes'
/// `IsRestartableInitContainer`). A sidecar starts in its turn among the init containers and then
/// runs beside the pod's containers.
pub fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}
