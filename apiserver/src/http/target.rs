//! What a request path names: a kind, maybe a namespace, maybe an object, maybe a subresource.
//!
//! Kubernetes' paths are regular enough to parse by hand, and doing so keeps the one place that
//! maps a URL to a `ResourceInfo` small and testable without a server.

use api::resource::{self, ResourceInfo};

use super::status::ApiError;

/// The resource a request is about.
#[derive(Debug, Clone)]
pub struct Target {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses the part of the path after `/api/` or `/apis/` (`core` tells which).
pub fn parse(core: bool, rest: &str) -> Result<Target, ApiError> {
    let full = if core { format!("/api/{rest}") } else { format!("/apis/{rest}") };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, tail) = if core {
        match segs.split_first() {
            Some((v, tail)) => ("", *v, tail),
            None => return Err(ApiError::path_not_found(&full)),
        }
    } else {
        match segs.as_slice() {
            [g, v, tail @ ..] => (*g, *v, tail),
            _ => return Err(ApiError::path_not_found(&full)),
        }
    };
    let lookup = |plural: &str| {
        resource::by_plural(group, version, plural).ok_or_else(|| ApiError::path_not_found(&full))
    };
    let target = match tail {
        [plural] => Target { info: lookup(plural)?, namespace: None, name: None, subresource: None },
        // /api/v1/namespaces/{ns}/{plural}: a collection in a namespace, unless the last
        // segment is a subresource of the Namespace object itself
        ["namespaces", ns, third] if !is_namespace_subresource(core, third) => {
            let info = lookup(third)?;
            if !info.namespaced() {
                return Err(ApiError::path_not_found(&full));
            }
            Target { info, namespace: Some(ns.to_string()), name: None, subresource: None }
        }
        ["namespaces", ns, plural, name] => {
            let info = lookup(plural)?;
            if !info.namespaced() {
                return Err(ApiError::path_not_found(&full));
            }
            Target { info, namespace: Some(ns.to_string()), name: Some(name.to_string()), subresource: None }
        }
        ["namespaces", ns, plural, name, sub] => {
            let info = lookup(plural)?;
            if !info.namespaced() {
                return Err(ApiError::path_not_found(&full));
            }
            Target {
                info,
                namespace: Some(ns.to_string()),
                name: Some(name.to_string()),
                subresource: Some(sub.to_string()),
            }
        }
        [plural, name] => {
            let info = lookup(plural)?;
            if info.namespaced() {
                return Err(ApiError::path_not_found(&full));
            }
            Target { info, namespace: None, name: Some(name.to_string()), subresource: None }
        }
        [plural, name, sub] => {
            let info = lookup(plural)?;
            if info.namespaced() {
                return Err(ApiError::path_not_found(&full));
            }
            Target { info, namespace: None, name: Some(name.to_string()), subresource: Some(sub.to_string()) }
        }
        _ => return Err(ApiError::path_not_found(&full)),
    };
    if let Some(sub) = &target.subresource {
        if !target.info.subresources.contains(&sub.as_str()) {
            return Err(ApiError::path_not_found(&full));
        }
    }
    Ok(target)
}

fn is_namespace_subresource(core: bool, seg: &str) -> bool {
    core && (seg == "status" || seg == "finalize")
}

impl Target {
    pub fn storage_key(&self) -> Option<String> {
        let name = self.name.as_deref()?;
        Some(self.info.storage_key(self.namespace.as_deref(), name))
    }

    pub fn storage_prefix(&self) -> String {
        self.info.storage_prefix(self.namespace.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(core: bool, path: &str, expected: Option<(&str, Option<&str>, Option<&str>, Option<&str>)>) {
        let got = parse(core, path);
        match (got, expected) {
            (Ok(t), Some((plural, ns, name, sub))) => {
                assert_eq!(t.info.plural, plural, "{path}");
                assert_eq!(t.namespace.as_deref(), ns, "{path}");
                assert_eq!(t.name.as_deref(), name, "{path}");
                assert_eq!(t.subresource.as_deref(), sub, "{path}");
            }
            (Err(e), None) => assert_eq!(e.code, 404, "{path}"),
            (got, want) => panic!("{path}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn paths() {
        check(true, "v1/pods", Some(("pods", None, None, None)));
        check(true, "v1/namespaces", Some(("namespaces", None, None, None)));
        check(true, "v1/namespaces/default", Some(("namespaces", None, Some("default"), None)));
        check(true, "v1/namespaces/default/status", Some(("namespaces", None, Some("default"), Some("status"))));
        check(true, "v1/namespaces/default/pods", Some(("pods", Some("default"), None, None)));
        check(true, "v1/namespaces/default/pods/web", Some(("pods", Some("default"), Some("web"), None)));
        check(true, "v1/namespaces/default/pods/web/binding", Some(("pods", Some("default"), Some("web"), Some("binding"))));
        check(true, "v1/nodes/n1", Some(("nodes", None, Some("n1"), None)));
        check(true, "v1/nodes/n1/status", Some(("nodes", None, Some("n1"), Some("status"))));
        check(false, "apps/v1/namespaces/ns/deployments/web/scale", Some(("deployments", Some("ns"), Some("web"), Some("scale"))));
        check(false, "apps/v1/deployments", Some(("deployments", None, None, None)));
        check(false, "coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1", Some(("leases", Some("kube-node-lease"), Some("n1"), None)));
        // bad ones: unknown kind, wrong group, namespaced kind without namespace, cluster kind inside one, bad subresource
        check(true, "v1/widgets", None);
        check(false, "apps/v1/namespaces/ns/pods", None);
        check(true, "v1/pods/web", None);
        check(true, "v1/namespaces/default/nodes/n1", None);
        check(true, "v1/namespaces/default/pods/web/scale", None);
        check(true, "v2/pods", None);
        check(false, "apps", None);
        check(true, "", None);
    }
}
