//! Private registries as clusters use them, through the real binary: the workload's pull secrets
//! read from a Kubernetes API (a stub of ours speaking the API's JSON over TLS with a bearer
//! token: no API server runs here), a registry that demands Basic auth for one team's
//! repositories and Bearer tokens for another's (a gate in front of the real registry), and the
//! per-registry secret of the configuration serving gRPC.

mod support;

use std::io::{Read as _, Write as _};
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use support::certs::TestWebhook;
use support::cosign::{Image, SigningKey, payload, signature_layer};
use support::hostile::{Reply, Request, Scripted as Hostile};
use support::kube::{StubApi, docker_config};
use support::registry::Registry;

const BASIC_A: (&str, &str) = ("user-a", "pw-a-5d1c9e");
const BASIC_B: (&str, &str) = ("user-b", "pw-b-77e0aa");
const BASIC_C: (&str, &str) = ("user-c", "pw-c-0b4f12");
const TOKEN_B: &str = "tok-b-91c2";

fn basic((user, password): (&str, &str)) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// One GET passed to the real registry, as it answered.
fn forward(real: &str, request: &Request) -> Reply {
    let mut stream = std::net::TcpStream::connect(real).unwrap();
    let accept = request.header("accept").unwrap_or("*/*");
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {real}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n",
        request.path
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut reply = Reply::new(status, raw[split + 4..].to_vec());
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim();
            if ["content-type", "docker-content-digest"].contains(&k.to_ascii_lowercase().as_str())
            {
                reply = reply.header(k, v.trim());
            }
        }
    }
    reply
}

/// The real registry behind a gate: `team-a/` needs Basic user-a, `team-b/` a Bearer token that
/// the gate's `/token` gives user-b, `team-c/` Basic user-c; the rest is public.
async fn gated(real: String) -> Hostile {
    let me: Arc<OnceLock<String>> = Arc::default();
    let host = Arc::clone(&me);
    let gate = Hostile::start(move |r: &Request| {
        let auth = r.header("authorization").unwrap_or("");
        if r.path.starts_with("/token") {
            return if auth == basic(BASIC_B) {
                Reply::new(200, format!("{{\"token\": \"{TOKEN_B}\"}}"))
            } else {
                Reply::new(401, "{}")
            };
        }
        let repo = r.path.trim_start_matches("/v2/");
        let challenge = |ok: bool, header: String| {
            if ok {
                None
            } else {
                Some(Reply::new(401, "{\"errors\":[]}").header("WWW-Authenticate", &header))
            }
        };
        let refused = if repo.starts_with("team-a/") {
            challenge(auth == basic(BASIC_A), "Basic realm=\"gate\"".into())
        } else if repo.starts_with("team-c/") {
            challenge(auth == basic(BASIC_C), "Basic realm=\"gate\"".into())
        } else if repo.starts_with("team-b/") {
            let realm = format!(
                "Bearer realm=\"http://{}/token\",service=\"gate\"",
                host.get().unwrap()
            );
            challenge(auth == format!("Bearer {TOKEN_B}"), realm)
        } else {
            None
        };
        refused.unwrap_or_else(|| forward(&real, r))
    })
    .await;
    me.set(gate.host()).unwrap();
    gate
}

struct Setup {
    registry: Registry,
    gate: Hostile,
    key: SigningKey,
    api: StubApi,
    /// A signed image by digest in each team's repository.
    images: std::collections::HashMap<&'static str, String>,
}

