//! The Redis inputs over a Redis Cluster (three masters, three replicas,
//! started here from `redis-server`/`redis-cli` on loopback and killed when the
//! test ends), with a real store and a real node: stream keys on different
//! masters (and dead letters on yet another) each delivered exactly once, a
//! master killed under the stream consumer without an entry lost, the stream
//! input over TLS (`rediss+cluster://`, the `redis` crate's cluster client),
//! and the pub/sub channel input hearing a PUBLISH made on another node, and
//! again after the node it listened on was killed.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use courier_core::{ExecutionFilter, ExecutionRecord, ExecutionState};
use courier_ingest::{DELIVER, IngestOptions};
use courier_notify::key_slot;
use courier_runtime::Courier;
use redis::cluster_async::ClusterConnection;
use serde_json::{Value, json};

#[path = "../../../tests/support/redis_cluster.rs"]
mod redis_cluster;
#[path = "../../../tests/support/sentinel.rs"]
mod sentinel;
mod support;

use redis_cluster::RedisCluster;
use support::{Result, node, stop};

const WAIT: Duration = Duration::from_secs(30);

/// The cluster, if redis-server and redis-cli could start one; under `CI=true`
/// a failure fails the test, otherwise the test is skipped loudly.
fn started() -> Option<RedisCluster> {
    match RedisCluster::start() {
        Ok(cluster) => Some(cluster),
        Err(reason) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("redis-server and redis-cli are needed for Redis Cluster and CI=true: {reason}")
        }
        Err(reason) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "\n!!!!! SKIPPED: {reason} !!!!!\n");
            None
        }
    }
}

/// A cluster client of the test's own, to write entries and look behind the node's back.
async fn admin(cluster: &RedisCluster) -> Result<ClusterConnection> {
    let scheme = if cluster.ca.is_some() { "rediss" } else { "redis" };
    let seeds: Vec<String> = cluster
        .alive()
        .iter()
        .map(|p| format!("{scheme}://127.0.0.1:{p}"))
        .collect();
    let mut builder = redis::cluster::ClusterClientBuilder::new(seeds);
    if let Some(ca) = &cluster.ca {
        builder = builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(ca)?),
        });
    }
    Ok(builder.build()?.get_async_connection().await?)
}

/// A fresh stream name whose slot is served by `master` and whose dead letters
/// (`<stream>:dead`) are served by another master.
fn stream_on(cluster: &RedisCluster, master: u16) -> String {
    loop {
        let name = format!("courier-test:stream:{}", uuid::Uuid::new_v4().simple());
        let dead = format!("{name}:dead");
        if cluster.master_of(key_slot(name.as_bytes())) == master
            && cluster.master_of(key_slot(dead.as_bytes())) != master
        {
            return name;
        }
    }
}

fn stream_options(url: &str, stream: &str) -> IngestOptions {
    IngestOptions {
        redis_url: Some(url.into()),
        stream: Some(stream.into()),
        group: format!("group-{}", uuid::Uuid::new_v4().simple()),
        ..IngestOptions::default()
    }
}

fn valid(n: u64) -> Value {
    json!({"provider": "log", "recipient": ["ops@example.com"], "message": "disk at {{ n }}%", "n": n})
}

