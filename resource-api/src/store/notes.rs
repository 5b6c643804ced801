//! Notes, always filtered by owner: another user's note looks like a missing one.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use shared::search::{
    Search, SearchSpec, SortField, SortKind, SortValue, after_condition, contains_ci, like_contains,
};
use uuid::Uuid;

use super::entity::note::{self, Entity as Notes};
use crate::clock::Clock;
use crate::domain::{NoteBody, NoteTitle};

pub use note::Model as Note;

/// A partial update.
#[derive(Debug, Clone, Default)]
pub struct NotePatch {
    pub title: Option<NoteTitle>,
    pub body: Option<NoteBody>,
}

/// The columns `GET /api/v2/notes` may order by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteOrder {
    CreatedAt,
    UpdatedAt,
    Title,
}

/// The notes search: `order_by` `created_at` (the default), `updated_at`
/// (newest first) or `title` (A→Z); see `shared::search`.
pub const NOTES_SEARCH: SearchSpec<NoteOrder> = SearchSpec {
    resource: "notes",
    fields: &[
        SortField {
            name: "created_at",
            key: NoteOrder::CreatedAt,
            kind: SortKind::NewestFirst,
        },
        SortField {
            name: "updated_at",
            key: NoteOrder::UpdatedAt,
            kind: SortKind::NewestFirst,
        },
        SortField {
            name: "title",
            key: NoteOrder::Title,
            kind: SortKind::AToZ,
        },
    ],
};

/// One page of a search.
#[derive(Debug, Clone)]
pub struct NotePage {
    pub notes: Vec<Note>,
    /// The cursor of the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

/// The owner's notes whose title or body holds `search.q` (any when none),
/// in `search.order_by` order with the id as tie-breaker, at most
/// `search.limit`, after `search.after`.
///
/// Every value is a bound parameter and `q` a literal substring (`%` and
/// `_` escaped): whatever `q` holds, it is data. This function does not look
/// for injection patterns (`shared::search::parse` refuses them before);
/// the tests call it directly with such patterns to prove the point.
///
/// Bodies are stored sanitised, so a body is matched against `q` escaped
/// as the sanitiser escapes text (`<` as `&lt;`, …): `a < b` finds the
/// note whose body reads `a < b`.
#[tracing::instrument(skip_all)]
pub async fn search<C: ConnectionTrait>(
    db: &C,
    owner: &str,
    search: &Search<NoteOrder>,
) -> Result<NotePage, DbErr> {
    let sort = match search.order_by.key {
        NoteOrder::CreatedAt => note::Column::CreatedAt,
        NoteOrder::UpdatedAt => note::Column::UpdatedAt,
        NoteOrder::Title => note::Column::Title,
    };
    let order = search.order_by.kind.order();
    let mut query = Notes::find().filter(note::Column::Owner.eq(owner));
    if let Some(q) = search.q.as_deref() {
        query = query.filter(
            Condition::any()
                .add(contains_ci(
                    Expr::col(note::Column::Title).into(),
                    like_contains(q),
                ))
                .add(contains_ci(
                    Expr::col(note::Column::Body).into(),
                    like_contains(&html_text(q)),
                )),
        );
    }
    if let Some(after) = &search.after {
        query = query.filter(after_condition(
            Expr::col(sort).into(),
            Expr::col(note::Column::Id).into(),
            search.order_by.kind,
            after,
        ));
    }
    let mut notes = query
        .order_by(sort, order.clone())
        .order_by(note::Column::Id, order)
        .limit(search.limit.saturating_add(1))
        .all(db)
        .await?;
    let limit = usize::try_from(search.limit).unwrap_or(usize::MAX);
    let next_cursor = if notes.len() > limit {
        notes.truncate(limit);
        notes.last().map(|last| {
            let value = match search.order_by.key {
                NoteOrder::CreatedAt => SortValue::Int(last.created_at),
                NoteOrder::UpdatedAt => SortValue::Int(last.updated_at),
                NoteOrder::Title => SortValue::Text(last.title.clone()),
            };
            search.next_cursor(value, &last.id)
        })
    } else {
        None
    };
    Ok(NotePage { notes, next_cursor })
}

/// `text` escaped as the body sanitiser (html5ever's serialiser) escapes
/// text: `&`, `<`, `>` and the no-break space.
fn html_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '\u{a0}' => escaped.push_str("&nbsp;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[tracing::instrument(skip_all)]
pub async fn create<C: ConnectionTrait>(
    db: &C,
    clock: &Clock,
    owner: &str,
    title: NoteTitle,
    body: NoteBody,
) -> Result<Note, DbErr> {
    let now = clock.unix_seconds();
    let model = note::ActiveModel {
        id: Set(new_id(clock).to_string()),
        owner: Set(owner.to_owned()),
        title: Set(title.into()),
        body: Set(body.into()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    model.insert(db).await
}

#[tracing::instrument(skip_all, fields(note_id = %id))]
pub async fn get<C: ConnectionTrait>(db: &C, owner: &str, id: Uuid) -> Result<Option<Note>, DbErr> {
    Notes::find_by_id(id.to_string())
        .filter(note::Column::Owner.eq(owner))
        .one(db)
        .await
}

/// Applies `patch`; `None` when the owner has no such note. An empty patch
/// changes nothing, not even `updated_at`.
#[tracing::instrument(skip_all, fields(note_id = %id))]
pub async fn update<C: ConnectionTrait>(
    db: &C,
    clock: &Clock,
    owner: &str,
    id: Uuid,
    patch: NotePatch,
) -> Result<Option<Note>, DbErr> {
    let Some(existing) = get(db, owner, id).await? else {
        return Ok(None);
    };
    if patch.title.is_none() && patch.body.is_none() {
        return Ok(Some(existing));
    }
    let mut model: note::ActiveModel = existing.into();
    if let Some(title) = patch.title {
        model.title = Set(title.into());
    }
    if let Some(body) = patch.body {
        model.body = Set(body.into());
    }
    model.updated_at = Set(clock.unix_seconds());
    model.update(db).await.map(Some)
}

/// Whether a note of the owner was deleted.
#[tracing::instrument(skip_all, fields(note_id = %id))]
pub async fn delete<C: ConnectionTrait>(db: &C, owner: &str, id: Uuid) -> Result<bool, DbErr> {
    let result = Notes::delete_many()
        .filter(note::Column::Id.eq(id.to_string()))
        .filter(note::Column::Owner.eq(owner))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// A version 7 UUID: its text form sorts by creation time (millisecond).
fn new_id(clock: &Clock) -> Uuid {
    let random = Uuid::new_v4();
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&random.as_bytes()[..10]);
    uuid::Builder::from_unix_timestamp_millis(clock.unix_millis(), &bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_text_escapes_as_the_sanitiser_does() {
        let body = crate::domain::NoteBody::parse("a < b && c > d\u{a0}e".into()).unwrap();
        assert_eq!(html_text("a < b && c > d\u{a0}e"), body.as_ref());
        assert_eq!(html_text("x'; --"), "x'; --");
    }

    #[test]
    fn new_id_is_v7_and_sorts_by_time() {
        let a = new_id(&Clock::fixed(1_700_000_000_000));
        let b = new_id(&Clock::fixed(1_700_000_000_001));
        assert_eq!(a.get_version_num(), 7);
        assert!(a.to_string() < b.to_string());
    }
}
