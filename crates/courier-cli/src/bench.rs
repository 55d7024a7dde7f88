//! `courier bench`: throughput and latency of the runtime, measured the way
//! established job queues measure theirs (work enqueued first, then the time
//! from the first start to the last completion, from the store's timestamps).
//!
//! * `independent`: dispatch N one-activity executions in one bulk call with no
//!   worker running, refresh planner statistics, start the worker;
//!   `per_sec` = N / (first task start → last completion committed), from the
//!   store's own timestamps. Also `dispatch_per_sec`.
//! * `fanout`: one orchestrator maps an activity over N items; `per_sec` =
//!   N / (orchestrator start → its completion committed).
//! * `latency`: with the worker idle, N sequential dispatch → `wait_for` round
//!   trips; `p50_ms`, `p99_ms`.
//!
//! The throughput scenarios also report what each execution (or child) cost the
//! store, from counters read before dispatch and after the last completion:
//! on SQLite the writer thread's busy time (`writer_us_per_exec`) and its
//! transactions (`write_txns_per_exec`); on Postgres the rows inserted, updated
//! (`hot_updated`: in place, no index entry) and deleted in the store's tables
//! (`rows_per_exec`), the WAL written (`wal_bytes_per_exec`, the server's
//! whole WAL: run it on a quiet server), the transactions in the database
//! (`txns_per_exec`), the statements the store sent (`statements_sent_per_exec`,
//! counted as they go out, `BEGIN` and `COMMIT` included) and, when the server
//! has `pg_stat_statements` loaded and installed in the database, the
//! statements it ran (`statements_per_exec`).
//!
//! Prints one JSON line per run, then one line with the medians.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use courier_core::{ExecutionFilter, ExecutionRecord, ExecutionState, Store, TaskError};
use courier_runtime::{Courier, DispatchOptions, OrchestratorContext, PollBackoff, WorkerOptions};
use courier_store::{PostgresOptions, PostgresStore, SqliteOptions, SqliteStore, WriteVolume, WriterLoad};
use serde_json::{Value, json};

/// Which store to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh schema in the Postgres database `--dsn` names.
    Postgres,
}

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Many one-activity executions.
    Independent,
    /// One orchestrator fanning out to many children.
    Fanout,
    /// Sequential dispatch → wait_for round trips.
    Latency,
}

/// `courier bench` arguments.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The store.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreKind,
    /// The scenario.
    #[arg(long, value_enum, default_value = "independent")]
    pub scenario: Scenario,
    /// Executions (independent), children (fanout) or round trips (latency).
    #[arg(short = 'n', long, default_value_t = 10_000)]
    pub n: usize,
    /// Postgres DSN (with --store postgres).
    #[arg(
        long,
        env = "COURIER_BENCH_DSN",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub dsn: String,
    /// Runs; a last line reports the medians.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Activities the worker runs at once.
    #[arg(long, default_value_t = 4096)]
    pub concurrency: usize,
    /// Most tasks claimed per query.
    #[arg(long, default_value_t = 1024)]
    pub claim_batch: u32,
}

struct Run {
    per_sec: Option<f64>,
    dispatch_per_sec: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    cost: Option<Cost>,
}

/// What one execution cost the store, averaged over a run.
#[derive(Clone, Copy, Default)]
struct Cost {
    /// SQLite: the writer thread's busy time, in microseconds.
    writer_us: Option<f64>,
    /// SQLite: the writer's transactions.
    write_txns: Option<f64>,
    /// Postgres: rows inserted, updated (of those, in place), deleted.
    inserted: Option<f64>,
    updated: Option<f64>,
    hot_updated: Option<f64>,
    deleted: Option<f64>,
    /// Postgres: bytes of WAL.
    wal_bytes: Option<f64>,
    /// Postgres: transactions, and statements (with `pg_stat_statements`).
    txns: Option<f64>,
    statements: Option<f64>,
    /// Postgres: statements the store sent, counted by the store itself.
    sent: Option<f64>,
}

