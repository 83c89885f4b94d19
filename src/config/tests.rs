use super::*;

const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEXUD30KTFZm7P+SLG+GsLQ14moaSz
H95ebKPwlNWNmtEL2aHubsjf5kOls1WU0xSY9ucvrybUh8QwUzNimHlUSA==
-----END PUBLIC KEY-----
";

fn with_key(yaml: &str) -> String {
    let indented: String = KEY.lines().map(|l| format!("      {l}\n")).collect();
    format!("trust:\n  keys:\n    release: |\n{indented}{yaml}")
}

fn load(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(yaml, Path::new("."), "test.yaml")
}

fn err(yaml: &str) -> String {
    load(yaml)
        .expect_err("config should be rejected")
        .to_string()
}

const POLICY: &str = "policies:
  - name: prod
    images: [\"reg.io/prod/**\"]
    signatures:
      threshold: 1
      authorities:
        - key: release
";

#[test]
fn a_good_file_loads() {
    let c = load(&with_key(&format!(
        "listen: 127.0.0.1:6000\nregistries:\n  - host: 127.0.0.1:5000\n    insecure: true\n{POLICY}default: deny\nlimits:\n  max_manifest_bytes: 1024\n  deadline: 5s\n"
    )))
    .unwrap();
    assert_eq!(c.listen.port(), 6000);
    assert!(c.registries["127.0.0.1:5000"].insecure);
    assert_eq!(c.policies.len(), 1);
    assert_eq!(c.limits.max_manifest_bytes, 1024);
    assert_eq!(c.limits.deadline, Duration::from_secs(5));
    assert_eq!(c.limits.max_signatures, 100);
    assert_eq!(c.default, DefaultAction::Deny);
}

#[test]
fn the_builtin_default_loads() {
    let c = Config::builtin().unwrap();
    assert_eq!(c.default, DefaultAction::Deny);
    assert!(c.keys.contains_key("demo"));
}

#[test]
fn unknown_keys_are_named() {
    let e = err(&with_key(&format!("{POLICY}colour: blue\n")));
    assert!(e.contains("colour"), "{e}");
    let e = err(&with_key(
        &POLICY.replace("threshold: 1", "threshold: 1\n      quorum: 2"),
    ));
    assert!(
        e.contains("policies[0].signatures") && e.contains("quorum"),
        "{e}"
    );
}

#[test]
fn bad_values_are_named() {
    let e = err(&with_key(&POLICY.replace("threshold: 1", "threshold: 2")));
    assert!(e.contains("policies[0].signatures.threshold"), "{e}");
    let e = err(&with_key(&POLICY.replace("threshold: 1", "threshold: 0")));
    assert!(e.contains("policies[0].signatures.threshold"), "{e}");
    let e = err(&with_key(
        &POLICY.replace("threshold: 1", "threshold: many"),
    ));
    assert!(e.contains("policies[0].signatures.threshold"), "{e}");
    let e = err(&with_key(&POLICY.replace("key: release", "key: missing")));
    assert!(
        e.contains("policies[0].signatures.authorities[0].key") && e.contains("missing"),
        "{e}"
    );
    let e = err(&with_key(&format!("{POLICY}default: maybe\n")));
    assert!(e.contains("default"), "{e}");
    let e = err(&with_key(&format!("listen: nowhere\n{POLICY}")));
    assert!(e.contains("listen"), "{e}");
    let e = err(&with_key(
        &POLICY.replace("reg.io/prod/**", "reg.io/prod:latest"),
    ));
    assert!(e.contains("policies[0].images[0]"), "{e}");
    let e = err(&with_key(&format!("{POLICY}limits:\n  deadline: soon\n")));
    assert!(e.contains("limits.deadline"), "{e}");
    let e = err(&with_key(&format!(
        "{POLICY}limits:\n  max_signatures: 0\n"
    )));
    assert!(e.contains("limits.max_signatures"), "{e}");
    let e = err(&with_key(&format!(
        "registries:\n  - host: https://reg.io\n{POLICY}"
    )));
    assert!(e.contains("registries[0].host"), "{e}");
}

#[test]
fn keys_must_be_public_keys() {
    let e = err("trust:\n  keys:\n    k: /nonexistent/key.pub\n");
    assert!(
        e.contains("trust.keys.k") && e.contains("cannot read"),
        "{e}"
    );
    let e = err(
        "trust:\n  keys:\n    k: |\n      -----BEGIN PUBLIC KEY-----\n      AAAA\n      -----END PUBLIC KEY-----\n",
    );
    assert!(e.contains("trust.keys.k"), "{e}");
}

#[test]
fn policies_need_a_requirement_and_unique_names() {
    let e = err(&with_key(
        "policies:\n  - name: p\n    images: [\"a.io/**\"]\n",
    ));
    assert!(e.contains("policies[0]") && e.contains("signatures"), "{e}");
    let twice = format!("{POLICY}{}", POLICY.trim_start_matches("policies:\n"));
    let e = err(&with_key(&twice));
    assert!(e.contains("policies[1].name"), "{e}");
    let e = err(&with_key(
        &POLICY.replace("images: [\"reg.io/prod/**\"]", "images: []"),
    ));
    assert!(e.contains("policies[0].images"), "{e}");
}

#[test]
fn keys_load_from_files_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("release.pub"), KEY).unwrap();
    let yaml = format!("trust:\n  keys:\n    release: release.pub\n{POLICY}");
    std::fs::write(dir.path().join("umpire.yaml"), yaml).unwrap();
    let c = Config::load(&dir.path().join("umpire.yaml")).unwrap();
    assert!(c.keys.contains_key("release"));
    assert_eq!(
        c.source.as_deref(),
        Some(dir.path().join("umpire.yaml").as_path())
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration("m"), None);
    assert_eq!(
        parse_duration("90d"),
        Some(Duration::from_secs(90 * 86_400))
    );
    assert_eq!(parse_duration("1w"), None);
}

