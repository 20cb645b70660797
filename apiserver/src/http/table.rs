//! `meta.k8s.io/v1` Table answers: what kubectl asks for (`Accept: application/json;as=Table;...`)
//! so that `kubectl get` prints the same columns `ctl get` does. The columns come from
//! `api::printers`, shared with ctl.

use api::resource::ResourceInfo;
use axum::http::HeaderMap;
use serde_json::{json, Value};

/// Whether the client asked for a Table (kubectl always lists it first, with a JSON fallback).
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let parts: Vec<&str> = media.split(';').map(str::trim).collect();
            parts.contains(&"as=Table") && parts.contains(&"g=meta.k8s.io") && parts.first() == Some(&"application/json")
        })
}

fn column_definitions(info: &ResourceInfo) -> Vec<Value> {
    api::printers::columns(info)
        .iter()
        .map(|c| {
            let format = if c.name == "Name" { "name" } else { "" };
            json!({ "name": c.name, "type": c.kind, "format": format, "description": c.description, "priority": c.priority })
        })
        .collect()
}

fn table_row(info: &ResourceInfo, obj: &Value, now: jiff::Timestamp) -> Value {
    let cells = api::printers::row(info, obj, now);
    json!({
        "cells": cells,
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(Value::Null),
        }
    })
}

/// A Table of the given objects.
pub fn table(info: &ResourceInfo, objects: &[Value], metadata: Value) -> Value {
    let now = jiff::Timestamp::now();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(info),
        "rows": objects.iter().map(|o| table_row(info, o, now)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn kubectl_accept_header_asks_for_a_table() {
        let mut h = HeaderMap::new();
        assert!(!wants_table(&h));
        h.insert(http::header::ACCEPT, HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert!(wants_table(&h));
        h.insert(http::header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_table(&h));
        h.insert(http::header::ACCEPT, HeaderValue::from_static("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"));
        assert!(!wants_table(&h));
    }

    #[test]
    fn tables_have_kubectl_columns() {
        let info = api::resource::lookup("configmaps").unwrap();
        let cm = json!({"metadata": {"name": "a", "creationTimestamp": "2020-01-01T00:00:00Z"}, "data": {"x": "1", "y": "2"}});
        let t = table(info, &[cm], json!({"resourceVersion": "5"}));
        let names: Vec<&str> = t["columnDefinitions"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, vec!["Name", "Data", "Age"]);
        assert_eq!(t["rows"][0]["cells"][0], "a");
        assert_eq!(t["rows"][0]["cells"][1], "2");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "a");
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
    }
}
