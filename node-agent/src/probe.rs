//! Liveness, readiness and startup probes with the kubelet's timing and thresholds, and the
//! image's Docker `HEALTHCHECK` as a liveness-like probe for pods that define none.
//!
//! A [`Prober`] holds one probe's schedule and state; the agent asks it whether it is
//! [`due`](Prober::due), [`runs`](Prober::run) it, and reads its [`state`](Prober::state).
//! exec probes run through the runtime's exec helper (`flotilla-monitor --exec`), started here
//! directly rather than through `Runtime::exec` so that a probe that outlives `timeoutSeconds`
//! can be killed with its whole process group. httpGet and tcpSocket probes connect from a
//! short-lived thread that has entered the pod's network namespace (`setns` affects only that
//! thread), so `127.0.0.1` is the pod's loopback; the connected socket is then used from the
//! async runtime. The HTTP request is made with hyper over that socket; HTTPS, like the
//! kubelet's, does not verify the server's certificate.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::core::{Container, Probe};
use api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

/// Which kind of probe a [`Prober`] runs; it decides nothing here, but the agent acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

/// The probe's verdict after thresholds. `Unknown` until the first threshold is reached: the
/// agent treats it as "not ready" for readiness and startup, and "alive" for liveness, as the
/// kubelet's initial values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeState {
    Unknown,
    Success,
    Failure,
}

/// The result of one probe run; the message says why it failed (for the `Unhealthy` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Success,
    Failure(String),
}

/// Where a probe runs: the pod's network namespace (an empty path is the host's network) and
/// the container, for exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    pub netns: PathBuf,
    pub runtime_root: PathBuf,
    pub container_id: String,
}

/// Docker's `Healthcheck` object from an image config (durations in nanoseconds; zero or
/// missing means Docker's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageHealthcheck {
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: Option<u64>,
    #[serde(default)]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub start_period: Option<u64>,
    #[serde(default)]
    pub retries: Option<u32>,
}

