//! The whole stack for one test: a temp dir with the keys folder and the
//! SQLite file (or a database URL the caller made), `auth-server serve` on
//! port 0, then `resource-api serve` on port 0 trusting the auth server's
//! issuer. Everything is killed and deleted on drop; the services' output is
//! printed when the drop happens during a panic (a failing test).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::binaries::{Binaries, BuildPolicy};
use crate::oauth::{self, ClientAuth, OAuthResponse};
use crate::service::{Service, ServiceSpec};

/// How to start a [`Stack`].
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// `None`: a fresh SQLite file in the stack's temp dir.
    pub database_url: Option<String>,
    /// Extra environment of `auth-server` (e.g. `AUTH_CODE_TTL_SECS=0`); also
    /// given to the CLI.
    pub auth_env: Vec<(String, String)>,
    /// Extra environment of `resource-api`.
    pub resource_env: Vec<(String, String)>,
    /// Start `resource-api` too.
    pub resource_api: bool,
    /// PKCS#8 PEM private keys written (mode 0600) into the keys folder
    /// before `auth-server` starts; none: the server makes a dev key.
    pub signing_keys: Vec<String>,
    /// Run `auth-server` (server and CLI) as this unprivileged user, with the
    /// temp dir (keys, SQLite file) given to it, so that file modes apply
    /// (root ignores them). `resource-api` still runs as the caller.
    pub run_auth_as: Option<RunAs>,
    /// Serve both services over HTTPS with these files (`TLS_CERT`,
    /// `TLS_KEY`); resource-api trusts the CA for its JWKS fetch
    /// (`SSL_CERT_FILE`), and so do the stack's clients.
    pub tls: Option<StackTls>,
}

/// The certificate files of a stack serving HTTPS ([`StackOptions::tls`]).
#[derive(Debug, Clone)]
pub struct StackTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signed `cert`, as a file and as PEM.
    pub ca_file: PathBuf,
    pub ca_pem: String,
}

/// Rate limits and lockout lifted out of the way of tests about something
/// else (every e2e request comes from 127.0.0.1); a test about them sets its
/// own with [`StackOptions::auth_env`] / [`StackOptions::resource_env`],
/// which come later and win.
const AUTH_TEST_LIMITS: &[(&str, &str)] = &[
    ("RATE_LIMIT_LOGIN", "10000/minute"),
    ("RATE_LIMIT_PAGES", "10000/minute"),
    ("RATE_LIMIT_TOKEN", "10000/minute"),
    ("RATE_LIMIT_CLIENT_FAILURES", "10000/minute"),
    ("RATE_LIMIT_PASSWORD_RESET", "10000/hour"),
    ("RATE_LIMIT_REGISTRATION", "10000/hour"),
    ("RATE_LIMIT_ADMIN", "10000/minute"),
    ("LOCKOUT_THRESHOLD", "100"),
];
const RESOURCE_TEST_LIMITS: &[(&str, &str)] = &[
    ("RATE_LIMIT_PREMIUM", "100000/minute"),
    ("RATE_LIMIT_STANDARD", "100000/minute"),
    ("RATE_LIMIT_ANONYMOUS", "100000/minute"),
    ("RATE_LIMIT_SEARCH", "100000/minute"),
];

fn env_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            database_url: None,
            auth_env: env_pairs(AUTH_TEST_LIMITS),
            resource_env: env_pairs(RESOURCE_TEST_LIMITS),
            resource_api: true,
            signing_keys: Vec::new(),
            run_auth_as: None,
            tls: None,
        }
    }
}

impl StackOptions {
    pub fn auth_env(mut self, key: &str, value: &str) -> Self {
        self.auth_env.push((key.into(), value.into()));
        self
    }

    pub fn resource_env(mut self, key: &str, value: &str) -> Self {
        self.resource_env.push((key.into(), value.into()));
        self
    }

    pub fn database_url(mut self, url: Option<String>) -> Self {
        self.database_url = url;
        self
    }

    pub fn signing_key(mut self, pem: &str) -> Self {
        self.signing_keys.push(pem.into());
        self
    }

    pub fn without_resource_api(mut self) -> Self {
        self.resource_api = false;
        self
    }

    pub fn run_auth_as(mut self, user: RunAs) -> Self {
        self.run_auth_as = Some(user);
        self
    }

    pub fn tls(mut self, tls: StackTls) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// An unprivileged user to run `auth-server` as, through util-linux
/// `setpriv` (the caller must be root). See [`StackOptions::run_auth_as`].
#[derive(Debug, Clone)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// The `auth-server` executable to run instead of the built one (a copy
    /// the user can reach when the target dir is not).
    pub program: Option<PathBuf>,
}

