//! Test helpers: a key pair and token minting.
#![allow(clippy::expect_used)]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::jwt::{AccessTokenClaims, Signer, generate_private_key_pem};

/// A fresh 2048-bit private key PEM.
pub fn private_key_pem() -> String {
    generate_private_key_pem(2048).expect("key generation")
}

/// One PEM for a whole test binary, when a fresh key per test adds nothing.
pub fn shared_private_key_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(private_key_pem)
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Claims valid for 15 minutes from now.
pub fn claims(iss: &str, aud: &str, sub: &str, scope: &str) -> AccessTokenClaims {
    let now = now();
    AccessTokenClaims {
        iss: iss.into(),
        sub: sub.into(),
        aud: aud.into(),
        client_id: "test-client".into(),
        scope: scope.into(),
        exp: now + 900,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        roles: vec![],
        tier: Default::default(),
    }
}

pub fn signer(pem: &str) -> Signer {
    Signer::from_pem(pem).expect("signer")
}
