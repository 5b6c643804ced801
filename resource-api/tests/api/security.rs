//! Security headers on every response, and CORS by exact origin.

use reqwest::{Response, StatusCode};

use crate::helpers::{ALLOWED_ORIGIN, spawn_app};

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
