//! The access log: one line per request, target [`TARGET`], written by the
//! layer that `crate::http::harden` puts around every route.
//!
//! A line holds `request_id`, `method`, `route` (the route template, e.g.
//! `/api/v2/notes/{id}`, or [`UNMATCHED`] when no route matched: a raw path
//! can carry secrets), `status`, `latency_ms`, `client_ip`, and `sub` /
//! `client_id` when the request proved who it is. Never the query string,
//! a header value (`Authorization`, `Cookie`) or a body.
//!
//! Who the caller is is learnt deep inside the handlers (the resource API's
//! token check, the authorization server's client authentication and login
//! session). They write it into the request's [`AccessIdentity`], a shared
//! slot the middleware puts into the request extensions and reads once the
//! response is ready. The slot is also reachable without the request, for
//! code that no longer holds it: [`record_sub`], [`record_client_id`] and
//! [`record_client_ip`] write into the slot of the request being served
//! (a task-local set by the middleware; a handler spawned into its own task
//! carries it over with [`AccessIdentity::scope`]). Outside a request they
//! do nothing.

use std::borrow::Cow;
use std::future::Future;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode};
use tracing::Instrument;

/// The target of access lines (`RUST_LOG=access=off` silences them).
pub const TARGET: &str = "access";

/// The `route` of a request that matched no route.
pub const UNMATCHED: &str = "-";

/// The status logged for a request whose client went away before the
/// answer was ready (nginx's "client closed request").
pub const CLIENT_CLOSED: u16 = 499;

/// Longest `sub` or `client_id` written to a line; longer values are cut.
const MAX_ID_CHARS: usize = 128;

#[derive(Debug, Default)]
struct Identity {
    sub: Option<String>,
    client_id: Option<String>,
    client_ip: Option<IpAddr>,
}

/// Who made the request, as far as the handlers learnt it: a slot shared
/// between the access-log middleware and the handlers (see the module
/// documentation). Cloning shares the slot.
#[derive(Debug, Clone, Default)]
pub struct AccessIdentity(Arc<Mutex<Identity>>);

tokio::task_local! {
    static CURRENT: AccessIdentity;
}

/// Keeps identifiers printable and short: control characters dropped, at
/// most [`MAX_ID_CHARS`] characters.
fn clean(value: &str) -> String {
    // Printable ASCII (ids as issued) is copied as it is.
    if value.len() <= MAX_ID_CHARS && value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return value.to_owned();
    }
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ID_CHARS)
        .collect()
}

impl AccessIdentity {
    fn update(&self, f: impl FnOnce(&mut Identity)) {
        if let Ok(mut identity) = self.0.lock() {
            f(&mut identity);
        }
    }

    /// The token's or session's subject (a user id).
    pub fn set_sub(&self, sub: &str) {
        self.update(|i| i.sub = Some(clean(sub)));
    }

    /// The authenticated client, or the client the token was issued to.
    pub fn set_client_id(&self, client_id: &str) {
        self.update(|i| i.client_id = Some(clean(client_id)));
    }

    /// The client address (`crate::client_ip` works it out).
    pub fn set_client_ip(&self, ip: IpAddr) {
        self.update(|i| i.client_ip = Some(ip));
    }

    /// `(sub, client_id, client_ip)` as recorded so far.
    pub fn get(&self) -> (Option<String>, Option<String>, Option<IpAddr>) {
        self.0
            .lock()
            .map(|i| (i.sub.clone(), i.client_id.clone(), i.client_ip))
            .unwrap_or_default()
    }

    /// The slot of the request being served, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `future` with `slot` as the current one (for work spawned into
    /// a task of its own, which does not inherit task-locals); with `None`,
    /// runs it as it is.
    pub async fn scope<F: Future>(slot: Option<Self>, future: F) -> F::Output {
        match slot {
            Some(slot) => CURRENT.scope(slot, future).await,
            None => future.await,
        }
    }
}

/// Records the subject in the current request's slot (no-op outside one).
pub fn record_sub(sub: &str) {
    let _ = CURRENT.try_with(|slot| slot.set_sub(sub));
}

/// Records the client id in the current request's slot (no-op outside one).
pub fn record_client_id(client_id: &str) {
    let _ = CURRENT.try_with(|slot| slot.set_client_id(client_id));
}

