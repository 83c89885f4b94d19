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

/// How strictly a statement verifies (Notation's `signatureVerification.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Strict,
    Permissive,
    Audit,
    Skip,
}

/// What a failed check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Enforce,
    Log,
    Skip,
}

/// The checks a level decides about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Validation {
    Integrity,
    Authenticity,
    AuthenticTimestamp,
    Expiry,
    Revocation,
}

impl Level {
    /// Notation's table: strict enforces every check; permissive enforces integrity and
    /// authenticity and logs the rest; audit enforces integrity and logs the rest; skip verifies
    /// nothing.
    pub fn action(self, v: Validation) -> Action {
        use Validation::*;
        match (self, v) {
            (Level::Skip, _) => Action::Skip,
            (Level::Strict, _) => Action::Enforce,
            (Level::Permissive, Integrity | Authenticity) => Action::Enforce,
            (Level::Permissive, _) => Action::Log,
            (Level::Audit, Integrity) => Action::Enforce,
            (Level::Audit, _) => Action::Log,
        }
    }
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

/// A trusted identity: any (`*`), or the attributes a leaf subject must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedIdentity {
    Any,
    Subject(BTreeMap<String, String>),
}

/// Parses a distinguished name `CN=a, O=b, ...` into attributes (each at most once).
pub fn parse_dn(dn: &str) -> Result<BTreeMap<String, String>, String> {
    let mut attrs = BTreeMap::new();
    for part in dn.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} in {dn:?} is not ATTRIBUTE=VALUE"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() {
            return Err(format!(
                "{part:?} in {dn:?} has an empty attribute or value"
            ));
        }
        if attrs.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(format!("attribute {k} appears twice in {dn:?}"));
        }
    }
    Ok(attrs)
}

impl TrustedIdentity {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Self::Any);
        }
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| format!("trusted identity {s:?} is not x509.subject: DN or *"))?;
        if kind.trim() != "x509.subject" {
            return Err(format!(
                "trusted identity type {:?} is not x509.subject",
                kind.trim()
            ));
        }
        let attrs = parse_dn(value.trim())?;
        for required in ["C", "ST", "O"] {
            if !attrs.contains_key(required) {
                return Err(format!(
                    "trusted identity {s:?} lacks {required}: C, ST and O are required"
                ));
            }
        }
        Ok(Self::Subject(attrs))
    }

    /// Whether a leaf whose subject has `subject` attributes is this identity: every attribute
    /// listed must equal the subject's (order does not matter).
    pub fn matches(&self, subject: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Any => true,
            Self::Subject(want) => want.iter().all(|(k, v)| subject.get(k) == Some(v)),
        }
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

/// A registry scope as Notation writes it: `host[:port]/repository`, no tag or digest, no wildcard.
fn valid_scope(s: &str) -> bool {
    let Some((host, repo)) = s.split_once('/') else {
        return false;
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && !repo.is_empty()
        && repo.split('/').all(|seg| {
            !seg.is_empty()
                && seg.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                })
        })
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
            for s in &r.registry_scopes {
                if !valid_scope(s) {
                    return Err(bad(format!(
                        "registry scope {s:?} is not host[:port]/repository"
                    )));
                }
            }
            Some(r.registry_scopes.clone())
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
        let mut overrides = BTreeMap::new();
        for (k, v) in &r.signature_verification.r#override {
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
            if validation == Validation::Authenticity && action == Action::Skip {
                return Err(bad("authenticity cannot be skipped".into()));
            }
            overrides.insert(validation, action);
        }
        let (stores, identities) = match (level, &r.trust_stores, &r.trusted_identities) {
            (Level::Skip, None, None) => (Vec::new(), Vec::new()),
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
                    .map(|s| StoreRef::parse(s).map_err(&bad))
                    .collect::<Result<Vec<_>, _>>()?;
                if ids.len() > 1 && ids.iter().any(|i| i == "*") {
                    return Err(bad("a wildcard trusted identity stands alone".into()));
                }
                let ids = ids
                    .iter()
                    .map(|i| TrustedIdentity::parse(i).map_err(&bad))
                    .collect::<Result<Vec<_>, _>>()?;
                (stores, ids)
            }
        };
        let verify_timestamp_always = match r.signature_verification.verify_timestamp.as_deref() {
            None | Some("always") => true,
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

/// The statement whose scopes hold `scope` (`host[:port]/repository`, compared literally), else the
/// `*` statement.
pub fn statement_for<'a>(statements: &'a [Statement], scope: &str) -> Option<&'a Statement> {
    statements
        .iter()
        .find(|s| {
            s.scopes
                .as_ref()
                .is_some_and(|v| v.iter().any(|x| x == scope))
        })
        .or_else(|| statements.iter().find(|s| s.scopes.is_none()))
}

