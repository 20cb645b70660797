//! The resource handlers: get, list, watch, create, update, patch, delete, deletecollection, and
//! the `status`, `scale` and `binding` subresources.
//!
//! Every write is a read-modify-propose loop: read the current object, compute the new one,
//! propose a compare-and-set on the revision read, and retry when another writer got there
//! first (unless the client pinned `metadata.resourceVersion`, in which case it gets 409).
//! That keeps the store's `apply` small and deterministic: uids, timestamps and names are all
//! decided here, before proposing.

use std::collections::BTreeSet;
use std::time::Duration;

use api::resource::ResourceInfo;
use api::scheme::{self, AdmitError, FieldValidation};
use api::selector::{FieldSelector, LabelSelector};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::objects::{self, meta_str};
use super::patch::{self, PatchType};
use super::status::{success_status, ApiError};
use super::target::Target;
use super::{watch, AppState};
use crate::auth::{self, Attributes, Decision, Identity, Role};
use crate::store::{ApplyResult, Command};

/// How many times an unconditional write retries after losing a compare-and-set race.
const MAX_RETRIES: usize = 16;

/// The query parameters Kubernetes defines for resource requests (unknown ones are ignored,
/// as kube-apiserver does).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<i64>,
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub watch: Option<String>,
    pub allow_watch_bookmarks: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub field_validation: Option<String>,
    pub dry_run: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true") | Some("1") | Some("True"))
}

/// A request after routing and authentication.
pub struct Request {
    pub identity: Identity,
    pub method: Method,
    pub target: Target,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

/// The Kubernetes verb of a request.
fn verb(method: &Method, target: &Target, query: &Query) -> Result<&'static str, ApiError> {
    let has_name = target.name.is_some();
    Ok(match (method.as_str(), has_name) {
        ("GET", false) if truthy(&query.watch) => "watch",
        ("GET", false) => "list",
        ("GET", true) if truthy(&query.watch) => "watch",
        ("GET", true) => "get",
        ("POST", false) => "create",
        ("POST", true) if target.subresource.as_deref() == Some("binding") => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        (m, _) => {
            let what = target.info.qualified_name();
            return Err(ApiError::method_not_allowed(m, &what));
        }
    })
}

pub async fn dispatch(st: &AppState, req: Request) -> Result<Response, ApiError> {
    let verb = verb(&req.method, &req.target, &req.query)?;
    let info = req.target.info;
    let field_selector = match req.query.field_selector.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => {
            let fs = FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
            fs.check_supported(info).map_err(|e| ApiError::bad_request(e.to_string()))?;
            Some(fs)
        }
        None => None,
    };
    let label_selector = match req.query.label_selector.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?),
        None => None,
    };
    // a node may only touch pods bound to it: find out which node the pod concerned is on
    let pod_node = if info.kind == "Pod" && matches!(req.identity.role, Role::Node(_)) {
        req.target.storage_key().and_then(|k| st.store.get(&k)).and_then(|o| {
            o.pointer("/spec/nodeName").and_then(Value::as_str).map(str::to_string)
        })
    } else {
        None
    };
    // the name an authorizer judges: the URL's, else the created object's, else the one a
    // list or watch pins with `metadata.name=`
    let body_name = if verb == "create" && req.target.name.is_none() {
        serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|b| objects::name(&b).map(str::to_string))
    } else {
        None
    };
    let auth_name = req
        .target
        .name
        .as_deref()
        .or(body_name.as_deref())
        .or_else(|| field_selector.as_ref().and_then(|f| f.exact("metadata.name")));
    // a node may read a ConfigMap or Secret only when a pod bound to it references it
    let node_references = match (&req.identity.role, info.group, info.plural, verb, req.target.name.as_deref(), req.target.namespace.as_deref()) {
        (Role::Node(node), "", "configmaps" | "secrets", "get", Some(name), Some(ns)) => {
            node_pods_reference(st, node, ns, info.plural, name)
        }
        _ => false,
    };
    let attrs = Attributes {
        node_references,
        verb,
        group: info.group,
        resource: info.plural,
        subresource: req.target.subresource.as_deref(),
        namespace: req.target.namespace.as_deref(),
        name: auth_name,
        pod_node: pod_node.as_deref(),
        field_node: field_selector.as_ref().and_then(|f| f.exact("spec.nodeName")),
    };
    if let Decision::Deny(why) = auth::authorize(&req.identity, &attrs) {
        return Err(ApiError::forbidden(why));
    }
    let sel = Selectors { label: label_selector, field: field_selector };
    match verb {
        "get" => get(st, &req).await,
        "list" => list(st, &req, &sel).await,
        "watch" => watch::serve(st, &req, sel).await,
        "create" if req.target.subresource.as_deref() == Some("binding") => bind(st, &req).await,
        "create" => create(st, &req).await,
        "update" => update(st, &req).await,
        "patch" => patch_object(st, &req).await,
        "delete" => delete(st, &req).await,
        "deletecollection" => delete_collection(st, &req, &sel).await,
        _ => Err(ApiError::method_not_allowed(req.method.as_str(), &info.qualified_name())),
    }
}

/// Whether a pod bound to `node` in namespace `ns` references the object: Kubernetes' node
/// authorizer graph, read from this replica's copy of the store.
fn node_pods_reference(st: &AppState, node: &str, ns: &str, plural: &str, name: &str) -> bool {
    let Some(pods) = api::resource::by_plural("", "v1", "pods") else { return false };
    let (items, _) = st.store.list(&pods.storage_prefix(Some(ns)));
    items.iter().any(|p| {
        p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node) && auth::pod_references(p, plural, name)
    })
}

