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

/// What `kubectl kustomize deploy/` renders, for the features deploy/ uses (resources, a
/// configMapGenerator from files without a hash suffix, pinned `images:`), by (kind, name).
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
    for generator in kustomization["configMapGenerator"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        assert_eq!(
            generator["options"]["disableNameSuffixHash"].as_bool(),
            Some(true),
            "umpire reloads its ConfigMap in place: no hash suffix"
        );
        let mut data = serde_yaml_ng::Mapping::new();
        for f in generator["files"].as_sequence().unwrap() {
            let f = f.as_str().unwrap();
            let (key, path) = f.split_once('=').unwrap_or((f, f));
            let content = std::fs::read_to_string(deploy().join(path))
                .unwrap_or_else(|e| panic!("configMapGenerator file {path}: {e}"));
            data.insert(Value::from(key), Value::from(content));
        }
        let name = generator["name"].as_str().unwrap().to_owned();
        let cm: Value = serde_yaml_ng::from_str(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"
        ))
        .unwrap();
        let mut cm = cm;
        cm["data"] = Value::Mapping(data);
        out.insert(("ConfigMap".to_owned(), name), cm);
    }
    // `images:` sets the tag of every container that names the image without one.
    for image in kustomization["images"].as_sequence().into_iter().flatten() {
        let name = image["name"].as_str().unwrap();
        let tag = image["newTag"].as_str().unwrap();
        for v in out.values_mut() {
            for list in ["containers", "initContainers"] {
                let Some(containers) = v["spec"]["template"]["spec"][list].as_sequence_mut() else {
                    continue;
                };
                for c in containers {
                    if c["image"].as_str() == Some(name) {
                        c["image"] = Value::from(format!("{name}:{tag}"));
                    }
                }
            }
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
    // SAFETY: this test binary reads these variables only here.
    unsafe {
        std::env::set_var("UMPIRE_CACHE_KEY", "0123456789abcdef0123456789abcdef");
        std::env::set_var("UMPIRE_REDIS_PASSWORD", "test-password");
    }
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

#[test]
fn a_fresh_install_blocks_nothing_until_a_namespace_opts_in() {
    let r = resources();
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        for hook in get(&r, kind, "umpire")["webhooks"].as_sequence().unwrap() {
            let selector = &hook["namespaceSelector"];
            assert_eq!(
                selector["matchLabels"]["umpire.dev/enforce"].as_str(),
                Some("true"),
                "{kind}: enforcement is opt-in per namespace"
            );
            let never = selector["matchExpressions"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
                .expect("kube-system and umpire's namespace are excluded by name");
            for ns in ["kube-system", "umpire-system"] {
                assert!(
                    never["values"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .any(|v| v.as_str() == Some(ns)),
                    "{kind}: {ns}"
                );
            }
        }
    }
}

#[test]
fn timeouts_are_in_the_right_order() {
    let r = resources();
    let yaml = get(&r, "ConfigMap", "umpire-config")["data"]["umpire.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    let raw: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let deadline = umpire::config::parse_duration(raw["limits"]["deadline"].as_str().unwrap())
        .expect("deploy/ sets limits.deadline");
    let hint = umpire::config::parse_duration(raw["webhook"]["timeout"].as_str().unwrap()).unwrap();
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        for hook in get(&r, kind, "umpire")["webhooks"].as_sequence().unwrap() {
            let timeout = std::time::Duration::from_secs(hook["timeoutSeconds"].as_u64().unwrap());
            assert_eq!(timeout, hint, "webhook.timeout says what the webhooks wait");
            assert!(
                deadline + std::time::Duration::from_secs(2) <= timeout,
                "umpire answers ({deadline:?}) before the API server gives up ({timeout:?})"
            );
        }
    }
}

#[test]
fn the_webhooks_trust_a_ca_not_the_serving_certificate() {
    let r = resources();
    let ca = get(&r, "Certificate", "umpire-ca");
    assert_eq!(ca["spec"]["isCA"].as_bool(), Some(true));
    assert_eq!(ca["spec"]["issuerRef"]["name"], "umpire-selfsigned");
    let ca_issuer = get(&r, "Issuer", "umpire-ca");
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"],
        ca["spec"]["secretName"]
    );
    let serving = get(&r, "Certificate", "umpire-webhook");
    assert_eq!(serving["spec"]["issuerRef"]["name"], "umpire-ca");
    assert!(serving["spec"]["isCA"].as_bool() != Some(true));
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        assert_eq!(
            get(&r, kind, "umpire")["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
                .as_str(),
            Some("umpire-system/umpire-ca"),
            "{kind}: the CA bundle is the CA's, so renewals of the serving certificate need none"
        );
    }
}

#[test]
fn redis_takes_a_password_and_admits_umpire_only() {
    let r = resources();
    let redis = get(&r, "Deployment", "umpire-redis");
    let container = &redis["spec"]["template"]["spec"]["containers"][0];
    let command = serde_yaml_ng::to_string(&container["command"]).unwrap();
    assert!(command.contains("--requirepass"), "{command}");
    assert!(
        container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|e| e["valueFrom"]["secretKeyRef"]["name"] == "umpire-redis")
    );
    let policy = get(&r, "NetworkPolicy", "umpire-redis");
    let from = &policy["spec"]["ingress"][0]["from"];
    assert_eq!(from.as_sequence().unwrap().len(), 1);
    assert_eq!(
        from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "umpire"
    );
    // umpire has the password the configuration names.
    let umpire = get(&r, "Deployment", "umpire");
    let env = &umpire["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_sequence()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "UMPIRE_REDIS_PASSWORD")
    );
    // Egress to registries is an input, documented in the policy (443 shipped).
    let egress =
        serde_yaml_ng::to_string(&get(&r, "NetworkPolicy", "umpire")["spec"]["egress"]).unwrap();
    assert!(egress.contains("443"), "{egress}");
}

#[test]
fn cluster_hygiene_priority_drains_and_pinned_images() {
    let r = resources();
    let spec = &get(&r, "Deployment", "umpire")["spec"]["template"]["spec"];
    let class = spec["priorityClassName"]
        .as_str()
        .expect("a priority class");
    get(&r, "PriorityClass", class);
    let pdb = get(&r, "PodDisruptionBudget", "umpire");
    assert_eq!(pdb["spec"]["maxUnavailable"].as_u64(), Some(1));
    assert!(pdb["spec"].get("minAvailable").is_none());
    for (kind, name) in [("Deployment", "umpire"), ("Deployment", "umpire-redis")] {
        let spec = &get(&r, kind, name)["spec"]["template"]["spec"];
        for list in ["containers", "initContainers"] {
            for c in spec[list].as_sequence().into_iter().flatten() {
                let image = c["image"].as_str().unwrap();
                let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                assert!(
                    !tag.is_empty() && tag != "latest" && !tag.contains('/'),
                    "{name}: {image} is not pinned"
                );
            }
        }
    }
    let ignore = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.dockerignore"))
        .expect("a .dockerignore beside the Dockerfile's context");
    assert!(
        ignore
            .lines()
            .any(|l| l.trim() == "target" || l.trim() == "/target")
    );
}

#[test]
fn kubectl_kustomize_agrees_with_this_rendering_where_kubectl_is_installed() {
    // The machines this suite runs on may lack kubectl; the rendering above is then what is
    // checked. Where it is installed, its output holds the same objects.
    let Ok(out) = std::process::Command::new("kubectl")
        .args(["kustomize", deploy().to_str().unwrap()])
        .output()
    else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    let mut kinds: Vec<(String, String)> = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&rendered) {
        let v = Value::deserialize(doc).unwrap();
        kinds.push((
            v["kind"].as_str().unwrap().to_owned(),
            v["metadata"]["name"].as_str().unwrap().to_owned(),
        ));
    }
    kinds.sort();
    let ours: Vec<(String, String)> = resources().into_keys().collect();
    assert_eq!(kinds, ours);
    assert!(rendered.contains("ghcr.io/example-org/umpire:0.1.0"));
}

