use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub email: String,
    pub name: String,
    pub password_hash: Option<String>,
    pub roles: String,
    pub created_at: i64,
    /// `standard` or `premium` (the resource API's rate-limit tier).
    pub tier: String,
    /// When an admin disabled the account (Unix seconds); None = enabled.
    pub disabled_at: Option<i64>,
    /// When the account last changed (Unix seconds): set with
    /// `created_at`, moved by every change (`store::users`).
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
