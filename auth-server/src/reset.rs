//! Password reset by mail.
//!
//! [`request`] only checks the address's syntax and queues it: the answer
//! is the same, in the same time, whether or not an account has that
//! address (no enumeration). A background [`worker`] looks the user up and,
//! only if there is one, creates a single-use token valid
//! [`TOKEN_TTL_SECS`] and mails the link `<issuer>/password-reset/confirm?token=…`.
//! The same worker sends the mails of self-registration ([`Job`],
//! `crate::register`).
//!
//! [`confirm`] looks the token up first (cheap), checks the new password,
//! hashes it outside any transaction, then in one transaction spends the
//! token (a conditional update: of concurrent confirmations exactly one
//! wins), sets the password, revokes every refresh-token family of the
//! user, deletes their sessions and their other reset tokens.

use sea_orm::{DbErr, TransactionTrait};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::audit;
use crate::domain::Email;
use crate::mail::Mail;
use crate::password::{self, HashError};
use crate::state::AppState;
use crate::store::{refresh, resets, sessions, users};

/// How long a reset link works.
pub const TOKEN_TTL_SECS: i64 = 30 * 60;
/// Requests waiting for the worker; past it, `request` answers `Busy`.
pub const QUEUE_CAPACITY: usize = 256;
/// Requests the worker handles at once (a slow SMTP server holds one for up
/// to `mail::SMTP_TIMEOUT`).
const CONCURRENT_JOBS: usize = 4;

pub const SUBJECT: &str = "Reset your Portcullis password";

/// Work for the background [`worker`]: each job looks something up, maybe
/// writes, and sends at most one mail.
#[derive(Debug, Clone)]
pub enum Job {
    /// A password reset was asked for this address.
    Reset(Email),
    /// `crate::register`: a new account has this address.
    Welcome(Email),
    /// `crate::register`: someone tried to register this address, which has
    /// an account already.
    AlreadyRegistered(Email),
}

/// The sending half of the request queue (in `AppState`).
#[derive(Clone)]
pub struct Queue(mpsc::Sender<Job>);

/// The receiving half, for [`worker`].
pub struct Inbox(mpsc::Receiver<Job>);

/// A place in the queue, taken before the work whose mail it will carry, so
/// that the work is not done when the queue is full.
pub struct Slot(mpsc::OwnedPermit<Job>);

impl Slot {
    pub fn send(self, job: Job) {
        self.0.send(job);
    }
}

/// A [`Slot`], or `Busy` at once when the queue is full.
pub fn reserve(app: &AppState) -> Result<Slot, RequestError> {
    app.reset_queue
        .0
        .clone()
        .try_reserve_owned()
        .map(Slot)
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RequestError::Busy,
            mpsc::error::TrySendError::Closed(_) => RequestError::Stopped,
        })
}

/// A bounded queue of [`QUEUE_CAPACITY`] requests.
pub fn queue() -> (Queue, Inbox) {
    let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
    (Queue(sender), Inbox(receiver))
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("not an email address")]
    InvalidEmail,
    /// The queue is full: answer 503 with `Retry-After` (it says nothing
    /// about the address).
    #[error("the password-reset queue is full")]
    Busy,
    /// The worker is gone (shutting down).
    #[error("the password-reset worker has stopped")]
    Stopped,
}

/// Queues a reset for `email`. Touches neither the database nor the mailer,
/// so that it costs the same whoever the address belongs to.
pub fn request(app: &AppState, email: &str) -> Result<(), RequestError> {
    let email = Email::parse(email).map_err(|_| RequestError::InvalidEmail)?;
    app.reset_queue
        .0
        .try_send(Job::Reset(email))
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RequestError::Busy,
            mpsc::error::TrySendError::Closed(_) => RequestError::Stopped,
        })
}

/// The running [`worker`] of a server; stops when dropped.
pub struct Worker(Option<JoinHandle<()>>);

impl Worker {
    /// Starts the worker; call it inside the runtime that serves.
    pub fn spawn(app: AppState, inbox: Inbox) -> Self {
        Self(Some(tokio::spawn(worker(app, inbox))))
    }

