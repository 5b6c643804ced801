//! The group-commit audit writer: one task owns a bounded channel of
//! events; [`AuditWriter::record`] hands an event over and waits for its
//! acknowledgement, while the task takes every waiting event (up to
//! [`MAX_BATCH`]) and writes them in one multi-row `INSERT`, a single
//! statement and so a single transaction, then acknowledges them all.
//!
//! Under load, events that arrive while a batch is being written make the
//! next batch: one transaction (one SQLite write lock, one round trip, one
//! hand-off to the driver's worker thread) serves many requests.
//!
//! - **Nothing answered is lost:** a request is answered only after its event
//!   was written (or counted as failed), as before.
//! - **Handed over means written:** once in the channel an event belongs to
//!   the task, so a request future dropped after the hand-over (a client
//!   that disconnected) does not lose it.
//! - **Bounded memory:** the channel holds at most [`CAPACITY`] events; when
//!   it is full `record` waits, for at most the hand-over deadline (the
//!   database acquire timeout, `DATABASE_ACQUIRE_TIMEOUT_MS`), after which
//!   the event counts as failed (see [`AuditWriter::record`]).
//! - **Drained at shutdown:** [`AuditWriter::shutdown`] closes the channel and
//!   writes what it still holds; an event recorded after that is written
//!   directly, with the same policy.
//! - **Queued with the hot writers on SQLite:** once given the service's
//!   [`Writer`] ([`AuditWriter::queue_behind`]), each batch waits for the
//!   writer's turn, in line with refresh rotations and code exchanges,
//!   instead of meeting them in SQLite's busy handler (which sleeps while
//!   the other side holds its turn). Waiting in line also lets the next
//!   batch grow. On PostgreSQL the turn is free.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use migrations::db::Writer;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::store::audit::{self as store, NewEvent};

/// Events written in one statement at most. Six bound values each: 384 per
/// statement, well under SQLite's (32,766) and PostgreSQL's (65,535) limits.
pub const MAX_BATCH: usize = 64;

/// Events waiting for the writer at most (a few KiB each at worst).
pub const CAPACITY: usize = 1024;

/// Scheduler turns a batch may wait for more events, while each turn brings
/// some: under load the batch grows; idle, the first turn brings none and
/// the batch is written at once.
pub const GATHER_TURNS: usize = 4;

/// Counters of the writer (`/readyz` reports failures through
/// `AppState::audit_failures`, the same counter).
#[derive(Debug, Default)]
pub struct Stats {
    /// Events that could not be written (logged each time).
    pub failures: Arc<AtomicU64>,
    /// Statements (transactions) that wrote events.
    pub batches: AtomicU64,
    /// Events written.
    pub written: AtomicU64,
    /// Attempts repeated because the database was unavailable.
    pub retries: AtomicU64,
}

struct Queued {
    event: NewEvent,
    /// None once nobody waits (written directly).
    ack: Option<oneshot::Sender<()>>,
}

/// The handle requests use; cheap to share through `AppState`.
pub struct AuditWriter {
    tx: mpsc::Sender<Queued>,
    db: DatabaseConnection,
    /// The service's writer, whose turn each batch takes (SQLite).
    turn: Arc<OnceLock<Writer>>,
    stats: Arc<Stats>,
    hand_over: Duration,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl AuditWriter {
    /// Starts the writer task on `db` (the audit pool). `failures` is the
    /// counter `/readyz` reports; `hand_over` how long `record` may wait for
    /// room in a full channel. Needs a tokio runtime.
    pub fn spawn(db: DatabaseConnection, failures: Arc<AtomicU64>, hand_over: Duration) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let (stop, stopped) = watch::channel(false);
        let stats = Arc::new(Stats {
            failures,
            ..Stats::default()
        });
        let turn = Arc::new(OnceLock::new());
        let task = tokio::spawn(run(db.clone(), turn.clone(), stats.clone(), rx, stopped));
        Self {
            tx,
            db,
            turn,
            stats,
            hand_over,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// From now on, each batch waits for `writer`'s turn (queued behind the
    /// hot-path writers on SQLite). The first writer given stays.
    pub fn queue_behind(&self, writer: &Writer) {
        if self.turn.get().is_none() {
            let _ = self.turn.set(writer.clone());
        }
    }

    /// Hands `event` to the writer and waits until it is written or counted
    /// as failed. Never fails the caller.
    ///
    /// A full channel means the database has fallen [`CAPACITY`] events
    /// behind. The caller then waits for room, as it would have waited for a
    /// connection of the audit pool before, and for as long as that wait
    /// was allowed (`DATABASE_ACQUIRE_TIMEOUT_MS`): past it the database is
    /// not keeping up, and holding the request longer would only pile up
    /// requests (and their memory) behind it, so the event is logged and
    /// counted as failed and the request goes on.
    pub async fn record(&self, event: NewEvent) {
        let (ack, acked) = oneshot::channel();
        let queued = Queued {
            event,
            ack: Some(ack),
        };
        match self.tx.send_timeout(queued, self.hand_over).await {
            Ok(()) => {
                // Err: the task is gone (a panic); it counted nothing.
                if acked.await.is_err() {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("the audit writer stopped; an audit event may be lost");
                }
            }
            Err(mpsc::error::SendTimeoutError::Timeout(queued)) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    audit = %queued.event.kind,
                    waited_ms = u64::try_from(self.hand_over.as_millis()).unwrap_or(u64::MAX),
                    "the audit writer is full; the event is not written, the action stands"
                );
            }
            // Shut down: write it here, with the same policy.
            Err(mpsc::error::SendTimeoutError::Closed(queued)) => {
                write(&self.db, self.turn.get(), &self.stats, vec![queued]).await;
            }
        }
    }

