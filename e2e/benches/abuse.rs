//! Abuse resistance of `auth-server` under load (issue 7): printed figures,
//! never timed assertions.
//!
//! 1. Enumeration timing: sign-ins with an unknown email and with a known
//!    email and a wrong password, interleaved, each from its own address;
//!    the latency of each `POST /login` per class.
//! 2. Login flood: a victim refreshing tokens and a `/healthz` prober, first
//!    alone (baseline), then while 256 sessions post wrong passwords as fast
//!    as they can, (a) from one address with the default limits, (b) as a
//!    botnet (one address each) with the per-IP limits lifted, so that only
//!    the password-hashing gate bounds the work.
//!
//! Runs the real binaries (see `e2e::binaries`):
//!
//! ```sh
//! cargo build --release -p auth-server -p resource-api
//! E2E_BIN_DIR="$PWD/target/release" cargo bench -p e2e --bench abuse
//! ```
//!
//! `E2E_BIN_DIR` must be absolute: cargo runs a bench in its package folder
//! (`e2e/`). Without it, the bench uses those of its own profile
//! (`target/release`), built by the first command above (`E2E_BUILD=1`
//! builds them first). Under `cargo test --benches` it only says it skipped.
//!
//! Arguments after `--` pick scenarios (`1`, `2a`, `2b`; all by default).
//! `ABUSE_AUTH_ENV="K=V,K=V"` adds environment to the flood's auth-server,
//! for diagnosis (e.g. `MALLOC_ARENA_MAX=2`); `ABUSE_FLOOD_SECS` sets the
//! flood's length (20 s).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::binaries::{Binaries, BuildPolicy};
use e2e::browser::query_param;
use e2e::oauth::{ClientAuth, Pkce, random_token};
use e2e::procfs::memory;
use e2e::{Browser, ClientSpec, Stack, StackOptions};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const PASSWORD: &str = "correct horse battery staple";
const WRONG_PASSWORD: &str = "not the password 123";
/// Every client request of the bench gives up after this (a timeout counts
/// as an error).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Scenario 1.
const ENUM_SIGN_INS: usize = 200;
const ENUM_WARM_UP: usize = 10;
/// Known accounts the wrong passwords are spread over (each stays far below
/// `LOCKOUT_THRESHOLD`).
const ENUM_KNOWN_USERS: usize = 5;

