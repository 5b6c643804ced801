//! `spawn_app()`: the real application on 127.0.0.1:0 with a fresh database
//! (a temp SQLite file, or a fresh PostgreSQL schema when asked) and a fresh key.

use std::sync::LazyLock;

use migrations::test_support::TestDb;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use resource_api::clock::Clock;
use resource_api::{Application, BuildOptions, Settings};
use sea_orm::DatabaseConnection;
use serde_json::Value;
use shared::jwt::{AccessTokenClaims, Signer};
use tempfile::TempDir;

pub const ISSUER: &str = "http://issuer.test";
pub const AUDIENCE: &str = "portcullis-api";
pub const ALLOWED_ORIGIN: &str = "https://app.example";

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        shared::telemetry::init_tracing();
    }
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db: DatabaseConnection,
    pub client: Client,
    pub signer: Signer,
    pub private_key_pem: String,
    _dir: TempDir,
    /// The PostgreSQL schema, dropped with the app.
    pg: Option<TestDb>,
}

/// The application on SQLite.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Backend::Sqlite, |_| {})
        .await
        .expect("sqlite app")
}

/// The application on `backend`, after `customize` has adjusted the settings.
/// `None` (after printing why) for PostgreSQL when `TEST_DATABASE_URL` is unset.
pub async fn spawn_app_with(
    backend: Backend,
    customize: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    spawn_app_with_clock(backend, Clock::system(), customize).await
}

/// As [`spawn_app_with`], with the application's clock `clock` (the
/// token verifier keeps the real time).
pub async fn spawn_app_with_clock(
    backend: Backend,
    clock: Clock,
    customize: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    LazyLock::force(&TRACING);
    let dir = tempfile::tempdir().expect("temp dir");
    let private_key_pem = shared::test_util::private_key_pem();
    let keys_dir = dir.path().join("keys");
    std::fs::create_dir(&keys_dir).unwrap();
    std::fs::write(keys_dir.join("signing.pem"), &private_key_pem).unwrap();

    let mut settings = Settings {
        database_url: format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display()),
        database_acquire_timeout_ms: migrations::db::DEFAULT_ACQUIRE_TIMEOUT_MS,
        database_statement_timeout_ms: migrations::db::DEFAULT_STATEMENT_TIMEOUT_MS,
        resource_listen: "127.0.0.1:0".into(),
        resource_audience: AUDIENCE.into(),
        auth_issuer: ISSUER.into(),
        jwks_url: None,
        auth_public_keys: Some(keys_dir),
        cors_allowed_origins: vec![ALLOWED_ORIGIN.into()],
        ..Settings::default()
    };
    customize(&mut settings);

    let (db, pg) = match backend {
        Backend::Sqlite => (
            migrations::db::connect(&settings.database_url, None)
                .await
                .expect("sqlite"),
            None,
        ),
        Backend::Postgres => {
            let test_db = TestDb::postgres("a resource-api PostgreSQL variant").await?;
            settings.database_url = test_db.admin_url().unwrap_or_default().to_owned();
            (test_db.db.clone(), Some(test_db))
        }
    };

    let app = Application::build_with(
        settings,
        BuildOptions {
            database: Some(db.clone()),
            clock,
            ..BuildOptions::default()
        },
    )
    .await
    .expect("build");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());

    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    Some(TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db,
        client,
        signer: shared::test_util::signer(&private_key_pem),
        private_key_pem,
        _dir: dir,
        pg,
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Valid claims for `sub` with `scope`.
    pub fn claims(&self, sub: &str, scope: &str) -> AccessTokenClaims {
        shared::test_util::claims(ISSUER, AUDIENCE, sub, scope)
    }

    /// A valid token for `sub` with `scope`.
    pub fn token(&self, sub: &str, scope: &str) -> String {
        self.sign(&self.claims(sub, scope))
    }

    pub fn sign(&self, claims: &AccessTokenClaims) -> String {
        self.signer.sign(claims).unwrap()
    }

    pub fn get(&self, path: &str, token: &str) -> RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(token)
    }

    pub async fn create_note(&self, token: &str, title: &str, body: &str) -> Response {
        self.client
            .post(self.url("/api/v2/notes"))
            .bearer_auth(token)
            .json(&serde_json::json!({"title": title, "body": body}))
            .send()
            .await
            .unwrap()
    }

    /// Drops the PostgreSQL schema now (dropping the app does it too).
    pub fn cleanup(mut self) {
        self.pg.take();
    }
}

/// Asserts a problem+json response with `status`; returns its body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string());
    body
}

/// Asserts a 401 `invalid_token` problem.
pub async fn assert_invalid_token(response: Response) -> Value {
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    assert_problem(response, StatusCode::UNAUTHORIZED).await
}
