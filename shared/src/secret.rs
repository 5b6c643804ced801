//! Machine secrets: 256-bit CSPRNG values, stored as SHA-256, compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A fresh 256-bit random value, base64url without padding (43 characters).
pub fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("system random unavailable"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Lower-case hex SHA-256 of a secret: what the database stores.
pub fn hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Constant-time comparison of a presented secret with a stored hash.
pub fn verify(secret: &str, stored_hash: &str) -> bool {
    let presented = hash(secret);
    aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), stored_hash.as_bytes())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_returns_distinct_256_bit_values() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
    }

    #[test]
    fn verify_rejects_other_secret() {
        let s = generate().unwrap();
        let h = hash(&s);
        assert!(verify(&s, &h));
        assert!(!verify("other", &h));
        assert_eq!(h.len(), 64);
    }
}
