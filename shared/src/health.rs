//! The health-check shape both services answer: `/healthz` (liveness, never
//! touches a dependency) and `/readyz` (readiness), JSON
//! `{"status": "ok" | "ready", …}`, or an RFC 9457 503 naming what failed.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::problem::Problem;

/// `200 {"status": "ok"}`.
pub fn live() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `200 {"status": "ready", …details}`.
pub fn ready(details: Map<String, Value>) -> Response {
    let mut body = Map::new();
    body.insert("status".into(), Value::from("ready"));
    body.extend(details);
    Json(Value::Object(body)).into_response()
}

/// `503` problem+json saying which check failed.
pub fn unavailable(what: &str) -> Response {
    Problem::unavailable(what).into_response()
}
