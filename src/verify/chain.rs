//! Certificate chains that arrive with a signature. Trust never comes from them: roots come only
//! from the configured trusted root. Real v0.1 bundles (npm provenance from 2023, cosign `.att`
//! layers turned into bundles) carry leaf, intermediate and root in order, and sigstore-python and
//! sigstore-js verify them; so a chain may end with a self-signed certificate byte-identical to a
//! CA certificate of the trusted root. A self-signed certificate anywhere else, one the trusted
//! root does not hold, or a chain out of order is refused (`bundle-with-root-cert`).

use x509_parser::prelude::{FromDer, X509Certificate};

/// Whether `chain` (leaf first) may travel with a signature: each certificate issued by the next
/// (by name), and a self-signed certificate only last and only if `trusted` holds its exact bytes.
pub fn check_travelling(chain: &[Vec<u8>], trusted: impl Fn(&[u8]) -> bool) -> Result<(), String> {
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
            format!(
                "certificate {} of the bundle's chain is unreadable: {e}",
                i + 1
            )
        })?;
        parsed.push(cert);
    }
    for (i, cert) in parsed.iter().enumerate() {
        let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
        if i > 0 && self_signed {
            if i + 1 != parsed.len() {
                return Err(format!(
                    "the bundle's certificate chain carries a self-signed certificate ({}) before its end; roots come only from the trusted root",
                    cert.subject()
                ));
            }
            if !trusted(&chain[i]) {
                return Err(format!(
                    "the bundle's certificate chain ends with a self-signed certificate ({}) that is not a CA certificate of the trusted root; roots come only from the trusted root",
                    cert.subject()
                ));
            }
        }
    }
    for (i, cert) in parsed.iter().enumerate() {
        if let Some(next) = parsed.get(i + 1)
            && cert.issuer().as_raw() != next.subject().as_raw()
        {
            return Err(format!(
                "the bundle's certificate chain is out of order: certificate {} is issued by {}, but the next one is {}",
                i + 1,
                cert.issuer(),
                next.subject()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_a_root_and_an_issued_one_is_not() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test root");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf_params = rcgen::CertificateParams::new(vec!["leaf".into()]).unwrap();
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "leaf");
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let untrusted = |_: &[u8]| false;
        assert!(check_travelling(&[leaf.der().to_vec()], untrusted).is_ok());
        assert!(check_travelling(&[leaf.der().to_vec(), ca.der().to_vec()], untrusted).is_err());
    }

    #[test]
    fn a_chain_may_end_with_a_trusted_root_in_order_only() {
        let make_ca = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let cert = params.self_signed(&key).unwrap();
            (cert, rcgen::Issuer::new(params, key))
        };
        let (root, root_issuer) = make_ca("root");
        let (other_root, _) = make_ca("other root");
        let inter_key = rcgen::KeyPair::generate().unwrap();
        let mut inter_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        inter_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        inter_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "intermediate");
        let inter = inter_params.signed_by(&inter_key, &root_issuer).unwrap();
        let inter_issuer = rcgen::Issuer::new(inter_params, inter_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf_params = rcgen::CertificateParams::new(vec!["leaf".into()]).unwrap();
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "leaf");
        let leaf = leaf_params.signed_by(&leaf_key, &inter_issuer).unwrap();
        let der = |c: &rcgen::Certificate| c.der().to_vec();
        let trusted_root = der(&root);
        let trusted = |d: &[u8]| d == trusted_root.as_slice();
        assert!(check_travelling(&[der(&leaf)], trusted).is_ok());
        assert!(check_travelling(&[der(&leaf), der(&inter)], trusted).is_ok());
        assert!(check_travelling(&[der(&leaf), der(&inter), der(&root)], trusted).is_ok());
        // The root in the middle, a root the trusted root does not hold, out of order.
        assert!(check_travelling(&[der(&leaf), der(&root), der(&inter)], trusted).is_err());
        assert!(check_travelling(&[der(&leaf), der(&inter), der(&other_root)], trusted).is_err());
        assert!(check_travelling(&[der(&leaf), der(&root)], trusted).is_err());
        assert!(check_travelling(&[der(&leaf), der(&inter), der(&root)], |_| false).is_err());
        assert!(check_travelling(&[der(&leaf), b"junk".to_vec()], trusted).is_err());
    }

    #[test]
    fn unreadable_certificates_count_as_roots() {
        assert!(check_travelling(&[b"junk".to_vec()], |_| true).is_err());
        assert!(check_travelling(&[], |_| true).is_ok());
    }
}
