//! The admin API (`/api/v2/admin/…`): bearer access tokens of this server
//! whose `roles` hold `admin`. Errors are RFC 9457 problem+json; a missing
//! or invalid token is a 401 with an RFC 6750 challenge, a valid token
//! without the role a 403.

use axum::Json;
use axum::extract::{FromRequestParts, MatchedPath, Path, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use shared::jwt::AccessTokenClaims;
use shared::problem::Problem;

use crate::audit;
use crate::state::AppState;
use crate::store::audit as kinds;
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

/// Reads and verifies the request's bearer access token: exactly one
/// `Authorization: Bearer …` header holding a token this server signed,
/// unexpired, for its audience. The one place the admin API reads a token.
pub async fn bearer_claims(parts: &Parts, app: &AppState) -> Result<AccessTokenClaims, Response> {
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
    shared::access::record_sub(&claims.sub);
    shared::access::record_client_id(&claims.client_id);
    Ok(claims)
}

/// Where a request came from, for audit events: the client address the
/// `shared::client_ip` layer found and the `User-Agent` (trimmed).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Origin {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Origin {
    pub fn of(parts: &Parts) -> Self {
        Self {
            client_ip: parts
                .extensions
                .get::<shared::client_ip::ClientIp>()
                .map(|ip| ip.0.to_string()),
            user_agent: shared::client_ip::user_agent(&parts.headers),
        }
    }
}

impl FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let claims = bearer_claims(parts, app).await?;
        if !claims.roles.iter().any(|r| r == ADMIN_ROLE) {
            // A signed-in caller reaching for an admin function: a security
            // event (the 403 stands whatever the audit write does).
            let route = parts
                .extensions
                .get::<MatchedPath>()
                .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
            let origin = Origin::of(parts);
            audit::record(
                app,
                kinds::PERMISSION_DENIED,
                Some(&claims.sub),
                Some(&claims.client_id),
                json!({
                    "route": route,
                    "method": parts.method.as_str(),
                    "required_role": ADMIN_ROLE,
                    "client_ip": origin.client_ip,
                    "user_agent": origin.user_agent,
                    "outcome": "denied",
                }),
            )
            .await;
            return Err(refused(
                StatusCode::FORBIDDEN,
                r#"Bearer error="insufficient_scope""#,
                "this needs the admin role",
            ));
        }
        Ok(Self(claims))
    }
}

/// One lockout in force, as `GET /api/v2/admin/lockouts` lists it.
#[derive(Debug, serde::Serialize)]
pub struct LockoutView {
    /// `ip` or `account`.
    pub kind: String,
    pub subject: String,
    pub failures: i64,
    /// Unix seconds.
    pub locked_at: i64,
    /// Unix seconds.
    pub locked_until: i64,
}

/// The body of `GET /api/v2/admin/lockouts`.
#[derive(Debug, serde::Serialize)]
pub struct LockoutsBody {
    pub lockouts: Vec<LockoutView>,
}

/// `GET /api/v2/admin/lockouts`: the lockouts in force, latest first.
pub async fn lockouts_get(State(app): State<AppState>, _admin: Admin) -> Response {
    match lockouts::list(&app.db, app.now()).await {
        Ok(rows) => {
            let lockouts = rows
                .into_iter()
                .map(|r| LockoutView {
                    kind: r.kind,
                    subject: r.subject,
                    failures: r.failures,
                    locked_at: r.locked_at,
                    locked_until: r.locked_until,
                })
                .collect();
            Json(LockoutsBody { lockouts }).into_response()
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
    match app
        .writer
        .run(lockouts::clear(&app.db, kind, &subject))
        .await
    {
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
