//! argon2id for human passwords (OWASP: m=19456 KiB, t=2, p=1), never on
//! an async worker: the server's checks run in [`PasswordGate`]'s own
//! threads, the CLI's on tokio's blocking pool.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The password rule, the same wherever a password is chosen (registration,
/// reset, `users create`): at least [`MIN_LENGTH`] characters, at most
/// [`MAX_LENGTH`] bytes, and a zxcvbn score of at least [`MIN_SCORE`] with
/// the user's own email and name counted as words an attacker knows.
pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 1024;
/// At least zxcvbn's score 3: more than 10^8 estimated guesses ("safely
/// unguessable" in zxcvbn's words).
pub const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

fn hasher() -> anyhow::Result<Argon2<'static>> {
    let params =
        Params::new(19_456, 2, 1, None).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A hash of a fixed random password, verified against when the user does not
/// exist so that both paths cost the same.
static DUMMY_HASH: LazyLock<Option<String>> =
    LazyLock::new(|| hash_blocking("portcullis-dummy-password").ok());

/// How a password breaks [the rule](MIN_LENGTH).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Weakness {
    #[error("password must have at least {MIN_LENGTH} characters")]
    TooShort,
    #[error("password must have at most {MAX_LENGTH} bytes")]
    TooLong,
    /// zxcvbn's advice, when it has some, follows the sentence.
    #[error("password is too easy to guess{}", .hint.as_deref().map(|h| format!(": {h}")).unwrap_or_default())]
    TooWeak { hint: Option<String> },
}

impl Weakness {
    /// The rule's name in a 422 problem's `errors`.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
            Self::TooWeak { .. } => "too_weak",
        }
    }
}

/// Checks `password` against the rule. `user_inputs` are what an attacker
/// may know of the user (the email and the name): a password built from
/// them, or from their words (the email's local part, a first name), is
/// guessable. zxcvbn looks at the first 100 characters only, so this costs
/// at most a few milliseconds (about 5 ms for 100 characters) whatever the
/// length: callers on the server run it off the async workers, after their
/// rate limit.
pub fn validate(password: &str, user_inputs: &[&str]) -> Result<(), Weakness> {
    if password.len() > MAX_LENGTH {
        return Err(Weakness::TooLong);
    }
    if password.chars().count() < MIN_LENGTH {
        return Err(Weakness::TooShort);
    }
    let mut words: Vec<&str> = Vec::new();
    for input in user_inputs {
        words.push(input.trim());
        words.extend(input.split(|c: char| !c.is_alphanumeric()));
    }
    words.retain(|w| w.chars().count() >= 3);
    let estimate = zxcvbn::zxcvbn(password, &words);
    if estimate.score() >= MIN_SCORE {
        return Ok(());
    }
    let hint = estimate.feedback().and_then(|feedback| {
        let advice: Vec<String> = feedback
            .warning()
            .map(|w| w.to_string())
            .into_iter()
            .chain(feedback.suggestions().iter().map(ToString::to_string))
            .collect();
        (!advice.is_empty()).then(|| advice.join(" "))
    });
    Err(Weakness::TooWeak { hint })
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let hasher = hasher()?;
    let salt = salt.as_salt();
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_buf)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    // In this thread's kept memory, as verification is: a hashing thread
    // never allocates its 19 MiB twice.
    with_blocks(hasher.params().block_count(), |blocks| {
        hasher
            .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, blocks)
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    })?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: hasher
            .params()
            .try_into()
            .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))?),
    };
    Ok(hash.to_string())
}

/// Runs `f` on this thread's kept argon2 memory of `block_count` blocks
/// (allocated on first use, or when a stored hash asks for another size).
fn with_blocks<T>(
    block_count: usize,
    f: impl FnOnce(&mut [argon2::Block]) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        if blocks.len() != block_count {
            // Give the old buffer back before taking the new one.
            *blocks = Vec::new();
            blocks.resize(block_count, argon2::Block::default());
        }
        f(blocks.as_mut_slice())
    })
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
    let ok = verify_with_own_memory(password.as_bytes(), &parsed)?;
    Ok(ok && real)
}

