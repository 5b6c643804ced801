//! Client authentication (RFC 6749 §2.3): `client_secret_basic`,
//! `client_secret_post`, or `none` for public clients; one method per request.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sea_orm::ConnectionTrait;
use shared::oauth_error::{OAuthError, OAuthErrorCode};

use super::params::Params;
use crate::state::AppState;
use crate::store::clients::Client;

/// The credentials a request carries, before they are checked.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub client_id: String,
    /// None: a public client (`none`); else `client_secret_basic` or
    /// `client_secret_post`.
    pub secret: Option<String>,
}

fn invalid_client(description: &str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidClient, description)
}

/// Undoes the `application/x-www-form-urlencoded` encoding that RFC 6749
/// §2.3.1 applies to the id and the secret before Basic encoding: `+` is a
/// space, `%XX` a byte; nothing else is special (an `&` stays an `&`).
fn form_decode(value: &str) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, split at the first colon.
fn parse_basic(value: &str) -> Result<(String, String), OAuthError> {
    let malformed = || invalid_client("malformed Basic credentials");
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
        .ok_or_else(malformed)?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok((
        form_decode(id).ok_or_else(malformed)?,
        form_decode(secret).ok_or_else(malformed)?,
    ))
}

impl Credentials {
    /// What the request presents: the `Authorization` header values and the
    /// `client_id`/`client_secret` parameters (removed from `params`).
    pub fn take(authorization: &[&str], params: &mut Params) -> Result<Option<Self>, OAuthError> {
        let basic = match authorization {
            [] => None,
            [value] => Some(parse_basic(value)?),
            _ => {
                return Err(OAuthError::invalid_request(
                    "more than one Authorization header",
                ));
            }
        };
        let body_id = params.remove("client_id");
        let body_secret = params.remove("client_secret");
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
                Ok(Some(Self {
                    client_id: id,
                    secret: Some(secret),
                }))
            }
            (None, Some(id), secret) => Ok(Some(Self {
                client_id: id,
                secret,
            })),
            (None, None, Some(_)) => Err(OAuthError::invalid_request(
                "client_secret without client_id",
            )),
            (None, None, None) => Ok(None),
        }
    }
}

/// Where [`authenticate`] may take the client's row from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client cache (`crate::cache`), which may be behind a change made
    /// by another process: the grant then checks the client's revision in
    /// its own statement or with [`confirm`], and the token endpoint runs it
    /// once more with the row read afresh when the client changed.
    Cache,
    /// The database, now.
    Database,
}

/// The client the credentials name, if they are right; else `invalid_client`.
pub async fn authenticate(
    app: &AppState,
    credentials: Option<&Credentials>,
    source: Source,
) -> Result<Client, OAuthError> {
    let credentials =
        credentials.ok_or_else(|| invalid_client("client authentication required"))?;
    let secret = credentials.secret.as_deref();
    let now = app.now();
    // A secret the cached client refuses is checked once more against the
    // row itself, so that a secret rotated in by another process works at
    // once.
    let cached = match source {
        Source::Cache => app.clients.cached(&credentials.client_id),
        Source::Database => None,
    };
    let client = match cached {
        Some(client) if client.authenticate(secret, now) => client,
        _ => {
            let client = app
                .clients
                .load(&app.db, &credentials.client_id)
                .await
                .map_err(|e| crate::fault::oauth("loading client", e))?
                .ok_or_else(|| invalid_client("client authentication failed"))?;
            if !client.authenticate(secret, now) {
                return Err(invalid_client("client authentication failed"));
            }
            client
        }
    };
    shared::access::record_client_id(&client.id);
    Ok(Client::clone(&client))
}

/// What a grant answers when the client it was given is no longer the row
/// in the database (another process rotated its secret or deleted it since
/// this one cached it): `invalid_client`, with nothing changed. No grant
/// answers `invalid_client` otherwise, so the token endpoint takes it as
/// its cue to authenticate afresh and run the grant once more.
pub fn changed() -> OAuthError {
    invalid_client("client authentication failed")
}

/// Ok if `client` is still the row in `db` (same revision); else
/// [`changed`]. One read of one column.
pub async fn confirm<C: ConnectionTrait>(db: &C, client: &Client) -> Result<(), OAuthError> {
    match crate::store::clients::is_current(db, &client.id, client.revision).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            crate::cache::forget_client(&client.id);
            Err(changed())
        }
        Err(e) => Err(crate::fault::oauth("checking client", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    #[test]
    fn parse_basic_keeps_ampersand_in_secret() {
        let (id, secret) = parse_basic(&basic("id:secret&x")).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("id", "secret&x"));
    }

    #[test]
    fn parse_basic_splits_at_first_colon_and_form_decodes() {
        let cases = [
            ("a:b:c", ("a", "b:c")),
            ("my%20id:p%3Ass+w", ("my id", "p:ss w")),
            ("a%26b:%25", ("a&b", "%")),
        ];
        for (raw, (id, secret)) in cases {
            let parsed = parse_basic(&basic(raw)).unwrap();
            assert_eq!(
                (parsed.0.as_str(), parsed.1.as_str()),
                (id, secret),
                "{raw}"
            );
        }
    }

    #[test]
    fn parse_basic_rejects_malformed_credentials() {
        for value in [
            basic("no-colon"),
            basic("id:%zz"),
            basic("id:%4"),
            "Bearer abc".to_owned(),
            "Basic !!!".to_owned(),
            "Basic".to_owned(),
        ] {
            let err = parse_basic(&value).unwrap_err();
            assert_eq!(err.code, OAuthErrorCode::InvalidClient, "{value}");
        }
    }

    #[test]
    fn take_refuses_two_methods() {
        let mut params = Params::parse(b"client_secret=s").unwrap();
        let err = Credentials::take(&[&basic("id:s")], &mut params).unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
    }
}
