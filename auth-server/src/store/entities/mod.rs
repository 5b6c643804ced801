//! sea-orm entities of the schema in `migrations`.

pub mod audit_events;
pub mod authorization_codes;
pub mod clients;
pub mod login_sessions;
pub mod pending_authorizations;
pub mod refresh_tokens;
pub mod users;
