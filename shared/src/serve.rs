//! Serving a router over TCP with connection hygiene and a bounded graceful
//! shutdown. Both services' `run_until_stopped` call [`serve`] instead of
//! `axum::serve`, which has no header or idle deadline, no connection cap,
//! and a graceful shutdown that waits for ever on a client that never sends
//! its request (hyper counts a fresh connection as busy).
//!
//! Every connection is HTTP/1.1 (as `axum::serve` with axum's default
//! features), driven by hyper with a deadline of our own per phase:
//!
//! | phase | from | deadline |
//! | --- | --- | --- |
//! | new | accept | `header_timeout` after the accept: the first head must be complete by then |
//! | head | the first byte of a further request | `header_timeout` after that byte |
//! | busy | the head is complete | none here: the request timeout layer of [`crate::http::harden`] answers 503 |
//! | idle | the response is written | `idle_timeout`; a new request byte starts a head phase |
//!
//! A connection past its deadline is closed (dropped) without an answer.
//! hyper's own `header_read_timeout` is not used: its clock also runs while
//! a keep-alive connection waits for its next request, so the idle timeout
//! could never exceed the header timeout (a proxy in front needs its own
//! idle timeout to be the shorter one, or it reuses closed connections).
//!
//! Request head limits, set on hyper (the body limit, 64 KiB, is each
//! service's own, answered 413 problem+json; nesting in JSON bodies is
//! bounded by `crate::http::json_depth_exceeds`):
//!
//! | limit | constant | when exceeded |
//! | --- | --- | --- |
//! | header fields per request | [`MAX_HEADERS`] (64) | `431` |
//! | bytes of a request head | [`MAX_HEADER_BYTES`] (32 KiB) | `431` |
//! | read and write buffer per connection | [`MAX_BUF_SIZE`] (64 KiB) | `431` while reading a head |
//!
//! hyper answers these 431s itself, before there is a request to route:
//! status line, `content-length: 0` and `date` only (no security headers,
//! no request id, no problem body, no access-log line), then it closes the
//! connection. So a huge or header-stuffed head costs at most
//! [`MAX_BUF_SIZE`] of memory per connection, and at most the connection
//! cap of them at once.
//!
//! Connection cap: at most `max_connections` connections are served (and
//! never more than the open-file limit, less [`FD_RESERVE`] and the
//! overflow, allow). Past the cap, up to [`OVERFLOW_CONNECTIONS`] more are
//! accepted on a short leash (one request, [`OVERFLOW_HEADER_TIMEOUT`] to
//! send it, no keep-alive): `GET /healthz` goes to the router as usual, so
//! liveness holds while slow clients hold every slot, and anything else gets
//! `503` problem+json with `Retry-After` and `Connection: close`. When the
//! overflow is full too, its oldest connection that is not being answered
//! (a slow client) is closed to make room, so that a flood of slow clients
//! cannot keep a liveness probe out either. One warning is logged at most
//! every [`OVERLOAD_WARNING_INTERVAL`], with counts.
//!
//! Shutdown: when `shutdown` resolves, `on_drain` is called (the services
//! mark themselves draining, so `/readyz` can answer 503), the listener is
//! closed, connections without a request under way are closed (after
//! flushing their last response), the others end after their current
//! response (`Connection: close`; a first request head still arriving may
//! finish, within its header deadline), and whatever is still open after
//! `shutdown_grace` is dropped; then `serve` returns.
//!
//! HTTPS ([`serve_with`] given a [`Tls`]): the TLS handshake is the start
//! of the new phase. It runs on the connection's slot (or overflow place),
//! so it counts against the cap, and must be done, together with the first
//! request head, within the first header deadline; a client that never
//! finishes its handshake is closed then, like one that never finishes its
//! head. A failed handshake (plain HTTP sent to the HTTPS port, no common
//! protocol version) closes the connection after rustls' alert, with no
//! HTTP answer. At shutdown a connection still in its handshake is dropped,
//! like one that has not sent a byte. The certificate files are watched
//! while `serve_with` runs ([`crate::tls::Reloader`]). The rest is as for
//! plain TCP: hyper reads and writes through the TLS stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, Request, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::paths::HEALTHZ_PATH;
use crate::problem::{Problem, RETRY_AFTER_SECS};
use crate::tls::Tls;

pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;

