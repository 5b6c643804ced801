//! The janitor: exactly the rows that can no longer matter go, in batches,
//! also when several instances run it at once; the server runs it on its
//! own clock, survives a failing run and stops it with itself.

use std::collections::BTreeSet;
use std::time::Duration;

use auth_server::clock::Clock;
use auth_server::janitor::{self, JanitorSettings, Report};
use auth_server::store::codes::REPLAY_WINDOW_SECS;
use auth_server::store::entities::{
    audit_events, authorization_codes, lockouts, login_sessions, mail_outbox,
    password_reset_tokens, pending_authorizations, refresh_tokens,
};
use auth_server::store::refresh;
use migrations::sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QuerySelect, Set,
};

use crate::helpers::{AppOptions, Backend, TestDb, both, spawn_app};

const NOW: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

async fn test_db(backend: Backend) -> Option<TestDb> {
    match backend {
        Backend::Sqlite => Some(TestDb::sqlite().await),
        Backend::Postgres => TestDb::postgres("a janitor PostgreSQL variant").await,
    }
}

fn settings(batch_size: u64) -> JanitorSettings {
    JanitorSettings {
        batch_size,
        pause: Duration::ZERO,
        audit_retention_days: 90,
    }
}

/// The ids left in a table.
async fn ids<E: EntityTrait>(db: &DatabaseConnection, _: E, id: E::Column) -> BTreeSet<String> {
    E::find()
        .select_only()
        .column(id)
        .into_tuple::<String>()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

async fn code(db: &DatabaseConnection, id: &str, expires_at: i64, used_at: Option<i64>) {
    authorization_codes::ActiveModel {
        id: Set(id.to_owned()),
        code_hash: Set(format!("hash-{id}")),
        client_id: Set("client-a".into()),
        user_id: Set("user-1".into()),
        redirect_uri: Set("https://app.example/cb".into()),
        redirect_uri_given: Set(true),
        scope: Set("notes:read".into()),
        pkce: Set(Some("challengeS".into())),
        expires_at: Set(expires_at),
        used_at: Set(used_at),
        created_at: Set(expires_at - 60),
    }
    .insert(db)
    .await
    .unwrap();
}

async fn session(db: &DatabaseConnection, id: &str, expires_at: i64) {
    login_sessions::ActiveModel {
        id: Set(id.to_owned()),
        session_hash: Set(format!("hash-{id}")),
        user_id: Set(Some("user-1".into())),
        csrf_token: Set("csrf".into()),
        created_at: Set(expires_at - 3600),
        expires_at: Set(expires_at),
        authenticated_at: Set(Some(expires_at - 3600)),
    }
    .insert(db)
    .await
    .unwrap();
}

async fn pending(db: &DatabaseConnection, id: &str, expires_at: i64) {
    pending_authorizations::ActiveModel {
        id: Set(id.to_owned()),
        session_id: Set("session".into()),
        client_id: Set("client-a".into()),
        request: Set("{}".into()),
        created_at: Set(expires_at - 600),
        expires_at: Set(expires_at),
    }
    .insert(db)
    .await
    .unwrap();
}

async fn reset(db: &DatabaseConnection, id: &str, expires_at: i64, used_at: Option<i64>) {
    password_reset_tokens::ActiveModel {
        id: Set(id.to_owned()),
        user_id: Set("user-1".into()),
        token_hash: Set(format!("hash-{id}")),
        created_at: Set(expires_at - 1800),
        expires_at: Set(expires_at),
        used_at: Set(used_at),
    }
    .insert(db)
    .await
    .unwrap();
}

async fn lockout(db: &DatabaseConnection, id: &str, locked_until: i64) {
    lockouts::ActiveModel {
        id: Set(id.to_owned()),
        kind: Set("ip".into()),
        subject: Set(id.to_owned()),
        failures: Set(5),
        locked_at: Set(locked_until - 3600),
        locked_until: Set(locked_until),
    }
    .insert(db)
    .await
    .unwrap();
}

async fn audit(db: &DatabaseConnection, id: &str, at: i64) {
    audit_events::ActiveModel {
        id: Set(id.to_owned()),
        at: Set(at),
        kind: Set("login_succeeded".into()),
        user_id: Set(Some("user-1".into())),
        client_id: Set(None),
        detail: Set("{}".into()),
    }
    .insert(db)
    .await
    .unwrap();
}

async fn outbox(db: &DatabaseConnection, id: &str, created_at: i64) {
    mail_outbox::ActiveModel {
        id: Set(id.to_owned()),
        recipient: Set("ann@example.com".into()),
        subject: Set("Reset your password".into()),
        body: Set("…".into()),
        created_at: Set(created_at),
    }
    .insert(db)
    .await
    .unwrap();
}

/// A refresh family ending at `expires_at`, rotated once (through the
/// store, as /token does) at `expires_at - 100`; the ids of (parent, child).
async fn rotated_family(db: &DatabaseConnection, name: &str, expires_at: i64) -> [String; 2] {
    let first = format!("{name}-first");
    let second = format!("{name}-second");
    refresh::create_family(
        db,
        refresh::NewFamily {
            token: &first,
            client_id: "client-a",
            user_id: "user-1",
            scope: "notes:read",
            code_id: None,
            expires_at,
            now: expires_at - 1000,
        },
    )
    .await
    .unwrap();
    let parent = refresh::find(db, &first).await.unwrap().unwrap();
    assert!(matches!(
        refresh::rotate(db, &parent, &second, expires_at - 100)
            .await
            .unwrap(),
        refresh::Rotation::Rotated
    ));
    let child = refresh::find(db, &second).await.unwrap().unwrap();
    assert_eq!(
        child.expires_at, expires_at,
        "a rotated token keeps its family's absolute end"
    );
    [parent.id, child.id]
}

/// Expired and live rows of every kind; returns what a pass at NOW must
/// report.
async fn seed(db: &DatabaseConnection) -> (Report, [String; 2], [String; 2]) {
    // Codes: expired unused ones go; a used one stays for the replay window.
    code(db, "code-expired", NOW - 1, None).await;
    code(db, "code-long-expired", NOW - 30 * DAY, None).await;
    code(db, "code-used-recent", NOW - 10, Some(NOW - 50)).await;
    code(
        db,
        "code-used-old",
        NOW - REPLAY_WINDOW_SECS - 1,
        Some(NOW - REPLAY_WINDOW_SECS - 30),
    )
    .await;
    code(db, "code-live", NOW + 60, None).await;
    code(db, "code-ends-now", NOW, None).await;
    // Refresh tokens: a whole family past its end goes, parent and child.
    let dead_family = rotated_family(db, "dead", NOW - 1).await;
    let live_family = rotated_family(db, "live", NOW + 3600).await;
    session(db, "session-expired-1", NOW - 1).await;
    session(db, "session-expired-2", NOW - 7 * DAY).await;
    session(db, "session-live", NOW + 3600).await;
    pending(db, "pending-expired", NOW - 1).await;
    pending(db, "pending-live", NOW + 600).await;
    reset(db, "reset-expired", NOW - 1, None).await;
    reset(db, "reset-expired-used", NOW - DAY, Some(NOW - DAY - 60)).await;
    reset(db, "reset-live", NOW + 1800, None).await;
    lockout(db, "lockout-over", NOW - 1).await;
    lockout(db, "lockout-on", NOW + 600).await;
    audit(db, "audit-89d", NOW - 89 * DAY).await;
    audit(db, "audit-91d", NOW - 91 * DAY).await;
    audit(db, "audit-400d", NOW - 400 * DAY).await;
    audit(db, "audit-today", NOW - 60).await;
    outbox(db, "mail-8d", NOW - 8 * DAY).await;
    outbox(db, "mail-6d", NOW - 6 * DAY).await;
    let expected = Report {
        authorization_codes: 3,
        refresh_tokens: 2,
        login_sessions: 2,
        pending_authorizations: 1,
        password_reset_tokens: 2,
        lockouts: 1,
        audit_events: 2,
        mail_outbox: 1,
    };
    (expected, dead_family, live_family)
}

/// Asserts that exactly the live rows of `seed` are left.
async fn assert_only_live_rows_left(db: &DatabaseConnection, live_family: &[String; 2]) {
    assert_eq!(
        ids(
            db,
            authorization_codes::Entity,
            authorization_codes::Column::Id
        )
        .await,
        set(&["code-used-recent", "code-live", "code-ends-now"])
    );
    assert_eq!(
        ids(db, refresh_tokens::Entity, refresh_tokens::Column::Id).await,
        live_family.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        ids(db, login_sessions::Entity, login_sessions::Column::Id).await,
        set(&["session-live"])
    );
    assert_eq!(
        ids(
            db,
            pending_authorizations::Entity,
            pending_authorizations::Column::Id
        )
        .await,
        set(&["pending-live"])
    );
    assert_eq!(
        ids(
            db,
            password_reset_tokens::Entity,
            password_reset_tokens::Column::Id
        )
        .await,
        set(&["reset-live"])
    );
    assert_eq!(
        ids(db, lockouts::Entity, lockouts::Column::Id).await,
        set(&["lockout-on"])
    );
    assert_eq!(
        ids(db, audit_events::Entity, audit_events::Column::Id).await,
        set(&["audit-89d", "audit-today"])
    );
    assert_eq!(
        ids(db, mail_outbox::Entity, mail_outbox::Column::Id).await,
        set(&["mail-6d"])
    );
}

async fn removes_exactly_the_expired_rows(backend: Backend) {
    let Some(db) = test_db(backend).await else {
        return;
    };
    let (expected, dead_family, live_family) = seed(&db.db).await;
    assert_eq!(
        ids(&db.db, refresh_tokens::Entity, refresh_tokens::Column::Id).await,
        dead_family.iter().chain(&live_family).cloned().collect()
    );
    let report = janitor::run_once(&db.db, NOW, &settings(500))
        .await
        .unwrap();
    assert_eq!(report, expected);
    assert_eq!(report.total(), 14);
    assert_only_live_rows_left(&db.db, &live_family).await;
    // Again: nothing left to do, nothing else goes.
    let again = janitor::run_once(&db.db, NOW, &settings(500))
        .await
        .unwrap();
    assert_eq!(again, Report::default());
    assert_only_live_rows_left(&db.db, &live_family).await;
    db.cleanup().await;
}

both!(removes_exactly_the_expired_rows => run_once_removes_exactly_the_expired_rows_sqlite, run_once_removes_exactly_the_expired_rows_postgres);

async fn batches_remove_every_expired_row(backend: Backend) {
    let Some(db) = test_db(backend).await else {
        return;
    };
    // 5 rows in batches of 2 (2 + 2 + 1), of 5 (5 + 0) and of 1.
    for (round, batch_size) in [2, 5, 1].into_iter().enumerate() {
        for i in 0..5 {
            session(&db.db, &format!("s{round}-expired-{i}"), NOW - 1 - i).await;
        }
        session(&db.db, &format!("s{round}-live"), NOW + 60).await;
        let report = janitor::run_once(&db.db, NOW, &settings(batch_size))
            .await
            .unwrap();
        assert_eq!(
            report,
            Report {
                login_sessions: 5,
                ..Report::default()
            },
            "batch size {batch_size}"
        );
        let left = ids(&db.db, login_sessions::Entity, login_sessions::Column::Id).await;
        assert!(
            left.iter().all(|id| id.ends_with("-live")),
            "batch size {batch_size}: {left:?}"
        );
        assert_eq!(left.len(), round + 1);
    }
    db.cleanup().await;
}

both!(batches_remove_every_expired_row => run_once_in_batches_of_2_removes_all_5_expired_rows_sqlite, run_once_in_batches_of_2_removes_all_5_expired_rows_postgres);

async fn concurrent_runs_share_the_work(backend: Backend) {
    let Some(db) = test_db(backend).await else {
        return;
    };
    const EXPIRED: usize = 120;
    let (mut expected, _, live_family) = seed(&db.db).await;
    // Many more rows than one batch, in two tables.
    let sessions: Vec<_> = (0..EXPIRED)
        .map(|i| login_sessions::ActiveModel {
            id: Set(format!("bulk-session-{i}")),
            session_hash: Set(format!("bulk-hash-{i}")),
            user_id: Set(None),
            csrf_token: Set("csrf".into()),
            created_at: Set(NOW - 7200),
            expires_at: Set(NOW - 3600),
            authenticated_at: Set(None),
        })
        .collect();
    login_sessions::Entity::insert_many(sessions)
        .exec(&db.db)
        .await
        .unwrap();
    let events: Vec<_> = (0..EXPIRED)
        .map(|i| audit_events::ActiveModel {
            id: Set(format!("bulk-audit-{i}")),
            at: Set(NOW - 100 * DAY),
            kind: Set("login_failed".into()),
            user_id: Set(None),
            client_id: Set(None),
            detail: Set("{}".into()),
        })
        .collect();
    audit_events::Entity::insert_many(events)
        .exec(&db.db)
        .await
        .unwrap();
    expected.login_sessions += EXPIRED as u64;
    expected.audit_events += EXPIRED as u64;

    let runs: Vec<_> = (0..2)
        .map(|_| {
            let db = db.db.clone();
            tokio::spawn(async move { janitor::run_once(&db, NOW, &settings(7)).await })
        })
        .collect();
    let mut sum = Report::default();
    for run in runs {
        let report = run
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("a concurrent run failed: {e}"));
        for (total, part) in [
            (&mut sum.authorization_codes, report.authorization_codes),
            (&mut sum.refresh_tokens, report.refresh_tokens),
            (&mut sum.login_sessions, report.login_sessions),
            (
                &mut sum.pending_authorizations,
                report.pending_authorizations,
            ),
            (&mut sum.password_reset_tokens, report.password_reset_tokens),
            (&mut sum.lockouts, report.lockouts),
            (&mut sum.audit_events, report.audit_events),
            (&mut sum.mail_outbox, report.mail_outbox),
        ] {
            *total += part;
        }
    }
    assert_eq!(
        sum, expected,
        "the two reports together count each expired row once"
    );
    assert_only_live_rows_left(&db.db, &live_family).await;
    db.cleanup().await;
}

