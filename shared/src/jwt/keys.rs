use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Generates an RSA private key with the `rsa` crate; PKCS#8 PEM.
/// Key generation only: signing uses aws-lc-rs (see `Signer`).
pub fn generate_private_key_pem(bits: usize) -> anyhow::Result<String> {
    if !matches!(bits, 2048 | 3072 | 4096) {
        anyhow::bail!("key size must be 2048, 3072 or 4096 bits");
    }
    let mut rng = rsa::rand_core::OsRng;
    let key = RsaPrivateKey::new(&mut rng, bits).context("generating RSA key")?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding PKCS#8 PEM")?;
    Ok(pem.to_string())
}

/// The public half of a signing key, with its RFC 7638 thumbprint as `kid`.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub kid: String,
    /// Base64url modulus and exponent.
    pub n: String,
    pub e: String,
    pub bits: usize,
}

impl PublicKey {
    pub fn from_rsa(key: &RsaPublicKey) -> Self {
        let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        Self {
            kid: thumbprint(&n, &e),
            bits: key.n().bits(),
            n,
            e,
        }
    }

    /// Reads a PEM: PKCS#8 private key, SPKI public key or PKCS#1 public key.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        if pem.contains("PRIVATE KEY") {
            let key = RsaPrivateKey::from_pkcs8_pem(pem).context("not a PKCS#8 RSA private key")?;
            return Ok(Self::from_rsa(&key.to_public_key()));
        }
        let key = RsaPublicKey::from_public_key_pem(pem)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
            .context("not an RSA public key")?;
        Ok(Self::from_rsa(&key))
    }

    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kty: "RSA".into(),
            kid: self.kid.clone(),
            use_: Some("sig".into()),
            alg: Some("RS256".into()),
            n: self.n.clone(),
            e: self.e.clone(),
        }
    }
}

/// RFC 7638 JWK thumbprint of an RSA key: SHA-256 over the required members
/// in lexicographic order, base64url.
pub fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// One RFC 7517 key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: String,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default)]
    pub n: String,
    #[serde(default)]
    pub e: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn from_pem_reads_private_and_derives_same_kid_as_public() {
        let pem = generate_private_key_pem(2048).unwrap();
        let from_private = PublicKey::from_pem(&pem).unwrap();
        let key = RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
        use rsa::pkcs8::EncodePublicKey;
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let from_public = PublicKey::from_pem(&public_pem).unwrap();
        assert_eq!(from_private.kid, from_public.kid);
        assert_eq!(from_private.bits, 2048);
    }

    #[test]
    fn generate_rejects_weak_key_size() {
        assert!(generate_private_key_pem(1024).is_err());
    }
}
