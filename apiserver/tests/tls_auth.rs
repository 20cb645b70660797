//! The apiserver's certificates, TLS serving (API port and mutual-TLS peer port), graceful
//! shutdown, the token file and the authorization rules, exercised through the public API
//! with real sockets on 127.0.0.1:0 and, where installed, the real kubectl as a judge.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::auth::{authorize, Attributes, Decision, Identity, Role, TokenFile};
use apiserver::pki::{self, InitOptions, InitOutput, PkiError, PkiPaths};
use apiserver::tls;
use axum::extract::ConnectInfo;
use axum::routing::get;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt as _;

fn init_in(dir: &Path) -> InitOutput {
    pki::init(&InitOptions {
        dir: dir.to_path_buf(),
        hosts: vec!["flotilla.test".into()],
        servers: vec!["https://127.0.0.1:6443".into(), "https://[::1]:6443".into()],
    })
    .expect("init into an empty directory")
}

fn router() -> axum::Router {
    axum::Router::new()
        .route(
            "/ip",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .route(
            "/forever",
            get(|| async {
                // A body that never ends, like a watch stream.
                let stream = futures::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((
                        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"tick\n")),
                        (),
                    ))
                });
                axum::body::Body::from_stream(stream)
            }),
        )
}

/// A server running in the background; dropping the guard shuts it down.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(tls::serve(listener, tls, router(), async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Fires the shutdown future and returns how long `serve` took to return.
    async fn shutdown(mut self) -> Duration {
        let started = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
        started.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn client(config: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap()
}

/// A client config that trusts `ca` and presents the certificate and key in the given files.
fn client_with_cert(ca: &Path, cert: &Path, key: &Path) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let certs: Vec<_> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .unwrap();
    client(config)
}

#[test]
fn init_refuses_a_second_init_in_the_same_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let out = init_in(tmp.path());
    assert_eq!(out.pki, PkiPaths::under(tmp.path()));
    assert!(out.pki.ca_cert().is_file() && out.pki.server_key().is_file());
    let ca_before = std::fs::read(out.pki.ca_cert()).unwrap();

    let err = pki::init(&InitOptions {
        dir: tmp.path().to_path_buf(),
        hosts: vec![],
        servers: vec!["https://127.0.0.1:6443".into()],
    })
    .unwrap_err();
    assert!(matches!(err, PkiError::CaExists { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("ca.crt") && msg.contains("use another --dir or remove it"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(out.pki.ca_cert()).unwrap(),
        ca_before,
        "the CA must be untouched"
    );

    // The tokens init wrote authenticate as admin and viewer.
    let tokens = TokenFile::load(&out.tokens_file).unwrap();
    let bearer = |t: &str| {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
        h
    };
    assert_eq!(
        tokens.authenticate(&bearer(&out.admin_token)).unwrap().role,
        Role::Admin
    );
    assert_eq!(
        tokens
            .authenticate(&bearer(&out.viewer_token))
            .unwrap()
            .role,
        Role::Viewer
    );
}

#[test]
fn kubectl_accepts_the_kubeconfig() {
    let tmp = tempfile::tempdir().unwrap();
    let out = init_in(tmp.path());
    let result = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&out.kubeconfig)
        .args(["config", "view", "--raw", "-o", "json"])
        .output();
    let output = match result {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            println!("kubectl not installed: skipping the kubeconfig check");
            return;
        }
        other => other.unwrap(),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kubectl config view failed: {stderr}"
    );
    let view: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(view["current-context"], "flotilla");
    let cluster = &view["clusters"][0]["cluster"];
    assert_eq!(cluster["server"], "https://127.0.0.1:6443");
    let ext = &cluster["extensions"][0];
    assert_eq!(ext["name"], "flotilla");
    assert_eq!(ext["extension"]["servers"][1], "https://[::1]:6443");
    assert_eq!(view["users"][0]["user"]["token"], out.admin_token.as_str());
    assert_eq!(view["contexts"][0]["context"]["namespace"], "default");
}

