//! `GET /api/v2/admin/users?q=&limit=&order_by=&cursor=`: the admin role,
//! every rule's 422, the injection tripwire and its security event,
//! pagination over ties, the exact keys, and the store's search taking any
//! `q` as data (the detector bypassed), on SQLite and PostgreSQL.

use std::collections::{BTreeSet, HashSet};

use auth_server::domain::Email;
use auth_server::store::entities::{audit_events, users};
use auth_server::store::user_search::{self, USERS_SEARCH};
use migrations::sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Statement};
use serde_json::Value;
use shared::search::Search;

use crate::helpers::{Answer, AppOptions, Backend, TestApp, spawn_app, token_with_roles};

const PATH: &str = "/api/v2/admin/users";

async fn app_on(backend: Backend) -> Option<TestApp> {
    spawn_app(backend, AppOptions::default()).await
}

/// `GET /api/v2/admin/users` with these query pairs (encoded here).
async fn get(app: &TestApp, token: Option<&str>, pairs: &[(&str, &str)]) -> Answer {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let mut request = app
        .http
        .get(app.url(&format!("{PATH}?{query}")))
        .header("user-agent", "admin-search-test/1.0");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Answer::of(request.send().await.unwrap()).await
}

async fn add_user(app: &TestApp, email: &str, name: &str) -> String {
    let email = Email::parse(email).unwrap();
    auth_server::store::users::create(
        &app.db.db,
        &email,
        name,
        "not-a-real-hash",
        &[],
        Default::default(),
    )
    .await
    .unwrap()
    .id
}

async fn audit_rows(app: &TestApp) -> Vec<audit_events::Model> {
    audit_events::Entity::find()
        .filter(audit_events::Column::Kind.eq("suspicious_input"))
        .all(&app.db.db)
        .await
        .unwrap()
}