pub struct Selectors {
    pub label: Option<LabelSelector>,
    pub field: Option<FieldSelector>,
}

impl Selectors {
    pub fn matches(&self, obj: &Value) -> bool {
        self.label.as_ref().is_none_or(|l| l.matches_object(obj)) && self.field.as_ref().is_none_or(|f| f.matches(obj))
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, axum::Json(v)).into_response()
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(h) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", h);
        }
    }
    resp
}

fn name_of(req: &Request) -> Result<&str, ApiError> {
    req.target.name.as_deref().ok_or_else(|| ApiError::bad_request("a resource name is required"))
}

async fn read_current(st: &AppState, req: &Request) -> Result<(String, Value), ApiError> {
    read_for(st, req, true).await
}

/// The current object. With `linearizable` the read waits for the leader's commit index (a
/// read barrier); without it, a write's first attempt reads this replica's state, which is safe
/// because the write is a compare-and-set on the revision read: a stale read fails the set and
/// the retry reads with a barrier. A local miss is confirmed with a barrier before it is a 404.
async fn read_for(st: &AppState, req: &Request, linearizable: bool) -> Result<(String, Value), ApiError> {
    let name = name_of(req)?;
    let key = req.target.storage_key().ok_or_else(|| ApiError::bad_request("a resource name is required"))?;
    if !linearizable {
        if let Some(o) = st.store.get(&key) {
            return Ok((key, (*o).clone()));
        }
    }
    st.store.read_barrier().await?;
    match st.store.get(&key) {
        Some(o) => Ok((key, (*o).clone())),
        None => Err(ApiError::not_found(req.target.info, name)),
    }
}

async fn get(st: &AppState, req: &Request) -> Result<Response, ApiError> {
    let (_, obj) = read_current(st, req).await?;
    match req.target.subresource.as_deref() {
        Some("scale") => Ok(json_response(StatusCode::OK, &scale_of(&obj))),
        None if super::table::wants_table(&req.headers) => {
            let rv = json!({ "resourceVersion": objects::meta(&obj).get("resourceVersion") });
            Ok(json_response(StatusCode::OK, &super::table::table(req.target.info, &[obj], rv)))
        }
        _ => Ok(json_response(StatusCode::OK, &obj)),
    }
}

/// The continue token: where the next page starts, and the revision of the first page.
#[derive(serde::Serialize, Deserialize)]
struct Continue {
    rv: u64,
    start: String,
}

async fn list(st: &AppState, req: &Request, sel: &Selectors) -> Result<Response, ApiError> {
    let info = req.target.info;
    // resourceVersion=0 asks for any cached state: serve locally without the read barrier
    if req.query.resource_version.as_deref() != Some("0") {
        st.store.read_barrier().await?;
    }
    let prefix = req.target.storage_prefix();
    let (objects, revision) = st.store.list(&prefix);
    let mut start_after: Option<String> = None;
    let mut rv = revision;
    if let Some(tok) = req.query.continue_token.as_deref().filter(|t| !t.is_empty()) {
        let c = decode_continue(tok)?;
        start_after = Some(c.start);
        rv = c.rv;
    }
    let limit = match req.query.limit {
        Some(l) if l < 0 => return Err(ApiError::bad_request("limit must not be negative")),
        Some(0) | None => usize::MAX,
        Some(l) => l as usize,
    };
    let mut items = Vec::new();
    let mut next = None;
    for obj in objects.iter() {
        let key = storage_key(info, obj);
        if let Some(after) = &start_after {
            if key.as_str() <= after.as_str() {
                continue;
            }
        }
        if !sel.matches(obj) {
            continue;
        }
        if items.len() == limit {
            // the previous item is where the next page starts after
            next = items.last().map(|o: &Value| storage_key(info, o));
            break;
        }
        items.push((**obj).clone());
    }
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if let Some(start) = next {
        metadata["continue"] = json!(encode_continue(&Continue { rv, start }));
    }
    if super::table::wants_table(&req.headers) {
        return Ok(json_response(StatusCode::OK, &super::table::table(info, &items, metadata)));
    }
    let body = json!({
        "kind": info.list_kind(),
        "apiVersion": info.api_version(),
        "metadata": metadata,
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &body))
}

pub fn storage_key(info: &ResourceInfo, obj: &Value) -> String {
    info.storage_key(meta_str(obj, "namespace"), objects::name(obj).unwrap_or(""))
}

fn encode_continue(c: &Continue) -> String {
    use base64::Engine;
    let raw = serde_json::to_vec(c).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(tok: &str) -> Result<Continue, ApiError> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok)
        .map_err(|_| ApiError::bad_request("invalid continue token: not base64"))?;
    serde_json::from_slice(&raw).map_err(|_| ApiError::bad_request("invalid continue token"))
}

/// Parses a request body: JSON or YAML by content type; anything else is 415.
pub fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim();
    let v: Value = match base {
        "application/json" | "" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))?,
        other => {
            return Err(ApiError::unsupported_media_type(other, &["application/json", "application/yaml"]));
        }
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    Ok(v)
}

fn field_validation(q: &Query) -> Result<FieldValidation, ApiError> {
    match q.field_validation.as_deref() {
        None | Some("") => Ok(FieldValidation::default()),
        Some(s) => s.parse().map_err(|e: <FieldValidation as std::str::FromStr>::Err| ApiError::bad_request(e.to_string())),
    }
}

fn dry_run(q: &Query) -> Result<bool, ApiError> {
    match q.dry_run.as_deref() {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("unsupported dryRun value {other:?}: the only supported value is \"All\""))),
    }
}

