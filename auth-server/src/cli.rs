//! The `auth-server` command line.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use shared::contract::Tier;

use crate::config::{MAX_REFRESH_GRACE_SECS, Settings};
use crate::domain::{ClientKind, Email, GrantType, RedirectUri, ScopeSet, parse_name};
use crate::startup::{Application, BuildOptions};
use crate::store::{self, clients::NewClient};
use crate::{keys, password};

mod api_keys;
mod lifecycle;
mod signing;
use lifecycle::TokensCommand;

#[derive(Debug, Parser)]
#[command(
    name = "auth-server",
    version,
    about = "Portcullis OAuth 2.0 authorization server"
)]
pub struct Cli {
    /// TOML config file (never read implicitly).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        /// Do not run migrations on start.
        #[arg(long)]
        no_migrate: bool,
        /// Development: CORS also allows http://localhost:3000 (a front-end
        /// dev server); logs a warning. Nothing else changes.
        #[arg(long)]
        dev: bool,
    },
    /// Apply database migrations.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Revoke refresh tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// API keys of clients (`X-API-Key` on the resource API).
    #[command(subcommand)]
    ApiKeys(api_keys::ApiKeysCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Sign-in lockouts after repeated failures.
    #[command(subcommand)]
    Lockouts(LockoutsCommand),
    /// Delete expired rows (the server also does it every JANITOR_INTERVAL_SECS).
    #[command(subcommand)]
    Janitor(JanitorCommand),
    /// The dev mail outbox: mail stored instead of sent while SMTP_URL is unset.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum LockoutsCommand {
    /// List the lockouts in force.
    List,
    /// Lift the lockout of an IP address (or IPv6 /64) or an account (email).
    Clear {
        /// An IP address, an IPv6 /64 as listed, or an account's email.
        #[arg(value_name = "IP|EMAIL")]
        subject: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user.
    Create(CreateUser),
    /// Disable a user: ends their sign-in sessions and revokes their refresh
    /// tokens; sign-in and refresh fail until enabled. Access tokens already
    /// issued stay valid until they expire.
    Disable {
        /// The user's id (as `users list` shows it).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's id (as `users list` shows it).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// List users, oldest first.
    List(lifecycle::ListArgs),
    /// Show one user, with their live sessions and active refresh tokens.
    Show(lifecycle::UserRef),
    /// Delete a user: ends their sessions, revokes their refresh tokens,
    /// discards their codes and reset links, in one transaction; their
    /// audit events stay. Audited (`user.deleted`).
    Delete(lifecycle::UserId),
    /// Set a user's password (the password rule applies); ends their
    /// sessions and revokes their refresh tokens, as a reset does. Audited
    /// (`password.set_by_admin`).
    SetPassword(lifecycle::SetPassword),
}

#[derive(Debug, Args)]
pub struct CreateUser {
    /// The sign-in email (unique, compared case-insensitively).
    #[arg(long)]
    pub email: String,
    /// The name shown to the user.
    #[arg(long)]
    pub name: String,
    /// A role (repeatable), e.g. `admin`.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Rate-limit tier of the user's tokens on the resource API.
    #[arg(long, default_value = "standard", value_parser = parse_tier)]
    pub tier: Tier,
    /// Read the password from the first line of stdin (else one is generated and printed once).
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client.
    Create(CreateClient),
    /// List clients, oldest first (never their secrets).
    List(lifecycle::ListArgs),
    /// Show one client.
    Show(lifecycle::ClientId),
    /// Delete a client: revokes its refresh tokens, discards its codes and
    /// pending authorizations, in one transaction. Audited (`client.deleted`).
    Delete(lifecycle::ClientId),
    /// Give a confidential client a new secret, printed once; the current
    /// one keeps working for --grace, and the one before it stops. Audited
    /// (`client.secret_rotated`).
    RotateSecret(lifecycle::RotateSecret),
}

#[derive(Debug, Args)]
pub struct CreateClient {
    /// The name shown on the consent page.
    #[arg(long)]
    pub name: String,
    /// A redirect URI (repeatable); exact match at /authorize. https, or http
    /// on loopback; with --public also `com.example.app:/path` (RFC 8252).
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// A public client (native or browser app): no secret, PKCE only.
    #[arg(long)]
    pub public: bool,
    /// Space-separated scopes the client may ask for.
    #[arg(long, default_value = shared::contract::DEFAULT_CLIENT_SCOPE)]
    pub scope: String,
    /// Allowed grant type (repeatable); default authorization_code and refresh_token.
    #[arg(long = "grant")]
    pub grants: Vec<String>,
    /// Refresh grace window in seconds (0 = off, at most 60): a rotated
    /// refresh token presented again within it returns the same successor.
    /// Unset: the server's REFRESH_GRACE_SECS.
    #[arg(long = "refresh-grace", value_name = "SECS")]
    pub refresh_grace: Option<i64>,
    /// Rate-limit tier of the client's tokens on the resource API.
    #[arg(long, default_value = "standard", value_parser = parse_tier)]
    pub tier: Tier,
    /// A test client: its API keys are `sk_test_…` instead of `sk_live_…`
    /// (they work the same; the prefix tells a leaked test key from a live one).
    #[arg(long)]
    pub test: bool,
}

fn parse_tier(value: &str) -> Result<Tier, String> {
    Tier::parse(value).ok_or_else(|| "expected standard or premium".to_owned())
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a signing key (PKCS#8 PEM, mode 0600, named by its kid).
    Generate {
        /// 2048, 3072 or 4096.
        #[arg(long, default_value_t = 2048)]
        bits: usize,
    },
    /// List signing keys, newest first, with the state the database records:
    /// published (not signing yet), active (signs), superseded, retired.
    List,
    /// Generate the next signing key and publish it in the JWKS now; it
    /// signs only after the delay, once every verifier has fetched it.
    Rotate {
        /// Seconds between publishing and signing (0 to 30 days; default
        /// KEY_ROTATION_DELAY_SECS, 600). 0 switches at once (a compromised key).
        #[arg(long, value_name = "SECS", value_parser = signing::parse_delay)]
        delay: Option<i64>,
        /// 2048, 3072 or 4096.
        #[arg(long, default_value_t = 2048)]
        bits: usize,
    },
    /// Remove a key from the JWKS. Refused while a token it signed may still
    /// be valid, and always for the key that signs now.
    Retire {
        /// The key's kid (`keys list`).
        kid: String,
        /// Retire it now even though tokens it signed are still valid: they
        /// stop verifying (a compromised key).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum JanitorCommand {
    /// Run one pass over every table and print what it deleted (e.g. from
    /// cron, with JANITOR_INTERVAL_SECS=0 on the servers). Does not migrate.
    Run {
        /// One pass, then exit (required: the server runs the periodic janitor).
        #[arg(long, required = true)]
        once: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the latest audit events, oldest first.
    Tail {
        /// Only events of the last DURATION: `30s`, `15m`, `2h`, `7d`.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs)]
        since: Option<i64>,
        /// Only events of this kind, e.g. `login.failed`, `login.locked`.
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// At most this many events (1-10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
    },
}

use crate::since::{parse_duration_secs, rfc3339};

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Print the outbox, newest first: recipient, subject, time and body.
    /// Does not migrate.
    List,
}

/// Runs a command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { no_migrate, dev } => {
            let mut settings = settings;
            if dev {
                settings.cors_allowed_origins =
                    shared::http::with_dev_origin(settings.cors_origins()).join(",");
            }
            let app = Application::build_for(
                settings,
                BuildOptions {
                    skip_migrations: no_migrate,
                    ..BuildOptions::default()
                },
                dev,
            )
            .await?;
            if dev {
                shared::http::warn_dev_mode();
            }
            app.run_until_stopped().await
        }
        Command::Migrate => {
            let db = migrations::db::connect_with(
                &settings.database_url,
                None,
                settings.db_deadlines()?,
            )
            .await?;
            migrations::db::up(&db, None)
                .await
                .context("running migrations")?;
            output(cli.json, json!({"migrated": true}), "migrations applied");
            Ok(())
        }
        Command::Users(UsersCommand::Create(args)) => create_user(&settings, cli.json, args).await,
        Command::Users(UsersCommand::Disable { id }) => {
            set_user_disabled(&settings, cli.json, &id, true).await
        }
        Command::Users(UsersCommand::Enable { id }) => {
            set_user_disabled(&settings, cli.json, &id, false).await
        }
        Command::Clients(ClientsCommand::Create(args)) => {
            create_client(&settings, cli.json, args).await
        }
        Command::Users(UsersCommand::List(args)) => {
            lifecycle::users_list(&settings, cli.json, args).await
        }
        Command::Users(UsersCommand::Show(args)) => {
            lifecycle::users_show(&settings, cli.json, args).await
        }
        Command::Users(UsersCommand::Delete(args)) => {
            lifecycle::users_delete(&settings, cli.json, args).await
        }
        Command::Users(UsersCommand::SetPassword(args)) => {
            lifecycle::users_set_password(&settings, cli.json, args).await
        }
        Command::Clients(ClientsCommand::List(args)) => {
            lifecycle::clients_list(&settings, cli.json, args).await
        }
        Command::Clients(ClientsCommand::Show(args)) => {
            lifecycle::clients_show(&settings, cli.json, args).await
        }
        Command::Clients(ClientsCommand::Delete(args)) => {
            lifecycle::clients_delete(&settings, cli.json, args).await
        }
        Command::Clients(ClientsCommand::RotateSecret(args)) => {
            lifecycle::clients_rotate_secret(&settings, cli.json, args).await
        }
        Command::Tokens(command) => lifecycle::tokens(&settings, cli.json, command).await,
        Command::ApiKeys(command) => api_keys::run(&settings, cli.json, command).await,
        Command::Keys(KeysCommand::Generate { bits }) => {
            shared::jwt::check_key_bits(bits)?;
            keys::ensure_writable(&settings.auth_keys_dir)?;
            // Said before it starts: a 4096-bit key takes seconds.
            eprintln!("{}", shared::jwt::generation_notice(bits));
            let key = keys::generate(&settings.auth_keys_dir, bits)?;
            output(
                cli.json,
                json!({"kid": key.kid, "bits": key.bits, "path": key.path}),
                &format!(
                    "generated {} ({} bits) at {}",
                    key.kid,
                    key.bits,
                    key.path.display()
                ),
            );
            Ok(())
        }
        Command::Lockouts(command) => lockouts(&settings, cli.json, command).await,
        Command::Outbox(OutboxCommand::List) => outbox_list(&settings, cli.json).await,
        Command::Audit(AuditCommand::Tail { since, kind, limit }) => {
            audit_tail(&settings, cli.json, since, kind.as_deref(), limit).await
        }
        Command::Keys(KeysCommand::List) => signing::list(&settings, cli.json).await,
        Command::Keys(KeysCommand::Rotate { delay, bits }) => {
            signing::rotate(&settings, cli.json, delay, bits).await
        }
        Command::Keys(KeysCommand::Retire { kid, force }) => {
            signing::retire(&settings, cli.json, &kid, force).await
        }
        Command::Janitor(JanitorCommand::Run { once: _ }) => {
            let janitor = settings.janitor()?;
            let db = migrations::db::connect_with(
                &settings.database_url,
                None,
                settings.db_deadlines()?,
            )
            .await?;
            let report = crate::janitor::run_once(&db, crate::clock::now(), &janitor)
                .await
                .context("janitor run")?;
            let mut value = serde_json::to_value(report)?;
            value["total"] = json!(report.total());
            output(cli.json, value, &report.to_string());
            Ok(())
        }
    }
}

async fn lockouts(settings: &Settings, json: bool, command: LockoutsCommand) -> anyhow::Result<()> {
    use store::lockouts;
    // Parse before connecting.
    let target = match &command {
        LockoutsCommand::List => None,
        LockoutsCommand::Clear { subject } => Some(lockout_subject(subject)?),
    };
    let db = migrations::db::connect_with(&settings.database_url, None, settings.db_deadlines()?)
        .await?;
    let now = crate::clock::now();
    match target {
        None => {
            let rows = lockouts::list(&db, now).await?;
            if json {
                let list: Vec<_> = rows.iter().map(lockouts::view).collect();
                println!("{}", serde_json::Value::from(list));
            } else if rows.is_empty() {
                println!("no lockouts in force");
            } else {
                for r in rows {
                    println!(
                        "{:<8} {:<40} {} failures, {} s left",
                        r.kind,
                        r.subject,
                        r.failures,
                        r.locked_until - now
                    );
                }
            }
        }
        Some((kind, subject)) => {
            let cleared = lockouts::clear(&db, kind, &subject).await?;
            if cleared {
                store::audit::record(
                    &db,
                    store::audit::LOCKOUT_CLEARED,
                    None,
                    None,
                    json!({"kind": kind.as_str(), "subject": subject, "by": "cli"}),
                    now,
                )
                .await?;
            }
            let human = if cleared {
                format!("lifted the lockout of {} {subject}", kind.as_str())
            } else {
                format!("no lockout for {} {subject}", kind.as_str())
            };
            output(
                json,
                json!({"kind": kind.as_str(), "subject": subject, "cleared": cleared}),
                &human,
            );
        }
    }
    Ok(())
}

async fn audit_tail(
    settings: &Settings,
    json: bool,
    since: Option<i64>,
    kind: Option<&str>,
    limit: u64,
) -> anyhow::Result<()> {
    let db = migrations::db::connect_with(&settings.database_url, None, settings.db_deadlines()?)
        .await?;
    let from = since.map_or(0, |secs| crate::clock::now().saturating_sub(secs));
    let rows = store::audit::tail(&db, from, kind, limit)
        .await
        .context("reading the audit log (has `auth-server migrate` run?)")?;
    let events: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "at": rfc3339(r.at),
                "kind": r.kind,
                "user_id": r.user_id,
                "client_id": r.client_id,
                "detail": serde_json::from_str::<serde_json::Value>(&r.detail)
                    .unwrap_or_else(|_| json!(r.detail)),
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::Value::from(events));
    } else if events.is_empty() {
        println!("no audit events");
    } else {
        for e in events {
            println!(
                "{}  {:<34} user={} client={} {}",
                e["at"].as_str().unwrap_or_default(),
                e["kind"].as_str().unwrap_or_default(),
                e["user_id"].as_str().unwrap_or("-"),
                e["client_id"].as_str().unwrap_or("-"),
                e["detail"]
            );
        }
    }
    Ok(())
}

