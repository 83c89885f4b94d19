//! Trust material: the configured keys and Sigstore roots, read from the configuration's values
//! (inline PEM, `embedded`, `github`, `tuf`, or a file) into one `TrustSet` by `load` alone, with
//! every byte recorded for the cache keys. `tuf` refreshes `trust.sigstore.<name>: tuf` roots,
//! scheduled by `service`.

pub mod notation;
pub mod tuf;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::verify::keys::PublicKey;
use crate::verify::sigstore::SigstoreRoot;
use tuf::TufSettings;

/// Every key and root a configuration trusts.
pub struct TrustSet {
    pub keys: BTreeMap<String, Arc<PublicKey>>,
    pub sigstore: BTreeMap<String, Arc<SigstoreRoot>>,
    /// The roots written `tuf`, refreshed in the background.
    pub tuf_roots: Vec<String>,
    /// `(config key, bytes)` of every piece of trust material, in load order: what a verdict
    /// depends on.
    pub material: Vec<(String, Vec<u8>)>,
    /// A root with no authorities: keyed bundles that need no transparency log verify under it.
    pub offline: Arc<SigstoreRoot>,
}

/// A piece of trust material that could not be loaded, by its config key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TrustError {
    pub key: String,
    pub message: String,
}

/// Loads `trust.sigstore` (`embedded`, `github`, `tuf` or a path) and `trust.keys` (inline PEM or a
/// path); `path_of` resolves a configured path against the configuration's folder.
pub fn load(
    keys: &BTreeMap<String, String>,
    sigstore: &BTreeMap<String, String>,
    tuf: &TufSettings,
    path_of: impl Fn(&str) -> PathBuf,
) -> Result<TrustSet, TrustError> {
    let bad = |key: &str, message: String| TrustError {
        key: key.to_owned(),
        message,
    };
    let mut set = TrustSet {
        keys: BTreeMap::new(),
        sigstore: BTreeMap::new(),
        tuf_roots: Vec::new(),
        material: Vec::new(),
        offline: Arc::new(SigstoreRoot::offline()),
    };
    for (name, value) in sigstore {
        let key = format!("trust.sigstore.{name}");
        let json = match value.as_str() {
            "tuf" => {
                set.tuf_roots.push(name.clone());
                tuf::ensure_private_dir(&tuf.cache_dir)
                    .map_err(|e| bad("trust.tuf.cache_dir", e))?;
                tuf::current_json(tuf, name)
            }
            "embedded" => sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT.to_owned(),
            // Sigstore's staging instance (for testing signers against it).
            "staging" => sigstore_trust_root::SIGSTORE_STAGING_TRUSTED_ROOT.to_owned(),
            // GitHub's own instance (private-repository artifact attestations): no transparency
            // log, no CT log, signing times from its TSAs. Air-gapped updates use a path to a
            // newer copy, reloaded on SIGHUP like any file.
            "github" => sigstore_trust_root::SIGSTORE_GITHUB_TRUSTED_ROOT.to_owned(),
            path => {
                let path = path_of(path);
                std::fs::read_to_string(&path)
                    .map_err(|e| bad(&key, format!("cannot read {}: {e}", path.display())))?
            }
        };
        let root = SigstoreRoot::from_json(name, &json).map_err(|e| bad(&key, e))?;
        set.material.push((key, json.into_bytes()));
        set.sigstore.insert(name.clone(), Arc::new(root));
    }
    for (name, value) in keys {
        let key = format!("trust.keys.{name}");
        let (pem, from) = if value.trim_start().starts_with("-----BEGIN") {
            (value.clone().into_bytes(), "the inline value".to_owned())
        } else {
            let path = path_of(value);
            let bytes = std::fs::read(&path)
                .map_err(|e| bad(&key, format!("cannot read {}: {e}", path.display())))?;
            (bytes, path.display().to_string())
        };
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN ") {
            return Err(bad(
                &key,
                format!(
                    "no PEM block found in {from}: expected a public key (-----BEGIN PUBLIC KEY-----)"
                ),
            ));
        }
        let parsed = PublicKey::from_pem(&pem).map_err(|e| bad(&key, format!("{from}: {e}")))?;
        // One signer under two names would count twice toward a threshold.
        if let Some((other, _)) = set
            .keys
            .iter()
            .find(|(_, k)| k.material() == parsed.material())
        {
            return Err(bad(
                &key,
                format!(
                    "is the same key as trust.keys.{other}; one key under two names would count twice toward a threshold"
                ),
            ));
        }
        set.material.push((key, pem));
        set.keys.insert(name.clone(), Arc::new(parsed));
    }
    Ok(set)
}

/// The trust of one bundle check (`umpire conformance verify-bundle`), read as a configuration's:
/// a Sigstore root (`embedded`, `staging`, `github` or a path) and, for keyed bundles, a key file.
pub fn load_for_bundle(
    root: &str,
    key: Option<&std::path::Path>,
) -> Result<(Arc<SigstoreRoot>, Option<Arc<PublicKey>>), TrustError> {
    let sigstore = BTreeMap::from([("conformance".to_owned(), root.to_owned())]);
    let keys: BTreeMap<String, String> = key
        .map(|k| ("key".to_owned(), k.display().to_string()))
        .into_iter()
        .collect();
    let mut set = load(&keys, &sigstore, &TufSettings::default(), |p| {
        PathBuf::from(p)
    })?;
    let root = set
        .sigstore
        .remove("conformance")
        .ok_or_else(|| TrustError {
            key: "trusted root".into(),
            message: "not loaded".into(),
        })?;
    Ok((root, set.keys.remove("key")))
}
