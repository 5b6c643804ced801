//! Load suite (docs/benchmarks.md): the real release binaries under load,
//! every figure taken as a ratio to a comparison measured in the same run
//! (the machine is shared and noisy), printed side by side in one table.
//!
//! - Refresh rotation and the full authorization-code flow: server CPU per
//!   operation against node-oidc-provider's (`../shared/peers/node-oidc`,
//!   when `node` is present), and in RSA-2048 signatures (`openssl speed`).
//! - Refresh p99 at 16 concurrent clients: SQLite, PostgreSQL (with
//!   `TEST_DATABASE_URL`), node.
//! - `GET /api/v2/me`: req/s with a repeated token against a bare axum route,
//!   with fresh tokens against a bare route that verifies the JWT the same way
//!   (the verify ceiling); CPU per request with a garbage token.
//! - `client_credentials`: server CPU per token in signatures.
//! - Sign-ins: logins/s at 50 concurrent against the argon2 ceiling,
//!   `/healthz` p99 meanwhile, RSS before/after/peak.
//!
//! ```sh
//! cargo build --release -p auth-server -p resource-api -p e2e
//! E2E_BIN_DIR="$PWD/target/release" cargo bench -p e2e --bench load
//! ```
//!
//! Client and server share the machine's cores: server CPU per operation
//! (`/proc/<pid>/stat` around each phase) is the main figure, throughput
//! ratios the second. Nothing here asserts a time; any failed operation
//! fails the run. Knobs (environment): `LOAD_SECONDS` (5), `LOAD_WARMUP_SECONDS`
//! (1), `LOAD_REFRESH_CONCURRENCY` (16), `LOAD_FLOW_CONCURRENCY` (4),
//! `LOAD_CC_CONCURRENCY` (4), `LOAD_API_CONCURRENCY` (16),
//! `LOAD_LOGIN_CONCURRENCY` (50), `LOAD_FRESH_TOKENS` (40000), `LOAD_NODE=0`
//! (skip node), `LOAD_NODE_SRC`, `LOAD_NODE_DIR`, `TEST_DATABASE_URL`,
//! `LOAD_ONLY=flow` (only the full-flow phases and their row).

#[path = "load/driver.rs"]
mod driver;
#[path = "load/node.rs"]
mod node;
#[path = "load/portcullis.rs"]
mod portcullis;
#[path = "load/report.rs"]
mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use driver::{Measured, Step, ms, warm_then_measure};
use e2e::binaries::{Binaries, BuildPolicy};
use e2e::procfs::{self, Memory};
use e2e::{Service, ServiceSpec, Stack};
use portcullis::{Ctx, Get, Pool, Worker};
use report::{Goal, Row, x};
use reqwest::StatusCode;

