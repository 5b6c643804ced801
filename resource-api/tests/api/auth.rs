//! Bearer-token checks: every way a token can be wrong is a 401
//! `invalid_token`; no token is a plain `Bearer` challenge.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_invalid_token, assert_problem, spawn_app};

async fn get_me(app: &TestApp, token: &str) -> reqwest::Response {
    app.get("/api/v2/me", token).send().await.unwrap()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[tokio::test]
async fn me_returns_token_identity_without_scope() {
    let app = spawn_app().await;
    let mut claims = app.claims("alice", "");
    claims.roles = vec!["admin".into()];
    let response = get_me(&app, &app.sign(&claims)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"sub": "alice", "client_id": "test-client", "scope": "", "roles": ["admin"]})
    );
}

#[tokio::test]
async fn me_accepts_lower_case_bearer_scheme() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/v2/me"))
        .header(
            "authorization",
            format!("bearer {}", app.token("alice", "x")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn me_returns_401_without_error_code_when_token_missing() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/api/v2/me")).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    // Another scheme counts as no bearer token either.
    let response = app
        .client
        .get(app.url("/api/v2/notes"))
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn me_returns_401_when_authorization_header_is_repeated_or_empty() {
    let app = spawn_app().await;
    let token = app.token("alice", "notes:read");
    let response = app
        .client
        .get(app.url("/api/v2/me"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_invalid_token(response).await;

    for value in ["Bearer", "Bearer ", "Bearer a b"] {
        let response = app
            .client
            .get(app.url("/api/v2/me"))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_invalid_token(response).await;
    }
}

#[tokio::test]
async fn token_is_rejected_when_expired_beyond_leeway() {
    let app = spawn_app().await;
    let mut claims = app.claims("alice", "notes:read");
    let now = shared::test_util::now();
    claims.iat = now - 1000;
    claims.nbf = now - 1000;
    claims.exp = now - 120;
    let body = assert_invalid_token(get_me(&app, &app.sign(&claims)).await).await;
    assert!(body["detail"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn token_is_accepted_when_expired_within_leeway() {
    let app = spawn_app().await;
    let mut claims = app.claims("alice", "notes:read");
    claims.exp = shared::test_util::now() - 10;
    let response = get_me(&app, &app.sign(&claims)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_is_rejected_when_not_yet_valid() {
    let app = spawn_app().await;
    let mut claims = app.claims("alice", "notes:read");
    claims.nbf = shared::test_util::now() + 600;
    assert_invalid_token(get_me(&app, &app.sign(&claims)).await).await;
}

#[tokio::test]
async fn token_is_rejected_when_issuer_is_wrong() {
    let app = spawn_app().await;
    let mut claims = app.claims("alice", "notes:read");
    claims.iss = "http://evil.test".into();
    assert_invalid_token(get_me(&app, &app.sign(&claims)).await).await;
}

#[tokio::test]
async fn token_is_rejected_when_audience_is_wrong() {
    let app = spawn_app().await;
    let mut claims = app.claims("alice", "notes:read");
    claims.aud = "another-api".into();
    assert_invalid_token(get_me(&app, &app.sign(&claims)).await).await;
}

#[tokio::test]
async fn token_is_rejected_when_typ_is_not_at_jwt() {
    let app = spawn_app().await;
    let claims = app.claims("alice", "notes:read");
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.kid = Some(app.signer.kid().to_owned());
    let key = EncodingKey::from_rsa_pem(app.private_key_pem.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    assert_invalid_token(get_me(&app, &token).await).await;

    // The same token with typ at+jwt passes: only typ made the difference.
    header.typ = Some("at+jwt".into());
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    assert_eq!(get_me(&app, &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_is_rejected_when_alg_is_none() {
    let app = spawn_app().await;
    let claims = serde_json::to_value(app.claims("alice", "notes:read")).unwrap();
    let header = json!({"alg": "none", "typ": "at+jwt", "kid": app.signer.kid()});
    let token = format!("{}.{}.", b64(&header), b64(&claims));
    assert_invalid_token(get_me(&app, &token).await).await;
}

#[tokio::test]
async fn token_is_rejected_when_hs256_signed_with_public_key() {
    let app = spawn_app().await;
    let claims = app.claims("alice", "notes:read");
    // The classic key-confusion attack: the public key PEM as HMAC secret.
    let public_pem = public_key_pem(&app.private_key_pem);
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(app.signer.kid().to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap();
    assert_invalid_token(get_me(&app, &token).await).await;
}

/// The SPKI public-key PEM of a PKCS#8 private key.
fn public_key_pem(private_pem: &str) -> String {
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    rsa::RsaPrivateKey::from_pkcs8_pem(private_pem)
        .unwrap()
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

#[tokio::test]
async fn token_is_rejected_when_signed_by_unknown_key() {
    let app = spawn_app().await;
    let other = shared::test_util::signer(&shared::test_util::private_key_pem());
    let token = other.sign(&app.claims("alice", "notes:read")).unwrap();
    assert_invalid_token(get_me(&app, &token).await).await;
}

#[tokio::test]
async fn token_is_rejected_when_signed_by_unknown_key_claiming_known_kid() {
    let app = spawn_app().await;
    let other_pem = shared::test_util::private_key_pem();
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(app.signer.kid().to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &app.claims("alice", "notes:read"),
        &EncodingKey::from_rsa_pem(other_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_invalid_token(get_me(&app, &token).await).await;
}

#[tokio::test]
async fn token_is_rejected_when_payload_is_tampered() {
    let app = spawn_app().await;
    let token = app.token("alice", "notes:read");
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("bob");
    claims["scope"] = json!("notes:read notes:write");
    let forged = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    assert_invalid_token(get_me(&app, &forged).await).await;
}

#[tokio::test]
async fn token_is_rejected_when_garbage() {
    let app = spawn_app().await;
    for token in ["abc", "a.b.c", "x.y", "...."] {
        assert_invalid_token(get_me(&app, token).await).await;
    }
}
