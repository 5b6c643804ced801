//! `auth-server api-keys create --client ID [--expires-in DAYS] | list
//! --client ID | revoke KEY_ID`: a client's API keys (`shared::api_key`).
//! The key is printed once, at creation; creation and revocation are
//! audited with `by: cli`. Does not migrate.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use super::output;
use crate::clock;
use crate::config::Settings;
use crate::since::rfc3339;
use crate::store::api_keys::{self, ApiKey, MAX_EXPIRES_IN_DAYS};
use crate::store::audit;

const NOT_MIGRATED: &str = "has `auth-server migrate` run?";

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Create an API key for a client and print it, once: `sk_live_…`
    /// (`sk_test_…` for a test client). Several keys can be active at once,
    /// so a key is rotated by creating the next one, moving the callers to
    /// it, then revoking the old one.
    Create(CreateArgs),
    /// List a client's API keys (never a key or its hash), oldest first.
    List(ListArgs),
    /// Revoke an API key by its id: refused by the resource API at once.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The client the key speaks for (its scopes and tier apply).
    #[arg(long = "client", value_name = "ID")]
    pub client: String,
    /// The key expires this many days from now (1-3650); default: never.
    #[arg(long = "expires-in", value_name = "DAYS",
          value_parser = clap::value_parser!(i64).range(1..=MAX_EXPIRES_IN_DAYS))]
    pub expires_in: Option<i64>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The client whose keys to list.
    #[arg(long = "client", value_name = "ID")]
    pub client: String,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The key id (`api-keys list` shows it; the part of the key after
    /// `sk_live_`/`sk_test_`, before the next `_`).
    #[arg(value_name = "KEY_ID")]
    pub key_id: String,
}

fn view(key: &ApiKey, now: i64) -> serde_json::Value {
    let time = |t: Option<i64>| t.map(rfc3339);
    json!({
        "id": key.id,
        "client_id": key.client_id,
        "mode": key.mode,
        "created_at": rfc3339(key.created_at),
        "expires_at": time(key.expires_at),
        "revoked_at": time(key.revoked_at),
        "last_used_at": time(key.last_used_at),
        "active": api_keys::is_active(key, now),
    })
}

pub async fn run(settings: &Settings, json: bool, command: ApiKeysCommand) -> anyhow::Result<()> {
    let db = migrations::db::connect_with(&settings.database_url, None, settings.db_deadlines()?)
        .await?;
    let now = clock::now();
    match command {
        ApiKeysCommand::Create(args) => {
            let created = api_keys::create(&db, &args.client, args.expires_in, now)
                .await
                .with_context(|| format!("creating an API key ({NOT_MIGRATED})"))?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no client with id {} (`auth-server clients list` shows the ids)",
                        args.client
                    )
                })?;
            audit::record(
                &db,
                shared::api_key::AUDIT_CREATED,
                None,
                Some(&args.client),
                json!({
                    "key_id": created.row.id,
                    "by": "cli",
                    "expires_at": created.row.expires_at,
                }),
                now,
            )
            .await?;
            let mut value = view(&created.row, now);
            value["key"] = json!(created.key);
            let expiry = created.row.expires_at.map_or_else(
                || "never expires".to_owned(),
                |t| format!("expires {}", rfc3339(t)),
            );
            output(
                json,
                value,
                &format!(
                    "API key {} for client {} ({expiry}); shown once, store it now:\n{}",
                    created.row.id, args.client, created.key
                ),
            );
        }
        ApiKeysCommand::List(args) => {
            if !api_keys::client_exists(&db, &args.client)
                .await
                .with_context(|| format!("reading the client ({NOT_MIGRATED})"))?
            {
                anyhow::bail!(
                    "no client with id {} (`auth-server clients list` shows the ids)",
                    args.client
                );
            }
            let keys = api_keys::list(&db, &args.client)
                .await
                .with_context(|| format!("listing API keys ({NOT_MIGRATED})"))?;
            if json {
                let keys: Vec<_> = keys.iter().map(|k| view(k, now)).collect();
                println!("{}", serde_json::Value::Array(keys));
            } else if keys.is_empty() {
                println!("client {} has no API keys", args.client);
            } else {
                for key in &keys {
                    let state = if key.revoked_at.is_some() {
                        "revoked"
                    } else if api_keys::is_active(key, now) {
                        "active"
                    } else {
                        "expired"
                    };
                    let last = key.last_used_at.map_or_else(
                        || "never used".to_owned(),
                        |t| format!("last used {}", rfc3339(t)),
                    );
                    println!(
                        "{}  {}  {state}  created {}  {last}",
                        key.id,
                        key.mode,
                        rfc3339(key.created_at)
                    );
                }
            }
        }
        ApiKeysCommand::Revoke(args) => {
            let key = api_keys::revoke(&db, None, &args.key_id, now)
                .await
                .with_context(|| format!("revoking the API key ({NOT_MIGRATED})"))?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no API key with id {} (`auth-server api-keys list --client ID` shows the ids)",
                        args.key_id
                    )
                })?;
            audit::record(
                &db,
                shared::api_key::AUDIT_REVOKED,
                None,
                Some(&key.client_id),
                json!({"key_id": key.id, "by": "cli"}),
                now,
            )
            .await?;
            output(
                json,
                view(&key, now),
                &format!("API key {} of client {} revoked", key.id, key.client_id),
            );
        }
    }
    Ok(())
}
