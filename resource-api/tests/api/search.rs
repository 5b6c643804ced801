//! `GET /api/v2/notes?q=&limit=&order_by=&cursor=`: every rule's 422, the
//! injection tripwire and its security event, pagination over ties, and the
//! store's search taking any `q` as data (the detector bypassed), on SQLite
//! and, when `TEST_DATABASE_URL` is set, PostgreSQL.

use std::collections::{BTreeSet, HashSet};

use reqwest::StatusCode;
use resource_api::Settings;
use resource_api::store::entity::{audit_event, note};
use resource_api::store::notes::{self, NOTES_SEARCH};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Statement};
use serde_json::Value;
use shared::search::Search;

use crate::helpers::{Backend, TestApp, spawn_app_with};

const RW: &str = "notes:read notes:write";

fn unlimited(settings: &mut Settings) {
    settings.rate_limit_standard = "100000/minute".into();
    settings.rate_limit_search = "100000/minute".into();
}

async fn app_on(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, unlimited).await
}

async fn sqlite_app() -> TestApp {
    app_on(Backend::Sqlite).await.unwrap()
}

/// `GET /api/v2/notes` with these query pairs (encoded here).
async fn search(app: &TestApp, token: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    app.client
        .get(app.url(&format!("/api/v2/notes?{query}")))
        .bearer_auth(token)
        .header("user-agent", "search-test/1.0")
        .send()
        .await
        .unwrap()
}

async fn create(app: &TestApp, token: &str, title: &str, body: &str) -> String {
    let response = app.create_note(token, title, body).await;
    assert_eq!(response.status(), StatusCode::CREATED, "{title:?}");
    let note: Value = response.json().await.unwrap();
    note["id"].as_str().unwrap().to_owned()
}

/// A 422's `(field, rule)` pairs, after checking its shape; and its text.
async fn refusal(response: reqwest::Response) -> (Vec<(String, String)>, String) {
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["detail", "errors", "status", "title", "type"]),
        "{text}"
    );
    assert_eq!(body["status"], 422);
    let errors = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let keys: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, BTreeSet::from(["detail", "field", "rule"]), "{e}");
            (
                e["field"].as_str().unwrap().to_owned(),
                e["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (errors, text)
}

async fn audit_rows(app: &TestApp) -> Vec<audit_event::Model> {
    audit_event::Entity::find().all(&app.db).await.unwrap()
}

async fn note_rows(app: &TestApp) -> u64 {
    let row = app
        .db
        .query_one(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM notes",
        ))
        .await
        .unwrap()
        .unwrap();
    u64::try_from(row.try_get::<i64>("", "n").unwrap()).unwrap()
}

/// Query pairs, or expected `(field, rule)` pairs.
type Query<'a> = Vec<(&'a str, &'a str)>;

fn pairs(list: &[(String, String)]) -> Vec<(&str, &str)> {
    list.iter().map(|(f, r)| (f.as_str(), r.as_str())).collect()
}

#[tokio::test]
async fn search_refuses_each_bad_parameter_naming_field_and_rule_without_echo() {
    let app = sqlite_app().await;
    let token = app.token("alice", RW);
    create(&app, &token, "kept", "as it was").await;
    let long = format!("zq{}", "x".repeat(99));
    let cases: Vec<(Query, Query)> = vec![
        (vec![("q", "")], vec![("q", "blank")]),
        (vec![("q", "   ")], vec![("q", "blank")]),
        (vec![("q", &long)], vec![("q", "too_long")]),
        (vec![("q", "zq\u{0}zq")], vec![("q", "control_character")]),
        (vec![("q", "zq\u{202E}zq")], vec![("q", "bidi_override")]),
        (vec![("limit", "0")], vec![("limit", "range")]),
        (vec![("limit", "101")], vec![("limit", "range")]),
        (vec![("limit", "zqabc")], vec![("limit", "range")]),
        (
            vec![("order_by", "zqowner")],
            vec![("order_by", "not_allowed")],
        ),
        (vec![("order_by", "id")], vec![("order_by", "not_allowed")]),
        (vec![("owner", "zqbob")], vec![("owner", "unknown_field")]),
        (vec![("q", "a"), ("q", "zqb")], vec![("q", "duplicate")]),
        (
            vec![("cursor", "zqnot-a-cursor")],
            vec![("cursor", "invalid")],
        ),
        (
            vec![("q", ""), ("limit", "0"), ("order_by", "zqx")],
            vec![
                ("limit", "range"),
                ("order_by", "not_allowed"),
                ("q", "blank"),
            ],
        ),
    ];
    for (query, expected) in cases {
        let (errors, text) = refusal(search(&app, &token, &query).await).await;
        assert_eq!(pairs(&errors), expected, "{query:?}");
        // No value sent is repeated back (each bad one holds "zq").
        assert!(!text.contains("zq"), "{query:?}: {text}");
        assert!(!text.contains('\u{202E}'), "{text}");
    }
    // Nothing written: no note, no audit event (none was suspicious).
    assert_eq!(note_rows(&app).await, 1);
    assert!(audit_rows(&app).await.is_empty());
}