/// Why an image's HEALTHCHECK could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error(transparent)]
    Image(#[from] runtime::image::ImageError),
    #[error("image {image}: the config's Healthcheck is invalid: {source}")]
    Invalid {
        image: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Kubernetes' probe defaults.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// Docker's HEALTHCHECK defaults.
pub const DOCKER_INTERVAL: Duration = Duration::from_secs(30);
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(30);
pub const DOCKER_RETRIES: u32 = 3;

/// exec probe output kept for the failure message, as the kubelet caps it (10 KiB).
const MAX_OUTPUT: usize = 10 * 1024;

/// One probe of one container: its action, timing, and the state its results add up to.
#[derive(Debug, Clone)]
pub struct Prober {
    kind: ProbeKind,
    action: Action,
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    /// Docker's start period: failures before `started + start_period` do not count.
    start_period: Duration,
    started: Instant,
    last_run: Option<Instant>,
    state: ProbeState,
    /// The last result and how many times in a row it came.
    streak: Option<(bool, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Exec(Vec<String>),
    Http {
        https: bool,
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<String>,
        port: u16,
    },
    /// A probe that cannot run (gRPC, an unknown named port, no handler): every run fails with this.
    Invalid(String),
}

impl Prober {
    /// A prober for `probe` of `container` (whose `ports` resolve named ports), counting time
    /// from now (the container's start).
    pub fn new(probe: &Probe, kind: ProbeKind, container: &Container) -> Prober {
        let secs = |v: Option<i32>, default: Duration| match v {
            Some(s) if s > 0 => Duration::from_secs(s as u64),
            _ => default,
        };
        let count = |v: Option<i32>, default: u32| match v {
            Some(n) if n > 0 => n as u32,
            _ => default,
        };
        Prober {
            kind,
            action: action_of(probe, container),
            initial_delay: secs(probe.initial_delay_seconds, Duration::ZERO),
            period: secs(probe.period_seconds, DEFAULT_PERIOD),
            timeout: secs(probe.timeout_seconds, DEFAULT_TIMEOUT),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
            start_period: Duration::ZERO,
            started: Instant::now(),
            last_run: None,
            state: ProbeState::Unknown,
            streak: None,
        }
    }

    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// When the probe should run next.
    pub fn next_due(&self) -> Instant {
        match self.last_run {
            None => self.started + self.initial_delay,
            Some(last) => last + self.period,
        }
    }

    /// Whether the probe should run at `now`: after `initialDelaySeconds`, then every
    /// `periodSeconds` after the previous run.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_due()
    }

    /// Runs the probe once and folds the result into the state.
    pub async fn run(&mut self, target: &ProbeTarget) -> ProbeOutcome {
        let outcome = execute(&self.action, self.timeout, target).await;
        self.record(&outcome, Instant::now());
        outcome
    }

    /// Folds one result into the state: `successThreshold` successes in a row make it Success,
    /// `failureThreshold` failures in a row make it Failure; a shorter streak leaves it as it was.
    pub fn record(&mut self, outcome: &ProbeOutcome, now: Instant) {
        self.last_run = Some(now);
        let ok = *outcome == ProbeOutcome::Success;
        if !ok && now < self.started + self.start_period && self.state != ProbeState::Success {
            return;
        }
        let run = match self.streak {
            Some((last, n)) if last == ok => n.saturating_add(1),
            _ => 1,
        };
        self.streak = Some((ok, run));
        if ok && run >= self.success_threshold {
            self.state = ProbeState::Success;
        } else if !ok && run >= self.failure_threshold {
            self.state = ProbeState::Failure;
        }
    }

    pub fn state(&self) -> ProbeState {
        self.state
    }

    /// Starts over for a restarted container: state Unknown, timing from `now`.
    pub fn reset(&mut self, now: Instant) {
        self.started = now;
        self.last_run = None;
        self.state = ProbeState::Unknown;
        self.streak = None;
    }
}

/// A liveness prober for an image's HEALTHCHECK (`CMD` or `CMD-SHELL`; `NONE` and an empty test
/// give none): it first runs one interval after the start, then every interval; `retries`
/// failures in a row make it fail; failures during the start period do not count.
pub fn healthcheck_prober(hc: &ImageHealthcheck) -> Option<Prober> {
    let argv: Vec<String> = match hc.test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
        }
        _ => return None,
    };
    let nanos = |v: Option<u64>, default: Duration| match v {
        Some(n) if n > 0 => Duration::from_nanos(n),
        _ => default,
    };
    let interval = nanos(hc.interval, DOCKER_INTERVAL);
    Some(Prober {
        kind: ProbeKind::Liveness,
        action: Action::Exec(argv),
        initial_delay: interval,
        period: interval,
        timeout: nanos(hc.timeout, DOCKER_TIMEOUT),
        success_threshold: 1,
        failure_threshold: hc.retries.filter(|r| *r > 0).unwrap_or(DOCKER_RETRIES),
        start_period: nanos(hc.start_period, Duration::ZERO),
        started: Instant::now(),
        last_run: None,
        state: ProbeState::Unknown,
        streak: None,
    })
}

/// The HEALTHCHECK of `image` in the store of runtime root `rt_root`, read from the image's
/// config blob (the OCI config type has no field for Docker's extension); `None` when the image
/// has none.
pub fn image_healthcheck(
    rt_root: &Path,
    image: &str,
) -> Result<Option<ImageHealthcheck>, HealthcheckError> {
    let store = runtime::image::ImageStore::open(rt_root)?;
    let resolved = store.resolve(image)?;
    let blob = store.read_blob(&resolved.id)?;
    let value: serde_json::Value =
        serde_json::from_slice(&blob).map_err(|source| HealthcheckError::Invalid {
            image: image.to_string(),
            source,
        })?;
    match value
        .pointer("/config/Healthcheck")
        .filter(|v| !v.is_null())
    {
        None => Ok(None),
        Some(hc) => serde_json::from_value(hc.clone())
            .map(Some)
            .map_err(|source| HealthcheckError::Invalid {
                image: image.to_string(),
                source,
            }),
    }
}

