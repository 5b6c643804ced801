//! Rate limits of the API routes, by tier, before any handler runs.
//!
//! Buckets and failure counters live in `shared::limit` (Redis when
//! `REDIS_URL` is set, shared by every instance; this process otherwise, and
//! as the fallback while Redis is away). [`api_limits`] works out the caller
//! first, in this order:
//!
//! 1. No bearer token (no `Authorization` header, or another scheme): one
//!    token from the `anonymous` bucket of the client IP (`ClientIp::key`);
//!    refused: 429; allowed: the handler runs (and answers 401 as it always
//!    did).
//! 2. A bearer token: when the IP's `invalid_tokens` count is at its max,
//!    429 at once, before any signature is checked, so that a flood of
//!    forged tokens costs no RSA work.
//! 3. The token is verified; a bad one counts one failure for the IP and is
//!    answered as the extractors answer it (401 `invalid_token`).
//! 4. One token from the caller's tier bucket (`premium` or `standard` by
//!    the `tier` claim, keyed by `sub`); refused: 429.
//! 5. A search (`GET /api/v2/notes` with a `q` parameter) also takes one
//!    from the caller's `search` bucket; refused: 429 (the tier token taken
//!    in step 4 stays taken: every request counts against the tier).
//! 6. The verified claims go into the request extensions
//!    ([`VerifiedToken`]) so that the extractors do not verify again, and the
//!    handler runs.
//!
//! An `X-API-Key` (`super::api_key`) takes the bearer token's path: step 2
//! on the same `invalid_tokens` counter, step 3 checks the key against the
//! database (a bad key counts one failure), step 4 takes from the tier
//! bucket of the key's client. A key together with an `Authorization`
//! header is refused with 400 before anything else.
//!
//! A refusal is a 429 problem+json with `Cache-Control: no-store`,
//! `Retry-After` and the `RateLimit-*` fields of the bucket that refused;
//! an allowed response carries the `RateLimit-*` fields of the tier bucket
//! (the anonymous one without a token, the search one on a search).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use shared::client_ip::ClientIp;
use shared::limit::{Decision, Rule, Window};
use shared::problem::Problem;

use super::api_key;
use super::error::ApiError;
use super::extract::{VerifiedToken, authenticate_token, bearer_token};
use super::routes::notes::NOTES_ROUTE;
use super::versions::{self, ApiVersion};
use crate::state::{AppState, SharedState};

/// The query parameter that makes a notes listing a search.
const SEARCH_PARAM: &str = "q";

/// The state of [`api_limits`]: the application and the version whose
/// routes it guards (requests are counted by version once allowed,
/// `super::versions::count_request`).
#[derive(Debug, Clone)]
pub struct ApiLimits {
    pub app: SharedState,
    pub version: ApiVersion,
}

