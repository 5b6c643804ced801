//! Response filtering: every response body has exactly the keys of its own
//! type, nothing internal (an owner, a hash, a row id of another table), and
//! no other user's note ever shows.

use std::collections::BTreeSet;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

const RW: &str = "notes:read notes:write";

/// The top-level keys of a JSON object.
fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

const NOTE: &[&str] = &["body", "created_at", "id", "title", "updated_at"];
const PROBLEM: &[&str] = &["detail", "status", "title", "type"];

/// Nothing internal in a body's raw text.
fn assert_clean(text: &str) {
    for needle in [
        "owner",
        "user_id",
        "sub\":\"bob",
        "password",
        "_hash",
        "secret",
    ] {
        assert!(!text.contains(needle), "{needle} in {text}");
    }
}

/// (status, raw text, JSON) of a response.
async fn read(response: Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, text, json)
}

async fn problem_keys(response: Response, status: StatusCode) -> Value {
    let body = assert_problem(response, status).await;
    assert_eq!(keys(&body), set(PROBLEM), "{body}");
    assert_clean(&body.to_string());
    body
}

async fn create(app: &TestApp, token: &str, title: &str) -> Value {
    let (status, text, note) = read(app.create_note(token, title, "hello").await).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    note
}

#[tokio::test]
async fn me_has_exactly_its_keys() {
    let app = spawn_app().await;
    let token = app.token("alice", RW);
    let (status, text, me) = read(app.get("/api/v2/me", &token).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        keys(&me),
        set(&["client_id", "roles", "scope", "sub"]),
        "{me}"
    );
    assert!(me["roles"].is_array());
    assert!(!text.contains("jti") && !text.contains("\"exp\""), "{text}");
}

#[tokio::test]
async fn notes_have_exactly_their_keys() {
    let app = spawn_app().await;
    let token = app.token("alice", RW);
    let created = create(&app, &token, "first").await;
    assert_eq!(keys(&created), set(NOTE), "{created}");
    assert_clean(&created.to_string());
    let id = created["id"].as_str().unwrap();

    let (status, text, one) = read(
        app.get(&format!("/api/v2/notes/{id}"), &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&one), set(NOTE), "{one}");
    assert_clean(&text);

    create(&app, &token, "second").await;
    let (status, text, list) = read(app.get("/api/v2/notes", &token).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&list), set(&["next_cursor", "notes"]), "{list}");
    assert_eq!(list["next_cursor"], Value::Null);
    let notes = list["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 2);
    for note in notes {
        assert_eq!(keys(note), set(NOTE), "{note}");
    }
    assert_clean(&text);
}

#[tokio::test]
async fn problems_have_exactly_their_keys() {
    let app = spawn_app().await;
    // 401: no token, and an expired one.
    let none = app.client.get(app.url("/api/v2/me")).send().await.unwrap();
    problem_keys(none, StatusCode::UNAUTHORIZED).await;
    let mut claims = app.claims("alice", RW);
    claims.exp = 1;
    let expired = app.sign(&claims);
    let answer = app.get("/api/v2/me", &expired).send().await.unwrap();
    problem_keys(answer, StatusCode::UNAUTHORIZED).await;

    // 403: a reader writes.
    let reader = app.token("alice", "notes:read");
    let answer = app.create_note(&reader, "t", "b").await;
    problem_keys(answer, StatusCode::FORBIDDEN).await;

    // 404: no such note.
    let token = app.token("alice", RW);
    let missing = format!("/api/v2/notes/{}", uuid::Uuid::new_v4());
    let answer = app.get(&missing, &token).send().await.unwrap();
    let body = assert_problem(answer, StatusCode::NOT_FOUND).await;
    assert_eq!(keys(&body), set(&["status", "title", "type"]), "{body}");

    // 422: an empty title.
    let answer = app
        .client
        .post(app.url("/api/v2/notes"))
        .bearer_auth(&token)
        .json(&json!({"title": "", "body": "x"}))
        .send()
        .await
        .unwrap();
    problem_keys(answer, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn readyz_and_healthz_have_exactly_their_keys() {
    let app = spawn_app().await;
    let (status, text, ready) =
        read(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&ready), set(&["checks", "status"]), "{ready}");
    assert_eq!(
        keys(&ready["checks"]),
        set(&[
            "audit_failures",
            "database",
            "database_write",
            "draining",
            "rate_limit_store",
            "verification_keys",
        ]),
        "{ready}"
    );
    assert!(
        !text.contains("postgres://") && !text.contains("sqlite://"),
        "{text}"
    );
    let (status, _, live) = read(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&live), set(&["status"]), "{live}");
}

#[tokio::test]
async fn another_users_note_never_shows() {
    let app = spawn_app().await;
    let alice = app.token("alice", RW);
    let bob = app.token("bob", RW);
    let note = create(&app, &alice, "alice's").await;
    let id = note["id"].as_str().unwrap();

    let (status, text, list) = read(app.get("/api/v2/notes", &bob).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!({"notes": [], "next_cursor": null}));
    assert!(!text.contains(id) && !text.contains("alice"), "{text}");

    let path = format!("/api/v2/notes/{id}");
    let answer = app.get(&path, &bob).send().await.unwrap();
    let body = assert_problem(answer, StatusCode::NOT_FOUND).await;
    assert!(!body.to_string().contains("alice"), "{body}");
    for request in [
        app.client
            .patch(app.url(&path))
            .bearer_auth(&bob)
            .json(&json!({"title": "mine"})),
        app.client.delete(app.url(&path)).bearer_auth(&bob),
    ] {
        let answer = request.send().await.unwrap();
        assert_problem(answer, StatusCode::NOT_FOUND).await;
    }
    // Alice still has it, unchanged.
    let (status, _, still) = read(app.get(&path, &alice).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(still, note);
}
