//! The `stack` binary (README's first command) starts the whole stack from
//! its own build: no `cargo`, no service binary from the target dir. Run
//! with ports 0 and a temporary database and keys folder, it prints the
//! walk-through; the demo client and user it prints complete the
//! authorization-code flow and call the resource API; SIGTERM stops it
//! cleanly.

use std::process::Stdio;
use std::time::Duration;

use e2e::Browser;
use e2e::browser::query_param;
use e2e::oauth::{ClientAuth, Pkce, post_form};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use url::Url;

/// A run of `stack` may generate a signing key and hash a password.
const START: Duration = Duration::from_secs(120);

/// The value after `label` on the walk-through's line that starts with it.
fn field(walkthrough: &str, label: &str) -> String {
    walkthrough
        .lines()
        .map(str::trim_start)
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{walkthrough}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_binary_runs_the_whole_stack_from_its_own_build() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stack"));
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("AUTH_")
            || key.starts_with("RESOURCE_")
            || key.starts_with("E2E_")
            || matches!(
                key,
                "DATABASE_URL" | "JWKS_URL" | "REDIS_URL" | "TLS_CERT" | "TLS_KEY" | "LOG_FORMAT"
            )
        {
            cmd.env_remove(key);
        }
    }
    let db = dir.path().join("portcullis.db");
    cmd.env(
        "DATABASE_URL",
        format!("sqlite://{}?mode=rwc", db.display()),
    )
    .env("AUTH_KEYS_DIR", dir.path().join("keys"))
    .env("AUTH_LISTEN", "127.0.0.1:0")
    .env("RESOURCE_LISTEN", "127.0.0.1:0")
    .env("RUST_LOG", e2e::service::DEFAULT_LOG_FILTER)
    // Neither a cargo build nor a binary of the target dir: both would
    // fail here.
    .env("CARGO", "/nonexistent/cargo")
    .env("E2E_BIN_DIR", empty.path())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    // The walk-through: from the first rule of `=` to the second.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let read = async {
        let mut text = String::new();
        let mut rules = 0;
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("=====") {
                rules += 1;
            }
            text.push_str(&line);
            text.push('\n');
            if rules == 2 {
                return Some(text);
            }
        }
        None
    };
    let walkthrough = match tokio::time::timeout(START, read).await {
        Ok(Some(text)) => text,
        outcome => {
            let _ = child.kill().await;
            panic!(
                "stack printed no walk-through ({outcome:?}); its log:\n{}",
                logs.await.unwrap()
            );
        }
    };
    assert!(
        walkthrough.contains("Portcullis is running (Ctrl-C stops both services)"),
        "{walkthrough}"
    );
    assert!(
        walkthrough.contains("Walk through the flow"),
        "{walkthrough}"
    );
    let issuer = field(&walkthrough, "authorization server");
    let api = field(&walkthrough, "resource API");
    let client_id = field(&walkthrough, "client_id");
    let client_secret = field(&walkthrough, "client_secret");
    let redirect_uri = field(&walkthrough, "redirect_uri");
    let email = field(&walkthrough, "email");
    let password = field(&walkthrough, "password");
    assert_eq!(redirect_uri, "http://127.0.0.1:8765/callback");
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    assert_ne!(issuer, "http://127.0.0.1:8080", "AUTH_LISTEN=:0 ignored");
    assert!(
        walkthrough.contains(&db.display().to_string()),
        "{walkthrough}"
    );
    let demo_json = dir.path().join("demo.json");
    assert!(demo_json.is_file(), "no {}", demo_json.display());

    // The printed demo client and user complete the flow, and the resource
    // API accepts the token.
    let pkce = Pkce::new();
    let mut authorize = Url::parse(&format!("{issuer}/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", "notes:read notes:write")
        .append_pair("state", "s1")
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");
    let back = Browser::new()
        .unwrap()
        .authorize_and_allow(&authorize, &email, &password)
        .await
        .unwrap();
    assert!(back.as_str().starts_with(&redirect_uri), "{back}");
    let code = query_param(&back, "code").unwrap();
    let http = reqwest::Client::new();
    let token = post_form(
        &http,
        &format!("{issuer}/token"),
        ClientAuth::Basic {
            id: &client_id,
            secret: &client_secret,
        },
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await
    .unwrap();
    assert!(token.status.is_success(), "{}", token.body);
    let access = token.require("access_token").unwrap();
    let me = http
        .get(format!("{api}/api/v2/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.unwrap();
    let demo: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&demo_json).unwrap()).unwrap();
    assert_eq!(me["sub"], demo["user_id"], "{me}");
    assert_eq!(me["client_id"], client_id.as_str(), "{me}");

    // SIGTERM: both services stop and `stack` exits 0.
    let pid = child.id().unwrap();
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stack did not stop within 30 s of SIGTERM")
        .unwrap();
    let logs = logs.await.unwrap();
    assert!(status.success(), "stack exited {status}; log:\n{logs}");
    assert!(logs.contains("stack: SIGTERM, stopping"), "{logs}");
    assert!(
        logs.contains(
            "auth-server stopped (exit status: 0), resource-api stopped (exit status: 0)"
        ),
        "{logs}"
    );
    // Each service ran as its own process and said where it listens.
    for service in ["[auth]", "[api]"] {
        assert!(
            logs.lines()
                .filter_map(|line| line.strip_prefix(service))
                .any(|line| e2e::service::parse_listening(line.trim_start()).is_some()),
            "no `{service} … listening on` line:\n{logs}"
        );
    }
    assert!(!logs.contains("cargo build"), "{logs}");
}
