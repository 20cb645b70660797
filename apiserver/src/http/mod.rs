//! The HTTP API: Kubernetes paths, discovery, and Flotilla's admin routes, on one axum router.
//!
//! Layout: [`target`] maps a path to a kind and object; [`resources`] holds the verbs;
//! [`watch`] streams changes; [`patch`] applies the three patch formats; [`discovery`] answers
//! `/api`, `/apis` and `/version`; [`admin`] serves cluster membership; [`status`] renders errors
//! as `Status` objects; [`join`] hands node agents their credentials; [`proxy`] relays
//! `pods/log` and `pods/exec` to node agents. The Raft peer routes live on a different listener
//! (see `store`).

pub mod admin;
pub mod bindings;
pub mod discovery;
pub mod join;
pub mod objects;
pub mod patch;
pub mod proxy;
pub mod resources;
pub mod services;
pub mod status;
pub mod table;
pub mod target;
pub mod watch;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use tokio::sync::Semaphore;

use crate::auth::{self, Identity, NodeTokens, TokenFile};
use crate::pki::PkiPaths;
use crate::store::Store;
use status::ApiError;

/// Request bodies above this get 413, as kube-apiserver's 3 MiB limit.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Requests served at once per replica, watches excepted; more get 429.
pub const MAX_IN_FLIGHT: usize = 400;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// swapped whole when the token file changes on disk (see [`watch_token_file`])
    pub tokens: Arc<std::sync::RwLock<Arc<TokenFile>>>,
    pub in_flight: Arc<Semaphore>,
    /// host:port this replica's API is reached at, for `/api`'s serverAddressByClientCIDRs
    pub advertise: String,
    /// tokens handed out by joins, kept in step with the store by [`watch_node_tokens`]
    pub node_tokens: Arc<NodeTokens>,
    /// the cluster CA and this replica's certificate; without them (tests) joins and the
    /// pods/log and pods/exec relays answer 503
    pub pki: Option<PkiPaths>,
    pub agents: Option<Arc<proxy::AgentClient>>,
}

impl AppState {
    pub fn new(store: Store, tokens: TokenFile, advertise: String) -> Self {
        AppState {
            store,
            tokens: Arc::new(std::sync::RwLock::new(Arc::new(tokens))),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            advertise,
            node_tokens: Arc::new(NodeTokens::default()),
            pki: None,
            agents: None,
        }
    }

    /// Gives the replica its PKI: to sign joining nodes' certificates and to call node agents.
    pub fn with_pki(mut self, pki: PkiPaths) -> Result<Self, crate::tls::TlsError> {
        self.agents = Some(Arc::new(proxy::AgentClient::new(&pki)?));
        self.pki = Some(pki);
        Ok(self)
    }
}

/// The router for the API listener.
pub fn router(st: AppState) -> Router {
    let public = Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(|| async { Json(discovery::version()) }));
    let authenticated = Router::new()
        .route("/api", get(api_versions))
        .route("/apis", get(|| async { Json(discovery::api_group_list()) }))
        .route("/openapi/v3", get(|| async { Json(discovery::openapi_v3_root()) }))
        .route("/openapi/v3/{*gv}", get(openapi_v3_gv))
        .route("/api/v1/namespaces/{namespace}/pods/{name}/log", get(proxy::logs))
        .route("/api/v1/namespaces/{namespace}/pods/{name}/exec", any(proxy::exec))
        .route("/flotilla/v1/join", post(join::join))
        .route(api::client::bindings::BINDINGS_PATH, post(bindings::bind_many))
        .route("/api/{*rest}", any(core_api))
        .route("/apis/{*rest}", any(group_api))
        .merge(admin::router())
        .fallback(|uri: Uri| async move { ApiError::path_not_found(uri.path()) })
        .layer(middleware::from_fn_with_state(st.clone(), authenticate));
    public.merge(authenticated).with_state(st)
}

/// Reloads the token file when it changes, so `apiserver token` takes effect without a restart.
/// A file that no longer parses is reported and the tokens already loaded stay in force.
pub async fn watch_token_file(st: AppState, path: std::path::PathBuf) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = modified(&path);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = modified(&path);
        if now == last {
            continue;
        }
        last = now;
        match TokenFile::load(&path) {
            Ok(t) => {
                if let Ok(mut guard) = st.tokens.write() {
                    *guard = Arc::new(t);
                }
                tracing::info!(path = %path.display(), "token file reloaded");
            }
            Err(e) => tracing::warn!(error = %e, "the token file changed but cannot be loaded; keeping the tokens in force"),
        }
    }
}

