//! Other implementations against ours: the `oauth2` crate as a third-party
//! client configured only from the discovery metadata, and PyJWT verifying
//! our access tokens from the JWKS.

use std::process::Stdio;

use e2e::browser::query_param;
use e2e::workspace_root;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, RedirectUrl,
    Scope, TokenResponse, TokenUrl,
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::process::Command;

use crate::support::*;

both!(oauth2_crate_client => oauth2_crate_client_sqlite, oauth2_crate_client_postgres);
async fn oauth2_crate_client(backend: Backend) {
    let f = fixture(&backend).await;
    let stack = &f.stack;
    let client = BasicClient::new(ClientId::new(f.client.id.clone()))
        .set_client_secret(ClientSecret::new(f.client.secret.clone().unwrap()))
        .set_auth_uri(AuthUrl::new(stack.endpoint("authorization_endpoint").unwrap()).unwrap())
        .set_token_uri(TokenUrl::new(stack.endpoint("token_endpoint").unwrap()).unwrap())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap());

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("notes:read".into()))
        .add_scope(Scope::new("notes:write".into()))
        .set_pkce_challenge(challenge)
        .url();
    let redirect = f
        .browser
        .authorize_and_allow(&url, &f.user.email, &f.user.password)
        .await
        .unwrap();
    assert_redirect_to_client(&redirect);
    assert_eq!(
        query_param(&redirect, "state").as_deref(),
        Some(csrf.secret().as_str()),
        "{redirect}"
    );
    assert_eq!(
        query_param(&redirect, "iss").as_deref(),
        Some(stack.issuer.as_str()),
        "{redirect}"
    );
    let code = query_param(&redirect, "code").unwrap_or_else(|| panic!("no code on {redirect}"));

    let http = oauth2::reqwest::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("oauth2 exchange_code: {e:?}"));
    let scopes: Vec<String> = token
        .scopes()
        .map(|s| s.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    assert!(
        scopes.contains(&"notes:write".to_owned()),
        "scopes {scopes:?}"
    );
    let notes = api(
        stack,
        Method::GET,
        "/api/v2/notes",
        Some(token.access_token().secret()),
        None,
    )
    .await;
    assert_eq!(notes.status, StatusCode::OK, "GET /api/v2/notes: {notes}");

    let refresh_token = token.refresh_token().expect("refresh token");
    let refreshed = client
        .exchange_refresh_token(refresh_token)
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("oauth2 exchange_refresh_token: {e:?}"));
    assert_ne!(
        refreshed.refresh_token().map(|t| t.secret().clone()),
        Some(refresh_token.secret().clone()),
        "refresh token not rotated"
    );
    let me = api(
        stack,
        Method::GET,
        "/api/v2/me",
        Some(refreshed.access_token().secret()),
        None,
    )
    .await;
    assert_eq!(me.status, StatusCode::OK, "GET /api/v2/me: {me}");
}

async fn pyjwt_available() -> bool {
    Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

async fn verify_jwt_py(
    jwks_url: &str,
    token: &str,
    issuer: &str,
    audience: &str,
) -> std::process::Output {
    Command::new("python3")
        .arg(workspace_root().join("scripts").join("verify_jwt.py"))
        .args([jwks_url, token, issuer, audience])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

both!(pyjwt_verifies_access_token => pyjwt_verifies_access_token_sqlite, pyjwt_verifies_access_token_postgres; needs pyjwt);
async fn pyjwt_verifies_access_token(backend: Backend) {
    if !pyjwt_available().await {
        migrations::test_support::missing(
            "pyjwt_verifies_access_token",
            "python3 cannot import jwt and cryptography (pip install pyjwt cryptography, \
             or Debian's python3-jwt and python3-cryptography)",
        );
    }
    let f = fixture(&backend).await;
    let tokens = tokens(&f, SCOPE).await;
    let jwks = f.stack.endpoint("jwks_uri").unwrap();

    let out = verify_jwt_py(&jwks, &tokens.access, &f.stack.issuer, AUDIENCE).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "verify_jwt.py rejected a real token ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let claims: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(claims["sub"], f.user.id.as_str(), "{claims}");
    assert_eq!(claims["iss"], f.stack.issuer.as_str(), "{claims}");

    // One changed character in the signature.
    let mut tampered = tokens.access.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let out = verify_jwt_py(&jwks, &tampered, &f.stack.issuer, AUDIENCE).await;
    assert!(
        !out.status.success(),
        "verify_jwt.py accepted a tampered token"
    );

    // The right token, the wrong audience / issuer.
    let out = verify_jwt_py(&jwks, &tokens.access, &f.stack.issuer, "another-api").await;
    assert!(
        !out.status.success(),
        "verify_jwt.py accepted another audience"
    );
    let out = verify_jwt_py(&jwks, &tokens.access, "http://evil.example", AUDIENCE).await;
    assert!(
        !out.status.success(),
        "verify_jwt.py accepted another issuer"
    );
}
