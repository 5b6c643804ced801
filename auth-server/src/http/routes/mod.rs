pub mod authorize;
pub mod discovery;
pub mod health;
pub mod introspect;
pub mod login;
pub mod register;
pub mod reset;
pub mod revoke;
pub mod token;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use super::{cookies, pages};
use crate::state::AppState;
use crate::store::sessions;

/// `Cache-Control: no-store` on every OAuth response (RFC 6749 §5.1) and
/// every page (they carry CSRF tokens, codes and state), and
/// `Referrer-Policy: no-referrer`: the URLs of the authorize, login and
/// consent pages and of their redirects carry `state`, codes and the
/// authorization request, which must not leak to another site through a
/// `Referer` (the shared layer's default, `strict-origin-when-cross-origin`,
/// still sends the origin). One layer, set on the router for everything but
/// the stylesheet and the public metadata.
pub async fn no_store(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// An HTML error page; never a redirect.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    (status, pages::error(title, message)).into_response()
}

/// 303 See Other: after a POST the browser follows with a GET.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => internal_error_page(),
    }
}

/// 503 with `Retry-After`: a dependency is down or too slow.
pub fn unavailable_page() -> Response {
    let mut response = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "The service is temporarily unavailable. Please try again in a moment.",
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(shared::problem::RETRY_AFTER_SECS),
    );
    response
}

/// The page for a fault: 503 when a dependency is unavailable, else 500.
/// Logs it (once).
pub fn fault_page(context: &str, error: impl crate::fault::Fault) -> Response {
    if crate::fault::log(context, &error) {
        unavailable_page()
    } else {
        internal_error_page()
    }
}

pub fn internal_error_page() -> Response {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The server could not complete the request. Please try again later.",
    )
}

pub async fn index_get() -> Response {
    pages::error(
        "Portcullis",
        "This is an OAuth 2.0 authorization server. Applications send you here to sign in.",
    )
    .into_response()
}

pub async fn stylesheet_get() -> Response {
    let mut response = pages::STYLESHEET.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// The live session named by the request's cookie; an error page if the
/// database fails.
pub async fn load_session(
    app: &AppState,
    headers: &http::HeaderMap,
) -> Result<Option<sessions::Session>, Response> {
    let Some(cookie) = cookies::session(headers) else {
        return Ok(None);
    };
    let session = sessions::find(&app.db, &cookie, app.now())
        .await
        .map_err(|e| fault_page("loading session", e))?;
    // The signed-in user, for the access line.
    if let Some(user) = session.as_ref().and_then(|s| s.user()) {
        shared::access::record_sub(user);
    }
    Ok(session)
}

/// Reads a page's form POST; a malformed or oversized one gets an error page.
pub async fn read_page_form(
    request: axum::extract::Request,
) -> Result<(http::HeaderMap, crate::oauth::Params), Response> {
    super::form::read(request).await.map_err(|e| {
        error_page(
            e.status,
            "Invalid request",
            e.description.as_deref().unwrap_or("Malformed form."),
        )
    })
}

/// A 403 page unless the form carries the session's CSRF token (constant-time
/// compare).
pub fn csrf_refusal(
    session: &sessions::Session,
    form: &crate::oauth::Params,
    what_next: &str,
) -> Option<Response> {
    if form
        .get("csrf_token")
        .is_some_and(|t| session.csrf_matches(t))
    {
        return None;
    }
    Some(error_page(
        StatusCode::FORBIDDEN,
        "Request refused",
        &format!("The form is no longer valid (CSRF check failed). {what_next}"),
    ))
}
