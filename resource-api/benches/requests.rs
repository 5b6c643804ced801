//! Per-request cost of the resource API's middleware stack against a bare
//! axum route, in one criterion run:
//!
//! - `bare`: a router with one route answering a small JSON (the shape of
//!   `/api/v2/me`), nothing else;
//! - `me_garbage_token`: `GET /api/v2/me` with `Authorization: Bearer
//!   garbage` on the real router (the 401 path: no RSA at all);
//! - `me_valid_token`: the same with a valid RS256 token (200).
//!
//! Each case runs three times: `oneshot/…` calls the router in process
//! (`tower::ServiceExt::oneshot`: the cost of the layers alone, wall
//! clock), `oneshot_cpu/…` the same timed by the process's CPU clock (the
//! log-writer thread's work included: a non-blocking writer moves work, it
//! does not remove it), and
//! `loopback/…` sends the request over a kept-alive 127.0.0.1 connection to
//! `shared::serve` (the HTTP/1 server of the binaries), so the figures
//! include what a real request pays (`…_cpu`: the process's CPU time per
//! request, client included; the wall clock there mostly measures how fast
//! an idle core wakes up).
//!
//! The router is the one `Application::build_with` makes (temporary SQLite
//! database, a fresh test key in a PEM folder, the rate limits raised so
//! that no request of the run is refused), with the services' JSON log
//! subscriber installed as `main` installs it, on stderr.
//!
//! Run (stderr gets one access line per request):
//! `cargo bench -p resource-api --bench requests -- --measurement-time 3 2>/dev/null`
//! Figures: docs/benchmarks.md.

// Setup failures abort the benchmark: expect is the clearest report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, StatusCode, header};
use resource_api::{Application, BuildOptions, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

const ISSUER: &str = "http://issuer.test";
const AUDIENCE: &str = "portcullis-api";
const ME: &str = "/api/v2/me";
const GARBAGE: &str = "garbage";

/// The services' log subscriber, as `main` installs it: JSON lines on
/// stderr (run the bench with `2>/dev/null`), through the writer thread.
fn install_logging() -> shared::telemetry::LogGuard {
    shared::telemetry::init_service(shared::telemetry::LogFormat::Json, std::io::stderr())
}

/// A bare axum route answering a JSON of the size of `/me`'s.
fn bare_router() -> Router {
    Router::new().route(
        ME,
        get(|| async {
            axum::Json(serde_json::json!({
                "sub": "0b9f6c3e-5d2a-4f7e-9a51-3c8d2e7f1a64",
                "client_id": "c_4kX9pQ2rT7vW1yZ3bN5mH8jL0sD6fG",
                "scope": "notes:read notes:write",
                "roles": ["user"],
            }))
        }),
    )
}

struct Service {
    router: Router,
    token: String,
    _dir: tempfile::TempDir,
}

/// The real application, built as the binary builds it.
async fn service() -> Service {
    let dir = tempfile::tempdir().expect("temp dir");
    let pem = shared::test_util::private_key_pem();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("keys dir");
    std::fs::write(keys.join("signing.pem"), &pem).expect("key");
    let many = "1000000000/second".to_owned();
    let settings = Settings {
        database_url: format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display()),
        resource_listen: "127.0.0.1:0".into(),
        resource_audience: AUDIENCE.into(),
        auth_issuer: ISSUER.into(),
        jwks_url: None,
        auth_public_keys: Some(keys),
        cors_allowed_origins: vec!["https://app.example".into()],
        rate_limit_premium: many.clone(),
        rate_limit_standard: many.clone(),
        rate_limit_anonymous: many.clone(),
        rate_limit_search: many,
        ..Settings::default()
    };
    let app = Application::build_with(settings, BuildOptions::default())
        .await
        .expect("build");
    let router = app.router();
    let signer = shared::test_util::signer(&pem);
    let mut claims = shared::test_util::claims(ISSUER, AUDIENCE, "bench-user", "notes:read");
    // Valid for the whole run: the longest lifetime the verifier accepts.
    claims.exp = claims.iat + 3600;
    let token = signer.sign(&claims).expect("sign");
    Service {
        router,
        token,
        _dir: dir,
    }
}

fn request(token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(ME);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::empty()).expect("request")
}

