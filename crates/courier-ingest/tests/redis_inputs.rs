//! The Redis inputs and the client against a real Redis (`COURIER_TEST_REDIS_URL`,
//! default `redis://127.0.0.1:6379`), a real store and a real node. One test
//! starts a private `redis-server` to restart it under the node; two start two
//! and a stand-in sentinel, to move the master under the inputs.

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use courier_core::{ExecutionFilter, ExecutionRecord, ExecutionState};
use courier_ingest::{DELIVER, IngestClient, IngestOptions};
use courier_runtime::Courier;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamInfoGroupsReply, StreamRangeReply};
use serde_json::{Value, json};

#[path = "../../../tests/support/sentinel.rs"]
mod sentinel;
mod support;

use support::{Result, node, stop};

const WAIT: Duration = Duration::from_secs(30);

fn redis_url() -> String {
    std::env::var("COURIER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique(what: &str) -> String {
    format!("courier-test:{what}:{}", uuid::Uuid::new_v4().simple())
}

async fn redis_at(url: &str) -> Result<MultiplexedConnection> {
    Ok(redis::Client::open(url)?.get_multiplexed_async_connection().await?)
}

fn stream_options(url: &str, stream: &str) -> IngestOptions {
    IngestOptions {
        redis_url: Some(url.into()),
        stream: Some(stream.into()),
        group: unique("group"),
        ..IngestOptions::default()
    }
}

fn valid(n: u64) -> Value {
    json!({"provider": "log", "recipient": ["ops@example.com"], "message": "disk at {{ n }}%", "n": n})
}

/// Fails the validation: no such provider.
fn invalid() -> Value {
    json!({"provider": "carrier-pigeon", "recipient": ["ops@example.com"], "message": "hi"})
}

async fn xadd(redis: &mut MultiplexedConnection, stream: &str, field: &str, payload: &str) -> Result<String> {
    Ok(redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg(field)
        .arg(payload)
        .query_async(redis)
        .await?)
}

/// The delivery executions the node holds.
async fn deliveries(courier: &Courier) -> Result<Vec<ExecutionRecord>> {
    Ok(courier
        .list_executions(&ExecutionFilter {
            function: Some(DELIVER.into()),
            include_internal: true,
            limit: 10_000,
            ..ExecutionFilter::default()
        })
        .await?)
}

/// Polls `check` every 50 ms until it holds, or fails after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Result
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("not within {within:?}: {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_deliveries(courier: &Courier, n: usize) -> Result<Vec<ExecutionRecord>> {
    eventually(WAIT, &format!("{n} delivery executions"), || async {
        Ok(deliveries(courier).await?.len() >= n)
    })
    .await?;
    let found = deliveries(courier).await?;
    for execution in &found {
        let done = courier.wait_for(execution.id, Some(WAIT)).await?;
        assert_eq!(done.state, ExecutionState::Completed, "{done:?}");
    }
    Ok(found)
}

/// Entries of the group not yet acknowledged.
async fn pending(redis: &mut MultiplexedConnection, stream: &str, group: &str) -> Result<u64> {
    let summary: (u64, redis::Value, redis::Value, redis::Value) =
        redis::cmd("XPENDING").arg(stream).arg(group).query_async(redis).await?;
    Ok(summary.0)
}

async fn wait_all_acked(redis: &mut MultiplexedConnection, stream: &str, group: &str) -> Result {
    let deadline = tokio::time::Instant::now() + WAIT;
    while pending(redis, stream, group).await? > 0 {
        if tokio::time::Instant::now() > deadline {
            return Err("entries still pending".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// `<stream>:dead`'s entries, as (entry, reason, message) triples.
async fn dead_letters(redis: &mut MultiplexedConnection, stream: &str) -> Result<Vec<(String, String, String)>> {
    let range: StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("{stream}:dead"))
        .arg("-")
        .arg("+")
        .query_async(redis)
        .await?;
    let field = |entry: &redis::streams::StreamId, name: &str| entry.get::<String>(name).unwrap_or_default();
    Ok(range
        .ids
        .iter()
        .map(|e| (field(e, "entry"), field(e, "reason"), field(e, "message")))
        .collect())
}

async fn cleanup(redis: &mut MultiplexedConnection, stream: &str) {
    let _: redis::RedisResult<()> = redis::cmd("DEL")
        .arg(stream)
        .arg(format!("{stream}:dead"))
        .query_async(redis)
        .await;
}

fn stream_key(stream: &str, entry: &str) -> String {
    format!("courier.ingest:stream:{stream}:{entry}")
}

#[actix_rt::test]
async fn entries_written_before_the_node_started_are_consumed_and_acked() -> Result {
    let url = redis_url();
    let mut redis = redis_at(&url).await?;
    let stream = unique("stream");
    let mut written = Vec::new();
    for n in 0..5 {
        written.push(xadd(&mut redis, &stream, "message", &valid(n).to_string()).await?);
    }
    let options = stream_options(&url, &stream);
    let group = options.group.clone();
    let (courier, ingest) = node(options).await?;

    let found = wait_for_deliveries(&courier, 5).await?;
    let mut keys: Vec<String> = found.iter().filter_map(|e| e.idempotency_key.clone()).collect();
    keys.sort();
    let mut expected: Vec<String> = written.iter().map(|id| stream_key(&stream, id)).collect();
    expected.sort();
    assert_eq!(keys, expected);
    wait_all_acked(&mut redis, &stream, &group).await?;

    stop(courier, ingest).await;
    cleanup(&mut redis, &stream).await;
    Ok(())
}

#[actix_rt::test]
async fn poison_entries_are_dead_lettered_and_acked_while_the_rest_flows() -> Result {
    let url = redis_url();
    let mut redis = redis_at(&url).await?;
    let stream = unique("stream");
    let options = stream_options(&url, &stream);
    let group = options.group.clone();
    let (courier, ingest) = node(options).await?;

    let first = xadd(&mut redis, &stream, "message", &valid(1).to_string()).await?;
    let not_json = xadd(&mut redis, &stream, "message", "{not json").await?;
    let no_field = xadd(&mut redis, &stream, "body", &valid(2).to_string()).await?;
    let refused = xadd(&mut redis, &stream, "message", &invalid().to_string()).await?;
    let after = xadd(&mut redis, &stream, "message", &valid(3).to_string()).await?;

    let found = wait_for_deliveries(&courier, 2).await?;
    let mut keys: Vec<String> = found.iter().filter_map(|e| e.idempotency_key.clone()).collect();
    keys.sort();
    let mut expected = vec![stream_key(&stream, &first), stream_key(&stream, &after)];
    expected.sort();
    assert_eq!(keys, expected);

    eventually(WAIT, "three dead letters", || {
        let (mut redis, stream) = (redis.clone(), stream.clone());
        async move { Ok(dead_letters(&mut redis, &stream).await?.len() >= 3) }
    })
    .await?;
    let dead = dead_letters(&mut redis, &stream).await?;
    let reason_of = |id: &str| dead.iter().find(|d| d.0 == id).map(|d| d.1.clone());
    assert_eq!(reason_of(&not_json).as_deref(), Some("unparsable"), "{dead:?}");
    assert_eq!(reason_of(&no_field).as_deref(), Some("unparsable"), "{dead:?}");
    assert_eq!(reason_of(&refused).as_deref(), Some("invalid"), "{dead:?}");
    let original = dead.iter().find(|d| d.0 == not_json).map(|d| d.2.clone());
    assert_eq!(original.as_deref(), Some("{not json"));
    assert_eq!(dead.len(), 3, "{dead:?}");
    wait_all_acked(&mut redis, &stream, &group).await?;
    assert_eq!(deliveries(&courier).await?.len(), 2);
    // What the dashboard shows: two accepted, three refused, three dead-lettered.
    let counts = ingest.intake().counts();
    assert_eq!(
        counts.get("stream"),
        Some(&courier_ingest::InputCounts {
            accepted: 2,
            refused: 3
        }),
        "{counts:?}"
    );
    assert_eq!(ingest.intake().dead_letter_count(), 3);

    stop(courier, ingest).await;
    cleanup(&mut redis, &stream).await;
    Ok(())
}

#[actix_rt::test]
async fn entries_pending_on_a_dead_consumer_are_reclaimed_and_overdelivered_ones_dead_lettered() -> Result {
    let url = redis_url();
    let mut redis = redis_at(&url).await?;
    let stream = unique("stream");
    let mut options = stream_options(&url, &stream);
    options.reclaim_after = Duration::from_secs(1);
    options.max_deliveries = 3;
    let group = options.group.clone();

    // A consumer that reads and dies before acknowledging.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(&group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut redis)
        .await?;
    let mut abandoned = Vec::new();
    for n in 0..3 {
        abandoned.push(xadd(&mut redis, &stream, "message", &valid(n).to_string()).await?);
    }
    let worn = xadd(&mut redis, &stream, "message", &valid(99).to_string()).await?;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&group)
        .arg("dead-consumer")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut redis)
        .await?;
    // `worn` has already been delivered max_deliveries times.
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(&stream)
        .arg(&group)
        .arg("dead-consumer")
        .arg(0)
        .arg(&worn)
        .arg("RETRYCOUNT")
        .arg(3)
        .query_async(&mut redis)
        .await?;
    assert_eq!(pending(&mut redis, &stream, &group).await?, 4);

    let (courier, ingest) = node(options).await?;
    let found = wait_for_deliveries(&courier, 3).await?;
    let mut keys: Vec<String> = found.iter().filter_map(|e| e.idempotency_key.clone()).collect();
    keys.sort();
    let mut expected: Vec<String> = abandoned.iter().map(|id| stream_key(&stream, id)).collect();
    expected.sort();
    assert_eq!(keys, expected);

    eventually(WAIT, "the worn entry dead-lettered", || {
        let (mut redis, stream) = (redis.clone(), stream.clone());
        async move { Ok(!dead_letters(&mut redis, &stream).await?.is_empty()) }
    })
    .await?;
    let dead = dead_letters(&mut redis, &stream).await?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, worn);
    assert_eq!(dead[0].1, "max_deliveries");
    wait_all_acked(&mut redis, &stream, &group).await?;
    assert_eq!(
        deliveries(&courier).await?.len(),
        3,
        "one execution per reclaimed entry"
    );

    stop(courier, ingest).await;
    cleanup(&mut redis, &stream).await;
    Ok(())
}

#[actix_rt::test]
async fn a_redelivered_entry_makes_one_execution() -> Result {
    let url = redis_url();
    let mut redis = redis_at(&url).await?;
    let stream = unique("stream");
    let options = stream_options(&url, &stream);
    let group = options.group.clone();
    let (courier, ingest) = node(options).await?;

    let a = xadd(&mut redis, &stream, "message", &valid(1).to_string()).await?;
    let b = xadd(&mut redis, &stream, "message", &valid(2).to_string()).await?;
    let first = wait_for_deliveries(&courier, 2).await?;
    wait_all_acked(&mut redis, &stream, &group).await?;

    // Rewind the group: both entries are delivered (and processed) again.
    let _: () = redis::cmd("XGROUP")
        .arg("SETID")
        .arg(&stream)
        .arg(&group)
        .arg("0")
        .query_async(&mut redis)
        .await?;
    eventually(WAIT, "both entries read again", || {
        let (mut redis, stream, group, b) = (redis.clone(), stream.clone(), group.clone(), b.clone());
        async move {
            let info: StreamInfoGroupsReply = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&stream)
                .query_async(&mut redis)
                .await?;
            let group = info.groups.iter().find(|g| g.name == group).ok_or("no group")?;
            Ok(group.last_delivered_id == b && group.pending == 0)
        }
    })
    .await?;
    // Give a (wrong) second execution time to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = deliveries(&courier).await?;
    assert_eq!(again.len(), 2, "{again:?}");
    let mut ids: Vec<_> = again.iter().map(|e| e.id).collect();
    let mut before: Vec<_> = first.iter().map(|e| e.id).collect();
    ids.sort();
    before.sort();
    assert_eq!(ids, before);
    assert!(
        again
            .iter()
            .any(|e| e.idempotency_key.as_deref() == Some(stream_key(&stream, &a).as_str()))
    );

    stop(courier, ingest).await;
    cleanup(&mut redis, &stream).await;
    Ok(())
}

