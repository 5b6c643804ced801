//! `cargo run --release -p e2e --bin stack`: the whole Portcullis stack on
//! the embedded default, for a newcomer.
//!
//! - SQLite `data/portcullis.db` and signing keys in `keys/` (both under the
//!   workspace root; `DATABASE_URL` / `AUTH_KEYS_DIR` override them);
//! - `auth-server` on `AUTH_LISTEN` (127.0.0.1:8080), `resource-api` on
//!   `RESOURCE_LISTEN` (127.0.0.1:8081), every other variable of DESIGN.md is
//!   passed through;
//! - a demo confidential client and a demo user, made once and remembered in
//!   `data/demo.json` (mode 0600), then a copy-pasteable walk through the flow;
//! - Ctrl-C or SIGTERM stops both services and waits for them.
//!
//! One build: the services run from this executable, which links both
//! services' libraries. `stack` starts itself again as `stack auth-server
//! ARGS…` (the `auth-server` command line, as its `main` runs it) and
//! `stack resource-api serve`, so that each service keeps its own process,
//! environment, log stream, `listening on` line and graceful shutdown, with
//! no second `cargo build` and no binary looked up in the target dir.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use e2e::oauth::{self, ClientAuth, OAuthResponse};
use e2e::service::{Service, ServiceSpec};
use e2e::stack::write_private;
use e2e::{Browser, workspace_root};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const DEMO_REDIRECT_URI: &str = "http://127.0.0.1:8765/callback";
const DEMO_SCOPE: &str = shared::contract::DEFAULT_CLIENT_SCOPE;
const DEMO_EMAIL: &str = "demo@example.com";
const STOP_GRACE: Duration = Duration::from_secs(10);

/// `data/demo.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Demo {
    database_url: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    user_id: String,
    email: String,
    password: String,
}

/// The first argument that makes `stack` run the authorization server.
const AUTH_APPLET: &str = "auth-server";
/// The first argument that makes `stack` run the resource API.
const API_APPLET: &str = "resource-api";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let applet = args.next();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("stack: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match applet.as_ref().and_then(|a| a.to_str()) {
        Some(AUTH_APPLET) => runtime.block_on(auth_server_main(args.collect())),
        Some(API_APPLET) => runtime.block_on(resource_api_main(args.collect())),
        Some(other) => {
            eprintln!(
                "stack: unknown argument {other:?} (run `stack` alone; `stack {AUTH_APPLET} ARGS…` \
                 and `stack {API_APPLET} serve` run one service)"
            );
            ExitCode::FAILURE
        }
        None => match runtime.block_on(run()) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("stack: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// This executable, for starting it again as a service. On Linux
/// `/proc/self/exe`: the very file this process runs, even when a later
/// `cargo build` has replaced (unlinked) `target/…/stack` meanwhile.
fn own_executable() -> anyhow::Result<PathBuf> {
    let proc_self = Path::new("/proc/self/exe");
    if cfg!(target_os = "linux") && proc_self.exists() {
        return Ok(proc_self.to_path_buf());
    }
    std::env::current_exe().context("finding the stack executable")
}

/// `auth-server ARGS…`, as auth-server's `main` runs it.
async fn auth_server_main(args: Vec<OsString>) -> ExitCode {
    if let Err(error) = shared::telemetry::init_from_env() {
        return shared::startup::report(&error);
    }
    let argv = std::iter::once(OsString::from(AUTH_APPLET)).chain(args);
    let cli = <auth_server::cli::Cli as clap::Parser>::parse_from(argv);
    match auth_server::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => shared::startup::report(&error),
    }
}

/// `resource-api serve`, as resource-api's `main` runs it (the only command
/// `stack` needs; the `resource-api` binary has the others).
async fn resource_api_main(args: Vec<OsString>) -> ExitCode {
    if args.len() != 1 || args[0] != "serve" {
        eprintln!("error: `stack {API_APPLET}` runs `serve` only; use the resource-api binary");
        return ExitCode::FAILURE;
    }
    if let Err(error) = shared::telemetry::init_from_env() {
        return shared::startup::report(&error);
    }
    let served = async {
        let settings = resource_api::Settings::load(None)?;
        resource_api::Application::build_with(settings, resource_api::BuildOptions::default())
            .await?
            .run_until_stopped()
            .await
    };
    match served.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => shared::startup::report(&error),
    }
}

