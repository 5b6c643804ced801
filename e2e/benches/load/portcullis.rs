//! The Portcullis side: a stack with high limits, its clients and user, and
//! the operations the phases run (flows, refresh rotations,
//! `client_credentials`, resource API calls, sign-ins).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use e2e::browser::query_param;
use e2e::oauth::{ClientAuth, Pkce, random_token};
use e2e::{Browser, ClientSpec, Stack, StackOptions};
use reqwest::StatusCode;
use reqwest::header::AUTHORIZATION;
use serde_json::Value;
use url::Url;

use super::driver::Step;

pub const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub const PASSWORD: &str = "correct horse battery staple";
const SCOPE: &str = "notes:read";
/// Every limit far above what a phase sends (one address sends it all).
const HIGH: &str = "100000000/minute";

/// The stack's options: limits out of the way and a password-hashing queue
/// that holds the 50 concurrent sign-ins (the default 32 would shed the
/// rest with 503, which the login row would count as errors).
pub fn options(
    database_url: Option<String>,
    resource_api: bool,
    login_queue: usize,
) -> StackOptions {
    let mut options = StackOptions::default().database_url(database_url);
    for key in [
        "RATE_LIMIT_LOGIN",
        "RATE_LIMIT_PAGES",
        "RATE_LIMIT_TOKEN",
        "RATE_LIMIT_CLIENT_FAILURES",
    ] {
        options = options.auth_env(key, HIGH);
    }
    options = options.auth_env("PASSWORD_HASH_QUEUE", &login_queue.to_string());
    for key in [
        "RATE_LIMIT_PREMIUM",
        "RATE_LIMIT_STANDARD",
        "RATE_LIMIT_ANONYMOUS",
        "RATE_LIMIT_SEARCH",
    ] {
        options = options.resource_env(key, HIGH);
    }
    if !resource_api {
        options = options.without_resource_api();
    }
    options
}

/// What every worker of a stack needs.
#[derive(Debug)]
pub struct Ctx {
    pub token_url: String,
    pub authorization_endpoint: String,
    pub login_url: Url,
    pub client_id: String,
    pub client_secret: String,
    pub cc_client_id: String,
    pub cc_client_secret: String,
    pub email: String,
}

impl Ctx {
    /// A confidential client (code + refresh), a `client_credentials`
    /// client and a user, made with the CLI.
    pub async fn create(stack: &Stack) -> anyhow::Result<Arc<Self>> {
        let client = stack
            .create_client(&ClientSpec::confidential("load app", REDIRECT))
            .await?;
        let cc = stack
            .create_client(
                &ClientSpec::confidential("load service", REDIRECT).grant("client_credentials"),
            )
            .await?;
        let email = format!("load-{}@example.com", uuid::Uuid::new_v4().simple());
        stack.create_user(&email, "Load User", PASSWORD).await?;
        Ok(Arc::new(Self {
            token_url: stack.endpoint("token_endpoint")?,
            authorization_endpoint: stack.endpoint("authorization_endpoint")?,
            login_url: Url::parse(&format!("{}/login", stack.auth.url))?,
            client_id: client.id.clone(),
            client_secret: client.secret.clone().context("no client secret")?,
            cc_client_id: cc.id.clone(),
            cc_client_secret: cc.secret.clone().context("no client secret")?,
            email,
        }))
    }

    fn basic(&self) -> ClientAuth<'_> {
        ClientAuth::Basic {
            id: &self.client_id,
            secret: &self.client_secret,
        }
    }
}

/// Tokens of one code flow.
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

/// A browser with its session and the refresh token it holds last.
#[derive(Clone)]
pub struct Worker {
    pub ctx: Arc<Ctx>,
    pub browser: Browser,
    pub refresh_token: String,
}

impl Worker {
    /// A worker on `browser` (signed in by its first flow if it was not);
    /// one flow gives its refresh token.
    pub async fn new(ctx: &Arc<Ctx>, browser: Browser) -> anyhow::Result<Self> {
        let mut worker = Self {
            ctx: ctx.clone(),
            browser,
            refresh_token: String::new(),
        };
        worker.refresh_token = worker.flow().await?.refresh_token;
        Ok(worker)
    }

    /// One authorization-code flow with PKCE in the browser's session:
    /// `GET /authorize` (sign-in only when the browser has no session), the
    /// consent page, `POST /consent`, then the code exchange.
    pub async fn flow(&self) -> anyhow::Result<Tokens> {
        let ctx = &self.ctx;
        let pkce = Pkce::new();
        let state = random_token();
        let mut url = Url::parse(&ctx.authorization_endpoint)?;
        url.query_pairs_mut().extend_pairs([
            ("response_type", "code"),
            ("client_id", ctx.client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("scope", SCOPE),
            ("state", &state),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ]);
        let redirect = self
            .browser
            .authorize_and_allow(&url, &ctx.email, PASSWORD)
            .await?;
        if query_param(&redirect, "state").as_deref() != Some(state.as_str()) {
            bail!("callback with the wrong state: {redirect}");
        }
        let code =
            query_param(&redirect, "code").with_context(|| format!("no code on {redirect}"))?;
        let answer = e2e::oauth::post_form(
            &self.browser.http,
            &ctx.token_url,
            ctx.basic(),
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
        Ok(Tokens {
            access_token: answer.require("access_token")?,
            refresh_token: answer.require("refresh_token")?,
        })
    }

    /// One rotating refresh grant.
    pub async fn refresh(mut self) -> anyhow::Result<Step<Self>> {
        let answer = e2e::oauth::post_form(
            &self.browser.http,
            &self.ctx.token_url,
            self.ctx.basic(),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &self.refresh_token),
            ],
        )
        .await?;
        if answer.status != StatusCode::OK {
            bail!("refresh: {answer}");
        }
        let rotated = answer.require("refresh_token")?;
        if rotated == self.refresh_token {
            bail!("refresh: the refresh token was not rotated");
        }
        self.refresh_token = rotated;
        Ok(Step::Did(self))
    }

