//! Extractors: the bearer token (`Authenticated`), a required scope
//! (`Scoped<S>`), and a JSON body that rejects with the API's problem shape.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, StatusCode, header};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use shared::client_ip::ClientIp;
use shared::http::{MAX_JSON_DEPTH, json_depth_exceeds};
use shared::jwt::{AccessTokenClaims, Verifier, VerifyError};
use shared::problem::Problem;

use super::error::ApiError;
use crate::clock::Clock;
use crate::store::audit;

/// The verified claims of the request's `Authorization: Bearer` token.
///
/// Exactly one `Authorization` header is accepted; the scheme is matched
/// case-insensitively. The token itself is never logged. When the rate-limit
/// middleware (`super::limits`) has verified the token already, its
/// [`VerifiedToken`] is used; otherwise the token is verified here.
#[derive(Debug, Clone)]
pub struct Authenticated(pub AccessTokenClaims);

/// The claims of the request's bearer token, verified by the rate-limit
/// middleware and left in the request extensions so that the extractors do
/// not verify the same token a second time.
#[derive(Debug, Clone)]
pub struct VerifiedToken(pub AccessTokenClaims);

impl<S> FromRequestParts<S> for Authenticated
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Taken out, not cloned: the claims were verified for this request
        // only, and nothing after the extractor reads them.
        if let Some(VerifiedToken(claims)) = parts.extensions.remove::<VerifiedToken>() {
            return Ok(Self(claims));
        }
        // An `X-API-Key` is verified by the rate-limit middleware only
        // (`super::api_key`); one it did not verify is never ignored.
        if super::api_key::has_api_key(&parts.headers) {
            return Err(ApiError::InvalidApiKey("API key not verified"));
        }
        let verifier = Arc::<Verifier>::from_ref(state);
        authenticate(&verifier, &parts.headers).await.map(Self)
    }
}

/// Verifies the bearer token of `headers`: its claims, or the API's error
/// (`MissingToken` without a bearer token, `InvalidToken` with a bad one).
pub async fn authenticate(
    verifier: &Verifier,
    headers: &HeaderMap,
) -> Result<AccessTokenClaims, ApiError> {
    authenticate_token(verifier, bearer_token(headers)).await
}

/// [`authenticate`] of a bearer token already read by [`bearer_token`].
pub async fn authenticate_token(
    verifier: &Verifier,
    token: Result<&str, ApiError>,
) -> Result<AccessTokenClaims, ApiError> {
    match verifier.verify(token?).await {
        Ok(claims) => {
            // Who called, for the access line (never the token).
            shared::access::record_sub(&claims.sub);
            shared::access::record_client_id(&claims.client_id);
            Ok(claims)
        }
        Err(VerifyError::KeysUnavailable) => {
            tracing::warn!("access token not verifiable: the JWKS is unreachable");
            Err(ApiError::KeysUnavailable)
        }
        Err(error) => {
            let reason = reason(&error);
            tracing::info!(reason, "access token rejected");
            Err(ApiError::InvalidToken(reason))
        }
    }
}

/// The bearer token of `headers`, unverified: `MissingToken` when there is
/// no `Authorization` header or it names another scheme, `InvalidToken`
/// when it is malformed or repeated.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(ApiError::MissingToken);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidToken("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| ApiError::InvalidToken("malformed Authorization header"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another authentication method: a plain challenge (RFC 6750 §3.1).
        return Err(ApiError::MissingToken);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(ApiError::InvalidToken("malformed bearer token"));
    }
    Ok(token)
}

/// A short, safe description of why a token was refused.
fn reason(error: &VerifyError) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match error {
        VerifyError::Malformed => "malformed token",
        VerifyError::Algorithm => "algorithm not allowed",
        VerifyError::Type => "token type is not at+jwt",
        VerifyError::UnknownKey => "unknown signing key",
        VerifyError::KeysUnavailable => "signing keys unavailable",
        VerifyError::CriticalHeader => "critical header extension not understood",
        VerifyError::IssuedInFuture => "token issued in the future",
        VerifyError::LifetimeTooLong => "token lifetime too long",
        VerifyError::Revoked => "token revoked",
        VerifyError::Rejected(e) => match e.kind() {
            ErrorKind::ExpiredSignature => "token expired",
            ErrorKind::ImmatureSignature => "token not yet valid",
            ErrorKind::InvalidIssuer => "wrong issuer",
            ErrorKind::InvalidAudience => "wrong audience",
            ErrorKind::InvalidSignature => "bad signature",
            ErrorKind::MissingRequiredClaim(_) => "missing required claim",
            _ => "token rejected",
        },
    }
}

