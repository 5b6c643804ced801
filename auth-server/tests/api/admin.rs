//! The admin API (issue 8): disable/enable a user, revoke a user's or a
//! client's tokens, list clients and audit events, and the function-level
//! matrix: every admin route × {no token, forged token, normal user, admin}.

use std::collections::BTreeSet;

use auth_server::store::entities::{audit_events, login_sessions, users};
use migrations::sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{
    Answer, AppOptions, Backend, Browser, PASSWORD, TestApp, TestClient, authorize_params, both,
    hidden, spawn_app,
};

/// The admin's `sub` in the tokens these tests mint: not the test user.
const ADMIN_SUB: &str = "0b9d1c55-admin-0000-0000-000000000001";
const UA: &str = "admin-tests/1.0";

async fn app(backend: Backend) -> Option<TestApp> {
    spawn_app(backend, AppOptions::default()).await
}

fn token(app: &TestApp, sub: &str, roles: &[&str]) -> String {
    crate::helpers::token_for(app, sub, roles)
}

fn admin(app: &TestApp) -> String {
    token(app, ADMIN_SUB, &["admin"])
}

/// The same admin claims signed by another key.
fn forged(app: &TestApp) -> String {
    let now = auth_server::clock::now();
    let claims = shared::jwt::AccessTokenClaims {
        iss: app.state.issuer.clone(),
        sub: ADMIN_SUB.into(),
        aud: app.state.settings.auth_audience.clone(),
        client_id: "admin-console".into(),
        scope: "notes:read".into(),
        exp: now + 300,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        roles: vec!["admin".into()],
        tier: Default::default(),
    };
    let other = shared::jwt::Signer::from_pem(shared::test_util::shared_private_key_pem()).unwrap();
    other.sign(&claims).unwrap()
}

async fn call(app: &TestApp, method: Method, path: &str, bearer: Option<&str>) -> Answer {
    let mut request = app
        .http
        .request(method, app.url(path))
        .header("user-agent", UA);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    Answer::of(request.send().await.unwrap()).await
}

async fn admin_get(app: &TestApp, path: &str) -> Answer {
    call(app, Method::GET, path, Some(&admin(app))).await
}

async fn admin_post(app: &TestApp, path: &str) -> Answer {
    call(app, Method::POST, path, Some(&admin(app))).await
}

/// The top-level keys of a JSON object.
fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

const PROBLEM: &[&str] = &["detail", "status", "title", "type"];
const PROBLEM_NO_DETAIL: &[&str] = &["status", "title", "type"];
const PROBLEM_422: &[&str] = &["detail", "errors", "status", "title", "type"];
const USER_DISABLED: &[&str] = &[
    "access_tokens_valid_until",
    "codes_discarded",
    "disabled",
    "disabled_at",
    "refresh_tokens_revoked",
    "sessions_ended",
    "user_id",
];
const USER_ENABLED: &[&str] = &["disabled", "user_id"];
const USER_REVOKED: &[&str] = &["codes_discarded", "refresh_tokens_revoked", "user_id"];
const CLIENT_REVOKED: &[&str] = &["client_id", "codes_discarded", "refresh_tokens_revoked"];
const CLIENTS: &[&str] = &["clients", "next_cursor"];
const CLIENT: &[&str] = &[
    "created_at",
    "grant_types",
    "id",
    "kind",
    "name",
    "redirect_uris",
    "refresh_grace_secs",
    "scopes",
    "tier",
];
const AUDIT: &[&str] = &["events", "next_cursor"];
const EVENT: &[&str] = &["at", "client_id", "detail", "id", "kind", "user_id"];
const LOCKOUTS: &[&str] = &["lockouts"];
const LOCKOUT: &[&str] = &["failures", "kind", "locked_at", "locked_until", "subject"];

