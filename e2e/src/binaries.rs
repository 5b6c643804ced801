//! Where the `auth-server` and `resource-api` executables are.
//!
//! The e2e tests run the binaries that the test command already built, with
//! no nested `cargo build`: `cargo test --workspace` builds the bin targets
//! of the packages whose integration tests it runs (auth-server and
//! resource-api have some) into `<target-dir>/<profile>/`, before any test
//! starts. `CARGO_BIN_EXE_*` is only set for the test's own package, so the
//! binaries are looked up next to the running executable: a test runs from
//! `<target-dir>/<profile>/deps/`. This follows `CARGO_TARGET_DIR` and the
//! profile (`--release`, `--profile NAME`) by construction.
//!
//! Freshness rule: cargo writes beside each binary its dep-info file
//! (`auth-server.d`), which lists every workspace source file the binary was
//! built from (its own crate, `shared`, `migrations`; registry crates are
//! not listed). A binary is stale when one of those files is newer than the
//! binary or gone: exactly when `cargo build` would rebuild it. About a
//! hundred `stat` calls, once per process. A missing or stale binary is an
//! error that names the command to run. (Not covered: a changed build
//! script input or environment variable, which cargo also tracks.)
//!
//! Environment:
//! - `E2E_BIN_DIR`: use the binaries in this folder as they are (no
//!   freshness check, never builds; the abuse bench uses release builds).
//! - `E2E_SKIP_BUILD=1`: use the binaries of the profile folder as they are,
//!   without the freshness check (CI, right after `cargo build --workspace
//!   --all-targets`).
//! - `E2E_BUILD=1`: run `cargo build -p auth-server -p resource-api` first
//!   (in the same profile and target dir), for `cargo test -p e2e` right
//!   after editing a service.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, bail};

pub const AUTH_SERVER: &str = "auth-server";
pub const RESOURCE_API: &str = "resource-api";

/// Paths of the two service executables.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub auth_server: PathBuf,
    pub resource_api: PathBuf,
}

/// How [`Binaries::ensure`] finds the binaries. One rule today (kept as a
/// parameter so that callers read what they get).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildPolicy {
    /// Use the binaries the test command built; fail, naming the command to
    /// run, when one is missing or older than its sources (see the module
    /// documentation). Builds first only with `E2E_BUILD=1`.
    Always,
}

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// `<target-dir>/<profile>` of the running executable, or, failing that,
/// `$CARGO_TARGET_DIR/debug` (default `<workspace>/target/debug`).
pub fn profile_dir() -> PathBuf {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        let dir = if dir.file_name().is_some_and(|n| n == "deps") {
            dir.parent().map(Path::to_path_buf).unwrap_or(dir)
        } else {
            dir
        };
        return dir;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug")
}

