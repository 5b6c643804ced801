use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::{Mutex, RwLock};

use super::ACCESS_TOKEN_TYP;
use super::cache::{self, TokenCache};
use super::claims::AccessTokenClaims;
use super::keys::{Jwks, PublicKey};

/// Least time between two JWKS fetches caused by unknown `kid`s after a
/// successful fetch (flood protection). Also the cap of the retry backoff.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Wait before the first retry after a failed JWKS fetch; it doubles with each
/// consecutive failure, up to [`MIN_REFETCH_INTERVAL`]. A success resets it.
pub const FETCH_RETRY_INITIAL: Duration = Duration::from_millis(250);

/// Longest wait for the TCP (and TLS) connection to the JWKS endpoint.
pub const JWKS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait for a whole JWKS fetch, connection included. Requests whose
/// token needs a fetch wait at most about this long.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest JWKS body the verifier reads: 64 KiB. A bigger one (announced by
/// `Content-Length` or found while reading, chunked or not) fails the fetch
/// without more than this being buffered. [`MAX_JWKS_KEYS`] 4096-bit RSA
/// keys take about 26 KiB.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// How long fetched keys are trusted before the verifier refetches the JWKS
/// on its own (not only for an unknown `kid`) when the response has no
/// usable `Cache-Control: max-age`; a removed key stops verifying after it.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// Bounds of the JWKS response's `max-age` the verifier honours.
pub const JWKS_MAX_AGE_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(30), Duration::from_secs(3600));

/// Most keys taken from one JWKS; usable keys past this many are ignored,
/// with a warning.
pub const MAX_JWKS_KEYS: usize = 32;

/// Most clock skew the verifier allows, whatever the settings ask for.
const MAX_LEEWAY: Duration = crate::contract::TOKEN_LEEWAY;

/// Longest `exp - iat` a verifier accepts when nothing better is known (the
/// resource API): four times the authorization server's default 15 minutes.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Where the verifier gets the public keys it trusts.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JWKS document, fetched and cached.
    JwksUrl(url::Url),
    /// A fixed set of keys (e.g. read from a folder of PEM files): fully offline.
    Static(Vec<PublicKey>),
}

impl KeySource {
    /// Every `*.pem` in the folder (public keys, or private keys whose public
    /// half is taken).
    pub fn from_pem_dir(dir: &Path) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                continue;
            }
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let key = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|pem| PublicKey::from_pem(pem).ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: not an RSA public key (found {})",
                        path.display(),
                        super::describe_pem(&bytes)
                    )
                })?;
            keys.push(key);
        }
        if keys.is_empty() {
            anyhow::bail!("no PEM keys in {}", dir.display());
        }
        Ok(Self::Static(keys))
    }
}

/// Why a JWKS URL is refused ([`check_jwks_url`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwksUrlError {
    #[error("must be https, or http on a loopback host (127.0.0.0/8, ::1, localhost)")]
    Scheme,
    #[error("must not contain a user name or password")]
    Userinfo,
}

/// A JWKS URL the verifier may fetch: https, or http on a loopback host
/// ([`crate::config::is_loopback_host`]), and no userinfo. Keys fetched in
/// clear text over a network could be swapped by anyone on the path.
pub fn check_jwks_url(url: &url::Url) -> Result<(), JwksUrlError> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(JwksUrlError::Userinfo);
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if crate::config::is_loopback_host(url) => Ok(()),
        _ => Err(JwksUrlError::Scheme),
    }
}

#[derive(Debug, Clone)]
pub struct VerifierSettings {
    pub issuer: String,
    pub audience: String,
    /// Clock skew allowed on `exp`/`nbf`/`iat`, at most 60 s.
    pub leeway: Duration,
    /// Longest lifetime (`exp - iat`, whole seconds) a token may claim; a
    /// longer one is forged or misissued. At least one second.
    pub max_lifetime: Duration,
    pub source: KeySource,
    /// Verified tokens remembered until their `exp`, so that a repeated
    /// token costs a lookup instead of an RSA verification
    /// ([`super::DEFAULT_VERIFY_CACHE_SIZE`] is a good size); 0: no cache.
    pub cache_size: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("token type is not at+jwt")]
    Type,
    #[error("unknown signing key")]
    UnknownKey,
    /// The token's key is not known here and the JWKS cannot be fetched
    /// (its last fetch failed): the token may well be valid, so this is the
    /// verifier's failure (a 503), not the token's (a 401).
    #[error("signing keys unavailable")]
    KeysUnavailable,
    /// The header has a `crit` member; we understand no extension
    /// (RFC 7515 §4.1.11).
    #[error("critical header extension not understood")]
    CriticalHeader,
    /// `iat` is later than now plus the leeway.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `exp - iat` is longer than the configured maximum.
    #[error("token lifetime too long")]
    LifetimeTooLong,
    #[error("token rejected: {0}")]
    Rejected(#[from] jsonwebtoken::errors::Error),
    /// Its user or client had its tokens revoked after it was issued
    /// ([`crate::revocation`]).
    #[error("token revoked")]
    Revoked,
}

/// A key the verifier trusts, with the JWK components it came from: a
/// refetch that changes them for a kid counts as removing that key.
struct TrustedKey {
    decoding: DecodingKey,
    /// Base64url modulus and exponent.
    n: String,
    e: String,
}

impl TrustedKey {
    fn new(n: &str, e: &str) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self {
            decoding: DecodingKey::from_rsa_components(n, e)?,
            n: n.to_owned(),
            e: e.to_owned(),
        })
    }
}

type Keys = HashMap<String, Arc<TrustedKey>>;

/// Whether a key of `old` is missing from `new` or changed there.
fn drops_a_key(old: &Keys, new: &Keys) -> bool {
    old.iter().any(|(kid, key)| {
        new.get(kid)
            .is_none_or(|other| other.n != key.n || other.e != key.e)
    })
}

/// When the JWKS was last fetched and how that went; guarded by the
/// single-flight mutex, so it changes only with a fetch.
#[derive(Debug, Default)]
struct FetchState {
    /// When the last fetch finished (not started: a fetch that timed out
    /// must not let the requests queued behind it fetch again at once).
    finished_at: Option<Instant>,
    /// Failed fetches since the last successful one.
    failures: u32,
}

impl FetchState {
    /// Whether a fetch may start at `now`: at once if none ever finished,
    /// after the retry backoff if the last one failed, and after
    /// [`MIN_REFETCH_INTERVAL`] if it succeeded.
    fn may_fetch(&self, now: Instant) -> bool {
        let Some(finished_at) = self.finished_at else {
            return true;
        };
        let wait = if self.failures == 0 {
            MIN_REFETCH_INTERVAL
        } else {
            retry_delay(self.failures)
        };
        now.saturating_duration_since(finished_at) >= wait
    }