/// Open files kept for everything but client connections: the database pool
/// and SQLite's files, outgoing HTTP (JWKS), keys, logs, the runtime.
pub const FD_RESERVE: u64 = 128;
/// Connections accepted past the cap, to answer `/healthz` or 503.
pub const OVERFLOW_CONNECTIONS: usize = 64;
/// How long an overflow connection has to send its one request head.
pub const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// At most one "connection limit reached" warning per this interval.
pub const OVERLOAD_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Header fields in one request head; more is answered 431.
pub const MAX_HEADERS: usize = 64;
/// Bytes of one request head (request line and header fields); more is
/// answered 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// hyper's read (and write) buffer per connection; at least 8 KiB (hyper's
/// minimum) and at least [`MAX_HEADER_BYTES`].
pub const MAX_BUF_SIZE: usize = 64 * 1024;

// serde defaults of the services' settings (`#[serde(default = "…")]`).
pub const fn default_header_timeout_secs() -> u64 {
    DEFAULT_HEADER_TIMEOUT_SECS
}
pub const fn default_idle_timeout_secs() -> u64 {
    DEFAULT_IDLE_TIMEOUT_SECS
}
pub const fn default_request_timeout_secs() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_SECS
}
pub const fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
pub const fn default_drain_delay_secs() -> u64 {
    0
}
pub const fn default_shutdown_grace_secs() -> u64 {
    DEFAULT_SHUTDOWN_GRACE_SECS
}

/// Connection hygiene of one service, from its settings (the environment
/// variables `HTTP_HEADER_TIMEOUT_SECS`, `HTTP_IDLE_TIMEOUT_SECS`,
/// `HTTP_REQUEST_TIMEOUT_SECS`, `HTTP_MAX_CONNECTIONS`, `SHUTDOWN_GRACE_SECS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// Time to send a complete request head.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time to answer a request (applied by [`crate::http::harden`]).
    pub request_timeout: Duration,
    /// Connections served at once (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// Time in-flight requests get to finish after the shutdown signal.
    pub shutdown_grace: Duration,
    /// Time between the shutdown signal and closing the listener, while
    /// `/readyz` already answers 503 (so a load balancer stops sending).
    pub drain_delay: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: Duration::from_secs(DEFAULT_SHUTDOWN_GRACE_SECS),
            drain_delay: Duration::ZERO,
        }
    }
}

/// The settings' raw values, as the services read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSecs {
    pub header_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub request_timeout_secs: u64,
    pub max_connections: usize,
    pub shutdown_grace_secs: u64,
    pub drain_delay_secs: u64,
}

impl HttpSettings {
    pub const HEADER_TIMEOUT_RANGE: (u64, u64) = (1, 300);
    pub const IDLE_TIMEOUT_RANGE: (u64, u64) = (1, 3600);
    pub const REQUEST_TIMEOUT_RANGE: (u64, u64) = (1, 600);
    pub const MAX_CONNECTIONS_RANGE: (usize, usize) = (1, 1_000_000);
    pub const SHUTDOWN_GRACE_RANGE: (u64, u64) = (0, 300);
    pub const DRAIN_DELAY_RANGE: (u64, u64) = (0, 120);

    /// Checks each value against its range; the error names the variable.
    pub fn from_secs(secs: HttpSecs) -> anyhow::Result<Self> {
        fn check<T: PartialOrd + std::fmt::Display + Copy>(
            name: &str,
            value: T,
            (min, max): (T, T),
            unit: &str,
        ) -> anyhow::Result<T> {
            if value < min || value > max {
                anyhow::bail!("{name} must be between {min} and {max}{unit} (got {value})");
            }
            Ok(value)
        }
        let secs_of =
            |name, value, range| check(name, value, range, " seconds").map(Duration::from_secs);
        Ok(Self {
            header_timeout: secs_of(
                "HTTP_HEADER_TIMEOUT_SECS",
                secs.header_timeout_secs,
                Self::HEADER_TIMEOUT_RANGE,
            )?,
            idle_timeout: secs_of(
                "HTTP_IDLE_TIMEOUT_SECS",
                secs.idle_timeout_secs,
                Self::IDLE_TIMEOUT_RANGE,
            )?,
            request_timeout: secs_of(
                "HTTP_REQUEST_TIMEOUT_SECS",
                secs.request_timeout_secs,
                Self::REQUEST_TIMEOUT_RANGE,
            )?,
            max_connections: check(
                "HTTP_MAX_CONNECTIONS",
                secs.max_connections,
                Self::MAX_CONNECTIONS_RANGE,
                "",
            )?,
            shutdown_grace: secs_of(
                "SHUTDOWN_GRACE_SECS",
                secs.shutdown_grace_secs,
                Self::SHUTDOWN_GRACE_RANGE,
            )?,
            drain_delay: secs_of(
                "SHUTDOWN_DRAIN_DELAY_SECS",
                secs.drain_delay_secs,
                Self::DRAIN_DELAY_RANGE,
            )?,
        })
    }
}

