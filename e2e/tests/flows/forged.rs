//! Tokens the resource API must refuse. The test owns the signing key (it
//! writes it into the stack's keys folder before auth-server starts), so it
//! can mint a valid token and then change one thing at a time.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use e2e::StackOptions;
use e2e::oauth::rsa_thumbprint;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

use crate::support::*;

/// A 2048-bit RSA key as the server stores it, with its RFC 7638 `kid`.
pub struct TestKey {
    pub private_pem: String,
    pub public_pem: String,
    pub kid: String,
}

impl TestKey {
    fn generate() -> Self {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let public = RsaPublicKey::from(&private);
        let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
        Self {
            private_pem: private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
            kid: rsa_thumbprint(&n, &e),
        }
    }
}

/// The key the tests install as the server's signing key.
pub fn server_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::generate)
}

/// A key the server has never seen.
pub fn stranger_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(TestKey::generate)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn claims(issuer: &str, scope: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer,
        "sub": uuid::Uuid::new_v4().to_string(),
        "aud": AUDIENCE,
        "client_id": "forged-client",
        "scope": scope,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

fn header(alg: Algorithm, typ: &str, kid: &str) -> Header {
    let mut header = Header::new(alg);
    header.typ = Some(typ.into());
    header.kid = Some(kid.into());
    header
}

fn rs256(key: &TestKey, typ: &str, kid: &str, claims: &Value) -> String {
    let encoding = EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header(Algorithm::RS256, typ, kid), claims, &encoding).unwrap()
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

both!(forged_tokens => forged_tokens_sqlite, forged_tokens_postgres);
async fn forged_tokens(backend: Backend) {
    let key = server_key();
    let stack = start(
        &backend,
        StackOptions::default().signing_key(&key.private_pem),
    )
    .await;
    let iss = stack.issuer.as_str();
    let good = claims(iss, "notes:read notes:write");

    // The baseline: minted exactly like the server does, it is accepted.
    let valid = rs256(key, "at+jwt", &key.kid, &good);
    let resp = api(&stack, Method::GET, "/api/v2/notes", Some(&valid), None).await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "a valid token signed with the server's key: {resp}"
    );

    let with = |key_: &str, value: Value| {
        let mut c = good.clone();
        c[key_] = value;
        c
    };
    let mut forged: Vec<(&str, String)> = vec![
        (
            "another iss",
            rs256(
                key,
                "at+jwt",
                &key.kid,
                &with("iss", json!("http://evil.example")),
            ),
        ),
        (
            "another aud",
            rs256(key, "at+jwt", &key.kid, &with("aud", json!("another-api"))),
        ),
        ("typ JWT", rs256(key, "JWT", &key.kid, &good)),
        (
            "expired 2 minutes ago",
            rs256(key, "at+jwt", &key.kid, &with("exp", json!(now() - 120))),
        ),
        (
            "not yet valid (nbf in 10 minutes)",
            rs256(key, "at+jwt", &key.kid, &with("nbf", json!(now() + 600))),
        ),
        (
            "unknown kid, another key",
            rs256(stranger_key(), "at+jwt", &stranger_key().kid, &good),
        ),
        (
            "the server's kid, another key",
            rs256(stranger_key(), "at+jwt", &key.kid, &good),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    // alg none: no signature at all.
    forged.push((
        "alg none",
        format!(
            "{}.{}.",
            b64_json(&json!({"alg": "none", "typ": "at+jwt", "kid": key.kid})),
            b64_json(&good)
        ),
    ));
    // HS256 keyed with the public key (algorithm confusion).
    let hmac = EncodingKey::from_secret(key.public_pem.as_bytes());
    forged.push((
        "HS256 with the public key as secret",
        jsonwebtoken::encode(&header(Algorithm::HS256, "at+jwt", &key.kid), &good, &hmac).unwrap(),
    ));
    // A valid token with its payload changed.
    let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    parts[1] = b64_json(&with("scope", json!("notes:read notes:write admin")));
    forged.push(("payload changed after signing", parts.join(".")));

    for (what, token) in &forged {
        let resp = api(&stack, Method::GET, "/api/v2/notes", Some(token), None).await;
        assert_invalid_token(&resp, what);
    }

    let missing = api(&stack, Method::GET, "/api/v2/notes", None, None).await;
    assert_eq!(
        missing.status,
        StatusCode::UNAUTHORIZED,
        "no token: {missing}"
    );
    assert!(
        missing
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        "no token: {:?}",
        missing.headers
    );

    // Valid, but without notes:write.
    let read_only = rs256(key, "at+jwt", &key.kid, &with("scope", json!("notes:read")));
    let list = api(&stack, Method::GET, "/api/v2/notes", Some(&read_only), None).await;
    assert_eq!(
        list.status,
        StatusCode::OK,
        "notes:read token on GET: {list}"
    );
    let post = api(
        &stack,
        Method::POST,
        "/api/v2/notes",
        Some(&read_only),
        Some(json!({"title": "t", "body": "b"})),
    )
    .await;
    assert_eq!(
        post.status,
        StatusCode::FORBIDDEN,
        "notes:read token on POST: {post}"
    );
    let challenge = post.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains(r#"error="insufficient_scope""#),
        "notes:read token on POST: WWW-Authenticate {challenge:?}"
    );
}

both!(real_read_only_token => real_read_only_token_sqlite, real_read_only_token_postgres);
/// The same scope check with a token the server issued.
async fn real_read_only_token(backend: Backend) {
    let f = fixture(&backend).await;
    let tokens = tokens(&f, "notes:read").await;
    let post = api(
        &f.stack,
        Method::POST,
        "/api/v2/notes",
        Some(&tokens.access),
        Some(json!({"title": "t", "body": "b"})),
    )
    .await;
    assert_eq!(
        post.status,
        StatusCode::FORBIDDEN,
        "notes:read token on POST: {post}"
    );
    assert!(
        post.header("www-authenticate")
            .is_some_and(|h| h.contains(r#"error="insufficient_scope""#)),
        "{:?}",
        post.headers
    );
}
