//! Refresh rotation in one trip (`store::refresh::claim`), the SQLite
//! writer queue (`migrations::db::Writer`) and the client cache
//! (`auth_server::cache`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use auth_server::cache::ClientCache;
use auth_server::clock::Clock;
use auth_server::domain::{Email, GrantType, ScopeSet};
use auth_server::startup::{Application, BuildOptions};
use auth_server::store::entities::{refresh_tokens, users};
use auth_server::store::{self, lifecycle, refresh};
use futures::future::join_all;
use migrations::db::Writer;
use migrations::sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter,
    Set,
};

use crate::helpers::{
    AppOptions, Backend, TestApp, TestClient, TestDb, at, both, spawn_app, store_client,
};

const N: usize = 20;
const NOW: i64 = 1_000_000;

async fn test_db(backend: Backend, what: &str) -> TestDb {
    match backend {
        Backend::Sqlite => TestDb::sqlite().await,
        Backend::Postgres => TestDb::postgres(what).await.unwrap(),
    }
}

async fn user(db: &DatabaseConnection, email: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    store::users::create(
        db,
        &Email::parse(email).unwrap(),
        "U",
        "not-a-hash",
        &roles,
        Default::default(),
    )
    .await
    .unwrap()
    .id
}

async fn family(db: &DatabaseConnection, token: &str, client: &str, user: &str, scope: &str) {
    refresh::create_family(
        db,
        refresh::NewFamily {
            token,
            client_id: client,
            user_id: user,
            scope,
            code_id: None,
            expires_at: NOW + 3600,
            now: NOW,
        },
    )
    .await
    .unwrap();
}

/// One common-path rotation, as `oauth::refresh` runs it.
async fn claim_and_rotate(writer: &Writer, token: &str, client: &str, successor: &str) -> bool {
    let txn = writer.begin().await.unwrap();
    match refresh::claim(&*txn, token, at(client), NOW).await.unwrap() {
        Some(claimed) => {
            refresh::insert_successor(&*txn, &claimed.row, successor, NOW)
                .await
                .unwrap();
            txn.commit().await.unwrap();
            true
        }
        None => {
            txn.rollback().await.unwrap();
            false
        }
    }
}

async fn exactly_one_of_n_concurrent_claims_wins(backend: Backend) {
    let db = test_db(backend, "rotation_claim_exactly_one_of_20_wins_postgres").await;
    let user = user(&db.db, "a@example.com", &["reader"]).await;
    store_client(&db.db, "client-a").await;
    family(&db.db, "first", "client-a", &user, "notes:read").await;
    let writer = Writer::new(db.db.clone(), Duration::from_secs(30));
    let attempts = (0..N).map(|i| {
        let writer = writer.clone();
        async move {
            let successor = format!("successor-{i}");
            claim_and_rotate(&writer, "first", "client-a", &successor)
                .await
                .then_some(successor)
        }
    });
    let won: Vec<String> = join_all(attempts).await.into_iter().flatten().collect();
    assert_eq!(won.len(), 1, "exactly one claim must win: {won:?}");
    let old = refresh::find(&db.db, "first").await.unwrap().unwrap();
    assert_eq!(old.used_at, Some(NOW));
    let successor = refresh::find(&db.db, &won[0]).await.unwrap().unwrap();
    assert_eq!(successor.parent_id.as_deref(), Some(old.id.as_str()));
    assert_eq!(successor.family_id, old.family_id);
    assert_eq!(successor.expires_at, old.expires_at);
    assert_eq!(successor.used_at, None);
    db.cleanup().await;
}
both!(exactly_one_of_n_concurrent_claims_wins =>
    rotation_claim_exactly_one_of_20_wins_sqlite,
    rotation_claim_exactly_one_of_20_wins_postgres);

