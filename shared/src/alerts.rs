//! Security alerts: rules evaluated in-process over sliding windows.
//!
//! Each rule keeps the events of its window (at most [`MAX_EVENTS`], the
//! oldest dropped first) and fires when its condition holds: once, as a
//! warning line of target [`TARGET`] (JSON under `LOG_FORMAT=json`), a count
//! in `portcullis_security_alerts_total{rule}`, and an entry in [`list`]
//! (the auth server's `GET /api/v2/admin/alerts`). It does not fire again
//! while the condition holds, and clears (an `info` line, the entry marked
//! `cleared`) once it no longer does; it fires again at most once per
//! window. An alert carries what was seen (counts, rate), since when (the
//! oldest event of the window) and the top offending addresses or clients.
//!
//! The rules and their variables (read from the environment at first use;
//! a bad value keeps the default, with a warning):
//!
//! | rule | fires when, within `ALERT_WINDOW_SECS` (300) |
//! | --- | --- |
//! | `login_failure_rate` | failed / all sign-ins > `ALERT_LOGIN_FAILURE_RATE` (0.05) with at least `ALERT_LOGIN_MIN_ATTEMPTS` (20) sign-ins |
//! | `auth_failure_spike` | at least `ALERT_AUTH_FAILURES` (50) answers 401 or 403 |
//! | `suspicious_input` | at least `ALERT_SUSPICIOUS_INPUTS` (1) refused injection patterns |
//! | `rate_limit_abuse` | at least `ALERT_RATE_LIMIT_HITS` (20) answers 429 to one address |
//! | `refresh_token_reuse` | any refresh-token reuse |
//! | `revoked_api_key` | any use of a revoked API key (an `api_key.revoked_use` audit event, or [`revoked_api_key_used`]) |
//!
//! With Redis configured ([`share_counts`], `REDIS_URL`), the window counts
//! are shared by every instance (see [`shared_counts`]): each event is one
//! atomic Lua script that adds it to per-rule buckets in Redis and evaluates
//! the rule on the totals of all instances, and a `SET NX EX` marker per
//! rule and window lets only one instance fire (and list) the alert. When
//! Redis does not answer (250 ms deadline, one warning per outage, retried
//! every second, as [`crate::limit`]) each instance evaluates its own events
//! in process. Without Redis each instance alerts on its own share of the
//! traffic. The resource API evaluates the same rules on its own events
//! (401/403, 429, suspicious input) and reports them in its logs and
//! metrics only.

pub mod shared_counts;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::limit::{Limiter, StoreStatus};

/// The log target of alert lines.
pub const TARGET: &str = "security_alert";

/// Most events one rule keeps (bounded memory under a flood).
pub const MAX_EVENTS: usize = 10_000;

/// Most alerts [`list`] keeps (the oldest dropped first).
pub const MAX_ALERTS: usize = 100;

/// Offenders listed in an alert.
const TOP_OFFENDERS: usize = 5;

/// The rules' thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub window: Duration,
    pub login_failure_rate: f64,
    pub login_min_attempts: u32,
    pub auth_failures: u32,
    pub suspicious_inputs: u32,
    pub rate_limit_hits: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            login_failure_rate: 0.05,
            login_min_attempts: 20,
            auth_failures: 50,
            suspicious_inputs: 1,
            rate_limit_hits: 20,
        }
    }
}

impl Thresholds {
    /// From `ALERT_*` variables read by `get` (the environment, or a map in
    /// tests); a missing or bad value keeps the default.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        let d = Self::default();
        fn read<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            name: &str,
            ok: impl Fn(&T) -> bool,
            default: T,
        ) -> T {
            match get(name).filter(|v| !v.trim().is_empty()) {
                None => default,
                Some(v) => match v.trim().parse::<T>() {
                    Ok(value) if ok(&value) => value,
                    _ => {
                        tracing::warn!(
                            variable = name,
                            "ignored: not a valid value; using the default"
                        );
                        default
                    }
                },
            }
        }
        Self {
            window: Duration::from_secs(read(
                &get,
                "ALERT_WINDOW_SECS",
                |v: &u64| (10..=86_400).contains(v),
                d.window.as_secs(),
            )),
            login_failure_rate: read(
                &get,
                "ALERT_LOGIN_FAILURE_RATE",
                |v: &f64| (0.0..1.0).contains(v),
                d.login_failure_rate,
            ),
            login_min_attempts: read(
                &get,
                "ALERT_LOGIN_MIN_ATTEMPTS",
                |v: &u32| *v >= 1,
                d.login_min_attempts,
            ),
            auth_failures: read(
                &get,
                "ALERT_AUTH_FAILURES",
                |v: &u32| *v >= 1,
                d.auth_failures,
            ),
            suspicious_inputs: read(
                &get,
                "ALERT_SUSPICIOUS_INPUTS",
                |v: &u32| *v >= 1,
                d.suspicious_inputs,
            ),
            rate_limit_hits: read(
                &get,
                "ALERT_RATE_LIMIT_HITS",
                |v: &u32| *v >= 1,
                d.rate_limit_hits,
            ),
        }
    }
}

