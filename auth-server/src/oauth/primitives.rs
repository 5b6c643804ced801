//! oxide-auth primitives over sea-orm for the authorization endpoint: a
//! `Registrar` (clients, redirect URIs, scopes) and an `Authorizer` that
//! stores codes. The token endpoint does not go through oxide-auth (see
//! `oauth::code`), so there is no `Issuer` here.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use oxide_auth::primitives::grant::Grant;
use oxide_auth::primitives::registrar::{
    BoundClient, ClientUrl, ExactUrl, PreGrant, RegisteredUrl, RegistrarError,
};
use oxide_auth::primitives::scope::Scope;
use oxide_auth_async::primitives::{Authorizer, Registrar};

use crate::domain::{GrantType, ScopeSet};
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::codes;

/// The grant extension under which oxide-auth's PKCE addon keeps its data.
const PKCE_EXTENSION: &str = "pkce";

/// oxide-auth keeps scopes in a hash set; store and sign them sorted.
fn canonical_scope(scope: &Scope) -> String {
    let raw = scope.to_string();
    ScopeSet::parse(&raw).map(|s| s.to_string()).unwrap_or(raw)
}

/// Clients from the server's short client cache (`crate::cache`, the one
/// `/token` uses), else the database; the request's client is looked up once.
pub struct DbRegistrar {
    app: AppState,
    client: tokio::sync::OnceCell<Option<Arc<Client>>>,
}

impl DbRegistrar {
    pub fn new(app: AppState) -> Self {
        Self {
            app,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self, id: &str) -> Result<Arc<Client>, RegistrarError> {
        let loaded = self
            .client
            .get_or_try_init(|| self.app.clients.find(&self.app.db, id))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "loading client");
                RegistrarError::PrimitiveError
            })?;
        loaded
            .as_ref()
            .filter(|c| c.id == id)
            .cloned()
            .ok_or(RegistrarError::Unspecified)
    }
}

#[async_trait]
impl Registrar for DbRegistrar {
    async fn bound_redirect<'a>(
        &self,
        bound: ClientUrl<'a>,
    ) -> Result<BoundClient<'a>, RegistrarError> {
        let client = self.client(&bound.client_id).await?;
        // A client not registered for the code flow never gets a code (nor a
        // redirect: the handler shows an error page).
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(RegistrarError::Unspecified);
        }
        let chosen = client
            .redirect_target(bound.redirect_uri.as_ref().map(|u| u.as_str()))
            .ok_or(RegistrarError::Unspecified)?;
        let url = ExactUrl::new(chosen).map_err(|_| RegistrarError::Unspecified)?;
        Ok(BoundClient {
            client_id: bound.client_id,
            redirect_uri: Cow::Owned(RegisteredUrl::Exact(url)),
        })
    }

    async fn negotiate<'a>(
        &self,
        bound: BoundClient<'a>,
        scope: Option<Scope>,
    ) -> Result<PreGrant, RegistrarError> {
        let client = self.client(&bound.client_id).await?;
        let granted = match scope {
            Some(requested) => {
                let requested = ScopeSet::parse(&requested.to_string())
                    .map_err(|_| RegistrarError::Unspecified)?;
                if !requested.is_subset(&client.scopes) {
                    return Err(RegistrarError::Unspecified);
                }
                requested
            }
            None => client.scopes.clone(),
        };
        let scope = granted
            .to_string()
            .parse::<Scope>()
            .map_err(|_| RegistrarError::Unspecified)?;
        Ok(PreGrant {
            client_id: bound.client_id.into_owned(),
            redirect_uri: bound.redirect_uri.into_owned(),
            scope,
        })
    }

    async fn check(
        &self,
        _client_id: &str,
        _passphrase: Option<&[u8]>,
    ) -> Result<(), RegistrarError> {
        // Client authentication happens at the token endpoint (oauth::client).
        Err(RegistrarError::Unspecified)
    }
}

/// Stores the code of an approved authorization request.
pub struct CodeStore {
    app: AppState,
    /// Whether the request named its redirect URI (RFC 6749 §4.1.3).
    redirect_uri_given: bool,
}

impl CodeStore {
    pub fn new(app: AppState, redirect_uri_given: bool) -> Self {
        Self {
            app,
            redirect_uri_given,
        }
    }
}

#[async_trait]
impl Authorizer for CodeStore {
    async fn authorize(&mut self, grant: Grant) -> Result<String, ()> {
        let code = shared::secret::generate().map_err(|e| {
            tracing::error!(error = %e, "generating code");
        })?;
        let pkce = grant
            .extensions
            .private()
            .find(|(name, _)| *name == PKCE_EXTENSION)
            .and_then(|(_, value)| value.map(str::to_owned));
        let now = self.app.now();
        let new = codes::NewCode {
            code_hash: shared::secret::hash(&code),
            client_id: &grant.client_id,
            user_id: &grant.owner_id,
            redirect_uri: grant.redirect_uri.as_str(),
            redirect_uri_given: self.redirect_uri_given,
            scope: &canonical_scope(&grant.scope),
            pkce,
            expires_at: now + self.app.settings.auth_code_ttl_secs,
            now,
        };
        let created = self.app.writer.run(codes::create(&self.app.db, new));
        created.await.map_err(|e| {
            tracing::error!(error = %e, "storing authorization code");
        })?;
        Ok(code)
    }

    async fn extract(&mut self, _code: &str) -> Result<Option<Grant>, ()> {
        // Codes are redeemed by oauth::code, never through oxide-auth.
        Ok(None)
    }
}