/// A private `redis-server`, killed when dropped.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn free_port() -> Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
    }

    async fn start(port: u16) -> Result<Self> {
        let mut server = PrivateRedis { port, child: None };
        server.spawn().await?;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> Result {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let url = self.url();
        eventually(Duration::from_secs(10), "the private redis-server answering", || {
            let url = url.clone();
            async move {
                Ok(match redis_at(&url).await {
                    Ok(mut c) => redis::cmd("PING").query_async::<String>(&mut c).await.is_ok(),
                    Err(_) => false,
                })
            }
        })
        .await
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[actix_rt::test]
async fn the_consumer_comes_back_by_itself_after_redis_restarts() -> Result {
    let mut server = PrivateRedis::start(PrivateRedis::free_port()?).await?;
    let url = server.url();
    let stream = unique("stream");
    let (courier, ingest) = node(stream_options(&url, &stream)).await?;

    let mut redis = redis_at(&url).await?;
    for n in 0..3 {
        xadd(&mut redis, &stream, "message", &valid(n).to_string()).await?;
    }
    wait_for_deliveries(&courier, 3).await?;

    server.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.spawn().await?;
    // Nothing was kept: the stream and its group are gone; the node makes them again.
    let mut redis = redis_at(&url).await?;
    for n in 3..6 {
        xadd(&mut redis, &stream, "message", &valid(n).to_string()).await?;
    }
    let found = wait_for_deliveries(&courier, 6).await?;
    assert_eq!(found.len(), 6);

    stop(courier, ingest).await;
    drop(server);
    Ok(())
}

#[actix_rt::test]
async fn a_full_queue_slows_the_consumer_but_loses_nothing() -> Result {
    let url = redis_url();
    let mut redis = redis_at(&url).await?;
    let stream = unique("stream");
    let mut options = stream_options(&url, &stream);
    options.queue_size = 1;
    let group = options.group.clone();
    let (courier, ingest) = node(options).await?;

    let mut pipe = redis::pipe();
    for n in 0..200 {
        pipe.cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("message")
            .arg(valid(n).to_string());
    }
    let written: Vec<String> = pipe.query_async(&mut redis).await?;
    assert_eq!(written.len(), 200);

    let found = wait_for_deliveries(&courier, 200).await?;
    assert_eq!(found.len(), 200);
    wait_all_acked(&mut redis, &stream, &group).await?;
    assert!(dead_letters(&mut redis, &stream).await?.is_empty());

    stop(courier, ingest).await;
    cleanup(&mut redis, &stream).await;
    Ok(())
}

async fn wait_subscribed(redis: &MultiplexedConnection, channel: &str) -> Result {
    eventually(WAIT, "a node subscribed", || {
        let (mut redis, channel) = (redis.clone(), channel.to_string());
        async move {
            let counts: (String, u64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut redis)
                .await?;
            Ok(counts.1 >= 1)
        }
    })
    .await
}

#[actix_rt::test]
async fn pubsub_messages_become_executions_and_invalid_ones_are_refused() -> Result {
    let url = redis_url();
    let mut redis = redis_at(&url).await?;
    let channel = unique("channel");
    let options = IngestOptions {
        redis_url: Some(url.clone()),
        channel: Some(channel.clone()),
        ..IngestOptions::default()
    };
    let (courier, ingest) = node(options).await?;
    wait_subscribed(&redis, &channel).await?;

    let payloads = [
        valid(1).to_string(),
        "{not json".to_string(),
        invalid().to_string(),
        valid(2).to_string(),
        json!({"provider": "log"}).to_string(),
        valid(3).to_string(),
    ];
    for payload in &payloads {
        let heard: u64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut redis)
            .await?;
        assert_eq!(heard, 1);
    }
    let found = wait_for_deliveries(&courier, 3).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deliveries(&courier).await?.len(), 3);
    let mut ns: Vec<i64> = found.iter().filter_map(|e| e.args["vars"]["n"].as_i64()).collect();
    ns.sort();
    assert_eq!(ns, [1, 2, 3]);

    stop(courier, ingest).await;
    Ok(())
}

