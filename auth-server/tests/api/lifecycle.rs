//! What the CLI's lifecycle commands do to the running server (issue 9):
//! a rotated client secret keeps working for its grace, measured by the
//! server's clock, and a third secret drops the first; deleting a client or
//! a user, and setting a password, end what they must in one go.

use auth_server::clock::Clock;
use auth_server::store::entities::{audit_events, authorization_codes, login_sessions, users};
use auth_server::store::lifecycle::{self, Rotation};
use migrations::sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use migrations::{Migrator, MigratorTrait};

use crate::helpers::{AppOptions, Backend, TestApp, TestClient, both, machine_client, spawn_app};

async fn app(backend: Backend) -> Option<TestApp> {
    spawn_app(backend, AppOptions::default()).await
}

/// The status of a client_credentials request with `secret`.
async fn token_status(app: &TestApp, id: &str, secret: &str) -> (u16, serde_json::Value) {
    app.token(&[
        ("grant_type", "client_credentials".to_owned()),
        ("scope", "notes:read".to_owned()),
        ("client_id", id.to_owned()),
        ("client_secret", secret.to_owned()),
    ])
    .await
}

/// Rotates through the store, as `clients rotate-secret` does; the new secret.
async fn rotate(app: &TestApp, id: &str, grace: i64) -> (String, Rotation) {
    let secret = shared::secret::generate().unwrap();
    let rotation = lifecycle::rotate_secret(
        &app.db.db,
        id,
        &shared::secret::hash(&secret),
        grace,
        app.clock.now(),
    )
    .await
    .unwrap();
    (secret, rotation)
}

async fn rotated_secret_works_for_its_grace_only(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = machine_client(&app).await;
    let old = client.secret.clone().unwrap();
    assert_eq!(token_status(&app, &client.id, &old).await.0, 200);
    let (new, rotation) = rotate(&app, &client.id, 3600).await;
    assert_eq!(
        rotation,
        Rotation::Rotated {
            previous_expires_at: Some(app.clock.now() + 3600),
            dropped_older: false,
        }
    );
    // Within the grace, both.
    assert_eq!(token_status(&app, &client.id, &old).await.0, 200);
    assert_eq!(token_status(&app, &client.id, &new).await.0, 200);
    app.clock.advance(3599);
    assert_eq!(token_status(&app, &client.id, &old).await.0, 200);
    // From its end, only the new one.
    app.clock.advance(1);
    let (status, body) = token_status(&app, &client.id, &old).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(token_status(&app, &client.id, &new).await.0, 200);
    assert_eq!(app.audit_count("client.secret_rotated").await, 1);
    app.stop().await;
}
both!(rotated_secret_works_for_its_grace_only => rotated_secret_works_for_its_grace_only_sqlite, rotated_secret_works_for_its_grace_only_postgres);

async fn third_secret_drops_the_first(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = machine_client(&app).await;
    let first = client.secret.clone().unwrap();
    let (second, _) = rotate(&app, &client.id, 86_400).await;
    let (third, rotation) = rotate(&app, &client.id, 86_400).await;
    assert_eq!(
        rotation,
        Rotation::Rotated {
            previous_expires_at: Some(app.clock.now() + 86_400),
            dropped_older: true,
        }
    );
    // The first is refused although its grace has not run out.
    assert_eq!(token_status(&app, &client.id, &first).await.0, 401);
    assert_eq!(token_status(&app, &client.id, &second).await.0, 200);
    assert_eq!(token_status(&app, &client.id, &third).await.0, 200);
    // A grace of 0 ends the current secret at once.
    let (fourth, rotation) = rotate(&app, &client.id, 0).await;
    assert_eq!(
        rotation,
        Rotation::Rotated {
            previous_expires_at: None,
            dropped_older: true,
        }
    );
    assert_eq!(token_status(&app, &client.id, &second).await.0, 401);
    assert_eq!(token_status(&app, &client.id, &third).await.0, 401);
    assert_eq!(token_status(&app, &client.id, &fourth).await.0, 200);
    app.stop().await;
}
both!(third_secret_drops_the_first => third_secret_drops_the_first_sqlite, third_secret_drops_the_first_postgres);

async fn rotation_refuses_public_and_unknown_clients(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let public = app.client(true, None).await;
    assert_eq!(rotate(&app, &public.id, 60).await.1, Rotation::Public);
    assert_eq!(rotate(&app, "c_nope", 60).await.1, Rotation::NotFound);
    let (client, _) = lifecycle::find_client(&app.db.db, &public.id)
        .await
        .unwrap()
        .unwrap();
    assert!(client.is_public(), "still public, still no secret");
    assert_eq!(app.audit_count("client.secret_rotated").await, 0);
    app.stop().await;
}
both!(rotation_refuses_public_and_unknown_clients => rotation_refuses_public_and_unknown_clients_sqlite, rotation_refuses_public_and_unknown_clients_postgres);

/// A refresh token and an unexchanged code of the test user at `client`.
async fn tokens_and_code(app: &TestApp, client: &TestClient) -> String {
    let tokens = app.tokens_for(client).await;
    app.code(client, &"w".repeat(43), true).await;
    tokens["refresh_token"].as_str().unwrap().to_owned()
}

async fn codes_of(app: &TestApp, column: authorization_codes::Column, id: &str) -> u64 {
    authorization_codes::Entity::find()
        .filter(column.eq(id))
        .filter(authorization_codes::Column::UsedAt.is_null())
        .count(&app.db.db)
        .await
        .unwrap()
}

