//! The in-process test harness: the real server (`Application::build`, the
//! path `main` takes) on port 0, over a fresh database, with a clock the
//! test moves. `TEST_DATABASE_URL` adds the PostgreSQL variants.

use std::net::SocketAddr;
use std::sync::Arc;

use auth_server::clock::{Clock, ManualClock};
use auth_server::config::Settings;
use auth_server::domain::{GrantType, ScopeSet};
use auth_server::startup::{Application, BuildOptions};
use auth_server::store::{self, clients::NewClient};
use serde_json::Value;

pub use migrations::test_support::TestDb;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub async fn test_db(backend: Backend) -> Option<TestDb> {
    match backend {
        Backend::Sqlite => Some(TestDb::sqlite().await),
        Backend::Postgres => TestDb::postgres("an auth-server PostgreSQL variant").await,
    }
}

pub const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub const SCOPE: &str = "notes:read notes:write";
pub const PASSWORD: &str = "correct horse battery staple";

/// A registered client.
#[derive(Debug, Clone)]
pub struct TestClient {
    pub id: String,
    pub secret: Option<String>,
}

impl TestClient {
    /// Its credentials as form fields (`client_secret_post`, or just the id).
    pub fn form(&self) -> Vec<(&'static str, String)> {
        let mut form = vec![("client_id", self.id.clone())];
        if let Some(secret) = &self.secret {
            form.push(("client_secret", secret.clone()));
        }
        form
    }
}

pub struct TestApp {
    pub address: SocketAddr,
    pub http: reqwest::Client,
    pub clock: ManualClock,
    pub db: TestDb,
    pub user_id: String,
    /// The running server's state (counters, settings).
    pub state: auth_server::state::AppState,
    _keys: tempfile::TempDir,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Options of `spawn_app`.
#[derive(Debug, Clone, Copy)]
pub struct AppOptions {
    pub refresh_grace_secs: i64,
    pub refresh_grace_max_replays: i64,
    /// `JANITOR_INTERVAL_SECS`; 0 (the default here): no periodic janitor,
    /// so that no run removes rows while a test looks at them.
    pub janitor_interval_secs: u64,
    /// Changes to the settings after the harness's own. The harness lifts
    /// the rate limits and the lockout out of the way of tests about
    /// something else; tests about them set their own here.
    pub tune: Option<fn(&mut Settings)>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            refresh_grace_secs: 0,
            refresh_grace_max_replays: 3,
            janitor_interval_secs: 0,
            tune: None,
        }
    }
}

/// The server in-process on port 0, with one user. None when the backend
/// is PostgreSQL and TEST_DATABASE_URL is unset (said on stderr).
pub async fn spawn_app(backend: Backend, options: AppOptions) -> Option<TestApp> {
    spawn_app_tuned(backend, options, |_| {}).await
}

