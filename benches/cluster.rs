//! Cluster bench: cross-node wake-up latency and throughput with 1, 2 and 3
//! nodes on one Postgres. Prints one JSON line per figure.
//!
//!     cargo build --release -p courier-cli && cargo bench --bench cluster
//!
//! * `wakeup` (per notifier: Redis, Redis through Sentinel, Redis Cluster and
//!   Postgres NOTIFY):
//!   node B is a release
//!   `courier serve` process that runs the work; node A is this process (no
//!   worker of its own, polling slowed to 30 s so only a notice can wake it). A
//!   dispatches a no-op activity and `wait_for`s it, 200 times. `p50_ms`/`p99_ms`
//!   are from B's commit (the execution's `completed_at`, stamped by Postgres on
//!   this same machine) to `wait_for` returning on A; `round_trip_*` are
//!   dispatch to return. For `redis-sentinel` the bench starts a master, a
//!   replica and three sentinels of its own (`redis-server` on loopback) and both
//!   nodes use `redis+sentinel://`: the master is found through the sentinels,
//!   then the path is the same as plain Redis. For `redis-cluster` it starts a
//!   Redis Cluster of its own (three masters, three replicas) and both nodes use
//!   `redis+cluster://`: sharded pub/sub, each notice sent to the master owning
//!   its channel's slot.
//! * `throughput` (1, 2, 3 nodes): N no-op executions dispatched in bulk, then
//!   that many `courier serve` nodes (Redis notifier) run them; executions/s from
//!   the first start to the last completion, by the store's timestamps.
//!
//! Settings: `COURIER_BIN` (default target/release/courier), `COURIER_TEST_POSTGRES_URL`,
//! `COURIER_TEST_REDIS_URL`, `COURIER_BENCH_CLUSTER_N` (default 20000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use courier::core::{ExecutionFilter, ExecutionState, Store};
use courier::{Courier, DispatchOptions, PollBackoff, WorkerOptions};
use serde_json::json;

mod support;
use support::{Server, psql};
#[path = "../tests/support/redis_cluster.rs"]
mod redis_cluster;
#[path = "../tests/support/sentinel.rs"]
mod sentinel;