impl RunAs {
    /// `setpriv --reuid=UID --regid=GID --clear-groups -- PROGRAM` without
    /// the program's own arguments.
    fn spec(&self, name: &str, program: &Path) -> ServiceSpec {
        ServiceSpec::new(name, "setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(self.program.as_deref().unwrap_or(program))
    }

    /// Gives `path` and everything under it to the user.
    #[cfg(unix)]
    fn chown_tree(&self, path: &Path) -> anyhow::Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .with_context(|| format!("chown {}", path.display()))?;
        if path.is_dir() {
            for entry in
                std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
            {
                self.chown_tree(&entry?.path())?;
            }
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn chown_tree(&self, _path: &Path) -> anyhow::Result<()> {
        bail!("running auth-server as another user needs Unix")
    }
}

/// A client made with `auth-server clients create`.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub public: bool,
    pub scope: Option<String>,
    /// Empty: the CLI's defaults.
    pub grants: Vec<String>,
}

impl ClientSpec {
    /// A confidential client with one redirect URI and the default grants
    /// (`authorization_code`, `refresh_token`) and scopes.
    pub fn confidential(name: &str, redirect_uri: &str) -> Self {
        Self {
            name: name.into(),
            redirect_uris: vec![redirect_uri.into()],
            public: false,
            scope: None,
            grants: Vec::new(),
        }
    }

    pub fn public(name: &str, redirect_uri: &str) -> Self {
        Self {
            public: true,
            ..Self::confidential(name, redirect_uri)
        }
    }

    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.into());
        self
    }

    pub fn grant(mut self, grant: &str) -> Self {
        self.grants.push(grant.into());
        self
    }

    /// The CLI arguments after `--json`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "clients".to_owned(),
            "create".to_owned(),
            "--name".to_owned(),
            self.name.clone(),
        ];
        for uri in &self.redirect_uris {
            args.extend(["--redirect-uri".to_owned(), uri.clone()]);
        }
        if self.public {
            args.push("--public".to_owned());
        }
        if let Some(scope) = &self.scope {
            args.extend(["--scope".to_owned(), scope.clone()]);
        }
        for grant in &self.grants {
            args.extend(["--grant".to_owned(), grant.clone()]);
        }
        args
    }
}

/// What `clients create --json` answered.
#[derive(Debug, Clone)]
pub struct CreatedClient {
    pub id: String,
    pub secret: Option<String>,
    pub redirect_uri: String,
    pub raw: Value,
}

impl CreatedClient {
    pub fn from_json(raw: Value, redirect_uri: &str) -> anyhow::Result<Self> {
        let id = raw
            .get("client_id")
            .and_then(Value::as_str)
            .with_context(|| format!("no client_id in {raw}"))?
            .to_owned();
        let secret = raw
            .get("client_secret")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Self {
            id,
            secret,
            redirect_uri: redirect_uri.to_owned(),
            raw,
        })
    }

    /// `client_secret_basic` for a confidential client, `client_id` alone for
    /// a public one.
    pub fn basic(&self) -> ClientAuth<'_> {
        match &self.secret {
            Some(secret) => ClientAuth::Basic {
                id: &self.id,
                secret,
            },
            None => ClientAuth::Public { id: &self.id },
        }
    }

    /// `client_secret_post` for a confidential client.
    pub fn post(&self) -> ClientAuth<'_> {
        match &self.secret {
            Some(secret) => ClientAuth::Post {
                id: &self.id,
                secret,
            },
            None => ClientAuth::Public { id: &self.id },
        }
    }
}

/// What `users create --json` answered, with the password used.
#[derive(Debug, Clone)]
pub struct CreatedUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub raw: Value,
}

/// Both services, running. See the module documentation.
#[derive(Debug)]
pub struct Stack {
    pub auth: Service,
    pub resource: Option<Service>,
    /// The issuer from the discovery metadata (equal to `auth.url`).
    pub issuer: String,
    /// `/.well-known/oauth-authorization-server`.
    pub metadata: Value,
    pub database_url: String,
    pub keys_dir: PathBuf,
    /// A plain client without cookies or redirects.
    pub http: reqwest::Client,
    cli: ServiceSpec,
    /// `resource-api` without `serve`, to start it again.
    resource_spec: Option<ServiceSpec>,
    // Last: deleted after the processes are killed.
    dir: tempfile::TempDir,
}

