//! RS256 access tokens (RFC 9068): claims, keys, signing and offline verification.

mod cache;
mod claims;
mod keys;
mod sign;
mod verify;

pub use cache::DEFAULT_VERIFY_CACHE_SIZE;
pub use claims::AccessTokenClaims;
pub use keys::{
    Jwk, Jwks, PublicKey, check_key_bits, describe_pem, generate_private_key_pem,
    generation_notice, thumbprint,
};
pub use sign::{SignError, Signer};
pub use verify::{
    DEFAULT_MAX_TOKEN_LIFETIME, JwksUrlError, KeySource, MAX_JWKS_BYTES, MAX_JWKS_KEYS, Verifier,
    VerifierSettings, VerifyError, check_jwks_url,
};

/// The JOSE `typ` of an access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
