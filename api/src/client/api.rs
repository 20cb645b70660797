//! Object-level requests: [`DynamicApi`] for any kind in the resource table, with objects as
//! `serde_json::Value` (what `ctl apply` needs for manifests of any kind), and the typed
//! [`Api<K>`] for `k8s-openapi` types, which is a thin layer over the same requests.

use std::fmt;
use std::marker::PhantomData;

use http::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::watch::{event_stream, WatchStream};
use super::{decode, Client, ClientError};
use crate::meta::{DeleteOptions, ListMeta, Preconditions, Status};
use crate::resource::{info_of, ResourceInfo};
use crate::scheme::FieldValidation;

/// Server-side watch timeout when the caller sets none; the watcher re-opens the watch after it.
const DEFAULT_WATCH_TIMEOUT_SECONDS: u32 = 290;

/// Requests for one kind of object, as JSON values.
#[derive(Clone)]
pub struct DynamicApi {
    client: Client,
    info: &'static ResourceInfo,
    /// `None`: all namespaces (namespaced kinds) or cluster scope.
    namespace: Option<String>,
}

/// Requests for one kind of object, typed.
pub struct Api<K> {
    /// `None` when `K` has no entry in the resource table; every request then fails.
    inner: Option<DynamicApi>,
    _kind: PhantomData<fn() -> K>,
}

/// A list answer: `items` plus the list's `resourceVersion` and `continue` token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "K: Serialize", deserialize = "K: Deserialize<'de>"))]
pub struct ObjectList<K> {
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default = "Vec::new", deserialize_with = "null_as_empty")]
    pub items: Vec<K>,
}

/// Query parameters of list and watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<u32>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    /// For watches: how long the server keeps the watch open.
    pub timeout_seconds: Option<u32>,
}

/// Query parameters of create and replace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostParams {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: Option<FieldValidation>,
}

/// Query parameters of patch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatchParams {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: Option<FieldValidation>,
}

/// A patch and its kind; the kind picks the content type.
#[derive(Clone, Debug, PartialEq)]
pub enum Patch {
    /// `application/merge-patch+json` (RFC 7386).
    Merge(Value),
    /// `application/json-patch+json` (RFC 6902): an array of operations.
    Json(Value),
    /// `application/strategic-merge-patch+json`: merge with Kubernetes' list merge keys.
    Strategic(Value),
}

/// Options of delete, sent as a `DeleteOptions` body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteParams {
    pub grace_period_seconds: Option<i64>,
    /// Delete only if the object still has this resourceVersion and/or uid.
    pub preconditions: Option<Preconditions>,
    pub propagation_policy: Option<PropagationPolicy>,
    pub dry_run: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropagationPolicy {
    Orphan,
    Background,
    Foreground,
}

/// What a delete answers: the object, still there with a deletionTimestamp while finalizers or
/// a grace period run, or a `Status` once it is gone.
#[derive(Clone, Debug, PartialEq)]
pub enum DeleteResponse<K> {
    Deleting(K),
    Deleted(Box<Status>),
}

impl DynamicApi {
    /// Requests for `info`'s kind in `namespace` (`None`: all namespaces). For cluster-scoped
    /// kinds the namespace is ignored.
    pub fn new(client: Client, info: &'static ResourceInfo, namespace: Option<&str>) -> DynamicApi {
        let namespace = if info.namespaced() {
            namespace.map(str::to_string)
        } else {
            None
        };
        DynamicApi {
            client,
            info,
            namespace,
        }
    }

    pub fn info(&self) -> &'static ResourceInfo {
        self.info
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn get(&self, name: &str) -> Result<Value, ClientError> {
        self.get_as(name).await
    }

    /// Like [`DynamicApi::get`], with `None` for NotFound.
    pub async fn get_opt(&self, name: &str) -> Result<Option<Value>, ClientError> {
        not_found_as_none(self.get_as(name).await)
    }

    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<Value>, ClientError> {
        self.list_as(params).await
    }

    pub async fn create(&self, params: &PostParams, object: &Value) -> Result<Value, ClientError> {
        self.create_as(params, object).await
    }

    pub async fn replace(
        &self,
        name: &str,
        params: &PostParams,
        object: &Value,
    ) -> Result<Value, ClientError> {
        self.replace_as(name, "", params, object).await
    }

