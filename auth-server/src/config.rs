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
    "KEY_ROTATION_DELAY_SECS",
    "CORS_ALLOWED_ORIGINS",
    "REDIS_URL",
    "METRICS_LISTEN",
    "METRICS_TOKEN",
    "REDIS_KEY_PREFIX",
    "TLS_CERT",
    "TLS_KEY",
    "TRUST_PROXY_TLS",
    "HTTP_HEADER_TIMEOUT_SECS",
    "HTTP_IDLE_TIMEOUT_SECS",
    "HTTP_REQUEST_TIMEOUT_SECS",
    "HTTP_MAX_CONNECTIONS",
    "SHUTDOWN_GRACE_SECS",
    "SHUTDOWN_DRAIN_DELAY_SECS",
    "JANITOR_INTERVAL_SECS",
    "JANITOR_BATCH_SIZE",
    "JANITOR_PAUSE_MS",
    "AUDIT_RETENTION_DAYS",
    "TRUSTED_PROXIES",
    "RATE_LIMIT_LOGIN",
    "RATE_LIMIT_PAGES",
    "RATE_LIMIT_TOKEN",
    "RATE_LIMIT_CLIENT_FAILURES",
    "RATE_LIMIT_PASSWORD_RESET",
    "RATE_LIMIT_REGISTRATION",
    "RATE_LIMIT_ADMIN",
    "REGISTRATION",
    "LOCKOUT_THRESHOLD",
    "LOCKOUT_WINDOW_SECS",
    "LOCKOUT_DURATION_SECS",
    "PASSWORD_HASH_CONCURRENCY",
    "PASSWORD_HASH_QUEUE",
    "PASSWORD_HASH_QUEUE_TIMEOUT_MS",
    "SMTP_URL",
    "MAIL_FROM",
    "REVOCATIONS_TOKEN",
];

/// Longest refresh grace window, server-wide or per client.
pub const MAX_REFRESH_GRACE_SECS: i64 = 60;