#[tokio::test]
async fn api_port_serves_clients_that_trust_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let out = init_in(tmp.path());
    let server = Server::start(Some(tls::api_server_config(&out.pki).unwrap())).await;

    // HTTP/2 through ALPN, with the peer address visible to the handler.
    let h2 = client(tls::api_client_config(&out.pki.ca_cert()).unwrap());
    let resp = h2.get(server.url("/ip")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.text().await.unwrap(), "127.0.0.1");

    // HTTP/1.1, and reqwest's own root handling, as an ordinary client would set it up.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(out.pki.ca_cert()).unwrap()).unwrap();
    let h1 = reqwest::Client::builder()
        .add_root_certificate(ca)
        .http1_only()
        .build()
        .unwrap();
    let resp = h1.get(server.url("/ip")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);

    // The extra SAN and the IP SANs are in the certificate too.
    let by_ip = format!("https://127.0.0.1:{}/ip", server.addr.port());
    assert_eq!(h2.get(by_ip).send().await.unwrap().status(), 200);
    let by_name = reqwest::Client::builder()
        .use_preconfigured_tls(tls::api_client_config(&out.pki.ca_cert()).unwrap())
        .resolve("flotilla.test", server.addr)
        .build()
        .unwrap();
    let resp = by_name
        .get(format!("https://flotilla.test:{}/ip", server.addr.port()))
        .send()
        .await;
    assert_eq!(resp.unwrap().status(), 200);

    // A client that trusts another cluster's CA refuses the server.
    let other = tempfile::tempdir().unwrap();
    let other = init_in(other.path());
    let stranger = client(tls::api_client_config(&other.pki.ca_cert()).unwrap());
    assert!(stranger.get(server.url("/ip")).send().await.is_err());

    // No client certificate is needed on the API port, but one is not refused either.
    let with_cert = tls::peer_client(&out.pki).unwrap();
    assert_eq!(
        with_cert
            .get(server.url("/ip"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    server.shutdown().await;
}

#[tokio::test]
async fn a_failed_handshake_does_not_stop_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let out = init_in(tmp.path());
    let server = Server::start(Some(tls::api_server_config(&out.pki).unwrap())).await;
    for _ in 0..3 {
        let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        drop(raw);
    }
    // A plain-HTTP client on the TLS port fails, and the server carries on.
    let plain = reqwest::Client::new();
    assert!(plain
        .get(format!("http://127.0.0.1:{}/ip", server.addr.port()))
        .send()
        .await
        .is_err());
    let good = client(tls::api_client_config(&out.pki.ca_cert()).unwrap());
    assert_eq!(
        good.get(server.url("/ip")).send().await.unwrap().status(),
        200
    );
    server.shutdown().await;
}

#[tokio::test]
async fn peer_port_requires_a_certificate_from_the_cluster_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let out = init_in(tmp.path());
    let server = Server::start(Some(tls::peer_server_config(&out.pki).unwrap())).await;

    // No client certificate: refused.
    let anonymous = client(tls::api_client_config(&out.pki.ca_cert()).unwrap());
    assert!(anonymous.get(server.url("/ip")).send().await.is_err());

    // The replica certificate: accepted.
    let peer = tls::peer_client(&out.pki).unwrap();
    let resp = peer.get(server.url("/ip")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "127.0.0.1");

    // A certificate issued later by the same CA: accepted.
    let issued_cert = tmp.path().join("node1.crt");
    let issued_key = tmp.path().join("node1.key");
    pki::issue(
        &out.pki,
        "node1",
        &["node1.flotilla.test".into()],
        &issued_cert,
        &issued_key,
    )
    .unwrap();
    let node = client_with_cert(&out.pki.ca_cert(), &issued_cert, &issued_key);
    assert_eq!(
        node.get(server.url("/ip")).send().await.unwrap().status(),
        200
    );

    // A certificate from another CA, presented by a client that trusts this server: refused.
    let other_dir = tempfile::tempdir().unwrap();
    let other = init_in(other_dir.path());
    let stranger = client_with_cert(
        &out.pki.ca_cert(),
        &other.pki.server_cert(),
        &other.pki.server_key(),
    );
    assert!(stranger.get(server.url("/ip")).send().await.is_err());

    // The server is still fine after the refusals.
    assert_eq!(
        peer.get(server.url("/ip")).send().await.unwrap().status(),
        200
    );
    server.shutdown().await;
}

