//! Graceful refresh-token rotation when the server crashes under load.
//!
//! Eight token families refresh in a loop, each like a real client: a
//! request that times out or fails is a lost answer, so the client keeps its
//! old token and tries again. Meanwhile the authorization server is killed
//! with SIGKILL six times and started again on the same address. A kill
//! that lands after a rotation committed but before its answer left makes
//! the client present a token that is already rotated: with a grace window
//! it gets the same successor back (`refresh-grace.secret` survives the
//! restart); without one that is reuse, and the family is revoked.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::StackOptions;
use e2e::oauth::{self, ClientAuth};
use migrations::sea_orm::{ConnectionTrait, Database, Statement};
use reqwest::StatusCode;
use tokio::time::Instant;

use crate::support::*;

const FAMILIES: usize = 8;
const KILLS: usize = 6;
/// The client gives up on a refresh after this long: the answer is lost.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);
/// Pause after a lost answer before the retry.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Steady load between one restart (healthy again) and the next kill.
const KILL_EVERY: Duration = Duration::from_millis(800);
/// Steady load after the last restart.
const SETTLE: Duration = Duration::from_secs(1);
/// Hard end of every refresh loop, kills or not.
const LOAD_DEADLINE: Duration = Duration::from_secs(12);
/// Hard end of the six kills and restarts.
const CONTROLLER_DEADLINE: Duration = Duration::from_secs(30);
/// Last requests of each family kept to show when it is lost.
const TRACE_LEN: usize = 12;
/// Most lost answers kept per family.
const LOST_ANSWERS_KEPT: usize = 32;

both!(grace_keeps_every_family_when_server_is_killed_mid_load => grace_keeps_every_family_when_server_is_killed_mid_load_sqlite, grace_keeps_every_family_when_server_is_killed_mid_load_postgres);
/// With a 60 s grace window no family is lost to the crashes, and every
/// family's last token still refreshes.
async fn grace_keeps_every_family_when_server_is_killed_mid_load(backend: Backend) {
    let name = match backend {
        Backend::Sqlite => "grace 60 s, sqlite",
        Backend::Postgres(_) => "grace 60 s, postgres",
    };
    let (f, report) = crash_under_load(&backend, 60).await;
    report.print(name);
    assert_eq!(report.kills, KILLS, "{name}: kills");
    assert!(
        report.unexpected.is_empty(),
        "{name}: unexpected answers: {:#?}",
        report.unexpected
    );
    let lost: Vec<_> = report
        .families
        .iter()
        .filter(|r| r.lost.is_some())
        .collect();
    assert!(
        lost.is_empty(),
        "{name}: {} of {FAMILIES} families lost: {lost:#?}",
        lost.len()
    );
    assert_eq!(report.doubled, 0, "{name}: a family with two valid tokens");
    for (i, family) in report.families.iter().enumerate() {
        let resp = refresh(&f.stack, f.client.basic(), &family.token).await;
        let tokens = assert_tokens(&resp);
        assert!(
            tokens.refresh.is_some(),
            "{name}: family {i} refreshed without a refresh token: {resp}"
        );
    }
}

/// The control run: the same load and kills without a grace window. Only
/// reports how many families reuse detection revoked (it depends on where
/// the kills land).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_off_loses_families_when_server_is_killed_mid_load_sqlite_report() {
    let (_f, report) = crash_under_load(&Backend::Sqlite, 0).await;
    report.print("grace off (control), sqlite");
    assert_eq!(report.kills, KILLS, "kills");
    assert!(
        report.unexpected.is_empty(),
        "unexpected answers: {:#?}",
        report.unexpected
    );
}

/// How one family's refresh loop ended.
#[derive(Debug)]
struct FamilyRun {
    /// The token the client holds at the end.
    token: String,
    refreshed: u64,
    /// Lost answers retried (timeouts included).
    retries: u64,
    /// Of which the client timed out.
    timeouts: u64,
    /// The `invalid_grant` answer that ended the family.
    lost: Option<String>,
    /// The requests whose answer was lost, as in `trace`.
    lost_answers: Vec<String>,
    /// The last requests: ms since the load began, time taken, token sent,
    /// outcome.
    trace: VecDeque<String>,
}

