//! Notifications-for-people bench: 10,000 notification streams on one node, each
//! the session of one of 1,000 users. Measures send → SSE delivery latency
//! (p50/p99) for broadcasts (every stream) and for user-scoped sends (the ten
//! sessions of one user), the server's resident memory per idle stream (all
//! streams over the idle node, and the second 5,000 over the first: what one
//! more stream costs), and
//! sends per second through `POST /v1/notifications`. Prints one JSON line.
//!
//!     cargo build --release -p courier-cli && cargo bench --bench notifications
//!
//! The server runs as its own process (`COURIER_BIN`, default
//! target/release/courier) so its memory is measured alone; the clients are plain
//! TCP connections in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use courier::http::notifications::token::{self, Claims};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

mod support;
use support::Server;

const STREAMS: usize = 10_000;
const USERS: usize = 1_000;
const BROADCASTS: usize = 20;
const USER_SENDS: usize = 200;
const THROUGHPUT_SENDS: usize = 4_000;
const SENDERS: usize = 8;
const SECRET: &str = "bench-secret";

type Seen = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

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

/// Sends `body` to `/v1/notifications` on a kept-alive connection; the status.
async fn send(conn: &mut BufReader<TcpStream>, body: &str) -> u16 {
    let request = format!(
        "POST /v1/notifications HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(request.as_bytes()).await.expect("send");
    let mut status = 0;
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await.expect("answer") == 0 {
            return status;
        }
        if status == 0 {
            status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        } else if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        } else if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await.expect("answer body");
    status
}

async fn connection(port: u16) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(("127.0.0.1", port)).await.expect("connect"))
}

/// One browser's stream: records when each marked notification arrives.
async fn stream(port: u16, token: String, seen: Seen) -> Result<(), std::io::Error> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(
        format!(
            "GET /notifications/stream?token={token} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if let Some(data) = line.strip_prefix("data: ")
            && let Some(start) = data.find("\"marker\":\"")
        {
            let rest = &data[start + 10..];
            let marker = rest[..rest.find('"').unwrap_or(rest.len())].to_string();
            seen.lock()
                .expect("seen")
                .entry(marker)
                .or_default()
                .push(Instant::now());
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Sends one marked notification and waits until `expected` streams have it;
/// the latencies in ms and how many never arrived.
async fn deliver(
    conn: &mut BufReader<TcpStream>,
    seen: &Seen,
    body: String,
    marker: &str,
    expected: usize,
) -> (Vec<f64>, usize) {
    let sent = Instant::now();
    let status = send(conn, &body).await;
    assert!(status == 201, "send answered {status}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().expect("seen").get(marker).map_or(0, Vec::len) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let arrivals = seen.lock().expect("seen").remove(marker).unwrap_or_default();
    let missed = expected.saturating_sub(arrivals.len());
    (
        arrivals.iter().map(|t| (*t - sent).as_secs_f64() * 1000.0).collect(),
        missed,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let dir = std::env::temp_dir().join(format!("courier-notifications-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let server = Server::start(&[
        ("COURIER_STORE_URL", dir.join("bench.db").display().to_string()),
        ("COURIER_WORKER_ENABLED", "false".into()),
        ("COURIER_NOTIFICATIONS_TOKEN_SECRET", SECRET.into()),
    ]);
    let (port, pid) = (server.port, server.pid());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = rss_kib(pid);

    let seen: Seen = Arc::default();
    let connecting = Instant::now();
    let mut half_rss = 0;
    for batch in 0..(STREAMS / 500) {
        if batch == STREAMS / 1000 {
            // Half connected: what the second half adds is what a stream costs,
            // without the node's one-off growth (thread caches, pools, the
            // store's page cache) that the first streams also pay for.
            tokio::time::sleep(Duration::from_secs(3)).await;
            half_rss = rss_kib(pid);
        }
        for i in batch * 500..(batch + 1) * 500 {
            let claims = Claims {
                sid: format!("s{i}"),
                sub: Some(format!("u{}", i % USERS)),
                exp: token::expiry_in(Duration::from_secs(3600)),
                sources: Vec::new(),
            };
            let token = token::mint(SECRET, &claims).expect("a token");
            let seen = seen.clone();
            tokio::spawn(async move {
                if let Err(e) = stream(port, token, seen).await {
                    eprintln!("stream error: {e}");
                }
            });
        }
        // Stay under the listen backlog.
        tokio::time::sleep(Duration::from_millis(if batch % 4 == 3 { 200 } else { 50 })).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let connect_secs = connecting.elapsed().as_secs_f64();
    let connected_rss = rss_kib(pid);

    let mut conn = connection(port).await;
    let (mut broadcast, mut broadcast_missed) = (Vec::new(), 0);
    for i in 0..BROADCASTS {
        let marker = format!("b{i}");
        let body = format!(r#"{{"target":"broadcast","type":"generic","payload":{{"marker":"{marker}"}}}}"#);
        let (latencies, missed) = deliver(&mut conn, &seen, body, &marker, STREAMS).await;
        broadcast.extend(latencies);
        broadcast_missed += missed;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut user, mut user_missed) = (Vec::new(), 0);
    for i in 0..USER_SENDS {
        let marker = format!("u{i}");
        let body = format!(
            r#"{{"target":"user","user_id":"u{}","type":"generic","payload":{{"marker":"{marker}"}}}}"#,
            (i * 37) % USERS
        );
        let (latencies, missed) = deliver(&mut conn, &seen, body, &marker, STREAMS / USERS).await;
        user.extend(latencies);
        user_missed += missed;
    }

    // Throughput: user-scoped queued sends from several connections at once.
    let started = Instant::now();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        senders.push(tokio::spawn(async move {
            let mut conn = connection(port).await;
            for i in 0..THROUGHPUT_SENDS / SENDERS {
                let body = format!(
                    r#"{{"target":"user","user_id":"u{}","type":"generic","payload":{{"n":{i}}}}}"#,
                    (s * 131 + i) % USERS
                );
                assert_eq!(send(&mut conn, &body).await, 201);
            }
        }));
    }
    for sender in senders {
        sender.await.expect("a sender");
    }
    let sends_per_sec = THROUGHPUT_SENDS as f64 / started.elapsed().as_secs_f64();

    broadcast.sort_by(f64::total_cmp);
    user.sort_by(f64::total_cmp);
    let per_stream = connected_rss.saturating_sub(baseline) as f64 / STREAMS as f64;
    let marginal = connected_rss.saturating_sub(half_rss) as f64 / (STREAMS - STREAMS / 2) as f64;
    println!(
        "{}",
        serde_json::json!({
            "bench": "notification_streams",
            "streams": STREAMS,
            "users": USERS,
            "broadcast_sends": BROADCASTS,
            "broadcast_deliveries": broadcast.len(),
            "broadcast_missed": broadcast_missed,
            "broadcast_p50_ms": round2(percentile(&broadcast, 0.50)),
            "broadcast_p99_ms": round2(percentile(&broadcast, 0.99)),
            "user_sends": USER_SENDS,
            "user_deliveries": user.len(),
            "user_missed": user_missed,
            "user_p50_ms": round2(percentile(&user, 0.50)),
            "user_p99_ms": round2(percentile(&user, 0.99)),
            "sends_per_sec": sends_per_sec.round(),
            "server_rss_baseline_kib": baseline,
            "server_rss_connected_kib": connected_rss,
            "rss_per_stream_kib": round2(per_stream),
            "rss_per_added_stream_kib": round2(marginal),
            "connect_secs": round2(connect_secs),
        })
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
