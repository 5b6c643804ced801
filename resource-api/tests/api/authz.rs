//! Object-level authorization (BOLA), issue 8: every route that takes an id
//! or lists × {owner, another user, an admin who is not the owner, no
//! token}. Another user's note answers exactly like a note that does not
//! exist (404, same body) and stays unchanged; admins get no access to
//! users' notes (DESIGN.md gives them none); ids are random UUIDs.

use std::collections::BTreeSet;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_invalid_token, assert_problem, spawn_app_with};

const RW: &str = "notes:read notes:write";

struct Callers {
    owner: String,
    other: String,
    admin: String,
}

fn callers(app: &TestApp) -> Callers {
    let mut admin = app.claims("root-admin", RW);
    admin.roles = vec!["admin".into()];
    Callers {
        owner: app.token("alice-owner", RW),
        other: app.token("mallory-other", RW),
        admin: app.sign(&admin),
    }
}

async fn send(app: &TestApp, method: Method, path: &str, token: Option<&str>) -> Response {
    let mut request = app.client.request(method.clone(), app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if method == Method::PATCH || method == Method::POST {
        request = request.json(&json!({"title": "changed by someone", "body": "x"}));
    }
    request.send().await.unwrap()
}

async fn note(app: &TestApp, token: &str, id: &str) -> Option<Value> {
    let response = app
        .get(&format!("/api/v2/notes/{id}"), token)
        .send()
        .await
        .unwrap();
    match response.status() {
        StatusCode::OK => Some(response.json().await.unwrap()),
        StatusCode::NOT_FOUND => None,
        other => panic!("GET note: {other}"),
    }
}

async fn listed_ids(app: &TestApp, token: &str) -> BTreeSet<String> {
    let response = app.get("/api/v2/notes", token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn create(app: &TestApp, token: &str, title: &str) -> String {
    let response = app.create_note(token, title, "secret body").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// A 404 problem, compared with the answer for an id that never existed.
async fn not_found(response: Response) -> Value {
    assert_problem(response, StatusCode::NOT_FOUND).await
}

async fn object_level_matrix(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let who = callers(&app);
    let id = create(&app, &who.owner, "owner's note").await;
    let original = note(&app, &who.owner, &id).await.unwrap();
    let path = format!("/api/v2/notes/{id}");
    let nowhere = not_found(
        send(
            &app,
            Method::GET,
            &format!("/api/v2/notes/{}", uuid::Uuid::new_v4()),
            Some(&who.owner),
        )
        .await,
    )
    .await;

    // Reads and writes by id: the owner only; anyone else a plain 404.
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        for (name, token) in [("another user", &who.other), ("an admin", &who.admin)] {
            let answer = not_found(send(&app, method.clone(), &path, Some(token)).await).await;
            assert_eq!(
                answer, nowhere,
                "{method} by {name}: same as a missing note"
            );
        }
        assert_invalid_token_or_missing(send(&app, method.clone(), &path, None).await).await;
        assert_eq!(
            note(&app, &who.owner, &id).await.as_ref(),
            Some(&original),
            "{method} by others changed nothing"
        );
    }
    let response = send(&app, Method::GET, &path, Some(&who.owner)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = send(&app, Method::PATCH, &path, Some(&who.owner)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let changed = note(&app, &who.owner, &id).await.unwrap();
    assert_eq!(changed["title"], "changed by someone");

    // Lists and creation: each caller sees and makes only their own.
    let others = create(&app, &who.other, "mallory's note").await;
    let admins = create(&app, &who.admin, "admin's note").await;
    assert_eq!(
        listed_ids(&app, &who.owner).await,
        BTreeSet::from([id.clone()])
    );
    assert_eq!(listed_ids(&app, &who.other).await, BTreeSet::from([others]));
    assert_eq!(listed_ids(&app, &who.admin).await, BTreeSet::from([admins]));
    for method in [Method::GET, Method::POST] {
        assert_invalid_token_or_missing(send(&app, method, "/api/v2/notes", None).await).await;
    }
    assert_eq!(listed_ids(&app, &who.owner).await.len(), 1, "nothing added");

    // `me`: the caller, never anyone else.
    for (sub, token, roles) in [
        ("alice-owner", &who.owner, json!([])),
        ("mallory-other", &who.other, json!([])),
        ("root-admin", &who.admin, json!(["admin"])),
    ] {
        let response = app.get("/api/v2/me", token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let me: Value = response.json().await.unwrap();
        assert_eq!(me["sub"], sub);
        assert_eq!(me["roles"], roles);
    }
    assert_invalid_token_or_missing(send(&app, Method::GET, "/api/v2/me", None).await).await;

    // The owner deletes; then it is gone for everyone.
    let response = send(&app, Method::DELETE, &path, Some(&who.owner)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(note(&app, &who.owner, &id).await, None);
    app.cleanup();
}

/// No token: 401 problem with a `Bearer` challenge.
async fn assert_invalid_token_or_missing(response: Response) {
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    if challenge.contains("invalid_token") {
        assert_invalid_token(response).await;
    } else {
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn notes_by_id_and_lists_are_the_owners_only_sqlite() {
    object_level_matrix(Backend::Sqlite).await;
}

test_gates::needs! { [postgres]
    #[tokio::test]
    async fn notes_by_id_and_lists_are_the_owners_only_postgres() {
        object_level_matrix(Backend::Postgres).await;
    }
}

/// Ids are not guessable: RFC 9562 UUIDs with random bits (version 7: 74
/// random bits after a millisecond timestamp; version 4: 122), none
/// following from another.
#[tokio::test]
async fn note_ids_are_random_uuids() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let token = app.token("alice-owner", RW);
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(uuid::Uuid::parse_str(&create(&app, &token, &format!("n{i}")).await).unwrap());
    }
    let mut tails = BTreeSet::new();
    for id in &ids {
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let version = id.get_version_num();
        assert!(version == 4 || version == 7, "version {version}");
        // The random part (the last 8 bytes, variant bits aside).
        tails
            .insert(u64::from_be_bytes(id.as_bytes()[8..16].try_into().unwrap()) & (u64::MAX >> 2));
    }
    assert_eq!(tails.len(), ids.len(), "random parts repeat");
    for pair in ids.windows(2) {
        let (a, b) = (pair[0].as_u128(), pair[1].as_u128());
        assert!(
            b.abs_diff(a) > 1 << 16,
            "ids {a} and {b} follow from each other"
        );
    }
    app.cleanup();
}

/// A valid token without the scope a route needs: 403 `insufficient_scope`,
/// nothing written, and a `permission.denied` security event naming the
/// caller, the route and the scope (never the token).
#[tokio::test]
async fn missing_scope_is_refused_and_recorded_as_permission_denied() {
    use resource_api::store::entity::{audit_event, note};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let app = crate::helpers::spawn_app().await;
    let read_only = app.token("alice", "notes:read");
    let refused = app
        .client
        .post(app.url("/api/v2/notes"))
        .bearer_auth(&read_only)
        .header("user-agent", "scope-probe/2.0")
        .json(&json!({"title": "not allowed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert!(
        note::Entity::find().all(&app.db).await.unwrap().is_empty(),
        "nothing written"
    );

    let rows = audit_event::Entity::find()
        .filter(audit_event::Column::Kind.eq("permission.denied"))
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.user_id.as_deref(), Some("alice"));
    assert!(row.client_id.is_some());
    let detail: Value = serde_json::from_str(&row.detail).unwrap();
    assert_eq!(detail["route"], "/api/v2/notes");
    assert_eq!(detail["method"], "POST");
    assert_eq!(detail["required_scope"], "notes:write");
    assert_eq!(detail["client_ip"], "127.0.0.1");
    assert_eq!(detail["user_agent"], "scope-probe/2.0");
    assert!(!row.detail.contains(&read_only));

    // With the scope: allowed, and no further event.
    let allowed = app
        .create_note(&app.token("alice", "notes:read notes:write"), "ok", "")
        .await;
    assert_eq!(allowed.status(), StatusCode::CREATED);
    let after = audit_event::Entity::find()
        .filter(audit_event::Column::Kind.eq("permission.denied"))
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
}
