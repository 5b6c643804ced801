//! The token endpoint (RFC 6749 §3.2): one typed request in, one response or
//! one RFC 6749 error out.

use shared::limit::Decision;
use shared::oauth_error::{OAuthError, OAuthErrorCode};

use super::client::{self, Credentials, Source};
use super::params::Params;
use super::tokens::{self, TokenResponse};
use super::{code, refresh};
use crate::audit;
use crate::domain::{GrantType, ScopeSet};
use crate::state::AppState;
use crate::store::clients::Client;

/// A token request, parsed once: its parameters and the credentials it
/// presents (taken out of the parameters).
#[derive(Debug)]
pub struct TokenRequest {
    params: Params,
    credentials: Option<Credentials>,
    /// When the request arrived (Unix seconds).
    received_at: i64,
    /// Who sent it, for the audit trail.
    caller: Caller,
}

/// The sender of a request as the audit trail records it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub ip: String,
    pub user_agent: Option<String>,
}

impl TokenRequest {
    /// `authorization`: the values of the request's `Authorization` headers;
    /// `received_at`: when the request arrived, before any wait.
    pub fn new(
        mut params: Params,
        authorization: &[&str],
        received_at: i64,
        caller: Caller,
    ) -> Result<Self, OAuthError> {
        let credentials = Credentials::take(authorization, &mut params)?;
        Ok(Self {
            params,
            credentials,
            received_at,
            caller,
        })
    }
}

/// The answer of the token endpoint, and the client's rate-limit verdict
/// once the client is known (its `RateLimit-*` fields go on the response).
pub struct TokenAnswer {
    pub result: Result<TokenResponse, OAuthError>,
    pub limit: Option<Decision>,
}

/// Authenticates the client, takes one request from its `RATE_LIMIT_TOKEN`
/// bucket (refused: 429 before any code is spent, row written or token
/// signed), then runs the grant.
pub async fn token(app: &AppState, request: TokenRequest) -> TokenAnswer {
    let TokenRequest {
        params,
        credentials,
        received_at,
        caller,
    } = request;
    let client = match client::authenticate(app, credentials.as_ref(), Source::Cache).await {
        Ok(client) => client,
        Err(e) => {
            return TokenAnswer {
                result: Err(e),
                limit: None,
            };
        }
    };
    let decision = crate::limits::token_for_client(app, &client.id).await;
    if !decision.allowed {
        tracing::info!(limit = "token", client_id = %client.id, "rate limited");
        return TokenAnswer {
            result: Err(OAuthError::new(
                OAuthErrorCode::TemporarilyUnavailable,
                "too many token requests for this client",
            )
            .with_status(http::StatusCode::TOO_MANY_REQUESTS)),
            limit: Some(decision),
        };
    }
    let grant_type = params.get("grant_type").unwrap_or_default().to_owned();
    let client_id = client.id.clone();
    let result = match grant(app, client, &params, received_at).await {
        // The cached client changed under the grant (`client::changed`),
        // which changed nothing: once more with the client's row as it is
        // now, which may refuse the credentials.
        Err(e) if e.code == OAuthErrorCode::InvalidClient => {
            match client::authenticate(app, credentials.as_ref(), Source::Database).await {
                Ok(client) => grant(app, client, &params, received_at).await,
                Err(e) => Err(e),
            }
        }
        result => result,
    };
    if let Ok(issued) = &result {
        // Under client credentials the client is its own subject: no user.
        let user = (issued.sub != client_id).then_some(issued.sub.as_str());
        audit::record(
            app,
            audit::TOKEN_ISSUED,
            user,
            Some(&client_id),
            serde_json::json!({
                "grant_type": grant_type,
                "scope": issued.scope,
                "jti": issued.jti,
                "refresh_token": issued.refresh_token.is_some(),
                "client_ip": caller.ip,
                "user_agent": caller.user_agent,
            }),
        )
        .await;
    }
    TokenAnswer {
        result,
        limit: Some(decision),
    }
}

/// Runs the grant `params` ask for. The client may come from the cache:
/// every grant checks, before it changes or issues anything, that the
/// client's row is still the one it was authenticated against, and answers
/// [`client::changed`] if not.
async fn grant(
    app: &AppState,
    client: Client,
    params: &Params,
    received_at: i64,
) -> Result<TokenResponse, OAuthError> {
    let grant = GrantType::parse(params.require("grant_type")?).map_err(|_| {
        OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            "supported: authorization_code, refresh_token, client_credentials",
        )
    })?;
    if !client.allows(grant) || (grant == GrantType::ClientCredentials && client.is_public()) {
        return Err(OAuthError::new(
            OAuthErrorCode::UnauthorizedClient,
            "this client may not use this grant type",
        ));
    }
    let requested = match params.get("scope") {
        Some(raw) => {
            let scope = ScopeSet::parse(raw)
                .map_err(|e| OAuthError::new(OAuthErrorCode::InvalidScope, e.to_string()))?;
            if !scope.is_subset(&client.scopes) {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidScope,
                    "the requested scope exceeds what the client is registered for",
                ));
            }
            Some(scope)
        }
        None => None,
    };
    match grant {
        GrantType::AuthorizationCode => code::exchange(app, &client, params).await,
        GrantType::RefreshToken => {
            let presented = params.require("refresh_token")?;
            refresh::exchange(app, &client, presented, requested, received_at).await
        }
        GrantType::ClientCredentials => {
            // Nothing else reads the database here: one read of the
            // client's revision.
            client::confirm(&app.db, &client).await?;
            client_credentials(app, &client, requested)
        }
    }
}

/// RFC 6749 §4.4: the client acts for itself (`sub` = `client_id`), no
/// refresh token.
fn client_credentials(
    app: &AppState,
    client: &Client,
    requested: Option<ScopeSet>,
) -> Result<TokenResponse, OAuthError> {
    let scope = requested
        .unwrap_or_else(|| client.scopes.clone())
        .to_string();
    tokens::respond(
        app,
        &client.id,
        &client.id,
        &scope,
        tokens::Grantee::client(client),
        None,
    )
    .map_err(|e| crate::fault::oauth("signing access token", e))
}