/// The rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    LoginFailureRate,
    AuthFailureSpike,
    SuspiciousInput,
    RateLimitAbuse,
    RefreshTokenReuse,
    RevokedApiKey,
}

impl Rule {
    pub const ALL: [Rule; 6] = [
        Rule::LoginFailureRate,
        Rule::AuthFailureSpike,
        Rule::SuspiciousInput,
        Rule::RateLimitAbuse,
        Rule::RefreshTokenReuse,
        Rule::RevokedApiKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::LoginFailureRate => "login_failure_rate",
            Rule::AuthFailureSpike => "auth_failure_spike",
            Rule::SuspiciousInput => "suspicious_input",
            Rule::RateLimitAbuse => "rate_limit_abuse",
            Rule::RefreshTokenReuse => "refresh_token_reuse",
            Rule::RevokedApiKey => "revoked_api_key",
        }
    }
}

/// One event a rule counts: when, who (an address or a client, if known),
/// and whether it is a failure (the login rule counts both).
#[derive(Debug, Clone)]
struct Event {
    at: Instant,
    offender: Option<String>,
    bad: bool,
}

/// An offender and its count within the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Offender {
    pub who: String,
    pub count: u32,
}

/// An alert, as listed and logged.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub rule: Rule,
    /// `active` or `cleared`.
    pub status: &'static str,
    pub summary: String,
    /// The oldest event of the window that fired it (RFC 3339).
    pub since: String,
    pub fired_at: String,
    pub cleared_at: Option<String>,
    pub window_secs: u64,
    /// Events of the window that count against the rule.
    pub count: u32,
    /// All events of the window (sign-ins for the login rule).
    pub total: u32,
    pub threshold: String,
    pub top_offenders: Vec<Offender>,
}

#[derive(Debug, Default)]
struct RuleState {
    events: VecDeque<Event>,
    bad: u32,
    /// Bad events of the window per offender (kept with `events`, so that a
    /// flood costs no scan per event).
    by_offender: HashMap<String, u32>,
    /// An alert of this rule is active.
    active: bool,
    last_fired: Option<Instant>,
    /// The shared totals (all instances) at the last event counted in Redis;
    /// while younger than the window, they decide and only the Redis marker
    /// fires.
    shared: Option<(Instant, Counts)>,
}

/// What Redis answered for one event: the shared counts, whether the rule
/// holds on them, and whether this instance set the rule's marker (then it
/// fires here; no other instance does in this window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedVerdict {
    pub counts: Counts,
    pub holds: bool,
    pub fired: bool,
}

/// A rule's counts within the window: all events, bad events, and the most
/// bad events of one offender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub total: u32,
    pub bad: u32,
    pub most: u32,
}

