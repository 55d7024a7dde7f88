//! Several `courier serve` processes on one Postgres and one notifier: work
//! dispatched on one node runs on another and wakes the waiter on the first;
//! an SSE subscriber on a third sees everything in order; webhooks go out once;
//! `max_concurrent` and housekeeping hold cluster-wide.
//!
//! Polling intervals are set far longer than the waits these tests allow, so a
//! prompt result proves the notice crossed nodes (a speed figure is in
//! `benches/`, not here).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use support::cluster::*;
use support::http::*;

fn redis() -> Notifier {
    Notifier::Redis(std::env::var("COURIER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
}

/// Polling so slow that only a notice can explain a prompt wake-up.
const SLOW_POLLING: &[(&str, &str)] = &[
    ("COURIER_WORKER_POLL_MIN", "20s"),
    ("COURIER_WORKER_POLL_MAX", "20s"),
    ("COURIER_STREAMS_POLL", "20s"),
    ("COURIER_WEBHOOKS_POLL", "20s"),
];

/// Node `a` serves the API only; the others run work.
fn api_only_a(name: &str) -> Vec<(String, String)> {
    if name == "a" {
        vec![("COURIER_WORKER_ENABLED".into(), "false".into())]
    } else {
        Vec::new()
    }
}

async fn dispatched_on_a_runs_elsewhere_and_wakes_a(notifier: Notifier) {
    let cluster = Cluster::start(&["a", "b", "c"], notifier, SLOW_POLLING, api_only_a).await;
    let a = cluster.node("a");
    // Let the workers go idle on their long poll first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for round in 0..3 {
        let started = Instant::now();
        let id = dispatch(
            a,
            "fixture.pipeline",
            json!({ "key": format!("p{round}"), "steps": 3, "sleep_ms": 20 }),
        )
        .await;
        let (status, body) = result(a, &id, Duration::from_secs(15)).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "completed", "{body}");
        assert_eq!(body["result"], 3);
        // 3 claims and a result, each of which polling would take 20 s to notice.
        assert!(
            took < Duration::from_secs(10),
            "round {round} took {took:?}: not woken by notices"
        );
    }
    let effects = cluster.effects();
    assert_eq!(effects.iter().filter(|e| e.what == "end").count(), 9);
    assert!(
        effects.iter().all(|e| e.node == "b" || e.node == "c"),
        "node a runs no work: {effects:?}"
    );
}

#[actix_rt::test]
async fn with_redis_work_dispatched_on_a_runs_on_b_or_c_and_wakes_a() {
    dispatched_on_a_runs_elsewhere_and_wakes_a(redis()).await;
}

#[actix_rt::test]
async fn with_postgres_notify_work_dispatched_on_a_runs_on_b_or_c_and_wakes_a() {
    dispatched_on_a_runs_elsewhere_and_wakes_a(Notifier::Postgres).await;
}

/// Every event in the log, by polling.
async fn all_events(node: &Node) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = get(&node.at(&format!("/v1/events?after={after}&limit=1000"))).await;
        assert_eq!(status, 200, "{page}");
        out.extend(page["events"].as_array().unwrap().iter().cloned());
        after = page["next"].as_i64().unwrap();
        if !page["has_more"].as_bool().unwrap() {
            return out;
        }
    }
}

#[actix_rt::test]
async fn an_sse_subscriber_on_c_sees_events_from_a_and_b_in_order_without_gaps() {
    let cluster = Cluster::start(&["a", "b", "c"], redis(), SLOW_POLLING, |name| {
        if name == "b" {
            Vec::new()
        } else {
            vec![("COURIER_WORKER_ENABLED".into(), "false".into())]
        }
    })
    .await;
    let (a, c) = (cluster.node("a"), cluster.node("c"));
    let response = client()
        .get(c.at("/v1/events/stream"))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut sse = SseReader::new(response);

    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(dispatch(a, "fixture.pipeline", json!({ "key": format!("s{i}"), "steps": 2 })).await);
    }
    for id in &ids {
        let (status, body) = result(a, id, Duration::from_secs(30)).await;
        assert_eq!(status, 200, "{body}");
    }
    let log = all_events(a).await;
    let last = log.last().unwrap()["seq"].as_i64().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.last().copied().unwrap_or(0) < last {
        assert!(
            Instant::now() < deadline,
            "C's stream stopped at {:?} of {last}",
            seen.last()
        );
        let frame = sse
            .next(Duration::from_secs(10))
            .await
            .expect("C's stream goes on while events are appended elsewhere");
        if let Some(id) = frame.id {
            seen.push(id);
        }
    }
    let expected: Vec<i64> = log.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seen, expected, "C streams exactly the log, in sequence order");
    let ran_on: HashSet<String> = cluster.effects().into_iter().map(|e| e.node).collect();
    assert_eq!(ran_on, HashSet::from(["b".to_string()]), "the work ran on b");
}

