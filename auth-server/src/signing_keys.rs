//! Which key signs and which keys the JWKS publishes, as recorded in the
//! `signing_keys` table, so that every instance sharing the database agrees
//! (file times in the keys folder decide nothing).
//!
//! A key goes `published` (in the JWKS, not signing yet) → signing (its
//! `activates_at` has passed and no later key's has) → superseded (a later
//! key signs; still published, its tokens still verify) → `retired` (out of
//! the JWKS). `keys rotate` inserts a key as published with `activates_at`
//! = now + `KEY_ROTATION_DELAY_SECS`, longer than a verifier's JWKS cache
//! lifetime, so that every verifier knows the key before it signs.
//! `keys retire` refuses while a token the key signed may still be valid.
//!
//! Each instance reads the table at start and every [`RELOAD_INTERVAL`]
//! ([`KeyRing`]); it signs only with the key the table names, and answers
//! `temporarily_unavailable` when it cannot (that key's file is missing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryOrder};
use serde::Serialize;
use shared::jwt::{
    AccessTokenClaims, Jwks, KeySource, PublicKey, SignError, Signer, Verifier, VerifierSettings,
    VerifyError,
};
use shared::startup::fix;

use crate::clock::Clock;
use crate::store::entities::signing_keys as entity;

/// How often a running server rereads the table.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Default of `KEY_ROTATION_DELAY_SECS`: longer than the longest time a
/// verifier may keep a JWKS (the bounded `max-age`, 300 s as served, plus
/// its unknown-kid refetch interval) and than [`RELOAD_INTERVAL`].
pub const DEFAULT_ROTATION_DELAY_SECS: i64 = 600;

/// Longest `KEY_ROTATION_DELAY_SECS` (and `keys rotate --delay`): 30 days.
pub const MAX_ROTATION_DELAY_SECS: i64 = 30 * 24 * 3600;

/// The `max-age` of the JWKS response: 300 s, or less when the rotation
/// delay is short, so that verifiers refresh (they honour it, at least
/// 30 s) well within the delay and know a rotated-in key before it signs.
pub fn jwks_max_age_secs(rotation_delay_secs: i64) -> i64 {
    (rotation_delay_secs / 2).clamp(30, 300)
}

pub const STATE_PUBLISHED: &str = "published";
pub const STATE_ACTIVE: &str = "active";
pub const STATE_RETIRED: &str = "retired";

/// One row of `signing_keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub kid: String,
    pub state: String,
    pub published_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
}

impl From<entity::Model> for Row {
    fn from(m: entity::Model) -> Self {
        Self {
            kid: m.kid,
            state: m.state,
            published_at: m.published_at,
            activates_at: m.activates_at,
            retired_at: m.retired_at,
        }
    }
}

impl Row {
    pub fn is_retired(&self) -> bool {
        self.state == STATE_RETIRED
    }
}

/// What a key is at a given time ([`status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// In the JWKS, signing from `activates_at`.
    Published,
    /// The key that signs now.
    Active,
    /// Signed before a later key took over; still in the JWKS.
    Superseded,
    /// Out of the JWKS.
    Retired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Active => "active",
            Self::Superseded => "superseded",
            Self::Retired => "retired",
        }
    }
}

/// The key that signs at `now`: of the non-retired keys whose
/// `activates_at` has passed, the latest (ties: the later published, then
/// the greater kid, so that every instance picks the same).
pub fn signing_key(rows: &[Row], now: i64) -> Option<&Row> {
    rows.iter()
        .filter(|r| !r.is_retired() && r.activates_at <= now)
        .max_by(|a, b| {
            (a.activates_at, a.published_at, &a.kid).cmp(&(b.activates_at, b.published_at, &b.kid))
        })
}

/// The keys the JWKS publishes: every key not retired.
pub fn published(rows: &[Row]) -> impl Iterator<Item = &Row> {
    rows.iter().filter(|r| !r.is_retired())
}

pub fn status(rows: &[Row], row: &Row, now: i64) -> Status {
    if row.is_retired() {
        Status::Retired
    } else if signing_key(rows, now).is_some_and(|s| s.kid == row.kid) {
        Status::Active
    } else if row.activates_at > now {
        Status::Published
    } else {
        Status::Superseded
    }
}

