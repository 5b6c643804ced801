//! Abuse resistance through real HTTP on the in-process store: rate limits
//! with their headers, lockout by IP and by account, no enumeration, the
//! client address behind proxies, bounded password hashing, and no row for
//! an anonymous page view. (Several instances on Redis: e2e `abuse.rs`.)

use auth_server::config::Settings;
use migrations::sea_orm::{EntityTrait, PaginatorTrait};
use reqwest::Response;

use crate::helpers::{
    AppOptions, Backend, Browser, PASSWORD, TestApp, hidden, spawn_app, spawn_app_tuned,
    token_with_roles,
};

/// Where the limits live in a test.
#[derive(Debug, Clone, Copy)]
enum Store {
    InProcess,
    /// `TEST_REDIS_URL`, with keys under a prefix of the test's own.
    Redis,
}

/// `stores!(body => in_process, on_redis)`: a test per store; the Redis one
/// is ignored unless `TEST_REDIS_URL` was set when the tests were built.
macro_rules! stores {
    ($body:ident => $local:ident, $redis:ident) => {
        #[tokio::test]
        async fn $local() {
            $body(Store::InProcess).await;
        }

        test_gates::needs! { [redis]
            #[tokio::test]
            async fn $redis() {
                $body(Store::Redis).await;
            }
        }
    };
}

/// The app with `tune` on `store`; fails the test when the store is Redis
/// and `TEST_REDIS_URL` is unset (its variants are ignored then).
async fn app_with_store(store: Store, tune: fn(&mut Settings)) -> Option<TestApp> {
    let redis = match store {
        Store::InProcess => None,
        Store::Redis => Some(migrations::test_support::require_redis_url(
            "an auth-server Redis variant",
        )),
    };
    let options = AppOptions {
        tune: Some(tune),
        ..AppOptions::default()
    };
    spawn_app_tuned(Backend::Sqlite, options, move |s| {
        if let Some(url) = redis {
            s.redis_url = Some(url);
            // Keys of this test only, on a Redis other tests share.
            s.redis_key_prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        }
    })
    .await
}