async fn user_rows(app: &TestApp) -> i64 {
    let row = app
        .db
        .db
        .query_one(Statement::from_string(
            app.db.db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM users",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

/// Query pairs, or expected `(field, rule)` pairs.
type Query<'a> = Vec<(&'a str, &'a str)>;

fn pairs(list: &[(String, String)]) -> Vec<(&str, &str)> {
    list.iter().map(|(f, r)| (f.as_str(), r.as_str())).collect()
}

#[tokio::test]
async fn admin_search_needs_the_admin_role() {
    let app = app_on(Backend::Sqlite).await.unwrap();
    let user = token_with_roles(&app, &[]);
    for (token, status) in [(None, 401), (Some("not.a.token"), 401), (Some(&*user), 403)] {
        let answer = get(&app, token, &[("q", "alice")]).await;
        assert_eq!(answer.status, status, "{}", answer.text());
        assert_eq!(answer.content_type, "application/problem+json");
        assert!(!answer.text().contains("alice@example.com"));
        // A suspicious term without the role: refused for the role, before
        // any rule, and no event.
        let answer = get(&app, token, &[("q", "1; --")]).await;
        assert_eq!(answer.status, status);
    }
    assert!(audit_rows(&app).await.is_empty());
    let admin = token_with_roles(&app, &["admin"]);
    let answer = get(&app, Some(&admin), &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.cache_control, "no-store");
    app.stop().await;
}

#[tokio::test]
async fn admin_search_refuses_each_bad_parameter_naming_field_and_rule_without_echo() {
    let app = app_on(Backend::Sqlite).await.unwrap();
    let admin = token_with_roles(&app, &["admin"]);
    let long = format!("zq{}", "x".repeat(99));
    let cases: Vec<(Query, Query)> = vec![
        (vec![("q", "")], vec![("q", "blank")]),
        (vec![("q", &long)], vec![("q", "too_long")]),
        (vec![("q", "zq\u{7}zq")], vec![("q", "control_character")]),
        (vec![("q", "zq\u{2066}zq")], vec![("q", "bidi_override")]),
        (vec![("limit", "0")], vec![("limit", "range")]),
        (vec![("limit", "101")], vec![("limit", "range")]),
        (vec![("limit", "zqabc")], vec![("limit", "range")]),
        (
            vec![("order_by", "title")],
            vec![("order_by", "not_allowed")],
        ),
        (
            vec![("order_by", "password_hash")],
            vec![("order_by", "not_allowed")],
        ),
        (vec![("role", "admin")], vec![("role", "unknown_field")]),
        (vec![("cursor", "zqbad")], vec![("cursor", "invalid")]),
    ];
    for (query, expected) in cases {
        let answer = get(&app, Some(&admin), &query).await;
        assert_eq!(pairs(&answer.errors()), expected, "{query:?}");
        let text = answer.text();
        assert!(!text.contains("zq"), "{query:?}: {text}");
        assert!(!text.contains("password_hash"), "{text}");
    }
    assert!(audit_rows(&app).await.is_empty());
    // A cursor of one order is refused with another.
    for i in 0..3 {
        add_user(&app, &format!("c{i}@example.com"), "c").await;
    }
    let page = get(&app, Some(&admin), &[("limit", "1")]).await.json();
    let cursor = page["next_cursor"].as_str().unwrap();
    let answer = get(
        &app,
        Some(&admin),
        &[("limit", "1"), ("order_by", "email"), ("cursor", cursor)],
    )
    .await;
    assert_eq!(pairs(&answer.errors()), [("cursor", "invalid")]);
    let answer = get(&app, Some(&admin), &[("limit", "1"), ("cursor", cursor)]).await;
    assert_eq!(answer.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn admin_search_refuses_injection_patterns_and_records_a_security_event() {
    let app = app_on(Backend::Sqlite).await.unwrap();
    let admin = token_with_roles(&app, &["admin"]);
    let users_before = user_rows(&app).await;
    for (q, pattern) in [
        ("' OR '1'='1", "quote_or_quote"),
        ("a' union   select password_hash from users", "union_select"),
        ("x UNION/**/SELECT 1", "union_select"),
        ("x'; DROP TABLE users; --", "line_comment"),
        ("x'; DROP TABLE users", "statement_separator"),
        ("admin'--", "line_comment"),
        ("a/*", "block_comment"),
        ("xp_regread", "extended_procedure"),
    ] {
        let before = audit_rows(&app).await.len();
        let answer = get(&app, Some(&admin), &[("q", q)]).await;
        assert_eq!(
            pairs(&answer.errors()),
            [("q", "suspicious_input")],
            "{q:?}"
        );
        assert!(!answer.text().contains(q));
        let rows = audit_rows(&app).await;
        assert_eq!(rows.len(), before + 1, "{q:?}");
        let event = rows
            .iter()
            .find(|r| serde_json::from_str::<Value>(&r.detail).unwrap()["q_excerpt"] == q)
            .unwrap();
        assert_eq!(event.user_id.as_deref(), Some(app.user_id.as_str()));
        assert_eq!(event.client_id.as_deref(), Some("admin-console"));
        let detail: Value = serde_json::from_str(&event.detail).unwrap();
        assert_eq!(detail["route"], PATH);
        assert_eq!(detail["field"], "q");
        assert_eq!(detail["pattern"], pattern, "{q:?}");
        assert_eq!(detail["client_ip"], "127.0.0.1");
        assert_eq!(detail["user_agent"], "admin-search-test/1.0");
    }
    assert_eq!(user_rows(&app).await, users_before);
    app.stop().await;
}

/// Users holding the attack strings in their names, and the store's search
/// (no detector on this path) with each string as `q`: exactly the users
/// whose email or name holds it literally; the table intact.
async fn patterns_are_data_not_sql(app: &TestApp) {
    let strings = [
        "' OR '1'='1",
        "x'; DROP TABLE users; --",
        "%",
        "_",
        "union select password_hash from users",
        "!",
        "\\",
    ];
    let mut made = vec![(
        app.user_id.clone(),
        "alice@example.com".to_owned(),
        "Alice".to_owned(),
    )];
    for (i, s) in strings.iter().enumerate() {
        let email = format!("holder{i}@example.com");
        let name = format!("holds {s} here");
        made.push((add_user(app, &email, &name).await, email, name));
    }
    for (email, name) in [
        ("percent@example.com", "100 percent"),
        ("under_score@example.com", "snake"),
        ("plain@example.com", "or 1=1"),
    ] {
        made.push((
            add_user(app, email, name).await,
            email.to_owned(),
            name.to_owned(),
        ));
    }
    let total = user_rows(app).await;
    for q in strings {
        let search = Search::new(&USERS_SEARCH, Some(q), 100, "email").unwrap();
        let page = user_search::search(&app.db.db, &search).await.unwrap();
        let got: HashSet<&str> = page.users.iter().map(|u| u.id.as_str()).collect();
        let q_lower = q.to_lowercase();
        let expected: HashSet<&str> = made
            .iter()
            .filter(|(_, email, name)| {
                email.to_lowercase().contains(&q_lower) || name.to_lowercase().contains(&q_lower)
            })
            .map(|(id, ..)| id.as_str())
            .collect();
        assert!(!expected.is_empty(), "{q:?}");
        assert_eq!(got, expected, "{q:?}");
    }
    assert_eq!(user_rows(app).await, total);
    // Over HTTP the wildcards (not suspicious) are literal too.
    let admin = token_with_roles(app, &["admin"]);
    // `_`: "holds _ here", "under_score@…", "… password_hash …".
    for (q, expected) in [("_", 3), ("%", 1), ("ALICE", 1)] {
        let body = get(app, Some(&admin), &[("q", q), ("limit", "100")])
            .await
            .json();
        assert_eq!(
            body["users"].as_array().unwrap().len(),
            expected,
            "{q:?}: {body}"
        );
    }
}

#[tokio::test]
async fn admin_search_store_takes_patterns_as_data_on_sqlite() {
    let app = app_on(Backend::Sqlite).await.unwrap();
    patterns_are_data_not_sql(&app).await;
    app.stop().await;
}

test_gates::needs! { [postgres]
    #[tokio::test]
    async fn admin_search_store_takes_patterns_as_data_on_postgres() {
        let Some(app) = app_on(Backend::Postgres).await else {
            return;
        };
        patterns_are_data_not_sql(&app).await;
        app.stop().await;
    }
}

/// Walks every page; the ids in order.
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
        let answer = get(app, Some(token), &pairs).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let page = answer.json();
        assert_eq!(keys(&page), BTreeSet::from(["next_cursor", "users"]));
        let users = page["users"].as_array().unwrap();
        assert!(users.len() <= limit);
        for user in users {
            assert_eq!(
                keys(user),
                BTreeSet::from([
                    "created_at",
                    "disabled_at",
                    "email",
                    "id",
                    "name",
                    "roles",
                    "tier",
                    "updated_at"
                ]),
                "{user}"
            );
        }
        assert!(!answer.text().contains("hash"), "{}", answer.text());
        ids.extend(users.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        match &page["next_cursor"] {
            Value::Null => return ids,
            Value::String(next) => {
                assert_eq!(users.len(), limit);
                cursor = Some(next.clone());
            }
            other => panic!("next_cursor: {other}"),
        }
    }
    panic!("more than 100 pages");
}

/// 16 users with equal names and times (ties), plus the harness's Alice:
/// each order, with and without `q`, walked with several limits, gives each
/// matching user exactly once, in the documented order.
async fn pages_walk_every_order_without_gaps(app: &TestApp) {
    let admin = token_with_roles(app, &["admin"]);
    let names = ["ann", "bob", "ann", "cid"];
    // (id, email, name, created_at, updated_at)
    let mut rows: Vec<(String, String, String, i64, i64)> = Vec::new();
    let alice = users::Entity::find_by_id(app.user_id.clone())
        .one(&app.db.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.updated_at, alice.created_at);
    rows.push((
        alice.id,
        alice.email,
        alice.name,
        alice.created_at,
        alice.updated_at,
    ));
    for i in 0..16_i64 {
        let email = format!("u{:02}@example.com", (i * 5) % 16);
        let name = names[usize::try_from(i).unwrap() % names.len()];
        let id = add_user(app, &email, name).await;
        let (created, updated) = (1_600_000_000 + i % 5, 1_650_000_000 + (i * 3) % 4);
        users::Entity::update_many()
            .col_expr(
                users::Column::CreatedAt,
                migrations::sea_orm::sea_query::Expr::value(created),
            )
            .col_expr(
                users::Column::UpdatedAt,
                migrations::sea_orm::sea_query::Expr::value(updated),
            )
            .filter(users::Column::Id.eq(id.clone()))
            .exec(&app.db.db)
            .await
            .unwrap();
        rows.push((id, email, name.to_owned(), created, updated));
    }
    for (order_by, q) in [
        ("created_at", None),
        ("updated_at", None),
        ("name", None),
        ("email", None),
        ("name", Some("ANN")),
        ("created_at", Some("u1")),
        ("email", Some("example")),
    ] {
        let mut expected: Vec<&(String, String, String, i64, i64)> = rows
            .iter()
            .filter(|(_, email, name, ..)| {
                q.is_none_or(|q| {
                    let q = q.to_lowercase();
                    email.to_lowercase().contains(&q) || name.to_lowercase().contains(&q)
                })
            })
            .collect();
        match order_by {
            "created_at" => expected.sort_by(|a, b| (b.3, &b.0).cmp(&(a.3, &a.0))),
            "updated_at" => expected.sort_by(|a, b| (b.4, &b.0).cmp(&(a.4, &a.0))),
            "name" => expected.sort_by(|a, b| (&a.2, &a.0).cmp(&(&b.2, &b.0))),
            _ => expected.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0))),
        }
        let expected: Vec<String> = expected.iter().map(|r| r.0.clone()).collect();
        assert!(!expected.is_empty());
        for limit in [1, 3, 5, 17, 100] {
            let mut query = vec![("order_by", order_by)];
            if let Some(q) = q {
                query.push(("q", q));
            }
            let got = walk(app, &admin, &query, limit).await;
            assert_eq!(got, expected, "order_by={order_by} q={q:?} limit={limit}");
        }
    }
    // The default: 10, newest first, and a cursor.
    let first = get(app, Some(&admin), &[]).await.json();
    assert_eq!(first["users"].as_array().unwrap().len(), 10);
    assert!(first["next_cursor"].is_string());
}

#[tokio::test]
async fn admin_search_pages_walk_every_order_without_gaps_on_sqlite() {
    let app = app_on(Backend::Sqlite).await.unwrap();
    // Alice's name sorts with the lower-case ones only by collation; keep
    // the comparison to plain lower-case names.
    users::Entity::update_many()
        .col_expr(
            users::Column::Name,
            migrations::sea_orm::sea_query::Expr::value("alice"),
        )
        .exec(&app.db.db)
        .await
        .unwrap();
    pages_walk_every_order_without_gaps(&app).await;
    app.stop().await;
}

test_gates::needs! { [postgres]
    #[tokio::test]
    async fn admin_search_pages_walk_every_order_without_gaps_on_postgres() {
        let Some(app) = app_on(Backend::Postgres).await else {
            return;
        };
        users::Entity::update_many()
            .col_expr(
                users::Column::Name,
                migrations::sea_orm::sea_query::Expr::value("alice"),
            )
            .exec(&app.db.db)
            .await
            .unwrap();
        pages_walk_every_order_without_gaps(&app).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn admin_search_shows_roles_tier_and_times_never_the_hash() {
    let app = app_on(Backend::Sqlite).await.unwrap();
    let admin = token_with_roles(&app, &["admin"]);
    let answer = get(&app, Some(&admin), &[("q", "alice")]).await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    assert_eq!(body["next_cursor"], Value::Null);
    let users = body["users"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    let alice = &users[0];
    assert_eq!(alice["id"], app.user_id.as_str());
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["name"], "Alice");
    assert_eq!(alice["roles"], serde_json::json!([]));
    assert_eq!(alice["tier"], "standard");
    assert_eq!(alice["disabled_at"], Value::Null);
    assert!(alice["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(alice["updated_at"], alice["created_at"]);
    assert!(!answer.text().contains("argon2"), "{}", answer.text());
    app.stop().await;
}

#[tokio::test]
async fn admin_search_updated_at_moves_with_a_new_password() {
    let app = app_on(Backend::Sqlite).await.unwrap();
    let before = users::Entity::find_by_id(app.user_id.clone())
        .one(&app.db.db)
        .await
        .unwrap()
        .unwrap();
    let later = before.created_at + 1000;
    assert!(
        auth_server::store::users::set_password_hash(&app.db.db, &app.user_id, "new-hash", later)
            .await
            .unwrap()
    );
    let after = users::Entity::find_by_id(app.user_id.clone())
        .one(&app.db.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.updated_at, later);
    assert_eq!(after.created_at, before.created_at);
    app.stop().await;
}
