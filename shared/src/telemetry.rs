//! Logs go to stderr (stdout stays for `--json` output). `RUST_LOG` filters.
//!
//! `LOG_FORMAT` chooses the shape of a line: `json` (one JSON object per
//! line: `timestamp`, `level`, `target`, `message`, the event's fields at the
//! top level, and the request's `span` with its `method`, `route` and
//! `request_id`) or `text` (for people). Unset: `json` when stderr is not a
//! terminal (a service under a supervisor, a pipe), `text` when it is. Any
//! other value is an error at start ([`init_from_env`]).

use std::io::IsTerminal;

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

/// The JSON subscriber, writing to `writer` (stderr, or a buffer in tests).
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// Installs the global subscriber in `format`, writing to stderr (once; a
/// second call does nothing).
pub fn init(format: LogFormat) {
    let _ = match format {
        LogFormat::Json => json_subscriber(filter(), std::io::stderr).try_init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .finish()
            .try_init(),
    };
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
