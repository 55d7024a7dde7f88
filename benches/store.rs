//! Store bench: claim + complete throughput per store, for claim batches of 1,
//! 10 and 100. Prints one JSON line per (store, batch size) with the median of
//! the runs, and each run's figure.
//!
//!     cargo bench --bench store                     # both stores
//!     COURIER_BENCH_STORES=sqlite cargo bench --bench store
//!
//! Each run: dispatch N single-activity executions, refresh planner statistics,
//! then four workers loop "claim up to B, complete what was claimed in one call"
//! until all are done. Postgres: `COURIER_TEST_POSTGRES_URL` (default
//! postgres://postgres@127.0.0.1:5432/test), a fresh schema per run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use courier::core::store::*;
use courier::core::{ClaimRequest, Completion, NewExecution, Outcome, TaskKind, TaskSpec};
use courier::store::{PostgresOptions, PostgresStore, SqliteOptions, SqliteStore};
use serde_json::json;

const WORKERS: usize = 4;
const RUNS: usize = 3;

async fn open(
    backend: &str,
) -> (
    Arc<dyn Store>,
    Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()>>,
) {
    match backend {
        "sqlite" => {
            let dir = std::env::temp_dir().join(format!("courier-store-bench-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).unwrap();
            let store = SqliteStore::open(SqliteOptions::file(dir.join("bench.db")))
                .await
                .unwrap();
            store.init().await.unwrap();
            let handle = store.clone();
            (
                Arc::new(store),
                Box::new(move || {
                    Box::pin(async move {
                        handle.close().await;
                        let _ = std::fs::remove_dir_all(dir);
                    })
                }),
            )
        }
        _ => {
            let url = std::env::var("COURIER_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let schema = format!("store_bench_{}", uuid::Uuid::new_v4().simple());
            let store = PostgresStore::connect(PostgresOptions::new(url).schema(schema).pool_size(8))
                .await
                .unwrap();
            store.init().await.unwrap();
            let handle = store.clone();
            (
                Arc::new(store),
                Box::new(move || {
                    Box::pin(async move {
                        let _ = handle.drop_schema().await;
                    })
                }),
            )
        }
    }
}

/// Claims and completes `n` tasks in batches of `batch`; returns tasks per second.
async fn run(backend: &str, batch: u32, n: usize) -> f64 {
    let (store, cleanup) = open(backend).await;
    let spec = TaskSpec::new(TaskKind::Activity, "noop", json!({"k": 1}));
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let news = chunk.iter().map(|_| NewExecution::new(spec.clone())).collect();
        store.dispatch(news).await.unwrap();
    }
    store.analyze().await.unwrap();
    let started = Instant::now();
    let workers = (0..WORKERS).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let req = ClaimRequest::new(format!("bench-{w}"), batch, Duration::from_secs(60));
            let mut done = 0usize;
            loop {
                let claimed = store.claim_tasks(&req).await.unwrap().value;
                if claimed.is_empty() {
                    return done;
                }
                let completions = claimed
                    .iter()
                    .map(|c| Completion {
                        lease: c.lease.key(),
                        outcome: Outcome::Succeeded {
                            result: json!(null),
                            remember: Vec::new(),
                        },
                    })
                    .collect();
                let batch = WriteBatch {
                    completions,
                    ..WriteBatch::default()
                };
                for r in store.commit(Arc::new(batch)).await.unwrap().completions {
                    r.unwrap();
                }
                done += claimed.len();
            }
        })
    });
    let done: usize = futures::future::join_all(workers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(done, n);
    cleanup().await;
    n as f64 / secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let stores = std::env::var("COURIER_BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    for backend in stores.split(',').map(str::trim) {
        for batch in [1u32, 10, 100] {
            let n = match batch {
                1 => 3_000,
                10 => 20_000,
                _ => 50_000,
            };
            let mut figures = Vec::new();
            for _ in 0..RUNS {
                figures.push(run(backend, batch, n).await);
            }
            let rounded: Vec<f64> = figures.iter().map(|f| f.round()).collect();
            println!(
                "{}",
                json!({
                    "bench": "store_claim_complete",
                    "store": backend,
                    "batch": batch,
                    "workers": WORKERS,
                    "n": n,
                    "per_sec_median": median(figures).round(),
                    "runs": rounded,
                })
            );
        }
    }
}
