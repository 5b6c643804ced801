//! `GET /authorize` and `POST /consent`: parse, call the façade, render.

use axum::extract::{OriginalUri, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};

use super::{csrf_refusal, error_page, load_session, read_page_form, see_other};
use crate::http::pages;
use crate::oauth::{self, AuthorizationRequest, AuthorizeResult, PageError};
use crate::state::AppState;

pub async fn authorize_get(
    State(app): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let Some(request) = AuthorizationRequest::from_query(uri.query().unwrap_or_default()) else {
        return render(
            None,
            AuthorizeResult::ErrorPage {
                kind: PageError::BadRequest,
                message: "The authorization request is malformed.".into(),
            },
        );
    };
    let session = match load_session(&app, &headers).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let result = oauth::authorize(&app, request, session.as_ref()).await;
    if let AuthorizeResult::LoginNeeded = result {
        let next = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/authorize");
        let target = format!(
            "/login?{}",
            serde_urlencoded::to_string([("next", next)]).unwrap_or_default()
        );
        return see_other(&target);
    }
    render(session.as_ref().map(|s| s.csrf_token.as_str()), result)
}

pub async fn consent_post(State(app): State<AppState>, request: Request) -> Response {
    let (headers, form) = match read_page_form(request).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let session = match load_session(&app, &headers).await {
        Ok(Some(s)) if s.is_authenticated() => s,
        Ok(_) => {
            return error_page(
                StatusCode::FORBIDDEN,
                "Session expired",
                "Your sign-in session has expired. Start again from the application.",
            );
        }
        Err(response) => return response,
    };
    if let Some(response) = csrf_refusal(&session, &form, "Start again from the application.") {
        return response;
    }
    let allow = match form.get("decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "Choose Allow or Deny.",
            );
        }
    };
    let handle = form.get("request").unwrap_or_default();
    match oauth::decide(&app, &session, handle, allow).await {
        // No CSP source names this target: the consent page kept
        // `form-action 'self'`, which would stop a 303 there.
        AuthorizeResult::Redirect(url) if pages::csp_for_consent(&url).is_none() => {
            pages::continue_to(&url).into_response()
        }
        result => render(None, result),
    }
}

/// The façade's answer as a response. `csrf_token`: the session's, for a
/// consent page.
fn render(csrf_token: Option<&str>, result: AuthorizeResult) -> Response {
    match result {
        AuthorizeResult::Redirect(url) => see_other(url.as_str()),
        AuthorizeResult::LoginNeeded => see_other("/login"),
        AuthorizeResult::Consent(prompt) => {
            let Some(csrf_token) = csrf_token else {
                return super::internal_error_page();
            };
            let mut response = pages::consent(
                csrf_token,
                &prompt.handle,
                &prompt.client_name,
                &prompt.scope,
            )
            .into_response();
            // The decision's 303 goes to the client: allow exactly its origin.
            match pages::csp_for_consent(&prompt.redirect_uri) {
                Some(csp) => {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_SECURITY_POLICY, csp);
                }
                None => tracing::warn!(
                    "no form-action source for the redirect URI; the consent page keeps the default CSP"
                ),
            }
            response
        }
        AuthorizeResult::ErrorPage { kind, message } => match kind {
            PageError::BadRequest => {
                error_page(StatusCode::BAD_REQUEST, "Invalid request", &message)
            }
            PageError::Stale => error_page(StatusCode::FORBIDDEN, "Request refused", &message),
            PageError::Server => super::internal_error_page(),
            PageError::Unavailable => super::unavailable_page(),
        },
    }
}