/// Maps a scheme error to the Status kube-apiserver would send.
pub fn admit_error(info: &ResourceInfo, name: &str, e: AdmitError) -> ApiError {
    match &e {
        AdmitError::Invalid { errors, .. } => {
            let causes: Vec<Value> = errors
                .iter()
                .map(|fe| json!({ "reason": cause_reason(&fe.kind), "message": fe.body(), "field": fe.path }))
                .collect();
            ApiError::invalid(info, name, e.to_string(), Value::Array(causes))
        }
        AdmitError::Decode { .. } | AdmitError::UnknownFields { .. } => ApiError::bad_request(e.to_string()),
    }
}

fn cause_reason(kind: &scheme::FieldErrorKind) -> &'static str {
    use scheme::FieldErrorKind as K;
    match kind {
        K::Required => "FieldValueRequired",
        K::Invalid(_) => "FieldValueInvalid",
        K::NotSupported(..) => "FieldValueNotSupported",
        K::Duplicate(_) => "FieldValueDuplicate",
        K::Forbidden => "FieldValueForbidden",
        K::TooLong(_) => "FieldValueTooLong",
        K::TooMany => "FieldValueTooMany",
        K::NotFound(_) => "FieldValueNotFound",
    }
}

/// Checks the body's kind and apiVersion against the URL, and its namespace against the URL's.
fn check_identity(req: &Request, obj: &mut Value) -> Result<(), ApiError> {
    let info = req.target.info;
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if (!kind.is_empty() && kind != info.kind) || (!av.is_empty() && av != info.api_version()) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) and kind ({kind}) do not match the resource {} of {}",
            info.plural,
            info.api_version()
        )));
    }
    obj["kind"] = json!(info.kind);
    obj["apiVersion"] = json!(info.api_version());
    match (&req.target.namespace, meta_str(obj, "namespace")) {
        (Some(url_ns), Some(body_ns)) if url_ns != body_ns => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        (Some(url_ns), _) => objects::set_meta(obj, "namespace", json!(url_ns)),
        (None, Some(_)) if !info.namespaced() => objects::set_meta(obj, "namespace", Value::Null),
        _ => {}
    }
    Ok(())
}

async fn create(st: &AppState, req: &Request) -> Result<Response, ApiError> {
    let info = req.target.info;
    let mut obj = parse_body(&req.headers, &req.body)?;
    check_identity(req, &mut obj)?;
    if let Some(ns) = &req.target.namespace {
        ensure_namespace_open(st, ns).await?;
    }
    if objects::name(&obj).is_none() {
        if let Some(prefix) = meta_str(&obj, "generateName") {
            let n = format!("{prefix}{}", objects::random_suffix());
            objects::set_meta(&mut obj, "name", json!(n));
        }
    }
    let name = objects::name(&obj).unwrap_or("").to_string();
    if meta_str(&obj, "resourceVersion").is_some() {
        return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
    }
    objects::set_meta(&mut obj, "uid", json!(uuid::Uuid::new_v4().to_string()));
    objects::set_meta(&mut obj, "creationTimestamp", json!(objects::now()));
    objects::set_meta(&mut obj, "generation", json!(1));
    objects::set_meta(&mut obj, "deletionTimestamp", Value::Null);
    objects::set_meta(&mut obj, "deletionGracePeriodSeconds", Value::Null);
    reset_status_on_create(info, &mut obj);
    let mode = field_validation(&req.query)?;
    let admitted = scheme::admit(info, obj, mode).map_err(|e| admit_error(info, &name, e))?;
    let mut obj = admitted.object;
    if info.kind == "Service" {
        super::services::allocate(st, &mut obj)?;
    }
    if dry_run(&req.query)? {
        return Ok(with_warnings(json_response(StatusCode::CREATED, &obj), &admitted.warnings));
    }
    let key = info.storage_key(meta_str(&obj, "namespace"), &name);
    let (_, result) = st.store.write(Command::Create { key, object: obj }).await?;
    match result {
        ApplyResult::Ok { object } => {
            Ok(with_warnings(json_response(StatusCode::CREATED, &object), &admitted.warnings))
        }
        ApplyResult::AlreadyExists => Err(ApiError::already_exists(info, &name)),
        other => Err(ApiError::internal(format!("unexpected result of a create: {other:?}"))),
    }
}

/// Kubernetes ignores status on create for kinds whose status is written by controllers.
fn reset_status_on_create(info: &ResourceInfo, obj: &mut Value) {
    match info.kind {
        "Deployment" | "ReplicaSet" | "Service" => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        "Pod" => obj["status"] = json!({ "phase": "Pending", "qosClass": "BestEffort" }),
        "Namespace" => obj["status"] = json!({ "phase": "Active" }),
        _ => {}
    }
}

async fn ensure_namespace_open(st: &AppState, ns: &str) -> Result<(), ApiError> {
    let ns_info = api::resource::by_plural("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("the namespaces resource is not registered"))?;
    match st.store.get(&ns_info.storage_key(None, ns)) {
        None => Err(ApiError::not_found(ns_info, ns)),
        Some(o) if objects::is_deleting(&o) => Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        ))),
        Some(_) => Ok(()),
    }
}

/// What the new object should be, given the current one; None leaves it as it is.
type Mutation<'a> = dyn FnMut(&Value) -> Result<Value, ApiError> + Send + 'a;

