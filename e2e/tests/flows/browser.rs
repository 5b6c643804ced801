//! The code flow in a real browser (headless Chromium through chromedriver):
//! what an HTTP client does not enforce, such as the consent page's CSP
//! `form-action` on the 303 to a client on another origin, and the way
//! around it for a redirect URI no CSP source can name (an IPv6 loopback
//! URI of a native app): the consent POST's own page that moves on by
//! itself.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them at build
//! time the tests are marked ignored, unless `CI=true`, where they run and
//! fail. The IPv6 test is also ignored, even with `CI=true`, on a machine
//! without an IPv6 loopback (`test_gates`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::browser::query_param;
use e2e::chromium::{self, Chromium};
use e2e::oauth::{ClientAuth, Pkce, random_token};
use e2e::{Browser, ClientSpec, CreatedClient, CreatedUser, StackOptions};
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
    /// Listens on `bind` (`127.0.0.1:0`, `[::1]:0`); the error is the bind's.
    async fn start(bind: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
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
        // `SocketAddr`'s display brackets an IPv6 address: `[::1]:PORT`.
        let url = Url::parse(&format!("http://{addr}/callback"))
            .map_err(|e| std::io::Error::other(format!("callback URL for {addr}: {e}")))?;
        Ok(Self {
            url,
            requests,
            task,
        })
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

/// Fails `test` when Chromium or chromedriver is missing. The browser tests
/// are marked ignored when they were missing at build time (unless
/// `CI=true`, where they must run: `test_gates`), so this fails a test that
/// runs without them anyway.
pub(crate) fn require_chromium(test: &str) {
    if let Some(missing) = chromium::missing() {
        migrations::test_support::missing(
            test,
            &format!("{missing}: install Debian's chromium and chromium-driver"),
        );
    }
}

/// The element matching `css`, waiting for it; the failure shows the page.
pub(crate) async fn wait_for(browser: &Chromium, css: &str) -> fantoccini::elements::Element {
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

/// A stack (no resource API) with a client registered with the callback's
/// URI as its only redirect URI, and a user.
struct Flow<'a> {
    stack: TestStack,
    client: CreatedClient,
    user: CreatedUser,
    callback: &'a Callback,
}

impl<'a> Flow<'a> {
    /// `spec` made from the callback's URI.
    async fn start(callback: &'a Callback, spec: impl FnOnce(&str) -> ClientSpec) -> Self {
        let stack = start(
            &Backend::Sqlite,
            StackOptions::default().without_resource_api(),
        )
        .await;
        let client = stack
            .create_client(&spec(callback.url.as_str()))
            .await
            .unwrap();
        let user = new_user(&stack).await;
        Self {
            stack,
            client,
            user,
            callback,
        }
    }

    fn redirect(&self) -> &str {
        self.callback.url.as_str()
    }

    /// A PKCE S256 code request to the callback.
    fn authorize_url(&self, state: &str, pkce: &Pkce) -> Url {
        let params = code_params(&self.client.id, SCOPE, state, &pkce.challenge);
        let params = with_param(params, "redirect_uri", Some(self.redirect()));
        self.stack.authorize_url(&params).unwrap()
    }

    /// In Chromium: authorize, log in, Allow, then wait until the browser
    /// is on the callback and check what it brought (`state`, `iss`, no
    /// `error`), the callback's page, and that the callback server saw the
    /// request. `stuck`: what likely stopped the browser if it never gets
    /// there. Returns the code with its verifier.
    async fn allow_in_chromium(&self, stuck: &str) -> Grant {
        let callback = self.callback;
        let pkce = Pkce::new();
        let state = random_token();
        let authorize_url = self.authorize_url(&state, &pkce);

        let browser = Chromium::start()
            .await
            .unwrap_or_else(|e| panic!("starting Chromium: {e:#}"));
        let c = &browser.client;
        c.goto(authorize_url.as_str()).await.unwrap();

        // The login page.
        let email = wait_for(&browser, "form[action='/login'] input[name='email']").await;
        email.send_keys(&self.user.email).await.unwrap();
        c.find(Locator::Css("form[action='/login'] input[name='password']"))
            .await
            .unwrap()
            .send_keys(&self.user.password)
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

        // The browser must get to the client, on another origin.
        let landed = browser
            .wait_for_url("the client's callback", CALLBACK_DEADLINE, |url| {
                url.origin() == callback.url.origin() && url.path() == callback.url.path()
            })
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{e:#}\n(callback requests: {:?}; {stuck})",
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
            Some(self.stack.issuer.as_str()),
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
        Grant { code, pkce }
    }

    /// The code works: tokens for the requested scope, the client
    /// authenticating with `auth`.
    async fn redeem(&self, auth: ClientAuth<'_>, grant: &Grant) {
        let resp = self
            .stack
            .token(
                auth,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &grant.code),
                    ("redirect_uri", self.redirect()),
                    ("code_verifier", &grant.pkce.verifier),
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
    }

    /// The CSP of the consent page for a new request (fetched over HTTP,
    /// with its own session), checked for `frame-ancestors 'none'`.
    async fn consent_csp(&self) -> String {
        let http = Browser::new().unwrap();
        let url = self.authorize_url(&random_token(), &Pkce::new());
        let consent = http
            .authorize(&url, &self.user.email, &self.user.password)
            .await
            .unwrap();
        assert_eq!(consent.status, StatusCode::OK, "consent page {consent}");
        let csp = consent
            .header("content-security-policy")
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            csp_sources(&csp, "frame-ancestors"),
            Some(vec!["'none'"]),
            "consent page CSP {csp:?}"
        );
        csp
    }
}

test_gates::needs! { [chromium]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn browser_completes_flow_to_client_on_another_origin() {
        let test = "browser_completes_flow_to_client_on_another_origin";
        require_chromium(test);
        let callback = Callback::start("127.0.0.1:0").await.unwrap();
        let flow = Flow::start(&callback, |redirect| {
            ClientSpec::confidential("browser app", redirect)
        })
        .await;

        // The consent POST's 303 takes the browser to the client.
        let grant = flow
            .allow_in_chromium(
                "a consent page whose CSP form-action leaves out the client's origin \
                 stops the redirect here",
            )
            .await;
        flow.redeem(flow.client.basic(), &grant).await;

        // What let it through: the consent page's form-action is exactly this
        // server and the client's origin.
        let csp = flow.consent_csp().await;
        let origin = callback.url.origin().ascii_serialization();
        assert_eq!(
            csp_sources(&csp, "form-action"),
            Some(vec!["'self'", origin.as_str()]),
            "consent page CSP {csp:?}"
        );
    }
}

test_gates::needs! { [chromium,ipv6]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn browser_completes_flow_to_native_client_on_ipv6_loopback() {
        let test = "browser_completes_flow_to_native_client_on_ipv6_loopback";
        require_chromium(test);
        // No IPv6 loopback is the machine's, not a missing install: ignored
        // even under CI=true (`ipv6` gate), and a failure when run anyway.
        let callback = match Callback::start("[::1]:0").await {
            Ok(callback) => callback,
            Err(e) => migrations::test_support::missing(
                test,
                &format!("no IPv6 loopback (binding [::1]:0 failed: {e})"),
            ),
        };
        assert_eq!(
            callback.url.host(),
            Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST)),
            "callback {}",
            callback.url
        );
        let flow = Flow::start(&callback, |redirect| {
            ClientSpec::public("native app", redirect)
        })
        .await;
        assert_eq!(
            flow.client.secret, None,
            "a public client got a secret: {}",
            flow.client.raw
        );

        // No CSP source names [::1]: the consent POST answers with its own page
        // that moves on to the client (meta refresh), which form-action does not
        // govern.
        let grant = flow
            .allow_in_chromium(
                "the consent page's form-action 'self' stops a 303 to [::1]; the consent \
                 POST must answer with its continue page instead",
            )
            .await;
        flow.redeem(
            ClientAuth::Public {
                id: &flow.client.id,
            },
            &grant,
        )
        .await;

        // Why that page is needed: the consent page keeps form-action 'self'.
        let csp = flow.consent_csp().await;
        assert_eq!(
            csp_sources(&csp, "form-action"),
            Some(vec!["'self'"]),
            "consent page CSP {csp:?}"
        );
    }
}
