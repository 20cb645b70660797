//! Watch: the `?watch=true` stream of `{"type": ..., "object": ...}` lines, as kube-apiserver
//! sends it.
//!
//! Without a resourceVersion (or with "0") the stream opens with an `ADDED` event per existing
//! object, then follows changes from the revision of that listing; with one, it replays every
//! change after it from the store's history. A revision older than the history gets an `ERROR`
//! event carrying a 410 `Expired` Status, which tells clients to re-list. Selectors are applied
//! to the object before and after each change, so an object that stops matching is sent as
//! `DELETED` and one that starts matching as `ADDED`, as Kubernetes does.

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};

use super::resources::{Request, Selectors};
use super::status::ApiError;
use super::AppState;
use crate::store::{EventKind, StoreError};

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

pub async fn serve(st: &AppState, req: &Request, sel: Selectors) -> Result<Response, ApiError> {
    let info = req.target.info;
    let prefix = match &req.target.name {
        // a watch on one object (`/pods/NAME?watch=1`, or fieldSelector metadata.name): its key
        Some(_) => req.target.storage_key().unwrap_or_default(),
        None => req.target.storage_prefix(),
    };
    let exact_key = req.target.name.is_some();
    let bookmarks = matches!(req.query.allow_watch_bookmarks.as_deref(), Some("true") | Some("1"));
    let deadline = req.query.timeout_seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let rv = req.query.resource_version.as_deref().unwrap_or("");
    // kubectl get -w asks for each event's object as a one-row Table
    let as_table = super::table::wants_table(&req.headers);
    let render = move |o: &Value| -> Value {
        if as_table {
            let rv = json!({ "resourceVersion": o.pointer("/metadata/resourceVersion") });
            super::table::table(info, std::slice::from_ref(o), rv)
        } else {
            o.clone()
        }
    };

    let mut initial: Vec<Value> = Vec::new();
    let from = match rv {
        "" | "0" => {
            if rv.is_empty() {
                st.store.read_barrier().await?;
            }
            let (objs, revision) = st.store.list(&prefix);
            for o in objs.iter() {
                if exact_key && super::resources::storage_key(info, o) != prefix {
                    continue;
                }
                if sel.matches(o) {
                    initial.push(json!({ "type": "ADDED", "object": render(o) }));
                }
            }
            revision
        }
        s => s.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}: must be a number")))?,
    };

    let events = match st.store.watch(&prefix, from) {
        Ok(stream) => stream,
        Err(e @ StoreError::Gone { .. }) => {
            // kube answers 200 and an ERROR event, which client watchers turn into a re-list
            let err = ApiError::from(e);
            let line = event_line(&json!({ "type": "ERROR", "object": err.to_status() }));
            return Ok(stream_response(futures::stream::iter(vec![Ok::<_, std::io::Error>(line)]).boxed()));
        }
        Err(e) => return Err(e.into()),
    };

    let api_version = info.api_version();
    let kind = info.kind;
    let prefix_for_filter = prefix.clone();
    let lines = events.filter_map(move |item| {
        let out = match item {
            Ok(ev) => {
                if exact_key && ev.key != prefix_for_filter {
                    None
                } else {
                    let now_matches = sel.matches(&ev.object);
                    let before_matched = ev.prev.as_deref().map(|p| sel.matches(p));
                    let ty = match (ev.kind, before_matched, now_matches) {
                        (EventKind::Deleted, _, _) => {
                            if before_matched.unwrap_or(now_matches) { Some("DELETED") } else { None }
                        }
                        (_, Some(true), true) => Some("MODIFIED"),
                        (_, Some(true), false) => Some("DELETED"),
                        (_, _, true) => Some("ADDED"),
                        (_, _, false) => None,
                    };
                    ty.map(|t| Ok(event_line(&json!({ "type": t, "object": render(&ev.object) }))))
                }
            }
            Err(e) => {
                let err = ApiError::from(e);
                Some(Ok(event_line(&json!({ "type": "ERROR", "object": err.to_status() }))))
            }
        };
        futures::future::ready(out)
    });

    let store = st.store.clone();
    let bookmark_stream = futures::stream::unfold((), move |_| {
        let store = store.clone();
        let api_version = api_version.clone();
        async move {
            tokio::time::sleep(BOOKMARK_EVERY).await;
            let b = json!({ "type": "BOOKMARK", "object": {
                "kind": kind, "apiVersion": api_version,
                "metadata": { "resourceVersion": store.revision().to_string() } } });
            Some((Ok::<_, std::io::Error>(event_line(&b)), ()))
        }
    });

    let initial_stream = futures::stream::iter(initial.into_iter().map(|v| Ok::<_, std::io::Error>(event_line(&v))));
    let live = if bookmarks {
        futures::stream::select(lines, bookmark_stream).boxed()
    } else {
        lines.boxed()
    };
    let body = initial_stream.chain(live);
    let body = match deadline {
        Some(d) => body.take_until(tokio::time::sleep_until(d)).boxed(),
        None => body.boxed(),
    };
    Ok(stream_response(body))
}

fn event_line(v: &Value) -> bytes::Bytes {
    let mut buf = serde_json::to_vec(v).unwrap_or_default();
    buf.push(b'\n');
    bytes::Bytes::from(buf)
}

fn stream_response(body: futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json"), ("cache-control", "no-cache, private")],
        Body::from_stream(body),
    )
        .into_response()
}
