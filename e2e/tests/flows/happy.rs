//! The flows as they are meant to be used.

use e2e::ClientSpec;
use e2e::browser::query_param;
use e2e::oauth::{Pkce, decode_jwt, random_token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

// authorize → login → consent → code, then `client_secret_basic`: the
// granted scope, and a refresh token.
/// authorize → login → consent → code → tokens, `client_secret_basic`.
async fn code_flow(f: &Fixture) -> Tokens {
    let grant = authorize(&f.stack, &f.browser, &f.client.id, &f.user, SCOPE).await;
    assert_tokens(&exchange(&f.stack, f.client.basic(), &grant).await)
}

both!(code_flow_grants_requested_scope => code_flow_grants_requested_scope_sqlite, code_flow_grants_requested_scope_postgres);
async fn code_flow_grants_requested_scope(backend: Backend) {
    let f = fixture(&backend).await;
    let first = code_flow(&f).await;
    assert_eq!(
        scope_set(first.scope.as_deref().unwrap_or_default()),
        scope_set(SCOPE),
        "granted scope"
    );
    assert!(first.refresh.is_some(), "refresh token");
}

both!(access_token_is_rfc9068_jwt_signed_by_published_key => access_token_is_rfc9068_jwt_signed_by_published_key_sqlite, access_token_is_rfc9068_jwt_signed_by_published_key_postgres);
async fn access_token_is_rfc9068_jwt_signed_by_published_key(backend: Backend) {
    let f = fixture(&backend).await;
    let stack = &f.stack;
    let first = code_flow(&f).await;
    // The access token is an RFC 9068 JWT signed by a published key.
    let (header, claims) = decode_jwt(&first.access).unwrap();
    assert_eq!(header["alg"], "RS256", "header {header}");
    assert_eq!(header["typ"], "at+jwt", "header {header}");
    let jwks: Value = stack
        .http
        .get(stack.endpoint("jwks_uri").unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&header["kid"].as_str().unwrap_or("-")),
        "kid {header} not in {jwks}"
    );
    assert_eq!(claims["iss"], stack.issuer.as_str(), "claims {claims}");
    assert_eq!(claims["aud"], AUDIENCE, "claims {claims}");
    assert_eq!(claims["sub"], f.user.id.as_str(), "claims {claims}");
    assert_eq!(claims["client_id"], f.client.id.as_str(), "claims {claims}");
    assert_eq!(
        scope_set(claims["scope"].as_str().unwrap_or_default()),
        scope_set(SCOPE),
        "claims {claims}"
    );
    for claim in ["exp", "iat", "jti"] {
        assert!(!claims[claim].is_null(), "no {claim} in {claims}");
    }
}

both!(resource_api_accepts_issued_access_token => resource_api_accepts_issued_access_token_sqlite, resource_api_accepts_issued_access_token_postgres);
async fn resource_api_accepts_issued_access_token(backend: Backend) {
    let f = fixture(&backend).await;
    let stack = &f.stack;
    let first = code_flow(&f).await;
    // The resource API accepts it.
    let me = api(stack, Method::GET, "/api/v2/me", Some(&first.access), None).await;
    assert_eq!(me.status, StatusCode::OK, "GET /api/v2/me: {me}");
    assert!(
        me.body.contains(&f.user.id),
        "GET /api/v2/me does not name the user {}: {me}",
        f.user.id
    );
    let note_title = format!("note {}", random_token());
    let created = api(
        stack,
        Method::POST,
        "/api/v2/notes",
        Some(&first.access),
        Some(json!({"title": note_title, "body": "hello from e2e"})),
    )
    .await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "POST /api/v2/notes: {created}"
    );
    let note_id = match created.json.as_ref().and_then(|j| j.get("id")) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => panic!("no id in {created}"),
    };
    let list = api(
        stack,
        Method::GET,
        "/api/v2/notes",
        Some(&first.access),
        None,
    )
    .await;
    assert_eq!(list.status, StatusCode::OK, "GET /api/v2/notes: {list}");
    assert!(
        list.body.contains(&note_title),
        "new note missing from {list}"
    );
    let one = api(
        stack,
        Method::GET,
        &format!("/api/v2/notes/{note_id}"),
        Some(&first.access),
        None,
    )
    .await;
    assert_eq!(
        one.status,
        StatusCode::OK,
        "GET /api/v2/notes/{note_id}: {one}"
    );
    assert!(
        one.body.contains(&note_title),
        "GET /api/v2/notes/{note_id}: {one}"
    );
}

