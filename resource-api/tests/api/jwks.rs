//! Keys from a JWKS URL (`KeySource::JwksUrl`), served by a tiny axum server.

use axum::Router;
use axum::routing::get;
use reqwest::StatusCode;
use shared::jwt::{Jwks, PublicKey};

use crate::helpers::{Backend, assert_invalid_token, assert_problem, spawn_app_with};

/// Serves `jwks` at `/jwks.json`; returns its URL.
async fn serve_jwks(jwks: Jwks) -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/jwks.json").parse().unwrap()
}

#[tokio::test]
async fn jwks_url_keys_verify_tokens_and_reject_unknown_kid() {
    let signing_pem = shared::test_util::shared_private_key_pem();
    let public = PublicKey::from_pem(signing_pem).unwrap();
    let url = serve_jwks(Jwks {
        keys: vec![public.to_jwk()],
    })
    .await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth_public_keys = None;
        s.jwks_url = Some(url);
    })
    .await
    .unwrap();
    let signer = shared::test_util::signer(signing_pem);

    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let token = signer.sign(&app.claims("alice", "notes:read")).unwrap();
    let response = app.get("/api/v2/notes", &token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The app's own PEM key is not in the JWKS: its kid is unknown.
    let unknown = app.token("alice", "notes:read");
    let body = assert_invalid_token(app.get("/api/v2/notes", &unknown).send().await.unwrap()).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("unknown signing key")
    );
}

#[tokio::test]
async fn readyz_returns_503_when_jwks_has_no_keys() {
    let url = serve_jwks(Jwks { keys: vec![] }).await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth_public_keys = None;
        s.jwks_url = Some(url);
    })
    .await
    .unwrap();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    // Liveness does not depend on keys.
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn unreachable_jwks_answers_503_not_401_and_counts_no_invalid_token() {
    // A port nothing listens on: every JWKS fetch fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url: url::Url = format!("http://{}/jwks.json", closed.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(closed);
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth_public_keys = None;
        s.jwks_url = Some(url);
        s.rate_limit_anonymous = "2/minute".into();
    })
    .await
    .unwrap();
    // A good token (its key is simply not fetchable) must not be thrown
    // away by its client: 503 with Retry-After, not 401 invalid_token. And
    // it is no mark against the caller's address (2 invalid tokens would
    // lock it out).
    let token = app.token("alice", "notes:read");
    for _ in 0..4 {
        let response = app.get("/api/v2/notes", &token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
        assert!(!response.headers().contains_key("www-authenticate"));
    }
}