    /// Stops the worker and the requests it is handling, and waits until
    /// they have let go of their connections. A token may then exist whose
    /// mail was not sent: it expires unused, and the user asks again.
    pub async fn stop(mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Handles queued requests, [`CONCURRENT_JOBS`] at a time, until aborted
/// (the state it holds keeps the queue open).
pub async fn worker(app: AppState, inbox: Inbox) {
    let Inbox(mut receiver) = inbox;
    let mut jobs = JoinSet::new();
    while let Some(job) = receiver.recv().await {
        while jobs.try_join_next().is_some() {}
        if jobs.len() >= CONCURRENT_JOBS {
            let _ = jobs.join_next().await;
        }
        let app = app.clone();
        jobs.spawn(async move {
            let result = match &job {
                Job::Reset(email) => send_link(&app, email).await,
                Job::Welcome(email) => crate::register::send_welcome(&app, email).await,
                Job::AlreadyRegistered(email) => {
                    crate::register::send_already_registered(&app, email).await
                }
            };
            if let Err(e) = result {
                let context = match job {
                    Job::Reset(_) => "password reset request",
                    Job::Welcome(_) | Job::AlreadyRegistered(_) => "registration mail",
                };
                crate::fault::log(context, &e);
            }
        });
    }
    while jobs.join_next().await.is_some() {}
}

/// If a user has `email`: a new token, audited, and the mail with its link.
/// A mail that cannot be sent is logged by the mailer; the token then just
/// expires.
async fn send_link(app: &AppState, email: &Email) -> anyhow::Result<()> {
    let Some(user) = users::find_by_email(&app.db, email).await? else {
        tracing::debug!("password reset requested for an address without an account");
        return Ok(());
    };
    let now = app.now();
    let token = resets::create(&app.db, &user.id, TOKEN_TTL_SECS, now).await?;
    audit::record(
        app,
        audit::PASSWORD_RESET_REQUESTED,
        Some(&user.id),
        None,
        json!({"mailer": app.mailer.backend(), "expires_at": now + TOKEN_TTL_SECS}),
    )
    .await;
    let mail = Mail {
        to: user.email.clone(),
        subject: SUBJECT.to_owned(),
        body: mail_body(&confirm_link(app, &token)),
    };
    // Logged (recipient and backend, never the body) by the mailer.
    let _ = app.mailer.send(&mail, now).await;
    Ok(())
}

/// `<issuer>/password-reset/confirm?token=<token>` (the token is base64url:
/// nothing to escape).
pub fn confirm_link(app: &AppState, token: &str) -> String {
    format!(
        "{}?token={token}",
        app.url(shared::paths::PASSWORD_RESET_CONFIRM_PATH)
    )
}

fn mail_body(link: &str) -> String {
    let minutes = TOKEN_TTL_SECS / 60;
    format!(
        "Hello,\n\n\
         someone, hopefully you, asked to reset the password of your Portcullis account.\n\n\
         To choose a new password, open this link within {minutes} minutes:\n\n\
         {link}\n\n\
         The link works once. Choosing a new password signs you out everywhere.\n\n\
         If you did not ask for this, ignore this mail: your password stays as it is.\n"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    /// Unknown, expired or used token (or a lost race to spend it): 400.
    #[error("the password reset link is invalid, has expired or was already used")]
    InvalidToken,
    /// The new password breaks the rule of `password::validate`: 422, and
    /// the token stays usable.
    #[error("{0}")]
    WeakPassword(password::Weakness),
    /// Password hashing is at capacity: 503.
    #[error("password hashing is at capacity")]
    Busy,
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl crate::fault::Fault for ConfirmError {
    fn unavailable(&self) -> bool {
        match self {
            Self::Busy => true,
            Self::Db(e) => migrations::db::is_unavailable(e),
            Self::Internal(e) => crate::fault::Fault::unavailable(e),
            Self::InvalidToken | Self::WeakPassword(_) => false,
        }
    }
}

/// Whether `token` is a live reset token (for the page of the link).
pub async fn is_live(app: &AppState, token: &str) -> Result<bool, DbErr> {
    Ok(resets::find_live(&app.db, token, app.now())
        .await?
        .is_some())
}

/// Sets a new password with a reset token (see the module doc).
pub async fn confirm(
    app: &AppState,
    token: &str,
    new_password: String,
) -> Result<(), ConfirmError> {
    let Some(row) = resets::find_live(&app.db, token, app.now()).await? else {
        return Err(ConfirmError::InvalidToken);
    };
    // The user's email and name count as known words for the password rule.
    let Some(user) = users::find(&app.db, &row.user_id).await? else {
        return Err(ConfirmError::InvalidToken);
    };
    // zxcvbn takes up to a few milliseconds: not on an async worker.
    let email = user.email.clone();
    let new_password = tokio::task::spawn_blocking(move || {
        password::validate(&new_password, &[&user.email, &user.name]).map(|()| new_password)
    })
    .await
    .map_err(|e| anyhow::anyhow!("checking the new password: {e}"))?
    .map_err(ConfirmError::WeakPassword)?;
    let hash = app
        .password_gate
        .admit()
        .map_err(hash_error)?
        .hash(new_password)
        .await
        .map_err(hash_error)?;
    let now = app.now();
    let txn = app.db.begin().await?;
    // The write comes first (see `store::refresh::rotate`); a lost race, or
    // a token that expired while the password was hashed, changes nothing.
    if !resets::spend(&txn, &row.token_hash, now).await? {
        txn.rollback().await?;
        return Err(ConfirmError::InvalidToken);
    }
    if !users::set_password_hash(&txn, &row.user_id, &hash, now).await? {
        // The user was deleted meanwhile.
        txn.rollback().await?;
        return Err(ConfirmError::InvalidToken);
    }
    let revoked =
        refresh::revoke_user(&txn, &row.user_id, refresh::REASON_PASSWORD_RESET, now).await?;
    let signed_out = sessions::delete_user(&txn, &row.user_id).await?;
    resets::delete_others(&txn, &row.user_id, &row.id).await?;
    // Whoever could read the owner's mail proved it: a lockout of the
    // account (perhaps an attacker's doing) ends with the new password.
    crate::store::lockouts::clear(&txn, crate::store::lockouts::Kind::Account, &email).await?;
    // The access tokens issued so far go too (`shared::revocation`).
    let record = crate::store::revocations::record(
        &txn,
        shared::revocation::SubjectKind::User,
        &row.user_id,
        now,
        crate::store::revocations::cover_secs(app.settings.auth_access_token_ttl_secs),
    )
    .await?;
    txn.commit().await?;
    crate::revocations::announce(&app.settings, Some(record));
    audit::record(
        app,
        audit::PASSWORD_RESET,
        Some(&row.user_id),
        None,
        json!({"refresh_tokens_revoked": revoked, "sessions_deleted": signed_out}),
    )
    .await;
    Ok(())
}

fn hash_error(error: HashError) -> ConfirmError {
    match error {
        HashError::Busy => ConfirmError::Busy,
        HashError::Failed(e) => ConfirmError::Internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_body_carries_the_link_and_the_lifetime() {
        let body = mail_body("https://id.example/password-reset/confirm?token=abc");
        assert!(body.contains("\nhttps://id.example/password-reset/confirm?token=abc\n"));
        assert!(body.contains("within 30 minutes"));
    }
}
