//! Response filtering: every response body has exactly the keys of its own
//! type, and no hash (password, client secret, token, session), internal
//! field or token leaves the server where it should not.

use std::collections::BTreeSet;

use auth_server::config::{Registration, Settings};
use auth_server::store;
use reqwest::Response;
use serde_json::{Value, json};
use shared::paths;

use crate::helpers::{
    AppOptions, Backend, Browser, TestApp, both, machine_client, spawn_app_tuned, token_with_roles,
};

/// The top-level keys of a JSON object.
fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

const OAUTH_ERROR: &[&str] = &["error", "error_description"];
const PROBLEM: &[&str] = &["detail", "status", "title", "type"];

/// Every JSON body a test fetched, as the server wrote it, by name.
#[derive(Default)]
struct Bodies(Vec<(&'static str, String)>);

impl Bodies {
    /// Reads a response whole: (status, JSON); keeps its raw text.
    async fn read(&mut self, name: &'static str, response: Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
        self.0.push((name, text));
        (status, json)
    }

    /// Keeps a body read by a helper of the harness.
    fn keep(&mut self, name: &'static str, body: &Value) {
        self.0.push((name, body.to_string()));
    }

    /// None of `needles` in any body; `only_in`'s text in its own body only.
    fn assert_clean(&self, needles: &[&str], only: Option<(&str, &str)>) {
        assert!(!self.0.is_empty());
        for (name, text) in &self.0 {
            for needle in needles {
                assert!(!needle.is_empty());
                assert!(!text.contains(needle), "{name} holds {needle}: {text}");
            }
            if let Some((secret, home)) = only {
                assert!(
                    *name == home || !text.contains(secret),
                    "{name} holds the refresh token: {text}"
                );
            }
        }
    }
}

/// The hashes and markers no body may hold, and the test user's stored hash.
async fn forbidden(app: &TestApp, secrets: &[&str]) -> Vec<String> {
    let user = store::users::find(&app.db.db, &app.user_id)
        .await
        .unwrap()
        .unwrap();
    let mut needles: Vec<String> = [
        "password_hash",
        "secret_hash",
        "token_hash",
        "session_hash",
        "$argon2",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    needles.push(user.password_hash.unwrap());
    needles.extend(secrets.iter().map(|s| shared::secret::hash(s)));
    needles
}

fn tune(s: &mut Settings) {
    s.registration = Registration::Open;
    s.lockout_threshold = 3;
    s.trusted_proxies = "127.0.0.1/32".into();
}

async fn app(backend: Backend) -> Option<TestApp> {
    spawn_app_tuned(backend, AppOptions::default(), tune).await
}

async fn post_form(
    app: &TestApp,
    bodies: &mut Bodies,
    name: &'static str,
    path: &str,
    form: &[(&str, String)],
) -> (u16, Value) {
    let response = app
        .http
        .post(app.url(path))
        .form(form)
        .send()
        .await
        .unwrap();
    bodies.read(name, response).await
}

async fn oauth_bodies_have_exactly_their_keys(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let mut bodies = Bodies::default();
    let client = app.client(false, None).await;
    let secret = client.secret.clone().unwrap();

    // Token response of the code grant, with a refresh token.
    let tokens = app.tokens_for(&client).await;
    bodies.keep("token", &tokens);
    assert_eq!(
        keys(&tokens),
        set(&[
            "access_token",
            "expires_in",
            "refresh_token",
            "scope",
            "token_type"
        ]),
        "{tokens}"
    );
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // client_credentials: no refresh token.
    let machine = machine_client(&app).await;
    let mut form = machine.form();
    form.extend([
        ("grant_type", "client_credentials".to_owned()),
        ("scope", "notes:read".to_owned()),
    ]);
    let (status, machine_tokens) = app.token(&form).await;
    assert_eq!(status, 200, "{machine_tokens}");
    bodies.keep("client_credentials", &machine_tokens);
    assert_eq!(
        keys(&machine_tokens),
        set(&["access_token", "expires_in", "scope", "token_type"]),
        "{machine_tokens}"
    );

    // An OAuth error.
    let (status, error) = app.refresh(&client, "not-a-refresh-token").await;
    assert_eq!(status, 400, "{error}");
    bodies.keep("oauth_error", &error);
    assert_eq!(keys(&error), set(OAUTH_ERROR), "{error}");
    assert_eq!(error["error"], "invalid_grant");
    // A bad client's error.
    let mut wrong = client.clone();
    wrong.secret = Some("wrong".into());
    let mut form = wrong.form();
    form.extend([("token", access.clone())]);
    let (status, error) = post_form(
        &app,
        &mut bodies,
        "introspect_error",
        paths::INTROSPECT_PATH,
        &form,
    )
    .await;
    assert_eq!(status, 401, "{error}");
    assert_eq!(keys(&error), set(OAUTH_ERROR), "{error}");

    // Introspection: the access token, the refresh token, an unknown one.
    let introspect = |token: &str| {
        let mut form = client.form();
        form.push(("token", token.to_owned()));
        form
    };
    let (status, active) = post_form(
        &app,
        &mut bodies,
        "introspect_access",
        paths::INTROSPECT_PATH,
        &introspect(&access),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(
        keys(&active),
        set(&[
            "active",
            "aud",
            "client_id",
            "exp",
            "iat",
            "iss",
            "jti",
            "nbf",
            "scope",
            "sub",
            "token_type",
        ]),
        "{active}"
    );
    let (status, active) = post_form(
        &app,
        &mut bodies,
        "introspect_refresh",
        paths::INTROSPECT_PATH,
        &introspect(&refresh),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(
        keys(&active),
        set(&["active", "client_id", "exp", "iat", "iss", "scope", "sub"]),
        "{active}"
    );
    let (status, inactive) = post_form(
        &app,
        &mut bodies,
        "introspect_unknown",
        paths::INTROSPECT_PATH,
        &introspect("unknown"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(inactive, json!({"active": false}));

    // Revocation, then the refresh token is inactive.
    let (status, revoked) = post_form(
        &app,
        &mut bodies,
        "revoke",
        paths::REVOKE_PATH,
        &introspect(&refresh),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(revoked, json!({}));
    let (status, inactive) = post_form(
        &app,
        &mut bodies,
        "introspect_revoked",
        paths::INTROSPECT_PATH,
        &introspect(&refresh),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(inactive, json!({"active": false}));

    // The metadata document (both paths alike) and the JWKS.
    for path in [paths::METADATA_PATH, paths::OPENID_CONFIGURATION_PATH] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        let (status, metadata) = bodies.read("metadata", response).await;
        assert_eq!(status, 200);
        assert_eq!(
            keys(&metadata),
            set(&[
                "authorization_endpoint",
                "authorization_response_iss_parameter_supported",
                "code_challenge_methods_supported",
                "grant_types_supported",
                "introspection_endpoint",
                "introspection_endpoint_auth_methods_supported",
                "issuer",
                "jwks_uri",
                "response_modes_supported",
                "response_types_supported",
                "revocation_endpoint",
                "revocation_endpoint_auth_methods_supported",
                "scopes_supported",
                "token_endpoint",
                "token_endpoint_auth_methods_supported",
            ]),
            "{metadata}"
        );
    }
    let response = app
        .http
        .get(app.url(paths::JWKS_PATH))
        .send()
        .await
        .unwrap();
    let (status, jwks) = bodies.read("jwks", response).await;
    assert_eq!(status, 200);
    assert_eq!(keys(&jwks), set(&["keys"]), "{jwks}");
    let published = jwks["keys"].as_array().unwrap();
    assert!(!published.is_empty());
    for key in published {
        // The public part only: no `d`, `p`, `q`, `dp`, `dq`, `qi`.
        assert_eq!(
            keys(key),
            set(&["alg", "e", "kid", "kty", "n", "use"]),
            "{key}"
        );
    }

    // Health.
    let response = app
        .http
        .get(app.url(paths::READYZ_PATH))
        .send()
        .await
        .unwrap();
    let (status, ready) = bodies.read("readyz", response).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(keys(&ready), set(&["checks", "status"]), "{ready}");
    assert_eq!(
        keys(&ready["checks"]),
        set(&[
            "audit_failures",
            "database",
            "database_write",
            "draining",
            "rate_limit_store",
            "signing_key",
        ]),
        "{ready}"
    );
    let response = app
        .http
        .get(app.url(paths::HEALTHZ_PATH))
        .send()
        .await
        .unwrap();
    let (status, live) = bodies.read("healthz", response).await;
    assert_eq!(status, 200);
    assert_eq!(live, json!({"status": "ok"}));

    let needles = forbidden(&app, &[&secret, machine.secret.as_deref().unwrap()]).await;
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    bodies.assert_clean(&needles, Some((&refresh, "token")));
    // Nor any client secret itself.
    bodies.assert_clean(&[&secret, machine.secret.as_deref().unwrap()], None);
    app.stop().await;
}
both!(oauth_bodies_have_exactly_their_keys
    => oauth_bodies_have_exactly_their_keys_sqlite,
       oauth_bodies_have_exactly_their_keys_postgres);

async fn post_json(
    app: &TestApp,
    bodies: &mut Bodies,
    name: &'static str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let response = app
        .http
        .post(app.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    bodies.read(name, response).await
}

/// Asserts a 422 problem with `errors`; returns it.
fn assert_unprocessable(problem: &Value) {
    let mut expected = set(PROBLEM);
    expected.insert("errors");
    assert_eq!(keys(problem), expected, "{problem}");
    assert_eq!(problem["status"], 422);
    let errors = problem["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "{problem}");
    for error in errors {
        assert_eq!(
            keys(error),
            set(&["detail", "field", "pointer", "rule"]),
            "{error}"
        );
    }
}

async fn account_bodies_have_exactly_their_keys(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let mut bodies = Bodies::default();

    // A password reset request: the same answer for anyone.
    for email in ["alice@example.com", "nobody@example.com"] {
        let (status, accepted) = post_json(
            &app,
            &mut bodies,
            "password_reset",
            paths::PASSWORD_RESET_PATH,
            &json!({ "email": email }),
        )
        .await;
        assert_eq!(status, 202, "{accepted}");
        assert_eq!(keys(&accepted), set(&["detail", "status"]), "{accepted}");
        assert!(!accepted.to_string().contains(email), "{accepted}");
    }

    // A confirmation with an unknown link: a plain problem (the token is
    // checked before the password; the 422's shape is registration's below).
    let (status, problem) = post_json(
        &app,
        &mut bodies,
        "reset_confirm_400",
        paths::PASSWORD_RESET_CONFIRM_PATH,
        &json!({"token": "x".repeat(43), "password": "short"}),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(keys(&problem), set(PROBLEM), "{problem}");

    // Registration: every rule broken, then accepted (a new address, and
    // the test user's, alike).
    let (status, problem) = post_json(
        &app,
        &mut bodies,
        "register_422",
        paths::REGISTER_PATH,
        &json!({"email": "not-an-email", "name": "", "password": "x"}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_unprocessable(&problem);
    for email in ["bob@example.com", "alice@example.com"] {
        let (status, accepted) = post_json(
            &app,
            &mut bodies,
            "register",
            paths::REGISTER_PATH,
            &json!({"email": email, "name": "Bob", "password": "a long enough passphrase"}),
        )
        .await;
        assert_eq!(status, 202, "{accepted}");
        assert_eq!(keys(&accepted), set(&["detail", "status"]), "{accepted}");
        assert!(!accepted.to_string().contains(email), "{accepted}");
    }

    // The admin's list of lockouts: lock the test user's account.
    let browser = Browser::new();
    for i in 1..=3 {
        let ip = format!("198.51.100.{i}");
        let html = browser
            .http
            .get(app.url(paths::LOGIN_PATH))
            .header("x-forwarded-for", &ip)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = crate::helpers::hidden(&html, "csrf_token").unwrap_or_default();
        let answer = browser
            .http
            .post(app.url(paths::LOGIN_PATH))
            .header("x-forwarded-for", &ip)
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("next", "/"),
                ("email", "alice@example.com"),
                ("password", "wrong"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 401);
    }
    let admin = token_with_roles(&app, &["admin"]);
    let response = app
        .http
        .get(app.url(paths::ADMIN_LOCKOUTS_PATH))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let (status, listed) = bodies.read("lockouts", response).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(keys(&listed), set(&["lockouts"]), "{listed}");
    let lockouts = listed["lockouts"].as_array().unwrap();
    assert!(!lockouts.is_empty(), "{listed}");
    for lockout in lockouts {
        assert_eq!(
            keys(lockout),
            set(&["failures", "kind", "locked_at", "locked_until", "subject"]),
            "{lockout}"
        );
    }
    // Refused: problems, without a token and without the role.
    let response = app
        .http
        .get(app.url(paths::ADMIN_LOCKOUTS_PATH))
        .send()
        .await
        .unwrap();
    let (status, problem) = bodies.read("lockouts_401", response).await;
    assert_eq!(status, 401);
    assert_eq!(keys(&problem), set(PROBLEM), "{problem}");
    let user = token_with_roles(&app, &[]);
    let response = app
        .http
        .get(app.url(paths::ADMIN_LOCKOUTS_PATH))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    let (status, problem) = bodies.read("lockouts_403", response).await;
    assert_eq!(status, 403);
    assert_eq!(keys(&problem), set(PROBLEM), "{problem}");

    let needles = forbidden(&app, &[]).await;
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    bodies.assert_clean(&needles, None);
    // Nor the stored hash of the registered user, nor a password.
    let bob = auth_server::domain::Email::parse("bob@example.com").unwrap();
    if let Some(bob) = store::users::find_by_email(&app.db.db, &bob).await.unwrap()
        && let Some(hash) = bob.password_hash
    {
        bodies.assert_clean(&[&hash], None);
    }
    bodies.assert_clean(
        &["a long enough passphrase", crate::helpers::PASSWORD],
        None,
    );
    app.stop().await;
}
both!(account_bodies_have_exactly_their_keys
    => account_bodies_have_exactly_their_keys_sqlite,
       account_bodies_have_exactly_their_keys_postgres);