fn exe(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

impl Binaries {
    fn in_dir(dir: &Path) -> Self {
        Self {
            auth_server: exe(dir, AUTH_SERVER),
            resource_api: exe(dir, RESOURCE_API),
        }
    }

    fn exist(&self) -> bool {
        self.auth_server.is_file() && self.resource_api.is_file()
    }

    /// The binaries of the running executable's profile, checked once per
    /// process (and built first with `E2E_BUILD=1`).
    /// Blocking: call it from `spawn_blocking` or before the runtime starts.
    pub fn ensure(policy: BuildPolicy) -> anyhow::Result<Self> {
        static RESULT: OnceLock<Result<Binaries, String>> = OnceLock::new();
        RESULT
            .get_or_init(|| Self::locate_and_build(policy).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(anyhow::Error::msg)
    }

    /// [`Binaries::ensure`] on the blocking pool.
    pub async fn ensure_async(policy: BuildPolicy) -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(move || Self::ensure(policy))
            .await
            .context("the task finding the binaries failed")?
    }

    fn locate_and_build(policy: BuildPolicy) -> anyhow::Result<Self> {
        let BuildPolicy::Always = policy;
        if let Some(dir) = std::env::var_os("E2E_BIN_DIR") {
            let bins = Self::in_dir(Path::new(&dir));
            if !bins.exist() {
                bail!(
                    "E2E_BIN_DIR={} lacks {AUTH_SERVER} or {RESOURCE_API}",
                    Path::new(&dir).display()
                );
            }
            say(&format!(
                "e2e: using {AUTH_SERVER} and {RESOURCE_API} from E2E_BIN_DIR={}",
                bins.dir_display()
            ));
            return Ok(bins);
        }
        let dir = profile_dir();
        let bins = Self::in_dir(&dir);
        if env_flag("E2E_BUILD") {
            cargo_build(&dir)?;
        }
        let hint = build_hint(&dir);
        for exe in [&bins.auth_server, &bins.resource_api] {
            if !exe.is_file() {
                bail!(
                    "{} is missing: run `{hint}` (`cargo test --workspace` builds it too), or set E2E_BUILD=1",
                    exe.display()
                );
            }
        }
        if env_flag("E2E_SKIP_BUILD") {
            say(&format!(
                "e2e: using {AUTH_SERVER} and {RESOURCE_API} from {} as they are (E2E_SKIP_BUILD)",
                bins.dir_display()
            ));
            return Ok(bins);
        }
        let mut checked = "up to date with their sources";
        for exe in [&bins.auth_server, &bins.resource_api] {
            match freshness(exe)? {
                Freshness::Fresh => {}
                Freshness::Unknown => checked = "no dep-info beside them: freshness not checked",
                Freshness::Stale(source) => bail!(
                    "{} is older than its source {} (changed or removed since the build): run `{hint}` (`cargo test --workspace` rebuilds it too), or set E2E_BUILD=1",
                    exe.display(),
                    source.display()
                ),
            }
        }
        say(&format!(
            "e2e: using {AUTH_SERVER} and {RESOURCE_API} from {} ({checked})",
            bins.dir_display()
        ));
        Ok(bins)
    }

    fn dir_display(&self) -> String {
        self.auth_server
            .parent()
            .map(|dir| dir.display().to_string())
            .unwrap_or_default()
    }
}

/// One line on the process's stderr, past the test harness's capture (which
/// only takes `eprintln!`), so that `cargo test` shows it once.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A variable set to something other than empty or `0`.
fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v != "0" && !v.is_empty())
}

/// The command that builds the binaries of `profile_dir`'s profile.
fn build_hint(profile_dir: &Path) -> String {
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => String::new(),
        Some("release") => " --release".to_owned(),
        Some(profile) => format!(" --profile {profile}"),
    };
    format!("cargo build{profile} -p {AUTH_SERVER} -p {RESOURCE_API}")
}

/// What the freshness rule says about one binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Newer than every source file its dep-info lists.
    Fresh,
    /// This source file is newer than the binary, or gone.
    Stale(PathBuf),
    /// No dep-info beside the binary (copied there by hand): not checked.
    Unknown,
}

/// The freshness rule of the module documentation for `exe`, from the
/// dep-info file cargo wrote beside it (`<exe>.d`).
pub fn freshness(exe: &Path) -> anyhow::Result<Freshness> {
    let built = std::fs::metadata(exe)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading the time of {}", exe.display()))?;
    let dep_info = exe.with_extension("d");
    let Ok(text) = std::fs::read_to_string(&dep_info) else {
        return Ok(Freshness::Unknown);
    };
    let root = workspace_root();
    for source in dep_info_sources(&text) {
        // Relative when cargo's `build.dep-info-basedir` is set.
        let source = if source.is_relative() {
            root.join(source)
        } else {
            source
        };
        match std::fs::metadata(&source).and_then(|m| m.modified()) {
            Ok(modified) if modified <= built => {}
            _ => return Ok(Freshness::Stale(source)),
        }
    }
    Ok(Freshness::Fresh)
}

/// The prerequisites of the first rule of a makefile-style dep-info file
/// (`target: a.rs b\\ c.rs`), unescaping `\\ `.
pub fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let Some(first) = text.lines().find(|line| !line.trim().is_empty()) else {
        return Vec::new();
    };
    // The target is a path too: split after its first unescaped `: `.
    let mut rest = None;
    let mut prev = '\0';
    for (i, c) in first.char_indices() {
        if c == ':' && prev != '\\' && first[i + 1..].starts_with(' ') {
            rest = Some(&first[i + 1..]);
            break;
        }
        prev = c;
    }
    let Some(rest) = rest else {
        return Vec::new();
    };
    let mut sources = Vec::new();
    let mut current = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                current.push(' ');
                chars.next();
            }
            ' ' => {
                if !current.is_empty() {
                    sources.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        sources.push(PathBuf::from(current));
    }
    sources
}

