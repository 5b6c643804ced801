//! Instant revocation (issue 10): a resource API holding a valid access
//! token of a user refuses it within 2 s of `tokens revoke --user`, of the
//! admin API's revoke-tokens (user and client), polling the auth server's
//! `GET /api/v2/revocations` without Redis and through Redis pub/sub with
//! it; a token issued after the revocation works; the endpoint refuses
//! callers without `REVOCATIONS_TOKEN`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::{Browser, CreatedUser, StackOptions};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{self, Backend, Fixture, PASSWORD, SCOPE, assert_tokens};

const REVOCATIONS_TOKEN: &str = "e2e-revocations-token-0123456789abcdef";
/// How fast a revocation must reach the resource API.
const WITHIN: Duration = Duration::from_secs(2);

fn options(redis_url: Option<&str>) -> StackOptions {
    let options = StackOptions::default()
        .auth_env("REVOCATIONS_TOKEN", REVOCATIONS_TOKEN)
        .resource_env("REVOCATIONS_TOKEN", REVOCATIONS_TOKEN);
    match redis_url {
        None => options,
        Some(url) => {
            let prefix = format!("e2e-{}:", uuid::Uuid::new_v4().simple());
            options
                .auth_env("REDIS_URL", url)
                .auth_env("REDIS_KEY_PREFIX", &prefix)
                .resource_env("REDIS_URL", url)
                .resource_env("REDIS_KEY_PREFIX", &prefix)
                // Only pub/sub can deliver within 2 s.
                .resource_env("REVOCATIONS_POLL_MS", "60000")
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `GET /api/v2/me` with `token`: the status and `WWW-Authenticate`.
async fn me(f: &Fixture, token: &str) -> (StatusCode, String) {
    let url = format!("{}/api/v2/me", f.stack.resource_url().unwrap());
    let answer = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let challenge = answer
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (answer.status(), challenge)
}

/// Asserts that `token` is refused (401 `invalid_token`) within [`WITHIN`]
/// of `since`, polling every 50 ms.
async fn assert_refused_within(f: &Fixture, token: &str, since: Instant, what: &str) {
    loop {
        let (status, challenge) = me(f, token).await;
        if status == StatusCode::UNAUTHORIZED {
            assert!(challenge.contains("invalid_token"), "{what}: {challenge}");
            let took = since.elapsed();
            assert!(took <= WITHIN, "{what}: refused only after {took:?}");
            return;
        }
        assert_eq!(status, StatusCode::OK, "{what}");
        assert!(
            since.elapsed() <= WITHIN,
            "{what}: still accepted after {:?}\n{}",
            since.elapsed(),
            f.stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the clock has passed `second` (a token issued from then on
/// is not covered by a revocation made up to `second`).
async fn wait_past(second: u64) {
    while unix_now() <= second {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The resource API's `revocations` readiness note.
async fn readiness_note(f: &Fixture) -> String {
    let url = format!("{}/readyz", f.stack.resource_url().unwrap());
    let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    body["checks"]["revocations"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits (at most 10 s) until the feed is current (and subscribed, with Redis).
async fn wait_feed_ready(f: &Fixture, redis: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let note = readiness_note(f).await;
        if note.starts_with("ok") && (!redis || note.contains("redis subscribed")) {
            return;
        }
        assert!(Instant::now() < deadline, "feed not ready: {note}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An admin's access token, through the authorization-code flow.
async fn admin_token(f: &Fixture) -> String {
    let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
    let raw = f
        .stack
        .cli(
            &[
                "users",
                "create",
                "--email",
                &email,
                "--name",
                "Ada Admin",
                "--role",
                "admin",
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        )
        .await
        .unwrap();
    let admin = CreatedUser {
        id: raw["id"].as_str().unwrap().to_owned(),
        email,
        password: PASSWORD.to_owned(),
        raw,
    };
    let browser = Browser::new().unwrap();
    let grant = support::authorize(&f.stack, &browser, &f.client.id, &admin, SCOPE).await;
    assert_tokens(&support::exchange(&f.stack, f.client.basic(), &grant).await).access
}

/// The `active` member of the client's introspection of `token`.
async fn introspected(f: &Fixture, token: &str) -> Value {
    let answer = f.stack.introspect(f.client.basic(), token).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.json.unwrap()["active"].clone()
}

async fn admin_post(f: &Fixture, admin: &str, path: &str) -> Value {
    let answer = reqwest::Client::new()
        .post(format!("{}{path}", f.stack.auth.url))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "{path}");
    answer.json().await.unwrap()
}

async fn revocation(backend: Backend, redis_url: Option<String>) {
    let f = support::fixture_with(&backend, options(redis_url.as_deref())).await;
    wait_feed_ready(&f, redis_url.is_some()).await;
    let admin = admin_token(&f).await;

    // The endpoint: only with the shared secret.
    let endpoint = format!("{}/api/v2/revocations", f.stack.auth.url);
    let http = reqwest::Client::new();
    let anonymous = http.get(&endpoint).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let wrong = http
        .get(&endpoint)
        .bearer_auth("e2e-revocations-token-0123456789abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // 1. CLI: `tokens revoke --user`.
    let held = support::tokens(&f, SCOPE).await;
    assert_eq!(me(&f, &held.access).await.0, StatusCode::OK);
    assert_eq!(introspected(&f, &held.access).await, Value::Bool(true));
    let start = Instant::now();
    f.stack
        .cli(&["tokens", "revoke", "--user", &f.user.id], None)
        .await
        .unwrap();
    let revoked_at = unix_now();
    assert_refused_within(&f, &held.access, start, "after tokens revoke --user").await;
    // Introspection, answered from the auth server's database, agrees.
    assert_eq!(introspected(&f, &held.access).await, Value::Bool(false));

    // The record is served to the holder of the secret.
    let listed: Value = http
        .get(&endpoint)
        .bearer_auth(REVOCATIONS_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let record = listed["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["subject"] == f.user.id.as_str())
        .unwrap_or_else(|| panic!("no record: {listed}"))
        .clone();
    assert_eq!(record["kind"], "user");
    assert!(record["expires_at"].as_i64().unwrap() > record["not_before"].as_i64().unwrap());

    // 2. A token issued after the revocation works.
    wait_past(revoked_at).await;
    let fresh = support::tokens(&f, SCOPE).await;
    assert_eq!(me(&f, &fresh.access).await.0, StatusCode::OK);

    // 3. The admin API: revoke-tokens of the user.
    let start = Instant::now();
    admin_post(
        &f,
        &admin,
        &format!("/api/v2/admin/users/{}/revoke-tokens", f.user.id),
    )
    .await;
    let revoked_at = unix_now();
    assert_refused_within(&f, &fresh.access, start, "after the admin API").await;

    // 4. The admin API: revoke-tokens of the client voids its tokens.
    wait_past(revoked_at).await;
    let again = support::tokens(&f, SCOPE).await;
    assert_eq!(me(&f, &again.access).await.0, StatusCode::OK);
    let start = Instant::now();
    admin_post(
        &f,
        &admin,
        &format!("/api/v2/admin/clients/{}/revoke-tokens", f.client.id),
    )
    .await;
    assert_refused_within(&f, &again.access, start, "after revoking the client").await;
    assert!(
        !f.stack.logs().contains(REVOCATIONS_TOKEN),
        "the shared secret is never logged"
    );
}

both!(revocation_without_redis => revocation_without_redis_sqlite, revocation_without_redis_postgres);

async fn revocation_without_redis(backend: Backend) {
    revocation(backend, None).await;
}

test_gates::needs! { [postgres, redis]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revocation_through_redis_pubsub_on_postgres() {
        const NAME: &str = "revocation_through_redis_pubsub_on_postgres";
        let backend = Backend::Postgres(migrations::test_support::require_postgres_url(NAME));
        let redis_url = migrations::test_support::require_redis_url(NAME);
        revocation(backend, Some(redis_url)).await;
    }
}