async fn outbox_list(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let db = migrations::db::connect_with(&settings.database_url, None, settings.db_deadlines()?)
        .await?;
    let mails = store::outbox::list(&db, None)
        .await
        .context("reading the mail outbox (has `auth-server migrate` run?)")?;
    if json {
        let list: Vec<_> = mails
            .iter()
            .map(|m| {
                json!({
                    "id": m.id,
                    "recipient": m.recipient,
                    "subject": m.subject,
                    "created_at": rfc3339(m.created_at),
                    "body": m.body,
                })
            })
            .collect();
        println!("{}", serde_json::Value::from(list));
    } else if mails.is_empty() {
        println!("the outbox is empty");
    } else {
        for m in mails {
            println!("To:      {}", m.recipient);
            println!("Subject: {}", m.subject);
            println!("Date:    {}", rfc3339(m.created_at));
            println!();
            println!("{}", m.body.trim_end());
            println!("{}", "-".repeat(72));
        }
    }
    Ok(())
}

/// `user@example.com` is an account; an address is its rate-limit key (an
/// IPv6 address stands for its /64, which may also be given as listed).
fn lockout_subject(raw: &str) -> anyhow::Result<(store::lockouts::Kind, String)> {
    use store::lockouts::Kind;
    if raw.contains('@') {
        let email = Email::parse(raw).map_err(|e| anyhow::anyhow!("{raw}: {e}"))?;
        return Ok((Kind::Account, email.as_str().to_owned()));
    }
    if let Ok(ip) = raw.parse::<std::net::IpAddr>() {
        return Ok((Kind::Ip, shared::client_ip::ClientIp(ip).key()));
    }
    if let Some(prefix) = raw.strip_suffix("::/64")
        && format!("{prefix}::").parse::<std::net::Ipv6Addr>().is_ok()
    {
        return Ok((Kind::Ip, raw.to_owned()));
    }
    anyhow::bail!("{raw}: expected an IP address, an IPv6 /64 as listed, or an email")
}

