//! Instant revocation of access tokens that are otherwise verified offline.
//!
//! The auth server writes a [`Record`] whenever it revokes every token of a
//! user or a client: "access tokens of this subject issued before
//! `not_before` are void". Resource APIs keep the active records in a
//! [`RevocationSet`] (fed by polling `GET /api/v2/revocations` and, when
//! Redis is configured, by pub/sub on [`channel`]), and the verifier refuses
//! a token whose `sub` (a user record) or `client_id` (a client record) has
//! a record with `not_before > iat`. A record expires at `expires_at`, once
//! no token it covers can still be valid (`not_before` + the access-token
//! lifetime + the verifier's leeway), so the set stays small.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::jwt::AccessTokenClaims;

/// The auth server's endpoint serving the active records.
pub const REVOCATIONS_PATH: &str = "/api/v2/revocations";

/// At most this many records are kept in memory; past it the record that
/// expires first is dropped, with a warning (never silently).
pub const MAX_RECORDS: usize = 100_000;

/// The Redis pub/sub channel the auth server publishes each new record on
/// (JSON of [`Record`]), under the deployment's key prefix.
pub fn channel(key_prefix: &str) -> String {
    format!("{key_prefix}revocations")
}

/// Whose tokens a record voids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// Matched against the token's `sub`.
    User,
    /// Matched against the token's `client_id`.
    Client,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Client => "client",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "user" => Some(Self::User),
            "client" => Some(Self::Client),
            _ => None,
        }
    }
}

/// Tokens of `subject` issued before `not_before` (Unix seconds, compared
/// with `iat`) are void until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub kind: SubjectKind,
    pub subject: String,
    pub not_before: i64,
    pub expires_at: i64,
}

/// The body of `GET /api/v2/revocations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    pub revocations: Vec<Record>,
}

#[derive(Debug, Default)]
struct Inner {
    /// (kind, subject) → (not_before, expires_at).
    records: HashMap<(SubjectKind, String), (i64, i64)>,
    /// Records dropped because the set was full, since start.
    evicted: u64,
}

/// The active revocation records of a resource API, in memory.
#[derive(Debug)]
pub struct RevocationSet {
    inner: RwLock<Inner>,
    cap: usize,
}

impl Default for RevocationSet {
    fn default() -> Self {
        Self::with_capacity(MAX_RECORDS)
    }
}