async fn claim_refuses_what_is_not_claimable(backend: Backend) {
    let db = test_db(
        backend,
        "rotation_claim_refuses_unclaimable_tokens_postgres",
    )
    .await;
    let alice = user(&db.db, "a@example.com", &["reader", "admin"]).await;
    let bob = user(&db.db, "b@example.com", &[]).await;
    store_client(&db.db, "client-a").await;
    store_client(&db.db, "client-b").await;
    family(&db.db, "alice", "client-a", &alice, "notes:read").await;
    family(&db.db, "bob", "client-a", &bob, "notes:read").await;
    family(&db.db, "expired", "client-a", &alice, "notes:read").await;
    family(&db.db, "revoked", "client-a", &alice, "notes:read").await;
    family(&db.db, "nobody", "client-a", "no-such-user", "notes:read").await;
    let revoked = refresh::find(&db.db, "revoked").await.unwrap().unwrap();
    refresh::revoke_family(&db.db, &revoked.family_id, "test", NOW)
        .await
        .unwrap();
    // Bob is disabled in the row only: his tokens are not revoked.
    let mut row = users::Entity::find_by_id(bob.clone())
        .one(&db.db)
        .await
        .unwrap()
        .unwrap()
        .into_active_model();
    row.disabled_at = Set(Some(NOW - 1));
    row.update(&db.db).await.unwrap();

    let claim = |token: &'static str, client: &'static str, now: i64| {
        let db = db.db.clone();
        async move { refresh::claim(&db, token, at(client), now).await.unwrap() }
    };
    assert!(claim("unknown", "client-a", NOW).await.is_none());
    assert!(claim("", "client-a", NOW).await.is_none());
    assert!(
        claim("alice", "client-b", NOW).await.is_none(),
        "another client's"
    );
    assert!(
        claim("bob", "client-a", NOW).await.is_none(),
        "user disabled"
    );
    assert!(claim("nobody", "client-a", NOW).await.is_none(), "no user");
    assert!(claim("revoked", "client-a", NOW).await.is_none());
    assert!(claim("expired", "client-a", NOW + 3600).await.is_none());
    // The client's row moved on since it was authenticated (another process
    // changed it behind a cache): not claimed.
    let stale = auth_server::store::clients::ClientAt {
        id: "client-a",
        revision: 1,
    };
    assert!(
        refresh::claim(&db.db, "alice", stale, NOW)
            .await
            .unwrap()
            .is_none(),
        "a client at an old revision"
    );
    for token in ["alice", "bob", "expired", "nobody"] {
        let row = refresh::find(&db.db, token).await.unwrap().unwrap();
        assert_eq!(
            row.used_at, None,
            "{token}: a refused claim changes nothing"
        );
    }
    let claimed = claim("alice", "client-a", NOW).await.unwrap();
    assert_eq!(claimed.row.user_id, alice);
    assert_eq!(claimed.row.scope, "notes:read");
    assert_eq!(claimed.row.used_at, Some(NOW));
    assert_eq!(claimed.user_roles, "reader admin");
    assert_eq!(claimed.user_tier, "standard");
    assert!(claim("alice", "client-a", NOW).await.is_none(), "once only");
    db.cleanup().await;
}
both!(claim_refuses_what_is_not_claimable =>
    rotation_claim_refuses_unclaimable_tokens_sqlite,
    rotation_claim_refuses_unclaimable_tokens_postgres);

