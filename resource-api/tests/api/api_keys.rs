//! `X-API-Key` authentication (issue 10): keys written to the shared
//! `api_keys` table as the auth server writes them, checked by the resource
//! API on SQLite and on PostgreSQL.

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;
use shared::api_key::{self, Mode};

use crate::helpers::{Backend, TestApp, assert_problem, spawn_app_with};

/// Runs `$body(backend)` on SQLite, and on PostgreSQL when it is there.
macro_rules! both {
    ($body:ident => $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $body(Backend::Sqlite).await;
        }

        test_gates::needs! { [postgres]
            #[tokio::test]
            async fn $postgres() {
                migrations::test_support::require_postgres_url(stringify!($postgres));
                $body(Backend::Postgres).await;
            }
        }
    };
}

async fn exec(app: &TestApp, sql: String) {
    app.db
        .execute(Statement::from_string(app.db.get_database_backend(), sql))
        .await
        .unwrap();
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A client with `scopes` and `tier`; returns its id.
async fn client(app: &TestApp, scopes: &str, tier: &str) -> String {
    let id = format!("c_{}", uuid::Uuid::new_v4().simple());
    exec(
        app,
        format!(
            "INSERT INTO clients (id, name, secret_hash, redirect_uris, grant_types, scopes, \
             created_at, tier) VALUES ('{id}', 'Service', NULL, '[]', 'client_credentials', \
             '{scopes}', 1, '{tier}')"
        ),
    )
    .await;
    id
}

/// A key of `client_id` as the auth server stores it; returns (id, key).
async fn key(app: &TestApp, client_id: &str, expires_at: Option<i64>) -> (String, String) {
    key_of_mode(app, client_id, Mode::Live, expires_at).await
}

async fn key_of_mode(
    app: &TestApp,
    client_id: &str,
    mode: Mode,
    expires_at: Option<i64>,
) -> (String, String) {
    let g = api_key::generate(mode).unwrap();
    let expires = expires_at.map_or_else(|| "NULL".to_owned(), |at| at.to_string());
    exec(
        app,
        format!(
            "INSERT INTO api_keys (id, client_id, key_hash, mode, created_at, expires_at) \
             VALUES ('{}', '{client_id}', '{}', '{}', {}, {expires})",
            g.id,
            g.hash,
            mode.as_str(),
            now()
        ),
    )
    .await;
    (g.id, g.key)
}

async fn with_key(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method.clone(), app.url(path))
        .header("x-api-key", key);
    if method == reqwest::Method::POST {
        request = request.json(&serde_json::json!({"title": "t", "body": "b"}));
    }
    request.send().await.unwrap()
}

async fn me(app: &TestApp, key: &str) -> reqwest::Response {
    with_key(app, reqwest::Method::GET, "/api/v2/me", key).await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.db
        .query_one(Statement::from_string(
            app.db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap()
}

async fn assert_bad_key(response: reqwest::Response) -> Value {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(challenge.as_deref(), Some("ApiKey"));
    assert_problem(response, StatusCode::UNAUTHORIZED).await
}

async fn two_active_keys_both_work(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let client_id = client(&app, "notes:read notes:write", "premium").await;
    let (_, first) = key(&app, &client_id, None).await;
    let (_, second) = key(&app, &client_id, Some(now() + 3600)).await;
    for k in [&first, &second] {
        let response = me(&app, k).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["sub"], client_id.as_str());
        assert_eq!(body["client_id"], client_id.as_str());
        assert_eq!(body["scope"], "notes:read notes:write");
    }
    // A key of another (unknown) client id: refused.
    let response = me(&app, &api_key::generate(Mode::Live).unwrap().key).await;
    assert_bad_key(response).await;
    app.cleanup();
}
both!(two_active_keys_both_work => api_key_two_active_keys_both_work_on_sqlite, api_key_two_active_keys_both_work_on_postgres);

async fn revoked_or_expired_key_is_refused(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let client_id = client(&app, "notes:read", "standard").await;
    let (revoked_id, revoked) = key(&app, &client_id, None).await;
    let (_, expired) = key(&app, &client_id, Some(now() - 1)).await;
    let (_, good) = key(&app, &client_id, None).await;
    assert_eq!(me(&app, &revoked).await.status(), StatusCode::OK);
    exec(
        &app,
        format!(
            "UPDATE api_keys SET revoked_at = {} WHERE id = '{revoked_id}'",
            now()
        ),
    )
    .await;
    let body = assert_bad_key(me(&app, &revoked).await).await;
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS n FROM audit_events WHERE kind = 'api_key.revoked_use' \
                 AND client_id = '{client_id}'"
            ),
        )
        .await,
        1
    );
    let body = assert_bad_key(me(&app, &expired).await).await;
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    // The right id with another secret, a malformed key, an empty header.
    let (id_part, _) = good
        .strip_prefix("sk_live_")
        .unwrap()
        .split_once('_')
        .unwrap();
    let wrong = format!("sk_live_{id_part}_{}", shared::secret::generate().unwrap());
    assert_bad_key(me(&app, &wrong).await).await;
    assert_bad_key(me(&app, &good.replace("sk_live_", "sk_test_")).await).await;
    assert_bad_key(me(&app, "sk_live_nope").await).await;
    assert_bad_key(me(&app, "").await).await;
    assert_eq!(me(&app, &good).await.status(), StatusCode::OK);
    app.cleanup();
}
both!(revoked_or_expired_key_is_refused => api_key_revoked_or_expired_is_refused_on_sqlite, api_key_revoked_or_expired_is_refused_on_postgres);

