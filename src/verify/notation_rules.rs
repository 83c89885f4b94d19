//! The rules one Notation verification applies (a trust policy statement's level and overrides,
//! its trusted identities, and the certificates of the trust stores it names, already loaded) and
//! their application to an envelope: which failed checks deny, which are only logged (warnings),
//! following the Notary Project trust policy specification.

use std::collections::BTreeMap;

use super::Check;
use super::notation::{SigningScheme, Target, chain_valid_at, check_chain, check_integrity};
use super::signature::{SignatureOutcome, Signer};
use super::timestamp;

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

/// A trusted identity: any (`*`), or the attributes a leaf subject must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedIdentity {
    Any,
    Subject(BTreeMap<String, String>),
}

/// Parses a distinguished name `CN=a, O=b, ...` into attributes (each at most once), as
/// notation-go reads trusted identities (RFC 4514 through go-ldap, then its own rules): `\,`,
/// `\+`, `\\` and `\XX` escapes are read, a multi-valued RDN (`+`) and any `=#` (a hex-encoded
/// value) are refused, and `S` is `ST`.
pub fn parse_dn(dn: &str) -> Result<BTreeMap<String, String>, String> {
    if dn.contains("=#") {
        return Err(format!(
            "{dn:?} holds \"=#\" (a hex-encoded value), which Notation does not accept"
        ));
    }
    let mut attrs = BTreeMap::new();
    for part in split_unescaped(dn, ',')? {
        if split_unescaped(&part, '+')?.len() > 1 {
            return Err(format!(
                "{part:?} in {dn:?} is a multi-valued RDN, which Notation does not accept"
            ));
        }
        let pieces = split_unescaped(&part, '=')?;
        let Some((k, rest)) = pieces.split_first().filter(|(_, r)| !r.is_empty()) else {
            return Err(format!("{part:?} in {dn:?} is not ATTRIBUTE=VALUE"));
        };
        let k = k.trim();
        let v = unescape(rest.join("=").trim())?;
        if k.is_empty() || v.is_empty() {
            return Err(format!(
                "{part:?} in {dn:?} has an empty attribute or value"
            ));
        }
        let k = if k == "S" { "ST" } else { k };
        if attrs.insert(k.to_owned(), v).is_some() {
            return Err(format!("attribute {k} appears twice in {dn:?}"));
        }
    }
    Ok(attrs)
}

/// `text` split at each `sep` that no backslash escapes (the escapes are kept).
fn split_unescaped(text: &str, sep: char) -> Result<Vec<String>, String> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars
                .next()
                .ok_or_else(|| format!("{text:?} ends with a lone backslash"))?;
            let last = parts.last_mut().expect("parts is never empty");
            last.push(c);
            last.push(next);
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    Ok(parts)
}

/// An RFC 4514 value with its escapes read: `\c` is `c`, `\XX` a byte in hex.
fn unescape(value: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(value.len());
    let raw = value.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            bytes.push(raw[i]);
            i += 1;
            continue;
        }
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (hex, raw.get(i + 1)) {
            (Some(b), _) => {
                bytes.push(b);
                i += 3;
            }
            (None, Some(c)) => {
                bytes.push(*c);
                i += 2;
            }
            (None, None) => return Err(format!("{value:?} ends with a lone backslash")),
        }
    }
    String::from_utf8(bytes).map_err(|_| format!("{value:?} is not UTF-8 once unescaped"))
}

/// Whether every attribute of `a` is in `b` with the same value (notation-go's `IsSubsetDN`).
pub fn is_subset_dn(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.iter().all(|(k, v)| b.get(k) == Some(v))
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

/// What a statement requires, with its trust stores read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub level: Level,
    pub overrides: BTreeMap<Validation, Action>,
    pub identities: Vec<TrustedIdentity>,
    /// Certificates (DER) of the `ca`, `signingAuthority` and `tsa` stores named.
    pub ca: Vec<Vec<u8>>,
    pub signing_authority: Vec<Vec<u8>>,
    pub tsa: Vec<Vec<u8>>,
    /// `verifyTimestamp: always` (the default); `false` for `afterCertExpiry`.
    pub verify_timestamp_always: bool,
}

impl Rules {
    /// What a failed `v` does under these rules.
    pub fn action(&self, v: Validation) -> Action {
        self.overrides
            .get(&v)
            .copied()
            .unwrap_or_else(|| self.level.action(v))
    }
}

