//! Settings: built-in defaults < TOML file (`--config FILE`) < environment
//! (the variables of DESIGN.md; each field is its variable's lower-cased name).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Deserializer, Serialize};
use shared::client_ip::TrustedProxies;
use shared::contract::Tier;
use shared::jwt::check_jwks_url;
use shared::limit::{Rule, Window};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

/// The environment variables the resource API reads.
pub const ENV_VARS: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_ACQUIRE_TIMEOUT_MS",
    "DATABASE_STATEMENT_TIMEOUT_MS",
    "RESOURCE_LISTEN",
    "RESOURCE_AUDIENCE",
    "AUTH_ISSUER",
    "JWKS_URL",
    "AUTH_PUBLIC_KEYS",
    "CORS_ALLOWED_ORIGINS",
    "TLS_CERT",
    "TLS_KEY",
    "TRUST_PROXY_TLS",
    "HTTP_HEADER_TIMEOUT_SECS",
    "HTTP_IDLE_TIMEOUT_SECS",
    "HTTP_REQUEST_TIMEOUT_SECS",
    "HTTP_MAX_CONNECTIONS",
    "SHUTDOWN_GRACE_SECS",
    "SHUTDOWN_DRAIN_DELAY_SECS",
    "REDIS_URL",
    "METRICS_LISTEN",
    "METRICS_TOKEN",
    "REDIS_KEY_PREFIX",
    "TRUSTED_PROXIES",
    "RATE_LIMIT_PREMIUM",
    "RATE_LIMIT_STANDARD",
    "RATE_LIMIT_ANONYMOUS",
    "RATE_LIMIT_SEARCH",
    "REVOCATIONS_TOKEN",
    "REVOCATIONS_URL",
    "REVOCATIONS_POLL_MS",
    "API_V1_DEPRECATION",
    "API_V1_SUNSET",
    "API_V1_MIGRATION_GUIDE",
    "VERIFY_CACHE_SIZE",
];