fn action_of(probe: &Probe, container: &Container) -> Action {
    let port_of = |port: &IntOrString| -> Result<u16, String> {
        match port {
            IntOrString::Int(n) => u16::try_from(*n)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("invalid port number {n}")),
            IntOrString::String(name) => {
                if let Ok(n) = name.parse::<u16>() {
                    return Ok(n);
                }
                container
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .and_then(|p| u16::try_from(p.container_port).ok())
                    .ok_or_else(|| format!("couldn't find port {name:?} in the container's ports"))
            }
        }
    };
    if let Some(exec) = &probe.exec {
        let argv = exec.command.clone().unwrap_or_default();
        if argv.is_empty() {
            return Action::Invalid("exec probe has no command".into());
        }
        return Action::Exec(argv);
    }
    if let Some(http) = &probe.http_get {
        let port = match port_of(&http.port) {
            Ok(p) => p,
            Err(message) => return Action::Invalid(message),
        };
        let path = match http.path.as_deref().filter(|p| !p.is_empty()) {
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(p) => format!("/{p}"),
            None => "/".to_string(),
        };
        return Action::Http {
            https: http
                .scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("https")),
            host: http.host.clone().filter(|h| !h.is_empty()),
            port,
            path,
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        return match port_of(&tcp.port) {
            Ok(port) => Action::Tcp {
                host: tcp.host.clone().filter(|h| !h.is_empty()),
                port,
            },
            Err(message) => Action::Invalid(message),
        };
    }
    if probe.grpc.is_some() {
        return Action::Invalid("grpc probes are not supported".into());
    }
    Action::Invalid("the probe has no handler: give exec, httpGet or tcpSocket".into())
}

async fn execute(action: &Action, timeout: Duration, target: &ProbeTarget) -> ProbeOutcome {
    match action {
        Action::Invalid(message) => ProbeOutcome::Failure(message.clone()),
        Action::Exec(argv) => exec_probe(argv, timeout, target).await,
        Action::Tcp { host, port } => {
            let host = host.as_deref().unwrap_or("127.0.0.1");
            match connect_in_netns(&target.netns, host, *port, timeout).await {
                Ok(_) => ProbeOutcome::Success,
                Err(e) => ProbeOutcome::Failure(format!("dial tcp {host}:{port}: {e}")),
            }
        }
        Action::Http {
            https,
            host,
            port,
            path,
            headers,
        } => {
            let connect_host = host.as_deref().unwrap_or("127.0.0.1");
            let scheme = if *https { "https" } else { "http" };
            let url = format!("{scheme}://{connect_host}:{port}{path}");
            let attempt = async {
                let stream = connect_in_netns(&target.netns, connect_host, *port, timeout).await?;
                http_get(stream, *https, connect_host, *port, path, headers).await
            };
            match tokio::time::timeout(timeout, attempt).await {
                Err(_) => ProbeOutcome::Failure(format!(
                    "Get \"{url}\": timed out after {}s awaiting headers",
                    timeout.as_secs_f64()
                )),
                Ok(Err(e)) => ProbeOutcome::Failure(format!("Get \"{url}\": {e}")),
                Ok(Ok(status)) if (200..400).contains(&status) => ProbeOutcome::Success,
                Ok(Ok(status)) => {
                    ProbeOutcome::Failure(format!("HTTP probe failed with statuscode: {status}"))
                }
            }
        }
    }
}

/// Runs `argv` in the container through the runtime's exec helper, in its own process group so
/// that a timeout kills the helper and the command together.
async fn exec_probe(argv: &[String], timeout: Duration, target: &ProbeTarget) -> ProbeOutcome {
    let monitor = match runtime::container::monitor_binary() {
        Ok(m) => m,
        Err(e) => return ProbeOutcome::Failure(format!("cannot run the exec probe: {e}")),
    };
    let request = runtime::container::ExecOptions {
        args: argv.to_vec(),
        ..Default::default()
    };
    let request = match serde_json::to_string(&request) {
        Ok(r) => r,
        Err(e) => return ProbeOutcome::Failure(format!("cannot encode the exec request: {e}")),
    };
    let mut command = std::process::Command::new(&monitor);
    command
        .arg("--exec")
        .arg(&target.runtime_root)
        .arg(&target.container_id)
        .env(runtime::container::monitor::EXEC_REQUEST_ENV, request);
    let shown = format!("{argv:?}");
    run_command(command, &shown, timeout).await
}

