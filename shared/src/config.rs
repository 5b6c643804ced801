//! Config loading: built-in defaults < TOML file (only when given) < environment.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Loads `T` from its defaults, the optional TOML file and the named environment
/// variables (each variable's lower-cased name is the field it sets).
pub fn load<T>(file: Option<&Path>, env_vars: &[&str]) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.is_file() {
            anyhow::bail!("config file {} does not exist", path.display());
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment.merge(Env::raw().only(env_vars));
    figment.extract().map_err(|e| {
        // A message of ours (`deserialize_listen`) names its variable and
        // says what to do: figment's "for key … in …" would only follow it.
        match &e.kind {
            figment::error::Kind::Message(message) if message.contains(FIX_MARK) => {
                anyhow::anyhow!("{}", message.replace(FIX_MARK, ""))
            }
            _ => anyhow::anyhow!("invalid configuration: {e}"),
        }
    })
}

/// Marks a deserialization message that is complete as it stands.
const FIX_MARK: &str = "\u{1}";

/// A listen address (`AUTH_LISTEN`): `IP:PORT`, or `HOST:PORT` with the host
/// name resolved now (`shared::startup::resolve_listen`).
pub fn deserialize_listen<'de, D>(deserializer: D) -> Result<std::net::SocketAddr, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let raw = String::deserialize(deserializer)?;
    crate::startup::resolve_listen("AUTH_LISTEN", &raw).map_err(|e| {
        serde::de::Error::custom(format!("{FIX_MARK}{}", crate::startup::one_line(&e)))
    })
}

/// Splits a comma-separated list, trimming blanks.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses a rate such as `5/minute`, `600/min`, `3/hour`, `10/30s`: a count
/// of at least 1 per period (`second`, `minute`, `hour`, `day`, their
/// abbreviations `s`, `min`, `h`, `d`, or `<N>s`). `name` is the setting, for
/// the error.
pub fn parse_rate(name: &str, value: &str) -> anyhow::Result<(u32, std::time::Duration)> {
    let bad = || {
        anyhow::anyhow!(
            "{name}: {value:?} is not a rate like \"5/minute\" (count per second, minute, hour, day or Ns)"
        )
    };
    let (count, period) = value.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let period = period.trim();
    let secs: u64 = match period {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        other => other
            .strip_suffix('s')
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?,
    };
    if count == 0 || secs == 0 || secs > 86_400 * 7 {
        return Err(bad());
    }
    Ok((count, std::time::Duration::from_secs(secs)))
}

/// Whether `url`'s host is loopback: 127.0.0.0/8, `::1` or `localhost`
/// (where plain http is allowed, RFC 8252 §7.3).
pub fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// The normal form of `AUTH_ISSUER`, the one rule both services use: an
/// absolute http(s) URL without user name, query or fragment; scheme and
/// host lower-cased and a default port dropped (as URL parsers do); no
/// trailing slash (`http://127.0.0.1:8080/` is `http://127.0.0.1:8080`).
/// The auth server signs this value as `iss`; the resource API accepts
/// exactly it and derives its default JWKS URL from it.
pub fn normalize_issuer(raw: &str) -> anyhow::Result<String> {
    let fix = |what: String| {
        crate::startup::fix(
            anyhow::anyhow!("AUTH_ISSUER {raw:?} {what}"),
            "Set AUTH_ISSUER to the server's public base URL, e.g. https://id.example.com",
        )
    };
    let url = url::Url::parse(raw.trim()).map_err(|e| fix(format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(fix("is not an http(s) URL".into()));
    }
    if url.host().is_none() {
        return Err(fix("has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fix("must not hold a user name or password".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(fix("must not have a query or fragment (RFC 8414 §2)".into()));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn parse_rate_reads_count_per_period() {
        assert_eq!(
            parse_rate("X", "5/minute").unwrap(),
            (5, Duration::from_secs(60))
        );
        assert_eq!(
            parse_rate("X", " 3 / hour ").unwrap(),
            (3, Duration::from_secs(3600))
        );
        assert_eq!(
            parse_rate("X", "10/30s").unwrap(),
            (10, Duration::from_secs(30))
        );
        for bad in [
            "",
            "5",
            "0/minute",
            "5/fortnight",
            "-1/s",
            "5/0s",
            "x/minute",
        ] {
            assert!(parse_rate("X", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalize_issuer_drops_trailing_slash_and_lower_cases() {
        for (raw, normal) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("HTTPS://ID.Example.COM:443/", "https://id.example.com"),
            ("https://id.example/tenant/", "https://id.example/tenant"),
            ("https://id.example/Tenant", "https://id.example/Tenant"),
            (" http://localhost:8080// ", "http://localhost:8080"),
        ] {
            assert_eq!(normalize_issuer(raw).unwrap(), normal, "{raw}");
            // Idempotent: both services may apply it.
            assert_eq!(normalize_issuer(normal).unwrap(), normal, "{raw}");
        }
        for (bad, says) in [
            ("id.example", "is not a URL"),
            ("ftp://id.example", "http(s)"),
            ("https://u:p@id.example", "user name"),
            ("https://id.example/?a=b", "query"),
            ("https://id.example/#x", "fragment"),
        ] {
            let line = crate::startup::one_line(&normalize_issuer(bad).unwrap_err());
            assert!(line.starts_with("AUTH_ISSUER"), "{bad}: {line}");
            assert!(line.contains(says), "{bad}: {line}");
        }
    }
}
