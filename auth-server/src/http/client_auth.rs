//! Client authentication (RFC 6749 §2.3): `client_secret_basic`,
//! `client_secret_post`, or `none` for public clients. One method per request.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, header};
use shared::oauth_error::{OAuthError, OAuthErrorCode};

use super::form::Form;
use crate::state::AppState;
use crate::store::clients::{self, Client};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Basic,
    Post,
    None,
}

#[derive(Debug, Clone)]
pub struct Presented {
    pub client_id: String,
    pub secret: Option<String>,
    pub method: Method,
}

fn invalid_client(description: &str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidClient, description)
}

fn percent_decode(value: &str) -> Option<String> {
    // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={value}")).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}

/// What credentials the request carries; removes them from the form.
pub fn presented(headers: &HeaderMap, form: &mut Form) -> Result<Option<Presented>, OAuthError> {
    let mut auth_headers = headers.get_all(header::AUTHORIZATION).iter();
    let basic = match (auth_headers.next(), auth_headers.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "more than one Authorization header",
            ));
        }
        (Some(value), None) => {
            let value = value
                .to_str()
                .map_err(|_| invalid_client("malformed Authorization header"))?;
            let (scheme, encoded) = value
                .split_once(' ')
                .ok_or_else(|| invalid_client("malformed Authorization header"))?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(invalid_client(
                    "only HTTP Basic client authentication is supported",
                ));
            }
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| invalid_client("malformed Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| invalid_client("malformed Basic credentials"))?;
            let id =
                percent_decode(id).ok_or_else(|| invalid_client("malformed Basic credentials"))?;
            let secret = percent_decode(secret)
                .ok_or_else(|| invalid_client("malformed Basic credentials"))?;
            Some((id, secret))
        }
    };
    let body_id = form.remove("client_id").filter(|v| !v.is_empty());
    let body_secret = form.remove("client_secret").filter(|v| !v.is_empty());
    match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request(
            "use one client authentication method, not two",
        )),
        (Some((id, secret)), body_id, None) => {
            if body_id.is_some_and(|b| b != id) {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the Authorization header",
                ));
            }
            Ok(Some(Presented {
                client_id: id,
                secret: Some(secret),
                method: Method::Basic,
            }))
        }
        (None, Some(id), secret) => {
            let method = if secret.is_some() {
                Method::Post
            } else {
                Method::None
            };
            Ok(Some(Presented {
                client_id: id,
                secret,
                method,
            }))
        }
        (None, None, Some(_)) => Err(OAuthError::invalid_request(
            "client_secret without client_id",
        )),
        (None, None, None) => Ok(None),
    }
}

/// Authenticates the client a request presents, or fails with `invalid_client`.
pub async fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    form: &mut Form,
) -> Result<(Client, Presented), OAuthError> {
    let presented = presented(headers, form)?
        .ok_or_else(|| invalid_client("client authentication required"))?;
    let client = clients::find(&app.db, &presented.client_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "loading client");
            OAuthError::server_error()
        })?
        .ok_or_else(|| invalid_client("client authentication failed"))?;
    if !client.authenticate(presented.secret.as_deref()) {
        return Err(invalid_client("client authentication failed"));
    }
    Ok((client, presented))
}
