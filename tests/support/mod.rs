//! Shared helpers for the runtime's behaviour tests: stores, fast worker
//! options, side-effect counters, and waiting for a condition.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use courier::core::Store;
use courier::store::{PostgresOptions, PostgresStore, SqliteOptions, SqliteStore};
use courier::{MaintenanceOptions, PollBackoff, WorkerOptions};
use dashmap::DashMap;

/// A fresh SQLite store in a temporary file (shareable by several nodes of one test).
pub async fn sqlite() -> Arc<dyn Store> {
    sqlite_in_dir().await.0
}

/// A fresh SQLite store, and the directory holding its files (the database,
/// its WAL), for a test that must look behind the store.
pub async fn sqlite_in_dir() -> (Arc<dyn Store>, std::path::PathBuf) {
    let dir = leftovers::scratch_dir();
    let store = SqliteStore::open(SqliteOptions::file(dir.join("courier.db")))
        .await
        .unwrap();
    store.init().await.unwrap();
    (Arc::new(store), dir)
}

/// A fresh SQLite store in a temporary file whose claim order gives each
/// priority level `ageing` of waiting.
pub async fn sqlite_aged(ageing: Duration) -> Arc<dyn Store> {
    let dir = leftovers::scratch_dir();
    let ageing = courier::core::PriorityAgeing::new(ageing).unwrap();
    let store = SqliteStore::open(SqliteOptions::file(dir.join("courier.db")).priority_ageing(ageing))
        .await
        .unwrap();
    store.init().await.unwrap();
    Arc::new(store)
}

/// A fresh Postgres store in its own schema whose claim order gives each
/// priority level `ageing` of waiting.
pub async fn postgres_aged(ageing: Duration) -> Arc<dyn Store> {
    let schema = leftovers::scratch_schema().await;
    let ageing = courier::core::PriorityAgeing::new(ageing).unwrap();
    let options = PostgresOptions::new(postgres_url())
        .schema(schema)
        .pool_size(8)
        .priority_ageing(ageing);
    let store = PostgresStore::connect(options).await.unwrap();
    store.init().await.unwrap();
    Arc::new(store)
}

/// The Postgres URL tests use.
pub fn postgres_url() -> String {
    std::env::var("COURIER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh Postgres store in its own schema; `connections` pools on one schema
/// (as separate nodes would have).
pub async fn postgres_pair() -> (Arc<dyn Store>, Arc<dyn Store>) {
    let (a, b, _) = postgres_pair_in_schema().await;
    (a, b)
}

/// A fresh Postgres store in its own schema, and that schema's name (for a
/// test that must reach behind the store, as a failing database would).
pub async fn postgres_in_schema() -> (Arc<dyn Store>, String) {
    let (a, _, schema) = postgres_pair_in_schema().await;
    (a, schema)
}

async fn postgres_pair_in_schema() -> (Arc<dyn Store>, Arc<dyn Store>, String) {
    let schema = leftovers::scratch_schema().await;
    let open = || async {
        let store = PostgresStore::connect(PostgresOptions::new(postgres_url()).schema(schema.clone()).pool_size(8))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL must be reachable at {} ({e}); scripts/test starts it",
                    postgres_url()
                )
            });
        store.init().await.unwrap();
        Arc::new(store) as Arc<dyn Store>
    };
    (open().await, open().await, schema)
}

/// A fresh Postgres store in its own schema.
pub async fn postgres() -> Arc<dyn Store> {
    postgres_pair().await.0
}

/// Worker options for tests: short polls, short leases.
pub fn fast_worker() -> WorkerOptions {
    WorkerOptions::default()
        .lease(Duration::from_secs(5))
        .poll(PollBackoff {
            min: Duration::from_millis(20),
            max: Duration::from_millis(200),
            factor: 2.0,
        })
}

/// Worker options for a worker that, once idle, does not claim again for a
/// long while on its own (30 s): whatever starts meanwhile was claimed by a
/// commit, or by a poll the worker scheduled for a reason of its own.
pub fn idle_worker() -> WorkerOptions {
    WorkerOptions::default()
        .lease(Duration::from_secs(5))
        .poll(PollBackoff {
            min: Duration::from_secs(30),
            max: Duration::from_secs(30),
            factor: 2.0,
        })
}

/// Maintenance that runs often.
pub fn fast_maintenance() -> MaintenanceOptions {
    MaintenanceOptions {
        interval: Duration::from_millis(100),
        stuck_after: Duration::from_secs(60),
        ..MaintenanceOptions::default()
    }
}

/// Counts side effects by name, across nodes of one test.
#[derive(Clone, Default)]
pub struct Counters(Arc<DashMap<String, Arc<AtomicUsize>>>);

impl Counters {
    pub fn bump(&self, name: &str) -> usize {
        self.0
            .entry(name.to_string())
            .or_default()
            .fetch_add(1, Ordering::SeqCst)
            + 1
    }

    pub fn get(&self, name: &str) -> usize {
        self.0.get(name).map(|c| c.load(Ordering::SeqCst)).unwrap_or(0)
    }
}

/// Waits until `check` holds, failing the test after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Appends `n` progress events (each padded with `pad` bytes) straight to the
/// store, behind the runtime's back, so nobody is told: a test that wants the log
/// to have grown silently, or to grow faster than any worker writes. The events
/// belong to one execution dispatched for the purpose (its two dispatch events
/// come first). Returns the last sequence number.
pub async fn append_silently(store: &Arc<dyn Store>, n: usize, pad: usize) -> i64 {
    use courier::core::{Effect, EffectWrite, NewExecution, Progress, TaskKind, TaskSpec, WriteBatch};
    let spec =
        TaskSpec::new(TaskKind::Activity, "silent", serde_json::Value::Null).with_delay(Duration::from_secs(86_400));
    let new = NewExecution::new(spec);
    let execution = new.id;
    store.dispatch(vec![new]).await.unwrap();
    let mut step = 1;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let effects = chunk
            .iter()
            .map(|i| {
                step += 1;
                EffectWrite {
                    fence: None,
                    execution_id: execution,
                    parent_id: None,
                    step,
                    effect: Effect::Progress(Progress {
                        detail: Some(serde_json::json!({"i": i, "pad": "x".repeat(pad)})),
                        ..Progress::default()
                    }),
                }
            })
            .collect();
        let batch = WriteBatch {
            effects,
            ..WriteBatch::default()
        };
        for result in store.commit(Arc::new(batch)).await.unwrap().effects {
            result.unwrap();
        }
    }
    store.last_event_seq().await.unwrap()
}

/// A wait bound for tests (generous: CI machines are slow).
pub const WAIT: Option<Duration> = Some(Duration::from_secs(30));

/// The `webhooks.secret_key` of test nodes: registering a webhook needs one.
pub const WEBHOOK_SECRET_KEY: &str = "AG997S88LNpAm0Rom4TeLVh0GSchFj+eO/whPOkGJrw=";

/// [`WEBHOOK_SECRET_KEY`] as a node's keys (`WebhookOptions::secret_keys`).
pub fn webhook_secret_keys() -> courier::webhooks::sealing::SecretKeys {
    courier::webhooks::sealing::SecretKeys::parse(WEBHOOK_SECRET_KEY, &[] as &[&str]).unwrap()
}

pub mod cluster;
pub mod http;
pub mod leftovers;
pub mod receivers;
pub mod sentinel;