/// The rules' state; the process has one (behind [`list`] and the
/// `observe_*` functions).
#[derive(Debug)]
pub struct Engine {
    thresholds: Thresholds,
    rules: HashMap<Rule, RuleState>,
    alerts: VecDeque<Alert>,
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Engine {
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            rules: HashMap::new(),
            alerts: VecDeque::new(),
        }
    }

    /// Counts an event for `rule` at `now` and evaluates the rule; returns
    /// the alert it fired, if any.
    pub fn observe(
        &mut self,
        rule: Rule,
        offender: Option<String>,
        bad: bool,
        now: Instant,
    ) -> Option<Alert> {
        self.record(rule, offender, bad, now);
        self.evaluate(rule, now)
    }

    /// The engine's thresholds.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Counts an event whose shared totals Redis returned (`verdict`); it
    /// fires here only when this instance set the rule's marker.
    pub fn observe_shared(
        &mut self,
        rule: Rule,
        offender: Option<String>,
        bad: bool,
        now: Instant,
        verdict: SharedVerdict,
    ) -> Option<Alert> {
        let SharedVerdict {
            counts,
            holds,
            fired,
        } = verdict;
        self.record(rule, offender, bad, now);
        self.rules.entry(rule).or_default().shared = Some((now, counts));
        // Drops old events and clears what no longer holds; never fires.
        self.evaluate(rule, now);
        let t = self.thresholds.clone();
        let state = self.rules.entry(rule).or_default();
        if !holds || state.active {
            return None;
        }
        state.active = true;
        state.last_fired = Some(now);
        if !fired {
            // Another instance fired it.
            return None;
        }
        let threshold = condition(&t, rule, counts).1;
        let alert = make_alert(rule, &t, state, counts, threshold, now);
        push(&mut self.alerts, alert.clone());
        Some(alert)
    }

    /// Forgets the shared totals: Redis does not answer, the local events
    /// decide again.
    pub fn forget_shared(&mut self, rule: Rule) {
        if let Some(state) = self.rules.get_mut(&rule) {
            state.shared = None;
        }
    }

    /// Adds an event to `rule`'s window (the oldest dropped at the bound).
    fn record(&mut self, rule: Rule, offender: Option<String>, bad: bool, now: Instant) {
        let state = self.rules.entry(rule).or_default();
        if state.events.len() >= MAX_EVENTS {
            state.drop_oldest();
        }
        if bad && let Some(who) = &offender {
            *state.by_offender.entry(who.clone()).or_default() += 1;
        }
        state.events.push_back(Event {
            at: now,
            offender,
            bad,
        });
        state.bad += u32::from(bad);
    }

    /// Drops the events older than the window and fires or clears `rule`.
    fn evaluate(&mut self, rule: Rule, now: Instant) -> Option<Alert> {
        let t = self.thresholds.clone();
        let state = self.rules.entry(rule).or_default();
        while let Some(first) = state.events.front() {
            if now.saturating_duration_since(first.at) <= t.window {
                break;
            }
            state.drop_oldest();
        }
        let shared = state
            .shared
            .filter(|(at, _)| now.saturating_duration_since(*at) <= t.window)
            .map(|(_, counts)| counts);
        if shared.is_none() {
            state.shared = None;
        }
        let counts = shared.unwrap_or_else(|| Counts {
            total: u32::try_from(state.events.len()).unwrap_or(u32::MAX),
            bad: state.bad,
            most: state.by_offender.values().copied().max().unwrap_or(0),
        });
        let (holds, threshold) = condition(&t, rule, counts);
        if state.active && !holds {
            state.active = false;
            if let Some(alert) = self
                .alerts
                .iter_mut()
                .rev()
                .find(|a| a.rule == rule && a.status == "active")
            {
                alert.status = "cleared";
                alert.cleared_at = Some(rfc3339(SystemTime::now()));
                tracing::info!(target: TARGET, rule = rule.as_str(), "security alert cleared");
            }
            return None;
        }
        let once_per_window = state
            .last_fired
            .is_none_or(|last| now.saturating_duration_since(last) >= t.window);
        // With fresh shared totals only the Redis marker fires.
        if state.active || !holds || !once_per_window || shared.is_some() {
            return None;
        }
        state.active = true;
        state.last_fired = Some(now);
        let alert = make_alert(rule, &t, state, counts, threshold, now);
        push(&mut self.alerts, alert.clone());
        Some(alert)
    }

    /// Re-evaluates every rule at `now` (clears what no longer holds) and
    /// returns the alerts, newest first.
    pub fn alerts(&mut self, now: Instant) -> Vec<Alert> {
        for rule in Rule::ALL {
            if self.rules.contains_key(&rule) {
                self.evaluate(rule, now);
            }
        }
        self.alerts.iter().rev().cloned().collect()
    }
}

/// Keeps at most [`MAX_ALERTS`] alerts, the oldest dropped first.
fn push(alerts: &mut VecDeque<Alert>, alert: Alert) {
    if alerts.len() >= MAX_ALERTS {
        alerts.pop_front();
    }
    alerts.push_back(alert);
}

