//! argon2id for human passwords (OWASP: m=19456 KiB, t=2, p=1), always on the
//! blocking pool.

use std::sync::LazyLock;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 1024;

fn hasher() -> anyhow::Result<Argon2<'static>> {
    let params =
        Params::new(19_456, 2, 1, None).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A hash of a fixed random password, verified against when the user does not
/// exist so that both paths cost the same.
static DUMMY_HASH: LazyLock<Option<String>> =
    LazyLock::new(|| hash_blocking("portcullis-dummy-password").ok());

pub fn validate(password: &str) -> anyhow::Result<()> {
    let len = password.chars().count();
    if len < MIN_LENGTH {
        anyhow::bail!("password must have at least {MIN_LENGTH} characters");
    }
    if password.len() > MAX_LENGTH {
        anyhow::bail!("password must have at most {MAX_LENGTH} bytes");
    }
    Ok(())
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))?;
    Ok(hash.to_string())
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .context("password hashing task")?
}

/// Verifies `password` against `stored` (or against a dummy hash when there is
/// no user), on the blocking pool.
pub async fn verify(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let (encoded, real) = match stored {
            Some(h) => (h, true),
            None => (DUMMY_HASH.clone().unwrap_or_default(), false),
        };
        let parsed =
            PasswordHash::new(&encoded).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        let ok = hasher()?
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && real)
    })
    .await
    .context("password verification task")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verify_accepts_right_and_rejects_wrong_password() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            verify("correct horse".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse".into(), Some(h)).await.unwrap());
        assert!(
            !verify("portcullis-dummy-password".into(), None)
                .await
                .unwrap()
        );
    }

    #[test]
    fn validate_rejects_short_password() {
        assert!(validate("short").is_err());
        assert!(validate("long enough").is_ok());
    }
}