/// Where the JWKS lives relative to the issuer, when `JWKS_URL` is unset.
pub const DEFAULT_JWKS_SUFFIX: &str = shared::paths::JWKS_PATH;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// How long a request waits for a pooled database connection (ms).
    #[serde(default = "default_acquire_timeout_ms")]
    pub database_acquire_timeout_ms: u64,
    /// How long one database statement may take (ms).
    #[serde(default = "default_statement_timeout_ms")]
    pub database_statement_timeout_ms: u64,
    /// Bind address, `host:port`; port 0 picks a free port.
    pub resource_listen: String,
    /// The `aud` accepted in access tokens.
    pub resource_audience: String,
    /// The `iss` accepted in access tokens, compared exactly.
    pub auth_issuer: String,
    /// The JWKS to trust; `$AUTH_ISSUER/.well-known/jwks.json` when unset.
    #[serde(default)]
    pub jwks_url: Option<Url>,
    /// A folder of PEM public keys: fully offline; wins over `jwks_url`.
    #[serde(default)]
    pub auth_public_keys: Option<PathBuf>,
    /// Exact origins allowed by CORS on the API routes: a comma-separated
    /// string or a list (`shared::http::parse_cors_origins` says which).
    #[serde(default, deserialize_with = "string_or_list")]
    pub cors_allowed_origins: Vec<String>,
    /// PEM certificate chain: with `tls_key`, serve HTTPS (`shared::tls`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// A TLS-terminating proxy stands in front: plain HTTP off loopback is
    /// allowed (`shared::tls::check_plain_http`).
    #[serde(default)]
    pub trust_proxy_tls: bool,
    /// Time to send a complete request head (`shared::serve`).
    #[serde(default = "shared::serve::default_header_timeout_secs")]
    pub http_header_timeout_secs: u64,
    /// Time a keep-alive connection may wait for its next request.
    #[serde(default = "shared::serve::default_idle_timeout_secs")]
    pub http_idle_timeout_secs: u64,
    /// Time to answer a request; past it: 503.
    #[serde(default = "shared::serve::default_request_timeout_secs")]
    pub http_request_timeout_secs: u64,
    /// Connections served at once; past it: 503 (but `/healthz`).
    #[serde(default = "shared::serve::default_max_connections")]
    pub http_max_connections: usize,
    /// Time in-flight requests get to finish on SIGTERM.
    #[serde(default = "shared::serve::default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Seconds between SIGTERM (readyz turns 503) and closing the listener.
    #[serde(default = "shared::serve::default_drain_delay_secs")]
    pub shutdown_drain_delay_secs: u64,
    /// Rate-limit state shared by every instance; unset: in this process.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// `/metrics`: served only on this address (`METRICS_LISTEN`), and
    /// only to bearers of this token (`METRICS_TOKEN`); neither: on the
    /// main port to loopback callers only (`shared::metrics`).
    #[serde(default)]
    pub metrics_listen: Option<String>,
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// The start of every Redis key: deployments sharing a Redis keep apart.
    #[serde(default = "default_redis_key_prefix")]
    pub redis_key_prefix: String,
    /// CIDRs whose `X-Forwarded-For`/`Forwarded` are believed.
    #[serde(default)]
    pub trusted_proxies: String,
    /// Requests of a premium caller (`tier: premium`), per `sub`.
    #[serde(default = "default_rate_limit_premium")]
    pub rate_limit_premium: String,
    /// Requests of a standard caller, per `sub`.
    #[serde(default = "default_rate_limit_standard")]
    pub rate_limit_standard: String,
    /// Requests without a token, per client IP; also the invalid tokens an
    /// IP may send before its bearer requests are refused unverified.
    #[serde(default = "default_rate_limit_anonymous")]
    pub rate_limit_anonymous: String,
    /// Searches (`GET /api/v2/notes?q=…`), per `sub`, on top of the tier.
    #[serde(default = "default_rate_limit_search")]
    pub rate_limit_search: String,
    /// The auth server's `REVOCATIONS_TOKEN`: with it, revoked users' and
    /// clients' tokens are refused within seconds (`shared::revocation`);
    /// unset: access tokens stay valid until they expire.
    #[serde(default)]
    pub revocations_token: Option<String>,
    /// Where the revocations are polled;
    /// `$AUTH_ISSUER/api/v2/revocations` when unset.
    #[serde(default)]
    pub revocations_url: Option<Url>,
    /// Poll interval (ms); 1000 without Redis, 15000 with it.
    #[serde(default)]
    pub revocations_poll_ms: Option<u64>,
    /// When `/api/v1` was (or will be) deprecated, RFC 3339: its
    /// `Deprecation` header (`crate::http::versions`).
    #[serde(default = "default_api_v1_deprecation")]
    pub api_v1_deprecation: String,
    /// When `/api/v1` ends, RFC 3339: its `Sunset` header before, `410 Gone`
    /// from then on.
    #[serde(default = "default_api_v1_sunset")]
    pub api_v1_sunset: String,
    /// Where clients of `/api/v1` read how to move to `/api/v2`: the
    /// `Link: <…>; rel="deprecation"` target (https, or http on loopback).
    #[serde(default = "default_api_v1_migration_guide")]
    pub api_v1_migration_guide: String,
    /// Verified access tokens remembered until their `exp` (a repeated
    /// token costs a lookup, not an RSA verification); 0: no cache. At
    /// most [`MAX_VERIFY_CACHE_SIZE`].
    #[serde(default = "default_verify_cache_size")]
    pub verify_cache_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/portcullis.db?mode=rwc".into(),
            database_acquire_timeout_ms: default_acquire_timeout_ms(),
            database_statement_timeout_ms: default_statement_timeout_ms(),
            resource_listen: "127.0.0.1:8081".into(),
            resource_audience: shared::contract::DEFAULT_AUDIENCE.into(),
            auth_issuer: "http://127.0.0.1:8080".into(),
            jwks_url: None,
            auth_public_keys: None,
            cors_allowed_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
            trust_proxy_tls: false,
            http_header_timeout_secs: shared::serve::DEFAULT_HEADER_TIMEOUT_SECS,
            http_idle_timeout_secs: shared::serve::DEFAULT_IDLE_TIMEOUT_SECS,
            http_request_timeout_secs: shared::serve::DEFAULT_REQUEST_TIMEOUT_SECS,
            http_max_connections: shared::serve::DEFAULT_MAX_CONNECTIONS,
            shutdown_grace_secs: shared::serve::DEFAULT_SHUTDOWN_GRACE_SECS,
            shutdown_drain_delay_secs: shared::serve::default_drain_delay_secs(),
            redis_url: None,
            metrics_listen: None,
            metrics_token: None,
            redis_key_prefix: default_redis_key_prefix(),
            trusted_proxies: String::new(),
            rate_limit_premium: default_rate_limit_premium(),
            rate_limit_standard: default_rate_limit_standard(),
            rate_limit_anonymous: default_rate_limit_anonymous(),
            rate_limit_search: default_rate_limit_search(),
            revocations_token: None,
            revocations_url: None,
            revocations_poll_ms: None,
            api_v1_deprecation: default_api_v1_deprecation(),
            api_v1_sunset: default_api_v1_sunset(),
            api_v1_migration_guide: default_api_v1_migration_guide(),
            verify_cache_size: default_verify_cache_size(),
        }
    }
}

