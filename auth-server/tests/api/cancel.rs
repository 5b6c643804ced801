//! Cancellation safety: clients that hang up mid-request (mid-/token and
//! mid-consent) leave no transaction open on a pooled PostgreSQL connection,
//! and the server keeps serving fresh flows.

use std::net::SocketAddr;
use std::time::Duration;

use futures::future::join_all;
use migrations::sea_orm::{ConnectionTrait, Database, Statement};

use crate::helpers::{AppOptions, Backend, REDIRECT, TestApp, authorize_params, hidden, spawn_app};

/// A request to send and abandon: path, session cookie, form.
type Abandoned = (&'static str, Option<String>, Vec<(&'static str, String)>);

/// Token requests sent, each abandoned after 0.2 to 12 ms.
const TOKEN_ROUNDS: u64 = 240;
/// Consent decisions sent, each abandoned likewise.
const CONSENT_ROUNDS: u64 = 60;

fn patience(round: u64) -> Duration {
    Duration::from_micros(200 + (round * 7919) % 12_000)
}

/// Sends a whole form POST on a raw socket, waits `patience`, then resets
/// the connection without reading the answer: a client that went away.
async fn hang_up(
    address: SocketAddr,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, String)],
    patience: Duration,
) {
    use tokio::io::AsyncWriteExt;
    let body = serde_urlencoded::to_string(form).unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\n{cookie}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(patience).await;
    // RST rather than FIN: the connection is gone at once.
    let _ = socket.set_zero_linger();
    drop(socket);
}

/// This server's connections `idle in transaction` right now.
async fn idle_in_transaction(admin_url: &str, application_name: &str) -> i64 {
    let admin = Database::connect(admin_url).await.unwrap();
    let row = admin
        .query_one(Statement::from_sql_and_values(
            admin.get_database_backend(),
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
            [application_name.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get("", "n").unwrap();
    admin.close().await.unwrap();
    n
}

/// The `portcullis_session=…` pair of a response's `Set-Cookie`.
fn session_cookie(response: &reqwest::Response) -> String {
    let set = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// Signs in without a cookie jar; returns the session cookie, as a raw
/// client would hold it.
async fn signed_in(app: &TestApp) -> String {
    let page = app.http.get(app.url("/login")).send().await.unwrap();
    let anonymous = session_cookie(&page);
    let csrf = hidden(&page.text().await.unwrap(), "csrf_token").unwrap();
    let login = app
        .http
        .post(app.url("/login"))
        .header("cookie", &anonymous)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("next", "/"),
            ("email", "alice@example.com"),
            ("password", crate::helpers::PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 303);
    session_cookie(&login)
}

/// A consent page's CSRF token and pending-request handle.
async fn consent_form(app: &TestApp, cookie: &str, client_id: &str) -> (String, String) {
    let page = app
        .http
        .get(app.url("/authorize"))
        .header("cookie", cookie)
        .query(&authorize_params(client_id, REDIRECT))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200, "consent page");
    let html = page.text().await.unwrap();
    (
        hidden(&html, "csrf_token").unwrap(),
        hidden(&html, "request").unwrap(),
    )
}

test_gates::needs! { [postgres]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disconnects_mid_token_and_consent_leave_no_transaction_open_postgres() {
        let Some(app) = spawn_app(Backend::Postgres, AppOptions::default()).await else {
            return;
        };
        let client = app.client(false, None).await;
        let verifier = "v".repeat(43);
        let cookie = signed_in(&app).await;
        let mut forms: Vec<Abandoned> = Vec::new();
        for round in 0..TOKEN_ROUNDS {
            // Half code exchanges, half refreshes.
            let mut form = client.form();
            if round % 2 == 0 {
                let code = app.code(&client, &verifier, true).await;
                form.extend([
                    ("grant_type", "authorization_code".to_owned()),
                    ("code", code),
                    ("redirect_uri", REDIRECT.to_owned()),
                    ("code_verifier", verifier.clone()),
                ]);
            } else {
                let tokens = app.tokens_for(&client).await;
                form.extend([
                    ("grant_type", "refresh_token".to_owned()),
                    (
                        "refresh_token",
                        tokens["refresh_token"].as_str().unwrap().to_owned(),
                    ),
                ]);
            }
            forms.push(("/token", None, form));
        }
        for _ in 0..CONSENT_ROUNDS {
            let (csrf, handle) = consent_form(&app, &cookie, &client.id).await;
            let form = vec![
                ("csrf_token", csrf),
                ("request", handle),
                ("decision", "allow".to_owned()),
            ];
            forms.push(("/consent", Some(cookie.clone()), form));
        }
        let work = forms.iter().enumerate().map(|(i, (path, cookie, form))| {
            hang_up(
                app.address,
                path,
                cookie.as_deref(),
                form,
                patience(i as u64),
            )
        });
        join_all(work).await;
        let (admin_url, name) = (
            app.db.admin_url().unwrap().to_owned(),
            app.db.application_name().unwrap().to_owned(),
        );
        // Work in flight finishes on its own; a leaked transaction never does.
        let mut open = -1;
        for _ in 0..50 {
            open = idle_in_transaction(&admin_url, &name).await;
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(open, 0, "connections left idle in transaction");
        // Fresh flows work: a consent, a code exchange and a refresh.
        let (csrf, handle) = consent_form(&app, &cookie, &client.id).await;
        let decided = app
            .http
            .post(app.url("/consent"))
            .header("cookie", &cookie)
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("request", handle.as_str()),
                ("decision", "allow"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(decided.status().as_u16(), 303);
        let tokens = app.tokens_for(&client).await;
        let (status, body) = app
            .refresh(&client, tokens["refresh_token"].as_str().unwrap())
            .await;
        assert_eq!(status, 200, "{body}");
        app.stop().await;
    }
}
