//! Ingestion end to end, on real `courier serve` processes: messages in over
//! TCP, HTTP, Redis Streams and Redis pub/sub; out through a real SMTP server
//! and real HTTP receivers; a flood past the queue; a consuming node killed
//! with `kill -9` mid-stream; the Redis master killed under a node that reads
//! through Redis Sentinel. Bounded in time, loopback only.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cluster::*;
use support::http::*;
use support::receivers::{Receiver, SmtpSink};
use support::sentinel::{Passwords, SentinelSet};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn redis_url() -> String {
    std::env::var("COURIER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis must be reachable at {} ({e}); scripts/test starts it",
                redis_url()
            )
        })
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A config file with every provider pointed at the test's receivers.
fn config(dir: &Path, smtp_port: u16, receiver: &Receiver, extra: &str) -> String {
    let path = dir.join("courier.toml");
    let toml = format!(
        r#"
[ingest.providers.email]
smtp_url = "smtp://127.0.0.1:{smtp_port}"
from = "Courier <courier@example.com>"
retry = {{ max_attempts = 2, initial_delay = "100ms" }}
[ingest.providers.webhook]
url = "{hook}"
secret = "whsec_dGVzdA=="
concurrency = 16
[ingest.providers.slack]
webhook_url = "{slack}"
[ingest.providers.teams]
webhook_url = "{teams}"
[ingest.providers.log]
{extra}
"#,
        hook = receiver.at("/hook"),
        slack = receiver.at("/slack"),
        teams = receiver.at("/teams"),
    );
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

/// One message over TCP in the seed's framing: write, half-close, read the answer.
async fn tcp_send(addr: &str, message: &Value) -> Value {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(serde_json::to_string_pretty(message).unwrap().as_bytes())
        .await
        .unwrap();
    socket.shutdown().await.unwrap();
    let mut line = String::new();
    BufReader::new(socket).read_line(&mut line).await.unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {line:?}: {e}"))
}

/// Many messages over one connection, newline-delimited; the answers in order.
async fn tcp_send_lines(addr: &str, messages: &[Value]) -> Vec<Value> {
    let socket = TcpStream::connect(addr).await.unwrap();
    let (reader, mut writer) = socket.into_split();
    let mut out = Vec::new();
    for m in messages {
        out.extend(serde_json::to_vec(m).unwrap());
        out.push(b'\n');
    }
    writer.write_all(&out).await.unwrap();
    writer.shutdown().await.unwrap();
    let mut lines = BufReader::new(reader).lines();
    let mut answers = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        answers.push(serde_json::from_str(&line).unwrap());
    }
    answers
}

