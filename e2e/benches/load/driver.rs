//! The load generator: N workers on keep-alive connections, each running one
//! operation back to back until the phase's deadline; the latency of every
//! operation (exact percentiles from the sorted samples) and the CPU time the
//! measured server processes spent meanwhile (`/proc/<pid>/stat`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::procfs;

/// What one operation of a worker did.
pub enum Step<S> {
    /// One operation done (timed and counted); go on with this state.
    Did(S),
    /// Nothing left to do (e.g. the token pool is used up): this worker
    /// stops; nothing counted.
    Exhausted(S),
}

/// The figures of one phase.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub ops: u64,
    pub wall: Duration,
    /// Every operation's latency, sorted.
    pub latencies: Vec<Duration>,
    /// CPU seconds of each measured process over the phase.
    pub server_cpu: Vec<f64>,
    /// CPU seconds of this (the client) process over the phase.
    pub client_cpu: f64,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        if self.wall.is_zero() {
            return 0.0;
        }
        self.ops as f64 / self.wall.as_secs_f64()
    }

    /// Nearest-rank percentile, `q` in 0..=1.
    pub fn pct(&self, q: f64) -> Option<Duration> {
        let n = self.latencies.len();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.latencies.get(rank - 1).copied()
    }

    /// CPU seconds of measured process `i` per operation.
    pub fn cpu_per_op(&self, i: usize) -> Option<f64> {
        let cpu = *self.server_cpu.get(i)?;
        (self.ops > 0).then(|| cpu / self.ops as f64)
    }

    /// Share of one core used by measured process `i`.
    pub fn cores_used(&self, i: usize) -> Option<f64> {
        let cpu = *self.server_cpu.get(i)?;
        (!self.wall.is_zero()).then(|| cpu / self.wall.as_secs_f64())
    }

    /// One line: count, rate, latencies, CPU.
    pub fn summary(&self, unit: &str, names: &[&str]) -> String {
        let mut line = format!(
            "{} {unit} in {:.2} s = {:.1}/s; latency p50 {} p99 {} max {} ms",
            self.ops,
            self.wall.as_secs_f64(),
            self.rate(),
            ms(self.pct(0.5)),
            ms(self.pct(0.99)),
            ms(self.latencies.last().copied()),
        );
        for (i, name) in names.iter().enumerate() {
            if let (Some(per_op), Some(cores)) = (self.cpu_per_op(i), self.cores_used(i)) {
                line.push_str(&format!(
                    "; {name} CPU {:.1} µs/op ({:.0}% of a core)",
                    per_op * 1e6,
                    cores * 100.0
                ));
            }
        }
        line.push_str(&format!(
            "; client (this process) {:.0}% of a core",
            100.0 * self.client_cpu / self.wall.as_secs_f64().max(1e-9)
        ));
        line
    }
}

pub fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0))
}

/// Runs one worker per state for `length`: each calls `op` with its state
/// back to back (the operation in flight at the deadline finishes and
/// counts). The first error of any worker fails the phase, loudly, once all
/// workers have stopped. `pids` are the processes whose CPU time is measured.
pub async fn phase<S, F, Fut>(
    name: &str,
    states: Vec<S>,
    length: Duration,
    pids: Vec<u32>,
    op: F,
) -> anyhow::Result<(Vec<S>, Measured)>
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Step<S>>> + Send + 'static,
{
    let op = Arc::new(op);
    let cpu_before = pids
        .iter()
        .map(|pid| procfs::cpu_seconds(*pid))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let own_before = procfs::own_cpu_seconds()?;
    let started = Instant::now();
    let deadline = started + length;
    let mut tasks = Vec::with_capacity(states.len());
    for (worker, state) in states.into_iter().enumerate() {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut state = state;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let step = op(state).await.with_context(|| {
                    format!("worker {worker}, operation {}", latencies.len() + 1)
                })?;
                match step {
                    Step::Did(next) => {
                        latencies.push(t.elapsed());
                        state = next;
                    }
                    Step::Exhausted(next) => {
                        state = next;
                        break;
                    }
                }
            }
            anyhow::Ok((state, latencies))
        }));
    }
    let mut states = Vec::with_capacity(tasks.len());
    let mut latencies = Vec::new();
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok((state, lats))) => {
                states.push(state);
                latencies.extend(lats);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow::anyhow!("worker task: {e}"));
            }
        }
    }
    let wall = started.elapsed();
    if let Some(error) = first_error {
        return Err(error.context(format!("phase `{name}`: an operation failed")));
    }
    let mut server_cpu = Vec::with_capacity(pids.len());
    for (pid, before) in pids.iter().zip(cpu_before) {
        server_cpu.push(procfs::cpu_seconds(*pid)? - before);
    }
    let client_cpu = procfs::own_cpu_seconds()? - own_before;
    latencies.sort();
    Ok((
        states,
        Measured {
            ops: latencies.len() as u64,
            wall,
            latencies,
            server_cpu,
            client_cpu,
        },
    ))
}

/// [`phase`] twice: a warm-up of `warm_up` whose figures are dropped, then
/// the measured run of `length` with the states the warm-up left.
pub async fn warm_then_measure<S, F, Fut>(
    name: &str,
    states: Vec<S>,
    warm_up: Duration,
    length: Duration,
    pids: Vec<u32>,
    op: F,
) -> anyhow::Result<(Vec<S>, Measured)>
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Step<S>>> + Send + 'static,
{
    let states = if warm_up.is_zero() {
        states
    } else {
        phase(
            &format!("{name} (warm-up)"),
            states,
            warm_up,
            pids.clone(),
            op.clone(),
        )
        .await?
        .0
    };
    phase(name, states, length, pids, op).await
}

/// Latencies of a sequential prober (one request at a time, a pause between
/// two), on its own thread and current-thread runtime so that the load
/// tasks of this process do not delay it.
pub fn probe_healthz(
    url: String,
    length: Duration,
    pause: Duration,
) -> std::thread::JoinHandle<anyhow::Result<Measured>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the prober's runtime")?;
        runtime.block_on(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .context("building the prober's client")?;
            let started = Instant::now();
            let until = started + length;
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                let answer = http.get(&url).send().await.context("GET /healthz")?;
                let status = answer.status();
                answer.bytes().await.context("reading /healthz")?;
                if !status.is_success() {
                    anyhow::bail!("GET /healthz answered {status}");
                }
                latencies.push(t.elapsed());
                tokio::time::sleep(pause).await;
            }
            latencies.sort();
            Ok(Measured {
                ops: latencies.len() as u64,
                wall: started.elapsed(),
                latencies,
                ..Measured::default()
            })
        })
    })
}

/// Joins a prober thread.
pub async fn join_probe(
    handle: std::thread::JoinHandle<anyhow::Result<Measured>>,
) -> anyhow::Result<Measured> {
    tokio::task::spawn_blocking(move || {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("the prober thread panicked"))?
    })
    .await
    .context("joining the prober")?
}

/// Samples the VmRSS of `pid` every 100 ms until `stop`; the peak seen.
pub async fn sample_rss(pid: u32, stop: Arc<std::sync::atomic::AtomicBool>) -> u64 {
    let mut peak = 0;
    loop {
        if let Ok(m) = procfs::memory(pid) {
            peak = peak.max(m.rss_kib);
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return peak;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
