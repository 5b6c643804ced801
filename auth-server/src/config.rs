//! Settings of the authorization server: defaults < `--config FILE` < environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variables read (their lower-cased names are the TOML keys).
pub const ENV_VARS: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_ACQUIRE_TIMEOUT_MS",
    "DATABASE_STATEMENT_TIMEOUT_MS",
    "AUTH_LISTEN",
    "AUTH_ISSUER",
    "AUTH_KEYS_DIR",
    "AUTH_AUDIENCE",
    "AUTH_ACCESS_TOKEN_TTL_SECS",
    "AUTH_REFRESH_TOKEN_TTL_SECS",
    "AUTH_CODE_TTL_SECS",
    "AUTH_SESSION_TTL_SECS",
    "REFRESH_GRACE_SECS",
    "REFRESH_GRACE_MAX_REPLAYS",
    "CORS_ALLOWED_ORIGINS",
    "REDIS_URL",
    "TLS_CERT",
    "TLS_KEY",
    "HTTP_HEADER_TIMEOUT_SECS",
    "HTTP_IDLE_TIMEOUT_SECS",
    "HTTP_REQUEST_TIMEOUT_SECS",
    "HTTP_MAX_CONNECTIONS",
    "SHUTDOWN_GRACE_SECS",
    "SHUTDOWN_DRAIN_DELAY_SECS",
];

/// Longest refresh grace window, server-wide or per client.
pub const MAX_REFRESH_GRACE_SECS: i64 = 60;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub database_url: String,
    /// How long a request waits for a pooled database connection (ms).
    pub database_acquire_timeout_ms: u64,
    /// How long one database statement may take (ms).
    pub database_statement_timeout_ms: u64,
    pub auth_listen: SocketAddr,
    /// The `iss` of every token. Unset: `http://<bound address>`.
    pub auth_issuer: Option<String>,
    pub auth_keys_dir: PathBuf,
    /// The `aud` of access tokens.
    pub auth_audience: String,
    pub auth_access_token_ttl_secs: i64,
    pub auth_refresh_token_ttl_secs: i64,
    pub auth_code_ttl_secs: i64,
    pub auth_session_ttl_secs: i64,
    /// Default refresh grace window of clients that set none (0 = off, max 60).
    pub refresh_grace_secs: i64,
    /// How often one rotated refresh token may be replayed inside its window.
    pub refresh_grace_max_replays: i64,
    pub cors_allowed_origins: String,
    pub redis_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Time to send a complete request head (`shared::serve`).
    pub http_header_timeout_secs: u64,
    /// Time a keep-alive connection may wait for its next request.
    pub http_idle_timeout_secs: u64,
    /// Time to answer a request; past it: 503.
    pub http_request_timeout_secs: u64,
    /// Connections served at once; past it: 503 (but `/healthz`).
    pub http_max_connections: usize,
    /// Time in-flight requests get to finish on SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Seconds between SIGTERM (readyz turns 503) and closing the listener.
    pub shutdown_drain_delay_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/portcullis.db?mode=rwc".into(),
            database_acquire_timeout_ms: migrations::db::DEFAULT_ACQUIRE_TIMEOUT_MS,
            database_statement_timeout_ms: migrations::db::DEFAULT_STATEMENT_TIMEOUT_MS,
            auth_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            auth_issuer: None,
            auth_keys_dir: PathBuf::from("keys"),
            auth_audience: shared::contract::DEFAULT_AUDIENCE.into(),
            auth_access_token_ttl_secs: 15 * 60,
            auth_refresh_token_ttl_secs: 30 * 24 * 3600,
            auth_code_ttl_secs: 60,
            auth_session_ttl_secs: 3600,
            refresh_grace_secs: 0,
            refresh_grace_max_replays: 3,
            cors_allowed_origins: String::new(),
            redis_url: None,
            tls_cert: None,
            tls_key: None,
            http_header_timeout_secs: shared::serve::DEFAULT_HEADER_TIMEOUT_SECS,
            http_idle_timeout_secs: shared::serve::DEFAULT_IDLE_TIMEOUT_SECS,
            http_request_timeout_secs: shared::serve::DEFAULT_REQUEST_TIMEOUT_SECS,
            http_max_connections: shared::serve::DEFAULT_MAX_CONNECTIONS,
            shutdown_grace_secs: shared::serve::DEFAULT_SHUTDOWN_GRACE_SECS,
            shutdown_drain_delay_secs: shared::serve::default_drain_delay_secs(),
        }
    }
}