async fn app_with(tune: fn(&mut Settings)) -> TestApp {
    spawn_app(
        Backend::Sqlite,
        AppOptions {
            tune: Some(tune),
            ..AppOptions::default()
        },
    )
    .await
    .unwrap()
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// One sign-in attempt from `forwarded_for` (an `X-Forwarded-For` value),
/// with a fresh form.
async fn sign_in(
    app: &TestApp,
    browser: &Browser,
    forwarded_for: Option<&str>,
    email: &str,
    password: &str,
) -> Response {
    let mut get = browser.http.get(app.url("/login"));
    if let Some(ip) = forwarded_for {
        get = get.header("x-forwarded-for", ip);
    }
    let html = get.send().await.unwrap().text().await.unwrap();
    let csrf = hidden(&html, "csrf_token").unwrap_or_default();
    let mut post = browser.http.post(app.url("/login")).form(&[
        ("csrf_token", csrf.as_str()),
        ("next", "/"),
        ("email", email),
        ("password", password),
    ]);
    if let Some(ip) = forwarded_for {
        post = post.header("x-forwarded-for", ip);
    }
    post.send().await.unwrap()
}

async fn login_sessions(app: &TestApp) -> u64 {
    auth_server::store::entities::login_sessions::Entity::find()
        .count(&app.db.db)
        .await
        .unwrap()
}

stores!(login_limit_refuses_past_its_rate_with_headers_before_any_work => login_limit_refuses_past_its_rate_with_headers_before_any_work_in_process, login_limit_refuses_past_its_rate_with_headers_before_any_work_on_redis);
async fn login_limit_refuses_past_its_rate_with_headers_before_any_work(store: Store) {
    let Some(app) = app_with_store(store, |s| s.rate_limit_login = "3/minute".into()).await else {
        return;
    };
    let browser = Browser::new();
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let answer = sign_in(&app, &browser, None, "alice@example.com", "wrong").await;
        assert_eq!(answer.status().as_u16(), 401);
        assert_eq!(header(&answer, "ratelimit-limit").as_deref(), Some("3"));
        remaining.push(header(&answer, "ratelimit-remaining").unwrap());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    // The fourth is refused, even with the right password, and even without
    // a form (the limit runs before the body is read).
    let refused = sign_in(&app, &browser, None, "alice@example.com", PASSWORD).await;
    assert_eq!(refused.status().as_u16(), 429);
    let retry: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        header(&refused, "ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert!(
        header(&refused, "ratelimit-policy")
            .unwrap()
            .starts_with("3;w=60")
    );
    let bare = browser.http.post(app.url("/login")).send().await.unwrap();
    assert_eq!(bare.status().as_u16(), 429);
    assert_eq!(app.audit_count("login.failed").await, 3);
    assert_eq!(app.audit_count("login.succeeded").await, 0);
    app.stop().await;
}

stores!(spoofed_forwarded_for_from_untrusted_peer_does_not_change_the_bucket => spoofed_forwarded_for_from_untrusted_peer_does_not_change_the_bucket_in_process, spoofed_forwarded_for_from_untrusted_peer_does_not_change_the_bucket_on_redis);
async fn spoofed_forwarded_for_from_untrusted_peer_does_not_change_the_bucket(store: Store) {
    let Some(app) = app_with_store(store, |s| s.rate_limit_login = "2/minute".into()).await else {
        return;
    };
    let browser = Browser::new();
    for ip in ["198.51.100.1", "198.51.100.2"] {
        let answer = sign_in(&app, &browser, Some(ip), "bob@example.com", "x").await;
        assert_eq!(answer.status().as_u16(), 401);
    }
    let third = sign_in(&app, &browser, Some("198.51.100.3"), "bob@example.com", "x").await;
    assert_eq!(
        third.status().as_u16(),
        429,
        "a new X-Forwarded-For is not a new client"
    );
    app.stop().await;
}

stores!(forwarded_for_from_trusted_proxy_gives_each_client_its_bucket => forwarded_for_from_trusted_proxy_gives_each_client_its_bucket_in_process, forwarded_for_from_trusted_proxy_gives_each_client_its_bucket_on_redis);
async fn forwarded_for_from_trusted_proxy_gives_each_client_its_bucket(store: Store) {
    let Some(app) = app_with_store(store, |s| {
        s.rate_limit_login = "2/minute".into();
        s.trusted_proxies = "127.0.0.1/32".into();
    })
    .await
    else {
        return;
    };
    let browser = Browser::new();
    for _ in 0..2 {
        let answer = sign_in(&app, &browser, Some("198.51.100.1"), "bob@example.com", "x").await;
        assert_eq!(answer.status().as_u16(), 401);
    }
    let same = sign_in(&app, &browser, Some("198.51.100.1"), "bob@example.com", "x").await;
    assert_eq!(same.status().as_u16(), 429);
    // The client wrote its own "10.0.0.1, " in front: only the hop the
    // trusted proxy appended counts.
    let other = sign_in(
        &app,
        &browser,
        Some("10.0.0.1, 198.51.100.2"),
        "bob@example.com",
        "x",
    )
    .await;
    assert_eq!(
        other.status().as_u16(),
        401,
        "another client behind the proxy"
    );
    let spoof = sign_in(
        &app,
        &browser,
        Some("198.51.100.9, 198.51.100.1"),
        "bob@example.com",
        "x",
    )
    .await;
    assert_eq!(
        spoof.status().as_u16(),
        429,
        "the left-most hop is the client's word"
    );
    app.stop().await;
}

fn lockout_settings(s: &mut Settings) {
    s.lockout_threshold = 3;
    s.trusted_proxies = "127.0.0.1/32".into();
}

stores!(many_addresses_failing_one_account_lock_it_even_for_the_right_password => many_addresses_failing_one_account_lock_it_even_for_the_right_password_in_process, many_addresses_failing_one_account_lock_it_even_for_the_right_password_on_redis);
async fn many_addresses_failing_one_account_lock_it_even_for_the_right_password(store: Store) {
    let Some(app) = app_with_store(store, lockout_settings).await else {
        return;
    };
    let browser = Browser::new();
    for i in 1..=3 {
        let ip = format!("198.51.100.{i}");
        let answer = sign_in(&app, &browser, Some(&ip), "alice@example.com", "wrong").await;
        assert_eq!(answer.status().as_u16(), 401);
    }
    let locked = sign_in(
        &app,
        &browser,
        Some("203.0.113.50"),
        "Alice@Example.com",
        PASSWORD,
    )
    .await;
    assert_eq!(
        locked.status().as_u16(),
        429,
        "the right password does not get through"
    );
    let retry: u64 = header(&locked, "retry-after").unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry), "{retry}");
    assert!(
        locked
            .text()
            .await
            .unwrap()
            .contains("Too many failed sign-in attempts")
    );
    assert_eq!(
        login_sessions(&app).await,
        0,
        "no session for a locked account"
    );
    assert_eq!(app.audit_count("login.locked").await, 1);
    // Another account from the same addresses is not locked.
    let other = sign_in(&app, &browser, Some("198.51.100.1"), "bob@example.com", "x").await;
    assert_eq!(other.status().as_u16(), 401);
    // An admin lifts it; the right password works again.
    let cleared = auth_server::store::lockouts::clear(
        &app.db.db,
        auth_server::store::lockouts::Kind::Account,
        "alice@example.com",
    )
    .await
    .unwrap();
    assert!(cleared);
    let signed_in = sign_in(
        &app,
        &browser,
        Some("203.0.113.50"),
        "alice@example.com",
        PASSWORD,
    )
    .await;
    assert_eq!(signed_in.status().as_u16(), 303);
    app.stop().await;
}