/// Runs `command` with output captured and a deadline; a command still running at the deadline
/// is killed with its process group.
async fn run_command(
    mut command: std::process::Command,
    shown: &str,
    timeout: Duration,
) -> ProbeOutcome {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return ProbeOutcome::Failure(format!("cannot start command {shown}: {e}")),
    };
    let pgid = child.id().map(|id| nix::unistd::Pid::from_raw(id as i32));
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            }
            ProbeOutcome::Failure(format!(
                "command {shown} timed out after {}s",
                timeout.as_secs_f64()
            ))
        }
        Ok(Err(e)) => ProbeOutcome::Failure(format!("waiting for command {shown}: {e}")),
        Ok(Ok(output)) if output.status.success() => ProbeOutcome::Success,
        Ok(Ok(output)) => {
            let mut text = output.stdout;
            text.extend_from_slice(&output.stderr);
            text.truncate(MAX_OUTPUT);
            let text = String::from_utf8_lossy(&text).trim().to_string();
            let code = output
                .status
                .code()
                .map_or_else(|| "a signal".to_string(), |c| format!("code {c}"));
            if text.is_empty() {
                ProbeOutcome::Failure(format!("command {shown} exited with {code}"))
            } else {
                ProbeOutcome::Failure(text)
            }
        }
    }
}

/// Connects to `host:port` from inside the network namespace at `netns` (the host's own
/// network when `netns` is empty).
async fn connect_in_netns(
    netns: &Path,
    host: &str,
    port: u16,
    timeout: Duration,
) -> io::Result<tokio::net::TcpStream> {
    let netns = netns.to_path_buf();
    let host = host.to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A fresh thread, not one of tokio's pool: setns changes the calling thread for good, and
    // this thread ends right after connecting.
    std::thread::Builder::new()
        .name("probe-connect".into())
        .spawn(move || {
            let result = (|| -> io::Result<TcpStream> {
                if !netns.as_os_str().is_empty() {
                    let ns = std::fs::File::open(&netns).map_err(|e| {
                        io::Error::new(e.kind(), format!("opening {}: {e}", netns.display()))
                    })?;
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                        io::Error::other(format!("entering {}: {e}", netns.display()))
                    })?;
                }
                let addrs: Vec<SocketAddr> = (host.as_str(), port).to_socket_addrs()?.collect();
                let mut last =
                    io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}"));
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => return Ok(s),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            })();
            let _ = tx.send(result);
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("the connecting thread ended without an answer"))??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

async fn http_get(
    stream: tokio::net::TcpStream,
    https: bool,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> io::Result<u16> {
    let mut builder = http::Request::get(path);
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("host") {
        builder = builder.header(http::header::HOST, format!("{host}:{port}"));
    }
    if !has("user-agent") {
        builder = builder.header(http::header::USER_AGENT, "kube-probe/1.33");
    }
    if !has("accept") {
        builder = builder.header(http::header::ACCEPT, "*/*");
    }
    builder = builder.header(http::header::CONNECTION, "close");
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("invalid request: {e}"))
        })?;
    if https {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(insecure_tls_config()?));
        let server_name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let tls = connector.connect(server_name, stream).await?;
        send(hyper_util::rt::TokioIo::new(tls), request).await
    } else {
        send(hyper_util::rt::TokioIo::new(stream), request).await
    }
}

async fn send<T>(
    io: T,
    request: http::Request<http_body_util::Empty<bytes::Bytes>>,
) -> io::Result<u16>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(io::Error::other)?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(io::Error::other);
    driver.abort();
    Ok(response?.status().as_u16())
}

