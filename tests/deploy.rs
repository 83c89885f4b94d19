//! The manifests in deploy/ parse and agree with each other (names, ports, labels), and the
//! configuration they ship loads in umpire.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_yaml_ng::Value;

fn deploy() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy"))
}

/// Every document of every resource the kustomization lists, by (kind, name).
fn resources() -> BTreeMap<(String, String), Value> {
    let kustomization: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(deploy().join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let mut out = BTreeMap::new();
    for file in kustomization["resources"].as_sequence().unwrap() {
        let path = deploy().join(file.as_str().unwrap());
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is listed but unreadable: {e}", path.display()));
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if v.is_null() {
                continue;
            }
            let kind = v["kind"].as_str().unwrap().to_owned();
            let name = v["metadata"]["name"].as_str().unwrap().to_owned();
            assert!(
                out.insert((kind.clone(), name.clone()), v).is_none(),
                "{kind}/{name} twice"
            );
        }
    }
    // Every file in deploy/ (but the Dockerfile and the kustomization) is listed.
    for entry in std::fs::read_dir(deploy()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                kustomization["resources"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|r| r.as_str() == Some(&name)),
                "deploy/{name} is not in the kustomization"
            );
        }
    }
    out
}

fn get<'a>(r: &'a BTreeMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    r.get(&(kind.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("no {kind}/{name} in deploy/"))
}

#[test]
fn manifests_reference_each_other_consistently() {
    let r = resources();
    let deployment = get(&r, "Deployment", "umpire");
    let service = get(&r, "Service", "umpire");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], pod_labels);
    assert_eq!(&service["spec"]["selector"], pod_labels);
    assert_eq!(
        &get(&r, "PodDisruptionBudget", "umpire")["spec"]["selector"]["matchLabels"],
        pod_labels
    );
    assert_eq!(
        &get(&r, "NetworkPolicy", "umpire")["spec"]["podSelector"]["matchLabels"],
        pod_labels
    );
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(3));
    assert!(deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"].is_mapping());

    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let port_names: Vec<&str> = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in service["spec"]["ports"].as_sequence().unwrap() {
        assert!(
            port_names.contains(&p["targetPort"].as_str().unwrap()),
            "Service targets a port the container lacks: {p:?}"
        );
    }
    assert_eq!(
        container["readinessProbe"]["grpc"]["port"].as_u64(),
        Some(50051)
    );
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert!(container["resources"]["limits"].is_mapping());

    // The webhooks call the Service on a port it has, on paths umpire serves, failing closed.
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        for hook in get(&r, kind, "umpire")["webhooks"].as_sequence().unwrap() {
            let svc = &hook["clientConfig"]["service"];
            assert_eq!(svc["name"], service["metadata"]["name"]);
            assert_eq!(svc["namespace"], service["metadata"]["namespace"]);
            let port = svc["port"].as_u64().unwrap();
            assert!(
                service["spec"]["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"].as_u64() == Some(port))
            );
            assert!(
                ["/admission/validate", "/admission/mutate"]
                    .contains(&svc["path"].as_str().unwrap())
            );
            assert_eq!(hook["failurePolicy"], "Fail");
            assert!(hook["timeoutSeconds"].as_u64().unwrap() <= 30);
        }
    }

    // Both webhooks see every pod-bearing kind on CREATE and UPDATE, ephemeral containers
    // included: the mutating one pins what the validating one verified.
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        let hooks = get(&r, kind, "umpire")["webhooks"].as_sequence().unwrap();
        let covered = |resource: &str, operation: &str| {
            hooks.iter().any(|h| {
                h["rules"].as_sequence().unwrap().iter().any(|rule| {
                    let has = |field: &str, v: &str| {
                        rule[field]
                            .as_sequence()
                            .unwrap()
                            .iter()
                            .any(|x| x.as_str() == Some(v))
                    };
                    has("resources", resource) && has("operations", operation)
                })
            })
        };
        for resource in [
            "pods",
            "pods/ephemeralcontainers",
            "replicationcontrollers",
            "deployments",
            "statefulsets",
            "daemonsets",
            "replicasets",
            "jobs",
            "cronjobs",
        ] {
            for operation in ["CREATE", "UPDATE"] {
                assert!(
                    covered(resource, operation),
                    "{kind}: {resource} {operation}"
                );
            }
        }
    }

    // Mounted Secrets and ConfigMaps exist (the cache key Secret is created by the operator).
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap();
    let config_map = volumes
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str())
        .unwrap();
    get(&r, "ConfigMap", config_map);
    let tls_secret = volumes
        .iter()
        .find_map(|v| v["secret"]["secretName"].as_str())
        .unwrap();
    assert_eq!(
        get(&r, "Certificate", "umpire-webhook")["spec"]["secretName"].as_str(),
        Some(tls_secret)
    );
    let redis = get(&r, "Service", "umpire-redis");
    assert_eq!(
        redis["spec"]["selector"],
        get(&r, "Deployment", "umpire-redis")["spec"]["template"]["metadata"]["labels"]
    );
}

