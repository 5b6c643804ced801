//! The `resource-api` binary: first log line, readiness, graceful shutdown, `migrate`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_resource-api");

fn command(dir: &std::path::Path) -> Command {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(
        keys.join("k.pem"),
        shared::test_util::shared_private_key_pem(),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/cli.db?mode=rwc", dir.display()),
        )
        .env("RESOURCE_LISTEN", "127.0.0.1:0")
        .env("AUTH_PUBLIC_KEYS", &keys)
        .env(
            "CORS_ALLOWED_ORIGINS",
            "https://a.example, https://b.example",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts `serve` with `args`; returns the child and the address from its
/// first log line, once `/readyz` answers 200.
async fn start(dir: &std::path::Path, args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = command(dir).arg("serve").args(args).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let address = first
        .split("listening on http://")
        .nth(1)
        .unwrap_or_else(|| panic!("first line is not the address: {first}"))
        .trim()
        .to_owned();
    assert!(address.starts_with("127.0.0.1:"), "{first}");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let client = reqwest::Client::new();
    let url = format!("http://{address}/readyz");
    for _ in 0..100 {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return (child, address);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never answered 200");
}

#[tokio::test]
async fn serve_logs_bound_address_first_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, address) = start(dir.path(), &[]).await;

    // CORS_ALLOWED_ORIGINS from the environment, comma separated.
    let response = reqwest::Client::new()
        .get(format!("http://{address}/healthz"))
        .header("origin", "https://b.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://b.example"
    );

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn migrate_creates_tables_for_serve_no_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path()).arg("migrate").output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("cli.db").exists());

    let (_child, address) = start(dir.path(), &["--no-migrate"]).await;
    let signer = shared::test_util::signer(shared::test_util::shared_private_key_pem());
    let claims = shared::test_util::claims(
        "http://127.0.0.1:8080",
        "portcullis-api",
        "alice",
        "notes:read",
    );
    let response = reqwest::Client::new()
        .get(format!("http://{address}/api/v2/notes"))
        .bearer_auth(signer.sign(&claims).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn serve_fails_on_unknown_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "no_such_setting = 1\n").unwrap();
    let output = command(dir.path())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
}
