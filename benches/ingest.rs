//! Ingestion bench: messages per second end to end, from an input (Redis
//! Streams or TCP) through one `courier serve` node to a provider's receiver
//! (a webhook receiver in this process, or Debian's aiosmtpd on loopback).
//! Prints one JSON line per (input, provider).
//!
//!     cargo build --release -p courier-cli && cargo bench --bench ingest
//!
//! Each message has one recipient, so each is one execution of
//! `courier.ingest.deliver` and one provider activity. `per_sec` = messages
//! received / (first message sent → last one received). For the stream input,
//! the N entries are written with pipelined `XADD`s while the node consumes;
//! for TCP, 16 connections send newline-delimited messages and wait for each
//! "queued" answer (a "queue full" answer is resent after its hint).
//!
//! Settings: `COURIER_BENCH_INGEST_N` (default 5000), `COURIER_BENCH_INGEST`
//! (default `stream:webhook,tcp:webhook,stream:email,tcp:email`), `COURIER_BIN`
//! (default target/release/courier), `COURIER_TEST_REDIS_URL`. The store is
//! SQLite on a file (`COURIER_BENCH_STORE` to change it).

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

mod support;
use support::{Server, free_port, read_message};

const CONNECTIONS: usize = 16;

/// What the receivers saw: distinct message numbers and when the last arrived.
#[derive(Default)]
struct Seen {
    numbers: HashSet<u64>,
    last: Option<Instant>,
}

/// An HTTP receiver answering 200, recording `vars.n` of each webhook body.
async fn receiver(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            while let Ok(Some((_, body))) = read_message(&mut reader).await {
                if let Some(n) = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|b| b["vars"]["n"].as_u64())
                {
                    let mut seen = seen.lock().unwrap();
                    seen.numbers.insert(n);
                    seen.last = Some(Instant::now());
                }
                if reader
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Debian's aiosmtpd, with the tests' sink script.
struct Smtp {
    child: Child,
    port: u16,
    out: std::path::PathBuf,
}

impl Smtp {
    fn start(dir: &Path) -> Smtp {
        let out = dir.join("smtp.jsonl");
        let mut child = Command::new("/usr/bin/python3")
            .arg("crates/courier-ingest/tests/support/smtp_sink.py")
            .args(["--port", "0", "--out"])
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 with python3-aiosmtpd");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .expect("the sink's port");
        Smtp { child, port, out }
    }

    /// Messages received so far (one JSON line each).
    fn received(&self) -> usize {
        std::fs::read_to_string(&self.out)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn message(provider: &str, n: usize) -> serde_json::Value {
    let recipient = match provider {
        "email" => serde_json::json!([format!("user{n}@example.com")]),
        _ => serde_json::json!([{"chat_id": n}]),
    };
    serde_json::json!({"provider": provider, "recipient": recipient, "subject": "bench", "message": "message {{ n }}", "n": n})
}

async fn send_tcp(addr: String, provider: String, numbers: Vec<usize>) {
    let socket = TcpStream::connect(&addr).await.unwrap();
    let (reader, mut writer) = socket.into_split();
    let mut lines = BufReader::new(reader).lines();
    let mut pending = numbers;
    while !pending.is_empty() {
        let mut out = Vec::new();
        for n in &pending {
            out.extend(serde_json::to_vec(&message(&provider, *n)).unwrap());
            out.push(b'\n');
        }
        writer.write_all(&out).await.unwrap();
        let mut again = Vec::new();
        let mut wait_ms = 0;
        for n in &pending {
            let line = lines.next_line().await.unwrap().expect("an answer per message");
            let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
            if answer["status"] != "queued" {
                assert_eq!(answer["error"], "queue full", "{answer}");
                wait_ms = wait_ms.max(answer["retry_after_ms"].as_u64().unwrap_or(10));
                again.push(*n);
            }
        }
        if !again.is_empty() {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        }
        pending = again;
    }
}

async fn run(input: &str, provider: &str, n: usize) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!(
        "courier-ingest-bench-{}-{input}-{provider}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let receiving = tokio::spawn(receiver(listener, seen.clone()));
    let smtp = (provider == "email").then(|| Smtp::start(&dir));
    let config = dir.join("courier.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest.providers.webhook]\nurl = \"{hook}\"\nsecret = \"bench\"\n[ingest.providers.email]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"bench@example.com\"\nconcurrency = 32\n",
            smtp.as_ref().map_or(9, |s| s.port)
        ),
    )
    .unwrap();
    let redis_url = std::env::var("COURIER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let stream = format!("courier-bench-{}", uuid::Uuid::new_v4().simple());
    let tcp = format!("127.0.0.1:{}", free_port());
    let store = std::env::var("COURIER_BENCH_STORE").unwrap_or_else(|_| dir.join("bench.db").display().to_string());
    let mut env = vec![
        ("COURIER_CONFIG", config.display().to_string()),
        ("COURIER_STORE_URL", store),
        ("COURIER_INGEST_TCP_ADDR", tcp.clone()),
    ];
    if input == "stream" {
        env.push(("COURIER_INGEST_REDIS_URL", redis_url.clone()));
        env.push(("COURIER_INGEST_STREAM", stream.clone()));
        env.push(("COURIER_INGEST_CHANNEL", "off".into()));
    }
    let server = Server::start(&env);
    // The TCP input listens once the node is up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&tcp).await.is_err() {
        assert!(Instant::now() < deadline, "the TCP input did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    match input {
        "stream" => {
            let mut redis = redis::Client::open(redis_url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
                let mut pipe = redis::pipe();
                for i in chunk {
                    pipe.cmd("XADD")
                        .arg(&stream)
                        .arg("*")
                        .arg("message")
                        .arg(message(provider, *i).to_string())
                        .ignore();
                }
                let () = pipe.query_async(&mut redis).await.unwrap();
            }
        }
        "tcp" => {
            let senders: Vec<_> = (0..CONNECTIONS)
                .map(|c| {
                    let numbers: Vec<usize> = (0..n).filter(|i| i % CONNECTIONS == c).collect();
                    tokio::spawn(send_tcp(tcp.clone(), provider.to_string(), numbers))
                })
                .collect();
            for s in senders {
                s.await.unwrap();
            }
        }
        other => panic!("unknown input {other:?} (stream or tcp)"),
    }
    let sent = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    let received = loop {
        let received = match &smtp {
            Some(smtp) => smtp.received(),
            None => seen.lock().unwrap().numbers.len(),
        };
        if received >= n || Instant::now() > deadline {
            break received;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elapsed = match &smtp {
        Some(_) => started.elapsed(),
        None => seen.lock().unwrap().last.map_or(started.elapsed(), |t| t - started),
    };
    drop(server);
    receiving.abort();
    if input == "stream" {
        let mut redis = redis::Client::open(redis_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: Result<(), _> = redis::cmd("DEL").arg(&stream).query_async(&mut redis).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    serde_json::json!({
        "bench": "ingest",
        "input": input,
        "provider": provider,
        "n": n,
        "delivered": received,
        "per_sec": (received as f64 / elapsed.as_secs_f64()).round(),
        "accepted_per_sec": (n as f64 / sent.as_secs_f64()).round(),
        "secs": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let n = std::env::var("COURIER_BENCH_INGEST_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let runs = std::env::var("COURIER_BENCH_INGEST")
        .unwrap_or_else(|_| "stream:webhook,tcp:webhook,stream:email,tcp:email".into());
    for run_spec in runs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (input, provider) = run_spec.split_once(':').expect("input:provider");
        println!("{}", run(input, provider, n).await);
    }
}
