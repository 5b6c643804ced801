//! The API-key admin API (issue 10): `GET, POST /api/v2/clients/{id}/api-keys`
//! and `DELETE /api/v2/clients/{id}/api-keys/{key_id}`, role `admin`.

use migrations::sea_orm::{ConnectionTrait, Statement};
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{
    Answer, AppOptions, Backend, TestApp, both, machine_client, spawn_app, token_with_roles,
};

/// An access token of this server with `roles` (the helpers sign it as
/// `/token` would).
fn token(app: &TestApp, roles: &[&str]) -> String {
    token_with_roles(app, roles)
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = app.http.request(method, app.url(path));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    Answer::of(request.send().await.unwrap()).await
}

fn keys_path(client_id: &str) -> String {
    format!("/api/v2/clients/{client_id}/api-keys")
}

/// The key format of the README: `sk_(live|test)_<16 hex>_<43 base64url>`.
fn looks_like_key(key: &str, prefix: &str) -> bool {
    let Some(rest) = key.strip_prefix(prefix) else {
        return false;
    };
    let Some((id, secret)) = rest.split_once('_') else {
        return false;
    };
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

async fn key_rows(app: &TestApp) -> Vec<Vec<String>> {
    let db = &app.db.db;
    db.query_all(Statement::from_string(
        db.get_database_backend(),
        "SELECT id, client_id, key_hash, mode FROM api_keys",
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|row| {
        ["id", "client_id", "key_hash", "mode"]
            .into_iter()
            .map(|c| row.try_get::<String>("", c).unwrap())
            .collect()
    })
    .collect()
}

async fn creation_shows_key_once_and_stores_only_its_hash(backend: Backend) {
    let Some(app) = spawn_app(backend, AppOptions::default()).await else {
        return;
    };
    let admin = token(&app, &["admin"]);
    let client = machine_client(&app).await;
    let path = keys_path(&client.id);

    let created = call(&app, Method::POST, &path, Some(&admin), None).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.cache_control, "no-store");
    let body = created.json();
    let key = body["key"].as_str().unwrap().to_owned();
    assert!(looks_like_key(&key, "sk_live_"), "{key}");
    assert_eq!(body["client_id"], client.id.as_str());
    assert_eq!(body["active"], true);
    assert!(body["expires_at"].is_null());
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("sk_live_{id}_")));

    // A second key with an expiry: both active, neither shown again.
    let second = call(
        &app,
        Method::POST,
        &path,
        Some(&admin),
        Some(serde_json::json!({"expires_in_days": 30})),
    )
    .await;
    assert_eq!(second.status, 201);
    let second_key = second.json()["key"].as_str().unwrap().to_owned();
    assert_ne!(key, second_key);
    let expires_at = second.json()["expires_at"].as_i64().unwrap();
    let now = app.state.now();
    assert!((now + 30 * 86_400 - 5..=now + 30 * 86_400 + 5).contains(&expires_at));

    let listed = call(&app, Method::GET, &path, Some(&admin), None).await;
    assert_eq!(listed.status, 200);
    let text = listed.text();
    assert!(
        !text.contains(&key) && !text.contains(&second_key),
        "{text}"
    );
    assert!(
        !text.contains("key_hash") && !text.contains("\"key\""),
        "{text}"
    );
    let keys = listed.json()["api_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k["active"] == true));

    // The table holds hashes only: no column holds a key or its secret.
    let rows = key_rows(&app).await;
    assert_eq!(rows.len(), 2);
    for k in [&key, &second_key] {
        // The last 43 characters (base64url may hold `_` itself).
        let secret = &k[k.len() - 43..];
        for row in &rows {
            assert!(row.iter().all(|v| !v.contains(secret)), "{row:?}");
        }
        assert!(rows.iter().any(|r| r[2] == shared::secret::hash(k)));
    }
    assert_eq!(app.audit_count("api_key.created").await, 2);
    app.stop().await;
}
both!(creation_shows_key_once_and_stores_only_its_hash => api_keys_creation_shows_key_once_on_sqlite, api_keys_creation_shows_key_once_on_postgres);