/// The read-modify-propose loop shared by update, patch and the subresources. `pinned` is the
/// revision the client asked for (a 409 on mismatch instead of a retry).
async fn guaranteed_update(
    st: &AppState,
    req: &Request,
    pinned_from_body: bool,
    mutate: &mut Mutation<'_>,
) -> Result<(Value, Vec<String>), ApiError> {
    let info = req.target.info;
    let name = name_of(req)?.to_string();
    let mode = field_validation(&req.query)?;
    let dry = dry_run(&req.query)?;
    for attempt in 0..MAX_RETRIES {
        let (key, current) = read_for(st, req, attempt > 0).await?;
        let current_rv = objects::resource_version(&current).unwrap_or(0);
        let mut new = mutate(&current)?;
        check_identity(req, &mut new)?;
        let pinned = if pinned_from_body {
            match meta_str(&new, "resourceVersion") {
                Some(s) => Some(s.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("metadata.resourceVersion: Invalid value: {s:?}: must be a number"))
                })?),
                None => None,
            }
        } else {
            None
        };
        if let Some(p) = pinned {
            // revisions only grow: a newer pin than this replica has seen means this replica
            // lags, so look again with a barrier; an older one is a real conflict
            if p > current_rv && attempt == 0 {
                continue;
            }
            if p != current_rv {
                return Err(ApiError::modified(info, &name));
            }
        }
        if objects::name(&new).is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                objects::name(&new).unwrap_or("")
            )));
        }
        // fields the server owns
        for f in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
            objects::set_meta(&mut new, f, objects::meta(&current).get(f).cloned().unwrap_or(Value::Null));
        }
        objects::set_meta(&mut new, "name", json!(name));
        objects::set_meta(&mut new, "resourceVersion", json!(current_rv.to_string()));
        if objects::spec_part(&new) != objects::spec_part(&current) {
            let g = objects::meta(&current).get("generation").and_then(Value::as_i64).unwrap_or(0);
            objects::set_meta(&mut new, "generation", json!(g + 1));
        }
        scheme::carry_over_allocated(info, &current, &mut new);
        let admitted = scheme::admit(info, new, mode).map_err(|e| admit_error(info, &name, e))?;
        let new = admitted.object;
        scheme::validate_update(info, &current, &new).map_err(|e| admit_error(info, &name, e))?;
        if new == current || dry {
            return Ok((new, admitted.warnings));
        }
        // an object being deleted whose last finalizer went away is removed now
        let cmd = if objects::is_deleting(&new) && objects::finalizers(&new).is_empty() && !agent_finishes_deletion(info, &new) {
            Command::Delete { key, expected_rv: Some(current_rv), expected_uid: None }
        } else {
            Command::Update { key, object: new, expected_rv: current_rv }
        };
        match st.store.write(cmd).await?.1 {
            ApplyResult::Ok { object } => return Ok((object, admitted.warnings)),
            ApplyResult::NotFound => return Err(ApiError::not_found(info, &name)),
            ApplyResult::Conflict { .. } if pinned.is_some() => return Err(ApiError::modified(info, &name)),
            ApplyResult::Conflict { .. } => continue,
            ApplyResult::AlreadyExists => return Err(ApiError::internal("unexpected AlreadyExists on update")),
        }
    }
    Err(ApiError::modified(info, &name))
}

/// Whether a node agent still has to stop the containers of an object being deleted before it
/// goes (a running pod bound to a node); the agent then removes it itself.
fn agent_finishes_deletion(info: &ResourceInfo, obj: &Value) -> bool {
    info.kind == "Pod"
        && obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty())
        && !matches!(obj.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded") | Some("Failed"))
}

/// Keeps the part of `current` a write to the main resource or to `status` may not change.
fn merge_for_subresource(info: &ResourceInfo, sub: Option<&str>, current: &Value, mut new: Value) -> Value {
    match sub {
        Some("status") => {
            let mut out = current.clone();
            out["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if out["status"].is_null() {
                if let Some(m) = out.as_object_mut() {
                    m.remove("status");
                }
            }
            // status writers may also not change metadata, except through the main resource;
            // keep the revision they sent so a pinned update is still checked
            objects::set_meta(&mut out, "resourceVersion", objects::meta(&new).get("resourceVersion").cloned().unwrap_or(Value::Null));
            out
        }
        _ if info.has_status => {
            match current.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            new
        }
        _ => new,
    }
}

async fn update(st: &AppState, req: &Request) -> Result<Response, ApiError> {
    let info = req.target.info;
    let body = parse_body(&req.headers, &req.body)?;
    let sub = req.target.subresource.as_deref();
    if sub == Some("scale") {
        let replicas = body
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::bad_request("a Scale object with spec.replicas is required"))?;
        let pinned_rv = meta_str(&body, "resourceVersion").map(str::to_string);
        let mut m = |cur: &Value| {
            let mut n = cur.clone();
            n["spec"]["replicas"] = json!(replicas);
            objects::set_meta(&mut n, "resourceVersion", pinned_rv.clone().map(Value::from).unwrap_or(Value::Null));
            Ok(n)
        };
        let (obj, _) = guaranteed_update(st, req, true, &mut m).await?;
        return Ok(json_response(StatusCode::OK, &scale_of(&obj)));
    }
    let mut m = |cur: &Value| {
        let mut b = body.clone();
        check_identity(req, &mut b)?;
        Ok(merge_for_subresource(info, sub, cur, b))
    };
    let (obj, warnings) = guaranteed_update(st, req, true, &mut m).await?;
    Ok(with_warnings(json_response(StatusCode::OK, &obj), &warnings))
}