    /// Stops taking events and writes those still waiting; returns once
    /// they are written (or counted). Later events are written directly.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().await.take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the audit writer failed");
        }
    }
}

async fn run(
    db: DatabaseConnection,
    turn: Arc<OnceLock<Writer>>,
    stats: Arc<Stats>,
    mut rx: mpsc::Receiver<Queued>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = tokio::select! {
            biased;
            // Once stopping, every turn comes here: refuse new events (their
            // callers write them), take what is already queued; 0 when empty.
            () = async { drop(stopped.wait_for(|stop| *stop).await) } => {
                rx.close();
                rx.recv_many(&mut batch, MAX_BATCH).await
            }
            received = rx.recv_many(&mut batch, MAX_BATCH) => received,
        };
        if received == 0 {
            // Closed and empty.
            return;
        }
        // Let the requests already running on this runtime hand over their
        // events first: under load they join this batch at the cost of a
        // turn of the scheduler each, for as long as turns bring events (at
        // most GATHER_TURNS); idle, nothing else runs and one turn is spent.
        for _ in 0..GATHER_TURNS {
            if batch.len() >= MAX_BATCH {
                break;
            }
            tokio::task::yield_now().await;
            let before = batch.len();
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(queued) => batch.push(queued),
                    Err(_) => break,
                }
            }
            if batch.len() == before {
                break;
            }
        }
        write(&db, turn.get(), &stats, std::mem::take(&mut batch)).await;
        batch.reserve(MAX_BATCH);
    }
}

/// Writes `batch` in one statement, retrying while the database is
/// unavailable; a batch refused for another reason is written event by
/// event, so that one bad event does not take the others with it. Then
/// acknowledges every event.
async fn write(db: &DatabaseConnection, turn: Option<&Writer>, stats: &Stats, batch: Vec<Queued>) {
    let (events, acks): (Vec<NewEvent>, Vec<_>) =
        batch.into_iter().map(|q| (q.event, q.ack)).unzip();
    match insert(db, turn, stats, &events).await {
        Ok(()) => {}
        Err(_) if events.len() > 1 => {
            for event in &events {
                if let Err((e, attempts)) =
                    insert(db, turn, stats, std::slice::from_ref(event)).await
                {
                    failed(stats, event, &e, attempts);
                }
            }
        }
        Err((e, attempts)) => {
            for event in &events {
                failed(stats, event, &e, attempts);
            }
        }
    }
    for ack in acks.into_iter().flatten() {
        // Err: the request is gone; the event is written all the same.
        let _ = ack.send(());
    }
}

