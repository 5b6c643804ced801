//! A real browser for the pages: Debian's headless Chromium driven through
//! its chromedriver (WebDriver) with fantoccini. An HTTP client does not
//! enforce CSP; Chromium does, including `form-action` on the redirects that
//! follow a form submission.
//!
//! chromedriver is started with `--port=0` and `kill_on_drop`; its port is
//! read from its `started successfully on port N` line, and the session is
//! used once `/status` says ready. Every browser gets a fresh profile
//! (`--user-data-dir` in a temp dir). On drop the WebDriver session is
//! deleted (which quits Chromium, that chromedriver's kill would orphan)
//! before chromedriver is killed.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::time::Instant;
use url::Url;

/// Debian's `chromium` package.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `chromium-driver` package.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to listen and be ready, and Chromium to
/// start a session.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Most chromedriver output lines kept.
const MAX_LOG_LINES: usize = 2000;

/// The arguments every browser gets (before `--user-data-dir`).
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// None when Chromium and chromedriver are installed, else what is missing.
pub fn missing() -> Option<String> {
    let absent: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).is_file())
        .collect();
    if absent.is_empty() {
        None
    } else {
        Some(format!("{} not found", absent.join(" and ")))
    }
}

/// One browser console entry (see [`Chromium::browser_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleEntry {
    /// `SEVERE`, `WARNING`, `INFO`, …
    pub level: String,
    /// `console-api`, `security`, `network`, `javascript`, …
    pub source: String,
    pub message: String,
}

impl ConsoleEntry {
    /// Whether this is Chromium's report of a Content Security Policy
    /// violation (`Refused to … because it violates the following Content
    /// Security Policy directive …`, including a refused frame).
    pub fn is_csp_violation(&self) -> bool {
        self.message.contains("Content Security Policy")
    }
}

impl std::fmt::Display for ConsoleEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} {}] {}", self.level, self.source, self.message)
    }
}