/// The most argon2 memory a stored hash may ask for (blocks of 1 KiB).
const MAX_BLOCKS: usize = 64 * 1024;

thread_local! {
    /// This thread's argon2 working memory, kept between verifications: a
    /// fresh 19 MiB allocation per check fragments the heap under a flood
    /// (measured: 32 MB resident growing to 240–565 MB in a 4 s flood).
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// argon2's own `verify_password`, but computing in this thread's kept
/// memory; the comparison is constant time.
fn verify_with_own_memory(password: &[u8], parsed: &PasswordHash<'_>) -> anyhow::Result<bool> {
    let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("stored hash: {e}");
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| bad(&e))?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(|e| bad(&e))?,
        None => Version::V0x13,
    };
    let params = Params::try_from(parsed).map_err(|e| bad(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("stored hash: no salt or no hash");
    };
    if params.block_count() > MAX_BLOCKS {
        anyhow::bail!("stored hash: asks for more than {MAX_BLOCKS} KiB");
    }
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(|e| bad(&e))?;
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    with_blocks(params.block_count(), |blocks| {
        argon
            .hash_password_into_with_memory(password, salt, &mut out, blocks)
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })?;
    Ok(aws_lc_rs::constant_time::verify_slices_are_equal(&out, expected.as_bytes()).is_ok())
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
    jobs: std::sync::mpsc::Sender<Job>,
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    capacity: usize,
    queue_timeout: Duration,
}

/// A place in the gate, held from admission until the hash is done (even if
/// the request that asked for it has gone away meanwhile).
pub struct Admission {
    jobs: std::sync::mpsc::Sender<Job>,
    running: Arc<Semaphore>,
    place: OwnedSemaphorePermit,
    queue_timeout: Duration,
}

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// `concurrency` threads of their own that run the hashes. Not tokio's
/// blocking pool: its threads come and go (up to 512), and each thread that
/// ever ran argon2 keeps its 19 MiB in its malloc arena; a flood measured
/// 356 MB that way. A fixed set of threads bounds that memory to
/// `concurrency` × 19 MiB. The threads end when the gate is dropped.
fn spawn_workers(concurrency: usize) -> anyhow::Result<std::sync::mpsc::Sender<Job>> {
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    let queue = Arc::new(std::sync::Mutex::new(queue));
    for i in 0..concurrency {
        let queue = queue.clone();
        std::thread::Builder::new()
            .name(format!("argon2-{i}"))
            .spawn(move || {
                lower_priority();
                loop {
                    // The lock is held only while waiting for a job.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })
            .context("starting a password-hashing thread")?;
    }
    Ok(jobs)
}

/// How much nicer than the rest of the server the hashing threads run.
/// At 10 the kernel gives a busy request thread about nine times a hashing
/// thread's share of a core, and a request thread that wakes up (a
/// `/healthz`, a token request) runs before a hashing thread's turn is over:
/// hashing fills the cores the requests leave idle instead of queueing them
/// behind 15 ms computations. Hashing still gets about a tenth of a core
/// under a flood of cheap requests, so sign-ins slow down but do not stop.
pub const HASH_NICENESS: i32 = 10;

/// Lowers the calling thread's scheduling priority by [`HASH_NICENESS`]
/// (Linux: the nice value is per thread; raising it needs no privilege).
/// A failure is logged and the thread runs at the normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let lowered = rustix::process::getpriority_process(Some(tid)).and_then(|nice| {
            rustix::process::setpriority_process(Some(tid), (nice + HASH_NICENESS).min(19))
        });
        if let Err(e) = lowered {
            tracing::warn!(error = %e, "could not lower a password-hashing thread's priority");
        }
    }
}

/// The nice value of the calling thread (Linux), for tests.
#[cfg(all(test, target_os = "linux"))]
fn current_niceness() -> i32 {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(i32::MIN)
}

