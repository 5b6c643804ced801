//! The token endpoint's rules, in-process.

use base64::Engine;
use futures::future::join_all;
use serde_json::Value;

use crate::helpers::{AppOptions, Backend, REDIRECT, TestApp, both, spawn_app};

async fn app(backend: Backend) -> Option<TestApp> {
    spawn_app(backend, AppOptions::default()).await
}

fn code_form(
    client: &crate::helpers::TestClient,
    code: &str,
    verifier: &str,
) -> Vec<(&'static str, String)> {
    let mut form = client.form();
    form.extend([
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("code_verifier", verifier.to_owned()),
    ]);
    form
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn token_refuses_code_verifier_outside_rfc7636_syntax() {
    let app = app(Backend::Sqlite).await.unwrap();
    let client = app.client(false, None).await;
    for verifier in [
        "a".to_owned(),
        " ".to_owned(),
        "a".repeat(129),
        format!("{}+/=", "a".repeat(43)),
        format!("{}é", "a".repeat(43)),
    ] {
        // The challenge matches the verifier: only its syntax is wrong.
        let code = app.code(&client, &verifier, true).await;
        let (status, body) = app.token(&code_form(&client, &code, &verifier)).await;
        assert_eq!(status, 400, "{verifier:?}: {body}");
        assert_eq!(error(&body), "invalid_grant", "{verifier:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn token_refuses_code_when_clock_passes_its_60_seconds() {
    let app = app(Backend::Sqlite).await.unwrap();
    let client = app.client(false, None).await;
    let verifier = "v".repeat(43);
    let code = app.code(&client, &verifier, true).await;
    app.clock.advance(61);
    let (status, body) = app.token(&code_form(&client, &code, &verifier)).await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn token_requires_redirect_uri_only_when_the_authorization_request_had_one() {
    let app = app(Backend::Sqlite).await.unwrap();
    let client = app.client(false, None).await;
    let verifier = "v".repeat(43);
    let without = |code: String| {
        let mut form = code_form(&client, &code, &verifier);
        form.retain(|(k, _)| *k != "redirect_uri");
        form
    };
    let given = app.code(&client, &verifier, true).await;
    let (status, body) = app.token(&without(given)).await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"), "{body}");
    let not_given = app.code(&client, &verifier, false).await;
    let (status, body) = app.token(&without(not_given)).await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn token_answers_alike_for_unknown_and_other_clients_refresh_tokens() {
    let app = app(Backend::Sqlite).await.unwrap();
    let owner = app.client(false, None).await;
    let other = app.client(false, None).await;
    let tokens = app.tokens_for(&owner).await;
    let live = tokens["refresh_token"].as_str().unwrap();
    let (s1, foreign) = app.refresh(&other, live).await;
    let (s2, unknown) = app.refresh(&other, "no-such-token").await;
    assert_eq!((s1, s2), (400, 400));
    assert_eq!(foreign, unknown, "the answers must not tell the two apart");
    // The owner's token was not touched.
    let (status, body) = app.refresh(&owner, live).await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn token_refuses_basic_credentials_with_text_after_an_ampersand() {
    let app = app(Backend::Sqlite).await.unwrap();
    let client = app.client(false, None).await;
    let secret = client.secret.clone().unwrap();
    let basic = |raw: String| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    };
    let send = |auth: String| {
        app.http
            .post(app.url("/token"))
            .header("authorization", auth)
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    let cut = send(basic(format!("{}:{secret}&x", client.id)))
        .await
        .unwrap();
    assert_eq!(cut.status().as_u16(), 401);
    assert!(cut.headers().contains_key("www-authenticate"));
    // The right secret gets past authentication (the client has no
    // client_credentials grant: unauthorized_client, not invalid_client).
    let right = send(basic(format!("{}:{secret}", client.id)))
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 400);
    let body: Value = right.json().await.unwrap();
    assert_eq!(error(&body), "unauthorized_client");
    app.stop().await;
}

/// 30 races of 20 concurrent redemptions of one code: whoever wins, its
/// refresh token is refused afterwards (the replays revoked it).
async fn code_replay_race_revokes_winners_family(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client(false, None).await;
    let verifier = "v".repeat(43);
    for round in 0..30 {
        let code = app.code(&client, &verifier, true).await;
        let form = code_form(&client, &code, &verifier);
        let answers = join_all((0..20).map(|_| app.token(&form))).await;
        let winners: Vec<&Value> = answers
            .iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one exchange wins");
        let token = winners[0]["refresh_token"].as_str().unwrap();
        let (status, body) = app.refresh(&client, token).await;
        assert_eq!(
            (status, error(&body)),
            (400, "invalid_grant"),
            "round {round}: the winner's refresh token must be revoked by the replays"
        );
    }
    app.stop().await;
}
both!(code_replay_race_revokes_winners_family => code_replay_race_revokes_winner_sqlite, code_replay_race_revokes_winner_postgres);

/// With grace off, of 20 concurrent refreshes with one token exactly one
/// succeeds and the family is revoked (RFC 9700 §4.14).
async fn concurrent_refreshes_without_grace(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client(false, None).await;
    let tokens = app.tokens_for(&client).await;
    let token = tokens["refresh_token"].as_str().unwrap();
    let answers = join_all((0..20).map(|_| app.refresh(&client, token))).await;
    let ok: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(ok.len(), 1);
    let successor = ok[0]["refresh_token"].as_str().unwrap();
    let (status, _) = app.refresh(&client, successor).await;
    assert_eq!(status, 400, "reuse revoked the whole family");
    app.stop().await;
}
both!(concurrent_refreshes_without_grace => refresh_without_grace_lets_one_of_20_win_sqlite, refresh_without_grace_lets_one_of_20_win_postgres);

/// One failure policy: when the audit write fails after a revocation
/// committed, the revocation stands, the client gets the usual answer, and
/// the failure is counted.
#[tokio::test]
async fn reuse_revokes_family_and_counts_audit_failure_when_audit_write_fails() {
    use migrations::sea_orm::ConnectionTrait;
    use std::sync::atomic::Ordering;
    let app = app(Backend::Sqlite).await.unwrap();
    let client = app.client(false, None).await;
    let first = app.tokens_for(&client).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, second) = app.refresh(&client, &first).await;
    assert_eq!(status, 200);
    app.db
        .db
        .execute_unprepared("DROP TABLE audit_events")
        .await
        .unwrap();
    let (status, body) = app.refresh(&client, &first).await;
    assert_eq!((status, error(&body)), (400, "invalid_grant"), "{body}");
    let (status, _) = app
        .refresh(&client, second["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 400, "the revocation stands");
    assert_eq!(app.state.audit_failures.load(Ordering::Relaxed), 1);
    app.stop().await;
}

/// Every issued token is a security event: who (the user, or none under
/// client credentials), which client, which grant, from where; never the
/// token itself.
#[tokio::test]
async fn token_issuance_is_audited_with_user_client_grant_and_caller() {
    use auth_server::store::entities::audit_events;
    use migrations::sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

    let app = app(Backend::Sqlite).await.unwrap();
    let client = app.client(false, None).await;
    let tokens = app.tokens_for(&client).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, refreshed) = app.refresh(&client, &refresh_token).await;
    assert_eq!(status, 200, "{refreshed}");
    let machine = crate::helpers::machine_client(&app).await;
    let mut form = machine.form();
    form.push(("grant_type", "client_credentials".to_owned()));
    let response = app
        .http
        .post(app.url("/token"))
        .header("user-agent", "audit-probe/1.0")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let machine_tokens: Value = response.json().await.unwrap();
    // A refused exchange issues nothing and records no issuance.
    let (status, _) = app.refresh(&client, &refresh_token).await;
    assert_eq!(status, 400);

    let rows = audit_events::Entity::find()
        .filter(audit_events::Column::Kind.eq("token.issued"))
        .order_by_asc(audit_events::Column::At)
        .order_by_asc(audit_events::Column::Id)
        .all(&app.db.db)
        .await
        .unwrap();
    let grants: Vec<String> = rows
        .iter()
        .map(|r| {
            let detail: Value = serde_json::from_str(&r.detail).unwrap();
            detail["grant_type"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut sorted = grants.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["authorization_code", "client_credentials", "refresh_token"],
        "{grants:?}"
    );
    for row in &rows {
        let detail: Value = serde_json::from_str(&row.detail).unwrap();
        assert_eq!(detail["client_ip"], "127.0.0.1", "{detail}");
        assert!(detail["jti"].as_str().is_some_and(|j| !j.is_empty()));
        let user = row.user_id.as_deref();
        if detail["grant_type"] == "client_credentials" {
            assert_eq!(row.client_id.as_deref(), Some(machine.id.as_str()));
            assert_eq!(user, None, "a client acting for itself has no user");
            assert_eq!(detail["user_agent"], "audit-probe/1.0");
            assert_eq!(detail["refresh_token"], false);
        } else {
            assert_eq!(row.client_id.as_deref(), Some(client.id.as_str()));
            assert_eq!(user, Some(app.user_id.as_str()));
            assert_eq!(detail["refresh_token"], true);
        }
        // No token in the trail.
        for secret in [
            tokens["access_token"].as_str().unwrap(),
            refresh_token.as_str(),
            refreshed["access_token"].as_str().unwrap(),
            refreshed["refresh_token"].as_str().unwrap(),
            machine_tokens["access_token"].as_str().unwrap(),
        ] {
            assert!(!row.detail.contains(secret), "{}", row.detail);
        }
    }
    app.stop().await;
}
