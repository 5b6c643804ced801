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
    figment
        .extract()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
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
}
