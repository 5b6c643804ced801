//! One running service: spawned with `kill_on_drop`, found through its
//! `listening on http://ADDR` log line, ready once `/healthz` answers 200.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long a service may take to print its address, and then to be healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Most log lines kept per service.
const MAX_LOG_LINES: usize = 5000;

/// Variables of DESIGN.md (and the contract) that configure the services;
/// removed from a child's environment when [`ServiceSpec::clean_env`] is set,
/// so that a developer's shell cannot leak into a test.
const CONFIG_VARS: &[&str] = &[
    "DATABASE_URL",
    "JWKS_URL",
    "REDIS_URL",
    "CORS_ALLOWED_ORIGINS",
    "TLS_CERT",
    "TLS_KEY",
    "TRUST_PROXY_TLS",
    "SSL_CERT_FILE",
    "RUST_LOG",
    "LOG_FORMAT",
    "REFRESH_GRACE_SECS",
    "REFRESH_GRACE_MAX_REPLAYS",
    "HTTP_HEADER_TIMEOUT_SECS",
    "HTTP_IDLE_TIMEOUT_SECS",
    "HTTP_REQUEST_TIMEOUT_SECS",
    "HTTP_MAX_CONNECTIONS",
    "SHUTDOWN_GRACE_SECS",
    "SHUTDOWN_DRAIN_DELAY_SECS",
];
const CONFIG_PREFIXES: &[&str] = &["AUTH_", "RESOURCE_"];

/// Default log filter given to children when the environment is cleaned.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn";

/// What to run.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Short name for messages and log prefixes (`auth`, `api`).
    pub name: String,
    pub program: PathBuf,
    /// The `argv[0]` the process sees (and `ps` shows), when not `program`
    /// (Unix only).
    pub arg0: Option<OsString>,
    pub args: Vec<OsString>,
    pub envs: Vec<(String, String)>,
    pub current_dir: Option<PathBuf>,
    /// Drop inherited configuration variables (tests) or keep them (`stack`).
    pub clean_env: bool,
    /// Copy each output line to our stderr, prefixed with `[name]`.
    pub echo: bool,
    /// A CA certificate (PEM) the readiness probe trusts, for a service
    /// serving HTTPS with a test certificate.
    pub ca_pem: Option<String>,
}

impl ServiceSpec {
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            arg0: None,
            args: Vec::new(),
            envs: Vec::new(),
            current_dir: None,
            clean_env: true,
            echo: false,
            ca_pem: None,
        }
    }

    /// Trust `ca_pem` (PEM) when probing the service over HTTPS.
    pub fn trust_ca(mut self, ca_pem: impl Into<String>) -> Self {
        self.ca_pem = Some(ca_pem.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// A `Command` with this spec's program, environment and folder, but no
    /// arguments (used for the CLI too).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        #[cfg(unix)]
        if let Some(arg0) = &self.arg0 {
            cmd.arg0(arg0);
        }
        if self.clean_env {
            for (key, _) in std::env::vars_os() {
                let Some(key) = key.to_str() else { continue };
                if CONFIG_VARS.contains(&key) || CONFIG_PREFIXES.iter().any(|p| key.starts_with(p))
                {
                    cmd.env_remove(key);
                }
            }
            let filter =
                std::env::var("E2E_RUST_LOG").unwrap_or_else(|_| DEFAULT_LOG_FILTER.into());
            cmd.env("RUST_LOG", filter);
            cmd.env("NO_COLOR", "1");
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        cmd.kill_on_drop(true);
        cmd
    }
}

/// Lines a service printed, shared with the tasks that read its pipes.
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<VecDeque<String>>>);

impl Logs {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() == MAX_LOG_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    /// Everything kept so far, one line each.
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|lines| lines.iter().map(|l| format!("{l}\n")).collect())
            .unwrap_or_default()
    }
}

/// A running service. Dropping it kills the process.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    child: Child,
    /// The bound address from the `listening on` line.
    pub addr: SocketAddr,
    /// `http://ADDR` (or `https://` when the service said so).
    pub url: String,
    /// The first line the service wrote on stderr (where it logs).
    pub first_line: String,
    pub logs: Logs,
}

impl Service {
    /// Starts the service and waits until it listens and `/healthz` is 200.
    pub async fn start(spec: ServiceSpec) -> anyhow::Result<Self> {
        let mut cmd = spec.command();
        cmd.args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", spec.program.display()))?;
        let logs = Logs::default();
        let (tx, rx) = oneshot::channel();
        let prefix = spec.echo.then(|| format!("[{}] ", spec.name));
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(drain(stdout, logs.clone(), prefix.clone(), None));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(drain(stderr, logs.clone(), prefix, Some(tx)));
        }

