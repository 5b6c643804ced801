use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::ACCESS_TOKEN_TYP;
use super::keys::PublicKey;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("invalid private key: {0}")]
    Key(String),
    #[error("claims could not be encoded")]
    Encode(#[from] serde_json::Error),
    #[error("signing failed")]
    Sign,
    /// No key may sign now (the one the authorization server's database
    /// names is not loaded): a 503, not a bug.
    #[error("no usable signing key")]
    Unavailable,
}

/// An RS256 signer holding the private key parsed once (aws-lc-rs), so that a
/// signature costs one RSA operation and no key parsing.
pub struct Signer {
    key_pair: RsaKeyPair,
    public: PublicKey,
    header_b64: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

impl Signer {
    /// From a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<Self, SignError> {
        let public = PublicKey::from_pem(pem).map_err(|e| SignError::Key(e.to_string()))?;
        let der = pem_to_der(pem).ok_or_else(|| SignError::Key("not a PEM document".into()))?;
        let key_pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| SignError::Key(e.to_string()))?;
        let header = Header {
            alg: "RS256",
            typ: ACCESS_TOKEN_TYP,
            kid: &public.kid,
        };
        let header_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        Ok(Self {
            key_pair,
            public,
            header_b64,
            rng: SystemRandom::new(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs any serialisable claims as a compact JWS with header
    /// `{"alg":"RS256","typ":"at+jwt","kid":…}`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, SignError> {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
        let mut token = String::with_capacity(self.header_b64.len() + payload.len() + 350);
        token.push_str(&self.header_b64);
        token.push('.');
        token.push_str(&payload);
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                token.as_bytes(),
                &mut signature,
            )
            .map_err(|_| SignError::Sign)?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}