async fn revocation_marks_the_key_and_is_audited(backend: Backend) {
    let Some(app) = spawn_app(backend, AppOptions::default()).await else {
        return;
    };
    let admin = token(&app, &["admin"]);
    let client = machine_client(&app).await;
    let path = keys_path(&client.id);
    let first = call(&app, Method::POST, &path, Some(&admin), None)
        .await
        .json();
    let second = call(&app, Method::POST, &path, Some(&admin), None)
        .await
        .json();
    let first_id = first["id"].as_str().unwrap();

    let revoked = call(
        &app,
        Method::DELETE,
        &format!("{path}/{first_id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(revoked.status, 204);
    let keys = call(&app, Method::GET, &path, Some(&admin), None)
        .await
        .json()["api_keys"]
        .as_array()
        .unwrap()
        .clone();
    let by_id = |id: &str| keys.iter().find(|k| k["id"] == id).unwrap().clone();
    assert_eq!(by_id(first_id)["active"], false);
    assert!(by_id(first_id)["revoked_at"].is_i64());
    assert_eq!(by_id(second["id"].as_str().unwrap())["active"], true);
    assert_eq!(app.audit_count("api_key.revoked").await, 1);

    // Revoking again stays 204; another client's path or an unknown id: 404.
    let again = call(
        &app,
        Method::DELETE,
        &format!("{path}/{first_id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(again.status, 204);
    let other = machine_client(&app).await;
    let wrong_client = call(
        &app,
        Method::DELETE,
        &format!(
            "{}/{}",
            keys_path(&other.id),
            second["id"].as_str().unwrap()
        ),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(wrong_client.status, 404);
    let unknown = call(
        &app,
        Method::DELETE,
        &format!("{path}/0123456789abcdef"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(unknown.status, 404);
    let no_client = call(&app, Method::POST, &keys_path("c_nope"), Some(&admin), None).await;
    assert_eq!(no_client.status, 404);
    assert_eq!(
        call(&app, Method::GET, &keys_path("c_nope"), Some(&admin), None)
            .await
            .status,
        404
    );
    app.stop().await;
}
both!(revocation_marks_the_key_and_is_audited => api_keys_revocation_is_audited_on_sqlite, api_keys_revocation_is_audited_on_postgres);

#[tokio::test]
async fn api_keys_need_the_admin_role() {
    let Some(app) = spawn_app(Backend::Sqlite, AppOptions::default()).await else {
        return;
    };
    let client = machine_client(&app).await;
    let path = keys_path(&client.id);
    let user = token(&app, &[]);
    for method in [Method::GET, Method::POST] {
        let anonymous = call(&app, method.clone(), &path, None, None).await;
        assert_eq!(anonymous.status, 401);
        let plain = call(&app, method, &path, Some(&user), None).await;
        assert_eq!(plain.status, 403);
    }
    let delete = call(
        &app,
        Method::DELETE,
        &format!("{path}/0123456789abcdef"),
        Some(&user),
        None,
    )
    .await;
    assert_eq!(delete.status, 403);
    assert!(key_rows(&app).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn api_keys_of_a_test_client_are_sk_test_and_expiry_is_bounded() {
    let Some(app) = spawn_app(Backend::Sqlite, AppOptions::default()).await else {
        return;
    };
    let admin = token(&app, &["admin"]);
    let client = machine_client(&app).await;
    auth_server::store::api_keys::mark_test_client(&app.db.db, &client.id)
        .await
        .unwrap();
    let path = keys_path(&client.id);
    let created = call(&app, Method::POST, &path, Some(&admin), None).await;
    assert_eq!(created.status, 201);
    let body = created.json();
    assert!(
        looks_like_key(body["key"].as_str().unwrap(), "sk_test_"),
        "{body}"
    );
    assert_eq!(body["mode"], "test");
    for bad in [
        serde_json::json!({"expires_in_days": 0}),
        serde_json::json!({"expires_in_days": 3651}),
        serde_json::json!({"other": 1}),
    ] {
        let refused = call(&app, Method::POST, &path, Some(&admin), Some(bad)).await;
        assert_eq!(refused.status, 422, "{}", refused.text());
    }
    app.stop().await;
}

/// `m20251201_000001_api_keys` goes down (table and `clients.is_test` gone,
/// clients kept) and up again.
async fn api_keys_migration_goes_down_and_up(backend: Backend) {
    use migrations::{Migrator, MigratorTrait};
    let Some(app) = spawn_app(backend, AppOptions::default()).await else {
        return;
    };
    let client = machine_client(&app).await;
    let db = &app.db.db;
    let all = Migrator::migrations();
    let at = all
        .iter()
        .position(|m| m.name() == "m20251201_000001_api_keys")
        .unwrap();
    let steps = u32::try_from(all.len() - at).unwrap();
    let query = |sql: &str| {
        db.query_one(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
    };
    assert!(query("SELECT count(*) AS n FROM api_keys").await.is_ok());
    assert!(query("SELECT is_test FROM clients").await.is_ok());
    migrations::db::down(db, Some(steps)).await.unwrap();
    assert!(query("SELECT count(*) AS n FROM api_keys").await.is_err());
    assert!(query("SELECT is_test FROM clients").await.is_err());
    let kept = query(&format!(
        "SELECT id FROM clients WHERE id = '{}'",
        client.id
    ))
    .await
    .unwrap();
    assert!(kept.is_some());
    migrations::db::up(db, None).await.unwrap();
    assert!(query("SELECT count(*) AS n FROM api_keys").await.is_ok());
    app.stop().await;
}
both!(api_keys_migration_goes_down_and_up => api_keys_migration_goes_down_and_up_on_sqlite, api_keys_migration_goes_down_and_up_on_postgres);