impl Setup {
    async fn new() -> Self {
        let registry = Registry::start().await;
        let key = SigningKey::p256();
        let mut images = std::collections::HashMap::new();
        let gate = gated(registry.host()).await;
        for team in ["team-a", "team-b", "team-c"] {
            let repo = format!("{team}/app");
            let digest = registry
                .push_image(&repo, "v1", &Image::new(&format!("{team} app")))
                .await;
            let layer = signature_layer(&key, payload("x", &digest));
            registry.push_signatures(&repo, &digest, vec![layer]).await;
            images.insert(team, format!("{}/{repo}@{digest}", gate.host()));
        }
        let api = StubApi::start().await;
        let dockerconfig = "kubernetes.io/dockerconfigjson";
        let host = gate.host();
        api.secret(
            "apps",
            "regcred",
            dockerconfig,
            ".dockerconfigjson",
            &docker_config(&host, BASIC_A.0, BASIC_A.1),
        );
        api.service_account("apps", "default", &[]);
        api.service_account("empty", "default", &[]);
        api.secret(
            "builds",
            "b-cred",
            dockerconfig,
            ".dockerconfigjson",
            &docker_config(&host, BASIC_B.0, BASIC_B.1),
        );
        api.service_account("builds", "builder", &["b-cred"]);
        api.secret(
            "builds",
            "elsewhere",
            dockerconfig,
            ".dockerconfigjson",
            &docker_config("other.example", BASIC_B.0, BASIC_B.1),
        );
        api.secret("apps", "opaque", "Opaque", "token", b"not a pull secret");
        api.secret(
            "umpire-system",
            "team-c",
            dockerconfig,
            ".dockerconfigjson",
            &docker_config(&host, BASIC_C.0, BASIC_C.1),
        );
        api.forbid("locked");
        Self {
            registry,
            gate,
            key,
            api,
            images,
        }
    }

    fn yaml(&self, hook: &TestWebhook, extra: &str) -> String {
        let host = self.gate.host();
        format!(
            "{}kubernetes:\n  pull_secrets: true\n{}{extra}",
            support::config_yaml(
                &host,
                &[("release", &self.key.public_pem())],
                &support::key_policy("signed", &host, 1, &["release"]),
                "",
            )
            .replace(
                "    insecure: true\n",
                "    insecure: true\n    credentials: { secret: umpire-system/team-c }\n"
            ),
            hook.yaml,
        )
    }
}

fn pod(namespace: &str, image: &str, secrets: &[&str], account: Option<&str>) -> serde_json::Value {
    let refs: Vec<serde_json::Value> = secrets
        .iter()
        .map(|n| serde_json::json!({"name": n}))
        .collect();
    let mut spec = serde_json::json!({"containers": [{"name": "c", "image": image}], "imagePullSecrets": refs});
    if let Some(a) = account {
        spec["serviceAccountName"] = a.into();
    }
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "namespace": namespace, "operation": "CREATE", "object": {"spec": spec}}
    })
}