/// What verifying one envelope found: failures the level enforces, and failures it only logs
/// (reported as warnings).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub enforced: Vec<String>,
    pub logged: Vec<String>,
    /// The level is `skip`: nothing was verified.
    pub skipped: bool,
    /// What each enforced failure is, in order (for finding codes).
    pub failed: Vec<Check>,
    /// The signing certificate's subject, once integrity held.
    pub signer: Option<String>,
    /// Revocation would have been checked at this level (it is not: OCSP and CRLs need the
    /// network).
    pub revocation_unchecked: bool,
    /// When an enforced check that passed because of the current time stops passing (the
    /// signature's expiry; the chain's validity when it was checked against now).
    pub valid_until: Option<jiff::Timestamp>,
}

impl Report {
    pub fn verified(&self) -> bool {
        self.enforced.is_empty()
    }

    fn fail(&mut self, rules: &Rules, v: Validation, check: Check, reason: String) {
        let reason = format!("{}: {reason}", validation_name(v));
        match rules.action(v) {
            Action::Enforce => {
                self.enforced.push(reason);
                self.failed.push(check);
            }
            Action::Log => self.logged.push(reason),
            Action::Skip => {}
        }
    }
}

pub fn validation_name(v: Validation) -> &'static str {
    match v {
        Validation::Integrity => "integrity",
        Validation::Authenticity => "authenticity",
        Validation::AuthenticTimestamp => "authenticTimestamp",
        Validation::Expiry => "expiry",
        Validation::Revocation => "revocation",
    }
}

/// Verifies one envelope (bytes of `media_type`) for `target` under `rules` at time `at`.
pub fn verify(
    rules: &Rules,
    envelope: &[u8],
    media_type: &str,
    target: &Target,
    at: jiff::Timestamp,
) -> Report {
    let mut report = Report::default();
    if rules.level == Level::Skip {
        report.skipped = true;
        return report;
    }
    let env = match check_integrity(envelope, media_type, target) {
        Ok(env) => env,
        Err(reason) => {
            report.fail(rules, Validation::Integrity, Check::Signature, reason);
            return report;
        }
    };
    let subject: Vec<String> = env
        .leaf_subject
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let subject = subject.join(", ");
    report.signer = Some(subject.clone());
    // Only the stores the signing scheme reads (as Notation does): a `signingAuthority` store
    // named beside the `ca` stores is not trusted for a `notary.x509` signature.
    let trusted = match env.scheme {
        SigningScheme::X509 => &rules.ca,
        SigningScheme::SigningAuthority => &rules.signing_authority,
    };
    let signed_at = env.signing_time;
    match check_chain(&env, trusted, signed_at) {
        Err(reason) => {
            let check = if reason.contains("holds no certificate of a configured trust store") {
                Check::UntrustedSigner
            } else {
                Check::Certificate
            };
            report.fail(rules, Validation::Authenticity, check, reason)
        }
        Ok(()) => {
            if !rules
                .identities
                .iter()
                .any(|i| i.matches(&env.leaf_subject))
            {
                report.fail(
                    rules,
                    Validation::Authenticity,
                    Check::Identity,
                    format!(
                        "the signing certificate's subject {subject} matches no trusted identity"
                    ),
                );
            }
        }
    }
    if let Some(expiry) = env.expiry
        && expiry < at
    {
        report.fail(
            rules,
            Validation::Expiry,
            Check::Signature,
            format!("the signature expired at {expiry}"),
        );
    }
    let bound = |report: &mut Report, t: jiff::Timestamp| {
        report.valid_until = Some(report.valid_until.map_or(t, |u| u.min(t)));
    };
    if let Some(expiry) = env.expiry
        && rules.action(Validation::Expiry) == Action::Enforce
    {
        bound(&mut report, expiry);
    }
    if rules.action(Validation::AuthenticTimestamp) == Action::Enforce
        && checks_chain_now(rules, &env, at)
    {
        for der in &env.chain {
            if let Ok((_, not_after)) = super::notation::validity(der) {
                bound(&mut report, not_after);
            }
        }
    }
    if let Err(reason) = authentic_timestamp(rules, &env, at) {
        report.fail(
            rules,
            Validation::AuthenticTimestamp,
            Check::Certificate,
            reason,
        );
    }
    report.revocation_unchecked = rules.action(Validation::Revocation) != Action::Skip;
    report
}

