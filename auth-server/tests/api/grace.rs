//! Graceful refresh rotation: a retried or parallel refresh inside the
//! client's window gets the same successor; anything else is reuse.

use futures::future::join_all;
use serde_json::Value;

use crate::helpers::{AppOptions, Backend, TestApp, TestClient, both, spawn_app};

const GRACE: i64 = 30;

async fn app(backend: Backend, max_replays: i64) -> Option<(TestApp, TestClient)> {
    let app = spawn_app(
        backend,
        AppOptions {
            refresh_grace_secs: 0,
            refresh_grace_max_replays: max_replays,
            ..AppOptions::default()
        },
    )
    .await?;
    let client = app.client(true, Some(GRACE)).await;
    Some((app, client))
}

fn refresh_token(body: &Value) -> String {
    body["refresh_token"].as_str().unwrap().to_owned()
}

async fn lost_response_retry(backend: Backend) {
    let Some((app, client)) = app(backend, 3).await else {
        return;
    };
    let first = refresh_token(&app.tokens_for(&client).await);
    let (status, lost) = app.refresh(&client, &first).await;
    assert_eq!(status, 200, "{lost}");
    // The response was lost: the app retries with the token it still has.
    app.clock.advance(GRACE - 1);
    let (status, retried) = app.refresh(&client, &first).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(
        refresh_token(&retried),
        refresh_token(&lost),
        "the same successor"
    );
    assert_ne!(
        retried["access_token"], lost["access_token"],
        "a fresh access token"
    );
    let (status, next) = app.refresh(&client, &refresh_token(&retried)).await;
    assert_eq!(status, 200, "the family is intact: {next}");
    app.stop().await;
}
both!(lost_response_retry => grace_returns_same_successor_when_response_was_lost_sqlite, grace_returns_same_successor_when_response_was_lost_postgres);

async fn parallel_refreshes(backend: Backend) {
    let Some((app, client)) = app(backend, 20).await else {
        return;
    };
    let first = refresh_token(&app.tokens_for(&client).await);
    let answers = join_all((0..20).map(|_| app.refresh(&client, &first))).await;
    let successors: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            refresh_token(body)
        })
        .collect();
    assert_eq!(
        successors.len(),
        1,
        "every response carries the same successor"
    );
    let successor = successors.into_iter().next().unwrap();
    let (status, body) = app.refresh(&client, &successor).await;
    assert_eq!(status, 200, "the successor works afterwards: {body}");
    app.stop().await;
}
both!(parallel_refreshes => grace_gives_20_parallel_refreshes_one_successor_sqlite, grace_gives_20_parallel_refreshes_one_successor_postgres);

async fn replay_after_window(backend: Backend) {
    let Some((app, client)) = app(backend, 3).await else {
        return;
    };
    let first = refresh_token(&app.tokens_for(&client).await);
    let (_, rotated) = app.refresh(&client, &first).await;
    app.clock.advance(GRACE + 1);
    let (status, body) = app.refresh(&client, &first).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = app.refresh(&client, &refresh_token(&rotated)).await;
    assert_eq!(status, 400, "reuse revoked the family");
    app.stop().await;
}
both!(replay_after_window => grace_revokes_family_when_replayed_after_window_sqlite, grace_revokes_family_when_replayed_after_window_postgres);

async fn replay_beyond_count(backend: Backend) {
    let Some((app, client)) = app(backend, 3).await else {
        return;
    };
    let first = refresh_token(&app.tokens_for(&client).await);
    let (_, rotated) = app.refresh(&client, &first).await;
    // Replays come later than the rotation (not duplicates on their way).
    app.clock.advance(1);
    for _ in 0..3 {
        let (status, _) = app.refresh(&client, &first).await;
        assert_eq!(status, 200);
    }
    let (status, _) = app.refresh(&client, &first).await;
    assert_eq!(status, 400, "the fourth replay is reuse");
    let (status, _) = app.refresh(&client, &refresh_token(&rotated)).await;
    assert_eq!(status, 400, "reuse revoked the family");
    app.stop().await;
}
both!(replay_beyond_count => grace_revokes_family_when_replays_exceed_count_sqlite, grace_revokes_family_when_replays_exceed_count_postgres);

async fn replay_by_other_client(backend: Backend) {
    let Some((app, client)) = app(backend, 3).await else {
        return;
    };
    let thief = app.client(true, Some(GRACE)).await;
    let first = refresh_token(&app.tokens_for(&client).await);
    let (_, rotated) = app.refresh(&client, &first).await;
    let (status, _) = app.refresh(&thief, &first).await;
    assert_eq!(status, 400, "another client's replay is refused");
    let (status, _) = app.refresh(&client, &refresh_token(&rotated)).await;
    assert_eq!(
        status, 400,
        "a rotated token in another client's hands is reuse"
    );
    app.stop().await;
}
both!(replay_by_other_client => grace_refuses_replay_when_presented_by_other_client_sqlite, grace_refuses_replay_when_presented_by_other_client_postgres);