async fn admit(hook: &TestWebhook, review: serde_json::Value) -> (bool, String) {
    let r: serde_json::Value = hook.post("/admission/validate", &review).await;
    let allowed = r["response"]["allowed"].as_bool().unwrap();
    let message = r["response"]["status"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    (allowed, message)
}

/// `umpire serve` with its log (every level) written to a file.
async fn serve(
    yaml: &str,
    env: &[(&str, String)],
    log: &std::path::Path,
) -> support::served::Served {
    let mut env: Vec<(&str, String)> = env.to_vec();
    env.push(("UMPIRE_LOG", "trace".into()));
    support::served::Served::start_logged(yaml, &env, log).await
}

#[tokio::test]
async fn a_pods_pull_secrets_reach_a_private_registry_and_no_secret_byte_is_logged() {
    let s = Setup::new().await;
    let hook = TestWebhook::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("umpire.log");
    let kubeconfig = ("KUBECONFIG", s.api.kubeconfig.display().to_string());
    let served = serve(&s.yaml(&hook, ""), &[kubeconfig], &log).await;
    served.wait_for(hook.port).await;
    let image_a = &s.images["team-a"];

    // The pod names its pull secret: verified with it.
    let (allowed, message) = admit(&hook, pod("apps", image_a, &["regcred"], None)).await;
    assert!(allowed, "{message}");

    // The same image from a namespace whose workload has no credentials for the registry: refused,
    // saying so (never answered from the verdict the other namespace's secret bought).
    let (allowed, message) = admit(&hook, pod("empty", image_a, &[], None)).await;
    assert!(!allowed);
    assert!(message.contains("REGISTRY_ERROR"), "{message}");
    assert!(
        message.contains("no pull secret") && message.contains("service account empty/default"),
        "{message}"
    );

    // A secret that does not exist, one of another type, and RBAC's refusal: each named.
    let (allowed, message) = admit(&hook, pod("apps", image_a, &["missing"], Some("none"))).await;
    assert!(
        !allowed && message.contains("secret apps/missing was not found"),
        "{message}"
    );
    let (allowed, message) = admit(&hook, pod("apps", image_a, &["opaque"], Some("none"))).await;
    assert!(
        !allowed && message.contains("is of type Opaque"),
        "{message}"
    );
    let (allowed, message) = admit(&hook, pod("locked", image_a, &["regcred"], None)).await;
    assert!(!allowed && message.contains("HTTP 403"), "{message}");

    // A gRPC caller naming the namespace gets no workload's credentials.
    let r = served.ask(image_a).await;
    assert!(!r.allowed, "{r:?}");

    drop(served);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "the log was written at every level"
    );
    for secret in [
        BASIC_A.1,
        BASIC_B.1,
        BASIC_C.1,
        TOKEN_B,
        support::kube::TOKEN,
    ] {
        assert!(
            !text.contains(secret),
            "a secret ({secret}) reached the log"
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        assert!(!text.contains(&encoded));
    }
    for (user, password) in [BASIC_A, BASIC_B, BASIC_C] {
        assert!(
            !text.contains(&basic((user, password))[6..]),
            "a Basic credential reached the log"
        );
    }
    let _ = &s.registry;
}

#[tokio::test]
async fn a_service_accounts_secret_is_used_in_cluster_when_the_pod_names_none() {
    let s = Setup::new().await;
    let hook = TestWebhook::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("umpire.log");
    // No kubeconfig: the in-cluster environment, as a pod's service account provides it.
    let account = tempfile::tempdir().unwrap();
    let mut env = s.api.in_cluster(account.path());
    env.push(("HOME", dir.path().display().to_string()));
    let extra = format!("  service_account_dir: {}\n", account.path().display());
    let yaml = s.yaml(&hook, "").replace(
        "  pull_secrets: true\n",
        &format!("  pull_secrets: true\n{extra}"),
    );
    let served = serve(&yaml, &env, &log).await;
    served.wait_for(hook.port).await;

    // team-b's registry answers with a Bearer challenge; the service account's secret gets the token.
    let image_b = &s.images["team-b"];
    let (allowed, message) = admit(&hook, pod("builds", image_b, &[], Some("builder"))).await;
    assert!(allowed, "{message}");
    let asked = s.api.asked.lock().unwrap().clone();
    assert!(
        asked.contains(&"/api/v1/namespaces/builds/serviceaccounts/builder".to_owned()),
        "{asked:?}"
    );
    assert!(
        asked.contains(&"/api/v1/namespaces/builds/secrets/b-cred".to_owned()),
        "{asked:?}"
    );

    // Named by its deprecated spelling, the account is the same one.
    let mut review = pod("builds", image_b, &[], None);
    review["request"]["object"]["spec"]["serviceAccount"] = "builder".into();
    let (allowed, message) = admit(&hook, review).await;
    assert!(allowed, "{message}");

    // The same pod under the default service account has nothing for the registry.
    let (allowed, message) = admit(&hook, pod("builds", image_b, &[], None)).await;
    assert!(!allowed, "{message}");

    // A pod that names secrets of its own pulls with those alone (the ServiceAccount plugin adds
    // the account's only to pods that name none): the account's credential is not borrowed.
    let own = pod("builds", image_b, &["elsewhere"], Some("builder"));
    let (allowed, message) = admit(&hook, own).await;
    assert!(!allowed, "{message}");
    assert!(
        message.contains("pod imagePullSecrets: [elsewhere]"),
        "{message}"
    );
}

#[tokio::test]
async fn a_registrys_configured_secret_serves_grpc() {
    let s = Setup::new().await;
    let hook = TestWebhook::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("umpire.log");
    let kubeconfig = ("KUBECONFIG", s.api.kubeconfig.display().to_string());
    let served = serve(&s.yaml(&hook, ""), &[kubeconfig], &log).await;

    // team-c's repositories take umpire-system/team-c, which the configuration names.
    let r = served.ask(&s.images["team-c"]).await;
    assert!(r.allowed, "{r:?}");
    // team-a's need another credential: the configured one is refused.
    let r = served.ask(&s.images["team-a"]).await;
    assert!(!r.allowed);
    assert_eq!(r.findings[0].code, "REGISTRY_ERROR", "{r:?}");
    assert!(
        s.gate
            .requests()
            .iter()
            .any(|q| q.path.starts_with("/v2/team-c/")
                && q.header("authorization") == Some(&basic(BASIC_C)))
    );
}
