//! Start-up checks and start-up errors, the same for both binaries.
//!
//! A failed start prints exactly one line on stderr and exits non-zero:
//!
//! ```text
//! error: <what failed>: <root cause, once>. <what to do>
//! ```
//!
//! The causes of an `anyhow` chain are joined with `: `, skipping any that
//! repeats what an outer one already said (sqlx and sea-orm nest the same
//! message two to four times); "what to do" is attached with [`fix`] or
//! [`FixExt::fix`] and always comes last.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

/// What the operator should do about an error; shown at the end of its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix(pub String);

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `error` with `what_to_do` attached (see [`one_line`]).
pub fn fix(error: impl Into<anyhow::Error>, what_to_do: impl Into<String>) -> anyhow::Error {
    error.into().context(Fix(what_to_do.into()))
}

/// `.fix("what to do")` on a `Result`.
pub trait FixExt<T> {
    fn fix(self, what_to_do: impl Into<String>) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> FixExt<T> for Result<T, E> {
    fn fix(self, what_to_do: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|e| fix(e, what_to_do))
    }
}

/// The error as one line without the `error: ` prefix: its causes, each
/// said once, then what to do.
pub fn one_line(error: &anyhow::Error) -> String {
    let what_to_do = error.downcast_ref::<Fix>().map(|f| flatten(&f.0));
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let message = flatten(&cause.to_string());
        if message.is_empty()
            || what_to_do.as_deref() == Some(message.as_str())
            || parts.iter().any(|said| said.contains(&message))
        {
            continue;
        }
        parts.push(message);
    }
    let mut line = parts.join(": ");
    if let Some(what_to_do) = what_to_do {
        if !line.is_empty() && !line.ends_with(['.', '!', '?']) {
            line.push('.');
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&what_to_do);
    }
    line
}

/// One line: newlines and runs of blanks become one space.
fn flatten(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prints `error: <one line>` on stderr (not as a log line) and returns the
/// failure exit code. Both `main`s end a failed command through this.
pub fn report(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", one_line(error));
    ExitCode::FAILURE
}

/// Variables of the contract (DESIGN.md) for features this build does not
/// have yet, and what each would do. Setting one stops the start rather
/// than being silently ignored.
pub const UNBUILT_VARS: &[(&str, &str)] = &[];

/// Refuses a set (non-empty) variable of [`UNBUILT_VARS`]; `get` reads the
/// environment (a parameter, for the tests).
pub fn refuse_unbuilt_vars(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    for (name, feature) in UNBUILT_VARS {
        if get(name).is_some_and(|v| !v.trim().is_empty()) {
            return Err(fix(
                anyhow::anyhow!("{name} is set, but {feature} is not built in this version"),
                format!("Unset {name}; nothing reads it yet"),
            ));
        }
    }
    Ok(())
}

/// [`refuse_unbuilt_vars`] on the process environment.
pub fn refuse_unbuilt_env_vars() -> anyhow::Result<()> {
    refuse_unbuilt_vars(|name| std::env::var(name).ok())
}

/// A listen address `HOST:PORT` (`variable` names it in errors): an IP
/// address (`127.0.0.1:8080`, `[::1]:0`) or a host name resolved now
/// (`localhost:0`), preferring an IPv4 address when the name has both.
pub fn resolve_listen(variable: &str, value: &str) -> anyhow::Result<SocketAddr> {
    let value = value.trim();
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let example = "Use HOST:PORT, e.g. 127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080 or localhost:0";
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(fix(
            anyhow::anyhow!("{variable} {value:?} has no port"),
            example,
        ));
    };
    if port.parse::<u16>().is_err() {
        return Err(fix(
            anyhow::anyhow!("{variable} {value:?}: {port:?} is not a port (0-65535)"),
            example,
        ));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(fix(
            anyhow::anyhow!("{variable} {value:?} has no host"),
            example,
        ));
    }
    let addrs: Vec<SocketAddr> = match value.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            return Err(fix(
                anyhow::anyhow!(
                    "{variable} {value:?}: cannot resolve the host name {host:?} ({e})"
                ),
                "Use an IP address (127.0.0.1 for this machine only, 0.0.0.0 for every interface) or a name this machine resolves",
            ));
        }
    };
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| {
            fix(
                anyhow::anyhow!("{variable} {value:?}: the host name {host:?} has no address"),
                "Use an IP address such as 127.0.0.1",
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use anyhow::Context;

    #[test]
    fn one_line_says_each_cause_once_and_the_fix_last() {
        let root = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let error = Err::<(), _>(root)
            .context("error communicating with database: Connection refused (os error 111)")
            .context("Connection Error: error communicating with database: Connection refused (os error 111)")
            .context("connecting to the database")
            .fix("Start PostgreSQL or fix DATABASE_URL")
            .unwrap_err();
        assert_eq!(
            one_line(&error),
            "connecting to the database: Connection Error: error communicating with database: \
             Connection refused (os error 111). Start PostgreSQL or fix DATABASE_URL"
        );
    }

    #[test]
    fn one_line_joins_lines_and_keeps_a_plain_error() {
        let error = anyhow::anyhow!("invalid configuration:\n  first\n  second");
        assert_eq!(one_line(&error), "invalid configuration: first second");
        let error = anyhow::anyhow!("done.").context(Fix("Do this".into()));
        assert_eq!(one_line(&error), "done. Do this");
    }

    #[test]
    fn one_line_keeps_the_fix_last_when_context_is_added_after_it() {
        let error =
            fix(anyhow::anyhow!("connection refused"), "Start it").context("checking the database");
        assert_eq!(
            one_line(&error),
            "checking the database: connection refused. Start it"
        );
    }

    #[test]
    fn refuse_unbuilt_vars_names_the_variable_and_ignores_blank_ones() {
        refuse_unbuilt_vars(|_| None).unwrap();
        refuse_unbuilt_vars(|_| Some(" ".into())).unwrap();
        // Features get built: the test runs on whichever is still listed.
        let Some((unbuilt, _)) = UNBUILT_VARS.first() else {
            return;
        };
        let error =
            refuse_unbuilt_vars(|name| (name == *unbuilt).then(|| "60".to_owned())).unwrap_err();
        let line = one_line(&error);
        assert!(line.starts_with(&format!("{unbuilt} is set")), "{line}");
        assert!(
            line.ends_with(&format!("Unset {unbuilt}; nothing reads it yet")),
            "{line}"
        );
    }

    #[test]
    fn resolve_listen_reads_addresses_and_host_names() {
        assert_eq!(
            resolve_listen("X", "127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            resolve_listen("X", "[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert!(
            resolve_listen("X", "localhost:0")
                .unwrap()
                .ip()
                .is_loopback()
        );
        for (bad, says) in [
            ("localhost", "has no port"),
            ("localhost:http", "is not a port"),
            (":80", "has no host"),
            ("no-such-host.invalid:80", "cannot resolve"),
        ] {
            let line = one_line(&resolve_listen("AUTH_LISTEN", bad).unwrap_err());
            assert!(line.starts_with("AUTH_LISTEN"), "{bad}: {line}");
            assert!(line.contains(says), "{bad}: {line}");
        }
    }
}