/// Middleware of the API routes: the checks of the module documentation,
/// then the request is counted for its version and the handler runs; the
/// answer gets `Cache-Control: no-store` unless it has a `Cache-Control`.
///
/// The application state is behind an `Arc` (`SharedState`): axum clones a
/// middleware's state for every request (twice), and an `AppState` is a
/// dozen reference counts.
pub async fn api_limits(State(state): State<ApiLimits>, request: Request, next: Next) -> Response {
    let mut response = checks(state, request, next).await;
    // Every answer of the API routes, the handlers' and the refusals here:
    // users' data must not be cached by intermediaries.
    let headers = response.headers_mut();
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The checks of the module documentation, then the handler.
async fn checks(
    ApiLimits { app, version }: ApiLimits,
    mut request: Request,
    next: Next,
) -> Response {
    let ip = client_ip(&request);
    // An `X-API-Key` instead of a bearer token (`super::api_key`): the same
    // steps, the key checked in step 3; a key with a bearer token is a 400.
    let with_key = api_key::has_api_key(request.headers());
    if api_key::conflicting(request.headers()) {
        return ApiError::ConflictingCredentials.into_response();
    }
    // The bearer token is read once, here, and handed to the verifier.
    let bearer = (!with_key).then(|| bearer_token(request.headers()));
    if matches!(bearer, Some(Err(ApiError::MissingToken))) {
        return anonymous(&app, version, ip, request, next).await;
    }

    let ip_key = ip.key();
    let window = &app.limits.invalid_tokens;
    if app.limiter.failures(window, &ip_key).await >= window.max {
        tracing::info!(limit = window.name, client_ip = %ip, "rate limited");
        return too_many(
            &window_refusal(window),
            "too many invalid access tokens from this address",
        );
    }
    let verified = match bearer {
        None => api_key::authenticate(&app, &ip, request.headers()).await,
        Some(token) => authenticate_token(&app.verifier, token).await,
    };
    let claims = match verified {
        Ok(claims) => claims,
        // The verifier's own failure is no mark against the token, and an
        // expired (or not yet valid) token is an honest client's everyday
        // 401 before it refreshes: counting those would lock out a busy
        // address (a carrier NAT) for doing nothing wrong. What counts is
        // what a forger sends: bad signatures, unknown keys, garbage.
        Err(
            error @ (ApiError::KeysUnavailable
            | ApiError::Db(_)
            | ApiError::InvalidToken("token expired" | "token not yet valid")),
        ) => return error.into_response(),
        Err(error) => {
            app.limiter.record_failure(window, &ip_key).await;
            return error.into_response();
        }
    };

    let rule = app.limits.tier(claims.tier);
    let mut shown = app.limiter.check(rule, &claims.sub).await;
    if !shown.allowed {
        return refused(rule, &ip, &shown);
    }
    if is_search(&request) {
        let rule = &app.limits.search;
        shown = app.limiter.check(rule, &claims.sub).await;
        if !shown.allowed {
            return refused(rule, &ip, &shown);
        }
    }

    request.extensions_mut().insert(VerifiedToken(claims));
    versions::count_request(version, &request);
    let mut response = next.run(request).await;
    reserve_headers(&mut response);
    shown.apply_headers(response.headers_mut());
    response
}

/// A request without a bearer token: the client IP's `anonymous` bucket.
async fn anonymous(
    app: &AppState,
    version: ApiVersion,
    ip: ClientIp,
    request: Request,
    next: Next,
) -> Response {
    let rule = &app.limits.anonymous;
    let decision = app.limiter.check(rule, &ip.key()).await;
    if !decision.allowed {
        return refused(rule, &ip, &decision);
    }
    versions::count_request(version, &request);
    let mut response = next.run(request).await;
    reserve_headers(&mut response);
    decision.apply_headers(response.headers_mut());
    response
}

/// Fields an API answer gets on its way out: the four `RateLimit-*`
/// here, then `Cache-Control`, CORS, v1's lifecycle, the security headers
/// and the request id.
const HEADERS_ADDED: usize = 18;

/// Makes room for [`HEADERS_ADDED`] more fields at once, rather than
/// growing the map two or three times on the way out.
fn reserve_headers(response: &mut Response) {
    // Past the map's maximum size, the fields are added as before.
    let _ = response.headers_mut().try_reserve(HEADERS_ADDED);
}

fn refused(rule: &Rule, ip: &ClientIp, decision: &Decision) -> Response {
    tracing::info!(limit = rule.name, client_ip = %ip, "rate limited");
    too_many(decision, "too many requests")
}

/// `429 Too Many Requests` problem+json, `no-store`, with `Retry-After` and
/// the `RateLimit-*` fields of `decision`.
fn too_many(decision: &Decision, what: &str) -> Response {
    let retry = decision
        .retry_after
        .map_or(1, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .max(1);
    let mut response = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Too Many Requests",
        Some(format!("{what}; try again in {retry} seconds")),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    decision.apply_headers(response.headers_mut());
    response
}

/// The refusal of a failure counter at its max. The counter's window
/// started at its first failure, which the store does not tell: the whole
/// window is the upper bound of the wait.
fn window_refusal(window: &Window) -> Decision {
    Decision {
        allowed: false,
        limit: window.max,
        remaining: 0,
        reset: window.window,
        retry_after: Some(window.window),
        policy_window: window.window,
    }
}

/// `GET /api/v2/notes` (or `/api/v1/notes`: the same limits) with a `q`
/// parameter (even an empty one).
fn is_search(request: &Request) -> bool {
    let path = request.uri().path();
    (request.method() == Method::GET || request.method() == Method::HEAD)
        && ApiVersion::ALL
            .iter()
            .any(|version| path.strip_prefix(version.prefix()) == Some(NOTES_ROUTE))
        && request.uri().query().is_some_and(|query| {
            url::form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == SEARCH_PARAM)
        })
}

/// The client address the `shared::client_ip` layer found (`0.0.0.0` when
/// the router runs without it, as in `oneshot` tests).
fn client_ip(request: &Request) -> ClientIp {
    request
        .extensions()
        .get::<ClientIp>()
        .copied()
        .unwrap_or(ClientIp(std::net::IpAddr::from([0, 0, 0, 0])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(method: Method, uri: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn is_search_needs_get_on_notes_with_q() {
        assert!(is_search(&request(Method::GET, "/api/v2/notes?q=x")));
        assert!(is_search(&request(Method::GET, "/api/v2/notes?limit=5&q=")));
        assert!(is_search(&request(Method::HEAD, "/api/v2/notes?q=x")));
        assert!(is_search(&request(Method::GET, "/api/v1/notes?q=x")));
        assert!(!is_search(&request(Method::GET, "/api/v3/notes?q=x")));
        assert!(!is_search(&request(Method::GET, "/api/v2/notes")));
        assert!(!is_search(&request(Method::GET, "/api/v2/notes?qq=x")));
        assert!(!is_search(&request(Method::POST, "/api/v2/notes?q=x")));
        assert!(!is_search(&request(Method::GET, "/api/v2/me?q=x")));
    }
}
