//! Building and running the server; `main` and the tests share this path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use sea_orm::DatabaseConnection;
use shared::serve::HttpSettings;
use tokio::net::TcpListener;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::keys::{KeySet, RefreshSecret};
use crate::signing_keys::KeyRing;
use crate::state::{AppState, Parts};

/// How long closing the database pool may take at shutdown.
const DB_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Application {
    listener: TcpListener,
    router: Router,
    address: SocketAddr,
    state: AppState,
    http: HttpSettings,
    /// HTTPS (`TLS_CERT`/`TLS_KEY`), else plain HTTP.
    tls: Option<shared::tls::Tls>,
    /// Password-reset requests, for the worker `run_until_stopped` starts.
    reset_inbox: crate::reset::Inbox,
    /// `METRICS_LISTEN`'s bound address (`shared::metrics::serve`).
    metrics_address: Option<SocketAddr>,
}

/// What `main` and the tests may give `build` besides the settings.
#[derive(Clone, Default)]
pub struct BuildOptions {
    pub skip_migrations: bool,
    /// An open pool to use instead of connecting to `DATABASE_URL`.
    pub database: Option<DatabaseConnection>,
    /// The time source; None is the wall clock.
    pub clock: Option<Arc<dyn Clock>>,
}

impl Application {
    /// Checks everything before binding and before migrating, in this
    /// order: settings, listen address, keys folder and keys, database
    /// (reachable, writable: `migrations::check`), Redis. A failed check
    /// leaves nothing bound, generated or migrated, with one line saying
    /// why and what to do (`shared::startup`). Then it binds and logs
    /// `listening on …` (still the first log line, DESIGN.md), and only
    /// then does the slow work the checks cleared, each announced before
    /// it starts: a development key for an empty keys folder, the pending
    /// migrations. Requests wait in the listen backlog meanwhile.
    pub async fn build(settings: Settings, options: BuildOptions) -> anyhow::Result<Self> {
        Self::build_for(settings, options, false).await
    }

    /// [`Self::build`], told whether this is a development run
    /// (`serve --dev`): only then, or on a loopback listen address, does an
    /// empty keys folder get a development key. Elsewhere several instances
    /// would each make their own and sign tokens the others do not publish.
    pub async fn build_for(
        settings: Settings,
        options: BuildOptions,
        dev: bool,
    ) -> anyhow::Result<Self> {
        let http = settings.http()?;
        // Bad certificate files fail the start before anything is bound.
        let tls = settings
            .tls_files()?
            .map(shared::tls::Tls::load)
            .transpose()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        shared::tls::check_plain_http(
            "AUTH_LISTEN",
            settings.auth_listen,
            tls.is_some(),
            settings.trust_proxy_tls,
        )?;
        issuer_for(&settings, settings.auth_listen, scheme)?;
        crate::keys::check_folder(&settings.auth_keys_dir)?;
        if !dev
            && !settings.auth_listen.ip().is_loopback()
            && crate::keys::list(&settings.auth_keys_dir)?.is_empty()
        {
            return Err(shared::startup::fix(
                anyhow::anyhow!(
                    "no signing key in {} and AUTH_LISTEN {} is not a loopback address",
                    settings.auth_keys_dir.display(),
                    settings.auth_listen
                ),
                "Run `auth-server keys generate` once and give every instance the same keys folder (or `serve --dev` for a throwaway development key)",
            ));
        }
        // The audit writer has a small pool of its own, so that audit
        // writes never wait for the connections requests are using (nor take
        // them). An injected pool (tests) serves both.
        let url = settings.database_url.as_str();
        let (db, audit_db) = match options.database {
            Some(db) => (db.clone(), db),
            None => {
                migrations::check::check(url).await.map_err(db_error)?;
                let deadlines = settings.db_deadlines()?;
                let db = migrations::db::connect_with(url, None, deadlines)
                    .await
                    .map_err(|e| explain_db(url, e, "connecting to the database"))?;
                let audit_db =
                    migrations::db::connect_pool(url, None, deadlines, crate::audit::POOL_SIZE)
                        .await
                        .map_err(|e| {
                            explain_db(url, e, "connecting to the database (audit pool)")
                        })?;
                (db, audit_db)
            }
        };
        let limiter = shared::limit::Limiter::with_prefix(
            settings.redis_url.as_deref(),
            &settings.redis_key_prefix,
        )
        .await
        .context("REDIS_URL")?;
        // With Redis, the security alerts count on shared totals too.
        shared::alerts::share_counts(&limiter);
        let listener = TcpListener::bind(settings.auth_listen)
            .await
            .map_err(|e| bind_error("AUTH_LISTEN", settings.auth_listen, e))?;
        let address = listener.local_addr()?;
        shared::tls::announce(
            "AUTH_LISTEN",
            address,
            tls.as_ref(),
            settings.trust_proxy_tls,
        )?;
        let issuer = issuer_for(&settings, address, scheme)?;
        let metrics_address = shared::metrics::serve(&settings.metrics()?).await?;
        // Generates the development key into an empty folder (allowed by
        // the checks above); which key signs is the database's to say.
        KeySet::load_or_generate(&settings.auth_keys_dir)?;
        let refresh_secret = RefreshSecret::load_or_generate(&settings.auth_keys_dir)?;
        if !options.skip_migrations {
            migrations::check::migrate(&db)
                .await
                .map_err(|e| explain_db(url, e, "running migrations"))?;
        }
        let clock = options.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let keys = KeyRing::load(
            db.clone(),
            &settings.auth_keys_dir,
            shared::jwt::VerifierSettings {
                issuer: issuer.trim_end_matches('/').to_owned(),
                audience: settings.auth_audience.clone(),
                leeway: shared::contract::TOKEN_LEEWAY,
                // Our own tokens live exactly this long; a negative TTL gives
                // 0, which `Verifier::new` refuses.
                max_lifetime: Duration::from_secs(
                    u64::try_from(settings.auth_access_token_ttl_secs).unwrap_or(0),
                ),
                source: shared::jwt::KeySource::Static(Vec::new()),
                cache_size: shared::jwt::DEFAULT_VERIFY_CACHE_SIZE,
            },
            clock.clone(),
        )
        .await?;
        keys.spawn_reloader();
        tracing::info!(
            issuer = %issuer,
            kid = %keys.signing_kid().unwrap_or_default(),
            "authorization server ready"
        );
        let (reset_queue, reset_inbox) = crate::reset::queue();
        let state = AppState::new(
            settings,
            Parts {
                db,
                audit_db,
                issuer,
                keys,
                refresh_secret,
                clock,
                limiter,
                reset_queue,
            },
        )?;
        let router = crate::http::router(state.clone())?;
        Ok(Self {
            listener,
            router,
            address,
            state,
            http,
            tls,
            reset_inbox,
            metrics_address,
        })
    }