/// The one-command rotation on SQLite (`refresh::claim_and_insert_sqlite`):
/// of 20 concurrent rotations of one token exactly one wins and inserts one
/// successor; what `claim` refuses it refuses, changing nothing; a failing
/// insert (the successor's hash is taken) rolls the claim back on the same
/// connection; a request dropped once the command is under way leaves it
/// whole; no connection is left inside a transaction.
#[tokio::test]
async fn one_command_rotation_on_sqlite_is_all_or_nothing() {
    let db = TestDb::sqlite().await;
    let pool = db.db.get_sqlite_connection_pool().clone();
    let writer = Writer::new(db.db.clone(), Duration::from_secs(30));
    let alice = user(&db.db, "a@example.com", &["reader"]).await;
    store_client(&db.db, "client-a").await;
    store_client(&db.db, "client-b").await;
    for token in ["first", "other", "dropped"] {
        family(&db.db, token, "client-a", &alice, "notes:read").await;
    }
    let rotate = |token: &'static str, client: &'static str, successor: String| {
        let writer = writer.clone();
        let pool = pool.clone();
        async move {
            let permit = writer.permit().await.unwrap();
            refresh::claim_and_insert_sqlite(&pool, permit, token, at(client), &successor, NOW)
                .await
                .map(|claimed| claimed.map(|c| (c, successor)))
        }
    };
    let family_size = |id: String| {
        let db = db.db.clone();
        async move {
            refresh_tokens::Entity::find()
                .filter(refresh_tokens::Column::FamilyId.eq(id))
                .all(&db)
                .await
                .unwrap()
                .len()
        }
    };

    let won: Vec<_> = join_all((0..N).map(|i| rotate("first", "client-a", format!("s-{i}"))))
        .await
        .into_iter()
        .filter_map(|r| r.unwrap())
        .collect();
    assert_eq!(won.len(), 1, "exactly one rotation wins");
    let (claimed, successor) = &won[0];
    assert_eq!(claimed.row.used_at, Some(NOW));
    assert_eq!(claimed.user_roles, "reader");
    let new = refresh::find(&db.db, successor).await.unwrap().unwrap();
    assert_eq!(new.parent_id.as_deref(), Some(claimed.row.id.as_str()));
    assert_eq!(family_size(claimed.row.family_id.clone()).await, 2);

    // Refused: another client's, a client at an old revision, unknown.
    let other = refresh::find(&db.db, "other").await.unwrap().unwrap();
    assert!(
        rotate("other", "client-b", "x1".into())
            .await
            .unwrap()
            .is_none()
    );
    let stale = {
        let permit = writer.permit().await.unwrap();
        let client = auth_server::store::clients::ClientAt {
            id: "client-a",
            revision: 1,
        };
        refresh::claim_and_insert_sqlite(&pool, permit, "other", client, "x2", NOW).await
    };
    assert!(stale.unwrap().is_none());
    assert!(
        rotate("nope", "client-a", "x3".into())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        refresh::find(&db.db, "other")
            .await
            .unwrap()
            .unwrap()
            .used_at,
        None
    );
    assert_eq!(family_size(other.family_id.clone()).await, 1);

    // The insert fails (the successor's hash is another token's): the claim
    // is rolled back with it.
    assert!(rotate("other", "client-a", "first".into()).await.is_err());
    assert_eq!(
        refresh::find(&db.db, "other")
            .await
            .unwrap()
            .unwrap()
            .used_at,
        None,
        "the claim was rolled back"
    );
    assert_eq!(family_size(other.family_id.clone()).await, 1);
    let (_, again) = rotate("other", "client-a", "s-other".into())
        .await
        .unwrap()
        .expect("the token still rotates");
    assert!(refresh::find(&db.db, &again).await.unwrap().is_some());

    // Dropped once the command is under way: it completes.
    let mut dropped = Box::pin(rotate("dropped", "client-a", "s-dropped".into()));
    let _ = futures::poll!(dropped.as_mut());
    drop(dropped);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while refresh::find(&db.db, "s-dropped").await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        refresh::find(&db.db, "dropped")
            .await
            .unwrap()
            .unwrap()
            .used_at,
        Some(NOW)
    );

    // No connection is left inside a transaction: every connection of the
    // pool can still write.
    let mut held = Vec::new();
    for _ in 0..pool.size() {
        let mut conn = pool.acquire().await.unwrap();
        migrations::sea_orm::sqlx::query("BEGIN IMMEDIATE; ROLLBACK")
            .execute(&mut *conn)
            .await
            .unwrap();
        held.push(conn);
    }
    drop(held);
    db.cleanup().await;
}