async fn patch_object(st: &AppState, req: &Request) -> Result<Response, ApiError> {
    let info = req.target.info;
    let ct = req.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let kind = PatchType::from_content_type(ct)
        .ok_or_else(|| ApiError::unsupported_media_type(ct, PatchType::ACCEPTED))?;
    let sub = req.target.subresource.as_deref();
    let body = req.body.clone();
    let mut m = |cur: &Value| {
        let base = if sub == Some("scale") { scale_of(cur) } else { cur.clone() };
        // the patch may pin a revision; otherwise the loop retries on a lost race
        let mut base_unpinned = base.clone();
        objects::set_meta(&mut base_unpinned, "resourceVersion", Value::Null);
        let patched = patch::apply(kind, &base_unpinned, &body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !patched.is_object() {
            return Err(ApiError::bad_request("the patched document is not an object"));
        }
        if sub == Some("scale") {
            let replicas = patched
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .ok_or_else(|| ApiError::bad_request("spec.replicas must be an integer"))?;
            let mut n = cur.clone();
            n["spec"]["replicas"] = json!(replicas);
            objects::set_meta(&mut n, "resourceVersion", objects::meta(&patched).get("resourceVersion").cloned().unwrap_or(Value::Null));
            return Ok(n);
        }
        Ok(merge_for_subresource(info, sub, cur, patched))
    };
    let (obj, warnings) = guaranteed_update(st, req, true, &mut m).await?;
    let out = if sub == Some("scale") { scale_of(&obj) } else { obj };
    Ok(with_warnings(json_response(StatusCode::OK, &out), &warnings))
}

/// The autoscaling/v1 Scale view of a Deployment or ReplicaSet.
fn scale_of(obj: &Value) -> Value {
    let m = objects::meta(obj);
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value::<api::meta::LabelSelector>(s.clone()).ok())
        .and_then(|s| LabelSelector::from_meta(&s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": { "replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1)) },
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        }
    })
}

/// POST pods/NAME/binding: the scheduler's write. Fails with 409 when already bound, being
/// deleted, or when the Binding's `metadata.uid` is not the pod's.
async fn bind(st: &AppState, req: &Request) -> Result<Response, ApiError> {
    let info = req.target.info;
    let body = parse_body(&req.headers, &req.body)?;
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid(info, name_of(req).unwrap_or(""), "target.name: Required value", json!([{"reason": "FieldValueRequired", "field": "target.name", "message": "Required value"}])))?
        .to_string();
    let pod_name = name_of(req)?.to_string();
    // kube-apiserver's precondition: a binding decided for a pod that was since deleted and
    // created again under the same name must not land on the new one
    let want_uid = body.pointer("/metadata/uid").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let mut m = |cur: &Value| {
        if let Some(want) = &want_uid {
            let actual = cur.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
            if actual != want {
                return Err(ApiError::conflict(
                    info,
                    &pod_name,
                    &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {actual}"),
                ));
            }
        }
        if objects::is_deleting(cur) {
            return Err(ApiError::conflict(info, &pod_name, "pod is being deleted, cannot be assigned to a host"));
        }
        if let Some(existing) = cur.pointer("/spec/nodeName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            return Err(ApiError::conflict(
                info,
                &pod_name,
                &format!("pod {pod_name} is already assigned to node \"{existing}\""),
            ));
        }
        let mut n = cur.clone();
        n["spec"]["nodeName"] = json!(node);
        let mut conditions: Vec<Value> = n
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": objects::now(), "lastProbeTime": null}));
        n["status"]["conditions"] = Value::Array(conditions);
        objects::set_meta(&mut n, "resourceVersion", Value::Null);
        Ok(n)
    };
    // binding writes spec and status together, which only the binding subresource may do
    let plain = Request {
        identity: req.identity.clone(),
        method: req.method.clone(),
        target: Target { subresource: None, ..req.target.clone() },
        query: Query { dry_run: req.query.dry_run.clone(), ..Default::default() },
        headers: req.headers.clone(),
        body: bytes::Bytes::new(),
    };
    guaranteed_update_raw(st, &plain, &mut m).await?;
    Ok(json_response(StatusCode::CREATED, &success_status(201)))
}

/// Like `guaranteed_update` but without validate_update's immutability rules (for binding).
async fn guaranteed_update_raw(st: &AppState, req: &Request, mutate: &mut Mutation<'_>) -> Result<Value, ApiError> {
    let info = req.target.info;
    let name = name_of(req)?.to_string();
    for attempt in 0..MAX_RETRIES {
        let (key, current) = read_for(st, req, attempt > 0).await?;
        let current_rv = objects::resource_version(&current).unwrap_or(0);
        let mut new = mutate(&current)?;
        objects::set_meta(&mut new, "resourceVersion", json!(current_rv.to_string()));
        let admitted = scheme::admit(info, new, FieldValidation::Ignore).map_err(|e| admit_error(info, &name, e))?;
        if dry_run(&req.query)? {
            return Ok(admitted.object);
        }
        match st.store.write(Command::Update { key, object: admitted.object, expected_rv: current_rv }).await?.1 {
            ApplyResult::Ok { object } => return Ok(object),
            ApplyResult::NotFound => return Err(ApiError::not_found(info, &name)),
            ApplyResult::Conflict { .. } => continue,
            ApplyResult::AlreadyExists => return Err(ApiError::internal("unexpected AlreadyExists on update")),
        }
    }
    Err(ApiError::modified(info, &name))
}

/// DeleteOptions, from the body or the query.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    grace_period_seconds: Option<i64>,
    preconditions: Option<Preconditions>,
    propagation_policy: Option<String>,
    /// deprecated spelling of propagationPolicy Orphan (true) or Background (false)
    orphan_dependents: Option<bool>,
    dry_run: Option<Vec<String>>,
}

