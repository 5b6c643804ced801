//! Failing well: when the database cannot be reached, every answer is a fast
//! 503 with `Retry-After` in the endpoint's own shape, `/readyz` says which
//! check failed, and `/healthz` still answers.

use serde_json::Value;

use crate::helpers::{AppOptions, Backend, TestApp, spawn_app};

async fn app_without_database() -> (TestApp, crate::helpers::TestClient) {
    let app = spawn_app(Backend::Sqlite, AppOptions::default())
        .await
        .unwrap();
    let client = app.client(false, None).await;
    // The pool is shared with the server: closing it takes the database away.
    app.db.db.clone().close().await.unwrap();
    (app, client)
}

#[tokio::test]
async fn token_answers_503_temporarily_unavailable_when_database_is_down() {
    let (app, client) = app_without_database().await;
    let mut form = client.form();
    form.push(("grant_type", "refresh_token".to_owned()));
    form.push(("refresh_token", "whatever".to_owned()));
    let response = app
        .http
        .post(app.url("/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    app.stop().await;
}

#[tokio::test]
async fn sign_in_answers_503_with_retry_after_when_database_is_down() {
    let (app, _) = app_without_database().await;
    // The anonymous form needs no database (its CSRF token is a signed
    // cookie); signing in does.
    let browser = crate::helpers::Browser::new();
    let page = browser.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csrf = crate::helpers::hidden(&page.text().await.unwrap(), "csrf_token").unwrap();
    let response = browser
        .http
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("next", "/"),
            ("email", "alice@example.com"),
            ("password", crate::helpers::PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    app.stop().await;
}

#[tokio::test]
async fn readyz_names_failed_checks_and_healthz_stays_up_when_database_is_down() {
    let (app, _) = app_without_database().await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(ready.headers()["retry-after"], "2");
    assert_eq!(ready.headers()["content-type"], "application/problem+json");
    let body: Value = ready.json().await.unwrap();
    assert!(
        body["checks"]["database"]
            .as_str()
            .unwrap()
            .starts_with("failed")
    );
    assert!(
        body["checks"]["database_write"]
            .as_str()
            .unwrap()
            .starts_with("failed")
    );
    assert_eq!(body["checks"]["signing_key"], "ok");
    let live = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(live.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn readyz_reports_every_check_when_ready() {
    let app = spawn_app(Backend::Sqlite, AppOptions::default())
        .await
        .unwrap();
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let body: Value = ready.json().await.unwrap();
    for check in ["database", "database_write", "signing_key"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }
    app.stop().await;
}

/// Every pooled connection is held: a request waits the acquire deadline
/// (1 s by default, not the old 10 s) and gets a 503, not a hang or a 500.
async fn exhausted_pool(backend: Backend) {
    use migrations::sea_orm::TransactionTrait;
    let Some(app) = spawn_app(backend, AppOptions::default()).await else {
        return;
    };
    let client = app.client(false, None).await;
    let mut held = Vec::new();
    while held.len() < 16 {
        held.push(app.db.db.begin().await.unwrap());
    }
    let started = std::time::Instant::now();
    let mut form = client.form();
    form.push(("grant_type", "refresh_token".to_owned()));
    form.push(("refresh_token", "whatever".to_owned()));
    let (status, body) = app.token(&form).await;
    eprintln!(
        "exhausted pool answered {status} in {:?}",
        started.elapsed()
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );
    for txn in held {
        txn.rollback().await.unwrap();
    }
    let (status, _) = app.token(&form).await;
    assert_eq!(status, 400, "service resumes once connections are free");
    app.stop().await;
}
crate::helpers::both!(exhausted_pool => token_answers_503_when_pool_is_exhausted_sqlite, token_answers_503_when_pool_is_exhausted_postgres);

#[tokio::test]
async fn readyz_answers_503_draining_once_shutdown_has_begun() {
    let app = spawn_app(Backend::Sqlite, AppOptions::default())
        .await
        .unwrap();
    app.state.draining.start();
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["draining"], "failed: shutting down");
    assert_eq!(body["checks"]["database"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn audit_writes_have_their_own_connections_when_requests_hold_every_one() {
    use auth_server::config::Settings;
    use auth_server::startup::{Application, BuildOptions};
    use migrations::sea_orm::{EntityTrait, PaginatorTrait, TransactionTrait};
    // The server opens its own pools here (no injected connection), as
    // `serve` does.
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        database_url: format!("sqlite://{}/a.db?mode=rwc", dir.path().display()),
        auth_listen: "127.0.0.1:0".parse().unwrap(),
        auth_keys_dir: dir.path().join("keys"),
        ..Settings::default()
    };
    let app = Application::build(settings, BuildOptions::default())
        .await
        .unwrap();
    let state = app.state().clone();
    let mut held = Vec::new();
    while held.len() < migrations::db::POOL_SIZE as usize {
        held.push(state.db.begin().await.unwrap());
    }
    let written = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        auth_server::audit::record(&state, "test.event", None, None, serde_json::json!({})),
    )
    .await;
    assert!(
        written.is_ok(),
        "the audit write waited for a request's connection"
    );
    let rows = auth_server::store::entities::audit_events::Entity::find()
        .count(&state.audit_db)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(
        state
            .audit_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    drop(held);
}

/// On SQLite the writes of the sign-in and authorization pages take the
/// writer's turn (`migrations::db::Writer::run`), in line with rotations,
/// code exchanges and audit batches: while another writer holds the turn
/// past the acquire deadline, signing in and asking for consent answer 503
/// with `Retry-After`, and no session is handed out; once the turn is given
/// back both work.
#[tokio::test]
async fn page_writes_wait_in_line_for_the_sqlite_writers_turn() {
    use crate::helpers::{Browser, REDIRECT, authorize_params, hidden, spawn_app_tuned};
    let app = spawn_app_tuned(Backend::Sqlite, AppOptions::default(), |s| {
        s.database_acquire_timeout_ms = 200;
    })
    .await
    .unwrap();
    let client = app.client(true, None).await;
    let browser = Browser::new();

    let turn = app.state.writer.permit().await.unwrap();
    let page = browser.http.get(app.url("/login")).send().await.unwrap();
    let csrf = hidden(&page.text().await.unwrap(), "csrf_token").unwrap();
    let answer = browser
        .http
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("next", "/"),
            ("email", "alice@example.com"),
            ("password", crate::helpers::PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    assert!(
        !answer.headers().contains_key("set-cookie"),
        "no session without its row"
    );
    drop(turn);
    browser.sign_in(&app).await;

    let params = authorize_params(&client.id, REDIRECT);
    let turn = app.state.writer.permit().await.unwrap();
    let refused = browser.authorize(&app, &params).await;
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    drop(turn);
    let page = browser.consent_page(&app, &params).await;
    assert!(!page.handle.is_empty());
    app.stop().await;
}

/// The readiness write check writes: each probe moves the `readiness` row's
/// counter on (the row is created by the first), on both databases.
async fn readiness_write_probe_writes(backend: Backend) {
    use migrations::sea_orm::{ConnectionTrait, Statement};
    let Some(db) = crate::helpers::test_db(backend).await else {
        return;
    };
    let probes = || async {
        db.db
            .query_one(Statement::from_string(
                db.db.get_database_backend(),
                "SELECT probes FROM readiness WHERE id = 1",
            ))
            .await
            .unwrap()
            .map(|row| row.try_get::<i64>("", "probes").unwrap())
    };
    assert_eq!(probes().await, None);
    for expected in 1..=2 {
        migrations::db::probe(&db.db, migrations::db::PROBE_WRITE)
            .await
            .unwrap();
        assert_eq!(probes().await, Some(expected));
    }
    db.cleanup().await;
}
crate::helpers::both!(readiness_write_probe_writes =>
    readiness_write_probe_writes_sqlite,
    readiness_write_probe_writes_postgres);
