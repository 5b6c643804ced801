//! Security alerts and `/metrics` on the real binaries (issue 10): failed
//! sign-ins raise a `security_alert` JSON warning line on the auth server's
//! stderr; `/metrics` wants `METRICS_TOKEN` when it is set.

use std::time::{Duration, Instant};

use e2e::StackOptions;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{self, Backend};

const TOKEN: &str = "e2e-metrics-token-0123456789";

async fn failed_sign_in(base: &str) -> StatusCode {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let html = http
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let form = e2e::html::form_with_action(&html, "/login").expect("login form");
    let csrf = form.get("csrf_token").unwrap_or_default().to_owned();
    http.post(format!("{base}/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("next", "/"),
            ("email", "nobody@example.com"),
            ("password", "not the password"),
        ])
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn failed_sign_ins_write_a_security_alert_line_and_metrics_want_the_token() {
    let options = StackOptions::default()
        .without_resource_api()
        .auth_env("LOG_FORMAT", "json")
        .auth_env("RATE_LIMIT_LOGIN", "1000/minute")
        .auth_env("RATE_LIMIT_PAGES", "1000/minute")
        .auth_env("LOCKOUT_THRESHOLD", "100")
        .auth_env("ALERT_LOGIN_MIN_ATTEMPTS", "5")
        .auth_env("METRICS_TOKEN", TOKEN);
    let stack = support::start(&Backend::Sqlite, options).await;
    let base = stack.auth.url.clone();
    for _ in 0..6 {
        assert_eq!(failed_sign_in(&base).await, StatusCode::UNAUTHORIZED);
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let alert = loop {
        let found = stack
            .logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["target"] == "security_alert");
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no alert line:\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(alert["level"], "WARN", "{alert}");
    assert_eq!(alert["rule"], "login_failure_rate", "{alert}");
    assert!(
        alert["top_offenders"]
            .as_str()
            .unwrap()
            .contains("ip:127.0.0.1"),
        "{alert}"
    );
    // Fired once: later failures in the window add no line.
    assert_eq!(failed_sign_in(&base).await, StatusCode::UNAUTHORIZED);
    let lines = stack
        .logs()
        .matches("\"target\":\"security_alert\"")
        .count();
    assert_eq!(lines, 1, "{}", stack.logs());

    let url = format!("{base}/metrics");
    let refused = stack.http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let text = stack
        .http
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"portcullis_security_alerts_total{rule="login_failure_rate"} 1"#,
        r#"portcullis_logins_total{outcome="failed"} 7"#,
        r#"http_requests_total{route="/login",method="POST",status="401"} 7"#,
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    assert!(!text.contains(TOKEN));
}