/// A common-path rotation through `oauth::refresh::exchange` runs two
/// statements on the tables it touches on PostgreSQL: the claim and the
/// insert (counted by sea-orm's metric callback; BEGIN and COMMIT are not
/// statements there). On SQLite the whole transaction is one command sent
/// straight to sqlx (`store::refresh::claim_and_insert_sqlite`), which
/// sea-orm never sees: none; the rotation is checked in the rows.
async fn rotation_runs_two_statements(backend: Backend) {
    let db = test_db(backend, "rotation_runs_two_statements_postgres").await;
    let statements = Arc::new(AtomicUsize::new(0));
    let sql = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut counted = db.db.clone();
    {
        let statements = statements.clone();
        let sql = sql.clone();
        counted.set_metric_callback(move |info| {
            let text = info.statement.sql.to_lowercase();
            if ["refresh_tokens", "users", "clients"]
                .iter()
                .any(|t| text.contains(t))
            {
                statements.fetch_add(1, Ordering::SeqCst);
                sql.lock().unwrap().push(info.statement.sql.clone());
            }
        });
    }
    let keys = tempfile::tempdir().unwrap();
    let settings = auth_server::config::Settings {
        auth_listen: "127.0.0.1:0".parse().unwrap(),
        auth_keys_dir: keys.path().to_owned(),
        ..Default::default()
    };
    let built = Application::build(
        settings,
        BuildOptions {
            skip_migrations: true,
            database: Some(counted),
            clock: None,
        },
    )
    .await
    .unwrap();
    let app = built.state().clone();
    let client = store_client(&db.db, "client-a").await;
    let alice = user(&db.db, "a@example.com", &["reader"]).await;
    let now = app.now();
    refresh::create_family(
        &db.db,
        refresh::NewFamily {
            token: "first",
            client_id: "client-a",
            user_id: &alice,
            scope: "notes:read",
            code_id: None,
            expires_at: now + 3600,
            now,
        },
    )
    .await
    .unwrap();
    statements.store(0, Ordering::SeqCst);
    let response = auth_server::oauth::refresh::exchange(&app, &client, "first", None, now)
        .await
        .unwrap();
    let expected = match backend {
        Backend::Sqlite => 0,
        Backend::Postgres => 2,
    };
    assert_eq!(
        statements.load(Ordering::SeqCst),
        expected,
        "{:?}",
        sql.lock().unwrap()
    );
    let successor = response.refresh_token.as_deref().unwrap();
    let old = refresh::find(&db.db, "first").await.unwrap().unwrap();
    assert_eq!(old.used_at, Some(now));
    let new = refresh::find(&db.db, successor).await.unwrap().unwrap();
    assert_eq!(new.parent_id.as_deref(), Some(old.id.as_str()));
    assert_eq!(new.family_id, old.family_id);
    assert_eq!(
        (
            new.client_id.as_str(),
            new.user_id.as_str(),
            new.scope.as_str()
        ),
        (
            old.client_id.as_str(),
            old.user_id.as_str(),
            old.scope.as_str()
        )
    );
    assert_eq!(new.code_id, old.code_id);
    assert_eq!(new.expires_at, old.expires_at);
    assert_eq!(new.created_at, now);
    assert_eq!((new.used_at, new.revoked_at), (None, None));
    assert_eq!(new.grace_replays, 0);
    let claims = claims_of(&response.access_token);
    assert_eq!(claims["roles"], serde_json::json!(["reader"]));
    drop(built);
    db.cleanup().await;
}
both!(rotation_runs_two_statements =>
    rotation_runs_two_statements_sqlite,
    rotation_runs_two_statements_postgres);

/// The claims of a compact JWS, unverified (the test's own server signed it).
fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn app(backend: Backend) -> Option<TestApp> {
    spawn_app(backend, AppOptions::default()).await
}

async fn used_at(app: &TestApp, token: &str) -> Option<i64> {
    refresh::find(&app.db.db, token)
        .await
        .unwrap()
        .unwrap()
        .used_at
}