/// `REGISTRATION`: whether `POST /api/v2/users` lets anyone create an account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// The route answers 404, as if it did not exist.
    #[default]
    Closed,
    Open,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub database_url: String,
    /// How long a request waits for a pooled database connection (ms).
    pub database_acquire_timeout_ms: u64,
    /// How long one database statement may take (ms).
    pub database_statement_timeout_ms: u64,
    /// `HOST:PORT`; a host name (`localhost:0`) is resolved when read.
    #[serde(deserialize_with = "shared::config::deserialize_listen")]
    pub auth_listen: SocketAddr,
    /// The `iss` of every token, in the normal form of
    /// `shared::config::normalize_issuer` (no trailing slash). Unset:
    /// `http://<bound address>`.
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
    /// How long `keys rotate` publishes a key before it signs (0 to 30 days).
    pub key_rotation_delay_secs: i64,
    pub cors_allowed_origins: String,
    pub redis_url: Option<String>,
    /// `/metrics`: served only on this address (`METRICS_LISTEN`), and
    /// only to bearers of this token (`METRICS_TOKEN`); neither: on the
    /// main port to loopback callers only (`shared::metrics`).
    #[serde(default)]
    pub metrics_listen: Option<String>,
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// The start of every Redis key: deployments sharing a Redis keep apart.
    pub redis_key_prefix: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A TLS-terminating proxy stands in front: plain HTTP off loopback is
    /// allowed (`shared::tls::check_plain_http`).
    pub trust_proxy_tls: bool,
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
    /// Seconds between two janitor runs (`crate::janitor`); 0 = no periodic runs.
    pub janitor_interval_secs: u64,
    /// Rows the janitor deletes per statement (1-10000).
    pub janitor_batch_size: u64,
    /// Pause between two janitor batches (ms, at most 60000).
    pub janitor_pause_ms: u64,
    /// Days audit events are kept (at least 1).
    pub audit_retention_days: u64,
    /// CIDRs whose `X-Forwarded-For`/`Forwarded` are believed.
    pub trusted_proxies: String,
    /// `POST /login`, per client IP.
    pub rate_limit_login: String,
    /// Page views (`GET /login`, `/authorize`, the password-reset pages), per client IP.
    pub rate_limit_pages: String,
    /// `/token`, per authenticated client.
    pub rate_limit_token: String,
    /// Failed client authentications at `/token`, `/revoke`, `/introspect`, per client IP.
    pub rate_limit_client_failures: String,
    /// `POST /password-reset`, per client IP and per email.
    pub rate_limit_password_reset: String,
    /// `POST /api/v2/users`, per client IP.
    pub rate_limit_registration: String,
    /// The admin API (`/api/v2/admin/…`), per client IP, before the token
    /// is verified.
    pub rate_limit_admin: String,
    /// Self-registration at `POST /api/v2/users`: `closed` or `open`.
    pub registration: Registration,
    /// Failed sign-ins, per IP or per account, that lock it.
    pub lockout_threshold: u32,
    /// The window in which those failures count.
    pub lockout_window_secs: u64,
    /// How long a lockout lasts.
    pub lockout_duration_secs: u64,
    /// Password hashes computed at once; 0 = the number of cores.
    pub password_hash_concurrency: usize,
    /// Password checks that may wait for a slot; past it: 503.
    pub password_hash_queue: usize,
    /// How long one of them may wait (ms); past it: 503.
    pub password_hash_queue_timeout_ms: u64,
    /// The password-reset mailer (`smtp://…`, `smtps://…`); unset: the dev
    /// outbox (`crate::mail`). May hold credentials: never logged.
    pub smtp_url: Option<String>,
    /// The `From` of every mail.
    pub mail_from: String,
    /// The bearer token resource APIs present at `GET /api/v2/revocations`
    /// (at least 32 characters); unset: that endpoint answers 404.
    #[serde(default)]
    pub revocations_token: Option<String>,
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
            key_rotation_delay_secs: crate::signing_keys::DEFAULT_ROTATION_DELAY_SECS,
            cors_allowed_origins: String::new(),
            redis_url: None,
            metrics_listen: None,
            metrics_token: None,
            redis_key_prefix: shared::limit::DEFAULT_KEY_PREFIX.into(),
            tls_cert: None,
            tls_key: None,
            trust_proxy_tls: false,
            http_header_timeout_secs: shared::serve::DEFAULT_HEADER_TIMEOUT_SECS,
            http_idle_timeout_secs: shared::serve::DEFAULT_IDLE_TIMEOUT_SECS,
            http_request_timeout_secs: shared::serve::DEFAULT_REQUEST_TIMEOUT_SECS,
            http_max_connections: shared::serve::DEFAULT_MAX_CONNECTIONS,
            shutdown_grace_secs: shared::serve::DEFAULT_SHUTDOWN_GRACE_SECS,
            shutdown_drain_delay_secs: shared::serve::default_drain_delay_secs(),
            janitor_interval_secs: crate::janitor::DEFAULT_INTERVAL_SECS,
            janitor_batch_size: crate::janitor::DEFAULT_BATCH_SIZE,
            janitor_pause_ms: crate::janitor::DEFAULT_PAUSE_MS,
            audit_retention_days: crate::janitor::DEFAULT_AUDIT_RETENTION_DAYS,
            trusted_proxies: String::new(),
            rate_limit_login: "5/minute".into(),
            rate_limit_pages: "120/minute".into(),
            rate_limit_token: "600/minute".into(),
            rate_limit_client_failures: "20/minute".into(),
            rate_limit_password_reset: "3/hour".into(),
            rate_limit_registration: "10/hour".into(),
            rate_limit_admin: "120/minute".into(),
            registration: Registration::Closed,
            lockout_threshold: 5,
            lockout_window_secs: 15 * 60,
            lockout_duration_secs: 3600,
            password_hash_concurrency: 0,
            password_hash_queue: 32,
            password_hash_queue_timeout_ms: 2000,
            smtp_url: None,
            mail_from: crate::mail::DEFAULT_FROM.into(),
            revocations_token: None,
        }
    }
}