/// Err: the last error and how many attempts were made.
async fn insert(
    db: &DatabaseConnection,
    turn: Option<&Writer>,
    stats: &Stats,
    events: &[NewEvent],
) -> Result<(), (DbErr, u32)> {
    let mut attempt = 0;
    loop {
        let written = match turn {
            Some(writer) => match writer.permit().await {
                // Held until the statement is done.
                Ok(_permit) => store::record_many(db, events).await,
                Err(e) => Err(e),
            },
            None => store::record_many(db, events).await,
        };
        match written {
            Ok(()) => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.written.fetch_add(
                    u64::try_from(events.len()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                return Ok(());
            }
            Err(e) if attempt < super::RETRIES && migrations::db::is_unavailable(&e) => {
                attempt += 1;
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(e) => return Err((e, attempt + 1)),
        }
    }
}

fn failed(stats: &Stats, event: &NewEvent, error: &DbErr, attempts: u32) {
    stats.failures.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        audit = %event.kind,
        attempts,
        error = %error,
        "writing audit event failed; the action stands"
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::entities::audit_events;
    use futures::FutureExt;
    use migrations::test_support::TestDb;
    use sea_orm::{EntityTrait, PaginatorTrait};

    const HAND_OVER: Duration = Duration::from_secs(5);

    fn event(n: usize) -> NewEvent {
        NewEvent {
            kind: "test.event".into(),
            user_id: None,
            client_id: Some(format!("client-{n}")),
            detail: format!(r#"{{"n":{n}}}"#),
            at: 1_700_000_000,
        }
    }

    async fn rows(db: &DatabaseConnection) -> u64 {
        audit_events::Entity::find().count(db).await.unwrap()
    }

    fn writer(db: &TestDb) -> AuditWriter {
        AuditWriter::spawn(db.db.clone(), Arc::new(AtomicU64::new(0)), HAND_OVER)
    }

    /// 200 requests recording at once: every event lands, in far fewer
    /// statements than events.
    async fn concurrent_records_land_in_fewer_statements(db: TestDb) {
        let writer = writer(&db);
        futures::future::join_all((0..200).map(|n| writer.record(event(n)))).await;
        assert_eq!(rows(&db.db).await, 200);
        let stats = writer.stats();
        assert_eq!(stats.written.load(Ordering::Relaxed), 200);
        assert_eq!(stats.failures.load(Ordering::Relaxed), 0);
        let batches = stats.batches.load(Ordering::Relaxed);
        assert!(batches < 200, "{batches} statements for 200 events");
        writer.shutdown().await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn audit_writer_batches_concurrent_records_on_sqlite() {
        concurrent_records_land_in_fewer_statements(TestDb::sqlite().await).await;
    }

    test_gates::needs! { [postgres]
        #[tokio::test]
        async fn audit_writer_batches_concurrent_records_on_postgres() {
            migrations::test_support::require_postgres_url("audit writer on PostgreSQL");
            let db = TestDb::postgres("audit writer on PostgreSQL").await.unwrap();
            concurrent_records_land_in_fewer_statements(db).await;
        }
    }

    /// Queued behind the service's writer: while a hot-path writer holds
    /// its turn nothing is written; once it is given up, the batch is.
    #[tokio::test]
    async fn audit_writer_waits_for_the_writers_turn_on_sqlite() {
        let db = TestDb::sqlite().await;
        let writer = writer(&db);
        let turn = migrations::db::Writer::new(db.db.clone(), HAND_OVER);
        writer.queue_behind(&turn);
        let held = turn.permit().await.unwrap();
        let mut first = Box::pin(writer.record(event(1)));
        assert!((&mut first).now_or_never().is_none());
        // Time for the writer task to run, were it not waiting for the turn.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rows(&db.db).await, 0);
        drop(held);
        first.await;
        assert_eq!(rows(&db.db).await, 1);
        assert_eq!(writer.stats().failures.load(Ordering::Relaxed), 0);
        writer.shutdown().await;
        db.cleanup().await;
    }

    /// A request dropped (its client gone) after handing its event over:
    /// the event is written all the same.
    #[tokio::test]
    async fn audit_writer_writes_event_whose_request_was_dropped() {
        let db = TestDb::sqlite().await;
        let writer = writer(&db);
        // Polled once: handed over, then waiting for its acknowledgement,
        // when the future is dropped.
        assert!(writer.record(event(1)).now_or_never().is_none());
        // Events are written in order: once this one is, so is the first.
        writer.record(event(2)).await;
        assert_eq!(rows(&db.db).await, 2);
        assert_eq!(writer.stats().failures.load(Ordering::Relaxed), 0);
        db.cleanup().await;
    }

    /// Shutdown writes what is still queued, and an event recorded after
    /// it is written directly.
    #[tokio::test]
    async fn audit_writer_drains_queue_at_shutdown() {
        let db = TestDb::sqlite().await;
        let writer = writer(&db);
        for n in 0..10 {
            assert!(writer.record(event(n)).now_or_never().is_none());
        }
        writer.shutdown().await;
        assert_eq!(rows(&db.db).await, 10);
        writer.record(event(10)).await;
        assert_eq!(rows(&db.db).await, 11);
        assert_eq!(writer.stats().written.load(Ordering::Relaxed), 11);
        db.cleanup().await;
    }

    /// The database gone: the writer tries again, then counts the event as
    /// failed, and the caller goes on.
    #[tokio::test]
    async fn audit_writer_retries_then_counts_failure_when_database_unavailable() {
        let db = TestDb::sqlite().await;
        let closed = db.db.clone();
        closed.close().await.unwrap();
        let failures = Arc::new(AtomicU64::new(0));
        let writer = AuditWriter::spawn(db.db.clone(), failures.clone(), HAND_OVER);
        writer.record(event(1)).await;
        assert_eq!(failures.load(Ordering::Relaxed), 1);
        assert_eq!(
            writer.stats().retries.load(Ordering::Relaxed),
            u64::from(crate::audit::RETRIES)
        );
        assert_eq!(writer.stats().written.load(Ordering::Relaxed), 0);
    }

    /// A batch refused for a reason other than availability is written
    /// event by event: each failed event is counted once.
    #[tokio::test]
    async fn audit_writer_counts_each_event_of_a_refused_batch() {
        use sea_orm::ConnectionTrait;
        let db = TestDb::sqlite().await;
        db.db
            .execute_unprepared("DROP TABLE audit_events")
            .await
            .unwrap();
        let writer = writer(&db);
        futures::future::join_all((0..5).map(|n| writer.record(event(n)))).await;
        let stats = writer.stats();
        assert_eq!(stats.failures.load(Ordering::Relaxed), 5);
        assert_eq!(stats.retries.load(Ordering::Relaxed), 0);
        writer.shutdown().await;
    }
}