/// Records the client address in the current request's slot (no-op outside
/// one).
pub fn record_client_ip(ip: IpAddr) {
    let _ = CURRENT.try_with(|slot| slot.set_client_ip(ip));
}

/// What the line of one request says, written when it is dropped: after
/// the response, or when the client goes away and the request's future is
/// dropped unfinished (then with status [`CLIENT_CLOSED`]). Holds nothing
/// it would have to allocate for: the route template is the router's own
/// (`MatchedPath` is shared), the request id is borrowed or on the stack.
struct Line<'a> {
    started: Instant,
    request_id: &'a str,
    method: Method,
    route: Option<MatchedPath>,
    identity: AccessIdentity,
    status: Option<StatusCode>,
}

impl Line<'_> {
    fn route(&self) -> &str {
        self.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str)
    }
}

/// An address written as text on the stack (`-` when unknown).
struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    fn new(ip: Option<IpAddr>) -> Self {
        let mut text = Self {
            buf: [0; 48],
            len: 0,
        };
        let mut cursor = std::io::Cursor::new(&mut text.buf[..]);
        let written = match ip {
            Some(ip) => write!(cursor, "{ip}"),
            None => write!(cursor, "-"),
        };
        if written.is_ok() {
            text.len = usize::try_from(cursor.position()).unwrap_or(0);
        }
        text
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("-")
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let latency_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        let status = self.status.map_or(CLIENT_CLOSED, |s| s.as_u16());
        let route = self.route();
        let Ok(identity) = self.identity.0.lock() else {
            return;
        };
        crate::metrics::http_request(route, &self.method, status, elapsed, identity.client_ip);
        let client_ip = IpText::new(identity.client_ip);
        tracing::info!(
            target: TARGET,
            request_id = self.request_id,
            method = self.method.as_str(),
            route,
            status,
            latency_ms,
            client_ip = client_ip.as_str(),
            sub = identity.sub.as_deref(),
            client_id = identity.client_id.as_deref(),
            "access"
        );
    }
}

/// How a client's request id is written to the log: as it came if it is
/// printable and not too long (`-` otherwise); control characters dropped.
pub(crate) fn request_id_text(value: &HeaderValue) -> Cow<'_, str> {
    match value.to_str() {
        Ok(v) if !v.is_empty() && v.len() <= MAX_ID_CHARS => {
            if v.chars().any(char::is_control) {
                Cow::Owned(clean(v))
            } else {
                Cow::Borrowed(v)
            }
        }
        _ => Cow::Borrowed("-"),
    }
}