/// The knobs (see the module documentation).
#[derive(Debug, Clone)]
struct Knobs {
    length: Duration,
    warm_up: Duration,
    refresh_concurrency: usize,
    flow_concurrency: usize,
    cc_concurrency: usize,
    api_concurrency: usize,
    login_concurrency: usize,
    fresh_tokens: usize,
    /// `LOAD_ONLY=flow`: only the full-flow phases (Portcullis, node).
    only_flow: bool,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

impl Knobs {
    fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            length: Duration::from_secs_f64(env_num("LOAD_SECONDS", 5.0)?),
            warm_up: Duration::from_secs_f64(env_num("LOAD_WARMUP_SECONDS", 1.0)?),
            refresh_concurrency: env_num("LOAD_REFRESH_CONCURRENCY", 16)?,
            flow_concurrency: env_num("LOAD_FLOW_CONCURRENCY", 4)?,
            cc_concurrency: env_num("LOAD_CC_CONCURRENCY", 4)?,
            api_concurrency: env_num("LOAD_API_CONCURRENCY", 16)?,
            login_concurrency: env_num("LOAD_LOGIN_CONCURRENCY", 50)?,
            fresh_tokens: env_num("LOAD_FRESH_TOKENS", 40_000)?,
            only_flow: match std::env::var("LOAD_ONLY").as_deref() {
                Err(_) | Ok("") => false,
                Ok("flow") => true,
                Ok(other) => bail!("LOAD_ONLY={other:?}: the only subset is `flow`"),
            },
        })
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    if !std::env::args().any(|a| a == "--bench") {
        println!("load: load benchmark, skipped (run it with `cargo bench -p e2e --bench load`)");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    runtime.block_on(run())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

async fn run() -> anyhow::Result<()> {
    if let Some(dir) = std::env::var_os("E2E_BIN_DIR")
        && std::path::Path::new(&dir).is_relative()
    {
        bail!(
            "E2E_BIN_DIR={} is relative; cargo runs benches in {} (use \"$PWD/target/release\")",
            dir.to_string_lossy(),
            env!("CARGO_MANIFEST_DIR")
        );
    }
    let knobs = Knobs::from_env()?;
    let bins = Binaries::ensure_async(BuildPolicy::Always).await?;
    let bare_bin = bins
        .auth_server
        .with_file_name(format!("bare-route{}", std::env::consts::EXE_SUFFIX));
    if !bare_bin.is_file() {
        bail!(
            "{} is missing: run `cargo build --release -p e2e` (it is built beside the services)",
            bare_bin.display()
        );
    }
    let started = Instant::now();
    println!("# Portcullis load suite");
    println!();
    println!(
        "binaries: {} (+ resource-api, bare-route)",
        bins.auth_server.display()
    );
    println!(
        "cores: {} — the load generator (this process) and the servers share them, so \
         server CPU per operation (/proc/<pid>/stat, utime+stime, around each phase) is the \
         main figure; throughputs are compared only as ratios within this run",
        cores()
    );
    println!(
        "phases: {:.1} s measured after a {:.1} s warm-up; concurrency: flows {}, refresh {}, \
         client_credentials {}, resource API {}, sign-ins {}; fresh-token pool {}",
        knobs.length.as_secs_f64(),
        knobs.warm_up.as_secs_f64(),
        knobs.flow_concurrency,
        knobs.refresh_concurrency,
        knobs.cc_concurrency,
        knobs.api_concurrency,
        knobs.login_concurrency,
        knobs.fresh_tokens
    );
    println!();

    let sign = openssl_sign_seconds().await?;
    println!(
        "RSA-2048 signature (openssl speed -seconds 3 rsa2048, one core): {:.3} ms = 1 signature equivalent",
        sign * 1e3
    );
    if knobs.only_flow {
        println!();
        flow_only(&knobs, sign).await?;
        println!();
        println!("total: {:.0} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    let argon = argon2_verify_seconds().await?;
    println!(
        "argon2id verify with the server's own code and parameters (auth_server::password::verify), \
         one thread, median of 9: {:.1} ms → ceiling {} cores ÷ {:.1} ms = {:.1} logins/s",
        argon * 1e3,
        cores(),
        argon * 1e3,
        cores() as f64 / argon
    );
    println!();

    let sqlite = sqlite_suite(&knobs, &bare_bin).await?;
    let pg = match migrations::test_support::postgres_url() {
        Some(admin) => Ok(postgres_refresh(&knobs, &admin).await?),
        None => Err("skipped: TEST_DATABASE_URL not set".to_owned()),
    };
    let node = match node::prepare().await {
        Ok(prepared) => Ok(node_suite(&knobs, &prepared).await?),
        Err(why) => Err(format!("node: skipped ({why})")),
    };
    if let Err(why) = &node {
        println!("## node-oidc-provider");
        println!();
        println!("{why}");
        println!();
    }

    let rows = rows(&knobs, sign, argon, &sqlite, &pg, &node);
    println!("## Summary (every ratio from this run)");
    println!();
    report::print(&rows);
    println!();
    println!(
        "efficiency = node's server CPU per operation ÷ Portcullis's; signature equivalents = \
         server CPU per operation ÷ one openssl RSA-2048 sign ({:.3} ms). Both share {} cores \
         with the client: compare CPU per operation first.",
        sign * 1e3,
        cores()
    );
    println!();
    println!("total: {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

// ------------------------------------------------------------- references

/// `openssl speed -seconds 3 rsa2048`: seconds per RSA-2048 signature.
async fn openssl_sign_seconds() -> anyhow::Result<f64> {
    let out = tokio::process::Command::new("openssl")
        .args(["speed", "-seconds", "3", "rsa2048"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running `openssl speed` (is openssl installed?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "`openssl speed -seconds 3 rsa2048` failed ({}): {text}",
            out.status
        );
    }
    parse_openssl_sign(&text)
        .with_context(|| format!("no `rsa 2048 bits <sign>s` line in openssl's output:\n{text}"))
}

/// The sign time of the `rsa 2048 bits 0.000716s 0.000021s …` line.
fn parse_openssl_sign(text: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("rsa") && l.contains("2048 bits"))?;
    let after = &line[line.find("bits")? + 4..];
    after
        .split_whitespace()
        .next()?
        .strip_suffix('s')?
        .parse()
        .ok()
        .filter(|s: &f64| *s > 0.0)
}

/// One argon2id verify, single thread, with the server's code: the median
/// of 9 after one warm-up.
async fn argon2_verify_seconds() -> anyhow::Result<f64> {
    let hash = auth_server::password::hash(portcullis::PASSWORD.to_owned()).await?;
    let mut times = Vec::new();
    for i in 0..10 {
        let t = Instant::now();
        let ok = auth_server::password::verify(portcullis::PASSWORD.to_owned(), Some(hash.clone()))
            .await?;
        if !ok {
            bail!("argon2 verify of the right password failed");
        }
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    times
        .get(times.len() / 2)
        .copied()
        .context("no argon2 timing")
}

// ----------------------------------------------------------------- SQLite

struct SqliteFigures {
    flows: Measured,
    refresh: Measured,
    cc: Measured,
    bare: Measured,
    me_repeated: Measured,
    garbage: Measured,
    verify_fresh: Measured,
    me_fresh: Measured,
    fresh_pool: usize,
    healthz_idle: Measured,
    healthz_login: Measured,
    logins: Measured,
    rss_before: Memory,
    rss_peak_kib: u64,
    rss_after: Memory,
}

async fn sqlite_suite(knobs: &Knobs, bare_bin: &std::path::Path) -> anyhow::Result<SqliteFigures> {
    println!("## Portcullis on SQLite");
    println!();
    let login_queue = knobs.login_concurrency + 16;
    let stack = Stack::start(portcullis::options(None, true, login_queue)).await?;
    let auth_pid = stack.auth.id().context("auth-server has no pid")?;
    let api = stack.resource.as_ref().context("no resource-api")?;
    let api_pid = api.id().context("resource-api has no pid")?;
    let api_url = api.url.clone();
    println!(
        "auth-server {} (pid {auth_pid}), resource-api {api_url} (pid {api_pid}); \
         rate limits lifted, PASSWORD_HASH_QUEUE={login_queue}",
        stack.auth.url
    );
    let bare = Service::start(
        ServiceSpec::new("bare", bare_bin)
            .env("BARE_LISTEN", "127.0.0.1:0")
            .env("BARE_KEYS_DIR", stack.keys_dir.display().to_string())
            .env("BARE_ISSUER", &stack.issuer),
    )
    .await?;
    let bare_pid = bare.id().context("bare-route has no pid")?;
    println!("bare-route {} (pid {bare_pid})", bare.url);
    println!();
    let ctx = Ctx::create(&stack).await?;

    let flows = portcullis_flows(knobs, &ctx, auth_pid).await?;

    // Refresh rotation.
    let (refreshers, refresh) = refresh_phase(knobs, &ctx, auth_pid, "refresh").await?;

    // client_credentials.
    let cc_workers: Vec<Worker> = refreshers
        .iter()
        .cycle()
        .take(knobs.cc_concurrency)
        .cloned()
        .collect();
    let (_, cc) = warm_then_measure(
        "client_credentials",
        cc_workers,
        knobs.warm_up,
        knobs.length,
        vec![auth_pid],
        Worker::client_credentials,
    )
    .await?;
    println!(
        "client_credentials, {} concurrent: {}",
        knobs.cc_concurrency,
        cc.summary("tokens", &["auth-server"])
    );

    // The resource API against the bare routes.
    let model = refreshers
        .first()
        .context("no worker")?
        .flow()
        .await?
        .access_token;
    let http = portcullis::api_client(knobs.api_concurrency)?;
    let get = |url: String, expected: StatusCode| Get {
        http: http.clone(),
        url: url.into(),
        expected,
    };
    let api_phase = |name: &'static str, request: Get, token: Option<Arc<str>>, pid: u32| {
        let states = vec![(); knobs.api_concurrency];
        warm_then_measure(
            name,
            states,
            knobs.warm_up,
            knobs.length,
            vec![pid],
            move |()| {
                let request = request.clone();
                let token = token.clone();
                async move {
                    request.send(token.as_deref()).await?;
                    Ok(Step::Did(()))
                }
            },
        )
    };
    let me_url = format!("{api_url}{}", "/api/v2/me");
    let (_, bare_fig) = api_phase(
        "bare",
        get(format!("{}/bare", bare.url), StatusCode::OK),
        None,
        bare_pid,
    )
    .await?;
    println!(
        "bare route GET /bare: {}",
        bare_fig.summary("requests", &["bare-route"])
    );
    let (_, me_repeated) = api_phase(
        "me repeated",
        get(me_url.clone(), StatusCode::OK),
        Some(model.as_str().into()),
        api_pid,
    )
    .await?;
    println!(
        "GET /api/v2/me, one token repeated: {}",
        me_repeated.summary("requests", &["resource-api"])
    );
    let (_, garbage) = api_phase(
        "me garbage",
        get(me_url.clone(), StatusCode::UNAUTHORIZED),
        Some("garbage-not-a-jwt".into()),
        api_pid,
    )
    .await?;
    println!(
        "GET /api/v2/me, garbage token (401): {}",
        garbage.summary("requests", &["resource-api"])
    );

    // Fresh tokens: minted with the server's key before the phases.
    let t = Instant::now();
    let keys_dir = stack.keys_dir.clone();
    let count = knobs.fresh_tokens;
    let model_for_mint = model.clone();
    let tokens =
        tokio::task::spawn_blocking(move || portcullis::mint(&model_for_mint, &keys_dir, count))
            .await
            .context("minting task")??;
    println!(
        "minted {} distinct tokens (the model token's claims, a new jti each, the server's key) \
         in {:.1} s",
        tokens.len(),
        t.elapsed().as_secs_f64()
    );
    let pool = Pool::new(tokens);
    let fresh_phase = |name: &'static str, request: Get, pid: u32| {
        let pool = pool.clone();
        pool.rewind();
        let states = vec![(); knobs.api_concurrency];
        // No warm-up: a warm-up would use up tokens; the connections are warm.
        driver::phase(name, states, knobs.length, vec![pid], move |()| {
            let request = request.clone();
            let pool = pool.clone();
            async move {
                let Some(token) = pool.take() else {
                    return Ok(Step::Exhausted(()));
                };
                request.send(Some(token)).await?;
                Ok(Step::Did(()))
            }
        })
    };
    let (_, verify_fresh) = fresh_phase(
        "verify fresh",
        get(format!("{}/verify", bare.url), StatusCode::OK),
        bare_pid,
    )
    .await?;
    println!(
        "bare verify route GET /verify, a fresh token per request: {}",
        verify_fresh.summary("requests", &["bare-route"])
    );
    let (_, me_fresh) =
        fresh_phase("me fresh", get(me_url.clone(), StatusCode::OK), api_pid).await?;
    println!(
        "GET /api/v2/me, a fresh token per request: {}",
        me_fresh.summary("requests", &["resource-api"])
    );
    for (name, m) in [("/verify", &verify_fresh), ("/api/v2/me", &me_fresh)] {
        if m.ops as usize >= pool.len() {
            println!(
                "  note: {name}: the phase ended when the {} tokens ran out ({:.1} s of {:.1} s; \
                 LOAD_FRESH_TOKENS makes more)",
                pool.len(),
                m.wall.as_secs_f64(),
                knobs.length.as_secs_f64()
            );
        }
    }

    // Sign-ins: /healthz idle, then during 50 concurrent sign-ins.
    let healthz = format!("{}{}", stack.auth.url, shared::paths::HEALTHZ_PATH);
    let pause = Duration::from_millis(10);
    let healthz_idle =
        driver::join_probe(driver::probe_healthz(healthz.clone(), knobs.length, pause)).await?;
    println!(
        "GET /healthz idle (sequential, {} ms pause): p50 {} p99 {} ms",
        pause.as_millis(),
        ms(healthz_idle.pct(0.5)),
        ms(healthz_idle.pct(0.99))
    );
    let login_workers: Vec<Worker> = (0..knobs.login_concurrency)
        .map(|_| {
            Ok(Worker {
                ctx: ctx.clone(),
                browser: e2e::Browser::new()?,
                refresh_token: String::new(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let rss_before = procfs::memory(auth_pid)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(driver::sample_rss(auth_pid, stop.clone()));
    // The warm-up is not measured but its sign-ins count for the RSS.
    let login_workers = driver::phase(
        "sign-ins (warm-up)",
        login_workers,
        knobs.warm_up,
        vec![auth_pid],
        Worker::sign_in,
    )
    .await?
    .0;
    let probe = driver::probe_healthz(healthz.clone(), knobs.length, pause);
    let (_, logins) = driver::phase(
        "sign-ins",
        login_workers,
        knobs.length,
        vec![auth_pid],
        Worker::sign_in,
    )
    .await?;
    let healthz_login = driver::join_probe(probe).await?;
    stop.store(true, Ordering::Relaxed);
    let rss_peak_kib = sampler.await.context("RSS sampler")?;
    let rss_after = procfs::memory(auth_pid)?;
    println!(
        "sign-ins (GET + POST /login, right password), {} concurrent: {}",
        knobs.login_concurrency,
        logins.summary("sign-ins", &["auth-server"])
    );
    println!(
        "GET /healthz meanwhile: p50 {} p99 {} max {} ms ({} probes)",
        ms(healthz_login.pct(0.5)),
        ms(healthz_login.pct(0.99)),
        ms(healthz_login.latencies.last().copied()),
        healthz_login.ops
    );
    println!(
        "auth-server VmRSS before {} / sampled peak {} / after {}; VmHWM {}; threads {} → {}",
        mib(rss_before.rss_kib),
        mib(rss_peak_kib),
        mib(rss_after.rss_kib),
        mib(rss_after.hwm_kib),
        rss_before.threads,
        rss_after.threads
    );
    println!();
    drop(bare);
    drop(stack);
    Ok(SqliteFigures {
        flows,
        refresh,
        cc,
        bare: bare_fig,
        me_repeated,
        garbage,
        verify_fresh,
        me_fresh,
        fresh_pool: pool.len(),
        healthz_idle,
        healthz_login,
        logins,
        rss_before,
        rss_peak_kib,
        rss_after,
    })
}

/// Full flows, each browser with its session.
async fn portcullis_flows(
    knobs: &Knobs,
    ctx: &Arc<Ctx>,
    auth_pid: u32,
) -> anyhow::Result<Measured> {
    let flow_workers = portcullis::own_browsers(ctx, knobs.flow_concurrency).await?;
    let (_, flows) = warm_then_measure(
        "flows",
        flow_workers,
        knobs.warm_up,
        knobs.length,
        vec![auth_pid],
        |w: Worker| async move {
            w.flow().await?;
            Ok(Step::Did(w))
        },
    )
    .await?;
    println!(
        "full code flow with a session, 3 requests (GET /authorize → consent page → \
         POST /consent → POST /token): {}",
        flows.summary("flows", &["auth-server"])
    );
    Ok(flows)
}

/// Refresh rotation by `knobs.refresh_concurrency` chains against the
/// auth-server `auth_pid` of `ctx`: the workers (for later phases) and the
/// figures, printed.
async fn refresh_phase(
    knobs: &Knobs,
    ctx: &Arc<Ctx>,
    auth_pid: u32,
    name: &'static str,
) -> anyhow::Result<(Vec<Worker>, Measured)> {
    let refreshers = portcullis::workers(ctx, knobs.refresh_concurrency).await?;
    let (refreshers, refresh) = warm_then_measure(
        name,
        refreshers,
        knobs.warm_up,
        knobs.length,
        vec![auth_pid],
        Worker::refresh,
    )
    .await?;
    println!(
        "refresh rotation, {} concurrent: {}",
        knobs.refresh_concurrency,
        refresh.summary("rotations", &["auth-server"])
    );
    Ok((refreshers, refresh))
}

fn us_per_op(m: &Measured) -> f64 {
    m.cpu_per_op(0).unwrap_or(f64::NAN) * 1e6
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ------------------------------------------------------------- PostgreSQL

async fn postgres_refresh(knobs: &Knobs, admin: &str) -> anyhow::Result<Measured> {
    println!("## Portcullis on PostgreSQL (TEST_DATABASE_URL, a fresh database)");
    println!();
    let db = migrations::test_support::PgDatabase::create(admin).await;
    let figures = async {
        let stack = Stack::start(portcullis::options(
            Some(db.url.clone()),
            false,
            knobs.login_concurrency + 16,
        ))
        .await?;
        let auth_pid = stack.auth.id().context("auth-server has no pid")?;
        let ctx = Ctx::create(&stack).await?;
        let (_, refresh) = refresh_phase(knobs, &ctx, auth_pid, "refresh (PostgreSQL)").await?;
        println!(
            "  (the CPU is auth-server's alone: PostgreSQL's own processes are not counted, \
             while SQLite works inside auth-server)"
        );
        println!();
        drop(stack);
        anyhow::Ok(refresh)
    }
    .await;
    drop(db);
    figures
}

// ------------------------------------------------------------------- node

struct NodeFigures {
    versions: String,
    flows: Measured,
    refresh: Measured,
    rss: Memory,
}

async fn node_suite(knobs: &Knobs, prepared: &node::Prepared) -> anyhow::Result<NodeFigures> {
    println!("## node-oidc-provider ({})", prepared.versions);
    println!();
    let peer = node::NodePeer::start(prepared).await?;
    let pid = peer.pid;
    println!(
        "{} (pid {pid}), in-memory adapter, single process; driven by this bench's client",
        peer.base
    );
    let figures = async {
        let flows = node_flows(knobs, &peer).await?;
        let mut refreshers = Vec::new();
        for _ in 0..knobs.refresh_concurrency {
            refreshers.push(node::NodeWorker::new(&peer).await?);
        }
        let (_, refresh) = warm_then_measure(
            "node refresh",
            refreshers,
            knobs.warm_up,
            knobs.length,
            vec![pid],
            node::NodeWorker::refresh,
        )
        .await?;
        println!(
            "refresh rotation, {} concurrent: {}",
            knobs.refresh_concurrency,
            refresh.summary("rotations", &["node"])
        );
        let rss = procfs::memory(pid)?;
        println!(
            "node VmRSS at the end {}; VmHWM {}",
            mib(rss.rss_kib),
            mib(rss.hwm_kib)
        );
        println!();
        anyhow::Ok(NodeFigures {
            versions: prepared.versions.clone(),
            flows,
            refresh,
            rss,
        })
    }
    .await;
    let figures = figures.map_err(|e| e.context(format!("node peer log:\n{}", peer.log_tail())));
    peer.stop().await;
    figures
}

/// node's full flows, each browser with its session.
async fn node_flows(knobs: &Knobs, peer: &node::NodePeer) -> anyhow::Result<Measured> {
    let mut flow_workers = Vec::new();
    for _ in 0..knobs.flow_concurrency {
        flow_workers.push(node::NodeWorker::new(peer).await?);
    }
    let (_, flows) = warm_then_measure(
        "node flows",
        flow_workers,
        knobs.warm_up,
        knobs.length,
        vec![peer.pid],
        |w: node::NodeWorker| async move {
            w.flow().await?;
            Ok(Step::Did(w))
        },
    )
    .await?;
    println!(
        "full code flow with a session, 5 requests (GET /auth → GET consent interaction → \
         POST confirm → GET /auth/:uid → POST /token): {}",
        flows.summary("flows", &["node"])
    );
    Ok(flows)
}

// -------------------------------------------------------- LOAD_ONLY=flow

/// `LOAD_ONLY=flow`: the full-flow phases alone (Portcullis on SQLite, then
/// node), the same phases as in the whole suite, and the full-flow row.
async fn flow_only(knobs: &Knobs, sign: f64) -> anyhow::Result<()> {
    println!("## Portcullis on SQLite (LOAD_ONLY=flow)");
    println!();
    let stack = Stack::start(portcullis::options(
        None,
        false,
        knobs.login_concurrency + 16,
    ))
    .await?;
    let auth_pid = stack.auth.id().context("auth-server has no pid")?;
    println!("auth-server {} (pid {auth_pid})", stack.auth.url);
    let ctx = Ctx::create(&stack).await?;
    let flows = portcullis_flows(knobs, &ctx, auth_pid).await?;
    println!();
    drop(stack);
    let node = match node::prepare().await {
        Ok(prepared) => {
            println!("## node-oidc-provider ({})", prepared.versions);
            println!();
            let peer = node::NodePeer::start(&prepared).await?;
            println!("{} (pid {})", peer.base, peer.pid);
            let flows = node_flows(knobs, &peer)
                .await
                .map_err(|e| e.context(format!("node peer log:\n{}", peer.log_tail())));
            peer.stop().await;
            println!();
            Ok((flows?, prepared.versions))
        }
        Err(why) => Err(format!("node: skipped ({why})")),
    };
    println!("## Summary (LOAD_ONLY=flow)");
    println!();
    let node = match &node {
        Ok((m, versions)) => Ok((m, versions.as_str())),
        Err(why) => Err(why.as_str()),
    };
    report::print(&[flow_row(sign, &flows, node)]);
    Ok(())
}

// ------------------------------------------------------------------- rows

fn rows(
    knobs: &Knobs,
    sign: f64,
    argon: f64,
    s: &SqliteFigures,
    pg: &Result<Measured, String>,
    node: &Result<NodeFigures, String>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let sig = |cpu: f64| cpu / sign;
    let per_op_ms = |m: &Measured| m.cpu_per_op(0).unwrap_or(f64::NAN) * 1e3;
    let node_skip = |n: &Result<NodeFigures, String>| match n {
        Ok(_) => String::new(),
        Err(why) => why.clone(),
    };

    // 1. Refresh CPU.
    {
        let cpu = s.refresh.cpu_per_op(0).unwrap_or(f64::NAN);
        let mut row = Row::new("refresh rotation: server CPU per rotation (SQLite)");
        row.portcullis = format!("{:.3} ms = {:.2} sig", cpu * 1e3, sig(cpu));
        row.goal = "≥ 2× node's efficiency; ≤ 1.6 sig".into();
        let sig_verdict = Goal::AtMost(1.6).verdict(sig(cpu), |v| format!("{v:.2} sig"));
        match node {
            Ok(n) => {
                let ncpu = n.refresh.cpu_per_op(0).unwrap_or(f64::NAN);
                let eff = ncpu / cpu;
                row.compared = format!("node {:.3} ms = {:.2} sig", ncpu * 1e3, sig(ncpu));
                row.ratio = format!("efficiency {}", x(eff));
                row.verdict = format!(
                    "efficiency: {}; signatures: {sig_verdict}",
                    Goal::AtLeast(2.0).verdict(eff, x)
                );
            }
            Err(why) => {
                row.compared = why.clone();
                row.verdict = format!("efficiency: no figure; signatures: {sig_verdict}");
            }
        }
        rows.push(row);
    }

    // 2. Refresh p99.
    let p99_row = |label: &str, m: &Measured| {
        let p99 = m.pct(0.99).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
        let mut row = Row::new(format!(
            "refresh p99 at {} concurrent, {label}",
            knobs.refresh_concurrency
        ));
        row.portcullis = format!("{p99:.1} ms (p50 {} ms, {:.0}/s)", ms(m.pct(0.5)), m.rate());
        row.ratio = format!("{} of the goal", x(p99 / 100.0));
        row.goal = "≤ 100 ms".into();
        row.verdict = Goal::AtMost(100.0).verdict(p99, |v| format!("{v:.1} ms"));
        row
    };
    let mut row = p99_row("SQLite", &s.refresh);
    if let Ok(n) = node {
        row.compared = format!(
            "node p99 {} ms (p50 {} ms, {:.0}/s)",
            ms(n.refresh.pct(0.99)),
            ms(n.refresh.pct(0.5)),
            n.refresh.rate()
        );
    } else {
        row.compared = node_skip(node);
    }
    rows.push(row);
    match pg {
        Ok(m) => {
            let mut row = p99_row("PostgreSQL", m);
            row.compared = format!(
                "auth-server CPU (without PostgreSQL's) {:.3} ms/rotation = {:.2} sig",
                per_op_ms(m),
                sig(m.cpu_per_op(0).unwrap_or(f64::NAN))
            );
            rows.push(row);
        }
        Err(why) => {
            let mut row = Row::new(format!(
                "refresh p99 at {} concurrent, PostgreSQL",
                knobs.refresh_concurrency
            ));
            row.portcullis = why.clone();
            row.goal = "≤ 100 ms".into();
            row.verdict = "skipped".into();
            rows.push(row);
        }
    }

    // 3. /api/v2/me throughput.
    {
        let ratio = s.me_repeated.rate() / s.bare.rate();
        let mut row = Row::new("GET /api/v2/me req/s, one token repeated");
        row.portcullis = format!(
            "{:.0}/s ({:.1} µs CPU/req)",
            s.me_repeated.rate(),
            us_per_op(&s.me_repeated)
        );
        row.compared = format!(
            "bare axum route {:.0}/s ({:.1} µs CPU/req)",
            s.bare.rate(),
            us_per_op(&s.bare)
        );
        row.ratio = x(ratio);
        row.goal = "≥ 0.9× bare".into();
        row.verdict = Goal::AtLeast(0.9).verdict(ratio, x);
        rows.push(row);
        let ratio = s.me_fresh.rate() / s.verify_fresh.rate();
        let mut row = Row::new("GET /api/v2/me req/s, a fresh token per request");
        row.portcullis = format!(
            "{:.0}/s ({} requests; {:.1} µs CPU/req)",
            s.me_fresh.rate(),
            s.me_fresh.ops,
            us_per_op(&s.me_fresh)
        );
        row.compared = format!(
            "verify ceiling (bare route + Verifier) {:.0}/s ({} requests of a pool of {}; {:.1} µs CPU/req)",
            s.verify_fresh.rate(),
            s.verify_fresh.ops,
            s.fresh_pool,
            us_per_op(&s.verify_fresh)
        );
        row.ratio = x(ratio);
        row.goal = "≥ 0.9× verify ceiling".into();
        row.verdict = Goal::AtLeast(0.9).verdict(ratio, x);
        rows.push(row);
    }

    // 4. Garbage token CPU.
    {
        let me = s.garbage.cpu_per_op(0).unwrap_or(f64::NAN) * 1e6;
        let bare = s.bare.cpu_per_op(0).unwrap_or(f64::NAN) * 1e6;
        let mut row = Row::new("GET /api/v2/me, garbage token (401): server CPU per request");
        row.portcullis = format!("{me:.1} µs");
        row.compared = format!("bare route {bare:.1} µs");
        row.ratio = x(me / bare);
        row.goal = "≤ 1.3× bare".into();
        row.verdict = Goal::AtMost(1.3).verdict(me / bare, x);
        rows.push(row);
    }

    // 5. client_credentials.
    {
        let cpu = s.cc.cpu_per_op(0).unwrap_or(f64::NAN);
        let mut row = Row::new("client_credentials: server CPU per token");
        row.portcullis = format!("{:.3} ms", cpu * 1e3);
        row.compared = format!("openssl RSA-2048 sign {:.3} ms", sign * 1e3);
        row.ratio = format!("{:.2} sig", sig(cpu));
        row.goal = "≤ 1.15 sig".into();
        row.verdict = Goal::AtMost(1.15).verdict(sig(cpu), |v| format!("{v:.2} sig"));
        rows.push(row);
    }

    // 6. /healthz during sign-ins.
    {
        let p99 = s
            .healthz_login
            .pct(0.99)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
        let idle = s
            .healthz_idle
            .pct(0.99)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
        let mut row = Row::new(format!(
            "/healthz p99 while {} sign-ins run argon2",
            knobs.login_concurrency
        ));
        row.portcullis = format!("{p99:.1} ms");
        row.compared = format!("idle /healthz p99 {idle:.1} ms");
        row.ratio = x(p99 / idle);
        row.goal = "< 10 ms".into();
        row.verdict = Goal::Below(10.0).verdict(p99, |v| format!("{v:.1} ms"));
        rows.push(row);
    }

    // 7. Logins/s.
    {
        let ceiling = cores() as f64 / argon;
        let ratio = s.logins.rate() / ceiling;
        let mut row = Row::new(format!(
            "sign-ins/s at {} concurrent",
            knobs.login_concurrency
        ));
        row.portcullis = format!("{:.1}/s", s.logins.rate());
        row.compared = format!(
            "argon2 ceiling {} cores ÷ {:.1} ms = {ceiling:.1}/s",
            cores(),
            argon * 1e3
        );
        row.ratio = x(ratio);
        row.goal = "≥ 0.8× ceiling".into();
        row.verdict = Goal::AtLeast(0.8).verdict(ratio, x);
        rows.push(row);
    }

    // 8. RSS.
    {
        let peak = s
            .rss_peak_kib
            .max(s.rss_after.rss_kib)
            .max(s.rss_before.rss_kib);
        let mut row = Row::new(format!(
            "auth-server RSS before / after {} concurrent sign-ins (peak)",
            knobs.login_concurrency
        ));
        row.portcullis = format!(
            "{} / {} (peak {}; VmHWM {})",
            mib(s.rss_before.rss_kib),
            mib(s.rss_after.rss_kib),
            mib(peak),
            mib(s.rss_after.hwm_kib)
        );
        match node {
            Ok(n) => {
                row.compared = format!(
                    "node RSS {} (VmHWM {})",
                    mib(n.rss.rss_kib),
                    mib(n.rss.hwm_kib)
                );
                row.ratio = x(peak as f64 / n.rss.hwm_kib.max(1) as f64);
            }
            Err(why) => row.compared = why.clone(),
        }
        row.goal = "< 200 MiB".into();
        row.verdict = Goal::Below(200.0).verdict(peak as f64 / 1024.0, |v| format!("{v:.0} MiB"));
        rows.push(row);
    }

    // 9. Full flows.
    let node_flows = match node {
        Ok(n) => Ok((&n.flows, n.versions.as_str())),
        Err(why) => Err(why.as_str()),
    };
    rows.push(flow_row(sign, &s.flows, node_flows));
    rows
}

/// The full-flow row: Portcullis's CPU per flow against node's
/// (`Ok((node's flows, its versions))` or why node was skipped).
fn flow_row(sign: f64, flows: &Measured, node: Result<(&Measured, &str), &str>) -> Row {
    let cpu = flows.cpu_per_op(0).unwrap_or(f64::NAN);
    let mut row = Row::new("full authorization-code flow with a session: server CPU per flow");
    row.portcullis = format!(
        "{:.3} ms = {:.2} sig ({:.0} flows/s)",
        cpu * 1e3,
        cpu / sign,
        flows.rate()
    );
    row.goal = "≥ 2× node's efficiency".into();
    match node {
        Ok((n, versions)) => {
            let ncpu = n.cpu_per_op(0).unwrap_or(f64::NAN);
            let eff = ncpu / cpu;
            row.compared = format!(
                "node {:.3} ms = {:.2} sig ({:.0} flows/s; {versions})",
                ncpu * 1e3,
                ncpu / sign,
                n.rate()
            );
            row.ratio = format!("efficiency {}", x(eff));
            row.verdict = Goal::AtLeast(2.0).verdict(eff, x);
        }
        Err(why) => {
            row.compared = why.to_owned();
            row.verdict = "no figure".into();
        }
    }
    row
}
