//! `POST /flotilla/v1/join`: a node agent trades a bootstrap token for its own credential.
//!
//! The answer carries a new random node token (user `system:node:N`), the cluster CA, and a
//! serving certificate for the agent's HTTPS port signed by the cluster CA. The token is
//! recorded in the replicated store as a Secret `kube-system/node-token-N` holding only its
//! SHA-256, so every replica accepts it (see `auth::NodeTokens`); joining the same node again
//! replaces the Secret, and with it the old token.
//!
//! Every replica can sign: `apiserver init` writes one `pki/` directory that all replicas of a
//! cluster read (deploy/local-cluster passes the same `--dir` to each), CA key included. On
//! separate machines the CA key must be copied with the rest of `pki/`.

use std::net::IpAddr;

use api::scheme::{self, FieldValidation};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::objects;
use super::status::ApiError;
use super::AppState;
use crate::auth::{self, Identity, Role};
use crate::pki;
use crate::store::{ApplyResult, Command};

/// At most this many addresses go into a node's serving certificate.
const MAX_ADDRESSES: usize = 32;

/// What a join asks for, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct JoinRequest {
    pub node_name: String,
    pub addresses: Vec<String>,
}

/// Checks a join body: `{"nodeName": N, "addresses": ["IP", ...]}`.
pub fn parse_join_request(body: &[u8]) -> Result<JoinRequest, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("expected a JSON body {{\"nodeName\": \"NAME\", \"addresses\": [\"IP\", ...]}}: {e}"))
    })?;
    let Some(obj) = v.as_object() else {
        return Err(ApiError::bad_request("expected a JSON object {\"nodeName\": \"NAME\", \"addresses\": [\"IP\", ...]}"));
    };
    if let Some(unknown) = obj.keys().find(|k| !["nodeName", "addresses"].contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("unknown field {unknown:?}: a join takes nodeName and addresses")));
    }
    let node_name = match obj.get("nodeName") {
        None | Some(Value::Null) => return Err(ApiError::bad_request("nodeName: Required value: give the node's name")),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(ApiError::bad_request("nodeName: Required value: give the node's name"))
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(ApiError::bad_request(format!("nodeName: Invalid value: {other}: must be a string"))),
    };
    if !auth::valid_name(&node_name) || node_name.split('.').any(|l| l.len() > 63) {
        return Err(ApiError::bad_request(format!(
            "nodeName: Invalid value: {node_name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )));
    }
    let addresses = match obj.get("addresses") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                let Some(s) = item.as_str() else {
                    return Err(ApiError::bad_request(format!("addresses: Invalid value: {item}: must be an IP address string")));
                };
                let ip: IpAddr = s
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("addresses: Invalid value: {s:?}: must be an IP address")))?;
                out.push(ip.to_string());
            }
            out
        }
        Some(other) => return Err(ApiError::bad_request(format!("addresses: Invalid value: {other}: must be a list of IP addresses"))),
    };
    if addresses.len() > MAX_ADDRESSES {
        return Err(ApiError::bad_request(format!("addresses: Too many: {}: must have at most {MAX_ADDRESSES} items", addresses.len())));
    }
    Ok(JoinRequest { node_name, addresses })
}

/// The handler.
pub async fn join(State(st): State<AppState>, Extension(id): Extension<Identity>, body: axum::body::Bytes) -> Response {
    match join_inner(&st, &id, &body).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            if e.code >= 500 {
                tracing::warn!(error = %e, "join failed");
            }
            e.into_response()
        }
    }
}

async fn join_inner(st: &AppState, id: &Identity, body: &[u8]) -> Result<Value, ApiError> {
    if !matches!(id.role, Role::Bootstrap | Role::Admin) {
        return Err(ApiError::forbidden(format!(
            "User {:?} cannot join nodes: only bootstrap tokens (apiserver token --role bootstrap) and admins can",
            id.user
        )));
    }
    let req = parse_join_request(body)?;
    let pki_paths = st.pki.as_ref().ok_or_else(|| ApiError::unavailable("this replica has no cluster CA to sign node certificates with"))?;
    let mut hosts = vec![req.node_name.clone()];
    hosts.extend(req.addresses.iter().cloned());
    let (serving_cert, serving_key) = pki::node_serving_cert(pki_paths, &req.node_name, &hosts)
        .map_err(|e| ApiError::internal(format!("signing the serving certificate of node {}: {e}", req.node_name)))?;
    let ca_cert = std::fs::read_to_string(pki_paths.ca_cert())
        .map_err(|e| ApiError::internal(format!("reading {}: {e}", pki_paths.ca_cert().display())))?;
    let (token, secret) = auth::new_node_token(&req.node_name);
    store_secret(st, secret).await?;
    // Make the token usable on this replica at once; the others learn it from their watch.
    super::refresh_node_tokens(st);
    tracing::info!(node = %req.node_name, by = %id.user, "node joined");
    Ok(json!({
        "token": token,
        "user": auth::node_identity(&req.node_name).user,
        "caCert": ca_cert,
        "servingCert": serving_cert,
        "servingKey": serving_key,
    }))
}