stores!(one_address_failing_many_accounts_is_locked_for_every_account => one_address_failing_many_accounts_is_locked_for_every_account_in_process, one_address_failing_many_accounts_is_locked_for_every_account_on_redis);
async fn one_address_failing_many_accounts_is_locked_for_every_account(store: Store) {
    let Some(app) = app_with_store(store, lockout_settings).await else {
        return;
    };
    let browser = Browser::new();
    let attacker = "198.51.100.66";
    for victim in ["a@example.com", "b@example.com", "c@example.com"] {
        let answer = sign_in(&app, &browser, Some(attacker), victim, "guess").await;
        assert_eq!(answer.status().as_u16(), 401);
    }
    let locked = sign_in(
        &app,
        &browser,
        Some(attacker),
        "alice@example.com",
        PASSWORD,
    )
    .await;
    assert_eq!(locked.status().as_u16(), 429);
    // Alice from her own address is not affected.
    let alice = sign_in(
        &app,
        &browser,
        Some("203.0.113.7"),
        "alice@example.com",
        PASSWORD,
    )
    .await;
    assert_eq!(alice.status().as_u16(), 303);
    let rows = auth_server::store::lockouts::list(&app.db.db, app.state.now())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].kind.as_str(), rows[0].subject.as_str()),
        ("ip", attacker)
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_email_and_wrong_password_answer_alike() {
    let app = app_with(|_| {}).await;
    let browser = Browser::new();
    // The same text for both, but for the fresh CSRF token and the echoed
    // email.
    let normalised = |html: String, email: &str| {
        let token = hidden(&html, "csrf_token").unwrap();
        html.replace(&token, "TOKEN").replace(email, "EMAIL")
    };
    let wrong = sign_in(&app, &browser, None, "alice@example.com", "wrong password").await;
    let unknown = sign_in(&app, &browser, None, "nobody@example.com", "wrong password").await;
    assert_eq!(wrong.status(), unknown.status());
    assert_eq!(wrong.status().as_u16(), 401);
    let wrong = normalised(wrong.text().await.unwrap(), "alice@example.com");
    let unknown = normalised(unknown.text().await.unwrap(), "nobody@example.com");
    assert_eq!(wrong, unknown);
    app.stop().await;
}