    /// POSTs `body` to a subresource of one object, such as `binding` or `eviction` of a pod
    /// (`POST .../pods/NAME/binding`), and returns the server's answer (often a `Status`).
    pub async fn create_subresource(
        &self,
        name: &str,
        subresource: &str,
        params: &PostParams,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let path = format!("{}/{subresource}", self.object_path(name)?);
        let path = with_query(
            path,
            &write_query(
                params.dry_run,
                &params.field_manager,
                params.field_validation,
            ),
        );
        self.send_json(Method::POST, &path, "application/json", encode(body)?)
            .await
    }

    pub async fn replace_status(
        &self,
        name: &str,
        params: &PostParams,
        object: &Value,
    ) -> Result<Value, ClientError> {
        self.replace_as(name, "/status", params, object).await
    }

    pub async fn patch(
        &self,
        name: &str,
        params: &PatchParams,
        patch: &Patch,
    ) -> Result<Value, ClientError> {
        self.patch_as(name, "", params, patch).await
    }

    pub async fn patch_status(
        &self,
        name: &str,
        params: &PatchParams,
        patch: &Patch,
    ) -> Result<Value, ClientError> {
        self.patch_as(name, "/status", params, patch).await
    }

    pub async fn delete(
        &self,
        name: &str,
        params: &DeleteParams,
    ) -> Result<DeleteResponse<Value>, ClientError> {
        self.delete_as(name, params).await
    }

    /// Watches from `resource_version` (empty: from now, after the current state as ADDED
    /// events, as Kubernetes does).
    pub async fn watch(
        &self,
        params: &ListParams,
        resource_version: &str,
    ) -> Result<WatchStream<Value>, ClientError> {
        self.watch_as(params, resource_version).await
    }

    fn object_path(&self, name: &str) -> Result<String, ClientError> {
        if self.info.namespaced() && self.namespace.is_none() {
            return Err(ClientError::NamespaceRequired {
                resource: self.info.qualified_name(),
            });
        }
        Ok(self
            .info
            .object_path(self.namespace.as_deref(), &urlencoding::encode(name)))
    }

    fn collection_path(&self) -> String {
        self.info.collection_path(self.namespace.as_deref())
    }

    async fn get_as<T: DeserializeOwned>(&self, name: &str) -> Result<T, ClientError> {
        let path = self.object_path(name)?;
        self.client.get_json(&path).await
    }

    async fn list_as<T: DeserializeOwned>(
        &self,
        params: &ListParams,
    ) -> Result<ObjectList<T>, ClientError> {
        let path = with_query(self.collection_path(), &list_query(params));
        self.client.get_json(&path).await
    }

    async fn create_as<T: DeserializeOwned, B: Serialize>(
        &self,
        params: &PostParams,
        object: &B,
    ) -> Result<T, ClientError> {
        let path = with_query(
            self.collection_path(),
            &write_query(
                params.dry_run,
                &params.field_manager,
                params.field_validation,
            ),
        );
        self.send_json(Method::POST, &path, "application/json", encode(object)?)
            .await
    }

    async fn replace_as<T: DeserializeOwned, B: Serialize>(
        &self,
        name: &str,
        subresource: &str,
        params: &PostParams,
        object: &B,
    ) -> Result<T, ClientError> {
        let path = format!("{}{subresource}", self.object_path(name)?);
        let path = with_query(
            path,
            &write_query(
                params.dry_run,
                &params.field_manager,
                params.field_validation,
            ),
        );
        self.send_json(Method::PUT, &path, "application/json", encode(object)?)
            .await
    }

    async fn patch_as<T: DeserializeOwned>(
        &self,
        name: &str,
        subresource: &str,
        params: &PatchParams,
        patch: &Patch,
    ) -> Result<T, ClientError> {
        let path = format!("{}{subresource}", self.object_path(name)?);
        let path = with_query(
            path,
            &write_query(
                params.dry_run,
                &params.field_manager,
                params.field_validation,
            ),
        );
        self.send_json(
            Method::PATCH,
            &path,
            patch.content_type(),
            encode(patch.value())?,
        )
        .await
    }

