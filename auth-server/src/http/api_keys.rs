//! The API-key admin API (role `admin`):
//!
//! - `POST /api/v2/clients/{id}/api-keys` (optional body
//!   `{"expires_in_days": N}`, 1 to 3650): `201` with the key, shown this
//!   once (`Cache-Control: no-store`);
//! - `GET /api/v2/clients/{id}/api-keys`: the client's keys, never a key
//!   or its hash;
//! - `DELETE /api/v2/clients/{id}/api-keys/{key_id}`: revokes it, `204`.
//!
//! An unknown client or key is a `404`. Creation and revocation are audited
//! (`api_key.created`, `api_key.revoked`) with the admin's id.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use shared::api_key;
use shared::problem::Problem;

use super::admin::{Admin, Origin};
use crate::audit;
use crate::state::AppState;
use crate::store::api_keys::{self, ApiKey, MAX_EXPIRES_IN_DAYS};

/// The collection of a client's keys.
pub const API_KEYS_PATH: &str = "/api/v2/clients/{id}/api-keys";
/// One key of a client.
pub const API_KEY_PATH: &str = "/api/v2/clients/{id}/api-keys/{key_id}";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(API_KEYS_PATH, get(api_keys_get).post(api_keys_post))
        .route(API_KEY_PATH, delete(api_key_delete))
}

/// A key as listed (never the key or its hash).
pub fn view(key: &ApiKey, now: i64) -> Value {
    json!({
        "id": key.id,
        "client_id": key.client_id,
        "mode": key.mode,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "last_used_at": key.last_used_at,
        "active": api_keys::is_active(key, now),
    })
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    expires_in_days: Option<i64>,
}

fn unprocessable(detail: &str) -> Response {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Unprocessable Entity",
        Some(detail.to_owned()),
    )
    .into_response()
}

/// `POST /api/v2/clients/{id}/api-keys`.
pub async fn api_keys_post(
    State(app): State<AppState>,
    Admin(admin): Admin,
    origin: Origin,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body: CreateBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(_) => return unprocessable("expected {\"expires_in_days\": N} or no body"),
        }
    };
    if body
        .expires_in_days
        .is_some_and(|d| !(1..=MAX_EXPIRES_IN_DAYS).contains(&d))
    {
        return unprocessable("expires_in_days must be between 1 and 3650");
    }
    let now = app.now();
    let created = match api_keys::create(&app.db, &id, body.expires_in_days, now).await {
        Ok(Some(created)) => created,
        Ok(None) => return Problem::not_found().into_response(),
        Err(e) => return crate::fault::problem("creating an API key", e),
    };
    audit::record(
        &app,
        api_key::AUDIT_CREATED,
        None,
        Some(&id),
        json!({
            "key_id": created.row.id,
            "by": admin.sub,
            "expires_at": created.row.expires_at,
            "client_ip": origin.client_ip,
            "user_agent": origin.user_agent,
        }),
    )
    .await;
    let mut value = view(&created.row, now);
    value["key"] = json!(created.key);
    let mut response = (StatusCode::CREATED, Json(value)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /api/v2/clients/{id}/api-keys`.
pub async fn api_keys_get(
    State(app): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Response {
    match api_keys::client_exists(&app.db, &id).await {
        Ok(true) => {}
        Ok(false) => return Problem::not_found().into_response(),
        Err(e) => return crate::fault::problem("listing API keys", e),
    }
    match api_keys::list(&app.db, &id).await {
        Ok(keys) => {
            let now = app.now();
            let keys: Vec<Value> = keys.iter().map(|k| view(k, now)).collect();
            Json(json!({ "api_keys": keys })).into_response()
        }
        Err(e) => crate::fault::problem("listing API keys", e),
    }
}

/// `DELETE /api/v2/clients/{id}/api-keys/{key_id}`.
pub async fn api_key_delete(
    State(app): State<AppState>,
    Admin(admin): Admin,
    origin: Origin,
    Path((id, key_id)): Path<(String, String)>,
) -> Response {
    match api_keys::revoke(&app.db, Some(&id), &key_id, app.now()).await {
        Ok(Some(_)) => {
            audit::record(
                &app,
                api_key::AUDIT_REVOKED,
                None,
                Some(&id),
                json!({
                    "key_id": key_id,
                    "by": admin.sub,
                    "client_ip": origin.client_ip,
                    "user_agent": origin.user_agent,
                }),
            )
            .await;
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => Problem::not_found().into_response(),
        Err(e) => crate::fault::problem("revoking an API key", e),
    }
}
