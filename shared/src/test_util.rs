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

/// A log writer into a shared buffer, for a subscriber under test
/// (`with_writer(move || captured.clone())`).
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn bytes(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// Everything written so far, one JSON value per line.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON log line"))
            .collect()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
