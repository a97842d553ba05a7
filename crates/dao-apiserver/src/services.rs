//! Services: upstream's defaults, ClusterIP allocation from the service CIDR (10.96.0.0/12)
//! and NodePort allocation (30000-32767). Each allocated address or port is a reservation key
//! in the store, created with `Expect::Absent`, so two servers (or two requests) can never
//! hand out the same one; deleting the Service releases them.

use std::net::Ipv4Addr;

use dao_store::{Expect, Outcome, Store};
use serde_json::{Value, json};

use crate::status::{ApiError, Cause};

/// The service CIDR: 10.96.0.0/12.
const CIDR_BASE: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const CIDR_SIZE: u32 = 1 << 20;
/// The `kubernetes` Service's address.
pub const KUBERNETES_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

fn ip_key(ip: &str) -> String {
    format!("/registry/dao/serviceips/{ip}")
}

fn port_key(port: i64) -> String {
    format!("/registry/dao/servicenodeports/{port}")
}

fn in_cidr(ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    n > CIDR_BASE && n < CIDR_BASE + CIDR_SIZE - 1
}

/// Fill in upstream's defaults for a new Service.
pub fn default(obj: &mut Value) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_owned();
    spec["type"] = json!(kind);
    if spec["sessionAffinity"].is_null() {
        spec["sessionAffinity"] = json!("None");
    }
    if kind != "ExternalName" {
        if spec["internalTrafficPolicy"].is_null() {
            spec["internalTrafficPolicy"] = json!("Cluster");
        }
        if spec["ipFamilies"].is_null() {
            spec["ipFamilies"] = json!(["IPv4"]);
        }
        if spec["ipFamilyPolicy"].is_null() {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer")
        && spec["externalTrafficPolicy"].is_null()
    {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    if kind == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"].is_null() {
        spec["allocateLoadBalancerNodePorts"] = json!(true);
    }
    if let Some(ports) = spec["ports"].as_array_mut() {
        for p in ports {
            if p["protocol"].is_null() {
                p["protocol"] = json!("TCP");
            }
            // Go clients send an unset targetPort as 0; upstream defaults 0 and "" alike.
            if p["targetPort"].is_null()
                || p["targetPort"] == json!(0)
                || p["targetPort"] == json!("")
            {
                p["targetPort"] = p["port"].clone();
            }
        }
    }
    if obj["status"].is_null() {
        obj["status"] = json!({"loadBalancer": {}});
    }
}

fn invalid(name: &str, field: &str, message: String) -> ApiError {
    let res = crate::registry::find("", "v1", "services").expect("services registered");
    ApiError::invalid(
        res,
        name,
        vec![Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message,
        }],
    )
}

/// Reserve the Service's ClusterIP and node ports, allocating those not given. On error,
/// whatever this call reserved is released again.
pub async fn allocate(store: &dyn Store, obj: &mut Value) -> Result<(), ApiError> {
    let owner = format!(
        "{}/{}",
        obj.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(""),
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    );
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut reserved = Vec::new();
    let result = allocate_inner(store, obj, &owner, &name, &mut reserved).await;
    if result.is_err() {
        for key in reserved {
            let _ = store.delete(&key, Expect::Any).await;
        }
    }
    result
}

async fn reserve(
    store: &dyn Store,
    key: String,
    owner: &str,
    reserved: &mut Vec<String>,
) -> Result<bool, ApiError> {
    match store
        .put(&key, owner.to_owned().into(), Expect::Absent)
        .await?
    {
        Outcome::Applied { .. } => {
            reserved.push(key);
            Ok(true)
        }
        Outcome::Rejected { .. } => Ok(false),
    }
}