#[tokio::test]
async fn plain_http_for_tests() {
    let server = Server::start(None).await;
    let url = format!("http://127.0.0.1:{}/ip", server.addr.port());
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "127.0.0.1");
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_returns_and_stops_accepting() {
    let tmp = tempfile::tempdir().unwrap();
    let out = init_in(tmp.path());
    let server = Server::start(Some(tls::api_server_config(&out.pki).unwrap())).await;
    let addr = server.addr;
    let c = client(tls::api_client_config(&out.pki.ca_cert()).unwrap());
    assert_eq!(c.get(server.url("/ip")).send().await.unwrap().status(), 200);
    // An idle keep-alive connection is open now; shutdown must not wait for it.
    let took = server.shutdown().await;
    assert!(
        took < Duration::from_secs(5),
        "shutdown of idle connections took {took:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn shutdown_cuts_endless_streams_after_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let out = init_in(tmp.path());
    let server = Server::start(Some(tls::api_server_config(&out.pki).unwrap())).await;
    let c = client(tls::api_client_config(&out.pki.ca_cert()).unwrap());
    let mut resp = c.get(server.url("/forever")).send().await.unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    let reader = tokio::spawn(async move {
        // Reads until the stream is cut; Ok(None) or an error both mean it ended.
        while let Ok(Some(_)) = resp.chunk().await {}
    });
    let took = server.shutdown().await;
    assert!(
        took >= tls::SHUTDOWN_GRACE - Duration::from_millis(500),
        "returned early: {took:?}"
    );
    assert!(
        took < tls::SHUTDOWN_GRACE + Duration::from_secs(5),
        "took {took:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the stream was cut")
        .unwrap();
}

#[test]
fn token_file_good_and_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokens.csv");
    std::fs::write(
        &path,
        "# who may call\n\nt-admin,alice,admin\nt-view,bob,viewer\nt-node,system:node:n1,node:n1\n",
    )
    .unwrap();
    let tokens = TokenFile::load(&path).unwrap();
    assert_eq!(tokens.len(), 3);
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        "Bearer t-node".parse().unwrap(),
    );
    assert_eq!(
        tokens.authenticate(&h).unwrap(),
        Identity {
            user: "system:node:n1".into(),
            role: Role::Node("n1".into())
        }
    );
    h.insert(http::header::AUTHORIZATION, "Bearer t-nod".parse().unwrap());
    assert!(tokens.authenticate(&h).is_err());

    std::fs::write(&path, "t-admin,alice,admin\n\nt-x,carol,superuser\n").unwrap();
    let err = TokenFile::load(&path).unwrap_err().to_string();
    assert!(
        err.contains(&format!("{}:3:", path.display())) && err.contains("superuser"),
        "{err}"
    );

    let added = TokenFile::append(&path, "dave", &Role::Viewer);
    assert!(
        added.is_ok(),
        "append works even when the file has a bad line"
    );
}

// ---- authorization tables ----

fn id(user: &str, role: Role) -> Identity {
    Identity {
        user: user.into(),
        role,
    }
}

/// (verb, group, resource, subresource, namespace, name, pod_node, field_node)
type Row<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

fn attrs<'a>(r: &Row<'a>) -> Attributes<'a> {
    Attributes {
        verb: r.0,
        group: r.1,
        resource: r.2,
        subresource: r.3,
        namespace: r.4,
        name: r.5,
        pod_node: r.6,
        field_node: r.7,
        node_references: false,
    }
}

fn check(who: &Identity, allowed: bool, rows: &[Row]) {
    for row in rows {
        let decision = authorize(who, &attrs(row));
        match (allowed, &decision) {
            (true, Decision::Allow) | (false, Decision::Deny(_)) => {}
            _ => panic!(
                "{} ({:?}) on {row:?}: expected allowed={allowed}, got {decision:?}",
                who.user, who.role
            ),
        }
    }
}

const N: Option<&str> = None;