fn output(json: bool, value: serde_json::Value, human: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{human}");
    }
}

/// `users disable|enable ID`, as the admin API does it; audited with
/// `by: cli`. Does not migrate.
async fn set_user_disabled(
    settings: &Settings,
    json: bool,
    id: &str,
    disable: bool,
) -> anyhow::Result<()> {
    let db = migrations::db::connect_with(&settings.database_url, None, settings.db_deadlines()?)
        .await?;
    let now = crate::clock::now();
    let (kind, value, human) = if disable {
        let ttl = settings.auth_access_token_ttl_secs;
        let Some(done) = store::admin::disable_user(&db, id, now, ttl)
            .await
            .context("disabling the user (has `auth-server migrate` run?)")?
        else {
            anyhow::bail!("no user with id {id}");
        };
        let value = json!({
            "user_id": id,
            "disabled": true,
            "sessions_ended": done.sessions,
            "refresh_tokens_revoked": done.revoked.refresh_tokens,
            "codes_discarded": done.revoked.codes,
        });
        let human = format!(
            "disabled user {id}: {} sessions ended, {} refresh tokens revoked; \
             access tokens issued so far are refused by resource APIs within seconds",
            done.sessions, done.revoked.refresh_tokens
        );
        crate::revocations::announce_cli(
            settings,
            done.revoked
                .record(shared::revocation::SubjectKind::User, id),
        )
        .await;
        (store::audit::USER_DISABLED, value, human)
    } else {
        if store::admin::enable_user(&db, id, now)
            .await
            .context("enabling the user (has `auth-server migrate` run?)")?
            .is_none()
        {
            anyhow::bail!("no user with id {id}");
        }
        (
            store::audit::USER_ENABLED,
            json!({"user_id": id, "disabled": false}),
            format!("enabled user {id}"),
        )
    };
    store::audit::record(&db, kind, Some(id), None, json!({"by": "cli"}), now).await?;
    output(json, value, &human);
    Ok(())
}