async fn allocate_inner(
    store: &dyn Store,
    obj: &mut Value,
    owner: &str,
    name: &str,
    reserved: &mut Vec<String>,
) -> Result<(), ApiError> {
    use rand::Rng;
    let kind = obj["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_owned();
    if kind != "ExternalName" {
        match obj["spec"]["clusterIP"].as_str().unwrap_or("") {
            "None" => obj["spec"]["clusterIPs"] = json!(["None"]),
            "" => {
                let mut chosen = None;
                for _ in 0..64 {
                    // ThreadRng is not Send: draw without holding it across the await.
                    let ip = Ipv4Addr::from(CIDR_BASE + rand::rng().random_range(2..CIDR_SIZE - 1));
                    if reserve(store, ip_key(&ip.to_string()), owner, reserved).await? {
                        chosen = Some(ip);
                        break;
                    }
                }
                let ip = chosen
                    .ok_or_else(|| ApiError::internal("failed to allocate a service IP"))?
                    .to_string();
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
            requested => {
                let ip: Ipv4Addr = requested.parse().ok().filter(|ip| in_cidr(*ip)).ok_or_else(|| {
                    invalid(name, "spec.clusterIPs", format!("Invalid value: []string{{\"{requested}\"}}: failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is 10.96.0.0/12"))
                })?;
                if !reserve(store, ip_key(&ip.to_string()), owner, reserved).await? {
                    return Err(invalid(
                        name,
                        "spec.clusterIPs",
                        format!(
                            "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
                        ),
                    ));
                }
                obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
            }
        }
    }
    let wants_node_ports = kind == "NodePort"
        || (kind == "LoadBalancer"
            && obj["spec"]["allocateLoadBalancerNodePorts"]
                .as_bool()
                .unwrap_or(true));
    if wants_node_ports {
        let count = obj["spec"]["ports"].as_array().map_or(0, Vec::len);
        for i in 0..count {
            let port = &obj["spec"]["ports"][i]["nodePort"];
            // 0 is Go's unset value: allocate, as for a missing port.
            let value = match port.as_i64().filter(|p| *p != 0) {
                Some(p) => {
                    if !NODE_PORTS.contains(&(p as u16)) || p > i64::from(u16::MAX) {
                        return Err(invalid(
                            name,
                            &format!("spec.ports[{i}].nodePort"),
                            format!(
                                "Invalid value: {p}: provided port is not in the valid range. The range of valid ports is 30000-32767"
                            ),
                        ));
                    }
                    if !reserve(store, port_key(p), owner, reserved).await? {
                        return Err(invalid(
                            name,
                            &format!("spec.ports[{i}].nodePort"),
                            format!("Invalid value: {p}: provided port is already allocated"),
                        ));
                    }
                    p
                }
                None => {
                    let mut chosen = None;
                    for _ in 0..64 {
                        let p = i64::from(rand::rng().random_range(NODE_PORTS));
                        if reserve(store, port_key(p), owner, reserved).await? {
                            chosen = Some(p);
                            break;
                        }
                    }
                    chosen.ok_or_else(|| ApiError::internal("failed to allocate a node port"))?
                }
            };
            obj["spec"]["ports"][i]["nodePort"] = json!(value);
        }
    }
    Ok(())
}

/// Release what a deleted Service held.
pub async fn release(store: &dyn Store, obj: &Value) {
    if let Some(ip) = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| *ip != "None" && !ip.is_empty())
    {
        let _ = store.delete(&ip_key(ip), Expect::Any).await;
    }
    for p in obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(port) = p.get("nodePort").and_then(Value::as_i64) {
            let _ = store.delete(&port_key(port), Expect::Any).await;
        }
    }
}

/// Allocated fields that an update may not drop or change: carried over when left out,
/// rejected when changed.
pub fn keep_allocations(old: &Value, new: &mut Value) -> Result<(), ApiError> {
    let name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    for field in ["clusterIP", "clusterIPs"] {
        let before = &old["spec"][field];
        let after = &new["spec"][field];
        if after.is_null() || after.as_str() == Some("") {
            new["spec"][field] = before.clone();
        } else if after != before && !before.is_null() {
            return Err(invalid(
                &name,
                &format!("spec.{field}"),
                "Invalid value: field is immutable".into(),
            ));
        }
    }
    // Node ports left out of an update keep their allocation (matched by port number).
    let old_ports = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports {
            if p.get("nodePort")
                .is_none_or(|n| n.is_null() || *n == json!(0))
                && let Some(prev) = old_ports
                    .iter()
                    .find(|o| o.get("port") == p.get("port"))
                    .and_then(|o| o.get("nodePort"))
            {
                p["nodePort"] = prev.clone();
            }
        }
    }
    Ok(())
}

/// The `kubernetes` Service in `default`, pointing at the API server's port.
pub async fn bootstrap(store: &dyn Store, api_port: u16) -> dao_store::Result<()> {
    let res = crate::registry::find("", "v1", "services").expect("services registered");
    let mut obj = json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": crate::managed::now(),
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "clusterIP": KUBERNETES_IP.to_string(),
            "clusterIPs": [KUBERNETES_IP.to_string()],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}],
        },
    });
    default(&mut obj);
    let key = res.key(Some("default"), "kubernetes");
    if let Outcome::Applied { .. } = store
        .put(&key, obj.to_string().into(), Expect::Absent)
        .await?
    {
        store
            .put(
                &ip_key(&KUBERNETES_IP.to_string()),
                "default/kubernetes".into(),
                Expect::Any,
            )
            .await?;
    }
    Ok(())
}
