//! The janitor: deletes rows that can no longer matter, in small batches
//! with a pause between them, so that it never holds long locks or starves
//! requests of connections.
//!
//! Every table is cleaned by repeating
//! `DELETE FROM t WHERE <dead> AND id IN (SELECT id FROM t WHERE <dead> LIMIT n)`
//! until a batch deletes fewer than `n` rows. The condition is checked again
//! by the DELETE itself, on the row it deletes: a row that came back to life
//! between the sub-select and the delete (a lockout extended by a new
//! failure) stays, on PostgreSQL (which re-checks the outer condition on the
//! latest row version) as on SQLite (which runs writes one at a time). So
//! several instances may run the janitor at once: each deletes only dead
//! rows, and a row deleted by one is simply not counted by the other.
//!
//! The server runs it every `JANITOR_INTERVAL_SECS` (the first run after a
//! random part of the interval, so that instances do not run in lock-step);
//! `auth-server janitor run --once` runs one pass, e.g. from cron.

use std::time::Duration;

use sea_orm::sea_query::Condition;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, DeleteMany, EntityTrait, QueryFilter, QuerySelect,
    QueryTrait,
};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::state::AppState;
use crate::store::codes::REPLAY_WINDOW_SECS;
use crate::store::entities::{
    audit_events, authorization_codes, lockouts, login_sessions, mail_outbox,
    password_reset_tokens, pending_authorizations, refresh_tokens,
};

/// Default of `JANITOR_INTERVAL_SECS` (0 = no periodic runs).
pub const DEFAULT_INTERVAL_SECS: u64 = 600;
/// Default of `JANITOR_BATCH_SIZE`.
pub const DEFAULT_BATCH_SIZE: u64 = 500;
/// Largest `JANITOR_BATCH_SIZE`.
pub const MAX_BATCH_SIZE: u64 = 10_000;
/// Default of `JANITOR_PAUSE_MS`.
pub const DEFAULT_PAUSE_MS: u64 = 50;
/// Largest `JANITOR_PAUSE_MS`.
pub const MAX_PAUSE_MS: u64 = 60_000;
/// Default of `AUDIT_RETENTION_DAYS`.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u64 = 90;
/// How long the dev mail outbox keeps a message.
pub const OUTBOX_RETENTION_SECS: i64 = 7 * DAY;

const DAY: i64 = 86_400;

/// What one pass needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JanitorSettings {
    /// Rows per DELETE (1 to [`MAX_BATCH_SIZE`]).
    pub batch_size: u64,
    /// Sleep between two batches of one table.
    pub pause: Duration,
    /// Audit events older than this many days go (at least 1).
    pub audit_retention_days: u64,
}

impl From<&Settings> for JanitorSettings {
    /// The settings' values, brought into range (`Settings::validate`
    /// refuses values out of range; settings built in code skip it).
    fn from(settings: &Settings) -> Self {
        Self {
            batch_size: settings.janitor_batch_size.clamp(1, MAX_BATCH_SIZE),
            pause: Duration::from_millis(settings.janitor_pause_ms.min(MAX_PAUSE_MS)),
            audit_retention_days: settings.audit_retention_days.max(1),
        }
    }
}

/// Rows deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub authorization_codes: u64,
    pub refresh_tokens: u64,
    pub login_sessions: u64,
    pub pending_authorizations: u64,
    pub password_reset_tokens: u64,
    pub lockouts: u64,
    pub audit_events: u64,
    pub mail_outbox: u64,
}

impl Report {
    pub fn total(&self) -> u64 {
        self.counts().iter().map(|(_, n)| n).sum()
    }

    /// (table, rows deleted), in the order the tables are cleaned.
    pub fn counts(&self) -> [(&'static str, u64); 8] {
        [
            ("authorization_codes", self.authorization_codes),
            ("refresh_tokens", self.refresh_tokens),
            ("login_sessions", self.login_sessions),
            ("pending_authorizations", self.pending_authorizations),
            ("password_reset_tokens", self.password_reset_tokens),
            ("lockouts", self.lockouts),
            ("audit_events", self.audit_events),
            ("mail_outbox", self.mail_outbox),
        ]
    }
}

impl std::fmt::Display for Report {
    /// `removed 12 rows (authorization_codes 3, refresh_tokens 9, …)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "removed {} rows (", self.total())?;
        for (i, (table, n)) in self.counts().iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{table} {n}")?;
        }
        write!(f, ")")
    }
}