/// Set when the server begins its graceful shutdown (the `on_drain` hook of
/// [`serve`]); a readiness probe answers 503 from then on.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the server as draining (idempotent).
    pub fn start(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The open-file limit (`RLIMIT_NOFILE`) after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit before the call.
    pub before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard one (on macOS, to at most
/// `kern.maxfilesperproc`); a no-op when they are equal.
#[cfg(unix)]
pub fn raise_nofile_limit() -> io::Result<NofileLimit> {
    let (before, _) = rlimit::Resource::NOFILE.get()?;
    rlimit::increase_nofile_limit(u64::MAX)?;
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    Ok(NofileLimit { before, soft, hard })
}

#[cfg(not(unix))]
pub fn raise_nofile_limit() -> io::Result<NofileLimit> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "RLIMIT_NOFILE is a Unix limit",
    ))
}

/// The connection cap: `configured`, lowered so that the capped connections,
/// the overflow and [`FD_RESERVE`] fit under the soft open-file limit.
pub fn connection_cap(configured: usize, nofile_soft: Option<u64>) -> usize {
    let Some(soft) = nofile_soft else {
        return configured;
    };
    let budget = soft.saturating_sub(FD_RESERVE + OVERFLOW_CONNECTIONS as u64);
    configured
        .min(usize::try_from(budget).unwrap_or(usize::MAX))
        .max(1)
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains as
/// the module documentation says and returns. The request timeout of
/// `settings` is not applied here but by [`crate::http::harden`].
pub async fn serve<F, D>(
    listener: TcpListener,
    router: Router,
    settings: &HttpSettings,
    shutdown: F,
    on_drain: D,
) where
    F: Future<Output = ()> + Send,
    D: FnOnce() + Send,
{
    serve_with(listener, router, settings, None, shutdown, on_drain).await;
}

/// [`serve`], over TLS when `tls` is given (see the module documentation);
/// the certificate files are watched for changes until it returns.
pub async fn serve_with<F, D>(
    listener: TcpListener,
    router: Router,
    settings: &HttpSettings,
    tls: Option<Tls>,
    shutdown: F,
    on_drain: D,
) where
    F: Future<Output = ()> + Send,
    D: FnOnce() + Send,
{
    let _reloader = tls
        .as_ref()
        .map(|tls| tls.spawn_reloader(crate::tls::RELOAD_INTERVAL));
    let acceptor = tls.as_ref().map(Tls::acceptor);
    let soft = match raise_nofile_limit() {
        Ok(limit) => {
            tracing::info!(
                soft = limit.soft,
                hard = limit.hard,
                soft_before = limit.before,
                "open-file limit (RLIMIT_NOFILE): soft {}, hard {}",
                limit.soft,
                limit.hard
            );
            Some(limit.soft)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read or raise the open-file limit");
            None
        }
    };
    let cap = connection_cap(settings.max_connections, soft);
    if cap < settings.max_connections {
        tracing::warn!(
            "HTTP_MAX_CONNECTIONS={} does not fit the open-file limit {}: serving at most {cap} connections \
             ({FD_RESERVE} files kept for the rest, {OVERFLOW_CONNECTIONS} for overflow answers)",
            settings.max_connections,
            soft.unwrap_or_default(),
        );
    }
    let mut limits = Limits {
        slots: Arc::new(Semaphore::new(cap)),
        overflow: VecDeque::with_capacity(OVERFLOW_CONNECTIONS),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut overload = Overload::new(cap);
    // The signal turns /readyz to 503 at once; the listener stays open for
    // the drain delay, so that a load balancer sees it and stops sending.
    let drain_delay = settings.drain_delay;
    let shutdown = async move {
        shutdown.await;
        on_drain();
        if !drain_delay.is_zero() {
            tracing::info!(
                delay_secs = drain_delay.as_secs(),
                "shutting down: /readyz answers 503; still serving during the drain delay"
            );
            tokio::time::sleep(drain_delay).await;
        }
    };
    let mut shutdown = pin!(shutdown);

    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "a connection task panicked");
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE and the like: wait a little instead of spinning.
                overload.accept_failed(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let permit = limits.slot();
        let overflow = permit.is_none();
        if overflow {
            let evicted = limits.make_room();
            overload.over_cap(evicted);
        }
        let header_timeout = if overflow {
            settings.header_timeout.min(OVERFLOW_HEADER_TIMEOUT)
        } else {
            settings.header_timeout
        };
        let tracker = Arc::new(Tracker::new(header_timeout, settings.idle_timeout));
        let connection = Connection {
            stream,
            peer,
            router: router.clone(),
            overflow,
            tracker: tracker.clone(),
            stop: stop_rx.clone(),
            tls: acceptor.clone(),
        };
        let handle = tasks.spawn(async move {
            connection.run().await;
            drop(permit);
        });
        if overflow {
            limits.overflow.push_back((handle, tracker));
        }
    }

    drop(listener);
    tracing::info!(
        open_connections = tasks.len(),
        grace_secs = settings.shutdown_grace.as_secs(),
        "shutting down: listener closed, draining open connections"
    );
    stop_tx.send_replace(true);
    let deadline = Instant::now() + settings.shutdown_grace;
    let drained = tokio::time::timeout_at(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        tracing::warn!(
            open_connections = tasks.len(),
            "shutdown grace (SHUTDOWN_GRACE_SECS={}) over: closing the connections still open",
            settings.shutdown_grace.as_secs()
        );
        tasks.shutdown().await;
    }
    tracing::info!("all connections closed");
}

/// Errors of one incoming connection, not of the listener (as `axum::serve`).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// The connection cap and the overflow past it.
struct Limits {
    /// One permit per connection served normally.
    slots: Arc<Semaphore>,
    /// Overflow connections, oldest first (finished ones are swept lazily).
    overflow: VecDeque<(AbortHandle, Arc<Tracker>)>,
}

impl Limits {
    /// A slot under the cap, if one is free.
    fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Makes room for one more overflow connection: when all
    /// [`OVERFLOW_CONNECTIONS`] are taken, closes the oldest one that is not
    /// being answered (a slow client, since an honest one sends its request
    /// at once and is answered in a moment). Returns whether it closed one.
    /// So a flood of slow clients cannot shut a liveness probe out: the
    /// probe is evicted only if that many connections arrive before it has
    /// sent its request.
    fn make_room(&mut self) -> bool {
        self.overflow.retain(|(handle, _)| !handle.is_finished());
        if self.overflow.len() < OVERFLOW_CONNECTIONS {
            return false;
        }
        let victim = self
            .overflow
            .iter()
            .position(|(_, tracker)| tracker.get().0 != Phase::Busy)
            .unwrap_or(0);
        match self.overflow.remove(victim) {
            Some((handle, _)) => {
                handle.abort();
                true
            }
            None => false,
        }
    }
}

/// Rate-limited warnings of the accept loop.
struct Overload {
    cap: usize,
    last_warning: Option<Instant>,
    over_cap: u64,
    evicted: u64,
    last_accept_error: Option<Instant>,
}

impl Overload {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            last_warning: None,
            over_cap: 0,
            evicted: 0,
            last_accept_error: None,
        }
    }

    /// A connection past the cap went to the overflow (`evicted`: the
    /// oldest slow one there was closed to make room).
    fn over_cap(&mut self, evicted: bool) {
        self.over_cap += 1;
        self.evicted += u64::from(evicted);
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= OVERLOAD_WARNING_INTERVAL)
        {
            tracing::warn!(
                limit = self.cap,
                over_cap = self.over_cap,
                evicted = self.evicted,
                "connection limit reached: {} connections open (HTTP_MAX_CONNECTIONS); \
                 new connections get 503 + Retry-After, only GET /healthz is served \
                 ({} over the limit, {} slow overflow connections closed, since the last warning)",
                self.cap,
                self.over_cap,
                self.evicted
            );
            self.last_warning = Some(now);
            self.over_cap = 0;
            self.evicted = 0;
        }
    }

    fn accept_failed(&mut self, error: &io::Error) {
        let now = Instant::now();
        if self
            .last_accept_error
            .is_none_or(|t| now.duration_since(t) >= OVERLOAD_WARNING_INTERVAL)
        {
            tracing::error!(error = %error, "accepting a connection failed");
            self.last_accept_error = Some(now);
        }
    }
}

