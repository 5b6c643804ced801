//! The `auth-server` command line: bad arguments fail clearly and write
//! nothing; keys are generated as DESIGN.md says.

use std::path::Path;
use std::process::{Output, Stdio};

use e2e::binaries::{Binaries, BuildPolicy};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

async fn run(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let bins = Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
    let mut cmd = Command::new(&bins.auth_server);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display()),
        )
        .env("AUTH_KEYS_DIR", dir.join("keys"))
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await.unwrap();
        pipe.shutdown().await.unwrap();
    }
    child.wait_with_output().await.unwrap()
}

#[tokio::test]
async fn cli_rejects_bad_arguments_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (
            &[
                "users",
                "create",
                "--email",
                "not-an-email",
                "--name",
                "Ann",
                "--password-stdin",
            ],
            Some("long enough password\n"),
            "email",
        ),
        (
            &[
                "users",
                "create",
                "--email",
                "ann@example.com",
                "--name",
                "Ann",
                "--password-stdin",
            ],
            Some("short\n"),
            "password",
        ),
        (
            &[
                "clients",
                "create",
                "--name",
                "App",
                "--redirect-uri",
                "https://app.example/cb#frag",
            ],
            None,
            "fragment",
        ),
        (
            &[
                "clients",
                "create",
                "--name",
                "App",
                "--redirect-uri",
                "http://app.example/cb",
            ],
            None,
            "loopback",
        ),
        (
            &[
                "clients",
                "create",
                "--name",
                "App",
                "--redirect-uri",
                "https://app.example/cb",
                "--scope",
                "notes\"read",
            ],
            None,
            "scope",
        ),
        (
            &[
                "clients",
                "create",
                "--name",
                "App",
                "--redirect-uri",
                "https://app.example/cb",
                "--grant",
                "password",
            ],
            None,
            "grant",
        ),
        (
            &[
                "clients",
                "create",
                "--name",
                "App",
                "--public",
                "--redirect-uri",
                "https://app.example/cb",
                "--grant",
                "client_credentials",
            ],
            None,
            "public",
        ),
        (&["keys", "generate", "--bits", "1024"], None, "2048"),
    ];
    for (args, stdin, mentions) in cases {
        let out = run(dir.path(), args, *stdin).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
        assert!(
            stderr.contains(mentions),
            "{args:?}: message does not mention {mentions:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
        assert!(
            !dir.path().join("db.sqlite").exists(),
            "{args:?} created the database"
        );
        let keys = dir.path().join("keys");
        assert!(
            !keys.exists() || std::fs::read_dir(&keys).unwrap().next().is_none(),
            "{args:?} wrote a key"
        );
    }
    // The same arguments, corrected, do write.
    let out = run(
        dir.path(),
        &[
            "--json",
            "users",
            "create",
            "--email",
            "ann@example.com",
            "--name",
            "Ann",
            "--password-stdin",
        ],
        Some("long enough password\n"),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["email"], "ann@example.com");
    assert!(
        user.get("password").is_none(),
        "a password read from stdin is not echoed"
    );
    // A second user with the same email is refused.
    let again = run(
        dir.path(),
        &[
            "users",
            "create",
            "--email",
            "ANN@example.com",
            "--name",
            "Ann",
            "--password-stdin",
        ],
        Some("long enough password\n"),
    )
    .await;
    assert!(!again.status.success());
}

#[tokio::test]
async fn keys_generate_writes_0600_pem_named_by_thumbprint() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--json", "keys", "generate"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kid = key["kid"].as_str().unwrap();
    assert_eq!(key["bits"], 2048);
    let path = dir.path().join("keys").join(format!("{kid}.pem"));
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let list = run(dir.path(), &["--json", "keys", "list"], None).await;
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed[0]["kid"], kid);
}

/// Asserts that `clients create` failed, said `mentions` on stderr, printed
/// nothing on stdout and created no database.
fn assert_refused_without_writing(dir: &Path, args: &[&str], out: &Output, mentions: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    assert!(
        stderr.contains(mentions),
        "{args:?}: message does not mention {mentions:?}: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
    assert!(
        !dir.join("db.sqlite").exists(),
        "{args:?} created the database"
    );
}

#[tokio::test]
async fn clients_create_accepts_private_use_redirect_uri_for_public_client() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "--json",
            "clients",
            "create",
            "--name",
            "Mobile",
            "--public",
            "--redirect-uri",
            "com.example.app:/oauth2redirect",
            "--redirect-uri",
            "http://127.0.0.1:7777/cb",
        ],
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        client["redirect_uris"],
        serde_json::json!([
            "com.example.app:/oauth2redirect",
            "http://127.0.0.1:7777/cb"
        ])
    );
    assert_eq!(client["public"], true);
    assert!(client.get("client_secret").is_none());
}

