//! The API's error type: every failure becomes an RFC 9457 problem; token
//! failures also carry the RFC 6750 `WWW-Authenticate` challenge.

use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use shared::problem::Problem;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No bearer token at all (or another scheme): `WWW-Authenticate: Bearer`
    /// without an error code (RFC 6750 §3.1).
    #[error("missing access token")]
    MissingToken,
    /// A token was sent but is not acceptable.
    #[error("invalid access token: {0}")]
    InvalidToken(&'static str),
    /// An `X-API-Key` that is not acceptable (wrong, revoked, expired):
    /// 401 with `WWW-Authenticate: ApiKey`.
    #[error("invalid API key: {0}")]
    InvalidApiKey(&'static str),
    /// Both an `X-API-Key` and an `Authorization` header: 400.
    #[error("both an API key and an Authorization header")]
    ConflictingCredentials,
    /// The token lacks the scope the endpoint needs.
    #[error("insufficient scope, {0} required")]
    InsufficientScope(&'static str),
    /// The token's signing key is unknown and the JWKS unreachable: 503.
    #[error("token verification keys unavailable")]
    KeysUnavailable,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A JSON body that could not be read: 400, 413, 415 or 422.
    #[error(transparent)]
    Json(#[from] JsonRejection),
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (problem, challenge) = match &self {
            Self::MissingToken => (
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    Some("an access token is required".into()),
                ),
                Some(HeaderValue::from_static("Bearer")),
            ),
            Self::InvalidToken(reason) => (
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    Some(format!("invalid access token: {reason}")),
                ),
                Some(HeaderValue::from_static(r#"Bearer error="invalid_token""#)),
            ),
            Self::InvalidApiKey(reason) => (
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    Some(format!("invalid API key: {reason}")),
                ),
                Some(HeaderValue::from_static(shared::api_key::CHALLENGE)),
            ),
            Self::ConflictingCredentials => (
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    Some("send either an API key or an Authorization header, not both".into()),
                ),
                None,
            ),
            Self::InsufficientScope(scope) => (
                Problem::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    Some(format!("the access token lacks the scope {scope}")),
                ),
                HeaderValue::from_str(&format!(
                    r#"Bearer error="insufficient_scope", scope="{scope}""#
                ))
                .ok(),
            ),
            Self::KeysUnavailable => (
                Problem::unavailable(
                    "the keys to verify the access token cannot be fetched; retry shortly",
                ),
                None,
            ),
            Self::NotFound => (Problem::not_found(), None),
            Self::MethodNotAllowed => (
                Problem::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", None),
                None,
            ),
            Self::Json(rejection) => (json_problem(rejection), None),
            // A database that is down or too slow is the client's 503 (with
            // Retry-After), not a 500.
            Self::Db(error) if migrations::db::is_unavailable(error) => {
                tracing::warn!(error = %error, "database unavailable");
                (Problem::unavailable("the database is unavailable"), None)
            }
            Self::Db(error) => {
                tracing::error!(error = %error, "database error");
                (Problem::internal(), None)
            }
            Self::Internal(error) => {
                tracing::error!(error = %format!("{error:#}"), "internal error");
                (Problem::internal(), None)
            }
        };
        let mut response = problem.into_response();
        if let Some(value) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

fn json_problem(rejection: &JsonRejection) -> Problem {
    let status = rejection.status();
    let title = status.canonical_reason().unwrap_or("Invalid Request Body");
    let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "the request body is larger than 64 KiB".to_owned()
    } else {
        rejection.body_text()
    };
    Problem::new(status, title, Some(detail))
}
