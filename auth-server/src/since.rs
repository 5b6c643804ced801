//! "Since when" for the audit log, one parser for the CLI
//! (`audit tail --since`) and the admin API (`GET /api/v2/admin/audit?since=`):
//! a duration back from now (`30s`, `15m`, `2h`, `7d`) or, for the API, an
//! RFC 3339 time.

/// `30s`, `15m`, `2h`, `7d` in seconds.
pub fn parse_duration_secs(value: &str) -> Result<i64, String> {
    let bad = || format!("{value:?}: expected a number and s, m, h or d, e.g. 15m");
    let split = value.len().checked_sub(1).ok_or_else(bad)?;
    if !value.is_char_boundary(split) {
        return Err(bad());
    }
    let (number, unit) = value.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if number < 0 {
        return Err(bad());
    }
    number.checked_mul(unit).ok_or_else(bad)
}

/// A point in time (Unix seconds): an RFC 3339 time, or a duration
/// ([`parse_duration_secs`]) before `now`. The error never quotes `value`.
pub fn parse_since(value: &str, now: i64) -> Result<i64, &'static str> {
    if let Ok(at) =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
    {
        return Ok(at.unix_timestamp());
    }
    match parse_duration_secs(value) {
        Ok(secs) => Ok(now.saturating_sub(secs)),
        Err(_) => Err("since must be an RFC 3339 time or a duration such as 15m, 2h or 7d"),
    }
}

/// Unix seconds as RFC 3339 (UTC), or the number when out of range.
pub fn rfc3339(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_since_reads_rfc3339_and_durations_and_refuses_garbage() {
        let now = 1_800_000_000;
        assert_eq!(parse_since("2h", now), Ok(now - 7200));
        assert_eq!(parse_since("0s", now), Ok(now));
        assert_eq!(parse_since("2027-01-15T08:00:00Z", 0), Ok(1_800_000_000));
        assert_eq!(
            parse_since("2027-01-15T09:00:00+01:00", 0),
            Ok(1_800_000_000)
        );
        for bad in [
            "",
            "h",
            "2",
            "2x",
            "-1h",
            "yesterday",
            "2027-01-15",
            "2027-01-15T08:00:00",
            "é",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
