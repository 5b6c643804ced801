//! The rules' window counts shared by every instance through Redis.
//!
//! One atomic Lua script per event, on the limiter's connection (the same
//! 250 ms deadline, one warning per outage, reconnection every second):
//!
//! - it adds the event to `<prefix>:al:<rule>:n`, a hash of buckets of
//!   `max(1, window / 60)` seconds (fields `<bucket>:t` for all events and
//!   `<bucket>:b` for bad ones; Redis `TIME`, so skewed clocks agree), drops
//!   the buckets older than the window and sums the rest: at most about 61
//!   buckets per rule, and the key expires a window after the last event;
//! - for `rate_limit_abuse`, the same per offender in
//!   `<prefix>:al:<rule>:o:<sha256(offender)>` (addresses only hashed);
//! - it evaluates the rule on the totals and, when it holds, sets
//!   `<prefix>:al:<rule>:fired` with `SET NX EX <window>`: only the instance
//!   that set it fires, so an alert fires once per window across instances.
//!
//! When Redis does not answer, the event is evaluated in process, on this
//! instance's events (which the engine keeps in every mode).

use std::sync::Mutex;
use std::time::Instant;

use redis::Script;

use super::{Alert, Counts, Engine, Rule, SharedVerdict, Thresholds};
use crate::limit::{Limiter, StoreStatus};

/// KEYS[1]: the rule's buckets, KEYS[2]: the marker, KEYS[3] (optional): the
/// offender's buckets. ARGV: window s, bucket width s, bad (0|1), min total,
/// min failure rate (strictly above; negative: none), min bad, min of one
/// offender. Returns {total, bad, offender's bad, holds, fired}.
const EVENT_LUA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local window = tonumber(ARGV[1])
local width = tonumber(ARGV[2])
local bad = ARGV[3] == '1'
local now = tonumber(redis.call('TIME')[1])
local b = math.floor(now / width)
local oldest = b - math.floor(window / width)
local ttl = window + width
redis.call('HINCRBY', KEYS[1], b .. ':t', 1)
if bad then redis.call('HINCRBY', KEYS[1], b .. ':b', 1) end
redis.call('EXPIRE', KEYS[1], ttl)
local total, nbad = 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local field = all[i]
  local sep = string.find(field, ':', 1, true)
  if tonumber(string.sub(field, 1, sep - 1)) <= oldest then
    redis.call('HDEL', KEYS[1], field)
  elseif string.sub(field, sep + 1) == 'b' then
    nbad = nbad + tonumber(all[i + 1])
  else
    total = total + tonumber(all[i + 1])
  end
end
local mine = 0
if KEYS[3] then
  if bad then redis.call('HINCRBY', KEYS[3], b, 1) end
  redis.call('EXPIRE', KEYS[3], ttl)
  local own = redis.call('HGETALL', KEYS[3])
  for i = 1, #own, 2 do
    if tonumber(own[i]) <= oldest then
      redis.call('HDEL', KEYS[3], own[i])
    else
      mine = mine + tonumber(own[i + 1])
    end
  end
end
local rate = tonumber(ARGV[5])
local holds = total >= tonumber(ARGV[4])
  and (rate < 0 or (total > 0 and nbad / total > rate))
  and nbad >= tonumber(ARGV[6])
  and mine >= tonumber(ARGV[7])
if not holds then return {total, nbad, mine, 0, 0} end
local fired = 0
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', window) then fired = 1 end
return {total, nbad, mine, 1, fired}
";

/// The counts an engine shares through Redis; cheap to build.
pub struct SharedCounts {
    limiter: Limiter,
    script: Script,
}

impl SharedCounts {
    /// Shares through `limiter`'s Redis (none: everything stays local).
    pub fn new(limiter: Limiter) -> Self {
        Self {
            limiter,
            script: Script::new(EVENT_LUA),
        }
    }

    /// What counts now: `redis` when the totals are shared.
    pub fn status(&self) -> StoreStatus {
        self.limiter.status()
    }

    /// Counts an event for `rule` in Redis and `engine` and evaluates the
    /// rule on the shared totals; when Redis does not answer, in `engine`
    /// alone. Returns the alert fired here, if any.
    pub async fn observe(
        &self,
        engine: &Mutex<Engine>,
        rule: Rule,
        offender: Option<String>,
        bad: bool,
    ) -> Option<Alert> {
        let thresholds = engine.lock().ok()?.thresholds().clone();
        let shared = self
            .count(&thresholds, rule, offender.as_deref(), bad)
            .await;
        let mut engine = engine.lock().ok()?;
        let now = Instant::now();
        match shared {
            Some(verdict) => engine.observe_shared(rule, offender, bad, now, verdict),
            None => {
                engine.forget_shared(rule);
                engine.observe(rule, offender, bad, now)
            }
        }
    }

    /// The script for one event. `None`: no Redis, or it does not answer.
    async fn count(
        &self,
        t: &Thresholds,
        rule: Rule,
        offender: Option<&str>,
        bad: bool,
    ) -> Option<SharedVerdict> {
        let redis = self.limiter.redis_store()?;
        let window = t.window.as_secs().max(1);
        let width = window.div_ceil(60).max(1);
        // min total, min rate (negative: none), min bad, min of one offender.
        let (min_total, rate, min_bad, min_most) = match rule {
            Rule::LoginFailureRate => (t.login_min_attempts, t.login_failure_rate, 0, 0),
            Rule::AuthFailureSpike => (0, -1.0, t.auth_failures, 0),
            Rule::SuspiciousInput => (0, -1.0, t.suspicious_inputs, 0),
            Rule::RateLimitAbuse => (0, -1.0, 0, t.rate_limit_hits),
            Rule::RefreshTokenReuse | Rule::RevokedApiKey => (0, -1.0, 1, 0),
        };
        let base = format!("{}:al:{}", redis.prefix(), rule.as_str());
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(format!("{base}:n"))
            .key(format!("{base}:fired"));
        // Without an offender nothing counts per address (as in process).
        if rule == Rule::RateLimitAbuse
            && let Some(who) = offender
        {
            invocation.key(format!("{base}:o:{}", crate::secret::hash(who)));
        }
        invocation
            .arg(window)
            .arg(width)
            .arg(u8::from(bad))
            .arg(min_total)
            .arg(rate)
            .arg(min_bad)
            .arg(min_most);
        let (total, nbad, mine, holds, fired): (i64, i64, i64, i64, i64) = redis
            .run(|mut conn| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        let counts = Counts {
            total: count(total),
            bad: count(nbad),
            most: count(mine),
        };
        Some(SharedVerdict {
            counts,
            holds: holds == 1,
            fired: fired == 1,
        })
    }
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[path = "shared_counts_tests.rs"]
mod tests;