    async fn delete_as<T: DeserializeOwned>(
        &self,
        name: &str,
        params: &DeleteParams,
    ) -> Result<DeleteResponse<T>, ClientError> {
        let path = self.object_path(name)?;
        // Query and body say the same; simple servers read the query, Kubernetes the body.
        let mut query = Vec::new();
        if let Some(seconds) = params.grace_period_seconds {
            query.push(("gracePeriodSeconds", seconds.to_string()));
        }
        if let Some(policy) = params.propagation_policy {
            query.push(("propagationPolicy", policy.to_string()));
        }
        if params.dry_run {
            query.push(("dryRun", "All".to_string()));
        }
        let path = with_query(path, &query);
        let body = DeleteOptions {
            api_version: Some("v1".to_string()),
            kind: Some("DeleteOptions".to_string()),
            grace_period_seconds: params.grace_period_seconds,
            preconditions: params.preconditions.clone(),
            propagation_policy: params.propagation_policy.map(|p| p.to_string()),
            dry_run: params.dry_run.then(|| vec!["All".to_string()]),
            ..DeleteOptions::default()
        };
        let value: Value = self
            .send_json(Method::DELETE, &path, "application/json", encode(&body)?)
            .await?;
        if value.get("kind").and_then(Value::as_str) == Some("Status") {
            let status: Status =
                serde_json::from_value(value).map_err(|error| ClientError::Decode {
                    path: path.clone(),
                    error,
                })?;
            return Ok(DeleteResponse::Deleted(Box::new(status)));
        }
        let object =
            serde_json::from_value(value).map_err(|error| ClientError::Decode { path, error })?;
        Ok(DeleteResponse::Deleting(object))
    }

    async fn watch_as<T: DeserializeOwned + Send + 'static>(
        &self,
        params: &ListParams,
        resource_version: &str,
    ) -> Result<WatchStream<T>, ClientError> {
        let mut query = vec![
            ("watch", "true".to_string()),
            ("allowWatchBookmarks", "true".to_string()),
        ];
        if !resource_version.is_empty() {
            query.push(("resourceVersion", resource_version.to_string()));
        }
        if let Some(selector) = &params.label_selector {
            query.push(("labelSelector", selector.clone()));
        }
        if let Some(selector) = &params.field_selector {
            query.push(("fieldSelector", selector.clone()));
        }
        let timeout = params
            .timeout_seconds
            .unwrap_or(DEFAULT_WATCH_TIMEOUT_SECONDS);
        query.push(("timeoutSeconds", timeout.to_string()));
        let path = with_query(self.collection_path(), &query);
        match self.client.request_stream(Method::GET, &path, None).await {
            Ok(response) => Ok(event_stream(response.body)),
            Err(error) if error.status_code() == Some(410) => Err(ClientError::Gone),
            Err(error) => Err(error),
        }
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let response = self
            .client
            .request(method, path, Some((content_type, body)))
            .await?;
        decode(path, &response.body)
    }
}

impl<K> Api<K>
where
    K: k8s_openapi::Resource + Serialize + DeserializeOwned + Send + 'static,
{
    /// Objects of kind `K` in `namespace` (for a cluster-scoped kind, the namespace is ignored).
    pub fn namespaced(client: Client, namespace: &str) -> Api<K> {
        Api::with_namespace(client, Some(namespace))
    }

    /// Objects of kind `K` in the client's default namespace.
    pub fn default_namespaced(client: Client) -> Api<K> {
        let namespace = client.default_namespace().to_string();
        Api::with_namespace(client, Some(&namespace))
    }

    /// Objects of kind `K` in all namespaces, or cluster-scoped objects.
    pub fn all(client: Client) -> Api<K> {
        Api::with_namespace(client, None)
    }

    fn with_namespace(client: Client, namespace: Option<&str>) -> Api<K> {
        let inner = info_of::<K>().map(|info| DynamicApi::new(client, info, namespace));
        Api {
            inner,
            _kind: PhantomData,
        }
    }

    /// The untyped requests underneath.
    pub fn dynamic(&self) -> Result<&DynamicApi, ClientError> {
        self.inner.as_ref().ok_or(ClientError::UnknownKind {
            api_version: K::API_VERSION,
            kind: K::KIND,
        })
    }

    pub async fn get(&self, name: &str) -> Result<K, ClientError> {
        self.dynamic()?.get_as(name).await
    }

    /// Like [`Api::get`], with `None` for NotFound.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>, ClientError> {
        not_found_as_none(self.dynamic()?.get_as(name).await)
    }

    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<K>, ClientError> {
        self.dynamic()?.list_as(params).await
    }

    pub async fn create(&self, params: &PostParams, object: &K) -> Result<K, ClientError> {
        self.dynamic()?.create_as(params, object).await
    }

    pub async fn replace(
        &self,
        name: &str,
        params: &PostParams,
        object: &K,
    ) -> Result<K, ClientError> {
        self.dynamic()?.replace_as(name, "", params, object).await
    }

    pub async fn replace_status(
        &self,
        name: &str,
        params: &PostParams,
        object: &K,
    ) -> Result<K, ClientError> {
        self.dynamic()?
            .replace_as(name, "/status", params, object)
            .await
    }

    pub async fn patch(
        &self,
        name: &str,
        params: &PatchParams,
        patch: &Patch,
    ) -> Result<K, ClientError> {
        self.dynamic()?.patch_as(name, "", params, patch).await
    }

    pub async fn patch_status(
        &self,
        name: &str,
        params: &PatchParams,
        patch: &Patch,
    ) -> Result<K, ClientError> {
        self.dynamic()?
            .patch_as(name, "/status", params, patch)
            .await
    }

    pub async fn delete(
        &self,
        name: &str,
        params: &DeleteParams,
    ) -> Result<DeleteResponse<K>, ClientError> {
        self.dynamic()?.delete_as(name, params).await
    }

    /// Watches from `resource_version`; see [`DynamicApi::watch`].
    pub async fn watch(
        &self,
        params: &ListParams,
        resource_version: &str,
    ) -> Result<WatchStream<K>, ClientError> {
        self.dynamic()?.watch_as(params, resource_version).await
    }
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            inner: self.inner.clone(),
            _kind: PhantomData,
        }
    }
}

