//! `Application::build` (bind, connect, migrate, load keys) apart from
//! `run_until_stopped`, so that `main` and the tests share one path.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
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
    /// `METRICS_LISTEN`'s bound address (`shared::metrics::serve`).
    metrics_address: Option<SocketAddr>,
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

    /// Checks everything before binding and before migrating: settings,
    /// listen address, verification keys, database (reachable, writable:
    /// `migrations::check`), Redis. A failed check leaves nothing bound and
    /// nothing migrated, with one line saying why and what to do
    /// (`shared::startup`). Then it binds, logs `listening on …` (the first
    /// log line, DESIGN.md) and applies pending migrations, announced.
    pub async fn build_with(settings: Settings, options: BuildOptions) -> anyhow::Result<Self> {
        let http_settings = settings.http()?;
        // Bad certificate files fail the start before anything is bound.
        let tls = settings
            .tls_files()?
            .map(shared::tls::Tls::load)
            .transpose()?;
        let listen = settings.listen_addr()?;
        shared::tls::check_plain_http(
            "RESOURCE_LISTEN",
            listen,
            tls.is_some(),
            settings.trust_proxy_tls,
        )?;
        // The one normal form of the issuer, the auth server's (settings
        // built in code have not been through `Settings::load`).
        let issuer = shared::config::normalize_issuer(&settings.auth_issuer)?;

        let source = match settings.keys_from()? {
            KeysFrom::PemDir(dir) => KeySource::from_pem_dir(&dir).map_err(|e| {
                shared::startup::fix(
                    e,
                    "Point AUTH_PUBLIC_KEYS at a folder of the auth server's PEM public keys, or unset it to use the JWKS",
                )
            })?,
            KeysFrom::Jwks(url) => KeySource::JwksUrl(url),
        };
        let verifier = Verifier::new(VerifierSettings {
            issuer,
            audience: settings.resource_audience.clone(),
            leeway: TOKEN_LEEWAY,
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            source,
            cache_size: settings.verify_cache_size()?,
        })
        .context("building the token verifier")?;
        let limits = settings.limits()?;
        let api_v1 = settings.api_v1()?;
        let revocations = settings.revocations()?;

        let url = settings.database_url.as_str();
        let db = match options.database {
            Some(db) => db,
            None => {
                migrations::check::check(url).await.map_err(db_error)?;
                migrations::db::connect_with(url, None, settings.db_deadlines()?)
                    .await
                    .map_err(|e| explain_db(url, e, "connecting to the database"))?
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

        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| bind_error(listen, e))?;
        let address = listener.local_addr().context("reading the bound address")?;
        shared::tls::announce(
            "RESOURCE_LISTEN",
            address,
            tls.as_ref(),
            settings.trust_proxy_tls,
        )?;
        let metrics_address = shared::metrics::serve(&settings.metrics()?).await?;
        // After the `listening on` line (the first, DESIGN.md): checked
        // already, and announced when there is anything to do.
        if options.migrate {
            migrations::check::migrate(&db)
                .await
                .map_err(|e| explain_db(url, e, "running database migrations"))?;
        }

        let verifier = Arc::new(verifier);
        let revocations = match revocations {
            Some(feed) => {
                let set = Arc::new(shared::revocation::RevocationSet::new());
                verifier.check_revocations(set.clone());
                Some(Arc::new(
                    shared::revocation_feed::Feed::spawn(feed, set)
                        .context("starting the revocations feed")?,
                ))
            }
            None => {
                tracing::warn!(
                    "REVOCATIONS_TOKEN is unset: revoked users' and clients' access tokens \
                     stay valid here until they expire"
                );
                None
            }
        };
        let draining = Draining::new();
        let state = AppState {
            db,
            verifier,
            clock: options.clock,
            draining: draining.clone(),
            limiter,
            limits: Arc::new(limits),
            api_v1: Arc::new(api_v1),
            revocations,
        };
        let router = http::router(
            state,
            &settings.cors_allowed_origins,
            http_settings.request_timeout,
            &settings.metrics()?,
        )?;
        Ok(Self {
            listener,
            address,
            router,
            http: http_settings,
            draining,
            tls,
            metrics_address,
        })
    }

    /// The hardened router exactly as `run_until` serves it (benchmarks
    /// and router tests drive it in process, without a socket).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The `METRICS_LISTEN` listener's address, when set.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
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
    let url = settings.database_url.as_str();
    migrations::check::check(url).await.map_err(db_error)?;
    let db = migrations::db::connect_with(url, None, settings.db_deadlines()?)
        .await
        .map_err(|e| explain_db(url, e, "connecting to the database"))?;
    migrations::db::up(&db, None)
        .await
        .map_err(|e| explain_db(url, e, "running database migrations"))?;
    tracing::info!("migrations applied");
    Ok(())
}

/// A `migrations::check` failure as a start-up error.
fn db_error(error: migrations::check::CheckError) -> anyhow::Error {
    let what_to_do = error.fix.clone();
    shared::startup::fix(anyhow::Error::new(error), what_to_do)
}

/// A database error of `doing`, explained as `migrations::check` would
/// when it comes from the driver.
fn explain_db(url: &str, error: sea_orm::DbErr, doing: &str) -> anyhow::Error {
    match migrations::check::explain(url, &error) {
        Some(explained) => db_error(explained).context(doing.to_owned()),
        None => anyhow::Error::new(error).context(doing.to_owned()),
    }
}

/// Why binding failed, and what to do.
fn bind_error(addr: SocketAddr, error: std::io::Error) -> anyhow::Error {
    let what_to_do = match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "Stop what listens there, or choose another port in RESOURCE_LISTEN (port 0 picks a free one)"
        }
        std::io::ErrorKind::PermissionDenied => {
            "Ports below 1024 need privileges: choose a port of 1024 or more in RESOURCE_LISTEN"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "The address is not one of this machine's: fix RESOURCE_LISTEN"
        }
        _ => "Fix RESOURCE_LISTEN",
    };
    shared::startup::fix(
        anyhow::anyhow!("cannot listen on {addr} (RESOURCE_LISTEN): {error}"),
        what_to_do,
    )
}
