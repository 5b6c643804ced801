//! `GET,POST /password-reset` and `GET,POST /password-reset/confirm`
//! (the rules are in `crate::reset`).
//!
//! A POST body is a form (`application/x-www-form-urlencoded`, answered
//! with pages) or JSON (`application/json`, answered with JSON and RFC 9457
//! problems). Neither form has a CSRF token, on purpose: the request form
//! only triggers a rate-limited mail to the owner of the address, which a
//! forged submission cannot read; the confirm form is authorised by the
//! secret token it carries, which a forger does not have.

use axum::extract::{RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shared::problem::Problem;

use super::{fault_page, read_page_form, unavailable_page};
use crate::fault;
use crate::http::pages;
use crate::http::validation::{self, FieldError, problem};
use crate::limits;
use crate::oauth::Params;
use crate::password;
use crate::reset::{self, ConfirmError, RequestError};
use crate::state::AppState;

/// The answer to every well-formed reset request, whoever the address
/// belongs to.
pub const ACCEPTED_DETAIL: &str =
    "If an account exists for this address, we have sent a link to reset its password.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Form,
    Json,
}

fn format_of(headers: &HeaderMap) -> Option<Format> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())?;
    if media == "application/x-www-form-urlencoded" {
        Some(Format::Form)
    } else if media == "application/json" {
        Some(Format::Json)
    } else {
        None
    }
}

/// A POST body as `T`: from a form through `from_form` (missing fields are
/// empty), or from a JSON object with exactly `T`'s fields. A body that
/// cannot be read is answered in the shape of its kind.
async fn read_body<T: DeserializeOwned>(
    request: Request,
    expected: &str,
    from_form: impl FnOnce(&Params) -> T,
) -> Result<(Format, T), Response> {
    match format_of(request.headers()) {
        Some(Format::Form) => {
            let (_, form) = read_page_form(request).await?;
            Ok((Format::Form, from_form(&form)))
        }
        Some(Format::Json) => {
            let bytes = validation::body_bytes(request).await?;
            // serde's message may quote the values sent (a password): say
            // what is expected instead.
            let body = serde_json::from_slice(&bytes).map_err(|_| {
                problem(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    format!("the body must be a JSON object {expected} and nothing else"),
                )
            })?;
            Ok((Format::Json, body))
        }
        None => Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            "Content-Type must be application/x-www-form-urlencoded or application/json",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetConfirm {
    token: String,
    password: String,
}

#[derive(Serialize)]
struct Accepted {
    status: &'static str,
    detail: &'static str,
}

/// `GET /password-reset`: the form that asks for a link.
pub async fn request_get() -> Response {
    pages::password_reset_request(None, "").into_response()
}

/// `POST /password-reset`: 202 with the same body whether or not the
/// address has an account; the mail goes out in the background.
pub async fn request_post(State(app): State<AppState>, request: Request) -> Response {
    // `RATE_LIMIT_PASSWORD_RESET` per IP ran as middleware; per email it
    // runs here, before the request is queued, and whether or not the
    // address has an account (so a refusal reveals nothing).
    let read = read_body(request, r#"{"email": "…"}"#, |form| ResetRequest {
        email: form.get("email").unwrap_or_default().to_owned(),
    })
    .await;
    let (format, body) = match read {
        Ok(read) => read,
        Err(response) => return response,
    };
    if let Ok(email) = crate::domain::Email::parse(&body.email) {
        let decision = app
            .limiter
            .check(&app.limits.reset_email, email.as_str())
            .await;
        if !decision.allowed {
            tracing::info!(limit = "reset_email", "rate limited");
            let shape = match format {
                Format::Json => limits::Shape::Problem,
                Format::Form => limits::Shape::Page,
            };
            return limits::too_many(&decision, shape);
        }
    }
    match (reset::request(&app, &body.email), format) {
        (Ok(()), Format::Json) => (
            StatusCode::ACCEPTED,
            axum::Json(Accepted {
                status: "accepted",
                detail: ACCEPTED_DETAIL,
            }),
        )
            .into_response(),
        (Ok(()), Format::Form) => (
            StatusCode::ACCEPTED,
            pages::password_reset_requested(ACCEPTED_DETAIL),
        )
            .into_response(),
        (Err(RequestError::InvalidEmail), Format::Json) => problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "email is not a valid email address",
        ),
        (Err(RequestError::InvalidEmail), Format::Form) => (
            StatusCode::BAD_REQUEST,
            pages::password_reset_request(Some("Enter a valid email address."), &body.email),
        )
            .into_response(),
        // Full queue or stopped worker: 503, whoever the address belongs to.
        (Err(e @ (RequestError::Busy | RequestError::Stopped)), format) => {
            if matches!(e, RequestError::Busy) {
                tracing::warn!("password reset: {e}");
            } else {
                tracing::error!("password reset: {e}");
            }
            match format {
                Format::Json => Problem::unavailable(
                    "too many password reset requests at the moment; try again shortly",
                )
                .into_response(),
                Format::Form => unavailable_page(),
            }
        }
    }
}

