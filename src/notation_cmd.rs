//! `umpire notation verify-envelope`: one Notation envelope checked offline against a target
//! descriptor, a Notation trust policy document and trust store folder, as a team's `notation
//! verify` would use them. A debugging command, like `conformance verify-bundle`.

use std::path::PathBuf;

use anyhow::Context;

use crate::trust::notation::{Report, parse_trust_policy, statement_for, verify_envelope};
use crate::verify::notation::Target;

/// Envelopes larger than this are refused before parsing.
const MAX_ENVELOPE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct VerifyEnvelopeArgs {
    #[arg(long)]
    pub envelope: PathBuf,
    /// application/jose+json or application/cose.
    #[arg(long)]
    pub media_type: String,
    /// The target manifest's digest, `sha256:<hex>`.
    #[arg(long)]
    pub target_digest: String,
    #[arg(long)]
    pub target_size: u64,
    #[arg(long)]
    pub target_media_type: String,
    /// A Notation trust policy document (version 1.0).
    #[arg(long)]
    pub trust_policy: PathBuf,
    /// The folder that holds `x509/{ca,signingAuthority,tsa}/<name>/`.
    #[arg(long)]
    pub trust_store: PathBuf,
    /// The artifact reference whose `host[:port]/repository` chooses the policy statement.
    #[arg(long)]
    pub scope: String,
    /// The verification time (RFC 3339) instead of now, for test data whose certificates expired.
    #[arg(long)]
    pub at: Option<String>,
}

/// `host[:port]/repository` of a reference: its tag or digest dropped.
pub fn scope_of(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rsplit_once('/') {
        Some((head, last)) => match last.split_once(':') {
            Some((name, _tag)) => &without_digest[..head.len() + 1 + name.len()],
            None => without_digest,
        },
        None => without_digest,
    }
}

/// Bad input is an error (exit 2); a verdict is a report (exit 0 or 1).
pub fn verify_envelope_cmd(args: &VerifyEnvelopeArgs) -> anyhow::Result<Report> {
    let len = std::fs::metadata(&args.envelope)
        .with_context(|| format!("envelope {}", args.envelope.display()))?
        .len();
    anyhow::ensure!(
        len <= MAX_ENVELOPE_BYTES,
        "envelope {} is larger than {MAX_ENVELOPE_BYTES} bytes",
        args.envelope.display()
    );
    let envelope = std::fs::read(&args.envelope)
        .with_context(|| format!("reading envelope {}", args.envelope.display()))?;
    let policy = std::fs::read_to_string(&args.trust_policy)
        .with_context(|| format!("trust policy {}", args.trust_policy.display()))?;
    let statements = parse_trust_policy(&policy)
        .with_context(|| format!("trust policy {}", args.trust_policy.display()))?;
    let at = match &args.at {
        Some(t) => t
            .parse::<jiff::Timestamp>()
            .with_context(|| format!("--at {t:?} is not an RFC 3339 time"))?,
        None => jiff::Timestamp::now(),
    };
    let scope = scope_of(&args.scope);
    let Some(statement) = statement_for(&statements, scope) else {
        return Ok(Report {
            enforced: vec![format!(
                "no trust policy statement applies to scope {scope:?}"
            )],
            ..Report::default()
        });
    };
    let target = Target {
        media_type: args.target_media_type.clone(),
        digest: args.target_digest.clone(),
        size: args.target_size,
    };
    Ok(verify_envelope(
        statement,
        &args.trust_store,
        &envelope,
        &args.media_type,
        &target,
        at,
    )?)
}

#[cfg(test)]
mod tests {
    use super::scope_of;

    #[test]
    fn scopes_drop_tags_and_digests_only() {
        assert_eq!(
            scope_of("localhost:5000/e2e@sha256:ab"),
            "localhost:5000/e2e"
        );
        assert_eq!(scope_of("localhost:5000/e2e:v1"), "localhost:5000/e2e");
        assert_eq!(scope_of("localhost:5000/a/b"), "localhost:5000/a/b");
        assert_eq!(
            scope_of("registry.acme-rockets.io/software/net-monitor"),
            "registry.acme-rockets.io/software/net-monitor"
        );
    }
}
