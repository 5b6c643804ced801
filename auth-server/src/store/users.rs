use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};

use sea_orm::sea_query::OnConflict;

use super::entities::users;
use crate::clock;
use crate::domain::Email;
use shared::contract::Tier;

pub use users::Model as User;

pub async fn create<C: ConnectionTrait>(
    db: &C,
    email: &Email,
    name: &str,
    password_hash: &str,
    roles: &[String],
    tier: Tier,
) -> Result<User, DbErr> {
    let now = clock::now();
    users::ActiveModel {
        id: Set(super::new_id()),
        email: Set(email.as_str().to_owned()),
        name: Set(name.to_owned()),
        password_hash: Set(Some(password_hash.to_owned())),
        roles: Set(roles.join(" ")),
        created_at: Set(now),
        tier: Set(tier.as_str().to_owned()),
        disabled_at: Set(None),
        updated_at: Set(now),
    }
    .insert(db)
    .await
}

/// Creates a self-registered user (no roles, the standard tier) unless
/// `email` has an account already: one `INSERT … ON CONFLICT (email) DO
/// NOTHING`, so that of two concurrent registrations of one address exactly
/// one creates it and neither fails. The new user, or None.
pub async fn create_if_absent<C: ConnectionTrait>(
    db: &C,
    email: &Email,
    name: &str,
    password_hash: &str,
    now: i64,
) -> Result<Option<User>, DbErr> {
    let row = users::Model {
        id: super::new_id(),
        email: email.as_str().to_owned(),
        name: name.to_owned(),
        password_hash: Some(password_hash.to_owned()),
        roles: String::new(),
        created_at: now,
        tier: Tier::Standard.as_str().to_owned(),
        disabled_at: None,
        updated_at: now,
    };
    let inserted = users::Entity::insert(users::ActiveModel::from(row.clone()))
        .on_conflict(
            OnConflict::column(users::Column::Email)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok((inserted == 1).then_some(row))
}

pub async fn find_by_email<C: ConnectionTrait>(
    db: &C,
    email: &Email,
) -> Result<Option<User>, DbErr> {
    users::Entity::find()
        .filter(users::Column::Email.eq(email.as_str()))
        .one(db)
        .await
}

pub async fn find<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<User>, DbErr> {
    users::Entity::find_by_id(id.to_owned()).one(db).await
}

/// Replaces the user's password hash (and moves `updated_at` to `now`);
/// false when there is no such user.
pub async fn set_password_hash<C: ConnectionTrait>(
    db: &C,
    id: &str,
    password_hash: &str,
    now: i64,
) -> Result<bool, DbErr> {
    users::Entity::update_many()
        .col_expr(
            users::Column::PasswordHash,
            sea_orm::sea_query::Expr::value(password_hash.to_owned()),
        )
        .col_expr(
            users::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(users::Column::Id.eq(id.to_owned()))
        .exec(db)
        .await
        .map(|r| r.rows_affected == 1)
}

/// Whether an admin disabled the account: it cannot sign in, refresh or
/// have a code exchanged.
pub fn is_disabled(user: &User) -> bool {
    user.disabled_at.is_some()
}

/// The user's tier; an unknown value in the row counts as standard.
pub fn tier(user: &User) -> Tier {
    parse_tier(&user.tier)
}

pub fn roles(user: &User) -> Vec<String> {
    parse_roles(&user.roles)
}

/// The `tier` column's value as a tier; an unknown value counts as standard.
pub fn parse_tier(raw: &str) -> Tier {
    Tier::parse(raw).unwrap_or_default()
}

/// The `roles` column's value (space-separated) as a list.
pub fn parse_roles(raw: &str) -> Vec<String> {
    raw.split(' ')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}
