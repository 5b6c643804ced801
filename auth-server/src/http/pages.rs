//! Server-rendered pages (maud escapes every interpolated value). No inline
//! script or style: the CSP is `default-src 'self'`.

use http::HeaderValue;
use maud::{DOCTYPE, Markup, html};
use url::{Origin, Url};

pub const STYLESHEET_PATH: &str = "/assets/portcullis.css";

pub const STYLESHEET: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#1d1d1f}\
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input[type=email],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}\
button{margin-top:1rem;padding:.5rem 1rem;margin-right:.5rem}.error{color:#b00020}ul.scopes{padding-left:1.2rem}code{background:#f2f2f2;padding:0 .2rem}";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · Portcullis" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body { main { (body) } }
        }
    }
}

pub fn login(csrf_token: &str, next: &str, error: Option<&str>, email: &str) -> Markup {
    layout(
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf_token" value=(csrf_token);
                input type="hidden" name="next" value=(next);
                label for="email" { "Email" }
                input id="email" type="email" name="email" value=(email) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input id="password" type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            p { a href=(shared::paths::PASSWORD_RESET_PATH) { "Forgot your password?" } }
        },
    )
}

/// The consent form names the pending request by its one-time handle; the
/// request itself stays on the server.
pub fn consent(csrf_token: &str, handle: &str, client_name: &str, scope: &str) -> Markup {
    layout(
        "Authorize",
        html! {
            h1 { "Allow " strong { (client_name) } "?" }
            p { (client_name) " asks for access to your account with these permissions:" }
            ul.scopes { @for s in scope.split(' ').filter(|s| !s.is_empty()) { li { code { (s) } } } }
            form method="post" action="/consent" {
                input type="hidden" name="csrf_token" value=(csrf_token);
                input type="hidden" name="request" value=(handle);
                button type="submit" name="decision" value="allow" { "Allow" }
                button type="submit" name="decision" value="deny" { "Deny" }
            }
        },
    )
}

/// The source expression that lets a form on the consent page end at
/// `redirect_uri`: its origin (`https://app.example:8443`) for a network
/// scheme, the scheme-source (`com.example.app:`) for a private-use scheme
/// (RFC 8252 §7.1). None for anything a CSP source cannot say exactly: an
/// IPv6 host, a host with characters outside `[A-Za-z0-9.-]` (`;`, `,`,
/// quotes and whitespace would start a new directive or source).
fn form_action_source(redirect_uri: &Url) -> Option<String> {
    let scheme = redirect_uri.scheme();
    if crate::domain::FORBIDDEN_SCHEMES.contains(&scheme) {
        return None;
    }
    let source = match redirect_uri.origin() {
        origin @ Origin::Tuple(..) => origin.ascii_serialization(),
        Origin::Opaque(_) => format!("{scheme}:"),
    };
    let safe = source
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'+' | b':' | b'/'));
    safe.then_some(source)
}

/// The CSP of the consent page: shared's policy with `form-action` widened
/// from `'self'` to `'self'` plus the origin of the redirect URI being
/// approved. Chromium applies `form-action` to the redirects that follow a
/// form submission, so without it the browser stops at the 303 to the client.
/// None when the redirect URI has no safe source expression (the page then
/// keeps the default policy).
pub fn csp_for_consent(redirect_uri: &Url) -> Option<HeaderValue> {
    let source = form_action_source(redirect_uri)?;
    let policy: Vec<String> = shared::http::CSP
        .split(';')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .map(|directive| {
            if directive.split(' ').next() == Some("form-action") {
                format!("form-action 'self' {source}")
            } else {
                directive.to_owned()
            }
        })
        .collect();
    HeaderValue::from_str(&policy.join("; ")).ok()
}

/// The end of a consent decision whose redirect target no CSP source can
/// name (an IPv6 loopback URI, `http://[::1]:PORT/…`): instead of a 303 that
/// `form-action` would block, a page of our own that moves on by itself, a
/// navigation `form-action` does not govern, with a link as a fallback.
pub fn continue_to(target: &Url) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="referrer" content="no-referrer";
                meta http-equiv="refresh" content=(format!("0; url={target}"));
                title { "Returning to the application · Portcullis" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body { main {
                h1 { "Returning to the application" }
                p { a href=(target.as_str()) { "Continue" } }
            } }
        }
    }
}

pub fn error(title: &str, message: &str) -> Markup {
    layout(
        title,
        html! {
            h1 { (title) }
            p { (message) }
        },
    )
}

/// The form that asks for a reset link. It has no CSRF token: a forged
/// submission can only trigger a rate-limited mail to the address's owner.
pub fn password_reset_request(error: Option<&str>, email: &str) -> Markup {
    layout(
        "Reset your password",
        html! {
            h1 { "Reset your password" }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            p { "Enter the email address of your account. We will send you a link to choose a new password." }
            form method="post" action=(shared::paths::PASSWORD_RESET_PATH) {
                label for="email" { "Email" }
                input id="email" type="email" name="email" value=(email) autocomplete="username" required autofocus;
                button type="submit" { "Send the link" }
            }
            p { a href=(shared::paths::LOGIN_PATH) { "Back to sign in" } }
        },
    )
}

