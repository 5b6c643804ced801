//! `/api/v1` (deprecated) beside `/api/v2`: the lifecycle headers before the
//! sunset, `410 Gone` after it (the application's clock is moved), and a
//! matrix proving that every v1 route applies exactly the authentication,
//! scopes, ownership checks, validation, limits and response filtering of
//! its v2 twin.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use reqwest::{Method, Response, StatusCode};
use resource_api::clock::Clock;
use serde_json::{Value, json};

use crate::helpers::{
    ALLOWED_ORIGIN, Backend, TestApp, assert_problem, spawn_app_with, spawn_app_with_clock,
};

const RW: &str = "notes:read notes:write";
const DEPRECATION: &str = "2026-01-01T00:00:00Z";
const DEPRECATION_HEADER: &str = "@1767225600";
const SUNSET: &str = "2027-07-01T00:00:00Z";
const SUNSET_UNIX: i64 = 1_814_400_000;
const SUNSET_HEADER: &str = "Thu, 01 Jul 2027 00:00:00 GMT";
const GUIDE: &str = "https://docs.example/api/v1-to-v2";
const LINK_HEADER: &str =
    r#"<https://docs.example/api/v1-to-v2>; rel="deprecation"; type="text/html""#;

/// The application with its clock at `now` (unix seconds), movable.
async fn spawn_at(now: i64) -> (TestApp, Arc<AtomicI64>) {
    spawn_on(Backend::Sqlite, now).await.unwrap()
}

/// As [`spawn_at`] on `backend` (`None`: PostgreSQL is not configured).
async fn spawn_on(backend: Backend, now: i64) -> Option<(TestApp, Arc<AtomicI64>)> {
    let at = Arc::new(AtomicI64::new(now));
    let read = at.clone();
    let clock = Clock::from_fn(move || {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(read.load(Ordering::SeqCst)).unwrap())
    });
    let app = spawn_app_with_clock(backend, clock, |s| {
        s.api_v1_deprecation = DEPRECATION.into();
        s.api_v1_sunset = SUNSET.into();
        s.api_v1_migration_guide = GUIDE.into();
        // Many requests without a token from one address: not this test.
        s.rate_limit_anonymous = "1000/minute".into();
        s.rate_limit_standard = "1000/minute".into();
    })
    .await?;
    Some((app, at))
}

