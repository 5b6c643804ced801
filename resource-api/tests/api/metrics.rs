//! `GET /metrics` (issue 10): Prometheus text with bounded labels, on the
//! main port to loopback callers by default, behind `METRICS_TOKEN`, or on
//! `METRICS_LISTEN` alone.

use reqwest::StatusCode;
use resource_api::{Application, BuildOptions, Settings};

use crate::helpers::{AUDIENCE, Backend, ISSUER, spawn_app, spawn_app_with};

const TOKEN: &str = "metrics-token-0123456789abcdef";

async fn metrics_text(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = client.get(url);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_shows_route_templates_and_security_counters_after_traffic() {
    let app = spawn_app().await;
    let token = app.token("user-metrics", "notes:read");
    let id = uuid::Uuid::new_v4();
    let missing = app
        .get(&format!("/api/v2/notes/{id}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let refused = app
        .get("/api/v2/notes?q=x'%20OR%20'1'='1", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let unauthenticated = app.client.get(app.url("/api/v2/me")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    let (status, content_type, text) = metrics_text(&app.client, &app.url("/metrics"), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for needle in [
        r#"http_requests_total{route="/api/v2/notes/{id}",method="GET",status="404"}"#,
        r#"http_requests_total{route="/api/v2/me",method="GET",status="401"}"#,
        r#"http_request_duration_seconds_bucket{route="/api/v2/notes/{id}""#,
        "portcullis_suspicious_inputs_total",
        r#"portcullis_security_events_total{kind="suspicious_input"}"#,
        // The token was verified once and then found in the cache.
        r#"portcullis_verify_cache_total{outcome="miss"}"#,
        r#"portcullis_verify_cache_total{outcome="hit"}"#,
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    // Label values are templates: never the raw path, an id or a query.
    assert!(!text.contains(&id.to_string()), "{text}");
    assert!(!text.contains("'1'"), "{text}");
}

#[tokio::test]
async fn metrics_refuses_without_the_token_when_metrics_token_is_set() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.metrics_token = Some(TOKEN.into()))
        .await
        .unwrap();
    let url = app.url("/metrics");
    let (status, _, _) = metrics_text(&app.client, &url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = metrics_text(&app.client, &url, Some("metrics-token-wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, text) = metrics_text(&app.client, &url, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("http_requests_total"), "{text}");
}

#[tokio::test]
async fn metrics_by_default_refuses_a_forwarded_request() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_serves_on_metrics_listen_and_not_on_the_main_port() {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    std::fs::create_dir(&keys_dir).unwrap();
    std::fs::write(
        keys_dir.join("signing.pem"),
        shared::test_util::private_key_pem(),
    )
    .unwrap();
    let settings = Settings {
        database_url: format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display()),
        resource_listen: "127.0.0.1:0".into(),
        resource_audience: AUDIENCE.into(),
        auth_issuer: ISSUER.into(),
        jwks_url: None,
        auth_public_keys: Some(keys_dir),
        metrics_listen: Some("127.0.0.1:0".into()),
        metrics_token: Some(TOKEN.into()),
        ..Settings::default()
    };
    let db = migrations::db::connect(&settings.database_url, None)
        .await
        .unwrap();
    let app = Application::build_with(
        settings,
        BuildOptions {
            database: Some(db),
            ..BuildOptions::default()
        },
    )
    .await
    .unwrap();
    let main = app.address();
    let metrics = app.metrics_address().unwrap();
    assert_ne!(main.port(), metrics.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let (status, _, _) =
        metrics_text(&client, &format!("http://{main}/metrics"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let url = format!("http://{metrics}/metrics");
    let (status, _, _) = metrics_text(&client, &url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, text) = metrics_text(&client, &url, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("http_requests_total"), "{text}");
    // The listener is served like the services (shared::serve): a head
    // over 32 KiB gets 431 instead of filling memory.
    let stuffed = client
        .get(&url)
        .bearer_auth(TOKEN)
        .header("x-stuffing", "a".repeat(40 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(
        stuffed.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
}
