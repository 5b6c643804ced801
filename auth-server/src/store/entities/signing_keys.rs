use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    /// RFC 7638 thumbprint; the key file is `<kid>.pem`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    /// `published`, `active` or `retired` (`crate::signing_keys`).
    pub state: String,
    pub published_at: i64,
    /// From when it signs (the latest non-retired key past this signs).
    pub activates_at: i64,
    pub retired_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