#[test]
fn admin_may_do_everything() {
    let admin = id("admin", Role::Admin);
    check(
        &admin,
        true,
        &[
            (
                "create",
                "apps",
                "deployments",
                N,
                Some("default"),
                Some("web"),
                N,
                N,
            ),
            ("delete", "", "secrets", N, Some("default"), Some("s"), N, N),
            ("deletecollection", "", "pods", N, Some("default"), N, N, N),
            ("update", "", "nodes", Some("status"), N, Some("n9"), N, N),
            (
                "create",
                "",
                "pods",
                Some("exec"),
                Some("default"),
                Some("p"),
                N,
                N,
            ),
        ],
    );
}

#[test]
fn viewer_reads_everything_but_secrets() {
    let viewer = id("viewer", Role::Viewer);
    check(
        &viewer,
        true,
        &[
            (
                "get",
                "apps",
                "deployments",
                N,
                Some("default"),
                Some("web"),
                N,
                N,
            ),
            ("list", "", "pods", N, None, N, N, N),
            ("watch", "", "services", N, Some("default"), N, N, N),
            ("get", "", "nodes", N, N, Some("n1"), N, N),
            (
                "get",
                "",
                "pods",
                Some("log"),
                Some("default"),
                Some("p"),
                N,
                N,
            ),
            ("get", "", "configmaps", N, Some("default"), Some("c"), N, N),
        ],
    );
    check(
        &viewer,
        false,
        &[
            ("get", "", "secrets", N, Some("default"), Some("s"), N, N),
            ("list", "", "secrets", N, None, N, N, N),
            ("watch", "", "secrets", N, Some("default"), N, N, N),
            (
                "create",
                "apps",
                "deployments",
                N,
                Some("default"),
                Some("web"),
                N,
                N,
            ),
            (
                "update",
                "",
                "pods",
                Some("status"),
                Some("default"),
                Some("p"),
                N,
                N,
            ),
            ("patch", "", "nodes", N, N, Some("n1"), N, N),
            ("delete", "", "pods", N, Some("default"), Some("p"), N, N),
            ("deletecollection", "", "pods", N, Some("default"), N, N, N),
            (
                "get",
                "",
                "pods",
                Some("exec"),
                Some("default"),
                Some("p"),
                N,
                N,
            ),
        ],
    );
}

#[test]
fn node_reaches_its_own_node_object_only() {
    let node = id("system:node:n1", Role::Node("n1".into()));
    let own: Vec<Row> = ["get", "list", "watch", "create", "update", "patch"]
        .iter()
        .flat_map(|verb| {
            [
                (*verb, "", "nodes", N, N, Some("n1"), N, N),
                (*verb, "", "nodes", Some("status"), N, Some("n1"), N, N),
            ]
        })
        .collect();
    check(&node, true, &own);
    // every Node is readable (the networking needs routes to the others), only its own writable
    check(
        &node,
        true,
        &[
            ("get", "", "nodes", N, N, Some("n2"), N, N),
            ("list", "", "nodes", N, N, N, N, N),
            ("watch", "", "nodes", N, N, N, N, N),
        ],
    );
    check(
        &node,
        false,
        &[
            ("update", "", "nodes", Some("status"), N, Some("n2"), N, N),
            ("patch", "", "nodes", N, N, Some("n2"), N, N),
            ("delete", "", "nodes", N, N, Some("n1"), N, N),
            ("deletecollection", "", "nodes", N, N, N, N, N),
            ("get", "", "nodes", Some("proxy"), N, Some("n1"), N, N),
        ],
    );
}

#[test]
fn node_reaches_its_own_lease_only() {
    let node = id("system:node:n1", Role::Node("n1".into()));
    let ns = Some("kube-node-lease");
    check(
        &node,
        true,
        &[
            (
                "get",
                "coordination.k8s.io",
                "leases",
                N,
                ns,
                Some("n1"),
                N,
                N,
            ),
            (
                "create",
                "coordination.k8s.io",
                "leases",
                N,
                ns,
                Some("n1"),
                N,
                N,
            ),
            (
                "update",
                "coordination.k8s.io",
                "leases",
                N,
                ns,
                Some("n1"),
                N,
                N,
            ),
            (
                "patch",
                "coordination.k8s.io",
                "leases",
                N,
                ns,
                Some("n1"),
                N,
                N,
            ),
        ],
    );
    check(
        &node,
        false,
        &[
            (
                "get",
                "coordination.k8s.io",
                "leases",
                N,
                ns,
                Some("n2"),
                N,
                N,
            ),
            (
                "update",
                "coordination.k8s.io",
                "leases",
                N,
                Some("default"),
                Some("n1"),
                N,
                N,
            ),
            (
                "delete",
                "coordination.k8s.io",
                "leases",
                N,
                ns,
                Some("n1"),
                N,
                N,
            ),
            ("list", "coordination.k8s.io", "leases", N, ns, N, N, N),
            (
                "watch",
                "coordination.k8s.io",
                "leases",
                N,
                ns,
                Some("n1"),
                N,
                N,
            ),
            ("get", "", "leases", N, ns, Some("n1"), N, N),
        ],
    );
}

