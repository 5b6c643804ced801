//! The README runs as written.
//!
//! - The walk-through (the `sh` blocks between `<!-- walkthrough:begin -->`
//!   and `<!-- walkthrough:end -->`) runs with `bash` (`set -euo pipefail`)
//!   against the `stack` binary, on free ports and a temporary folder, and
//!   ends with a token, a note, a refresh and a revocation. The only change
//!   made to the text is the two addresses (`stack` runs on port 0 here).
//! - The same blocks with the demo client's redirect URI changed must fail
//!   the same checks: the test can fail.
//! - The CLI example (`<!-- cli-example:begin -->`) runs against a temporary
//!   database, with the built `auth-server` in place of `cargo run …`.
//! - Every relative link of the README and of `docs/` names a file of the
//!   repository.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use e2e::binaries::{Binaries, BuildPolicy};
use e2e::workspace_root;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// The addresses the README gives (stack's defaults).
const README_AUTH: &str = "http://127.0.0.1:8080";
const README_API: &str = "http://127.0.0.1:8081";
/// What the CLI example starts with, and what the test runs instead.
const CARGO_RUN_AUTH_SERVER: &str = "cargo run --release -p auth-server --";
const STACK_START: Duration = Duration::from_secs(600);
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn readme() -> String {
    let path = workspace_root().join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The bodies of the `sh` code blocks between `<!-- NAME:begin -->` and
/// `<!-- NAME:end -->`, in order.
fn shell_blocks(text: &str, name: &str) -> Vec<String> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    assert_eq!(text.matches(&begin).count(), 1, "one {begin} in README.md");
    assert_eq!(text.matches(&end).count(), 1, "one {end} in README.md");
    let start = text.find(&begin).unwrap() + begin.len();
    let stop = text.find(&end).unwrap();
    assert!(start < stop, "{begin} comes before {end}");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text[start..stop].lines() {
        let fence = line.trim_end();
        if let Some(body) = current.as_mut() {
            if fence == "```" {
                blocks.extend(current.take());
            } else {
                body.push_str(line);
                body.push('\n');
            }
        } else if fence == "```sh" || fence == "```bash" {
            current = Some(String::new());
        } else if fence.starts_with("```") {
            panic!("{name}: a code block that is not `sh`: {fence}");
        }
    }
    assert!(current.is_none(), "{name}: unclosed code block");
    assert!(!blocks.is_empty(), "{name}: no sh code block");
    blocks
}

/// The walk-through as a script for the stack at `auth` and `api`.
fn walkthrough_script(text: &str, auth: &str, api: &str) -> String {
    let body = shell_blocks(text, "walkthrough").join("\n");
    assert!(
        body.contains(&format!("AUTH={README_AUTH}"))
            && body.contains(&format!("API={README_API}")),
        "the walk-through sets AUTH={README_AUTH} and API={README_API}"
    );
    let body = body.replace(README_AUTH, auth).replace(README_API, api);
    format!(
        "set -euo pipefail\n{body}\n\
         printf '%s=%s\\n' README_TEST_ACCESS_TOKEN \"$ACCESS_TOKEN\" README_TEST_REFRESH_TOKEN \"$REFRESH_TOKEN\"\n"
    )
}

/// `stack` on free ports and a temporary folder; stopped with SIGTERM (it
/// stops its services) when dropped.
struct RunningStack {
    child: Child,
    dir: tempfile::TempDir,
    auth: String,
    api: String,
}