/// The sum of `name`'s samples whose labels include every one of `labels`.
async fn metric(node: &Node, name: &str, labels: &[&str]) -> f64 {
    let mut response = client().get(node.at("/metrics")).send().await.unwrap();
    let body = response.body().await.unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn result_of(node: &Node, id: &str) -> Value {
    let (status, body) = result(node, id, Duration::from_secs(60)).await;
    assert_eq!(status, 200, "result of {id}: {body}");
    body
}

#[actix_rt::test]
async fn every_input_reaches_its_provider_with_one_result_per_recipient_in_order() {
    let dir = scratch("ingest");
    let smtp = SmtpSink::start(&dir);
    let receiver = Receiver::start(Duration::ZERO).await;
    let (stream, channel) = (unique("in-stream"), unique("in-channel"));
    let tcp = format!("127.0.0.1:{}", free_port());
    let mut node = Node::spawn(
        "ingest-a",
        &dir,
        vec![
            ("COURIER_CONFIG".into(), config(&dir, smtp.port, &receiver, "")),
            ("COURIER_STORE_URL".into(), dir.join("courier.db").display().to_string()),
            ("COURIER_INGEST_TCP_ADDR".into(), tcp.clone()),
            ("COURIER_INGEST_REDIS_URL".into(), redis_url()),
            ("COURIER_INGEST_STREAM".into(), stream.clone()),
            ("COURIER_INGEST_CHANNEL".into(), channel.clone()),
        ],
    );
    node.ready().await;

    // TCP, the seed's framing: email to three recipients, the middle one refused.
    let answer = tcp_send(
        &tcp,
        &json!({
            "provider": "email",
            "recipient": [
                {"name": "Ada", "account": {"address": "ada@example.com"}},
                {"name": "Nope", "account": {"address": "reject-me@example.com"}},
                "bob@example.com"
            ],
            "subject": "Hello {{ name or address }}",
            "message": "Order {{ order }} shipped to {{ address }}.",
            "order": 42
        }),
    )
    .await;
    assert_eq!(answer["status"], "queued", "{answer}");
    let body = result_of(&node, answer["id"].as_str().unwrap()).await;
    let results = body["result"].as_array().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(results.len(), 3, "{body}");
    assert_eq!(results[0]["recipient"]["account"]["address"], "ada@example.com");
    assert_eq!(
        (
            results[0]["ok"].as_bool(),
            results[1]["ok"].as_bool(),
            results[2]["ok"].as_bool()
        ),
        (Some(true), Some(false), Some(true)),
        "{body}"
    );
    assert!(
        results[1]["detail"].as_str().unwrap().contains("550"),
        "the SMTP reply says why: {body}"
    );
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2, "one transaction per accepted recipient");
    let ada = mails
        .iter()
        .find(|m| m["rcpt_tos"][0] == "ada@example.com")
        .expect("ada's mail");
    assert_eq!(ada["parsed"]["subject"], "Hello Ada");
    assert!(
        ada["data"]
            .as_str()
            .unwrap()
            .contains("Order 42 shipped to ada@example.com.")
    );

    // HTTP: the webhook provider, two recipients, each a signed POST with its own stable id.
    let (status, accepted) = post(
        &node.at("/v1/notify"),
        &json!({"provider": "webhook", "recipient": [{"chat_id": 1}, {"chat_id": 2}], "message": "n={{ recipient.chat_id }}"}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let body = result_of(&node, accepted["id"].as_str().unwrap()).await;
    assert_eq!(body["result"].as_array().map(Vec::len), Some(2), "{body}");
    let hooks = receiver
        .wait_until(Duration::from_secs(30), "two webhook posts", |got| {
            got.iter().filter(|r| r.path == "/hook").count() >= 2
        })
        .await;
    let hooks: Vec<_> = hooks.into_iter().filter(|r| r.path == "/hook").collect();
    let ids: HashSet<_> = hooks.iter().map(|r| r.webhook_id.clone().unwrap()).collect();
    assert_eq!(ids.len(), 2, "a stable id per recipient");
    assert!(hooks.iter().any(|r| r.body["message"] == "n=1") && hooks.iter().any(|r| r.body["message"] == "n=2"));

    // Redis Stream: Slack. Pub/sub: Teams.
    let mut redis = redis().await;
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("message")
        .arg(json!({"provider": "slack", "recipient": [{"channel_id": "C1"}], "subject": "Deploy", "message": "v{{ v }} is out", "v": 3}).to_string())
        .query_async(&mut redis)
        .await
        .unwrap();
    receiver
        .wait_until(Duration::from_secs(30), "the slack post", |got| {
            got.iter().any(|r| r.path == "/slack")
        })
        .await;
    let slack = receiver.at_path("/slack");
    assert_eq!(slack[0].body["text"], "*Deploy*\nv3 is out");
    // Pub/sub is best effort: publish until the node's subscription hears it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.at_path("/teams").is_empty() {
        assert!(Instant::now() < deadline, "the teams post never arrived");
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(json!({"provider": "teams", "recipient": [{"team_id": "T"}], "message": "hello teams", "id": "teams-once"}).to_string())
            .query_async(&mut redis)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let teams = receiver.at_path("/teams");
    assert_eq!(
        teams[0].body["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );

    // A template error fails that recipient, not the message or the node.
    let (status, accepted) = post(
        &node.at("/v1/notify"),
        &json!({"provider": "log", "recipient": ["a@example.com", "b@example.com"], "message": "Hi {{ nobody.name }}"}),
    )
    .await;
    assert_eq!(status, 202);
    let body = result_of(&node, accepted["id"].as_str().unwrap()).await;
    assert_eq!(body["state"], "completed", "{body}");
    for r in body["result"].as_array().unwrap() {
        assert_eq!(r["ok"], false);
        assert!(
            r["detail"].as_str().unwrap().contains("template error in message"),
            "{r}"
        );
    }

    // Invalid messages, over each input.
    let answer = tcp_send(
        &tcp,
        &json!({"provider": "pigeon", "recipient": ["a@b.c"], "message": "x"}),
    )
    .await;
    assert_eq!(
        (answer["error"].as_str(), answer["detail"]["field"].as_str()),
        (Some("invalid message"), Some("provider")),
        "{answer}"
    );
    let answers = tcp_send_lines(
        &tcp,
        &[
            json!({"provider": "log", "recipient": ["a@b.c"], "message": "one"}),
            json!({"provider": "email", "recipient": [{"chat_id": 5}], "message": "no address"}),
            json!({"provider": "log", "recipient": ["a@b.c"], "message": "three"}),
        ],
    )
    .await;
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert_eq!(answers[0]["status"], "queued");
    assert_eq!(answers[1]["detail"]["field"], "recipient[0]", "{answers:?}");
    assert_eq!(answers[2]["status"], "queued");
    let (status, body) = post(&node.at("/v1/notify"), &json!({"provider": "log", "recipient": []})).await;
    assert_eq!(
        (status, body["detail"]["field"].as_str()),
        (400, Some("recipient")),
        "{body}"
    );
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("message")
        .arg("not json")
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("task")
        .arg("gASVpickled")
        .query_async(&mut redis)
        .await
        .unwrap();
    let dead = format!("{stream}:dead");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let len: i64 = redis::cmd("XLEN").arg(&dead).query_async(&mut redis).await.unwrap();
        if len >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "poison entries not dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg("{\"provider\": 1}")
        .query_async(&mut redis)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&node, "courier_ingest_refused_total", &["input=\"pubsub\""]).await < 1.0 {
        assert!(Instant::now() < deadline, "the invalid pub/sub message was not counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .arg(&dead)
        .query_async(&mut redis)
        .await
        .unwrap();
    node.terminate();
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_flood_past_the_queue_is_told_queue_full_and_nothing_is_lost() {
    const MESSAGES: usize = 400;
    let dir = scratch("ingest-flood");
    let smtp = SmtpSink::start(&dir);
    let receiver = Receiver::start(Duration::ZERO).await;
    let tcp = format!("127.0.0.1:{}", free_port());
    let mut node = Node::spawn(
        "ingest-flood",
        &dir,
        vec![
            ("COURIER_CONFIG".into(), config(&dir, smtp.port, &receiver, "")),
            ("COURIER_STORE_URL".into(), dir.join("courier.db").display().to_string()),
            ("COURIER_INGEST_TCP_ADDR".into(), tcp.clone()),
            ("COURIER_INGEST_QUEUE_SIZE".into(), "2".into()),
        ],
    );
    node.ready().await;
    let message = |n: usize| json!({"provider": "webhook", "recipient": [{"chat_id": n}], "message": "m", "id": format!("flood-{n}"), "n": n});
    // 40 connections at once, each sending its share newline-delimited; the
    // refused ones are sent again until taken (their `id` makes that safe).
    let mut pending: Vec<usize> = (0..MESSAGES).collect();
    let mut queue_full = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "{} messages never accepted", pending.len());
        let chunks: Vec<Vec<usize>> = pending
            .chunks(pending.len().div_ceil(40))
            .map(<[usize]>::to_vec)
            .collect();
        let sends = chunks.iter().map(|chunk| {
            let messages: Vec<Value> = chunk.iter().map(|n| message(*n)).collect();
            let tcp = tcp.clone();
            async move { tcp_send_lines(&tcp, &messages).await }
        });
        let answers = futures::future::join_all(sends).await;
        let mut again = Vec::new();
        for (chunk, answers) in chunks.iter().zip(answers) {
            assert_eq!(chunk.len(), answers.len(), "one answer per message");
            for (n, answer) in chunk.iter().zip(answers) {
                match answer["status"].as_str() {
                    Some("queued") => {}
                    _ => {
                        assert_eq!(answer["error"], "queue full", "{answer}");
                        assert!(answer["retry_after_ms"].as_u64().is_some(), "{answer}");
                        queue_full += 1;
                        again.push(*n);
                    }
                }
            }
        }
        pending = again;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(queue_full > 0, "the flood never filled a queue of 2");
    assert_eq!(
        metric(
            &node,
            "courier_ingest_refused_total",
            &["input=\"tcp\"", "reason=\"queue_full\""]
        )
        .await as usize,
        queue_full
    );
    let got = receiver
        .wait_until(Duration::from_secs(120), "every message delivered", |got| {
            got.iter()
                .filter_map(|r| r.body["vars"]["n"].as_u64())
                .collect::<HashSet<_>>()
                .len()
                == MESSAGES
        })
        .await;
    let by_n: HashMap<u64, HashSet<String>> = got.iter().fold(HashMap::new(), |mut acc, r| {
        acc.entry(r.body["vars"]["n"].as_u64().unwrap())
            .or_default()
            .insert(r.body["execution_id"].as_str().unwrap().to_string());
        acc
    });
    assert!(
        by_n.values().all(|e| e.len() == 1),
        "a message resent after \"queue full\" is still one execution"
    );
    node.terminate();
    receiver.stop().await;
}

/// Appends `n` entries numbered from `from` to `stream`, in pipelined chunks.
async fn xadd_numbered(stream: &str, from: usize, n: usize, pause: Duration) {
    let mut redis = redis().await;
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(50) {
        let mut pipe = redis::pipe();
        for n in chunk {
            let message = json!({"provider": "webhook", "recipient": [{"chat_id": n}], "message": "m", "n": n});
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("message")
                .arg(message.to_string())
                .ignore();
        }
        let () = pipe.query_async(&mut redis).await.unwrap();
        tokio::time::sleep(pause).await;
    }
}

/// `XPENDING <stream> <group>`: count, smallest and largest id, and per consumer.
type PendingSummary = (i64, redis::Value, redis::Value, Option<Vec<(String, String)>>);

/// Pending entries per consumer of `group`.
async fn pending_by_consumer(stream: &str, group: &str) -> HashMap<String, i64> {
    let mut redis = redis().await;
    let (_, _, _, consumers): PendingSummary = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(&mut redis)
        .await
        .unwrap();
    consumers
        .unwrap_or_default()
        .into_iter()
        .map(|(name, count)| (name, count.parse().unwrap_or(0)))
        .collect()
}

#[actix_rt::test]
async fn a_consuming_node_killed_mid_stream_loses_no_entry() {
    const BEFORE: usize = 200;
    const ENTRIES: usize = 2000;
    let dir = scratch("ingest-kill");
    let smtp = SmtpSink::start(&dir);
    // A slow receiver and a bounded provider keep deliveries in flight when the node dies.
    let receiver = Receiver::start(Duration::from_millis(20)).await;
    let (stream, group) = (unique("kill-stream"), unique("kill-group"));
    let db = Database::create();
    // Entries written before any consumer exists are consumed too.
    xadd_numbered(&stream, 0, BEFORE, Duration::ZERO).await;
    let env = |name: &str| {
        vec![
            ("COURIER_CONFIG".into(), config(&dir, smtp.port, &receiver, "")),
            ("COURIER_STORE_URL".into(), db.url.clone()),
            ("COURIER_NOTIFIER_URL".into(), db.url.clone()),
            ("COURIER_INGEST_REDIS_URL".into(), redis_url()),
            ("COURIER_INGEST_STREAM".into(), stream.clone()),
            ("COURIER_INGEST_CHANNEL".into(), "off".into()),
            ("COURIER_INGEST_GROUP".into(), group.clone()),
            ("COURIER_INGEST_RECLAIM_AFTER".into(), "2s".into()),
            ("COURIER_INGEST_QUEUE_SIZE".into(), "8".into()),
            ("COURIER_WORKER_LEASE".into(), "3s".into()),
            ("COURIER_WORKER_HEARTBEAT".into(), "1s".into()),
            ("COURIER_MAINTENANCE_STUCK_AFTER".into(), "2s".into()),
            ("COURIER_NODE_ID".into(), name.to_string()),
        ]
    };
    let mut a = Node::spawn("kill-a", &dir, env("kill-a"));
    a.ready().await;
    // The rest arrive while the node consumes, so it dies with entries in hand.
    let writing = tokio::spawn({
        let stream = stream.clone();
        async move { xadd_numbered(&stream, BEFORE, ENTRIES - BEFORE, Duration::from_millis(5)).await }
    });
    receiver
        .wait_until(Duration::from_secs(60), "the first deliveries", |got| got.len() >= 300)
        .await;
    a.kill9();
    let killed_at = Instant::now();
    let pending_at_kill = pending_by_consumer(&stream, &group).await;
    let mut b = Node::spawn("kill-b", &dir, env("kill-b"));
    b.ready().await;
    writing.await.unwrap();
    let got = receiver
        .wait_until(Duration::from_secs(180), "every entry delivered", |got| {
            got.iter()
                .filter_map(|r| r.body["vars"]["n"].as_u64())
                .collect::<HashSet<_>>()
                .len()
                == ENTRIES
        })
        .await;
    // One execution per entry, whoever consumed it and however often it was read.
    let mut executions: HashMap<u64, HashSet<String>> = HashMap::new();
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    let mut seen_twice = Vec::new();
    for r in &got {
        let n = r.body["vars"]["n"].as_u64().unwrap();
        executions
            .entry(n)
            .or_default()
            .insert(r.body["execution_id"].as_str().unwrap().to_string());
        let id = r.webhook_id.clone().unwrap();
        match first_seen.get(&id) {
            Some(first) => seen_twice.push((id, *first)),
            None => {
                first_seen.insert(id, r.at);
            }
        }
    }
    assert!(
        executions.values().all(|e| e.len() == 1),
        "an entry made two executions"
    );
    // A recipient hears twice only when its delivery was in flight at the kill.
    for (id, first) in &seen_twice {
        assert!(
            *first <= killed_at,
            "delivery {id} repeated although it first arrived after the kill"
        );
    }
    // Everything acknowledged in the end, the dead node's pending entries included.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending = pending_by_consumer(&stream, &group).await;
        if pending.values().sum::<i64>() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "entries still pending: {pending:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "kill -9 mid-stream: {} deliveries for {ENTRIES} entries; pending per consumer at the kill {pending_at_kill:?}; {} repeated (in flight at the kill)",
        got.len(),
        seen_twice.len()
    );
    let mut redis = redis().await;
    let _: () = redis::cmd("DEL").arg(&stream).query_async(&mut redis).await.unwrap();
    b.terminate();
    receiver.stop().await;
}

/// A connection to the data node on `port` of `set`.
async fn data_node(set: &SentinelSet, port: u16) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let password = set.passwords.data.as_deref().unwrap_or_default();
    let client = redis::Client::open(format!("redis://:{password}@127.0.0.1:{port}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(3)));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// Appends entries `ns` to `stream` on the master the sentinels name now, then,
/// if `replicated`, `WAIT 1 1000`. The entries the master acknowledged: all of
/// them, if `replicated` is off or a replica confirmed them; none otherwise, nor
/// if anything failed (then they may or may not be there).
async fn xadd_through_sentinel(
    set: &SentinelSet,
    stream: &str,
    ns: std::ops::Range<usize>,
    replicated: bool,
) -> Vec<usize> {
    let attempt = async {
        let mut master = data_node(set, set.master_port()).await?;
        let mut pipe = redis::pipe();
        for n in ns.clone() {
            let message = json!({"provider": "webhook", "recipient": [{"chat_id": n}], "message": "m", "n": n});
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("message")
                .arg(message.to_string())
                .ignore();
        }
        if replicated {
            pipe.cmd("WAIT").arg(1).arg(1000);
            let (replicas,): (i64,) = pipe.query_async(&mut master).await?;
            Ok::<bool, redis::RedisError>(replicas >= 1)
        } else {
            let () = pipe.query_async(&mut master).await?;
            Ok(true)
        }
    };
    match attempt.await {
        Ok(true) => ns.collect(),
        Ok(false) | Err(_) => Vec::new(),
    }
}

#[actix_rt::test]
async fn a_redis_master_killed_under_a_sentinel_configured_node_loses_no_acknowledged_entry() {
    const BATCH: usize = 10;
    const BEFORE: usize = 150;
    const AFTER: usize = 150;
    let mut set = SentinelSet::start(Passwords {
        data: Some("data-pw".into()),
        sentinel: Some("sentinel-pw".into()),
    })
    .unwrap_or_else(|e| panic!("Redis Sentinel on loopback ({e}); scripts/test installs redis-server"));
    let dir = scratch("ingest-sentinel");
    // Removed last, after the node (which prints its log from there if the test fails).
    let _remove_dir = support::sentinel::ScratchDir(dir.clone());
    let smtp = SmtpSink::start(&dir);
    let receiver = Receiver::start(Duration::ZERO).await;
    let (stream, group, channel) = (
        unique("sentinel-stream"),
        unique("sentinel-group"),
        unique("sentinel-channel"),
    );
    let mut node = Node::spawn(
        "ingest-sentinel",
        &dir,
        vec![
            ("COURIER_CONFIG".into(), config(&dir, smtp.port, &receiver, "")),
            ("COURIER_STORE_URL".into(), dir.join("courier.db").display().to_string()),
            ("COURIER_INGEST_REDIS_URL".into(), set.url()),
            ("COURIER_INGEST_STREAM".into(), stream.clone()),
            ("COURIER_INGEST_GROUP".into(), group.clone()),
            ("COURIER_INGEST_CHANNEL".into(), channel.clone()),
            ("COURIER_INGEST_RECLAIM_AFTER".into(), "2s".into()),
        ],
    );
    node.ready().await;
    let delivered = |got: &[support::receivers::Received]| -> HashSet<u64> {
        got.iter().filter_map(|r| r.body["vars"]["n"].as_u64()).collect()
    };

    // Before the kill: every batch replicated (WAIT 1), so the failover keeps it.
    let mut acknowledged = BTreeSet::new();
    for from in (0..BEFORE).step_by(BATCH) {
        acknowledged.extend(xadd_through_sentinel(&set, &stream, from..from + BATCH, true).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        acknowledged.len(),
        BEFORE,
        "the replica confirmed every batch before the kill"
    );
    receiver
        .wait_until(Duration::from_secs(60), "the first deliveries", |got| {
            delivered(got).len() >= 30
        })
        .await;

    let old_master = set.kill_master();
    let killed_at = Instant::now();
    // Feeding goes on through the failover: a batch counts only once a master
    // acknowledged it (and, until the sentinels agree on the new one, a replica too).
    let mut next = BEFORE;
    let mut after = 0;
    let mut new_master = None;
    while after < AFTER {
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "no failover within 60 s: {}",
            set.failed_over(old_master).unwrap_err()
        );
        if new_master.is_none() {
            new_master = set.failed_over(old_master).ok();
        }
        let ns = next..next + BATCH;
        next += BATCH;
        let took = xadd_through_sentinel(&set, &stream, ns, new_master.is_none()).await;
        if new_master.is_some() {
            after += took.len();
        }
        acknowledged.extend(took);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_master = new_master.unwrap();

    // Every acknowledged entry is delivered, once per entry.
    let got = receiver
        .wait_until(Duration::from_secs(90), "every acknowledged entry delivered", |got| {
            let delivered = delivered(got);
            acknowledged.iter().all(|n| delivered.contains(&(*n as u64)))
        })
        .await;
    let mut executions: HashMap<u64, HashSet<String>> = HashMap::new();
    for r in &got {
        if let Some(n) = r.body["vars"]["n"].as_u64() {
            executions
                .entry(n)
                .or_default()
                .insert(r.body["execution_id"].as_str().unwrap().to_string());
        }
    }
    assert!(
        executions.values().all(|e| e.len() == 1),
        "an entry made two executions"
    );
    // ... and acknowledged on the new master in the end (those whose XACK the old
    // master took with it are reclaimed, found committed, and acknowledged).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut master = data_node(&set, new_master).await.unwrap();
        let (pending, _, _, _): (i64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(&group)
            .query_async(&mut master)
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} entries still pending on the new master"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The pub/sub input re-subscribed on the new master: publish until it hears.
    let mut master = data_node(&set, new_master).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.at_path("/teams").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the pub/sub input never heard the new master"
        );
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(json!({"provider": "teams", "recipient": [{"team_id": "T"}], "message": "after the failover", "id": "sentinel-once"}).to_string())
            .query_async(&mut master)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!(
        "Sentinel failover under ingestion: {} entries acknowledged by a master (of {} numbered), all delivered; {} deliveries",
        acknowledged.len(),
        next,
        got.len()
    );
    node.terminate();
    receiver.stop().await;
}

#[actix_rt::test]
async fn each_recipient_result_reaches_the_hook_and_the_signed_callback_once_in_order() {
    use std::sync::{Arc, Mutex};
    let dir = scratch("ingest-callback");
    let smtp = SmtpSink::start(&dir);
    let receiver = Receiver::start(Duration::ZERO).await;
    let mut options = courier::http::HttpOptions::default();
    let email = courier::ingest::ProviderConfig {
        retry: Some(courier::core::RetryPolicy {
            max_attempts: 2,
            initial_delay: Duration::from_millis(50),
            ..Default::default()
        }),
        settings: [
            ("smtp_url".to_string(), json!(format!("smtp://127.0.0.1:{}", smtp.port))),
            ("from".to_string(), json!("courier@example.com")),
        ]
        .into(),
        ..Default::default()
    };
    options.ingest.providers.insert("email".into(), email);
    options.ingest.callback_url = Some(receiver.at("/callback"));
    options.ingest.callback_secret = Some("callback-secret".into());
    let reports: Arc<Mutex<Vec<courier::ingest::RecipientReport>>> = Arc::default();
    let hook_reports = reports.clone();
    let hook: courier::ingest::ResultHook = Arc::new(move |report| hook_reports.lock().unwrap().push(report.clone()));
    let builder = courier::Courier::builder()
        .store(support::sqlite().await)
        .worker(support::fast_worker());
    let http = courier::http::prepare_with(builder, options, Some(hook))
        .start()
        .await
        .unwrap();
    let intake = http.ingest().expect("installed").intake().clone();
    let message = intake
        .check(json!({"provider": "email", "recipient": ["ok@example.com", "reject@example.com", "fine@example.com"], "subject": "s", "message": "m"}))
        .unwrap();
    let id = intake.offer(message, courier::ingest::Origin::Http).await.unwrap();
    let done = http
        .courier()
        .wait_for(id, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    let results: Vec<courier::ingest::RecipientResult> = serde_json::from_value(done.result.clone().unwrap()).unwrap();
    assert_eq!(results.iter().map(|r| r.ok).collect::<Vec<_>>(), [true, false, true]);
    let callbacks = receiver
        .wait_until(Duration::from_secs(30), "three callbacks", |got| {
            got.iter().filter(|r| r.path == "/callback").count() >= 3
        })
        .await;
    let mut callbacks: Vec<_> = callbacks.into_iter().filter(|r| r.path == "/callback").collect();
    callbacks.sort_by_key(|r| r.body["index"].as_u64());
    for (i, callback) in callbacks.iter().enumerate() {
        assert_eq!(callback.body["index"], i);
        assert_eq!(callback.body["execution_id"], json!(id));
        assert_eq!(callback.body["ok"], results[i].ok);
        assert_eq!(
            callback.webhook_id.as_deref(),
            Some(format!("{id}:{i}:result").as_str()),
            "a stable id to dedupe on"
        );
    }
    assert!(callbacks[1].body["detail"].as_str().unwrap().contains("550"));
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 3, "the hook runs once per recipient result: {reports:?}");
    let mut indexes: Vec<usize> = reports.iter().map(|r| r.index).collect();
    indexes.sort();
    assert_eq!(indexes, [0, 1, 2]);
    assert!(reports.iter().all(|r| r.execution_id == id && r.provider == "email"));
    http.shutdown().await;
    receiver.stop().await;
}

#[actix_rt::test]
async fn http_says_queue_full_with_retry_after_and_names_bad_fields() {
    let mut options = courier::http::HttpOptions::default();
    options.ingest.queue_size = 1;
    options.ingest.max_message_bytes = 4096;
    let builder = courier::Courier::builder()
        .store(support::sqlite().await)
        .worker(support::fast_worker());
    let server = Server::start(builder, options).await;
    let intake = server.http.ingest().expect("installed").intake().clone();
    let message = json!({"provider": "log", "recipient": ["a@example.com"], "message": "hello"});

    // Holding the queue's only place, as a commit in progress would.
    let place = intake.room().await;
    let mut response = client()
        .post(server.at("/v1/notify"))
        .send_json(&message)
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "queue full");
    assert!(body["detail"]["retry_after_ms"].as_u64().is_some(), "{body}");
    drop(place);

    let (status, body) = post(&server.at("/v1/notify"), &message).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");

    let too_big = json!({"provider": "log", "recipient": ["a@example.com"], "message": "x".repeat(5000)});
    let (status, body) = post(&server.at("/v1/notify"), &too_big).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("message too large")),
        "{body}"
    );
    for (bad, field) in [
        (
            json!({"provider": "log", "recipient": [{"name": "nowhere"}], "message": "x"}),
            "recipient[0]",
        ),
        (
            json!({"provider": "email", "recipient": ["a@example.com"], "message": "x"}),
            "provider",
        ),
        (
            json!({"provider": "log", "recipient": ["a@example.com"], "message": "x", "template": "/etc/passwd"}),
            "template",
        ),
        (json!("just a string"), "message"),
    ] {
        let (status, body) = post(&server.at("/v1/notify"), &bad).await;
        assert_eq!(
            (status, body["detail"]["field"].as_str()),
            (400, Some(field)),
            "{bad}: {body}"
        );
    }
    server.stop().await;
}
