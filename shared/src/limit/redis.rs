//! The shared store: one atomic Lua script per operation, under a deadline.
//!
//! A call answers `None` when Redis is in fallback or fails: the caller then
//! asks the in-process store. The first failure on a connection drops it and
//! switches to fallback; [`RedisStore::reconnect`] (run at most once a second
//! by the limiter's background task) brings a fresh connection back, and
//! [`RedisStore::probe`] (once a second while up) notices an outage when no
//! request does.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError, RedisResult, Script};

use super::{Decision, Rule, Window};

/// How long one Redis call may take before the fallback answers.
pub(super) const DEADLINE: Duration = Duration::from_millis(250);
/// How long connecting (and loading the scripts) may take.
const CONNECT_DEADLINE: Duration = Duration::from_millis(500);

/// GCRA. KEYS[1]: the bucket; ARGV[1]: the emission interval in ms (may be
/// fractional), ARGV[2]: the limit (= burst). The state is the theoretical
/// arrival time (TAT) in ms, kept until the bucket is full again. Returns
/// {allowed (1|0), remaining, retry_after_ms, reset_ms}.
const BUCKET_LUA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tau = interval * (limit - 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat - tau
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now), math.ceil(tat - now)}
end
local new_tat = tat + interval
local ttl = math.max(1, math.ceil(new_tat - now))
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', ttl)
local remaining = math.floor((now + tau - tat) / interval + 1e-9)
if remaining < 0 then remaining = 0 end
if remaining > limit - 1 then remaining = limit - 1 end
return {1, remaining, 0, ttl}
";

/// Failure counter. KEYS[1]: the counter; ARGV[1]: the window in ms. The
/// window starts at the first event (a counter without a TTL gets one too).
const FAILURE_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
";

/// The Redis key of `rule`'s bucket for `key`: the key only as SHA-256 hex.
pub(super) fn bucket_key(prefix: &str, rule: &Rule, key: &str) -> String {
    format!("{prefix}:rl:{}:{}", rule.name, crate::secret::hash(key))
}

/// The Redis key of `window`'s counter for `key`.
pub(super) fn counter_key(prefix: &str, window: &Window, key: &str) -> String {
    format!("{prefix}:fc:{}:{}", window.name, crate::secret::hash(key))
}

/// The live connection, if any; `generation` tells connections apart so that
/// a late failure on an old one cannot take down its successor.
struct Link {
    generation: u64,
    conn: Option<MultiplexedConnection>,
}

pub(crate) struct RedisStore {
    client: Client,
    /// Every key starts with it (`REDIS_KEY_PREFIX`).
    prefix: String,
    link: Mutex<Link>,
    fallbacks: AtomicU64,
    bucket: Script,
    failure: Script,
}

impl RedisStore {
    /// Parses the URL; connects nothing yet.
    pub(super) fn open(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = Client::open(url)
            .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {e}"))?;
        Ok(Self {
            client,
            prefix: prefix.to_owned(),
            link: Mutex::new(Link {
                generation: 0,
                conn: None,
            }),
            fallbacks: AtomicU64::new(0),
            bucket: Script::new(BUCKET_LUA),
            failure: Script::new(FAILURE_LUA),
        })
    }

