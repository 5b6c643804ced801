//! `GET /login` and `POST /login`: email + password, CSRF-protected, with the
//! session id rotated on success.

use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;

use super::{csrf_refusal, error_page, fault_page, load_session, read_page_form, see_other};
use crate::audit;
use crate::domain::Email;
use crate::http::{cookies, pages};
use crate::password;
use crate::state::AppState;
use crate::store::{sessions, users};

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only local authorization requests are followed after login (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/authorize" || n.starts_with("/authorize?"))
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn with_cookie(mut response: Response, app: &AppState, value: &str) -> Response {
    if let Some(cookie) = cookies::set_session(
        value,
        app.settings.auth_session_ttl_secs,
        app.secure_cookies,
    ) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub async fn login_get(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    let existing = match load_session(&app, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if let Some(session) = existing {
        if session.is_authenticated() && next != "/" {
            return see_other(&next);
        }
        return pages::login(&session.csrf_token, &next, None, "").into_response();
    }
    match sessions::create(&app.db, None, app.settings.auth_session_ttl_secs, app.now()).await {
        Ok((cookie, session)) => with_cookie(
            pages::login(&session.csrf_token, &next, None, "").into_response(),
            &app,
            &cookie,
        ),
        Err(e) => fault_page("creating session", e),
    }
}

pub async fn login_post(State(app): State<AppState>, request: Request) -> Response {
    let (headers, form) = match read_page_form(request).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let session = match load_session(&app, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let Some(session) = session else {
        return error_page(
            StatusCode::FORBIDDEN,
            "Session expired",
            "Your sign-in form has expired. Reload the page and try again.",
        );
    };
    if let Some(response) = csrf_refusal(&session, &form, "Reload the page and try again.") {
        return response;
    }
    let next = safe_next(form.get("next"));
    let email_raw = form.get("email").unwrap_or_default().to_owned();
    let password_raw = form.get("password").unwrap_or_default().to_owned();
    let user = match Email::parse(&email_raw) {
        Ok(email) => match users::find_by_email(&app.db, &email).await {
            Ok(user) => user,
            Err(e) => return fault_page("loading user", e),
        },
        Err(_) => None,
    };
    let too_long = password_raw.len() > password::MAX_LENGTH;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let verified = if too_long {
        false
    } else {
        match password::verify(password_raw, stored).await {
            Ok(ok) => ok,
            Err(e) => return fault_page("verifying password", e),
        }
    };
    let Some(user) = user.filter(|_| verified) else {
        audit::record(&app, audit::LOGIN_FAILED, None, None, serde_json::json!({})).await;
        // A failed attempt spends the form's CSRF token.
        let csrf_token = match sessions::rotate_csrf(&app.db, &session.id).await {
            Ok(token) => token,
            Err(e) => return fault_page("rotating CSRF token", e),
        };
        let page = pages::login(
            &csrf_token,
            &next,
            Some("Wrong email or password."),
            &email_raw,
        );
        return (StatusCode::UNAUTHORIZED, page).into_response();
    };
    // Rotate the session id on privilege change (no session fixation).
    if let Err(e) = sessions::delete(&app.db, &session.id).await {
        return fault_page("deleting session", e);
    }
    let created = sessions::create(
        &app.db,
        Some(&user.id),
        app.settings.auth_session_ttl_secs,
        app.now(),
    )
    .await;
    let (cookie, _) = match created {
        Ok(created) => created,
        Err(e) => return fault_page("creating session", e),
    };
    audit::record(
        &app,
        audit::LOGIN_SUCCEEDED,
        Some(&user.id),
        None,
        serde_json::json!({}),
    )
    .await;
    with_cookie(see_other(&next), &app, &cookie)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn safe_next_refuses_foreign_targets() {
        assert_eq!(
            safe_next(Some("/authorize?client_id=a")),
            "/authorize?client_id=a"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/authorize?",
            "/authorize\\@evil",
            "/admin",
            "/authorizex",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
