//! `GET /api/v2/me`: who the token speaks for. No scope required.

use serde::Serialize;

use crate::http::extract::{Authenticated, Json};

#[derive(Debug, Serialize)]
pub struct MeResponse {
    sub: String,
    client_id: String,
    scope: String,
    roles: Vec<String>,
}

pub async fn me_get(Authenticated(claims): Authenticated) -> Json<MeResponse> {
    Json(MeResponse {
        sub: claims.sub,
        client_id: claims.client_id,
        scope: claims.scope,
        roles: claims.roles,
    })
}
