//! Shared fixtures: backends, a stack with a client and a user, the code
//! flow, and assertions on OAuth and API responses.

use std::ops::Deref;

use e2e::browser::query_param;
use e2e::oauth::{ClientAuth, OAuthResponse, Pkce, random_token};
use e2e::{Browser, ClientSpec, CreatedClient, CreatedUser, Stack, StackOptions};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

pub const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub const PASSWORD: &str = "correct horse battery staple";
pub const SCOPE: &str = "notes:read notes:write";
pub const AUDIENCE: &str = "portcullis-api";

/// A space-separated scope as a set (RFC 6749 §3.3: order does not matter).
pub fn scope_set(scope: &str) -> std::collections::BTreeSet<&str> {
    scope.split(' ').filter(|s| !s.is_empty()).collect()
}

/// Where a test's stack keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// A server URL (`TEST_DATABASE_URL`); each stack gets its own database.
    Postgres(String),
}

impl Backend {
    pub fn postgres() -> Option<Self> {
        migrations::test_support::postgres_url().map(Self::Postgres)
    }
}

pub use migrations::test_support::PgDatabase;

/// A stack and the database it owns; the processes stop before the
/// database is dropped (field order).
pub struct TestStack {
    pub stack: Stack,
    _db: Option<PgDatabase>,
}

impl Deref for TestStack {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl std::ops::DerefMut for TestStack {
    fn deref_mut(&mut self) -> &mut Stack {
        &mut self.stack
    }
}

pub async fn start(backend: &Backend, options: StackOptions) -> TestStack {
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres(admin) => Some(PgDatabase::create(admin).await),
    };
    let options = options.database_url(db.as_ref().map(|d| d.url.clone()));
    let stack = Stack::start(options)
        .await
        .unwrap_or_else(|e| panic!("starting the stack: {e:#}"));
    TestStack { stack, _db: db }
}

/// A stack, a confidential client (default grants and scopes), a user and a
/// fresh browser.
pub struct Fixture {
    pub stack: TestStack,
    pub client: CreatedClient,
    pub user: CreatedUser,
    pub browser: Browser,
}

pub async fn fixture(backend: &Backend) -> Fixture {
    fixture_with(backend, StackOptions::default()).await
}

pub async fn fixture_with(backend: &Backend, options: StackOptions) -> Fixture {
    let stack = start(backend, options).await;
    let client = stack
        .create_client(&ClientSpec::confidential("e2e app", REDIRECT))
        .await
        .unwrap();
    let user = new_user(&stack).await;
    Fixture {
        stack,
        client,
        user,
        browser: Browser::new().unwrap(),
    }
}

pub async fn new_user(stack: &Stack) -> CreatedUser {
    let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
    stack
        .create_user(&email, "Alice Example", PASSWORD)
        .await
        .unwrap()
}

/// An authorization code with the PKCE verifier it needs.
pub struct Grant {
    pub code: String,
    pub pkce: Pkce,
}

/// The parameters of a PKCE S256 authorization request to `REDIRECT`; the
/// wrong-way tests change one of them with [`with_param`].
pub fn code_params<'a>(
    client_id: &'a str,
    scope: &'a str,
    state: &'a str,
    challenge: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", state),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// `params` with `name` set to `value`, or removed when `value` is None.
pub fn with_param<'a>(
    mut params: Vec<(&'a str, &'a str)>,
    name: &'a str,
    value: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    params.retain(|(n, _)| *n != name);
    if let Some(value) = value {
        params.push((name, value));
    }
    params
}

/// The authorize URL of a PKCE S256 request.
pub fn authorize_url(stack: &Stack, client_id: &str, scope: &str, pkce: &Pkce, state: &str) -> Url {
    stack
        .authorize_url(&code_params(client_id, scope, state, &pkce.challenge))
        .unwrap()
}