#[tokio::test]
async fn anonymous_page_views_write_no_row() {
    let app = app_with(|_| {}).await;
    let before = login_sessions(&app).await;
    let client = reqwest::Client::new();
    for _ in 0..1000 {
        let page = client.get(app.url("/login")).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 200);
    }
    assert_eq!(login_sessions(&app).await, before, "GET /login wrote a row");
    // A session row appears once someone signs in.
    Browser::new().sign_in(&app).await;
    assert_eq!(login_sessions(&app).await, before + 1);
    app.stop().await;
}

#[tokio::test]
async fn login_form_refuses_a_forged_or_foreign_csrf_token() {
    let app = app_with(|_| {}).await;
    let victim = Browser::new();
    let attacker = Browser::new();
    // The attacker's own valid token, posted from the victim's browser
    // (which has a different cookie): refused.
    let html = attacker
        .http
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let foreign = hidden(&html, "csrf_token").unwrap();
    victim.http.get(app.url("/login")).send().await.unwrap();
    for token in [foreign.as_str(), "forged.AAAA", ""] {
        let answer = victim
            .http
            .post(app.url("/login"))
            .form(&[
                ("csrf_token", token),
                ("next", "/"),
                ("email", "alice@example.com"),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 403, "{token}");
    }
    assert_eq!(login_sessions(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn password_hashing_past_its_queue_answers_503_never_500() {
    let app = app_with(|s| {
        s.password_hash_concurrency = 1;
        s.password_hash_queue = 0;
    })
    .await;
    let mut attempts = Vec::new();
    for _ in 0..8 {
        let app_url = app.url("/login");
        let browser = Browser::new();
        let html = browser
            .http
            .get(&app_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = hidden(&html, "csrf_token").unwrap();
        attempts.push(async move {
            let answer = browser
                .http
                .post(&app_url)
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("next", "/"),
                    ("email", "alice@example.com"),
                    ("password", "wrong password"),
                ])
                .send()
                .await
                .unwrap();
            (answer.status().as_u16(), header(&answer, "retry-after"))
        });
    }
    let answers = futures::future::join_all(attempts).await;
    let busy = answers.iter().filter(|(s, _)| *s == 503).count();
    assert!(busy >= 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 401 || *s == 503),
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s == 503)
            .all(|(_, retry)| retry.is_some())
    );
    assert_eq!(app.state.password_gate.in_use(), 0);
    app.stop().await;
}

stores!(token_limit_is_per_client_and_refuses_before_the_grant => token_limit_is_per_client_and_refuses_before_the_grant_in_process, token_limit_is_per_client_and_refuses_before_the_grant_on_redis);
async fn token_limit_is_per_client_and_refuses_before_the_grant(store: Store) {
    let Some(app) = app_with_store(store, |s| s.rate_limit_token = "3/minute".into()).await else {
        return;
    };
    let client = app.client(false, None).await;
    let other = app.client(false, None).await;
    let exchange = |client: &crate::helpers::TestClient| {
        let mut form = client.form();
        form.extend([
            ("grant_type", "authorization_code".to_owned()),
            ("code", "not-a-code".to_owned()),
            ("code_verifier", "v".repeat(43)),
            ("redirect_uri", crate::helpers::REDIRECT.to_owned()),
        ]);
        app.http.post(app.url("/token")).form(&form).send()
    };
    for left in ["2", "1", "0"] {
        let answer = exchange(&client).await.unwrap();
        assert_eq!(answer.status().as_u16(), 400);
        assert_eq!(
            header(&answer, "ratelimit-remaining").as_deref(),
            Some(left)
        );
    }
    let refused = exchange(&client).await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert!(header(&refused, "retry-after").is_some());
    assert_eq!(
        header(&refused, "cache-control").as_deref(),
        Some("no-store")
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(exchange(&other).await.unwrap().status().as_u16(), 400);
    app.stop().await;
}

stores!(failed_client_authentications_block_the_address_even_for_good_credentials => failed_client_authentications_block_the_address_even_for_good_credentials_in_process, failed_client_authentications_block_the_address_even_for_good_credentials_on_redis);
async fn failed_client_authentications_block_the_address_even_for_good_credentials(store: Store) {
    let Some(app) =
        app_with_store(store, |s| s.rate_limit_client_failures = "3/minute".into()).await
    else {
        return;
    };
    let client = app.client(false, None).await;
    let post = |secret: &str| {
        app.http
            .post(app.url("/token"))
            .form(&[
                ("client_id", client.id.as_str()),
                ("client_secret", secret),
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
            ])
            .send()
    };
    for _ in 0..3 {
        assert_eq!(post("wrong").await.unwrap().status().as_u16(), 401);
    }
    let secret = client.secret.clone().unwrap();
    let refused = post(&secret).await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    // /revoke and /introspect share the counter.
    let revoke = app
        .http
        .post(app.url("/revoke"))
        .form(&[
            ("client_id", client.id.as_str()),
            ("client_secret", secret.as_str()),
            ("token", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status().as_u16(), 429);
    app.stop().await;
}

stores!(readiness_reports_the_rate_limit_store => readiness_reports_the_rate_limit_store_in_process, readiness_reports_the_rate_limit_store_on_redis);
async fn readiness_reports_the_rate_limit_store(store: Store) {
    let Some(app) = app_with_store(store, |_| {}).await else {
        return;
    };
    let body: serde_json::Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected = match store {
        Store::InProcess => "local",
        Store::Redis => "redis",
    };
    assert_eq!(body["checks"]["rate_limit_store"], expected);
    app.stop().await;
}

stores!(password_reset_requests_are_limited_per_address_and_per_email => password_reset_requests_are_limited_per_address_and_per_email_in_process, password_reset_requests_are_limited_per_address_and_per_email_on_redis);
async fn password_reset_requests_are_limited_per_address_and_per_email(store: Store) {
    let Some(app) = app_with_store(store, |s| {
        s.rate_limit_password_reset = "2/hour".into();
        s.trusted_proxies = "127.0.0.1/32".into();
    })
    .await
    else {
        return;
    };
    let request = |ip: &'static str, email: &'static str| {
        app.http
            .post(app.url("/password-reset"))
            .header("x-forwarded-for", ip)
            .json(&serde_json::json!({ "email": email }))
            .send()
    };
    // Per email, from several addresses; the same for an address with an
    // account and one without (a refusal reveals nothing).
    for email in ["alice@example.com", "nobody@example.com"] {
        assert_eq!(
            request("198.51.100.1", email)
                .await
                .unwrap()
                .status()
                .as_u16(),
            202
        );
        assert_eq!(
            request("198.51.100.2", email)
                .await
                .unwrap()
                .status()
                .as_u16(),
            202
        );
        let refused = request("198.51.100.3", email).await.unwrap();
        assert_eq!(refused.status().as_u16(), 429, "{email}");
        assert!(header(&refused, "retry-after").is_some());
        assert_eq!(
            header(&refused, "content-type").as_deref(),
            Some("application/problem+json")
        );
    }
    // Per address, over several emails: 198.51.100.1 has spent its two.
    let refused = request("198.51.100.1", "carol@example.com").await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(
        request("198.51.100.9", "carol@example.com")
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    app.stop().await;
}

#[tokio::test]
async fn admin_api_lists_and_lifts_lockouts_for_admins_only() {
    let app = app_with(lockout_settings).await;
    let browser = Browser::new();
    for i in 1..=3 {
        let ip = format!("198.51.100.{i}");
        sign_in(&app, &browser, Some(&ip), "alice@example.com", "wrong").await;
    }
    let url = app.url("/api/v2/admin/lockouts");
    let lift = app.url("/api/v2/admin/lockouts/account/alice@example.com");
    // No token, a forged one, and a user without the role.
    let forged = {
        let other =
            shared::jwt::Signer::from_pem(shared::test_util::shared_private_key_pem()).unwrap();
        let mut claims: shared::jwt::AccessTokenClaims = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                token_with_roles(&app, &["admin"])
                    .split('.')
                    .nth(1)
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        claims.jti = "forged".into();
        other.sign(&claims).unwrap()
    };
    let user = token_with_roles(&app, &[]);
    let admin = token_with_roles(&app, &["admin"]);
    let none = app.http.get(&url).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    for (token, status) in [(&forged, 401), (&user, 403)] {
        let answer = app.http.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), status);
        assert_eq!(
            header(&answer, "content-type").as_deref(),
            Some("application/problem+json")
        );
        let answer = app
            .http
            .delete(&lift)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), status);
    }
    let listed: serde_json::Value = app
        .http
        .get(&url)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["lockouts"][0]["kind"], "account");
    assert_eq!(listed["lockouts"][0]["subject"], "alice@example.com");
    let lifted = app
        .http
        .delete(&lift)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status().as_u16(), 204);
    let again = app
        .http
        .delete(&lift)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 404);
    assert_eq!(app.audit_count("login.lock_cleared").await, 1);
    let signed_in = sign_in(
        &app,
        &browser,
        Some("203.0.113.9"),
        "alice@example.com",
        PASSWORD,
    )
    .await;
    assert_eq!(signed_in.status().as_u16(), 303);
    app.stop().await;
}

