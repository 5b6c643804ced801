use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::{Mutex, RwLock};

use super::ACCESS_TOKEN_TYP;
use super::claims::AccessTokenClaims;
use super::keys::{Jwks, PublicKey};

/// Least time between two JWKS fetches caused by unknown `kid`s.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

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
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            keys.push(PublicKey::from_pem(&pem).with_context(|| format!("{}", path.display()))?);
        }
        if keys.is_empty() {
            anyhow::bail!("no PEM keys in {}", dir.display());
        }
        Ok(Self::Static(keys))
    }
}

#[derive(Debug, Clone)]
pub struct VerifierSettings {
    pub issuer: String,
    pub audience: String,
    /// Clock skew allowed on `exp`/`nbf`, at most 60 s.
    pub leeway: Duration,
    pub source: KeySource,
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
    #[error("token rejected: {0}")]
    Rejected(#[from] jsonwebtoken::errors::Error),
}

struct Cache {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
}

/// Offline access-token verifier with a JWKS cache. Accepts only RS256,
/// `typ=at+jwt`, the configured `iss` and `aud`, unexpired tokens, and keys
/// from its source.
pub struct Verifier {
    validation: Validation,
    source: KeySource,
    http: reqwest::Client,
    cache: RwLock<Cache>,
    refetch: Mutex<()>,
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
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = settings.leeway.min(Duration::from_secs(60)).as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "iat"]);
        let mut keys = HashMap::new();
        if let KeySource::Static(list) = &settings.source {
            for key in list {
                keys.insert(key.kid.clone(), Arc::new(decoding_key(key)?));
            }
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building HTTP client")?;
        Ok(Self {
            validation,
            source: settings.source,
            http,
            cache: RwLock::new(Cache {
                keys,
                fetched_at: None,
            }),
            refetch: Mutex::new(()),
        })
    }

    /// Whether any key is loaded (readiness).
    pub async fn has_keys(&self) -> bool {
        !self.cache.read().await.keys.is_empty()
    }

    /// Fetches the JWKS now (no-op for a static source).
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let KeySource::JwksUrl(url) = &self.source else {
            return Ok(());
        };
        let jwks: Jwks = self
            .http
            .get(url.clone())
            .send()
            .await
            .context("fetching JWKS")?
            .error_for_status()
            .context("fetching JWKS")?
            .json()
            .await
            .context("decoding JWKS")?;
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            let usable = jwk.kty == "RSA"
                && !jwk.kid.is_empty()
                && jwk.alg.as_deref().is_none_or(|a| a == "RS256")
                && jwk.use_.as_deref().is_none_or(|u| u == "sig");
            if !usable {
                continue;
            }
            match DecodingKey::from_rsa_components(&jwk.n, &jwk.e) {
                Ok(key) => {
                    keys.insert(jwk.kid, Arc::new(key));
                }
                Err(error) => tracing::warn!(%error, "skipping unusable JWK"),
            }
        }
        let mut cache = self.cache.write().await;
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        Ok(())
    }

    async fn key_for(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        if let Some(key) = self.cache.read().await.keys.get(kid) {
            return Some(key.clone());
        }
        if !matches!(self.source, KeySource::JwksUrl(_)) {
            return None;
        }
        // One fetch at a time; an unknown kid refetches at most every 30 s.
        let _guard = self.refetch.lock().await;
        {
            let cache = self.cache.read().await;
            if let Some(key) = cache.keys.get(kid) {
                return Some(key.clone());
            }
            if cache
                .fetched_at
                .is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL)
            {
                return None;
            }
        }
        if let Err(error) = self.refresh().await {
            tracing::warn!(error = %format!("{error:#}"), "JWKS refresh failed");
            // Do not hammer a failing JWKS endpoint either.
            self.cache.write().await.fetched_at = Some(Instant::now());
        }
        self.cache.read().await.keys.get(kid).cloned()
    }

    /// Verifies a compact JWS access token and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<AccessTokenClaims, VerifyError> {
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
        let key = self.key_for(&kid).await.ok_or(VerifyError::UnknownKey)?;
        let data = jsonwebtoken::decode::<AccessTokenClaims>(token, &key, &self.validation)?;
        Ok(data.claims)
    }
}

fn decoding_key(key: &PublicKey) -> anyhow::Result<DecodingKey> {
    DecodingKey::from_rsa_components(&key.n, &key.e).context("unusable RSA public key")
}