fn default_verify_cache_size() -> usize {
    shared::jwt::DEFAULT_VERIFY_CACHE_SIZE
}

/// Most entries of the verified-token cache (`VERIFY_CACHE_SIZE`): about
/// 1 GiB at the ~1 KiB an entry takes.
pub const MAX_VERIFY_CACHE_SIZE: usize = 1_000_000;

fn default_redis_key_prefix() -> String {
    shared::limit::DEFAULT_KEY_PREFIX.into()
}

fn default_acquire_timeout_ms() -> u64 {
    migrations::db::DEFAULT_ACQUIRE_TIMEOUT_MS
}

fn default_statement_timeout_ms() -> u64 {
    migrations::db::DEFAULT_STATEMENT_TIMEOUT_MS
}

fn default_rate_limit_premium() -> String {
    "1000/minute".into()
}

fn default_rate_limit_standard() -> String {
    "100/minute".into()
}

fn default_rate_limit_anonymous() -> String {
    "10/minute".into()
}

fn default_rate_limit_search() -> String {
    "20/minute".into()
}

/// The release's `/api/v1` dates and guide; a deployment overrides them
/// with `API_V1_DEPRECATION`, `API_V1_SUNSET`, `API_V1_MIGRATION_GUIDE`.
pub const DEFAULT_API_V1_DEPRECATION: &str = "2026-01-01T00:00:00Z";
pub const DEFAULT_API_V1_SUNSET: &str = "2027-07-01T00:00:00Z";
pub const DEFAULT_API_V1_MIGRATION_GUIDE: &str =
    "https://portcullis.example/docs/migrating-from-api-v1";

fn default_api_v1_deprecation() -> String {
    DEFAULT_API_V1_DEPRECATION.into()
}

fn default_api_v1_sunset() -> String {
    DEFAULT_API_V1_SUNSET.into()
}

fn default_api_v1_migration_guide() -> String {
    DEFAULT_API_V1_MIGRATION_GUIDE.into()
}

/// The deprecated `/api/v1`, parsed and checked (`Settings::api_v1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiV1Settings {
    /// `API_V1_DEPRECATION`.
    pub deprecation: OffsetDateTime,
    /// `API_V1_SUNSET`, after `deprecation`.
    pub sunset: OffsetDateTime,
    /// `API_V1_MIGRATION_GUIDE`: https, or http on loopback.
    pub migration_guide: Url,
}

/// An RFC 3339 time of `variable`, or a start error naming it.
fn rfc3339_setting(variable: &str, value: &str) -> anyhow::Result<OffsetDateTime> {
    OffsetDateTime::parse(value.trim(), &Rfc3339).map_err(|_| {
        shared::startup::fix(
            anyhow::anyhow!("{variable} {value:?} is not an RFC 3339 time"),
            format!("Set {variable} like 2027-07-01T00:00:00Z"),
        )
    })
}

