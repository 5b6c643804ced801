//! Building and running the server; `main` and the tests share this path.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use migrations::{Migrator, MigratorTrait};
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::keys::KeySet;
use crate::state::AppState;
use crate::store;

pub struct Application {
    listener: TcpListener,
    router: Router,
    address: SocketAddr,
    state: AppState,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct BuildOptions {
    pub skip_migrations: bool,
}

impl Application {
    /// Binds first (so that the first log line is the bound address), then
    /// opens the database, migrates, loads the keys and builds the router.
    pub async fn build(settings: Settings, options: BuildOptions) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.auth_listen)
            .await
            .with_context(|| format!("binding {}", settings.auth_listen))?;
        let address = listener.local_addr()?;
        tracing::info!("listening on http://{address}");
        let issuer = settings
            .auth_issuer
            .clone()
            .unwrap_or_else(|| format!("http://{address}"));
        let db = migrations::db::connect(&settings.database_url, None)
            .await
            .context("connecting to the database")?;
        if !options.skip_migrations {
            Migrator::up(&db, None)
                .await
                .context("running migrations")?;
        }
        let keys = KeySet::load_or_generate(&settings.auth_keys_dir)?;
        tracing::info!(issuer = %issuer, kid = %keys.signer.kid(), "authorization server ready");
        let state = AppState::new(db, settings, issuer, keys)?;
        let router = crate::http::router(state.clone())?;
        Ok(Self {
            listener,
            router,
            address,
            state,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM/Ctrl-C; in-flight requests finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let janitor = tokio::spawn(purge_expired(self.state.clone()));
        let result = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shared::http::shutdown_signal())
            .await
            .context("serving");
        janitor.abort();
        self.state.db.clone().close().await.ok();
        result
    }
}

/// Deletes expired sessions and long-expired codes every ten minutes.
async fn purge_expired(state: AppState) {
    let mut interval = tokio::time::interval(Duration::from_secs(600));
    loop {
        interval.tick().await;
        if let Err(e) = store::sessions::purge_expired(&state.db).await {
            tracing::warn!(error = %e, "purging sessions");
        }
        if let Err(e) = store::codes::purge_expired(&state.db).await {
            tracing::warn!(error = %e, "purging codes");
        }
    }
}
