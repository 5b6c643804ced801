//! HTTP layers both services share: request timeout, security headers,
//! request ids, access log; CORS by exact whitelist, for the routes each
//! service chooses.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::client_ip::TrustedProxies;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Default CSP: pages load only their own resources and cannot be framed.
pub const CSP: &str = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'";

/// The security headers of every response (DESIGN.md), set when a handler
/// did not set its own; also on the 503 that `serve` answers past the
/// connection cap without running the router.
pub const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=63072000; includeSubDomains",
    ),
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
];

/// [`SECURITY_HEADERS`] as header values, built at compile time.
const SECURITY_HEADER_VALUES: [(HeaderName, HeaderValue); 5] = [
    (
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(SECURITY_HEADERS[0].1),
    ),
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SECURITY_HEADERS[1].1),
    ),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static(SECURITY_HEADERS[2].1),
    ),
    (
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static(SECURITY_HEADERS[3].1),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static(SECURITY_HEADERS[4].1),
    ),
];

/// Adds the request timeout, security headers, request ids and the access log
/// (`crate::access`: the route template, never the raw path or the query
/// string). CORS is not here: each service puts
/// [`cors`] on the routes browsers may call from another origin, and only
/// there.
///
/// A request that takes longer than `request_timeout`
/// (`HTTP_REQUEST_TIMEOUT_SECS`) is answered `503 Service Unavailable`: the
/// server was too slow, so it stays a 5xx that monitoring sees (408 would
/// blame the client; a client too slow to send its head is cut off by the
/// header timeout of `crate::serve`). The timeout sits inside the rest, so
/// that answer still carries the security headers and the request id and is
/// in the access log.
///
/// All of it is one layer ([`Harden`]): axum clones a route's whole stack
/// of layers for every request, a box per layer, so nine small layers cost
/// nine allocations before any work. In order, outermost first:
///
/// 1. the request id: the client's `X-Request-Id` if it sent one, else a
///    new one ([`new_request_id`]);
/// 2. the request's span and its one access line (`crate::access`). A 5xx
///    gets no second, ERROR line: the access line has the status, and
///    faults are logged once where they happen (otherwise each 503 of an
///    overload would add one: a login flood measured 186,864 in 20 s);
/// 3. the request timeout, then the route;
/// 4. on the way out, the security headers a handler did not set itself
///    and the request id, both from values built once.
pub fn harden<S>(router: Router<S>, request_timeout: Duration) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(HardenLayer {
        request_timeout,
        proxies: None,
    })
}

/// [`harden`], and the client address worked out before the route runs,
/// as `crate::client_ip::layer` would do it right inside (one layer fewer
/// to clone for each request).
pub fn harden_with_client_ip<S>(
    router: Router<S>,
    request_timeout: Duration,
    proxies: Arc<TrustedProxies>,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(HardenLayer {
        request_timeout,
        proxies: Some(proxies),
    })
}

/// The layer of [`harden`].
#[derive(Debug, Clone)]
pub struct HardenLayer {
    request_timeout: Duration,
    proxies: Option<Arc<TrustedProxies>>,
}

impl<S> Layer<S> for HardenLayer {
    type Service = Harden<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Harden {
            inner,
            request_timeout: self.request_timeout,
            proxies: self.proxies.clone(),
        }
    }
}

/// The service of [`harden`], around one route.
#[derive(Debug, Clone)]
pub struct Harden<S> {
    inner: S,
    request_timeout: Duration,
    proxies: Option<Arc<TrustedProxies>>,
}

impl<S> Service<Request> for Harden<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The ready service goes into the future; a clone stays (tower's
        // rule for services called from a future).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let timeout = self.request_timeout;
        let proxies = self.proxies.clone();
        Box::pin(async move {
            let id = RequestId::of(&request);
            let run = move |mut request| async move {
                if let Some(proxies) = proxies {
                    crate::client_ip::resolve(&proxies, &mut request);
                }
                match tokio::time::timeout(timeout, inner.call(request)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_elapsed) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                }
            };
            let mut response = crate::access::observe(request, &id.log_text(), run).await;
            let headers = response.headers_mut();
            for (name, value) in SECURITY_HEADER_VALUES {
                if !headers.contains_key(&name) {
                    headers.insert(name, value);
                }
            }
            if !headers.contains_key(REQUEST_ID)
                && let Some(value) = id.into_header_value()
            {
                headers.insert(REQUEST_ID, value);
            }
            Ok(response)
        })
    }
}

/// The request id of one request.
enum RequestId {
    /// The client's `X-Request-Id`, echoed as it came.
    Client(HeaderValue),
    /// A new one ([`new_request_id_text`]).
    Made([u8; 36]),
}