#[test]
fn one_key_under_two_names_is_refused_naming_both() {
    let indented: String = KEY.lines().map(|l| format!("      {l}\n")).collect();
    let yaml = format!("trust:\n  keys:\n    alpha: |\n{indented}    beta: |\n{indented}{POLICY}")
        .replace("key: release", "key: alpha");
    let e = err(&yaml);
    assert!(
        e.contains("trust.keys.alpha") && e.contains("trust.keys.beta"),
        "{e}"
    );
}

#[test]
fn the_gate_needs_its_upstream() {
    let e = err(&with_key(&format!(
        "{POLICY}ext_authz_listen: 127.0.0.1:9191\n"
    )));
    assert!(e.contains("ext_authz.upstream"), "{e}");
    let e = err(&with_key(&format!(
        "{POLICY}ext_authz_listen: 127.0.0.1:9191\next_authz:\n  upstream: reg.io/x\n"
    )));
    assert!(e.contains("ext_authz.upstream"), "{e}");
    let c = load(&with_key(&format!(
        "{POLICY}ext_authz_listen: 127.0.0.1:9191\next_authz:\n  upstream: REG.io:443\n"
    )))
    .unwrap();
    assert_eq!(c.ext_authz.unwrap().upstream, "reg.io");
}

#[test]
fn registry_hosts_take_the_canonical_spelling() {
    let c = load(&with_key(&format!(
        "registries:\n  - host: LOCALHOST:5000\n    insecure: true\n{POLICY}"
    )))
    .unwrap();
    assert!(c.registries["localhost:5000"].insecure);
}

#[test]
fn a_registry_tls_ca_is_read_at_load_and_refused_where_it_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["registry ca".into()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, ca.pem()).unwrap();
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, KEY).unwrap();
    let registry = |extra: &str, path: &Path| {
        with_key(&format!(
            "registries:\n  - host: REG.io\n{extra}    tls_ca: {}\n{POLICY}",
            path.display()
        ))
    };
    let c = load(&registry("", &good)).unwrap();
    assert_eq!(
        c.registries["reg.io"].tls_ca,
        Some(vec![ca.der().to_vec()]),
        "the certificate, under the host's canonical spelling"
    );
    let e = err(&registry("    insecure: true\n", &good));
    assert!(
        e.contains("registries[0].tls_ca") && e.contains("insecure"),
        "{e}"
    );
    let e = err(&registry("", &key_file));
    assert!(
        e.contains("registries[0].tls_ca") && e.contains("PUBLIC KEY"),
        "{e}"
    );
    let e = err(&registry("", &dir.path().join("missing.pem")));
    assert!(
        e.contains("registries[0].tls_ca") && e.contains("missing.pem"),
        "{e}"
    );
}

#[test]
fn both_tls_ca_keys_take_certificates_only_and_offline_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, KEY).unwrap();
    // The shared cache's CA is read as the registries' is: a bundle holding anything but
    // certificates is a load error naming the key, not a failed handshake later.
    unsafe { std::env::set_var("UMPIRE_TEST_TLS_CA_KEY", "0123456789abcdef-test-only-key") };
    let redis = |path: &Path| {
        with_key(&format!(
            "cache:\n  redis:\n    url: rediss://redis.example:6380\n    hmac_key_env: UMPIRE_TEST_TLS_CA_KEY\n    tls_ca: {}\n{POLICY}",
            path.display()
        ))
    };
    let e = err(&redis(&key_file));
    assert!(
        e.contains("cache.redis.tls_ca") && e.contains("PUBLIC KEY"),
        "{e}"
    );
    // `config check --offline`: the CA files exist only where umpire runs, like the listeners'.
    let missing = dir.path().join("mounted-at-run-time.pem");
    let registry = with_key(&format!(
        "registries:\n  - host: reg.io\n    tls_ca: {}\n{POLICY}",
        missing.display()
    ));
    for yaml in [redis(&missing), registry] {
        let file = dir.path().join("umpire.yaml");
        std::fs::write(&file, &yaml).unwrap();
        assert!(err(&yaml).contains("mounted-at-run-time.pem"));
        let offline = Config::load_offline(&file).unwrap();
        let trusted = offline
            .registries
            .get("reg.io")
            .map(|r| r.tls_ca.clone())
            .or_else(|| offline.cache.redis.as_ref().map(|r| r.tls_ca.clone()));
        assert_eq!(trusted, Some(Some(Vec::new())), "read offline: {yaml}");
    }
}
