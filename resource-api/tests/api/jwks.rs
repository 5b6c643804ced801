//! Keys from a JWKS URL (`KeySource::JwksUrl`), served by a tiny axum server
//! (or, to control the framing, a hand-written HTTP/1.1 one); and the one
//! outbound fetch's limits: a size cap, no redirects, https off loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use reqwest::{Response, StatusCode, header};
use shared::jwt::{Jwks, MAX_JWKS_BYTES, PublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::helpers::{Backend, TestApp, assert_invalid_token, assert_problem, spawn_app_with};

/// Serves `jwks` at `/jwks.json`; returns its URL.
async fn serve_jwks(jwks: Jwks) -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/jwks.json").parse().unwrap()
}

#[tokio::test]
async fn jwks_url_keys_verify_tokens_and_reject_unknown_kid() {
    let signing_pem = shared::test_util::shared_private_key_pem();
    let public = PublicKey::from_pem(signing_pem).unwrap();
    let url = serve_jwks(Jwks {
        keys: vec![public.to_jwk()],
    })
    .await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth_public_keys = None;
        s.jwks_url = Some(url);
    })
    .await
    .unwrap();
    let signer = shared::test_util::signer(signing_pem);

    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let token = signer.sign(&app.claims("alice", "notes:read")).unwrap();
    let response = app.get("/api/v2/notes", &token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The app's own PEM key is not in the JWKS: its kid is unknown.
    let unknown = app.token("alice", "notes:read");
    let body = assert_invalid_token(app.get("/api/v2/notes", &unknown).send().await.unwrap()).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("unknown signing key")
    );
}

#[tokio::test]
async fn readyz_returns_503_when_jwks_has_no_keys() {
    let url = serve_jwks(Jwks { keys: vec![] }).await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth_public_keys = None;
        s.jwks_url = Some(url);
    })
    .await
    .unwrap();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    // Liveness does not depend on keys.
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn unreachable_jwks_answers_503_not_401_and_counts_no_invalid_token() {
    // A port nothing listens on: every JWKS fetch fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url: url::Url = format!("http://{}/jwks.json", closed.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(closed);
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth_public_keys = None;
        s.jwks_url = Some(url);
        s.rate_limit_anonymous = "2/minute".into();
    })
    .await
    .unwrap();
    // A good token (its key is simply not fetchable) must not be thrown
    // away by its client: 503 with Retry-After, not 401 invalid_token. And
    // it is no mark against the caller's address (2 invalid tokens would
    // lock it out).
    let token = app.token("alice", "notes:read");
    for _ in 0..4 {
        let response = app.get("/api/v2/notes", &token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
        assert!(!response.headers().contains_key("www-authenticate"));
    }
}

/// The app, trusting the JWKS at `url`.
async fn jwks_app(url: url::Url) -> TestApp {
    spawn_app_with(Backend::Sqlite, |s| {
        s.auth_public_keys = None;
        s.jwks_url = Some(url);
    })
    .await
    .unwrap()
}

/// `GET /api/v2/notes` with a good token signed by the key of [`jwks_body`].
async fn get_notes(app: &TestApp) -> Response {
    let signer = shared::test_util::signer(shared::test_util::shared_private_key_pem());
    let token = signer.sign(&app.claims("alice", "notes:read")).unwrap();
    app.get("/api/v2/notes", &token).send().await.unwrap()
}

/// The verifier could not load the keys: 503 with `Retry-After`, not 401.
async fn assert_keys_unavailable(response: Response) {
    assert!(response.headers().contains_key("retry-after"));
    assert!(!response.headers().contains_key("www-authenticate"));
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

/// A valid JWKS of the shared test key, padded with trailing whitespace
/// (still valid JSON) to `len` bytes.
fn jwks_body(len: usize) -> Vec<u8> {
    let public = PublicKey::from_pem(shared::test_util::shared_private_key_pem()).unwrap();
    let mut body = serde_json::to_vec(&Jwks {
        keys: vec![public.to_jwk()],
    })
    .unwrap();
    assert!(body.len() <= len);
    body.resize(len, b' ');
    body
}

/// How [`serve_raw`] frames its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length`, then the body.
    Length,
    /// `Transfer-Encoding: chunked` (no length), 8 KiB chunks.
    Chunked,
    /// Chunked: the body, then spaces until the client hangs up.
    Endless,
}

/// What [`serve_raw`] saw of one connection.
#[derive(Debug)]
struct Served {
    /// Whether a write failed: the client hung up before the end.
    hung_up: bool,
    /// From the request to the end of the answer (or the hang-up).
    took: Duration,
}

/// A hand-written HTTP/1.1 server answering every request with 200 and
/// `body`, framed as asked; returns its URL and a report per connection.
async fn serve_raw(body: Vec<u8>, framing: Framing) -> (url::Url, mpsc::UnboundedReceiver<Served>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (reports, served) = mpsc::unbounded_channel();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (body, reports) = (body.clone(), reports.clone());
            tokio::spawn(async move {
                let _ = reports.send(answer_raw(stream, &body, framing).await);
            });
        }
    });
    let url = format!("http://{address}/jwks.json").parse().unwrap();
    (url, served)
}