/// `GET /password-reset/confirm?token=…`: the new-password form, or a 400
/// page when the link is no longer valid. Reading the link spends nothing
/// (mail scanners open links).
pub async fn confirm_get(State(app): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let token = match Params::parse(query.as_bytes()) {
        Ok(params) => params.get("token").map(str::to_owned),
        Err(_) => None,
    };
    let Some(token) = token else {
        return (StatusCode::BAD_REQUEST, pages::password_reset_invalid()).into_response();
    };
    match reset::is_live(&app, &token).await {
        Ok(true) => pages::password_reset_confirm(&token, None).into_response(),
        Ok(false) => (StatusCode::BAD_REQUEST, pages::password_reset_invalid()).into_response(),
        Err(e) => fault_page("loading password reset token", e),
    }
}

/// 422 problem+json naming the `password` field and the rule it broke.
fn weak_password_problem(weakness: &password::Weakness) -> Response {
    validation::unprocessable(&[FieldError::new(
        "password",
        weakness.rule(),
        weakness.to_string(),
    )])
}

/// The JSON answer of a confirmed reset.
#[derive(serde::Serialize)]
struct PasswordChanged {
    status: &'static str,
}

/// `POST /password-reset/confirm`: sets the new password (see
/// `reset::confirm`).
pub async fn confirm_post(State(app): State<AppState>, request: Request) -> Response {
    let read = read_body(request, r#"{"token": "…", "password": "…"}"#, |form| {
        ResetConfirm {
            token: form.get("token").unwrap_or_default().to_owned(),
            password: form.get("password").unwrap_or_default().to_owned(),
        }
    })
    .await;
    let (format, body) = match read {
        Ok(read) => read,
        Err(response) => return response,
    };
    let ResetConfirm { token, password } = body;
    match (reset::confirm(&app, &token, password).await, format) {
        (Ok(()), Format::Json) => axum::Json(PasswordChanged {
            status: "password_changed",
        })
        .into_response(),
        (Ok(()), Format::Form) => pages::password_changed().into_response(),
        (Err(e @ ConfirmError::InvalidToken), Format::Json) => {
            problem(StatusCode::BAD_REQUEST, "Bad Request", e.to_string())
        }
        (Err(ConfirmError::InvalidToken), Format::Form) => {
            (StatusCode::BAD_REQUEST, pages::password_reset_invalid()).into_response()
        }
        (Err(ConfirmError::WeakPassword(weakness)), Format::Json) => {
            weak_password_problem(&weakness)
        }
        (Err(ConfirmError::WeakPassword(weakness)), Format::Form) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::password_reset_confirm(&token, Some(&capitalised(&weakness.to_string()))),
        )
            .into_response(),
        (Err(e), Format::Json) => fault::problem("password reset", e),
        (Err(e), Format::Form) => fault_page("password reset", e),
    }
}

/// "password must …" → "Password must ….", for a page.
fn capitalised(message: &str) -> String {
    let mut chars = message.chars();
    let stop = if message.ends_with('.') { "" } else { "." };
    match chars.next() {
        Some(first) => format!("{}{}{stop}", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}
