//! Logs go to stderr (stdout stays for `--json` output). `RUST_LOG` filters.
//!
//! `LOG_FORMAT` chooses the shape of a line: `json` (one JSON object per
//! line: `timestamp`, `level`, `target`, `message`, the event's fields at the
//! top level, and the request's `span` with its `method`, `route` and
//! `request_id`) or `text` (for people). Unset: `json` when stderr is not a
//! terminal (a service under a supervisor, a pipe), `text` when it is. Any
//! other value is an error at start ([`init_from_env`]).
//!
//! The services ([`init_service_from_env`]) write off the request path: a
//! request formats its line and hands it to a channel of at most
//! [`LOG_BUFFER_LINES`] lines; one worker thread (tracing-appender's
//! non-blocking writer) writes them to stderr, a batch per system call,
//! resting [`LOG_LINGER`] between batches.
//! When the channel is full (stderr blocked or slower than the traffic for
//! that long) a new line is dropped, never waited for: a request never
//! stalls on the log, and memory stays bounded. Each dropped line counts in
//! [`DROPPED_LINES_METRIC`]. The [`LogGuard`] that `main` keeps writes out
//! every queued line when it is dropped: on return from `main` (graceful
//! shutdown), before the start-up error is printed, and while a panic
//! unwinds.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable that chooses the format.
pub const LOG_FORMAT_VAR: &str = "LOG_FORMAT";

/// The filter when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn";

/// How log lines look (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines.
    Json,
    /// tracing-subscriber's human-readable lines.
    Text,
}

impl LogFormat {
    /// The format `value` (the variable's value, if set) names; unset or
    /// blank: `text` on a terminal, `json` otherwise. Case-insensitive.
    pub fn select(value: Option<&str>, stderr_is_terminal: bool) -> anyhow::Result<Self> {
        match value.map(str::trim) {
            None | Some("") if stderr_is_terminal => Ok(Self::Text),
            None | Some("") => Ok(Self::Json),
            Some(v) if v.eq_ignore_ascii_case("json") => Ok(Self::Json),
            Some(v) if v.eq_ignore_ascii_case("text") => Ok(Self::Text),
            Some(other) => anyhow::bail!(
                "{LOG_FORMAT_VAR}={other:?} is not a log format: use `json` or `text` \
                 (unset: json when stderr is not a terminal, text when it is)"
            ),
        }
    }

    /// The format of this process: `LOG_FORMAT` and whether stderr is a
    /// terminal.
    pub fn from_env() -> anyhow::Result<Self> {
        let value = match std::env::var(LOG_FORMAT_VAR) {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                anyhow::bail!("{LOG_FORMAT_VAR} is not valid UTF-8: use `json` or `text`")
            }
        };
        Self::select(value.as_deref(), std::io::stderr().is_terminal())
    }
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

mod json;

/// The JSON subscriber, writing to `writer` (stderr, or a buffer in tests):
/// the lines of tracing-subscriber's JSON formatter (events flattened, the
/// current span, the target), written by [`json::JsonLines`] for less.
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .fmt_fields(json::JsonMembers)
        .event_format(json::JsonLines)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// Installs the global subscriber in `format`, writing to stderr (once; a
/// second call does nothing). Synchronous: for tests and tools; the
/// services use [`init_service_from_env`].
pub fn init(format: LogFormat) {
    init_with(format, std::io::stderr);
}

/// Installs the global subscriber in `format`, writing to `writer` (once; a
/// second call does nothing).
fn init_with<W>(format: LogFormat, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let _ = match format {
        LogFormat::Json => json_subscriber(filter(), writer).try_init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(writer)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .finish()
            .try_init(),
    };
}

/// The most log lines waiting for the writer thread; past it, new lines
/// are dropped and counted ([`DROPPED_LINES_METRIC`]). An access line is
/// about 300 bytes, so about 5 MiB at most; at 20,000 requests a second,
/// about a second of stderr standing still.
pub const LOG_BUFFER_LINES: usize = 16_384;

/// The counter of log lines dropped because the buffer was full.
pub const DROPPED_LINES_METRIC: &str = "portcullis_log_lines_dropped_total";

/// What stderr gets from the writer thread: a buffer, flushed after each
/// batch the thread takes off the channel (so one system call per batch,
/// and nothing waits in the buffer once the channel is empty).
const STDERR_BUFFER_BYTES: usize = 64 * 1024;

/// Keeps the log writer thread; dropping it writes out every queued line
/// and flushes stderr (waiting at most about a second). `main` holds it
/// until the process ends.
#[must_use = "dropping the guard stops the log writer: keep it until the process ends"]
pub struct LogGuard {
    _worker: WorkerGuard,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGuard")
    }
}

/// The non-blocking writer of the services: hands lines to the writer
/// thread, and counts the ones dropped into [`DROPPED_LINES_METRIC`].
#[derive(Clone)]
struct Counted {
    inner: NonBlocking,
    dropped: ErrorCounter,
}

/// Dropped lines already added to [`DROPPED_LINES_METRIC`].
static DROPPED_REPORTED: AtomicUsize = AtomicUsize::new(0);