#[test]
fn monitoring_watches_metrics_umpire_exports() {
    let dir = deploy().join("monitoring");
    let monitor: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("servicemonitor.yaml")).unwrap())
            .unwrap();
    let r = resources();
    let service = get(&r, "Service", "umpire");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        service["metadata"]["labels"]["app.kubernetes.io/name"]
    );
    let port = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(
        service["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["name"] == port)
    );
    // Every metric an alert or a dashboard panel reads is one umpire registers.
    // The names `src/metrics.rs` registers (a family with no series yet prints nothing).
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/metrics.rs")).unwrap();
    let exported: Vec<String> = source
        .split("registry.register(")
        .skip(1)
        .filter_map(|rest| rest.split('"').nth(1))
        .map(|name| format!("umpire_{name}"))
        .collect();
    let mut read = String::new();
    for file in ["prometheusrule.yaml", "grafana-dashboard.json"] {
        read.push_str(&std::fs::read_to_string(dir.join(file)).unwrap());
    }
    let mut names: Vec<String> = Vec::new();
    for (i, _) in read.match_indices("umpire_") {
        let name: String = read[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.push(name);
    }
    names.sort();
    names.dedup();
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        let base = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        assert!(
            exported.iter().any(|e| e == base || e == &name),
            "{name} is not a metric umpire exports: {exported:?}"
        );
    }
}

