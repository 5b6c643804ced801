//! `serve --dev` on both services: CORS also allows `http://localhost:3000`
//! (the listed origins stay), and the service says so in one warning line
//! after its `listening on` line; without `--dev` that origin gets no CORS
//! answer.

use std::path::Path;
use std::time::Duration;

use e2e::binaries::{Binaries, BuildPolicy};
use e2e::service::{Service, ServiceSpec, parse_listening};
use e2e::stack::write_private;
use reqwest::Method;
use tokio::time::Instant;

const DEV_ORIGIN: &str = "http://localhost:3000";
const LISTED: &str = "https://a.example";
/// Part of the warning line of `--dev`.
const DEV_WARNING: &str = "dev mode is on";

/// `auth-server` with its own SQLite file and keys in `dir`, on port 0,
/// listing [`LISTED`]; no arguments yet.
fn auth_spec(bins: &Binaries, dir: &Path) -> ServiceSpec {
    let mut spec = ServiceSpec::new("auth", &bins.auth_server)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.join("dev.db").display()),
        )
        .env("AUTH_KEYS_DIR", dir.join("keys").display().to_string())
        .env("AUTH_LISTEN", "127.0.0.1:0")
        .env("CORS_ALLOWED_ORIGINS", LISTED);
    spec.current_dir = Some(dir.to_path_buf());
    spec
}

/// `resource-api` with its own SQLite file and the shared test key in
/// `dir`, on port 0, listing [`LISTED`]; no arguments yet.
fn api_spec(bins: &Binaries, dir: &Path) -> ServiceSpec {
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
            format!("sqlite://{}?mode=rwc", dir.join("dev.db").display()),
        )
        .env("RESOURCE_LISTEN", "127.0.0.1:0")
        .env("AUTH_PUBLIC_KEYS", keys.display().to_string())
        .env("CORS_ALLOWED_ORIGINS", LISTED);
    spec.current_dir = Some(dir.to_path_buf());
    spec
}

/// The `Access-Control-Allow-Origin` of a preflight from `origin` for
/// `method` on `path` (with an `authorization` header).
async fn preflight(service: &Service, path: &str, method: &Method, origin: &str) -> Option<String> {
    let response = reqwest::Client::new()
        .request(Method::OPTIONS, format!("{}{path}", service.url))
        .header("origin", origin)
        .header("access-control-request-method", method.as_str())
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// The lines of `service`'s output holding the `--dev` warning, waiting up
/// to a few seconds for `expected` of them (the line is written just before
/// the service answers; its reader may lag).
async fn dev_warnings(service: &Service, expected: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<String> = service
            .logs
            .text()
            .lines()
            .filter(|line| line.contains(DEV_WARNING))
            .map(str::to_owned)
            .collect();
        if lines.len() >= expected || Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `spec serve [--dev]`: the dev origin is allowed exactly with `--dev`,
/// the listed one always, and the warning is there exactly with `--dev`.
async fn check(spec: ServiceSpec, path: &str, method: Method) {
    for dev in [false, true] {
        let mut spec = spec.clone().arg("serve");
        if dev {
            spec = spec.arg("--dev");
        }
        let name = format!("{} serve{}", spec.name, if dev { " --dev" } else { "" });
        let service = Service::start(spec).await.unwrap();
        let output = || service.logs.text();

        assert_eq!(
            preflight(&service, path, &method, DEV_ORIGIN).await,
            dev.then(|| DEV_ORIGIN.to_owned()),
            "{name}: preflight from {DEV_ORIGIN} on {path}; output:\n{}",
            output()
        );
        assert_eq!(
            preflight(&service, path, &method, LISTED).await.as_deref(),
            Some(LISTED),
            "{name}: preflight from {LISTED} on {path}"
        );
        assert_eq!(
            preflight(&service, path, &method, "http://localhost:3001").await,
            None,
            "{name}: preflight from another localhost port"
        );

        let warnings = dev_warnings(&service, usize::from(dev)).await;
        assert_eq!(
            warnings.len(),
            usize::from(dev),
            "{name}: the dev warning lines: {warnings:?}; output:\n{}",
            output()
        );
        if let Some(line) = warnings.first() {
            assert!(line.contains("WARN"), "{name}: not a warning: {line}");
            assert!(line.contains(DEV_ORIGIN), "{name}: {line}");
        }
        // The bound address stays the first line.
        assert!(
            parse_listening(&service.first_line).is_some(),
            "{name}: first line {:?}",
            service.first_line
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_server_serve_dev_allows_localhost_3000_only_with_the_flag() {
    let bins = Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    check(
        auth_spec(&bins, dir.path()),
        shared::paths::TOKEN_PATH,
        Method::POST,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_api_serve_dev_allows_localhost_3000_only_with_the_flag() {
    let bins = Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    check(api_spec(&bins, dir.path()), "/api/v2/me", Method::GET).await;
}
