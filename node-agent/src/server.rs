//! The agent's HTTPS server, which the apiserver calls to relay `pods/log` and `pods/exec`:
//! `GET /containerLogs/{ns}/{pod}/{container}` streams the container's log as text, and
//! `GET /exec/{ns}/{pod}/{container}?command=...` runs a command over a WebSocket in the
//! Kubernetes channel protocol (v5.channel.k8s.io, or v4): binary frames whose first byte is the
//! channel (0 stdin, 1 stdout, 2 stderr, 3 the final Status, 255 close in v5).
//!
//! Only clients with a certificate signed by the cluster CA get in (the apiserver replicas).
//! The accept loop is written here, as in the apiserver, because `axum::serve` speaks plain TCP.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use runtime::container::{ExecOptions, ExecStdio, LogOptions, Runtime};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::join::Credentials;
use crate::pods;

/// What the handlers need.
#[derive(Clone)]
pub struct ServerState {
    pub runtime: Runtime,
    /// The pods' records: in the run directory, or (an older agent's) in the data directory.
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}: pick another --listen address")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the serving certificate or key is not usable: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot check client certificates against the cluster CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Binds the server's address.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
}

/// The TLS configuration: the serving certificate, and client certificates required and checked
/// against the cluster CA. HTTP/1.1 only, so WebSocket upgrades work as every client expects.
pub fn tls_config(credentials: &Credentials) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&credentials.serving_cert_pem).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(&credentials.serving_key_pem)?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&credentials.client_ca_pem) {
        roots.add(ca?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The routes.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(logs))
        .route("/exec/{namespace}/{pod}/{container}", get(exec))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves over TLS until the process ends; a failed handshake costs a debug line.
pub async fn serve(listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>, state: ServerState) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let router = router(state);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "tls handshake failed"),
                Err(_) => return tracing::debug!(%peer, "tls handshake timed out"),
            };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let service = TowerToHyperService::new(router);
            if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// The runtime id of a pod's container (its previous run with `previous`), from the pod's
/// state file in one of `pods_dirs` ([`pods::record_dirs`]).
pub fn find_container(pods_dirs: &[PathBuf], namespace: &str, pod: &str, container: &str, previous: bool) -> Option<String> {
    let entries = pods_dirs.iter().filter_map(|d| std::fs::read_dir(d).ok()).flatten();
    for entry in entries.flatten() {
        let Ok(Some(record)) = pods::load_record(&entry.path()) else { continue };
        if record.namespace != namespace || record.name != pod {
            continue;
        }
        let rec = record.containers.get(container).or_else(|| record.init_containers.get(container))?;
        return if previous { rec.previous_id.clone() } else { rec.id.clone().or_else(|| rec.previous_id.clone()) };
    }
    None
}

/// The query of an exec request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecQuery {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Parses `command=a&command=b&stdin=true...` (repeated keys, which serde's query parsing drops).
pub fn parse_exec_query(query: &str) -> ExecQuery {
    let mut q = ExecQuery::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = value.replace('+', " ");
        let value = urlencoding::decode(&value).map(|v| v.into_owned()).unwrap_or(value);
        let yes = value == "true" || value == "1";
        match key {
            "command" => q.command.push(value),
            "stdin" => q.stdin = yes,
            "stdout" => q.stdout = yes,
            "stderr" => q.stderr = yes,
            "tty" => q.tty = yes,
            _ => {}
        }
    }
    q
}

/// Where an exec session's messages from the client go: stdin to the command (until closed),
/// window sizes to the exec helper.
struct ClientInput {
    stdin: Option<mpsc::Sender<Option<Vec<u8>>>>,
    resize: Option<std::io::PipeWriter>,
    v5: bool,
}

impl ClientInput {
    /// Handles one message; false once the client is gone (the output then has nowhere to go,
    /// but the command runs on).
    async fn handle(&mut self, message: Option<Result<Message, axum::Error>>) -> bool {
        let data = match message {
            Some(Ok(Message::Binary(data))) => data,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                self.stdin = None;
                return false;
            }
            Some(Ok(_)) => return true,
        };
        match (data.first(), data.get(1)) {
            (Some(0), _) => {
                if let Some(tx) = &self.stdin {
                    let _ = tx.send(Some(data[1..].to_vec())).await;
                }
            }
            (Some(255), Some(0)) if self.v5 => {
                if let Some(tx) = self.stdin.take() {
                    let _ = tx.send(None).await;
                }
            }
            (Some(4), _) => {
                if let (Some(w), Some(line)) = (self.resize.as_mut(), resize_line(&data[1..])) {
                    let _ = w.write_all(line.as_bytes());
                }
            }
            // Anything else (a resize without a terminal): nothing to do.
            _ => {}
        }
        true
    }
}

/// A resize message of channel 4 (`{"Width":80,"Height":24}`, as kubectl sends it) as the exec
/// helper's `ROWSxCOLS` line; `None` for anything else.
pub fn resize_line(message: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let size: Size = serde_json::from_slice(message).ok()?;
    (size.width > 0 && size.height > 0).then(|| format!("{}x{}\n", size.height, size.width))
}

