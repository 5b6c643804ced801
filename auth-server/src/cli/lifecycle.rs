//! `users list|show|delete|set-password`, `clients list|show|delete|
//! rotate-secret` and `tokens revoke`: the life of a user and a client after
//! `create`. None of them migrates; each names the object it did not find
//! and exits non-zero. The JSON shapes are in README's CLI reference.

use std::io::BufRead;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value, json};
use shared::revocation::SubjectKind;

use super::output;
use crate::config::Settings;
use crate::domain::Email;
use crate::since::{parse_duration_secs, rfc3339};
use crate::store::clients::Client;
use crate::store::lifecycle::{self, MAX_SECRET_GRACE_SECS, Rotation};
use crate::store::users::{self, User};
use crate::store::{admin, audit};
use crate::{clock, password};

const NOT_MIGRATED: &str = "has `auth-server migrate` run?";

#[derive(Debug, Args)]
pub struct ListArgs {
    /// At most this many, oldest first (1-10000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub limit: u64,
}

#[derive(Debug, Args)]
pub struct UserRef {
    /// The user's id, or their email.
    #[arg(value_name = "ID|EMAIL")]
    pub user: String,
}

#[derive(Debug, Args)]
pub struct UserId {
    /// The user's id (as `users list` shows it).
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct SetPassword {
    /// The user's id, or their email.
    #[arg(value_name = "ID|EMAIL")]
    pub user: String,
    /// Read the new password from the first line of stdin (required: a
    /// password is never taken from the command line).
    #[arg(long, required = true)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct ClientId {
    /// The client's id (its `client_id`).
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct RotateSecret {
    /// The client's id (its `client_id`).
    #[arg(value_name = "ID")]
    pub id: String,
    /// How long the current secret keeps working beside the new one, so
    /// that deployed copies can be updated: `30s`, `15m`, `24h`, `7d`; at
    /// most 30d; `0s` ends it at once.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_grace)]
    pub grace: i64,
}

fn parse_grace(value: &str) -> Result<i64, String> {
    let secs = parse_duration_secs(value)?;
    if secs > MAX_SECRET_GRACE_SECS {
        return Err(format!("{value:?}: at most 30d"));
    }
    Ok(secs)
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Revoke every refresh token of a user (all clients) or of a client
    /// (all users), end the user's sessions, discard their unexchanged
    /// authorization codes, and void the access tokens issued so far
    /// (resource APIs with REVOCATIONS_TOKEN refuse them within seconds).
    Revoke(RevokeTokens),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("whose").required(true).args(["user", "client"])))]
pub struct RevokeTokens {
    /// Revoke the tokens of the user with this id.
    #[arg(long, value_name = "ID")]
    pub user: Option<String>,
    /// Revoke the tokens issued to the client with this id.
    #[arg(long, value_name = "ID")]
    pub client: Option<String>,
}

async fn connect(settings: &Settings) -> anyhow::Result<sea_orm::DatabaseConnection> {
    Ok(
        migrations::db::connect_with(&settings.database_url, None, settings.db_deadlines()?)
            .await?,
    )
}

/// A user as `users list` and `users show` print it (never the hash).
fn user_view(user: &User) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "roles": users::roles(user),
        "tier": users::tier(user),
        "created_at": rfc3339(user.created_at),
        "updated_at": rfc3339(user.updated_at),
        "disabled": users::is_disabled(user),
        "disabled_at": user.disabled_at.map(rfc3339),
    })
}

/// A client as `clients list` and `clients show` print it (never a hash).
fn client_view(client: &Client, created_at: i64, now: i64) -> Value {
    let grants: Vec<&str> = client.grant_types.iter().map(|g| g.as_str()).collect();
    let previous = client
        .previous_secret
        .as_ref()
        .filter(|p| now < p.expires_at)
        .map(|p| rfc3339(p.expires_at));
    json!({
        "client_id": client.id,
        "name": client.name,
        "public": client.is_public(),
        "redirect_uris": client.redirect_uris,
        "grant_types": grants,
        "scope": client.scopes.to_string(),
        "tier": client.tier,
        "refresh_grace_secs": client.refresh_grace_secs,
        "created_at": rfc3339(created_at),
        "previous_secret_expires_at": previous,
    })
}