/// Whether `rule` holds on `counts`, and its threshold as text.
fn condition(t: &Thresholds, rule: Rule, counts: Counts) -> (bool, String) {
    let Counts { total, bad, most } = counts;
    match rule {
        Rule::LoginFailureRate => (
            total >= t.login_min_attempts
                && f64::from(bad) / f64::from(total.max(1)) > t.login_failure_rate,
            format!(
                "failure rate > {} with at least {} sign-ins",
                t.login_failure_rate, t.login_min_attempts
            ),
        ),
        Rule::AuthFailureSpike => (
            bad >= t.auth_failures,
            format!(">= {} answers 401/403", t.auth_failures),
        ),
        Rule::SuspiciousInput => (
            bad >= t.suspicious_inputs,
            format!(">= {} suspicious inputs", t.suspicious_inputs),
        ),
        Rule::RateLimitAbuse => (
            most >= t.rate_limit_hits,
            format!(">= {} answers 429 to one address", t.rate_limit_hits),
        ),
        Rule::RefreshTokenReuse => (bad >= 1, ">= 1 refresh-token reuse".to_owned()),
        Rule::RevokedApiKey => (bad >= 1, ">= 1 use of a revoked API key".to_owned()),
    }
}

/// The alert `rule` fires on `counts`; since when and the top offenders come
/// from this instance's events.
fn make_alert(
    rule: Rule,
    t: &Thresholds,
    state: &RuleState,
    counts: Counts,
    threshold: String,
    now: Instant,
) -> Alert {
    let Counts { total, bad, .. } = counts;
    let oldest = state.events.front().map_or(now, |e| e.at);
    let since = SystemTime::now()
        .checked_sub(now.saturating_duration_since(oldest))
        .unwrap_or_else(SystemTime::now);
    let summary = match rule {
        Rule::LoginFailureRate => format!("{bad} of {total} sign-ins failed"),
        Rule::AuthFailureSpike => format!("{bad} answers 401/403"),
        Rule::SuspiciousInput => format!("{bad} suspicious inputs refused"),
        Rule::RateLimitAbuse => format!("{bad} answers 429"),
        Rule::RefreshTokenReuse => format!("{bad} refresh tokens reused"),
        Rule::RevokedApiKey => format!("{bad} uses of revoked API keys"),
    };
    Alert {
        rule,
        status: "active",
        summary,
        since: rfc3339(since),
        fired_at: rfc3339(SystemTime::now()),
        cleared_at: None,
        window_secs: t.window.as_secs(),
        count: bad,
        total,
        threshold,
        top_offenders: top_offenders(&state.by_offender, TOP_OFFENDERS),
    }
}

impl RuleState {
    /// Forgets the oldest event.
    fn drop_oldest(&mut self) {
        let Some(old) = self.events.pop_front() else {
            return;
        };
        if !old.bad {
            return;
        }
        self.bad -= 1;
        if let Some(who) = old.offender
            && let Some(count) = self.by_offender.get_mut(&who)
        {
            *count -= 1;
            if *count == 0 {
                self.by_offender.remove(&who);
            }
        }
    }
}

/// The offenders of the bad events, most frequent first.
fn top_offenders(counts: &HashMap<String, u32>, n: usize) -> Vec<Offender> {
    let mut top: Vec<Offender> = counts
        .iter()
        .map(|(who, count)| Offender {
            who: who.clone(),
            count: *count,
        })
        .collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.who.cmp(&b.who)));
    top.truncate(n);
    top
}

static GLOBAL: LazyLock<Mutex<Engine>> = LazyLock::new(|| {
    Mutex::new(Engine::new(Thresholds::from_vars(|name| {
        std::env::var(name).ok()
    })))
});

/// The process's shared counts, once [`share_counts`] ran.
static SHARED: OnceLock<Arc<shared_counts::SharedCounts>> = OnceLock::new();

/// Shares the process's rule counts through `limiter`'s Redis (`REDIS_URL`,
/// keys under `REDIS_KEY_PREFIX`); without Redis it changes nothing. The
/// first call wins (one engine per process).
pub fn share_counts(limiter: &Limiter) {
    if limiter.status() != StoreStatus::Local {
        let _ = SHARED.set(Arc::new(shared_counts::SharedCounts::new(limiter.clone())));
    }
}

/// Counts an event in the process's engine and reports what fires: through
/// Redis (in a task) when shared, else in process.
fn observe(rule: Rule, offender: Option<String>, bad: bool) {
    if let Some(shared) = SHARED.get()
        && let Ok(handle) = tokio::runtime::Handle::try_current()
    {
        let shared = Arc::clone(shared);
        handle.spawn(async move {
            if let Some(alert) = shared.observe(&GLOBAL, rule, offender, bad).await {
                report(&alert);
            }
        });
        return;
    }
    let fired = match GLOBAL.lock() {
        Ok(mut engine) => engine.observe(rule, offender, bad, Instant::now()),
        Err(_) => None,
    };
    if let Some(alert) = fired {
        report(&alert);
    }
}