both!(refresh_rotates_and_reuse_revokes_family => refresh_rotates_and_reuse_revokes_family_sqlite, refresh_rotates_and_reuse_revokes_family_postgres);
async fn refresh_rotates_and_reuse_revokes_family(backend: Backend) {
    let f = fixture(&backend).await;
    let stack = &f.stack;
    let first = code_flow(&f).await;
    let refresh1 = first.refresh.clone().expect("refresh token");
    // Refresh rotates the refresh token.
    let second = assert_tokens(&refresh(stack, f.client.basic(), &refresh1).await);
    let refresh2 = second.refresh.clone().expect("rotated refresh token");
    assert_ne!(refresh2, refresh1, "refresh token was not rotated");
    assert_ne!(
        second.access, first.access,
        "same access token after refresh"
    );
    let me = api(stack, Method::GET, "/api/v2/me", Some(&second.access), None).await;
    assert_eq!(me.status, StatusCode::OK, "refreshed access token: {me}");

    // Reusing the rotated token fails and revokes the family.
    let reuse = refresh(stack, f.client.basic(), &refresh1).await;
    assert_oauth_error(&reuse, StatusCode::BAD_REQUEST, "invalid_grant");
    let newest = refresh(stack, f.client.basic(), &refresh2).await;
    assert_oauth_error(&newest, StatusCode::BAD_REQUEST, "invalid_grant");
}

both!(introspection_shows_live_access_token_and_revoked_refresh_token => introspection_shows_live_access_token_and_revoked_refresh_token_sqlite, introspection_shows_live_access_token_and_revoked_refresh_token_postgres);
async fn introspection_shows_live_access_token_and_revoked_refresh_token(backend: Backend) {
    let f = fixture(&backend).await;
    let stack = &f.stack;
    let first = code_flow(&f).await;
    let refresh1 = first.refresh.clone().expect("refresh token");
    let second = assert_tokens(&refresh(stack, f.client.basic(), &refresh1).await);
    let refresh2 = second.refresh.clone().expect("rotated refresh token");
    // Reuse of the rotated token revokes the family, refresh2 included.
    let reuse = refresh(stack, f.client.basic(), &refresh1).await;
    assert_oauth_error(&reuse, StatusCode::BAD_REQUEST, "invalid_grant");
    // Introspection: the access token is active, the revoked refresh not.
    let at = stack
        .introspect(f.client.basic(), &second.access)
        .await
        .unwrap();
    assert_eq!(at.status, StatusCode::OK, "introspect access token: {at}");
    let at_json = at.json.clone().unwrap_or_default();
    assert_eq!(at_json["active"], true, "introspect access token: {at}");
    assert_eq!(
        at_json["client_id"],
        f.client.id.as_str(),
        "introspect access token: {at}"
    );
    assert_eq!(
        at_json["sub"],
        f.user.id.as_str(),
        "introspect access token: {at}"
    );
    assert!(
        at.no_store(),
        "introspection without no-store: {:?}",
        at.headers
    );
    let rt = stack.introspect(f.client.basic(), &refresh2).await.unwrap();
    assert_eq!(
        rt.status,
        StatusCode::OK,
        "introspect revoked refresh token: {rt}"
    );
    assert_eq!(
        rt.json.clone().unwrap_or_default()["active"],
        false,
        "introspect revoked refresh token: {rt}"
    );
}