/// The user `raw` names: an email when it has an `@`, else an id.
/// Publishes the subject's revocation record on Redis, when `REDIS_URL`
/// is set (resource APIs also poll it).
async fn announce(
    settings: &Settings,
    db: &sea_orm::DatabaseConnection,
    kind: SubjectKind,
    id: &str,
) {
    if settings.redis_url.is_none() {
        return;
    }
    match crate::store::revocations::find(db, kind, id, clock::now()).await {
        Ok(record) => crate::revocations::announce_cli(settings, record).await,
        Err(e) => tracing::warn!(error = %e, "revocation not published on Redis"),
    }
}

async fn find_user(db: &sea_orm::DatabaseConnection, raw: &str) -> anyhow::Result<User> {
    let found = if raw.contains('@') {
        let email = Email::parse(raw).map_err(|e| anyhow::anyhow!("{raw}: {e}"))?;
        users::find_by_email(db, &email).await
    } else {
        users::find(db, raw).await
    }
    .with_context(|| format!("reading the user ({NOT_MIGRATED})"))?;
    found.ok_or_else(|| {
        if raw.contains('@') {
            anyhow::anyhow!("no user with email {raw}")
        } else {
            anyhow::anyhow!("no user with id {raw} (`auth-server users list` shows the ids)")
        }
    })
}

fn no_client(id: &str) -> anyhow::Error {
    anyhow::anyhow!("no client with id {id} (`auth-server clients list` shows the ids)")
}

pub async fn users_list(settings: &Settings, json: bool, args: ListArgs) -> anyhow::Result<()> {
    let db = connect(settings).await?;
    let rows = lifecycle::list_users(&db, args.limit)
        .await
        .with_context(|| format!("listing users ({NOT_MIGRATED})"))?;
    let total = lifecycle::count_users(&db).await?;
    if json {
        let list: Vec<Value> = rows.iter().map(user_view).collect();
        println!("{}", Value::from(list));
    } else if rows.is_empty() {
        println!("no users");
    } else {
        println!(
            "{:<36}  {:<30}  {:<20}  {:<12}  {:<8}  {:<20}  disabled",
            "id", "email", "name", "roles", "tier", "created"
        );
        for u in &rows {
            println!(
                "{:<36}  {:<30}  {:<20}  {:<12}  {:<8}  {:<20}  {}",
                u.id,
                u.email,
                u.name,
                users::roles(u).join(","),
                users::tier(u).as_str(),
                rfc3339(u.created_at),
                if users::is_disabled(u) { "yes" } else { "no" }
            );
        }
    }
    if total > rows.len() as u64 {
        eprintln!(
            "showing the first {} of {total} users (raise --limit)",
            rows.len()
        );
    }
    Ok(())
}

pub async fn users_show(settings: &Settings, json: bool, args: UserRef) -> anyhow::Result<()> {
    let db = connect(settings).await?;
    let user = find_user(&db, &args.user).await?;
    let (sessions, tokens) = lifecycle::user_activity(&db, &user.id, clock::now()).await?;
    let mut value = user_view(&user);
    value["sessions"] = json!(sessions);
    value["active_refresh_tokens"] = json!(tokens);
    if json {
        println!("{value}");
    } else {
        println!("id:         {}", user.id);
        println!("email:      {}", user.email);
        println!("name:       {}", user.name);
        println!("roles:      {}", users::roles(&user).join(" "));
        println!("tier:       {}", users::tier(&user).as_str());
        println!("created:    {}", rfc3339(user.created_at));
        println!("updated:    {}", rfc3339(user.updated_at));
        match user.disabled_at {
            Some(at) => println!("disabled:   since {}", rfc3339(at)),
            None => println!("disabled:   no"),
        }
        println!("sessions:   {sessions}");
        println!("refresh tokens (active): {tokens}");
    }
    Ok(())
}

pub async fn users_delete(settings: &Settings, json: bool, args: UserId) -> anyhow::Result<()> {
    let db = connect(settings).await?;
    let Some(done) = lifecycle::delete_user(&db, &args.id, clock::now())
        .await
        .with_context(|| format!("deleting the user ({NOT_MIGRATED})"))?
    else {
        anyhow::bail!(
            "no user with id {} (`auth-server users list` shows the ids)",
            args.id
        );
    };
    announce(settings, &db, SubjectKind::User, &args.id).await;
    output(
        json,
        json!({
            "user_id": args.id,
            "deleted": true,
            "sessions_ended": done.sessions,
            "refresh_tokens_revoked": done.refresh_tokens,
            "codes_discarded": done.codes,
            "reset_links_discarded": done.reset_tokens,
        }),
        &format!(
            "deleted user {}: {} sessions ended, {} refresh tokens revoked, {} codes and \
             {} reset links discarded; their audit events stay (their access tokens \
             are refused by resource APIs within seconds)",
            args.id, done.sessions, done.refresh_tokens, done.codes, done.reset_tokens
        ),
    );
    Ok(())
}