/// The claims of a compact JWS, unverified (the test's own server signed it).
fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn tier_claim_is_premium_when_the_user_or_the_client_is() {
    use migrations::sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
    let app = app_with(|_| {}).await;
    let standard = app.client(false, None).await;
    let tokens = app.tokens_for(&standard).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(claims_of(access)["tier"], "standard");

    // A premium client: its users' tokens are premium.
    let premium = app.client(false, None).await;
    let row = auth_server::store::entities::clients::Entity::find_by_id(premium.id.clone())
        .one(&app.db.db)
        .await
        .unwrap()
        .unwrap();
    let mut row = row.into_active_model();
    row.tier = Set("premium".into());
    row.update(&app.db.db).await.unwrap();
    let tokens = app.tokens_for(&premium).await;
    assert_eq!(
        claims_of(tokens["access_token"].as_str().unwrap())["tier"],
        "premium"
    );

    // A premium user, through a standard client; and on refresh too.
    let user = auth_server::store::entities::users::Entity::find_by_id(app.user_id.clone())
        .one(&app.db.db)
        .await
        .unwrap()
        .unwrap();
    let mut user = user.into_active_model();
    user.tier = Set("premium".into());
    user.update(&app.db.db).await.unwrap();
    let (status, body) = app
        .refresh(
            &standard,
            app.tokens_for(&standard).await["refresh_token"]
                .as_str()
                .unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["tier"],
        "premium"
    );
    app.stop().await;
}