/// The log line and the counter of a fired alert.
fn report(alert: &Alert) {
    metrics::counter!("portcullis_security_alerts_total", "rule" => alert.rule.as_str())
        .increment(1);
    let offenders = serde_json::to_string(&alert.top_offenders).unwrap_or_default();
    tracing::warn!(
        target: TARGET,
        rule = alert.rule.as_str(),
        summary = %alert.summary,
        since = %alert.since,
        count = alert.count,
        total = alert.total,
        window_secs = alert.window_secs,
        threshold = %alert.threshold,
        top_offenders = %offenders,
        "security alert"
    );
}

/// The process's alerts, newest first (rules re-evaluated first).
pub fn list() -> Vec<Alert> {
    GLOBAL
        .lock()
        .map(|mut engine| engine.alerts(Instant::now()))
        .unwrap_or_default()
}

/// An answer of either service (`crate::metrics::http_request`): 401/403
/// and 429 count.
pub fn observe_response(status: u16, client_ip: Option<IpAddr>) {
    // Named only for the answers a rule counts (not on every 200).
    let who = || client_ip.map(|ip| format!("ip:{ip}"));
    match status {
        401 | 403 => observe(Rule::AuthFailureSpike, who(), true),
        429 => observe(Rule::RateLimitAbuse, who(), true),
        _ => {}
    }
}

/// An audited security event (`crate::metrics::security_event`).
pub fn observe_event(kind: &str, client_id: Option<&str>, detail: &serde_json::Value) {
    let ip = detail
        .get("client_ip")
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse::<IpAddr>().ok())
        .map(|ip| format!("ip:{ip}"));
    let client = client_id.map(|c| format!("client:{}", clean(c)));
    match kind {
        "login.failed" => observe(Rule::LoginFailureRate, ip, true),
        "login.succeeded" => observe(Rule::LoginFailureRate, ip, false),
        "suspicious_input" => observe(Rule::SuspiciousInput, ip.or(client), true),
        "refresh_token.reuse_detected" => observe(Rule::RefreshTokenReuse, client, true),
        // `shared::api_key::AUDIT_REVOKED_USE`.
        "api_key.revoked_use" => observe(Rule::RevokedApiKey, client.or(ip), true),
        _ => {}
    }
}

/// A request presented a revoked API key: fires `revoked_api_key`.
/// `client_id` is the key's client, `ip` the caller. (Auditing the use as
/// `api_key.revoked_use` does the same through [`observe_event`]: call
/// one or the other.)
pub fn revoked_api_key_used(client_id: Option<&str>, ip: Option<IpAddr>) {
    let who = client_id
        .map(|c| format!("client:{}", clean(c)))
        .or_else(|| ip.map(|ip| format!("ip:{ip}")));
    observe(Rule::RevokedApiKey, who, true);
}

