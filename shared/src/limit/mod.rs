//! Rate limits and failure counters, in process or shared through Redis.
//!
//! Two kinds of state, both keyed by a caller-chosen string (an IP, a client
//! id, an e-mail address):
//!
//! - a [`Rule`] is a token bucket of `limit` requests per `period` with a
//!   burst of `limit`, computed with GCRA (the generic cell rate algorithm):
//!   the only state per key is the *theoretical arrival time* (TAT) of the
//!   next request; a request is allowed when `now >= TAT - (limit - 1) ×
//!   interval`, where `interval = period / limit`, and moves the TAT one
//!   interval on. The bucket is full again when `now >= TAT`.
//! - a [`Window`] counts failures: `max` events within `window`, a fixed
//!   window that starts at the first event.
//!
//! # Stores
//!
//! [`Limiter::local`] keeps everything in this process: one governor keyed
//! limiter per rule name (replaced when the rule's quota changes), failure
//! counters in a map. Both are pruned, on the request path once they pass
//! 10 000 keys and by a background task every minute, so that a flood of
//! distinct keys cannot grow memory without bound. Its `reset` is rounded up
//! to a whole interval (governor reports the remaining capacity, not the
//! TAT).
//!
//! [`Limiter::new`] with a Redis URL shares the state between every instance.
//! Each operation is one atomic Lua script (run with `EVALSHA`, loaded on
//! demand), so instances never race between a read and a write:
//! - bucket: reads the TAT in ms from `portcullis:rl:<rule>:<sha256(key)>`,
//!   takes `now` from Redis `TIME` (so instances with skewed clocks agree),
//!   decides, and stores the new TAT with `SET … PX` (the key expires when the
//!   bucket is full again);
//! - failures: `INCR` + `PEXPIRE` on the first event, on
//!   `portcullis:fc:<window>:<sha256(key)>`; reading is a `GET`, forgetting a
//!   `DEL`.
//!
//! Keys are stored only as SHA-256 hex: they may be e-mail addresses.
//!
//! # When Redis fails
//!
//! Every Redis call runs under a 250 ms deadline. An error or a timeout never
//! reaches the caller and never means "unlimited": that call is answered by
//! the in-process store, the status becomes [`StoreStatus::Fallback`], one
//! `warn` is logged for the outage and [`Limiter::fallbacks`] counts it.
//! While in fallback no request touches Redis; a background task tries a fresh
//! connection at most once a second, and when Redis answers again the status
//! returns to [`StoreStatus::Redis`] with one `info` log. While Redis is up the
//! same task pings it once a second, so that an idle instance notices an
//! outage too. A Redis that does
//! not answer at start is the same case: [`Limiter::new`] returns at once in
//! fallback. The in-process counts are not copied into Redis or back: during
//! an outage each instance limits on its own.
//!
//! # Headers
//!
//! [`Decision::apply_headers`] writes the separate fields of the IETF
//! httpapi draft (draft-ietf-httpapi-ratelimit-headers-07):
//! `RateLimit-Limit: 10`, `RateLimit-Remaining: 3`, `RateLimit-Reset: 42`
//! (delta seconds until the bucket is full, rounded up) and
//! `RateLimit-Policy: 10;w=60`; plus `Retry-After` (seconds, rounded up, at
//! least 1) when refused.

mod local;
pub(crate) mod redis;
mod values;

#[cfg(any(test, feature = "test-util"))]
#[path = "redis_server.rs"]
pub mod test_redis;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{HeaderMap, HeaderName};

use self::local::LocalStore;
use self::redis::RedisStore;

/// The default start of every Redis key (`REDIS_KEY_PREFIX`).
pub const DEFAULT_KEY_PREFIX: &str = "portcullis";

/// A token bucket: `limit` requests per `period`, burst = limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub limit: u32,
    pub period: Duration,
}

/// A failure counter: `max` events within `window` (fixed window from the
/// first event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub name: &'static str,
    pub max: u32,
    pub window: Duration,
}

/// The verdict of one [`Limiter::check`].
#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// When refused: until one request is allowed again.
    pub retry_after: Option<Duration>,
    pub policy_window: Duration,
}

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

impl Decision {
    /// Sets `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`
    /// (delta seconds, rounded up) and `RateLimit-Policy: <limit>;w=<window
    /// secs>`; plus `Retry-After` (seconds, rounded up, at least 1) when
    /// refused. An allowed verdict leaves a `Retry-After` that the handler
    /// set for its own reasons (a 503, a lockout) alone.
    pub fn apply_headers(&self, headers: &mut HeaderMap) {
        // The values without formatting (`values`): the same text.
        let (limit, policy) = values::policy(self.limit, ceil_secs(self.policy_window));
        headers.insert(RATELIMIT_LIMIT, limit);
        headers.insert(
            RATELIMIT_REMAINING,
            values::number(u64::from(self.remaining)),
        );
        headers.insert(RATELIMIT_RESET, values::number(ceil_secs(self.reset)));
        if let Some(policy) = policy {
            headers.insert(RATELIMIT_POLICY, policy);
        }
        if !self.allowed {
            let wait = self.retry_after.map_or(1, |d| ceil_secs(d).max(1));
            headers.insert(http::header::RETRY_AFTER, values::number(wait));
        }
    }