    fn record(&mut self, succeeded: bool, now: Instant) {
        self.finished_at = Some(now);
        self.failures = if succeeded {
            0
        } else {
            self.failures.saturating_add(1)
        };
    }
}

/// Wait after `failures` consecutive failed fetches (at least one):
/// 250 ms, 500 ms, 1 s, … capped at [`MIN_REFETCH_INTERVAL`].
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FETCH_RETRY_INITIAL
        .saturating_mul(1 << doublings)
        .min(MIN_REFETCH_INTERVAL)
}

/// Offline access-token verifier with a JWKS cache. Accepts only RS256,
/// `typ=at+jwt`, no `crit` header, the configured `iss` and `aud`, unexpired
/// tokens not issued in the future, a lifetime within the maximum, and keys
/// from its source. Tokens it accepted are remembered until their `exp`
/// (`VerifierSettings::cache_size`; the rules are in `jwt/cache.rs`).
pub struct Verifier {
    validation: Validation,
    /// Seconds of clock skew, as in `validation.leeway`.
    leeway: i64,
    /// Longest accepted `exp - iat`, in seconds.
    max_lifetime: i64,
    source: KeySource,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// Single flight: held for the whole of a JWKS fetch, so at most one is
    /// in flight; requests queued behind it re-check the keys first.
    refetch: Mutex<FetchState>,
    /// Revocation records checked after the signature, when attached
    /// ([`Verifier::check_revocations`]).
    revocations: std::sync::OnceLock<Arc<crate::revocation::RevocationSet>>,
    /// When the fetched keys are due for a scheduled refresh (the JWKS
    /// response's bounded `max-age` after its fetch); none before a fetch.
    refresh_due: std::sync::Mutex<Option<Instant>>,
    /// Tokens verified before, by hash; none when `cache_size` is 0.
    cache: Option<TokenCache>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(settings: VerifierSettings) -> anyhow::Result<Self> {
        let leeway = settings.leeway.min(MAX_LEEWAY).as_secs();
        let max_lifetime = settings.max_lifetime.as_secs();
        if max_lifetime == 0 {
            anyhow::bail!("the maximum token lifetime must be at least one second");
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "iat"]);
        let mut keys = HashMap::new();
        match &settings.source {
            KeySource::Static(list) => {
                for key in list {
                    keys.insert(key.kid.clone(), Arc::new(trusted_key(key)?));
                }
            }
            KeySource::JwksUrl(url) => {
                check_jwks_url(url).map_err(|e| anyhow::anyhow!("the JWKS URL {e}"))?;
            }
        }
        let mut http = reqwest::Client::builder()
            .connect_timeout(JWKS_CONNECT_TIMEOUT)
            .timeout(JWKS_FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if matches!(settings.source, KeySource::JwksUrl(_)) {
            // A private CA of the authorization server (`SSL_CERT_FILE`).
            http = crate::tls::trust_ssl_cert_file(http)?;
        }
        let http = http.build().context("building HTTP client")?;
        Ok(Self {
            validation,
            leeway: i64::try_from(leeway).unwrap_or(0),
            max_lifetime: i64::try_from(max_lifetime).unwrap_or(i64::MAX),
            source: settings.source,
            http,
            keys: RwLock::new(keys),
            refetch: Mutex::new(FetchState::default()),
            revocations: std::sync::OnceLock::new(),
            refresh_due: std::sync::Mutex::new(None),
            cache: TokenCache::new(settings.cache_size),
        })
    }

    /// Whether any key is loaded (readiness).
    pub async fn has_keys(&self) -> bool {
        !self.keys.read().await.is_empty()
    }

