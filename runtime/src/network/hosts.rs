//! The /etc/hosts and /etc/resolv.conf of containers on `ctl` bridge networks.
//!
//! Docker resolves the names of a user network's containers with a DNS server embedded in the
//! daemon. Flotilla has no daemon, so it writes the names into each container's hosts file
//! instead: its own name, and on user networks every other container of the network by name
//! and short id, rewritten whenever a container joins or leaves. The files are bind-mounted
//! into the containers, so they are rewritten in place (the mount pins the inode: a rename
//! would not be seen).

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

/// The nameservers docker gives a container when the host has only loopback ones.
pub const FALLBACK_NAMESERVERS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// One line of a hosts file: an address and its names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEntry {
    pub ip: Ipv4Addr,
    pub names: Vec<String>,
}

/// A container's hosts file: docker's fixed lines, the container itself, then `peers` (sorted
/// by address, so rewrites are stable).
pub fn render(own: &HostEntry, peers: &[HostEntry]) -> String {
    let mut text = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    let line = |e: &HostEntry| format!("{}\t{}\n", e.ip, e.names.join(" "));
    text.push_str(&line(own));
    let mut peers: Vec<&HostEntry> = peers.iter().filter(|p| p.ip != own.ip).collect();
    peers.sort_by_key(|p| p.ip);
    for peer in peers {
        text.push_str(&line(peer));
    }
    text
}

/// The container's resolv.conf: the host's, without loopback nameservers (they would point at
/// the container itself), and docker's public fallbacks when none remain.
pub fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let Some(addr) = words.next() else { continue };
            let loopback = addr
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false);
            if loopback {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        for server in FALLBACK_NAMESERVERS {
            out.push_str(&format!("nameserver {server}\n"));
        }
    }
    out
}

/// Replaces the contents of `path` without replacing the file (see the module doc).
pub fn write_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    file.write_all(text.as_bytes())?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ip: [u8; 4], names: &[&str]) -> HostEntry {
        HostEntry { ip: Ipv4Addr::from(ip), names: names.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn hosts_lists_self_then_peers_by_address() {
        let own = entry([172, 31, 0, 3], &["web", "0123456789ab"]);
        let peers = vec![
            entry([172, 31, 0, 4], &["db", "ba9876543210"]),
            entry([172, 31, 0, 2], &["cache", "aaaaaaaaaaaa"]),
            own.clone(),
        ];
        let text = render(&own, &peers);
        let tail: Vec<&str> = text.lines().skip(6).collect();
        assert_eq!(
            tail,
            ["172.31.0.3\tweb 0123456789ab", "172.31.0.2\tcache aaaaaaaaaaaa", "172.31.0.4\tdb ba9876543210"]
        );
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
    }

    #[test]
    fn resolv_conf_drops_loopback_nameservers() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch example.com\noptions edns0\n";
        assert_eq!(
            resolv_conf(host),
            "# generated\nnameserver 10.0.0.2\nsearch example.com\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\nsearch lan\n"),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn write_in_place_keeps_the_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hosts");
        write_in_place(&path, "a long first version\n").expect("write");
        let inode = fs::metadata(&path).expect("meta").ino();
        write_in_place(&path, "short\n").expect("rewrite");
        assert_eq!(fs::metadata(&path).expect("meta").ino(), inode);
        assert_eq!(fs::read_to_string(&path).expect("read"), "short\n");
    }
}