/// A statement's rules and the registry scopes it holds (`None` for `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedRules {
    pub name: String,
    pub scopes: Option<Vec<String>>,
    pub rules: Rules,
}

/// The statement whose scopes hold `scope` (`host[:port]/repository`, compared literally), else
/// the `*` statement.
pub fn select<'a>(statements: &'a [ScopedRules], scope: &str) -> Option<&'a ScopedRules> {
    select_by(statements, |s| s.scopes.as_deref(), scope)
}

/// Notation's statement choice over any statement type: the one whose `scopes_of` holds `scope`
/// literally, else the one with no scopes (`*`).
pub fn select_by<'a, T>(
    statements: &'a [T],
    scopes_of: impl Fn(&T) -> Option<&[String]>,
    scope: &str,
) -> Option<&'a T> {
    statements
        .iter()
        .find(|s| scopes_of(s).is_some_and(|v| v.iter().any(|x| x == scope)))
        .or_else(|| statements.iter().find(|s| scopes_of(s).is_none()))
}

/// One envelope verified under one authority (`authority` names it for counting), as a signature
/// outcome: a `Signer::Notation` when the statement's level lets it count.
pub fn outcome(
    authority: &str,
    statement: &ScopedRules,
    envelope: &[u8],
    media_type: &str,
    target: &Target,
    at: jiff::Timestamp,
) -> SignatureOutcome {
    let report = verify(&statement.rules, envelope, media_type, target, at);
    if !report.verified() {
        return SignatureOutcome::Unverified {
            check: report.failed.first().copied().unwrap_or(Check::Signature),
            reason: format!(
                "Notation signature{} under trust policy statement {:?} (level {}): {}",
                if envelope.is_empty() {
                    String::new()
                } else {
                    format!(" {}", super::notation::envelope_digest(envelope))
                },
                statement.name,
                format!("{:?}", statement.rules.level).to_lowercase(),
                report.enforced.join("; ")
            ),
        };
    }
    SignatureOutcome::Valid {
        signers: vec![Signer::Notation {
            authority: authority.to_owned(),
            subject: report.signer.unwrap_or_default(),
            warnings: report.logged,
            revocation_unchecked: report.revocation_unchecked,
            valid_until: report.valid_until,
        }],
        signed_name: None,
    }
}

/// Whether the authentic-timestamp check holds the chain against `at` (no verified timestamp
/// stands in for it).
fn checks_chain_now(rules: &Rules, env: &super::notation::Envelope, at: jiff::Timestamp) -> bool {
    env.scheme == SigningScheme::X509
        && (rules.tsa.is_empty()
            || (!rules.verify_timestamp_always && chain_valid_at(env, at).is_ok()))
}

/// Notation's authentic-timestamp check. `notary.x509.signingAuthority`: the chain is valid at the
/// signing time the signer vouches for. `notary.x509`: without a `tsa` store (or, with
/// `afterCertExpiry`, while the chain is still valid) the chain must be valid at `at`; otherwise
/// an RFC 3161 countersignature over the envelope's signature must verify under a `tsa` store and
/// its time (with its accuracy) must lie within every certificate's validity.
fn authentic_timestamp(
    rules: &Rules,
    env: &super::notation::Envelope,
    at: jiff::Timestamp,
) -> Result<(), String> {
    if env.scheme == SigningScheme::SigningAuthority {
        return chain_valid_at(env, env.signing_time);
    }
    let mut verify_token = !rules.tsa.is_empty();
    if verify_token && !rules.verify_timestamp_always {
        verify_token = chain_valid_at(env, at).is_err();
    }
    if !verify_token {
        return chain_valid_at(env, at);
    }
    let Some(token) = &env.timestamp else {
        return Err(
            "no timestamp countersignature was found, and the trust policy names a tsa store"
                .into(),
        );
    };
    let stamped = timestamp::verify(token, &env.signature, &rules.tsa)?;
    for der in &env.chain {
        let (from, to) = super::notation::validity(der)?;
        if stamped.earliest < from {
            return Err(format!(
                "the timestamp ({} ± {}s) can be before the certificate chain is valid (from {from})",
                stamped.time, stamped.accuracy_seconds
            ));
        }
        if stamped.latest > to {
            return Err(format!(
                "the timestamp ({} ± {}s) can be after the certificate chain expired (at {to})",
                stamped.time, stamped.accuracy_seconds
            ));
        }
    }
    Ok(())
}
