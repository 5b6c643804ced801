//! Rate limits by tier over real HTTP: premium and standard callers per
//! `sub`, anonymous requests per client IP, forged-token floods refused
//! before verification, the search bucket, `X-Forwarded-For` only from
//! trusted proxies, and one bucket shared by two instances on one Redis.
//!
//! Every caller is a fresh UUID, so that buckets never collide, not even in
//! a Redis that other test runs share.

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode};
use resource_api::Settings;
use shared::contract::{SCOPE_NOTES_READ, Tier};

use crate::helpers::{Backend, TestApp, assert_invalid_token, assert_problem, spawn_app_with};

async fn spawn_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(Backend::Sqlite, customize)
        .await
        .expect("sqlite app")
}

fn caller() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A valid `notes:read` token of `sub` in `tier`.
fn tier_token(app: &TestApp, sub: &str, tier: Tier) -> String {
    let mut claims = app.claims(sub, SCOPE_NOTES_READ);
    claims.tier = tier;
    app.sign(&claims)
}

/// The token of another `sub`, carrying this token's signature: right
/// `kid`, right algorithm, bad signature (the verifier does the RSA work).
fn forged(app: &TestApp) -> String {
    let signed = tier_token(app, &caller(), Tier::Standard);
    let other = tier_token(app, &caller(), Tier::Premium);
    let signed: Vec<&str> = signed.split('.').collect();
    let other: Vec<&str> = other.split('.').collect();
    format!("{}.{}.{}", signed[0], other[1], signed[2])
}

async fn send(request: RequestBuilder) -> Response {
    request.send().await.unwrap()
}

async fn me(app: &TestApp, token: &str) -> Response {
    send(app.get("/api/v2/me", token)).await
}

async fn me_anonymous(app: &TestApp, forwarded_for: Option<&str>) -> Response {
    let mut request = app.client.get(app.url("/api/v2/me"));
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    send(request).await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        .to_str()
        .unwrap()
}

/// An allowed response with `RateLimit-Limit: limit`, `RateLimit-Remaining:
/// remaining` and no `Retry-After`.
fn assert_allowed(response: &Response, status: StatusCode, limit: u32, remaining: u32) {
    assert_eq!(response.status(), status, "{:?}", response.headers());
    let headers = response.headers();
    assert_eq!(header(headers, "ratelimit-limit"), limit.to_string());
    assert_eq!(
        header(headers, "ratelimit-remaining"),
        remaining.to_string()
    );
    assert!(headers.get("retry-after").is_none());
}

/// A 429 problem+json, `no-store`, with `Retry-After` (at least 1 s) and
/// `RateLimit-Limit: limit`, `RateLimit-Remaining: 0`.
async fn assert_refused(response: Response, limit: u32) {
    let headers = response.headers().clone();
    assert_eq!(header(&headers, "cache-control"), "no-store");
    let retry: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert_eq!(header(&headers, "ratelimit-limit"), limit.to_string());
    assert_eq!(header(&headers, "ratelimit-remaining"), "0");
    let body = assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["title"], "Too Many Requests");
}

#[tokio::test]
async fn standard_caller_gets_429_with_retry_after_after_tier_limit() {
    let app = spawn_with(|s| s.rate_limit_standard = "3/minute".into()).await;
    let token = tier_token(&app, &caller(), Tier::Standard);
    for remaining in [2, 1, 0] {
        let response = me(&app, &token).await;
        assert_allowed(&response, StatusCode::OK, 3, remaining);
        assert_eq!(header(response.headers(), "ratelimit-policy"), "3;w=60");
    }
    assert_refused(me(&app, &token).await, 3).await;
}

#[tokio::test]
async fn premium_caller_is_not_refused_where_standard_is() {
    let app = spawn_with(|s| {
        s.rate_limit_standard = "2/minute".into();
        s.rate_limit_premium = "5/minute".into();
    })
    .await;
    let standard = tier_token(&app, &caller(), Tier::Standard);
    let premium = tier_token(&app, &caller(), Tier::Premium);
    for remaining in [1, 0] {
        assert_allowed(&me(&app, &standard).await, StatusCode::OK, 2, remaining);
    }
    assert_refused(me(&app, &standard).await, 2).await;
    for remaining in [4, 3, 2, 1, 0] {
        assert_allowed(&me(&app, &premium).await, StatusCode::OK, 5, remaining);
    }
    assert_refused(me(&app, &premium).await, 5).await;
}

