//! `POST /api/v2/users`: self-registration (the rules are in
//! `crate::register`). JSON only; `RATE_LIMIT_REGISTRATION` per address ran
//! as middleware before the body is read.
//!
//! Answers: `202` `{"status":"accepted","detail":…}` whether or not the
//! address has an account; `422` problem+json naming each field and rule
//! that failed (nothing written); `400`, `413`, `415` for a body that cannot
//! be read; `503` with `Retry-After` when hashing, the mail queue or the
//! database cannot take it. With `REGISTRATION=closed`, [`closed`] answers
//! `404` instead, for every method.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use garde::Validate;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::problem::Problem;

use crate::domain::{DomainError, Email, parse_name};
use crate::fault;
use crate::http::validation::{self, FieldError, violation};
use crate::password;
use crate::register::{self, RegisterError, Registration};
use crate::state::AppState;

/// The answer to every registration that passed the rules, whoever the
/// address belongs to.
pub const ACCEPTED_DETAIL: &str =
    "If this address can be registered, we have sent a message to it.";

const FIELDS: &[&str] = &["email", "name", "password"];

/// The body: these three strings and nothing else (a `role`, `tier` or `id`
/// is refused, not ignored: the server owns those).
#[derive(Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct NewUser {
    #[garde(custom(email_rule))]
    email: String,
    #[garde(custom(name_rule))]
    name: String,
    /// The email and the name are words an attacker knows.
    #[garde(custom(password_rule(&self.email, &self.name)))]
    password: String,
}

const EMAIL_RULE: &str = "invalid";
const EMAIL_DETAIL: &str = "email is not a valid email address";

fn name_error(error: &DomainError) -> (&'static str, String) {
    let rule = match error {
        DomainError::Name(e) => e.rule(),
        _ => "invalid",
    };
    (rule, error.to_string())
}

fn email_rule(value: &str, _: &()) -> garde::Result {
    Email::parse(value)
        .map(drop)
        .map_err(|_| violation(EMAIL_RULE, EMAIL_DETAIL))
}

fn name_rule(value: &str, _: &()) -> garde::Result {
    parse_name(value).map(drop).map_err(|e| {
        let (rule, detail) = name_error(&e);
        violation(rule, detail)
    })
}

fn password_rule<'a>(
    email: &'a str,
    name: &'a str,
) -> impl FnOnce(&str, &()) -> garde::Result + 'a {
    move |value, _| password::validate(value, &[email, name]).map_err(|w| violation(w.rule(), w))
}

impl NewUser {
    /// Every rule checked (each failure reported), then the parsed values.
    fn parse(self) -> Result<Registration, Vec<FieldError>> {
        self.validate()
            .map_err(|report| validation::from_report(&report))?;
        // Passed above; parsed again for their normal forms.
        let email = Email::parse(&self.email)
            .map_err(|_| vec![FieldError::new("email", EMAIL_RULE, EMAIL_DETAIL)])?;
        let name = parse_name(&self.name).map_err(|e| {
            let (rule, detail) = name_error(&e);
            vec![FieldError::new("name", rule, detail)]
        })?;
        Ok(Registration {
            email,
            name,
            password: self.password,
        })
    }
}

#[derive(Serialize)]
struct Accepted {
    status: &'static str,
    detail: &'static str,
}

/// `POST /api/v2/users` with `REGISTRATION=open`.
pub async fn register_post(State(app): State<AppState>, request: Request) -> Response {
    let body: NewUser = match validation::read_json(request, FIELDS).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    // zxcvbn takes up to a few milliseconds: not on an async worker.
    let registration = match tokio::task::spawn_blocking(move || body.parse()).await {
        Ok(Ok(registration)) => registration,
        Ok(Err(errors)) => return validation::unprocessable(&errors),
        Err(e) => return fault::problem("registration: checking the fields", e.to_string()),
    };
    match register::register(&app, registration).await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(Accepted {
                status: "accepted",
                detail: ACCEPTED_DETAIL,
            }),
        )
            .into_response(),
        Err(e @ (RegisterError::Busy | RegisterError::QueueFull)) => {
            tracing::warn!("registration: {e}");
            Problem::unavailable("too many requests at the moment; try again shortly")
                .into_response()
        }
        Err(e) => fault::problem("registration", e),
    }
}

/// `/api/v2/users` with `REGISTRATION=closed`: 404 for every method, before
/// any limit or body, as for a path that does not exist.
pub async fn closed() -> Response {
    Problem::not_found().into_response()
}