async fn replay_after_successor_used(backend: Backend) {
    let Some((app, client)) = app(backend, 3).await else {
        return;
    };
    let first = refresh_token(&app.tokens_for(&client).await);
    let (_, second) = app.refresh(&client, &first).await;
    let (status, third) = app.refresh(&client, &refresh_token(&second)).await;
    assert_eq!(status, 200);
    app.clock.advance(1);
    let (status, _) = app.refresh(&client, &first).await;
    assert_eq!(
        status, 400,
        "once the successor is used, its predecessor is dead"
    );
    let (status, _) = app.refresh(&client, &refresh_token(&third)).await;
    assert_eq!(status, 400, "and replaying it revoked the family");
    app.stop().await;
}
both!(replay_after_successor_used => grace_refuses_predecessor_when_successor_was_used_sqlite, grace_refuses_predecessor_when_successor_was_used_postgres);

/// A refresh request whose head has reached the server (which took its
/// arrival time) but whose body has not: it waits until `finish`.
struct StalledRefresh {
    socket: tokio::net::TcpStream,
    rest: Vec<u8>,
}

impl StalledRefresh {
    async fn start(app: &TestApp, client: &TestClient, token: &str) -> Self {
        use tokio::io::AsyncWriteExt;
        let body = format!(
            "grant_type=refresh_token&client_id={}&refresh_token={token}",
            client.id
        );
        let mut socket = tokio::net::TcpStream::connect(app.address).await.unwrap();
        let head = format!(
            "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&body.as_bytes()[..10]).await.unwrap();
        // Let the server take the request in (and read its arrival time).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        Self {
            socket,
            rest: body.as_bytes()[10..].to_vec(),
        }
    }

    /// Sends the rest of the body; the raw answer.
    async fn finish(mut self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.socket.write_all(&self.rest).await.unwrap();
        let mut answer = String::new();
        self.socket.read_to_string(&mut answer).await.unwrap();
        answer
    }
}

/// A refresh that was already on its way when the token rotated (the twin
/// of a retry, stalled while the client moved on) is refused without
/// touching the family; the same token presented after the rotation is
/// reuse.
async fn stale_duplicate(backend: Backend) {
    let Some((app, client)) = app(backend, 3).await else {
        return;
    };
    let first = refresh_token(&app.tokens_for(&client).await);
    // The stale twin: its head arrives now, its body only at the end.
    let twin = StalledRefresh::start(&app, &client, &first).await;
    app.clock.advance(5);
    let (status, second) = app.refresh(&client, &first).await;
    assert_eq!(status, 200);
    let (status, third) = app.refresh(&client, &refresh_token(&second)).await;
    assert_eq!(status, 200, "the client moved on");
    let answer = twin.finish().await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let (status, body) = app.refresh(&client, &refresh_token(&third)).await;
    assert_eq!(status, 200, "the stale twin left the family alone: {body}");
    // The same old token presented now, after the rotation, is reuse.
    app.clock.advance(1);
    let (status, _) = app.refresh(&client, &first).await;
    assert_eq!(status, 400);
    let (status, _) = app.refresh(&client, &refresh_token(&body)).await;
    assert_eq!(status, 400, "reuse revoked the family");
    app.stop().await;
}
both!(stale_duplicate => grace_refuses_stale_duplicate_without_revoking_family_sqlite, grace_refuses_stale_duplicate_without_revoking_family_postgres);

/// A grace replay that arrived while the successor was still unused, but was
/// served only after the client had used the successor, is refused without
/// revoking; the same replay arriving after that use is reuse.
async fn replay_stalled_past_successor_use(backend: Backend) {
    let Some((app, client)) = app(backend, 3).await else {
        return;
    };
    let first = refresh_token(&app.tokens_for(&client).await);
    let (status, second) = app.refresh(&client, &first).await;
    assert_eq!(status, 200);
    // A retry of `first`, inside the window, arrives and stalls.
    app.clock.advance(2);
    let twin = StalledRefresh::start(&app, &client, &first).await;
    // Meanwhile the client uses the successor.
    app.clock.advance(1);
    let (status, third) = app.refresh(&client, &refresh_token(&second)).await;
    assert_eq!(status, 200);
    let answer = twin.finish().await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let (status, fourth) = app.refresh(&client, &refresh_token(&third)).await;
    assert_eq!(
        status, 200,
        "the stalled replay left the family alone: {fourth}"
    );
    // The same replay arriving after the successor's use is reuse.
    app.clock.advance(1);
    let (status, _) = app.refresh(&client, &first).await;
    assert_eq!(status, 400);
    let (status, _) = app.refresh(&client, &refresh_token(&fourth)).await;
    assert_eq!(status, 400, "reuse revoked the family");
    app.stop().await;
}
both!(replay_stalled_past_successor_use => grace_refuses_replay_stalled_past_successor_use_without_revoking_sqlite, grace_refuses_replay_stalled_past_successor_use_without_revoking_postgres);
