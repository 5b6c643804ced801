//! Password reset: no enumeration at the request, the mailed link, the
//! single-use token and everything a reset takes away (refresh tokens,
//! sessions, the other links).

use std::sync::Arc;
use std::time::Duration;

use auth_server::audit;
use auth_server::clock::{Clock, ManualClock};
use auth_server::config::Settings;
use auth_server::startup::{Application, BuildOptions};
use auth_server::store::entities::login_sessions;
use auth_server::store::{outbox, users};
use migrations::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{
    Answer, AppOptions, Backend, Browser, PASSWORD, TestApp, TestDb, both, hidden, spawn_app,
};

const ALICE: &str = "alice@example.com";
const NOBODY: &str = "nobody@example.com";
const NEW_PASSWORD: &str = "a brand new passphrase";
const ACCEPTED: &str =
    "If an account exists for this address, we have sent a link to reset its password.";

async fn post_json(app: &TestApp, path: &str, body: &Value) -> Answer {
    Answer::of(
        app.http
            .post(app.url(path))
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post_form(app: &TestApp, path: &str, form: &[(&str, &str)]) -> Answer {
    Answer::of(
        app.http
            .post(app.url(path))
            .form(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn get(app: &TestApp, path: &str) -> Answer {
    Answer::of(app.http.get(app.url(path)).send().await.unwrap()).await
}

/// The outbox's mails to `recipient`, newest first.
async fn mails_to(app: &TestApp, recipient: &str) -> Vec<outbox::OutboxMail> {
    outbox::list(&app.db.db, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.recipient == recipient)
        .collect()
}

/// Waits (at most 5 s) until `recipient` has `n` mails; returns them,
/// newest first.
async fn wait_for_mails(app: &TestApp, recipient: &str, n: usize) -> Vec<outbox::OutboxMail> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mails = mails_to(app, recipient).await;
        if mails.len() >= n {
            return mails;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{recipient} got {} of {n} mails within 5 s",
            mails.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The link's token, from a mail body.
fn token_in(body: &str) -> String {
    let start = body.find("?token=").unwrap() + "?token=".len();
    body[start..]
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap()
        .to_owned()
}

/// Asks for a reset of alice's password and returns the mailed token
/// (`already` mails were in the outbox before).
async fn mailed_token(app: &TestApp, already: usize) -> String {
    let answer = post_json(app, "/password-reset", &json!({"email": ALICE})).await;
    assert_eq!(answer.status, 202);
    let mails = wait_for_mails(app, ALICE, already + 1).await;
    token_in(&mails[0].body)
}

async fn confirm_json(app: &TestApp, token: &str, password: &str) -> Answer {
    post_json(
        app,
        "/password-reset/confirm",
        &json!({"token": token, "password": password}),
    )
    .await
}

async fn stored_hash(app: &TestApp) -> Option<String> {
    users::find(&app.db.db, &app.user_id)
        .await
        .unwrap()
        .unwrap()
        .password_hash
}

async fn sessions_of_user(app: &TestApp) -> usize {
    login_sessions::Entity::find()
        .filter(login_sessions::Column::UserId.eq(app.user_id.clone()))
        .all(&app.db.db)
        .await
        .unwrap()
        .len()
}

/// A real sign-in through the login form; its status (303 = signed in).
async fn sign_in_status(app: &TestApp, password: &str) -> u16 {
    let browser = Browser::new();
    let page = browser.http.get(app.url("/login")).send().await.unwrap();
    let html = page.text().await.unwrap();
    let csrf = hidden(&html, "csrf_token").unwrap();
    browser
        .http
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("next", "/"),
            ("email", ALICE),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn app(backend: Backend) -> Option<TestApp> {
    spawn_app(backend, AppOptions::default()).await
}

async fn request_answers_the_same_whoever_owns_the_email(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    // JSON: unknown first, then known.
    let unknown = post_json(&app, "/password-reset", &json!({"email": NOBODY})).await;
    let known = post_json(&app, "/password-reset", &json!({"email": ALICE})).await;
    assert_eq!(unknown.status, 202);
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.body, unknown.body, "byte-identical JSON bodies");
    assert_eq!(known.content_type, unknown.content_type);
    assert_eq!(known.content_type, "application/json");
    assert_eq!(known.cache_control, "no-store");
    assert_eq!(
        known.json(),
        json!({"status": "accepted", "detail": ACCEPTED})
    );
    // A form: the same again, as a page.
    let unknown = post_form(&app, "/password-reset", &[("email", NOBODY)]).await;
    let known = post_form(&app, "/password-reset", &[("email", ALICE)]).await;
    assert_eq!(unknown.status, 202);
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.body, unknown.body, "byte-identical pages");
    assert!(known.content_type.starts_with("text/html"));
    assert!(known.text().contains(ACCEPTED));
    // Only the known address gets mail: two requests, two mails.
    let mails = wait_for_mails(&app, ALICE, 2).await;
    let link = format!("http://{}/password-reset/confirm?token=", app.address);
    for mail in &mails {
        assert_eq!(mail.subject, auth_server::reset::SUBJECT);
        assert!(mail.body.contains(&link), "{}", mail.body);
        assert_eq!(token_in(&mail.body).len(), 43, "a 256-bit token");
    }
    assert_ne!(token_in(&mails[0].body), token_in(&mails[1].body));
    // The unknown address's requests were queued before the known ones.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = outbox::list(&app.db.db, None).await.unwrap();
    assert_eq!(all.len(), 2, "no mail for an unknown address");
    assert!(mails_to(&app, NOBODY).await.is_empty());
    assert_eq!(app.audit_count(audit::PASSWORD_RESET_REQUESTED).await, 2);
    app.stop().await;
}
both!(request_answers_the_same_whoever_owns_the_email
    => request_answers_the_same_whoever_owns_the_email_sqlite,
       request_answers_the_same_whoever_owns_the_email_postgres);

async fn mailed_token_resets_password_and_signs_out_everywhere(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client(false, None).await;
    let tokens = app.tokens_for(&client).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    Browser::new().sign_in(&app).await;
    assert!(sessions_of_user(&app).await > 0, "signed in before");
    let old_hash = stored_hash(&app).await;

    let older = mailed_token(&app, 0).await;
    let token = mailed_token(&app, 1).await;
    // The link's page carries the token in its form.
    let page = get(&app, &format!("/password-reset/confirm?token={token}")).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        hidden(&page.text(), "token").as_deref(),
        Some(token.as_str())
    );

    let answer = confirm_json(&app, &token, NEW_PASSWORD).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json(), json!({"status": "password_changed"}));
    assert_eq!(answer.cache_control, "no-store");

    let hash = stored_hash(&app).await;
    assert_ne!(hash, old_hash);
    assert!(
        auth_server::password::verify(NEW_PASSWORD.into(), hash.clone())
            .await
            .unwrap()
    );
    assert!(
        !auth_server::password::verify(PASSWORD.into(), hash)
            .await
            .unwrap()
    );
    // Every refresh-token family and session is gone.
    let (status, body) = app.refresh(&client, &refresh_token).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(sessions_of_user(&app).await, 0, "signed out everywhere");
    // The token is spent; the user's other link is gone.
    for spent in [&token, &older] {
        let again = confirm_json(&app, spent, "yet another passphrase").await;
        assert_eq!(again.status, 400);
        assert_eq!(again.content_type, "application/problem+json");
        assert_eq!(again.json()["status"], 400);
        let page = get(&app, &format!("/password-reset/confirm?token={spent}")).await;
        assert_eq!(page.status, 400);
    }
    assert_eq!(app.audit_count(audit::PASSWORD_RESET).await, 1);
    // A real sign-in: the new password works, the old one does not.
    assert_eq!(sign_in_status(&app, PASSWORD).await, 401);
    assert_eq!(sign_in_status(&app, NEW_PASSWORD).await, 303);
    app.stop().await;
}
both!(mailed_token_resets_password_and_signs_out_everywhere
    => mailed_token_resets_password_and_signs_out_everywhere_sqlite,
       mailed_token_resets_password_and_signs_out_everywhere_postgres);

async fn token_expires_after_30_minutes(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let token = mailed_token(&app, 0).await;
    app.clock.advance(31 * 60);
    let answer = confirm_json(&app, &token, NEW_PASSWORD).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.content_type, "application/problem+json");
    let page = get(&app, &format!("/password-reset/confirm?token={token}")).await;
    assert_eq!(page.status, 400);
    assert!(page.text().contains("Link no longer valid"));
    assert!(
        auth_server::password::verify(PASSWORD.into(), stored_hash(&app).await)
            .await
            .unwrap(),
        "the password stays"
    );
    app.stop().await;
}
both!(token_expires_after_30_minutes
    => token_expires_after_30_minutes_sqlite,
       token_expires_after_30_minutes_postgres);

async fn weak_password_is_422_and_token_stays_usable(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let token = mailed_token(&app, 0).await;
    let answer = confirm_json(&app, &token, "short").await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.content_type, "application/problem+json");
    let problem = answer.json();
    assert_eq!(problem["status"], 422);
    assert_eq!(problem["errors"][0]["field"], "password");
    assert_eq!(problem["errors"][0]["rule"], "too_short");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("at least 12 characters")
    );
    // The same through the page's form: the form again, with the token.
    let page = post_form(
        &app,
        "/password-reset/confirm",
        &[("token", &token), ("password", "short")],
    )
    .await;
    assert_eq!(page.status, 422);
    assert_eq!(
        hidden(&page.text(), "token").as_deref(),
        Some(token.as_str())
    );
    // The token still works.
    let page = post_form(
        &app,
        "/password-reset/confirm",
        &[("token", &token), ("password", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Password changed"));
    assert!(page.text().contains("href=\"/login\""));
    assert_eq!(sign_in_status(&app, NEW_PASSWORD).await, 303);
    app.stop().await;
}
both!(weak_password_is_422_and_token_stays_usable
    => weak_password_is_422_and_token_stays_usable_sqlite,
       weak_password_is_422_and_token_stays_usable_postgres);

async fn concurrent_confirmations_spend_the_token_once(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let token = mailed_token(&app, 0).await;
    let attempts = (0..4).map(|i| {
        let password = format!("{NEW_PASSWORD} {i}");
        let app = &app;
        let token = token.clone();
        async move { confirm_json(app, &token, &password).await.status }
    });
    let mut statuses = futures::future::join_all(attempts).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400, 400, 400]);
    assert_eq!(app.audit_count(audit::PASSWORD_RESET).await, 1);
    app.stop().await;
}
both!(concurrent_confirmations_spend_the_token_once
    => concurrent_confirmations_spend_the_token_once_sqlite,
       concurrent_confirmations_spend_the_token_once_postgres);

#[tokio::test]
async fn malformed_email_and_bodies_are_refused() {
    let app = app(Backend::Sqlite).await.unwrap();
    let answer = post_json(&app, "/password-reset", &json!({"email": "not-an-email"})).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.json()["status"], 400);
    let page = post_form(&app, "/password-reset", &[("email", "not-an-email")]).await;
    assert_eq!(page.status, 400);
    assert!(page.content_type.starts_with("text/html"));
    // Unknown JSON fields, a missing body, another media type.
    let extra = post_json(
        &app,
        "/password-reset",
        &json!({"email": ALICE, "admin": true}),
    )
    .await;
    assert_eq!(extra.status, 400);
    let missing = post_json(&app, "/password-reset/confirm", &json!({"token": "x"})).await;
    assert_eq!(missing.status, 400);
    let other = Answer::of(
        app.http
            .post(app.url("/password-reset"))
            .header("content-type", "text/plain")
            .body(ALICE)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(other.status, 415);
    // An unknown token: 400 before any hashing, JSON and form.
    let unknown = confirm_json(&app, "no-such-token", NEW_PASSWORD).await;
    assert_eq!(unknown.status, 400);
    let form = post_form(
        &app,
        "/password-reset/confirm",
        &[("token", "no-such-token"), ("password", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(form.status, 400);
    assert!(get(&app, "/password-reset/confirm").await.status == 400);
    // Nothing was mailed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(outbox::list(&app.db.db, None).await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn pages_link_together() {
    let app = app(Backend::Sqlite).await.unwrap();
    let login = get(&app, "/login").await;
    assert!(login.text().contains("href=\"/password-reset\""));
    let form = get(&app, "/password-reset").await;
    assert_eq!(form.status, 200);
    assert_eq!(form.cache_control, "no-store");
    let html = form.text();
    assert!(html.contains("action=\"/password-reset\""));
    assert!(html.contains("name=\"email\""));
    app.stop().await;
}

#[tokio::test]
async fn confirm_answers_503_with_retry_after_when_database_is_down() {
    let app = app(Backend::Sqlite).await.unwrap();
    let token = mailed_token(&app, 0).await;
    app.db.db.clone().close().await.unwrap();
    let answer = confirm_json(&app, &token, NEW_PASSWORD).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.retry_after.as_deref(), Some("2"));
    assert_eq!(answer.content_type, "application/problem+json");
    let page = post_form(
        &app,
        "/password-reset/confirm",
        &[("token", &token), ("password", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(page.status, 503);
    assert_eq!(page.retry_after.as_deref(), Some("2"));
    let link = get(&app, &format!("/password-reset/confirm?token={token}")).await;
    assert_eq!(link.status, 503);
    // The request touches no database: still 202.
    let request = post_json(&app, "/password-reset", &json!({"email": ALICE})).await;
    assert_eq!(request.status, 202);
    app.stop().await;
}

/// Without a worker draining it, the queue holds 256 requests; the next is
/// refused, whatever its address.
#[tokio::test]
async fn request_is_refused_when_the_queue_is_full() {
    let db = TestDb::sqlite().await;
    let keys = tempfile::tempdir().unwrap();
    let settings = Settings {
        auth_listen: "127.0.0.1:0".parse().unwrap(),
        auth_keys_dir: keys.path().to_owned(),
        janitor_interval_secs: 0,
        ..Settings::default()
    };
    let app = Application::build(
        settings,
        BuildOptions {
            skip_migrations: true,
            database: Some(db.db.clone()),
            clock: Some(Arc::new(ManualClock::new()) as Arc<dyn Clock>),
        },
    )
    .await
    .unwrap();
    // Not run: nothing takes requests off the queue.
    let state = app.state();
    for i in 0..auth_server::reset::QUEUE_CAPACITY {
        auth_server::reset::request(state, &format!("user{i}@example.com")).unwrap();
    }
    for email in [ALICE, NOBODY] {
        assert!(matches!(
            auth_server::reset::request(state, email),
            Err(auth_server::reset::RequestError::Busy)
        ));
    }
    drop(app);
    db.cleanup().await;
}

async fn new_password_made_of_the_users_email_is_too_weak(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let token = mailed_token(&app, 0).await;
    // Long enough, and strong for anyone else: alice's own address.
    let answer = confirm_json(&app, &token, "Alice@example.com2024").await;
    assert_eq!(answer.status, 422);
    let problem = answer.json();
    assert_eq!(problem["errors"][0]["field"], "password");
    assert_eq!(problem["errors"][0]["rule"], "too_weak");
    assert!(
        auth_server::password::verify(PASSWORD.into(), stored_hash(&app).await)
            .await
            .unwrap(),
        "the password stays"
    );
    assert_eq!(confirm_json(&app, &token, NEW_PASSWORD).await.status, 200);
    app.stop().await;
}
both!(new_password_made_of_the_users_email_is_too_weak
    => new_password_made_of_the_users_email_is_too_weak_sqlite,
       new_password_made_of_the_users_email_is_too_weak_postgres);

#[tokio::test]
async fn a_reset_lifts_the_lockout_of_the_account() {
    use auth_server::store::lockouts::{self, Kind};
    let app = app(Backend::Sqlite).await.unwrap();
    let now = app.state.now();
    lockouts::lock(
        &app.db.db,
        Kind::Account,
        "alice@example.com",
        5,
        now,
        now + 3600,
    )
    .await
    .unwrap();
    assert_eq!(sign_in_status(&app, PASSWORD).await, 429, "locked");
    let token = mailed_token(&app, 0).await;
    let answer = confirm_json(&app, &token, NEW_PASSWORD).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(lockouts::list(&app.db.db, now).await.unwrap().is_empty());
    assert_eq!(sign_in_status(&app, NEW_PASSWORD).await, 303);
    app.stop().await;
}
