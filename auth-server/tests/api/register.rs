//! Self-registration (`POST /api/v2/users`): closed by default, the same
//! answer whether or not the address has an account, no server-owned field
//! from the request, every rule a 422 that writes nothing. (Its rate limit,
//! on both limit stores: `abuse.rs`.)

use std::time::Duration;

use auth_server::audit;
use auth_server::clock::Clock;
use auth_server::config::{Registration, Settings};
use auth_server::store::entities::{audit_events, users as user_rows};
use auth_server::store::{outbox, users};
use migrations::sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::helpers::{Answer, AppOptions, Backend, PASSWORD, TestApp, both, hidden, spawn_app};

const PATH: &str = "/api/v2/users";
const ALICE: &str = "alice@example.com";
const NEW_EMAIL: &str = "new.user@example.net";
const NEW_PASSWORD: &str = "violet submarine pancake orbit";
const ACCEPTED: &str = r#"{"status":"accepted","detail":"If this address can be registered, we have sent a message to it."}"#;

fn open(settings: &mut Settings) {
    settings.registration = Registration::Open;
}

async fn open_app(backend: Backend) -> Option<TestApp> {
    spawn_app(
        backend,
        AppOptions {
            tune: Some(open),
            ..AppOptions::default()
        },
    )
    .await
}

