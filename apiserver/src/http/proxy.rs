//! `pods/log` and `pods/exec`: relayed to the node agent that runs the pod.
//!
//! The apiserver finds the pod's node, the node's InternalIP and its agent's port
//! (`status.daemonEndpoints.kubeletEndpoint.Port`), and calls the agent over TLS as a client
//! with this replica's certificate (the agent trusts client certificates the cluster CA signed):
//! `GET /containerLogs/NS/POD/CONTAINER?...` streamed back as it comes, and
//! `GET /exec/NS/POD/CONTAINER?...` as a WebSocket whose frames are relayed both ways unchanged
//! (the channel protocol `v5.channel.k8s.io` or `v4.channel.k8s.io` is the same on both sides,
//! so the apiserver need not understand it).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio_tungstenite::tungstenite;

use super::status::ApiError;
use super::AppState;
use crate::auth::{self, Attributes, Decision, Identity};
use crate::pki::PkiPaths;
use crate::tls::{self, TlsError};

/// The exec channel protocols the agent and kubectl speak, most preferred first.
pub const EXEC_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// The agent port when a Node does not say.
const DEFAULT_AGENT_PORT: u16 = 10250;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the other direction of an exec relay may go on once one has ended.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Clients for calling node agents as this replica.
pub struct AgentClient {
    http: reqwest::Client,
    ws_tls: Arc<rustls::ClientConfig>,
}

impl AgentClient {
    /// Presents the replica certificate of `pki`, trusts only the cluster CA.
    pub fn new(pki: &PkiPaths) -> Result<AgentClient, TlsError> {
        let config = tls::peer_client_config(pki)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(config.clone())
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|source| TlsError::Client { source })?;
        // WebSockets need HTTP/1.1: offering h2 could make the agent pick it
        let mut ws_config = config;
        ws_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(AgentClient { http, ws_tls: Arc::new(ws_config) })
    }
}

/// The container a request means: the one named, else the pod's default (its
/// `kubectl.kubernetes.io/default-container` annotation, or its only container). Errors are
/// Kubernetes' own words.
pub fn choose_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let names = |key: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| c.get("name").and_then(Value::as_str)).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    if let Some(name) = requested.filter(|s| !s.is_empty()) {
        if containers.iter().chain(&init).chain(&ephemeral).any(|c| c == name) {
            return Ok(name.to_string());
        }
        return Err(ApiError::bad_request(format!("container {name} is not valid for pod {pod_name}")));
    }
    let annotated = pod
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
        .and_then(Value::as_str)
        .filter(|a| containers.iter().any(|c| c == a));
    if let Some(a) = annotated {
        return Ok(a.to_string());
    }
    if let [only] = containers.as_slice() {
        return Ok(only.clone());
    }
    let mut message = format!("a container name must be specified for pod {pod_name}, choose one of: [{}]", containers.join(" "));
    if !init.is_empty() {
        message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
    }
    Err(ApiError::bad_request(message))
}

/// The agent's address from a Node: its InternalIP (else any IP address it lists) and the port
/// in `status.daemonEndpoints.kubeletEndpoint`.
pub fn agent_address(node: &Value) -> Option<SocketAddr> {
    let addresses = node.pointer("/status/addresses").and_then(Value::as_array)?;
    let ip_of = |a: &Value| a.get("address").and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok());
    let ip = addresses
        .iter()
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .find_map(ip_of)
        .or_else(|| addresses.iter().find_map(ip_of))?;
    let endpoint = node.pointer("/status/daemonEndpoints/kubeletEndpoint");
    // Kubernetes spells this field `Port`; accept `port` too
    let port = endpoint
        .and_then(|e| e.get("Port").or_else(|| e.get("port")))
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_AGENT_PORT);
    Some(SocketAddr::new(ip, port))
}

