//! `exec`: runs a command in a running container (`flotilla-monitor --exec ROOT ID`, started
//! by [`super::Runtime::exec`] with the caller's standard streams). It joins the container's
//! cgroup and namespaces through /proc/PID/ns/*, forks so the command lands in the PID
//! namespace, and gives it the container's user, capabilities and no_new_privs.
//!
//! It is a separate single-threaded process because `setns` into a mount namespace is refused
//! to multi-threaded processes such as `ctl` or the node agent.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};

use super::monitor::EXEC_REQUEST_ENV;
use super::setup::{exec_process, ProcessConfig};
use super::state::{self, Status};
use super::ExecOptions;
use crate::cgroups::Cgroup;

/// The exec helper's entry point; returns the command's exit code (126/127 when it cannot be
/// executed, 125 when the container cannot be entered).
pub fn exec_main(root: &Path, id: &str) -> i32 {
    match enter_and_run(root, id) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("Error response from daemon: {message}");
            125
        }
    }
}

fn enter_and_run(root: &Path, id: &str) -> Result<i32, String> {
    let request: ExecOptions = serde_json::from_str(&std::env::var(EXEC_REQUEST_ENV).unwrap_or_default())
        .map_err(|e| format!("invalid exec request in ${EXEC_REQUEST_ENV}: {e}"))?;
    let dir = root.join("containers").join(id);
    let st = state::load(&dir).map_err(|e| e.to_string())?;
    if st.status != Status::Running || !super::process_alive(st.pid, st.pid_start_time) {
        return Err(format!("container {id} is not running"));
    }
    if let Ok(driver) = Cgroup::detect() {
        if let Ok(cgroup) = Cgroup::open(&driver, id) {
            cgroup.add_process(std::process::id() as i32).map_err(|e| e.to_string())?;
        }
    }
    // Open every namespace before entering any: once in the mount namespace, the host's /proc
    // is out of sight. The mount namespace goes last for the same reason.
    let kinds = [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut namespaces = Vec::new();
    for (name, flag) in kinds {
        let path = format!("/proc/{}/ns/{name}", st.pid);
        let file = fs::File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
        namespaces.push((name, flag, file));
    }
    for (name, flag, file) in &namespaces {
        setns(file, *flag).map_err(|e| format!("entering the container's {name} namespace: {e}"))?;
    }
    drop(namespaces);

    let mut env = st.spec.env.clone();
    let overridden: HashSet<&str> = request.env.iter().map(|kv| kv.split('=').next().unwrap_or(kv)).collect();
    env.retain(|kv| !overridden.contains(kv.split('=').next().unwrap_or(kv)));
    env.extend(request.env.iter().cloned());
    let cwd = request.workdir.clone().unwrap_or_else(|| st.spec.cwd.clone());
    let process = ProcessConfig {
        args: &request.args,
        env: &env,
        cwd: &cwd,
        uid: st.spec.uid,
        gid: st.spec.gid,
        additional_gids: &st.spec.additional_gids,
        capabilities: &st.spec.capabilities,
        no_new_privileges: st.spec.no_new_privileges,
    };
    // SAFETY: this helper is single-threaded, so the child may allocate after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let error = exec_process(&process, false);
            eprintln!("OCI runtime exec failed: exec failed: unable to start container process: {}: unknown", error.message);
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(error.code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("waiting for the exec'd process: {e}")),
            }
        },
        Err(e) => Err(format!("fork: {e}")),
    }
}