/// `cargo build -p auth-server -p resource-api` for the profile whose output
/// folder is `profile_dir`, into the same target dir.
fn cargo_build(profile_dir: &Path) -> anyhow::Result<()> {
    let root = workspace_root();
    if !root.join("Cargo.toml").is_file() {
        bail!(
            "no workspace at {} to build the services in",
            root.display()
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    // `cargo test` / `cargo run` give us the variables of the crate being run
    // (CARGO_MANIFEST_DIR=…/e2e, CARGO_PKG_NAME=e2e, …). Build scripts such as
    // ring's watch several of them (`rerun-if-env-changed`), so passing them
    // on would rebuild half the tree on every run, and again in the next
    // plain `cargo build`.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_by_cargo_for_a_crate = matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        ) || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_EXE_")
            || key.starts_with("CARGO_CFG_");
        if set_by_cargo_for_a_crate {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(&root)
        .args(["build", "-p", AUTH_SERVER, "-p", RESOURCE_API]);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    if let Some(target_dir) = profile_dir.parent() {
        cmd.arg("--target-dir").arg(target_dir);
    }
    eprintln!(
        "e2e: E2E_BUILD is set: running `{}`",
        build_hint(profile_dir)
    );
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("`cargo build -p {AUTH_SERVER} -p {RESOURCE_API}` failed: {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::time::{Duration, SystemTime};

    use super::*;

    fn touch(path: &Path, at: SystemTime) {
        File::options()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    }

    #[test]
    fn dep_info_sources_reads_the_first_rule_and_unescapes_spaces() {
        let text = "/t/debug/auth-server: /w/a.rs /w/b\\ c.rs  /w/d.rs\n\n/w/a.rs:\n/w/b\\ c.rs:\n";
        assert_eq!(
            dep_info_sources(text),
            vec![
                PathBuf::from("/w/a.rs"),
                PathBuf::from("/w/b c.rs"),
                PathBuf::from("/w/d.rs")
            ]
        );
        assert!(dep_info_sources("").is_empty());
        assert!(dep_info_sources("no rule here").is_empty());
    }

    #[test]
    fn freshness_is_stale_when_a_listed_source_is_newer_or_gone() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("auth-server");
        let a = dir.path().join("a.rs");
        let b = dir.path().join("b c.rs");
        let t0 = SystemTime::now() - Duration::from_secs(3600);
        touch(&a, t0);
        touch(&b, t0);
        touch(&exe, t0 + Duration::from_secs(10));

        // No dep-info beside the binary: nothing to compare with.
        assert_eq!(freshness(&exe).unwrap(), Freshness::Unknown);

        let dep_info = format!(
            "{}: {} {}\n",
            exe.display(),
            a.display(),
            b.display().to_string().replace(' ', "\\ ")
        );
        std::fs::write(exe.with_extension("d"), dep_info).unwrap();
        assert_eq!(freshness(&exe).unwrap(), Freshness::Fresh);

        // An edit after the build.
        touch(&a, t0 + Duration::from_secs(20));
        assert_eq!(freshness(&exe).unwrap(), Freshness::Stale(a.clone()));

        // Rebuilt since: fresh again; then a listed file deleted.
        touch(&exe, t0 + Duration::from_secs(30));
        assert_eq!(freshness(&exe).unwrap(), Freshness::Fresh);
        std::fs::remove_file(&b).unwrap();
        assert_eq!(freshness(&exe).unwrap(), Freshness::Stale(b));
    }

    #[test]
    fn build_hint_names_the_profile_of_the_folder() {
        assert_eq!(
            build_hint(Path::new("/t/debug")),
            "cargo build -p auth-server -p resource-api"
        );
        assert_eq!(
            build_hint(Path::new("/t/release")),
            "cargo build --release -p auth-server -p resource-api"
        );
        assert_eq!(
            build_hint(Path::new("/t/bench")),
            "cargo build --profile bench -p auth-server -p resource-api"
        );
    }
}
