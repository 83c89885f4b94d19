//! `umpire conformance verify-bundle`: the sigstore-conformance client protocol, so the public
//! conformance corpus exercises umpire's own keyless and keyed verification (the entry points the
//! image path calls), not the library beneath it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use sigstore_types::{Bundle, Sha256Hash};

use crate::policy::KeylessAuthority;
use crate::verify::identity::Matcher;
use crate::verify::sigstore::KeyedLog;

/// Bundles larger than this are refused before parsing.
const MAX_BUNDLE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct VerifyBundleArgs {
    /// Use the embedded Sigstore staging trusted root instead of production.
    #[arg(long)]
    pub staging: bool,
    #[arg(long)]
    pub bundle: PathBuf,
    /// Exact certificate identity (SAN) to require.
    #[arg(long)]
    pub certificate_identity: Option<String>,
    /// Exact OIDC issuer to require.
    #[arg(long)]
    pub certificate_oidc_issuer: Option<String>,
    /// Verify with this PEM public key instead of a certificate identity.
    #[arg(long)]
    pub key: Option<PathBuf>,
    #[arg(long)]
    pub trusted_root: Option<PathBuf>,
    /// The artifact's path, or `sha256:<hex>` of it.
    pub artifact: String,
}

fn read_bounded(path: &PathBuf, what: &str) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("{what} {}", path.display()))?
        .len();
    if len > MAX_BUNDLE_BYTES {
        bail!(
            "{what} {} is larger than {MAX_BUNDLE_BYTES} bytes",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Verifies one bundle through the same entry points the image path uses: a [`SigstoreRoot`] built
/// as `trust.sigstore` roots are (CA validity at the signing time, roots refused in bundle chains,
/// TSA-only roots), identity matched by a keyless authority with exact matchers, keys read as
/// `trust.keys` are.
pub fn verify_bundle(args: &VerifyBundleArgs) -> anyhow::Result<()> {
    // Trust enters through `trust/` as a configuration's does (the files bounded first).
    let root_value = match (&args.trusted_root, args.staging) {
        (Some(path), _) => {
            read_bounded(path, "trusted root")?;
            path.display().to_string()
        }
        (None, true) => "staging".to_owned(),
        (None, false) => "embedded".to_owned(),
    };
    if let Some(key) = &args.key {
        read_bounded(key, "key")?;
    }
    let (root, key) = crate::trust::load_for_bundle(&root_value, args.key.as_deref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bundle_json =
        String::from_utf8(read_bounded(&args.bundle, "bundle")?).context("bundle is not UTF-8")?;
    let bundle = Bundle::from_json(&bundle_json).context("bundle")?;

    let digest = match args.artifact.strip_prefix("sha256:") {
        Some(hex) => Some(Sha256Hash::from_hex(hex).context("artifact digest")?),
        None => None,
    };
    let artifact_bytes = match digest {
        Some(_) => Vec::new(),
        None => {
            std::fs::read(&args.artifact).with_context(|| format!("artifact {}", args.artifact))?
        }
    };
    let artifact = || -> sigstore_types::Artifact<'_> {
        match &digest {
            Some(d) => (*d).into(),
            None => artifact_bytes.as_slice().into(),
        }
    };

    match (
        &args.key,
        &args.certificate_identity,
        &args.certificate_oidc_issuer,
    ) {
        (Some(_), _, _) => {
            let key = key.context("key not loaded")?;
            let spki = key
                .spki_der()
                .context("key has no SubjectPublicKeyInfo form")?;
            // The corpus's keyed cases carry log entries, and a client must verify them: as a
            // `transparency_log: required` authority does.
            let log = if root.has_tlogs() {
                KeyedLog::Verify
            } else {
                KeyedLog::NotRequired
            };
            root.verify_keyed(&bundle, artifact(), spki, log)
                .map_err(|f| {
                    anyhow::anyhow!(
                        "{}: {}",
                        crate::policy::finding_code(f.check).as_str(),
                        f.reason
                    )
                })?;
        }
        (None, Some(identity), Some(issuer)) => {
            let signer = root.verify_keyless(&bundle, artifact()).map_err(|f| {
                anyhow::anyhow!(
                    "{}: {}",
                    crate::policy::finding_code(f.check).as_str(),
                    f.reason
                )
            })?;
            let authority = KeylessAuthority {
                trust: root.name.clone(),
                issuer: Matcher::Exact(issuer.clone()),
                subject: Matcher::Exact(identity.clone()),
                claims: Vec::new(),
            };
            if let Some(why) = authority.mismatch(&signer) {
                bail!("IDENTITY_MISMATCH: {why}");
            }
        }
        _ => bail!("give --key, or both --certificate-identity and --certificate-oidc-issuer"),
    }
    Ok(())
}
