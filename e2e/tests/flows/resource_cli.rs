//! The `resource-api` command line: the first log line is the bound address,
//! CORS origins come from the environment (and a bad one stops `serve`),
//! `migrate` prepares the database for `serve --no-migrate`, an unknown config
//! key stops `serve`, and SIGTERM ends it with exit 0.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use e2e::binaries::{Binaries, BuildPolicy};
use e2e::service::{START_TIMEOUT, Service, ServiceSpec, parse_listening};
use e2e::stack::write_private;
use reqwest::StatusCode;
use shared::paths::{HEALTHZ_PATH, READYZ_PATH};

const ORIGIN_A: &str = "https://a.example";
/// An API route: CORS applies there (not on `/healthz`).
const ME_PATH: &str = "/api/v2/me";
const ORIGIN_B: &str = "https://b.example";

/// `resource-api` with its SQLite file (`cli.db`) and the shared test key in
/// `dir`, on port 0, allowing [`ORIGIN_A`] and [`ORIGIN_B`]; no arguments yet.
async fn spec(dir: &Path) -> ServiceSpec {
    let bins = Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    write_private(
        &keys.join("k.pem"),
        shared::test_util::shared_private_key_pem().as_bytes(),
    )
    .unwrap();
    let mut spec = ServiceSpec::new("api", &bins.resource_api)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.join("cli.db").display()),
        )
        .env("RESOURCE_LISTEN", "127.0.0.1:0")
        .env("AUTH_PUBLIC_KEYS", keys.display().to_string())
        .env("CORS_ALLOWED_ORIGINS", format!("{ORIGIN_A}, {ORIGIN_B}"));
    spec.current_dir = Some(dir.to_path_buf());
    spec
}

/// `resource-api serve ARGS`, once healthy; `/readyz` must then answer 200.
async fn serve(spec: ServiceSpec, args: &[&str]) -> Service {
    let spec = args
        .iter()
        .fold(spec.arg("serve"), |spec, arg| spec.arg(*arg));
    let api = Service::start(spec).await.unwrap();
    let ready = reqwest::get(format!("{}{READYZ_PATH}", api.url))
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "{READYZ_PATH}; output:\n{}",
        api.logs.text()
    );
    api
}

#[tokio::test]
async fn serve_logs_bound_address_first_and_exits_zero_when_sent_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // The level the first-line promise is made for, whatever E2E_RUST_LOG says.
    let mut api = serve(spec(dir.path()).await.env("RUST_LOG", "info"), &[]).await;

    assert_eq!(
        parse_listening(&api.first_line),
        Some(("http".to_owned(), api.addr)),
        "the first log line is not the address: {}",
        api.first_line
    );
    assert_eq!(api.addr.ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(api.addr.port(), 0);

    let status = api.terminate(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "{status}; output:\n{}", api.logs.text());
}

#[tokio::test]
async fn serve_allows_each_origin_when_cors_env_lists_them_comma_separated() {
    let dir = tempfile::tempdir().unwrap();
    let api = serve(spec(dir.path()).await, &[]).await;
    let http = reqwest::Client::new();
    // CORS is on the API routes only (here a 401 without a token).
    let allowed = async |path: &str, origin: &str| {
        let response = http
            .get(format!("{}{path}", api.url))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };

    for origin in [ORIGIN_A, ORIGIN_B] {
        assert_eq!(allowed(ME_PATH, origin).await.as_deref(), Some(origin));
        assert_eq!(allowed(HEALTHZ_PATH, origin).await, None);
    }
    assert_eq!(allowed(ME_PATH, "https://c.example").await, None);
}

#[tokio::test]
async fn serve_fails_when_cors_origin_is_not_an_exact_origin() {
    let dir = tempfile::tempdir().unwrap();
    for (origins, why) in [
        ("*", "wildcard"),
        ("https://a.example/", "not a bare origin"),
        ("http://a.example", "http off loopback"),
    ] {
        let mut serve = spec(dir.path())
            .await
            .env("CORS_ALLOWED_ORIGINS", origins)
            .command();
        serve.arg("serve");
        // Dropping the future kills a `serve` that wrongly keeps running.
        let output = tokio::time::timeout(START_TIMEOUT, serve.output())
            .await
            .expect("serve kept running with a bad CORS origin")
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{origins}: {stderr}");
        assert!(
            stderr.contains("CORS_ALLOWED_ORIGINS"),
            "{origins}: {stderr}"
        );
        assert!(stderr.contains(why), "{origins}: {stderr}");
    }
}

#[tokio::test]
async fn serve_no_migrate_serves_notes_when_migrate_ran_first() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path()).await;
    let migrate = tokio::time::timeout(START_TIMEOUT, spec.command().arg("migrate").output())
        .await
        .expect("migrate did not finish")
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    assert!(dir.path().join("cli.db").exists());

    let api = serve(spec, &["--no-migrate"]).await;
    let signer = shared::test_util::signer(shared::test_util::shared_private_key_pem());
    let claims = shared::test_util::claims(
        "http://127.0.0.1:8080",
        "portcullis-api",
        "alice",
        "notes:read",
    );
    let response = reqwest::Client::new()
        .get(format!("{}/api/v2/notes", api.url))
        .bearer_auth(signer.sign(&claims).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "output:\n{}",
        api.logs.text()
    );
}

#[tokio::test]
async fn serve_fails_when_config_has_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "no_such_setting = 1\n").unwrap();
    let mut serve = spec(dir.path()).await.command();
    serve.args(["serve", "--config"]).arg(&config);
    // Dropping the future kills a `serve` that wrongly keeps running.
    let output = tokio::time::timeout(START_TIMEOUT, serve.output())
        .await
        .expect("serve kept running with an unknown config key")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("no_such_setting"), "{stderr}");
}