/// The answer to a reset request: the same whatever the address.
pub fn password_reset_requested(message: &str) -> Markup {
    layout(
        "Check your mail",
        html! {
            h1 { "Check your mail" }
            p { (message) }
            p { a href=(shared::paths::LOGIN_PATH) { "Back to sign in" } }
        },
    )
}

/// The new-password form of a reset link; the link's token rides along as a
/// hidden field. It has no CSRF token: the secret token authorises the
/// change, and a forger does not have it.
pub fn password_reset_confirm(token: &str, error: Option<&str>) -> Markup {
    layout(
        "Choose a new password",
        html! {
            h1 { "Choose a new password" }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action=(shared::paths::PASSWORD_RESET_CONFIRM_PATH) {
                input type="hidden" name="token" value=(token);
                label for="password" { "New password" }
                input id="password" type="password" name="password" autocomplete="new-password"
                    minlength=(crate::password::MIN_LENGTH) required autofocus;
                button type="submit" { "Change password" }
            }
        },
    )
}

/// A reset link that is unknown, expired or used.
pub fn password_reset_invalid() -> Markup {
    layout(
        "Link no longer valid",
        html! {
            h1 { "Link no longer valid" }
            p { "This password reset link is invalid, has expired or was already used." }
            p { a href=(shared::paths::PASSWORD_RESET_PATH) { "Ask for a new link" } }
        },
    )
}

/// After a reset: every session and refresh token of the account is gone.
pub fn password_changed() -> Markup {
    layout(
        "Password changed",
        html! {
            h1 { "Password changed" }
            p { "Your password was changed, and you were signed out everywhere." }
            p { a href=(shared::paths::LOGIN_PATH) { "Sign in" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csp(uri: &str) -> Option<String> {
        let url = Url::parse(uri).unwrap();
        csp_for_consent(&url).map(|v| v.to_str().unwrap().to_owned())
    }

    fn policy(form_action: &str) -> String {
        format!(
            "default-src 'self'; frame-ancestors 'none'; form-action {form_action}; \
             base-uri 'none'; object-src 'none'"
        )
    }

    #[test]
    fn csp_for_consent_allows_exact_https_origin() {
        assert_eq!(
            csp("https://app.example.com/oauth/callback?x=1").as_deref(),
            Some(policy("'self' https://app.example.com").as_str())
        );
        assert_eq!(
            csp("https://app.example.com:8443/cb").as_deref(),
            Some(policy("'self' https://app.example.com:8443").as_str())
        );
        // The default port is not spelled out; the host is lower case.
        assert_eq!(
            csp("https://App.Example.COM:443/cb").as_deref(),
            Some(policy("'self' https://app.example.com").as_str())
        );
    }

    #[test]
    fn csp_for_consent_allows_exact_loopback_http_origin_with_port() {
        assert_eq!(
            csp("http://127.0.0.1:8765/callback").as_deref(),
            Some(policy("'self' http://127.0.0.1:8765").as_str())
        );
        assert_eq!(
            csp("http://localhost:3000/cb").as_deref(),
            Some(policy("'self' http://localhost:3000").as_str())
        );
    }

    #[test]
    fn csp_for_consent_allows_scheme_of_private_use_uri() {
        assert_eq!(
            csp("com.example.app:/oauth2redirect").as_deref(),
            Some(policy("'self' com.example.app:").as_str())
        );
        assert_eq!(
            csp("com.example.app://callback").as_deref(),
            Some(policy("'self' com.example.app:").as_str())
        );
    }

    #[test]
    fn csp_for_consent_keeps_every_other_directive_of_the_default() {
        let default: Vec<&str> = shared::http::CSP
            .split(';')
            .map(str::trim)
            .filter(|d| !d.starts_with("form-action"))
            .collect();
        let consent = csp("https://app.example.com/cb").unwrap();
        let directives: Vec<&str> = consent.split("; ").collect();
        for directive in default {
            assert!(directives.contains(&directive), "{directive} in {consent}");
        }
        assert_eq!(
            directives
                .iter()
                .filter(|d| d.starts_with("form-action"))
                .count(),
            1,
            "{consent}"
        );
    }

    #[test]
    fn csp_for_consent_refuses_hosts_that_could_inject_a_directive() {
        for uri in [
            "https://a;script-src*.example/cb",
            "https://a,b.example/cb",
            "https://a'b.example/cb",
            "https://a\"b.example/cb",
            "https://a%20b.example/cb",
            "https://a*.example/cb",
            "https://a_b.example/cb",
        ] {
            // Url refuses some of these itself; whatever it accepts, the CSP
            // must not carry.
            if let Ok(url) = Url::parse(uri) {
                assert_eq!(csp_for_consent(&url), None, "{uri} parsed as {url}");
            }
        }
        // At least the semicolon and the comma get through Url: the check
        // above is not vacuous.
        assert!(Url::parse("https://a;script-src*.example/cb").is_ok());
        assert!(Url::parse("https://a,b.example/cb").is_ok());
        assert!(Url::parse("https://a'b.example/cb").is_ok());
    }

    #[test]
    fn csp_for_consent_refuses_ipv6_hosts_and_non_client_schemes() {
        for uri in [
            "http://[::1]:8080/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "about:blank",
        ] {
            assert_eq!(csp(uri), None, "{uri}");
        }
    }
}