/// authorize → (log in) → allow; checks that the redirect goes to the
/// client's URI with the `state` sent and `iss` = issuer (RFC 9207).
pub async fn authorize(
    stack: &Stack,
    browser: &Browser,
    client_id: &str,
    user: &CreatedUser,
    scope: &str,
) -> Grant {
    let pkce = Pkce::new();
    let state = random_token();
    let url = authorize_url(stack, client_id, scope, &pkce, &state);
    let redirect = browser
        .authorize_and_allow(&url, &user.email, &user.password)
        .await
        .unwrap_or_else(|e| panic!("authorization: {e:#}"));
    assert_redirect_to_client(&redirect);
    assert_eq!(
        query_param(&redirect, "state").as_deref(),
        Some(state.as_str()),
        "state on {redirect}"
    );
    assert_eq!(
        query_param(&redirect, "iss").as_deref(),
        Some(stack.issuer.as_str()),
        "iss on {redirect}"
    );
    assert_eq!(query_param(&redirect, "error"), None, "error on {redirect}");
    let code = query_param(&redirect, "code").unwrap_or_else(|| panic!("no code on {redirect}"));
    Grant { code, pkce }
}

pub fn assert_redirect_to_client(redirect: &Url) {
    let mut base = redirect.clone();
    base.set_query(None);
    assert_eq!(base.as_str(), REDIRECT, "redirect {redirect}");
}

/// The code exchange (`grant_type=authorization_code`).
pub async fn exchange(stack: &Stack, auth: ClientAuth<'_>, grant: &Grant) -> OAuthResponse {
    stack
        .token(
            auth,
            &[
                ("grant_type", "authorization_code"),
                ("code", &grant.code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &grant.pkce.verifier),
            ],
        )
        .await
        .unwrap()
}

pub async fn refresh(stack: &Stack, auth: ClientAuth<'_>, refresh_token: &str) -> OAuthResponse {
    stack
        .token(
            auth,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
        .unwrap()
}

/// A successful token response.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: Option<String>,
    pub scope: Option<String>,
    pub json: Value,
}

/// 200, `no-store`, `token_type` bearer, an access token and `expires_in`.
pub fn assert_tokens(resp: &OAuthResponse) -> Tokens {
    assert_eq!(resp.status, StatusCode::OK, "token response {resp}");
    assert!(
        resp.no_store(),
        "token response without Cache-Control: no-store: {:?}",
        resp.headers
    );
    let json = resp
        .json
        .clone()
        .unwrap_or_else(|| panic!("token response is not JSON: {resp}"));
    assert!(
        resp.str("token_type")
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
        "token_type in {resp}"
    );
    assert!(
        json.get("expires_in")
            .and_then(Value::as_i64)
            .is_some_and(|s| s > 0),
        "expires_in in {resp}"
    );
    Tokens {
        access: resp.require("access_token").unwrap(),
        refresh: resp.str("refresh_token").map(str::to_owned),
        scope: resp.str("scope").map(str::to_owned),
        json,
    }
}

/// authorize + exchange with `client_secret_basic` (or `client_id` only for
/// a public client): tokens with a refresh token.
pub async fn tokens(f: &Fixture, scope: &str) -> Tokens {
    let grant = authorize(&f.stack, &f.browser, &f.client.id, &f.user, scope).await;
    let tokens = assert_tokens(&exchange(&f.stack, f.client.basic(), &grant).await);
    assert!(
        tokens.refresh.is_some(),
        "no refresh token: {}",
        tokens.json
    );
    tokens
}

/// An RFC 6749 §5.2 error: status, JSON `error`, `no-store`.
pub fn assert_oauth_error(resp: &OAuthResponse, status: StatusCode, error: &str) {
    assert_eq!(
        (resp.status, resp.error()),
        (status, Some(error)),
        "expected {status} {error}, got {resp}"
    );
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "error without JSON content type: {:?}",
        resp.headers
    );
    assert!(
        resp.no_store(),
        "error without Cache-Control: no-store: {:?}",
        resp.headers
    );
}

/// A call to the resource API.
pub async fn api(
    stack: &Stack,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> OAuthResponse {
    let url = format!("{}{path}", stack.resource_url().unwrap());
    let mut req = stack.http.request(method, &url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    OAuthResponse::read(req.send().await.unwrap())
        .await
        .unwrap()
}

/// 401 with `WWW-Authenticate: Bearer … error="invalid_token"` (RFC 6750 §3).
pub fn assert_invalid_token(resp: &OAuthResponse, what: &str) {
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{what}: {resp}");
    let challenge = resp.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#),
        "{what}: WWW-Authenticate {challenge:?}"
    );
}
