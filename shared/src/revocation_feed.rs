//! How revocation records travel from the auth server to resource APIs
//! ([`crate::revocation`]).
//!
//! - The auth server [`publish`]es each new record on Redis (when
//!   `REDIS_URL` is set) and serves every active record at
//!   `GET /api/v2/revocations` behind the shared secret `REVOCATIONS_TOKEN`.
//! - A resource API runs a [`Feed`]: it polls that endpoint (every second
//!   without Redis; every [`SAFETY_NET_POLL`] with Redis, since pub/sub loses
//!   what is published while a subscriber reconnects) and, with Redis,
//!   subscribes to the channel and polls once more after each (re)connect.
//!
//! When the endpoint cannot be reached the last known set stays in force
//! (records expire on their own schedule), one warning is logged per outage
//! and [`FeedStatus::describe`] says so for readiness. A long outage does not
//! fail closed: that would make every resource API depend on the auth
//! server for every request, which offline verification exists to avoid; the
//! exposure is bounded by the access-token lifetime, as without this feature.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures_util::StreamExt;
use tokio::sync::Notify;
use url::Url;

use crate::revocation::{Record, RevocationList, RevocationSet, channel};

/// Poll interval without Redis.
pub const POLL: Duration = Duration::from_secs(1);
/// Poll interval with Redis pub/sub (the safety net).
pub const SAFETY_NET_POLL: Duration = Duration::from_secs(15);
/// How long one poll may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to Redis may take.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer accepted from the endpoint.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The shortest acceptable `REVOCATIONS_TOKEN`.
pub const MIN_TOKEN_LEN: usize = 32;

/// Where a resource API gets its revocation records.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// The auth server's `GET /api/v2/revocations`.
    pub url: Url,
    /// `REVOCATIONS_TOKEN`, sent as a bearer token (never logged).
    pub token: String,
    /// `REDIS_URL`: subscribe to the channel as well.
    pub redis_url: Option<String>,
    /// `REDIS_KEY_PREFIX`.
    pub key_prefix: String,
    /// Poll interval; [`POLL`] or [`SAFETY_NET_POLL`] by default.
    pub poll_every: Duration,
}

impl FeedSettings {
    /// The default poll interval for a feed with or without Redis.
    pub fn default_poll(redis: bool) -> Duration {
        if redis { SAFETY_NET_POLL } else { POLL }
    }
}

#[derive(Debug, Default)]
struct StatusInner {
    last_ok: Option<Instant>,
    outage_since: Option<Instant>,
    redis_up: Option<bool>,
}

/// How the feed is doing, for readiness and tests.
#[derive(Debug, Default)]
pub struct FeedStatus {
    inner: Mutex<StatusInner>,
}

impl FeedStatus {
    fn ok(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(since) = inner.outage_since.take() {
            tracing::info!(
                outage_secs = since.elapsed().as_secs(),
                "revocations source reachable again"
            );
        }
        inner.last_ok = Some(Instant::now());
    }

    fn failed(&self, error: &anyhow::Error) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.outage_since.is_none() {
            inner.outage_since = Some(Instant::now());
            tracing::warn!(
                error = %format!("{error:#}"),
                "revocations source unreachable: keeping the last known revocations"
            );
        }
    }

    fn redis(&self, up: bool) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.redis_up = Some(up);
        }
    }

    /// Whether the last poll succeeded (and one has).
    pub fn is_current(&self) -> bool {
        self.inner
            .lock()
            .map(|inner| inner.last_ok.is_some() && inner.outage_since.is_none())
            .unwrap_or(false)
    }

    /// A line for readiness: `ok`, `stale: …` or `starting`.
    pub fn describe(&self) -> String {
        let Ok(inner) = self.inner.lock() else {
            return "unknown".into();
        };
        let redis = match inner.redis_up {
            Some(true) => ", redis subscribed",
            Some(false) => ", redis unreachable",
            None => "",
        };
        match (inner.outage_since, inner.last_ok) {
            (Some(since), Some(last)) => format!(
                "stale: source unreachable for {} s, last update {} s ago{redis}",
                since.elapsed().as_secs(),
                last.elapsed().as_secs()
            ),
            (Some(since), None) => format!(
                "stale: source unreachable for {} s, nothing fetched yet{redis}",
                since.elapsed().as_secs()
            ),
            (None, Some(_)) => format!("ok{redis}"),
            (None, None) => format!("starting{redis}"),
        }
    }
}

/// A running feed: the set it fills and its status. Dropping it stops it.
#[derive(Debug)]
pub struct Feed {
    pub set: Arc<RevocationSet>,
    pub status: Arc<FeedStatus>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Feed {
    /// Starts polling (and subscribing, with Redis) into `set`.
    pub fn spawn(settings: FeedSettings, set: Arc<RevocationSet>) -> anyhow::Result<Self> {
        if settings.token.len() < MIN_TOKEN_LEN {
            anyhow::bail!("REVOCATIONS_TOKEN must be at least {MIN_TOKEN_LEN} characters");
        }
        let http = crate::tls::trust_ssl_cert_file(
            reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none()),
        )?
        .build()
        .context("building the revocations HTTP client")?;
        let status = Arc::new(FeedStatus::default());
        let wake = Arc::new(Notify::new());
        let mut tasks = vec![tokio::spawn(poll_loop(
            http,
            settings.clone(),
            set.clone(),
            status.clone(),
            wake.clone(),
        ))];
        if let Some(redis_url) = settings.redis_url.clone() {
            let client = redis::Client::open(redis_url.as_str()).context("REDIS_URL")?;
            tasks.push(tokio::spawn(subscribe_loop(
                client,
                channel(&settings.key_prefix),
                set.clone(),
                status.clone(),
                wake,
            )));
        }
        Ok(Self { set, status, tasks })
    }
}