async fn deleting_a_client_ends_its_tokens_and_codes(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client(false, None).await;
    let other = app.client(false, None).await;
    let refresh = tokens_and_code(&app, &client).await;
    let other_refresh = tokens_and_code(&app, &other).await;
    let done = lifecycle::delete_client(&app.db.db, &client.id, app.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.refresh_tokens, 1);
    assert_eq!(done.codes, 2, "the exchanged code and the unexchanged one");
    assert_eq!(
        codes_of(&app, authorization_codes::Column::ClientId, &client.id).await,
        0
    );
    let (status, body) = app.refresh(&client, &refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(
        lifecycle::find_client(&app.db.db, &client.id)
            .await
            .unwrap()
            .is_none()
    );
    // Another client is untouched.
    assert_eq!(app.refresh(&other, &other_refresh).await.0, 200);
    assert_eq!(app.audit_count("client.deleted").await, 1);
    // Again: nothing to delete.
    assert!(
        lifecycle::delete_client(&app.db.db, &client.id, app.clock.now())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(app.audit_count("client.deleted").await, 1);
    app.stop().await;
}
both!(deleting_a_client_ends_its_tokens_and_codes => deleting_a_client_ends_its_tokens_and_codes_sqlite, deleting_a_client_ends_its_tokens_and_codes_postgres);

async fn deleting_a_user_ends_their_sessions_and_tokens_and_keeps_the_audit(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client(false, None).await;
    let refresh = tokens_and_code(&app, &client).await;
    let now = app.clock.now();
    auth_server::store::sessions::create(&app.db.db, Some(&app.user_id), 3600, now)
        .await
        .unwrap();
    let audit_before = audit_events::Entity::find()
        .filter(audit_events::Column::UserId.eq(app.user_id.clone()))
        .count(&app.db.db)
        .await
        .unwrap();
    assert!(audit_before > 0, "the code exchange was audited");
    let done = lifecycle::delete_user(&app.db.db, &app.user_id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.sessions, done.refresh_tokens, done.codes), (1, 1, 1));
    assert!(
        users::Entity::find_by_id(app.user_id.clone())
            .one(&app.db.db)
            .await
            .unwrap()
            .is_none()
    );
    let sessions = login_sessions::Entity::find()
        .filter(login_sessions::Column::UserId.eq(app.user_id.clone()))
        .count(&app.db.db)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
    assert_eq!(
        codes_of(&app, authorization_codes::Column::UserId, &app.user_id).await,
        0
    );
    let (status, body) = app.refresh(&client, &refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Audit rows stay, and one more says who deleted the account.
    let audit_after = audit_events::Entity::find()
        .filter(audit_events::Column::UserId.eq(app.user_id.clone()))
        .count(&app.db.db)
        .await
        .unwrap();
    assert!(
        audit_after > audit_before,
        "{audit_before} -> {audit_after}"
    );
    assert_eq!(app.audit_count("user.deleted").await, 1);
    assert!(
        lifecycle::delete_user(&app.db.db, &app.user_id, now)
            .await
            .unwrap()
            .is_none()
    );
    app.stop().await;
}
both!(deleting_a_user_ends_their_sessions_and_tokens_and_keeps_the_audit => deleting_a_user_ends_their_sessions_and_tokens_and_keeps_the_audit_sqlite, deleting_a_user_ends_their_sessions_and_tokens_and_keeps_the_audit_postgres);

async fn setting_a_password_ends_sessions_and_refresh_tokens(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = app.client(false, None).await;
    let refresh = app.tokens_for(&client).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = app.clock.now();
    auth_server::store::sessions::create(&app.db.db, Some(&app.user_id), 3600, now)
        .await
        .unwrap();
    let user = auth_server::store::users::find(&app.db.db, &app.user_id)
        .await
        .unwrap()
        .unwrap();
    let hash = auth_server::password::hash("a brand new passphrase 42".to_owned())
        .await
        .unwrap();
    let done = lifecycle::set_password(&app.db.db, &user, &hash, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.sessions, done.refresh_tokens), (1, 1));
    let stored = auth_server::store::users::find(&app.db.db, &app.user_id)
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    assert!(
        auth_server::password::verify("a brand new passphrase 42".to_owned(), stored.clone())
            .await
            .unwrap()
    );
    assert!(
        !auth_server::password::verify(crate::helpers::PASSWORD.to_owned(), stored)
            .await
            .unwrap()
    );
    assert_eq!(app.refresh(&client, &refresh).await.0, 400);
    assert_eq!(app.audit_count("password.set_by_admin").await, 1);
    app.stop().await;
}
both!(setting_a_password_ends_sessions_and_refresh_tokens => setting_a_password_ends_sessions_and_refresh_tokens_sqlite, setting_a_password_ends_sessions_and_refresh_tokens_postgres);

/// The migration that adds the previous secret goes down and up again on
/// both databases, keeping the clients.
async fn previous_secret_migration_goes_down_and_up(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let client = machine_client(&app).await;
    rotate(&app, &client.id, 60).await;
    let newer = Migrator::migrations()
        .iter()
        .rev()
        .position(|m| m.name() == "m20251130_000001_client_previous_secret")
        .unwrap();
    app.stop_server().await;
    migrations::db::down(&app.db.db, Some(u32::try_from(newer + 1).unwrap()))
        .await
        .unwrap();
    let clients = auth_server::store::entities::clients::Entity::find()
        .count(&app.db.db)
        .await;
    assert!(clients.is_err(), "the entity's columns are gone");
    migrations::db::up(&app.db.db, None).await.unwrap();
    let (found, _) = lifecycle::find_client(&app.db.db, &client.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        found.previous_secret.is_none(),
        "the data went with the columns"
    );
    assert!(!found.authenticate(client.secret.as_deref(), app.clock.now()));
    app.stop().await;
}
both!(previous_secret_migration_goes_down_and_up => previous_secret_migration_goes_down_and_up_sqlite, previous_secret_migration_goes_down_and_up_postgres);
