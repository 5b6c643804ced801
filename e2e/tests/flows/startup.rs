//! Start-up that fails early and clearly, on the real binaries: every check
//! runs before anything is bound or migrated, and a failure is one line on
//! stderr, `error: <what failed>: <cause>. <what to do>`, in the same words
//! from `auth-server` and `resource-api`.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use e2e::ClientSpec;
use e2e::binaries::{Binaries, BuildPolicy};
use e2e::oauth::decode_jwt;
use e2e::service::{Service, ServiceSpec};
use e2e::stack::write_private;
use e2e::{Stack, StackOptions};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::process::Command;

use crate::support::REDIRECT;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bin {
    Auth,
    Api,
}

const BOTH: [Bin; 2] = [Bin::Auth, Bin::Api];

/// A folder with a signing key in `keys/` and room for `db.sqlite`.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    write_private(
        &dir.path().join("keys").join("k.pem"),
        shared::test_util::shared_private_key_pem().as_bytes(),
    )
    .unwrap();
    dir
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display())
}

/// The service's own configuration for `dir` (port 0, the SQLite file and
/// keys of `dir`), then `env` on top.
fn spec(bins: &Binaries, bin: Bin, dir: &Path, env: &[(&str, &str)]) -> ServiceSpec {
    let keys = dir.join("keys").display().to_string();
    let mut spec = match bin {
        Bin::Auth => ServiceSpec::new("auth", &bins.auth_server)
            .env("AUTH_LISTEN", "127.0.0.1:0")
            .env("AUTH_KEYS_DIR", keys),
        Bin::Api => ServiceSpec::new("api", &bins.resource_api)
            .env("RESOURCE_LISTEN", "127.0.0.1:0")
            .env("AUTH_PUBLIC_KEYS", keys),
    }
    .env("DATABASE_URL", sqlite_url(dir))
    .env("LOG_FORMAT", "json")
    .env("RUST_LOG", "info");
    for (key, value) in env {
        spec = spec.env(*key, *value);
    }
    spec.current_dir = Some(dir.to_path_buf());
    spec
}

/// Runs `bin ARGS` to its end (at most 60 s) with the environment of
/// [`spec`]; returns its output and how long it took.
async fn run(bin: Bin, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let bins = Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
    let mut cmd: Command = spec(&bins, bin, dir, env).command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd.spawn().unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{bin:?} {args:?} still running after 60 s"))
        .unwrap();
    (output, started.elapsed())
}

/// The one error line of a failed start, checked: exit code non-zero, one
/// line starting `error: `, the last on stderr, nothing bound.
fn error_line(bin: Bin, output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{bin:?} succeeded: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: ") || l.contains("\"level\":\"ERROR\""))
        .collect();
    assert_eq!(errors.len(), 1, "{bin:?}: not one error line:\n{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some(errors[0]),
        "{bin:?}: the error is not the last line:\n{stderr}"
    );
    assert!(
        !stderr.contains("listening on"),
        "{bin:?} bound before failing:\n{stderr}"
    );
    errors[0].to_owned()
}

/// `error_line` of `bin serve` in `dir` with `env`.
async fn serve_error(bin: Bin, dir: &Path, env: &[(&str, &str)]) -> String {
    let (output, _) = run(bin, dir, &["serve"], env).await;
    error_line(bin, &output)
}

