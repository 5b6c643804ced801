//! The `audit_events` table (see migrations `m20251125_000001_create_core`),
//! shared with the auth server, which reads it (`audit tail`, alerts). The
//! resource API only appends to it.

use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    /// A UUID, as text.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Unix seconds.
    pub at: i64,
    pub kind: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// JSON; never a secret.
    pub detail: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
