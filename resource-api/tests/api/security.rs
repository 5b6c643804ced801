//! Security headers on every response, and CORS by exact origin on the API
//! routes only.

use reqwest::{Response, StatusCode};

use crate::helpers::{ALLOWED_ORIGIN, Backend, TestApp, spawn_app, spawn_app_with};

fn assert_security_headers(response: &Response) {
    let h = response.headers();
    assert_eq!(
        h["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
    assert!(!h["x-request-id"].is_empty());
}

#[tokio::test]
async fn security_headers_present_on_200_and_401() {
    let app = spawn_app().await;
    let ok = app
        .get("/api/v2/notes", &app.token("alice", "notes:read"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_security_headers(&ok);

    let unauthorized = app
        .client
        .get(app.url("/api/v2/notes"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    assert_security_headers(&unauthorized);

    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_security_headers(&health);
}

#[tokio::test]
async fn request_id_is_propagated_when_given() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn cors_allows_listed_origin_only() {
    let app = spawn_app().await;
    let token = app.token("alice", "notes:read");
    let allowed = app
        .get("/api/v2/notes", &token)
        .header("origin", ALLOWED_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        ALLOWED_ORIGIN
    );

    let foreign = app
        .get("/api/v2/notes", &token)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // Preflight.
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v2/notes"))
        .header("origin", ALLOWED_ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        ALLOWED_ORIGIN
    );
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v2/notes"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// Origins that must not be allowed when only [`ALLOWED_ORIGIN`] is listed.
const FOREIGN: [&str; 6] = [
    "https://evil.example",
    "https://app.example.evil.example",
    "https://APP.example",
    "https://app.example:443",
    "http://app.example",
    "null",
];

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The `access-control-*` headers of a response.
fn cors_headers(response: &Response) -> Vec<String> {
    response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-"))
        .map(|(name, value)| format!("{name}: {value:?}"))
        .collect()
}

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url(path))
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

#[tokio::test]
async fn cors_allows_listed_origin_on_api_routes_even_when_refused() {
    let app = spawn_app().await;
    let me = app
        .get("/api/v2/me", &app.token("alice", "notes:read"))
        .header("origin", ALLOWED_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        header(&me, "access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    assert_eq!(header(&me, "access-control-allow-credentials"), None);
    assert!(header(&me, "vary").unwrap_or_default().contains("origin"));

    // The app can read a refusal too (here 401 without a token).
    let unauthorized = app
        .client
        .get(app.url("/api/v2/me"))
        .header("origin", ALLOWED_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&unauthorized, "access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    // ... and read its challenge, the retry and rate-limit fields, the
    // request id and a version's deprecation headers.
    let exposed: Vec<String> = header(&unauthorized, "access-control-expose-headers")
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for name in [
        "www-authenticate",
        "retry-after",
        "ratelimit-remaining",
        "x-request-id",
        "deprecation",
        "sunset",
        "link",
    ] {
        assert!(
            exposed.iter().any(|h| h == name),
            "{name} not in {exposed:?}"
        );
    }
}

#[tokio::test]
async fn cors_answers_preflight_of_api_routes_with_methods_headers_and_max_age() {
    let app = spawn_app().await;
    for (path, method) in [
        ("/api/v2/me", "GET"),
        ("/api/v2/notes", "POST"),
        (
            "/api/v2/notes/00000000-0000-0000-0000-000000000000",
            "PATCH",
        ),
        (
            "/api/v2/notes/00000000-0000-0000-0000-000000000000",
            "DELETE",
        ),
    ] {
        let response = preflight(&app, path, ALLOWED_ORIGIN, method).await;
        assert_eq!(response.status(), StatusCode::OK, "{path} {method}");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some(ALLOWED_ORIGIN),
            "{path}"
        );
        assert_eq!(
            header(&response, "access-control-allow-methods"),
            Some("GET,POST,PATCH,DELETE"),
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
    }
}

#[tokio::test]
async fn cors_gives_no_allow_origin_to_origins_not_listed_exactly() {
    let app = spawn_app().await;
    let token = app.token("alice", "notes:read");
    for origin in FOREIGN {
        let get = app
            .get("/api/v2/me", &token)
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), StatusCode::OK, "{origin}");
        assert_eq!(
            header(&get, "access-control-allow-origin"),
            None,
            "{origin}"
        );
        let options = preflight(&app, "/api/v2/notes", origin, "POST").await;
        assert_eq!(
            header(&options, "access-control-allow-origin"),
            None,
            "{origin}"
        );
    }
}

#[tokio::test]
async fn cors_never_on_health_routes_even_for_listed_origin() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .client
            .get(app.url(path))
            .header("origin", ALLOWED_ORIGIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(cors_headers(&response), Vec::<String>::new(), "{path}");
        let options = preflight(&app, path, ALLOWED_ORIGIN, "GET").await;
        assert!(
            !options.status().is_success(),
            "{path}: {}",
            options.status()
        );
        assert_eq!(cors_headers(&options), Vec::<String>::new(), "{path}");
    }
}

#[tokio::test]
async fn cors_headers_absent_when_no_origin_is_listed() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.cors_allowed_origins.clear())
        .await
        .unwrap();
    let me = app
        .get("/api/v2/me", &app.token("alice", "notes:read"))
        .header("origin", ALLOWED_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(cors_headers(&me), Vec::<String>::new());
    let options = preflight(&app, "/api/v2/me", ALLOWED_ORIGIN, "GET").await;
    assert_eq!(options.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(cors_headers(&options), Vec::<String>::new());
}

#[tokio::test]
async fn security_headers_present_on_404_405_413_and_422() {
    let app = spawn_app().await;
    let token = app.token("alice", "notes:read notes:write");

    let not_found = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
    assert_security_headers(&not_found);

    let missing_note = app
        .get("/api/v2/notes/0190b7a4-0000-7000-8000-000000000000", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing_note.status(), StatusCode::NOT_FOUND);
    assert_security_headers(&missing_note);

    let wrong_method = app
        .client
        .put(app.url("/api/v2/notes"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_security_headers(&wrong_method);
    for answer in [&missing_note, &wrong_method] {
        assert_eq!(
            answer.headers().get("cache-control").map(|v| v.as_bytes()),
            Some(&b"no-store"[..]),
            "an API route's answer is never cached: {}",
            answer.status()
        );
    }

    // Over the 64 KiB body limit: 413 problem+json, headers included.
    let too_large = app
        .client
        .post(app.url("/api/v2/notes"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"title":"t","body":"{}"}}"#,
            "a".repeat(70 * 1024)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers(&too_large);
    assert_eq!(
        too_large.headers()["content-type"],
        "application/problem+json"
    );

    let invalid = app
        .client
        .post(app.url("/api/v2/notes"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"title": "a\u{0}b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_security_headers(&invalid);
}
