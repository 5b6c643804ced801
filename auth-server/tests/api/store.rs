use auth_server::store::{codes, refresh};
use futures::future::join_all;

use crate::helpers::TestDb;

const N: usize = 20;

async fn family(db: &TestDb) -> (String, refresh::RefreshToken) {
    let token = refresh::create_family(
        &db.db,
        refresh::NewFamily {
            client_id: "client-a",
            user_id: "user-1",
            scope: "notes:read",
            code_id: Some("code-1"),
            ttl_secs: 3600,
        },
    )
    .await
    .unwrap();
    let row = refresh::find(&db.db, &token).await.unwrap().unwrap();
    (token, row)
}

async fn exactly_one_of_n_concurrent_rotations_wins(db: TestDb) {
    let (_, row) = family(&db).await;
    let attempts = (0..N).map(|_| refresh::rotate(&db.db, &row, "notes:read"));
    let results = join_all(attempts).await;
    let mut won = Vec::new();
    for result in results {
        if let refresh::Rotation::Rotated(token) = result.unwrap() {
            won.push(token);
        }
    }
    assert_eq!(won.len(), 1, "exactly one rotation must win");
    let old = refresh::find(&db.db, "x").await.unwrap();
    assert!(old.is_none());
    let successor = refresh::find(&db.db, &won[0]).await.unwrap().unwrap();
    assert_eq!(successor.family_id, row.family_id);
    assert_eq!(successor.parent_id.as_deref(), Some(row.id.as_str()));
    assert_eq!(
        successor.expires_at, row.expires_at,
        "the family lifetime is absolute"
    );
    // The rotated token can never rotate again.
    assert!(matches!(
        refresh::rotate(&db.db, &row, "notes:read").await.unwrap(),
        refresh::Rotation::Lost
    ));
    db.cleanup().await;
}

#[tokio::test]
async fn rotate_allows_exactly_one_of_20_concurrent_rotations_sqlite() {
    exactly_one_of_n_concurrent_rotations_wins(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn rotate_allows_exactly_one_of_20_concurrent_rotations_postgres() {
    if let Some(db) = TestDb::postgres().await {
        exactly_one_of_n_concurrent_rotations_wins(db).await;
    }
}

async fn exactly_one_of_n_concurrent_redemptions_is_fresh(db: TestDb) {
    let code = "the-code";
    codes::create(
        &db.db,
        codes::NewCode {
            code_hash: shared::secret::hash(code),
            client_id: "client-a",
            user_id: "user-1",
            redirect_uri: "https://app.example/cb",
            scope: "notes:read",
            pkce: Some("challengeS".into()),
            expires_at: i64::MAX / 2,
        },
    )
    .await
    .unwrap();
    let results = join_all((0..N).map(|_| codes::redeem(&db.db, code))).await;
    let fresh = results
        .into_iter()
        .filter(|r| matches!(r.as_ref().unwrap(), codes::Redeemed::Fresh(_)))
        .count();
    assert_eq!(fresh, 1);
    assert!(matches!(
        codes::redeem(&db.db, code).await.unwrap(),
        codes::Redeemed::Replayed(_)
    ));
    assert!(matches!(
        codes::redeem(&db.db, "other").await.unwrap(),
        codes::Redeemed::Unknown
    ));
    db.cleanup().await;
}

#[tokio::test]
async fn redeem_is_single_use_under_20_concurrent_redemptions_sqlite() {
    exactly_one_of_n_concurrent_redemptions_is_fresh(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn redeem_is_single_use_under_20_concurrent_redemptions_postgres() {
    if let Some(db) = TestDb::postgres().await {
        exactly_one_of_n_concurrent_redemptions_is_fresh(db).await;
    }
}

async fn revoking_by_code_revokes_the_whole_family(db: TestDb) {
    let (token, row) = family(&db).await;
    let refresh::Rotation::Rotated(next) =
        refresh::rotate(&db.db, &row, "notes:read").await.unwrap()
    else {
        panic!("rotation lost");
    };
    assert_eq!(
        refresh::revoke_by_code(&db.db, "code-1", refresh::REASON_CODE_REPLAY)
            .await
            .unwrap(),
        2
    );
    let now = i64::MAX / 4;
    for t in [token, next] {
        let r = refresh::find(&db.db, &t).await.unwrap().unwrap();
        assert!(r.revoked_at.is_some());
        assert_eq!(
            r.revoked_reason.as_deref(),
            Some(refresh::REASON_CODE_REPLAY)
        );
        assert!(!r.is_active(now.min(r.expires_at - 1)));
    }
    db.cleanup().await;
}

#[tokio::test]
async fn revoke_by_code_revokes_family_sqlite() {
    revoking_by_code_revokes_the_whole_family(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn revoke_by_code_revokes_family_postgres() {
    if let Some(db) = TestDb::postgres().await {
        revoking_by_code_revokes_the_whole_family(db).await;
    }
}

#[tokio::test]
async fn codes_expire() {
    let db = TestDb::sqlite().await;
    codes::create(
        &db.db,
        codes::NewCode {
            code_hash: shared::secret::hash("old"),
            client_id: "c",
            user_id: "u",
            redirect_uri: "https://app.example/cb",
            scope: "notes:read",
            pkce: None,
            expires_at: 0,
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        codes::redeem(&db.db, "old").await.unwrap(),
        codes::Redeemed::Expired
    ));
    db.cleanup().await;
}
