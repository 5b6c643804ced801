//! The one place that reads the wall clock; everything else gets a `Clock`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The current time, injected so tests can fix it.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(SystemTime::now))
    }

    /// A clock reading `now` (tests: a clock they move).
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// A clock stopped at `unix_millis`.
    pub fn fixed(unix_millis: u64) -> Self {
        let at = UNIX_EPOCH + Duration::from_millis(unix_millis);
        Self(Arc::new(move || at))
    }

    fn since_epoch(&self) -> Duration {
        (self.0)().duration_since(UNIX_EPOCH).unwrap_or_default()
    }

    /// Unix seconds.
    pub fn unix_seconds(&self) -> i64 {
        i64::try_from(self.since_epoch().as_secs()).unwrap_or(i64::MAX)
    }

    /// Unix milliseconds.
    pub fn unix_millis(&self) -> u64 {
        u64::try_from(self.since_epoch().as_millis()).unwrap_or(u64::MAX)
    }
}
