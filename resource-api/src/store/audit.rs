//! Security events of the resource API, appended to the `audit_events`
//! table the auth server keeps (same database, same shape): so far
//! `suspicious_input` (`shared::search::AUDIT_KIND`).
//!
//! The failure policy is the auth server's (`auth-server/src/audit.rs`):
//! the event is about something already decided (a refused request), so a
//! failed write never changes the answer. A write that fails for want of the
//! database is tried again ([`RETRIES`] times, after a short pause); one
//! that still fails is logged and counted ([`failures`], shown by
//! `/readyz` as `audit_failures`), never silently lost. The write runs in a
//! task of its own, so a client that goes away cannot cancel it halfway;
//! the request waits for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbErr, Set};

use super::entity::audit_event;
use crate::clock::Clock;

/// Further attempts after a write fails because the database is unavailable.
pub const RETRIES: u32 = 2;

static FAILURES: AtomicU64 = AtomicU64::new(0);

/// Audit events this process could not write since it started.
pub fn failures() -> u64 {
    FAILURES.load(Ordering::Relaxed)
}

/// One audit event to write. `detail` is JSON data and never holds a
/// secret; it is never logged.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static str,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub detail: serde_json::Value,
}

/// Writes one event (one attempt).
#[tracing::instrument(skip_all, fields(audit = event.kind))]
pub async fn insert<C: ConnectionTrait>(db: &C, event: &Event, at: i64) -> Result<(), DbErr> {
    audit_event::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        at: Set(at),
        kind: Set(event.kind.to_owned()),
        user_id: Set(event.user_id.clone()),
        client_id: Set(event.client_id.clone()),
        detail: Set(event.detail.to_string()),
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// Writes `event` under the failure policy of the module: in a task of its
/// own, retried while the database is unavailable, logged and counted when
/// it fails for good. Returns whether it was written.
pub async fn record(db: &DatabaseConnection, clock: &Clock, event: Event) -> bool {
    shared::metrics::security_event(event.kind, event.client_id.as_deref(), &event.detail);
    let db = db.clone();
    let at = clock.unix_seconds();
    let kind = event.kind;
    let user_id = event.user_id.clone().unwrap_or_else(|| "-".into());
    let client_id = event.client_id.clone().unwrap_or_else(|| "-".into());
    let task = tokio::spawn(async move {
        let mut attempt = 0;
        loop {
            match insert(&db, &event, at).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < RETRIES && migrations::db::is_unavailable(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(e) => return Err((attempt + 1, e)),
            }
        }
    });
    match task.await {
        Ok(Ok(())) => {
            tracing::info!(audit = kind, %user_id, %client_id, "audit event");
            true
        }
        Ok(Err((attempts, e))) => {
            FAILURES.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                audit = kind,
                attempts,
                error = %e,
                "writing audit event failed; the answer stands"
            );
            false
        }
        Err(e) => {
            FAILURES.fetch_add(1, Ordering::Relaxed);
            tracing::error!(audit = kind, error = %e, "audit write task failed");
            false
        }
    }
}