impl RequestId {
    fn of(request: &Request) -> Self {
        match request.headers().get(REQUEST_ID) {
            Some(value) => Self::Client(value.clone()),
            None => Self::Made(new_request_id_text()),
        }
    }

    /// The id as the access line and the span write it.
    fn log_text(&self) -> Cow<'_, str> {
        match self {
            Self::Client(value) => crate::access::request_id_text(value),
            Self::Made(text) => Cow::Borrowed(std::str::from_utf8(text).unwrap_or("-")),
        }
    }

    fn into_header_value(self) -> Option<HeaderValue> {
        match self {
            Self::Client(value) => Some(value),
            Self::Made(text) => HeaderValue::from_bytes(&text).ok(),
        }
    }
}

/// The random half of this process's request ids, and the counter of the
/// other half (from a random start).
static REQUEST_IDS: LazyLock<(u64, AtomicU64)> = LazyLock::new(|| {
    let random = uuid::Uuid::new_v4().as_u64_pair();
    (random.0, AtomicU64::new(random.1))
});

/// A new request id, as text: a UUID (RFC 9562 version 8, the layout left
/// to the implementation) whose first 64 bits (60 after the version) are
/// random once per process and whose last 64 bits (62 after the variant)
/// count the process's requests from a random start. Unique within a
/// process, and across processes unless two of them drew the same 60
/// bits (about one chance in 2^30 with 2^15 processes alive at once); no
/// system randomness and no allocation per request. Not a secret: two ids
/// of one process tell how many requests it answered in between.
pub fn new_request_id_text() -> [u8; 36] {
    let (random, counter) = &*REQUEST_IDS;
    let high = (random & !0xF000) | 0x8000;
    let count = counter.fetch_add(1, Ordering::Relaxed);
    let low = (count & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    let mut text = [0u8; 36];
    uuid::Uuid::from_u64_pair(high, low)
        .hyphenated()
        .encode_lower(&mut text);
    text
}

/// A new request id ([`new_request_id_text`]) as a header value.
pub fn new_request_id() -> Option<HeaderValue> {
    HeaderValue::from_bytes(&new_request_id_text()).ok()
}

/// The setting the CORS origins come from, named in every refusal.
pub const CORS_SETTING: &str = "CORS_ALLOWED_ORIGINS";

/// How long a browser may reuse a preflight answer (`Access-Control-Max-Age`).
pub const CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// The origin `serve --dev` adds to `CORS_ALLOWED_ORIGINS`: a front-end
/// dev server on this machine.
pub const DEV_ORIGIN: &str = "http://localhost:3000";

/// `origins` with [`DEV_ORIGIN`] added (once): the CORS origins of
/// `serve --dev`.
pub fn with_dev_origin(mut origins: Vec<String>) -> Vec<String> {
    if !origins.iter().any(|origin| origin == DEV_ORIGIN) {
        origins.push(DEV_ORIGIN.to_owned());
    }
    origins
}

/// The one warning line of `serve --dev`, logged once the service listens
/// (after the `listening on` line, which stays first).
pub fn warn_dev_mode() {
    tracing::warn!(
        "dev mode is on (--dev): CORS also allows {DEV_ORIGIN}; do not use --dev in production"
    );
}

/// The CORS layer of routes that answer `methods`, allowing exactly
/// `origins` (`CORS_ALLOWED_ORIGINS`, checked by [`parse_cors_origins`]);
/// `None` when none is listed: no CORS headers at all, so browsers keep to
/// same-origin calls.
///
/// An origin is allowed only when the request's `Origin` equals a listed one
/// byte for byte (tower-http's `AllowOrigin::list`): never reflected, never a
/// pattern, never with credentials. Each service layers it on the routes
/// meant for browser apps on other origins only (its router says which),
/// never on pages. A preflight (`OPTIONS`) is answered by the layer itself,
/// before the route's method router could answer 405, with `methods`, the
/// request headers `authorization` and `content-type`, and `max-age` 600.
/// Response headers a browser app on a listed origin may read besides the
/// CORS-safelisted ones: the bearer challenge of a 401/403, when to retry
/// (429, 503) and the rate-limit fields, the request id to quote in a
/// report, and an API version's deprecation, sunset and migration guide.
pub const CORS_EXPOSED_HEADERS: [&str; 10] = [
    "www-authenticate",
    "retry-after",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
    "x-request-id",
    "deprecation",
    "sunset",
    "link",
];

pub fn cors(origins: &[String], methods: &[Method]) -> anyhow::Result<Option<CorsLayer>> {
    let origins = parse_cors_origins(origins)?;
    if origins.is_empty() {
        return Ok(None);
    }
    // A predicate over a shared list rather than `AllowOrigin::list`: the
    // same exact comparison, but axum clones the layer for every request,
    // and a list is a vector to copy each time.
    let origins: Arc<[HeaderValue]> = origins.into();
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |origin, _| {
                origins.contains(origin)
            }))
            .allow_methods(methods.to_vec())
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers(CORS_EXPOSED_HEADERS.map(HeaderName::from_static))
            .max_age(CORS_MAX_AGE),
    ))
}

