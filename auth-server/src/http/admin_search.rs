//! `GET /api/v2/admin/users?q=&limit=&order_by=&cursor=` (admin role): a
//! page of users, searched by email or name, with the rules of
//! `shared::search`. A refused parameter is a 422 naming it and its rule; a
//! `q` holding an injection pattern is also recorded as a
//! `suspicious_input` security event with the admin's id, address and user
//! agent (the term itself only as data in the event, never in a log line).

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use http::HeaderMap;
use serde::Serialize;
use shared::client_ip::ClientIp;
use shared::search;

use super::admin::Admin;
use super::validation::{FieldError, unprocessable};
use crate::audit;
use crate::since::rfc3339;
use crate::state::AppState;
use crate::store::user_search::{self, USERS_SEARCH};
use crate::store::users::{self, User};

pub const ADMIN_USERS_PATH: &str = "/api/v2/admin/users";

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route(ADMIN_USERS_PATH, get(users_get))
}

/// A user as the admin API shows it: never a password hash. Times are
/// RFC 3339 UTC.
#[derive(Debug, Serialize)]
pub struct AdminUser {
    id: String,
    email: String,
    name: String,
    roles: Vec<String>,
    tier: &'static str,
    created_at: String,
    updated_at: String,
    /// `null` while the account is enabled.
    disabled_at: Option<String>,
}

impl From<User> for AdminUser {
    fn from(user: User) -> Self {
        Self {
            roles: users::roles(&user),
            tier: users::tier(&user).as_str(),
            created_at: rfc3339(user.created_at),
            updated_at: rfc3339(user.updated_at),
            disabled_at: user.disabled_at.map(rfc3339),
            id: user.id,
            email: user.email,
            name: user.name,
        }
    }
}

/// A page of users: `next_cursor` is `null` on the last page.
#[derive(Debug, Serialize)]
pub struct AdminUserList {
    users: Vec<AdminUser>,
    next_cursor: Option<String>,
}

/// `GET /api/v2/admin/users`.
pub async fn users_get(
    State(app): State<AppState>,
    Admin(admin): Admin,
    client_ip: Option<Extension<ClientIp>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let search = match search::parse(&USERS_SEARCH, query.as_deref()) {
        Ok(search) => search,
        Err(refusal) => {
            if let Some(suspicious) = &refusal.suspicious {
                tracing::warn!(
                    pattern = suspicious.pattern,
                    "search refused: suspicious input"
                );
                audit::record(
                    &app,
                    crate::store::audit::SUSPICIOUS_INPUT,
                    Some(&admin.sub),
                    Some(&admin.client_id),
                    search::audit_detail(
                        ADMIN_USERS_PATH,
                        client_ip.map(|Extension(ip)| ip.0),
                        &headers,
                        suspicious,
                    ),
                )
                .await;
            }
            // The 422 shape of the auth server's other endpoints.
            let errors: Vec<FieldError> = refusal
                .errors
                .iter()
                .map(|e| FieldError::new(&e.field, e.rule, e.detail.clone()))
                .collect();
            return unprocessable(&errors);
        }
    };
    match user_search::search(&app.db, &search).await {
        Ok(page) => Json(AdminUserList {
            users: page.users.into_iter().map(AdminUser::from).collect(),
            next_cursor: page.next_cursor,
        })
        .into_response(),
        Err(e) => crate::fault::problem("searching users", e),
    }
}