struct Report {
    families: Vec<FamilyRun>,
    kills: usize,
    /// Time from SIGKILL to healthy again, per kill.
    restarts: Vec<Duration>,
    /// Answers that are neither 200, `invalid_grant` nor 5xx.
    unexpected: Vec<String>,
    /// Audit events by kind (grace replays, reuse detections).
    audit: BTreeMap<String, i64>,
    /// Families holding more than one live (unused, unrevoked) token.
    doubled: i64,
    took: Duration,
}

impl Report {
    fn print(&self, name: &str) {
        let sum = |f: fn(&FamilyRun) -> u64| self.families.iter().map(f).sum::<u64>();
        let lost = self.families.iter().filter(|r| r.lost.is_some()).count();
        let restart_ms: Vec<u128> = self.restarts.iter().map(Duration::as_millis).collect();
        eprintln!(
            "{name}: {} refreshes succeeded, {} retries ({} after a timeout), {} kills \
             (restart ms {restart_ms:?}), {lost} of {FAMILIES} families lost, audit {:?}, \
             load {:.1} s",
            sum(|r| r.refreshed),
            sum(|r| r.retries),
            sum(|r| r.timeouts),
            self.kills,
            self.audit,
            self.took.as_secs_f64(),
        );
    }
}

/// A stack whose server has a grace window of `grace_secs` (20 replays per
/// token), eight families, the refresh load and six kills.
async fn crash_under_load(backend: &Backend, grace_secs: u32) -> (Fixture, Report) {
    let options = StackOptions::default()
        .without_resource_api()
        .auth_env("REFRESH_GRACE_SECS", &grace_secs.to_string())
        .auth_env("REFRESH_GRACE_MAX_REPLAYS", "20");
    let mut f = fixture_with(backend, options).await;
    let mut first = Vec::with_capacity(FAMILIES);
    for _ in 0..FAMILIES {
        first.push(tokens(&f, SCOPE).await.refresh.unwrap());
    }

    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = f.stack.endpoint("token_endpoint").unwrap();
    let secret = f.client.secret.clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + LOAD_DEADLINE;
    let loops: Vec<_> = first
        .into_iter()
        .map(|token| {
            tokio::spawn(refresh_loop(
                http.clone(),
                url.clone(),
                (f.client.id.clone(), secret.clone()),
                token,
                stop.clone(),
                deadline,
            ))
        })
        .collect();

    let mut restarts = Vec::with_capacity(KILLS);
    let controller = async {
        for _ in 0..KILLS {
            tokio::time::sleep(KILL_EVERY).await;
            let killed = Instant::now();
            let status = f.stack.kill_restart_auth().await.unwrap();
            restarts.push(killed.elapsed());
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(status.signal(), Some(9), "auth-server ended by {status}");
            }
            #[cfg(not(unix))]
            let _ = status;
        }
        tokio::time::sleep(SETTLE).await;
    };
    let controlled = tokio::time::timeout(CONTROLLER_DEADLINE, controller).await;
    stop.store(true, Ordering::Relaxed);
    let mut families = Vec::with_capacity(FAMILIES);
    let mut unexpected = Vec::new();
    for handle in loops {
        let (run, odd) = handle.await.unwrap();
        families.push(run);
        unexpected.extend(odd);
    }
    let took = started.elapsed();
    assert!(
        controlled.is_ok(),
        "the kills and restarts took over {CONTROLLER_DEADLINE:?}"
    );
    let audit = audit_counts(&f.stack.database_url).await;
    let doubled = families_with_two_live_tokens(&f.stack.database_url).await;
    let report = Report {
        families,
        kills: restarts.len(),
        restarts,
        unexpected,
        audit,
        doubled,
        took,
    };
    (f, report)
}

