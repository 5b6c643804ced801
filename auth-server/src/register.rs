//! Self-registration (`POST /api/v2/users`, when `REGISTRATION=open`).
//!
//! No enumeration: whether or not the address has an account, the request
//! does the same work and gets the same answer. The password is hashed
//! through the bounded gate in both cases (the cost that dominates), then
//! one `INSERT … ON CONFLICT (email) DO NOTHING` creates the account or
//! changes nothing, and the background worker of `crate::reset` mails the
//! address: a welcome for a new account, "someone tried to register with
//! your address" for an existing one. Only the owner of the address learns
//! which it was.
//!
//! A new account has no roles and the standard tier: nothing a request
//! sends reaches a server-owned field. Its creation is audited
//! (`user.registered`).

use sea_orm::DbErr;
use serde_json::json;

use crate::audit;
use crate::domain::Email;
use crate::mail::Mail;
use crate::password::HashError;
use crate::reset::{self, Job, RequestError};
use crate::state::AppState;
use crate::store::users;

pub const WELCOME_SUBJECT: &str = "Welcome to Portcullis";
pub const ALREADY_REGISTERED_SUBJECT: &str = "Someone tried to register with your address";

/// A registration whose fields passed their rules (`http::routes::register`).
pub struct Registration {
    pub email: Email,
    /// Already through `domain::parse_name`.
    pub name: String,
    /// Already through `password::validate`.
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Password hashing is at capacity: 503.
    #[error("password hashing is at capacity")]
    Busy,
    /// The mail queue is full: 503, before anything is written.
    #[error("the mail queue is full")]
    QueueFull,
    /// The mail worker is gone (shutting down): 503.
    #[error("the mail worker has stopped")]
    Stopped,
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl crate::fault::Fault for RegisterError {
    fn unavailable(&self) -> bool {
        match self {
            Self::Busy | Self::QueueFull | Self::Stopped => true,
            Self::Db(e) => migrations::db::is_unavailable(e),
            Self::Internal(e) => crate::fault::Fault::unavailable(e),
        }
    }
}

/// Registers `registration` (see the module doc). `Ok` says nothing about
/// whether an account was created.
pub async fn register(app: &AppState, registration: Registration) -> Result<(), RegisterError> {
    let Registration {
        email,
        name,
        password,
    } = registration;
    // The mail's place first: a full queue refuses before any work.
    let slot = reset::reserve(app).map_err(|e| match e {
        RequestError::Busy => RegisterError::QueueFull,
        RequestError::Stopped | RequestError::InvalidEmail => RegisterError::Stopped,
    })?;
    let hash = app
        .password_gate
        .admit()
        .map_err(hash_error)?
        .hash(password)
        .await
        .map_err(hash_error)?;
    // Mail about an address's account is limited per address (the
    // password-reset bucket, `RATE_LIMIT_PASSWORD_RESET`), so that repeated
    // registrations cannot flood an owner with "someone tried" notices. The
    // bucket is taken in both cases, so the branches cost the same.
    let may_notify = app
        .limiter
        .check(&app.limits.reset_email, email.as_str())
        .await
        .allowed;
    match users::create_if_absent(&app.db, &email, &name, &hash, app.now()).await? {
        Some(user) => {
            audit::record(app, audit::USER_REGISTERED, Some(&user.id), None, json!({})).await;
            slot.send(Job::Welcome(email));
        }
        None if may_notify => slot.send(Job::AlreadyRegistered(email)),
        // Still 202: the answer never depends on the account.
        None => tracing::info!(limit = "reset_email", "registration notice not sent"),
    }
    Ok(())
}

fn hash_error(error: HashError) -> RegisterError {
    match error {
        HashError::Busy => RegisterError::Busy,
        HashError::Failed(e) => RegisterError::Internal(e),
    }
}

/// The worker's job for a new account. A mail that cannot be sent is
/// logged by the mailer.
pub async fn send_welcome(app: &AppState, email: &Email) -> anyhow::Result<()> {
    let mail = Mail {
        to: email.as_str().to_owned(),
        subject: WELCOME_SUBJECT.to_owned(),
        body: welcome_body(&app.issuer, &reset_link(app)),
    };
    let _ = app.mailer.send(&mail, app.now()).await;
    Ok(())
}

/// The worker's job for an address that has an account already.
pub async fn send_already_registered(app: &AppState, email: &Email) -> anyhow::Result<()> {
    let mail = Mail {
        to: email.as_str().to_owned(),
        subject: ALREADY_REGISTERED_SUBJECT.to_owned(),
        body: already_registered_body(&reset_link(app)),
    };
    let _ = app.mailer.send(&mail, app.now()).await;
    Ok(())
}

/// `<issuer>/password-reset`.
fn reset_link(app: &AppState) -> String {
    app.url(shared::paths::PASSWORD_RESET_PATH)
}

fn welcome_body(issuer: &str, reset: &str) -> String {
    format!(
        "Hello,\n\n\
         welcome to Portcullis ({issuer}): an account has been created for this address.\n\
         You can now sign in with it, with the password you chose, to the applications \
         that use Portcullis.\n\n\
         If you did not register, someone else used your address. You can take the \
         account over by choosing a new password at:\n\n\
         {reset}\n"
    )
}

fn already_registered_body(reset: &str) -> String {
    format!(
        "Hello,\n\n\
         someone tried to register a Portcullis account with your address, which has \
         an account already. Nothing was changed.\n\n\
         If it was you, sign in with your password, or reset your password at:\n\n\
         {reset}\n\n\
         If it was not you, ignore this mail: your account and its password stay as they are.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mails_carry_the_reset_link() {
        let reset = "https://id.example/password-reset";
        let welcome = welcome_body("https://id.example", reset);
        assert!(welcome.contains("account has been created"));
        assert!(welcome.contains("\nhttps://id.example/password-reset\n"));
        let tried = already_registered_body(reset);
        assert!(tried.contains("someone tried to register"));
        assert!(tried.contains("If it was you, sign in"));
        assert!(tried.contains("\nhttps://id.example/password-reset\n"));
    }
}