/// Keeps `st.node_tokens` equal to the node-token Secrets in the store: a full read, then a
/// re-read on every change of a Secret in their namespace (few and small), starting over when
/// the watch ends.
pub async fn watch_node_tokens(st: AppState) {
    use futures::StreamExt as _;
    let Some(info) = api::resource::by_plural("", "v1", "secrets") else { return };
    let prefix = info.storage_prefix(Some(auth::NODE_TOKEN_NAMESPACE));
    loop {
        let revision = refresh_node_tokens(&st);
        match st.store.watch(&prefix, revision) {
            Ok(mut events) => {
                while let Some(Ok(_)) = events.next().await {
                    refresh_node_tokens(&st);
                }
            }
            Err(e) => tracing::debug!(error = %e, "node token watch will start over"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Re-reads the node tokens from this replica's copy of the store; returns the revision read.
pub fn refresh_node_tokens(st: &AppState) -> u64 {
    let Some(info) = api::resource::by_plural("", "v1", "secrets") else { return 0 };
    let (secrets, revision) = st.store.list(&info.storage_prefix(Some(auth::NODE_TOKEN_NAMESPACE)));
    st.node_tokens.replace_from(secrets.iter().map(|s| s.as_ref()));
    revision
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(st): State<AppState>) -> Response {
    match st.store.read_barrier().await {
        Ok(_) => "ok".into_response(),
        Err(e) => ApiError::unavailable(format!("not ready: {e}")).into_response(),
    }
}

async fn api_versions(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(discovery::api_versions(&st.advertise))
}

async fn openapi_v3_gv(Path(gv): Path<String>, uri: Uri) -> Response {
    match discovery::openapi_v3_group_version(gv.trim_end_matches('/')) {
        Some(doc) => Json(doc).into_response(),
        None => ApiError::path_not_found(uri.path()).into_response(),
    }
}

async fn authenticate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let tokens = match st.tokens.read() {
        Ok(t) => t.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let found = match auth::bearer_token(req.headers()) {
        Ok(token) => match tokens.authenticate_token(token) {
            Ok(id) => Ok(id),
            Err(_) => match st.node_tokens.authenticate_token(token) {
                Ok(id) => Ok(id),
                // a node that joined through another replica a moment ago: this replica may
                // not have applied the Secret yet, so catch up once before refusing
                Err(_) if auth::looks_like_node_token(token) => {
                    let token = token.to_vec();
                    match st.store.read_barrier().await {
                        Ok(_) => {
                            refresh_node_tokens(&st);
                            st.node_tokens.authenticate_token(&token)
                        }
                        Err(_) => Err(auth::AuthError::Unauthorized),
                    }
                }
                Err(e) => Err(e),
            },
        },
        Err(e) => Err(e),
    };
    match found {
        Ok(id) => {
            tracing::trace!(user = %id.user, method = %req.method(), path = %req.uri().path(), "request");
            req.extensions_mut().insert(id);
            next.run(req).await
        }
        Err(_) => ApiError::unauthorized().into_response(),
    }
}

async fn core_api(
    State(st): State<AppState>,
    Extension(id): Extension<Identity>,
    Path(rest): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rest = rest.trim_end_matches('/');
    if rest == "v1" {
        return match discovery::resource_list("", "v1") {
            Some(v) => Json(v).into_response(),
            None => ApiError::path_not_found(uri.path()).into_response(),
        };
    }
    serve_resource(st, id, true, rest, method, uri, headers, body).await
}

async fn group_api(
    State(st): State<AppState>,
    Extension(id): Extension<Identity>,
    Path(rest): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rest = rest.trim_end_matches('/');
    let segs: Vec<&str> = rest.split('/').collect();
    match segs.as_slice() {
        [group] => match discovery::api_group(group) {
            Some(v) => Json(v).into_response(),
            None => ApiError::path_not_found(uri.path()).into_response(),
        },
        [group, version] => match discovery::resource_list(group, version) {
            Some(v) => Json(v).into_response(),
            None => ApiError::path_not_found(uri.path()).into_response(),
        },
        _ => serve_resource(st, id, false, rest, method, uri, headers, body).await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_resource(
    st: AppState,
    identity: Identity,
    core: bool,
    rest: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let target = target::parse(core, rest)?;
        let query: resources::Query = match uri.query() {
            Some(q) => serde_urlencoded_query(q)?,
            None => resources::Query::default(),
        };
        let is_watch = matches!(query.watch.as_deref(), Some("true") | Some("1"));
        // long-running watches are not counted, as kube-apiserver's max-in-flight does
        let _permit = if is_watch {
            None
        } else {
            Some(st.in_flight.clone().try_acquire_owned().map_err(|_| ApiError::too_many_requests())?)
        };
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| ApiError::too_large(MAX_BODY_BYTES))?;
        resources::dispatch(&st, resources::Request { identity, method, target, query, headers, body }).await
    }
    .await;
    match result {
        Ok(r) => r,
        Err(e) => {
            if e.code >= 500 {
                tracing::warn!(path = %uri.path(), error = %e, "request failed");
            }
            e.into_response()
        }
    }
}

fn serde_urlencoded_query(q: &str) -> Result<resources::Query, ApiError> {
    let uri: Uri = format!("/?{q}").parse().map_err(|_| ApiError::bad_request("malformed query string"))?;
    axum::extract::Query::<resources::Query>::try_from_uri(&uri)
        .map(|axum::extract::Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("invalid query parameters: {}", e.body_text())))
}
