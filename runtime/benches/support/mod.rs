//! Helpers the runtime benchmarks share: knobs from the environment and finding the tools to
//! compare against.

use std::process::{Command, Stdio};

/// A positive number from the environment, or `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

/// Whether `binary` is a file in one of PATH's directories.
pub fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(binary).is_file()))
        .unwrap_or(false)
}

/// Whether a Docker engine answers (`docker info`), not just the CLI being installed.
pub fn docker_engine_runs() -> bool {
    on_path("docker")
        && Command::new("docker")
            .arg("info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}
