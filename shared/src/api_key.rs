//! API keys for service-to-service calls: their format, generation and
//! parsing. Both services use this module; the database side lives in each
//! service's store.
//!
//! A key is `sk_live_<id>_<secret>` (`sk_test_…` for a test client):
//! `<id>` is the public key id (16 lower-case hex characters, 64 random
//! bits) by which the key is looked up, `<secret>` 256 random bits from the
//! OS CSPRNG, base64url without padding (43 characters). The whole key is
//! shown once at creation; the database keeps only its SHA-256 hash
//! ([`crate::secret::hash`]), compared in constant time. Secret scanners
//! find leaked keys with `sk_(live|test)_[0-9a-f]{16}_[A-Za-z0-9_-]{43}`.

/// The request header that carries an API key.
pub const HEADER: &str = "x-api-key";

/// The `WWW-Authenticate` scheme of a refused API key.
pub const CHALLENGE: &str = "ApiKey";

/// The audit kind of a key's use (coalesced: see [`USE_COALESCE_SECS`]).
pub const AUDIT_USED: &str = "api_key.used";
/// The audit kind of a key's creation.
pub const AUDIT_CREATED: &str = "api_key.created";
/// The audit kind of a key's revocation.
pub const AUDIT_REVOKED: &str = "api_key.revoked";
/// The audit kind of a use of a revoked key (a security event).
pub const AUDIT_REVOKED_USE: &str = "api_key.revoked_use";

/// At most one `api_key.used` audit row and one `last_used_at` update per
/// key in this many seconds.
pub const USE_COALESCE_SECS: i64 = 60;

/// Length of a key id (hex characters).
pub const ID_LEN: usize = 16;

/// Whether a key belongs to a live or a test client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Test,
}

impl Mode {
    pub fn prefix(self) -> &'static str {
        match self {
            Mode::Live => "sk_live_",
            Mode::Test => "sk_test_",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Test => "test",
        }
    }
}

/// A freshly generated key: its public id and the full key (shown once).
#[derive(Debug)]
pub struct Generated {
    pub id: String,
    pub key: String,
    /// SHA-256 hex of `key`: what the database stores.
    pub hash: String,
}

/// Generates a key of `mode` from the OS CSPRNG.
pub fn generate(mode: Mode) -> anyhow::Result<Generated> {
    let mut id_bytes = [0u8; ID_LEN / 2];
    aws_lc_rs::rand::fill(&mut id_bytes)
        .map_err(|_| anyhow::anyhow!("system random unavailable"))?;
    let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let secret = crate::secret::generate()?;
    let key = format!("{}{id}_{secret}", mode.prefix());
    let hash = crate::secret::hash(&key);
    Ok(Generated { id, key, hash })
}

/// A presented key, split: its mode and id. The whole key is verified
/// against the stored hash by [`verify`].
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub mode: Mode,
    pub id: &'a str,
}

/// Splits a presented key; `None` when it does not have the key format.
pub fn parse(key: &str) -> Option<Parsed<'_>> {
    let (mode, rest) = if let Some(rest) = key.strip_prefix(Mode::Live.prefix()) {
        (Mode::Live, rest)
    } else {
        (Mode::Test, key.strip_prefix(Mode::Test.prefix())?)
    };
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let secret_ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (id_ok && secret_ok).then_some(Parsed { mode, id })
}

/// Constant-time check of a presented key against its stored hash.
pub fn verify(key: &str, stored_hash: &str) -> bool {
    crate::secret::verify(key, stored_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_makes_a_key_that_parses_and_verifies() {
        let g = generate(Mode::Live).unwrap();
        assert!(g.key.starts_with("sk_live_"));
        let parsed = parse(&g.key).unwrap();
        assert_eq!(parsed.id, g.id);
        assert_eq!(parsed.mode, Mode::Live);
        assert!(verify(&g.key, &g.hash));
        assert!(!g.hash.contains(&g.id));
        let t = generate(Mode::Test).unwrap();
        assert_eq!(parse(&t.key).unwrap().mode, Mode::Test);
        assert_ne!(g.id, t.id);
    }

    #[test]
    fn parse_rejects_other_shapes() {
        let g = generate(Mode::Live).unwrap();
        assert!(parse("").is_none());
        assert!(parse("sk_prod_0123456789abcdef_x").is_none());
        assert!(parse(&g.key[..g.key.len() - 1]).is_none());
        assert!(parse(&g.key.replace("sk_live_", "sk_live_X")).is_none());
        assert!(parse(&format!("{} ", g.key)).is_none());
    }
}
