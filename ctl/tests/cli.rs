//! Runs the `ctl` binary for what needs no apiserver: help, completion scripts, configuration
//! errors, an unreachable server, and `cluster status` against a tiny canned HTTP server.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::thread;

/// Runs ctl with a clean environment: an empty HOME and no KUBECONFIG, so the developer's own
/// kubeconfig never leaks into a test.
fn ctl(home: &Path, args: &[&str]) -> Output {
    let result = Command::new(env!("CARGO_BIN_EXE_ctl"))
        .args(args)
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("http_proxy")
        .output();
    match result {
        Ok(output) => output,
        Err(e) => panic!("cannot run ctl: {e}"),
    }
}

fn home() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn assert_clean_failure(output: &Output) {
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(output));
    assert!(!stderr(output).contains("panicked"), "{}", stderr(output));
    assert!(!stderr(output).contains("backtrace"), "{}", stderr(output));
}

#[test]
fn help_lists_the_commands_with_examples() {
    let home = home();
    let output = ctl(home.path(), &["--help"]);
    assert!(output.status.success());
    let text = stdout(&output);
    for expected in [
        "cluster",
        "version",
        "completion",
        "--kubeconfig",
        "--server",
        "--namespace",
        "Examples:",
    ] {
        assert!(text.contains(expected), "--help lacks {expected}:\n{text}");
    }
    for args in [
        &["cluster", "--help"][..],
        &["cluster", "status", "--help"],
        &["cluster", "add-replica", "--help"],
        &["cluster", "remove-replica", "--help"],
        &["version", "--help"],
        &["completion", "--help"],
    ] {
        let output = ctl(home.path(), args);
        assert!(output.status.success(), "{args:?}");
        let text = stdout(&output);
        assert!(
            text.contains("Examples:\n  # "),
            "{args:?} has no example:\n{text}"
        );
        assert!(text.contains("ctl "), "{args:?}");
    }
}

