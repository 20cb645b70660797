//! cgroup v2: one unified hierarchy; a container is `<mount>/flotilla/<id>`, and the
//! controllers it needs are enabled top-down through each parent's `cgroup.subtree_control`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    create_leaf, io_err, keyed_value, read_file, read_pids, signal_pids, wait_until, write_file,
    CgroupError, PARENT,
};
use crate::spec::Resources;

const WANTED: &[&str] = &["memory", "cpu", "pids"];

pub(super) fn create(root: &Path, id: &str, res: &Resources) -> Result<PathBuf, CgroupError> {
    let controllers_file = root.join("cgroup.controllers");
    if !controllers_file.is_file() {
        return Err(CgroupError::NotCgroup2 {
            path: root.to_path_buf(),
        });
    }
    let available = read_file(&controllers_file)?;
    let available: Vec<&str> = available.split_whitespace().collect();
    let needed: Vec<(&'static str, &'static str)> = [
        ("memory", res.memory_bytes.is_some()),
        ("cpu", res.cpu_quota_us.is_some()),
        ("pids", res.pids_limit.is_some()),
    ]
    .into_iter()
    .filter(|(_, wanted)| *wanted)
    .map(|(c, _)| (c, c))
    .collect();
    for (controller, limit) in &needed {
        if !available.contains(controller) {
            return Err(CgroupError::ControllerNotEnabled {
                controller,
                path: root.to_path_buf(),
                available: if available.is_empty() {
                    "nothing".into()
                } else {
                    available.join(" ")
                },
                limit,
            });
        }
    }

    let parent = root.join(PARENT);
    std::fs::create_dir_all(&parent).map_err(|e| io_err("creating", &parent, e))?;
    // The controllers must be on in the root and in our parent for the leaf to have their
    // files. Those we need must succeed; the others (memory.events for OOM reports, pids) are a
    // convenience.
    for dir in [root, parent.as_path()] {
        for controller in WANTED.iter().filter(|c| available.contains(c)) {
            let required = needed.iter().any(|(c, _)| c == controller);
            match enable_controller(dir, controller) {
                Ok(()) => {}
                Err(e) if required => return Err(e),
                Err(e) => tracing::debug!(error = %e, "optional cgroup controller not enabled"),
            }
        }
    }

    let dir = parent.join(id);
    create_leaf(&dir)?;
    if let Err(e) = apply_limits(&dir, res) {
        let _ = std::fs::remove_dir(&dir);
        return Err(e);
    }
    Ok(dir)
}

/// `memory.events`' `oom_kill` counter; no memory controller means no limit to be killed for.
pub(super) fn oom_killed(dir: &Path) -> Result<bool, CgroupError> {
    let events = dir.join("memory.events");
    if !events.exists() {
        return Ok(false);
    }
    Ok(keyed_value(&events, "oom_kill")?.unwrap_or(0) > 0)
}

pub(super) fn kill_all(dir: &Path, sig: nix::sys::signal::Signal) -> Result<(), CgroupError> {
    let kill_file = dir.join("cgroup.kill");
    if sig == nix::sys::signal::Signal::SIGKILL && kill_file.exists() {
        // Linux >= 5.14 kills the whole cgroup atomically, forks included.
        return write_file(&kill_file, "1");
    }
    let freeze = dir.join("cgroup.freeze");
    if !freeze.exists() {
        signal_pids(&read_pids(&dir.join("cgroup.procs"))?, sig);
        return Ok(());
    }
    write_file(&freeze, "1")?;
    let events = dir.join("cgroup.events");
    let frozen = wait_until(Duration::from_secs(1), || {
        keyed_value(&events, "frozen").is_ok_and(|v| v == Some(1))
    });
    if !frozen {
        tracing::warn!(path = %dir.display(), "cgroup did not freeze within 1s; signalling anyway");
    }
    let pids = read_pids(&dir.join("cgroup.procs"));
    if let Ok(pids) = &pids {
        signal_pids(pids, sig);
    }
    // Thaw even if listing failed, so the container is not left frozen.
    write_file(&freeze, "0")?;
    pids.map(|_| ())
}

// ---- private ----

fn enable_controller(dir: &Path, controller: &str) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let current = read_file(&path)?;
    if current.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    write_file(&path, &format!("+{controller}"))
}

fn apply_limits(dir: &Path, res: &Resources) -> Result<(), CgroupError> {
    if let Some(bytes) = res.memory_bytes {
        write_file(&dir.join("memory.max"), &bytes.to_string())?;
        // Docker's default when only --memory is given: as much swap as memory.
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write_file(&swap, &bytes.to_string())?;
        }
    }
    if let Some(quota) = res.cpu_quota_us {
        write_file(
            &dir.join("cpu.max"),
            &format!("{quota} {}", res.cpu_period_us),
        )?;
    }
    if let Some(max) = res.pids_limit {
        write_file(&dir.join("pids.max"), &max.to_string())?;
    }
    Ok(())
}
