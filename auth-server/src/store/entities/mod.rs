//! sea-orm entities of the schema in `migrations`.

pub mod audit_events;
pub mod authorization_codes;
pub mod clients;
pub mod lockouts;
pub mod login_sessions;
pub mod mail_outbox;
pub mod password_reset_tokens;
pub mod pending_authorizations;
pub mod refresh_tokens;
pub mod signing_keys;
pub mod users;
