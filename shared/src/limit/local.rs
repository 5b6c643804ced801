//! The in-process store: governor keyed limiters and a failure-counter map.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::{Decision, Rule, Window};

/// Past this many keys a store prunes itself on the request path; after a
/// prune the next one waits until the store has doubled, so a flood of keys
/// that are all still live costs amortised O(1) per request.
pub(super) const PRUNE_THRESHOLD: usize = 10_000;

type KeyedLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// One rule's limiter, with the quota it was built for.
struct Bucket {
    limit: NonZeroU32,
    period: Duration,
    interval: Duration,
    limiter: KeyedLimiter,
    prune_at: AtomicUsize,
    /// Checks so far: the size is looked at every [`SIZE_EVERY`]th (it
    /// takes a read lock on each of the map's shards).
    checks: AtomicUsize,
}

/// How often (in checks) a bucket looks at its size.
const SIZE_EVERY: usize = 16;

thread_local! {
    /// The key of a check, copied here rather than into a new `String`
    /// each time (the limiter looks keys up by `&String`).
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl Bucket {
    fn new(limit: NonZeroU32, period: Duration) -> Self {
        let interval = (period / limit.get()).max(Duration::from_nanos(1));
        let quota = match Quota::with_period(interval) {
            Some(quota) => quota.allow_burst(limit),
            // Unreachable: the interval is at least 1 ns.
            None => Quota::per_second(limit),
        };
        Self {
            limit,
            period,
            interval,
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            prune_at: AtomicUsize::new(PRUNE_THRESHOLD),
            checks: AtomicUsize::new(0),
        }
    }

    fn matches(&self, rule: &Rule, limit: NonZeroU32) -> bool {
        self.limit == limit && self.period == rule.period
    }

    fn check(&self, rule: &Rule, limit: NonZeroU32, key: &str) -> Decision {
        let outcome = KEY
            .try_with(|buffer| match buffer.try_borrow_mut() {
                Ok(mut buffer) => {
                    buffer.clear();
                    buffer.push_str(key);
                    self.limiter.check_key(&buffer)
                }
                Err(_) => self.limiter.check_key(&key.to_owned()),
            })
            .unwrap_or_else(|_| self.limiter.check_key(&key.to_owned()));
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SIZE_EVERY)
            && self.limiter.len() >= self.prune_at.load(Ordering::Relaxed)
        {
            self.prune();
        }
        match outcome {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity().min(limit.get() - 1);
                Decision {
                    allowed: true,
                    limit: limit.get(),
                    remaining,
                    // Rounded up to a whole interval: `remaining` is floored.
                    reset: self.interval.saturating_mul(limit.get() - remaining),
                    retry_after: None,
                    policy_window: rule.period,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Decision {
                    allowed: false,
                    limit: limit.get(),
                    remaining: 0,
                    reset: wait.saturating_add(self.interval.saturating_mul(limit.get() - 1)),
                    retry_after: Some(wait),
                    policy_window: rule.period,
                }
            }
        }
    }

    fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let next = self.limiter.len().saturating_mul(2).max(PRUNE_THRESHOLD);
        self.prune_at.store(next, Ordering::Relaxed);
    }
}

/// Failure counts: window name → key → (count, end of the window).
#[derive(Default)]
struct Counters {
    windows: HashMap<&'static str, HashMap<String, (u32, Instant)>>,
    prune_at: usize,
}

impl Counters {
    fn len(&self) -> usize {
        self.windows.values().map(HashMap::len).sum()
    }

    fn prune(&mut self, now: Instant) {
        for keys in self.windows.values_mut() {
            keys.retain(|_, (_, ends)| *ends > now);
            keys.shrink_to_fit();
        }
        self.windows.retain(|_, keys| !keys.is_empty());
        self.prune_at = self.len().saturating_mul(2).max(PRUNE_THRESHOLD);
    }
}

/// When a window opened `now` closes (a century at most, so that an absurd
/// duration cannot overflow `Instant`).
fn window_end(now: Instant, window: &Window) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(window.window.min(CENTURY)).unwrap_or(now)
}