async fn create_user(settings: &Settings, json: bool, args: CreateUser) -> anyhow::Result<()> {
    // Validate everything before writing anything.
    let email = Email::parse(&args.email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let name = parse_name(&args.name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    for role in &args.roles {
        if role.is_empty()
            || !role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            anyhow::bail!("--role: roles are letters, digits, '_' and '-'");
        }
    }
    let (password, generated) = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        (line.trim_end_matches(['\r', '\n']).to_owned(), false)
    } else {
        (shared::secret::generate()?, true)
    };
    password::validate(&password, &[email.as_str(), &name])?;
    let db = migrations::db::connect_with(&settings.database_url, None, settings.db_deadlines()?)
        .await?;
    migrations::db::up(&db, None)
        .await
        .context("running migrations")?;
    if store::users::find_by_email(&db, &email).await?.is_some() {
        anyhow::bail!("a user with email {} exists already", email.as_str());
    }
    let hash = password::hash(password.clone()).await?;
    let user = store::users::create(&db, &email, &name, &hash, &args.roles, args.tier).await?;
    let mut value = json!({"id": user.id, "email": user.email, "name": user.name, "roles": args.roles, "tier": args.tier});
    if generated {
        value["password"] = json!(password);
    }
    let human = if generated {
        format!(
            "created user {} ({}); password (shown once): {password}",
            user.id, user.email
        )
    } else {
        format!("created user {} ({})", user.id, user.email)
    };
    output(json, value, &human);
    Ok(())
}