stores!(registration_limit_refuses_the_eleventh_from_one_address_before_reading_it => registration_limit_refuses_the_eleventh_from_one_address_before_reading_it_in_process, registration_limit_refuses_the_eleventh_from_one_address_before_reading_it_on_redis);
async fn registration_limit_refuses_the_eleventh_from_one_address_before_reading_it(store: Store) {
    let Some(app) = app_with_store(store, |s| {
        s.registration = auth_server::config::Registration::Open;
        // The default, 10 per hour (the harness lifts it for other tests).
        s.rate_limit_registration = Settings::default().rate_limit_registration;
    })
    .await
    else {
        return;
    };
    let url = app.url(shared::paths::REGISTER_PATH);
    for i in 0..10 {
        let answer = app
            .http
            .post(&url)
            .json(&serde_json::json!({
                "email": format!("user{i}@example.com"),
                "name": "User",
                "password": "violet submarine pancake orbit",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 202);
        assert_eq!(header(&answer, "ratelimit-limit").as_deref(), Some("10"));
        assert_eq!(
            header(&answer, "ratelimit-remaining"),
            Some((9 - i).to_string())
        );
    }
    // The eleventh is refused before its body is read: even one that is
    // not JSON gets the 429, not a 400.
    let refused = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    let retry: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(
        header(&refused, "ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert!(
        header(&refused, "ratelimit-policy")
            .unwrap()
            .starts_with("10;w=3600"),
        "{:?}",
        header(&refused, "ratelimit-policy")
    );
    assert_eq!(
        header(&refused, "content-type").as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(
        header(&refused, "cache-control").as_deref(),
        Some("no-store")
    );
    let users = auth_server::store::entities::users::Entity::find()
        .count(&app.db.db)
        .await
        .unwrap();
    assert_eq!(users, 11, "alice and the ten");
    app.stop().await;
}

stores!(page_views_are_limited_per_address => page_views_are_limited_per_address_in_process, page_views_are_limited_per_address_on_redis);
async fn page_views_are_limited_per_address(store: Store) {
    let Some(app) = app_with_store(store, |s| {
        s.rate_limit_pages = "3/minute".into();
        s.trusted_proxies = "127.0.0.1/32".into();
    })
    .await
    else {
        return;
    };
    let view = |path: &'static str, ip: &'static str| {
        app.http
            .get(app.url(path))
            .header("x-forwarded-for", ip)
            .send()
    };
    // One bucket for the sign-in form and the authorization endpoint.
    for path in ["/login", "/authorize", "/login"] {
        let page = view(path, "198.51.100.20").await.unwrap();
        assert_ne!(page.status().as_u16(), 429, "{path}");
        assert_eq!(header(&page, "ratelimit-limit").as_deref(), Some("3"));
    }
    let refused = view("/authorize", "198.51.100.20").await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert!(header(&refused, "retry-after").is_some());
    assert!(
        header(&refused, "content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );
    // Another address is not affected.
    assert_eq!(
        view("/login", "198.51.100.21")
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn failed_sign_ins_are_audited_with_account_address_and_user_agent() {
    use migrations::sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
    let app = app_with(|s| s.trusted_proxies = "127.0.0.1/32".into()).await;
    let browser = Browser::new();
    for email in ["alice@example.com", "Nobody@Example.COM"] {
        let html = browser
            .http
            .get(app.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = hidden(&html, "csrf_token").unwrap();
        let answer = browser
            .http
            .post(app.url("/login"))
            .header("x-forwarded-for", "198.51.100.77")
            .header("user-agent", "attack-tool\t/1.0")
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("next", "/"),
                ("email", email),
                ("password", "a wrong password"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 401);
    }
    let rows = auth_server::store::entities::audit_events::Entity::find()
        .filter(auth_server::store::entities::audit_events::Column::Kind.eq("login.failed"))
        .order_by_asc(auth_server::store::entities::audit_events::Column::At)
        .all(&app.db.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let detail = |i: usize| -> serde_json::Value { serde_json::from_str(&rows[i].detail).unwrap() };
    let targeted = rows.iter().position(|r| r.user_id.is_some()).unwrap();
    let unknown = 1 - targeted;
    assert_eq!(
        rows[targeted].user_id.as_deref(),
        Some(app.user_id.as_str())
    );
    assert_eq!(detail(targeted)["email"], serde_json::Value::Null);
    assert_eq!(detail(unknown)["email"], "nobody@example.com", "normalised");
    for i in [0, 1] {
        assert_eq!(detail(i)["client_ip"], "198.51.100.77");
        assert_eq!(detail(i)["user_agent"], "attack-tool/1.0");
        assert!(!rows[i].detail.contains("a wrong password"));
    }
    app.stop().await;
}