/// The metav1.Status sent on channel 3 when the command ends.
pub fn exit_status(code: Result<i32, String>) -> serde_json::Value {
    match code {
        Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(n) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command, exit code {n}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": n.to_string()}]}
        }),
        Err(message) => serde_json::json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"}),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    #[serde(default)]
    follow: Option<bool>,
    #[serde(default)]
    tail_lines: Option<i64>,
    #[serde(default)]
    timestamps: Option<bool>,
    #[serde(default)]
    since_seconds: Option<i64>,
    #[serde(default)]
    previous: Option<bool>,
}

async fn logs(
    State(state): State<ServerState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let previous = query.previous.unwrap_or(false);
    let Some(id) = find_container(&pods::record_dirs(&state.run_dir, &state.data_dir), &namespace, &pod, &container, previous) else {
        let what = if previous { "previous terminated container" } else { "container" };
        return (StatusCode::NOT_FOUND, format!("{what} \"{container}\" in pod \"{pod}\" not found on this node\n")).into_response();
    };
    let since = query.since_seconds.filter(|s| *s > 0).map(|s| jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s));
    let user_timestamps = query.timestamps.unwrap_or(false);
    let opts = LogOptions {
        follow: query.follow.unwrap_or(false),
        tail: query.tail_lines.and_then(|t| usize::try_from(t).ok()),
        // sinceSeconds filters on each line's time, so the lines need one.
        timestamps: user_timestamps || since.is_some(),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let runtime = state.runtime.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = LineSink { tx: tx.clone(), pending: Vec::new(), since, strip_time: since.is_some() && !user_timestamps };
        let mut err = LineSink { tx: tx.clone(), pending: Vec::new(), since, strip_time: since.is_some() && !user_timestamps };
        if let Err(e) = runtime.logs(&id, &opts, &mut out, &mut err) {
            let _ = tx.blocking_send(Ok(Bytes::from(format!("error reading the log: {e}\n"))));
        }
        let _ = out.flush();
        let _ = err.flush();
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Sends whole log lines to the response, dropping those older than `since`.
struct LineSink {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    pending: Vec<u8>,
    since: Option<jiff::Timestamp>,
    strip_time: bool,
}

impl LineSink {
    fn emit(&mut self, line: Vec<u8>) -> std::io::Result<()> {
        let mut line = line;
        if let Some(since) = self.since {
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Some((time, rest)) = text.split_once(' ') {
                if let Ok(t) = time.parse::<jiff::Timestamp>() {
                    if t < since {
                        return Ok(());
                    }
                    if self.strip_time {
                        line = rest.as_bytes().to_vec();
                    }
                }
            }
        }
        self.tx.blocking_send(Ok(Bytes::from(line))).map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for LineSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            self.emit(line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(rest)?;
        }
        Ok(())
    }
}

async fn exec(
    State(state): State<ServerState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let query = parse_exec_query(raw.as_deref().unwrap_or(""));
    let ws = ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"]);
    let v5 = ws.selected_protocol().is_some_and(|p| p.as_bytes() == b"v5.channel.k8s.io");
    let id = find_container(&pods::record_dirs(&state.run_dir, &state.data_dir), &namespace, &pod, &container, false);
    ws.on_upgrade(move |socket| async move {
        let result = match id {
            Some(id) if !query.command.is_empty() => run_exec(socket, state.runtime, id, query, v5).await,
            other => {
                let message = match other {
                    None => format!("container \"{container}\" in pod \"{pod}\" not found on this node"),
                    Some(_) => "no command given: pass command=...".to_string(),
                };
                finish(socket, exit_status(Err(message))).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "exec session ended with an error");
        }
    })
}

async fn finish(mut socket: WebSocket, status: serde_json::Value) -> Result<(), axum::Error> {
    let mut frame = vec![3u8];
    frame.extend_from_slice(status.to_string().as_bytes());
    socket.send(Message::Binary(Bytes::from(frame))).await?;
    socket.send(Message::Close(None)).await
}

async fn run_exec(mut socket: WebSocket, runtime: Runtime, id: String, query: ExecQuery, v5: bool) -> Result<(), axum::Error> {
    let pipes = (|| -> std::io::Result<_> { Ok((std::io::pipe()?, std::io::pipe()?, std::io::pipe()?)) })();
    let ((in_r, in_w), (out_r, out_w), (err_r, err_w)) = match pipes {
        Ok(p) => p,
        Err(e) => return finish(socket, exit_status(Err(format!("cannot create pipes: {e}")))).await,
    };
    // With a terminal, its window sizes (channel 4) go to the exec helper through a pipe; the
    // write end never blocks this task (a size that does not fit is dropped: the next one wins).
    let resize = match query.tty.then(std::io::pipe).transpose() {
        Ok(Some((r, w))) => match nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)) {
            Ok(_) => Some((r, w)),
            Err(e) => return finish(socket, exit_status(Err(format!("cannot set up the terminal's size pipe: {e}")))).await,
        },
        Ok(None) => None,
        Err(e) => return finish(socket, exit_status(Err(format!("cannot create pipes: {e}")))).await,
    };
    let (resize_r, resize_w) = resize.map_or((None, None), |(r, w)| (Some(std::os::fd::OwnedFd::from(r)), Some(w)));
    let (in_tx, mut in_rx) = mpsc::channel::<Option<Vec<u8>>>(16);
    let mut session = ClientInput { stdin: query.stdin.then_some(in_tx), resize: resize_w, v5 };
    // kubectl sends the terminal's size as its first message; a command that asks for it at
    // once (`stty size`, a full-screen program drawing its first screen) must find it set, so
    // the command starts once the size is in the pipe (or after a second without one).
    // Whatever else arrives first is kept and handled after the start.
    let mut early = Vec::new();
    if session.resize.is_some() {
        let deadline = tokio::time::sleep(std::time::Duration::from_secs(1));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                message = socket.recv() => {
                    if matches!(&message, Some(Ok(Message::Binary(data))) if data.first() == Some(&4)) {
                        session.handle(message).await;
                        break;
                    }
                    let closed = !matches!(&message, Some(Ok(_)));
                    early.push(message);
                    if closed {
                        break;
                    }
                }
            }
        }
    }
    // An unused end is closed here and now: a write end left open would keep its reader from
    // ever seeing the end of the stream. A terminal writes everything on stdout.
    let stderr_wanted = query.stderr && !query.tty;
    let stdio = ExecStdio {
        stdin: Some(if query.stdin { in_r.into() } else { drop(in_r); std::process::Stdio::null() }),
        stdout: Some(if query.stdout { out_w.into() } else { drop(out_w); std::process::Stdio::null() }),
        stderr: Some(if stderr_wanted { err_w.into() } else { drop(err_w); std::process::Stdio::null() }),
        resize: resize_r,
    };
    let opts = ExecOptions { args: query.command.clone(), env: Vec::new(), workdir: None, tty: query.tty, interactive: query.stdin };
    let exited = tokio::task::spawn_blocking(move || runtime.exec_with_stdio(&id, &opts, stdio).map_err(|e| e.to_string()));

    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(16);
    for (channel, mut reader) in [(1u8, out_r), (2u8, err_r)] {
        let tx = out_tx.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut frame = Vec::with_capacity(n + 1);
                        frame.push(channel);
                        frame.extend_from_slice(&buf[..n]);
                        if tx.blocking_send(frame).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(out_tx);

    let mut stdin_writer = Some(in_w);
    tokio::task::spawn_blocking(move || {
        while let Some(Some(data)) = in_rx.blocking_recv() {
            let Some(w) = stdin_writer.as_mut() else { break };
            if w.write_all(&data).is_err() {
                break;
            }
        }
        // Dropping the writer is the command's end of input.
        stdin_writer.take();
    });
    let mut open = true;
    for message in early {
        if open {
            open = session.handle(message).await;
        }
    }
    while open {
        tokio::select! {
            frame = out_rx.recv() => match frame {
                Some(frame) => socket.send(Message::Binary(Bytes::from(frame))).await?,
                None => break,
            },
            incoming = socket.recv() => open = session.handle(incoming).await,
        }
    }
    drop(session);
    let code = match exited.await {
        Ok(result) => result,
        Err(e) => Err(e.to_string()),
    };
    finish(socket, exit_status(code)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_query_keeps_repeated_commands() {
        let q = parse_exec_query("command=sh&command=-c&command=echo%20hi+there&stdin=true&stdout=true&stderr=false&tty=false");
        assert_eq!(q.command, vec!["sh", "-c", "echo hi there"]);
        assert!(q.stdin && q.stdout && !q.stderr && !q.tty);
    }

    #[test]
    fn resize_messages_become_size_lines_and_bad_ones_nothing() {
        assert_eq!(resize_line(br#"{"Width":120,"Height":40}"#).as_deref(), Some("40x120\n"));
        for bad in [&b"{}"[..], b"not json", br#"{"Width":0,"Height":40}"#, br#"{"Width":-1,"Height":40}"#, br#"{"Width":70000,"Height":1}"#] {
            assert_eq!(resize_line(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn exit_statuses_follow_kubernetes() {
        assert_eq!(exit_status(Ok(0))["status"], "Success");
        let failed = exit_status(Ok(3));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        assert_eq!(exit_status(Err("x".into()))["status"], "Failure");
    }

    #[test]
    fn log_lines_before_since_are_dropped() {
        let (tx, mut rx) = mpsc::channel(8);
        let since = "2025-01-01T00:00:10Z".parse().ok();
        let mut sink = LineSink { tx, pending: Vec::new(), since, strip_time: true };
        sink.write_all(b"2025-01-01T00:00:05Z old\n2025-01-01T00:00:20Z new\npart").expect("write");
        sink.flush().expect("flush");
        drop(sink);
        let mut got = Vec::new();
        while let Some(Ok(b)) = rx.blocking_recv() {
            got.push(String::from_utf8_lossy(&b).into_owned());
        }
        assert_eq!(got, vec!["new\n".to_string(), "part".to_string()]);
    }
}