/// Offender names stay printable and short.
fn clean(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn engine() -> Engine {
        Engine::new(Thresholds::default())
    }

    /// `failed` failures spread over `total` sign-ins, one a second.
    fn logins(engine: &mut Engine, total: u32, failed: u32, start: Instant) -> Vec<Alert> {
        let mut fired = Vec::new();
        for i in 0..total {
            // Failures evenly spread.
            let bad = (i * failed) / total != ((i + 1) * failed) / total;
            let ip = if bad {
                "ip:203.0.113.7"
            } else {
                "ip:198.51.100.1"
            };
            let at = start + Duration::from_millis(u64::from(i) * 100);
            fired.extend(engine.observe(Rule::LoginFailureRate, Some(ip.into()), bad, at));
        }
        fired
    }

    #[test]
    fn login_failure_rate_fires_once_on_30_failures_out_of_100() {
        let mut engine = engine();
        let fired = logins(&mut engine, 100, 30, Instant::now());
        assert_eq!(fired.len(), 1, "{fired:?}");
        let alert = &fired[0];
        assert_eq!(alert.rule, Rule::LoginFailureRate);
        assert_eq!(alert.top_offenders[0].who, "ip:203.0.113.7");
        assert!(
            alert.summary.contains("sign-ins failed"),
            "{}",
            alert.summary
        );
    }

    #[test]
    fn login_failure_rate_stays_quiet_on_2_failures_out_of_100() {
        let mut engine = engine();
        assert!(logins(&mut engine, 100, 2, Instant::now()).is_empty());
        assert!(engine.alerts(Instant::now()).is_empty());
    }

    #[test]
    fn login_failure_rate_needs_the_minimum_attempts() {
        let mut engine = engine();
        // 5 of 10 failed: a high rate, too few attempts.
        assert!(logins(&mut engine, 10, 5, Instant::now()).is_empty());
    }

    #[test]
    fn an_alert_clears_once_the_window_passes_and_can_fire_again() {
        let mut engine = engine();
        let start = Instant::now();
        assert_eq!(logins(&mut engine, 100, 30, start).len(), 1);
        let later = start + Duration::from_secs(400);
        let alerts = engine.alerts(later);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].status, "cleared");
        assert!(alerts[0].cleared_at.is_some());
        assert_eq!(logins(&mut engine, 100, 30, later).len(), 1);
        assert_eq!(engine.alerts(later).len(), 2);
    }

    #[test]
    fn auth_failure_spike_fires_on_50_and_not_on_10() {
        let mut engine = engine();
        let now = Instant::now();
        let mut fired = Vec::new();
        for _ in 0..10 {
            fired.extend(engine.observe(Rule::AuthFailureSpike, None, true, now));
        }
        assert!(fired.is_empty());
        for _ in 0..40 {
            fired.extend(engine.observe(
                Rule::AuthFailureSpike,
                Some("ip:192.0.2.9".into()),
                true,
                now,
            ));
        }
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].count, 50);
    }

    #[test]
    fn rate_limit_abuse_counts_per_address() {
        let mut engine = engine();
        let now = Instant::now();
        // 19 addresses with 19 refusals each: no single abuser.
        for a in 0..19 {
            for _ in 0..19 {
                let fired = engine.observe(
                    Rule::RateLimitAbuse,
                    Some(format!("ip:192.0.2.{a}")),
                    true,
                    now,
                );
                assert!(fired.is_none());
            }
        }
        let fired = engine.observe(Rule::RateLimitAbuse, Some("ip:192.0.2.3".into()), true, now);
        let alert = fired.unwrap();
        assert_eq!(
            alert.top_offenders[0],
            Offender {
                who: "ip:192.0.2.3".into(),
                count: 20
            }
        );
    }

    #[test]
    fn any_refresh_reuse_suspicious_input_or_revoked_key_fires() {
        let mut engine = engine();
        let now = Instant::now();
        for rule in [
            Rule::RefreshTokenReuse,
            Rule::SuspiciousInput,
            Rule::RevokedApiKey,
        ] {
            let alert = engine
                .observe(rule, Some("client:c_1".into()), true, now)
                .unwrap();
            assert_eq!(alert.rule, rule);
            // Once: a second event in the window does not fire again.
            assert!(
                engine
                    .observe(rule, Some("client:c_1".into()), true, now)
                    .is_none()
            );
        }
        // Normal traffic: no such event, no alert.
        let mut quiet = self::engine();
        assert!(quiet.alerts(now).is_empty());
    }

    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let mut engine = engine();
        let now = Instant::now();
        for i in 0..(MAX_EVENTS + 500) {
            engine.observe(Rule::AuthFailureSpike, Some(format!("ip:{i}")), true, now);
        }
        let state = &engine.rules[&Rule::AuthFailureSpike];
        assert_eq!(state.events.len(), MAX_EVENTS);
        assert_eq!(state.by_offender.len(), MAX_EVENTS);
        assert_eq!(state.bad as usize, MAX_EVENTS);
    }

    use crate::test_util::Captured;

    #[test]
    fn a_fired_alert_is_one_json_warning_line_of_target_security_alert() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = crate::telemetry::json_subscriber(
            tracing_subscriber::EnvFilter::new("info"),
            move || writer.clone(),
        );
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut engine = engine();
        let alert = logins(&mut engine, 100, 30, Instant::now()).pop().unwrap();
        report(&alert);
        let text = captured.text();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line = &lines[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], TARGET);
        assert_eq!(line["rule"], "login_failure_rate");
        assert!(line["since"].as_str().unwrap().contains('T'), "{line}");
        assert!(
            line["top_offenders"]
                .as_str()
                .unwrap()
                .contains("ip:203.0.113.7"),
            "{line}"
        );
    }

    #[test]
    fn thresholds_read_variables_and_keep_defaults_for_bad_values() {
        let t = Thresholds::from_vars(|name| match name {
            "ALERT_WINDOW_SECS" => Some("60".into()),
            "ALERT_LOGIN_FAILURE_RATE" => Some("2".into()),
            _ => None,
        });
        assert_eq!(t.window, Duration::from_secs(60));
        assert_eq!(t.login_failure_rate, 0.05);
    }
}