/// The rate limits, parsed (`crate::http::limits`). Rule names key the
/// buckets, so that premium and standard callers never share one.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub trusted_proxies: Arc<TrustedProxies>,
    /// `RATE_LIMIT_PREMIUM`, per caller.
    pub premium: Rule,
    /// `RATE_LIMIT_STANDARD`, per caller.
    pub standard: Rule,
    /// `RATE_LIMIT_ANONYMOUS`, per client IP.
    pub anonymous: Rule,
    /// `RATE_LIMIT_SEARCH`, per caller.
    pub search: Rule,
    /// Invalid bearer tokens per client IP (`RATE_LIMIT_ANONYMOUS`): at the
    /// max, bearer requests from that IP are refused before verification.
    pub invalid_tokens: Window,
}

impl LimitSettings {
    /// The bucket of a caller of `tier`.
    pub fn tier(&self, tier: Tier) -> &Rule {
        match tier {
            Tier::Premium => &self.premium,
            Tier::Standard => &self.standard,
        }
    }
}

fn rule(name: &'static str, setting: &str, value: &str) -> anyhow::Result<Rule> {
    let (limit, period) = shared::config::parse_rate(setting, value)?;
    Ok(Rule {
        name,
        limit,
        period,
    })
}

/// Where the verifier's keys come from, resolved from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysFrom {
    PemDir(PathBuf),
    Jwks(Url),
}

