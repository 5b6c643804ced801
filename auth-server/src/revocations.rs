//! Instant revocation, the auth server's side (`shared::revocation`): the
//! records written by `store::admin` and `store::revocations` are served to
//! resource APIs at `GET /api/v2/revocations` (bearer `REVOCATIONS_TOKEN`)
//! and published on Redis when `REDIS_URL` is set.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use shared::problem::Problem;
use shared::revocation::{REVOCATIONS_PATH, Record, RevocationList, SubjectKind};
use shared::revocation_feed::MIN_TOKEN_LEN;

use crate::config::Settings;
use crate::state::AppState;
use crate::store::revocations as store;

/// `REVOCATIONS_TOKEN`, when set (blank counts as unset).
pub fn configured_token(settings: &Settings) -> Option<&str> {
    settings
        .revocations_token
        .as_deref()
        .filter(|token| !token.trim().is_empty())
}

/// Refuses a `REVOCATIONS_TOKEN` too short to be a secret.
pub fn check_token(token: Option<&str>) -> anyhow::Result<()> {
    match token {
        Some(token) if !token.trim().is_empty() && token.len() < MIN_TOKEN_LEN => {
            anyhow::bail!(
                "REVOCATIONS_TOKEN must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -base64 32`)"
            )
        }
        _ => Ok(()),
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route(REVOCATIONS_PATH, get(revocations_get))
}

fn unauthorized() -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", None).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"portcullis\""),
    );
    response
}

/// Whether `headers` carry `Authorization: Bearer <expected>` (compared in
/// constant time).
fn authorized(headers: &HeaderMap, expected: &str) -> bool {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && shared::secret::verify(token.trim(), &shared::secret::hash(expected))
}

/// `GET /api/v2/revocations[?since=UNIX_SECS]`: the records in force
/// (`{"revocations":[{"kind","subject","not_before","expires_at"}]}`),
/// those with `not_before >= since` when given. 404 when
/// `REVOCATIONS_TOKEN` is unset; 401 without that bearer token.
pub async fn revocations_get(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(expected) = configured_token(&app.settings) else {
        return Problem::not_found().into_response();
    };
    if !authorized(&headers, expected) {
        tracing::warn!("revocations requested without the right token");
        return unauthorized();
    }
    let mut since = None;
    for (name, value) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match (name.as_ref(), value.parse::<i64>()) {
            ("since", Ok(value)) => since = Some(value),
            _ => {
                return Problem::bad_request("the only parameter is since=UNIX_SECONDS")
                    .into_response();
            }
        }
    }
    match store::active(&app.db, app.now(), since).await {
        Ok(revocations) => Json(RevocationList { revocations }).into_response(),
        Err(e) => crate::fault::problem("listing revocations", e),
    }
}

/// Publishes `record` on Redis when `REDIS_URL` is set; a failure is
/// logged (resource APIs also poll). Runs on its own task so that a slow
/// Redis never holds the response.
pub fn announce(settings: &Settings, record: Option<Record>) {
    let (Some(redis_url), Some(record)) = (settings.redis_url.clone(), record) else {
        return;
    };
    let prefix = settings.redis_key_prefix.clone();
    tokio::spawn(async move {
        announce_now(&redis_url, &prefix, &record).await;
    });
}

/// [`announce`], awaited (the CLI, which exits right after).
pub async fn announce_now(redis_url: &str, prefix: &str, record: &Record) {
    if let Err(e) = shared::revocation_feed::publish(redis_url, prefix, record).await {
        tracing::warn!(
            error = %format!("{e:#}"),
            "revocation not published on Redis; resource APIs will poll it"
        );
    }
}

/// [`announce_now`] when `REDIS_URL` is set (the CLI).
pub async fn announce_cli(settings: &Settings, record: Option<Record>) {
    if let (Some(redis_url), Some(record)) = (settings.redis_url.as_deref(), record) {
        announce_now(redis_url, &settings.redis_key_prefix, &record).await;
    }
}

/// Whether a revocation record voids `claims` (introspection: the auth
/// server answers from its database). A database failure counts as voided:
/// introspection then says inactive rather than vouch for a token unchecked.
pub async fn voided(app: &AppState, claims: &shared::jwt::AccessTokenClaims) -> bool {
    let now = app.now();
    for (kind, subject) in [
        (SubjectKind::User, claims.sub.as_str()),
        (SubjectKind::Client, claims.client_id.as_str()),
    ] {
        match store::find(&app.db, kind, subject, now).await {
            Ok(Some(record)) if record.not_before > claims.iat => return true,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "revocations not readable: token reported inactive");
                return true;
            }
        }
    }
    false
}
