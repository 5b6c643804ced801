//! A browser app on another origin, in headless Chromium: what only a real
//! browser enforces. The test serves a small client app (an HTML page, an
//! external script and a stylesheet, under a strict CSP of its own) on its
//! own loopback port; its script makes the PKCE verifier and S256 challenge
//! with WebCrypto, goes to `/authorize`, and on the callback exchanges the
//! code at `/token` with `fetch` as a public client and calls the resource
//! API with the access token, so `CORS_ALLOWED_ORIGINS` is applied by the
//! browser, for the listed origin and against one that is not listed.
//!
//! Also in Chromium: no page of the flow (login, consent, the client's)
//! reports a CSP violation, with a control page that does, so the check can
//! fail; the login form is refused without its CSRF token or its cookie;
//! another origin cannot frame the login or consent page (with a control
//! frame that another origin does let it show).
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them at build
//! time the tests are marked ignored, unless `CI=true`, where they run and
//! fail (`test_gates`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::chromium::{Chromium, ConsoleEntry};
use e2e::oauth::{Pkce, decode_jwt, random_token};
use e2e::{ClientSpec, CreatedUser, StackOptions};
use fantoccini::Locator;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use url::Url;

use crate::browser::{require_chromium, wait_for};
use crate::support::*;

const APP_HTML: &str = include_str!("browser_app/app.html");
const APP_JS: &str = include_str!("browser_app/app.js");
const APP_CSS: &str = include_str!("browser_app/app.css");
/// A page whose inline script its own CSP refuses: the control of the CSP
/// check.
const VIOLATE_HTML: &str = include_str!("browser_app/violate.html");
/// What `/frameable` shows, in a page without any framing restriction.
const FRAMEABLE_TEXT: &str = "frameable ok";

/// How long the app may take to report its outcome, and the browser to
/// report refused frames.
const RESULT_DEADLINE: Duration = Duration::from_secs(20);

/// What the app's script needs (served as `/config.json`), and the origins
/// its CSP lets it connect to and frame.
#[derive(Debug, Clone, Default)]
struct AppConfig {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    /// The resource API's base URL.
    api: String,
    client_id: String,
    redirect_uri: String,
    scope: String,
    /// What the `/frames` page embeds, in order.
    frames: Vec<String>,
}

/// `scheme://host:port` of `url`, or nothing for an empty or bad one.
fn origin_of(url: &str) -> Option<String> {
    Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

/// `"` and `&` escaped for an HTML attribute.
fn attr(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

impl AppConfig {
    fn json(&self) -> String {
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "api": self.api,
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
        })
        .to_string()
    }

    /// The app's own strict CSP: nothing inline, scripts and styles from
    /// itself, `fetch` to itself, the auth server and the API only.
    fn csp(&self) -> String {
        let connect: Vec<String> = [&self.token_endpoint, &self.api]
            .into_iter()
            .filter_map(|url| origin_of(url))
            .collect();
        let frames: Vec<String> = self.frames.iter().filter_map(|u| origin_of(u)).collect();
        format!(
            "default-src 'self'; connect-src 'self' {}; frame-src 'self' {}; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
            connect.join(" "),
            frames.join(" ")
        )
    }

    /// A page with one iframe per entry of `frames` (`#frame-0`, …).
    fn frames_html(&self) -> String {
        let frames: String = self
            .frames
            .iter()
            .enumerate()
            .map(|(i, src)| {
                format!(
                    "<iframe id=\"frame-{i}\" title=\"frame {i}\" src=\"{}\"></iframe>\n",
                    attr(src)
                )
            })
            .collect();
        format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>Framing test</title>\n</head>\n<body>\n{frames}</body>\n</html>\n"
        )
    }
}

/// One answer of the app's server.
struct Answer {
    status: &'static str,
    content_type: &'static str,
    csp: Option<String>,
    body: String,
}

impl Answer {
    fn ok(content_type: &'static str, csp: Option<String>, body: impl Into<String>) -> Self {
        Self {
            status: "200 OK",
            content_type,
            csp,
            body: body.into(),
        }
    }