/// The query a logs request forwards to the agent, checked (unknown parameters are dropped).
pub fn log_query(params: &[(String, String)]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "follow" | "timestamps" | "previous" | "insecureSkipTLSVerifyBackend" => {
                if !["true", "false", "1", "0", "True", "False"].contains(&v.as_str()) {
                    return Err(ApiError::bad_request(format!("{k}: Invalid value: {v:?}: must be true or false")));
                }
                if k != "insecureSkipTLSVerifyBackend" {
                    out.push((k.clone(), v.clone()));
                }
            }
            "tailLines" | "limitBytes" => {
                let ok = v.parse::<i64>().is_ok_and(|n| if k == "tailLines" { n >= 0 } else { n >= 1 });
                if !ok {
                    return Err(ApiError::bad_request(format!("{k}: Invalid value: {v:?}: must be {}", if k == "tailLines" { "a non-negative integer" } else { "a positive integer" })));
                }
                out.push((k.clone(), v.clone()));
            }
            "sinceSeconds" => {
                if !v.parse::<i64>().is_ok_and(|n| n >= 1) {
                    return Err(ApiError::bad_request(format!("sinceSeconds: Invalid value: {v:?}: must be greater than 0")));
                }
                out.push((k.clone(), v.clone()));
            }
            "sinceTime" => {
                if v.parse::<jiff::Timestamp>().is_err() {
                    return Err(ApiError::bad_request(format!("sinceTime: Invalid value: {v:?}: must be an RFC 3339 time")));
                }
                out.push((k.clone(), v.clone()));
            }
            _ => {}
        }
    }
    if out.iter().any(|(k, _)| k == "sinceSeconds") && out.iter().any(|(k, _)| k == "sinceTime") {
        return Err(ApiError::bad_request("at most one of sinceTime or sinceSeconds may be specified"));
    }
    Ok(out)
}

