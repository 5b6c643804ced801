//! Refresh-token rotations per second against the real store: one
//! `oauth::refresh::exchange` per iteration (find/claim the token, rotate
//! it, read who it speaks for, sign the access token), on a temporary
//! SQLite file and, when `TEST_DATABASE_URL` is set, on a fresh PostgreSQL
//! schema (skipped otherwise, and said so on stderr).
//!
//! - `rotation/<db>/sequential`: one chain of rotations, each presenting
//!   the successor the previous one returned.
//! - `rotation/<db>/concurrent16`: 16 chains (16 users) rotating at once;
//!   one iteration is 16 rotations, so the throughput is rotations/s.
//! - `rotation/sign_only`: the RSA-2048 signature of one access token alone,
//!   the unit the rotation's CPU cost is counted in.
//!
//! Run: `cargo bench -p auth-server --bench rotation -- --warm-up-time 1 --measurement-time 5`
//! (with `TEST_DATABASE_URL=postgres://…` for the PostgreSQL figures).

// Setup failures abort the benchmark: expect is the clearest report.
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_server::config::Settings;
use auth_server::domain::{Email, GrantType, ScopeSet};
use auth_server::startup::{Application, BuildOptions};
use auth_server::state::AppState;
use auth_server::store::clients::{self, Client, NewClient};
use auth_server::store::{refresh, users};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use migrations::test_support::TestDb;
use tokio::runtime::Runtime;
use tokio::sync::Mutex;

const SCOPE: &str = "notes:read notes:write";
const CHAINS: usize = 16;

struct Fixture {
    app: AppState,
    client: Client,
    /// The live token of each chain.
    chains: Vec<Arc<Mutex<String>>>,
    _db: TestDb,
    _keys: tempfile::TempDir,
    _server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn fixture(db: TestDb) -> Fixture {
    let keys = tempfile::tempdir().expect("keys dir");
    let settings = Settings {
        auth_listen: "127.0.0.1:0".parse().expect("listen"),
        auth_keys_dir: keys.path().to_owned(),
        rate_limit_token: "1000000/minute".into(),
        ..Settings::default()
    };
    let built = Application::build(
        settings,
        BuildOptions {
            skip_migrations: true,
            database: Some(db.db.clone()),
            clock: None,
        },
    )
    .await
    .expect("application");
    let app = built.state().clone();
    // The key ring and its reloader need the application to run.
    let server = tokio::spawn(built.run_until_stopped());
    let id = format!("c_{}", uuid::Uuid::new_v4().simple());
    let secret = shared::secret::generate().expect("secret");
    let client = clients::create(
        &db.db,
        NewClient {
            id: &id,
            name: "bench",
            secret_hash: Some(shared::secret::hash(&secret)),
            redirect_uris: &["http://127.0.0.1:9/cb".to_owned()],
            grant_types: &[GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: &ScopeSet::parse(SCOPE).expect("scope"),
            refresh_grace_secs: None,
            tier: Default::default(),
        },
    )
    .await
    .expect("client");
    let now = app.now();
    let mut chains = Vec::new();
    for i in 0..CHAINS {
        let email = Email::parse(&format!("user{i}@example.com")).expect("email");
        let user = users::create(
            &db.db,
            &email,
            "Bench",
            "not-a-hash",
            &["reader".to_owned()],
            Default::default(),
        )
        .await
        .expect("user");
        let token = shared::secret::generate().expect("token");
        refresh::create_family(
            &db.db,
            refresh::NewFamily {
                token: &token,
                client_id: &client.id,
                user_id: &user.id,
                scope: SCOPE,
                code_id: None,
                expires_at: now + 365 * 86_400,
                now,
            },
        )
        .await
        .expect("family");
        chains.push(Arc::new(Mutex::new(token)));
    }
    Fixture {
        app,
        client,
        chains,
        _db: db,
        _keys: keys,
        _server: server,
    }
}

/// One rotation of chain `i`: presents its token, keeps the successor.
async fn rotate(f: &Fixture, i: usize) {
    let mut token = f.chains[i].lock().await;
    let now = f.app.now();
    let response = auth_server::oauth::refresh::exchange(&f.app, &f.client, &token, None, now)
        .await
        .expect("rotation");
    *token = response.refresh_token.expect("successor");
}

fn bench_backend(c: &mut Criterion, rt: &Runtime, name: &str, db: TestDb) {
    let f = Arc::new(rt.block_on(fixture(db)));
    let mut group = c.benchmark_group(format!("rotation/{name}"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("sequential", |b| {
        b.to_async(rt).iter(|| {
            let f = f.clone();
            async move { rotate(&f, 0).await }
        })
    });
    group.throughput(Throughput::Elements(CHAINS as u64));
    group.bench_function("concurrent16", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let f = f.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let tasks: Vec<_> = (0..CHAINS)
                        .map(|i| {
                            let f = f.clone();
                            tokio::spawn(async move { rotate(&f, i).await })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                }
                start.elapsed()
            }
        })
    });
    group.finish();
    rt.block_on(latencies(&f, name));
}

/// Per-rotation latency with 16 chains rotating at once, each as fast as it
/// can (`ROUNDS` rotations each): p50, p99 and max, printed to stderr.
async fn latencies(f: &Arc<Fixture>, name: &str) {
    const ROUNDS: usize = 200;
    let tasks: Vec<_> = (0..CHAINS)
        .map(|i| {
            let f = f.clone();
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(ROUNDS);
                for _ in 0..ROUNDS {
                    let start = Instant::now();
                    rotate(&f, i).await;
                    took.push(start.elapsed());
                }
                took
            })
        })
        .collect();
    let start = Instant::now();
    let cpu_before = cpu_ticks();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let wall = start.elapsed();
    let cpu = cpu_before
        .zip(cpu_ticks())
        .map(|(a, b)| b.saturating_sub(a));
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    // The unit, measured the same way: CPU per access-token signature.
    const SIGNATURES: u32 = 2_000;
    let sign_before = cpu_ticks();
    for _ in 0..SIGNATURES {
        std::hint::black_box(f.app.keys.sign(&claims(f)).expect("sign"));
    }
    let sign = sign_before
        .zip(cpu_ticks())
        .map(|(a, b)| b.saturating_sub(a) as f64 * 10_000.0 / f64::from(SIGNATURES));
    // Clock ticks are 10 ms (USER_HZ 100).
    let cpu_per_rotation = match (cpu, sign) {
        (Some(ticks), Some(sign)) => {
            let rotation = ticks as f64 * 10_000.0 / all.len() as f64;
            format!(
                "{rotation:.0} µs = {:.2} signatures ({sign:.0} µs each)",
                rotation / sign
            )
        }
        _ => "n/a".to_owned(),
    };
    eprintln!(
        "rotation/{name}/latency16: {} rotations in {:.2?} ({:.0}/s); p50 {:.2?}, p99 {:.2?}, \
         max {:.2?}; process CPU per rotation {cpu_per_rotation}",
        all.len(),
        wall,
        all.len() as f64 / wall.as_secs_f64(),
        at(0.50),
        at(0.99),
        all[all.len() - 1],
    );
}

