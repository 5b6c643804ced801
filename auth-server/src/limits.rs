//! Rate limits and brute-force lockout of the authorization server.
//!
//! Buckets and failure counters live in `shared::limit` (Redis when
//! `REDIS_URL` is set, shared by every instance; this process otherwise, and
//! as the fallback while Redis is away). Lockouts are rows in the database
//! (`store::lockouts`): every instance reads them, admins list and lift them,
//! the janitor removes them once over.
//!
//! Every refusal comes before the expensive work it protects: per-IP limits
//! run as middleware before the body is read; the per-client token limit
//! runs after the client is authenticated (a database read and a SHA-256)
//! but before any code exchange, database write or RSA signature; a locked
//! IP or account is refused before its password is hashed.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use shared::client_ip::ClientIp;
use shared::limit::{Decision, Rule};
use shared::oauth_error::{OAuthError, OAuthErrorCode};

use crate::audit;
use crate::domain::Email;
use crate::http::pages;
use crate::state::AppState;
use crate::store::lockouts;

/// How a refusal is written: the endpoint's own error shape.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// An HTML page (login, authorize, reset pages).
    Page,
    /// RFC 6749 §5.2 JSON (token, revoke, introspect).
    OAuth,
    /// RFC 9457 problem+json.
    Problem,
}

/// `429 Too Many Requests` with `Retry-After` and the `RateLimit-*` fields.
pub fn too_many(decision: &Decision, shape: Shape) -> Response {
    let retry = decision
        .retry_after
        .map_or(1, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .max(1);
    let message = format!("Too many requests. Try again in {retry} seconds.");
    let mut response = refusal(shape, &message);
    decision.apply_headers(response.headers_mut());
    response
}

fn refusal(shape: Shape, message: &str) -> Response {
    match shape {
        Shape::Page => (
            StatusCode::TOO_MANY_REQUESTS,
            pages::error("Too many requests", message),
        )
            .into_response(),
        // RFC 6749 has no rate-limit code; `temporarily_unavailable` with
        // 429 says "not now" without inventing one.
        Shape::OAuth => OAuthError::new(OAuthErrorCode::TemporarilyUnavailable, message)
            .with_status(StatusCode::TOO_MANY_REQUESTS)
            .into_response(),
        Shape::Problem => {
            let mut problem = shared::problem::Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                Some(message.to_owned()),
            )
            .into_response();
            problem
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            problem
        }
    }
}

/// Runs `next` under `rule` for the client's IP: refused with 429 before the
/// handler, or answered with the `RateLimit-*` fields added.
async fn by_ip(
    app: &AppState,
    rule: &Rule,
    shape: Shape,
    request: Request,
    next: Next,
) -> Response {
    let ip = client_ip(&request);
    let decision = app.limiter.check(rule, &ip.key()).await;
    if !decision.allowed {
        tracing::info!(limit = rule.name, client_ip = %ip, "rate limited");
        return too_many(&decision, shape);
    }
    let mut response = next.run(request).await;
    decision.apply_headers(response.headers_mut());
    response
}

/// The client address the `shared::client_ip` layer found.
pub fn client_ip(request: &Request) -> ClientIp {
    request
        .extensions()
        .get::<ClientIp>()
        .copied()
        .unwrap_or(ClientIp(std::net::IpAddr::from([0, 0, 0, 0])))
}

/// Middleware: `RATE_LIMIT_PAGES` per IP.
pub async fn pages(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let rule = app.limits.pages.clone();
    by_ip(&app, &rule, Shape::Page, request, next).await
}

/// Middleware: `RATE_LIMIT_ADMIN` per IP, on every admin route, before the
/// bearer token is verified: bounds the RSA work of forged tokens and the
/// `permission.denied` rows a signed-in user without the role can cause.
pub async fn admin(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let rule = app.limits.admin.clone();
    by_ip(&app, &rule, Shape::Problem, request, next).await
}

/// Middleware: `RATE_LIMIT_LOGIN` per IP.
pub async fn login(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let rule = app.limits.login.clone();
    by_ip(&app, &rule, Shape::Page, request, next).await
}

/// Middleware: `RATE_LIMIT_PASSWORD_RESET` per IP (the per-email bucket is
/// checked by the handler once it has read the email).
pub async fn reset(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let rule = app.limits.reset_ip.clone();
    let shape = if is_json(&request) {
        Shape::Problem
    } else {
        Shape::Page
    };
    by_ip(&app, &rule, shape, request, next).await
}

