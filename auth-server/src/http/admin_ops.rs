//! Admin operations on users, clients and the audit log (`/api/v2/admin/…`),
//! each behind the [`Admin`] extractor (the `admin` role): disable and
//! enable a user, revoke every token of a user or a client, list clients,
//! read the audit log. Answers are RFC 9457 problem+json on failure and one
//! `Serialize` struct per success body; every change is audited with the
//! admin's `sub`, the client address and the user agent.
//!
//! Access tokens are JWTs verified offline: revoking or disabling ends
//! refresh tokens and sessions at once, but an access token issued before
//! stays valid until it expires (15 minutes by default).

use std::collections::BTreeSet;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use shared::problem::Problem;
use shared::revocation::SubjectKind;

use super::admin::{Admin, Origin};
use super::validation::{FieldError, problem, unprocessable};
use crate::audit;
use crate::since::{parse_since, rfc3339};
use crate::state::AppState;
use crate::store::admin::{self as store, AuditFilter, Revoked};
use crate::store::audit as kinds;
use crate::store::entities::audit_events;

pub const ADMIN_USER_DISABLE_PATH: &str = "/api/v2/admin/users/{id}/disable";
pub const ADMIN_USER_ENABLE_PATH: &str = "/api/v2/admin/users/{id}/enable";
pub const ADMIN_USER_REVOKE_TOKENS_PATH: &str = "/api/v2/admin/users/{id}/revoke-tokens";
pub const ADMIN_CLIENT_REVOKE_TOKENS_PATH: &str = "/api/v2/admin/clients/{id}/revoke-tokens";
pub const ADMIN_CLIENTS_PATH: &str = "/api/v2/admin/clients";
pub const ADMIN_AUDIT_PATH: &str = "/api/v2/admin/audit";

/// Page size of the lists: default and largest.
pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 100;

/// The longest id, kind or cursor looked at.
const MAX_ID_LEN: usize = 128;
/// The longest unknown parameter name echoed back.
const MAX_ECHOED_NAME: usize = 64;

/// The routes of this module (state: [`AppState`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(ADMIN_USER_DISABLE_PATH, post(user_disable_post))
        .route(ADMIN_USER_ENABLE_PATH, post(user_enable_post))
        .route(ADMIN_USER_REVOKE_TOKENS_PATH, post(user_revoke_tokens_post))
        .route(
            ADMIN_CLIENT_REVOKE_TOKENS_PATH,
            post(client_revoke_tokens_post),
        )
        .route(ADMIN_CLIENTS_PATH, get(clients_get))
        .route(ADMIN_AUDIT_PATH, get(audit_get))
}

// ---------------------------------------------------------------- bodies

/// `POST /api/v2/admin/users/{id}/disable`.
#[derive(Debug, Serialize)]
pub struct UserDisabledBody {
    pub user_id: String,
    pub disabled: bool,
    /// RFC 3339; the first time it was disabled, if it already was.
    pub disabled_at: String,
    pub sessions_ended: u64,
    pub refresh_tokens_revoked: u64,
    pub codes_discarded: u64,
    /// Access tokens already issued stay valid until they expire.
    pub access_tokens_valid_until: String,
}

/// `POST /api/v2/admin/users/{id}/enable`.
#[derive(Debug, Serialize)]
pub struct UserEnabledBody {
    pub user_id: String,
    pub disabled: bool,
}

/// `POST /api/v2/admin/users/{id}/revoke-tokens`.
#[derive(Debug, Serialize)]
pub struct UserTokensRevokedBody {
    pub user_id: String,
    pub refresh_tokens_revoked: u64,
    pub codes_discarded: u64,
}

/// `POST /api/v2/admin/clients/{id}/revoke-tokens`.
#[derive(Debug, Serialize)]
pub struct ClientTokensRevokedBody {
    pub client_id: String,
    pub refresh_tokens_revoked: u64,
    pub codes_discarded: u64,
}

