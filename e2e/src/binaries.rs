//! Where the `auth-server` and `resource-api` executables are, and building
//! them once per process.
//!
//! `CARGO_BIN_EXE_*` is only set for the test's own package, so the binaries
//! are looked up next to the running executable: a test runs from
//! `<target-dir>/<profile>/deps/`, the `stack` binary from
//! `<target-dir>/<profile>/`. This follows `CARGO_TARGET_DIR` and the profile
//! (`--release`, `--profile NAME`) by construction.
//!
//! Environment:
//! - `E2E_BIN_DIR`: use the binaries in this folder and never build.
//! - `E2E_SKIP_BUILD=1`: do not run `cargo build`; fail if a binary is missing.

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

/// How [`Binaries::ensure`] treats binaries that already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildPolicy {
    /// Run `cargo build` once per process (a no-op when they are fresh), so
    /// a test never runs a stale binary. A failed build is an error.
    Always,
    /// Build only when a binary is missing.
    IfMissing,
    /// Run `cargo build` once too, but when it fails (no workspace, no
    /// cargo, a broken crate) and both binaries exist, warn and use them.
    BestEffort,
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

    /// The binaries, built with `cargo build -p auth-server -p resource-api`
    /// in the same profile and target dir at most once per process.
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
            .context("build task failed")?
    }

    fn locate_and_build(policy: BuildPolicy) -> anyhow::Result<Self> {
        if let Some(dir) = std::env::var_os("E2E_BIN_DIR") {
            let bins = Self::in_dir(Path::new(&dir));
            if !bins.exist() {
                bail!(
                    "E2E_BIN_DIR={} lacks {AUTH_SERVER} or {RESOURCE_API}",
                    Path::new(&dir).display()
                );
            }
            return Ok(bins);
        }
        let dir = profile_dir();
        let bins = Self::in_dir(&dir);
        let skip = std::env::var_os("E2E_SKIP_BUILD").is_some_and(|v| v != "0" && !v.is_empty());
        let wanted = match policy {
            BuildPolicy::Always | BuildPolicy::BestEffort => !skip,
            BuildPolicy::IfMissing => !skip && !bins.exist(),
        };
        if wanted {
            match cargo_build(&dir) {
                Ok(()) => {}
                Err(e) if policy == BuildPolicy::BestEffort && bins.exist() => {
                    eprintln!(
                        "warning: {e:#}; using the existing binaries in {}",
                        dir.display()
                    );
                }
                Err(e) => return Err(e),
            }
        }
        if !bins.exist() {
            bail!(
                "{} or {} is missing (run `cargo build -p auth-server -p resource-api`)",
                bins.auth_server.display(),
                bins.resource_api.display()
            );
        }
        Ok(bins)
    }
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
    eprintln!("e2e: building {AUTH_SERVER} and {RESOURCE_API}: {cmd:?}");
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("`cargo build -p {AUTH_SERVER} -p {RESOURCE_API}` failed: {status}");
    }
    Ok(())
}