fn refresh_form(
    client: &TestClient,
    token: &str,
    scope: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut form = client.form();
    form.extend([
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", token.to_owned()),
    ]);
    if let Some(scope) = scope {
        form.push(("scope", scope.to_owned()));
    }
    form
}

/// A narrowed scope wider than the grant (but within the client's
/// registration) is refused inside the rotation's transaction: the token
/// is not rotated and still works.
async fn too_wide_scope_leaves_token_unrotated(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client(false, None).await;
    let now = app.clock.now();
    refresh::create_family(
        &app.db.db,
        refresh::NewFamily {
            token: "narrow-grant",
            client_id: &client.id,
            user_id: &app.user_id,
            scope: "notes:read",
            code_id: None,
            expires_at: now + 3600,
            now,
        },
    )
    .await
    .unwrap();
    let form = refresh_form(&client, "narrow-grant", Some("notes:read notes:write"));
    let (status, body) = app.token(&form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    assert_eq!(used_at(&app, "narrow-grant").await, None, "not rotated");
    let (status, body) = app
        .token(&refresh_form(&client, "narrow-grant", Some("notes:read")))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "notes:read");
    assert!(used_at(&app, "narrow-grant").await.is_some());
    app.stop().await;
}
both!(too_wide_scope_leaves_token_unrotated =>
    rotation_too_wide_scope_leaves_token_unrotated_sqlite,
    rotation_too_wide_scope_leaves_token_unrotated_postgres);

/// A user disabled in the row (as by a disabling that committed while the
/// token was being issued: the token itself is not revoked) cannot refresh,
/// and the token is left unrotated.
async fn disabled_user_cannot_refresh_unrevoked_token(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client(false, None).await;
    let first = app.tokens_for(&client).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app.refresh(&client, &first).await;
    assert_eq!(status, 200, "{body}");
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    users::Entity::update_many()
        .col_expr(
            users::Column::DisabledAt,
            migrations::sea_orm::sea_query::Expr::value(app.clock.now()),
        )
        .filter(users::Column::Id.eq(app.user_id.clone()))
        .exec(&app.db.db)
        .await
        .unwrap();
    let (status, body) = app.refresh(&client, &second).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(used_at(&app, &second).await, None);
    let live = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::UserId.eq(app.user_id.clone()))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .all(&app.db.db)
        .await
        .unwrap();
    assert_eq!(
        live.len(),
        2,
        "nothing was revoked: the refusal is the row's"
    );
    app.stop().await;
}
both!(disabled_user_cannot_refresh_unrevoked_token =>
    rotation_disabled_user_cannot_refresh_unrevoked_token_sqlite,
    rotation_disabled_user_cannot_refresh_unrevoked_token_postgres);

/// Disabling through the admin API is seen by the very next refresh.
async fn admin_disable_is_seen_at_once(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client(false, None).await;
    let first = app.tokens_for(&client).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app.refresh(&client, &first).await;
    assert_eq!(status, 200, "{body}");
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    let admin =
        crate::helpers::token_for(&app, "0b9d1c55-admin-0000-0000-000000000002", &["admin"]);
    let disabled = app
        .http
        .post(app.url(&format!("/api/v2/admin/users/{}/disable", app.user_id)))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status().as_u16(), 200);
    let (status, body) = app.refresh(&client, &second).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    app.stop().await;
}
both!(admin_disable_is_seen_at_once =>
    rotation_admin_disable_is_seen_at_once_sqlite,
    rotation_admin_disable_is_seen_at_once_postgres);