impl Settings {
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let settings: Self = shared::config::load(file, ENV_VARS)?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(issuer) = &self.auth_issuer {
            let url = url::Url::parse(issuer)
                .map_err(|e| anyhow::anyhow!("AUTH_ISSUER is not a URL: {e}"))?;
            if url.query().is_some() || url.fragment().is_some() {
                anyhow::bail!("AUTH_ISSUER must not have a query or fragment (RFC 8414)");
            }
            if url.scheme() != "https" && !is_loopback_host(&url) {
                anyhow::bail!("AUTH_ISSUER must be https unless it is a loopback address");
            }
        }
        if !(0..=60).contains(&self.auth_code_ttl_secs) {
            anyhow::bail!("AUTH_CODE_TTL_SECS must be between 0 and 60 (codes live at most 60 s)");
        }
        if self.auth_access_token_ttl_secs < 1 || self.auth_refresh_token_ttl_secs < 1 {
            anyhow::bail!("token lifetimes must be positive");
        }
        let max_access = shared::jwt::DEFAULT_MAX_TOKEN_LIFETIME.as_secs();
        if u64::try_from(self.auth_access_token_ttl_secs).unwrap_or(u64::MAX) > max_access {
            anyhow::bail!(
                "AUTH_ACCESS_TOKEN_TTL_SECS must be at most {max_access}: the resource API refuses longer-lived tokens"
            );
        }
        self.db_deadlines()?;
        if !(0..=MAX_REFRESH_GRACE_SECS).contains(&self.refresh_grace_secs) {
            anyhow::bail!(
                "REFRESH_GRACE_SECS must be between 0 and {MAX_REFRESH_GRACE_SECS} seconds"
            );
        }
        if !(1..=100).contains(&self.refresh_grace_max_replays) {
            anyhow::bail!("REFRESH_GRACE_MAX_REPLAYS must be between 1 and 100");
        }
        if self.auth_session_ttl_secs < 60 {
            anyhow::bail!("AUTH_SESSION_TTL_SECS must be at least 60");
        }
        self.http()?;
        if self.tls_cert.is_some() || self.tls_key.is_some() {
            anyhow::bail!(
                "TLS_CERT/TLS_KEY: TLS termination is not built yet; terminate TLS in front of Portcullis"
            );
        }
        Ok(())
    }

    /// The database deadlines, checked.
    pub fn db_deadlines(&self) -> anyhow::Result<migrations::db::Deadlines> {
        Ok(migrations::db::Deadlines::from_millis(
            self.database_acquire_timeout_ms,
            self.database_statement_timeout_ms,
        )?)
    }

    pub fn cors_origins(&self) -> Vec<String> {
        shared::config::split_list(&self.cors_allowed_origins)
    }

    /// The connection hygiene settings, checked.
    pub fn http(&self) -> anyhow::Result<shared::serve::HttpSettings> {
        shared::serve::HttpSettings::from_secs(shared::serve::HttpSecs {
            header_timeout_secs: self.http_header_timeout_secs,
            idle_timeout_secs: self.http_idle_timeout_secs,
            request_timeout_secs: self.http_request_timeout_secs,
            max_connections: self.http_max_connections,
            shutdown_grace_secs: self.shutdown_grace_secs,
            drain_delay_secs: self.shutdown_drain_delay_secs,
        })
    }
}

pub fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}