/// Creates the node's token Secret, or replaces the one a previous join left.
async fn store_secret(st: &AppState, secret: Value) -> Result<(), ApiError> {
    let info = api::resource::by_plural("", "v1", "secrets").ok_or_else(|| ApiError::internal("the secrets resource is not registered"))?;
    let name = objects::name(&secret).unwrap_or_default().to_string();
    let key = info.storage_key(Some(auth::NODE_TOKEN_NAMESPACE), &name);
    for _ in 0..16 {
        st.store.read_barrier().await?;
        let current = st.store.get(&key);
        let mut obj = secret.clone();
        let (uid, created) = match &current {
            Some(c) => (
                objects::meta(c).get("uid").cloned().unwrap_or(Value::Null),
                objects::meta(c).get("creationTimestamp").cloned().unwrap_or(Value::Null),
            ),
            None => (json!(uuid::Uuid::new_v4().to_string()), json!(objects::now())),
        };
        objects::set_meta(&mut obj, "uid", uid);
        objects::set_meta(&mut obj, "creationTimestamp", created);
        let admitted = scheme::admit(info, obj, FieldValidation::Strict)
            .map_err(|e| ApiError::internal(format!("the node token Secret {name} does not validate: {e}")))?;
        let cmd = match &current {
            Some(c) => {
                let rv = objects::resource_version(c).unwrap_or(0);
                let mut object = admitted.object;
                objects::set_meta(&mut object, "resourceVersion", json!(rv.to_string()));
                Command::Update { key: key.clone(), object, expected_rv: rv }
            }
            None => Command::Create { key: key.clone(), object: admitted.object },
        };
        match st.store.write(cmd).await?.1 {
            ApplyResult::Ok { .. } => return Ok(()),
            // someone else wrote it meanwhile (a concurrent join of the same name): look again
            ApplyResult::Conflict { .. } | ApplyResult::AlreadyExists | ApplyResult::NotFound => continue,
        }
    }
    Err(ApiError::conflict(info, &name, "the node token Secret kept changing; join again"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, want: Result<(&str, &[&str]), &str>) {
        match (parse_join_request(body.as_bytes()), want) {
            (Ok(r), Ok((name, addrs))) => {
                assert_eq!(r.node_name, name, "{body}");
                assert_eq!(r.addresses, addrs.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{body}");
            }
            (Err(e), Err(needle)) => {
                assert_eq!(e.code, 400, "{body}");
                assert!(e.message.contains(needle), "{body}: {}", e.message);
            }
            (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn join_requests_good_and_bad() {
        check(r#"{"nodeName": "n1", "addresses": ["10.0.0.1", "::1"]}"#, Ok(("n1", &["10.0.0.1", "::1"])));
        check(r#"{"nodeName": "n1.example"}"#, Ok(("n1.example", &[])));
        check(r#"{"addresses": []}"#, Err("nodeName: Required value"));
        check(r#"{"nodeName": ""}"#, Err("nodeName: Required value"));
        check(r#"{"nodeName": "Bad_Name"}"#, Err("RFC 1123"));
        check(r#"{"nodeName": "-n"}"#, Err("RFC 1123"));
        check(r#"{"nodeName": 5}"#, Err("must be a string"));
        check(r#"{"nodeName": "n1", "addresses": ["host.example"]}"#, Err("must be an IP address"));
        check(r#"{"nodeName": "n1", "addresses": "10.0.0.1"}"#, Err("must be a list"));
        check(r#"{"nodeName": "n1", "extra": 1}"#, Err("unknown field"));
        check("[1]", Err("expected a JSON object"));
        check("{", Err("expected a JSON body"));
    }
}
