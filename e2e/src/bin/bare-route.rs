//! The load suite's reference server (`e2e/benches/load.rs`): the least an
//! axum server of this workspace can do for a request, to compare the
//! resource API with.
//!
//! - `GET /bare`: a small JSON body shaped like `GET /api/v2/me`'s, no
//!   authentication.
//! - `GET /verify`: the `Authorization: Bearer` token verified with
//!   `shared::jwt::Verifier` from static keys, as the resource API verifies
//!   (same settings: issuer, audience, leeway, lifetime); answers the
//!   claims' `sub` (200) or 401. No cache, nothing else.
//! - `GET /healthz`: 200, for the e2e readiness probe.
//!
//! No other middleware (no tracing, limits, request ids, timeouts). Prints
//! `listening on http://ADDR` on stderr once bound, as the services do.
//!
//! Environment: `BARE_LISTEN` (default `127.0.0.1:0`), `BARE_KEYS_DIR` (a
//! folder of PEM keys, public or private; required for `/verify`, else it
//! answers 503), `BARE_ISSUER`, `BARE_AUDIENCE` (default: the resource API's
//! default audience).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use shared::jwt::{DEFAULT_MAX_TOKEN_LIFETIME, KeySource, Verifier, VerifierSettings};

#[derive(Serialize)]
struct Me {
    sub: &'static str,
    client_id: &'static str,
    scope: &'static str,
    roles: [&'static str; 0],
}

#[derive(Serialize)]
struct Sub {
    sub: String,
}

async fn bare() -> Json<Me> {
    Json(Me {
        sub: "00000000-0000-4000-8000-000000000000",
        client_id: "bare-route",
        scope: "notes:read",
        roles: [],
    })
}

async fn verify(State(verifier): State<Option<Arc<Verifier>>>, headers: HeaderMap) -> Response {
    let Some(verifier) = verifier else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match verifier.verify(token).await {
        Ok(claims) => Json(Sub { sub: claims.sub }).into_response(),
        Err(_) => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn verifier() -> anyhow::Result<Option<Arc<Verifier>>> {
    let Some(dir) = std::env::var_os("BARE_KEYS_DIR") else {
        return Ok(None);
    };
    let issuer = std::env::var("BARE_ISSUER").context("BARE_KEYS_DIR needs BARE_ISSUER")?;
    let audience = std::env::var("BARE_AUDIENCE")
        .unwrap_or_else(|_| shared::contract::DEFAULT_AUDIENCE.to_owned());
    let verifier = Verifier::new(VerifierSettings {
        issuer: shared::config::normalize_issuer(&issuer)?,
        audience,
        leeway: shared::contract::TOKEN_LEEWAY,
        max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
        source: KeySource::from_pem_dir(&PathBuf::from(dir))?,
        cache_size: shared::jwt::DEFAULT_VERIFY_CACHE_SIZE,
    })?;
    Ok(Some(Arc::new(verifier)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let verifier = verifier()?;
    let app = Router::new()
        .route("/bare", get(bare))
        .route("/verify", get(verify))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(verifier);
    let listen = std::env::var("BARE_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let _ = writeln!(std::io::stderr(), "listening on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