#[tokio::test]
async fn search_cursor_of_another_q_or_order_is_refused() {
    let app = sqlite_app().await;
    let token = app.token("alice", RW);
    for i in 0..3 {
        create(&app, &token, &format!("note {i}"), "").await;
    }
    let page: Value = search(&app, &token, &[("q", "note"), ("limit", "1")])
        .await
        .json()
        .await
        .unwrap();
    let cursor = page["next_cursor"].as_str().unwrap();
    for query in [
        vec![("q", "not"), ("limit", "1"), ("cursor", cursor)],
        vec![("limit", "1"), ("cursor", cursor)],
        vec![
            ("q", "note"),
            ("order_by", "title"),
            ("limit", "1"),
            ("cursor", cursor),
        ],
    ] {
        let (errors, _) = refusal(search(&app, &token, &query).await).await;
        assert_eq!(pairs(&errors), [("cursor", "invalid")], "{query:?}");
    }
    let next = search(
        &app,
        &token,
        &[("q", "note"), ("limit", "1"), ("cursor", cursor)],
    )
    .await;
    assert_eq!(next.status(), StatusCode::OK);
}

#[tokio::test]
async fn search_refuses_injection_patterns_and_records_a_security_event() {
    let app = sqlite_app().await;
    let token = app.token("alice", RW);
    let patterns = [
        ("x' OR '1'='1", "quote_or_quote"),
        ("x'or'1", "quote_or_quote"),
        ("1 union select password from users", "union_select"),
        ("1 UNION    SELECT 1", "union_select"),
        ("1 UNION/**/SELECT 1", "union_select"),
        ("admin'--", "line_comment"),
        ("x; DROP TABLE notes", "statement_separator"),
        ("a /* b", "block_comment"),
        ("exec xp_cmdshell", "extended_procedure"),
    ];
    for (q, pattern) in patterns {
        let before = audit_rows(&app).await.len();
        let (errors, text) = refusal(search(&app, &token, &[("q", q)]).await).await;
        assert_eq!(pairs(&errors), [("q", "suspicious_input")], "{q:?}");
        assert!(!text.contains(q), "{text}");
        let rows = audit_rows(&app).await;
        assert_eq!(rows.len(), before + 1, "{q:?}: one event");
        let event = rows
            .iter()
            .find(|r| serde_json::from_str::<Value>(&r.detail).unwrap()["q_excerpt"] == q)
            .unwrap();
        assert_eq!(event.kind, "suspicious_input");
        assert_eq!(event.user_id.as_deref(), Some("alice"));
        assert_eq!(event.client_id.as_deref(), Some("test-client"));
        let detail: Value = serde_json::from_str(&event.detail).unwrap();
        assert_eq!(detail["route"], "/api/v2/notes");
        assert_eq!(detail["field"], "q");
        assert_eq!(detail["pattern"], pattern, "{q:?}");
        assert_eq!(detail["client_ip"], "127.0.0.1");
        assert_eq!(detail["user_agent"], "search-test/1.0");
        // The term, as data, for investigation.
        assert_eq!(detail["q_excerpt"], q);
        assert_eq!(detail["q_chars"], q.chars().count());
    }
    // The notes table is still there and nothing was written to it.
    assert_eq!(note_rows(&app).await, 0);
    // A long one is kept truncated.
    let long = format!("' or '{}", "y".repeat(300));
    refusal(search(&app, &token, &[("q", &long)]).await).await;
    let rows = audit_rows(&app).await;
    let kept = rows
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.detail).unwrap())
        .find(|d| d["q_chars"] == 306)
        .unwrap();
    assert_eq!(kept["q_excerpt"].as_str().unwrap().chars().count(), 100);
}

#[tokio::test]
async fn search_audit_write_failure_still_answers_422_and_is_counted() {
    let app = sqlite_app().await;
    let token = app.token("alice", RW);
    app.db
        .execute_unprepared("DROP TABLE audit_events")
        .await
        .unwrap();
    let before = resource_api::store::audit::failures();
    let (errors, _) = refusal(search(&app, &token, &[("q", "1; --")]).await).await;
    assert_eq!(pairs(&errors), [("q", "suspicious_input")]);
    assert!(resource_api::store::audit::failures() > before);
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ready.to_string().contains("audit_failures"),
        "readyz shows the count: {ready}"
    );
}