impl Counted {
    fn report_dropped(&self) {
        let dropped = self.dropped.dropped_lines();
        let reported = DROPPED_REPORTED.fetch_max(dropped, Ordering::Relaxed);
        if dropped > reported {
            metrics::counter!(DROPPED_LINES_METRIC).increment((dropped - reported) as u64);
        }
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.report_dropped();
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<'a> MakeWriter<'a> for Counted {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// How long the writer thread rests after writing a batch: lines reach
/// stderr at most this much later, and in return the thread neither spins
/// nor is woken up for each line (the requests that queue lines meanwhile
/// find it resting and wake nobody), and a busy service writes a batch per
/// system call.
pub const LOG_LINGER: Duration = Duration::from_millis(5);

/// The writer thread's end of the pipe: `sink` behind a buffer, resting
/// [`LOG_LINGER`] after each flush (tracing-appender's worker flushes
/// after each batch it takes off the channel, and once at the end).
struct Lingering<W: Write> {
    sink: std::io::BufWriter<W>,
}

impl<W: Write> Write for Lingering<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sink.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.sink.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.sink.flush();
        std::thread::sleep(LOG_LINGER);
        flushed
    }
}

/// The non-blocking writer into `sink` and its guard.
fn non_blocking<W: Write + Send + 'static>(sink: W) -> (Counted, LogGuard) {
    let (inner, worker) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .thread_name("log-writer")
        .finish(Lingering {
            sink: std::io::BufWriter::with_capacity(STDERR_BUFFER_BYTES, sink),
        });
    let dropped = inner.error_counter();
    (Counted { inner, dropped }, LogGuard { _worker: worker })
}

/// [`init_service_from_env`] with the format given and `sink` instead of
/// stderr (benchmarks: `/dev/null`).
pub fn init_service<W: Write + Send + 'static>(format: LogFormat, sink: W) -> LogGuard {
    let (writer, guard) = non_blocking(sink);
    init_with(format, writer);
    guard
}

/// The services' logging: reads `LOG_FORMAT` (an unknown format is an
/// error, for `main` to report plainly) and installs the subscriber with
/// the non-blocking writer of the module documentation. Keep the guard
/// until the process ends, and drop it before printing a start-up error so
/// that every earlier line comes first.
pub fn init_service_from_env() -> anyhow::Result<LogGuard> {
    let format = LogFormat::from_env()?;
    Ok(init_service(format, std::io::stderr()))
}

/// Reads `LOG_FORMAT` and installs the subscriber; an unknown format is an
/// error, for the binaries to report (on stderr, plainly) before they exit.
pub fn init_from_env() -> anyhow::Result<LogFormat> {
    let format = LogFormat::from_env()?;
    init(format);
    Ok(format)
}

/// [`init_from_env`] for tests and tools: an unknown format falls back to
/// the default of the terminal.
pub fn init_tracing() {
    init(LogFormat::from_env().unwrap_or_else(|_| {
        LogFormat::select(None, std::io::stderr().is_terminal()).unwrap_or(LogFormat::Text)
    }));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn select_defaults_to_json_off_a_terminal_and_text_on_one() {
        assert_eq!(LogFormat::select(None, false).unwrap(), LogFormat::Json);
        assert_eq!(LogFormat::select(None, true).unwrap(), LogFormat::Text);
        assert_eq!(
            LogFormat::select(Some(" "), false).unwrap(),
            LogFormat::Json
        );
        assert_eq!(LogFormat::select(Some(""), true).unwrap(), LogFormat::Text);
    }

    #[test]
    fn select_takes_an_explicit_format_whatever_the_terminal() {
        for terminal in [false, true] {
            assert_eq!(
                LogFormat::select(Some("json"), terminal).unwrap(),
                LogFormat::Json
            );
            assert_eq!(
                LogFormat::select(Some("TEXT"), terminal).unwrap(),
                LogFormat::Text
            );
        }
    }

    /// A sink that blocks until `open` is set, keeping what it gets.
    #[derive(Clone, Default)]
    struct Gate {
        open: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
        got: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, changed) = &*self.open;
            let mut open = open.lock().unwrap();
            while !*open {
                open = changed.wait(open).unwrap();
            }
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Gate {
        fn open(&self) {
            let (open, changed) = &*self.open;
            *open.lock().unwrap() = true;
            changed.notify_all();
        }
        fn lines(&self) -> usize {
            self.got.lock().unwrap().split(|b| *b == b'\n').count() - 1
        }
    }

    #[test]
    fn non_blocking_writes_every_line_out_when_the_guard_drops() {
        let gate = Gate::default();
        gate.open();
        let (mut writer, guard) = non_blocking(gate.clone());
        for i in 0..1000 {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        drop(guard);
        assert_eq!(gate.lines(), 1000);
        let text = String::from_utf8(gate.got.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("line 0\nline 1\n"), "{text:.40}");
        assert!(text.ends_with("line 999\n"));
        assert_eq!(writer.dropped.dropped_lines(), 0);
    }

    #[test]
    fn non_blocking_drops_and_counts_lines_past_the_buffer_without_waiting() {
        let gate = Gate::default();
        let (mut writer, guard) = non_blocking(gate.clone());
        // The sink is stuck: the writer thread holds what its buffer takes
        // (64 KiB: at most 5,958 of these 11-byte lines), the channel
        // fills, the rest is dropped, and no write waits for the sink.
        let sent = LOG_BUFFER_LINES + 10_000;
        for i in 0..sent {
            writer
                .write_all(format!("line {i:05}\n").as_bytes())
                .unwrap();
        }
        let dropped = writer.dropped.dropped_lines();
        assert!(dropped >= 10_000 - 5_959, "{dropped}");
        gate.open();
        drop(guard);
        // What was not dropped reached the sink (the `BufWriter` in between
        // may write through as it fills; every line is whole).
        assert_eq!(gate.lines() + dropped, sent);
        assert!(DROPPED_REPORTED.load(Ordering::Relaxed) >= dropped);
    }

    #[test]
    fn select_refuses_other_values_naming_the_variable() {
        for bogus in ["bogus", "jsonl", "pretty", "1"] {
            let error = LogFormat::select(Some(bogus), false)
                .unwrap_err()
                .to_string();
            assert!(error.contains("LOG_FORMAT"), "{error}");
            assert!(error.contains(bogus), "{error}");
            assert!(error.contains("`json` or `text`"), "{error}");
        }
    }
}