/// One client: refreshes the token it holds until `stop` or `deadline`.
/// A 200 moves it to the new token; a timeout, a transport error or a 5xx
/// is a lost answer (keep the old token, retry); `invalid_grant` ends the
/// family. Also returns answers that fit none of these.
async fn refresh_loop(
    http: reqwest::Client,
    url: String,
    (id, secret): (String, String),
    mut token: String,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) -> (FamilyRun, Option<String>) {
    let mut run = FamilyRun {
        token: String::new(),
        refreshed: 0,
        retries: 0,
        timeouts: 0,
        lost: None,
        lost_answers: Vec::new(),
        trace: VecDeque::with_capacity(TRACE_LEN),
    };
    let began = Instant::now();
    let mut unexpected = None;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let auth = ClientAuth::Basic {
            id: &id,
            secret: &secret,
        };
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", token.as_str()),
        ];
        let sent = began.elapsed();
        let result = oauth::post_form(&http, &url, auth, &form).await;
        if run.trace.len() == TRACE_LEN {
            run.trace.pop_front();
        }
        let entry = format!(
            "{} ms +{} ms {}… -> {}",
            sent.as_millis(),
            (began.elapsed() - sent).as_millis(),
            prefix(&token),
            match &result {
                Ok(resp) => format!(
                    "{} {}",
                    resp.status.as_u16(),
                    resp.str("refresh_token").map_or(resp.body.as_str(), prefix)
                ),
                Err(e) if is_timeout(e) => "timed out".to_owned(),
                Err(e) => format!("{:#}", e.root_cause()),
            }
        );
        let answered = matches!(&result, Ok(resp) if !resp.status.is_server_error());
        if !answered && run.lost_answers.len() < LOST_ANSWERS_KEPT {
            run.lost_answers.push(entry.clone());
        }
        run.trace.push_back(entry);
        match result {
            Ok(resp) if resp.status == StatusCode::OK => match resp.str("refresh_token") {
                Some(next) => {
                    token = next.to_owned();
                    run.refreshed += 1;
                }
                None => {
                    unexpected = Some(format!("200 without a refresh token: {resp}"));
                    break;
                }
            },
            Ok(resp)
                if resp.status == StatusCode::BAD_REQUEST
                    && resp.error() == Some("invalid_grant") =>
            {
                run.lost = Some(resp.to_string());
                break;
            }
            Ok(resp) if resp.status.is_server_error() => {
                run.retries += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Ok(resp) => {
                unexpected = Some(resp.to_string());
                break;
            }
            Err(e) => {
                run.retries += 1;
                if is_timeout(&e) {
                    run.timeouts += 1;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    run.token = token;
    (run, unexpected)
}

fn is_timeout(e: &anyhow::Error) -> bool {
    e.downcast_ref::<reqwest::Error>()
        .is_some_and(reqwest::Error::is_timeout)
}

/// The first characters of a token, enough to follow it in a trace.
fn prefix(token: &str) -> &str {
    token.get(..8).unwrap_or(token)
}

/// Audit events by kind, read from the stack's database.
/// How many families hold more than one live token (never allowed: a
/// rotation spends its token in the transaction that stores the successor).
async fn families_with_two_live_tokens(database_url: &str) -> i64 {
    let db = Database::connect(database_url).await.unwrap();
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM (SELECT family_id FROM refresh_tokens \
             WHERE used_at IS NULL AND revoked_at IS NULL \
             GROUP BY family_id HAVING COUNT(*) > 1) AS doubled",
        ))
        .await
        .unwrap()
        .unwrap();
    let _ = db.close().await;
    row.try_get::<i64>("", "n").unwrap()
}

async fn audit_counts(database_url: &str) -> BTreeMap<String, i64> {
    let db = Database::connect(database_url).await.unwrap();
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT kind, COUNT(*) AS n FROM audit_events \
             WHERE kind LIKE 'refresh_token.%' GROUP BY kind",
        ))
        .await
        .unwrap();
    let _ = db.close().await;
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "kind").unwrap(),
                row.try_get::<i64>("", "n").unwrap(),
            )
        })
        .collect()
}
