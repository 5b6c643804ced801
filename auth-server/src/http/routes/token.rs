//! `POST /token`: authorization_code, refresh_token, client_credentials.
//!
//! The handler authenticates the client and checks the grant type itself,
//! then hands a normalised request (Basic header for confidential clients,
//! `client_id` in the body for public ones) to oxide-auth's flows.

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderValue, header};
use oxide_auth::endpoint::OAuthError as OxideError;
use oxide_auth_async::endpoint::access_token::AccessTokenFlow;
use oxide_auth_async::endpoint::client_credentials::ClientCredentialsFlow;
use oxide_auth_async::endpoint::refresh::RefreshFlow;
use oxide_auth_axum::{OAuthRequest, OAuthResponse};
use shared::oauth_error::{OAuthError, OAuthErrorCode};

use crate::domain::{GrantType, ScopeSet};
use crate::http::client_auth;
use crate::http::form::{self, Form};
use crate::oauth::solicitor::Decision;
use crate::oauth::{ClientCache, FlowError, Mode, Outcome, PortcullisEndpoint};
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::refresh;

pub async fn token_post(State(app): State<AppState>, request: Request) -> Response {
    match token(&app, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn token(app: &AppState, request: Request) -> Result<Response, OAuthError> {
    let (headers, mut form) = form::read(request).await?;
    let (client, presented) = client_auth::authenticate(app, &headers, &mut form).await?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let grant = GrantType::parse(grant_type).map_err(|_| {
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
    if let Some(scope) = form.get("scope") {
        let requested = ScopeSet::parse(scope)
            .map_err(|e| OAuthError::new(OAuthErrorCode::InvalidScope, e.to_string()))?;
        if !requested.is_subset(&client.scopes) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidScope,
                "the requested scope exceeds what the client is registered for",
            ));
        }
    }
    if grant == GrantType::RefreshToken {
        // Bind the refresh token to its client before oxide-auth sees it.
        let token = form
            .get("refresh_token")
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
        let row = refresh::find(&app.db, token).await.map_err(|e| {
            tracing::error!(error = %e, "loading refresh token");
            OAuthError::server_error()
        })?;
        if row.is_some_and(|r| r.client_id != client.id) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidGrant,
                "refresh token was issued to another client",
            ));
        }
    }
    let oauth_request = normalised(&client, form, &presented).await?;
    let mode = match grant {
        GrantType::AuthorizationCode => Mode::AuthorizationCode,
        GrantType::RefreshToken => Mode::Refresh,
        GrantType::ClientCredentials => Mode::ClientCredentials,
    };
    let decision = (mode == Mode::ClientCredentials).then_some(Decision::Client);
    let endpoint = PortcullisEndpoint::new(app, mode, decision, ClientCache::seeded(client));
    let outcome = endpoint.outcome.clone();
    let result: Result<OAuthResponse, FlowError> = match mode {
        Mode::AuthorizationCode => match AccessTokenFlow::prepare(endpoint) {
            Ok(mut flow) => flow.execute(oauth_request).await,
            Err(e) => Err(e),
        },
        Mode::Refresh => match RefreshFlow::prepare(endpoint) {
            Ok(mut flow) => flow.execute(oauth_request).await,
            Err(e) => Err(e),
        },
        Mode::ClientCredentials | Mode::Authorize => match ClientCredentialsFlow::prepare(endpoint)
        {
            Ok(mut flow) => {
                flow.allow_refresh_token(false);
                flow.execute(oauth_request).await
            }
            Err(e) => Err(e),
        },
    };
    let outcome = outcome.lock().map(|o| *o).unwrap_or(Outcome {
        internal_error: true,
        ..Outcome::default()
    });
    if outcome.refresh_reused {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidGrant,
            "refresh token reuse detected: the token family is revoked",
        ));
    }
    if outcome.code_replayed {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidGrant,
            "authorization code already used: tokens issued with it are revoked",
        ));
    }
    if outcome.code_invalid {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidGrant,
            "authorization code is unknown or expired",
        ));
    }
    match result {
        Ok(response) => {
            let response = response.into_response();
            // oxide-auth calls a failed PKCE check after the code is spent an
            // invalid request; RFC 7636 §4.6 says invalid_grant.
            if outcome.code_redeemed && response.status().is_client_error() {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidGrant,
                    "the code_verifier, client or redirect_uri does not match the authorization code",
                ));
            }
            Ok(finish(response))
        }
        Err(_) if outcome.internal_error => Err(OAuthError::server_error()),
        Err(FlowError::OAuth(OxideError::PrimitiveError)) => Err(OAuthError::server_error()),
        Err(FlowError::OAuth(OxideError::DenySilently)) => Err(OAuthError::new(
            OAuthErrorCode::InvalidClient,
            "client authentication failed",
        )),
        Err(FlowError::OAuth(OxideError::BadRequest)) | Err(FlowError::Web(_)) => {
            Err(OAuthError::invalid_request("malformed token request"))
        }
    }
}

/// oxide-auth's own success and error responses: make sure errors carry a
/// JSON body and the status stays 4xx/5xx as it set them.
fn finish(mut response: Response) -> Response {
    if response.status().is_client_error() && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        return OAuthError::invalid_request("invalid token request")
            .with_status(response.status())
            .into_response();
    }
    if response.status() == http::StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"portcullis\""),
        );
    }
    response
}

/// One canonical request for oxide-auth: confidential clients in a Basic
/// header, public clients as `client_id` in the body.
async fn normalised(
    client: &Client,
    mut form: Form,
    presented: &client_auth::Presented,
) -> Result<OAuthRequest, OAuthError> {
    let mut builder = Request::builder()
        .method("POST")
        .uri("/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    match &presented.secret {
        Some(secret) if !client.is_public() => {
            let encoded = STANDARD.encode(format!("{}:{}", client.id, secret));
            builder = builder.header(header::AUTHORIZATION, format!("Basic {encoded}"));
        }
        _ => form.insert("client_id", client.id.clone()),
    }
    let request = builder
        .body(Body::from(form.encode()))
        .map_err(|_| OAuthError::server_error())?;
    OAuthRequest::from_request(request, &())
        .await
        .map_err(|_| OAuthError::invalid_request("malformed token request"))
}
