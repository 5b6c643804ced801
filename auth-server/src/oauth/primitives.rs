//! oxide-auth primitives over sea-orm: a `Registrar` (clients), and one
//! per-request `GrantStore` that is both the `Authorizer` (codes) and the
//! `Issuer` (JWT access tokens, rotating refresh tokens).

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use oxide_auth::primitives::grant::{Extensions, Grant, Value};
use oxide_auth::primitives::issuer::{IssuedToken, RefreshedToken, TokenType};
use oxide_auth::primitives::registrar::{
    BoundClient, ClientUrl, ExactUrl, PreGrant, RegisteredUrl, RegistrarError,
};
use oxide_auth::primitives::scope::Scope;
use oxide_auth_async::primitives::{Authorizer, Issuer, Registrar};
use url::Url;

use crate::clock;
use crate::domain::{GrantType, ScopeSet};
use crate::oauth::tokens;
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::{self, audit, codes, refresh};

/// The grant extension under which oxide-auth's PKCE addon keeps its data.
const PKCE_EXTENSION: &str = "pkce";

/// oxide-auth keeps scopes in a hash set; store and sign them sorted.
fn canonical_scope(scope: &Scope) -> String {
    let raw = scope.to_string();
    ScopeSet::parse(&raw).map(|s| s.to_string()).unwrap_or(raw)
}

/// Which flow a request runs: decides, e.g., whether a refresh token is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Authorize,
    AuthorizationCode,
    Refresh,
    ClientCredentials,
}

/// What happened inside the primitives that the handler must know about,
/// because oxide-auth reduces it to "invalid_grant" or a primitive error.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// A code was presented that is unknown or expired.
    pub code_invalid: bool,
    /// A code was spent by this request (later checks may still fail).
    pub code_redeemed: bool,
    pub code_replayed: bool,
    pub refresh_reused: bool,
    pub internal_error: bool,
}

pub type SharedOutcome = Arc<Mutex<Outcome>>;

fn note(outcome: &SharedOutcome, f: impl FnOnce(&mut Outcome)) {
    if let Ok(mut guard) = outcome.lock() {
        f(&mut guard);
    }
}

/// The one client a request is about, loaded once and shared by the
/// registrar and the grant store (oxide-auth asks for it several times).
#[derive(Clone, Default)]
pub struct ClientCache(Arc<Mutex<Option<Client>>>);

impl ClientCache {
    /// A cache that already holds the client the handler authenticated.
    pub fn seeded(client: Client) -> Self {
        Self(Arc::new(Mutex::new(Some(client))))
    }

    async fn get(&self, app: &AppState, id: &str) -> Result<Option<Client>, sea_orm::DbErr> {
        if let Ok(cached) = self.0.lock()
            && let Some(client) = cached.as_ref().filter(|c| c.id == id)
        {
            return Ok(Some(client.clone()));
        }
        let found = store::clients::find(&app.db, id).await?;
        if let (Some(client), Ok(mut cached)) = (&found, self.0.lock()) {
            *cached = Some(client.clone());
        }
        Ok(found)
    }
}

/// Clients from the database.
pub struct DbRegistrar {
    app: AppState,
    mode: Mode,
    clients: ClientCache,
}

impl DbRegistrar {
    pub fn new(app: AppState, mode: Mode, clients: ClientCache) -> Self {
        Self { app, mode, clients }
    }

    async fn client(&self, id: &str) -> Result<Client, RegistrarError> {
        self.clients
            .get(&self.app, id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "loading client");
                RegistrarError::PrimitiveError
            })?
            .ok_or(RegistrarError::Unspecified)
    }
}

