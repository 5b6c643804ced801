use sea_orm::entity::prelude::*;

/// An authorization request shown on a consent page, waiting for the user's
/// decision. `id` is the SHA-256 of the one-time handle the page carries.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pending_authorizations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub session_id: String,
    pub client_id: String,
    /// The validated authorization request, JSON.
    pub request: String,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
