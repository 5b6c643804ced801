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

/// The `aud` of access tokens, and the one the resource API accepts, unless
/// configured otherwise (`AUTH_AUDIENCE`, `RESOURCE_AUDIENCE`).
pub const DEFAULT_AUDIENCE: &str = "portcullis-api";

/// Clock skew allowed when verifying `exp`, `nbf` and `iat` (at most 60 s).
pub const TOKEN_LEEWAY: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_client_scope_is_every_scope() {
        let scopes: Vec<&str> = DEFAULT_CLIENT_SCOPE.split(' ').collect();
        assert_eq!(scopes, SCOPES);
    }
}