    /// The first connection attempt: on failure, starts in fallback.
    pub(super) async fn start(&self) {
        match self.connect().await {
            Ok(conn) => {
                self.install(conn);
                tracing::info!("rate-limit store: Redis");
            }
            Err(error) => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = %error,
                    "rate-limit store: Redis does not answer at start; \
                     serving from the in-process store until it does"
                );
            }
        }
    }

    /// One attempt to leave the fallback with a fresh connection.
    pub(super) async fn reconnect(&self) {
        match self.connect().await {
            Ok(conn) => {
                self.install(conn);
                tracing::info!("rate-limit store: Redis answers again; fallback over");
            }
            Err(error) => {
                tracing::debug!(error = %error, "rate-limit store: Redis still unreachable");
            }
        }
    }

    /// A `PING` on the live connection, so that an idle instance notices an
    /// outage too (readiness and metrics read [`RedisStore::is_up`]).
    pub(super) async fn probe(&self) {
        let _pong: Option<String> = self
            .run(|mut conn| async move { ::redis::cmd("PING").query_async(&mut conn).await })
            .await;
    }

    /// Every key starts with it (`REDIS_KEY_PREFIX`).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn is_up(&self) -> bool {
        self.lock().conn.is_some()
    }

    pub(super) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    pub(super) async fn check(&self, rule: &Rule, key: &str) -> Option<Decision> {
        // Fractional ms: a rule of 1000/s has an interval of 1 ms, 5000/s of 0.2.
        let interval_ms = (rule.period.as_secs_f64() * 1000.0 / f64::from(rule.limit)).max(1e-6);
        let mut invocation = self.bucket.prepare_invoke();
        invocation
            .key(bucket_key(&self.prefix, rule, key))
            .arg(interval_ms)
            .arg(rule.limit);
        let (allowed, remaining, retry_ms, reset_ms): (i64, i64, i64, i64) = self
            .run(|mut conn| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        let allowed = allowed == 1;
        let max_remaining = i64::from(rule.limit.saturating_sub(1));
        Some(Decision {
            allowed,
            limit: rule.limit,
            remaining: u32::try_from(remaining.clamp(0, max_remaining)).unwrap_or(0),
            reset: millis(reset_ms),
            retry_after: (!allowed).then(|| millis(retry_ms)),
            policy_window: rule.period,
        })
    }

    pub(super) async fn failures(&self, window: &Window, key: &str) -> Option<u32> {
        let mut get = ::redis::cmd("GET");
        get.arg(counter_key(&self.prefix, window, key));
        let count: Option<i64> = self
            .run(|mut conn| {
                let get = &get;
                async move { get.query_async(&mut conn).await }
            })
            .await?;
        Some(count_u32(count.unwrap_or(0)))
    }

    pub(super) async fn record_failure(&self, window: &Window, key: &str) -> Option<u32> {
        let window_ms = u64::try_from(window.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut invocation = self.failure.prepare_invoke();
        invocation
            .key(counter_key(&self.prefix, window, key))
            .arg(window_ms);
        let count: i64 = self
            .run(|mut conn| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        Some(count_u32(count))
    }

    pub(super) async fn reset_failures(&self, window: &Window, key: &str) {
        let mut del = ::redis::cmd("DEL");
        del.arg(counter_key(&self.prefix, window, key));
        let _deleted: Option<i64> = self
            .run(|mut conn| {
                let del = &del;
                async move { del.query_async(&mut conn).await }
            })
            .await;
    }

    /// Runs `op` on the live connection under [`DEADLINE`]; `None` when in
    /// fallback or when it fails (which starts the fallback). A connection
    /// the server dropped (Redis restarted, or a proxy closed it) gets one
    /// fresh connection and one retry, within another [`DEADLINE`], before
    /// the fallback: otherwise every instance that had not noticed the
    /// restart yet would serve its next calls from its own store for up to
    /// a second (a retried script may count one event twice, which errs on
    /// the strict side).
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, conn) = {
            let link = self.lock();
            (link.generation, link.conn.clone()?)
        };
        match tokio::time::timeout(DEADLINE, op(conn)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) if error.is_connection_dropped() || error.is_io_error() => {
                let retried = tokio::time::timeout(DEADLINE, async {
                    let conn = self.connect().await?;
                    let value = op(conn.clone()).await?;
                    Ok::<_, RedisError>((conn, value))
                })
                .await;
                match retried {
                    Ok(Ok((conn, value))) => {
                        self.replace(generation, conn);
                        Some(value)
                    }
                    _ => {
                        self.mark_down(generation, &error);
                        None
                    }
                }
            }
            Ok(Err(error)) => {
                self.mark_down(generation, &error);
                None
            }
            Err(_) => {
                let why = format!("no answer within {} ms", DEADLINE.as_millis());
                self.mark_down(generation, &why);
                None
            }
        }
    }

    /// Switches to fallback, once per outage: only the first failure on the
    /// live connection counts and logs.
    fn mark_down(&self, generation: u64, error: &dyn Display) {
        let mut link = self.lock();
        if link.generation != generation || link.conn.is_none() {
            return;
        }
        link.conn = None;
        drop(link);
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            error = %error,
            "rate-limit store: Redis failed; serving from the in-process store until it answers again"
        );
    }

    /// Puts `conn` in place of the connection of `generation`, unless it
    /// was replaced or dropped meanwhile (then `conn` is simply dropped).
    fn replace(&self, generation: u64, conn: MultiplexedConnection) {
        let mut link = self.lock();
        if link.generation == generation && link.conn.is_some() {
            link.generation += 1;
            link.conn = Some(conn);
        }
    }

    fn install(&self, conn: MultiplexedConnection) {
        let mut link = self.lock();
        link.generation += 1;
        link.conn = Some(conn);
    }

    /// A fresh connection with both scripts loaded, within [`CONNECT_DEADLINE`].
    async fn connect(&self) -> RedisResult<MultiplexedConnection> {
        let attempt = async {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(DEADLINE))
                .set_response_timeout(Some(DEADLINE));
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            self.bucket.load_async(&mut conn).await?;
            self.failure.load_async(&mut conn).await?;
            Ok(conn)
        };
        match tokio::time::timeout(CONNECT_DEADLINE, attempt).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {} ms", CONNECT_DEADLINE.as_millis()),
            ))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn count_u32(count: i64) -> u32 {
    u32::try_from(count.max(0)).unwrap_or(u32::MAX)
}
