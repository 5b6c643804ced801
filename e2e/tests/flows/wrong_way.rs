//! Requests that must fail, and how.

use e2e::ClientSpec;
use e2e::browser::{Page, query_param};
use e2e::oauth::{ClientAuth, OAuthResponse, Pkce, random_token};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use url::Url;

use crate::support::*;

/// The redirect of an authorize error after the redirect URI is trusted:
/// back to the client with `error`, the `state` sent and `iss`.
fn assert_error_redirect(f: &Fixture, page: &Page, state: &str, error: &str) {
    assert!(
        page.status.is_redirection(),
        "expected a redirect, got {page}"
    );
    let location = page
        .location()
        .unwrap_or_else(|| panic!("no Location: {page}"));
    assert_redirect_to_client(&location);
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some(error),
        "{location}"
    );
    assert_eq!(
        query_param(&location, "state").as_deref(),
        Some(state),
        "{location}"
    );
    assert_eq!(
        query_param(&location, "iss").as_deref(),
        Some(f.stack.issuer.as_str()),
        "{location}"
    );
    assert_eq!(query_param(&location, "code"), None, "{location}");
}

/// A 400 page that does not redirect anywhere.
fn assert_error_page(page: &Page) {
    assert_eq!(
        page.status,
        StatusCode::BAD_REQUEST,
        "expected a 400 page, got {page}"
    );
    assert!(
        page.header("location").is_none(),
        "error page with a Location: {page}"
    );
}

async fn authorize_page(f: &Fixture, params: &[(&str, &str)]) -> Page {
    let url = f.stack.authorize_url(params).unwrap();
    f.browser
        .authorize(&url, &f.user.email, &f.user.password)
        .await
        .unwrap()
}

both!(wrong_code_verifier => wrong_code_verifier_sqlite, wrong_code_verifier_postgres);
async fn wrong_code_verifier(backend: Backend) {
    let f = fixture(&backend).await;
    let mut grant = authorize(&f.stack, &f.browser, &f.client.id, &f.user, SCOPE).await;
    grant.pkce.verifier = Pkce::new().verifier;
    let resp = exchange(&f.stack, f.client.basic(), &grant).await;
    assert_oauth_error(&resp, StatusCode::BAD_REQUEST, "invalid_grant");
}

both!(unknown_code => unknown_code_sqlite, unknown_code_postgres);
async fn unknown_code(backend: Backend) {
    let f = fixture(&backend).await;
    let grant = Grant {
        code: random_token(),
        pkce: Pkce::new(),
    };
    let resp = exchange(&f.stack, f.client.basic(), &grant).await;
    assert_oauth_error(&resp, StatusCode::BAD_REQUEST, "invalid_grant");
}

both!(authorize_refuses_pkce_that_is_missing_plain_or_short => authorize_refuses_bad_pkce_sqlite, authorize_refuses_bad_pkce_postgres);
/// PKCE S256 is required (RFC 7636, RFC 9700 §2.1.1): each case is an error
/// redirect with `invalid_request`; a challenge under 43 characters
/// (RFC 7636 §4.2) is refused like a missing one.
async fn authorize_refuses_pkce_that_is_missing_plain_or_short(backend: Backend) {
    let f = fixture(&backend).await;
    let pkce = Pkce::new();
    let cases: [&[(&str, Option<&str>)]; 3] = [
        // missing
        &[("code_challenge", None), ("code_challenge_method", None)],
        // plain
        &[("code_challenge_method", Some("plain"))],
        // short
        &[("code_challenge", Some("abc"))],
    ];
    for changes in cases {
        let state = random_token();
        let mut params = code_params(&f.client.id, SCOPE, &state, &pkce.challenge);
        for (name, value) in changes {
            params = with_param(params, name, *value);
        }
        let page = authorize_page(&f, &params).await;
        assert_error_redirect(&f, &page, &state, "invalid_request");
    }
}

both!(authorize_shows_error_page_for_unknown_client_or_redirect_uri => authorize_error_page_for_unknown_client_or_redirect_sqlite, authorize_error_page_for_unknown_client_or_redirect_postgres);
/// An unknown client or an unregistered redirect URI never causes a
/// redirect: a 400 page.
async fn authorize_shows_error_page_for_unknown_client_or_redirect_uri(backend: Backend) {
    let f = fixture(&backend).await;
    let pkce = Pkce::new();
    let client = f.client.id.as_str();
    let cases = [
        (client, Some("http://127.0.0.1:9/evil")),
        (client, Some("http://127.0.0.1:9/callback/../evil")),
        (client, Some("http://127.0.0.1:10/callback")),
        ("no-such-client", None),
    ];
    for (client_id, redirect) in cases {
        let mut params = code_params(client_id, SCOPE, "s", &pkce.challenge);
        if redirect.is_some() {
            params = with_param(params, "redirect_uri", redirect);
        }
        let page = authorize_page(&f, &params).await;
        assert_error_page(&page);
    }
}

