//! Service address allocation: a cluster IP from the service range and node ports from
//! 30000–32767, as kube-apiserver allocates them on create.
//!
//! Allocation reads the Services the store holds and picks an unused value at random. Two
//! creates racing on different replicas could pick the same value; the chance is small in a
//! /16 and the networking issue will replace this with an allocation recorded in the store.

use std::collections::HashSet;

use rand::Rng;
use serde_json::{json, Value};

use super::status::ApiError;
use super::AppState;

/// 10.96.0.0/16: the start of Kubernetes' default service range, minus the first address.
const SERVICE_NET: [u8; 2] = [10, 96];
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

pub fn allocate(st: &AppState, svc: &mut Value) -> Result<(), ApiError> {
    let Some(info) = api::resource::by_plural("", "v1", "services") else {
        return Err(ApiError::internal("the services resource is not registered"));
    };
    let (all, _) = st.store.list(&info.storage_prefix(None));
    let ty = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if ty == "ExternalName" {
        return Ok(());
    }
    let svc_name = super::objects::name(svc).unwrap_or("").to_string();
    let mut rng = rand::rng();
    let want_ip = svc.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").is_empty();
    if want_ip {
        let used: HashSet<String> = all
            .iter()
            .filter_map(|s| s.pointer("/spec/clusterIP").and_then(Value::as_str).map(str::to_string))
            .collect();
        let mut chosen = None;
        for _ in 0..1000 {
            let (a, b) = (rng.random_range(0..=255u8), rng.random_range(1..=254u8));
            let ip = format!("{}.{}.{a}.{b}", SERVICE_NET[0], SERVICE_NET[1]);
            if !(a == 0 && b == 1) && !used.contains(&ip) {
                chosen = Some(ip);
                break;
            }
        }
        let ip = chosen.ok_or_else(|| ApiError::internal("the service IP range is full"))?;
        svc["spec"]["clusterIP"] = json!(ip);
        svc["spec"]["clusterIPs"] = json!([ip]);
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        let used: HashSet<i64> = all
            .iter()
            .flat_map(|s| s.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default())
            .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
            .collect();
        let mut taken = used.clone();
        if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut() {
                if let Some(np) = p.get("nodePort").and_then(Value::as_i64) {
                    if used.contains(&np) {
                        return Err(ApiError::new(
                            422,
                            "Invalid",
                            format!("Service \"{}\" is invalid: spec.ports[].nodePort: Invalid value: {np}: provided port is already allocated", svc_name),
                        ));
                    }
                    taken.insert(np);
                    continue;
                }
                let mut chosen = None;
                for _ in 0..5000 {
                    let np = i64::from(rng.random_range(NODE_PORTS));
                    if !taken.contains(&np) {
                        chosen = Some(np);
                        break;
                    }
                }
                let np = chosen.ok_or_else(|| ApiError::internal("no node port is free"))?;
                taken.insert(np);
                p["nodePort"] = json!(np);
            }
        }
    }
    Ok(())
}