/// The last time `row` may have signed: now while it signs, the activation
/// of the key that took over after it, None when it never signed.
pub fn last_signed_at(rows: &[Row], row: &Row, now: i64) -> Option<i64> {
    if row.activates_at > now {
        return None;
    }
    if signing_key(rows, now).is_some_and(|s| s.kid == row.kid) {
        return Some(now);
    }
    let next = rows
        .iter()
        .filter(|r| r.kid != row.kid && r.activates_at <= now)
        .filter(|r| {
            (r.activates_at, r.published_at, &r.kid)
                > (row.activates_at, row.published_at, &row.kid)
        })
        .map(|r| r.activates_at)
        .min();
    Some(next.unwrap_or(now))
}

/// Until when a token signed by `row` may still be valid: its last signing
/// (plus the reload interval, during which another instance may not have
/// switched yet) plus the access-token lifetime plus the verifiers' leeway.
/// None when it never signed.
pub fn tokens_valid_until(rows: &[Row], row: &Row, now: i64, token_ttl_secs: i64) -> Option<i64> {
    let reload = i64::try_from(RELOAD_INTERVAL.as_secs()).unwrap_or(i64::MAX);
    let leeway = i64::try_from(shared::contract::TOKEN_LEEWAY.as_secs()).unwrap_or(i64::MAX);
    last_signed_at(rows, row, now).map(|last| {
        last.saturating_add(reload)
            .saturating_add(token_ttl_secs.max(0))
            .saturating_add(leeway)
    })
}

/// Why `keys retire` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetireError {
    #[error("no signing key {0} is recorded")]
    Unknown(String),
    #[error("{0} is already retired")]
    AlreadyRetired(String),
    #[error(
        "{0} is the key that signs now; rotate first (`auth-server keys rotate --delay 0` to switch at once)"
    )]
    Signing(String),
    #[error(
        "tokens signed by {kid} may be valid until {until} (Unix seconds, {left} s from now); retire it then, or use --force to remove it now (its tokens then stop verifying)"
    )]
    TokensStillValid { kid: String, until: i64, left: i64 },
}

/// Whether `kid` may be retired at `now`.
pub fn check_retire(
    rows: &[Row],
    kid: &str,
    now: i64,
    token_ttl_secs: i64,
    force: bool,
) -> Result<(), RetireError> {
    let row = rows
        .iter()
        .find(|r| r.kid == kid)
        .ok_or_else(|| RetireError::Unknown(kid.to_owned()))?;
    if row.is_retired() {
        return Err(RetireError::AlreadyRetired(kid.to_owned()));
    }
    if signing_key(rows, now).is_some_and(|s| s.kid == kid) {
        return Err(RetireError::Signing(kid.to_owned()));
    }
    if let Some(until) = tokens_valid_until(rows, row, now, token_ttl_secs)
        && now < until
        && !force
    {
        return Err(RetireError::TokensStillValid {
            kid: kid.to_owned(),
            until,
            left: until - now,
        });
    }
    Ok(())
}

// ---- store -------------------------------------------------------------

pub async fn load_rows(db: &impl ConnectionTrait) -> Result<Vec<Row>, sea_orm::DbErr> {
    Ok(entity::Entity::find()
        .order_by_asc(entity::Column::ActivatesAt)
        .order_by_asc(entity::Column::Kid)
        .all(db)
        .await?
        .into_iter()
        .map(Row::from)
        .collect())
}