#[actix_rt::test]
async fn the_client_sends_over_tcp_publishes_and_streams() -> Result {
    let url = redis_url();
    let mut redis = redis_at(&url).await?;
    let stream = unique("stream");
    let channel = unique("channel");
    let mut options = stream_options(&url, &stream);
    options.channel = Some(channel.clone());
    options.tcp_addr = Some("127.0.0.1:0".parse()?);
    options.tcp_token = Some("s3cret".into());
    let (courier, ingest) = node(options).await?;
    let addr = ingest.tcp_addr().ok_or("the TCP input is not listening")?;
    let client = IngestClient::new().tcp(addr).token("s3cret").redis(url.clone());

    // One message.
    let answer = client.send(&valid(1)).await?;
    assert_eq!(answer["status"], "queued", "{answer}");
    let id: courier_core::ExecutionId = serde_json::from_value(answer["id"].clone())?;
    let done = courier.wait_for(id, Some(WAIT)).await?;
    assert_eq!(done.state, ExecutionState::Completed);

    // Several over one connection, answered in order; the invalid one names its field.
    let answers = client
        .send_many(&[
            valid(2),
            json!({"provider": "log", "message": "no one to tell"}),
            valid(3),
        ])
        .await?;
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0]["status"], "queued", "{answers:?}");
    assert_eq!(answers[1]["error"], "invalid message", "{answers:?}");
    assert_eq!(answers[1]["detail"]["field"], "recipient", "{answers:?}");
    assert_eq!(answers[2]["status"], "queued", "{answers:?}");

    // Without the token.
    let stranger = IngestClient::new().tcp(addr);
    let answer = stranger.send(&valid(4)).await?;
    assert_eq!(answer["error"], "unauthorized", "{answer}");

    // The stream.
    let entry = client.stream(&valid(5), &stream).await?;
    let key = stream_key(&stream, &entry);
    eventually(WAIT, "the streamed message's execution", || {
        let (courier, key) = (courier.clone(), key.clone());
        async move {
            Ok(deliveries(&courier)
                .await?
                .iter()
                .any(|e| e.idempotency_key.as_deref() == Some(key.as_str())))
        }
    })
    .await?;

    // The channel.
    wait_subscribed(&redis, &channel).await?;
    let heard = client
        .publish(
            &json!({"id": "published-6", "provider": "log", "recipient": ["a@b.c"], "message": "6"}),
            &channel,
        )
        .await?;
    assert_eq!(heard, 1);
    eventually(WAIT, "the published message's execution", || {
        let courier = courier.clone();
        async move {
            Ok(deliveries(&courier)
                .await?
                .iter()
                .any(|e| e.idempotency_key.as_deref() == Some("courier.ingest:id:published-6")))
        }
    })
    .await?;
    let all = wait_for_deliveries(&courier, 5).await?;
    assert_eq!(all.len(), 5, "{all:?}");

    stop(courier, ingest).await;
    cleanup(&mut redis, &stream).await;
    Ok(())
}