/// GET /api/v1/namespaces/{namespace}/pods/{name}/log
pub async fn logs(
    State(st): State<AppState>,
    Extension(id): Extension<Identity>,
    Path((namespace, name)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    match logs_inner(&st, &id, &namespace, &name, &uri).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn logs_inner(st: &AppState, id: &Identity, namespace: &str, name: &str, uri: &Uri) -> Result<Response, ApiError> {
    let params = query_pairs(uri)?;
    let target = locate(st, id, namespace, name, "get", "log", &params).await?;
    let query = encode_query(&log_query(&params)?);
    let agents = st.agents.as_ref().ok_or_else(|| ApiError::unavailable("this replica has no client certificate to call node agents with"))?;
    let url = format!(
        "https://{}/containerLogs/{}/{}/{}{query}",
        target.addr,
        urlencoding::encode(namespace),
        urlencoding::encode(name),
        urlencoding::encode(&target.container)
    );
    let resp = agents.http.get(&url).send().await.map_err(|e| unreachable(&target, e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(agent_error(status.as_u16(), &resp.bytes().await.unwrap_or_default()));
    }
    let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
    out.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    out.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(out)
}

/// GET (WebSocket) /api/v1/namespaces/{namespace}/pods/{name}/exec
pub async fn exec(
    State(st): State<AppState>,
    Extension(id): Extension<Identity>,
    Path((namespace, name)): Path<(String, String)>,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    match exec_inner(&st, &id, &namespace, &name, &uri, upgrade).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn exec_inner(
    st: &AppState,
    id: &Identity,
    namespace: &str,
    name: &str,
    uri: &Uri,
    upgrade: Result<WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let mut params = query_pairs(uri)?;
    let target = locate(st, id, namespace, name, "create", "exec", &params).await?;
    if !params.iter().any(|(k, v)| k == "command" && !v.is_empty()) {
        return Err(ApiError::bad_request("you must specify at least one command for the container"));
    }
    let Ok(upgrade) = upgrade else {
        return Err(ApiError::bad_request(format!(
            "Upgrade request required: exec is served over WebSocket with subprotocol {} or {}",
            EXEC_PROTOCOLS[0], EXEC_PROTOCOLS[1]
        )));
    };
    let offered: Vec<&'static str> = EXEC_PROTOCOLS
        .into_iter()
        .filter(|p| upgrade.requested_protocols().any(|r| r.to_str().is_ok_and(|r| r.trim() == *p)))
        .collect();
    if offered.is_empty() {
        return Err(ApiError::bad_request(format!(
            "no supported WebSocket subprotocol requested: use {} or {}",
            EXEC_PROTOCOLS[0], EXEC_PROTOCOLS[1]
        )));
    }
    params.retain(|(k, _)| ["command", "stdin", "stdout", "stderr", "tty"].contains(&k.as_str()));
    let agents = st.agents.as_ref().ok_or_else(|| ApiError::unavailable("this replica has no client certificate to call node agents with"))?;
    let path = format!(
        "/exec/{}/{}/{}{}",
        urlencoding::encode(namespace),
        urlencoding::encode(name),
        urlencoding::encode(&target.container),
        encode_query(&params)
    );
    let (agent_ws, chosen) = connect_agent_ws(agents, &target, &path, &offered).await?;
    tracing::debug!(pod = %format!("{namespace}/{name}"), container = %target.container, node = %target.node, protocol = chosen, "exec relay starting");
    Ok(upgrade.protocols([chosen]).on_upgrade(move |client| relay(client, agent_ws)))
}

/// Where a pod's container runs.
struct AgentTarget {
    node: String,
    addr: SocketAddr,
    container: String,
}

/// Authorizes the subresource request, then finds the pod, its container and its agent.
async fn locate(
    st: &AppState,
    id: &Identity,
    namespace: &str,
    name: &str,
    verb: &str,
    subresource: &str,
    params: &[(String, String)],
) -> Result<AgentTarget, ApiError> {
    let pods = api::resource::by_plural("", "v1", "pods").ok_or_else(|| ApiError::internal("the pods resource is not registered"))?;
    let nodes = api::resource::by_plural("", "v1", "nodes").ok_or_else(|| ApiError::internal("the nodes resource is not registered"))?;
    let key = pods.storage_key(Some(namespace), name);
    let pod = match st.store.get(&key) {
        Some(p) => p,
        None => {
            st.store.read_barrier().await?;
            st.store.get(&key).ok_or_else(|| ApiError::not_found(pods, name))?
        }
    };
    let pod_node = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|s| !s.is_empty());
    let attrs = Attributes {
        verb,
        group: "",
        resource: "pods",
        subresource: Some(subresource),
        namespace: Some(namespace),
        name: Some(name),
        pod_node,
        ..Default::default()
    };
    if let Decision::Deny(why) = auth::authorize(id, &attrs) {
        return Err(ApiError::forbidden(why));
    }
    let requested = params.iter().find(|(k, _)| k == "container").map(|(_, v)| v.as_str());
    let container = choose_container(&pod, requested)?;
    let node = pod_node.ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?.to_string();
    let node_obj = st.store.get(&nodes.storage_key(None, &node)).ok_or_else(|| ApiError::not_found(nodes, &node))?;
    let addr = agent_address(&node_obj)
        .ok_or_else(|| ApiError::bad_request(format!("node {node} reports no InternalIP address to reach its agent at")))?;
    Ok(AgentTarget { node, addr, container })
}

type AgentWs = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn connect_agent_ws(
    agents: &AgentClient,
    target: &AgentTarget,
    path: &str,
    protocols: &[&'static str],
) -> Result<(AgentWs, &'static str), ApiError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let fail = |e: String| ApiError::unavailable(format!("cannot reach the node agent of node {} at {}: {e}", target.node, target.addr));
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target.addr))
        .await
        .map_err(|_| fail("connection timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let server_name = rustls::pki_types::ServerName::IpAddress(target.addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(agents.ws_tls.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| fail(format!("TLS handshake: {e}")))?;
    let mut request = format!("wss://{}{path}", target.addr)
        .into_client_request()
        .map_err(|e| ApiError::internal(format!("building the exec request to the agent: {e}")))?;
    let offered = HeaderValue::from_str(&protocols.join(", ")).map_err(|e| ApiError::internal(e.to_string()))?;
    request.headers_mut().insert(http::header::SEC_WEBSOCKET_PROTOCOL, offered);
    let (stream, response) = match tokio_tungstenite::client_async(request, tls).await {
        Ok(ok) => ok,
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            return Err(agent_error(resp.status().as_u16(), &body));
        }
        Err(e) => return Err(fail(format!("WebSocket handshake: {e}"))),
    };
    let chosen = response
        .headers()
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| protocols.iter().copied().find(|p| *p == v.trim()))
        .ok_or_else(|| fail("the agent chose no supported subprotocol".into()))?;
    Ok((stream, chosen))
}

/// Copies frames both ways until either side closes, then lets the other side finish its
/// close for a moment. Pings and pongs are answered by each connection itself.
async fn relay(client: WebSocket, agent: AgentWs) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut agent_tx, mut agent_rx) = agent.split();
    let up = async move {
        while let Some(Ok(m)) = client_rx.next().await {
            let close = matches!(m, ws::Message::Close(_));
            let Some(m) = to_agent(m) else { continue };
            if agent_tx.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = agent_tx.close().await;
    };
    let down = async move {
        while let Some(Ok(m)) = agent_rx.next().await {
            let close = matches!(m, tungstenite::Message::Close(_));
            let Some(m) = to_client(m) else { continue };
            if client_tx.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = client_tx.close().await;
    };
    tokio::pin!(up, down);
    tokio::select! {
        () = &mut up => { let _ = tokio::time::timeout(CLOSE_GRACE, down).await; }
        () = &mut down => { let _ = tokio::time::timeout(CLOSE_GRACE, up).await; }
    }
}

fn to_agent(m: ws::Message) -> Option<tungstenite::Message> {
    Some(match m {
        ws::Message::Binary(b) => tungstenite::Message::Binary(b),
        ws::Message::Text(t) => tungstenite::Message::Text(t.as_str().into()),
        ws::Message::Close(c) => tungstenite::Message::Close(c.map(|c| tungstenite::protocol::CloseFrame {
            code: c.code.into(),
            reason: c.reason.as_str().into(),
        })),
        ws::Message::Ping(_) | ws::Message::Pong(_) => return None,
    })
}

fn to_client(m: tungstenite::Message) -> Option<ws::Message> {
    Some(match m {
        tungstenite::Message::Binary(b) => ws::Message::Binary(b),
        tungstenite::Message::Text(t) => ws::Message::Text(t.as_str().into()),
        // kubectl takes only a normal closure (1000) as the end of the streams, and reports a
        // close without a code (1005) as an error: send a missing code as 1000
        tungstenite::Message::Close(c) => ws::Message::Close(Some(match c {
            Some(c) => ws::CloseFrame { code: c.code.into(), reason: c.reason.as_str().into() },
            None => ws::CloseFrame { code: ws::close_code::NORMAL, reason: "".into() },
        })),
        tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) | tungstenite::Message::Frame(_) => return None,
    })
}

fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    let Some(q) = uri.query() else { return Ok(Vec::new()) };
    let uri: Uri = format!("/?{q}").parse().map_err(|_| ApiError::bad_request("malformed query string"))?;
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|axum::extract::Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("invalid query parameters: {}", e.body_text())))
}