impl Settings {
    /// Defaults < `file` < environment; refuses a variable of a feature not
    /// built yet (`shared::startup::UNBUILT_VARS`); `AUTH_ISSUER` comes out
    /// in its normal form.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        shared::startup::refuse_unbuilt_env_vars()?;
        let mut settings: Self = shared::config::load(file, ENV_VARS)?;
        if let Some(issuer) = &settings.auth_issuer {
            settings.auth_issuer = Some(shared::config::normalize_issuer(issuer)?);
        }
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(issuer) = &self.auth_issuer {
            let normal = shared::config::normalize_issuer(issuer)?;
            let url = url::Url::parse(&normal)?;
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
        if !(0..=crate::signing_keys::MAX_ROTATION_DELAY_SECS)
            .contains(&self.key_rotation_delay_secs)
        {
            anyhow::bail!(
                "KEY_ROTATION_DELAY_SECS must be between 0 and {} seconds (30 days)",
                crate::signing_keys::MAX_ROTATION_DELAY_SECS
            );
        }
        if !(1..=100).contains(&self.refresh_grace_max_replays) {
            anyhow::bail!("REFRESH_GRACE_MAX_REPLAYS must be between 1 and 100");
        }
        if self.auth_session_ttl_secs < 60 {
            anyhow::bail!("AUTH_SESSION_TTL_SECS must be at least 60");
        }
        self.http()?;
        self.metrics()?;
        shared::http::parse_cors_origins(&self.cors_origins())?;
        crate::mail::parse_from(&self.mail_from)?;
        crate::revocations::check_token(self.revocations_token.as_deref())?;
        if let Some(url) = crate::mail::smtp_url(self) {
            crate::mail::smtp_transport(url)?;
        }
        self.janitor()?;
        self.limits()?;
        if self.tls_files()?.is_some()
            && let Some(issuer) = &self.auth_issuer
            && !issuer.starts_with("https://")
        {
            anyhow::bail!(
                "AUTH_ISSUER must be https when the server serves HTTPS itself (TLS_CERT/TLS_KEY)"
            );
        }
        Ok(())
    }

    /// `TLS_CERT` and `TLS_KEY`: both (HTTPS) or neither. The files are read
    /// by `Application::build`, not here (the CLI does not need them).
    pub fn tls_files(&self) -> anyhow::Result<Option<shared::tls::TlsFiles>> {
        shared::tls::TlsFiles::from_settings(self.tls_cert.as_deref(), self.tls_key.as_deref())
    }

    /// Who may read `/metrics` (`METRICS_LISTEN`, `METRICS_TOKEN`), checked.
    pub fn metrics(&self) -> anyhow::Result<shared::metrics::Access> {
        shared::metrics::Access::from_settings(
            self.metrics_listen.as_deref(),
            self.metrics_token.as_deref(),
        )
    }

    /// The database deadlines, checked.
    pub fn db_deadlines(&self) -> anyhow::Result<migrations::db::Deadlines> {
        Ok(migrations::db::Deadlines::from_millis(
            self.database_acquire_timeout_ms,
            self.database_statement_timeout_ms,
        )?)
    }

    /// The janitor's settings, checked (`JANITOR_INTERVAL_SECS` may be any
    /// value; 0 turns the periodic runs off).
    pub fn janitor(&self) -> anyhow::Result<crate::janitor::JanitorSettings> {
        use crate::janitor::{MAX_BATCH_SIZE, MAX_PAUSE_MS};
        if !(1..=MAX_BATCH_SIZE).contains(&self.janitor_batch_size) {
            anyhow::bail!("JANITOR_BATCH_SIZE must be between 1 and {MAX_BATCH_SIZE}");
        }
        if self.janitor_pause_ms > MAX_PAUSE_MS {
            anyhow::bail!("JANITOR_PAUSE_MS must be at most {MAX_PAUSE_MS}");
        }
        if self.audit_retention_days < 1 {
            anyhow::bail!("AUDIT_RETENTION_DAYS must be at least 1");
        }
        Ok(crate::janitor::JanitorSettings::from(self))
    }