both!(revoke_revokes_refresh_token_and_accepts_unknown_tokens => revoke_revokes_refresh_token_and_accepts_unknown_tokens_sqlite, revoke_revokes_refresh_token_and_accepts_unknown_tokens_postgres);
async fn revoke_revokes_refresh_token_and_accepts_unknown_tokens(backend: Backend) {
    let f = fixture(&backend).await;
    let stack = &f.stack;
    let grant = authorize(stack, &f.browser, &f.client.id, &f.user, SCOPE).await;
    let third = assert_tokens(&exchange(stack, f.client.basic(), &grant).await);
    let refresh3 = third.refresh.expect("refresh token");
    let live = stack.introspect(f.client.basic(), &refresh3).await.unwrap();
    assert_eq!(
        live.json.clone().unwrap_or_default()["active"],
        true,
        "introspect fresh refresh token: {live}"
    );
    let revoked = stack
        .revoke(f.client.basic(), &refresh3, Some("refresh_token"))
        .await
        .unwrap();
    assert_eq!(revoked.status, StatusCode::OK, "revoke: {revoked}");
    let after = refresh(stack, f.client.basic(), &refresh3).await;
    assert_oauth_error(&after, StatusCode::BAD_REQUEST, "invalid_grant");
    // RFC 7009 §2.2: unknown tokens are not an error.
    let unknown = stack
        .revoke(f.client.basic(), "no-such-token", None)
        .await
        .unwrap();
    assert_eq!(
        unknown.status,
        StatusCode::OK,
        "revoke unknown token: {unknown}"
    );
}

both!(client_secret_post => client_secret_post_sqlite, client_secret_post_postgres);
async fn client_secret_post(backend: Backend) {
    let f = fixture(&backend).await;
    let grant = authorize(&f.stack, &f.browser, &f.client.id, &f.user, SCOPE).await;
    let tokens = assert_tokens(&exchange(&f.stack, f.client.post(), &grant).await);
    let refreshed =
        assert_tokens(&refresh(&f.stack, f.client.post(), &tokens.refresh.unwrap()).await);
    let notes = api(
        &f.stack,
        Method::GET,
        "/api/v2/notes",
        Some(&refreshed.access),
        None,
    )
    .await;
    assert_eq!(notes.status, StatusCode::OK, "GET /api/v2/notes: {notes}");
}

both!(public_client => public_client_sqlite, public_client_postgres);
async fn public_client(backend: Backend) {
    let f = fixture(&backend).await;
    let public = f
        .stack
        .create_client(&ClientSpec::public("e2e mobile", REDIRECT))
        .await
        .unwrap();
    assert!(
        public.secret.is_none(),
        "public client got a secret: {}",
        public.raw
    );
    let grant = authorize(&f.stack, &f.browser, &public.id, &f.user, SCOPE).await;
    let tokens = assert_tokens(&exchange(&f.stack, public.basic(), &grant).await);
    let (_, claims) = decode_jwt(&tokens.access).unwrap();
    assert_eq!(claims["client_id"], public.id.as_str(), "claims {claims}");
    let refresh_token = tokens.refresh.expect("public client got no refresh token");
    let refreshed = assert_tokens(&refresh(&f.stack, public.basic(), &refresh_token).await);
    assert_ne!(
        refreshed.refresh.as_deref(),
        Some(refresh_token.as_str()),
        "not rotated"
    );
    let me = api(
        &f.stack,
        Method::GET,
        "/api/v2/me",
        Some(&refreshed.access),
        None,
    )
    .await;
    assert_eq!(me.status, StatusCode::OK, "GET /api/v2/me: {me}");
}

both!(consent_deny => consent_deny_sqlite, consent_deny_postgres);
async fn consent_deny(backend: Backend) {
    let f = fixture(&backend).await;
    let pkce = Pkce::new();
    let state = random_token();
    let url = authorize_url(&f.stack, &f.client.id, SCOPE, &pkce, &state);
    let redirect = f
        .browser
        .authorize_and_decide(&url, &f.user.email, &f.user.password, "deny")
        .await
        .unwrap();
    assert_redirect_to_client(&redirect);
    assert_eq!(
        query_param(&redirect, "error").as_deref(),
        Some("access_denied"),
        "{redirect}"
    );
    assert_eq!(
        query_param(&redirect, "state").as_deref(),
        Some(state.as_str()),
        "{redirect}"
    );
    assert_eq!(
        query_param(&redirect, "iss").as_deref(),
        Some(f.stack.issuer.as_str()),
        "{redirect}"
    );
    assert_eq!(query_param(&redirect, "code"), None, "{redirect}");
}

