//! The mesh's certificate authority: one CA per meshsim, one workload
//! certificate per service account, as istiod's CA would issue them.
//!
//! Sidecars authenticate each other with these certificates (mTLS), so
//! Envoy's RBAC sees real peer identities: the URI SAN
//! `spiffe://cluster.local/ns/NS/sa/SA`, from which the listener sets the
//! `io.istio.peer_principal` filter state that Istio's principal and
//! namespace matchers read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use meshpolicy::workload::DEFAULT_TRUST_DOMAIN as TRUST_DOMAIN;

/// A certificate could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("minting a certificate: {0}")]
pub struct CertError(String);

fn e(x: rcgen::Error) -> CertError {
    CertError(x.to_string())
}

/// One workload identity: PEM certificate chain and key.
#[derive(Debug, Clone)]
pub struct Identity {
    pub spiffe: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

/// The CA and the identities it issued so far.
pub struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    issued: Mutex<HashMap<(String, String), Arc<Identity>>>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

impl Pki {
    /// A fresh CA.
    pub fn new() -> Result<Self, CertError> {
        let key = KeyPair::generate().map_err(e)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, TRUST_DOMAIN);
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).map_err(e)?;
        Ok(Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            issued: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate (PEM), every sidecar's trust anchor.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The identity of `namespace/service_account`, minted on first use.
    pub fn identity(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<Arc<Identity>, CertError> {
        let key = (namespace.to_string(), service_account.to_string());
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = issued.get(&key) {
            return Ok(id.clone());
        }
        let spiffe = format!("spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}");
        let kp = KeyPair::generate().map_err(e)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        params.subject_alt_names = vec![SanType::URI(
            spiffe.clone().try_into().map_err(|x: rcgen::Error| e(x))?,
        )];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = params.signed_by(&kp, &self.issuer).map_err(e)?;
        let id = Arc::new(Identity {
            spiffe,
            cert_pem: format!("{}{}", cert.pem(), self.ca_pem),
            key_pem: kp.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: kp.serialize_der(),
        });
        issued.insert(key, id.clone());
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_certificate_per_service_account() {
        let pki = Pki::new().unwrap();
        let a = pki.identity("ns1", "sa1").unwrap();
        let b = pki.identity("ns1", "sa1").unwrap();
        let c = pki.identity("ns1", "other").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_ne!(a.cert_der, c.cert_der);
        assert_eq!(a.spiffe, "spiffe://cluster.local/ns/ns1/sa/sa1");
        assert!(a.cert_pem.contains("BEGIN CERTIFICATE"));
    }
}