pub async fn users_set_password(
    settings: &Settings,
    json: bool,
    args: SetPassword,
) -> anyhow::Result<()> {
    // Read and check the password before touching the database.
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let new_password = line.trim_end_matches(['\r', '\n']).to_owned();
    if new_password.is_empty() {
        anyhow::bail!("--password-stdin: stdin has no password (give it on the first line)");
    }
    let db = connect(settings).await?;
    let user = find_user(&db, &args.user).await?;
    password::validate(&new_password, &[&user.email, &user.name])?;
    let hash = password::hash(new_password).await?;
    let Some(done) = lifecycle::set_password(&db, &user, &hash, clock::now())
        .await
        .with_context(|| format!("setting the password ({NOT_MIGRATED})"))?
    else {
        anyhow::bail!("no user with id {} (deleted meanwhile)", user.id);
    };
    announce(settings, &db, SubjectKind::User, &user.id).await;
    output(
        json,
        json!({
            "user_id": user.id,
            "password_set": true,
            "sessions_ended": done.sessions,
            "refresh_tokens_revoked": done.refresh_tokens,
        }),
        &format!(
            "set the password of user {} ({}): {} sessions ended, {} refresh tokens revoked",
            user.id, user.email, done.sessions, done.refresh_tokens
        ),
    );
    Ok(())
}

pub async fn clients_list(settings: &Settings, json: bool, args: ListArgs) -> anyhow::Result<()> {
    let db = connect(settings).await?;
    let rows = lifecycle::list_clients(&db, args.limit)
        .await
        .with_context(|| format!("listing clients ({NOT_MIGRATED})"))?;
    let total = lifecycle::count_clients(&db).await?;
    let now = clock::now();
    if json {
        let list: Vec<Value> = rows
            .iter()
            .map(|(c, created_at)| client_view(c, *created_at, now))
            .collect();
        println!("{}", Value::from(list));
    } else if rows.is_empty() {
        println!("no clients");
    } else {
        println!(
            "{:<26}  {:<20}  {:<12}  {:<8}  {:<20}  grants",
            "client_id", "name", "kind", "tier", "created"
        );
        for (c, created_at) in &rows {
            let grants: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
            println!(
                "{:<26}  {:<20}  {:<12}  {:<8}  {:<20}  {}",
                c.id,
                c.name,
                if c.is_public() {
                    "public"
                } else {
                    "confidential"
                },
                c.tier.as_str(),
                rfc3339(*created_at),
                grants.join(",")
            );
        }
    }
    if total > rows.len() as u64 {
        eprintln!(
            "showing the first {} of {total} clients (raise --limit)",
            rows.len()
        );
    }
    Ok(())
}

pub async fn clients_show(settings: &Settings, json: bool, args: ClientId) -> anyhow::Result<()> {
    let db = connect(settings).await?;
    let now = clock::now();
    let Some((client, created_at)) = lifecycle::find_client(&db, &args.id)
        .await
        .with_context(|| format!("reading the client ({NOT_MIGRATED})"))?
    else {
        return Err(no_client(&args.id));
    };
    let tokens = lifecycle::client_activity(&db, &client.id, now).await?;
    let mut value = client_view(&client, created_at, now);
    value["active_refresh_tokens"] = json!(tokens);
    if json {
        println!("{value}");
    } else {
        let grants: Vec<&str> = client.grant_types.iter().map(|g| g.as_str()).collect();
        println!("client_id:     {}", client.id);
        println!("name:          {}", client.name);
        println!(
            "kind:          {}",
            if client.is_public() {
                "public"
            } else {
                "confidential"
            }
        );
        println!("redirect URIs: {}", client.redirect_uris.join(" "));
        println!("grants:        {}", grants.join(" "));
        println!("scope:         {}", client.scopes);
        println!("tier:          {}", client.tier.as_str());
        match client.refresh_grace_secs {
            Some(secs) => println!("refresh grace: {secs} s"),
            None => println!("refresh grace: server default (REFRESH_GRACE_SECS)"),
        }
        println!("created:       {}", rfc3339(created_at));
        if let Some(until) = value["previous_secret_expires_at"].as_str() {
            println!("previous secret accepted until {until}");
        }
        println!("refresh tokens (active): {tokens}");
    }
    Ok(())
}

