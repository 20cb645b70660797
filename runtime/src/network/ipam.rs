//! IP address management: a file-backed allocator of IPv4 addresses from one subnet, each
//! address owned by a string (a pod uid, a container id).
//!
//! The state is one JSON object `{"allocations": {"<ip>": "<owner>"}, "last": "<ip>"}` written
//! atomically (temporary file, fsync, rename), so a crash leaves either the old or the new
//! allocation, never a torn file (the older flat `{"<ip>": "<owner>"}` form is still read).
//! [`Ipam::without_fsync`] leaves out the fsync where the allocations need not outlive a power
//! loss (a pod's address lives no longer than its network namespace, which a reboot removes);
//! an empty file, what an unsynced write can leave after one, then reads as no allocations.
//!
//! Addresses are handed out round-robin: the first free address after the last one handed out,
//! wrapping at the end of the subnet, as CNI's host-local plugin does. Taking the lowest free
//! address instead would give a new pod the address its predecessor just released, while peers
//! still hold the old pod's MAC in their neighbour caches and conntrack still holds its flows:
//! connections to the new pod would then go to a MAC that no longer exists until the cache
//! entry expires (seen as a lost request during rolling updates).
//!
//! Hand-written because the allocation rule is tiny (the subnet's first usable address is
//! reserved for the gateway) and CNI's host-local plugin is a separate binary.
//! One process owns a file; callers serialise access (an `Ipam` is `&mut` to change).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("cannot read the address allocations {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the address allocations {path} are not valid JSON ({source}): fix or remove the file")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write the address allocations {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no free address left in {subnet} for {owner}: remove pods or containers to free addresses")]
    Exhausted { subnet: Ipv4Net, owner: String },
    #[error("subnet {0} is too small to allocate from: it needs at least a /30")]
    TooSmall(Ipv4Net),
}

/// An allocator over one subnet, backed by a file.
#[derive(Debug)]
pub struct Ipam {
    path: PathBuf,
    subnet: Ipv4Net,
    allocations: BTreeMap<Ipv4Addr, String>,
    /// The address handed out last; the next search starts after it.
    last: Option<Ipv4Addr>,
    /// Each write is fsynced before it counts.
    fsync: bool,
}

/// The file's form.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    allocations: BTreeMap<Ipv4Addr, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<Ipv4Addr>,
}

/// What may be found on disk: the current form, or the flat map of earlier versions.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OnDisk {
    Current(Saved),
    Flat(BTreeMap<Ipv4Addr, String>),
}