/// [`spawn_app`], with `extra` applied to the settings last.
pub async fn spawn_app_tuned(
    backend: Backend,
    options: AppOptions,
    extra: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let db = test_db(backend).await?;
    let keys = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let settings = Settings {
        auth_listen: "127.0.0.1:0".parse().unwrap(),
        auth_keys_dir: keys.path().to_owned(),
        refresh_grace_secs: options.refresh_grace_secs,
        refresh_grace_max_replays: options.refresh_grace_max_replays,
        janitor_interval_secs: options.janitor_interval_secs,
        rate_limit_login: "10000/minute".into(),
        rate_limit_pages: "10000/minute".into(),
        rate_limit_token: "100000/minute".into(),
        rate_limit_client_failures: "10000/minute".into(),
        rate_limit_password_reset: "10000/hour".into(),
        rate_limit_registration: "10000/hour".into(),
        rate_limit_admin: "100000/minute".into(),
        lockout_threshold: 100,
        ..Settings::default()
    };
    let mut settings = settings;
    if let Some(tune) = options.tune {
        tune(&mut settings);
    }
    extra(&mut settings);
    let app = Application::build(
        settings,
        BuildOptions {
            skip_migrations: true,
            database: Some(db.db.clone()),
            clock: Some(Arc::new(clock.clone()) as Arc<dyn Clock>),
        },
    )
    .await
    .unwrap();
    let address = app.address();
    let state = app.state().clone();
    let server = tokio::spawn(app.run_until_stopped());
    let hash = auth_server::password::hash(PASSWORD.to_owned())
        .await
        .unwrap();
    let email = auth_server::domain::Email::parse("alice@example.com").unwrap();
    let user = store::users::create(&db.db, &email, "Alice", &hash, &[], Default::default())
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Some(TestApp {
        address,
        http,
        clock,
        db,
        user_id: user.id,
        state,
        _keys: keys,
        server,
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Registers a client: confidential unless `public`.
    pub async fn client(&self, public: bool, grace: Option<i64>) -> TestClient {
        self.client_with(public, grace, &[REDIRECT]).await
    }

    /// Registers a client with these redirect URIs.
    pub async fn client_with(
        &self,
        public: bool,
        grace: Option<i64>,
        redirect_uris: &[&str],
    ) -> TestClient {
        let redirect_uris: Vec<String> = redirect_uris.iter().map(|u| (*u).to_owned()).collect();
        let id = format!("c_{}", uuid::Uuid::new_v4().simple());
        let secret = (!public).then(|| shared::secret::generate().unwrap());
        store::clients::create(
            &self.db.db,
            NewClient {
                id: &id,
                name: "Test app",
                secret_hash: secret.as_deref().map(shared::secret::hash),
                redirect_uris: &redirect_uris,
                grant_types: &[GrantType::AuthorizationCode, GrantType::RefreshToken],
                scopes: &ScopeSet::parse(SCOPE).unwrap(),
                refresh_grace_secs: grace,
                tier: Default::default(),
            },
        )
        .await
        .unwrap();
        TestClient { id, secret }
    }

    /// A code for `client` and the user, as /consent would store it, with
    /// the S256 challenge of `verifier`.
    pub async fn code(&self, client: &TestClient, verifier: &str, redirect_given: bool) -> String {
        use base64::Engine;
        use sha2::Digest;
        let code = shared::secret::generate().unwrap();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        let now = self.clock.now();
        store::codes::create(
            &self.db.db,
            store::codes::NewCode {
                code_hash: shared::secret::hash(&code),
                client_id: &client.id,
                user_id: &self.user_id,
                redirect_uri: REDIRECT,
                redirect_uri_given: redirect_given,
                scope: SCOPE,
                // oxide-auth's PKCE addon stores the challenge + "S" (S256).
                pkce: Some(format!("{challenge}S")),
                expires_at: now + 60,
                now,
            },
        )
        .await
        .unwrap();
        code
    }

    /// POST /token with a form; (status, JSON body).
    pub async fn token(&self, form: &[(&str, String)]) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("/token"))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "every token response is no-store"
        );
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A code exchange that must succeed; returns the token response.
    pub async fn tokens_for(&self, client: &TestClient) -> Value {
        let verifier = "v".repeat(43);
        let code = self.code(client, &verifier, true).await;
        let mut form = client.form();
        form.extend([
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", verifier),
        ]);
        let (status, body) = self.token(&form).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// grant_type=refresh_token; (status, body).
    pub async fn refresh(&self, client: &TestClient, token: &str) -> (u16, Value) {
        let mut form = client.form();
        form.extend([
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", token.to_owned()),
        ]);
        self.token(&form).await
    }

    /// Audit events of a kind.
    pub async fn audit_count(&self, kind: &str) -> usize {
        use migrations::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        use store::entities::audit_events;
        audit_events::Entity::find()
            .filter(audit_events::Column::Kind.eq(kind))
            .all(&self.db.db)
            .await
            .unwrap()
            .len()
    }

    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        self.db.cleanup().await;
    }

    /// Stops the server as the end of a test does (its task dropped), and
    /// keeps the database open.
    pub async fn stop_server(&self) {
        self.server.abort();
        while !self.server.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// `both!(body => name_sqlite, name_postgres);` makes two tests that call
/// `async fn body(backend: Backend)`; the PostgreSQL one is ignored unless
/// `TEST_DATABASE_URL` was set when the tests were built.
macro_rules! both {
    ($body:ident => $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $body($crate::helpers::Backend::Sqlite).await;
        }

        test_gates::needs! { [postgres]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $postgres() {
                migrations::test_support::require_postgres_url(stringify!($postgres));
                $body($crate::helpers::Backend::Postgres).await;
            }
        }
    };
}
pub(crate) use both;

/// A browser for the login and consent pages: its own cookie jar, no
/// automatic redirects.
pub struct Browser {
    pub http: reqwest::Client,
}

/// A hidden input's value in a page (our pages write `name` then `value`).
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

pub fn location(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A consent page as the browser saw it.
pub struct ConsentPage {
    pub csrf_token: String,
    pub handle: String,
    pub csp: String,
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()
                .unwrap(),
        }
    }

    /// Signs in as the test user (GET then POST /login).
    pub async fn sign_in(&self, app: &TestApp) {
        let page = self.http.get(app.url("/login")).send().await.unwrap();
        let html = page.text().await.unwrap();
        let csrf = hidden(&html, "csrf_token").unwrap();
        let answer = self
            .http
            .post(app.url("/login"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("next", "/"),
                ("email", "alice@example.com"),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 303, "login failed");
    }

    /// GET /authorize with these parameters.
    pub async fn authorize(&self, app: &TestApp, params: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(app.url("/authorize"))
            .query(params)
            .send()
            .await
            .unwrap()
    }

    /// The consent page for these parameters (signed in already).
    pub async fn consent_page(&self, app: &TestApp, params: &[(&str, &str)]) -> ConsentPage {
        let response = self.authorize(app, params).await;
        assert_eq!(response.status().as_u16(), 200, "expected the consent page");
        let csp = response
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let html = response.text().await.unwrap();
        ConsentPage {
            csrf_token: hidden(&html, "csrf_token").unwrap(),
            handle: hidden(&html, "request").unwrap(),
            csp,
        }
    }

    /// POST /consent with a page's fields and a decision.
    pub async fn decide(
        &self,
        app: &TestApp,
        page: &ConsentPage,
        decision: &str,
    ) -> reqwest::Response {
        self.http
            .post(app.url("/consent"))
            .form(&[
                ("csrf_token", page.csrf_token.as_str()),
                ("request", page.handle.as_str()),
                ("decision", decision),
            ])
            .send()
            .await
            .unwrap()
    }
}

/// Authorization parameters for `client` with a valid S256 challenge.
pub fn authorize_params<'a>(client_id: &'a str, redirect_uri: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", "notes:read"),
        ("state", "st4te"),
        // S256 of "v" * 43.
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

/// base64url(SHA-256("v" * 43)).
pub const CHALLENGE: &str = "7w_YNF9DSfIdPf_pRjSq646_kPr-2-o9NAl16JGghdM";

/// An answer, read whole.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub cache_control: String,
    pub retry_after: Option<String>,
    pub rate_limit: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub async fn of(response: reqwest::Response) -> Self {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let cache_control = header("cache-control").unwrap_or_default();
        let retry_after = header("retry-after");
        let rate_limit = header("ratelimit-limit");
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap().to_vec();
        Self {
            status,
            content_type,
            cache_control,
            retry_after,
            rate_limit,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// `(field, rule)` of each entry of a 422's `errors`.
    pub fn errors(&self) -> Vec<(String, String)> {
        assert_eq!(self.status, 422, "{}", self.text());
        assert_eq!(self.content_type, "application/problem+json");
        let body = self.json();
        assert_eq!(body["status"], 422);
        body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()), "{e}");
                (
                    e["field"].as_str().unwrap().to_owned(),
                    e["rule"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// An access token of this server for the test user with `roles`, as
/// `/token` would sign it.
pub fn token_with_roles(app: &TestApp, roles: &[&str]) -> String {
    token_for(app, &app.user_id, roles)
}

/// An access token of this server for `sub` with `roles`. Its times come
/// from the wall clock, which the verifier reads (tests move the server's
/// clock, not the verifier's).
pub fn token_for(app: &TestApp, sub: &str, roles: &[&str]) -> String {
    let now = auth_server::clock::now();
    let claims = shared::jwt::AccessTokenClaims {
        iss: app.state.issuer.clone(),
        sub: sub.to_owned(),
        aud: app.state.settings.auth_audience.clone(),
        client_id: "admin-console".into(),
        scope: "notes:read".into(),
        exp: now + 300,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        tier: Default::default(),
    };
    app.state.keys.sign(&claims).unwrap()
}

/// A confidential client with the client_credentials grant.
pub async fn machine_client(app: &TestApp) -> TestClient {
    let id = format!("m_{}", uuid::Uuid::new_v4().simple());
    let secret = shared::secret::generate().unwrap();
    store::clients::create(
        &app.db.db,
        NewClient {
            id: &id,
            name: "Machine",
            secret_hash: Some(shared::secret::hash(&secret)),
            redirect_uris: &[],
            grant_types: &[GrantType::ClientCredentials],
            scopes: &ScopeSet::parse("notes:read").unwrap(),
            refresh_grace_secs: None,
            tier: Default::default(),
        },
    )
    .await
    .unwrap();
    TestClient {
        id,
        secret: Some(secret),
    }
}

/// Registers a public client `id` with every grant and scope `notes:read`
/// straight in the store (for tests of store functions that check the
/// presenting client's row); its revision is 0.
pub async fn store_client<C: migrations::sea_orm::ConnectionTrait>(
    db: &C,
    id: &str,
) -> auth_server::store::clients::Client {
    auth_server::store::clients::create(
        db,
        auth_server::store::clients::NewClient {
            id,
            name: id,
            secret_hash: None,
            redirect_uris: &[],
            grant_types: &[
                auth_server::domain::GrantType::AuthorizationCode,
                auth_server::domain::GrantType::RefreshToken,
            ],
            scopes: &auth_server::domain::ScopeSet::parse("notes:read").unwrap(),
            refresh_grace_secs: None,
            tier: Default::default(),
        },
    )
    .await
    .unwrap()
}

/// Client `id` at revision 0, as `store::refresh::claim` and
/// `store::codes::redeem` take it.
pub fn at(id: &str) -> auth_server::store::clients::ClientAt<'_> {
    auth_server::store::clients::ClientAt { id, revision: 0 }
}
