//! The verified-token cache of [`super::Verifier`] (the idea of Envoy's
//! `jwt_cache_config`): a token that verified once is recognised again by
//! an exact-match lookup instead of header parsing and an RSA verification.
//!
//! Its rules, so that it never accepts what a fresh verification would
//! refuse:
//! - the key is the SHA-256 of the whole compact token: header, claims and
//!   signature, so a token differing in any byte (a forged signature over
//!   the same claims included) is a miss;
//! - only tokens that passed every check of a fresh verification are
//!   inserted ([`TokenCache::insert`] is called after them);
//! - an entry ends at the token's `exp`: a lookup at or after it is a miss
//!   (the fresh path, with its leeway, decides then);
//! - an entry belongs to a key-set epoch; a JWKS fetch that drops a kid or
//!   changes its key bumps the epoch ([`TokenCache::invalidate`]), and
//!   entries of an older epoch are misses;
//! - revocation records are checked by the verifier on every hit.
//!
//! Bounded: at most the configured number of entries (quick_cache, S3-FIFO
//! eviction, sharded locks held only for the map operation).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::digest;
use quick_cache::OptionsBuilder;
use quick_cache::sync::Cache;

use super::claims::AccessTokenClaims;

/// Entries a [`super::Verifier`] keeps unless its settings say otherwise.
pub const DEFAULT_VERIFY_CACHE_SIZE: usize = 10_000;

/// Least entries per shard: below it, fewer shards (down to one).
const MIN_SHARD_ENTRIES: usize = 32;

/// SHA-256 of the whole compact token.
pub(crate) type TokenKey = [u8; 32];

/// The cache key of `token`; `None` never happens with SHA-256 (32 bytes),
/// and would only bypass the cache.
pub(crate) fn token_key(token: &str) -> Option<TokenKey> {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .try_into()
        .ok()
}

/// A verified token's claims and the key-set epoch it was verified in.
struct Entry {
    claims: AccessTokenClaims,
    epoch: u64,
}

/// A bounded map from [`TokenKey`] to the claims of a verified token.
pub(crate) struct TokenCache {
    entries: Cache<TokenKey, Arc<Entry>>,
    /// Bumped when keys leave the key set: older entries are misses.
    epoch: AtomicU64,
}

impl TokenCache {
    /// A cache of at most `capacity` entries; `None` for 0 (no cache).
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        if capacity == 0 {
            return None;
        }
        // quick_cache splits its capacity between power-of-two shards and
        // rounds each shard's share up; choosing the shard count here (the
        // library's default, 4 per core, fewer for small capacities) and
        // rounding down keeps the total within `capacity`.
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let mut shards = cores.saturating_mul(4).next_power_of_two();
        while shards > 1 && capacity / shards < MIN_SHARD_ENTRIES {
            shards /= 2;
        }
        let total = capacity / shards * shards;
        let options = OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(total)
            .weight_capacity(u64::try_from(total).unwrap_or(u64::MAX))
            .build()
            .ok()?;
        Some(Self {
            entries: Cache::with_options(
                options,
                Default::default(),
                Default::default(),
                Default::default(),
            ),
            epoch: AtomicU64::new(0),
        })
    }

    /// The current key-set epoch. Read it before looking the signing key
    /// up, and insert with it: a key removed meanwhile leaves the entry
    /// stale from the start.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The claims of `key` if it was verified in the current epoch and
    /// `now` is before its `exp`; expired or stale entries are dropped.
    pub(crate) fn get(&self, key: &TokenKey, now: i64) -> Option<AccessTokenClaims> {
        let entry = self.entries.get(key)?;
        if now >= entry.claims.exp || entry.epoch != self.epoch() {
            self.entries.remove_if(key, |e| Arc::ptr_eq(e, &entry));
            return None;
        }
        Some(entry.claims.clone())
    }

    /// Remembers the claims of a token that passed a fresh verification
    /// whose key lookup happened in `epoch`; nothing if the epoch has moved
    /// on or `now` is at or after `exp` (accepted within the leeway only).
    pub(crate) fn insert(&self, key: TokenKey, claims: &AccessTokenClaims, epoch: u64, now: i64) {
        if now >= claims.exp || epoch != self.epoch() {
            return;
        }
        let entry = Entry {
            claims: claims.clone(),
            epoch,
        };
        self.entries.insert(key, Arc::new(entry));
    }

    /// Makes every entry a miss (a key left the key set) and frees them.
    pub(crate) fn invalidate(&self) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        self.entries.retain(|_, entry| entry.epoch == epoch);
    }

    /// Entries held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Counts a lookup: `portcullis_verify_cache_total{outcome="hit"|"miss"}`.