/// A client cached by a refresh: rotating its secret in this process (the
/// CLI's store function) is seen by the next request at once; a secret
/// rotated in behind the cache's back still works at once.
async fn secret_rotation_is_seen_at_once(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let mut client = app.client(false, None).await;
    let first = app.tokens_for(&client).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Cached now.
    let (status, body) = app.refresh(&client, &first).await;
    assert_eq!(status, 200, "{body}");
    assert!(app.state.clients.cached(&client.id).is_some());
    let token = body["refresh_token"].as_str().unwrap().to_owned();
    let new = shared::secret::generate().unwrap();
    lifecycle::rotate_secret(
        &app.db.db,
        &client.id,
        &shared::secret::hash(&new),
        0,
        app.clock.now(),
    )
    .await
    .unwrap();
    assert!(app.state.clients.cached(&client.id).is_none(), "forgotten");
    let (status, body) = app.refresh(&client, &token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert_eq!(used_at(&app, &token).await, None);
    client.secret = Some(new.clone());
    let (status, body) = app.refresh(&client, &token).await;
    assert_eq!(status, 200, "{body}");
    let token = body["refresh_token"].as_str().unwrap().to_owned();

    // Behind the cache's back (as another process would): the new secret
    // works at once (a refused secret is checked against the row).
    let newer = shared::secret::generate().unwrap();
    store::entities::clients::Entity::update_many()
        .col_expr(
            store::entities::clients::Column::SecretHash,
            migrations::sea_orm::sea_query::Expr::value(shared::secret::hash(&newer)),
        )
        .filter(store::entities::clients::Column::Id.eq(client.id.clone()))
        .exec(&app.db.db)
        .await
        .unwrap();
    client.secret = Some(newer);
    let (status, body) = app.refresh(&client, &token).await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}
both!(secret_rotation_is_seen_at_once =>
    rotation_secret_rotation_is_seen_at_once_sqlite,
    rotation_secret_rotation_is_seen_at_once_postgres);

/// Changes client `id`'s row as another process would (the CLI, another
/// instance): `set` (SQL assignments) and the revision moved on, without
/// telling this process's cache.
async fn change_behind_the_cache(app: &TestApp, id: &str, set: &str) {
    use migrations::sea_orm::{ConnectionTrait, Statement};
    let db = &app.db.db;
    let changed = db
        .execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            format!("UPDATE clients SET {set}, revision = revision + 1 WHERE id = $1"),
            [id.into()],
        ))
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 1);
}

fn hash_literal(secret: &str) -> String {
    format!("'{}'", shared::secret::hash(secret))
}

/// A client changed by another process while this one has it cached: the
/// next request at /token is judged against the row, not the cache. A
/// rotated-out secret is refused by a refresh and a code exchange, which
/// spend nothing; the new secret works with the same token and code; a
/// secret the other process kept as the previous one still works;
/// introspection reads the row.
async fn changes_behind_the_cache_are_seen_at_once(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let mut client = app.client(false, None).await;
    let first = app.tokens_for(&client).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app.refresh(&client, &first).await;
    assert_eq!(status, 200, "{body}");
    let token = body["refresh_token"].as_str().unwrap().to_owned();
    let old = client.secret.clone().unwrap();
    let new = shared::secret::generate().unwrap();
    change_behind_the_cache(
        &app,
        &client.id,
        &format!("secret_hash = {}", hash_literal(&new)),
    )
    .await;
    assert!(
        app.state.clients.cached(&client.id).is_some(),
        "the cache is behind the row"
    );

    // The rotated-out secret: refused, nothing spent.
    let (status, body) = app.refresh(&client, &token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert_eq!(used_at(&app, &token).await, None, "the token is not spent");
    let verifier = "v".repeat(43);
    let code = app.code(&client, &verifier, true).await;
    let exchange = |client: &TestClient| {
        let mut form = client.form();
        form.extend([
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.clone()),
            ("redirect_uri", crate::helpers::REDIRECT.to_owned()),
            ("code_verifier", verifier.clone()),
        ]);
        form
    };
    let (status, body) = app.token(&exchange(&client)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let introspect = |client: &TestClient, token: &str| {
        let mut form = client.form();
        form.push(("token", token.to_owned()));
        app.http
            .post(app.url(shared::paths::INTROSPECT_PATH))
            .form(&form)
            .send()
    };
    assert_eq!(introspect(&client, &token).await.unwrap().status(), 401);

    // The new secret: the same token and code work.
    client.secret = Some(new.clone());
    let (status, body) = app.token(&exchange(&client)).await;
    assert_eq!(status, 200, "the code was not spent: {body}");
    let (status, body) = app.refresh(&client, &token).await;
    assert_eq!(status, 200, "the token was not spent: {body}");
    let token = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&client, &token).await.unwrap().status(), 200);

    // Rotated again elsewhere with a grace: the secret this process cached
    // as current is now the previous one, and still works.
    let newer = shared::secret::generate().unwrap();
    change_behind_the_cache(
        &app,
        &client.id,
        &format!(
            "secret_hash = {}, previous_secret_hash = {}, previous_secret_expires_at = {}",
            hash_literal(&newer),
            hash_literal(&new),
            app.clock.now() + 3600
        ),
    )
    .await;
    let (status, body) = app.refresh(&client, &token).await;
    assert_eq!(status, 200, "the previous secret within its grace: {body}");
    client.secret = Some(old);
    let (status, body) = app
        .refresh(&client, body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    app.stop().await;
}
both!(changes_behind_the_cache_are_seen_at_once =>
    rotation_changes_behind_the_cache_are_seen_at_once_sqlite,
    rotation_changes_behind_the_cache_are_seen_at_once_postgres);