impl Settings {
    /// Defaults < `file` (when given) < environment.
    /// Refuses a variable of a feature not built yet
    /// (`shared::startup::UNBUILT_VARS`); `AUTH_ISSUER` comes out in its
    /// normal form (`shared::config::normalize_issuer`), the auth server's.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        shared::startup::refuse_unbuilt_env_vars()?;
        let mut settings: Self = shared::config::load(file, ENV_VARS)?;
        settings.auth_issuer = shared::config::normalize_issuer(&settings.auth_issuer)?;
        settings.listen_addr()?;
        // `REDIS_URL=` (blank) means unset.
        if settings
            .redis_url
            .as_deref()
            .is_some_and(|url| url.trim().is_empty())
        {
            settings.redis_url = None;
        }
        settings.db_deadlines()?;
        settings.http()?;
        settings.metrics()?;
        shared::http::parse_cors_origins(&settings.cors_allowed_origins)?;
        settings.check_redis_url()?;
        settings.limits()?;
        settings.keys_from()?;
        settings.revocations()?;
        settings.tls_files()?;
        settings.api_v1()?;
        settings.verify_cache_size()?;
        Ok(settings)
    }

    /// `RESOURCE_LISTEN` as an address, a host name (`localhost:0`) resolved.
    pub fn listen_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        shared::startup::resolve_listen("RESOURCE_LISTEN", &self.resource_listen)
    }

    /// `TLS_CERT` and `TLS_KEY`: both (HTTPS) or neither. The files are read
    /// by `Application::build`.
    pub fn tls_files(&self) -> anyhow::Result<Option<shared::tls::TlsFiles>> {
        shared::tls::TlsFiles::from_settings(self.tls_cert.as_deref(), self.tls_key.as_deref())
    }

    /// `REDIS_URL`, when set, is a URL of a scheme the redis crate opens
    /// (`redis://`, `rediss://`, a Unix socket, their `valkey` spellings);
    /// the limiter reports anything subtler at start.
    fn check_redis_url(&self) -> anyhow::Result<()> {
        let Some(raw) = &self.redis_url else {
            return Ok(());
        };
        let url = Url::parse(raw).map_err(|_| anyhow::anyhow!("REDIS_URL is not a URL"))?;
        if !matches!(
            url.scheme(),
            "redis" | "rediss" | "redis+unix" | "unix" | "valkey" | "valkeys" | "valkey+unix"
        ) {
            anyhow::bail!("REDIS_URL must be a redis://, rediss:// or unix:// URL");
        }
        Ok(())
    }

    /// The rate limits and trusted proxies, parsed and checked.
    pub fn limits(&self) -> anyhow::Result<LimitSettings> {
        let anonymous = rule(
            "anonymous",
            "RATE_LIMIT_ANONYMOUS",
            &self.rate_limit_anonymous,
        )?;
        let invalid_tokens = Window {
            name: "invalid_tokens",
            max: anonymous.limit,
            window: anonymous.period,
        };
        Ok(LimitSettings {
            trusted_proxies: Arc::new(TrustedProxies::parse(&self.trusted_proxies)?),
            premium: rule("premium", "RATE_LIMIT_PREMIUM", &self.rate_limit_premium)?,
            standard: rule("standard", "RATE_LIMIT_STANDARD", &self.rate_limit_standard)?,
            anonymous,
            search: rule("search", "RATE_LIMIT_SEARCH", &self.rate_limit_search)?,
            invalid_tokens,
        })
    }

    /// `API_V1_DEPRECATION`, `API_V1_SUNSET` and `API_V1_MIGRATION_GUIDE`,
    /// parsed and checked: RFC 3339 times, the sunset after the
    /// deprecation, the guide an https URL (http on loopback) without
    /// userinfo.
    pub fn api_v1(&self) -> anyhow::Result<ApiV1Settings> {
        let deprecation = rfc3339_setting("API_V1_DEPRECATION", &self.api_v1_deprecation)?;
        let sunset = rfc3339_setting("API_V1_SUNSET", &self.api_v1_sunset)?;
        if sunset <= deprecation {
            return Err(shared::startup::fix(
                anyhow::anyhow!(
                    "API_V1_SUNSET {:?} is not after API_V1_DEPRECATION {:?}",
                    self.api_v1_sunset,
                    self.api_v1_deprecation
                ),
                "Set API_V1_SUNSET later than API_V1_DEPRECATION",
            ));
        }
        let raw = self.api_v1_migration_guide.trim();
        let guide_fix = "Set API_V1_MIGRATION_GUIDE to the https URL of the migration guide";
        let migration_guide = Url::parse(raw).map_err(|_| {
            shared::startup::fix(
                anyhow::anyhow!("API_V1_MIGRATION_GUIDE {raw:?} is not a URL"),
                guide_fix,
            )
        })?;
        let https = migration_guide.scheme() == "https"
            || (migration_guide.scheme() == "http"
                && shared::config::is_loopback_host(&migration_guide));
        if !https {
            return Err(shared::startup::fix(
                anyhow::anyhow!(
                    "API_V1_MIGRATION_GUIDE {raw:?} is not https (http only on loopback)"
                ),
                guide_fix,
            ));
        }
        if !migration_guide.username().is_empty() || migration_guide.password().is_some() {
            return Err(shared::startup::fix(
                anyhow::anyhow!("API_V1_MIGRATION_GUIDE holds a user name or password"),
                guide_fix,
            ));
        }
        Ok(ApiV1Settings {
            deprecation,
            sunset,
            migration_guide,
        })
    }

    /// `VERIFY_CACHE_SIZE`, checked: at most [`MAX_VERIFY_CACHE_SIZE`].
    pub fn verify_cache_size(&self) -> anyhow::Result<usize> {
        if self.verify_cache_size > MAX_VERIFY_CACHE_SIZE {
            return Err(shared::startup::fix(
                anyhow::anyhow!(
                    "VERIFY_CACHE_SIZE {} is over {MAX_VERIFY_CACHE_SIZE}",
                    self.verify_cache_size
                ),
                format!(
                    "Set VERIFY_CACHE_SIZE between 0 (no cache) and {MAX_VERIFY_CACHE_SIZE}; the default is {}",
                    shared::jwt::DEFAULT_VERIFY_CACHE_SIZE
                ),
            ));
        }
        Ok(self.verify_cache_size)
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

    /// The revocations feed (`REVOCATIONS_TOKEN`, `REVOCATIONS_URL`,
    /// `REVOCATIONS_POLL_MS`); None when `REVOCATIONS_TOKEN` is unset.
    pub fn revocations(&self) -> anyhow::Result<Option<shared::revocation_feed::FeedSettings>> {
        crate::revocations::feed_settings(self)
    }

    /// `AUTH_PUBLIC_KEYS` when set, else `JWKS_URL`, else the issuer's JWKS.
    /// A JWKS URL must be https, or http on loopback, without userinfo
    /// (`shared::jwt::check_jwks_url`); the error names the setting it
    /// came from.
    pub fn keys_from(&self) -> anyhow::Result<KeysFrom> {
        if let Some(dir) = &self.auth_public_keys {
            return Ok(KeysFrom::PemDir(dir.clone()));
        }
        if let Some(url) = &self.jwks_url {
            check_jwks_url(url).map_err(|e| anyhow::anyhow!("JWKS_URL {e}"))?;
            return Ok(KeysFrom::Jwks(url.clone()));
        }
        let issuer = shared::config::normalize_issuer(&self.auth_issuer)?;
        let url = Url::parse(&format!("{issuer}{DEFAULT_JWKS_SUFFIX}"))
            .with_context(|| format!("AUTH_ISSUER {:?} is not a URL", self.auth_issuer))?;
        check_jwks_url(&url).map_err(|e| {
            anyhow::anyhow!(
                "AUTH_ISSUER {e}: the JWKS is fetched from $AUTH_ISSUER{DEFAULT_JWKS_SUFFIX} \
                 unless JWKS_URL or AUTH_PUBLIC_KEYS is set"
            )
        })?;
        Ok(KeysFrom::Jwks(url))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    String(String),
    List(Vec<String>),
}

fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match StringOrList::deserialize(deserializer)? {
        StringOrList::String(s) => shared::config::split_list(&s),
        StringOrList::List(list) => list
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_defaults_to_issuer_jwks() {
        let settings = Settings::default();
        assert_eq!(
            settings.keys_from().unwrap(),
            KeysFrom::Jwks(Url::parse("http://127.0.0.1:8080/.well-known/jwks.json").unwrap())
        );
    }

    #[test]
    fn keys_from_prefers_pem_dir_over_jwks_url() {
        let settings = Settings {
            jwks_url: Some(Url::parse("https://auth.example/jwks").unwrap()),
            auth_public_keys: Some(PathBuf::from("/keys")),
            ..Settings::default()
        };
        assert_eq!(
            settings.keys_from().unwrap(),
            KeysFrom::PemDir(PathBuf::from("/keys"))
        );
    }

    #[test]
    fn load_reads_comma_separated_origins_from_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "cors_allowed_origins = \"https://a.example, https://b.example\"\nresource_listen = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&path)).unwrap();
        assert_eq!(
            settings.cors_allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
        assert_eq!(settings.resource_listen, "127.0.0.1:0");
    }

    #[test]
    fn load_rejects_cors_origins_that_are_not_exact_origins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (value, why) in [
            ("\"*\"", "wildcard"),
            ("\"https://a.example, null\"", "`null`"),
            ("[\"https://a.example/\"]", "not a bare origin"),
            ("\"http://a.example\"", "http off loopback"),
            ("\"ftp://a.example\"", "has scheme"),
        ] {
            std::fs::write(&path, format!("cors_allowed_origins = {value}\n")).unwrap();
            let error = format!("{:#}", Settings::load(Some(&path)).unwrap_err());
            assert!(error.contains("CORS_ALLOWED_ORIGINS"), "{value}: {error}");
            assert!(error.contains(why), "{value}: {error}");
        }
    }

    #[test]
    fn load_rejects_unknown_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "resource_listn = \"127.0.0.1:0\"\n").unwrap();
        assert!(Settings::load(Some(&path)).is_err());
    }

    #[test]
    fn load_reads_http_settings_and_rejects_them_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "http_idle_timeout_secs = 5\nhttp_max_connections = 20\n",
        )
        .unwrap();
        let http = Settings::load(Some(&path)).unwrap().http().unwrap();
        assert_eq!(http.idle_timeout, std::time::Duration::from_secs(5));
        assert_eq!(http.max_connections, 20);
        assert_eq!(http.header_timeout, std::time::Duration::from_secs(10));

        std::fs::write(&path, "http_header_timeout_secs = 0\n").unwrap();
        let error = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(error.contains("HTTP_HEADER_TIMEOUT_SECS"), "{error}");
    }

    #[test]
    fn limits_default_to_documented_rates() {
        let limits = Settings::default().limits().unwrap();
        let minute = std::time::Duration::from_secs(60);
        for (rule, name, limit) in [
            (&limits.premium, "premium", 1000),
            (&limits.standard, "standard", 100),
            (&limits.anonymous, "anonymous", 10),
            (&limits.search, "search", 20),
        ] {
            assert_eq!((rule.name, rule.limit, rule.period), (name, limit, minute));
        }
        assert_eq!(limits.invalid_tokens.max, 10);
        assert_eq!(limits.invalid_tokens.window, minute);
        assert!(limits.trusted_proxies.is_empty());
        assert_eq!(limits.tier(Tier::Premium).name, "premium");
        assert_eq!(limits.tier(Tier::Standard).name, "standard");
    }

    #[test]
    fn load_reads_rate_limits_and_rejects_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "rate_limit_standard = \"3/minute\"\nrate_limit_anonymous = \"5/30s\"\ntrusted_proxies = \"10.0.0.0/8\"\nredis_url = \"redis://127.0.0.1:6379\"\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&path)).unwrap();
        assert_eq!(
            settings.redis_url.as_deref(),
            Some("redis://127.0.0.1:6379")
        );
        let limits = settings.limits().unwrap();
        assert_eq!(limits.standard.limit, 3);
        assert_eq!(limits.invalid_tokens.max, 5);
        assert_eq!(
            limits.invalid_tokens.window,
            std::time::Duration::from_secs(30)
        );
        assert!(!limits.trusted_proxies.is_empty());

        for (line, setting) in [
            ("rate_limit_search = \"often\"", "RATE_LIMIT_SEARCH"),
            ("rate_limit_premium = \"0/minute\"", "RATE_LIMIT_PREMIUM"),
            ("trusted_proxies = \"proxy.example\"", "TRUSTED_PROXIES"),
            ("redis_url = \"http://127.0.0.1:6379\"", "REDIS_URL"),
            ("redis_url = \"not a url\"", "REDIS_URL"),
        ] {
            std::fs::write(&path, format!("{line}\n")).unwrap();
            let error = format!("{:#}", Settings::load(Some(&path)).unwrap_err());
            assert!(error.contains(setting), "{line}: {error}");
        }
    }

    #[test]
    fn api_v1_defaults_parse_with_the_sunset_after_the_deprecation() {
        let v1 = Settings::default().api_v1().unwrap();
        assert_eq!(v1.deprecation.unix_timestamp(), 1_767_225_600);
        assert_eq!(v1.sunset.unix_timestamp(), 1_814_400_000);
        assert_eq!(v1.migration_guide.as_str(), DEFAULT_API_V1_MIGRATION_GUIDE);
    }

    #[test]
    fn load_reads_api_v1_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "api_v1_deprecation = \"2025-06-01T12:00:00+02:00\"\napi_v1_sunset = \"2025-12-01T00:00:00Z\"\napi_v1_migration_guide = \"http://127.0.0.1:3000/guide\"\n",
        )
        .unwrap();
        let v1 = Settings::load(Some(&path)).unwrap().api_v1().unwrap();
        assert_eq!(v1.deprecation.unix_timestamp(), 1_748_772_000);
        assert_eq!(v1.sunset.unix_timestamp(), 1_764_547_200);
        assert_eq!(v1.migration_guide.as_str(), "http://127.0.0.1:3000/guide");
    }

    #[test]
    fn api_v1_rejects_bad_dates_and_guides_with_one_line_naming_the_variable() {
        for (deprecation, sunset, guide, expected) in [
            (
                "yesterday",
                DEFAULT_API_V1_SUNSET,
                DEFAULT_API_V1_MIGRATION_GUIDE,
                "API_V1_DEPRECATION \"yesterday\" is not an RFC 3339 time. Set API_V1_DEPRECATION like 2027-07-01T00:00:00Z",
            ),
            (
                DEFAULT_API_V1_DEPRECATION,
                "2027-07-01",
                DEFAULT_API_V1_MIGRATION_GUIDE,
                "API_V1_SUNSET \"2027-07-01\" is not an RFC 3339 time. Set API_V1_SUNSET like 2027-07-01T00:00:00Z",
            ),
            (
                "2027-01-01T00:00:00Z",
                "2026-01-01T00:00:00Z",
                DEFAULT_API_V1_MIGRATION_GUIDE,
                "API_V1_SUNSET \"2026-01-01T00:00:00Z\" is not after API_V1_DEPRECATION \"2027-01-01T00:00:00Z\". Set API_V1_SUNSET later than API_V1_DEPRECATION",
            ),
            (
                "2027-01-01T00:00:00Z",
                "2027-01-01T01:00:00+01:00",
                DEFAULT_API_V1_MIGRATION_GUIDE,
                "is not after API_V1_DEPRECATION",
            ),
            (
                DEFAULT_API_V1_DEPRECATION,
                DEFAULT_API_V1_SUNSET,
                "docs/migrating.md",
                "API_V1_MIGRATION_GUIDE \"docs/migrating.md\" is not a URL. Set API_V1_MIGRATION_GUIDE to the https URL of the migration guide",
            ),
            (
                DEFAULT_API_V1_DEPRECATION,
                DEFAULT_API_V1_SUNSET,
                "http://docs.example/guide",
                "API_V1_MIGRATION_GUIDE \"http://docs.example/guide\" is not https (http only on loopback)",
            ),
            (
                DEFAULT_API_V1_DEPRECATION,
                DEFAULT_API_V1_SUNSET,
                "javascript:alert(1)",
                "is not https",
            ),
            (
                DEFAULT_API_V1_DEPRECATION,
                DEFAULT_API_V1_SUNSET,
                "https://user:hunter2@docs.example/guide",
                "API_V1_MIGRATION_GUIDE holds a user name or password",
            ),
        ] {
            let settings = Settings {
                api_v1_deprecation: deprecation.into(),
                api_v1_sunset: sunset.into(),
                api_v1_migration_guide: guide.into(),
                ..Settings::default()
            };
            let line = shared::startup::one_line(&settings.api_v1().unwrap_err());
            assert!(line.contains(expected), "{line}");
            assert!(!line.contains("hunter2"), "{line}");
        }
    }

    #[test]
    fn load_refuses_bad_api_v1_settings_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "api_v1_sunset = \"2020-01-01T00:00:00Z\"\n").unwrap();
        let error = format!("{:#}", Settings::load(Some(&path)).unwrap_err());
        assert!(error.contains("API_V1_SUNSET"), "{error}");
    }

    #[test]
    fn load_reads_verify_cache_size_and_refuses_it_over_the_maximum() {
        assert_eq!(
            Settings::default().verify_cache_size().unwrap(),
            shared::jwt::DEFAULT_VERIFY_CACHE_SIZE
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for size in [0, 1, MAX_VERIFY_CACHE_SIZE] {
            std::fs::write(&path, format!("verify_cache_size = {size}\n")).unwrap();
            let settings = Settings::load(Some(&path)).unwrap();
            assert_eq!(settings.verify_cache_size().unwrap(), size);
        }
        for value in [
            (MAX_VERIFY_CACHE_SIZE + 1).to_string(),
            "-1".into(),
            "\"many\"".into(),
        ] {
            std::fs::write(&path, format!("verify_cache_size = {value}\n")).unwrap();
            let error = format!("{:#}", Settings::load(Some(&path)).unwrap_err());
            assert!(
                error.contains("verify_cache_size") || error.contains("VERIFY_CACHE_SIZE"),
                "{value}: {error}"
            );
        }
    }

    #[test]
    fn load_treats_blank_redis_url_as_unset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "redis_url = \" \"\n").unwrap();
        assert_eq!(Settings::load(Some(&path)).unwrap().redis_url, None);
    }
}
