//! What `/proc` says about a process (Linux): CPU time and memory, for the
//! load benchmarks' "server CPU per operation" and RSS figures.

use std::sync::OnceLock;

use anyhow::Context;

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 when
/// that cannot be run, the value on every Linux platform in use).
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// User plus system CPU time of process `pid` (all its threads, the ones
/// that ended included), in seconds: fields 14 and 15 of `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| ticks as f64 / clock_ticks())
        .with_context(|| format!("parsing /proc/{pid}/stat"))
}

/// CPU time of the calling process, in seconds.
pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds(std::process::id())
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: field 3 (state) is the first; utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `/proc/<pid>/status` memory fields, in KiB, and the thread count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now.
    pub rss_kib: u64,
    /// Peak resident set size since the start (high-water mark).
    pub hwm_kib: u64,
    pub threads: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(parse_status(&status))
}

pub fn parse_status(status: &str) -> Memory {
    let mut m = Memory::default();
    for line in status.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "VmRSS:" => m.rss_kib = value,
            "VmHWM:" => m.hwm_kib = value,
            "Threads:" => m.threads = value,
            _ => {}
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cpu_ticks_counts_fields_after_the_name() {
        // A name with a space and a parenthesis; utime 1234, stime 56.
        let stat = "4242 (node (x) y) S 1 4242 4242 0 -1 4194304 100 0 0 0 1234 56 0 0 20 0 7 0 99 1000 200";
        assert_eq!(parse_cpu_ticks(stat), Some(1290));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn parse_status_reads_rss_hwm_and_threads() {
        let status = "Name:\tauth-server\nVmHWM:\t  20480 kB\nVmRSS:\t  10240 kB\nThreads:\t9\n";
        assert_eq!(
            parse_status(status),
            Memory {
                rss_kib: 10240,
                hwm_kib: 20480,
                threads: 9
            }
        );
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(own_cpu_seconds().unwrap() >= 0.0);
    }
}
