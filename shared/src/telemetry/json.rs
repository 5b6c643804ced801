//! The JSON line format of [`super::json_subscriber`], written straight
//! into the line buffer.
//!
//! It writes what tracing-subscriber's own JSON formatter writes with
//! `flatten_event(true)`, `with_current_span(true)`, `with_span_list(false)`
//! and the target shown (`timestamp`, `level`, the event's fields,
//! `target`, `span` with its fields and `name`; the same value types, the
//! same string escaping), without its costs on every line: that formatter
//! goes through `serde_json` over an adaptor that checks each piece for
//! UTF-8 again, formats the timestamp into a `String` of its own, and parses
//! the span's stored fields back into a `serde_json::Value` map for every
//! event inside a span. Here a span's fields are stored once, as the JSON
//! members they will be written as, and copied into each line.
//!
//! A test below compares the two formatters' lines, parsed, event by event.

use std::fmt::{self, Write};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

/// The field format of spans: the members of a JSON object, without the
/// braces (`"method":"GET","route":"/me"`), spliced into each line.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonMembers;

impl<S> FormatEvent<S, JsonMembers> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonMembers>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut members = Members {
            out: &mut writer,
            first: false,
            result: Ok(()),
        };
        event.record(&mut members);
        members.result?;
        writer.write_str(",\"target\":")?;
        write_string(&mut writer, meta.target())?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            writer.write_str(",\"span\":{")?;
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<JsonMembers>>()
                && !fields.fields.is_empty()
            {
                writer.write_str(&fields.fields)?;
                writer.write_char(',')?;
            }
            writer.write_str("\"name\":")?;
            write_string(&mut writer, span.metadata().name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

impl<'writer> FormatFields<'writer> for JsonMembers {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut members = Members {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut members);
        members.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut writer = current.as_writer();
        let mut members = Members {
            out: &mut writer,
            first,
            result: Ok(()),
        };
        fields.record(&mut members);
        members.result
    }
}

/// Writes each field as a JSON member (`,"name":value`; no comma before
/// the first when `first`), as tracing-serde's map visitor does.
struct Members<'a, W> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: Write> Members<'_, W> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.out.write_char(',')?;
            }
            write_string(self.out, field.name())?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

impl<W: Write> Visit for Members<'_, W> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| write_string(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, |out| write_f64(out, value));
    }
}

/// A float as serde_json writes it: `null` when not finite, and always
/// with a fraction or an exponent (`5.0`, not `5`), so it reads back as a
/// float.
fn write_f64(out: &mut impl Write, value: f64) -> fmt::Result {
    if !value.is_finite() {
        return out.write_str("null");
    }
    // Rust's shortest round-trip form, as serde_json's; whole numbers get
    // the `.0` serde_json gives them (in exponent form past 1e16, which
    // Rust writes out in full: the same number).
    if value.fract() == 0.0 {
        write!(out, "{value:.1}")
    } else {
        write!(out, "{value}")
    }
}

/// `"value"` with JSON's escapes (serde_json's: `"`, `\` and the control
/// characters below U+0020; everything else as it is).
fn write_string(out: &mut impl Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    write_escaped(out, value)?;
    out.write_char('"')
}

fn write_escaped(out: &mut impl Write, value: &str) -> fmt::Result {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Only ASCII bytes end a run: the slices stay on char boundaries.
        out.write_str(&value[start..i])?;
        if escape.is_empty() {
            write!(out, "\\u{byte:04x}")?;
        } else {
            out.write_str(escape)?;
        }
        start = i + 1;
    }
    out.write_str(&value[start..])
}

/// A writer that escapes what goes through it (a `Debug` value's text).
struct Escaped<'a, W>(&'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(self.0, s)
    }
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's `SystemTime`
/// timer writes it: `2026-11-26T01:19:22.494887Z`.
fn write_timestamp(out: &mut impl Write, now: SystemTime) -> fmt::Result {
    let t = time::OffsetDateTime::from(now);
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tracing_subscriber::EnvFilter;

    use crate::test_util::Captured;

    /// The events of the comparison, inside and outside spans.
    fn emit() {
        #[derive(Debug)]
        struct Thing {
            _name: &'static str,
        }
        tracing::info!("plain");
        tracing::warn!(target: "access", request_id = "a-b", status = 401u16, latency_ms = 1.25, whole = 3.0, nan = f64::NAN, neg = -7i64, yes = true, "access");
        tracing::error!(error = %"quote \" backslash \\ newline \n tab \t bell \u{7} é ✓", "with {} args", 2);
        tracing::info!(thing = ?Thing { _name: "x" }, big = u64::MAX, "debug field");
        let span = tracing::info_span!(
            "request",
            method = "GET",
            route = "/api/v2/notes/{id}",
            request_id = "r-1"
        );
        let _entered = span.enter();
        tracing::info!(reason = "bad signature", "access token rejected");
        let empty = tracing::info_span!("empty");
        let _inner = empty.enter();
        tracing::debug!("filtered out");
        tracing::info!("in an empty span");
    }

    fn run_with<S: Subscriber + Send + Sync + 'static>(subscriber: S) {
        tracing::subscriber::with_default(subscriber, emit);
    }

    #[test]
    fn lines_match_tracing_subscribers_json_formatter() {
        let ours = Captured::default();
        let writer = ours.clone();
        run_with(super::super::json_subscriber(
            EnvFilter::new("info"),
            move || writer.clone(),
        ));
        let theirs = Captured::default();
        let writer = theirs.clone();
        run_with(
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_target(true)
                .with_env_filter(EnvFilter::new("info"))
                .with_writer(move || writer.clone())
                .finish(),
        );
        let (mut ours, mut theirs) = (ours.lines(), theirs.lines());
        assert_eq!(ours.len(), 6);
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter_mut().zip(theirs.iter_mut()) {
            let (ta, tb) = (a["timestamp"].take(), b["timestamp"].take());
            // Same shape: 2026-11-26T01:19:22.494887Z.
            let (ta, tb) = (ta.as_str().unwrap(), tb.as_str().unwrap());
            assert_eq!(ta.len(), tb.len(), "{ta} {tb}");
            assert_eq!((&ta[4..5], &ta[10..11], &ta[19..20]), ("-", "T", "."));
            assert!(ta.ends_with('Z'));
            assert_eq!(a, b);
        }
        assert_eq!(ours[1]["latency_ms"], 1.25);
        assert!(ours[1]["whole"].is_f64());
        assert!(ours[1]["nan"].is_null());
        assert_eq!(ours[4]["span"]["route"], "/api/v2/notes/{id}");
        assert_eq!(ours[5]["span"], serde_json::json!({"name": "empty"}));
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let mut out = String::new();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_764_120_000_123_456);
        write_timestamp(&mut out, at).unwrap();
        assert_eq!(out, "2025-11-26T01:20:00.123456Z");
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        for s in [
            "",
            "plain",
            "\"\\",
            "a\u{0}b\u{1f}c\u{7f}",
            "é✓\u{2028}",
            "\r\n\t\u{8}\u{c}",
        ] {
            let mut out = String::new();
            write_string(&mut out, s).unwrap();
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
        for f in [0.0, 1.0, -2.5, 1e300, 0.1 + 0.2, 123.456] {
            let mut out = String::new();
            write_f64(&mut out, f).unwrap();
            assert_eq!(
                out.parse::<f64>().unwrap(),
                f,
                "{out} vs {}",
                serde_json::to_string(&f).unwrap()
            );
            assert!(
                serde_json::from_str::<serde_json::Value>(&out)
                    .unwrap()
                    .is_f64()
            );
        }
    }
}