/// Middleware: `RATE_LIMIT_REGISTRATION` per IP, before the body is read
/// (`POST /api/v2/users` speaks JSON only: refusals are problem+json).
pub async fn registration(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let rule = app.limits.registration.clone();
    by_ip(&app, &rule, Shape::Problem, request, next).await
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Middleware of `/token`, `/revoke`, `/introspect`: an IP whose failed
/// client authentications reached `RATE_LIMIT_CLIENT_FAILURES` is refused
/// before its request is read. Handlers call [`count_client_failure`] with
/// each error.
pub async fn client_failures(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let ip = client_ip(&request);
    let window = &app.limits.client_failures;
    let failures = app.limiter.failures(window, &ip.key()).await;
    if failures >= window.max {
        tracing::info!(limit = window.name, client_ip = %ip, "rate limited");
        let decision = Decision {
            allowed: false,
            limit: window.max,
            remaining: 0,
            reset: window.window,
            retry_after: Some(window.window),
            policy_window: window.window,
        };
        return too_many(&decision, Shape::OAuth);
    }
    next.run(request).await
}

/// Counts `error` against `ip` when it is a failed client authentication
/// (`invalid_client`).
pub async fn count_client_failure(app: &AppState, ip: ClientIp, error: &OAuthError) {
    if error.code == OAuthErrorCode::InvalidClient {
        app.limiter
            .record_failure(&app.limits.client_failures, &ip.key())
            .await;
    }
}

/// The `RATE_LIMIT_TOKEN` bucket of an authenticated client.
pub async fn token_for_client(app: &AppState, client_id: &str) -> Decision {
    app.limiter.check(&app.limits.token, client_id).await
}

/// The lockout subjects of a sign-in attempt: its IP, and the account it
/// names (whether or not it exists, so that a lockout reveals nothing).
pub struct Subjects {
    pub ip: ClientIp,
    pub account: Option<String>,
}

impl Subjects {
    pub fn new(ip: ClientIp, email: Option<&Email>) -> Self {
        Self {
            ip,
            account: email.map(|e| e.as_str().to_owned()),
        }
    }

    fn ids(&self) -> Vec<String> {
        let mut ids = vec![lockouts::id(lockouts::Kind::Ip, &self.ip.key())];
        if let Some(account) = &self.account {
            ids.push(lockouts::id(lockouts::Kind::Account, account));
        }
        ids
    }
}

/// A lockout in force: how long it has left.
pub struct Locked {
    pub retry_after: Duration,
}

/// The lockout that holds `subjects` now, if any.
pub async fn locked(app: &AppState, subjects: &Subjects) -> Result<Option<Locked>, sea_orm::DbErr> {
    let now = app.now();
    Ok(lockouts::active(&app.db, &subjects.ids(), now)
        .await?
        .map(|row| Locked {
            retry_after: Duration::from_secs(u64::try_from(row.locked_until - now).unwrap_or(1)),
        }))
}

/// The 429 page of a locked IP or account: the same for both and whether or
/// not the account exists.
pub fn locked_page(locked: &Locked) -> Response {
    let minutes = locked.retry_after.as_secs().div_ceil(60).max(1);
    let mut response = refusal(
        Shape::Page,
        &format!(
            "Too many failed sign-in attempts. Sign-in is blocked for {minutes} more minutes."
        ),
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(locked.retry_after.as_secs().max(1)),
    );
    response
}

/// Counts a failed sign-in for the IP and the account; a subject that
/// reaches `LOCKOUT_THRESHOLD` within `LOCKOUT_WINDOW_SECS` is locked for
/// `LOCKOUT_DURATION_SECS` (a database row, audited) and its count starts
/// again.
pub async fn login_failed(app: &AppState, subjects: &Subjects) {
    let ip_key = subjects.ip.key();
    let mut counted = vec![(
        lockouts::Kind::Ip,
        &app.limits.login_failures_ip,
        ip_key.as_str(),
    )];
    if let Some(account) = &subjects.account {
        counted.push((
            lockouts::Kind::Account,
            &app.limits.login_failures_account,
            account.as_str(),
        ));
    }
    for (kind, window, subject) in counted {
        let failures = app.limiter.record_failure(window, subject).await;
        if failures < window.max {
            continue;
        }
        let now = app.now();
        let until = now + i64::try_from(app.limits.lockout.as_secs()).unwrap_or(i64::MAX / 2);
        let lock = lockouts::lock(&app.db, kind, subject, i64::from(failures), now, until);
        match app.writer.run(lock).await {
            Ok(()) => {
                app.limiter.reset_failures(window, subject).await;
                tracing::warn!(
                    kind = kind.as_str(),
                    "sign-in locked after repeated failures"
                );
                audit::record(
                    app,
                    audit::LOCKOUT,
                    None,
                    None,
                    serde_json::json!({
                        "kind": kind.as_str(),
                        "subject": subject,
                        "failures": failures,
                        "locked_until": until,
                    }),
                )
                .await;
            }
            // The count stays: the next failure tries again.
            Err(e) => tracing::error!(error = %e, "storing a lockout failed"),
        }
    }
}

/// A successful sign-in clears the account's count (not the IP's: one
/// success must not wipe an address's record of guessing other accounts).
pub async fn login_succeeded(app: &AppState, subjects: &Subjects) {
    if let Some(account) = &subjects.account {
        app.limiter
            .reset_failures(&app.limits.login_failures_account, account)
            .await;
    }
}
