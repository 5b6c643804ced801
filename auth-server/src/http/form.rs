//! Reading `application/x-www-form-urlencoded` bodies: size-limited, each
//! parameter at most once, errors as RFC 6749 JSON.

use axum::extract::Request;
use http::{HeaderMap, header};
use shared::oauth_error::OAuthError;

use super::BODY_LIMIT;
use crate::oauth::Params;

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Reads the body of a form POST.
pub async fn read(request: Request) -> Result<(HeaderMap, Params), OAuthError> {
    let (parts, body) = request.into_parts();
    if !is_form(&parts.headers) {
        return Err(OAuthError::invalid_request(
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        OAuthError::invalid_request(format!("request body larger than {BODY_LIMIT} bytes"))
            .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
    })?;
    Ok((parts.headers, Params::parse(&bytes)?))
}

/// The values of the `Authorization` headers, for client authentication
/// (a value that is not visible ASCII cannot be credentials).
pub fn authorization(headers: &HeaderMap) -> Result<Vec<&str>, OAuthError> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(|v| {
            v.to_str().map_err(|_| {
                OAuthError::new(
                    shared::oauth_error::OAuthErrorCode::InvalidClient,
                    "malformed Authorization header",
                )
            })
        })
        .collect()
}