/// Alice's notes holding the attack strings, decoys, and Bob's copies; the
/// store's search (no detector on this path) with each string as `q`
/// returns exactly Alice's notes whose text holds it literally, and the
/// table is intact.
pub async fn patterns_are_data_not_sql(app: &TestApp) {
    let alice = app.token("alice", RW);
    let bob = app.token("bob", RW);
    let strings = [
        "' OR '1'='1",
        "x'; DROP TABLE notes; --",
        "%",
        "_",
        "union select owner, title from notes",
        "!",
        "\\",
        "\") OR 1=1 /*",
    ];
    let mut titles = vec![
        "plain note".to_owned(),
        "100 percent".to_owned(),
        "snake case".to_owned(),
        "or 1=1".to_owned(),
    ];
    for s in strings {
        titles.push(format!("holds {s} here"));
    }
    titles.push("100% sure".into());
    titles.push("snake_case".into());
    titles.push("wow!".into());
    titles.push("C:\\path".into());
    let mut ids = Vec::new();
    for title in &titles {
        ids.push((create(app, &alice, title, "").await, title.clone()));
        create(app, &bob, title, "").await;
    }
    let total = note_rows(app).await;
    assert_eq!(total, 2 * titles.len() as u64);

    for q in strings {
        let search = Search::new(&NOTES_SEARCH, Some(q), 100, "created_at").unwrap();
        let page = notes::search(&app.db, "alice", &search).await.unwrap();
        let got: HashSet<&str> = page.notes.iter().map(|n| n.id.as_str()).collect();
        let expected: HashSet<&str> = ids
            .iter()
            .filter(|(_, title)| title.to_lowercase().contains(&q.to_lowercase()))
            .map(|(id, _)| id.as_str())
            .collect();
        assert!(!expected.is_empty(), "{q:?}");
        assert_eq!(got, expected, "{q:?}");
        assert!(page.notes.iter().all(|n| n.owner == "alice"), "{q:?}");
    }
    // The table and its rows are all there.
    assert_eq!(note_rows(app).await, total);

    // Over HTTP the wildcards (not suspicious) are literal too.
    for (q, expected) in [("%", 2), ("_", 2), ("!", 2), ("\\", 2), ("PLAIN", 1)] {
        let page: Value = search(app, &alice, &[("q", q), ("limit", "100")])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            page["notes"].as_array().unwrap().len(),
            expected,
            "{q:?}: {page}"
        );
    }
}

#[tokio::test]
async fn search_store_takes_patterns_as_data_on_sqlite() {
    patterns_are_data_not_sql(&sqlite_app().await).await;
}

test_gates::needs! { [postgres]
    #[tokio::test]
    async fn search_store_takes_patterns_as_data_on_postgres() {
        let Some(app) = app_on(Backend::Postgres).await else {
            return;
        };
        patterns_are_data_not_sql(&app).await;
        app.cleanup();
    }
}

/// Walks every page of `query` with `limit`, checking each page's shape;
/// the ids in order.
async fn walk(app: &TestApp, token: &str, query: &[(&str, &str)], limit: usize) -> Vec<String> {
    let limit_text = limit.to_string();
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut pairs: Vec<(&str, &str)> = query.to_vec();
        pairs.push(("limit", &limit_text));
        if let Some(c) = &cursor {
            pairs.push(("cursor", c));
        }
        let response = search(app, token, &pairs).await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        let keys: BTreeSet<&str> = page
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["next_cursor", "notes"]));
        let notes = page["notes"].as_array().unwrap();
        assert!(notes.len() <= limit);
        ids.extend(notes.iter().map(|n| n["id"].as_str().unwrap().to_owned()));
        match &page["next_cursor"] {
            Value::Null => return ids,
            Value::String(next) => {
                assert_eq!(notes.len(), limit, "a page before the last one is full");
                cursor = Some(next.clone());
            }
            other => panic!("next_cursor: {other}"),
        }
    }
    panic!("more than 100 pages");
}

