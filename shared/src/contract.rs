//! Values of the public contract that both services, the CLI, `stack` and
//! the tests share: each is defined here once.

use std::time::Duration;

/// Read the user's notes.
pub const SCOPE_NOTES_READ: &str = "notes:read";
/// Create, change and delete the user's notes.
pub const SCOPE_NOTES_WRITE: &str = "notes:write";
/// Every scope the resource API knows (the metadata's `scopes_supported`).
pub const SCOPES: &[&str] = &[SCOPE_NOTES_READ, SCOPE_NOTES_WRITE];
/// The scope a client is registered for when none is given.
pub const DEFAULT_CLIENT_SCOPE: &str = "notes:read notes:write";

/// The audit event of a valid token refused for want of a role (the auth
/// server's admin API) or a scope (the resource API): both services write
/// it to `audit_events`.
pub const AUDIT_PERMISSION_DENIED: &str = "permission.denied";

/// The `aud` of access tokens, and the one the resource API accepts, unless
/// configured otherwise (`AUTH_AUDIENCE`, `RESOURCE_AUDIENCE`).
pub const DEFAULT_AUDIENCE: &str = "portcullis-api";

/// Clock skew allowed when verifying `exp`, `nbf` and `iat` (at most 60 s).
pub const TOKEN_LEEWAY: Duration = Duration::from_secs(60);

/// The rate-limit tier of a caller on the resource API: the `tier` claim of
/// its access tokens, taken from the user's or the client's record at
/// issuance (premium when either is premium).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    #[default]
    Standard,
    Premium,
}

impl Tier {
    pub const ALL: [Tier; 2] = [Tier::Standard, Tier::Premium];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Premium => "premium",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }

    /// The higher of two tiers.
    pub fn max(self, other: Tier) -> Tier {
        if self == Tier::Premium || other == Tier::Premium {
            Tier::Premium
        } else {
            Tier::Standard
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_client_scope_is_every_scope() {
        let scopes: Vec<&str> = DEFAULT_CLIENT_SCOPE.split(' ').collect();
        assert_eq!(scopes, SCOPES);
    }

    #[test]
    fn tier_parses_its_names_only() {
        for tier in Tier::ALL {
            assert_eq!(Tier::parse(tier.as_str()), Some(tier));
        }
        assert_eq!(Tier::parse("Premium"), None);
        assert_eq!(Tier::parse("gold"), None);
        assert_eq!(Tier::Standard.max(Tier::Premium), Tier::Premium);
    }
}
