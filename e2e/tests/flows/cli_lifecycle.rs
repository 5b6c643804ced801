//! The CLI after `create` (issue 9), against the built binary and a running
//! server on the same database: `users list|show|set-password|delete`,
//! `clients list|show|rotate-secret|delete`, `tokens revoke`; their JSON
//! shapes, their errors on unknown ids (a message, a non-zero exit, nothing
//! on stdout), and help text on every flag of every subcommand.

use std::collections::BTreeSet;

use e2e::oauth::ClientAuth;
use e2e::{ClientSpec, CreatedUser, StackOptions};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{
    self, Backend, REDIRECT, SCOPE, assert_oauth_error, assert_tokens, fixture, tokens,
};

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set(names: &[&'static str]) -> BTreeSet<&'static str> {
    names.iter().copied().collect()
}

const USER_KEYS: &[&str] = &[
    "id",
    "email",
    "name",
    "roles",
    "tier",
    "created_at",
    "updated_at",
    "disabled",
    "disabled_at",
];
const CLIENT_KEYS: &[&str] = &[
    "client_id",
    "name",
    "public",
    "redirect_uris",
    "grant_types",
    "scope",
    "tier",
    "refresh_grace_secs",
    "created_at",
    "previous_secret_expires_at",
];

/// Runs `auth-server ARGS` (no `--json` added) and asserts that it failed,
/// said `mentions` on stderr and printed nothing on stdout.
async fn assert_fails(stack: &e2e::Stack, args: &[&str], stdin: Option<&str>, mentions: &str) {
    let out = stack.cli_output(args, stdin).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    assert!(
        stderr.contains(mentions),
        "{args:?}: stderr does not mention {mentions:?}: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// client_credentials with `client_secret_basic`: the status.
async fn machine_token(stack: &e2e::Stack, id: &str, secret: &str) -> StatusCode {
    stack
        .token(
            ClientAuth::Basic { id, secret },
            &[
                ("grant_type", "client_credentials"),
                ("scope", "notes:read"),
            ],
        )
        .await
        .unwrap()
        .status
}

async fn client_lifecycle(backend: Backend) {
    let stack = support::start(&backend, StackOptions::default().without_resource_api()).await;
    let client = stack
        .create_client(&ClientSpec::confidential("Machine", REDIRECT).grant("client_credentials"))
        .await
        .unwrap();
    let first = client.secret.clone().unwrap();
    assert_eq!(
        machine_token(&stack, &client.id, &first).await,
        StatusCode::OK
    );

    // list and show: the documented keys, never a secret or a hash.
    let listed = stack.cli(&["clients", "list"], None).await.unwrap();
    let listed = listed.as_array().unwrap();
    let entry = listed
        .iter()
        .find(|c| c["client_id"] == client.id.as_str())
        .unwrap_or_else(|| panic!("{} not listed: {listed:?}", client.id));
    assert_eq!(keys(entry), set(CLIENT_KEYS));
    assert_eq!(entry["public"], false);
    assert_eq!(entry["previous_secret_expires_at"], Value::Null);
    let shown = stack
        .cli(&["clients", "show", &client.id], None)
        .await
        .unwrap();
    let mut expected = set(CLIENT_KEYS);
    expected.insert("active_refresh_tokens");
    assert_eq!(keys(&shown), expected);
    assert_eq!(
        shown["grant_types"],
        serde_json::json!(["client_credentials"])
    );

    // A rotation with a grace: both secrets work.
    let rotated = stack
        .cli(
            &["clients", "rotate-secret", &client.id, "--grace", "1h"],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        keys(&rotated),
        set(&[
            "client_id",
            "client_secret",
            "previous_secret_expires_at",
            "older_secret_dropped"
        ])
    );
    let second = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(rotated["older_secret_dropped"], false);
    assert!(
        rotated["previous_secret_expires_at"].is_string(),
        "{rotated}"
    );
    assert_eq!(
        machine_token(&stack, &client.id, &first).await,
        StatusCode::OK
    );
    assert_eq!(
        machine_token(&stack, &client.id, &second).await,
        StatusCode::OK
    );
    let shown = stack
        .cli(&["clients", "show", &client.id], None)
        .await
        .unwrap();
    assert_eq!(
        shown["previous_secret_expires_at"],
        rotated["previous_secret_expires_at"]
    );

    // The human form prints the new secret once, and says until when the
    // previous one works.
    let out = stack
        .cli_output(&["clients", "rotate-secret", &client.id], None)
        .await
        .unwrap();
    assert!(out.status.success());
    let human = String::from_utf8_lossy(&out.stdout);
    let third = human
        .lines()
        .find_map(|l| l.strip_prefix("client_secret (shown once): "))
        .unwrap_or_else(|| panic!("no secret in {human}"))
        .to_owned();
    assert!(human.contains("the previous secret works until"), "{human}");
    assert!(human.contains("the secret before the previous one no longer works"));
    // The first is dropped by the second rotation, although its hour is not over.
    assert_eq!(
        machine_token(&stack, &client.id, &first).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        machine_token(&stack, &client.id, &second).await,
        StatusCode::OK
    );
    assert_eq!(
        machine_token(&stack, &client.id, &third).await,
        StatusCode::OK
    );

    // --grace 0s: the current secret stops at once.
    let rotated = stack
        .cli(
            &["clients", "rotate-secret", &client.id, "--grace", "0s"],
            None,
        )
        .await
        .unwrap();
    let fourth = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(rotated["previous_secret_expires_at"], Value::Null);
    for old in [&second, &third] {
        assert_eq!(
            machine_token(&stack, &client.id, old).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        machine_token(&stack, &client.id, &fourth).await,
        StatusCode::OK
    );

    // No listing ever shows a secret or its hash.
    for args in [
        &["clients", "list"][..],
        &["--json", "clients", "list"],
        &["clients", "show", &client.id],
        &["--json", "clients", "show", &client.id],
    ] {
        let out = stack.cli_output(args, None).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        for secret in [&first, &second, &third, &fourth] {
            assert!(!stdout.contains(secret.as_str()), "{args:?}: {stdout}");
            let hash = shared::secret::hash(secret);
            assert!(!stdout.contains(&hash), "{args:?} shows a hash");
        }
    }

    // Refusals: bad grace, public client, unknown id.
    assert_fails(
        &stack,
        &["clients", "rotate-secret", &client.id, "--grace", "31d"],
        None,
        "at most 30d",
    )
    .await;
    assert_fails(
        &stack,
        &["clients", "rotate-secret", &client.id, "--grace", "soon"],
        None,
        "--grace",
    )
    .await;
    let public = stack
        .create_client(&ClientSpec::public("Native", REDIRECT))
        .await
        .unwrap();
    assert_fails(
        &stack,
        &["clients", "rotate-secret", &public.id],
        None,
        "is public",
    )
    .await;
    for command in ["show", "delete", "rotate-secret"] {
        assert_fails(
            &stack,
            &["--json", "clients", command, "c_nope"],
            None,
            "no client with id c_nope",
        )
        .await;
    }
    assert_fails(
        &stack,
        &["tokens", "revoke", "--client", "c_nope"],
        None,
        "no client with id c_nope",
    )
    .await;
    assert_fails(
        &stack,
        &["tokens", "revoke", "--client", "c_nope", "--user", "u"],
        None,
        "cannot be used with",
    )
    .await;
    assert_fails(&stack, &["tokens", "revoke"], None, "--user").await;

    // tokens revoke --client, then delete.
    let revoked = stack
        .cli(&["tokens", "revoke", "--client", &client.id], None)
        .await
        .unwrap();
    assert_eq!(
        keys(&revoked),
        set(&["client_id", "refresh_tokens_revoked", "codes_discarded"])
    );
    let deleted = stack
        .cli(&["clients", "delete", &client.id], None)
        .await
        .unwrap();
    assert_eq!(
        keys(&deleted),
        set(&[
            "client_id",
            "deleted",
            "refresh_tokens_revoked",
            "codes_discarded",
            "pending_authorizations_discarded"
        ])
    );
    assert_eq!(
        machine_token(&stack, &client.id, &fourth).await,
        StatusCode::UNAUTHORIZED
    );
    assert_fails(
        &stack,
        &["clients", "delete", &client.id],
        None,
        "no client with id",
    )
    .await;
    let audit = stack
        .cli(&["audit", "tail", "--kind", "client.secret_rotated"], None)
        .await
        .unwrap();
    assert_eq!(audit.as_array().unwrap().len(), 3, "{audit}");
    // --grace 1h, the default 24h, 0s (in one second: their order is not kept).
    let mut graces: Vec<i64> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"]["grace_secs"].as_i64().unwrap())
        .collect();
    graces.sort_unstable();
    assert_eq!(graces, [0, 3600, 86_400]);
    let audit = stack
        .cli(&["audit", "tail", "--kind", "client.deleted"], None)
        .await
        .unwrap();
    assert_eq!(audit[0]["client_id"], client.id.as_str());
}
both!(client_lifecycle => cli_client_lifecycle_sqlite, cli_client_lifecycle_postgres);

async fn user_lifecycle(backend: Backend) {
    let f = fixture(&backend).await;
    let stack = &f.stack;
    let user = &f.user;
    let issued = tokens(&f, SCOPE).await;

    let listed = stack.cli(&["users", "list"], None).await.unwrap();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == user.id.as_str())
        .unwrap_or_else(|| panic!("{} not listed: {listed}", user.id))
        .clone();
    assert_eq!(keys(&entry), set(USER_KEYS));
    assert_eq!(entry["email"], user.email.as_str());
    assert_eq!(entry["disabled"], false);
    // By id and by email, the same user, with their activity.
    let by_email = stack
        .cli(&["users", "show", &user.email.to_uppercase()], None)
        .await
        .unwrap();
    let by_id = stack.cli(&["users", "show", &user.id], None).await.unwrap();
    assert_eq!(by_email, by_id);
    let mut expected = set(USER_KEYS);
    expected.extend(["sessions", "active_refresh_tokens"]);
    assert_eq!(keys(&by_id), expected);
    assert_eq!(by_id["active_refresh_tokens"], 1);
    assert!(by_id["sessions"].as_u64().unwrap() >= 1, "{by_id}");
    assert!(!by_id.to_string().contains("argon2"), "no hash: {by_id}");

    // tokens revoke --user: the refresh token is dead.
    let revoked = stack
        .cli(&["tokens", "revoke", "--user", &user.id], None)
        .await
        .unwrap();
    assert_eq!(revoked["user_id"], user.id.as_str());
    assert_eq!(revoked["refresh_tokens_revoked"], 1);
    let refresh = issued.refresh.clone().unwrap();
    assert_oauth_error(
        &support::refresh(stack, f.client.basic(), &refresh).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );

    // set-password: the rule applies; a new password ends the refresh
    // tokens, and signing in takes the new one.
    let issued = tokens(&f, SCOPE).await;
    assert_fails(
        stack,
        &["users", "set-password", &user.id, "--password-stdin"],
        Some("short\n"),
        "password",
    )
    .await;
    assert_fails(
        stack,
        &["users", "set-password", &user.id],
        None,
        "--password-stdin",
    )
    .await;
    let new_password = "a fresh passphrase for alice 77";
    let changed = stack
        .cli(
            &["users", "set-password", &user.id, "--password-stdin"],
            Some(&format!("{new_password}\n")),
        )
        .await
        .unwrap();
    assert_eq!(
        keys(&changed),
        set(&[
            "user_id",
            "password_set",
            "sessions_ended",
            "refresh_tokens_revoked"
        ])
    );
    assert_eq!(changed["refresh_tokens_revoked"], 1);
    assert_oauth_error(
        &support::refresh(stack, f.client.basic(), issued.refresh.as_deref().unwrap()).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    let renamed = CreatedUser {
        password: new_password.to_owned(),
        ..user.clone()
    };
    let browser = e2e::Browser::new().unwrap();
    let grant = support::authorize(stack, &browser, &f.client.id, &renamed, SCOPE).await;
    assert_tokens(&support::exchange(stack, f.client.basic(), &grant).await);

    // disable and enable show in `users show`.
    let disabled = stack
        .cli(&["users", "disable", &user.id], None)
        .await
        .unwrap();
    assert_eq!(disabled["disabled"], true);
    let shown = stack.cli(&["users", "show", &user.id], None).await.unwrap();
    assert_eq!(shown["disabled"], true);
    assert!(shown["disabled_at"].is_string(), "{shown}");
    stack
        .cli(&["users", "enable", &user.id], None)
        .await
        .unwrap();
    let out = stack
        .cli_output(&["users", "show", &user.email], None)
        .await
        .unwrap();
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        human.contains(&user.id) && human.contains("disabled:   no"),
        "{human}"
    );
    // --limit, and a note on stderr when there are more.
    support::new_user(stack).await;
    let out = stack
        .cli_output(&["--json", "users", "list", "--limit", "1"], None)
        .await
        .unwrap();
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page.as_array().unwrap().len(), 1, "{page}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("showing the first 1 of 2 users"),
        "{stderr}"
    );
    // Disabling revoked the refresh token: one more for `delete` to revoke.
    let browser = e2e::Browser::new().unwrap();
    let grant = support::authorize(stack, &browser, &f.client.id, &renamed, SCOPE).await;
    let fresh = assert_tokens(&support::exchange(stack, f.client.basic(), &grant).await);

    // delete: gone, their refresh token with them; the audit stays.
    let deleted = stack
        .cli(&["users", "delete", &user.id], None)
        .await
        .unwrap();
    assert_eq!(
        keys(&deleted),
        set(&[
            "user_id",
            "deleted",
            "sessions_ended",
            "refresh_tokens_revoked",
            "codes_discarded",
            "reset_links_discarded"
        ])
    );
    assert_eq!(deleted["refresh_tokens_revoked"], 1);
    assert_oauth_error(
        &support::refresh(stack, f.client.basic(), fresh.refresh.as_deref().unwrap()).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    for args in [
        &["--json", "users", "show", user.id.as_str()][..],
        &["users", "delete", &user.id],
        &["users", "disable", &user.id],
        &["tokens", "revoke", "--user", &user.id],
    ] {
        assert_fails(stack, args, None, "no user with id").await;
    }
    assert_fails(
        stack,
        &["users", "set-password", &user.email, "--password-stdin"],
        Some(&format!("{new_password}\n")),
        "no user with email",
    )
    .await;
    let audit = stack
        .cli(&["audit", "tail", "--kind", "user.deleted"], None)
        .await
        .unwrap();
    assert_eq!(audit[0]["user_id"], user.id.as_str(), "{audit}");
    let audit = stack
        .cli(&["audit", "tail", "--kind", "password.set_by_admin"], None)
        .await
        .unwrap();
    assert_eq!(audit.as_array().unwrap().len(), 1, "{audit}");
    let remaining = stack.cli(&["users", "list"], None).await.unwrap();
    assert!(
        remaining
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["id"] != user.id.as_str()),
        "{remaining}"
    );
}
both!(user_lifecycle => cli_user_lifecycle_sqlite, cli_user_lifecycle_postgres);

/// The subcommands of `auth-server ARGS --help`, from its `Commands:` part.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The entries of the `Arguments:` and `Options:` parts of a help text that
/// have no description. clap indents an entry by 2 (or 6: a long flag
/// alone) and puts its help after two spaces, or on the next lines indented
/// further (when some help is long); `[default: …]` is not help.
fn undocumented(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut missing = Vec::new();
    let mut in_part = false;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("Arguments:") || line.starts_with("Options:") {
            in_part = true;
            continue;
        }
        if !line.is_empty() && !line.starts_with(' ') {
            in_part = false;
            continue;
        }
        if !in_part || line.trim().is_empty() || indent(line) > 6 {
            continue;
        }
        let entry = line.trim_start();
        let is_help = |text: &str| !text.is_empty() && !text.starts_with('[');
        let inline = entry
            .split_once("  ")
            .is_some_and(|(_, rest)| is_help(rest.trim()));
        let below = lines
            .get(i + 1)
            .is_some_and(|next| indent(next) > 6 && is_help(next.trim()));
        if !inline && !below {
            missing.push(entry.to_owned());
        }
    }
    missing
}

#[tokio::test]
async fn every_subcommand_documents_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let bins = e2e::binaries::Binaries::ensure_async(e2e::binaries::BuildPolicy::Always)
        .await
        .unwrap();
    let help = |path: Vec<String>| {
        let bin = bins.auth_server.clone();
        let dir = dir.path().to_owned();
        async move {
            let out = tokio::process::Command::new(bin)
                .args(&path)
                .arg("--help")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .current_dir(dir)
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "{path:?} --help failed");
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let mut queue = vec![Vec::<String>::new()];
    let mut seen = Vec::new();
    while let Some(path) = queue.pop() {
        let text = help(path.clone()).await;
        let missing = undocumented(&text);
        assert!(
            missing.is_empty(),
            "auth-server {} --help: no help text for {missing:?}:\n{text}",
            path.join(" ")
        );
        for sub in subcommands(&text) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
        seen.push(path.join(" "));
    }
    // The commands of issue 9 were all visited.
    for command in [
        "users list",
        "users show",
        "users delete",
        "users set-password",
        "users disable",
        "users enable",
        "clients list",
        "clients show",
        "clients delete",
        "clients rotate-secret",
        "tokens revoke",
        "api-keys create",
        "api-keys list",
        "api-keys revoke",
    ] {
        assert!(
            seen.iter().any(|s| s == command),
            "{command} not in {seen:?}"
        );
    }
    // The checker itself finds an undocumented flag.
    assert_eq!(
        undocumented("Options:\n      --bare <X>\n  -h, --help  Print help\n"),
        vec!["--bare <X>".to_owned()]
    );
}