/// One pass over every table, with `now` in Unix seconds. Stops at the
/// first failing statement; what was deleted before it stays deleted.
pub async fn run_once(
    db: &DatabaseConnection,
    now: i64,
    settings: &JanitorSettings,
) -> Result<Report, DbErr> {
    let batches = Batches { db, settings };
    let audit_cutoff = now.saturating_sub(
        i64::try_from(settings.audit_retention_days)
            .unwrap_or(i64::MAX)
            .saturating_mul(DAY),
    );
    Ok(Report {
        authorization_codes: batches
            .purge(
                authorization_codes::Entity,
                authorization_codes::Column::Id,
                dead_codes(now),
            )
            .await?,
        refresh_tokens: batches
            .purge(
                refresh_tokens::Entity,
                refresh_tokens::Column::Id,
                Condition::all().add(refresh_tokens::Column::ExpiresAt.lt(now)),
            )
            .await?,
        login_sessions: batches
            .purge(
                login_sessions::Entity,
                login_sessions::Column::Id,
                Condition::all().add(login_sessions::Column::ExpiresAt.lt(now)),
            )
            .await?,
        pending_authorizations: batches
            .purge(
                pending_authorizations::Entity,
                pending_authorizations::Column::Id,
                Condition::all().add(pending_authorizations::Column::ExpiresAt.lt(now)),
            )
            .await?,
        password_reset_tokens: batches
            .purge(
                password_reset_tokens::Entity,
                password_reset_tokens::Column::Id,
                Condition::all().add(password_reset_tokens::Column::ExpiresAt.lt(now)),
            )
            .await?,
        lockouts: batches
            .purge(
                lockouts::Entity,
                lockouts::Column::Id,
                Condition::all().add(lockouts::Column::LockedUntil.lt(now)),
            )
            .await?,
        audit_events: batches
            .purge(
                audit_events::Entity,
                audit_events::Column::Id,
                Condition::all().add(audit_events::Column::At.lt(audit_cutoff)),
            )
            .await?,
        mail_outbox: batches
            .purge(
                mail_outbox::Entity,
                mail_outbox::Column::Id,
                Condition::all().add(
                    mail_outbox::Column::CreatedAt.lt(now.saturating_sub(OUTBOX_RETENTION_SECS)),
                ),
            )
            .await?,
    })
}

/// Codes past their expiry. A code that was used stays for
/// [`REPLAY_WINDOW_SECS`] more: presenting it again revokes what it bought
/// (RFC 6749 §4.1.2), which needs the row. An unused expired code can only
/// ever be refused, with or without its row.
fn dead_codes(now: i64) -> Condition {
    Condition::all()
        .add(authorization_codes::Column::ExpiresAt.lt(now))
        .add(
            Condition::any()
                .add(authorization_codes::Column::UsedAt.is_null())
                .add(
                    authorization_codes::Column::ExpiresAt
                        .lt(now.saturating_sub(REPLAY_WINDOW_SECS)),
                ),
        )
}

struct Batches<'a> {
    db: &'a DatabaseConnection,
    settings: &'a JanitorSettings,
}

impl Batches<'_> {
    /// Deletes the rows of `entity` that match `dead`, batch by batch;
    /// returns how many this call deleted.
    async fn purge<E: EntityTrait>(
        &self,
        entity: E,
        id: E::Column,
        dead: Condition,
    ) -> Result<u64, DbErr> {
        let size = self.settings.batch_size.max(1);
        let mut deleted = 0;
        loop {
            let done = batch_delete::<E>(id, &dead, size)
                .exec(self.db)
                .await?
                .rows_affected;
            deleted += done;
            if done < size {
                tracing::trace!(table = entity.table_name(), deleted, "janitor: table done");
                return Ok(deleted);
            }
            tokio::time::sleep(self.settings.pause).await;
        }
    }
}

/// `DELETE FROM t WHERE <dead> AND id IN (SELECT id FROM t WHERE <dead> LIMIT size)`:
/// the condition is checked again on the row being deleted (see the module doc).
fn batch_delete<E: EntityTrait>(id: E::Column, dead: &Condition, size: u64) -> DeleteMany<E> {
    let batch = E::find()
        .select_only()
        .column(id)
        .filter(dead.clone())
        .limit(size)
        .into_query();
    E::delete_many()
        .filter(dead.clone())
        .filter(id.in_subquery(batch))
}

/// The periodic janitor of a running server; stops when dropped.
pub struct Janitor(Option<JoinHandle<()>>);

