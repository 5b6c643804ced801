//! The admin user search (`GET /api/v2/admin/users`): users whose email or
//! name holds `q`, in an allowlisted order, a page at a time (the rules are
//! `shared::search`'s).

use sea_orm::sea_query::Expr;
use sea_orm::{
    Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use shared::search::{
    Search, SearchSpec, SortField, SortKind, SortValue, after_condition, contains_ci, like_contains,
};

use super::entities::users;
use super::users::User;

/// The columns the admin user search may order by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrder {
    CreatedAt,
    UpdatedAt,
    Name,
    Email,
}

/// `order_by` `created_at` (the default) or `updated_at`, newest first;
/// `name` or `email`, A→Z.
pub const USERS_SEARCH: SearchSpec<UserOrder> = SearchSpec {
    resource: "admin_users",
    fields: &[
        SortField {
            name: "created_at",
            key: UserOrder::CreatedAt,
            kind: SortKind::NewestFirst,
        },
        SortField {
            name: "updated_at",
            key: UserOrder::UpdatedAt,
            kind: SortKind::NewestFirst,
        },
        SortField {
            name: "name",
            key: UserOrder::Name,
            kind: SortKind::AToZ,
        },
        SortField {
            name: "email",
            key: UserOrder::Email,
            kind: SortKind::AToZ,
        },
    ],
};

/// One page of users.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<User>,
    /// The cursor of the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

/// Users whose email or name holds `search.q` (all when none), in
/// `search.order_by` order with the id as tie-breaker, at most
/// `search.limit`, after `search.after`.
///
/// Every value is a bound parameter and `q` a literal substring (`%` and
/// `_` escaped): whatever `q` holds, it is data. This function does not look
/// for injection patterns (`shared::search::parse` refuses them before).
#[tracing::instrument(skip_all)]
pub async fn search<C: ConnectionTrait>(
    db: &C,
    search: &Search<UserOrder>,
) -> Result<UserPage, DbErr> {
    let sort = match search.order_by.key {
        UserOrder::CreatedAt => users::Column::CreatedAt,
        UserOrder::UpdatedAt => users::Column::UpdatedAt,
        UserOrder::Name => users::Column::Name,
        UserOrder::Email => users::Column::Email,
    };
    let order = search.order_by.kind.order();
    let mut query = users::Entity::find();
    if let Some(pattern) = search.q.as_deref().map(like_contains) {
        query = query.filter(
            Condition::any()
                .add(contains_ci(
                    Expr::col(users::Column::Email).into(),
                    pattern.clone(),
                ))
                .add(contains_ci(Expr::col(users::Column::Name).into(), pattern)),
        );
    }
    if let Some(after) = &search.after {
        query = query.filter(after_condition(
            Expr::col(sort).into(),
            Expr::col(users::Column::Id).into(),
            search.order_by.kind,
            after,
        ));
    }
    let mut users = query
        .order_by(sort, order.clone())
        .order_by(users::Column::Id, order)
        .limit(search.limit.saturating_add(1))
        .all(db)
        .await?;
    let limit = usize::try_from(search.limit).unwrap_or(usize::MAX);
    let next_cursor = if users.len() > limit {
        users.truncate(limit);
        users.last().map(|last| {
            let value = match search.order_by.key {
                UserOrder::CreatedAt => SortValue::Int(last.created_at),
                UserOrder::UpdatedAt => SortValue::Int(last.updated_at),
                UserOrder::Name => SortValue::Text(last.name.clone()),
                UserOrder::Email => SortValue::Text(last.email.clone()),
            };
            search.next_cursor(value, &last.id)
        })
    } else {
        None
    };
    Ok(UserPage { users, next_cursor })
}
