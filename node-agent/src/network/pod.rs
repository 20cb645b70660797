//! A pod's own files: `/etc/hostname`, `/etc/resolv.conf` (the node's DNS server on the bridge gateway,
//! Kubernetes' search path and `ndots:5`) and `/etc/hosts` (localhost and the pod's own name and
//! IP, as the kubelet writes it), kept in `RUN/pods/<uid>/network/` (the agent's run directory, a
//! tmpfs) and bind-mounted read-only into every container of the pod.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use api::core::Pod;

use crate::podspec;

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// `RUN/pods/<uid>/network`.
pub fn files_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("network")
}

/// The pod's resolv.conf.
pub fn render_resolv_conf(nameserver: Ipv4Addr, namespace: &str) -> String {
    format!(
        "search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\nnameserver {nameserver}\noptions ndots:5\n"
    )
}

/// The pod's hosts file: localhost, then the pod's IP with its hostname (fully qualified first
/// when the pod has a subdomain, as the kubelet does), then `spec.hostAliases`.
pub fn render_hosts(pod: &Pod, ip: Ipv4Addr) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let hostname = podspec::pod_hostname(pod);
    let spec = pod.spec.as_ref();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    match spec.and_then(|s| s.subdomain.as_deref()).filter(|s| !s.is_empty()) {
        Some(sub) => text.push_str(&format!("{ip}\t{hostname}.{sub}.{namespace}.svc.{CLUSTER_DOMAIN}\t{hostname}\n")),
        None => text.push_str(&format!("{ip}\t{hostname}\n")),
    }
    for alias in spec.and_then(|s| s.host_aliases.as_ref()).into_iter().flatten() {
        let names = alias.hostnames.iter().flatten().map(String::as_str).collect::<Vec<_>>().join("\t");
        if !names.is_empty() {
            text.push_str(&format!("\n# Entries added by HostAliases.\n{}\t{names}\n", alias.ip));
        }
    }
    text
}

/// Writes the files, and the pod's `/etc/hostname` (one for every container of the pod, as
/// containerd keeps it with the sandbox, instead of one per container from the runtime). They
/// are rewritten in place, not renamed over: a bind mount pins the inode, so running containers
/// see the new text.
pub fn write_files(pod_dir: &Path, pod: &Pod, ip: Ipv4Addr, nameserver: Ipv4Addr) -> std::io::Result<()> {
    let dir = files_dir(pod_dir);
    std::fs::create_dir_all(&dir)?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    std::fs::write(dir.join("resolv.conf"), render_resolv_conf(nameserver, namespace))?;
    std::fs::write(dir.join("hosts"), render_hosts(pod, ip))?;
    std::fs::write(dir.join("hostname"), format!("{}\n", podspec::pod_hostname(pod)))
}

/// The read-only binds (`SRC:DEST:ro`, as `RunOptions::volumes` takes them) of the pod's files,
/// leaving out a destination the container already mounts a volume on (its own wins, as in
/// the kubelet).
pub fn etc_binds(pod_dir: &Path, volumes: &[String]) -> Vec<String> {
    let dir = files_dir(pod_dir);
    ["hosts", "resolv.conf", "hostname"]
        .into_iter()
        .map(|file| (dir.join(file), format!("/etc/{file}")))
        .filter(|(_, dest)| !volumes.iter().any(|v| v.split(':').nth(1) == Some(dest.as_str())))
        .map(|(src, dest)| format!("{}:{dest}:ro", src.display()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_points_at_the_gateway_with_the_namespace_first() {
        assert_eq!(
            render_resolv_conf(Ipv4Addr::new(10, 244, 3, 1), "shop"),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.244.3.1\noptions ndots:5\n"
        );
    }

    #[test]
    fn hosts_names_the_pod_and_its_aliases() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop"},
            "spec": {"containers": [], "hostname": "web", "subdomain": "svc1",
                     "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["db", "db.local"]}]}
        }))
        .unwrap();
        let text = render_hosts(&pod, Ipv4Addr::new(10, 244, 3, 7));
        assert!(text.contains("127.0.0.1\tlocalhost\n"), "{text}");
        assert!(text.contains("10.244.3.7\tweb.svc1.shop.svc.cluster.local\tweb\n"), "{text}");
        assert!(text.contains("10.1.2.3\tdb\tdb.local\n"), "{text}");
        let plain: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "a"}, "spec": {"containers": []}})).unwrap();
        assert!(render_hosts(&plain, Ipv4Addr::new(10, 244, 3, 8)).ends_with("10.244.3.8\ta\n"));
    }

    #[test]
    fn binds_are_read_only_and_yield_to_the_containers_own_mounts() {
        let dir = Path::new("/data/pods/u1");
        assert_eq!(
            etc_binds(dir, &[]),
            vec![
                "/data/pods/u1/network/hosts:/etc/hosts:ro".to_string(),
                "/data/pods/u1/network/resolv.conf:/etc/resolv.conf:ro".to_string(),
                "/data/pods/u1/network/hostname:/etc/hostname:ro".to_string()
            ]
        );
        let own = vec!["/x/my-hosts:/etc/hosts:ro".to_string()];
        assert_eq!(
            etc_binds(dir, &own),
            vec![
                "/data/pods/u1/network/resolv.conf:/etc/resolv.conf:ro".to_string(),
                "/data/pods/u1/network/hostname:/etc/hostname:ro".to_string()
            ]
        );
    }
}
