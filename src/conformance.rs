//! `umpire conformance verify-bundle`: the sigstore-conformance client protocol, so the public
//! conformance corpus can exercise the same Sigstore verification umpire uses for images.

use std::path::PathBuf;

use anyhow::{Context, bail};
use sigstore_trust_root::{
    SIGSTORE_PRODUCTION_TRUSTED_ROOT, SIGSTORE_STAGING_TRUSTED_ROOT, TrustedRoot,
};
use sigstore_types::{Bundle, DerPublicKey, Sha256Hash};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

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

pub fn verify_bundle(args: &VerifyBundleArgs) -> anyhow::Result<()> {
    let root = match (&args.trusted_root, args.staging) {
        (Some(path), _) => TrustedRoot::from_file(path)
            .with_context(|| format!("trusted root {}", path.display()))?,
        (None, true) => TrustedRoot::from_json(SIGSTORE_STAGING_TRUSTED_ROOT)?,
        (None, false) => TrustedRoot::from_json(SIGSTORE_PRODUCTION_TRUSTED_ROOT)?,
    };
    let verifier = Verifier::new(&root).context("trusted root")?;
    let bundle_json =
        String::from_utf8(read_bounded(&args.bundle, "bundle")?).context("bundle is not UTF-8")?;
    let bundle = Bundle::from_json(&bundle_json).context("bundle")?;

    let digest = match args.artifact.strip_prefix("sha256:") {
        Some(hex) => Some(Sha256Hash::from_hex(hex).context("artifact digest")?),
        None => None,
    };
    let artifact_bytes;
    let artifact: sigstore_types::Artifact<'_> = match digest {
        Some(d) => d.into(),
        None => {
            artifact_bytes = std::fs::read(&args.artifact)
                .with_context(|| format!("artifact {}", args.artifact))?;
            artifact_bytes.as_slice().into()
        }
    };

    match (
        &args.key,
        &args.certificate_identity,
        &args.certificate_oidc_issuer,
    ) {
        (Some(key), _, _) => {
            let pem = String::from_utf8(read_bounded(key, "key")?).context("key is not UTF-8")?;
            let key = DerPublicKey::from_pem(&pem).context("key")?;
            verifier.verify(artifact, &bundle, &PublicKeyVerificationPolicy::new(key))?;
        }
        (None, Some(identity), Some(issuer)) => {
            verifier.verify(
                artifact,
                &bundle,
                &VerificationPolicy::new(identity.as_str(), issuer.as_str()),
            )?;
        }
        _ => bail!("give --key, or both --certificate-identity and --certificate-oidc-issuer"),
    }
    Ok(())
}
