//! The authorization endpoint's rules and the pages, in-process.

use serde_json::Value;

use crate::helpers::{
    AppOptions, Backend, Browser, REDIRECT, TestApp, authorize_params, hidden, location, spawn_app,
};

async fn app() -> TestApp {
    spawn_app(Backend::Sqlite, AppOptions::default())
        .await
        .unwrap()
}

/// A signed-in browser and its consent page for `client_id`.
async fn signed_in_consent(
    app: &TestApp,
    client_id: &str,
    redirect_uri: &str,
) -> (Browser, crate::helpers::ConsentPage) {
    let browser = Browser::new();
    browser.sign_in(app).await;
    let page = browser
        .consent_page(app, &authorize_params(client_id, redirect_uri))
        .await;
    (browser, page)
}

fn query(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn authorize_error_redirect_carries_error_description_and_iss() {
    let app = app().await;
    let client = app.client(false, None).await;
    let browser = Browser::new();
    browser.sign_in(&app).await;
    let mut params = authorize_params(&client.id, REDIRECT);
    params.retain(|(k, _)| !k.starts_with("code_challenge"));
    let response = browser.authorize(&app, &params).await;
    assert_eq!(response.status().as_u16(), 303);
    let to = location(&response).unwrap();
    assert!(to.starts_with(REDIRECT), "{to}");
    let pairs = query(&to);
    assert_eq!(param(&pairs, "error"), Some("invalid_request"));
    assert!(param(&pairs, "error_description").is_some_and(|d| d.contains("PKCE")));
    assert_eq!(param(&pairs, "state"), Some("st4te"));
    assert_eq!(param(&pairs, "iss"), Some(app.url("").as_str()));
    app.stop().await;
}

#[tokio::test]
async fn authorize_refuses_repeated_parameters() {
    let app = app().await;
    let client = app.client(false, None).await;
    let browser = Browser::new();
    browser.sign_in(&app).await;
    // A repeated scope: the client and redirect URI are clear, so the
    // client hears about it, without a consent page for its whole scope.
    let mut params = authorize_params(&client.id, REDIRECT);
    params.push(("scope", "notes:write"));
    let response = browser.authorize(&app, &params).await;
    assert_eq!(response.status().as_u16(), 303);
    let pairs = query(&location(&response).unwrap());
    assert_eq!(param(&pairs, "error"), Some("invalid_request"));
    assert!(param(&pairs, "code").is_none());
    // A repeated redirect_uri: no redirect at all, an error page.
    let mut params = authorize_params(&client.id, REDIRECT);
    params.push(("redirect_uri", "https://evil.example/cb"));
    let response = browser.authorize(&app, &params).await;
    assert_eq!(response.status().as_u16(), 400);
    assert!(location(&response).is_none());
    app.stop().await;
}

#[tokio::test]
async fn consent_approves_the_pending_request_once() {
    let app = app().await;
    let client = app.client(false, None).await;
    let (browser, page) = signed_in_consent(&app, &client.id, REDIRECT).await;
    let first = browser.decide(&app, &page, "allow").await;
    assert_eq!(first.status().as_u16(), 303);
    assert!(param(&query(&location(&first).unwrap()), "code").is_some());
    let replay = browser.decide(&app, &page, "allow").await;
    assert_eq!(replay.status().as_u16(), 403, "the form is spent");
    assert!(location(&replay).is_none());
    assert_eq!(app.audit_count("consent.granted").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn consent_refuses_a_pending_request_of_another_session() {
    let app = app().await;
    let client = app.client(false, None).await;
    let victim = Browser::new();
    victim.sign_in(&app).await;
    let victims_page = victim
        .consent_page(&app, &authorize_params(&client.id, REDIRECT))
        .await;
    let attacker = Browser::new();
    attacker.sign_in(&app).await;
    let own_page = attacker
        .consent_page(&app, &authorize_params(&client.id, REDIRECT))
        .await;
    // The attacker's valid session and CSRF token, the victim's request.
    let forged = crate::helpers::ConsentPage {
        csrf_token: own_page.csrf_token,
        handle: victims_page.handle.clone(),
        csp: String::new(),
    };
    let response = attacker.decide(&app, &forged, "allow").await;
    assert_eq!(response.status().as_u16(), 403);
    // The victim's own decision still works.
    let response = victim.decide(&app, &victims_page, "allow").await;
    assert_eq!(response.status().as_u16(), 303);
    app.stop().await;
}

#[tokio::test]
async fn consent_denial_redirects_with_access_denied_and_is_audited() {
    let app = app().await;
    let client = app.client(false, None).await;
    let (browser, page) = signed_in_consent(&app, &client.id, REDIRECT).await;
    let response = browser.decide(&app, &page, "deny").await;
    let pairs = query(&location(&response).unwrap());
    assert_eq!(param(&pairs, "error"), Some("access_denied"));
    assert!(param(&pairs, "error_description").is_some());
    assert_eq!(app.audit_count("consent.denied").await, 1);
    assert_eq!(app.audit_count("consent.granted").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn consent_page_csp_allows_exactly_the_redirect_target() {
    let app = app().await;
    let native_uri = "com.example.app:/oauth2redirect";
    let native = app.client_with(true, None, &[native_uri]).await;
    let (browser, page) = signed_in_consent(&app, &native.id, native_uri).await;
    assert!(
        page.csp.contains("form-action 'self' com.example.app:;")
            || page.csp.ends_with("form-action 'self' com.example.app:"),
        "{}",
        page.csp
    );
    // A native app's private-use redirect receives the code.
    let response = browser.decide(&app, &page, "allow").await;
    let to = location(&response).unwrap();
    assert!(
        to.starts_with("com.example.app:/oauth2redirect?code="),
        "{to}"
    );
    let web = app.client(false, None).await;
    let page = browser
        .consent_page(&app, &authorize_params(&web.id, REDIRECT))
        .await;
    assert!(
        page.csp.contains("form-action 'self' http://127.0.0.1:9"),
        "{}",
        page.csp
    );
    app.stop().await;
}

#[tokio::test]
async fn login_failure_rotates_csrf_token_and_is_not_cached() {
    let app = app().await;
    let browser = Browser::new();
    let page = browser.http.get(app.url("/login")).send().await.unwrap();
    let first = hidden(&page.text().await.unwrap(), "csrf_token").unwrap();
    let post = |csrf: String, password: &'static str| {
        browser
            .http
            .post(app.url("/login"))
            .form(&[
                ("csrf_token", csrf),
                ("next", "/".to_owned()),
                ("email", "alice@example.com".to_owned()),
                ("password", password.to_owned()),
            ])
            .send()
    };
    let failed = post(first.clone(), "wrong password").await.unwrap();
    assert_eq!(failed.status().as_u16(), 401);
    assert_eq!(
        failed.headers().get("cache-control").unwrap(),
        "no-store",
        "the failed-login page carries a CSRF token"
    );
    let second = hidden(&failed.text().await.unwrap(), "csrf_token").unwrap();
    assert_ne!(first, second, "a failure rotates the CSRF token");
    let stale = post(first, crate::helpers::PASSWORD).await.unwrap();
    assert_eq!(stale.status().as_u16(), 403, "the old token is spent");
    let fresh = post(second, crate::helpers::PASSWORD).await.unwrap();
    assert_eq!(fresh.status().as_u16(), 303);
    app.stop().await;
}

#[tokio::test]
async fn introspection_shows_a_client_only_its_own_tokens() {
    let app = app().await;
    let owner = app.client(false, None).await;
    let other = app.client(false, None).await;
    let tokens = app.tokens_for(&owner).await;
    let introspect = |client: &crate::helpers::TestClient, token: &str| {
        let mut form = client.form();
        form.push(("token", token.to_owned()));
        let request = app.http.post(app.url("/introspect")).form(&form).send();
        async move { request.await.unwrap().json::<Value>().await.unwrap() }
    };
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let own = introspect(&owner, access).await;
    assert_eq!(own["active"], true);
    assert_eq!(own["token_type"], "Bearer");
    assert_eq!(introspect(&other, access).await["active"], false);
    let own = introspect(&owner, refresh).await;
    assert_eq!(own["active"], true);
    assert!(own.get("token_type").is_none());
    assert_eq!(introspect(&other, refresh).await["active"], false);
    app.stop().await;
}

#[tokio::test]
async fn consent_continues_by_page_when_no_csp_source_names_the_target() {
    let app = app().await;
    let ipv6 = "http://[::1]:9/callback";
    let native = app.client_with(true, None, &[ipv6]).await;
    let (browser, page) = signed_in_consent(&app, &native.id, ipv6).await;
    assert!(page.csp.contains("form-action 'self';"), "{}", page.csp);
    let response = browser.decide(&app, &page, "allow").await;
    assert_eq!(response.status().as_u16(), 200);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("http-equiv=\"refresh\" content=\"0; url=http://[::1]:9/callback?code="),
        "{html}"
    );
    app.stop().await;
}

#[tokio::test]
async fn pages_and_their_redirects_send_no_referrer() {
    let app = app().await;
    let client = app.client(false, None).await;
    let params = authorize_params(&client.id, REDIRECT);
    let referrer = |response: &reqwest::Response| {
        response
            .headers()
            .get("referrer-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let browser = Browser::new();
    // Not signed in: the 303 to /login carries the request in its URL.
    let to_login = browser.authorize(&app, &params).await;
    assert_eq!(to_login.status().as_u16(), 303);
    assert_eq!(referrer(&to_login), "no-referrer");
    let login = browser.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(referrer(&login), "no-referrer");
    browser.sign_in(&app).await;
    let consent = browser.authorize(&app, &params).await;
    assert_eq!(consent.status().as_u16(), 200);
    assert_eq!(referrer(&consent), "no-referrer");
    let page = browser.consent_page(&app, &params).await;
    let redirect = browser.decide(&app, &page, "allow").await;
    assert_eq!(redirect.status().as_u16(), 303);
    assert!(location(&redirect).unwrap().contains("code="));
    assert_eq!(
        referrer(&redirect),
        "no-referrer",
        "the redirect with the code"
    );
    app.stop().await;
}