/// A scope an endpoint requires.
pub trait RequiredScope {
    const NAME: &'static str;
}

/// `notes:read`
#[derive(Debug)]
pub struct NotesRead;
impl RequiredScope for NotesRead {
    const NAME: &'static str = shared::contract::SCOPE_NOTES_READ;
}

/// `notes:write`
#[derive(Debug)]
pub struct NotesWrite;
impl RequiredScope for NotesWrite {
    const NAME: &'static str = shared::contract::SCOPE_NOTES_WRITE;
}

/// Verified claims that hold the scope `R`; otherwise 403 `insufficient_scope`.
#[derive(Debug)]
pub struct Scoped<R>(pub AccessTokenClaims, pub PhantomData<R>);

impl<S, R> FromRequestParts<S> for Scoped<R>
where
    Arc<Verifier>: FromRef<S>,
    DatabaseConnection: FromRef<S>,
    Clock: FromRef<S>,
    S: Send + Sync,
    R: RequiredScope,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated(claims) = Authenticated::from_request_parts(parts, state).await?;
        if !claims.has_scope(R::NAME) {
            // A valid token reaching for what it was not granted: a
            // security event (the 403 stands whatever the write does).
            let event = audit::Event {
                kind: shared::contract::AUDIT_PERMISSION_DENIED,
                user_id: Some(claims.sub.clone()),
                client_id: Some(claims.client_id.clone()),
                detail: serde_json::json!({
                    "route": parts
                        .extensions
                        .get::<MatchedPath>()
                        .map_or(shared::access::UNMATCHED, MatchedPath::as_str),
                    "method": parts.method.as_str(),
                    "required_scope": R::NAME,
                    "client_ip": parts
                        .extensions
                        .get::<ClientIp>()
                        .map(|ip| ip.0.to_string()),
                    "user_agent": shared::client_ip::user_agent(&parts.headers),
                    "outcome": "denied",
                }),
            };
            let db = DatabaseConnection::from_ref(state);
            audit::record(&db, &Clock::from_ref(state), event).await;
            return Err(ApiError::InsufficientScope(R::NAME));
        }
        Ok(Self(claims, PhantomData))
    }
}

/// `axum::Json` whose rejections are problem+json (axum error-handling example).
///
/// The body is read first (413 past the body limit), then refused with 400
/// when arrays and objects nest deeper than [`MAX_JSON_DEPTH`], before the
/// parser recurses; then `axum::Json` checks the `Content-Type` and parses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::Json(e.into()).into_response())?;
        if json_depth_exceeds(&bytes, MAX_JSON_DEPTH) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                Some(format!("JSON nested deeper than {MAX_JSON_DEPTH} levels")),
            )
            .into_response());
        }
        let mut req = Request::new(Body::from(bytes));
        *req.headers_mut() = headers;
        let axum::Json(value) = axum::Json::<T>::from_request(req, state)
            .await
            .map_err(|e| ApiError::Json(e).into_response())?;
        Ok(Self(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::jwt::{DEFAULT_MAX_TOKEN_LIFETIME, KeySource, VerifierSettings};

    /// A verifier that knows no key: it refuses every token.
    fn keyless_verifier() -> Arc<Verifier> {
        Arc::new(
            Verifier::new(VerifierSettings {
                issuer: "http://issuer.test".into(),
                audience: "portcullis-api".into(),
                leeway: std::time::Duration::from_secs(60),
                max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
                source: KeySource::Static(Vec::new()),
                cache_size: shared::jwt::DEFAULT_VERIFY_CACHE_SIZE,
            })
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn authenticated_uses_verified_token_without_verifying_again() {
        let verifier = keyless_verifier();
        let claims = shared::test_util::claims("http://issuer.test", "portcullis-api", "alice", "");
        let (mut parts, ()) = http::Request::builder()
            .header(header::AUTHORIZATION, "Bearer eyJ.eyJ.sig")
            .body(())
            .unwrap()
            .into_parts();
        parts.extensions.insert(VerifiedToken(claims));
        let Authenticated(got) = Authenticated::from_request_parts(&mut parts, &verifier)
            .await
            .unwrap();
        assert_eq!(got.sub, "alice");

        // Without the extension the extractor verifies on its own (and this
        // verifier refuses).
        parts.extensions.clear();
        let refused = Authenticated::from_request_parts(&mut parts, &verifier).await;
        assert!(
            matches!(refused, Err(ApiError::InvalidToken(_))),
            "{refused:?}"
        );
    }
}
