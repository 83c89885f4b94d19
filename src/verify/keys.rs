//! Public keys for keyed verification: PEM `PUBLIC KEY` (SubjectPublicKeyInfo) for ECDSA P-256/P-384,
//! Ed25519 and RSA, plus PKCS#1 `RSA PUBLIC KEY`. Signature checks use aws-lc-rs.

use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not PEM: {0}")]
    NotPem(String),
    #[error("PEM block is {0:?}; expected PUBLIC KEY or RSA PUBLIC KEY")]
    WrongPemTag(String),
    #[error(
        "unsupported or malformed public key (ECDSA P-256/P-384, Ed25519 and RSA 2048-8192 are supported)"
    )]
    Unsupported,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa,
}

impl KeyKind {
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::EcdsaP384 => "ECDSA P-384",
            KeyKind::Ed25519 => "Ed25519",
            KeyKind::Rsa => "RSA",
        }
    }
}

/// A parsed public key together with the signature algorithms umpire accepts for it.
pub struct PublicKey {
    kind: KeyKind,
    /// SubjectPublicKeyInfo DER, when the key came as one (not for PKCS#1 RSA keys).
    spki_der: Option<Vec<u8>>,
    /// One parsed key per accepted algorithm (e.g. P-384 over SHA-384 and over SHA-256).
    verifiers: Vec<ParsedPublicKey>,
    /// The key itself, whatever its encoding: the SPKI's key bits (for RSA, the PKCS#1 key).
    material: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.kind.name())
    }
}

type Candidate = (KeyKind, &'static [&'static dyn VerificationAlgorithm]);

/// Tried in order; aws-lc-rs rejects a key whose type or curve does not fit the algorithm.
const CANDIDATES: &[Candidate] = &[
    (KeyKind::EcdsaP256, &[&signature::ECDSA_P256_SHA256_ASN1]),
    // P-384: SHA-384 per the Sigstore algorithm registry, SHA-256 as cosign signs keyed by default.
    (
        KeyKind::EcdsaP384,
        &[
            &signature::ECDSA_P384_SHA384_ASN1,
            &signature::ECDSA_P384_SHA256_ASN1,
        ],
    ),
    (KeyKind::Ed25519, &[&signature::ED25519]),
    (
        KeyKind::Rsa,
        &[
            &signature::RSA_PKCS1_2048_8192_SHA256,
            &signature::RSA_PSS_2048_8192_SHA256,
        ],
    ),
];

impl PublicKey {
    pub fn from_pem(pem_text: &[u8]) -> Result<Self, KeyError> {
        let block = pem::parse(pem_text).map_err(|e| KeyError::NotPem(e.to_string()))?;
        match block.tag() {
            "PUBLIC KEY" => Self::from_spki_der(block.contents()),
            "RSA PUBLIC KEY" => {
                Self::from_candidate(&CANDIDATES[3], block.contents()).map(|mut k| {
                    k.spki_der = None;
                    k.material = block.contents().to_vec();
                    k
                })
            }
            other => Err(KeyError::WrongPemTag(other.to_owned())),
        }
    }

    /// From DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        CANDIDATES
            .iter()
            .find_map(|c| Self::from_candidate(c, der).ok())
            .ok_or(KeyError::Unsupported)
    }

    fn from_candidate((kind, algorithms): &Candidate, der: &[u8]) -> Result<Self, KeyError> {
        let verifiers = algorithms
            .iter()
            .map(|alg| ParsedPublicKey::new(*alg, der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| KeyError::Unsupported)?;
        use x509_parser::prelude::FromDer;
        let material = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
            .map(|(_, spki)| spki.subject_public_key.data.to_vec())
            .unwrap_or_else(|_| der.to_vec());
        Ok(Self {
            kind: *kind,
            spki_der: Some(der.to_vec()),
            verifiers,
            material,
        })
    }

    /// The key material, the same for one key in any encoding (SPKI or PKCS#1 for RSA).
    pub fn material(&self) -> &[u8] {
        &self.material
    }

    pub fn spki_der(&self) -> Option<&[u8]> {
        self.spki_der.as_deref()
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// True when `signature` is a valid signature of `message` under this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifiers
            .iter()
            .any(|v| v.verify_sig(message, signature).is_ok())
    }
}

#[cfg(test)]
pub(crate) mod test_keys {
    //! Key generation for unit tests (test-only: private keys never exist in umpire itself).
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    pub fn pem(der: &[u8]) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", der.to_vec()))
    }

    pub struct Ecdsa(pub EcdsaKeyPair);

    impl Ecdsa {
        pub fn p256() -> Self {
            Self(EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap())
        }
        pub fn p384() -> Self {
            Self(EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_ASN1_SIGNING).unwrap())
        }
        pub fn public_pem(&self) -> String {
            pem(self.0.public_key().as_der().unwrap().as_ref())
        }
        pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
            self.0
                .sign(&SystemRandom::new(), msg)
                .unwrap()
                .as_ref()
                .to_vec()
        }
    }

    pub fn ed25519() -> Ed25519KeyPair {
        Ed25519KeyPair::generate().unwrap()
    }

    pub fn ed25519_pem(k: &Ed25519KeyPair) -> String {
        pem(k.public_key().as_der().unwrap().as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::*;
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{KeyPair, RsaKeyPair};

    #[test]
    fn ecdsa_p256_and_p384_verify_and_reject_tampering() {
        for k in [Ecdsa::p256(), Ecdsa::p384()] {
            let key = PublicKey::from_pem(k.public_pem().as_bytes()).unwrap();
            let sig = k.sign(b"payload");
            assert!(key.verify(b"payload", &sig));
            assert!(!key.verify(b"payloaD", &sig));
        }
        let k = Ecdsa::p384();
        assert_eq!(
            PublicKey::from_pem(k.public_pem().as_bytes())
                .unwrap()
                .kind(),
            KeyKind::EcdsaP384
        );
    }

    #[test]
    fn ed25519_verifies() {
        let k = ed25519();
        let key = PublicKey::from_pem(ed25519_pem(&k).as_bytes()).unwrap();
        assert_eq!(key.kind(), KeyKind::Ed25519);
        assert!(key.verify(b"m", k.sign(b"m").as_ref()));
        assert!(!key.verify(b"n", k.sign(b"m").as_ref()));
    }

    #[test]
    fn rsa_pkcs1_sha256_verifies() {
        let k = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let pem_text = pem(k.public_key().as_der().unwrap().as_ref());
        let key = PublicKey::from_pem(pem_text.as_bytes()).unwrap();
        assert_eq!(key.kind(), KeyKind::Rsa);
        let mut sig = vec![0; k.public_modulus_len()];
        k.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            b"m",
            &mut sig,
        )
        .unwrap();
        assert!(key.verify(b"m", &sig));
        assert!(!key.verify(b"x", &sig));
    }

    #[test]
    fn rejects_non_keys() {
        assert!(matches!(
            PublicKey::from_pem(b"hello"),
            Err(KeyError::NotPem(_))
        ));
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        assert_eq!(
            PublicKey::from_pem(cert.as_bytes()).unwrap_err(),
            KeyError::WrongPemTag("CERTIFICATE".into())
        );
        let junk = pem::encode(&pem::Pem::new("PUBLIC KEY", vec![0x30, 0x03, 1, 2, 3]));
        assert_eq!(
            PublicKey::from_pem(junk.as_bytes()).unwrap_err(),
            KeyError::Unsupported
        );
    }
}