/// Loopback redirect URIs of public (native) clients may vary in port (RFC 8252 §7.3).
fn loopback_port_variant(registered: &str, requested: &str) -> bool {
    let (Ok(reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    let loopback = |u: &Url| match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    reg.scheme() == "http"
        && req.scheme() == "http"
        && loopback(&reg)
        && reg.host() == req.host()
        && reg.path() == req.path()
        && reg.query() == req.query()
        && req.fragment().is_none()
        && req.username().is_empty()
        && req.password().is_none()
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
        if self.mode == Mode::Authorize && !client.allows(GrantType::AuthorizationCode) {
            return Err(RegistrarError::Unspecified);
        }
        let chosen = match &bound.redirect_uri {
            Some(requested) => {
                let requested = requested.as_str();
                let exact = client.redirect_uris.iter().any(|r| r == requested);
                let variant = client.is_public()
                    && client
                        .redirect_uris
                        .iter()
                        .any(|r| loopback_port_variant(r, requested));
                if !(exact || variant) {
                    return Err(RegistrarError::Unspecified);
                }
                requested.to_owned()
            }
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            // client_credentials has no redirect; oxide-auth still wants a URL.
            None if self.mode == Mode::ClientCredentials => self.app.issuer.clone(),
            None => return Err(RegistrarError::Unspecified),
        };
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
        client_id: &str,
        passphrase: Option<&[u8]>,
    ) -> Result<(), RegistrarError> {
        let client = self.client(client_id).await?;
        let secret = match passphrase {
            Some(bytes) => {
                Some(std::str::from_utf8(bytes).map_err(|_| RegistrarError::Unspecified)?)
            }
            None => None,
        };
        if client.authenticate(secret) {
            Ok(())
        } else {
            Err(RegistrarError::Unspecified)
        }
    }
}

/// Codes and tokens, per request.
pub struct GrantStore {
    app: AppState,
    mode: Mode,
    outcome: SharedOutcome,
    clients: ClientCache,
    /// The code row redeemed by this request (links the new refresh family to it).
    redeemed_code: Option<String>,
    /// The refresh token row recovered by this request.
    recovered: Option<refresh::RefreshToken>,
}

impl GrantStore {
    pub fn new(app: AppState, mode: Mode, outcome: SharedOutcome, clients: ClientCache) -> Self {
        Self {
            app,
            mode,
            outcome,
            clients,
            redeemed_code: None,
            recovered: None,
        }
    }

    fn fail(&self, context: &str, error: impl std::fmt::Display) {
        tracing::error!(error = %error, "{context}");
        note(&self.outcome, |o| o.internal_error = true);
    }

    fn placeholder_url(&self) -> Result<Url, ()> {
        Url::parse(&self.app.issuer).map_err(|_| ())
    }

    async fn roles_of(&self, user_id: &str) -> Result<Vec<String>, ()> {
        match store::users::find(&self.app.db, user_id).await {
            Ok(Some(user)) => Ok(store::users::roles(&user)),
            Ok(None) => Err(()),
            Err(e) => {
                self.fail("loading user", e);
                Err(())
            }
        }
    }

    async fn reuse_detected(&self, token: &refresh::RefreshToken) {
        note(&self.outcome, |o| o.refresh_reused = true);
        let revoked =
            refresh::revoke_family(&self.app.db, &token.family_id, refresh::REASON_REUSE).await;
        let detail = serde_json::json!({
            "family_id": token.family_id,
            "token_id": token.id,
            "revoked": revoked.as_ref().ok(),
        });
        if let Err(e) = revoked {
            self.fail("revoking refresh family", e);
        }
        if let Err(e) = audit::record(
            &self.app.db,
            audit::REFRESH_TOKEN_REUSE,
            Some(&token.user_id),
            Some(&token.client_id),
            detail,
        )
        .await
        {
            self.fail("writing audit event", e);
        }
    }
}

#[async_trait]
impl Authorizer for GrantStore {
    async fn authorize(&mut self, grant: Grant) -> Result<String, ()> {
        let code = shared::secret::generate().map_err(|e| self.fail("generating code", e))?;
        let pkce = grant
            .extensions
            .private()
            .find(|(name, _)| *name == PKCE_EXTENSION)
            .and_then(|(_, value)| value.map(str::to_owned));
        let new = codes::NewCode {
            code_hash: shared::secret::hash(&code),
            client_id: &grant.client_id,
            user_id: &grant.owner_id,
            redirect_uri: grant.redirect_uri.as_str(),
            scope: &canonical_scope(&grant.scope),
            pkce,
            expires_at: clock::now() + self.app.settings.auth_code_ttl_secs,
        };
        codes::create(&self.app.db, new)
            .await
            .map_err(|e| self.fail("storing authorization code", e))?;
        Ok(code)
    }

    async fn extract(&mut self, code: &str) -> Result<Option<Grant>, ()> {
        let redeemed = codes::redeem(&self.app.db, code)
            .await
            .map_err(|e| self.fail("redeeming authorization code", e))?;
        let row = match redeemed {
            codes::Redeemed::Fresh(row) => {
                note(&self.outcome, |o| o.code_redeemed = true);
                row
            }
            codes::Redeemed::Replayed(row) => {
                note(&self.outcome, |o| o.code_replayed = true);
                // RFC 6749 §4.1.2: revoke what the first use issued.
                let revoked =
                    refresh::revoke_by_code(&self.app.db, &row.id, refresh::REASON_CODE_REPLAY)
                        .await
                        .map_err(|e| self.fail("revoking tokens of a replayed code", e))?;
                let detail = serde_json::json!({"code_id": row.id, "revoked": revoked});
                audit::record(
                    &self.app.db,
                    audit::CODE_REPLAY,
                    Some(&row.user_id),
                    Some(&row.client_id),
                    detail,
                )
                .await
                .map_err(|e| self.fail("writing audit event", e))?;
                return Ok(None);
            }
            codes::Redeemed::Expired | codes::Redeemed::Unknown => {
                note(&self.outcome, |o| o.code_invalid = true);
                return Ok(None);
            }
        };
        let mut extensions = Extensions::new();
        if let Some(pkce) = &row.pkce {
            extensions.set_raw(
                PKCE_EXTENSION.to_owned(),
                Value::private(Some(pkce.clone())),
            );
        }
        let grant = Grant {
            owner_id: row.user_id.clone(),
            client_id: row.client_id.clone(),
            scope: row.scope.parse().map_err(|_| ())?,
            redirect_uri: Url::parse(&row.redirect_uri).map_err(|_| ())?,
            until: clock::to_chrono(row.expires_at),
            extensions,
        };
        self.redeemed_code = Some(row.id);
        Ok(Some(grant))
    }
}

#[async_trait]
impl Issuer for GrantStore {
    async fn issue(&mut self, grant: Grant) -> Result<IssuedToken, ()> {
        let scope = canonical_scope(&grant.scope);
        let (roles, refresh_token) = match self.mode {
            Mode::ClientCredentials => (Vec::new(), None),
            _ => {
                let roles = self.roles_of(&grant.owner_id).await?;
                let allows_refresh = self
                    .clients
                    .get(&self.app, &grant.client_id)
                    .await
                    .map_err(|e| self.fail("loading client", e))?
                    .is_some_and(|c| c.allows(GrantType::RefreshToken));
                let token = if allows_refresh {
                    let family = refresh::NewFamily {
                        client_id: &grant.client_id,
                        user_id: &grant.owner_id,
                        scope: &scope,
                        code_id: self.redeemed_code.as_deref(),
                        ttl_secs: self.app.settings.auth_refresh_token_ttl_secs,
                    };
                    Some(
                        refresh::create_family(&self.app.db, family)
                            .await
                            .map_err(|e| self.fail("storing refresh token", e))?,
                    )
                } else {
                    None
                };
                (roles, token)
            }
        };
        let minted = tokens::mint(&self.app, &grant.owner_id, &grant.client_id, &scope, roles)
            .map_err(|e| self.fail("signing access token", e))?;
        Ok(IssuedToken {
            token: minted.token,
            refresh: refresh_token,
            until: clock::to_chrono(minted.expires_at),
            token_type: TokenType::Bearer,
        })
    }

    async fn refresh(&mut self, _token: &str, grant: Grant) -> Result<RefreshedToken, ()> {
        let Some(old) = self.recovered.take() else {
            return Err(());
        };
        // The access token gets the (possibly narrowed) scope; the new refresh
        // token keeps the scope originally granted (RFC 6749 §6).
        let scope = canonical_scope(&grant.scope);
        let rotation = refresh::rotate(&self.app.db, &old, &old.scope)
            .await
            .map_err(|e| self.fail("rotating refresh token", e))?;
        let new_token = match rotation {
            refresh::Rotation::Rotated(token) => token,
            refresh::Rotation::Lost => {
                // Another request used this token first: that is reuse.
                self.reuse_detected(&old).await;
                return Err(());
            }
        };
        let roles = self.roles_of(&old.user_id).await?;
        let minted = tokens::mint(&self.app, &old.user_id, &old.client_id, &scope, roles)
            .map_err(|e| self.fail("signing access token", e))?;
        Ok(RefreshedToken {
            token: minted.token,
            refresh: Some(new_token),
            until: clock::to_chrono(minted.expires_at),
            token_type: TokenType::Bearer,
        })
    }

    async fn recover_token(&mut self, _token: &str) -> Result<Option<Grant>, ()> {
        // Access tokens are self-contained JWTs, verified offline.
        Ok(None)
    }

    async fn recover_refresh(&mut self, token: &str) -> Result<Option<Grant>, ()> {
        let Some(row) = refresh::find(&self.app.db, token)
            .await
            .map_err(|e| self.fail("loading refresh token", e))?
        else {
            return Ok(None);
        };
        if row.revoked_at.is_some() {
            return Ok(None);
        }
        if row.used_at.is_some() {
            self.reuse_detected(&row).await;
            return Ok(None);
        }
        if row.expires_at <= clock::now() {
            return Ok(None);
        }
        let grant = Grant {
            owner_id: row.user_id.clone(),
            client_id: row.client_id.clone(),
            scope: row.scope.parse().map_err(|_| ())?,
            redirect_uri: self.placeholder_url()?,
            until: clock::to_chrono(row.expires_at),
            extensions: Extensions::new(),
        };
        self.recovered = Some(row);
        Ok(Some(grant))
    }
}
