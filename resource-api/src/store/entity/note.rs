//! The `notes` table (see migrations `m20251125_000001_create_core`).

use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notes")]
pub struct Model {
    /// A UUID (version 7, so ids sort by creation time), as text.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The token `sub` of the note's owner.
    pub owner: String,
    pub title: String,
    pub body: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