/// client_credentials with a cached client: a secret changed or a client
/// deleted by another process is refused by the next request.
async fn machine_changes_behind_the_cache_are_seen_at_once(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let mut client = crate::helpers::machine_client(&app).await;
    let form = |client: &TestClient| {
        let mut form = client.form();
        form.push(("grant_type", "client_credentials".to_owned()));
        form
    };
    let (status, body) = app.token(&form(&client)).await;
    assert_eq!(status, 200, "{body}");
    assert!(app.state.clients.cached(&client.id).is_some());
    let new = shared::secret::generate().unwrap();
    change_behind_the_cache(
        &app,
        &client.id,
        &format!("secret_hash = {}", hash_literal(&new)),
    )
    .await;
    let (status, body) = app.token(&form(&client)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    client.secret = Some(new);
    let (status, body) = app.token(&form(&client)).await;
    assert_eq!(status, 200, "{body}");
    assert!(app.state.clients.cached(&client.id).is_some());
    {
        use migrations::sea_orm::{ConnectionTrait, Statement};
        let db = &app.db.db;
        db.execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            "DELETE FROM clients WHERE id = $1",
            [client.id.clone().into()],
        ))
        .await
        .unwrap();
    }
    let (status, body) = app.token(&form(&client)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "a deleted client: {body}"
    );
    app.stop().await;
}
both!(machine_changes_behind_the_cache_are_seen_at_once =>
    rotation_machine_changes_behind_the_cache_are_seen_at_once_sqlite,
    rotation_machine_changes_behind_the_cache_are_seen_at_once_postgres);