/// The folder the defaults are relative to: the workspace root when this
/// binary runs from its checkout, else the current directory.
fn base_dir() -> PathBuf {
    let root = workspace_root();
    if root.join("Cargo.toml").is_file() {
        root
    } else {
        PathBuf::from(".")
    }
}

/// Environment shared by the CLI and both services.
struct Env {
    base: PathBuf,
    database_url: String,
    keys_dir: String,
    /// The shared secret of the revocations feed (`REVOCATIONS_TOKEN`):
    /// the user's, or a fresh one per run, so that a revoked user's access
    /// tokens stop working on the resource API within a second.
    revocations_token: String,
}

impl Env {
    fn from_process() -> Self {
        let base = base_dir();
        let database_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            format!(
                "sqlite://{}?mode=rwc",
                base.join("data").join("portcullis.db").display()
            )
        });
        let keys_dir = std::env::var("AUTH_KEYS_DIR")
            .unwrap_or_else(|_| base.join("keys").display().to_string());
        let revocations_token =
            std::env::var("REVOCATIONS_TOKEN").unwrap_or_else(|_| oauth::random_token());
        Self {
            base,
            database_url,
            keys_dir,
            revocations_token,
        }
    }

    /// This executable running `applet` (see the module documentation).
    fn spec(&self, name: &str, program: &Path, applet: &str) -> ServiceSpec {
        let mut spec = ServiceSpec::new(name, program)
            .arg(applet)
            .env("DATABASE_URL", &self.database_url)
            .env("AUTH_KEYS_DIR", &self.keys_dir)
            .env("REVOCATIONS_TOKEN", &self.revocations_token);
        spec.current_dir = Some(self.base.clone());
        // `ps` shows `…/stack auth-server serve`, not `/proc/self/exe …`.
        spec.arg0 = std::env::args_os().next();
        // The user's environment is the configuration here.
        spec.clean_env = false;
        spec.echo = true;
        // The services write into our pipe and would pick JSON logs; a
        // person at a terminal reads their echo: text, unless LOG_FORMAT says.
        if std::env::var_os("LOG_FORMAT").is_none()
            && std::io::IsTerminal::is_terminal(&std::io::stderr())
        {
            spec = spec.env("LOG_FORMAT", "text");
        }
        spec
    }

    /// `demo.json` beside the SQLite file (`data/demo.json` by default), or
    /// in `data/` for another database.
    fn demo_path(&self) -> PathBuf {
        let sqlite_file = self
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.database_url.strip_prefix("sqlite:"))
            .and_then(|rest| rest.split('?').next())
            .filter(|path| !path.is_empty() && *path != ":memory:");
        let dir = sqlite_file
            .and_then(|file| Path::new(file).parent().map(|dir| self.base.join(dir)))
            .unwrap_or_else(|| self.base.join("data"));
        dir.join("demo.json")
    }
}