#[tokio::test]
async fn unreachable_postgres_says_connection_refused_at_once_and_once() {
    let dir = workdir();
    // Port 1 (tcpmux): nothing listens there, and nothing may bind it
    // unprivileged meanwhile.
    let url = "postgres://portcullis:s3cret@127.0.0.1:1/portcullis";
    for bin in BOTH {
        let (output, took) = run(bin, dir.path(), &["serve"], &[("DATABASE_URL", url)]).await;
        let line = error_line(bin, &output);
        assert_eq!(
            line,
            "error: cannot connect to PostgreSQL at 127.0.0.1:1/portcullis: connection refused. \
             Start PostgreSQL, or fix the host and port in DATABASE_URL",
            "{bin:?}"
        );
        assert!(!line.contains("s3cret"), "{bin:?} printed the password");
        assert!(
            took < Duration::from_secs(4),
            "{bin:?} took {took:?} to say so"
        );
    }
    // With an empty keys folder: the check fails before a development key
    // (slow, and a file to clean up) is generated.
    let empty = workdir();
    let keys = empty.path().join("keys");
    std::fs::remove_file(keys.join("k.pem")).unwrap();
    let line = serve_error(Bin::Auth, empty.path(), &[("DATABASE_URL", url)]).await;
    assert!(line.contains(": connection refused. "), "{line}");
    assert_eq!(
        std::fs::read_dir(&keys).unwrap().count(),
        0,
        "a key was generated before the failure"
    );
}

#[tokio::test]
async fn sqlite_without_mode_rwc_says_no_such_file_and_creates_nothing() {
    let dir = workdir();
    let in_missing_dir = dir.path().join("missing").join("db.sqlite");
    let missing_file = dir.path().join("db.sqlite");
    for bin in BOTH {
        let url = format!("sqlite://{}", in_missing_dir.display());
        let line = serve_error(bin, dir.path(), &[("DATABASE_URL", &url)]).await;
        assert_eq!(
            line,
            format!(
                "error: the SQLite file {shown} does not exist: no such directory {parent}. \
                 Add ?mode=rwc to DATABASE_URL to create the file and its folder \
                 (sqlite://{shown}?mode=rwc), or fix the path",
                shown = in_missing_dir.display(),
                parent = dir.path().join("missing").display()
            ),
            "{bin:?}"
        );
        assert!(
            !dir.path().join("missing").exists(),
            "{bin:?} made the folder"
        );

        let url = format!("sqlite://{}", missing_file.display());
        let line = serve_error(bin, dir.path(), &[("DATABASE_URL", &url)]).await;
        assert_eq!(
            line,
            format!(
                "error: the SQLite file {shown} does not exist: no such file. \
                 Add ?mode=rwc to DATABASE_URL to create it (sqlite://{shown}?mode=rwc), \
                 or fix the path",
                shown = missing_file.display()
            ),
            "{bin:?}"
        );
        assert!(!missing_file.exists(), "{bin:?} created the file");
    }
}

