//! Security headers on every kind of answer of the auth server, not only the
//! happy ones: a page, a redirect, an OAuth error, 401, 404, 405 and 413.
//! The pages and OAuth responses are never cached and never leak their URL
//! through a `Referer`.

use reqwest::{Method, Response};

use crate::helpers::{
    AppOptions, Backend, Browser, REDIRECT, TestApp, authorize_params, spawn_app,
};

/// The headers every answer carries, whatever its status.
fn assert_security_headers(what: &str, response: &Response) {
    let h = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        h("strict-transport-security"),
        "max-age=63072000; includeSubDomains",
        "{what}"
    );
    let csp = h("content-security-policy");
    for directive in [
        "default-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP {csp:?} lacks {directive}"
        );
    }
    // No inline script or style may ever run.
    assert!(!csp.contains("unsafe-inline"), "{what}: CSP {csp:?}");
    assert!(!csp.contains("unsafe-eval"), "{what}: CSP {csp:?}");
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(h("x-frame-options"), "DENY", "{what}");
    assert!(!h("x-request-id").is_empty(), "{what}: no X-Request-Id");
    assert!(
        !h("referrer-policy").is_empty(),
        "{what}: no Referrer-Policy"
    );
}

/// Pages and OAuth answers: never cached, never a `Referer`.
fn assert_uncached(what: &str, response: &Response) {
    let h = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(h("cache-control"), "no-store", "{what}");
    assert_eq!(h("referrer-policy"), "no-referrer", "{what}");
}

async fn app() -> TestApp {
    spawn_app(Backend::Sqlite, AppOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn security_headers_on_pages_redirects_and_oauth_answers() {
    let app = app().await;
    let client = app.client(false, None).await;
    let browser = Browser::new();

    let login = browser.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(login.status().as_u16(), 200);
    assert_security_headers("GET /login", &login);
    assert_uncached("GET /login", &login);

    // Not signed in: /authorize redirects to the sign-in page, and its URL
    // holds the whole authorization request.
    let params = authorize_params(&client.id, REDIRECT);
    let redirect = browser.authorize(&app, &params).await;
    assert!(redirect.status().is_redirection(), "{}", redirect.status());
    assert_security_headers("GET /authorize (redirect)", &redirect);
    assert_uncached("GET /authorize (redirect)", &redirect);

    // Signed in: the consent page, then its redirect to the client.
    browser.sign_in(&app).await;
    let page = browser.consent_page(&app, &params).await;
    let to_client = browser.decide(&app, &page, "allow").await;
    assert!(
        to_client.status().is_redirection(),
        "{}",
        to_client.status()
    );
    assert!(
        to_client
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|l| l.starts_with(REDIRECT)),
        "{:?}",
        to_client.headers().get("location")
    );
    assert_security_headers("POST /consent (redirect to the client)", &to_client);
    assert_uncached("POST /consent (redirect to the client)", &to_client);

    // An OAuth error and a failed client authentication.
    let bad_grant = app
        .http
        .post(app.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[("grant_type", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_grant.status().as_u16(), 400);
    assert_security_headers("POST /token 400", &bad_grant);
    assert_uncached("POST /token 400", &bad_grant);
    let bad_client = app
        .http
        .post(app.url("/token"))
        .basic_auth(&client.id, Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_client.status().as_u16(), 401);
    assert_security_headers("POST /token 401", &bad_client);
    assert_uncached("POST /token 401", &bad_client);
    app.stop().await;
}

#[tokio::test]
async fn security_headers_on_404_405_and_413() {
    let app = app().await;

    let not_found = app.http.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(not_found.status().as_u16(), 404);
    assert_security_headers("404", &not_found);

    let wrong_method = app
        .http
        .request(Method::DELETE, app.url("/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    assert_security_headers("405", &wrong_method);

    // 64 KiB is the limit: a form one byte per field over it.
    let body = format!(
        "grant_type=client_credentials&pad={}",
        "a".repeat(70 * 1024)
    );
    let too_large = app
        .http
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status().as_u16(), 413);
    assert_security_headers("413", &too_large);
    assert_uncached("413 of /token", &too_large);
    // The endpoint's own error shape: RFC 6749 JSON.
    let json: serde_json::Value = too_large.json().await.unwrap();
    assert_eq!(json["error"], "invalid_request", "{json}");

    let too_large_page = app
        .http
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("email={}", "a".repeat(70 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large_page.status().as_u16(), 413);
    assert_security_headers("413 of /login", &too_large_page);
    assert_uncached("413 of /login", &too_large_page);
    app.stop().await;
}