/// How the dependents of a deleted object are treated (DeleteOptions.propagationPolicy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Propagation {
    /// delete the owner now; the garbage collector deletes the dependents afterwards
    Background,
    /// keep the owner (finalizer `foregroundDeletion`) until the collector has deleted the
    /// dependents that block it
    Foreground,
    /// keep the owner (finalizer `orphan`) until the collector has removed it from the
    /// dependents' ownerReferences
    Orphan,
}

impl DeleteOptions {
    fn propagation(&self) -> Propagation {
        match (self.propagation_policy.as_deref(), self.orphan_dependents) {
            (Some("Foreground"), _) => Propagation::Foreground,
            (Some("Orphan"), _) | (None, Some(true)) => Propagation::Orphan,
            _ => Propagation::Background,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    resource_version: Option<String>,
    uid: Option<String>,
}

fn delete_options(req: &Request) -> Result<DeleteOptions, ApiError> {
    let mut opts: DeleteOptions = if req.body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        let v = parse_body(&req.headers, &req.body)?;
        serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    if opts.grace_period_seconds.is_none() {
        opts.grace_period_seconds = req.query.grace_period_seconds;
    }
    if opts.propagation_policy.is_none() {
        opts.propagation_policy = req.query.propagation_policy.clone();
    }
    if let Some(g) = opts.grace_period_seconds {
        if g < 0 {
            return Err(ApiError::bad_request("gracePeriodSeconds must not be negative"));
        }
    }
    match opts.propagation_policy.as_deref() {
        None | Some("Orphan") | Some("Background") | Some("Foreground") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported propagationPolicy {other:?}: supported values are \"Orphan\", \"Background\", \"Foreground\""
            )))
        }
    }
    if opts.propagation_policy.is_some() && opts.orphan_dependents.is_some() {
        return Err(ApiError::bad_request("propagationPolicy and orphanDependents are mutually exclusive: use propagationPolicy"));
    }
    Ok(opts)
}

async fn delete(st: &AppState, req: &Request) -> Result<Response, ApiError> {
    let opts = delete_options(req)?;
    let dry = dry_run(&req.query)? || opts.dry_run.as_ref().is_some_and(|d| d.iter().any(|s| s == "All"));
    let obj = delete_one(st, req.target.info, &req.target, &opts, dry).await?;
    Ok(json_response(StatusCode::OK, &obj))
}

/// Deletes one object, gracefully where Kubernetes does: an object with finalizers, or a pod
/// bound to a node with a grace period, is only marked (deletionTimestamp) and goes later.
async fn delete_one(
    st: &AppState,
    info: &'static ResourceInfo,
    target: &Target,
    opts: &DeleteOptions,
    dry: bool,
) -> Result<Value, ApiError> {
    let name = target.name.clone().unwrap_or_default();
    let key = target.storage_key().ok_or_else(|| ApiError::bad_request("a resource name is required"))?;
    for attempt in 0..MAX_RETRIES {
        // as in read_for: a first attempt may read locally, the compare-and-set catches staleness
        let local = if attempt == 0 { st.store.get(&key) } else { None };
        let current = match local {
            Some(o) => (*o).clone(),
            None => {
                st.store.read_barrier().await?;
                st.store.get(&key).map(|o| (*o).clone()).ok_or_else(|| ApiError::not_found(info, &name))?
            }
        };
        let rv = objects::resource_version(&current).unwrap_or(0);
        if let Some(p) = &opts.preconditions {
            if let Some(uid) = p.uid.as_deref() {
                let actual = meta_str(&current, "uid").unwrap_or("");
                if uid != actual {
                    if attempt == 0 {
                        continue;
                    }
                    return Err(ApiError::conflict(info, &name, &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    )));
                }
            }
            if let Some(prv) = p.resource_version.as_deref() {
                if prv != rv.to_string() {
                    if attempt == 0 {
                        continue;
                    }
                    return Err(ApiError::conflict(info, &name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {prv}, ResourceVersion in object meta: {rv}"
                    )));
                }
            }
        }
        let graceful = propagation_plan(info, &current, graceful_plan(info, &current, opts.grace_period_seconds), opts.propagation());
        if dry {
            return Ok(current);
        }
        let cmd = match graceful {
            Some(mut marked) => {
                if marked == current {
                    return Ok(current);
                }
                objects::set_meta(&mut marked, "resourceVersion", json!(rv.to_string()));
                Command::Update { key: key.clone(), object: marked, expected_rv: rv }
            }
            None => Command::Delete { key: key.clone(), expected_rv: Some(rv), expected_uid: None },
        };
        match st.store.write(cmd).await?.1 {
            ApplyResult::Ok { object } => return Ok(object),
            ApplyResult::NotFound => return Err(ApiError::not_found(info, &name)),
            ApplyResult::Conflict { .. } => continue,
            ApplyResult::AlreadyExists => return Err(ApiError::internal("unexpected AlreadyExists on delete")),
        }
    }
    Err(ApiError::modified(info, &name))
}

/// Adds the finalizer a Foreground or Orphan delete asks for to the object (marking it as being
/// deleted if `graceful` did not already); Background leaves `graceful` as it is. Namespaces
/// have their own lifecycle and are left alone.
fn propagation_plan(info: &ResourceInfo, current: &Value, graceful: Option<Value>, propagation: Propagation) -> Option<Value> {
    let finalizer = match propagation {
        Propagation::Background => return graceful,
        Propagation::Foreground => "foregroundDeletion",
        Propagation::Orphan => "orphan",
    };
    if info.kind == "Namespace" {
        return graceful;
    }
    let mut marked = graceful.unwrap_or_else(|| current.clone());
    if !objects::is_deleting(&marked) {
        objects::set_meta(&mut marked, "deletionTimestamp", json!(objects::now()));
        objects::set_meta(&mut marked, "deletionGracePeriodSeconds", json!(0));
    }
    let mut finalizers = objects::finalizers(&marked);
    if !finalizers.iter().any(|f| f == finalizer) {
        finalizers.push(finalizer.to_string());
        objects::set_meta(&mut marked, "finalizers", json!(finalizers));
    }
    Some(marked)
}