pub async fn clients_delete(settings: &Settings, json: bool, args: ClientId) -> anyhow::Result<()> {
    let db = connect(settings).await?;
    let Some(done) = lifecycle::delete_client(&db, &args.id, clock::now())
        .await
        .with_context(|| format!("deleting the client ({NOT_MIGRATED})"))?
    else {
        return Err(no_client(&args.id));
    };
    announce(settings, &db, SubjectKind::Client, &args.id).await;
    output(
        json,
        json!({
            "client_id": args.id,
            "deleted": true,
            "refresh_tokens_revoked": done.refresh_tokens,
            "codes_discarded": done.codes,
            "pending_authorizations_discarded": done.pending_authorizations,
        }),
        &format!(
            "deleted client {}: {} refresh tokens revoked, {} codes discarded \
             (its access tokens are refused by resource APIs within seconds)",
            args.id, done.refresh_tokens, done.codes
        ),
    );
    Ok(())
}

pub async fn clients_rotate_secret(
    settings: &Settings,
    json: bool,
    args: RotateSecret,
) -> anyhow::Result<()> {
    let secret = shared::secret::generate()?;
    let db = connect(settings).await?;
    let rotation = lifecycle::rotate_secret(
        &db,
        &args.id,
        &shared::secret::hash(&secret),
        args.grace,
        clock::now(),
    )
    .await
    .with_context(|| format!("rotating the secret ({NOT_MIGRATED})"))?;
    let (previous_expires_at, dropped_older) = match rotation {
        Rotation::NotFound => return Err(no_client(&args.id)),
        Rotation::Public => anyhow::bail!(
            "client {} is public: it has no secret to rotate (it authenticates with PKCE only)",
            args.id
        ),
        Rotation::Rotated {
            previous_expires_at,
            dropped_older,
        } => (previous_expires_at, dropped_older),
    };
    let until = previous_expires_at.map(rfc3339);
    let previous_line = match &until {
        Some(until) => format!("the previous secret works until {until}"),
        None => "the previous secret no longer works".to_owned(),
    };
    let older_line = if dropped_older {
        "\nthe secret before the previous one no longer works"
    } else {
        ""
    };
    output(
        json,
        json!({
            "client_id": args.id,
            "client_secret": secret,
            "previous_secret_expires_at": until,
            "older_secret_dropped": dropped_older,
        }),
        &format!(
            "rotated the secret of client {}\nclient_secret (shown once): {secret}\n\
             {previous_line}{older_line}",
            args.id
        ),
    );
    Ok(())
}

pub async fn tokens(settings: &Settings, json: bool, command: TokensCommand) -> anyhow::Result<()> {
    let TokensCommand::Revoke(args) = command;
    let db = connect(settings).await?;
    let now = clock::now();
    let ttl = settings.auth_access_token_ttl_secs;
    let (of, id, revoked) = match (&args.user, &args.client) {
        (Some(user), _) => {
            let revoked = admin::revoke_user_tokens(&db, user, now, ttl)
                .await
                .with_context(|| format!("revoking the user's tokens ({NOT_MIGRATED})"))?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no user with id {user} (`auth-server users list` shows the ids)"
                    )
                })?;
            ("user", user, revoked)
        }
        (None, Some(client)) => {
            let revoked = admin::revoke_client_tokens(&db, client, now, ttl)
                .await
                .with_context(|| format!("revoking the client's tokens ({NOT_MIGRATED})"))?
                .ok_or_else(|| no_client(client))?;
            ("client", client, revoked)
        }
        (None, None) => anyhow::bail!("give --user ID or --client ID"),
    };
    let (user_id, client_id, kind) = if of == "user" {
        (Some(id.as_str()), None, SubjectKind::User)
    } else {
        (None, Some(id.as_str()), SubjectKind::Client)
    };
    crate::revocations::announce_cli(settings, revoked.record(kind, id)).await;
    audit::record(
        &db,
        audit::TOKENS_REVOKED_BY_ADMIN,
        user_id,
        client_id,
        json!({
            "by": "cli",
            "of": of,
            "refresh_tokens_revoked": revoked.refresh_tokens,
            "codes_discarded": revoked.codes,
        }),
        now,
    )
    .await?;
    let mut value = json!({
        "refresh_tokens_revoked": revoked.refresh_tokens,
        "codes_discarded": revoked.codes,
    });
    value[format!("{of}_id")] = json!(id);
    output(
        json,
        value,
        &format!(
            "revoked {} refresh tokens and discarded {} codes of {of} {id}; \
             its access tokens issued so far are refused by resource APIs within seconds",
            revoked.refresh_tokens, revoked.codes
        ),
    );
    Ok(())
}
