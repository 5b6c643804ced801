//! Cancellation safety: clients that hang up mid-request leave no
//! transaction open on a pooled PostgreSQL connection, and the server keeps
//! serving fresh flows.

use std::time::Duration;

use futures::future::join_all;
use migrations::sea_orm::{ConnectionTrait, Database, Statement};

use crate::helpers::{AppOptions, Backend, REDIRECT, spawn_app};

/// Requests sent, each abandoned after 0.2 to 12 ms.
const ROUNDS: u64 = 300;

/// This server's connections `idle in transaction` right now.
async fn idle_in_transaction(admin_url: &str, application_name: &str) -> i64 {
    let admin = Database::connect(admin_url).await.unwrap();
    let row = admin
        .query_one(Statement::from_sql_and_values(
            admin.get_database_backend(),
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
            [application_name.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get("", "n").unwrap();
    admin.close().await.unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_mid_token_leave_no_transaction_open_postgres() {
    let Some(app) = spawn_app(Backend::Postgres, AppOptions::default()).await else {
        return;
    };
    let client = app.client(false, None).await;
    let verifier = "v".repeat(43);
    let mut work = Vec::new();
    for round in 0..ROUNDS {
        // Half code exchanges, half refreshes; each client gives up after a
        // few hundred microseconds to a few milliseconds.
        let mut form = client.form();
        if round % 2 == 0 {
            let code = app.code(&client, &verifier, true).await;
            form.extend([
                ("grant_type", "authorization_code".to_owned()),
                ("code", code),
                ("redirect_uri", REDIRECT.to_owned()),
                ("code_verifier", verifier.clone()),
            ]);
        } else {
            let tokens = app.tokens_for(&client).await;
            form.extend([
                ("grant_type", "refresh_token".to_owned()),
                (
                    "refresh_token",
                    tokens["refresh_token"].as_str().unwrap().to_owned(),
                ),
            ]);
        }
        let request = app.http.post(app.url("/token")).form(&form).send();
        let patience = Duration::from_micros(200 + (round * 7919) % 12_000);
        work.push(async move {
            let _ = tokio::time::timeout(patience, request).await;
        });
    }
    join_all(work).await;
    let (admin_url, name) = (
        app.db.admin_url().unwrap().to_owned(),
        app.db.application_name().unwrap().to_owned(),
    );
    // Work in flight finishes on its own; a leaked transaction never does.
    let mut open = -1;
    for _ in 0..50 {
        open = idle_in_transaction(&admin_url, &name).await;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(open, 0, "connections left idle in transaction");
    // Fresh flows work: a code exchange and a refresh.
    let tokens = app.tokens_for(&client).await;
    let (status, body) = app
        .refresh(&client, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}
