//! The protocol façade. Handlers in `http` parse the HTTP request into the
//! typed requests here, call one function, and render its typed result;
//! nothing outside this module names an oxide-auth type.
//!
//! - `authorize` / `decide`: the authorization endpoint and the consent
//!   decision (oxide-auth's `AuthorizationFlow` inside).
//! - `token`: the token endpoint; `code` (authorization_code) and `refresh`
//!   (the whole refresh-token lifecycle) do the work.
//! - `introspect` / `revoke`: RFC 7662 and RFC 7009.

mod authorize;
mod client;
mod code;
mod endpoint;
mod introspect;
mod params;
mod primitives;
pub mod refresh;
mod solicitor;
mod token;
mod tokens;

pub use authorize::{
    AuthorizationRequest, AuthorizeResult, ConsentPrompt, PENDING_TTL_SECS, PageError, authorize,
    decide,
};
pub use introspect::{Introspection, TokenOwnerRequest, introspect, revoke};
pub use params::Params;
pub use token::{Caller, TokenAnswer, TokenRequest, token};
pub use tokens::TokenResponse;
