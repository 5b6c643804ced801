//! Signing-key rotation without downtime, with the real binaries: `keys
//! rotate` publishes first and signs after the delay, a running resource API
//! follows without a restart, no request fails across the switch, `keys
//! retire` waits for the old key's tokens (or `--force`s), and instances on
//! one database sign with the same key.

use std::time::{Duration, Instant};

use e2e::binaries::{Binaries, BuildPolicy};
use e2e::oauth::{ClientAuth, decode_jwt};
use e2e::{ClientSpec, StackOptions};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

/// The rotation delay of this test: the JWKS is then served with
/// `max-age=30` (half the delay), the least a verifier honours.
const DELAY_SECS: u64 = 60;

async fn cc_token(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    secret: &str,
) -> (StatusCode, String) {
    let response = e2e::oauth::post_form(
        http,
        &format!("{base}/token"),
        ClientAuth::Basic { id, secret },
        &[
            ("grant_type", "client_credentials"),
            ("scope", "notes:read"),
        ],
    )
    .await
    .unwrap();
    let token = response
        .json
        .as_ref()
        .and_then(|j| j["access_token"].as_str())
        .unwrap_or_default()
        .to_owned();
    (response.status, token)
}

fn kid_of(token: &str) -> String {
    let (header, _) = decode_jwt(token).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn api_status(http: &reqwest::Client, api: &str, token: &str) -> StatusCode {
    http.get(format!("{api}/api/v2/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn jwks_kids(http: &reqwest::Client, base: &str) -> Vec<String> {
    let jwks: Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

both!(rotation_switches_keys_without_failing_a_request => rotation_switches_keys_without_failing_a_request_sqlite, rotation_switches_keys_without_failing_a_request_postgres);
async fn rotation_switches_keys_without_failing_a_request(backend: Backend) {
    let options =
        StackOptions::default().auth_env("KEY_ROTATION_DELAY_SECS", &DELAY_SECS.to_string());
    let stack = start(&backend, options).await;
    let client = stack
        .create_client(
            &ClientSpec::confidential("rotating app", REDIRECT).grant("client_credentials"),
        )
        .await
        .unwrap();
    let secret = client.secret.clone().unwrap();
    let http = stack.http.clone();
    let base = stack.auth.url.clone();
    let api = stack.resource_url().unwrap().to_owned();
    // A second instance on the same database and keys folder.
    let other = stack.start_another_auth(&[]).await.unwrap();

    let (status, old_token) = cc_token(&http, &base, &client.id, &secret).await;
    assert_eq!(status, StatusCode::OK);
    let old_kid = kid_of(&old_token);
    let (status, token) = cc_token(&http, &other.url, &client.id, &secret).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        kid_of(&token),
        old_kid,
        "both instances sign with the recorded key"
    );
    assert_eq!(api_status(&http, &api, &old_token).await, StatusCode::OK);

    let rotated = stack.cli(&["keys", "rotate"], None).await.unwrap();
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_eq!(rotated["state"], "published", "{rotated}");
    let activates_at = rotated["activates_at"].as_i64().unwrap();
    let listed = stack.cli(&["keys", "list"], None).await.unwrap();
    let state_of = |kid: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["state"].clone())
    };
    assert_eq!(state_of(&old_kid), Some(Value::from("active")), "{listed}");
    assert_eq!(
        state_of(&new_kid),
        Some(Value::from("published")),
        "{listed}"
    );

    // The signing key cannot be retired, force or not.
    let refused = stack
        .cli_output(&["keys", "retire", &old_kid, "--force"], None)
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("signs now"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Token + API calls across the switch, on both instances: none fails,
    // the new kid appears only after the delay, and the resource API (never
    // restarted) accepts it.
    let deadline = Instant::now() + Duration::from_secs(DELAY_SECS + 40);
    // When each instance first signed with the new key.
    let mut switched_at: [Option<Instant>; 2] = [None, None];
    let mut calls = 0;
    while switched_at
        .iter()
        .any(|at| at.is_none_or(|at| at.elapsed() < Duration::from_secs(3)))
    {
        assert!(
            Instant::now() < deadline,
            "no token carries {new_kid} after {DELAY_SECS} s + 40 s"
        );
        for (i, instance) in [&base, &other.url].into_iter().enumerate() {
            let (status, token) = cc_token(&http, instance, &client.id, &secret).await;
            assert_eq!(status, StatusCode::OK, "token request {calls} failed");
            let kid = kid_of(&token);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            if kid == new_kid {
                assert!(
                    now >= activates_at,
                    "signed with {new_kid} {} s early",
                    activates_at - now
                );
                switched_at[i].get_or_insert_with(Instant::now);
            } else {
                assert_eq!(kid, old_kid);
                assert!(
                    switched_at[i].is_none(),
                    "instance {i} went back to {old_kid}"
                );
            }
            assert_eq!(
                api_status(&http, &api, &token).await,
                StatusCode::OK,
                "API call {calls} with {kid}"
            );
            calls += 1;
        }
        assert_eq!(
            api_status(&http, &api, &old_token).await,
            StatusCode::OK,
            "old token"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // After the switch, both instances sign with the new key.
    for instance in [&base, &other.url] {
        let (_, token) = cc_token(&http, instance, &client.id, &secret).await;
        assert_eq!(kid_of(&token), new_kid);
    }
    let (_, new_token) = cc_token(&http, &base, &client.id, &secret).await;
    assert!(
        jwks_kids(&http, &base).await.contains(&old_kid),
        "old key still published"
    );

    // Retiring the old key is refused while its tokens may be valid...
    let early = stack
        .cli_output(&["keys", "retire", &old_kid], None)
        .await
        .unwrap();
    assert!(!early.status.success());
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert!(stderr.contains("--force"), "{stderr}");
    // ... and done with --force: out of the JWKS, and its tokens refused by
    // the running resource API once its JWKS refresh comes (max-age 30 s).
    let forced = stack
        .cli(&["keys", "retire", &old_kid, "--force"], None)
        .await
        .unwrap();
    assert_eq!(forced["state"], "retired", "{forced}");
    let deadline = Instant::now() + Duration::from_secs(10 + 30 + 20);
    loop {
        let old = api_status(&http, &api, &old_token).await;
        assert_eq!(api_status(&http, &api, &new_token).await, StatusCode::OK);
        if old == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(old, StatusCode::OK);
        assert!(
            Instant::now() < deadline,
            "the retired key's token still verifies"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!jwks_kids(&http, &base).await.contains(&old_kid));
}

/// Off loopback and without `--dev`, an empty keys folder is a start error:
/// instances would each make their own key.
#[tokio::test]
async fn auth_server_refuses_to_start_off_loopback_with_empty_keys_folder() {
    let bins = Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(&bins.auth_server)
            .arg("serve")
            .env(
                "DATABASE_URL",
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("db.sqlite").display()
                ),
            )
            .env("AUTH_KEYS_DIR", &keys)
            .env("AUTH_LISTEN", "0.0.0.0:0")
            .env("AUTH_ISSUER", "https://auth.example")
            .env("TRUST_PROXY_TLS", "true")
            .env_remove("KEY_ROTATION_DELAY_SECS")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("a refused start exits at once")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started: {stderr}");
    assert!(stderr.contains("no signing key"), "{stderr}");
    assert!(stderr.contains("keys generate"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    let pems = std::fs::read_dir(&keys)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pem"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(pems, 0, "a key was generated");
}