    fn status(status: &'static str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            csp: None,
            body: status.to_owned(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if let Some(csp) = &self.csp {
            head.push_str(&format!("Content-Security-Policy: {csp}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}

/// What the app's server answers for `path`.
fn route(path: &str, config: Option<&AppConfig>) -> Answer {
    const HTML: &str = "text/html; charset=utf-8";
    match (path, config) {
        ("/app.js", _) => Answer::ok("text/javascript; charset=utf-8", None, APP_JS),
        ("/app.css", _) => Answer::ok("text/css; charset=utf-8", None, APP_CSS),
        ("/violate", _) => Answer::ok(
            HTML,
            Some("default-src 'self'; frame-ancestors 'none'".to_owned()),
            VIOLATE_HTML,
        ),
        // No CSP, no X-Frame-Options: any origin may frame it.
        ("/frameable", _) => Answer::ok(
            HTML,
            None,
            format!(
                "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <title>frameable</title></head><body><p id=\"frameable\">{FRAMEABLE_TEXT}</p>\
                 </body></html>\n"
            ),
        ),
        (_, None) => Answer::status("503 Service Unavailable"),
        ("/" | "/callback" | "/probe", Some(config)) => {
            Answer::ok(HTML, Some(config.csp()), APP_HTML)
        }
        ("/config.json", Some(config)) => Answer::ok("application/json", None, config.json()),
        ("/frames", Some(config)) => Answer::ok(HTML, Some(config.csp()), config.frames_html()),
        _ => Answer::status("404 Not Found"),
    }
}

/// The client app on its own loopback origin (`http://127.0.0.1:PORT`),
/// answering from its [`AppConfig`] once [`ClientApp::configure`] has set
/// it (503 before). Keeps the request lines; stops on drop.
struct ClientApp {
    origin: String,
    config: Arc<Mutex<Option<AppConfig>>>,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ClientApp {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config: Arc<Mutex<Option<AppConfig>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (shared, seen) = (config.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (shared, seen) = (shared.clone(), seen.clone());
                // One task per connection: a preconnected socket that never
                // sends a request must not hold up the next one.
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let line = head.lines().next().unwrap_or_default().to_owned();
                    let target = line.split(' ').nth(1).unwrap_or("/");
                    let path = target.split('?').next().unwrap_or("/");
                    let config = shared.lock().unwrap().clone();
                    let answer = route(path, config.as_ref());
                    seen.lock().unwrap().push(line.clone());
                    let _ = socket.write_all(&answer.bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            origin: format!("http://{addr}"),
            config,
            requests,
            task,
        }
    }

    fn configure(&self, config: AppConfig) {
        *self.config.lock().unwrap() = Some(config);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ClientApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The app's configuration for `client_id` on `stack`.
fn app_config(stack: &TestStack, client_id: &str, redirect_uri: &str) -> AppConfig {
    AppConfig {
        issuer: stack.issuer.clone(),
        authorization_endpoint: stack.endpoint("authorization_endpoint").unwrap(),
        token_endpoint: stack.endpoint("token_endpoint").unwrap(),
        api: stack.resource_url().map(str::to_owned).unwrap_or_default(),
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scope: SCOPE.to_owned(),
        frames: Vec::new(),
    }
}

/// Chromium, or the test's failure with chromedriver's output.
async fn chromium() -> Chromium {
    Chromium::start()
        .await
        .unwrap_or_else(|e| panic!("starting Chromium: {e:#}"))
}

/// On the login page: types the user's credentials (the form's hidden
/// fields as they are) and submits.
async fn submit_login(browser: &Chromium, user: &CreatedUser) {
    let c = &browser.client;
    wait_for(browser, "form[action='/login'] input[name='email']")
        .await
        .send_keys(&user.email)
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/login'] input[name='password']"))
        .await
        .unwrap()
        .send_keys(&user.password)
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/login'] button[type='submit']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The Allow button of the consent page, once it is there.
const ALLOW: &str = "form[action='/consent'] button[name='decision'][value='allow']";

/// The outcome the app wrote into `#result`.
async fn app_outcome(browser: &Chromium, app: &ClientApp) -> Value {
    let deadline = Instant::now() + RESULT_DEADLINE;
    loop {
        let result = browser
            .client
            .find(Locator::Css("#result[data-done]"))
            .await;
        if let Ok(element) = result {
            let text = element.text().await.unwrap();
            return serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("#result is not JSON ({e}): {text}"));
        }
        if Instant::now() >= deadline {
            let url = browser.url().await;
            let source = browser.client.source().await.unwrap_or_default();
            let log = browser.browser_log().await.unwrap_or_default();
            panic!(
                "no outcome from the app within {RESULT_DEADLINE:?} on {url:?}:\n{source}\n\
                 console: {log:#?}\napp requests: {:?}",
                app.requests()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The CSP violations among `entries`.
fn csp_violations(entries: &[ConsoleEntry]) -> Vec<&ConsoleEntry> {
    entries.iter().filter(|e| e.is_csp_violation()).collect()
}

/// The console so far, failing the test if any entry is a CSP violation
/// (`what`: which pages these were).
async fn assert_no_csp_violation(browser: &Chromium, what: &str) -> Vec<ConsoleEntry> {
    let entries = browser.browser_log().await.unwrap();
    let violations = csp_violations(&entries);
    assert!(
        violations.is_empty(),
        "CSP violations on {what}: {violations:#?}"
    );
    entries
}

/// The control: a page that breaks its own CSP is reported, so the check
/// above sees violations.
async fn assert_csp_check_sees_violation(browser: &Chromium, app: &ClientApp) {
    browser.client.goto(&app.url("/violate")).await.unwrap();
    let deadline = Instant::now() + RESULT_DEADLINE;
    let mut seen = Vec::new();
    while csp_violations(&seen).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the control page's CSP violation was not reported within {RESULT_DEADLINE:?}; \
             console: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen.extend(browser.browser_log().await.unwrap());
    }
    let text = browser
        .client
        .find(Locator::Css("#control"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_ne!(text, "inline script ran", "the control's inline script ran");
}

test_gates::needs! { [chromium]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn browser_app_on_listed_origin_exchanges_code_with_pkce_through_cors() {
        let test = "browser_app_on_listed_origin_exchanges_code_with_pkce_through_cors";
        require_chromium(test);
        // The app's origin is listed; the other origin serves the same app and
        // is not.
        let app = ClientApp::start().await;
        let other = ClientApp::start().await;
        let stack = start(
            &Backend::Sqlite,
            StackOptions::default()
                .auth_env("CORS_ALLOWED_ORIGINS", &app.origin)
                .resource_env("CORS_ALLOWED_ORIGINS", &app.origin),
        )
        .await;
        let callback = app.url("/callback");
        let client = stack
            .create_client(&ClientSpec::public("browser app", &callback))
            .await
            .unwrap();
        let user = new_user(&stack).await;
        app.configure(app_config(&stack, &client.id, &callback));
        other.configure(app_config(&stack, &client.id, &other.url("/callback")));

        let browser = chromium().await;
        let c = &browser.client;
        c.goto(&app.url("/")).await.unwrap();
        wait_for(&browser, "button#login:enabled")
            .await
            .click()
            .await
            .unwrap();
        submit_login(&browser, &user).await;
        wait_for(&browser, ALLOW).await.click().await.unwrap();

        // Back on the app, which exchanged the code and called the API.
        let outcome = app_outcome(&browser, &app).await;
        let landed = browser.url().await.unwrap();
        assert_eq!(
            landed.origin().ascii_serialization(),
            app.origin,
            "{landed}"
        );
        assert_eq!(landed.path(), "/callback", "{landed}");
        assert_eq!(outcome["ok"], json!(true), "app outcome {outcome:#}");
        assert_eq!(outcome["token_type"], json!("Bearer"), "{outcome:#}");
        assert_eq!(outcome["refresh_token"], json!(true), "{outcome:#}");
        assert_eq!(outcome["me_status"], json!(200), "{outcome:#}");
        assert_eq!(outcome["me"]["sub"], json!(user.id), "{outcome:#}");
        assert_eq!(outcome["me"]["client_id"], json!(client.id), "{outcome:#}");
        assert_eq!(
            scope_set(outcome["me"]["scope"].as_str().unwrap_or_default()),
            scope_set(SCOPE),
            "{outcome:#}"
        );
        // A real access token: an RS256 at+jwt from this issuer for this user.
        let token = outcome["access_token"].as_str().unwrap_or_default();
        let (header, claims) =
            decode_jwt(token).unwrap_or_else(|e| panic!("access token {token:?}: {e:#}"));
        assert_eq!(header["alg"], json!("RS256"), "{header}");
        assert_eq!(header["typ"], json!("at+jwt"), "{header}");
        assert_eq!(claims["iss"], json!(stack.issuer), "{claims}");
        assert_eq!(claims["sub"], json!(user.id), "{claims}");
        assert_eq!(claims["client_id"], json!(client.id), "{claims}");
        // The app page, the login and consent pages: no CSP violation.
        let flow_log = assert_no_csp_violation(&browser, "the app, login and consent pages").await;

        // The same calls from an origin that is not listed: the browser refuses
        // the answers (fetch rejects with a TypeError) …
        c.goto(&other.url("/probe")).await.unwrap();
        let refused = app_outcome(&browser, &other).await;
        for call in ["token", "me"] {
            let error = refused[call]["error"].as_str().unwrap_or_default();
            assert!(
                error.starts_with("TypeError"),
                "{call} from the unlisted origin {}: {refused:#}",
                other.origin
            );
        }
        // … because of CORS (the console says so), not of the app's CSP.
        let refused_log = assert_no_csp_violation(&browser, "the unlisted origin's page").await;
        let token_endpoint = stack.endpoint("token_endpoint").unwrap();
        let me_url = format!("{}/api/v2/me", stack.resource_url().unwrap());
        for refused_url in [&token_endpoint, &me_url] {
            let fetch = format!(
                "Access to fetch at '{refused_url}' from origin '{}'",
                other.origin
            );
            assert!(
                refused_log
                    .iter()
                    .any(|e| e.message.contains(&fetch) && e.message.contains("blocked by CORS policy")),
                "no CORS refusal of {refused_url} for {} in the console: {refused_log:#?}",
                other.origin
            );
        }
        assert!(
            !flow_log
                .iter()
                .any(|e| e.message.contains("blocked by CORS policy")),
            "CORS refusals during the flow: {flow_log:#?}"
        );

        // The control: the same probe from the listed origin reads the answers.
        c.goto(&app.url("/probe")).await.unwrap();
        let allowed = app_outcome(&browser, &app).await;
        assert_eq!(allowed["token"]["status"], json!(400), "{allowed:#}");
        assert_eq!(
            allowed["token"]["body"]["error"],
            json!("invalid_grant"),
            "{allowed:#}"
        );
        assert_eq!(allowed["me"]["status"], json!(401), "{allowed:#}");
        assert_no_csp_violation(&browser, "the listed origin's probe page").await;

        assert_csp_check_sees_violation(&browser, &app).await;
        browser.quit().await.unwrap();
    }
}

/// Whether the page is the login form's refusal: the 403 page, no form.
async fn assert_login_refused(browser: &Chromium, how: &str) {
    let c = &browser.client;
    let deadline = Instant::now() + RESULT_DEADLINE;
    // The POST's answer replaces the page: wait until the form is gone.
    while !c
        .find_all(Locator::Css("form[action='/login']"))
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "{how}: still on the login form after {RESULT_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = c
        .execute(
            "const nav = performance.getEntriesByType('navigation')[0];\
             return nav ? nav.responseStatus : null;",
            vec![],
        )
        .await
        .unwrap();
    let url = browser.url().await.unwrap();
    let source = c.source().await.unwrap_or_default();
    assert_eq!(status, json!(403), "{how}: status of {url}:\n{source}");
    assert_eq!(url.path(), "/login", "{how}: {url}");
    assert!(
        source.contains("CSRF check failed"),
        "{how}: not the CSRF refusal on {url}:\n{source}"
    );
    assert!(
        c.find_all(Locator::Css(ALLOW)).await.unwrap().is_empty(),
        "{how}: a consent page on {url}"
    );
}

/// Opens `authorize`, which must show the login form (nobody signed in).
async fn open_login(browser: &Chromium, authorize: &Url, how: &str) {
    let c = &browser.client;
    c.goto(authorize.as_str()).await.unwrap();
    let login = c
        .find_all(Locator::Css("form[action='/login']"))
        .await
        .unwrap();
    let url = browser.url().await.unwrap();
    assert_eq!(
        login.len(),
        1,
        "{how}: no login form on {url}:\n{}",
        c.source().await.unwrap_or_default()
    );
}

test_gates::needs! { [chromium]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn browser_login_is_refused_without_its_csrf_token_or_cookie() {
        let test = "browser_login_is_refused_without_its_csrf_token_or_cookie";
        require_chromium(test);
        let stack = start(
            &Backend::Sqlite,
            StackOptions::default().without_resource_api(),
        )
        .await;
        let client = stack
            .create_client(&ClientSpec::confidential("csrf app", REDIRECT))
            .await
            .unwrap();
        let user = new_user(&stack).await;
        let authorize = authorize_url(&stack, &client.id, SCOPE, &Pkce::new(), &random_token());
        let browser = chromium().await;
        let c = &browser.client;
        let csrf_input = "form[action='/login'] input[name='csrf_token']";

        // The hidden token removed from the form (the cookie still there).
        open_login(&browser, &authorize, "first visit").await;
        let left = c
            .execute(
                "document.querySelector(arguments[0]).remove(); \
                 return document.querySelectorAll(arguments[0]).length;",
                vec![json!(csrf_input)],
            )
            .await
            .unwrap();
        assert_eq!(left, json!(0), "the token input is still there");
        submit_login(&browser, &user).await;
        assert_login_refused(&browser, "form without csrf_token").await;

        // Not signed in: the flow starts again at the login form. This time the
        // cookie goes (the form keeps its token).
        open_login(&browser, &authorize, "after the refusal").await;
        let cookie = c
            .get_named_cookie("portcullis_login_csrf")
            .await
            .unwrap_or_else(|e| panic!("no CSRF cookie on the login page: {e}"));
        let token = c
            .find(Locator::Css(csrf_input))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap();
        assert_eq!(token.as_deref(), Some(cookie.value()), "double-submit pair");
        c.delete_cookie("portcullis_login_csrf").await.unwrap();
        submit_login(&browser, &user).await;
        assert_login_refused(&browser, "form without the CSRF cookie").await;

        // The control: the same form with both signs the user in.
        open_login(&browser, &authorize, "after the second refusal").await;
        submit_login(&browser, &user).await;
        wait_for(&browser, ALLOW).await;
        assert_no_csp_violation(&browser, "the login, refusal and consent pages").await;
        browser.quit().await.unwrap();
    }
}

test_gates::needs! { [chromium]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn browser_refuses_to_frame_login_and_consent_pages_on_another_origin() {
        let test = "browser_refuses_to_frame_login_and_consent_pages_on_another_origin";
        require_chromium(test);
        let framer = ClientApp::start().await;
        let third = ClientApp::start().await;
        let stack = start(
            &Backend::Sqlite,
            StackOptions::default().without_resource_api(),
        )
        .await;
        let client = stack
            .create_client(&ClientSpec::confidential("framed app", REDIRECT))
            .await
            .unwrap();
        let user = new_user(&stack).await;
        let authorize = || authorize_url(&stack, &client.id, SCOPE, &Pkce::new(), &random_token());

        // Signed in, so that /authorize answers with the consent page.
        let browser = chromium().await;
        let c = &browser.client;
        open_login(&browser, &authorize(), "sign in").await;
        submit_login(&browser, &user).await;
        wait_for(&browser, ALLOW).await;
        assert_no_csp_violation(&browser, "the login and consent pages").await;

        let login = format!("{}/login", stack.auth.url);
        let consent = authorize().to_string();
        let control = third.url("/frameable");
        framer.configure(AppConfig {
            frames: vec![login.clone(), consent.clone(), control.clone()],
            ..app_config(&stack, &client.id, REDIRECT)
        });
        c.goto(&framer.url("/frames")).await.unwrap();

        // The control: a page of another origin that allows framing shows in
        // its frame, so an empty frame below is the browser's refusal.
        c.find(Locator::Css("#frame-2"))
            .await
            .unwrap()
            .enter_frame()
            .await
            .unwrap();
        let shown = wait_for(&browser, "#frameable").await.text().await.unwrap();
        assert_eq!(shown, FRAMEABLE_TEXT);
        c.enter_parent_frame().await.unwrap();

        // Chromium reports each refused frame (frame-ancestors 'none').
        let deadline = Instant::now() + RESULT_DEADLINE;
        let mut log = Vec::new();
        let refusals = |log: &[ConsoleEntry]| {
            log.iter()
                .filter(|e| e.is_csp_violation() && e.message.contains("frame-ancestors 'none'"))
                .count()
        };
        while refusals(&log) < 2 {
            assert!(
                Instant::now() < deadline,
                "Chromium did not refuse both frames within {RESULT_DEADLINE:?}; console: {log:#?}; \
                 auth-server requests must have been made: {}",
                stack.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            log.extend(browser.browser_log().await.unwrap());
        }
        let others: Vec<&ConsoleEntry> = log
            .iter()
            .filter(|e| e.is_csp_violation() && !e.message.contains("frame-ancestors 'none'"))
            .collect();
        assert!(others.is_empty(), "other CSP violations: {others:#?}");

        // And the frames show none of the pages: Chromium's error document
        // stands in their place, with no form of the auth server.
        for (i, url) in [(0, &login), (1, &consent)] {
            c.find(Locator::Css(&format!("#frame-{i}")))
                .await
                .unwrap()
                .enter_frame()
                .await
                .unwrap();
            let forms = c
                .find_all(Locator::Css(
                    "form[action='/login'], form[action='/consent'], input[name='csrf_token']",
                ))
                .await
                .unwrap();
            let document = c.execute("return document.URL;", vec![]).await.unwrap();
            let source = c.source().await.unwrap_or_default();
            assert!(
                forms.is_empty(),
                "frame {i} ({url}) shows the page:\n{source}"
            );
            assert!(
                document
                    .as_str()
                    .is_some_and(|u| u.starts_with("chrome-error:")),
                "frame {i} ({url}) holds {document}, not Chromium's error document:\n{source}"
            );
            c.enter_parent_frame().await.unwrap();
        }
        browser.quit().await.unwrap();
    }
}