/// Scenario 2.
const FLOOD_SESSIONS: usize = 256;
const BASELINE: Duration = Duration::from_secs(10);
/// The flood's length; `ABUSE_FLOOD_SECS` overrides it (to see whether
/// memory keeps growing).
const FLOOD: Duration = Duration::from_secs(20);
/// The victim and the prober pause this long between two requests.
const PROBE_PAUSE: Duration = Duration::from_millis(20);
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    if !std::env::args().any(|a| a == "--bench") {
        println!("abuse: load benchmark, skipped (run it with `cargo bench -p e2e --bench abuse`)");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    if let Some(dir) = std::env::var_os("E2E_BIN_DIR")
        && std::path::Path::new(&dir).is_relative()
    {
        eprintln!(
            "note: E2E_BIN_DIR={} is relative; cargo runs benches in {} (use \"$PWD/target/release\")",
            dir.to_string_lossy(),
            env!("CARGO_MANIFEST_DIR")
        );
    }
    let bins = Binaries::ensure_async(BuildPolicy::Always).await?;
    let started = Instant::now();
    println!("# auth-server abuse resistance (issue 7)");
    println!();
    println!("binary:     {}", bins.auth_server.display());
    println!(
        "cores:      {} (std::thread::available_parallelism)",
        cores()
    );
    println!(
        "bench side: flood on a {}-worker runtime; victim and prober on their own threads",
        cores()
    );
    println!(
        "client timeout: {} s (counted as an error)",
        REQUEST_TIMEOUT.as_secs()
    );
    println!();

    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |id: &str| picked.is_empty() || picked.iter().any(|p| p == id);
    let extra = extra_auth_env()?;

    if wanted("1") {
        enumeration_timing().await?;
    }

    let one_address = FloodPlan {
        title: "2a. Login flood, defaults: 256 sessions from one address",
        addresses: vec![fresh_ip()],
        env: Vec::new(),
    };
    if wanted("2a") {
        login_flood(one_address, &extra).await?;
    }

    let botnet = FloodPlan {
        title: "2b. Login flood, botnet: 256 sessions, one address each, per-IP limits lifted",
        addresses: (0..FLOOD_SESSIONS).map(|_| fresh_ip()).collect(),
        env: vec![
            ("RATE_LIMIT_LOGIN", "100000/minute"),
            ("LOCKOUT_THRESHOLD", "100"),
        ],
    };
    if wanted("2b") {
        login_flood(botnet, &extra).await?;
    }

    println!("total bench time: {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `ABUSE_AUTH_ENV`: `K=V` pairs separated by commas.
fn extra_auth_env() -> anyhow::Result<Vec<(String, String)>> {
    let Ok(raw) = std::env::var("ABUSE_AUTH_ENV") else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .with_context(|| format!("ABUSE_AUTH_ENV: {pair:?} is not K=V"))?;
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn flood_length() -> anyhow::Result<Duration> {
    match std::env::var("ABUSE_FLOOD_SECS") {
        Ok(secs) => Ok(Duration::from_secs(
            secs.parse().context("ABUSE_FLOOD_SECS is not a number")?,
        )),
        Err(_) => Ok(FLOOD),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A random address of the IPv6 documentation prefix.
fn fresh_ip() -> String {
    let id = uuid::Uuid::new_v4().as_u128();
    format!(
        "2001:db8:{:x}:{:x}:{:x}::1",
        (id >> 32) as u16,
        (id >> 16) as u16,
        id as u16
    )
}

fn http_client(cookies: bool) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building HTTP client")
}

// ---------------------------------------------------------------- figures

/// Latencies of answered requests and the count of each outcome.
#[derive(Debug, Default)]
struct Sample {
    latencies: Vec<Duration>,
    outcomes: BTreeMap<String, u64>,
}

impl Sample {
    fn answered(&mut self, status: StatusCode, latency: Duration) {
        self.latencies.push(latency);
        *self
            .outcomes
            .entry(status.as_u16().to_string())
            .or_default() += 1;
    }

    fn failed(&mut self, error: &anyhow::Error) {
        *self.outcomes.entry(error_class(error).into()).or_default() += 1;
    }

    /// Nearest-rank percentile, `q` in 0..=1.
    fn pct(&self, q: f64) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let n = sorted.len();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        sorted.get(rank - 1).copied()
    }

    fn max(&self) -> Option<Duration> {
        self.latencies.iter().max().copied()
    }

    fn outcomes(&self) -> String {
        self.outcomes
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn error_class(error: &anyhow::Error) -> &'static str {
    let reqwest = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<reqwest::Error>());
    match reqwest {
        Some(e) if e.is_timeout() => "timeout",
        Some(e) if e.is_connect() => "connect-error",
        _ => "error",
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0))
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".into(),
    }
}

// ---------------------------------------------------- 1. enumeration timing

async fn enumeration_timing() -> anyhow::Result<()> {
    let options = StackOptions::default()
        .without_resource_api()
        .auth_env("TRUSTED_PROXIES", "127.0.0.1/32");
    let settings = env_summary(&options);
    let stack = Stack::start(options).await?;
    let mut known = Vec::new();
    for i in 0..ENUM_KNOWN_USERS {
        let email = format!("known-{i}-{}@example.com", uuid::Uuid::new_v4().simple());
        known.push(stack.create_user(&email, "Known User", PASSWORD).await?);
    }
    let base = stack.auth.url.clone();

    // Class 0: unknown email; class 1: known email, wrong password.
    let mut samples = [Sample::default(), Sample::default()];
    let mut first = [None, None];
    for i in 0..ENUM_WARM_UP + ENUM_SIGN_INS {
        let class = i % 2;
        let email = if class == 0 {
            format!("nobody-{}@example.com", uuid::Uuid::new_v4().simple())
        } else {
            known
                .get((i / 2) % known.len())
                .map(|u| u.email.clone())
                .context("no known user")?
        };
        let (status, latency) = sign_in_timed(&base, &fresh_ip(), &email, WRONG_PASSWORD).await?;
        if let Some(slot) = first.get_mut(class)
            && slot.is_none()
        {
            *slot = Some((status, latency));
        }
        if i >= ENUM_WARM_UP
            && let Some(sample) = samples.get_mut(class)
        {
            sample.answered(status, latency);
        }
    }

    let [unknown, wrong] = &samples;
    println!("## 1. Enumeration timing");
    println!();
    println!("settings: {settings}");
    println!(
        "{ENUM_SIGN_INS} sign-ins, interleaved, sequential, each from a fresh address \
         (X-Forwarded-For); {ENUM_WARM_UP} warm-up sign-ins not counted; \
         wrong passwords spread over {ENUM_KNOWN_USERS} accounts; latency = POST /login until \
         the whole answer is read (keep-alive connection)"
    );
    println!();
    println!("| class | count | statuses | min ms | median ms | p90 ms | max ms |");
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: |");
    for (name, s) in [
        ("unknown email", unknown),
        ("known email, wrong password", wrong),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            s.latencies.len(),
            s.outcomes(),
            ms(s.pct(0.0)),
            ms(s.pct(0.5)),
            ms(s.pct(0.9)),
            ms(s.max()),
        );
    }
    println!();
    println!(
        "median unknown / median known-wrong: {}   p90 ratio: {}",
        ratio(unknown.pct(0.5), wrong.pct(0.5)),
        ratio(unknown.pct(0.9), wrong.pct(0.9)),
    );
    let [first_unknown, first_wrong] = first;
    if let (Some((su, lu)), Some((sw, lw))) = (first_unknown, first_wrong) {
        println!(
            "first sign-in after start (warm-up, not counted): unknown {} ms ({su}), \
             known-wrong {} ms ({sw})",
            ms(Some(lu)),
            ms(Some(lw))
        );
    }
    println!();
    Ok(())
}

