//! How many independent executions a second the store can claim and complete
//! (not run by default: `cargo test -p courier-store-postgres --release --test
//! throughput -- --ignored --nocapture`). Mirrors `courier bench --scenario
//! independent`: dispatch everything first, refresh statistics, then time claim
//! and completion by several workers, each claiming and completing in batches.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use courier_core::{ClaimRequest, Completion, NewExecution, Outcome, Store, TaskKind, TaskSpec, TaskStore, WriteBatch};

/// CPU seconds used so far by every Postgres process on this machine (server on
/// the same box), so the cost per execution can be told apart from noise made by
/// other work on the machine.
fn postgres_cpu_seconds() -> f64 {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.ends_with("(postgres") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
        ticks += fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    ticks as f64 / 100.0
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run it on purpose"]
async fn independent_executions_per_second() {
    let n = env("BENCH_N", 30_000);
    let workers = env("BENCH_WORKERS", 4);
    let batch = env("BENCH_BATCH", 500) as u32;
    let store = Arc::new(common::fresh("bench").await);

    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let items = chunk
            .iter()
            .map(|i| NewExecution::new(TaskSpec::new(TaskKind::Activity, "echo", serde_json::json!({"i": i}))))
            .collect();
        store.dispatch(items).await.unwrap();
    }
    let dispatch_secs = started.elapsed().as_secs_f64();
    store.analyze().await.unwrap();

    let done = Arc::new(AtomicUsize::new(0));
    let claim_us = Arc::new(AtomicUsize::new(0));
    let complete_us = Arc::new(AtomicUsize::new(0));
    let cpu_before = postgres_cpu_seconds();
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (store, done) = (store.clone(), done.clone());
            let (claim_us, complete_us) = (claim_us.clone(), complete_us.clone());
            tokio::spawn(async move {
                let req = ClaimRequest::new(format!("w{w}"), batch, Duration::from_secs(60)).queues(["default"]);
                while done.load(Ordering::SeqCst) < n {
                    let t = Instant::now();
                    let claimed = store.claim_tasks(&req).await.unwrap().value;
                    claim_us.fetch_add(t.elapsed().as_micros() as usize, Ordering::Relaxed);
                    if claimed.is_empty() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    let completions = claimed
                        .iter()
                        .map(|c| Completion {
                            lease: c.lease.key(),
                            outcome: Outcome::Succeeded {
                                result: c.task.args.clone(),
                                remember: Vec::new(),
                            },
                        })
                        .collect();
                    let t = Instant::now();
                    let results = store
                        .commit(Arc::new(WriteBatch {
                            completions,
                            ..WriteBatch::default()
                        }))
                        .await
                        .unwrap()
                        .completions;
                    complete_us.fetch_add(t.elapsed().as_micros() as usize, Ordering::Relaxed);
                    assert!(results.iter().all(|r| r.is_ok()));
                    done.fetch_add(results.len(), Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = postgres_cpu_seconds() - cpu_before;
    println!(
        "independent: n={n} workers={workers} batch={batch} per_sec={:.0} dispatch_per_sec={:.0}",
        n as f64 / secs,
        n as f64 / dispatch_secs
    );
    println!(
        "postgres cpu per execution (claim + complete): {:.0} µs",
        cpu / n as f64 * 1e6
    );
    println!(
        "time in claims {:.2}s, in completions {:.2}s (summed over workers)",
        claim_us.load(Ordering::Relaxed) as f64 / 1e6,
        complete_us.load(Ordering::Relaxed) as f64 / 1e6
    );
    let client = store.pool().get().await.unwrap();
    for row in client
        .query(
            "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
             WHERE schemaname = current_schema() AND n_tup_upd > 0 ORDER BY relname",
            &[],
        )
        .await
        .unwrap()
    {
        let (table, updates, hot): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
        println!("{table}: {updates} updates, {hot} HOT");
    }
    drop(client);
    store.drop_schema().await.unwrap();
}
