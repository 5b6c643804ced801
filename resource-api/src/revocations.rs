//! Instant revocation, the resource API's side: with `REVOCATIONS_TOKEN`
//! set, a [`shared::revocation_feed::Feed`] keeps the auth server's
//! revocation records in memory and the verifier refuses the tokens they
//! void (401 `invalid_token`, "token revoked").

use std::time::Duration;

use anyhow::Context;
use shared::revocation::REVOCATIONS_PATH;
use shared::revocation_feed::{FeedSettings, MIN_TOKEN_LEN};
use url::Url;

use crate::config::Settings;

/// The feed's settings, or None when `REVOCATIONS_TOKEN` is unset (or blank).
pub fn feed_settings(settings: &Settings) -> anyhow::Result<Option<FeedSettings>> {
    let Some(token) = settings
        .revocations_token
        .as_deref()
        .map(str::trim)
        .filter(|token| !token.is_empty())
    else {
        return Ok(None);
    };
    if token.len() < MIN_TOKEN_LEN {
        anyhow::bail!("REVOCATIONS_TOKEN must be at least {MIN_TOKEN_LEN} characters");
    }
    let url = match &settings.revocations_url {
        Some(url) => url.clone(),
        None => {
            let issuer = shared::config::normalize_issuer(&settings.auth_issuer)?;
            Url::parse(&format!(
                "{}{REVOCATIONS_PATH}",
                issuer.trim_end_matches('/')
            ))
            .context("REVOCATIONS_URL (from AUTH_ISSUER)")?
        }
    };
    shared::jwt::check_jwks_url(&url).map_err(|e| anyhow::anyhow!("REVOCATIONS_URL {e}"))?;
    let redis = settings.redis_url.is_some();
    let poll_every = match settings.revocations_poll_ms {
        Some(0) => anyhow::bail!("REVOCATIONS_POLL_MS must be at least 1"),
        Some(ms) => Duration::from_millis(ms.min(300_000)),
        None => FeedSettings::default_poll(redis),
    };
    Ok(Some(FeedSettings {
        url,
        token: token.to_owned(),
        redis_url: settings.redis_url.clone(),
        key_prefix: settings.redis_key_prefix.clone(),
        poll_every,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn feed_settings_need_a_long_token_and_default_to_the_issuer() {
        let mut settings = Settings::default();
        assert!(feed_settings(&settings).unwrap().is_none());
        settings.revocations_token = Some("short".into());
        assert!(feed_settings(&settings).is_err());
        settings.revocations_token = Some("x".repeat(32));
        let feed = feed_settings(&settings).unwrap().unwrap();
        assert_eq!(
            feed.url.as_str(),
            "http://127.0.0.1:8080/api/v2/revocations"
        );
        assert_eq!(feed.poll_every, Duration::from_secs(1));
        settings.redis_url = Some("redis://127.0.0.1:6379".into());
        assert_eq!(
            feed_settings(&settings).unwrap().unwrap().poll_every,
            shared::revocation_feed::SAFETY_NET_POLL
        );
    }
}
