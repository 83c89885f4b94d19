//! Certificate chains that arrive with a signature: they may carry intermediates, never a root.
//! Roots come only from the configured trusted root; a self-signed certificate in the chain that
//! travels with a signature is refused, whatever else would verify (`bundle-with-root-cert`).

use x509_parser::prelude::{FromDer, X509Certificate};

/// True when any of `ders` is self-signed (its subject is its issuer), or unreadable.
pub fn carries_root<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> bool {
    ders.into_iter()
        .any(|der| match X509Certificate::from_der(der) {
            Ok((_, cert)) => cert.subject().as_raw() == cert.issuer().as_raw(),
            Err(_) => true,
        })
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
        assert!(carries_root([ca.der().as_ref()]));
        assert!(!carries_root([leaf.der().as_ref()]));
        assert!(carries_root([leaf.der().as_ref(), ca.der().as_ref()]));
    }

    #[test]
    fn unreadable_certificates_count_as_roots() {
        assert!(carries_root([b"junk".as_slice()]));
        assert!(!carries_root(std::iter::empty::<&[u8]>()));
    }
}
