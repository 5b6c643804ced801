//! Route constants: one place for the router and the discovery metadata.

pub const AUTHORIZE_PATH: &str = "/authorize";
pub const LOGIN_PATH: &str = "/login";
pub const CONSENT_PATH: &str = "/consent";
pub const TOKEN_PATH: &str = "/token";
pub const REVOKE_PATH: &str = "/revoke";
pub const INTROSPECT_PATH: &str = "/introspect";
pub const PASSWORD_RESET_PATH: &str = "/password-reset";
pub const PASSWORD_RESET_CONFIRM_PATH: &str = "/password-reset/confirm";
/// Self-registration (`POST`, when `REGISTRATION=open`).
pub const REGISTER_PATH: &str = "/api/v2/users";
/// The admin API's lockouts (`GET`), and one of them (`DELETE …/{kind}/{subject}`).
pub const ADMIN_LOCKOUTS_PATH: &str = "/api/v2/admin/lockouts";
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
pub const HEALTHZ_PATH: &str = "/healthz";
pub const READYZ_PATH: &str = "/readyz";
