//! Schedules bench: many schedules firing every second on one `courier serve`
//! node; how late each slot fired and whether any was lost or fired twice.
//! Prints one JSON line per store.
//!
//!     cargo build --release -p courier-cli && cargo bench --bench schedules
//!
//! N schedules (`every: 1s`, overlap `allow`, of a function nobody runs, so
//! only the firing is measured) are created over HTTP; after D seconds every
//! schedule's runs are read. `lateness_ms` is each fired slot's
//! `recorded_at - slot` (both the store's clock): how long after its instant
//! the slot's execution was committed. `missing` counts slots between a
//! schedule's first and last fired slot that have no run; `duplicates` slots
//! with more than one. The server runs as its own process (`COURIER_BIN`,
//! default target/release/courier); Postgres (`COURIER_TEST_POSTGRES_URL`) in
//! a database it creates and drops.
//!
//! Settings: `COURIER_BENCH_SCHEDULES_N` (default 1000), `COURIER_BENCH_SCHEDULES_SECONDS`
//! (default 10), `COURIER_BENCH_STORES` (default `sqlite,postgres`).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

mod support;
use support::{Api, BenchStore, Server};

const CONNECTIONS: usize = 8;

async fn run(store: &str, n: usize, seconds: u64) -> serde_json::Value {
    let bench_store = BenchStore::create("schedule", store);
    let server = Server::start(&[("COURIER_STORE_URL", bench_store.url.clone())]);
    let port = server.port;

    let per_connection = n.div_ceil(CONNECTIONS);
    let mut creators = Vec::new();
    for c in 0..CONNECTIONS {
        creators.push(tokio::spawn(async move {
            let mut api = Api::connect(port).await;
            for i in (c * per_connection..(c + 1) * per_connection).take_while(|i| *i < n) {
                let body = format!(
                    r#"{{"id":"bench-{i:05}","function":"bench.scheduled","every":"1s","overlap":"allow","catchup_window":"1m"}}"#
                );
                let (head, body) = api.post("/v1/schedules", &body).await;
                assert!(head.starts_with("HTTP/1.1 201"), "{head}{}", String::from_utf8_lossy(&body));
            }
        }));
    }
    for c in creators {
        c.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;

    let mut lateness: Vec<i64> = Vec::new();
    let (mut missing, mut duplicates, mut fired) = (0u64, 0u64, 0u64);
    let mut api = Api::connect(port).await;
    for i in 0..n {
        let (head, body) = api.get(&format!("/v1/schedules/bench-{i:05}/runs?limit=1000")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut slots: BTreeMap<DateTime<Utc>, u32> = BTreeMap::new();
        for run in body["runs"].as_array().unwrap() {
            if run["outcome"] != "fired" {
                continue;
            }
            let slot: DateTime<Utc> = run["slot"].as_str().unwrap().parse().unwrap();
            let recorded: DateTime<Utc> = run["recorded_at"].as_str().unwrap().parse().unwrap();
            lateness.push((recorded - slot).num_milliseconds());
            *slots.entry(slot).or_default() += 1;
            fired += 1;
        }
        duplicates += slots.values().filter(|c| **c > 1).count() as u64;
        if let (Some(first), Some(last)) = (slots.keys().next(), slots.keys().last()) {
            let expected = (*last - *first).num_seconds() as u64 + 1;
            missing += expected.saturating_sub(slots.len() as u64);
        }
    }
    drop(api);
    drop(server);
    drop(bench_store);
    lateness.sort_unstable();
    let at = |q: f64| {
        lateness
            .get(((lateness.len() as f64 * q).ceil() as usize).clamp(1, lateness.len().max(1)) - 1)
            .copied()
            .unwrap_or(0)
    };
    serde_json::json!({
        "bench": "schedules",
        "store": store,
        "schedules": n,
        "seconds": seconds,
        "slots_fired": fired,
        "fired_per_sec": fired as f64 / seconds as f64,
        "missing": missing,
        "duplicates": duplicates,
        "lateness_ms": {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": lateness.last().copied().unwrap_or(0)},
    })
}

#[tokio::main]
async fn main() {
    let n = std::env::var("COURIER_BENCH_SCHEDULES_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seconds = std::env::var("COURIER_BENCH_SCHEDULES_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let stores = std::env::var("COURIER_BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    for store in stores.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        println!("{}", run(store, n, seconds).await);
    }
}