impl ListParams {
    pub fn labels(mut self, selector: &str) -> ListParams {
        self.label_selector = Some(selector.to_string());
        self
    }

    pub fn fields(mut self, selector: &str) -> ListParams {
        self.field_selector = Some(selector.to_string());
        self
    }

    pub fn limit(mut self, limit: u32) -> ListParams {
        self.limit = Some(limit);
        self
    }

    pub fn continue_token(mut self, token: &str) -> ListParams {
        self.continue_token = Some(token.to_string());
        self
    }
}

impl Patch {
    pub fn content_type(&self) -> &'static str {
        match self {
            Patch::Merge(_) => "application/merge-patch+json",
            Patch::Json(_) => "application/json-patch+json",
            Patch::Strategic(_) => "application/strategic-merge-patch+json",
        }
    }

    pub fn value(&self) -> &Value {
        match self {
            Patch::Merge(v) | Patch::Json(v) | Patch::Strategic(v) => v,
        }
    }
}

impl fmt::Display for PropagationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PropagationPolicy::Orphan => "Orphan",
            PropagationPolicy::Background => "Background",
            PropagationPolicy::Foreground => "Foreground",
        })
    }
}

fn not_found_as_none<T>(result: Result<T, ClientError>) -> Result<Option<T>, ClientError> {
    match result {
        Ok(object) => Ok(Some(object)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

fn encode<B: Serialize + ?Sized>(body: &B) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body).map_err(|error| ClientError::Encode { error })
}

fn list_query(params: &ListParams) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(selector) = &params.label_selector {
        query.push(("labelSelector", selector.clone()));
    }
    if let Some(selector) = &params.field_selector {
        query.push(("fieldSelector", selector.clone()));
    }
    if let Some(limit) = params.limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(token) = &params.continue_token {
        query.push(("continue", token.clone()));
    }
    if let Some(version) = &params.resource_version {
        query.push(("resourceVersion", version.clone()));
    }
    if let Some(seconds) = params.timeout_seconds {
        query.push(("timeoutSeconds", seconds.to_string()));
    }
    query
}

fn write_query(
    dry_run: bool,
    field_manager: &Option<String>,
    field_validation: Option<FieldValidation>,
) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if dry_run {
        query.push(("dryRun", "All".to_string()));
    }
    if let Some(manager) = field_manager {
        query.push(("fieldManager", manager.clone()));
    }
    if let Some(validation) = field_validation {
        query.push((
            "fieldValidation",
            field_validation_value(validation).to_string(),
        ));
    }
    query
}

/// The query value, spelled here so the wire format does not hang on a `Display` impl.
fn field_validation_value(validation: FieldValidation) -> &'static str {
    match validation {
        FieldValidation::Strict => "Strict",
        FieldValidation::Warn => "Warn",
        FieldValidation::Ignore => "Ignore",
    }
}

fn with_query(path: String, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return path;
    }
    let mut out = path;
    for (i, (key, value)) in query.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(&urlencoding::encode(value));
    }
    out
}