async fn answer_raw(mut stream: TcpStream, body: &[u8], framing: Framing) -> Served {
    // The request head (a GET has no body).
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let started = Instant::now();
    let length = match framing {
        Framing::Length => format!("content-length: {}", body.len()),
        Framing::Chunked | Framing::Endless => "transfer-encoding: chunked".to_owned(),
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{length}\r\nconnection: close\r\n\r\n"
    );
    let written: std::io::Result<()> = async {
        stream.write_all(head.as_bytes()).await?;
        if framing == Framing::Length {
            stream.write_all(body).await?;
            return stream.flush().await;
        }
        for chunk in body.chunks(8 * 1024) {
            write_chunk(&mut stream, chunk).await?;
        }
        if framing == Framing::Endless {
            let spaces = [b' '; 8 * 1024];
            loop {
                write_chunk(&mut stream, &spaces).await?;
            }
        }
        stream.write_all(b"0\r\n\r\n").await?;
        stream.flush().await
    }
    .await;
    Served {
        hung_up: written.is_err(),
        took: started.elapsed(),
    }
}

async fn write_chunk(stream: &mut TcpStream, chunk: &[u8]) -> std::io::Result<()> {
    stream
        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
        .await?;
    stream.write_all(chunk).await?;
    stream.write_all(b"\r\n").await
}

#[tokio::test]
async fn jwks_over_64_kib_with_content_length_is_not_loaded() {
    // Control: the same padded document under the cap loads.
    let (url, _served) = serve_raw(jwks_body(MAX_JWKS_BYTES), Framing::Length).await;
    let app = jwks_app(url).await;
    assert_eq!(get_notes(&app).await.status(), StatusCode::OK);

    let (url, _served) = serve_raw(jwks_body(200 * 1024), Framing::Length).await;
    let app = jwks_app(url).await;
    assert_keys_unavailable(get_notes(&app).await).await;
}

#[tokio::test]
async fn jwks_over_64_kib_chunked_without_length_is_not_loaded() {
    // Control: the same padded document under the cap loads, chunked.
    let (url, _served) = serve_raw(jwks_body(MAX_JWKS_BYTES), Framing::Chunked).await;
    let app = jwks_app(url).await;
    assert_eq!(get_notes(&app).await.status(), StatusCode::OK);

    let (url, _served) = serve_raw(jwks_body(200 * 1024), Framing::Chunked).await;
    let app = jwks_app(url).await;
    assert_keys_unavailable(get_notes(&app).await).await;
}

#[tokio::test]
async fn endless_jwks_is_cut_off_at_the_cap_long_before_the_fetch_timeout() {
    let (url, mut served) = serve_raw(b"{\"keys\": [".to_vec(), Framing::Endless).await;
    let app = jwks_app(url).await;
    assert_keys_unavailable(get_notes(&app).await).await;
    // The verifier hung up once past the cap, not at the 3 s fetch timeout
    // (which would also end in a 503).
    let served = tokio::time::timeout(Duration::from_secs(10), served.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(served.hung_up, "{served:?}");
    assert!(served.took < Duration::from_millis(1500), "{served:?}");
}

#[tokio::test]
async fn jwks_redirect_is_not_followed() {
    let public = PublicKey::from_pem(shared::test_util::shared_private_key_pem()).unwrap();
    let jwks = Jwks {
        keys: vec![public.to_jwk()],
    };
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new()
        .route(
            "/jwks.json",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/real.json")]) }),
        )
        .route(
            "/real.json",
            get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let api = jwks_app(format!("http://{address}/jwks.json").parse().unwrap()).await;
    assert_keys_unavailable(get_notes(&api).await).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");

    // Control: the target itself serves the key.
    let api = jwks_app(format!("http://{address}/real.json").parse().unwrap()).await;
    assert_eq!(get_notes(&api).await.status(), StatusCode::OK);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// `resource-api migrate` on a fresh SQLite file (it loads the settings
/// but fetches nothing) with only `env` of the API's variables set:
/// whether it succeeded, and its log.
fn migrate_with(env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_resource-api"));
    for var in resource_api::config::ENV_VARS {
        command.env_remove(var);
    }
    command
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display()),
        )
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .arg("migrate");
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn load_refuses_jwks_url_when_http_off_loopback_or_with_userinfo() {
    for (env, setting) in [
        (
            &[("JWKS_URL", "http://jwks.example/.well-known/jwks.json")][..],
            "JWKS_URL",
        ),
        (
            &[("JWKS_URL", "https://user:pw@jwks.example/jwks.json")][..],
            "JWKS_URL",
        ),
        (&[("AUTH_ISSUER", "http://auth.example")][..], "AUTH_ISSUER"),
    ] {
        let (ok, log) = migrate_with(env);
        assert!(!ok, "{env:?} accepted: {log}");
        assert!(log.contains(setting), "{env:?}: {log}");
        assert!(!log.contains("user:pw"), "the password is logged: {log}");
    }
}

#[test]
fn load_accepts_jwks_url_when_https_or_http_on_loopback() {
    for env in [
        &[("JWKS_URL", "http://127.0.0.1:1/.well-known/jwks.json")][..],
        &[("JWKS_URL", "http://[::1]:1/jwks.json")][..],
        &[("JWKS_URL", "http://localhost:1/jwks.json")][..],
        &[("AUTH_ISSUER", "http://127.0.0.1:8080")][..],
        // An explicit https JWKS_URL: the issuer is then only the `iss`.
        &[
            ("AUTH_ISSUER", "http://auth.example"),
            ("JWKS_URL", "https://auth.example/jwks.json"),
        ][..],
    ] {
        let (ok, log) = migrate_with(env);
        assert!(ok, "{env:?} refused: {log}");
        assert!(log.contains("migrations applied"), "{env:?}: {log}");
    }
}