impl RunningStack {
    async fn start() -> Self {
        // The services' binaries, built once for the whole test run; the
        // stack is told not to build them again.
        Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let stderr = std::fs::File::create(base.join("stack.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stack"));
        cmd.current_dir(base)
            .env(
                "DATABASE_URL",
                format!(
                    "sqlite://{}?mode=rwc",
                    base.join("data").join("portcullis.db").display()
                ),
            )
            .env("AUTH_KEYS_DIR", base.join("keys"))
            .env("AUTH_LISTEN", "127.0.0.1:0")
            .env("RESOURCE_LISTEN", "127.0.0.1:0")
            .env("E2E_SKIP_BUILD", "1")
            .env_remove("AUTH_ISSUER")
            .env_remove("JWKS_URL")
            .env_remove("AUTH_PUBLIC_KEYS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = cmd.spawn().expect("spawning stack");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut auth, mut api) = (None, None);
        let found = tokio::time::timeout(STACK_START, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["authorization", "server", url, ..] => auth = Some((*url).to_owned()),
                    ["resource", "API", url, ..] => api = Some((*url).to_owned()),
                    _ => {}
                }
                if auth.is_some() && api.is_some() {
                    return true;
                }
            }
            false
        })
        .await;
        let mut stack = Self {
            child,
            dir,
            auth: auth.clone().unwrap_or_default(),
            api: api.clone().unwrap_or_default(),
        };
        if found != Ok(true) {
            let log = stack.log();
            stack.stop();
            panic!(
                "stack did not print both URLs (auth {auth:?}, api {api:?}, timed out: {}); its stderr:\n{log}",
                found.is_err()
            );
        }
        // Keep draining stdout so that a later line never meets a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        stack
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("stack.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn demo(&self) -> Value {
        let path = self.dir.path().join("data").join("demo.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; stack:\n{}", path.display(), self.log()));
        serde_json::from_str(&text).unwrap()
    }

    /// Runs `script` with bash in the stack's folder (where `data/demo.json`
    /// is): (success, stdout and stderr).
    async fn run_script(&self, name: &str, script: &str) -> (bool, String) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, script).unwrap();
        let mut child = Command::new("bash")
            .arg(&path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning bash");
        let (mut out, mut err) = (String::new(), String::new());
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let status = tokio::time::timeout(SCRIPT_TIMEOUT, async {
            let (a, b) = tokio::join!(
                stdout.read_to_string(&mut out),
                stderr.read_to_string(&mut err)
            );
            a.unwrap();
            b.unwrap();
            child.wait().await.unwrap()
        })
        .await
        .unwrap_or_else(|_| panic!("{name} did not finish in {SCRIPT_TIMEOUT:?}"));
        (status.success(), format!("{out}\n--- stderr ---\n{err}"))
    }

    /// SIGTERM, then up to 20 s for the stack to stop its services.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        for _ in 0..200 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for RunningStack {
    fn drop(&mut self) {
        self.stop();
    }
}

fn require_tools() {
    for tool in ["bash", "curl", "openssl", "sed"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
        assert!(
            found,
            "the README walk-through needs `{tool}` on the PATH (Debian: apt-get install curl openssl)"
        );
    }
}

