//! argon2id for human passwords (OWASP: m=19456 KiB, t=2, p=1), always on the
//! blocking pool.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 1024;

fn hasher() -> anyhow::Result<Argon2<'static>> {
    let params =
        Params::new(19_456, 2, 1, None).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A hash of a fixed random password, verified against when the user does not
/// exist so that both paths cost the same.
static DUMMY_HASH: LazyLock<Option<String>> =
    LazyLock::new(|| hash_blocking("portcullis-dummy-password").ok());

pub fn validate(password: &str) -> anyhow::Result<()> {
    let len = password.chars().count();
    if len < MIN_LENGTH {
        anyhow::bail!("password must have at least {MIN_LENGTH} characters");
    }
    if password.len() > MAX_LENGTH {
        anyhow::bail!("password must have at most {MAX_LENGTH} bytes");
    }
    Ok(())
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))?;
    Ok(hash.to_string())
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .context("password hashing task")?
}

/// Verifies `password` against `stored` (or against a dummy hash when there is
/// no user, so that both cost the same), on the blocking pool, outside any
/// gate (the CLI; the server uses [`PasswordGate`]).
pub async fn verify(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || verify_blocking(&password, stored))
        .await
        .context("password verification task")?
}

fn verify_blocking(password: &str, stored: Option<String>) -> anyhow::Result<bool> {
    let (encoded, real) = match stored {
        Some(h) => (h, true),
        None => (DUMMY_HASH.clone().unwrap_or_default(), false),
    };
    let parsed = PasswordHash::new(&encoded).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    let ok = hasher()?
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    Ok(ok && real)
}

/// Why a gated hash did not run.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot is taken and the queue is full, or the wait for a
    /// slot passed its deadline: answer 503 with `Retry-After`.
    #[error("password hashing is at capacity")]
    Busy,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Bounds password hashing: at most `concurrency` argon2id computations run
/// at once (each takes about 19 MiB and 15 ms of a core), at most `queue`
/// more wait for a slot, each for at most `queue_timeout`. A login flood is
/// thus a queue of bounded length, not a flood of blocking threads and
/// memory; past it, logins answer 503 before any other work ([`admit`] is the
/// first thing a login does after its rate limit).
///
/// [`admit`]: PasswordGate::admit
#[derive(Clone)]
pub struct PasswordGate {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    capacity: usize,
    queue_timeout: Duration,
}

/// A place in the gate, held from admission until the hash is done (even if
/// the request that asked for it has gone away meanwhile).
pub struct Admission {
    running: Arc<Semaphore>,
    place: OwnedSemaphorePermit,
    queue_timeout: Duration,
}

impl PasswordGate {
    pub fn new(concurrency: usize, queue: usize, queue_timeout: Duration) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency + queue)),
            capacity: concurrency + queue,
            queue_timeout,
        }
    }

    /// A place in the queue, or `Busy` at once when it is full.
    pub fn admit(&self) -> Result<Admission, HashError> {
        let place = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashError::Busy)?;
        Ok(Admission {
            running: self.running.clone(),
            place,
            queue_timeout: self.queue_timeout,
        })
    }

    /// Hashes being computed or waiting, for tests and metrics.
    pub fn in_use(&self) -> usize {
        self.capacity
            .saturating_sub(self.admitted.available_permits())
    }
}

impl Admission {
    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, HashError> {
        let slot = tokio::time::timeout(self.queue_timeout, self.running.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        let place = self.place;
        // The permits move into the blocking task: a request dropped while
        // its hash runs does not free the slot before the CPU is free.
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop((slot, place));
            result
        })
        .await
        .context("password task")?
        .map_err(HashError::Failed)
    }

    /// [`verify`], inside the gate.
    pub async fn verify(self, password: String, stored: Option<String>) -> Result<bool, HashError> {
        self.run(move || verify_blocking(&password, stored)).await
    }

    /// [`hash`], inside the gate.
    pub async fn hash(self, password: String) -> Result<String, HashError> {
        self.run(move || hash_blocking(&password)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verify_accepts_right_and_rejects_wrong_password() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            verify("correct horse".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse".into(), Some(h)).await.unwrap());
        assert!(
            !verify("portcullis-dummy-password".into(), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn gate_refuses_beyond_its_queue_and_frees_places_when_done() {
        let gate = PasswordGate::new(1, 1, Duration::from_secs(5));
        let first = gate.admit().unwrap();
        let second = gate.admit().unwrap();
        assert!(matches!(gate.admit(), Err(HashError::Busy)));
        assert_eq!(gate.in_use(), 2);
        let (a, b) = tokio::join!(
            first.verify("x".into(), None),
            second.verify("y".into(), None)
        );
        assert!(!a.unwrap() && !b.unwrap());
        assert_eq!(gate.in_use(), 0);
        assert!(gate.admit().is_ok());
    }

    #[tokio::test]
    async fn gate_gives_up_waiting_after_its_deadline() {
        let gate = PasswordGate::new(1, 4, Duration::from_millis(1));
        let running = gate.admit().unwrap();
        let waiting = gate.admit().unwrap();
        let (slow, fast) = tokio::join!(
            running.hash("a long enough password".into()),
            waiting.hash("another password".into())
        );
        assert!(slow.is_ok());
        assert!(matches!(fast, Err(HashError::Busy)));
    }

    #[test]
    fn validate_rejects_short_password() {
        assert!(validate("short").is_err());
        assert!(validate("long enough").is_ok());
    }
}