    /// One `client_credentials` grant.
    pub async fn client_credentials(self) -> anyhow::Result<Step<Self>> {
        let answer = e2e::oauth::post_form(
            &self.browser.http,
            &self.ctx.token_url,
            ClientAuth::Basic {
                id: &self.ctx.cc_client_id,
                secret: &self.ctx.cc_client_secret,
            },
            &[("grant_type", "client_credentials")],
        )
        .await?;
        if answer.status != StatusCode::OK {
            bail!("client_credentials: {answer}");
        }
        answer.require("access_token")?;
        Ok(Step::Did(self))
    }

    /// One sign-in as a browser does it: `GET /login`, then `POST /login`
    /// with the right password (argon2id verify), expecting 303.
    pub async fn sign_in(self) -> anyhow::Result<Step<Self>> {
        let answer = self
            .browser
            .login(&self.ctx.login_url, &self.ctx.email, PASSWORD)
            .await?;
        if answer.status != StatusCode::SEE_OTHER {
            bail!("sign-in: expected 303, got {answer}");
        }
        Ok(Step::Did(self))
    }
}

/// `n` workers, each with its own refresh token; all share one browser
/// session (one sign-in).
pub async fn workers(ctx: &Arc<Ctx>, n: usize) -> anyhow::Result<Vec<Worker>> {
    let browser = Browser::new()?;
    let mut workers = Vec::with_capacity(n);
    for _ in 0..n {
        workers.push(Worker::new(ctx, browser.clone()).await?);
    }
    Ok(workers)
}

/// `n` workers, each with a browser of its own (its own session).
pub async fn own_browsers(ctx: &Arc<Ctx>, n: usize) -> anyhow::Result<Vec<Worker>> {
    let mut workers = Vec::with_capacity(n);
    for _ in 0..n {
        workers.push(Worker::new(ctx, Browser::new()?).await?);
    }
    Ok(workers)
}

/// A GET with an optional bearer token that must answer `expected`.
#[derive(Clone)]
pub struct Get {
    pub http: reqwest::Client,
    pub url: Arc<str>,
    pub expected: StatusCode,
}

impl Get {
    pub async fn send(&self, token: Option<&str>) -> anyhow::Result<()> {
        let mut request = self.http.get(&*self.url);
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let answer = request
            .send()
            .await
            .with_context(|| format!("GET {}", self.url))?;
        let status = answer.status();
        let body = answer.bytes().await.context("reading the body")?;
        if status != self.expected {
            bail!(
                "GET {}: expected {}, got {status}: {}",
                self.url,
                self.expected,
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        Ok(())
    }
}

/// A client with `connections` keep-alive connections.
pub fn api_client(connections: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .context("building the API client")
}

/// Tokens handed out one per request, never twice.
pub struct Pool {
    tokens: Vec<String>,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(tokens: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            tokens,
            next: AtomicUsize::new(0),
        })
    }

    pub fn take(&self) -> Option<&str> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.tokens.get(i).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Starts again from the first token (for a second server).
    pub fn rewind(&self) {
        self.next.store(0, Ordering::Relaxed);
    }
}

/// `count` valid access tokens, each different: the claims of `model` (a
/// token the server issued) with a new `jti`, signed with the server's own
/// key from `keys_dir` on every core of this machine (before the phases,
/// so the signing costs nothing to the servers measured).
pub fn mint(model: &str, keys_dir: &std::path::Path, count: usize) -> anyhow::Result<Vec<String>> {
    let (header, claims) = e2e::oauth::decode_jwt(model)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .context("the model token has no kid")?
        .to_owned();
    let mut pem = None;
    for entry in std::fs::read_dir(keys_dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pem") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        if shared::jwt::Signer::from_pem(&text).is_ok_and(|s| s.kid() == kid) {
            pem = Some(text);
        }
    }
    let pem =
        pem.with_context(|| format!("no private key of kid {kid} in {}", keys_dir.display()))?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let pem = &pem;
                let claims = &claims;
                let prefix = &prefix;
                scope.spawn(move || -> anyhow::Result<Vec<String>> {
                    let signer = shared::jwt::Signer::from_pem(pem)?;
                    let mut claims = claims.clone();
                    let start = t * per_thread;
                    let end = ((t + 1) * per_thread).min(count);
                    let mut out = Vec::with_capacity(end.saturating_sub(start));
                    for i in start..end {
                        if let Some(map) = claims.as_object_mut() {
                            map.insert("jti".into(), Value::String(format!("{prefix}-{i}")));
                        }
                        out.push(signer.sign(&claims)?);
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut tokens = Vec::with_capacity(count);
        for handle in handles {
            let part = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a minting thread panicked"))??;
            tokens.extend(part);
        }
        Ok(tokens)
    })
}