/// The cache reads a client once, forgets it when told, never caches an
/// unknown id, and keeps two server states apart.
#[tokio::test]
async fn client_cache_reads_once_and_forgets_when_told() {
    let db = TestDb::sqlite().await;
    let reads = Arc::new(AtomicUsize::new(0));
    let mut counted = db.db.clone();
    {
        let reads = reads.clone();
        counted.set_metric_callback(move |info| {
            if info.statement.sql.contains("clients") {
                reads.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let id = format!("c_{}", uuid::Uuid::new_v4().simple());
    store::clients::create(
        &db.db,
        store::clients::NewClient {
            id: &id,
            name: "A",
            secret_hash: None,
            redirect_uris: &[],
            grant_types: &[GrantType::RefreshToken],
            scopes: &ScopeSet::parse("notes:read").unwrap(),
            refresh_grace_secs: None,
            tier: Default::default(),
        },
    )
    .await
    .unwrap();
    let cache = ClientCache::new();
    let other = ClientCache::new();
    assert!(cache.find(&counted, "c_unknown").await.unwrap().is_none());
    assert!(cache.find(&counted, "c_unknown").await.unwrap().is_none());
    assert_eq!(
        reads.load(Ordering::SeqCst),
        2,
        "unknown ids are not cached"
    );
    reads.store(0, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(cache.find(&counted, &id).await.unwrap().unwrap().id, id);
    }
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    assert!(other.cached(&id).is_none(), "another state's entry");
    auth_server::cache::forget_client(&id);
    assert!(cache.cached(&id).is_none());
    assert!(cache.find(&counted, &id).await.unwrap().is_some());
    assert_eq!(reads.load(Ordering::SeqCst), 2);
    db.cleanup().await;
}

/// A rotation whose request future is dropped at some point (a client
/// that went away) leaves either the old token unrotated and no
/// successor, or the rotation complete; never one without the other.
async fn dropped_rotation_is_all_or_nothing(backend: Backend) {
    let db = test_db(
        backend,
        "rotation_dropped_rotation_is_all_or_nothing_postgres",
    )
    .await;
    let keys = tempfile::tempdir().unwrap();
    let settings = auth_server::config::Settings {
        auth_listen: "127.0.0.1:0".parse().unwrap(),
        auth_keys_dir: keys.path().to_owned(),
        ..Default::default()
    };
    let built = Application::build(
        settings,
        BuildOptions {
            skip_migrations: true,
            database: Some(db.db.clone()),
            clock: None,
        },
    )
    .await
    .unwrap();
    let app = built.state().clone();
    let client = store_client(&db.db, "client-a").await;
    let alice = user(&db.db, "a@example.com", &[]).await;
    let now = app.now();
    let mut outcomes = (0, 0);
    for polls in 0..40u32 {
        let token = format!("token-{polls}");
        refresh::create_family(
            &db.db,
            refresh::NewFamily {
                token: &token,
                client_id: "client-a",
                user_id: &alice,
                scope: "notes:read",
                code_id: None,
                expires_at: now + 3600,
                now,
            },
        )
        .await
        .unwrap();
        // Dropped after 1, 2, … polls, or after 0, 1, 2, … ms: before,
        // during or after the transaction (a drop during COMMIT may still
        // commit).
        let exchange = auth_server::oauth::refresh::exchange(&app, &client, &token, None, now);
        if polls < 20 {
            let mut exchange = std::pin::pin!(exchange);
            for _ in 0..=polls {
                if futures::poll!(exchange.as_mut()).is_ready() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        } else {
            let wait = Duration::from_millis(u64::from((polls - 20) / 2));
            let _ = tokio::time::timeout(wait, exchange).await;
        }
        // Both rows in one statement: one snapshot, whatever is still in
        // flight.
        let successor = app.refresh_secret.successor(&token);
        let rows = refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::TokenHash.is_in([
                shared::secret::hash(&token),
                shared::secret::hash(&successor),
            ]))
            .all(&db.db)
            .await
            .unwrap();
        let old = rows.iter().find(|r| r.parent_id.is_none()).unwrap();
        let new = rows.iter().find(|r| r.parent_id.is_some());
        match (old.used_at, new) {
            (None, None) => outcomes.0 += 1,
            (Some(_), Some(new)) => {
                assert_eq!(new.parent_id.as_deref(), Some(old.id.as_str()));
                outcomes.1 += 1;
            }
            (used, new) => panic!("after {polls} polls: used_at {used:?}, successor {new:?}"),
        }
    }
    // Which outcomes occur depends on timing; none may be half done.
    eprintln!("dropped rotations (unrotated, complete): {outcomes:?}");
    drop(built);
    db.cleanup().await;
}
both!(dropped_rotation_is_all_or_nothing =>
    rotation_dropped_rotation_is_all_or_nothing_sqlite,
    rotation_dropped_rotation_is_all_or_nothing_postgres);