/// 23 notes of Alice with many equal times and titles (ties), 3 of Bob's:
/// each order, with and without `q`, walked with several limits, gives
/// each matching note of Alice's exactly once, in the documented order.
pub async fn pages_walk_every_order_without_gaps(app: &TestApp) {
    let alice = app.token("alice", RW);
    let bob = app.token("bob", RW);
    let words = ["apple", "banana", "cherry", "apple", "date"];
    let mut rows = Vec::new();
    for i in 0..23_i64 {
        let title = words[usize::try_from(i).unwrap() % words.len()];
        let id = create(app, &alice, title, &format!("body {i}")).await;
        // Times with ties: 6 distinct created_at, 4 distinct updated_at.
        let (created, updated) = (1_700_000_000 + i % 6, 1_700_100_000 + (i * 7) % 4);
        note::Entity::update_many()
            .col_expr(
                note::Column::CreatedAt,
                sea_orm::sea_query::Expr::value(created),
            )
            .col_expr(
                note::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(updated),
            )
            .filter(note::Column::Id.eq(id.clone()))
            .exec(&app.db)
            .await
            .unwrap();
        rows.push((id, title.to_owned(), created, updated, format!("body {i}")));
    }
    for title in ["apple", "banana", "zebra"] {
        create(app, &bob, title, "").await;
    }

    for (order_by, q) in [
        ("created_at", None),
        ("updated_at", None),
        ("title", None),
        ("created_at", Some("an")),
        ("title", Some("AN")),
        ("updated_at", Some("body 1")),
    ] {
        let mut expected: Vec<&(String, String, i64, i64, String)> = rows
            .iter()
            .filter(|(_, title, _, _, body)| {
                q.is_none_or(|q| {
                    let q = q.to_lowercase();
                    title.contains(&q) || body.contains(&q)
                })
            })
            .collect();
        match order_by {
            "created_at" => expected.sort_by(|a, b| (b.2, &b.0).cmp(&(a.2, &a.0))),
            "updated_at" => expected.sort_by(|a, b| (b.3, &b.0).cmp(&(a.3, &a.0))),
            _ => expected.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0))),
        }
        let expected: Vec<String> = expected.iter().map(|r| r.0.clone()).collect();
        assert!(!expected.is_empty());
        for limit in [1, 4, 5, 23, 100] {
            let mut query = vec![("order_by", order_by)];
            if let Some(q) = q {
                query.push(("q", q));
            }
            let got = walk(app, &alice, &query, limit).await;
            assert_eq!(got, expected, "order_by={order_by} q={q:?} limit={limit}");
        }
    }
    // Without parameters: the first 10, newest first, and a cursor.
    let first: Value = app
        .get("/api/v2/notes", &alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["notes"].as_array().unwrap().len(), 10);
    assert!(first["next_cursor"].is_string());
    // Bob's cursor walks Bob's notes only, even in Alice's hands: the owner
    // filter comes from the token, never from the cursor.
    let bobs: Value = search(app, &bob, &[("limit", "1")])
        .await
        .json()
        .await
        .unwrap();
    let cursor = bobs["next_cursor"].as_str().unwrap();
    let page: Value = search(app, &alice, &[("limit", "100"), ("cursor", cursor)])
        .await
        .json()
        .await
        .unwrap();
    let mine: HashSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    for note in page["notes"].as_array().unwrap() {
        assert!(mine.contains(note["id"].as_str().unwrap()), "{note}");
    }
}

#[tokio::test]
async fn search_pages_walk_every_order_without_gaps_on_sqlite() {
    pages_walk_every_order_without_gaps(&sqlite_app().await).await;
}

test_gates::needs! { [postgres]
    #[tokio::test]
    async fn search_pages_walk_every_order_without_gaps_on_postgres() {
        let Some(app) = app_on(Backend::Postgres).await else {
            return;
        };
        pages_walk_every_order_without_gaps(&app).await;
        app.cleanup();
    }
}

#[tokio::test]
async fn search_matches_title_or_body_case_insensitively_and_only_own_notes() {
    let app = sqlite_app().await;
    let alice = app.token("alice", RW);
    let bob = app.token("bob", RW);
    let shopping = create(&app, &alice, "Shopping List", "eggs").await;
    let milk = create(&app, &alice, "errands", "buy MILK").await;
    let compare = create(&app, &alice, "maths", "a < b & c").await;
    create(&app, &bob, "shopping for bob", "milk too").await;
    for (q, expected) in [
        ("shopping", vec![&shopping]),
        ("SHOPPING list", vec![&shopping]),
        ("milk", vec![&milk]),
        ("a < b & c", vec![&compare]),
        ("nothing like it", vec![]),
    ] {
        let response = search(&app, &alice, &[("q", q)]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        let got: Vec<&str> = page["notes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = expected.iter().map(|s| s.as_str()).collect();
        assert_eq!(got, expected, "{q:?}");
        assert_eq!(page["next_cursor"], Value::Null);
        for note in page["notes"].as_array().unwrap() {
            let keys: BTreeSet<&str> = note
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                BTreeSet::from(["body", "created_at", "id", "title", "updated_at"])
            );
        }
    }
}

#[tokio::test]
async fn search_needs_the_read_scope() {
    let app = sqlite_app().await;
    let response = search(&app, &app.token("alice", "notes:write"), &[("q", "x")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // A suspicious q without the scope is a 403 before any rule: the
    // events are the two refusals for want of the scope, no
    // suspicious_input.
    let response = search(&app, &app.token("alice", "notes:write"), &[("q", "1;--")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let kinds: Vec<String> = audit_rows(&app).await.into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["permission.denied", "permission.denied"]);
}