/// Claims like those of a rotation's access token.
fn claims(f: &Fixture) -> shared::jwt::AccessTokenClaims {
    shared::jwt::AccessTokenClaims {
        iss: f.app.issuer.clone(),
        sub: "0b9f6c3e-5d2a-4f7e-9a51-3c8d2e7f1a64".into(),
        aud: f.app.settings.auth_audience.clone(),
        client_id: f.client.id.clone(),
        scope: SCOPE.into(),
        exp: f.app.now() + 300,
        iat: f.app.now(),
        nbf: f.app.now(),
        jti: uuid::Uuid::new_v4().to_string(),
        roles: vec!["reader".into()],
        tier: Default::default(),
    }
}

/// User + system CPU of this process so far, in clock ticks (Linux
/// `/proc/self/stat` fields 14 and 15); None elsewhere.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // Field 3 of `rest` is field 3 of stat; utime is field 14.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn rotation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bench_backend(c, &rt, "sqlite", rt.block_on(TestDb::sqlite()));
    if migrations::test_support::postgres_url().is_some() {
        let db = rt
            .block_on(TestDb::postgres("bench rotation"))
            .expect("postgres");
        bench_backend(c, &rt, "postgres", db);
    } else {
        eprintln!("rotation/postgres: SKIPPED (TEST_DATABASE_URL is not set)");
    }
    // The unit of the CPU cost: one RS256 signature of an access token.
    let f = rt.block_on(fixture(rt.block_on(TestDb::sqlite())));
    let mut group = c.benchmark_group("rotation");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign_only", |b| {
        b.iter(|| f.app.keys.sign(&claims(&f)).expect("sign"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = rotation
}
criterion_main!(benches);