    /// Fetches the JWKS now (no-op for a static source), after any fetch
    /// already in flight; the outcome counts for the retry backoff.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let KeySource::JwksUrl(url) = &self.source else {
            return Ok(());
        };
        let mut state = self.refetch.lock().await;
        self.fetch(url, &mut state).await
    }

    /// One fetch; the caller holds the single-flight lock (`state`).
    async fn fetch(&self, url: &url::Url, state: &mut FetchState) -> anyhow::Result<()> {
        let result = match self.fetch_keys(url).await {
            Ok((keys, max_age)) => {
                let mut current = self.keys.write().await;
                // Under the write lock: a verification that read the epoch
                // after the bump finds the new keys.
                if let Some(cache) = &self.cache
                    && drops_a_key(&current, &keys)
                {
                    cache.invalidate();
                }
                *current = keys;
                drop(current);
                if let Ok(mut due) = self.refresh_due.lock() {
                    *due = Some(Instant::now() + max_age);
                }
                Ok(())
            }
            Err(error) => Err(error),
        };
        state.record(result.is_ok(), Instant::now());
        crate::metrics::jwks_refreshed(result.is_ok());
        result
    }

    /// GETs the JWKS (no redirect followed, at most [`JWKS_FETCH_TIMEOUT`],
    /// at most [`MAX_JWKS_BYTES`] read) and keeps its usable keys.
    async fn fetch_keys(&self, url: &url::Url) -> anyhow::Result<(Keys, Duration)> {
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .context("fetching JWKS")?;
        let status = response.status();
        if !status.is_success() {
            // A 3xx included: redirects are not followed.
            anyhow::bail!("fetching JWKS: the server answered {status}");
        }
        let max_age = jwks_max_age(
            response
                .headers()
                .get(reqwest::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        );
        let body = read_capped(response, MAX_JWKS_BYTES).await?;
        let jwks: Jwks = serde_json::from_slice(&body).context("decoding JWKS")?;
        Ok((usable_keys(jwks), max_age))
    }

    /// The scheduled refresh: once the keys are older than the JWKS's
    /// `max-age`, one request refetches them (the others go on with the
    /// cached keys meanwhile); a failure keeps the cached keys and backs
    /// off as any failed fetch does. Whether this call fetched.
    async fn refresh_if_due(&self) -> bool {
        let KeySource::JwksUrl(url) = &self.source else {
            return false;
        };
        let due = self
            .refresh_due
            .lock()
            .ok()
            .and_then(|due| *due)
            .is_some_and(|due| Instant::now() >= due);
        if !due {
            return false;
        }
        let Ok(mut state) = self.refetch.try_lock() else {
            return false;
        };
        if !state.may_fetch(Instant::now()) {
            return false;
        }
        if let Err(error) = self.fetch(url, &mut state).await {
            tracing::warn!(
                error = %format!("{error:#}"),
                failures = state.failures,
                "scheduled JWKS refresh failed; keeping the cached keys"
            );
        }
        true
    }

    /// The key named `kid`: cached, or fetched now if the JWKS may be
    /// fetched. Not found: `UnknownKey` when the JWKS answered (the kid is
    /// not in it), `KeysUnavailable` when its last fetch failed.
    async fn key_for(&self, kid: &str) -> Result<Arc<TrustedKey>, VerifyError> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        let KeySource::JwksUrl(url) = &self.source else {
            return Err(VerifyError::UnknownKey);
        };
        // One fetch at a time. After a success an unknown kid refetches at
        // most every 30 s; after a failure the retry backs off from 250 ms.
        let mut state = self.refetch.lock().await;
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        if !state.may_fetch(Instant::now()) {
            return Err(Self::not_found(&state));
        }
        if let Err(error) = self.fetch(url, &mut state).await {
            tracing::warn!(
                error = %format!("{error:#}"),
                failures = state.failures,
                retry_in = ?retry_delay(state.failures),
                "JWKS refresh failed"
            );
        }
        match self.keys.read().await.get(kid) {
            Some(key) => Ok(key.clone()),
            None => Err(Self::not_found(&state)),
        }
    }

    fn not_found(state: &FetchState) -> VerifyError {
        if state.failures > 0 {
            VerifyError::KeysUnavailable
        } else {
            VerifyError::UnknownKey
        }
    }

    /// Verifies a compact JWS access token and returns its claims. A token
    /// verified before (same bytes, same key set, before its `exp`) is a
    /// cache hit: only its revocation is checked again.
    pub async fn verify(&self, token: &str) -> Result<AccessTokenClaims, VerifyError> {
        let Some((cache, key)) = self
            .cache
            .as_ref()
            .and_then(|cache| Some((cache, cache::token_key(token)?)))
        else {
            return self.verify_fresh(token).await;
        };
        let now = unix_now();
        let mut hit = cache.get(&key, now);
        // The scheduled JWKS refresh is due on hits too (the fresh path
        // does it for the others); one that drops a key ends the hit.
        if hit.is_some() && self.refresh_if_due().await {
            hit = cache.get(&key, now);
        }
        if let Some(claims) = hit {
            cache::count_lookup(true);
            self.check_revoked(&claims, now)?;
            return Ok(claims);
        }
        cache::count_lookup(false);
        let epoch = cache.epoch();
        let claims = self.verify_fresh(token).await?;
        cache.insert(key, &claims, epoch, unix_now());
        Ok(claims)
    }

    /// Every check on `token`, with the signature.
    async fn verify_fresh(&self, token: &str) -> Result<AccessTokenClaims, VerifyError> {
        reject_critical_header(token)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(VerifyError::Algorithm);
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::Type);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        self.refresh_if_due().await;
        let key = self.key_for(&kid).await?;
        let data =
            jsonwebtoken::decode::<AccessTokenClaims>(token, &key.decoding, &self.validation)?;
        check_issued_at(&data.claims, unix_now(), self.leeway, self.max_lifetime)?;
        self.check_revoked(&data.claims, unix_now())?;
        Ok(data.claims)
    }

    /// `Revoked` when a revocation record voids `claims` at `now`.
    fn check_revoked(&self, claims: &AccessTokenClaims, now: i64) -> Result<(), VerifyError> {
        if let Some(revocations) = self.revocations.get()
            && revocations.is_revoked(claims, now)
        {
            return Err(VerifyError::Revoked);
        }
        Ok(())
    }

    /// From now on, refuses tokens voided by a record of `set` (with
    /// [`VerifyError::Revoked`]). Attached once; a second call is ignored.
    pub fn check_revocations(&self, set: Arc<crate::revocation::RevocationSet>) {
        let _ = self.revocations.set(set);
    }
}

/// How long a JWKS response may be cached: its `Cache-Control: max-age`
/// within [`JWKS_MAX_AGE_BOUNDS`], else [`DEFAULT_JWKS_MAX_AGE`]
/// (`no-cache`/`no-store` count as the lower bound).
fn jwks_max_age(cache_control: Option<&str>) -> Duration {
    let Some(value) = cache_control else {
        return DEFAULT_JWKS_MAX_AGE;
    };
    let (low, high) = JWKS_MAX_AGE_BOUNDS;
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return low;
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            max_age = secs.trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age.map_or(DEFAULT_JWKS_MAX_AGE, |secs| {
        Duration::from_secs(secs).clamp(low, high)
    })
}

/// RFC 7515 §4.1.11: a recipient must reject a JWS whose `crit` lists an
/// extension it does not understand. We understand none, so any `crit`
/// member rejects, even an empty list or `null`. jsonwebtoken parses `crit`
/// but never acts on it (and reads `null` as absent), hence the raw JSON.
fn reject_critical_header(token: &str) -> Result<(), VerifyError> {
    let mut segments = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(VerifyError::Malformed);
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| VerifyError::Malformed)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&json).map_err(|_| VerifyError::Malformed)?;
    if header.contains_key("crit") {
        return Err(VerifyError::CriticalHeader);
    }
    Ok(())
}

/// `iat` at most `leeway` seconds ahead of `now`, and `exp - iat` at most
/// `max_lifetime` seconds (both set by the issuer's clock, so no leeway).
fn check_issued_at(
    claims: &AccessTokenClaims,
    now: i64,
    leeway: i64,
    max_lifetime: i64,
) -> Result<(), VerifyError> {
    if claims.iat > now.saturating_add(leeway) {
        return Err(VerifyError::IssuedInFuture);
    }
    if claims.exp.saturating_sub(claims.iat) > max_lifetime {
        return Err(VerifyError::LifetimeTooLong);
    }
    Ok(())
}

