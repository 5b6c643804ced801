//! A throwaway `redis-server` for tests: started from `PATH` on a free
//! loopback port, nothing persisted, killed on drop. Tests use it to take
//! Redis away in the middle of a run and bring it back on the same port.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How many ports (or restarts) are tried before giving up.
const ATTEMPTS: usize = 5;
/// How long a started server has to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// A `redis-server` child process on `127.0.0.1:port`.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one, as [`RedisServer::start`], for a test that needs it
    /// (marked `test_gates::needs! { [redis_server] … }`, so ignored when
    /// no `redis-server` was on `PATH` at build time, unless `CI=true`): a
    /// missing binary is an error that says so, never a silent pass.
    pub async fn start_required() -> anyhow::Result<Self> {
        if !binary_on_path() {
            bail!(
                "redis-server is not on PATH: install it (Debian: redis-server), or leave \
                 this test ignored (it is when redis-server is missing at build time, \
                 unless CI=true)"
            );
        }
        Self::start().await
    }

    /// Starts one on a free port (another port, up to 5 times, when it does
    /// not come up) and waits until it answers `PING`.
    pub async fn start() -> anyhow::Result<Self> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let port = free_port()?;
            match spawn_ready(port).await {
                Ok(child) => {
                    return Ok(Self {
                        port,
                        child: Some(child),
                    });
                }
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its port and connections but
    /// answers nothing, like a hung Redis.
    pub async fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP").await
    }

    /// Thaws a [`RedisServer::pause`]d server (SIGCONT).
    pub async fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT").await
    }

    async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .context("redis-server is not running")?;
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .await
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill {signal} {pid} failed: {status}");
        Ok(())
    }

    /// Starts the server again on the same port (killing it first if it
    /// runs) and waits until it answers `PING`. Its data is gone.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match spawn_ready(self.port).await {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(error) => last = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not restart")))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

fn binary_on_path() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("redis-server").is_file())
    })
}

/// A port the kernel just handed out on loopback, released for the server.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn spawn_ready(port: u16) -> anyhow::Result<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning redis-server")?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("redis-server on port {port} exited at start: {status}");
        }
        if ping(port).await {
            // A server that lost the port to another one exits at once: make
            // sure the answer came from ours.
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(status) = child.try_wait()? {
                bail!("redis-server on port {port} exited at start: {status}");
            }
            return Ok(child);
        }
        if started.elapsed() > READY_WITHIN {
            let _ = child.kill().await;
            bail!("redis-server on port {port} did not answer PING within {READY_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a Redis on `port` answers `PING` with `+PONG`.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await?;
        Ok::<bool, std::io::Error>(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Ok(true))
    )
}
