use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The RSA key sizes generated: 2048, 3072 or 4096 bits.
pub fn check_key_bits(bits: usize) -> anyhow::Result<()> {
    if !matches!(bits, 2048 | 3072 | 4096) {
        anyhow::bail!("key size must be 2048, 3072 or 4096 bits");
    }
    Ok(())
}

/// What generating a key of `bits` takes, said before it starts.
pub fn generation_notice(bits: usize) -> String {
    let takes = match bits {
        0..=2048 => "a few seconds",
        2049..=3072 => "~5 s",
        _ => "~15 s, longer in a debug build",
    };
    format!("generating a {bits}-bit RSA signing key (takes {takes})…")
}

/// Generates an RSA private key with the `rsa` crate; PKCS#8 PEM.
/// Key generation only: signing uses aws-lc-rs (see `Signer`).
pub fn generate_private_key_pem(bits: usize) -> anyhow::Result<String> {
    check_key_bits(bits)?;
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

    /// Reads a file of the signing keys folder: a PKCS#8 PEM RSA private key
    /// (`-----BEGIN PRIVATE KEY-----`). The error says what the file holds
    /// instead and how to fix it: `not a PKCS#8 RSA private key (found …)`.
    pub fn from_private_pem(bytes: &[u8]) -> Result<Self, String> {
        let parsed = std::str::from_utf8(bytes)
            .ok()
            .filter(|pem| pem_label(pem) == Some("PRIVATE KEY"))
            .map(RsaPrivateKey::from_pkcs8_pem);
        match parsed {
            Some(Ok(key)) => Ok(Self::from_rsa(&key.to_public_key())),
            Some(Err(e)) => Err(format!(
                "not a PKCS#8 RSA private key (found a PKCS#8 private key that is not RSA or is damaged: {e})"
            )),
            None => {
                let found = describe_pem(bytes);
                let hint = if found == "a public key" || found == "a certificate" {
                    "; the signing keys folder holds private keys only"
                } else {
                    ""
                };
                Err(format!(
                    "not a PKCS#8 RSA private key (found {found}){hint}"
                ))
            }
        }
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

/// The label of the first PEM block (`PRIVATE KEY`, `PUBLIC KEY`, …).
fn pem_label(pem: &str) -> Option<&str> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &pem[start..];
    rest.find("-----").map(|end| &rest[..end])
}

/// What a file that should hold a PEM key holds, for an error message,
/// with the way to fix it where there is one.
pub fn describe_pem(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "an empty file".into();
    }
    let Some(pem) = std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.contains('\0'))
    else {
        return "binary data, not PEM text".into();
    };
    match pem_label(pem) {
        None => "text without a -----BEGIN …----- PEM block".into(),
        Some("RSA PRIVATE KEY") => "a PKCS#1 RSA private key; convert it with \
            `openssl pkcs8 -topk8 -nocrypt -in OLD.pem -out NEW.pem`"
            .into(),
        Some("ENCRYPTED PRIVATE KEY") => {
            "an encrypted private key; store it unencrypted (mode 0600)".into()
        }
        Some("EC PRIVATE KEY") => "an EC private key; signing keys are RSA".into(),
        Some("PUBLIC KEY" | "RSA PUBLIC KEY") => "a public key".into(),
        Some("CERTIFICATE") => "a certificate".into(),
        Some(other) => format!("a PEM block labelled {other:?}"),
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
    fn from_private_pem_says_what_the_file_holds() {
        let pem = generate_private_key_pem(2048).unwrap();
        let public = PublicKey::from_private_pem(pem.as_bytes()).unwrap();
        assert_eq!(public.kid, PublicKey::from_pem(&pem).unwrap().kid);
        let key = RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::EncodePublicKey;
        let pkcs1 = key.to_pkcs1_pem(LineEnding::LF).unwrap();
        let spki = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        for (bytes, found) in [
            (b"garbage\n".to_vec(), "text without a -----BEGIN"),
            (vec![0u8, 159, 146, 150], "binary data"),
            (Vec::new(), "an empty file"),
            (
                pkcs1.as_bytes().to_vec(),
                "a PKCS#1 RSA private key; convert it",
            ),
            (spki.into_bytes(), "a public key"),
            (
                pem.replace("MII", "MIX").into_bytes(),
                "a PKCS#8 private key that is not RSA or is damaged",
            ),
        ] {
            let error = PublicKey::from_private_pem(&bytes).unwrap_err();
            assert!(
                error.starts_with("not a PKCS#8 RSA private key (found "),
                "{error}"
            );
            assert!(error.contains(found), "{found}: {error}");
        }
    }

    #[test]
    fn generate_rejects_weak_key_size() {
        assert!(generate_private_key_pem(1024).is_err());
    }
}