/// A sign-in attempt from a fresh browser: (status, page with its CSRF
/// token blanked out), the answer compared across causes.
async fn sign_in_attempt(app: &TestApp, password: &str) -> (u16, String) {
    let browser = Browser::new();
    let html = browser
        .http
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&html, "csrf_token").unwrap();
    let answer = browser
        .http
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("next", "/"),
            ("email", "alice@example.com"),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let page = answer.text().await.unwrap();
    let page = match hidden(&page, "csrf_token") {
        Some(token) => page.replace(&token, "CSRF"),
        None => page,
    };
    (status, page)
}

async fn sessions_of(app: &TestApp, user_id: &str) -> u64 {
    login_sessions::Entity::find()
        .filter(login_sessions::Column::UserId.eq(user_id))
        .count(&app.db.db)
        .await
        .unwrap()
}

async fn events(app: &TestApp, kind: &str) -> Vec<audit_events::Model> {
    audit_events::Entity::find()
        .filter(audit_events::Column::Kind.eq(kind))
        .order_by_asc(audit_events::Column::At)
        .all(&app.db.db)
        .await
        .unwrap()
}

fn detail(row: &audit_events::Model) -> Value {
    serde_json::from_str(&row.detail).unwrap()
}

async fn code_exchange(app: &TestApp, client: &TestClient, code: String, verifier: &str) -> Value {
    let mut form = client.form();
    form.extend([
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", crate::helpers::REDIRECT.to_owned()),
        ("code_verifier", verifier.to_owned()),
    ]);
    let (status, body) = app.token(&form).await;
    assert_eq!(status, 400, "{body}");
    body
}

// ------------------------------------------------------------ disable