/// The marked object when the delete is graceful, None when the object goes now.
fn graceful_plan(info: &ResourceInfo, current: &Value, requested_grace: Option<i64>) -> Option<Value> {
    let has_finalizers = !objects::finalizers(current).is_empty();
    let mut marked = current.clone();
    if info.kind == "Namespace" {
        // the namespace lifecycle loop empties it, then removes it
        if !objects::is_deleting(current) {
            objects::set_meta(&mut marked, "deletionTimestamp", json!(objects::now()));
            marked["status"]["phase"] = json!("Terminating");
        }
        return Some(marked);
    }
    if info.kind == "Pod" {
        let bound = current.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
        let finished = matches!(current.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded") | Some("Failed"));
        let default_grace = current.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
        let grace = requested_grace.unwrap_or(default_grace);
        if bound && !finished && grace > 0 {
            let existing = objects::meta(current).get("deletionGracePeriodSeconds").and_then(Value::as_i64);
            // a second delete may shorten the grace period, never lengthen it
            if existing.is_none_or(|e| grace < e) {
                objects::set_meta(&mut marked, "deletionTimestamp", json!(objects::now_plus(grace)));
                objects::set_meta(&mut marked, "deletionGracePeriodSeconds", json!(grace));
            }
            return Some(marked);
        }
    }
    if has_finalizers {
        if !objects::is_deleting(current) {
            objects::set_meta(&mut marked, "deletionTimestamp", json!(objects::now()));
            objects::set_meta(&mut marked, "deletionGracePeriodSeconds", json!(0));
        }
        return Some(marked);
    }
    None
}

async fn delete_collection(st: &AppState, req: &Request, sel: &Selectors) -> Result<Response, ApiError> {
    let info = req.target.info;
    let opts = delete_options(req)?;
    let dry = dry_run(&req.query)?;
    st.store.read_barrier().await?;
    let (objects_now, revision) = st.store.list(&req.target.storage_prefix());
    let mut items = Vec::new();
    for obj in objects_now.iter().filter(|o| sel.matches(o)) {
        let t = Target {
            info,
            namespace: meta_str(obj, "namespace").map(str::to_string),
            name: objects::name(obj).map(str::to_string),
            subresource: None,
        };
        match delete_one(st, info, &t, &opts, dry).await {
            Ok(o) => items.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": info.list_kind(),
        "apiVersion": info.api_version(),
        "metadata": { "resourceVersion": revision.to_string() },
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// Removes the contents of namespaces being deleted, then the namespaces themselves. Runs as a
/// level-triggered loop on every replica: writes are idempotent, so a crash part-way through is
/// repaired by the next pass.
pub async fn namespace_lifecycle(st: AppState) {
    let Some(ns_info) = api::resource::by_plural("", "v1", "namespaces") else { return };
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (namespaces, _) = st.store.list(&ns_info.storage_prefix(None));
        for ns in namespaces.iter().filter(|n| objects::is_deleting(n)) {
            let Some(ns_name) = objects::name(ns) else { continue };
            let mut remaining = 0usize;
            for info in api::resource::RESOURCES.iter().filter(|i| i.namespaced()) {
                let (objs, _) = st.store.list(&info.storage_prefix(Some(ns_name)));
                remaining += objs.len();
                for o in objs.iter() {
                    let t = Target {
                        info,
                        namespace: Some(ns_name.to_string()),
                        name: objects::name(o).map(str::to_string),
                        subresource: None,
                    };
                    if let Err(e) = delete_one(&st, info, &t, &DeleteOptions::default(), false).await {
                        if e.code != 404 {
                            tracing::debug!(namespace = ns_name, error = %e, "namespace cleanup will retry");
                        }
                    }
                }
            }
            if remaining == 0 {
                let key = ns_info.storage_key(None, ns_name);
                let rv = objects::resource_version(ns);
                if let Err(e) = st.store.write(Command::Delete { key, expected_rv: rv, expected_uid: None }).await {
                    tracing::debug!(namespace = ns_name, error = %e, "namespace removal will retry");
                }
            }
        }
    }
}

/// The namespaces every cluster has; made on start, idempotently, by whichever replica gets there.
pub async fn ensure_default_namespaces(st: &AppState) {
    let Some(info) = api::resource::by_plural("", "v1", "namespaces") else { return };
    let wanted: BTreeSet<&str> = ["default", "kube-system", "kube-public", "kube-node-lease"].into();
    for ns in wanted {
        let key = info.storage_key(None, ns);
        loop {
            if st.store.get(&key).is_some() {
                break;
            }
            let obj = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": ns, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": objects::now(),
                              "labels": { "kubernetes.io/metadata.name": ns } },
                "spec": { "finalizers": ["kubernetes"] },
                "status": { "phase": "Active" },
            });
            match st.store.write(Command::Create { key: key.clone(), object: obj }).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(namespace = ns, error = %e, "waiting for the store to create default namespaces");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(plural: &str) -> &'static ResourceInfo {
        let (g, v) = if plural == "deployments" { ("apps", "v1") } else { ("", "v1") };
        api::resource::by_plural(g, v, plural).unwrap()
    }

    #[test]
    fn pods_on_nodes_delete_gracefully() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 10}, "status": {"phase": "Running"}});
        let marked = graceful_plan(info("pods"), &pod, None).unwrap();
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], json!(10));
        assert!(objects::is_deleting(&marked));
        // grace 0 removes at once; so does an unbound or finished pod
        assert!(graceful_plan(info("pods"), &pod, Some(0)).is_none());
        let unbound = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(graceful_plan(info("pods"), &unbound, None).is_none());
        let done = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}});
        assert!(graceful_plan(info("pods"), &done, None).is_none());
        // a second delete shortens, never lengthens
        let again = graceful_plan(info("pods"), &marked, Some(30)).unwrap();
        assert_eq!(again, marked);
        let shorter = graceful_plan(info("pods"), &marked, Some(5)).unwrap();
        assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], json!(5));
    }

    #[test]
    fn propagation_adds_its_finalizer() {
        let rs = json!({"metadata": {"name": "web", "finalizers": ["x"]}});
        let plan = |p| propagation_plan(info("configmaps"), &rs, graceful_plan(info("configmaps"), &rs, None), p);
        let fg = plan(Propagation::Foreground).unwrap();
        assert!(objects::is_deleting(&fg));
        assert_eq!(objects::finalizers(&fg), vec!["x", "foregroundDeletion"]);
        assert_eq!(objects::finalizers(&plan(Propagation::Orphan).unwrap()), vec!["x", "orphan"]);
        assert_eq!(objects::finalizers(&plan(Propagation::Background).unwrap()), vec!["x"]);
        // without finalizers, Background deletes now and the others hold the object
        let bare = json!({"metadata": {"name": "web"}});
        assert!(propagation_plan(info("deployments"), &bare, None, Propagation::Background).is_none());
        let held = propagation_plan(info("deployments"), &bare, None, Propagation::Foreground).unwrap();
        assert_eq!(objects::finalizers(&held), vec!["foregroundDeletion"]);
        // a second delete adds nothing twice
        assert_eq!(propagation_plan(info("deployments"), &held, None, Propagation::Foreground), Some(held.clone()));
        // a pod on a node keeps its grace period and gets the finalizer too
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let g = graceful_plan(info("pods"), &pod, None);
        let p = propagation_plan(info("pods"), &pod, g, Propagation::Orphan).unwrap();
        assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], json!(30));
        assert_eq!(objects::finalizers(&p), vec!["orphan"]);
    }

    #[test]
    fn propagation_policies_good_and_bad() {
        let req = |query: Query, body: &str| Request {
            identity: crate::auth::node_identity("n"),
            method: Method::DELETE,
            target: Target { info: info("configmaps"), namespace: Some("default".into()), name: Some("c".into()), subresource: None },
            query,
            headers: HeaderMap::new(),
            body: bytes::Bytes::from(body.to_string()),
        };
        let policy = |q: Option<&str>, body: &str| {
            delete_options(&req(Query { propagation_policy: q.map(str::to_string), ..Default::default() }, body)).map(|o| o.propagation())
        };
        assert_eq!(policy(None, "").unwrap(), Propagation::Background);
        assert_eq!(policy(Some("Foreground"), "").unwrap(), Propagation::Foreground);
        assert_eq!(policy(Some("Orphan"), "").unwrap(), Propagation::Orphan);
        assert_eq!(policy(Some("Background"), "").unwrap(), Propagation::Background);
        assert_eq!(policy(None, r#"{"propagationPolicy": "Orphan"}"#).unwrap(), Propagation::Orphan);
        assert_eq!(policy(None, r#"{"orphanDependents": true}"#).unwrap(), Propagation::Orphan);
        assert_eq!(policy(None, r#"{"orphanDependents": false}"#).unwrap(), Propagation::Background);
        for (q, body) in [(Some("foreground"), ""), (Some("Cascade"), ""), (None, r#"{"propagationPolicy": "Orphan", "orphanDependents": true}"#)] {
            assert_eq!(policy(q, body).err().map(|e| e.code), Some(400), "{q:?} {body}");
        }
    }

    #[test]
    fn finalizers_hold_deletion() {
        let cm = json!({"metadata": {"name": "c", "finalizers": ["x"]}});
        let marked = graceful_plan(info("configmaps"), &cm, None).unwrap();
        assert!(objects::is_deleting(&marked));
        assert!(graceful_plan(info("configmaps"), &json!({"metadata": {"name": "c"}}), None).is_none());
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(&Continue { rv: 7, start: "/core/pods/default/a".into() });
        let c = decode_continue(&t).unwrap();
        assert_eq!((c.rv, c.start.as_str()), (7, "/core/pods/default/a"));
        assert_eq!(decode_continue("%%%").err().map(|e| e.code), Some(400));
        assert_eq!(decode_continue("aGVsbG8").err().map(|e| e.code), Some(400));
    }

    #[test]
    fn bodies_by_content_type() {
        let mut h = HeaderMap::new();
        assert!(parse_body(&h, br#"{"a":1}"#).is_ok());
        assert_eq!(parse_body(&h, b"{").err().map(|e| e.code), Some(400));
        assert_eq!(parse_body(&h, b"[1]").err().map(|e| e.code), Some(400));
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
        assert_eq!(parse_body(&h, b"a: 1\nb: [x]\n").unwrap(), json!({"a": 1, "b": ["x"]}));
        assert_eq!(parse_body(&h, b"a: [\n").err().map(|e| e.code), Some(400));
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(parse_body(&h, b"{}").err().map(|e| e.code), Some(415));
    }
}