#[tokio::test]
async fn read_only_sqlite_database_is_named_as_read_only() {
    let dir = workdir();
    let (output, _) = run(Bin::Auth, dir.path(), &["migrate"], &[]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.path().join("db.sqlite");
    let url = format!("sqlite://{}?mode=ro", path.display());
    for bin in BOTH {
        let line = serve_error(bin, dir.path(), &[("DATABASE_URL", &url)]).await;
        assert_eq!(
            line,
            format!(
                "error: the SQLite file {} is read-only. Make the file and its folder writable \
                 by this user, and do not use mode=ro in DATABASE_URL",
                path.display()
            ),
            "{bin:?}"
        );
    }
}

#[tokio::test]
async fn garbage_pem_is_named_with_what_it_holds_before_anything_is_bound_or_migrated() {
    let public_pem = {
        use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
        rsa::RsaPrivateKey::from_pkcs8_pem(shared::test_util::shared_private_key_pem())
            .unwrap()
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    };
    for (contents, found) in [
        (
            "garbage\n".to_owned(),
            "text without a -----BEGIN …----- PEM block",
        ),
        (
            public_pem,
            "a public key); the signing keys folder holds private keys only",
        ),
    ] {
        let dir = workdir();
        let pem = dir.path().join("keys").join("abc.pem");
        std::fs::write(&pem, &contents).unwrap();
        let line = serve_error(Bin::Auth, dir.path(), &[]).await;
        assert!(
            line.starts_with(&format!(
                "error: {}: not a PKCS#8 RSA private key (found {found}",
                pem.display()
            )),
            "{line}"
        );
        assert!(
            line.ends_with(
                ". Replace or remove the file (`auth-server keys generate` writes a new key)"
            ),
            "{line}"
        );
        // Keys come before the database: nothing was created or migrated.
        assert!(!dir.path().join("db.sqlite").exists(), "database created");
    }
    // The resource API's offline keys folder (`AUTH_PUBLIC_KEYS`) likewise.
    let dir = workdir();
    let pem = dir.path().join("keys").join("abc.pem");
    std::fs::write(&pem, "garbage\n").unwrap();
    let line = serve_error(Bin::Api, dir.path(), &[]).await;
    assert_eq!(
        line,
        format!(
            "error: {}: not an RSA public key (found text without a -----BEGIN …----- PEM block). \
             Point AUTH_PUBLIC_KEYS at a folder of the auth server's PEM public keys, or unset \
             it to use the JWKS",
            pem.display()
        )
    );
    assert!(!dir.path().join("db.sqlite").exists(), "database created");
}

#[tokio::test]
async fn listen_address_host_names_are_resolved_or_explained() {
    let bins = Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
    for (bin, variable) in [(Bin::Auth, "AUTH_LISTEN"), (Bin::Api, "RESOURCE_LISTEN")] {
        let dir = workdir();
        if bin == Bin::Auth {
            // An empty keys folder: the dev key is announced before it is made.
            std::fs::remove_file(dir.path().join("keys").join("k.pem")).unwrap();
        }
        let service =
            Service::start(spec(&bins, bin, dir.path(), &[(variable, "localhost:0")]).arg("serve"))
                .await
                .unwrap();
        assert!(service.addr.ip().is_loopback(), "{bin:?}: {}", service.addr);
        let health = reqwest::get(format!("{}/healthz", service.url))
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK, "{bin:?}");
        if bin == Bin::Auth {
            let logs = service.logs.text();
            let announced = logs.find("generating a 2048-bit RSA signing key");
            let generated = logs.find("generated the development key");
            assert!(
                announced.is_some() && announced < generated,
                "the dev key is not announced before it is made:\n{logs}"
            );
        }
        drop(service);

        let dir = workdir();
        let line = serve_error(bin, dir.path(), &[(variable, "no-such-host.invalid:0")]).await;
        assert!(
            line.starts_with(&format!(
                "error: {variable} \"no-such-host.invalid:0\": cannot resolve the host name \"no-such-host.invalid\""
            )),
            "{line}"
        );
        assert!(
            line.ends_with(". Use an IP address (127.0.0.1 for this machine only, 0.0.0.0 for every interface) or a name this machine resolves"),
            "{line}"
        );
        let line = serve_error(bin, dir.path(), &[(variable, "localhost")]).await;
        assert_eq!(
            line,
            format!(
                "error: {variable} \"localhost\" has no port. Use HOST:PORT, e.g. 127.0.0.1:8080, \
                 [::1]:8080, 0.0.0.0:8080 or localhost:0"
            )
        );
    }
}

