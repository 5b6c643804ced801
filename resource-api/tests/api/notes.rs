//! Notes CRUD, ownership and input validation. The scenarios take a `TestApp`
//! so that `postgres.rs` runs them on PostgreSQL too.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

const RW: &str = "notes:read notes:write";

pub async fn crud_round_trip(app: &TestApp) {
    let token = app.token("alice", RW);

    // Create.
    let response = app.create_note(&token, "first", "hello").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v2/notes/{id}"));
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(created["title"], "first");
    assert_eq!(created["body"], "hello");
    let created_at = created["created_at"].as_str().unwrap();
    assert!(created_at.ends_with('Z') && created_at.contains('T'));
    assert_eq!(created["updated_at"], created["created_at"]);
    assert_eq!(
        created.as_object().unwrap().len(),
        5,
        "only id, title, body, created_at, updated_at: {created}"
    );

    // Read it back through Location.
    let response = app.get(&location, &token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let fetched: Value = response.json().await.unwrap();
    assert_eq!(fetched, created);

    // A second note comes first in the list.
    let second: Value = app
        .create_note(&token, "second", "")
        .await
        .json()
        .await
        .unwrap();
    let response = app.get("/api/v2/notes", &token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let list: Value = response.json().await.unwrap();
    let notes = list["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0]["id"], second["id"]);
    assert_eq!(notes[1]["id"], created["id"]);

    // Partial update: body only.
    let response = app
        .client
        .patch(app.url(&location))
        .bearer_auth(&token)
        .json(&json!({"body": "changed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["title"], "first");
    assert_eq!(patched["body"], "changed");
    assert_eq!(patched["created_at"], created["created_at"]);

    // Title only.
    let patched: Value = app
        .client
        .patch(app.url(&location))
        .bearer_auth(&token)
        .json(&json!({"title": "renamed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["title"], "renamed");
    assert_eq!(patched["body"], "changed");

    // Delete, then it is gone.
    let response = app
        .client
        .delete(app.url(&location))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app.get(&location, &token).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .client
        .delete(app.url(&location))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

pub async fn other_users_note_is_not_found(app: &TestApp) {
    let alice = app.token("alice", RW);
    let bob = app.token("bob", RW);
    let created: Value = app
        .create_note(&alice, "private", "alice only")
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v2/notes/{}", created["id"].as_str().unwrap());

    let response = app.get(&path, &bob).send().await.unwrap();
    let not_found = assert_problem(response, StatusCode::NOT_FOUND).await;

    let response = app
        .client
        .patch(app.url(&path))
        .bearer_auth(&bob)
        .json(&json!({"title": "mine now"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_problem(response, StatusCode::NOT_FOUND).await,
        not_found
    );

    let response = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_problem(response, StatusCode::NOT_FOUND).await,
        not_found
    );

    // Bob's list is empty; an unknown UUID answers exactly like Alice's note.
    let list: Value = app
        .get("/api/v2/notes", &bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["notes"], json!([]));
    let unknown = format!("/api/v2/notes/{}", uuid::Uuid::new_v4());
    let response = app.get(&unknown, &bob).send().await.unwrap();
    assert_eq!(
        assert_problem(response, StatusCode::NOT_FOUND).await,
        not_found
    );

    // Alice still has it, unchanged.
    let mine: Value = app
        .get(&path, &alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["title"], "private");
}

#[tokio::test]
async fn notes_crud_works_on_sqlite() {
    let app = spawn_app().await;
    crud_round_trip(&app).await;
}

#[tokio::test]
async fn notes_of_another_user_are_not_found_on_sqlite() {
    let app = spawn_app().await;
    other_users_note_is_not_found(&app).await;
}

#[tokio::test]
async fn note_get_returns_404_when_id_is_not_a_uuid() {
    let app = spawn_app().await;
    let token = app.token("alice", RW);
    for path in [
        "/api/v2/notes/not-a-uuid",
        "/api/v2/notes/1",
        "/api/v2/notes/%FF",
    ] {
        let response = app.get(path, &token).send().await.unwrap();
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }
    let response = app
        .client
        .delete(app.url("/api/v2/notes/nope"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn notes_post_rejects_invalid_input_with_422() {
    let app = spawn_app().await;
    let token = app.token("alice", RW);
    let cases = [
        json!({"title": "", "body": "x"}),
        json!({"title": "   ", "body": "x"}),
        json!({"title": "t".repeat(201), "body": "x"}),
        json!({"title": "ok", "body": "b".repeat(10_001)}),
        json!({"body": "no title"}),
        json!({"title": "ok", "body": "x", "owner": "bob"}),
        json!({"title": 5}),
    ];
    for case in cases {
        let response = app
            .client
            .post(app.url("/api/v2/notes"))
            .bearer_auth(&token)
            .json(&case)
            .send()
            .await
            .unwrap();
        let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(body["detail"].is_string(), "{case}: {body}");
    }
    // Limits are inclusive; the body may be omitted.
    let response = app
        .client
        .post(app.url("/api/v2/notes"))
        .bearer_auth(&token)
        .json(&json!({"title": "é".repeat(200)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let note: Value = response.json().await.unwrap();
    assert_eq!(note["body"], "");
}

#[tokio::test]
async fn note_patch_rejects_unknown_fields_and_invalid_title() {
    let app = spawn_app().await;
    let token = app.token("alice", RW);
    let created: Value = app
        .create_note(&token, "t", "b")
        .await
        .json()
        .await
        .unwrap();
    let url = app.url(&format!(
        "/api/v2/notes/{}",
        created["id"].as_str().unwrap()
    ));
    for case in [
        json!({"title": ""}),
        json!({"id": "x"}),
        json!({"created_at": 1}),
    ] {
        let response = app
            .client
            .patch(&url)
            .bearer_auth(&token)
            .json(&case)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
}

#[tokio::test]
async fn notes_post_rejects_malformed_json_with_400() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/v2/notes"))
        .bearer_auth(app.token("alice", RW))
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn notes_post_rejects_non_json_content_type_with_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/v2/notes"))
        .bearer_auth(app.token("alice", RW))
        .header("content-type", "text/plain")
        .body(r#"{"title":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

#[tokio::test]
async fn notes_post_rejects_oversized_body_with_413() {
    let app = spawn_app().await;
    let token = app.token("alice", RW);
    // Announced length over the limit.
    let big = format!(r#"{{"title":"x","body":"{}"}}"#, "a".repeat(70 * 1024));
    let response = app
        .client
        .post(app.url("/api/v2/notes"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Chunked, without Content-Length: the limit still holds.
    let raw = chunked_post(app.port, "/api/v2/notes", &token, big.as_bytes()).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(
        raw.to_ascii_lowercase()
            .contains("content-type: application/problem+json")
    );
}

/// Sends a chunked POST over a raw socket; returns the whole response.
async fn chunked_post(port: u16, path: &str, token: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(8192) {
        let sent = async {
            stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            stream.write_all(chunk).await?;
            stream.write_all(b"\r\n").await
        };
        // The server may answer and close before reading everything.
        if sent.await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn notes_require_read_scope_to_list() {
    let app = spawn_app().await;
    let response = app
        .get("/api/v2/notes", &app.token("alice", "notes:write"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="insufficient_scope", scope="notes:read""#
    );
    assert_problem(response, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn notes_require_write_scope_to_create_update_delete() {
    let app = spawn_app().await;
    let writer = app.token("alice", RW);
    let reader = app.token("alice", "notes:read");
    let created: Value = app
        .create_note(&writer, "t", "b")
        .await
        .json()
        .await
        .unwrap();
    let url = app.url(&format!(
        "/api/v2/notes/{}",
        created["id"].as_str().unwrap()
    ));
    let challenge = r#"Bearer error="insufficient_scope", scope="notes:write""#;

    let response = app.create_note(&reader, "t", "b").await;
    assert_eq!(response.headers()["www-authenticate"], challenge);
    assert_problem(response, StatusCode::FORBIDDEN).await;

    let response = app
        .client
        .patch(&url)
        .bearer_auth(&reader)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], challenge);
    assert_problem(response, StatusCode::FORBIDDEN).await;

    let response = app
        .client
        .delete(&url)
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], challenge);
    assert_problem(response, StatusCode::FORBIDDEN).await;

    // The reader can still read it.
    let response = app
        .client
        .get(&url)
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// The number of notes `token`'s user has, read over HTTP.
async fn note_count(app: &TestApp, token: &str) -> usize {
    let list: Value = app
        .get("/api/v2/notes", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["notes"].as_array().unwrap().len()
}

#[tokio::test]
async fn notes_post_stores_the_sanitised_body() {
    let app = spawn_app().await;
    let token = app.token("alice", RW);
    let dirty = r#"<script>alert(1)</script><b onclick=x>hi</b><a href="javascript:alert(1)">x</a><a href="https://ok.example">ok</a><img src=x onerror=y><p style="color:red">p</p>"#;
    let safe = r#"<b>hi</b><a rel="noopener noreferrer nofollow">x</a><a href="https://ok.example" rel="noopener noreferrer nofollow">ok</a><p>p</p>"#;
    let response = app.create_note(&token, "html", dirty).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["body"], safe);

    // A later reader gets the safe form: it is what was stored.
    let fetched: Value = app
        .get(&location, &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["body"], safe);

    // An update is sanitised the same way.
    let patched: Value = app
        .client
        .patch(app.url(&location))
        .bearer_auth(&token)
        .json(&json!({"body": dirty}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["body"], safe);
}

#[tokio::test]
async fn notes_post_normalises_title_and_body_to_nfc() {
    let app = spawn_app().await;
    let token = app.token("alice", RW);
    let response = app
        .create_note(&token, "caf\u{65}\u{301}", "e\u{301}")
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let fetched: Value = app
        .get(&location, &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["title"], "caf\u{e9}");
    assert_eq!(fetched["body"], "\u{e9}");
}

#[tokio::test]
async fn notes_post_refuses_unsafe_text_with_422_and_writes_nothing() {
    let app = spawn_app().await;
    let token = app.token("alice", RW);
    let cases = [
        (
            json!({"title": "a\u{0}b", "body": "x"}),
            "title",
            "control_character",
        ),
        (
            json!({"title": "ok", "body": "abc\u{202E}fed"}),
            "body",
            "bidi_override",
        ),
        (
            json!({"title": "\u{200B}\u{200B}\u{200B}", "body": "x"}),
            "title",
            "blank",
        ),
    ];
    for (case, field, rule) in cases {
        let response = app
            .client
            .post(app.url("/api/v2/notes"))
            .bearer_auth(&token)
            .json(&case)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(field), "{case}: {detail}");
        if rule == "blank" {
            assert!(
                detail.contains("title must not be blank"),
                "{case}: {detail}"
            );
        } else {
            assert!(detail.contains(rule), "{case}: {detail}");
        }
        // The refused characters are not echoed back.
        assert!(
            !detail.contains(['\u{0}', '\u{202E}', '\u{200B}']),
            "{case}: {detail}"
        );
    }
    assert_eq!(
        note_count(&app, &token).await,
        0,
        "nothing written on a 422"
    );

    // A PATCH with unsafe text leaves the note as it was.
    let created: Value = app
        .create_note(&token, "t", "b")
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v2/notes/{}", created["id"].as_str().unwrap());
    let response = app
        .client
        .patch(app.url(&path))
        .bearer_auth(&token)
        .json(&json!({"title": "new", "body": "\u{2066}x"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let fetched: Value = app
        .get(&path, &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, created);
    assert_eq!(note_count(&app, &token).await, 1);
}
