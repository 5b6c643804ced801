//! RFC 8414 metadata and the RFC 7517 JWKS.

use e2e::StackOptions;
use e2e::oauth::rsa_thumbprint;
use reqwest::StatusCode;
use serde_json::Value;

use crate::forged::server_key;
use crate::support::*;

async fn get_json(stack: &e2e::Stack, url: &str) -> Value {
    let resp = stack.http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/") && content_type.contains("json"),
        "GET {url}: {content_type}"
    );
    resp.json().await.unwrap()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

both!(metadata_and_jwks => metadata_and_jwks_sqlite, metadata_and_jwks_postgres);
async fn metadata_and_jwks(backend: Backend) {
    let key = server_key();
    let stack = start(
        &backend,
        StackOptions::default()
            .signing_key(&key.private_pem)
            .without_resource_api(),
    )
    .await;
    let issuer = stack.auth.url.as_str();
    let m = get_json(
        &stack,
        &format!("{issuer}/.well-known/oauth-authorization-server"),
    )
    .await;

    assert_eq!(m["issuer"], issuer, "{m}");
    for (field, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("revocation_endpoint", "/revoke"),
        ("introspection_endpoint", "/introspect"),
        ("jwks_uri", "/.well-known/jwks.json"),
    ] {
        assert_eq!(m[field], format!("{issuer}{path}"), "{field} in {m}");
    }
    assert_eq!(strings(&m["response_types_supported"]), ["code"], "{m}");
    assert_eq!(
        strings(&m["code_challenge_methods_supported"]),
        ["S256"],
        "{m}"
    );
    let grants = strings(&m["grant_types_supported"]);
    for grant in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(grants.contains(&grant), "{grant} missing from {m}");
    }
    let auth_methods = strings(&m["token_endpoint_auth_methods_supported"]);
    for method in ["client_secret_basic", "client_secret_post", "none"] {
        assert!(auth_methods.contains(&method), "{method} missing from {m}");
    }
    let scopes = strings(&m["scopes_supported"]);
    for scope in ["notes:read", "notes:write"] {
        assert!(scopes.contains(&scope), "{scope} missing from {m}");
    }
    assert_eq!(
        m["authorization_response_iss_parameter_supported"], true,
        "{m}"
    );

    let openid = get_json(
        &stack,
        &format!("{issuer}/.well-known/openid-configuration"),
    )
    .await;
    for field in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
    ] {
        assert_eq!(
            openid[field], m[field],
            "{field}: openid-configuration {openid} vs {m}"
        );
    }

    let jwks = get_json(&stack, m["jwks_uri"].as_str().unwrap()).await;
    let keys = jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys in {jwks}"));
    assert!(!keys.is_empty(), "empty JWKS");
    for jwk in keys {
        assert_eq!(jwk["kty"], "RSA", "{jwk}");
        assert_eq!(jwk["use"], "sig", "{jwk}");
        assert_eq!(jwk["alg"], "RS256", "{jwk}");
        let (n, e) = (jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap());
        assert_eq!(
            jwk["kid"],
            rsa_thumbprint(n, e).as_str(),
            "kid is not the RFC 7638 thumbprint: {jwk}"
        );
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                jwk.get(private).is_none(),
                "private member {private} published: {jwk}"
            );
        }
    }
    let kids: Vec<&str> = keys.iter().filter_map(|k| k["kid"].as_str()).collect();
    assert!(
        kids.contains(&key.kid.as_str()),
        "the key in the keys folder ({}) is not published: {kids:?}",
        key.kid
    );
}

both!(dev_key_generated => dev_key_generated_sqlite, dev_key_generated_postgres);
/// With an empty keys folder the server makes a dev key: a private PEM file
/// (mode 0600) whose public half is the one published.
async fn dev_key_generated(backend: Backend) {
    let stack = start(&backend, StackOptions::default().without_resource_api()).await;
    let jwks = get_json(&stack, &stack.endpoint("jwks_uri").unwrap()).await;
    let published: Vec<&str> = jwks["keys"]
        .as_array()
        .map(|k| k.iter().filter_map(|k| k["kid"].as_str()).collect())
        .unwrap_or_default();
    let pems: Vec<_> = std::fs::read_dir(&stack.keys_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    assert_eq!(pems.len(), 1, "keys folder {:?}", pems);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pems[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", pems[0].display());
    }
    let pem = std::fs::read_to_string(&pems[0]).unwrap();
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).expect("a PKCS#8 RSA private key");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let kid = rsa_thumbprint(
        &b64.encode(private.n().to_bytes_be()),
        &b64.encode(private.e().to_bytes_be()),
    );
    assert_eq!(published, [kid.as_str()], "published kids vs the dev key");
}
