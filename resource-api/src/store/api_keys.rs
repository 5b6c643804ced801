//! API keys (`shared::api_key`), read from the `api_keys` table the auth
//! server writes (same database): a presented key is looked up by its public
//! id, its SHA-256 hash compared in constant time, its expiry and revocation
//! checked, and the client's scopes and tier read from `clients`.
//!
//! Uses are coalesced: `last_used_at` is written, and one `api_key.used`
//! audit event appended, only when the last recorded use is at least
//! [`shared::api_key::USE_COALESCE_SECS`] old. The conditional `UPDATE`
//! decides, so several instances write at most one row per key per minute
//! between them, and a busy key costs one read per request.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use shared::api_key;
use shared::contract::Tier;

use super::audit;
use crate::clock::Clock;

/// The `api_keys` table (migration `m20251201_000001_api_keys`).
pub mod key_entity {
    use sea_orm::entity::prelude::*;

    #[derive(Debug, Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        /// The public key id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub client_id: String,
        /// SHA-256 hex of the whole key.
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

/// The columns of `clients` an API key needs (the auth server owns the table).
pub mod client_entity {
    use sea_orm::entity::prelude::*;

    #[derive(Debug, Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "clients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Space separated.
        pub scopes: String,
        pub tier: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Who a valid key speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    pub key_id: String,
    pub client_id: String,
    pub scope: String,
    pub tier: Tier,
}

/// The verdict on a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    Valid(KeyIdentity),
    /// Refused, with a short reason that never holds the key.
    Refused(&'static str),
    /// The key was revoked: refused, and a security event.
    Revoked {
        key_id: String,
        client_id: String,
    },
}

/// Checks `presented` at `now` (Unix seconds).
pub async fn check(db: &DatabaseConnection, presented: &str, now: i64) -> Result<KeyCheck, DbErr> {
    let Some(parsed) = api_key::parse(presented) else {
        return Ok(KeyCheck::Refused("malformed API key"));
    };
    let Some(row) = key_entity::Entity::find_by_id(parsed.id.to_owned())
        .one(db)
        .await?
    else {
        return Ok(KeyCheck::Refused("unknown API key"));
    };
    // The whole key against its hash, in constant time; the mode is part of
    // the hashed key, so a live key cannot pass as a test key.
    if !api_key::verify(presented, &row.key_hash) || row.mode != parsed.mode.as_str() {
        return Ok(KeyCheck::Refused("unknown API key"));
    }
    if row.revoked_at.is_some() {
        return Ok(KeyCheck::Revoked {
            key_id: row.id,
            client_id: row.client_id,
        });
    }
    if row.expires_at.is_some_and(|at| at <= now) {
        return Ok(KeyCheck::Refused("API key expired"));
    }
    let Some(client) = client_entity::Entity::find_by_id(row.client_id.clone())
        .one(db)
        .await?
    else {
        return Ok(KeyCheck::Refused("unknown API key"));
    };
    Ok(KeyCheck::Valid(KeyIdentity {
        key_id: row.id,
        client_id: row.client_id,
        scope: client.scopes,
        tier: Tier::parse(&client.tier).unwrap_or_default(),
    }))
}

/// Records a use of a valid key, coalesced (module documentation): returns
/// whether this use was the one written.
pub async fn record_use(
    db: &DatabaseConnection,
    clock: &Clock,
    key: &KeyIdentity,
    client_ip: Option<String>,
) -> Result<bool, DbErr> {
    let now = clock.unix_seconds();
    let stale = now.saturating_sub(api_key::USE_COALESCE_SECS);
    let updated = key_entity::Entity::update_many()
        .col_expr(key_entity::Column::LastUsedAt, Expr::value(now))
        .filter(key_entity::Column::Id.eq(key.key_id.as_str()))
        .filter(
            Condition::any()
                .add(key_entity::Column::LastUsedAt.is_null())
                .add(key_entity::Column::LastUsedAt.lte(stale)),
        )
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Ok(false);
    }
    let event = audit::Event {
        kind: api_key::AUDIT_USED,
        user_id: None,
        client_id: Some(key.client_id.clone()),
        detail: serde_json::json!({
            "key_id": key.key_id,
            "client_ip": client_ip,
            "coalesce_secs": api_key::USE_COALESCE_SECS,
        }),
    };
    audit::record(db, clock, event).await;
    Ok(true)
}

/// Records the use of a revoked key: a security event. Each one is written
/// (the invalid-credentials counter of `http::limits` bounds a flood).
pub async fn record_revoked_use(
    db: &DatabaseConnection,
    clock: &Clock,
    key_id: &str,
    client_id: &str,
    client_ip: Option<String>,
) {
    let event = audit::Event {
        kind: api_key::AUDIT_REVOKED_USE,
        user_id: None,
        client_id: Some(client_id.to_owned()),
        detail: serde_json::json!({
            "key_id": key_id,
            "client_ip": client_ip,
            "outcome": "denied",
        }),
    };
    audit::record(db, clock, event).await;
}