async fn disable_ends_sessions_tokens_and_sign_in(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client(false, None).await;
    let refresh = app.tokens_for(&client).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let verifier = "v".repeat(43);
    let pending_code = app.code(&client, &verifier, true).await;
    let browser = Browser::new();
    browser.sign_in(&app).await;
    assert_eq!(sessions_of(&app, &app.user_id).await, 1);
    let wrong = sign_in_attempt(&app, "not the password at all").await;
    assert_eq!(wrong.0, 401);

    let path = format!("/api/v2/admin/users/{}/disable", app.user_id);
    let answer = admin_post(&app, &path).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.content_type, "application/json");
    assert_eq!(answer.cache_control, "no-store");
    let body = answer.json();
    assert_eq!(keys(&body), set(USER_DISABLED), "{body}");
    assert_eq!(body["user_id"], app.user_id.as_str());
    assert_eq!(body["disabled"], true);
    assert_eq!(body["sessions_ended"], 1);
    assert_eq!(body["refresh_tokens_revoked"], 1);
    assert_eq!(body["codes_discarded"], 1);
    let disabled_at = body["disabled_at"].as_str().unwrap().to_owned();

    // Sessions gone: the browser's session no longer authorizes.
    assert_eq!(sessions_of(&app, &app.user_id).await, 0);
    let authorize = browser
        .authorize(
            &app,
            &authorize_params(&client.id, crate::helpers::REDIRECT),
        )
        .await;
    assert_eq!(authorize.status().as_u16(), 303);
    assert!(
        crate::helpers::location(&authorize)
            .unwrap()
            .starts_with("/login?"),
        "an old session must not reach consent"
    );
    // Sign-in with the right password: exactly the wrong password's answer.
    let refused = sign_in_attempt(&app, PASSWORD).await;
    assert_eq!(refused, wrong, "no account-state oracle");
    let failed = events(&app, "login.failed").await;
    let last = failed.last().unwrap();
    assert_eq!(last.user_id.as_deref(), Some(app.user_id.as_str()));
    assert_eq!(detail(last)["reason"], "disabled");
    assert_eq!(detail(&failed[0])["reason"], "bad_credentials");
    // Refresh and the code issued before: refused.
    let (status, answer) = app.refresh(&client, &refresh).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let answer = code_exchange(&app, &client, pending_code, &verifier).await;
    assert_eq!(answer["error"], "invalid_grant");
    // A code created while disabled (a race with a consent) buys nothing.
    let late_code = app.code(&client, &verifier, true).await;
    let answer = code_exchange(&app, &client, late_code, &verifier).await;
    assert_eq!(answer["error"], "invalid_grant");
    // So does a refresh token minted while the disable ran.
    let late_token = shared::secret::generate().unwrap();
    let now = app.state.now();
    auth_server::store::refresh::create_family(
        &app.db.db,
        auth_server::store::refresh::NewFamily {
            token: &late_token,
            client_id: &client.id,
            user_id: &app.user_id,
            scope: crate::helpers::SCOPE,
            code_id: None,
            expires_at: now + 3600,
            now,
        },
    )
    .await
    .unwrap();
    let (status, answer) = app.refresh(&client, &late_token).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Idempotent: the first time stands.
    let again = admin_post(&app, &path).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["disabled_at"], disabled_at.as_str());
    let audited = events(&app, "user.disabled").await;
    assert_eq!(audited.len(), 2);
    assert_eq!(audited[0].user_id.as_deref(), Some(app.user_id.as_str()));
    assert_eq!(detail(&audited[0])["actor"], ADMIN_SUB);
    assert_eq!(detail(&audited[0])["outcome"], "disabled");
    assert_eq!(detail(&audited[0])["user_agent"], UA);
    assert_eq!(detail(&audited[0])["client_ip"], "127.0.0.1");
    assert_eq!(detail(&audited[1])["outcome"], "already_disabled");

    // Enable: sign-in works again (twice: idempotent); the change moves
    // `updated_at`.
    app.clock.advance(120);
    let enabled_at = app.state.now();
    let enable = format!("/api/v2/admin/users/{}/enable", app.user_id);
    for _ in 0..2 {
        let answer = admin_post(&app, &enable).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let body = answer.json();
        assert_eq!(keys(&body), set(USER_ENABLED));
        assert_eq!(body["disabled"], false);
    }
    let user = users::Entity::find_by_id(app.user_id.clone())
        .one(&app.db.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.disabled_at, None);
    assert_eq!(user.updated_at, enabled_at, "enable moves updated_at");
    Browser::new().sign_in(&app).await;
    let enabled = events(&app, "user.enabled").await;
    assert_eq!(enabled.len(), 2);
    assert_eq!(detail(&enabled[0])["outcome"], "enabled");
    assert_eq!(detail(&enabled[1])["outcome"], "already_enabled");
    // The revoked refresh token stays revoked.
    let (status, _) = app.refresh(&client, &refresh).await;
    assert_eq!(status, 400);

    // Unknown ids: 404 problem, nothing audited.
    for action in ["disable", "enable", "revoke-tokens"] {
        let path = format!("/api/v2/admin/users/{}/{action}", uuid::Uuid::new_v4());
        let answer = admin_post(&app, &path).await;
        assert_eq!(answer.status, 404, "{action}");
        assert_eq!(answer.content_type, "application/problem+json");
        assert_eq!(keys(&answer.json()), set(PROBLEM_NO_DETAIL));
    }
    assert_eq!(events(&app, "user.disabled").await.len(), 2);
    app.stop().await;
}

both!(disable_ends_sessions_tokens_and_sign_in =>
    admin_disable_ends_sessions_tokens_and_sign_in_sqlite,
    admin_disable_ends_sessions_tokens_and_sign_in_postgres);

// ------------------------------------------------------------ revoke

