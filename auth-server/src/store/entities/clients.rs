use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "clients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub secret_hash: Option<String>,
    pub redirect_uris: String,
    pub grant_types: String,
    pub scopes: String,
    pub created_at: i64,
    pub refresh_grace_secs: Option<i64>,
    /// `standard` or `premium` (the resource API's rate-limit tier).
    pub tier: String,
    /// The secret before the last `clients rotate-secret` (SHA-256 hex),
    /// accepted until `previous_secret_expires_at`; None: none.
    pub previous_secret_hash: Option<String>,
    /// Unix seconds; the previous secret is refused from then on.
    pub previous_secret_expires_at: Option<i64>,
    /// Moved on by every change to the row (`store::lifecycle`); what a
    /// server cached is checked against it (`crate::cache`).
    pub revision: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
