//! CORS by exact whitelist (`CORS_ALLOWED_ORIGINS`), over real HTTP: only
//! the token and revocation endpoints, the metadata and the JWKS answer a
//! listed origin; pages, `/introspect` and the admin API never carry CORS
//! headers; an origin that is not listed byte for byte gets none.

use auth_server::config::Settings;
use reqwest::{Method, Response};
use shared::paths;

use crate::helpers::{AppOptions, Backend, REDIRECT, TestApp, spawn_app};

const ALLOWED: &str = "https://app.example";

/// Origins that must not be allowed when only [`ALLOWED`] is listed.
const FOREIGN: [&str; 6] = [
    "https://evil.example",
    "https://app.example.evil.example",
    "https://APP.example",
    "https://app.example:443",
    "http://app.example",
    "null",
];

fn allow_app(settings: &mut Settings) {
    settings.cors_allowed_origins = ALLOWED.into();
}

async fn cors_app() -> TestApp {
    spawn_app(
        Backend::Sqlite,
        AppOptions {
            tune: Some(allow_app),
            ..AppOptions::default()
        },
    )
    .await
    .unwrap()
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The `access-control-*` headers of a response, for failure messages and
/// for asserting there are none.
fn cors_headers(response: &Response) -> Vec<String> {
    response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-"))
        .map(|(name, value)| format!("{name}: {value:?}"))
        .collect()
}

/// A browser's preflight for `method` with the two headers an app sends.
async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> Response {
    app.http
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

async fn get_from(app: &TestApp, path: &str, origin: &str) -> Response {
    app.http
        .get(app.url(path))
        .header("origin", origin)
        .send()
        .await
        .unwrap()
}

async fn post_from(app: &TestApp, path: &str, origin: &str, form: &[(&str, String)]) -> Response {
    app.http
        .post(app.url(path))
        .header("origin", origin)
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_allows_listed_origin_on_metadata_and_jwks() {
    let app = cors_app().await;
    for path in [
        paths::JWKS_PATH,
        paths::METADATA_PATH,
        paths::OPENID_CONFIGURATION_PATH,
    ] {
        let response = get_from(&app, path, ALLOWED).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some(ALLOWED),
            "{path}"
        );
        assert_eq!(
            header(&response, "access-control-allow-credentials"),
            None,
            "{path}"
        );
        let vary = header(&response, "vary").unwrap_or_default();
        assert!(vary.contains("origin"), "{path}: vary {vary:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn cors_allows_listed_origin_on_token_and_revoke() {
    let app = cors_app().await;
    let client = app.client(true, None).await;
    let verifier = "v".repeat(43);
    let code = app.code(&client, &verifier, true).await;
    let mut form = client.form();
    form.extend([
        ("grant_type", "authorization_code".to_owned()),
        ("code", code),
        ("redirect_uri", REDIRECT.to_owned()),
        ("code_verifier", verifier),
    ]);
    let response = post_from(&app, paths::TOKEN_PATH, ALLOWED, &form).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(ALLOWED)
    );
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    let tokens: serde_json::Value = response.json().await.unwrap();

    // An error of the endpoint is readable by the app too.
    let bad = post_from(
        &app,
        paths::TOKEN_PATH,
        ALLOWED,
        &[("grant_type", "password".to_owned())],
    )
    .await;
    assert!(bad.status().is_client_error(), "{}", bad.status());
    assert_eq!(header(&bad, "access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(header(&bad, "cache-control"), Some("no-store"));

    let mut revoke = client.form();
    revoke.push((
        "token",
        tokens["refresh_token"].as_str().unwrap().to_owned(),
    ));
    let response = post_from(&app, paths::REVOKE_PATH, ALLOWED, &revoke).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(ALLOWED)
    );
    app.stop().await;
}

#[tokio::test]
async fn cors_answers_preflight_of_listed_origin_with_methods_headers_and_max_age() {
    let app = cors_app().await;
    for (path, method) in [
        (paths::TOKEN_PATH, "POST"),
        (paths::REVOKE_PATH, "POST"),
        (paths::JWKS_PATH, "GET"),
        (paths::METADATA_PATH, "GET"),
        (paths::OPENID_CONFIGURATION_PATH, "GET"),
    ] {
        let response = preflight(&app, path, ALLOWED, method).await;
        // 200 from the CORS layer, although the route has no OPTIONS.
        assert_eq!(
            response.status(),
            200,
            "{path}: {:?}",
            cors_headers(&response)
        );
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some(ALLOWED),
            "{path}"
        );
        assert_eq!(
            header(&response, "access-control-allow-methods"),
            Some(method),
            "{path}"
        );
        assert_eq!(
            header(&response, "access-control-allow-headers"),
            Some("authorization,content-type"),
            "{path}"
        );
        assert_eq!(
            header(&response, "access-control-max-age"),
            Some("600"),
            "{path}"
        );
        assert_eq!(
            header(&response, "access-control-allow-credentials"),
            None,
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn cors_gives_no_allow_origin_to_origins_not_listed_exactly() {
    let app = cors_app().await;
    for origin in FOREIGN {
        for response in [
            get_from(&app, paths::JWKS_PATH, origin).await,
            get_from(&app, paths::METADATA_PATH, origin).await,
            post_from(
                &app,
                paths::TOKEN_PATH,
                origin,
                &[("grant_type", "password".to_owned())],
            )
            .await,
            preflight(&app, paths::TOKEN_PATH, origin, "POST").await,
        ] {
            assert_eq!(
                header(&response, "access-control-allow-origin"),
                None,
                "{origin} {}",
                response.url()
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn cors_never_on_pages_introspect_or_admin_even_for_listed_origin() {
    let app = cors_app().await;
    let client = app.client(false, None).await;
    let mut responses = vec![];
    for path in [
        paths::AUTHORIZE_PATH,
        paths::LOGIN_PATH,
        paths::PASSWORD_RESET_PATH,
        "/",
        paths::HEALTHZ_PATH,
        paths::READYZ_PATH,
        paths::ADMIN_LOCKOUTS_PATH,
    ] {
        responses.push(get_from(&app, path, ALLOWED).await);
    }
    let mut introspect = client.form();
    introspect.push(("token", "not-a-token".to_owned()));
    responses.push(post_from(&app, paths::INTROSPECT_PATH, ALLOWED, &introspect).await);
    responses.push(post_from(&app, paths::LOGIN_PATH, ALLOWED, &[]).await);
    responses.push(post_from(&app, paths::CONSENT_PATH, ALLOWED, &[]).await);
    for (path, method) in [
        (paths::LOGIN_PATH, "POST"),
        (paths::AUTHORIZE_PATH, "GET"),
        (paths::CONSENT_PATH, "POST"),
        (paths::INTROSPECT_PATH, "POST"),
        (paths::PASSWORD_RESET_PATH, "POST"),
        (paths::ADMIN_LOCKOUTS_PATH, "GET"),
        (paths::REGISTER_PATH, "POST"),
    ] {
        let response = preflight(&app, path, ALLOWED, method).await;
        assert!(
            !response.status().is_success(),
            "{path}: preflight answered {}",
            response.status()
        );
        responses.push(response);
    }
    for response in responses {
        assert_eq!(
            cors_headers(&response),
            Vec::<String>::new(),
            "{} {}",
            response.status(),
            response.url()
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn cors_headers_absent_everywhere_when_no_origin_is_listed() {
    let app = spawn_app(Backend::Sqlite, AppOptions::default())
        .await
        .unwrap();
    let jwks = get_from(&app, paths::JWKS_PATH, ALLOWED).await;
    assert_eq!(jwks.status(), 200);
    assert_eq!(cors_headers(&jwks), Vec::<String>::new());
    // Without the layer, the method router refuses the OPTIONS.
    let response = preflight(&app, paths::TOKEN_PATH, ALLOWED, "POST").await;
    assert_eq!(response.status(), 405);
    assert_eq!(cors_headers(&response), Vec::<String>::new());
    app.stop().await;
}
