//! The table of kinds the cluster serves: group, version, plural, short names, scope and
//! subresources of each, and the paths and storage keys computed from them, so that no other
//! crate spells a REST path or a store key by hand.

/// Whether objects of a kind live inside a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// One served kind, as discovery describes it.
#[derive(Debug)]
pub struct ResourceInfo {
    /// "" for the core group
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub scope: Scope,
    pub subresources: &'static [&'static str],
    /// whether the kind has a status stanza kept apart by the status subresource
    pub has_status: bool,
    pub verbs: &'static [&'static str],
}

impl ResourceInfo {
    /// "apps/v1", or "v1" for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// "DeploymentList"
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// "deployments.apps", or "pods" for the core group, as kubectl prints it in messages.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// "Deployment.apps", or "Pod" for the core group, as Kubernetes names a kind in errors.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// "core" for the core group, else the group.
    pub fn group_or_core(&self) -> &'static str {
        if self.group.is_empty() {
            "core"
        } else {
            self.group
        }
    }

    /// "/api/v1" or "/apis/apps/v1".
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// `/api/v1/namespaces/{ns}/pods`, `/apis/apps/v1/namespaces/{ns}/deployments`,
    /// `/api/v1/nodes`; a namespaced kind with `None` means all namespaces (`/api/v1/pods`).
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => {
                format!(
                    "{}/namespaces/{}/{}",
                    self.group_version_path(),
                    ns,
                    self.plural
                )
            }
            _ => format!("{}/{}", self.group_version_path(), self.plural),
        }
    }

    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{}", self.collection_path(namespace), name)
    }

    /// The prefix of this kind's keys in the replicated store, ending with "/":
    /// "/{group_or_core}/{plural}/{ns}/" for one namespace, "/{group_or_core}/{plural}/" for all
    /// of them or for a cluster-scoped kind.
    pub fn storage_prefix(&self, namespace: Option<&str>) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => {
                format!("/{}/{}/{}/", self.group_or_core(), self.plural, ns)
            }
            _ => format!("/{}/{}/", self.group_or_core(), self.plural),
        }
    }

    /// "/{group_or_core}/{plural}/{ns}/{name}" (namespaced) or "/{group_or_core}/{plural}/{name}".
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{}", self.storage_prefix(namespace), name)
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Every kind the cluster serves.
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        short_names: &["ns"],
        scope: Scope::Cluster,
        subresources: &["status"],
        has_status: true,
        // Kubernetes serves no deletecollection for namespaces.
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        short_names: &["no"],
        scope: Scope::Cluster,
        subresources: &["status"],
        has_status: true,
        verbs: ALL_VERBS,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        scope: Scope::Namespaced,
        subresources: &["status", "binding"],
        has_status: true,
        verbs: ALL_VERBS,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        scope: Scope::Namespaced,
        subresources: &["status"],
        has_status: true,
        verbs: ALL_VERBS,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        short_names: &["ep"],
        scope: Scope::Namespaced,
        subresources: &[],
        has_status: false,
        verbs: ALL_VERBS,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        scope: Scope::Namespaced,
        subresources: &[],
        has_status: false,
        verbs: ALL_VERBS,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        short_names: &[],
        scope: Scope::Namespaced,
        subresources: &[],
        has_status: false,
        verbs: ALL_VERBS,
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        scope: Scope::Namespaced,
        subresources: &[],
        has_status: false,
        verbs: ALL_VERBS,
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        scope: Scope::Namespaced,
        subresources: &["status", "scale"],
        has_status: true,
        verbs: ALL_VERBS,
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        scope: Scope::Namespaced,
        subresources: &["status", "scale"],
        has_status: true,
        verbs: ALL_VERBS,
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        short_names: &[],
        scope: Scope::Namespaced,
        subresources: &[],
        has_status: false,
        verbs: ALL_VERBS,
    },
];

/// The kind served at `/{group}/{version}/{plural}` (group "" for core).
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The kind named by an object's `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// kubectl-style, case-insensitive: "pods", "pod", "po", "Pod", "deployments.apps", "deploy",
/// "deployment.apps", "deployments.v1.apps".
pub fn lookup(name: &str) -> Option<&'static ResourceInfo> {
    let name = name.to_ascii_lowercase();
    let (resource, qualifier) = match name.split_once('.') {
        Some((r, q)) => (r, Some(q)),
        None => (name.as_str(), None),
    };
    if resource.is_empty() {
        return None;
    }
    let names_match = |r: &ResourceInfo| {
        r.plural == resource
            || r.singular == resource
            || r.kind.eq_ignore_ascii_case(resource)
            || r.short_names.contains(&resource)
    };
    let qualifier_matches = |r: &ResourceInfo| match qualifier {
        None => true,
        // "deployments.apps" or "deployments.v1.apps"
        Some(q) => {
            q == r.group
                || q.split_once('.')
                    .is_some_and(|(v, g)| v == r.version && g == r.group)
        }
    };
    RESOURCES
        .iter()
        .find(|r| names_match(r) && qualifier_matches(r))
}

