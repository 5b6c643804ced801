//! API versions: `/api/v2` (current) and `/api/v1` (deprecated).
//!
//! Both versions are the same routes, handlers and layers (authentication,
//! scopes, rate limits, body limit, CORS, validation, response shapes):
//! `super::router` builds the API once per [`ApiVersion`] from one function,
//! so a layer cannot be added to one version and forgotten on the other.
//! v1 answers exactly what v2 answers; on top of that, [`v1_lifecycle`]
//! (v1 only, outside every other layer of the version):
//!
//! - before `API_V1_SUNSET`: every v1 response carries `Deprecation:
//!   @<unix seconds>` (RFC 9745, a structured-field date), `Sunset: <HTTP
//!   date>` (RFC 8594) and `Link: <API_V1_MIGRATION_GUIDE>;
//!   rel="deprecation"; type="text/html"`;
//! - from the sunset on (by the injected `Clock`): `410 Gone`
//!   problem+json naming the guide, with the same headers, before any
//!   other layer runs (nothing is read or written).
//!
//! [`count_request`] (both versions, after authentication and the rate
//! limits) counts `portcullis_api_requests_total{version, client_id}`.
//! `client_id` is an unbounded label in general, so it is filled only for
//! v1 (the clients that still have to move: a shrinking set of registered
//! clients, taken from a verified token, never from the request) and left
//! empty for v2.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde::Serialize;
use time::{OffsetDateTime, UtcOffset};

use super::extract::VerifiedToken;
use crate::clock::Clock;
use crate::config::ApiV1Settings;

/// The counter of API requests, by `version` and (v1 only) `client_id`.
pub const REQUESTS_METRIC: &str = "portcullis_api_requests_total";

/// RFC 9745 `Deprecation`.
pub const DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
/// RFC 8594 `Sunset`.
pub const SUNSET: HeaderName = HeaderName::from_static("sunset");

/// A version of the resource API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `/api/v1`: deprecated, then gone (`API_V1_SUNSET`).
    V1,
    /// `/api/v2`: current.
    V2,
}

impl ApiVersion {
    /// Every version served, current first.
    pub const ALL: [Self; 2] = [Self::V2, Self::V1];

    /// The path prefix of the version's routes.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::V1 => "/api/v1",
            Self::V2 => "/api/v2",
        }
    }

    /// The `version` label of [`REQUESTS_METRIC`].
    pub const fn label(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }

    /// `path` (`/me`, `/notes/{id}`) under this version.
    pub fn path(self, path: &str) -> String {
        format!("{}{path}", self.prefix())
    }
}

/// `REQUESTS_METRIC` of a request without a `client_id` label value:
/// every v2 request, and v1 without a verified token (resolved once).
static V2_REQUESTS: shared::metrics::CachedCounter = shared::metrics::CachedCounter::new(
    REQUESTS_METRIC,
    &[("version", ApiVersion::V2.label()), ("client_id", "")],
);
static V1_ANONYMOUS_REQUESTS: shared::metrics::CachedCounter = shared::metrics::CachedCounter::new(
    REQUESTS_METRIC,
    &[("version", ApiVersion::V1.label()), ("client_id", "")],
);

/// Counts a request that passed authentication and the rate limits (see
/// the module documentation for the labels): called by `super::limits`
/// right before the handler runs.
pub fn count_request(version: ApiVersion, request: &Request) {
    match version {
        ApiVersion::V2 => V2_REQUESTS.increment(1),
        ApiVersion::V1 => match request.extensions().get::<VerifiedToken>() {
            Some(VerifiedToken(claims)) => metrics::counter!(
                REQUESTS_METRIC,
                "version" => version.label(),
                "client_id" => claims.client_id.clone()
            )
            .increment(1),
            None => V1_ANONYMOUS_REQUESTS.increment(1),
        },
    }
}

/// The state of [`v1_lifecycle`]: the headers, formatted once, and the
/// sunset by the injected clock.
#[derive(Debug, Clone)]
pub struct V1Lifecycle {
    clock: Clock,
    sunset_unix: i64,
    /// RFC 3339, for the 410 body.
    sunset_rfc3339: String,
    guide: String,
    headers: [(HeaderName, HeaderValue); 3],
}