both!(code_replay => code_replay_sqlite, code_replay_postgres);
async fn code_replay(backend: Backend) {
    let f = fixture(&backend).await;
    let grant = authorize(&f.stack, &f.browser, &f.client.id, &f.user, SCOPE).await;
    let first = assert_tokens(&exchange(&f.stack, f.client.basic(), &grant).await);
    let again = exchange(&f.stack, f.client.basic(), &grant).await;
    assert_oauth_error(&again, StatusCode::BAD_REQUEST, "invalid_grant");
    // RFC 6749 §4.1.2: what the first use issued is revoked.
    let refresh_token = first.refresh.unwrap();
    let introspected = f
        .stack
        .introspect(f.client.basic(), &refresh_token)
        .await
        .unwrap();
    assert_eq!(
        introspected.json.clone().unwrap_or_default()["active"],
        false,
        "refresh token of a replayed code: {introspected}"
    );
    let refreshed = refresh(&f.stack, f.client.basic(), &refresh_token).await;
    assert_oauth_error(&refreshed, StatusCode::BAD_REQUEST, "invalid_grant");
}

both!(code_of_another_client => code_of_another_client_sqlite, code_of_another_client_postgres);
async fn code_of_another_client(backend: Backend) {
    let f = fixture(&backend).await;
    let other = f
        .stack
        .create_client(&ClientSpec::confidential("other app", REDIRECT))
        .await
        .unwrap();
    let grant = authorize(&f.stack, &f.browser, &f.client.id, &f.user, SCOPE).await;
    let resp = exchange(&f.stack, other.basic(), &grant).await;
    assert_oauth_error(&resp, StatusCode::BAD_REQUEST, "invalid_grant");
}

both!(refresh_by_another_client => refresh_by_another_client_sqlite, refresh_by_another_client_postgres);
async fn refresh_by_another_client(backend: Backend) {
    let f = fixture(&backend).await;
    let other = f
        .stack
        .create_client(&ClientSpec::confidential("other app", REDIRECT))
        .await
        .unwrap();
    let tokens = tokens(&f, SCOPE).await;
    let resp = refresh(&f.stack, other.basic(), tokens.refresh.as_deref().unwrap()).await;
    assert_oauth_error(&resp, StatusCode::BAD_REQUEST, "invalid_grant");
}

both!(widened_scope_on_refresh => widened_scope_on_refresh_sqlite, widened_scope_on_refresh_postgres);
async fn widened_scope_on_refresh(backend: Backend) {
    let f = fixture(&backend).await;
    let tokens = tokens(&f, "notes:read").await;
    assert_eq!(tokens.scope.as_deref(), Some("notes:read"), "granted scope");
    let resp = f
        .stack
        .token(
            f.client.basic(),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens.refresh.as_deref().unwrap()),
                ("scope", "notes:read notes:write"),
            ],
        )
        .await
        .unwrap();
    assert_oauth_error(&resp, StatusCode::BAD_REQUEST, "invalid_scope");
}

