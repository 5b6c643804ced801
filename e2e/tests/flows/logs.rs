//! Logs (`LOG_FORMAT=json`): every line of both services is a JSON object,
//! there is one access line per request with the fields DESIGN.md promises,
//! and no line holds a secret the flow saw: passwords, the client secret,
//! codes, the PKCE verifier, `state`, tokens, CSRF tokens, cookies, reset
//! tokens. `LOG_FORMAT=bogus` stops `serve` with a message.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use e2e::StackOptions;
use e2e::browser::{Page, query_param};
use e2e::oauth::{OAuthResponse, Pkce, random_token};
use e2e::service::START_TIMEOUT;
use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use url::Url;

use crate::support::{self, Backend, PASSWORD, SCOPE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Svc {
    Auth,
    Api,
}

/// The access line a request must have left.
#[derive(Debug)]
struct Expected {
    svc: Svc,
    request_id: String,
    method: &'static str,
    route: &'static str,
    status: u16,
    /// Must be this exactly; `None`: must be absent.
    sub: Option<String>,
    client_id: Option<String>,
}

/// What the test saw: secrets that no log line may hold, and the requests
/// it made.
#[derive(Debug, Default)]
struct Seen {
    secrets: BTreeSet<String>,
    expected: Vec<Expected>,
}

/// Query parameters of redirects that are no secret (and show up in logs
/// legitimately: the issuer, a client id).
const PUBLIC_PARAMS: &[&str] = &[
    "iss",
    "client_id",
    "redirect_uri",
    "scope",
    "response_type",
    "code_challenge_method",
];

impl Seen {
    /// A value that must never be logged (values under 8 characters would
    /// match by chance and are never secrets here).
    fn secret(&mut self, value: &str) {
        let value = value.trim();
        if value.len() >= 8 {
            self.secrets.insert(value.to_owned());
        }
    }

    /// A JWT: the whole token and its signature.
    fn jwt(&mut self, token: &str) {
        self.secret(token);
        if let Some(signature) = token.rsplit('.').next() {
            self.secret(signature);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        svc: Svc,
        method: &'static str,
        route: &'static str,
        status: StatusCode,
        headers: &HeaderMap,
        sub: Option<&str>,
        client_id: Option<&str>,
    ) {
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{method} {route}: no X-Request-Id"))
            .to_owned();
        for cookie in headers.get_all(SET_COOKIE) {
            let pair = cookie.to_str().unwrap().split(';').next().unwrap();
            if let Some((_, value)) = pair.split_once('=') {
                self.secret(value);
            }
        }
        if let Some(location) = headers.get("location").and_then(|v| v.to_str().ok()) {
            let base = Url::parse("http://base.invalid/").unwrap();
            let url = base.join(location).unwrap();
            for (name, value) in url.query_pairs() {
                if !PUBLIC_PARAMS.contains(&name.as_ref()) {
                    self.secret(&value);
                }
            }
        }
        self.expected.push(Expected {
            svc,
            request_id,
            method,
            route,
            status: status.as_u16(),
            sub: sub.map(str::to_owned),
            client_id: client_id.map(str::to_owned),
        });
    }

    /// A page: its request, cookies, redirect and every hidden form value
    /// (CSRF tokens, a reset token).
    fn page(&mut self, method: &'static str, route: &'static str, page: &Page, sub: Option<&str>) {
        self.request(
            Svc::Auth,
            method,
            route,
            page.status,
            &page.headers,
            sub,
            None,
        );
        for form in e2e::html::forms(&page.body) {
            for (name, value) in &form.hidden {
                if name != "decision" {
                    self.secret(value);
                }
            }
        }
    }

    /// An OAuth or API answer: its request and the tokens it holds.
    fn answer(
        &mut self,
        svc: Svc,
        method: &'static str,
        route: &'static str,
        resp: &OAuthResponse,
        sub: Option<&str>,
        client_id: Option<&str>,
    ) {
        self.request(
            svc,
            method,
            route,
            resp.status,
            &resp.headers,
            sub,
            client_id,
        );
        if let Some(access) = resp.str("access_token") {
            self.jwt(access);
        }
        if let Some(refresh) = resp.str("refresh_token") {
            self.secret(refresh);
        }
    }
}

/// The ways a secret may show in a line: as it is, form- or
/// percent-encoded, or escaped inside a JSON string.
fn spellings(secret: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap();
    vec![
        secret.to_owned(),
        form.clone(),
        form.replace('+', "%20"),
        json.to_owned(),
    ]
}

/// Every `(secret, line)` where `line` holds `secret` in one of its
/// [`spellings`], or holds a credential header's value.
fn leaks<'a>(lines: &'a [String], secrets: &BTreeSet<String>) -> Vec<(String, &'a str)> {
    let mut found = Vec::new();
    for line in lines {
        for secret in secrets {
            if spellings(secret).iter().any(|s| line.contains(s.as_str())) {
                found.push((secret.clone(), line.as_str()));
            }
        }
        for scheme in ["Bearer ", "Basic "] {
            if line.contains(scheme) {
                found.push((scheme.trim().to_owned(), line.as_str()));
            }
        }
    }
    found
}

#[test]
fn leaks_finds_a_secret_however_it_is_spelled() {
    let secrets: BTreeSet<String> = ["s3cret pass/word+\"x\"", "refresh-token-value-123"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let lines: Vec<String> = [
        r#"{"message":"clean","route":"/token"}"#,
        r#"{"message":"refresh-token-value-123"}"#,
        r#"{"password":"s3cret pass/word+\"x\""}"#,
        "GET /login?password=s3cret+pass%2Fword%2B%22x%22",
        "GET /login?password=s3cret%20pass%2Fword%2B%22x%22",
        r#"{"header":"Bearer abc"}"#,
        r#"{"header":"Basic YWJjOmRlZg=="}"#,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let found = leaks(&lines, &secrets);
    let lines_hit: BTreeSet<&str> = found.iter().map(|(_, line)| *line).collect();
    assert_eq!(lines_hit.len(), 6, "{found:?}");
    assert!(!lines_hit.contains(lines[0].as_str()));
}

/// The lines of a service's output.
fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

/// Waits until every expected request id is in its service's log (the
/// output is read by another task), then returns both logs.
async fn settled_logs(stack: &e2e::Stack, seen: &Seen) -> (Vec<String>, Vec<String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let auth = lines(&stack.auth.logs.text());
        let api = lines(&stack.resource.as_ref().unwrap().logs.text());
        let missing = seen.expected.iter().find(|e| {
            let log = if e.svc == Svc::Auth { &auth } else { &api };
            // The access line itself: it is written off the request path,
            // so it may reach stderr after the answer and after the
            // handler's own lines of the request.
            !log.iter()
                .any(|l| l.contains(&e.request_id) && l.contains(r#""target":"access""#))
        });
        match missing {
            None => return (auth, api),
            Some(e) if tokio::time::Instant::now() >= deadline => {
                panic!("no access line for {e:?}:\n{}", stack.logs())
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The reset token of the newest outbox mail to `email`.
async fn reset_token(stack: &e2e::Stack, email: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mails = stack.cli(&["outbox", "list"], None).await.unwrap();
        let body = mails.as_array().unwrap().iter().find_map(|m| {
            (m["recipient"] == email)
                .then(|| m["body"].as_str())
                .flatten()
        });
        if let Some(body) = body {
            let start = body.find("token=").unwrap() + "token=".len();
            return body[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                .collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reset mail to {email}: {mails}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(stack: &e2e::Stack, method: Method, url: &str, body: Option<Value>) -> OAuthResponse {
    let mut req = stack.http.request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    OAuthResponse::read(req.send().await.unwrap())
        .await
        .unwrap()
}

/// Routes the services call on their own (start-up health polls, the
/// metadata the stack reads, the resource API's JWKS fetch): lines the test
/// did not ask for, allowed with status 200.
const BACKGROUND_ROUTES: &[&str] = &[
    "/healthz",
    "/.well-known/oauth-authorization-server",
    "/.well-known/jwks.json",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_one_access_line_per_request_and_no_secret() {
    let options = StackOptions::default()
        .auth_env("LOG_FORMAT", "json")
        .resource_env("LOG_FORMAT", "json")
        .auth_env("REGISTRATION", "open");
    let f = support::fixture_with(&Backend::Sqlite, options).await;
    let stack = &f.stack.stack;
    let client = &f.client;
    let user = &f.user;
    let browser = &f.browser;
    let secret = client.secret.clone().unwrap();
    let mut seen = Seen::default();
    seen.secret(PASSWORD);
    seen.secret(&secret);
    seen.secret(
        &base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", client.id)),
    );
    let me = Some(user.id.as_str());
    let app = Some(client.id.as_str());

    // authorize → login page → a wrong password → the right one → consent.
    let pkce = Pkce::new();
    let state = random_token();
    seen.secret(&pkce.verifier);
    seen.secret(&state);
    let url = support::authorize_url(stack, &client.id, SCOPE, &pkce, &state);
    let to_login = browser.get(&url).await.unwrap();
    assert_eq!(to_login.status, StatusCode::SEE_OTHER, "{to_login}");
    seen.page("GET", "/authorize", &to_login, None);
    let login = browser.get(&to_login.location().unwrap()).await.unwrap();
    assert_eq!(login.status, StatusCode::OK, "{login}");
    seen.page("GET", "/login", &login, None);
    let wrong_password = format!("wrong-{}", random_token());
    seen.secret(&wrong_password);
    let refused = browser
        .submit(
            &login,
            &login.form("/login").unwrap(),
            &[("email", &user.email), ("password", &wrong_password)],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused}");
    seen.page("POST", "/login", &refused, None);
    let signed_in = browser
        .submit(
            &refused,
            &refused.form("/login").unwrap(),
            &[("email", &user.email), ("password", PASSWORD)],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{signed_in}");
    seen.page("POST", "/login", &signed_in, me);
    let session = signed_in
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|c| c.to_str().ok()?.split(';').next()?.split_once('='))
        .find(|(name, _)| name.ends_with("portcullis_session"))
        .map(|(_, value)| value.to_owned())
        .unwrap_or_else(|| panic!("no session cookie: {signed_in}"));
    assert!(seen.secrets.contains(&session));
    let consent = browser.get(&signed_in.location().unwrap()).await.unwrap();
    assert_eq!(consent.status, StatusCode::OK, "{consent}");
    seen.page("GET", "/authorize", &consent, me);
    let allowed = browser
        .submit(
            &consent,
            &consent.form("/consent").unwrap(),
            &[("decision", "allow")],
            &[],
        )
        .await
        .unwrap();
    assert!(allowed.status.is_redirection(), "{allowed}");
    let csrf = consent.form("/consent").unwrap();
    assert!(seen.secrets.contains(csrf.get("csrf_token").unwrap()));
    seen.page("POST", "/consent", &allowed, me);
    let redirect = allowed.location().unwrap();
    assert_eq!(query_param(&redirect, "state").as_deref(), Some(&*state));
    let grant = support::Grant {
        code: query_param(&redirect, "code").unwrap(),
        pkce,
    };
    assert!(seen.secrets.contains(&grant.code));

    // Code exchange, two refreshes.
    let issued = support::exchange(stack, client.basic(), &grant).await;
    seen.answer(Svc::Auth, "POST", "/token", &issued, None, app);
    let first = support::assert_tokens(&issued);
    let first_refresh = first.refresh.clone().unwrap();
    let resp = support::refresh(stack, client.basic(), &first_refresh).await;
    seen.answer(Svc::Auth, "POST", "/token", &resp, None, app);
    let second = support::assert_tokens(&resp);
    let resp = support::refresh(stack, client.basic(), second.refresh.as_deref().unwrap()).await;
    seen.answer(Svc::Auth, "POST", "/token", &resp, None, app);
    let third = support::assert_tokens(&resp);
    let access = third.access.clone();

    // The resource API: create, list, read, me; a forged token; a path no
    // route has, with the token in its query.
    let created = support::api(
        stack,
        Method::POST,
        "/api/v2/notes",
        Some(&access),
        Some(json!({"title": "log test", "body": "hello"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created}");
    seen.answer(Svc::Api, "POST", "/api/v2/notes", &created, me, app);
    let note = created.require("id").unwrap();
    for (path, route) in [
        ("/api/v2/notes".to_owned(), "/api/v2/notes"),
        (format!("/api/v2/notes/{note}"), "/api/v2/notes/{id}"),
        ("/api/v2/me".to_owned(), "/api/v2/me"),
    ] {
        let resp = support::api(stack, Method::GET, &path, Some(&access), None).await;
        assert_eq!(resp.status, StatusCode::OK, "{path}: {resp}");
        seen.answer(Svc::Api, "GET", route, &resp, me, app);
    }
    let forged = format!("{}.forged", random_token());
    seen.secret(&forged);
    let resp = support::api(stack, Method::GET, "/api/v2/me", Some(&forged), None).await;
    support::assert_invalid_token(&resp, "forged token");
    seen.answer(Svc::Api, "GET", "/api/v2/me", &resp, None, None);
    let hidden = random_token();
    seen.secret(&hidden);
    let resp = support::api(
        stack,
        Method::GET,
        &format!("/api/v2/{hidden}?access_token={access}"),
        None,
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{resp}");
    seen.answer(Svc::Api, "GET", "-", &resp, None, None);
    let resp = send(
        stack,
        Method::GET,
        &format!("{}/{hidden}?code={}", stack.auth.url, grant.code),
        None,
    )
    .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{resp}");
    seen.answer(Svc::Auth, "GET", "-", &resp, None, None);

    // Introspection, revocation, reuse of a rotated refresh token.
    let resp = stack.introspect(client.basic(), &access).await.unwrap();
    assert_eq!(resp.status, StatusCode::OK, "{resp}");
    assert_eq!(resp.json.as_ref().unwrap()["active"], true, "{resp}");
    seen.answer(Svc::Auth, "POST", "/introspect", &resp, None, app);
    let resp = stack
        .revoke(
            client.basic(),
            third.refresh.as_deref().unwrap(),
            Some("refresh_token"),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, StatusCode::OK, "{resp}");
    seen.answer(Svc::Auth, "POST", "/revoke", &resp, None, app);
    let resp = support::refresh(stack, client.basic(), &first_refresh).await;
    support::assert_oauth_error(&resp, StatusCode::BAD_REQUEST, "invalid_grant");
    seen.answer(Svc::Auth, "POST", "/token", &resp, None, app);

    // Password reset through the dev outbox, then self-registration.
    let auth = &stack.auth.url;
    let resp = send(
        stack,
        Method::POST,
        &format!("{auth}/password-reset"),
        Some(json!({"email": user.email})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{resp}");
    seen.answer(Svc::Auth, "POST", "/password-reset", &resp, None, None);
    let token = reset_token(stack, &user.email).await;
    seen.secret(&token);
    let link = Url::parse(&format!("{auth}/password-reset/confirm?token={token}")).unwrap();
    let page = browser.get(&link).await.unwrap();
    assert_eq!(page.status, StatusCode::OK, "{page}");
    seen.page("GET", "/password-reset/confirm", &page, None);
    let new_password = format!("New-{}", random_token());
    seen.secret(&new_password);
    let resp = send(
        stack,
        Method::POST,
        &format!("{auth}/password-reset/confirm"),
        Some(json!({"token": token, "password": new_password})),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{resp}");
    seen.answer(
        Svc::Auth,
        "POST",
        "/password-reset/confirm",
        &resp,
        None,
        None,
    );
    let registered_password = format!("Reg-{}", random_token());
    seen.secret(&registered_password);
    let resp = send(
        stack,
        Method::POST,
        &format!("{auth}/api/v2/users"),
        Some(json!({
            "email": format!("new-{}@example.com", uuid::Uuid::new_v4().simple()),
            "name": "Newcomer Example",
            "password": registered_password,
        })),
    )
    .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{resp}");
    seen.answer(Svc::Auth, "POST", "/api/v2/users", &resp, None, None);

    // Every secret kind was seen (cookies and CSRF tokens come from pages).
    assert!(seen.secrets.len() >= 20, "{:?}", seen.secrets);
    let (auth_lines, api_lines) = settled_logs(stack, &seen).await;
    for (svc, log) in [(Svc::Auth, &auth_lines), (Svc::Api, &api_lines)] {
        let parsed: Vec<Value> = log
            .iter()
            .map(|line| {
                serde_json::from_str::<Value>(line)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| panic!("{svc:?}: not a JSON object: {line}"))
            })
            .collect();
        for line in &parsed {
            for field in ["timestamp", "level", "target", "message"] {
                assert!(line.get(field).is_some(), "{svc:?}: no {field}: {line}");
            }
        }
        let access: Vec<&Value> = parsed.iter().filter(|l| l["target"] == "access").collect();
        let mine: Vec<&Expected> = seen.expected.iter().filter(|e| e.svc == svc).collect();
        for e in &mine {
            let hits: Vec<&&Value> = access
                .iter()
                .filter(|l| l["request_id"] == e.request_id.as_str())
                .collect();
            assert_eq!(hits.len(), 1, "{e:?}: access lines {hits:?}");
            let line = hits[0];
            assert_eq!(line["level"], "INFO", "{line}");
            assert_eq!(line["method"], e.method, "{e:?}: {line}");
            assert_eq!(line["route"], e.route, "{e:?}: {line}");
            assert_eq!(line["status"], e.status, "{e:?}: {line}");
            assert_eq!(line["client_ip"], "127.0.0.1", "{e:?}: {line}");
            assert!(
                line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
                "{e:?}: {line}"
            );
            assert_eq!(
                line.get("sub").and_then(Value::as_str),
                e.sub.as_deref(),
                "{e:?}: {line}"
            );
            assert_eq!(
                line.get("client_id").and_then(Value::as_str),
                e.client_id.as_deref(),
                "{e:?}: {line}"
            );
        }
        for line in &access {
            let id = line["request_id"].as_str().unwrap_or_default();
            if !mine.iter().any(|e| e.request_id == id) {
                let route = line["route"].as_str().unwrap_or_default();
                assert!(
                    BACKGROUND_ROUTES.contains(&route) && line["status"] == 200,
                    "{svc:?}: an access line for a request the test did not make: {line}"
                );
            }
        }
    }
    let all: Vec<String> = auth_lines.into_iter().chain(api_lines).collect();
    let found = leaks(&all, &seen.secrets);
    assert!(found.is_empty(), "secrets in the logs: {found:#?}");
}

#[tokio::test]
async fn serve_refuses_an_unknown_log_format() {
    let bins = e2e::Binaries::ensure_async(e2e::binaries::BuildPolicy::Always)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for program in [&bins.auth_server, &bins.resource_api] {
        let mut serve = e2e::ServiceSpec::new("serve", program)
            .env("LOG_FORMAT", "bogus")
            .env(
                "DATABASE_URL",
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("db.sqlite").display()
                ),
            )
            .env("AUTH_LISTEN", "127.0.0.1:0")
            .env("RESOURCE_LISTEN", "127.0.0.1:0")
            .command();
        serve.arg("serve").current_dir(dir.path());
        // Dropping the future kills a `serve` that wrongly keeps running.
        let output = tokio::time::timeout(START_TIMEOUT, serve.output())
            .await
            .expect("serve kept running with LOG_FORMAT=bogus")
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{}: {stderr}", program.display());
        assert!(
            stderr.contains("LOG_FORMAT") && stderr.contains("bogus"),
            "{}: {stderr}",
            program.display()
        );
        assert!(stderr.contains("`json` or `text`"), "{stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
    }
}