async fn uses_are_audited_and_coalesced(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let client_id = client(&app, "notes:read", "premium").await;
    let (key_id, k) = key(&app, &client_id, None).await;
    let used = format!(
        "SELECT count(*) AS n FROM audit_events WHERE kind = 'api_key.used' \
         AND client_id = '{client_id}'"
    );
    assert_eq!(count(&app, &used).await, 0);
    for _ in 0..5 {
        assert_eq!(me(&app, &k).await.status(), StatusCode::OK);
    }
    assert_eq!(
        count(&app, &used).await,
        1,
        "five uses in a minute: one row"
    );
    let last_used = format!(
        "SELECT count(*) AS n FROM api_keys WHERE id = '{key_id}' AND last_used_at >= {}",
        now() - 5
    );
    assert_eq!(count(&app, &last_used).await, 1);
    // A minute later (moved back in the table), the next use is recorded.
    exec(
        &app,
        format!(
            "UPDATE api_keys SET last_used_at = {} WHERE id = '{key_id}'",
            now() - 61
        ),
    )
    .await;
    assert_eq!(me(&app, &k).await.status(), StatusCode::OK);
    assert_eq!(me(&app, &k).await.status(), StatusCode::OK);
    assert_eq!(count(&app, &used).await, 2);
    app.cleanup();
}
both!(uses_are_audited_and_coalesced => api_key_uses_are_audited_and_coalesced_on_sqlite, api_key_uses_are_audited_and_coalesced_on_postgres);

async fn key_stays_within_client_scopes(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let client_id = client(&app, "notes:read", "standard").await;
    let (_, k) = key(&app, &client_id, None).await;
    let listed = with_key(&app, reqwest::Method::GET, "/api/v2/notes", &k).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let written = with_key(&app, reqwest::Method::POST, "/api/v2/notes", &k).await;
    assert_problem(written, StatusCode::FORBIDDEN).await;
    // A client with notes:write writes, as itself.
    let writer = client(&app, "notes:read notes:write", "standard").await;
    let (_, w) = key(&app, &writer, None).await;
    let created = with_key(&app, reqwest::Method::POST, "/api/v2/notes", &w).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    app.cleanup();
}
both!(key_stays_within_client_scopes => api_key_stays_within_client_scopes_on_sqlite, api_key_stays_within_client_scopes_on_postgres);

#[tokio::test]
async fn api_key_with_bearer_token_is_400() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let client_id = client(&app, "notes:read", "standard").await;
    let (_, k) = key(&app, &client_id, None).await;
    let token = app.token("alice", "notes:read");
    let response = app
        .client
        .get(app.url("/api/v2/me"))
        .bearer_auth(&token)
        .header("x-api-key", &k)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    // Each alone works.
    assert_eq!(me(&app, &k).await.status(), StatusCode::OK);
    assert_eq!(
        app.get("/api/v2/me", &token).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn api_key_of_test_client_is_accepted_with_its_prefix() {
    let app = crate::helpers::spawn_app().await;
    let client_id = client(&app, "notes:read", "standard").await;
    let (_, k) = key_of_mode(&app, &client_id, Mode::Test, None).await;
    assert!(k.starts_with("sk_test_"));
    assert_eq!(me(&app, &k).await.status(), StatusCode::OK);
    assert_bad_key(me(&app, &k.replace("sk_test_", "sk_live_")).await).await;
}

#[tokio::test]
async fn api_key_never_stored_in_clear() {
    let app = crate::helpers::spawn_app().await;
    let client_id = client(&app, "notes:read", "standard").await;
    let (key_id, k) = key(&app, &client_id, None).await;
    assert_eq!(me(&app, &k).await.status(), StatusCode::OK);
    // The last 43 characters (base64url may hold `_` itself).
    let secret = k[k.len() - 43..].to_owned();
    // No column of the row holds the key or its secret part.
    let row = app
        .db
        .query_one(Statement::from_string(
            app.db.get_database_backend(),
            format!("SELECT id, client_id, key_hash, mode FROM api_keys WHERE id = '{key_id}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    for column in ["id", "client_id", "key_hash", "mode"] {
        let value: String = row.try_get("", column).unwrap();
        assert!(!value.contains(&secret), "{column} holds the secret");
    }
    assert_eq!(
        row.try_get::<String>("", "key_hash").unwrap(),
        shared::secret::hash(&k)
    );
}

#[tokio::test]
async fn api_key_failures_count_as_invalid_tokens() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        s.rate_limit_anonymous = "3/minute".into();
    })
    .await
    else {
        return;
    };
    let client_id = client(&app, "notes:read", "standard").await;
    let (_, good) = key(&app, &client_id, None).await;
    assert_eq!(me(&app, &good).await.status(), StatusCode::OK);
    for _ in 0..3 {
        let forged = api_key::generate(Mode::Live).unwrap().key;
        assert_bad_key(me(&app, &forged).await).await;
    }
    // The address is at its max: even a good key is refused before the
    // database is read.
    assert_eq!(
        me(&app, &good).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn api_key_takes_its_clients_tier() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        s.rate_limit_standard = "2/minute".into();
        s.rate_limit_premium = "50/minute".into();
    })
    .await
    else {
        return;
    };
    let standard = client(&app, "notes:read", "standard").await;
    let premium = client(&app, "notes:read", "premium").await;
    let (_, s) = key(&app, &standard, None).await;
    let (_, p) = key(&app, &premium, None).await;
    let limit = |r: &reqwest::Response| {
        r.headers()
            .get("ratelimit-limit")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let first = me(&app, &p).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(limit(&first).as_deref(), Some("50"));
    for _ in 0..2 {
        assert_eq!(me(&app, &s).await.status(), StatusCode::OK);
    }
    assert_eq!(me(&app, &s).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(me(&app, &p).await.status(), StatusCode::OK);
}
