//! Decides, when the tests are built, which optional test variants can run
//! here, and says so to the compiler as `cfg`s (`have_postgres`, …) that
//! the macros of `src/lib.rs` read. The tests whose requirement is absent
//! are then marked `#[ignore = "why"]`, and libtest counts them in its
//! summary as ignored instead of passed.
//!
//! This runs again when one of the variables below changes (so
//! `TEST_DATABASE_URL=… cargo test` turns the PostgreSQL variants on), and
//! when this file changes: `touch test-gates/build.rs` re-probes the tools
//! after installing one (Chromium, PyJWT, redis-server).
//!
//! The chaos tests' probes (a private PostgreSQL 15 cluster; a SQLite file
//! made read-only with `chattr +i` under an unprivileged server) repeat the
//! checks those tests make before they start.
//!
//! With `CI=true`, the browser tests and the tests that start their own
//! `redis-server` are never ignored: a missing tool fails them instead.

use std::env;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

/// Every gate, as `have_<name>`.
const GATES: &[&str] = &[
    "postgres",
    "redis",
    "redis_server",
    "chromium",
    "ipv6",
    "pyjwt",
    "private_postgres",
    "read_only_sqlite",
];

fn main() {
    for var in [
        "TEST_DATABASE_URL",
        "TEST_REDIS_URL",
        "CI",
        "PATH",
        "PYENV_VERSION",
        "VIRTUAL_ENV",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");
    for gate in GATES {
        println!("cargo::rustc-check-cfg=cfg(have_{gate})");
    }

    let ci = env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let on = [
        ("postgres", set("TEST_DATABASE_URL")),
        ("redis", set("TEST_REDIS_URL")),
        ("redis_server", ci || on_path("redis-server")),
        (
            "chromium",
            ci || (Path::new("/usr/bin/chromium").is_file()
                && Path::new("/usr/bin/chromedriver").is_file()),
        ),
        ("ipv6", TcpListener::bind("[::1]:0").is_ok()),
        ("pyjwt", pyjwt()),
        ("private_postgres", private_postgres()),
        ("read_only_sqlite", read_only_sqlite()),
    ];
    for (gate, present) in on {
        if present {
            println!("cargo::rustc-cfg=have_{gate}");
        }
    }
}

/// The variable is set and not blank.
fn set(var: &str) -> bool {
    env::var(var).is_ok_and(|v| !v.trim().is_empty())
}

/// A file of this name in a folder of `PATH`.
fn on_path(binary: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
}

/// `python3` imports PyJWT and cryptography (as the interop test's script).
fn pyjwt() -> bool {
    Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether `program args` runs and exits 0.
fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `id ARGS` as a number.
fn id(args: &[&str]) -> Option<u32> {
    let output = Command::new("id").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// A PostgreSQL 15 cluster the chaos test can own: Debian's binaries, and
/// when we are root the `postgres` user and `runuser` to run them as.
fn private_postgres() -> bool {
    let bin = Path::new("/usr/lib/postgresql/15/bin");
    let tools = ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|tool| bin.join(tool).is_file());
    tools
        && (id(&["-u"]) != Some(0)
            || (succeeds("id", &["-u", "postgres"]) && succeeds("runuser", &["--help"])))
}

/// The chaos test's read-only SQLite: as root, `setpriv` and a `nobody`
/// that can write the temp dir (file modes apply to it, not to root); and
/// `chattr +i` working on a file in the temp dir.
fn read_only_sqlite() -> bool {
    let tmp = env::temp_dir();
    let unprivileged = match id(&["-u"]) {
        Some(0) => match (id(&["-u", "nobody"]), id(&["-g", "nobody"])) {
            (Some(uid), Some(gid)) => {
                let tmp = tmp.display().to_string();
                succeeds(
                    "setpriv",
                    &[
                        &format!("--reuid={uid}"),
                        &format!("--regid={gid}"),
                        "--clear-groups",
                        "--",
                        "test",
                        "-w",
                        &tmp,
                        "-a",
                        "-x",
                        &tmp,
                    ],
                )
            }
            _ => false,
        },
        Some(_) => true,
        None => false,
    };
    if !unprivileged {
        return false;
    }
    let probe = tmp.join(format!("test-gates-immutable-{}", std::process::id()));
    if std::fs::write(&probe, b"probe").is_err() {
        return false;
    }
    let path = probe.display().to_string();
    let works = succeeds("chattr", &["+i", &path]);
    let _ = succeeds("chattr", &["-i", &path]);
    let _ = std::fs::remove_file(&probe);
    works
}