/// The store's cumulative write counters, read around a measured window.
enum Meter {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

enum Reading {
    Sqlite(WriterLoad),
    Postgres(WriteVolume),
}

impl Meter {
    async fn read(&self) -> Result<Reading, Box<dyn std::error::Error>> {
        Ok(match self {
            Meter::Sqlite(store) => Reading::Sqlite(store.writer_load()),
            Meter::Postgres(store) => Reading::Postgres(store.write_volume().await?),
        })
    }

    /// A reading once Postgres's statistics have caught up: its backends
    /// report their row counts within about a second of going idle, so read
    /// until two readings a second apart agree (at most 15 s).
    async fn settled(&self) -> Result<Reading, Box<dyn std::error::Error>> {
        let Meter::Postgres(store) = self else {
            return self.read().await;
        };
        let mut last = store.write_volume().await?;
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = store.write_volume().await?;
            if now.rows() == last.rows() {
                return Ok(Reading::Postgres(now));
            }
            last = now;
        }
        Ok(Reading::Postgres(last))
    }
}

impl Cost {
    /// The cost per execution of what happened between `before` and `after`.
    fn between(before: &Reading, after: &Reading, n: usize) -> Cost {
        let per = |v: u64| Some(v as f64 / n as f64);
        match (before, after) {
            (Reading::Sqlite(b), Reading::Sqlite(a)) => Cost {
                writer_us: Some(a.busy.saturating_sub(b.busy).as_secs_f64() * 1e6 / n as f64),
                write_txns: per(a.transactions - b.transactions),
                ..Cost::default()
            },
            (Reading::Postgres(b), Reading::Postgres(a)) => {
                let d = a.since(b);
                Cost {
                    inserted: per(d.inserted),
                    updated: per(d.updated),
                    hot_updated: per(d.hot_updated),
                    deleted: per(d.deleted),
                    wal_bytes: per(d.wal_bytes),
                    txns: per(d.transactions),
                    statements: d.statements.and_then(per),
                    sent: per(d.sent),
                    ..Cost::default()
                }
            }
            _ => Cost::default(),
        }
    }
}

struct Fresh {
    store: Arc<dyn Store>,
    meter: Meter,
    cleanup: Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()>>,
}

