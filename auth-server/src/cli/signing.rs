//! `keys rotate`, `keys retire` and `keys list`: the signing keys as the
//! `signing_keys` table records them (`crate::signing_keys`).

use anyhow::Context;
use serde_json::{Value, json};

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::keys;
use crate::signing_keys::{
    self as sk, MAX_ROTATION_DELAY_SECS, Row, STATE_PUBLISHED, check_retire, status,
    tokens_valid_until,
};

const NOT_MIGRATED: &str = "has `auth-server migrate` run?";

async fn connect(settings: &Settings) -> anyhow::Result<sea_orm::DatabaseConnection> {
    Ok(
        migrations::db::connect_with(&settings.database_url, None, settings.db_deadlines()?)
            .await?,
    )
}

/// `--delay` of `keys rotate`: whole seconds, 0 to 30 days.
pub fn parse_delay(value: &str) -> Result<i64, String> {
    let secs: i64 = value
        .parse()
        .map_err(|_| "expected whole seconds, e.g. 600".to_owned())?;
    if (0..=MAX_ROTATION_DELAY_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!("must be between 0 and {MAX_ROTATION_DELAY_SECS}"))
    }
}

fn key_view(rows: &[Row], row: &Row, now: i64, settings: &Settings, bits: Option<usize>) -> Value {
    let path = settings.auth_keys_dir.join(format!("{}.pem", row.kid));
    json!({
        "kid": row.kid,
        "state": status(rows, row, now).as_str(),
        "bits": bits,
        "path": path,
        "published_at": row.published_at,
        "activates_at": row.activates_at,
        "retired_at": row.retired_at,
        "tokens_valid_until": tokens_valid_until(rows, row, now, settings.auth_access_token_ttl_secs),
    })
}

/// `keys rotate [--delay SECS] [--bits N]`: a new key, published now,
/// signing from now + the delay.
pub async fn rotate(
    settings: &Settings,
    json: bool,
    delay: Option<i64>,
    bits: usize,
) -> anyhow::Result<()> {
    shared::jwt::check_key_bits(bits)?;
    let delay = delay.unwrap_or(settings.key_rotation_delay_secs);
    let db = connect(settings).await?;
    let now = SystemClock.now();
    // A deployment rotating before any server recorded its keys: the
    // folder's current key keeps signing until the new one takes over.
    let rows = sk::adopt_folder(&db, &settings.auth_keys_dir, now)
        .await
        .with_context(|| format!("reading the signing keys ({NOT_MIGRATED})"))?;
    if sk::signing_key(&rows, now).is_none() && delay > 0 {
        eprintln!(
            "note: no key signs now; the new key signs in {delay} s (use --delay 0 to sign at once)"
        );
    }
    keys::ensure_writable(&settings.auth_keys_dir)?;
    eprintln!("{}", shared::jwt::generation_notice(bits));
    let key = keys::generate(&settings.auth_keys_dir, bits)?;
    let row = Row {
        kid: key.kid.clone(),
        state: STATE_PUBLISHED.to_owned(),
        published_at: now,
        activates_at: now.saturating_add(delay),
        retired_at: None,
    };
    sk::insert(&db, &row).await?;
    let rows = sk::load_rows(&db).await?;
    let view = key_view(&rows, &row, now, settings, Some(key.bits));
    output(
        json,
        view,
        &format!(
            "generated {} ({} bits) at {}; published now, signs from {} ({delay} s from now). Copy the file to every instance's keys folder before then.",
            key.kid,
            key.bits,
            key.path.display(),
            crate::since::rfc3339(row.activates_at),
        ),
    );
    Ok(())
}

/// `keys retire KID [--force]`: out of the JWKS, once no token it signed can
/// be valid (or at once with `--force`). The file stays.
pub async fn retire(settings: &Settings, json: bool, kid: &str, force: bool) -> anyhow::Result<()> {
    let db = connect(settings).await?;
    let now = SystemClock.now();
    let rows = sk::load_rows(&db)
        .await
        .with_context(|| format!("reading the signing keys ({NOT_MIGRATED})"))?;
    check_retire(&rows, kid, now, settings.auth_access_token_ttl_secs, force)?;
    let early = rows
        .iter()
        .find(|r| r.kid == kid)
        .and_then(|r| tokens_valid_until(&rows, r, now, settings.auth_access_token_ttl_secs))
        .is_some_and(|until| now < until);
    sk::mark_retired(&db, kid, now).await?;
    let rows = sk::load_rows(&db).await?;
    let view = rows
        .iter()
        .find(|r| r.kid == kid)
        .map(|r| key_view(&rows, r, now, settings, None))
        .unwrap_or(Value::Null);
    let mut human = format!(
        "retired {kid}: out of the JWKS within {} s; resource APIs stop trusting it when they next refresh their JWKS (at most its max-age, 300 s)",
        sk::RELOAD_INTERVAL.as_secs()
    );
    if early {
        human.push_str("; tokens it signed that have not expired yet will be refused");
    }
    output(json, view, &human);
    Ok(())
}

/// `keys list`: the folder's keys with their recorded state (`null` when
/// the database has no record of them, or cannot be read), newest first.
pub async fn list(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let files = keys::list_existing(&settings.auth_keys_dir)?;
    let now = SystemClock.now();
    let rows = match connect(settings).await {
        Ok(db) => sk::load_rows(&db).await.ok(),
        Err(_) => None,
    };
    let mut views: Vec<Value> = Vec::new();
    for file in &files {
        let record = rows
            .as_deref()
            .and_then(|rows| rows.iter().find(|r| r.kid == file.kid).map(|r| (rows, r)));
        let mut view = match record {
            Some((rows, row)) => key_view(rows, row, now, settings, Some(file.bits)),
            None => json!({"kid": file.kid, "state": null, "bits": file.bits}),
        };
        view["path"] = json!(file.path);
        views.push(view);
    }
    // Recorded keys whose file is not here (another instance's folder).
    for row in rows.iter().flatten() {
        if !files.iter().any(|f| f.kid == row.kid)
            && let Some(rows) = rows.as_deref()
        {
            let mut view = key_view(rows, row, now, settings, None);
            view["path"] = Value::Null;
            views.push(view);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
    } else if views.is_empty() {
        println!(
            "no signing keys in {} (`auth-server keys generate` creates one)",
            settings.auth_keys_dir.display()
        );
    } else {
        for view in &views {
            println!(
                "{}  {}  {} bits  {}",
                view["kid"].as_str().unwrap_or_default(),
                view["state"].as_str().unwrap_or("not recorded"),
                view["bits"],
                view["path"].as_str().unwrap_or("(file missing here)"),
            );
        }
    }
    Ok(())
}

fn output(json: bool, value: Value, human: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{human}");
    }
}
