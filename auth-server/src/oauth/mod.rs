//! OAuth protocol logic on oxide-auth: sea-orm backed primitives, the endpoint
//! assembly and the owner solicitor. Handlers in `http` stay thin.

pub mod endpoint;
pub mod primitives;
pub mod solicitor;
pub mod tokens;

pub use endpoint::{FlowError, PortcullisEndpoint};
pub use primitives::{ClientCache, DbRegistrar, GrantStore, Mode, Outcome};
