//! `POST /token`: parse, call the façade, render.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::http::form;
use crate::limits::{self, Shape};
use crate::oauth::{self, Caller, TokenAnswer, TokenRequest};
use crate::state::AppState;

pub async fn token_post(State(app): State<AppState>, request: Request) -> Response {
    let ip = limits::client_ip(&request);
    let TokenAnswer { result, limit } = token(&app, request, ip).await;
    let mut response = match result {
        Ok(body) => Json(body).into_response(),
        Err(error) if error.status == StatusCode::TOO_MANY_REQUESTS => {
            if let Some(decision) = &limit {
                return limits::too_many(decision, Shape::OAuth);
            }
            error.into_response()
        }
        Err(error) => {
            limits::count_client_failure(&app, ip, &error).await;
            error.into_response()
        }
    };
    if let Some(decision) = limit {
        decision.apply_headers(response.headers_mut());
    }
    response
}

async fn token(app: &AppState, request: Request, ip: shared::client_ip::ClientIp) -> TokenAnswer {
    let received_at = app.now();
    let parsed = match form::read(request).await {
        Ok(parsed) => parsed,
        Err(e) => {
            return TokenAnswer {
                result: Err(e),
                limit: None,
            };
        }
    };
    let (headers, params) = parsed;
    let caller = Caller {
        ip: ip.to_string(),
        user_agent: shared::client_ip::user_agent(&headers),
    };
    let request = match form::authorization(&headers)
        .and_then(|auth| TokenRequest::new(params, &auth, received_at, caller))
    {
        Ok(request) => request,
        Err(e) => {
            return TokenAnswer {
                result: Err(e),
                limit: None,
            };
        }
    };
    oauth::token(app, request).await
}