both!(wrong_client_secret => wrong_client_secret_sqlite, wrong_client_secret_postgres);
async fn wrong_client_secret(backend: Backend) {
    let f = fixture(&backend).await;
    let grant = authorize(&f.stack, &f.browser, &f.client.id, &f.user, SCOPE).await;
    let basic = exchange(
        &f.stack,
        ClientAuth::Basic {
            id: &f.client.id,
            secret: "wrong",
        },
        &grant,
    )
    .await;
    assert_oauth_error(&basic, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(
        basic
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic")),
        "401 without WWW-Authenticate: Basic: {:?}",
        basic.headers
    );
    let post = exchange(
        &f.stack,
        ClientAuth::Post {
            id: &f.client.id,
            secret: "wrong",
        },
        &grant,
    )
    .await;
    assert_oauth_error(&post, StatusCode::UNAUTHORIZED, "invalid_client");
    let unknown = exchange(
        &f.stack,
        ClientAuth::Basic {
            id: "no-such-client",
            secret: "x",
        },
        &grant,
    )
    .await;
    assert_oauth_error(&unknown, StatusCode::UNAUTHORIZED, "invalid_client");
    // A confidential client cannot pass as public.
    let none = exchange(&f.stack, ClientAuth::Public { id: &f.client.id }, &grant).await;
    assert_oauth_error(&none, StatusCode::UNAUTHORIZED, "invalid_client");
}

both!(unsupported_grant_type => unsupported_grant_type_sqlite, unsupported_grant_type_postgres);
async fn unsupported_grant_type(backend: Backend) {
    let f = fixture(&backend).await;
    let resp = f
        .stack
        .token(
            f.client.basic(),
            &[
                ("grant_type", "password"),
                ("username", &f.user.email),
                ("password", PASSWORD),
            ],
        )
        .await
        .unwrap();
    assert_oauth_error(&resp, StatusCode::BAD_REQUEST, "unsupported_grant_type");
}

both!(oversized_token_body => oversized_token_body_sqlite, oversized_token_body_postgres);
async fn oversized_token_body(backend: Backend) {
    let f = fixture(&backend).await;
    let padding = "a".repeat(70 * 1024);
    let resp = f
        .stack
        .token(
            f.client.basic(),
            &[
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("padding", &padding),
            ],
        )
        .await
        .unwrap();
    assert!(
        resp.status.is_client_error(),
        "oversized body: expected a 4xx, got {resp}"
    );
    assert!(
        resp.error().is_some(),
        "oversized body: expected a JSON OAuth error, got {resp}"
    );
    assert!(
        resp.no_store(),
        "oversized body: no Cache-Control: no-store: {:?}",
        resp.headers
    );
}

both!(malformed_token_body => malformed_token_body_sqlite, malformed_token_body_postgres);
async fn malformed_token_body(backend: Backend) {
    let f = fixture(&backend).await;
    let token_url = f.stack.endpoint("token_endpoint").unwrap();
    let secret = f.client.secret.as_deref().unwrap();
    let send = |content_type: &'static str, body: &'static str| {
        f.stack
            .http
            .post(&token_url)
            .basic_auth(&f.client.id, Some(secret))
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };
    // RFC 6749 §3.2: a parameter given twice is invalid_request.
    let twice = OAuthResponse::read(
        send(
            "application/x-www-form-urlencoded",
            "grant_type=authorization_code&grant_type=refresh_token&code=x",
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert_oauth_error(&twice, StatusCode::BAD_REQUEST, "invalid_request");
    // Not a form at all.
    let json = OAuthResponse::read(
        send("application/json", r#"{"grant_type":"authorization_code"}"#)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(
        json.status.is_client_error() && json.error() == Some("invalid_request"),
        "JSON body: expected invalid_request, got {json}"
    );
    assert!(
        json.no_store(),
        "JSON body: no Cache-Control: no-store: {:?}",
        json.headers
    );
    let garbage = OAuthResponse::read(
        send("application/x-www-form-urlencoded", "%%%&&==&=")
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_oauth_error(&garbage, StatusCode::BAD_REQUEST, "invalid_request");
}

both!(login_and_consent_protections => login_and_consent_protections_sqlite, login_and_consent_protections_postgres);
async fn login_and_consent_protections(backend: Backend) {
    let f = fixture(&backend).await;
    let login_url = Url::parse(&format!("{}/login", f.stack.auth.url)).unwrap();

    let wrong = f
        .browser
        .login(&login_url, &f.user.email, "not the password")
        .await
        .unwrap();
    assert_eq!(
        wrong.status,
        StatusCode::UNAUTHORIZED,
        "wrong password: {wrong}"
    );
    assert!(
        wrong
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "wrong password: {wrong}"
    );
    assert!(
        wrong.form("/login").is_ok(),
        "wrong password: no login form again: {wrong}"
    );
    let unknown = f
        .browser
        .login(&login_url, "nobody@example.com", PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        unknown.status,
        StatusCode::UNAUTHORIZED,
        "unknown user: {unknown}"
    );

    // The login form without its csrf_token, or with a forged one.
    let page = f.browser.get(&login_url).await.unwrap();
    let form = page.form("/login").unwrap();
    let creds = [("email", f.user.email.as_str()), ("password", PASSWORD)];
    let no_csrf = f
        .browser
        .submit(&page, &form, &creds, &["csrf_token"])
        .await
        .unwrap();
    assert_eq!(
        no_csrf.status,
        StatusCode::FORBIDDEN,
        "login without csrf_token: {no_csrf}"
    );
    let forged = f
        .browser
        .submit(
            &page,
            &form,
            &[creds[0], creds[1], ("csrf_token", "forged")],
            &["csrf_token"],
        )
        .await
        .unwrap();
    assert_eq!(
        forged.status,
        StatusCode::FORBIDDEN,
        "login with a forged csrf_token: {forged}"
    );
    // A fresh browser (no session cookie) posting a token it never got.
    let stranger = e2e::Browser::new().unwrap();
    let cross_site = stranger
        .post_form(
            &login_url,
            &[
                (
                    "csrf_token".into(),
                    form.get("csrf_token").unwrap_or_default().into(),
                ),
                ("email".into(), f.user.email.clone()),
                ("password".into(), PASSWORD.into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        cross_site.status,
        StatusCode::FORBIDDEN,
        "login CSRF from another browser: {cross_site}"
    );

    // The consent form without its csrf_token.
    let pkce = Pkce::new();
    let url = authorize_url(&f.stack, &f.client.id, SCOPE, &pkce, "s");
    let consent = f
        .browser
        .authorize(&url, &f.user.email, &f.user.password)
        .await
        .unwrap();
    assert_eq!(consent.status, StatusCode::OK, "consent page: {consent}");
    let form = consent.form("/consent").unwrap();
    let no_csrf = f
        .browser
        .submit(&consent, &form, &[("decision", "allow")], &["csrf_token"])
        .await
        .unwrap();
    assert_eq!(
        no_csrf.status,
        StatusCode::FORBIDDEN,
        "consent without csrf_token: {no_csrf}"
    );
    let forged = f
        .browser
        .submit(
            &consent,
            &form,
            &[("decision", "allow"), ("csrf_token", "forged")],
            &["csrf_token"],
        )
        .await
        .unwrap();
    assert_eq!(
        forged.status,
        StatusCode::FORBIDDEN,
        "consent with a forged csrf_token: {forged}"
    );
    // Another browser replaying the whole consent form (with the victim's
    // token) has no session: no code.
    let replay = stranger
        .submit(&consent, &form, &[("decision", "allow")], &[])
        .await
        .unwrap();
    let leaked = replay.location().and_then(|l| query_param(&l, "code"));
    assert!(
        leaked.is_none(),
        "consent replayed from another browser issued a code: {replay}"
    );
    assert!(
        replay.status.is_client_error() || replay.status.is_redirection(),
        "consent replay: {replay}"
    );
}

both!(concurrent_refresh => concurrent_refresh_sqlite, concurrent_refresh_postgres);
async fn concurrent_refresh(backend: Backend) {
    let f = fixture(&backend).await;
    let tokens = tokens(&f, SCOPE).await;
    let refresh_token = tokens.refresh.unwrap();
    let attempts = (0..20).map(|_| refresh(&f.stack, f.client.basic(), &refresh_token));
    let results = futures::future::join_all(attempts).await;
    let ok = results
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let invalid_grant = results
        .iter()
        .filter(|r| r.status == StatusCode::BAD_REQUEST && r.error() == Some("invalid_grant"))
        .count();
    let others: Vec<String> = results
        .iter()
        .filter(|r| r.status != StatusCode::OK && r.error() != Some("invalid_grant"))
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        (ok, invalid_grant),
        (1, 19),
        "20 concurrent refreshes with one token; unexpected answers: {others:?}"
    );
}

both!(loopback_port_variation_is_only_for_native_clients => loopback_port_variation_sqlite, loopback_port_variation_postgres);
/// A confidential client gets no port leeway: a redirect URI that differs from
/// the registered one only in its port is unregistered.
async fn loopback_port_variation_is_only_for_native_clients(backend: Backend) {
    let f = fixture(&backend).await;
    let pkce = Pkce::new();
    let page = authorize_page(
        &f,
        &with_param(
            code_params(&f.client.id, SCOPE, "s", &pkce.challenge),
            "redirect_uri",
            Some("http://127.0.0.1:49152/callback"),
        ),
    )
    .await;
    assert_error_page(&page);
}

both!(grant_type_not_registered => grant_type_not_registered_sqlite, grant_type_not_registered_postgres);
/// The default client has no client_credentials grant; a public client can
/// never have it.
async fn grant_type_not_registered(backend: Backend) {
    let f = fixture(&backend).await;
    let resp = f
        .stack
        .token(f.client.basic(), &[("grant_type", "client_credentials")])
        .await
        .unwrap();
    assert_oauth_error(&resp, StatusCode::BAD_REQUEST, "unauthorized_client");

    // A service client (client_credentials only) gets no code: an error page.
    let service = f
        .stack
        .create_client(
            &ClientSpec::confidential("e2e service", REDIRECT).grant("client_credentials"),
        )
        .await
        .unwrap();
    let pkce = Pkce::new();
    let page = authorize_page(&f, &code_params(&service.id, SCOPE, "s", &pkce.challenge)).await;
    assert_error_page(&page);
}

both!(two_client_authentication_methods => two_client_authentication_methods_sqlite, two_client_authentication_methods_postgres);
/// RFC 6749 §2.3: a client uses one authentication method per request.
async fn two_client_authentication_methods(backend: Backend) {
    let f = fixture(&backend).await;
    let tokens = tokens(&f, SCOPE).await;
    let secret = f.client.secret.as_deref().unwrap();
    let url = f.stack.endpoint("token_endpoint").unwrap();
    let resp = f
        .stack
        .http
        .post(&url)
        .basic_auth(&f.client.id, Some(secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens.refresh.as_deref().unwrap()),
            ("client_id", f.client.id.as_str()),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    let resp = OAuthResponse::read(resp).await.unwrap();
    assert_oauth_error(&resp, StatusCode::BAD_REQUEST, "invalid_request");
}

both!(confidential_client_without_secret => confidential_client_without_secret_sqlite, confidential_client_without_secret_postgres);
/// A stolen refresh token of a confidential client is useless without the
/// client's secret, even when the thief names the client.
async fn confidential_client_without_secret(backend: Backend) {
    let f = fixture(&backend).await;
    let tokens = tokens(&f, SCOPE).await;
    let resp = refresh(
        &f.stack,
        ClientAuth::Public { id: &f.client.id },
        tokens.refresh.as_deref().unwrap(),
    )
    .await;
    assert_oauth_error(&resp, StatusCode::UNAUTHORIZED, "invalid_client");
    let resp = refresh(
        &f.stack,
        ClientAuth::None,
        tokens.refresh.as_deref().unwrap(),
    )
    .await;
    assert_oauth_error(&resp, StatusCode::UNAUTHORIZED, "invalid_client");
    // The token itself was not spent by these attempts.
    assert_tokens(
        &refresh(
            &f.stack,
            f.client.basic(),
            tokens.refresh.as_deref().unwrap(),
        )
        .await,
    );
}

both!(introspection_and_revocation_are_per_client => introspection_and_revocation_per_client_sqlite, introspection_and_revocation_per_client_postgres);
/// Introspection needs an authenticated confidential client, which learns only
/// about its own refresh tokens; revoking another client's token changes nothing.
async fn introspection_and_revocation_are_per_client(backend: Backend) {
    let f = fixture(&backend).await;
    let tokens = tokens(&f, SCOPE).await;
    let refresh_token = tokens.refresh.as_deref().unwrap();
    let public = f
        .stack
        .create_client(&ClientSpec::public("e2e spa", REDIRECT))
        .await
        .unwrap();
    let other = f
        .stack
        .create_client(&ClientSpec::confidential("e2e other", REDIRECT))
        .await
        .unwrap();

    let anonymous = f
        .stack
        .introspect(ClientAuth::None, &tokens.access)
        .await
        .unwrap();
    assert_oauth_error(&anonymous, StatusCode::UNAUTHORIZED, "invalid_client");
    let by_public = f
        .stack
        .introspect(public.basic(), &tokens.access)
        .await
        .unwrap();
    assert_oauth_error(&by_public, StatusCode::UNAUTHORIZED, "invalid_client");

    let own = f
        .stack
        .introspect(f.client.basic(), refresh_token)
        .await
        .unwrap();
    assert_eq!(own.json.as_ref().unwrap()["active"], true, "{own}");
    let foreign = f
        .stack
        .introspect(other.basic(), refresh_token)
        .await
        .unwrap();
    assert_eq!(foreign.json.as_ref().unwrap()["active"], false, "{foreign}");

    let revoked = f
        .stack
        .revoke(other.basic(), refresh_token, None)
        .await
        .unwrap();
    assert_eq!(revoked.status, StatusCode::OK, "{revoked}");
    // Still alive: another client cannot revoke it.
    assert_tokens(&refresh(&f.stack, f.client.basic(), refresh_token).await);
}
