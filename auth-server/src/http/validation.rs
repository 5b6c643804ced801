//! Input problems of the JSON API endpoints, written one way: a body that
//! is not JSON or not an object is a 400; fields that break their rules are
//! a 422 problem+json (RFC 9457) whose `errors` member names each failing
//! field and rule:
//!
//! ```json
//! {"type":"about:blank","title":"Unprocessable Content","status":422,
//!  "detail":"password must have at least 12 characters",
//!  "errors":[{"field":"password","rule":"too_short","pointer":"#/password",
//!             "detail":"password must have at least 12 characters"}]}
//! ```
//!
//! Rules are checked with garde; a custom rule reports its name and its
//! sentence through [`violation`], read back by [`from_report`].

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use shared::http::{MAX_JSON_DEPTH, json_depth_exceeds};
use shared::problem::Problem;

use super::BODY_LIMIT;

/// One field that broke one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The body's member, e.g. `password`.
    pub field: String,
    /// The rule's name, e.g. `too_short`.
    pub rule: String,
    /// RFC 9457 §3's JSON pointer into the body.
    pub pointer: String,
    /// A sentence for people; never quotes the value sent.
    pub detail: String,
}

impl FieldError {
    pub fn new(field: &str, rule: &str, detail: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            rule: rule.to_owned(),
            pointer: format!("#/{}", field.replace('~', "~0").replace('/', "~1")),
            detail: detail.into(),
        }
    }
}

#[derive(Serialize)]
struct ValidationProblem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    errors: &'a [FieldError],
}

/// `422 Unprocessable Content` problem+json listing `errors`; its `detail`
/// is theirs, joined.
pub fn unprocessable(errors: &[FieldError]) -> Response {
    let detail = errors
        .iter()
        .map(|e| e.detail.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let body = ValidationProblem {
        kind: "about:blank",
        title: "Unprocessable Content",
        status: StatusCode::UNPROCESSABLE_ENTITY.as_u16(),
        detail,
        errors,
    };
    let mut response = (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// A garde error that carries the name of the rule it broke.
pub fn violation(rule: &str, detail: impl std::fmt::Display) -> garde::Error {
    garde::Error::new(format!("{rule}: {detail}"))
}

/// The field errors of a garde report (a message not made by [`violation`]
/// gets the rule `invalid`).
pub fn from_report(report: &garde::Report) -> Vec<FieldError> {
    report
        .iter()
        .map(|(path, error)| {
            let (rule, detail) = error
                .message()
                .split_once(": ")
                .unwrap_or(("invalid", error.message()));
            FieldError::new(&path.to_string(), rule, detail)
        })
        .collect()
}

/// A problem+json answer with a detail.
pub fn problem(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Response {
    Problem::new(status, title, Some(detail.into())).into_response()
}

/// The whole body, at most [`BODY_LIMIT`] bytes; past it a 413 problem.
pub async fn body_bytes(request: Request) -> Result<axum::body::Bytes, Response> {
    axum::body::to_bytes(request.into_body(), BODY_LIMIT)
        .await
        .map_err(|_| {
            problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Content Too Large",
                format!("the request body is larger than {} KiB", BODY_LIMIT / 1024),
            )
        })
}

/// The longest unknown member name echoed back in an error.
const MAX_ECHOED_NAME: usize = 64;

/// Reads a JSON object body into `T`, whose members are `fields`, all
/// required strings (`T` denies unknown fields). Refusals: 415 unless
/// `Content-Type: application/json`; 413 past [`BODY_LIMIT`]; 400 when
/// arrays and objects nest deeper than [`MAX_JSON_DEPTH`] (checked before
/// parsing); 400 unless the body is a JSON object; 422 naming each unknown member
/// (`unknown_field`), and each field missing or null (`required`) or not a
/// string (`not_a_string`). serde's own messages are never shown: they may
/// quote a value sent (a password).
pub async fn read_json<T: DeserializeOwned>(
    request: Request,
    fields: &[&str],
) -> Result<T, Response> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            "Content-Type must be application/json",
        ));
    }
    let bytes = body_bytes(request).await?;
    if json_depth_exceeds(&bytes, MAX_JSON_DEPTH) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!("JSON nested deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    let expected = || {
        let names: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
        format!("{{{}}}", names.join(", "))
    };
    if let Ok(body) = serde_json::from_slice::<T>(&bytes) {
        return Ok(body);
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!("the body must be a JSON object {}", expected()),
        ));
    };
    let mut errors = Vec::new();
    for name in object.keys().filter(|k| !fields.contains(&k.as_str())) {
        let name: String = name.chars().take(MAX_ECHOED_NAME).collect();
        errors.push(FieldError::new(
            &name,
            "unknown_field",
            format!(
                "{name} is not a field of this request, which takes {} only",
                expected()
            ),
        ));
    }
    for field in fields {
        match object.get(*field) {
            None | Some(Value::Null) => {
                errors.push(FieldError::new(
                    field,
                    "required",
                    format!("{field} is required"),
                ));
            }
            Some(Value::String(_)) => {}
            Some(_) => errors.push(FieldError::new(
                field,
                "not_a_string",
                format!("{field} must be a string"),
            )),
        }
    }
    if errors.is_empty() {
        // E.g. a member given twice.
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!(
                "the body must be a JSON object {} and nothing else",
                expected()
            ),
        ));
    }
    Err(unprocessable(&errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_error_points_into_the_body() {
        let error = FieldError::new("a/b~c", "required", "x");
        assert_eq!(error.pointer, "#/a~1b~0c");
    }

    #[tokio::test]
    async fn unprocessable_lists_each_field_and_joins_the_details() {
        let response = unprocessable(&[
            FieldError::new("email", "invalid", "email is not valid"),
            FieldError::new("password", "too_short", "too short"),
        ]);
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["status"], 422);
        assert_eq!(body["detail"], "email is not valid; too short");
        assert_eq!(body["errors"][1]["field"], "password");
        assert_eq!(body["errors"][1]["rule"], "too_short");
        assert_eq!(body["errors"][1]["pointer"], "#/password");
    }

    #[test]
    fn from_report_reads_back_the_rule_of_a_violation() {
        let mut report = garde::Report::new();
        report.append(
            garde::Path::new("password"),
            violation("too_weak", "password is too easy to guess: add a word"),
        );
        report.append(garde::Path::new("name"), garde::Error::new("bad"));
        let errors = from_report(&report);
        assert_eq!(
            errors,
            [
                FieldError::new(
                    "password",
                    "too_weak",
                    "password is too easy to guess: add a word"
                ),
                FieldError::new("name", "invalid", "bad"),
            ]
        );
    }
}