/// `XADD`, retried (through failovers) for up to [`WAIT`].
async fn xadd(redis: &mut ClusterConnection, stream: &str, payload: &str) -> Result<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let added: redis::RedisResult<String> = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("message")
            .arg(payload)
            .query_async(redis)
            .await;
        match added {
            Ok(id) => return Ok(id),
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

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

/// Waits for exactly `ids` (entry ids of `stream`) to be executions, each once
/// and completed; an extra execution is an error.
async fn delivered_exactly(courier: &Courier, stream: &str, ids: &[String]) -> Result {
    let wanted: BTreeSet<String> = ids
        .iter()
        .map(|id| format!("courier.ingest:stream:{stream}:{id}"))
        .collect();
    let ours = |all: Vec<ExecutionRecord>| -> Vec<ExecutionRecord> {
        all.into_iter()
            .filter(|e| e.idempotency_key.as_deref().is_some_and(|k| k.contains(stream)))
            .collect()
    };
    eventually(WAIT, &format!("{} executions from {stream}", ids.len()), || async {
        Ok(ours(deliveries(courier).await?).len() >= ids.len())
    })
    .await?;
    // Anything more would have come by now (redeliveries are immediate here).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let found = ours(deliveries(courier).await?);
    let keys: BTreeSet<String> = found.iter().filter_map(|e| e.idempotency_key.clone()).collect();
    assert_eq!(found.len(), ids.len(), "one execution per entry of {stream}");
    assert_eq!(keys, wanted, "the executions are the entries of {stream}");
    for execution in &found {
        let done = courier.wait_for(execution.id, Some(WAIT)).await?;
        assert_eq!(done.state, ExecutionState::Completed, "{done:?}");
    }
    Ok(())
}

/// Entries of the group not yet acknowledged.
async fn pending(redis: &mut ClusterConnection, stream: &str, group: &str) -> Result<u64> {
    let summary: (u64, redis::Value, redis::Value, redis::Value) =
        redis::cmd("XPENDING").arg(stream).arg(group).query_async(redis).await?;
    Ok(summary.0)
}

async fn all_acked(redis: &ClusterConnection, stream: &str, group: &str) -> Result {
    eventually(WAIT, &format!("every entry of {stream} acknowledged"), || {
        let mut redis = redis.clone();
        async move { Ok(pending(&mut redis, stream, group).await? == 0) }
    })
    .await
}

#[actix_rt::test]
async fn stream_keys_on_different_masters_are_each_delivered_exactly_once() -> Result {
    let Some(cluster) = started() else { return Ok(()) };
    let mut redis = admin(&cluster).await?;
    let masters = cluster.masters();
    // Two nodes, each reading a stream on a master of its own; dead letters
    // land on a third slot's master (XADD there, XACK on the stream's).
    let mut runs = Vec::new();
    for (i, master) in masters.iter().take(2).enumerate() {
        let stream = stream_on(&cluster, *master);
        let url = if i == 0 { cluster.url() } else { cluster.comma_url() };
        let options = stream_options(&url, &stream);
        let group = options.group.clone();
        let (courier, ingest) = node(options).await?;
        runs.push((stream, group, courier, ingest));
    }
    for (stream, group, courier, _) in &runs {
        let mut ids = Vec::new();
        for n in 0..40 {
            ids.push(xadd(&mut redis, stream, &valid(n).to_string()).await?);
        }
        let refused = xadd(&mut redis, stream, "not json").await?;
        delivered_exactly(courier, stream, &ids).await?;
        all_acked(&redis, stream, group).await?;
        let dead: Vec<redis::Value> = redis::cmd("XRANGE")
            .arg(format!("{stream}:dead"))
            .arg("-")
            .arg("+")
            .query_async(&mut redis)
            .await?;
        assert_eq!(dead.len(), 1, "the refused entry {refused} is dead-lettered once");
    }
    for (_, _, courier, ingest) in runs {
        stop(courier, ingest).await;
    }
    Ok(())
}

#[actix_rt::test]
async fn a_master_killed_under_the_stream_consumer_loses_no_entry() -> Result {
    let Some(mut cluster) = started() else { return Ok(()) };
    let mut redis = admin(&cluster).await?;
    let victim = cluster.masters()[0];
    let stream = stream_on(&cluster, victim);
    let options = IngestOptions {
        reclaim_after: Duration::from_secs(2),
        ..stream_options(&cluster.url(), &stream)
    };
    let group = options.group.clone();
    let (courier, ingest) = node(options).await?;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(xadd(&mut redis, &stream, &valid(n).to_string()).await?);
    }
    delivered_exactly(&courier, &stream, &ids).await?;
    all_acked(&redis, &stream, &group).await?;
    // Let the replica catch up with the acknowledgements, then kill the master.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(victim);
    let killed_at = std::time::Instant::now();
    // Written while the slot has no master (retried until the replica takes
    // over) and after.
    for n in 20..40 {
        ids.push(xadd(&mut redis, &stream, &valid(n).to_string()).await?);
    }
    delivered_exactly(&courier, &stream, &ids).await?;
    all_acked(&redis, &stream, &group).await?;
    eprintln!(
        "Redis Cluster failover under the stream input: all entries delivered {:?} after the kill",
        killed_at.elapsed()
    );
    stop(courier, ingest).await;
    Ok(())
}