#[tokio::test]
async fn clients_create_refuses_private_use_redirect_uri_without_public() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "clients",
        "create",
        "--name",
        "Web",
        "--redirect-uri",
        "com.example.app:/oauth2redirect",
    ];
    let out = run(dir.path(), &args, None).await;
    assert_refused_without_writing(
        dir.path(),
        &args,
        &out,
        "a private-use URI scheme is allowed only for public (native) clients",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("with --public"));
}

#[tokio::test]
async fn clients_create_refuses_script_and_data_redirect_uris_for_every_client() {
    let dir = tempfile::tempdir().unwrap();
    for (uri, mentions) in [
        ("javascript:alert(1)", "never allowed"),
        ("data:text/html,x", "never allowed"),
        ("file:///etc/passwd", "never allowed"),
        ("myapp:/cb", "reverse-DNS form"),
        ("com.example.app:/cb#frag", "fragment"),
    ] {
        for public in [true, false] {
            let mut args = vec!["clients", "create", "--name", "App"];
            if public {
                args.push("--public");
            }
            args.extend(["--redirect-uri", uri]);
            let out = run(dir.path(), &args, None).await;
            assert_refused_without_writing(dir.path(), &args, &out, mentions);
            assert!(
                !String::from_utf8_lossy(&out.stderr).contains("with --public"),
                "{args:?}: hints at --public for a URI no client may register"
            );
        }
    }
}

#[tokio::test]
async fn janitor_run_once_prints_the_report_as_json() {
    use migrations::sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().unwrap();
    // Only --once is supported.
    let without_once = run(dir.path(), &["janitor", "run"], None).await;
    assert!(!without_once.status.success());
    assert!(String::from_utf8_lossy(&without_once.stderr).contains("--once"));
    let migrated = run(dir.path(), &["migrate"], None).await;
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite").display()
    );
    let db = migrations::db::connect(&url, None).await.unwrap();
    // Expired long ago, and live until the year 3000.
    db.execute_unprepared(
        "INSERT INTO login_sessions (id, session_hash, user_id, csrf_token, created_at, expires_at) \
         VALUES ('old', 'h-old', NULL, 'c', 0, 1), ('live', 'h-live', NULL, 'c', 0, 32503680000); \
         INSERT INTO mail_outbox (id, recipient, subject, body, created_at) \
         VALUES ('m-old', 'a@example.com', 's', 'b', 1), ('m-new', 'a@example.com', 's', 'b', 32503680000)",
    )
    .await
    .unwrap();
    db.close().await.unwrap();
    let out = run(dir.path(), &["--json", "janitor", "run", "--once"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({
            "authorization_codes": 0, "refresh_tokens": 0, "login_sessions": 1,
            "pending_authorizations": 0, "password_reset_tokens": 0, "lockouts": 0,
            "audit_events": 0, "mail_outbox": 1, "total": 2
        })
    );
    let again = run(dir.path(), &["janitor", "run", "--once"], None).await;
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).starts_with("removed 0 rows"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

#[tokio::test]
async fn audit_tail_prints_recent_events_of_a_kind_oldest_first() {
    use migrations::sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().unwrap();
    let migrated = run(dir.path(), &["migrate"], None).await;
    assert!(migrated.status.success());
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite").display()
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let db = migrations::db::connect(&url, None).await.unwrap();
    db.execute_unprepared(&format!(
        "INSERT INTO audit_events (id, at, kind, user_id, client_id, detail) VALUES \
         ('old', 1, 'login.failed', NULL, NULL, '{{}}'), \
         ('a', {a}, 'login.failed', 'u1', NULL, '{{\"client_ip\":\"198.51.100.1\"}}'), \
         ('b', {b}, 'login.succeeded', 'u1', NULL, '{{}}'), \
         ('c', {c}, 'login.failed', NULL, NULL, '{{\"email\":\"x@example.com\"}}')",
        a = now - 120,
        b = now - 60,
        c = now - 30
    ))
    .await
    .unwrap();
    db.close().await.unwrap();
    let out = run(
        dir.path(),
        &[
            "--json",
            "audit",
            "tail",
            "--since",
            "1h",
            "--kind",
            "login.failed",
        ],
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["user_id"], "u1", "oldest first");
    assert_eq!(events[0]["detail"]["client_ip"], "198.51.100.1");
    assert_eq!(events[1]["detail"]["email"], "x@example.com");
    let bad = run(dir.path(), &["audit", "tail", "--since", "soon"], None).await;
    assert!(!bad.status.success());
}