async fn create_client(settings: &Settings, json: bool, args: CreateClient) -> anyhow::Result<()> {
    let name = parse_name(&args.name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let kind = if args.public {
        ClientKind::Public
    } else {
        ClientKind::Confidential
    };
    let mut redirect_uris = Vec::new();
    for raw in &args.redirect_uris {
        RedirectUri::parse_for(raw, kind).map_err(|e| {
            // A native app's URI given without --public: say what would work.
            let hint = if kind == ClientKind::Confidential
                && RedirectUri::parse_for(raw, ClientKind::Public).is_ok()
            {
                " (register a native app with --public)"
            } else {
                ""
            };
            anyhow::anyhow!("--redirect-uri {raw}: {e}{hint}")
        })?;
        // Stored as given: /authorize compares strings exactly (RFC 9700 §4.1.3).
        redirect_uris.push(raw.clone());
    }
    let scopes = ScopeSet::parse(&args.scope).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
    let mut grants = if args.grants.is_empty() {
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    } else {
        args.grants
            .iter()
            .map(|g| GrantType::parse(g))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--grant: {e}"))?
    };
    grants.sort();
    grants.dedup();
    if grants.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        anyhow::bail!("--redirect-uri is required for the authorization_code grant");
    }
    if args.public && grants.contains(&GrantType::ClientCredentials) {
        anyhow::bail!("a public client cannot use client_credentials");
    }
    if let Some(grace) = args.refresh_grace
        && !(0..=MAX_REFRESH_GRACE_SECS).contains(&grace)
    {
        anyhow::bail!("--refresh-grace: must be between 0 and {MAX_REFRESH_GRACE_SECS} seconds");
    }
    let client_id = format!("c_{}", &shared::secret::generate()?[..22]);
    let secret = if args.public {
        None
    } else {
        Some(shared::secret::generate()?)
    };
    let db = migrations::db::connect_with(&settings.database_url, None, settings.db_deadlines()?)
        .await?;
    migrations::db::up(&db, None)
        .await
        .context("running migrations")?;
    let client = store::clients::create(
        &db,
        NewClient {
            id: &client_id,
            name: &name,
            secret_hash: secret.as_deref().map(shared::secret::hash),
            redirect_uris: &redirect_uris,
            grant_types: &grants,
            scopes: &scopes,
            refresh_grace_secs: args.refresh_grace,
            tier: args.tier,
        },
    )
    .await?;
    if args.test {
        store::api_keys::mark_test_client(&db, &client.id).await?;
    }
    let grant_names: Vec<&str> = client.grant_types.iter().map(|g| g.as_str()).collect();
    let mut value = json!({
        "client_id": client.id,
        "name": client.name,
        "redirect_uris": client.redirect_uris,
        "grant_types": grant_names,
        "scope": client.scopes.to_string(),
        "public": args.public,
        "tier": client.tier,
        "refresh_grace_secs": client.refresh_grace_secs,
        "test": args.test,
    });
    let human = match &secret {
        Some(secret) => {
            value["client_secret"] = json!(secret);
            format!(
                "created client {}\nclient_secret (shown once): {secret}",
                client.id
            )
        }
        None => format!("created public client {}", client.id),
    };
    output(json, value, &human);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_duration_secs;

    #[test]
    fn parse_duration_secs_reads_units_and_refuses_garbage() {
        assert_eq!(parse_duration_secs("30s"), Ok(30));
        assert_eq!(parse_duration_secs("15m"), Ok(900));
        assert_eq!(parse_duration_secs("2h"), Ok(7200));
        assert_eq!(parse_duration_secs("7d"), Ok(604_800));
        for bad in ["", "m", "15", "15x", "-1h", "1.5h", "99999999999999999d"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
    }
}