async fn run() -> anyhow::Result<ExitCode> {
    let exe = own_executable()?;
    let env = Env::from_process();
    if let Some(dir) = env.demo_path().parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::create_dir_all(&env.keys_dir).with_context(|| format!("creating {}", env.keys_dir))?;

    let cli = env.spec("auth", &exe, AUTH_APPLET);
    run_cli(&cli, &["migrate"], None).await?;

    let mut demo = load_demo(&env);
    if demo.is_none() {
        demo = Some(create_demo(&cli, &env, None).await?);
    }

    let mut auth = Service::start(cli.clone().arg("serve")).await?;
    let metadata = fetch_metadata(&auth.url).await?;
    let issuer = str_field(&metadata, "issuer")?;

    // data/demo.json may outlive the database it was made for: check it.
    let mut demo = match demo {
        Some(demo) => demo,
        None => bail!("no demo client"),
    };
    let checked = check_demo(&metadata, &demo).await?;
    if !checked.client_ok || !checked.user_ok {
        eprintln!(
            "stack: data/demo.json does not match the database; making a new demo client/user"
        );
        demo = create_demo(
            &cli,
            &env,
            Some((&demo, checked.client_ok, checked.user_ok)),
        )
        .await?;
    }

    let api_spec = env
        .spec("api", &exe, API_APPLET)
        .env("AUTH_ISSUER", &issuer)
        .arg("serve");
    let mut api = match Service::start(api_spec).await {
        Ok(api) => api,
        Err(e) => {
            let _ = auth.terminate(STOP_GRACE).await;
            return Err(e);
        }
    };

    print_walkthrough(&metadata, &issuer, &api.url, &demo, &env);

    let code = wait_for_stop(&mut auth, &mut api).await;
    let (a, b) = tokio::join!(auth.terminate(STOP_GRACE), api.terminate(STOP_GRACE));
    eprintln!(
        "stack: auth-server {}, resource-api {}",
        describe(a),
        describe(b)
    );
    Ok(code)
}

fn describe(result: anyhow::Result<std::process::ExitStatus>) -> String {
    match result {
        Ok(status) => format!("stopped ({status})"),
        Err(e) => format!("could not be stopped: {e:#}"),
    }
}

/// Waits for Ctrl-C, SIGTERM or the end of a service.
async fn wait_for_stop(auth: &mut Service, api: &mut Service) -> ExitCode {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            eprintln!("stack: Ctrl-C, stopping");
            ExitCode::SUCCESS
        }
        () = terminate => {
            eprintln!("stack: SIGTERM, stopping");
            ExitCode::SUCCESS
        }
        status = auth.wait() => {
            eprintln!("stack: auth-server exited ({status:?}), stopping");
            ExitCode::FAILURE
        }
        status = api.wait() => {
            eprintln!("stack: resource-api exited ({status:?}), stopping");
            ExitCode::FAILURE
        }
    }
}

/// Runs `auth-server --json ARGS` and parses its stdout.
async fn run_cli(cli: &ServiceSpec, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Value> {
    let mut cmd = cli.command();
    cmd.args(&cli.args)
        .arg("--json")
        .args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().context("spawning auth-server")?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await?;
        pipe.shutdown().await?;
    }
    let output = child.wait_with_output().await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "auth-server {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let trimmed = stdout.trim();
    if trimmed.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(trimmed).with_context(|| format!("auth-server {args:?} printed {trimmed}"))
}

fn load_demo(env: &Env) -> Option<Demo> {
    let text = std::fs::read_to_string(env.demo_path()).ok()?;
    let demo: Demo = serde_json::from_str(&text).ok()?;
    (demo.database_url == env.database_url).then_some(demo)
}

