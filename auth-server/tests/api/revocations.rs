//! Instant revocation (issue 10), the auth server's side: revoking a user's
//! or a client's tokens writes a `token_revocations` record in the same
//! transaction; `GET /api/v2/revocations` serves the records in force only
//! to callers with `REVOCATIONS_TOKEN`, and drops them once expired.

use auth_server::clock::Clock;
use serde_json::Value;

use crate::helpers::{AppOptions, Backend, TestApp, both, spawn_app_tuned};

const SECRET: &str = "api-tests-revocations-token-0123456789";

async fn app(backend: Backend, token: Option<&str>) -> Option<TestApp> {
    let token = token.map(str::to_owned);
    spawn_app_tuned(backend, AppOptions::default(), move |settings| {
        settings.revocations_token = token;
    })
    .await
}

async fn get(app: &TestApp, query: &str, bearer: Option<&str>) -> (u16, Value, String) {
    let mut request = app
        .http
        .get(app.url(&format!("/api/v2/revocations{query}")));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let challenge = answer
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = answer.json().await.unwrap_or(Value::Null);
    (status, body, challenge)
}

async fn endpoint_serves_records_to_the_secret_only(backend: Backend) {
    let Some(app) = app(backend, Some(SECRET)).await else {
        return;
    };
    // Without the secret, with a wrong one, with another scheme: 401.
    for bearer in [None, Some("api-tests-revocations-token-012345678X")] {
        let (status, _, challenge) = get(&app, "", bearer).await;
        assert_eq!(status, 401, "{bearer:?}");
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    let basic = app
        .http
        .get(app.url("/api/v2/revocations"))
        .basic_auth("x", Some(SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);
    let (status, body, _) = get(&app, "", Some(SECRET)).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"revocations": []}));

    // A revocation writes its record.
    let now = app.clock.now();
    let ttl = app.state.settings.auth_access_token_ttl_secs;
    auth_server::store::admin::revoke_user_tokens(&app.db.db, &app.user_id, now, ttl)
        .await
        .unwrap()
        .unwrap();
    let (status, body, _) = get(&app, "", Some(SECRET)).await;
    assert_eq!(status, 200);
    let records = body["revocations"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{body}");
    assert_eq!(records[0]["kind"], "user");
    assert_eq!(records[0]["subject"], app.user_id.as_str());
    assert_eq!(records[0]["not_before"], now + 1);
    assert_eq!(records[0]["expires_at"], now + 1 + ttl + 60);
    // `since` filters by `not_before`; anything else is refused.
    let (_, later, _) = get(&app, &format!("?since={}", now + 2), Some(SECRET)).await;
    assert_eq!(later, serde_json::json!({"revocations": []}));
    let (status, _, _) = get(&app, "?since=yesterday", Some(SECRET)).await;
    assert_eq!(status, 400);

    // Once no token it covers can be valid, the record is gone.
    app.clock.advance(ttl + 61);
    let (_, body, _) = get(&app, "", Some(SECRET)).await;
    assert_eq!(body, serde_json::json!({"revocations": []}));
}
both!(endpoint_serves_records_to_the_secret_only =>
    revocations_endpoint_serves_records_to_the_secret_only_sqlite,
    revocations_endpoint_serves_records_to_the_secret_only_postgres);

async fn endpoint_is_absent_without_a_secret(backend: Backend) {
    let Some(app) = app(backend, None).await else {
        return;
    };
    let (status, _, _) = get(&app, "", Some(SECRET)).await;
    assert_eq!(status, 404);
}
both!(endpoint_is_absent_without_a_secret =>
    revocations_endpoint_is_absent_without_a_secret_sqlite,
    revocations_endpoint_is_absent_without_a_secret_postgres);

/// The migration goes down (the table is dropped, nothing else) and up again.
async fn migration_goes_down_and_up(backend: Backend) {
    use migrations::sea_orm::{ConnectionTrait, Statement};
    use migrations::{Migrator, MigratorTrait};
    let Some(app) = app(backend, None).await else {
        return;
    };
    let db = &app.db.db;
    let count = || async {
        db.query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM token_revocations",
        ))
        .await
    };
    assert!(count().await.is_ok());
    let newer = Migrator::migrations()
        .iter()
        .rev()
        .position(|m| m.name() == "m20251201_000003_token_revocations")
        .unwrap();
    migrations::db::down(db, Some(u32::try_from(newer + 1).unwrap()))
        .await
        .unwrap();
    assert!(count().await.is_err(), "the table is gone");
    migrations::db::up(db, None).await.unwrap();
    assert!(count().await.is_ok());
}
both!(migration_goes_down_and_up =>
    token_revocations_migration_goes_down_and_up_sqlite,
    token_revocations_migration_goes_down_and_up_postgres);