fn postgres_admin() -> String {
    std::env::var("COURIER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("COURIER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh database, dropped on drop.
struct Database {
    url: String,
    name: String,
}

impl Database {
    fn create() -> Database {
        let admin = postgres_admin();
        let name = format!("courier_cluster_bench_{}", uuid::Uuid::new_v4().simple());
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let (base, _) = admin.rsplit_once('/').unwrap();
        Database {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(
            &postgres_admin(),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A node running the work: a `courier serve` with the fixtures.
fn node(db: &Database, notifier: &str, prefix: &str, name: &str) -> Server {
    Server::start(&[
        ("COURIER_NODE_ID", name.to_string()),
        ("COURIER_STORE_URL", db.url.clone()),
        ("COURIER_NOTIFIER_URL", notifier.to_string()),
        ("COURIER_NOTIFIER_PREFIX", prefix.to_string()),
        ("COURIER_TESTING_FIXTURES", "true".into()),
        ("COURIER_LOG_LEVEL", "error".into()),
    ])
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let v = sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (v * 100.0).round() / 100.0
}

/// This process as an API-only node: it dispatches and waits, and runs nothing.
async fn client(db: &Database, notifier: &str, prefix: &str) -> Courier {
    let store = courier::store::open(&db.url).await.unwrap();
    let notifier = courier::notify::open(notifier, prefix).await.unwrap();
    Courier::builder()
        .store(store)
        .notifier(notifier)
        .node_id("bench-client")
        // A worker on a queue nobody uses, only so that the polling safety net of
        // `wait_for` is slow enough not to be what wakes it.
        .worker(WorkerOptions::default().queues(["bench.nothing"]).poll(PollBackoff {
            min: Duration::from_secs(30),
            max: Duration::from_secs(30),
            factor: 1.0,
        }))
        .start()
        .await
        .unwrap()
}

async fn wakeup(kind: &str, samples: usize) -> serde_json::Value {
    let db = Database::create();
    let prefix = format!("cb{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    // Held for the whole run: the master, its replica and the three sentinels.
    let sentinels = (kind == "redis-sentinel").then(|| {
        sentinel::SentinelSet::start(sentinel::Passwords::default())
            .unwrap_or_else(|e| panic!("Redis Sentinel on loopback: {e}"))
    });
    // Likewise the cluster's six nodes.
    let cluster = (kind == "redis-cluster")
        .then(|| redis_cluster::RedisCluster::start().unwrap_or_else(|e| panic!("Redis Cluster on loopback: {e}")));
    let notifier = match (kind, &sentinels, &cluster) {
        ("redis", _, _) => redis_url(),
        (_, Some(set), _) => set.url(),
        (_, _, Some(cluster)) => cluster.url(),
        _ => db.url.clone(),
    };
    let _b = node(&db, &notifier, &prefix, "b");
    let a = client(&db, &notifier, &prefix).await;
    let mut wake = Vec::with_capacity(samples);
    let mut round_trip = Vec::with_capacity(samples);
    for i in 0..(samples + 20) {
        let started = Instant::now();
        let id = a
            .dispatch("fixture.effect", json!({ "key": format!("w{i}") }))
            .await
            .unwrap();
        let done = a.wait_for(id, Some(Duration::from_secs(20))).await.unwrap();
        let returned = chrono::Utc::now();
        let took = started.elapsed();
        if i < 20 {
            continue; // warm-up
        }
        let committed = done.completed_at.expect("completed");
        wake.push((returned - committed).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        round_trip.push(took.as_secs_f64() * 1000.0);
    }
    a.shutdown().await.unwrap();
    wake.sort_by(f64::total_cmp);
    round_trip.sort_by(f64::total_cmp);
    json!({
        "bench": "cluster_wakeup",
        "notifier": kind,
        "samples": samples,
        "p50_ms": percentile(&wake, 0.5),
        "p99_ms": percentile(&wake, 0.99),
        "round_trip_p50_ms": percentile(&round_trip, 0.5),
        "round_trip_p99_ms": percentile(&round_trip, 0.99),
    })
}

async fn throughput(nodes: usize, n: usize) -> serde_json::Value {
    let db = Database::create();
    let prefix = format!("cb{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let redis = redis_url();
    let store: Arc<dyn Store> = courier::store::open(&db.url).await.unwrap();
    store.init().await.unwrap();
    let a = Courier::builder()
        .store(store.clone())
        .notifier(courier::notify::open(&redis, &prefix).await.unwrap())
        .start()
        .await
        .unwrap();
    let batch: Vec<_> = (0..n)
        .map(|i| {
            a.new_execution(
                "fixture.effect",
                json!({ "key": i.to_string() }),
                &DispatchOptions::default(),
            )
        })
        .collect();
    for chunk in batch.chunks(5000) {
        a.dispatch_many(chunk.to_vec()).await.unwrap();
    }
    store.analyze().await.unwrap();
    let running: Vec<Server> = (0..nodes)
        .map(|i| node(&db, &redis, &prefix, &format!("n{i}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    while (store.count_executions(Some(ExecutionState::Completed)).await.unwrap() as usize) < n {
        assert!(Instant::now() < deadline, "the run did not finish in 10 minutes");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(running);
    let mut first = None;
    let mut last = None;
    let mut offset = 0;
    loop {
        let page = store
            .list_executions(&ExecutionFilter {
                limit: 10_000,
                offset,
                ..ExecutionFilter::default()
            })
            .await
            .unwrap();
        for e in &page {
            if let Some(s) = e.started_at {
                first = Some(first.map_or(s, |f: chrono::DateTime<chrono::Utc>| f.min(s)));
            }
            last = last.max(e.completed_at);
        }
        if page.len() < 10_000 {
            break;
        }
        offset += 10_000;
    }
    a.shutdown().await.unwrap();
    let secs = (last.unwrap() - first.unwrap()).to_std().unwrap().as_secs_f64();
    json!({
        "bench": "cluster_throughput",
        "nodes": nodes,
        "n": n,
        "per_sec": (n as f64 / secs).round(),
        "secs": (secs * 100.0).round() / 100.0,
    })
}

#[actix_rt::main]
async fn main() {
    let n = std::env::var("COURIER_BENCH_CLUSTER_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    for kind in ["redis", "redis-sentinel", "redis-cluster", "postgres"] {
        println!("{}", wakeup(kind, 200).await);
    }
    for nodes in 1..=3 {
        println!("{}", throughput(nodes, n).await);
    }
}