/// The request's span (`method`, `route`, `request_id`) and its access
/// line around `run` (the rest of the stack). Called by
/// `crate::http::harden`'s layer, inside the router's matching (so the
/// route template is known) and with the request id already settled.
pub(crate) async fn observe<F, Fut>(mut request: Request, request_id: &str, run: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let identity = AccessIdentity::default();
    request.extensions_mut().insert(identity.clone());
    let mut line = Line {
        started: Instant::now(),
        request_id,
        method: request.method().clone(),
        route: request.extensions().get::<MatchedPath>().cloned(),
        identity: identity.clone(),
        status: None,
    };
    let span = tracing::info_span!(
        "request",
        method = line.method.as_str(),
        route = line.route(),
        request_id,
    );
    let response = CURRENT.scope(identity, run(request)).instrument(span).await;
    line.status = Some(response.status());
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn record_outside_a_request_does_nothing() {
        record_sub("alice");
        record_client_id("app");
        assert!(AccessIdentity::current().is_none());
    }

    #[tokio::test]
    async fn record_writes_into_the_scoped_slot_across_a_spawned_task() {
        let slot = AccessIdentity::default();
        CURRENT
            .scope(slot.clone(), async {
                record_sub("alice");
                // A task of its own inherits nothing; `scope` carries it.
                let carried = AccessIdentity::current();
                tokio::spawn(AccessIdentity::scope(carried, async {
                    record_client_id("app\nx");
                    record_client_ip(IpAddr::from([192, 0, 2, 1]));
                }))
                .await
                .unwrap();
            })
            .await;
        assert_eq!(
            slot.get(),
            (
                Some("alice".to_owned()),
                Some("appx".to_owned()),
                Some(IpAddr::from([192, 0, 2, 1]))
            )
        );
    }

    use crate::test_util::Captured;

    async fn send(router: &axum::Router, method: &str, uri: &str) -> StatusCode {
        use tower::ServiceExt;
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::AUTHORIZATION, "Bearer SECRET-TOKEN")
            .header(http::header::COOKIE, "portcullis_session=SECRET-COOKIE")
            .body(axum::body::Body::from("password=SECRET-BODY"))
            .unwrap();
        router.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn harden_writes_one_json_access_line_per_request_without_secrets() {
        use axum::routing::get;
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = crate::telemetry::json_subscriber(
            tracing_subscriber::EnvFilter::new("info"),
            move || writer.clone(),
        );
        let _guard = tracing::subscriber::set_default(subscriber);
        let proxies = Arc::new(crate::client_ip::TrustedProxies::default());
        let router = axum::Router::new()
            .route(
                "/api/v2/notes/{id}",
                get(|| async {
                    record_sub("user-1");
                    record_client_id("app-1");
                    tracing::info!("inside the handler");
                    "ok"
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                proxies,
                crate::client_ip::layer,
            ));
        let router = crate::http::harden(router, std::time::Duration::from_secs(5));

        let ok = send(&router, "GET", "/api/v2/notes/SECRET-ID?code=SECRET-CODE").await;
        assert_eq!(ok, StatusCode::OK);
        let missing = send(&router, "POST", "/SECRET-PATH?token=SECRET-QUERY").await;
        assert_eq!(missing, StatusCode::NOT_FOUND);

        let lines = captured.lines();
        let text = serde_json::to_string(&lines).unwrap();
        assert!(!text.contains("SECRET"), "{text}");
        let access: Vec<_> = lines.iter().filter(|l| l["target"] == TARGET).collect();
        assert_eq!(access.len(), 2, "{text}");
        for line in &access {
            for field in ["timestamp", "level", "message", "request_id", "latency_ms"] {
                assert!(line.get(field).is_some(), "{field} missing: {line}");
            }
            assert_eq!(line["level"], "INFO");
            assert!(line["latency_ms"].is_f64(), "{line}");
            // No `ConnectInfo` in a oneshot: the client_ip layer says 0.0.0.0.
            assert_eq!(line["client_ip"], "0.0.0.0");
            assert_eq!(line["request_id"].as_str().unwrap().len(), 36, "{line}");
        }
        assert_eq!(access[0]["method"], "GET");
        assert_eq!(access[0]["route"], "/api/v2/notes/{id}");
        assert_eq!(access[0]["status"], 200);
        assert_eq!(access[0]["sub"], "user-1");
        assert_eq!(access[0]["client_id"], "app-1");
        assert_eq!(access[1]["method"], "POST");
        assert_eq!(access[1]["route"], UNMATCHED);
        assert_eq!(access[1]["status"], 404);
        assert!(access[1].get("sub").is_none() && access[1].get("client_id").is_none());
        // The handler's own line carries the request's span.
        let inner = lines
            .iter()
            .find(|l| l["message"] == "inside the handler")
            .unwrap();
        assert_eq!(inner["span"]["route"], "/api/v2/notes/{id}");
        assert_eq!(inner["span"]["request_id"], access[0]["request_id"]);
    }

    #[tokio::test]
    async fn log_writes_client_closed_when_the_request_is_dropped_unanswered() {
        use axum::routing::get;
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = crate::telemetry::json_subscriber(
            tracing_subscriber::EnvFilter::new("info"),
            move || writer.clone(),
        );
        let _guard = tracing::subscriber::set_default(subscriber);
        let router = axum::Router::new().route("/slow", get(std::future::pending::<()>));
        let router = crate::http::harden(router, std::time::Duration::from_secs(60));
        let gave_up = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            send(&router, "GET", "/slow"),
        )
        .await;
        assert!(gave_up.is_err());
        let lines = captured.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["route"], "/slow");
        assert_eq!(lines[0]["status"], CLIENT_CLOSED);
        assert_eq!(lines[0]["client_ip"], "-");
    }

    #[test]
    fn clean_drops_control_characters_and_caps_length() {
        assert_eq!(clean("a\u{1b}[31mb\r\n"), "a[31mb");
        assert_eq!(clean(&"x".repeat(500)).len(), MAX_ID_CHARS);
    }
}