impl Ipam {
    /// Opens (or starts) the allocations in `path` for `subnet`. Entries outside the subnet
    /// (left from an earlier subnet) are dropped on the next write.
    pub fn open(path: &Path, subnet: Ipv4Net) -> Result<Self, IpamError> {
        let subnet = subnet.trunc();
        if subnet.prefix_len() > 30 {
            return Err(IpamError::TooSmall(subnet));
        }
        let saved = match fs::read(path) {
            Ok(bytes) if bytes.is_empty() => Saved { allocations: BTreeMap::new(), last: None },
            Ok(bytes) => match serde_json::from_slice::<OnDisk>(&bytes) {
                Ok(OnDisk::Current(saved)) => saved,
                Ok(OnDisk::Flat(allocations)) => Saved { allocations, last: None },
                // Parse again as the current form for an error message that says where.
                Err(_) => serde_json::from_slice::<Saved>(&bytes)
                    .map_err(|source| IpamError::Parse { path: path.to_path_buf(), source })?,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved { allocations: BTreeMap::new(), last: None },
            Err(source) => return Err(IpamError::Read { path: path.to_path_buf(), source }),
        };
        let allocations = saved.allocations.into_iter().filter(|(ip, _)| usable(subnet, *ip)).collect();
        let last = saved.last.filter(|ip| usable(subnet, *ip));
        Ok(Self { path: path.to_path_buf(), subnet, allocations, last, fsync: true })
    }

    /// Writes without fsync from now on: for allocations that a reboot makes moot (the
    /// interfaces holding the addresses are gone then), where a burst of allocations would
    /// otherwise wait for one disk flush each, one after the other.
    pub fn without_fsync(mut self) -> Self {
        self.fsync = false;
        self
    }

    /// The subnet addresses come from.
    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The gateway's address: the subnet's first usable address, never handed out.
    pub fn gateway(&self) -> Ipv4Addr {
        gateway(self.subnet)
    }

    /// The owner's address, allocating the next free one (round-robin) if it has none;
    /// idempotent.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = self.get(owner) {
            return Ok(ip);
        }
        let gateway = self.gateway();
        let free = |ip: &Ipv4Addr| *ip != gateway && !self.allocations.contains_key(ip);
        let after = self.last.map(u32::from).unwrap_or(0);
        let ip = self
            .subnet
            .hosts()
            .filter(|ip| u32::from(*ip) > after)
            .find(free)
            .or_else(|| self.subnet.hosts().find(free))
            .ok_or_else(|| IpamError::Exhausted { subnet: self.subnet, owner: owner.to_string() })?;
        let previous = self.last.replace(ip);
        self.allocations.insert(ip, owner.to_string());
        if let Err(e) = self.save() {
            self.allocations.remove(&ip);
            self.last = previous;
            return Err(e);
        }
        Ok(ip)
    }

    /// Frees the owner's address; returns it, or `None` when the owner had none.
    pub fn release(&mut self, owner: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        let Some(ip) = self.get(owner) else { return Ok(None) };
        self.allocations.remove(&ip);
        self.save()?;
        Ok(Some(ip))
    }

    /// Frees every address whose owner is not in `live`; returns what was freed.
    pub fn release_missing(&mut self, live: &HashSet<String>) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let gone: Vec<(Ipv4Addr, String)> =
            self.allocations.iter().filter(|(_, owner)| !live.contains(*owner)).map(|(ip, o)| (*ip, o.clone())).collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        for (ip, _) in &gone {
            self.allocations.remove(ip);
        }
        self.save()?;
        Ok(gone)
    }

    /// The owner's address, if it has one.
    pub fn get(&self, owner: &str) -> Option<Ipv4Addr> {
        self.allocations.iter().find(|(_, o)| o.as_str() == owner).map(|(ip, _)| *ip)
    }

    /// Every allocation, address → owner.
    pub fn allocations(&self) -> &BTreeMap<Ipv4Addr, String> {
        &self.allocations
    }

    fn save(&self) -> Result<(), IpamError> {
        let err = |source| IpamError::Write { path: self.path.clone(), source };
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(err)?;
        }
        let saved = Saved { allocations: self.allocations.clone(), last: self.last };
        let bytes = serde_json::to_vec_pretty(&saved).map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut file = fs::File::create(&tmp).map_err(err)?;
        file.write_all(&bytes).map_err(err)?;
        if self.fsync {
            file.sync_all().map_err(err)?;
        }
        fs::rename(&tmp, &self.path).map_err(err)
    }
}

/// The gateway address of a subnet: its first usable address (`10.244.3.1` in `10.244.3.0/24`).
pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    let base = u32::from(subnet.trunc().network());
    Ipv4Addr::from(base.wrapping_add(1))
}