    /// The `METRICS_LISTEN` listener's address, when set.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM/Ctrl-C (`shared::serve`: header, idle and
    /// request deadlines, a connection cap); then marks the state draining,
    /// lets in-flight requests finish within `SHUTDOWN_GRACE_SECS`, drops
    /// what is left and closes the database.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        // Stopped with the server, also when this future is dropped.
        let janitor = crate::janitor::spawn(self.state.clone());
        let reset_worker = crate::reset::Worker::spawn(self.state.clone(), self.reset_inbox);
        let draining = self.state.draining.clone();
        shared::serve::serve_with(
            self.listener,
            self.router,
            &self.http,
            self.tls,
            shared::http::shutdown_signal(),
            move || draining.start(),
        )
        .await;
        if let Some(janitor) = janitor {
            janitor.stop().await;
        }
        reset_worker.stop().await;
        // Audit events still waiting are written before the pools close.
        self.state.audit_writer.shutdown().await;
        // A handler still running past the grace (each runs in its own
        // task, see `run_to_completion`) may hold a pooled connection, which
        // `close` would wait for.
        if tokio::time::timeout(DB_CLOSE_TIMEOUT, self.state.db.clone().close())
            .await
            .is_err()
        {
            tracing::warn!("the database pool did not close within {DB_CLOSE_TIMEOUT:?}");
        }
        let _ = tokio::time::timeout(DB_CLOSE_TIMEOUT, self.state.audit_db.clone().close()).await;
        Ok(())
    }
}

/// A `migrations::check` failure as a start-up error.
pub(crate) fn db_error(error: migrations::check::CheckError) -> anyhow::Error {
    let what_to_do = error.fix.clone();
    shared::startup::fix(anyhow::Error::new(error), what_to_do)
}

/// A database error of `doing`, explained as `migrations::check` would
/// when it comes from the driver.
pub(crate) fn explain_db(url: &str, error: sea_orm::DbErr, doing: &str) -> anyhow::Error {
    match migrations::check::explain(url, &error) {
        Some(explained) => db_error(explained).context(doing.to_owned()),
        None => anyhow::Error::new(error).context(doing.to_owned()),
    }
}

/// Why binding `addr` failed, and what to do.
pub(crate) fn bind_error(variable: &str, addr: SocketAddr, error: std::io::Error) -> anyhow::Error {
    let what_to_do = match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            format!(
                "Stop what listens there, or choose another port in {variable} (port 0 picks a free one)"
            )
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("Ports below 1024 need privileges: choose a port of 1024 or more in {variable}")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!("{addr} is not an address of this machine: fix {variable}")
        }
        _ => format!("Fix {variable}"),
    };
    shared::startup::fix(
        anyhow::anyhow!("cannot listen on {addr} ({variable}): {error}"),
        what_to_do,
    )
}

/// The issuer: `AUTH_ISSUER`, or `<scheme>://<bound address>` (`https` when
/// the server serves TLS) when the listener is on loopback. Behind anything
/// else the public URL is unknown here.
fn issuer_for(settings: &Settings, address: SocketAddr, scheme: &str) -> anyhow::Result<String> {
    match &settings.auth_issuer {
        Some(issuer) => shared::config::normalize_issuer(issuer),
        None if address.ip().is_loopback() => Ok(format!("{scheme}://{address}")),
        None => anyhow::bail!(
            "AUTH_ISSUER must be set when AUTH_LISTEN ({address}) is not a loopback address"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_for_requires_auth_issuer_off_loopback() {
        let mut settings = Settings::default();
        let loopback: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            issuer_for(&settings, loopback, "http").unwrap(),
            "http://127.0.0.1:4000"
        );
        assert_eq!(
            issuer_for(&settings, loopback, "https").unwrap(),
            "https://127.0.0.1:4000"
        );
        assert!(issuer_for(&settings, any, "http").is_err());
        settings.auth_issuer = Some("https://id.example".into());
        assert_eq!(
            issuer_for(&settings, any, "http").unwrap(),
            "https://id.example"
        );
    }
}