    /// `CORS_ALLOWED_ORIGINS`, split (checked by `validate`, through
    /// `shared::http::parse_cors_origins`).
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

/// The abuse-resistance settings, parsed and checked.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub trusted_proxies: shared::client_ip::TrustedProxies,
    pub login: shared::limit::Rule,
    pub pages: shared::limit::Rule,
    pub token: shared::limit::Rule,
    pub client_failures: shared::limit::Window,
    pub reset_ip: shared::limit::Rule,
    pub reset_email: shared::limit::Rule,
    pub registration: shared::limit::Rule,
    pub admin: shared::limit::Rule,
    pub login_failures_ip: shared::limit::Window,
    pub login_failures_account: shared::limit::Window,
    pub lockout: std::time::Duration,
    pub hash_concurrency: usize,
    pub hash_queue: usize,
    pub hash_queue_timeout: std::time::Duration,
}

fn rule(name: &'static str, setting: &str, value: &str) -> anyhow::Result<shared::limit::Rule> {
    let (limit, period) = shared::config::parse_rate(setting, value)?;
    Ok(shared::limit::Rule {
        name,
        limit,
        period,
    })
}

impl Settings {
    pub fn limits(&self) -> anyhow::Result<LimitSettings> {
        use std::time::Duration;
        let (fail_max, fail_period) = shared::config::parse_rate(
            "RATE_LIMIT_CLIENT_FAILURES",
            &self.rate_limit_client_failures,
        )?;
        if !(1..=100).contains(&self.lockout_threshold) {
            anyhow::bail!("LOCKOUT_THRESHOLD must be between 1 and 100");
        }
        if !(60..=86_400).contains(&self.lockout_window_secs)
            || !(60..=7 * 86_400).contains(&self.lockout_duration_secs)
        {
            anyhow::bail!(
                "LOCKOUT_WINDOW_SECS must be between 60 and 86400, LOCKOUT_DURATION_SECS between 60 and 604800"
            );
        }
        if self.password_hash_concurrency > 256 || !(0..=10_000).contains(&self.password_hash_queue)
        {
            anyhow::bail!(
                "PASSWORD_HASH_CONCURRENCY must be at most 256 and PASSWORD_HASH_QUEUE at most 10000"
            );
        }
        if !(10..=30_000).contains(&self.password_hash_queue_timeout_ms) {
            anyhow::bail!("PASSWORD_HASH_QUEUE_TIMEOUT_MS must be between 10 and 30000");
        }
        let failures = |name| shared::limit::Window {
            name,
            max: self.lockout_threshold,
            window: Duration::from_secs(self.lockout_window_secs),
        };
        let hash_concurrency = match self.password_hash_concurrency {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(LimitSettings {
            trusted_proxies: shared::client_ip::TrustedProxies::parse(&self.trusted_proxies)?,
            login: rule("login", "RATE_LIMIT_LOGIN", &self.rate_limit_login)?,
            pages: rule("pages", "RATE_LIMIT_PAGES", &self.rate_limit_pages)?,
            token: rule("token", "RATE_LIMIT_TOKEN", &self.rate_limit_token)?,
            client_failures: shared::limit::Window {
                name: "client_failures",
                max: fail_max,
                window: fail_period,
            },
            reset_ip: rule(
                "reset_ip",
                "RATE_LIMIT_PASSWORD_RESET",
                &self.rate_limit_password_reset,
            )?,
            reset_email: rule(
                "reset_email",
                "RATE_LIMIT_PASSWORD_RESET",
                &self.rate_limit_password_reset,
            )?,
            registration: rule(
                "registration",
                "RATE_LIMIT_REGISTRATION",
                &self.rate_limit_registration,
            )?,
            admin: rule("admin", "RATE_LIMIT_ADMIN", &self.rate_limit_admin)?,
            login_failures_ip: failures("login_failures_ip"),
            login_failures_account: failures("login_failures_account"),
            lockout: Duration::from_secs(self.lockout_duration_secs),
            hash_concurrency,
            hash_queue: self.password_hash_queue,
            hash_queue_timeout: Duration::from_millis(self.password_hash_queue_timeout_ms),
        })
    }
}

pub use shared::config::is_loopback_host;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_is_closed_by_default_and_reads_open_or_closed() {
        let defaults = Settings::default();
        assert_eq!(defaults.registration, Registration::Closed);
        let limits = defaults.limits().unwrap();
        assert_eq!(limits.registration.limit, 10);
        assert_eq!(limits.registration.period.as_secs(), 3600);
        for (value, expected) in [
            ("open", Registration::Open),
            ("closed", Registration::Closed),
        ] {
            let settings: Settings =
                serde_json::from_value(serde_json::json!({ "registration": value })).unwrap();
            assert_eq!(settings.registration, expected);
        }
        for bad in ["Open", "yes", "true", ""] {
            let parsed =
                serde_json::from_value::<Settings>(serde_json::json!({ "registration": bad }));
            assert!(parsed.is_err(), "{bad}");
        }
    }