fn usable(subnet: Ipv4Net, ip: Ipv4Addr) -> bool {
    subnet.contains(&ip) && ip != subnet.network() && ip != subnet.broadcast() && ip != gateway(subnet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn allocates_round_robin_after_the_gateway_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network/ipam.json");
        let mut ipam = Ipam::open(&path, net("10.244.3.0/24")).unwrap();
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 244, 3, 1));
        assert_eq!(ipam.allocate("a").unwrap(), Ipv4Addr::new(10, 244, 3, 2));
        assert_eq!(ipam.allocate("b").unwrap(), Ipv4Addr::new(10, 244, 3, 3));
        assert_eq!(ipam.allocate("a").unwrap(), Ipv4Addr::new(10, 244, 3, 2));
        assert_eq!(ipam.release("a").unwrap(), Some(Ipv4Addr::new(10, 244, 3, 2)));
        assert_eq!(ipam.release("a").unwrap(), None);
        // a released address is not handed out again at once, also not after a reopen
        assert_eq!(ipam.allocate("c").unwrap(), Ipv4Addr::new(10, 244, 3, 4));
        let mut ipam = Ipam::open(&path, net("10.244.3.0/24")).unwrap();
        assert_eq!(ipam.allocate("d").unwrap(), Ipv4Addr::new(10, 244, 3, 5));
    }

    #[test]
    fn wraps_around_to_the_first_free_address_at_the_end_of_the_subnet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        // a /29: gateway .1, usable .2 to .6
        let mut ipam = Ipam::open(&path, net("10.0.0.0/29")).unwrap();
        for owner in ["a", "b", "c", "d", "e"] {
            ipam.allocate(owner).unwrap();
        }
        ipam.release("b").unwrap();
        ipam.release("d").unwrap();
        assert_eq!(ipam.allocate("f").unwrap(), Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(ipam.allocate("g").unwrap(), Ipv4Addr::new(10, 0, 0, 5));
        assert!(matches!(ipam.allocate("h"), Err(IpamError::Exhausted { .. })));
    }

    #[test]
    fn reads_the_flat_form_of_earlier_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        fs::write(&path, r#"{"10.244.3.2": "a", "10.244.3.3": "b"}"#).unwrap();
        let mut ipam = Ipam::open(&path, net("10.244.3.0/24")).unwrap();
        assert_eq!(ipam.get("b"), Some(Ipv4Addr::new(10, 244, 3, 3)));
        assert_eq!(ipam.allocate("c").unwrap(), Ipv4Addr::new(10, 244, 3, 4));
        let saved: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(saved["last"], "10.244.3.4");
        assert_eq!(saved["allocations"]["10.244.3.2"], "a");
    }

    #[test]
    fn survives_reopen_and_drops_entries_outside_the_subnet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        let mut ipam = Ipam::open(&path, net("10.244.3.0/24")).unwrap();
        ipam.allocate("a").unwrap();
        ipam.allocate("b").unwrap();
        let again = Ipam::open(&path, net("10.244.3.0/24")).unwrap();
        assert_eq!(again.get("b"), Some(Ipv4Addr::new(10, 244, 3, 3)));
        let other = Ipam::open(&path, net("10.244.7.0/24")).unwrap();
        assert!(other.allocations().is_empty());
    }

    #[test]
    fn release_missing_frees_only_dead_owners() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        let mut ipam = Ipam::open(&path, net("10.244.3.0/24")).unwrap();
        for owner in ["a", "b", "c"] {
            ipam.allocate(owner).unwrap();
        }
        let live: HashSet<String> = ["b".to_string()].into();
        let freed = ipam.release_missing(&live).unwrap();
        let owners: Vec<&str> = freed.iter().map(|(_, o)| o.as_str()).collect();
        assert_eq!(owners, ["a", "c"]);
        let reopened = Ipam::open(&path, net("10.244.3.0/24")).unwrap();
        assert_eq!(reopened.allocations().len(), 1);
        assert_eq!(reopened.get("b"), Some(Ipv4Addr::new(10, 244, 3, 3)));
    }

    #[test]
    fn exhaustion_is_an_error_and_small_subnets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        // A /30 has two usable addresses: the gateway and one more.
        let mut ipam = Ipam::open(&path, net("10.0.0.0/30")).unwrap();
        assert_eq!(ipam.allocate("a").unwrap(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(matches!(ipam.allocate("b"), Err(IpamError::Exhausted { .. })));
        assert!(matches!(Ipam::open(&path, net("10.0.0.0/31")), Err(IpamError::TooSmall(_))));
    }

    #[test]
    fn unsynced_writes_read_back_and_an_empty_file_is_no_allocations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        let mut ipam = Ipam::open(&path, net("10.244.3.0/24")).unwrap().without_fsync();
        ipam.allocate("a").unwrap();
        assert_eq!(Ipam::open(&path, net("10.244.3.0/24")).unwrap().get("a"), Some(Ipv4Addr::new(10, 244, 3, 2)));
        fs::write(&path, b"").unwrap();
        assert!(Ipam::open(&path, net("10.244.3.0/24")).unwrap().allocations().is_empty());
    }

    #[test]
    fn a_corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        fs::write(&path, b"{not json").unwrap();
        let err = Ipam::open(&path, net("10.244.0.0/24")).unwrap_err();
        assert!(err.to_string().contains("ipam.json"), "{err}");
    }
}