pub(crate) fn count_lookup(hit: bool) {
    // Resolved once: no label lookup per request.
    static HITS: crate::metrics::CachedCounter =
        crate::metrics::CachedCounter::new("portcullis_verify_cache_total", &[("outcome", "hit")]);
    static MISSES: crate::metrics::CachedCounter =
        crate::metrics::CachedCounter::new("portcullis_verify_cache_total", &[("outcome", "miss")]);
    if hit {
        HITS.increment(1);
    } else {
        MISSES.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util;

    fn claims_expiring_at(exp: i64) -> AccessTokenClaims {
        let mut claims = test_util::claims("https://auth.example", "api", "alice", "notes:read");
        claims.exp = exp;
        claims
    }

    #[test]
    fn token_key_differs_when_any_byte_differs() {
        let a = token_key("aaa.bbb.ccc").unwrap();
        assert_eq!(a, token_key("aaa.bbb.ccc").unwrap());
        assert_ne!(a, token_key("aaa.bbb.ccd").unwrap());
        assert_ne!(a, token_key("aaa.bbb.cc").unwrap());
    }

    #[test]
    fn new_returns_none_when_capacity_is_zero() {
        assert!(TokenCache::new(0).is_none());
    }

    #[test]
    fn get_returns_claims_until_exp_and_misses_from_exp_on() {
        let cache = TokenCache::new(16).unwrap();
        let key = token_key("t").unwrap();
        let claims = claims_expiring_at(1000);
        cache.insert(key, &claims, cache.epoch(), 500);
        assert_eq!(cache.get(&key, 500), Some(claims.clone()));
        assert_eq!(cache.get(&key, 999), Some(claims));
        assert_eq!(cache.get(&key, 1000), None);
        // The expired entry is gone, even for a clock going back.
        assert_eq!(cache.get(&key, 999), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn insert_skips_token_at_or_after_exp() {
        let cache = TokenCache::new(16).unwrap();
        let key = token_key("t").unwrap();
        cache.insert(key, &claims_expiring_at(1000), cache.epoch(), 1000);
        assert_eq!(cache.get(&key, 0), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn invalidate_makes_older_entries_misses_and_refuses_their_late_inserts() {
        let cache = TokenCache::new(16).unwrap();
        let (first, late) = (token_key("first").unwrap(), token_key("late").unwrap());
        let claims = claims_expiring_at(1000);
        let before = cache.epoch();
        cache.insert(first, &claims, before, 0);
        cache.invalidate();
        assert_eq!(cache.get(&first, 0), None);
        assert_eq!(cache.len(), 0);
        // Verified with a key looked up before the bump: not kept.
        cache.insert(late, &claims, before, 0);
        assert_eq!(cache.get(&late, 0), None);
        // Verified after it: kept.
        cache.insert(late, &claims, cache.epoch(), 0);
        assert_eq!(cache.get(&late, 0), Some(claims));
    }

    #[test]
    fn get_misses_entry_of_older_epoch_that_landed_after_invalidate() {
        // The race `get` guards against: an insert that checked the epoch
        // just before a bump lands after the bump's sweep.
        let cache = TokenCache::new(16).unwrap();
        let key = token_key("racing").unwrap();
        let claims = claims_expiring_at(1000);
        let before = cache.epoch();
        cache.invalidate();
        let entry = Entry {
            claims,
            epoch: before,
        };
        cache.entries.insert(key, Arc::new(entry));
        assert_eq!(cache.get(&key, 0), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn len_never_exceeds_capacity_after_more_inserts_than_capacity() {
        for capacity in [1, 7, 31, 100, 1000, 4099] {
            let cache = TokenCache::new(capacity).unwrap();
            let claims = claims_expiring_at(1000);
            for i in 0..capacity * 3 {
                cache.insert(token_key(&i.to_string()).unwrap(), &claims, 0, 0);
                assert!(cache.len() <= capacity, "{} > {capacity}", cache.len());
            }
            // Filled to (nearly) its capacity, not emptied by eviction.
            assert!(
                cache.len() * 10 >= capacity * 9,
                "{capacity}: {}",
                cache.len()
            );
        }
    }
}