fn encode_query(params: &[(String, String)]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", urlencoding::encode(k), urlencoding::encode(v))).collect();
    format!("?{}", parts.join("&"))
}

fn unreachable(target: &AgentTarget, e: reqwest::Error) -> ApiError {
    ApiError::unavailable(format!("cannot reach the node agent of node {} at {}: {e}", target.node, target.addr))
}

/// An agent's error answer: its `Status` when it sent one, else its text under its code.
fn agent_error(code: u16, body: &[u8]) -> ApiError {
    if let Ok(status) = serde_json::from_slice::<Value>(body) {
        if status.get("kind").and_then(Value::as_str) == Some("Status") {
            let message = status.get("message").and_then(Value::as_str).unwrap_or("").to_string();
            let mut e = ApiError::new(code, reason_for(code), message);
            e.details = status.get("details").cloned();
            return e;
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    let code = StatusCode::from_u16(code).map(|c| c.as_u16()).unwrap_or(502);
    ApiError::new(code, reason_for(code), if text.is_empty() { format!("the node agent answered {code}") } else { text })
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_are_chosen_as_kubernetes_does() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(choose_container(&one, None).unwrap(), "a");
        assert_eq!(choose_container(&one, Some("")).unwrap(), "a");
        assert_eq!(choose_container(&one, Some("b")).unwrap_err().message, "container b is not valid for pod p");
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let e = choose_container(&two, None).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"));
        assert_eq!(choose_container(&two, Some("i")).unwrap(), "i");
        let mut annotated = two.clone();
        annotated["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/default-container": "b"});
        assert_eq!(choose_container(&annotated, None).unwrap(), "b");
    }

    #[test]
    fn agent_addresses_from_nodes() {
        let n = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
                                   "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}}}});
        assert_eq!(agent_address(&n), Some("10.0.0.5:12345".parse().unwrap()));
        let v6 = json!({"status": {"addresses": [{"type": "ExternalIP", "address": "::1"}]}});
        assert_eq!(agent_address(&v6), Some("[::1]:10250".parse().unwrap()));
        assert_eq!(agent_address(&json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}})), None);
        assert_eq!(agent_address(&json!({})), None);
    }

    #[test]
    fn log_queries_are_checked() {
        let q = |pairs: &[(&str, &str)]| log_query(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>());
        let ok = q(&[("follow", "true"), ("tailLines", "10"), ("container", "c"), ("pretty", "x")]).unwrap();
        assert_eq!(ok, vec![("follow".to_string(), "true".to_string()), ("tailLines".to_string(), "10".to_string())]);
        for bad in [("tailLines", "-1"), ("tailLines", "x"), ("sinceSeconds", "0"), ("follow", "yes"), ("sinceTime", "yesterday"), ("limitBytes", "0")] {
            assert_eq!(q(&[bad]).err().map(|e| e.code), Some(400), "{bad:?}");
        }
        assert!(q(&[("sinceSeconds", "5"), ("sinceTime", "2026-01-01T00:00:00Z")]).is_err());
    }

    #[test]
    fn agent_errors_keep_status_objects() {
        let e = agent_error(404, br#"{"kind":"Status","status":"Failure","message":"container c not found","code":404}"#);
        assert_eq!((e.code, e.reason, e.message.as_str()), (404, "NotFound", "container c not found"));
        let e = agent_error(500, b"boom\n");
        assert_eq!((e.code, e.message.as_str()), (500, "boom"));
    }
}