/// `API_V1_*` were refused as variables of an unbuilt feature; the resource
/// API reads them now (and every variable of the contract is built).
#[tokio::test]
async fn api_v1_variables_are_read_by_the_resource_api() {
    let bins = Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
    let dir = workdir();
    let guide = "https://docs.example/api/v1-to-v2";
    let env = [
        ("API_V1_DEPRECATION", "2026-01-01T00:00:00Z"),
        ("API_V1_SUNSET", "2099-01-01T00:00:00Z"),
        ("API_V1_MIGRATION_GUIDE", guide),
    ];
    let api = Service::start(spec(&bins, Bin::Api, dir.path(), &env).arg("serve"))
        .await
        .unwrap();
    let answer = reqwest::get(format!("{}/api/v1/me", api.url))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(answer.headers()["deprecation"], "@1767225600");
    assert_eq!(answer.headers()["sunset"], "Thu, 01 Jan 2099 00:00:00 GMT");
    assert_eq!(
        answer.headers()["link"],
        format!("<{guide}>; rel=\"deprecation\"; type=\"text/html\"").as_str()
    );
    drop(api);

    // Past the sunset: 410 with the guide; v2 as ever.
    let env = [
        ("API_V1_DEPRECATION", "2020-01-01T00:00:00Z"),
        ("API_V1_SUNSET", "2021-01-01T00:00:00Z"),
        ("API_V1_MIGRATION_GUIDE", guide),
    ];
    let api = Service::start(spec(&bins, Bin::Api, dir.path(), &env).arg("serve"))
        .await
        .unwrap();
    let answer = reqwest::get(format!("{}/api/v1/notes", api.url))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::GONE);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["migration_guide"], guide);
    let v2 = reqwest::get(format!("{}/api/v2/notes", api.url))
        .await
        .unwrap();
    assert_eq!(v2.status(), StatusCode::UNAUTHORIZED);
    drop(api);

    // A bad value stops the start, in one line naming the variable.
    let dir = workdir();
    let line = serve_error(Bin::Api, dir.path(), &[("API_V1_SUNSET", "tomorrow")]).await;
    assert_eq!(
        line,
        "error: API_V1_SUNSET \"tomorrow\" is not an RFC 3339 time. \
         Set API_V1_SUNSET like 2027-07-01T00:00:00Z"
    );
    let line = serve_error(
        Bin::Api,
        dir.path(),
        &[("API_V1_MIGRATION_GUIDE", "http://docs.example/guide")],
    )
    .await;
    assert!(
        line.starts_with(
            "error: API_V1_MIGRATION_GUIDE \"http://docs.example/guide\" is not https"
        ),
        "{line}"
    );
    assert!(!dir.path().join("db.sqlite").exists(), "database created");
}

#[tokio::test]
async fn keys_list_on_a_missing_folder_fails_and_generate_says_what_it_does() {
    let dir = workdir();
    let missing = dir.path().join("nowhere");
    let missing_env = missing.display().to_string();
    let env = [("AUTH_KEYS_DIR", missing_env.as_str())];
    let (output, _) = run(Bin::Auth, dir.path(), &["keys", "list"], &env).await;
    assert_eq!(
        error_line(Bin::Auth, &output),
        format!(
            "error: the keys folder {} does not exist. Point AUTH_KEYS_DIR (or --config) at the \
             signing keys folder, or create a key with `auth-server keys generate`",
            missing.display()
        )
    );
    assert!(output.stdout.is_empty());
    assert!(!missing.exists());

    let (output, _) = run(Bin::Auth, dir.path(), &["keys", "generate"], &env).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        stderr.lines().next(),
        Some("generating a 2048-bit RSA signing key (takes a few seconds)…"),
        "{stderr}"
    );
    let (output, _) = run(Bin::Auth, dir.path(), &["--json", "keys", "list"], &env).await;
    assert!(output.status.success());
    let keys: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(keys.as_array().map(Vec::len), Some(1), "{keys}");
}

/// `AUTH_ISSUER` with a trailing slash and upper-case scheme is one issuer
/// for both services: the auth server signs the normal form, and the
/// resource API, given the same spelling, accepts it (and finds the JWKS).
#[tokio::test]
async fn issuer_with_trailing_slash_means_the_same_to_both_services() {
    let stack = Stack::start(StackOptions::default().without_resource_api())
        .await
        .unwrap();
    let client = stack
        .create_client(&ClientSpec::confidential("svc", REDIRECT).grant("client_credentials"))
        .await
        .unwrap();
    let issuer = stack.auth.url.clone();
    let spelled = format!("HTTP://{}/", stack.auth.addr);
    // A second auth server on the same keys and database, told the issuer
    // with a slash.
    let auth = stack
        .start_another_auth(&[("AUTH_ISSUER", &spelled)])
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let metadata: Value = http
        .get(format!("{}{}", auth.url, shared::paths::METADATA_PATH))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], issuer.as_str(), "{metadata}");
    let token: Value = http
        .post(format!("{}/token", auth.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = token["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{token}"));
    let (_, claims) = decode_jwt(access).unwrap();
    assert_eq!(claims["iss"], issuer.as_str(), "{claims}");

    // The resource API told the same spelling (its JWKS URL derived from it).
    let bins = Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
    let db: PathBuf = stack.dir().join("portcullis.db");
    let mut api = ServiceSpec::new("api", &bins.resource_api)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        )
        .env("RESOURCE_LISTEN", "127.0.0.1:0")
        .env("AUTH_ISSUER", &spelled);
    api.current_dir = Some(stack.dir().to_path_buf());
    let api = Service::start(api.arg("serve")).await.unwrap();
    let me = http
        .get(format!("{}/api/v2/me", api.url))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    let status = me.status();
    let body = me.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}\n{}", api.logs.text());
    let me: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(me["client_id"], client.id.as_str(), "{me}");
}