impl PasswordGate {
    pub fn new(concurrency: usize, queue: usize, queue_timeout: Duration) -> anyhow::Result<Self> {
        let concurrency = concurrency.max(1);
        Ok(Self {
            jobs: spawn_workers(concurrency)?,
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency + queue)),
            capacity: concurrency + queue,
            queue_timeout,
        })
    }

    /// A place in the queue, or `Busy` at once when it is full.
    pub fn admit(&self) -> Result<Admission, HashError> {
        let place = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashError::Busy)?;
        Ok(Admission {
            jobs: self.jobs.clone(),
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
        let (answer, answered) = tokio::sync::oneshot::channel();
        // The permits move into the job: a request dropped while its hash
        // runs does not free the slot before the CPU is free.
        let job: Job = Box::new(move || {
            let result = work();
            drop((slot, place));
            let _ = answer.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the password-hashing threads have stopped"))?;
        answered
            .await
            .context("password-hashing thread")?
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
    use argon2::password_hash::PasswordHasher;

    /// What a hashing thread reports about itself.
    #[derive(Debug)]
    struct Seen {
        thread: Option<String>,
        niceness: i32,
        /// Address and length of the thread's kept argon2 memory.
        blocks: (usize, usize),
    }

    fn seen() -> Seen {
        Seen {
            thread: std::thread::current().name().map(str::to_owned),
            niceness: current_niceness(),
            blocks: BLOCKS.with(|b| {
                let b = b.borrow();
                (b.as_ptr() as usize, b.len())
            }),
        }
    }

    #[tokio::test]
    async fn gate_runs_hashes_on_its_own_lower_priority_threads() {
        let gate = PasswordGate::new(2, 8, Duration::from_secs(30)).unwrap();
        let request_niceness = current_niceness();
        let mut seen_all = Vec::new();
        for _ in 0..6 {
            let admission = gate.admit().unwrap();
            seen_all.push(admission.run(|| Ok(seen())).await.unwrap());
        }
        for s in &seen_all {
            let name = s.thread.as_deref().unwrap_or_default();
            assert!(name == "argon2-0" || name == "argon2-1", "{s:?}");
            assert_eq!(
                s.niceness,
                (request_niceness + HASH_NICENESS).min(19),
                "{s:?}"
            );
        }
        // The caller's own priority is untouched.
        assert_eq!(current_niceness(), request_niceness);
    }

    #[tokio::test]
    async fn gate_threads_keep_one_argon2_buffer_for_hashes_and_checks() {
        let gate = PasswordGate::new(1, 8, Duration::from_secs(30)).unwrap();
        let stored = gate
            .admit()
            .unwrap()
            .hash("a long enough password".into())
            .await
            .unwrap();
        let first = gate.admit().unwrap().run(|| Ok(seen())).await.unwrap();
        assert_eq!(first.blocks.1, 19_456, "one buffer of m = 19456 KiB");
        for attempt in ["a long enough password", "wrong", "another wrong one"] {
            let ok = gate
                .admit()
                .unwrap()
                .verify(attempt.into(), Some(stored.clone()))
                .await
                .unwrap();
            assert_eq!(ok, attempt == "a long enough password");
            let now = gate.admit().unwrap().run(|| Ok(seen())).await.unwrap();
            assert_eq!(now.blocks, first.blocks, "the same memory, not a new one");
        }
        // The dummy hash of an unknown user, too.
        let ok = gate
            .admit()
            .unwrap()
            .verify("x".into(), None)
            .await
            .unwrap();
        assert!(!ok);
        let now = gate.admit().unwrap().run(|| Ok(seen())).await.unwrap();
        assert_eq!(now.blocks, first.blocks);
    }

    #[test]
    fn hash_in_kept_memory_matches_argon2s_own_encoding() {
        let stored = hash_blocking("a long enough password").unwrap();
        let parsed = PasswordHash::new(&stored).unwrap();
        let again = hasher()
            .unwrap()
            .hash_password(b"a long enough password", parsed.salt.unwrap())
            .unwrap()
            .to_string();
        assert_eq!(stored, again);
        assert!(verify_blocking("a long enough password", Some(stored.clone())).unwrap());
        assert!(!verify_blocking("a long enough passwore", Some(stored)).unwrap());
    }

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
        let gate = PasswordGate::new(1, 1, Duration::from_secs(5)).unwrap();
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
        let gate = PasswordGate::new(1, 4, Duration::from_millis(1)).unwrap();
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
    fn verify_reads_the_parameters_of_each_stored_hash() {
        // A hash made by argon2 itself with other parameters (and argon2i).
        let other = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(8192, 1, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut OsRng);
        let stored = other
            .hash_password(b"another password", &salt)
            .unwrap()
            .to_string();
        assert!(verify_blocking("another password", Some(stored.clone())).unwrap());
        assert!(!verify_blocking("another passwore", Some(stored.clone())).unwrap());
        // And back to ours on the same thread (the kept memory is resized).
        let ours = hash_blocking("correct horse").unwrap();
        assert!(verify_blocking("correct horse", Some(ours)).unwrap());
        // A stored hash asking for too much memory is refused, not run.
        let greedy = stored.replace("m=8192", "m=4194304");
        assert!(verify_blocking("another password", Some(greedy)).is_err());
    }

    const ANN: [&str; 2] = ["ann.whitfield@example.org", "Ann Whitfield"];

    #[test]
    fn validate_rejects_short_password() {
        assert_eq!(validate("short", &ANN), Err(Weakness::TooShort));
        // 11 characters, however unguessable.
        assert_eq!(validate("x9Kq#mL2pZ7", &ANN), Err(Weakness::TooShort));
        // Characters, not bytes: 12 of them in 24 bytes is long enough.
        assert!(validate("ä9Kq#mL2pZ7v", &ANN).is_ok());
    }

    #[test]
    fn validate_rejects_long_password_by_bytes() {
        let long = "correct horse battery staple ".repeat(40);
        assert!(long.len() > MAX_LENGTH);
        assert_eq!(validate(&long, &ANN), Err(Weakness::TooLong));
        assert!(validate(&long[..MAX_LENGTH], &ANN).is_ok());
        assert_eq!(validate(&"é".repeat(513), &ANN), Err(Weakness::TooLong));
    }

    #[test]
    fn validate_rejects_guessable_password() {
        for weak in [
            "password1234",
            "aaaaaaaaaaaaaaaa",
            "qwertyuiopasdf",
            "1234567890123",
            "iloveyou2024!",
        ] {
            let error = validate(weak, &ANN).unwrap_err();
            assert!(matches!(error, Weakness::TooWeak { .. }), "{weak}");
            assert_eq!(error.rule(), "too_weak");
        }
    }

    #[test]
    fn validate_rejects_password_made_of_the_users_email_or_name() {
        let includes_the_email = [
            "ann.whitfield@example.org",
            "Ann.Whitfield@example.org",
            "ann.whitfield@example.org2024",
            "my ann.whitfield@example.org",
        ];
        for weak in includes_the_email.iter().chain(&["Ann Whitfield"]) {
            assert!(
                matches!(validate(weak, &ANN), Err(Weakness::TooWeak { .. })),
                "{weak}"
            );
        }
        // The same passwords are fine for someone else.
        for other in includes_the_email {
            assert_eq!(
                validate(other, &["bob@example.com", "Bob"]),
                Ok(()),
                "{other}"
            );
        }
    }

    #[test]
    fn validate_accepts_strong_passwords() {
        for strong in [
            "correct horse battery staple",
            "a brand new passphrase",
            "x9Kq#mL2pZ7v",
            "long enough password",
        ] {
            assert_eq!(validate(strong, &ANN), Ok(()), "{strong}");
        }
    }

    #[test]
    fn weakness_names_its_rule_and_explains_itself() {
        assert_eq!(Weakness::TooShort.rule(), "too_short");
        assert_eq!(Weakness::TooLong.rule(), "too_long");
        assert_eq!(
            Weakness::TooShort.to_string(),
            "password must have at least 12 characters"
        );
        let weak = validate("password1234", &ANN).unwrap_err();
        assert!(
            weak.to_string()
                .starts_with("password is too easy to guess"),
            "{weak}"
        );
    }
}