/// One client of `GET /api/v2/admin/clients` (never its secret or hash).
#[derive(Debug, Serialize)]
pub struct ClientView {
    pub id: String,
    pub name: String,
    /// `public` or `confidential`.
    pub kind: &'static str,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub grant_types: Vec<&'static str>,
    /// `standard` or `premium`.
    pub tier: &'static str,
    /// The client's refresh grace window; null = the server default.
    pub refresh_grace_secs: Option<i64>,
    /// RFC 3339.
    pub created_at: String,
}

/// `GET /api/v2/admin/clients`.
#[derive(Debug, Serialize)]
pub struct ClientsBody {
    pub clients: Vec<ClientView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One event of `GET /api/v2/admin/audit`.
#[derive(Debug, Serialize)]
pub struct AuditEventView {
    pub id: String,
    /// RFC 3339.
    pub at: String,
    pub kind: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// The event's details as recorded (never a secret).
    pub detail: serde_json::Value,
}

/// `GET /api/v2/admin/audit`.
#[derive(Debug, Serialize)]
pub struct AuditBody {
    pub events: Vec<AuditEventView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------- queries

/// The query of `GET /api/v2/admin/clients`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

const CLIENTS_QUERY: &[&str] = &["limit", "cursor"];

/// The query of `GET /api/v2/admin/audit`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    kind: Option<String>,
    since: Option<String>,
    user_id: Option<String>,
    client_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

const AUDIT_QUERY: &[&str] = &["kind", "since", "user_id", "client_id", "limit", "cursor"];

/// Why a query string was refused.
enum QueryRefusal {
    /// Not `application/x-www-form-urlencoded`: 400.
    Unreadable,
    /// Unknown or repeated parameters: 422 naming each.
    Fields(Vec<FieldError>),
}

impl IntoResponse for QueryRefusal {
    fn into_response(self) -> Response {
        match self {
            Self::Unreadable => problem(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "the query string cannot be read",
            ),
            Self::Fields(errors) => unprocessable(&errors),
        }
    }
}

/// Reads a query string into `T` (all optional strings, unknown fields
/// denied), whose fields are `known`: 422 naming each unknown parameter
/// (`unknown_field`) and each one given twice (`duplicate`).
fn read_query<T: DeserializeOwned>(raw: Option<&str>, known: &[&str]) -> Result<T, QueryRefusal> {
    let raw = raw.unwrap_or_default();
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw).map_err(|_| QueryRefusal::Unreadable)?;
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, _) in &pairs {
        if !known.contains(&name.as_str()) {
            let name: String = name.chars().take(MAX_ECHOED_NAME).collect();
            errors.push(FieldError::new(
                &name,
                "unknown_field",
                format!(
                    "{name} is not a parameter of this request, which takes {} only",
                    known.join(", ")
                ),
            ));
        } else if !seen.insert(name.as_str()) {
            errors.push(FieldError::new(
                name,
                "duplicate",
                format!("{name} is given more than once"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(QueryRefusal::Fields(errors));
    }
    serde_urlencoded::from_str(raw).map_err(|_| QueryRefusal::Unreadable)
}

/// `limit`: 1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
fn read_limit(raw: Option<&str>, errors: &mut Vec<FieldError>) -> u64 {
    match raw.map(str::parse::<u64>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            errors.push(FieldError::new(
                "limit",
                "range",
                format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
            ));
            DEFAULT_LIMIT
        }
    }
}

/// An id filter: 1 to [`MAX_ID_LEN`] characters.
fn read_id(field: &str, raw: Option<String>, errors: &mut Vec<FieldError>) -> Option<String> {
    let value = raw?;
    if value.is_empty() || value.len() > MAX_ID_LEN {
        errors.push(FieldError::new(
            field,
            "length",
            format!("{field} must have 1 to {MAX_ID_LEN} characters"),
        ));
        return None;
    }
    Some(value)
}

fn encode_cursor(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(value)
}

fn decode_cursor(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > 2 * MAX_ID_LEN + 32 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    String::from_utf8(bytes).ok()
}

fn bad_cursor() -> FieldError {
    FieldError::new(
        "cursor",
        "invalid",
        "cursor must be a next_cursor value of an earlier page",
    )
}

// ---------------------------------------------------------------- handlers

/// The audit detail of an admin action: who did it, from where, and what
/// came of it.
fn admin_detail(admin: &Admin, origin: &Origin, outcome: &str) -> serde_json::Value {
    json!({
        "actor": admin.0.sub,
        "actor_client_id": admin.0.client_id,
        "client_ip": origin.client_ip,
        "user_agent": origin.user_agent,
        "outcome": outcome,
        "by": "admin_api",
    })
}

/// `POST /api/v2/admin/users/{id}/disable`: ends the user's login sessions,
/// revokes their refresh tokens (every family) and unexchanged codes; from
/// then on sign-in, refresh and code exchange fail. Idempotent; 404 for an
/// unknown id. Access tokens already issued stay valid until they expire.
pub async fn user_disable_post(
    State(app): State<AppState>,
    admin: Admin,
    origin: Origin,
    Path(id): Path<String>,
) -> Response {
    let now = app.now();
    let ttl = app.settings.auth_access_token_ttl_secs;
    let disabled = match store::disable_user(&app.db, &id, now, ttl).await {
        Ok(Some(disabled)) => disabled,
        Ok(None) => return Problem::not_found().into_response(),
        Err(e) => return crate::fault::problem("disabling a user", e),
    };
    crate::revocations::announce(
        &app.settings,
        disabled.revoked.record(SubjectKind::User, &id),
    );
    let mut detail = admin_detail(
        &admin,
        &origin,
        if disabled.changed {
            "disabled"
        } else {
            "already_disabled"
        },
    );
    detail["sessions_ended"] = json!(disabled.sessions);
    detail["refresh_tokens_revoked"] = json!(disabled.revoked.refresh_tokens);
    detail["codes_discarded"] = json!(disabled.revoked.codes);
    audit::record(&app, kinds::USER_DISABLED, Some(&id), None, detail).await;
    Json(UserDisabledBody {
        user_id: id,
        disabled: true,
        disabled_at: rfc3339(disabled.disabled_at),
        sessions_ended: disabled.sessions,
        refresh_tokens_revoked: disabled.revoked.refresh_tokens,
        codes_discarded: disabled.revoked.codes,
        access_tokens_valid_until: rfc3339(
            now.saturating_add(app.settings.auth_access_token_ttl_secs),
        ),
    })
    .into_response()
}

/// `POST /api/v2/admin/users/{id}/enable`: the user can sign in again.
/// Idempotent; 404 for an unknown id.
pub async fn user_enable_post(
    State(app): State<AppState>,
    admin: Admin,
    origin: Origin,
    Path(id): Path<String>,
) -> Response {
    let changed = match store::enable_user(&app.db, &id, app.now()).await {
        Ok(Some(changed)) => changed,
        Ok(None) => return Problem::not_found().into_response(),
        Err(e) => return crate::fault::problem("enabling a user", e),
    };
    let outcome = if changed {
        "enabled"
    } else {
        "already_enabled"
    };
    audit::record(
        &app,
        kinds::USER_ENABLED,
        Some(&id),
        None,
        admin_detail(&admin, &origin, outcome),
    )
    .await;
    Json(UserEnabledBody {
        user_id: id,
        disabled: false,
    })
    .into_response()
}

fn revoked_detail(
    admin: &Admin,
    origin: &Origin,
    of: &str,
    revoked: &Revoked,
) -> serde_json::Value {
    let mut detail = admin_detail(admin, origin, "revoked");
    detail["of"] = json!(of);
    detail["refresh_tokens_revoked"] = json!(revoked.refresh_tokens);
    detail["codes_discarded"] = json!(revoked.codes);
    detail
}

/// `POST /api/v2/admin/users/{id}/revoke-tokens`: every refresh token of the
/// user (all clients, all families) and their unexchanged codes.
pub async fn user_revoke_tokens_post(
    State(app): State<AppState>,
    admin: Admin,
    origin: Origin,
    Path(id): Path<String>,
) -> Response {
    let ttl = app.settings.auth_access_token_ttl_secs;
    let revoked = match store::revoke_user_tokens(&app.db, &id, app.now(), ttl).await {
        Ok(Some(revoked)) => revoked,
        Ok(None) => return Problem::not_found().into_response(),
        Err(e) => return crate::fault::problem("revoking a user's tokens", e),
    };
    crate::revocations::announce(&app.settings, revoked.record(SubjectKind::User, &id));
    audit::record(
        &app,
        kinds::TOKENS_REVOKED_BY_ADMIN,
        Some(&id),
        None,
        revoked_detail(&admin, &origin, "user", &revoked),
    )
    .await;
    Json(UserTokensRevokedBody {
        user_id: id,
        refresh_tokens_revoked: revoked.refresh_tokens,
        codes_discarded: revoked.codes,
    })
    .into_response()
}

/// `POST /api/v2/admin/clients/{id}/revoke-tokens`: every refresh token
/// issued to the client (all users) and its unexchanged codes.
pub async fn client_revoke_tokens_post(
    State(app): State<AppState>,
    admin: Admin,
    origin: Origin,
    Path(id): Path<String>,
) -> Response {
    let ttl = app.settings.auth_access_token_ttl_secs;
    let revoked = match store::revoke_client_tokens(&app.db, &id, app.now(), ttl).await {
        Ok(Some(revoked)) => revoked,
        Ok(None) => return Problem::not_found().into_response(),
        Err(e) => return crate::fault::problem("revoking a client's tokens", e),
    };
    crate::revocations::announce(&app.settings, revoked.record(SubjectKind::Client, &id));
    audit::record(
        &app,
        kinds::TOKENS_REVOKED_BY_ADMIN,
        None,
        Some(&id),
        revoked_detail(&admin, &origin, "client", &revoked),
    )
    .await;
    Json(ClientTokensRevokedBody {
        client_id: id,
        refresh_tokens_revoked: revoked.refresh_tokens,
        codes_discarded: revoked.codes,
    })
    .into_response()
}

/// `GET /api/v2/admin/clients?limit=&cursor=`: registered clients by id.
pub async fn clients_get(
    State(app): State<AppState>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> Response {
    let query: ClientsQuery = match read_query(raw.as_deref(), CLIENTS_QUERY) {
        Ok(query) => query,
        Err(refusal) => return refusal.into_response(),
    };
    let mut errors = Vec::new();
    let limit = read_limit(query.limit.as_deref(), &mut errors);
    let after = match query.cursor.as_deref().map(decode_cursor) {
        None => None,
        Some(Some(after)) => Some(after),
        Some(None) => {
            errors.push(bad_cursor());
            None
        }
    };
    if !errors.is_empty() {
        return unprocessable(&errors);
    }
    // One more than asked: whether there is a next page.
    let mut rows = match store::list_clients(&app.db, after.as_deref(), limit + 1).await {
        Ok(rows) => rows,
        Err(e) => return crate::fault::problem("listing clients", e),
    };
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| encode_cursor(&r.client.id))
    } else {
        None
    };
    let clients = rows
        .into_iter()
        .map(|row| {
            let client = row.client;
            ClientView {
                kind: if client.is_public() {
                    "public"
                } else {
                    "confidential"
                },
                scopes: client.scopes.iter().map(str::to_owned).collect(),
                grant_types: client.grant_types.iter().map(|g| g.as_str()).collect(),
                tier: client.tier.as_str(),
                refresh_grace_secs: client.refresh_grace_secs,
                created_at: rfc3339(row.created_at),
                redirect_uris: client.redirect_uris,
                name: client.name,
                id: client.id,
            }
        })
        .collect();
    Json(ClientsBody {
        clients,
        next_cursor,
    })
    .into_response()
}

/// `GET /api/v2/admin/audit?kind=&since=&user_id=&client_id=&limit=&cursor=`:
/// audit events, newest first. `since`: RFC 3339 or a duration back from
/// now (`15m`, `2h`, `7d`).
pub async fn audit_get(
    State(app): State<AppState>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> Response {
    let query: AuditQuery = match read_query(raw.as_deref(), AUDIT_QUERY) {
        Ok(query) => query,
        Err(refusal) => return refusal.into_response(),
    };
    let mut errors = Vec::new();
    let limit = read_limit(query.limit.as_deref(), &mut errors);
    let kind = query.kind.filter(|kind| {
        let ok = !kind.is_empty()
            && kind.len() <= 64
            && kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
        if !ok {
            errors.push(FieldError::new(
                "kind",
                "format",
                "kind must be an event kind such as login.failed",
            ));
        }
        ok
    });
    let since = match query.since.as_deref().map(|s| parse_since(s, app.now())) {
        None => None,
        Some(Ok(at)) => Some(at),
        Some(Err(why)) => {
            errors.push(FieldError::new("since", "format", why));
            None
        }
    };
    let user_id = read_id("user_id", query.user_id, &mut errors);
    let client_id = read_id("client_id", query.client_id, &mut errors);
    let before = match query.cursor.as_deref().map(|raw| {
        decode_cursor(raw).and_then(|c| {
            let (at, id) = c.split_once(':')?;
            Some((at.parse::<i64>().ok()?, id.to_owned()))
        })
    }) {
        None => None,
        Some(Some(before)) => Some(before),
        Some(None) => {
            errors.push(bad_cursor());
            None
        }
    };
    if !errors.is_empty() {
        return unprocessable(&errors);
    }
    let filter = AuditFilter {
        kind,
        since,
        user_id,
        client_id,
        before,
    };
    let mut rows = match store::list_audit(&app.db, &filter, limit + 1).await {
        Ok(rows) => rows,
        Err(e) => return crate::fault::problem("listing audit events", e),
    };
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| encode_cursor(&format!("{}:{}", r.at, r.id)))
    } else {
        None
    };
    Json(AuditBody {
        events: rows.into_iter().map(event_view).collect(),
        next_cursor,
    })
    .into_response()
}

fn event_view(row: audit_events::Model) -> AuditEventView {
    let detail = serde_json::from_str(&row.detail).unwrap_or(serde_json::Value::String(row.detail));
    AuditEventView {
        id: row.id,
        at: rfc3339(row.at),
        kind: row.kind,
        user_id: row.user_id,
        client_id: row.client_id,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_refuses_garbage() {
        let c = encode_cursor("1800000000:abc");
        assert_eq!(decode_cursor(&c).as_deref(), Some("1800000000:abc"));
        assert_eq!(decode_cursor(""), None);
        assert_eq!(decode_cursor("!!!"), None);
        assert_eq!(decode_cursor(&"A".repeat(1000)), None);
    }

    #[test]
    fn read_limit_takes_1_to_100() {
        let mut errors = Vec::new();
        assert_eq!(read_limit(None, &mut errors), DEFAULT_LIMIT);
        assert_eq!(read_limit(Some("1"), &mut errors), 1);
        assert_eq!(read_limit(Some("100"), &mut errors), 100);
        assert!(errors.is_empty());
        for bad in ["0", "101", "-1", "x", ""] {
            let mut errors = Vec::new();
            read_limit(Some(bad), &mut errors);
            assert_eq!(errors.len(), 1, "{bad}");
            assert_eq!(errors[0].rule, "range");
        }
    }
}
