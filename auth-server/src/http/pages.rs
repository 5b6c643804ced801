//! Server-rendered pages (maud escapes every interpolated value). No inline
//! script or style: the CSP is `default-src 'self'`.

use maud::{DOCTYPE, Markup, html};

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
        },
    )
}

/// The consent form repeats every authorization parameter as a hidden field;
/// the POST runs the whole authorization check again.
pub fn consent(
    csrf_token: &str,
    client_name: &str,
    scope: &str,
    params: &[(String, String)],
) -> Markup {
    layout(
        "Authorize",
        html! {
            h1 { "Allow " strong { (client_name) } "?" }
            p { (client_name) " asks for access to your account with these permissions:" }
            ul.scopes { @for s in scope.split(' ').filter(|s| !s.is_empty()) { li { code { (s) } } } }
            form method="post" action="/consent" {
                input type="hidden" name="csrf_token" value=(csrf_token);
                @for (name, value) in params {
                    input type="hidden" name=(name) value=(value);
                }
                button type="submit" name="decision" value="allow" { "Allow" }
                button type="submit" name="decision" value="deny" { "Deny" }
            }
        },
    )
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