/// Go servers write `"items": null` for an empty list.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::super::testserver::{serve, Canned};
    use super::super::{Config, WatchEvent};
    use super::*;
    use crate::core::Pod;
    use futures::StreamExt as _;

    fn client(url: &str) -> Client {
        match Client::new(Config::new(vec![url.to_string()])) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn queries_are_encoded() {
        let params = ListParams::default()
            .labels("app in (web, db),tier!=x")
            .limit(10)
            .continue_token("a+b");
        assert_eq!(
            with_query("/api/v1/pods".into(), &list_query(&params)),
            "/api/v1/pods?labelSelector=app%20in%20%28web%2C%20db%29%2Ctier%21%3Dx&limit=10&continue=a%2Bb"
        );
        let query = write_query(true, &Some("ctl".into()), None);
        assert_eq!(
            with_query("/p".into(), &query),
            "/p?dryRun=All&fieldManager=ctl"
        );
        assert_eq!(with_query("/p".into(), &[]), "/p");
    }

    #[test]
    fn lists_accept_null_items() {
        let list: ObjectList<Value> = match serde_json::from_str(
            r#"{"kind":"PodList","metadata":{"resourceVersion":"7"},"items":null}"#,
        ) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        assert!(list.items.is_empty());
        assert_eq!(list.metadata.resource_version.as_deref(), Some("7"));
    }

    #[tokio::test]
    async fn typed_requests_use_computed_paths_and_content_types() {
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1","namespace":"prod","resourceVersion":"3"}}"#;
        let server = serve(vec![
            Canned::json(200, pod),
            Canned::json(200, &format!(r#"{{"kind":"PodList","metadata":{{"resourceVersion":"9"}},"items":[{pod}]}}"#)),
            Canned::json(200, pod),
            Canned::json(404, r#"{"kind":"Status","reason":"NotFound","message":"pods \"gone\" not found","code":404}"#),
            Canned::json(200, r#"{"kind":"Status","apiVersion":"v1","status":"Success"}"#),
        ])
        .await;
        let pods: Api<Pod> = Api::namespaced(client(&server.url), "prod");
        let got = match pods.get("web-1").await {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(got.metadata.name.as_deref(), Some("web-1"));
        let list = match pods.list(&ListParams::default().labels("app=web")).await {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(list.items.len(), 1);
        assert_eq!(list.metadata.resource_version.as_deref(), Some("9"));
        let patch = Patch::Merge(serde_json::json!({"metadata": {"labels": {"a": "b"}}}));
        if let Err(e) = pods.patch("web-1", &PatchParams::default(), &patch).await {
            panic!("{e}");
        }
        assert!(matches!(pods.get_opt("gone").await, Ok(None)));
        match pods
            .delete(
                "web-1",
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                },
            )
            .await
        {
            Ok(DeleteResponse::Deleted(status)) => {
                assert_eq!(status.status.as_deref(), Some("Success"))
            }
            other => panic!("expected a Status, got {other:?}"),
        }

        let requests = server.requests();
        assert!(
            requests[0].starts_with("GET /api/v1/namespaces/prod/pods/web-1 "),
            "{}",
            requests[0]
        );
        assert!(
            requests[1].starts_with("GET /api/v1/namespaces/prod/pods?labelSelector=app%3Dweb "),
            "{}",
            requests[1]
        );
        assert!(
            requests[2].starts_with("PATCH /api/v1/namespaces/prod/pods/web-1 "),
            "{}",
            requests[2]
        );
        assert!(requests[2]
            .to_ascii_lowercase()
            .contains("content-type: application/merge-patch+json"));
        assert!(
            requests[4]
                .starts_with("DELETE /api/v1/namespaces/prod/pods/web-1?gracePeriodSeconds=0 "),
            "{}",
            requests[4]
        );
    }

    #[tokio::test]
    async fn single_objects_need_a_namespace() {
        let pods: Api<Pod> = Api::all(client("http://127.0.0.1:1"));
        assert!(matches!(
            pods.get("x").await,
            Err(ClientError::NamespaceRequired { .. })
        ));
    }

    #[tokio::test]
    async fn watch_reads_events_and_maps_410_to_gone() {
        let added = r#"{"type":"ADDED","object":{"metadata":{"name":"a","namespace":"prod","resourceVersion":"5"}}}"#;
        let gone = r#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#;
        let server = serve(vec![Canned::pieces(
            200,
            &[&added[..30], &added[30..], "\n", gone, "\n"],
        )])
        .await;
        let pods: Api<Pod> = Api::namespaced(client(&server.url), "prod");
        let stream = match pods.watch(&ListParams::default(), "4").await {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let events: Vec<_> = stream.collect().await;
        assert!(
            matches!(&events[0], Ok(WatchEvent::Added(p)) if p.metadata.name.as_deref() == Some("a"))
        );
        assert!(matches!(&events[1], Err(ClientError::Gone)));
        assert_eq!(events.len(), 2);
        assert!(server.requests()[0].starts_with(
            "GET /api/v1/namespaces/prod/pods?watch=true&allowWatchBookmarks=true&resourceVersion=4&timeoutSeconds=290 "
        ));
    }
}
