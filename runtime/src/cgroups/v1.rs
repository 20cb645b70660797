//! cgroup v1: one hierarchy per controller, so one directory per controller,
//! `<root>/<controller>/flotilla/<id>`, each holding the same processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    create_leaf, keyed_value, read_file, signal_pids, wait_until, write_file, Cgroup, CgroupError,
    PARENT,
};
use crate::spec::Resources;

/// The controllers we put containers in; freezer only serves [`kill_all`].
pub(super) const CONTROLLERS: &[&str] = &["memory", "cpu", "pids", "freezer"];

pub(super) fn create(
    root: &Path,
    id: &str,
    res: &Resources,
) -> Result<Vec<(&'static str, PathBuf)>, CgroupError> {
    let mounted = mounted_controllers(root);
    if mounted.is_empty() {
        return Err(CgroupError::NoHierarchy {
            path: root.to_path_buf(),
        });
    }
    let needed = [
        ("memory", res.memory_bytes.is_some(), "memory"),
        ("cpu", res.cpu_quota_us.is_some(), "cpu"),
        ("pids", res.pids_limit.is_some(), "pids"),
    ];
    for (controller, wanted, limit) in needed {
        if wanted && !mounted.iter().any(|(c, _)| *c == controller) {
            return Err(CgroupError::ControllerNotMounted {
                controller,
                path: root.join(controller),
                limit,
            });
        }
    }
    let mut dirs: Vec<(&'static str, PathBuf)> = Vec::new();
    let result = (|| {
        for (controller, mount) in &mounted {
            let dir = mount.join(PARENT).join(id);
            create_leaf(&dir)?;
            dirs.push((controller, dir));
        }
        apply_limits(&dirs, res)
    })();
    if let Err(e) = result {
        // Leave nothing half-made behind.
        for (_, dir) in dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        return Err(e);
    }
    Ok(dirs)
}

pub(super) fn existing_dirs(root: &Path, id: &str) -> Vec<(&'static str, PathBuf)> {
    mounted_controllers(root)
        .into_iter()
        .map(|(c, mount)| (c, mount.join(PARENT).join(id)))
        .filter(|(_, dir)| dir.is_dir())
        .collect()
}

/// `memory.oom_control`'s `oom_kill` counter (Linux >= 4.13); kernels without it only tell us
/// the limit was hit (`memory.failcnt`), which is the best sign they give.
pub(super) fn oom_killed(dir: &Path) -> Result<bool, CgroupError> {
    if let Some(n) = keyed_value(&dir.join("memory.oom_control"), "oom_kill")? {
        return Ok(n > 0);
    }
    let path = dir.join("memory.failcnt");
    let text = read_file(&path)?;
    let n: u64 = text.trim().parse().map_err(|_| CgroupError::Parse {
        path,
        content: text.clone(),
    })?;
    Ok(n > 0)
}

pub(super) fn kill_all(cg: &Cgroup, sig: nix::sys::signal::Signal) -> Result<(), CgroupError> {
    let freezer = cg
        .dirs
        .iter()
        .find(|(c, _)| *c == "freezer")
        .map(|(_, d)| d.join("freezer.state"));
    let Some(state) = freezer else {
        signal_pids(&cg.pids()?, sig);
        return Ok(());
    };
    write_file(&state, "FROZEN")?;
    let frozen = wait_until(Duration::from_secs(1), || {
        read_file(&state).is_ok_and(|s| s.trim() == "FROZEN")
    });
    if !frozen {
        tracing::warn!(path = %state.display(), "cgroup did not freeze within 1s; signalling anyway");
    }
    let pids = cg.pids();
    if let Ok(pids) = &pids {
        signal_pids(pids, sig);
    }
    // Thaw even if listing failed, so the container is not left frozen.
    write_file(&state, "THAWED")?;
    pids.map(|_| ())
}

// ---- private ----

/// Controllers mounted as v1 hierarchies under `root`, deduplicated when co-mounted (e.g.
/// `cpu` and `cpuacct` both pointing at `cpu,cpuacct`).
fn mounted_controllers(root: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut out: Vec<(&'static str, PathBuf)> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for controller in CONTROLLERS {
        let mount = root.join(controller);
        if !mount.join("cgroup.procs").is_file() {
            continue;
        }
        let real = std::fs::canonicalize(&mount).unwrap_or_else(|_| mount.clone());
        if seen.contains(&real) {
            continue;
        }
        seen.push(real);
        out.push((controller, mount));
    }
    out
}

fn apply_limits(dirs: &[(&'static str, PathBuf)], res: &Resources) -> Result<(), CgroupError> {
    let dir = |name: &str| dirs.iter().find(|(c, _)| *c == name).map(|(_, d)| d);
    if let (Some(bytes), Some(d)) = (res.memory_bytes, dir("memory")) {
        write_file(&d.join("memory.limit_in_bytes"), &bytes.to_string())?;
        // Docker's default when only --memory is given: as much swap as memory.
        let memsw = d.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            write_file(&memsw, &bytes.saturating_mul(2).to_string())?;
        }
    }
    if let (Some(quota), Some(d)) = (res.cpu_quota_us, dir("cpu")) {
        write_file(&d.join("cpu.cfs_period_us"), &res.cpu_period_us.to_string())?;
        write_file(&d.join("cpu.cfs_quota_us"), &quota.to_string())?;
    }
    if let (Some(max), Some(d)) = (res.pids_limit, dir("pids")) {
        write_file(&d.join("pids.max"), &max.to_string())?;
    }
    Ok(())
}
