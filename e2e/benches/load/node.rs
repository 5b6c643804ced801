//! The node-oidc-provider peer (`../shared/peers/node-oidc`): copied to a
//! writable folder, `npm ci` there (once; kept for the next runs), started on
//! a free loopback port, and driven by the same Rust client as Portcullis
//! (not its `flow.py`: one client for both sides, no Python needed).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::Browser;
use e2e::oauth::{ClientAuth, OAuthResponse, Pkce, random_token};
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

use super::driver::Step;

/// The peer's fixed client, user and redirect (`server.mjs`, `flow.py`).
pub const CLIENT_ID: &str = "bench-confidential";
pub const CLIENT_SECRET: &str = "bench-confidential-secret-0123456789abcdef";
pub const REDIRECT: &str = "http://127.0.0.1:9/cb";
const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";
/// `offline_access` (with `prompt=consent`, which oidc-provider requires for
/// it) gives a refresh token; `api:read` makes the access token a JWT.
const SCOPE: &str = "offline_access api:read";

/// Where the peer comes from: `LOAD_NODE_SRC`, else
/// `<workspace>/../shared/peers/node-oidc`.
fn source_dir() -> PathBuf {
    std::env::var_os("LOAD_NODE_SRC").map_or_else(
        || e2e::workspace_root().join("../shared/peers/node-oidc"),
        PathBuf::from,
    )
}

/// Where it is installed: `LOAD_NODE_DIR`, else `$TMPDIR/portcullis-load-node-oidc`.
fn install_dir() -> PathBuf {
    std::env::var_os("LOAD_NODE_DIR").map_or_else(
        || std::env::temp_dir().join("portcullis-load-node-oidc"),
        PathBuf::from,
    )
}

/// The installed peer folder and versions, or why the node rows are skipped.
pub struct Prepared {
    pub dir: PathBuf,
    pub versions: String,
}

pub async fn prepare() -> Result<Prepared, String> {
    if std::env::var("LOAD_NODE").is_ok_and(|v| v == "0") {
        return Err("LOAD_NODE=0".into());
    }
    let node_version = match tokio::process::Command::new("node")
        .arg("--version")
        .output()
        .await
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => return Err(format!("`node --version` failed: {}", out.status)),
        Err(e) => return Err(format!("no `node` on PATH ({e})")),
    };
    let src = source_dir();
    if !src.join("server.mjs").is_file() {
        return Err(format!("no peer at {} (set LOAD_NODE_SRC)", src.display()));
    }
    let dir = install_dir();
    copy_peer(&src, &dir).map_err(|e| format!("copying the peer: {e:#}"))?;
    install(&dir).await.map_err(|e| format!("{e:#}"))?;
    let provider = std::fs::read_to_string(dir.join("node_modules/oidc-provider/package.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    Ok(Prepared {
        dir,
        versions: format!("oidc-provider {provider}, node {node_version}"),
    })
}

/// Copies the peer's regular files (not `node_modules`, `.venv`) into `dir`,
/// writable (the source may be read-only).
fn copy_peer(src: &Path, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let to = dir.join(entry.file_name());
        let contents = std::fs::read(entry.path())?;
        if std::fs::read(&to).is_ok_and(|old| old == contents) {
            continue;
        }
        if to.exists() {
            std::fs::remove_file(&to).with_context(|| format!("removing {}", to.display()))?;
        }
        std::fs::write(&to, contents).with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}

/// `npm ci` unless `node_modules` was installed from this very lock file.
async fn install(dir: &Path) -> anyhow::Result<()> {
    let lock = std::fs::read(dir.join("package-lock.json")).context("no package-lock.json")?;
    let stamp = dir.join("node_modules/.portcullis-load-lock");
    if std::fs::read(&stamp).is_ok_and(|s| s == lock)
        && dir
            .join("node_modules/oidc-provider/package.json")
            .is_file()
    {
        return Ok(());
    }
    eprintln!("load: npm ci in {} (once)", dir.display());
    let out = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running npm")?;
    if !out.status.success() {
        bail!(
            "`npm ci` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .take(5)
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    std::fs::write(&stamp, lock).context("writing the install stamp")?;
    Ok(())
}

/// The running provider. Dropping it kills the process.
pub struct NodePeer {
    child: tokio::process::Child,
    pub pid: u32,
    pub base: String,
    pub token_endpoint: String,
    pub authorization_endpoint: String,
    log: PathBuf,
}

impl NodePeer {
    /// `node server.mjs` on a free port (found by binding port 0; the
    /// provider needs its port before it listens, for its issuer); tried
    /// again on another port if it dies at start.
    pub async fn start(prepared: &Prepared) -> anyhow::Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(&prepared.dir).await {
                Ok(peer) => return Ok(peer),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("node peer did not start")))
    }

    async fn start_once(dir: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log)?;
        let mut child = tokio::process::Command::new("node")
            .arg("server.mjs")
            .env("PORT", port.to_string())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("spawning node")?;
        let pid = child.id().context("node has no pid")?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let discovery = format!("{base}/.well-known/openid-configuration");
        let deadline = Instant::now() + Duration::from_secs(30);
        let metadata = loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "node server.mjs exited at start ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if let Ok(answer) = http.get(&discovery).send().await
                && answer.status().is_success()
            {
                break answer.json::<Value>().await.context("discovery JSON")?;
            }
            if Instant::now() > deadline {
                bail!("node peer: no discovery document within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let field = |name: &str| {
            metadata
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("no {name} in the peer's discovery"))
        };
        Ok(Self {
            pid,
            base,
            token_endpoint: field("token_endpoint")?,
            authorization_endpoint: field("authorization_endpoint")?,
            child,
            log,
        })
    }

    /// The server's output so far (for an error message).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A browser of the peer (its own cookie jar) and the refresh token it holds.
