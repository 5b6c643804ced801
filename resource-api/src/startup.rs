//! `Application::build` (bind, connect, migrate, load keys) apart from
//! `run_until_stopped`, so that `main` and the tests share one path.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use migrations::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;
use shared::jwt::{DEFAULT_MAX_TOKEN_LIFETIME, KeySource, Verifier, VerifierSettings};
use shared::serve::{Draining, HttpSettings};
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::{KeysFrom, Settings};
use crate::http;
use crate::state::AppState;

/// Clock skew allowed on `exp`/`nbf`.
pub const TOKEN_LEEWAY: Duration = shared::contract::TOKEN_LEEWAY;

/// How to build beyond the settings.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Run the migrations on start (`serve --no-migrate` turns this off).
    pub migrate: bool,
    /// Use this connection instead of opening `settings.database_url`
    /// (tests: a PostgreSQL pool bound to a fresh schema).
    pub database: Option<DatabaseConnection>,
    pub clock: Clock,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            migrate: true,
            database: None,
            clock: Clock::system(),
        }
    }
}

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    router: Router,
    http: HttpSettings,
    draining: Draining,
    /// HTTPS (`TLS_CERT`/`TLS_KEY`), else plain HTTP.
    tls: Option<shared::tls::Tls>,
}

impl Application {
    /// Binds, connects, migrates and loads the verification keys.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, BuildOptions::default()).await
    }

    /// As `build`, on an already open database connection.
    pub async fn build_with_db(settings: Settings, db: DatabaseConnection) -> anyhow::Result<Self> {
        Self::build_with(
            settings,
            BuildOptions {
                database: Some(db),
                ..BuildOptions::default()
            },
        )
        .await
    }

    pub async fn build_with(settings: Settings, options: BuildOptions) -> anyhow::Result<Self> {
        let http_settings = settings.http()?;
        // Bad certificate files fail the start before anything is bound.
        let tls = settings
            .tls_files()?
            .map(shared::tls::Tls::load)
            .transpose()?;
        // Bind first: the first log line names the bound address (port 0 allowed).
        let listener = TcpListener::bind(&settings.resource_listen)
            .await
            .with_context(|| format!("binding {}", settings.resource_listen))?;
        let address = listener.local_addr().context("reading the bound address")?;
        shared::tls::announce(
            "RESOURCE_LISTEN",
            address,
            tls.as_ref(),
            settings.trust_proxy_tls,
        )?;

        let db = match options.database {
            Some(db) => db,
            None => {
                migrations::db::connect_with(&settings.database_url, None, settings.db_deadlines()?)
                    .await
                    .context("connecting to the database")?
            }
        };
        if options.migrate {
            Migrator::up(&db, None)
                .await
                .context("running database migrations")?;
        }

        let source = match settings.keys_from()? {
            KeysFrom::PemDir(dir) => KeySource::from_pem_dir(&dir)?,
            KeysFrom::Jwks(url) => KeySource::JwksUrl(url),
        };
        let verifier = Verifier::new(VerifierSettings {
            issuer: settings.auth_issuer.clone(),
            audience: settings.resource_audience.clone(),
            leeway: TOKEN_LEEWAY,
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            source,
        })
        .context("building the token verifier")?;

        let limits = settings.limits()?;
        let limiter = shared::limit::Limiter::with_prefix(
            settings.redis_url.as_deref(),
            &settings.redis_key_prefix,
        )
        .await
        .context("REDIS_URL")?;

        let draining = Draining::new();
        let state = AppState {
            db,
            verifier: Arc::new(verifier),
            clock: options.clock,
            draining: draining.clone(),
            limiter,
            limits: Arc::new(limits),
        };
        let router = http::router(
            state,
            &settings.cors_allowed_origins,
            http_settings.request_timeout,
        )?;
        Ok(Self {
            listener,
            address,
            router,
            http: http_settings,
            draining,
            tls,
        })
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until SIGTERM or Ctrl-C, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shared::http::shutdown_signal()).await
    }

    /// Serves until `shutdown` resolves (`shared::serve`: header, idle and
    /// request deadlines, a connection cap); then marks the state draining
    /// and lets in-flight requests finish within `SHUTDOWN_GRACE_SECS`.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let draining = self.draining;
        shared::serve::serve_with(
            self.listener,
            self.router,
            &self.http,
            self.tls,
            shutdown,
            move || draining.start(),
        )
        .await;
        Ok(())
    }
}

/// `resource-api migrate`: applies pending migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = migrations::db::connect_with(&settings.database_url, None, settings.db_deadlines()?)
        .await
        .context("connecting to the database")?;
    Migrator::up(&db, None)
        .await
        .context("running database migrations")?;
    tracing::info!("migrations applied");
    Ok(())
}