async fn revoke_tokens_of_user_and_client(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let a = app.client(false, None).await;
    let b = app.client(true, None).await;
    let ra = app.tokens_for(&a).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rb = app.tokens_for(&b).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let _pending = app.code(&a, &"v".repeat(43), true).await;

    let path = format!("/api/v2/admin/users/{}/revoke-tokens", app.user_id);
    let answer = admin_post(&app, &path).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(keys(&body), set(USER_REVOKED));
    assert_eq!(body["user_id"], app.user_id.as_str());
    assert_eq!(body["refresh_tokens_revoked"], 2);
    assert_eq!(body["codes_discarded"], 1);
    for (client, token) in [(&a, &ra), (&b, &rb)] {
        let (status, answer) = app.refresh(client, token).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
    // Nothing left: 0.
    let again = admin_post(&app, &path).await.json();
    assert_eq!(again["refresh_tokens_revoked"], 0);
    // The user can still get new tokens (revoking is not disabling).
    let ra = app.tokens_for(&a).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rb = app.tokens_for(&b).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // A client's tokens: only that client's.
    let path = format!("/api/v2/admin/clients/{}/revoke-tokens", a.id);
    let answer = admin_post(&app, &path).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(keys(&body), set(CLIENT_REVOKED));
    assert_eq!(body["client_id"], a.id.as_str());
    assert_eq!(body["refresh_tokens_revoked"], 1);
    let (status, _) = app.refresh(&a, &ra).await;
    assert_eq!(status, 400);
    let (status, body) = app.refresh(&b, &rb).await;
    assert_eq!(status, 200, "another client's tokens stay: {body}");

    let unknown = admin_post(&app, "/api/v2/admin/clients/c_nosuchclient/revoke-tokens").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.content_type, "application/problem+json");
    let audited = events(&app, "token.revoked_by_admin").await;
    assert_eq!(audited.len(), 3);
    assert_eq!(detail(&audited[0])["of"], "user");
    assert_eq!(detail(&audited[0])["actor"], ADMIN_SUB);
    let by_client = audited
        .iter()
        .find(|e| e.client_id.as_deref() == Some(a.id.as_str()))
        .unwrap();
    assert_eq!(detail(by_client)["of"], "client");
    assert_eq!(detail(by_client)["refresh_tokens_revoked"], 1);
    app.stop().await;
}

both!(revoke_tokens_of_user_and_client =>
    admin_revoke_tokens_of_user_and_client_sqlite,
    admin_revoke_tokens_of_user_and_client_postgres);

// ------------------------------------------------------------ lists