impl Stack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let bins = Binaries::ensure_async(BuildPolicy::Always).await?;
        let dir = tempfile::Builder::new()
            .prefix("portcullis-e2e-")
            .tempdir()
            .context("creating temp dir")?;
        let keys_dir = dir.path().join("keys");
        std::fs::create_dir(&keys_dir).context("creating keys dir")?;
        for (i, pem) in options.signing_keys.iter().enumerate() {
            write_private(&keys_dir.join(format!("test-key-{i}.pem")), pem.as_bytes())?;
        }
        let database_url = match &options.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("portcullis.db").display()
            ),
        };
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30));
        if let Some(tls) = &options.tls {
            http =
                http.add_root_certificate(reqwest::Certificate::from_pem(tls.ca_pem.as_bytes())?);
        }
        let http = http.build()?;

        let cli = match &options.run_auth_as {
            None => ServiceSpec::new("auth", &bins.auth_server),
            Some(user) => {
                user.chown_tree(dir.path())?;
                user.spec("auth", &bins.auth_server)
            }
        };
        let mut cli = cli
            .env("DATABASE_URL", &database_url)
            .env("AUTH_KEYS_DIR", keys_dir.display().to_string());
        cli.current_dir = Some(dir.path().to_path_buf());
        if let Some(tls) = &options.tls {
            cli = cli
                .env("TLS_CERT", tls.cert.display().to_string())
                .env("TLS_KEY", tls.key.display().to_string())
                .trust_ca(&tls.ca_pem);
        }
        cli.envs.extend(options.auth_env.iter().cloned());
        // AUTH_ISSUER stays unset: the server then uses its bound address.
        let auth =
            Service::start(cli.clone().env("AUTH_LISTEN", "127.0.0.1:0").arg("serve")).await?;

        let metadata_url = format!("{}{}", auth.url, shared::paths::METADATA_PATH);
        let metadata = OAuthResponse::read(
            http.get(&metadata_url)
                .send()
                .await
                .with_context(|| format!("GET {metadata_url}"))?,
        )
        .await?;
        let metadata = match metadata.json {
            Some(json) if metadata.status.is_success() => json,
            _ => bail!("GET {metadata_url}: {} {}", metadata.status, metadata.body),
        };
        let issuer = metadata
            .get("issuer")
            .and_then(Value::as_str)
            .with_context(|| format!("no issuer in {metadata}"))?
            .to_owned();
        if issuer.trim_end_matches('/') != auth.url {
            bail!(
                "auth-server started without AUTH_ISSUER announces issuer {issuer}, \
                 not its bound address {} (the e2e tests need the default issuer to be \
                 http://<bound addr>)",
                auth.url
            );
        }

        let (resource, resource_spec) = if options.resource_api {
            let mut spec = ServiceSpec::new("api", &bins.resource_api)
                .env("DATABASE_URL", &database_url)
                .env("RESOURCE_LISTEN", "127.0.0.1:0")
                .env("AUTH_ISSUER", &issuer);
            spec.current_dir = Some(dir.path().to_path_buf());
            if let Some(tls) = &options.tls {
                spec = spec
                    .env("TLS_CERT", tls.cert.display().to_string())
                    .env("TLS_KEY", tls.key.display().to_string())
                    .env("SSL_CERT_FILE", tls.ca_file.display().to_string())
                    .trust_ca(&tls.ca_pem);
            }
            spec.envs.extend(options.resource_env.iter().cloned());
            let service = Service::start(spec.clone().arg("serve")).await?;
            (Some(service), Some(spec))
        } else {
            (None, None)
        };

        Ok(Self {
            auth,
            resource,
            issuer,
            metadata,
            database_url,
            keys_dir,
            http,
            cli,
            resource_spec,
            dir,
        })
    }

    /// Stops the authorization server with SIGTERM and starts it again on the
    /// same address, database and keys; returns how the old process exited.
    pub async fn restart_auth(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let status = self.auth.terminate(Duration::from_secs(20)).await?;
        self.start_auth_again().await?;
        Ok(status)
    }

    /// Kills the authorization server with SIGKILL (a crash: requests in
    /// flight get no answer) and starts it again on the same address,
    /// database and keys; returns how the old process ended.
    pub async fn kill_restart_auth(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let status = self.auth.kill().await?;
        self.start_auth_again().await?;
        Ok(status)
    }

    /// A second `auth-server serve` on the same database, keys and issuer, on
    /// a new port: another instance behind the same load balancer. `env` is
    /// added to the stack's own.
    pub async fn start_another_auth(&self, env: &[(&str, &str)]) -> anyhow::Result<Service> {
        let mut spec = self
            .cli
            .clone()
            .env("AUTH_LISTEN", "127.0.0.1:0")
            .env("AUTH_ISSUER", &self.issuer);
        for (key, value) in env {
            spec = spec.env(*key, *value);
        }
        Service::start(spec.arg("serve")).await
    }

    /// `auth-server serve` on the address the stopped one had, once healthy.
    async fn start_auth_again(&mut self) -> anyhow::Result<()> {
        let addr = self.auth.addr.to_string();
        self.auth = Service::start(self.cli.clone().env("AUTH_LISTEN", &addr).arg("serve")).await?;
        Ok(())
    }

    /// Kills `resource-api` with SIGKILL and starts a fresh process (nothing
    /// cached, no keys) on the same address; returns how the old one ended.
    pub async fn kill_restart_resource(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let (Some(spec), Some(old)) = (&self.resource_spec, self.resource.as_mut()) else {
            bail!("this stack runs without resource-api");
        };
        let status = old.kill().await?;
        let addr = old.addr.to_string();
        let fresh = Service::start(spec.clone().env("RESOURCE_LISTEN", &addr).arg("serve")).await?;
        self.resource = Some(fresh);
        Ok(status)
    }

    /// The temp dir (working directory of the services).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The resource API's base URL.
    pub fn resource_url(&self) -> anyhow::Result<&str> {
        self.resource
            .as_ref()
            .map(|s| s.url.as_str())
            .context("this stack runs without resource-api")
    }

    /// A string member of the discovery metadata (e.g. `token_endpoint`).
    pub fn endpoint(&self, name: &str) -> anyhow::Result<String> {
        self.metadata
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("no {name} in the metadata {}", self.metadata))
    }

    /// The authorization endpoint with `params` as query.
    pub fn authorize_url(&self, params: &[(&str, &str)]) -> anyhow::Result<Url> {
        let mut url = Url::parse(&self.endpoint("authorization_endpoint")?)?;
        url.query_pairs_mut().extend_pairs(params);
        Ok(url)
    }

    /// POSTs `form` to the token endpoint.
    pub async fn token(
        &self,
        auth: ClientAuth<'_>,
        form: &[(&str, &str)],
    ) -> anyhow::Result<OAuthResponse> {
        oauth::post_form(&self.http, &self.endpoint("token_endpoint")?, auth, form).await
    }

    pub async fn introspect(
        &self,
        auth: ClientAuth<'_>,
        token: &str,
    ) -> anyhow::Result<OAuthResponse> {
        let url = self.endpoint("introspection_endpoint")?;
        oauth::post_form(&self.http, &url, auth, &[("token", token)]).await
    }

    pub async fn revoke(
        &self,
        auth: ClientAuth<'_>,
        token: &str,
        hint: Option<&str>,
    ) -> anyhow::Result<OAuthResponse> {
        let url = self.endpoint("revocation_endpoint")?;
        let mut form = vec![("token", token)];
        if let Some(hint) = hint {
            form.push(("token_type_hint", hint));
        }
        oauth::post_form(&self.http, &url, auth, &form).await
    }

    /// Runs `auth-server ARGS` with the stack's database and keys; returns
    /// the raw output whatever the exit status.
    pub async fn cli_output(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<std::process::Output> {
        let mut cmd = self.cli.command();
        // The wrapper's arguments (`setpriv … -- auth-server`), if any.
        cmd.args(&self.cli.args)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawning auth-server")?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await?;
            pipe.shutdown().await?;
        }
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .with_context(|| format!("auth-server {args:?} took over 60 s"))??;
        Ok(output)
    }

    /// Runs `auth-server --json ARGS` and parses stdout; a non-zero exit is
    /// an error carrying stderr.
    pub async fn cli(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Value> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let output = self.cli_output(&full, stdin).await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "auth-server {full:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        serde_json::from_str(stdout.trim()).with_context(|| {
            format!(
                "auth-server {full:?} printed no JSON:\nstdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    pub async fn create_client(&self, spec: &ClientSpec) -> anyhow::Result<CreatedClient> {
        let args = spec.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let raw = self.cli(&args, None).await?;
        let redirect_uri = spec.redirect_uris.first().map_or("", String::as_str);
        let client = CreatedClient::from_json(raw, redirect_uri)?;
        if !spec.public && client.secret.is_none() {
            bail!("confidential client without client_secret: {}", client.raw);
        }
        Ok(client)
    }

    /// A user with the given password (`--password-stdin`).
    pub async fn create_user(
        &self,
        email: &str,
        name: &str,
        password: &str,
    ) -> anyhow::Result<CreatedUser> {
        let raw = self
            .cli(
                &[
                    "users",
                    "create",
                    "--email",
                    email,
                    "--name",
                    name,
                    "--password-stdin",
                ],
                Some(&format!("{password}\n")),
            )
            .await?;
        let id = raw
            .get("id")
            .and_then(Value::as_str)
            .with_context(|| format!("no id in {raw}"))?
            .to_owned();
        Ok(CreatedUser {
            id,
            email: email.to_owned(),
            password: password.to_owned(),
            raw,
        })
    }

    /// Both services' output so far.
    pub fn logs(&self) -> String {
        let mut out = format!(
            "----- auth-server ({}) -----\n{}",
            self.auth.url,
            self.auth.logs.text()
        );
        if let Some(resource) = &self.resource {
            out.push_str(&format!(
                "----- resource-api ({}) -----\n{}",
                resource.url,
                resource.logs.text()
            ));
        }
        out
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Writes a private file with mode 0600 (created so, never wider).
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