    #[test]
    fn cors_allowed_origins_must_be_exact_origins() {
        let with = |origins: &str| Settings {
            cors_allowed_origins: origins.into(),
            ..Settings::default()
        };
        with("https://app.example, http://localhost:3000")
            .validate()
            .unwrap();
        for (origins, why) in [
            ("*", "wildcard"),
            ("https://app.example,null", "`null`"),
            ("https://app.example/", "not a bare origin"),
            ("http://app.example", "http off loopback"),
            ("chrome-extension://abc", "has scheme"),
        ] {
            let error = format!("{:#}", with(origins).validate().unwrap_err());
            assert!(error.contains("CORS_ALLOWED_ORIGINS"), "{origins}: {error}");
            assert!(error.contains(why), "{origins}: {error}");
        }
    }

    #[test]
    fn tls_files_must_come_in_pairs_and_want_an_https_issuer() {
        let with = |cert: Option<&str>, key: Option<&str>, issuer: Option<&str>| Settings {
            tls_cert: cert.map(PathBuf::from),
            tls_key: key.map(PathBuf::from),
            auth_issuer: issuer.map(str::to_owned),
            ..Settings::default()
        };
        // The files are read at start (`Application::build`), not here.
        with(Some("/c.pem"), Some("/k.pem"), None)
            .validate()
            .unwrap();
        with(Some("/c.pem"), Some("/k.pem"), Some("https://id.example"))
            .validate()
            .unwrap();
        let error = with(Some("/c.pem"), None, None).validate().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("TLS_CERT is set but TLS_KEY is not"),
            "{error}"
        );
        let error = with(None, Some("/k.pem"), None).validate().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("TLS_KEY is set but TLS_CERT is not"),
            "{error}"
        );
        let error = with(
            Some("/c.pem"),
            Some("/k.pem"),
            Some("http://127.0.0.1:8080"),
        )
        .validate()
        .unwrap_err();
        assert!(
            error.to_string().contains("AUTH_ISSUER must be https"),
            "{error}"
        );
        let trusted: Settings =
            serde_json::from_value(serde_json::json!({ "trust_proxy_tls": true })).unwrap();
        assert!(trusted.trust_proxy_tls);
        assert!(!Settings::default().trust_proxy_tls);
    }

    #[test]
    fn rate_limit_registration_must_be_a_rate() {
        let settings = Settings {
            rate_limit_registration: "often".into(),
            ..Settings::default()
        };
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("RATE_LIMIT_REGISTRATION"), "{error}");
    }
}