both!(concurrent_runs_share_the_work => two_concurrent_runs_succeed_and_delete_each_row_once_sqlite, two_concurrent_runs_succeed_and_delete_each_row_once_postgres);

async fn audit_retention_boundary(backend: Backend) {
    let Some(db) = test_db(backend).await else {
        return;
    };
    audit(&db.db, "89d", NOW - 89 * DAY).await;
    audit(&db.db, "90d", NOW - 90 * DAY).await;
    audit(&db.db, "90d+1s", NOW - 90 * DAY - 1).await;
    audit(&db.db, "91d", NOW - 91 * DAY).await;
    let report = janitor::run_once(&db.db, NOW, &settings(500))
        .await
        .unwrap();
    assert_eq!(report.audit_events, 2);
    assert_eq!(
        ids(&db.db, audit_events::Entity, audit_events::Column::Id).await,
        set(&["89d", "90d"])
    );
    // AUDIT_RETENTION_DAYS=1 keeps a day.
    let one_day = JanitorSettings {
        audit_retention_days: 1,
        ..settings(500)
    };
    audit(&db.db, "23h", NOW - 23 * 3600).await;
    let report = janitor::run_once(&db.db, NOW, &one_day).await.unwrap();
    assert_eq!(report.audit_events, 2);
    assert_eq!(
        ids(&db.db, audit_events::Entity, audit_events::Column::Id).await,
        set(&["23h"])
    );
    db.cleanup().await;
}

