//! Webhook delivery bench: deliveries per second from one `courier serve` node to
//! a local receiver. Prints one JSON line per store.
//!
//!     cargo build --release -p courier-cli && cargo bench --bench webhooks
//!
//! One webhook listens for `execution.created`. First a node without workers
//! takes N dispatches of a function nobody runs (each appends one matching
//! event, so N deliveries are queued); then a node with workers starts on the
//! same store and drains them to a receiver in this process that answers 200.
//! `per_sec` is deliveries received / (last receipt - node start): each one a
//! durable execution claimed, signed, POSTed, its attempt recorded, completed. The server runs as its own process (`COURIER_BIN`, default
//! target/release/courier). Postgres (`COURIER_TEST_POSTGRES_URL`) runs in a
//! throwaway schema-free database it creates and drops.
//!
//! Settings: `COURIER_BENCH_WEBHOOKS_N` (default 5000), `COURIER_BENCH_STORES`
//! (default `sqlite,postgres`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

mod support;
use support::{Api, BenchStore, Server, read_message};

const CONNECTIONS: usize = 16;

/// A receiver that answers 200 to everything and counts signed deliveries.
async fn receiver(listener: TcpListener, received: Arc<AtomicU64>, last: Arc<std::sync::Mutex<Option<Instant>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let received = received.clone();
        let last = last.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            while let Ok(Some((head, _))) = read_message(&mut reader).await {
                if head.to_ascii_lowercase().contains("webhook-signature:") {
                    received.fetch_add(1, Ordering::Relaxed);
                    *last.lock().unwrap() = Some(Instant::now());
                }
                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if reader.get_mut().write_all(ok).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Deliveries waiting on the webhook queue (asked on a connection of its own:
/// a kept-alive one may have idled out while the dispatches ran).
async fn queued(port: u16) -> u64 {
    let (_, body) = Api::connect(port).await.get("/v1/queues").await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["queue"] == "courier.webhooks")
        .map(|q| q["ready"].as_u64().unwrap_or(0))
        .sum()
}

async fn run(store: &str, n: usize) -> serde_json::Value {
    let bench_store = BenchStore::create("webhook", store);
    let store_url = bench_store.url.clone();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(None));
    let receiving = tokio::spawn(receiver(listener, received.clone(), last.clone()));

    // Phase 1, no workers: the webhook, N matching events, N deliveries queued.
    let server = Server::start(&[
        ("COURIER_STORE_URL", store_url.clone()),
        ("COURIER_WORKER_ENABLED", "false".into()),
    ]);
    let port = server.port;
    let mut api = Api::connect(port).await;
    let (head, body) = api
        .post(
            "/v1/webhooks",
            &format!(r#"{{"url":"http://127.0.0.1:{receiver_port}/hook","event_types":["execution.created"]}}"#),
        )
        .await;
    assert!(
        head.starts_with("HTTP/1.1 201"),
        "{head}{}",
        String::from_utf8_lossy(&body)
    );
    let per_connection = n / CONNECTIONS;
    let total = per_connection * CONNECTIONS;
    let mut dispatchers = Vec::new();
    for c in 0..CONNECTIONS {
        dispatchers.push(tokio::spawn(async move {
            let mut api = Api::connect(port).await;
            for i in 0..per_connection {
                let (head, _) = api
                    .post(
                        "/v1/executions",
                        &format!(r#"{{"function":"bench.nobody_{c}_{i}","queue":"bench.parked"}}"#),
                    )
                    .await;
                assert!(head.starts_with("HTTP/1.1 201"), "{head}");
            }
        }));
    }
    for d in dispatchers {
        d.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while queued(port).await < total as u64 {
        assert!(Instant::now() < deadline, "deliveries were not all queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(api);
    drop(server);

    // Phase 2: a node with workers drains the queue; the clock runs from its start.
    let started = Instant::now();
    let server = Server::start(&[("COURIER_STORE_URL", store_url.clone())]);
    let deadline = Instant::now() + Duration::from_secs(300);
    while (received.load(Ordering::Relaxed) as usize) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = received.load(Ordering::Relaxed) as usize;
    let elapsed = last.lock().unwrap().map_or(started.elapsed(), |t| t - started);
    drop(server);
    receiving.abort();
    drop(bench_store);
    serde_json::json!({
        "bench": "webhook_deliveries",
        "store": store,
        "n": total,
        "delivered": delivered,
        "per_sec": (delivered as f64 / elapsed.as_secs_f64()).round(),
        "secs": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let n = std::env::var("COURIER_BENCH_WEBHOOKS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let stores = std::env::var("COURIER_BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    for store in stores.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        println!("{}", run(store, n).await);
    }
}
