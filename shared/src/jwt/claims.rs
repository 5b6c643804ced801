use serde::{Deserialize, Serialize};

/// RFC 9068 access-token claims, plus the user's roles.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The caller's rate-limit tier on the resource API (absent: standard).
    #[serde(default)]
    pub tier: crate::contract::Tier,
}

impl AccessTokenClaims {
    /// Whether the space-separated `scope` holds `wanted`.
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scope.split(' ').any(|s| s == wanted)
    }
}
