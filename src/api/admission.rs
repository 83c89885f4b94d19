//! Kubernetes AdmissionReview (`admission.k8s.io/v1`) and Gatekeeper external data
//! (`externaldata.gatekeeper.sh/v1beta1`) documents: which images an object runs, and the answers.
//! Pure: JSON in, JSON out.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

/// An image an object runs, and where (a JSON pointer to its `image` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageAt {
    pub image: String,
    pub pointer: String,
}

/// Containers considered per object.
pub const MAX_CONTAINERS: usize = 256;

/// Where the pod spec is, by kind.
fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// Every image of containers, initContainers, ephemeralContainers and image volumes. Kinds
/// without pods have none.
/// Who a workload pulls as: its pod spec's `imagePullSecrets` names (bounded) and its service
/// account (`default` when none is named), as the API server and the ServiceAccount admission read
/// them. `None` for a kind that runs no pod.
pub fn pull_identity(kind: &str, object: &Value) -> Option<(Vec<String>, String)> {
    let spec = object.pointer(pod_spec_pointer(kind)?)?;
    let secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("name").and_then(Value::as_str))
        .filter(|n| !n.is_empty())
        .take(MAX_CONTAINERS)
        .map(str::to_owned)
        .collect();
    // `serviceAccount` is the deprecated spelling the API server still defaults the name from.
    let named = |key: &str| {
        spec.get(key)
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
    };
    let account = named("serviceAccountName")
        .or_else(|| named("serviceAccount"))
        .unwrap_or("default")
        .to_owned();
    Some((secrets, account))
}

pub fn images(kind: &str, object: &Value) -> Result<Vec<ImageAt>, String> {
    let Some(spec_pointer) = pod_spec_pointer(kind) else {
        return Ok(Vec::new());
    };
    let Some(spec) = object.pointer(spec_pointer) else {
        return Err(format!("the {kind} has no pod spec at {spec_pointer}"));
    };
    let mut out = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(containers) = spec.get(list) else {
            continue;
        };
        let containers = containers
            .as_array()
            .ok_or_else(|| format!("{spec_pointer}/{list} is not a list"))?;
        for (i, c) in containers.iter().enumerate() {
            let image = c
                .get("image")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{spec_pointer}/{list}/{i} has no image"))?;
            out.push(ImageAt {
                image: image.to_owned(),
                pointer: format!("{spec_pointer}/{list}/{i}/image"),
            });
        }
    }
    // Image volumes (Kubernetes' ImageVolume): an OCI image mounted as a volume runs no process
    // of its own but feeds files to those that do, so it is verified (and pinned) like one.
    if let Some(volumes) = spec.get("volumes") {
        let volumes = volumes
            .as_array()
            .ok_or_else(|| format!("{spec_pointer}/volumes is not a list"))?;
        for (i, v) in volumes.iter().enumerate() {
            let Some(source) = v.get("image") else {
                continue;
            };
            let image = source
                .get("reference")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{spec_pointer}/volumes/{i}/image has no reference"))?;
            out.push(ImageAt {
                image: image.to_owned(),
                pointer: format!("{spec_pointer}/volumes/{i}/image/reference"),
            });
        }
    }
    if out.len() > MAX_CONTAINERS {
        return Err(format!(
            "the {kind} has {} containers, more than umpire checks ({MAX_CONTAINERS})",
            out.len()
        ));
    }
    Ok(out)
}

/// The parts of an AdmissionReview request umpire reads.
#[derive(Debug, Clone)]
pub struct Review {
    pub api_version: String,
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub operation: String,
    pub object: Value,
    /// The object before an UPDATE (`Null` otherwise).
    pub old_object: Value,
}

impl Review {
    /// The object is being deleted (`metadata.deletionTimestamp` set): an UPDATE then only
    /// removes finalizers or changes status, and must never be refused (a refused finalizer
    /// removal leaves the pod Terminating for good).
    ///
    /// Only an UPDATE whose old object already carried `deletionTimestamp` counts: the API server
    /// sets it when a deletion starts and no client can, so a CREATE (or an UPDATE of a live
    /// object) that claims one is judged like any other.
    pub fn is_being_deleted(&self) -> bool {
        let deleting = |o: &Value| {
            o.pointer("/metadata/deletionTimestamp")
                .is_some_and(|t| !t.is_null())
        };
        self.operation == "UPDATE" && deleting(&self.old_object) && deleting(&self.object)
    }