async fn poll_loop(
    http: reqwest::Client,
    settings: FeedSettings,
    set: Arc<RevocationSet>,
    status: Arc<FeedStatus>,
    wake: Arc<Notify>,
) {
    loop {
        match fetch(&http, &settings).await {
            Ok(list) => {
                let now = unix_now();
                let added = set.extend(&list.revocations, now);
                set.prune(now);
                if added > 0 {
                    tracing::info!(added, held = set.len(), "revocations updated");
                }
                status.ok();
            }
            Err(error) => status.failed(&error),
        }
        tokio::select! {
            () = tokio::time::sleep(settings.poll_every) => {}
            () = wake.notified() => {}
        }
    }
}

async fn fetch(http: &reqwest::Client, settings: &FeedSettings) -> anyhow::Result<RevocationList> {
    let response = http
        .get(settings.url.clone())
        .bearer_auth(&settings.token)
        .send()
        .await
        .context("fetching the revocations")?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("the revocations endpoint answered {status}");
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        anyhow::bail!("the revocations answer is too large");
    }
    let body = response.bytes().await.context("reading the revocations")?;
    if body.len() > MAX_BODY {
        anyhow::bail!("the revocations answer is too large");
    }
    serde_json::from_slice(&body).context("parsing the revocations")
}

async fn subscribe_loop(
    client: redis::Client,
    channel: String,
    set: Arc<RevocationSet>,
    status: Arc<FeedStatus>,
    wake: Arc<Notify>,
) {
    let mut warned = false;
    loop {
        match subscribe(&client, &channel, &set, &status, &wake, &mut warned).await {
            Ok(()) => {}
            Err(error) => {
                status.redis(false);
                if !warned {
                    warned = true;
                    tracing::warn!(
                        error = %format!("{error:#}"),
                        "revocations channel unreachable: polling only until it is back"
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One subscription: returns when the connection ends.
async fn subscribe(
    client: &redis::Client,
    channel: &str,
    set: &RevocationSet,
    status: &FeedStatus,
    wake: &Notify,
    warned: &mut bool,
) -> anyhow::Result<()> {
    let mut pubsub = tokio::time::timeout(REDIS_CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .context("connecting to Redis timed out")?
        .context("connecting to Redis")?;
    tokio::time::timeout(REDIS_CONNECT_TIMEOUT, pubsub.subscribe(channel))
        .await
        .context("subscribing timed out")?
        .context("subscribing")?;
    status.redis(true);
    // The next outage gets its own warning.
    *warned = false;
    tracing::info!("subscribed to the revocations channel");
    // What was published while unsubscribed is lost: poll now.
    wake.notify_one();
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let payload: Vec<u8> = message.get_payload_bytes().to_vec();
        match serde_json::from_slice::<Record>(&payload) {
            Ok(record) => {
                if set.insert(&record, unix_now()) {
                    tracing::info!(kind = record.kind.as_str(), "revocation received");
                }
            }
            Err(_) => tracing::warn!("ignored a malformed message on the revocations channel"),
        }
    }
    status.redis(false);
    anyhow::bail!("the revocations subscription ended")
}

/// Publishes `record` on the revocations channel of `redis_url` (the auth
/// server, after the revocation committed). Best effort: resource APIs
/// also poll.
pub async fn publish(redis_url: &str, key_prefix: &str, record: &Record) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url).context("REDIS_URL")?;
    let payload = serde_json::to_string(record)?;
    let work = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PUBLISH")
            .arg(channel(key_prefix))
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
    };
    tokio::time::timeout(REDIS_CONNECT_TIMEOUT, work)
        .await
        .context("publishing the revocation timed out")?
        .context("publishing the revocation")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn status_reports_an_outage_once_and_recovers() {
        let status = FeedStatus::default();
        assert_eq!(status.describe(), "starting");
        status.ok();
        assert!(status.is_current());
        assert_eq!(status.describe(), "ok");
        status.failed(&anyhow::anyhow!("down"));
        status.failed(&anyhow::anyhow!("still down"));
        assert!(!status.is_current());
        assert!(status.describe().starts_with("stale: source unreachable"));
        status.ok();
        assert!(status.is_current());
    }

    #[tokio::test]
    async fn spawn_refuses_a_short_token() {
        let settings = FeedSettings {
            url: Url::parse("http://127.0.0.1:1/api/v2/revocations").unwrap(),
            token: "short".into(),
            redis_url: None,
            key_prefix: "p:".into(),
            poll_every: POLL,
        };
        assert!(Feed::spawn(settings, Arc::new(RevocationSet::new())).is_err());
    }
}