/// Seconds since the Unix epoch, from the same system clock jsonwebtoken
/// uses for `exp` and `nbf`.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The body of `response`, refused as soon as it is known to exceed `cap`
/// bytes: from `Content-Length` before reading, else while reading (the
/// length may be absent, with chunked encoding, or wrong), so that no more
/// than `cap` bytes are ever kept.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> anyhow::Result<Vec<u8>> {
    let too_large = || anyhow::anyhow!("JWKS larger than {} KiB", cap / 1024);
    let announced = response.content_length().unwrap_or(0);
    if announced > u64::try_from(cap).unwrap_or(u64::MAX) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.context("reading JWKS")? {
        if chunk.len() > cap - body.len() {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The RS256 signing keys of `jwks` by kid, at most [`MAX_JWKS_KEYS`] of
/// them (the first ones); other keys are skipped.
fn usable_keys(jwks: Jwks) -> Keys {
    let mut keys = HashMap::new();
    let mut ignored = 0_usize;
    for jwk in jwks.keys {
        let usable = jwk.kty == "RSA"
            && !jwk.kid.is_empty()
            && jwk.alg.as_deref().is_none_or(|a| a == "RS256")
            && jwk.use_.as_deref().is_none_or(|u| u == "sig");
        if !usable {
            continue;
        }
        if keys.len() >= MAX_JWKS_KEYS && !keys.contains_key(&jwk.kid) {
            ignored += 1;
            continue;
        }
        match TrustedKey::new(&jwk.n, &jwk.e) {
            Ok(key) => {
                keys.insert(jwk.kid, Arc::new(key));
            }
            Err(error) => tracing::warn!(%error, "skipping unusable JWK"),
        }
    }
    if ignored > 0 {
        tracing::warn!(
            ignored,
            max = MAX_JWKS_KEYS,
            "JWKS has more signing keys than the verifier uses; ignoring the rest"
        );
    }
    keys
}

fn trusted_key(key: &PublicKey) -> anyhow::Result<TrustedKey> {
    TrustedKey::new(&key.n, &key.e).context("unusable RSA public key")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::jwt::{ACCESS_TOKEN_TYP, DEFAULT_VERIFY_CACHE_SIZE, Jwk, PublicKey, Signer};
    use crate::test_util;

    const ISSUER: &str = "https://auth.example";
    const AUDIENCE: &str = "portcullis-api";
    const LEEWAY: Duration = Duration::from_secs(60);
    const THIRTY_YEARS: i64 = 30 * 365 * 24 * 3600;

    fn verifier(pem: &str) -> Verifier {
        Verifier::new(VerifierSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway: LEEWAY,
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            source: KeySource::Static(vec![PublicKey::from_pem(pem).unwrap()]),
            cache_size: DEFAULT_VERIFY_CACHE_SIZE,
        })
        .unwrap()
    }

    fn claims() -> AccessTokenClaims {
        test_util::claims(ISSUER, AUDIENCE, "alice", "notes:read")
    }

    /// The header the production `Signer` writes, as JSON to alter.
    fn standard_header(signer: &Signer) -> Value {
        json!({"alg": "RS256", "typ": ACCESS_TOKEN_TYP, "kid": signer.kid()})
    }

    /// An RS256 compact JWS over any header JSON, signed with `pem`.
    fn sign_with_header(pem: &str, header: &Value, claims: &AccessTokenClaims) -> String {
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
        let message = format!("{header}.{payload}");
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::RS256).unwrap();
        format!("{message}.{signature}")
    }

    #[tokio::test]
    async fn verify_accepts_token_when_signed_by_signer() {
        let pem = test_util::shared_private_key_pem();
        let claims = claims();
        let token = test_util::signer(pem).sign(&claims).unwrap();
        assert_eq!(verifier(pem).verify(&token).await.unwrap(), claims);
    }

    #[tokio::test]
    async fn verify_accepts_token_when_raw_header_has_no_crit() {
        // Control for the `crit` tests: the same hand-made header verifies.
        let pem = test_util::shared_private_key_pem();
        let header = standard_header(&test_util::signer(pem));
        let token = sign_with_header(pem, &header, &claims());
        assert!(verifier(pem).verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn verify_rejects_token_when_crit_header_present() {
        let pem = test_util::shared_private_key_pem();
        let mut header = standard_header(&test_util::signer(pem));
        header["crit"] = json!(["exp"]);
        header["exp"] = json!(test_util::now() + 60);
        let token = sign_with_header(pem, &header, &claims());
        let error = verifier(pem).verify(&token).await.unwrap_err();
        assert!(matches!(error, VerifyError::CriticalHeader), "{error:?}");
    }

    #[tokio::test]
    async fn verify_rejects_token_when_crit_header_empty_or_null() {
        let pem = test_util::shared_private_key_pem();
        let verifier = verifier(pem);
        for crit in [json!([]), Value::Null] {
            let mut header = standard_header(&test_util::signer(pem));
            header["crit"] = crit.clone();
            let token = sign_with_header(pem, &header, &claims());
            let error = verifier.verify(&token).await.unwrap_err();
            assert!(
                matches!(error, VerifyError::CriticalHeader),
                "crit {crit}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn verify_rejects_token_when_it_has_more_than_three_segments() {
        let pem = test_util::shared_private_key_pem();
        let token = test_util::signer(pem).sign(&claims()).unwrap();
        let error = verifier(pem)
            .verify(&format!("{token}.extra"))
            .await
            .unwrap_err();
        assert!(matches!(error, VerifyError::Malformed), "{error:?}");
    }

    #[tokio::test]
    async fn verify_rejects_token_when_issued_five_minutes_in_future() {
        let pem = test_util::shared_private_key_pem();
        let mut claims = claims();
        claims.iat = test_util::now() + 300;
        claims.exp = claims.iat + 900;
        let token = test_util::signer(pem).sign(&claims).unwrap();
        let error = verifier(pem).verify(&token).await.unwrap_err();
        assert!(matches!(error, VerifyError::IssuedInFuture), "{error:?}");
    }

    #[tokio::test]
    async fn verify_accepts_token_when_issued_in_future_within_leeway() {
        let pem = test_util::shared_private_key_pem();
        let mut claims = claims();
        claims.iat = test_util::now() + 30;
        claims.exp = claims.iat + 900;
        let token = test_util::signer(pem).sign(&claims).unwrap();
        assert_eq!(verifier(pem).verify(&token).await.unwrap(), claims);
    }

    #[tokio::test]
    async fn verify_rejects_token_when_lifetime_is_thirty_years() {
        let pem = test_util::shared_private_key_pem();
        let mut claims = claims();
        claims.exp = claims.iat + THIRTY_YEARS;
        let token = test_util::signer(pem).sign(&claims).unwrap();
        let error = verifier(pem).verify(&token).await.unwrap_err();
        assert!(matches!(error, VerifyError::LifetimeTooLong), "{error:?}");
    }

    #[tokio::test]
    async fn verify_accepts_token_when_lifetime_equals_maximum() {
        let pem = test_util::shared_private_key_pem();
        let mut claims = claims();
        claims.exp = claims.iat + DEFAULT_MAX_TOKEN_LIFETIME.as_secs() as i64;
        let token = test_util::signer(pem).sign(&claims).unwrap();
        assert_eq!(verifier(pem).verify(&token).await.unwrap(), claims);
    }

    #[tokio::test]
    async fn verify_rejects_token_when_lifetime_exceeds_maximum_by_one_second() {
        let pem = test_util::shared_private_key_pem();
        let mut claims = claims();
        claims.exp = claims.iat + DEFAULT_MAX_TOKEN_LIFETIME.as_secs() as i64 + 1;
        let token = test_util::signer(pem).sign(&claims).unwrap();
        let error = verifier(pem).verify(&token).await.unwrap_err();
        assert!(matches!(error, VerifyError::LifetimeTooLong), "{error:?}");
    }

    #[test]
    fn check_issued_at_rejects_lifetime_when_iat_is_far_in_past() {
        // exp - iat overflows i64: saturates and is still refused.
        let mut claims = claims();
        claims.iat = i64::MIN;
        let error = check_issued_at(&claims, claims.exp, 60, 3600).unwrap_err();
        assert!(matches!(error, VerifyError::LifetimeTooLong), "{error:?}");
    }

    #[test]
    fn check_issued_at_rejects_iat_when_one_second_past_leeway() {
        let claims = claims();
        assert!(check_issued_at(&claims, claims.iat - 60, 60, 3600).is_ok());
        let error = check_issued_at(&claims, claims.iat - 61, 60, 3600).unwrap_err();
        assert!(matches!(error, VerifyError::IssuedInFuture), "{error:?}");
    }

    #[test]
    fn retry_delay_doubles_from_250_ms_and_caps_at_refetch_interval() {
        let millis: Vec<u128> = (1..=9).map(|n| retry_delay(n).as_millis()).collect();
        assert_eq!(
            millis,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
        );
        assert_eq!(retry_delay(u32::MAX), MIN_REFETCH_INTERVAL);
    }

    #[test]
    fn fetch_state_backs_off_after_failures_and_success_resets_to_interval() {
        let t0 = Instant::now();
        let mut state = FetchState::default();
        assert!(state.may_fetch(t0), "never fetched: fetch at once");

        state.record(false, t0);
        assert!(!state.may_fetch(t0 + Duration::from_millis(249)));
        assert!(state.may_fetch(t0 + Duration::from_millis(250)));

        let t1 = t0 + Duration::from_millis(300);
        state.record(false, t1);
        assert!(!state.may_fetch(t1 + Duration::from_millis(499)));
        assert!(state.may_fetch(t1 + Duration::from_millis(500)));

        let t2 = t1 + Duration::from_secs(1);
        state.record(true, t2);
        assert_eq!(state.failures, 0);
        assert!(!state.may_fetch(t2 + MIN_REFETCH_INTERVAL - Duration::from_millis(1)));
        assert!(state.may_fetch(t2 + MIN_REFETCH_INTERVAL));

        // A failure after a success backs off from 250 ms again.
        let t3 = t2 + MIN_REFETCH_INTERVAL;
        state.record(false, t3);
        assert!(state.may_fetch(t3 + FETCH_RETRY_INITIAL));
    }

    /// A local JWKS endpoint that can be switched between up (the test key)
    /// and down (503), counting requests.
    struct JwksServer {
        url: url::Url,
        up: Arc<std::sync::atomic::AtomicBool>,
        fetches: Arc<std::sync::atomic::AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl JwksServer {
        async fn start(pem: &str, up: bool) -> Self {
            use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

            let jwks = Jwks {
                keys: vec![PublicKey::from_pem(pem).unwrap().to_jwk()],
            };
            let up = Arc::new(AtomicBool::new(up));
            let fetches = Arc::new(AtomicUsize::new(0));
            let (handler_up, handler_fetches) = (up.clone(), fetches.clone());
            let app = axum::Router::new().route(
                "/jwks",
                axum::routing::get(move || {
                    let (up, fetches, jwks) =
                        (handler_up.clone(), handler_fetches.clone(), jwks.clone());
                    async move {
                        use axum::response::IntoResponse;
                        fetches.fetch_add(1, Ordering::SeqCst);
                        if up.load(Ordering::SeqCst) {
                            axum::Json(jwks).into_response()
                        } else {
                            http::StatusCode::SERVICE_UNAVAILABLE.into_response()
                        }
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let task = tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Self {
                url: format!("http://{address}/jwks").parse().unwrap(),
                up,
                fetches,
                task,
            }
        }

        fn set_up(&self, up: bool) {
            self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        }

        fn fetches(&self) -> usize {
            self.fetches.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn verifier(&self) -> Verifier {
            Verifier::new(VerifierSettings {
                issuer: ISSUER.into(),
                audience: AUDIENCE.into(),
                leeway: LEEWAY,
                max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
                source: KeySource::JwksUrl(self.url.clone()),
                cache_size: DEFAULT_VERIFY_CACHE_SIZE,
            })
            .unwrap()
        }
    }

    impl Drop for JwksServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// A token signed with the test key but naming a kid nobody published.
    fn token_with_unknown_kid(pem: &str) -> String {
        let header = json!({"alg": "RS256", "typ": ACCESS_TOKEN_TYP, "kid": uuid::Uuid::new_v4().to_string()});
        sign_with_header(pem, &header, &claims())
    }

    #[tokio::test]
    async fn verifier_recovers_within_a_second_when_jwks_comes_back_after_a_failure() {
        let pem = test_util::shared_private_key_pem();
        let server = JwksServer::start(pem, false).await;
        let verifier = server.verifier();
        let token = test_util::signer(pem).sign(&claims()).unwrap();

        // The JWKS failed: the verifier cannot tell, which is not the
        // token's fault.
        let error = verifier.verify(&token).await.unwrap_err();
        assert!(matches!(error, VerifyError::KeysUnavailable), "{error:?}");
        assert_eq!(server.fetches(), 1);

        server.set_up(true);
        let back_up = Instant::now();
        let deadline = back_up + Duration::from_secs(1);
        loop {
            match verifier.verify(&token).await {
                Ok(_) => break,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "still refused {:?} after the JWKS came back: {error:?}",
                        back_up.elapsed()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        // The polling did not hammer the endpoint: the failure, then the retry.
        assert_eq!(server.fetches(), 2);
        assert!(verifier.has_keys().await);
    }

    #[tokio::test]
    async fn verifier_backs_off_between_failed_fetches() {
        let pem = test_util::shared_private_key_pem();
        let server = JwksServer::start(pem, false).await;
        let verifier = server.verifier();
        let token = test_util::signer(pem).sign(&claims()).unwrap();

        // Back to back: one fetch, then the backoff holds.
        for _ in 0..50 {
            assert!(verifier.verify(&token).await.is_err());
        }
        assert_eq!(server.fetches(), 1);

        // Keep asking for 600 ms: one retry after 250 ms, the next would
        // be 500 ms after that.
        let start = Instant::now();
        let mut calls = 0;
        while start.elapsed() < Duration::from_millis(600) {
            assert!(verifier.verify(&token).await.is_err());
            calls += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(calls >= 50, "only {calls} calls");
        let fetches = server.fetches();
        assert!((2..=3).contains(&fetches), "{fetches} fetches");
        assert!(!verifier.has_keys().await);
    }

    #[tokio::test]
    async fn verifier_refetches_for_unknown_kid_at_most_once_per_interval_after_success() {
        let pem = test_util::shared_private_key_pem();
        let server = JwksServer::start(pem, true).await;
        let verifier = Arc::new(server.verifier());
        let token = test_util::signer(pem).sign(&claims()).unwrap();
        verifier.verify(&token).await.unwrap();
        assert_eq!(server.fetches(), 1, "the initial fetch");

        // Fresh keys: concurrent unknown kids fetch nothing.
        let unknown_kids = |verifier: &Arc<Verifier>| {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..50 {
                let (verifier, token) = (verifier.clone(), token_with_unknown_kid(pem));
                tasks.spawn(async move { verifier.verify(&token).await });
            }
            tasks
        };
        for result in unknown_kids(&verifier).join_all().await {
            assert!(matches!(result, Err(VerifyError::UnknownKey)), "{result:?}");
        }
        assert_eq!(server.fetches(), 1);

        // Once the interval has passed (the last fetch backdated rather
        // than waited for), the flood refetches exactly once, then the
        // cache is fresh again.
        let backdated = Instant::now().checked_sub(MIN_REFETCH_INTERVAL).unwrap();
        verifier.refetch.lock().await.finished_at = Some(backdated);
        for result in unknown_kids(&verifier).join_all().await {
            assert!(matches!(result, Err(VerifyError::UnknownKey)), "{result:?}");
        }
        assert_eq!(server.fetches(), 2);
        verifier.verify(&token).await.unwrap();
        assert_eq!(server.fetches(), 2);
    }

    #[test]
    fn new_rejects_settings_when_max_lifetime_is_under_one_second() {
        let pem = test_util::shared_private_key_pem();
        let result = Verifier::new(VerifierSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway: LEEWAY,
            max_lifetime: Duration::from_millis(999),
            source: KeySource::Static(vec![PublicKey::from_pem(pem).unwrap()]),
            cache_size: DEFAULT_VERIFY_CACHE_SIZE,
        });
        assert!(result.is_err());
    }

    #[test]
    fn check_jwks_url_accepts_https_or_loopback_http_without_userinfo() {
        for (url, expected) in [
            ("https://auth.example/jwks.json", Ok(())),
            ("https://10.0.0.1/jwks.json", Ok(())),
            ("http://127.0.0.1:1/jwks.json", Ok(())),
            ("http://127.8.9.10/jwks.json", Ok(())),
            ("http://[::1]:8080/jwks.json", Ok(())),
            ("http://localhost:8080/jwks.json", Ok(())),
            ("http://jwks.example/jwks.json", Err(JwksUrlError::Scheme)),
            ("http://10.0.0.1/jwks.json", Err(JwksUrlError::Scheme)),
            ("http://169.254.169.254/jwks", Err(JwksUrlError::Scheme)),
            ("http://[::ffff:127.0.0.1]/jwks", Err(JwksUrlError::Scheme)),
            ("http://localhost.example/jwks", Err(JwksUrlError::Scheme)),
            ("ftp://127.0.0.1/jwks.json", Err(JwksUrlError::Scheme)),
            ("file:///etc/jwks.json", Err(JwksUrlError::Scheme)),
            ("https://user:pw@x.example/j", Err(JwksUrlError::Userinfo)),
            ("https://user@x.example/j", Err(JwksUrlError::Userinfo)),
            ("http://user:pw@127.0.0.1/j", Err(JwksUrlError::Userinfo)),
        ] {
            let parsed = url::Url::parse(url).unwrap();
            assert_eq!(check_jwks_url(&parsed), expected, "{url}");
        }
    }

    #[test]
    fn new_rejects_jwks_url_when_http_off_loopback() {
        let error = Verifier::new(VerifierSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway: LEEWAY,
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            source: KeySource::JwksUrl("http://jwks.example/jwks.json".parse().unwrap()),
            cache_size: DEFAULT_VERIFY_CACHE_SIZE,
        })
        .unwrap_err();
        assert!(error.to_string().contains("https"), "{error}");
    }

    #[test]
    fn usable_keys_keeps_at_most_max_jwks_keys() {
        let pem = test_util::shared_private_key_pem();
        let jwk = PublicKey::from_pem(pem).unwrap().to_jwk();
        let keys = (0..MAX_JWKS_KEYS + 8)
            .map(|i| Jwk {
                kid: format!("k{i}"),
                ..jwk.clone()
            })
            .collect();
        let keys = usable_keys(Jwks { keys });
        assert_eq!(keys.len(), MAX_JWKS_KEYS);
        assert!(keys.contains_key("k0"));
        assert!(keys.contains_key(&format!("k{}", MAX_JWKS_KEYS - 1)));
        assert!(!keys.contains_key(&format!("k{MAX_JWKS_KEYS}")));
    }

    #[test]
    fn jwks_max_age_honours_cache_control_within_bounds() {
        for (header, secs) in [
            (None, 300),
            (Some("public, max-age=120"), 120),
            (Some("max-age=5"), 30),
            (Some("max-age=86400, public"), 3600),
            (Some("public"), 300),
            (Some("max-age=abc"), 300),
            (Some("no-store"), 30),
            (Some("No-Cache, max-age=600"), 30),
        ] {
            assert_eq!(
                jwks_max_age(header),
                Duration::from_secs(secs),
                "{header:?}"
            );
        }
    }

    #[tokio::test]
    async fn verifier_stops_trusting_removed_key_after_scheduled_refresh() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pem = test_util::shared_private_key_pem();
        let jwks = Arc::new(std::sync::Mutex::new(Jwks {
            keys: vec![PublicKey::from_pem(pem).unwrap().to_jwk()],
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (jwks.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (served, counted) = (served.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let jwks = served.lock().unwrap().clone();
                    (
                        [(http::header::CACHE_CONTROL, "public, max-age=60")],
                        axum::Json(jwks),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let verifier = Verifier::new(VerifierSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway: LEEWAY,
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            source: KeySource::JwksUrl(format!("http://{address}/jwks").parse().unwrap()),
            cache_size: DEFAULT_VERIFY_CACHE_SIZE,
        })
        .unwrap();
        let token = test_util::signer(pem).sign(&claims()).unwrap();
        verifier.verify(&token).await.unwrap();
        let due = verifier.refresh_due.lock().unwrap().unwrap();
        let in_60s = Instant::now() + Duration::from_secs(60);
        assert!(
            due <= in_60s && due + Duration::from_secs(5) > in_60s,
            "max-age honoured"
        );

        // The key leaves the JWKS: still trusted until the refresh is due.
        jwks.lock().unwrap().keys.clear();
        verifier.verify(&token).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        // Due (backdated rather than waited for): the next verification
        // refetches and the removed key no longer verifies.
        let backdated = Instant::now().checked_sub(MIN_REFETCH_INTERVAL).unwrap();
        verifier.refetch.lock().await.finished_at = Some(backdated);
        *verifier.refresh_due.lock().unwrap() = Some(backdated);
        let error = verifier.verify(&token).await.unwrap_err();
        assert!(matches!(error, VerifyError::UnknownKey), "{error:?}");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        task.abort();
    }

    /// A response with `body` and its `Content-Length`.
    fn response_of(body: Vec<u8>) -> reqwest::Response {
        reqwest::Response::from(http::Response::new(body))
    }

    #[tokio::test]
    async fn read_capped_reads_cap_bytes_and_refuses_one_more() {
        let body = read_capped(response_of(vec![b' '; MAX_JWKS_BYTES]), MAX_JWKS_BYTES)
            .await
            .unwrap();
        assert_eq!(body.len(), MAX_JWKS_BYTES);
        let error = read_capped(response_of(vec![b' '; MAX_JWKS_BYTES + 1]), MAX_JWKS_BYTES)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "JWKS larger than 64 KiB");
    }

    /// Whether `token` is in `verifier`'s cache now.
    fn cached(verifier: &Verifier, token: &str) -> bool {
        let key = cache::token_key(token).unwrap();
        verifier
            .cache
            .as_ref()
            .unwrap()
            .get(&key, unix_now())
            .is_some()
    }

    fn verifier_with_cache(pem: &str, leeway: Duration, cache_size: usize) -> Verifier {
        Verifier::new(VerifierSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway,
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            source: KeySource::Static(vec![PublicKey::from_pem(pem).unwrap()]),
            cache_size,
        })
        .unwrap()
    }

    /// A JWKS endpoint serving whatever `jwks` holds at the time.
    async fn serve_jwks(
        jwks: Arc<std::sync::Mutex<Jwks>>,
    ) -> (url::Url, tokio::task::JoinHandle<()>) {
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let jwks = jwks.lock().unwrap().clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{address}/jwks").parse().unwrap(), task)
    }

    /// Lets the next unknown kid refetch the JWKS at once (the interval
    /// backdated rather than waited for).
    async fn allow_refetch(verifier: &Verifier) {
        let backdated = Instant::now().checked_sub(MIN_REFETCH_INTERVAL).unwrap();
        verifier.refetch.lock().await.finished_at = Some(backdated);
    }

    #[tokio::test]
    async fn verify_returns_same_claims_from_cache_without_the_keys() {
        let pem = test_util::shared_private_key_pem();
        let verifier = verifier(pem);
        let claims = claims();
        let token = test_util::signer(pem).sign(&claims).unwrap();
        assert!(!cached(&verifier, &token));
        assert_eq!(verifier.verify(&token).await.unwrap(), claims);
        assert!(cached(&verifier, &token));

        // The keys gone behind the cache's back (no epoch bump): only a
        // lookup can still accept the token, and it returns the claims.
        verifier.keys.write().await.clear();
        assert_eq!(verifier.verify(&token).await.unwrap(), claims);
        assert_eq!(verifier.verify(&token).await.unwrap(), claims);
        // Control: a token not verified before needs the key.
        let other = test_util::signer(pem).sign(&self::claims()).unwrap();
        let error = verifier.verify(&other).await.unwrap_err();
        assert!(matches!(error, VerifyError::UnknownKey), "{error:?}");
    }

    #[tokio::test]
    async fn verify_caches_nothing_when_cache_size_is_zero() {
        let pem = test_util::shared_private_key_pem();
        let verifier = verifier_with_cache(pem, LEEWAY, 0);
        assert!(verifier.cache.is_none());
        let token = test_util::signer(pem).sign(&claims()).unwrap();
        verifier.verify(&token).await.unwrap();
        verifier.keys.write().await.clear();
        let error = verifier.verify(&token).await.unwrap_err();
        assert!(matches!(error, VerifyError::UnknownKey), "{error:?}");
    }

    #[tokio::test]
    async fn verify_refuses_cached_token_after_its_exp() {
        let pem = test_util::shared_private_key_pem();
        // No leeway: a fresh verification refuses the token once it expired,
        // so an acceptance then could only come from the cache.
        let verifier = verifier_with_cache(pem, Duration::ZERO, DEFAULT_VERIFY_CACHE_SIZE);
        let mut claims = claims();
        claims.exp = claims.iat + 1;
        let token = test_util::signer(pem).sign(&claims).unwrap();
        assert_eq!(verifier.verify(&token).await.unwrap(), claims);
        assert!(cached(&verifier, &token));
        while unix_now() <= claims.exp {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let error = verifier.verify(&token).await.unwrap_err();
        assert!(
            matches!(&error, VerifyError::Rejected(e)
                if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature)),
            "{error:?}"
        );
        assert!(!cached(&verifier, &token));
    }

    #[tokio::test]
    async fn verify_refuses_cached_token_when_its_kid_left_the_jwks() {
        let (old_pem, new_pem) = (
            test_util::shared_private_key_pem(),
            test_util::private_key_pem(),
        );
        let (old, new) = (test_util::signer(old_pem), test_util::signer(&new_pem));
        let old_jwk = PublicKey::from_pem(old_pem).unwrap().to_jwk();
        let new_jwk = PublicKey::from_pem(&new_pem).unwrap().to_jwk();
        let jwks = Arc::new(std::sync::Mutex::new(Jwks {
            keys: vec![old_jwk.clone()],
        }));
        let (url, task) = serve_jwks(jwks.clone()).await;
        let verifier = Verifier::new(VerifierSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway: LEEWAY,
            max_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            source: KeySource::JwksUrl(url),
            cache_size: DEFAULT_VERIFY_CACHE_SIZE,
        })
        .unwrap();
        let old_token = old.sign(&claims()).unwrap();
        verifier.verify(&old_token).await.unwrap();
        assert!(cached(&verifier, &old_token));

        // A fetch that only adds a key keeps the cache.
        jwks.lock().unwrap().keys.push(new_jwk.clone());
        allow_refetch(&verifier).await;
        let new_token = new.sign(&claims()).unwrap();
        verifier.verify(&new_token).await.unwrap();
        assert!(cached(&verifier, &old_token));

        // Rotation: the old key leaves; a refetch (for a kid nobody knows)
        // sees it gone and the cached token is refused.
        jwks.lock().unwrap().keys = vec![new_jwk];
        allow_refetch(&verifier).await;
        let error = verifier
            .verify(&token_with_unknown_kid(&new_pem))
            .await
            .unwrap_err();
        assert!(matches!(error, VerifyError::UnknownKey), "{error:?}");
        let error = verifier.verify(&old_token).await.unwrap_err();
        assert!(matches!(error, VerifyError::UnknownKey), "{error:?}");
        // The new key's token verifies again (fresh) and is cached again.
        verifier.verify(&new_token).await.unwrap();
        assert!(cached(&verifier, &new_token));

        // The same kid now names another key: its cached tokens go too.
        jwks.lock().unwrap().keys = vec![Jwk {
            kid: new.kid().to_owned(),
            ..old_jwk
        }];
        allow_refetch(&verifier).await;
        assert!(
            verifier
                .verify(&token_with_unknown_kid(old_pem))
                .await
                .is_err()
        );
        let error = verifier.verify(&new_token).await.unwrap_err();
        assert!(
            matches!(&error, VerifyError::Rejected(e)
                if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature)),
            "{error:?}"
        );
        task.abort();
    }

    #[tokio::test]
    async fn verify_refuses_cached_token_when_revoked_after_caching() {
        use crate::revocation::{Record, RevocationSet, SubjectKind};
        let pem = test_util::shared_private_key_pem();
        let verifier = verifier(pem);
        let set = Arc::new(RevocationSet::new());
        verifier.check_revocations(set.clone());
        let claims = claims();
        let token = test_util::signer(pem).sign(&claims).unwrap();
        verifier.verify(&token).await.unwrap();
        assert!(cached(&verifier, &token));

        let now = test_util::now();
        let record = Record {
            kind: SubjectKind::User,
            subject: claims.sub.clone(),
            not_before: claims.iat + 1,
            expires_at: now + 600,
        };
        assert!(set.insert(&record, now));
        for _ in 0..2 {
            let error = verifier.verify(&token).await.unwrap_err();
            assert!(matches!(error, VerifyError::Revoked), "{error:?}");
        }
    }

    /// `token`'s header and claims, byte for byte, signed by `pem`.
    fn resign(token: &str, pem: &str) -> String {
        let (message, signature) = token.rsplit_once('.').unwrap();
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let forged =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::RS256).unwrap();
        assert_ne!(forged, signature);
        format!("{message}.{forged}")
    }

    #[tokio::test]
    async fn verify_refuses_forged_signature_over_cached_claims() {
        let pem = test_util::shared_private_key_pem();
        let verifier = verifier(pem);
        let signer = test_util::signer(pem);
        let claims = claims();
        let token = signer.sign(&claims).unwrap();
        verifier.verify(&token).await.unwrap();
        assert!(cached(&verifier, &token));

        // The same header and claims, signed by another key.
        let other_pem = test_util::private_key_pem();
        let forged = resign(&token, &other_pem);
        let error = verifier.verify(&forged).await.unwrap_err();
        assert!(
            matches!(&error, VerifyError::Rejected(e)
                if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature)),
            "{error:?}"
        );
        // Nor one whose signature is cut short; neither is cached.
        let truncated = &token[..token.len() - 2];
        assert!(verifier.verify(truncated).await.is_err());
        assert!(!cached(&verifier, &forged));
        assert!(!cached(&verifier, truncated));
        assert_eq!(verifier.verify(&token).await.unwrap(), claims);
    }

    #[tokio::test]
    async fn verify_caches_no_refused_token() {
        let pem = test_util::shared_private_key_pem();
        let verifier = verifier(pem);
        let mut expired = claims();
        expired.exp = expired.iat - 3600 + 1;
        expired.iat -= 3600;
        let signer = test_util::signer(pem);
        for token in [
            "garbage".to_owned(),
            signer.sign(&expired).unwrap(),
            token_with_unknown_kid(pem),
        ] {
            assert!(verifier.verify(&token).await.is_err());
        }
        assert_eq!(verifier.cache.as_ref().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn verify_never_holds_more_than_cache_size_tokens() {
        let pem = test_util::shared_private_key_pem();
        let verifier = verifier_with_cache(pem, LEEWAY, 8);
        let signer = test_util::signer(pem);
        let tokens: Vec<String> = (0..30).map(|_| signer.sign(&claims()).unwrap()).collect();
        for token in &tokens {
            verifier.verify(token).await.unwrap();
            assert!(verifier.cache.as_ref().unwrap().len() <= 8);
        }
        // Evicted or not, every token still verifies.
        for token in &tokens {
            verifier.verify(token).await.unwrap();
        }
        assert!(verifier.cache.as_ref().unwrap().len() <= 8);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn verify_agrees_across_concurrent_tasks_with_and_without_cache() {
        let pem = test_util::shared_private_key_pem();
        let signer = test_util::signer(pem);
        let other_pem = test_util::private_key_pem();
        let cached = Arc::new(verifier_with_cache(pem, LEEWAY, 16));
        let plain = Arc::new(verifier_with_cache(pem, LEEWAY, 0));
        // Good tokens (more than the cache holds), each with its claims,
        // and forgeries of them.
        let mut cases = Vec::new();
        for _ in 0..24 {
            let claims = claims();
            let token = signer.sign(&claims).unwrap();
            let forged = resign(&token, &other_pem);
            cases.push((token, Some(claims)));
            cases.push((forged, None));
        }
        let cases = Arc::new(cases);
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..64_usize {
            let (cached, plain, cases) = (cached.clone(), plain.clone(), cases.clone());
            tasks.spawn(async move {
                for round in 0..20 {
                    let (token, expected) = &cases[(task * 7 + round * 3) % cases.len()];
                    let (a, b) = (cached.verify(token).await, plain.verify(token).await);
                    match expected {
                        Some(claims) => {
                            assert_eq!(a.as_ref().unwrap(), claims);
                            assert_eq!(b.as_ref().unwrap(), claims);
                        }
                        None => assert!(a.is_err() && b.is_err(), "{a:?} {b:?}"),
                    }
                }
            });
        }
        tasks.join_all().await;
        assert!(cached.cache.as_ref().unwrap().len() <= 16);
    }

    #[test]
    fn drops_a_key_when_a_kid_goes_or_changes_but_not_when_one_is_added() {
        let pem = test_util::shared_private_key_pem();
        let other_pem = test_util::private_key_pem();
        let key = |pem: &str| Arc::new(trusted_key(&PublicKey::from_pem(pem).unwrap()).unwrap());
        let keys = |list: &[(&str, &str)]| -> Keys {
            list.iter()
                .map(|(kid, pem)| ((*kid).to_owned(), key(pem)))
                .collect()
        };
        let a = keys(&[("a", pem)]);
        assert!(!drops_a_key(&a, &keys(&[("a", pem)])));
        assert!(!drops_a_key(&a, &keys(&[("a", pem), ("b", &other_pem)])));
        assert!(!drops_a_key(&Keys::new(), &a));
        assert!(drops_a_key(&a, &keys(&[("b", pem)])));
        assert!(drops_a_key(&a, &keys(&[("a", &other_pem)])));
        assert!(drops_a_key(&a, &Keys::new()));
    }
}
