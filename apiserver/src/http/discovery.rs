//! Discovery: `/api`, `/apis`, `/apis/{group}`, the resource lists of each group version, and
//! `/version`, computed from the resource table so they never disagree with what is served.

use std::collections::BTreeMap;

use api::resource::{ResourceInfo, RESOURCES};
use serde_json::{json, Value};

/// The group versions served, in order: core first.
fn group_versions() -> BTreeMap<(&'static str, &'static str), Vec<&'static ResourceInfo>> {
    let mut m: BTreeMap<(&str, &str), Vec<&ResourceInfo>> = BTreeMap::new();
    for r in RESOURCES.iter() {
        m.entry((r.group, r.version)).or_default().push(r);
    }
    m
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions.iter().map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v })).collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn api_group_list() -> Value {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (g, v) in group_versions().keys() {
        if !g.is_empty() {
            groups.entry(g).or_default().push(v);
        }
    }
    let list: Vec<Value> = groups.iter().map(|(g, vs)| group_json(g, vs)).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": list })
}

pub fn api_group(group: &str) -> Option<Value> {
    let versions: Vec<&str> = group_versions().keys().filter(|(g, _)| *g == group).map(|(_, v)| *v).collect();
    if versions.is_empty() || group.is_empty() {
        return None;
    }
    let mut g = group_json(group, &versions);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let gvs = group_versions();
    let infos = gvs.get(&(group, version))?;
    let mut resources = Vec::new();
    for r in infos {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced(),
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (kind, verbs, g, v): (&str, &[&str], &str, &str) = match *sub {
                "scale" => ("Scale", &["get", "patch", "update"], "autoscaling", "v1"),
                "binding" => ("Binding", &["create"], "", "v1"),
                _ => (r.kind, &["get", "patch", "update"], "", ""),
            };
            let mut e = json!({
                "name": format!("{}/{}", r.plural, sub),
                "singularName": "",
                "namespaced": r.namespaced(),
                "kind": kind,
                "verbs": verbs,
            });
            if !g.is_empty() || !v.is_empty() {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            resources.push(e);
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }))
}

/// `/version`, shaped as kube-apiserver's so kubectl's version skew check is satisfied.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": concat!("v1.33.0-flotilla.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_matches_the_resource_table() {
        let core = resource_list("", "v1").unwrap();
        let names: Vec<&str> = core["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
        for n in ["pods", "pods/status", "pods/binding", "nodes", "namespaces", "services", "configmaps", "secrets", "events", "endpoints"] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let apps = resource_list("apps", "v1").unwrap();
        assert!(apps["resources"].as_array().unwrap().iter().any(|r| r["name"] == "deployments/scale" && r["kind"] == "Scale"));
        assert!(resource_list("apps", "v2").is_none());
        let groups = api_group_list();
        let gnames: Vec<&str> = groups["groups"].as_array().unwrap().iter().filter_map(|g| g["name"].as_str()).collect();
        assert_eq!(gnames, vec!["apps", "coordination.k8s.io"]);
        assert!(api_group("apps").is_some());
        assert!(api_group("batch").is_none());
    }
}

/// `/openapi/v3`: the index of group-version documents, as kube-apiserver serves it.
pub fn openapi_v3_root() -> Value {
    let mut paths = serde_json::Map::new();
    for (g, v) in group_versions().keys() {
        let p = gv_path(g, v);
        paths.insert(p.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{p}") }));
    }
    json!({ "paths": paths })
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// `/openapi/v3/{api/v1 | apis/G/V}`: the operations of one group version. It describes paths
/// and their parameters (which is how kubectl learns that the server validates fields itself,
/// `fieldValidation`), not the schemas of the types: validation happens on the server.
pub fn openapi_v3_group_version(gv: &str) -> Option<Value> {
    let (group, version) = match gv.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let gvs = group_versions();
    let infos = gvs.get(&(group, version))?;
    let param = |name: &str| json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } });
    let write_params = json!([param("dryRun"), param("fieldManager"), param("fieldValidation")]);
    let mut paths = serde_json::Map::new();
    for r in infos {
        let gvk = json!({ "group": r.group, "version": r.version, "kind": r.kind });
        let prefix = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
        let (collection, object) = if r.namespaced() {
            (format!("{prefix}/namespaces/{{namespace}}/{}", r.plural), format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural))
        } else {
            (format!("{prefix}/{}", r.plural), format!("{prefix}/{}/{{name}}", r.plural))
        };
        let op = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", r.kind),
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": write_params,
                "responses": { "200": { "description": "OK" } },
            })
        };
        paths.insert(collection, json!({ "post": op("post"), "get": op("list") }));
        paths.insert(object, json!({ "get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete") }));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}