#[test]
fn node_reaches_the_pods_bound_to_it_only() {
    let node = id("system:node:n1", Role::Node("n1".into()));
    let ns = Some("default");
    let mine = Some("n1");
    let theirs = Some("n2");
    check(
        &node,
        true,
        &[
            ("get", "", "pods", N, ns, Some("p"), mine, N),
            ("update", "", "pods", Some("status"), ns, Some("p"), mine, N),
            ("patch", "", "pods", Some("status"), ns, Some("p"), mine, N),
            ("delete", "", "pods", N, ns, Some("p"), mine, N),
            ("list", "", "pods", N, None, N, N, mine),
            ("watch", "", "pods", N, None, N, N, mine),
            ("watch", "", "pods", N, ns, N, N, mine),
        ],
    );
    check(
        &node,
        false,
        &[
            ("get", "", "pods", N, ns, Some("p"), theirs, N),
            ("get", "", "pods", N, ns, Some("p"), N, N),
            (
                "update",
                "",
                "pods",
                Some("status"),
                ns,
                Some("p"),
                theirs,
                N,
            ),
            ("patch", "", "pods", Some("status"), ns, Some("p"), N, N),
            ("delete", "", "pods", N, ns, Some("p"), theirs, N),
            ("update", "", "pods", N, ns, Some("p"), mine, N),
            ("patch", "", "pods", N, ns, Some("p"), mine, N),
            ("create", "", "pods", N, ns, Some("p"), mine, N),
            ("deletecollection", "", "pods", N, ns, N, N, mine),
            ("list", "", "pods", N, None, N, N, N),
            ("list", "", "pods", N, None, N, N, theirs),
            ("watch", "", "pods", N, ns, N, N, theirs),
            ("get", "", "pods", Some("log"), ns, Some("p"), mine, N),
            ("create", "", "pods", Some("exec"), ns, Some("p"), mine, N),
        ],
    );
}

#[test]
fn node_reaches_nothing_else() {
    let node = id("system:node:n1", Role::Node("n1".into()));
    check(
        &node,
        false,
        &[
            ("get", "", "secrets", N, Some("default"), Some("s"), N, N),
            ("list", "", "secrets", N, None, N, N, Some("n1")),
            ("get", "", "configmaps", N, Some("default"), Some("c"), N, N),
            ("create", "", "services", N, Some("default"), Some("s"), N, N),
            (
                "get",
                "apps",
                "deployments",
                N,
                Some("default"),
                Some("web"),
                N,
                N,
            ),
            ("list", "", "events", N, Some("default"), N, N, N),
            ("get", "", "namespaces", N, N, Some("default"), N, N),
        ],
    );
}

#[test]
fn denials_are_worded_like_kubernetes() {
    let viewer = id("viewer", Role::Viewer);
    let row: Row = (
        "create",
        "apps",
        "deployments",
        N,
        Some("default"),
        Some("web"),
        N,
        N,
    );
    assert_eq!(
        authorize(&viewer, &attrs(&row)),
        Decision::Deny(r#"User "viewer" cannot create resource "deployments" in API group "apps" in the namespace "default""#.into())
    );
    let node = id("system:node:n1", Role::Node("n1".into()));
    let row: Row = ("update", "", "nodes", Some("status"), N, Some("n2"), N, N);
    let Decision::Deny(msg) = authorize(&node, &attrs(&row)) else {
        panic!("must be denied")
    };
    assert!(
        msg.starts_with(r#"User "system:node:n1" cannot update resource "nodes/status" in API group "" at the cluster scope"#),
        "{msg}"
    );
}
