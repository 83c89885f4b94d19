//! Notation's own trust files, read as Notation reads them: a trust policy document (version 1.0)
//! and trust stores laid out as `x509/{ca,signingAuthority,tsa}/<name>/` (PEM or DER certificate
//! files). A document Notation would reject is rejected here with the same reasons: unknown
//! version, levels or override keys, an integrity override, missing or empty trusted identities or
//! trust stores, wildcard or malformed store names, malformed or overlapping registry scopes.
//! Verification of envelopes against them is not here (pure verification lives in `verify/`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use x509_parser::prelude::{FromDer, X509Certificate};

pub use crate::verify::notation_rules::{
    Action, Level, Report, Rules, ScopedRules, TrustedIdentity, Validation, parse_dn,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotationError {
    #[error("the trust policy is not JSON of Notation's shape: {0}")]
    Malformed(String),
    #[error("trust policy statement {statement:?}: {reason}")]
    Statement { statement: String, reason: String },
    #[error("the trust policy: {0}")]
    Document(String),
    #[error("trust store {store}: {reason}")]
    Store { store: String, reason: String },
}

/// A trust store reference, `TYPE:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoreRef {
    pub kind: StoreKind,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StoreKind {
    Ca,
    SigningAuthority,
    Tsa,
}

impl StoreKind {
    pub fn folder(self) -> &'static str {
        match self {
            StoreKind::Ca => "ca",
            StoreKind::SigningAuthority => "signingAuthority",
            StoreKind::Tsa => "tsa",
        }
    }
}

impl std::fmt::Display for StoreRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind.folder(), self.name)
    }
}

impl StoreRef {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, name) = s
            .split_once(':')
            .ok_or_else(|| format!("trust store {s:?} is not TYPE:NAME"))?;
        let kind = match kind {
            "ca" => StoreKind::Ca,
            "signingAuthority" => StoreKind::SigningAuthority,
            "tsa" => StoreKind::Tsa,
            other => {
                return Err(format!(
                    "trust store type {other:?} is not ca, signingAuthority or tsa"
                ));
            }
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(format!(
                "trust store name {name:?} is malformed (no wildcards; letters, digits, - _ .)"
            ));
        }
        Ok(Self {
            kind,
            name: name.to_owned(),
        })
    }
}

/// One statement of a trust policy document.
#[derive(Debug, Clone)]
pub struct Statement {
    pub name: String,
    /// `None` for `*`.
    pub scopes: Option<Vec<String>>,
    pub level: Level,
    pub overrides: BTreeMap<Validation, Action>,
    pub stores: Vec<StoreRef>,
    pub identities: Vec<TrustedIdentity>,
    /// `verifyTimestamp: always` (the default); `false` for `afterCertExpiry`.
    pub verify_timestamp_always: bool,
}

impl Statement {
    /// What a failed `v` does under this statement.
    pub fn action(&self, v: Validation) -> Action {
        self.overrides
            .get(&v)
            .copied()
            .unwrap_or_else(|| self.level.action(v))
    }

    /// The statement's rules with its trust stores read from `store_root`.
    pub fn rules(&self, store_root: &Path) -> Result<Rules, NotationError> {
        self.rules_and_files(store_root).map(|(rules, _)| rules)
    }