#[derive(Clone)]
pub struct NodeWorker {
    pub browser: Browser,
    pub refresh_token: String,
    pub token_endpoint: String,
    pub authorization_endpoint: String,
}

impl NodeWorker {
    /// A browser that signs in once (in its first flow) and keeps its session.
    pub async fn new(peer: &NodePeer) -> anyhow::Result<Self> {
        let mut worker = Self {
            browser: Browser::new()?,
            refresh_token: String::new(),
            token_endpoint: peer.token_endpoint.clone(),
            authorization_endpoint: peer.authorization_endpoint.clone(),
        };
        worker.refresh_token = worker.flow().await?;
        Ok(worker)
    }

    /// One authorization-code flow with PKCE through the browser's session
    /// (sign-in only when it has none; consent every time, as `prompt=consent`
    /// asks), then the code exchange; the refresh token it gave.
    pub async fn flow(&self) -> anyhow::Result<String> {
        let pkce = Pkce::new();
        let state = random_token();
        let mut url = Url::parse(&self.authorization_endpoint)?;
        url.query_pairs_mut().extend_pairs([
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", SCOPE),
            ("prompt", "consent"),
            ("state", &state),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ]);
        let callback = self.browse(url).await?;
        let param = |name: &str| e2e::browser::query_param(&callback, name);
        if param("state").as_deref() != Some(state.as_str()) {
            bail!("node callback with the wrong state: {callback}");
        }
        let code =
            param("code").with_context(|| format!("node callback without code: {callback}"))?;
        let answer = e2e::oauth::post_form(
            &self.browser.http,
            &self.token_endpoint,
            ClientAuth::Basic {
                id: CLIENT_ID,
                secret: CLIENT_SECRET,
            },
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await?;
        if answer.status != StatusCode::OK {
            bail!("node code exchange: {answer}");
        }
        answer.require("refresh_token")
    }

    /// Follows redirects and fills the sign-in and consent forms until the
    /// redirect URI comes back.
    async fn browse(&self, url: Url) -> anyhow::Result<Url> {
        let mut page = self.browser.get(&url).await?;
        for _ in 0..16 {
            if page.status.is_redirection() {
                let next = page
                    .location()
                    .with_context(|| format!("node: redirect without Location: {page}"))?;
                if next.as_str().starts_with(REDIRECT) {
                    return Ok(next);
                }
                page = self.browser.get(&next).await?;
                continue;
            }
            if page.status != StatusCode::OK {
                bail!("node: unexpected page {page}");
            }
            let forms = e2e::html::forms(&page.body);
            let form = forms
                .iter()
                .find(|f| !f.action_path().ends_with("/abort"))
                .with_context(|| format!("node: no form on {page}"))?;
            let mut fields = form.hidden.clone();
            if form.other_names.iter().any(|n| n == "password") {
                fields.push(("username".into(), USER.into()));
                fields.push(("password".into(), PASSWORD.into()));
            }
            let action = page.url.join(&form.action)?;
            page = self.browser.post_form(&action, &fields).await?;
        }
        bail!("node: no redirect back after 16 steps")
    }

    /// One refresh grant; the rotated token replaces the old one.
    pub async fn refresh(mut self) -> anyhow::Result<Step<Self>> {
        let answer: OAuthResponse = e2e::oauth::post_form(
            &self.browser.http,
            &self.token_endpoint,
            ClientAuth::Basic {
                id: CLIENT_ID,
                secret: CLIENT_SECRET,
            },
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &self.refresh_token),
            ],
        )
        .await?;
        if answer.status != StatusCode::OK {
            bail!("node refresh: {answer}");
        }
        let rotated = answer.require("refresh_token")?;
        if rotated == self.refresh_token {
            bail!("node refresh: the refresh token was not rotated");
        }
        self.refresh_token = rotated;
        Ok(Step::Did(self))
    }
}