#[test]
fn the_shipped_configuration_loads_and_matches_the_ports() {
    let r = resources();
    let config_map = get(&r, "ConfigMap", "umpire-config");
    let yaml = config_map["data"]["umpire.yaml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The files the Deployment mounts, made real for the test.
    let pki = support::certs::Pki::new("ca");
    let (cert, key) = pki.server().write(dir.path(), "tls");
    std::fs::write(
        dir.path().join("release.pub"),
        support::cosign::SigningKey::p256().public_pem(),
    )
    .unwrap();
    let yaml = yaml
        .replace("/etc/umpire/tls/tls.crt", cert.to_str().unwrap())
        .replace("/etc/umpire/tls/tls.key", key.to_str().unwrap());
    std::fs::write(dir.path().join("umpire.yaml"), &yaml).unwrap();
    // SAFETY: this test binary reads this variable only here.
    unsafe { std::env::set_var("UMPIRE_CACHE_KEY", "0123456789abcdef0123456789abcdef") };
    let config = umpire::config::Config::load(&dir.path().join("umpire.yaml")).unwrap();
    // A sample policy rolls out warn-first, and the shipped config draws no warning.
    assert!(
        config
            .policies
            .iter()
            .any(|p| p.mode == umpire::policy::Mode::Warn),
        "deploy/ shows warn mode"
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    let container = &get(&r, "Deployment", "umpire")["spec"]["template"]["spec"]["containers"][0];
    let port = |name: &str| {
        container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["containerPort"]
            .as_u64()
            .unwrap() as u16
    };
    assert_eq!(config.listen.port(), port("grpc"));
    assert_eq!(
        config.webhook.as_ref().unwrap().listen.port(),
        port("webhook")
    );
    assert_eq!(config.metrics_listen.unwrap().port(), port("metrics"));
    assert!(
        config
            .cache
            .redis
            .as_ref()
            .unwrap()
            .url
            .contains("umpire-redis:6379")
    );
    assert_eq!(
        container["env"][0]["name"].as_str(),
        Some("UMPIRE_CACHE_KEY"),
        "the HMAC key variable the config names is set"
    );
}

#[test]
fn the_dockerfile_is_multi_stage_distroless_and_non_root() {
    let text = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("FROM ")).count(), 2);
    assert!(text.contains("distroless"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root") && !l.starts_with("USER 0"))
    );
    assert!(text.contains("--locked"));
}

#[test]
fn config_updates_reach_the_pod_and_a_bad_config_stops_the_rollout() {
    let r = resources();
    let spec = &get(&r, "Deployment", "umpire")["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    // A subPath mount never sees ConfigMap updates: the folder is mounted instead.
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    let config_mount = mounts.iter().find(|m| m["name"] == "config").unwrap();
    assert!(config_mount.get("subPath").is_none(), "{config_mount:?}");
    assert!(config_path.starts_with(config_mount["mountPath"].as_str().unwrap()));
    // The init container checks the same file with `umpire config check`.
    let init = &spec["initContainers"][0];
    let init_args: Vec<&str> = init["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(init_args, ["config", "check", "--config", config_path]);
    assert_eq!(init["image"], container["image"]);
}