/// A TLS client that accepts any server certificate: the kubelet's HTTPS probes skip
/// verification too, since pods serve self-signed certificates.
fn insecure_tls_config() -> io::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    Ok(config)
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    fn probe(json: serde_json::Value) -> Probe {
        serde_json::from_value(json).expect("probe")
    }

    fn container() -> Container {
        serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .expect("container")
    }

    #[test]
    fn thresholds_and_timing() {
        let p = probe(serde_json::json!({
            "exec": {"command": ["true"]}, "initialDelaySeconds": 5, "periodSeconds": 2,
            "successThreshold": 2, "failureThreshold": 3
        }));
        let mut prober = Prober::new(&p, ProbeKind::Readiness, &container());
        let t0 = prober.started;
        assert!(!prober.due(t0));
        assert!(!prober.due(t0 + Duration::from_secs(4)));
        assert!(prober.due(t0 + Duration::from_secs(5)));
        let fail = ProbeOutcome::Failure("no".into());
        let ok = ProbeOutcome::Success;
        let steps: [(&ProbeOutcome, ProbeState); 8] = [
            (&ok, ProbeState::Unknown),
            (&ok, ProbeState::Success),
            (&fail, ProbeState::Success),
            (&fail, ProbeState::Success),
            (&ok, ProbeState::Success),
            (&fail, ProbeState::Success),
            (&fail, ProbeState::Success),
            (&fail, ProbeState::Failure),
        ];
        let mut now = t0 + Duration::from_secs(5);
        for (i, (outcome, want)) in steps.iter().enumerate() {
            assert!(prober.due(now), "step {i}");
            prober.record(outcome, now);
            assert_eq!(prober.state(), *want, "step {i}");
            assert!(!prober.due(now + Duration::from_secs(1)));
            now += Duration::from_secs(2);
        }
        prober.record(&ok, now);
        assert_eq!(
            prober.state(),
            ProbeState::Failure,
            "one success is below the threshold"
        );
        prober.reset(now);
        assert_eq!(prober.state(), ProbeState::Unknown);
        assert!(!prober.due(now));

        let defaults = Prober::new(
            &probe(serde_json::json!({"tcpSocket": {"port": 80}, "periodSeconds": 0})),
            ProbeKind::Liveness,
            &container(),
        );
        assert_eq!(
            (defaults.period(), defaults.timeout()),
            (DEFAULT_PERIOD, DEFAULT_TIMEOUT)
        );
        assert_eq!(
            (defaults.success_threshold, defaults.failure_threshold),
            (1, 3)
        );
        assert!(defaults.due(defaults.started));
    }

    #[test]
    fn actions_from_probes() {
        let c = container();
        let cases = [
            (
                serde_json::json!({"exec": {"command": ["cat", "/tmp/ok"]}}),
                Action::Exec(vec!["cat".into(), "/tmp/ok".into()]),
            ),
            (
                serde_json::json!({"exec": {}}),
                Action::Invalid("exec probe has no command".into()),
            ),
            (
                serde_json::json!({"httpGet": {"port": "http", "path": "healthz", "scheme": "HTTPS",
                                   "httpHeaders": [{"name": "X-A", "value": "1"}]}}),
                Action::Http {
                    https: true,
                    host: None,
                    port: 8080,
                    path: "/healthz".into(),
                    headers: vec![("X-A".into(), "1".into())],
                },
            ),
            (
                serde_json::json!({"httpGet": {"port": 81, "host": "10.0.0.9"}}),
                Action::Http {
                    https: false,
                    host: Some("10.0.0.9".into()),
                    port: 81,
                    path: "/".into(),
                    headers: vec![],
                },
            ),
            (
                serde_json::json!({"httpGet": {"port": "nope"}}),
                Action::Invalid("couldn't find port \"nope\" in the container's ports".into()),
            ),
            (
                serde_json::json!({"tcpSocket": {"port": "http"}}),
                Action::Tcp {
                    host: None,
                    port: 8080,
                },
            ),
            (
                serde_json::json!({"tcpSocket": {"port": 0}}),
                Action::Invalid("invalid port number 0".into()),
            ),
            (
                serde_json::json!({"tcpSocket": {"port": 70000}}),
                Action::Invalid("invalid port number 70000".into()),
            ),
            (
                serde_json::json!({"grpc": {"port": 9000}}),
                Action::Invalid("grpc probes are not supported".into()),
            ),
            (
                serde_json::json!({}),
                Action::Invalid("the probe has no handler: give exec, httpGet or tcpSocket".into()),
            ),
        ];
        for (json, want) in cases {
            assert_eq!(action_of(&probe(json.clone()), &c), want, "{json}");
        }
    }

    #[test]
    fn docker_healthchecks() {
        let hc: ImageHealthcheck = serde_json::from_value(serde_json::json!({
            "Test": ["CMD-SHELL", "wget -q -O- localhost || exit 1"],
            "Interval": 5_000_000_000u64, "Timeout": 2_000_000_000u64,
            "StartPeriod": 60_000_000_000u64, "Retries": 2
        }))
        .expect("healthcheck");
        let mut p = healthcheck_prober(&hc).expect("prober");
        assert_eq!(p.kind(), ProbeKind::Liveness);
        assert_eq!(
            p.action,
            Action::Exec(vec![
                "/bin/sh".into(),
                "-c".into(),
                "wget -q -O- localhost || exit 1".into()
            ])
        );
        assert_eq!(
            (p.period(), p.timeout(), p.failure_threshold),
            (Duration::from_secs(5), Duration::from_secs(2), 2)
        );
        let t0 = p.started;
        assert!(!p.due(t0) && p.due(t0 + Duration::from_secs(5)));
        // Failures inside the start period do not count; after it they do.
        let fail = ProbeOutcome::Failure("down".into());
        for s in [5, 10, 15] {
            p.record(&fail, t0 + Duration::from_secs(s));
        }
        assert_eq!(p.state(), ProbeState::Unknown);
        p.record(&fail, t0 + Duration::from_secs(61));
        p.record(&fail, t0 + Duration::from_secs(66));
        assert_eq!(p.state(), ProbeState::Failure);

        let defaults = healthcheck_prober(&ImageHealthcheck {
            test: vec!["CMD".into(), "/ok".into()],
            ..Default::default()
        })
        .expect("cmd");
        assert_eq!(
            (
                defaults.period(),
                defaults.timeout(),
                defaults.failure_threshold
            ),
            (DOCKER_INTERVAL, DOCKER_TIMEOUT, DOCKER_RETRIES)
        );
        for test in [
            vec!["NONE"],
            vec![],
            vec!["CMD"],
            vec!["CMD-SHELL"],
            vec!["BOGUS", "x"],
        ] {
            let hc = ImageHealthcheck {
                test: test.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            };
            assert!(healthcheck_prober(&hc).is_none(), "{test:?}");
        }
    }

    #[test]
    fn image_healthcheck_reads_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).expect("mkdir");
        let store = runtime::image::ImageStore::open(dir.path()).expect("store");
        let reference = runtime::reference::Reference::parse("plain:v1").expect("ref");
        store
            .import_rootfs_dir(&rootfs, &reference)
            .expect("import");
        assert_eq!(
            image_healthcheck(dir.path(), "plain:v1").expect("read"),
            None
        );
        assert!(matches!(
            image_healthcheck(dir.path(), "absent:v1"),
            Err(HealthcheckError::Image(_))
        ));
    }

    #[tokio::test]
    async fn commands_fail_with_output_and_time_out() {
        let sh = |script: &str| {
            let mut c = std::process::Command::new("/bin/sh");
            c.arg("-c").arg(script);
            c
        };
        assert_eq!(
            run_command(sh("exit 0"), "ok", Duration::from_secs(5)).await,
            ProbeOutcome::Success
        );
        assert_eq!(
            run_command(
                sh("echo not healthy; echo more >&2; exit 3"),
                "bad",
                Duration::from_secs(5)
            )
            .await,
            ProbeOutcome::Failure("not healthy\nmore".into())
        );
        assert_eq!(
            run_command(sh("exit 4"), "quiet", Duration::from_secs(5)).await,
            ProbeOutcome::Failure("command quiet exited with code 4".into())
        );
        // The grandchild (sleep) is killed with the group: the pipe closes and its pid is gone.
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let started = Instant::now();
        let outcome = run_command(sh(&script), "slow", Duration::from_millis(300)).await;
        assert!(
            matches!(&outcome, ProbeOutcome::Failure(m) if m.contains("timed out")),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid")
            .trim()
            .parse()
            .expect("number");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let alive =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
        assert!(!alive, "the probe's child survived the timeout");
    }

    /// A running busybox container, force-removed on drop.
    struct Running {
        runtime: runtime::container::Runtime,
        id: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.runtime.remove(&self.id, true);
        }
    }

    fn busybox_container() -> Option<Running> {
        let busybox = Path::new("/bin/busybox");
        if !nix::unistd::Uid::effective().is_root() || !busybox.exists() {
            eprintln!("skipping: running a container needs root and /bin/busybox");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
        std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in ["sh", "sleep", "echo", "cat"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("link");
        }
        let root = dir.path().join("root");
        let store = runtime::image::ImageStore::open(&root).expect("store");
        let reference = runtime::reference::Reference::parse("probe-bb:v1").expect("ref");
        store
            .import_rootfs_dir(&rootfs, &reference)
            .expect("import");
        let rt = runtime::container::Runtime::open(&root).expect("runtime");
        let opts = runtime::spec::RunOptions {
            cmd: vec!["/bin/sleep".into(), "60".into()],
            ..Default::default()
        };
        let id = rt.create("probe-bb:v1", &opts).expect("create");
        let running = Running {
            runtime: rt,
            id,
            _dir: dir,
        };
        running
            .runtime
            .start(&running.id, &Default::default())
            .expect("start");
        Some(running)
    }

    #[tokio::test]
    async fn exec_probes_in_a_real_container() {
        let Some(container) = busybox_container() else {
            return;
        };
        let target = ProbeTarget {
            netns: PathBuf::new(),
            runtime_root: container.runtime.root().to_path_buf(),
            container_id: container.id.clone(),
        };
        let c = self::container();
        let exec = |script: &str, timeout: i32| {
            probe(
                serde_json::json!({"exec": {"command": ["/bin/sh", "-c", script]},
                "timeoutSeconds": timeout, "failureThreshold": 1}),
            )
        };
        let mut ok = Prober::new(&exec("test -x /bin/busybox", 5), ProbeKind::Liveness, &c);
        assert_eq!(ok.run(&target).await, ProbeOutcome::Success);
        let mut sick = Prober::new(&exec("echo sick; exit 1", 5), ProbeKind::Liveness, &c);
        assert_eq!(
            sick.run(&target).await,
            ProbeOutcome::Failure("sick".into())
        );
        assert_eq!(sick.state(), ProbeState::Failure);
        let started = Instant::now();
        let mut slow = Prober::new(&exec("sleep 30", 1), ProbeKind::Liveness, &c);
        let outcome = slow.run(&target).await;
        assert!(
            matches!(&outcome, ProbeOutcome::Failure(m) if m.contains("timed out")),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let gone = ProbeTarget {
            container_id: "0".repeat(64),
            ..target.clone()
        };
        assert!(matches!(ok.run(&gone).await, ProbeOutcome::Failure(_)));
    }

    #[tokio::test]
    async fn https_probes_accept_self_signed_certificates_on_the_host_network() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let certified =
            rcgen::generate_simple_self_signed(vec!["pod.invalid".to_string()]).expect("cert");
        let key =
            rustls_pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    continue;
                };
                let mut buf = [0u8; 4096];
                let n = tls.read(&mut buf).await.unwrap_or(0);
                let ok = String::from_utf8_lossy(&buf[..n]).starts_with("GET /ready ");
                let status = if ok {
                    "204 No Content"
                } else {
                    "404 Not Found"
                };
                let _ = tls
                    .write_all(format!("HTTP/1.1 {status}\r\nconnection: close\r\n\r\n").as_bytes())
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        let host_network = ProbeTarget {
            netns: PathBuf::new(),
            runtime_root: PathBuf::new(),
            container_id: String::new(),
        };
        let https = |path: &str| {
            probe(serde_json::json!({"httpGet": {"port": port, "path": path, "scheme": "HTTPS"}}))
        };
        let mut ready = Prober::new(&https("/ready"), ProbeKind::Readiness, &container());
        assert_eq!(ready.run(&host_network).await, ProbeOutcome::Success);
        let mut other = Prober::new(&https("/other"), ProbeKind::Readiness, &container());
        assert_eq!(
            other.run(&host_network).await,
            ProbeOutcome::Failure("HTTP probe failed with statuscode: 404".into())
        );
        // Plain HTTP against the TLS port fails instead of hanging past the timeout.
        let mut plain = Prober::new(
            &probe(serde_json::json!({"httpGet": {"port": port}, "timeoutSeconds": 2})),
            ProbeKind::Readiness,
            &container(),
        );
        let started = Instant::now();
        assert!(matches!(
            plain.run(&host_network).await,
            ProbeOutcome::Failure(_)
        ));
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    /// A network namespace made with `ip netns`, deleted on drop.
    struct Netns(String);

    impl Netns {
        fn create() -> Option<Netns> {
            let name = format!("flotilla-probe-test-{:08x}", rand::random::<u32>());
            let ok = std::process::Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .ok()?
                .success();
            if !ok {
                return None;
            }
            let ns = Netns(name);
            let up = std::process::Command::new("ip")
                .args(["-n", &ns.0, "link", "set", "lo", "up"])
                .status()
                .ok()?;
            up.success().then_some(ns)
        }

        fn path(&self) -> PathBuf {
            PathBuf::from("/run/netns").join(&self.0)
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }

    /// An HTTP server inside `netns` on 127.0.0.1: `/ok` answers 200, `/moved` 302, anything
    /// else 500; it checks that the probe's header arrived.
    fn serve_in(netns: PathBuf) -> u16 {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&netns).expect("netns");
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            tx.send(listener.local_addr().expect("addr").port())
                .expect("send");
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let status = if !head.contains("x-probe: yes") {
                    "400 Bad Request"
                } else if head.starts_with("GET /ok ") {
                    "200 OK"
                } else if head.starts_with("GET /moved ") {
                    "302 Found"
                } else {
                    "500 Internal Server Error"
                };
                let _ = conn.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        rx.recv().expect("port")
    }

    #[tokio::test]
    async fn http_and_tcp_probes_inside_a_network_namespace() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: creating a network namespace needs root");
            return;
        }
        let ns = Netns::create().expect("ip netns add (root is available, so this must work)");
        let port = serve_in(ns.path());
        let target = ProbeTarget {
            netns: ns.path(),
            runtime_root: PathBuf::new(),
            container_id: String::new(),
        };
        let c = container();
        let http = |path: &str| {
            probe(serde_json::json!({"httpGet": {"port": port, "path": path,
                "httpHeaders": [{"name": "X-Probe", "value": "yes"}]}, "failureThreshold": 1}))
        };
        let mut ok = Prober::new(&http("/ok"), ProbeKind::Readiness, &c);
        assert_eq!(ok.run(&target).await, ProbeOutcome::Success);
        assert_eq!(ok.state(), ProbeState::Success);
        let mut moved = Prober::new(&http("/moved"), ProbeKind::Readiness, &c);
        assert_eq!(moved.run(&target).await, ProbeOutcome::Success);
        let mut bad = Prober::new(&http("/bad"), ProbeKind::Liveness, &c);
        assert_eq!(
            bad.run(&target).await,
            ProbeOutcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(bad.state(), ProbeState::Failure);

        let tcp = |port: u16| probe(serde_json::json!({"tcpSocket": {"port": port}}));
        let mut open = Prober::new(&tcp(port), ProbeKind::Liveness, &c);
        assert_eq!(open.run(&target).await, ProbeOutcome::Success);
        // The same port on the pod's loopback is closed once we pick another one.
        let closed = if port == 65535 { port - 1 } else { port + 1 };
        let mut shut = Prober::new(&tcp(closed), ProbeKind::Liveness, &c);
        let outcome = shut.run(&target).await;
        assert!(
            matches!(&outcome, ProbeOutcome::Failure(m) if m.contains("refused")),
            "{outcome:?}"
        );
        let mut http_closed = Prober::new(
            &probe(serde_json::json!({"httpGet": {"port": closed}})),
            ProbeKind::Liveness,
            &c,
        );
        assert!(
            matches!(http_closed.run(&target).await, ProbeOutcome::Failure(m) if m.starts_with("Get \"http://127.0.0.1:"))
        );

        let gone = ProbeTarget {
            netns: PathBuf::from("/run/netns/flotilla-does-not-exist"),
            ..target.clone()
        };
        assert!(matches!(open.run(&gone).await, ProbeOutcome::Failure(m) if m.contains("opening")));
    }
}