test_gates::needs! { [postgres]
    /// The PostgreSQL causes an operator meets, each in its one line: an
    /// unknown role (the local server trusts every user, so a role that does
    /// not exist is how an authentication failure shows here), an unknown
    /// database, and a role whose transactions are read-only (as on a
    /// standby). Never the URL's password.
    #[tokio::test]
    async fn postgres_causes_are_named_auth_unknown_database_and_read_only() {
        use migrations::sea_orm::{ConnectionTrait, Database};

        let base = migrations::test_support::require_postgres_url(
            "postgres_causes_are_named_auth_unknown_database_and_read_only",
        );
        let base = url::Url::parse(&base).unwrap();
        let place = format!(
            "{}:{}",
            base.host_str().unwrap(),
            base.port().unwrap_or(5432)
        );
        let with = |user: &str, password: Option<&str>, database: &str| {
            let mut url = base.clone();
            url.set_username(user).unwrap();
            url.set_password(password).unwrap();
            url.set_path(&format!("/{database}"));
            url.to_string()
        };
        let database = base.path().trim_start_matches('/').to_owned();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let dir = workdir();

        let nobody = format!("pc_nobody_{suffix}");
        let url = with(&nobody, Some("s3cret"), &database);
        for bin in BOTH {
            let line = serve_error(bin, dir.path(), &[("DATABASE_URL", &url)]).await;
            assert_eq!(
                line,
                format!(
                    "error: cannot connect to PostgreSQL at {place}/{database}: authentication \
                     failed for user \"{nobody}\". Fix the user name and password in \
                     DATABASE_URL (percent-encode special characters)"
                ),
                "{bin:?}"
            );
            assert!(!line.contains("s3cret"));
        }

        let missing = format!("pc_no_db_{suffix}");
        let url = with(base.username(), None, &missing);
        for bin in BOTH {
            let line = serve_error(bin, dir.path(), &[("DATABASE_URL", &url)]).await;
            assert_eq!(
                line,
                format!(
                    "error: cannot connect to PostgreSQL at {place}/{missing}: the database does \
                     not exist. Create it (createdb NAME) or fix the database name in DATABASE_URL"
                ),
                "{bin:?}"
            );
        }

        let admin = Database::connect(base.as_str()).await.unwrap();
        let reader = format!("pc_ro_{suffix}");
        admin
            .execute_unprepared(&format!(
                "CREATE ROLE {reader} LOGIN; \
                 ALTER ROLE {reader} SET default_transaction_read_only = on"
            ))
            .await
            .unwrap();
        let url = with(&reader, None, &database);
        let mut lines = Vec::new();
        for bin in BOTH {
            lines.push(serve_error(bin, dir.path(), &[("DATABASE_URL", &url)]).await);
        }
        admin
            .execute_unprepared(&format!("DROP ROLE {reader}"))
            .await
            .unwrap();
        for line in lines {
            assert_eq!(
                line,
                format!(
                    "error: PostgreSQL at {place}/{database} is read-only (a standby, or \
                     default_transaction_read_only is on). Point DATABASE_URL at the primary server"
                )
            );
        }
    }
}