fn save_demo(env: &Env, demo: &Demo) -> anyhow::Result<()> {
    let path = env.demo_path();
    let tmp = path.with_extension("json.tmp");
    write_private(&tmp, serde_json::to_string_pretty(demo)?.as_bytes())?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Makes the demo client and user (or only the one of `old` that failed its
/// check) and saves `data/demo.json`.
async fn create_demo(
    cli: &ServiceSpec,
    env: &Env,
    old: Option<(&Demo, bool, bool)>,
) -> anyhow::Result<Demo> {
    let keep_client = old.filter(|(_, client_ok, _)| *client_ok).map(|(d, ..)| d);
    let keep_user = old.filter(|(_, _, user_ok)| *user_ok).map(|(d, ..)| d);

    let (client_id, client_secret) = match keep_client {
        Some(demo) => (demo.client_id.clone(), demo.client_secret.clone()),
        None => {
            let client = run_cli(
                cli,
                &[
                    "clients",
                    "create",
                    "--name",
                    "Portcullis demo",
                    "--redirect-uri",
                    DEMO_REDIRECT_URI,
                    "--scope",
                    DEMO_SCOPE,
                    "--grant",
                    "authorization_code",
                    "--grant",
                    "refresh_token",
                    "--grant",
                    "client_credentials",
                ],
                None,
            )
            .await?;
            (
                str_field(&client, "client_id")?,
                str_field(&client, "client_secret")?,
            )
        }
    };

    let (user_id, email, password) = match keep_user {
        Some(demo) => (
            demo.user_id.clone(),
            demo.email.clone(),
            demo.password.clone(),
        ),
        None => {
            let password = oauth::random_token();
            let stdin = format!("{password}\n");
            let mut email = DEMO_EMAIL.to_owned();
            let user = match create_user(cli, &email, &stdin).await {
                Ok(user) => user,
                Err(first) => {
                    // demo@example.com exists with a password we no longer know.
                    let suffix: String = oauth::random_token().chars().take(8).collect();
                    email = format!("demo-{}@example.com", suffix.to_ascii_lowercase());
                    create_user(cli, &email, &stdin)
                        .await
                        .with_context(|| format!("after: {first:#}"))?
                }
            };
            (str_field(&user, "id")?, email, password)
        }
    };

    let demo = Demo {
        database_url: env.database_url.clone(),
        client_id,
        client_secret,
        redirect_uri: DEMO_REDIRECT_URI.to_owned(),
        user_id,
        email,
        password,
    };
    save_demo(env, &demo)?;
    Ok(demo)
}

async fn create_user(cli: &ServiceSpec, email: &str, stdin: &str) -> anyhow::Result<Value> {
    run_cli(
        cli,
        &[
            "users",
            "create",
            "--email",
            email,
            "--name",
            "Demo User",
            "--password-stdin",
        ],
        Some(stdin),
    )
    .await
}

struct DemoCheck {
    client_ok: bool,
    user_ok: bool,
}

/// The client authenticates (client_credentials) and the user can log in.
async fn check_demo(metadata: &Value, demo: &Demo) -> anyhow::Result<DemoCheck> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    let token = oauth::post_form(
        &http,
        &str_field(metadata, "token_endpoint")?,
        ClientAuth::Basic {
            id: &demo.client_id,
            secret: &demo.client_secret,
        },
        &[
            ("grant_type", "client_credentials"),
            ("scope", "notes:read"),
        ],
    )
    .await?;
    let client_ok = token.status.is_success();

    let issuer = str_field(metadata, "issuer")?;
    let login_url = url::Url::parse(&format!("{}/login", issuer.trim_end_matches('/')))?;
    let user_ok = match Browser::new()?
        .login(&login_url, &demo.email, &demo.password)
        .await
    {
        Ok(page) => page.status.is_redirection(),
        Err(e) => {
            eprintln!("stack: could not check the demo user: {e:#}");
            true
        }
    };
    Ok(DemoCheck { client_ok, user_ok })
}

async fn fetch_metadata(auth_url: &str) -> anyhow::Result<Value> {
    let url = format!("{auth_url}{}", shared::paths::METADATA_PATH);
    let resp = OAuthResponse::read(
        reqwest::get(&url)
            .await
            .with_context(|| format!("GET {url}"))?,
    )
    .await?;
    match resp.json {
        Some(json) if resp.status.is_success() => Ok(json),
        _ => bail!("GET {url}: {} {}", resp.status, resp.body),
    }
}

fn str_field(value: &Value, key: &str) -> anyhow::Result<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no {key} in {value}"))
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn print_walkthrough(metadata: &Value, issuer: &str, api: &str, demo: &Demo, env: &Env) {
    let endpoint = |key: &str| {
        str_field(metadata, key).unwrap_or_else(|_| format!("{issuer}/<{key} missing>"))
    };
    let authorize = endpoint("authorization_endpoint");
    let token = endpoint("token_endpoint");
    let revoke = endpoint("revocation_endpoint");
    let jwks = endpoint("jwks_uri");
    let Demo {
        client_id: id,
        client_secret: secret,
        email,
        password,
        redirect_uri,
        ..
    } = demo;
    let redirect = enc(redirect_uri);
    let scope = DEMO_SCOPE.replace(' ', "%20").replace(':', "%3A");
    let demo_file = env.demo_path();
    println!(
        r#"
================================================================================
 Portcullis is running (Ctrl-C stops both services)

   authorization server  {issuer}
   metadata              {issuer}/.well-known/oauth-authorization-server
   JWKS                  {jwks}
   resource API          {api}   (GET /api/v2/me, GET/POST /api/v2/notes)
   database              {db}
   signing keys          {keys}

 Demo client (confidential; saved in {demo_file})
   client_id      {id}
   client_secret  {secret}
   redirect_uri   {redirect_uri}
   scopes         {DEMO_SCOPE}

 Demo user
   email     {email}
   password  {password}

 Walk through the flow (bash; needs curl and openssl):

 # 1. A PKCE verifier, its S256 challenge, and a state
 VERIFIER=$(openssl rand -base64 48 | tr '+/' '-_' | tr -d '=\n')
 CHALLENGE=$(printf '%s' "$VERIFIER" | openssl dgst -sha256 -binary | openssl base64 -A | tr '+/' '-_' | tr -d '=')
 STATE=$(openssl rand -hex 16)

 # 2. Open this URL in a browser, log in as {email} and allow.
 #    The browser then goes to {redirect_uri}?code=...&state=...&iss=...
 #    (nothing listens there: copy the code from the address bar).
 echo "{authorize}?response_type=code&client_id={id_enc}&redirect_uri={redirect}&scope={scope}&state=$STATE&code_challenge=$CHALLENGE&code_challenge_method=S256"
 CODE=paste-the-code-here

 # 3. Exchange the code (within 60 s) for tokens
 curl -s -u '{id}:{secret}' -d grant_type=authorization_code --data-urlencode "code=$CODE" \
      --data-urlencode 'redirect_uri={redirect_uri}' -d "code_verifier=$VERIFIER" {token} | tee token.json; echo
 ACCESS=$(sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p' token.json)
 REFRESH=$(sed -n 's/.*"refresh_token" *: *"\([^"]*\)".*/\1/p' token.json)

 # 4. Call the resource API
 curl -s -H "Authorization: Bearer $ACCESS" {api}/api/v2/me; echo
 curl -s -H "Authorization: Bearer $ACCESS" -H 'Content-Type: application/json' \
      -d '{{"title":"first note","body":"hello"}}' {api}/api/v2/notes; echo
 curl -s -H "Authorization: Bearer $ACCESS" {api}/api/v2/notes; echo

 # 5. Refresh: a new refresh token each time; reusing an old one revokes them all
 curl -s -u '{id}:{secret}' -d grant_type=refresh_token --data-urlencode "refresh_token=$REFRESH" \
      {token} | tee token.json; echo
 REFRESH=$(sed -n 's/.*"refresh_token" *: *"\([^"]*\)".*/\1/p' token.json)

 # 6. Revoke the refresh token; a machine-to-machine token (client_credentials)
 curl -s -u '{id}:{secret}' --data-urlencode "token=$REFRESH" -d token_type_hint=refresh_token {revoke}; echo
 curl -s -u '{id}:{secret}' -d grant_type=client_credentials -d scope=notes:read {token}; echo
================================================================================
"#,
        db = env.database_url,
        keys = env.keys_dir,
        demo_file = demo_file.display(),
        id_enc = enc(id),
    );
}
