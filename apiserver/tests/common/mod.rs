//! What the apiserver's in-process tests share: one real replica on 127.0.0.1:0 (HTTPS, its own
//! CA and tokens in a temporary directory), clients for it, and tokens with roles.
#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use apiserver::auth::{Role, TokenFile};
use apiserver::pki::{self, InitOptions, PkiPaths};
use apiserver::server::{self, ServeOptions};
use apiserver::store::Replica;
use apiserver::tls;

/// One replica and its admin token; dropping it stops the replica.
pub struct Replica1 {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Replica1 {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Replica1 {
    /// Starts the replica in this process and waits until it serves the default namespaces.
    pub async fn start() -> Replica1 {
        let dir = tempfile::tempdir().unwrap();
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = api.local_addr().unwrap();
        let out = pki::init(&InitOptions { dir: dir.path().to_path_buf(), hosts: vec![], servers: vec![format!("https://{addr}")] }).unwrap();
        let me = Replica { api_addr: addr.to_string(), peer_addr: peer.local_addr().unwrap().to_string() };
        let opts = ServeOptions {
            id: 1,
            data_dir: dir.path().join("replica-1"),
            pki: PkiPaths::under(dir.path()),
            tokens: out.tokens_file.clone(),
            me: me.clone(),
            initial_cluster: BTreeMap::from([(1, me)]),
            join: false,
            snapshot_every: None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            if let Err(e) = server::run(opts, api, peer, async {
                let _ = stopped.await;
            })
            .await
            {
                eprintln!("replica stopped with an error: {e:#}");
            }
        });
        let r = Replica1 { dir, addr, admin: out.admin_token, stop: Some(stop) };
        let client = r.client(Some(&r.admin));
        for ns in ["default", "kube-system"] {
            let mut ready = false;
            for _ in 0..200 {
                if let Ok(resp) = client.get(r.url(&format!("/api/v1/namespaces/{ns}"))).send().await {
                    if resp.status().is_success() {
                        ready = true;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(ready, "the replica did not become ready (no namespace {ns})");
        }
        r
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn pki(&self) -> PkiPaths {
        PkiPaths::under(self.dir.path())
    }

    /// An HTTPS client trusting the cluster CA, with `token` as its bearer token if given.
    pub fn client(&self, token: Option<&str>) -> reqwest::Client {
        let config = tls::api_client_config(&self.pki().ca_cert()).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        }
        reqwest::Client::builder().use_preconfigured_tls(config).default_headers(headers).timeout(Duration::from_secs(30)).build().unwrap()
    }

    /// Adds a token for `user` with `role` to the replica's token file (polled by the server).
    pub fn token(&self, user: &str, role: Role) -> String {
        TokenFile::append(&self.tokens_file(), user, &role).unwrap()
    }

    pub fn tokens_file(&self) -> PathBuf {
        self.dir.path().join("tokens.csv")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }
}