/// Two independent Redis servers (the old master and the new) and a stand-in
/// sentinel naming the old one; `None` (a loud skip, or a failure under
/// `CI=true`) without `redis-server`.
fn two_masters(what: &str) -> Option<(sentinel::ScratchDir, sentinel::RedisProcess, sentinel::RedisProcess)> {
    let dir = sentinel::ScratchDir::new(what);
    let started = sentinel::RedisProcess::data_node(sentinel::free_port(), None, None, &dir.0).and_then(|old| {
        let new = sentinel::RedisProcess::data_node(sentinel::free_port(), None, None, &dir.0)?;
        Ok((old, new))
    });
    match started {
        Ok((old, new)) => Some((dir, old, new)),
        Err(reason) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("redis-server is needed and CI=true: {reason}")
        }
        Err(reason) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "\n!!!!! SKIPPED: {reason} !!!!!\n");
            None
        }
    }
}

#[actix_rt::test]
async fn the_consumer_leaves_a_master_demoted_under_it_for_the_one_the_sentinels_name() -> Result {
    let Some((_dir, old, new)) = two_masters("ingest-demoted") else {
        return Ok(());
    };
    let fake = sentinel::FakeSentinel::start(old.port);
    let url = format!("redis+sentinel://127.0.0.1:{}/{}", fake.port, sentinel::MASTER);
    let stream = unique("stream");
    let options = stream_options(&url, &stream);
    let group = options.group.clone();
    let (courier, ingest) = node(options).await?;
    let mut on_old = redis_at(&format!("redis://127.0.0.1:{}", old.port)).await?;
    for n in 0..3 {
        xadd(&mut on_old, &stream, "message", &valid(n).to_string()).await?;
    }
    wait_for_deliveries(&courier, 3).await?;
    wait_all_acked(&mut on_old, &stream, &group).await?;

    // The old master becomes a replica of the new one, and the sentinel names the
    // new one, but no announcement comes and no connection is closed by anyone:
    // only the old master's READONLY answers say that it is no longer the master.
    fake.name(new.port);
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(new.port)
        .query_async(&mut on_old)
        .await?;
    let mut on_new = redis_at(&format!("redis://127.0.0.1:{}", new.port)).await?;
    for n in 3..6 {
        xadd(&mut on_new, &stream, "message", &valid(n).to_string()).await?;
    }
    let found = wait_for_deliveries(&courier, 6).await?;
    assert_eq!(found.len(), 6);
    // Acknowledged on the new master: the consumer's every connection moved.
    wait_all_acked(&mut on_new, &stream, &group).await?;

    stop(courier, ingest).await;
    Ok(())
}

