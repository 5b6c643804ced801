//! The registered clients that `/token` authenticates, cached for a short,
//! bounded time, so that a refresh does not read the client row each time.
//!
//! - Lifetime [`CLIENT_TTL`], at most [`CLIENT_CAPACITY`] entries; unknown
//!   ids are never cached (a flood of made-up ids cannot fill it).
//! - A change made in this process (`store::lifecycle::rotate_secret`,
//!   `delete_client`, whoever calls them: the admin API, the CLI's code run
//!   in-process, tests) calls [`forget_client`] after it commits, and the
//!   next request reads the row again. A load that was under way when the
//!   change committed is not cached (a generation count).
//! - A change made by another process (the `auth-server` CLI on the same
//!   database, another instance) is not waited for: every change moves the
//!   row's `revision`, and every grant at `/token` checks that the revision
//!   it authenticated against is still the row's before it changes or
//!   issues anything, in its own statement (a refresh's claim, a code's
//!   redemption) or with one read (client credentials, and the slow paths).
//!   A client that changed is read again and the request run once more
//!   (`oauth::client::changed`): a rotated-out secret or a deleted client is
//!   refused by the next request. Introspection and revocation read the row.
//!   Only the authorization pages (`/authorize`, the consent page) use an
//!   entry as it is, for up to [`CLIENT_TTL`]: a client deleted elsewhere may
//!   show its consent page that long, and what the page issues cannot be
//!   exchanged.
//! - A secret that fails against a cached entry is checked once more against
//!   the row itself, so a secret rotated in elsewhere works at once.
//!
//! The cache is one per process (the invalidations come from store
//! functions that know no server state), keyed by client id; each server
//! state has its own scope, so two servers in one process on different
//! databases (tests) never see each other's clients.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbErr};

use crate::store::clients::{self, Client};

/// How long a cached client is used before its row is read again (`/token`
/// checks the row's revision on every grant; the pages use the entry as is).
pub const CLIENT_TTL: Duration = Duration::from_secs(1);
/// At most this many clients are cached at once.
pub const CLIENT_CAPACITY: usize = 1024;

struct Entry {
    scope: u64,
    loaded_at: Instant,
    client: Arc<Client>,
}

#[derive(Default)]
struct Clients {
    entries: HashMap<String, Entry>,
    /// Moves on with every invalidation.
    generation: u64,
}

static CLIENTS: LazyLock<Mutex<Clients>> = LazyLock::new(Mutex::default);
static NEXT_SCOPE: AtomicU64 = AtomicU64::new(1);

fn clients() -> MutexGuard<'static, Clients> {
    // Nothing in the map can be left half-changed by a panic.
    CLIENTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every server in this process forgets client `id`: its secret, grants or
/// registration changed. Call it after the change committed.
pub fn forget_client(id: &str) {
    let mut cache = clients();
    cache.generation = cache.generation.wrapping_add(1);
    cache.entries.remove(id);
}

/// Forgets every client (a change that touches many).
pub fn forget_all_clients() {
    let mut cache = clients();
    cache.generation = cache.generation.wrapping_add(1);
    cache.entries.clear();
}

/// One server state's view of the process's client cache.
pub struct ClientCache {
    scope: u64,
}

impl Default for ClientCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientCache {
    pub fn new() -> Self {
        Self {
            scope: NEXT_SCOPE.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The cached client `id`, if there is a fresh entry.
    pub fn cached(&self, id: &str) -> Option<Arc<Client>> {
        let cache = clients();
        let entry = cache.entries.get(id)?;
        (entry.scope == self.scope && entry.loaded_at.elapsed() < CLIENT_TTL)
            .then(|| entry.client.clone())
    }

    /// Client `id`: from the cache, or read from `db` (and cached).
    pub async fn find<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> Result<Option<Arc<Client>>, DbErr> {
        match self.cached(id) {
            Some(client) => Ok(Some(client)),
            None => self.load(db, id).await,
        }
    }

    /// Reads client `id` from `db`, caching what it finds unless the client
    /// was invalidated meanwhile.
    pub async fn load<C: ConnectionTrait>(
        &self,
        db: &C,
        id: &str,
    ) -> Result<Option<Arc<Client>>, DbErr> {
        let generation = clients().generation;
        let Some(client) = clients::find(db, id).await?.map(Arc::new) else {
            return Ok(None);
        };
        let mut cache = clients();
        if cache.generation == generation {
            if cache.entries.len() >= CLIENT_CAPACITY && !cache.entries.contains_key(id) {
                cache
                    .entries
                    .retain(|_, e| e.loaded_at.elapsed() < CLIENT_TTL);
            }
            if cache.entries.len() < CLIENT_CAPACITY || cache.entries.contains_key(id) {
                cache.entries.insert(
                    id.to_owned(),
                    Entry {
                        scope: self.scope,
                        loaded_at: Instant::now(),
                        client: client.clone(),
                    },
                );
            }
        }
        Ok(Some(client))
    }
}
