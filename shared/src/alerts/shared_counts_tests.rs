#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;
use std::time::Duration;

use super::SharedCounts;
use crate::alerts::{Alert, Engine, Rule, Thresholds};
use crate::limit::test_redis::RedisServer;
use crate::limit::{Limiter, StoreStatus};

/// A key prefix no other test (nor an earlier run) uses.
fn unique_prefix() -> String {
    format!("test-alerts-{}", uuid::Uuid::new_v4().simple())
}

fn test_redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .expect("TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)")
}

/// One "instance": an engine and its shared counts.
async fn instance(url: &str, prefix: &str) -> (Mutex<Engine>, SharedCounts) {
    let limiter = Limiter::with_prefix(Some(url), prefix).await.unwrap();
    (
        Mutex::new(Engine::new(Thresholds::default())),
        SharedCounts::new(limiter),
    )
}

/// `failed` failures spread over `total` sign-ins.
async fn logins(
    engine: &Mutex<Engine>,
    shared: &SharedCounts,
    total: u32,
    failed: u32,
) -> Vec<Alert> {
    let mut fired = Vec::new();
    for i in 0..total {
        let bad = (i * failed) / total != ((i + 1) * failed) / total;
        let ip = if bad {
            "ip:203.0.113.7"
        } else {
            "ip:198.51.100.1"
        };
        fired.extend(
            shared
                .observe(engine, Rule::LoginFailureRate, Some(ip.into()), bad)
                .await,
        );
    }
    fired
}

test_gates::needs! { [redis]
    #[tokio::test]
    async fn two_instances_each_seeing_half_an_attack_fire_once_in_total() {
        let url = test_redis_url();
        let prefix = unique_prefix();
        let (a_engine, a) = instance(&url, &prefix).await;
        let (b_engine, b) = instance(&url, &prefix).await;
        assert_eq!(a.status(), StoreStatus::Redis);
        // 15 failed sign-ins out of 50 on each instance, interleaved.
        let mut fired = Vec::new();
        for _ in 0..5 {
            fired.extend(logins(&a_engine, &a, 10, 3).await);
            fired.extend(logins(&b_engine, &b, 10, 3).await);
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].rule, Rule::LoginFailureRate);
        // Counted on the shared totals, not one instance's.
        assert!(fired[0].total >= 20, "{:?}", fired[0]);
        let listed = a_engine.lock().unwrap().alerts(std::time::Instant::now()).len()
            + b_engine.lock().unwrap().alerts(std::time::Instant::now()).len();
        assert_eq!(listed, 1);
    }
}

test_gates::needs! { [redis]
    #[tokio::test]
    async fn a_threshold_reached_only_on_the_shared_total_fires() {
        let url = test_redis_url();
        let prefix = unique_prefix();
        let (a_engine, a) = instance(&url, &prefix).await;
        let (b_engine, b) = instance(&url, &prefix).await;
        let mut fired = Vec::new();
        // 25 + 25 answers 401: neither instance reaches 50 alone.
        for _ in 0..25 {
            fired.extend(a.observe(&a_engine, Rule::AuthFailureSpike, None, true).await);
            fired.extend(b.observe(&b_engine, Rule::AuthFailureSpike, None, true).await);
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].count, 50);
        // 429s to one address, split between instances.
        let mut fired = Vec::new();
        for _ in 0..10 {
            for (engine, shared) in [(&a_engine, &a), (&b_engine, &b)] {
                fired.extend(
                    shared
                        .observe(engine, Rule::RateLimitAbuse, Some("ip:192.0.2.3".into()), true)
                        .await,
                );
            }
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
    }
}

test_gates::needs! { [redis]
    #[tokio::test]
    async fn quiet_shared_traffic_stays_quiet() {
        let url = test_redis_url();
        let prefix = unique_prefix();
        let (a_engine, a) = instance(&url, &prefix).await;
        let (b_engine, b) = instance(&url, &prefix).await;
        let mut fired = logins(&a_engine, &a, 100, 2).await;
        fired.extend(logins(&b_engine, &b, 100, 2).await);
        for i in 0..19 {
            let who = Some(format!("ip:192.0.2.{i}"));
            fired.extend(a.observe(&a_engine, Rule::RateLimitAbuse, who.clone(), true).await);
            fired.extend(b.observe(&b_engine, Rule::AuthFailureSpike, who, true).await);
        }
        assert!(fired.is_empty(), "{fired:?}");
    }
}

test_gates::needs! { [redis]
    #[tokio::test]
    async fn shared_keys_hold_no_address_and_expire() {
        let url = test_redis_url();
        let prefix = unique_prefix();
        let (engine, shared) = instance(&url, &prefix).await;
        shared
            .observe(&engine, Rule::RateLimitAbuse, Some("ip:203.0.113.77".into()), true)
            .await;
        let mut conn = ::redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(keys.len(), 2, "{keys:?}");
        for key in keys {
            assert!(!key.contains("203.0.113.77"), "{key}");
            let ttl: i64 = ::redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
            assert!(ttl > 0 && ttl <= 310, "{key}: {ttl}");
        }
    }
}

test_gates::needs! { [redis_server]
    #[tokio::test]
    async fn with_redis_down_the_engine_falls_back_to_local_traffic() {
        let mut server = RedisServer::start_required().await.unwrap();
        let url = server.url();
        let prefix = unique_prefix();
        let (engine, shared) = instance(&url, &prefix).await;
        assert_eq!(shared.status(), StoreStatus::Redis);
        // Quiet shared traffic first.
        assert!(logins(&engine, &shared, 10, 0).await.is_empty());

        server.kill().await;
        let start = std::time::Instant::now();
        let fired = logins(&engine, &shared, 100, 30).await;
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(shared.status(), StoreStatus::Fallback);
        // The deadline bounds the outage's first call; the rest skip Redis.
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());

        // Recovers without restart.
        server.restart().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while shared.status() != StoreStatus::Redis && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(shared.status(), StoreStatus::Redis);
    }
}