/// A webhook receiver in this process: the `webhook-id` of every delivery.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>, actix_web::dev::ServerHandle) {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let data = web::Data::new(got.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).default_service(web::to(
            |req: HttpRequest, got: web::Data<Arc<Mutex<Vec<String>>>>| async move {
                if let Some(id) = req.headers().get("webhook-id") {
                    got.lock().unwrap().push(id.to_str().unwrap().to_string());
                }
                HttpResponse::Ok().finish()
            },
        ))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}/hook", server.addrs()[0]);
    let running = server.run();
    let handle = running.handle();
    actix_rt::spawn(running);
    (url, got, handle)
}

/// A node whose port was taken between choosing it and binding it (the fresh
/// CI run lost that race once) is started again on another, not lost.
#[actix_rt::test]
async fn a_node_whose_port_is_taken_starts_on_another() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let db = Database::create();
    let dir = scratch("port-taken");
    let mut node = Node::spawn_on(
        "a",
        &dir,
        vec![
            ("COURIER_STORE_URL".into(), db.url.clone()),
            ("COURIER_NOTIFIER_URL".into(), db.url.clone()),
        ],
        None,
        port,
    );
    node.ready().await;
    assert_ne!(node.url, format!("http://127.0.0.1:{port}"));
    let ready = client().get(node.at("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    drop(taken);
}

#[actix_rt::test]
async fn webhooks_are_delivered_once_not_once_per_node() {
    let cluster = Cluster::start(&["a", "b", "c"], redis(), &[], |_| Vec::new()).await;
    let a = cluster.node("a");
    let (url, got, handle) = receiver().await;
    let (status, hook) = post(
        &a.at("/v1/webhooks"),
        &json!({ "url": url, "event_types": ["execution.completed"] }),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let mut ids = Vec::new();
    for (i, node) in cluster.nodes.iter().cycle().take(30).enumerate() {
        ids.push(dispatch(node, "fixture.effect", json!({ "key": format!("w{i}") })).await);
    }
    for id in &ids {
        assert_eq!(result(a, id, Duration::from_secs(30)).await.0, 200);
    }
    support::eventually(Duration::from_secs(30), "30 deliveries", || {
        let got = got.clone();
        async move { got.lock().unwrap().len() >= 30 }
    })
    .await;
    // Give a duplicate every chance to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deliveries = got.lock().unwrap().clone();
    let distinct: BTreeSet<&String> = deliveries.iter().collect();
    assert_eq!(deliveries.len(), 30, "one delivery per event: {deliveries:?}");
    assert_eq!(distinct.len(), 30);
    handle.stop(false).await;
}

#[actix_rt::test]
async fn max_concurrent_holds_across_nodes() {
    let cluster = Cluster::start(&["a", "b", "c"], redis(), &[], |_| Vec::new()).await;
    let mut ids = Vec::new();
    for (i, node) in cluster.nodes.iter().cycle().take(12).enumerate() {
        ids.push(
            dispatch(
                node,
                "fixture.limited",
                json!({ "key": format!("l{i}"), "sleep_ms": 300 }),
            )
            .await,
        );
    }
    for id in &ids {
        let (status, body) = result(cluster.node("a"), id, Duration::from_secs(60)).await;
        assert_eq!(status, 200, "{body}");
    }
    let effects = cluster.effects();
    // Sweep the runs' starts and ends in time order; count overlaps.
    let mut edges: Vec<(u128, i32)> = effects
        .iter()
        .map(|e| (e.nanos, if e.what == "start" { 1 } else { -1 }))
        .collect();
    edges.sort();
    let (mut running, mut most) = (0, 0);
    for (_, delta) in edges {
        running += delta;
        most = most.max(running);
    }
    assert_eq!(effects.iter().filter(|e| e.what == "end").count(), 12);
    assert!(
        most <= 2,
        "at most 2 fixture.limited at once across the cluster, saw {most}"
    );
}

#[actix_rt::test]
async fn housekeeping_runs_on_one_node_at_a_time_and_moves_when_it_dies() {
    let mut cluster = Cluster::start(
        &["a", "b", "c"],
        redis(),
        &[
            ("COURIER_MAINTENANCE_INTERVAL", "200ms"),
            ("COURIER_MAINTENANCE_CLEANUP_INTERVAL", "1s"),
        ],
        |_| Vec::new(),
    )
    .await;

    // A task claimed by an external worker that then goes silent is reported stuck once.
    let a = cluster.node("a");
    let id = dispatch(a, "ext.silent", json!({})).await;
    let (status, claimed) = post(
        &a.at("/v1/workers/claim"),
        &json!({ "worker_id": "silent", "functions": ["ext.silent"], "lease": "60s", "wait": "10s" }),
    )
    .await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(claimed[0]["execution_id"], id.as_str(), "{claimed}");

    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut holders = Vec::new();
    for node in &cluster.nodes {
        if node.counter("courier_cleanup_runs_total").await > 0.0 {
            holders.push(node.name.clone());
        }
    }
    assert_eq!(holders.len(), 1, "cleanup ran on {holders:?}");
    let stuck = |events: Vec<Value>| {
        events
            .iter()
            .filter(|e| e["type"] == "task.stuck" && e["execution_id"] == id.as_str())
            .count()
    };
    assert_eq!(stuck(all_events(a).await), 1, "task.stuck is reported once per cluster");

    // The holder dies; another node takes the role over.
    let holder = holders[0].clone();
    cluster.node_mut(&holder).kill9();
    let survivors: Vec<&Node> = cluster.nodes.iter().filter(|n| n.name != holder).collect();
    let mut before = Vec::new();
    for node in &survivors {
        before.push(node.counter("courier_maintenance_rounds_total").await);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut grew = Vec::new();
        for (node, was) in survivors.iter().zip(&before) {
            if node.counter("courier_maintenance_rounds_total").await > *was {
                grew.push(node.name.clone());
            }
        }
        if !grew.is_empty() {
            assert_eq!(grew.len(), 1, "one survivor took the role, not {grew:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no survivor took over housekeeping");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A schedule on three nodes: each slot fires once for the cluster (on the
/// node holding the scheduler role), and when that node is killed another
/// takes over without losing a slot: the slots missed meanwhile fire late,
/// within the catch-up window, once each.
#[actix_rt::test]
async fn a_schedule_fires_each_slot_once_across_nodes_and_loses_none_when_its_holder_dies() {
    let mut cluster = Cluster::start(&["a", "b", "c"], redis(), &[], |_| Vec::new()).await;
    let a = cluster.node("a");
    let (status, created) = post(
        &a.at("/v1/schedules"),
        &json!({"id": "heartbeat", "function": "ext.scheduled", "every": "1s", "overlap": "allow", "catchup_window": "1m"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut holders = Vec::new();
    for node in &cluster.nodes {
        if node.counter("courier_schedule_slots_fired_total").await > 0.0 {
            holders.push(node.name.clone());
        }
    }
    assert_eq!(holders.len(), 1, "slots fired on {holders:?}");
    let holder = holders[0].clone();
    cluster.node_mut(&holder).kill9();
    let killed_at = chrono::Utc::now();
    let survivor = cluster.nodes.iter().find(|n| n.name != holder).unwrap();
    // The role's lease runs out (3 s), a survivor takes it and catches up.
    tokio::time::sleep(Duration::from_secs(7)).await;

    // Executions first, runs after: a slot is fired (its execution and its run)
    // in one transaction, and the schedule goes on firing between the two
    // reads, so every execution listed must be among the runs read after it.
    let (_, listed) = get(&survivor.at("/v1/executions?function=ext.scheduled&limit=1000")).await;
    let (status, body) = get(&survivor.at("/v1/schedules/heartbeat/runs?limit=1000")).await;
    assert_eq!(status, 200, "{body}");
    let runs = body["runs"].as_array().unwrap();
    assert!(runs.iter().all(|r| r["outcome"] == "fired"), "{body}");
    let mut slots: Vec<chrono::DateTime<chrono::Utc>> = runs
        .iter()
        .map(|r| r["slot"].as_str().unwrap().parse().unwrap())
        .collect();
    slots.sort();
    assert!(slots.len() >= 9, "{} slots in 11 s", slots.len());
    assert!(
        slots.windows(2).all(|w| w[1] - w[0] == chrono::TimeDelta::seconds(1)),
        "each slot once, none missing: {slots:?}"
    );
    let executions: BTreeSet<&str> = runs.iter().map(|r| r["execution_id"].as_str().unwrap()).collect();
    assert_eq!(executions.len(), runs.len(), "one execution per slot");
    let listed: BTreeSet<&str> = listed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(
        listed.is_subset(&executions),
        "no execution beyond the runs: {listed:?} against {executions:?}"
    );
    assert!(listed.len() >= 9, "{} executions listed in 11 s", listed.len());
    let last = *slots.last().unwrap();
    assert!(
        last > killed_at + chrono::TimeDelta::seconds(3),
        "a survivor went on firing after the kill (last slot {last}, killed at {killed_at})"
    );
}

/// A rate limit of 50 starts a second on `fixture.effect`, set once over the
/// API, holds within 10% across three nodes over 10 s of steady backlog.
///
/// Run alone (`scripts/test` does, after everything else): its lower bound says
/// the limit is also used, so it measures a rate. Each node must keep claiming
/// while tokens come, since a bucket full past its burst loses them. A claim's
/// refused tasks now go back in one write (beside the behaviour suite, 529
/// started where one write per task let 367-424), but a loaded two-core
/// machine, where a node can stall for over a second while its bucket is full,
/// still let as few as 398 start. Those stalls came after the dispatches ended:
/// while commits carried the claims, each node's polling backoff stood at what
/// it had grown to while idle (seconds), and nothing told a node when the work
/// it gave back came due. Now a node looks again by then, and ten runs in a
/// row counted 499-500.
#[actix_rt::test]
#[ignore = "timing: scripts/test runs it alone, after the rest of the suite"]
async fn a_rate_limit_of_50_a_second_holds_across_three_nodes() {
    let cluster = Cluster::start(&["a", "b", "c"], redis(), &[], |_| Vec::new()).await;
    let a = cluster.node("a");
    let (status, body) = json_of(
        client()
            .put(a.at("/v1/functions/fixture.effect"))
            .send_json(&json!({"rate_limit": {"per_second": 50, "burst": 50}}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Every node reads stored settings again within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (i, node) in cluster.nodes.iter().cycle().take(750).enumerate() {
        dispatch(node, "fixture.effect", json!({ "key": format!("r{i}"), "sleep_ms": 0 })).await;
    }
    tokio::time::sleep(Duration::from_secs(13)).await;
    let mut starts: Vec<u128> = cluster
        .effects()
        .iter()
        .filter(|e| e.what == "start")
        .map(|e| e.nanos)
        .collect();
    starts.sort();
    assert!(!starts.is_empty(), "nothing ran");
    // After the first second (the burst), count a steady 10 s window.
    let from = starts[0] + 1_000_000_000;
    let to = from + 10_000_000_000;
    let steady = starts.iter().filter(|t| (from..to).contains(*t)).count();
    eprintln!("rate limit of 50/s across three nodes: {steady} starts in a steady 10 s");
    // On failure, the starts per second from the first: a stall shows as a gap.
    let per_second = starts.iter().fold(BTreeMap::<u128, usize>::new(), |mut per, t| {
        *per.entry((t - starts[0]) / 1_000_000_000).or_default() += 1;
        per
    });
    assert!(
        (450..=550).contains(&steady),
        "{steady} starts in 10 s across three nodes under a limit of 50/s ({} in all; per second: {per_second:?})",
        starts.len()
    );
    let nodes: BTreeSet<String> = cluster.effects().into_iter().map(|e| e.node).collect();
    assert!(nodes.len() >= 2, "the work was not shared: {nodes:?}");
}

#[actix_rt::test]
async fn child_executions_spread_over_nodes_and_their_ends_wake_the_parent_elsewhere() {
    // Polling is slow, so each child's end must reach its parent's node as a
    // notice; node `a` only serves the API.
    let cluster = Cluster::start(&["a", "b", "c"], redis(), SLOW_POLLING, api_only_a).await;
    let a = cluster.node("a");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = dispatch(
        a,
        "fixture.family",
        json!({ "key": "fam", "children": 6, "steps": 2, "sleep_ms": 20 }),
    )
    .await;
    let (status, body) = result(a, &id, Duration::from_secs(20)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "completed", "{body}");
    assert_eq!(body["result"], 12, "six children of two steps each");

    let (_, children) = get(&a.at(&format!("/v1/executions?parent={id}&limit=100"))).await;
    let children = children["executions"].as_array().unwrap().clone();
    assert_eq!(children.len(), 6, "{children:?}");
    assert!(
        children
            .iter()
            .all(|c| c["state"] == "completed" && c["parent"]["execution_id"] == id.as_str())
    );
    let effects = cluster.effects();
    let ends = Effect::ends_by_key(&effects);
    assert_eq!(ends.len(), 12, "every child's every step ran: {ends:?}");
    assert!(ends.values().all(|e| e.len() == 1), "a step ran twice: {ends:?}");
    let nodes: HashSet<&str> = effects.iter().map(|e| e.node.as_str()).collect();
    assert!(!nodes.contains("a"), "the API-only node ran work: {nodes:?}");
}