/// GET /login then POST /login from `ip`; the POST's status and latency.
async fn sign_in_timed(
    base: &str,
    ip: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<(StatusCode, Duration)> {
    let http = http_client(true)?;
    let (csrf, _) = login_form(&http, base, ip).await?;
    let started = Instant::now();
    let answer = http
        .post(format!("{base}/login"))
        .header("x-forwarded-for", ip)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("next", "/"),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .context("POST /login")?;
    let status = answer.status();
    answer.bytes().await.context("reading POST /login")?;
    Ok((status, started.elapsed()))
}

/// GET /login from `ip`: the form's `csrf_token` and the `name=value` of the
/// cookie that carries the same token (the double-submit cookie).
async fn login_form(
    http: &reqwest::Client,
    base: &str,
    ip: &str,
) -> anyhow::Result<(String, String)> {
    let page = http
        .get(format!("{base}/login"))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .context("GET /login")?;
    if page.status() != StatusCode::OK {
        bail!("GET /login from {ip}: {}", page.status());
    }
    let set_cookies: Vec<String> = page
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
        .collect();
    let html = page.text().await.context("reading GET /login")?;
    let form = e2e::html::form_with_action(&html, "/login").context("no login form")?;
    let csrf = form
        .get("csrf_token")
        .context("no csrf_token in the login form")?
        .to_owned();
    let cookie = set_cookies
        .into_iter()
        .find(|c| c.split_once('=').is_some_and(|(_, v)| v == csrf))
        .context("no cookie carries the login CSRF token")?;
    Ok((csrf, cookie))
}

/// The `auth_env` of `options`, last value of each key, as `K=V` list.
fn env_summary(options: &StackOptions) -> String {
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in &options.auth_env {
        last.insert(k, v);
    }
    if last.is_empty() {
        return "server defaults".into();
    }
    last.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------- 2. login flood

/// The server's defaults (auth-server `Settings::default`) of the settings
/// that bound a login flood, except those `settings` sets.
fn defaults_left(settings: &str) -> String {
    let concurrency = format!("0 (= {} cores)", cores());
    [
        ("RATE_LIMIT_LOGIN", "5/minute"),
        ("RATE_LIMIT_PAGES", "120/minute"),
        ("LOCKOUT_THRESHOLD", "5"),
        ("PASSWORD_HASH_CONCURRENCY", concurrency.as_str()),
        ("PASSWORD_HASH_QUEUE", "32"),
        ("PASSWORD_HASH_QUEUE_TIMEOUT_MS", "2000"),
    ]
    .into_iter()
    .filter(|(k, _)| !settings.contains(&format!("{k}=")))
    .map(|(k, v)| format!("{k}={v}"))
    .collect::<Vec<_>>()
    .join(", ")
}

struct FloodPlan {
    title: &'static str,
    /// One per session (cycled when fewer).
    addresses: Vec<String>,
    /// On top of the server's own defaults.
    env: Vec<(&'static str, &'static str)>,
}

/// What the victim needs to refresh tokens, and its current refresh token.
#[derive(Clone)]
struct Victim {
    token_url: String,
    client_id: String,
    client_secret: String,
    refresh_token: String,
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Flood answers by class.
#[derive(Default)]
struct FloodCounts {
    unauthorized: AtomicU64,
    too_many: AtomicU64,
    unavailable: AtomicU64,
    other_5xx: AtomicU64,
    other: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
}

impl FloodCounts {
    fn status(&self, status: StatusCode) {
        let counter = match status.as_u16() {
            401 => &self.unauthorized,
            429 => &self.too_many,
            503 => &self.unavailable,
            500..=599 => &self.other_5xx,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn total(&self) -> u64 {
        [
            &self.unauthorized,
            &self.too_many,
            &self.unavailable,
            &self.other_5xx,
            &self.other,
            &self.timeouts,
            &self.errors,
        ]
        .into_iter()
        .map(Self::get)
        .sum()
    }
}

async fn login_flood(plan: FloodPlan, extra: &[(String, String)]) -> anyhow::Result<()> {
    // The server's own defaults (not the e2e ones that lift the limits),
    // plus the proxy, the victim's token limit out of its own way, and the
    // plan's.
    let mut options = StackOptions {
        auth_env: Vec::new(),
        ..StackOptions::default()
    }
    .without_resource_api()
    .auth_env("TRUSTED_PROXIES", "127.0.0.1/32")
    .auth_env("RATE_LIMIT_TOKEN", "100000/minute");
    for (k, v) in &plan.env {
        options = options.auth_env(k, v);
    }
    for (k, v) in extra {
        options = options.auth_env(k, v);
    }
    let settings = env_summary(&options);
    let flood_len = flood_length()?;
    let stack = Stack::start(options).await?;
    let pid = stack.auth.id().context("auth-server has no pid")?;
    let victim = victim(&stack).await?;
    let healthz = format!("{}{}", stack.auth.url, shared::paths::HEALTHZ_PATH);
    let login_url = format!("{}/login", stack.auth.url);

    // Baseline.
    let (base_token, base_health, victim) = probe(BASELINE, victim, healthz.clone()).await?;
    let before = memory(pid)?;

    // One sign-in form per address (a page view each, as a browser would).
    let form_client = http_client(false)?;
    let mut forms = BTreeMap::new();
    for ip in &plan.addresses {
        if !forms.contains_key(ip) {
            forms.insert(
                ip.clone(),
                login_form(&form_client, &stack.auth.url, ip).await?,
            );
        }
    }

    // The flood, with the probes alongside.
    let flood_client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(FLOOD_SESSIONS)
        .build()
        .context("building the flood client")?;
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(FloodCounts::default());
    let mut sessions = Vec::with_capacity(FLOOD_SESSIONS);
    for i in 0..FLOOD_SESSIONS {
        let ip = plan
            .addresses
            .get(i % plan.addresses.len().max(1))
            .context("no address")?
            .clone();
        let (csrf, cookie) = forms.get(&ip).context("no form")?.clone();
        sessions.push(tokio::spawn(flood_session(
            flood_client.clone(),
            login_url.clone(),
            cookie,
            csrf,
            ip,
            stop.clone(),
            counts.clone(),
        )));
    }
    let flood_started = Instant::now();
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let earlier: HashSet<String> = stack.auth.logs.text().lines().map(str::to_owned).collect();
    let sampler = tokio::spawn(sample_server(
        pid,
        stack.auth.logs.clone(),
        earlier,
        sampler_stop.clone(),
    ));
    let (flood_token, flood_health, _victim) = probe(flood_len, victim, healthz).await?;
    let flood_secs = flood_started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for session in sessions {
        session.await.context("flood session")?;
    }
    let drained_secs = flood_started.elapsed().as_secs_f64();
    sampler_stop.store(true, Ordering::Relaxed);
    let sampled = sampler.await.context("sampler")?;
    let after = memory(pid)?;

    // Report.
    println!("## {}", plan.title);
    println!();
    println!("settings: {settings}");
    println!(
        "  server defaults of the rest: {}",
        defaults_left(&settings)
    );
    println!(
        "flood: {FLOOD_SESSIONS} sessions, {} address(es), each posting a wrong password for a \
         random unknown email, back to back, one login form (CSRF token + cookie) per address",
        forms.len()
    );
    println!(
        "victim: sequential refresh_token grants (client_secret_basic, rotating); prober: \
         sequential GET /healthz; {} ms pause between requests",
        PROBE_PAUSE.as_millis()
    );
    println!();
    let total = counts.total();
    println!(
        "flood answers in {flood_secs:.1} s (+{:.1} s for requests in flight at the stop): \
         {total} ({:.0}/s)",
        drained_secs - flood_secs,
        total as f64 / drained_secs
    );
    println!();
    println!("| 401 | 429 | 503 | other 5xx | other status | timeouts | connection errors |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | {} | {} | {} | {} | {} | {} |",
        FloodCounts::get(&counts.unauthorized),
        FloodCounts::get(&counts.too_many),
        FloodCounts::get(&counts.unavailable),
        FloodCounts::get(&counts.other_5xx),
        FloodCounts::get(&counts.other),
        FloodCounts::get(&counts.timeouts),
        FloodCounts::get(&counts.errors),
    );
    println!();
    println!(
        "| probe | phase | requests | outcomes | p50 ms | p99 ms | max ms | p50 ratio | p99 ratio |"
    );
    println!("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, base, flood) in [
        ("victim POST /token", &base_token, &flood_token),
        ("GET /healthz", &base_health, &flood_health),
    ] {
        let flood_phase = format!("flood {} s", flood_len.as_secs());
        let base_phase = format!("baseline {} s", BASELINE.as_secs());
        for (phase, s) in [(&base_phase, base), (&flood_phase, flood)] {
            let is_flood = std::ptr::eq(s, flood);
            println!(
                "| {name} | {phase} | {} | {} | {} | {} | {} | {} | {} |",
                s.outcomes.values().sum::<u64>(),
                s.outcomes(),
                ms(s.pct(0.5)),
                ms(s.pct(0.99)),
                ms(s.max()),
                if is_flood {
                    ratio(s.pct(0.5), base.pct(0.5))
                } else {
                    String::new()
                },
                if is_flood {
                    ratio(s.pct(0.99), base.pct(0.99))
                } else {
                    String::new()
                },
            );
        }
    }
    println!();
    println!("| auth-server memory | value |");
    println!("| --- | ---: |");
    println!("| VmRSS before the flood | {} |", mib(before.rss_kib));
    println!("| VmHWM before the flood | {} |", mib(before.hwm_kib));
    println!(
        "| VmRSS peak sampled during the flood | {} |",
        mib(sampled.peak_rss)
    );
    println!("| VmHWM (peak) after the flood | {} |", mib(after.hwm_kib));
    println!("| VmRSS after the flood | {} |", mib(after.rss_kib));
    println!(
        "| threads before / peak / after | {} / {} / {} |",
        before.threads, sampled.peak_threads, after.threads
    );
    println!();
    let timeline: Vec<String> = sampled
        .rss_by_5s
        .iter()
        .enumerate()
        .map(|(i, kib)| format!("{}–{} s: {}", i * 5, i * 5 + 5, mib(*kib)))
        .collect();
    println!("VmRSS peak per 5 s of the flood: {}", timeline.join(", "));
    println!();
    let log_lines = sampled.log_lines;
    // tower-http's "response failed" ERROR line per 5xx is switched off
    // (`shared::http`); counted to show it stays so. Anything else at WARN
    // or ERROR is the server's own.
    let access_5xx = log_lines
        .iter()
        .filter(|l| l.contains("ERROR") && l.contains("response failed"))
        .count();
    let other: Vec<&String> = log_lines
        .iter()
        .filter(|l| !(l.contains("ERROR") && l.contains("response failed")))
        .collect();
    println!(
        "auth-server log during the flood (sampled every {} ms from its last 5000 lines, so \
         a lower bound): {access_5xx} access-log ERROR line(s) for 5xx answers, {} other \
         WARN/ERROR/panic line(s)",
        SAMPLE_EVERY.as_millis(),
        other.len()
    );
    let mut shown = HashSet::new();
    for line in other {
        // One example per message (after the timestamp and span).
        let key = line.rsplit(": ").next().unwrap_or(line).to_owned();
        if shown.len() < 5 && shown.insert(key) {
            println!("  e.g. {line}");
        }
    }
    println!();
    Ok(())
}

/// A confidential client and a user; the code flow with PKCE once; the
/// refresh token it gave.
async fn victim(stack: &Stack) -> anyhow::Result<Victim> {
    let client = stack
        .create_client(&ClientSpec::confidential("victim app", REDIRECT))
        .await?;
    let email = format!("victim-{}@example.com", uuid::Uuid::new_v4().simple());
    let user = stack.create_user(&email, "Victim", PASSWORD).await?;
    let pkce = Pkce::new();
    let state = random_token();
    let url = stack.authorize_url(&[
        ("response_type", "code"),
        ("client_id", &client.id),
        ("redirect_uri", REDIRECT),
        ("scope", "notes:read"),
        ("state", &state),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
    ])?;
    let redirect = Browser::new()?
        .authorize_and_allow(&url, &user.email, &user.password)
        .await?;
    let code = query_param(&redirect, "code").with_context(|| format!("no code on {redirect}"))?;
    let answer = stack
        .token(
            client.basic(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await?;
    if answer.status != StatusCode::OK {
        bail!("code exchange: {answer}");
    }
    Ok(Victim {
        token_url: stack.endpoint("token_endpoint")?,
        client_id: client.id.clone(),
        client_secret: client.secret.clone().context("no client secret")?,
        refresh_token: answer.require("refresh_token")?,
    })
}

/// Runs the victim and the prober for `length`, each on its own thread and
/// current-thread runtime (so that the flood's tasks do not delay them in
/// this process).
async fn probe(
    length: Duration,
    victim: Victim,
    healthz: String,
) -> anyhow::Result<(Sample, Sample, Victim)> {
    let until = Instant::now() + length;
    let victim_thread = std::thread::spawn(move || -> anyhow::Result<(Sample, Victim)> {
        single_thread()?.block_on(victim_loop(victim, until))
    });
    let health_thread = std::thread::spawn(move || -> anyhow::Result<Sample> {
        single_thread()?.block_on(healthz_loop(healthz, until))
    });
    tokio::task::spawn_blocking(move || {
        let victim = victim_thread
            .join()
            .map_err(|_| anyhow::anyhow!("victim thread panicked"))??;
        let health = health_thread
            .join()
            .map_err(|_| anyhow::anyhow!("prober thread panicked"))??;
        Ok((victim.0, health, victim.1))
    })
    .await
    .context("probe task")?
}

fn single_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a probe runtime")
}

async fn victim_loop(mut victim: Victim, until: Instant) -> anyhow::Result<(Sample, Victim)> {
    let http = http_client(false)?;
    let mut sample = Sample::default();
    while Instant::now() < until {
        let started = Instant::now();
        let answer = e2e::oauth::post_form(
            &http,
            &victim.token_url,
            ClientAuth::Basic {
                id: &victim.client_id,
                secret: &victim.client_secret,
            },
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &victim.refresh_token),
            ],
        )
        .await;
        match answer {
            Ok(answer) => {
                sample.answered(answer.status, started.elapsed());
                if let Some(rotated) = answer.str("refresh_token") {
                    victim.refresh_token = rotated.to_owned();
                } else if let Some(error) = answer.error() {
                    *sample.outcomes.entry(error.to_owned()).or_default() += 1;
                }
            }
            Err(e) => sample.failed(&e),
        }
        tokio::time::sleep(PROBE_PAUSE).await;
    }
    Ok((sample, victim))
}

async fn healthz_loop(url: String, until: Instant) -> anyhow::Result<Sample> {
    let http = http_client(false)?;
    let mut sample = Sample::default();
    while Instant::now() < until {
        let started = Instant::now();
        let answer = async {
            let answer = http.get(&url).send().await?;
            let status = answer.status();
            answer.bytes().await?;
            anyhow::Ok(status)
        }
        .await;
        match answer {
            Ok(status) => sample.answered(status, started.elapsed()),
            Err(e) => sample.failed(&e),
        }
        tokio::time::sleep(PROBE_PAUSE).await;
    }
    Ok(sample)
}

/// One attacker: wrong passwords back to back until `stop`.
async fn flood_session(
    http: reqwest::Client,
    url: String,
    cookie: String,
    csrf: String,
    ip: String,
    stop: Arc<AtomicBool>,
    counts: Arc<FloodCounts>,
) {
    while !stop.load(Ordering::Relaxed) {
        let email = format!("spray-{}@example.com", uuid::Uuid::new_v4().simple());
        let answer = async {
            let answer = http
                .post(&url)
                .header(COOKIE, &cookie)
                .header("x-forwarded-for", &ip)
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("next", "/"),
                    ("email", email.as_str()),
                    ("password", WRONG_PASSWORD),
                ])
                .send()
                .await?;
            let status = answer.status();
            answer.bytes().await?;
            Ok::<_, reqwest::Error>(status)
        }
        .await;
        match answer {
            Ok(status) => counts.status(status),
            Err(e) if e.is_timeout() => {
                counts.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                // A refused connection fails at once: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// What [`sample_server`] saw.
struct Sampled {
    peak_rss: u64,
    peak_threads: u64,
    /// Peak VmRSS (KiB) of each 5 s since the start.
    rss_by_5s: Vec<u64>,
    log_lines: Vec<String>,
}

/// Until `stop`: the peak VmRSS and thread count of `pid`, and the WARN and
/// ERROR lines its log showed (each once, none of the `earlier` ones).
async fn sample_server(
    pid: u32,
    logs: e2e::service::Logs,
    mut seen: HashSet<String>,
    stop: Arc<AtomicBool>,
) -> Sampled {
    let started = Instant::now();
    let mut peak_rss = 0;
    let mut peak_threads = 0;
    let mut rss_by_5s: Vec<u64> = Vec::new();
    let mut lines = Vec::new();
    loop {
        if let Ok(m) = memory(pid) {
            peak_rss = peak_rss.max(m.rss_kib);
            peak_threads = peak_threads.max(m.threads);
            let slot = (started.elapsed().as_secs() / 5) as usize;
            if rss_by_5s.len() <= slot {
                rss_by_5s.resize(slot + 1, 0);
            }
            if let Some(peak) = rss_by_5s.get_mut(slot) {
                *peak = (*peak).max(m.rss_kib);
            }
        }
        for line in logs.text().lines() {
            let notable =
                line.contains(" WARN ") || line.contains("ERROR") || line.contains("panicked");
            if notable && seen.insert(line.to_owned()) {
                lines.push(line.to_owned());
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    Sampled {
        peak_rss,
        peak_threads,
        rss_by_5s,
        log_lines: lines,
    }
}