both!(security_headers => security_headers_sqlite, security_headers_postgres);
async fn security_headers(backend: Backend) {
    let stack = start(&backend, Default::default()).await;
    let auth = &stack.auth.url;
    let api_url = stack.resource_url().unwrap();
    let responses = [
        stack
            .http
            .get(format!("{auth}/healthz"))
            .send()
            .await
            .unwrap(),
        stack
            .http
            .get(format!("{auth}/login"))
            .send()
            .await
            .unwrap(),
        stack
            .http
            .get(stack.endpoint("jwks_uri").unwrap())
            .send()
            .await
            .unwrap(),
        stack
            .http
            .post(stack.endpoint("token_endpoint").unwrap())
            .form(&[("grant_type", "nope")])
            .send()
            .await
            .unwrap(),
        stack
            .http
            .get(format!("{api_url}/healthz"))
            .send()
            .await
            .unwrap(),
        stack
            .http
            .get(format!("{api_url}/api/v2/notes"))
            .send()
            .await
            .unwrap(),
    ];
    for resp in responses {
        let url = resp.url().clone();
        let h = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            h("strict-transport-security").contains("max-age=63072000"),
            "{url}: HSTS {:?}",
            h("strict-transport-security")
        );
        let csp = h("content-security-policy");
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{url}: CSP {csp:?}"
        );
        assert_eq!(h("x-content-type-options"), "nosniff", "{url}");
        assert_eq!(h("x-frame-options").to_ascii_uppercase(), "DENY", "{url}");
        // OAuth endpoints and pages: their URLs carry state and codes.
        let referrer = if ["/token", "/login", "/authorize", "/consent"].contains(&url.path()) {
            "no-referrer"
        } else {
            "strict-origin-when-cross-origin"
        };
        assert_eq!(h("referrer-policy"), referrer, "{url}");
        assert!(!h("x-request-id").is_empty(), "{url}: no X-Request-Id");
    }
}

both!(narrowed_refresh => narrowed_refresh_sqlite, narrowed_refresh_postgres);
/// A refresh may narrow the access token's scope; the new refresh token keeps
/// the scope originally granted (RFC 6749 §6), so a later refresh gets it back.
async fn narrowed_refresh(backend: Backend) {
    let f = fixture(&backend).await;
    let tokens = tokens(&f, SCOPE).await;
    let narrowed = assert_tokens(
        &f.stack
            .token(
                f.client.basic(),
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", tokens.refresh.as_deref().unwrap()),
                    ("scope", "notes:read"),
                ],
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        narrowed.scope.as_deref(),
        Some("notes:read"),
        "{}",
        narrowed.json
    );
    let (_, claims) = decode_jwt(&narrowed.access).unwrap();
    assert_eq!(claims["scope"], "notes:read", "claims {claims}");
    let write = api(
        &f.stack,
        Method::POST,
        "/api/v2/notes",
        Some(&narrowed.access),
        Some(serde_json::json!({"title": "t", "body": "b"})),
    )
    .await;
    assert_eq!(
        write.status,
        StatusCode::FORBIDDEN,
        "narrowed token wrote: {write}"
    );
    let full = assert_tokens(
        &refresh(
            &f.stack,
            f.client.basic(),
            narrowed.refresh.as_deref().unwrap(),
        )
        .await,
    );
    assert_eq!(
        scope_set(full.scope.as_deref().unwrap_or_default()),
        scope_set(SCOPE),
        "{}",
        full.json
    );
}

both!(native_client_loopback_port => native_client_loopback_port_sqlite, native_client_loopback_port_postgres);
/// RFC 8252 §7.3: a public native client registered with a loopback redirect
/// may use any port; the code is bound to the URI it used.
async fn native_client_loopback_port(backend: Backend) {
    let f = fixture(&backend).await;
    let native = f
        .stack
        .create_client(&ClientSpec::public("e2e native", REDIRECT))
        .await
        .unwrap();
    let redirect = "http://127.0.0.1:49152/callback";
    let (code, verifier) = authorize_at(&f, &native.id, redirect).await;
    let ok = exchange_at(&f, &native.id, redirect, &code, &verifier).await;
    assert_tokens(&ok);
    // A code issued for the other port is not valid with the registered URI.
    let (code, verifier) = authorize_at(&f, &native.id, redirect).await;
    let wrong = exchange_at(&f, &native.id, REDIRECT, &code, &verifier).await;
    assert_oauth_error(&wrong, StatusCode::BAD_REQUEST, "invalid_grant");
}