        let deadline = Instant::now() + START_TIMEOUT;
        let Listening {
            scheme,
            addr,
            first_line,
        } = tokio::select! {
            found = rx => match found {
                Ok(found) => found,
                Err(_) => {
                    // Output closed without the line: the process is ending.
                    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                    bail!(
                        "{} closed its output without `listening on` ({status:?}); output:\n{}",
                        spec.name,
                        logs.text()
                    );
                }
            },
            status = child.wait() => bail!(
                "{} exited before listening: {}; output:\n{}",
                spec.name,
                status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                logs.text()
            ),
            () = tokio::time::sleep_until(deadline) => bail!(
                "{} printed no `listening on http://ADDR` line within {START_TIMEOUT:?}; output:\n{}",
                spec.name,
                logs.text()
            ),
        };
        let url = format!("{scheme}://{addr}");
        let mut service = Self {
            name: spec.name,
            child,
            addr,
            url,
            first_line,
            logs,
        };
        service
            .wait_healthy(deadline, spec.ca_pem.as_deref())
            .await?;
        Ok(service)
    }

    async fn wait_healthy(
        &mut self,
        deadline: Instant,
        ca_pem: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_pem {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
        }
        let http = http.build()?;
        let health = format!("{}/healthz", self.url);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited while starting: {status}; output:\n{}",
                    self.name,
                    self.logs.text()
                );
            }
            let last = match http.get(&health).send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => format!("status {}", resp.status()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} not healthy at {health} within {START_TIMEOUT:?} (last: {last}); output:\n{}",
                    self.name,
                    self.logs.text()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Kills the process outright (SIGKILL on Unix: no shutdown, like a crash
    /// or the OOM killer) and reaps it; returns how it ended.
    pub async fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        self.child
            .kill()
            .await
            .with_context(|| format!("killing {}", self.name))?;
        self.child
            .wait()
            .await
            .with_context(|| format!("waiting for {}", self.name))
    }

    /// Asks the process to stop (SIGTERM on Unix), waits up to `grace`, then
    /// kills it.
    pub async fn terminate(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        if let Some(pid) = self.child.id() {
            signal_terminate(pid).await;
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await?;
                self.child
                    .wait()
                    .await
                    .map_err(|e| anyhow!("waiting for {}: {e}", self.name))
            }
        }
    }
}

/// SIGTERM through kill(1): the workspace forbids `unsafe` (libc) and this
/// crate does without `nix`.
#[cfg(unix)]
async fn signal_terminate(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

#[cfg(not(unix))]
async fn signal_terminate(_pid: u32) {}

/// What the first `listening on` line told, with the pipe's first line.
struct Listening {
    scheme: String,
    addr: SocketAddr,
    first_line: String,
}

/// Reads lines until the pipe closes, keeping them in `logs`; sends the
/// address of the first `listening on` line through `found`.
async fn drain<R: AsyncRead + Unpin>(
    pipe: R,
    logs: Logs,
    echo_prefix: Option<String>,
    mut found: Option<oneshot::Sender<Listening>>,
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    let mut first_line = None;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = strip_ansi(String::from_utf8_lossy(&buf).trim_end());
        if let Some(prefix) = &echo_prefix {
            eprintln!("{prefix}{line}");
        }
        let first = first_line.get_or_insert_with(|| line.clone());
        if found.is_some()
            && let Some((scheme, addr)) = parse_listening(&line)
            && let Some(tx) = found.take()
        {
            let _ = tx.send(Listening {
                scheme,
                addr,
                first_line: first.clone(),
            });
        }
        logs.push(line);
    }
}

/// `(scheme, addr)` from a line holding `listening on http://ADDR`: a text
/// line, or a JSON one (`LOG_FORMAT=json`) whose `message` says it.
pub fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let message = json_message(line);
    let line = message.as_deref().unwrap_or(line);
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let (scheme, rest) = rest.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '/' | ',' | '}'))
        .collect();
    Some((scheme.to_owned(), addr.parse().ok()?))
}

/// The `message` of a JSON log line (top level, or under `fields` when the
/// event is not flattened); `None` for a text line.
pub fn json_message(line: &str) -> Option<String> {
    if !line.starts_with('{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value
        .get("message")
        .or_else(|| value.get("fields").and_then(|f| f.get("message")))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// Removes ANSI escape sequences (colours) from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_listening_reads_plain_and_coloured_lines() {
        let line = "2025-11-25T08:00:00Z  INFO listening on http://127.0.0.1:40123";
        assert_eq!(
            parse_listening(line),
            Some(("http".into(), "127.0.0.1:40123".parse().unwrap()))
        );
        let coloured = strip_ansi("\u{1b}[32m INFO\u{1b}[0m listening on http://[::1]:8080 addr=x");
        assert_eq!(
            parse_listening(&coloured),
            Some(("http".into(), "[::1]:8080".parse().unwrap()))
        );
        let json = r#"{"fields":{"message":"listening on http://127.0.0.1:9"}}"#;
        assert_eq!(
            parse_listening(json),
            Some(("http".into(), "127.0.0.1:9".parse().unwrap()))
        );
        let flat = r#"{"timestamp":"2025-11-25T08:00:00Z","level":"INFO","message":"listening on https://127.0.0.1:8443","target":"auth_server::startup"}"#;
        assert_eq!(
            parse_listening(flat),
            Some(("https".into(), "127.0.0.1:8443".parse().unwrap()))
        );
        // Only the message counts, not another field that quotes the words.
        let other = r#"{"message":"starting","note":"listening on http://1.2.3.4:5"}"#;
        assert_eq!(parse_listening(other), None);
        assert_eq!(parse_listening("listening on ftp://1.2.3.4:5"), None);
        assert_eq!(parse_listening("starting"), None);
    }
}