async fn register(app: &TestApp, body: &Value) -> Answer {
    Answer::of(
        app.http
            .post(app.url(PATH))
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn new_user() -> Value {
    json!({"email": NEW_EMAIL, "name": "New User", "password": NEW_PASSWORD})
}

/// Rows that a registration could have written.
#[derive(Debug, PartialEq, Eq)]
struct Written {
    users: u64,
    audit_events: u64,
    mails: usize,
}

async fn written(app: &TestApp) -> Written {
    Written {
        users: user_rows::Entity::find().count(&app.db.db).await.unwrap(),
        audit_events: audit_events::Entity::find()
            .count(&app.db.db)
            .await
            .unwrap(),
        mails: outbox::list(&app.db.db, None).await.unwrap().len(),
    }
}

/// Waits (at most 5 s) until `recipient` has a mail; returns its newest.
async fn wait_for_mail(app: &TestApp, recipient: &str) -> outbox::OutboxMail {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mail = outbox::list(&app.db.db, None)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.recipient == recipient);
        if let Some(mail) = mail {
            return mail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no mail to {recipient} within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A real sign-in through the login form; its status (303 = signed in).
async fn sign_in_status(app: &TestApp, email: &str, password: &str) -> u16 {
    let browser = crate::helpers::Browser::new();
    let page = browser.http.get(app.url("/login")).send().await.unwrap();
    let csrf = hidden(&page.text().await.unwrap(), "csrf_token").unwrap();
    browser
        .http
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("next", "/"),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn registration_is_closed_by_default_as_if_the_route_did_not_exist() {
    let app = spawn_app(Backend::Sqlite, AppOptions::default())
        .await
        .unwrap();
    let before = written(&app).await;
    let answer = register(&app, &new_user()).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.json()["status"], 404);
    assert_eq!(answer.rate_limit, None, "no limit runs for a closed route");
    // Every method, and whatever the body.
    let get = Answer::of(app.http.get(app.url(PATH)).send().await.unwrap()).await;
    assert_eq!(get.status, 404);
    let form = Answer::of(
        app.http
            .post(app.url(PATH))
            .form(&[("email", NEW_EMAIL)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(form.status, 404);
    assert_eq!(written(&app).await, before);
    app.stop().await;
}

async fn new_address_gets_a_plain_account_that_can_sign_in(backend: Backend) {
    let Some(app) = open_app(backend).await else {
        return;
    };
    let answer = register(
        &app,
        &json!({"email": "  New.User@Example.NET ", "name": " New User ", "password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_eq!(answer.text(), ACCEPTED);
    assert_eq!(answer.content_type, "application/json");
    assert_eq!(answer.cache_control, "no-store");
    assert_eq!(answer.rate_limit.as_deref(), Some("10000"));
    let email = auth_server::domain::Email::parse(NEW_EMAIL).unwrap();
    let user = users::find_by_email(&app.db.db, &email)
        .await
        .unwrap()
        .expect("the account exists");
    assert_eq!(user.email, NEW_EMAIL, "stored in its normal form");
    assert_eq!(user.name, "New User");
    assert!(users::roles(&user).is_empty(), "no roles");
    assert_eq!(users::tier(&user), shared::contract::Tier::Standard);
    assert_eq!(user.created_at, app.clock.now());
    assert!(
        auth_server::password::verify(NEW_PASSWORD.into(), user.password_hash.clone())
            .await
            .unwrap()
    );
    assert_eq!(app.audit_count(audit::USER_REGISTERED).await, 1);
    let mail = wait_for_mail(&app, NEW_EMAIL).await;
    assert_eq!(mail.subject, "Welcome to Portcullis");
    assert!(
        mail.body.contains("an account has been created"),
        "{}",
        mail.body
    );
    assert_eq!(sign_in_status(&app, NEW_EMAIL, NEW_PASSWORD).await, 303);
    assert_eq!(sign_in_status(&app, NEW_EMAIL, PASSWORD).await, 401);
    app.stop().await;
}
both!(new_address_gets_a_plain_account_that_can_sign_in
    => new_address_gets_a_plain_account_that_can_sign_in_sqlite,
       new_address_gets_a_plain_account_that_can_sign_in_postgres);

async fn existing_address_gets_the_same_answer_and_a_mail_and_nothing_changes(backend: Backend) {
    let Some(app) = open_app(backend).await else {
        return;
    };
    let new = register(&app, &new_user()).await;
    let users_before = written(&app).await.users;
    let alice_before = users::find(&app.db.db, &app.user_id)
        .await
        .unwrap()
        .unwrap();
    for email in [ALICE, "Alice@Example.COM"] {
        let existing = register(
            &app,
            &json!({"email": email, "name": "Mallory", "password": NEW_PASSWORD}),
        )
        .await;
        assert_eq!(existing.status, new.status);
        assert_eq!(existing.content_type, new.content_type);
        assert_eq!(existing.body, new.body, "byte-identical");
    }
    assert_eq!(new.status, 202);
    let alice_after = users::find(&app.db.db, &app.user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice_after, alice_before, "alice's row is untouched");
    assert_eq!(written(&app).await.users, users_before);
    assert_eq!(sign_in_status(&app, ALICE, PASSWORD).await, 303);
    assert_eq!(sign_in_status(&app, ALICE, NEW_PASSWORD).await, 401);
    // Only the new account was audited.
    assert_eq!(app.audit_count(audit::USER_REGISTERED).await, 1);
    let mail = wait_for_mail(&app, ALICE).await;
    assert_eq!(mail.subject, "Someone tried to register with your address");
    assert!(
        mail.body.contains("If it was you, sign in"),
        "{}",
        mail.body
    );
    assert!(
        mail.body
            .contains(&format!("http://{}/password-reset\n", app.address)),
        "{}",
        mail.body
    );
    app.stop().await;
}
both!(existing_address_gets_the_same_answer_and_a_mail_and_nothing_changes
    => existing_address_gets_the_same_answer_and_a_mail_and_nothing_changes_sqlite,
       existing_address_gets_the_same_answer_and_a_mail_and_nothing_changes_postgres);

async fn server_owned_fields_are_refused_and_nothing_is_written(backend: Backend) {
    let Some(app) = open_app(backend).await else {
        return;
    };
    let before = written(&app).await;
    for (extra, value) in [
        ("roles", json!(["admin"])),
        ("role", json!("admin")),
        ("tier", json!("premium")),
        ("id", json!("00000000-0000-0000-0000-000000000000")),
        ("password_hash", json!("$argon2id$…")),
    ] {
        let mut body = new_user();
        body[extra] = value;
        let answer = register(&app, &body).await;
        assert_eq!(
            answer.errors(),
            [(extra.to_owned(), "unknown_field".to_owned())]
        );
        assert_eq!(answer.json()["errors"][0]["pointer"], format!("#/{extra}"));
    }
    assert_eq!(written(&app).await, before);
    app.stop().await;
}
both!(server_owned_fields_are_refused_and_nothing_is_written
    => server_owned_fields_are_refused_and_nothing_is_written_sqlite,
       server_owned_fields_are_refused_and_nothing_is_written_postgres);

fn pair(field: &str, rule: &str) -> (String, String) {
    (field.to_owned(), rule.to_owned())
}

async fn each_rule_is_a_422_naming_field_and_rule_and_nothing_is_written(backend: Backend) {
    let Some(app) = open_app(backend).await else {
        return;
    };
    let before = written(&app).await;
    let long_password = "violet submarine pancake orbit ".repeat(40);
    let cases: Vec<(Value, Vec<(String, String)>)> = vec![
        (
            json!({"email": "not-an-email", "name": "N", "password": NEW_PASSWORD}),
            vec![pair("email", "invalid")],
        ),
        (
            json!({"email": "a@b", "name": "N", "password": NEW_PASSWORD}),
            vec![pair("email", "invalid")],
        ),
        (
            json!({"email": NEW_EMAIL, "name": "  ", "password": NEW_PASSWORD}),
            vec![pair("name", "empty")],
        ),
        (
            json!({"email": NEW_EMAIL, "name": "<\"'>", "password": NEW_PASSWORD}),
            vec![pair("name", "empty")],
        ),
        (
            json!({"email": NEW_EMAIL, "name": "n".repeat(101), "password": NEW_PASSWORD}),
            vec![pair("name", "too_long")],
        ),
        (
            json!({"email": NEW_EMAIL, "name": "Ann\u{0}Lee", "password": NEW_PASSWORD}),
            vec![pair("name", "control_character")],
        ),
        (
            json!({"email": NEW_EMAIL, "name": "Ann\u{202E}eeL", "password": NEW_PASSWORD}),
            vec![pair("name", "bidi_override")],
        ),
        (
            json!({"email": NEW_EMAIL, "name": "\u{200B}\u{FEFF}", "password": NEW_PASSWORD}),
            vec![pair("name", "empty")],
        ),
        (
            json!({"email": "ann\u{202E}@example.com", "name": "N", "password": NEW_PASSWORD}),
            vec![pair("email", "invalid")],
        ),
        (
            json!({"email": NEW_EMAIL, "name": "N", "password": "short"}),
            vec![pair("password", "too_short")],
        ),
        (
            json!({"email": NEW_EMAIL, "name": "N", "password": long_password}),
            vec![pair("password", "too_long")],
        ),
        (
            json!({"email": NEW_EMAIL, "name": "N", "password": "password1234"}),
            vec![pair("password", "too_weak")],
        ),
        // Guessable from the user's own email.
        (
            json!({"email": NEW_EMAIL, "name": "N", "password": "new.user@example.net"}),
            vec![pair("password", "too_weak")],
        ),
        // Every failing field, in one answer.
        (
            json!({"email": "nope", "name": "", "password": "short"}),
            vec![
                pair("email", "invalid"),
                pair("name", "empty"),
                pair("password", "too_short"),
            ],
        ),
        (
            json!({"email": NEW_EMAIL, "name": "N"}),
            vec![pair("password", "required")],
        ),
        (
            json!({"email": NEW_EMAIL, "name": null, "password": 12}),
            vec![pair("name", "required"), pair("password", "not_a_string")],
        ),
    ];
    for (body, expected) in cases {
        let answer = register(&app, &body).await;
        assert_eq!(answer.errors(), expected, "{body}");
        assert!(
            !answer.text().contains("password1234"),
            "a password is never echoed: {}",
            answer.text()
        );
    }
    let answer = register(
        &app,
        &json!({"email": NEW_EMAIL, "name": "N", "password": "short"}),
    )
    .await;
    assert_eq!(
        answer.json()["detail"],
        "password must have at least 12 characters"
    );
    assert_eq!(answer.cache_control, "no-store");
    assert_eq!(written(&app).await, before);
    app.stop().await;
}
both!(each_rule_is_a_422_naming_field_and_rule_and_nothing_is_written
    => each_rule_is_a_422_naming_field_and_rule_and_nothing_is_written_sqlite,
       each_rule_is_a_422_naming_field_and_rule_and_nothing_is_written_postgres);

#[tokio::test]
async fn body_must_be_a_json_object_of_at_most_64_kib() {
    let app = open_app(Backend::Sqlite).await.unwrap();
    let before = written(&app).await;
    let post = |content_type: &'static str, body: Vec<u8>| {
        app.http
            .post(app.url(PATH))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let form = Answer::of(
        post(
            "application/x-www-form-urlencoded",
            b"email=a%40b.c&name=N&password=x".to_vec(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(form.status, 415);
    assert_eq!(form.content_type, "application/problem+json");
    for bad in [&b"{not json"[..], b"[]", b"\"x\"", b""] {
        let answer = Answer::of(post("application/json", bad.to_vec()).await.unwrap()).await;
        assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(bad));
        assert_eq!(answer.content_type, "application/problem+json");
    }
    let mut big = serde_json::to_vec(&new_user()).unwrap();
    big.pop();
    big.extend(format!(r#","pad":"{}"}}"#, "x".repeat(70 * 1024)).bytes());
    let answer = Answer::of(post("application/json", big).await.unwrap()).await;
    assert_eq!(answer.status, 413);
    // A charset parameter is fine.
    let answer = Answer::of(
        post(
            "application/json; charset=utf-8",
            serde_json::to_vec(&new_user()).unwrap(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 202);
    assert_eq!(written(&app).await.users, before.users + 1);
    app.stop().await;
}

async fn name_is_stored_without_markup_characters(backend: Backend) {
    let Some(app) = open_app(backend).await else {
        return;
    };
    let answer = register(
        &app,
        &json!({"email": NEW_EMAIL, "name": "<script>alert('x')</script> \"Bob\"", "password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(answer.status, 202);
    let email = auth_server::domain::Email::parse(NEW_EMAIL).unwrap();
    let user = users::find_by_email(&app.db.db, &email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.name, "scriptalert(x)/script Bob");
    app.stop().await;
}
both!(name_is_stored_without_markup_characters
    => name_is_stored_without_markup_characters_sqlite,
       name_is_stored_without_markup_characters_postgres);

#[tokio::test]
async fn registration_answers_503_when_hashing_is_at_capacity_and_writes_nothing() {
    let app = spawn_app(
        Backend::Sqlite,
        AppOptions {
            tune: Some(|s| {
                open(s);
                s.password_hash_concurrency = 1;
                s.password_hash_queue = 0;
            }),
            ..AppOptions::default()
        },
    )
    .await
    .unwrap();
    let before = written(&app).await;
    let held = app.state.password_gate.admit().unwrap();
    let answer = register(&app, &new_user()).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert_eq!(answer.retry_after.as_deref(), Some("2"));
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(written(&app).await, before);
    drop(held);
    assert_eq!(register(&app, &new_user()).await.status, 202);
    app.stop().await;
}

#[tokio::test]
async fn registration_answers_503_with_retry_after_when_database_is_down() {
    let app = open_app(Backend::Sqlite).await.unwrap();
    app.db.db.clone().close().await.unwrap();
    let answer = register(&app, &new_user()).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert_eq!(answer.retry_after.as_deref(), Some("2"));
    assert_eq!(answer.content_type, "application/problem+json");
    app.stop().await;
}

async fn concurrent_registrations_of_one_address_create_one_account(backend: Backend) {
    let Some(app) = open_app(backend).await else {
        return;
    };
    let before = written(&app).await.users;
    let attempts = (0..6).map(|i| {
        let app = &app;
        async move {
            let body =
                json!({"email": NEW_EMAIL, "name": format!("Racer {i}"), "password": NEW_PASSWORD});
            register(app, &body).await
        }
    });
    let answers = futures::future::join_all(attempts).await;
    for answer in &answers {
        assert_eq!(answer.status, 202, "{}", answer.text());
        assert_eq!(answer.text(), ACCEPTED);
    }
    assert_eq!(written(&app).await.users, before + 1);
    assert_eq!(app.audit_count(audit::USER_REGISTERED).await, 1);
    app.stop().await;
}
both!(concurrent_registrations_of_one_address_create_one_account
    => concurrent_registrations_of_one_address_create_one_account_sqlite,
       concurrent_registrations_of_one_address_create_one_account_postgres);

#[tokio::test]
async fn repeated_registrations_of_an_address_do_not_flood_its_owner_with_mail() {
    let app = spawn_app(
        Backend::Sqlite,
        AppOptions {
            tune: Some(|s| {
                open(s);
                s.rate_limit_password_reset = "1/hour".into();
            }),
            ..AppOptions::default()
        },
    )
    .await
    .unwrap();
    let body = json!({"email": ALICE, "name": "Mallory", "password": NEW_PASSWORD});
    let first = register(&app, &body).await;
    let second = register(&app, &body).await;
    assert_eq!((first.status, second.status), (202, 202));
    assert_eq!(
        first.body, second.body,
        "the answer never depends on the limit"
    );
    wait_for_mail(&app, ALICE).await;
    // Give the worker time to send a second one, if it were going to.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let to_alice = outbox::list(&app.db.db, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.recipient == ALICE)
        .count();
    assert_eq!(to_alice, 1, "one notice per RATE_LIMIT_PASSWORD_RESET");
    app.stop().await;
}