async fn authorize_at(f: &Fixture, client_id: &str, redirect: &str) -> (String, String) {
    let pkce = Pkce::new();
    let state = random_token();
    let url = f
        .stack
        .authorize_url(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("scope", SCOPE),
            ("state", &state),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ])
        .unwrap();
    let location = f
        .browser
        .authorize_and_allow(&url, &f.user.email, &f.user.password)
        .await
        .unwrap();
    assert!(location.as_str().starts_with(redirect), "{location}");
    let code = query_param(&location, "code").unwrap();
    (code, pkce.verifier)
}

async fn exchange_at(
    f: &Fixture,
    client_id: &str,
    redirect: &str,
    code: &str,
    verifier: &str,
) -> e2e::oauth::OAuthResponse {
    f.stack
        .token(
            e2e::oauth::ClientAuth::Public { id: client_id },
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect),
                ("code_verifier", verifier),
            ],
        )
        .await
        .unwrap()
}

both!(restart_loses_nothing => restart_loses_nothing_sqlite, restart_loses_nothing_postgres);
/// SIGTERM stops the server cleanly, and sessions, codes and refresh tokens
/// live in the database: after a restart all of them still work.
async fn restart_loses_nothing(backend: Backend) {
    let mut f = fixture(&backend).await;
    let tokens = tokens(&f, SCOPE).await;
    let pending = authorize(&f.stack, &f.browser, &f.client.id, &f.user, SCOPE).await;

    let status = f.stack.restart_auth().await.unwrap();
    assert!(
        status.success(),
        "auth-server did not exit cleanly on SIGTERM: {status}"
    );

    // The refresh token issued before the restart rotates.
    let refreshed = assert_tokens(
        &refresh(
            &f.stack,
            f.client.basic(),
            tokens.refresh.as_deref().unwrap(),
        )
        .await,
    );
    assert_ne!(refreshed.refresh, tokens.refresh);
    // The code issued before the restart is redeemable.
    assert_tokens(&exchange(&f.stack, f.client.basic(), &pending).await);
    // The browser's session survives: /authorize shows consent, not login.
    let pkce = Pkce::new();
    let url = authorize_url(&f.stack, &f.client.id, SCOPE, &pkce, "after-restart");
    let page = f.browser.get(&url).await.unwrap();
    assert_eq!(
        page.status,
        StatusCode::OK,
        "expected the consent page: {page}"
    );
    assert!(page.form("/consent").is_ok(), "no consent form: {page}");
}

both!(client_credentials_grant => client_credentials_grant_sqlite, client_credentials_grant_postgres);
/// A service authenticates as itself: `sub` is its `client_id`, no refresh
/// token, and only the scopes it registered.
async fn client_credentials_grant(backend: Backend) {
    let f = fixture(&backend).await;
    let service = f
        .stack
        .create_client(
            &ClientSpec::confidential("e2e service", REDIRECT)
                .scope("notes:read")
                .grant("client_credentials"),
        )
        .await
        .unwrap();
    let resp = f
        .stack
        .token(
            service.post(),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "notes:read"),
            ],
        )
        .await
        .unwrap();
    let tokens = assert_tokens(&resp);
    assert!(
        tokens.refresh.is_none(),
        "client_credentials issued a refresh token: {}",
        tokens.json
    );
    let (_, claims) = decode_jwt(&tokens.access).unwrap();
    assert_eq!(claims["sub"], service.id.as_str(), "claims {claims}");
    assert_eq!(claims["client_id"], service.id.as_str(), "claims {claims}");
    let notes = api(
        &f.stack,
        Method::GET,
        "/api/v2/notes",
        Some(&tokens.access),
        None,
    )
    .await;
    assert_eq!(notes.status, StatusCode::OK, "{notes}");
    // It cannot ask for more than it registered.
    let wider = f
        .stack
        .token(
            service.basic(),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "notes:write"),
            ],
        )
        .await
        .unwrap();
    assert_oauth_error(&wider, StatusCode::BAD_REQUEST, "invalid_scope");
}