/// Where a connection is between its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, no byte yet.
    New,
    /// A request head is arriving.
    Head,
    /// A request is being answered.
    Busy,
    /// Between two requests of a keep-alive connection.
    Idle,
}

#[derive(Debug)]
struct PhaseState {
    phase: Phase,
    deadline: Option<Instant>,
}

/// The phase and deadline of one connection, moved on by its reads
/// ([`Tracked`]), its requests ([`ConnService`]) and its responses
/// ([`ResponseDone`]). All of them run in the connection's task.
#[derive(Debug)]
struct Tracker {
    state: Mutex<PhaseState>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Tracker {
    fn new(header_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            state: Mutex::new(PhaseState {
                phase: Phase::New,
                deadline: Some(Instant::now() + header_timeout),
            }),
            header_timeout,
            idle_timeout,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut PhaseState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    /// Bytes arrived: a new connection keeps its deadline from the accept;
    /// an idle one starts a head.
    fn on_read(&self) {
        let header_timeout = self.header_timeout;
        self.with(|s| match s.phase {
            Phase::New => s.phase = Phase::Head,
            Phase::Idle => {
                s.phase = Phase::Head;
                s.deadline = Some(Instant::now() + header_timeout);
            }
            Phase::Head | Phase::Busy => {}
        });
    }

    fn on_request(&self) {
        self.with(|s| {
            s.phase = Phase::Busy;
            s.deadline = None;
        });
    }

    fn on_response_done(&self) {
        let idle_timeout = self.idle_timeout;
        self.with(|s| {
            if s.phase == Phase::Busy {
                s.phase = Phase::Idle;
                s.deadline = Some(Instant::now() + idle_timeout);
            }
        });
    }

    fn get(&self) -> (Phase, Option<Instant>) {
        self.with(|s| (s.phase, s.deadline))
    }
}

/// A socket that tells its tracker when request bytes arrive.
struct Tracked<T> {
    inner: T,
    tracker: Arc<Tracker>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.tracker.on_read();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Moves the tracker to idle when dropped: with the response body once
/// hyper has taken all of it, or with the request future if it is dropped.
struct ResponseDone(Arc<Tracker>);

impl Drop for ResponseDone {
    fn drop(&mut self) {
        self.0.on_response_done();
    }
}

/// The router's response body, carrying a [`ResponseDone`].
struct TrackedBody {
    body: Body,
    _done: ResponseDone,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// hyper's service for one connection: the router, or on an overflow
/// connection the router for liveness only and 503 for the rest.
#[derive(Clone)]
struct ConnService {
    router: Router,
    tracker: Arc<Tracker>,
    peer: SocketAddr,
    overflow: bool,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        self.tracker.on_request();
        let done = ResponseDone(self.tracker.clone());
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let router = self.router.clone();
        let overflow = self.overflow;
        Box::pin(async move {
            let response = if overflow && !is_liveness(&request) {
                over_capacity()
            } else {
                match router.oneshot(request.map(Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            };
            Ok(response.map(|body| TrackedBody { body, _done: done }))
        })
    }
}

fn is_liveness<B>(request: &Request<B>) -> bool {
    request.uri().path() == HEALTHZ_PATH
        && (request.method() == Method::GET || request.method() == Method::HEAD)
}

/// The answer past the connection cap: 503 problem+json, `Retry-After`, the
/// security headers and a request id, and the connection closes after it.
fn over_capacity() -> Response {
    let mut response =
        Problem::unavailable("too many open connections; try again shortly").into_response();
    let headers = response.headers_mut();
    headers
        .entry(header::RETRY_AFTER)
        .or_insert(HeaderValue::from(RETRY_AFTER_SECS));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    for (name, value) in crate::http::SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Some(id) = crate::http::new_request_id() {
        headers.insert(crate::http::REQUEST_ID, id);
    }
    response
}

/// How a connection ended, for the debug log.
#[derive(Debug)]
enum End {
    Closed(Result<(), hyper::Error>),
    TimedOut(Phase),
    Drained,
}

/// Where a TLS handshake ended, when it did not give a stream.
enum Handshake {
    Failed(io::Error),
    TimedOut,
    Drained,
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    overflow: bool,
    tracker: Arc<Tracker>,
    stop: watch::Receiver<bool>,
    /// Serve HTTPS: handshake first.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Connection {
    async fn run(self) {
        let Self {
            stream,
            peer,
            router,
            overflow,
            tracker,
            mut stop,
            tls,
        } = self;
        let Some(acceptor) = tls else {
            return drive(stream, peer, router, overflow, tracker, stop).await;
        };
        // The deadline of the new phase: the handshake and the first head
        // share it.
        let far = Instant::now() + Duration::from_secs(24 * 3600);
        let deadline = tracker.get().1.unwrap_or(far);
        let handshake = tokio::select! {
            biased;
            // An error means `serve` is gone: stop too.
            _ = stop.wait_for(|stop| *stop) => Err(Handshake::Drained),
            accepted = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => match accepted {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => Err(Handshake::Failed(e)),
                Err(_) => Err(Handshake::TimedOut),
            },
        };
        match handshake {
            Ok(stream) => drive(stream, peer, router, overflow, tracker, stop).await,
            Err(Handshake::Drained) => {}
            Err(Handshake::Failed(e)) => {
                tracing::debug!(%peer, overflow, error = %e, "TLS handshake failed")
            }
            Err(Handshake::TimedOut) => {
                tracing::debug!(%peer, overflow, "TLS handshake not done at the header deadline")
            }
        }
    }
}

/// Serves HTTP/1.1 on `stream` (plain TCP or TLS) until it closes, times
/// out or is drained (see the module documentation).
async fn drive<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    overflow: bool,
    tracker: Arc<Tracker>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Tracked {
        inner: stream,
        tracker: tracker.clone(),
    });
    let service = ConnService {
        router,
        tracker: tracker.clone(),
        peer,
        overflow,
    };
    let mut conn = pin!(
        http1::Builder::new()
            .keep_alive(!overflow)
            // Our own deadlines (see the module documentation).
            .header_read_timeout(None)
            .max_headers(MAX_HEADERS)
            .max_header_size(MAX_HEADER_BYTES)
            .max_buf_size(MAX_BUF_SIZE)
            .serve_connection(io, service)
    );
    let mut stopping = pin!(async move {
        // An error means `serve` is gone: stop too.
        let _ = stop.wait_for(|stop| *stop).await;
    });
    let far = Instant::now() + Duration::from_secs(24 * 3600);
    let mut sleep = pin!(tokio::time::sleep_until(tracker.get().1.unwrap_or(far)));
    let mut draining = false;

    let end = poll_fn(|cx| {
        loop {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(End::Closed(result));
            }
            if !draining && stopping.as_mut().poll(cx).is_ready() {
                draining = true;
                // hyper closes a connection between requests at once
                // (after flushing the last response), and a busy one
                // after its response. It counts a connection that has
                // not sent a byte yet as busy, so that one we drop.
                conn.as_mut().graceful_shutdown();
                if tracker.get().0 == Phase::New {
                    return Poll::Ready(End::Drained);
                }
                continue;
            }
            // Read after polling the connection, which moves the phase.
            let (phase, deadline) = tracker.get();
            let Some(deadline) = deadline else {
                return Poll::Pending;
            };
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            return match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(End::TimedOut(phase)),
                Poll::Pending => Poll::Pending,
            };
        }
    })
    .await;
    match end {
        End::Closed(Ok(())) | End::Drained => {}
        End::Closed(Err(e)) => tracing::debug!(%peer, error = %e, "connection error"),
        End::TimedOut(phase) => {
            tracing::debug!(%peer, ?phase, overflow, "connection closed at its deadline")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[cfg(unix)]
    #[test]
    fn raise_nofile_limit_sets_soft_to_hard() {
        let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
        // Lower the soft limit first (always allowed), so that the raise
        // has something to do; other tests in this process keep plenty.
        let lowered = if soft == hard {
            (hard / 2).max(256).min(hard)
        } else {
            soft
        };
        rlimit::Resource::NOFILE.set(lowered, hard).unwrap();

        let limit = raise_nofile_limit().unwrap();
        assert_eq!(limit.before, lowered);
        assert_eq!(limit.hard, hard);
        #[cfg(target_os = "linux")]
        assert_eq!(limit.soft, hard);
        assert!(limit.soft >= lowered);
        assert_eq!(rlimit::Resource::NOFILE.get().unwrap(), (limit.soft, hard));

        // Already raised: unchanged.
        let again = raise_nofile_limit().unwrap();
        assert_eq!(
            (again.before, again.soft, again.hard),
            (limit.soft, limit.soft, hard)
        );
    }

    #[test]
    fn connection_cap_stays_below_the_open_file_limit() {
        assert_eq!(connection_cap(1000, Some(1024)), 1024 - 128 - 64);
        assert_eq!(connection_cap(1000, Some(1_048_576)), 1000);
        assert_eq!(connection_cap(1000, None), 1000);
        assert_eq!(connection_cap(1000, Some(10)), 1);
    }

    #[test]
    fn http_settings_from_secs_names_the_variable_out_of_range() {
        let ok = HttpSecs {
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            request_timeout_secs: 30,
            max_connections: 1000,
            shutdown_grace_secs: 10,
            drain_delay_secs: 0,
        };
        assert_eq!(
            HttpSettings::from_secs(ok).unwrap(),
            HttpSettings::default()
        );
        let cases = [
            (
                HttpSecs {
                    header_timeout_secs: 0,
                    ..ok
                },
                "HTTP_HEADER_TIMEOUT_SECS must be between 1 and 300 seconds (got 0)",
            ),
            (
                HttpSecs {
                    idle_timeout_secs: 3601,
                    ..ok
                },
                "HTTP_IDLE_TIMEOUT_SECS",
            ),
            (
                HttpSecs {
                    request_timeout_secs: 0,
                    ..ok
                },
                "HTTP_REQUEST_TIMEOUT_SECS",
            ),
            (
                HttpSecs {
                    max_connections: 0,
                    ..ok
                },
                "HTTP_MAX_CONNECTIONS must be between 1 and 1000000 (got 0)",
            ),
            (
                HttpSecs {
                    shutdown_grace_secs: 301,
                    ..ok
                },
                "SHUTDOWN_GRACE_SECS",
            ),
            (
                HttpSecs {
                    drain_delay_secs: 121,
                    ..ok
                },
                "SHUTDOWN_DRAIN_DELAY_SECS",
            ),
        ];
        for (secs, message) in cases {
            let error = HttpSettings::from_secs(secs).unwrap_err().to_string();
            assert!(error.contains(message), "{error}");
        }
        let zero_grace = HttpSettings::from_secs(HttpSecs {
            shutdown_grace_secs: 0,
            ..ok
        })
        .unwrap();
        assert_eq!(zero_grace.shutdown_grace, Duration::ZERO);
    }

    /// A server on 127.0.0.1:0 with `/healthz` and `/`, stopped by the
    /// returned sender; the join handle resolves when `serve` returns.
    async fn start(
        settings: HttpSettings,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        Draining,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route(HEALTHZ_PATH, get(|| async { "ok" }))
            .route("/", get(|| async { "hello" }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let draining = Draining::new();
        let flag = draining.clone();
        let server = tokio::spawn(async move {
            serve(
                listener,
                router,
                &settings,
                async {
                    let _ = rx.await;
                },
                move || flag.start(),
            )
            .await;
        });
        (addr, tx, draining, server)
    }

    /// Sends `request` on `stream` and reads one response (head and a
    /// `Content-Length` body).
    async fn exchange(stream: &mut TcpStream, request: &str) -> String {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed before a whole response: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    return text;
                }
            }
        }
    }

    /// Time until the peer closes `stream` (EOF or reset), at most `limit`.
    async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut chunk = [0u8; 1024];
        tokio::time::timeout(limit, async {
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return start.elapsed(),
                    Ok(_) => {}
                }
            }
        })
        .await
        .ok()
    }

    fn quick() -> HttpSettings {
        HttpSettings {
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(600),
            ..HttpSettings::default()
        }
    }

    #[tokio::test]
    async fn serve_closes_a_slow_head_at_the_header_timeout() {
        let (addr, _stop, _, _server) = start(quick()).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let closed = closed_within(&mut slow, Duration::from_secs(3))
            .await
            .unwrap();
        assert!(closed >= Duration::from_millis(200), "{closed:?}");
    }

    #[tokio::test]
    async fn serve_keeps_an_idle_connection_past_the_header_timeout_until_the_idle_timeout() {
        let (addr, _stop, _, _server) = start(quick()).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let first = exchange(&mut client, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        // Longer than the header timeout, shorter than the idle timeout.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let second = exchange(&mut client, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");
        let closed = closed_within(&mut client, Duration::from_secs(3))
            .await
            .unwrap();
        assert!(closed >= Duration::from_millis(450), "{closed:?}");
    }

    #[tokio::test]
    async fn serve_answers_liveness_and_503_past_the_cap() {
        let settings = HttpSettings {
            max_connections: 2,
            ..HttpSettings::default()
        };
        let (addr, _stop, _, _server) = start(settings).await;
        // Two slow clients hold the two slots, and more of them than the
        // overflow holds come after.
        let mut hogs = Vec::new();
        for _ in 0..2 + OVERFLOW_CONNECTIONS + 10 {
            let mut hog = TcpStream::connect(addr).await.unwrap();
            hog.write_all(b"GET / HT").await.unwrap();
            hogs.push(hog);
        }
        let mut probe = TcpStream::connect(addr).await.unwrap();
        let live = exchange(&mut probe, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(live.starts_with("HTTP/1.1 200"), "{live}");
        let mut other = TcpStream::connect(addr).await.unwrap();
        let busy = exchange(&mut other, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
        let lower = busy.to_ascii_lowercase();
        assert!(lower.contains("retry-after: 2"), "{busy}");
        assert!(lower.contains("connection: close"), "{busy}");
        assert!(lower.contains("x-content-type-options: nosniff"), "{busy}");
        assert!(lower.contains("application/problem+json"), "{busy}");
        // The overflow stays bounded: its oldest slow clients were closed
        // to make room, long before their header deadline; the slots' not.
        for evicted in &mut hogs[2..2 + 10] {
            let closed = closed_within(evicted, Duration::from_millis(300)).await;
            assert!(closed.is_some(), "an old overflow connection is still open");
        }
        assert!(
            closed_within(&mut hogs[0], Duration::from_millis(100))
                .await
                .is_none()
        );

        // Once the hogs leave, requests are served again.
        drop(hogs);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let mut again = TcpStream::connect(addr).await.unwrap();
            let answer = exchange(&mut again, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
            if answer.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "still refused: {answer}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn serve_returns_within_the_grace_when_slow_clients_stay() {
        let settings = HttpSettings {
            header_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_millis(500),
            ..HttpSettings::default()
        };
        let (addr, stop, draining, server) = start(settings).await;
        let mut slow = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
            slow.push(s);
        }
        // A keep-alive connection between requests, and one that has sent
        // nothing yet, close at once.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        exchange(&mut idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut fresh = TcpStream::connect(addr).await.unwrap();
        // Let the server take the slow heads in.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!draining.is_draining());

        let start = Instant::now();
        stop.send(()).unwrap();
        for stream in [&mut idle, &mut fresh] {
            let closed = closed_within(stream, Duration::from_secs(2)).await.unwrap();
            assert!(closed < Duration::from_millis(300), "{closed:?}");
        }
        tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .unwrap()
            .unwrap();
        let took = start.elapsed();
        assert!(draining.is_draining());
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        for s in &mut slow {
            assert!(closed_within(s, Duration::from_secs(1)).await.is_some());
        }
        assert!(TcpStream::connect(addr).await.is_err());
    }

    /// Sends `head` (ignoring a write refused once the server has closed)
    /// and reads until the server closes: what it answered, if anything.
    async fn send_head_until_closed(addr: SocketAddr, head: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(head).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let read_all = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
        read_all.await.unwrap();
        String::from_utf8_lossy(&buf).to_string()
    }

    async fn assert_still_serving(addr: SocketAddr) {
        let mut client = TcpStream::connect(addr).await.unwrap();
        let answer = exchange(&mut client, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn serve_answers_431_to_more_header_fields_than_max_headers() {
        let (addr, _stop, _, _server) = start(HttpSettings::default()).await;
        // Exactly at the limit (Host and 63 more): served.
        let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 1..MAX_HEADERS {
            head.push_str(&format!("X-Filler-{i}: v\r\n"));
        }
        let mut client = TcpStream::connect(addr).await.unwrap();
        let answer = exchange(&mut client, &format!("{head}\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // 80 fields: under hyper's default (100), over ours.
        let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 1..80 {
            head.push_str(&format!("X-Filler-{i}: v\r\n"));
        }
        head.push_str("\r\n");
        let answer = send_head_until_closed(addr, head.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large"),
            "{answer}"
        );
        // hyper's own answer: no security headers, no body.
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("content-length: 0"), "{answer}");
        assert!(!lower.contains("x-content-type-options"), "{answer}");
        assert_still_serving(addr).await;
    }

    #[tokio::test]
    async fn serve_refuses_a_request_head_larger_than_max_header_bytes() {
        let (addr, _stop, _, _server) = start(HttpSettings::default()).await;
        // Just under the limit: served.
        let filler = "a".repeat(MAX_HEADER_BYTES - 100);
        let mut client = TcpStream::connect(addr).await.unwrap();
        let answer = exchange(
            &mut client,
            &format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {filler}\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // 40 KiB: over MAX_HEADER_BYTES, under MAX_BUF_SIZE and hyper's
        // default buffer (~400 KiB). hyper answers 431 and closes; the
        // client may see a reset instead (the server closed with bytes of
        // the head still unread), but never a 200.
        let filler = "a".repeat(40 * 1024);
        let head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {filler}\r\n\r\n");
        let answer = send_head_until_closed(addr, head.as_bytes()).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431 "),
            "{answer}"
        );
        assert_still_serving(addr).await;
    }
}