async fn fresh(args: &BenchArgs) -> Result<Fresh, Box<dyn std::error::Error>> {
    match args.store {
        StoreKind::Sqlite => {
            let dir = std::env::temp_dir().join(format!("courier-bench-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir)?;
            let store = SqliteStore::open(SqliteOptions::file(dir.join("bench.db"))).await?;
            store.init().await?;
            let handle = store.clone();
            Ok(Fresh {
                meter: Meter::Sqlite(store.clone()),
                store: Arc::new(store),
                cleanup: Box::new(move || {
                    Box::pin(async move {
                        handle.close().await;
                        let _ = std::fs::remove_dir_all(dir);
                    })
                }),
            })
        }
        StoreKind::Postgres => {
            let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
            let store =
                PostgresStore::connect(PostgresOptions::new(args.dsn.clone()).schema(schema).pool_size(16)).await?;
            store.init().await?;
            let handle = store.clone();
            Ok(Fresh {
                meter: Meter::Postgres(store.clone()),
                store: Arc::new(store),
                cleanup: Box::new(move || {
                    Box::pin(async move {
                        let _ = handle.drop_schema().await;
                    })
                }),
            })
        }
    }
}

fn worker(args: &BenchArgs) -> WorkerOptions {
    let mut options = WorkerOptions::default()
        .max_concurrency(args.concurrency)
        .poll(PollBackoff {
            min: Duration::from_millis(5),
            max: Duration::from_millis(100),
            factor: 2.0,
        });
    options.claim_batch = args.claim_batch;
    options
}

fn node(store: Arc<dyn Store>, worker: Option<WorkerOptions>) -> courier_runtime::CourierBuilder {
    let mut builder = Courier::builder()
        .store(store)
        .activity("echo", |_ctx, v: Value| async move { Ok::<_, TaskError>(v) })
        .orchestrator("fan", |ctx: OrchestratorContext, n: u64| async move {
            let out: Vec<Value> = ctx.map("echo", 0..n).await?;
            Ok::<_, TaskError>(out.len())
        });
    if let Some(worker) = worker {
        builder = builder.worker(worker);
    }
    builder
}

async fn all_executions(store: &Arc<dyn Store>, n: usize) -> Result<Vec<ExecutionRecord>, Box<dyn std::error::Error>> {
    let mut out = Vec::with_capacity(n);
    let page = 20_000u32;
    let mut offset = 0;
    loop {
        let got = store
            .list_executions(&ExecutionFilter {
                limit: page,
                offset,
                ..ExecutionFilter::default()
            })
            .await?;
        let full = got.len() as u32 == page;
        out.extend(got);
        offset += page;
        if !full {
            return Ok(out);
        }
    }
}

async fn independent(args: &BenchArgs) -> Result<Run, Box<dyn std::error::Error>> {
    let fresh = fresh(args).await?;
    let client = node(fresh.store.clone(), None).start().await?;
    let batch: Vec<_> = (0..args.n)
        .map(|i| client.new_execution("echo", json!(i), &DispatchOptions::default()))
        .collect();
    let before = fresh.meter.read().await?;
    let t = Instant::now();
    client.dispatch_many(batch).await?;
    let dispatch_secs = t.elapsed().as_secs_f64();
    fresh.store.analyze().await?;

    let worker_node = node(fresh.store.clone(), Some(worker(args))).start().await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while (fresh.store.count_executions(Some(ExecutionState::Completed)).await? as usize) < args.n {
        if Instant::now() > deadline {
            return Err("the run did not finish within 10 minutes".into());
        }
        // Only for noticing the end (the figure comes from the store's timestamps);
        // rare, because counting by state is a scan on Postgres.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    worker_node.shutdown().await?;
    let cost = Cost::between(&before, &fresh.meter.settled().await?, args.n);
    let executions = all_executions(&fresh.store, args.n).await?;
    let first = executions.iter().filter_map(|e| e.started_at).min().ok_or("no start")?;
    let last = executions
        .iter()
        .filter_map(|e| e.completed_at)
        .max()
        .ok_or("no completion")?;
    let secs = (last - first).to_std()?.as_secs_f64();
    (fresh.cleanup)().await;
    Ok(Run {
        per_sec: Some(args.n as f64 / secs),
        dispatch_per_sec: Some(args.n as f64 / dispatch_secs),
        p50_ms: None,
        p99_ms: None,
        cost: Some(cost),
    })
}

async fn fanout(args: &BenchArgs) -> Result<Run, Box<dyn std::error::Error>> {
    let fresh = fresh(args).await?;
    let courier = node(fresh.store.clone(), Some(worker(args))).start().await?;
    let before = fresh.meter.read().await?;
    let id = courier.dispatch("fan", args.n as u64).await?;
    let done = courier.wait_for(id, Some(Duration::from_secs(1800))).await?;
    if done.state != ExecutionState::Completed {
        return Err(format!("fan-out ended {}: {:?}", done.state, done.error).into());
    }
    courier.shutdown().await?;
    let cost = Cost::between(&before, &fresh.meter.settled().await?, args.n);
    let secs = (done.completed_at.ok_or("no completion")? - done.started_at.ok_or("no start")?)
        .to_std()?
        .as_secs_f64();
    (fresh.cleanup)().await;
    Ok(Run {
        per_sec: Some(args.n as f64 / secs),
        dispatch_per_sec: None,
        p50_ms: None,
        p99_ms: None,
        cost: Some(cost),
    })
}

async fn latency(args: &BenchArgs) -> Result<Run, Box<dyn std::error::Error>> {
    let fresh = fresh(args).await?;
    let courier = node(fresh.store.clone(), Some(worker(args))).start().await?;
    for i in 0..20 {
        let id = courier.dispatch("echo", i).await?;
        courier.wait_for(id, Some(Duration::from_secs(10))).await?;
    }
    let mut samples = Vec::with_capacity(args.n);
    for i in 0..args.n {
        let t = Instant::now();
        let id = courier.dispatch("echo", i).await?;
        courier.wait_for(id, Some(Duration::from_secs(10))).await?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    courier.shutdown().await?;
    (fresh.cleanup)().await;
    samples.sort_by(f64::total_cmp);
    Ok(Run {
        per_sec: None,
        dispatch_per_sec: None,
        p50_ms: Some(percentile(&samples, 0.50)),
        p99_ms: Some(percentile(&samples, 0.99)),
        cost: None,
    })
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

fn line(args: &BenchArgs, run: &Run, extra: Value) -> Value {
    let round = |v: Option<f64>| v.map(|v| (v * 100.0).round() / 100.0);
    let mut out = json!({
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "store": format!("{:?}", args.store).to_lowercase(),
        "n": args.n,
        "per_sec": round(run.per_sec),
        "p50_ms": round(run.p50_ms),
        "p99_ms": round(run.p99_ms),
    });
    if let Some(d) = run.dispatch_per_sec {
        out["dispatch_per_sec"] = json!(round(Some(d)));
    }
    if let Some(c) = run.cost {
        if c.writer_us.is_some() {
            out["writer_us_per_exec"] = json!(round(c.writer_us));
            // A group commit carries hundreds of executions: two decimals
            // would print 0.
            out["write_txns_per_exec"] = json!(c.write_txns.map(|v| (v * 10_000.0).round() / 10_000.0));
        }
        if c.wal_bytes.is_some() {
            out["rows_per_exec"] = json!({
                "inserted": round(c.inserted),
                "updated": round(c.updated),
                "hot_updated": round(c.hot_updated),
                "deleted": round(c.deleted),
            });
            out["wal_bytes_per_exec"] = json!(round(c.wal_bytes));
            out["txns_per_exec"] = json!(c.txns.map(|v| (v * 10_000.0).round() / 10_000.0));
            out["statements_per_exec"] = match c.statements {
                Some(v) => json!((v * 10_000.0).round() / 10_000.0),
                None => json!("pg_stat_statements not loaded"),
            };
            out["statements_sent_per_exec"] = json!(c.sent.map(|v| (v * 10_000.0).round() / 10_000.0));
        }
    }
    if let (Value::Object(o), Value::Object(e)) = (&mut out, extra) {
        o.extend(e);
    }
    out
}

/// Runs the bench and prints its figures.
pub async fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut runs = Vec::new();
    for i in 0..args.runs.max(1) {
        let run = match args.scenario {
            Scenario::Independent => independent(&args).await?,
            Scenario::Fanout => fanout(&args).await?,
            Scenario::Latency => latency(&args).await?,
        };
        println!("{}", line(&args, &run, json!({"run": i + 1})));
        runs.push(run);
    }
    if runs.len() > 1 {
        let pick = |f: fn(&Run) -> Option<f64>| median(&mut runs.iter().filter_map(f).collect::<Vec<_>>());
        let cost = |f: fn(&Cost) -> Option<f64>| {
            median(
                &mut runs
                    .iter()
                    .filter_map(|r| r.cost.as_ref().and_then(f))
                    .collect::<Vec<_>>(),
            )
        };
        let summary = Run {
            per_sec: pick(|r| r.per_sec),
            dispatch_per_sec: pick(|r| r.dispatch_per_sec),
            p50_ms: pick(|r| r.p50_ms),
            p99_ms: pick(|r| r.p99_ms),
            cost: runs.iter().any(|r| r.cost.is_some()).then(|| Cost {
                writer_us: cost(|c| c.writer_us),
                write_txns: cost(|c| c.write_txns),
                inserted: cost(|c| c.inserted),
                updated: cost(|c| c.updated),
                hot_updated: cost(|c| c.hot_updated),
                deleted: cost(|c| c.deleted),
                wal_bytes: cost(|c| c.wal_bytes),
                txns: cost(|c| c.txns),
                statements: cost(|c| c.statements),
                sent: cost(|c| c.sent),
            }),
        };
        println!("{}", line(&args, &summary, json!({"median_of": runs.len()})));
    }
    Ok(())
}
