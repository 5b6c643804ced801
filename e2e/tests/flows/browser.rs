//! The code flow in a real browser (headless Chromium through chromedriver):
//! what an HTTP client does not enforce, such as the consent page's CSP
//! `form-action` on the 303 to a client on another origin.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test
//! says it is skipped, unless `CI=true`, where it fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::browser::query_param;
use e2e::chromium::{self, Chromium};
use e2e::oauth::{Pkce, random_token};
use e2e::{Browser, ClientSpec, StackOptions};
use fantoccini::Locator;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

use crate::support::*;

/// How long the browser may take from Allow to the client's callback.
const CALLBACK_DEADLINE: Duration = Duration::from_secs(20);
/// How long a page element may take to appear.
const ELEMENT_DEADLINE: Duration = Duration::from_secs(20);

/// A client's callback on its own loopback port (another origin than the
/// authorization server): answers `200 callback ok` to anything and keeps
/// the request lines. Stops on drop.
struct Callback {
    url: Url,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Callback {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = seen.clone();
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
                    if let Some(line) = head.lines().next() {
                        seen.lock().unwrap().push(line.to_owned());
                    }
                    let body = "callback ok";
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            url: Url::parse(&format!("http://{addr}/callback")).unwrap(),
            requests,
            task,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The element matching `css`, waiting for it; the failure shows the page.
async fn wait_for(browser: &Chromium, css: &str) -> fantoccini::elements::Element {
    match browser
        .client
        .wait()
        .at_most(ELEMENT_DEADLINE)
        .for_element(Locator::Css(css))
        .await
    {
        Ok(element) => element,
        Err(e) => {
            let url = browser.url().await;
            let source = browser.client.source().await.unwrap_or_default();
            panic!("no {css} within {ELEMENT_DEADLINE:?} ({e}) on {url:?}:\n{source}");
        }
    }
}

/// The sources of directive `name` in a CSP.
fn csp_sources<'a>(csp: &'a str, name: &str) -> Option<Vec<&'a str>> {
    csp.split(';').map(str::trim).find_map(|directive| {
        let mut words = directive.split_ascii_whitespace();
        (words.next() == Some(name)).then(|| words.collect())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_completes_flow_to_client_on_another_origin() {
    let test = "browser_completes_flow_to_client_on_another_origin";
    if let Some(missing) = chromium::missing() {
        assert!(
            !chromium::required(),
            "{test}: CI=true but {missing}: install Debian's chromium and chromium-driver"
        );
        migrations::test_support::skipped(test, "chromium/chromedriver not installed");
        return;
    }

    let callback = Callback::start().await;
    let redirect = callback.url.as_str();
    let stack = start(
        &Backend::Sqlite,
        StackOptions::default().without_resource_api(),
    )
    .await;
    let client = stack
        .create_client(&ClientSpec::confidential("browser app", redirect))
        .await
        .unwrap();
    let user = new_user(&stack).await;
    let pkce = Pkce::new();
    let state = random_token();
    let authorize_url = stack
        .authorize_url(&[
            ("response_type", "code"),
            ("client_id", &client.id),
            ("redirect_uri", redirect),
            ("scope", SCOPE),
            ("state", &state),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ])
        .unwrap();

    let browser = Chromium::start()
        .await
        .unwrap_or_else(|e| panic!("starting Chromium: {e:#}"));
    let c = &browser.client;
    c.goto(authorize_url.as_str()).await.unwrap();

    // The login page.
    let email = wait_for(&browser, "form[action='/login'] input[name='email']").await;
    email.send_keys(&user.email).await.unwrap();
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

    // The consent page: Allow.
    let allow = wait_for(
        &browser,
        "form[action='/consent'] button[name='decision'][value='allow']",
    )
    .await;
    allow.click().await.unwrap();

    // The 303 must take the browser to the client, on another origin.
    let landed = browser
        .wait_for_url("the client's callback", CALLBACK_DEADLINE, |url| {
            url.origin() == callback.url.origin() && url.path() == callback.url.path()
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}\n(callback requests: {:?}; a consent page whose CSP form-action \
                 leaves out the client's origin stops the redirect here)",
                callback.requests()
            )
        });
    assert_eq!(
        query_param(&landed, "state").as_deref(),
        Some(state.as_str()),
        "state on {landed}"
    );
    assert_eq!(
        query_param(&landed, "iss").as_deref(),
        Some(stack.issuer.as_str()),
        "iss on {landed}"
    );
    assert_eq!(query_param(&landed, "error"), None, "error on {landed}");
    let code = query_param(&landed, "code").unwrap_or_else(|| panic!("no code on {landed}"));
    let body = c
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.trim(), "callback ok", "callback page on {landed}");
    let requests = callback.requests();
    assert!(
        requests
            .iter()
            .any(|line| line.starts_with("GET /callback?") && line.contains("code=")),
        "the callback server saw no GET /callback with a code: {requests:?}"
    );
    browser.quit().await.unwrap();

    // The code works.
    let resp = stack
        .token(
            client.basic(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await
        .unwrap();
    let tokens = assert_tokens(&resp);
    assert_eq!(
        scope_set(tokens.scope.as_deref().unwrap_or(SCOPE)),
        scope_set(SCOPE),
        "granted scope"
    );

    // What let it through: the consent page's form-action is exactly this
    // server and the client's origin.
    let http = Browser::new().unwrap();
    let pkce = Pkce::new();
    let url = stack
        .authorize_url(&[
            ("response_type", "code"),
            ("client_id", &client.id),
            ("redirect_uri", redirect),
            ("scope", SCOPE),
            ("state", &random_token()),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ])
        .unwrap();
    let consent = http
        .authorize(&url, &user.email, &user.password)
        .await
        .unwrap();
    assert_eq!(consent.status, StatusCode::OK, "consent page {consent}");
    let csp = consent
        .header("content-security-policy")
        .unwrap_or_default();
    let origin = callback.url.origin().ascii_serialization();
    assert_eq!(
        csp_sources(csp, "form-action"),
        Some(vec!["'self'", origin.as_str()]),
        "consent page CSP {csp:?}"
    );
    assert_eq!(
        csp_sources(csp, "frame-ancestors"),
        Some(vec!["'none'"]),
        "consent page CSP {csp:?}"
    );
}
