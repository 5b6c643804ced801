//! Test certificates for the TLS tests: a throw-away CA and server
//! certificates it signs (rcgen, ECDSA P-256), written as PEM files.
#![allow(clippy::expect_used)]

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// The names every test server certificate is valid for.
pub const SERVER_NAMES: &[&str] = &["127.0.0.1", "localhost"];

/// A test CA that signs server certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate (leaf only) and its private key, as PEM.
#[derive(Clone)]
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// The leaf certificate's DER, to compare with what a client saw.
    pub cert_der: Vec<u8>,
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert").finish_non_exhaustive()
    }
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "Portcullis test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        Self { issuer }
    }

    /// The CA certificate, PEM (what a client trusts).
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A fresh key and a certificate for [`SERVER_NAMES`] signed by this CA.
    pub fn server_cert(&self) -> ServerCert {
        let names: Vec<String> = SERVER_NAMES.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "portcullis test server");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerCert {
    /// Writes the certificate and the key to `cert` and `key`, each through
    /// a temporary file renamed into place (as certificate renewal tools
    /// do), so that a reader never sees half a file.
    pub fn write(&self, cert: &Path, key: &Path) -> std::io::Result<()> {
        replace(cert, self.cert_pem.as_bytes())?;
        replace(key, self.key_pem.as_bytes())
    }
}

/// Replaces `path` with `contents` atomically (write aside, then rename).
pub fn replace(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".new");
    std::fs::write(&aside, contents)?;
    std::fs::rename(&aside, path)
}
