//! Building and running the server; `main` and the tests share this path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use migrations::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;
use shared::serve::HttpSettings;
use tokio::net::TcpListener;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::keys::{KeySet, RefreshSecret};
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
    /// Binds first (so that the first log line is the bound address), then
    /// opens the database, migrates, loads the keys and builds the router.
    pub async fn build(settings: Settings, options: BuildOptions) -> anyhow::Result<Self> {
        let http = settings.http()?;
        // Bad certificate files fail the start before anything is bound.
        let tls = settings
            .tls_files()?
            .map(shared::tls::Tls::load)
            .transpose()?;
        let listener = TcpListener::bind(settings.auth_listen)
            .await
            .with_context(|| format!("binding {}", settings.auth_listen))?;
        let address = listener.local_addr()?;
        shared::tls::announce(
            "AUTH_LISTEN",
            address,
            tls.as_ref(),
            settings.trust_proxy_tls,
        )?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let issuer = issuer_for(&settings, address, scheme)?;
        // The audit writer has a small pool of its own, so that audit
        // writes never wait for the connections requests are using (nor take
        // them). An injected pool (tests) serves both.
        let (db, audit_db) = match options.database {
            Some(db) => (db.clone(), db),
            None => {
                let deadlines = settings.db_deadlines()?;
                let db = migrations::db::connect_with(&settings.database_url, None, deadlines)
                    .await
                    .context("connecting to the database")?;
                let audit_db = migrations::db::connect_pool(
                    &settings.database_url,
                    None,
                    deadlines,
                    crate::audit::POOL_SIZE,
                )
                .await
                .context("connecting to the database (audit pool)")?;
                (db, audit_db)
            }
        };
        if !options.skip_migrations {
            Migrator::up(&db, None)
                .await
                .context("running migrations")?;
        }
        let keys = KeySet::load_or_generate(&settings.auth_keys_dir)?;
        let refresh_secret = RefreshSecret::load_or_generate(&settings.auth_keys_dir)?;
        tracing::info!(issuer = %issuer, kid = %keys.signer.kid(), "authorization server ready");
        let clock = options.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let limiter = shared::limit::Limiter::with_prefix(
            settings.redis_url.as_deref(),
            &settings.redis_key_prefix,
        )
        .await
        .context("REDIS_URL")?;
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
        })
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

/// The issuer: `AUTH_ISSUER`, or `<scheme>://<bound address>` (`https` when
/// the server serves TLS) when the listener is on loopback. Behind anything
/// else the public URL is unknown here.
fn issuer_for(settings: &Settings, address: SocketAddr, scheme: &str) -> anyhow::Result<String> {
    match &settings.auth_issuer {
        Some(issuer) => Ok(issuer.clone()),
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