both!(audit_retention_boundary => audit_retention_keeps_89_days_and_removes_91_days_sqlite, audit_retention_keeps_89_days_and_removes_91_days_postgres);

/// Waits until `check` holds, at most `within`.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn session_ids(db: &DatabaseConnection) -> BTreeSet<String> {
    ids(db, login_sessions::Entity, login_sessions::Column::Id).await
}

/// The server's janitor (every second here): it reads the app's clock, a
/// failing run (its first table gone) does not stop it, and it stops with
/// the server.
async fn server_janitor_runs_on_app_clock(backend: Backend) {
    let Some(app) = spawn_app(
        backend,
        AppOptions {
            janitor_interval_secs: 1,
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let db = app.db.db.clone();
    // Every run fails while the first table it cleans is missing.
    db.execute_unprepared("ALTER TABLE authorization_codes RENAME TO codes_away")
        .await
        .unwrap();
    // Live by the wall clock; expired once the app's clock moves.
    let now = app.clock.now();
    session(&db, "by-app-clock", now + 100).await;
    session(&db, "live", now + 10_000).await;
    app.clock.advance(200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        session_ids(&db).await.contains("by-app-clock"),
        "a run got past the missing table"
    );
    db.execute_unprepared("ALTER TABLE codes_away RENAME TO authorization_codes")
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            !session_ids(&db).await.contains("by-app-clock")
        })
        .await,
        "the janitor did not run again after a failed run"
    );
    assert!(session_ids(&db).await.contains("live"));
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    // Stopped with the server.
    app.stop_server().await;
    session(&db, "after-stop", now).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        session_ids(&db).await.contains("after-stop"),
        "the janitor outlived the server"
    );
    app.stop().await;
}

both!(server_janitor_runs_on_app_clock => server_janitor_uses_app_clock_survives_failures_and_stops_with_server_sqlite, server_janitor_uses_app_clock_survives_failures_and_stops_with_server_postgres);
