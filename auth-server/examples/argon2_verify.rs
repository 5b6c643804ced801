//! Single-thread argon2id verification time, as the server's hashing threads
//! do it (kept memory, OWASP parameters): the denominator of the login
//! ceiling (cores ÷ this time) in docs/benchmarks.md.
//!
//! `cargo run --release -p auth-server --example argon2_verify [COUNT]`

use std::time::Instant;

/// This process's CPU time (user + system), from `/proc/self/stat`
/// (clock ticks of 10 ms).
fn cpu_secs() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow::anyhow!("/proc/self/stat"))?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let count: u32 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 50,
    };
    let gate = auth_server::password::PasswordGate::new(1, 1, std::time::Duration::from_secs(60))?;
    let stored = gate
        .admit()?
        .hash("a long enough password".to_owned())
        .await?;
    // Warm-up: the thread's buffer, the page faults.
    for _ in 0..3 {
        gate.admit()?
            .verify("wrong".to_owned(), Some(stored.clone()))
            .await?;
    }
    let cpu_before = cpu_secs()?;
    let start = Instant::now();
    for _ in 0..count {
        gate.admit()?
            .verify("wrong".to_owned(), Some(stored.clone()))
            .await?;
    }
    let wall = start.elapsed().as_secs_f64() / f64::from(count);
    let cpu = (cpu_secs()? - cpu_before) / f64::from(count);
    println!(
        "argon2id verify (m=19456 KiB, t=2, p=1), one thread, {count} runs: \
         {:.2} ms CPU, {:.2} ms wall",
        cpu * 1e3,
        wall * 1e3
    );
    Ok(())
}