/// Inserts a row; a row with the same kid already there is left alone
/// (another instance recorded it first).
pub async fn insert(db: &impl ConnectionTrait, row: &Row) -> Result<(), sea_orm::DbErr> {
    let model = entity::ActiveModel {
        kid: Set(row.kid.clone()),
        state: Set(row.state.clone()),
        published_at: Set(row.published_at),
        activates_at: Set(row.activates_at),
        retired_at: Set(row.retired_at),
    };
    entity::Entity::insert(model)
        .on_conflict(
            OnConflict::column(entity::Column::Kid)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn mark_retired(
    db: &impl ConnectionTrait,
    kid: &str,
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    let model = entity::ActiveModel {
        kid: Set(kid.to_owned()),
        state: Set(STATE_RETIRED.to_owned()),
        retired_at: Set(Some(now)),
        ..Default::default()
    };
    entity::Entity::update(model).exec(db).await?;
    Ok(())
}

/// First start on an empty table (an existing deployment, or a new one):
/// the keys in the folder are recorded, the newest as the one that signs
/// from now, the others as having signed before (still published). Another
/// instance doing the same at once records the same rows.
pub async fn adopt_folder(
    db: &impl ConnectionTrait,
    dir: &Path,
    now: i64,
) -> anyhow::Result<Vec<Row>> {
    let rows = load_rows(db).await?;
    if !rows.is_empty() {
        return Ok(rows);
    }
    let files = crate::keys::list(dir)?;
    for (i, key) in files.iter().enumerate() {
        let activates_at = if i == 0 { now } else { 0 };
        insert(
            db,
            &Row {
                kid: key.kid.clone(),
                state: STATE_ACTIVE.to_owned(),
                published_at: now,
                activates_at,
                retired_at: None,
            },
        )
        .await?;
        tracing::info!(kid = %key.kid, signing = i == 0, "recorded the signing key in the database");
    }
    Ok(load_rows(db).await?)
}

// ---- the running server's keys ------------------------------------------

/// A key file, parsed once.
struct Loaded {
    signer: Arc<Signer>,
    public: PublicKey,
}

/// What the server uses between two reloads.
struct Snapshot {
    /// The table as last read: which key signs is decided from it at each
    /// signature, so that every instance switches at `activates_at`.
    rows: Vec<Row>,
    /// The loaded keys the table publishes. The key that signs missing here
    /// (its file is not in this folder): token requests fail with 503
    /// rather than sign with another.
    signers: HashMap<String, Arc<Signer>>,
    published: Vec<PublicKey>,
    verifier: Arc<Verifier>,
}

/// The keys of a running server, reread from the table every
/// [`RELOAD_INTERVAL`].
pub struct KeyRing {
    db: sea_orm::DatabaseConnection,
    dir: PathBuf,
    verifier_settings: VerifierSettings,
    clock: Arc<dyn Clock>,
    files: std::sync::Mutex<HashMap<String, Arc<Loaded>>>,
    current: std::sync::RwLock<Arc<Snapshot>>,
}

impl KeyRing {
    /// Records the folder's keys on an empty table, then loads what the
    /// table names. Refuses to start when a key the table publishes has no
    /// file here, or when no key signs yet.
    pub async fn load(
        db: sea_orm::DatabaseConnection,
        dir: &Path,
        verifier_settings: VerifierSettings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<Self>> {
        let now = clock.now();
        let rows = adopt_folder(&db, dir, now)
            .await
            .context("reading the signing_keys table")?;
        let empty = Verifier::new(VerifierSettings {
            source: KeySource::Static(Vec::new()),
            ..verifier_settings.clone()
        })?;
        let ring = Self {
            db,
            dir: dir.to_owned(),
            verifier_settings,
            clock,
            files: std::sync::Mutex::new(HashMap::new()),
            current: std::sync::RwLock::new(Arc::new(Snapshot {
                rows: Vec::new(),
                signers: HashMap::new(),
                published: Vec::new(),
                verifier: Arc::new(empty),
            })),
        };
        for row in published(&rows) {
            if let Err(error) = ring.loaded(&row.kid) {
                return Err(fix(
                    anyhow::anyhow!(
                        "the database names the signing key {} but it cannot be loaded: {error:#}",
                        row.kid,
                    ),
                    "Copy the keys folder of the other instances here (every instance needs the same keys), or retire the key with `auth-server keys retire KID`",
                ));
            }
        }
        if signing_key(&rows, now).is_none() {
            return Err(fix(
                anyhow::anyhow!("the signing_keys table names no key that signs now"),
                "Run `auth-server keys rotate --delay 0`",
            ));
        }
        ring.install(rows)?;
        Ok(Arc::new(ring))
    }

    /// The file holding `kid`: `<kid>.pem` as `keys generate` names it, else
    /// whichever `*.pem` of the folder holds it.
    fn key_path(&self, kid: &str) -> Option<PathBuf> {
        let named = self.dir.join(format!("{kid}.pem"));
        if named.is_file() {
            return Some(named);
        }
        crate::keys::list(&self.dir)
            .ok()?
            .into_iter()
            .find(|k| k.kid == kid)
            .map(|k| k.path)
    }

    /// The parsed key file of `kid`, cached.
    fn loaded(&self, kid: &str) -> anyhow::Result<Arc<Loaded>> {
        if let Some(found) = self.files.lock().ok().and_then(|f| f.get(kid).cloned()) {
            return Ok(found);
        }
        let path = self.key_path(kid).ok_or_else(|| {
            anyhow::anyhow!("no file in {} holds the key {kid}", self.dir.display())
        })?;
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let signer =
            Signer::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if signer.kid() != kid {
            anyhow::bail!(
                "{} holds the key {}, not {kid}",
                path.display(),
                signer.kid()
            );
        }
        let public = PublicKey::from_pem(&pem)?;
        let loaded = Arc::new(Loaded {
            signer: Arc::new(signer),
            public,
        });
        if let Ok(mut files) = self.files.lock() {
            files.insert(kid.to_owned(), loaded.clone());
        }
        Ok(loaded)
    }

    /// Builds and installs the snapshot for `rows`. A published key whose
    /// file is missing is left out (logged); a missing signing key leaves
    /// no signer.
    fn install(&self, rows: Vec<Row>) -> anyhow::Result<()> {
        let mut signers = HashMap::new();
        let mut keys = Vec::new();
        for row in published(&rows) {
            match self.loaded(&row.kid) {
                Ok(loaded) => {
                    signers.insert(row.kid.clone(), loaded.signer.clone());
                    keys.push(loaded.public.clone());
                }
                Err(error) => {
                    tracing::error!(kid = %row.kid, error = %format!("{error:#}"), "a signing key the database names cannot be loaded");
                }
            }
        }
        let verifier = Verifier::new(VerifierSettings {
            source: KeySource::Static(keys.clone()),
            ..self.verifier_settings.clone()
        })?;
        let previous = self.signing_kid();
        let signing = signing_key(&rows, self.clock.now()).map(|r| r.kid.clone());
        let snapshot = Arc::new(Snapshot {
            rows,
            signers,
            published: keys,
            verifier: Arc::new(verifier),
        });
        if let Ok(mut current) = self.current.write() {
            *current = snapshot;
        }
        let now_signing = self.signing_kid();
        if previous != now_signing {
            match &now_signing {
                Some(kid) => tracing::info!(kid = %kid, "signing with this key"),
                None => tracing::error!(
                    kid = ?signing,
                    "no usable signing key: token requests fail until the key the database names is in the keys folder"
                ),
            }
        }
        Ok(())
    }

    /// Rereads the table; a database error keeps the keys in use.
    pub async fn reload(&self) {
        match load_rows(&self.db).await {
            Ok(rows) => {
                if let Err(error) = self.install(rows) {
                    tracing::error!(error = %format!("{error:#}"), "reloading the signing keys");
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "reading the signing_keys table failed; keeping the keys in use");
            }
        }
    }

    /// Rereads the table every [`RELOAD_INTERVAL`] until the ring is dropped.
    pub fn spawn_reloader(self: &Arc<Self>) {
        let ring: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(ring) = ring.upgrade() else { break };
                ring.reload().await;
            }
        });
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.read().ok().map(|s| s.clone())
    }

    /// The key the table names for now, if it is loaded here.
    fn signer(&self) -> Option<Arc<Signer>> {
        let snapshot = self.snapshot()?;
        let kid = &signing_key(&snapshot.rows, self.clock.now())?.kid;
        snapshot.signers.get(kid).cloned()
    }

    /// The kid of the key that signs, if any.
    pub fn signing_kid(&self) -> Option<String> {
        self.signer().map(|s| s.kid().to_owned())
    }

    /// Signs with the key the table names; `Unavailable` when it cannot.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, SignError> {
        self.signer().ok_or(SignError::Unavailable)?.sign(claims)
    }

    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self
                .snapshot()
                .map(|s| s.published.iter().map(PublicKey::to_jwk).collect())
                .unwrap_or_default(),
        }
    }

    /// Verifies one of our own access tokens against the published keys.
    pub async fn verify(&self, token: &str) -> Result<AccessTokenClaims, VerifyError> {
        let verifier = self
            .snapshot()
            .map(|s| s.verifier.clone())
            .ok_or(VerifyError::KeysUnavailable)?;
        verifier.verify(token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kid: &str, state: &str, published_at: i64, activates_at: i64) -> Row {
        Row {
            kid: kid.into(),
            state: state.into(),
            published_at,
            activates_at,
            retired_at: None,
        }
    }

    const TTL: i64 = 900;
    /// Reload interval + leeway.
    const MARGIN: i64 = 10 + 60;

    #[test]
    fn jwks_max_age_is_half_the_rotation_delay_within_30_to_300_s() {
        assert_eq!(jwks_max_age_secs(DEFAULT_ROTATION_DELAY_SECS), 300);
        assert_eq!(jwks_max_age_secs(120), 60);
        assert_eq!(jwks_max_age_secs(0), 30);
        assert_eq!(jwks_max_age_secs(MAX_ROTATION_DELAY_SECS), 300);
    }

    #[test]
    fn signing_key_is_latest_activated_and_not_retired() {
        let rows = vec![
            row("a", STATE_ACTIVE, 0, 100),
            row("b", STATE_PUBLISHED, 500, 1100),
        ];
        assert_eq!(signing_key(&rows, 1099).unwrap().kid, "a");
        assert_eq!(signing_key(&rows, 1100).unwrap().kid, "b");
        assert_eq!(signing_key(&rows, 99), None);
        let mut retired = rows.clone();
        retired[1].state = STATE_RETIRED.into();
        assert_eq!(signing_key(&retired, 2000).unwrap().kid, "a");
    }

    #[test]
    fn status_moves_published_active_superseded_retired() {
        let mut rows = vec![
            row("a", STATE_ACTIVE, 0, 100),
            row("b", STATE_PUBLISHED, 500, 1100),
        ];
        assert_eq!(status(&rows, &rows[0], 600), Status::Active);
        assert_eq!(status(&rows, &rows[1], 600), Status::Published);
        assert_eq!(status(&rows, &rows[0], 1100), Status::Superseded);
        assert_eq!(status(&rows, &rows[1], 1100), Status::Active);
        rows[0].state = STATE_RETIRED.into();
        assert_eq!(status(&rows, &rows[0], 5000), Status::Retired);
        assert_eq!(published(&rows).count(), 1);
    }

    #[test]
    fn published_includes_pending_and_superseded_keys() {
        let rows = vec![
            row("a", STATE_ACTIVE, 0, 0),
            row("b", STATE_ACTIVE, 0, 100),
            row("c", STATE_PUBLISHED, 500, 1100),
            row("d", STATE_RETIRED, 0, 0),
        ];
        let kids: Vec<&str> = published(&rows).map(|r| r.kid.as_str()).collect();
        assert_eq!(kids, ["a", "b", "c"]);
    }

    #[test]
    fn check_retire_refuses_until_tokens_of_superseded_key_expired() {
        let rows = vec![
            row("a", STATE_ACTIVE, 0, 100),
            row("b", STATE_PUBLISHED, 500, 1100),
        ];
        let until = 1100 + TTL + MARGIN;
        assert_eq!(
            check_retire(&rows, "a", 1200, TTL, false),
            Err(RetireError::TokensStillValid {
                kid: "a".into(),
                until,
                left: until - 1200
            })
        );
        assert!(check_retire(&rows, "a", until - 1, TTL, false).is_err());
        assert_eq!(check_retire(&rows, "a", until, TTL, false), Ok(()));
        assert_eq!(check_retire(&rows, "a", 1200, TTL, true), Ok(()));
    }

    #[test]
    fn check_retire_refuses_signing_key_even_with_force() {
        let rows = vec![row("a", STATE_ACTIVE, 0, 100)];
        assert_eq!(
            check_retire(&rows, "a", 5000, TTL, true),
            Err(RetireError::Signing("a".into()))
        );
    }

    #[test]
    fn check_retire_allows_never_used_key_and_refuses_unknown_or_retired() {
        let mut rows = vec![
            row("a", STATE_ACTIVE, 0, 100),
            row("b", STATE_PUBLISHED, 500, 1100),
        ];
        assert_eq!(check_retire(&rows, "b", 600, TTL, false), Ok(()));
        assert_eq!(
            check_retire(&rows, "x", 600, TTL, false),
            Err(RetireError::Unknown("x".into()))
        );
        rows[1].state = STATE_RETIRED.into();
        assert_eq!(
            check_retire(&rows, "b", 600, TTL, true),
            Err(RetireError::AlreadyRetired("b".into()))
        );
    }

    #[test]
    fn last_signed_at_is_the_next_activation_of_any_later_key() {
        let rows = vec![
            row("a", STATE_ACTIVE, 0, 0),
            row("b", STATE_ACTIVE, 0, 100),
            row("c", STATE_PUBLISHED, 500, 1100),
        ];
        assert_eq!(last_signed_at(&rows, &rows[0], 2000), Some(100));
        assert_eq!(last_signed_at(&rows, &rows[1], 2000), Some(1100));
        assert_eq!(last_signed_at(&rows, &rows[1], 600), Some(600));
        assert_eq!(last_signed_at(&rows, &rows[2], 600), None);
    }

    async fn sqlite() -> (tempfile::TempDir, sea_orm::DatabaseConnection) {
        use migrations::MigratorTrait;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display());
        let db = migrations::db::connect(&url, None).await.unwrap();
        migrations::Migrator::up(&db, None).await.unwrap();
        (dir, db)
    }

    /// A clock the test sets.
    #[derive(Clone)]
    struct TestClock(Arc<std::sync::atomic::AtomicI64>);

    impl TestClock {
        fn at(now: i64) -> Self {
            Self(Arc::new(std::sync::atomic::AtomicI64::new(now)))
        }
        fn set(&self, now: i64) {
            self.0.store(now, std::sync::atomic::Ordering::SeqCst);
        }
        fn shared(&self) -> Arc<dyn Clock> {
            Arc::new(self.clone())
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> i64 {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    fn settings() -> VerifierSettings {
        VerifierSettings {
            issuer: "http://issuer.test".into(),
            audience: "aud".into(),
            leeway: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(900),
            source: KeySource::Static(Vec::new()),
            cache_size: shared::jwt::DEFAULT_VERIFY_CACHE_SIZE,
        }
    }

    #[tokio::test]
    async fn key_ring_adopts_folder_then_follows_rotation_and_retirement() {
        let (dir, db) = sqlite().await;
        let clock = TestClock::at(1000);
        let keys = dir.path().join("keys");
        let first = crate::keys::generate(&keys, 2048).unwrap();
        let ring = KeyRing::load(db.clone(), &keys, settings(), clock.shared())
            .await
            .unwrap();
        assert_eq!(ring.signing_kid().as_deref(), Some(first.kid.as_str()));
        let rows = load_rows(&db).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].state, STATE_ACTIVE);

        // Rotated in: published at once, signing only after the delay.
        let second = crate::keys::generate(&keys, 2048).unwrap();
        insert(&db, &row(&second.kid, STATE_PUBLISHED, 1010, 1100))
            .await
            .unwrap();
        clock.set(1050);
        ring.reload().await;
        assert_eq!(ring.signing_kid().as_deref(), Some(first.kid.as_str()));
        assert_eq!(ring.jwks().keys.len(), 2);
        // The switch happens at activates_at, not at the next reload, so
        // that every instance switches at the same time.
        clock.set(1099);
        assert_eq!(ring.signing_kid().as_deref(), Some(first.kid.as_str()));
        clock.set(1100);
        assert_eq!(ring.signing_kid().as_deref(), Some(second.kid.as_str()));
        let token = ring.sign(&serde_json::json!({"sub": "x"})).unwrap();
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
        assert_eq!(header["kid"], second.kid.as_str());

        mark_retired(&db, &first.kid, 3000).await.unwrap();
        clock.set(3000);
        ring.reload().await;
        let kids: Vec<String> = ring.jwks().keys.into_iter().map(|k| k.kid).collect();
        assert_eq!(kids, [second.kid.as_str()]);
    }

    #[tokio::test]
    async fn key_ring_refuses_start_when_named_key_file_is_missing() {
        let (dir, db) = sqlite().await;
        let clock = TestClock::at(1000);
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        insert(&db, &row("not-here", STATE_ACTIVE, 0, 0))
            .await
            .unwrap();
        let error = KeyRing::load(db, &keys, settings(), clock.shared())
            .await
            .err()
            .unwrap();
        assert!(format!("{error:#}").contains("not-here"), "{error:#}");
    }

    #[tokio::test]
    async fn key_ring_stops_signing_when_named_key_file_disappears() {
        let (dir, db) = sqlite().await;
        let clock = TestClock::at(1000);
        let keys = dir.path().join("keys");
        crate::keys::generate(&keys, 2048).unwrap();
        let ring = KeyRing::load(db.clone(), &keys, settings(), clock.shared())
            .await
            .unwrap();
        // Another instance rotated to a key this folder does not hold.
        insert(&db, &row("elsewhere", STATE_PUBLISHED, 1000, 1001))
            .await
            .unwrap();
        clock.set(1001);
        ring.reload().await;
        assert_eq!(ring.signing_kid(), None);
        assert!(matches!(
            ring.sign(&serde_json::json!({})),
            Err(SignError::Unavailable)
        ));
    }
}
