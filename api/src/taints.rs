//! Taints and tolerations: whether a pod's tolerations let it stay on (or be placed on) a node
//! with a given taint. Shared by the scheduler (placement) and the node lifecycle controller
//! (eviction), which must agree exactly.

use crate::core::{Taint, Toleration};

/// Whether `toleration` matches `taint`, as Kubernetes' `ToleratesTaint`: same effect (or none
/// given), and same key with `Equal` values or `Exists`; an empty key with `Exists` matches
/// every taint.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return operator == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether some toleration of the list matches `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.map(Into::into), effect: effect.into(), time_added: None }
    }

    fn tol(key: Option<&str>, op: Option<&str>, value: Option<&str>, effect: Option<&str>) -> Toleration {
        Toleration {
            key: key.map(Into::into),
            operator: op.map(Into::into),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            toleration_seconds: None,
        }
    }

    #[test]
    fn matching_rules() {
        let t = taint("dedicated", Some("gpu"), "NoSchedule");
        assert!(tolerates(&tol(Some("dedicated"), None, Some("gpu"), None), &t));
        assert!(!tolerates(&tol(Some("dedicated"), None, Some("cpu"), None), &t));
        assert!(tolerates(&tol(Some("dedicated"), Some("Exists"), None, Some("NoSchedule")), &t));
        assert!(!tolerates(&tol(Some("dedicated"), Some("Exists"), None, Some("NoExecute")), &t));
        assert!(tolerates(&tol(None, Some("Exists"), None, None), &t));
        assert!(!tolerates(&tol(None, Some("Equal"), None, None), &t));
        assert!(!tolerates(&tol(Some("dedicated"), Some("Bogus"), Some("gpu"), None), &t));
        assert!(!tolerates(&tol(Some("other"), Some("Exists"), None, None), &t));
        assert!(tolerated(&[tol(Some("other"), Some("Exists"), None, None), tol(None, Some("Exists"), None, None)], &t));
        assert!(!tolerated(&[], &t));
    }
}