async fn oneshot(router: &Router, token: Option<&str>, want: StatusCode) {
    let response = router
        .clone()
        .oneshot(request(token))
        .await
        .expect("answer");
    assert_eq!(response.status(), want);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    black_box(body);
}

/// Serves `router` on 127.0.0.1 through `shared::serve`, as the binaries do.
async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        shared::serve::serve(
            listener,
            router,
            &shared::serve::HttpSettings::default(),
            std::future::pending(),
            || {},
        )
        .await;
    });
    address
}

/// A kept-alive HTTP/1.1 connection sending one fixed request at a time.
struct Connection {
    stream: TcpStream,
    request: Vec<u8>,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: SocketAddr, token: Option<&str>) -> Self {
        let stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut request = format!("GET {ME} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
        if let Some(token) = token {
            request.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        Self {
            stream,
            request: request.into_bytes(),
            buffer: Vec::with_capacity(8192),
        }
    }

    /// Sends the request, reads the whole answer; its status.
    async fn send(&mut self) -> u16 {
        self.stream.write_all(&self.request).await.expect("write");
        self.buffer.clear();
        loop {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed");
            self.buffer.extend_from_slice(&chunk[..n]);
            let Some(end) = find(&self.buffer, b"\r\n\r\n") else {
                continue;
            };
            let head = std::str::from_utf8(&self.buffer[..end]).expect("head");
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("content-length");
            if self.buffer.len() >= end + 4 + length {
                return head[9..12].parse().expect("status");
            }
        }
    }
}

/// CPU time of the whole process so far (every thread).
fn process_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn requests(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _logs = install_logging();
    let service = runtime.block_on(service());
    let bare = bare_router();

    let mut group = c.benchmark_group("oneshot");
    group.bench_function("bare", |b| {
        b.to_async(&runtime)
            .iter(|| oneshot(&bare, None, StatusCode::OK))
    });
    group.bench_function("me_garbage_token", |b| {
        b.to_async(&runtime)
            .iter(|| oneshot(&service.router, Some(GARBAGE), StatusCode::UNAUTHORIZED))
    });
    group.bench_function("me_valid_token", |b| {
        b.to_async(&runtime)
            .iter(|| oneshot(&service.router, Some(&service.token), StatusCode::OK))
    });
    group.finish();

    // The same in process, timed by the process's CPU clock instead of the
    // wall clock: what the log-writer thread (and any other) spends on the
    // requests counts too.
    let mut group = c.benchmark_group("oneshot_cpu");
    for (name, router, token, want) in [
        ("bare", &bare, None, StatusCode::OK),
        (
            "me_garbage_token",
            &service.router,
            Some(GARBAGE),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "me_valid_token",
            &service.router,
            Some(service.token.as_str()),
            StatusCode::OK,
        ),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_custom(|iterations| async move {
                let start = process_cpu_time();
                for _ in 0..iterations {
                    oneshot(router, token, want).await;
                }
                // Let the writer thread catch up, so its work is counted.
                tokio::time::sleep(Duration::from_millis(2)).await;
                process_cpu_time().saturating_sub(start)
            })
        });
    }
    group.finish();

    let bare_address = runtime.block_on(serve(bare.clone()));
    let service_address = runtime.block_on(serve(service.router.clone()));
    let mut group = c.benchmark_group("loopback");
    for (name, address, token, want) in [
        ("bare", bare_address, None, 200),
        ("me_garbage_token", service_address, Some(GARBAGE), 401),
        (
            "me_valid_token",
            service_address,
            Some(service.token.as_str()),
            200,
        ),
    ] {
        let connection = runtime.block_on(Connection::open(address, token));
        let connection = tokio::sync::Mutex::new(connection);
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let status = connection.lock().await.send().await;
                assert_eq!(status, want);
            })
        });
        // The process's CPU time per request: the server's, the log
        // writer's and this small client's (the same for every case).
        let cpu_name = format!("{name}_cpu");
        group.bench_function(cpu_name.as_str(), |b| {
            b.to_async(&runtime).iter_custom(|iterations| {
                let connection = &connection;
                async move {
                    let mut connection = connection.lock().await;
                    let start = process_cpu_time();
                    for _ in 0..iterations {
                        assert_eq!(connection.send().await, want);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    process_cpu_time().saturating_sub(start)
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = requests
}
criterion_main!(benches);