/// The token responses, notes and other JSON objects the script printed.
fn json_lines(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter(|line| line.starts_with('{'))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn final_value(output: &str, name: &str) -> String {
    let prefix = format!("README_TEST_{name}=");
    output
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_default()
        .to_owned()
}

/// What the walk-through must have done, checked from its output and
/// against the stack itself. Lists every failed check.
async fn check_outcome(stack: &RunningStack, ok: bool, output: &str) -> Result<(), String> {
    let mut failures = Vec::new();
    if !ok {
        failures.push("the script exited non-zero".to_owned());
    }
    for expected in [
        "sign-in: 303",
        "state matches",
        "issuer matches",
        "without a token: 401",
        "revoke: 200",
    ] {
        if !output.lines().any(|line| line.trim() == expected) {
            failures.push(format!("no line `{expected}`"));
        }
    }
    let json = json_lines(output);
    let tokens: Vec<&Value> = json
        .iter()
        .filter(|v| v.get("access_token").is_some())
        .collect();
    let refresh_tokens: Vec<&str> = tokens
        .iter()
        .filter_map(|t| t["refresh_token"].as_str())
        .collect();
    if tokens.len() != 2
        || tokens.iter().any(|t| t["token_type"] != "Bearer")
        || refresh_tokens.len() != 2
        || refresh_tokens[0] == refresh_tokens[1]
    {
        failures.push(format!(
            "expected two token responses (code exchange, refresh) with different refresh tokens, got {tokens:?}"
        ));
    }
    let demo = stack.demo();
    if !json.iter().any(|v| v.get("sub") == demo.get("user_id")) {
        failures.push(format!(
            "/api/v2/me did not name the demo user {}",
            demo["user_id"]
        ));
    }
    if !json
        .iter()
        .any(|v| v["title"] == "hello" && v["id"].is_string())
    {
        failures.push("no note created".to_owned());
    }
    if !output
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .is_some_and(|line| line.contains("\"invalid_grant\""))
    {
        failures.push("the refresh after the revocation did not end in invalid_grant".to_owned());
    }

    // The end state, seen from outside the script.
    let http = reqwest::Client::new();
    let access = final_value(output, "ACCESS_TOKEN");
    let notes = http
        .get(format!("{}/api/v2/notes", stack.api))
        .bearer_auth(&access)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = notes.status();
    let notes: Value = notes.json().await.unwrap_or_default();
    if !status.is_success()
        || !notes["notes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|note| note["title"] == "hello"))
    {
        failures.push(format!(
            "the last access token does not list the note: {status} {notes}"
        ));
    }
    let client_id = demo["client_id"].as_str().unwrap_or_default();
    let secret = demo["client_secret"].as_str().unwrap_or_default();
    let last_refresh = final_value(output, "REFRESH_TOKEN");
    let mut refreshes = refresh_tokens.clone();
    refreshes.push(&last_refresh);
    for token in refreshes.into_iter().filter(|t| !t.is_empty()) {
        let answer = http
            .post(format!("{}/token", stack.auth))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or_default();
        if body["error"] != "invalid_grant" {
            failures.push(format!(
                "a refresh token of the walk-through still works (rotated or revoked ones must not): {status} {body}"
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_runs_as_written_against_stack() {
    require_tools();
    let text = readme();
    let stack = RunningStack::start().await;

    // The same text with the redirect URI the demo client does not have
    // must fail the checks (as it did before this README was fixed).
    let broken_text = text.replace("8765", "9000");
    let broken = walkthrough_script(&broken_text, &stack.auth, &stack.api);
    let (ok, output) = stack.run_script("broken.sh", &broken).await;
    let verdict = check_outcome(&stack, ok, &output).await;
    assert!(
        verdict.is_err(),
        "the checks passed a walk-through with the wrong redirect URI:\n{output}"
    );

    let script = walkthrough_script(&text, &stack.auth, &stack.api);
    let (ok, output) = stack.run_script("walkthrough.sh", &script).await;
    if let Err(failures) = check_outcome(&stack, ok, &output).await {
        panic!(
            "README walk-through failed:\n{failures}\n\n--- script ---\n{script}\n--- output ---\n{output}\n--- stack ---\n{}",
            stack.log()
        );
    }
}

#[tokio::test]
async fn readme_cli_example_registers_a_client() {
    let blocks = shell_blocks(&readme(), "cli-example");
    let bins = Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for block in blocks {
        assert!(
            block.starts_with(CARGO_RUN_AUTH_SERVER),
            "the CLI example starts with `{CARGO_RUN_AUTH_SERVER}`: {block}"
        );
        let script = format!(
            "set -euo pipefail\n\"$AUTH_SERVER\"{}",
            &block[CARGO_RUN_AUTH_SERVER.len()..]
        );
        let output = Command::new("bash")
            .args(["-c", &script])
            .current_dir(dir.path())
            .env("AUTH_SERVER", &bins.auth_server)
            .env(
                "DATABASE_URL",
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("db.sqlite").display()
                ),
            )
            .env("AUTH_KEYS_DIR", dir.path().join("keys"))
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{script}\nfailed: {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let client: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{script}\nprinted no JSON ({e}): {stdout}"));
        assert!(client["client_id"].is_string(), "{client}");
        assert!(client["client_secret"].is_string(), "{client}");
        assert_eq!(
            client["redirect_uris"],
            serde_json::json!(["http://127.0.0.1:9000/callback"]),
            "{client}"
        );
    }
}

/// Relative links `](path)` of a Markdown file.
fn relative_links(text: &str) -> Vec<String> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')')?];
            let path = target.split('#').next().unwrap_or_default();
            let external = target.contains("://") || target.starts_with("mailto:");
            (!external && !path.is_empty()).then(|| path.to_owned())
        })
        .collect()
}

#[test]
fn readme_and_docs_link_only_to_files_of_the_repository() {
    let root = workspace_root();
    let mut files: Vec<PathBuf> = vec![root.join("README.md")];
    let docs = std::fs::read_dir(root.join("docs")).unwrap();
    files.extend(
        docs.map(|entry| entry.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    assert!(
        files
            .iter()
            .any(|p| p.ends_with(Path::new("docs/contract.md"))),
        "docs/contract.md exists"
    );
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let dir = file.parent().unwrap();
        for link in relative_links(&text) {
            let target = dir.join(&link);
            let inside = target
                .canonicalize()
                .is_ok_and(|t| t.starts_with(root.canonicalize().unwrap()));
            if !inside {
                broken.push(format!("{}: {link}", file.display()));
            }
        }
        if text.contains("DESIGN.md") {
            broken.push(format!(
                "{}: refers to DESIGN.md, which is outside the repository (docs/contract.md is the contract)",
                file.display()
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "links outside the repository:\n{}",
        broken.join("\n")
    );
}