impl Janitor {
    /// Stops the task and waits until it has let go of its connection.
    pub async fn stop(mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Starts the periodic janitor, unless `JANITOR_INTERVAL_SECS` is 0 (None).
/// Call it inside the runtime that serves.
pub fn spawn(state: AppState) -> Option<Janitor> {
    let interval = Duration::from_secs(state.settings.janitor_interval_secs);
    if interval.is_zero() {
        tracing::info!("janitor: periodic runs are off (JANITOR_INTERVAL_SECS=0)");
        return None;
    }
    let settings = JanitorSettings::from(&state.settings);
    let first = first_delay(interval, uuid::Uuid::new_v4().as_u128());
    Some(Janitor(Some(tokio::spawn(run_periodically(
        state, interval, first, settings,
    )))))
}

/// A delay in [0, interval), from `random`.
fn first_delay(interval: Duration, random: u128) -> Duration {
    let millis = interval.as_millis();
    if millis == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(u64::try_from(random % millis).unwrap_or(0))
}

async fn run_periodically(
    state: AppState,
    interval: Duration,
    first: Duration,
    settings: JanitorSettings,
) {
    tokio::time::sleep(first).await;
    loop {
        run_and_log(&state.db, state.now(), &settings).await;
        tokio::time::sleep(interval).await;
    }
}

/// One pass, logged: one info line when it removed anything, a debug line
/// when not, a warning when it failed (the next run tries again).
pub async fn run_and_log(
    db: &DatabaseConnection,
    now: i64,
    settings: &JanitorSettings,
) -> Option<Report> {
    match run_once(db, now, settings).await {
        Ok(report) if report.total() > 0 => {
            tracing::info!(
                total = report.total(),
                authorization_codes = report.authorization_codes,
                refresh_tokens = report.refresh_tokens,
                login_sessions = report.login_sessions,
                pending_authorizations = report.pending_authorizations,
                password_reset_tokens = report.password_reset_tokens,
                lockouts = report.lockouts,
                audit_events = report.audit_events,
                mail_outbox = report.mail_outbox,
                "janitor: removed expired rows"
            );
            Some(report)
        }
        Ok(report) => {
            tracing::debug!("janitor: nothing to remove");
            Some(report)
        }
        Err(error) => {
            tracing::warn!(
                error = %error,
                unavailable = migrations::db::is_unavailable(&error),
                "janitor: run failed; trying again at the next interval"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_delay_stays_below_the_interval() {
        let interval = Duration::from_secs(600);
        for random in [0, 1, 599_999, 600_000, 1_234_567_890, u128::MAX] {
            assert!(first_delay(interval, random) < interval, "{random}");
        }
        assert_eq!(first_delay(interval, 600_001), Duration::from_millis(1));
        assert_eq!(first_delay(Duration::ZERO, 42), Duration::ZERO);
    }

    #[test]
    fn report_total_sums_every_table_and_display_names_them() {
        let report = Report {
            authorization_codes: 1,
            refresh_tokens: 2,
            login_sessions: 3,
            pending_authorizations: 4,
            password_reset_tokens: 5,
            lockouts: 6,
            audit_events: 7,
            mail_outbox: 8,
        };
        assert_eq!(report.total(), 36);
        let text = report.to_string();
        assert!(text.starts_with("removed 36 rows (authorization_codes 1, "));
        assert!(text.ends_with("mail_outbox 8)"));
    }

    #[test]
    fn batch_delete_rechecks_the_condition_on_both_backends() {
        let dead = Condition::all().add(lockouts::Column::LockedUntil.lt(1000));
        let delete = batch_delete::<lockouts::Entity>(lockouts::Column::Id, &dead, 500);
        assert_eq!(
            delete.build(sea_orm::DbBackend::Postgres).sql,
            r#"DELETE FROM "lockouts" WHERE "lockouts"."locked_until" < $1 AND "lockouts"."id" IN (SELECT "lockouts"."id" FROM "lockouts" WHERE "lockouts"."locked_until" < $2 LIMIT $3)"#
        );
        assert_eq!(
            delete.build(sea_orm::DbBackend::Sqlite).to_string(),
            r#"DELETE FROM "lockouts" WHERE "lockouts"."locked_until" < 1000 AND "lockouts"."id" IN (SELECT "lockouts"."id" FROM "lockouts" WHERE "lockouts"."locked_until" < 1000 LIMIT 500)"#
        );
    }

    #[test]
    fn settings_refuse_janitor_values_out_of_range() {
        let defaults = Settings::default();
        assert_eq!(
            defaults.janitor().unwrap(),
            JanitorSettings {
                batch_size: 500,
                pause: Duration::from_millis(50),
                audit_retention_days: 90,
            }
        );
        assert_eq!(defaults.janitor_interval_secs, 600);
        for (bad, mentions) in [
            (
                Settings {
                    janitor_batch_size: 0,
                    ..Settings::default()
                },
                "JANITOR_BATCH_SIZE",
            ),
            (
                Settings {
                    janitor_batch_size: MAX_BATCH_SIZE + 1,
                    ..Settings::default()
                },
                "JANITOR_BATCH_SIZE",
            ),
            (
                Settings {
                    janitor_pause_ms: MAX_PAUSE_MS + 1,
                    ..Settings::default()
                },
                "JANITOR_PAUSE_MS",
            ),
            (
                Settings {
                    audit_retention_days: 0,
                    ..Settings::default()
                },
                "AUDIT_RETENTION_DAYS",
            ),
        ] {
            let error = bad.validate().unwrap_err().to_string();
            assert!(error.contains(mentions), "{error}");
        }
        let off = Settings {
            janitor_interval_secs: 0,
            janitor_batch_size: MAX_BATCH_SIZE,
            audit_retention_days: 1,
            ..Settings::default()
        };
        assert!(off.validate().is_ok());
    }

    #[test]
    fn janitor_settings_bring_values_into_range() {
        let settings = Settings {
            janitor_batch_size: 0,
            janitor_pause_ms: u64::MAX,
            audit_retention_days: 0,
            ..Settings::default()
        };
        let janitor = JanitorSettings::from(&settings);
        assert_eq!(janitor.batch_size, 1);
        assert_eq!(janitor.pause, Duration::from_millis(MAX_PAUSE_MS));
        assert_eq!(janitor.audit_retention_days, 1);
    }
}