/// A headless Chromium session. See the module documentation.
pub struct Chromium {
    pub client: Client,
    /// `http://127.0.0.1:PORT` of chromedriver.
    pub driver_url: String,
    driver_addr: SocketAddr,
    session_id: Option<String>,
    logs: Arc<Mutex<VecDeque<String>>>,
    // Dropped in this order: the session is deleted in `drop`, then
    // chromedriver is killed, then the profile is removed.
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Chromium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chromium")
            .field("driver_url", &self.driver_url)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl Chromium {
    /// Starts chromedriver and a Chromium session with a fresh profile.
    pub async fn start() -> anyhow::Result<Self> {
        if let Some(missing) = missing() {
            bail!("{missing} (Debian packages chromium and chromium-driver)");
        }
        let profile = tempfile::Builder::new()
            .prefix("portcullis-chromium-")
            .tempdir()
            .context("creating the Chromium profile dir")?;
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {CHROMEDRIVER}"))?;
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        let (port_tx, port_rx) = oneshot::channel();
        if let Some(stdout) = driver.stdout.take() {
            collect(stdout, logs.clone(), Some(port_tx));
        }
        if let Some(stderr) = driver.stderr.take() {
            collect(stderr, logs.clone(), None);
        }
        let port = match tokio::time::timeout(START_TIMEOUT, port_rx).await {
            Ok(Ok(port)) => port,
            Ok(Err(_)) => bail!(
                "chromedriver ended without saying its port:\n{}",
                text(&logs)
            ),
            Err(_) => bail!(
                "chromedriver did not say its port within {START_TIMEOUT:?}:\n{}",
                text(&logs)
            ),
        };
        let driver_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let driver_url = format!("http://{driver_addr}");
        wait_ready(&driver_url, &mut driver, &logs).await?;

        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        // The console (CSP violations, CORS refusals, framing refusals) is
        // kept by chromedriver for `browser_log`.
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            bail!("capabilities are not an object");
        };
        let client = tokio::time::timeout(
            START_TIMEOUT,
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&driver_url),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "no WebDriver session within {START_TIMEOUT:?}:\n{}",
                text(&logs)
            )
        })?
        .map_err(|e| {
            anyhow!(
                "starting Chromium through chromedriver: {e}\n{}",
                text(&logs)
            )
        })?;
        let session_id = client.session_id().await.ok().flatten();
        Ok(Self {
            client,
            driver_url,
            driver_addr,
            session_id,
            logs,
            _driver: driver,
            _profile: profile,
        })
    }

    /// chromedriver's output so far.
    pub fn driver_logs(&self) -> String {
        text(&self.logs)
    }

    /// The browser console entries since the last call (chromedriver's
    /// `POST /session/{id}/se/log` with `{"type":"browser"}`, which
    /// fantoccini does not offer): every page of the session, including
    /// those already left, and messages Chromium writes itself (CSP
    /// violations, CORS refusals, refused frames).
    pub async fn browser_log(&self) -> anyhow::Result<Vec<ConsoleEntry>> {
        let id = self
            .session_id
            .as_deref()
            .context("no WebDriver session id")?;
        let url = format!("{}/session/{id}/se/log", self.driver_url);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let resp = http
            .post(&url)
            .json(&json!({ "type": "browser" }))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .with_context(|| format!("POST {url}: no JSON"))?;
        if !status.is_success() {
            bail!("POST {url}: {status} {body}");
        }
        let entries = body
            .get("value")
            .and_then(Value::as_array)
            .with_context(|| format!("POST {url}: no log entries in {body}"))?;
        Ok(entries
            .iter()
            .map(|entry| ConsoleEntry {
                level: entry
                    .get("level")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                source: entry
                    .get("source")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                message: entry
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect())
    }

    /// The URL the browser is on.
    pub async fn url(&self) -> anyhow::Result<Url> {
        self.client
            .current_url()
            .await
            .map_err(|e| anyhow!("reading the current URL: {e}"))
    }

    /// Polls the current URL every 100 ms until `done` accepts it; after
    /// `timeout`, an error naming the last URL and `what` was awaited.
    pub async fn wait_for_url(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Url) -> bool,
    ) -> anyhow::Result<Url> {
        let deadline = Instant::now() + timeout;
        loop {
            let url = self.url().await?;
            if done(&url) {
                return Ok(url);
            }
            if Instant::now() >= deadline {
                bail!("the browser is still on {url} after {timeout:?}, waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the session (Chromium quits) and then chromedriver.
    pub async fn quit(mut self) -> anyhow::Result<()> {
        let client = self.client.clone();
        let closed = client
            .close()
            .await
            .map_err(|e| anyhow!("closing the WebDriver session: {e}"));
        if closed.is_ok() {
            self.session_id = None;
        }
        closed
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // fantoccini cannot close from a synchronous drop: delete the
        // session with a plain blocking request, so that Chromium does not
        // outlive chromedriver.
        if let Some(id) = self.session_id.take()
            && let Err(e) = delete_session(self.driver_addr, &id)
        {
            eprintln!("warning: deleting WebDriver session {id}: {e}");
        }
        if std::thread::panicking() {
            eprintln!("----- chromedriver -----\n{}", self.driver_logs());
        }
    }
}

/// `DELETE /session/{id}` over a plain socket, bounded by a few seconds.
fn delete_session(addr: SocketAddr, id: &str) -> std::io::Result<()> {
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "DELETE /session/{id} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    // Wait for the answer's head: chromedriver answers once Chromium has
    // quit (and keeps the connection open despite `Connection: close`).
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// Polls chromedriver's `/status` until `value.ready` is true.
async fn wait_ready(
    url: &str,
    driver: &mut Child,
    logs: &Arc<Mutex<VecDeque<String>>>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let status_url = format!("{url}/status");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = driver.try_wait()? {
            bail!("chromedriver exited ({status}):\n{}", text(logs));
        }
        let ready = match http.get(&status_url).send().await {
            Ok(resp) => resp
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v.pointer("/value/ready").and_then(Value::as_bool))
                .unwrap_or(false),
            Err(_) => false,
        };
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "chromedriver at {url} not ready within {START_TIMEOUT:?}:\n{}",
                text(logs)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keeps the lines of `stream`; the first `started successfully on port N`
/// line sends N.
fn collect<R>(stream: R, logs: Arc<Mutex<VecDeque<String>>>, mut port: Option<oneshot::Sender<u16>>)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(n) = started_port(&line)
                && let Some(tx) = port.take()
            {
                let _ = tx.send(n);
            }
            if let Ok(mut logs) = logs.lock() {
                if logs.len() >= MAX_LOG_LINES {
                    logs.pop_front();
                }
                logs.push_back(line);
            }
        }
    });
}

/// The port of `ChromeDriver was started successfully on port 43711.`
fn started_port(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once("started successfully on port ")?;
    rest.trim().trim_end_matches('.').parse().ok()
}

fn text(logs: &Mutex<VecDeque<String>>) -> String {
    logs.lock()
        .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::started_port;

    #[test]
    fn started_port_reads_chromedriver_line() {
        assert_eq!(
            started_port("ChromeDriver was started successfully on port 43711."),
            Some(43711)
        );
        assert_eq!(
            started_port("Starting ChromeDriver 156.0 (abc) on port 0"),
            None
        );
    }
}
