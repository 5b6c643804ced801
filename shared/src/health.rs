//! The health-check shape both services answer.
//!
//! - `/healthz` (liveness) never touches a dependency: `200 {"status": "ok"}`.
//! - `/readyz` (readiness) runs each check under a deadline and answers
//!   `200 {"status": "ready", "checks": {name: "ok", …}}`, or a `503`
//!   problem+json with `Retry-After` whose `checks` member says which check
//!   failed and why (`"failed: …"`, `"timed out after 1000 ms"`).

use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::problem::RETRY_AFTER_SECS;

/// How long one readiness check may take.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(1);

/// The `/healthz` handler of both services: `200 {"status": "ok"}`.
pub async fn live() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// The outcome of a readiness probe, check by check.
#[derive(Debug, Default)]
pub struct Readiness {
    checks: Map<String, Value>,
    failed: Vec<String>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `check` under [`CHECK_DEADLINE`] and records its outcome.
    pub async fn check<F>(&mut self, name: &str, check: F)
    where
        F: Future<Output = Result<(), String>>,
    {
        let outcome = match tokio::time::timeout(CHECK_DEADLINE, check).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(why)) => format!("failed: {why}"),
            Err(_) => format!("timed out after {} ms", CHECK_DEADLINE.as_millis()),
        };
        self.record(name, outcome);
    }

    /// Records a check that needs no waiting.
    pub fn assert(&mut self, name: &str, ok: bool, why: &str) {
        let outcome = if ok {
            "ok".to_owned()
        } else {
            format!("failed: {why}")
        };
        self.record(name, outcome);
    }

    /// Records a fact that does not make the service unready (a degraded
    /// but working dependency, such as rate limits served per instance
    /// while Redis is away).
    pub fn note(&mut self, name: &str, value: impl Into<Value>) {
        self.checks.insert(name.to_owned(), value.into());
    }

    /// Where rate limits are kept, as `rate_limit_store`: `redis`, `local`
    /// (no `REDIS_URL`), or `fallback: …`. Redis being away does not make the
    /// instance unready (it then limits on its own, never unlimited); it is
    /// reported with the count of switches since start.
    pub fn rate_limits(&mut self, limiter: &crate::limit::Limiter) {
        let value = match limiter.status() {
            crate::limit::StoreStatus::Fallback => format!(
                "fallback: redis unreachable, limits are per instance ({} fallbacks since start)",
                limiter.fallbacks()
            ),
            other => other.as_str().to_owned(),
        };
        self.note("rate_limit_store", value);
    }

    fn record(&mut self, name: &str, outcome: String) {
        if outcome != "ok" {
            tracing::warn!(check = name, outcome = %outcome, "readiness check failed");
            self.failed.push(name.to_owned());
        }
        self.checks.insert(name.to_owned(), Value::from(outcome));
    }

    pub fn is_ready(&self) -> bool {
        self.failed.is_empty()
    }
}

impl IntoResponse for Readiness {
    fn into_response(self) -> Response {
        if self.failed.is_empty() {
            return Json(json!({"status": "ready", "checks": self.checks})).into_response();
        }
        let body = json!({
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": format!("not ready: {}", self.failed.join(", ")),
            "checks": self.checks,
        });
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn body(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn readiness_names_failed_and_slow_checks() {
        let mut readiness = Readiness::new();
        readiness.check("fast", async { Ok(()) }).await;
        readiness
            .check("broken", async { Err("refused".to_owned()) })
            .await;
        readiness
            .check("slow", async {
                tokio::time::sleep(CHECK_DEADLINE * 3).await;
                Ok(())
            })
            .await;
        let response = readiness.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = body(response).await;
        assert_eq!(body["checks"]["fast"], "ok");
        assert_eq!(body["checks"]["broken"], "failed: refused");
        assert!(
            body["checks"]["slow"]
                .as_str()
                .unwrap()
                .starts_with("timed out")
        );
        assert_eq!(body["detail"], "not ready: broken, slow");
    }

    #[tokio::test]
    async fn readiness_is_200_when_every_check_passes() {
        let mut readiness = Readiness::new();
        readiness.check("database", async { Ok(()) }).await;
        readiness.assert("keys", true, "none");
        readiness.note("rate_limit_store", "fallback");
        let response = readiness.into_response();
        assert_eq!(response.status(), StatusCode::OK);
        let body = body(response).await;
        assert_eq!(body["status"], "ready");
        assert_eq!(body["checks"]["rate_limit_store"], "fallback");
    }
}