#[tokio::test]
async fn tier_buckets_of_one_sub_never_mix() {
    let app = spawn_with(|s| {
        s.rate_limit_standard = "2/minute".into();
        s.rate_limit_premium = "3/minute".into();
    })
    .await;
    let sub = caller();
    let standard = tier_token(&app, &sub, Tier::Standard);
    let premium = tier_token(&app, &sub, Tier::Premium);
    me(&app, &standard).await;
    me(&app, &standard).await;
    assert_refused(me(&app, &standard).await, 2).await;
    // The same sub as a premium caller: its own, full bucket.
    assert_allowed(&me(&app, &premium).await, StatusCode::OK, 3, 2);
}

#[tokio::test]
async fn callers_have_independent_buckets() {
    let app = spawn_with(|s| s.rate_limit_standard = "2/minute".into()).await;
    let alice = tier_token(&app, &caller(), Tier::Standard);
    let bob = tier_token(&app, &caller(), Tier::Standard);
    me(&app, &alice).await;
    me(&app, &alice).await;
    assert_refused(me(&app, &alice).await, 2).await;
    assert_allowed(&me(&app, &bob).await, StatusCode::OK, 2, 1);
}

#[tokio::test]
async fn anonymous_requests_get_429_after_anonymous_limit() {
    let app = spawn_with(|s| s.rate_limit_anonymous = "3/minute".into()).await;
    for remaining in [2, 1, 0] {
        let response = me_anonymous(&app, None).await;
        // The handler still answers: no token, a plain challenge.
        assert_allowed(&response, StatusCode::UNAUTHORIZED, 3, remaining);
        assert_eq!(header(response.headers(), "www-authenticate"), "Bearer");
    }
    assert_refused(me_anonymous(&app, None).await, 3).await;
    // Another scheme than Bearer is no token either: the same bucket.
    let basic = app
        .client
        .get(app.url("/api/v2/notes"))
        .basic_auth("alice", Some("secret"));
    assert_refused(send(basic).await, 3).await;
    // An authenticated caller from the same address has a bucket of its own.
    let token = tier_token(&app, &caller(), Tier::Standard);
    assert_eq!(me(&app, &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn forged_token_flood_is_refused_before_verification() {
    let app = spawn_with(|s| s.rate_limit_anonymous = "3/minute".into()).await;
    let valid = tier_token(&app, &caller(), Tier::Standard);
    assert_eq!(me(&app, &valid).await.status(), StatusCode::OK);

    for _ in 0..3 {
        let body = assert_invalid_token(me(&app, &forged(&app)).await).await;
        assert_eq!(body["detail"], "invalid access token: bad signature");
    }
    assert_refused(me(&app, &forged(&app)).await, 3).await;
    // A valid token from that address is refused too: the refusal comes
    // before verification (verified, it would have been a 200).
    assert_refused(me(&app, &valid).await, 3).await;
    // Malformed bearer tokens cost nothing to refuse but count the same.
    let malformed = app
        .client
        .get(app.url("/api/v2/me"))
        .header("authorization", "Bearer a b");
    assert_refused(send(malformed).await, 3).await;
    // Requests without a token keep their own bucket.
    let response = me_anonymous(&app, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_bearer_tokens_count_as_invalid_tokens() {
    let app = spawn_with(|s| s.rate_limit_anonymous = "2/minute".into()).await;
    for value in ["Bearer a b", "Bearer "] {
        let request = app
            .client
            .get(app.url("/api/v2/me"))
            .header("authorization", value);
        assert_invalid_token(send(request).await).await;
    }
    let valid = tier_token(&app, &caller(), Tier::Standard);
    assert_refused(me(&app, &valid).await, 2).await;
}

#[tokio::test]
async fn search_has_its_own_bucket_on_top_of_the_tier() {
    let app = spawn_with(|s| {
        s.rate_limit_standard = "10/minute".into();
        s.rate_limit_search = "2/minute".into();
    })
    .await;
    let token = tier_token(&app, &caller(), Tier::Standard);
    for remaining in [1, 0] {
        let response = send(app.get("/api/v2/notes?q=x", &token)).await;
        // A search shows the search bucket.
        assert_allowed(&response, StatusCode::OK, 2, remaining);
    }
    assert_refused(send(app.get("/api/v2/notes?q=x", &token)).await, 2).await;
    // Plain listing still works, and shows the tier bucket: 3 requests
    // counted so far (the refused search too), this is the 4th.
    let response = send(app.get("/api/v2/notes", &token)).await;
    assert_allowed(&response, StatusCode::OK, 10, 6);
    let response = send(app.get("/api/v2/notes?limit=5", &token)).await;
    assert_allowed(&response, StatusCode::OK, 10, 5);
    // Another caller's searches are not affected.
    let other = tier_token(&app, &caller(), Tier::Standard);
    let response = send(app.get("/api/v2/notes?q=x", &other)).await;
    assert_allowed(&response, StatusCode::OK, 2, 1);
}

#[tokio::test]
async fn forwarded_for_from_untrusted_peer_does_not_change_anonymous_bucket() {
    let app = spawn_with(|s| s.rate_limit_anonymous = "2/minute".into()).await;
    let first = me_anonymous(&app, Some("203.0.113.1")).await;
    assert_allowed(&first, StatusCode::UNAUTHORIZED, 2, 1);
    let second = me_anonymous(&app, Some("203.0.113.2")).await;
    assert_allowed(&second, StatusCode::UNAUTHORIZED, 2, 0);
    assert_refused(me_anonymous(&app, Some("203.0.113.3")).await, 2).await;
    assert_refused(me_anonymous(&app, None).await, 2).await;
}

#[tokio::test]
async fn trusted_proxy_gives_each_forwarded_address_its_own_bucket() {
    let app = spawn_with(|s| {
        s.rate_limit_anonymous = "2/minute".into();
        s.trusted_proxies = "127.0.0.1/32".into();
    })
    .await;
    for remaining in [1, 0] {
        let response = me_anonymous(&app, Some("203.0.113.1")).await;
        assert_allowed(&response, StatusCode::UNAUTHORIZED, 2, remaining);
    }
    assert_refused(me_anonymous(&app, Some("203.0.113.1")).await, 2).await;
    // The client wrote the left-most hop itself: the proxy's hop counts.
    assert_refused(
        me_anonymous(&app, Some("198.51.100.7, 203.0.113.1")).await,
        2,
    )
    .await;
    let response = me_anonymous(&app, Some("203.0.113.2")).await;
    assert_allowed(&response, StatusCode::UNAUTHORIZED, 2, 1);
    // Without the header: the proxy itself, a bucket of its own.
    let response = me_anonymous(&app, None).await;
    assert_allowed(&response, StatusCode::UNAUTHORIZED, 2, 1);
}

#[tokio::test]
async fn health_endpoints_are_not_rate_limited() {
    let app = spawn_with(|s| s.rate_limit_anonymous = "1/minute".into()).await;
    for _ in 0..3 {
        for path in ["/healthz", "/readyz"] {
            let response = send(app.client.get(app.url(path))).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert!(response.headers().get("ratelimit-limit").is_none());
        }
    }
    let response = send(app.client.get(app.url("/readyz"))).await;
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["rate_limit_store"], "local", "{body}");
}

test_gates::needs! { [redis]
    #[tokio::test]
    async fn instances_on_one_redis_share_a_callers_bucket() {
        let redis = migrations::test_support::require_redis_url(
            "instances_on_one_redis_share_a_callers_bucket",
        );
        let configure = |s: &mut Settings| {
            s.redis_url = Some(redis.clone());
            s.rate_limit_standard = "3/minute".into();
            // The per-IP counters of 127.0.0.1 are shared with other runs.
            s.rate_limit_anonymous = "10000/minute".into();
        };
        let a = spawn_with(configure).await;
        // B trusts A's key: one token is good on both.
        let keys = tempfile::tempdir().unwrap();
        std::fs::write(keys.path().join("signing.pem"), &a.private_key_pem).unwrap();
        let b = spawn_with(|s| {
            configure(s);
            s.auth_public_keys = Some(keys.path().to_owned());
        })
        .await;
        for app in [&a, &b] {
            let response = send(app.client.get(app.url("/readyz"))).await;
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["checks"]["rate_limit_store"], "redis", "{body}");
        }

        let token = tier_token(&a, &caller(), Tier::Standard);
        assert_allowed(&me(&a, &token).await, StatusCode::OK, 3, 2);
        assert_allowed(&me(&a, &token).await, StatusCode::OK, 3, 1);
        assert_allowed(&me(&b, &token).await, StatusCode::OK, 3, 0);
        assert_refused(me(&b, &token).await, 3).await;
        assert_refused(me(&a, &token).await, 3).await;
    }
}

#[tokio::test]
async fn expired_tokens_do_not_count_against_the_address() {
    let app = spawn_with(|s| s.rate_limit_anonymous = "2/minute".into()).await;
    let sub = caller();
    let mut expired = app.claims(&sub, SCOPE_NOTES_READ);
    expired.iat -= 3 * 3600;
    expired.nbf -= 3 * 3600;
    expired.exp = expired.iat + 600;
    let expired = app.sign(&expired);
    // An honest client whose token expired gets 401 (and refreshes), as
    // often as it happens; the address is not treated as a forger.
    for _ in 0..4 {
        let answer = me(&app, &expired).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    let fresh = tier_token(&app, &sub, Tier::Standard);
    assert_eq!(me(&app, &fresh).await.status(), StatusCode::OK);
    // Forgeries still count: past 2 the address is refused unverified.
    for _ in 0..2 {
        assert_eq!(
            me(&app, &forged(&app)).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        me(&app, &fresh).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