/// The table entry of a k8s-openapi type, if the cluster serves it.
pub fn info_of<K: k8s_openapi::Resource>() -> Option<&'static ResourceInfo> {
    by_kind(K::API_VERSION, K::KIND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_agrees_with_k8s_openapi() {
        fn check<K: k8s_openapi::Resource>()
        where
            K::Scope: 'static,
        {
            let info = info_of::<K>().unwrap_or_else(|| panic!("{} is not served", K::KIND));
            assert_eq!(info.group, K::GROUP);
            assert_eq!(info.version, K::VERSION);
            assert_eq!(info.plural, K::URL_PATH_SEGMENT);
            let namespaced = std::any::TypeId::of::<K::Scope>()
                == std::any::TypeId::of::<k8s_openapi::NamespaceResourceScope>();
            assert_eq!(info.namespaced(), namespaced, "{}", K::KIND);
        }
        use crate::{apps, coordination, core};
        check::<core::Namespace>();
        check::<core::Node>();
        check::<core::Pod>();
        check::<core::Service>();
        check::<core::Endpoints>();
        check::<core::ConfigMap>();
        check::<core::Secret>();
        check::<core::Event>();
        check::<apps::Deployment>();
        check::<apps::ReplicaSet>();
        check::<coordination::Lease>();
        assert_eq!(RESOURCES.len(), 11);
    }

    #[test]
    fn lookup_like_kubectl() {
        fn check(input: &str, expected: Option<&str>) {
            assert_eq!(
                lookup(input).map(|r| r.qualified_name()).as_deref(),
                expected,
                "{input}"
            );
        }
        check("pods", Some("pods"));
        check("pod", Some("pods"));
        check("po", Some("pods"));
        check("Pod", Some("pods"));
        check("PODS", Some("pods"));
        check("deployments.apps", Some("deployments.apps"));
        check("deployment.apps", Some("deployments.apps"));
        check("deployments.v1.apps", Some("deployments.apps"));
        check("deploy", Some("deployments.apps"));
        check("rs", Some("replicasets.apps"));
        check("ns", Some("namespaces"));
        check("no", Some("nodes"));
        check("svc", Some("services"));
        check("ep", Some("endpoints"));
        check("cm", Some("configmaps"));
        check("ev", Some("events"));
        check("secrets", Some("secrets"));
        check("leases", Some("leases.coordination.k8s.io"));
        check(
            "lease.coordination.k8s.io",
            Some("leases.coordination.k8s.io"),
        );
        check("deployments.extensions", None);
        check("pods.apps", None);
        check("widgets", None);
        check("", None);
        check(".apps", None);
    }

    #[test]
    fn names_and_paths() {
        let deploy = lookup("deploy").unwrap();
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.list_kind(), "DeploymentList");
        assert_eq!(deploy.qualified_kind(), "Deployment.apps");
        assert_eq!(
            deploy.collection_path(Some("prod")),
            "/apis/apps/v1/namespaces/prod/deployments"
        );
        assert_eq!(deploy.collection_path(None), "/apis/apps/v1/deployments");
        assert_eq!(
            deploy.object_path(Some("prod"), "web"),
            "/apis/apps/v1/namespaces/prod/deployments/web"
        );
        assert_eq!(
            deploy.storage_prefix(Some("prod")),
            "/apps/deployments/prod/"
        );
        assert_eq!(deploy.storage_prefix(None), "/apps/deployments/");
        assert_eq!(
            deploy.storage_key(Some("prod"), "web"),
            "/apps/deployments/prod/web"
        );

        let pod = lookup("po").unwrap();
        assert_eq!(pod.api_version(), "v1");
        assert_eq!(pod.group_or_core(), "core");
        assert_eq!(pod.qualified_kind(), "Pod");
        assert_eq!(pod.collection_path(None), "/api/v1/pods");
        assert_eq!(
            pod.object_path(Some("default"), "x"),
            "/api/v1/namespaces/default/pods/x"
        );
        assert_eq!(
            pod.storage_key(Some("default"), "x"),
            "/core/pods/default/x"
        );

        let node = lookup("nodes").unwrap();
        assert!(!node.namespaced());
        // a namespace given for a cluster-scoped kind is ignored rather than spelled into a path
        assert_eq!(node.collection_path(Some("ignored")), "/api/v1/nodes");
        assert_eq!(node.object_path(None, "n1"), "/api/v1/nodes/n1");
        assert_eq!(node.storage_key(None, "n1"), "/core/nodes/n1");

        assert_eq!(
            by_plural("apps", "v1", "replicasets").map(|r| r.kind),
            Some("ReplicaSet")
        );
        assert_eq!(by_plural("", "v1", "replicasets").map(|r| r.kind), None);
        assert_eq!(by_kind("v1", "Secret").map(|r| r.plural), Some("secrets"));
        assert_eq!(by_kind("apps/v1", "Secret").map(|r| r.plural), None);
        assert_eq!(
            by_kind("coordination.k8s.io/v1", "Lease").map(|r| r.plural),
            Some("leases")
        );
    }
}
