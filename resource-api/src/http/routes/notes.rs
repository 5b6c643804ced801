//! `/api/v2/notes`: the token owner's notes. Reads need `notes:read`, writes
//! `notes:write`. Another user's note, or an id that is not a UUID, is a 404.

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{MatchedPath, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use shared::client_ip::ClientIp;
use shared::search;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::{NoteBody, NoteTitle};
use crate::http::error::{ApiError, Result};
use crate::http::extract::{Json, NotesRead, NotesWrite, Scoped};
use crate::store::audit;
use crate::store::notes::{self, NOTES_SEARCH, Note, NotePatch};

pub const NOTES_PATH: &str = "/api/v2/notes";
pub const NOTE_PATH: &str = "/api/v2/notes/{id}";
/// The routes under each version (`crate::http::versions`).
pub const NOTES_ROUTE: &str = "/notes";
pub const NOTE_ROUTE: &str = "/notes/{id}";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNote {
    title: NoteTitle,
    #[serde(default)]
    body: NoteBody,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateNote {
    #[serde(default)]
    title: Option<NoteTitle>,
    #[serde(default)]
    body: Option<NoteBody>,
}

/// A note as the API shows it; times are RFC 3339 UTC strings.
#[derive(Debug, Serialize)]
pub struct NoteResponse {
    id: String,
    title: String,
    body: String,
    created_at: String,
    updated_at: String,
}

impl From<Note> for NoteResponse {
    fn from(note: Note) -> Self {
        Self {
            id: note.id,
            title: note.title,
            body: note.body,
            created_at: rfc3339(note.created_at),
            updated_at: rfc3339(note.updated_at),
        }
    }
}

fn rfc3339(unix_seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Any id that is not a UUID cannot name a note: 404, like a missing one.
fn note_id(path: std::result::Result<Path<String>, PathRejection>) -> Result<Uuid> {
    let Path(raw) = path.map_err(|_| ApiError::NotFound)?;
    Uuid::parse_str(&raw).map_err(|_| ApiError::NotFound)
}

/// A page of notes: `next_cursor` is `null` on the last page.
#[derive(Debug, Serialize)]
pub struct NoteList {
    notes: Vec<NoteResponse>,
    next_cursor: Option<String>,
}

/// `GET /api/v2/notes?q=&limit=&order_by=&cursor=`: a page of the caller's
/// notes, searched and ordered by the rules of `shared::search` (at most
/// `limit`, default 10, newest first). A refused parameter is a 422 naming
/// it and its rule; a `q` holding an injection pattern is also recorded as
/// a `suspicious_input` security event (the term itself only as data in the
/// event, never in a log line).
pub async fn notes_list_get(
    Scoped(claims, ..): Scoped<NotesRead>,
    State(db): State<DatabaseConnection>,
    State(clock): State<Clock>,
    client_ip: Option<Extension<ClientIp>>,
    route: MatchedPath,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let search = match search::parse(&NOTES_SEARCH, query.as_deref()) {
        Ok(search) => search,
        Err(refusal) => {
            if let Some(suspicious) = &refusal.suspicious {
                let event = audit::Event {
                    kind: search::AUDIT_KIND,
                    user_id: Some(claims.sub.clone()),
                    client_id: Some(claims.client_id.clone()),
                    detail: search::audit_detail(
                        route.as_str(),
                        client_ip.map(|Extension(ip)| ip.0),
                        &headers,
                        suspicious,
                    ),
                };
                tracing::warn!(
                    pattern = suspicious.pattern,
                    "search refused: suspicious input"
                );
                audit::record(&db, &clock, event).await;
            }
            return Ok(search::unprocessable(&refusal.errors));
        }
    };
    let page = notes::search(&db, &claims.sub, &search).await?;
    Ok(Json(NoteList {
        notes: page.notes.into_iter().map(NoteResponse::from).collect(),
        next_cursor: page.next_cursor,
    })
    .into_response())
}

pub async fn notes_post(
    Scoped(claims, ..): Scoped<NotesWrite>,
    State(db): State<DatabaseConnection>,
    State(clock): State<Clock>,
    route: MatchedPath,
    Json(input): Json<CreateNote>,
) -> Result<Response> {
    let note = notes::create(&db, &clock, &claims.sub, input.title, input.body).await?;
    // Under the version asked (`/api/v1/notes/…` for a v1 client).
    let location = HeaderValue::from_str(&format!("{}/{}", route.as_str(), note.id))
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(NoteResponse::from(note)),
    )
        .into_response())
}

pub async fn note_get(
    Scoped(claims, ..): Scoped<NotesRead>,
    State(db): State<DatabaseConnection>,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<NoteResponse>> {
    let id = note_id(id)?;
    let note = notes::get(&db, &claims.sub, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(note.into()))
}

pub async fn note_patch(
    Scoped(claims, ..): Scoped<NotesWrite>,
    State(db): State<DatabaseConnection>,
    State(clock): State<Clock>,
    id: std::result::Result<Path<String>, PathRejection>,
    Json(input): Json<UpdateNote>,
) -> Result<Json<NoteResponse>> {
    let id = note_id(id)?;
    let patch = NotePatch {
        title: input.title,
        body: input.body,
    };
    let note = notes::update(&db, &clock, &claims.sub, id, patch)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(note.into()))
}

pub async fn note_delete(
    Scoped(claims, ..): Scoped<NotesWrite>,
    State(db): State<DatabaseConnection>,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    let id = note_id(id)?;
    if notes::delete(&db, &claims.sub, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
