//! API keys of clients (`shared::api_key`, table `api_keys`): created with
//! a key shown once and stored only as its SHA-256 hash, listed without it,
//! revoked by setting `revoked_at`. The resource API reads the same table to
//! verify a key (`resource-api/src/store/api_keys.rs`).

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};
use shared::api_key::{self, Mode};

/// The `api_keys` table (migration `m20251201_000001_api_keys`).
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Debug, Clone, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        /// The public key id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub client_id: String,
        /// SHA-256 hex of the whole key; never shown.
        #[serde(skip)]
        pub key_hash: String,
        /// `live` or `test`.
        pub mode: String,
        pub created_at: i64,
        pub expires_at: Option<i64>,
        pub revoked_at: Option<i64>,
        pub last_used_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `clients.is_test`: a test client, whose keys are `sk_test_…`.
mod client_flag {
    use sea_orm::entity::prelude::*;

    #[derive(Debug, Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "clients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub is_test: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as ApiKey;

/// Longest expiry a key may be given, in days.
pub const MAX_EXPIRES_IN_DAYS: i64 = 3650;

/// A key just created: its row and the whole key, to show once.
#[derive(Debug)]
pub struct Created {
    pub row: ApiKey,
    pub key: String,
}

/// Whether a key is usable at `now`.
pub fn is_active(key: &ApiKey, now: i64) -> bool {
    key.revoked_at.is_none() && key.expires_at.is_none_or(|at| at > now)
}

/// Creates a key for `client_id`, expiring after `expires_in_days` when
/// given. `None` when there is no such client.
pub async fn create<C: ConnectionTrait>(
    db: &C,
    client_id: &str,
    expires_in_days: Option<i64>,
    now: i64,
) -> anyhow::Result<Option<Created>> {
    let Some(client) = client_flag::Entity::find_by_id(client_id.to_owned())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let mode = if client.is_test {
        Mode::Test
    } else {
        Mode::Live
    };
    let generated = api_key::generate(mode)?;
    let expires_at = expires_in_days.map(|days| now.saturating_add(days.saturating_mul(86_400)));
    let row = entity::ActiveModel {
        id: Set(generated.id),
        client_id: Set(client_id.to_owned()),
        key_hash: Set(generated.hash),
        mode: Set(mode.as_str().to_owned()),
        created_at: Set(now),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
        last_used_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(Some(Created {
        row,
        key: generated.key,
    }))
}

/// Whether a client exists.
pub async fn client_exists<C: ConnectionTrait>(db: &C, client_id: &str) -> Result<bool, DbErr> {
    Ok(client_flag::Entity::find_by_id(client_id.to_owned())
        .one(db)
        .await?
        .is_some())
}

/// The keys of a client, oldest first (revoked and expired ones included).
pub async fn list<C: ConnectionTrait>(db: &C, client_id: &str) -> Result<Vec<ApiKey>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::ClientId.eq(client_id))
        .order_by_asc(entity::Column::CreatedAt)
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await
}

/// Revokes key `key_id` (of `client_id` when given) at `now`; a key revoked
/// already keeps its first revocation time. `None` when there is no such key.
pub async fn revoke<C: ConnectionTrait>(
    db: &C,
    client_id: Option<&str>,
    key_id: &str,
    now: i64,
) -> Result<Option<ApiKey>, DbErr> {
    let Some(row) = entity::Entity::find_by_id(key_id.to_owned())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if client_id.is_some_and(|c| c != row.client_id) {
        return Ok(None);
    }
    if row.revoked_at.is_some() {
        return Ok(Some(row));
    }
    entity::Entity::update_many()
        .col_expr(
            entity::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(entity::Column::Id.eq(key_id))
        .filter(entity::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    entity::Entity::find_by_id(key_id.to_owned()).one(db).await
}

/// Marks a client as a test client (`clients create --test`): its keys are
/// `sk_test_…`.
pub async fn mark_test_client<C: ConnectionTrait>(db: &C, client_id: &str) -> Result<(), DbErr> {
    client_flag::Entity::update_many()
        .col_expr(
            client_flag::Column::IsTest,
            sea_orm::sea_query::Expr::value(true),
        )
        .filter(client_flag::Column::Id.eq(client_id))
        .exec(db)
        .await
        .map(|_| ())
}