    /// On UPDATE, the images the object held before (judged when they came in).
    pub fn images_before(&self) -> std::collections::BTreeSet<String> {
        if self.operation != "UPDATE" || self.old_object.is_null() {
            return Default::default();
        }
        images(&self.kind, &self.old_object)
            .map(|all| all.into_iter().map(|at| at.image).collect())
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct RawReview {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    request: Option<RawRequest>,
}

#[derive(Deserialize)]
struct RawRequest {
    uid: String,
    kind: RawKind,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    object: Value,
    #[serde(default, rename = "oldObject")]
    old_object: Value,
}

#[derive(Deserialize)]
struct RawKind {
    kind: String,
}

pub fn parse_review(body: &[u8]) -> Result<Review, String> {
    let raw: RawReview =
        serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    if raw.kind != "AdmissionReview" || raw.api_version != "admission.k8s.io/v1" {
        return Err(format!(
            "expected admission.k8s.io/v1 AdmissionReview, found {} {}",
            raw.api_version, raw.kind
        ));
    }
    let r = raw.request.ok_or("the AdmissionReview has no request")?;
    Ok(Review {
        api_version: raw.api_version,
        uid: r.uid,
        kind: r.kind.kind,
        namespace: r.namespace,
        operation: r.operation,
        object: r.object,
        old_object: r.old_object,
    })
}

/// A JSONPatch `replace` of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub pointer: String,
    pub image: String,
}

/// The AdmissionReview response. `uid` must echo the request's. A `retryable` denial (umpire is
/// shedding load) says so with status 429, as the API server's own throttling does.
pub fn response(
    uid: &str,
    allowed: bool,
    message: Option<&str>,
    warnings: &[String],
    pins: &[Pin],
    retryable: bool,
) -> Value {
    let mut response = json!({"uid": uid, "allowed": allowed});
    if let Some(m) = message {
        let code = match (allowed, retryable) {
            (true, _) => 200,
            (false, true) => 429,
            (false, false) => 403,
        };
        response["status"] = json!({"code": code, "message": m});
        if retryable && !allowed {
            response["status"]["reason"] = json!("TooManyRequests");
        }
    }
    if !warnings.is_empty() {
        // Kubernetes caps a warning at 256 characters and shows at most a few.
        response["warnings"] = json!(
            warnings
                .iter()
                .take(20)
                .map(|w| w.chars().take(256).collect::<String>())
                .collect::<Vec<_>>()
        );
    }
    if !pins.is_empty() {
        let patch: Vec<Value> = pins
            .iter()
            .map(|p| json!({"op": "replace", "path": p.pointer, "value": p.image}))
            .collect();
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(
            base64::engine::general_purpose::STANDARD.encode(Value::Array(patch).to_string())
        );
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// `ProviderRequest.request.keys`.
pub fn provider_keys(body: &[u8]) -> Result<Vec<String>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("not a ProviderRequest: {e}"))?;
    if v.get("kind").and_then(Value::as_str) != Some("ProviderRequest") {
        return Err("expected kind ProviderRequest".into());
    }
    let keys = v
        .pointer("/request/keys")
        .and_then(Value::as_array)
        .ok_or("the ProviderRequest has no request.keys")?;
    keys.iter()
        .map(|k| {
            k.as_str()
                .map(str::to_owned)
                .ok_or_else(|| "request.keys must be strings".to_owned())
        })
        .collect()
}

/// A ProviderResponse with one item per key: (key, value, error).
pub fn provider_response(
    items: Vec<(String, Value, String)>,
    system_error: Option<String>,
) -> Value {
    json!({
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderResponse",
        "response": {
            "idempotent": true,
            "items": items.into_iter().map(|(key, value, error)| json!({"key": key, "value": value, "error": error})).collect::<Vec<_>>(),
            "systemError": system_error.unwrap_or_default(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_of_pods_and_templates() {
        let pod = json!({"spec": {"initContainers": [{"name": "i", "image": "a:1"}], "containers": [{"name": "c", "image": "b:2"}], "ephemeralContainers": [{"name": "e", "image": "c:3"}]}});
        let found = images("Pod", &pod).unwrap();
        assert_eq!(
            found.iter().map(|i| i.image.as_str()).collect::<Vec<_>>(),
            ["a:1", "b:2", "c:3"]
        );
        assert_eq!(found[1].pointer, "/spec/containers/0/image");
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}}});
        assert_eq!(
            images("CronJob", &cron).unwrap()[0].pointer,
            "/spec/jobTemplate/spec/template/spec/containers/0/image"
        );
        assert!(images("ConfigMap", &json!({})).unwrap().is_empty());
        let with_volume = json!({"spec": {"containers": [{"image": "a"}], "volumes": [{"name": "cfg", "configMap": {"name": "x"}}, {"name": "data", "image": {"reference": "reg.io/data:v1", "pullPolicy": "IfNotPresent"}}]}});
        let found = images("Pod", &with_volume).unwrap();
        assert_eq!(found[1].image, "reg.io/data:v1");
        assert_eq!(found[1].pointer, "/spec/volumes/1/image/reference");
        assert!(
            images(
                "Pod",
                &json!({"spec": {"containers": [], "volumes": [{"image": {}}]}})
            )
            .is_err()
        );
        assert!(images("Deployment", &json!({"spec": {}})).is_err());
        assert!(
            images(
                "Pod",
                &json!({"spec": {"containers": [{"name": "no image"}]}})
            )
            .is_err()
        );
    }

    #[test]
    fn responses() {
        let r = response("u1", false, Some("no"), &[], &[], false);
        assert_eq!(r["response"]["uid"], "u1");
        assert_eq!(r["response"]["status"]["code"], 403);
        let r = response(
            "u2",
            true,
            None,
            &["w".into()],
            &[Pin {
                pointer: "/spec/containers/0/image".into(),
                image: "a@sha256:0".into(),
            }],
            false,
        );
        let patch = base64::engine::general_purpose::STANDARD
            .decode(r["response"]["patch"].as_str().unwrap())
            .unwrap();
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(patch[0]["op"], "replace");
        assert_eq!(r["response"]["warnings"][0], "w");
    }

    #[test]
    fn reviews_and_provider_requests() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"ns","operation":"CREATE","object":{}}}"#;
        let r = parse_review(body).unwrap();
        assert_eq!(
            (r.uid.as_str(), r.kind.as_str(), r.namespace.as_str()),
            ("x", "Pod", "ns")
        );
        assert!(parse_review(b"{}").is_err());
        let keys = provider_keys(br#"{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","request":{"keys":["a","b"]}}"#).unwrap();
        assert_eq!(keys, ["a", "b"]);
        assert!(provider_keys(br#"{"kind":"ProviderRequest","request":{"keys":[1]}}"#).is_err());
    }
}
