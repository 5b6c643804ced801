//! The values of the `RateLimit-*` and `Retry-After` fields, without
//! formatting or allocating on the request path: small numbers come from a
//! table built once, and a rule's `RateLimit-Limit` and `RateLimit-Policy`
//! (fixed by the rule) are built on its first use and kept. The text is the
//! same as `HeaderValue::from(n)` and `format!("{limit};w={secs}")` give.

use std::fmt::Write as _;
use std::sync::{LazyLock, PoisonError, RwLock};

use http::HeaderValue;

/// Numbers below this come from [`SMALL_NUMBERS`] (every default limit,
/// remaining count and per-minute reset is below it).
const SMALL: u64 = 1024;

/// Policies kept; past it (a process with more distinct rules than that),
/// they are formatted per response.
const MAX_POLICIES: usize = 64;

/// `0` to `SMALL - 1`, as values over one text built once (a static value
/// is cloned without touching a reference count).
static SMALL_NUMBERS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    let mut text = String::new();
    let mut ends = Vec::new();
    for n in 0..SMALL {
        let _ = write!(text, "{n}");
        ends.push(text.len());
    }
    let text: &'static str = text.leak();
    let mut start = 0;
    ends.into_iter()
        .filter_map(|end| {
            let digits = text.get(start..end);
            start = end;
            digits.map(HeaderValue::from_static)
        })
        .collect()
});

/// `n` in decimal.
pub(super) fn number(n: u64) -> HeaderValue {
    usize::try_from(n)
        .ok()
        .and_then(|n| SMALL_NUMBERS.get(n))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(n))
}

/// A rule's fixed fields.
struct Policy {
    limit: u32,
    window_secs: u64,
    /// `RateLimit-Limit`.
    limit_value: HeaderValue,
    /// `RateLimit-Policy`: `<limit>;w=<window secs>`.
    policy_value: HeaderValue,
}

static POLICIES: RwLock<Vec<Policy>> = RwLock::new(Vec::new());

/// `RateLimit-Limit` and `RateLimit-Policy` of `limit` per `window_secs`.
pub(super) fn policy(limit: u32, window_secs: u64) -> (HeaderValue, Option<HeaderValue>) {
    let found = |policies: &[Policy]| {
        policies
            .iter()
            .find(|p| p.limit == limit && p.window_secs == window_secs)
            .map(|p| (p.limit_value.clone(), Some(p.policy_value.clone())))
    };
    if let Some(values) = found(&POLICIES.read().unwrap_or_else(PoisonError::into_inner)) {
        return values;
    }
    let text = format!("{limit};w={window_secs}");
    let mut policies = POLICIES.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(values) = found(&policies) {
        return values;
    }
    if policies.len() >= MAX_POLICIES || HeaderValue::from_str(&text).is_err() {
        return (number(u64::from(limit)), HeaderValue::from_str(&text).ok());
    }
    let policy = Policy {
        limit,
        window_secs,
        limit_value: HeaderValue::from_static(format!("{limit}").leak()),
        policy_value: HeaderValue::from_static(text.leak()),
    };
    let values = (
        policy.limit_value.clone(),
        Some(policy.policy_value.clone()),
    );
    policies.push(policy);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_from_writes_them() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            1023,
            1024,
            1025,
            3600,
            u64::from(u32::MAX),
        ] {
            assert_eq!(number(n), HeaderValue::from(n), "{n}");
        }
    }

    #[test]
    fn policies_are_the_formatted_text_and_kept() {
        for _ in 0..2 {
            let (limit, policy) = policy(1000, 60);
            assert_eq!(limit, "1000");
            assert_eq!(policy.unwrap(), "1000;w=60");
        }
        let (limit, policy) = policy(7, 3600);
        assert_eq!(limit, "7");
        assert_eq!(policy.unwrap(), "7;w=3600");
    }
}
