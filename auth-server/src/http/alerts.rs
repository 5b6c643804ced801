//! `GET /api/v2/admin/alerts` (role `admin`): the security alerts of this
//! process (`shared::alerts`), newest first, active and cleared.

use axum::Json;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::http::admin::Admin;
use crate::state::AppState;

/// The path of the alert list.
pub const ADMIN_ALERTS_PATH: &str = "/api/v2/admin/alerts";

#[derive(Serialize)]
struct AlertList {
    alerts: Vec<shared::alerts::Alert>,
}

pub async fn alerts_get(_admin: Admin) -> Response {
    Json(AlertList {
        alerts: shared::alerts::list(),
    })
    .into_response()
}

/// The route, for `admin_routes`.
pub fn routes() -> Router<AppState> {
    Router::new().route(ADMIN_ALERTS_PATH, get(alerts_get))
}
