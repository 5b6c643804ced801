//! Connection hygiene and graceful shutdown (`shared::serve`) of the real
//! binaries, over raw TCP so that the client is as slow as we say: header
//! and idle deadlines, liveness past the connection cap, and SIGTERM with
//! slow clients connected. SQLite only: no database is involved.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::StackOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::{self, Backend, TestStack};

/// Longest any single raw read may wait.
const READ_LIMIT: Duration = Duration::from_secs(5);

async fn start(options: StackOptions) -> TestStack {
    support::start(&Backend::Sqlite, options).await
}

/// Both services with the same extra environment.
fn both_env(vars: &[(&str, &str)]) -> StackOptions {
    vars.iter().fold(StackOptions::default(), |o, (k, v)| {
        o.auth_env(k, v).resource_env(k, v)
    })
}

fn resource_addr(stack: &TestStack) -> SocketAddr {
    stack.resource.as_ref().expect("resource-api runs").addr
}

/// A connection that sent part of a request line and then nothing.
async fn slow_client(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /healthz HTT").await.unwrap();
    stream
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: portcullis.test\r\n\r\n")
}

/// Sends `request` and reads one response: its head, lower-cased, and body.
async fn exchange(stream: &mut TcpStream, request: &str) -> (String, String) {
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(stream).await
}

async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return (head, body);
            }
        }
        let n = tokio::time::timeout(READ_LIMIT, stream.read(&mut chunk))
            .await
            .expect("response within the read limit")
            .expect("reading the response");
        assert!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// How long until the server closes `stream` (EOF or reset), if within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Waits (bounded) until `logs()` holds `needle`.