    /// The verdict of a rule that allows nothing (`limit == 0`).
    fn never(rule: &Rule) -> Self {
        Self {
            allowed: false,
            limit: 0,
            remaining: 0,
            reset: rule.period,
            retry_after: Some(rule.period),
            policy_window: rule.period,
        }
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What answers [`Limiter`] calls now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    /// In-process only: no Redis configured.
    Local,
    /// Redis answers.
    Redis,
    /// Redis is configured but does not answer: the in-process store serves.
    Fallback,
}

impl StoreStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Redis => "redis",
            Self::Fallback => "fallback",
        }
    }
}

impl std::fmt::Display for StoreStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How often the background task prunes the in-process store.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often, at most, a Redis in fallback is tried again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// Rate limits and failure counters; cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    local: LocalStore,
    redis: Option<RedisStore>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("status", &self.status())
            .field("fallbacks", &self.fallbacks())
            .finish()
    }
}

impl Limiter {
    /// In-process only (governor). Needs no runtime; inside one, a background
    /// task also prunes idle keys every minute.
    pub fn local() -> Self {
        let limiter = Self {
            inner: Arc::new(Inner {
                local: LocalStore::new(),
                redis: None,
            }),
        };
        limiter.spawn_maintenance();
        limiter
    }

    /// With `Some(url)`, Redis is the store, shared by every instance, and the
    /// in-process store is the fallback. Never fails nor hangs when Redis does
    /// not answer (starts in fallback and keeps retrying); only a malformed
    /// URL is an error. `None` is [`Limiter::local`].
    pub async fn new(redis_url: Option<&str>) -> anyhow::Result<Self> {
        Self::with_prefix(redis_url, DEFAULT_KEY_PREFIX).await
    }

    /// [`Limiter::new`] with its Redis keys under `prefix`
    /// (`REDIS_KEY_PREFIX`): deployments that share one Redis keep apart.
    pub async fn with_prefix(redis_url: Option<&str>, prefix: &str) -> anyhow::Result<Self> {
        let Some(url) = redis_url else {
            return Ok(Self::local());
        };
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            anyhow::bail!("REDIS_KEY_PREFIX must be letters, digits, '-', '_', '.' or ':'");
        }
        let redis = RedisStore::open(url, prefix)?;
        redis.start().await;
        let limiter = Self {
            inner: Arc::new(Inner {
                local: LocalStore::new(),
                redis: Some(redis),
            }),
        };
        limiter.spawn_maintenance();
        Ok(limiter)
    }

    /// Takes one token from `rule`'s bucket for `key`.
    pub async fn check(&self, rule: &Rule, key: &str) -> Decision {
        if rule.limit == 0 {
            return Decision::never(rule);
        }
        if let Some(redis) = &self.inner.redis
            && let Some(decision) = redis.check(rule, key).await
        {
            return decision;
        }
        self.inner.local.check(rule, key)
    }

    /// Current count of `window` for `key` (0 when none or expired).
    pub async fn failures(&self, window: &Window, key: &str) -> u32 {
        if let Some(redis) = &self.inner.redis
            && let Some(count) = redis.failures(window, key).await
        {
            return count;
        }
        self.inner.local.failures(window, key)
    }

    /// Adds one event; returns the new count (the window starts at the first
    /// event).
    pub async fn record_failure(&self, window: &Window, key: &str) -> u32 {
        if let Some(redis) = &self.inner.redis
            && let Some(count) = redis.record_failure(window, key).await
        {
            return count;
        }
        self.inner.local.record_failure(window, key)
    }

    /// Forgets `key`'s count (in Redis and in process).
    pub async fn reset_failures(&self, window: &Window, key: &str) {
        if let Some(redis) = &self.inner.redis {
            redis.reset_failures(window, key).await;
        }
        self.inner.local.reset_failures(window, key);
    }

    /// The shared store, when Redis is configured (`crate::alerts` runs
    /// its own script on it, under the same deadline and fallback).
    pub(crate) fn redis_store(&self) -> Option<&RedisStore> {
        self.inner.redis.as_ref()
    }

    /// What serves now: for readiness and metrics.
    pub fn status(&self) -> StoreStatus {
        match &self.inner.redis {
            None => StoreStatus::Local,
            Some(redis) if redis.is_up() => StoreStatus::Redis,
            Some(_) => StoreStatus::Fallback,
        }
    }

    /// How many times this instance switched to the fallback since start
    /// (a Redis that did not answer at start counts once).
    pub fn fallbacks(&self) -> u64 {
        self.inner.redis.as_ref().map_or(0, RedisStore::fallbacks)
    }

    /// Spawns, when a tokio runtime is running, the task that prunes the
    /// in-process store every minute and, with Redis, every second either
    /// pings it (to notice an outage while idle) or, in fallback, tries a
    /// fresh connection. It holds only a `Weak`: it ends once the last
    /// `Limiter` clone is dropped.
    fn spawn_maintenance(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            if self.inner.redis.is_some() {
                tracing::warn!(
                    "rate-limit store: no tokio runtime, Redis will not be retried after an outage"
                );
            }
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let tick = if self.inner.redis.is_some() {
            RECONNECT_EVERY
        } else {
            PRUNE_EVERY
        };
        handle.spawn(maintain(weak, tick));
    }
}

async fn maintain(weak: Weak<Inner>, tick: Duration) {
    let mut since_prune = Duration::ZERO;
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        if let Some(redis) = &inner.redis {
            if redis.is_up() {
                redis.probe().await;
            } else {
                redis.reconnect().await;
            }
        }
        since_prune += tick;
        if since_prune >= PRUNE_EVERY {
            since_prune = Duration::ZERO;
            inner.local.prune();
        }
    }
}
