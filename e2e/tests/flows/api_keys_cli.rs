//! API keys end to end (issue 10), with the real binaries on one database:
//! `auth-server api-keys create|list|revoke` and the resource API taking
//! `X-API-Key`; keys never on stdout twice, never in a log line.

use e2e::{ClientSpec, StackOptions};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{self, Backend, REDIRECT};

async fn me(stack: &e2e::Stack, key: &str) -> reqwest::Response {
    stack
        .http
        .get(format!("{}/api/v2/me", stack.resource_url().unwrap()))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

async fn assert_fails(stack: &e2e::Stack, args: &[&str], mentions: &str) {
    let out = stack.cli_output(args, None).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    assert!(stderr.contains(mentions), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
}

async fn api_keys_lifecycle(backend: Backend) {
    let stack = support::start(&backend, StackOptions::default()).await;
    let client = stack
        .create_client(
            &ClientSpec::confidential("Service", REDIRECT)
                .grant("client_credentials")
                .scope("notes:read"),
        )
        .await
        .unwrap();

    // Two keys, the second expiring: both shown once, both working.
    let first = stack
        .cli(&["api-keys", "create", "--client", &client.id], None)
        .await
        .unwrap();
    let second = stack
        .cli(
            &[
                "api-keys",
                "create",
                "--client",
                &client.id,
                "--expires-in",
                "30",
            ],
            None,
        )
        .await
        .unwrap();
    let first_key = first["key"].as_str().unwrap().to_owned();
    let second_key = second["key"].as_str().unwrap().to_owned();
    assert!(first_key.starts_with("sk_live_"), "{first}");
    assert!(second["expires_at"].is_string(), "{second}");
    for key in [&first_key, &second_key] {
        let response = me(&stack, key).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["client_id"], client.id.as_str());
        assert_eq!(body["scope"], "notes:read");
    }

    // list: both, active, never a key.
    let listed = stack
        .cli(&["api-keys", "list", "--client", &client.id], None)
        .await
        .unwrap();
    let text = listed.to_string();
    assert!(!text.contains(&first_key) && !text.contains(&second_key));
    assert!(!text.contains("hash"), "{text}");
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|k| k["active"] == true));
    assert!(
        listed.iter().any(|k| k["last_used_at"].is_string()),
        "{listed:?}"
    );

    // revoke the first: refused at once; the second keeps working.
    let first_id = first["id"].as_str().unwrap();
    let revoked = stack
        .cli(&["api-keys", "revoke", first_id], None)
        .await
        .unwrap();
    assert_eq!(revoked["active"], false);
    let refused = me(&stack, &first_key).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers().get("www-authenticate").unwrap(), "ApiKey");
    assert_eq!(me(&stack, &second_key).await.status(), StatusCode::OK);

    // Unknown ids: a message, a non-zero exit, nothing on stdout.
    assert_fails(
        &stack,
        &["api-keys", "revoke", "0123456789abcdef"],
        "no API key",
    )
    .await;
    assert_fails(
        &stack,
        &["api-keys", "create", "--client", "c_nope"],
        "no client",
    )
    .await;
    assert_fails(
        &stack,
        &["api-keys", "list", "--client", "c_nope"],
        "no client",
    )
    .await;
    assert_fails(
        &stack,
        &[
            "api-keys",
            "create",
            "--client",
            &client.id,
            "--expires-in",
            "0",
        ],
        "expires-in",
    )
    .await;

    // A test client's keys are sk_test_.
    let test_client = stack
        .cli(
            &[
                "clients",
                "create",
                "--name",
                "Test service",
                "--grant",
                "client_credentials",
                "--scope",
                "notes:read",
                "--test",
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(test_client["test"], true);
    let test_key = stack
        .cli(
            &[
                "api-keys",
                "create",
                "--client",
                test_client["client_id"].as_str().unwrap(),
            ],
            None,
        )
        .await
        .unwrap();
    let test_key = test_key["key"].as_str().unwrap().to_owned();
    assert!(test_key.starts_with("sk_test_"), "{test_key}");
    assert_eq!(me(&stack, &test_key).await.status(), StatusCode::OK);

    // Audited: creation, revocation, use; a key never reaches a log line.
    for kind in ["api_key.created", "api_key.revoked", "api_key.used"] {
        let events = stack
            .cli(&["audit", "tail", "--kind", kind], None)
            .await
            .unwrap();
        assert!(
            !events.as_array().unwrap().is_empty(),
            "no {kind} event: {events}"
        );
    }
    let logs = stack.logs();
    for key in [&first_key, &second_key, &test_key] {
        // The secret is the last 43 characters: base64url, so it may hold
        // `_` itself (splitting at the last `_` could leave a few letters
        // that any log happens to contain).
        let secret = &key[key.len() - 43..];
        assert!(!logs.contains(secret), "a key in the logs");
    }
}
both!(api_keys_lifecycle => cli_api_keys_lifecycle_sqlite, cli_api_keys_lifecycle_postgres);