async fn wait_for_log(logs: impl Fn() -> String, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = logs();
        if text.contains(needle) || Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_connection_is_closed_after_header_timeout() {
    let stack = start(both_env(&[("HTTP_HEADER_TIMEOUT_SECS", "1")])).await;
    for addr in [stack.auth.addr, resource_addr(&stack)] {
        let mut slow = slow_client(addr).await;
        let closed = closed_within(&mut slow, Duration::from_secs(4))
            .await
            .unwrap_or_else(|| panic!("{addr}: a slow head was still open after 4 s"));
        assert!(
            closed >= Duration::from_millis(700) && closed <= Duration::from_millis(2500),
            "{addr}: closed after {closed:?}, expected about 1 s"
        );
        // A prompt client on a fresh connection is still served.
        let mut prompt = TcpStream::connect(addr).await.unwrap();
        let (head, _) = exchange(&mut prompt, &get("/healthz")).await;
        assert!(head.starts_with("http/1.1 200"), "{addr}: {head}");
    }
}

/// The idle deadline is its own: longer than the header deadline here, so
/// a keep-alive connection outlives the header timeout between requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let stack = start(
        StackOptions::default()
            .without_resource_api()
            .auth_env("HTTP_HEADER_TIMEOUT_SECS", "1")
            .auth_env("HTTP_IDLE_TIMEOUT_SECS", "2"),
    )
    .await;
    let mut client = TcpStream::connect(stack.auth.addr).await.unwrap();
    let (head, _) = exchange(&mut client, &get("/healthz")).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    // Idle for longer than the header timeout: still open and usable.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (head, _) = exchange(&mut client, &get("/healthz")).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");

    let closed = closed_within(&mut client, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection was still open after 5 s");
    assert!(
        closed >= Duration::from_millis(1500) && closed <= Duration::from_millis(3500),
        "closed after {closed:?} idle, expected about 2 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_when_slow_clients_hold_every_connection() {
    let stack = start(
        StackOptions::default()
            .without_resource_api()
            .auth_env("HTTP_MAX_CONNECTIONS", "20")
            .auth_env("HTTP_HEADER_TIMEOUT_SECS", "60"),
    )
    .await;
    let addr = stack.auth.addr;
    let mut hogs = Vec::new();
    for _ in 0..20 {
        hogs.push(slow_client(addr).await);
    }

    // Liveness holds, and quickly.
    let started = Instant::now();
    let mut probe = TcpStream::connect(addr).await.unwrap();
    let (head, body) = exchange(&mut probe, &get("/healthz")).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.contains("ok"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Anything else is turned away at once, with Retry-After, and closed.
    let mut other = TcpStream::connect(addr).await.unwrap();
    let (head, body) = exchange(&mut other, &get(shared::paths::JWKS_PATH)).await;
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("\r\nretry-after: "), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(
        head.contains("\r\nx-content-type-options: nosniff"),
        "{head}"
    );
    assert!(head.contains("\r\nx-request-id: "), "{head}");
    assert!(body.contains("\"status\":503"), "{body}");
    assert!(
        closed_within(&mut other, Duration::from_secs(2))
            .await
            .is_some()
    );

    // One warning for the whole episode, not one per connection.
    let logs = wait_for_log(|| stack.auth.logs.text(), "connection limit reached").await;
    assert_eq!(
        logs.matches("connection limit reached").count(),
        1,
        "expected one warning:\n{logs}"
    );

    // Once the slow clients leave, everything is served again.
    drop(hogs);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = TcpStream::connect(addr).await.unwrap();
        let (head, _) = exchange(&mut again, &get(shared::paths::JWKS_PATH)).await;
        if head.starts_with("http/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "still turned away: {head}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM through kill(1), as `Service::terminate` does, but without
/// waiting, so that the test can act during the drain.
async fn sigterm(pid: u32) {
    let status = tokio::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .await
        .unwrap();
    assert!(status.success(), "kill -TERM {pid}: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_within_deadline_when_slow_clients_are_connected() {
    let mut stack = start(both_env(&[
        ("SHUTDOWN_GRACE_SECS", "2"),
        ("HTTP_HEADER_TIMEOUT_SECS", "60"),
    ]))
    .await;
    let auth_addr = stack.auth.addr;
    let api_addr = resource_addr(&stack);
    let mut slow = Vec::new();
    for addr in [auth_addr, api_addr] {
        for _ in 0..10 {
            slow.push(slow_client(addr).await);
        }
    }
    // A request in flight on auth-server: the head and half of the body.
    let form = "grant_type=client_credentials&client_id=nobody&client_secret=x";
    let (first, rest) = form.split_at(form.len() / 2);
    let mut in_flight = TcpStream::connect(auth_addr).await.unwrap();
    in_flight
        .write_all(
            format!(
                "POST /token HTTP/1.1\r\nHost: portcullis.test\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: {}\r\n\r\n{first}",
                form.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Let both servers take every connection in before the signal.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stack = &mut stack.stack;
    let auth_pid = stack.auth.id().unwrap();
    let api_pid = stack.resource.as_ref().unwrap().id().unwrap();
    let signalled = Instant::now();
    sigterm(auth_pid).await;
    sigterm(api_pid).await;

    // New connections are refused once the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(1);
    while TcpStream::connect(auth_addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "auth-server still accepts after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The request in flight is finished, and its connection closed after it.
    in_flight.write_all(rest.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut in_flight).await;
    assert!(head.starts_with("http/1.1 4"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");

    let limit = Duration::from_secs(4);
    let auth = &mut stack.auth;
    let api = stack.resource.as_mut().unwrap();
    let (auth_status, api_status) = tokio::join!(
        tokio::time::timeout(limit, auth.wait()),
        tokio::time::timeout(limit, api.wait())
    );
    let took = signalled.elapsed();
    let auth_status = auth_status
        .unwrap_or_else(|_| panic!("auth-server still running {limit:?} after SIGTERM"))
        .unwrap();
    let api_status = api_status
        .unwrap_or_else(|_| panic!("resource-api still running {limit:?} after SIGTERM"))
        .unwrap();
    assert!(
        auth_status.success(),
        "auth-server exited with {auth_status}"
    );
    assert!(
        api_status.success(),
        "resource-api exited with {api_status}"
    );
    assert!(took < limit, "{took:?}");

    // The slow clients were dropped at the deadline, which each server said.
    for service in [&stack.auth, stack.resource.as_ref().unwrap()] {
        let logs = wait_for_log(|| service.logs.text(), "closing the connections still open").await;
        assert!(
            logs.contains("closing the connections still open"),
            "{}:\n{logs}",
            service.name
        );
    }
    for mut s in slow {
        assert!(
            closed_within(&mut s, Duration::from_secs(1))
                .await
                .is_some()
        );
    }
}

/// Kubernetes-style drain: after SIGTERM, `/readyz` answers 503 `draining`
/// while the service still accepts and serves for the drain delay; then it
/// stops accepting and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_draining_while_serving_during_drain_delay() {
    let mut stack = start(both_env(&[
        ("SHUTDOWN_DRAIN_DELAY_SECS", "2"),
        ("SHUTDOWN_GRACE_SECS", "1"),
    ]))
    .await;
    let auth_addr = stack.auth.addr;
    let stack = &mut stack.stack;
    let pid = stack.auth.id().unwrap();
    sigterm(pid).await;
    // The signal is handled at once: poll until readiness says so.
    let deadline = Instant::now() + Duration::from_secs(1);
    let (head, body) = loop {
        let mut stream = TcpStream::connect(auth_addr)
            .await
            .expect("still accepting during the drain delay");
        let (head, body) = exchange(&mut stream, &get("/readyz")).await;
        if head.starts_with("http/1.1 503") || Instant::now() > deadline {
            break (head, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(body.contains("draining"), "{body}");
    let mut stream = TcpStream::connect(auth_addr).await.unwrap();
    let (head, _) = exchange(&mut stream, &get("/healthz")).await;
    assert!(head.starts_with("http/1.1 200"), "still serving: {head}");
    let status = tokio::time::timeout(Duration::from_secs(6), stack.auth.wait())
        .await
        .expect("exits after the drain delay and the grace")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Sends `head` (a write refused once the server has closed is ignored)
/// and reads until the server closes: what it answered, lower-cased.
async fn send_until_closed(addr: SocketAddr, head: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(head).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    tokio::time::timeout(READ_LIMIT, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("the server closes a refused connection");
    String::from_utf8_lossy(&buf).to_ascii_lowercase()
}

/// `shared::serve`'s head limits: too many header fields, or a head too
/// large, is refused by hyper with 431 and a closed connection; the server
/// goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused_and_the_server_keeps_serving() {
    let stack = start(StackOptions::default()).await;
    for addr in [stack.auth.addr, resource_addr(&stack)] {
        let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: portcullis.test\r\n");
        for i in 0..200 {
            many.push_str(&format!("X-Filler-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        let answer = send_until_closed(addr, many.as_bytes()).await;
        assert!(
            answer.starts_with("http/1.1 431 request header fields too large"),
            "{addr}: 200 header fields: {answer}"
        );

        // 100 KiB in one header: over the 32 KiB head limit and the 64 KiB
        // buffer, under hyper's default buffer (~400 KiB). hyper answers 431
        // and closes; the client may see the reset of the unread rest
        // first, but never another answer.
        let big = format!(
            "GET /healthz HTTP/1.1\r\nHost: portcullis.test\r\nX-Big: {}\r\n\r\n",
            "a".repeat(100 * 1024)
        );
        let answer = send_until_closed(addr, big.as_bytes()).await;
        assert!(
            answer.is_empty() || answer.starts_with("http/1.1 431 "),
            "{addr}: a 100 KiB head: {answer}"
        );

        let mut prompt = TcpStream::connect(addr).await.unwrap();
        let (head, _) = exchange(&mut prompt, &get("/healthz")).await;
        assert!(head.starts_with("http/1.1 200"), "{addr}: {head}");
    }
}

/// `value` inside `arrays` arrays.
fn nested(arrays: usize, value: serde_json::Value) -> serde_json::Value {
    (0..arrays).fold(value, |inner, _| serde_json::Value::Array(vec![inner]))
}

/// JSON bodies nested deeper than 32 levels are refused before parsing,
/// with a 400 problem naming the limit, on the resource API's notes and the
/// auth server's registration; 10 levels get the usual validation answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_nested_too_deep_are_refused_with_a_problem() {
    use reqwest::{Method, StatusCode};
    use serde_json::json;

    let f = support::fixture_with(
        &Backend::Sqlite,
        StackOptions::default().auth_env("REGISTRATION", "open"),
    )
    .await;
    let grant =
        support::authorize(&f.stack, &f.browser, &f.client.id, &f.user, support::SCOPE).await;
    let tokens =
        support::assert_tokens(&support::exchange(&f.stack, f.client.basic(), &grant).await);
    let users_url = format!("{}/api/v2/users", f.stack.auth.url);

    for (depth, deep) in [(10, false), (32, false), (33, true), (40, true)] {
        // The object is one level, the array chain the rest.
        let note = json!({"title": "t", "body": nested(depth - 1, json!(1))});
        let created = support::api(
            &f.stack,
            Method::POST,
            "/api/v2/notes",
            Some(&tokens.access),
            Some(note),
        )
        .await;
        let user = json!({"email": nested(depth - 1, json!("a@example.com")), "name": "n", "password": "p"});
        let registered = e2e::oauth::OAuthResponse::read(
            f.stack
                .http
                .post(&users_url)
                .json(&user)
                .send()
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        for (what, resp) in [
            ("POST /api/v2/notes", created),
            ("POST /api/v2/users", registered),
        ] {
            let named = resp.body.contains("JSON nested deeper than 32 levels");
            if deep {
                assert_eq!(
                    resp.status,
                    StatusCode::BAD_REQUEST,
                    "{what} {depth} deep: {resp}"
                );
                assert!(named, "{what} {depth} deep: {resp}");
                assert!(
                    resp.header("content-type")
                        .is_some_and(|c| c.starts_with("application/problem+json")),
                    "{what} {depth} deep: {:?}",
                    resp.headers
                );
            } else {
                assert_eq!(
                    resp.status,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{what} {depth} deep: {resp}"
                );
                assert!(!named, "{what} {depth} deep: {resp}");
            }
        }
    }
}
