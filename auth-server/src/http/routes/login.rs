//! `GET /login` and `POST /login`: email + password, CSRF-protected, with the
//! session id rotated on success.

use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;

use super::{error_page, fault_page, load_session, read_page_form, see_other};
use crate::domain::Email;
use crate::http::{cookies, login_csrf, pages};
use crate::state::AppState;
use crate::store::{sessions, users};
use crate::{audit, limits, password};

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

/// The sign-in form with a fresh pre-login CSRF token (in the form and in
/// its double-submit cookie): no database row for an anonymous visitor.
fn login_form(
    app: &AppState,
    status: StatusCode,
    next: &str,
    error: Option<&str>,
    email: &str,
) -> Response {
    let token = match login_csrf::issue(&app.login_csrf_key) {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "issuing a login CSRF token");
            return super::internal_error_page();
        }
    };
    let mut response = (status, pages::login(&token, next, error, email)).into_response();
    if let Some(cookie) = login_csrf::set_cookie(
        &token,
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
    // Only a request that carries a session cookie costs a (read) query.
    let existing = match load_session(&app, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if existing.is_some_and(|s| s.is_authenticated()) && next != "/" {
        return see_other(&next);
    }
    login_form(&app, StatusCode::OK, &next, None, "")
}

/// `POST /login`. Its order is the point: the per-IP rate limit (middleware)
/// and a place in the password-hashing queue come before anything else; the
/// CSRF check and the lockout check come before the user is looked up and
/// before any password is hashed; an unknown email costs a hash of a dummy
/// password, so it answers like a wrong password.
pub async fn login_post(State(app): State<AppState>, request: Request) -> Response {
    let ip = limits::client_ip(&request);
    let admission = match app.password_gate.admit() {
        Ok(admission) => admission,
        Err(_) => return super::unavailable_page(),
    };
    let (headers, form) = match read_page_form(request).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    if !login_csrf::valid(
        &app.login_csrf_key,
        &headers,
        app.secure_cookies,
        form.get("csrf_token"),
    ) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Session expired",
            "Your sign-in form has expired (CSRF check failed). Reload the page and try again.",
        );
    }
    let next = safe_next(form.get("next"));
    let email_raw = form.get("email").unwrap_or_default().to_owned();
    let password_raw = form.get("password").unwrap_or_default().to_owned();
    let email = Email::parse(&email_raw).ok();
    let subjects = limits::Subjects::new(ip, email.as_ref());
    match limits::locked(&app, &subjects).await {
        Ok(Some(locked)) => return limits::locked_page(&locked),
        Ok(None) => {}
        Err(e) => return fault_page("checking lockouts", e),
    }
    let user = match &email {
        Some(email) => match users::find_by_email(&app.db, email).await {
            Ok(user) => user,
            Err(e) => return fault_page("loading user", e),
        },
        None => None,
    };
    let too_long = password_raw.len() > password::MAX_LENGTH;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let verified = if too_long {
        false
    } else {
        match admission.verify(password_raw, stored).await {
            Ok(ok) => ok,
            Err(password::HashError::Busy) => return super::unavailable_page(),
            Err(password::HashError::Failed(e)) => return fault_page("verifying password", e),
        }
    };
    let targeted = user.as_ref().map(|u| u.id.clone());
    let user_agent = shared::client_ip::user_agent(&headers);
    // A disabled account with the right password gets exactly the answer
    // of a wrong password (no account-state oracle); only the audit log
    // tells them apart.
    let disabled = verified && user.as_ref().is_some_and(users::is_disabled);
    let Some(user) = user.filter(|_| verified && !disabled) else {
        limits::login_failed(&app, &subjects).await;
        // Attributable: the account it targeted, or the normalised email
        // when no account matches (a malformed one is not recorded), the
        // address and the user agent. Never the password.
        let email = if targeted.is_none() {
            email.as_ref().map(|e| e.as_str().to_owned())
        } else {
            None
        };
        audit::record(
            &app,
            audit::LOGIN_FAILED,
            targeted.as_deref(),
            None,
            serde_json::json!({
                "client_ip": ip.to_string(),
                "user_agent": user_agent,
                "email": email,
                "reason": if disabled { "disabled" } else { "bad_credentials" },
            }),
        )
        .await;
        // A failed attempt spends the form's CSRF token.
        return login_form(
            &app,
            StatusCode::UNAUTHORIZED,
            &next,
            Some("Wrong email or password."),
            &email_raw,
        );
    };
    limits::login_succeeded(&app, &subjects).await;
    shared::access::record_sub(&user.id);
    // A session row appears only now, with a fresh id (no session
    // fixation); a session the browser had before is ended.
    if let Ok(Some(old)) = load_session(&app, &headers).await
        && let Err(e) = app.writer.run(sessions::delete(&app.db, &old.id)).await
    {
        return fault_page("deleting session", e);
    }
    let created = app
        .writer
        .run(sessions::create(
            &app.db,
            Some(&user.id),
            app.settings.auth_session_ttl_secs,
            app.now(),
        ))
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
        serde_json::json!({"client_ip": ip.to_string(), "user_agent": user_agent}),
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