async fn clients_list_pages_without_secrets(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    let mut secrets = Vec::new();
    for public in [false, true, false] {
        let client = app.client(public, None).await;
        ids.push(client.id.clone());
        if let Some(secret) = client.secret {
            secrets.push(secret);
        }
    }
    ids.sort();
    let answer = admin_get(&app, "/api/v2/admin/clients").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.cache_control, "no-store");
    let text = answer.text();
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()));
        assert!(!text.contains(&shared::secret::hash(secret)));
    }
    assert!(!text.contains("secret"), "{text}");
    let body = answer.json();
    assert_eq!(keys(&body), set(CLIENTS));
    assert_eq!(body["next_cursor"], Value::Null);
    let listed = body["clients"].as_array().unwrap();
    let listed_ids: Vec<&str> = listed.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(listed_ids, ids);
    for client in listed {
        assert_eq!(keys(client), set(CLIENT), "{client}");
        assert_eq!(client["name"], "Test app");
        assert_eq!(
            client["redirect_uris"],
            serde_json::json!([crate::helpers::REDIRECT])
        );
        assert_eq!(
            client["scopes"],
            serde_json::json!(["notes:read", "notes:write"])
        );
        assert_eq!(
            client["grant_types"],
            serde_json::json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(client["tier"], "standard");
        assert!(client["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let kinds: Vec<&str> = listed.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "public").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "confidential").count(), 2);

    // Pages of two.
    let first = admin_get(&app, "/api/v2/admin/clients?limit=2")
        .await
        .json();
    assert_eq!(first["clients"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = admin_get(
        &app,
        &format!("/api/v2/admin/clients?limit=2&cursor={cursor}"),
    )
    .await
    .json();
    assert_eq!(second["clients"].as_array().unwrap().len(), 1);
    assert_eq!(second["clients"][0]["id"], ids[2].as_str());
    assert_eq!(second["next_cursor"], Value::Null);

    // Bad queries: 422 naming field and rule.
    for (query, field, rule) in [
        ("limit=0", "limit", "range"),
        ("limit=101", "limit", "range"),
        ("limit=ten", "limit", "range"),
        ("cursor=%25%25", "cursor", "invalid"),
        ("secret=1", "secret", "unknown_field"),
        ("limit=1&limit=2", "limit", "duplicate"),
    ] {
        let answer = admin_get(&app, &format!("/api/v2/admin/clients?{query}")).await;
        assert_eq!(
            answer.errors(),
            vec![(field.to_owned(), rule.to_owned())],
            "{query}"
        );
        assert_eq!(keys(&answer.json()), set(PROBLEM_422));
    }
    app.stop().await;
}

both!(clients_list_pages_without_secrets =>
    admin_clients_list_pages_without_secrets_sqlite,
    admin_clients_list_pages_without_secrets_postgres);

async fn audit_list_filters_and_pages(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client(false, None).await;
    let start = app.state.now();
    // Events a second apart: a user disabled, enabled, a client revoked, and
    // a permission denied.
    admin_post(
        &app,
        &format!("/api/v2/admin/users/{}/disable", app.user_id),
    )
    .await;
    app.clock.advance(1);
    admin_post(&app, &format!("/api/v2/admin/users/{}/enable", app.user_id)).await;
    app.clock.advance(1);
    admin_post(
        &app,
        &format!("/api/v2/admin/clients/{}/revoke-tokens", client.id),
    )
    .await;
    app.clock.advance(1);
    let user = token(&app, &app.user_id, &[]);
    let denied = call(&app, Method::GET, "/api/v2/admin/audit", Some(&user)).await;
    assert_eq!(denied.status, 403);
    app.clock.advance(3600);

    let answer = admin_get(&app, "/api/v2/admin/audit").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.cache_control, "no-store");
    let body = answer.json();
    assert_eq!(keys(&body), set(AUDIT));
    let all = body["events"].as_array().unwrap();
    let kinds: Vec<&str> = all.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "permission.denied",
            "token.revoked_by_admin",
            "user.enabled",
            "user.disabled"
        ],
        "newest first"
    );
    for event in all {
        assert_eq!(keys(event), set(EVENT), "{event}");
        assert!(event["detail"].is_object());
        assert!(event["at"].as_str().unwrap().ends_with('Z'));
    }
    let denied = &all[0];
    assert_eq!(denied["user_id"], app.user_id.as_str());
    assert_eq!(denied["client_id"], "admin-console");
    assert_eq!(denied["detail"]["route"], "/api/v2/admin/audit");

    let kinds_of = |body: &Value| -> Vec<String> {
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    let since = time::OffsetDateTime::from_unix_timestamp(start + 1)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for (query, expected) in [
        ("kind=user.enabled", vec!["user.enabled"]),
        (
            &*format!("user_id={}", app.user_id),
            vec!["permission.denied", "user.enabled", "user.disabled"],
        ),
        (
            &*format!("client_id={}", client.id),
            vec!["token.revoked_by_admin"],
        ),
        (
            &*format!("since={}", since.replace('+', "%2B")),
            vec![
                "permission.denied",
                "token.revoked_by_admin",
                "user.enabled",
            ],
        ),
        ("since=30m", vec![]),
        (
            "since=2h",
            vec![
                "permission.denied",
                "token.revoked_by_admin",
                "user.enabled",
                "user.disabled",
            ],
        ),
        ("kind=user.disabled&since=2h", vec!["user.disabled"]),
        ("kind=nothing.like.this", vec![]),
    ] {
        let answer = admin_get(&app, &format!("/api/v2/admin/audit?{query}")).await;
        assert_eq!(answer.status, 200, "{query}: {}", answer.text());
        assert_eq!(kinds_of(&answer.json()), expected, "{query}");
    }

    // Pages of one, newest first, no gaps or repeats.
    let mut seen = Vec::new();
    let mut path = "/api/v2/admin/audit?limit=1".to_owned();
    loop {
        let page = admin_get(&app, &path).await.json();
        seen.extend(kinds_of(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v2/admin/audit?limit=1&cursor={cursor}"),
            None => break,
        }
        assert!(seen.len() <= 10, "pagination does not end");
    }
    assert_eq!(seen, kinds);

    for (query, field, rule) in [
        ("since=yesterday", "since", "format"),
        ("since=-1h", "since", "format"),
        ("since=2026-01-01", "since", "format"),
        ("limit=0", "limit", "range"),
        ("limit=1000", "limit", "range"),
        ("kind=DROP%20TABLE", "kind", "format"),
        ("kind=", "kind", "format"),
        ("user_id=", "user_id", "length"),
        (
            &*format!("client_id={}", "c".repeat(200)),
            "client_id",
            "length",
        ),
        ("cursor=bm90LWEtY3Vyc29y", "cursor", "invalid"),
        ("actor=someone", "actor", "unknown_field"),
        ("kind=a&kind=b", "kind", "duplicate"),
    ] {
        let answer = admin_get(&app, &format!("/api/v2/admin/audit?{query}")).await;
        assert_eq!(
            answer.errors(),
            vec![(field.to_owned(), rule.to_owned())],
            "{query}"
        );
        assert_eq!(keys(&answer.json()), set(PROBLEM_422));
    }
    // Several bad fields: each named.
    let answer = admin_get(&app, "/api/v2/admin/audit?limit=0&since=x").await;
    assert_eq!(
        answer.errors(),
        vec![
            ("limit".to_owned(), "range".to_owned()),
            ("since".to_owned(), "format".to_owned())
        ]
    );
    app.stop().await;
}

both!(audit_list_filters_and_pages =>
    admin_audit_list_filters_and_pages_sqlite,
    admin_audit_list_filters_and_pages_postgres);

// ------------------------------------------------------------ the matrix

/// Every admin route: (method, path, what an admin gets).
fn admin_routes(app: &TestApp, client: &TestClient) -> Vec<(Method, String, u16)> {
    let user = &app.user_id;
    let client = &client.id;
    let routes = vec![
        (Method::GET, "/api/v2/admin/lockouts".to_owned(), 200),
        (
            Method::DELETE,
            "/api/v2/admin/lockouts/account/nobody@example.com".to_owned(),
            404,
        ),
        (
            Method::POST,
            format!("/api/v2/admin/users/{user}/revoke-tokens"),
            200,
        ),
        (
            Method::POST,
            format!("/api/v2/admin/clients/{client}/revoke-tokens"),
            200,
        ),
        (Method::GET, "/api/v2/admin/clients".to_owned(), 200),
        (Method::GET, "/api/v2/admin/audit".to_owned(), 200),
        (
            Method::POST,
            format!("/api/v2/admin/users/{user}/disable"),
            200,
        ),
        (
            Method::POST,
            format!("/api/v2/admin/users/{user}/enable"),
            200,
        ),
        (
            Method::POST,
            format!("/api/v2/admin/users/{}/disable", uuid::Uuid::new_v4()),
            404,
        ),
        // The user search (`http/admin_search.rs`).
        (Method::GET, "/api/v2/admin/users".to_owned(), 200),
        (
            Method::GET,
            "/api/v2/admin/users?q=alice&limit=5".to_owned(),
            200,
        ),
    ];
    routes
}

async fn function_level_matrix(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client(false, None).await;
    let normal = token(&app, &app.user_id, &[]);
    let other_role = token(&app, &app.user_id, &["support", "administrator"]);
    let forged = forged(&app);
    let admin = admin(&app);
    let routes = admin_routes(&app, &client);
    let mut denied = 0;
    for (method, path, admin_status) in &routes {
        // No token: 401 with a bare challenge.
        let answer = call(&app, method.clone(), path, None).await;
        assert_eq!(answer.status, 401, "{method} {path}");
        assert_eq!(answer.content_type, "application/problem+json");
        assert_eq!(keys(&answer.json()), set(PROBLEM));
        // A token signed by another key, or no token at all in the header.
        for bad in [forged.as_str(), "not-a-jwt", ""] {
            let answer = call(&app, method.clone(), path, Some(bad)).await;
            assert_eq!(answer.status, 401, "{method} {path} {bad}");
            assert_eq!(keys(&answer.json()), set(PROBLEM));
        }
        // A normal user, or a role that only looks like admin: 403, audited.
        for user in [&normal, &other_role] {
            let answer = call(&app, method.clone(), path, Some(user)).await;
            assert_eq!(answer.status, 403, "{method} {path}");
            assert_eq!(answer.content_type, "application/problem+json");
            assert_eq!(keys(&answer.json()), set(PROBLEM));
            denied += 1;
            let rows = events(&app, "permission.denied").await;
            assert_eq!(rows.len(), denied, "{method} {path}: one event per refusal");
        }
        // The admin.
        let answer = call(&app, method.clone(), path, Some(&admin)).await;
        assert_eq!(
            answer.status,
            *admin_status,
            "{method} {path}: {}",
            answer.text()
        );
    }
    // What the events hold.
    let rows = events(&app, "permission.denied").await;
    let last = rows.last().unwrap();
    assert_eq!(last.user_id.as_deref(), Some(app.user_id.as_str()));
    assert_eq!(last.client_id.as_deref(), Some("admin-console"));
    let d = detail(last);
    assert_eq!(d["user_agent"], UA);
    assert_eq!(d["client_ip"], "127.0.0.1");
    assert_eq!(d["outcome"], "denied");
    let routes_seen: BTreeSet<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                detail(r)["method"].as_str().unwrap(),
                detail(r)["route"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        routes_seen.contains("POST /api/v2/admin/users/{id}/disable"),
        "{routes_seen:?}"
    );
    assert!(routes_seen.contains("DELETE /api/v2/admin/lockouts/{kind}/{subject}"));
    // The refused calls changed nothing: only the admin's disable/enable ran.
    assert_eq!(events(&app, "user.disabled").await.len(), 1);
    assert_eq!(events(&app, "token.revoked_by_admin").await.len(), 2);
    app.stop().await;
}

both!(function_level_matrix =>
    admin_routes_need_the_admin_role_sqlite,
    admin_routes_need_the_admin_role_postgres);

// ------------------------------------------------------------ key sets

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lockouts_body_has_exactly_its_keys() {
    use auth_server::store::lockouts::{self, Kind};
    let app = app(Backend::Sqlite).await.unwrap();
    let now = app.state.now();
    lockouts::lock(
        &app.db.db,
        Kind::Account,
        "nobody@example.com",
        5,
        now,
        now + 3600,
    )
    .await
    .unwrap();
    let answer = admin_get(&app, "/api/v2/admin/lockouts").await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    assert_eq!(keys(&body), set(LOCKOUTS));
    assert_eq!(body["lockouts"].as_array().unwrap().len(), 1);
    assert_eq!(keys(&body["lockouts"][0]), set(LOCKOUT));
    assert_eq!(body["lockouts"][0]["subject"], "nobody@example.com");
    assert_eq!(body["lockouts"][0]["locked_until"], now + 3600);
    app.stop().await;
}

/// `RATE_LIMIT_ADMIN` per address, before the token is looked at: past the
/// rate even an admin gets 429 problem+json with `Retry-After`, and a user
/// without the role cannot write `permission.denied` rows without bound.
#[tokio::test]
async fn admin_api_is_rate_limited_per_address_before_the_token_is_checked() {
    let app = crate::helpers::spawn_app_tuned(Backend::Sqlite, AppOptions::default(), |s| {
        s.rate_limit_admin = "3/minute".into();
    })
    .await
    .unwrap();
    let user = token(&app, &app.user_id, &[]);
    let mut statuses = Vec::new();
    for bearer in [None, Some(user.as_str()), Some(user.as_str())] {
        let mut request = app.http.get(app.url("/api/v2/admin/clients"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        statuses.push(request.send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 403, 403]);
    let refused = app
        .http
        .get(app.url("/api/v2/admin/audit"))
        .bearer_auth(admin(&app))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    // Two 403s, two events; the refused requests wrote none.
    for _ in 0..5 {
        let again = app
            .http
            .get(app.url("/api/v2/admin/clients"))
            .bearer_auth(&user)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status().as_u16(), 429);
    }
    assert_eq!(app.audit_count("permission.denied").await, 2);
    app.stop().await;
}
