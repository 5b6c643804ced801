//! The admin API (`/api/v2/admin/…`): bearer access tokens of this server
//! whose `roles` hold `admin`. Errors are RFC 9457 problem+json; a missing
//! or invalid token is a 401 with an RFC 6750 challenge, a valid token
//! without the role a 403.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use shared::jwt::AccessTokenClaims;
use shared::problem::Problem;

use crate::audit;
use crate::state::AppState;
use crate::store::lockouts::{self, Kind};

/// The role the admin API requires.
pub const ADMIN_ROLE: &str = "admin";

/// A verified access token of an admin.
pub struct Admin(pub AccessTokenClaims);

fn refused(status: StatusCode, challenge: &'static str, detail: &str) -> Response {
    let mut response = Problem::new(
        status,
        if status == StatusCode::FORBIDDEN {
            "Forbidden"
        } else {
            "Unauthorized"
        },
        Some(detail.to_owned()),
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(refused(
                StatusCode::UNAUTHORIZED,
                "Bearer",
                "a bearer access token is required",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let invalid = || {
            refused(
                StatusCode::UNAUTHORIZED,
                r#"Bearer error="invalid_token""#,
                "the access token is invalid or has expired",
            )
        };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(invalid());
        };
        let claims = app.verifier.verify(token).await.map_err(|_| invalid())?;
        if !claims.roles.iter().any(|r| r == ADMIN_ROLE) {
            return Err(refused(
                StatusCode::FORBIDDEN,
                r#"Bearer error="insufficient_scope""#,
                "this needs the admin role",
            ));
        }
        Ok(Self(claims))
    }
}

/// `GET /api/v2/admin/lockouts`: the lockouts in force, latest first.
pub async fn lockouts_get(State(app): State<AppState>, _admin: Admin) -> Response {
    match lockouts::list(&app.db, app.now()).await {
        Ok(rows) => {
            let list: Vec<_> = rows.iter().map(lockouts::view).collect();
            Json(json!({ "lockouts": list })).into_response()
        }
        Err(e) => crate::fault::problem("listing lockouts", e),
    }
}

/// `DELETE /api/v2/admin/lockouts/{kind}/{subject}` (`kind` = `ip` or
/// `account`; `subject` as listed): lifts a lockout; 204, or 404 when there
/// is none. Audited with the admin's id.
pub async fn lockout_delete(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path((kind, subject)): Path<(String, String)>,
) -> Response {
    let kind = match kind.as_str() {
        "ip" => Kind::Ip,
        "account" => Kind::Account,
        _ => return Problem::not_found().into_response(),
    };
    match lockouts::clear(&app.db, kind, &subject).await {
        Ok(true) => {
            audit::record(
                &app,
                audit::LOCKOUT_CLEARED,
                Some(&admin.sub),
                None,
                json!({"kind": kind.as_str(), "subject": subject, "by": "admin_api"}),
            )
            .await;
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => Problem::not_found().into_response(),
        Err(e) => crate::fault::problem("clearing a lockout", e),
    }
}