/// The certificates (DER) of one trust store: every file of `root/x509/<type>/<name>/`, PEM or DER.
/// `ca` and `signingAuthority` stores hold CA certificates or self-signed leaves; `tsa` stores hold
/// self-signed root CAs only.
pub fn load_store(root: &Path, store: &StoreRef) -> Result<Vec<Vec<u8>>, NotationError> {
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
    for file in files {
        let bytes = std::fs::read(&file)
            .map_err(|e| bad(format!("cannot read {}: {e}", file.display())))?;
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
    Ok(certs)
}

/// What verifying one envelope under one statement found: failures the level enforces, and
/// failures it only logs (reported as warnings).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub enforced: Vec<String>,
    pub logged: Vec<String>,
    /// The statement's level is `skip`: nothing was verified.
    pub skipped: bool,
}

impl Report {
    pub fn verified(&self) -> bool {
        self.enforced.is_empty()
    }

    fn fail(&mut self, statement: &Statement, v: Validation, reason: String) {
        let reason = format!("{}: {reason}", validation_name(v));
        match statement.action(v) {
            Action::Enforce => self.enforced.push(reason),
            Action::Log => self.logged.push(reason),
            Action::Skip => {}
        }
    }
}

fn validation_name(v: Validation) -> &'static str {
    match v {
        Validation::Integrity => "integrity",
        Validation::Authenticity => "authenticity",
        Validation::AuthenticTimestamp => "authenticTimestamp",
        Validation::Expiry => "expiry",
        Validation::Revocation => "revocation",
    }
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
    use crate::verify::notation::{SigningScheme, chain_valid_at, check_chain, check_integrity};
    let mut report = Report::default();
    if statement.level == Level::Skip {
        report.skipped = true;
        return Ok(report);
    }
    let env = match check_integrity(envelope, media_type, target) {
        Ok(env) => env,
        Err(reason) => {
            report.fail(statement, Validation::Integrity, reason);
            return Ok(report);
        }
    };
    let wanted = match env.scheme {
        SigningScheme::X509 => StoreKind::Ca,
        SigningScheme::SigningAuthority => StoreKind::SigningAuthority,
    };
    let mut trusted = Vec::new();
    let mut tsa_stores = 0;
    // Only the stores the signing scheme reads (as Notation does): a `signingAuthority` store
    // named beside the `ca` stores is not opened for a `notary.x509` signature.
    for store in &statement.stores {
        if store.kind == wanted {
            trusted.extend(load_store(store_root, store)?);
        } else if store.kind == StoreKind::Tsa {
            tsa_stores += 1;
        }
    }
    let signed_at = env.signing_time.unwrap_or(at);
    match check_chain(&env, &trusted, signed_at) {
        Err(reason) => report.fail(statement, Validation::Authenticity, reason),
        Ok(()) => {
            if !statement
                .identities
                .iter()
                .any(|i| i.matches(&env.leaf_subject))
            {
                let subject: Vec<String> = env
                    .leaf_subject
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                report.fail(
                    statement,
                    Validation::Authenticity,
                    format!(
                        "the signing certificate's subject {} matches no trusted identity",
                        subject.join(", ")
                    ),
                );
            }
        }
    }
    if let Some(expiry) = env.expiry
        && expiry < at
    {
        report.fail(
            statement,
            Validation::Expiry,
            format!("the signature expired at {expiry}"),
        );
    }
    match env.scheme {
        SigningScheme::X509 if env.has_timestamp => report.fail(
            statement,
            Validation::AuthenticTimestamp,
            "RFC 3161 timestamp countersignatures are not verified by this version of umpire"
                .into(),
        ),
        SigningScheme::X509 if tsa_stores > 0 && statement.verify_timestamp_always => report.fail(
            statement,
            Validation::AuthenticTimestamp,
            "no timestamp countersignature was found, and the policy names a tsa store".into(),
        ),
        SigningScheme::X509 => {
            if let Err(reason) = chain_valid_at(&env, at) {
                report.fail(statement, Validation::AuthenticTimestamp, reason);
            }
        }
        SigningScheme::SigningAuthority => {
            if let Err(reason) = chain_valid_at(&env, signed_at) {
                report.fail(statement, Validation::AuthenticTimestamp, reason);
            }
        }
    }
    if statement.level == Level::Strict && report.enforced.is_empty() {
        report
            .logged
            .push("revocation: not checked (OCSP and CRLs need the network)".into());
    }
    Ok(report)
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