#[test]
fn completion_scripts() {
    let home = home();
    for (shell, marker) in [
        ("bash", "_ctl()"),
        ("zsh", "#compdef ctl"),
        ("fish", "complete -c ctl"),
    ] {
        let output = ctl(home.path(), &["completion", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        assert!(script.contains(marker), "{shell} script lacks {marker}");
        assert!(
            script.contains("add-replica"),
            "{shell} script lacks subcommands"
        );
    }
    let output = ctl(home.path(), &["completion", "tcsh"]);
    assert_clean_failure(&output);
    assert!(
        stderr(&output).starts_with("error: invalid value 'tcsh'"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usage_errors_exit_1() {
    let home = home();
    let output = ctl(home.path(), &["cluster", "frobnicate"]);
    assert_clean_failure(&output);
    assert!(
        stderr(&output).starts_with("error: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn missing_kubeconfig_is_reported() {
    let home = home();
    let missing = home.path().join("no-such-config");
    let missing = missing.to_string_lossy();
    let output = ctl(
        home.path(),
        &["--kubeconfig", &missing, "cluster", "status"],
    );
    assert_clean_failure(&output);
    let message = stderr(&output);
    assert!(
        message.starts_with(&format!("error: cannot read kubeconfig {missing}: ")),
        "{message}"
    );

    // No flag, no KUBECONFIG, no ~/.kube/config.
    let output = ctl(home.path(), &["cluster", "status"]);
    assert_clean_failure(&output);
    assert!(
        stderr(&output).starts_with("error: no kubeconfig found: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_kubeconfig_context_is_reported() {
    let home = home();
    let path = home.path().join("config");
    let written = std::fs::write(
        &path,
        "current-context: a\ncontexts: [{name: a, context: {cluster: a}}]\nclusters: [{name: a, cluster: {server: 'http://127.0.0.1:1'}}]\n",
    );
    assert!(written.is_ok());
    let path = path.to_string_lossy();
    let output = ctl(
        home.path(),
        &["--kubeconfig", &path, "--context", "b", "version"],
    );
    assert_clean_failure(&output);
    assert_eq!(
        stderr(&output),
        format!("error: kubeconfig {path}: context \"b\" not found\n")
    );
}

#[test]
fn unreachable_server_names_the_address() {
    let home = home();
    let url = closed_port_url();
    let output = ctl(home.path(), &["--server", &url, "cluster", "status"]);
    assert_clean_failure(&output);
    assert_eq!(
        stderr(&output),
        format!("error: unable to connect to the server: {url}: connection refused\n")
    );

    // kubectl prints the client version before failing to reach the server.
    let output = ctl(home.path(), &["--server", &url, "version"]);
    assert_clean_failure(&output);
    assert!(stdout(&output).starts_with("Client Version: v"));
}

#[test]
fn version_client_needs_no_server() {
    let home = home();
    let output = ctl(home.path(), &["version", "--client"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!("Client Version: v{}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn cluster_status_prints_a_table() {
    let home = home();
    let body = r#"{"leader": 1, "replicas": [{"id":1,"apiAddr":"127.0.0.1:6443","peerAddr":"127.0.0.1:6444","role":"leader","voter":true,"term":3,"lastLogIndex":120,"lastApplied":120,"healthy":true,"error":null}]}"#;
    let (url, server) = serve_once(200, body);
    let output = ctl(
        home.path(),
        &["--server", &url, "--token", "t0k", "cluster", "status"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "ID    ADDRESS          ROLE     TERM   APPLIED   HEALTH\n\
         1     127.0.0.1:6443   leader   3      120       healthy\n"
    );
    let request = server.join().unwrap_or_default();
    assert!(
        request.starts_with("GET /flotilla/v1/cluster HTTP/1.1"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: bearer t0k"),
        "{request}"
    );
}

#[test]
fn server_errors_print_like_kubectl() {
    let home = home();
    let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","message":"only the admin token may change replicas","code":403}"#;
    let (url, server) = serve_once(403, body);
    let output = ctl(
        home.path(),
        &["--server", &url, "cluster", "remove-replica", "2"],
    );
    assert_clean_failure(&output);
    assert_eq!(
        stderr(&output),
        "Error from server (Forbidden): only the admin token may change replicas\n"
    );
    let request = server.join().unwrap_or_default();
    assert!(
        request.starts_with("DELETE /flotilla/v1/cluster/replicas/2 HTTP/1.1"),
        "{request}"
    );
}

#[test]
fn add_replica_checks_addresses_before_connecting() {
    let home = home();
    let output = ctl(
        home.path(),
        &[
            "--server",
            "http://127.0.0.1:1",
            "cluster",
            "add-replica",
            "4",
            "--api-addr",
            "nowhere",
            "--peer-addr",
            "a:1",
        ],
    );
    assert_clean_failure(&output);
    assert_eq!(
        stderr(&output),
        "error: --api-addr \"nowhere\" is not HOST:PORT, for example 10.0.0.4:6443\n"
    );
}

/// The URL of a local port nothing listens on.
fn closed_port_url() -> String {
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => panic!("cannot bind: {e}"),
    };
    match listener.local_addr() {
        Ok(addr) => format!("http://{addr}"),
        Err(e) => panic!("{e}"),
    }
}

/// Answers one HTTP request with `body`; the thread returns the request head.
fn serve_once(status: u16, body: &'static str) -> (String, thread::JoinHandle<String>) {
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => panic!("cannot bind: {e}"),
    };
    let url = match listener.local_addr() {
        Ok(addr) => format!("http://{addr}"),
        Err(e) => panic!("{e}"),
    };
    let handle = thread::spawn(move || {
        let Ok((mut socket, _)) = listener.accept() else {
            return String::new();
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(response.as_bytes());
        String::from_utf8_lossy(&head).to_string()
    });
    (url, handle)
}