/// Checks each entry of `CORS_ALLOWED_ORIGINS` and returns them as header
/// values. An entry must be exactly the origin a browser sends in `Origin`:
/// `https://host[:port]`, or `http://` on a loopback host (`localhost`,
/// 127.0.0.0/8, `[::1]`), in the URL standard's serialisation (lower-case,
/// punycode, no default port), with no path (not even `/`), query, fragment
/// or userinfo. Refused, with the setting and the reason: `*` or any other
/// wildcard, `null`, other schemes, `http` off loopback (a production
/// origin is https), anything that differs from its serialised origin.
pub fn parse_cors_origins(origins: &[String]) -> anyhow::Result<Vec<HeaderValue>> {
    origins.iter().map(|o| parse_cors_origin(o)).collect()
}

fn parse_cors_origin(raw: &str) -> anyhow::Result<HeaderValue> {
    let refuse = |why: &str| anyhow::anyhow!("{CORS_SETTING}: {raw:?} {why}");
    if raw.contains('*') {
        return Err(refuse(
            "is a wildcard; list each origin exactly (origins are compared exactly, never as patterns)",
        ));
    }
    if raw.eq_ignore_ascii_case("null") {
        return Err(refuse(
            "is refused: `null` is the origin of sandboxed frames, files and redirected requests, which any site can produce",
        ));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| refuse(&format!("is not an origin scheme://host[:port] ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if crate::config::is_loopback_host(&url) => {}
        "http" => {
            return Err(refuse(
                "is http off loopback; a production origin is https (http only for localhost, 127.0.0.0/8 and [::1])",
            ));
        }
        other => {
            return Err(refuse(&format!(
                "has scheme {other:?}; only https origins (or http on loopback) are allowed"
            )));
        }
    }
    let origin = url.origin().ascii_serialization();
    if origin != raw {
        return Err(refuse(&format!(
            "is not a bare origin as browsers send it (scheme://host[:port]: no path or trailing slash, query, fragment, userinfo or default port; lower case); did you mean {origin:?}?"
        )));
    }
    HeaderValue::from_str(raw).map_err(|_| refuse("is not a valid header value"))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// The deepest nesting of arrays and objects a JSON body may have.
pub const MAX_JSON_DEPTH: usize = 32;

/// Whether `bytes`, read as JSON, nests arrays and objects more than `max`
/// deep (`{}` is depth 1, `[[1]]` depth 2). A single pass over the bytes
/// without allocation, to run before a parser recurses: brackets inside
/// strings (with `\"` and `\\` escapes) do not count. It does not validate
/// anything else; the parser does.
pub fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use http::Request;
    use tower::ServiceExt;

    #[test]
    fn request_ids_are_distinct_version_8_uuids_with_one_random_half() {
        let a = new_request_id_text();
        let b = new_request_id_text();
        let (a, b) = (
            std::str::from_utf8(&a).unwrap(),
            std::str::from_utf8(&b).unwrap(),
        );
        assert_ne!(a, b);
        let (ua, ub) = (
            uuid::Uuid::parse_str(a).unwrap(),
            uuid::Uuid::parse_str(b).unwrap(),
        );
        assert_eq!(ua.get_version_num(), 8, "{a}");
        assert_eq!(ua.get_variant(), uuid::Variant::RFC4122, "{a}");
        assert_eq!(ua.hyphenated().to_string(), a, "lower-case, hyphenated");
        // The process's random half, then a counter.
        assert_eq!(ua.as_u64_pair().0, ub.as_u64_pair().0);
        assert_eq!(
            (ub.as_u64_pair().1 - ua.as_u64_pair().1) & 0x3FFF_FFFF_FFFF_FFFF,
            1
        );
        assert_eq!(new_request_id().unwrap().len(), 36);
    }

    async fn get(router: &Router, uri: &str, id: Option<&str>) -> http::Response<Body> {
        let mut request = Request::builder().uri(uri);
        if let Some(id) = id {
            request = request.header(REQUEST_ID, id);
        }
        router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn harden_sets_headers_and_request_id_on_every_answer_and_times_out_with_503() {
        use axum::routing::get as route_get;
        let router = Router::new()
            .route("/ok", route_get(|| async { "ok" }))
            .route(
                "/own",
                route_get(|| async { ([(header::X_FRAME_OPTIONS, "SAMEORIGIN")], "own") }),
            )
            .route("/slow", route_get(std::future::pending::<()>));
        let proxies = Arc::new(TrustedProxies::default());
        let router = harden_with_client_ip(router, std::time::Duration::from_millis(50), proxies);
        for (uri, status) in [
            ("/ok", StatusCode::OK),
            ("/missing", StatusCode::NOT_FOUND),
            ("/slow", StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let response = get(&router, uri, None).await;
            assert_eq!(response.status(), status, "{uri}");
            let h = response.headers();
            for (name, value) in SECURITY_HEADERS {
                assert_eq!(h[&name], value, "{uri}: {name}");
            }
            let id = h[REQUEST_ID].to_str().unwrap();
            assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 8);
        }
        // A handler's own header stays; a client's request id comes back.
        let response = get(&router, "/own", Some("abc-123")).await;
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "SAMEORIGIN");
        assert_eq!(response.headers()[REQUEST_ID], "abc-123");
    }

    #[test]
    fn json_depth_counts_arrays_and_objects_outside_strings() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!json_depth_exceeds(b"", 0));
        assert!(!json_depth_exceeds(b"1", 0));
        assert!(json_depth_exceeds(b"{}", 0));
        assert!(!json_depth_exceeds(b"{}", 1));
        assert!(!json_depth_exceeds(nested(32).as_bytes(), 32));
        assert!(json_depth_exceeds(nested(33).as_bytes(), 32));
        // Siblings do not add up.
        assert!(!json_depth_exceeds(br#"[[1],[2],{"a":[3]}]"#, 3));
        assert!(json_depth_exceeds(br#"[[1],[2],{"a":[[3]]}]"#, 3));
        // Objects count like arrays, mixed.
        assert!(json_depth_exceeds(br#"{"a":[{"b":[1]}]}"#, 3));
        assert!(!json_depth_exceeds(br#"{"a":[{"b":[1]}]}"#, 4));
        // Brackets in strings do not count, escaped quotes do not end them.
        assert!(!json_depth_exceeds(br#"{"a":"[[[[{{{{"}"#, 1));
        assert!(!json_depth_exceeds(br#"{"a":"x\"[[[[","b":1}"#, 1));
        assert!(!json_depth_exceeds(br#"{"[[[[\"":"\\"}"#, 1));
        // Depth of a real value: serde_json agrees it parses.
        let body = br#"{"title":"a \"[\" b","body":[[{"k":"]]]"}]]}"#;
        assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok());
        assert!(!json_depth_exceeds(body, 4));
        assert!(json_depth_exceeds(body, 3));
        // `\\` is an escaped backslash: the quote after it ends the string.
        assert!(json_depth_exceeds(br#"{"a":"\\",[[1]]}"#, 2));
        assert!(json_depth_exceeds(br#"{"a":"\\"[[1]]}"#, 2));
        // Unbalanced closers do not go below zero.
        assert!(json_depth_exceeds(b"]]]][[", 1));
    }

    fn origins(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The refusal of `raw`, as a string.
    fn refusal(raw: &str) -> String {
        format!("{:#}", parse_cors_origins(&origins(&[raw])).unwrap_err())
    }

    #[test]
    fn parse_cors_origins_accepts_https_and_loopback_http_origins() {
        let ok = [
            "https://app.example",
            "https://app.example:8443",
            "https://xn--bcher-kva.example",
            "http://localhost:3000",
            "http://127.0.0.1:5173",
            "http://[::1]:8080",
        ];
        let parsed = parse_cors_origins(&origins(&ok)).unwrap();
        assert_eq!(parsed.len(), ok.len());
        for (value, raw) in parsed.iter().zip(ok) {
            assert_eq!(value, raw);
        }
    }

    #[test]
    fn with_dev_origin_adds_localhost_3000_once() {
        assert_eq!(with_dev_origin(Vec::new()), origins(&[DEV_ORIGIN]));
        let listed = origins(&["https://app.example"]);
        assert_eq!(
            with_dev_origin(listed),
            origins(&["https://app.example", DEV_ORIGIN])
        );
        let already = origins(&[DEV_ORIGIN, "https://app.example"]);
        assert_eq!(with_dev_origin(already.clone()), already);
        assert!(parse_cors_origins(&with_dev_origin(Vec::new())).is_ok());
    }

    #[test]
    fn parse_cors_origins_rejects_wildcards() {
        for raw in ["*", "https://*.example.com", "https://app.example*"] {
            let error = refusal(raw);
            assert!(error.contains(CORS_SETTING), "{raw}: {error}");
            assert!(error.contains("wildcard"), "{raw}: {error}");
        }
    }

    #[test]
    fn parse_cors_origins_rejects_null() {
        for raw in ["null", "NULL", "Null"] {
            let error = refusal(raw);
            assert!(error.contains(CORS_SETTING), "{raw}: {error}");
            assert!(error.contains("`null`"), "{raw}: {error}");
        }
    }

    #[test]
    fn parse_cors_origins_rejects_other_schemes() {
        for raw in [
            "ftp://app.example",
            "ws://localhost:3000",
            "wss://app.example",
            "chrome-extension://abcdef",
            "file:///tmp/app.html",
            "data:text/html,hi",
        ] {
            let error = refusal(raw);
            assert!(error.contains(CORS_SETTING), "{raw}: {error}");
            assert!(error.contains("has scheme"), "{raw}: {error}");
        }
    }

    #[test]
    fn parse_cors_origins_rejects_http_off_loopback() {
        for raw in [
            "http://app.example",
            "http://10.0.0.1:8080",
            "http://localhost.example",
            "http://[::2]",
        ] {
            let error = refusal(raw);
            assert!(error.contains(CORS_SETTING), "{raw}: {error}");
            assert!(error.contains("http off loopback"), "{raw}: {error}");
        }
    }

    #[test]
    fn parse_cors_origins_rejects_what_is_not_a_bare_origin() {
        for (raw, origin) in [
            ("https://app.example/", "https://app.example"),
            ("https://app.example/app", "https://app.example"),
            ("https://app.example?x=1", "https://app.example"),
            ("https://app.example#top", "https://app.example"),
            ("https://user@app.example", "https://app.example"),
            ("https://user:pw@app.example", "https://app.example"),
            ("https://app.example:443", "https://app.example"),
            ("http://localhost:80", "http://localhost"),
            ("https://APP.example", "https://app.example"),
            ("HTTPS://app.example", "https://app.example"),
            ("https://bücher.example", "https://xn--bcher-kva.example"),
        ] {
            let error = refusal(raw);
            assert!(error.contains(CORS_SETTING), "{raw}: {error}");
            assert!(error.contains("not a bare origin"), "{raw}: {error}");
            assert!(error.contains(&format!("{origin:?}")), "{raw}: {error}");
        }
    }

    #[test]
    fn parse_cors_origins_rejects_what_is_not_a_url() {
        for raw in [
            "app.example",
            "//app.example",
            "https://",
            "https://app example",
        ] {
            let error = refusal(raw);
            assert!(error.contains(CORS_SETTING), "{raw}: {error}");
            assert!(error.contains("not an origin"), "{raw}: {error}");
        }
    }

    #[test]
    fn parse_cors_origins_rejects_a_list_with_one_bad_entry() {
        let list = origins(&["https://a.example", "*", "https://b.example"]);
        assert!(parse_cors_origins(&list).is_err());
    }

    #[test]
    fn cors_is_none_without_origins_and_refuses_bad_ones() {
        assert!(cors(&[], &[Method::POST]).unwrap().is_none());
        assert!(cors(&origins(&["*"]), &[Method::POST]).is_err());
        assert!(
            cors(&origins(&["https://app.example"]), &[Method::POST])
                .unwrap()
                .is_some()
        );
    }

    async fn preflight(router: Router, origin: &str) -> http::Response<Body> {
        let request = Request::builder()
            .method(Method::OPTIONS)
            .uri("/token")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap();
        router.oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn cors_answers_preflight_of_post_only_route_for_listed_origin_only() {
        let layer = cors(&origins(&["https://app.example"]), &[Method::POST])
            .unwrap()
            .unwrap();
        let router = Router::new()
            .route("/token", post(|| async { "ok" }))
            .layer(layer);

        let allowed = preflight(router.clone(), "https://app.example").await;
        assert_eq!(allowed.status(), StatusCode::OK);
        let h = allowed.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "POST");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization,content-type"
        );
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "600");
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());

        for foreign in [
            "https://evil.example",
            "https://app.example.evil.example",
            "https://APP.example",
            "https://app.example/",
            "null",
        ] {
            let response = preflight(router.clone(), foreign).await;
            assert!(
                response
                    .headers()
                    .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                    .is_none(),
                "{foreign}"
            );
        }
    }
}