/// The documents of a YAML file under deploy/.
fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy().join(file)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn pull_secrets_rbac_grants_get_on_secrets_and_serviceaccounts_and_nothing_more() {
    for (file, role_kind, binding_kind) in [
        (
            "pull-secrets/clusterrole.yaml",
            "ClusterRole",
            "ClusterRoleBinding",
        ),
        ("pull-secrets-namespaced/role.yaml", "Role", "RoleBinding"),
    ] {
        let docs = documents(file);
        let role = docs.iter().find(|d| d["kind"] == role_kind).unwrap();
        let rules = role["rules"].as_sequence().unwrap();
        assert_eq!(rules.len(), 1, "{file}");
        let verbs: Vec<&str> = rules[0]["verbs"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(verbs, ["get"], "{file}: umpire reads secrets by name only");
        let resources: Vec<&str> = rules[0]["resources"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(resources, ["secrets", "serviceaccounts"], "{file}");
        assert_eq!(rules[0]["apiGroups"][0], "", "{file}: the core group only");
        let binding = docs.iter().find(|d| d["kind"] == binding_kind).unwrap();
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        assert_eq!(binding["subjects"][0]["name"], "umpire");
        assert_eq!(binding["subjects"][0]["namespace"], "umpire-system");
    }
    // The base grants none of it, and mounts no token: pull secrets are opt-in.
    let r = resources();
    assert!(!r.keys().any(|(kind, _)| kind.contains("Role")));
    let deployment = get(&r, "Deployment", "umpire");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"],
        false
    );
    // The component mounts it.
    let token = &documents("pull-secrets/token.yaml")[0];
    assert_eq!(token["metadata"]["name"], "umpire");
    assert_eq!(
        token["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
}

#[test]
fn the_shipped_configuration_with_pull_secrets_turned_on_loads() {
    let text = std::fs::read_to_string(deploy().join("config/umpire.yaml")).unwrap();
    let on = text.replace(
        "#   kubernetes:\n#     pull_secrets: true\n",
        "kubernetes:\n  pull_secrets: true\n",
    );
    assert_ne!(
        on, text,
        "config/umpire.yaml shows how to turn pull secrets on"
    );
    // As `config check --offline` reads it: what exists only in the pod is not read.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("umpire.yaml");
    std::fs::write(&path, on).unwrap();
    let config = umpire::config::Config::load_offline(&path).unwrap();
    assert!(config.kubernetes.pull_secrets);
}