    /// The statement's rules, and every file its trust stores hold (for reloading).
    pub fn rules_and_files(
        &self,
        store_root: &Path,
    ) -> Result<(Rules, Vec<PathBuf>), NotationError> {
        let mut files = Vec::new();
        let mut rules = Rules {
            level: self.level,
            overrides: self.overrides.clone(),
            identities: self.identities.clone(),
            ca: Vec::new(),
            signing_authority: Vec::new(),
            tsa: Vec::new(),
            verify_timestamp_always: self.verify_timestamp_always,
        };
        for store in &self.stores {
            let (certs, read) = load_store_files(store_root, store)?;
            files.extend(read);
            match store.kind {
                StoreKind::Ca => rules.ca.extend(certs),
                StoreKind::SigningAuthority => rules.signing_authority.extend(certs),
                StoreKind::Tsa => rules.tsa.extend(certs),
            }
        }
        Ok((rules, files))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDocument {
    version: String,
    trust_policies: Vec<RawStatement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStatement {
    name: String,
    registry_scopes: Vec<String>,
    signature_verification: RawVerification,
    #[serde(default)]
    trust_stores: Option<Vec<String>>,
    #[serde(default)]
    trusted_identities: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerification {
    level: String,
    #[serde(default)]
    r#override: BTreeMap<String, String>,
    #[serde(default, rename = "verifyTimestamp")]
    verify_timestamp: Option<String>,
}

/// A registry scope as notation-go validates it (`validateRegistryScopeFormat`): a domain of
/// letters, digits and inner hyphens, an optional numeric port, then a repository of the
/// distribution spec's lower-case components; no tag, digest, wildcard or IPv6 literal. Returned
/// in the canonical form references take (host by `canonical_host`, `docker.io/nginx` as
/// `docker.io/library/nginx`), since umpire matches scopes against canonical references: a
/// `trustpolicy.json` written for `LOCALHOST:5000/app` or `docker.io/nginx` keeps its meaning.
fn canonical_scope(s: &str) -> Result<String, String> {
    let invalid = || {
        format!(
            "registry scope {s:?} is not valid: a fully qualified repository without scheme, tag or wildcard (domain.com/my/repository)"
        )
    };
    let (domain, repository) = s.split_once('/').ok_or_else(invalid)?;
    let (name, port) = match domain.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (domain, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let domain_ok = name.split('.').all(label_ok)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !domain_ok || !crate::reference::valid_repository(repository) {
        return Err(invalid());
    }
    let host =
        crate::reference::canonical_host(domain).map_err(|e| format!("{}: {e}", invalid()))?;
    if host == crate::reference::DOCKER_HUB && !repository.contains('/') {
        return Ok(format!("{host}/library/{repository}"));
    }
    Ok(format!("{host}/{repository}"))
}

/// Parses and validates a trust policy document (version 1.0).
pub fn parse_trust_policy(json: &str) -> Result<Vec<Statement>, NotationError> {
    let raw: RawDocument =
        serde_json::from_str(json).map_err(|e| NotationError::Malformed(e.to_string()))?;
    if raw.version != "1.0" {
        return Err(NotationError::Document(format!(
            "version {:?} is not 1.0",
            raw.version
        )));
    }
    if raw.trust_policies.is_empty() {
        return Err(NotationError::Document("it holds no statement".into()));
    }
    let mut statements = Vec::new();
    let mut names = BTreeSet::new();
    let mut scopes_seen = BTreeSet::new();
    for r in raw.trust_policies {
        let bad = |reason: String| NotationError::Statement {
            statement: r.name.clone(),
            reason,
        };
        if r.name.trim().is_empty() {
            return Err(NotationError::Document("a statement has no name".into()));
        }
        if !names.insert(r.name.clone()) {
            return Err(bad("its name is used twice".into()));
        }
        let scopes = if r.registry_scopes == ["*"] {
            None
        } else {
            if r.registry_scopes.is_empty() || r.registry_scopes.iter().any(|s| s == "*") {
                return Err(bad(
                    "registryScopes is either [\"*\"] or a list of scopes".into()
                ));
            }
            let mut canonical = Vec::with_capacity(r.registry_scopes.len());
            for s in &r.registry_scopes {
                canonical.push(canonical_scope(s).map_err(&bad)?);
            }
            Some(canonical)
        };
        for s in scopes
            .iter()
            .flatten()
            .cloned()
            .chain(scopes.is_none().then(|| "*".to_owned()))
        {
            if !scopes_seen.insert(s.clone()) {
                return Err(bad(format!(
                    "registry scope {s:?} is claimed by two statements"
                )));
            }
        }
        let level = match r.signature_verification.level.as_str() {
            "strict" => Level::Strict,
            "permissive" => Level::Permissive,
            "audit" => Level::Audit,
            "skip" => Level::Skip,
            other => {
                return Err(bad(format!(
                    "level {other:?} is not strict, permissive, audit or skip"
                )));
            }
        };
        let overrides = overrides(level, &r.signature_verification.r#override, &bad)?;
        let (stores, identities) = stores_and_identities(level, &r, &bad)?;
        let verify_timestamp_always = match r.signature_verification.verify_timestamp.as_deref() {
            None | Some("" | "always") => true,
            Some("afterCertExpiry") => false,
            Some(other) => {
                return Err(bad(format!(
                    "verifyTimestamp {other:?} is not always or afterCertExpiry"
                )));
            }
        };
        statements.push(Statement {
            verify_timestamp_always,
            name: r.name,
            scopes,
            level,
            overrides,
            stores,
            identities,
        });
    }
    Ok(statements)
}

/// A statement's validation overrides, as notation-go allows them (integrity never, skip only
/// for revocation, none under a skip level).
fn overrides(
    level: Level,
    raw: &BTreeMap<String, String>,
    bad: &dyn Fn(String) -> NotationError,
) -> Result<BTreeMap<Validation, Action>, NotationError> {
    let mut overrides = BTreeMap::new();
    for (k, v) in raw {
        let validation = match k.as_str() {
            "integrity" => {
                return Err(bad("integrity cannot be overridden".into()));
            }
            "authenticity" => Validation::Authenticity,
            "authenticTimestamp" => Validation::AuthenticTimestamp,
            "expiry" => Validation::Expiry,
            "revocation" => Validation::Revocation,
            other => return Err(bad(format!("override key {other:?} is not a validation"))),
        };
        let action = match v.as_str() {
            "enforce" => Action::Enforce,
            "log" => Action::Log,
            "skip" => Action::Skip,
            other => {
                return Err(bad(format!(
                    "override value {other:?} is not enforce, log or skip"
                )));
            }
        };
        if level == Level::Skip {
            return Err(bad("a skip level takes no overrides".into()));
        }
        // notation-go: only revocation may be skipped by an override.
        if validation != Validation::Revocation && action == Action::Skip {
            return Err(bad(format!("{k} cannot be skipped (only revocation can)")));
        }
        overrides.insert(validation, action);
    }
    Ok(overrides)
}

/// A statement's trust stores and trusted identities: required unless the level is skip (then
/// absent), a wildcard alone, no identity within another.
fn stores_and_identities(
    level: Level,
    r: &RawStatement,
    bad: &dyn Fn(String) -> NotationError,
) -> Result<(Vec<StoreRef>, Vec<TrustedIdentity>), NotationError> {
    Ok(match (level, &r.trust_stores, &r.trusted_identities) {
        (Level::Skip, stores, ids)
            if stores.as_ref().is_none_or(Vec::is_empty)
                && ids.as_ref().is_none_or(Vec::is_empty) =>
        {
            (Vec::new(), Vec::new())
        }
        (Level::Skip, _, _) => {
            return Err(bad(
                "a skip level takes no trustStores or trustedIdentities".into(),
            ));
        }
        (_, None, _) | (_, Some(_), None) => {
            return Err(bad("trustStores and trustedIdentities are required".into()));
        }
        (_, Some(stores), Some(ids)) => {
            if stores.is_empty() {
                return Err(bad("trustStores is empty".into()));
            }
            if ids.is_empty() {
                return Err(bad("trustedIdentities is empty".into()));
            }
            let stores = stores
                .iter()
                .map(|s| StoreRef::parse(s).map_err(bad))
                .collect::<Result<Vec<_>, _>>()?;
            if ids.len() > 1 && ids.iter().any(|i| i == "*") {
                return Err(bad("a wildcard trusted identity stands alone".into()));
            }
            let ids = ids
                .iter()
                .map(|i| TrustedIdentity::parse(i).map_err(bad))
                .collect::<Result<Vec<_>, _>>()?;
            // notation-go: no identity may be a subset of another (a duplicate included).
            for (i, a) in ids.iter().enumerate() {
                for (j, b) in ids.iter().enumerate() {
                    if let (TrustedIdentity::Subject(x), TrustedIdentity::Subject(y)) = (a, b)
                        && i != j
                        && crate::verify::notation_rules::is_subset_dn(x, y)
                    {
                        return Err(bad(format!(
                            "trusted identities overlap: {:?} is within {:?}",
                            r.trusted_identities
                                .as_ref()
                                .and_then(|t| t.get(i))
                                .cloned()
                                .unwrap_or_default(),
                            r.trusted_identities
                                .as_ref()
                                .and_then(|t| t.get(j))
                                .cloned()
                                .unwrap_or_default()
                        )));
                    }
                }
            }
            (stores, ids)
        }
    })
}

/// The statement whose scopes hold `scope` (`host[:port]/repository`, compared literally), else the
/// `*` statement.
pub fn statement_for<'a>(statements: &'a [Statement], scope: &str) -> Option<&'a Statement> {
    crate::verify::notation_rules::select_by(statements, |s| s.scopes.as_deref(), scope)
}

/// The certificates (DER) of one trust store: every file of `root/x509/<type>/<name>/`, PEM or DER.
/// `ca` and `signingAuthority` stores hold CA certificates or self-signed leaves; `tsa` stores hold
/// self-signed root CAs only.
pub fn load_store(root: &Path, store: &StoreRef) -> Result<Vec<Vec<u8>>, NotationError> {
    load_store_files(root, store).map(|(certs, _)| certs)
}

/// `load_store`, with the files it read.
fn load_store_files(
    root: &Path,
    store: &StoreRef,
) -> Result<(Vec<Vec<u8>>, Vec<PathBuf>), NotationError> {
    let dir: PathBuf = root
        .join("x509")
        .join(store.kind.folder())
        .join(&store.name);
    let bad = |reason: String| NotationError::Store {
        store: store.to_string(),
        reason,
    };
    let entries =
        std::fs::read_dir(&dir).map_err(|e| bad(format!("cannot read {}: {e}", dir.display())))?;
    let mut certs = Vec::new();
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for file in &files {
        let bytes =
            std::fs::read(file).map_err(|e| bad(format!("cannot read {}: {e}", file.display())))?;
        let ders: Vec<Vec<u8>> = match pem::parse_many(&bytes) {
            Ok(blocks) if !blocks.is_empty() => blocks
                .into_iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .map(pem::Pem::into_contents)
                .collect(),
            _ => vec![bytes],
        };
        for der in ders {
            let (_, cert) = X509Certificate::from_der(&der)
                .map_err(|e| bad(format!("{} is not a certificate: {e}", file.display())))?;
            let is_ca = cert.is_ca();
            // Self-issued (subject = issuer); its signature is checked when a chain is built.
            let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
            let ok = match store.kind {
                StoreKind::Tsa => is_ca && self_signed,
                StoreKind::Ca | StoreKind::SigningAuthority => is_ca || self_signed,
            };
            if !ok {
                return Err(bad(format!(
                    "{} holds {:?}, which is {}",
                    file.display(),
                    cert.subject().to_string(),
                    match store.kind {
                        StoreKind::Tsa => "not a self-signed root CA",
                        _ => "neither a CA nor a self-signed certificate",
                    }
                )));
            }
            certs.push(der);
        }
    }
    if certs.is_empty() {
        return Err(bad(format!("{} holds no certificate", dir.display())));
    }
    Ok((certs, files))
}

/// The text of the trust policy document at `path`.
pub fn read_policy_document(path: &Path) -> Result<String, NotationError> {
    std::fs::read_to_string(path)
        .map_err(|e| NotationError::Document(format!("cannot read {}: {e}", path.display())))
}

/// A `notation` authority's statements, their trust stores read from `store_root`: from a trust
/// policy document (version 1.0, validated as Notation validates it). Also returns every file
/// read, for reloading.
pub fn load_statements(
    document: &str,
    store_root: &Path,
) -> Result<(Vec<ScopedRules>, Vec<PathBuf>), NotationError> {
    let mut files = Vec::new();
    let mut out = Vec::new();
    for statement in parse_trust_policy(document)? {
        let (rules, read) = statement.rules_and_files(store_root)?;
        files.extend(read);
        out.push(ScopedRules {
            name: statement.name,
            scopes: statement.scopes,
            rules,
        });
    }
    Ok((out, files))
}

/// Verifies one envelope for `target` under `statement`, with trust stores under `store_root`, at
/// time `at`. Errors are bad input (a store that cannot be read); everything about the envelope
/// itself is in the report.
pub fn verify_envelope(
    statement: &Statement,
    store_root: &Path,
    envelope: &[u8],
    media_type: &str,
    target: &crate::verify::notation::Target,
    at: jiff::Timestamp,
) -> Result<Report, NotationError> {
    // As `notation verify` does, a store the statement names that cannot be read fails the
    // verification (authenticity), not the command.
    let rules = match statement.rules(store_root) {
        Ok(rules) => rules,
        Err(e) => {
            return Ok(Report {
                enforced: vec![format!("authenticity: {e}")],
                failed: vec![crate::verify::Check::UntrustedSigner],
                ..Report::default()
            });
        }
    };
    Ok(crate::verify::notation_rules::verify(
        &rules, envelope, media_type, target, at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/notation")
            .join(rel)
    }

    fn policy(name: &str) -> Result<Vec<Statement>, NotationError> {
        parse_trust_policy(
            &std::fs::read_to_string(data(&format!("trustpolicies/{name}"))).unwrap(),
        )
    }

    /// A one-statement document (or two) from parts, for the rule-by-rule tests.
    fn doc(statements: &[serde_json::Value]) -> String {
        serde_json::json!({"version": "1.0", "trustPolicies": statements}).to_string()
    }

    fn statement(name: &str, scopes: &[&str], ids: &[&str]) -> serde_json::Value {
        serde_json::json!({
            "name": name,
            "registryScopes": scopes,
            "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:e2e"],
            "trustedIdentities": ids,
        })
    }

    const ID: &str = "x509.subject: C=US, ST=WA, O=Acme";

    #[test]
    fn scopes_take_the_canonical_form_of_references() {
        let s = parse_trust_policy(&doc(&[statement(
            "a",
            &[
                "LOCALHOST:05000/app",
                "docker.io/nginx",
                "index.docker.io/acme/app",
            ],
            &[ID],
        )]))
        .unwrap();
        assert_eq!(
            s[0].scopes.as_deref().unwrap(),
            [
                "localhost:5000/app",
                "docker.io/library/nginx",
                "docker.io/acme/app"
            ]
        );
        // Two spellings of one repository in two statements are one scope claimed twice.
        let twice = parse_trust_policy(&doc(&[
            statement("a", &["docker.io/nginx"], &[ID]),
            statement("b", &["docker.io/library/nginx"], &[ID]),
        ]));
        assert!(
            matches!(&twice, Err(NotationError::Statement { reason, .. }) if reason.contains("two statements")),
            "{twice:?}"
        );
        // What notation-go's scope format refuses: IPv6, wildcards, tags, upper-case repositories.
        for bad in [
            "[::1]:5000/app",
            "registry.example.com/*",
            "registry.example.com/app:v1",
            "registry.example.com/App",
            "registry.example.com",
            "-bad.example.com/app",
        ] {
            assert!(
                parse_trust_policy(&doc(&[statement("a", &[bad], &[ID])])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn notation_gos_statement_rules_hold_one_by_one() {
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut st = statement("a", &["*"], &[ID]);
            f(&mut st);
            parse_trust_policy(&doc(&[st]))
        };
        // Only revocation may be skipped by an override.
        for v in ["authenticity", "authenticTimestamp", "expiry"] {
            assert!(
                with(&|s| s["signatureVerification"]["override"] = serde_json::json!({v: "skip"}))
                    .is_err(),
                "{v}"
            );
        }
        assert!(
            with(&|s| s["signatureVerification"]["override"] =
                serde_json::json!({"revocation": "skip"}))
            .is_ok()
        );
        // An empty verifyTimestamp is notation-go's default, `always`.
        let s = with(&|s| s["signatureVerification"]["verifyTimestamp"] = "".into()).unwrap();
        assert!(s[0].verify_timestamp_always);
        // A skip statement with empty lists is accepted, as notation-go checks their length.
        let s = with(&|s| {
            s["signatureVerification"]["level"] = "skip".into();
            s["trustStores"] = serde_json::json!([]);
            s["trustedIdentities"] = serde_json::json!([]);
        });
        assert!(s.is_ok(), "{s:?}");
        // Overlapping identities (one within another, or twice) are refused.
        for ids in [
            vec![ID, "x509.subject: C=US, ST=WA, O=Acme, CN=release"],
            vec![ID, ID],
        ] {
            let r = with(&|s| s["trustedIdentities"] = serde_json::json!(ids));
            assert!(
                matches!(&r, Err(NotationError::Statement { reason, .. }) if reason.contains("overlap")),
                "{r:?}"
            );
        }
        assert!(
            with(&|s| s["trustedIdentities"] =
                serde_json::json!([ID, "x509.subject: C=US, ST=WA, O=Other"]))
            .is_ok()
        );
    }

    #[test]
    fn distinguished_names_are_read_as_notation_go_reads_them() {
        let dn = parse_dn(r"C=US, S=WA, O=Acme\, Inc., CN=a\2Bb").unwrap();
        assert_eq!(dn["ST"], "WA");
        assert_eq!(dn["O"], "Acme, Inc.");
        assert_eq!(dn["CN"], "a+b");
        for bad in [
            "C=US, ST=WA, O=#0403414243",
            "C=US, ST=WA, O=Acme+OU=x",
            "C=US, ST=WA, O=Acme, O=Other",
            "C=US, ST=WA, O=",
            r"C=US, ST=WA, O=Acme\",
        ] {
            assert!(parse_dn(bad).is_err(), "{bad}");
        }
        assert!(TrustedIdentity::parse("x509.subject: C=US, S=WA, O=Acme").is_ok());
    }

    #[test]
    fn the_corpus_policies_notation_accepts_are_accepted() {
        for name in [
            "trustpolicy.json",
            "audit_trustpolicy.json",
            "permissive_trustpolicy.json",
            "skip_trustpolicy.json",
            "override_permissive_trustpolicy.json",
            "valid_trusted_identity_trustpolicy.json",
            "invalid_trusted_identity_trustpolicy.json",
            "invalid_registry_scope_trustpolicy.json",
        ] {
            assert!(policy(name).is_ok(), "{name}: {:?}", policy(name).err());
        }
        let s = policy("override_permissive_trustpolicy.json").unwrap();
        assert_eq!(s[0].action(Validation::Expiry), Action::Enforce);
        assert_eq!(s[0].action(Validation::Authenticity), Action::Log);
        assert_eq!(s[0].action(Validation::Integrity), Action::Enforce);
    }

    // Cases D29–D34 of the corpus's cases.json.
    #[test]
    fn the_corpus_policies_notation_rejects_are_rejected() {
        for (name, why) in [
            (
                "unset_trusted_identity_trustpolicy.json",
                "trustedIdentities",
            ),
            (
                "empty_trusted_identity_trustpolicy.json",
                "not x509.subject",
            ),
            (
                "malformed_registry_scope_trustpolicy.json",
                "registry scope",
            ),
            ("wildcard_trust_store_trustpolicy.json", "TYPE:NAME"),
            ("invalid_format_trustpolicy.json", "not JSON"),
            (
                "override_integrity_for_permissive_trustpolicy.json",
                "integrity cannot be overridden",
            ),
        ] {
            let err = policy(name).unwrap_err().to_string();
            assert!(err.contains(why), "{name}: {err}");
        }
    }

    #[test]
    fn trusted_identities_match_as_notation_matches_them() {
        let id =
            TrustedIdentity::parse("x509.subject: CN=e2e,O=Notary,L=Seattle,ST=WA,C=US").unwrap();
        let subject = parse_dn("C=US, ST=WA, L=Seattle, O=Notary, CN=e2e").unwrap();
        assert!(id.matches(&subject));
        let other =
            TrustedIdentity::parse("x509.subject: CN=e2e,O=Notary,L=Seattle,ST=WA,C=USB").unwrap();
        assert!(!other.matches(&subject));
        // C, ST and O are required; a wildcard is no attribute value.
        assert!(TrustedIdentity::parse("x509.subject: CN=e2e").is_err());
        assert!(TrustedIdentity::parse("").is_err());
        assert!(
            TrustedIdentity::parse("x509.subject: C=US, ST=WA, O=Acme, CN=*").unwrap()
                != TrustedIdentity::Any
        );
    }

    #[test]
    fn scopes_choose_one_statement_literally() {
        let s = policy("invalid_registry_scope_trustpolicy.json").unwrap();
        assert!(statement_for(&s, "localhost:5000/invalid-test-repo").is_some());
        // Case D28: the image's scope is in no statement.
        assert!(statement_for(&s, "localhost:5000/e2e").is_none());
        let star = policy("trustpolicy.json").unwrap();
        assert!(statement_for(&star, "anything.example/repo").is_some());
    }

    #[test]
    fn stores_hold_what_notation_allows() {
        let root = data("truststore");
        let ca = |name: &str| StoreRef::parse(&format!("ca:{name}")).unwrap();
        assert_eq!(load_store(&root, &ca("e2e")).unwrap().len(), 1);
        // PEM and DER files alike.
        assert!(load_store(&root, &ca("valid-trust-store")).unwrap().len() >= 6);
        // Case D35: a CA-issued leaf makes the store invalid.
        let err = load_store(&root, &ca("trust-store-with-leaf-certs")).unwrap_err();
        assert!(err.to_string().contains("non-ca.crt"), "{err}");
        let tsa = StoreRef::parse("tsa:test-timestamp").unwrap();
        assert_eq!(load_store(&root, &tsa).unwrap().len(), 1);
        assert!(load_store(&root, &ca("missing")).is_err());
    }
}