impl RevocationSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding at most `cap` records (at least one).
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            cap: cap.max(1),
        }
    }

    /// Adds `record` (merged with the subject's existing one: the later
    /// `not_before` and `expires_at` win). An expired record is ignored.
    /// Returns whether the set changed.
    pub fn insert(&self, record: &Record, now: i64) -> bool {
        if record.expires_at <= now {
            return false;
        }
        let Ok(mut inner) = self.inner.write() else {
            return false;
        };
        let key = (record.kind, record.subject.clone());
        if let Some(entry) = inner.records.get_mut(&key) {
            let merged = (
                entry.0.max(record.not_before),
                entry.1.max(record.expires_at),
            );
            let changed = merged != *entry;
            *entry = merged;
            return changed;
        }
        if inner.records.len() >= self.cap {
            inner.records.retain(|_, (_, expires_at)| *expires_at > now);
        }
        if inner.records.len() >= self.cap {
            let first = inner
                .records
                .iter()
                .min_by_key(|(_, (_, expires_at))| *expires_at)
                .map(|(key, _)| key.clone());
            if let Some(first) = first {
                inner.records.remove(&first);
                inner.evicted = inner.evicted.saturating_add(1);
                tracing::warn!(
                    cap = self.cap,
                    evicted = inner.evicted,
                    "revocation set full: dropped the record that expires first"
                );
            }
        }
        inner
            .records
            .insert(key, (record.not_before, record.expires_at));
        true
    }

    /// Adds every record of `records`; returns how many changed the set.
    pub fn extend<'a>(&self, records: impl IntoIterator<Item = &'a Record>, now: i64) -> usize {
        records
            .into_iter()
            .filter(|record| self.insert(record, now))
            .count()
    }

    /// Drops the records expired at `now`; returns how many went.
    pub fn prune(&self, now: i64) -> usize {
        let Ok(mut inner) = self.inner.write() else {
            return 0;
        };
        let before = inner.records.len();
        inner.records.retain(|_, (_, expires_at)| *expires_at > now);
        before - inner.records.len()
    }

    /// The number of records held (expired ones not yet pruned included).
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .map(|inner| inner.records.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the subject's record voids a token issued at `iat`.
    pub fn voids(&self, kind: SubjectKind, subject: &str, iat: i64, now: i64) -> bool {
        let Ok(inner) = self.inner.read() else {
            // A poisoned lock: refuse rather than accept unchecked.
            return true;
        };
        // No record (the usual case): no key to build.
        if inner.records.is_empty() {
            return false;
        }
        inner
            .records
            .get(&(kind, subject.to_owned()))
            .is_some_and(|(not_before, expires_at)| *expires_at > now && *not_before > iat)
    }

    /// Whether `claims` belong to a revoked user (`sub`) or client
    /// (`client_id`) and were issued before the revocation.
    pub fn is_revoked(&self, claims: &AccessTokenClaims, now: i64) -> bool {
        self.voids(SubjectKind::User, &claims.sub, claims.iat, now)
            || self.voids(SubjectKind::Client, &claims.client_id, claims.iat, now)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(kind: SubjectKind, subject: &str, not_before: i64, expires_at: i64) -> Record {
        Record {
            kind,
            subject: subject.into(),
            not_before,
            expires_at,
        }
    }

    #[test]
    fn voids_tokens_issued_before_not_before_only() {
        let set = RevocationSet::new();
        assert!(set.insert(&record(SubjectKind::User, "u1", 100, 1000), 50));
        assert!(set.voids(SubjectKind::User, "u1", 99, 100));
        assert!(!set.voids(SubjectKind::User, "u1", 100, 100));
        assert!(!set.voids(SubjectKind::User, "u2", 99, 100));
        assert!(!set.voids(SubjectKind::Client, "u1", 99, 100));
    }

    #[test]
    fn record_stops_voiding_once_expired_and_prune_drops_it() {
        let set = RevocationSet::new();
        set.insert(&record(SubjectKind::Client, "c1", 100, 200), 100);
        assert!(set.voids(SubjectKind::Client, "c1", 50, 199));
        assert!(!set.voids(SubjectKind::Client, "c1", 50, 200));
        assert_eq!(set.prune(199), 0);
        assert_eq!(set.prune(200), 1);
        assert!(set.is_empty());
    }

    #[test]
    fn insert_ignores_expired_records_and_merges_newer_ones() {
        let set = RevocationSet::new();
        assert!(!set.insert(&record(SubjectKind::User, "u1", 100, 200), 200));
        assert!(set.is_empty());
        set.insert(&record(SubjectKind::User, "u1", 100, 200), 0);
        assert!(set.insert(&record(SubjectKind::User, "u1", 150, 250), 0));
        // An older record arriving late changes nothing.
        assert!(!set.insert(&record(SubjectKind::User, "u1", 120, 220), 0));
        assert!(set.voids(SubjectKind::User, "u1", 149, 240));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn insert_past_the_cap_drops_the_record_that_expires_first() {
        let set = RevocationSet::with_capacity(2);
        set.insert(&record(SubjectKind::User, "a", 10, 100), 0);
        set.insert(&record(SubjectKind::User, "b", 10, 300), 0);
        set.insert(&record(SubjectKind::User, "c", 10, 200), 0);
        assert_eq!(set.len(), 2);
        assert!(!set.voids(SubjectKind::User, "a", 5, 1));
        assert!(set.voids(SubjectKind::User, "b", 5, 1));
        assert!(set.voids(SubjectKind::User, "c", 5, 1));
        // Expired records go first when the set is full.
        set.insert(&record(SubjectKind::User, "d", 10, 400), 250);
        assert!(set.voids(SubjectKind::User, "b", 5, 250));
        assert!(set.voids(SubjectKind::User, "d", 5, 250));
    }

    /// The verifier hook: a token of a revoked user or client issued
    /// before `not_before` is refused; the others, and later ones, pass.
    #[tokio::test]
    async fn verifier_refuses_tokens_voided_by_an_attached_set() {
        use crate::jwt::{
            DEFAULT_MAX_TOKEN_LIFETIME, KeySource, PublicKey, Verifier, VerifierSettings,
            VerifyError,
        };
        use crate::test_util;
        const ISSUER: &str = "http://127.0.0.1:8080";
        const AUDIENCE: &str = "portcullis-api";
        let pem = test_util::shared_private_key_pem();
        let signer = test_util::signer(pem);
        let verifier = Verifier::new(VerifierSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway: std::time::Duration::from_secs(60),
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            source: KeySource::Static(vec![PublicKey::from_pem(pem).unwrap()]),
            cache_size: crate::jwt::DEFAULT_VERIFY_CACHE_SIZE,
        })
        .unwrap();
        let alice = test_util::claims(ISSUER, AUDIENCE, "alice", "notes:read");
        let bob = test_util::claims(ISSUER, AUDIENCE, "bob", "notes:read");
        let (alice_token, bob_token) = (signer.sign(&alice).unwrap(), signer.sign(&bob).unwrap());
        // No set attached: nothing is refused.
        assert!(verifier.verify(&alice_token).await.is_ok());
        let set = std::sync::Arc::new(RevocationSet::new());
        verifier.check_revocations(set.clone());
        assert!(verifier.verify(&alice_token).await.is_ok());
        let now = test_util::now();
        set.insert(
            &record(SubjectKind::User, "alice", alice.iat + 1, now + 600),
            now,
        );
        assert!(matches!(
            verifier.verify(&alice_token).await,
            Err(VerifyError::Revoked)
        ));
        assert!(verifier.verify(&bob_token).await.is_ok());
        // A client record voids every token issued to that client.
        set.insert(
            &record(SubjectKind::Client, &bob.client_id, bob.iat + 1, now + 600),
            now,
        );
        assert!(matches!(
            verifier.verify(&bob_token).await,
            Err(VerifyError::Revoked)
        ));
        // A token issued at or after `not_before` passes.
        let mut later = alice.clone();
        later.iat += 1;
        later.nbf = later.iat;
        later.client_id = "another-client".into();
        assert!(verifier.verify(&signer.sign(&later).unwrap()).await.is_ok());
    }

    #[test]
    fn record_json_uses_lowercase_kinds() {
        let json = serde_json::to_value(record(SubjectKind::Client, "c1", 1, 2)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "client", "subject": "c1", "not_before": 1, "expires_at": 2})
        );
        assert_eq!(SubjectKind::parse("user"), Some(SubjectKind::User));
        assert_eq!(SubjectKind::parse("admin"), None);
    }
}
