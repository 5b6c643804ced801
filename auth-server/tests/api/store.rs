//! The store's atomic operations under concurrency.

use auth_server::store::{codes, refresh};
use futures::future::join_all;

use crate::helpers::{TestDb, at, store_client};

const N: usize = 20;
const NOW: i64 = 1_000_000;

async fn family(db: &TestDb, token: &str) -> refresh::RefreshToken {
    refresh::create_family(
        &db.db,
        refresh::NewFamily {
            token,
            client_id: "client-a",
            user_id: "user-1",
            scope: "notes:read",
            code_id: Some("code-1"),
            expires_at: NOW + 3600,
            now: NOW,
        },
    )
    .await
    .unwrap();
    refresh::find(&db.db, token).await.unwrap().unwrap()
}

async fn exactly_one_of_n_concurrent_rotations_wins(db: TestDb) {
    let row = family(&db, "first").await;
    let attempts = (0..N).map(|i| {
        let successor = format!("successor-{i}");
        let row = row.clone();
        let db = db.db.clone();
        async move {
            let result = refresh::rotate(&db, &row, &successor, NOW).await.unwrap();
            matches!(result, refresh::Rotation::Rotated).then_some(successor)
        }
    });
    let won: Vec<String> = join_all(attempts).await.into_iter().flatten().collect();
    assert_eq!(won.len(), 1, "exactly one rotation must win");
    let successor = refresh::find(&db.db, &won[0]).await.unwrap().unwrap();
    assert_eq!(successor.family_id, row.family_id);
    assert_eq!(successor.parent_id.as_deref(), Some(row.id.as_str()));
    assert_eq!(
        successor.expires_at, row.expires_at,
        "the family lifetime is absolute"
    );
    // The rotated token can never rotate again.
    assert!(matches!(
        refresh::rotate(&db.db, &row, "again", NOW).await.unwrap(),
        refresh::Rotation::Lost
    ));
    db.cleanup().await;
}

#[tokio::test]
async fn rotate_allows_exactly_one_of_20_concurrent_rotations_sqlite() {
    exactly_one_of_n_concurrent_rotations_wins(TestDb::sqlite().await).await;
}

test_gates::needs! { [postgres]
    #[tokio::test]
    async fn rotate_allows_exactly_one_of_20_concurrent_rotations_postgres() {
        if let Some(db) =
            TestDb::postgres("rotate_allows_exactly_one_of_20_concurrent_rotations_postgres").await
        {
            exactly_one_of_n_concurrent_rotations_wins(db).await;
        }
    }
}

fn new_code(hash: String, expires_at: i64) -> codes::NewCode<'static> {
    codes::NewCode {
        code_hash: hash,
        client_id: "client-a",
        user_id: "user-1",
        redirect_uri: "https://app.example/cb",
        redirect_uri_given: true,
        scope: "notes:read",
        pkce: Some("challengeS".into()),
        expires_at,
        now: NOW,
    }
}

async fn exactly_one_of_n_concurrent_redemptions_is_fresh(db: TestDb) {
    let code = "the-code";
    store_client(&db.db, "client-a").await;
    codes::create(&db.db, new_code(shared::secret::hash(code), NOW + 60))
        .await
        .unwrap();
    let results = join_all((0..N).map(|_| codes::redeem(&db.db, code, at("client-a"), NOW))).await;
    let fresh = results
        .into_iter()
        .filter(|r| matches!(r.as_ref().unwrap(), codes::Redeemed::Fresh(_)))
        .count();
    assert_eq!(fresh, 1);
    assert!(matches!(
        codes::redeem(&db.db, code, at("client-a"), NOW)
            .await
            .unwrap(),
        codes::Redeemed::Replayed(_)
    ));
    assert!(matches!(
        codes::redeem(&db.db, "other", at("client-a"), NOW)
            .await
            .unwrap(),
        codes::Redeemed::Unknown
    ));
    db.cleanup().await;
}

#[tokio::test]
async fn redeem_is_single_use_under_20_concurrent_redemptions_sqlite() {
    exactly_one_of_n_concurrent_redemptions_is_fresh(TestDb::sqlite().await).await;
}

test_gates::needs! { [postgres]
    #[tokio::test]
    async fn redeem_is_single_use_under_20_concurrent_redemptions_postgres() {
        if let Some(db) =
            TestDb::postgres("redeem_is_single_use_under_20_concurrent_redemptions_postgres").await
        {
            exactly_one_of_n_concurrent_redemptions_is_fresh(db).await;
        }
    }
}

async fn revoking_by_code_revokes_the_whole_family(db: TestDb) {
    let row = family(&db, "first").await;
    assert!(matches!(
        refresh::rotate(&db.db, &row, "second", NOW).await.unwrap(),
        refresh::Rotation::Rotated
    ));
    assert_eq!(
        refresh::revoke_by_code(&db.db, "code-1", refresh::REASON_CODE_REPLAY, NOW)
            .await
            .unwrap(),
        2
    );
    for t in ["first", "second"] {
        let r = refresh::find(&db.db, t).await.unwrap().unwrap();
        assert!(r.revoked_at.is_some());
        assert_eq!(
            r.revoked_reason.as_deref(),
            Some(refresh::REASON_CODE_REPLAY)
        );
        assert!(!r.is_active(NOW));
    }
    db.cleanup().await;
}

#[tokio::test]
async fn revoke_by_code_revokes_family_sqlite() {
    revoking_by_code_revokes_the_whole_family(TestDb::sqlite().await).await;
}

test_gates::needs! { [postgres]
    #[tokio::test]
    async fn revoke_by_code_revokes_family_postgres() {
        if let Some(db) = TestDb::postgres("revoke_by_code_revokes_family_postgres").await {
            revoking_by_code_revokes_the_whole_family(db).await;
        }
    }
}

#[tokio::test]
async fn redeem_reports_expired_when_code_is_past_its_life() {
    let db = TestDb::sqlite().await;
    store_client(&db.db, "client-a").await;
    codes::create(&db.db, new_code(shared::secret::hash("old"), NOW - 1))
        .await
        .unwrap();
    assert!(matches!(
        codes::redeem(&db.db, "old", at("client-a"), NOW)
            .await
            .unwrap(),
        codes::Redeemed::Expired
    ));
    db.cleanup().await;
}