#[actix_rt::test]
async fn the_pubsub_input_follows_a_switch_master_announcement() -> Result {
    let Some((_dir, old, new)) = two_masters("ingest-switch") else {
        return Ok(());
    };
    let fake = sentinel::FakeSentinel::start(old.port);
    let url = format!("redis+sentinel://127.0.0.1:{}/{}", fake.port, sentinel::MASTER);
    let channel = unique("channel");
    let options = IngestOptions {
        redis_url: Some(url),
        channel: Some(channel.clone()),
        ..IngestOptions::default()
    };
    let (courier, ingest) = node(options).await?;
    let on_old = redis_at(&format!("redis://127.0.0.1:{}", old.port)).await?;
    wait_subscribed(&on_old, &channel).await?;
    eventually(WAIT, "the input watching +switch-master", || async {
        Ok(fake.watchers() >= 1)
    })
    .await?;

    // The old master stays a master and keeps the input's connection: only the
    // announcement moves it.
    fake.switch(new.port);
    let mut on_new = redis_at(&format!("redis://127.0.0.1:{}", new.port)).await?;
    wait_subscribed(&on_new, &channel).await?;
    let heard: u64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(valid(7).to_string())
        .query_async(&mut on_new)
        .await?;
    assert_eq!(heard, 1);
    let found = wait_for_deliveries(&courier, 1).await?;
    assert_eq!(found[0].args["vars"]["n"], 7);

    stop(courier, ingest).await;
    Ok(())
}