/// The live nodes with a subscriber on `channel` (classic pub/sub).
async fn listening(cluster: &RedisCluster, channel: &str) -> Vec<u16> {
    let mut on = Vec::new();
    for port in cluster.alive() {
        let Ok(mut c) = sentinel::connect(port, None) else {
            continue;
        };
        let counts: redis::RedisResult<(String, u64)> = redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query(&mut c);
        if counts.is_ok_and(|(_, n)| n > 0) {
            on.push(port);
        }
    }
    on
}

/// Waits until some live node has a subscriber on `channel`; those nodes.
async fn subscribed_on(cluster: &RedisCluster, channel: &str) -> Result<Vec<u16>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let on = listening(cluster, channel).await;
        if !on.is_empty() {
            return Ok(on);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("no node has a subscriber on {channel} after {WAIT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes `payload` on `channel` from a live node other than `not_on`, until
/// the node has `n` deliveries.
async fn publish_until_delivered(
    cluster: &RedisCluster,
    courier: &Courier,
    channel: &str,
    not_on: u16,
    payload: &str,
    n: usize,
) -> Result {
    eventually(WAIT, &format!("{n} deliveries from {channel}"), || async {
        if deliveries(courier).await?.len() >= n {
            return Ok(true);
        }
        let from = cluster.alive().into_iter().find(|p| *p != not_on).expect("a live node");
        if let Ok(mut c) = sentinel::connect(from, None) {
            let _: redis::RedisResult<u64> = redis::cmd("PUBLISH").arg(channel).arg(payload).query(&mut c);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(false)
    })
    .await
}

#[actix_rt::test]
async fn the_pubsub_input_hears_the_whole_cluster_and_moves_when_its_node_dies() -> Result {
    let Some(mut cluster) = started() else { return Ok(()) };
    let channel = format!("courier-test:channel:{}", uuid::Uuid::new_v4().simple());
    let options = IngestOptions {
        redis_url: Some(cluster.url()),
        channel: Some(channel.clone()),
        ..IngestOptions::default()
    };
    let (courier, ingest) = node(options).await?;
    let on = subscribed_on(&cluster, &channel).await?;
    assert_eq!(on.len(), 1, "one subscription: {on:?}");
    let first = on[0];
    // Messages carry ids: a PUBLISH repeated until heard is delivered once.
    let message = |id: &str| {
        let mut m = valid(1);
        m["id"] = json!(id);
        m.to_string()
    };
    publish_until_delivered(&cluster, &courier, &channel, first, &message("one"), 1).await?;

    cluster.kill(first);
    let on = subscribed_on(&cluster, &channel).await?;
    assert!(!on.contains(&first));
    publish_until_delivered(&cluster, &courier, &channel, on[0], &message("two"), 2).await?;
    let found = deliveries(&courier).await?;
    assert_eq!(found.len(), 2, "{found:?}");
    stop(courier, ingest).await;
    Ok(())
}

#[actix_rt::test]
async fn the_stream_input_reads_a_cluster_over_tls() -> Result {
    let cluster = match RedisCluster::start_tls() {
        Ok(cluster) => cluster,
        Err(reason) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("redis-server, redis-cli and openssl are needed for Redis Cluster over TLS and CI=true: {reason}")
        }
        Err(reason) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "\n!!!!! SKIPPED: {reason} !!!!!\n");
            return Ok(());
        }
    };
    let mut redis = admin(&cluster).await?;
    let stream = stream_on(&cluster, cluster.masters()[1]);
    let options = stream_options(&cluster.url(), &stream);
    let group = options.group.clone();
    let (courier, ingest) = node(options).await?;
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(xadd(&mut redis, &stream, &valid(n).to_string()).await?);
    }
    delivered_exactly(&courier, &stream, &ids).await?;
    all_acked(&redis, &stream, &group).await?;
    stop(courier, ingest).await;
    Ok(())
}