pub(super) struct LocalStore {
    buckets: RwLock<HashMap<&'static str, Arc<Bucket>>>,
    counters: Mutex<Counters>,
    /// Whether any failure counter is held (set under the lock): while
    /// none is, reading a count takes no lock.
    counting: AtomicBool,
}

impl LocalStore {
    pub(super) fn new() -> Self {
        Self {
            buckets: RwLock::new(HashMap::new()),
            counters: Mutex::new(Counters {
                windows: HashMap::new(),
                prune_at: PRUNE_THRESHOLD,
            }),
            counting: AtomicBool::new(false),
        }
    }

    /// The limiter of `rule`, created on first use and replaced when the
    /// rule's quota changed.
    fn bucket(&self, rule: &Rule, limit: NonZeroU32) -> Arc<Bucket> {
        {
            let buckets = self.buckets.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(bucket) = buckets.get(rule.name).filter(|b| b.matches(rule, limit)) {
                return Arc::clone(bucket);
            }
        }
        let mut buckets = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        match buckets.get(rule.name) {
            Some(bucket) if bucket.matches(rule, limit) => Arc::clone(bucket),
            _ => {
                let bucket = Arc::new(Bucket::new(limit, rule.period));
                buckets.insert(rule.name, Arc::clone(&bucket));
                bucket
            }
        }
    }

    pub(super) fn check(&self, rule: &Rule, key: &str) -> Decision {
        let Some(limit) = NonZeroU32::new(rule.limit) else {
            return Decision::never(rule);
        };
        // The usual case under the read lock, without touching the
        // bucket's reference count.
        {
            let buckets = self.buckets.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(bucket) = buckets.get(rule.name).filter(|b| b.matches(rule, limit)) {
                return bucket.check(rule, limit, key);
            }
        }
        self.bucket(rule, limit).check(rule, limit, key)
    }

    pub(super) fn failures(&self, window: &Window, key: &str) -> u32 {
        if !self.counting.load(Ordering::Relaxed) {
            return 0;
        }
        let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        match counters
            .windows
            .get(window.name)
            .and_then(|keys| keys.get(key))
        {
            Some(&(count, ends)) if ends > Instant::now() => count,
            _ => 0,
        }
    }

    pub(super) fn record_failure(&self, window: &Window, key: &str) -> u32 {
        let now = Instant::now();
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let keys = counters.windows.entry(window.name).or_default();
        let count = match keys.get_mut(key) {
            Some((count, ends)) if *ends > now => {
                *count = count.saturating_add(1);
                *count
            }
            Some(entry) => {
                *entry = (1, window_end(now, window));
                1
            }
            None => {
                keys.insert(key.to_owned(), (1, window_end(now, window)));
                1
            }
        };
        if counters.len() >= counters.prune_at {
            counters.prune(now);
        }
        self.counting.store(true, Ordering::Relaxed);
        count
    }

    pub(super) fn reset_failures(&self, window: &Window, key: &str) {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(keys) = counters.windows.get_mut(window.name) {
            keys.remove(key);
        }
        self.counting.store(counters.len() > 0, Ordering::Relaxed);
    }

    /// Drops idle buckets and expired counters and gives the memory back.
    pub(super) fn prune(&self) {
        let buckets: Vec<Arc<Bucket>> = {
            let buckets = self.buckets.read().unwrap_or_else(PoisonError::into_inner);
            buckets.values().cloned().collect()
        };
        for bucket in buckets {
            bucket.prune();
        }
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        counters.prune(Instant::now());
        self.counting.store(counters.len() > 0, Ordering::Relaxed);
    }

    /// How many keys `rule`'s limiter holds (tests of the pruning).
    #[cfg(test)]
    pub(super) fn bucket_len(&self, rule: &Rule) -> usize {
        let buckets = self.buckets.read().unwrap_or_else(PoisonError::into_inner);
        buckets.get(rule.name).map_or(0, |b| b.limiter.len())
    }

    /// How many failure counters are held (tests of the pruning).
    #[cfg(test)]
    pub(super) fn counter_len(&self) -> usize {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