impl V1Lifecycle {
    pub fn new(settings: &ApiV1Settings, clock: Clock) -> anyhow::Result<Self> {
        let guide = settings.migration_guide.as_str().to_owned();
        let link = HeaderValue::from_str(&format!(
            "<{guide}>; rel=\"deprecation\"; type=\"text/html\""
        ))
        .map_err(|_| anyhow::anyhow!("API_V1_MIGRATION_GUIDE cannot be sent in a Link header"))?;
        let deprecation = HeaderValue::from_str(&deprecation_value(settings.deprecation))?;
        let sunset = HeaderValue::from_str(&http_date(settings.sunset))?;
        let sunset_rfc3339 = settings
            .sunset
            .to_offset(UtcOffset::UTC)
            .format(&time::format_description::well_known::Rfc3339)?;
        Ok(Self {
            clock,
            sunset_unix: settings.sunset.unix_timestamp(),
            sunset_rfc3339,
            guide,
            headers: [
                (DEPRECATION, deprecation),
                (SUNSET, sunset),
                (header::LINK, link),
            ],
        })
    }

    /// Whether v1 is gone at the clock's now.
    pub fn is_gone(&self) -> bool {
        self.clock.unix_seconds() >= self.sunset_unix
    }

    fn gone(&self) -> Response {
        let response = (
            StatusCode::GONE,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            serde_json::to_vec(&GoneProblem {
                kind: "about:blank",
                title: "Gone",
                status: StatusCode::GONE.as_u16(),
                detail: format!(
                    "/api/v1 was retired on {}; use /api/v2: see {}",
                    self.sunset_rfc3339, self.guide
                ),
                sunset: &self.sunset_rfc3339,
                migration_guide: &self.guide,
            })
            .unwrap_or_default(),
        )
            .into_response();
        // Counted here: the request never reaches `count_request`.
        V1_ANONYMOUS_REQUESTS.increment(1);
        response
    }
}

/// RFC 9457 problem of a retired version, with two extension members.
#[derive(Serialize)]
struct GoneProblem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    sunset: &'a str,
    migration_guide: &'a str,
}

/// The v1-only layer: headers before the sunset, `410 Gone` after.
pub async fn v1_lifecycle(
    State(lifecycle): State<std::sync::Arc<V1Lifecycle>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = if lifecycle.is_gone() {
        lifecycle.gone()
    } else {
        next.run(request).await
    };
    for (name, value) in &lifecycle.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// RFC 9745 §2.1: an RFC 9651 Date, `@` and the unix seconds.
pub fn deprecation_value(at: OffsetDateTime) -> String {
    format!("@{}", at.unix_timestamp())
}

/// An RFC 9110 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), in UTC.
pub fn http_date(at: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let at = at.to_offset(UtcOffset::UTC);
    let day = DAYS
        .get(usize::from(at.weekday().number_days_from_monday()))
        .copied()
        .unwrap_or_default();
    let month = MONTHS
        .get(usize::from(u8::from(at.month())) - 1)
        .copied()
        .unwrap_or_default();
    format!(
        "{day}, {:02} {month} {:04} {:02}:{:02}:{:02} GMT",
        at.day(),
        at.year(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    fn at(rfc3339: &str) -> OffsetDateTime {
        OffsetDateTime::parse(rfc3339, &Rfc3339).unwrap()
    }

    #[test]
    fn http_date_is_an_imf_fixdate_in_gmt() {
        assert_eq!(
            http_date(at("1994-11-06T08:49:37Z")),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            http_date(at("2027-07-01T02:00:00+02:00")),
            "Thu, 01 Jul 2027 00:00:00 GMT"
        );
        assert_eq!(
            http_date(at("2026-01-01T00:00:00Z")),
            "Thu, 01 Jan 2026 00:00:00 GMT"
        );
    }

    #[test]
    fn deprecation_value_is_a_structured_field_date() {
        assert_eq!(deprecation_value(at("2026-01-01T00:00:00Z")), "@1767225600");
    }

    #[test]
    fn versions_have_their_prefixes() {
        assert_eq!(ApiVersion::V1.path("/notes"), "/api/v1/notes");
        assert_eq!(ApiVersion::V2.path("/notes/{id}"), "/api/v2/notes/{id}");
        assert_eq!(ApiVersion::ALL, [ApiVersion::V2, ApiVersion::V1]);
    }
}