/// Before the sunset (and after the deprecation).
async fn spawn_before_sunset() -> (TestApp, Arc<AtomicI64>) {
    spawn_at(SUNSET_UNIX - 86_400 * 30).await
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// `/api/{version}{path}`.
fn at(version: &str, path: &str) -> String {
    format!("/api/{version}{path}")
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn create(app: &TestApp, version: &str, token: &str, title: &str) -> Value {
    let response = send(
        app,
        Method::POST,
        &at(version, "/notes"),
        Some(token),
        Some(json!({"title": title, "body": "secret body"})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

fn assert_lifecycle_headers(response: &Response, what: &str) {
    let headers = response.headers();
    assert_eq!(headers["deprecation"], DEPRECATION_HEADER, "{what}");
    assert_eq!(headers["sunset"], SUNSET_HEADER, "{what}");
    assert_eq!(headers["link"], LINK_HEADER, "{what}");
}

fn assert_no_lifecycle_headers(response: &Response, what: &str) {
    for name in ["deprecation", "sunset", "link"] {
        assert!(
            response.headers().get(name).is_none(),
            "{what}: {name} on v2"
        );
    }
}

/// Every route of a version: (method, path under the version, body).
fn routes(note_id: &str) -> Vec<(Method, String, Option<Value>)> {
    let note = format!("/notes/{note_id}");
    vec![
        (Method::GET, "/me".into(), None),
        (Method::GET, "/notes".into(), None),
        (Method::GET, "/notes?q=secret&limit=5".into(), None),
        (
            Method::POST,
            "/notes".into(),
            Some(json!({"title": "new", "body": "b"})),
        ),
        (Method::GET, note.clone(), None),
        (
            Method::PATCH,
            note.clone(),
            Some(json!({"title": "changed"})),
        ),
        (Method::DELETE, note, None),
    ]
}

#[tokio::test]
async fn v1_routes_carry_deprecation_headers_before_sunset_and_v2_none() {
    let (app, _) = spawn_before_sunset().await;
    let token = app.token("alice", RW);
    for version in ["v1", "v2"] {
        let id = create(&app, version, &token, "mine").await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for (method, path, body) in routes(&id) {
            let what = format!("{method} {}", at(version, &path));
            let response = send(
                &app,
                method.clone(),
                &at(version, &path),
                Some(&token),
                body,
            )
            .await;
            assert!(
                response.status().is_success(),
                "{what}: {}",
                response.status()
            );
            if version == "v1" {
                assert_lifecycle_headers(&response, &what);
            } else {
                assert_no_lifecycle_headers(&response, &what);
            }
            // Without a token: the same 401, the headers on v1 too.
            let response = send(&app, method, &at(version, &path), None, None).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
            if version == "v1" {
                assert_lifecycle_headers(&response, &what);
            } else {
                assert_no_lifecycle_headers(&response, &what);
            }
        }
    }
    // Beyond the API: nothing.
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_no_lifecycle_headers(&health, "/healthz");
}

#[tokio::test]
async fn v1_answers_410_problem_with_guide_from_sunset_and_v2_keeps_working() {
    let (app, clock) = spawn_at(SUNSET_UNIX - 1).await;
    let token = app.token("alice", RW);
    let note = create(&app, "v1", &token, "before the end").await;
    let id = note["id"].as_str().unwrap().to_owned();
    let response = send(&app, Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(response.status(), StatusCode::OK);

    clock.store(SUNSET_UNIX, Ordering::SeqCst);
    for (method, path, body) in routes(&id) {
        let path = at("v1", &path);
        for token in [Some(token.as_str()), None] {
            let what = format!("{method} {path} token={}", token.is_some());
            let response = send(&app, method.clone(), &path, token, body.clone()).await;
            assert_lifecycle_headers(&response, &what);
            assert_eq!(response.headers()["cache-control"], "no-store", "{what}");
            assert!(response.headers().get("x-request-id").is_some(), "{what}");
            assert_eq!(
                response.headers()["x-content-type-options"],
                "nosniff",
                "{what}"
            );
            let problem = assert_problem(response, StatusCode::GONE).await;
            assert_eq!(
                keys(&problem),
                set(&[
                    "detail",
                    "migration_guide",
                    "status",
                    "sunset",
                    "title",
                    "type"
                ]),
                "{what}: {problem}"
            );
            assert_eq!(problem["title"], "Gone");
            assert_eq!(problem["migration_guide"], GUIDE);
            assert_eq!(problem["sunset"], SUNSET);
            assert!(
                problem["detail"].as_str().unwrap().contains(GUIDE),
                "{problem}"
            );
        }
    }
    // Nothing ran: the note is still there, unchanged, through v2.
    let response = send(
        &app,
        Method::GET,
        &at("v2", &format!("/notes/{id}")),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_no_lifecycle_headers(&response, "v2 after the sunset");
    let kept: Value = response.json().await.unwrap();
    assert_eq!(kept, note);
    // Later still: gone.
    clock.store(SUNSET_UNIX + 86_400 * 365, Ordering::SeqCst);
    let response = send(&app, Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(response.status(), StatusCode::GONE);
}

/// (status, `WWW-Authenticate`, top-level keys of the JSON body) of an answer.
async fn shape(response: Response) -> (StatusCode, Option<String>, BTreeSet<String>) {
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let keys = if text.is_empty() {
        BTreeSet::new()
    } else {
        keys(&serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
    };
    (status, challenge, keys)
}

/// The same request on v1 and v2 answers the same: `expected`, the same
/// challenge and the same exact body keys.
async fn same_on_both(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    raw_body: Option<&str>,
    expected: StatusCode,
) {
    let mut shapes = Vec::new();
    for version in ["v1", "v2"] {
        let mut request = app
            .client
            .request(method.clone(), app.url(&at(version, path)));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        if let Some(raw) = raw_body {
            request = request
                .header("content-type", "application/json")
                .body(raw.to_owned());
        }
        let response = request.send().await.unwrap();
        let what = format!("{method} {}", at(version, path));
        assert_eq!(response.status(), expected, "{what}");
        if expected.is_client_error() {
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{what}"
            );
        }
        shapes.push(shape(response).await);
    }
    assert_eq!(shapes[0], shapes[1], "{method} {path}: v1 and v2 differ");
}

#[tokio::test]
async fn every_v1_route_applies_the_same_security_as_v2() {
    same_security_matrix(Backend::Sqlite).await;
}

test_gates::needs! { [postgres]
    #[tokio::test]
    async fn every_v1_route_applies_the_same_security_as_v2_on_postgres() {
        same_security_matrix(Backend::Postgres).await;
    }
}

async fn same_security_matrix(backend: Backend) {
    let Some((app, _)) = spawn_on(backend, SUNSET_UNIX - 86_400 * 30).await else {
        return;
    };
    let owner = app.token("alice-owner", RW);
    let other = app.token("mallory-other", RW);
    let unscoped = app.token("alice-owner", "profile");
    let reader = app.token("alice-owner", "notes:read");
    let mut expired = app.claims("alice-owner", RW);
    expired.exp = 1;
    let expired = app.sign(&expired);
    let note = create(&app, "v2", &owner, "alice's").await;
    let id = note["id"].as_str().unwrap().to_owned();
    let note_path = format!("/notes/{id}");
    let big = format!(r#"{{"title":"x","body":"{}"}}"#, "a".repeat(70 * 1024));

    for (method, path, body) in routes(&id) {
        // No token: 401; an expired one: 401 invalid_token.
        same_on_both(
            &app,
            method.clone(),
            &path,
            None,
            body.clone(),
            None,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        same_on_both(
            &app,
            method.clone(),
            &path,
            Some(&expired),
            body.clone(),
            None,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        if path == "/me" {
            continue;
        }
        // Without the route's scope: 403.
        same_on_both(
            &app,
            method.clone(),
            &path,
            Some(&unscoped),
            body.clone(),
            None,
            StatusCode::FORBIDDEN,
        )
        .await;
        if method != Method::GET {
            same_on_both(
                &app,
                method.clone(),
                &path,
                Some(&reader),
                body.clone(),
                None,
                StatusCode::FORBIDDEN,
            )
            .await;
        }
    }

    // Another user's note: 404 on every method, and it stays as it was.
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let body = (method == Method::PATCH).then(|| json!({"title": "stolen"}));
        same_on_both(
            &app,
            method,
            &note_path,
            Some(&other),
            body,
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    // Another user's list never holds it, and a search does not find it.
    for path in ["/notes", "/notes?q=alice"] {
        for version in ["v1", "v2"] {
            let response = send(&app, Method::GET, &at(version, path), Some(&other), None).await;
            let list: Value = response.json().await.unwrap();
            assert_eq!(list["notes"], json!([]), "{version} {path}");
        }
    }
    let response = send(&app, Method::GET, &at("v2", &note_path), Some(&owner), None).await;
    assert_eq!(response.json::<Value>().await.unwrap(), note);

    // Invalid bodies and queries: 422; unknown fields too (no mass
    // assignment through v1).
    for (method, path, body) in [
        (Method::POST, "/notes", json!({"title": "", "body": "x"})),
        (
            Method::POST,
            "/notes",
            json!({"title": "t", "owner_id": "mallory-other"}),
        ),
        (
            Method::PATCH,
            note_path.as_str(),
            json!({"title": "\u{202e}evil"}),
        ),
        (
            Method::PATCH,
            note_path.as_str(),
            json!({"id": "00000000-0000-0000-0000-000000000000"}),
        ),
    ] {
        same_on_both(
            &app,
            method,
            path,
            Some(&owner),
            Some(body),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    for query in [
        "/notes?limit=0",
        "/notes?order_by=owner_id",
        "/notes?q=x&q=y",
        "/notes?bogus=1",
    ] {
        same_on_both(
            &app,
            Method::GET,
            query,
            Some(&owner),
            None,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    // Oversized: 413.
    for (method, path) in [
        (Method::POST, "/notes"),
        (Method::PATCH, note_path.as_str()),
    ] {
        same_on_both(
            &app,
            method,
            path,
            Some(&owner),
            None,
            Some(&big),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await;
    }
    // An unknown method: 405, an unknown route: 404.
    same_on_both(
        &app,
        Method::PUT,
        "/notes",
        Some(&owner),
        None,
        None,
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    same_on_both(
        &app,
        Method::GET,
        "/users",
        Some(&owner),
        None,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    app.cleanup();
}

#[tokio::test]
async fn v1_returns_exactly_the_fields_of_v2() {
    let (app, _) = spawn_before_sunset().await;
    let token = app.token("alice", RW);
    const NOTE: &[&str] = &["body", "created_at", "id", "title", "updated_at"];

    let created = send(
        &app,
        Method::POST,
        "/api/v1/notes",
        Some(&token),
        Some(json!({"title": "t", "body": "<b>ok</b><script>x</script>"})),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/notes/{id}"));
    assert_eq!(keys(&created), set(NOTE), "{created}");
    assert_eq!(created["body"], "<b>ok</b>", "sanitised as on v2");

    for path in [format!("/notes/{id}"), "/notes".into(), "/me".into()] {
        let v1 = send(&app, Method::GET, &at("v1", &path), Some(&token), None).await;
        let v2 = send(&app, Method::GET, &at("v2", &path), Some(&token), None).await;
        assert_eq!(v1.status(), StatusCode::OK);
        assert_eq!(v1.headers()["cache-control"], "no-store");
        let (v1, v2): (Value, Value) = (v1.json().await.unwrap(), v2.json().await.unwrap());
        assert_eq!(v1, v2, "{path}");
        let expected: &[&str] = match path.as_str() {
            "/notes" => &["next_cursor", "notes"],
            "/me" => &["client_id", "roles", "scope", "sub"],
            _ => NOTE,
        };
        assert_eq!(keys(&v1), set(expected), "{path}: {v1}");
        if path == "/notes" {
            for note in v1["notes"].as_array().unwrap() {
                assert_eq!(keys(note), set(NOTE), "{note}");
            }
        }
    }
    let patched = send(
        &app,
        Method::PATCH,
        &format!("/api/v1/notes/{id}"),
        Some(&token),
        Some(json!({"body": "new"})),
    )
    .await;
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(keys(&patched), set(NOTE), "{patched}");
}

#[tokio::test]
async fn v1_and_v2_share_the_rate_limit_buckets() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.rate_limit_standard = "4/minute".into();
        s.rate_limit_search = "2/minute".into();
    })
    .await
    .unwrap();
    let token = app.token("alice", "notes:read");
    // The search bucket: one search on each version, the third refused.
    for version in ["v2", "v1"] {
        let response = send(
            &app,
            Method::GET,
            &at(version, "/notes?q=a"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{version}");
    }
    let refused = send(&app, Method::GET, "/api/v1/notes?q=a", Some(&token), None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().get("deprecation").is_some());
    // The tier bucket (4: two searches and the refused one took three).
    let response = send(&app, Method::GET, "/api/v2/me", Some(&token), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let refused = send(&app, Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn v1_answers_cors_as_v2() {
    let (app, _) = spawn_before_sunset().await;
    for version in ["v1", "v2"] {
        let preflight = app
            .client
            .request(Method::OPTIONS, app.url(&at(version, "/notes")))
            .header("origin", ALLOWED_ORIGIN)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert!(preflight.status().is_success(), "{version}");
        assert_eq!(
            preflight.headers()["access-control-allow-origin"],
            ALLOWED_ORIGIN
        );
        let foreign = app
            .client
            .request(Method::OPTIONS, app.url(&at(version, "/notes")))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert!(
            foreign
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{version}"
        );
    }
}

#[tokio::test]
async fn requests_are_counted_per_version_and_per_v1_client() {
    let (app, _) = spawn_before_sunset().await;
    let client_id = format!("c_legacy_{}", uuid::Uuid::new_v4().simple());
    let mut claims = app.claims("alice", RW);
    claims.client_id = client_id.clone();
    let token = app.sign(&claims);
    for path in ["/api/v1/me", "/api/v1/notes", "/api/v2/me"] {
        let response = send(&app, Method::GET, path, Some(&token), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("portcullis_api_requests_total{"))
        .collect();
    let v1 = lines
        .iter()
        .find(|line| line.contains(&format!("client_id=\"{client_id}\"")))
        .unwrap_or_else(|| panic!("no v1 series of the client:\n{metrics}"));
    assert!(v1.contains("version=\"v1\""), "{v1}");
    assert!(v1.ends_with(" 2"), "{v1}");
    assert!(lines.iter().any(|line| line.contains("version=\"v2\"")));
    assert!(
        lines
            .iter()
            .filter(|line| line.contains("version=\"v2\""))
            .all(|line| line.contains("client_id=\"\"")),
        "a v2 series with a client label:\n{metrics}"
    );
}
