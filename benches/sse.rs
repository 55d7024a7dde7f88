//! SSE fan-out bench: 10,000 concurrent SSE clients on one node; broadcast
//! delivery latency (p50/p99, from dispatch to each client's receipt) and the
//! server's resident memory per connection. Prints one JSON line.
//!
//!     cargo build --release -p courier-cli && cargo bench --bench sse
//!
//! The server runs as its own process (`COURIER_BIN`, default
//! target/release/courier) so its memory is measured alone; the clients are
//! plain TCP connections in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

mod support;
use support::Server;

const CLIENTS: usize = 10_000;
const EVENTS: usize = 20;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn post(port: u16, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    let mut reader = BufReader::new(stream);
    while reader.read_line(&mut out).await.unwrap_or(0) > 0 {}
    out
}

/// Opens one SSE connection and reports each marker it sees: (marker, when).
async fn client(port: u16, seen: Arc<Mutex<HashMap<String, Vec<Instant>>>>) -> Result<(), std::io::Error> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /v1/events/stream?type=execution.created HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if let Some(data) = line.strip_prefix("data: ")
            && let Some(start) = data.find("\"function\":\"marker_")
        {
            let rest = &data[start + 12..];
            let marker = rest[..rest.find('"').unwrap_or(rest.len())].to_string();
            seen.lock().unwrap().entry(marker).or_default().push(Instant::now());
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let dir = std::env::temp_dir().join(format!("courier-sse-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::start(&[
        ("COURIER_STORE_URL", dir.join("bench.db").display().to_string()),
        ("COURIER_WORKER_ENABLED", "false".into()),
    ]);
    let (port, pid) = (server.port, server.pid());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = rss_kib(pid);

    let seen: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let connecting = Instant::now();
    for batch in 0..(CLIENTS / 500) {
        for _ in 0..500 {
            let seen = seen.clone();
            tokio::spawn(async move {
                if let Err(e) = client(port, seen).await {
                    eprintln!("client error: {e}");
                }
            });
        }
        // Stay under the listen backlog.
        tokio::time::sleep(Duration::from_millis(if batch % 4 == 3 { 200 } else { 50 })).await;
    }
    // Let every connection get its headers and join the tail.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let connect_secs = connecting.elapsed().as_secs_f64();
    let connected_rss = rss_kib(pid);

    let mut latencies = Vec::new();
    let mut incomplete = 0;
    for i in 0..EVENTS {
        let marker = format!("marker_{i}");
        let sent = Instant::now();
        post(
            port,
            "/v1/executions",
            &format!("{{\"function\":\"{marker}\",\"queue\":\"bench\"}}"),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let count = seen.lock().unwrap().get(&marker).map_or(0, Vec::len);
            if count >= CLIENTS || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let arrivals = seen.lock().unwrap().remove(&marker).unwrap_or_default();
        incomplete += CLIENTS.saturating_sub(arrivals.len());
        latencies.extend(arrivals.iter().map(|t| (*t - sent).as_secs_f64() * 1000.0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    latencies.sort_by(f64::total_cmp);
    let per_connection = (connected_rss.saturating_sub(baseline)) as f64 / CLIENTS as f64;
    println!(
        "{}",
        serde_json::json!({
            "bench": "sse_broadcast",
            "clients": CLIENTS,
            "events": EVENTS,
            "deliveries": latencies.len(),
            "missed": incomplete,
            "p50_ms": (percentile(&latencies, 0.50) * 100.0).round() / 100.0,
            "p99_ms": (percentile(&latencies, 0.99) * 100.0).round() / 100.0,
            "server_rss_baseline_kib": baseline,
            "server_rss_connected_kib": connected_rss,
            "rss_per_connection_kib": (per_connection * 100.0).round() / 100.0,
            "connect_secs": (connect_secs * 100.0).round() / 100.0,
        })
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
